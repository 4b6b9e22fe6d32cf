//! The pod network end to end: three nodes (namespaces on an underlay bridge), each with a real
//! containerd calling `flotilla-cni` and an agent running the eBPF datapath with `--routing
//! native`. Nodes 1 and 2 share a segment and route natively; node 3 sits on another segment,
//! behind a router, so the pairs with it fall back to VXLAN (a mixed cluster). Pods pinned to
//! nodes ping and open TCP and UDP connections to each other on the same and on other nodes, the
//! nodes reach pods, pods reach the nodes and the world outside the cluster (masqueraded), a
//! NetworkPolicy tells pods apart across the native pair, a NodePort forwards to the other
//! node natively and over VXLAN, and an established pod-to-pod TCP stream survives both agents
//! restarting.
//!
//! Traffic is sent from inside pod and node namespaces by the test process (nsenter semantics)
//! and, for the pods' own view, with `kubectl exec`. Every address is inside the test bed.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::AsFd as _,
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::support::{
    LocalCluster, eventually, hostname_at, overlay_packets, pod_phase, require_root, testapp_pod,
};
use anyhow::{bail, ensure};
use flotilla_agent::datapath::{
    conntrack::NatTable, network::NetworkMaps, pins::NodePins, tunnels::Routing,
};
use flotilla_testbed::{
    Netns, TestbedConfig,
    traffic::{ping, tcp_echo},
};

fn pods_manifest(nodes: &[String]) -> String {
    let pod =
        |name: &str, node: &str| testapp_pod(name, node, &[("app", "net"), ("pod", name)], "");
    [
        pod("a1", &nodes[0]),
        pod("a2", &nodes[0]),
        pod("b1", &nodes[1]),
        pod("c1", &nodes[2]),
    ]
    .join("---\n")
}

/// Sends "hostname" to the testapp's UDP echo from inside `netns` and returns the answer.
fn udp_hostname(netns: &Netns, to: SocketAddrV4) -> anyhow::Result<String> {
    let answer = netns.run(|| -> std::io::Result<String> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut buffer = [0u8; 256];
        // UDP may lose the first datagram while ARP/neighbour state settles: three tries.
        let mut last = None;
        for _ in 0..3 {
            socket.send_to(b"hostname", to)?;
            match socket.recv(&mut buffer) {
                Ok(n) => return Ok(String::from_utf8_lossy(&buffer[..n]).trim().to_owned()),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no answer")))
    })??;
    Ok(answer)
}

/// Connects from inside `netns` to `to` and returns true if the TCP handshake completed.
fn tcp_connects(netns: &Netns, to: SocketAddrV4) -> anyhow::Result<bool> {
    Ok(netns.run(|| TcpStream::connect_timeout(&to.into(), Duration::from_secs(3)).is_ok())?)
}

/// Pods' traffic leaving the cluster is masqueraded by the datapath, with no nftables rule:
/// UDP is answered through the node's address (also in fragments), ICMP echo works, an ICMP error about a
/// masqueraded flow reaches the pod's socket, and a node socket opening a flow on the tuple a
/// pod's flow holds (same port, same peer) is moved to another port instead of colliding.
/// `pod` and `node` are a pod on the node whose address is `node_ip`; `host_ip` is outside.
fn check_masquerade(
    pod: &Netns,
    node: &Netns,
    host_ip: Ipv4Addr,
    node_ip: Ipv4Addr,
) -> anyhow::Result<()> {
    // UDP there and back.
    let outside = UdpSocket::bind((host_ip, 0))?;
    outside.set_read_timeout(Some(Duration::from_secs(10)))?;
    let to = SocketAddrV4::new(host_ip, outside.local_addr()?.port());
    // "big" is answered with a datagram the outside's link carries in three fragments.
    const BIG: usize = 4000;
    let responder = std::thread::spawn(move || -> std::io::Result<std::net::SocketAddr> {
        let mut buffer = [0u8; 64];
        let answer = |asked: &[u8]| {
            if asked == b"big" {
                vec![b'x'; BIG]
            } else {
                b"pong".to_vec()
            }
        };
        let (n, peer) = outside.recv_from(&mut buffer)?;
        // Answer each retry too, so a lost first answer is no failure.
        outside.set_read_timeout(Some(Duration::from_millis(1500)))?;
        outside.send_to(&answer(&buffer[..n]), peer)?;
        while let Ok((n, again)) = outside.recv_from(&mut buffer) {
            outside.send_to(&answer(&buffer[..n]), again)?;
        }
        Ok(peer)
    });
    let (answer, big) = pod.run(|| -> std::io::Result<(String, usize)> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        let ask = |question: &[u8]| -> std::io::Result<Vec<u8>> {
            let mut buffer = vec![0u8; 2 * BIG];
            let mut last = None;
            for _ in 0..3 {
                socket.send_to(question, to)?;
                match socket.recv(&mut buffer) {
                    Ok(n) => return Ok(buffer[..n].to_vec()),
                    Err(err) => last = Some(err),
                }
            }
            Err(last.unwrap_or_else(|| std::io::Error::other("no answer")))
        };
        let answer = String::from_utf8_lossy(&ask(b"ping")?).into_owned();
        Ok((answer, ask(b"big")?.len()))
    })??;
    let peer = responder
        .join()
        .map_err(|_| anyhow::anyhow!("the UDP responder panicked"))??;
    ensure!(answer == "pong", "the pod got {answer:?} back over UDP");
    ensure!(
        big == BIG,
        "the pod got {big} of the {BIG} bytes of a fragmented answer"
    );
    ensure!(
        peer.ip() == std::net::IpAddr::V4(node_ip),
        "the outside saw the pod's UDP from {peer}, expected the node's address {node_ip}"
    );

    // ICMP echo.
    ping(pod, host_ip, 3)?;

    // An ICMP error about a masqueraded flow (port unreachable from the outside host, sent to
    // the node's address) reaches the pod's connected socket as ECONNREFUSED.
    let closed = UdpSocket::bind((host_ip, 0))?.local_addr()?;
    let refused = pod.run(|| -> std::io::Result<bool> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.connect(closed)?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut buffer = [0u8; 16];
        for _ in 0..3 {
            socket.send(b"anyone?")?;
            match socket.recv(&mut buffer) {
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Ok(true);
                }
                _ => {}
            }
        }
        Ok(false)
    })??;
    ensure!(
        refused,
        "the port unreachable for {closed} never reached the pod's socket"
    );

    // The node opens a connection from the port and to the peer a pod's connection holds.
    let listener = TcpListener::bind((host_ip, 0))?;
    let listening = SocketAddrV4::new(host_ip, listener.local_addr()?.port());
    let port = 40_000 + u16::try_from(std::process::id() % 10_000).unwrap_or(0);
    let connect_from = move |address: Ipv4Addr| -> std::io::Result<TcpStream> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddrV4::new(address, port).into())?;
        socket.connect_timeout(&listening.into(), Duration::from_secs(3))?;
        Ok(socket.into())
    };
    let from_pod = pod.run(|| connect_from(Ipv4Addr::UNSPECIFIED))??;
    let (_, pod_peer) = listener.accept()?;
    let mut from_node = node.run(|| connect_from(node_ip))??;
    let (mut to_node, node_peer) = listener.accept()?;
    ensure!(
        pod_peer == std::net::SocketAddr::from((node_ip, port)),
        "the pod's connection from port {port} arrived as {pod_peer}"
    );
    ensure!(
        node_peer.ip() == std::net::IpAddr::V4(node_ip) && node_peer.port() != port,
        "the node's connection from port {port} arrived as {node_peer}, colliding with the \
         pod's {pod_peer}"
    );
    to_node.write_all(b"n")?;
    from_node.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut byte = [0u8; 1];
    from_node.read_exact(&mut byte)?;
    drop(from_pod);
    Ok(())
}

/// Stops a running stream; its thread reports (round trips, failure).
type Stream = (
    mpsc::Sender<()>,
    std::thread::JoinHandle<(u32, Option<String>)>,
);

/// A TCP stream from inside `netns` to an echo server that sends a numbered line every 50 ms
/// and checks it comes back, until told to stop (or 120 s pass). Reports (round trips, failure).
fn start_stream(netns: &Netns, to: SocketAddrV4) -> anyhow::Result<Stream> {
    let file = std::fs::File::open(netns.path())?;
    let (stop, stopped) = mpsc::channel::<()>();
    let (connected, is_connected) = mpsc::channel::<Result<(), String>>();
    let thread = std::thread::spawn(move || {
        let mut round_trips = 0;
        if let Err(err) = nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET) {
            let _ = connected.send(Err(err.to_string()));
            return (0, Some(format!("setns: {err}")));
        }
        let mut stream = match TcpStream::connect_timeout(&to.into(), Duration::from_secs(3)) {
            Ok(stream) => stream,
            Err(err) => {
                let _ = connected.send(Err(err.to_string()));
                return (0, Some(format!("connect: {err}")));
            }
        };
        let _ = connected.send(Ok(()));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if stopped.try_recv().is_ok() {
                return (round_trips, None);
            }
            let line = format!("line {round_trips:06}\n");
            let mut echoed = vec![0u8; line.len()];
            if let Err(err) = stream
                .write_all(line.as_bytes())
                .and_then(|()| stream.read_exact(&mut echoed))
            {
                return (
                    round_trips,
                    Some(format!("round trip {round_trips}: {err}")),
                );
            }
            if echoed != line.as_bytes() {
                return (
                    round_trips,
                    Some(format!("round trip {round_trips}: garbled echo")),
                );
            }
            round_trips += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        (
            round_trips,
            Some("ran for 120 s without being stopped".into()),
        )
    });
    match is_connected.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => Ok((stop, thread)),
        Ok(Err(err)) => bail!("the long-lived stream could not connect to {to}: {err}"),
        Err(_) => bail!("the long-lived stream did not connect to {to} within 10 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_reach_each_other_on_and_across_nodes() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let bed = TestbedConfig {
        remote_nodes: 1,
        ..TestbedConfig::nodes(3)
    };
    let mut local = LocalCluster::start_with(started, bed, Routing::Native).await?;
    let nodes: Vec<String> = local
        .nodes()
        .map(|node| node.config.node_name.clone())
        .collect();
    let node_ips: Vec<Ipv4Addr> = local
        .nodes()
        .map(|node| node.config.node_ip.parse())
        .collect::<Result<_, _>>()?;
    let cluster = &local.cluster;
    cluster.apply("pods.yaml", &pods_manifest(&nodes))?;

    let pods = eventually(Duration::from_secs(90), "pods Running with IPs", || {
        let list = cluster.json(&["get", "pods", "-l", "app=net"])?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let ready: Vec<(String, Ipv4Addr)> = items
            .iter()
            .filter(|pod| pod_phase(pod) == "Running")
            .filter_map(|pod| {
                Some((
                    pod["metadata"]["name"].as_str()?.to_owned(),
                    pod["status"]["podIP"].as_str()?.parse().ok()?,
                ))
            })
            .collect();
        Ok((ready.len() == 4).then_some(ready))
    })
    .await?;
    let ip = |name: &str| -> Ipv4Addr {
        pods.iter()
            .find(|(pod, _)| pod == name)
            .map(|(_, ip)| *ip)
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    };
    eprintln!("pods Running after {:?}: {pods:?}", started.elapsed());
    let (a1, a2, b1, c1) = (ip("a1"), ip("a2"), ip("b1"), ip("c1"));
    ensure!(
        a1 != a2 && a1 != b1 && b1 != c1,
        "pods share addresses: {pods:?}"
    );

    // What the agents put into the datapath, read from the pinned maps.
    let maps0 = NetworkMaps::open(&NodePins::new(&nodes[0])?)?;
    let endpoints: Vec<Ipv4Addr> = maps0.endpoints()?.iter().map(|e| e.address).collect();
    ensure!(
        endpoints.contains(&a1) && endpoints.contains(&a2) && !endpoints.contains(&b1),
        "node 0's endpoint map holds {endpoints:?}, expected a1 {a1} and a2 {a2} only"
    );
    let tunnels = eventually(
        Duration::from_secs(20),
        "tunnels to both other nodes",
        || {
            let tunnels = maps0.tunnels()?;
            ensure!(tunnels.len() == 4, "node 0's tunnel map holds {tunnels:?}");
            Ok(Some(tunnels))
        },
    )
    .await?;
    eprintln!("node 0 tunnels: {tunnels:?}");
    // Natively to the node on its segment, VXLAN to the one behind the router.
    for row in &tunnels {
        ensure!(
            row.native == (row.node_ip == node_ips[1]),
            "node 0 routes {}/{} {}: {tunnels:?}",
            row.prefix,
            row.prefix_len,
            if row.native { "natively" } else { "over VXLAN" }
        );
    }

    // from_pod is attached to both pods' veths (right after ADD answered), as pinned links.
    let links = NodePins::new(&nodes[0])?.links_dir();
    eventually(
        Duration::from_secs(10),
        "from_pod links of a1 and a2",
        || {
            let count = std::fs::read_dir(&links)?
                .flatten()
                .filter(|entry| entry.file_name().to_string_lossy().starts_with("from_pod@"))
                .count();
            Ok((count == 2).then_some(()))
        },
    )
    .await?;

    let a1_ns = local.pod_netns(a1)?;
    let b1_ns = local.pod_netns(b1)?;
    let c1_ns = local.pod_netns(c1)?;

    // ICMP: same node, across nodes, both directions. To the node on the same segment without
    // the VXLAN device, to the remote one through it.
    let node0 = local.node.netns.clone();
    let overlay_before = overlay_packets(&node0)?;
    ping(&a1_ns, a2, 3)?;
    ping(&a1_ns, b1, 3)?;
    let overlay_native = overlay_packets(&node0)?;
    ensure!(
        overlay_native == overlay_before,
        "pings to the native peer passed node 0's VXLAN device: (rx, tx) {overlay_before:?} -> \
         {overlay_native:?}"
    );
    ping(&a1_ns, c1, 3)?;
    ensure!(
        overlay_packets(&node0)?.1 >= overlay_native.1 + 3,
        "pings to the remote node's pod did not go through node 0's VXLAN device"
    );
    ping(&c1_ns, b1, 3)?;
    ping(&b1_ns, a1, 3)?;
    eprintln!("ping ok after {:?}", started.elapsed());

    // TCP across nodes with a payload larger than one segment (GSO through the tunnel), and on
    // the same node.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for (from, to) in [(&a1_ns, b1), (&c1_ns, a1), (&a1_ns, a2)] {
        let echoed = tcp_echo(
            from,
            SocketAddrV4::new(to, 9000),
            &payload,
            Duration::from_secs(10),
        )?;
        ensure!(echoed == payload, "TCP echo to {to} came back different");
    }
    // UDP across nodes and on the same node.
    ensure!(udp_hostname(&a1_ns, SocketAddrV4::new(c1, 9001))? == "c1");
    ensure!(udp_hostname(&b1_ns, SocketAddrV4::new(a2, 9001))? == "a2");
    eprintln!("TCP and UDP ok after {:?}", started.elapsed());

    // The pods' own view: no address translation between pods.
    let seen = cluster.kubectl_ok(&[
        "exec",
        "a1",
        "--",
        "wget",
        "-qO-",
        &format!("http://{b1}:8080/clientip"),
    ])?;
    ensure!(
        seen.trim().split(':').next() == Some(a1.to_string().as_str()),
        "b1 saw a1 as {seen:?}, expected {a1}"
    );

    // Ingress policy across the native pair knows which pod is which: b1 admits a2 only.
    cluster.apply(
        "policy.yaml",
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: b1-from-a2
spec:
  podSelector:
    matchLabels:
      pod: b1
  ingress:
  - from:
    - podSelector:
        matchLabels:
          pod: a2
",
    )?;
    let a2_ns = local.pod_netns(a2)?;
    let b1_echo = SocketAddrV4::new(b1, 9000);
    eventually(Duration::from_secs(20), "b1 isolated from a1", || {
        Ok((!tcp_connects(&a1_ns, b1_echo)?).then_some(()))
    })
    .await?;
    ensure!(tcp_connects(&a2_ns, b1_echo)?, "a2 -> b1 under the policy");
    cluster.kubectl_ok(&["delete", "networkpolicy", "b1-from-a2"])?;
    eventually(Duration::from_secs(20), "b1 open to a1 again", || {
        Ok(tcp_connects(&a1_ns, b1_echo)?.then_some(()))
    })
    .await?;
    eprintln!(
        "policy across the native pair ok after {:?}",
        started.elapsed()
    );

    // A NodePort whose only backend (b1) is on node 1, from outside the cluster (the host):
    // through node 0 it is SNATed and forwarded natively, through node 2 over VXLAN, and the
    // answers come back through the entry node.
    cluster.apply(
        "nodeport.yaml",
        "apiVersion: v1
kind: Service
metadata:
  name: b1
spec:
  type: NodePort
  selector:
    pod: b1
  ports:
  - port: 80
    targetPort: 8080
",
    )?;
    let node_port = cluster.json(&["get", "service", "b1"])?["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .ok_or_else(|| anyhow::anyhow!("the Service b1 got no nodePort"))?;
    for entry in [node_ips[0], node_ips[2]] {
        let address = std::net::SocketAddr::from((entry, node_port));
        let answer = eventually(Duration::from_secs(30), "b1 behind a NodePort", || {
            Ok(hostname_at(address).ok())
        })
        .await?;
        ensure!(answer == "b1", "{address} answered {answer:?}, expected b1");
    }
    eprintln!("NodePorts ok after {:?}", started.elapsed());

    // Nodes reach pods (their own and others'), pods reach nodes (their own and others').
    let node1 = local.others[0].netns.clone();
    ensure!(
        tcp_connects(&node0, SocketAddrV4::new(a1, 9000))?,
        "node 0 -> a1"
    );
    let node2 = local.others[1].netns.clone();
    ensure!(
        tcp_connects(&node1, SocketAddrV4::new(a1, 9000))?,
        "node 1 -> a1"
    );
    ensure!(
        tcp_connects(&node2, SocketAddrV4::new(a1, 9000))?,
        "node 2 (remote) -> a1"
    );
    ensure!(
        tcp_connects(&a1_ns, SocketAddrV4::new(node_ips[2], 10250))?,
        "a1 -> node 2 (remote)"
    );
    ensure!(
        tcp_connects(&a1_ns, SocketAddrV4::new(node_ips[0], 10250))?,
        "a1 -> node 0"
    );
    ensure!(
        tcp_connects(&a1_ns, SocketAddrV4::new(node_ips[1], 10250))?,
        "a1 -> node 1"
    );

    // Outside the cluster (the host's address on the underlay): masqueraded to the node's IP.
    let host_ip = local.host_ip;
    let outside = TcpListener::bind(SocketAddrV4::new(host_ip, 0))?;
    outside.set_nonblocking(false)?;
    let outside_port = outside.local_addr()?.port();
    let accept = std::thread::spawn(move || -> std::io::Result<std::net::SocketAddr> {
        let (_, peer) = outside.accept()?;
        Ok(peer)
    });
    ensure!(
        tcp_connects(&a1_ns, SocketAddrV4::new(host_ip, outside_port))?,
        "a1 -> outside {host_ip}"
    );
    let peer = accept
        .join()
        .map_err(|_| anyhow::anyhow!("accept thread panicked"))??;
    ensure!(
        peer.ip() == std::net::IpAddr::V4(node_ips[0]),
        "the outside saw a1 as {peer}, expected node 0's address {}",
        node_ips[0]
    );
    check_masquerade(&a1_ns, &node0, host_ip, node_ips[0])?;
    let masqueraded = NatTable::masquerade(&NodePins::new(&nodes[0])?)?.entries()?;
    ensure!(
        masqueraded
            .iter()
            .any(|(key, _)| key.src == a1.octets() && key.dst == host_ip.octets()),
        "node 0's masquerade table has no flow a1 -> {host_ip}: {masqueraded:?}"
    );
    let nft = node0
        .command("nft")?
        .args(["list", "table", "ip", "flotilla"])
        .output()?;
    ensure!(
        !nft.status.success(),
        "node 0 still has the old nftables masquerade table: {}",
        String::from_utf8_lossy(&nft.stdout)
    );
    eprintln!("node/outside checks ok after {:?}", started.elapsed());

    // A long-lived TCP stream a1 -> b1 across both agents restarting; and with the agents
    // stopped, pods still reach each other.
    let (stop, stream) = start_stream(&a1_ns, SocketAddrV4::new(b1, 9000))?;
    std::thread::sleep(Duration::from_millis(500));
    local.node.stop_agent()?;
    local.others[0].stop_agent()?;
    ping(&a1_ns, b1, 3)?;
    ping(&a1_ns, a2, 3)?;
    std::thread::sleep(Duration::from_millis(500));
    local.node.start_agent()?;
    local.others[0].start_agent()?;
    // The restarted agents serve CNI again: a new pod on node 0 gets an address and reaches b1.
    cluster.apply(
        "late.yaml",
        &pods_manifest(&nodes)
            .split("---\n")
            .next()
            .unwrap_or_default()
            .replace("name: a1", "name: a3"),
    )?;
    let a3 = eventually(Duration::from_secs(60), "a3 Running", || {
        let pod = cluster.json(&["get", "pod", "a3"])?;
        Ok((pod_phase(&pod) == "Running")
            .then(|| pod["status"]["podIP"].as_str()?.parse::<Ipv4Addr>().ok())
            .flatten())
    })
    .await?;
    ensure!(![a1, a2].contains(&a3), "a3 got an address in use: {a3}");
    ping(&local.pod_netns(a3)?, b1, 3)?;
    let _ = stop.send(());
    let (round_trips, failure) = stream
        .join()
        .map_err(|_| anyhow::anyhow!("the stream thread panicked"))?;
    ensure!(
        failure.is_none(),
        "the long-lived stream broke after {round_trips} round trips: {failure:?}"
    );
    eprintln!("the stream survived the agent restarts ({round_trips} round trips)");

    // Deleting a pod releases its address and its endpoint.
    cluster.kubectl_ok(&["delete", "pod", "a2", "--wait=true", "--timeout=60s"])?;
    eventually(Duration::from_secs(30), "a2's endpoint removed", || {
        let endpoints: Vec<Ipv4Addr> = maps0.endpoints()?.iter().map(|e| e.address).collect();
        Ok((!endpoints.contains(&a2)).then_some(()))
    })
    .await?;
    ensure!(
        !local.node.dirs.ipam_dir().join(a2.to_string()).exists(),
        "a2's address {a2} is still allocated"
    );
    let drops = maps0.drops()?;
    eprintln!("node 0 drops: {drops:?}");

    // The same counters as Prometheus metrics on the agent's metrics port.
    let metrics = node0.run(|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(
            &SocketAddrV4::new(node_ips[0], 9962).into(),
            Duration::from_secs(3),
        )?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: node\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        Ok(text)
    })??;
    for expected in [
        "flotilla_datapath_drops_total{reason=\"source_mismatch\"}",
        "flotilla_datapath_drops_total{reason=\"no_tunnel\"}",
        "flotilla_datapath_endpoints 2",
        "flotilla_datapath_tunnels 4",
    ] {
        ensure!(
            metrics.contains(expected),
            "the metrics lack {expected:?}:\n{metrics}"
        );
    }
    local.shutdown().await;
    eprintln!("done after {:?}", started.elapsed());
    Ok(())
}
