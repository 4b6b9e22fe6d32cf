//! The NetworkPolicy benchmark (`cargo xtask bench policy`): TCP_CRR (a new connection per
//! transaction, so every transaction is judged by the policy) from a client pod to
//! `flotilla-perf server` pods of a two-node local cluster: on each node one server that 1,000
//! NetworkPolicies select (each allowing the client on its own port, one of them on the
//! server's) and one that no policy selects. The machine is shared and noisy, so the two servers
//! of a path are measured in alternation, pair after pair, and the ratio is the median of the
//! pairs' ratios; an A/A round before the policies exist shows what the pair of pods alone
//! gives. Goal: 1,000 policies cost under 5% (ratio >= 0.95).
//!
//! Needs root. Options: `--duration D` per run (default 2s), `--policies N` (default 1000),
//! `--pairs N` measured pairs per path (default 5).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a failed step should stop it"
)]

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use flotilla_testbed::{
    Netns,
    perf::{self, ClientConfig, Test},
};
use support::{LocalCluster, eventually};

fn pods_manifest(node1: &str, node2: &str) -> String {
    let pod = |name: &str, node: &str, labels: &str, command: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
{labels}spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/flotilla/testapp:v1
    imagePullPolicy: Never
{command}"
        )
    };
    let server = "    command: [\"/bin/flotilla-perf\", \"server\"]\n";
    [
        pod("client", node1, "    role: client\n", ""),
        pod("selected-same", node1, "    role: server\n", server),
        pod("plain-same", node1, "    role: plain\n", server),
        pod("selected-cross", node2, "    role: server\n", server),
        pod("plain-cross", node2, "    role: plain\n", server),
    ]
    .join("---\n")
}

/// `count` policies selecting the servers: policy i allows the client on port 20000 + i, the
/// last one on the benchmark's port.
fn policies_manifest(count: usize) -> String {
    let mut out = String::new();
    for index in 0..count {
        let port = if index + 1 == count {
            perf::DEFAULT_PORT
        } else {
            20_000 + index as u16
        };
        let _ = write!(
            out,
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: bench-{index}
spec:
  podSelector:
    matchLabels:
      role: server
  ingress:
  - from:
    - podSelector:
        matchLabels:
          role: client
    ports:
    - port: {port}
---
"
        );
    }
    out
}

fn crr(client: &Netns, server: SocketAddr, duration: Duration) -> anyhow::Result<f64> {
    let config = ClientConfig::new(server, Test::TcpCrr).with_duration(duration);
    let report = client
        .run(|| perf::run_client(&config))?
        .with_context(|| format!("TCP_CRR to {server}"))?;
    ensure!(
        report.errors == 0 || report.transactions > 100 * report.errors,
        "TCP_CRR to {server}: {report}"
    );
    // A rate of nothing would make a ratio of 0 or infinity, and a verdict of it.
    ensure!(
        report.transactions > 0,
        "TCP_CRR to {server} completed no transaction in {duration:?}, so there is no rate to \
         compare: {report}"
    );
    Ok(report.transactions_per_s)
}

/// Rules programmed on `node` (all its endpoints).
fn programmed_rules(node: &str) -> anyhow::Result<usize> {
    let pins = flotilla_agent::datapath::pins::NodePins::new(node)?;
    Ok(flotilla_agent::datapath::policy::PolicyMaps::open(&pins)?
        .listing()?
        .rules
        .len())
}

/// Median of `values` (sorted in place).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// `pairs` alternating runs against `a` and `b` (a first, then b first, ...); the ratio b/a of
/// each pair, and the rates.
fn paired(
    client: &Netns,
    a: SocketAddr,
    b: SocketAddr,
    pairs: usize,
    duration: Duration,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let (mut ratios, mut rates_a, mut rates_b) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let (rate_a, rate_b) = if pair % 2 == 0 {
            let rate_a = crr(client, a, duration)?;
            (rate_a, crr(client, b, duration)?)
        } else {
            let rate_b = crr(client, b, duration)?;
            (crr(client, a, duration)?, rate_b)
        };
        ratios.push(rate_b / rate_a);
        rates_a.push(rate_a);
        rates_b.push(rate_b);
    }
    Ok((ratios, rates_a, rates_b))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut duration = Duration::from_secs(2);
    let mut count = 1000;
    let mut pairs = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                duration = perf::parse_duration(&args.next().context("--duration D")?)?;
            }
            "--policies" => count = args.next().context("--policies N")?.parse()?,
            "--pairs" => pairs = args.next().context("--pairs N")?.parse()?,
            "--bench" => {}
            other => {
                anyhow::bail!("unknown argument {other}; use --duration D, --policies N, --pairs N")
            }
        }
    }
    ensure!(
        count >= 1 && pairs >= 1,
        "--policies and --pairs: at least 1"
    );
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the policy benchmark builds a local cluster in network namespaces and needs root"
    );
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 2).await?;
    let (node1, node2) = (&local.node, &local.others[0]);
    let cluster = &local.cluster;
    let names = [
        "client",
        "selected-same",
        "plain-same",
        "selected-cross",
        "plain-cross",
    ];
    let pods = local
        .running_pods(
            "pods.yaml",
            &pods_manifest(&node1.config.node_name, &node2.config.node_name),
            &names,
        )
        .await?;
    let (ips, mut namespaces): (Vec<Ipv4Addr>, Vec<Netns>) = pods.into_iter().unzip();
    let client = namespaces.swap_remove(0);
    for (key, value) in perf::CLIENT_SYSCTLS {
        client.sysctl(key, value)?;
    }
    let at = |ip: Ipv4Addr| SocketAddr::new(IpAddr::V4(ip), perf::DEFAULT_PORT);
    // (path, plain server, selected server)
    let paths = [
        ("same node", at(ips[2]), at(ips[1])),
        ("cross-node", at(ips[4]), at(ips[3])),
    ];
    eprintln!("pods Running after {:?}", started.elapsed());
    for (_, plain, selected) in &paths {
        for server in [plain, selected] {
            tokio::task::block_in_place(|| crr(&client, *server, Duration::from_millis(500)))?;
        }
    }
    let mut calibration = Vec::new();
    for (path, plain, selected) in &paths {
        let (mut ratios, _, _) =
            tokio::task::block_in_place(|| paired(&client, *plain, *selected, pairs, duration))?;
        let ratio = median(&mut ratios);
        eprintln!("A/A without policies, {path}: median ratio {ratio:.3} of {ratios:.3?}");
        calibration.push(ratio);
    }
    let applied = Instant::now();
    cluster.apply("policies.yaml", &policies_manifest(count))?;
    let (name1, name2) = (&node1.config.node_name, &node2.config.node_name);
    // Every selected server holds one rule per policy once the agents caught up.
    eventually(Duration::from_secs(300), "policies programmed", || {
        Ok((programmed_rules(name1)? >= count && programmed_rules(name2)? >= count).then_some(()))
    })
    .await?;
    eprintln!(
        "{count} policies applied and programmed on both nodes in {:?}",
        applied.elapsed()
    );
    println!();
    println!(
        "{:<12} {:>14} {:>18} {:>8} {:>12}",
        "path",
        "no policy /s",
        format!("{count} policies /s"),
        "ratio",
        "A/A ratio"
    );
    let mut met = true;
    for ((path, plain, selected), aa) in paths.iter().zip(&calibration) {
        let (mut ratios, mut none, mut some) =
            tokio::task::block_in_place(|| paired(&client, *plain, *selected, pairs, duration))?;
        eprintln!("{path}: ratios {ratios:.3?}");
        let ratio = median(&mut ratios);
        met &= ratio >= 0.95;
        println!(
            "{path:<12} {:>14.0} {:>18.0} {ratio:>8.3} {aa:>12.3}",
            median(&mut none),
            median(&mut some)
        );
    }
    println!(
        "goal (1,000 policies cost under 5%, median ratio >= 0.95), with {count} policies, \
         {pairs} pairs of {duration:?} runs per path: {}",
        if met { "met" } else { "NOT met" }
    );
    local.shutdown().await;
    Ok(())
}
