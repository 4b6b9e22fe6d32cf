//! The ClusterRole aggregation controller (upstream's `pkg/controller/clusterroleaggregation`):
//! a ClusterRole with an `aggregationRule` gets as its rules those of every other ClusterRole
//! its selectors match, without duplicates, in name order. This is how `admin`, `edit` and
//! `view` grow when a ClusterRole labelled `rbac.authorization.k8s.io/aggregate-to-view: "true"`
//! (say, one that comes with a CRD) appears.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};
use serde_json::json;

use super::{ReconcileError, drive, retry_later};
use crate::apiserver::selectors::label_selector_from_json;

/// What the reconciler needs.
struct Context {
    client: Client,
}

/// Runs the controller until the task is dropped. Any ClusterRole change reconciles every
/// aggregated ClusterRole.
pub async fn run(client: Client) {
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let controller = Controller::new(roles.clone(), watcher::Config::default());
    let mapper_store = controller.store();
    let results = controller
        .watches(
            roles,
            watcher::Config::default(),
            move |_changed: ClusterRole| {
                mapper_store
                    .state()
                    .iter()
                    .filter(|role| role.aggregation_rule.is_some())
                    .map(|role| ObjectRef::from_obj(role.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, retry_later, Arc::new(Context { client }));
    drive("clusterrole-aggregation", results).await;
}

/// The rules `role` aggregates from `all` (upstream's order: by name, first occurrence kept).
pub fn aggregated_rules(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Vec<PolicyRule> {
    let Some(rule) = &role.aggregation_rule else {
        return Vec::new();
    };
    let mut sources: Vec<&Arc<ClusterRole>> = all
        .iter()
        .filter(|other| other.name_any() != role.name_any())
        .collect();
    sources.sort_by_key(|other| other.name_any());
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in rule.cluster_role_selectors.iter().flatten() {
        let Ok(Some(selector)) = label_selector_from_json(Some(&json!(selector))) else {
            continue;
        };
        for source in &sources {
            if !selector.matches(source.labels()) {
                continue;
            }
            for rule in source.rules.iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    rules
}

async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let name = role.name_any();
    let failed = ReconcileError::about("ClusterRole", "", &name);
    // Read afresh: the change that triggered this reconcile may not have reached the
    // controller's own cache yet (it comes through another watch), and a stale read would
    // settle on the old rules with nothing left to trigger another pass.
    let api = Api::<ClusterRole>::all(ctx.client.clone());
    let all: Vec<Arc<ClusterRole>> = api
        .list(&Default::default())
        .await
        .map_err(failed)?
        .items
        .into_iter()
        .map(Arc::new)
        .collect();
    let Some(current) = all.iter().find(|r| r.name_any() == name) else {
        return Ok(Action::await_change());
    };
    if current.aggregation_rule.is_none() {
        return Ok(Action::await_change());
    }
    let rules = aggregated_rules(current, &all);
    if current.rules.clone().unwrap_or_default() == rules {
        return Ok(Action::await_change());
    }
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"rules": rules})),
    )
    .await
    .map_err(failed)?;
    Ok(Action::await_change())
}
