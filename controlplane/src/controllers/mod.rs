//! Workload controllers, each a kube-runtime `Controller` against our own API server:
//! level-triggered reconcilers that read the current state and converge on the spec.

pub mod bootstrap_tokens;
pub mod certificates;
pub mod clusterrole_aggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod garbage_collector;
pub mod history;
pub mod job;
pub mod loadbalancer_ipam;
pub mod namespace_defaults;
pub mod node_lifecycle;
pub mod persistent_volume;
pub mod replicaset;
pub mod statefulset;
pub mod volume_protection;

use std::{fmt::Debug, sync::Arc, time::Duration};

use futures::{FutureExt as _, Stream, StreamExt as _};
use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        core::v1::{Pod, ReplicationController},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::{
    Api, Client, Resource,
    api::PostParams,
    runtime::{WatchStreamExt as _, controller::Action, reflector, watcher},
};
use serde_json::json;

/// Settings of the controllers that have any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// Node health and eviction.
    pub node_lifecycle: node_lifecycle::Settings,
    /// The garbage collector's sweep.
    pub garbage_collector: garbage_collector::Settings,
}

/// Runs every controller until the task is dropped; `ca` is the cluster CA: each namespace's
/// `kube-root-ca.crt` carries its certificate, the CSR signers sign with it, and
/// `kube-public/cluster-info` publishes it with `server`, the API server's URL. Services of
/// type LoadBalancer get addresses from `loadbalancer_pool` (`--loadbalancer-pool`), if it has
/// any.
pub async fn run(
    client: Client,
    settings: Settings,
    loadbalancer_pool: Vec<crate::ipam::AddressRange>,
    ca: certificates::ClusterCa,
    server: String,
) {
    let loadbalancer_ipam = {
        let client = client.clone();
        async move {
            if !loadbalancer_pool.is_empty() {
                loadbalancer_ipam::run(client, loadbalancer_pool).await;
            }
        }
    };
    tokio::join!(
        bootstrap_tokens::run(client.clone(), server, ca.cert.clone()),
        replicaset::run::<ReplicaSet>(client.clone()),
        replicaset::run::<ReplicationController>(client.clone()),
        deployment::run(client.clone()),
        daemonset::run(client.clone()),
        statefulset::run(client.clone()),
        job::run(client.clone()),
        cronjob::run(client.clone()),
        endpoints::run(client.clone()),
        disruption::run(client.clone()),
        loadbalancer_ipam,
        node_lifecycle::run(client.clone(), settings.node_lifecycle),
        persistent_volume::run(client.clone()),
        volume_protection::run(client.clone()),
        clusterrole_aggregation::run(client.clone()),
        namespace_defaults::run(client.clone(), ca.cert.clone()),
        certificates::run(client.clone(), ca),
        garbage_collector::run(client, settings.garbage_collector),
    );
}

/// Drives the watches until `ready` (every store listed once).
pub async fn watch_until<S: Stream<Item = ()> + Unpin>(changes: &mut S, ready: impl Future) {
    let mut ready = std::pin::pin!(ready);
    loop {
        tokio::select! {
            _ = &mut ready => return,
            Some(()) = changes.next() => {}
        }
    }
}

/// Waits for the reason of the next pass: a burst of changes (taken whole, so a burst is one
/// pass) or the resync tick.
pub async fn next_pass<S: Stream<Item = ()> + Unpin>(
    changes: &mut S,
    resync: &mut tokio::time::Interval,
) {
    tokio::select! {
        Some(()) = changes.next() => {
            while let Some(Some(())) = changes.next().now_or_never() {}
        }
        _ = resync.tick() => {}
    }
}

/// A watch feeding `writer`, as a stream of "something changed".
pub fn reflect<K>(
    writer: reflector::store::Writer<K>,
    api: Api<K>,
) -> futures::stream::BoxStream<'static, ()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .map(|_| ())
        .boxed()
}

/// Aborts background tasks (reflector drivers) when their owner stops.
pub struct AbortOnDrop(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Records an Event about `object` from the controller `component`, like upstream's event
/// recorder; failures are only logged, as an Event is never worth failing a reconcile for.
pub async fn record_event<K: Resource<DynamicType = ()>>(
    client: &Client,
    object: &K,
    component: &str,
    (type_, reason, message): (&str, &str, &str),
) {
    let meta = object.meta();
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let now = crate::apiserver::meta::now();
    let event = json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": namespace},
        "involvedObject": {
            "apiVersion": K::api_version(&()), "kind": K::kind(&()), "name": name,
            "namespace": namespace, "uid": meta.uid, "resourceVersion": meta.resource_version,
        },
        "type": type_, "reason": reason, "message": message,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let Ok(event) = serde_json::from_value::<k8s_openapi::api::core::v1::Event>(event) else {
        return;
    };
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(client.clone(), &namespace);
    if let Err(err) = events.create(&PostParams::default(), &event).await {
        tracing::debug!("recording event {reason} about {name} failed: {err}");
    }
}

/// What every reconciler gets.
pub struct Context {
    /// A client of our API server.
    pub client: Client,
}

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
#[error("{kind} {namespace}/{name}: {source}")]
pub struct ReconcileError {
    kind: &'static str,
    namespace: String,
    name: String,
    #[source]
    source: kube::Error,
}

impl ReconcileError {
    /// Wraps API errors about the object `kind` `namespace/name`.
    pub fn about<'a>(
        kind: &'static str,
        namespace: &'a str,
        name: &'a str,
    ) -> impl Fn(kube::Error) -> Self + Copy + 'a {
        move |source| Self {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        }
    }
}

/// The shared error policy: log and retry in 5 s.
pub fn retry_later<K, C>(_object: Arc<K>, err: &ReconcileError, _ctx: Arc<C>) -> Action {
    tracing::warn!("{err}");
    Action::requeue(Duration::from_secs(5))
}

/// The longest a reconcile is put off. kube-runtime's scheduler panics on delays past about
/// two years (a leap-day schedule, a huge ttlSecondsAfterFinished), and waking early only
/// costs a reconcile that finds nothing due.
pub const MAX_REQUEUE: Duration = Duration::from_secs(24 * 60 * 60);

/// Reconcile again after `after`, at most [`MAX_REQUEUE`] from now.
pub fn requeue_within(after: Duration) -> Action {
    Action::requeue(after.min(MAX_REQUEUE))
}

/// Drives a controller's result stream, logging failed reconciles (they are retried).
pub async fn drive<T: Debug, E: std::fmt::Display>(
    name: &str,
    results: impl Stream<Item = Result<T, E>>,
) {
    results
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!("{name} reconcile: {err}");
            }
        })
        .await;
}

/// Whether the pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Whether the pod has been Ready for `min_ready_seconds` (upstream's `IsPodAvailable`), and if
/// it is Ready but not yet long enough, how long until it will be.
pub fn pod_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> (bool, Option<Duration>) {
    if !pod_ready(pod) {
        return (false, None);
    }
    if min_ready_seconds <= 0 {
        return (true, None);
    }
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0);
    let Some(since) = since else {
        // Ready without a transition time: nothing to wait from, as upstream treats it.
        return (
            false,
            Some(Duration::from_secs(u64::from(
                min_ready_seconds.unsigned_abs(),
            ))),
        );
    };
    let ready_for = now.duration_since(since).as_secs();
    let wanted = i64::from(min_ready_seconds);
    if ready_for >= wanted {
        (true, None)
    } else {
        (
            false,
            Some(Duration::from_secs((wanted - ready_for).unsigned_abs())),
        )
    }
}

/// Whether the object's controller reference (the one with `controller: true`) names `uid`.
pub fn controlled_by(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    uid: &str,
) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

/// Whether the pod has finished (Succeeded or Failed).
pub fn pod_finished(pod: &Pod) -> bool {
    crate::scheduler::predicates::terminal(pod)
}

/// A label selector in the query syntax (`a=b,c in (d,e),!f`) for list calls, or `None` (logged)
/// when it is invalid: upstream's controllers skip such an object until it changes rather than
/// act on a selector they cannot read (the API server's validation keeps these out).
pub fn selector_string(selector: &LabelSelector) -> Option<String> {
    match flotilla_apimachinery::selectors::LabelSelector::try_from(selector) {
        Ok(selector) => Some(selector.to_string()),
        Err(error) => {
            tracing::warn!("ignoring an object with an invalid label selector: {error}");
            None
        }
    }
}

/// An int-or-percent field as a count of `total` (upstream's `GetScaledValueFromIntOrPercent`).
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(text) => percent(text, total, round_up),
    }
}

/// `text` ("25%" or a bare number) as a count of `of`.
pub fn percent(text: &str, of: i32, round_up: bool) -> i32 {
    let Some(number) = text.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()) else {
        return text.parse().unwrap_or(0);
    };
    let product = number * i64::from(of);
    let value = if round_up {
        (product + 99) / 100
    } else {
        product / 100
    };
    i32::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_render_expressions() {
        let selector: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "old", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "Exists"},
            ],
        }))
        .unwrap();
        // Sorted by key, as LabelSelectorAsSelector(...).String() prints it.
        assert_eq!(
            selector_string(&selector).as_deref(),
            Some("app=web,!old,tier in (a,b),zone")
        );
        let invalid: LabelSelector = serde_json::from_value(json!({
            "matchExpressions": [{"key": "tier", "operator": "Near", "values": ["a"]}],
        }))
        .unwrap();
        assert_eq!(selector_string(&invalid), None);
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let pod: Pod = serde_json::from_value(json!({
            "status": {"conditions": [{"type": "Ready", "status": "True",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        }))
        .unwrap();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap();
        assert_eq!(
            pod_available(&pod, 0, at("2026-01-01T00:00:00Z")),
            (true, None)
        );
        assert_eq!(
            pod_available(&pod, 10, at("2026-01-01T00:00:04Z")),
            (false, Some(Duration::from_secs(6)))
        );
        assert_eq!(
            pod_available(&pod, 10, at("2026-01-01T00:00:10Z")),
            (true, None)
        );
        assert_eq!(
            pod_available(&Pod::default(), 0, at("2026-01-01T00:00:00Z")),
            (false, None)
        );
    }

    #[test]
    fn percentages_round_as_asked() {
        let pct = IntOrString::String("30%".into());
        assert_eq!(scaled_value(&pct, 5, true), 2);
        assert_eq!(scaled_value(&pct, 5, false), 1);
        assert_eq!(scaled_value(&IntOrString::Int(3), 5, true), 3);
    }
}
