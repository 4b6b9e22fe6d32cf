//! Workload controllers, each a kube-runtime `Controller` against our own API server:
//! level-triggered reconcilers that read the current state and converge on the spec.

pub mod cronjob;
pub mod deployment;
pub mod endpoints;
pub mod job;
pub mod replicaset;

use std::{fmt::Debug, sync::Arc, time::Duration};

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, Resource, api::PostParams, runtime::controller::Action};
use serde_json::json;

/// Runs every controller until the task is dropped.
pub async fn run(client: Client) {
    tokio::join!(
        replicaset::run(client.clone()),
        deployment::run(client.clone()),
        job::run(client.clone()),
        cronjob::run(client.clone()),
        endpoints::run(client)
    );
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
pub fn retry_later<K>(_object: Arc<K>, err: &ReconcileError, _ctx: Arc<Context>) -> Action {
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
