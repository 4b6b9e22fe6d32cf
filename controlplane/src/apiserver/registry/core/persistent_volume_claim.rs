//! `v1` PersistentVolumeClaim: validation (access modes, the storage request, selector, class,
//! volume mode, data sources, and what an update may change: the volume name once, the class
//! once from unset, the storage request of a bound claim), the defaults, the status a claim
//! starts with, the data-source normalisation, and the admission upstream applies to claims:
//! DefaultStorageClass, StorageObjectInUseProtection and PersistentVolumeClaimResize.
//!
//! As Kubernetes 1.33 with its default feature gates: RecoverVolumeExpansionFailure is on (a
//! bound claim may shrink its request back down to above its capacity), AnyVolumeDataSource is
//! on, CrossNamespaceVolumeDataSource and VolumeAttributesClass are off (their fields dropped).

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1 as api;

use super::persistent_volume::{
    BETA_STORAGE_CLASS_ANNOTATION, access_modes, add_finalizer, attributes_class_unchanged,
    class_name, drop_disabled_fields, immutable_mode, quantity_of, quantity_or_zero, volume_mode,
};
use crate::apiserver::admission::Admission;
use crate::apiserver::meta;
use crate::apiserver::registry::prelude::*;
use crate::apiserver::registry::storage::storage_class;
use crate::apiserver::status::ApiError;
use crate::apiserver::tables::upstream::{
    PERSISTENT_VOLUME_CLAIM_COLUMNS, persistent_volume_claim_cells,
};

/// The `persistentvolumeclaims` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "PersistentVolumeClaim",
    plural: "persistentvolumeclaims",
    singular: "persistentvolumeclaim",
    namespaced: true,
    short_names: &["pvc"],
    categories: &[],
    subresources: &[Subresource::Status],
    storage_prefix: "persistentvolumeclaims",
    field_labels: &[],
    strategy: &PersistentVolumeClaims,
};

/// The finalizer StorageObjectInUseProtection puts on every new claim; the PVC protection
/// controller removes it once no pod uses the claim.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// Why PersistentVolumeClaimResize refuses a larger request.
pub const RESIZE_REFUSED: &str = "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize";

/// The states `status.allocatedResourceStatuses` may hold, sorted as upstream lists them.
const RESIZE_STATUSES: [&str; 5] = [
    "ControllerResizeFailed",
    "ControllerResizeInProgress",
    "NodeResizeFailed",
    "NodeResizeInProgress",
    "NodeResizePending",
];

/// The `PersistentVolumeClaim` strategy.
pub struct PersistentVolumeClaims;

impl Strategy for PersistentVolumeClaims {
    typed_as!("v1.PersistentVolumeClaim", api::PersistentVolumeClaim);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        validate_claim(e, object, old);
    }

    fn default(&self, object: &mut Value) {
        default_claim(object);
    }

    /// Upstream's PrepareForCreate clears the status; decoding defaults the phase to Pending.
    fn status_on_create(&self, _object: &Value) -> Option<Value> {
        Some(json!({"phase": "Pending"}))
    }

    fn prepare_named(&self, object: &mut Value) {
        prepare_spec(object, None);
    }

    fn prepare_update(&self, old: &Value, new: &mut Value) {
        prepare_spec(new, Some(old));
    }

    fn prepare_subresource_update(&self, subresource: Subresource, _old: &Value, new: &mut Value) {
        // A status written without a phase is Pending, as decoding defaults it.
        if subresource == Subresource::Status
            && (new["status"].is_object() || new["status"].is_null())
        {
            super::persistent_volume::default_if_empty(&mut new["status"], "phase", "Pending");
        }
    }

    /// A new claim: DefaultStorageClass, then StorageObjectInUseProtection. An update:
    /// PersistentVolumeClaimResize.
    fn admit<'a>(
        &'a self,
        _admission: &'a Admission,
        lookup: &'a dyn Lookup,
        object: &'a mut Value,
        old: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            match old {
                None => {
                    default_storage_class(lookup, object).await?;
                    add_finalizer(object, PVC_PROTECTION_FINALIZER);
                    Ok(())
                }
                Some(old) => check_resize(lookup, object, old).await,
            }
        })
    }

    fn delete_returns_object(&self) -> bool {
        true
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(PERSISTENT_VOLUME_CLAIM_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        persistent_volume_claim_cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "data"}, "spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
            invalid: json!({"metadata": {"name": "data"}, "spec": {
                "accessModes": [], "resources": {"requests": {"storage": "1Gi"}}}}),
            invalid_field: "spec.accessModes",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Defaults and what the server writes
// ---------------------------------------------------------------------------------------------

/// `SetDefaults_PersistentVolumeClaimSpec`.
fn default_claim(object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let spec = map.entry("spec").or_insert(Value::Null);
    if spec.is_object() || spec.is_null() {
        set_default(spec, "volumeMode", json!("Filesystem"));
    }
}

/// The strategy's PrepareForCreate/PrepareForUpdate of the spec: drop what disabled features
/// own, then upstream's data-source compatibility and normalisation (KEP 1495).
fn prepare_spec(new: &mut Value, old: Option<&Value>) {
    drop_disabled_fields(new, old);
    let old_spec = old.map(|o| &o["spec"]);
    let Some(spec) = new.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    // CrossNamespaceVolumeDataSource is off: a reference's namespace goes unless stored.
    let namespace_in_use =
        old_spec.is_some_and(|s| !str_of(get(Some(s), "dataSourceRef"), "namespace").is_empty());
    if !namespace_in_use
        && let Some(reference) = spec.get_mut("dataSourceRef").and_then(Value::as_object_mut)
    {
        reference.remove("namespace");
    }
    enforce_data_source_compatibility(spec, old_spec);
    normalize_data_sources(spec);
}

/// `EnforceDataSourceBackwardsCompatibility`: without a `dataSourceRef`, a new `dataSource`
/// other than a claim or a VolumeSnapshot is dropped, as older servers ignored it.
fn enforce_data_source_compatibility(spec: &mut Value, old_spec: Option<&Value>) {
    if old_spec.is_some_and(|s| get(Some(s), "dataSource").is_some())
        || get(Some(spec), "dataSourceRef").is_some()
    {
        return;
    }
    let Some(source) = get(Some(spec), "dataSource") else {
        return;
    };
    let group = str_of(Some(source), "apiGroup");
    let kind = str_of(Some(source), "kind");
    let allowed = (group.is_empty() && kind == "PersistentVolumeClaim")
        || (group == "snapshot.storage.k8s.io" && kind == "VolumeSnapshot");
    if !allowed && let Some(spec) = spec.as_object_mut() {
        spec.remove("dataSource");
    }
}

/// `NormalizeDataSources`: `dataSource` and `dataSourceRef` name the same object; whichever the
/// client left out is filled in from the other (a cross-namespace reference has no twin).
fn normalize_data_sources(spec: &mut Value) {
    let reference_of = |source: &Value| {
        let mut copy = Map::new();
        if let Some(group) = get(Some(source), "apiGroup") {
            copy.insert("apiGroup".to_owned(), group.clone());
        }
        copy.insert("kind".to_owned(), json!(str_of(Some(source), "kind")));
        copy.insert("name".to_owned(), json!(str_of(Some(source), "name")));
        Value::Object(copy)
    };
    let source = get(Some(spec), "dataSource").cloned();
    let reference = get(Some(spec), "dataSourceRef").cloned();
    match (source, reference) {
        (Some(source), None) => spec["dataSourceRef"] = reference_of(&source),
        (None, Some(reference)) if str_of(Some(&reference), "namespace").is_empty() => {
            spec["dataSource"] = reference_of(&reference);
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// `ValidatePersistentVolumeClaim`, on update `ValidatePersistentVolumeClaimUpdate`, and the
/// status rules of `ValidatePersistentVolumeClaimStatusUpdate` (status writes keep the spec, so
/// the spec rules pass for them).
fn validate_claim(e: &mut Errs, object: &Value, old: Option<&Value>) {
    let spec = get(Some(object), "spec");
    // A stored claim whose data source names an API group keeps it even if that group is no
    // longer valid.
    let allow_invalid_group = old.is_some_and(|o| {
        let old_spec = get(Some(o), "spec");
        ["dataSource", "dataSourceRef"]
            .iter()
            .any(|f| get(get(old_spec, f), "apiGroup").is_some())
    });
    claim_spec(e, spec, "spec", allow_invalid_group);
    if let Some(old) = old {
        claim_update(e, object, old);
    }
    claim_status(e, get(Some(object), "status"));
}

/// `ValidatePersistentVolumeClaimSpec` at `p` (a claim's `spec`, or a claim template's).
pub(crate) fn claim_spec(e: &mut Errs, spec: Option<&Value>, p: &str, allow_invalid_group: bool) {
    access_modes(e, spec, p, "at least 1 access mode is required");
    if let Some(selector) = get(spec, "selector") {
        label_selector(e, Some(selector), &child(p, "selector"));
    }
    // Upstream's path for the request is `<spec>.resources[storage]`, without `requests`.
    let storage_path = key(&child(p, "resources"), "storage");
    match obj_of(get(spec, "resources"), "requests").and_then(|r| r.get("storage")) {
        None => e.required(&storage_path, ""),
        Some(value) => match quantity_of(value) {
            Some(Ok((text, quantity))) if quantity <= Quantity::ZERO => {
                e.invalid_s(&storage_path, &text, "must be greater than zero");
            }
            _ => {}
        },
    }
    class_name(e, spec, p);
    volume_mode(e, spec, p);
    let source = get(spec, "dataSource");
    let reference = get(spec, "dataSourceRef");
    if let Some(source) = source {
        data_source(e, source, &child(p, "dataSource"), allow_invalid_group);
    }
    if let Some(reference) = reference {
        data_source(
            e,
            reference,
            &child(p, "dataSourceRef"),
            allow_invalid_group,
        );
        let namespace = str_of(Some(reference), "namespace");
        if !namespace.is_empty() {
            for m in is_dns1123_label(namespace) {
                e.invalid_s(&child(p, "dataSourceRef.namespace"), namespace, &m);
            }
        }
    }
    // Upstream prints the offending *field.Path itself as the value.
    let shown = child(p, "dataSource");
    match (source, reference) {
        (Some(_), Some(reference)) if !str_of(Some(reference), "namespace").is_empty() => {
            e.invalid(
                p,
                &shown,
                "may not be specified when dataSourceRef.namespace is specified",
            );
        }
        (Some(source), Some(reference))
            if get(Some(source), "apiGroup") != get(Some(reference), "apiGroup")
                || str_of(Some(source), "kind") != str_of(Some(reference), "kind")
                || str_of(Some(source), "name") != str_of(Some(reference), "name") =>
        {
            e.invalid(p, &shown, "must match dataSourceRef");
        }
        _ => {}
    }
}

/// `validateDataSource` and `validateDataSourceRef` (the namespace is checked by the caller).
fn data_source(e: &mut Errs, source: &Value, path: &str, allow_invalid_group: bool) {
    let source = Some(source);
    if str_of(source, "name").is_empty() {
        e.required(&child(path, "name"), "");
    }
    let kind = str_of(source, "kind");
    if kind.is_empty() {
        e.required(&child(path, "kind"), "");
    }
    let group = str_of(source, "apiGroup");
    if group.is_empty() && kind != "PersistentVolumeClaim" {
        e.invalid_s(
            path,
            kind,
            "must be 'PersistentVolumeClaim' when referencing the default apiGroup",
        );
    }
    if !group.is_empty() && !allow_invalid_group {
        for m in is_dns1123_subdomain(group) {
            e.invalid_s(&child(path, "apiGroup"), group, &m);
        }
    }
}

/// `ValidatePersistentVolumeClaimUpdate`: the spec is fixed, except that the volume name may
/// be set once, the class may be set once while unset (or from the beta annotation), and a
/// bound claim's storage request may change (down to above its capacity).
fn claim_update(e: &mut Errs, new: &Value, old: &Value) {
    let (new_spec, old_spec) = (get(Some(new), "spec"), get(Some(old), "spec"));
    let mut new_clone = new_spec.cloned().unwrap_or_else(|| json!({}));
    let mut old_clone = old_spec.cloned().unwrap_or_else(|| json!({}));
    if !new_clone.is_object() || !old_clone.is_object() {
        return;
    }
    // Objects stored before normalisation compare normalised, as upstream's PrepareForUpdate
    // normalises the old object too.
    normalize_data_sources(&mut old_clone);
    // The binder sets the volume name once.
    if str_of(old_spec, "volumeName").is_empty() {
        set_or_remove(&mut old_clone, "volumeName", get(new_spec, "volumeName"));
    }
    let annotation = |o: &Value| {
        obj_of(get(Some(o), "metadata"), "annotations")
            .and_then(|a| a.get(BETA_STORAGE_CLASS_ANNOTATION))
            .map(|v| v.as_str().unwrap_or_default().to_owned())
    };
    let (old_annotation, new_annotation) = (annotation(old), annotation(new));
    let old_class = str_opt(old_spec, "storageClassName");
    let new_class = str_opt(new_spec, "storageClassName");
    let from_annotation = old_annotation.as_deref().is_some_and(|old_annotation| {
        old_class.is_none()
            && new_class == Some(old_annotation)
            && new_annotation
                .as_deref()
                .is_none_or(|new_annotation| new_annotation == old_annotation)
    });
    if from_annotation {
        remove(&mut new_clone, "storageClassName");
    } else {
        let (new_value, old_value) = (
            new_annotation.clone().unwrap_or_default(),
            old_annotation.clone().unwrap_or_default(),
        );
        if new_value != old_value {
            e.invalid_s(
                &format!("metadata.annotations.{BETA_STORAGE_CLASS_ANNOTATION}"),
                &new_value,
                IMMUTABLE,
            );
        }
        // A class may be set once while unset (and matching a beta annotation, if any).
        let from_nil = new_class.is_some_and(|new_class| {
            old_class.is_none()
                && old_annotation
                    .as_deref()
                    .is_none_or(|old_annotation| old_annotation == new_class)
        });
        if from_nil {
            remove(&mut new_clone, "storageClassName");
        }
    }
    let bound = str_of(get(Some(new), "status"), "phase") == "Bound";
    if bound
        && let Some(requests) = new_clone.pointer_mut("/resources/requests")
        && requests.is_object()
    {
        let old_storage = old_spec
            .and_then(|s| s.pointer("/resources/requests/storage"))
            .cloned();
        set_or_remove(requests, "storage", old_storage.as_ref());
    }
    set_or_remove(
        &mut new_clone,
        "volumeAttributesClassName",
        get(old_spec, "volumeAttributesClassName"),
    );
    canonical_quantities(&mut new_clone);
    canonical_quantities(&mut old_clone);
    let (new_clone, old_clone) = (normalize(&new_clone), normalize(&old_clone));
    if new_clone != old_clone {
        let mut diffs = Vec::new();
        diff_values(&old_clone, &new_clone, "spec", &mut diffs);
        e.forbidden(
            "spec",
            &format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                diffs.join("\n")
            ),
        );
    }
    let storage = |spec: Option<&Value>| {
        quantity_or_zero(spec.and_then(|s| s.pointer("/resources/requests/storage")))
    };
    let capacity =
        quantity_or_zero(get(Some(old), "status").and_then(|s| s.pointer("/capacity/storage")));
    let new_size = storage(new_spec);
    if new_size < storage(old_spec) && new_size <= capacity {
        e.forbidden(
            "spec.resources.requests.storage",
            "field can not be less than status.capacity",
        );
    }
    immutable_mode(e, new_spec, old_spec);
    attributes_class_unchanged(e, new_spec, old_spec);
}

/// Sets `field` of `object` to `value`, or removes it for None.
fn set_or_remove(object: &mut Value, field: &str, value: Option<&Value>) {
    if let Some(map) = object.as_object_mut() {
        match value {
            Some(value) => {
                map.insert(field.to_owned(), value.clone());
            }
            None => {
                map.remove(field);
            }
        }
    }
}

/// Removes `field` of `object`.
fn remove(object: &mut Value, field: &str) {
    set_or_remove(object, field, None);
}

/// Writes the request and limit quantities in one form, so `1Gi` and `1024Mi` compare equal
/// (upstream compares parsed quantities).
fn canonical_quantities(spec: &mut Value) {
    for list in ["requests", "limits"] {
        let Some(map) = spec
            .pointer_mut(&format!("/resources/{list}"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for value in map.values_mut() {
            if let Some(Ok((_, quantity))) = quantity_of(value) {
                *value = json!(quantity.to_string());
            }
        }
    }
}

/// The status rules of `ValidatePersistentVolumeClaimStatusUpdate`.
fn claim_status(e: &mut Errs, status: Option<&Value>) {
    for (name, value) in obj_of(status, "capacity").into_iter().flatten() {
        if let Some(Ok((_, quantity))) = quantity_of(value)
            && quantity.value() < 0
        {
            e.invalid_i(
                &key("status.capacity", name),
                quantity.value(),
                "must be a valid resource quantity",
            );
        }
    }
    // Upstream's path here is singular.
    let statuses_path = "status.allocatedResourceStatus";
    for (name, state) in obj_of(status, "allocatedResourceStatuses")
        .into_iter()
        .flatten()
    {
        resource_key(e, name, statuses_path);
        if !state.as_str().is_some_and(|s| RESIZE_STATUSES.contains(&s)) {
            e.not_supported(statuses_path, name, &RESIZE_STATUSES);
        }
    }
    let allocated_path = "status.allocatedResources";
    for (name, value) in obj_of(status, "allocatedResources").into_iter().flatten() {
        if !resource_key(e, name, allocated_path) {
            continue;
        }
        if let Some(Ok((text, quantity))) = quantity_of(value) {
            let path = key(allocated_path, name);
            if quantity.value() < 0 {
                e.invalid_i(&path, quantity.value(), "must be a valid resource quantity");
            } else if quantity.is_negative() {
                e.invalid_s(&path, &text, IS_NEGATIVE);
            }
        }
    }
}

/// `validatePersistentVolumeClaimResourceKey`: a qualified name, and of the native names
/// (unprefixed or kubernetes.io) only `storage`. Returns whether the key is valid.
fn resource_key(e: &mut Errs, name: &str, path: &str) -> bool {
    let msgs = is_qualified_name(name);
    for m in &msgs {
        e.invalid_s(path, name, m);
    }
    if !msgs.is_empty() {
        return false;
    }
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    if native && name != "storage" {
        e.not_supported(path, name, &["storage"]);
        return false;
    }
    true
}

// ---------------------------------------------------------------------------------------------
// Admission
// ---------------------------------------------------------------------------------------------

/// `helper.PersistentVolumeClaimHasClass`: the beta annotation or the field (even "") is set.
fn has_class(claim: &Value) -> bool {
    obj_of(get(Some(claim), "metadata"), "annotations")
        .is_some_and(|a| a.contains_key(BETA_STORAGE_CLASS_ANNOTATION))
        || get(get(Some(claim), "spec"), "storageClassName").is_some()
}

/// `helper.GetPersistentVolumeClaimClass`: the beta annotation first, then the field.
pub fn claim_class(claim: &Value) -> &str {
    obj_of(get(Some(claim), "metadata"), "annotations")
        .and_then(|a| a.get(BETA_STORAGE_CLASS_ANNOTATION))
        .map(|v| v.as_str().unwrap_or_default())
        .unwrap_or_else(|| str_of(get(Some(claim), "spec"), "storageClassName"))
}

/// DefaultStorageClass: a new claim that names no class gets the default class (the newest,
/// if several are marked default); `storageClassName: ""` asks for no class and is kept.
async fn default_storage_class(lookup: &dyn Lookup, claim: &mut Value) -> Result<(), ApiError> {
    if has_class(claim) || !(claim["spec"].is_object() || claim["spec"].is_null()) {
        return Ok(());
    }
    let classes = lookup.list(&storage_class::RESOURCE, None).await?;
    if let Some(class) = storage_class::default_class(&classes) {
        claim["spec"]["storageClassName"] = json!(meta::name(class));
    }
    Ok(())
}

/// PersistentVolumeClaimResize: a larger request needs a bound claim whose (unchanged) class
/// allows volume expansion.
async fn check_resize(lookup: &dyn Lookup, claim: &Value, old: &Value) -> Result<(), ApiError> {
    let size = |c: &Value| quantity_or_zero(c.pointer("/spec/resources/requests/storage"));
    if size(claim) <= size(old) {
        return Ok(());
    }
    // Upstream's plugin validates after the object's own validation, so an update that is
    // invalid anyway gets its 422 rather than this 403.
    if !RESOURCE.validate(claim, Some(old)).is_empty() {
        return Ok(());
    }
    let forbidden =
        |why: &str| ApiError::forbidden(&RESOURCE.qualified_name(), meta::name(claim), why);
    if old["status"]["phase"].as_str() != Some("Bound") {
        return Err(forbidden(
            "Only bound persistent volume claims can be expanded",
        ));
    }
    let class = claim_class(claim);
    if class.is_empty() || class != claim_class(old) {
        return Err(forbidden(RESIZE_REFUSED));
    }
    let classes = lookup.list(&storage_class::RESOURCE, None).await?;
    let expandable = classes
        .iter()
        .find(|c| meta::name(c) == class)
        .is_some_and(|c| c["allowVolumeExpansion"] == json!(true));
    if expandable {
        Ok(())
    } else {
        Err(forbidden(RESIZE_REFUSED))
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (project rule).
mod tests {
    use super::*;
    use crate::apiserver::machinery::field::Cause;
    use crate::apiserver::machinery::field::message_at;

    fn claim(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "data", "namespace": "default"}, "spec": spec})
    }

    fn spec() -> Value {
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}})
    }

    /// A claim as stored: defaulted, prepared, with `status`.
    fn stored(spec: Value, status: Value) -> Value {
        let mut object = claim(spec);
        default_claim(&mut object);
        prepare_spec(&mut object, None);
        object["status"] = status;
        object
    }

    fn causes(object: &Value, old: Option<&Value>) -> Vec<Cause> {
        RESOURCE.validate(object, old)
    }

    /// The storage classes admission reads.
    struct Classes(Vec<Value>);

    impl Lookup for Classes {
        fn list<'a>(
            &'a self,
            resource: &'static Resource,
            _namespace: Option<&'a str>,
        ) -> BoxFuture<'a, Result<Vec<Value>, ApiError>> {
            assert_eq!(resource.plural, "storageclasses");
            Box::pin(std::future::ready(Ok(self.0.clone())))
        }
    }

    fn class(name: &str, created: &str, default: bool, expand: bool) -> Value {
        let mut class = json!({"metadata": {"name": name, "creationTimestamp": created},
                               "provisioner": "flotilla.io/local-path", "allowVolumeExpansion": expand});
        if default {
            class["metadata"]["annotations"] =
                json!({"storageclass.kubernetes.io/is-default-class": "true"});
        }
        class
    }

    fn admit(classes: Vec<Value>, object: &mut Value, old: Option<&Value>) -> Result<(), ApiError> {
        futures::executor::block_on(PersistentVolumeClaims.admit(
            &Admission::default(),
            &Classes(classes),
            object,
            old,
        ))
    }

    #[test]
    fn defaults_and_created_status_are_upstreams() {
        let mut object = claim(spec());
        default_claim(&mut object);
        assert_eq!(object["spec"]["volumeMode"], "Filesystem");
        assert_eq!(
            PersistentVolumeClaims.status_on_create(&object),
            Some(json!({"phase": "Pending"}))
        );
        let mut written = json!({"status": {}});
        PersistentVolumeClaims.prepare_subresource_update(
            Subresource::Status,
            &object,
            &mut written,
        );
        assert_eq!(written["status"]["phase"], "Pending");
    }

    #[test]
    fn access_modes_and_storage_are_required() {
        let c = causes(&claim(json!({"resources": {}})), None);
        assert_eq!(
            message_at(&c, "spec.accessModes"),
            "spec.accessModes: Required value: at least 1 access mode is required"
        );
        assert_eq!(
            message_at(&c, "spec.resources[storage]"),
            "spec.resources[storage]: Required value"
        );
        let mut s = spec();
        s["resources"]["requests"]["storage"] = json!("0");
        let c = causes(&claim(s), None);
        assert_eq!(
            message_at(&c, "spec.resources[storage]"),
            "spec.resources[storage]: Invalid value: \"0\": must be greater than zero"
        );
        let mut s = spec();
        s["accessModes"] = json!(["ReadWriteOncePod", "ReadWriteOnce"]);
        let c = causes(&claim(s), None);
        assert_eq!(
            message_at(&c, "spec.accessModes"),
            "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"
        );
    }

    #[test]
    fn selector_class_and_mode_are_checked() {
        let mut s = spec();
        s["selector"] = json!({"matchExpressions": [{"key": "tier", "operator": "Near"}]});
        s["storageClassName"] = json!("Not A Class");
        s["volumeMode"] = json!("Raw");
        let c = causes(&claim(s), None);
        assert_eq!(
            message_at(&c, "spec.selector.matchExpressions[0].operator"),
            "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator"
        );
        assert!(
            message_at(&c, "spec.storageClassName")
                .starts_with("spec.storageClassName: Invalid value: \"Not A Class\"")
        );
        assert_eq!(
            message_at(&c, "spec.volumeMode"),
            "spec.volumeMode: Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\""
        );
        // "" asks for no class and is valid.
        let mut s = spec();
        s["storageClassName"] = json!("");
        assert!(causes(&claim(s), None).is_empty());
    }

    #[test]
    fn data_sources_are_normalised_and_checked() {
        // A claim source gets its twin reference.
        let mut s = spec();
        s["dataSource"] = json!({"kind": "PersistentVolumeClaim", "name": "origin"});
        let mut object = claim(s);
        prepare_spec(&mut object, None);
        assert_eq!(
            object["spec"]["dataSourceRef"],
            json!({"kind": "PersistentVolumeClaim", "name": "origin"})
        );
        assert!(causes(&object, None).is_empty());
        // A source of another kind without a reference is dropped, as upstream drops it.
        let mut s = spec();
        s["dataSource"] = json!({"apiGroup": "example.com", "kind": "Backup", "name": "b"});
        let mut object = claim(s);
        prepare_spec(&mut object, None);
        assert!(object["spec"].get("dataSource").is_none());
        // A reference keeps it, and names it in dataSource too.
        let mut s = spec();
        s["dataSourceRef"] =
            json!({"apiGroup": "example.com", "kind": "Backup", "name": "b", "namespace": "other"});
        let mut object = claim(s);
        prepare_spec(&mut object, None);
        assert_eq!(
            object["spec"]["dataSource"],
            json!({"apiGroup": "example.com", "kind": "Backup", "name": "b"})
        );
        assert!(object["spec"]["dataSourceRef"].get("namespace").is_none());
        // The core group only holds claims.
        let mut s = spec();
        s["dataSource"] = json!({"kind": "Secret", "name": "s"});
        s["dataSourceRef"] = json!({"kind": "Secret", "name": "s"});
        let c = causes(&claim(s), None);
        assert_eq!(
            message_at(&c, "spec.dataSource"),
            "spec.dataSource: Invalid value: \"Secret\": must be 'PersistentVolumeClaim' when referencing the default apiGroup"
        );
        let mut s = spec();
        s["dataSource"] = json!({"kind": "PersistentVolumeClaim", "name": "a"});
        s["dataSourceRef"] = json!({"kind": "PersistentVolumeClaim", "name": ""});
        let c = causes(&claim(s), None);
        assert_eq!(
            message_at(&c, "spec.dataSourceRef.name"),
            "spec.dataSourceRef.name: Required value"
        );
        assert_eq!(
            message_at(&c, "spec"),
            "spec: Invalid value: spec.dataSource: must match dataSourceRef"
        );
    }

    #[test]
    fn the_spec_is_immutable_but_for_what_upstream_allows() {
        let old = stored(spec(), json!({"phase": "Pending"}));
        let mut new = old.clone();
        new["spec"]["accessModes"] = json!(["ReadWriteMany"]);
        let c = causes(&new, Some(&old));
        assert_eq!(
            message_at(&c, "spec"),
            "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n- spec.accessModes[0]: \"ReadWriteOnce\"\n+ spec.accessModes[0]: \"ReadWriteMany\""
        );
        // The binder sets the volume name once.
        let mut new = old.clone();
        new["spec"]["volumeName"] = json!("pv-1");
        assert!(causes(&new, Some(&old)).is_empty());
        let once = new;
        let mut new = once.clone();
        new["spec"]["volumeName"] = json!("pv-2");
        assert!(message_at(&causes(&new, Some(&once)), "spec").contains("spec.volumeName"));
        // A class may be set while unset, then no more.
        let mut new = old.clone();
        new["spec"]["storageClassName"] = json!("local-path");
        assert!(causes(&new, Some(&old)).is_empty());
        let classed = new;
        let mut new = classed.clone();
        new["spec"]["storageClassName"] = json!("other");
        assert!(
            message_at(&causes(&new, Some(&classed)), "spec").contains("spec.storageClassName")
        );
        // The same request written another way is no change.
        let mut new = old.clone();
        new["spec"]["resources"]["requests"]["storage"] = json!("1024Mi");
        assert!(causes(&new, Some(&old)).is_empty());
        // An unbound claim may not change its request.
        let mut new = old.clone();
        new["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert!(
            message_at(&causes(&new, Some(&old)), "spec")
                .contains("spec.resources.requests.storage")
        );
        // The volume mode is fixed.
        let mut new = old.clone();
        new["spec"]["volumeMode"] = json!("Block");
        let c = causes(&new, Some(&old));
        assert_eq!(
            message_at(&c, "volumeMode"),
            "volumeMode: Invalid value: \"Block\": field is immutable"
        );
    }

    #[test]
    fn a_bound_claim_may_grow_and_shrink_only_above_its_capacity() {
        let mut s = spec();
        s["resources"]["requests"]["storage"] = json!("2Gi");
        let old = stored(s, json!({"phase": "Bound", "capacity": {"storage": "1Gi"}}));
        let mut new = old.clone();
        new["spec"]["resources"]["requests"]["storage"] = json!("5Gi");
        assert!(causes(&new, Some(&old)).is_empty());
        new["spec"]["resources"]["requests"]["storage"] = json!("1536Mi");
        assert!(causes(&new, Some(&old)).is_empty());
        new["spec"]["resources"]["requests"]["storage"] = json!("1Gi");
        let c = causes(&new, Some(&old));
        assert_eq!(
            message_at(&c, "spec.resources.requests.storage"),
            "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
        );
    }

    #[test]
    fn the_beta_class_annotation_is_immutable_but_may_become_the_field() {
        let mut old = stored(spec(), json!({"phase": "Pending"}));
        old["metadata"]["annotations"] = json!({BETA_STORAGE_CLASS_ANNOTATION: "slow"});
        let mut new = old.clone();
        new["spec"]["storageClassName"] = json!("slow");
        assert!(causes(&new, Some(&old)).is_empty());
        let mut new = old.clone();
        new["metadata"]["annotations"][BETA_STORAGE_CLASS_ANNOTATION] = json!("fast");
        let c = causes(&new, Some(&old));
        assert_eq!(
            message_at(
                &c,
                "metadata.annotations.volume.beta.kubernetes.io/storage-class"
            ),
            "metadata.annotations.volume.beta.kubernetes.io/storage-class: Invalid value: \"fast\": field is immutable"
        );
    }

    #[test]
    fn status_resources_are_checked() {
        let mut object = stored(
            spec(),
            json!({"phase": "Bound", "capacity": {"storage": "-1"},
            "allocatedResourceStatuses": {"storage": "Resizing", "cpu": "NodeResizePending"}}),
        );
        object["status"]["allocatedResources"] = json!({"storage": "1Gi", "memory": "1Gi"});
        let c = causes(&object, None);
        let messages: Vec<String> = c.iter().map(ToString::to_string).collect();
        assert!(
            messages.contains(
                &"status.capacity[storage]: Invalid value: -1: must be a valid resource quantity"
                    .to_owned()
            ),
            "{messages:#?}"
        );
        assert!(messages.contains(&"status.allocatedResourceStatus: Unsupported value: \"storage\": supported values: \"ControllerResizeFailed\", \"ControllerResizeInProgress\", \"NodeResizeFailed\", \"NodeResizeInProgress\", \"NodeResizePending\"".to_owned()), "{messages:#?}");
        assert!(messages.contains(&"status.allocatedResourceStatus: Unsupported value: \"cpu\": supported values: \"storage\"".to_owned()), "{messages:#?}");
        assert!(messages.contains(&"status.allocatedResources: Unsupported value: \"memory\": supported values: \"storage\"".to_owned()), "{messages:#?}");
    }

    #[test]
    fn default_storage_class_fills_in_the_newest_default() {
        let classes = vec![
            class("old-default", "2024-01-01T00:00:00Z", true, false),
            class("new-default", "2025-01-01T00:00:00Z", true, false),
            class("tie-b", "2025-01-01T00:00:00Z", false, false),
            class("plain", "2026-01-01T00:00:00Z", false, false),
        ];
        let mut object = claim(spec());
        admit(classes.clone(), &mut object, None).unwrap();
        assert_eq!(object["spec"]["storageClassName"], "new-default");
        // Ties go to the first name.
        let mut tied = classes.clone();
        tied.push(class("a-default", "2025-01-01T00:00:00Z", true, false));
        let mut object = claim(spec());
        admit(tied, &mut object, None).unwrap();
        assert_eq!(object["spec"]["storageClassName"], "a-default");
        // "" asks for no class; a beta annotation names one.
        let mut s = spec();
        s["storageClassName"] = json!("");
        let mut object = claim(s);
        admit(classes.clone(), &mut object, None).unwrap();
        assert_eq!(object["spec"]["storageClassName"], "");
        let mut object = claim(spec());
        object["metadata"]["annotations"] = json!({BETA_STORAGE_CLASS_ANNOTATION: "slow"});
        admit(classes.clone(), &mut object, None).unwrap();
        assert!(object["spec"].get("storageClassName").is_none());
        // The beta default annotation counts too; without any default nothing is set.
        let mut beta = class("beta-default", "2020-01-01T00:00:00Z", false, false);
        beta["metadata"]["annotations"] =
            json!({"storageclass.beta.kubernetes.io/is-default-class": "true"});
        let mut object = claim(spec());
        admit(vec![beta], &mut object, None).unwrap();
        assert_eq!(object["spec"]["storageClassName"], "beta-default");
        let mut object = claim(spec());
        admit(
            vec![class("plain", "2026-01-01T00:00:00Z", false, false)],
            &mut object,
            None,
        )
        .unwrap();
        assert!(object["spec"].get("storageClassName").is_none());
    }

    #[test]
    fn a_new_claim_gets_the_protection_finalizer() {
        let mut object = claim(spec());
        object["metadata"]["finalizers"] = json!(["example.com/keep"]);
        admit(Vec::new(), &mut object, None).unwrap();
        assert_eq!(
            object["metadata"]["finalizers"],
            json!(["example.com/keep", PVC_PROTECTION_FINALIZER])
        );
    }

    #[test]
    fn growing_needs_a_bound_claim_of_an_expandable_class() {
        let mut s = spec();
        s["storageClassName"] = json!("local-path");
        let bound = stored(
            s.clone(),
            json!({"phase": "Bound", "capacity": {"storage": "1Gi"}}),
        );
        let mut grown = bound.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        let fixed = vec![class("local-path", "2025-01-01T00:00:00Z", true, false)];
        let err = admit(fixed, &mut grown.clone(), Some(&bound)).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            format!("persistentvolumeclaims \"data\" is forbidden: {RESIZE_REFUSED}")
        );
        let expandable = vec![class("local-path", "2025-01-01T00:00:00Z", true, true)];
        admit(expandable.clone(), &mut grown.clone(), Some(&bound)).unwrap();
        // An unbound claim's larger request is invalid (422) before admission judges it, as
        // upstream validates before its validating plugins run.
        let pending = stored(s, json!({"phase": "Pending"}));
        let mut grown = pending.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        admit(expandable.clone(), &mut grown, Some(&pending)).unwrap();
        assert!(message_at(&causes(&grown, Some(&pending)), "spec").starts_with("spec: Forbidden"));
        // Shrinking is validation's business, not admission's.
        let mut shrunk = bound.clone();
        shrunk["spec"]["resources"]["requests"]["storage"] = json!("512Mi");
        admit(Vec::new(), &mut shrunk, Some(&bound)).unwrap();
    }
}
