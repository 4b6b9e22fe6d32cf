//! ObjectMeta validation on create and update (apimachinery's `objectmeta.go` plus core's
//! finalizer rules), and label selectors as they appear in specs.

use crate::apiserver::machinery::prelude::*;
use crate::apiserver::selectors::label_selector_from_json;

// ---------------------------------------------------------------------------------------------
// ObjectMeta (apimachinery/pkg/api/validation/objectmeta.go + core's finalizer rules)
// ---------------------------------------------------------------------------------------------

pub(crate) const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;
pub(crate) const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

pub(crate) fn meta_create(e: &mut Errs, meta: Option<&Value>, namespaced: bool, rule: NameRule) {
    if let Some(g) = str_opt(meta, "generateName").filter(|g| !g.is_empty()) {
        for m in name_msgs(rule, g, true) {
            e.invalid_s("metadata.generateName", g, &m);
        }
    }
    let name = str_of(meta, "name");
    if name.is_empty() {
        if rule != NameRule::Unchecked {
            e.required("metadata.name", "name or generateName is required");
        }
    } else {
        for m in name_msgs(rule, name, false) {
            e.invalid_s("metadata.name", name, &m);
        }
    }
    // Cluster-scoped objects get their namespace cleared before validation upstream, so only
    // namespaced kinds look at it.
    // Events and Bindings check their namespace themselves (legacy rules).
    if namespaced && !matches!(rule, NameRule::PathSegment | NameRule::Unchecked) {
        let ns = str_of(meta, "namespace");
        if ns.is_empty() {
            e.required("metadata.namespace", "");
        } else {
            for m in is_dns1123_label(ns) {
                e.invalid_s("metadata.namespace", ns, &m);
            }
        }
    }
    meta_common(e, meta);
}

/// `ValidateObjectMetaUpdate`: identity fields are immutable; everything else is revalidated.
pub(crate) fn meta_update(e: &mut Errs, meta: Option<&Value>, old: Option<&Value>, rule: NameRule) {
    let name = str_of(meta, "name");
    if (rule != NameRule::Unchecked || !name.is_empty()) && name != str_of(old, "name") {
        e.invalid_s("metadata.name", name, IMMUTABLE);
    }
    let ns = str_of(meta, "namespace");
    if !ns.is_empty() && ns != str_of(old, "namespace") {
        e.invalid_s("metadata.namespace", ns, IMMUTABLE);
    }
    // The registry copies the old UID in when the update leaves it out.
    let uid = str_of(meta, "uid");
    if !uid.is_empty() && uid != str_of(old, "uid") {
        e.invalid_s("metadata.uid", uid, IMMUTABLE);
    }
    meta_common(e, meta);
}

pub(crate) fn meta_common(e: &mut Errs, meta: Option<&Value>) {
    e.non_negative("metadata.generation", int_of(meta, "generation"));
    validate_labels(e, obj_of(meta, "labels"), "metadata.labels");
    validate_annotations(e, obj_of(meta, "annotations"), "metadata.annotations");
    owner_references(e, arr_of(meta, "ownerReferences"));
    finalizers(e, get(meta, "finalizers"), "metadata.finalizers", true);
    for (i, mf) in arr_of(meta, "managedFields").iter().enumerate() {
        let p = idx("metadata.managedFields", i);
        let mf = Some(mf);
        let op = str_of(mf, "operation");
        if op != "Apply" && op != "Update" {
            e.invalid_s(&child(&p, "operation"), op, "must be `Apply` or `Update`");
        }
        let ft = str_of(mf, "fieldsType");
        if !ft.is_empty() && ft != "FieldsV1" {
            e.invalid_s(&child(&p, "fieldsType"), ft, "must be `FieldsV1`");
        }
        if str_of(mf, "manager").len() > 128 {
            e.too_long(&child(&p, "manager"), 128);
        }
    }
}

/// `ValidateLabels`: errors are reported on the map itself, not per key (as upstream does).
pub(crate) fn validate_labels(e: &mut Errs, labels: Option<&Obj>, path: &str) {
    for (k, v) in labels.into_iter().flatten() {
        for m in is_qualified_name(k) {
            e.invalid_s(path, k, &m);
        }
        if let Some(v) = v.as_str() {
            for m in is_label_value(v) {
                e.invalid_s(path, v, &m);
            }
        }
    }
}

pub(crate) fn validate_label_name(e: &mut Errs, name: &str, path: &str) {
    for m in is_qualified_name(name) {
        e.invalid_s(path, name, &m);
    }
}

pub(crate) fn validate_annotations(e: &mut Errs, ann: Option<&Obj>, path: &str) {
    let Some(ann) = ann else { return };
    let mut total = 0usize;
    for (k, v) in ann {
        for m in is_qualified_name(&k.to_lowercase()) {
            e.invalid_s(path, k, &m);
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        e.too_long(path, TOTAL_ANNOTATION_SIZE);
    }
}

/// Upstream's `BannedOwners`: kinds that may not own anything (group, version, kind).
const BANNED_OWNERS: [(&str, &str, &str); 1] = [("", "v1", "Event")];

pub(crate) fn owner_references(e: &mut Errs, refs: &[Value]) {
    let path = "metadata.ownerReferences";
    let mut first_controller: Option<String> = None;
    for raw in refs {
        let r = Some(raw);
        let api_version = str_of(r, "apiVersion");
        let kind = str_of(r, "kind");
        // schema.FromAPIVersionAndKind: "group/version", or a bare version; more slashes or a
        // trailing slash leave the version empty.
        let (group, version) = match api_version.split('/').collect::<Vec<_>>().as_slice() {
            [v] => ("", *v),
            [g, v] => (*g, *v),
            _ => ("", ""),
        };
        if version.is_empty() {
            e.invalid_s(
                &child(path, "apiVersion"),
                api_version,
                "version must not be empty",
            );
        }
        if kind.is_empty() {
            e.invalid_s(&child(path, "kind"), kind, "kind must not be empty");
        }
        let name = str_of(r, "name");
        if name.is_empty() {
            e.invalid_s(&child(path, "name"), name, "name must not be empty");
        }
        let uid = str_of(r, "uid");
        if uid.is_empty() {
            e.invalid_s(&child(path, "uid"), uid, "uid must not be empty");
        }
        if BANNED_OWNERS.contains(&(group, version, kind)) {
            e.invalid(
                path,
                &compact(raw),
                &format!("{group}/{version}, Kind={kind} is disallowed from being an owner"),
            );
        }
        if bool_of(r, "controller") == Some(true) {
            let current = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => e.invalid(
                    path,
                    &compact(&Value::Array(refs.to_vec())),
                    &format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                ),
                None => first_controller = Some(current),
            }
        }
    }
}

/// Finalizer names: qualified names (reported on the list), plus core's rule that unprefixed
/// ones must be standard (reported per index). Upstream reports a bad name twice; so do we.
pub(crate) fn finalizers(e: &mut Errs, list: Option<&Value>, path: &str, object_meta: bool) {
    let Some(items) = list.and_then(Value::as_array) else {
        return;
    };
    let names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
    for f in &names {
        for m in is_qualified_name(f) {
            e.invalid_s(path, f, &m);
        }
    }
    if object_meta && names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        e.invalid(
            path,
            &go_strings(list),
            "finalizer orphan and foregroundDeletion cannot be both set",
        );
    }
    for (i, f) in names.iter().enumerate() {
        let p = if object_meta {
            idx(path, i)
        } else {
            path.to_string()
        };
        if object_meta {
            for m in is_qualified_name(f) {
                e.invalid_s(&p, f, &m);
            }
        }
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(f) {
            e.invalid_s(
                &p,
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// `ValidateLabelSelector`; returns whether `LabelSelectorAsSelector` would succeed.
pub(crate) fn label_selector(e: &mut Errs, sel: Option<&Value>, path: &str) -> bool {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return true;
    };
    let before = e.0.len();
    validate_labels(
        e,
        obj_of(Some(sel), "matchLabels"),
        &child(path, "matchLabels"),
    );
    for (i, r) in arr_of(Some(sel), "matchExpressions").iter().enumerate() {
        let p = idx(&child(path, "matchExpressions"), i);
        let r = Some(r);
        let values = strings_of(r, "values");
        match str_of(r, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    e.required(
                        &child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    e.forbidden(
                        &child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
            op => e.invalid_s(&child(&p, "operator"), op, "not a valid selector operator"),
        }
        validate_label_name(e, str_of(r, "key"), &child(&p, "key"));
        for (j, v) in values.iter().enumerate() {
            for m in is_label_value(v) {
                e.invalid_s(&idx(&child(&p, "values"), j), v, &m);
            }
        }
    }
    e.0.len() == before
}

pub(crate) fn selector_is_empty(sel: Option<&Value>) -> bool {
    obj_of(sel, "matchLabels").is_none_or(Map::is_empty)
        && arr_of(sel, "matchExpressions").is_empty()
}

/// `selector.Matches(labels)`; a missing or invalid selector matches nothing (`labels.Nothing()`).
pub(crate) fn selector_matches(sel: Option<&Value>, labels: Option<&Obj>) -> bool {
    match label_selector_from_json(sel.filter(|s| s.is_object())) {
        Ok(Some(selector)) => match labels {
            Some(labels) => selector.matches(labels),
            None => selector.matches(&()),
        },
        Ok(None) | Err(_) => false,
    }
}
