//! `v1` ReplicationController: validation, defaults (selector and labels from the template),
//! the table, the patch schema and its plain-map selector in the Scale subresource.

use crate::apiserver::registry::prelude::*;
use crate::apiserver::tables;
use k8s_openapi::api::core::v1 as api;

/// The `replicationcontrollers` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ReplicationController",
    plural: "replicationcontrollers",
    singular: "replicationcontroller",
    namespaced: true,
    short_names: &["rc"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    storage_prefix: "controllers",
    field_labels: &["status.replicas"],
    strategy: &ReplicationControllers,
};

/// The `ReplicationController` strategy.
pub struct ReplicationControllers;

impl Strategy for ReplicationControllers {
    typed_as!("v1.ReplicationController", api::ReplicationController);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        let _ = old;
        replication_controller(e, Some(object));
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(REPLICA_SET_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        replica_cells(
            object,
            now,
            tables::format_labels(tables::get(object, &["spec", "selector"])),
        )
    }

    fn default(&self, object: &mut Value) {
        default_replication_controller(object);
    }

    /// A ReplicationController's selector is a plain label map (labels.SelectorFromSet
    /// upstream); the apps workloads' is a LabelSelector.
    fn scale_selector(&self, object: &Value) -> Option<Value> {
        object["spec"]
            .get("selector")
            .map(|labels| json!({"matchLabels": labels}))
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "web"}, "spec": {"replicas": 1, "selector": {"app": "web"}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            invalid: json!({"metadata": {"name": "web"}, "spec": {"replicas": -1, "selector": {"app": "web"}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            invalid_field: "spec.replicas",
        }
    }
}

pub(crate) fn replication_controller(e: &mut Errs, obj: Option<&Value>) {
    let spec = get(obj, "spec");
    e.non_negative("spec.minReadySeconds", int_of(spec, "minReadySeconds"));
    let selector = obj_of(spec, "selector").filter(|s| !s.is_empty());
    if selector.is_none() {
        e.required("spec.selector", "");
    }
    e.non_negative("spec.replicas", int_of(spec, "replicas"));
    let Some(template) = get(spec, "template") else {
        e.required("spec.template", "");
        return;
    };
    let template_labels = obj_of(get(Some(template), "metadata"), "labels");
    if let Some(selector) = selector {
        let as_label_selector = Value::Object(Map::from_iter([(
            "matchLabels".to_string(),
            Value::Object(selector.clone()),
        )]));
        if !selector_matches(Some(&as_label_selector), template_labels) {
            e.invalid(
                "spec.template.metadata.labels",
                &go_map(template_labels),
                "selector does not match labels in spec.template",
            );
        }
    }
    workload_template(e, spec, "ReplicationController", &PodCtx::default());
}

/// `SetDefaults_ReplicationController`: an empty selector, and empty object labels, become the
/// template's labels (the pre-apps/v1 convenience kubectl users rely on), and one replica.
fn default_replication_controller(object: &mut Value) {
    if !object["spec"].is_object() {
        return;
    }
    let template_labels = object["spec"]["template"]["metadata"]["labels"].clone();
    if template_labels.is_object() {
        let empty = |value: &Value| value.as_object().is_none_or(serde_json::Map::is_empty);
        if empty(&object["spec"]["selector"]) {
            object["spec"]["selector"] = template_labels.clone();
        }
        if empty(&object["metadata"]["labels"]) {
            object["metadata"]["labels"] = template_labels;
        }
    }
    set_default(&mut object["spec"], "replicas", json!(1));
    default_pod_spec(&mut object["spec"]["template"]["spec"]);
}
