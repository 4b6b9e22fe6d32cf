//! What happens when nodes fail, as kube-controller-manager's node-lifecycle, taint-eviction and
//! pod-GC controllers do it:
//! - a node whose Lease (and Ready heartbeat) has not moved for the grace period (40 s) gets its
//!   conditions set to Unknown and the `unreachable` NoExecute/NoSchedule taints; a node that
//!   reports Ready=False gets the `not-ready` ones; the taints go when it is Ready again. Its
//!   pods are marked not Ready so Services stop sending them traffic.
//! - pods on a node with NoExecute taints are deleted once they stop tolerating them: at once
//!   without a matching toleration, else after the shortest matching tolerationSeconds counted
//!   from the taint's timeAdded (the API server gives every pod 300 s, see admission.rs).
//! - pods bound to a node that no longer exists are deleted after the same grace period.
//!
//! Heartbeats are judged by when this controller saw them change, not by the timestamps in them,
//! so clock skew between nodes and the control plane does not matter (as upstream).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use flotilla_apimachinery::node_leases;
use futures::StreamExt as _;
use jiff::Timestamp;
use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{Node, Pod, Taint, Toleration},
    },
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::{
        WatchStreamExt as _,
        reflector::{self, Store},
        watcher,
    },
};
use serde_json::json;

use crate::{
    apiserver::admission::{NOT_READY_TAINT, UNREACHABLE_TAINT},
    scheduler::predicates::{terminal, tolerates},
};

/// The component named in our Events, as upstream's.
const COMPONENT: &str = "node-controller";

/// How the controller judges nodes.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a node may go without a heartbeat before it is Unknown (upstream's
    /// --node-monitor-grace-period, 40 s).
    pub grace_period: Duration,
    /// How often nodes are checked (upstream's --node-monitor-period, 5 s).
    pub monitor_period: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(40),
            monitor_period: Duration::from_secs(5),
        }
    }
}

/// Runs until the task is dropped.
pub async fn run(client: Client, settings: Settings) {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (leases, lease_writer) = reflector::store::<Lease>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    // Each reflector is polled on its own task; the loop below only reads their stores.
    let drivers = vec![
        tokio::spawn(drain(reflector::reflector(
            node_writer,
            watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
        ))),
        tokio::spawn(drain(reflector::reflector(
            lease_writer,
            watcher(
                Api::<Lease>::namespaced(client.clone(), node_leases::NAMESPACE),
                watcher::Config::default(),
            ),
        ))),
        tokio::spawn(drain(reflector::reflector(
            pod_writer,
            watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
        ))),
    ];
    let _abort = super::AbortOnDrop(drivers);
    let mut monitor = Monitor {
        client,
        settings,
        heartbeats: HashMap::new(),
        orphans: HashMap::new(),
    };
    let mut tick = tokio::time::interval(settings.monitor_period);
    loop {
        tick.tick().await;
        if nodes.wait_until_ready().await.is_err()
            || leases.wait_until_ready().await.is_err()
            || pods.wait_until_ready().await.is_err()
        {
            tracing::error!("the node lifecycle controller's caches were dropped");
            return;
        }
        monitor.pass(&nodes, &leases, &pods).await;
    }
}

async fn drain<T, E: std::error::Error>(events: impl futures::Stream<Item = Result<T, E>> + Send) {
    events.default_backoff().for_each(|_| async {}).await;
}

/// What the controller remembers between passes.
struct Monitor {
    client: Client,
    settings: Settings,
    /// Per node: the last heartbeat seen (lease renewTime, Ready lastHeartbeatTime) and when it
    /// last changed.
    heartbeats: HashMap<String, (Heartbeat, Instant)>,
    /// Pods bound to a missing node, by uid, and since when.
    orphans: HashMap<String, Instant>,
}

type Heartbeat = (Option<String>, Option<String>);

impl Monitor {
    async fn pass(&mut self, nodes: &Store<Node>, leases: &Store<Lease>, pods: &Store<Pod>) {
        let now = Instant::now();
        let nodes = nodes.state();
        let pods = pods.state();
        let mut by_node: HashMap<&str, Vec<&Arc<Pod>>> = HashMap::new();
        for pod in &pods {
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                by_node.entry(node).or_default().push(pod);
            }
        }
        let names: HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        self.heartbeats
            .retain(|name, _| names.contains(name.as_str()));
        for node in &nodes {
            let name = node.name_any();
            let lease =
                leases.get(&reflector::ObjectRef::new(&name).within(node_leases::NAMESPACE));
            let heartbeat = (
                lease
                    .and_then(|l| l.spec.clone())
                    .and_then(|s| s.renew_time)
                    .map(|t| t.0.to_string()),
                ready_condition(node).and_then(|c| c.1),
            );
            let entry = self
                .heartbeats
                .entry(name.clone())
                .or_insert_with(|| (heartbeat.clone(), now));
            if entry.0 != heartbeat {
                *entry = (heartbeat, now);
            }
            let silent = now.duration_since(entry.1) > self.settings.grace_period;
            let node_pods = by_node
                .get(name.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            if let Err(err) = self.check_node(node, silent, node_pods).await {
                tracing::warn!(node = %name, "node lifecycle: {err}");
            }
        }
        self.evict(&nodes, &by_node).await;
        self.collect_orphans(&names, &pods, now).await;
    }

    /// Marks a silent node Unknown (and its pods not Ready) and keeps its taints in line with
    /// its Ready condition.
    async fn check_node(
        &self,
        node: &Node,
        silent: bool,
        pods: &[&Arc<Pod>],
    ) -> Result<(), kube::Error> {
        let name = node.name_any();
        let api: Api<Node> = Api::all(self.client.clone());
        let mut ready = ready_condition(node).map(|c| c.0);
        if silent && ready.as_deref() != Some("Unknown") {
            let conditions = unknown_conditions(node, &meta_now());
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": conditions}})),
            )
            .await?;
            tracing::info!(node = %name, "node stopped posting status; marked Unknown");
            let message = format!("Node {name} status is now: NodeNotReady");
            super::record_event(
                &self.client,
                node,
                COMPONENT,
                ("Normal", "NodeNotReady", &message),
            )
            .await;
            for pod in pods.iter().filter(|p| !terminal(p)) {
                mark_not_ready(&self.client, pod).await;
            }
            ready = Some("Unknown".to_owned());
        }
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if let Some(taints) = desired_taints(&current, ready.as_deref(), Timestamp::now()) {
            let mut updated = node.clone();
            updated.spec.get_or_insert_default().taints = Some(taints);
            match api.replace(&name, &PostParams::default(), &updated).await {
                Ok(_) => {}
                // Changed meanwhile (a status write, for one): the next pass sees the new one.
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Deletes the pods that no longer tolerate their node's NoExecute taints.
    async fn evict(&self, nodes: &[Arc<Node>], by_node: &HashMap<&str, Vec<&Arc<Pod>>>) {
        let now = Timestamp::now();
        for node in nodes {
            let taints: Vec<Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t.effect == "NoExecute")
                .collect();
            if taints.is_empty() {
                continue;
            }
            let node_pods = by_node.get(node.name_any().as_str()).into_iter().flatten();
            for pod in node_pods {
                if pod.metadata.deletion_timestamp.is_some() || terminal(pod) {
                    continue;
                }
                let tolerations = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.tolerations.as_deref())
                    .unwrap_or_default();
                if eviction_time(tolerations, &taints).is_some_and(|at| at <= now) {
                    self.delete_pod(pod, None, "TaintManagerEviction").await;
                }
            }
        }
    }

    /// Force-deletes pods whose node is gone for longer than the grace period.
    async fn collect_orphans(&mut self, nodes: &HashSet<&str>, pods: &[Arc<Pod>], now: Instant) {
        let mut orphaned = Vec::new();
        for pod in pods {
            let Some(node) = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .filter(|n| !n.is_empty())
            else {
                continue;
            };
            if nodes.contains(node) {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let since = *self.orphans.entry(uid.clone()).or_insert(now);
            orphaned.push(uid);
            if now.duration_since(since) > self.settings.grace_period {
                self.delete_pod(pod, Some(0), "PodGCOrphaned").await;
            }
        }
        self.orphans.retain(|uid, _| orphaned.contains(uid));
    }

    async fn delete_pod(&self, pod: &Pod, grace: Option<i64>, reason: &str) {
        let namespace = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: grace.and_then(|g| u32::try_from(g).ok()),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                tracing::info!(pod = %format!("{namespace}/{name}"), reason, "deleted");
                let message = format!("Marking for deletion Pod {namespace}/{name}");
                super::record_event(&self.client, pod, COMPONENT, ("Normal", reason, &message))
                    .await;
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(err) => tracing::warn!(pod = %format!("{namespace}/{name}"), "deleting: {err}"),
        }
    }
}

/// The Ready condition's status and lastHeartbeatTime.
pub(crate) fn ready_condition(node: &Node) -> Option<(String, Option<String>)> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                c.status.clone(),
                c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()),
            )
        })
}

fn meta_now() -> String {
    crate::apiserver::meta::now()
}

/// The node's conditions with the kubelet-owned ones set to Unknown, as upstream words it.
fn unknown_conditions(node: &Node, now: &str) -> Vec<serde_json::Value> {
    let mut conditions: Vec<serde_json::Value> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    for kind in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let unknown = json!({"type": kind, "status": "Unknown", "reason": "NodeStatusUnknown",
                             "message": "Kubelet stopped posting node status.",
                             "lastTransitionTime": now});
        match conditions.iter_mut().find(|c| c["type"] == kind) {
            Some(condition) => {
                let heartbeat = condition["lastHeartbeatTime"].clone();
                *condition = unknown;
                condition["lastHeartbeatTime"] = heartbeat;
            }
            None => conditions.push(unknown),
        }
    }
    conditions
}

/// The taints the node should have given its Ready status, or None when `current` is right.
/// Taints of others are kept; ours keep their timeAdded while they stay.
pub fn desired_taints(
    current: &[Taint],
    ready: Option<&str>,
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let wanted_key = match ready {
        Some("False") => Some(NOT_READY_TAINT),
        Some("Unknown") => Some(UNREACHABLE_TAINT),
        _ => None,
    };
    let ours = |t: &Taint| t.key == NOT_READY_TAINT || t.key == UNREACHABLE_TAINT;
    let mut taints: Vec<Taint> = current.iter().filter(|t| !ours(t)).cloned().collect();
    if let Some(key) = wanted_key {
        for effect in ["NoSchedule", "NoExecute"] {
            let kept = current
                .iter()
                .find(|t| t.key == key && t.effect == effect)
                .cloned();
            taints.push(kept.unwrap_or_else(|| Taint {
                key: key.to_owned(),
                effect: effect.to_owned(),
                value: None,
                time_added: (effect == "NoExecute").then_some(Time(now)),
            }));
        }
    }
    let same = taints.len() == current.len() && taints.iter().all(|t| current.contains(t));
    (!same).then_some(taints)
}

/// When a pod with `tolerations` must leave a node with these NoExecute `taints`: now for an
/// untolerated taint, None when every taint is tolerated forever.
pub fn eviction_time(tolerations: &[Toleration], taints: &[Taint]) -> Option<Timestamp> {
    let mut earliest: Option<Timestamp> = None;
    for taint in taints {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(Timestamp::UNIX_EPOCH);
        }
        // Any matching toleration without a limit tolerates the taint forever.
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            continue;
        }
        let seconds = matching
            .iter()
            .filter_map(|t| t.toleration_seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        let added = taint
            .time_added
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
        let at = added
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .unwrap_or(Timestamp::MAX);
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest
}

async fn mark_not_ready(client: &Client, pod: &Pod) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
    let status = json!({"status": {"conditions": [{
        "type": "Ready", "status": "False", "reason": "NodeNotReady",
        "message": "the node this pod runs on is not ready", "lastTransitionTime": meta_now(),
    }]}});
    if let Err(err) = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&status),
        )
        .await
    {
        tracing::debug!(pod = %pod.name_any(), "marking not ready: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, effect: &str, added: Option<&str>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: added.map(|t| Time(t.parse().unwrap())),
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let other = taint("dedicated", "NoSchedule", None);
        let unreachable =
            desired_taints(std::slice::from_ref(&other), Some("Unknown"), now).unwrap();
        assert_eq!(
            unreachable,
            [
                other.clone(),
                taint(UNREACHABLE_TAINT, "NoSchedule", None),
                taint(UNREACHABLE_TAINT, "NoExecute", Some("2026-11-23T10:00:00Z")),
            ]
        );
        // Unchanged: nothing to write, and timeAdded is kept.
        let later: Timestamp = "2026-11-23T10:05:00Z".parse().unwrap();
        assert_eq!(desired_taints(&unreachable, Some("Unknown"), later), None);
        let not_ready = desired_taints(&unreachable, Some("False"), later).unwrap();
        assert!(not_ready.iter().all(|t| t.key != UNREACHABLE_TAINT));
        assert!(not_ready.iter().any(|t| t.key == NOT_READY_TAINT));
        assert_eq!(
            desired_taints(&not_ready, Some("True"), later).unwrap(),
            std::slice::from_ref(&other)
        );
        assert_eq!(desired_taints(&[other], Some("True"), later), None);
    }

    #[test]
    fn eviction_waits_for_the_shortest_matching_toleration() {
        let taints = [taint(
            UNREACHABLE_TAINT,
            "NoExecute",
            Some("2026-11-23T10:00:00Z"),
        )];
        assert_eq!(eviction_time(&[], &taints), Some(Timestamp::UNIX_EPOCH));
        assert_eq!(
            eviction_time(
                &[
                    toleration(UNREACHABLE_TAINT, Some(300)),
                    toleration(UNREACHABLE_TAINT, Some(60))
                ],
                &taints
            ),
            Some("2026-11-23T10:01:00Z".parse().unwrap())
        );
        assert_eq!(
            eviction_time(&[toleration(UNREACHABLE_TAINT, None)], &taints),
            None
        );
        assert_eq!(
            eviction_time(&[toleration(NOT_READY_TAINT, Some(300))], &taints),
            Some(Timestamp::UNIX_EPOCH)
        );
    }
}
