//! ReplicationControllers through kubectl: served like upstream (defaults, validation, tables,
//! `/scale`) and kept by the replica controller the ReplicaSets share.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::{Cluster, TWO_NODES, expect_replaced, wait_for_bound};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::{Api, api::PostParams};

/// No selector: it defaults to the template's labels, as upstream's does.
const RC: &str = "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 3\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: flotilla/testapp:v1}]\n";

const MISMATCHED: &str = "apiVersion: v1\nkind: ReplicationController\nmetadata: {name: bad, namespace: default}\nspec:\n  selector: {app: web}\n  template:\n    metadata: {labels: {app: other}}\n    spec:\n      containers: [{name: web, image: flotilla/testapp:v1}]\n";

/// Waits up to 5 s for `kubectl get rc web` to print a row with these DESIRED/CURRENT counts.
async fn wait_for_row(cluster: &Cluster, desired: &str, current: &str) -> String {
    let mut table = String::new();
    for _ in 0..50 {
        table = cluster.kubectl_ok(&["get", "rc", "web"]);
        let row: Vec<&str> = table
            .lines()
            .nth(1)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if row.get(1..3) == Some(&[desired, current][..]) {
            return table;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected web with {desired} desired, {current} current:\n{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replication_controllers_keep_scale_replace_and_delete_pods() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    cluster.apply("nodes.yaml", TWO_NODES);
    cluster.apply("rc.yaml", RC);
    let selector = cluster.kubectl_ok(&["get", "rc", "web", "-o", "jsonpath={.spec.selector}"]);
    assert_eq!(selector, r#"{"app":"web"}"#, "defaulted from the template");

    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, "default");
    let three = wait_for_bound(&pods, "app=web", 3).await;
    for pod in &three {
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.controller
            ),
            ("v1", "ReplicationController", "web", Some(true))
        );
        assert!(pod.metadata.name.as_ref().unwrap().starts_with("web-"));
    }
    let table = wait_for_row(&cluster, "3", "3").await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    let wide = cluster.kubectl_ok(&["get", "rc", "web", "-o", "wide"]);
    assert!(
        wide.contains("SELECTOR") && wide.contains("app=web"),
        "{wide}"
    );

    // A deleted pod is replaced.
    let victim = three[0].metadata.name.clone().unwrap();
    expect_replaced(&cluster, &pods, "app=web", 3, &victim).await;

    // kubectl scale goes through /scale, whose selector is the label map as a string.
    cluster.kubectl_ok(&["scale", "rc", "web", "--replicas=1"]);
    wait_for_bound(&pods, "app=web", 1).await;
    wait_for_row(&cluster, "1", "1").await;
    let scale = cluster.kubectl_ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/replicationcontrollers/web/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale)?;
    assert_eq!(
        (&scale["spec"]["replicas"], &scale["status"]["selector"]),
        (&serde_json::json!(1), &serde_json::json!("app=web"))
    );

    // Deleting the controller deletes its pods (the garbage collector follows the owner).
    cluster.kubectl_ok(&["delete", "rc", "web"]);
    wait_for_bound(&pods, "app=web", 0).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_selector_that_misses_the_template_is_rejected() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let path = cluster.write("bad.yaml", MISMATCHED);
    let err = cluster.kubectl_err(&["apply", "-f", &path.to_string_lossy()]);
    assert!(
        err.contains("ReplicationController \"bad\" is invalid")
            && err.contains("spec.template.metadata.labels: Invalid value")
            && err.contains("selector does not match labels in spec.template"),
        "{err}"
    );

    let rcs: Api<ReplicationController> = Api::namespaced(cluster.client().await?, "default");
    let rc: ReplicationController = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "bad"},
        "spec": {"selector": {"app": "web"}, "template": {
            "metadata": {"labels": {"app": "other"}},
            "spec": {"containers": [{"name": "web", "image": "flotilla/testapp:v1"}]}}},
    }))?;
    match rcs.create(&PostParams::default(), &rc).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 422, "{status:?}"),
        other => panic!("expected a 422, got {other:?}"),
    }
    let listed = cluster.kubectl_ok(&["get", "rc", "-o", "name"]);
    assert_eq!(listed, "", "nothing stored");
    Ok(())
}
