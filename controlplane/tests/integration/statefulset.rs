//! StatefulSets with the scheduler, through kubectl: ordered creation with stable names and
//! hostnames, recreation under the same name, ordered scale-down, a reverse-ordinal rolling
//! update with partition, and rollout history/undo. The test plays the kubelet: it marks pods
//! Running and Ready and finishes graceful deletions when it chooses to.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::Cluster;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::{
    Api, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};

const NODES: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus:\n  conditions: [{type: Ready, status: \"True\"}]\n  allocatable: {cpu: \"8\", memory: 16Gi, pods: \"110\"}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n2}\nstatus:\n  conditions: [{type: Ready, status: \"True\"}]\n  allocatable: {cpu: \"8\", memory: 16Gi, pods: \"110\"}\n";

const STS: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: nginx, namespace: default}\nspec:\n  clusterIP: None\n  selector: {app: web}\n  ports: [{port: 80}]\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 3\n  serviceName: nginx\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: flotilla/testapp:v1}]\n";

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// The names of the set's pods, terminating ones marked with a trailing `~`, sorted.
async fn names(pods: &Api<Pod>) -> Vec<String> {
    let mut names: Vec<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| {
            let suffix = if p.metadata.deletion_timestamp.is_some() {
                "~"
            } else {
                ""
            };
            format!("{}{suffix}", p.name_any())
        })
        .collect();
    names.sort();
    names
}

/// Waits up to 10 s for exactly `expected` (see [`names`]).
async fn wait_for_names(pods: &Api<Pod>, expected: &[&str]) {
    let mut last = Vec::new();
    for _ in 0..100 {
        last = names(pods).await;
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected pods {expected:?}, have {last:?}");
}

/// Waits up to 10 s for `name` to be bound, then plays the kubelet: Running and Ready.
async fn make_ready(pods: &Api<Pod>, name: &str) {
    for _ in 0..100 {
        if let Some(pod) = pods.get_opt(name).await.unwrap()
            && pod.metadata.deletion_timestamp.is_none()
            && pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
        {
            let status = serde_json::json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}});
            pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .unwrap();
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} was never bound");
}

/// Plays the kubelet finishing a graceful deletion.
async fn finish(pods: &Api<Pod>, name: &str) {
    pods.delete(name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
}

/// Stays with `expected` for a second (nothing else happens while the controller waits).
async fn stays(pods: &Api<Pod>, expected: &[&str]) {
    for _ in 0..10 {
        assert_eq!(names(pods).await, expected);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ordered_identity_scaling_update_and_undo() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("nodes.yaml", NODES).to_string_lossy(),
    ]);
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("web.yaml", STS).to_string_lossy(),
    ]);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, "default");

    // OrderedReady: web-0 alone until it is Running and Ready, then web-1, then web-2.
    wait_for_names(&pods, &["web-0"]).await;
    stays(&pods, &["web-0"]).await;
    make_ready(&pods, "web-0").await;
    wait_for_names(&pods, &["web-0", "web-1"]).await;
    stays(&pods, &["web-0", "web-1"]).await;
    make_ready(&pods, "web-1").await;
    wait_for_names(&pods, &["web-0", "web-1", "web-2"]).await;
    make_ready(&pods, "web-2").await;
    let status = cluster.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=30s"]);
    assert!(
        status.contains("3 new pods have been updated") || status.contains("complete"),
        "{status}"
    );

    let web1 = pods.get("web-1").await?;
    let spec = web1.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let labels = web1.labels();
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "web-1");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "1");
    let revision = labels["controller-revision-hash"].clone();
    assert!(revision.starts_with("web-"), "{revision}");
    let status = cluster.kubectl_ok(&["get", "sts", "web", "-o", "jsonpath={.status.replicas} {.status.readyReplicas} {.status.currentReplicas} {.status.updatedReplicas} {.status.currentRevision} {.status.updateRevision}"]);
    assert_eq!(status, format!("3 3 3 3 {revision} {revision}"));

    // A deleted pod comes back under the same name.
    let old_uid = web1.uid();
    finish(&pods, "web-1").await;
    wait_for_names(&pods, &["web-0", "web-1", "web-2"]).await;
    assert_ne!(pods.get("web-1").await?.uid(), old_uid);
    make_ready(&pods, "web-1").await;

    // Scale to 1: web-2 goes first, and web-1 only once web-2 has terminated.
    cluster.kubectl_ok(&["scale", "sts", "web", "--replicas=1"]);
    wait_for_names(&pods, &["web-0", "web-1", "web-2~"]).await;
    stays(&pods, &["web-0", "web-1", "web-2~"]).await;
    finish(&pods, "web-2").await;
    wait_for_names(&pods, &["web-0", "web-1~"]).await;
    finish(&pods, "web-1").await;
    wait_for_names(&pods, &["web-0"]).await;

    // Back to 3, then a template change rolls from the highest ordinal down.
    cluster.kubectl_ok(&["scale", "sts", "web", "--replicas=3"]);
    wait_for_names(&pods, &["web-0", "web-1"]).await;
    make_ready(&pods, "web-1").await;
    wait_for_names(&pods, &["web-0", "web-1", "web-2"]).await;
    make_ready(&pods, "web-2").await;
    cluster.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=30s"]);

    // partition 1 keeps web-0 at the old template.
    cluster.kubectl_ok(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}}}}"#,
    ]);
    cluster.kubectl_ok(&["set", "image", "sts/web", "web=flotilla/testapp:v2"]);
    for victim in ["web-2", "web-1"] {
        let expected: Vec<String> = ["web-0", "web-1", "web-2"]
            .iter()
            .map(|n| {
                if *n == victim {
                    format!("{n}~")
                } else {
                    (*n).to_owned()
                }
            })
            .collect();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        wait_for_names(&pods, &expected).await;
        stays(&pods, &expected).await;
        finish(&pods, victim).await;
        wait_for_names(&pods, &["web-0", "web-1", "web-2"]).await;
        assert_eq!(image_of(&pods.get(victim).await?), "flotilla/testapp:v2");
        make_ready(&pods, victim).await;
    }
    stays(&pods, &["web-0", "web-1", "web-2"]).await;
    assert_eq!(image_of(&pods.get("web-0").await?), "flotilla/testapp:v1");
    let status = cluster.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=30s"]);
    assert!(status.contains("partitioned roll out complete"), "{status}");
    let counts = cluster.kubectl_ok(&[
        "get",
        "sts",
        "web",
        "-o",
        "jsonpath={.status.currentReplicas} {.status.updatedReplicas}",
    ]);
    assert_eq!(counts, "1 2");

    // Lifting the partition updates web-0 too.
    cluster.kubectl_ok(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    wait_for_names(&pods, &["web-0~", "web-1", "web-2"]).await;
    finish(&pods, "web-0").await;
    make_ready(&pods, "web-0").await;
    assert_eq!(image_of(&pods.get("web-0").await?), "flotilla/testapp:v2");
    let status = cluster.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=30s"]);
    assert!(status.contains("3 new pods"), "{status}");

    let history = cluster.kubectl_ok(&["rollout", "history", "sts/web"]);
    let listed: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(listed, ["1", "2"], "{history}");

    // Undo brings the first template back, rolled out the same way.
    let undo = cluster.kubectl_ok(&["rollout", "undo", "sts/web"]);
    assert!(undo.contains("rolled back"), "{undo}");
    let image = cluster.kubectl_ok(&[
        "get",
        "sts",
        "web",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "flotilla/testapp:v1");
    for victim in ["web-2", "web-1", "web-0"] {
        let expected: Vec<String> = ["web-0", "web-1", "web-2"]
            .iter()
            .map(|n| {
                if *n == victim {
                    format!("{n}~")
                } else {
                    (*n).to_owned()
                }
            })
            .collect();
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        wait_for_names(&pods, &expected).await;
        finish(&pods, victim).await;
        make_ready(&pods, victim).await;
        assert_eq!(image_of(&pods.get(victim).await?), "flotilla/testapp:v1");
    }
    let history = cluster.kubectl_ok(&["rollout", "history", "sts/web"]);
    let listed: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(listed, ["2", "3"], "{history}");
    // kubectl compares the revision's bytes with its own encoding of the live template.
    let again = cluster.kubectl_ok(&["rollout", "undo", "sts/web", "--to-revision=3"]);
    assert!(again.contains("skipped rollback"), "{again}");
    let status = cluster.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=30s"]);
    assert!(status.contains("3 new pods"), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_sets_create_at_once_with_their_claims() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("nodes.yaml", NODES).to_string_lossy(),
    ]);
    let parallel = STS
        .replace("  replicas: 3\n", "  replicas: 3\n  podManagementPolicy: Parallel\n")
        .replace(
            "      containers: [{name: web, image: flotilla/testapp:v1}]\n",
            "      containers: [{name: web, image: flotilla/testapp:v1, volumeMounts: [{name: data, mountPath: /data}]}]\n  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
        );
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("web.yaml", &parallel).to_string_lossy(),
    ]);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, "default");
    // Nothing is Ready, and still all three exist.
    wait_for_names(&pods, &["web-0", "web-1", "web-2"]).await;
    let volumes = pods.get("web-2").await?.spec.unwrap().volumes.unwrap();
    let claim = volumes
        .iter()
        .find(|v| v.name == "data")
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone());
    assert_eq!(claim.as_deref(), Some("data-web-2"));
    // Each pod's claim exists before the pod, labelled with the set's selector, in the default
    // class; it waits for its first consumer to be scheduled (these nodes run no agents).
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(cluster.client().await?, "default");
    for name in ["data-web-0", "data-web-1", "data-web-2"] {
        let claim = claims.get(name).await?;
        let labels = claim.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"), "{name}");
        let spec = claim.spec.unwrap_or_default();
        assert_eq!(
            spec.storage_class_name.as_deref(),
            Some("local-path"),
            "{name}"
        );
        assert_eq!(
            claim.status.and_then(|s| s.phase).as_deref(),
            Some("Pending"),
            "{name}"
        );
    }
    // Parallel scale-down removes every condemned pod at once.
    cluster.kubectl_ok(&["scale", "sts", "web", "--replicas=1"]);
    let mut live = Vec::new();
    for _ in 0..100 {
        live = names(&pods).await;
        live.retain(|n| !n.ends_with('~'));
        if live == ["web-0"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        live,
        ["web-0"],
        "both condemned pods go at once, none of them Ready"
    );
    Ok(())
}
