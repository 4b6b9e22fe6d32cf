//! Scheduler throughput and latency with 1,000 simulated nodes and 10,000 pods (both
//! adjustable), in the style of upstream's scheduler_perf:
//! - backlog: all pods are created first with no scheduler running, then the scheduler starts
//!   and drains them; pods/s is what the scheduler alone sustains.
//! - steady: the same number of pods again, created as fast as the API server takes them while
//!   the scheduler runs; latency is from the create call returning to the watch showing the pod
//!   bound, p50/p99.
//!
//! Every node is a hollow node that registers and heartbeats its Lease every 10 s, so the API
//! server carries a real cluster's heartbeat load; like scheduler_perf's nodes they do not report
//! pod status (that is the pod startup benchmark's business).
//! The reference is kube-scheduler's published ~100 pods/s at 5,000 nodes; Flotilla's goal is
//! 10x that.
//!
//! Run: `cargo xtask bench scheduler [--nodes N] [--pods N]`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmark code: a failed step should stop the run"
)]

// The same allocator as the flotilla-controlplane binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use flotilla_controlplane::{
    etcd::free_port,
    hollow::{HollowNodes, NodeShape, PodReports},
    ipam::Cidr,
    run::{Config, ControlPlane},
};
use futures::{StreamExt as _, stream};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::{
    Api, Client,
    api::PostParams,
    runtime::{WatchStreamExt as _, watcher},
};

/// kube-scheduler's published throughput at 5,000 nodes.
const UPSTREAM_PODS_PER_SECOND: f64 = 100.0;
const CREATORS: usize = 32;
/// Bound on each phase.
const PHASE_LIMIT: Duration = Duration::from_secs(900);

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|arg| arg != name)
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn pod(i: usize) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("pod-{i:05}"), "labels": {"app": "bench"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": format!("rs-{}", i % 100), "uid": format!("bench-rs-{}", i % 100)}]},
        "spec": {"containers": [{"name": "c", "image": "flotilla/testapp:v1",
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    }))
    .unwrap()
}

/// When each pod was first seen bound, by name.
type Bound = Arc<Mutex<HashMap<String, Instant>>>;

/// Watches the namespace's pods and records when each one is first seen with a node.
fn watch_bindings(client: Client, namespace: &str) -> (Bound, tokio::task::JoinHandle<()>) {
    let bound: Bound = Arc::default();
    let seen = bound.clone();
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let task = tokio::spawn(
        watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .for_each(move |pod| {
                if let Ok(pod) = pod
                    && pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_ref())
                        .is_some()
                {
                    seen.lock()
                        .unwrap()
                        .entry(pod.metadata.name.unwrap_or_default())
                        .or_insert_with(Instant::now);
                }
                futures::future::ready(())
            }),
    );
    (bound, task)
}

/// Creates `count` pods with `CREATORS` in flight; returns when each create returned.
async fn create_pods(client: &Client, namespace: &str, count: usize) -> HashMap<String, Instant> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    stream::iter(0..count)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod = pod(i);
                let name = pod.metadata.name.clone().unwrap();
                pods.create(&PostParams::default(), &pod).await.unwrap();
                (name, Instant::now())
            }
        })
        .buffer_unordered(CREATORS)
        .collect()
        .await
}

async fn wait_bound(bound: &Bound, count: usize, started: Instant) -> Instant {
    while bound.lock().unwrap().len() < count {
        assert!(
            started.elapsed() < PHASE_LIMIT,
            "only {} of {count} pods were bound within {PHASE_LIMIT:?}",
            bound.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bound.lock().unwrap().values().copied().max().unwrap()
}

async fn namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let nodes = arg("--nodes", 1000);
    let pods = arg("--pods", 10_000);
    anyhow::ensure!(
        nodes >= 1 && pods >= 1,
        "--nodes and --pods: at least 1 each"
    );
    let dir = tempfile::tempdir()?;
    let config = Config {
        etcd_ports: (free_port()?, free_port()?),
        // 1,000 nodes need more /24s than 10.244.0.0/16 has.
        cluster_cidr: Cidr {
            network: std::net::Ipv4Addr::new(100, 64, 0, 0),
            prefix: 10,
        },
        control_loops: false,
        ..Config::new(
            dir.path().join("state"),
            format!("127.0.0.1:{}", free_port()?).parse()?,
        )
    };
    let control_plane = ControlPlane::start(config).await?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&control_plane.kubeconfig)?;
    let client = Client::try_from(
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?,
    )?;

    let started = Instant::now();
    let names: Vec<String> = (0..nodes).map(|i| format!("hollow-{i:04}")).collect();
    let shape = NodeShape {
        cpu: "32".into(),
        memory: "128Gi".into(),
        pods: 110,
        ..NodeShape::default()
    };
    let _fleet = HollowNodes::start(client.clone(), names, &shape, PodReports::None).await?;
    println!(
        "registered {nodes} hollow nodes in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Backlog: everything pending before the scheduler starts.
    namespace(&client, "backlog").await;
    let (bound, watch) = watch_bindings(client.clone(), "backlog");
    let started = Instant::now();
    create_pods(&client, "backlog", pods).await;
    let created_in = started.elapsed();
    println!(
        "created {pods} pods in {:.1} s ({:.0} pods/s through the API server)",
        created_in.as_secs_f64(),
        pods as f64 / created_in.as_secs_f64()
    );
    let scheduler_started = Instant::now();
    let scheduler = tokio::spawn(flotilla_controlplane::scheduler::run(client.clone()));
    let last = wait_bound(&bound, pods, scheduler_started).await;
    watch.abort();
    let drain = last.duration_since(scheduler_started);
    let backlog_rate = pods as f64 / drain.as_secs_f64();

    // Steady: pods arrive while the scheduler runs.
    namespace(&client, "steady").await;
    let (bound, watch) = watch_bindings(client.clone(), "steady");
    let started = Instant::now();
    let created = create_pods(&client, "steady", pods).await;
    let last = wait_bound(&bound, pods, started).await;
    watch.abort();
    scheduler.abort();
    let bound = bound.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = created
        .iter()
        .map(|(name, at)| bound[name].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    // Every pod created in the steady phase has its latency, or the percentiles describe others.
    anyhow::ensure!(
        latencies.len() == pods,
        "the steady phase timed {} of {pods} pods",
        latencies.len()
    );
    let steady_rate = pods as f64 / last.duration_since(started).as_secs_f64();

    println!();
    println!("scheduler, {nodes} nodes, {pods} pods");
    println!(
        "  backlog drained in {:>7.2} s  {:>8.0} pods/s  = {:.1}x kube-scheduler's published {UPSTREAM_PODS_PER_SECOND:.0} pods/s",
        drain.as_secs_f64(),
        backlog_rate,
        backlog_rate / UPSTREAM_PODS_PER_SECOND
    );
    println!(
        "  steady arrival         {:>8.0} pods/s (creation and binding together) = {:.1}x",
        steady_rate,
        steady_rate / UPSTREAM_PODS_PER_SECOND
    );
    println!(
        "  create -> bound latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    control_plane.stop().await;
    Ok(())
}
