//! A flannel-style kernel network (flannel's `vxlan` backend with the CNI `bridge` plugin), built
//! beside whatever the pods already have, as the baseline the pod-network benchmark compares
//! Flotilla's eBPF overlay against on the very same namespaces.
//!
//! Per node (index k = node + 1):
//! - bridge `cni0` with 10.245.k.1/24;
//! - VXLAN device `flannel.1`: VNI 1, nolearning, `local` = the node's underlay address, over the
//!   node's underlay interface, MTU = underlay MTU - 50, address 10.245.k.0/32;
//! - per remote node r, exactly what flannel's vxlan backend programs: the route
//!   10.245.r.0/24 via 10.245.r.0 dev flannel.1 onlink, the permanent neighbour 10.245.r.0 at
//!   the remote flannel.1's MAC, and the FDB entry that MAC -> dst <remote underlay IP>;
//! - ip_forward=1 (restored to its previous value on teardown).
//!
//! Per pod (n-th pod of its node): a second veth pair, the pod side `fl0` with 10.245.k.(n+2)/24
//! and the route 10.245.0.0/16 via 10.245.k.1 (the pod's default route stays as it is), the host
//! side in `cni0`; both MTU underlay - 50.
//!
//! One deliberate difference from flannel: the VXLAN port is [`VXLAN_PORT`] (8473), not 8472.
//! Flotilla's own collect-metadata VXLAN device owns 8472 in the same node namespace, and the
//! kernel shares a VXLAN UDP socket only between devices with the same flags: bringing a second
//! device up on 8472 fails with EADDRINUSE, whichever of the two comes up first (checked on this
//! kernel with `ip link add ... type vxlan external dstport 8472` beside
//! `... id 1 ... dstport 8472 nolearning`). The port number changes nothing on the data path.
//!
//! Dropping a [`FlannelBaseline`] removes all of it (a failed [`FlannelBaseline::create`]
//! removes what it had created, and only that); namespaces that are already gone are skipped.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr},
    path::Path,
};

use crate::{NODE_UNDERLAY_IFACE, Netlink, Netns, Testbed, TestbedError};

/// The bridge pods' baseline interfaces hang off, per node.
pub const BRIDGE: &str = "cni0";
/// The VXLAN device, per node.
pub const VXLAN_DEVICE: &str = "flannel.1";
/// flannel's VNI.
pub const VNI: u32 = 1;
/// The UDP port of the baseline's VXLAN (flannel uses 8472, which Flotilla's device holds).
pub const VXLAN_PORT: u16 = 8473;
/// The pod side of a pod's baseline veth.
pub const POD_IFACE: &str = "fl0";
/// Bytes of outer headers VXLAN adds over IPv4 (IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14).
pub const VXLAN_OVERHEAD: u32 = 50;
/// The baseline's cluster network, 10.245.0.0/16 (one /24 per node).
pub const NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 245, 0, 0), 16);
/// Nodes the address plan has room for (10.245.1.0/24 to 10.245.254.0/24).
pub const MAX_NODES: usize = 254;
/// Pods per node the address plan has room for (.2 to .254).
pub const MAX_PODS_PER_NODE: usize = 253;

/// The `k` of node `node`'s subnet 10.245.k.0/24.
fn subnet_octet(node: usize) -> u8 {
    // The plan checks node < MAX_NODES first.
    (node + 1).min(usize::from(u8::MAX)) as u8
}

/// Node `node`'s pod subnet: 10.245.(node+1).0 (a /24); also its flannel.1 address.
pub fn node_subnet(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 245, subnet_octet(node), 0)
}

/// Node `node`'s `cni0` address and the pods' gateway: 10.245.(node+1).1.
pub fn node_gateway(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 245, subnet_octet(node), 1)
}

/// A node the baseline spans.
#[derive(Clone, Debug)]
pub struct BaselineNode {
    /// The node's namespace.
    pub netns: Netns,
    /// Its address on the underlay (the VXLAN's `local`, the remote nodes' FDB `dst`).
    pub underlay_ip: Ipv4Addr,
    /// Its underlay interface (the VXLAN's `dev`).
    pub underlay_iface: String,
}

/// A pod that gets a baseline interface.
#[derive(Clone, Debug)]
pub struct BaselinePod {
    /// The pod's namespace.
    pub netns: Netns,
    /// Index (into the nodes given to [`FlannelBaseline::create`]) of the node it runs on.
    pub node: usize,
}

/// What one pod gets, decided before anything is created.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PodPlan {
    node: usize,
    ip: Ipv4Addr,
    /// The host side of the veth, in the node's namespace.
    host_iface: String,
    /// The pod side's name while it is still in the node's namespace.
    temporary: String,
}

/// The address plan: pod `i` (in `pod_nodes` order) is the n-th pod of node `pod_nodes[i]` and
/// gets 10.245.(node+1).(n+2).
fn plan(node_count: usize, pod_nodes: &[usize]) -> Result<Vec<PodPlan>, TestbedError> {
    if node_count == 0 || node_count > MAX_NODES {
        return Err(TestbedError::Invalid(format!(
            "flannel baseline over {node_count} nodes: use 1 to {MAX_NODES}"
        )));
    }
    let mut per_node = vec![0_usize; node_count];
    pod_nodes
        .iter()
        .enumerate()
        .map(|(index, &node)| {
            let count = per_node.get_mut(node).ok_or_else(|| {
                TestbedError::Invalid(format!(
                    "pod {index} runs on node {node}, but there are {node_count} nodes"
                ))
            })?;
            if *count >= MAX_PODS_PER_NODE {
                return Err(TestbedError::Invalid(format!(
                    "more than {MAX_PODS_PER_NODE} pods on node {node}"
                )));
            }
            let host = (*count + 2) as u8;
            *count += 1;
            Ok(PodPlan {
                node,
                ip: Ipv4Addr::new(10, 245, subnet_octet(node), host),
                host_iface: format!("flv{index}"),
                temporary: format!("flp{index}"),
            })
        })
        .collect()
}

struct NodeState {
    netns: Netns,
    /// ip_forward before the baseline set it, restored on teardown.
    previous_ip_forward: Option<String>,
    /// Links the baseline created in the node, in creation order. Deleting them removes
    /// everything else: addresses, routes, neighbours and FDB entries on them, and (for the
    /// pods' veths) the pod side in the pod's namespace.
    links: Vec<String>,
}

struct PodState {
    node: usize,
    plan: PodPlan,
}

/// A flannel-style network beside the pods' own; removed on drop.
pub struct FlannelBaseline {
    nodes: Vec<NodeState>,
    pods: Vec<PodState>,
    torn_down: bool,
}

impl std::fmt::Debug for FlannelBaseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlannelBaseline")
            .field("nodes", &self.nodes.len())
            .field("pod_ips", &self.pod_ips())
            .finish()
    }
}

impl FlannelBaseline {
    /// Builds the baseline over `nodes` for `pods`. On failure, what was created is removed
    /// again before the error returns.
    pub async fn create(
        nodes: &[BaselineNode],
        pods: &[BaselinePod],
    ) -> Result<Self, TestbedError> {
        let plans = plan(
            nodes.len(),
            &pods.iter().map(|pod| pod.node).collect::<Vec<_>>(),
        )?;
        let mut baseline = Self {
            nodes: nodes
                .iter()
                .map(|node| NodeState {
                    netns: node.netns.clone(),
                    previous_ip_forward: None,
                    links: Vec::new(),
                })
                .collect(),
            pods: pods
                .iter()
                .zip(plans)
                .map(|(pod, plan)| PodState {
                    node: pod.node,
                    plan,
                })
                .collect(),
            torn_down: false,
        };
        // On error `baseline` is dropped, which removes what exists so far.
        baseline.build(nodes, pods).await?;
        Ok(baseline)
    }

    /// Builds the baseline over every node and pod of `bed` (pods in the test bed's order).
    pub async fn for_testbed(bed: &Testbed) -> Result<Self, TestbedError> {
        let nodes: Vec<BaselineNode> = bed
            .nodes()
            .iter()
            .map(|node| BaselineNode {
                netns: node.netns().clone(),
                underlay_ip: node.underlay_ip(),
                underlay_iface: NODE_UNDERLAY_IFACE.to_owned(),
            })
            .collect();
        let pods: Vec<BaselinePod> = bed
            .pods()
            .iter()
            .map(|pod| BaselinePod {
                netns: pod.netns().clone(),
                node: pod.node(),
            })
            .collect();
        Self::create(&nodes, &pods).await
    }

    /// Each pod's baseline address, in the order the pods were given.
    pub fn pod_ips(&self) -> Vec<Ipv4Addr> {
        self.pods.iter().map(|pod| pod.plan.ip).collect()
    }

    /// Pod `index`'s baseline address.
    pub fn pod_ip(&self, index: usize) -> Result<Ipv4Addr, TestbedError> {
        self.pods.get(index).map(|pod| pod.plan.ip).ok_or_else(|| {
            TestbedError::NotFound(format!(
                "pod {index} of the flannel baseline (it has {})",
                self.pods.len()
            ))
        })
    }

    async fn build(
        &mut self,
        nodes: &[BaselineNode],
        pods: &[BaselinePod],
    ) -> Result<(), TestbedError> {
        let mut netlinks = Vec::new();
        let mut vtep_macs = Vec::new();
        let mut mtus = Vec::new();
        for ((index, node), state) in nodes.iter().enumerate().zip(&mut self.nodes) {
            let netlink = Netlink::connect(&node.netns)?;
            let underlay_mtu = netlink.mtu(&node.underlay_iface).await?;
            let mtu = underlay_mtu.checked_sub(VXLAN_OVERHEAD).ok_or_else(|| {
                TestbedError::Invalid(format!(
                    "underlay MTU {underlay_mtu} of {} in {}: too small for VXLAN",
                    node.underlay_iface,
                    node.netns.name()
                ))
            })?;
            state.previous_ip_forward = Some(read_sysctl(&node.netns, "net/ipv4/ip_forward")?);
            node.netns.sysctl("net/ipv4/ip_forward", "1")?;

            netlink.add_bridge(BRIDGE).await?;
            state.links.push(BRIDGE.to_owned());
            netlink.set_mtu(BRIDGE, mtu).await?;
            netlink
                .add_address(BRIDGE, IpAddr::V4(node_gateway(index)), 24)
                .await?;
            netlink.set_up(BRIDGE).await?;

            netlink
                .add_vxlan(
                    VXLAN_DEVICE,
                    VNI,
                    node.underlay_ip,
                    &node.underlay_iface,
                    VXLAN_PORT,
                )
                .await?;
            state.links.push(VXLAN_DEVICE.to_owned());
            netlink.set_mtu(VXLAN_DEVICE, mtu).await?;
            netlink
                .add_address(VXLAN_DEVICE, IpAddr::V4(node_subnet(index)), 32)
                .await?;
            netlink
                .set_up(VXLAN_DEVICE)
                .await
                .map_err(|err| explain_port_clash(err, node.netns.name()))?;
            vtep_macs.push(netlink.mac(VXLAN_DEVICE).await?);
            mtus.push(mtu);
            netlinks.push(netlink);
        }

        for (index, netlink) in netlinks.iter().enumerate() {
            for (remote, remote_node) in nodes.iter().enumerate() {
                if remote == index {
                    continue;
                }
                let vtep = node_subnet(remote);
                let mac = &vtep_macs[remote];
                netlink
                    .add_route(vtep, 24, VXLAN_DEVICE, Some(vtep))
                    .await?;
                netlink
                    .add_permanent_neighbour(VXLAN_DEVICE, vtep, mac)
                    .await?;
                netlink
                    .add_fdb(VXLAN_DEVICE, mac, remote_node.underlay_ip)
                    .await?;
            }
        }

        for (pod, state) in pods.iter().zip(&self.pods) {
            let node_netlink = &netlinks[pod.node];
            let mtu = mtus[pod.node];
            let plan = &state.plan;
            let pod_netlink = Netlink::connect(&pod.netns)?;
            node_netlink
                .add_veth(&plan.host_iface, &plan.temporary)
                .await?;
            if let Some(node) = self.nodes.get_mut(pod.node) {
                node.links.push(plan.host_iface.clone());
            }
            node_netlink.move_to(&plan.temporary, &pod.netns).await?;
            pod_netlink.rename(&plan.temporary, POD_IFACE).await?;
            node_netlink.set_mtu(&plan.host_iface, mtu).await?;
            node_netlink.set_master(&plan.host_iface, BRIDGE).await?;
            node_netlink.set_up(&plan.host_iface).await?;
            pod_netlink.set_mtu(POD_IFACE, mtu).await?;
            pod_netlink
                .add_address(POD_IFACE, IpAddr::V4(plan.ip), 24)
                .await?;
            pod_netlink.set_up(POD_IFACE).await?;
            pod_netlink
                .add_route(
                    NETWORK.0,
                    NETWORK.1,
                    POD_IFACE,
                    Some(node_gateway(state.node)),
                )
                .await?;
        }
        Ok(())
    }

    /// Removes every device, route, neighbour and FDB entry the baseline added and restores
    /// ip_forward. Idempotent; also done on drop. Runs on a thread of its own (with its own
    /// runtime), so it works from synchronous code and from within a tokio runtime alike.
    pub fn teardown(&mut self) -> Result<(), TestbedError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let nodes = std::mem::take(&mut self.nodes);
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|source| {
                            TestbedError::io(
                                "starting a runtime to remove the flannel baseline from",
                                Path::new("(all namespaces)"),
                                source,
                            )
                        })?;
                    runtime.block_on(remove(&nodes))
                })
                .join()
                .map_err(|_| {
                    TestbedError::Other("the flannel baseline teardown thread panicked".into())
                })?
        })
    }
}

impl Drop for FlannelBaseline {
    fn drop(&mut self) {
        if let Err(err) = self.teardown() {
            eprintln!("flannel baseline: teardown failed: {err}");
        }
    }
}

/// Deletes the links the baseline created (the pods' veths first, then the VXLAN device and the
/// bridge) and restores ip_forward, in every node namespace that still exists. Deleting the
/// host side of a veth deletes the pod side wherever it is. Goes on after an error and returns
/// the first.
async fn remove(nodes: &[NodeState]) -> Result<(), TestbedError> {
    let mut first_error = None;
    let mut note = |result: Result<(), TestbedError>| {
        if let Err(err) = result {
            first_error.get_or_insert(err);
        }
    };
    for node in nodes {
        if !node.netns.path().exists() {
            continue;
        }
        let netlink = match Netlink::connect(&node.netns) {
            Ok(netlink) => netlink,
            Err(err) => {
                note(Err(err));
                continue;
            }
        };
        for link in node.links.iter().rev() {
            note(netlink.delete_link(link).await);
        }
        if let Some(previous) = &node.previous_ip_forward {
            note(node.netns.sysctl("net/ipv4/ip_forward", previous.trim()));
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn read_sysctl(netns: &Netns, key: &str) -> Result<String, TestbedError> {
    let path = Path::new("/proc/sys").join(key);
    netns
        .run(|| fs::read_to_string(&path))?
        .map_err(|source| TestbedError::io("reading", &path, source))
}

/// Adds what to do to the EADDRINUSE a VXLAN device gets when its port is taken.
fn explain_port_clash(err: TestbedError, netns: &str) -> TestbedError {
    match &err {
        TestbedError::Netlink {
            source: rtnetlink::Error::NetlinkError(message),
            ..
        } if message.raw_code() == -nix::libc::EADDRINUSE => TestbedError::Other(format!(
            "{err}: another VXLAN device in {netns} holds UDP port {VXLAN_PORT} with different \
             flags (the kernel shares a VXLAN socket only between devices with equal flags); \
             remove it or move the baseline to another port"
        )),
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_numbered_per_node_from_two() {
        let plans = plan(2, &[0, 1, 0, 1, 1]).unwrap();
        let ips: Vec<Ipv4Addr> = plans.iter().map(|plan| plan.ip).collect();
        assert_eq!(
            ips,
            [
                Ipv4Addr::new(10, 245, 1, 2),
                Ipv4Addr::new(10, 245, 2, 2),
                Ipv4Addr::new(10, 245, 1, 3),
                Ipv4Addr::new(10, 245, 2, 3),
                Ipv4Addr::new(10, 245, 2, 4),
            ]
        );
        assert_eq!(plans[4].host_iface, "flv4");
        assert_eq!(plans[4].temporary, "flp4");
        assert_eq!(plans[4].node, 1);
    }

    #[test]
    fn node_addresses_follow_flannel() {
        assert_eq!(node_subnet(0), Ipv4Addr::new(10, 245, 1, 0));
        assert_eq!(node_gateway(1), Ipv4Addr::new(10, 245, 2, 1));
        assert_eq!(node_subnet(MAX_NODES - 1), Ipv4Addr::new(10, 245, 254, 0));
    }

    #[test]
    fn plans_that_do_not_fit_are_rejected() {
        assert!(plan(0, &[]).is_err());
        assert!(plan(MAX_NODES + 1, &[]).is_err());
        let err = plan(2, &[2]).unwrap_err().to_string();
        assert!(err.contains("node 2"), "{err}");
        assert!(plan(1, &vec![0; MAX_PODS_PER_NODE]).is_ok());
        assert!(plan(1, &vec![0; MAX_PODS_PER_NODE + 1]).is_err());
        // Interface names stay within IFNAMSIZ for as many pods as fit.
        let plans = plan(MAX_NODES, &vec![0; MAX_PODS_PER_NODE]).unwrap();
        assert!(plans.iter().all(|plan| plan.host_iface.len() <= 15));
    }
}
