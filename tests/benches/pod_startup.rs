//! Pod startup latency on one node (`cargo xtask bench pods`): how long a pod takes from being
//! bound to the node to Running, measured the way the Kubernetes pod-startup SLO is (watch
//! observation times, images already present), against a baseline measured in the same run: the
//! same pods started straight through containerd's CRI (sandbox with CNI, create, start) with no
//! orchestration at all. The SLO is p99 <= 5 s; Flotilla's goal is p99 <= 1 s. A third series
//! gives each pod a fresh claim of the default `local-path` class: its bound -> Running adds the
//! claim's mount (the scheduler binds the pod only once the node's agent has provisioned the
//! volume and the claim is bound, as upstream's volume binding does).
//!
//! Needs root (it builds a one-node local cluster in network namespaces of its own).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a failed step should stop it"
)]

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use flotilla_agent::pods::cri::{Cri, api};
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
    runtime::watcher::{self, Event},
};
use serde_json::json;
use support::LocalCluster;

const IMAGE: &str = "docker.io/flotilla/testapp:v1";

struct Options {
    pods: usize,
    /// Pods created per second (0: all at once).
    rate: f64,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        pods: 100,
        rate: 5.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pods" => options.pods = args.next().context("--pods N")?.parse()?,
            "--rate" => options.rate = args.next().context("--rate PODS_PER_SECOND")?.parse()?,
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}; use --pods N --rate R"),
        }
    }
    ensure!(
        (1..=100).contains(&options.pods),
        "--pods must be 1..=100 (one node runs at most 110 pods)"
    );
    Ok(options)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(name: &str, mut latencies: Vec<Duration>) -> (Duration, Duration) {
    if latencies.is_empty() {
        println!("{name:<44} n=0    nothing measured");
        return (Duration::ZERO, Duration::ZERO);
    }
    latencies.sort();
    let (p50, p90, p99) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
    );
    println!(
        "{name:<44} n={:<4} p50 {:>7.1} ms  p90 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        latencies.len(),
        p50.as_secs_f64() * 1e3,
        p90.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    (p50, p99)
}

/// Waits between creations to keep `rate` pods per second.
async fn pace(started: Instant, index: usize, rate: f64) {
    if rate > 0.0 {
        let due = started + Duration::from_secs_f64(index as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
    }
}

/// The baseline: the same pods started straight through CRI.
async fn direct_cri(cluster: &LocalCluster, options: &Options) -> anyhow::Result<Vec<Duration>> {
    let cri = Cri::connect(&cluster.node.dirs.containerd_socket())?;
    let log_dir = cluster.node.dirs.pod_logs().join("bench-direct");
    std::fs::create_dir_all(&log_dir)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..options.pods {
        pace(started, index, options.rate).await;
        let cri = cri.clone();
        let log_dir = log_dir.clone();
        let cgroup = format!("{}/direct{index}", cluster.node.cgroup_root);
        tasks.push(tokio::spawn(async move {
            let begin = Instant::now();
            let sandbox_config = api::PodSandboxConfig {
                metadata: Some(api::PodSandboxMetadata {
                    name: format!("direct-{index}"),
                    uid: format!("direct-uid-{index}"),
                    namespace: "bench".into(),
                    attempt: 0,
                }),
                hostname: format!("direct-{index}"),
                log_directory: log_dir.display().to_string(),
                linux: Some(api::LinuxPodSandboxConfig {
                    cgroup_parent: cgroup,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let sandbox = cri
                .runtime
                .clone()
                .run_pod_sandbox(api::RunPodSandboxRequest {
                    config: Some(sandbox_config.clone()),
                    runtime_handler: String::new(),
                })
                .await?
                .into_inner()
                .pod_sandbox_id;
            let container = cri
                .runtime
                .clone()
                .create_container(api::CreateContainerRequest {
                    pod_sandbox_id: sandbox.clone(),
                    config: Some(api::ContainerConfig {
                        metadata: Some(api::ContainerMetadata {
                            name: "app".into(),
                            attempt: 0,
                        }),
                        image: Some(api::ImageSpec {
                            image: IMAGE.into(),
                            ..Default::default()
                        }),
                        log_path: format!("direct-{index}.log"),
                        ..Default::default()
                    }),
                    sandbox_config: Some(sandbox_config),
                })
                .await?
                .into_inner()
                .container_id;
            cri.runtime
                .clone()
                .start_container(api::StartContainerRequest {
                    container_id: container,
                })
                .await?;
            anyhow::Ok((begin.elapsed(), sandbox))
        }));
    }
    let mut latencies = Vec::new();
    let mut sandboxes = Vec::new();
    for task in tasks {
        let (latency, sandbox) = task.await??;
        latencies.push(latency);
        sandboxes.push(sandbox);
    }
    for sandbox in sandboxes {
        let _ = cri
            .runtime
            .clone()
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: sandbox.clone(),
            })
            .await;
        let _ = cri
            .runtime
            .clone()
            .remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: sandbox,
            })
            .await;
    }
    Ok(latencies)
}

/// Flotilla: pods created through the API, bound by the scheduler, started by the agent; with
/// `claims`, each pod mounts a claim of its own made just before it.
async fn through_flotilla(
    cluster: &LocalCluster,
    options: &Options,
    namespace: &str,
    claims: bool,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let client = support::client(&cluster.cluster.kubeconfig).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    // Observation times from one watch, as the SLO measures them.
    let watch_pods = pods.clone();
    let total = options.pods;
    let observer = tokio::spawn(async move {
        let mut bound: HashMap<String, Instant> = HashMap::new();
        let mut running: HashMap<String, Instant> = HashMap::new();
        let mut created: HashMap<String, Instant> = HashMap::new();
        let mut stream = watcher::watcher(watch_pods, watcher::Config::default()).boxed();
        while running.len() < total {
            let Some(event) = stream.next().await else {
                break;
            };
            let now = Instant::now();
            if let Ok(Event::Apply(pod) | Event::InitApply(pod)) = event {
                let name = pod.metadata.name.clone().unwrap_or_default();
                created.entry(name.clone()).or_insert(now);
                if pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some()
                {
                    bound.entry(name.clone()).or_insert(now);
                }
                if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    running.entry(name).or_insert(now);
                }
            }
        }
        (created, bound, running)
    });
    let started = Instant::now();
    let mut created_at = HashMap::new();
    for index in 0..options.pods {
        pace(started, index, options.rate).await;
        let name = format!("pod-{index}");
        let mut pod = json!({
            "metadata": {"name": name, "labels": {"bench": "startup"}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "app", "image": IMAGE}],
            },
        });
        if claims {
            let claim: PersistentVolumeClaim = serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Mi"}}},
            }))?;
            claims_api.create(&PostParams::default(), &claim).await?;
            pod["spec"]["volumes"] =
                json!([{"name": "data", "persistentVolumeClaim": {"claimName": name}}]);
            pod["spec"]["containers"][0]["volumeMounts"] =
                json!([{"name": "data", "mountPath": "/data"}]);
        }
        let pod: Pod = serde_json::from_value(pod)?;
        created_at.insert(name, Instant::now());
        pods.create(&PostParams::default(), &pod).await?;
    }
    let (_, bound, running) = tokio::time::timeout(Duration::from_secs(300), observer)
        .await
        .context("not every pod was Running within 300 s")??;
    let mut bound_to_running = Vec::new();
    let mut create_to_running = Vec::new();
    for (name, running_at) in &running {
        if let Some(bound_at) = bound.get(name) {
            bound_to_running.push(running_at.saturating_duration_since(*bound_at));
        }
        if let Some(created) = created_at.get(name) {
            create_to_running.push(running_at.saturating_duration_since(*created));
        }
    }
    pods.delete_collection(&DeleteParams::default(), &Default::default())
        .await?;
    if claims {
        claims_api
            .delete_collection(&DeleteParams::default(), &Default::default())
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let left = pods.list(&Default::default()).await?.items.len()
            + claims_api.list(&Default::default()).await?.items.len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok((bound_to_running, create_to_running))
}

/// What containerd runs for a pod sandbox's network on `node`: the plugins of the first conflist
/// in its CNI conf dir (the one containerd takes), with that file's name.
fn cni_in_use(node: &support::LocalNode) -> anyhow::Result<String> {
    let dir = node.dirs.cni_conf_dir();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading the node's CNI conf dir {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "conflist"))
        .collect();
    files.sort();
    let first = files
        .first()
        .with_context(|| format!("no conflist in {}", dir.display()))?;
    let list: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(first)?)?;
    let plugins: Vec<&str> = list["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|plugin| plugin["type"].as_str())
        .collect();
    ensure!(!plugins.is_empty(), "{} names no plugin", first.display());
    Ok(format!(
        "{} (from {})",
        plugins.join(" + "),
        first.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// Series that hold fewer samples than pods were started, as "name: n of N".
fn shortfalls(series: &[(&str, usize)], requested: usize) -> Vec<String> {
    series
        .iter()
        .filter(|(_, measured)| *measured != requested)
        .map(|(name, measured)| format!("{name}: {measured} of {requested}"))
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    support::require_root();
    let started = Instant::now();
    let cluster = LocalCluster::start(started).await?;
    let rate = if options.rate > 0.0 {
        format!("{} pods/s", options.rate)
    } else {
        "all at once".to_owned()
    };
    println!(
        "pod startup on one node: {} pods, created {rate}, image present (testapp), CNI {} for \
         the sandboxes of both series",
        options.pods,
        cni_in_use(&cluster.node)?
    );
    let direct = direct_cri(&cluster, &options).await?;
    let (bound, created) = through_flotilla(&cluster, &options, "bench", false).await?;
    let (claimed, claimed_created) =
        through_flotilla(&cluster, &options, "bench-claims", true).await?;
    let missing = shortfalls(
        &[
            ("direct CRI", direct.len()),
            ("bound -> Running", bound.len()),
            ("created -> Running", created.len()),
            ("with a claim: bound -> Running", claimed.len()),
        ],
        options.pods,
    );
    let (_, direct_p99) = summary("baseline: direct CRI (sandbox+create+start)", direct);
    let (_, bound_p99) = summary("flotilla: bound -> Running (watch)", bound);
    summary("flotilla: created -> Running (watch)", created);
    let (_, claimed_p99) = summary(
        "flotilla, fresh local-path claim: bound -> Running",
        claimed,
    );
    summary(
        "flotilla, fresh local-path claim: created -> Running",
        claimed_created,
    );
    if !missing.is_empty() {
        println!(
            "no verdict: every series needs one sample per pod started, and {} (percentiles of \
             fewer pods would judge other pods than were started)",
            missing.join(", ")
        );
        cluster.shutdown().await;
        anyhow::bail!(
            "the run measured fewer pods than it started: {}",
            missing.join(", ")
        );
    }
    println!(
        "ratio flotilla/direct at p99: {:.2}x; p99 vs SLO 5 s: {:.2}x of budget; goal p99 <= 1 s: {}",
        bound_p99.as_secs_f64() / direct_p99.as_secs_f64().max(1e-9),
        bound_p99.as_secs_f64() / 5.0,
        if bound_p99 <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "with a fresh local-path claim: ratio to pods without one at p99: {:.2}x; goal p99 <= 1 s: {}",
        claimed_p99.as_secs_f64() / bound_p99.as_secs_f64().max(1e-9),
        if claimed_p99 <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
    cluster.shutdown().await;
    Ok(())
}
