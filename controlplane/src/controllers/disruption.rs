//! The disruption controller (upstream's `pkg/controller/disruption`): for every
//! PodDisruptionBudget, counts the pods it selects, how many must stay healthy and how many are,
//! and writes how many may be disrupted now. The `pods/eviction` subresource spends that count
//! and records each evicted pod in `status.disruptedPods`; such a pod no longer counts as
//! healthy until it is gone, or until upstream's two minutes pass without it going.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet, StatefulSet},
        core::v1::{Pod, ReplicationController},
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus},
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, PostParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};
use serde_json::{Value, json};

use super::{
    Context, ReconcileError, drive, pod_ready, retry_later, scaled_value, selector_string,
};
use crate::apiserver::registry::policy::pod_disruption_budget::set_disruption_allowed;

/// How long an eviction keeps its pod out of the healthy count while the pod does not go
/// (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(2 * 60);

/// Runs the controller until the task is dropped. A pod change reconciles the budgets of its
/// namespace.
pub async fn run(client: Client) {
    let budgets: Api<PodDisruptionBudget> = Api::all(client.clone());
    let controller = Controller::new(budgets, watcher::Config::default());
    let store = controller.store();
    let results = controller
        .watches(
            Api::<Pod>::all(client.clone()),
            watcher::Config::default(),
            move |pod: Pod| {
                let namespace = pod.namespace();
                store
                    .state()
                    .iter()
                    .filter(|budget| budget.namespace() == namespace)
                    .map(|budget| ObjectRef::from_obj(budget.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, retry_later, Arc::new(Context { client }));
    drive("disruption", results).await;
}

async fn reconcile(
    budget: Arc<PodDisruptionBudget>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = budget.namespace().unwrap_or_default();
    let name = budget.name_any();
    let fail = ReconcileError::about("PodDisruptionBudget", &namespace, &name);
    let spec = budget.spec.clone().unwrap_or_default();
    let pods = match &spec.selector {
        // A null selector selects nothing; an empty one every pod of the namespace.
        None => Vec::new(),
        Some(selector) => {
            let Some(selector) = selector_string(selector) else {
                return Ok(Action::await_change());
            };
            Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(fail)?
                .items
        }
    };
    let by_controllers = spec.max_unavailable.is_some()
        || matches!(spec.min_available, Some(IntOrString::String(_)));
    let scale = if by_controllers {
        Some(
            controllers_scale(&ctx.client, &namespace, &pods)
                .await
                .map_err(fail)?,
        )
    } else {
        None
    };
    let old = serde_json::to_value(budget.status.clone().unwrap_or_default()).unwrap_or_default();
    let generation = budget.metadata.generation.unwrap_or(0);
    let now = jiff::Timestamp::now();
    let (status, next_expiry) = match scale {
        Some(Err(why)) => (failed_status(&old, &why, generation, now), None),
        Some(Ok(scale)) => counted_status(&spec, &pods, Some(scale), &old, generation, now),
        None => counted_status(&spec, &pods, None, &old, generation, now),
    };
    if status != old {
        let mut next = (*budget).clone();
        next.status = serde_json::from_value::<PodDisruptionBudgetStatus>(status).ok();
        Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), &namespace)
            .replace_status(&name, &PostParams::default(), &next)
            .await
            .map_err(fail)?;
    }
    Ok(match next_expiry {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// The number of pods the controllers of `pods` want (upstream's `getExpectedScale`), or why it
/// cannot be known (a pod without a controller that has a scale).
async fn controllers_scale(
    client: &Client,
    namespace: &str,
    pods: &[Pod],
) -> Result<Result<i32, String>, kube::Error> {
    let mut counted: HashSet<String> = HashSet::new();
    let mut total = 0;
    for pod in pods {
        let Some(owner) = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
        else {
            return Ok(Err(format!(
                "found no controllers for pod {:?}",
                pod.name_any()
            )));
        };
        let (uid, replicas) = match owner.kind.as_str() {
            "ReplicaSet" => {
                let set = Api::<ReplicaSet>::namespaced(client.clone(), namespace)
                    .get(&owner.name)
                    .await?;
                // A ReplicaSet of a Deployment scales with the Deployment.
                match set
                    .owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true) && o.kind == "Deployment")
                {
                    Some(deployment) => {
                        let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
                            .get(&deployment.name)
                            .await?;
                        (deployment.uid(), deployment.spec.and_then(|s| s.replicas))
                    }
                    None => (set.uid(), set.spec.and_then(|s| s.replicas)),
                }
            }
            "ReplicationController" => {
                let rc = Api::<ReplicationController>::namespaced(client.clone(), namespace)
                    .get(&owner.name)
                    .await?;
                (rc.uid(), rc.spec.and_then(|s| s.replicas))
            }
            "StatefulSet" => {
                let set = Api::<StatefulSet>::namespaced(client.clone(), namespace)
                    .get(&owner.name)
                    .await?;
                (set.uid(), set.spec.and_then(|s| s.replicas))
            }
            _ => {
                return Ok(Err(format!(
                    "found no controllers for pod {:?}",
                    pod.name_any()
                )));
            }
        };
        if counted.insert(uid.unwrap_or_default()) {
            total += replicas.unwrap_or(1);
        }
    }
    Ok(Ok(total))
}

/// The budget's status from its pods (and the scale of their controllers, when the budget is a
/// percentage or a maxUnavailable), and when the next recorded eviction expires.
fn counted_status(
    spec: &k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec,
    pods: &[Pod],
    scale: Option<i32>,
    old: &Value,
    generation: i64,
    now: jiff::Timestamp,
) -> (Value, Option<Duration>) {
    let expected = scale.unwrap_or_else(|| i32::try_from(pods.len()).unwrap_or(i32::MAX));
    let desired = match (&spec.max_unavailable, &spec.min_available) {
        (Some(max), _) => (expected - scaled_value(max, expected, true)).max(0),
        (None, Some(min)) => scaled_value(min, expected, true),
        (None, None) => 0,
    };
    let (disrupted, next_expiry) = still_disrupted(old, pods, now);
    let current = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .filter(|pod| !disrupted.contains_key(&pod.name_any()))
        .filter(|pod| pod_ready(pod))
        .count();
    let current = i32::try_from(current).unwrap_or(i32::MAX);
    let allowed = (current - desired).max(0);
    let mut status = json!({
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": current,
        "desiredHealthy": desired,
        "expectedPods": expected,
        "conditions": old["conditions"].clone(),
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = json!(disrupted);
    }
    set_disruption_allowed(&mut status, allowed > 0, None, "", generation, &stamp(now));
    (status, next_expiry)
}

/// Upstream's `failSafe`: the counts stay, but nothing may be disrupted while they cannot be
/// computed.
fn failed_status(old: &Value, why: &str, generation: i64, now: jiff::Timestamp) -> Value {
    let mut status = old.clone();
    status["observedGeneration"] = json!(generation);
    status["disruptionsAllowed"] = json!(0);
    set_disruption_allowed(
        &mut status,
        false,
        Some("SyncFailed"),
        why,
        generation,
        &stamp(now),
    );
    status
}

/// The evictions still pending (pod name -> when), upstream's `buildDisruptedPodMap`: an entry
/// goes when its pod is gone or terminating, or after [`DELETION_TIMEOUT`]; also how long until
/// the first kept one expires.
fn still_disrupted(
    old: &Value,
    pods: &[Pod],
    now: jiff::Timestamp,
) -> (BTreeMap<String, String>, Option<Duration>) {
    let mut kept = BTreeMap::new();
    let mut next: Option<Duration> = None;
    for (name, when) in old["disruptedPods"].as_object().into_iter().flatten() {
        let Some(pod) = pods.iter().find(|pod| pod.name_any() == *name) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(at) = when
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        else {
            continue;
        };
        let elapsed = now.duration_since(at);
        let left = jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default() - elapsed;
        if left.is_positive() {
            let left = Duration::try_from(left).unwrap_or_default();
            next = Some(next.map_or(left, |n| n.min(left)));
            kept.insert(name.clone(), when.as_str().unwrap_or_default().to_owned());
        }
    }
    (kept, next)
}

/// A timestamp as Kubernetes writes it.
fn stamp(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (project rule).
mod tests {
    use super::*;
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;

    fn pod(name: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn min_available_counts_healthy_pods() {
        let spec = PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            ..Default::default()
        };
        let pods = [pod("a", true), pod("b", true), pod("c", false)];
        let (status, next) = counted_status(&spec, &pods, None, &json!({}), 3, now());
        assert_eq!(status["expectedPods"], 3);
        assert_eq!(status["desiredHealthy"], 1);
        assert_eq!(status["currentHealthy"], 2);
        assert_eq!(status["disruptionsAllowed"], 1);
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["conditions"][0]["reason"], "SufficientPods");
        assert!(next.is_none());
    }

    #[test]
    fn an_evicted_pod_stops_counting_until_it_goes_or_two_minutes_pass() {
        let spec = PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            ..Default::default()
        };
        let pods = [pod("a", true), pod("b", true)];
        let old =
            json!({"disruptedPods": {"a": "2026-01-01T11:59:30Z", "gone": "2026-01-01T11:59:30Z"}});
        let (status, next) = counted_status(&spec, &pods, None, &old, 1, now());
        assert_eq!(status["currentHealthy"], 1);
        assert_eq!(status["disruptionsAllowed"], 0);
        assert_eq!(
            status["disruptedPods"],
            json!({"a": "2026-01-01T11:59:30Z"})
        );
        assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");
        assert_eq!(next, Some(Duration::from_secs(90)));
        let old = json!({"disruptedPods": {"a": "2026-01-01T11:57:00Z"}});
        let (status, _) = counted_status(&spec, &pods, None, &old, 1, now());
        assert_eq!(status["currentHealthy"], 2);
        assert!(status.get("disruptedPods").is_none());
    }

    #[test]
    fn max_unavailable_and_percentages_use_the_controllers_scale() {
        let spec = PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::String("25%".into())),
            ..Default::default()
        };
        let pods = [pod("a", true), pod("b", true), pod("c", true)];
        let (status, _) = counted_status(&spec, &pods, Some(4), &json!({}), 1, now());
        assert_eq!(status["expectedPods"], 4);
        assert_eq!(status["desiredHealthy"], 3);
        assert_eq!(status["disruptionsAllowed"], 0);
    }

    #[test]
    fn a_failed_count_allows_nothing() {
        let old = json!({"disruptionsAllowed": 2, "currentHealthy": 2});
        let status = failed_status(&old, "found no controllers for pod \"a\"", 2, now());
        assert_eq!(status["disruptionsAllowed"], 0);
        assert_eq!(status["currentHealthy"], 2);
        assert_eq!(status["conditions"][0]["reason"], "SyncFailed");
    }
}
