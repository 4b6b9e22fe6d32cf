//! `scheduling.k8s.io/v1` PriorityClass: validation (reserved `system-` names, the highest
//! user-definable value, immutable value and preemption policy), the default preemption
//! policy, one global default, the two system classes nobody may delete, the table and the
//! patch schema; and the Priority admission of pods, which turns a pod's
//! `priorityClassName` into its `priority` (the scheduler does not preempt yet).

use futures::future::BoxFuture;

use crate::apiserver::admission::Admission;
use crate::apiserver::meta;
use crate::apiserver::registry::prelude::*;
use crate::apiserver::status::ApiError;
use k8s_openapi::api::scheduling::v1 as api;

/// The `priorityclasses` resource.
pub static RESOURCE: Resource = Resource {
    group: "scheduling.k8s.io",
    version: "v1",
    kind: "PriorityClass",
    plural: "priorityclasses",
    singular: "priorityclass",
    namespaced: false,
    short_names: &["pc"],
    categories: &[],
    subresources: &[],
    storage_prefix: "priorityclasses",
    field_labels: &[],
    strategy: &PriorityClasses,
};

/// The highest value a PriorityClass not reserved for the system may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// The prefix of the names reserved for the system's classes.
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";

/// The preemption policies a class (and a pod) may have.
pub const PREEMPTION_POLICIES: [&str; 2] = ["Never", "PreemptLowerPriority"];

/// The system's classes, as upstream creates them at start: (name, value, description).
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// The `PriorityClass` strategy.
pub struct PriorityClasses;

impl Strategy for PriorityClasses {
    typed_as!("v1.PriorityClass", api::PriorityClass);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        validate_class(e, object, old);
    }

    fn default(&self, object: &mut Value) {
        if object["preemptionPolicy"].is_null() {
            object["preemptionPolicy"] = json!("PreemptLowerPriority");
        }
    }

    /// Only one class may be the global default (upstream's Priority admission).
    fn admit<'a>(
        &'a self,
        _admission: &'a Admission,
        lookup: &'a dyn Lookup,
        object: &'a mut Value,
        _old: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if object["globalDefault"] != json!(true) {
                return Ok(());
            }
            let name = meta::name(object);
            let classes = lookup.list(&RESOURCE, None).await?;
            match global_default(&classes) {
                Some(other) if meta::name(other) != name => Err(ApiError::forbidden(
                    &RESOURCE.qualified_name(),
                    name,
                    &format!(
                        "PriorityClass {} is already marked as default. Only one default can exist",
                        meta::name(other)
                    ),
                )),
                _ => Ok(()),
            }
        })
    }

    fn undeletable(&self, name: &str) -> Option<&'static str> {
        SYSTEM_PRIORITY_CLASSES
            .iter()
            .any(|(system, _, _)| *system == name)
            .then_some("this is a system priority class and cannot be deleted")
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "high"}, "value": 1000}),
            invalid: json!({"metadata": {"name": "high"}, "value": 1_000_000_001}),
            invalid_field: "value",
        }
    }
}

/// `ValidatePriorityClass` and `ValidatePriorityClassUpdate`.
fn validate_class(e: &mut Errs, object: &Value, old: Option<&Value>) {
    let obj = Some(object);
    let name = meta::name(object);
    let value = int_of(obj, "value").unwrap_or(0);
    if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
        if let Err(why) =
            known_system_class(name, value, bool_of(obj, "globalDefault") == Some(true))
        {
            e.forbidden(
                "metadata.name",
                &format!(
                    "priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {why}"
                ),
            );
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        e.forbidden(
            "value",
            &format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            ),
        );
    }
    if let Some(policy) = str_opt(obj, "preemptionPolicy")
        && !PREEMPTION_POLICIES.contains(&policy)
    {
        e.not_supported("preemptionPolicy", policy, &PREEMPTION_POLICIES);
    }
    if let Some(old) = old {
        if int_of(Some(old), "value").unwrap_or(0) != value {
            e.forbidden("value", "may not be changed in an update.");
        }
        let policy = |o: &Value| o.get("preemptionPolicy").cloned().unwrap_or(Value::Null);
        if policy(old) != policy(object) {
            e.invalid("preemptionPolicy", &compact(&policy(object)), IMMUTABLE);
        }
    }
}

/// Upstream's `IsKnownSystemPriorityClass`.
fn known_system_class(name: &str, value: i64, global_default: bool) -> Result<(), String> {
    let Some((_, expected, _)) = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("{name} is not a known system priority class"));
    };
    if *expected != value {
        return Err(format!("value of {name} PriorityClass must be {expected}"));
    }
    if global_default {
        return Err(format!(
            "globalDefault of {name} PriorityClass must be false"
        ));
    }
    Ok(())
}

/// The class marked `globalDefault` among `classes`, if any.
fn global_default(classes: &[Value]) -> Option<&Value> {
    classes.iter().find(|c| c["globalDefault"] == json!(true))
}

/// Upstream's Priority admission of a new pod: its priority (and preemption policy) come from
/// its `priorityClassName`, or from the global default class, or are 0; a pod that names a
/// class that does not exist, or sets a priority of its own that differs, is refused (403).
pub fn admit_pod(pod: &mut Value, classes: &[Value]) -> Result<(), ApiError> {
    let forbidden = |why: String| ApiError::forbidden("pods", meta::name(pod), &why);
    let named = pod["spec"]["priorityClassName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_owned);
    let class =
        match &named {
            Some(name) => Some(classes.iter().find(|c| meta::name(c) == name).ok_or_else(
                || forbidden(format!("no PriorityClass with name {name} was found")),
            )?),
            None => global_default(classes),
        };
    let priority = class.and_then(|c| c["value"].as_i64()).unwrap_or(0);
    let policy = class
        .and_then(|c| c["preemptionPolicy"].as_str())
        .unwrap_or("PreemptLowerPriority")
        .to_owned();
    if let Some(given) = pod["spec"]["priority"].as_i64()
        && given != priority
    {
        return Err(forbidden(format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
        )));
    }
    if let Some(given) = pod["spec"]["preemptionPolicy"].as_str()
        && given != policy
    {
        return Err(forbidden(format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
        )));
    }
    if !pod["spec"].is_object() {
        return Ok(());
    }
    if named.is_none()
        && let Some(class) = class
    {
        pod["spec"]["priorityClassName"] = json!(meta::name(class));
    }
    pod["spec"]["priority"] = json!(priority);
    pod["spec"]["preemptionPolicy"] = json!(policy);
    Ok(())
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const COLUMNS: &[Column] = &[
        NAME,
        col(
            "Value",
            "integer",
            "value represents the integer value of this priority class.",
        ),
        col(
            "Global-Default",
            "boolean",
            "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
        ),
        AGE,
        col(
            "PreemptionPolicy",
            "string",
            "preemptionPolicy is the Policy for preempting pods with lower priority.",
        ),
    ];

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(o: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            json!(name(o)),
            json!(int_at(o, &["value"])),
            json!(bool_at(o, &["globalDefault"]).unwrap_or(false)),
            json!(age(o, now)),
            // PriorityClass defaulting fills in the preemption policy.
            json!(or_default(
                str_at(o, &["preemptionPolicy"]),
                "PreemptLowerPriority"
            )),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (project rule).
mod tests {
    use super::*;

    fn class(name: &str, value: i64, global_default: bool) -> Value {
        json!({"metadata": {"name": name}, "value": value, "globalDefault": global_default,
               "preemptionPolicy": "PreemptLowerPriority"})
    }

    #[test]
    fn a_pod_takes_its_classes_priority() {
        let classes = [class("high", 1000, false), class("low", 10, true)];
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"priorityClassName": "high"}});
        admit_pod(&mut pod, &classes).unwrap();
        assert_eq!(pod["spec"]["priority"], 1000);
        assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        // Without a name, the global default's.
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {}});
        admit_pod(&mut pod, &classes).unwrap();
        assert_eq!(pod["spec"]["priority"], 10);
        assert_eq!(pod["spec"]["priorityClassName"], "low");
        // Without either, 0.
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {}});
        admit_pod(&mut pod, &classes[..1]).unwrap();
        assert_eq!(pod["spec"]["priority"], 0);
        assert!(pod["spec"].get("priorityClassName").is_none());
    }

    #[test]
    fn unknown_classes_and_own_priorities_are_forbidden_as_upstream() {
        let classes = [class("high", 1000, false)];
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"priorityClassName": "nope"}});
        let err = admit_pod(&mut pod, &classes).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: no PriorityClass with name nope was found"
        );
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"priorityClassName": "high", "priority": 5}});
        let err = admit_pod(&mut pod, &classes).unwrap_err();
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
        );
    }

    #[test]
    fn system_names_are_reserved_and_values_fixed() {
        let resource = &RESOURCE;
        let causes = resource.validate(&class("system-mine", 10, false), None);
        assert_eq!(causes[0].field, "metadata.name");
        assert!(
            causes[0]
                .message
                .contains("system-mine is not a known system priority class")
        );
        assert!(
            resource
                .validate(&class("system-node-critical", 2_000_001_000, false), None)
                .is_empty()
        );
        let causes = resource.validate(&class("high", 7, false), Some(&class("high", 6, false)));
        assert_eq!(causes[0].field, "value");
        assert_eq!(
            causes[0].message,
            "Forbidden: may not be changed in an update."
        );
    }
}
