//! `apps/v1` Deployment: validation, defaults, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::apps::v1 as api;

/// The `deployments` resource.
pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "Deployment",
    plural: "deployments",
    singular: "deployment",
    namespaced: true,
    short_names: &["deploy"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    storage_prefix: "deployments",
    field_labels: &[],
    strategy: &Deployments,
};

/// The `Deployment` strategy.
pub struct Deployments;

impl Strategy for Deployments {
    typed_as!("v1.Deployment", api::Deployment);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        deployment(e, Some(object), old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::DEPLOYMENT_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::deployment_cells(object, now)
    }

    fn default(&self, object: &mut Value) {
        default_deployment(&mut object["spec"]);
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            invalid: json!({"metadata": {"name": "web"}, "spec": {"replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            invalid_field: "spec.replicas",
        }
    }
}

pub(crate) fn deployment(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    e.non_negative("spec.replicas", int_of(spec, "replicas"));
    workload_selector(e, spec, "deployment", true);
    workload_template(e, spec, "Deployment", &PodCtx::default());
    if let Some(strategy) = get(spec, "strategy") {
        let st = Some(strategy);
        let rolling = get(st, "rollingUpdate");
        match str_opt(st, "type")
            .filter(|t| !t.is_empty())
            .unwrap_or("RollingUpdate")
        {
            "Recreate" => {
                if rolling.is_some() {
                    e.forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    );
                }
            }
            "RollingUpdate" => {
                // Absent values are defaulted to 25%.
                let rp = "spec.strategy.rollingUpdate";
                let mu = get(rolling, "maxUnavailable");
                let ms = get(rolling, "maxSurge");
                int_or_percent(e, mu, &child(rp, "maxUnavailable"));
                int_or_percent(e, ms, &child(rp, "maxSurge"));
                let mu_v = if mu.is_some() {
                    int_or_percent_value(mu)
                } else {
                    25
                };
                let ms_v = if ms.is_some() {
                    int_or_percent_value(ms)
                } else {
                    25
                };
                if mu_v == 0 && ms_v == 0 {
                    e.invalid(
                        &child(rp, "maxUnavailable"),
                        &go_int_or_string(mu.unwrap_or(&Value::from(0))),
                        "may not be 0 when `maxSurge` is 0",
                    );
                }
                not_more_than_100_percent(e, mu, &child(rp, "maxUnavailable"));
            }
            other => {
                let rendered = format!(
                    "apps.DeploymentStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}",
                    q(other)
                );
                e.push(
                    CauseReason::NotSupported,
                    "spec.strategy",
                    Some(&rendered),
                    "supported values: \"Recreate\", \"RollingUpdate\"",
                );
            }
        }
    }
    let min_ready = int_of(spec, "minReadySeconds");
    e.non_negative("spec.minReadySeconds", min_ready);
    e.non_negative(
        "spec.revisionHistoryLimit",
        int_of(spec, "revisionHistoryLimit"),
    );
    if let Some(pds) = int_of(spec, "progressDeadlineSeconds") {
        e.non_negative("spec.progressDeadlineSeconds", Some(pds));
        if pds <= min_ready.unwrap_or(0) {
            e.invalid_i(
                "spec.progressDeadlineSeconds",
                pds,
                "must be greater than minReadySeconds",
            );
        }
    }
    selector_immutable(e, obj, old);
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const DEPLOYMENT_COLUMNS: &[Column] = &[
        NAME,
        col("Ready", "string", "Number of the pod with ready state"),
        col(
            "Up-to-date",
            "string",
            "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        ),
        col(
            "Available",
            "string",
            "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", SELECTOR_DOC),
    ];

    pub(crate) fn deployment_cells(o: &Value, now: Timestamp) -> Vec<Value> {
        let (names, images) = container_cells(o, &["spec", "template"]);
        // Deployments print the selector unformatted: an empty selector is "", not "<none>".
        let selector = selector_string(get(o, &["spec", "selector"]))
            .unwrap_or_else(|| "<invalid>".to_string());
        vec![
            json!(name(o)),
            json!(format!(
                "{}/{}",
                int_at(o, &["status", "readyReplicas"]),
                replicas(o)
            )),
            json!(int_at(o, &["status", "updatedReplicas"])),
            json!(int_at(o, &["status", "availableReplicas"])),
            json!(age(o, now)),
            json!(names),
            json!(images),
            json!(selector),
        ]
    }
}

/// `SetDefaults_Deployment`: what `kubectl rollout` relies on.
fn default_deployment(spec: &mut Value) {
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    if spec["strategy"]["type"].is_null() {
        spec["strategy"]["type"] = json!("RollingUpdate");
    }
    if spec["strategy"]["type"] == "RollingUpdate" {
        set_default(
            &mut spec["strategy"]["rollingUpdate"],
            "maxSurge",
            json!("25%"),
        );
        set_default(
            &mut spec["strategy"]["rollingUpdate"],
            "maxUnavailable",
            json!("25%"),
        );
    }
    default_pod_spec(&mut spec["template"]["spec"]);
}
