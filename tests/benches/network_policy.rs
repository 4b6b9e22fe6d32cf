//! The NetworkPolicy benchmark (`cargo xtask bench policy`): TCP_CRR (a new connection per
//! transaction, so every transaction is judged by the policy) from a client pod to
//! `flotilla-perf server` pods on the same node and on the other node of a two-node local
//! cluster, first with no policy, then with 1,000 NetworkPolicies selecting the servers (each
//! allowing the client on its own port, one of them on the server's), then with none again. It
//! prints each figure and the ratio of 1,000 policies to none (goal: under 5% cost, >= 0.95).
//!
//! Needs root. Options: `--duration D` per run (default 3s), `--policies N` (default 1000),
//! `--rounds N` alternations of none/N (default 2).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a failed step should stop it"
)]

#[path = "../tests/support/mod.rs"]
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
use support::{LocalCluster, eventually, pod_netns, pod_phase};

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
        pod("same-node", node1, "    role: server\n", server),
        pod("other-node", node2, "    role: server\n", server),
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut duration = Duration::from_secs(3);
    let mut count = 1000;
    let mut rounds = 2;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                duration = perf::parse_duration(&args.next().context("--duration D")?)?;
            }
            "--policies" => count = args.next().context("--policies N")?.parse()?,
            "--rounds" => rounds = args.next().context("--rounds N")?.parse()?,
            "--bench" => {}
            other => anyhow::bail!("unknown argument {other}; use --duration D, --policies N"),
        }
    }
    ensure!(count >= 1, "--policies: at least 1");
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the policy benchmark builds a local cluster in network namespaces and needs root"
    );
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 2).await?;
    let (node1, node2) = (&local.node, &local.others[0]);
    let cluster = &local.cluster;
    cluster.apply(
        "pods.yaml",
        &pods_manifest(&node1.config.node_name, &node2.config.node_name),
    )?;
    let names = ["client", "same-node", "other-node"];
    let ips: Vec<Ipv4Addr> = eventually(Duration::from_secs(120), "pods Running", || {
        let mut ips = Vec::new();
        for name in names {
            let pod = cluster.json(&["get", "pod", name])?;
            match pod["status"]["podIP"]
                .as_str()
                .and_then(|ip| ip.parse().ok())
            {
                Some(ip) if pod_phase(&pod) == "Running" => ips.push(ip),
                _ => return Ok(None),
            }
        }
        Ok(Some(ips))
    })
    .await?;
    let client = pod_netns(ips[0])?;
    for (key, value) in perf::CLIENT_SYSCTLS {
        client.sysctl(key, value)?;
    }
    let at = |ip: Ipv4Addr| SocketAddr::new(IpAddr::V4(ip), perf::DEFAULT_PORT);
    let paths = [("same node", at(ips[1])), ("cross-node", at(ips[2]))];
    eprintln!("pods Running after {:?}", started.elapsed());
    // Warm-up.
    for (_, server) in &paths {
        tokio::task::block_in_place(|| crr(&client, *server, Duration::from_millis(500)))?;
    }
    let manifest = policies_manifest(count);
    let (name1, name2) = (&node1.config.node_name, &node2.config.node_name);
    // figures[path] = (without, with) per round.
    let mut without = vec![Vec::new(); paths.len()];
    let mut with = vec![Vec::new(); paths.len()];
    for round in 0..rounds {
        for (index, (path, server)) in paths.iter().enumerate() {
            let rate = tokio::task::block_in_place(|| crr(&client, *server, duration))?;
            eprintln!("round {round}, no policy, {path}: {rate:.0} TCP_CRR/s");
            without[index].push(rate);
        }
        let applied = Instant::now();
        cluster.apply("policies.yaml", &manifest)?;
        // Every server endpoint holds one rule per policy once the agents caught up.
        eventually(Duration::from_secs(300), "policies programmed", || {
            Ok(
                (programmed_rules(name1)? >= count && programmed_rules(name2)? >= count)
                    .then_some(()),
            )
        })
        .await?;
        eprintln!(
            "{count} policies applied and programmed in {:?}",
            applied.elapsed()
        );
        for (index, (path, server)) in paths.iter().enumerate() {
            let rate = tokio::task::block_in_place(|| crr(&client, *server, duration))?;
            eprintln!("round {round}, {count} policies, {path}: {rate:.0} TCP_CRR/s");
            with[index].push(rate);
        }
        cluster.kubectl_ok(&["delete", "networkpolicy", "--all"])?;
        eventually(Duration::from_secs(120), "policies removed", || {
            Ok((programmed_rules(name1)? == 0 && programmed_rules(name2)? == 0).then_some(()))
        })
        .await?;
    }
    let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
    println!();
    println!(
        "{:<12} {:>16} {:>22} {:>8}",
        "path",
        "no policy /s",
        format!("{count} policies /s"),
        "ratio"
    );
    let mut met = true;
    for (index, (path, _)) in paths.iter().enumerate() {
        let (none, some) = (mean(&without[index]), mean(&with[index]));
        let ratio = some / none;
        met &= ratio >= 0.95;
        println!("{path:<12} {none:>16.0} {some:>22.0} {ratio:>8.3}");
    }
    println!(
        "goal (cost under 5%, ratio >= 0.95): {}",
        if met { "met" } else { "NOT met" }
    );
    local.shutdown().await;
    Ok(())
}
