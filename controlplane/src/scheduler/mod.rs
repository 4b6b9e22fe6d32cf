//! The scheduler: binds pending pods to nodes through the binding subresource. It is a client of
//! the API server like any other and works as kube-scheduler does:
//! - [`cache`] keeps every node with the totals of the pods on it, updated from Node and Pod
//!   watch events rather than rebuilt, so each event and each decision costs the same however
//!   many pods the cluster runs;
//! - [`queue`] holds the pending pods (priority, then age), parks the ones no node can take
//!   until the cluster changes, and backs off the ones whose binding failed;
//! - this module's loop takes events as they come and, between them, places one pod at a time
//!   with the plain functions of [`predicates`], counts it on its node at once (assumed) and
//!   hands the binding to a bounded set of tasks, whose results come back to the loop.
//!
//! Pods no node can take get a PodScheduled=False condition and a FailedScheduling event.

pub mod cache;
pub mod predicates;
pub mod queue;
pub mod volumes;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt as _, watcher, watcher::Event},
};
use predicates::{Demand, NodeInfo};
use serde_json::json;
use tokio::{sync::mpsc, task::JoinSet};

use self::{
    cache::Cache,
    queue::Queue,
    volumes::{Reservation, Volumes},
};

/// The name pods ask for in spec.schedulerName.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// How often unschedulable pods are retried even when nothing changed.
const RETRY: Duration = Duration::from_secs(5);
/// Bindings (and status reports) in flight at once: the API server and etcd take them in
/// parallel.
const PARALLEL_BINDINGS: usize = 64;
/// Events waiting to be written; beyond this they are dropped, as upstream's broadcaster does.
const EVENT_QUEUE: usize = 16_384;
/// Watch events decoded ahead of the loop.
const WATCH_BUFFER: usize = 1024;
/// How long a pod bound by us may be missing from the cache before we stop assuming it.
const ASSUME_TTL: Duration = Duration::from_secs(30);
/// How long a pod whose binding failed waits before it is tried again.
const BIND_BACKOFF: Duration = Duration::from_secs(1);

/// Runs until the task is dropped.
pub async fn run(client: Client) {
    // The watches decode on their own tasks, in parallel with the scheduling loop.
    let (node_sender, mut node_events) = mpsc::channel(WATCH_BUFFER);
    let (pod_sender, mut pod_events) = mpsc::channel(WATCH_BUFFER);
    let (claim_sender, mut claim_events) = mpsc::channel(WATCH_BUFFER);
    let (volume_sender, mut volume_events) = mpsc::channel(WATCH_BUFFER);
    let (class_sender, mut class_events) = mpsc::channel(WATCH_BUFFER);
    let (events, event_queue) = mpsc::channel(EVENT_QUEUE);
    let _abort_drivers = crate::controllers::AbortOnDrop(vec![
        tokio::spawn(forward(
            watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
            node_sender,
        )),
        tokio::spawn(forward(
            watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
            pod_sender,
        )),
        tokio::spawn(forward(
            watcher(
                Api::<PersistentVolumeClaim>::all(client.clone()),
                watcher::Config::default(),
            ),
            claim_sender,
        )),
        tokio::spawn(forward(
            watcher(
                Api::<PersistentVolume>::all(client.clone()),
                watcher::Config::default(),
            ),
            volume_sender,
        )),
        tokio::spawn(forward(
            watcher(
                Api::<StorageClass>::all(client.clone()),
                watcher::Config::default(),
            ),
            class_sender,
        )),
        tokio::spawn(record_events(client.clone(), event_queue)),
    ]);
    let mut scheduler = Scheduler {
        client,
        events,
        state: State::default(),
        in_flight: JoinSet::new(),
        next_start: 0,
    };
    let mut retry = tokio::time::interval(RETRY);
    loop {
        scheduler.state.settle();
        let ready = scheduler.can_schedule();
        let backoff = scheduler.state.queue.next_backoff();
        // Events first, so each decision sees the newest state; a decision only when a binding
        // slot is free.
        tokio::select! {
            biased;
            Some(event) = node_events.recv() => scheduler.state.node_event(event),
            Some(event) = pod_events.recv() => scheduler.state.pod_event(event),
            Some(event) = claim_events.recv() => {
                scheduler.state.volumes.claim_event(event);
                scheduler.state.cluster_changed = true;
            }
            Some(event) = volume_events.recv() => {
                scheduler.state.volumes.volume_event(event);
                scheduler.state.cluster_changed = true;
            }
            Some(event) = class_events.recv() => {
                scheduler.state.volumes.class_event(event);
                scheduler.state.cluster_changed = true;
            }
            Some(done) = scheduler.in_flight.join_next() => scheduler.finished(done),
            _ = retry.tick() => scheduler.retry(),
            () = sleep_until(backoff) , if backoff.is_some() => {
                scheduler.state.queue.end_backoffs(Instant::now());
            }
            () = std::future::ready(()), if ready => scheduler.schedule_one(),
        }
    }
}

async fn sleep_until(when: Option<Instant>) {
    if let Some(when) = when {
        tokio::time::sleep_until(when.into()).await;
    }
}

/// Passes a watch's events to the loop, retrying failed watches with the usual backoff.
async fn forward<K>(
    events: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    to: mpsc::Sender<Event<K>>,
) {
    let mut events = std::pin::pin!(events.default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if to.send(event).await.is_err() {
                    return;
                }
            }
            Err(err) => tracing::warn!("the scheduler's watch failed: {err}"),
        }
    }
}

/// What the scheduler knows, kept from watch events: the cache, the queue, and what it
/// reported. Nothing here talks to the API server.
#[derive(Default)]
struct State {
    cache: Cache,
    queue: Queue,
    /// Nodes and pods of a (re-)list under way, applied when it is complete.
    node_listing: Option<Vec<Arc<Node>>>,
    pod_listing: Option<Vec<Arc<Pod>>>,
    nodes_synced: bool,
    pods_synced: bool,
    /// Something changed that may let unschedulable pods fit (a node appeared or changed, a
    /// pod went away): they go back to the active queue before the next decision.
    cluster_changed: bool,
    /// Unschedulable messages already reported, by pod uid (so each is reported once).
    reported: HashMap<String, String>,
    /// Claims, volumes and classes, for volume binding.
    volumes: Volumes,
}

impl State {
    fn node_event(&mut self, event: Event<Node>) {
        match event {
            Event::Apply(node) => self.cluster_changed |= self.cache.apply_node(Arc::new(node)),
            Event::Delete(node) => {
                if let Some(name) = &node.metadata.name {
                    self.cache.delete_node(name);
                }
            }
            Event::Init => self.node_listing = Some(Vec::new()),
            Event::InitApply(node) => self
                .node_listing
                .get_or_insert_default()
                .push(Arc::new(node)),
            Event::InitDone => {
                let listed = self.node_listing.take().unwrap_or_default();
                self.cluster_changed |= self.cache.relist_nodes(listed);
                self.nodes_synced = true;
            }
        }
    }

    fn pod_event(&mut self, event: Event<Pod>) {
        match event {
            Event::Apply(pod) => self.apply_pod(Arc::new(pod)),
            Event::Delete(pod) => {
                if let Some(uid) = &pod.metadata.uid {
                    self.delete_pod(uid);
                }
            }
            Event::Init => self.pod_listing = Some(Vec::new()),
            Event::InitApply(pod) => self.pod_listing.get_or_insert_default().push(Arc::new(pod)),
            Event::InitDone => {
                let listed = self.pod_listing.take().unwrap_or_default();
                self.relist_pods(listed);
                self.pods_synced = true;
            }
        }
    }

    /// Takes in a pod's newest version.
    fn apply_pod(&mut self, pod: Arc<Pod>) {
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        match bound_node(&pod) {
            Some(node) if !predicates::terminal(&pod) => {
                self.cache.bound(&uid, node, &pod);
                self.queue.remove(&uid);
            }
            // Being bound by us: the watch shows it bound later.
            None if is_pending(&pod) && self.cache.is_assumed(&uid) => {}
            None if is_pending(&pod) => self.queue.add(pod),
            // Finished, deleted before it was bound, or another scheduler's.
            _ => {
                if self.cache.forget(&uid).is_some() {
                    self.cluster_changed = true;
                }
                self.queue.remove(&uid);
            }
        }
    }

    fn delete_pod(&mut self, uid: &str) {
        if self.cache.forget(uid).is_some() {
            self.cluster_changed = true;
        }
        self.queue.remove(uid);
        self.reported.remove(uid);
    }

    /// Replaces what is known of pods with a fresh listing: pods not listed are gone.
    fn relist_pods(&mut self, pods: Vec<Arc<Pod>>) {
        let listed: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        let gone: Vec<String> = self
            .cache
            .uids()
            .chain(self.queue.uids())
            .chain(self.reported.keys())
            .filter(|uid| !listed.contains(uid.as_str()))
            .cloned()
            .collect();
        for uid in gone {
            self.delete_pod(&uid);
        }
        for pod in pods {
            self.apply_pod(pod);
        }
    }

    /// Acts on cluster changes seen since the last decision, once for all of them.
    fn settle(&mut self) {
        if std::mem::take(&mut self.cluster_changed) {
            self.queue.move_unschedulable_to_active();
        }
    }

    fn synced(&self) -> bool {
        self.nodes_synced && self.pods_synced && self.volumes.synced()
    }
}

/// The scheduler: its state, and the bindings and reports in flight.
struct Scheduler {
    client: Client,
    events: mpsc::Sender<PendingEvent>,
    state: State,
    in_flight: JoinSet<Outcome>,
    /// Where the next node search starts, so sampled searches rotate over all nodes.
    next_start: usize,
}

/// How a task in flight ended.
enum Outcome {
    Bound,
    BindFailed(Arc<Pod>, Reservation),
    Reported {
        uid: String,
        message: String,
        ok: bool,
    },
}

impl Scheduler {
    fn can_schedule(&self) -> bool {
        self.state.synced()
            && self.in_flight.len() < PARALLEL_BINDINGS
            && self.state.queue.has_active()
    }

    /// Decides where the next pending pod goes, counts it there and starts binding it; or
    /// parks it as unschedulable and reports why.
    fn schedule_one(&mut self) {
        let Some(pod) = self.state.queue.pop() else {
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let demand = Arc::new(Demand::of(&pod));
        let nodes = self.state.cache.nodes();
        let volumes = &self.state.volumes;
        let placed = volumes
            .claims_of(&pod)
            .map_err(|why| format!("0/{} nodes are available: {why}.", nodes.len()))
            .and_then(|claims| {
                let volume_filter = |info: &NodeInfo| claims.reasons(volumes, &info.node);
                place(&pod, &demand, nodes, &mut self.next_start, volume_filter)
                    .map(|i| (i, claims.reserve(volumes, &nodes[i].node)))
            });
        match placed {
            Ok((i, reservation)) => {
                let node = nodes[i].node.metadata.name.clone().unwrap_or_default();
                // A pod waiting for its claims to bind stays assumed for as long as it may wait.
                let assumed_at = if reservation.is_empty() {
                    Instant::now()
                } else {
                    Instant::now() + volumes::BIND_TIMEOUT
                };
                self.state.volumes.assume(&reservation);
                self.state
                    .cache
                    .assume(pod.clone(), &node, demand, assumed_at);
                self.in_flight.spawn(bind(
                    self.client.clone(),
                    self.events.clone(),
                    pod,
                    node,
                    reservation,
                ));
            }
            Err(message) => {
                let nodes = nodes.len();
                self.state.queue.park_unschedulable(pod.clone());
                if self.state.reported.get(&uid) != Some(&message) {
                    self.state.reported.insert(uid, message.clone());
                    self.in_flight.spawn(report_unschedulable(
                        self.client.clone(),
                        self.events.clone(),
                        pod,
                        message,
                        nodes,
                    ));
                }
            }
        }
    }

    fn finished(&mut self, done: Result<Outcome, tokio::task::JoinError>) {
        match done {
            Ok(Outcome::Bound) => {}
            Ok(Outcome::BindFailed(pod, reservation)) => {
                self.state.volumes.forget(&reservation);
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                // Unless the watch meanwhile showed it bound or gone: free its place, retry.
                if self.state.cache.is_assumed(uid) {
                    self.state.cache.forget(uid);
                    self.state.cluster_changed = true;
                    self.state
                        .queue
                        .back_off(pod, Instant::now() + BIND_BACKOFF);
                }
            }
            Ok(Outcome::Reported { uid, message, ok }) => {
                if !ok && self.state.reported.get(&uid) == Some(&message) {
                    self.state.reported.remove(&uid);
                }
            }
            Err(err) => tracing::error!("a scheduler task failed: {err}"),
        }
    }

    /// The periodic retry: unschedulable pods try again, and assumptions the watch never
    /// confirmed expire.
    fn retry(&mut self) {
        self.state.queue.move_unschedulable_to_active();
        for pod in self.state.cache.expire(Instant::now(), ASSUME_TTL) {
            self.state.queue.add(pod);
        }
    }
}

/// Picks the best of the feasible nodes found, searching from a rotating start and stopping
/// after upstream's adaptive share of the nodes (percentageOfNodesToScore). Returns the node's
/// index, or the FailedScheduling message.
fn place(
    pod: &Pod,
    demand: &Demand,
    infos: &[NodeInfo],
    next_start: &mut usize,
    volume_filter: impl Fn(&NodeInfo) -> Vec<predicates::Reason>,
) -> Result<usize, String> {
    let wanted = feasible_nodes_to_find(infos.len());
    let mut reasons = Vec::new();
    let mut best: Option<(i128, usize)> = None;
    let mut feasible = 0;
    for offset in 0..infos.len() {
        let i = (*next_start + offset) % infos.len();
        let mut why = predicates::fits(pod, demand, &infos[i]);
        if why.is_empty() {
            why = volume_filter(&infos[i]);
        }
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
        *next_start = (*next_start + 1) % infos.len();
    }
    best.map(|(_, i)| i)
        .ok_or_else(|| predicates::unschedulable_message(infos.len(), &reasons))
}

/// Binds the pod to the node, once its claims are bound (PreBind).
async fn bind(
    client: Client,
    events: mpsc::Sender<PendingEvent>,
    pod: Arc<Pod>,
    node_name: String,
    reservation: Reservation,
) -> Outcome {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if !reservation.is_empty()
        && let Err(why) = reservation.prebind(&client, &node_name).await
    {
        tracing::warn!(pod = %format!("{namespace}/{name}"), "volume binding failed: {why}");
        reservation.unreserve(&client).await;
        event(&events, &pod, "Warning", "FailedScheduling", why);
        return Outcome::BindFailed(pod, reservation);
    }
    let pods_api: Api<Pod> = Api::namespaced(client, &namespace);
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
            event(
                &events,
                &pod,
                "Normal",
                "Scheduled",
                format!("Successfully assigned {namespace}/{name} to {node_name}"),
            );
            Outcome::Bound
        }
        Err(err) => {
            tracing::warn!(pod = %format!("{namespace}/{name}"), "binding failed: {err}");
            Outcome::BindFailed(pod, reservation)
        }
    }
}

/// Sets PodScheduled=False with the reason and records a FailedScheduling event.
async fn report_unschedulable(
    client: Client,
    events: mpsc::Sender<PendingEvent>,
    pod: Arc<Pod>,
    message: String,
    nodes: usize,
) -> Outcome {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(client, &namespace);
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
        return Outcome::Reported {
            uid,
            message,
            ok: false,
        };
    }
    tracing::info!(pod = %format!("{namespace}/{name}"), %message, nodes, "unschedulable");
    event(
        &events,
        &pod,
        "Warning",
        "FailedScheduling",
        message.clone(),
    );
    Outcome::Reported {
        uid,
        message,
        ok: true,
    }
}

fn event(
    events: &mpsc::Sender<PendingEvent>,
    pod: &Arc<Pod>,
    kind: &'static str,
    reason: &'static str,
    message: String,
) {
    let event = PendingEvent {
        pod: pod.clone(),
        kind,
        reason,
        message,
    };
    if events.try_send(event).is_err() {
        tracing::debug!("the event queue is full; an event was dropped");
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
async fn record_events(client: Client, queue: mpsc::Receiver<PendingEvent>) {
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
    use super::*;

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "allocatable": {"cpu": cpu, "memory": "4Gi", "pods": "110"},
            },
        }))
        .unwrap()
    }

    fn pod(uid: &str, node: Option<&str>, extra: serde_json::Value) -> Pod {
        let mut base = json!({
            "metadata": {"name": uid, "namespace": "default", "uid": uid},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "500m"}}}]},
        });
        if let Some(node) = node {
            base["spec"]["nodeName"] = json!(node);
        }
        json_patch::merge(&mut base, &extra);
        serde_json::from_value(base).unwrap()
    }

    fn cpu_on(state: &State, node: &str) -> (i128, i128) {
        let (requested, pods) = state.cache.node(node).unwrap().requested();
        (requested.cpu, pods)
    }

    /// A state synced with `nodes` and `pods`.
    fn synced(nodes: Vec<Node>, pods: Vec<Pod>) -> State {
        let mut state = State::default();
        state.node_event(Event::Init);
        for node in nodes {
            state.node_event(Event::InitApply(node));
        }
        state.node_event(Event::InitDone);
        state.pod_event(Event::Init);
        for pod in pods {
            state.pod_event(Event::InitApply(pod));
        }
        state.pod_event(Event::InitDone);
        state.volumes.claim_event(Event::InitDone);
        state.volumes.volume_event(Event::InitDone);
        state.volumes.class_event(Event::InitDone);
        assert!(state.synced());
        // The loop settles before each decision.
        state.settle();
        state
    }

    #[test]
    fn bound_pods_count_until_they_finish_or_go() {
        let mut state = synced(vec![node("n1", "2")], vec![pod("a", Some("n1"), json!({}))]);
        assert_eq!(cpu_on(&state, "n1"), (500, 1));
        state.pod_event(Event::Apply(pod("b", Some("n1"), json!({}))));
        assert_eq!(cpu_on(&state, "n1"), (1000, 2));
        state.pod_event(Event::Apply(pod(
            "b",
            Some("n1"),
            json!({"status": {"phase": "Succeeded"}}),
        )));
        assert_eq!(cpu_on(&state, "n1"), (500, 1));
        state.pod_event(Event::Delete(pod("a", Some("n1"), json!({}))));
        assert_eq!(cpu_on(&state, "n1"), (0, 0));
        // A node update keeps the totals.
        state.pod_event(Event::Apply(pod("c", Some("n1"), json!({}))));
        state.node_event(Event::Apply(node("n1", "4")));
        assert_eq!(cpu_on(&state, "n1"), (500, 1));
    }

    #[test]
    fn a_relist_drops_what_was_not_listed() {
        let mut state = synced(
            vec![node("n1", "2"), node("n2", "2")],
            vec![
                pod("a", Some("n1"), json!({})),
                pod("b", Some("n1"), json!({})),
                pod("p", None, json!({})),
                pod("q", None, json!({})),
            ],
        );
        assert_eq!(cpu_on(&state, "n1"), (1000, 2));
        assert!(state.queue.contains("p"));
        state.node_event(Event::Init);
        state.node_event(Event::InitApply(node("n1", "2")));
        state.pod_event(Event::Init);
        state.pod_event(Event::InitApply(pod("b", Some("n1"), json!({}))));
        state.pod_event(Event::InitApply(pod("q", None, json!({}))));
        // Nothing changes until the listing is complete.
        assert!(state.cache.node("n2").is_some());
        assert_eq!(cpu_on(&state, "n1"), (1000, 2));
        state.node_event(Event::InitDone);
        state.pod_event(Event::InitDone);
        assert!(state.cache.node("n2").is_none());
        assert_eq!(cpu_on(&state, "n1"), (500, 1));
        assert!(!state.queue.contains("p"));
        assert!(state.queue.contains("q"));
    }

    #[test]
    fn an_assumed_pod_counts_until_the_watch_confirms_it() {
        let mut state = synced(vec![node("n1", "2")], vec![]);
        state.pod_event(Event::Apply(pod("a", None, json!({}))));
        let a = state.queue.pop().unwrap();
        let mut next_start = 0;
        let i = place(
            &a,
            &Demand::of(&a),
            state.cache.nodes(),
            &mut next_start,
            |_| Vec::new(),
        )
        .unwrap();
        assert_eq!(i, 0);
        state.cache.assume(
            a,
            "n1",
            Arc::new(Demand::of(&pod("a", None, json!({})))),
            Instant::now(),
        );
        // An update of the still unbound pod (say, a label) does not queue it again.
        state.pod_event(Event::Apply(pod(
            "a",
            None,
            json!({"metadata": {"labels": {"x": "y"}}}),
        )));
        assert!(!state.queue.contains("a"));
        assert!(state.cache.is_assumed("a"));
        assert_eq!(cpu_on(&state, "n1"), (500, 1));
        state.pod_event(Event::Apply(pod("a", Some("n1"), json!({}))));
        assert!(!state.cache.is_assumed("a"));
        assert_eq!(cpu_on(&state, "n1"), (500, 1));
    }

    #[test]
    fn unschedulable_pods_come_back_when_a_node_is_added() {
        let mut state = synced(vec![node("n1", "1")], vec![]);
        state.pod_event(Event::Apply(pod(
            "big",
            None,
            json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": {"requests": {"cpu": "2"}}}]}}),
        )));
        let big = state.queue.pop().unwrap();
        let message = place(&big, &Demand::of(&big), state.cache.nodes(), &mut 0, |_| {
            Vec::new()
        })
        .unwrap_err();
        assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
        state.queue.park_unschedulable(big);
        state.settle();
        assert!(!state.queue.has_active());
        // A heartbeat-like update of the node changes nothing a filter reads.
        state.node_event(Event::Apply(node("n1", "1")));
        state.settle();
        assert!(!state.queue.has_active());
        state.node_event(Event::Apply(node("n2", "4")));
        state.settle();
        assert!(state.queue.has_active());
        let big = state.queue.pop().unwrap();
        let i = place(&big, &Demand::of(&big), state.cache.nodes(), &mut 0, |_| {
            Vec::new()
        })
        .unwrap();
        assert_eq!(
            state.cache.nodes()[i].node.metadata.name.as_deref(),
            Some("n2")
        );
    }

    #[test]
    fn unschedulable_pods_come_back_when_a_pod_goes() {
        let mut state = synced(
            vec![node("n1", "1")],
            vec![
                pod("a", Some("n1"), json!({})),
                pod("b", Some("n1"), json!({})),
            ],
        );
        state.pod_event(Event::Apply(pod("c", None, json!({}))));
        let c = state.queue.pop().unwrap();
        assert!(
            place(&c, &Demand::of(&c), state.cache.nodes(), &mut 0, |_| {
                Vec::new()
            })
            .is_err()
        );
        state.queue.park_unschedulable(c);
        state.pod_event(Event::Delete(pod("a", Some("n1"), json!({}))));
        state.settle();
        let c = state.queue.pop().unwrap();
        assert!(
            place(&c, &Demand::of(&c), state.cache.nodes(), &mut 0, |_| {
                Vec::new()
            })
            .is_ok()
        );
    }

    #[test]
    fn node_sampling_follows_upstreams_adaptive_share() {
        assert_eq!(feasible_nodes_to_find(50), 50);
        assert_eq!(feasible_nodes_to_find(200), 100);
        assert_eq!(feasible_nodes_to_find(1000), 420);
        assert_eq!(feasible_nodes_to_find(5000), 500);
        assert_eq!(feasible_nodes_to_find(100_000), 5000);
    }
}
