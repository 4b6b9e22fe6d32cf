//! Masquerade of pod traffic leaving the cluster (maps in `common/src/masquerade.rs`), on the
//! node's underlay link, where nftables' masquerade rule used to act:
//!
//! - `to_underlay` (egress): a packet from this node's podCIDR to an address outside the cluster
//!   (not in the cluster's pod network, not another node) leaves from the node's address, with
//!   its own source port when no other flow from the node to that destination holds it, else a
//!   free one (`nat::snat`). ICMP echo is tracked by its identifier, ICMP errors follow the flow
//!   they quote, fragments after the first follow the first (which has the ports) by the IP
//!   identification (`MASQUERADE_FRAGMENTS`); anything else cannot be told apart once
//!   masqueraded and is dropped (counted as `not_masqueraded`) rather than leaking the pod's
//!   address.
//! - `from_underlay` (ingress): replies to the node's address are looked up and rewritten back
//!   to the pod (and to a Service's frontend where the pod reached an outside backend through
//!   one), then delivered to the pod past the node's stack, its ingress policy checked; a
//!   reply's later fragments follow its first.
//! - The node's own flows share its address and ports with the masqueraded ones: a new one whose
//!   tuple a masqueraded flow already holds is moved to a free port the same way (netfilter's NAT
//!   does the same for the node's connections); every other packet of the node's pays one
//!   lookup.
//! - Clients outside the cluster that reach a pod's address directly (routed pod networks) are
//!   recorded so the pod's replies leave untranslated, as netfilter leaves the replies of a
//!   connection it did not masquerade.
//!
//! Entries expire as the Service NAT's do (`ct_lifetime_ns`); the agent deletes expired ones, so
//! their ports are free again.

use aya_ebpf::{
    bindings::TC_ACT_OK, btf_maps::LruHashMap, helpers::generated::bpf_ktime_get_ns,
    macros::btf_map, programs::TcContext,
};
use flotilla_common::{
    counters::IPPROTO_ICMP,
    masquerade::{
        FragmentEntry, FragmentKey, ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST,
        MASQUERADE_FRAGMENTS_MAX_ENTRIES, is_icmp_error,
    },
    network::{DropReason, NodeConfig, OVERLAY_PORT},
    services::{FlowKey, NAT_REPLY, NatEntry, PROTO_UDP},
};

use crate::{
    nat::{self, Flow, IP_DST, IP_SRC, NatTable, Packet},
    network,
    policy::Tuple,
};

#[btf_map]
static MASQUERADE_CT: NatTable = LruHashMap::new();

#[btf_map]
static MASQUERADE_FRAGMENTS: LruHashMap<
    FragmentKey,
    FragmentEntry,
    { MASQUERADE_FRAGMENTS_MAX_ENTRIES as usize },
> = LruHashMap::new();

/// A packet leaving through the node's underlay link (see the module docs).
#[inline(always)]
pub(crate) fn leaving(ctx: &TcContext, config: &NodeConfig) -> Result<i32, DropReason> {
    let packet = nat::parse(ctx)?;
    if config.pod_cidr.contains(packet.src) {
        if config.cluster_cidr.contains(packet.dst) || network::tunnel(packet.dst).is_some() {
            // Another node's pod or the node itself, routed natively: the cluster sees pods'
            // own addresses.
            return Ok(TC_ACT_OK);
        }
        masquerade(ctx, config, &packet)?;
    } else if packet.src == config.node_ipv4 && !is_overlay(&packet) {
        node_flow(ctx, config, &packet)?;
    }
    Ok(TC_ACT_OK)
}

/// What [`arriving`] returns for a packet that is no reply of a masqueraded flow (TC actions
/// are -1 and up). A sentinel rather than an `Option`: LLVM leaves a `None`'s payload undefined
/// and may still move it between registers, which the verifier rejects (`R5 !read_ok`).
pub(crate) const NOT_A_REPLY: i32 = i32::MIN;

/// A packet another host sent to the node's address: the reply of a masqueraded flow is
/// rewritten back and handed to its pod, or to the node's stack for one of the node's own flows
/// that was moved to another port; [`NOT_A_REPLY`] for everything else.
#[inline(always)]
pub(crate) fn arriving(
    ctx: &TcContext,
    config: &NodeConfig,
    packet: &Packet,
) -> Result<i32, DropReason> {
    if !packet.first_fragment {
        return later_fragment(ctx, config, packet);
    }
    let Some(flow) = flow_of(ctx, packet)? else {
        if packet.proto == IPPROTO_ICMP && icmp_error(ctx, packet)? {
            return hand_on(ctx, config, &Tuple::of(&nat::parse(ctx)?));
        }
        return Ok(NOT_A_REPLY);
    };
    let Some(nat) = nat::tracked_in(&MASQUERADE_CT, ctx, &flow)? else {
        return Ok(NOT_A_REPLY);
    };
    if nat.dst == config.node_ipv4 {
        return Ok(TC_ACT_OK);
    }
    let mut now = flow.rewritten(&nat);
    // A pod's connection to a Service whose backend is outside the cluster: the reply gets the
    // frontend back as the pod's own veth would have given it.
    if let Some(service) = nat::tracked(ctx, &now)? {
        now = now.rewritten(&service);
    }
    remember_fragments(packet, now.key.src, now.key.dst);
    network::forward(ctx, config, &seen(&now))
}

/// Sends a rewritten reply on as `seen` now reads: to the node's stack when it is for one of the
/// node's own flows (moved off a port), else to its pod.
#[inline(always)]
fn hand_on(ctx: &TcContext, config: &NodeConfig, seen: &Tuple) -> Result<i32, DropReason> {
    if seen.dst == config.node_ipv4 {
        return Ok(TC_ACT_OK);
    }
    network::forward(ctx, config, seen)
}

/// A fragment after the first of a reply to a masqueraded flow (its first fragment was
/// translated before it: fragments arriving ahead of their first are the node's stack's, where
/// they are lost): rewritten as the first was and sent on the same way.
#[inline(always)]
fn later_fragment(
    ctx: &TcContext,
    config: &NodeConfig,
    packet: &Packet,
) -> Result<i32, DropReason> {
    let Some(rewritten) = follow_fragment(ctx, packet)? else {
        return Ok(NOT_A_REPLY);
    };
    // Without ports, as policy sees any packet without a flow.
    let seen = Tuple::of(packet).rewritten(rewritten.src, rewritten.dst, 0, 0);
    hand_on(ctx, config, &seen)
}

/// Records how the first fragment of a datagram (if more follow) was rewritten, for the rest,
/// which carry no ports.
#[inline(always)]
fn remember_fragments(packet: &Packet, src: [u8; 4], dst: [u8; 4]) {
    if packet.more_fragments {
        // A full table forgets the oldest datagram; this one's first fragment still goes on.
        let _ = MASQUERADE_FRAGMENTS.insert(fragment_key(packet), FragmentEntry { src, dst }, 0);
    }
}

/// Rewrites a later fragment as its datagram's first fragment was; None when that was not
/// recorded.
#[inline(always)]
fn follow_fragment(ctx: &TcContext, packet: &Packet) -> Result<Option<FragmentEntry>, DropReason> {
    let Some(rewritten) = MASQUERADE_FRAGMENTS.get_ptr(fragment_key(packet)) else {
        return Ok(None);
    };
    // SAFETY: a pointer into the map value, valid during this run.
    let rewritten = unsafe { *rewritten };
    if rewritten.src != packet.src {
        nat::rewrite_address(ctx, IP_SRC, packet.src, rewritten.src)?;
    }
    if rewritten.dst != packet.dst {
        nat::rewrite_address(ctx, IP_DST, packet.dst, rewritten.dst)?;
    }
    Ok(Some(rewritten))
}

/// What ties a datagram's fragments together, as they arrive.
#[inline(always)]
fn fragment_key(packet: &Packet) -> FragmentKey {
    FragmentKey {
        src: packet.src,
        dst: packet.dst,
        id: packet.id,
        proto: packet.proto,
        pad: 0,
    }
}

/// A packet from outside the cluster to a pod's address (a routed pod network): when it opens
/// a flow, the pod's replies are recorded to leave as they are.
#[inline(always)]
pub(crate) fn inbound(ctx: &TcContext, packet: &Packet) -> Result<(), DropReason> {
    let Some(flow) = flow_of(ctx, packet)? else {
        return Ok(());
    };
    if !flow.opens() {
        return Ok(());
    }
    let reply = reversed(&flow.key);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let unchanged = NatEntry {
        src: reply.src,
        dst: reply.dst,
        sport: reply.sport,
        dport: reply.dport,
        flags: NAT_REPLY,
        last_seen_ns: now,
    };
    MASQUERADE_CT
        .insert(reply, unchanged, 0)
        .map_err(|_| DropReason::ConntrackFull)
}

/// A pod's packet leaving the cluster.
#[inline(always)]
fn masquerade(ctx: &TcContext, config: &NodeConfig, packet: &Packet) -> Result<(), DropReason> {
    if !packet.first_fragment {
        // Rewritten as its datagram's first fragment was (unchanged for a reply to a client
        // that reached the pod directly); without a first fragment seen, it cannot be told
        // apart.
        return match follow_fragment(ctx, packet)? {
            Some(_) => Ok(()),
            None => Err(DropReason::NotMasqueraded),
        };
    }
    let Some(flow) = flow_of(ctx, packet)? else {
        if packet.proto == IPPROTO_ICMP && icmp_error(ctx, packet)? {
            return Ok(());
        }
        return Err(DropReason::NotMasqueraded);
    };
    let nat = match nat::tracked_in(&MASQUERADE_CT, ctx, &flow)? {
        Some(nat) => nat,
        // An ICMP echo reply nobody asked through this node for cannot be told apart from
        // others.
        None if flow.key.proto == IPPROTO_ICMP && !flow.opens() => {
            return Err(DropReason::NotMasqueraded);
        }
        // Any other untracked packet starts a flow: a TCP connection whose entry expired
        // carries on from its next segment, as netfilter picks up connections mid-stream.
        None => nat::snat(&MASQUERADE_CT, ctx, &flow, config.node_ipv4)?,
    };
    remember_fragments(packet, nat.src, nat.dst);
    Ok(())
}

/// One of the node's own packets: translated when its flow was moved off a port a masqueraded
/// flow holds, and moved when it opens a flow on such a port.
#[inline(always)]
fn node_flow(ctx: &TcContext, config: &NodeConfig, packet: &Packet) -> Result<(), DropReason> {
    let Some(flow) = flow_of(ctx, packet)? else {
        return Ok(());
    };
    if nat::tracked_in(&MASQUERADE_CT, ctx, &flow)?.is_some() || !flow.opens() {
        return Ok(());
    }
    if MASQUERADE_CT.get_ptr(reversed(&flow.key)).is_some() {
        nat::snat(&MASQUERADE_CT, ctx, &flow, config.node_ipv4)?;
    }
    Ok(())
}

/// The VXLAN packets the node sends to other nodes (the bulk of what the node itself sends).
#[inline(always)]
fn is_overlay(packet: &Packet) -> bool {
    packet
        .flow
        .is_some_and(|flow| flow.key.proto == PROTO_UDP && flow.key.dport == OVERLAY_PORT.to_be())
}

/// The flow the masquerade tracks a packet by: its TCP/UDP flow, or an ICMP echo's (the
/// identifier as the requester's port); None for other packets.
#[inline(always)]
fn flow_of(ctx: &TcContext, packet: &Packet) -> Result<Option<Flow>, DropReason> {
    if packet.flow.is_some() || packet.proto != IPPROTO_ICMP || !packet.first_fragment {
        return Ok(packet.flow);
    }
    let l4 = packet.l4;
    let icmp_type = ctx.load::<u8>(l4).map_err(|_| DropReason::Malformed)?;
    if icmp_type != ICMP_ECHO_REQUEST && icmp_type != ICMP_ECHO_REPLY {
        return Ok(None);
    }
    let id = ctx.load::<u16>(l4 + 4).map_err(|_| DropReason::Malformed)?;
    let request = icmp_type == ICMP_ECHO_REQUEST;
    let (sport, dport) = if request { (id, 0) } else { (0, id) };
    let key = FlowKey {
        src: packet.src,
        dst: packet.dst,
        sport,
        dport,
        proto: IPPROTO_ICMP,
        pad: [0; 3],
    };
    Ok(Some(Flow::icmp_echo(key, l4, request)))
}

/// The other direction of a flow.
#[inline(always)]
fn reversed(key: &FlowKey) -> FlowKey {
    FlowKey {
        src: key.dst,
        dst: key.src,
        sport: key.dport,
        dport: key.sport,
        ..*key
    }
}

/// A flow's tuple as policy sees it (ICMP without ports).
#[inline(always)]
fn seen(flow: &Flow) -> Tuple {
    let mut tuple = Tuple::of_flow(flow);
    if flow.key.proto == IPPROTO_ICMP {
        (tuple.sport, tuple.dport) = (0, 0);
    }
    tuple
}

/// Offsets in an ICMP error: the quoted IPv4 header after the 8-byte ICMP header, its
/// checksum, addresses, and the quoted L4 header after it (options in the quote are not
/// supported: such errors are left alone).
const QUOTE: usize = 8;
const QUOTE_CHECK: usize = QUOTE + 10;
const QUOTE_SRC: usize = QUOTE + 12;
const QUOTE_DST: usize = QUOTE + 16;
const QUOTE_L4: usize = QUOTE + 20;

/// Rewrites an ICMP error whose quoted packet belongs to a masqueraded flow (either way):
/// the quoted tuple to what its sender saw and the outer address on the masqueraded side with
/// it; true when it did. The quoted header keeps a valid checksum (so the ICMP checksum, which
/// covers it, changes only with the quoted ports); the quoted L4 checksum is left as it was,
/// as receivers match errors to sockets by addresses and ports alone.
#[inline(always)]
fn icmp_error(ctx: &TcContext, packet: &Packet) -> Result<bool, DropReason> {
    let malformed = |_| DropReason::Malformed;
    if !packet.first_fragment {
        return Ok(false);
    }
    let l4 = packet.l4;
    let icmp_type = ctx.load::<u8>(l4).map_err(malformed)?;
    if !is_icmp_error(icmp_type) {
        return Ok(false);
    }
    let Ok(quoted) = ctx.load::<[u8; 20]>(l4 + QUOTE) else {
        return Ok(false);
    };
    if quoted[0] != 0x45 {
        return Ok(false);
    }
    let proto = quoted[9];
    let Ok(ports) = ctx.load::<[u16; 4]>(l4 + QUOTE_L4) else {
        return Ok(false);
    };
    // The quoted packet's "ports": TCP/UDP's, or an echo's identifier (at 4) on its side.
    let (sport, dport, id_at) = if proto == IPPROTO_ICMP {
        let quoted_type = ports[0].to_ne_bytes()[0];
        if quoted_type == ICMP_ECHO_REQUEST {
            (ports[2], 0, true)
        } else if quoted_type == ICMP_ECHO_REPLY {
            (0, ports[2], true)
        } else {
            return Ok(false);
        }
    } else {
        (ports[0], ports[1], false)
    };
    let quoted_key = FlowKey {
        src: [quoted[12], quoted[13], quoted[14], quoted[15]],
        dst: [quoted[16], quoted[17], quoted[18], quoted[19]],
        sport,
        dport,
        proto,
        pad: [0; 3],
    };
    // The entry of the direction opposite to the quoted packet, the one this error travels.
    let Some(entry) = MASQUERADE_CT.get_ptr(reversed(&quoted_key)) else {
        return Ok(false);
    };
    // SAFETY: a pointer into the map value, valid during this run.
    let entry = unsafe { *entry };
    // The quoted packet as its sender saw it: the reverse of the error's direction rewritten.
    let (new_src, new_dst, new_sport, new_dport) = (entry.dst, entry.src, entry.dport, entry.sport);
    // The outer address on the masqueraded side follows the quote's.
    if packet.dst == quoted_key.src && new_src != quoted_key.src {
        nat::rewrite_address(ctx, IP_DST, packet.dst, new_src)?;
    }
    if packet.src == quoted_key.dst && new_dst != quoted_key.dst {
        nat::rewrite_address(ctx, IP_SRC, packet.src, new_dst)?;
    }
    for (offset, old, new) in [
        (l4 + QUOTE_SRC, quoted_key.src, new_src),
        (l4 + QUOTE_DST, quoted_key.dst, new_dst),
    ] {
        if old != new {
            nat::rewrite_header_address(ctx, l4 + QUOTE_CHECK, offset, old, new)?;
        }
    }
    let (sport_at, dport_at) = if id_at {
        (l4 + QUOTE_L4 + 4, l4 + QUOTE_L4 + 4)
    } else {
        (l4 + QUOTE_L4, l4 + QUOTE_L4 + 2)
    };
    for (offset, old, new) in [(sport_at, sport, new_sport), (dport_at, dport, new_dport)] {
        if old != new {
            ctx.l4_csum_replace(l4 + 2, u64::from(old), u64::from(new), 2)
                .map_err(malformed)?;
            ctx.store(offset, &new, 0).map_err(malformed)?;
        }
    }
    Ok(true)
}
