//! Which remote prefixes go through which tunnel: every other node's podCIDR and its node IP
//! (so pods reach other nodes' addresses through the overlay too, and the replies come back the
//! same way), from the Node objects. Decided by a pure function over the node list; applied as
//! a difference so a node joining touches only its own two entries.

use std::{collections::BTreeMap, net::Ipv4Addr};

use tokio::time::Instant;

use super::{
    lock,
    reconcile::{Changes, Reconciler, Retry, Wake, next_or_due},
};

use k8s_openapi::api::core::v1::Node;

/// A tunnel prefix: address and length.
pub type Prefix = (Ipv4Addr, u32);

/// The tunnel map the node should have: prefix -> the underlay IP of the node owning it.
pub fn desired(nodes: &[Node], own_node: &str) -> BTreeMap<Prefix, Ipv4Addr> {
    let mut tunnels = BTreeMap::new();
    for node in nodes {
        if node.metadata.name.as_deref() == Some(own_node) {
            continue;
        }
        let Some(node_ip) = internal_ip(node) else {
            continue;
        };
        tunnels.insert((node_ip, 32), node_ip);
        for cidr in pod_cidrs(node) {
            if let Some(prefix) = parse_ipv4_cidr(&cidr) {
                tunnels.insert(prefix, node_ip);
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
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((Ipv4Addr::from(u32::from(address) & mask), len))
}

/// Keeps the node's tunnel map equal to [`desired`] over the cluster's Node objects, for as long
/// as the task runs. Starts from what the map holds (an agent restart changes nothing that is
/// still right) and then writes only differences; a refused write is retried with back-off.
pub async fn sync(
    client: kube::Client,
    maps: std::sync::Arc<std::sync::Mutex<super::network::NetworkMaps>>,
    own_node: String,
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
        tunnels.set_all(desired(&nodes, &own_node));
        program(&mut tunnels, &maps, &mut retry);
    }
}

/// One pass of the tunnel sync: writes what is pending and schedules a retry of what failed.
fn program(
    tunnels: &mut Reconciler<Prefix, Ipv4Addr>,
    maps: &std::sync::Mutex<super::network::NetworkMaps>,
    retry: &mut Retry,
) {
    if tunnels.is_converged() {
        retry.after_pass(true, Instant::now());
        return;
    }
    let pass = tunnels.apply(&mut *lock(maps), Changes::All);
    for (prefix, len) in &pass.written {
        if let Some(node_ip) = tunnels.programmed().get(&(*prefix, *len)) {
            tracing::info!(prefix = %format!("{prefix}/{len}"), %node_ip, "tunnel");
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

    #[test]
    fn other_nodes_get_their_pod_cidr_and_node_ip() {
        let nodes = [
            node("a", Some("192.168.77.11"), Some("10.244.0.0/24")),
            node("b", Some("192.168.77.12"), Some("10.244.1.0/24")),
            node("c", Some("192.168.77.13"), None),
            node("d", None, Some("10.244.3.0/24")),
        ];
        let tunnels = desired(&nodes, "a");
        let b: Ipv4Addr = "192.168.77.12".parse().unwrap();
        let c: Ipv4Addr = "192.168.77.13".parse().unwrap();
        assert_eq!(
            tunnels.into_iter().collect::<Vec<_>>(),
            vec![
                (("10.244.1.0".parse().unwrap(), 24), b),
                ((b, 32), b),
                ((c, 32), c),
            ]
        );
    }

    #[test]
    fn a_joining_node_writes_only_its_own_entries() {
        let a = node("a", Some("192.168.77.11"), Some("10.244.0.0/24"));
        let b = node("b", Some("192.168.77.12"), Some("10.244.1.0/24"));
        let c = node("c", Some("192.168.77.13"), Some("10.244.2.0/24"));
        let mut map = FakeMap::default();
        let mut tunnels = Reconciler::new();
        tunnels.set_all(desired(&[a.clone(), b.clone()], "a"));
        tunnels.apply(&mut map, Changes::All);
        assert_eq!(map.writes.len(), 2);
        tunnels.set_all(desired(&[a.clone(), b.clone(), c.clone()], "a"));
        let pass = tunnels.apply(&mut map, Changes::All);
        let c_ip: Ipv4Addr = "192.168.77.13".parse().unwrap();
        assert_eq!(
            pass.written,
            vec![("10.244.2.0".parse().unwrap(), 24), (c_ip, 32)]
        );
        assert!(pass.deleted.is_empty());
        // Leaving, it takes only its own entries along.
        tunnels.set_all(desired(&[a, c], "a"));
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
