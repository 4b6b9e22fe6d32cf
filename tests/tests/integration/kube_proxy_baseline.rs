//! Privileged smoke test of the Service benchmark's baseline: kube-proxy iptables-mode chains
//! generated for three Services (one endpoint, two endpoints, one endpoint) and loaded into both
//! nodes of a test bed carry a pod's connections to the ClusterIPs over the flannel-style
//! network, as they do in `cargo xtask bench services`: the VIP range is routed from the client
//! pod through its flannel interface, the client's node DNATs in PREROUTING, conntrack
//! un-DNATs the replies, and the chains' counters show the packets went through them, spread
//! over both endpoints of the two-endpoint Service.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    time::Duration,
};

use anyhow::ensure;
use flotilla_testbed::{
    Netlink, Testbed, TestbedConfig,
    flannel::{self, FlannelBaseline},
    kube_proxy::{self, ProxierConfig, ServicePort, Sync},
    perf::{self, ClientConfig, Server, Test},
};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the kube-proxy baseline test creates network namespaces and loads iptables rules into \
         them, so it needs root; run it via `cargo xtask test`"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_proxy_chains_carry_pod_connections_to_cluster_ips() -> anyhow::Result<()> {
    require_root();
    let mut bed = Testbed::create(TestbedConfig::nodes(2)).await?;
    let client = bed.add_pod(0, "client").await?;
    let a = bed.add_pod(1, "a").await?;
    let b = bed.add_pod(1, "b").await?;
    let baseline = FlannelBaseline::for_testbed(&bed).await?;
    let ips = baseline.pod_ips();
    let port = perf::DEFAULT_PORT;
    let listen = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let _servers = [
        a.netns().run(|| Server::start(listen))??,
        b.netns().run(|| Server::start(listen))??,
    ];
    let (ep_a, ep_b) = (
        SocketAddrV4::new(ips[1], port),
        SocketAddrV4::new(ips[2], port),
    );
    let services: Vec<ServicePort> = [vec![ep_a], vec![ep_a, ep_b], vec![ep_b]]
        .into_iter()
        .enumerate()
        .map(|(index, endpoints)| ServicePort {
            namespace: "default".into(),
            name: format!("svc-{index}"),
            port_name: "perf".into(),
            cluster_ip: Ipv4Addr::new(10, 200, 0, 1 + index as u8),
            port: 80,
            endpoints,
        })
        .collect();
    let config = ProxierConfig {
        cluster_cidr: flannel::NETWORK,
    };
    let nodes = bed.nodes().to_vec();
    for node in &nodes {
        kube_proxy::restore(
            node.netns(),
            &kube_proxy::jump_rules(),
            Duration::from_secs(30),
        )?;
        kube_proxy::restore(
            node.netns(),
            &kube_proxy::sync_rules(&config, &services, Sync::Full),
            Duration::from_secs(30),
        )?;
    }
    Netlink::connect(client.netns())?
        .add_route(
            Ipv4Addr::new(10, 200, 0, 0),
            16,
            flannel::POD_IFACE,
            Some(flannel::node_gateway(0)),
        )
        .await?;
    for (key, value) in perf::CLIENT_SYSCTLS {
        client.netns().sysctl(key, value)?;
    }

    for service in &services {
        let target = SocketAddr::new(IpAddr::V4(service.cluster_ip), service.port);
        let config =
            ClientConfig::new(target, Test::TcpCrr).with_duration(Duration::from_millis(400));
        let report = client.netns().run(|| perf::run_client(&config))??;
        ensure!(
            report.transactions > 20 && report.errors == 0,
            "TCP_CRR to {target}: {report}"
        );
    }
    let counters = kube_proxy::rule_counters(nodes[0].netns(), "nat")?;
    for service in &services {
        let chain = service.service_chain();
        ensure!(
            kube_proxy::chain_packets(&counters, &chain) > 20,
            "{chain} ({}) counted no packets on the client's node",
            service.name
        );
        for endpoint in &service.endpoints {
            let sep = service.endpoint_chain(*endpoint);
            ensure!(
                kube_proxy::chain_packets(&counters, &sep) > 0,
                "{sep} ({} -> {endpoint}) counted no packets: {counters:?}",
                service.name
            );
        }
    }
    // The server's node saw new connections too, and walked its KUBE-SERVICES for them
    // (without a match: they were DNATed already).
    let server_side = kube_proxy::rule_counters(nodes[1].netns(), "nat")?;
    ensure!(
        kube_proxy::chain_packets(&server_side, &services[1].service_chain()) == 0,
        "the server's node must not DNAT again"
    );
    drop(baseline);
    bed.teardown()?;
    Ok(())
}
