//! The conditions kubelet posts in `Node.status.conditions`: no memory, disk or PID pressure,
//! and `Ready` with kubelet's reasons and messages. The node agent posts them for real nodes and
//! the control plane's hollow nodes for simulated ones; both build them here so they agree.

use serde_json::{Value, json};

/// The four conditions at `now` (an RFC 3339 time). `not_ready` is why the node cannot run pods
/// (`None` when it can). A condition keeps its `lastTransitionTime` from `previous` while its
/// status is unchanged, as kubelet's `setNodeStatus` does.
pub fn node_conditions(not_ready: Option<&str>, previous: &[Value], now: &str) -> Value {
    let transition = |kind: &str, status: &str| {
        previous
            .iter()
            .find(|c| c["type"] == kind && c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now))
    };
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": transition(kind, status)})
    };
    let ready = match not_ready {
        None => condition(
            "Ready",
            "True",
            "KubeletReady",
            "kubelet is posting ready status",
        ),
        Some(why) => condition("Ready", "False", "KubeletNotReady", why),
    };
    json!([
        condition(
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available"
        ),
        condition(
            "DiskPressure",
            "False",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure"
        ),
        condition(
            "PIDPressure",
            "False",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available"
        ),
        ready,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_kept_while_the_status_holds() {
        let first = node_conditions(None, &[], "2026-12-06T00:00:00Z");
        let ready = &first[3];
        assert_eq!(
            (ready["type"].as_str(), ready["status"].as_str()),
            (Some("Ready"), Some("True"))
        );
        let previous = first.as_array().unwrap();
        let later = node_conditions(None, previous, "2026-12-06T00:01:00Z");
        assert_eq!(later[3]["lastTransitionTime"], "2026-12-06T00:00:00Z");
        assert_eq!(later[3]["lastHeartbeatTime"], "2026-12-06T00:01:00Z");
        let down = node_conditions(
            Some("container runtime is down"),
            previous,
            "2026-12-06T00:02:00Z",
        );
        assert_eq!(down[3]["status"], "False");
        assert_eq!(down[3]["reason"], "KubeletNotReady");
        assert_eq!(down[3]["message"], "container runtime is down");
        assert_eq!(down[3]["lastTransitionTime"], "2026-12-06T00:02:00Z");
        assert_eq!(down[0]["lastTransitionTime"], "2026-12-06T00:00:00Z");
    }
}
