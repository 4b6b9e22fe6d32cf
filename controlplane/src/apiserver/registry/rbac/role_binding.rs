//! `rbac.authorization.k8s.io/v1` RoleBinding: grants a Role's or a ClusterRole's permissions
//! inside one namespace.

use super::{admit_binding, binding, default_binding, escalation_checked};
use crate::apiserver::registry::prelude::*;
use crate::apiserver::tables::upstream::{ROLE_BINDING_COLUMNS, role_binding_cells};
use k8s_openapi::api::rbac::v1 as api;

/// The `rolebindings` resource.
pub static RESOURCE: Resource = Resource {
    group: super::GROUP,
    version: "v1",
    kind: "RoleBinding",
    plural: "rolebindings",
    singular: "rolebinding",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "rolebindings",
    field_labels: &[],
    strategy: &RoleBindings,
};

/// The `RoleBinding` strategy.
pub struct RoleBindings;

impl Strategy for RoleBindings {
    typed_as!("v1.RoleBinding", api::RoleBinding);

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn default(&self, object: &mut Value) {
        default_binding(object);
    }

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        binding(e, object, old, &["Role", "ClusterRole"]);
    }

    escalation_checked!(admit_binding);

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(ROLE_BINDING_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        role_binding_cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "read-pods"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"},
                             {"kind": "ServiceAccount", "name": "default"}]}),
            invalid: json!({"metadata": {"name": "read-pods"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "Robot", "name": "r2"}]}),
            invalid_field: "subjects[0].kind",
        }
    }
}
