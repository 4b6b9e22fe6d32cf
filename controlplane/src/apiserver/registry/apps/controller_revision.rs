//! `apps/v1` ControllerRevision: validation, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::apps::v1 as api;

/// The `controllerrevisions` resource.
pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "ControllerRevision",
    plural: "controllerrevisions",
    singular: "controllerrevision",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "controllerrevisions",
    field_labels: &[],
    strategy: &ControllerRevisions,
};

/// The `ControllerRevision` strategy.
pub struct ControllerRevisions;

impl Strategy for ControllerRevisions {
    typed_as!("v1.ControllerRevision", api::ControllerRevision);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        controller_revision(e, Some(object), old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::CONTROLLER_REVISION_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "web-1"}, "revision": 1, "data": {"spec": {}}}),
            invalid: json!({"metadata": {"name": "web-1"}, "revision": -1, "data": {"spec": {}}}),
            invalid_field: "revision",
        }
    }
}

/// `ValidateControllerRevisionCreate`/`Update`: data is required and, once written, fixed (a
/// revision is a snapshot; only its revision number moves, on rollback).
pub(crate) fn controller_revision(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    if get(obj, "data").is_none_or(Value::is_null) {
        e.required("data", "data is mandatory");
    }
    e.non_negative("revision", int_of(obj, "revision"));
    if let Some(old) = old
        && get(obj, "data").map(normalize) != get(Some(old), "data").map(normalize)
    {
        e.invalid(
            "data",
            &compact(get(obj, "data").unwrap_or(&Value::Null)),
            "field is immutable",
        );
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const CONTROLLER_REVISION_COLUMNS: &[Column] = &[
        NAME,
        col("Controller", "string", "Controller of the object"),
        col(
            "Revision",
            "string",
            "Revision indicates the revision of the state represented by Data.",
        ),
        AGE,
    ];

    /// The owning controller as `kind.group/name` (lower-cased), "<none>" without one.
    pub(crate) fn controller_of(o: &Value) -> String {
        let Some(owner) = list_at(o, &["metadata", "ownerReferences"])
            .iter()
            .find(|r| bool_at(r, &["controller"]) == Some(true))
        else {
            return "<none>".to_string();
        };
        let owner_name = str_at(owner, &["name"]);
        let kind = str_at(owner, &["kind"]);
        // The group is what precedes the version in apiVersion ("apps/v1"); core has none ("v1").
        let group = str_at(owner, &["apiVersion"])
            .split_once('/')
            .map_or("", |(group, _)| group);
        if kind.is_empty() && group.is_empty() {
            return owner_name.to_string();
        }
        let group_kind = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        format!("{}/{owner_name}", group_kind.to_lowercase())
    }

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            json!(name(object)),
            json!(controller_of(object)),
            json!(int_at(object, &["revision"])),
            json!(age(object, now)),
        ]
    }
}
