//! Container validation: env, env sources, volume mounts, resources, probes, lifecycle handlers
//! and security contexts.

use super::*;

pub(crate) const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
pub(crate) const CONVERTIBLE_FIELD_PATHS: [&str; 5] = [
    "spec.restartPolicy",
    "spec.schedulerName",
    "status.phase",
    "metadata.labels",
    "metadata.annotations",
];
pub(crate) const RESOURCE_FIELD_PATHS: [&str; 6] = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

pub(crate) fn env(e: &mut Errs, vars: &[Value], path: &str) {
    for (i, ev) in vars.iter().enumerate() {
        let ep = idx(path, i);
        let ev = Some(ev);
        let name = str_of(ev, "name");
        if name.is_empty() {
            e.required(&child(&ep, "name"), "");
        } else {
            for m in is_relaxed_env_var_name(name) {
                e.invalid_s(&child(&ep, "name"), name, &m);
            }
        }
        let Some(vf) = get(ev, "valueFrom") else {
            continue;
        };
        let vp = child(&ep, "valueFrom");
        let vf = Some(vf);
        let mut sources = 0;
        if let Some(fr) = get(vf, "fieldRef") {
            sources += 1;
            field_ref(e, Some(fr), &child(&vp, "fieldRef"));
        }
        if let Some(rr) = get(vf, "resourceFieldRef") {
            sources += 1;
            let rp = child(&vp, "resourceFieldRef");
            let res = str_of(Some(rr), "resource");
            if res.is_empty() {
                e.required(&child(&rp, "resource"), "");
            } else if !RESOURCE_FIELD_PATHS.contains(&res)
                && !res.starts_with("requests.hugepages-")
                && !res.starts_with("limits.hugepages-")
            {
                e.not_supported(&child(&rp, "resource"), res, &RESOURCE_FIELD_PATHS);
            }
        }
        for (f, _) in [("configMapKeyRef", 0), ("secretKeyRef", 1)] {
            if let Some(kr) = get(vf, f) {
                sources += 1;
                let kp = child(&vp, f);
                let n = str_of(Some(kr), "name");
                for m in is_dns1123_subdomain(n) {
                    e.invalid_s(&child(&kp, "name"), n, &m);
                }
                let k = str_of(Some(kr), "key");
                if k.is_empty() {
                    e.required(&child(&kp, "key"), "");
                } else {
                    for m in is_config_map_key(k) {
                        e.invalid_s(&child(&kp, "key"), k, &m);
                    }
                }
            }
        }
        if sources == 0 {
            e.invalid_s(
                &vp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            );
        } else if !str_of(ev, "value").is_empty() {
            e.invalid_s(&vp, "", "may not be specified when `value` is not empty");
        } else if sources > 1 {
            e.invalid_s(
                &vp,
                "",
                "may not have more than one field specified at a time",
            );
        }
    }
}

pub(crate) fn field_ref(e: &mut Errs, fr: Option<&Value>, fp: &str) {
    // apiVersion is defaulted to "v1".
    let fpath = str_of(fr, "fieldPath");
    if fpath.is_empty() {
        e.required(&child(fp, "fieldPath"), "");
        return;
    }
    if let Some((base, rest)) = fpath.split_once('[') {
        let subscript = rest
            .strip_suffix(']')
            .map(|s| s.trim_matches('\''))
            .unwrap_or("");
        match base {
            "metadata.annotations" => {
                for m in is_qualified_name(&subscript.to_lowercase()) {
                    e.invalid_s(fp, subscript, &m);
                }
            }
            "metadata.labels" => {
                for m in is_qualified_name(subscript) {
                    e.invalid_s(fp, subscript, &m);
                }
            }
            _ => e.invalid_s(fp, base, "does not support subscript"),
        }
        return;
    }
    if ENV_FIELD_PATHS.contains(&fpath) {
        return;
    }
    if CONVERTIBLE_FIELD_PATHS.contains(&fpath) {
        e.not_supported(&child(fp, "fieldPath"), fpath, &ENV_FIELD_PATHS);
    } else {
        e.invalid_s(
            &child(fp, "fieldPath"),
            fpath,
            &format!("error converting fieldPath: field label not supported: {fpath}"),
        );
    }
}

pub(crate) fn env_from(e: &mut Errs, list: &[Value], path: &str) {
    for (i, ef) in list.iter().enumerate() {
        let ep = idx(path, i);
        let ef = Some(ef);
        let prefix = str_of(ef, "prefix");
        if !prefix.is_empty() {
            for m in is_relaxed_env_var_name(prefix) {
                e.invalid_s(&child(&ep, "prefix"), prefix, &m);
            }
        }
        let mut sources = 0;
        for f in ["configMapRef", "secretRef"] {
            if let Some(r) = get(ef, f) {
                sources += 1;
                let rp = child(&ep, f);
                let n = str_of(Some(r), "name");
                if n.is_empty() {
                    e.required(&child(&rp, "name"), "");
                } else {
                    for m in name_msgs(NameRule::Subdomain, n, true) {
                        e.invalid_s(&child(&rp, "name"), n, &m);
                    }
                }
            }
        }
        if sources == 0 {
            e.invalid_s(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            );
        } else if sources > 1 {
            e.invalid_s(
                path,
                "",
                "may not have more than one field specified at a time",
            );
        }
    }
}

pub(crate) fn volume_mounts(e: &mut Errs, c: Option<&Value>, cp: &str, facts: &PodFacts<'_>) {
    let path = child(cp, "volumeMounts");
    let devices: BTreeMap<&str, &str> = arr_of(c, "volumeDevices")
        .iter()
        .map(|d| (str_of(Some(d), "name"), str_of(Some(d), "devicePath")))
        .collect();
    let privileged = bool_of(get(c, "securityContext"), "privileged") == Some(true);
    let mut mount_points = BTreeSet::new();
    for (i, m) in arr_of(c, "volumeMounts").iter().enumerate() {
        let mp = idx(&path, i);
        let m = Some(m);
        let name = str_of(m, "name");
        if name.is_empty() {
            e.required(&child(&mp, "name"), "");
        }
        if !facts.volumes.contains_key(name) {
            e.not_found(&child(&mp, "name"), name);
        }
        let mount_path = str_of(m, "mountPath");
        if mount_path.is_empty() {
            e.required(&child(&mp, "mountPath"), "");
        }
        if !mount_points.insert(mount_path) {
            e.invalid_s(&child(&mp, "mountPath"), mount_path, "must be unique");
        }
        if devices.contains_key(name) {
            e.invalid_s(
                &child(&mp, "name"),
                name,
                "must not already exist in volumeDevices",
            );
        }
        if devices.values().any(|d| *d == mount_path) {
            e.invalid_s(
                &child(&mp, "mountPath"),
                mount_path,
                "must not already exist as a path in volumeDevices",
            );
        }
        let sub_path = str_of(m, "subPath");
        let sub_expr = str_of(m, "subPathExpr");
        if facts.volumes.get(name) == Some(&"image") {
            if !sub_path.is_empty() {
                e.invalid_s(
                    &child(&mp, "subPath"),
                    sub_path,
                    "not allowed in image volume sources",
                );
            }
            if !sub_expr.is_empty() {
                e.invalid_s(
                    &child(&mp, "subPathExpr"),
                    sub_expr,
                    "not allowed in image volume sources",
                );
            }
        }
        // Upstream reports these two on the list path, not the item (kept as is).
        if !sub_path.is_empty() {
            local_descending_path(e, sub_path, &child(&path, "subPath"));
        }
        if !sub_expr.is_empty() {
            if !sub_path.is_empty() {
                e.invalid_s(
                    &child(&mp, "subPathExpr"),
                    sub_expr,
                    "subPathExpr and subPath are mutually exclusive",
                );
            }
            local_descending_path(e, sub_expr, &child(&path, "subPathExpr"));
        }
        if let Some(prop) = str_opt(m, "mountPropagation") {
            let pp = child(&path, "mountPropagation");
            match prop {
                "None" | "HostToContainer" => {}
                "Bidirectional" => {
                    if !privileged {
                        e.forbidden(
                            &pp,
                            "Bidirectional mount propagation is available only to privileged containers",
                        );
                    }
                }
                other => e.not_supported(&pp, other, &["Bidirectional", "HostToContainer", "None"]),
            }
        }
    }
    let dpath = child(cp, "volumeDevices");
    let mounts: BTreeMap<&str, &str> = arr_of(c, "volumeMounts")
        .iter()
        .map(|m| (str_of(Some(m), "name"), str_of(Some(m), "mountPath")))
        .collect();
    let mut dev_names = BTreeSet::new();
    let mut dev_paths = BTreeSet::new();
    for (i, d) in arr_of(c, "volumeDevices").iter().enumerate() {
        let dp = idx(&dpath, i);
        let d = Some(d);
        let name = str_of(d, "name");
        let dev_path = str_of(d, "devicePath");
        if name.is_empty() {
            e.required(&child(&dp, "name"), "");
        }
        if !dev_names.insert(name) {
            e.invalid_s(&child(&dp, "name"), name, "must be unique");
        }
        match facts.volumes.get(name) {
            Some(&"persistentVolumeClaim" | &"ephemeral") => {}
            Some(_) => e.invalid_s(
                &child(&dp, "name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            ),
            None => e.not_found(&child(&dp, "name"), name),
        }
        if dev_path.is_empty() {
            e.required(&child(&dp, "devicePath"), "");
        }
        if !dev_paths.insert(dev_path) {
            e.invalid_s(&child(&dp, "devicePath"), dev_path, "must be unique");
        }
        if mounts.contains_key(name) {
            e.invalid_s(
                &child(&dp, "name"),
                name,
                "must not already exist in volumeMounts",
            );
        }
        if mounts.values().any(|m| *m == dev_path) {
            e.invalid_s(
                &child(&dp, "devicePath"),
                dev_path,
                "must not already exist as a path in volumeMounts",
            );
        }
    }
}

pub(crate) fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.starts_with("kubernetes.io/")
}

pub(crate) fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// cpu, memory, ephemeral-storage and other native resources may be overcommitted; hugepages
/// and extended resources may not (request must equal limit).
pub(crate) fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

pub(crate) fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

pub(crate) fn container_resource_name(e: &mut Errs, name: &str, path: &str) {
    let msgs = is_qualified_name(name);
    if !msgs.is_empty() {
        for m in msgs {
            e.invalid_s(path, name, &m);
        }
        return;
    }
    if !name.contains('/') {
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_hugepages(name) {
            e.invalid_s(path, name, "must be a standard resource for containers");
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        e.invalid_s(path, name, "doesn't follow extended resource name standard");
    }
}

pub(crate) fn resources(e: &mut Errs, res: Option<&Value>, path: &str) {
    let lim_path = child(path, "limits");
    let req_path = child(path, "requests");
    let limits = obj_of(res, "limits");
    let requests = obj_of(res, "requests");
    let quantity = |v: &Value| -> Option<(String, Quantity)> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        Quantity::parse(&s).ok().map(|x| (s, x))
    };
    let mut has_cpu_mem = false;
    let mut has_huge = false;
    let mut check_value = |e: &mut Errs, name: &str, v: &Value, p: &str| {
        container_resource_name(e, name, p);
        if let Some((s, x)) = quantity(v) {
            if x.is_negative() {
                e.invalid_s(p, &s, IS_NEGATIVE);
            }
            if is_extended_resource(name) && x.milli_value() % 1000 != 0 {
                e.invalid_s(p, &s, "must be an integer");
            }
        }
        has_cpu_mem |= name == "cpu" || name == "memory";
        has_huge |= is_hugepages(name);
    };
    for (name, v) in limits.into_iter().flatten() {
        check_value(e, name, v, &key(&lim_path, name));
    }
    for (name, v) in requests.into_iter().flatten() {
        check_value(e, name, v, &key(&req_path, name));
        let limit = limits.and_then(|l| l.get(name));
        match (quantity(v), limit.and_then(quantity)) {
            (Some((rs, r)), Some((ls, l))) => {
                if r != l && !overcommit_allowed(name) {
                    e.invalid_s(
                        &req_path,
                        &rs,
                        &format!("must be equal to {name} limit of {ls}"),
                    );
                } else if r > l {
                    e.invalid_s(
                        &req_path,
                        &rs,
                        &format!("must be less than or equal to {name} limit of {ls}"),
                    );
                }
            }
            (_, None) if limit.is_none() && !overcommit_allowed(name) => {
                e.required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                );
            }
            _ => {}
        }
    }
    if has_huge && !has_cpu_mem {
        e.forbidden(path, "HugePages require cpu or memory");
    }
}

pub(crate) fn container_probes_and_lifecycle(e: &mut Errs, c: &Value, cp: &str, grace: i64) {
    let c = Some(c);
    if let Some(lc) = get(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = get(Some(lc), hook) {
                handler(e, h, &child(&child(cp, "lifecycle"), hook), grace, true);
            }
        }
    }
    for probe_name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = get(c, probe_name) else {
            continue;
        };
        let pp = child(cp, probe_name);
        handler(e, probe, &pp, grace, false);
        for f in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            e.non_negative(&child(&pp, f), int_of(Some(probe), f));
        }
        if let Some(t) = int_of(Some(probe), "terminationGracePeriodSeconds") {
            if probe_name == "readinessProbe" {
                e.invalid_i(
                    &child(&pp, "terminationGracePeriodSeconds"),
                    t,
                    "must not be set for readinessProbes",
                );
            } else if t <= 0 {
                e.invalid_i(
                    &child(&pp, "terminationGracePeriodSeconds"),
                    t,
                    "must be greater than 0",
                );
            }
        }
        if probe_name != "readinessProbe"
            && let Some(st) = int_of(Some(probe), "successThreshold").filter(|s| *s != 1)
        {
            e.invalid_i(&child(&pp, "successThreshold"), st, "must be 1");
        }
    }
}

/// Probe / lifecycle handler: exactly one action, each action well formed.
pub(crate) fn handler(e: &mut Errs, h: &Value, hp: &str, grace: i64, lifecycle: bool) {
    let h = Some(h);
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut n = 0;
    for k in kinds {
        let Some(action) = get(h, k) else { continue };
        let ap = child(hp, k);
        if n > 0 {
            e.forbidden(&ap, "may not specify more than 1 handler type");
            continue;
        }
        n += 1;
        let action = Some(action);
        match *k {
            "exec" => {
                if arr_of(action, "command").is_empty() {
                    e.required(&child(&ap, "command"), "");
                }
            }
            "httpGet" => {
                port_num_or_name(e, get(action, "port"), &child(&ap, "port"));
                if let Some(s) = str_opt(action, "scheme").filter(|s| !s.is_empty())
                    && s != "HTTP"
                    && s != "HTTPS"
                {
                    e.not_supported(&child(&ap, "scheme"), s, &["HTTP", "HTTPS"]);
                }
                for hdr in arr_of(action, "httpHeaders") {
                    let name = str_of(Some(hdr), "name");
                    let ok = !name.is_empty()
                        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
                    if !ok {
                        e.invalid_s(
                            &child(&ap, "httpHeaders"),
                            name,
                            &regex_error(HTTP_HEADER_ERR, HTTP_HEADER_FMT, &["X-Header-Name"]),
                        );
                    }
                }
            }
            "tcpSocket" => port_num_or_name(e, get(action, "port"), &child(&ap, "port")),
            "grpc" => {
                let port = int_of(action, "port").unwrap_or(0);
                for m in is_valid_port_num(port) {
                    e.invalid_i(&child(&ap, "port"), port, &m);
                }
            }
            _ => {
                let secs = int_of(action, "seconds").unwrap_or(0);
                if secs < 0 || secs > grace {
                    e.invalid_i(
                        &ap,
                        secs,
                        &format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({grace})"
                        ),
                    );
                }
            }
        }
    }
    if n == 0 {
        e.required(hp, "must specify a handler type");
    }
}

pub(crate) fn port_num_or_name(e: &mut Errs, port: Option<&Value>, path: &str) {
    match port {
        Some(Value::String(s)) => {
            for m in is_valid_port_name(s) {
                e.invalid_s(path, s, &m);
            }
        }
        other => {
            let n = other.and_then(Value::as_i64).unwrap_or(0);
            for m in is_valid_port_num(n) {
                e.invalid_i(path, n, &m);
            }
        }
    }
}

pub(crate) fn id_range(e: &mut Errs, v: Option<&Value>, f: &str, path: &str) {
    if let Some(id) = int_of(v, f)
        && !(0..=MAX_INT32).contains(&id)
    {
        e.invalid_i(
            &child(path, f),
            id,
            &format!("must be between 0 and {MAX_INT32}, inclusive"),
        );
    }
}

pub(crate) fn pod_security_context(e: &mut Errs, sc: Option<&Value>, path: &str) {
    let Some(_) = sc else { return };
    for f in ["runAsUser", "runAsGroup", "fsGroup"] {
        id_range(e, sc, f, path);
    }
    for (i, g) in arr_of(sc, "supplementalGroups").iter().enumerate() {
        if let Some(g) = g.as_i64().filter(|g| !(0..=MAX_INT32).contains(g)) {
            e.invalid_i(
                &idx(&child(path, "supplementalGroups"), i),
                g,
                &format!("must be between 0 and {MAX_INT32}, inclusive"),
            );
        }
    }
    if let Some(p) = str_opt(sc, "fsGroupChangePolicy")
        && p != "OnRootMismatch"
        && p != "Always"
    {
        e.not_supported(
            &child(path, "fsGroupChangePolicy"),
            p,
            &["Always", "OnRootMismatch"],
        );
    }
    if let Some(p) = str_opt(sc, "supplementalGroupsPolicy")
        && p != "Merge"
        && p != "Strict"
    {
        e.not_supported(
            &child(path, "supplementalGroupsPolicy"),
            p,
            &["Merge", "Strict"],
        );
    }
    for (i, s) in arr_of(sc, "sysctls").iter().enumerate() {
        let sp = idx(&child(path, "sysctls"), i);
        if str_of(Some(s), "name").is_empty() {
            e.required(&child(&sp, "name"), "");
        }
    }
}

pub(crate) fn container_security_context(e: &mut Errs, sc: Option<&Value>, path: &str) {
    let Some(_) = sc else { return };
    for f in ["runAsUser", "runAsGroup"] {
        id_range(e, sc, f, path);
    }
    if let Some(pm) = str_opt(sc, "procMount")
        && pm != "Default"
        && pm != "Unmasked"
    {
        e.not_supported(&child(path, "procMount"), pm, &["Default", "Unmasked"]);
    }
    if bool_of(sc, "allowPrivilegeEscalation") == Some(false) {
        if bool_of(sc, "privileged") == Some(true) {
            e.invalid(
                path,
                &compact(sc.unwrap_or(&Value::Null)),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            );
        }
        if strings_of(get(sc, "capabilities"), "add").contains(&"CAP_SYS_ADMIN") {
            e.invalid(
                path,
                &compact(sc.unwrap_or(&Value::Null)),
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            );
        }
    }
}
