//! `apps/v1` ReplicaSet: validation, defaults, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use crate::apiserver::tables;
use k8s_openapi::api::apps::v1 as api;

/// The `replicasets` resource.
pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "ReplicaSet",
    plural: "replicasets",
    singular: "replicaset",
    namespaced: true,
    short_names: &["rs"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    storage_prefix: "replicasets",
    field_labels: &[],
    strategy: &ReplicaSets,
};

/// The `ReplicaSet` strategy.
pub struct ReplicaSets;

impl Strategy for ReplicaSets {
    typed_as!("v1.ReplicaSet", api::ReplicaSet);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        replica_set(e, Some(object), old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(REPLICA_SET_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        replica_cells(
            object,
            now,
            tables::format_label_selector(tables::get(object, &["spec", "selector"])),
        )
    }

    fn default(&self, object: &mut Value) {
        set_default(&mut object["spec"], "replicas", json!(1));
        default_pod_spec(&mut object["spec"]["template"]["spec"]);
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            invalid: json!({"metadata": {"name": "web"}, "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            invalid_field: "spec.replicas",
        }
    }
}

pub(crate) fn replica_set(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    e.non_negative("spec.replicas", int_of(spec, "replicas"));
    e.non_negative("spec.minReadySeconds", int_of(spec, "minReadySeconds"));
    // Upstream's message says "deployment" for ReplicaSets too.
    workload_selector(e, spec, "deployment", true);
    workload_template(e, spec, "ReplicaSet", &PodCtx::default());
    selector_immutable(e, obj, old);
}
