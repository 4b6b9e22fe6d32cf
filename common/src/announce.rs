//! LoadBalancer addresses announced on the node's underlay (L2 mode, as MetalLB's and Cilium's
//! L2 announcements): the agent of the node elected for an address writes it here, and
//! `from_underlay` answers ARP requests for it with the underlay link's own MAC, so the
//! segment sends the address's traffic to this node.

/// Addresses this node answers ARP for: the IPv4 address (network order) -> [`L2Responder`].
pub const L2_RESPONDER_MAP: &str = "L2_RESPONDER";
/// Most addresses one node announces.
pub const L2_RESPONDER_MAX_ENTRIES: u32 = 4096;

/// Value of [`L2_RESPONDER_MAP`]: the link an address is announced on and the MAC it answers
/// with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct L2Responder {
    /// ifindex of the link ARP requests for the address are answered on (others are ignored).
    pub ifindex: u32,
    /// The MAC the answer gives for the address: the link's own.
    pub mac: [u8; 6],
    /// Explicit padding.
    pub pad: [u8; 2],
}

// SAFETY: repr(C), integers and byte arrays only, no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for L2Responder {}
