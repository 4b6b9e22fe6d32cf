//! The ReplicaSet controller with the scheduler, through kubectl: replicas appear, spread,
//! scale, and are replaced.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

mod common;

use std::time::Duration;

use common::Cluster;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, api::ListParams};

const NODES: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus:\n  conditions: [{type: Ready, status: \"True\"}]\n  allocatable: {cpu: \"4\", memory: 8Gi, pods: \"110\"}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n2}\nstatus:\n  conditions: [{type: Ready, status: \"True\"}]\n  allocatable: {cpu: \"4\", memory: 8Gi, pods: \"110\"}\n";

const RS: &str = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: flotilla/testapp:v1}]\n";

/// Active (not terminating) pods of app=web, waiting up to 10 s for `count` of them, all bound.
async fn wait_for(pods: &Api<Pod>, count: usize) -> Vec<Pod> {
    let mut last = Vec::new();
    for _ in 0..100 {
        last = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let bound = last
            .iter()
            .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some());
        if last.len() == count && bound {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected {count} bound pods, have {}", last.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_are_kept_spread_scaled_and_replaced() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("nodes.yaml", NODES).to_string_lossy(),
    ]);
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("rs.yaml", RS).to_string_lossy(),
    ]);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, "default");
    let three = wait_for(&pods, 3).await;
    let on_n1 = three
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("n1"))
        .count();
    assert!(
        on_n1 == 1 || on_n1 == 2,
        "spread over both nodes, {on_n1} on n1"
    );
    for pod in &three {
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("ReplicaSet", "web", Some(true))
        );
        assert!(pod.metadata.name.as_ref().unwrap().starts_with("web-"));
    }
    let mut replicas = String::new();
    for _ in 0..50 {
        replicas = cluster.kubectl_ok(&["get", "rs", "web", "-o", "jsonpath={.status.replicas}"]);
        if replicas == "3" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(replicas, "3");

    // A deleted pod is replaced.
    let victim = three[0].metadata.name.clone().unwrap();
    cluster.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    let replaced = wait_for(&pods, 3).await;
    assert!(
        replaced
            .iter()
            .all(|p| p.metadata.name.as_deref() != Some(victim.as_str()))
    );

    cluster.kubectl_ok(&["scale", "rs", "web", "--replicas=1"]);
    wait_for(&pods, 1).await;
    cluster.kubectl_ok(&["scale", "rs", "web", "--replicas=4"]);
    wait_for(&pods, 4).await;
    let table = cluster.kubectl_ok(&["get", "rs", "web"]);
    assert!(table.contains("DESIRED"), "{table}");
    Ok(())
}
