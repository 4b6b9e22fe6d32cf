//! `v1` Pod: validation (create and the narrow update rules), defaults, status on create,
//! the table, the patch schema, graceful deletion and the default-tolerations admission.

use futures::future::BoxFuture;

use crate::apiserver::admission::Admission;
use crate::apiserver::registry::core::service_account;
use crate::apiserver::registry::prelude::*;
use crate::apiserver::registry::scheduling::priority_class;
use crate::apiserver::status::ApiError;
use k8s_openapi::api::core::v1 as api;

/// The `pods` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods",
    singular: "pod",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    subresources: &[
        Subresource::Status,
        Subresource::Binding,
        Subresource::Log,
        Subresource::Exec,
        Subresource::Attach,
        Subresource::PortForward,
        Subresource::Eviction,
    ],
    storage_prefix: "pods",
    field_labels: &[
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ],
    strategy: &Pods,
};

/// The `Pod` strategy.
pub struct Pods;

impl Strategy for Pods {
    typed_as!("v1.Pod", api::Pod);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        pod(e, Some(object), old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::POD_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::pod_cells(object, now)
    }

    fn default(&self, object: &mut Value) {
        default_pod_spec(&mut object["spec"]);
    }

    fn status_on_create(&self, object: &Value) -> Option<Value> {
        Some(json!({"phase": "Pending", "qosClass": qos_class(&object["spec"])}))
    }

    /// ServiceAccount (the pod's account exists; its token is mounted), NodeRestriction (a node
    /// creates only mirror pods bound to itself), DefaultTolerationSeconds, then Priority: the
    /// pod's priority from its PriorityClass.
    fn admit<'a>(
        &'a self,
        admission: &'a Admission,
        lookup: &'a dyn Lookup,
        object: &'a mut Value,
        old: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if old.is_some() {
                return Ok(());
            }
            service_account::admit_pod(lookup, object).await?;
            if let Some(node) = lookup.requesting_node() {
                node_restriction(&node, object)?;
            }
            admission.default_toleration_seconds(&mut object["spec"]);
            let classes = lookup.list(&priority_class::RESOURCE, None).await?;
            priority_class::admit_pod(object, &classes)
        })
    }

    /// Pods bound to a node terminate gracefully: the node agent finishes the deletion.
    fn grace_period(&self, object: &Value, requested: Option<i64>) -> Option<i64> {
        if object["spec"]["nodeName"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            return None;
        }
        let grace = requested
            .or(object["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(30);
        (grace > 0).then_some(grace)
    }

    fn delete_returns_object(&self) -> bool {
        true
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
            invalid: json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Sometimes"}}),
            invalid_field: "spec.restartPolicy",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pod
// ---------------------------------------------------------------------------------------------

pub(crate) const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub(crate) fn pod(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    let meta = get(obj, "metadata");
    pod_specific_annotations(e, obj_of(meta, "annotations"), spec, "metadata.annotations");
    let ctx = PodCtx {
        is_pod: true,
        create: old.is_none(),
        ..PodCtx::default()
    };
    match old {
        None => pod_spec(e, spec, "spec", &ctx),
        Some(old) => {
            // Ephemeral containers are managed through their subresource and may already be
            // present on the stored pod; only the create path rejects them.
            let mut spec_copy = spec.cloned().unwrap_or(Value::Object(Map::new()));
            if let Some(m) = spec_copy.as_object_mut() {
                m.remove("ephemeralContainers");
            }
            pod_spec(e, Some(&spec_copy), "spec", &ctx);
            pod_update(e, spec, get(Some(old), "spec"));
        }
    }
}

pub(crate) fn pod_update(e: &mut Errs, new: Option<&Value>, old: Option<&Value>) {
    for list in ["containers", "initContainers"] {
        if arr_of(new, list).len() != arr_of(old, list).len() {
            e.forbidden(
                &child("spec", list),
                "pod updates may not add or remove containers",
            );
            return;
        }
    }
    let new_ads = int_of(new, "activeDeadlineSeconds");
    let old_ads = int_of(old, "activeDeadlineSeconds");
    match (new_ads, old_ads) {
        (Some(n), _) if !(0..=MAX_INT32).contains(&n) => {
            e.invalid_i(
                "spec.activeDeadlineSeconds",
                n,
                &format!("must be between 0 and {MAX_INT32}, inclusive"),
            );
            return;
        }
        (Some(n), Some(o)) if o < n => {
            e.invalid_i(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            );
            return;
        }
        (None, Some(_)) => e.invalid(
            "spec.activeDeadlineSeconds",
            "null",
            "must not update from a positive integer to nil value",
        ),
        _ => {}
    }
    // Tolerations: every old one must survive (tolerationSeconds may change).
    let strip_secs = |t: &Value| {
        let mut t = normalize(t);
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let new_tols: Vec<Value> = arr_of(new, "tolerations").iter().map(strip_secs).collect();
    if arr_of(old, "tolerations")
        .iter()
        .any(|t| !new_tols.contains(&strip_secs(t)))
    {
        e.forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        );
    }
    // Scheduling gates may only be removed.
    let old_gates: BTreeSet<&str> = arr_of(old, "schedulingGates")
        .iter()
        .map(|g| str_of(Some(g), "name"))
        .collect();
    for (i, g) in arr_of(new, "schedulingGates").iter().enumerate() {
        let n = str_of(Some(g), "name");
        if !old_gates.contains(n) {
            e.forbidden(
                &child(&idx("spec.schedulingGates", i), "name"),
                &format!("only deletion is allowed, but found new scheduling gate '{n}'"),
            );
        }
    }

    // Munge the fields that may change to their old values, then compare what is left.
    let mut munged = canonical_pod_spec(new);
    let old_c = canonical_pod_spec(old);
    if let (Some(m), Some(o)) = (munged.as_object_mut(), old_c.as_object()) {
        for list in ["containers", "initContainers"] {
            if let (Some(Value::Array(nc)), Some(Value::Array(oc))) = (m.get_mut(list), o.get(list))
            {
                for (n, o) in nc.iter_mut().zip(oc) {
                    if let Some(nm) = n.as_object_mut() {
                        match o.get("image") {
                            Some(img) => nm.insert("image".to_string(), img.clone()),
                            None => nm.remove("image"),
                        };
                    }
                }
            }
        }
        for f in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match o.get(f) {
                Some(v) => m.insert(f.to_string(), v.clone()),
                None => m.remove(f),
            };
        }
        let old_grace = o
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        let new_grace = m
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0)
            && new_grace == Some(1)
            && let Some(g) = o.get("terminationGracePeriodSeconds")
        {
            m.insert("terminationGracePeriodSeconds".to_string(), g.clone());
        }
        // A gated pod may gain node selector entries and node affinity before scheduling.
        if o.get("schedulingGates").is_some() {
            let old_sel = o.get("nodeSelector").and_then(Value::as_object);
            let new_sel = m.get("nodeSelector").and_then(Value::as_object);
            let only_additions = old_sel
                .into_iter()
                .flatten()
                .all(|(k, v)| new_sel.and_then(|n| n.get(k)) == Some(v));
            if only_additions {
                match o.get("nodeSelector") {
                    Some(v) => m.insert("nodeSelector".to_string(), v.clone()),
                    None => m.remove("nodeSelector"),
                };
            }
            let old_na = o
                .get("affinity")
                .and_then(|a| a.get("nodeAffinity"))
                .cloned();
            if let Some(Value::Object(aff)) = m.get_mut("affinity") {
                match old_na {
                    Some(na) => aff.insert("nodeAffinity".to_string(), na),
                    None => aff.remove("nodeAffinity"),
                };
            }
            munged = normalize(&munged);
        }
    }
    if munged != old_c {
        let mut diffs = Vec::new();
        diff_values(&old_c, &munged, "spec", &mut diffs);
        e.forbidden(
            "spec",
            &format!(
                "pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n{}",
                diffs.join("\n")
            ),
        );
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const POD_COLUMNS: &[Column] = &[
        NAME,
        col(
            "Ready",
            "string",
            "The aggregate readiness state of this pod for accepting traffic.",
        ),
        col(
            "Status",
            "string",
            "The aggregate status of the containers in this pod.",
        ),
        col(
            "Restarts",
            "string",
            "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        ),
        AGE,
        wide(
            "IP",
            "string",
            "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
        ),
        wide(
            "Node",
            "string",
            "NodeName indicates in which node this pod is scheduled.",
        ),
        wide(
            "Nominated Node",
            "string",
            "nominatedNodeName is set only when this pod preempts other pods on the node.",
        ),
        wide(
            "Readiness Gates",
            "string",
            "If specified, all readiness gates will be evaluated for pod readiness.",
        ),
    ];

    pub(crate) fn pod_cells(pod: &Value, now: Timestamp) -> Vec<Value> {
        let init_containers = list_at(pod, &["spec", "initContainers"]);
        // A sidecar is an init container that keeps running: restartPolicy Always.
        let is_sidecar = |container_name: &str| {
            init_containers
                .iter()
                .find(|c| str_at(c, &["name"]) == container_name)
                .is_some_and(|c| str_at(c, &["restartPolicy"]) == "Always")
        };
        let total = list_at(pod, &["spec", "containers"]).len()
            + init_containers
                .iter()
                .filter(|c| str_at(c, &["restartPolicy"]) == "Always")
                .count();
        let mut ready = 0usize;
        let mut restarts = 0i64;
        let mut sidecar_restarts = 0i64;
        let mut last_restart: Option<Timestamp> = None;
        let mut last_sidecar_restart: Option<Timestamp> = None;

        let phase = str_at(pod, &["status", "phase"]);
        let status_reason = str_at(pod, &["status", "reason"]);
        let mut reason = or_default(status_reason, phase).to_string();
        for condition in list_at(pod, &["status", "conditions"]) {
            if str_at(condition, &["type"]) == "PodScheduled"
                && str_at(condition, &["reason"]) == "SchedulingGated"
            {
                reason = "SchedulingGated".to_string();
            }
        }

        let mut initializing = false;
        for (i, status) in list_at(pod, &["status", "initContainerStatuses"])
            .iter()
            .enumerate()
        {
            let restart_count = int_at(status, &["restartCount"]);
            restarts = restarts.saturating_add(restart_count);
            note_termination(&mut last_restart, status);
            let sidecar = is_sidecar(str_at(status, &["name"]));
            if sidecar {
                sidecar_restarts = sidecar_restarts.saturating_add(restart_count);
                note_termination(&mut last_sidecar_restart, status);
            }
            let terminated = get(status, &["state", "terminated"]);
            let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
            if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
                continue;
            }
            if sidecar && bool_at(status, &["started"]) == Some(true) {
                if bool_at(status, &["ready"]) == Some(true) {
                    ready += 1;
                }
                continue;
            }
            // The first init container that has not finished decides the status.
            reason = if let Some(t) = terminated {
                let terminated_reason = str_at(t, &["reason"]);
                let signal = int_at(t, &["signal"]);
                if !terminated_reason.is_empty() {
                    format!("Init:{terminated_reason}")
                } else if signal != 0 {
                    format!("Init:Signal:{signal}")
                } else {
                    format!("Init:ExitCode:{}", int_at(t, &["exitCode"]))
                }
            } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
                format!("Init:{waiting_reason}")
            } else {
                format!("Init:{i}/{}", init_containers.len())
            };
            initializing = true;
            break;
        }

        if !initializing || has_condition(pod, "Initialized") == Some(true) {
            // Once initialized, only sidecars' restarts still count among the init containers'.
            restarts = sidecar_restarts;
            last_restart = last_sidecar_restart;
            let mut has_running = false;
            for status in list_at(pod, &["status", "containerStatuses"]).iter().rev() {
                restarts = restarts.saturating_add(int_at(status, &["restartCount"]));
                note_termination(&mut last_restart, status);
                let waiting_reason = str_at(status, &["state", "waiting", "reason"]);
                let terminated = get(status, &["state", "terminated"]);
                if !waiting_reason.is_empty() {
                    reason = waiting_reason.to_string();
                } else if let Some(t) = terminated {
                    let terminated_reason = str_at(t, &["reason"]);
                    let signal = int_at(t, &["signal"]);
                    reason = if !terminated_reason.is_empty() {
                        terminated_reason.to_string()
                    } else if signal != 0 {
                        format!("Signal:{signal}")
                    } else {
                        format!("ExitCode:{}", int_at(t, &["exitCode"]))
                    };
                } else if bool_at(status, &["ready"]) == Some(true)
                    && get(status, &["state", "running"]).is_some()
                {
                    has_running = true;
                    ready += 1;
                }
            }
            // A pod whose some containers completed while others still run is not "Completed".
            if reason == "Completed" && has_running {
                reason = if has_condition(pod, "Ready") == Some(true) {
                    "Running"
                } else {
                    "NotReady"
                }
                .to_string();
            }
        }

        if is_deleting(pod) && status_reason == "NodeLost" {
            reason = "Unknown".to_string();
        } else if is_deleting(pod) && phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_string();
        }

        let restarts_cell = match last_restart {
            Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
            _ => restarts.to_string(),
        };

        // The v1 -> internal conversion fills podIPs from podIP when only the latter is set.
        let pod_ip = list_at(pod, &["status", "podIPs"]).first().map_or_else(
            || str_at(pod, &["status", "podIP"]),
            |ip| str_at(ip, &["ip"]),
        );
        let gates = list_at(pod, &["spec", "readinessGates"]);
        let readiness_gates = if gates.is_empty() {
            "<none>".to_string()
        } else {
            let passed = gates
                .iter()
                .filter(|g| has_condition(pod, str_at(g, &["conditionType"])) == Some(true))
                .count();
            format!("{passed}/{}", gates.len())
        };

        vec![
            json!(name(pod)),
            json!(format!("{ready}/{total}")),
            json!(reason),
            json!(restarts_cell),
            json!(age(pod, now)),
            json!(or_default(pod_ip, "<none>")),
            json!(or_default(str_at(pod, &["spec", "nodeName"]), "<none>")),
            json!(or_default(
                str_at(pod, &["status", "nominatedNodeName"]),
                "<none>"
            )),
            json!(readiness_gates),
        ]
    }
}

/// The pod's QoS class, by upstream's rules on requests and limits.
pub(crate) fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|field| spec[*field].as_array())
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for container in &containers {
        let requests = &container["resources"]["requests"];
        let limits = &container["resources"]["limits"];
        for resource in ["cpu", "memory"] {
            let request = requests[resource].as_str().or(limits[resource].as_str());
            let limit = limits[resource].as_str();
            if request.is_some() || limit.is_some() {
                any = true;
            }
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Validates a `pods/binding` body (a `v1` Binding) as upstream's `ValidatePodBinding`; its
/// name comes from the URL, so only what the storage key needs is checked of it.
pub fn validate_binding(object: &Value) -> Vec<Cause> {
    let mut e = Errs::default();
    let obj = Some(object);
    meta_create(&mut e, get(obj, "metadata"), true, NameRule::Unchecked);
    let target = get(obj, "target");
    let kind = str_of(target, "kind");
    if !kind.is_empty() && kind != "Node" {
        e.not_supported("target.kind", kind, &["Node", "<empty>"]);
    }
    if str_of(target, "name").is_empty() {
        e.required("target.name", "");
    }
    e.0
}

/// NodeRestriction admission of a pod a node creates: only a mirror pod (of a static pod),
/// bound to that node.
fn node_restriction(node: &str, pod: &Value) -> Result<(), ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let refuse = |why: String| Err(ApiError::forbidden("pods", name, &why));
    if pod["metadata"]["annotations"]
        .get("kubernetes.io/config.mirror")
        .is_none()
    {
        return refuse(format!(
            "pod does not have \"kubernetes.io/config.mirror\" annotation, node {node:?} can only create mirror pods"
        ));
    }
    if pod["spec"]["nodeName"].as_str() != Some(node) {
        return refuse(format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        ));
    }
    Ok(())
}
