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

use std::time::Instant;

use anyhow::ensure;

use crate::support::{
    LocalCluster,
    consistency::{self, FLOWS, PODS},
    require_root,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maglev_keeps_flows_on_their_backend_across_nodes_and_removals() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 2).await?;
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
    Ok(())
}
