//! Service load balancing: the maps the agent fills from Services and EndpointSlices, read by
//! the socket-level balancer (cgroup connect4/sendmsg4/recvmsg4/getpeername4) and by the
//! per-packet NAT on the pod veths and the underlay (with its connection tracking).
//!
//! Addresses and ports are stored in network order, as `bpf_sock_addr` and packets carry them.

/// Frontends: [`ServiceKey`] (ClusterIP, port, protocol) -> [`ServiceEntry`].
pub const SERVICES_MAP: &str = "SERVICES";
/// Backends of every frontend: [`BackendKey`] (service id, slot) -> [`BackendEntry`].
pub const BACKENDS_MAP: &str = "BACKENDS";
/// Connection tracking of per-packet Service NAT: [`FlowKey`] -> [`NatEntry`], one entry per
/// direction of each translated connection (LRU).
pub const SERVICE_CT_MAP: &str = "SERVICE_CT";
/// Session affinity: [`AffinityKey`] (frontend, client) -> [`AffinityEntry`] (LRU).
pub const AFFINITY_MAP: &str = "AFFINITY";
/// Per-socket reverse translation (socket cookie -> [`SockRevNat`]), so a connected socket's
/// peer and an unconnected UDP socket's replies read as the ClusterIP.
pub const SOCK_REVNAT_MAP: &str = "SOCK_REVNAT";

/// Maglev lookup tables: frontend id ([`ServiceEntry::id`]) -> an inner array of
/// [`MaglevChunk`]s (hash of maps), for frontends with [`SERVICE_MAGLEV`].
pub const MAGLEV_MAP: &str = "MAGLEV";

/// cgroup/connect4 program.
pub const SOCK_CONNECT4_PROG: &str = "sock_connect4";
/// cgroup/sendmsg4 program.
pub const SOCK_SENDMSG4_PROG: &str = "sock_sendmsg4";
/// cgroup/recvmsg4 program.
pub const SOCK_RECVMSG4_PROG: &str = "sock_recvmsg4";
/// cgroup/getpeername4 program.
pub const SOCK_GETPEERNAME4_PROG: &str = "sock_getpeername4";
/// connect4 for the node's own sockets (attached to the root cgroup, acts in the node's netns).
pub const HOST_CONNECT4_PROG: &str = "host_connect4";
/// sendmsg4 for the node's own sockets.
pub const HOST_SENDMSG4_PROG: &str = "host_sendmsg4";
/// recvmsg4 for the node's own sockets.
pub const HOST_RECVMSG4_PROG: &str = "host_recvmsg4";
/// getpeername4 for the node's own sockets.
pub const HOST_GETPEERNAME4_PROG: &str = "host_getpeername4";

/// Maximum frontends (service ports) per node.
pub const SERVICES_MAX_ENTRIES: u32 = 65_536;
/// Maximum backend slots over all frontends.
pub const BACKENDS_MAX_ENTRIES: u32 = 262_144;
/// Sockets whose translation is remembered (LRU).
pub const SOCK_REVNAT_MAX_ENTRIES: u32 = 262_144;
/// Tracked directions of NATed connections (two per connection, LRU).
pub const SERVICE_CT_MAX_ENTRIES: u32 = 262_144;
/// Remembered (frontend, client) pairs for session affinity (LRU).
pub const AFFINITY_MAX_ENTRIES: u32 = 65_536;

/// Entries per element of a Maglev table's inner array: a table of M entries is
/// ceil(M / 1024) elements of 4 KiB, written with one syscall each.
pub const MAGLEV_CHUNK: usize = 1024;
/// One element of a Maglev table's inner array: the backend slot of 1024 consecutive entries.
pub type MaglevChunk = [u32; MAGLEV_CHUNK];
/// The table sizes (M) a node may use: Cilium's `bpf-lb-maglev-table-size` choices, primes well
/// above 100 times the backends a Service is expected to have.
pub const MAGLEV_TABLE_SIZES: [u32; 10] = [
    251, 509, 1_021, 2_039, 4_093, 8_191, 16_381, 32_749, 65_521, 131_071,
];
/// The default M (Cilium's and the Maglev paper's 65537 is not on the list; 16381 is
/// Cilium's default): 64 KiB per frontend.
pub const MAGLEV_DEFAULT_TABLE_SIZE: u32 = 16_381;
/// The most inner-array elements a table can need.
pub const MAGLEV_MAX_CHUNKS: u32 = 131_071_u32.div_ceil(MAGLEV_CHUNK as u32);

/// [`ServiceKey::ip`] of NodePort frontends: the port is open on every address of the node.
pub const NODEPORT_IP: [u8; 4] = [0; 4];

/// [`ServiceEntry::flags`]: ClientIP session affinity (timeout in `affinity_timeout`).
pub const SERVICE_AFFINITY: u32 = 1;
/// [`ServiceEntry::flags`]: the backends are this node's only (a `Local` traffic policy); with
/// none, packets are dropped rather than rejected, as kube-proxy does.
pub const SERVICE_LOCAL_ONLY: u32 = 2;

/// [`ServiceEntry::flags`]: new connections seen per packet (tc) take the backend the
/// frontend's Maglev table gives their flow hash ([`maglev_flow_hash`]), so every node picks the
/// same one and removing a backend moves only its own flows; the socket balancer stays random
/// (a socket has no source port yet at `connect()`).
pub const SERVICE_MAGLEV: u32 = 4;

/// [`NatEntry::flags`]: the connection is closing (FIN or RST seen); it expires soon.
pub const NAT_CLOSING: u32 = 1;
/// [`NatEntry::flags`]: this is the reply direction (its rewrite restores the frontend).
pub const NAT_REPLY: u32 = 2;

/// Idle time after which a tracked TCP connection is forgotten (Cilium's default, 6 h).
pub const CT_TCP_LIFETIME_NS: u64 = 21_600 * 1_000_000_000;
/// Idle time after which a closing TCP connection is forgotten.
pub const CT_CLOSING_LIFETIME_NS: u64 = 10 * 1_000_000_000;
/// Idle time after which a UDP flow (or an ICMP echo exchange) is forgotten.
pub const CT_UDP_LIFETIME_NS: u64 = 60 * 1_000_000_000;

/// How long a tracked direction lives without packets: the datapath ignores an entry older than
/// this, and the agent's garbage collection deletes it.
pub const fn ct_lifetime_ns(proto: u8, flags: u32) -> u64 {
    if proto != PROTO_TCP {
        CT_UDP_LIFETIME_NS
    } else if flags & NAT_CLOSING != 0 {
        CT_CLOSING_LIFETIME_NS
    } else {
        CT_TCP_LIFETIME_NS
    }
}

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol number of SCTP (NetworkPolicy ports may name it; Services do not balance it).
pub const PROTO_SCTP: u8 = 132;

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
    /// Number of backends (slots 0..count); 0 rejects connections at once.
    pub count: u32,
    /// [`SERVICE_AFFINITY`] and future flags.
    pub flags: u32,
    /// Session affinity timeout in seconds (with [`SERVICE_AFFINITY`]).
    pub affinity_timeout: u32,
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

/// One direction of a connection as a packet carries it (the key of [`SERVICE_CT_MAP`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Source address (network order bytes).
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Source port, network order.
    pub sport: u16,
    /// Destination port, network order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Explicit padding.
    pub pad: [u8; 3],
}

/// What a tracked direction's packets are rewritten to: the whole address/port tuple.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatEntry {
    /// New source address.
    pub src: [u8; 4],
    /// New destination address.
    pub dst: [u8; 4],
    /// New source port, network order.
    pub sport: u16,
    /// New destination port, network order.
    pub dport: u16,
    /// [`NAT_CLOSING`], [`NAT_REPLY`].
    pub flags: u32,
    /// `bpf_ktime_get_ns` of the last packet.
    pub last_seen_ns: u64,
}

/// Key of [`AFFINITY_MAP`]: a frontend and a client (its IP, or for sockets its network
/// namespace cookie, which identifies a pod before its socket has an address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// [`ServiceEntry::id`].
    pub service_id: u32,
    /// Explicit padding.
    pub pad: u32,
    /// Client IPv4 (network order, in the low four bytes) or netns cookie.
    pub client: u64,
}

/// Value of [`AFFINITY_MAP`]: the backend a client keeps going to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AffinityEntry {
    /// Its slot when chosen; re-checked against BACKENDS on every use.
    pub slot: u32,
    /// The backend.
    pub backend: BackendEntry,
    /// Explicit padding.
    pub pad: u32,
    /// `bpf_ktime_get_ns` of the last use.
    pub last_used_ns: u64,
}

/// The flow hash that indexes a Maglev table: the client's address and port, the frontend's
/// port and the protocol. Not the frontend's address, so a client reaching a NodePort through
/// any node's address gets the same backend on every node. The same function on both sides
/// (the programs and the agent's checks), a 64-bit finaliser (MurmurHash3's fmix64) for spread.
#[inline(always)]
pub fn maglev_flow_hash(flow: &FlowKey) -> u32 {
    let ports = (u64::from(u16::from_be(flow.sport)) << 16) | u64::from(u16::from_be(flow.dport));
    let tuple = (u64::from(u32::from_be_bytes(flow.src)) << 32) | ports;
    (mix64(tuple ^ u64::from(flow.proto).wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 32) as u32
}

/// MurmurHash3's 64-bit finaliser: every input bit affects every output bit.
#[inline(always)]
pub const fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

// SAFETY: repr(C), integers and byte arrays only, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ServiceKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above (u64 at offset 16).
#[cfg(feature = "user")]
unsafe impl aya::Pod for NatEntry {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for AffinityKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for AffinityEntry {}
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
        assert_eq!(core::mem::size_of::<ServiceEntry>(), 16);
        assert_eq!(core::mem::size_of::<FlowKey>(), 16);
        assert_eq!(core::mem::size_of::<NatEntry>(), 24);
        assert_eq!(core::mem::size_of::<AffinityKey>(), 16);
        assert_eq!(core::mem::size_of::<AffinityEntry>(), 24);
        assert_eq!(core::mem::size_of::<BackendKey>(), 8);
        assert_eq!(core::mem::size_of::<BackendEntry>(), 8);
        assert_eq!(core::mem::size_of::<SockRevNat>(), 16);
    }
}
