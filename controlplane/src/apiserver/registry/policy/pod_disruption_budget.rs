//! `policy/v1` PodDisruptionBudget: validation, status on create, the table and the patch
//! schema. The disruption controller (`controllers/disruption.rs`) keeps its status; the
//! `pods/eviction` subresource (`apiserver/eviction.rs`) spends it.

use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::policy::v1 as api;

/// The `poddisruptionbudgets` resource.
pub static RESOURCE: Resource = Resource {
    group: "policy",
    version: "v1",
    kind: "PodDisruptionBudget",
    plural: "poddisruptionbudgets",
    singular: "poddisruptionbudget",
    namespaced: true,
    short_names: &["pdb"],
    categories: &[],
    subresources: &[Subresource::Status],
    storage_prefix: "poddisruptionbudgets",
    field_labels: &[],
    strategy: &PodDisruptionBudgets,
};

/// The `unhealthyPodEvictionPolicy` values upstream accepts.
pub const UNHEALTHY_POD_EVICTION_POLICIES: [&str; 2] = ["AlwaysAllow", "IfHealthyBudget"];

/// The `PodDisruptionBudget` strategy.
pub struct PodDisruptionBudgets;

impl Strategy for PodDisruptionBudgets {
    typed_as!("v1.PodDisruptionBudget", api::PodDisruptionBudget);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        spec(e, object.get("spec"));
        if old.is_some() {
            status(e, object.get("status"));
        }
    }

    /// The counters are plain int32s upstream, so a new budget shows them at 0 until the
    /// disruption controller has counted its pods.
    fn status_on_create(&self, _object: &Value) -> Option<Value> {
        Some(json!({
            "disruptionsAllowed": 0,
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "expectedPods": 0,
        }))
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "web"},
                          "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}),
            invalid: json!({"metadata": {"name": "web"},
                            "spec": {"minAvailable": 1, "maxUnavailable": "10%",
                                     "selector": {"matchLabels": {"app": "web"}}}}),
            invalid_field: "spec",
        }
    }
}

/// `ValidatePodDisruptionBudgetSpec`.
fn spec(e: &mut Errs, spec: Option<&Value>) {
    let min = get(spec, "minAvailable").filter(|v| !v.is_null());
    let max = get(spec, "maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        e.invalid(
            "spec",
            &compact(spec.unwrap_or(&Value::Null)),
            "minAvailable and maxUnavailable cannot be both set",
        );
    }
    for (field, value) in [("minAvailable", min), ("maxUnavailable", max)] {
        if value.is_some() {
            let path = format!("spec.{field}");
            int_or_percent(e, value, &path);
            not_more_than_100_percent(e, value, &path);
        }
    }
    label_selector(e, get(spec, "selector"), "spec.selector");
    if let Some(policy) = str_opt(spec, "unhealthyPodEvictionPolicy")
        && !UNHEALTHY_POD_EVICTION_POLICIES.contains(&policy)
    {
        e.not_supported(
            "spec.unhealthyPodEvictionPolicy",
            policy,
            &UNHEALTHY_POD_EVICTION_POLICIES,
        );
    }
}

/// `ValidatePodDisruptionBudgetStatusUpdate`: the counters are never negative.
fn status(e: &mut Errs, status: Option<&Value>) {
    for field in [
        "disruptionsAllowed",
        "currentHealthy",
        "desiredHealthy",
        "expectedPods",
    ] {
        e.non_negative(&format!("status.{field}"), int_of(status, field));
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const COLUMNS: &[Column] = &[
        NAME,
        col(
            "Min Available",
            "string",
            "The minimum number of pods that must be available.",
        ),
        col(
            "Max Unavailable",
            "string",
            "The maximum number of pods that may be unavailable.",
        ),
        col(
            "Allowed Disruptions",
            "integer",
            "Calculated number of pods that may be disrupted at this time.",
        ),
        AGE,
    ];

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(o: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            json!(name(o)),
            json!(int_or_string(get(o, &["spec", "minAvailable"]))),
            json!(int_or_string(get(o, &["spec", "maxUnavailable"]))),
            json!(int_at(o, &["status", "disruptionsAllowed"])),
            json!(age(o, now)),
        ]
    }
}

/// The condition a budget's status carries about whether a disruption is allowed now.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";

/// Sets the `DisruptionAllowed` condition of a budget's `status` as upstream's
/// `UpdateDisruptionAllowedCondition` does (reasons `SufficientPods`/`InsufficientPods`, or
/// `reason` given for a failed sync); its transition time moves only when its status changes.
pub fn set_disruption_allowed(
    status: &mut Value,
    allowed: bool,
    reason: Option<&str>,
    message: &str,
    generation: i64,
    now: &str,
) {
    let (value, default_reason) = if allowed {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let mut conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    let previous = conditions
        .iter()
        .position(|c| c["type"] == DISRUPTION_ALLOWED);
    let since = previous
        .map(|i| &conditions[i])
        .filter(|c| c["status"] == value)
        .and_then(|c| c["lastTransitionTime"].as_str())
        .unwrap_or(now)
        .to_owned();
    let condition = json!({
        "type": DISRUPTION_ALLOWED,
        "status": value,
        "reason": reason.unwrap_or(default_reason),
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since,
    });
    match previous {
        Some(i) => conditions[i] = condition,
        None => conditions.push(condition),
    }
    status["conditions"] = Value::Array(conditions);
}
