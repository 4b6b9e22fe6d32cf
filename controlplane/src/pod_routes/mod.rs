//! Routes from the control plane's machine to every node's podCIDR through that node's
//! InternalIP, where the address is on a network this machine is attached to, as flannel's
//! host-gw backend routes between nodes. The API server calls admission webhooks on pod IPs
//! (a Service resolves to its endpoints), and the control plane's machine is not a node: it
//! has neither the overlay device nor the agent's routes, so without these it cannot reach a
//! pod. Nodes elsewhere (their InternalIP not on-link) are left out, logged once: their pods
//! stay unreachable from this machine.
//!
//! The routes carry their own protocol number ([`ROUTE_PROTOCOL`], `ip route show proto 241`)
//! so that only what this module made is ever replaced or deleted; a route to a podCIDR that
//! someone else made is left alone, with a warning, and so is a podCIDR inside a wider route
//! someone else made (a control plane on a node: the agent routes the whole pod network into
//! the overlay there).

mod netlink;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use crate::{
    ipam::Cidr,
    storage::{
        StorageError, Store,
        mirror::{Change, mirror},
    },
};

pub use netlink::Netlink;

/// The routing protocol number marking the routes this module owns.
pub const ROUTE_PROTOCOL: u8 = 241;
/// How often the routes are checked against the kernel when no Node changed (someone may have
/// deleted one, or a link went down and took its routes with it).
const RESYNC_PERIOD: Duration = Duration::from_secs(30);

/// A route in the main table to a podCIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Where it leads.
    pub destination: Cidr,
    /// The gateway (a node's InternalIP); None for a route without one.
    pub via: Option<Ipv4Addr>,
    /// Whether this module made it ([`ROUTE_PROTOCOL`]).
    pub owned: bool,
}

/// What the kernel holds that matters here.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The IPv4 routes of the main table.
    pub routes: Vec<Route>,
    /// This machine's own IPv4 addresses (a node on this machine needs no route: its agent
    /// routes the pod network itself).
    pub local: BTreeSet<Ipv4Addr>,
}

/// Why a route could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The kernel refused the gateway: it is not on a network this machine is attached to.
    #[error("{0} is not on a network this machine is attached to")]
    NotOnLink(Ipv4Addr),
    /// This process may not change routes (it lacks CAP_NET_ADMIN).
    #[error("changing routes is not permitted (the control plane needs CAP_NET_ADMIN)")]
    NotPermitted,
    /// Anything else netlink answered.
    #[error("{0}")]
    Other(String),
}

/// The machine's routing table, as far as this module needs it.
pub trait RouteTable: Send + Sync + 'static {
    /// The main table's IPv4 routes and this machine's addresses.
    fn read(&self) -> impl Future<Output = Result<Table, RouteError>> + Send;
    /// Adds or replaces the owned route to `destination` through `via`.
    fn set(
        &self,
        destination: Cidr,
        via: Ipv4Addr,
    ) -> impl Future<Output = Result<(), RouteError>> + Send;
    /// Deletes the owned route to `destination` through `via`.
    fn delete(
        &self,
        destination: Cidr,
        via: Ipv4Addr,
    ) -> impl Future<Output = Result<(), RouteError>> + Send;
}

/// One change to the routing table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Add the route, or replace an owned one through another gateway.
    Set(Cidr, Ipv4Addr),
    /// Delete an owned route nothing wants any more.
    Delete(Cidr, Ipv4Addr),
    /// A route to the podCIDR exists that this module did not make: leave it.
    Foreign(Cidr),
    /// A wider route that this module did not make covers the podCIDR (on a node, the agent's
    /// route for the whole pod network into the overlay): leave it to that one.
    Covered(Cidr, Cidr),
}

/// The node's podCIDR and InternalIP, when it has both.
fn node_route(node: &serde_json::Value) -> Option<(Cidr, Ipv4Addr)> {
    let pod_cidr = node["spec"]["podCIDR"].as_str()?.parse().ok()?;
    let internal_ip = node["status"]["addresses"]
        .as_array()?
        .iter()
        .find(|address| address["type"] == "InternalIP")?["address"]
        .as_str()?
        .parse()
        .ok()?;
    Some((pod_cidr, internal_ip))
}

/// What to change so that the table holds `wanted` (podCIDR -> gateway), except through this
/// machine's own addresses, and no other owned route.
fn plan(wanted: &BTreeMap<Cidr, Ipv4Addr>, table: &Table) -> Vec<Step> {
    let wanted: BTreeMap<Cidr, Ipv4Addr> = wanted
        .iter()
        .filter(|(_, via)| !table.local.contains(via))
        .map(|(destination, via)| (*destination, *via))
        .collect();
    let mut steps = Vec::new();
    for route in table.routes.iter().filter(|route| route.owned) {
        let Some(via) = route.via else { continue };
        if wanted.get(&route.destination) != Some(&via) {
            steps.push(Step::Delete(route.destination, via));
        }
    }
    for (&destination, &via) in &wanted {
        let existing: Vec<&Route> = table
            .routes
            .iter()
            .filter(|route| route.destination == destination)
            .collect();
        let covering = table.routes.iter().find(|route| {
            !route.owned
                && route.destination.prefix > 0
                && route.destination.prefix < destination.prefix
                && route.destination.contains(destination.network)
        });
        if existing.iter().any(|route| !route.owned) {
            steps.push(Step::Foreign(destination));
        } else if let Some(covering) = covering {
            steps.push(Step::Covered(destination, covering.destination));
        } else if !existing.iter().any(|route| route.via == Some(via)) {
            steps.push(Step::Set(destination, via));
        }
    }
    steps
}

/// Keeps the routes to every node's podCIDR: follows the Nodes in `store` and brings `table`
/// in line whenever they change, and every [`RESYNC_PERIOD`]. Returns once the Nodes are
/// listed; the work goes on in a task that ends with the runtime.
pub async fn keep(store: &Store, table: impl RouteTable) -> Result<(), StorageError> {
    let (wanted_tx, wanted_rx) = watch::channel(BTreeMap::new());
    let nodes = Mutex::new(BTreeMap::<String, Option<(Cidr, Ipv4Addr)>>::new());
    let sink = Arc::new(move |change: Change<'_>| {
        let Ok(mut nodes) = nodes.lock() else { return };
        change.apply_by_name(&mut nodes, node_route);
        let wanted: BTreeMap<Cidr, Ipv4Addr> = nodes.values().flatten().copied().collect();
        wanted_tx.send_if_modified(|current| {
            let changed = *current != wanted;
            *current = wanted;
            changed
        });
    });
    mirror(store, "/registry/minions/", sink).await?;
    tokio::spawn(sync_forever(table, wanted_rx));
    Ok(())
}

/// Applies the wanted routes now, on every change and every [`RESYNC_PERIOD`], until the
/// Nodes' copy goes away.
async fn sync_forever(
    table: impl RouteTable,
    mut wanted: watch::Receiver<BTreeMap<Cidr, Ipv4Addr>>,
) {
    let mut reported = BTreeSet::new();
    loop {
        let current = wanted.borrow_and_update().clone();
        sync(&table, &current, &mut reported).await;
        // A timeout only means nothing changed; a closed channel means the copy is gone.
        if let Ok(Err(_)) = tokio::time::timeout(RESYNC_PERIOD, wanted.changed()).await {
            return;
        }
    }
}

/// One pass: reads the table and makes the changes [`plan`] asks for. A problem is logged
/// the first time it is seen (`reported` remembers it), not on every pass.
async fn sync(
    table: &impl RouteTable,
    wanted: &BTreeMap<Cidr, Ipv4Addr>,
    reported: &mut BTreeSet<String>,
) {
    let mut report = |problem: String| {
        if reported.insert(problem.clone()) {
            tracing::warn!("pod routes: {problem}");
        }
    };
    let current = match table.read().await {
        Ok(current) => current,
        Err(err) => return report(format!("reading the routing table: {err}")),
    };
    for step in plan(wanted, &current) {
        match step {
            Step::Set(destination, via) => match table.set(destination, via).await {
                Ok(()) => tracing::info!(%destination, %via, "routing a node's pods"),
                Err(err @ RouteError::NotOnLink(_)) => report(format!(
                    "pods in {destination} are not reachable from this machine: the node's \
                     address {err}"
                )),
                Err(err) => report(format!("routing {destination} through {via}: {err}")),
            },
            Step::Delete(destination, via) => {
                if let Err(err) = table.delete(destination, via).await {
                    report(format!(
                        "deleting the route to {destination} through {via}: {err}"
                    ));
                }
            }
            Step::Foreign(destination) => report(format!(
                "a route to {destination} exists that Flotilla did not make; leaving it, so \
                 this machine may not reach the pods there"
            )),
            Step::Covered(destination, covering) => report(format!(
                "pods in {destination} are left to this machine's route to {covering}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    fn route(destination: &str, via: &str, owned: bool) -> Route {
        Route {
            destination: cidr(destination),
            via: Some(ip(via)),
            owned,
        }
    }

    #[test]
    fn a_node_needs_a_pod_cidr_and_an_internal_ip() {
        let node = serde_json::json!({
            "spec": {"podCIDR": "10.244.1.0/24"},
            "status": {"addresses": [
                {"type": "Hostname", "address": "node1"},
                {"type": "InternalIP", "address": "192.168.78.11"},
            ]},
        });
        assert_eq!(
            node_route(&node),
            Some((cidr("10.244.1.0/24"), ip("192.168.78.11")))
        );
        assert_eq!(node_route(&serde_json::json!({"spec": {}})), None);
        let mut no_address = node.clone();
        no_address["status"]["addresses"]
            .as_array_mut()
            .unwrap()
            .pop();
        assert_eq!(node_route(&no_address), None);
    }

    #[test]
    fn the_plan_adds_what_is_missing_and_deletes_only_owned_leftovers() {
        let wanted = BTreeMap::from([
            (cidr("10.244.0.0/24"), ip("192.168.78.10")),
            (cidr("10.244.1.0/24"), ip("192.168.78.11")),
            (cidr("10.244.2.0/24"), ip("192.168.78.12")),
            (cidr("10.244.3.0/24"), ip("192.168.78.13")),
            // A node on this machine.
            (cidr("10.244.4.0/24"), ip("192.168.78.254")),
            (cidr("10.245.1.0/24"), ip("192.168.78.15")),
        ]);
        let routes = vec![
            // Already right.
            route("10.244.0.0/24", "192.168.78.10", true),
            // The node's address changed.
            route("10.244.1.0/24", "192.168.78.99", true),
            // Someone else's.
            route("10.244.3.0/24", "10.0.0.1", false),
            // A node that went away.
            route("10.244.9.0/24", "192.168.78.19", true),
            // Not ours and not wanted: untouched (a default route covers nothing).
            route("0.0.0.0/0", "10.0.0.1", false),
            // A wider route that is not ours (a node's overlay route).
            route("10.245.0.0/16", "192.168.78.1", false),
        ];
        let local = BTreeSet::from([ip("192.168.78.254")]);
        let table = Table {
            routes,
            local: local.clone(),
        };
        assert_eq!(
            plan(&wanted, &table),
            [
                Step::Delete(cidr("10.244.1.0/24"), ip("192.168.78.99")),
                Step::Delete(cidr("10.244.9.0/24"), ip("192.168.78.19")),
                Step::Set(cidr("10.244.1.0/24"), ip("192.168.78.11")),
                Step::Set(cidr("10.244.2.0/24"), ip("192.168.78.12")),
                Step::Foreign(cidr("10.244.3.0/24")),
                Step::Covered(cidr("10.245.1.0/24"), cidr("10.245.0.0/16")),
            ]
        );
        // Nothing to do once the table holds the wanted routes.
        let settled = Table {
            routes: wanted
                .iter()
                .filter(|(_, via)| !local.contains(via))
                .map(|(destination, via)| Route {
                    destination: *destination,
                    via: Some(*via),
                    owned: true,
                })
                .collect(),
            local,
        };
        assert_eq!(plan(&wanted, &settled), []);
    }
}
