//! The scheduler: binds pending pods to nodes through the binding subresource. It is a client of
//! the API server like any other (kube-runtime reflectors over Nodes and Pods), decides with the
//! plain functions of [`predicates`], and reports pods it cannot place with a PodScheduled=False
//! condition and a FailedScheduling event, as kube-scheduler does.

pub mod predicates;
pub mod quantity;

use std::{collections::HashMap, time::Duration};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::{
        WatchStreamExt as _,
        reflector::{self, Store},
        watcher,
    },
};
use serde_json::json;

/// The name pods ask for in spec.schedulerName.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// How often unschedulable pods are retried even when nothing changed.
const RETRY: Duration = Duration::from_secs(5);

/// Runs until the task is dropped.
pub async fn run(client: Client) {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let node_events = reflector::reflector(
        node_writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ())
    .boxed();
    let pod_events = reflector::reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ())
    .boxed();
    // The reflectors run on their own tasks: the scheduling pass below awaits the stores being
    // ready, which only happens while their streams are polled.
    let changed = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut drivers = Vec::new();
    for events in [node_events, pod_events] {
        let changed = changed.clone();
        drivers.push(tokio::spawn(events.for_each(move |()| {
            changed.notify_one();
            futures::future::ready(())
        })));
    }
    let _abort_drivers = AbortOnDrop(drivers);
    let mut reported: HashMap<String, String> = HashMap::new();
    let mut retry = tokio::time::interval(RETRY);
    loop {
        tokio::select! {
            () = changed.notified() => {}
            _ = retry.tick() => {}
        }
        if nodes.wait_until_ready().await.is_err() || pods.wait_until_ready().await.is_err() {
            tracing::error!("the scheduler's caches were dropped");
            return;
        }
        schedule_pending(&client, &nodes, &pods, &mut reported).await;
    }
}

/// One pass over the pending pods, oldest first.
async fn schedule_pending(
    client: &Client,
    nodes: &Store<Node>,
    pods: &Store<Pod>,
    reported: &mut HashMap<String, String>,
) {
    let nodes: Vec<Node> = nodes.state().iter().map(|n| (**n).clone()).collect();
    let all_pods: Vec<Pod> = pods.state().iter().map(|p| (**p).clone()).collect();
    let mut pending: Vec<&Pod> = all_pods.iter().filter(|p| is_pending(p)).collect();
    pending.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    // Pods bound in this pass count as on their node right away (the store lags behind).
    let mut assumed: HashMap<String, Vec<Pod>> = HashMap::new();
    for pod in pending {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut reasons = Vec::new();
        let mut best: Option<(i128, &Node)> = None;
        for node in &nodes {
            let node_name = node.metadata.name.clone().unwrap_or_default();
            let mut bound: Vec<&Pod> = all_pods
                .iter()
                .filter(|p| {
                    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node_name.as_str())
                })
                .collect();
            bound.extend(assumed.get(&node_name).into_iter().flatten());
            let why = predicates::filter(pod, node, &bound);
            if why.is_empty() {
                let score = predicates::score(pod, node, &bound);
                let better = best.is_none_or(|(best_score, best_node)| {
                    score > best_score
                        || (score == best_score && node.metadata.name < best_node.metadata.name)
                });
                if better {
                    best = Some((score, node));
                }
            } else {
                reasons.extend(why);
            }
        }
        let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        match best {
            Some((_, node)) => {
                let node_name = node.metadata.name.clone().unwrap_or_default();
                let binding = json!({
                    "apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "namespace": namespace, "uid": uid},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
                });
                match pods_api
                    .create_subresource::<_, serde_json::Value>(
                        "binding",
                        &name,
                        &PostParams::default(),
                        &binding,
                    )
                    .await
                {
                    Ok(_) => {
                        tracing::info!(pod = %format!("{namespace}/{name}"), node = %node_name, "scheduled");
                        assumed
                            .entry(node_name.clone())
                            .or_default()
                            .push(pod.clone());
                        reported.remove(&uid);
                        record_event(
                            client,
                            pod,
                            "Normal",
                            "Scheduled",
                            &format!("Successfully assigned {namespace}/{name} to {node_name}"),
                        )
                        .await;
                    }
                    Err(err) => {
                        tracing::warn!(pod = %format!("{namespace}/{name}"), "binding failed: {err}");
                    }
                }
            }
            None => {
                let message = predicates::unschedulable_message(nodes.len(), &reasons);
                if reported.get(&uid) == Some(&message) {
                    continue;
                }
                let status = json!({"status": {"conditions": [{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": message, "lastProbeTime": null,
                    "lastTransitionTime": crate::apiserver::meta::now(),
                }]}});
                if let Err(err) = pods_api
                    .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&status))
                    .await
                {
                    tracing::warn!(pod = %format!("{namespace}/{name}"), "reporting unschedulable failed: {err}");
                    continue;
                }
                record_event(client, pod, "Warning", "FailedScheduling", &message).await;
                tracing::info!(pod = %format!("{namespace}/{name}"), %message, "unschedulable");
                reported.insert(uid, message);
            }
        }
    }
}

/// Aborts the reflector tasks when the scheduler stops.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

fn is_pending(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty)
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|name| name == SCHEDULER_NAME)
        && pod.metadata.deletion_timestamp.is_none()
        && !predicates::terminal(pod)
}

async fn record_event(client: &Client, pod: &Pod, kind: &str, reason: &str, message: &str) {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let now = crate::apiserver::meta::now();
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1", "kind": "Pod", "name": name, "namespace": namespace,
            "uid": pod.metadata.uid, "resourceVersion": pod.metadata.resource_version,
        },
        "type": kind, "reason": reason, "message": message,
        "source": {"component": SCHEDULER_NAME},
        "reportingComponent": SCHEDULER_NAME,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), &namespace);
    let Ok(event) = serde_json::from_value(event) else {
        return;
    };
    if let Err(err) = events.create(&PostParams::default(), &event).await {
        tracing::debug!("recording an event failed: {err}");
    }
}
