//! `discovery.k8s.io/v1` EndpointSlice: validation, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::discovery::v1 as api;

/// The `endpointslices` resource.
pub static RESOURCE: Resource = Resource {
    group: "discovery.k8s.io",
    version: "v1",
    kind: "EndpointSlice",
    plural: "endpointslices",
    singular: "endpointslice",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "endpointslices",
    field_labels: &[],
    strategy: &EndpointSlices,
};

/// The `EndpointSlice` strategy.
pub struct EndpointSlices;

impl Strategy for EndpointSlices {
    typed_as!("v1.EndpointSlice", api::EndpointSlice);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        endpoint_slice(e, Some(object), old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::ENDPOINT_SLICE_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"]}]}),
            invalid: json!({"metadata": {"name": "web-abc"}, "addressType": "IPv5", "endpoints": [{"addresses": ["10.0.0.1"]}]}),
            invalid_field: "addressType",
        }
    }
}

pub(crate) fn endpoint_slice(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let addr_type = str_of(obj, "addressType");
    match old {
        None => {
            if addr_type.is_empty() {
                e.required("addressType", "");
            } else if !matches!(addr_type, "IPv4" | "IPv6" | "FQDN") {
                e.not_supported("addressType", addr_type, &["FQDN", "IPv4", "IPv6"]);
            }
        }
        Some(o) => {
            if addr_type != str_of(Some(o), "addressType") {
                e.invalid_s("addressType", addr_type, IMMUTABLE);
            }
        }
    }
    let eps = arr_of(obj, "endpoints");
    if eps.len() > 1000 {
        e.too_many("endpoints", eps.len(), 1000);
    }
    for (i, ep) in eps.iter().enumerate() {
        let p = idx("endpoints", i);
        let ep = Some(ep);
        let ap = child(&p, "addresses");
        let addrs = strings_of(ep, "addresses");
        if addrs.is_empty() {
            e.required(&ap, "must contain at least 1 address");
        } else if addrs.len() > 100 {
            e.too_many(&ap, addrs.len(), 100);
        }
        for (j, a) in addrs.iter().enumerate() {
            let aip = idx(&ap, j);
            match addr_type {
                "IPv4" | "IPv6" => {
                    let ok = match parse_ip(a) {
                        Some(IpAddr::V4(_)) => addr_type == "IPv4",
                        Some(IpAddr::V6(_)) => addr_type == "IPv6",
                        None => false,
                    };
                    if ok {
                        validate_non_special_ip(e, &aip, a);
                    } else {
                        e.invalid_s(&aip, a, &format!("must be a valid {addr_type} address"));
                    }
                }
                "FQDN" => fqdn(e, a, &aip),
                _ => {}
            }
        }
        if let Some(n) = str_opt(ep, "nodeName") {
            for m in is_dns1123_subdomain(n) {
                e.invalid_s(&child(&p, "nodeName"), n, &m);
            }
        }
        let topo = obj_of(ep, "deprecatedTopology");
        if topo.is_some_and(|t| t.len() > 16) {
            e.too_many(
                &child(&p, "deprecatedTopology"),
                topo.map_or(0, Map::len),
                16,
            );
        }
        validate_labels(e, topo, &child(&p, "deprecatedTopology"));
        if let Some(h) = str_opt(ep, "hostname") {
            for m in is_dns1123_label(h) {
                e.invalid_s(&child(&p, "hostname"), h, &m);
            }
        }
    }
    let ports = arr_of(obj, "ports");
    if ports.len() > 20000 {
        e.too_many("ports", ports.len(), 20000);
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = idx("ports", i);
        let port = Some(port);
        let name = str_of(port, "name");
        if !name.is_empty() {
            for m in is_dns1123_label(name) {
                e.invalid_s(&child(&pp, "name"), name, &m);
            }
        }
        if !names.insert(name) {
            e.duplicate(&child(&pp, "name"), &q(name));
        }
        protocol(e, port, &pp);
        if let Some(n) = int_of(port, "port") {
            for m in is_valid_port_num(n) {
                e.invalid_i(&child(&pp, "port"), n, &m);
            }
        }
        if let Some(ap) = str_opt(port, "appProtocol") {
            for m in is_qualified_name(ap) {
                e.invalid_s(&child(&pp, "appProtocol"), ap, &m);
            }
        }
    }
}

/// `IsFullyQualifiedDomainName`.
pub(crate) fn fqdn(e: &mut Errs, name: &str, path: &str) {
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = is_dns1123_subdomain(name);
    if !msgs.is_empty() {
        e.invalid_s(path, name, &msgs.join(","));
        return;
    }
    if name.split('.').count() < 2 {
        e.invalid_s(
            path,
            name,
            "should be a domain with at least two segments separated by dots",
        );
        return;
    }
    for label in name.split('.') {
        let msgs = is_dns1123_label(label);
        if !msgs.is_empty() {
            e.invalid_s(path, label, &msgs.join(","));
            return;
        }
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const ENDPOINT_SLICE_COLUMNS: &[Column] = &[
        NAME,
        col(
            "AddressType",
            "string",
            "addressType specifies the type of address carried by this EndpointSlice.",
        ),
        col(
            "Ports",
            "string",
            "ports specifies the list of network ports exposed by each endpoint in this slice.",
        ),
        col(
            "Endpoints",
            "string",
            "endpoints is a list of unique endpoints in this slice.",
        ),
        AGE,
    ];

    pub(crate) fn format_discovery_ports(ports: &[Value]) -> String {
        const MAX: usize = 3;
        let list: Vec<String> = ports
            .iter()
            .take(MAX)
            .map(|p| match (opt_int(p, &["port"]), get(p, &["name"])) {
                (Some(port), _) => port.to_string(),
                (None, Some(name)) => name.as_str().unwrap_or("").to_string(),
                (None, None) => "*".to_string(),
            })
            .collect();
        list_with_more(&list, ports.len() > MAX, ports.len(), MAX)
    }

    pub(crate) fn format_discovery_endpoints(endpoints: &[Value]) -> String {
        const MAX: usize = 3;
        let addresses: Vec<String> = endpoints
            .iter()
            .flat_map(|e| list_at(e, &["addresses"]))
            .map(|a| a.as_str().unwrap_or("").to_string())
            .collect();
        let shown = addresses.len().min(MAX);
        list_with_more(
            &addresses[..shown],
            addresses.len() > MAX,
            addresses.len(),
            MAX,
        )
    }

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
        let o = object;
        vec![
            json!(name(o)),
            json!(str_at(o, &["addressType"])),
            json!(format_discovery_ports(list_at(o, &["ports"]))),
            json!(format_discovery_endpoints(list_at(o, &["endpoints"]))),
            json!(age(o, now)),
        ]
    }
}
