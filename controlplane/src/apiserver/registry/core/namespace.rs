//! `v1` Namespace: validation, the name label, status on create, protected namespaces, the
//! Terminating phase and the deletion of everything inside, the table and the patch schema.

use crate::apiserver::meta::{metadata_mut, name};
use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::core::v1 as api;

/// The `namespaces` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    subresources: &[Subresource::Status],
    storage_prefix: "namespaces",
    field_labels: &["status.phase"],
    strategy: &Namespaces,
};

/// The `Namespace` strategy.
pub struct Namespaces;

impl Strategy for Namespaces {
    typed_as!("v1.Namespace", api::Namespace);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        let _ = old;
        namespace(e, Some(object));
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::NAMESPACE_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn status_on_create(&self, _object: &Value) -> Option<Value> {
        Some(json!({"phase": "Active"}))
    }

    fn canonicalize(&self, object: &mut Value) {
        label_namespace_name(object);
    }

    fn undeletable(&self, name: &str) -> Option<&'static str> {
        PROTECTED_NAMESPACES
            .contains(&name)
            .then_some("this namespace may not be deleted")
    }

    fn deletes_contents(&self) -> bool {
        true
    }

    fn mark_terminating(&self, object: &mut Value) {
        object["status"]["phase"] = json!("Terminating");
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "prod"}}),
            invalid: json!({"metadata": {"name": "prod"}, "spec": {"finalizers": ["bad/finalizer/x"]}}),
            invalid_field: "spec.finalizers",
        }
    }
}

pub(crate) fn namespace(e: &mut Errs, obj: Option<&Value>) {
    finalizers(
        e,
        get(get(obj, "spec"), "finalizers"),
        "spec.finalizers",
        false,
    );
}

/// The label every namespace carries with its own name, set on create and on every update as
/// kube-apiserver does (1.21+), so NetworkPolicy `namespaceSelector`s can pick a namespace by
/// name without anyone labelling it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn label_namespace_name(object: &mut Value) {
    let name = name(object).to_owned();
    if name.is_empty() {
        return;
    }
    if let Some(metadata) = metadata_mut(object) {
        let labels = metadata.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels[NAMESPACE_NAME_LABEL] = json!(name);
    }
}

/// Namespaces that always exist and may not be deleted.
pub const PROTECTED_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const NAMESPACE_COLUMNS: &[Column] = &[
        NAME,
        col("Status", "string", "The status of the namespace"),
        AGE,
    ];

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
        let o = object;
        // Namespace status defaulting makes an unset phase read back as Active.
        let phase = or_default(str_at(o, &["status", "phase"]), "Active");
        vec![json!(name(o)), json!(phase), json!(age(o, now))]
    }
}
