//! PodDisruptionBudgets with simulated nodes: the disruption controller counts the pods a
//! budget selects, `pods/eviction` answers 429 with upstream's message when the budget allows
//! no disruption and spends it when it does, and `kubectl drain` evicts a node's pods within
//! the budget.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::{Cluster, eventually};
use flotilla_controlplane::hollow::{HollowNodes, NodeShape, PodReports};
use k8s_openapi::api::{core::v1::Pod, policy::v1::PodDisruptionBudget};
use kube::{
    Api,
    api::{EvictParams, ListParams},
};

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: flotilla/testapp:v1}]\n";

fn budget(min_available: u32) -> String {
    format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {{name: web, namespace: default}}\nspec:\n  minAvailable: {min_available}\n  selector: {{matchLabels: {{app: web}}}}\n"
    )
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

/// The running, not terminating pods of the Deployment.
async fn web_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect()
}

/// Waits until the budget's controller has counted its current spec and allows `allowed`.
async fn allowed(budgets: &Api<PodDisruptionBudget>, allowed: i32) {
    eventually(
        Duration::from_secs(15),
        &format!("the budget to allow {allowed}"),
        || async {
            let budget = budgets.get("web").await.unwrap();
            let status = budget.status?;
            (status.observed_generation == budget.metadata.generation
                && status.disruptions_allowed == allowed)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evictions_and_drain_keep_within_the_budget() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let client = cluster.client().await?;
    let names = vec!["hollow-1".to_owned(), "hollow-2".to_owned()];
    let _fleet = HollowNodes::start(
        client.clone(),
        names,
        &NodeShape::default(),
        PodReports::Running,
    )
    .await?;
    // Both replicas on hollow-1, so draining it has to move both.
    cluster.kubectl_ok(&["cordon", "hollow-2"]);
    cluster.apply("deployment.yaml", DEPLOYMENT);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let two = eventually(Duration::from_secs(20), "2 running pods", || async {
        let running = web_pods(&pods).await;
        (running.len() == 2).then_some(running)
    })
    .await;
    assert!(two.iter().all(|p| node_of(p) == "hollow-1"));
    cluster.kubectl_ok(&["uncordon", "hollow-2"]);

    // A budget that needs both pods allows nothing: the eviction is refused as upstream does.
    cluster.apply("pdb.yaml", &budget(2));
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    allowed(&budgets, 0).await;
    let table = cluster.kubectl_ok(&["get", "pdb", "web"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "2", "N/A", "0"], "{table}");
    let victim = two[0].metadata.name.clone().unwrap();
    let once: Api<Pod> = Api::namespaced(cluster.client_without_retries().await?, "default");
    let refused = once
        .evict(&victim, &EvictParams::default())
        .await
        .unwrap_err();
    let kube::Error::Api(status) = refused else {
        panic!("expected an API error, got {refused}");
    };
    assert_eq!(status.code, 429);
    assert_eq!(status.reason, "TooManyRequests");
    assert_eq!(
        status.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert!(
        pods.get(&victim)
            .await?
            .metadata
            .deletion_timestamp
            .is_none()
    );

    // With room for one disruption, an eviction spends it and the pod terminates.
    cluster.apply("pdb.yaml", &budget(1));
    allowed(&budgets, 1).await;
    pods.evict(&victim, &EvictParams::default()).await?;
    let spent = budgets.get("web").await?.status.unwrap();
    assert!(
        spent.disruptions_allowed == 0 || spent.disrupted_pods.is_none(),
        "the eviction was recorded or already confirmed: {spent:?}"
    );
    eventually(
        Duration::from_secs(20),
        "the evicted pod replaced",
        || async {
            let running = web_pods(&pods).await;
            (running.len() == 2
                && running
                    .iter()
                    .all(|p| p.metadata.name.as_deref() != Some(&victim)))
            .then_some(())
        },
    )
    .await;
    allowed(&budgets, 1).await;

    // kubectl drain moves what is left on hollow-1, one disruption at a time.
    let on_one = web_pods(&pods)
        .await
        .into_iter()
        .filter(|p| node_of(p) == "hollow-1")
        .count();
    assert!(on_one >= 1, "a pod is left on hollow-1 to drain");
    let drained =
        cluster.kubectl_ok(&["drain", "hollow-1", "--ignore-daemonsets", "--timeout=50s"]);
    assert!(drained.contains("node/hollow-1 drained"), "{drained}");
    let moved = eventually(
        Duration::from_secs(20),
        "2 running pods on hollow-2",
        || async {
            let running = web_pods(&pods).await;
            (running.len() == 2 && running.iter().all(|p| node_of(p) == "hollow-2"))
                .then_some(running)
        },
    )
    .await;
    assert_eq!(moved.len(), 2);
    Ok(())
}
