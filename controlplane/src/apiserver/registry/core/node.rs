//! `v1` Node: validation, the podCIDR allocation, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1 as api;

use crate::apiserver::allocations::{Allocations, Ipam, PoolKind, describe, invalid};
use crate::apiserver::status::ApiError;

/// The `nodes` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Node",
    plural: "nodes",
    singular: "node",
    namespaced: false,
    short_names: &["no"],
    categories: &[],
    subresources: &[Subresource::Status],
    storage_prefix: "minions",
    field_labels: &["spec.unschedulable"],
    strategy: &Nodes,
};

/// The `Node` strategy.
pub struct Nodes;

impl Strategy for Nodes {
    typed_as!("v1.Node", api::Node);

    /// NodeRestriction: a node creates only its own Node (its writes to other Nodes are refused
    /// by the Node authorizer, which knows their names).
    fn admit<'a>(
        &'a self,
        _admission: &'a crate::apiserver::admission::Admission,
        lookup: &'a dyn Lookup,
        object: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> futures::future::BoxFuture<'a, Result<(), crate::apiserver::status::ApiError>> {
        Box::pin(async move {
            crate::apiserver::registry::strategy::own_name_only(
                lookup,
                "nodes",
                object,
                |node, name| format!("node {node:?} is not allowed to modify node {name:?}"),
            )
        })
    }

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        node(e, Some(object), old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::NODE_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::node_cells(object, now)
    }

    /// The kubelet (our agent) registers a node with its status.
    fn status_on_create(&self, _object: &Value) -> Option<Value> {
        None
    }

    fn held(&self, object: &Value) -> Allocations {
        object["spec"]["podCIDR"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(|cidr| (PoolKind::PodCidr, cidr.to_owned()))
            .into_iter()
            .collect()
    }

    fn allocate<'a>(
        &'a self,
        ipam: &'a Ipam,
        old: Option<&'a Value>,
        object: &'a mut Value,
        allocated: &'a mut Allocations,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(allocate_node(ipam, old, object, allocated))
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "node1"}}),
            invalid: json!({"metadata": {"name": "node1"}, "spec": {"taints": [{"key": "k", "effect": "Sometimes"}]}}),
            invalid_field: "metadata.taints[0].effect",
        }
    }
}

pub(crate) fn effective_pod_cidrs(spec: Option<&Value>) -> Vec<&str> {
    let cidrs = strings_of(spec, "podCIDRs");
    if cidrs.is_empty() {
        str_opt(spec, "podCIDR")
            .filter(|c| !c.is_empty())
            .into_iter()
            .collect()
    } else {
        cidrs
    }
}

pub(crate) fn node(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    // Upstream builds this path from "metadata" (sic).
    let tp = "metadata.taints";
    let mut unique: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (i, raw) in arr_of(spec, "taints").iter().enumerate() {
        let ip = idx(tp, i);
        let t = Some(raw);
        let k = str_of(t, "key");
        validate_label_name(e, k, &child(&ip, "key"));
        let v = str_of(t, "value");
        let msgs = is_label_value(v);
        if !msgs.is_empty() {
            e.invalid_s(&child(&ip, "value"), v, &msgs.join(";"));
        }
        let effect = str_of(t, "effect");
        if effect.is_empty() {
            e.required(&child(&ip, "effect"), "");
        } else {
            taint_effect(e, effect, &child(&ip, "effect"));
        }
        if !unique.insert((effect, k)) {
            e.push(
                CauseReason::Duplicate,
                &ip,
                Some(&compact(raw)),
                "taints must be unique by key and effect pair",
            );
        }
    }
    let cidrs = effective_pod_cidrs(spec);
    for (i, c) in cidrs.iter().enumerate() {
        if parse_cidr(c).is_none() {
            e.invalid_s(&idx("spec.podCIDRs", i), c, CIDR_ERR);
        }
    }
    if cidrs.len() > 1 {
        let fams: Vec<bool> = cidrs
            .iter()
            .filter_map(|c| parse_cidr(c))
            .map(|c| c.v6)
            .collect();
        if fams.len() != 2 || fams.first() == fams.get(1) {
            e.invalid(
                "spec.podCIDRs",
                &go_strings(get(spec, "podCIDRs")),
                "may specify no more than one CIDR for each IP family",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, c) in cidrs.iter().enumerate() {
            if !seen.insert(*c) {
                e.duplicate(&idx("spec.podCIDRs", i), &q(c));
            }
        }
    }
    if let Some(old) = old {
        let old_spec = get(Some(old), "spec");
        let old_cidrs = effective_pod_cidrs(old_spec);
        if !old_cidrs.is_empty() {
            let changed = old_cidrs.len() > cidrs.len()
                || old_cidrs.iter().zip(cidrs.iter()).any(|(o, n)| o != n);
            if changed {
                e.forbidden(
                    "spec.podCIDRs",
                    "node updates may not change podCIDR except from \"\" to valid",
                );
            }
        }
        let old_pid = str_of(old_spec, "providerID");
        if !old_pid.is_empty() && old_pid != str_of(spec, "providerID") {
            e.forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            );
        }
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const NODE_COLUMNS: &[Column] = &[
        NAME,
        col("Status", "string", "The status of the node"),
        col("Roles", "string", "The roles of the node"),
        AGE,
        col("Version", "string", "Kubelet Version reported by the node."),
        wide(
            "Internal-IP",
            "string",
            "List of addresses reachable to the node.",
        ),
        wide(
            "External-IP",
            "string",
            "List of addresses reachable to the node.",
        ),
        wide(
            "OS-Image",
            "string",
            "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
        ),
        wide(
            "Kernel-Version",
            "string",
            "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
        ),
        wide(
            "Container-Runtime",
            "string",
            "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
        ),
    ];

    pub(crate) fn node_cells(node: &Value, now: Timestamp) -> Vec<Value> {
        // Only the Ready condition makes it into the status; the last one of that type wins.
        let ready = list_at(node, &["status", "conditions"])
            .iter()
            .rev()
            .find(|c| str_at(c, &["type"]) == "Ready");
        let mut status = match ready {
            Some(c) if str_at(c, &["status"]) == "True" => "Ready".to_string(),
            Some(_) => "NotReady".to_string(),
            None => "Unknown".to_string(),
        };
        if bool_at(node, &["spec", "unschedulable"]) == Some(true) {
            status.push_str(",SchedulingDisabled");
        }

        let mut roles: Vec<&str> = Vec::new();
        if let Some(labels) = get(node, &["metadata", "labels"]).and_then(Value::as_object) {
            for (key, value) in labels {
                if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                    if !role.is_empty() {
                        roles.push(role);
                    }
                } else if key == "kubernetes.io/role"
                    && let Some(role) = value.as_str().filter(|r| !r.is_empty())
                {
                    roles.push(role);
                }
            }
        }
        roles.sort_unstable();
        roles.dedup();
        let roles = if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.join(",")
        };

        let address = |address_type: &str| {
            list_at(node, &["status", "addresses"])
                .iter()
                .find(|a| str_at(a, &["type"]) == address_type)
                .map_or("<none>", |a| str_at(a, &["address"]))
        };
        let info =
            |field: &str| or_default(str_at(node, &["status", "nodeInfo", field]), "<unknown>");

        vec![
            json!(name(node)),
            json!(status),
            json!(roles),
            json!(age(node, now)),
            json!(str_at(node, &["status", "nodeInfo", "kubeletVersion"])),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(info("osImage")),
            json!(info("kernelVersion")),
            json!(info("containerRuntimeVersion")),
        ]
    }
}

async fn allocate_node(
    ipam: &Ipam,
    old: Option<&Value>,
    object: &mut Value,
    allocated: &mut Allocations,
) -> Result<(), ApiError> {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let old_cidr = old
        .and_then(|old| old["spec"]["podCIDR"].as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let requested = object["spec"]["podCIDR"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let cidr = match (old_cidr, requested) {
        (Some(old), None) => old,
        (Some(old), Some(new)) if old == new => old,
        (Some(_), Some(new)) => {
            return Err(invalid(
                "Node",
                object,
                "spec.podCIDRs",
                &new,
                "node updates may not change podCIDR except from \"\" to valid".into(),
            ));
        }
        (None, Some(new)) => {
            ipam.pod_cidrs.allocate(&new, &name).await.map_err(|err| {
                invalid(
                    "Node",
                    object,
                    "spec.podCIDRs[0]",
                    &new,
                    describe(&err, "CIDR", &ipam.pod_cidrs.range().to_string()),
                )
            })?;
            allocated.push((PoolKind::PodCidr, new.clone()));
            new
        }
        (None, None) => {
            let cidr = ipam.pod_cidrs.allocate_first(&name).await.map_err(|err| {
                ApiError::internal(format!(
                    "failed to allocate a podCIDR for node {name}: {err}"
                ))
            })?;
            allocated.push((PoolKind::PodCidr, cidr.clone()));
            cidr
        }
    };
    object["spec"]["podCIDR"] = json!(cidr);
    object["spec"]["podCIDRs"] = json!([cidr]);
    Ok(())
}
