//! API latency and throughput with N objects (default 10,000), against the Kubernetes SLO
//! (mutating API calls p99 <= 1 s) and against etcd itself, measured in the same run: the same
//! creates/gets/lists done directly on etcd through the storage layer are the baseline, so the
//! ratios show what the API server adds (HTTPS, auth, decoding, validation, encoding); then the
//! same operations in JSON and in protobuf side by side (`api/wire.rs`), as `system:masters`
//! against a user RBAC judges (`api/authorization.rs`), and through three control planes with
//! one etcd cluster against the one (`api/ha.rs`).
//!
//! Run: `cargo xtask bench api [--objects N]` (or `cargo bench -p flotilla-controlplane --bench api`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

#[path = "api/authorization.rs"]
mod authorization;
#[path = "api/ha.rs"]
mod ha;
#[path = "api/wire.rs"]
mod wire;

// The same allocator as the flotilla-controlplane binary, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use flotilla_controlplane::{
    etcd::free_port,
    run::{Config, ControlPlane},
    storage::Store,
};
use futures::{StreamExt as _, TryStreamExt as _, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::{
    Api,
    api::{ListParams, PostParams, WatchEvent, WatchParams},
};

const CONCURRENCY: usize = 32;

/// Service creates timed at each size.
const SERVICE_SAMPLE: usize = 300;

fn service(i: usize) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("svc-{i:05}")},
        "spec": {"selector": {"app": format!("app-{i}")}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    .unwrap_or_default()
}

struct Sample {
    name: &'static str,
    /// How many operations the run asked for.
    requested: usize,
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Sample {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index.min(sorted.len() - 1)]
    }

    /// Why this sample cannot back a verdict: it timed nothing, or fewer operations than asked.
    fn shortfall(&self) -> Option<String> {
        (self.latencies.is_empty() || self.latencies.len() != self.requested).then(|| {
            format!(
                "{}: {} of {} timed",
                self.name,
                self.latencies.len(),
                self.requested
            )
        })
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

fn configmap(i: usize) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("bench-{i:05}"), "labels": {"bench": "api", "shard": (i % 10).to_string()}},
        "data": {"payload": "x".repeat(256)},
    }))
    .unwrap_or_default()
}

async fn timed<F, Fut>(name: &'static str, count: usize, op: F) -> anyhow::Result<Sample>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let latencies: Vec<Duration> = stream::iter(0..count)
        .map(|i| {
            let op = &op;
            async move {
                let t = Instant::now();
                op(i).await.map(|()| t.elapsed())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    Ok(Sample {
        name,
        requested: count,
        latencies,
        wall: started.elapsed(),
    })
}

/// Lists every ConfigMap `api` reaches, 500 per page.
async fn list_all(api: &Api<ConfigMap>) -> anyhow::Result<()> {
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.2}", duration.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let objects: usize = std::env::args()
        .skip_while(|arg| arg != "--objects")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .or_else(|| std::env::var("FLOTILLA_BENCH_OBJECTS").ok()?.parse().ok())
        .unwrap_or(10_000);
    anyhow::ensure!(objects >= 1, "--objects: at least 1");
    let dir = tempfile::tempdir()?;
    let etcd_port = free_port()?;
    let config = Config {
        etcd_ports: (etcd_port, free_port()?),
        ..Config::new(
            dir.path().join("state"),
            format!("127.0.0.1:{}", free_port()?).parse()?,
        )
    };
    let control_plane = ControlPlane::start(config).await?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&control_plane.kubeconfig)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?,
    )?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let store = Arc::new(
        Store::connect(
            &[format!("http://127.0.0.1:{etcd_port}")],
            Duration::from_secs(10),
        )
        .await?,
    );
    println!(
        "API benchmark: {objects} ConfigMaps (256 B payload), {CONCURRENCY} concurrent requests, one etcd member on loopback"
    );

    // Baseline: the same writes and reads straight on etcd (the storage layer, no HTTP).
    let etcd_create = timed("create", objects, |i| {
        let store = store.clone();
        async move {
            let object = serde_json::to_value(configmap(i))?;
            store
                .create(&format!("/bench/configmaps/default/bench-{i:05}"), &object)
                .await?;
            Ok(())
        }
    })
    .await?;
    let etcd_get = timed("get", objects.min(2000), |i| {
        let store = store.clone();
        async move {
            store
                .get(&format!(
                    "/bench/configmaps/default/bench-{:05}",
                    (i * 7919) % objects
                ))
                .await?;
            Ok(())
        }
    })
    .await?;
    let etcd_list = timed("list (500/page)", 5, |_| {
        let store = store.clone();
        async move {
            let mut token: Option<String> = None;
            loop {
                let page = store
                    .list("/bench/configmaps/default/", 500, token.as_deref())
                    .await?;
                token = page.continue_token;
                if token.is_none() {
                    return Ok(());
                }
            }
        }
    })
    .await?;

    // The API server.
    let api_create = timed("create", objects, |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &configmap(i)).await?;
            Ok(())
        }
    })
    .await?;
    let api_get = timed("get", objects.min(2000), |i| {
        let api = api.clone();
        async move {
            api.get(&format!("bench-{:05}", (i * 7919) % objects))
                .await?;
            Ok(())
        }
    })
    .await?;
    let api_list = timed("list (500/page)", 5, |_| {
        let api = api.clone();
        async move { list_all(&api).await }
    })
    .await?;
    let api_update = timed("update (merge patch)", objects.min(2000), |i| {
        let api = api.clone();
        async move {
            let patch = serde_json::json!({"data": {"round": i.to_string()}});
            api.patch(
                &format!("bench-{:05}", i % objects),
                &Default::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await?;
            Ok(())
        }
    })
    .await?;

    // Watch latency: from a create returning to its ADDED event arriving.
    let version = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut watch = api
        .watch(
            &WatchParams::default().labels("bench=watch").timeout(120),
            &version,
        )
        .await?
        .boxed();
    let watch_count = 500.min(objects);
    let mut watch_latencies = Vec::with_capacity(watch_count);
    let watch_started = Instant::now();
    for i in 0..watch_count {
        let mut object = configmap(objects + i);
        object.metadata.labels = Some([("bench".to_owned(), "watch".to_owned())].into());
        let t = Instant::now();
        api.create(&PostParams::default(), &object).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(10), watch.try_next()).await?? {
                Some(WatchEvent::Added(_)) => break,
                Some(_) => continue,
                None => anyhow::bail!("the watch ended early"),
            }
        }
        watch_latencies.push(t.elapsed());
    }
    let api_watch = Sample {
        name: "create -> watch event",
        requested: watch_count,
        latencies: watch_latencies,
        wall: watch_started.elapsed(),
    };

    // Service creates (each allocates a ClusterIP) with 0, 1,000 and `objects` Services
    // already there: a create must not cost more the more Services exist.
    let mut service_rows: Vec<(usize, Sample)> = Vec::new();
    let mut existing = 0;
    for before in [0, 1_000, objects] {
        if before < existing || service_rows.iter().any(|(b, _)| *b == before) {
            continue;
        }
        timed("service fill", before - existing, |i| {
            let services = services.clone();
            async move {
                services
                    .create(&PostParams::default(), &service(existing + i))
                    .await?;
                Ok(())
            }
        })
        .await?;
        let start = before;
        let sample = timed("service create", SERVICE_SAMPLE, |i| {
            let services = services.clone();
            async move {
                services
                    .create(&PostParams::default(), &service(start + i))
                    .await?;
                Ok(())
            }
        })
        .await?;
        existing = before + SERVICE_SAMPLE;
        service_rows.push((before, sample));
    }

    println!();
    println!(
        "{:<24} {:>10} {:>10} {:>12} | {:>10} {:>10} {:>12} | {:>9} {:>9}",
        "operation",
        "etcd p50",
        "etcd p99",
        "etcd ops/s",
        "API p50",
        "API p99",
        "API ops/s",
        "p99 ratio",
        "ops ratio"
    );
    for (etcd, api) in [
        (&etcd_create, &api_create),
        (&etcd_get, &api_get),
        (&etcd_list, &api_list),
    ] {
        println!(
            "{:<24} {:>10} {:>10} {:>12.0} | {:>10} {:>10} {:>12.0} | {:>8.1}x {:>8.2}x",
            api.name,
            ms(etcd.percentile(0.5)),
            ms(etcd.percentile(0.99)),
            etcd.throughput(),
            ms(api.percentile(0.5)),
            ms(api.percentile(0.99)),
            api.throughput(),
            api.percentile(0.99).as_secs_f64() / etcd.percentile(0.99).as_secs_f64().max(1e-9),
            api.throughput() / etcd.throughput().max(1e-9),
        );
    }
    for api in [&api_update, &api_watch] {
        println!(
            "{:<24} {:>10} {:>10} {:>12} | {:>10} {:>10} {:>12.0} |",
            api.name,
            "-",
            "-",
            "-",
            ms(api.percentile(0.5)),
            ms(api.percentile(0.99)),
            api.throughput()
        );
    }
    println!("(latencies in ms; list = a full paginated list of all {objects} objects)");
    println!();
    println!(
        "{:<34} {:>10} {:>10} {:>12} | {:>16}",
        "Service create (ClusterIP)", "p50", "p99", "ops/s", "ops/s vs at 0"
    );
    let at_zero = service_rows
        .first()
        .map_or(1.0, |(_, sample)| sample.throughput());
    for (before, sample) in &service_rows {
        println!(
            "{:<34} {:>10} {:>10} {:>12.0} | {:>15.2}x",
            format!("{SERVICE_SAMPLE} with {before} existing"),
            ms(sample.percentile(0.5)),
            ms(sample.percentile(0.99)),
            sample.throughput(),
            sample.throughput() / at_zero.max(1e-9),
        );
    }
    let list_ratio = wire::compare(&client, objects).await?;
    println!(
        "listing {objects} objects in protobuf takes {list_ratio:.2}x the JSON time (goal <= 0.60: {})",
        if list_ratio <= 0.6 { "met" } else { "MISSED" }
    );
    let authorization_ratio = authorization::compare(
        &client,
        &dir.path().join("state"),
        &format!("https://{}", control_plane.address),
        objects,
    )
    .await?;
    println!(
        "authorization costs {authorization_ratio:.2}x at p99 for a user RBAC judges (goal <= 1.10: {})",
        if authorization_ratio <= 1.10 {
            "met"
        } else {
            "MISSED"
        }
    );
    let ha_ratio = ha::compare(&client, objects).await?;
    println!(
        "three control planes' worst p99 is {ha_ratio:.2}x one's (goal <= 1.50: {})",
        if ha_ratio <= 1.5 { "met" } else { "MISSED" }
    );
    println!();

    let mutating: Vec<&Sample> = [&api_create, &api_update]
        .into_iter()
        .chain(service_rows.iter().map(|(_, sample)| sample))
        .collect();
    let shortfalls: Vec<String> = mutating.iter().filter_map(|s| s.shortfall()).collect();
    if !shortfalls.is_empty() {
        println!(
            "SLO (mutating calls p99 <= 1 s): no verdict, the run did not time every call it \
             counts: {}",
            shortfalls.join(", ")
        );
        control_plane.stop().await;
        anyhow::bail!("no SLO verdict: {}", shortfalls.join(", "));
    }
    let worst = mutating
        .iter()
        .map(|s| s.percentile(0.99))
        .max()
        .unwrap_or_default();
    let slo = Duration::from_secs(1);
    println!(
        "SLO (mutating calls p99 <= 1 s): worst mutating p99 {} ms -> {}",
        ms(worst),
        if worst <= slo { "met" } else { "MISSED" }
    );
    control_plane.stop().await;
    if worst > slo {
        anyhow::bail!("the mutating-call SLO was missed");
    }
    Ok(())
}
