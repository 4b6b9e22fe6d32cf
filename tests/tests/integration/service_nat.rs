//! Services beyond the pods' socket balancer, end to end on two nodes with real containerd:
//! - per-packet NAT on the pod veth for a pod's sockets outside the pod cgroup: TCP and UDP to
//!   the ClusterIP spread over both backends, an endpointless Service refused at once (ICMP);
//! - the node itself (host socket balancer in the root cgroup, scoped to the node's namespace);
//! - NodePort on a node's underlay address from the other node's namespace, with
//!   externalTrafficPolicy Cluster (SNAT to a remote backend) and Local (client IP kept, only the
//!   node's own backend), and refused at once without endpoints;
//! - sessionAffinity ClientIP on both paths, internalTrafficPolicy Local;
//! - graceful termination: a connection to a terminating backend keeps working while new ones
//!   go elsewhere;
//! - a selectorless Service whose EndpointSlice names an address outside the cluster (the
//!   host), reached per packet and masqueraded, the reply reverse-NATed on the pod veth's egress.

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use crate::support::{self, LocalCluster, eventually, require_root};
use anyhow::{Context as _, bail, ensure};
use flotilla_testbed::{Netns, objects, traffic::udp_flow_answers};

const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn manifest(node1: &str, node2: &str) -> String {
    let web = |name: &str, node: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: web
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: docker.io/flotilla/testapp:v1
    imagePullPolicy: Never
    ports:
    - name: http
      containerPort: 8080
    - name: udp
      containerPort: 9001
      protocol: UDP
    readinessProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: 1
    lifecycle:
      preStop:
        exec:
          command: [\"sleep\", \"25\"]
"
        )
    };
    let service = |name: &str, extra: &str, ports: &str| {
        format!(
            "apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector:
    app: web
{extra}  ports:
{ports}"
        )
    };
    let http = "  - name: http\n    port: 80\n    targetPort: http\n";
    [
        web("web-1", node1),
        web("web-2", node2),
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: {node1}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: docker.io/flotilla/testapp:v1
    imagePullPolicy: Never
"
        ),
        service(
            "web",
            "",
            &format!("{http}  - name: udp\n    port: 53\n    protocol: UDP\n    targetPort: udp\n"),
        ),
        service(
            "web-np",
            "  type: NodePort\n",
            "  - name: http\n    port: 80\n    targetPort: http\n    nodePort: 30080\n",
        ),
        service(
            "web-local",
            "  type: NodePort\n  externalTrafficPolicy: Local\n",
            "  - name: http\n    port: 80\n    targetPort: http\n    nodePort: 30081\n",
        ),
        service(
            "web-sticky",
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig:\n    clientIP:\n      timeoutSeconds: 60\n",
            http,
        ),
        service("web-itp", "  internalTrafficPolicy: Local\n", http),
        "apiVersion: v1
kind: Service
metadata:
  name: nobody
spec:
  type: NodePort
  selector:
    app: nobody-has-this
  ports:
  - port: 80
    targetPort: 8080
    nodePort: 30082
"
        .to_owned(),
    ]
    .join("---\n")
}

/// One HTTP/1.1 request on a kept-alive connection; the body.
fn http_get(stream: &mut TcpStream, path: &str) -> anyhow::Result<String> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = None;
    let mut status = String::new();
    reader.read_line(&mut status)?;
    ensure!(status.contains(" 200 "), "GET {path}: {status:?}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = Some(value.trim().parse::<usize>()?);
        }
    }
    let mut body = vec![0; length.context("no content-length")?];
    reader.read_exact(&mut body)?;
    Ok(String::from_utf8_lossy(&body).trim().to_owned())
}

/// A TCP connection to `to`, opened from a thread inside `netns` (the socket stays there).
fn connect_in(netns: &Netns, to: SocketAddr) -> anyhow::Result<TcpStream> {
    Ok(netns.run(|| TcpStream::connect_timeout(&to, IO_TIMEOUT))??)
}

/// `path` fetched `count` times from inside `netns`, a new connection each time.
fn fetch_many(
    netns: &Netns,
    to: SocketAddr,
    path: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    (0..count)
        .map(|_| {
            let mut stream =
                connect_in(netns, to).with_context(|| format!("connecting to {to}"))?;
            http_get(&mut stream, path)
        })
        .collect()
}

fn distinct(answers: &[String]) -> BTreeSet<String> {
    answers.iter().cloned().collect()
}

/// How connecting to `to` from `netns` fails, with how long it took; an error if it succeeds.
fn refusal(netns: &Netns, to: SocketAddr) -> anyhow::Result<(std::io::ErrorKind, Duration)> {
    let started = Instant::now();
    match netns.run(|| TcpStream::connect_timeout(&to, IO_TIMEOUT))? {
        Ok(_) => bail!("{to} accepted a connection"),
        Err(err) => Ok((err.kind(), started.elapsed())),
    }
}

fn cluster_ip(cluster: &support::Cluster, service: &str) -> anyhow::Result<Ipv4Addr> {
    cluster.json(&["get", "service", service])?["spec"]["clusterIP"]
        .as_str()
        .with_context(|| format!("{service} has no clusterIP"))?
        .parse()
        .context("clusterIP")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_reach_pods_from_everywhere() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 2).await?;
    let cluster = &local.cluster;
    let nodes: Vec<_> = local.nodes().collect();
    let (node1, node2) = (nodes[0], nodes[1]);
    let node1_ip: Ipv4Addr = node1.config.node_ip.parse()?;
    let node2_ip: Ipv4Addr = node2.config.node_ip.parse()?;
    cluster.apply(
        "services.yaml",
        &manifest(&node1.config.node_name, &node2.config.node_name),
    )?;
    let client_ip = eventually(Duration::from_secs(90), "pods Ready", || {
        let pods = cluster.json(&["get", "pods"])?;
        let pods = objects::live_pods(&pods);
        let ready = pods.iter().filter(|pod| pod.ready).count();
        let client = pods
            .iter()
            .find(|pod| pod.name == "client" && pod.phase == "Running")
            .and_then(|pod| pod.ip.as_deref()?.parse::<Ipv4Addr>().ok());
        Ok(client.filter(|_| ready == 3))
    })
    .await?;
    let client = local.pod_netns(client_ip)?;
    let web = cluster_ip(cluster, "web")?;
    let both: BTreeSet<String> = ["web-1", "web-2"].map(String::from).into();
    eprintln!("pods ready after {:?}", started.elapsed());

    // Per-packet NAT: the test's own sockets in the client pod's namespace are outside the pod
    // cgroup, so the socket balancer does not see them.
    let to_web = SocketAddr::from((web, 80));
    let seen = eventually(
        Duration::from_secs(30),
        "both pods via per-packet NAT",
        || {
            let seen = distinct(&fetch_many(&client, to_web, "/hostname", 20)?);
            Ok((seen == both).then_some(seen))
        },
    )
    .await?;
    eprintln!("per-packet ClusterIP TCP: {seen:?}");
    let udp_answer = client.run(|| -> anyhow::Result<(String, SocketAddr)> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.set_read_timeout(Some(IO_TIMEOUT))?;
        socket.send_to(b"hostname", (web, 53))?;
        let mut buffer = [0; 256];
        let (read, from) = socket.recv_from(&mut buffer)?;
        Ok((
            String::from_utf8_lossy(&buffer[..read]).trim().to_owned(),
            from,
        ))
    })??;
    ensure!(
        both.contains(&udp_answer.0) && udp_answer.1 == SocketAddr::from((web, 53)),
        "UDP via per-packet NAT: {udp_answer:?}"
    );
    let nobody = cluster_ip(cluster, "nobody")?;
    let (kind, took) = refusal(&client, SocketAddr::from((nobody, 80)))?;
    ensure!(
        kind == std::io::ErrorKind::ConnectionRefused && took < Duration::from_secs(2),
        "an endpointless Service from the pod: {kind:?} after {took:?}, expected refused at once"
    );

    // What `flotilla-agent bpf services` lists on node1.
    let rows = flotilla_agent::datapath::services::ServiceMaps::open(
        &flotilla_agent::datapath::pins::NodePins::new(&node1.config.node_name)?,
    )?
    .rows()?;
    let row = |frontend: &str| rows.iter().find(|row| row.frontend == frontend);
    ensure!(
        row("*:30080/TCP").is_some_and(|row| row.backends.len() == 2)
            && row("*:30081/TCP").is_some_and(|row| row.backends.len() == 1)
            && row("*:30082/TCP").is_some_and(|row| row.backends.is_empty()),
        "node1's NodePorts as listed: {rows:#?}"
    );
    let sticky_vip = cluster_ip(cluster, "web-sticky")?;
    ensure!(
        row(&format!("{sticky_vip}:80/TCP")).is_some_and(|row| row.flags == ["affinity=60s"]),
        "the sticky Service as listed: {rows:#?}"
    );

    // The node itself.
    let seen = distinct(&fetch_many(&node1.netns, to_web, "/hostname", 20)?);
    ensure!(seen == both, "node1 -> ClusterIP reached {seen:?}");
    let (kind, took) = refusal(&node1.netns, SocketAddr::from((nobody, 80)))?;
    ensure!(
        took < Duration::from_secs(2),
        "an endpointless Service from the node: {kind:?} after {took:?}"
    );

    // NodePort on node1's address from node2's namespace.
    let node_port = SocketAddr::from((node1_ip, 30080));
    let seen = eventually(Duration::from_secs(30), "both pods via NodePort", || {
        let seen = distinct(&fetch_many(&node2.netns, node_port, "/hostname", 20)?);
        Ok((seen == both).then_some(seen))
    })
    .await?;
    eprintln!("NodePort (Cluster) from node2: {seen:?}");
    let local_port = SocketAddr::from((node1_ip, 30081));
    let answers = fetch_many(&node2.netns, local_port, "/hostname", 10)?;
    ensure!(
        distinct(&answers) == BTreeSet::from(["web-1".to_owned()]),
        "externalTrafficPolicy Local on node1 reached {answers:?}"
    );
    let seen_client = fetch_many(&node2.netns, local_port, "/clientip", 1)?;
    ensure!(
        seen_client[0].starts_with(&node2_ip.to_string()),
        "externalTrafficPolicy Local: the pod saw the client as {seen_client:?}, not {node2_ip}"
    );
    let (kind, took) = refusal(&node2.netns, SocketAddr::from((node1_ip, 30082)))?;
    ensure!(
        kind == std::io::ErrorKind::ConnectionRefused && took < Duration::from_secs(2),
        "an endpointless NodePort: {kind:?} after {took:?}"
    );

    // Session affinity: one backend per client, on the packet path and at the socket.
    let sticky = SocketAddr::from((cluster_ip(cluster, "web-sticky")?, 80));
    let answers = fetch_many(&client, sticky, "/hostname", 10)?;
    ensure!(
        distinct(&answers).len() == 1,
        "sessionAffinity ClientIP (per packet) spread: {answers:?}"
    );
    let socket_path = cluster.kubectl_ok(&[
        "exec",
        "client",
        "--",
        "sh",
        "-c",
        &format!(
            "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://{}/hostname; echo; done",
            sticky.ip()
        ),
    ])?;
    let distinct_socket: BTreeSet<&str> = socket_path.lines().filter(|l| !l.is_empty()).collect();
    ensure!(
        distinct_socket.len() == 1,
        "sessionAffinity ClientIP (socket) spread: {socket_path:?}"
    );

    // internalTrafficPolicy Local: the client on node1 only reaches web-1.
    let itp = cluster_ip(cluster, "web-itp")?;
    let answers = fetch_many(&client, SocketAddr::from((itp, 80)), "/hostname", 10)?;
    ensure!(
        distinct(&answers) == BTreeSet::from(["web-1".to_owned()]),
        "internalTrafficPolicy Local reached {answers:?}"
    );

    // Graceful termination: a kept-alive connection to the pod being deleted keeps working
    // while new connections go to the other pod.
    let mut kept = connect_in(&client, to_web)?;
    let victim = http_get(&mut kept, "/hostname")?;
    let survivor = both
        .iter()
        .find(|name| **name != victim)
        .cloned()
        .unwrap_or_default();
    cluster.kubectl_ok(&["delete", "pod", &victim, "--wait=false"])?;
    eventually(
        Duration::from_secs(20),
        "new connections avoid the terminating pod",
        || {
            let seen = distinct(&fetch_many(&client, to_web, "/hostname", 10)?);
            Ok((seen == BTreeSet::from([survivor.clone()])).then_some(()))
        },
    )
    .await?;
    let still = http_get(&mut kept, "/hostname")?;
    ensure!(
        still == victim,
        "the kept connection answered from {still}, not {victim}"
    );
    eprintln!("graceful: {victim} kept its connection while terminating, {survivor} took new ones");

    // A backend outside the cluster: a server on the host's bridge address.
    let listener = std::net::TcpListener::bind((local.host_ip, 0))?;
    let outside_port = listener.local_addr()?.port();
    cluster.apply(
        "outside.yaml",
        &format!(
            "apiVersion: v1
kind: Service
metadata:
  name: outside
spec:
  ports:
  - name: tcp
    port: 7000
    targetPort: {outside_port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: outside-1
  labels:
    kubernetes.io/service-name: outside
addressType: IPv4
ports:
- name: tcp
  port: {outside_port}
  protocol: TCP
endpoints:
- addresses: [\"{}\"]
",
            local.host_ip
        ),
    )?;
    let server = std::thread::spawn(move || -> anyhow::Result<String> {
        listener.set_nonblocking(true)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut stream, peer) = loop {
            match listener.accept() {
                Ok(accepted) => break accepted,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    ensure!(
                        Instant::now() < deadline,
                        "nobody connected to the outside server"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(err) => return Err(err.into()),
            }
        };
        stream.set_nonblocking(false)?;
        writeln!(stream, "outside saw {}", peer.ip())?;
        Ok(peer.ip().to_string())
    });
    let outside = SocketAddr::from((cluster_ip(cluster, "outside")?, 7000));
    let greeting = eventually(
        Duration::from_secs(20),
        "the outside backend answers via the ClusterIP",
        || {
            let Ok(stream) = connect_in(&client, outside) else {
                return Ok(None);
            };
            stream.set_read_timeout(Some(IO_TIMEOUT))?;
            let mut line = String::new();
            BufReader::new(stream).read_line(&mut line)?;
            Ok(Some(line.trim().to_owned()))
        },
    )
    .await?;
    let peer = server
        .join()
        .map_err(|_| anyhow::anyhow!("the outside server panicked"))??;
    ensure!(
        peer == node1_ip.to_string(),
        "the outside backend saw {peer} ({greeting}), not the node's masquerade address {node1_ip}"
    );
    eprintln!("outside backend via per-packet NAT: {greeting}");

    local.shutdown().await;
    eprintln!("done after {:?}", started.elapsed());
    Ok(())
}

/// NodePort SNAT never takes a port through which one of the node's own sockets talks to the
/// backend. The host (outside the cluster) sends from the same port as a UDP socket of node 0
/// connected to the only backend, a pod on node 1. If SNAT kept the host's port, the reply entry
/// (pod -> node 0 at that port) would also catch the replies to node 0's socket and send them to
/// the host. Both must get their own answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodeport_snat_leaves_the_nodes_own_sockets_alone() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 2).await?;
    let cluster = &local.cluster;
    let node0_ip: Ipv4Addr = local.node.config.node_ip.parse()?;
    cluster.apply(
        "solo.yaml",
        &[
            support::testapp_pod(
                "solo",
                &local.others[0].config.node_name,
                &[("app", "solo")],
                support::TESTAPP_READINESS,
            ),
            "apiVersion: v1
kind: Service
metadata:
  name: solo
spec:
  type: NodePort
  selector:
    app: solo
  ports:
  - port: 9001
    targetPort: 9001
    protocol: UDP
"
            .to_owned(),
        ]
        .join("---\n"),
    )?;
    let node_port = cluster.json(&["get", "service", "solo"])?["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .context("the Service solo got no nodePort")?;
    let entry = SocketAddrV4::new(node0_ip, node_port);
    // Ready and programmed on node 0 once the NodePort answers.
    let answer = eventually(Duration::from_secs(90), "solo behind its NodePort", || {
        Ok(udp_flow_answers(local.host_ip, 20_700..20_701, entry)?[0].clone())
    })
    .await?;
    ensure!(answer == "solo", "the NodePort answered {answer:?}");
    let pod_ip: Ipv4Addr = cluster.json(&["get", "pod", "solo"])?["status"]["podIP"]
        .as_str()
        .context("solo has no podIP")?
        .parse()?;

    let port = 20_600;
    let node_socket = local.node.netns.run(|| -> std::io::Result<UdpSocket> {
        let socket = UdpSocket::bind((node0_ip, port))?;
        socket.connect((pod_ip, 9001))?;
        socket.set_read_timeout(Some(Duration::from_secs(1)))?;
        Ok(socket)
    })??;
    let host = udp_flow_answers(local.host_ip, port..port + 1, entry)?;
    ensure!(
        host == [Some("solo".to_owned())],
        "the host's flow from port {port} got {host:?}"
    );
    let mut buffer = [0u8; 64];
    let mut own = None;
    for _ in 0..3 {
        node_socket.send(b"hostname")?;
        if let Ok(n) = node_socket.recv(&mut buffer) {
            own = Some(String::from_utf8_lossy(&buffer[..n]).trim().to_owned());
            break;
        }
    }
    ensure!(
        own.as_deref() == Some("solo"),
        "node 0's own socket from port {port} to the pod got {own:?}: its replies went to the \
         host's NodePort flow"
    );
    local.shutdown().await;
    Ok(())
}
