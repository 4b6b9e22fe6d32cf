//! The scheduler against a real API server: nodes and pods as objects, binding through the API.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::{collections::HashMap, time::Duration};

use crate::common::Cluster;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{Api, api::PostParams};

fn node(name: &str, ready: bool, extra: serde_json::Value) -> Node {
    let mut base = serde_json::json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        },
    });
    json_patch::merge(&mut base, &extra);
    serde_json::from_value(base).unwrap()
}

fn pod(name: &str, extra: serde_json::Value) -> Pod {
    let mut base = serde_json::json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "flotilla/testapp:v1", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
    });
    json_patch::merge(&mut base, &extra);
    serde_json::from_value(base).unwrap()
}

async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    for _ in 0..100 {
        let pod = pods.get(name).await.ok()?;
        if let Some(node) = pod.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()) {
            return Some(node);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_are_bound_to_fitting_nodes_and_replicas_spread() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let client = cluster.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    for node in [
        node(
            "n1",
            true,
            serde_json::json!({"metadata": {"labels": {"zone": "a"}}}),
        ),
        node(
            "n2",
            true,
            serde_json::json!({"metadata": {"labels": {"zone": "b"}}}),
        ),
        // Registered not ready, as a kubelet does: with the not-ready taint.
        node(
            "n3",
            false,
            serde_json::json!({"spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}),
        ),
        node(
            "n4",
            true,
            serde_json::json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        ),
    ] {
        nodes.create(&PostParams::default(), &node).await?;
    }
    let pods: Api<Pod> = Api::namespaced(client, "default");
    // The scheduler learns of nodes and pods over two watches; one pod pinned to each of n1 and
    // n2 shows both nodes are in its cache before the replicas arrive (they add the same load to
    // both, so spreading is still decided by the replicas alone).
    for name in ["n1", "n2"] {
        let probe = serde_json::json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": name}}});
        pods.create(
            &PostParams::default(),
            &pod(&format!("probe-{name}"), probe),
        )
        .await?;
        assert_eq!(
            node_of(&pods, &format!("probe-{name}")).await.as_deref(),
            Some(name)
        );
    }
    let owner = serde_json::json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "rs-uid-1"}]}});
    for i in 0..4 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("web-{i}"), owner.clone()),
        )
        .await?;
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..4 {
        let node = node_of(&pods, &format!("web-{i}"))
            .await
            .expect("scheduled in time");
        *per_node.entry(node).or_default() += 1;
    }
    assert_eq!(per_node.get("n1"), Some(&2), "{per_node:?}");
    assert_eq!(per_node.get("n2"), Some(&2), "{per_node:?}");

    pods.create(
        &PostParams::default(),
        &pod(
            "zone-b",
            serde_json::json!({"spec": {"nodeSelector": {"zone": "b"}}}),
        ),
    )
    .await?;
    assert_eq!(node_of(&pods, "zone-b").await.as_deref(), Some("n2"));
    let gpu = serde_json::json!({"spec": {
        "nodeSelector": {"kubernetes.io/hostname": "n4"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
    }});
    pods.create(&PostParams::default(), &pod("gpu", gpu))
        .await?;
    assert_eq!(node_of(&pods, "gpu").await.as_deref(), Some("n4"));

    let big = serde_json::json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "10"}}}]}});
    pods.create(&PostParams::default(), &pod("big", big))
        .await?;
    let mut message = String::new();
    for _ in 0..100 {
        let pod = pods.get("big").await?;
        let condition = pod
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False");
        if let Some(condition) = condition {
            message = condition.message.unwrap_or_default();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(message.starts_with("0/4 nodes are available:"), "{message}");
    assert!(message.contains("Insufficient cpu"), "{message}");
    assert!(
        message.contains("1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
        "{message}"
    );
    assert!(
        message.contains("untolerated taint {dedicated: gpu}"),
        "{message}"
    );
    let described = cluster.kubectl_ok(&["describe", "pod", "big"]);
    assert!(described.contains("FailedScheduling"), "{described}");
    assert!(node_of(&pods, "big").await.is_none());
    Ok(())
}
