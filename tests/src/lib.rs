//! The local multi-node test bed: "nodes" are network namespaces joined by veth to a bridge in an
//! `underlay` namespace, "pods" are namespaces hanging off a node by a veth pair. Used by the
//! privileged integration tests and (later) by `cargo xtask up`.
//!
//! Every namespace and bpffs pin a test bed creates carries its run prefix
//! (`fltb-<pid>-<n>-`), so parallel runs cannot collide, and [`sweep_stale`] can remove what a
//! killed run left behind. Dropping a [`Testbed`] tears it down, also when a test panics; a
//! creation that fails half-way removes what it had created before returning the error.

pub mod admission_webhook;
pub mod containerd;
pub mod flannel;
pub mod in_cluster;
pub mod kube_proxy;
pub mod netlink;
pub mod netns;
pub mod objects;
pub mod perf;
pub mod traffic;

use std::{
    fs, io,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub use netlink::Netlink;
pub use netns::Netns;

/// Prefix of every test-bed run's names; followed by `<pid>-<sequence>-`.
pub const RUN_PREFIX: &str = "fltb-";
/// Where the node agent pins each node's datapath (one directory per node name).
pub const BPF_PIN_ROOT: &str = "/sys/fs/bpf/flotilla";
/// Name of the bridge in the underlay namespace.
pub const UNDERLAY_BRIDGE: &str = "br0";
/// Name of a node's underlay interface and of a pod's interface, inside their namespaces.
pub const NODE_UNDERLAY_IFACE: &str = "eth0";
/// Name of a pod's interface inside its namespace.
pub const POD_IFACE: &str = "eth0";
/// The link-local address pods use as their default gateway (answered by a static neighbour
/// entry pointing at the host side of their veth, as Calico and Cilium do).
pub const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The third octet of a test bed's underlay subnet unless configured: one per process, in
/// 100..=199, so test runs of several worktrees at once do not give the host two routes (and two
/// host links with one address) for one subnet; `cargo xtask up` uses 78,
/// tests/tests/integration/testbed.rs 79.
pub fn default_underlay_octet() -> u8 {
    100 + (std::process::id() % 100) as u8
}

/// The default host side of the host link: one per process (test beds with a host link are used
/// one at a time), at most 15 characters.
fn default_host_link_name() -> String {
    format!("fltbh{}", std::process::id() % 1_000_000_000)
}

/// The underlay subnet 192.168.`octet`.0/24: the bridge is .1, node N is .(10+N), the host .254.
fn underlay_address(octet: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, octet, host)
}

/// Errors from building, using or tearing down a test bed.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// A file-system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// To which path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{action} {object}: {errno}{hint}")]
    Sys {
        /// What was being done.
        action: &'static str,
        /// To which object.
        object: String,
        /// The errno.
        errno: nix::errno::Errno,
        /// A hint on the usual cause.
        hint: &'static str,
    },
    /// A netlink request failed.
    #[error("{action} in network namespace {netns}: {source}")]
    Netlink {
        /// What was being done.
        action: String,
        /// In which namespace.
        netns: String,
        /// The underlying error.
        #[source]
        source: rtnetlink::Error,
    },
    /// Something that must not exist yet does.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Something that must exist does not.
    #[error("{0} does not exist")]
    NotFound(String),
    /// The request itself is wrong.
    #[error("invalid {0}")]
    Invalid(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl TestbedError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn sys(action: &'static str, object: &str, errno: nix::errno::Errno) -> Self {
        let hint = if errno == nix::errno::Errno::EPERM {
            " (the test bed needs root: CAP_SYS_ADMIN and CAP_NET_ADMIN)"
        } else {
            ""
        };
        Self::Sys {
            action,
            object: object.to_owned(),
            errno,
            hint,
        }
    }
}

/// How to build a test bed.
#[derive(Clone, Debug)]
pub struct TestbedConfig {
    /// Number of nodes (1 to 200).
    pub nodes: usize,
    /// Name prefix; by default `fltb-<pid>-<n>-`, unique per process and test bed.
    pub prefix: Option<String>,
    /// Third octet of the underlay subnet 192.168.X.0/24 (default [`default_underlay_octet`]).
    /// Test beds that are up at the same time with a host link need different subnets, or the
    /// host gets two routes for one subnet: `cargo xtask up`'s long-lived cluster uses 78.
    pub underlay_octet: u8,
    /// Name of the host side of the host link ([`Testbed::link_host`]); by default `fltbh<pid>`.
    /// At most 15 characters.
    pub host_link: Option<String>,
    /// Number of control-plane machines (0 to [`MAX_CONTROL_PLANES`]): namespaces
    /// `<prefix>cp<N>` on the underlay at [`Self::control_plane_ip`], with nothing but their
    /// address, for control planes that each run on a machine of their own.
    pub control_planes: usize,
    /// How many of the nodes (the last ones) sit on a second segment: the nodes' addresses
    /// become /25s, the first nodes' in 192.168.X.0/25 as before, these at .(140+N) in
    /// 192.168.X.128/25, and the underlay namespace routes between the two halves (the bridge
    /// holds .1 and .129), so each half reaches the other only through a router, as nodes in
    /// two racks would. 0 (the default) keeps every node on one /24. At most 100 nodes then.
    pub remote_nodes: usize,
}

/// Most control-plane machines a test bed has (their addresses sit between the bridge's .1 and
/// the first node's .11).
pub const MAX_CONTROL_PLANES: usize = 9;

impl TestbedConfig {
    /// A test bed of `nodes` nodes with a fresh run prefix on this process's underlay subnet.
    pub fn nodes(nodes: usize) -> Self {
        Self {
            nodes,
            prefix: None,
            underlay_octet: default_underlay_octet(),
            host_link: None,
            control_planes: 0,
            remote_nodes: 0,
        }
    }

    /// The address of control-plane machine `number` (1-based) on this config's underlay.
    pub fn control_plane_ip(&self, number: usize) -> Ipv4Addr {
        underlay_address(
            self.underlay_octet,
            1 + (number.min(MAX_CONTROL_PLANES) as u8),
        )
    }

    /// The address of node `number` (1-based) on this config's underlay.
    pub fn node_ip(&self, number: usize) -> Ipv4Addr {
        if self.is_remote(number) {
            // `create` limits nodes to 100 with remote nodes, so 140 + number fits in a byte.
            return underlay_address(self.underlay_octet, 140 + (number.min(100) as u8));
        }
        // `create` limits nodes to 200, so 10 + number fits in a byte.
        underlay_address(self.underlay_octet, 10 + (number.min(200) as u8))
    }

    /// Whether node `number` (1-based) sits on the second segment ([`Self::remote_nodes`]).
    pub fn is_remote(&self, number: usize) -> bool {
        self.remote_nodes > 0 && number > self.nodes.saturating_sub(self.remote_nodes)
    }

    /// The prefix length of the nodes' underlay addresses, and for node `number` the other
    /// half's network with its router (none without remote nodes).
    fn node_segment(&self, number: usize) -> (u8, Option<(Ipv4Addr, Ipv4Addr)>) {
        if self.remote_nodes == 0 {
            return (24, None);
        }
        let octet = self.underlay_octet;
        let near = (underlay_address(octet, 0), underlay_address(octet, 1));
        let far = (underlay_address(octet, 128), underlay_address(octet, 129));
        if self.is_remote(number) {
            (25, Some((near.0, far.1)))
        } else {
            (25, Some((far.0, near.1)))
        }
    }

    /// The host's address on this config's underlay once [`Testbed::link_host`] ran.
    pub fn host_ip(&self) -> Ipv4Addr {
        underlay_address(self.underlay_octet, 254)
    }
}

/// A fresh prefix for this process: `fltb-<pid>-<sequence>-`.
pub fn unique_prefix() -> String {
    static SEQUENCE: AtomicU32 = AtomicU32::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{RUN_PREFIX}{}-{sequence}-", std::process::id())
}

/// One node: a network namespace with an underlay address and a pod CIDR.
#[derive(Clone, Debug)]
pub struct Node {
    name: String,
    netns: Netns,
    netlink: Netlink,
    underlay_ip: Ipv4Addr,
    pod_cidr: (Ipv4Addr, u8),
    next_pod_host: u8,
}

impl Node {
    /// The node's name (also its namespace's name and its bpffs pin directory).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The node's namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }
    /// A netlink connection inside the node's namespace.
    pub fn netlink(&self) -> &Netlink {
        &self.netlink
    }
    /// The node's address on the underlay bridge.
    pub fn underlay_ip(&self) -> Ipv4Addr {
        self.underlay_ip
    }
    /// The node's pod CIDR (network address, prefix length).
    pub fn pod_cidr(&self) -> (Ipv4Addr, u8) {
        self.pod_cidr
    }
}

/// One pod: a namespace whose `eth0` is a veth peer of `host_iface` in its node's namespace.
#[derive(Clone, Debug)]
pub struct Pod {
    name: String,
    node: usize,
    netns: Netns,
    ip: Ipv4Addr,
    host_iface: String,
}

impl Pod {
    /// The pod's name (unique in the test bed).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Index of the node the pod runs on.
    pub fn node(&self) -> usize {
        self.node
    }
    /// The pod's namespace.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }
    /// The pod's IPv4 address (a /32 on its eth0).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }
    /// The host side of the pod's veth pair, in the node's namespace.
    pub fn host_iface(&self) -> &str {
        &self.host_iface
    }
}

/// A running test bed. Dropping it removes everything it created (unless [`Testbed::keep`] handed
/// it over).
#[derive(Debug)]
pub struct Testbed {
    prefix: String,
    config: TestbedConfig,
    underlay: Option<Netns>,
    control_planes: Vec<KeptNode>,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    torn_down: bool,
}

impl Testbed {
    /// Builds `config.nodes` nodes on an underlay bridge. Stale leftovers of killed runs are swept
    /// first. On failure nothing of this test bed is left behind.
    pub async fn create(config: TestbedConfig) -> Result<Self, TestbedError> {
        if !(1..=200).contains(&config.nodes) {
            return Err(TestbedError::Invalid(format!(
                "node count {}: a test bed has 1 to 200 nodes",
                config.nodes
            )));
        }
        if let Err(err) = sweep_stale() {
            tracing::warn!("sweeping stale test beds failed: {err}");
        }
        if config.remote_nodes > config.nodes || (config.remote_nodes > 0 && config.nodes > 100) {
            return Err(TestbedError::Invalid(format!(
                "{} remote nodes of {}: at most every node, and at most 100 nodes with remote ones",
                config.remote_nodes, config.nodes
            )));
        }
        if config.control_planes > MAX_CONTROL_PLANES {
            return Err(TestbedError::Invalid(format!(
                "control-plane count {}: a test bed has 0 to {MAX_CONTROL_PLANES}",
                config.control_planes
            )));
        }
        if config
            .host_link
            .as_ref()
            .is_some_and(|name| name.is_empty() || name.len() > 15)
        {
            return Err(TestbedError::Invalid(format!(
                "host link name {:?}: use 1 to 15 characters",
                config.host_link
            )));
        }
        let prefix = config.prefix.clone().unwrap_or_else(unique_prefix);
        let nodes = config.nodes;
        let mut bed = Self {
            prefix,
            config,
            underlay: None,
            control_planes: Vec::new(),
            nodes: Vec::new(),
            pods: Vec::new(),
            torn_down: false,
        };
        // On error `bed` is dropped here, which removes whatever was created so far.
        bed.build_underlay(nodes).await?;
        Ok(bed)
    }

    async fn build_underlay(&mut self, nodes: usize) -> Result<(), TestbedError> {
        let underlay = Netns::create(&format!("{}underlay", self.prefix))?;
        self.underlay = Some(underlay.clone());
        let underlay_nl = Netlink::connect(&underlay)?;
        underlay_nl.set_up("lo").await?;
        underlay_nl.add_bridge(UNDERLAY_BRIDGE).await?;
        underlay_nl
            .add_address(
                UNDERLAY_BRIDGE,
                IpAddr::V4(underlay_address(self.config.underlay_octet, 1)),
                24,
            )
            .await?;
        underlay_nl.set_up(UNDERLAY_BRIDGE).await?;
        if self.config.remote_nodes > 0 {
            // The router between the two halves; it must not tell the nodes to skip it (ICMP
            // redirects), or the halves would talk directly after all.
            let router = underlay_address(self.config.underlay_octet, 129);
            underlay_nl
                .add_address(UNDERLAY_BRIDGE, IpAddr::V4(router), 25)
                .await?;
            underlay.sysctl("net/ipv4/ip_forward", "1")?;
            underlay.sysctl("net/ipv4/conf/all/send_redirects", "0")?;
            underlay.sysctl(
                &format!("net/ipv4/conf/{UNDERLAY_BRIDGE}/send_redirects"),
                "0",
            )?;
        }

        for number in 1..=self.config.control_planes {
            let name = format!("{}cp{number}", self.prefix);
            let netns = Netns::create(&name)?;
            let underlay_ip = self.config.control_plane_ip(number);
            self.control_planes.push(KeptNode {
                name,
                netns: netns.clone(),
                underlay_ip,
            });
            let machine_nl = Netlink::connect(&netns)?;
            machine_nl.set_up("lo").await?;
            let port = format!("c{number}");
            connect_veth(
                &underlay_nl,
                &port,
                &netns,
                &machine_nl,
                NODE_UNDERLAY_IFACE,
            )
            .await?;
            underlay_nl.set_master(&port, UNDERLAY_BRIDGE).await?;
            underlay_nl.set_up(&port).await?;
            machine_nl
                .add_address(NODE_UNDERLAY_IFACE, IpAddr::V4(underlay_ip), 24)
                .await?;
            machine_nl.set_up(NODE_UNDERLAY_IFACE).await?;
        }

        for index in 0..nodes {
            let number = index + 1;
            let name = format!("{}node{number}", self.prefix);
            let netns = Netns::create(&name)?;
            let node_nl = Netlink::connect(&netns)?;
            let underlay_ip = self.config.node_ip(number);
            let pod_cidr = (Ipv4Addr::new(10, 244, number as u8, 0), 24);
            self.nodes.push(Node {
                name,
                netns: netns.clone(),
                netlink: node_nl.clone(),
                underlay_ip,
                pod_cidr,
                next_pod_host: 2,
            });
            node_nl.set_up("lo").await?;
            let port = format!("n{number}");
            connect_veth(&underlay_nl, &port, &netns, &node_nl, NODE_UNDERLAY_IFACE).await?;
            underlay_nl.set_master(&port, UNDERLAY_BRIDGE).await?;
            underlay_nl.set_up(&port).await?;
            let (prefix_len, other_half) = self.config.node_segment(number);
            node_nl
                .add_address(NODE_UNDERLAY_IFACE, IpAddr::V4(underlay_ip), prefix_len)
                .await?;
            node_nl.set_up(NODE_UNDERLAY_IFACE).await?;
            if let Some((network, router)) = other_half {
                node_nl
                    .add_route(network, 25, NODE_UNDERLAY_IFACE, Some(router))
                    .await?;
            }
            netns.sysctl("net/ipv4/ip_forward", "1")?;
        }
        Ok(())
    }

    /// Joins the machine's own namespace to the underlay bridge with the config's host address
    /// (.254 of the underlay subnet), so a control plane running on the host and the node
    /// agents in the node namespaces reach each other. The link disappears with the underlay
    /// namespace. Returns the host's address.
    pub async fn link_host(&mut self) -> Result<Ipv4Addr, TestbedError> {
        let underlay = self
            .underlay
            .clone()
            .ok_or_else(|| TestbedError::NotFound("the underlay namespace".into()))?;
        let underlay_nl = Netlink::connect(&underlay)?;
        let host = Netns::host();
        let host_nl = Netlink::connect(&host)?;
        let name = self.host_link_name();
        clear_host_link_name(&host_nl, &name, self.config.host_link.is_none()).await?;
        let host_ip = self.config.host_ip();
        connect_veth(&underlay_nl, "host", &host, &host_nl, &name).await?;
        underlay_nl.set_master("host", UNDERLAY_BRIDGE).await?;
        underlay_nl.set_up("host").await?;
        host_nl.add_address(&name, IpAddr::V4(host_ip), 24).await?;
        host_nl.set_up(&name).await?;
        Ok(host_ip)
    }

    /// The name of the host's link to the underlay ([`Self::link_host`] creates it).
    pub fn host_link_name(&self) -> String {
        self.config
            .host_link
            .clone()
            .unwrap_or_else(default_host_link_name)
    }

    /// Hands the namespaces over to the caller and disarms the teardown on drop: what the test
    /// bed created outlives it, for a cluster that outlives the command that built it. Remove it
    /// later with [`remove_with_prefix`] on [`KeptTestbed::prefix`]. Pods added so far are kept too.
    pub fn keep(mut self) -> KeptTestbed {
        self.torn_down = true;
        KeptTestbed {
            prefix: std::mem::take(&mut self.prefix),
            underlay: self.underlay.take(),
            control_planes: std::mem::take(&mut self.control_planes),
            nodes: self
                .nodes
                .drain(..)
                .map(|node| KeptNode {
                    name: node.name,
                    netns: node.netns,
                    underlay_ip: node.underlay_ip,
                })
                .collect(),
        }
    }

    /// The run prefix of every name this test bed created.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The underlay namespace (holds the bridge).
    pub fn underlay(&self) -> Option<&Netns> {
        self.underlay.as_ref()
    }

    /// The control-plane machines (see [`TestbedConfig::control_planes`]), by number.
    pub fn control_planes(&self) -> &[KeptNode] {
        &self.control_planes
    }

    /// The nodes, in creation order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `index` (0-based).
    pub fn node(&self, index: usize) -> Result<&Node, TestbedError> {
        self.nodes.get(index).ok_or_else(|| {
            TestbedError::NotFound(format!(
                "node {index} (the test bed has {})",
                self.nodes.len()
            ))
        })
    }

    /// The pods, in creation order.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// Adds a pod on node `node` with the next free address of the node's pod CIDR.
    pub async fn add_pod(&mut self, node: usize, name: &str) -> Result<Pod, TestbedError> {
        let host = self.node(node)?.next_pod_host;
        if host == u8::MAX {
            return Err(TestbedError::Invalid(format!(
                "pod {name}: node {node}'s pod CIDR is full"
            )));
        }
        let (network, _) = self.node(node)?.pod_cidr;
        let [a, b, c, _] = network.octets();
        let pod = self
            .add_pod_with_ip(node, name, Ipv4Addr::new(a, b, c, host))
            .await?;
        if let Some(node) = self.nodes.get_mut(node) {
            node.next_pod_host = host + 1;
        }
        Ok(pod)
    }

    /// Adds a pod on node `node` with address `ip`. On failure the pod's namespace and veth are
    /// removed again.
    pub async fn add_pod_with_ip(
        &mut self,
        node: usize,
        name: &str,
        ip: Ipv4Addr,
    ) -> Result<Pod, TestbedError> {
        if name.is_empty()
            || name.len() > 12
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(TestbedError::Invalid(format!(
                "pod name {name:?}: use 1-12 lowercase letters, digits or '-'"
            )));
        }
        if self.pods.iter().any(|pod| pod.name == name) {
            return Err(TestbedError::AlreadyExists(format!("pod {name}")));
        }
        let node_ref = self.node(node)?.clone();
        let host_iface = format!("p-{name}");
        let netns = Netns::create(&format!("{}pod-{name}", self.prefix))?;
        match plumb_pod(&node_ref, &netns, &host_iface, ip).await {
            Ok(()) => {
                let pod = Pod {
                    name: name.to_owned(),
                    node,
                    netns,
                    ip,
                    host_iface,
                };
                self.pods.push(pod.clone());
                Ok(pod)
            }
            Err(err) => {
                // Deleting the namespace removes the veth pair once its peer is inside; before
                // that, the pair lives in the node's namespace.
                let _ = node_ref.netlink.delete_link(&host_iface).await;
                let _ = netns.delete();
                Err(err)
            }
        }
    }

    /// Removes every namespace, process and pin of this test bed. Idempotent.
    pub fn teardown(&mut self) -> Result<(), TestbedError> {
        if self.torn_down {
            return Ok(());
        }
        let mut first_error = None;
        let mut note = |result: Result<(), TestbedError>| {
            if let Err(err) = result
                && first_error.is_none()
            {
                first_error = Some(err);
            }
        };
        for pod in self.pods.drain(..).rev() {
            note(pod.netns.delete());
        }
        for node in self.nodes.drain(..).rev() {
            note(node.netns.delete());
            note(remove_pin_dir(&Path::new(BPF_PIN_ROOT).join(&node.name)));
        }
        for machine in self.control_planes.drain(..).rev() {
            note(machine.netns.delete());
        }
        if let Some(underlay) = self.underlay.take() {
            note(underlay.delete());
        }
        // Anything else carrying the prefix (e.g. a half-created namespace) goes too.
        note(remove_with_prefix(&self.prefix).map(|_| ()));
        self.torn_down = true;
        first_error.map_or(Ok(()), Err)
    }
}

/// What [`Testbed::keep`] hands over: names and addresses, no live connections.
#[derive(Clone, Debug)]
pub struct KeptTestbed {
    /// The prefix of every name the test bed created.
    pub prefix: String,
    /// The underlay namespace.
    pub underlay: Option<Netns>,
    /// The control-plane machines, by number.
    pub control_planes: Vec<KeptNode>,
    /// The nodes, in creation order.
    pub nodes: Vec<KeptNode>,
}

/// One node (or control-plane machine) of a test bed.
#[derive(Clone, Debug)]
pub struct KeptNode {
    /// The node's name (also its namespace's name).
    pub name: String,
    /// Its namespace.
    pub netns: Netns,
    /// Its address on the underlay bridge.
    pub underlay_ip: Ipv4Addr,
}

impl Drop for Testbed {
    fn drop(&mut self) {
        if let Err(err) = self.teardown() {
            eprintln!("test bed {}: teardown failed: {err}", self.prefix);
        }
    }
}

/// Makes sure the host link name is free. Deleting a namespace frees the veth pairs inside it
/// asynchronously (the kernel's netns cleanup work runs after `unshare`'s last reference is
/// gone), so the host end of an earlier test bed's link may still exist for a moment after its
/// teardown. The default name carries this process's id, so a link holding it belongs to an
/// earlier test bed of this process and is deleted after a short wait; a configured name may
/// belong to a running cluster, so it is only waited for.
async fn clear_host_link_name(host: &Netlink, name: &str, ours: bool) -> Result<(), TestbedError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while host.try_index(name).await?.is_some() {
        if Instant::now() >= deadline {
            if ours {
                return host.delete_link(name).await;
            }
            return Err(TestbedError::Invalid(format!(
                "the host link name {name} is taken by another link (a running cluster's?); \
                 remove it (ip link delete {name}) or pick another name"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Creates a veth pair `local_name` (here) / `peer_name` (in `peer_netns`), both down.
async fn connect_veth(
    local: &Netlink,
    local_name: &str,
    peer_netns: &Netns,
    peer: &Netlink,
    peer_name: &str,
) -> Result<(), TestbedError> {
    // The peer is created under a temporary name: `peer_name` (e.g. eth0) may exist here.
    let temporary = format!("tmp{}", std::process::id() % 100_000_000);
    let temporary = &temporary[..temporary.len().min(15)];
    local.add_veth(local_name, temporary).await?;
    let moved = async {
        local.move_to(temporary, peer_netns).await?;
        peer.rename(temporary, peer_name).await
    }
    .await;
    if moved.is_err() {
        let _ = local.delete_link(local_name).await;
    }
    moved
}

/// Wires a pod namespace to its node: veth, /32 address, default route via the link-local
/// gateway (a permanent neighbour entry for it), and the node's /32 route back.
async fn plumb_pod(
    node: &Node,
    netns: &Netns,
    host_iface: &str,
    ip: Ipv4Addr,
) -> Result<(), TestbedError> {
    let pod_nl = Netlink::connect(netns)?;
    pod_nl.set_up("lo").await?;
    connect_veth(&node.netlink, host_iface, netns, &pod_nl, POD_IFACE).await?;
    node.netlink.set_up(host_iface).await?;
    let host_mac = node.netlink.mac(host_iface).await?;
    pod_nl.add_address(POD_IFACE, IpAddr::V4(ip), 32).await?;
    pod_nl.set_up(POD_IFACE).await?;
    pod_nl
        .add_permanent_neighbour(POD_IFACE, POD_GATEWAY, &host_mac)
        .await?;
    pod_nl
        .add_route(Ipv4Addr::UNSPECIFIED, 0, POD_IFACE, Some(POD_GATEWAY))
        .await?;
    node.netlink.add_route(ip, 32, host_iface, None).await?;
    Ok(())
}

fn remove_pin_dir(dir: &Path) -> Result<(), TestbedError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(TestbedError::io("removing", dir, source)),
    }
}

/// Names under /run/netns and /sys/fs/bpf/flotilla that start with `prefix`.
pub fn leftovers(prefix: &str) -> Vec<PathBuf> {
    [Path::new(netns::NETNS_DIR), Path::new(BPF_PIN_ROOT)]
        .into_iter()
        .flat_map(|dir| entries_with_prefix(dir, prefix))
        .collect()
}

/// The entries of `dir` whose name starts with `prefix` (none if `dir` cannot be read).
fn entries_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.file_name().to_string_lossy().starts_with(prefix))
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default()
}

/// A temporary directory for one run's files (containerd's root and state, the control plane's
/// state), named with a fresh run prefix: dropping it removes it, and if this process is killed
/// first, [`sweep_stale`] removes it with the mounts and pod namespaces below it.
pub fn run_dir(purpose: &str) -> Result<tempfile::TempDir, TestbedError> {
    let dir = std::env::temp_dir();
    tempfile::Builder::new()
        .prefix(&format!("{}{purpose}-", unique_prefix()))
        .tempdir_in(&dir)
        .map_err(|source| TestbedError::io("creating a directory in", &dir, source))
}

/// Removes every namespace (killing its processes) and pin directory whose name starts with
/// `prefix`; returns what it removed.
pub fn remove_with_prefix(prefix: &str) -> Result<Vec<PathBuf>, TestbedError> {
    let mut removed = Vec::new();
    let mut first_error = None;
    for path in leftovers(prefix) {
        match remove_leftover(&path) {
            Ok(()) => removed.push(path),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    first_error.map_or(Ok(removed), Err)
}

fn remove_leftover(path: &Path) -> Result<(), TestbedError> {
    if path.starts_with(netns::NETNS_DIR) {
        netns::delete_netns_file(path)
    } else {
        remove_pin_dir(path)
    }
}

/// What [`sweep_stale`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Namespaces, pin directories, run directories and cgroups removed.
    pub removed: Vec<PathBuf>,
}

/// Removes what test-bed runs whose process is gone (killed, interrupted) left behind: their
/// namespaces with the processes inside (a node's holds its containerd and shims), pins, run
/// directories ([`run_dir`]) with the mounts and pod namespaces below them, and cgroups. Runs of
/// live processes are left alone.
pub fn sweep_stale() -> Result<SweepReport, TestbedError> {
    let mut report = SweepReport::default();
    // Namespaces first: the processes in them hold the mounts and cgroups swept after.
    for path in leftovers(RUN_PREFIX)
        .into_iter()
        .filter(|path| of_dead_run(path))
    {
        remove_leftover(&path)?;
        report.removed.push(path);
    }
    let temp = std::env::temp_dir();
    for dir in entries_with_prefix(&temp, RUN_PREFIX)
        .into_iter()
        .filter(|dir| of_dead_run(dir))
    {
        containerd::unmount_below(&dir);
        // Removing files through a mount still in place would delete what it shows.
        let mounted = containerd::mounts_below(&dir);
        if !mounted.is_empty() {
            return Err(TestbedError::Other(format!(
                "{} still has mounts after unmounting ({mounted:?}); left in place",
                dir.display()
            )));
        }
        fs::remove_dir_all(&dir).map_err(|source| TestbedError::io("removing", &dir, source))?;
        report.removed.push(dir);
    }
    let cgroups: std::collections::BTreeSet<PathBuf> =
        entries_with_prefix(Path::new(CGROUP_ROOT), "")
            .iter()
            .flat_map(|hierarchy| entries_with_prefix(hierarchy, RUN_PREFIX))
            .filter(|cgroup| of_dead_run(cgroup))
            .filter_map(|cgroup| cgroup.file_name().map(PathBuf::from))
            .collect();
    for cgroup in cgroups {
        if containerd::remove_cgroups(&cgroup) > 0 {
            report
                .removed
                .push(Path::new(CGROUP_ROOT).join("*").join(cgroup));
        }
    }
    Ok(report)
}

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Whether `path`'s name carries the pid of a process that no longer exists.
fn of_dead_run(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| owner_pid(&name.to_string_lossy()))
        .is_some_and(|pid| !Path::new("/proc").join(pid.to_string()).exists())
}

/// The pid encoded in a test-bed name (`fltb-<pid>-...`).
pub fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(RUN_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_unique_and_carry_the_pid() {
        let first = unique_prefix();
        let second = unique_prefix();
        assert_ne!(first, second);
        assert_eq!(
            owner_pid(&format!("{first}node1")),
            Some(std::process::id())
        );
    }

    #[test]
    fn node_addresses_follow_the_number_whatever_the_node_count() {
        // The local cluster asks a one-node config for node N's address.
        let one = TestbedConfig {
            underlay_octet: 78,
            ..TestbedConfig::nodes(1)
        };
        assert_eq!(one.node_ip(2), Ipv4Addr::new(192, 168, 78, 12));
        assert!(!one.is_remote(2));
        // With remote nodes the last ones move to the upper half of the subnet.
        let split = TestbedConfig {
            nodes: 3,
            remote_nodes: 1,
            ..one.clone()
        };
        assert_eq!(split.node_ip(2), Ipv4Addr::new(192, 168, 78, 12));
        assert_eq!(split.node_ip(3), Ipv4Addr::new(192, 168, 78, 143));
        assert_eq!(split.node_segment(3).0, 25);
    }

    #[test]
    fn owner_pid_ignores_foreign_names() {
        assert_eq!(owner_pid("cni-1234"), None);
        assert_eq!(owner_pid("fltb-abc-0-node1"), None);
        assert_eq!(owner_pid("fltb-42-0-underlay"), Some(42));
    }
}
