//! The PodSpec every pod-carrying kind shares (`pkg/apis/core/validation`'s ValidatePodSpec and
//! friends): volumes and containers here, env/mounts/resources/probes/security in
//! [`containers`], tolerations/DNS/affinity/spread in [`scheduling`]; and the PodSpec defaults.

use serde_json::json;

use crate::apiserver::machinery::prelude::*;

mod containers;
mod scheduling;

pub(crate) use containers::*;
pub(crate) use scheduling::*;

// ---------------------------------------------------------------------------------------------
// PodSpec (pkg/apis/core/validation: ValidatePodSpec and friends)
// ---------------------------------------------------------------------------------------------

pub(crate) const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
pub(crate) const MAX_INT32: i64 = 2_147_483_647;

/// What differs between validating a Pod's spec and a template's.
#[derive(Default)]
pub(crate) struct PodCtx {
    /// The spec belongs to a Pod (not a template): a few extra checks apply.
    pub(crate) is_pod: bool,
    /// A Pod being created (not updated): ephemeral containers and gated nodeName are refused.
    pub(crate) create: bool,
    /// Volumes declared elsewhere (StatefulSet volumeClaimTemplates), treated as PVC volumes.
    pub(crate) extra_pvc_volumes: Vec<String>,
}

/// Facts about the pod that container validation needs.
pub(crate) struct PodFacts<'a> {
    pub(crate) volumes: BTreeMap<String, &'static str>,
    pub(crate) grace: i64,
    pub(crate) restart_policy: &'a str,
    pub(crate) host_network: bool,
}

pub(crate) const VOLUME_SOURCES: [(&str, &str); 30] = [
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    // Upstream names these two differently in its "more than 1 volume type" errors.
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

pub(crate) fn pod_spec(e: &mut Errs, spec: Option<&Value>, p: &str, ctx: &PodCtx) {
    let mut volumes = validate_volumes(e, spec, &child(p, "volumes"));
    for name in &ctx.extra_pvc_volumes {
        volumes
            .entry(name.clone())
            .or_insert("persistentVolumeClaim");
    }
    let restart_policy = str_opt(spec, "restartPolicy")
        .filter(|r| !r.is_empty())
        .unwrap_or("Always");
    let facts = PodFacts {
        volumes,
        grace: int_of(spec, "terminationGracePeriodSeconds").unwrap_or(30),
        restart_policy,
        host_network: bool_of(spec, "hostNetwork") == Some(true),
    };

    // Regular containers.
    let cpath = child(p, "containers");
    let containers = arr_of(spec, "containers");
    if containers.is_empty() {
        e.required(&cpath, "");
    }
    let mut names = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let cp = idx(&cpath, i);
        container_common(e, c, &cp, &facts, ctx.is_pod);
        let name = str_of(Some(c), "name");
        if !names.insert(name.to_string()) {
            e.duplicate(&child(&cp, "name"), &q(name));
        }
        container_probes_and_lifecycle(e, c, &cp, facts.grace);
        if get(Some(c), "restartPolicy").is_some() {
            e.forbidden(
                &child(&cp, "restartPolicy"),
                "may not be set for non-init containers",
            );
        }
    }
    host_port_conflicts(e, containers, &cpath);

    // Init containers.
    let ipath = child(p, "initContainers");
    for (i, c) in arr_of(spec, "initContainers").iter().enumerate() {
        let cp = idx(&ipath, i);
        container_common(e, c, &cp, &facts, ctx.is_pod);
        let mut restart_always = false;
        if let Some(rp) = str_opt(Some(c), "restartPolicy") {
            if rp == "Always" {
                restart_always = true;
            } else {
                e.not_supported(&child(&cp, "restartPolicy"), rp, &["Always"]);
            }
        }
        let name = str_of(Some(c), "name");
        if names.contains(name) {
            e.duplicate(&child(&cp, "name"), &q(name));
        } else if !name.is_empty() {
            names.insert(name.to_string());
        }
        host_port_conflicts(e, std::slice::from_ref(c), &ipath);
        if restart_always {
            container_probes_and_lifecycle(e, c, &cp, facts.grace);
        } else {
            for f in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if get(Some(c), f).is_some() {
                    e.forbidden(
                        &child(&cp, f),
                        "may not be set for init containers without restartPolicy=Always",
                    );
                }
            }
        }
    }

    // Ephemeral containers can only be added through the ephemeralcontainers subresource.
    if !arr_of(spec, "ephemeralContainers").is_empty() {
        if ctx.create {
            e.forbidden(&child(p, "ephemeralContainers"), "cannot be set on create");
        } else {
            e.forbidden(
                &child(p, "ephemeralContainers"),
                "ephemeral containers not allowed in pod template",
            );
        }
    }

    if facts.host_network {
        for (i, c) in containers.iter().enumerate() {
            for (j, port) in arr_of(Some(c), "ports").iter().enumerate() {
                let hp = int_of(Some(port), "hostPort").unwrap_or(0);
                let cport = int_of(Some(port), "containerPort").unwrap_or(0);
                if hp != 0 && hp != cport {
                    e.invalid_i(
                        &child(&idx(&child(&idx(&cpath, i), "ports"), j), "hostPort"),
                        hp,
                        "must match `containerPort` when `hostNetwork` is true",
                    );
                }
            }
        }
    }

    if let Some(rp) = str_opt(spec, "restartPolicy").filter(|r| !r.is_empty())
        && !matches!(rp, "Always" | "OnFailure" | "Never")
    {
        e.not_supported(
            &child(p, "restartPolicy"),
            rp,
            &["Always", "OnFailure", "Never"],
        );
    }
    let dns_policy = str_opt(spec, "dnsPolicy").filter(|d| !d.is_empty());
    if let Some(dp) = dns_policy
        && !matches!(
            dp,
            "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
        )
    {
        e.not_supported(
            &child(p, "dnsPolicy"),
            dp,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        );
    }
    validate_labels(e, obj_of(spec, "nodeSelector"), &child(p, "nodeSelector"));
    pod_security_context(
        e,
        get(spec, "securityContext"),
        &child(p, "securityContext"),
    );
    affinity(e, get(spec, "affinity"), &child(p, "affinity"));
    dns_config(
        e,
        get(spec, "dnsConfig"),
        dns_policy,
        &child(p, "dnsConfig"),
    );
    for (i, g) in arr_of(spec, "readinessGates").iter().enumerate() {
        let t = str_of(Some(g), "conditionType");
        for m in is_qualified_name(t) {
            e.invalid_s(
                &child(&idx(&child(p, "readinessGates"), i), "conditionType"),
                t,
                &m,
            );
        }
    }
    let mut gates = BTreeSet::new();
    for (i, g) in arr_of(spec, "schedulingGates").iter().enumerate() {
        let gp = idx(&child(p, "schedulingGates"), i);
        let n = str_of(Some(g), "name");
        for m in is_qualified_name(n) {
            e.invalid_s(&gp, n, &m);
        }
        if !gates.insert(n) {
            e.duplicate(&gp, &q(n));
        }
    }
    topology_spread(e, arr_of(spec, "topologySpreadConstraints"), p);

    let sa = str_of(spec, "serviceAccountName");
    if !sa.is_empty() {
        for m in is_dns1123_subdomain(sa) {
            e.invalid_s(&child(p, "serviceAccountName"), sa, &m);
        }
    }
    let node_name = str_of(spec, "nodeName");
    if !node_name.is_empty() {
        for m in is_dns1123_subdomain(node_name) {
            e.invalid_s(&child(p, "nodeName"), node_name, &m);
        }
    }
    if let Some(ads) = int_of(spec, "activeDeadlineSeconds")
        && !(1..=MAX_INT32).contains(&ads)
    {
        e.invalid_i(
            &child(p, "activeDeadlineSeconds"),
            ads,
            &format!("must be between 1 and {MAX_INT32}, inclusive"),
        );
    }
    for f in ["hostname", "subdomain"] {
        let v = str_of(spec, f);
        if !v.is_empty() {
            for m in is_dns1123_label(v) {
                e.invalid_s(&child(p, f), v, &m);
            }
        }
    }
    tolerations(e, arr_of(spec, "tolerations"), &child(p, "tolerations"));
    for (i, ha) in arr_of(spec, "hostAliases").iter().enumerate() {
        let hp = idx(&child(p, "hostAliases"), i);
        validate_ip_strict(e, &child(&hp, "ip"), str_of(Some(ha), "ip"));
        for (j, h) in strings_of(Some(ha), "hostnames").iter().enumerate() {
            for m in is_dns1123_subdomain(h) {
                e.invalid_s(&idx(&child(&hp, "hostnames"), j), h, &m);
            }
        }
    }
    for f in ["priorityClassName", "runtimeClassName"] {
        if let Some(v) = str_opt(spec, f).filter(|v| !v.is_empty() || f == "runtimeClassName") {
            for m in is_dns1123_subdomain(v) {
                e.invalid_s(&child(p, f), v, &m);
            }
        }
    }
    if let Some(pp) = str_opt(spec, "preemptionPolicy") {
        if pp.is_empty() {
            e.required(&child(p, "preemptionPolicy"), "");
        } else if pp != "PreemptLowerPriority" && pp != "Never" {
            e.not_supported(
                &child(p, "preemptionPolicy"),
                pp,
                &["PreemptLowerPriority", "Never"],
            );
        }
    }
    if let Some(overhead) = get(spec, "overhead") {
        let mut wrapper = Map::new();
        wrapper.insert("limits".to_string(), overhead.clone());
        resources(e, Some(&Value::Object(wrapper)), &child(p, "overhead"));
    }
    if let Some(os) = get(spec, "os") {
        let name = str_of(Some(os), "name");
        if name.is_empty() {
            e.required(&child(&child(p, "os"), "name"), "cannot be empty");
        } else if name != "linux" && name != "windows" {
            e.not_supported(&child(p, "os"), name, &["linux", "windows"]);
        }
    }
    if ctx.create && !node_name.is_empty() && !arr_of(spec, "schedulingGates").is_empty() {
        e.forbidden(
            &child(p, "nodeName"),
            "cannot be set until all schedulingGates have been cleared",
        );
    }
}

pub(crate) fn validate_volumes(
    e: &mut Errs,
    spec: Option<&Value>,
    path: &str,
) -> BTreeMap<String, &'static str> {
    let mut vols = BTreeMap::new();
    for (i, vol) in arr_of(spec, "volumes").iter().enumerate() {
        let vp = idx(path, i);
        let mut el = Errs::default();
        let name = str_of(Some(vol), "name");
        let source = volume_source(&mut el, Some(vol), &vp);
        if name.is_empty() {
            el.required(&child(&vp, "name"), "");
        } else {
            for m in is_dns1123_label(name) {
                el.invalid_s(&child(&vp, "name"), name, &m);
            }
        }
        if vols.contains_key(name) {
            el.duplicate(&child(&vp, "name"), &q(name));
        }
        // Only volumes that validated cleanly can be mounted (upstream keeps the others out).
        if el.0.is_empty() {
            if let Some(source) = source {
                vols.insert(name.to_string(), source);
            }
        } else {
            e.0.append(&mut el.0);
        }
    }
    vols
}

pub(crate) fn volume_source(e: &mut Errs, vol: Option<&Value>, vp: &str) -> Option<&'static str> {
    let mut found: Option<&'static str> = None;
    for (json, err_name) in VOLUME_SOURCES {
        let Some(src) = get(vol, json) else { continue };
        if found.is_some() {
            e.forbidden(
                &child(vp, err_name),
                "may not specify more than 1 volume type",
            );
            continue;
        }
        found = Some(json);
        let sp = child(vp, json);
        let src = Some(src);
        match json {
            "hostPath" => {
                let path = str_of(src, "path");
                if path.is_empty() {
                    e.required(&child(&sp, "path"), "");
                } else {
                    no_backsteps(e, path, &child(&sp, "path"));
                    if let Some(t) = str_opt(src, "type").filter(|t| !t.is_empty()) {
                        let valid = [
                            "BlockDevice",
                            "CharDevice",
                            "Directory",
                            "DirectoryOrCreate",
                            "File",
                            "FileOrCreate",
                            "Socket",
                        ];
                        if !valid.contains(&t) {
                            let mut list = vec![""];
                            list.extend(valid);
                            e.not_supported(&child(&sp, "type"), t, &list);
                        }
                    }
                }
            }
            "secret" => {
                if str_of(src, "secretName").is_empty() {
                    e.required(&child(&sp, "secretName"), "");
                }
                default_mode(e, src, &sp);
                key_to_paths(e, src, &sp);
            }
            "configMap" => {
                if str_of(src, "name").is_empty() {
                    e.required(&child(&sp, "name"), "");
                }
                default_mode(e, src, &sp);
                key_to_paths(e, src, &sp);
            }
            "persistentVolumeClaim" if str_of(src, "claimName").is_empty() => {
                e.required(&child(&sp, "claimName"), "");
            }
            "nfs" => {
                if str_of(src, "server").is_empty() {
                    e.required(&child(&sp, "server"), "");
                }
                let path = str_of(src, "path");
                if path.is_empty() {
                    e.required(&child(&sp, "path"), "");
                } else if !path.starts_with('/') {
                    e.invalid_s(&child(&sp, "path"), path, "must be an absolute path");
                }
            }
            "emptyDir" => {
                if let Some(size) = str_opt(src, "sizeLimit")
                    && Quantity::parse(size).is_ok_and(Quantity::is_negative)
                {
                    e.forbidden(
                        &child(&sp, "sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    );
                }
            }
            "csi" if str_of(src, "driver").is_empty() => {
                e.required(&child(&sp, "driver"), "");
            }
            _ => {}
        }
    }
    if found.is_none() {
        e.required(vp, "must specify a volume type");
    }
    found
}

pub(crate) fn default_mode(e: &mut Errs, src: Option<&Value>, sp: &str) {
    if let Some(m) = int_of(src, "defaultMode")
        && !(0..=0o777).contains(&m)
    {
        e.invalid_i(
            &child(sp, "defaultMode"),
            m,
            "must be a number between 0 and 0777 (octal), both inclusive",
        );
    }
}

pub(crate) fn key_to_paths(e: &mut Errs, src: Option<&Value>, sp: &str) {
    for (i, item) in arr_of(src, "items").iter().enumerate() {
        let ip = idx(&child(sp, "items"), i);
        if str_of(Some(item), "key").is_empty() {
            e.required(&child(&ip, "key"), "");
        }
        let path = str_of(Some(item), "path");
        if path.is_empty() {
            e.required(&child(&ip, "path"), "");
        } else {
            local_descending_path(e, path, &child(&ip, "path"));
        }
        if let Some(m) = int_of(Some(item), "mode")
            && !(0..=0o777).contains(&m)
        {
            e.invalid_i(
                &child(&ip, "mode"),
                m,
                "must be a number between 0 and 0777 (octal), both inclusive",
            );
        }
    }
}

pub(crate) fn no_backsteps(e: &mut Errs, path: &str, p: &str) {
    if path.split(['/', '\\']).any(|part| part == "..") {
        e.invalid_s(p, path, "must not contain '..'");
    }
}

pub(crate) fn local_descending_path(e: &mut Errs, path: &str, p: &str) {
    if path.starts_with('/') || path.starts_with('\\') {
        e.invalid_s(p, path, "must be a relative path");
    }
    no_backsteps(e, path, p);
}

pub(crate) fn container_common(
    e: &mut Errs,
    c: &Value,
    cp: &str,
    facts: &PodFacts<'_>,
    is_pod: bool,
) {
    let c = Some(c);
    let name = str_of(c, "name");
    if name.is_empty() {
        e.required(&child(cp, "name"), "");
    } else {
        for m in is_dns1123_label(name) {
            e.invalid_s(&child(cp, "name"), name, &m);
        }
    }
    let image = str_of(c, "image");
    if image.is_empty() {
        e.required(&child(cp, "image"), "");
    } else if is_pod && image.trim() != image {
        e.invalid_s(
            &child(cp, "image"),
            image,
            "must not have leading or trailing whitespace",
        );
    }
    if let Some(tmp) = str_opt(c, "terminationMessagePolicy").filter(|t| !t.is_empty())
        && tmp != "File"
        && tmp != "FallbackToLogsOnError"
    {
        e.not_supported(
            &child(cp, "terminationMessagePolicy"),
            tmp,
            &["File", "FallbackToLogsOnError"],
        );
    }
    container_ports(e, arr_of(c, "ports"), &child(cp, "ports"));
    env(e, arr_of(c, "env"), &child(cp, "env"));
    env_from(e, arr_of(c, "envFrom"), &child(cp, "envFrom"));
    volume_mounts(e, c, cp, facts);
    if let Some(pp) = str_opt(c, "imagePullPolicy").filter(|p| !p.is_empty())
        && !matches!(pp, "Always" | "IfNotPresent" | "Never")
    {
        e.not_supported(
            &child(cp, "imagePullPolicy"),
            pp,
            &["Always", "IfNotPresent", "Never"],
        );
    }
    resources(e, get(c, "resources"), &child(cp, "resources"));
    for rp in arr_of(c, "resizePolicy") {
        let rpp = child(cp, "resizePolicy");
        let rn = str_of(Some(rp), "resourceName");
        if rn.is_empty() {
            e.required(&rpp, "");
        } else if rn != "cpu" && rn != "memory" {
            e.not_supported(&rpp, rn, &["cpu", "memory"]);
        }
        let pol = str_of(Some(rp), "restartPolicy");
        if pol.is_empty() {
            e.required(&rpp, "");
        } else if pol != "NotRequired" && pol != "RestartContainer" {
            e.not_supported(&rpp, pol, &["NotRequired", "RestartContainer"]);
        }
        if facts.restart_policy == "Never" && pol != "NotRequired" {
            e.invalid_s(
                &rpp,
                pol,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            );
        }
    }
    container_security_context(e, get(c, "securityContext"), &child(cp, "securityContext"));
}

pub(crate) fn container_ports(e: &mut Errs, ports: &[Value], path: &str) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = idx(path, i);
        let port = Some(port);
        let name = str_of(port, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    e.invalid_s(&child(&pp, "name"), name, &m);
                }
            } else if !names.insert(name) {
                e.duplicate(&child(&pp, "name"), &q(name));
            }
        }
        match int_of(port, "containerPort").unwrap_or(0) {
            0 => e.required(&child(&pp, "containerPort"), ""),
            cport => {
                for m in is_valid_port_num(cport) {
                    e.invalid_i(&child(&pp, "containerPort"), cport, &m);
                }
            }
        }
        let hp = int_of(port, "hostPort").unwrap_or(0);
        if hp != 0 {
            for m in is_valid_port_num(hp) {
                e.invalid_i(&child(&pp, "hostPort"), hp, &m);
            }
        }
        protocol(e, port, &pp);
    }
}

/// Port protocol: empty is defaulted to TCP, anything else must be TCP/UDP/SCTP.
pub(crate) fn protocol(e: &mut Errs, port: Option<&Value>, pp: &str) {
    if let Some(proto) = str_opt(port, "protocol").filter(|p| !p.is_empty())
        && !PROTOCOLS.contains(&proto)
    {
        e.not_supported(&child(pp, "protocol"), proto, &PROTOCOLS);
    }
}

pub(crate) fn host_port_conflicts(e: &mut Errs, containers: &[Value], path: &str) {
    let mut seen = BTreeSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in arr_of(Some(c), "ports").iter().enumerate() {
            let port = Some(port);
            let hp = int_of(port, "hostPort").unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let proto = str_opt(port, "protocol")
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP");
            let k = format!("{proto}/{}/{hp}", str_of(port, "hostIP"));
            if !seen.insert(k.clone()) {
                e.duplicate(
                    &child(&idx(&child(&idx(path, ci), "ports"), pi), "hostPort"),
                    &q(&k),
                );
            }
        }
    }
}

/// `SetDefaults_PodSpec` and its containers': what the agent and clients rely on.
pub(crate) fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    for field in ["initContainers", "containers"] {
        if let Some(containers) = spec.get_mut(field).and_then(Value::as_array_mut) {
            for container in containers {
                let image = container["image"].as_str().unwrap_or_default().to_owned();
                let tag_is_latest = {
                    let last = image.rsplit('/').next().unwrap_or_default();
                    !last.contains(':') && !image.contains('@') || last.ends_with(":latest")
                };
                let policy = if tag_is_latest {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                set_default(container, "imagePullPolicy", json!(policy));
                set_default(
                    container,
                    "terminationMessagePath",
                    json!("/dev/termination-log"),
                );
                set_default(container, "terminationMessagePolicy", json!("File"));
                set_default(container, "resources", json!({}));
                if let Some(ports) = container.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports {
                        set_default(port, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// A pod spec with nulls/empties dropped and the defaults kube-apiserver would have filled in,
/// so that a stored (defaulted) spec compares equal to the same spec as a client sends it.
pub(crate) fn canonical_pod_spec(spec: Option<&Value>) -> Value {
    let mut s = spec.cloned().unwrap_or(Value::Object(Map::new()));
    if let Some(m) = s.as_object_mut() {
        let defaults: [(&str, Value); 5] = [
            ("dnsPolicy", Value::from("ClusterFirst")),
            ("restartPolicy", Value::from("Always")),
            ("schedulerName", Value::from("default-scheduler")),
            ("terminationGracePeriodSeconds", Value::from(30)),
            ("enableServiceLinks", Value::from(true)),
        ];
        for (k, v) in defaults {
            let empty = m
                .get(k)
                .is_none_or(|x| x.is_null() || x.as_str() == Some(""));
            if empty {
                m.insert(k.to_string(), v);
            }
        }
        // serviceAccount is the deprecated alias of serviceAccountName.
        if let Some(sa) = m.remove("serviceAccount") {
            let missing = m
                .get("serviceAccountName")
                .is_none_or(|x| x.as_str().unwrap_or("").is_empty());
            if missing {
                m.insert("serviceAccountName".to_string(), sa);
            }
        }
        // Plain (non-pointer) Go bools: false and absent are the same value.
        for k in ["hostNetwork", "hostPID", "hostIPC"] {
            if m.get(k) == Some(&Value::Bool(false)) {
                m.remove(k);
            }
        }
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(list) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    default_container(c);
                }
            }
        }
    }
    normalize(&s)
}

pub(crate) fn default_container(c: &mut Obj) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    // Upstream: Always for ":latest" or untagged images, IfNotPresent otherwise.
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = if last.contains('@') {
        None
    } else {
        last.rsplit_once(':').map(|(_, t)| t)
    };
    let pull = if !last.contains('@') && tag.is_none_or(|t| t == "latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    let defaults: [(&str, Value); 3] = [
        (
            "terminationMessagePath",
            Value::from("/dev/termination-log"),
        ),
        ("terminationMessagePolicy", Value::from("File")),
        ("imagePullPolicy", Value::from(pull)),
    ];
    for (k, v) in defaults {
        let empty = c
            .get(k)
            .is_none_or(|x| x.is_null() || x.as_str() == Some(""));
        if empty {
            c.insert(k.to_string(), v);
        }
    }
    for k in ["stdin", "stdinOnce", "tty"] {
        if c.get(k) == Some(&Value::Bool(false)) {
            c.remove(k);
        }
    }
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            if p.get("hostPort").and_then(Value::as_i64) == Some(0) {
                p.remove("hostPort");
            }
            let empty = p
                .get("protocol")
                .is_none_or(|x| x.is_null() || x.as_str() == Some(""));
            if empty {
                p.insert("protocol".to_string(), Value::from("TCP"));
            }
        }
    }
}
