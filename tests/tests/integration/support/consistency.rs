//! How consistently Services pick backends (Maglev against random), on a running local cluster of
//! at least two nodes: ten test-app pods behind two UDP NodePorts, one annotated
//! `service.flotilla.io/lb-algorithm: maglev`, one left to the agents' default (random), reached
//! from outside the cluster (the host, on the underlay) by flows of fixed source ports:
//! - how many flows reach the same pod through node 0's and node 1's address;
//! - after one pod is deleted, how many flows first sent through node 0 reach another pod when
//!   sent again through node 1 (whose connection tracking never saw them), and then through node
//!   0 once more (whose connection tracking keeps them on their pod, unless it was the deleted
//!   one: those flows are forgotten and choose again);
//! - how evenly node 0's Maglev table spreads over the backends.
//!
//! The pods and Services stay, for the caller's further checks.
//!
//! Shared by the `maglev` test (which checks the figures) and `bench services` (which prints
//! them).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddrV4},
    ops::Range,
    time::Duration,
};

use anyhow::{Context as _, ensure};
use flotilla_agent::datapath::{
    maglev::{LB_ALGORITHM_ANNOTATION, MaglevMap, TableSize},
    pins::NodePins,
    services::ServiceMaps,
};
use flotilla_testbed::traffic::{flows_moved, udp_flow_answers};

use super::{LocalCluster, TESTAPP_READINESS, eventually, testapp_pod};

/// Backend pods.
pub const PODS: usize = 10;
/// The two Services, by how they balance.
pub const SERVICES: [&str; 2] = ["maglev", "random"];
/// The pod deleted from both Services.
pub const LEAVING: &str = "web-9";
/// Source ports of the flows compared across the two nodes, and across the removal.
const ACROSS_NODES: Range<u16> = 20_000..20_200;
const ACROSS_REMOVAL: Range<u16> = 20_200..20_400;

fn manifest(nodes: &[String]) -> String {
    let pod = |index: usize| {
        testapp_pod(
            &format!("web-{index}"),
            &nodes[index % nodes.len()],
            &[("app", "web")],
            TESTAPP_READINESS,
        )
    };
    let service = |name: &str, annotations: &str| {
        format!(
            "apiVersion: v1
kind: Service
metadata:
  name: {name}
{annotations}spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 9001
    targetPort: 9001
    protocol: UDP
"
        )
    };
    (0..PODS)
        .map(pod)
        .chain([
            service(
                "maglev",
                &format!("  annotations:\n    {LB_ALGORITHM_ANNOTATION}: maglev\n"),
            ),
            service("random", ""),
        ])
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The NodePort's frontend as `bpf services` prints it.
fn frontend_name(node_port: u16) -> String {
    format!("*:{node_port}/UDP")
}

/// Waits until every node's maps give each NodePort `backends` backends; each frontend's id and
/// flags on the first node (ids are per node).
async fn programmed(
    nodes: &[String],
    node_ports: &BTreeMap<&str, u16>,
    backends: usize,
) -> anyhow::Result<BTreeMap<String, (u32, Vec<String>)>> {
    let mut first = None;
    for node in nodes {
        let maps = ServiceMaps::open(&NodePins::new(node)?)?;
        let found = eventually(
            Duration::from_secs(60),
            &format!("{backends} backends per NodePort on {node}"),
            || {
                let rows = maps.rows()?;
                let mut frontends = BTreeMap::new();
                for (service, port) in node_ports {
                    let Some(row) = rows.iter().find(|row| row.frontend == frontend_name(*port))
                    else {
                        return Ok(None);
                    };
                    if row.backends.len() != backends {
                        return Ok(None);
                    }
                    frontends.insert((*service).to_owned(), (row.id, row.flags.clone()));
                }
                Ok(Some(frontends))
            },
        )
        .await?;
        first.get_or_insert(found);
    }
    Ok(first.unwrap_or_default())
}

/// What one Service's flows did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flows {
    /// Flows answered through both nodes' addresses, and how many of them by the same pod.
    pub across_nodes: (usize, usize),
    /// Flows answered before and after the removal, and how many of them by another pod.
    pub across_removal: (usize, usize),
    /// Of those, how many the deleted pod had answered.
    pub on_leaver: usize,
    /// Whether a flow reached the deleted pod after the removal was programmed.
    pub reached_leaver: bool,
    /// The same flows sent once more through node 0, whose conntrack tracked them to their first
    /// pod: how many answered, how many of those by another pod than at first, and how many
    /// answered at first but not now (tracked to the deleted pod and not forgotten).
    pub again_same_node: (usize, usize),
    /// See [`Self::again_same_node`].
    pub unanswered_again: usize,
}

impl Flows {
    /// The fraction of flows that moved when one pod left.
    pub fn moved(&self) -> f64 {
        self.across_removal.1 as f64 / self.across_removal.0.max(1) as f64
    }

    /// The fraction of flows that reached the same pod through either node.
    pub fn agreeing(&self) -> f64 {
        self.across_nodes.1 as f64 / self.across_nodes.0.max(1) as f64
    }
}

/// The figures of one measurement.
#[derive(Clone, Debug, Default)]
pub struct Consistency {
    /// Per Service ([`SERVICES`]).
    pub flows: BTreeMap<&'static str, Flows>,
    /// Node 0's Maglev table: entries per backend slot.
    pub table_shares: BTreeMap<u32, u32>,
    /// Each Service's NodePort flags on the nodes (as `bpf services` lists them).
    pub flags: BTreeMap<String, Vec<String>>,
    /// Each Service's NodePort.
    pub node_ports: BTreeMap<&'static str, u16>,
    /// The Maglev NodePort's frontend id on node 0 (its table's key).
    pub maglev_frontend: u32,
}

/// Deploys the pods and Services on `local` (two nodes at least) and measures.
pub async fn measure(local: &LocalCluster) -> anyhow::Result<Consistency> {
    let nodes: Vec<String> = local
        .nodes()
        .map(|node| node.config.node_name.clone())
        .take(2)
        .collect();
    let node_ips: Vec<Ipv4Addr> = local
        .nodes()
        .map(|node| node.config.node_ip.parse())
        .take(2)
        .collect::<Result<_, _>>()?;
    ensure!(nodes.len() == 2, "the measurement needs two nodes");
    let cluster = &local.cluster;
    cluster.apply("consistency.yaml", &manifest(&nodes))?;
    let mut node_ports = BTreeMap::new();
    for service in SERVICES {
        let port = cluster.json(&["get", "service", service])?["spec"]["ports"][0]["nodePort"]
            .as_u64()
            .and_then(|port| u16::try_from(port).ok())
            .with_context(|| format!("the Service {service} got no nodePort"))?;
        node_ports.insert(service, port);
    }
    cluster
        .pods_ready("app=web", PODS, Duration::from_secs(120))
        .await?;
    let frontends = programmed(&nodes, &node_ports, PODS).await?;
    let mut report = Consistency {
        flags: frontends
            .iter()
            .map(|(service, (_, flags))| (service.clone(), flags.clone()))
            .collect(),
        ..Consistency::default()
    };

    let size = TableSize::default().get();
    let maglev_id = frontends["maglev"].0;
    report.maglev_frontend = maglev_id;
    report.node_ports = node_ports.clone();
    let table = MaglevMap::open(&NodePins::new(&nodes[0])?)?
        .read(maglev_id, size)?
        .context("the Maglev Service has no table on node 0")?;
    ensure!(table.len() == size as usize, "{} entries", table.len());
    for slot in &table {
        *report.table_shares.entry(*slot).or_insert(0) += 1;
    }

    // The host is outside the cluster: its flows enter through a node's underlay link.
    let host = local.host_ip;
    let via = |node: usize, service: &str| SocketAddrV4::new(node_ips[node], node_ports[service]);
    let mut before = BTreeMap::new();
    for service in SERVICES {
        let first = udp_flow_answers(host, ACROSS_NODES, via(0, service))?;
        let second = udp_flow_answers(host, ACROSS_NODES, via(1, service))?;
        let (moved, compared) = flows_moved(&first, &second);
        let flows = report.flows.entry(service).or_default();
        flows.across_nodes = (compared, compared - moved);
        before.insert(
            service,
            udp_flow_answers(host, ACROSS_REMOVAL, via(0, service))?,
        );
    }
    cluster.kubectl_ok(&["delete", "pod", LEAVING, "--wait=false"])?;
    programmed(&nodes, &node_ports, PODS - 1).await?;
    for service in SERVICES {
        let after = udp_flow_answers(host, ACROSS_REMOVAL, via(1, service))?;
        let flows = report.flows.entry(service).or_default();
        let (moved, compared) = flows_moved(&before[service], &after);
        flows.across_removal = (compared, moved);
        flows.on_leaver = before[service]
            .iter()
            .filter(|answer| answer.as_deref() == Some(LEAVING))
            .count();
        flows.reached_leaver = after
            .iter()
            .any(|answer| answer.as_deref() == Some(LEAVING));
        let again = udp_flow_answers(host, ACROSS_REMOVAL, via(0, service))?;
        let (moved, compared) = flows_moved(&before[service], &again);
        flows.again_same_node = (compared, moved);
        flows.unanswered_again = before[service]
            .iter()
            .zip(&again)
            .filter(|(first, now)| first.is_some() && now.is_none())
            .count();
        flows.reached_leaver |= again
            .iter()
            .any(|answer| answer.as_deref() == Some(LEAVING));
    }
    Ok(report)
}

/// Flows sent per comparison.
pub const FLOWS: usize = ACROSS_NODES.end as usize - ACROSS_NODES.start as usize;
