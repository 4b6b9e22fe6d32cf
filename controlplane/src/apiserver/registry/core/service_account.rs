//! `v1` ServiceAccount: ObjectMeta rules only (as upstream), the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::core::v1 as api;

/// The `serviceaccounts` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ServiceAccount",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    subresources: &[Subresource::Token],
    storage_prefix: "serviceaccounts",
    field_labels: &[],
    strategy: &ServiceAccounts,
};

/// The `ServiceAccount` strategy.
pub struct ServiceAccounts;

impl Strategy for ServiceAccounts {
    typed_as!("v1.ServiceAccount", api::ServiceAccount);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        // Upstream checks only ObjectMeta (done before this).
        let _ = (e, object, old);
    }

    fn columns(&self) -> &'static [Column] {
        table::SERVICE_ACCOUNT_COLUMNS
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "builder"}}),
            invalid: json!({"metadata": {"name": "Builder"}}),
            invalid_field: "metadata.name",
        }
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
        NAME,
        col(
            "Secrets",
            "string",
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        ),
        AGE,
    ];

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            json!(name(object)),
            json!(list_at(object, &["secrets"]).len()),
            json!(age(object, now)),
        ]
    }
}
