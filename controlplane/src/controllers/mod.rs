//! Workload controllers, each a kube-runtime `Controller` against our own API server:
//! level-triggered reconcilers that read the current state and converge on the spec.

pub mod deployment;
pub mod endpoints;
pub mod node_lifecycle;
pub mod replicaset;

use std::{fmt::Debug, sync::Arc, time::Duration};

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Pod;
use kube::{Client, runtime::controller::Action};

/// Settings of the controllers that have any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Settings {
    /// Node health and eviction.
    pub node_lifecycle: node_lifecycle::Settings,
}

/// Runs every controller until the task is dropped.
pub async fn run(client: Client, settings: Settings) {
    tokio::join!(
        replicaset::run(client.clone()),
        deployment::run(client.clone()),
        endpoints::run(client.clone()),
        node_lifecycle::run(client, settings.node_lifecycle),
    );
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

/// Writes an Event about `involved` (an object reference as JSON); failures are only logged,
/// as events are best effort upstream too.
pub async fn record_event(
    client: &Client,
    involved: &serde_json::Value,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let name = involved["name"].as_str().unwrap_or_default();
    let namespace = involved["namespace"].as_str().unwrap_or("default");
    let now = crate::apiserver::meta::now();
    let event = serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": format!("{name}."), "namespace": namespace},
        "involvedObject": involved,
        "type": kind, "reason": reason, "message": message,
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    });
    let events: kube::Api<k8s_openapi::api::core::v1::Event> =
        kube::Api::namespaced(client.clone(), namespace);
    let Ok(event) = serde_json::from_value(event) else {
        return;
    };
    if let Err(err) = events.create(&Default::default(), &event).await {
        tracing::debug!("recording an event failed: {err}");
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
pub fn retry_later<K>(_object: Arc<K>, err: &ReconcileError, _ctx: Arc<Context>) -> Action {
    tracing::warn!("{err}");
    Action::requeue(Duration::from_secs(5))
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
