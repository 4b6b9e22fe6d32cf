//! `rbac.authorization.k8s.io/v1` ClusterRoleBinding: grants a ClusterRole's permissions in
//! every namespace and at the cluster scope.

use super::{admit_binding, binding, default_binding, escalation_checked};
use crate::apiserver::registry::prelude::*;
use crate::apiserver::tables::upstream::{CLUSTER_ROLE_BINDING_COLUMNS, role_binding_cells};
use k8s_openapi::api::rbac::v1 as api;

/// The `clusterrolebindings` resource.
pub static RESOURCE: Resource = Resource {
    group: super::GROUP,
    version: "v1",
    kind: "ClusterRoleBinding",
    plural: "clusterrolebindings",
    singular: "clusterrolebinding",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "clusterrolebindings",
    field_labels: &[],
    strategy: &ClusterRoleBindings,
};

/// The `ClusterRoleBinding` strategy.
pub struct ClusterRoleBindings;

impl Strategy for ClusterRoleBindings {
    typed_as!("v1.ClusterRoleBinding", api::ClusterRoleBinding);

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn default(&self, object: &mut Value) {
        default_binding(object);
    }

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        binding(e, object, old, &["ClusterRole"]);
    }

    escalation_checked!(admit_binding);

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(CLUSTER_ROLE_BINDING_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        role_binding_cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "ops-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "Group", "name": "ops", "apiGroup": "rbac.authorization.k8s.io"},
                             {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"}]}),
            invalid: json!({"metadata": {"name": "ops-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "deployer"}]}),
            invalid_field: "subjects[0].namespace",
        }
    }
}
