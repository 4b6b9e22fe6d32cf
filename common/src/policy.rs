//! NetworkPolicy enforcement: the maps the agent computes from NetworkPolicies, Pods and
//! Namespaces (`agent/src/datapath/policy.rs`) and the datapath reads (`ebpf/src/policy.rs`).
//!
//! - `IPCACHE` (LPM trie): every pod IP of the cluster as a /32 and every ipBlock boundary
//!   (cidr and except prefixes, plus 0.0.0.0/0) -> a numeric identity. Identities are classes of
//!   addresses no policy can tell apart (same namespace, labels and ipBlock membership); each
//!   node numbers them itself, as nothing carries an identity in packets.
//! - `POLICY` (LPM trie): what each local endpoint allows, keyed by [`PolicyKey`] (endpoint,
//!   direction, peer identity, protocol, port). A rule for all ports is a shorter prefix (no
//!   protocol and port bits), one for a port range (`endPort`) is the range's few prefixes, so a
//!   verdict is two lookups (the peer's identity, then [`IDENTITY_ANY`]) whatever the number of
//!   policies.
//! - `POLICY_CT` (LRU hash): connections allowed at an endpoint, both directions, so replies
//!   and later packets pass with one lookup and policy changes affect new connections only.
//! - `POLICY_EVENTS` (ring buffer): one [`PolicyDrop`] per dropped packet, for
//!   `flotilla-agent bpf policy-drops`.
//!
//! An endpoint without any policy selecting it pays nothing: the flags in its `ENDPOINTS` entry
//! (looked up anyway to deliver) say whether to look further.

/// LPM trie of addresses: `Key<[u8; 4]>` -> identity (u32).
pub const IPCACHE_MAP: &str = "IPCACHE";
/// LPM trie of allowed (endpoint, direction, identity, protocol, port): `Key<[u8; 12]>`
/// ([`PolicyKey::to_bytes`]) -> u32 (unused, 1).
pub const POLICY_MAP: &str = "POLICY";
/// Allowed connections: [`PolicyCtKey`] -> [`PolicyCtEntry`] (LRU).
pub const POLICY_CT_MAP: &str = "POLICY_CT";
/// Ring buffer of [`PolicyDrop`] events.
pub const POLICY_EVENTS_MAP: &str = "POLICY_EVENTS";

/// Addresses and prefixes the identity cache holds.
pub const IPCACHE_MAX_ENTRIES: u32 = 65_536;
/// Policy entries over all endpoints of a node.
pub const POLICY_MAX_ENTRIES: u32 = 262_144;
/// Tracked directions of allowed connections (two per connection, LRU).
pub const POLICY_CT_MAX_ENTRIES: u32 = 262_144;
/// Bytes of the drop event ring buffer (a power of two, a multiple of the page size).
pub const POLICY_EVENTS_BYTES: u32 = 256 * 1024;

/// [`crate::network::Endpoint::flags`]: some policy selects the pod; its connections are
/// tracked (so replies pass an isolated direction).
pub const EP_POLICY: u32 = 1;
/// [`crate::network::Endpoint::flags`]: the pod is isolated for ingress.
pub const EP_INGRESS_ISOLATED: u32 = 2;
/// [`crate::network::Endpoint::flags`]: the pod is isolated for egress.
pub const EP_EGRESS_ISOLATED: u32 = 4;

/// Direction byte of [`PolicyKey`] and [`PolicyCtKey`]: traffic into the endpoint.
pub const DIR_INGRESS: u8 = 0;
/// Direction byte: traffic out of the endpoint.
pub const DIR_EGRESS: u8 = 1;

/// The identity standing for every peer (rules without peers, `from: [{}]`-like "all").
pub const IDENTITY_ANY: u32 = 0;
/// Identity of addresses nothing else names (the 0.0.0.0/0 entry of the identity cache).
pub const IDENTITY_WORLD: u32 = 1;

/// Prefix length of a [`PolicyKey`] that matches every protocol and port.
pub const POLICY_PREFIX_ALL_PORTS: u32 = 72;
/// Prefix length of a [`PolicyKey`] that matches one protocol, every port.
pub const POLICY_PREFIX_PROTO: u32 = 80;
/// Prefix length of a [`PolicyKey`] that matches one protocol and port exactly.
pub const POLICY_PREFIX_FULL: u32 = 96;

/// One entry of [`POLICY_MAP`], in fields; stored as [`PolicyKey::to_bytes`] so its prefix
/// runs endpoint, direction, identity, protocol, port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyKey {
    /// The local endpoint's address (network order bytes).
    pub endpoint: [u8; 4],
    /// [`DIR_INGRESS`] or [`DIR_EGRESS`].
    pub direction: u8,
    /// The peer's identity.
    pub identity: u32,
    /// IP protocol.
    pub proto: u8,
    /// Port (host order here; big-endian in the bytes).
    pub port: u16,
}

impl PolicyKey {
    /// The trie key's data: fields big-endian, in prefix order.
    pub const fn to_bytes(&self) -> [u8; 12] {
        let id = self.identity.to_be_bytes();
        let port = self.port.to_be_bytes();
        [
            self.endpoint[0],
            self.endpoint[1],
            self.endpoint[2],
            self.endpoint[3],
            self.direction,
            id[0],
            id[1],
            id[2],
            id[3],
            self.proto,
            port[0],
            port[1],
        ]
    }

    /// The fields of a trie key's data.
    pub const fn from_bytes(bytes: [u8; 12]) -> Self {
        Self {
            endpoint: [bytes[0], bytes[1], bytes[2], bytes[3]],
            direction: bytes[4],
            identity: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
            proto: bytes[9],
            port: u16::from_be_bytes([bytes[10], bytes[11]]),
        }
    }
}

/// Key of [`POLICY_CT_MAP`]: one direction of a connection as the endpoint sees it, at one of
/// its two enforcement points (its egress, its ingress), so that allowing a connection at one
/// pod's egress never lets it into another pod that has its own ingress policy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PolicyCtKey {
    /// Source address (network order bytes).
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// Source port, network order (0 for protocols without ports).
    pub sport: u16,
    /// Destination port, network order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`DIR_INGRESS`] (the destination endpoint's ingress) or [`DIR_EGRESS`] (the source
    /// endpoint's egress).
    pub direction: u8,
    /// Explicit padding.
    pub pad: [u8; 2],
}

impl PolicyCtKey {
    /// The other direction of the same connection, at the endpoint's other enforcement point
    /// (where its replies are checked).
    pub const fn reply(&self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
            proto: self.proto,
            direction: if self.direction == DIR_INGRESS {
                DIR_EGRESS
            } else {
                DIR_INGRESS
            },
            pad: [0; 2],
        }
    }
}

/// Value of [`POLICY_CT_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyCtEntry {
    /// When a packet last used the entry (`bpf_ktime_get_ns`).
    pub last_seen_ns: u64,
}

/// One policy drop, as the ring buffer carries it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyDrop {
    /// The dropped packet's connection as the endpoint sees it, at the enforcement point that
    /// denied it ([`DIR_INGRESS`]: the destination's ingress policy; [`DIR_EGRESS`]: the
    /// source's egress policy).
    pub flow: PolicyCtKey,
    /// The peer's identity as the node's identity cache gave it.
    pub identity: u32,
    /// Explicit padding.
    pub pad2: u32,
    /// `bpf_ktime_get_ns` at the drop.
    pub time_ns: u64,
}

// SAFETY: repr(C), integers and byte arrays only, no implicit padding (16 bytes).
#[cfg(feature = "user")]
unsafe impl aya::Pod for PolicyCtKey {}
// SAFETY: one u64.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PolicyCtEntry {}
// SAFETY: as above (16 + 4 + 4 + 8 bytes).
#[cfg(feature = "user")]
unsafe impl aya::Pod for PolicyDrop {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_no_padding() {
        assert_eq!(core::mem::size_of::<PolicyCtKey>(), 16);
        assert_eq!(core::mem::size_of::<PolicyCtEntry>(), 8);
        assert_eq!(core::mem::size_of::<PolicyDrop>(), 32);
    }

    #[test]
    fn a_reply_swaps_the_ends_and_the_enforcement_point() {
        let key = PolicyCtKey {
            src: [10, 244, 1, 5],
            dst: [10, 244, 2, 7],
            sport: 40000u16.to_be(),
            dport: 8080u16.to_be(),
            proto: 6,
            direction: DIR_EGRESS,
            pad: [0; 2],
        };
        let reply = key.reply();
        assert_eq!(
            (reply.src, reply.dst, reply.sport, reply.dport, reply.proto),
            (key.dst, key.src, key.dport, key.sport, key.proto)
        );
        assert_eq!(reply.direction, DIR_INGRESS);
        assert_eq!(reply.reply(), key);
    }

    #[test]
    fn policy_keys_round_trip_in_prefix_order() {
        let key = PolicyKey {
            endpoint: [10, 244, 1, 5],
            direction: DIR_EGRESS,
            identity: 0x0102_0304,
            proto: 6,
            port: 8080,
        };
        let bytes = key.to_bytes();
        assert_eq!(bytes, [10, 244, 1, 5, 1, 1, 2, 3, 4, 6, 0x1f, 0x90]);
        assert_eq!(PolicyKey::from_bytes(bytes), key);
    }
}
