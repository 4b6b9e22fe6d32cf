//! The scheduler: binds pending pods to nodes through the binding subresource. It is a client of
//! the API server like any other (kube-runtime reflectors over Nodes and Pods), decides with the
//! plain functions of [`predicates`], and reports pods it cannot place with a PodScheduled=False
//! condition and a FailedScheduling event, as kube-scheduler does.

pub mod predicates;
pub mod quantity;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt as _, reflector, watcher},
};
use predicates::{Demand, NodeInfo};
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
    let changed = Arc::new(tokio::sync::Notify::new());
    let mut drivers = Vec::new();
    for events in [node_events, pod_events] {
        let changed = changed.clone();
        drivers.push(tokio::spawn(events.for_each(move |()| {
            changed.notify_one();
            futures::future::ready(())
        })));
    }
    let (events, event_queue) = tokio::sync::mpsc::channel(EVENT_QUEUE);
    drivers.push(tokio::spawn(record_events(client.clone(), event_queue)));
    let _abort_drivers = crate::controllers::AbortOnDrop(drivers);
    let mut scheduler = Scheduler {
        client,
        events,
        reported: HashMap::new(),
        assumed: HashMap::new(),
        demands: HashMap::new(),
        next_start: 0,
    };
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
        scheduler.pass(&nodes.state(), &pods.state()).await;
    }
}

/// Bindings in flight at once: the API server and etcd take them in parallel.
const PARALLEL_BINDINGS: usize = 64;
/// Events waiting to be written; beyond this they are dropped, as upstream's broadcaster does.
const EVENT_QUEUE: usize = 16_384;
/// How long a pod bound by us may be missing from the cache before we stop assuming it.
const ASSUME_TTL: Duration = Duration::from_secs(30);

/// The scheduler's memory between passes.
struct Scheduler {
    client: Client,
    events: tokio::sync::mpsc::Sender<PendingEvent>,
    /// Unschedulable messages already reported, by pod uid (so each is reported once).
    reported: HashMap<String, String>,
    /// Pods bound by us that the cache does not show bound yet: uid -> (node, when).
    assumed: HashMap<String, (String, Instant)>,
    /// Each pod's demand, computed once: uid -> demand.
    demands: HashMap<String, Arc<Demand>>,
    /// Where the next node search starts, so sampled searches rotate over all nodes.
    next_start: usize,
}

/// One decision of a pass.
enum Decision {
    Bind(String),
    Unschedulable(String),
}

impl Scheduler {
    /// One pass over the pending pods: decide every placement in memory, then bind in parallel.
    async fn pass(&mut self, nodes: &[Arc<Node>], pods: &[Arc<Pod>]) {
        let now = Instant::now();
        let present: HashMap<&str, &Arc<Pod>> = pods
            .iter()
            .filter_map(|p| Some((p.metadata.uid.as_deref()?, p)))
            .collect();
        self.assumed.retain(|uid, (_, since)| {
            present
                .get(uid.as_str())
                .is_some_and(|p| bound_node(p).is_none())
                && now.duration_since(*since) < ASSUME_TTL
        });
        self.demands
            .retain(|uid, _| present.contains_key(uid.as_str()));
        self.reported
            .retain(|uid, _| present.contains_key(uid.as_str()));

        let mut infos: Vec<NodeInfo> = nodes.iter().cloned().map(NodeInfo::new).collect();
        let index: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((n.metadata.name.as_deref()?, i)))
            .collect();
        let mut pending = Vec::new();
        for pod in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let node = bound_node(pod).or_else(|| self.assumed.get(&uid).map(|(n, _)| n.as_str()));
            match node {
                Some(node) if !predicates::terminal(pod) => {
                    if let Some(&i) = index.get(node) {
                        let demand = self.demand(&uid, pod);
                        infos[i].add(&demand);
                    }
                }
                Some(_) => {}
                None if is_pending(pod) => pending.push(pod),
                None => {}
            }
        }
        // Higher priority first, then oldest first, as upstream's active queue orders them.
        pending.sort_by_key(|p| {
            (
                std::cmp::Reverse(p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)),
                p.metadata.creation_timestamp.clone().map(|t| t.0),
            )
        });
        let mut decisions = Vec::with_capacity(pending.len());
        for pod in pending {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let demand = self.demand(&uid, pod);
            let decision = self.place(pod, &demand, &mut infos);
            if let Decision::Bind(node) = &decision {
                self.assumed.insert(uid, (node.clone(), now));
            }
            decisions.push((pod.clone(), decision));
        }
        let outcomes: Vec<(String, bool)> = futures::stream::iter(decisions)
            .map(|(pod, decision)| self.carry_out(pod, decision, nodes.len()))
            .buffer_unordered(PARALLEL_BINDINGS)
            .collect()
            .await;
        for (uid, bound) in outcomes {
            if !bound {
                self.assumed.remove(&uid);
            }
        }
    }

    fn demand(&mut self, uid: &str, pod: &Pod) -> Arc<Demand> {
        self.demands
            .entry(uid.to_owned())
            .or_insert_with(|| Arc::new(Demand::of(pod)))
            .clone()
    }

    /// Picks the best of the feasible nodes found, searching from a rotating start and
    /// stopping after upstream's adaptive share of the nodes (percentageOfNodesToScore).
    fn place(&mut self, pod: &Pod, demand: &Demand, infos: &mut [NodeInfo]) -> Decision {
        let wanted = feasible_nodes_to_find(infos.len());
        let mut reasons = Vec::new();
        let mut best: Option<(i128, usize)> = None;
        let mut feasible = 0;
        for offset in 0..infos.len() {
            let i = (self.next_start + offset) % infos.len();
            let why = predicates::fits(pod, demand, &infos[i]);
            if !why.is_empty() {
                reasons.extend(why);
                continue;
            }
            feasible += 1;
            let score = predicates::rank(demand, &infos[i]);
            let better = best.is_none_or(|(best_score, best_i)| {
                score > best_score
                    || (score == best_score
                        && infos[i].node.metadata.name < infos[best_i].node.metadata.name)
            });
            if better {
                best = Some((score, i));
            }
            if feasible >= wanted {
                break;
            }
        }
        if !infos.is_empty() {
            self.next_start = (self.next_start + 1) % infos.len();
        }
        match best {
            Some((_, i)) => {
                infos[i].add(demand);
                Decision::Bind(infos[i].node.metadata.name.clone().unwrap_or_default())
            }
            None => {
                Decision::Unschedulable(predicates::unschedulable_message(infos.len(), &reasons))
            }
        }
    }

    /// Binds the pod or reports it unschedulable; returns its uid and whether it was bound.
    async fn carry_out(&self, pod: Arc<Pod>, decision: Decision, nodes: usize) -> (String, bool) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        match decision {
            Decision::Bind(node_name) => {
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
                        tracing::debug!(pod = %format!("{namespace}/{name}"), node = %node_name, "scheduled");
                        self.event(
                            &pod,
                            "Normal",
                            "Scheduled",
                            format!("Successfully assigned {namespace}/{name} to {node_name}"),
                        );
                        (uid, true)
                    }
                    Err(err) => {
                        tracing::warn!(pod = %format!("{namespace}/{name}"), "binding failed: {err}");
                        (uid, false)
                    }
                }
            }
            Decision::Unschedulable(message) => {
                if self.reported.get(&uid) == Some(&message) {
                    return (uid, false);
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
                    return (uid, false);
                }
                tracing::info!(pod = %format!("{namespace}/{name}"), %message, nodes, "unschedulable");
                self.event(&pod, "Warning", "FailedScheduling", message);
                (uid, false)
            }
        }
    }

    fn event(&self, pod: &Arc<Pod>, kind: &'static str, reason: &'static str, message: String) {
        let event = PendingEvent {
            pod: pod.clone(),
            kind,
            reason,
            message,
        };
        if self.events.try_send(event).is_err() {
            tracing::debug!("the event queue is full; an event was dropped");
        }
    }
}

/// Upstream's adaptive percentageOfNodesToScore: all nodes up to 100, then a share falling from
/// 50% by 1% per 125 nodes (at least 5%), never fewer than 100.
fn feasible_nodes_to_find(nodes: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    if nodes <= MIN_FEASIBLE {
        return nodes;
    }
    let percentage = 50_usize.saturating_sub(nodes / 125).max(5);
    (nodes * percentage / 100).max(MIN_FEASIBLE)
}

/// Which node the pod is bound to, if any.
fn bound_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// An event the scheduler wants written.
struct PendingEvent {
    pod: Arc<Pod>,
    kind: &'static str,
    reason: &'static str,
    message: String,
}

/// Writes events off the scheduling path, a few at a time.
async fn record_events(client: Client, queue: tokio::sync::mpsc::Receiver<PendingEvent>) {
    tokio_stream::wrappers::ReceiverStream::new(queue)
        .for_each_concurrent(16, |event| {
            let client = client.clone();
            async move {
                record_event(
                    &client,
                    &event.pod,
                    event.kind,
                    event.reason,
                    &event.message,
                )
                .await;
            }
        })
        .await;
}

fn is_pending(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    bound_node(pod).is_none()
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|name| name == SCHEDULER_NAME)
        && pod.metadata.deletion_timestamp.is_none()
        && !predicates::terminal(pod)
}

async fn record_event(client: &Client, pod: &Pod, kind: &str, reason: &str, message: &str) {
    crate::controllers::record_event(client, pod, SCHEDULER_NAME, (kind, reason, message)).await;
}

#[cfg(test)]
mod tests {
    use super::feasible_nodes_to_find;

    #[test]
    fn node_sampling_follows_upstreams_adaptive_share() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(200), 100);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(100_000), 5000);
    }
}
