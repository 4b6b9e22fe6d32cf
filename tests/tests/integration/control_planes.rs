//! Two control planes of one cluster (one etcd, one PKI), each on its own address of the
//! underlay: both serve the API, and the `kubernetes` and `kube-dns` Services point at every
//! live one (kube-apiserver's lease endpoint reconciler), so pods reach the API and the cluster
//! DNS through either; a control plane that stops takes itself out at once, and comes back when
//! it starts again.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use flotilla_controlplane::{
    etcd::free_port,
    run::{ClusterDns, Config, ControlPlane, copy_shared_state},
};
use flotilla_testbed::{Netlink, Netns, Testbed, TestbedConfig};

use crate::support::{CLUSTER_DNS, require_root};

/// The addresses of `namespace/name`'s Endpoints and EndpointSlice, through `kubeconfig`.
fn endpoint_addresses(kubeconfig: &Path, namespace: &str, name: &str) -> (String, String) {
    let kubectl = |args: &[&str]| {
        let output = std::process::Command::new("timeout")
            .arg("20")
            .arg("kubectl")
            .args(["-n", namespace])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .output();
        output
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default()
    };
    (
        kubectl(&[
            "get",
            "endpoints",
            name,
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ]),
        kubectl(&[
            "get",
            "endpointslice",
            name,
            "-o",
            "jsonpath={.endpoints[*].addresses[*]}",
        ]),
    )
}

/// Waits (bounded by `limit`) until both system Services list exactly `ips`; returns how long
/// that took.
async fn wait_endpoints(
    kubeconfig: &Path,
    ips: &[Ipv4Addr],
    limit: Duration,
) -> anyhow::Result<Duration> {
    let wanted = ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let started = Instant::now();
    loop {
        let found = [("default", "kubernetes"), ("kube-system", "kube-dns")]
            .map(|(namespace, name)| endpoint_addresses(kubeconfig, namespace, name));
        if found
            .iter()
            .all(|(endpoints, slice)| *endpoints == wanted && *slice == wanted)
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("the system Services' endpoints are {found:?}, not {wanted:?}, after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_system_services_point_at_every_live_control_plane() -> anyhow::Result<()> {
    require_root();
    let mut bed = Testbed::create(TestbedConfig::nodes(1)).await?;
    let a_ip = bed.link_host().await?;
    // The second control plane's address: the one below the host's on the same link.
    let b_ip = Ipv4Addr::from(u32::from(a_ip) - 1);
    Netlink::connect(&Netns::host())?
        .add_address(&bed.host_link_name(), IpAddr::V4(b_ip), 24)
        .await?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let config = |name: &str, ip: Ipv4Addr| Config {
        extra_names: vec![a_ip.to_string(), b_ip.to_string()],
        cluster_dns: Some(ClusterDns::new(CLUSTER_DNS, None)),
        ..Config::new(dir.path().join(name), SocketAddr::from((ip, port)))
    };
    let a = ControlPlane::start(Config {
        etcd_ports: (free_port()?, free_port()?),
        ..config("a", a_ip)
    })
    .await
    .context("starting control plane a")?;
    let kubeconfig = a.kubeconfig.clone();
    let b_config = Config {
        etcd_endpoints: vec![format!("http://127.0.0.1:{}", a.etcd_client_port)],
        ..config("b", b_ip)
    };
    copy_shared_state(&dir.path().join("a"), &dir.path().join("b"))?;
    let result = async {
        wait_endpoints(&kubeconfig, &[a_ip], Duration::from_secs(15)).await?;
        let b = ControlPlane::start(b_config.clone())
            .await
            .context("starting control plane b")?;
        // b's start-up pass lists both; a's next pass (within 10 s) agrees.
        let took = wait_endpoints(&kubeconfig, &[b_ip, a_ip], Duration::from_secs(5)).await?;
        println!("b was in the system Services' endpoints {took:?} after its start");
        tokio::time::sleep(Duration::from_secs(11)).await;
        wait_endpoints(&kubeconfig, &[b_ip, a_ip], Duration::ZERO)
            .await
            .context("a's periodic pass must keep b")?;
        b.stop().await;
        let took = wait_endpoints(&kubeconfig, &[a_ip], Duration::from_secs(3)).await?;
        println!("b left the system Services' endpoints {took:?} after its stop");
        tokio::time::sleep(Duration::from_secs(11)).await;
        wait_endpoints(&kubeconfig, &[a_ip], Duration::ZERO)
            .await
            .context("a's periodic pass must not bring b back")?;
        let b = ControlPlane::start(b_config)
            .await
            .context("restarting b")?;
        wait_endpoints(&kubeconfig, &[b_ip, a_ip], Duration::from_secs(5)).await?;
        b.stop().await;
        anyhow::Ok(())
    }
    .await;
    a.stop().await;
    bed.teardown()?;
    result
}

/// A node's agent reaches the API through its balancer: told only of control plane b, it learns
/// a from the `kubernetes` Endpoints and keeps working (Lease renewed, a new pod run) after b
/// stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_keeps_working_when_its_control_plane_stops() -> anyhow::Result<()> {
    use crate::support::{LocalCluster, eventually, pod_phase};

    require_root();
    let started = Instant::now();
    let mut cluster = LocalCluster::start(started).await?;
    let a_ip = cluster.host_ip;
    let b_ip = Ipv4Addr::from(u32::from(a_ip) - 1);
    Netlink::connect(&Netns::host())?
        .add_address(&cluster.bed.host_link_name(), IpAddr::V4(b_ip), 24)
        .await?;
    let a = cluster
        .cluster
        .control_plane
        .as_ref()
        .context("the cluster's control plane")?;
    let a_state = cluster.cluster.dir.path().join("state");
    let b_state = cluster.cluster.dir.path().join("b");
    copy_shared_state(&a_state, &b_state)?;
    let b = ControlPlane::start(Config {
        etcd_endpoints: vec![format!("http://127.0.0.1:{}", a.etcd_client_port)],
        extra_names: vec![b_ip.to_string()],
        cluster_dns: Some(ClusterDns::new(CLUSTER_DNS, None)),
        ..Config::new(b_state, SocketAddr::from((b_ip, a.address.port())))
    })
    .await
    .context("starting control plane b")?;
    let kubeconfig = cluster.cluster.kubeconfig.clone();
    wait_endpoints(&kubeconfig, &[b_ip, a_ip], Duration::from_secs(15)).await?;

    // The agent starts again, its kubeconfig naming b only.
    cluster.node.stop_agent()?;
    let credentials = cluster.node.config.kubeconfig.clone();
    let text = std::fs::read_to_string(&credentials)?;
    std::fs::write(
        &credentials,
        text.replace(&a.address.to_string(), &b.address.to_string()),
    )?;
    cluster.node.start_agent()?;
    let node = cluster.node_name.clone();
    let renewed = || -> anyhow::Result<String> {
        cluster.cluster.kubectl_ok(&[
            "-n",
            "kube-node-lease",
            "get",
            "lease",
            &node,
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
    };
    let before = renewed()?;
    eventually(
        Duration::from_secs(30),
        "the agent's Lease renewed through b",
        || Ok((renewed()? != before).then_some(())),
    )
    .await?;

    b.stop().await;
    let stopped = Instant::now();
    // Renewals every 10 s go on, now through a.
    for round in 0..2 {
        let before = renewed()?;
        eventually(
            Duration::from_secs(30),
            &format!("Lease renewal {round} after b stopped"),
            || Ok((renewed()? != before).then_some(())),
        )
        .await?;
    }
    cluster.cluster.kubectl_ok(&[
        "run",
        "after-b",
        "--image=docker.io/flotilla/testapp:v1",
        "--image-pull-policy=Never",
    ])?;
    eventually(
        Duration::from_secs(60),
        "the pod made after b stopped runs",
        || {
            let pod = cluster.cluster.json(&["get", "pod", "after-b"])?;
            Ok((pod_phase(&pod) == "Running").then_some(()))
        },
    )
    .await?;
    println!(
        "with b stopped, the agent renewed its Lease twice and ran a new pod within {:?}",
        stopped.elapsed()
    );
    cluster
        .cluster
        .kubectl_ok(&["delete", "pod", "after-b", "--wait=false"])?;
    Ok(())
}
