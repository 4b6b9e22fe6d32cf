//! The Node object: registration with capacity, addresses and the not-ready taint; the Lease
//! heartbeat in kube-node-lease; status updates with the Ready condition from containerd's own
//! runtime and network conditions (as kubelet reports them).

pub mod api_balancer;
pub mod network;

use std::{collections::BTreeMap, time::Duration};

use flotilla_apimachinery::node_leases::NAMESPACE as LEASE_NAMESPACE;
use k8s_openapi::{
    api::{coordination::v1::Lease, core::v1::Node},
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{MicroTime, Time},
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::pods::cri::{Cri, api};

/// How often the Lease is renewed (kubelet's default).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// How often the node status is posted (kubelet's nodeStatusUpdateFrequency).
pub const STATUS_UPDATE: Duration = Duration::from_secs(10);
/// The taint a node carries until it is ready.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";

/// What the agent tells the API about its node.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    /// Node name.
    pub name: String,
    /// InternalIP.
    pub ip: String,
    /// Port of the kubelet API.
    pub kubelet_port: u16,
    /// Maximum pods.
    pub max_pods: u32,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
}

/// Errors talking to the API about the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// An API call failed.
    #[error("{action} node {node}: {source}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// The node.
        node: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
}

/// Whether the node can run pods, from containerd's conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// Ready or not.
    pub ready: bool,
    /// Why not, in kubelet's words.
    pub message: String,
}

/// Asks containerd whether its runtime and pod network are ready.
pub async fn readiness(cri: &Cri) -> Readiness {
    let status = cri
        .runtime
        .clone()
        .status(api::StatusRequest { verbose: false })
        .await;
    let conditions = match status {
        Ok(response) => response
            .into_inner()
            .status
            .map(|s| s.conditions)
            .unwrap_or_default(),
        Err(err) => {
            return Readiness {
                ready: false,
                message: format!("container runtime is down: {}", err.message()),
            };
        }
    };
    let failing: Vec<String> = conditions
        .iter()
        .filter(|c| !c.status)
        .map(|c| {
            if c.r#type == "NetworkReady" {
                format!(
                    "container runtime network not ready: NetworkReady=false reason:{} message:{}",
                    c.reason, c.message
                )
            } else {
                format!(
                    "container runtime not ready: {}=false reason:{} message:{}",
                    c.r#type, c.reason, c.message
                )
            }
        })
        .collect();
    Readiness {
        ready: failing.is_empty() && !conditions.is_empty(),
        message: failing.join("; "),
    }
}

fn conditions(readiness: &Readiness, previous: &[Value]) -> Value {
    // Serialised as every other `metav1.Time` the agent writes.
    let now = json!(Time(Timestamp::now()));
    let not_ready = (!readiness.ready).then_some(readiness.message.as_str());
    flotilla_apimachinery::node_conditions::node_conditions(
        not_ready,
        previous,
        now.as_str().unwrap_or_default(),
    )
}

/// Capacity (= allocatable) of this machine: CPUs, memory, pods and ephemeral storage.
pub fn capacity(max_pods: u32) -> std::collections::BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    [
        ("cpu", cpus.to_string()),
        ("memory", format!("{memory_kib}Ki")),
        ("pods", max_pods.to_string()),
        ("ephemeral-storage", "10Gi".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), Quantity(value)))
    .collect()
}

fn node_info(runtime_version: &str) -> Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let os_image = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| "Linux".into());
    let machine_id = std::fs::read_to_string("/etc/machine-id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    json!({"kubeletVersion": concat!("v1.33.0-flotilla-", env!("CARGO_PKG_VERSION")),
           "kubeProxyVersion": "", "containerRuntimeVersion": runtime_version,
           "operatingSystem": "linux", "architecture": "amd64", "osImage": os_image,
           "kernelVersion": kernel, "machineID": machine_id, "systemUUID": machine_id, "bootID": boot_id})
}

/// The status fields the agent owns.
fn status(
    identity: &NodeIdentity,
    runtime_version: &str,
    readiness: &Readiness,
    previous: &[Value],
) -> Value {
    let capacity = capacity(identity.max_pods);
    json!({
        "capacity": capacity, "allocatable": capacity,
        "conditions": conditions(readiness, previous),
        "addresses": [{"type": "InternalIP", "address": identity.ip}, {"type": "Hostname", "address": identity.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": identity.kubelet_port}},
        "nodeInfo": node_info(runtime_version),
    })
}

/// Registers the node (or takes over an existing registration) and its Lease; returns the Node
/// as stored (with the podCIDR the control plane allocated).
pub async fn register(
    client: &Client,
    identity: &NodeIdentity,
    runtime_version: &str,
    readiness: &Readiness,
) -> Result<Node, NodeError> {
    let fail = |action| {
        let node = identity.name.clone();
        move |source| NodeError::Api {
            action,
            node,
            source,
        }
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = identity.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), identity.name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert("kubernetes.io/arch".into(), "amd64".into());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": identity.name, "labels": labels},
        // Not schedulable until the first ready status, as kubelet registers.
        "spec": {"taints": [{"key": NOT_READY_TAINT, "effect": "NoSchedule"}]},
        "status": status(identity, runtime_version, &Readiness { ready: false, message: readiness.message.clone() }, &[]),
    }))
    .map_err(|err| fail("building")(kube::Error::SerdeError(err)))?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // Registered before (agent restart): keep its spec, refresh labels and status.
            nodes
                .patch(
                    &identity.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": labels}})),
                )
                .await
                .map_err(fail("labelling"))?;
        }
        Err(err) => return Err(fail("registering")(err)),
    }
    post_status(client, identity, runtime_version, readiness).await?;
    let created = nodes.get(&identity.name).await.map_err(fail("reading"))?;
    ensure_lease(client, &created)
        .await
        .map_err(fail("creating the Lease of"))?;
    Ok(created)
}

/// Posts the node's status (conditions with a fresh heartbeat).
pub async fn post_status(
    client: &Client,
    identity: &NodeIdentity,
    runtime_version: &str,
    readiness: &Readiness,
) -> Result<(), NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let previous: Vec<Value> = match nodes.get_status(&identity.name).await {
        Ok(node) => node
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    nodes
        .patch_status(
            &identity.name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": status(identity, runtime_version, readiness, &previous)}),
            ),
        )
        .await
        .map_err(|source| NodeError::Api {
            action: "posting the status of",
            node: identity.name.clone(),
            source,
        })?;
    Ok(())
}

async fn ensure_lease(client: &Client, node: &Node) -> Result<(), kube::Error> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": LEASE_NAMESPACE, "ownerReferences": [{
            "apiVersion": "v1", "kind": "Node", "name": name, "uid": node.metadata.uid,
        }]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": MicroTime(Timestamp::now())},
    }))
    .map_err(kube::Error::SerdeError)?;
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => renew_lease(client, &name).await,
        Err(err) => Err(err),
    }
}

async fn renew_lease(client: &Client, node: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    leases
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewTime": MicroTime(Timestamp::now())}})),
        )
        .await
        .map(|_| ())
}

/// Renews the Lease every 10 s and posts the status every 10 s (at once when readiness
/// changes), until dropped.
pub async fn heartbeat(client: Client, identity: NodeIdentity, cri: Cri, runtime_version: String) {
    let mut lease = tokio::time::interval(LEASE_RENEW);
    let mut status = tokio::time::interval(Duration::from_secs(1));
    let mut last: Option<Readiness> = None;
    let mut last_post = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = lease.tick() => {
                if let Err(err) = renew_lease(&client, &identity.name).await {
                    tracing::warn!("renewing the node Lease: {err}");
                }
            }
            _ = status.tick() => {
                let now = readiness(&cri).await;
                let changed = last.as_ref() != Some(&now);
                if changed || last_post.elapsed() >= STATUS_UPDATE {
                    match post_status(&client, &identity, &runtime_version, &now).await {
                        Ok(()) => {
                            if changed {
                                tracing::info!(ready = now.ready, "node status: {}", if now.ready { "ready" } else { now.message.as_str() });
                            }
                            last = Some(now);
                            last_post = tokio::time::Instant::now();
                        }
                        Err(err) => tracing::warn!("{err}"),
                    }
                }
            }
        }
    }
}
