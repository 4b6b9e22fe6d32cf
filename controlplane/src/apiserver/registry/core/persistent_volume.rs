//! `v1` PersistentVolume: validation (exactly one volume source and that source's own rules,
//! capacity, access modes, reclaim policy, node affinity, class, volume mode, and what an update
//! may change), the defaults, the status a volume starts with and the phase-transition time its
//! status writes keep, StorageObjectInUseProtection's finalizer, the table and the patch schema.
//!
//! As Kubernetes 1.33 (the version Flotilla serves) with its default feature gates:
//! `VolumeAttributesClass` is off, so `spec.volumeAttributesClassName` is dropped on write.

mod sources;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1 as api;

use crate::apiserver::admission::Admission;
use crate::apiserver::meta;
use crate::apiserver::registry::prelude::*;
use crate::apiserver::status::ApiError;
use crate::apiserver::tables::upstream::{PERSISTENT_VOLUME_COLUMNS, persistent_volume_cells};

/// The `persistentvolumes` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "PersistentVolume",
    plural: "persistentvolumes",
    singular: "persistentvolume",
    namespaced: false,
    short_names: &["pv"],
    categories: &[],
    subresources: &[Subresource::Status],
    storage_prefix: "persistentvolumes",
    field_labels: &[],
    strategy: &PersistentVolumes,
};

/// The finalizer StorageObjectInUseProtection puts on every new PersistentVolume; the PV
/// protection controller removes it once no claim is bound to the volume.
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// The access modes a volume or claim may ask for, sorted as upstream lists them.
pub const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// The volume modes, sorted as upstream lists them.
pub const VOLUME_MODES: [&str; 2] = ["Block", "Filesystem"];

/// The reclaim policies a volume may have (a StorageClass allows only Delete and Retain).
pub const RECLAIM_POLICIES: [&str; 3] = ["Delete", "Recycle", "Retain"];

/// The phases a volume's status may be in.
pub const PHASES: [&str; 5] = ["Available", "Bound", "Failed", "Pending", "Released"];

/// The legacy annotation that names a volume's or claim's class (it wins over the spec field).
pub const BETA_STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// The legacy mount-options annotation, allowed only on the volume types that take options.
const MOUNT_OPTIONS_ANNOTATION: &str = "volume.beta.kubernetes.io/mount-options";

/// The `PersistentVolume` strategy.
pub struct PersistentVolumes;

impl Strategy for PersistentVolumes {
    typed_as!("v1.PersistentVolume", api::PersistentVolume);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        validate_volume(e, object, old);
    }

    fn default(&self, object: &mut Value) {
        default_volume(object);
    }

    /// Upstream's PrepareForCreate resets the status to Pending and stamps the transition.
    fn status_on_create(&self, _object: &Value) -> Option<Value> {
        Some(json!({"phase": "Pending", "lastPhaseTransitionTime": meta::now()}))
    }

    fn prepare_named(&self, object: &mut Value) {
        drop_disabled_fields(object, None);
    }

    fn prepare_update(&self, old: &Value, new: &mut Value) {
        drop_disabled_fields(new, Some(old));
    }

    fn prepare_subresource_update(&self, subresource: Subresource, old: &Value, new: &mut Value) {
        if subresource == Subresource::Status {
            stamp_phase_transition(old, new, &meta::now());
        }
    }

    /// StorageObjectInUseProtection: a new volume carries the PV protection finalizer.
    fn admit<'a>(
        &'a self,
        _admission: &'a Admission,
        lookup: &'a dyn Lookup,
        object: &'a mut Value,
        old: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        if let Some(node) = lookup.requesting_node()
            && let Err(why) = node_may_write(&node, object, old)
        {
            let name = crate::apiserver::meta::name(object).to_owned();
            return answered(Err(ApiError::forbidden(
                &RESOURCE.qualified_name(),
                &name,
                &why,
            )));
        }
        if old.is_none() {
            add_finalizer(object, PV_PROTECTION_FINALIZER);
        }
        answered(Ok(()))
    }

    fn delete_returns_object(&self) -> bool {
        true
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(PERSISTENT_VOLUME_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        persistent_volume_cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "pv-1"}, "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "hostPath": {"path": "/var/lib/flotilla/pv-1"}}}),
            invalid: json!({"metadata": {"name": "pv-1"}, "spec": {
                "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteSometimes"],
                "hostPath": {"path": "/var/lib/flotilla/pv-1"}}}),
            invalid_field: "spec.accessModes",
        }
    }
}

/// NodeRestriction for volumes: a node agent (the node half of the local-path provisioner)
/// creates only local-path volumes held on itself (annotated so, with node affinity to itself
/// alone), and changes only such volumes' metadata (its clean-up finalizer), never their spec.
fn node_may_write(node: &str, object: &Value, old: Option<&Value>) -> Result<(), String> {
    use flotilla_apimachinery::volumes::{
        HOSTNAME_LABEL, LOCAL_PATH_NODE as HOLDER, LOCAL_PATH_PROVISIONER, PROVISIONED_BY,
    };
    let held_here = |volume: &Value| {
        let annotations = &volume["metadata"]["annotations"];
        annotations[PROVISIONED_BY] == LOCAL_PATH_PROVISIONER && annotations[HOLDER] == node
    };
    match old {
        None => {
            let affinity = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}});
            if held_here(object) && object["spec"]["nodeAffinity"] == affinity {
                Ok(())
            } else {
                Err(format!(
                    "node {node:?} may only create local-path volumes held on itself (annotated {PROVISIONED_BY}={LOCAL_PATH_PROVISIONER}, {HOLDER}={node}, with node affinity to {node} alone)"
                ))
            }
        }
        Some(old) => {
            let same = old["spec"] == object["spec"]
                && old["metadata"]["annotations"] == object["metadata"]["annotations"]
                && old["metadata"]["labels"] == object["metadata"]["labels"];
            if held_here(old) && same {
                Ok(())
            } else {
                Err(format!(
                    "node {node:?} may only change the finalizers of local-path volumes held on itself"
                ))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Defaults and what the server writes
// ---------------------------------------------------------------------------------------------

/// `SetDefaults_PersistentVolume` and the defaults of the volume sources in its spec.
fn default_volume(object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    let spec = map.entry("spec").or_insert(Value::Null);
    if !spec.is_object() && !spec.is_null() {
        return;
    }
    default_if_empty(spec, "persistentVolumeReclaimPolicy", "Retain");
    set_default(spec, "volumeMode", json!("Filesystem"));
    sources::default_sources(spec);
}

/// Sets `field` when it is unset or "" (a Go string field's zero value).
pub(crate) fn default_if_empty(object: &mut Value, field: &str, value: &str) {
    if object.is_null() {
        *object = json!({});
    }
    if let Some(map) = object.as_object_mut()
        && map
            .get(field)
            .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
    {
        map.insert(field.to_owned(), json!(value));
    }
}

/// `DropDisabledSpecFields`: `volumeAttributesClassName` needs the VolumeAttributesClass gate
/// (off in 1.33) unless the stored object already uses it.
pub(crate) fn drop_disabled_fields(new: &mut Value, old: Option<&Value>) {
    let in_use = old.is_some_and(|o| !o["spec"]["volumeAttributesClassName"].is_null());
    if !in_use && let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("volumeAttributesClassName");
    }
}

/// The status strategy's PrepareForUpdate: a status written without a phase is Pending (as
/// decoding defaults it), and `lastPhaseTransitionTime` moves with the phase unless the writer
/// set it.
fn stamp_phase_transition(old: &Value, new: &mut Value, now: &str) {
    if !new["status"].is_object() && !new["status"].is_null() {
        return;
    }
    default_if_empty(&mut new["status"], "phase", "Pending");
    let old_status = &old["status"];
    let old_phase = old_status["phase"].as_str().unwrap_or("Pending");
    let new_phase = new["status"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let old_time = old_status["lastPhaseTransitionTime"].clone();
    let new_time = new["status"]["lastPhaseTransitionTime"].clone();
    if old_phase == new_phase {
        if new_time.is_null() && !old_time.is_null() {
            new["status"]["lastPhaseTransitionTime"] = old_time;
        }
    } else if new_time.is_null() || new_time == old_time {
        new["status"]["lastPhaseTransitionTime"] = json!(now);
    }
}

/// Appends `finalizer` to the object's finalizers unless it is there.
pub(crate) fn add_finalizer(object: &mut Value, finalizer: &str) {
    let Some(metadata) = meta::metadata_mut(object) else {
        return;
    };
    let list = metadata
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    if let Some(list) = list.as_array_mut()
        && !list.iter().any(|f| f.as_str() == Some(finalizer))
    {
        list.push(json!(finalizer));
    }
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// `ValidatePersistentVolume`, `volumevalidation.ValidatePersistentVolume` and, on update,
/// `ValidatePersistentVolumeUpdate`.
fn validate_volume(e: &mut Errs, object: &Value, old: Option<&Value>) {
    let spec = get(Some(object), "spec");
    volume_spec(e, spec, meta::name(object));
    mount_options(e, object, spec);
    if let Some(old) = old {
        volume_update(e, object, old);
    }
    // Upstream takes any phase; a typo here would leave the binder stuck, so Flotilla refuses
    // a phase that is not one of the five.
    if let Some(phase) = str_opt(get(Some(object), "status"), "phase")
        && !PHASES.contains(&phase)
    {
        e.not_supported("status.phase", phase, &PHASES);
    }
}

/// `ValidatePersistentVolumeSpec` for a stored (not inline) volume.
fn volume_spec(e: &mut Errs, spec: Option<&Value>, pv_name: &str) {
    access_modes(e, spec, "spec", "");
    capacity(e, spec);
    if let Some(policy) = str_opt(spec, "persistentVolumeReclaimPolicy").filter(|p| !p.is_empty())
        && !RECLAIM_POLICIES.contains(&policy)
    {
        e.not_supported(
            "spec.persistentVolumeReclaimPolicy",
            policy,
            &RECLAIM_POLICIES,
        );
    }
    let affinity_set = volume_node_affinity(e, get(spec, "nodeAffinity"), "spec.nodeAffinity");
    sources::volume_source(e, spec, pv_name, affinity_set);
    let host_path = str_opt(get(spec, "hostPath"), "path");
    if host_path.is_some_and(clean_is_root)
        && str_of(spec, "persistentVolumeReclaimPolicy") == "Recycle"
    {
        e.forbidden(
            "spec.persistentVolumeReclaimPolicy",
            "may not be 'recycle' for a hostPath mount of '/'",
        );
    }
    class_name(e, spec, "spec");
    volume_mode(e, spec, "spec");
}

/// Whether Go's `path.Clean(p)` is "/": an absolute path of only separators and dots.
fn clean_is_root(p: &str) -> bool {
    let mut depth: i32 = 0;
    if !p.starts_with('/') {
        return false;
    }
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => depth = (depth - 1).max(0),
            _ => depth += 1,
        }
    }
    depth == 0
}

/// The access modes of a volume or claim (`required` is the detail of a missing list).
pub(crate) fn access_modes(e: &mut Errs, spec: Option<&Value>, p: &str, required: &str) {
    let path = child(p, "accessModes");
    if arr_of(spec, "accessModes").is_empty() {
        e.required(&path, required);
    }
    let (mut once_pod, mut others) = (false, false);
    for mode in strings_of(spec, "accessModes") {
        let supported = ACCESS_MODES.contains(&mode);
        if !supported {
            e.not_supported(&path, mode, &ACCESS_MODES);
        }
        if mode == "ReadWriteOncePod" {
            once_pod = true;
        } else if supported {
            others = true;
        }
    }
    if once_pod && others {
        e.forbidden(
            &path,
            "may not use ReadWriteOncePod with other access modes",
        );
    }
}

/// `spec.capacity`: present, only `storage`, every quantity valid and positive.
fn capacity(e: &mut Errs, spec: Option<&Value>) {
    let path = "spec.capacity";
    let capacity = obj_of(spec, "capacity");
    let len = capacity.map_or(0, Map::len);
    if len == 0 {
        e.required(path, "");
    }
    if !capacity.is_some_and(|c| c.contains_key("storage")) || len > 1 {
        // Go's JSON of a map: keys sorted.
        let shown = capacity.map_or_else(
            || "null".to_owned(),
            |c| compact(&json!(c.iter().collect::<BTreeMap<_, _>>())),
        );
        e.push(
            CauseReason::NotSupported,
            path,
            Some(&shown),
            "supported values: \"storage\"",
        );
    }
    for (name, value) in capacity.into_iter().flatten() {
        let path = key(path, name);
        match quantity_of(value) {
            Some(Ok((text, quantity))) => {
                if quantity.value() < 0 {
                    e.invalid_i(&path, quantity.value(), "must be a valid resource quantity");
                }
                if quantity <= Quantity::ZERO {
                    e.invalid_s(&path, &text, "must be greater than zero");
                }
            }
            // Upstream's decoder refuses a malformed quantity with this message (400); the
            // shared decoder does not look at `spec.capacity`, so it is refused here (422).
            Some(Err(why)) => e.invalid(&path, &compact(value), &why),
            None => {}
        }
    }
}

/// A quantity as written (trimmed, "0" for any zero) and its value; None when it is not a
/// string or number (decoding reports that), Some(Err) with upstream's parse error.
pub(crate) fn quantity_of(value: &Value) -> Option<Result<(String, Quantity), String>> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(match Quantity::parse(&text) {
        Ok(quantity) if quantity.is_zero() => Ok(("0".to_owned(), quantity)),
        Ok(quantity) => Ok((text, quantity)),
        Err(err) => Err(err.to_string()),
    })
}

/// A quantity field's value, zero when unset or malformed (as Go's zero Quantity).
pub(crate) fn quantity_or_zero(value: Option<&Value>) -> Quantity {
    value
        .and_then(quantity_of)
        .and_then(Result::ok)
        .map_or(Quantity::ZERO, |(_, quantity)| quantity)
}

/// `validateVolumeNodeAffinity`; returns whether the affinity is set.
fn volume_node_affinity(e: &mut Errs, affinity: Option<&Value>, path: &str) -> bool {
    let Some(affinity) = affinity else {
        return false;
    };
    let required_path = child(path, "required");
    match get(Some(affinity), "required") {
        Some(required) => {
            let terms_path = child(&required_path, "nodeSelectorTerms");
            let terms = arr_of(Some(required), "nodeSelectorTerms");
            if terms.is_empty() {
                e.required(&terms_path, "must have at least one node selector term");
            }
            for (i, term) in terms.iter().enumerate() {
                node_selector_term(e, Some(term), &idx(&terms_path, i));
            }
        }
        None => e.required(&required_path, "must specify required node constraints"),
    }
    true
}

/// `ValidateClassName` of `storageClassName`, when one is given.
pub(crate) fn class_name(e: &mut Errs, spec: Option<&Value>, p: &str) {
    if let Some(class) = str_opt(spec, "storageClassName").filter(|c| !c.is_empty()) {
        for m in is_dns1123_subdomain(class) {
            e.invalid_s(&child(p, "storageClassName"), class, &m);
        }
    }
}

/// `volumeMode`, when one is given.
pub(crate) fn volume_mode(e: &mut Errs, spec: Option<&Value>, p: &str) {
    if let Some(mode) = str_opt(spec, "volumeMode")
        && !VOLUME_MODES.contains(&mode)
    {
        e.not_supported(&child(p, "volumeMode"), mode, &VOLUME_MODES);
    }
}

/// `checkMountOption`: only the volume types that take mount options may carry the legacy
/// annotation.
fn mount_options(e: &mut Errs, object: &Value, spec: Option<&Value>) {
    const TAKE_OPTIONS: [&str; 13] = [
        "gcePersistentDisk",
        "awsElasticBlockStore",
        "glusterfs",
        "nfs",
        "rbd",
        "quobyte",
        "iscsi",
        "cinder",
        "cephfs",
        "azureFile",
        "vsphereVolume",
        "azureDisk",
        "photonPersistentDisk",
    ];
    if TAKE_OPTIONS.iter().any(|s| get(spec, s).is_some()) {
        return;
    }
    let annotations = obj_of(get(Some(object), "metadata"), "annotations");
    if annotations.is_some_and(|a| a.contains_key(MOUNT_OPTIONS_ANNOTATION)) {
        e.forbidden(
            &format!("metadata.annotations.{MOUNT_OPTIONS_ANNOTATION}"),
            "may not specify mount options for this volume type",
        );
    }
}

/// `ValidatePersistentVolumeUpdate`: the volume source, the volume mode and a set node
/// affinity are fixed; capacity, access modes, claim, policy and class may change.
fn volume_update(e: &mut Errs, new: &Value, old: &Value) {
    let (new_spec, old_spec) = (get(Some(new), "spec"), get(Some(old), "spec"));
    let mut new_source = sources::source_of(new_spec);
    let old_source = sources::source_of(old_spec);
    // A CSI volume may gain the secret for controller expansion.
    let gains_expand_secret = get(get(old_spec, "csi"), "controllerExpandSecretRef").is_none()
        && get(get(new_spec, "csi"), "controllerExpandSecretRef").is_some();
    if gains_expand_secret
        && let Some(csi) = new_source.get_mut("csi").and_then(Value::as_object_mut)
    {
        csi.remove("controllerExpandSecretRef");
    }
    let (new_source, old_source) = (normalize(&new_source), normalize(&old_source));
    if new_source != old_source {
        let mut diffs = Vec::new();
        diff_values(&old_source, &new_source, "spec", &mut diffs);
        e.forbidden(
            "spec.persistentvolumesource",
            &format!(
                "spec.persistentvolumesource is immutable after creation\n{}",
                diffs.join("\n")
            ),
        );
    }
    immutable_mode(e, new_spec, old_spec);
    if let Some(old_affinity) = get(old_spec, "nodeAffinity") {
        let new_affinity = get(new_spec, "nodeAffinity");
        if !affinity_equal_but_ga_labels(new_affinity, old_affinity) {
            e.invalid(
                "nodeAffinity",
                &go_volume_node_affinity(new_affinity),
                &format!("{IMMUTABLE}, except for updating from beta label to GA"),
            );
        }
    }
    attributes_class_unchanged(e, new_spec, old_spec);
}

/// `ValidateImmutableField` of `volumeMode` (upstream's path lacks the `spec.` prefix).
pub(crate) fn immutable_mode(e: &mut Errs, new_spec: Option<&Value>, old_spec: Option<&Value>) {
    let new_mode = get(new_spec, "volumeMode");
    if new_mode != get(old_spec, "volumeMode") {
        let shown = new_mode
            .and_then(Value::as_str)
            .map_or_else(|| "null".to_owned(), q);
        e.invalid("volumeMode", &shown, IMMUTABLE);
    }
}

/// With the VolumeAttributesClass gate off, `volumeAttributesClassName` may not change.
pub(crate) fn attributes_class_unchanged(
    e: &mut Errs,
    new_spec: Option<&Value>,
    old_spec: Option<&Value>,
) {
    if get(new_spec, "volumeAttributesClassName") != get(old_spec, "volumeAttributesClassName") {
        e.forbidden(
            "spec.volumeAttributesClassName",
            "update is forbidden when the VolumeAttributesClass feature gate is disabled",
        );
    }
}

/// Node labels whose beta name a volume's node affinity may trade for the GA one.
const BETA_TO_GA_LABELS: [(&str, &str); 5] = [
    (
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/zone",
    ),
    (
        "failure-domain.beta.kubernetes.io/region",
        "topology.kubernetes.io/region",
    ),
    ("beta.kubernetes.io/os", "kubernetes.io/os"),
    ("beta.kubernetes.io/arch", "kubernetes.io/arch"),
    (
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
    ),
];

/// Semantic equality of two node affinities where a requirement's key may have moved from a
/// beta label to its GA name (upstream's `getMaskNodeSelectorLabelChangeEqualities`).
fn affinity_equal_but_ga_labels(new: Option<&Value>, old: &Value) -> bool {
    let new = normalize(new.unwrap_or(&Value::Null));
    let mut old = normalize(old);
    let new_terms = new
        .pointer("/required/nodeSelectorTerms")
        .and_then(Value::as_array);
    let old_terms = old
        .pointer_mut("/required/nodeSelectorTerms")
        .and_then(Value::as_array_mut);
    if let (Some(new_terms), Some(old_terms)) = (new_terms, old_terms) {
        for (new_term, old_term) in new_terms.iter().zip(old_terms.iter_mut()) {
            for list in ["matchExpressions", "matchFields"] {
                let new_list = new_term.get(list).and_then(Value::as_array);
                let old_list = old_term.get_mut(list).and_then(Value::as_array_mut);
                let (Some(new_list), Some(old_list)) = (new_list, old_list) else {
                    continue;
                };
                for (n, o) in new_list.iter().zip(old_list.iter_mut()) {
                    let new_key = str_of(Some(n), "key").to_owned();
                    let old_key = str_of(Some(o), "key").to_owned();
                    if new_key != old_key
                        && BETA_TO_GA_LABELS.contains(&(old_key.as_str(), new_key.as_str()))
                    {
                        o["key"] = json!(new_key);
                    }
                }
            }
        }
    }
    new == old
}

/// A VolumeNodeAffinity as upstream's field errors print it: the JSON of the internal Go type,
/// whose fields carry no JSON tags (`{"Required":{"NodeSelectorTerms":[...]}}`).
fn go_volume_node_affinity(affinity: Option<&Value>) -> String {
    let Some(affinity) = affinity else {
        return "null".to_owned();
    };
    let strings = |v: Option<&Value>| match v.and_then(Value::as_array) {
        None => "null".to_owned(),
        Some(items) => compact(&Value::Array(items.clone())),
    };
    let requirements = |v: Option<&Value>| match v.and_then(Value::as_array) {
        None => "null".to_owned(),
        Some(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|r| {
                    format!(
                        "{{\"Key\":{},\"Operator\":{},\"Values\":{}}}",
                        compact(&json!(str_of(Some(r), "key"))),
                        compact(&json!(str_of(Some(r), "operator"))),
                        strings(get(Some(r), "values"))
                    )
                })
                .collect();
            format!("[{}]", items.join(","))
        }
    };
    let required = match get(Some(affinity), "required") {
        None => "null".to_owned(),
        Some(required) => {
            let terms = match get(Some(required), "nodeSelectorTerms").and_then(Value::as_array) {
                None => "null".to_owned(),
                Some(terms) => {
                    let terms: Vec<String> = terms
                        .iter()
                        .map(|t| {
                            format!(
                                "{{\"MatchExpressions\":{},\"MatchFields\":{}}}",
                                requirements(get(Some(t), "matchExpressions")),
                                requirements(get(Some(t), "matchFields"))
                            )
                        })
                        .collect();
                    format!("[{}]", terms.join(","))
                }
            };
            format!("{{\"NodeSelectorTerms\":{terms}}}")
        }
    };
    format!("{{\"Required\":{required}}}")
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

    fn volume(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-1"},
               "spec": spec})
    }

    fn host_path_spec() -> Value {
        json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
               "hostPath": {"path": "/srv/pv-1"}})
    }

    /// A volume as stored: defaulted, with its created status.
    fn stored(spec: Value) -> Value {
        let mut object = volume(spec);
        default_volume(&mut object);
        object["status"] = json!({"phase": "Available"});
        object
    }

    fn causes(object: &Value, old: Option<&Value>) -> Vec<Cause> {
        RESOURCE.validate(object, old)
    }

    #[test]
    fn defaults_are_upstreams() {
        let mut object = volume(host_path_spec());
        default_volume(&mut object);
        assert_eq!(object["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(object["spec"]["volumeMode"], "Filesystem");
        assert_eq!(object["spec"]["hostPath"]["type"], "");
        // An empty policy is the Go zero value and is defaulted too; a set mode is kept.
        let mut object =
            volume(json!({"persistentVolumeReclaimPolicy": "", "volumeMode": "Block"}));
        default_volume(&mut object);
        assert_eq!(object["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(object["spec"]["volumeMode"], "Block");
        let mut object = volume(
            json!({"iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "iqn.2001-04.com.example:storage", "lun": 0}}),
        );
        default_volume(&mut object);
        assert_eq!(object["spec"]["iscsi"]["iscsiInterface"], "default");
    }

    #[test]
    fn a_new_volume_is_pending_with_a_transition_time() {
        let status = PersistentVolumes.status_on_create(&json!({})).unwrap();
        assert_eq!(status["phase"], "Pending");
        assert!(status["lastPhaseTransitionTime"].is_string());
    }

    #[test]
    fn status_writes_move_the_transition_time_with_the_phase() {
        let old = json!({"status": {"phase": "Pending", "lastPhaseTransitionTime": "2025-01-01T00:00:00Z"}});
        // Same phase: the stored time stays.
        let mut new = json!({"status": {"phase": "Pending"}});
        stamp_phase_transition(&old, &mut new, "2025-02-02T00:00:00Z");
        assert_eq!(
            new["status"]["lastPhaseTransitionTime"],
            "2025-01-01T00:00:00Z"
        );
        // A new phase: now.
        let mut new = json!({"status": {"phase": "Bound", "lastPhaseTransitionTime": "2025-01-01T00:00:00Z"}});
        stamp_phase_transition(&old, &mut new, "2025-02-02T00:00:00Z");
        assert_eq!(
            new["status"]["lastPhaseTransitionTime"],
            "2025-02-02T00:00:00Z"
        );
        // A writer's own time is kept.
        let mut new = json!({"status": {"phase": "Bound", "lastPhaseTransitionTime": "2025-01-05T00:00:00Z"}});
        stamp_phase_transition(&old, &mut new, "2025-02-02T00:00:00Z");
        assert_eq!(
            new["status"]["lastPhaseTransitionTime"],
            "2025-01-05T00:00:00Z"
        );
        // A status without a phase is Pending, as decoding defaults it.
        let mut new = json!({"status": {}});
        stamp_phase_transition(&old, &mut new, "2025-02-02T00:00:00Z");
        assert_eq!(new["status"]["phase"], "Pending");
    }

    #[test]
    fn a_new_volume_gets_the_protection_finalizer_once() {
        let admission = Admission::default();
        let lookup = NoLookup;
        let mut object = volume(host_path_spec());
        futures::executor::block_on(PersistentVolumes.admit(
            &admission,
            &lookup,
            &mut object,
            None,
        ))
        .unwrap();
        assert_eq!(
            object["metadata"]["finalizers"],
            json!([PV_PROTECTION_FINALIZER])
        );
        futures::executor::block_on(PersistentVolumes.admit(
            &admission,
            &lookup,
            &mut object,
            None,
        ))
        .unwrap();
        assert_eq!(
            object["metadata"]["finalizers"],
            json!([PV_PROTECTION_FINALIZER])
        );
        // An update leaves finalizers alone.
        let mut updated = volume(host_path_spec());
        let old = updated.clone();
        futures::executor::block_on(PersistentVolumes.admit(
            &admission,
            &lookup,
            &mut updated,
            Some(&old),
        ))
        .unwrap();
        assert!(updated["metadata"].get("finalizers").is_none());
    }

    /// A Lookup that holds nothing.
    struct NoLookup;

    impl Lookup for NoLookup {
        fn list<'a>(
            &'a self,
            _resource: &'static Resource,
            _namespace: Option<&'a str>,
        ) -> BoxFuture<'a, Result<Vec<Value>, ApiError>> {
            answered_list(Vec::new())
        }
    }

    fn answered_list<'a>(items: Vec<Value>) -> BoxFuture<'a, Result<Vec<Value>, ApiError>> {
        Box::pin(std::future::ready(Ok(items)))
    }

    #[test]
    fn exactly_one_volume_source() {
        let c = causes(
            &volume(json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]})),
            None,
        );
        assert_eq!(
            message_at(&c, "spec"),
            "spec: Required value: must specify a volume type"
        );
        let mut spec = host_path_spec();
        spec["nfs"] = json!({"server": "nfs.example", "path": "/export"});
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.nfs"),
            "spec.nfs: Forbidden: may not specify more than 1 volume type"
        );
        // cephfs is reported under upstream's other spelling.
        let mut spec = host_path_spec();
        spec["cephfs"] = json!({"monitors": ["m"]});
        let c = causes(&volume(spec), None);
        assert!(c.iter().any(|c| c.field == "spec.cephFS"), "{c:#?}");
    }

    #[test]
    fn capacity_must_be_a_positive_storage_quantity() {
        let mut spec = host_path_spec();
        spec.as_object_mut().unwrap().remove("capacity");
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.capacity"),
            "spec.capacity: Required value"
        );
        assert!(
            c.iter()
                .any(|c| c.message == "Unsupported value: null: supported values: \"storage\"")
        );
        let mut spec = host_path_spec();
        spec["capacity"] = json!({"storage": "1Gi", "cpu": "1"});
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.capacity"),
            "spec.capacity: Unsupported value: {\"cpu\":\"1\",\"storage\":\"1Gi\"}: supported values: \"storage\""
        );
        let mut spec = host_path_spec();
        spec["capacity"] = json!({"storage": "0"});
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.capacity[storage]"),
            "spec.capacity[storage]: Invalid value: \"0\": must be greater than zero"
        );
        let mut spec = host_path_spec();
        spec["capacity"] = json!({"storage": "-1Gi"});
        let c = causes(&volume(spec), None);
        assert_eq!(
            c.iter()
                .filter(|c| c.field == "spec.capacity[storage]")
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "spec.capacity[storage]: Invalid value: -1073741824: must be a valid resource quantity",
                "spec.capacity[storage]: Invalid value: \"-1Gi\": must be greater than zero",
            ]
        );
        let mut spec = host_path_spec();
        spec["capacity"] = json!({"storage": "lots"});
        let c = causes(&volume(spec), None);
        assert!(
            message_at(&c, "spec.capacity[storage]")
                .contains("quantities must match the regular expression")
        );
    }

    #[test]
    fn access_modes_are_required_and_supported() {
        let mut spec = host_path_spec();
        spec["accessModes"] = json!([]);
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.accessModes"),
            "spec.accessModes: Required value"
        );
        let mut spec = host_path_spec();
        spec["accessModes"] = json!(["ReadWriteSometimes"]);
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.accessModes"),
            "spec.accessModes: Unsupported value: \"ReadWriteSometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\""
        );
        let mut spec = host_path_spec();
        spec["accessModes"] = json!(["ReadWriteOncePod", "ReadOnlyMany"]);
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.accessModes"),
            "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"
        );
        let mut spec = host_path_spec();
        spec["accessModes"] = json!(["ReadWriteOncePod"]);
        assert!(causes(&volume(spec), None).is_empty());
    }

    #[test]
    fn reclaim_policy_class_and_mode_are_checked() {
        let mut spec = host_path_spec();
        spec["persistentVolumeReclaimPolicy"] = json!("Keep");
        spec["storageClassName"] = json!("Fast_Disks");
        spec["volumeMode"] = json!("Raw");
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.persistentVolumeReclaimPolicy"),
            "spec.persistentVolumeReclaimPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Recycle\", \"Retain\""
        );
        assert!(message_at(&c, "spec.storageClassName").starts_with(
            "spec.storageClassName: Invalid value: \"Fast_Disks\": a lowercase RFC 1123 subdomain"
        ));
        assert_eq!(
            message_at(&c, "spec.volumeMode"),
            "spec.volumeMode: Unsupported value: \"Raw\": supported values: \"Block\", \"Filesystem\""
        );
        // Recycling a hostPath of / is forbidden.
        let mut spec = host_path_spec();
        spec["hostPath"]["path"] = json!("/tmp/..");
        spec["persistentVolumeReclaimPolicy"] = json!("Recycle");
        let c = causes(&volume(spec), None);
        assert!(c.iter().any(|c| c.to_string()
            == "spec.persistentVolumeReclaimPolicy: Forbidden: may not be 'recycle' for a hostPath mount of '/'"));
    }

    #[test]
    fn host_path_and_local_paths() {
        let mut spec = host_path_spec();
        spec["hostPath"] = json!({"path": ""});
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.hostPath.path"),
            "spec.hostPath.path: Required value"
        );
        let mut spec = host_path_spec();
        spec["hostPath"] = json!({"path": "/srv/../etc", "type": "Folder"});
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.hostPath.path"),
            "spec.hostPath.path: Invalid value: \"/srv/../etc\": must not contain '..'"
        );
        assert_eq!(
            message_at(&c, "spec.hostPath.type"),
            "spec.hostPath.type: Unsupported value: \"Folder\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\""
        );
        // Flotilla's agent mounts these paths on the node, so they must be absolute.
        let mut spec = host_path_spec();
        spec["hostPath"] = json!({"path": "srv/data"});
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.hostPath.path"),
            "spec.hostPath.path: Invalid value: \"srv/data\": must be an absolute path"
        );
        // A local volume needs node affinity with required terms.
        let mut spec = host_path_spec();
        spec.as_object_mut().unwrap().remove("hostPath");
        spec["local"] = json!({"path": "/mnt/disks/ssd1"});
        let c = causes(&volume(spec.clone()), None);
        assert_eq!(
            message_at(&c, "spec.nodeAffinity"),
            "spec.nodeAffinity: Required value: Local volume requires node affinity"
        );
        spec["nodeAffinity"] = json!({});
        let c = causes(&volume(spec.clone()), None);
        assert_eq!(
            message_at(&c, "spec.nodeAffinity.required"),
            "spec.nodeAffinity.required: Required value: must specify required node constraints"
        );
        spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": []}});
        let c = causes(&volume(spec.clone()), None);
        assert_eq!(
            message_at(&c, "spec.nodeAffinity.required.nodeSelectorTerms"),
            "spec.nodeAffinity.required.nodeSelectorTerms: Required value: must have at least one node selector term"
        );
        spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "Near", "values": ["n1"]}]}]}});
        let c = causes(&volume(spec.clone()), None);
        assert_eq!(
            message_at(
                &c,
                "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator"
            ),
            "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator"
        );
        spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}});
        assert!(causes(&volume(spec.clone()), None).is_empty());
        spec["local"] = json!({"path": ""});
        let c = causes(&volume(spec), None);
        assert_eq!(
            message_at(&c, "spec.local.path"),
            "spec.local.path: Required value"
        );
    }

    #[test]
    fn other_sources_keep_upstreams_rules() {
        let base = |source: &str, value: Value| {
            let mut spec =
                json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]});
            spec[source] = value;
            causes(&volume(spec), None)
        };
        let c = base("nfs", json!({"server": "", "path": "export"}));
        assert_eq!(
            message_at(&c, "spec.nfs.server"),
            "spec.nfs.server: Required value"
        );
        assert_eq!(
            message_at(&c, "spec.nfs.path"),
            "spec.nfs.path: Invalid value: \"export\": must be an absolute path"
        );
        let c = base("csi", json!({"driver": "Bad_Driver", "volumeHandle": ""}));
        assert!(
            message_at(&c, "spec.csi.driver")
                .starts_with("spec.csi.driver: Invalid value: \"Bad_Driver\"")
        );
        assert_eq!(
            message_at(&c, "spec.csi.volumeHandle"),
            "spec.csi.volumeHandle: Required value"
        );
        let c = base(
            "csi",
            json!({"driver": "csi.example.com", "volumeHandle": "v1",
                                   "nodePublishSecretRef": {"name": "s"}}),
        );
        assert_eq!(
            message_at(&c, "spec.csi.nodePublishSecretRef.namespace"),
            "spec.csi.nodePublishSecretRef.namespace: Required value"
        );
        let c = base(
            "iscsi",
            json!({"targetPortal": "10.0.0.1:3260", "iqn": "iqn.bad", "lun": 300}),
        );
        assert_eq!(
            message_at(&c, "spec.iscsi.iqn"),
            "spec.iscsi.iqn: Invalid value: \"iqn.bad\": must be valid format"
        );
        assert_eq!(
            message_at(&c, "spec.iscsi.lun"),
            "spec.iscsi.lun: Invalid value: 300: must be between 0 and 255, inclusive"
        );
        assert!(base("iscsi", json!({"targetPortal": "10.0.0.1:3260", "iqn": "iqn.2001-04.com.example:storage.disk1", "lun": 0})).is_empty());
        let c = base("gcePersistentDisk", json!({"pdName": ""}));
        assert_eq!(
            message_at(&c, "spec.persistentDisk.pdName"),
            "spec.persistentDisk.pdName: Required value"
        );
        let c = base("quobyte", json!({"registry": "reg", "volume": "v"}));
        assert_eq!(
            message_at(&c, "spec.quobyte.registry"),
            "spec.quobyte.registry: Invalid value: \"reg\": must be a host:port pair or multiple pairs separated by commas"
        );
        let c = base(
            "flexVolume",
            json!({"driver": "d", "options": {"kubernetes.io/x": "1"}}),
        );
        assert_eq!(
            message_at(&c, "spec.flexVolume.options[kubernetes.io/x]"),
            "spec.flexVolume.options[kubernetes.io/x]: Invalid value: \"kubernetes.io/x\": kubernetes.io and k8s.io namespaces are reserved"
        );
    }

    #[test]
    fn mount_options_annotation_only_on_types_that_take_options() {
        let mut object = volume(host_path_spec());
        object["metadata"]["annotations"] =
            json!({"volume.beta.kubernetes.io/mount-options": "ro"});
        let c = causes(&object, None);
        assert_eq!(
            message_at(
                &c,
                "metadata.annotations.volume.beta.kubernetes.io/mount-options"
            ),
            "metadata.annotations.volume.beta.kubernetes.io/mount-options: Forbidden: may not specify mount options for this volume type"
        );
        let mut object = volume(
            json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                                       "nfs": {"server": "nfs", "path": "/x"}}),
        );
        object["metadata"]["annotations"] =
            json!({"volume.beta.kubernetes.io/mount-options": "ro"});
        assert!(causes(&object, None).is_empty());
    }

    #[test]
    fn the_source_mode_and_set_affinity_are_immutable() {
        let old = stored(host_path_spec());
        let mut new = old.clone();
        new["spec"]["hostPath"]["path"] = json!("/srv/elsewhere");
        let c = causes(&new, Some(&old));
        assert_eq!(
            message_at(&c, "spec.persistentvolumesource"),
            "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation\n- spec.hostPath.path: \"/srv/pv-1\"\n+ spec.hostPath.path: \"/srv/elsewhere\""
        );
        let mut new = old.clone();
        new["spec"]["volumeMode"] = json!("Block");
        let c = causes(&new, Some(&old));
        assert_eq!(
            message_at(&c, "volumeMode"),
            "volumeMode: Invalid value: \"Block\": field is immutable"
        );
        // Capacity, class, policy and claim may change.
        let mut new = old.clone();
        new["spec"]["capacity"]["storage"] = json!("2Gi");
        new["spec"]["storageClassName"] = json!("manual");
        new["spec"]["persistentVolumeReclaimPolicy"] = json!("Delete");
        new["spec"]["claimRef"] = json!({"namespace": "default", "name": "data"});
        assert!(causes(&new, Some(&old)).is_empty());
        // Node affinity may be set once, then only moved from beta labels to GA ones.
        let affinity = |key: &str| {
            json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": key, "operator": "In", "values": ["z1"]}]}]}})
        };
        let mut new = old.clone();
        new["spec"]["nodeAffinity"] = affinity("failure-domain.beta.kubernetes.io/zone");
        assert!(causes(&new, Some(&old)).is_empty());
        let old = new;
        let mut new = old.clone();
        new["spec"]["nodeAffinity"] = affinity("topology.kubernetes.io/zone");
        assert!(causes(&new, Some(&old)).is_empty());
        new["spec"]["nodeAffinity"] = affinity("kubernetes.io/hostname");
        let c = causes(&new, Some(&old));
        assert_eq!(
            message_at(&c, "nodeAffinity"),
            "nodeAffinity: Invalid value: {\"Required\":{\"NodeSelectorTerms\":[{\"MatchExpressions\":[{\"Key\":\"kubernetes.io/hostname\",\"Operator\":\"In\",\"Values\":[\"z1\"]}],\"MatchFields\":null}]}}: field is immutable, except for updating from beta label to GA"
        );
    }

    #[test]
    fn a_csi_volume_may_gain_its_expansion_secret() {
        let spec = json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                          "csi": {"driver": "csi.example.com", "volumeHandle": "v1"}});
        let old = stored(spec);
        let mut new = old.clone();
        new["spec"]["csi"]["controllerExpandSecretRef"] =
            json!({"name": "s", "namespace": "kube-system"});
        assert!(causes(&new, Some(&old)).is_empty());
    }

    #[test]
    fn the_status_phase_is_one_of_five() {
        let mut object = stored(host_path_spec());
        object["status"]["phase"] = json!("Lost");
        let c = causes(&object, None);
        assert_eq!(
            message_at(&c, "status.phase"),
            "status.phase: Unsupported value: \"Lost\": supported values: \"Available\", \"Bound\", \"Failed\", \"Pending\", \"Released\""
        );
    }

    #[test]
    fn volume_attributes_class_is_dropped_while_its_gate_is_off() {
        let mut object = volume(host_path_spec());
        object["spec"]["volumeAttributesClassName"] = json!("gold");
        PersistentVolumes.prepare_named(&mut object);
        assert!(object["spec"].get("volumeAttributesClassName").is_none());
    }

    #[test]
    fn the_table_is_upstreams() {
        let mut object = stored(host_path_spec());
        object["spec"]["claimRef"] = json!({"namespace": "default", "name": "data"});
        let cells = PersistentVolumes.cells(&object, Timestamp::now());
        assert_eq!(cells.len(), PersistentVolumes.columns().len());
        assert_eq!(
            cells[1..6],
            [
                json!("1Gi"),
                json!("RWO"),
                json!("Retain"),
                json!("Available"),
                json!("default/data")
            ]
        );
    }
}
