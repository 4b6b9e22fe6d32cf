//! The eBPF overlay on its own, without containerd or the API: two test-bed nodes, the agent's
//! node network (`datapath::start`: programs, VXLAN device, address pool) brought up inside each
//! node namespace, pods plumbed the way flotilla-cni does it (/32 + link-local gateway) with
//! addresses from the agent's pool and registered through its CNI backend, and the tunnel map
//! filled by hand. Then: same-node and cross-node ICMP/TCP/UDP, a restarted (re-started) node
//! network keeping traffic flowing, and the drop counters for a spoofed source and a
//! destination no pod owns. Then the same pods routed natively (the tunnel entries flagged so):
//! traffic flows without touching the VXLAN device, and a node that routes the pair over VXLAN
//! drops what arrives unencapsulated.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    sync::Arc,
    time::Duration,
};

use crate::support::{overlay_packets, require_root};
use anyhow::{Context as _, ensure};
use flotilla_agent::{
    cni_api::{
        Backend,
        proto::{self, cni_backend_server::CniBackend as _},
    },
    datapath::{
        maglev::TableSize,
        network::NetworkMaps,
        pins::NodePins,
        start::{NetworkSettings, start},
        tunnels::{Routing, Via},
    },
};
use flotilla_common::network::DropReason;
use flotilla_testbed::{
    Netns, Pod, Testbed, TestbedConfig,
    traffic::{UdpReceiver, ping, send_udp, tcp_echo},
};

/// Runs `f` with the node's network (re)started inside the node's namespace, on a runtime of
/// its own (every socket it opens belongs to the node).
fn with_node_network<T: Send>(
    netns: &Netns,
    settings: &NetworkSettings,
    f: impl AsyncFnOnce(Arc<Backend>) -> anyhow::Result<T> + Send,
) -> anyhow::Result<T> {
    netns.run(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let network = start(settings).await?;
            f(network.backend).await
        })
    })?
}

fn attachment(container: &str) -> Option<proto::Attachment> {
    Some(proto::Attachment {
        container_id: container.into(),
        ifname: "eth0".into(),
    })
}

fn link_facts(netns: &Netns, iface: &str) -> anyhow::Result<(u32, Vec<u8>)> {
    let output = Command::new("ip")
        .args(["-n", netns.name(), "-j", "link", "show", iface])
        .output()?;
    let links: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("ip link show {iface} in {}", netns.name()))?;
    let index = links[0]["ifindex"].as_u64().context("ifindex")? as u32;
    let mac = links[0]["address"]
        .as_str()
        .context("address")?
        .split(':')
        .map(|byte| u8::from_str_radix(byte, 16))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((index, mac))
}

/// The node network settings of every node of `bed`, routing as `routing` says, with address
/// pools below `dir`.
fn node_settings(bed: &Testbed, dir: &std::path::Path, routing: Routing) -> Vec<NetworkSettings> {
    bed.nodes()
        .iter()
        .map(|node| {
            let (network, len) = node.pod_cidr();
            NetworkSettings {
                node_name: node.name().to_owned(),
                node_ip: node.underlay_ip(),
                pod_cidr: format!("{network}/{len}"),
                cluster_cidr: "10.244.0.0/16".into(),
                mtu: None,
                routing,
                maglev_table_size: TableSize::default(),
                ipam_dir: dir.join(node.name()),
                pod_cgroup: None,
            }
        })
        .collect()
}

/// Adds pod `name` on `node` the way flotilla-cni does: an address from the node's pool (a /32
/// behind the link-local gateway, the overlay's MTU), the veth pair, the endpoint registered.
async fn add_pod(
    bed: &mut Testbed,
    settings: &[NetworkSettings],
    node: usize,
    name: &str,
) -> anyhow::Result<Pod> {
    let netns = bed.node(node)?.netns().clone();
    let address = with_node_network(&netns, &settings[node], async |backend| {
        let response = backend
            .allocate(tonic::Request::new(proto::AllocateRequest {
                attachment: attachment(name),
                ..Default::default()
            }))
            .await?
            .into_inner();
        ensure!(response.prefix_len == 32 && response.gateway == "169.254.1.1");
        ensure!(
            response.mtu == 1450,
            "MTU {} (underlay 1500 - 50)",
            response.mtu
        );
        Ok(response.address.parse::<Ipv4Addr>()?)
    })?;
    let pod = bed.add_pod_with_ip(node, name, address).await?;
    let (host_ifindex, host_mac) = link_facts(&netns, pod.host_iface())?;
    let (_, pod_mac) = link_facts(pod.netns(), "eth0")?;
    let host_ifname = pod.host_iface().to_owned();
    with_node_network(&netns, &settings[node], async |backend| {
        backend
            .register_endpoint(tonic::Request::new(proto::RegisterEndpointRequest {
                attachment: attachment(name),
                address: address.to_string(),
                host_ifname,
                host_ifindex,
                host_mac,
                pod_mac,
            }))
            .await?;
        Ok(())
    })?;
    Ok(pod)
}

/// A TCP echo of many segments (GSO across every redirect) from each pod to the other.
fn echo_between(pairs: &[(&Pod, &Pod)]) -> anyhow::Result<()> {
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    for (from, to) in pairs {
        let server = flotilla_testbed::traffic::TcpEchoServer::start(
            to.netns(),
            SocketAddrV4::new(to.ip(), 9000),
            Duration::from_secs(10),
        )?;
        let echoed = tcp_echo(
            from.netns(),
            SocketAddrV4::new(to.ip(), 9000),
            &payload,
            Duration::from_secs(10),
        )?;
        server.finish()?;
        ensure!(
            echoed == payload,
            "TCP {} -> {} garbled",
            from.name(),
            to.name()
        );
    }
    Ok(())
}

/// 20 datagrams from `from` to `to`, at most two lost.
fn udp_between(from: &Pod, to: &Pod) -> anyhow::Result<()> {
    let receiver = UdpReceiver::bind(to.netns(), SocketAddrV4::new(to.ip(), 9001))?;
    send_udp(from.netns(), SocketAddrV4::new(to.ip(), 9001), 20, 1200)?;
    ensure!(
        receiver.receive(20, Duration::from_secs(3)) >= 18,
        "UDP {} -> {} lost",
        from.name(),
        to.name()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_forwards_between_pods_and_counts_drops() -> anyhow::Result<()> {
    require_root();
    let mut bed = Testbed::create(TestbedConfig::nodes(2)).await?;
    let dir = tempfile::tempdir()?;
    let settings = node_settings(&bed, dir.path(), Routing::Vxlan);

    // Three pods: a and b on node 0, c on node 1, each with an address from its node's pool.
    let mut pods = Vec::new();
    for (name, node) in [("a", 0usize), ("b", 0), ("c", 1)] {
        pods.push(add_pod(&mut bed, &settings, node, name).await?);
    }
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);

    // The tunnels the agent would derive from the Node objects.
    route(&bed, &[(0, 1, false), (1, 0, false)])?;

    ping(a.netns(), b.ip(), 3)?;
    ping(a.netns(), c.ip(), 3)?;
    ping(c.netns(), b.ip(), 3)?;
    echo_between(&[(a, c), (c, a), (a, b)])?;
    udp_between(a, c)?;

    // Pods reach the remote node's address through the tunnel, and nodes reach pods.
    ping(a.netns(), bed.node(1)?.underlay_ip(), 2)?;
    ping(bed.node(1)?.netns(), a.ip(), 2)?;
    ping(bed.node(0)?.netns(), a.ip(), 2)?;

    // A restarted node network (what an agent restart or upgrade does) keeps forwarding.
    with_node_network(bed.node(0)?.netns(), &settings[0], async |_| Ok(()))?;
    ping(a.netns(), c.ip(), 2)?;

    // Drops are counted per reason: a spoofed source, a destination no pod owns.
    let maps0 = NetworkMaps::open(&NodePins::new(bed.node(0)?.name())?)?;
    let maps1 = NetworkMaps::open(&NodePins::new(bed.node(1)?.name())?)?;
    let count = |maps: &NetworkMaps, reason: DropReason| -> anyhow::Result<u64> {
        Ok(maps
            .drops()?
            .into_iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| n))
    };
    let spoofed_before = count(&maps0, DropReason::SourceMismatch)?;
    let spoof = Ipv4Addr::new(10, 244, 1, 200);
    let status = Command::new("ip")
        .args([
            "-n",
            a.netns().name(),
            "addr",
            "add",
            &format!("{spoof}/32"),
            "dev",
            "eth0",
        ])
        .status()?;
    ensure!(status.success());
    let spoofed = a
        .netns()
        .command("busybox")?
        .args([
            "ping",
            "-c",
            "2",
            "-W",
            "1",
            "-I",
            &spoof.to_string(),
            &c.ip().to_string(),
        ])
        .output()?;
    ensure!(!spoofed.status.success(), "a spoofed source got through");
    ensure!(count(&maps0, DropReason::SourceMismatch)? >= spoofed_before + 2);

    let unknown_before = count(&maps1, DropReason::UnknownDestination)?;
    let nobody = Ipv4Addr::new(10, 244, 2, 250);
    ensure!(ping(a.netns(), nobody, 1).is_err());
    ensure!(count(&maps1, DropReason::UnknownDestination)? > unknown_before);

    // Release removes the endpoint: the pod is unreachable even though its links still exist.
    with_node_network(bed.node(1)?.netns(), &settings[1], async |backend| {
        let released = backend
            .release(tonic::Request::new(proto::ReleaseRequest {
                attachment: attachment("c"),
            }))
            .await?
            .into_inner();
        ensure!(released.found && released.address == c.ip().to_string());
        Ok(())
    })?;
    ensure!(ping(a.netns(), c.ip(), 1).is_err());
    ensure!(maps1.endpoints()?.is_empty());
    bed.teardown()?;
    Ok(())
}

/// Writes the tunnel entries (`from` node's for the `to` node's podCIDR and address), native or
/// VXLAN, as the agent's tunnel sync would.
fn route(bed: &Testbed, pairs: &[(usize, usize, bool)]) -> anyhow::Result<()> {
    for &(from, to, native) in pairs {
        let mut maps = NetworkMaps::open(&NodePins::new(bed.node(from)?.name())?)?;
        let remote = bed.node(to)?;
        let via = Via {
            node_ip: remote.underlay_ip(),
            native,
            accepts_native: native,
        };
        let (cidr, len) = remote.pod_cidr();
        maps.put_tunnel(cidr, u32::from(len), via)?;
        maps.put_tunnel(remote.underlay_ip(), 32, via)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_routing_skips_the_overlay_and_refuses_unencapsulated_strangers()
-> anyhow::Result<()> {
    require_root();
    let mut bed = Testbed::create(TestbedConfig::nodes(2)).await?;
    let dir = tempfile::tempdir()?;
    let settings = node_settings(&bed, dir.path(), Routing::Native);
    let mut pods = Vec::new();
    for (name, node) in [("a", 0usize), ("c", 1)] {
        pods.push(add_pod(&mut bed, &settings, node, name).await?);
    }
    let (a, c) = (&pods[0], &pods[1]);
    route(&bed, &[(0, 1, true), (1, 0, true)])?;
    let node0 = bed.node(0)?.netns().clone();
    let node1 = bed.node(1)?.netns().clone();
    let overlay_before = (overlay_packets(&node0)?, overlay_packets(&node1)?);

    // Pods, both ways, with a payload of many segments (GSO across the redirect); the nodes
    // reach the other node's pod; a pod reaches the other node.
    ping(a.netns(), c.ip(), 3)?;
    ping(c.netns(), a.ip(), 3)?;
    echo_between(&[(a, c), (c, a)])?;
    udp_between(a, c)?;
    ping(&node1, a.ip(), 2)?;
    ping(a.netns(), bed.node(1)?.underlay_ip(), 2)?;
    // None of it went through VXLAN: the devices' counters stand still.
    let overlay_after = (overlay_packets(&node0)?, overlay_packets(&node1)?);
    ensure!(
        overlay_after == overlay_before,
        "native traffic passed the VXLAN devices: (rx, tx) of node 0 and node 1 went from \
         {overlay_before:?} to {overlay_after:?}"
    );

    // Node 1 routes the pair over VXLAN again while node 0 still sends natively: node 1 takes
    // nothing unencapsulated with node 0's pod addresses.
    route(&bed, &[(1, 0, false)])?;
    let maps1 = NetworkMaps::open(&NodePins::new(bed.node(1)?.name())?)?;
    let refused = |maps: &NetworkMaps| -> anyhow::Result<u64> {
        Ok(maps
            .drops()?
            .into_iter()
            .find(|(reason, _)| *reason == DropReason::NotNative)
            .map_or(0, |(_, n)| n))
    };
    let before = refused(&maps1)?;
    ensure!(
        ping(a.netns(), c.ip(), 2).is_err(),
        "node 1 took unencapsulated pod traffic from a VXLAN peer"
    );
    ensure!(
        refused(&maps1)? >= before + 2,
        "node 1 counted {} not_native drops, expected at least {}",
        refused(&maps1)?,
        before + 2
    );
    // Back to VXLAN on both sides: the pair talks again, now through the devices.
    route(&bed, &[(0, 1, false)])?;
    ping(a.netns(), c.ip(), 2)?;
    ensure!(
        overlay_packets(&node0)?.1 > overlay_after.0.1,
        "VXLAN carried nothing"
    );
    bed.teardown()?;
    Ok(())
}
