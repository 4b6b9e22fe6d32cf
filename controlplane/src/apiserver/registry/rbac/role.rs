//! `rbac.authorization.k8s.io/v1` Role: a namespace's set of permissions.

use super::{admit_role, escalation_checked, policy_rules};
use crate::apiserver::registry::prelude::*;
use crate::apiserver::tables::upstream::CREATED_AT_COLUMNS;
use k8s_openapi::api::rbac::v1 as api;

/// The `roles` resource.
pub static RESOURCE: Resource = Resource {
    group: super::GROUP,
    version: "v1",
    kind: "Role",
    plural: "roles",
    singular: "role",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "roles",
    field_labels: &[],
    strategy: &Roles,
};

/// The `Role` strategy.
pub struct Roles;

impl Strategy for Roles {
    typed_as!("v1.Role", api::Role);

    /// Upstream's `ValidateRBACName`: names such as `system:controller:x` are allowed.
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, e: &mut Errs, object: &Value, _old: Option<&Value>) {
        policy_rules(e, object, true);
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
            valid: json!({"metadata": {"name": "pod-reader"}, "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
            invalid: json!({"metadata": {"name": "pod-reader"}, "rules": [
                {"apiGroups": [""], "resources": ["pods"]}]}),
            invalid_field: "rules[0].verbs",
        }
    }
}
