//! `pods/<name>/eviction`: a deletion that honours PodDisruptionBudgets, as kube-apiserver's
//! `EvictionREST` does (what `kubectl drain` calls). A pod that is not running or already
//! terminating, or that no budget selects, is deleted at once; one budget must allow a
//! disruption, which the eviction spends (recording the pod in `status.disruptedPods` until the
//! disruption controller sees it go), or the answer is 429 and the client retries.

use serde_json::{Value, json};

use super::{
    ApiServer,
    handlers::{DeleteOptions, Scope},
    meta,
    query::Query,
    registry::{Subresource, policy::pod_disruption_budget as pdb},
    selectors::{label_selector_from_json, labels_of},
    status::ApiError,
};

/// Upstream's bound on evictions a budget records before its controller confirms them.
const MAX_DISRUPTED_PODS: usize = 2000;

/// The message of every eviction a budget refuses.
const WOULD_VIOLATE: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// The cause type upstream gives those refusals.
const DISRUPTION_BUDGET_CAUSE: &str = "DisruptionBudget";

impl ApiServer {
    /// Evicts the pod `name`: checks and spends its disruption budget, then deletes it with
    /// the eviction's `deleteOptions`.
    pub async fn evict_pod(
        &self,
        scope: &Scope,
        name: &str,
        eviction: &Value,
        query: &Query,
    ) -> Result<Value, ApiError> {
        check_eviction(eviction, name)?;
        let options = DeleteOptions::parse(eviction.get("deleteOptions"), query)?;
        let pod = self.get_object(scope, name).await?.object;
        if !can_ignore_budgets(&pod) {
            let namespace = scope.namespace.clone().unwrap_or_default();
            self.spend_budget(&namespace, &pod, options.dry_run).await?;
        }
        self.delete_object(scope, name, &options).await?;
        Ok(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
        )
    }

    /// Finds the budget selecting `pod` and takes one disruption from it.
    async fn spend_budget(
        &self,
        namespace: &str,
        pod: &Value,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let budgets = self.budgets_selecting(namespace, pod).await?;
        let budget = match budgets.as_slice() {
            [] => return Ok(()),
            [one] => one,
            _ => {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
        };
        // An unhealthy pod does not count towards the budget; evicting it spends nothing when
        // the policy always allows it, or when the budget is met without it.
        if !ready(pod) {
            let spec = &budget["spec"];
            let status = &budget["status"];
            let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
            let current = status["currentHealthy"].as_i64().unwrap_or(0);
            if spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
                || (current >= desired && desired > 0)
            {
                return Ok(());
            }
        }
        let budget_name = meta::name(budget).to_owned();
        let pod_name = meta::name(pod).to_owned();
        if dry_run {
            return decrement(budget, &pod_name).map(|_| ());
        }
        let scope = Scope {
            resource: &pdb::RESOURCE,
            namespace: Some(namespace.to_owned()),
        };
        self.write_update(
            &scope,
            &budget_name,
            &Query::default(),
            |current| decrement(&current.object, &pod_name),
            Some(Subresource::Status),
        )
        .await?;
        Ok(())
    }

    /// The budgets in `namespace` whose selector matches `pod`'s labels.
    async fn budgets_selecting(
        &self,
        namespace: &str,
        pod: &Value,
    ) -> Result<Vec<Value>, ApiError> {
        let resource = &pdb::RESOURCE;
        let page = self
            .store
            .list(&resource.prefix(Some(namespace)), 0, None)
            .await
            .map_err(|err| ApiError::from_storage(err, &resource.qualified_name(), ""))?;
        let labels = labels_of(pod);
        Ok(page
            .items
            .into_iter()
            .map(|stored| stored.object)
            .filter(|budget| {
                // A null selector selects nothing, an empty one everything (policy/v1).
                matches!(label_selector_from_json(budget["spec"].get("selector")),
                         Ok(Some(selector)) if selector.matches(&labels))
            })
            .collect())
    }
}

/// The eviction's kind, version and name must fit the pod it is posted to.
fn check_eviction(eviction: &Value, name: &str) -> Result<(), ApiError> {
    match eviction["apiVersion"].as_str() {
        None | Some("" | "policy/v1" | "policy/v1beta1") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the apiVersion of an eviction must be policy/v1, not {other}"
            )));
        }
    }
    if !matches!(eviction["kind"].as_str(), None | Some("" | "Eviction")) {
        return Err(ApiError::bad_request(
            "the body of an eviction must be an Eviction",
        ));
    }
    let given = meta::name(eviction);
    if !given.is_empty() && given != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    Ok(())
}

/// Upstream's `canIgnorePDB`: a pod that is not running, or already terminating.
fn can_ignore_budgets(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Pending")
    ) || !pod["metadata"]["deletionTimestamp"].is_null()
}

/// Whether the pod's Ready condition is True.
fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Upstream's `checkAndDecrement`: the budget with one disruption spent on `pod_name`, or why
/// it cannot be.
fn decrement(budget: &Value, pod_name: &str) -> Result<Value, ApiError> {
    let name = meta::name(budget);
    let status = &budget["status"];
    let generation = budget["metadata"]["generation"].as_i64().unwrap_or(0);
    if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
        return Err(ApiError::too_many_requests(
            WOULD_VIOLATE,
            10,
            &[(
                DISRUPTION_BUDGET_CAUSE,
                format!("The disruption budget {name} is still being processed by the server."),
            )],
        ));
    }
    let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
    let qualified = pdb::RESOURCE.qualified_name();
    if allowed < 0 {
        return Err(ApiError::forbidden(
            &qualified,
            name,
            "pdb disruptions allowed is negative",
        ));
    }
    let disrupted = status["disruptedPods"]
        .as_object()
        .map_or(0, serde_json::Map::len);
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(ApiError::forbidden(
            &qualified,
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(ApiError::too_many_requests(
            WOULD_VIOLATE,
            0,
            &[(
                DISRUPTION_BUDGET_CAUSE,
                format!(
                    "The disruption budget {name} needs {} healthy pods and has {} currently",
                    status["desiredHealthy"].as_i64().unwrap_or(0),
                    status["currentHealthy"].as_i64().unwrap_or(0)
                ),
            )],
        ));
    }
    let mut next = budget.clone();
    let now = meta::now();
    next["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if allowed == 1 {
        pdb::set_disruption_allowed(&mut next["status"], false, None, "", generation, &now);
    }
    next["status"]["disruptedPods"][pod_name] = json!(now);
    Ok(next)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (project rule).
mod tests {
    use super::*;

    fn budget(allowed: i64, observed: i64) -> Value {
        json!({"metadata": {"name": "web", "generation": 2},
               "spec": {"minAvailable": 1},
               "status": {"observedGeneration": observed, "disruptionsAllowed": allowed,
                          "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2}})
    }

    #[test]
    fn a_budget_with_room_is_spent_and_remembers_the_pod() {
        let next = decrement(&budget(1, 2), "web-a").unwrap();
        assert_eq!(next["status"]["disruptionsAllowed"], 0);
        assert!(next["status"]["disruptedPods"]["web-a"].is_string());
        let condition = &next["status"]["conditions"][0];
        assert_eq!(condition["type"], "DisruptionAllowed");
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "InsufficientPods");
    }

    #[test]
    fn a_spent_budget_answers_429_with_upstreams_message_and_cause() {
        let err = decrement(&budget(0, 2), "web-a").unwrap_err();
        assert_eq!(err.code, 429);
        assert_eq!(err.reason, "TooManyRequests");
        assert_eq!(err.message, WOULD_VIOLATE);
        let details = err.details.unwrap();
        assert!(details.get("retryAfterSeconds").is_none());
        assert_eq!(details["causes"][0]["reason"], "DisruptionBudget");
        assert_eq!(
            details["causes"][0]["message"],
            "The disruption budget web needs 1 healthy pods and has 2 currently"
        );
    }

    #[test]
    fn a_budget_not_yet_counted_asks_to_retry_in_ten_seconds() {
        let err = decrement(&budget(1, 1), "web-a").unwrap_err();
        assert_eq!(err.code, 429);
        assert_eq!(err.details.unwrap()["retryAfterSeconds"], 10);
    }

    #[test]
    fn evictions_name_their_pod_and_are_evictions() {
        assert!(
            check_eviction(
                &json!({"apiVersion": "policy/v1", "kind": "Eviction",
                                       "metadata": {"name": "p"}}),
                "p"
            )
            .is_ok()
        );
        assert_eq!(
            check_eviction(&json!({"metadata": {"name": "q"}}), "p")
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(
            check_eviction(&json!({"apiVersion": "v1"}), "p")
                .unwrap_err()
                .code,
            400
        );
    }

    #[test]
    fn pods_not_running_or_terminating_ignore_budgets() {
        assert!(can_ignore_budgets(&json!({"status": {"phase": "Pending"}})));
        assert!(can_ignore_budgets(
            &json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
                                           "status": {"phase": "Running"}})
        ));
        assert!(!can_ignore_budgets(
            &json!({"status": {"phase": "Running"}})
        ));
    }
}
