//! `apps/v1` DaemonSet: validation, defaults, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::apps::v1 as api;

/// The `daemonsets` resource.
pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "DaemonSet",
    plural: "daemonsets",
    singular: "daemonset",
    namespaced: true,
    short_names: &["ds"],
    categories: &["all"],
    subresources: &[Subresource::Status],
    storage_prefix: "daemonsets",
    field_labels: &[],
    strategy: &DaemonSets,
};

/// The `DaemonSet` strategy.
pub struct DaemonSets;

impl Strategy for DaemonSets {
    typed_as!("v1.DaemonSet", api::DaemonSet);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        daemon_set(e, Some(object), old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::DAEMON_SET_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::daemon_set_cells(object, now)
    }

    fn default(&self, object: &mut Value) {
        default_daemon_set(&mut object["spec"]);
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            invalid: json!({"metadata": {"name": "agent"}, "spec": {"minReadySeconds": -1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            invalid_field: "spec.minReadySeconds",
        }
    }
}

pub(crate) fn daemon_set(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    // Upstream does not require the selector here: a missing one matches nothing, which is
    // reported as the template-labels mismatch.
    workload_selector(e, spec, "daemonset", false);
    workload_template(e, spec, "DaemonSet", &PodCtx::default());
    e.non_negative("spec.minReadySeconds", int_of(spec, "minReadySeconds"));
    e.non_negative(
        "spec.revisionHistoryLimit",
        int_of(spec, "revisionHistoryLimit"),
    );
    if let Some(us) = get(spec, "updateStrategy") {
        let us = Some(us);
        let up = "spec.updateStrategy";
        match str_opt(us, "type")
            .filter(|t| !t.is_empty())
            .unwrap_or("RollingUpdate")
        {
            "OnDelete" => {}
            "RollingUpdate" => {
                // Absent values default to maxUnavailable=1, maxSurge=0.
                let rolling = get(us, "rollingUpdate");
                let rp = child(up, "rollingUpdate");
                let mu = get(rolling, "maxUnavailable");
                let ms = get(rolling, "maxSurge");
                int_or_percent(e, mu, &child(&rp, "maxUnavailable"));
                int_or_percent(e, ms, &child(&rp, "maxSurge"));
                not_more_than_100_percent(e, mu, &child(&rp, "maxUnavailable"));
                not_more_than_100_percent(e, ms, &child(&rp, "maxSurge"));
                let mu_v = if mu.is_some() {
                    int_or_percent_value(mu)
                } else {
                    1
                };
                let ms_v = int_or_percent_value(ms);
                if mu_v != 0 && ms_v != 0 {
                    e.invalid(
                        &child(&rp, "maxSurge"),
                        &go_int_or_string(ms.unwrap_or(&Value::from(0))),
                        "may not be set when maxUnavailable is non-zero",
                    );
                } else if mu_v == 0 && ms_v == 0 {
                    e.required(
                        &child(&rp, "maxUnavailable"),
                        "cannot be 0 when maxSurge is 0",
                    );
                }
            }
            other => {
                let rendered = format!(
                    "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                    q(other)
                );
                e.push(
                    CauseReason::NotSupported,
                    up,
                    Some(&rendered),
                    "supported values: \"RollingUpdate\", \"OnDelete\"",
                );
            }
        }
    }
    selector_immutable(e, obj, old);
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const DAEMON_SET_COLUMNS: &[Column] = &[
        NAME,
        col(
            "Desired",
            "integer",
            "The total number of nodes that should be running the daemon pod.",
        ),
        col(
            "Current",
            "integer",
            "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
        ),
        col(
            "Ready",
            "integer",
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.",
        ),
        col(
            "Up-to-date",
            "integer",
            "The total number of nodes that are running updated daemon pod",
        ),
        col(
            "Available",
            "integer",
            "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
        ),
        col(
            "Node Selector",
            "string",
            "NodeSelector is a selector which must be true for the pod to fit on a node.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide(
            "Selector",
            "string",
            "A label query over pods that are managed by the daemon set.",
        ),
    ];

    pub(crate) fn daemon_set_cells(o: &Value, now: Timestamp) -> Vec<Value> {
        let (names, images) = container_cells(o, &["spec", "template"]);
        let status = |field: &str| int_at(o, &["status", field]);
        vec![
            json!(name(o)),
            json!(status("desiredNumberScheduled")),
            json!(status("currentNumberScheduled")),
            json!(status("numberReady")),
            json!(status("updatedNumberScheduled")),
            json!(status("numberAvailable")),
            json!(format_labels(get(
                o,
                &["spec", "template", "spec", "nodeSelector"]
            ))),
            json!(age(o, now)),
            json!(names),
            json!(images),
            json!(format_label_selector(get(o, &["spec", "selector"]))),
        ]
    }
}

/// `SetDefaults_DaemonSet`: RollingUpdate one node at a time, no surge.
fn default_daemon_set(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    if spec["updateStrategy"]["type"].is_null() {
        spec["updateStrategy"]["type"] = json!("RollingUpdate");
    }
    if spec["updateStrategy"]["type"] == "RollingUpdate" {
        let rolling = &mut spec["updateStrategy"]["rollingUpdate"];
        set_default(rolling, "maxUnavailable", json!(1));
        set_default(rolling, "maxSurge", json!(0));
    }
    default_pod_spec(&mut spec["template"]["spec"]);
}
