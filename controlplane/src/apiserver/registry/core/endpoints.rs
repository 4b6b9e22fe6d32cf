//! `v1` Endpoints: validation, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::core::v1 as api;

/// The `endpoints` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Endpoints",
    plural: "endpoints",
    singular: "endpoints",
    namespaced: true,
    short_names: &["ep"],
    categories: &[],
    subresources: &[],
    storage_prefix: "services/endpoints",
    field_labels: &[],
    strategy: &EndpointsStrategy,
};

/// The `Endpoints` strategy.
pub struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    typed_as!("v1.Endpoints", api::Endpoints);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        let _ = old;
        endpoints(e, Some(object));
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::ENDPOINTS_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]}),
            invalid: json!({"metadata": {"name": "web"}, "subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 0}]}]}),
            invalid_field: "subsets[0].ports[0].port",
        }
    }
}

pub(crate) fn endpoints(e: &mut Errs, obj: Option<&Value>) {
    for (i, ss) in arr_of(obj, "subsets").iter().enumerate() {
        let sp = idx("subsets", i);
        let ss = Some(ss);
        if arr_of(ss, "addresses").is_empty() && arr_of(ss, "notReadyAddresses").is_empty() {
            e.required(&sp, "must specify `addresses` or `notReadyAddresses`");
        }
        for list in ["addresses", "notReadyAddresses"] {
            for (j, a) in arr_of(ss, list).iter().enumerate() {
                let ap = idx(&child(&sp, list), j);
                let a = Some(a);
                let ip = str_of(a, "ip");
                validate_ip_legacy(e, &child(&ap, "ip"), ip);
                let host = str_of(a, "hostname");
                if !host.is_empty() {
                    for m in is_dns1123_label(host) {
                        e.invalid_s(&child(&ap, "hostname"), host, &m);
                    }
                }
                if let Some(n) = str_opt(a, "nodeName") {
                    for m in is_dns1123_subdomain(n) {
                        e.invalid_s(&child(&ap, "nodeName"), n, &m);
                    }
                }
                validate_non_special_ip(e, &child(&ap, "ip"), ip);
            }
        }
        let ports = arr_of(ss, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = idx(&child(&sp, "ports"), j);
            let port = Some(port);
            let name = str_of(port, "name");
            if ports.len() > 1 && name.is_empty() {
                e.required(&child(&pp, "name"), "");
            } else if !name.is_empty() {
                for m in is_dns1123_label(name) {
                    e.invalid_s(&child(&pp, "name"), name, &m);
                }
            }
            let num = int_of(port, "port").unwrap_or(0);
            for m in is_valid_port_num(num) {
                e.invalid_i(&child(&pp, "port"), num, &m);
            }
            protocol(e, port, &pp);
            if let Some(ap) = str_opt(port, "appProtocol") {
                for m in is_qualified_name(ap) {
                    e.invalid_s(&child(&pp, "appProtocol"), ap, &m);
                }
            }
        }
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const ENDPOINTS_COLUMNS: &[Column] = &[
        NAME,
        col(
            "Endpoints",
            "string",
            "The set of all endpoints is the union of all subsets.",
        ),
        AGE,
    ];

    pub(crate) fn format_endpoints(o: &Value) -> String {
        const MAX: usize = 3;
        let subsets = list_at(o, &["subsets"]);
        if subsets.is_empty() {
            return "<none>".to_string();
        }
        let mut list: Vec<String> = Vec::new();
        let mut more = false;
        let mut count = 0usize;
        for subset in subsets {
            let addresses = list_at(subset, &["addresses"]);
            let ports = list_at(subset, &["ports"]);
            if ports.is_empty() {
                // Headless services may have no ports: list the bare addresses.
                count += addresses.len();
                for address in addresses {
                    if list.len() == MAX {
                        more = true;
                        break;
                    }
                    list.push(str_at(address, &["ip"]).to_string());
                }
                continue;
            }
            for port in ports {
                count += addresses.len();
                for address in addresses {
                    if list.len() == MAX {
                        more = true;
                        break;
                    }
                    list.push(join_host_port(
                        str_at(address, &["ip"]),
                        int_at(port, &["port"]),
                    ));
                }
            }
        }
        let ret = list.join(",");
        if more {
            return format!("{ret} + {} more...", count.saturating_sub(MAX));
        }
        ret
    }

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            json!(name(object)),
            json!(format_endpoints(object)),
            json!(age(object, now)),
        ]
    }
}
