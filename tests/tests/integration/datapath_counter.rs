//! The eBPF pipeline end to end: the object built from ebpf/ and embedded in the agent is loaded
//! into one node of a 2-node test bed, attached to a pod's host-side veth, counts real traffic
//! between two pod namespaces, survives the loading thread (pinned link and map), is replaced in
//! place by a second attach without losing counts, and stops counting when detached.

use std::{net::SocketAddrV4, time::Duration};

use flotilla_agent::datapath::{
    counters::{self, AttachOutcome, ProtocolCount},
    pins::NodePins,
};
use flotilla_testbed::{
    Testbed, TestbedConfig,
    traffic::{TcpEchoServer, UdpReceiver, ping, send_udp, tcp_echo},
};

fn packets(rows: &[ProtocolCount], l3: &str, l4: &str) -> u64 {
    rows.iter()
        .filter(|row| row.l3 == l3 && row.l4 == l4)
        .map(|row| row.packets)
        .sum()
}

#[tokio::test]
async fn counter_on_pod_veth_counts_traffic_between_pods() -> anyhow::Result<()> {
    assert!(
        nix::unistd::geteuid().is_root(),
        "loading eBPF and creating namespaces needs root; run via `cargo xtask test`"
    );
    let mut bed = Testbed::create(TestbedConfig::nodes(2)).await?;
    let a = bed.add_pod(0, "a").await?;
    let b = bed.add_pod(0, "b").await?;
    let node = bed.node(0)?.clone();
    let pins = NodePins::new(node.name())?;

    // Load and attach from a thread inside the node's namespace, as the agent running there does.
    let outcome = node
        .netns()
        .run(|| counters::attach(&pins, a.host_iface()))??;
    assert_eq!(outcome, AttachOutcome::Attached);
    assert!(pins.map("PROTO_COUNTERS").exists());

    // The attaching thread is gone: only the pins keep the program running.
    ping(a.netns(), b.ip(), 5)?;
    let udp_target = SocketAddrV4::new(b.ip(), 9000);
    let receiver = UdpReceiver::bind(b.netns(), udp_target)?;
    send_udp(a.netns(), udp_target, 20, 100)?;
    assert_eq!(receiver.receive(20, Duration::from_secs(5)), 20);
    let tcp_target = SocketAddrV4::new(b.ip(), 8080);
    let server = TcpEchoServer::start(b.netns(), tcp_target, Duration::from_secs(5))?;
    let payload = vec![7_u8; 10_000];
    let echoed = tcp_echo(a.netns(), tcp_target, &payload, Duration::from_secs(5))?;
    assert_eq!(echoed, payload);
    assert_eq!(server.finish()?, payload.len());

    let rows = counters::read(&pins)?;
    println!("after first attach: {rows:#?}");
    // Only what pod a sent is counted (ingress of its host-side veth): 5 echo requests, 20
    // datagrams, and the client side of one TCP connection (SYN, ACKs, data, FIN: at least 4).
    assert_eq!(packets(&rows, "ipv4", "icmp"), 5);
    assert_eq!(packets(&rows, "ipv4", "udp"), 20);
    let tcp_before = packets(&rows, "ipv4", "tcp");
    assert!(tcp_before >= 4, "tcp packets: {tcp_before}");
    let udp = rows
        .iter()
        .find(|row| row.l3 == "ipv4" && row.l4 == "udp")
        .map(|row| row.bytes);
    // 100 bytes payload + 8 UDP + 20 IPv4 + 14 Ethernet.
    assert_eq!(udp, Some(20 * 142));

    // A second attach (an agent restart or upgrade) swaps the program on the pinned link and
    // re-uses the pinned map: the counts continue.
    let outcome = node
        .netns()
        .run(|| counters::attach(&pins, a.host_iface()))??;
    assert_eq!(outcome, AttachOutcome::Replaced);
    send_udp(a.netns(), udp_target, 5, 100)?;
    assert_eq!(receiver.receive(5, Duration::from_secs(5)), 5);
    let rows = counters::read(&pins)?;
    assert_eq!(packets(&rows, "ipv4", "udp"), 25);

    // Detached: traffic flows on, uncounted.
    counters::detach(&pins, a.host_iface())?;
    send_udp(a.netns(), udp_target, 5, 100)?;
    assert_eq!(receiver.receive(5, Duration::from_secs(5)), 5);
    let rows = counters::read(&pins)?;
    assert_eq!(packets(&rows, "ipv4", "udp"), 25);

    // Attaching to an interface the node does not have is a clear error.
    let err = node
        .netns()
        .run(|| counters::attach(&pins, "no-such-veth"))?
        .expect_err("attaching to a missing interface must fail");
    assert!(err.to_string().contains("no-such-veth"), "{err}");

    bed.teardown()?;
    assert!(!pins.root().exists(), "teardown removed the node's pins");
    Ok(())
}
