//! The ReplicaSet controller with the scheduler, through kubectl: replicas appear, spread,
//! scale, and are replaced.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::{Cluster, TWO_NODES, expect_replaced, wait_for_bound};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

const RS: &str = "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: flotilla/testapp:v1}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_are_kept_spread_scaled_and_replaced() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    cluster.apply("nodes.yaml", TWO_NODES);
    cluster.apply("rs.yaml", RS);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, "default");
    let three = wait_for_bound(&pods, "app=web", 3).await;
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
    expect_replaced(&cluster, &pods, "app=web", 3, &victim).await;

    cluster.kubectl_ok(&["scale", "rs", "web", "--replicas=1"]);
    wait_for_bound(&pods, "app=web", 1).await;
    cluster.kubectl_ok(&["scale", "rs", "web", "--replicas=4"]);
    wait_for_bound(&pods, "app=web", 4).await;
    let table = cluster.kubectl_ok(&["get", "rs", "web"]);
    assert!(table.contains("DESIRED"), "{table}");
    Ok(())
}
