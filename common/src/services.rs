//! Service load balancing at the socket (cgroup connect4/sendmsg4/recvmsg4/getpeername4): the
//! maps the agent fills from Services and EndpointSlices and the programs read.
//!
//! Addresses and ports are stored in network order, as `bpf_sock_addr` carries them.

/// Frontends: [`ServiceKey`] (ClusterIP, port, protocol) -> [`ServiceEntry`].
pub const SERVICES_MAP: &str = "SERVICES";
/// Backends of every frontend: [`BackendKey`] (service id, slot) -> [`BackendEntry`].
pub const BACKENDS_MAP: &str = "BACKENDS";
/// Per-socket reverse translation (socket cookie -> [`SockRevNat`]), so a connected socket's
/// peer and an unconnected UDP socket's replies read as the ClusterIP.
pub const SOCK_REVNAT_MAP: &str = "SOCK_REVNAT";

/// cgroup/connect4 program.
pub const SOCK_CONNECT4_PROG: &str = "sock_connect4";
/// cgroup/sendmsg4 program.
pub const SOCK_SENDMSG4_PROG: &str = "sock_sendmsg4";
/// cgroup/recvmsg4 program.
pub const SOCK_RECVMSG4_PROG: &str = "sock_recvmsg4";
/// cgroup/getpeername4 program.
pub const SOCK_GETPEERNAME4_PROG: &str = "sock_getpeername4";

/// Maximum frontends (service ports) per node.
pub const SERVICES_MAX_ENTRIES: u32 = 65_536;
/// Maximum backend slots over all frontends.
pub const BACKENDS_MAX_ENTRIES: u32 = 262_144;
/// Sockets whose translation is remembered (LRU).
pub const SOCK_REVNAT_MAX_ENTRIES: u32 = 262_144;

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// A frontend: ClusterIP, port and protocol.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// The ClusterIP (network order bytes).
    pub ip: [u8; 4],
    /// The port, network order.
    pub port: u16,
    /// IP protocol (6 TCP, 17 UDP).
    pub proto: u8,
    /// Explicit padding.
    pub pad: u8,
}

/// What a frontend leads to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServiceEntry {
    /// The frontend's id: the first half of its backends' keys.
    pub id: u32,
    /// Number of ready backends (slots 0..count); 0 rejects connections at once.
    pub count: u32,
}

/// One backend slot of a frontend.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendKey {
    /// [`ServiceEntry::id`].
    pub service_id: u32,
    /// Slot, 0..count.
    pub slot: u32,
}

/// A backend: pod IP and target port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendEntry {
    /// The endpoint's address (network order bytes).
    pub ip: [u8; 4],
    /// The target port, network order.
    pub port: u16,
    /// Explicit padding.
    pub pad: u16,
}

/// What a socket was translated from and to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockRevNat {
    /// The backend the socket talks to.
    pub backend: BackendEntry,
    /// The ClusterIP the application asked for.
    pub vip: [u8; 4],
    /// Its port, network order.
    pub vport: u16,
    /// Explicit padding.
    pub pad: u16,
}

// SAFETY: repr(C), integers and byte arrays only, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ServiceKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ServiceEntry {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for BackendKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for BackendEntry {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for SockRevNat {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(core::mem::size_of::<ServiceKey>(), 8);
        assert_eq!(core::mem::size_of::<ServiceEntry>(), 8);
        assert_eq!(core::mem::size_of::<BackendKey>(), 8);
        assert_eq!(core::mem::size_of::<BackendEntry>(), 8);
        assert_eq!(core::mem::size_of::<SockRevNat>(), 16);
    }
}
