//! DaemonSets with the scheduler, through kubectl: one pod per eligible node as nodes come and
//! go, nodeSelector, and a rolling update within maxUnavailable with rollout history and undo.
//! There is no node agent here: the test plays the kubelet, marking pods Ready and finishing
//! graceful deletions when it chooses to.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::{collections::BTreeMap, time::Duration};

use crate::common::Cluster;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};

fn node(name: &str, labels: &str, taints: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec: {{taints: [{taints}]}}\nstatus:\n  conditions: [{{type: Ready, status: \"True\"}}]\n  allocatable: {{cpu: \"4\", memory: 8Gi, pods: \"110\"}}\n---\n"
    )
}

const DS: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent, namespace: default}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      containers: [{name: agent, image: flotilla/testapp:v1}]\n";

const EDGE_DS: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: edge, namespace: default}\nspec:\n  selector: {matchLabels: {app: edge}}\n  template:\n    metadata: {labels: {app: edge}}\n    spec:\n      nodeSelector: {role: edge}\n      containers: [{name: edge, image: flotilla/testapp:v1}]\n";

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn image_of(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

/// Live (not terminating) pods of `app`, by node.
async fn live(pods: &Api<Pod>, app: &str) -> BTreeMap<String, Vec<Pod>> {
    let mut by_node: BTreeMap<String, Vec<Pod>> = BTreeMap::new();
    for pod in pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
    {
        if pod.metadata.deletion_timestamp.is_none() {
            by_node.entry(node_of(&pod)).or_default().push(pod);
        }
    }
    by_node
}

/// Waits up to 15 s until the live pods of `app` are bound exactly to `nodes`, one each.
async fn wait_for_nodes(pods: &Api<Pod>, app: &str, nodes: &[&str]) -> BTreeMap<String, Vec<Pod>> {
    let mut last = BTreeMap::new();
    for _ in 0..150 {
        last = live(pods, app).await;
        let placed: Vec<&str> = last.keys().map(String::as_str).collect();
        if placed == nodes && last.values().all(|p| p.len() == 1) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let summary: Vec<(String, usize)> = last.iter().map(|(n, p)| (n.clone(), p.len())).collect();
    panic!("expected one {app} pod on each of {nodes:?}, have {summary:?}");
}

/// Plays the kubelet for one pod: Running and Ready.
async fn mark_ready(pods: &Api<Pod>, name: &str) {
    let status = serde_json::json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

/// Plays the kubelet for every terminating pod: finishes the deletion.
async fn finish_terminating(pods: &Api<Pod>) -> usize {
    let mut finished = 0;
    for pod in pods.list(&ListParams::default()).await.unwrap().items {
        if pod.metadata.deletion_timestamp.is_some() {
            let _ = pods
                .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
                .await;
            finished += 1;
        }
    }
    finished
}

async fn terminating(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_pod_per_eligible_node_as_nodes_come_and_go() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let nodes = [
        node("n1", "", ""),
        node("n2", "role: edge", ""),
        node("n3", "", "{key: dedicated, value: db, effect: NoSchedule}"),
    ]
    .concat();
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("nodes.yaml", &nodes).to_string_lossy(),
    ]);
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("ds.yaml", DS).to_string_lossy(),
    ]);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, "default");

    // The tainted n3 gets no pod.
    let placed = wait_for_nodes(&pods, "agent", &["n1", "n2"]).await;
    let pod = &placed["n1"][0];
    let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("DaemonSet", "agent")
    );
    assert!(pod.labels().contains_key("controller-revision-hash"));
    let spec = pod.spec.as_ref().unwrap();
    let terms = &spec
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    let field = &terms[0].match_fields.as_ref().unwrap()[0];
    assert_eq!(
        (
            field.key.as_str(),
            field.values.as_ref().unwrap().as_slice()
        ),
        ("metadata.name", ["n1".to_owned()].as_slice())
    );
    let tolerated: Vec<String> = spec
        .tolerations
        .iter()
        .flatten()
        .filter_map(|t| t.key.clone())
        .collect();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(tolerated.iter().any(|k| k == key), "{key} in {tolerated:?}");
    }

    // The edge DaemonSet only runs where role=edge.
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("edge.yaml", EDGE_DS).to_string_lossy(),
    ]);
    wait_for_nodes(&pods, "edge", &["n2"]).await;

    // A node that joins gets a pod; a node that leaves loses it.
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster
            .write("n4.yaml", &node("n4", "role: edge", ""))
            .to_string_lossy(),
    ]);
    wait_for_nodes(&pods, "agent", &["n1", "n2", "n4"]).await;
    wait_for_nodes(&pods, "edge", &["n2", "n4"]).await;
    cluster.kubectl_ok(&["delete", "node", "n1"]);
    wait_for_nodes(&pods, "agent", &["n2", "n4"]).await;
    let mut gone = Vec::new();
    for _ in 0..100 {
        gone = pods
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items
            .into_iter()
            .filter(|p| node_of(p) == "n1")
            .collect();
        if gone.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        gone.is_empty(),
        "the pod of a deleted node is removed outright"
    );

    // Relabelling a node moves the edge daemon off it.
    cluster.kubectl_ok(&["label", "node", "n4", "role-"]);
    for _ in 0..100 {
        if finish_terminating(&pods).await == 0 && live(&pods, "edge").await.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_nodes(&pods, "edge", &["n2"]).await;

    // A duplicate on one node is reduced to the oldest pod.
    let extra: Pod = {
        let mut pod = placed["n2"][0].clone();
        pod.metadata = kube::api::ObjectMeta {
            name: Some("agent-extra".into()),
            labels: pod.metadata.labels.clone(),
            owner_references: pod.metadata.owner_references.clone(),
            ..Default::default()
        };
        pod.status = None;
        pod
    };
    pods.create(&Default::default(), &extra).await?;
    let mut extra_gone = false;
    for _ in 0..100 {
        let terminating = terminating(&pods, "agent").await;
        let exists = pods.get_opt("agent-extra").await?.is_some();
        if !exists || terminating.iter().any(|p| p.name_any() == "agent-extra") {
            extra_gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(extra_gone, "the younger duplicate is deleted");
    assert_eq!(live(&pods, "agent").await["n2"].len(), 1);

    let status = cluster.kubectl_ok(&[
        "get",
        "ds",
        "agent",
        "-o",
        "jsonpath={.status.desiredNumberScheduled} {.status.currentNumberScheduled} {.status.numberMisscheduled}",
    ]);
    assert_eq!(status, "2 2 0");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_update_history_and_undo() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let nodes = [node("n1", "", ""), node("n2", "", ""), node("n3", "", "")].concat();
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("nodes.yaml", &nodes).to_string_lossy(),
    ]);
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("ds.yaml", DS).to_string_lossy(),
    ]);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, "default");
    let placed = wait_for_nodes(&pods, "agent", &["n1", "n2", "n3"]).await;
    for pod in placed.values().flatten() {
        mark_ready(&pods, &pod.name_any()).await;
    }
    let status = cluster.kubectl_ok(&["rollout", "status", "ds/agent", "--timeout=30s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    cluster.kubectl_ok(&["set", "image", "ds/agent", "agent=flotilla/testapp:v2"]);
    // maxUnavailable 1: one old pod goes at a time; the next only after its replacement is Ready.
    let mut replaced = std::collections::BTreeSet::new();
    let mut done = false;
    for _ in 0..300 {
        let all = pods
            .list(&ListParams::default().labels("app=agent"))
            .await?
            .items;
        let serving = |node: &str| {
            all.iter().any(|p| {
                node_of(p) == node && p.metadata.deletion_timestamp.is_none() && flotilla_ready(p)
            })
        };
        let unavailable = ["n1", "n2", "n3"].iter().filter(|n| !serving(n)).count();
        assert!(
            unavailable <= 1,
            "maxUnavailable 1 exceeded: {unavailable} nodes without a ready pod"
        );
        // Play the kubelet: finish old pods' termination, make bound new pods Ready.
        finish_terminating(&pods).await;
        for pod in &all {
            if pod.metadata.deletion_timestamp.is_none()
                && image_of(pod) == "flotilla/testapp:v2"
                && !node_of(pod).is_empty()
                && !flotilla_ready(pod)
            {
                mark_ready(&pods, &pod.name_any()).await;
                replaced.insert(node_of(pod));
            }
        }
        let live: Vec<&Pod> = all
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        if live.len() == 3
            && live
                .iter()
                .all(|p| image_of(p) == "flotilla/testapp:v2" && flotilla_ready(p))
        {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(done, "the update reached every node");
    assert_eq!(replaced.len(), 3, "every node got a new pod: {replaced:?}");
    let status = cluster.kubectl_ok(&["rollout", "status", "ds/agent", "--timeout=30s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let counts = cluster.kubectl_ok(&[
        "get",
        "ds",
        "agent",
        "-o",
        "jsonpath={.status.updatedNumberScheduled} {.status.numberReady} {.status.numberAvailable}",
    ]);
    assert_eq!(counts, "3 3 3");

    let revisions = cluster.kubectl_ok(&["get", "controllerrevisions", "-l", "app=agent"]);
    assert!(
        revisions.contains("CONTROLLER") && revisions.contains("daemonset.apps/agent"),
        "{revisions}"
    );
    let history = cluster.kubectl_ok(&["rollout", "history", "ds/agent"]);
    let listed: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(listed, ["1", "2"], "{history}");
    let first = cluster.kubectl_ok(&["rollout", "history", "ds/agent", "--revision=1"]);
    assert!(first.contains("flotilla/testapp:v1"), "{first}");

    let undo = cluster.kubectl_ok(&["rollout", "undo", "ds/agent"]);
    assert!(undo.contains("rolled back"), "{undo}");
    let image = cluster.kubectl_ok(&[
        "get",
        "ds",
        "agent",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image, "flotilla/testapp:v1");
    // The pods follow the restored template.
    let mut images = Vec::new();
    for _ in 0..300 {
        finish_terminating(&pods).await;
        let by_node = live(&pods, "agent").await;
        for pod in by_node.values().flatten() {
            if !node_of(pod).is_empty() && !flotilla_ready(pod) {
                mark_ready(&pods, &pod.name_any()).await;
            }
        }
        images = by_node.values().flatten().map(image_of).collect();
        if images.len() == 3 && images.iter().all(|i| i == "flotilla/testapp:v1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(images, ["flotilla/testapp:v1"; 3]);
    let history = cluster.kubectl_ok(&["rollout", "history", "ds/agent"]);
    let listed: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(
        listed,
        ["2", "3"],
        "revision 1 became revision 3: {history}"
    );
    // kubectl compares the revision's bytes with its own encoding of the live template.
    let again = cluster.kubectl_ok(&["rollout", "undo", "ds/agent", "--to-revision=3"]);
    assert!(again.contains("skipped rollback"), "{again}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_delete_replaces_only_deleted_pods() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let nodes = [node("n1", "", ""), node("n2", "", "")].concat();
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("nodes.yaml", &nodes).to_string_lossy(),
    ]);
    let on_delete = DS.replace(
        "spec:\n  selector",
        "spec:\n  updateStrategy: {type: OnDelete}\n  selector",
    );
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("ds.yaml", &on_delete).to_string_lossy(),
    ]);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, "default");
    let placed = wait_for_nodes(&pods, "agent", &["n1", "n2"]).await;
    for pod in placed.values().flatten() {
        mark_ready(&pods, &pod.name_any()).await;
    }
    cluster.kubectl_ok(&["set", "image", "ds/agent", "agent=flotilla/testapp:v2"]);
    cluster.wait_observed("ds/agent").await;
    assert!(
        terminating(&pods, "agent").await.is_empty(),
        "OnDelete deletes nothing itself"
    );
    let victim = placed["n1"][0].name_any();
    pods.delete(&victim, &DeleteParams::default().grace_period(0))
        .await?;
    let replaced = wait_for_nodes(&pods, "agent", &["n1", "n2"]).await;
    assert_eq!(image_of(&replaced["n1"][0]), "flotilla/testapp:v2");
    assert_eq!(image_of(&replaced["n2"][0]), "flotilla/testapp:v1");
    // The status follows the pods asynchronously: wait for it (bounded) instead of racing it.
    let mut updated = String::new();
    for _ in 0..40 {
        updated = cluster.kubectl_ok(&[
            "get",
            "ds",
            "agent",
            "-o",
            "jsonpath={.status.updatedNumberScheduled}",
        ]);
        if updated == "1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(updated, "1");
    Ok(())
}

fn flotilla_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tolerant_daemon_pods_run_on_not_ready_nodes_other_pods_do_not() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    // n2 is registered not ready, as a kubelet does: Ready=False and the not-ready taint. A
    // DaemonSet that tolerates NoSchedule taints (as flannel's and other CNI agents' do, since
    // they are what makes a node ready) runs there; the scheduler judges by taints, not by the
    // condition, as upstream's does.
    let not_ready = "apiVersion: v1\nkind: Node\nmetadata: {name: n2}\nspec: {taints: [{key: node.kubernetes.io/not-ready, effect: NoSchedule}]}\nstatus:\n  conditions: [{type: Ready, status: \"False\"}]\n  allocatable: {cpu: \"4\", memory: 8Gi, pods: \"110\"}\n";
    let nodes = [node("n1", "", ""), not_ready.to_owned()].concat();
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("nodes.yaml", &nodes).to_string_lossy(),
    ]);
    let tolerant = DS.replace(
        "      containers:",
        "      tolerations: [{operator: Exists, effect: NoSchedule}]\n      containers:",
    );
    assert_ne!(tolerant, DS);
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("ds.yaml", &tolerant).to_string_lossy(),
    ]);
    let pods: Api<Pod> = Api::namespaced(cluster.client().await?, "default");
    wait_for_nodes(&pods, "agent", &["n1", "n2"]).await;
    let plain = "apiVersion: v1\nkind: Pod\nmetadata: {name: plain, namespace: default, labels: {app: plain}}\nspec:\n  containers: [{name: c, image: flotilla/testapp:v1}]\n";
    cluster.kubectl_ok(&[
        "apply",
        "-f",
        &cluster.write("plain.yaml", plain).to_string_lossy(),
    ]);
    wait_for_nodes(&pods, "plain", &["n1"]).await;
    Ok(())
}
