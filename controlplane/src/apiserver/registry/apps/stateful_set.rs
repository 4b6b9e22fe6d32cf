//! `apps/v1` StatefulSet: validation, defaults, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::apps::v1 as api;

/// The `statefulsets` resource.
pub static RESOURCE: Resource = Resource {
    group: "apps",
    version: "v1",
    kind: "StatefulSet",
    plural: "statefulsets",
    singular: "statefulset",
    namespaced: true,
    short_names: &["sts"],
    categories: &["all"],
    subresources: &[Subresource::Status, Subresource::Scale],
    storage_prefix: "statefulsets",
    field_labels: &[],
    strategy: &StatefulSets,
};

/// The `StatefulSet` strategy.
pub struct StatefulSets;

impl Strategy for StatefulSets {
    typed_as!("v1.StatefulSet", api::StatefulSet);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        stateful_set(e, Some(object), old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::STATEFUL_SET_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn default(&self, object: &mut Value) {
        default_stateful_set(&mut object["spec"]);
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "web"}, "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            invalid: json!({"metadata": {"name": "web"}, "spec": {"serviceName": "web", "replicas": -1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            invalid_field: "spec.replicas",
        }
    }
}

pub(crate) fn stateful_set(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    if let Some(p) = str_opt(spec, "podManagementPolicy").filter(|p| !p.is_empty())
        && p != "OrderedReady"
        && p != "Parallel"
    {
        e.invalid_s(
            "spec.podManagementPolicy",
            p,
            "must be 'OrderedReady' or 'Parallel'",
        );
    }
    if let Some(us) = get(spec, "updateStrategy") {
        let us = Some(us);
        let rolling = get(us, "rollingUpdate");
        let up = "spec.updateStrategy";
        match str_opt(us, "type").filter(|t| !t.is_empty()).unwrap_or("RollingUpdate") {
            "OnDelete" => {
                if let Some(r) = rolling {
                    e.invalid(
                        &child(up, "rollingUpdate"),
                        &compact(r),
                        "only allowed for updateStrategy 'RollingUpdate'",
                    );
                }
            }
            "RollingUpdate" => {
                let rp = child(up, "rollingUpdate");
                e.non_negative(&child(&rp, "partition"), int_of(rolling, "partition"));
                if let Some(mu) = get(rolling, "maxUnavailable") {
                    let mp = child(&rp, "maxUnavailable");
                    int_or_percent(e, Some(mu), &mp);
                    if int_or_percent_value(Some(mu)) == 0 {
                        e.invalid(&mp, &go_int_or_string(mu), "cannot be 0");
                    }
                    not_more_than_100_percent(e, Some(mu), &mp);
                }
            }
            other => e.invalid(
                up,
                &format!(
                    "apps.StatefulSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateStatefulSetStrategy)(nil)}}",
                    q(other)
                ),
                "must be 'RollingUpdate' or 'OnDelete'",
            ),
        }
    }
    if let Some(pol) = get(spec, "persistentVolumeClaimRetentionPolicy") {
        for f in ["whenDeleted", "whenScaled"] {
            if let Some(v) = str_opt(Some(pol), f)
                && v != "Retain"
                && v != "Delete"
            {
                e.not_supported(
                    &child("spec.persistentVolumeClaimRetentionPolicy", f),
                    v,
                    &["Retain", "Delete"],
                );
            }
        }
    }
    e.non_negative("spec.replicas", int_of(spec, "replicas"));
    e.non_negative("spec.minReadySeconds", int_of(spec, "minReadySeconds"));
    e.non_negative(
        "spec.ordinals.start",
        int_of(get(spec, "ordinals"), "start"),
    );
    workload_selector(e, spec, "statefulset", true);
    // Upstream skips PodSpec validation for StatefulSets because volumeClaimTemplates would look
    // like undeclared volumes; declaring them lets the template be checked like the others.
    let ctx = PodCtx {
        is_pod: false,
        create: false,
        extra_pvc_volumes: arr_of(spec, "volumeClaimTemplates")
            .iter()
            .map(|t| str_of(get(Some(t), "metadata"), "name").to_string())
            .filter(|n| !n.is_empty())
            .collect(),
    };
    workload_template(e, spec, "StatefulSet", &ctx);

    if let Some(old) = old {
        let strip = |v: Option<&Value>| {
            let mut s = normalize(v.unwrap_or(&Value::Null));
            if let Some(m) = s.as_object_mut() {
                for f in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(f);
                }
                // Defaults, so a stored (defaulted) spec equals the one a client resends.
                let defaults: [(&str, Value); 2] = [
                    ("podManagementPolicy", Value::from("OrderedReady")),
                    ("revisionHistoryLimit", Value::from(10)),
                ];
                for (k, d) in defaults {
                    m.entry(k.to_string()).or_insert(d);
                }
                if let Some(Value::Array(ts)) = m.get_mut("volumeClaimTemplates") {
                    for t in ts.iter_mut().filter_map(Value::as_object_mut) {
                        t.remove("status");
                        t.remove("apiVersion");
                        t.remove("kind");
                        if let Some(Value::Object(ts)) = t.get_mut("spec") {
                            ts.entry("volumeMode".to_string())
                                .or_insert_with(|| Value::from("Filesystem"));
                        }
                    }
                }
            }
            normalize(&s)
        };
        if strip(spec) != strip(get(Some(old), "spec")) {
            e.forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            );
        }
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const STATEFUL_SET_COLUMNS: &[Column] = &[
        NAME,
        col("Ready", "string", "Number of the pod with ready state"),
        AGE,
        CONTAINERS,
        IMAGES,
    ];

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
        let o = object;
        let (names, images) = container_cells(o, &["spec", "template"]);
        vec![
            json!(name(o)),
            json!(format!(
                "{}/{}",
                int_at(o, &["status", "readyReplicas"]),
                replicas(o)
            )),
            json!(age(o, now)),
            json!(names),
            json!(images),
        ]
    }
}

/// `SetDefaults_StatefulSet`: `kubectl rollout status` reads the strategy type and partition.
fn default_stateful_set(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "replicas", json!(1));
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    set_default(spec, "revisionHistoryLimit", json!(10));
    if spec["updateStrategy"]["type"].is_null() {
        spec["updateStrategy"]["type"] = json!("RollingUpdate");
    }
    if spec["updateStrategy"]["type"] == "RollingUpdate" {
        set_default(
            &mut spec["updateStrategy"]["rollingUpdate"],
            "partition",
            json!(0),
        );
    }
    let retention = &mut spec["persistentVolumeClaimRetentionPolicy"];
    set_default(retention, "whenDeleted", json!("Retain"));
    set_default(retention, "whenScaled", json!("Retain"));
    default_pod_spec(&mut spec["template"]["spec"]);
}
