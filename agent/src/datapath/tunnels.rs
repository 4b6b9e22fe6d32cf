//! Which remote prefixes go through which tunnel: every other node's podCIDR and its node IP
//! (so pods reach other nodes' addresses through the overlay too, and the replies come back the
//! same way), from the Node objects, and per node pair whether packets travel encapsulated
//! (VXLAN) or natively (unencapsulated, the other node's address as the next hop; only for
//! nodes on this node's own underlay segment, as with flannel's host-gw and Cilium's native
//! routing). Decided by a pure function over the node list; applied as a difference so a node
//! joining touches only its own two entries.

use std::{collections::BTreeMap, fmt, net::Ipv4Addr, str::FromStr};

use tokio::time::Instant;

use super::{
    lock,
    reconcile::{Changes, Reconciler, Retry, Wake, next_or_due},
};

use k8s_openapi::api::core::v1::Node;

/// A tunnel prefix: address and length.
pub type Prefix = (Ipv4Addr, u32);

/// How pod traffic reaches other nodes (the agent's `--routing`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Routing {
    /// Always encapsulated in VXLAN (flannel's and Cilium's default).
    #[default]
    Vxlan,
    /// Unencapsulated to every node on this node's underlay segment, VXLAN to the others.
    Native,
    /// Native when every node is on this node's underlay segment, else VXLAN to all.
    Auto,
}

impl Routing {
    /// Every mode.
    pub const ALL: [Self; 3] = [Self::Vxlan, Self::Native, Self::Auto];

    /// The mode as spelled on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Vxlan => "vxlan",
            Self::Native => "native",
            Self::Auto => "auto",
        }
    }
}

impl FromStr for Routing {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        super::by_name(value, &Self::ALL, Self::name, "routing mode")
    }
}

impl fmt::Display for Routing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The routing mode and what it depends on: the node's own underlay segment (the network of
/// the address on its underlay link).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutingPlan {
    /// The mode asked for.
    pub mode: Routing,
    /// The underlay segment, host bits cleared.
    pub segment: Prefix,
}

impl RoutingPlan {
    /// Whether `ip` is on the node's underlay segment (reachable without a router).
    pub fn on_segment(&self, ip: Ipv4Addr) -> bool {
        network(ip, self.segment.1) == self.segment
    }
}

/// Where a prefix goes: the node owning it, and whether the pair routes natively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Via {
    /// The owning node's underlay address (VXLAN destination or next hop).
    pub node_ip: Ipv4Addr,
    /// Sent unencapsulated rather than over VXLAN.
    pub native: bool,
    /// Unencapsulated packets from the node are taken: it is on the segment and routing is
    /// not `vxlan`. With `auto`, also while the pair sends over VXLAN, so a switch of modes
    /// (a node joining or leaving the segment) loses nothing while the nodes switch at
    /// slightly different times.
    pub accepts_native: bool,
}

/// The tunnel map the node should have: prefix -> the node owning it and how it is reached.
pub fn desired(nodes: &[Node], own_node: &str, plan: &RoutingPlan) -> BTreeMap<Prefix, Via> {
    let peers: Vec<(&Node, Ipv4Addr)> = nodes
        .iter()
        .filter(|node| node.metadata.name.as_deref() != Some(own_node))
        .filter_map(|node| Some((node, internal_ip(node)?)))
        .collect();
    let all_on_segment = peers.iter().all(|(_, ip)| plan.on_segment(*ip));
    let mut tunnels = BTreeMap::new();
    for (node, node_ip) in peers {
        let accepts_native = plan.mode != Routing::Vxlan && plan.on_segment(node_ip);
        let native = match plan.mode {
            Routing::Vxlan => false,
            Routing::Native => accepts_native,
            Routing::Auto => accepts_native && all_on_segment,
        };
        let via = Via {
            node_ip,
            native,
            accepts_native,
        };
        tunnels.insert((node_ip, 32), via);
        for cidr in pod_cidrs(node) {
            if let Some(prefix) = parse_ipv4_cidr(&cidr) {
                tunnels.insert(prefix, via);
            }
        }
    }
    tunnels
}

/// The node's first IPv4 InternalIP.
pub fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|address| address.type_ == "InternalIP")
        .find_map(|address| address.address.parse().ok())
}

fn pod_cidrs(node: &Node) -> Vec<String> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    match &spec.pod_cidrs {
        Some(cidrs) if !cidrs.is_empty() => cidrs.clone(),
        _ => spec.pod_cidr.iter().cloned().collect(),
    }
}

/// `a.b.c.d/len` with the host bits cleared; None for IPv6 or malformed input.
pub fn parse_ipv4_cidr(cidr: &str) -> Option<Prefix> {
    let (address, len) = cidr.split_once('/')?;
    let address: Ipv4Addr = address.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    if len > 32 {
        return None;
    }
    Some(network(address, len))
}

/// The network of `address` with a prefix of `len` bits (at most 32): the host bits cleared.
pub fn network(address: Ipv4Addr, len: u32) -> Prefix {
    let len = len.min(32);
    let bits = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    (Ipv4Addr::from(u32::from(address) & bits), len)
}

/// Keeps the node's tunnel map equal to [`desired`] over the cluster's Node objects, for as long
/// as the task runs. Starts from what the map holds (an agent restart changes nothing that is
/// still right) and then writes only differences; a refused write is retried with back-off.
pub async fn sync(
    client: kube::Client,
    maps: std::sync::Arc<std::sync::Mutex<super::network::NetworkMaps>>,
    own_node: String,
    plan: RoutingPlan,
) {
    use kube::runtime::{WatchStreamExt as _, watcher};

    let mut tunnels = match Reconciler::adopt(&*lock(&maps)) {
        Ok(tunnels) => tunnels,
        Err(err) => {
            tracing::warn!("reading the tunnel map: {err}");
            Reconciler::new()
        }
    };
    let mut retry = Retry::default();
    let nodes = kube::Api::<Node>::all(client);
    let stream = watcher(nodes, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    // Nodes by name; during a (re)list the new list is collected aside and swapped in whole,
    // so a partial list never tears down tunnels that still exist.
    let mut known: BTreeMap<String, Node> = BTreeMap::new();
    let mut relisting: Option<BTreeMap<String, Node>> = None;
    loop {
        let event = match next_or_due(&mut stream, retry.due()).await {
            Wake::Event(event) => event,
            Wake::Due => {
                program(&mut tunnels, &maps, &mut retry);
                continue;
            }
            Wake::Closed => break,
        };
        let name = |node: &Node| node.metadata.name.clone().unwrap_or_default();
        match event {
            Ok(watcher::Event::Init) => {
                relisting = Some(BTreeMap::new());
                continue;
            }
            Ok(watcher::Event::InitApply(node)) => {
                if let Some(list) = relisting.as_mut() {
                    list.insert(name(&node), node);
                }
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(list) = relisting.take() {
                    known = list;
                }
            }
            Ok(watcher::Event::Apply(node)) => {
                known.insert(name(&node), node);
            }
            Ok(watcher::Event::Delete(node)) => {
                known.remove(&name(&node));
            }
            Err(err) => {
                tracing::warn!("watching nodes: {err}");
                continue;
            }
        }
        let nodes: Vec<Node> = known.values().cloned().collect();
        tunnels.set_all(desired(&nodes, &own_node, &plan));
        program(&mut tunnels, &maps, &mut retry);
    }
}

/// One pass of the tunnel sync: writes what is pending and schedules a retry of what failed.
fn program(
    tunnels: &mut Reconciler<Prefix, Via>,
    maps: &std::sync::Mutex<super::network::NetworkMaps>,
    retry: &mut Retry,
) {
    if tunnels.is_converged() {
        retry.after_pass(true, Instant::now());
        return;
    }
    let pass = tunnels.apply(&mut *lock(maps), Changes::All);
    for (prefix, len) in &pass.written {
        if let Some(via) = tunnels.programmed().get(&(*prefix, *len)) {
            tracing::info!(
                prefix = %format!("{prefix}/{len}"),
                node_ip = %via.node_ip,
                native = via.native,
                "tunnel"
            );
        }
    }
    for (prefix, len) in &pass.deleted {
        tracing::info!(prefix = %format!("{prefix}/{len}"), "tunnel removed");
    }
    for failure in &pass.failed {
        tracing::warn!("tunnel map: {failure}");
    }
    if let Some(delay) = retry.after_pass(tunnels.is_converged(), Instant::now()) {
        tracing::warn!("retrying the tunnel map in {delay:?}");
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    use super::*;
    use crate::datapath::reconcile::fake::FakeMap;

    fn node(name: &str, ip: Option<&str>, cidr: Option<&str>) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(Into::into),
                pod_cidrs: cidr.map(|c| vec![c.into()]),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: ip.map(|ip| {
                    vec![
                        NodeAddress {
                            type_: "Hostname".into(),
                            address: name.into(),
                        },
                        NodeAddress {
                            type_: "InternalIP".into(),
                            address: ip.into(),
                        },
                    ]
                }),
                ..Default::default()
            }),
        }
    }

    fn plan(mode: Routing) -> RoutingPlan {
        RoutingPlan {
            mode,
            segment: ("192.168.77.0".parse().unwrap(), 24),
        }
    }

    fn vxlan(ip: Ipv4Addr) -> Via {
        Via {
            node_ip: ip,
            native: false,
            accepts_native: false,
        }
    }

    /// How node "a" reaches each other node under `mode`: node IP -> (sends natively, takes
    /// native packets).
    fn routes(nodes: &[Node], mode: Routing) -> BTreeMap<Ipv4Addr, (bool, bool)> {
        desired(nodes, "a", &plan(mode))
            .into_values()
            .map(|via| (via.node_ip, (via.native, via.accepts_native)))
            .collect()
    }

    #[test]
    fn other_nodes_get_their_pod_cidr_and_node_ip() {
        let nodes = [
            node("a", Some("192.168.77.11"), Some("10.244.0.0/24")),
            node("b", Some("192.168.77.12"), Some("10.244.1.0/24")),
            node("c", Some("192.168.77.13"), None),
            node("d", None, Some("10.244.3.0/24")),
        ];
        let tunnels = desired(&nodes, "a", &plan(Routing::Vxlan));
        let b: Ipv4Addr = "192.168.77.12".parse().unwrap();
        let c: Ipv4Addr = "192.168.77.13".parse().unwrap();
        assert_eq!(
            tunnels.into_iter().collect::<Vec<_>>(),
            vec![
                (("10.244.1.0".parse().unwrap(), 24), vxlan(b)),
                ((b, 32), vxlan(b)),
                ((c, 32), vxlan(c)),
            ]
        );
    }

    #[test]
    fn native_routing_is_per_node_pair_on_the_segment() {
        let nodes = [
            node("a", Some("192.168.77.11"), Some("10.244.0.0/24")),
            node("b", Some("192.168.77.12"), Some("10.244.1.0/24")),
            node("far", Some("192.168.90.5"), Some("10.244.2.0/24")),
        ];
        let b: Ipv4Addr = "192.168.77.12".parse().unwrap();
        let far: Ipv4Addr = "192.168.90.5".parse().unwrap();
        // Native: the neighbour on the segment natively, the one behind a router over VXLAN.
        assert_eq!(
            routes(&nodes, Routing::Native),
            BTreeMap::from([(b, (true, true)), (far, (false, false))])
        );
        // Auto: one node off the segment makes every pair send over VXLAN (the neighbour's
        // native packets still taken, for the moment it switches later)...
        assert_eq!(
            routes(&nodes, Routing::Auto),
            BTreeMap::from([(b, (false, true)), (far, (false, false))])
        );
        // ...and without it every pair is native.
        assert_eq!(
            routes(&nodes[..2], Routing::Auto),
            BTreeMap::from([(b, (true, true))])
        );
        // VXLAN takes nothing unencapsulated.
        assert_eq!(
            routes(&nodes[..2], Routing::Vxlan),
            BTreeMap::from([(b, (false, false))])
        );
        // Both prefixes of a node travel the same way.
        let native = desired(&nodes, "a", &plan(Routing::Native));
        assert_eq!(
            native[&("10.244.1.0".parse().unwrap(), 24)],
            native[&(b, 32)]
        );
    }

    #[test]
    fn routing_modes_parse_as_spelled() {
        for mode in Routing::ALL {
            assert_eq!(mode.name().parse::<Routing>().unwrap(), mode);
            assert_eq!(mode.to_string(), mode.name());
        }
        let err = "host-gw".parse::<Routing>().unwrap_err();
        assert_eq!(
            err,
            "unknown routing mode \"host-gw\"; use one of vxlan, native, auto"
        );
    }

    #[test]
    fn the_segment_is_the_underlay_network() {
        let plan = plan(Routing::Native);
        assert!(plan.on_segment("192.168.77.254".parse().unwrap()));
        assert!(!plan.on_segment("192.168.78.1".parse().unwrap()));
        let everything = RoutingPlan {
            segment: ("0.0.0.0".parse().unwrap(), 0),
            ..plan
        };
        assert!(everything.on_segment("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn a_joining_node_writes_only_its_own_entries() {
        let a = node("a", Some("192.168.77.11"), Some("10.244.0.0/24"));
        let b = node("b", Some("192.168.77.12"), Some("10.244.1.0/24"));
        let c = node("c", Some("192.168.77.13"), Some("10.244.2.0/24"));
        let mut map = FakeMap::default();
        let mut tunnels = Reconciler::new();
        let plan = plan(Routing::Vxlan);
        tunnels.set_all(desired(&[a.clone(), b.clone()], "a", &plan));
        tunnels.apply(&mut map, Changes::All);
        assert_eq!(map.writes.len(), 2);
        tunnels.set_all(desired(&[a.clone(), b.clone(), c.clone()], "a", &plan));
        let pass = tunnels.apply(&mut map, Changes::All);
        let c_ip: Ipv4Addr = "192.168.77.13".parse().unwrap();
        assert_eq!(
            pass.written,
            vec![("10.244.2.0".parse().unwrap(), 24), (c_ip, 32)]
        );
        assert!(pass.deleted.is_empty());
        // Leaving, it takes only its own entries along.
        tunnels.set_all(desired(&[a, c], "a", &plan));
        let pass = tunnels.apply(&mut map, Changes::All);
        assert_eq!((pass.written.len(), pass.deleted.len()), (0, 2));
        assert_eq!(map.entries.len(), 2);
    }

    #[test]
    fn cidrs_are_normalised() {
        assert_eq!(
            parse_ipv4_cidr("10.244.1.7/24"),
            Some(("10.244.1.0".parse().unwrap(), 24))
        );
        assert_eq!(parse_ipv4_cidr("fd00::/64"), None);
        assert_eq!(parse_ipv4_cidr("10.0.0.0/33"), None);
    }
}
