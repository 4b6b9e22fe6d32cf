//! Reading the Nodes and Pods that `kubectl get -o json` prints: the readiness rules that the
//! tests, the benchmarks and `cargo xtask` all wait on, in one place.

use serde_json::Value;

/// Whether `object` (a Node or Pod as JSON) has the condition `kind` with status True.
pub fn condition_true(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|condition| condition["type"] == kind && condition["status"] == "True")
}

/// Whether a Node takes pods: Ready, and without taints (the node lifecycle controller's
/// not-ready and unreachable taints outlive the condition by a moment).
pub fn node_schedulable(node: &Value) -> bool {
    condition_true(node, "Ready")
        && node["spec"]["taints"]
            .as_array()
            .is_none_or(|taints| taints.is_empty())
}

/// What the tests need of one Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    /// `metadata.name`.
    pub name: String,
    /// `spec.nodeName` (empty until scheduled).
    pub node: String,
    /// `status.podIP`, once the network is set up.
    pub ip: Option<String>,
    /// `status.phase` (empty before the first status).
    pub phase: String,
    /// The Ready condition is True.
    pub ready: bool,
}

/// The pods of a `kubectl get pods -o json` list that are not being deleted: a terminating
/// pod can still be Ready, but the tests wait for the pods that stay.
pub fn live_pods(list: &Value) -> Vec<PodSummary> {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .map(|pod| PodSummary {
            name: text(&pod["metadata"]["name"]),
            node: text(&pod["spec"]["nodeName"]),
            ip: pod["status"]["podIP"].as_str().map(str::to_owned),
            phase: text(&pod["status"]["phase"]),
            ready: condition_true(pod, "Ready"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readiness_needs_the_condition_true() {
        let pod = |status: &str| {
            json!({"status": {"conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": status}]}})
        };
        assert!(condition_true(&pod("True"), "Ready"));
        assert!(!condition_true(&pod("False"), "Ready"));
        assert!(!condition_true(&pod("Unknown"), "Ready"));
        assert!(!condition_true(&json!({"status": {}}), "Ready"));
    }

    #[test]
    fn a_tainted_ready_node_is_not_schedulable() {
        let ready = json!({"type": "Ready", "status": "True"});
        let untainted = json!({"spec": {}, "status": {"conditions": [ready]}});
        let tainted = json!({"spec": {"taints": [{"key": "node.kubernetes.io/not-ready",
            "effect": "NoSchedule"}]}, "status": {"conditions": [ready]}});
        assert!(node_schedulable(&untainted));
        assert!(!node_schedulable(&tainted));
    }

    #[test]
    fn live_pods_leave_out_terminating_ones_and_read_each_field() {
        let list = json!({"items": [
            {"metadata": {"name": "web-1"}, "spec": {"nodeName": "node-1"},
             "status": {"phase": "Running", "podIP": "10.244.1.5",
                        "conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "web-2", "deletionTimestamp": "2026-11-24T10:00:00Z"},
             "spec": {"nodeName": "node-2"}, "status": {"phase": "Running"}},
            {"metadata": {"name": "web-3"}, "spec": {}, "status": {"phase": "Pending"}}
        ]});
        assert_eq!(
            live_pods(&list),
            [
                PodSummary {
                    name: "web-1".into(),
                    node: "node-1".into(),
                    ip: Some("10.244.1.5".into()),
                    phase: "Running".into(),
                    ready: true,
                },
                PodSummary {
                    name: "web-3".into(),
                    node: String::new(),
                    ip: None,
                    phase: "Pending".into(),
                    ready: false,
                },
            ]
        );
    }
}
