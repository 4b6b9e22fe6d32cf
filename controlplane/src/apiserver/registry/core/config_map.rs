//! `v1` ConfigMap: validation (keys, size, immutability), the table and the patch schema.

use super::secret::{MAX_SECRET_SIZE, base64_len};
use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::core::v1 as api;

/// The `configmaps` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
    singular: "configmap",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    subresources: &[],
    storage_prefix: "configmaps",
    field_labels: &[],
    strategy: &ConfigMaps,
};

/// The `ConfigMap` strategy.
pub struct ConfigMaps;

impl Strategy for ConfigMaps {
    typed_as!("v1.ConfigMap", api::ConfigMap);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        config_map(e, Some(object), old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::CONFIG_MAP_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}}),
            invalid: json!({"metadata": {"name": "cfg"}, "data": {"a b": "1"}}),
            invalid_field: "data[a b]",
        }
    }
}

pub(crate) fn config_map(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let data = obj_of(obj, "data");
    let binary = obj_of(obj, "binaryData");
    let mut total = 0usize;
    for (k, v) in data.into_iter().flatten() {
        for m in is_config_map_key(k) {
            e.invalid_s(&key("data", k), k, &m);
        }
        if binary.is_some_and(|b| b.contains_key(k)) {
            e.invalid_s(&key("data", k), k, "duplicate of key present in binaryData");
        }
        total += v.as_str().map_or(0, str::len);
    }
    for (k, v) in binary.into_iter().flatten() {
        for m in is_config_map_key(k) {
            e.invalid_s(&key("binaryData", k), k, &m);
        }
        total += v.as_str().map_or(0, base64_len);
    }
    if total > MAX_SECRET_SIZE {
        // Upstream uses field.NewPath(""), which prints as "[]".
        e.too_long("[]", MAX_SECRET_SIZE);
    }
    if let Some(old) = old {
        immutable_guard(e, obj, Some(old), &["data", "binaryData"]);
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const CONFIG_MAP_COLUMNS: &[Column] = &[
        NAME,
        col("Data", "string", "Data contains the configuration data."),
        AGE,
    ];

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            json!(name(object)),
            json!(map_len(object, &["data"]) + map_len(object, &["binaryData"])),
            json!(age(object, now)),
        ]
    }
}
