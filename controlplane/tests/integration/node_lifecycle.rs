//! Node loss and node removal with simulated nodes: heartbeats through Leases, a silent node
//! turning Unknown and tainted, its pods evicted after their toleration and replaced elsewhere,
//! the node coming back, and the pods of a deleted node collected.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::{Cluster, eventually};
use flotilla_controlplane::hollow::{HollowNodes, NodeShape, PodReports};
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use kube::{Api, api::ListParams};

const RS: &str = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: flotilla/testapp:v1}]\n";

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn ready_condition(node: &Node) -> Option<NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
}

fn running(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_nodes_are_tainted_their_pods_evicted_and_replaced() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(|config| {
        config.controllers.node_lifecycle.grace_period = Duration::from_secs(3);
        config.controllers.node_lifecycle.monitor_period = Duration::from_millis(500);
        config.admission.unreachable_toleration_seconds = 2;
    })
    .await?;
    let client = cluster.client().await?;
    let names: Vec<String> = (1..=3).map(|i| format!("hollow-{i}")).collect();
    // Heartbeats well inside the shortened grace period, as 10 s is inside upstream's 40 s.
    let shape = NodeShape {
        lease_renew: Duration::from_millis(500),
        ..NodeShape::default()
    };
    let fleet = HollowNodes::start(client.clone(), names, &shape, PodReports::Running).await?;
    let leases = cluster.kubectl_ok(&["get", "leases", "-n", "kube-node-lease"]);
    assert!(leases.contains("hollow-3"), "{leases}");

    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("rs.yaml", RS).to_string_lossy(),
    ]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = || async {
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
    };
    let three = eventually(Duration::from_secs(20), "3 running pods", || async {
        let all = list().await;
        (running(&all).len() == 3).then_some(all)
    })
    .await;
    // DefaultTolerationSeconds admission: every pod tolerates an unreachable node for 2 s.
    let tolerations = three[0].spec.as_ref().unwrap().tolerations.clone().unwrap();
    assert!(
        tolerations.iter().any(
            |t| t.key.as_deref() == Some("node.kubernetes.io/unreachable")
                && t.toleration_seconds == Some(2)
        ),
        "{tolerations:?}"
    );
    let victim_node = node_of(&three[0]);
    let victim = three[0].metadata.name.clone().unwrap();

    // The node goes silent: Unknown and tainted after the grace period.
    fleet.silence(&victim_node);
    let nodes: Api<Node> = Api::all(client.clone());
    let lost = eventually(
        Duration::from_secs(15),
        "the node to turn Unknown",
        || async {
            let node = nodes.get(&victim_node).await.unwrap();
            let ready = ready_condition(&node)?;
            let taints = node.spec.as_ref()?.taints.clone().unwrap_or_default();
            (ready.status == "Unknown" && taints.len() == 2).then_some((ready, taints))
        },
    )
    .await;
    assert_eq!(lost.0.reason.as_deref(), Some("NodeStatusUnknown"));
    assert!(
        lost.1
            .iter()
            .all(|t| t.key == "node.kubernetes.io/unreachable")
    );
    assert!(
        lost.1
            .iter()
            .any(|t| t.effect == "NoExecute" && t.time_added.is_some())
    );
    let table = cluster.kubectl_ok(&["get", "nodes"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&victim_node) && l.contains("NotReady")),
        "{table}"
    );

    // Its pod is marked not ready, evicted after 2 s and replaced on the other nodes.
    let replaced = eventually(
        Duration::from_secs(20),
        "eviction and replacement",
        || async {
            let all = list().await;
            let evicted = all
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(victim.as_str()))
                .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
            let live = running(&all);
            (evicted && live.len() == 3)
                .then(|| live.iter().map(|p| node_of(p)).collect::<Vec<_>>())
        },
    )
    .await;
    assert!(!replaced.contains(&victim_node), "{replaced:?}");
    let events = cluster.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=TaintManagerEviction",
    ]);
    assert!(events.contains(&victim), "{events}");

    // Back again: Ready, untainted, and the evicted pod's deletion is finished.
    fleet.resume(&victim_node).await?;
    eventually(Duration::from_secs(15), "the node to recover", || async {
        let node = nodes.get(&victim_node).await.unwrap();
        let ready = ready_condition(&node)?.status == "True";
        let untainted = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_none_or(Vec::is_empty);
        let gone = pods.get_opt(&victim).await.unwrap().is_none();
        (ready && untainted && gone).then_some(())
    })
    .await;

    // A deleted node's pods are collected after the grace period and replaced.
    let doomed_node = replaced[0].clone();
    cluster.kubectl_ok(&["delete", "node", &doomed_node]);
    eventually(
        Duration::from_secs(20),
        "the deleted node's pods to be replaced",
        || async {
            let all = list().await;
            let live = running(&all);
            (live.len() == 3
                && live.iter().all(|p| node_of(p) != doomed_node)
                && all.iter().all(|p| node_of(p) != doomed_node))
            .then_some(())
        },
    )
    .await;
    Ok(())
}
