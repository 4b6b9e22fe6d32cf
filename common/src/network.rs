//! The pod network datapath's maps: local endpoints, tunnels to other nodes, the node's own
//! settings and drop counters. Shared by `ebpf/src/network.rs` (kernel side) and
//! `agent/src/datapath/` (which fills them).
//!
//! Addresses are stored as the four bytes of the IPv4 address in network order, exactly as they
//! sit in the packet, so the kernel side compares without byte swapping.

/// Map of the pods on this node: [`EndpointKey`] -> [`Endpoint`].
pub const ENDPOINTS_MAP: &str = "ENDPOINTS";
/// LPM trie of where remote addresses live: `Key<[u8; 4]>` (podCIDRs of other nodes and their node
/// IPs as /32) -> [`Tunnel`].
pub const TUNNELS_MAP: &str = "TUNNELS";
/// One-entry array with this node's [`NodeConfig`].
pub const NODE_CONFIG_MAP: &str = "NODE_CONFIG";
/// Per-CPU array of packets dropped, indexed by [`DropReason`].
pub const DROPS_MAP: &str = "DROPS";

/// TC program on the ingress of each pod's host-side veth (packets the pod sends).
pub const FROM_POD_PROG: &str = "from_pod";
/// TC program on the ingress of the VXLAN device (packets decapsulated from other nodes).
pub const FROM_OVERLAY_PROG: &str = "from_overlay";
/// TC program on the egress of the VXLAN device (sets the tunnel destination of every packet).
pub const TO_OVERLAY_PROG: &str = "to_overlay";
/// TC program on the ingress of the node's underlay link (NodePort, replies of NATed flows).
pub const FROM_UNDERLAY_PROG: &str = "from_underlay";
/// TC program on the egress of the node's underlay link (masquerade of pod traffic leaving the
/// cluster).
pub const TO_UNDERLAY_PROG: &str = "to_underlay";
/// TC program on the egress of each pod's host-side veth (what the node's stack routes to the
/// pod: reverse NAT of Service flows whose replies came through the stack).
pub const TO_POD_PROG: &str = "to_pod";

/// Maximum pods per node the endpoint map holds.
pub const ENDPOINTS_MAX_ENTRIES: u32 = 4096;
/// Maximum tunnel prefixes (two per remote node: its podCIDR and its node IP).
pub const TUNNELS_MAX_ENTRIES: u32 = 16384;

/// VXLAN network identifier of the overlay (flannel's default, VNI 1).
pub const OVERLAY_VNI: u32 = 1;
/// UDP port of the overlay (flannel's VXLAN port, also the Linux default).
pub const OVERLAY_PORT: u16 = 8472;
/// Bytes the VXLAN encapsulation adds (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8).
pub const OVERLAY_OVERHEAD: u32 = 50;
/// The link-local address pods route through; it is never assigned anywhere, the pod has a
/// permanent neighbour entry for it pointing at its host-side veth.
pub const POD_GATEWAY: [u8; 4] = [169, 254, 1, 1];

/// Key of [`ENDPOINTS_MAP`]: a pod's IPv4 address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointKey {
    /// The address, network order.
    pub ipv4: [u8; 4],
}

/// A pod on this node, as the datapath needs it to deliver packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// ifindex of the pod's host-side veth (redirect_peer target).
    pub host_ifindex: u32,
    /// MAC of the pod's interface (destination of delivered frames).
    pub pod_mac: [u8; 6],
    /// MAC of the host-side veth (source of delivered frames; the pod's gateway MAC).
    pub host_mac: [u8; 6],
    /// `EP_*` flags of `policy.rs`: whether policies select the pod, per direction (written by
    /// the policy sync; 0 for a pod no policy selects).
    pub flags: u32,
}

/// [`Tunnel::flags`]: the pair routes natively: packets to the node leave unencapsulated, sent
/// to its underlay address as the next hop. Always set together with [`TUNNEL_ACCEPT_NATIVE`].
pub const TUNNEL_NATIVE: u32 = 1;
/// [`Tunnel::flags`]: the node shares this node's underlay segment and native routing is on:
/// unencapsulated packets from its addresses are taken (without the flag, only what arrives over
/// VXLAN from that node is). Set even while the pair sends over VXLAN (`auto` with a node off
/// the segment), so two nodes switching modes a moment apart lose nothing.
pub const TUNNEL_ACCEPT_NATIVE: u32 = 2;

/// Value of [`TUNNELS_MAP`]: the node behind a prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tunnel {
    /// Underlay IPv4 address of the node (network order): the VXLAN destination, or the next
    /// hop under native routing.
    pub node_ipv4: [u8; 4],
    /// `TUNNEL_*` flags.
    pub flags: u32,
}

/// The node's own settings, index 0 of [`NODE_CONFIG_MAP`]. Until the agent wrote it, every
/// field is 0 and the programs pass packets to the kernel unchanged.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeConfig {
    /// ifindex of the node's VXLAN device.
    pub vxlan_ifindex: u32,
    /// VNI used on the overlay.
    pub vni: u32,
    /// The node's underlay IPv4 address (network order).
    pub node_ipv4: [u8; 4],
    /// MAC of the VXLAN device: frames handed to the node's own stack must carry it.
    pub vxlan_mac: [u8; 6],
    /// Explicit padding (no uninitialised bytes).
    pub pad: [u8; 2],
    /// ifindex of the underlay link holding the node IP (NodePort replies leave through it).
    pub underlay_ifindex: u32,
    /// Cookie of the node's network namespace: the host socket load balancer, attached to the
    /// machine's root cgroup, acts only on sockets of this namespace.
    pub netns_cookie: u64,
    /// Entries of every Maglev table the agent writes (a prime of
    /// [`crate::services::MAGLEV_TABLE_SIZES`]; 0 before the agent wrote it: no Maglev).
    pub maglev_table_size: u32,
    /// Explicit padding.
    pub pad2: u32,
    /// The node's podCIDR: sources masqueraded when they leave the cluster.
    pub pod_cidr: Ipv4Prefix,
    /// The cluster's pod network: destinations never masqueraded.
    pub cluster_cidr: Ipv4Prefix,
}

/// An IPv4 prefix as the programs test membership: address and netmask, network order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ipv4Prefix {
    /// The network address.
    pub address: [u8; 4],
    /// The netmask (all zero: the prefix holds nothing, see [`Self::contains`]).
    pub mask: [u8; 4],
}

impl Ipv4Prefix {
    /// The prefix `address/len` (`len` above 32 is taken as 32).
    pub fn new(address: [u8; 4], len: u8) -> Self {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(len.min(32)))
            .unwrap_or(0)
            .to_be_bytes();
        Self {
            address: core::array::from_fn(|i| address[i] & mask[i]),
            mask,
        }
    }

    /// Whether `ipv4` lies in the prefix; an unset prefix (mask 0) holds nothing, so a node
    /// configuration written before the agent knew its prefixes masquerades nothing.
    #[inline(always)]
    pub fn contains(&self, ipv4: [u8; 4]) -> bool {
        let mask = u32::from_ne_bytes(self.mask);
        mask != 0 && u32::from_ne_bytes(ipv4) & mask == u32::from_ne_bytes(self.address)
    }
}

/// Why the datapath dropped a packet; the index into [`DROPS_MAP`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// The IPv4 header could not be read (truncated packet).
    Malformed = 0,
    /// A pod sent a packet whose source address is not the one assigned to its interface.
    SourceMismatch = 1,
    /// The packet's TTL ran out while being forwarded between pods.
    TtlExceeded = 2,
    /// Bound for the overlay, but no node owns the destination (no tunnel).
    NoTunnel = 3,
    /// The tunnel destination could not be attached to the packet.
    TunnelKey = 4,
    /// Arrived over the overlay from a node that does not own the inner source address.
    TunnelSourceMismatch = 5,
    /// Arrived over the overlay for an address that is neither a pod here nor this node.
    UnknownDestination = 6,
    /// A new connection to a Service frontend without ready backends (answered with ICMP
    /// port unreachable where the packet allows it).
    NoBackend = 7,
    /// A Service connection could not be tracked (the table refused the entry).
    ConntrackFull = 8,
    /// A NodePort connection to another node's backend, or a pod's connection leaving the
    /// cluster, found no free source port to SNAT to.
    NoSnatPort = 9,
    /// A NetworkPolicy denied the packet (the endpoint is isolated in that direction and no
    /// rule allows the peer, protocol and port); the event stream says which.
    Policy = 10,
    /// Arrived unencapsulated on the underlay for a pod here, from an address of a node this
    /// node does not route natively with: only that node's VXLAN tunnel may carry it.
    NotNative = 11,
    /// A pod's packet leaving the cluster that the masquerade cannot translate (a protocol
    /// other than TCP, UDP and ICMP echo): it would leave with the pod's address.
    NotMasqueraded = 12,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [Self; 13] = [
        Self::Malformed,
        Self::SourceMismatch,
        Self::TtlExceeded,
        Self::NoTunnel,
        Self::TunnelKey,
        Self::TunnelSourceMismatch,
        Self::UnknownDestination,
        Self::NoBackend,
        Self::ConntrackFull,
        Self::NoSnatPort,
        Self::Policy,
        Self::NotNative,
        Self::NotMasqueraded,
    ];

    /// Number of reasons (the size of [`DROPS_MAP`]).
    pub const COUNT: u32 = Self::ALL.len() as u32;

    /// The name used in metrics and listings (snake_case, stable).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::SourceMismatch => "source_mismatch",
            Self::TtlExceeded => "ttl_exceeded",
            Self::NoTunnel => "no_tunnel",
            Self::TunnelKey => "tunnel_key",
            Self::TunnelSourceMismatch => "tunnel_source_mismatch",
            Self::UnknownDestination => "unknown_destination",
            Self::NoBackend => "no_backend",
            Self::ConntrackFull => "conntrack_full",
            Self::NoSnatPort => "no_snat_port",
            Self::Policy => "policy_denied",
            Self::NotNative => "not_native",
            Self::NotMasqueraded => "not_masqueraded",
        }
    }
}

// SAFETY: repr(C), integers and byte arrays only, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for EndpointKey {}
// SAFETY: as above (4 + 6 + 6 + 4 bytes).
#[cfg(feature = "user")]
unsafe impl aya::Pod for Endpoint {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for Tunnel {}
// SAFETY: as above (4 + 4 + 4 + 6 + 2 + 4 + 8 + 4 + 4 + 8 + 8 bytes, the u64 at offset 24).
#[cfg(feature = "user")]
unsafe impl aya::Pod for NodeConfig {}
// SAFETY: as above (two 4-byte arrays).
#[cfg(feature = "user")]
unsafe impl aya::Pod for Ipv4Prefix {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(core::mem::size_of::<EndpointKey>(), 4);
        assert_eq!(core::mem::size_of::<Endpoint>(), 20);
        assert_eq!(core::mem::size_of::<Tunnel>(), 8);
        assert_eq!(core::mem::size_of::<NodeConfig>(), 56);
    }

    #[test]
    fn prefixes_hold_their_addresses_only() {
        let pods = Ipv4Prefix::new([10, 244, 1, 7], 24);
        assert_eq!(pods.address, [10, 244, 1, 0]);
        assert!(pods.contains([10, 244, 1, 200]));
        assert!(!pods.contains([10, 244, 2, 1]));
        assert!(Ipv4Prefix::new([0; 4], 0).mask == [0; 4]);
        assert!(!Ipv4Prefix::default().contains([10, 244, 1, 1]));
        assert!(Ipv4Prefix::new([192, 168, 1, 1], 32).contains([192, 168, 1, 1]));
    }

    #[test]
    fn drop_reasons_are_indexed_in_order() {
        for (index, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, index, "{}", reason.name());
        }
    }
}
