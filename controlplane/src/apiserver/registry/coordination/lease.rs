//! `coordination.k8s.io/v1` Lease: validation, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use flotilla_apimachinery::node_leases;
use k8s_openapi::api::coordination::v1 as api;

/// The `leases` resource.
pub static RESOURCE: Resource = Resource {
    group: "coordination.k8s.io",
    version: "v1",
    kind: "Lease",
    plural: "leases",
    singular: "lease",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "leases",
    field_labels: &[],
    strategy: &Leases,
};

/// The `Lease` strategy.
pub struct Leases;

impl Strategy for Leases {
    typed_as!("v1.Lease", api::Lease);

    /// NodeRestriction: a node creates only its own Leases, its heartbeat and its L2
    /// announcer's (the Node authorizer checks the name on every other verb).
    fn admit<'a>(
        &'a self,
        _admission: &'a crate::apiserver::admission::Admission,
        lookup: &'a dyn Lookup,
        object: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> futures::future::BoxFuture<'a, Result<(), crate::apiserver::status::ApiError>> {
        Box::pin(async move {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            if lookup
                .requesting_node()
                .is_some_and(|node| name == node_leases::l2_announcer_lease(&node))
            {
                return Ok(());
            }
            crate::apiserver::registry::strategy::own_name_only(
                lookup,
                "leases.coordination.k8s.io",
                object,
                |_, _| {
                    "can only access node lease with the same name as the requesting node".into()
                },
            )
        })
    }

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        let _ = old;
        lease(e, Some(object));
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::LEASE_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}),
            invalid: json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 0}}),
            invalid_field: "spec.leaseDurationSeconds",
        }
    }
}

pub(crate) fn lease(e: &mut Errs, obj: Option<&Value>) {
    let spec = get(obj, "spec");
    if let Some(d) = int_of(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
        e.invalid_i("spec.leaseDurationSeconds", d, "must be greater than 0");
    }
    e.non_negative("spec.leaseTransitions", int_of(spec, "leaseTransitions"));
    if let Some(s) = str_opt(spec, "strategy") {
        for m in is_qualified_name(s) {
            e.invalid_s("spec.strategy", s, &m);
        }
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const LEASE_COLUMNS: &[Column] = &[
        NAME,
        col(
            "Holder",
            "string",
            "holderIdentity contains the identity of the holder of a current lease.",
        ),
        AGE,
    ];

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            json!(name(object)),
            json!(str_at(object, &["spec", "holderIdentity"])),
            json!(age(object, now)),
        ]
    }
}
