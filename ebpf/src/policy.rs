//! NetworkPolicy enforcement (maps in `common/src/policy.rs`): egress in `from_pod` after
//! Service translation, ingress wherever a packet is handed to a local pod (same-node redirect,
//! overlay and NodePort delivery). Only endpoints some policy selects pay anything: their
//! connections are tracked in `POLICY_CT` (one lookup per packet); a connection's first packet
//! (every TCP SYN, so a reused tuple is judged again) looks the peer's identity up and then the
//! endpoint's rules, two trie lookups whatever the number of policies.

use aya_ebpf::{
    btf_maps::{LpmTrie, LruHashMap, RingBuf, lpm_trie::Key},
    helpers::generated::bpf_ktime_get_ns,
    macros::btf_map,
};
use flotilla_common::{
    network::DropReason,
    policy::{
        DIR_EGRESS, DIR_INGRESS, EP_EGRESS_ISOLATED, EP_INGRESS_ISOLATED, EP_POLICY, IDENTITY_ANY,
        IDENTITY_WORLD, IPCACHE_MAX_ENTRIES, POLICY_CT_MAX_ENTRIES, POLICY_EVENTS_BYTES,
        POLICY_MAX_ENTRIES, POLICY_PREFIX_FULL, PolicyCtEntry, PolicyCtKey, PolicyDrop, PolicyKey,
    },
    services::{CT_TCP_LIFETIME_NS, CT_UDP_LIFETIME_NS, PROTO_TCP, PROTO_UDP},
};

use crate::nat::{Flow, Packet};

#[btf_map]
static IPCACHE: LpmTrie<[u8; 4], u32, { IPCACHE_MAX_ENTRIES as usize }> = LpmTrie::new();

#[btf_map]
static POLICY: LpmTrie<[u8; 12], u32, { POLICY_MAX_ENTRIES as usize }> = LpmTrie::new();

#[btf_map]
static POLICY_CT: LruHashMap<PolicyCtKey, PolicyCtEntry, { POLICY_CT_MAX_ENTRIES as usize }> =
    LruHashMap::new();

#[btf_map]
static POLICY_EVENTS: RingBuf<PolicyDrop, { POLICY_EVENTS_BYTES as usize }> = RingBuf::new();

/// A packet's tuple as an endpoint sees it (ports network order, 0 without ports).
#[derive(Clone, Copy)]
pub(crate) struct Tuple {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// A TCP SYN without ACK: the start of a connection, judged even if its tuple is tracked.
    pub syn: bool,
}

impl Tuple {
    /// The tuple of a packet: from its TCP/UDP flow, else its protocol alone.
    #[inline(always)]
    pub(crate) fn of(packet: &Packet) -> Self {
        match &packet.flow {
            Some(flow) => Self::of_flow(flow),
            None => Self {
                src: packet.src,
                dst: packet.dst,
                sport: 0,
                dport: 0,
                proto: packet.proto,
                syn: false,
            },
        }
    }

    /// The tuple of a TCP/UDP packet.
    #[inline(always)]
    pub(crate) fn of_flow(flow: &Flow) -> Self {
        Self {
            src: flow.key.src,
            dst: flow.key.dst,
            sport: flow.key.sport,
            dport: flow.key.dport,
            proto: flow.key.proto,
            syn: flow.key.proto == PROTO_TCP && flow.opens(),
        }
    }

    /// The same packet after a rewrite to `src:sport -> dst:dport`.
    #[inline(always)]
    pub(crate) fn rewritten(&self, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Self {
        Self {
            src,
            dst,
            sport,
            dport,
            ..*self
        }
    }

    #[inline(always)]
    fn ct_key(&self, direction: u8) -> PolicyCtKey {
        PolicyCtKey {
            src: self.src,
            dst: self.dst,
            sport: self.sport,
            dport: self.dport,
            proto: self.proto,
            direction,
            pad: [0; 2],
        }
    }
}

/// Egress of the local endpoint `own` (flags from its ENDPOINTS entry): `seen` is the packet as
/// the pod sent it (what its connection is tracked by), `peer`/`peer_port` (network order) the
/// destination after Service translation (what the policy is about); `node_ipv4` is this node.
#[inline(always)]
pub(crate) fn egress(
    flags: u32,
    seen: &Tuple,
    peer: [u8; 4],
    peer_port: u16,
    node_ipv4: [u8; 4],
) -> Result<(), DropReason> {
    if flags & EP_POLICY == 0 {
        return Ok(());
    }
    // Answers to the node's own connections (kubelet probes; traffic from the node is always
    // allowed in): the node reaches the pod through its stack, where no program tracks it, so
    // TCP segments other than a SYN going back to the node pass.
    if peer == node_ipv4 && seen.proto == PROTO_TCP && !seen.syn {
        return Ok(());
    }
    enforce(
        seen.src,
        flags & EP_EGRESS_ISOLATED != 0,
        DIR_EGRESS,
        seen,
        peer,
        peer_port,
    )
}

/// Ingress of the local endpoint the packet `seen` (as it will be delivered) is for;
/// `node_ipv4` is this node, whose traffic is always allowed.
#[inline(always)]
pub(crate) fn ingress(flags: u32, seen: &Tuple, node_ipv4: [u8; 4]) -> Result<(), DropReason> {
    if flags & EP_POLICY == 0 || seen.src == node_ipv4 {
        return Ok(());
    }
    enforce(
        seen.dst,
        flags & EP_INGRESS_ISOLATED != 0,
        DIR_INGRESS,
        seen,
        seen.src,
        seen.dport,
    )
}

#[inline(always)]
fn enforce(
    endpoint: [u8; 4],
    isolated: bool,
    direction: u8,
    seen: &Tuple,
    peer: [u8; 4],
    peer_port: u16,
) -> Result<(), DropReason> {
    // A pod can always reach itself (also through a Service it backs).
    if peer == endpoint {
        return Ok(());
    }
    let key = seen.ct_key(direction);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if !seen.syn
        && let Some(entry) = POLICY_CT.get_ptr_mut(key)
    {
        let lifetime = if seen.proto == PROTO_UDP {
            CT_UDP_LIFETIME_NS
        } else {
            CT_TCP_LIFETIME_NS
        };
        // SAFETY: a pointer into the map value, valid during this run; a racing writer stores
        // an equally valid timestamp.
        unsafe {
            if now.wrapping_sub((*entry).last_seen_ns) <= lifetime {
                (*entry).last_seen_ns = now;
                return Ok(());
            }
        }
    }
    if isolated {
        let identity = IPCACHE
            .get(&Key::new(32, peer))
            .copied()
            .unwrap_or(IDENTITY_WORLD);
        let port = u16::from_be(peer_port);
        if !allows(endpoint, direction, identity, seen.proto, port)
            && !allows(endpoint, direction, IDENTITY_ANY, seen.proto, port)
        {
            let _ = POLICY_EVENTS.output(
                PolicyDrop {
                    flow: key,
                    identity,
                    pad2: 0,
                    time_ns: now,
                },
                0,
            );
            return Err(DropReason::Policy);
        }
    }
    // Tracked both ways: this direction, and the replies at the endpoint's other point.
    let entry = PolicyCtEntry { last_seen_ns: now };
    // A full table only costs the tracking: the next packet is judged again.
    let _ = POLICY_CT.insert(key.reply(), entry, 0);
    let _ = POLICY_CT.insert(key, entry, 0);
    Ok(())
}

#[inline(always)]
fn allows(endpoint: [u8; 4], direction: u8, identity: u32, proto: u8, port: u16) -> bool {
    let key = PolicyKey {
        endpoint,
        direction,
        identity,
        proto,
        port,
    };
    POLICY
        .get(&Key::new(POLICY_PREFIX_FULL, key.to_bytes()))
        .is_some()
}
