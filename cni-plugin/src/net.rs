//! The kernel-facing operations the commands need (network namespaces, links, addresses, routes,
//! neighbours), as a trait: [`crate::netlink::Rtnl`] is the real one, the unit tests use a fake
//! that records calls and fails on demand.

use std::{net::Ipv4Addr, path::Path};

use crate::error::{CniError, code};

/// Which network namespace an operation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns<'a> {
    /// The plugin's own namespace: the node's, where host-side veths live.
    Node,
    /// A container's namespace, by its file (CNI_NETNS).
    Pod(&'a Path),
}

/// What is at a CNI_NETNS path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetnsState {
    /// Nothing: the container is gone (or never was).
    Missing,
    /// The plugin's own namespace: attaching would rename the node's interfaces.
    Own,
    /// Something that is not a network namespace (e.g. a plain file).
    NotNamespace,
    /// Another network namespace.
    Present,
}

/// The host side of a new veth pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostVeth {
    /// Its interface index in the node's namespace.
    pub index: u32,
    /// Its MAC address: the pod's gateway MAC.
    pub mac: [u8; 6],
}

/// How to set up the pod's end of the veth (already renamed to `ifname` in the pod namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSetup {
    /// The interface inside the pod.
    pub ifname: String,
    /// The pod's address.
    pub address: Ipv4Addr,
    /// Its prefix length (32).
    pub prefix_len: u8,
    /// The link-local gateway (169.254.1.1).
    pub gateway: Ipv4Addr,
    /// The host veth's MAC, for the permanent neighbour entry of the gateway.
    pub gateway_mac: [u8; 6],
}

/// A link as found in the kernel, for CHECK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index.
    pub index: u32,
    /// MAC address.
    pub mac: Vec<u8>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// IPv4 addresses with prefix lengths.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// IPv4 routes of the main table leaving through the link.
    pub routes: Vec<RouteState>,
    /// IPv4 neighbour entries on the link.
    pub neighbours: Vec<NeighbourState>,
}

/// One route through a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteState {
    /// Destination.
    pub dst: Ipv4Addr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Next hop, if any.
    pub gateway: Option<Ipv4Addr>,
}

/// One neighbour entry on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourState {
    /// The neighbour's address.
    pub ip: Ipv4Addr,
    /// Its link-layer address.
    pub mac: Vec<u8>,
    /// Whether the entry is PERMANENT.
    pub permanent: bool,
}

/// A kernel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A namespace file could not be opened or entered.
    #[error("{action} {}: {source}", .path.display())]
    Netns {
        /// What was being done.
        action: &'static str,
        /// The namespace file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("{action}: {reason}")]
    Netlink {
        /// What was being done, e.g. "creating veth pair fltX/flpX".
        action: String,
        /// The kernel's (or the netlink library's) answer.
        reason: String,
    },
}

impl From<NetError> for CniError {
    fn from(err: NetError) -> Self {
        match &err {
            NetError::Netns { .. } => CniError::new(
                code::IO_FAILURE,
                err.to_string(),
                "flotilla-cni must run as root in the node's network namespace with access to the container's namespace file",
            ),
            NetError::Netlink { .. } => CniError::new(
                code::NETLINK_FAILED,
                err.to_string(),
                "the kernel refused a network change; see the message, and the node's kernel log",
            ),
        }
    }
}

/// Network namespace and netlink operations. Every mutating step of ADD is one call, so a test
/// can fail each in turn and check that ADD undoes the ones before it.
#[allow(
    async_fn_in_trait,
    reason = "the plugin runs on a current-thread runtime; futures need not be Send"
)]
pub trait Net {
    /// What is at `netns`.
    async fn netns_state(&self, netns: &Path) -> Result<NetnsState, NetError>;
    /// Whether a link `name` exists in `ns`.
    async fn link_exists(&self, ns: Ns<'_>, name: &str) -> Result<bool, NetError>;
    /// Creates a veth pair, both ends down with MTU `mtu` (kernel default when None): `host` in
    /// the node's namespace and its peer `ifname` directly inside `netns`. Creating the peer in
    /// place, rather than under a temporary name in the node and moving it, is one atomic step
    /// and saves the RCU grace period every namespace move waits for (~20 ms here).
    async fn create_veth(
        &self,
        host: &str,
        netns: &Path,
        ifname: &str,
        mtu: Option<u32>,
    ) -> Result<HostVeth, NetError>;
    /// Brings the pod's interface up with its address, gateway route, default route and the
    /// permanent gateway neighbour; returns the interface's MAC.
    async fn configure_pod(&self, netns: &Path, setup: &PodSetup) -> Result<[u8; 6], NetError>;
    /// Brings the host veth up and routes `address`/32 through it (node -> pod traffic).
    async fn configure_host(&self, host: &str, address: Ipv4Addr) -> Result<(), NetError>;
    /// Deletes link `name` in `ns`; Ok(false) if there was none.
    async fn delete_link(&self, ns: Ns<'_>, name: &str) -> Result<bool, NetError>;
    /// The link `name` in `ns` with its addresses, routes and neighbours, if it exists.
    async fn inspect_link(&self, ns: Ns<'_>, name: &str) -> Result<Option<LinkState>, NetError>;
}
