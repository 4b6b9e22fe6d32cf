//! What the workload kinds share: int-or-percent rules, the selector and template checks of
//! Deployment, ReplicaSet, ReplicationController, StatefulSet and DaemonSet, and the
//! ReplicaSet/ReplicationController table.

use crate::apiserver::machinery::prelude::*;
use crate::apiserver::registry::core::pod_spec::*;

// ---------------------------------------------------------------------------------------------
// apps/v1
// ---------------------------------------------------------------------------------------------

/// `ValidatePositiveIntOrPercent`.
pub(crate) fn int_or_percent(e: &mut Errs, v: Option<&Value>, path: &str) {
    match v {
        Some(Value::String(s)) if !is_valid_percent(s) => {
            e.invalid(
                path,
                &go_int_or_string(&Value::String(s.clone())),
                &regex_error(PERCENT_ERR, PERCENT_FMT, &["1%", "93%"]),
            );
        }
        Some(other) => e.non_negative(path, other.as_i64()),
        None => {}
    }
}

/// Value of an int-or-percent (the percentage number for "25%"), as upstream compares them.
pub(crate) fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|d| d.parse().ok())
            .unwrap_or(0),
        Some(other) => other.as_i64().unwrap_or(0),
        None => 0,
    }
}

pub(crate) fn not_more_than_100_percent(e: &mut Errs, v: Option<&Value>, path: &str) {
    if let Some(Value::String(s)) = v
        && is_valid_percent(s)
        && int_or_percent_value(v) > 100
    {
        e.invalid(
            path,
            &go_int_or_string(&Value::String(s.clone())),
            "must not be greater than 100%",
        );
    }
}

/// Selector presence/emptiness, selector syntax and the template-labels match, for the four
/// workload controllers. `kind_word` is the noun in "empty selector is invalid for ...".
pub(crate) fn workload_selector(
    e: &mut Errs,
    spec: Option<&Value>,
    kind_word: &str,
    require: bool,
) {
    let sel = get(spec, "selector");
    let mut selector_ok = true;
    match sel {
        None if require => e.required("spec.selector", ""),
        None => {}
        Some(s) => {
            selector_ok = label_selector(e, Some(s), "spec.selector");
            if selector_is_empty(Some(s)) {
                e.invalid(
                    "spec.selector",
                    &go_label_selector(Some(s)),
                    &format!("empty selector is invalid for {kind_word}"),
                );
            }
        }
    }
    if !selector_ok {
        if kind_word != "statefulset" && kind_word != "daemonset" {
            e.invalid(
                "spec.selector",
                &go_label_selector(sel),
                "invalid label selector",
            );
        }
        return;
    }
    let template_labels = obj_of(get(get(spec, "template"), "metadata"), "labels");
    // An empty (non-nil) selector selects everything; a missing one selects nothing.
    let empty_selector = sel.is_some() && selector_is_empty(sel);
    if !empty_selector && !selector_matches(sel, template_labels) {
        e.invalid(
            "spec.template.metadata.labels",
            &go_map(template_labels),
            "`selector` does not match template `labels`",
        );
    }
}

/// Template checks shared by Deployment, ReplicaSet, StatefulSet and DaemonSet.
pub(crate) fn workload_template(e: &mut Errs, spec: Option<&Value>, kind: &str, ctx: &PodCtx) {
    let template = get(spec, "template");
    pod_template(e, template, "spec.template", ctx);
    let tspec = get(template, "spec");
    if let Some(rp) = str_opt(tspec, "restartPolicy").filter(|r| !r.is_empty() && *r != "Always") {
        e.not_supported("spec.template.spec.restartPolicy", rp, &["Always"]);
    }
    if get(tspec, "activeDeadlineSeconds").is_some() {
        e.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        );
    }
}

pub(crate) fn selector_immutable(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let Some(old) = old else { return };
    let new_sel = get(get(obj, "spec"), "selector");
    let old_sel = get(get(Some(old), "spec"), "selector");
    if new_sel.map(normalize) != old_sel.map(normalize) {
        e.invalid("spec.selector", &go_label_selector(new_sel), IMMUTABLE);
    }
}

/// The table shared by ReplicaSets and ReplicationControllers.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const REPLICA_SET_COLUMNS: &[Column] = &[
        NAME,
        col(
            "Desired",
            "integer",
            "Replicas is the number of desired replicas.",
        ),
        col(
            "Current",
            "integer",
            "Replicas is the most recently observed number of replicas.",
        ),
        col(
            "Ready",
            "integer",
            "The number of ready replicas for this replica set.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", SELECTOR_DOC),
    ];

    /// Rows of ReplicaSets and ReplicationControllers, which differ only in how the selector prints.
    pub(crate) fn replica_cells(o: &Value, now: Timestamp, selector: String) -> Vec<Value> {
        let (names, images) = container_cells(o, &["spec", "template"]);
        vec![
            json!(name(o)),
            json!(replicas(o)),
            json!(int_at(o, &["status", "replicas"])),
            json!(int_at(o, &["status", "readyReplicas"])),
            json!(age(o, now)),
            json!(names),
            json!(images),
            json!(selector),
        ]
    }
}

pub(crate) use table::{REPLICA_SET_COLUMNS, replica_cells};

/// Validates a `*/scale` body (an `autoscaling/v1` Scale) as upstream's `ValidateScale`.
pub fn validate_scale(object: &Value) -> Vec<Cause> {
    let mut e = Errs::default();
    let obj = Some(object);
    meta_create(&mut e, get(obj, "metadata"), true, NameRule::Subdomain);
    if let Some(r) = int_of(get(obj, "spec"), "replicas").filter(|r| *r < 0) {
        e.invalid_i("spec.replicas", r, IS_NEGATIVE);
    }
    e.0
}
