//! Deployments through kubectl: rollout status, set image (rolling update), history, undo,
//! pause/resume. The node agent does not exist yet, so a stand-in plays the kubelet's part on the
//! API: it marks bound pods Ready and finishes the graceful deletion of terminating ones.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::Cluster;
use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
use kube::{
    Api,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};

const NODES: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus:\n  conditions: [{type: Ready, status: \"True\"}]\n  allocatable: {cpu: \"8\", memory: 16Gi, pods: \"110\"}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n2}\nstatus:\n  conditions: [{type: Ready, status: \"True\"}]\n  allocatable: {cpu: \"8\", memory: 16Gi, pods: \"110\"}\n";

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: flotilla/testapp:v1}]\n";

/// Plays the kubelet: bound pods become Running and Ready; terminating pods go away.
fn stand_in_kubelet(pods: Api<Pod>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for pod in list.items {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    let bound = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_ref())
                        .is_some();
                    if pod.metadata.deletion_timestamp.is_some() {
                        let _ = pods
                            .delete(&name, &DeleteParams::default().grace_period(0))
                            .await;
                        continue;
                    }
                    let ready = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    if bound && !ready {
                        let status = serde_json::json!({"status": {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}});
                        let _ = pods
                            .patch_status(
                                &name,
                                &PatchParams::default(),
                                &Patch::Strategic(&status),
                            )
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollout_set_image_history_undo_pause() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, "default");
    let kubelet = stand_in_kubelet(pods);
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("nodes.yaml", NODES).to_string_lossy(),
    ]);
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("web.yaml", DEPLOYMENT).to_string_lossy(),
    ]);
    let status = cluster.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    cluster.kubectl_ok(&["set", "image", "deploy/web", "web=flotilla/testapp:v2"]);
    let status = cluster.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let images = cluster.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].spec.containers[0].image}",
    ]);
    assert_eq!(
        images
            .split_whitespace()
            .filter(|i| *i == "flotilla/testapp:v2")
            .count(),
        3,
        "{images}"
    );
    let history = cluster.kubectl_ok(&["rollout", "history", "deploy/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");

    cluster.kubectl_ok(&["rollout", "undo", "deploy/web"]);
    cluster.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let image = cluster.kubectl_ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "flotilla/testapp:v1");
    let revisions = cluster.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.template.spec.containers[0].image}={.metadata.annotations.deployment\\.kubernetes\\.io/revision} {end}"]);
    assert!(revisions.contains("flotilla/testapp:v1=3"), "{revisions}");

    cluster.kubectl_ok(&["rollout", "pause", "deploy/web"]);
    cluster.kubectl_ok(&["set", "image", "deploy/web", "web=flotilla/testapp:v3"]);
    cluster.wait_observed("deploy/web").await;
    let sets = cluster.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(
        sets.lines().count(),
        2,
        "no new ReplicaSet while paused: {sets}"
    );
    cluster.kubectl_ok(&["rollout", "resume", "deploy/web"]);
    cluster.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let sets = cluster.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
    assert_eq!(sets.lines().count(), 3, "{sets}");
    kubelet.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deployment_without_annotations_carries_its_revision_and_rolls_back() -> anyhow::Result<()>
{
    let cluster = Cluster::start().await?;
    let client = cluster.client().await?;
    let kubelet = stand_in_kubelet(Api::namespaced(client.clone(), "default"));
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("nodes.yaml", NODES).to_string_lossy(),
    ]);
    // Created through the API as `kubectl create deployment` does: no annotations at all (an
    // applied one would carry last-applied-configuration).
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "flotilla/testapp:v1"}]}}},
    }))?;
    deployments
        .create(&kube::api::PostParams::default(), &deployment)
        .await?;
    cluster.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    let revision = |cluster: &Cluster| {
        cluster.kubectl_ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ])
    };
    assert_eq!(revision(&cluster), "1");
    cluster.kubectl_ok(&["set", "image", "deploy/web", "web=flotilla/testapp:v2"]);
    cluster.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    assert_eq!(revision(&cluster), "2");
    // kubectl's rollback replaces /metadata/annotations with a JSON patch: it must exist.
    let undone = cluster.kubectl_ok(&["rollout", "undo", "deploy/web"]);
    assert!(undone.contains("rolled back"), "{undone}");
    cluster.kubectl_ok(&["rollout", "status", "deploy/web", "--timeout=60s"]);
    crate::common::eventually(
        Duration::from_secs(30),
        "the Deployment at revision 3",
        || {
            let now = revision(&cluster);
            async move { (now == "3").then_some(()) }
        },
    )
    .await;
    kubelet.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_rollout_exceeds_its_progress_deadline() -> anyhow::Result<()> {
    // No nodes: the pods can never run, so the rollout cannot advance.
    let cluster = Cluster::start().await?;
    let stuck = DEPLOYMENT.replace("name: web,", "name: stuck,").replace(
        "spec:\n  replicas: 3",
        "spec:\n  replicas: 2\n  progressDeadlineSeconds: 2",
    );
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("stuck.yaml", &stuck).to_string_lossy(),
    ]);
    let started = std::time::Instant::now();
    let err = cluster.kubectl_err(&["rollout", "status", "deployment/stuck", "--timeout=40s"]);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(35),
        "it took {:?}",
        started.elapsed()
    );
    let reason = cluster.kubectl_ok(&[
        "get",
        "deployment",
        "stuck",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
    ]);
    assert_eq!(reason, "ProgressDeadlineExceeded");
    Ok(())
}
