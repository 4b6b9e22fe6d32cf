//! Masquerade of pod traffic leaving the cluster (`ebpf/src/masquerade.rs`): what the kernel
//! side and the agent's garbage collection share.
//!
//! Each masqueraded flow has two entries in [`MASQUERADE_CT_MAP`], keyed by [`FlowKey`] as the
//! packets carry it and holding the tuple to rewrite them to ([`NatEntry`], the layout the
//! Service NAT uses): the pod's direction (pod -> outside, rewritten to leave from the node's
//! address) and the reply direction (outside -> node, flagged [`NAT_REPLY`], rewritten back to
//! the pod). ICMP echo carries its identifier as the source port of a request and the
//! destination port of a reply (the other port 0).
//!
//! [`FlowKey`]: crate::services::FlowKey
//! [`NatEntry`]: crate::services::NatEntry
//! [`NAT_REPLY`]: crate::services::NAT_REPLY

/// LRU hash of masqueraded flows: [`crate::services::FlowKey`] -> [`crate::services::NatEntry`].
pub const MASQUERADE_CT_MAP: &str = "MASQUERADE_CT";
/// Tracked directions of masqueraded flows (two per flow). Equal to the Service NAT's table, so
/// both are one map type and share the kernel side's tracking code.
pub const MASQUERADE_CT_MAX_ENTRIES: u32 = crate::services::SERVICE_CT_MAX_ENTRIES;
/// LRU hash of replies to masqueraded flows arriving in fragments: [`FragmentKey`] (the
/// datagram as it arrived) -> [`FragmentEntry`] (its addresses once rewritten), written when its
/// first fragment (the one with the ports) is translated, read for the others.
pub const MASQUERADE_FRAGMENTS_MAP: &str = "MASQUERADE_FRAGMENTS";
/// Datagrams whose fragments can be on their way in at once.
pub const MASQUERADE_FRAGMENTS_MAX_ENTRIES: u32 = 8192;

/// Key of [`MASQUERADE_FRAGMENTS_MAP`]: what every fragment of one datagram carries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FragmentKey {
    /// Source address (network order bytes).
    pub src: [u8; 4],
    /// Destination address.
    pub dst: [u8; 4],
    /// The IP identification field, as carried.
    pub id: u16,
    /// IP protocol.
    pub proto: u8,
    /// Explicit padding.
    pub pad: u8,
}

/// Value of [`MASQUERADE_FRAGMENTS_MAP`]: the datagram's addresses after translation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmentEntry {
    /// New source address.
    pub src: [u8; 4],
    /// New destination address.
    pub dst: [u8; 4],
}

// SAFETY: repr(C), byte arrays and integers only, no implicit padding (4 + 4 + 2 + 1 + 1).
#[cfg(feature = "user")]
unsafe impl aya::Pod for FragmentKey {}
// SAFETY: as above (4 + 4).
#[cfg(feature = "user")]
unsafe impl aya::Pod for FragmentEntry {}

/// ICMP echo reply.
pub const ICMP_ECHO_REPLY: u8 = 0;
/// ICMP destination unreachable (including "fragmentation needed", which path MTU discovery
/// depends on).
pub const ICMP_DEST_UNREACHABLE: u8 = 3;
/// ICMP echo request.
pub const ICMP_ECHO_REQUEST: u8 = 8;
/// ICMP time exceeded.
pub const ICMP_TIME_EXCEEDED: u8 = 11;
/// ICMP parameter problem.
pub const ICMP_PARAMETER_PROBLEM: u8 = 12;

/// Whether an ICMP message of `icmp_type` quotes the packet it is about (an error): such
/// messages follow the flow they quote.
pub const fn is_icmp_error(icmp_type: u8) -> bool {
    matches!(
        icmp_type,
        ICMP_DEST_UNREACHABLE | ICMP_TIME_EXCEEDED | ICMP_PARAMETER_PROBLEM
    )
}
