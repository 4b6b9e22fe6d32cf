//! `v1` Service: validation, defaults, the ClusterIP and NodePort allocations, the fields a
//! change of type drops, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1 as api;

use crate::apiserver::allocations::{Allocations, Ipam, PoolKind, describe, invalid, owner};
use crate::apiserver::status::ApiError;

/// The `services` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Service",
    plural: "services",
    singular: "service",
    namespaced: true,
    short_names: &["svc"],
    categories: &["all"],
    subresources: &[Subresource::Status],
    storage_prefix: "services/specs",
    field_labels: &["spec.clusterIP", "spec.type"],
    strategy: &Services,
};

/// The `Service` strategy.
pub struct Services;

impl Strategy for Services {
    typed_as!("v1.Service", api::Service);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        service(e, Some(object), old);
        // Upstream validates the status on status writes only (ValidateServiceStatusUpdate);
        // other writes keep the stored status, which was checked when it was written.
        if old.is_none_or(|old| old["status"] != object["status"]) {
            load_balancer_status(e, object);
        }
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::SERVICE_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::service_cells(object, now)
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Dns1035
    }

    fn default(&self, object: &mut Value) {
        default_service(&mut object["spec"]);
    }

    fn prepare_update(&self, old: &Value, new: &mut Value) {
        drop_type_dependent_fields(old, new);
    }

    fn prepare_subresource_update(&self, _subresource: Subresource, _old: &Value, new: &mut Value) {
        default_ip_mode(new);
    }

    fn held(&self, object: &Value) -> Allocations {
        let mut items = Vec::new();
        if let Some(ip) = object["spec"]["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty() && *ip != "None")
        {
            items.push((PoolKind::ServiceIp, ip.to_owned()));
        }
        for port in object["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(node_port) = port["nodePort"].as_u64() {
                items.push((PoolKind::NodePort, node_port.to_string()));
            }
        }
        items
    }

    fn allocate<'a>(
        &'a self,
        ipam: &'a Ipam,
        old: Option<&'a Value>,
        object: &'a mut Value,
        allocated: &'a mut Allocations,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(allocate_service(ipam, old, object, allocated))
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
            invalid: json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], "type": "Sideways"}}),
            invalid_field: "spec.type",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Service, Endpoints
// ---------------------------------------------------------------------------------------------

pub(crate) fn effective_cluster_ips(spec: Option<&Value>) -> Vec<String> {
    let ips: Vec<String> = strings_of(spec, "clusterIPs")
        .into_iter()
        .map(str::to_string)
        .collect();
    if ips.is_empty() {
        let ip = str_of(spec, "clusterIP");
        if !ip.is_empty() {
            return vec![ip.to_string()];
        }
    }
    ips
}

pub(crate) fn service(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    let sp = "spec";
    let svc_type = str_opt(spec, "type")
        .filter(|t| !t.is_empty())
        .unwrap_or("ClusterIP");
    // The registry keeps allocated cluster IPs when an update leaves them out.
    let mut cluster_ips = effective_cluster_ips(spec);
    let old_spec = old.and_then(|o| get(Some(o), "spec"));
    if cluster_ips.is_empty()
        && svc_type != "ExternalName"
        && let Some(os) = old_spec
    {
        cluster_ips = effective_cluster_ips(Some(os));
    }
    let cluster_ip = str_opt(spec, "clusterIP")
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .or_else(|| cluster_ips.first().cloned())
        .unwrap_or_default();
    let headless =
        cluster_ips.len() == 1 && cluster_ips.first().map(String::as_str) == Some("None");
    let ports = arr_of(spec, "ports");

    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        e.required(&child(sp, "ports"), "");
    }
    match svc_type {
        "LoadBalancer" | "NodePort" if headless => e.invalid_s(
            "spec.clusterIPs[0]",
            "None",
            &format!("may not be set to 'None' for {svc_type} services"),
        ),
        "ExternalName" => {
            if !cluster_ips.is_empty() {
                e.forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                );
            }
            if !arr_of(spec, "ipFamilies").is_empty() {
                e.forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                );
            }
            if get(spec, "ipFamilyPolicy").is_some() {
                e.forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                );
            }
            let ext = str_of(spec, "externalName");
            let cname = ext.strip_suffix('.').unwrap_or(ext);
            if cname.is_empty() {
                e.required("spec.externalName", "");
            } else {
                for m in is_dns1123_subdomain(cname) {
                    e.invalid_s("spec.externalName", cname, &m);
                }
            }
        }
        _ => {}
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = idx("spec.ports", i);
        let port = Some(port);
        let name = str_of(port, "name");
        if ports.len() > 1 && name.is_empty() {
            e.required(&child(&pp, "name"), "");
        } else if !name.is_empty() {
            for m in is_dns1123_label(name) {
                e.invalid_s(&child(&pp, "name"), name, &m);
            }
            if !port_names.insert(name) {
                e.duplicate(&child(&pp, "name"), &q(name));
            }
        }
        let num = int_of(port, "port").unwrap_or(0);
        for m in is_valid_port_num(num) {
            e.invalid_i(&child(&pp, "port"), num, &m);
        }
        protocol(e, port, &pp);
        // targetPort defaults to port.
        let defaulted = |v: &&Value| v.as_i64() == Some(0) || v.as_str() == Some("");
        if let Some(tp) = get(port, "targetPort").filter(|v| !defaulted(v)) {
            port_num_or_name(e, Some(tp), &child(&pp, "targetPort"));
        }
        if let Some(ap) = str_opt(port, "appProtocol") {
            for m in is_qualified_name(ap) {
                e.invalid_s(&child(&pp, "appProtocol"), ap, &m);
            }
        }
    }
    validate_labels(e, obj_of(spec, "selector"), "spec.selector");

    let affinity = str_opt(spec, "sessionAffinity")
        .filter(|a| !a.is_empty())
        .unwrap_or("None");
    match affinity {
        "ClientIP" => {
            if let Some(t) = int_of(
                get(get(spec, "sessionAffinityConfig"), "clientIP"),
                "timeoutSeconds",
            ) && (t <= 0 || t > 86400)
            {
                e.invalid_i(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    t,
                    "must be greater than 0 and less than 86400",
                );
            }
        }
        "None" => {
            if get(spec, "sessionAffinityConfig").is_some() {
                e.forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                );
            }
        }
        other => e.not_supported("spec.sessionAffinity", other, &["ClientIP", "None"]),
    }

    if svc_type != "ExternalName" {
        service_cluster_ips(e, spec, &cluster_ip, &cluster_ips, headless);
    }
    for (i, ip) in strings_of(spec, "externalIPs").iter().enumerate() {
        let ipp = idx("spec.externalIPs", i);
        if validate_ip_legacy(e, &ipp, ip) {
            validate_non_special_ip(e, &ipp, ip);
        }
    }
    if !matches!(
        svc_type,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        e.not_supported(
            "spec.type",
            svc_type,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        );
    }
    let mut node_ports = BTreeSet::new();
    let mut seen_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = idx("spec.ports", i);
        let port = Some(port);
        let proto = str_opt(port, "protocol")
            .filter(|p| !p.is_empty())
            .unwrap_or("TCP");
        let node_port = int_of(port, "nodePort").unwrap_or(0);
        if svc_type == "ClusterIP" && node_port != 0 {
            e.forbidden(
                &child(&pp, "nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            );
        }
        if node_port != 0 && !node_ports.insert((proto, node_port)) {
            e.duplicate(&child(&pp, "nodePort"), &node_port.to_string());
        }
        let num = int_of(port, "port").unwrap_or(0);
        if !seen_ports.insert((proto, num)) {
            e.duplicate(
                &pp,
                &format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{num}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    q(proto)
                ),
            );
        }
    }
    let ranges = strings_of(spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        // Upstream spells this path with a capital L.
        let fp = "spec.LoadBalancerSourceRanges";
        if svc_type != "LoadBalancer" {
            e.forbidden(fp, "may only be used when `type` is 'LoadBalancer'");
        }
        for (i, r) in ranges.iter().enumerate() {
            let r = r.trim();
            if parse_cidr(r).is_none() {
                e.invalid_s(&idx(fp, i), r, CIDR_ERR);
            }
        }
    }
    if get(spec, "allocateLoadBalancerNodePorts").is_some() && svc_type != "LoadBalancer" {
        e.forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        );
    }
    if let Some(class) = str_opt(spec, "loadBalancerClass") {
        if svc_type == "LoadBalancer" {
            for m in is_qualified_name(class) {
                e.invalid_s("spec.loadBalancerClass", class, &m);
            }
        } else {
            e.forbidden(
                "spec.loadBalancerClass",
                "may only be used when `type` is 'LoadBalancer'",
            );
        }
    }
    let externally_accessible = svc_type == "LoadBalancer"
        || svc_type == "NodePort"
        || (svc_type == "ClusterIP" && !arr_of(spec, "externalIPs").is_empty());
    if let Some(etp) = str_opt(spec, "externalTrafficPolicy").filter(|p| !p.is_empty()) {
        if !externally_accessible {
            e.invalid_s(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            );
        } else if etp != "Cluster" && etp != "Local" {
            e.not_supported("spec.externalTrafficPolicy", etp, &["Cluster", "Local"]);
        }
    }
    let needs_health_check =
        svc_type == "LoadBalancer" && str_of(spec, "externalTrafficPolicy") == "Local";
    if let Some(hc) = int_of(spec, "healthCheckNodePort").filter(|h| *h != 0) {
        if !needs_health_check {
            e.invalid_i(
                "spec.healthCheckNodePort",
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            );
        } else {
            for m in is_valid_port_num(hc) {
                e.invalid_i("spec.healthCheckNodePort", hc, &m);
            }
        }
    }
    if let Some(itp) = str_opt(spec, "internalTrafficPolicy")
        && itp != "Cluster"
        && itp != "Local"
    {
        e.not_supported("spec.internalTrafficPolicy", itp, &["Cluster", "Local"]);
    }
    if let Some(td) = str_opt(spec, "trafficDistribution")
        && td != "PreferClose"
    {
        e.not_supported("spec.trafficDistribution", td, &["PreferClose"]);
    }

    if let Some(os) = old_spec {
        let old_type = str_opt(Some(os), "type")
            .filter(|t| !t.is_empty())
            .unwrap_or("ClusterIP");
        let old_ips = effective_cluster_ips(Some(os));
        let old_headless =
            old_ips.len() == 1 && old_ips.first().map(String::as_str) == Some("None");
        if svc_type != "ExternalName" && old_type != "ExternalName" && !(headless && old_headless) {
            let changed = old_ips
                .iter()
                .zip(cluster_ips.iter())
                .position(|(o, n)| o != n);
            if let Some(i) = changed {
                e.invalid(
                    &idx("spec.clusterIPs", i),
                    &go_string_slice(&cluster_ips),
                    "may not change once set",
                );
            } else if old_ips.len() > cluster_ips.len() && cluster_ips.is_empty() {
                e.invalid(
                    "spec.clusterIPs[0]",
                    &go_string_slice(&cluster_ips),
                    "primary clusterIP can not be unset",
                );
            }
        }
        if old_type == "LoadBalancer"
            && svc_type == "LoadBalancer"
            && str_opt(Some(os), "loadBalancerClass") != str_opt(spec, "loadBalancerClass")
        {
            let v = str_opt(spec, "loadBalancerClass").map_or("null".to_string(), q);
            e.invalid("spec.loadBalancerClass", &v, "may not change once set");
        }
    }
}

/// The `ipMode`s of `status.loadBalancer.ingress[]` (upstream's `supportedLoadBalancerIPMode`).
const LOAD_BALANCER_IP_MODES: &[&str] = &["Proxy", "VIP"];

/// `ValidateLoadBalancerStatus` (StrictIPCIDRValidation off, AllowServiceLBStatusOnNonLB off,
/// their 1.33 defaults): ingress only on a LoadBalancer, each `ip` an IP, `ipMode` VIP or
/// Proxy and only beside an `ip`, each `hostname` a DNS name and not an IP.
fn load_balancer_status(e: &mut Errs, object: &Value) {
    let path = "status.loadBalancer.ingress";
    let ingress = object["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let service_type = object["spec"]["type"].as_str().unwrap_or("ClusterIP");
    if service_type != "LoadBalancer" && !ingress.is_empty() {
        e.forbidden(path, "may only be used when `spec.type` is 'LoadBalancer'");
        return;
    }
    for (i, entry) in ingress.iter().enumerate() {
        let entry_path = idx(path, i);
        let entry = Some(entry);
        let ip = str_of(entry, "ip");
        if !ip.is_empty() {
            validate_ip_legacy(e, &child(&entry_path, "ip"), ip);
        }
        let mode_path = child(&entry_path, "ipMode");
        match str_opt(entry, "ipMode") {
            None if !ip.is_empty() => e.required(&mode_path, "must be specified when `ip` is set"),
            None => {}
            Some(_) if ip.is_empty() => {
                e.forbidden(&mode_path, "may not be specified when `ip` is not set");
            }
            Some(mode) if !LOAD_BALANCER_IP_MODES.contains(&mode) => {
                e.not_supported(&mode_path, mode, LOAD_BALANCER_IP_MODES);
            }
            Some(_) => {}
        }
        let hostname = str_of(entry, "hostname");
        if !hostname.is_empty() {
            let hostname_path = child(&entry_path, "hostname");
            for m in is_dns1123_subdomain(hostname) {
                e.invalid_s(&hostname_path, hostname, &m);
            }
            if parse_ip(hostname).is_some() {
                e.invalid_s(
                    &hostname_path,
                    hostname,
                    "must be a DNS name, not an IP address",
                );
            }
        }
    }
}

/// Upstream's defaulting of a LoadBalancer's `status.loadBalancer.ingress[].ipMode`: VIP where
/// an `ip` is given without one (clients older than the field leave it out).
fn default_ip_mode(object: &mut Value) {
    if object["spec"]["type"].as_str() != Some("LoadBalancer") {
        return;
    }
    let Some(ingress) = object
        .pointer_mut("/status/loadBalancer/ingress")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for entry in ingress.iter_mut().filter_map(Value::as_object_mut) {
        let has_ip = entry
            .get("ip")
            .and_then(Value::as_str)
            .is_some_and(|ip| !ip.is_empty());
        if has_ip && entry.get("ipMode").is_none_or(Value::is_null) {
            entry.insert("ipMode".into(), json!("VIP"));
        }
    }
}

pub(crate) fn go_string_slice(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| q(s)).collect();
    format!("[]string{{{}}}", items.join(", "))
}

pub(crate) fn service_cluster_ips(
    e: &mut Errs,
    spec: Option<&Value>,
    cluster_ip: &str,
    ips: &[String],
    headless: bool,
) {
    let explicit = strings_of(spec, "clusterIPs");
    if !cluster_ip.is_empty() && explicit.first().is_some_and(|f| *f != cluster_ip) {
        e.invalid(
            "spec.clusterIPs",
            &go_strings(get(spec, "clusterIPs")),
            "first value must match `clusterIP`",
        );
    }
    let families = strings_of(spec, "ipFamilies");
    let mut seen = BTreeSet::new();
    for (i, f) in families.iter().enumerate() {
        let fp = idx("spec.ipFamilies", i);
        if *f != "IPv4" && *f != "IPv6" {
            e.not_supported(&fp, f, &["IPv4", "IPv6"]);
        }
        if !seen.insert(*f) {
            e.duplicate(&fp, &q(f));
        }
    }
    if let Some(p) = str_opt(spec, "ipFamilyPolicy")
        && !matches!(p, "SingleStack" | "PreferDualStack" | "RequireDualStack")
    {
        e.not_supported(
            "spec.ipFamilyPolicy",
            p,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        );
    }
    let mut invalid = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                invalid = true;
                e.invalid(
                    "spec.clusterIPs",
                    &go_string_slice(ips),
                    "'None' must be the first and only value",
                );
            }
            continue;
        }
        invalid |= !validate_ip_legacy(e, &idx("spec.clusterIPs", i), ip);
    }
    if ips.len() > 2 {
        e.invalid(
            "spec.clusterIPs",
            &go_string_slice(ips),
            "may only hold up to 2 values",
        );
    }
    if invalid {
        return;
    }
    if ips.len() > 1 {
        let v6: Vec<bool> = ips
            .iter()
            .filter_map(|i| parse_ip(i))
            .map(|ip| ip.is_ipv6())
            .collect();
        let dual = v6.len() == 2 && v6.first() != v6.get(1);
        if !dual {
            e.invalid(
                "spec.clusterIPs",
                &go_string_slice(ips),
                "may specify no more than one IP for each IP family",
            );
        }
    }
    if !headless {
        for (i, (ip, fam)) in ips.iter().zip(families.iter()).enumerate() {
            let is_v6 = parse_ip(ip).is_some_and(|a| a.is_ipv6());
            if *fam == "IPv4" && is_v6 {
                e.invalid_s(
                    &idx("spec.clusterIPs", i),
                    ip,
                    &format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                );
            }
            if *fam == "IPv6" && !is_v6 {
                e.invalid_s(
                    &idx("spec.clusterIPs", i),
                    ip,
                    &format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                );
            }
        }
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const SERVICE_COLUMNS: &[Column] = &[
        NAME,
        col(
            "Type",
            "string",
            "type determines how the Service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName.",
        ),
        col(
            "Cluster-IP",
            "string",
            "clusterIP is the IP address of the service, usually assigned randomly.",
        ),
        col(
            "External-IP",
            "string",
            "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
        ),
        col(
            "Port(s)",
            "string",
            "The list of ports that are exposed by this service.",
        ),
        AGE,
        wide(
            "Selector",
            "string",
            "Route service traffic to pods with label keys and values matching this selector.",
        ),
    ];

    pub(crate) fn service_cells(svc: &Value, now: Timestamp) -> Vec<Value> {
        // Service defaulting makes an unset type ClusterIP and an unset port protocol TCP.
        let svc_type = or_default(str_at(svc, &["spec", "type"]), "ClusterIP");
        let cluster_ip = list_at(svc, &["spec", "clusterIPs"])
            .first()
            .and_then(Value::as_str)
            .unwrap_or_else(|| str_at(svc, &["spec", "clusterIP"]));
        let cluster_ip = or_default(cluster_ip, "<none>");

        let external_ips: Vec<&str> = list_at(svc, &["spec", "externalIPs"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let external_ip = match svc_type {
            "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
            "ClusterIP" | "NodePort" => external_ips.join(","),
            "LoadBalancer" => {
                let lb = load_balancer_ingress(svc);
                if !external_ips.is_empty() {
                    let mut all: Vec<&str> = Vec::new();
                    if !lb.is_empty() {
                        all.extend(lb.split(','));
                    }
                    all.extend(&external_ips);
                    all.join(",")
                } else if !lb.is_empty() {
                    lb
                } else {
                    "<pending>".to_string()
                }
            }
            "ExternalName" => str_at(svc, &["spec", "externalName"]).to_string(),
            _ => "<unknown>".to_string(),
        };

        let ports: Vec<String> = list_at(svc, &["spec", "ports"])
            .iter()
            .map(|p| {
                let port = int_at(p, &["port"]);
                let protocol = or_default(str_at(p, &["protocol"]), "TCP");
                let node_port = int_at(p, &["nodePort"]);
                if node_port > 0 {
                    format!("{port}:{node_port}/{protocol}")
                } else {
                    format!("{port}/{protocol}")
                }
            })
            .collect();
        let ports = if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        };

        vec![
            json!(name(svc)),
            json!(svc_type),
            json!(cluster_ip),
            json!(external_ip),
            json!(ports),
            json!(age(svc, now)),
            json!(format_labels(get(svc, &["spec", "selector"]))),
        ]
    }
}

fn default_service(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports {
            set_default(port, "protocol", json!("TCP"));
            if port["targetPort"].is_null() {
                port["targetPort"] = port["port"].clone();
            }
        }
    }
}

// ==== SVC
/// A Service that stops being a NodePort/LoadBalancer loses what only those types have (its
/// nodePorts, externalTrafficPolicy, healthCheckNodePort), as upstream's service strategy does,
/// so `type: ClusterIP` alone is a valid change.
fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    let external = |object: &Value| {
        matches!(
            object["spec"]["type"].as_str(),
            Some("NodePort" | "LoadBalancer")
        )
    };
    if !external(old) || external(new) {
        return;
    }
    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("externalTrafficPolicy");
        spec.remove("healthCheckNodePort");
    }
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for port in ports {
            if let Some(port) = port.as_object_mut() {
                port.remove("nodePort");
            }
        }
    }
}
async fn allocate_service(
    ipam: &Ipam,
    old: Option<&Value>,
    object: &mut Value,
    allocated: &mut Allocations,
) -> Result<(), ApiError> {
    let owner = owner(object);
    let spec = &mut object["spec"];
    let service_type = spec["type"].as_str().unwrap_or("ClusterIP").to_owned();
    let old_ip = old
        .and_then(|old| old["spec"]["clusterIP"].as_str())
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned);

    // ClusterIP: kept from the stored object; immutable once set.
    if service_type == "ExternalName" {
        if let Some(map) = spec.as_object_mut() {
            map.remove("clusterIP");
            map.remove("clusterIPs");
        }
    } else {
        let requested = spec["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned);
        match (&old_ip, requested) {
            (Some(old_ip), None) => set_cluster_ip(spec, old_ip),
            (Some(old_ip), Some(new_ip)) if *old_ip == new_ip => set_cluster_ip(spec, old_ip),
            (Some(_), Some(new_ip)) => {
                return Err(invalid(
                    "Service",
                    &Value::Null,
                    "spec.clusterIPs[0]",
                    &new_ip,
                    "field is immutable".into(),
                ));
            }
            (None, Some(ip)) if ip == "None" => set_cluster_ip(spec, "None"),
            (None, Some(ip)) => {
                ipam.service_ips
                    .allocate(&ip, &owner)
                    .await
                    .map_err(|err| {
                        invalid(
                            "Service",
                            &Value::Null,
                            "spec.clusterIPs[0]",
                            &ip,
                            describe(&err, "IP", &ipam.service_ips.range().to_string()),
                        )
                    })?;
                allocated.push((PoolKind::ServiceIp, ip.clone()));
                set_cluster_ip(spec, &ip);
            }
            (None, None) => {
                let ip = ipam.service_ips.allocate_any(&owner).await.map_err(|err| {
                    ApiError::internal(format!("failed to allocate a service IP: {err}"))
                })?;
                allocated.push((PoolKind::ServiceIp, ip.clone()));
                set_cluster_ip(spec, &ip);
            }
        }
        spec["ipFamilies"] = json!(["IPv4"]);
        if spec["ipFamilyPolicy"].is_null() {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
        if spec["internalTrafficPolicy"].is_null() {
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
    }

    // NodePorts: NodePort and LoadBalancer services get one per port.
    let wants_node_ports = matches!(service_type.as_str(), "NodePort" | "LoadBalancer");
    let old_ports: Vec<Value> = old
        .and_then(|old| old["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    if wants_node_ports && spec["externalTrafficPolicy"].is_null() {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for (index, port) in ports.iter_mut().enumerate() {
        if !wants_node_ports {
            if let Some(map) = port.as_object_mut() {
                map.remove("nodePort");
            }
            continue;
        }
        let held_before: Option<u64> = old_ports
            .iter()
            .filter(|old| old["port"] == port["port"] && old["protocol"] == port["protocol"])
            .find_map(|old| old["nodePort"].as_u64());
        match (port["nodePort"].as_u64(), held_before) {
            (Some(requested), Some(held)) if requested == held => {}
            (None, Some(held)) => port["nodePort"] = json!(held),
            (Some(requested), _)
                if old_ports
                    .iter()
                    .any(|o| o["nodePort"].as_u64() == Some(requested)) => {}
            (Some(requested), _) => {
                let item = requested.to_string();
                ipam.node_ports
                    .allocate(&item, &owner)
                    .await
                    .map_err(|err| {
                        invalid(
                            "Service",
                            &Value::Null,
                            &format!("spec.ports[{index}].nodePort"),
                            &item,
                            describe(&err, "port", &ipam.node_ports.range().to_string()),
                        )
                    })?;
                allocated.push((PoolKind::NodePort, item));
            }
            (None, None) => {
                let item = ipam.node_ports.allocate_any(&owner).await.map_err(|err| {
                    ApiError::internal(format!("failed to allocate a node port: {err}"))
                })?;
                port["nodePort"] = json!(item.parse::<u64>().unwrap_or_default());
                allocated.push((PoolKind::NodePort, item));
            }
        }
    }
    Ok(())
}

fn set_cluster_ip(spec: &mut Value, ip: &str) {
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::{machinery::field::Cause, meta};

    /// A stored Service of `service_type` with a ClusterIP and an empty status.
    fn stored(service_type: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1",
                         "resourceVersion": "5", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"type": service_type, "selector": {"app": "web"}, "clusterIP": "10.96.0.20",
                     "clusterIPs": ["10.96.0.20"],
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30080}]},
            "status": {"loadBalancer": {}},
        })
    }

    /// What a write of `ingress` through `services/status` is refused for (the object as it
    /// would be stored, and the causes).
    fn write_status(old: &Value, ingress: Value) -> (Value, Vec<Cause>) {
        let mut new = old.clone();
        new["status"] = json!({"loadBalancer": {"ingress": ingress}});
        let updated = meta::prepare_update(&RESOURCE, old, new, Some(Subresource::Status));
        let causes = RESOURCE.validate(&updated, Some(old));
        (updated, causes)
    }

    fn fields(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_load_balancer_address_with_ip_mode_vip_is_accepted() {
        let old = stored("LoadBalancer");
        let (stored, causes) =
            write_status(&old, json!([{"ip": "192.168.78.240", "ipMode": "VIP"}]));
        assert_eq!(fields(&causes), Vec::<String>::new());
        assert_eq!(
            stored["status"]["loadBalancer"]["ingress"],
            json!([{"ip": "192.168.78.240", "ipMode": "VIP"}])
        );
        let (_, proxy) = write_status(&old, json!([{"ip": "192.168.78.240", "ipMode": "Proxy"}]));
        assert!(proxy.is_empty(), "{proxy:?}");
        let (_, named) = write_status(&old, json!([{"hostname": "lb.example.com"}]));
        assert!(named.is_empty(), "{named:?}");
        // Clearing is always allowed.
        let (_, cleared) = write_status(&old, json!(null));
        assert!(cleared.is_empty(), "{cleared:?}");
    }

    #[test]
    fn an_ip_without_ip_mode_is_defaulted_to_vip() {
        let (stored, causes) =
            write_status(&stored("LoadBalancer"), json!([{"ip": "192.168.78.241"}]));
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(
            stored["status"]["loadBalancer"]["ingress"][0]["ipMode"],
            "VIP"
        );
    }

    #[test]
    fn load_balancer_ingress_is_validated_as_upstream() {
        let old = stored("LoadBalancer");
        let (_, causes) = write_status(
            &old,
            json!([
                {"ip": "192.168.78.300", "ipMode": "VIP"},
                {"hostname": "lb.example.com", "ipMode": "VIP"},
                {"ip": "192.168.78.242", "ipMode": "Tunnel"},
                {"hostname": "192.168.78.243"},
                {"hostname": "Not_A_Name"},
            ]),
        );
        let fields = fields(&causes);
        assert_eq!(
            fields[..3],
            [
                "status.loadBalancer.ingress[0].ip: Invalid value: \"192.168.78.300\": must be \
                 a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "status.loadBalancer.ingress[1].ipMode: Forbidden: may not be specified when \
                 `ip` is not set",
                "status.loadBalancer.ingress[2].ipMode: Unsupported value: \"Tunnel\": \
                 supported values: \"Proxy\", \"VIP\"",
            ],
            "{fields:#?}"
        );
        assert!(
            fields.contains(
                &"status.loadBalancer.ingress[3].hostname: Invalid value: \"192.168.78.243\": \
                  must be a DNS name, not an IP address"
                    .to_owned()
            ),
            "{fields:#?}"
        );
        assert!(
            fields
                .iter()
                .any(|cause| cause.starts_with("status.loadBalancer.ingress[4].hostname: Invalid")),
            "{fields:#?}"
        );
    }

    #[test]
    fn only_a_load_balancer_has_ingress() {
        let (_, causes) = write_status(
            &stored("NodePort"),
            json!([{"ip": "192.168.78.240", "ipMode": "VIP"}]),
        );
        assert_eq!(
            fields(&causes),
            [
                "status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is \
              'LoadBalancer'"
            ]
        );
    }

    #[test]
    fn other_writes_do_not_judge_the_stored_status() {
        // A LoadBalancer turned ClusterIP keeps its address until the controller clears it.
        let mut old = stored("LoadBalancer");
        old["status"] =
            json!({"loadBalancer": {"ingress": [{"ip": "192.168.78.240", "ipMode": "VIP"}]}});
        let mut new = old.clone();
        new["spec"]["type"] = json!("ClusterIP");
        let updated = meta::prepare_update(&RESOURCE, &old, new, None);
        assert_eq!(updated["status"], old["status"]);
        let causes = RESOURCE.validate(&updated, Some(&old));
        assert!(
            !causes.iter().any(|cause| cause.field.starts_with("status")),
            "{causes:?}"
        );
        // The clearing status write is then valid.
        let (_, cleared) = write_status(&updated, json!(null));
        assert!(cleared.is_empty(), "{cleared:?}");
    }
}
