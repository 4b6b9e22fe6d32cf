//! Maglev backend selection end to end, on two nodes with real containerd (the measurement is
//! `support::consistency`, shared with `bench services`): ten pods behind a Maglev NodePort and a
//! random one, flows of fixed source ports from outside the cluster.
//! - The agents write a Maglev table for the annotated Service only. Each of its ten backends
//!   owns a tenth of the table, give or take one entry.
//! - With Maglev, every flow reaches the same pod through either node's address. With random,
//!   fewer than half do (a tenth, expected).
//! - After one pod is deleted, flows are sent again through the other node. With Maglev, the
//!   deleted pod's flows move, plus at most 6% of the others (the paper's disruption is a few
//!   percent). With random, more than half move (nine tenths, expected).
//! - Then once more through the first node, whose conntrack tracked them: every flow answers,
//!   and exactly the deleted pod's moved (the agent forgot their UDP entries; the others keep
//!   their pod), for both algorithms.
//! - With node 0's agent stopped, new flows through node 0 reach the pods node 1 sends them to
//!   (the table lives in the kernel). Restarted, the agent leaves the table as it was and drops
//!   a table no Service claims.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    ops::Range,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use flotilla_agent::datapath::{
    maglev::{MaglevMap, TableSize, TableSpec},
    pins::NodePins,
    reconcile::MapHandle as _,
};
use flotilla_common::services::BackendEntry;
use flotilla_testbed::traffic::{flows_moved, udp_flow_answers};

use crate::support::{
    LocalCluster,
    consistency::{self, FLOWS, PODS},
    eventually, require_root,
};

/// A Maglev table id no frontend has (ids count up from 1).
const ORPHAN: u32 = u32::MAX - 1;
/// Fresh flows sent while node 0's agent is down.
const WITHOUT_AGENT: Range<u16> = 20_400..20_500;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maglev_keeps_flows_on_their_backend_across_nodes_and_removals() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let mut local = LocalCluster::start_nodes(started, 2).await?;
    let report = consistency::measure(&local).await?;
    eprintln!("after {:?}: {report:?}", started.elapsed());
    ensure!(
        report.flags["maglev"] == ["maglev"] && report.flags["random"].is_empty(),
        "frontend flags: {:?}",
        report.flags
    );
    let shares = &report.table_shares;
    let (fewest, most) = (
        shares.values().min().copied().unwrap_or(0),
        shares.values().max().copied().unwrap_or(0),
    );
    ensure!(
        shares.len() == PODS
            && shares.keys().all(|slot| (*slot as usize) < PODS)
            && most - fewest <= 1,
        "entries per slot: {shares:?}"
    );
    for (service, flows) in &report.flows {
        ensure!(
            flows.across_nodes.0 * 10 >= FLOWS * 9 && flows.across_removal.0 * 10 >= FLOWS * 9,
            "{service}: too few flows answered: {flows:?}"
        );
        ensure!(
            !flows.reached_leaver,
            "{service}: a flow reached the deleted pod"
        );
        // Through node 0 again: tracked flows stay on their pod, the deleted pod's were
        // forgotten and answered by another.
        ensure!(
            flows.unanswered_again == 0 && flows.again_same_node.1 == flows.on_leaver,
            "{service}: through node 0 again, {} flows unanswered and {} of {} moved, {} of \
             them on the deleted pod",
            flows.unanswered_again,
            flows.again_same_node.1,
            flows.again_same_node.0,
            flows.on_leaver
        );
    }
    let maglev = report.flows["maglev"];
    ensure!(
        maglev.across_nodes.1 == maglev.across_nodes.0,
        "Maglev: flows reached different pods through the two nodes: {maglev:?}"
    );
    let (compared, moved) = maglev.across_removal;
    ensure!(
        moved >= maglev.on_leaver && moved - maglev.on_leaver <= compared * 6 / 100,
        "Maglev moved {moved} of {compared} flows, {} of them the deleted pod's",
        maglev.on_leaver
    );
    let random = report.flows["random"];
    ensure!(
        random.across_nodes.1 * 2 < random.across_nodes.0,
        "random: {random:?}"
    );
    ensure!(
        random.across_removal.1 * 2 > random.across_removal.0,
        "random moved too few flows: {random:?}"
    );

    // The tables outlive their agent, and a restarted agent keeps them: it rewrites each wanted
    // table identically and drops the ones no Service claims (a planted orphan here).
    let size = TableSize::default().get();
    let mut tables = MaglevMap::open(&NodePins::new(&local.node.config.node_name)?)?;
    let table = tables
        .read(report.maglev_frontend, size)?
        .context("node 0 has no Maglev table")?;
    local.node.stop_agent()?;
    let orphan = TableSpec {
        size: 251,
        slots: vec![BackendEntry {
            ip: [10, 0, 0, 1],
            port: 80u16.to_be(),
            pad: 0,
        }],
    };
    tables.insert(&ORPHAN, &orphan)?;
    let node_ips: Vec<Ipv4Addr> = local
        .nodes()
        .map(|node| node.config.node_ip.parse())
        .collect::<Result<_, _>>()?;
    let via = |node: usize| SocketAddrV4::new(node_ips[node], report.node_ports["maglev"]);
    let without_agent = udp_flow_answers(local.host_ip, WITHOUT_AGENT, via(0))?;
    local.node.start_agent()?;
    eventually(
        Duration::from_secs(60),
        "the restarted agent dropping the orphaned table",
        || Ok(tables.read(ORPHAN, 251)?.is_none().then_some(())),
    )
    .await?;
    ensure!(
        tables.read(report.maglev_frontend, size)?.as_ref() == Some(&table),
        "the restarted agent left another table"
    );
    let through_other = udp_flow_answers(local.host_ip, WITHOUT_AGENT, via(1))?;
    let (moved, compared) = flows_moved(&without_agent, &through_other);
    ensure!(
        compared == WITHOUT_AGENT.len() && moved == 0,
        "with node 0's agent down, {compared} of {} flows answered and {moved} reached another \
         pod than through node 1",
        WITHOUT_AGENT.len()
    );
    Ok(())
}
