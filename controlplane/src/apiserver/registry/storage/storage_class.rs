//! `storage.k8s.io/v1` StorageClass: validation (provisioner, parameters, reclaim policy,
//! binding mode, allowed topologies, and the fields an update may not change), the defaults,
//! which class is the cluster's default (for DefaultStorageClass and the PV controller), the
//! table and the patch schema.

use k8s_openapi::api::storage::v1 as api;

use crate::apiserver::meta;
use crate::apiserver::registry::prelude::*;
use crate::apiserver::tables::upstream::{STORAGE_CLASS_COLUMNS, storage_class_cells};

/// The `storageclasses` resource.
pub static RESOURCE: Resource = Resource {
    group: "storage.k8s.io",
    version: "v1",
    kind: "StorageClass",
    plural: "storageclasses",
    singular: "storageclass",
    namespaced: false,
    short_names: &["sc"],
    categories: &[],
    subresources: &[],
    storage_prefix: "storageclasses",
    field_labels: &[],
    strategy: &StorageClasses,
};

/// The annotation that marks a class as the cluster's default.
pub const IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// The beta spelling of [`IS_DEFAULT_CLASS_ANNOTATION`], still honoured.
pub const BETA_IS_DEFAULT_CLASS_ANNOTATION: &str =
    "storageclass.beta.kubernetes.io/is-default-class";

/// The reclaim policies a class may give the volumes it provisions.
pub const RECLAIM_POLICIES: [&str; 2] = ["Delete", "Retain"];

/// When a class's claims are bound and provisioned.
pub const BINDING_MODES: [&str; 2] = ["Immediate", "WaitForFirstConsumer"];

/// Upstream's `maxProvisionerParameterLen`: the most parameters a class may have.
const MAX_PARAMETERS: usize = 512;

/// Upstream's `maxProvisionerParameterSize`: the most bytes of parameter keys and values.
const MAX_PARAMETERS_SIZE: usize = 256 * (1 << 10);

/// The `StorageClass` strategy.
pub struct StorageClasses;

impl Strategy for StorageClasses {
    typed_as!("v1.StorageClass", api::StorageClass);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        validate_class(e, object);
        if let Some(old) = old {
            validate_update(e, object, old);
        }
    }

    /// `SetDefaults_StorageClass`.
    fn default(&self, object: &mut Value) {
        if object.is_object() {
            set_default(object, "reclaimPolicy", json!("Delete"));
            set_default(object, "volumeBindingMode", json!("Immediate"));
        }
    }

    fn delete_returns_object(&self) -> bool {
        true
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(STORAGE_CLASS_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        storage_class_cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "local-path"}, "provisioner": "flotilla.io/local-path",
                          "volumeBindingMode": "WaitForFirstConsumer"}),
            invalid: json!({"metadata": {"name": "local-path"}, "provisioner": "flotilla.io/local-path",
                            "reclaimPolicy": "Recycle"}),
            invalid_field: "reclaimPolicy",
        }
    }
}

/// Whether `class` is marked as the default (either annotation, exactly "true").
pub fn is_default_class(class: &Value) -> bool {
    let annotations = obj_of(get(Some(class), "metadata"), "annotations");
    [
        IS_DEFAULT_CLASS_ANNOTATION,
        BETA_IS_DEFAULT_CLASS_ANNOTATION,
    ]
    .iter()
    .any(|a| annotations.and_then(|m| m.get(*a)).and_then(Value::as_str) == Some("true"))
}

/// The cluster's default class among `classes` (upstream's `GetDefaultClass` since 1.28):
/// of several marked default, the newest by creationTimestamp, ties to the first name.
pub fn default_class(classes: &[Value]) -> Option<&Value> {
    let created = |class: &Value| {
        class["metadata"]["creationTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
    };
    classes
        .iter()
        .filter(|c| is_default_class(c))
        .min_by(|a, b| {
            created(b)
                .cmp(&created(a))
                .then_with(|| meta::name(a).cmp(meta::name(b)))
        })
}

/// `ValidateStorageClass` (ObjectMeta is checked before).
fn validate_class(e: &mut Errs, object: &Value) {
    let class = Some(object);
    let provisioner = str_of(class, "provisioner");
    if provisioner.is_empty() {
        e.required("provisioner", "");
    } else {
        let lower = provisioner.to_lowercase();
        for m in is_qualified_name(&lower) {
            e.invalid_s("provisioner", &lower, &m);
        }
    }
    parameters(e, obj_of(class, "parameters"));
    if let Some(policy) = str_opt(class, "reclaimPolicy").filter(|p| !p.is_empty())
        && !RECLAIM_POLICIES.contains(&policy)
    {
        e.not_supported("reclaimPolicy", policy, &RECLAIM_POLICIES);
    }
    match str_opt(class, "volumeBindingMode") {
        None => e.required("volumeBindingMode", ""),
        Some(mode) if !BINDING_MODES.contains(&mode) => {
            e.not_supported("volumeBindingMode", mode, &BINDING_MODES);
        }
        Some(_) => {}
    }
    allowed_topologies(e, arr_of(class, "allowedTopologies"));
}

/// `validateParameters`: at most 512 entries and 256 KiB, no empty key.
fn parameters(e: &mut Errs, parameters: Option<&Obj>) {
    let Some(parameters) = parameters else {
        return;
    };
    if parameters.len() > MAX_PARAMETERS {
        e.too_long("parameters", MAX_PARAMETERS);
        return;
    }
    let mut size = 0;
    for (k, v) in parameters {
        if k.is_empty() {
            e.invalid_s("parameters", k, "field can not be empty.");
        }
        size += k.len() + v.as_str().map_or(0, str::len);
    }
    if size > MAX_PARAMETERS_SIZE {
        e.too_long("parameters", MAX_PARAMETERS_SIZE);
    }
}

/// `validateAllowedTopologies`: each term's label requirements name a valid key once, with
/// distinct values; no two terms are the same.
fn allowed_topologies(e: &mut Errs, terms: &[Value]) {
    type Term = BTreeMap<String, BTreeSet<String>>;
    // Upstream seeds its list of seen terms with one empty entry per term, so an empty term
    // always counts as a duplicate.
    let mut seen: Vec<Term> = vec![Term::new(); terms.len()];
    for (i, term) in terms.iter().enumerate() {
        let path = idx("allowedTopologies", i);
        let expressions_path = child(&path, "matchLabelExpressions");
        let mut this = Term::new();
        for (j, requirement) in arr_of(Some(term), "matchLabelExpressions")
            .iter()
            .enumerate()
        {
            let p = idx(&expressions_path, j);
            let requirement = Some(requirement);
            let values = strings_of(requirement, "values");
            let values_path = child(&p, "values");
            if values.is_empty() {
                e.required(&values_path, "");
            }
            let mut set = BTreeSet::new();
            for (k, value) in values.iter().enumerate() {
                if !set.insert((*value).to_owned()) {
                    e.duplicate(&idx(&values_path, k), &q(value));
                }
            }
            let label = str_of(requirement, "key");
            validate_label_name(e, label, &child(&p, "key"));
            if this.insert(label.to_owned(), set).is_some() {
                e.duplicate(&child(&p, "key"), &q(label));
            }
        }
        if seen.contains(&this) {
            e.duplicate(&expressions_path, "\"\"");
        }
        seen.push(this);
    }
}

/// `ValidateStorageClassUpdate`: parameters, provisioner, reclaim policy and binding mode are
/// fixed.
fn validate_update(e: &mut Errs, new: &Value, old: &Value) {
    let (new, old) = (Some(new), Some(old));
    let parameters = |o: Option<&Value>| normalize(get(o, "parameters").unwrap_or(&Value::Null));
    if parameters(new) != parameters(old) {
        e.forbidden("parameters", "updates to parameters are forbidden.");
    }
    if str_of(new, "provisioner") != str_of(old, "provisioner") {
        e.forbidden("provisioner", "updates to provisioner are forbidden.");
    }
    if str_of(new, "reclaimPolicy") != str_of(old, "reclaimPolicy") {
        e.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden.");
    }
    let mode = str_opt(new, "volumeBindingMode");
    if mode != str_opt(old, "volumeBindingMode") {
        e.invalid(
            "volumeBindingMode",
            &mode.map_or_else(|| "null".to_owned(), q),
            IMMUTABLE,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (project rule).
mod tests {
    use super::*;
    use crate::apiserver::machinery::field::Cause;
    use crate::apiserver::machinery::field::message_at;

    fn class(extra: Value) -> Value {
        let mut class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                               "metadata": {"name": "local-path"}, "provisioner": "flotilla.io/local-path"});
        if let (Some(class), Some(extra)) = (class.as_object_mut(), extra.as_object()) {
            class.extend(extra.clone());
        }
        StorageClasses.default(&mut class);
        class
    }

    fn causes(object: &Value, old: Option<&Value>) -> Vec<Cause> {
        RESOURCE.validate(object, old)
    }

    #[test]
    fn defaults_are_delete_and_immediate() {
        let class = class(json!({}));
        assert_eq!(class["reclaimPolicy"], "Delete");
        assert_eq!(class["volumeBindingMode"], "Immediate");
        assert!(causes(&class, None).is_empty());
    }

    #[test]
    fn the_provisioner_is_a_required_qualified_name() {
        let c = causes(&class(json!({"provisioner": ""})), None);
        assert_eq!(message_at(&c, "provisioner"), "provisioner: Required value");
        let c = causes(&class(json!({"provisioner": "Example.com/Bad Name"})), None);
        assert!(
            message_at(&c, "provisioner").starts_with(
                "provisioner: Invalid value: \"example.com/bad name\": name part must consist of alphanumeric characters"
            ),
            "{c:#?}"
        );
    }

    #[test]
    fn parameters_policy_and_mode_are_checked() {
        let many: Map<String, Value> = (0..513).map(|i| (format!("k{i}"), json!("v"))).collect();
        let c = causes(&class(json!({"parameters": many})), None);
        assert_eq!(
            message_at(&c, "parameters"),
            "parameters: Too long: may not be more than 512 bytes"
        );
        let c = causes(&class(json!({"parameters": {"": "v"}})), None);
        assert_eq!(
            message_at(&c, "parameters"),
            "parameters: Invalid value: \"\": field can not be empty."
        );
        let c = causes(
            &class(json!({"reclaimPolicy": "Recycle", "volumeBindingMode": "Later"})),
            None,
        );
        assert_eq!(
            message_at(&c, "reclaimPolicy"),
            "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\""
        );
        assert_eq!(
            message_at(&c, "volumeBindingMode"),
            "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\""
        );
    }

    #[test]
    fn allowed_topologies_are_checked() {
        let c = causes(
            &class(json!({"allowedTopologies": [
                {"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": []}]},
                {"matchLabelExpressions": [{"key": "zone", "values": ["a", "a"]}, {"key": "zone", "values": ["b"]}]},
                {}
            ]})),
            None,
        );
        assert_eq!(
            message_at(&c, "allowedTopologies[0].matchLabelExpressions[0].values"),
            "allowedTopologies[0].matchLabelExpressions[0].values: Required value"
        );
        assert_eq!(
            message_at(
                &c,
                "allowedTopologies[1].matchLabelExpressions[0].values[1]"
            ),
            "allowedTopologies[1].matchLabelExpressions[0].values[1]: Duplicate value: \"a\""
        );
        assert_eq!(
            message_at(&c, "allowedTopologies[1].matchLabelExpressions[1].key"),
            "allowedTopologies[1].matchLabelExpressions[1].key: Duplicate value: \"zone\""
        );
        // An empty term is a duplicate, as upstream's seeded list makes it.
        assert_eq!(
            message_at(&c, "allowedTopologies[2].matchLabelExpressions"),
            "allowedTopologies[2].matchLabelExpressions: Duplicate value: \"\""
        );
        let ok = class(json!({"allowedTopologies": [
            {"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone", "values": ["a"]}]}]}));
        assert!(causes(&ok, None).is_empty());
    }

    #[test]
    fn updates_may_not_change_what_provisioning_used() {
        let old = class(json!({"parameters": {"path": "/opt"}}));
        let mut new = class(
            json!({"parameters": {"path": "/srv"}, "provisioner": "other.io/x",
                                   "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer"}),
        );
        new["allowVolumeExpansion"] = json!(true);
        let c = causes(&new, Some(&old));
        assert_eq!(
            message_at(&c, "parameters"),
            "parameters: Forbidden: updates to parameters are forbidden."
        );
        assert_eq!(
            message_at(&c, "provisioner"),
            "provisioner: Forbidden: updates to provisioner are forbidden."
        );
        assert_eq!(
            message_at(&c, "reclaimPolicy"),
            "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden."
        );
        assert_eq!(
            message_at(&c, "volumeBindingMode"),
            "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable"
        );
        // Expansion, mount options and labels may change.
        let mut new = old.clone();
        new["allowVolumeExpansion"] = json!(true);
        new["mountOptions"] = json!(["noatime"]);
        new["metadata"]["labels"] = json!({"tier": "fast"});
        assert!(causes(&new, Some(&old)).is_empty());
    }

    #[test]
    fn the_default_class_is_the_newest_marked_one() {
        let marked = |name: &str, created: &str, annotation: &str, value: &str| {
            json!({"metadata": {"name": name, "creationTimestamp": created,
                                "annotations": {annotation: value}}})
        };
        let classes = [
            marked(
                "a",
                "2024-01-01T00:00:00Z",
                IS_DEFAULT_CLASS_ANNOTATION,
                "true",
            ),
            marked(
                "b",
                "2025-01-01T00:00:00Z",
                BETA_IS_DEFAULT_CLASS_ANNOTATION,
                "true",
            ),
            marked(
                "c",
                "2026-01-01T00:00:00Z",
                IS_DEFAULT_CLASS_ANNOTATION,
                "yes",
            ),
        ];
        assert_eq!(meta::name(default_class(&classes).unwrap()), "b");
        assert!(default_class(&classes[2..]).is_none());
    }

    #[test]
    fn the_table_marks_the_default() {
        let mut object = class(json!({"allowVolumeExpansion": true}));
        object["metadata"]["annotations"] = json!({IS_DEFAULT_CLASS_ANNOTATION: "true"});
        let cells = StorageClasses.cells(&object, Timestamp::now());
        assert_eq!(
            cells[..5],
            [
                json!("local-path (default)"),
                json!("flotilla.io/local-path"),
                json!("Delete"),
                json!("Immediate"),
                json!(true)
            ]
        );
    }
}
