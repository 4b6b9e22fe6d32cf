//! Events about pods, as kubelet records them (`kubectl describe pod` shows them), and about the
//! other objects the agent acts on (claims it provisions): written in the background so a slow
//! API server never holds up a pod.

use k8s_openapi::{
    api::core::v1::{Event, EventSource, ObjectReference, Pod},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};

/// Event type: Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

/// Records an event about `pod` (fire and forget; failures are logged at debug level).
pub fn record(client: &Client, node: &str, pod: &Pod, kind: Kind, reason: &str, message: String) {
    record_about(client, node, "kubelet", pod, kind, reason, message);
}

/// Records an event about any namespaced `object`, from `component` on this node.
pub fn record_about<K: kube::Resource<DynamicType = ()>>(
    client: &Client,
    node: &str,
    component: &str,
    object: &K,
    kind: Kind,
    reason: &str,
    message: String,
) {
    let meta = object.meta();
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let name = meta.name.clone().unwrap_or_default();
    let now = Time(Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            name: Some(name),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            ..Default::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(message),
        type_: Some(
            match kind {
                Kind::Normal => "Normal",
                Kind::Warning => "Warning",
            }
            .into(),
        ),
        source: Some(EventSource {
            component: Some(component.to_owned()),
            host: Some(node.to_owned()),
        }),
        reporting_component: Some(component.to_owned()),
        reporting_instance: Some(node.to_owned()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        ..Default::default()
    };
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    tokio::spawn(async move {
        if let Err(err) = events.create(&PostParams::default(), &event).await {
            tracing::debug!("recording an event: {err}");
        }
    });
}
