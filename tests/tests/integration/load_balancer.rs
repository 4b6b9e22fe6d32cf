//! LoadBalancer Services end to end on two nodes, in L2 mode as MetalLB's and k3s's: the
//! control plane gives addresses from its pool (the test clusters' is 192.168.X.240-253 on the
//! underlay, as `cargo xtask up`'s), one node's agent answers ARP for each address, and a client
//! on the segment reaches the Service through that node.
//! - `web` (externalTrafficPolicy Local, a pod on each node) gets the pool's address in its
//!   status with an `IPAllocated` event; one node announces it (its `nodeAssigned` event).
//! - From the underlay's own namespace, a client outside the cluster, the address answers from
//!   the pod on the announcing node (Local keeps traffic there) and the pod sees the client's own
//!   address.
//! - The announcing node dies (its agent stops and its link goes down): within 5 s the address
//!   answers from the other node's pod (its agent saw the Lease expire, took the address over
//!   and sent gratuitous ARPs, so the client's neighbour entry moved at once).
//! - Labelled `node.kubernetes.io/exclude-from-external-load-balancers`, the surviving node
//!   stops answering; unlabelled, it answers again.
//! - `elsewhere` asks for an address outside the pool (spec.loadBalancerIP): an
//!   `AllocationFailed` event and no address.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use flotilla_agent::datapath::{announce::ResponderMap, pins::NodePins, reconcile::MapHandle as _};
use flotilla_testbed::netlink::Netlink;
use serde_json::Value;

use crate::support::{
    Cluster, LocalCluster, TESTAPP_READINESS, eventually, http_get_at, loadbalancer_pool,
    require_root, testapp_pod,
};

/// How soon the address must answer from another node once its node died.
const FAILOVER_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_balancer_addresses_answer_and_move_when_their_node_dies() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let mut local = LocalCluster::start_nodes(started, 2).await?;
    let nodes: Vec<String> = local
        .nodes()
        .map(|node| node.config.node_name.clone())
        .collect();
    let pods: Vec<String> = (0..nodes.len())
        .map(|index| format!("lb-{index}"))
        .collect();
    let mut manifest: Vec<String> = nodes
        .iter()
        .zip(&pods)
        .map(|(node, pod)| testapp_pod(pod, node, &[("app", "lb")], TESTAPP_READINESS))
        .collect();
    manifest.push(load_balancer("web", "externalTrafficPolicy: Local"));
    manifest.push(load_balancer("elsewhere", "loadBalancerIP: 10.1.2.3"));
    let cluster = &local.cluster;
    cluster.apply("lb.yaml", &manifest.join("---\n"))?;

    let address: Ipv4Addr = eventually(Duration::from_secs(30), "web's address", || {
        let service = cluster.json(&["get", "service", "web"])?;
        Ok(ingress_ips(&service).into_iter().next())
    })
    .await?;
    let pool = loadbalancer_pool(local.host_ip);
    ensure!(
        pool.contains(address),
        "web got {address}, outside the pool {pool}"
    );
    event(cluster, "web", "IPAllocated").await?;
    eprintln!("web has {address} after {:?}", started.elapsed());

    cluster
        .pods_ready("app=lb", pods.len(), Duration::from_secs(90))
        .await?;
    // Exactly one node answers for the address: the one whose pinned responder map holds it.
    let dying = eventually(Duration::from_secs(30), "one node announcing", || {
        let holding = announcers(&nodes, address)?;
        Ok(match holding.as_slice() {
            [one] => Some(*one),
            _ => None,
        })
    })
    .await
    .map_err(|err| {
        let leases = cluster.kubectl(&["get", "leases", "-n", "kube-node-lease", "-o", "yaml"]);
        err.context(format!(
            "announcers {:?}; node leases:\n{}{}",
            announcers(&nodes, address),
            String::from_utf8_lossy(&leases.stdout),
            String::from_utf8_lossy(&leases.stderr)
        ))
    })?;
    let surviving = 1 - dying;
    let announcer = nodes[dying].clone();
    eventually(
        Duration::from_secs(10),
        &format!("a nodeAssigned event from {announcer}"),
        || {
            Ok(events(cluster, "web", "nodeAssigned")?
                .into_iter()
                .find(|event| event["source"]["host"] == announcer.as_str()))
        },
    )
    .await?;
    eprintln!(
        "{announcer} announces {address} after {:?}",
        started.elapsed()
    );

    let underlay = local
        .bed
        .underlay()
        .context("the underlay namespace")?
        .clone();
    let target = SocketAddr::from((address, 80));
    let answer = eventually(Duration::from_secs(20), "the address answering", || {
        Ok(underlay.run(|| get(target, "/hostname"))?.ok())
    })
    .await?;
    ensure!(
        answer == pods[dying],
        "{address} answered from {answer}, not from {} on the announcing node",
        pods[dying]
    );
    let client = underlay.run(|| get(target, "/clientip"))??;
    let bridge = u32::from(local.host_ip) & !0xff | 1;
    ensure!(
        client.starts_with(&Ipv4Addr::from(bridge).to_string()),
        "the pod saw the client as {client}, not as the underlay's {} (Local keeps it)",
        Ipv4Addr::from(bridge)
    );

    // The announcing node dies.
    let node = if dying == 0 {
        &mut local.node
    } else {
        &mut local.others[dying - 1]
    };
    node.stop_agent()?;
    Netlink::connect(&underlay)?
        .set_down(&format!("n{}", dying + 1))
        .await?;
    let died = Instant::now();
    let mut attempts = 0;
    let answer = loop {
        attempts += 1;
        match underlay.run(|| get(target, "/hostname"))? {
            Ok(answer) => break answer,
            Err(err) if died.elapsed() < FAILOVER_BOUND * 3 => {
                if attempts == 1 {
                    eprintln!("after the node died: {err:#}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => bail!(
                "{address} did not answer within {:?} of {announcer}'s death: {err:#}",
                died.elapsed()
            ),
        }
    };
    let failover = died.elapsed();
    eprintln!(
        "{address} answered from {answer} {failover:?} after {announcer} died ({attempts} attempts)"
    );
    ensure!(
        answer == pods[surviving],
        "after the failover {address} answered from {answer}, not {}",
        pods[surviving]
    );
    ensure!(
        failover <= FAILOVER_BOUND,
        "{address} answered from another node only {failover:?} after its node died"
    );
    ensure!(
        announcers(&nodes, address)?.contains(&surviving),
        "{} answers without announcing {address}",
        nodes[surviving]
    );

    // The survivor labelled to stay out of load balancing stops answering; unlabelled, it
    // answers again. (The dead node's pinned map keeps what it had.)
    let label = "node.kubernetes.io/exclude-from-external-load-balancers";
    let survivor = &nodes[surviving];
    for (change, answers) in [(format!("{label}="), false), (format!("{label}-"), true)] {
        local
            .cluster
            .kubectl_ok(&["label", "node", survivor, &change])?;
        eventually(
            Duration::from_secs(15),
            &format!("{survivor} announcing: {answers} after `label {change}`"),
            || {
                let holds = announcers(&nodes, address)?.contains(&surviving);
                Ok((holds == answers).then_some(()))
            },
        )
        .await?;
    }

    let refused = event(&local.cluster, "elsewhere", "AllocationFailed").await?;
    let message = refused["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("10.1.2.3") && message.contains("pool"),
        "AllocationFailed says: {message}"
    );
    let elsewhere = local.cluster.json(&["get", "service", "elsewhere"])?;
    ensure!(
        ingress_ips(&elsewhere).is_empty(),
        "elsewhere got an address: {}",
        elsewhere["status"]
    );
    local.shutdown().await;
    Ok(())
}

/// A LoadBalancer Service `name` in front of the pods labelled app=lb, with `spec_line` in its
/// spec.
fn load_balancer(name: &str, spec_line: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: LoadBalancer
  {spec_line}
  selector:
    app: lb
  ports:
  - port: 80
    targetPort: 8080
"
    )
}

/// The IPv4 addresses in a Service's status.loadBalancer.ingress.
fn ingress_ips(service: &Value) -> Vec<Ipv4Addr> {
    service["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ingress| ingress["ip"].as_str()?.parse().ok())
        .collect()
}

/// The events with `reason` about the Service `name`.
fn events(cluster: &Cluster, name: &str, reason: &str) -> anyhow::Result<Vec<Value>> {
    let selector = format!("involvedObject.name={name},reason={reason}");
    let list = cluster.json(&["get", "events", "--field-selector", &selector])?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// An event with `reason` about the Service `name`, waited for.
async fn event(cluster: &Cluster, name: &str, reason: &str) -> anyhow::Result<Value> {
    eventually(
        Duration::from_secs(30),
        &format!("a {reason} event about {name}"),
        || Ok(events(cluster, name, reason)?.pop()),
    )
    .await
}

/// The indexes of the nodes whose pinned L2 responder map holds `address`.
fn announcers(nodes: &[String], address: Ipv4Addr) -> anyhow::Result<Vec<usize>> {
    let mut holding = Vec::new();
    for (index, node) in nodes.iter().enumerate() {
        let map = ResponderMap::open(&NodePins::new(node)?)?;
        if map
            .entries()?
            .iter()
            .any(|(key, _)| *key == address.octets())
        {
            holding.push(index);
        }
    }
    Ok(holding)
}

/// The test app's answer to a GET of `path` at `to`; a connection the segment cannot deliver
/// fails within 300 ms.
fn get(to: SocketAddr, path: &str) -> anyhow::Result<String> {
    http_get_at(to, path, Duration::from_millis(300))
}
