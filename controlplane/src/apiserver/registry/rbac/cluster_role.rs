//! `rbac.authorization.k8s.io/v1` ClusterRole: a set of permissions across the cluster, or one
//! aggregated from other ClusterRoles by label (kept by `controllers/clusterrole_aggregation.rs`).

use super::{admit_role, escalation_checked, policy_rules};
use crate::apiserver::registry::prelude::*;
use crate::apiserver::tables::upstream::CREATED_AT_COLUMNS;
use k8s_openapi::api::rbac::v1 as api;

/// The `clusterroles` resource.
pub static RESOURCE: Resource = Resource {
    group: super::GROUP,
    version: "v1",
    kind: "ClusterRole",
    plural: "clusterroles",
    singular: "clusterrole",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "clusterroles",
    field_labels: &[],
    strategy: &ClusterRoles,
};

/// The `ClusterRole` strategy.
pub struct ClusterRoles;

impl Strategy for ClusterRoles {
    typed_as!("v1.ClusterRole", api::ClusterRole);

    /// Upstream's `ValidateRBACName`: names such as `system:node` are allowed.
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, e: &mut Errs, object: &Value, _old: Option<&Value>) {
        policy_rules(e, object, false);
        let Some(aggregation) = object.get("aggregationRule").filter(|a| !a.is_null()) else {
            return;
        };
        let selectors = arr_of(Some(aggregation), "clusterRoleSelectors");
        if selectors.is_empty() {
            e.required(
                "aggregationRule.clusterRoleSelectors",
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            );
        }
        for (i, selector) in selectors.iter().enumerate() {
            label_selector(
                e,
                Some(selector),
                &idx("aggregationRule.clusterRoleSelectors", i),
            );
        }
    }

    escalation_checked!(admit_role);

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(CREATED_AT_COLUMNS)
    }

    fn cells(&self, object: &Value, _now: Timestamp) -> Vec<Value> {
        crate::apiserver::tables::created_at_cells(object)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "system:pod-reader"}, "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]}),
            invalid: json!({"metadata": {"name": "mixed"}, "rules": [
                {"apiGroups": [""], "resources": ["pods"], "nonResourceURLs": ["/x"], "verbs": ["get"]}]}),
            invalid_field: "rules[0].nonResourceURLs",
        }
    }
}
