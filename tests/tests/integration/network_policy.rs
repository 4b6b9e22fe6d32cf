//! NetworkPolicy end to end, in the style of upstream's netpol e2e suite: namespaces x, y, z,
//! each with pods a, b, c (labelled pod=a etc.) serving TCP and UDP echo on 80 and 81, spread
//! over three nodes. For each policy case the full 9x9 matrix is probed (from inside each pod's
//! network namespace, every probe in its own thread, a bounded timeout and one retry) and
//! compared with the expected truth table; a mismatch prints both matrices.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::support::{self, LocalCluster, eventually, require_root};
use anyhow::{Context as _, bail};
use flotilla_agent::datapath::{
    network::NetworkMaps,
    pins::NodePins,
    policy::{self, PolicyMaps},
};
use flotilla_common::policy::PolicyKey;
use flotilla_testbed::{Netns, objects};
use k8s_openapi::api::{
    core::v1::{Namespace, Pod},
    networking::v1::NetworkPolicy,
};

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const PROBE_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a policy change may take to reach every node (the bound), reported against.
const PROPAGATION: Duration = Duration::from_secs(1);
/// How long a test waits for every node's maps to match the API before it fails.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Tcp,
    Udp,
}

/// A pod of the matrix: namespace and name.
type Id = (&'static str, &'static str);

struct Matrix {
    pods: Vec<(Id, Ipv4Addr, Netns)>,
}

fn all_ids() -> Vec<Id> {
    NAMESPACES
        .iter()
        .flat_map(|ns| PODS.iter().map(move |pod| (*ns, *pod)))
        .collect()
}

fn manifest(nodes: &[String]) -> String {
    let mut out = String::new();
    for (n, ns) in NAMESPACES.iter().enumerate() {
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: \"{ns}\"\n  labels:\n    ns: \"{ns}\"\n---\n"
        );
        for (p, pod) in PODS.iter().enumerate() {
            let node = &nodes[(n + p) % nodes.len()];
            let _ = write!(
                out,
                "apiVersion: v1
kind: Pod
metadata:
  name: {pod}
  namespace: \"{ns}\"
  labels:
    pod: {pod}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: docker.io/flotilla/testapp:v1
    imagePullPolicy: Never
    env:
    - name: TESTAPP_ECHO_PORTS
      value: \"80,81\"
    ports:
    - name: serve-80-tcp
      containerPort: 80
    - name: serve-80-udp
      containerPort: 80
      protocol: UDP
    - name: serve-81-tcp
      containerPort: 81
    - name: serve-81-udp
      containerPort: 81
      protocol: UDP
    readinessProbe:
      httpGet:
        path: /healthz
        port: 8080
      periodSeconds: 1
---
"
            );
        }
    }
    out
}

/// What a probe found: the echo came back, nothing came back (a policy drop: the connect or
/// the read timed out, or was refused), or the probe itself broke (it could not enter the
/// namespace, the echo was wrong, an unexpected error), which must never pass for "denied".
type Probed = Result<bool, String>;

/// One probe: a TCP echo (connect, send, read back) or a UDP echo.
fn probe_once(netns: &Netns, to: SocketAddr, proto: Proto) -> Probed {
    let echoed = netns
        .run(|| -> std::io::Result<bool> {
            match proto {
                Proto::Tcp => {
                    let mut stream = TcpStream::connect_timeout(&to, PROBE_TIMEOUT)?;
                    stream.set_read_timeout(Some(PROBE_TIMEOUT))?;
                    stream.write_all(b"ping")?;
                    let mut answer = [0; 4];
                    stream.read_exact(&mut answer)?;
                    Ok(&answer == b"ping")
                }
                Proto::Udp => {
                    let socket = UdpSocket::bind("0.0.0.0:0")?;
                    socket.set_read_timeout(Some(PROBE_TIMEOUT))?;
                    socket.send_to(b"ping", to)?;
                    let mut answer = [0; 16];
                    let (read, _) = socket.recv_from(&mut answer)?;
                    Ok(&answer[..read] == b"ping")
                }
            }
        })
        .map_err(|err| format!("{proto:?} probe to {to}: entering the namespace: {err}"))?;
    match echoed {
        Ok(true) => Ok(true),
        Ok(false) => Err(format!("{proto:?} probe to {to}: a wrong echo came back")),
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::TimedOut | ErrorKind::WouldBlock | ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(false)
        }
        Err(err) => Err(format!("{proto:?} probe to {to}: {err}")),
    }
}

/// A probe with one retry (a reach is not retried).
fn probe(netns: &Netns, to: SocketAddr, proto: Proto) -> Probed {
    match probe_once(netns, to, proto) {
        Ok(true) => Ok(true),
        _ => probe_once(netns, to, proto),
    }
}

impl Matrix {
    fn ip(&self, id: Id) -> Ipv4Addr {
        self.pods
            .iter()
            .find(|(pod, _, _)| *pod == id)
            .map(|(_, ip, _)| *ip)
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    /// The 9x9 reachability on `port`/`proto`, rows = from, columns = to.
    fn probe(&self, port: u16, proto: Proto) -> Vec<Vec<Probed>> {
        std::thread::scope(|scope| {
            let handles: Vec<Vec<_>> = self
                .pods
                .iter()
                .map(|(_, _, netns)| {
                    self.pods
                        .iter()
                        .map(|(_, ip, _)| {
                            let to = SocketAddr::from((*ip, port));
                            scope.spawn(move || probe(netns, to, proto))
                        })
                        .collect()
                })
                .collect();
            handles
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|handle| {
                            handle
                                .join()
                                .unwrap_or_else(|_| Err("the probe's thread panicked".to_owned()))
                        })
                        .collect()
                })
                .collect()
        })
    }
}

/// The matrix as '.' (reachable), 'X' (not) and '!' (the probe broke).
fn render(matrix: &[Vec<Probed>]) -> String {
    let ids = all_ids();
    let mut out = String::from("from\\to");
    for (ns, pod) in &ids {
        let _ = write!(out, " {ns}/{pod}");
    }
    out.push('\n');
    for (row, (ns, pod)) in matrix.iter().zip(&ids) {
        let _ = write!(out, "{ns}/{pod}   ");
        for cell in row {
            out.push_str(match cell {
                Ok(true) => "   . ",
                Ok(false) => "   X ",
                Err(_) => "   ! ",
            });
        }
        out.push('\n');
    }
    out
}

/// Probes until the matrix equals `expected(from, to)` (the change is programmed on every node
/// by then; once more a second later), printing both on failure.
async fn expect(
    matrix: &Matrix,
    case: &str,
    port: u16,
    proto: Proto,
    expected: impl Fn(Id, Id) -> bool,
) -> anyhow::Result<()> {
    let ids = all_ids();
    let want: Vec<Vec<Probed>> = ids
        .iter()
        .map(|from| {
            ids.iter()
                .map(|to| Ok(from == to || expected(*from, *to)))
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut got = Vec::new();
    for attempt in 0..2 {
        got = matrix.probe(port, proto);
        if got == want {
            eprintln!(
                "{case}: {proto:?}/{port} as expected ({:?}{})",
                started.elapsed(),
                if attempt > 0 {
                    ", on the second try"
                } else {
                    ""
                }
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let broken: Vec<&String> = got
        .iter()
        .flatten()
        .filter_map(|cell| cell.as_ref().err())
        .collect();
    bail!(
        "{case}: {proto:?}/{port} reachability differs ('.' reachable, 'X' not, '!' the probe broke)\nexpected:\n{}got:\n{}broken probes: {broken:?}",
        render(&want),
        render(&got)
    )
}

async fn apply_policies(local: &LocalCluster, name: &str, manifest: &str) -> anyhow::Result<()> {
    local.cluster.apply(&format!("{name}.yaml"), manifest)?;
    wait_programmed(local, name).await
}

/// Waits until every node's policy maps hold what the cluster's objects ask for now (bounded by
/// [`PROPAGATION_LIMIT`]), and says how long that took against the [`PROPAGATION`] bound.
async fn wait_programmed(local: &LocalCluster, change: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    eventually(
        PROPAGATION_LIMIT,
        &format!("{change}: every node's policy maps as the API asks"),
        || policies_programmed(local),
    )
    .await?;
    let took = started.elapsed();
    eprintln!(
        "{change}: programmed on every node within {took:?}{}",
        if took > PROPAGATION {
            " (over the bound; the time includes reading the API with kubectl)"
        } else {
            ""
        }
    );
    Ok(())
}

/// A node's policy maps with identity numbers replaced by what they stand for (the prefixes
/// the identity cache maps to them; 0 stays "any peer"), since the agent numbers identities on
/// its own: allow rules as (prefix length, endpoint, direction, peer, protocol, port) and the
/// non-zero isolation flags of local endpoints.
#[derive(Debug, PartialEq, Eq)]
struct PolicyState {
    rules: BTreeSet<(u32, Ipv4Addr, u8, Vec<Prefix>, u8, u16)>,
    flags: BTreeMap<Ipv4Addr, u32>,
}

/// An ipcache key: address and prefix length.
type Prefix = (Ipv4Addr, u32);

impl PolicyState {
    fn new(
        ipcache: &BTreeMap<Prefix, u32>,
        rules: &BTreeSet<(u32, PolicyKey)>,
        flags: impl IntoIterator<Item = (Ipv4Addr, u32)>,
    ) -> Self {
        let mut members: BTreeMap<u32, Vec<Prefix>> = BTreeMap::new();
        for (prefix, identity) in ipcache {
            members.entry(*identity).or_default().push(*prefix);
        }
        // A peer identity the cache does not hold (none is expected) compares as one unknown.
        let unknown = vec![(Ipv4Addr::BROADCAST, 33)];
        let rules = rules
            .iter()
            .map(|(len, key)| {
                let peer = if key.identity == 0 {
                    Vec::new()
                } else {
                    members.get(&key.identity).unwrap_or(&unknown).clone()
                };
                (
                    *len,
                    Ipv4Addr::from(key.endpoint),
                    key.direction,
                    peer,
                    key.proto,
                    key.port,
                )
            })
            .collect();
        let flags = flags.into_iter().filter(|(_, flags)| *flags != 0).collect();
        Self { rules, flags }
    }
}

/// Whether every node's policy maps equal what the agent's own computation
/// (`policy::desired`) gives for the cluster's Pods, Namespaces and NetworkPolicies as the API
/// serves them now; an error names the nodes that differ and how.
fn policies_programmed(local: &LocalCluster) -> anyhow::Result<Option<()>> {
    fn items<T: serde::de::DeserializeOwned>(list: &serde_json::Value) -> anyhow::Result<Vec<T>> {
        Ok(serde_json::from_value(list["items"].clone())?)
    }
    let cluster = &local.cluster;
    let pods: Vec<Pod> = items(&cluster.json(&["get", "pods", "-A"])?)?;
    let namespaces: Vec<Namespace> = items(&cluster.json(&["get", "namespaces"])?)?;
    let policies: Vec<NetworkPolicy> = items(&cluster.json(&["get", "networkpolicies", "-A"])?)?;
    let (pods, namespaces, policies): (Vec<&Pod>, Vec<&Namespace>, Vec<&NetworkPolicy>) = (
        pods.iter().collect(),
        namespaces.iter().collect(),
        policies.iter().collect(),
    );
    let mut differing = Vec::new();
    for node in local.nodes() {
        let name = &node.config.node_name;
        let wanted = policy::desired(
            &pods,
            &namespaces,
            &policies,
            name,
            &mut policy::Identities::default(),
        );
        let wanted = PolicyState::new(&wanted.ipcache, &wanted.rules, wanted.flags);
        let pins = NodePins::new(name)?;
        let maps = PolicyMaps::open(&pins)?;
        let endpoints = NetworkMaps::open(&pins)?.endpoint_entries()?;
        let programmed = PolicyState::new(
            &maps.ipcache()?,
            &maps.rules()?,
            endpoints
                .into_iter()
                .map(|(address, endpoint)| (address, endpoint.flags)),
        );
        if programmed != wanted {
            differing.push(format!(
                "{name}: {} rules and flags {:?} programmed, {} rules and flags {:?} wanted",
                programmed.rules.len(),
                programmed.flags,
                wanted.rules.len(),
                wanted.flags
            ));
        }
    }
    if differing.is_empty() {
        Ok(Some(()))
    } else {
        Err(anyhow::anyhow!("not yet: {}", differing.join("; ")))
    }
}

fn clear_policies(cluster: &support::Cluster) -> anyhow::Result<()> {
    for ns in NAMESPACES {
        cluster.kubectl_ok(&["delete", "networkpolicy", "--all", "-n", ns])?;
    }
    Ok(())
}

fn policy(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: \"{ns}\"\nspec:\n{spec}---\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn network_policies_match_the_upstream_truth_tables() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 3).await?;
    let result = run_cases(&local, started).await;
    if result.is_err() {
        for node in local.nodes() {
            let name = &node.config.node_name;
            let drops = flotilla_agent::datapath::pins::NodePins::new(name)
                .map_err(anyhow::Error::from)
                .and_then(|pins| {
                    Ok(flotilla_agent::datapath::network::NetworkMaps::open(&pins)?.drops()?)
                });
            eprintln!("{name} drops: {drops:?}");
        }
    }
    local.shutdown().await;
    result
}

/// The verdict stream: the nodes' policy-drop events name the denied probes to x's pods (ingress,
/// port 80, TCP and UDP), and the drop counters count them.
fn drops_were_reported(local: &LocalCluster, matrix: &Matrix) -> anyhow::Result<()> {
    let x_pods: Vec<Ipv4Addr> = PODS.iter().map(|pod| matrix.ip(("x", pod))).collect();
    let mut events = Vec::new();
    let mut counted = 0;
    for node in local.nodes() {
        let pins = NodePins::new(&node.config.node_name)?;
        policy::read_drops(&pins, false, |drop| events.push(drop))?;
        counted += NetworkMaps::open(&pins)?
            .drops()?
            .into_iter()
            .filter(|(reason, _)| reason.name() == "policy_denied")
            .map(|(_, count)| count)
            .sum::<u64>();
    }
    for proto in ["TCP", "UDP"] {
        let denied = events
            .iter()
            .filter(|drop| {
                drop.direction == "ingress"
                    && drop.proto == proto
                    && drop.dport == 80
                    && x_pods.contains(&drop.dst)
            })
            .count();
        anyhow::ensure!(
            denied > 0,
            "no {proto} ingress drop to x's pods in the policy event stream: {events:?}"
        );
    }
    anyhow::ensure!(
        !events.is_empty() && counted >= events.len() as u64,
        "policy_denied counted {counted}, the stream had {} events",
        events.len()
    );
    eprintln!(
        "verdict stream: {} policy drops reported, {counted} counted; e.g. {:?}",
        events.len(),
        events.first()
    );
    Ok(())
}

async fn run_cases(local: &LocalCluster, started: Instant) -> anyhow::Result<()> {
    let cluster = &local.cluster;
    let nodes: Vec<String> = local.nodes().map(|n| n.config.node_name.clone()).collect();
    cluster.apply("matrix.yaml", &manifest(&nodes))?;
    let ips = eventually(Duration::from_secs(120), "9 pods Ready", || {
        let mut ips = Vec::new();
        for ns in NAMESPACES {
            let pods = cluster.json(&["get", "pods", "-n", ns])?;
            for pod in objects::live_pods(&pods) {
                let ip = pod.ip.and_then(|ip| ip.parse().ok());
                if let (true, Some(ip)) = (pod.ready, ip) {
                    ips.push((ns, pod.name, ip));
                }
            }
        }
        Ok((ips.len() == 9).then_some(ips))
    })
    .await?;
    let mut pods = Vec::new();
    for id in all_ids() {
        let ip: Ipv4Addr = ips
            .iter()
            .find(|(ns, name, _)| *ns == id.0 && name == id.1)
            .map(|(_, _, ip)| *ip)
            .context("pod address")?;
        pods.push((id, ip, local.pod_netns(ip)?));
    }
    let matrix = Matrix { pods };
    eprintln!("9 pods ready after {:?}", started.elapsed());

    let everyone = |_: Id, _: Id| true;
    expect(&matrix, "no policies", 80, Proto::Tcp, everyone).await?;
    expect(&matrix, "no policies", 81, Proto::Udp, everyone).await?;

    // Default deny ingress in x.
    apply_policies(
        local,
        "deny-ingress",
        &policy(
            "x",
            "deny-ingress",
            "  podSelector: {}\n  policyTypes: [Ingress]\n",
        ),
    )
    .await?;
    expect(&matrix, "default deny ingress", 80, Proto::Tcp, |_, to| {
        to.0 != "x"
    })
    .await?;
    expect(&matrix, "default deny ingress", 80, Proto::Udp, |_, to| {
        to.0 != "x"
    })
    .await?;
    drops_were_reported(local, &matrix)?;
    clear_policies(cluster)?;

    // Default deny egress in x.
    apply_policies(
        local,
        "deny-egress",
        &policy(
            "x",
            "deny-egress",
            "  podSelector: {}\n  policyTypes: [Egress]\n",
        ),
    )
    .await?;
    expect(&matrix, "default deny egress", 80, Proto::Tcp, |from, _| {
        from.0 != "x"
    })
    .await?;
    expect(&matrix, "default deny egress", 81, Proto::Udp, |from, _| {
        from.0 != "x"
    })
    .await?;
    clear_policies(cluster)?;

    // The dev/prod case: x accepts only its own namespace.
    apply_policies(
        local,
        "same-namespace",
        &policy(
            "x",
            "same-namespace",
            "  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {}\n",
        ),
    )
    .await?;
    expect(
        &matrix,
        "same namespace only",
        80,
        Proto::Tcp,
        |from, to| to.0 != "x" || from.0 == "x",
    )
    .await?;
    clear_policies(cluster)?;

    // namespaceSelector: x/a from namespace y only.
    apply_policies(
        local,
        "ns-selector",
        &policy(
            "x",
            "ns-selector",
            "  podSelector:\n    matchLabels:\n      pod: a\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels:\n          ns: \"y\"\n",
        ),
    )
    .await?;
    expect(&matrix, "namespaceSelector", 80, Proto::Tcp, |from, to| {
        to != ("x", "a") || from.0 == "y"
    })
    .await?;
    clear_policies(cluster)?;

    // podSelector AND namespaceSelector in one peer: x/a from pod b of namespaces y and z.
    apply_policies(
        local,
        "pod-and-ns",
        &policy(
            "x",
            "pod-and-ns",
            "  podSelector:\n    matchLabels:\n      pod: a\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchExpressions:\n        - {key: ns, operator: In, values: [\"y\", \"z\"]}\n      podSelector:\n        matchLabels:\n          pod: b\n",
        ),
    )
    .await?;
    expect(
        &matrix,
        "podSelector AND namespaceSelector",
        80,
        Proto::Tcp,
        |from, to| to != ("x", "a") || (from.0 != "x" && from.1 == "b"),
    )
    .await?;
    clear_policies(cluster)?;

    // ipBlock with except: x/a may reach the cluster CIDR except z/c.
    let zc = matrix.ip(("z", "c"));
    apply_policies(
        local,
        "ipblock",
        &policy(
            "x",
            "ipblock",
            &format!(
                "  podSelector:\n    matchLabels:\n      pod: a\n  policyTypes: [Egress]\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.244.0.0/16\n        except: [{zc}/32]\n"
            ),
        ),
    )
    .await?;
    expect(
        &matrix,
        "ipBlock with except",
        80,
        Proto::Tcp,
        |from, to| from != ("x", "a") || to != ("z", "c"),
    )
    .await?;
    clear_policies(cluster)?;

    // Named ports: x/a accepts TCP on its port named serve-81-tcp only.
    apply_policies(
        local,
        "named-port",
        &policy(
            "x",
            "named-port",
            "  podSelector:\n    matchLabels:\n      pod: a\n  ingress:\n  - ports:\n    - port: serve-81-tcp\n",
        ),
    )
    .await?;
    expect(&matrix, "named port", 81, Proto::Tcp, everyone).await?;
    expect(&matrix, "named port", 80, Proto::Tcp, |_, to| {
        to != ("x", "a")
    })
    .await?;
    expect(&matrix, "named port", 81, Proto::Udp, |_, to| {
        to != ("x", "a")
    })
    .await?;
    clear_policies(cluster)?;

    // Named ports on egress resolve on the destination: x/a may send to serve-80-udp only.
    apply_policies(
        local,
        "named-port-egress",
        &policy(
            "x",
            "named-port-egress",
            "  podSelector:\n    matchLabels:\n      pod: a\n  policyTypes: [Egress]\n  egress:\n  - ports:\n    - port: serve-80-udp\n      protocol: UDP\n",
        ),
    )
    .await?;
    expect(&matrix, "named port egress", 80, Proto::Udp, everyone).await?;
    expect(&matrix, "named port egress", 80, Proto::Tcp, |from, _| {
        from != ("x", "a")
    })
    .await?;
    clear_policies(cluster)?;

    // endPort: x/a accepts TCP 75-80, so 80 but not 81.
    apply_policies(
        local,
        "end-port",
        &policy(
            "x",
            "end-port",
            "  podSelector:\n    matchLabels:\n      pod: a\n  ingress:\n  - ports:\n    - port: 75\n      endPort: 80\n      protocol: TCP\n",
        ),
    )
    .await?;
    expect(&matrix, "endPort range", 80, Proto::Tcp, everyone).await?;
    expect(&matrix, "endPort range", 81, Proto::Tcp, |_, to| {
        to != ("x", "a")
    })
    .await?;
    clear_policies(cluster)?;

    // Two policies for x/a: their union (x/b, and namespace y).
    apply_policies(
        local,
        "union",
        &[
            policy(
                "x",
                "from-b",
                "  podSelector:\n    matchLabels:\n      pod: a\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels:\n          pod: b\n",
            ),
            policy(
                "x",
                "from-y",
                "  podSelector:\n    matchLabels:\n      pod: a\n  ingress:\n  - from:\n    - namespaceSelector:\n        matchLabels:\n          ns: \"y\"\n",
            ),
        ]
        .concat(),
    )
    .await?;
    expect(&matrix, "policies unioned", 80, Proto::Tcp, |from, to| {
        to != ("x", "a") || from == ("x", "b") || from.0 == "y"
    })
    .await?;
    clear_policies(cluster)?;

    updated_and_deleted_while_traffic_runs(local, &matrix).await?;
    from_outside_through_the_node(local, &matrix).await?;
    eprintln!("every case passed after {:?}", started.elapsed());
    Ok(())
}

/// A client outside the cluster (the underlay namespace, with a route to x/a through x/a's
/// node): its packets reach the pod through the node's stack, where `to_pod` judges them by
/// x/a's ingress policy. Reachable with no policy and with an ipBlock that holds the client,
/// not with a policy that admits only pods.
async fn from_outside_through_the_node(
    local: &LocalCluster,
    matrix: &Matrix,
) -> anyhow::Result<()> {
    let cluster = &local.cluster;
    let target = matrix
        .pods
        .iter()
        .find(|(id, ..)| *id == ("x", "a"))
        .map(|(_, ip, _)| *ip)
        .context("x/a's address")?;
    let node_name = cluster.json(&["get", "pod", "a", "-n", "x"])?["spec"]["nodeName"]
        .as_str()
        .context("x/a has no node")?
        .to_owned();
    let node_ip: Ipv4Addr = local
        .nodes()
        .find(|node| node.config.node_name == node_name)
        .context("x/a's node")?
        .config
        .node_ip
        .parse()?;
    let outside = local.bed.underlay().context("the test bed's underlay")?;
    let route = format!("{target}/32");
    let added = outside.run(|| {
        std::process::Command::new("ip")
            .args(["route", "add", &route, "via", &node_ip.to_string()])
            .status()
    })??;
    anyhow::ensure!(added.success(), "ip route add {route} via {node_ip} failed");
    let to = SocketAddr::from((target, 80));
    let reachable = || probe(outside, to, Proto::Tcp).map_err(anyhow::Error::msg);
    anyhow::ensure!(reachable()?, "outside -> x/a without a policy: no answer");

    let pods_only = policy(
        "x",
        "pods-only",
        "  podSelector:\n    matchLabels:\n      pod: a\n  ingress:\n  - from:\n    - namespaceSelector: {}\n",
    );
    apply_policies(local, "pods-only", &pods_only).await?;
    let denied = eventually(Duration::from_secs(10), "outside -> x/a denied", || {
        Ok((!reachable()?).then_some(()))
    })
    .await;
    clear_policies(cluster)?;
    denied?;
    eprintln!("outside -> x/a through the node's stack: denied by a pods-only policy");

    let from_outside = policy(
        "x",
        "from-outside",
        &format!(
            "  podSelector:\n    matchLabels:\n      pod: a\n  ingress:\n  - from:\n    - ipBlock:\n        cidr: {}/24\n",
            Ipv4Addr::from(u32::from(node_ip) & 0xffff_ff00)
        ),
    );
    apply_policies(local, "from-outside", &from_outside).await?;
    let allowed = eventually(Duration::from_secs(10), "outside -> x/a allowed", || {
        Ok(reachable()?.then_some(()))
    })
    .await;
    clear_policies(cluster)?;
    allowed?;
    eprintln!("outside -> x/a through the node's stack: allowed by an ipBlock");
    Ok(())
}

/// A policy for x/a allowing x/b, then also namespace z, then deleted; a connection x/b -> x/a
/// opened under the first version keeps echoing through every change (allowed by each), and
/// new connections follow each version.
async fn updated_and_deleted_while_traffic_runs(
    local: &LocalCluster,
    matrix: &Matrix,
) -> anyhow::Result<()> {
    let cluster = &local.cluster;
    let v1 = policy(
        "x",
        "changing",
        "  podSelector:\n    matchLabels:\n      pod: a\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels:\n          pod: b\n",
    );
    let v2 = policy(
        "x",
        "changing",
        "  podSelector:\n    matchLabels:\n      pod: a\n  ingress:\n  - from:\n    - podSelector:\n        matchLabels:\n          pod: b\n    - namespaceSelector:\n        matchLabels:\n          ns: \"z\"\n",
    );
    apply_policies(local, "changing-v1", &v1).await?;
    expect(matrix, "update: v1", 80, Proto::Tcp, |from, to| {
        to != ("x", "a") || from == ("x", "b")
    })
    .await?;
    let xb = matrix
        .pods
        .iter()
        .find(|(id, _, _)| *id == ("x", "b"))
        .map(|(_, _, netns)| netns)
        .context("x/b")?;
    let to = SocketAddr::from((matrix.ip(("x", "a")), 80));
    let mut stream = xb
        .run(|| TcpStream::connect_timeout(&to, PROBE_TIMEOUT))?
        .context("the long-lived connection x/b -> x/a")?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (stop, echoed) = (stop.clone(), echoed.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            while !stop.load(Ordering::Relaxed) {
                stream.write_all(b"tick")?;
                let mut answer = [0; 4];
                stream.read_exact(&mut answer)?;
                echoed.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(())
        })
    };
    apply_policies(local, "changing-v2", &v2).await?;
    expect(matrix, "update: v2", 80, Proto::Tcp, |from, to| {
        to != ("x", "a") || from == ("x", "b") || from.0 == "z"
    })
    .await?;
    cluster.kubectl_ok(&["delete", "networkpolicy", "changing", "-n", "x"])?;
    wait_programmed(local, "changing deleted").await?;
    expect(matrix, "update: deleted", 80, Proto::Tcp, |_, _| true).await?;
    let before = echoed.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    traffic
        .join()
        .map_err(|_| anyhow::anyhow!("the traffic thread panicked"))?
        .context("the connection opened under v1 broke during the changes")?;
    let total = echoed.load(Ordering::Relaxed);
    anyhow::ensure!(total > before, "the long-lived connection stalled");
    eprintln!("long-lived connection echoed {total} times through update and delete");
    Ok(())
}
