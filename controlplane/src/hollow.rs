//! Simulated nodes, like kubemark's hollow nodes: each registers a Node, renews its Lease in
//! kube-node-lease every 10 s and reports the pods bound to it Running and Ready (and finishes
//! their graceful deletion), without running anything. Tests and benchmarks use them so that
//! hundreds of nodes fit on one machine; the real agent does the same work against containerd.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use flotilla_apimachinery::node_leases;
use futures::StreamExt as _;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Node, core::v1::Pod};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
    runtime::{WatchStreamExt as _, watcher},
};
use serde_json::json;

use crate::apiserver::meta::now;

/// How often a node renews its Lease by default (the kubelet's default).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// Status writes in flight at once for all simulated nodes together.
const PARALLEL_REPORTS: usize = 32;

/// What each simulated node offers, and how often it heartbeats.
#[derive(Debug, Clone)]
pub struct NodeShape {
    /// How often the Lease is renewed (must stay well under the node monitor grace period).
    pub lease_renew: Duration,
    /// Allocatable CPU (a quantity, e.g. "4").
    pub cpu: String,
    /// Allocatable memory (a quantity, e.g. "16Gi").
    pub memory: String,
    /// Maximum pods.
    pub pods: u32,
}

impl Default for NodeShape {
    fn default() -> Self {
        Self {
            lease_renew: LEASE_RENEW,
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
        }
    }
}

/// Whether simulated nodes act on the pods bound to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodReports {
    /// Report pods Running and Ready, and finish their deletion (a kubelet that runs nothing).
    Running,
    /// Only heartbeat (as upstream's scheduler_perf nodes, which have no kubelet at all).
    None,
}

/// A set of running simulated nodes; dropping it stops them all.
pub struct HollowNodes {
    client: Client,
    names: Vec<String>,
    /// Nodes that stopped heartbeating and reporting (a simulated loss).
    silenced: Arc<Mutex<HashSet<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Errors starting simulated nodes.
#[derive(Debug, thiserror::Error)]
#[error("registering simulated node {node}: {source}")]
pub struct HollowError {
    node: String,
    #[source]
    source: kube::Error,
}

impl HollowNodes {
    /// Registers the nodes (with their Leases) and starts heartbeating and reporting pods.
    pub async fn start(
        client: Client,
        names: Vec<String>,
        shape: &NodeShape,
        reports: PodReports,
    ) -> Result<Self, HollowError> {
        let registered: Vec<Result<(), HollowError>> = futures::stream::iter(names.iter())
            .map(|name| register(&client, name, shape))
            .buffer_unordered(PARALLEL_REPORTS)
            .collect()
            .await;
        registered.into_iter().collect::<Result<Vec<()>, _>>()?;
        let silenced = Arc::new(Mutex::new(HashSet::new()));
        let mut tasks = vec![tokio::spawn(heartbeat(
            client.clone(),
            names.clone(),
            shape.lease_renew,
            silenced.clone(),
        ))];
        if reports == PodReports::Running {
            tasks.push(tokio::spawn(report_pods(
                client.clone(),
                names.iter().cloned().collect(),
                silenced.clone(),
            )));
        }
        Ok(Self {
            client,
            names,
            silenced,
            tasks,
        })
    }

    /// The node names.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Stops `node`'s heartbeats and pod reports, as if it lost power or its network.
    pub fn silence(&self, node: &str) {
        self.silenced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.to_owned());
    }

    /// Brings a silenced node back: it renews its Lease, posts a Ready status again and, as a
    /// restarted kubelet does, finishes the deletions that were requested while it was away.
    pub async fn resume(&self, node: &str) -> Result<(), kube::Error> {
        self.silenced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(node);
        renew(&self.client, node).await?;
        let pods: Api<Pod> = Api::all(self.client.clone());
        let list = pods.list(&kube::api::ListParams::default()).await?;
        for pod in list.items.iter().filter(|p| {
            p.metadata.deletion_timestamp.is_some()
                && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
        }) {
            remove_pod(&self.client, pod).await?;
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .patch_status(
                node,
                &PatchParams::default(),
                &Patch::Strategic(json!({"status": {"conditions": ready_conditions()}})),
            )
            .await?;
        Ok(())
    }
}

impl Drop for HollowNodes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn ready_conditions() -> serde_json::Value {
    flotilla_apimachinery::node_conditions::node_conditions(None, &[], &now())
}

async fn register(client: &Client, name: &str, shape: &NodeShape) -> Result<(), HollowError> {
    let fail = |source| HollowError {
        node: name.to_owned(),
        source,
    };
    let resources =
        json!({"cpu": shape.cpu, "memory": shape.memory, "pods": shape.pods.to_string()});
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64", "flotilla.dev/hollow": "true",
        }},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": ready_conditions(),
            // TEST-NET-1: documentation addresses that no traffic ever goes to.
            "addresses": [{"type": "InternalIP", "address": "192.0.2.1"}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"kubeletVersion": "v1.33.0-flotilla-hollow", "containerRuntimeVersion": "hollow://0",
                         "operatingSystem": "linux", "architecture": "amd64", "osImage": "hollow",
                         "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
        },
    }))
    .map_err(|err| fail(kube::Error::SerdeError(err)))?;
    let nodes: Api<Node> = Api::all(client.clone());
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => return Err(fail(err)),
    }
    let created = nodes.get(name).await.map_err(fail)?;
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": node_leases::NAMESPACE, "ownerReferences": [{
            "apiVersion": "v1", "kind": "Node", "name": name, "uid": created.metadata.uid,
        }]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
    }))
    .map_err(|err| fail(kube::Error::SerdeError(err)))?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), node_leases::NAMESPACE);
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            renew(client, name).await.map_err(fail)
        }
        Err(err) => Err(fail(err)),
    }
}

/// Leases carry MicroTime: RFC 3339 with microseconds.
fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

async fn renew(client: &Client, node: &str) -> Result<(), kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), node_leases::NAMESPACE);
    leases
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewTime": micro_now()}})),
        )
        .await
        .map(|_| ())
}

/// Renews every live node's Lease once per `period`, spread evenly over the period.
async fn heartbeat(
    client: Client,
    names: Vec<String>,
    period: Duration,
    silenced: Arc<Mutex<HashSet<String>>>,
) {
    if names.is_empty() {
        return;
    }
    let step = period / u32::try_from(names.len()).unwrap_or(u32::MAX);
    let mut tick = tokio::time::interval(step.max(Duration::from_millis(1)));
    for name in names.iter().cycle() {
        tick.tick().await;
        let lost = silenced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name);
        if lost {
            continue;
        }
        let client = client.clone();
        let name = name.clone();
        // Renewals run on their own tasks so one slow request does not delay the others.
        tokio::spawn(async move {
            if let Err(err) = renew(&client, &name).await {
                tracing::debug!(node = %name, "lease renewal failed: {err}");
            }
        });
    }
}

/// What a simulated kubelet does with a pod event.
enum Work {
    /// Report the pod Running and Ready with this IP.
    Start(Arc<Pod>, Ipv4Addr),
    /// Finish its graceful deletion.
    Remove(Arc<Pod>),
}

/// Watches all pods and acts as the kubelet for those bound to our nodes.
async fn report_pods(
    client: Client,
    nodes: HashSet<String>,
    silenced: Arc<Mutex<HashSet<String>>>,
) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut next_ip: HashMap<String, u32> = HashMap::new();
    let mut node_cidrs: HashMap<String, Ipv4Addr> = HashMap::new();
    let mut started: HashSet<String> = HashSet::new();
    let work = watcher(pods, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .filter_map(|pod| futures::future::ready(pod.ok()))
        .filter_map(|pod| {
            let node = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.clone())
                .filter(|n| nodes.contains(n));
            let lost = node.as_ref().is_some_and(|n| {
                silenced
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(n)
            });
            let decision = match node {
                Some(_) if lost => None,
                Some(_) if pod.metadata.deletion_timestamp.is_some() => {
                    Some(Work::Remove(Arc::new(pod)))
                }
                Some(node) => {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                    if started.contains(&uid)
                        || matches!(phase, Some("Running" | "Succeeded" | "Failed"))
                    {
                        None
                    } else {
                        started.insert(uid);
                        let ip = pod_ip(&node, &mut next_ip, &mut node_cidrs);
                        Some(Work::Start(Arc::new(pod), ip))
                    }
                }
                None => None,
            };
            futures::future::ready(decision)
        });
    work.for_each_concurrent(PARALLEL_REPORTS, |work| {
        let client = client.clone();
        async move {
            let result = match &work {
                Work::Start(pod, ip) => start_pod(&client, pod, *ip).await,
                Work::Remove(pod) => remove_pod(&client, pod).await,
            };
            if let Err(err) = result {
                tracing::debug!("simulated kubelet: {err}");
            }
        }
    })
    .await;
}

/// A fake but plausible pod IP: counting up inside a per-node block of 10.255.0.0/16.
fn pod_ip(
    node: &str,
    next_ip: &mut HashMap<String, u32>,
    blocks: &mut HashMap<String, Ipv4Addr>,
) -> Ipv4Addr {
    let count = blocks.len();
    let block = *blocks.entry(node.to_owned()).or_insert_with(|| {
        let index = u32::try_from(count).unwrap_or(0) % 256;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 255, 0, 0)) + (index << 8))
    });
    let next = next_ip.entry(node.to_owned()).or_insert(2);
    let ip = Ipv4Addr::from(u32::from(block) + *next);
    *next = if *next >= 254 { 2 } else { *next + 1 };
    ip
}

async fn start_pod(client: &Client, pod: &Pod, ip: Ipv4Addr) -> Result<(), kube::Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let now = now();
    let containers: Vec<serde_json::Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            json!({"name": c.name, "image": c.image, "imageID": c.image, "ready": true,
                   "started": true, "restartCount": 0,
                   "containerID": format!("hollow://{name}-{}", c.name),
                   "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now, "lastProbeTime": null});
    let status = json!({"status": {
        "phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
        "hostIP": "192.0.2.1", "hostIPs": [{"ip": "192.0.2.1"}], "startTime": now,
        "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"),
                       condition("ContainersReady"), condition("Ready"), condition("PodScheduled")],
        "containerStatuses": containers,
    }});
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map(|_| ())
}

async fn remove_pod(client: &Client, pod: &Pod) -> Result<(), kube::Error> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}
