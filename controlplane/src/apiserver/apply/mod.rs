//! Server-side apply and field management: `PATCH` with `application/apply-patch+yaml`, and
//! `metadata.managedFields` on every write, as kube-apiserver keeps them with
//! structured-merge-diff. The schema facts (list types and keys, atomic maps and structs) come
//! from the generated table in `flotilla_apimachinery::schema`.
//!
//! - [`shape`]: how each position of an object merges, read from the table;
//! - [`fieldset`]: paths, field sets, their `FieldsV1` form, and the comparison of two objects;
//! - [`merge`]: merging a configuration into an object, removing paths from one;
//! - [`managed_fields`]: the entries, and what an update and an apply do to them.
//!
//! This file is the seam the REST handlers use.

pub mod fieldset;
pub mod managed_fields;
pub mod merge;
pub mod shape;

use serde_json::{Value, json};

use super::{
    meta,
    registry::{Resource, Subresource},
    status::{ApiError, FieldCause},
};
use managed_fields::{ManagedFields, Target, TrackError};
use shape::Shape;

/// The apply patch's media type.
pub const APPLY_PATCH_YAML: &str = "application/apply-patch+yaml";

/// The field-management view of writes of `resource` through `subresource`.
pub fn target(resource: &Resource, subresource: Option<Subresource>) -> Target {
    let api_version = resource.api_version();
    Target {
        shape: Shape::of_kind(&api_version, resource.kind),
        api_version,
        subresource: subresource
            .map(Subresource::name)
            .unwrap_or_default()
            .to_owned(),
        has_status: resource.has(Subresource::Status),
    }
}

/// Whether writes through `subresource` are recorded in managedFields: the main resource and
/// `status`. Bindings and evictions are not (upstream's binding storage bypasses the field
/// manager), so they keep the entries they found.
pub fn tracked(subresource: Option<Subresource>) -> bool {
    matches!(
        subresource,
        None | Some(Subresource::Status | Subresource::Approval)
    )
}

/// Records a non-apply write in `new`'s managedFields. `old` is the stored object (None on
/// create); `provided` the managedFields the client sent, which replace the stored ones when
/// they decode (kubectl's client-side to server-side apply migration rewrites them so), reset
/// tracking when they are `[]` or `[{}]`, and are ignored through subresources. A write that
/// cannot be tracked drops managedFields rather than failing, as upstream's `UpdateNoErrors`.
pub fn track_update(
    resource: &Resource,
    subresource: Option<Subresource>,
    old: Option<&Value>,
    provided: Option<Value>,
    new: &mut Value,
    manager: &str,
) {
    let target = target(resource, subresource);
    let stored = || {
        old.map(|object| {
            managed_fields::decode(&object["metadata"]["managedFields"]).unwrap_or_default()
        })
        .unwrap_or_default()
    };
    let managed = match provided {
        _ if subresource.is_some() => stored(),
        Some(list) if managed_fields::is_reset(&list) => ManagedFields::default(),
        Some(list) => match managed_fields::decode(&list) {
            Ok(managed) if !managed.0.is_empty() => managed,
            _ => stored(),
        },
        None => stored(),
    };
    let old = old.map(without_managed_fields);
    let mut object = without_managed_fields(new);
    match managed_fields::update(
        &target,
        old.as_ref(),
        &object,
        managed,
        manager,
        &meta::now(),
    ) {
        Ok(Some(managed)) => set_managed_fields(&mut object, &managed),
        Ok(None) => {}
        Err(err) => {
            tracing::warn!(
                kind = resource.kind,
                name = meta::name(new),
                "managedFields not tracked: {err}"
            );
        }
    }
    *new = object;
}

/// The object an apply of `config` by `manager` makes of `live` (None: the object does not exist
/// yet), with its managedFields. 409 on conflicts unless `force`; 422 when the configuration
/// cannot be merged (a map-list element without its key).
pub fn apply(
    resource: &Resource,
    subresource: Option<Subresource>,
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let target = target(resource, subresource);
    let (live, managed) = match live {
        Some(object) => {
            let managed =
                managed_fields::decode(&object["metadata"]["managedFields"]).map_err(|err| {
                    ApiError::internal(format!("failed to decode managed fields: {err}"))
                })?;
            (without_managed_fields(object), managed)
        }
        None => (json!({}), ManagedFields::default()),
    };
    let applied = managed_fields::apply(
        &target,
        &live,
        config,
        managed,
        manager,
        force,
        &meta::now(),
    )
    .map_err(|err| match err {
        TrackError::Conflicts(conflicts) => {
            ApiError::apply_conflict(conflicts.message(), &conflicts.causes())
        }
        TrackError::Path(err) => ApiError::invalid(
            resource.kind,
            meta::name(config),
            &[FieldCause {
                reason: "FieldValueInvalid".into(),
                message: format!("Invalid value: {}", err.message),
                field: err.path.trim_start_matches('.').to_owned(),
            }],
        ),
    })?;
    let mut object = applied.object;
    set_managed_fields(&mut object, &applied.managed);
    Ok(object)
}

/// Reads an apply body: YAML, of which JSON is a subset; it must be an object.
pub fn parse_config(body: &[u8]) -> Result<Value, ApiError> {
    let config: Value = serde_yaml_ng::from_slice(body)
        .map_err(|err| ApiError::bad_request(format!("error decoding YAML: {err}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the apply configuration must be an object (a mapping)",
        ));
    }
    Ok(config)
}

/// Upstream's checks of an apply configuration before it is merged: the endpoint's apiVersion
/// and kind, and no managedFields.
pub fn check_config(resource: &Resource, config: &Value) -> Result<(), ApiError> {
    let expected = resource.api_version();
    let given = config["apiVersion"].as_str().unwrap_or_default();
    if given != expected {
        return Err(ApiError::bad_request(format!(
            "Incorrect version specified in apply patch. Specified patch version: {given}, expected: {expected}"
        )));
    }
    let kind = config["kind"].as_str().unwrap_or_default();
    if kind != resource.kind {
        return Err(ApiError::bad_request(format!(
            "the kind of the apply configuration ({kind:?}) does not match the endpoint, which serves {}",
            resource.kind
        )));
    }
    if !config["metadata"]["managedFields"].is_null() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    Ok(())
}

fn without_managed_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("managedFields");
    }
    object
}

fn set_managed_fields(object: &mut Value, managed: &ManagedFields) {
    let encoded = managed.encode();
    let empty = encoded.as_array().is_none_or(Vec::is_empty);
    if let Some(metadata) = meta::metadata_mut(object) {
        if empty {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".into(), encoded);
        }
    }
}
