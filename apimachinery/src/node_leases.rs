//! The Leases nodes hold in `kube-node-lease`: the node heartbeat kubelet renews (named after
//! the node), and the agent's L2 announcer Lease (one per node, renewed every second while the
//! node can announce LoadBalancer addresses), by which the agents agree which node answers for
//! each address. The Node authorizer lets a node write only its own two.

/// The namespace node Leases live in.
pub const NAMESPACE: &str = "kube-node-lease";
/// The prefix of an L2 announcer Lease's name; the node's name follows.
pub const L2_ANNOUNCER_PREFIX: &str = "l2-announcer-";
/// The label every L2 announcer Lease carries (its value is the node's name), so the agents
/// watch these and not the heartbeats.
pub const L2_ANNOUNCER_LABEL: &str = "flotilla.io/l2-announcer";

/// The name of `node`'s L2 announcer Lease.
pub fn l2_announcer_lease(node: &str) -> String {
    format!("{L2_ANNOUNCER_PREFIX}{node}")
}
