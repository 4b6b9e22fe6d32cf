//! Privileged test of the flannel-style baseline network: on a 2-node test bed whose nodes also
//! hold a collect-metadata VXLAN device on 8472 (as Flotilla's datapath will), the baseline
//! connects pods across nodes (VXLAN on 8473) and on one node (bridge) over 10.245.0.0/16,
//! leaves the pods' own network alone, and leaves nothing behind when dropped.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, ensure};
use flotilla_testbed::{
    Netlink, Netns, Testbed, TestbedConfig,
    flannel::{self, FlannelBaseline},
    traffic::{TcpEchoServer, UdpReceiver, ping, send_udp, tcp_echo},
};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the flannel baseline test creates network namespaces and needs root; run it via `cargo \
         xtask test`"
    );
}

/// UDP ports with a socket in `netns`, from the calling thread's view of /proc/net/udp
/// (/proc/net follows /proc/self, the main thread, which stays in the host namespace).
fn udp_ports(netns: &Netns) -> anyhow::Result<Vec<u16>> {
    let table = netns.run(|| std::fs::read_to_string("/proc/thread-self/net/udp"))??;
    Ok(table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter_map(|local| local.split(':').nth(1))
        .filter_map(|port| u16::from_str_radix(port, 16).ok())
        .collect())
}

/// Creates a collect-metadata VXLAN device on UDP 8472 in `netns`, the way Flotilla's datapath
/// owns that port, with iproute2.
fn add_metadata_vxlan(netns: &Netns) -> anyhow::Result<()> {
    for args in [
        &[
            "link",
            "add",
            "flt-vxlan",
            "type",
            "vxlan",
            "external",
            "dstport",
            "8472",
        ][..],
        &["link", "set", "flt-vxlan", "up"],
    ] {
        let output = netns
            .command("ip")?
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running ip (iproute2)")?;
        ensure!(
            output.status.success(),
            "ip {args:?} in {}: {}",
            netns.name(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

#[tokio::test]
async fn baseline_connects_pods_beside_their_own_network_and_leaves_nothing() -> anyhow::Result<()>
{
    require_root();
    let mut bed = Testbed::create(TestbedConfig::nodes(2)).await?;
    let a = bed.add_pod(0, "a").await?;
    let b = bed.add_pod(0, "b").await?;
    let c = bed.add_pod(1, "c").await?;
    let nodes = bed.nodes().to_vec();
    for node in &nodes {
        add_metadata_vxlan(node.netns())?;
    }

    // The claim behind port 8473: a flannel-style device cannot share 8472 with the
    // collect-metadata one.
    let node1 = Netlink::connect(nodes[0].netns())?;
    node1
        .add_vxlan("clash", 1, nodes[0].underlay_ip(), "eth0", 8472)
        .await?;
    let clash = node1.set_up("clash").await.expect_err("8472 is taken");
    ensure!(
        format!("{clash:?}").contains("AddrInUse") || clash.to_string().contains("in use"),
        "{clash:?}"
    );
    node1.delete_link("clash").await?;

    let baseline = FlannelBaseline::for_testbed(&bed).await?;
    let ips = baseline.pod_ips();
    assert_eq!(
        ips,
        [
            Ipv4Addr::new(10, 245, 1, 2),
            Ipv4Addr::new(10, 245, 1, 3),
            Ipv4Addr::new(10, 245, 2, 2),
        ]
    );
    for node in &nodes {
        let netlink = node.netlink();
        assert_eq!(netlink.mtu(flannel::VXLAN_DEVICE).await?, 1450);
        assert_eq!(netlink.mtu(flannel::BRIDGE).await?, 1450);
        let ports = udp_ports(node.netns())?;
        ensure!(
            ports.contains(&8472) && ports.contains(&flannel::VXLAN_PORT),
            "{}: UDP ports {ports:?}",
            node.name()
        );
    }

    // Across nodes over flannel.1, both ways; on one node over cni0.
    ping(a.netns(), ips[2], 3)?;
    ping(c.netns(), ips[0], 2)?;
    ping(a.netns(), ips[1], 2)?;
    // More than one MTU per write, so segments are full-sized on the 1450-byte path.
    let payload: Vec<u8> = (0..200_000_u32).map(|i| (i % 251) as u8).collect();
    for (client, server, ip) in [(&a, &c, ips[2]), (&a, &b, ips[1]), (&c, &b, ips[1])] {
        let target = SocketAddrV4::new(ip, 7000);
        let echo = TcpEchoServer::start(server.netns(), target, Duration::from_secs(10))?;
        let echoed = tcp_echo(client.netns(), target, &payload, Duration::from_secs(10))?;
        assert!(echoed == payload, "TCP echo to {target} came back altered");
        assert_eq!(echo.finish()?, payload.len());
    }
    let target = SocketAddrV4::new(ips[0], 7001);
    let receiver = UdpReceiver::bind(a.netns(), target)?;
    send_udp(c.netns(), target, 20, 1_400)?;
    assert_eq!(receiver.receive(20, Duration::from_secs(5)), 20);

    // The pods' own network is untouched: the default route still goes out of eth0.
    ping(a.netns(), b.ip(), 1)?;
    assert!(
        ping(a.netns(), c.ip(), 1).is_err(),
        "the test bed has no overlay of its own"
    );

    drop(baseline);
    for node in &nodes {
        let netlink = node.netlink();
        for link in [
            flannel::VXLAN_DEVICE,
            flannel::BRIDGE,
            "flv0",
            "flv1",
            "flv2",
        ] {
            assert_eq!(
                netlink.try_index(link).await?,
                None,
                "{link} in {}",
                node.name()
            );
        }
        let ports = udp_ports(node.netns())?;
        ensure!(
            !ports.contains(&flannel::VXLAN_PORT) && ports.contains(&8472),
            "{}: UDP ports {ports:?}",
            node.name()
        );
        let forward = node
            .netns()
            .run(|| std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward"))??;
        assert_eq!(forward.trim(), "1", "the test bed's own setting is back");
    }
    for pod in [&a, &b, &c] {
        let netlink = Netlink::connect(pod.netns())?;
        assert_eq!(netlink.try_index(flannel::POD_IFACE).await?, None);
    }
    ping(a.netns(), b.ip(), 1)?;
    assert!(ping(a.netns(), ips[2], 1).is_err());
    bed.teardown()?;
    Ok(())
}

#[tokio::test]
async fn a_failed_creation_removes_what_it_made() -> anyhow::Result<()> {
    require_root();
    let mut bed = Testbed::create(TestbedConfig::nodes(2)).await?;
    bed.add_pod(0, "a").await?;
    bed.add_pod(1, "b").await?;
    // A squatter named like the baseline's VXLAN device on node 2 makes creation fail after
    // node 1 is fully set up and node 2's bridge exists.
    let node2 = bed.node(1)?.clone();
    node2.netlink().add_bridge(flannel::VXLAN_DEVICE).await?;
    let err = FlannelBaseline::for_testbed(&bed)
        .await
        .expect_err("flannel.1 exists on node 2");
    assert!(err.to_string().contains("flannel.1"), "{err}");
    // What the baseline made is gone; the squatter, which it did not make, is still there.
    for node in bed.nodes() {
        for link in [flannel::BRIDGE, "flv0", "flv1"] {
            assert_eq!(
                node.netlink().try_index(link).await?,
                None,
                "{link} in {}",
                node.name()
            );
        }
    }
    assert_eq!(
        bed.node(0)?
            .netlink()
            .try_index(flannel::VXLAN_DEVICE)
            .await?,
        None
    );
    assert!(
        node2
            .netlink()
            .try_index(flannel::VXLAN_DEVICE)
            .await?
            .is_some()
    );
    for pod in bed.pods() {
        let netlink = Netlink::connect(pod.netns())?;
        assert_eq!(netlink.try_index(flannel::POD_IFACE).await?, None);
    }
    bed.teardown()?;
    Ok(())
}
