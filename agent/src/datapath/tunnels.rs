//! Which remote prefixes go through which tunnel: every other node's podCIDR and its node IP
//! (so pods reach other nodes' addresses through the overlay too, and the replies come back the
//! same way), from the Node objects. Decided by a pure function over the node list; applied as
//! a difference so a node joining touches only its own two entries.

use std::{collections::BTreeMap, net::Ipv4Addr};

use super::lock;

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

/// The changes that turn `current` into `desired`: entries to write, prefixes to remove.
pub fn plan(
    current: &BTreeMap<Prefix, Ipv4Addr>,
    desired: &BTreeMap<Prefix, Ipv4Addr>,
) -> (Vec<(Prefix, Ipv4Addr)>, Vec<Prefix>) {
    let put = desired
        .iter()
        .filter(|(prefix, node_ip)| current.get(prefix) != Some(node_ip))
        .map(|(prefix, node_ip)| (*prefix, *node_ip))
        .collect();
    let remove = current
        .keys()
        .filter(|prefix| !desired.contains_key(prefix))
        .copied()
        .collect();
    (put, remove)
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
/// still right) and then writes only differences.
pub async fn sync(
    client: kube::Client,
    maps: std::sync::Arc<std::sync::Mutex<super::network::NetworkMaps>>,
    own_node: String,
) {
    use futures::StreamExt as _;
    use kube::runtime::{WatchStreamExt as _, watcher};

    let mut applied: BTreeMap<Prefix, Ipv4Addr> = match lock(&maps).tunnels() {
        Ok(rows) => rows
            .into_iter()
            .map(|row| ((row.prefix, row.prefix_len), row.node_ip))
            .collect(),
        Err(err) => {
            tracing::warn!("reading the tunnel map: {err}");
            BTreeMap::new()
        }
    };
    let nodes = kube::Api::<Node>::all(client);
    let stream = watcher(nodes, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    // Nodes by name; during a (re)list the new list is collected aside and swapped in whole,
    // so a partial list never tears down tunnels that still exist.
    let mut known: BTreeMap<String, Node> = BTreeMap::new();
    let mut relisting: Option<BTreeMap<String, Node>> = None;
    while let Some(event) = stream.next().await {
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
        let wanted = desired(&nodes, &own_node);
        let (put, remove) = plan(&applied, &wanted);
        if put.is_empty() && remove.is_empty() {
            continue;
        }
        let mut maps = lock(&maps);
        for ((prefix, len), node_ip) in &put {
            match maps.put_tunnel(*prefix, *len, *node_ip) {
                Ok(()) => {
                    applied.insert((*prefix, *len), *node_ip);
                    tracing::info!(prefix = %format!("{prefix}/{len}"), %node_ip, "tunnel");
                }
                Err(err) => tracing::warn!("writing tunnel {prefix}/{len}: {err}"),
            }
        }
        for (prefix, len) in &remove {
            match maps.remove_tunnel(*prefix, *len) {
                Ok(()) => {
                    applied.remove(&(*prefix, *len));
                    tracing::info!(prefix = %format!("{prefix}/{len}"), "tunnel removed");
                }
                Err(err) => tracing::warn!("removing tunnel {prefix}/{len}: {err}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    use super::*;

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
    fn plan_touches_only_what_changed() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let current = BTreeMap::from([
            ((ip("10.244.1.0"), 24), ip("192.168.77.12")),
            ((ip("10.244.2.0"), 24), ip("192.168.77.13")),
        ]);
        let desired = BTreeMap::from([
            ((ip("10.244.1.0"), 24), ip("192.168.77.12")),
            ((ip("10.244.2.0"), 24), ip("192.168.77.99")),
            ((ip("10.244.3.0"), 24), ip("192.168.77.14")),
        ]);
        let (put, remove) = plan(&current, &desired);
        assert_eq!(
            put,
            vec![
                ((ip("10.244.2.0"), 24), ip("192.168.77.99")),
                ((ip("10.244.3.0"), 24), ip("192.168.77.14")),
            ]
        );
        assert!(remove.is_empty());
        let (put, remove) = plan(&desired, &BTreeMap::new());
        assert!(put.is_empty());
        assert_eq!(remove.len(), 3);
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
