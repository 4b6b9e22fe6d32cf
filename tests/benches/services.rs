//! The Service benchmark (`cargo xtask bench services`): the same client and server pods of a
//! real two-node local cluster (control plane, containerd, agents, flotilla-cni), measured with
//! flotilla-perf TCP_RR and TCP_CRR, in one run, via
//! - **direct pod IP**: the server pod's own address, no Service (the limit), over Flotilla's
//!   network and over the flannel-style network the benchmark adds to the same pods;
//! - **Flotilla ClusterIP**: one of N real Services (created through the API server, selecting
//!   the server pods, so the EndpointSlice controller and both agents program them), balanced by
//!   Flotilla's socket load balancer;
//! - **kube-proxy iptables ClusterIP**: the same N Services as kube-proxy's iptables mode would
//!   program them (`flotilla_testbed::kube_proxy`: KUBE-SERVICES / KUBE-SVC / KUBE-SEP with
//!   `statistic random`, loaded with `iptables-nft-restore --noflush` into both node
//!   namespaces), on VIPs in 10.200.0.0/16 (outside Flotilla's 10.96.0.0/12, so its socket load
//!   balancer leaves them alone) routed from the client pod through its flannel interface to the
//!   node, whose PREROUTING DNATs them to the server pods' flannel addresses (conntrack
//!   un-DNATs replies);
//!
//! at N = 1, 1,000 and 10,000 Services (cumulative: each step adds Services to the last), and
//! prints each figure with the ratios Flotilla/iptables and ClusterIP/direct.
//!
//! Where the measured Service sits: in Flotilla it is Service number N/2 + 1 of N in creation
//! order (ClusterIP from the API server's allocator like every other; lookups are hash-map
//! lookups, so no place is better than another); in the iptables rules its KUBE-SERVICES rule
//! has N/2 rules before it: kube-proxy writes that chain in Go map order, a random place on
//! every sync, so N/2 is the expected one. Every Service selects the same two server pods.
//!
//! The client of every row is a `flotilla-perf client` process inside the client pod's network
//! namespace and in a cgroup below its node's pod cgroup, as a process of the pod: that is where
//! Flotilla's socket load balancer applies (a thread of the benchmark in the pod's namespace is
//! not in that cgroup), and the direct and iptables rows pay the same (a connect() to an address
//! that is not a ClusterIP passes the cgroup programs with one map miss).
//!
//! The rules of each step are loaded as kube-proxy loads Services that arrive while it runs:
//! partial syncs of at most 1,000 new Services each (KUBE-SERVICES rewritten whole, chains only
//! for the new Services), one `iptables-restore` per node and sync, the very first sync full.
//! `--iptables-full-sync` loads each step with one full sync instead (kube-proxy's start-up):
//! with iptables-nft 1.8.9 its time grows with the square of the chains in one restore (10,000
//! Services, 30,000 chains: about 9 minutes per node on this loaded 2-CPU machine).
//!
//! kube-proxy's rules and Flotilla share the node namespaces here, which no real cluster does:
//! Flotilla's own VXLAN packets (UDP 8472) are exempted from the nat chains by one RETURN rule
//! first in PREROUTING and OUTPUT, or every new connection over Flotilla's overlay (a new outer
//! UDP flow) would walk KUBE-SERVICES on both nodes. flannel's VXLAN (UDP 8473) is not exempted:
//! with kube-proxy it pays that walk.
//!
//! Programming: for each step, how long from the first create to every frontend with both
//! backends in the service maps of both nodes, and what the agents report in
//! `flotilla_services_programming_seconds` (scraped from their metrics ports); the iptables
//! restore times beside them. Then the O(changed) check: with the largest N programmed, one more
//! Service is created; node 1's maps are read before and after (what changed), the scrape shows
//! what programming that one took, next to kube-proxy's partial sync for the same change
//! (KUBE-SERVICES rewritten whole plus the new chains). Then backend selection, Maglev against
//! random (`support::consistency`): how many flows reach the same pod through either node, and
//! how many move when one of ten backends leaves. Last, the datapath's drop counters and any run
//! that failed and was measured again.
//!
//! Every (test, path) runs `--rounds` times (default 5), interleaved with the others, and the
//! median run is reported: the machine is shared, and its load drifts within a run.
//!
//! Needs root. Options: `--services 1,1000,10000`; `--duration D` per test, path and round
//! (default 2s); `--rounds N` (default 5); `--tests TCP_RR,TCP_CRR` (TCP_STREAM works too);
//! `--iptables-full-sync`; `--json`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a failed step should stop it"
)]

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use flotilla_agent::datapath::{
    pins::NodePins,
    services::{ServiceMaps, Slots},
    start::unified_cgroup,
};
use flotilla_common::services::PROTO_TCP;
use flotilla_testbed::{
    Netlink, Netns, flannel,
    kube_proxy::{self, ProxierConfig, ServicePort as ProxyPort, Sync},
    perf::{
        self, Test,
        paths::{self, Client, PathSpec, Settings, measure_paths},
        table::{self, Row},
    },
};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::{
    api::core::v1::{Service, ServicePort, ServiceSpec},
    apimachinery::pkg::util::intstr::IntOrString,
};
use kube::api::{ObjectMeta, PostParams};
use support::{
    LocalCluster,
    consistency::{self, Consistency, FLOWS, LEAVING, PODS},
};

/// The Services' port; their target port is the server pods' named port `perf` (12865).
const SERVICE_PORT: u16 = 80;
/// The label the server pods carry and every Service selects.
const SERVER_LABEL: (&str, &str) = ("app", "svcbench-server");
/// The kube-proxy baseline's service range: outside Flotilla's 10.96.0.0/12.
const BASELINE_VIPS: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 200, 0, 0), 16);
/// Services created through the API at once.
const CREATE_CONCURRENCY: usize = 32;
/// The longest a step may take to program its Services on both nodes.
const PROGRAMMING_LIMIT: Duration = Duration::from_secs(15 * 60);
/// The longest one iptables-restore may take.
const RESTORE_LIMIT: Duration = Duration::from_secs(15 * 60);
/// The agents' programming histogram.
const METRIC: &str = "flotilla_services_programming_seconds";

struct Options {
    services: Vec<usize>,
    settings: Settings,
    json: bool,
    /// Load each step's iptables rules with one full sync instead of partial syncs.
    full_sync: bool,
}

fn options() -> anyhow::Result<Options> {
    let mut settings = Settings {
        tests: vec![Test::TcpRr, Test::TcpCrr],
        duration: Duration::from_secs(2),
        send_size: 128 << 10,
        rounds: 5,
        retries: 1,
        precision: None,
    };
    let mut services = vec![1, 1_000, 10_000];
    let mut json = false;
    let mut full_sync = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => {
                settings.duration = perf::parse_duration(&args.next().context("--duration D")?)?;
            }
            "--services" => {
                services = args
                    .next()
                    .context("--services 1,1000,10000")?
                    .split(',')
                    .map(|n| n.trim().parse::<usize>())
                    .collect::<Result<_, _>>()
                    .context("--services: a comma-separated list of counts")?;
            }
            "--tests" => {
                settings.tests = args
                    .next()
                    .context("--tests TCP_RR,TCP_CRR")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
            }
            "--rounds" => {
                settings.rounds = args.next().context("--rounds N")?.parse()?;
            }
            "--json" => json = true,
            "--iptables-full-sync" => full_sync = true,
            "--bench" => {}
            other => bail!(
                "unknown argument {other}; use --services 1,1000,10000, --duration D, --rounds N, \
                 --tests LIST, --iptables-full-sync, --json"
            ),
        }
    }
    services.sort_unstable();
    services.dedup();
    ensure!(
        !services.is_empty() && services[0] >= 1 && services.last() <= Some(&50_000),
        "--services: counts from 1 to 50000"
    );
    ensure!(
        settings.duration <= Duration::from_secs(60),
        "--duration: at most 60s per test"
    );
    ensure!((1..=20).contains(&settings.rounds), "--rounds: 1 to 20");
    Ok(Options {
        services,
        settings,
        json,
        full_sync,
    })
}

/// Prints how Maglev and random selection keep flows on their backends.
fn print_consistency(report: &Consistency) {
    println!(
        "\nBackend selection: a UDP NodePort with {PODS} pods per algorithm, {FLOWS} flows (fixed \
         source ports) from outside the cluster (the host). Through node 1 and node 2: the same \
         pod? Then pod {LEAVING} is deleted and flows first sent through node 1 are sent again \
         through node 2 (whose conntrack never saw them): which moved? And once more through \
         node 1, whose conntrack tracked them (the deleted pod's UDP flows are forgotten)"
    );
    let percent = |part: usize, whole: usize| {
        format!(
            "{part}/{whole} ({:.1}%)",
            100.0 * part as f64 / whole.max(1) as f64
        )
    };
    let mut grid = vec![
        [
            "algorithm",
            "same pod through either node",
            "flows moved when 1 of 10 left",
            "of them the leaver's",
            "moved beyond the leaver's",
            "through node 1 again: moved / unanswered",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (service, flows) in &report.flows {
        let (compared, moved) = flows.across_removal;
        grid.push(vec![
            (*service).to_owned(),
            percent(flows.across_nodes.1, flows.across_nodes.0),
            percent(moved, compared),
            flows.on_leaver.to_string(),
            percent(moved.saturating_sub(flows.on_leaver), compared),
            format!(
                "{} / {}",
                percent(flows.again_same_node.1, flows.again_same_node.0),
                flows.unanswered_again
            ),
        ]);
    }
    print!("{}", table::grid(&grid));
    let shares = &report.table_shares;
    println!(
        "  Maglev table on node 1: {} entries, {} to {} per backend ({} backends; flags {:?})",
        shares.values().sum::<u32>(),
        shares.values().min().copied().unwrap_or(0),
        shares.values().max().copied().unwrap_or(0),
        shares.len(),
        report.flags
    );
}

/// The client on node 1, two flotilla-perf servers on node 2 (every Service's endpoints).
fn pods_manifest(node1: &str, node2: &str) -> String {
    let pod = |name: &str, node: &str, labels: &str, extra: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
{labels}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/flotilla/testapp:v1
    imagePullPolicy: Never
{extra}"
        )
    };
    let server = format!(
        "    command: [\"/bin/flotilla-perf\", \"server\"]
    ports:
    - name: perf
      containerPort: {}
",
        perf::DEFAULT_PORT
    );
    let server_labels = format!("    {}: {}", SERVER_LABEL.0, SERVER_LABEL.1);
    [
        pod("client", node1, "    app: svcbench-client", ""),
        pod("server-a", node2, &server_labels, &server),
        pod("server-b", node2, &server_labels, &server),
    ]
    .join("---\n")
}

fn service_name(index: usize) -> String {
    format!("svcbench-{index:05}")
}

fn service_object(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                [(
                    "app.kubernetes.io/part-of".to_owned(),
                    "svcbench".to_owned(),
                )]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: Some([(SERVER_LABEL.0.to_owned(), SERVER_LABEL.1.to_owned())].into()),
            ports: Some(vec![ServicePort {
                name: Some("perf".into()),
                port: i32::from(SERVICE_PORT),
                target_port: Some(IntOrString::String("perf".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Creates the Services `names` through the API, a few at a time, and returns their ClusterIPs
/// in the same order.
async fn create_services(
    api: &kube::Api<Service>,
    names: Vec<String>,
) -> anyhow::Result<Vec<Ipv4Addr>> {
    futures::stream::iter(names)
        .map(|name| async move {
            let object = service_object(&name);
            let mut attempt = 0;
            let created = loop {
                attempt += 1;
                match api.create(&PostParams::default(), &object).await {
                    Ok(created) => break created,
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        break api.get(&name).await?;
                    }
                    Err(err) if attempt < 5 => {
                        eprintln!("creating {name} (attempt {attempt}): {err}; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                    }
                    Err(err) => return Err(anyhow::Error::from(err).context(name)),
                }
            };
            created
                .spec
                .and_then(|spec| spec.cluster_ip)
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                .with_context(|| format!("{name} got no IPv4 ClusterIP"))
        })
        .buffered(CREATE_CONCURRENCY)
        .try_collect()
        .await
}

/// How many of `vips` each node's service maps hold with exactly `backends` (ip, port).
fn programmed_counts(
    maps: &[ServiceMaps],
    vips: &BTreeSet<Ipv4Addr>,
    backends: &BTreeSet<(Ipv4Addr, u16)>,
) -> anyhow::Result<Vec<usize>> {
    maps.iter()
        .map(|maps| {
            let programmed = maps.programmed()?;
            Ok(programmed
                .iter()
                .filter(|(key, Slots { slots, .. })| {
                    key.proto == PROTO_TCP
                        && u16::from_be(key.port) == SERVICE_PORT
                        && vips.contains(&Ipv4Addr::from(key.ip))
                        && slots
                            .iter()
                            .map(|b| (Ipv4Addr::from(b.ip), u16::from_be(b.port)))
                            .collect::<BTreeSet<_>>()
                            == *backends
                })
                .count())
        })
        .collect()
}

/// Waits (bounded) until every node's maps hold all of `vips` with `backends`.
async fn wait_programmed(
    maps: &[ServiceMaps],
    vips: &BTreeSet<Ipv4Addr>,
    backends: &BTreeSet<(Ipv4Addr, u16)>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + PROGRAMMING_LIMIT;
    let mut last_report = Instant::now();
    loop {
        let counts = tokio::task::block_in_place(|| programmed_counts(maps, vips, backends))?;
        if counts.iter().all(|count| *count == vips.len()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the Services were not programmed within {PROGRAMMING_LIMIT:?}: the nodes' maps \
                 hold {counts:?} of {} (see the agents' logs)",
                vips.len()
            );
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!("  programmed so far per node: {counts:?} of {}", vips.len());
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One scrape of the agents' programming histogram.
#[derive(Clone, Debug, Default, PartialEq)]
struct Histogram {
    /// (upper bound in seconds, cumulative count), ascending.
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut histogram = Self::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(METRIC) else {
                continue;
            };
            let Some((series, value)) = rest.rsplit_once(' ') else {
                continue;
            };
            if series == "_sum" {
                histogram.sum = value.parse()?;
            } else if series == "_count" {
                histogram.count = value.parse()?;
            } else if let Some(le) = series
                .strip_prefix("_bucket{le=\"")
                .and_then(|s| s.strip_suffix("\"}"))
            {
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse()?
                };
                histogram.buckets.push((bound, value.parse()?));
            }
        }
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        ensure!(
            !histogram.buckets.is_empty(),
            "no {METRIC} histogram in the agent's metrics"
        );
        Ok(histogram)
    }

    /// The observations since `before`: count, total seconds, and the smallest bucket bound
    /// that holds all of them.
    fn since(&self, before: &Self) -> Delta {
        let count = self.count.saturating_sub(before.count);
        let bound = self
            .buckets
            .iter()
            .find(|(bound, cumulative)| {
                let earlier = before
                    .buckets
                    .iter()
                    .find(|(b, _)| b == bound)
                    .map_or(0, |(_, c)| *c);
                cumulative.saturating_sub(earlier) == count
            })
            .map_or(f64::INFINITY, |(bound, _)| *bound);
        Delta {
            count,
            seconds: (self.sum - before.sum).max(0.0),
            bound,
        }
    }
}

/// Observations between two scrapes.
#[derive(Clone, Copy, Debug)]
struct Delta {
    count: u64,
    seconds: f64,
    /// Every observation took at most this long (a bucket bound).
    bound: f64,
}

impl Delta {
    fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.seconds / self.count as f64
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} obs, {} total, {} mean, each <= {}",
            self.count,
            human(self.seconds),
            human(self.mean()),
            human(self.bound)
        )
    }
}

fn human(seconds: f64) -> String {
    if !seconds.is_finite() {
        "inf".into()
    } else if seconds >= 1.0 {
        format!("{seconds:.2} s")
    } else if seconds >= 1e-3 {
        format!("{:.2} ms", seconds * 1e3)
    } else {
        format!("{:.0} us", seconds * 1e6)
    }
}

/// GET /metrics from an agent: HTTP/1.0, so the body is neither chunked nor kept alive.
fn fetch_metrics(address: SocketAddr) -> anyhow::Result<String> {
    let timeout = Duration::from_secs(10);
    let mut stream = TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to the agent's metrics on {address}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response without a body")?;
    let status = head.lines().next().unwrap_or_default();
    ensure!(
        status.split_whitespace().nth(1) == Some("200"),
        "GET /metrics on {address}: {status}"
    );
    Ok(body.to_owned())
}

fn scrape(address: SocketAddr) -> anyhow::Result<Histogram> {
    Histogram::parse(&fetch_metrics(address)?).with_context(|| format!("metrics of {address}"))
}

fn scrape_all(addresses: &[SocketAddr]) -> anyhow::Result<Vec<Histogram>> {
    addresses.iter().map(|address| scrape(*address)).collect()
}

/// The datapath's drop counters per reason (`flotilla_datapath_drops_total`) of every agent.
fn drops_all(addresses: &[SocketAddr]) -> anyhow::Result<Vec<BTreeMap<String, u64>>> {
    addresses
        .iter()
        .map(|address| {
            let text = fetch_metrics(*address)?;
            Ok(text
                .lines()
                .filter_map(|line| {
                    let rest = line.strip_prefix("flotilla_datapath_drops_total{reason=\"")?;
                    let (reason, value) = rest.split_once("\"} ")?;
                    Some((reason.to_owned(), value.trim().parse().ok()?))
                })
                .collect())
        })
        .collect()
}

/// Restores `input` into every namespace at once (one thread each); returns each one's time.
fn restore_all(namespaces: &[Netns], input: &str) -> anyhow::Result<Vec<Duration>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = namespaces
            .iter()
            .map(|netns| scope.spawn(move || kube_proxy::restore(netns, input, RESTORE_LIMIT)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .map_err(|_| anyhow::anyhow!("a restore thread panicked"))?
                    .map_err(anyhow::Error::from)
            })
            .collect()
    })
}

/// Restore input that lets Flotilla's own VXLAN packets past kube-proxy's nat chains (inserted
/// first in PREROUTING and OUTPUT).
fn overlay_exemption() -> String {
    let port = flotilla_common::network::OVERLAY_PORT;
    let mut input = String::from("*nat\n");
    for chain in ["PREROUTING", "OUTPUT"] {
        input.push_str(&format!(
            "-I {chain} 1 -p udp --dport {port} -m comment --comment \"flotilla overlay, not \
             kube-proxy's\" -j RETURN\n"
        ));
    }
    input.push_str("COMMIT\n");
    input
}

/// The baseline VIP of service `index`: 10.200.0.1 onwards.
fn baseline_vip(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(BASELINE_VIPS.0) + 1 + u32::try_from(index).unwrap_or(u32::MAX))
}

/// The kube-proxy view of Services `0..count`, in KUBE-SERVICES order (index order, which puts
/// service `count / 2`, the measured one, after `count / 2` others).
fn proxy_ports(count: usize, endpoints: &[SocketAddrV4]) -> Vec<ProxyPort> {
    (0..count)
        .map(|index| ProxyPort {
            namespace: "default".into(),
            name: service_name(index),
            port_name: "perf".into(),
            cluster_ip: baseline_vip(index),
            port: SERVICE_PORT,
            endpoints: endpoints.to_vec(),
        })
        .collect()
}

/// kube-proxy's partial syncs while Services arrive: at most this many new Services per sync.
/// (kube-proxy syncs at most once per `--iptables-min-sync-period`, 1 s, so at the rate the API
/// creates Services here it would sync more often, each time with fewer: this is the kinder
/// case for it.)
const SYNC_BATCH: usize = 1_000;

/// What loading one step's rules into the nodes took.
#[derive(Clone, Debug, Default)]
struct Loaded {
    /// iptables-restore runs per node.
    restores: usize,
    /// Their total time, per node.
    total: Vec<Duration>,
    /// The slowest single restore on any node.
    slowest: Duration,
    /// Lines of restore input per node, in all.
    lines: usize,
}

impl Loaded {
    fn describe(&self) -> String {
        format!(
            "{} restore{}, {} (slowest {})",
            self.restores,
            if self.restores == 1 { "" } else { "s" },
            self.total
                .iter()
                .map(|d| human(d.as_secs_f64()))
                .collect::<Vec<_>>()
                .join(" / "),
            human(self.slowest.as_secs_f64())
        )
    }
}

/// Loads kube-proxy's rules for Services `0..to` into every node, the Services `0..from`
/// being there already: one full sync over all of them (`full`, kube-proxy's start-up or
/// hourly resync), or else partial syncs of at most [`SYNC_BATCH`] new Services each (the
/// first one full, as kube-proxy's first sync is).
fn load_iptables(
    namespaces: &[Netns],
    config: &ProxierConfig,
    endpoints: &[SocketAddrV4],
    from: usize,
    to: usize,
    full: bool,
) -> anyhow::Result<Loaded> {
    let mut loaded = Loaded {
        total: vec![Duration::ZERO; namespaces.len()],
        ..Loaded::default()
    };
    let mut start = from;
    while start < to {
        let end = if full {
            to
        } else {
            (start + SYNC_BATCH).min(to)
        };
        let ports = proxy_ports(end, endpoints);
        let changed: Vec<usize> = (start..end).collect();
        let sync = if full || start == 0 {
            Sync::Full
        } else {
            Sync::Partial(&changed)
        };
        let input = kube_proxy::sync_rules(config, &ports, sync);
        let times = restore_all(namespaces, &input)?;
        for (total, took) in loaded.total.iter_mut().zip(&times) {
            *total += *took;
        }
        loaded.slowest = times.iter().copied().fold(loaded.slowest, Duration::max);
        loaded.restores += 1;
        loaded.lines += input.lines().count();
        start = end;
    }
    Ok(loaded)
}

/// CPU seconds used so far by the cluster: this process (control plane, controllers, agents)
/// and its etcd.
fn cluster_cpu_seconds() -> f64 {
    let ticks = |stat: &str| -> Option<(String, i32, u64)> {
        // pid (comm) state ppid ... utime(14) stime(15)
        let (_, rest) = stat.split_once(" (")?;
        let (comm, rest) = rest.rsplit_once(") ")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid = fields.get(1)?.parse().ok()?;
        let used = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some((comm.to_owned(), ppid, used))
    };
    let me = std::process::id();
    let mut used = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| ticks(&stat))
        .map_or(0, |(_, _, used)| used);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((comm, ppid, ticks)) = ticks(&stat)
                && comm == "etcd"
                && u32::try_from(ppid).is_ok_and(|ppid| ppid == me)
            {
                used += ticks;
            }
        }
    }
    // USER_HZ is 100 on Linux.
    used as f64 / 100.0
}

/// The machine's 1-minute load average.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The cluster's own CPU use and the machine's load while `work` runs.
fn with_cpu<T>(work: impl FnOnce() -> T) -> (T, Busy) {
    let cpu = cluster_cpu_seconds();
    let started = Instant::now();
    let value = work();
    let busy = Busy {
        cluster: (cluster_cpu_seconds() - cpu) / started.elapsed().as_secs_f64().max(1e-3),
        load: load_average(),
    };
    (value, busy)
}

/// How busy the machine was during a measurement.
#[derive(Clone, Copy, Debug, Default)]
struct Busy {
    /// CPUs the cluster (control plane, controllers, agents, etcd) used on average.
    cluster: f64,
    /// The machine's 1-minute load average at the end (2 CPUs; other developers' work counts).
    load: f64,
}

impl Busy {
    fn describe(&self) -> String {
        format!(
            "cluster used {:.0} % of a CPU, load average {:.1}",
            self.cluster * 100.0,
            self.load
        )
    }
}

/// How a node's service maps differ between two reads.
#[derive(Clone, Copy, Debug, Default)]
struct MapChange {
    added: usize,
    added_backends: usize,
    removed: usize,
    changed: usize,
    unchanged: usize,
}

impl MapChange {
    fn between(
        before: &flotilla_agent::datapath::services::Programmed,
        after: &flotilla_agent::datapath::services::Programmed,
    ) -> Self {
        let mut change = Self::default();
        for (key, value) in after {
            match before.get(key) {
                None => {
                    change.added += 1;
                    change.added_backends += value.slots.len();
                }
                Some(old) if old == value => change.unchanged += 1,
                Some(_) => change.changed += 1,
            }
        }
        change.removed = before.keys().filter(|key| !after.contains_key(key)).count();
        change
    }
}

/// What one step (N Services) measured besides the rows.
struct Step {
    services: usize,
    measured: usize,
    new: usize,
    create: Duration,
    programmed: Duration,
    agents: Vec<Delta>,
    loaded: Loaded,
    measured_chain: String,
    chain_packets: u64,
    busy: Busy,
}

fn figure(rows: &[Row], datapath: &str, path: &str, test: Test) -> Option<f64> {
    rows.iter()
        .rev()
        .find(|row| row.datapath == datapath && row.path == path && row.report.test == test)
        .map(|row| table::headline(&row.report))
}

/// `a / b`, or why there is none: a figure of 0 means the run measured nothing, and a ratio of
/// it (0x or infinity) would read as a verdict.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.2}x", a / b),
        (Some(a), Some(b)) if a <= 0.0 || b <= 0.0 => "no samples".into(),
        _ => "-".into(),
    }
}

fn count_label(count: usize) -> String {
    if count == 1 {
        "1 service".into()
    } else {
        format!("{count} services")
    }
}

const DIRECT_FLOTILLA: &str = "direct pod IP, Flotilla network";
const DIRECT_FLANNEL: &str = "direct pod IP, flannel network";
const FLOTILLA: &str = "Flotilla ClusterIP";
const IPTABLES: &str = "kube-proxy iptables ClusterIP";

#[allow(
    clippy::too_many_lines,
    reason = "the benchmark's steps read best in order"
)]
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = options()?;
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the Service benchmark builds a local cluster in network namespaces and needs root"
    );
    let iptables_version = kube_proxy::version()?;
    let started = Instant::now();
    let perf_binary = support::flotilla_perf()?;
    // The test bed's underlay subnet is this process's own, so a test run or `cargo xtask up`
    // on the same machine does not share it.
    let local = LocalCluster::start_nodes(started, 2).await?;
    let (node1, node2) = (&local.node, &local.others[0]);
    let pods = local
        .running_pods(
            "svcbench.yaml",
            &pods_manifest(&node1.config.node_name, &node2.config.node_name),
            &["client", "server-a", "server-b"],
        )
        .await?;
    let [
        (_, client_netns),
        (server_a, server_a_netns),
        (server_b, server_b_netns),
    ] = &pods[..]
    else {
        bail!("three benchmark pods expected, got {}", pods.len());
    };
    eprintln!("pods Running after {:?}", started.elapsed());

    // The flannel-style network beside Flotilla's, on the same pods.
    let baseline = local
        .flannel_beside(&[(client_netns, 0), (server_a_netns, 1), (server_b_netns, 1)])
        .await?;
    for (key, value) in perf::CLIENT_SYSCTLS {
        client_netns.sysctl(key, value)?;
    }
    // The baseline's service range goes to the node through the flannel interface, so its
    // PREROUTING sees the packets (the pod's default route leads into Flotilla's datapath).
    Netlink::connect(client_netns)?
        .add_route(
            BASELINE_VIPS.0,
            BASELINE_VIPS.1,
            flannel::POD_IFACE,
            Some(flannel::node_gateway(0)),
        )
        .await?;
    let node_namespaces = [node1.netns.clone(), node2.netns.clone()];
    let bridge_nf: Vec<String> = node_namespaces
        .iter()
        .map(|netns| {
            netns
                .run(|| std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables"))
                .map(|read| {
                    read.map_or_else(|err| format!("unreadable ({err})"), |v| v.trim().to_owned())
                })
        })
        .collect::<Result<_, _>>()?;
    // kube-proxy's jump rules, once per node, as it inserts them at start.
    let jumps = restore_all(&node_namespaces, &kube_proxy::jump_rules())
        .context("loading kube-proxy's jump rules: do iptables (nf_tables) rules work here?")?;
    eprintln!("kube-proxy jump rules loaded in {jumps:?}");
    // Flotilla's own overlay packets (UDP to its VXLAN port) skip kube-proxy's nat chains. The
    // outer packet of every new connection over a kernel VXLAN device is a new UDP flow (its
    // source port hashes the inner flow) that goes through the node's OUTPUT and PREROUTING:
    // with kube-proxy's rules beside Flotilla's, each of Flotilla's connections would walk
    // KUBE-SERVICES twice per node, a cost no real cluster has (Flotilla replaces kube-proxy).
    // flannel's VXLAN (on its own port) keeps that cost, as it has with kube-proxy.
    restore_all(&node_namespaces, &overlay_exemption())
        .context("loading the exemption of Flotilla's overlay from kube-proxy's chains")?;

    let cgroup = unified_cgroup(&node1.cgroup_root).join("svcbench-client");
    std::fs::create_dir_all(&cgroup)
        .with_context(|| format!("creating the client's cgroup {}", cgroup.display()))?;
    let client = Client::Process {
        netns: client_netns.clone(),
        cgroup: cgroup.clone(),
        binary: perf_binary.clone(),
    };
    let port = perf::DEFAULT_PORT;
    let servers_flotilla = [*server_a, *server_b];
    let servers_flannel = [baseline.pod_ip(1)?, baseline.pod_ip(2)?];
    let backends: BTreeSet<(Ipv4Addr, u16)> =
        servers_flotilla.iter().map(|ip| (*ip, port)).collect();
    let endpoints: Vec<SocketAddrV4> = servers_flannel
        .iter()
        .map(|ip| SocketAddrV4::new(*ip, port))
        .collect();
    let direct = |datapath: &str, ip: Ipv4Addr, label: &str| {
        PathSpec::new(
            datapath,
            label,
            client.clone(),
            SocketAddr::new(IpAddr::V4(ip), port),
        )
    };

    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    eprintln!(
        "Service benchmark: Linux {}, {} CPUs, {:?} per test and path, Services {:?}; {}",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, usize::from),
        options.settings.duration,
        options.services,
        iptables_version
    );

    // Before any Service: the two networks' limits without kube-proxy rules.
    let (first_rows, busy_at_start) = tokio::task::block_in_place(|| {
        with_cpu(|| {
            measure_paths(
                &[
                    direct(DIRECT_FLOTILLA, servers_flotilla[0], "no services"),
                    direct(DIRECT_FLANNEL, servers_flannel[0], "no services"),
                ],
                &options.settings,
            )
        })
    });
    let first = first_rows?;
    let mut rows = first.rows;
    let mut retried = first.retried;
    let mut unsteady = first.unsteady;
    eprintln!("  while measuring: {}", busy_at_start.describe());

    let client_api = support::client(&local.cluster.kubeconfig).await?;
    let api = kube::Api::<Service>::namespaced(client_api, "default");
    let maps = [
        ServiceMaps::open(&NodePins::new(&node1.config.node_name)?)?,
        ServiceMaps::open(&NodePins::new(&node2.config.node_name)?)?,
    ];
    let metrics = [
        local
            .node
            .config
            .metrics_listen
            .context("node 1 serves no metrics")?,
        local.others[0]
            .config
            .metrics_listen
            .context("node 2 serves no metrics")?,
    ];
    let config = ProxierConfig {
        cluster_cidr: flannel::NETWORK,
    };
    let drops_at_start = drops_all(&metrics)?;
    let mut vips: Vec<Ipv4Addr> = Vec::new();
    let mut steps = Vec::new();
    for &count in &options.services {
        let measured = count / 2;
        let new_names: Vec<String> = (vips.len()..count).map(service_name).collect();
        let new = new_names.len();
        eprintln!(
            "== {}: creating {new} through the API ({:?} since start)",
            count_label(count),
            started.elapsed()
        );
        let before = scrape_all(&metrics)?;
        let creating = Instant::now();
        vips.extend(create_services(&api, new_names).await?);
        let create = creating.elapsed();
        let wanted: BTreeSet<Ipv4Addr> = vips.iter().copied().collect();
        wait_programmed(&maps, &wanted, &backends).await?;
        let programmed = creating.elapsed();
        // Programming has settled when the last Service is in; a late slice update would
        // still count, which is what the agents did for this step.
        let after = scrape_all(&metrics)?;
        let agents: Vec<Delta> = after.iter().zip(&before).map(|(a, b)| a.since(b)).collect();
        eprintln!(
            "  created in {create:?}, programmed on both nodes after {programmed:?}; agents: {}",
            agents
                .iter()
                .map(Delta::describe)
                .collect::<Vec<_>>()
                .join(" | ")
        );

        let loaded = tokio::task::block_in_place(|| {
            load_iptables(
                &node_namespaces,
                &config,
                &endpoints,
                count - new,
                count,
                options.full_sync,
            )
        })?;
        eprintln!("  kube-proxy rules loaded: {}", loaded.describe());
        let ports = proxy_ports(count, &endpoints);

        let label = count_label(count);
        let paths = [
            direct(DIRECT_FLOTILLA, servers_flotilla[0], &label),
            direct(DIRECT_FLANNEL, servers_flannel[0], &label),
            PathSpec::new(
                FLOTILLA,
                &label,
                client.clone(),
                SocketAddr::new(IpAddr::V4(vips[measured]), SERVICE_PORT),
            ),
            PathSpec::new(
                IPTABLES,
                &label,
                client.clone(),
                SocketAddr::new(IpAddr::V4(baseline_vip(measured)), SERVICE_PORT),
            ),
        ];
        let (measured_rows, busy) =
            tokio::task::block_in_place(|| with_cpu(|| measure_paths(&paths, &options.settings)));
        let measured_rows = measured_rows?;
        rows.extend(measured_rows.rows);
        retried.extend(measured_rows.retried);
        unsteady.extend(measured_rows.unsteady);
        eprintln!("  while measuring: {}", busy.describe());
        // Proof that the iptables rows went through the chains: the measured Service's
        // KUBE-SVC chain counted packets on the client's node.
        let measured_chain = ports[measured].service_chain();
        let counters =
            tokio::task::block_in_place(|| kube_proxy::rule_counters(&node1.netns, "nat"))?;
        let chain_packets = kube_proxy::chain_packets(&counters, &measured_chain);
        ensure!(
            chain_packets > 0,
            "no packet went through {measured_chain}, the measured Service's chain: the iptables \
             rows did not take kube-proxy's path"
        );
        steps.push(Step {
            services: count,
            measured,
            new,
            create,
            programmed,
            agents,
            loaded,
            measured_chain,
            chain_packets,
            busy,
        });
    }

    // O(changed): one more Service next to the largest N.
    let count = vips.len();
    eprintln!(
        "== one more Service beside {count} ({:?} since start)",
        started.elapsed()
    );
    let maps_before = tokio::task::block_in_place(|| maps[0].programmed())?;
    let before = scrape_all(&metrics)?;
    let creating = Instant::now();
    let extra = create_services(&api, vec![service_name(count)]).await?;
    wait_programmed(&maps, &extra.iter().copied().collect(), &backends).await?;
    let extra_programmed = creating.elapsed();
    // Let a late update of the new Service's slice land before the second scrape.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = scrape_all(&metrics)?;
    let maps_after = tokio::task::block_in_place(|| maps[0].programmed())?;
    let extra_agents: Vec<Delta> = after.iter().zip(&before).map(|(a, b)| a.since(b)).collect();
    let map_change = MapChange::between(&maps_before, &maps_after);
    let ports = proxy_ports(count + 1, &endpoints);
    let partial = kube_proxy::sync_rules(&config, &ports, Sync::Partial(&[count]));
    let extra_restores = tokio::task::block_in_place(|| restore_all(&node_namespaces, &partial))?;
    eprintln!(
        "  programmed on both nodes after {extra_programmed:?}; agents: {}; kube-proxy partial \
         sync ({} lines) restored in {extra_restores:?}",
        extra_agents
            .iter()
            .map(Delta::describe)
            .collect::<Vec<_>>()
            .join(" | "),
        partial.lines().count()
    );
    let drops_at_end = drops_all(&metrics)?;
    drop(baseline);
    eprintln!("flows and a leaving backend: Maglev against random");
    let consistency = consistency::measure(&local).await?;
    eprintln!("  {consistency:?}");

    // The report.
    println!();
    println!(
        "Service benchmark, one run on Linux {} with {} CPUs, {:?} per test and path; client: a \
         flotilla-perf process in the client pod (node 1), servers: two pods on node 2 (every \
         Service's endpoints); {iptables_version}; node namespaces: bridge-nf-call-iptables={}",
        kernel.trim(),
        std::thread::available_parallelism().map_or(0, usize::from),
        options.settings.duration,
        bridge_nf.join("/")
    );
    println!(
        "Measured Service: number N/2+1 of N in creation order (Flotilla, ClusterIP from the \
         allocator); rule N/2+1 of N in KUBE-SERVICES (kube-proxy writes that chain in Go map \
         order, a random place per sync; N/2 rules before it is the expected case)."
    );
    println!();
    print!(
        "{}",
        table::render(&rows, Some((DIRECT_FLOTILLA, "no services")))
    );

    println!("\nRatios (headline figure: transactions/s, Mbit/s for TCP_STREAM), same run:");
    let mut grid = vec![
        [
            "services",
            "test",
            "Flotilla ClusterIP",
            "iptables ClusterIP",
            "Flotilla/iptables",
            "Flotilla ClusterIP/direct",
            "iptables ClusterIP/direct (flannel)",
            "flannel direct vs no rules",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for step in &steps {
        let label = count_label(step.services);
        for test in &options.settings.tests {
            let flotilla = figure(&rows, FLOTILLA, &label, *test);
            let iptables = figure(&rows, IPTABLES, &label, *test);
            grid.push(vec![
                label.clone(),
                test.to_string(),
                flotilla.map_or_else(|| "-".into(), |f| format!("{f:.0}")),
                iptables.map_or_else(|| "-".into(), |f| format!("{f:.0}")),
                ratio(flotilla, iptables),
                ratio(flotilla, figure(&rows, DIRECT_FLOTILLA, &label, *test)),
                ratio(iptables, figure(&rows, DIRECT_FLANNEL, &label, *test)),
                ratio(
                    figure(&rows, DIRECT_FLANNEL, &label, *test),
                    figure(&rows, DIRECT_FLANNEL, "no services", *test),
                ),
            ]);
        }
    }
    print!("{}", table::grid(&grid));
    println!(
        "(direct = the server pod's own address on the same network; the flannel direct row \
         pays kube-proxy's KUBE-SERVICES walk too, since every new connection through a node's \
         PREROUTING does.)"
    );

    println!(
        "\nProgramming (create through the API -> every frontend with both backends in the maps of both nodes):"
    );
    let mut grid = vec![
        [
            "services",
            "new",
            "API create",
            "programmed",
            "agent node 1 (flotilla_services_programming_seconds)",
            "agent node 2",
            if options.full_sync {
                "kube-proxy full sync: iptables-restore node 1 / node 2"
            } else {
                "kube-proxy syncs (<= 1000 new Services each): iptables-restore node 1 / node 2"
            },
        ]
        .map(String::from)
        .to_vec(),
    ];
    for step in &steps {
        grid.push(vec![
            step.services.to_string(),
            step.new.to_string(),
            human(step.create.as_secs_f64()),
            human(step.programmed.as_secs_f64()),
            step.agents[0].describe(),
            step.agents[1].describe(),
            step.loaded.describe(),
        ]);
    }
    print!("{}", table::grid(&grid));
    println!(
        "\nMeasured Services, and how busy the machine was while their rows were measured (the \
         cluster runs in this process and etcd; the load average counts everything on the \
         machine):"
    );
    println!("  no services: {}", busy_at_start.describe());
    for step in &steps {
        println!(
            "  {}: {} (Flotilla {}, baseline {}), {} packets through {} on node 1; {}",
            count_label(step.services),
            service_name(step.measured),
            vips[step.measured],
            baseline_vip(step.measured),
            step.chain_packets,
            step.measured_chain,
            step.busy.describe()
        );
    }

    println!("\nO(changed): one Service added beside {count}, scraped before and after:");
    println!(
        "  node 1's maps, read before and after: {} frontend(s) added ({} backend slots), {} \
         removed, {} changed, {} untouched",
        map_change.added,
        map_change.added_backends,
        map_change.removed,
        map_change.changed,
        map_change.unchanged
    );
    let first = steps.first().map(|step| step.agents.clone());
    for (index, delta) in extra_agents.iter().enumerate() {
        let against = first
            .as_ref()
            .and_then(|agents| agents.get(index))
            .filter(|delta| delta.count > 0)
            .map_or_else(String::new, |at_start| {
                format!(
                    "; per observation {} vs {} in the first step ({}) ({:.2}x)",
                    human(delta.mean()),
                    human(at_start.mean()),
                    count_label(steps[0].services),
                    delta.mean() / at_start.mean().max(f64::MIN_POSITIVE)
                )
            });
        println!("  agent node {}: {}{against}", index + 1, delta.describe());
    }
    let flotilla_one = extra_agents
        .iter()
        .map(|delta| delta.seconds)
        .fold(0.0_f64, f64::max);
    let iptables_one = extra_restores
        .iter()
        .map(Duration::as_secs_f64)
        .fold(0.0_f64, f64::max);
    // Both agents must have observed programming the new Service, or there is nothing to
    // compare kube-proxy's sync with.
    let agents_observed = extra_agents.iter().all(|delta| delta.count > 0);
    println!(
        "  create -> programmed on both nodes: {}; kube-proxy's partial sync for the same change \
         (KUBE-SERVICES rewritten whole, {} rules, plus the new chains): iptables-restore {} \
         (slowest node) {}",
        human(extra_programmed.as_secs_f64()),
        count + 2,
        human(iptables_one),
        if agents_observed && flotilla_one > 0.0 {
            format!(
                "= {:.0}x the agent's map programming ({} on the slowest node)",
                iptables_one / flotilla_one,
                human(flotilla_one)
            )
        } else {
            "; no ratio: not every agent's flotilla_services_programming_seconds observed the \
             change"
                .to_owned()
        }
    );
    print_consistency(&consistency);
    println!("\nHealth of the run:");
    for (index, (end, start)) in drops_at_end.iter().zip(&drops_at_start).enumerate() {
        let new: Vec<String> = end
            .iter()
            .filter_map(|(reason, count)| {
                let delta = count.saturating_sub(start.get(reason).copied().unwrap_or(0));
                (delta > 0).then(|| format!("{reason} {delta}"))
            })
            .collect();
        println!(
            "  Flotilla datapath drops on node {} during the Service steps: {}",
            index + 1,
            if new.is_empty() {
                "none".to_owned()
            } else {
                new.join(", ")
            }
        );
    }
    if retried.is_empty() {
        println!("  no run failed");
    } else {
        for failure in &retried {
            println!("  failed once and measured again: {failure}");
        }
    }
    print!("{}", paths::describe_unsteady(&unsteady));
    if options.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    }
    let _ = std::fs::remove_dir(&cgroup);
    local.shutdown().await;
    Ok(())
}
