//! The kernel baselines of the pod-network benchmark: flotilla-perf TCP_STREAM, TCP_RR and
//! TCP_CRR on a 2-node test bed with pods, over
//! - `flannel / pod to pod, same node`: the flannel-style `cni0` bridge (one bridge hop);
//! - `flannel / pod to pod, cross-node`: the flannel-style kernel VXLAN (`flannel.1`, the way
//!   flannel's vxlan backend programs it, see `flotilla_testbed::flannel`);
//! - `kernel / node to node, underlay`: the node namespaces' own underlay (no overlay: the
//!   physical limit of this machine's veth-and-bridge "wire").
//!
//! Every figure is printed as measured and as a percentage of the underlay row of the same run
//! (the machine is noisy: compare within a run, never across runs). Each test runs on every
//! path in turn after a warm-up of all of them. Flotilla's rows are added by appending its paths
//! (client namespace, server address) to [`baseline_paths`]' and measuring all of them with
//! [`measure_paths`]; `flotilla_testbed::perf::table::render` prints rows from any source.
//!
//! Needs root. `cargo bench -p flotilla-testbed --bench pod_network_baseline -- --duration 3s`
//! (options: `--duration D` per test, default 3s; `--tests TCP_STREAM,TCP_RR,TCP_CRR`;
//! `--send-size BYTES` for TCP_STREAM, default 128 KiB; `--json` to also print every row as
//! JSON).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a failed step should stop it"
)]

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, ensure};
use flotilla_testbed::{
    Netns, Testbed, TestbedConfig,
    flannel::FlannelBaseline,
    perf::{
        self, ClientConfig, Report, Server, Test,
        table::{self, Row},
    },
};

/// TCP_STREAM's default send size: 128 KiB, iperf3's default, not netperf's 16 KiB. With 16 KiB
/// sends every path is bound by the sender's system calls on this 2-CPU machine (a bare veth
/// pair: 8.6 Gbit/s at 16 KiB, 22 Gbit/s at 128 KiB), which hides what the datapath costs.
const SEND_SIZE: usize = 128 << 10;

/// What each path is measured with.
#[derive(Clone, Debug)]
struct Settings {
    /// The tests, run in this order on every path.
    tests: Vec<Test>,
    /// How long each test runs.
    duration: Duration,
    /// TCP_STREAM's send size.
    send_size: usize,
}

struct Options {
    settings: Settings,
    json: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut settings = Settings {
        tests: vec![Test::TcpStream, Test::TcpRr, Test::TcpCrr],
        duration: Duration::from_secs(3),
        send_size: SEND_SIZE,
    };
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                settings.duration = perf::parse_duration(&args.next().context("--duration D")?)?;
            }
            "--send-size" => {
                settings.send_size = args.next().context("--send-size BYTES")?.parse()?;
            }
            "--tests" => {
                settings.tests = args
                    .next()
                    .context("--tests TCP_STREAM,TCP_RR,...")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--json" => json = true,
            "--bench" => {}
            other => anyhow::bail!(
                "unknown argument {other}; use --duration D, --tests LIST, --send-size BYTES, --json"
            ),
        }
    }
    ensure!(
        settings.duration <= Duration::from_secs(60),
        "--duration: at most 60s per test"
    );
    Ok(Options { settings, json })
}

/// Starts a flotilla-perf server on `ip` (default port) inside `netns`.
fn start_server(netns: &Netns, ip: IpAddr) -> anyhow::Result<Server> {
    let address = SocketAddr::new(ip, perf::DEFAULT_PORT);
    netns.run(|| Server::start(address))?.with_context(|| {
        format!(
            "starting a flotilla-perf server on {address} in {}",
            netns.name()
        )
    })
}

/// One path to measure: a client namespace and the address of a running server.
#[derive(Clone, Debug)]
struct PathSpec {
    /// The network under test (`kernel`, `flannel`, `flotilla`, ...).
    datapath: String,
    /// The path through it.
    path: String,
    /// Where the client runs.
    client: Netns,
    /// The server it talks to.
    server: SocketAddr,
}

impl PathSpec {
    fn new(datapath: &str, path: &str, client: &Netns, server: SocketAddr) -> Self {
        Self {
            datapath: datapath.to_owned(),
            path: path.to_owned(),
            client: client.clone(),
            server,
        }
    }

    fn run(&self, test: Test, duration: Duration, send_size: usize) -> anyhow::Result<Report> {
        let mut config = ClientConfig::new(self.server, test).with_duration(duration);
        config.send_size = send_size;
        self.client
            .run(|| perf::run_client(&config))?
            .with_context(|| {
                format!(
                    "{test} on {} / {} ({})",
                    self.datapath, self.path, self.server
                )
            })
    }
}

/// How long each test runs on each path, unrecorded, before anything is measured. The first
/// bulk transfer of a run is markedly slower than the following ones (measured: 17.8 Gbit/s,
/// then 26 and 25 on the same path), and neighbour entries and caches need filling.
const WARM_UP: Duration = Duration::from_millis(300);

/// Measures every path with every test: first a warm-up of each test on each path, then test
/// by test, all paths in turn (so a drift of the machine, e.g. a compile next door, hits every
/// row of a column alike). Returns one row per (path, test).
fn measure_paths(paths: &[PathSpec], settings: &Settings) -> anyhow::Result<Vec<Row>> {
    for path in paths {
        for test in &settings.tests {
            path.run(*test, WARM_UP, settings.send_size)
                .context("warming up")?;
        }
    }
    let mut rows = Vec::new();
    for test in &settings.tests {
        for path in paths {
            let report = path.run(*test, settings.duration, settings.send_size)?;
            eprintln!("{} / {}: {report}", path.datapath, path.path);
            rows.push(Row::new(&path.datapath, &path.path, report));
        }
    }
    Ok(rows)
}

/// The baseline's paths on `bed` and the servers behind them (running until dropped). The
/// first three pods of `bed` must be a client and a server on node 1 and a server on node 2,
/// with the flannel-style `baseline` over them: node to node over the underlay (the machine's
/// limit), same-node pods over the bridge, cross-node pods over the kernel VXLAN.
fn baseline_paths(
    bed: &Testbed,
    baseline: &FlannelBaseline,
) -> anyhow::Result<(Vec<PathSpec>, Vec<Server>)> {
    let pods = bed.pods();
    ensure!(
        pods.len() >= 3 && pods[0].node() == 0 && pods[1].node() == 0 && pods[2].node() == 1,
        "the baseline needs pods [client on node 1, server on node 1, server on node 2]"
    );
    let (client, same_node, other_node) = (&pods[0], &pods[1], &pods[2]);
    let (node1, node2) = (bed.node(0)?, bed.node(1)?);
    for netns in [client.netns(), node1.netns()] {
        for (key, value) in perf::CLIENT_SYSCTLS {
            netns.sysctl(key, value)?;
        }
    }
    let port = perf::DEFAULT_PORT;
    let underlay = SocketAddr::new(IpAddr::V4(node2.underlay_ip()), port);
    let same_node_ip = SocketAddr::new(IpAddr::V4(baseline.pod_ip(1)?), port);
    let other_node_ip = SocketAddr::new(IpAddr::V4(baseline.pod_ip(2)?), port);
    let servers = vec![
        start_server(node2.netns(), underlay.ip())?,
        start_server(same_node.netns(), same_node_ip.ip())?,
        start_server(other_node.netns(), other_node_ip.ip())?,
    ];
    let paths = vec![
        PathSpec::new("kernel", "node to node, underlay", node1.netns(), underlay),
        PathSpec::new(
            "flannel",
            "pod to pod, same node",
            client.netns(),
            same_node_ip,
        ),
        PathSpec::new(
            "flannel",
            "pod to pod, cross-node",
            client.netns(),
            other_node_ip,
        ),
    ];
    Ok((paths, servers))
}

/// The baseline rows on `bed` (see [`baseline_paths`]), measured on their own. To compare
/// another datapath in the same run, append its paths to [`baseline_paths`]' and call
/// [`measure_paths`] on all of them instead.
fn baseline_rows(
    bed: &Testbed,
    baseline: &FlannelBaseline,
    settings: &Settings,
) -> anyhow::Result<Vec<Row>> {
    let (paths, _servers) = baseline_paths(bed, baseline)?;
    measure_paths(&paths, settings)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the pod-network benchmark creates network namespaces and needs root"
    );
    let mut bed = Testbed::create(TestbedConfig::nodes(2)).await?;
    bed.add_pod(0, "client").await?;
    bed.add_pod(0, "same-node").await?;
    bed.add_pod(1, "other-node").await?;
    let baseline = FlannelBaseline::for_testbed(&bed).await?;

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    eprintln!(
        "pod-network baseline: Linux {}, {} CPUs, {:?} per test, TCP_STREAM sends of {} bytes, \
         MTU underlay 1500 / overlay 1450; node namespaces keep bridge-nf-call-iptables=1 (as \
         Kubernetes nodes must), with no rules",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, usize::from),
        options.settings.duration,
        options.settings.send_size
    );
    // Blocking clients and servers run on threads of their own; this runtime only holds the
    // test bed's netlink connections.
    let rows = tokio::task::block_in_place(|| baseline_rows(&bed, &baseline, &options.settings))?;

    println!();
    print!(
        "{}",
        table::render(&rows, Some(("kernel", "node to node, underlay")))
    );
    if options.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    drop(baseline);
    bed.teardown()?;
    Ok(())
}
