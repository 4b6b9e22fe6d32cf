//! `networking.k8s.io/v1` NetworkPolicy: validation, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::networking::v1 as api;

/// The `networkpolicies` resource.
pub static RESOURCE: Resource = Resource {
    group: "networking.k8s.io",
    version: "v1",
    kind: "NetworkPolicy",
    plural: "networkpolicies",
    singular: "networkpolicy",
    namespaced: true,
    short_names: &["netpol"],
    categories: &[],
    subresources: &[],
    storage_prefix: "networkpolicies",
    field_labels: &[],
    strategy: &NetworkPolicies,
};

/// The `NetworkPolicy` strategy.
pub struct NetworkPolicies;

impl Strategy for NetworkPolicies {
    typed_as!("v1.NetworkPolicy", api::NetworkPolicy);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        let _ = old;
        network_policy(e, Some(object));
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::NETWORK_POLICY_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
            invalid: json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Sideways"]}}),
            invalid_field: "spec.policyTypes[0]",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// networking.k8s.io/v1, discovery.k8s.io/v1
// ---------------------------------------------------------------------------------------------

pub(crate) fn network_policy(e: &mut Errs, obj: Option<&Value>) {
    let spec = get(obj, "spec");
    label_selector(e, get(spec, "podSelector"), "spec.podSelector");
    for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in arr_of(spec, dir).iter().enumerate() {
            let rp = idx(&child("spec", dir), i);
            let rule = Some(rule);
            for (j, port) in arr_of(rule, "ports").iter().enumerate() {
                network_policy_port(e, Some(port), &idx(&child(&rp, "ports"), j));
            }
            for (j, peer) in arr_of(rule, peers).iter().enumerate() {
                network_policy_peer(e, Some(peer), &idx(&child(&rp, peers), j));
            }
        }
    }
    let types = strings_of(spec, "policyTypes");
    if types.len() > 2 {
        e.invalid(
            "spec.policyTypes",
            &go_strings(get(spec, "policyTypes")),
            "may not specify more than two policyTypes",
        );
        return;
    }
    for (i, t) in types.iter().enumerate() {
        if *t != "Ingress" && *t != "Egress" {
            e.not_supported(&idx("spec.policyTypes", i), t, &["Ingress", "Egress"]);
        }
    }
}

pub(crate) fn network_policy_port(e: &mut Errs, port: Option<&Value>, pp: &str) {
    if let Some(proto) = str_opt(port, "protocol")
        && !matches!(proto, "TCP" | "UDP" | "SCTP")
    {
        e.not_supported(&child(pp, "protocol"), proto, &["TCP", "UDP", "SCTP"]);
    }
    let end = int_of(port, "endPort");
    match get(port, "port") {
        Some(Value::String(s)) => {
            if let Some(end) = end {
                e.invalid_i(
                    &child(pp, "endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                );
            }
            for m in is_valid_port_name(s) {
                e.invalid_s(&child(pp, "port"), s, &m);
            }
        }
        Some(v) => {
            let n = v.as_i64().unwrap_or(0);
            for m in is_valid_port_num(n) {
                e.invalid_i(&child(pp, "port"), n, &m);
            }
            if let Some(end) = end {
                if end < n {
                    e.invalid_i(
                        &child(pp, "endPort"),
                        n,
                        "must be greater than or equal to `port`",
                    );
                }
                for m in is_valid_port_num(end) {
                    e.invalid_i(&child(pp, "endPort"), end, &m);
                }
            }
        }
        None => {
            if let Some(end) = end {
                e.invalid_i(
                    &child(pp, "endPort"),
                    end,
                    "may not be specified when `port` is not specified",
                );
            }
        }
    }
}

pub(crate) fn network_policy_peer(e: &mut Errs, peer: Option<&Value>, pp: &str) {
    let mut n = 0;
    for f in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = get(peer, f) {
            n += 1;
            label_selector(e, Some(sel), &child(pp, f));
        }
    }
    if let Some(block) = get(peer, "ipBlock") {
        n += 1;
        let bp = child(pp, "ipBlock");
        let cidr = str_of(Some(block), "cidr");
        if cidr.is_empty() {
            e.required(&child(&bp, "cidr"), "");
        } else if let Some(net) = parse_cidr(cidr) {
            for (i, ex) in strings_of(Some(block), "except").iter().enumerate() {
                let ep = idx(&child(&bp, "except"), i);
                match parse_cidr(ex) {
                    None => e.invalid_s(&ep, ex, CIDR_ERR),
                    Some(exc) => {
                        if exc.v6 != net.v6 || !net.contains(exc.bits) || net.prefix >= exc.prefix {
                            e.invalid_s(&ep, ex, "must be a strict subset of `cidr`");
                        }
                    }
                }
            }
        } else {
            e.invalid_s(&child(&bp, "cidr"), cidr, CIDR_ERR);
        }
    }
    if n == 0 {
        e.required(pp, "must specify a peer");
    } else if n > 1 && get(peer, "ipBlock").is_some() {
        e.forbidden(pp, "may not specify both ipBlock and another peer");
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const NETWORK_POLICY_COLUMNS: &[Column] = &[
        NAME,
        col(
            "Pod-Selector",
            "string",
            "Selects the pods to which this NetworkPolicy object applies.",
        ),
        AGE,
    ];

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            json!(name(object)),
            json!(format_label_selector(get(object, &["spec", "podSelector"]))),
            json!(age(object, now)),
        ]
    }
}
