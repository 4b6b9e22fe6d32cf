//! Per-packet Service NAT with connection tracking, for what the socket balancer cannot see: a
//! pod's sockets outside the pod cgroup (translated on the pod's veth) and NodePort connections
//! arriving on the node's underlay link.
//!
//! Every translated connection gets two entries in `SERVICE_CT`, one per direction, each keyed by
//! the tuple its packets carry and holding the tuple to rewrite them to. The first packet picks
//! the backend; every later packet of either direction is one lookup and a rewrite, wherever it
//! passes (pod veth, overlay, underlay). A backend that leaves the Service keeps the connections
//! it has until they close (graceful termination): only new connections consult the frontend.

use aya_ebpf::{
    bindings::{
        BPF_F_CURRENT_NETNS, BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_NOEXIST, bpf_sock_tuple,
        bpf_sock_tuple__bindgen_ty_1, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1,
    },
    btf_maps::LruHashMap,
    helpers::generated::{
        bpf_csum_diff, bpf_get_prandom_u32, bpf_ktime_get_ns, bpf_sk_lookup_udp, bpf_sk_release,
        bpf_skb_change_tail, bpf_skc_lookup_tcp,
    },
    macros::btf_map,
    programs::TcContext,
};
use flotilla_common::{
    counters::IPPROTO_ICMP,
    network::DropReason,
    services::{
        FlowKey, NAT_CLOSING, NAT_REPLY, NatEntry, PROTO_TCP, PROTO_UDP, SERVICE_CT_MAX_ENTRIES,
        ServiceEntry, ServiceKey, ct_lifetime_ns, maglev_flow_hash,
    },
};

use crate::{
    network::{self, ETH_HLEN},
    services,
};

/// A connection-tracking table of NATed flows: [`FlowKey`] as carried -> the tuple to rewrite
/// to. The Service NAT's and the masquerade's are both of this type.
pub(crate) type NatTable = LruHashMap<FlowKey, NatEntry, { SERVICE_CT_MAX_ENTRIES as usize }>;

#[btf_map]
static SERVICE_CT: NatTable = LruHashMap::new();

const IP_CHECK: usize = ETH_HLEN + 10;
pub(crate) const IP_SRC: usize = ETH_HLEN + 12;
pub(crate) const IP_DST: usize = ETH_HLEN + 16;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// Where SNAT source ports are drawn from when the client's own port is taken (the kernel's
/// default ephemeral range, disjoint from the NodePort range).
const SNAT_PORT_FIRST: u32 = 32_768;
const SNAT_PORT_COUNT: u32 = 28_232;
const SNAT_ATTEMPTS: u32 = 8;

/// A TCP or UDP packet's tuple and where its L4 header is.
#[derive(Clone, Copy)]
pub(crate) struct Flow {
    /// The tuple as carried.
    pub key: FlowKey,
    /// Offset of the L4 header.
    l4: usize,
    /// TCP flags (0 for UDP and ICMP).
    tcp_flags: u8,
    /// An ICMP echo request (which opens an exchange as a SYN opens a connection).
    echo_request: bool,
}

impl Flow {
    /// A packet that opens a connection (TCP SYN without ACK, any UDP datagram, an ICMP echo
    /// request).
    #[inline(always)]
    pub(crate) fn opens(&self) -> bool {
        self.key.proto == PROTO_UDP
            || self.echo_request
            || (self.key.proto == PROTO_TCP && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN)
    }

    /// An ICMP echo request or reply whose ICMP header is at `l4`, tracked as a flow: `key`
    /// carries the identifier as the source port of a request, the destination port of a reply.
    #[inline(always)]
    pub(crate) fn icmp_echo(key: FlowKey, l4: usize, request: bool) -> Self {
        Self {
            key,
            l4,
            tcp_flags: 0,
            echo_request: request,
        }
    }

    /// The same packet once rewritten to `nat`.
    #[inline(always)]
    pub(crate) fn rewritten(&self, nat: &NatEntry) -> Self {
        Self {
            key: FlowKey {
                src: nat.src,
                dst: nat.dst,
                sport: nat.sport,
                dport: nat.dport,
                ..self.key
            },
            ..*self
        }
    }

    /// The frontend key the packet is addressed to.
    #[inline(always)]
    pub(crate) fn frontend_key(&self) -> ServiceKey {
        ServiceKey {
            ip: self.key.dst,
            port: self.key.dport,
            proto: self.key.proto,
            pad: 0,
        }
    }
}

/// An IPv4 packet as the programs decide on it: its addresses and protocol, and its TCP/UDP
/// flow.
#[derive(Clone, Copy)]
pub(crate) struct Packet {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    /// Offset of the L4 header (after IP options).
    pub l4: usize,
    /// Whether the packet holds its L4 header (not a fragment other than the first).
    pub first_fragment: bool,
    /// Whether more fragments of its datagram follow (the MF flag).
    pub more_fragments: bool,
    /// The IP identification field, as carried (what ties fragments together).
    pub id: u16,
    /// None for other protocols and non-first fragments.
    pub flow: Option<Flow>,
}

/// Reads an IPv4 packet's header with one load (each `bpf_skb_load_bytes` is a helper call on
/// every packet), then its ports and TCP flags.
#[inline(always)]
pub(crate) fn parse(ctx: &TcContext) -> Result<Packet, DropReason> {
    let header = ctx
        .load::<[u8; 20]>(ETH_HLEN)
        .map_err(|_| DropReason::Malformed)?;
    let src = [header[12], header[13], header[14], header[15]];
    let dst = [header[16], header[17], header[18], header[19]];
    let proto = header[9];
    // Fragment offset (13 bits after the flags) non-zero: no L4 header in this packet.
    let fragment = u16::from_be_bytes([header[6], header[7]]);
    let first_fragment = fragment & 0x1fff == 0;
    let l4 = ETH_HLEN + usize::from(header[0] & 0x0f) * 4;
    let mut packet = Packet {
        src,
        dst,
        proto,
        l4,
        first_fragment,
        more_fragments: fragment & 0x2000 != 0,
        id: u16::from_ne_bytes([header[4], header[5]]),
        flow: None,
    };
    if (proto != PROTO_TCP && proto != PROTO_UDP) || !first_fragment {
        return Ok(packet);
    }
    let ports = ctx
        .load::<[u16; 2]>(l4)
        .map_err(|_| DropReason::Malformed)?;
    let tcp_flags = if proto == PROTO_TCP {
        ctx.load::<u8>(l4 + 13).map_err(|_| DropReason::Malformed)?
    } else {
        0
    };
    packet.flow = Some(Flow {
        key: FlowKey {
            src,
            dst,
            sport: ports[0],
            dport: ports[1],
            proto,
            pad: [0; 3],
        },
        l4,
        tcp_flags,
        echo_request: false,
    });
    Ok(packet)
}

/// Rewrites a packet of a tracked Service connection; returns its new tuple, or None when the
/// flow is not tracked (or its entry expired).
#[inline(always)]
pub(crate) fn tracked(ctx: &TcContext, flow: &Flow) -> Result<Option<NatEntry>, DropReason> {
    tracked_in(&SERVICE_CT, ctx, flow)
}

/// Rewrites a packet of a flow `table` tracks; returns its new tuple, or None when the flow is
/// not tracked (or its entry expired).
#[inline(always)]
pub(crate) fn tracked_in(
    table: &NatTable,
    ctx: &TcContext,
    flow: &Flow,
) -> Result<Option<NatEntry>, DropReason> {
    let Some(entry) = table.get_ptr_mut(flow.key) else {
        return Ok(None);
    };
    // SAFETY: a pointer into the map value, valid during this run.
    let mut nat = unsafe { *entry };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let lifetime = ct_lifetime_ns(flow.key.proto, nat.flags);
    // An expired entry, or a new connection on the tuple of one that closed: choose afresh.
    if now.wrapping_sub(nat.last_seen_ns) > lifetime
        || (nat.flags & (NAT_CLOSING | NAT_REPLY) == NAT_CLOSING && flow.opens())
    {
        return Ok(None);
    }
    nat.last_seen_ns = now;
    if flow.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        nat.flags |= NAT_CLOSING;
    }
    // SAFETY: as above; a racing update of the same entry writes an equally valid value.
    unsafe { *entry = nat };
    rewrite(ctx, flow, &nat)?;
    Ok(Some(nat))
}

/// What became of a packet addressed to a frontend.
pub(crate) enum Translation {
    /// Rewritten to this tuple.
    To(NatEntry),
    /// The frontend has no backend; the caller rejects the packet.
    NoBackend,
}

/// Starts tracking a connection to `service` (found by the caller for the packet's destination)
/// and rewrites its first packet: destination to the chosen backend, and with
/// `snat_unless_local`, for a backend on another node, the source too (to the given address and
/// a free port), so replies come back through this node.
#[inline(always)]
pub(crate) fn translate(
    ctx: &TcContext,
    flow: &Flow,
    service: &ServiceEntry,
    snat_unless_local: Option<[u8; 4]>,
) -> Result<Translation, DropReason> {
    // Tagged above 32 bits so a client IP never equals a socket's netns cookie (the socket
    // balancer's client key in the same map).
    let client = (1 << 32) | u64::from(u32::from_ne_bytes(flow.key.src));
    let Some(backend) = services::select(service, client, Some(maglev_flow_hash(&flow.key))) else {
        return Ok(Translation::NoBackend);
    };
    // A backend on this node answers through this node anyway: the client's address is kept.
    let snat = snat_unless_local.filter(|_| network::endpoint(backend.ip).is_none());
    // The reply direction's key must be this flow's alone. Without SNAT it is (backend, client
    // address and port), which a flow from the same client port to another frontend with the
    // same backend would share (two Services over one pod): then the client's port is remapped,
    // as netfilter's NAT does on such a clash, and its address kept.
    let src = snat.unwrap_or(flow.key.src);
    let forward = track(
        &SERVICE_CT,
        ctx,
        flow,
        (src, backend.ip, backend.port),
        snat.is_some(),
    )?;
    Ok(Translation::To(forward))
}

/// Starts tracking a flow in `table` with its source rewritten to `address` and a port of it
/// that no other flow from `address` to the same destination uses (its own if free; one of the
/// node's own sockets counts as a user), and rewrites the packet: the masquerade of a pod's flow
/// leaving the cluster, or of the node's own flow whose port a masqueraded one holds.
#[inline(always)]
pub(crate) fn snat(
    table: &NatTable,
    ctx: &TcContext,
    flow: &Flow,
    address: [u8; 4],
) -> Result<NatEntry, DropReason> {
    track(
        table,
        ctx,
        flow,
        (address, flow.key.dst, flow.key.dport),
        true,
    )
}

/// Starts tracking a flow in `table`, both directions, rewritten to `(src, dst, dport)` with a
/// source port of `src` no other flow to that destination uses ([`snat_port`]; `node_address`:
/// `src` is the node's), and rewrites the packet.
#[inline(always)]
fn track(
    table: &NatTable,
    ctx: &TcContext,
    flow: &Flow,
    (src, dst, dport): ([u8; 4], [u8; 4], u16),
    node_address: bool,
) -> Result<NatEntry, DropReason> {
    let original = flow.key;
    let sport = snat_port(table, ctx, &original, dst, dport, src, node_address)?;
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let forward = NatEntry {
        src,
        dst,
        sport,
        dport,
        flags: 0,
        last_seen_ns: now,
    };
    let reply_key = FlowKey {
        src: dst,
        dst: src,
        sport: dport,
        dport: sport,
        proto: original.proto,
        pad: [0; 3],
    };
    let reply = NatEntry {
        src: original.dst,
        dst: original.src,
        sport: original.dport,
        dport: original.sport,
        flags: NAT_REPLY,
        last_seen_ns: now,
    };
    table
        .insert(reply_key, reply, 0)
        .map_err(|_| DropReason::ConntrackFull)?;
    table
        .insert(original, forward, 0)
        .map_err(|_| DropReason::ConntrackFull)?;
    rewrite(ctx, flow, &forward)?;
    Ok(forward)
}

/// A source port towards `backend` from `address` (the node's for SNAT, else the client's own):
/// the client's own if no other flow from `address` to that backend uses it (its own reply
/// entry, left by an expired forward entry, is no conflict), else a few random ones; reserved by
/// inserting a placeholder reply entry (the caller overwrites it). With `node_address`, a port
/// through which one of the node's own sockets talks to that backend is taken too: its replies
/// would otherwise be translated away from it (netfilter's NAT avoids the same clash through
/// its conntrack table, which holds the node's own connections; this one holds only NATed flows).
#[inline(always)]
fn snat_port(
    table: &NatTable,
    ctx: &TcContext,
    original: &FlowKey,
    backend_ip: [u8; 4],
    backend_port: u16,
    address: [u8; 4],
    node_address: bool,
) -> Result<u16, DropReason> {
    let mut port = original.sport;
    for _ in 0..SNAT_ATTEMPTS {
        let key = FlowKey {
            src: backend_ip,
            dst: address,
            sport: backend_port,
            dport: port,
            proto: original.proto,
            pad: [0; 3],
        };
        let node_uses =
            node_address && original.proto != IPPROTO_ICMP && node_socket_receives(ctx, &key);
        if !node_uses {
            if table
                .insert(key, NatEntry::default(), u64::from(BPF_NOEXIST))
                .is_ok()
            {
                return Ok(port);
            }
            if port == original.sport
                && let Some(existing) = table.get_ptr(key)
            {
                // SAFETY: a pointer into the map value, valid during this run.
                let existing = unsafe { *existing };
                if existing.flags & NAT_REPLY != 0
                    && (existing.src, existing.sport) == (original.dst, original.dport)
                    && (existing.dst, existing.dport) == (original.src, original.sport)
                {
                    return Ok(port);
                }
            }
        }
        // SAFETY: plain helper call.
        let random = unsafe { bpf_get_prandom_u32() } % SNAT_PORT_COUNT;
        port = ((SNAT_PORT_FIRST + random) as u16).to_be();
    }
    Err(DropReason::NoSnatPort)
}

/// Whether a packet carrying `key` (from a backend to the node) would reach a socket of the
/// node's own: a TCP connection (or its TIME_WAIT or request socket) or a UDP socket with that
/// tuple, in the namespace of the device the program runs on (the node's).
#[inline(always)]
fn node_socket_receives(ctx: &TcContext, key: &FlowKey) -> bool {
    let mut tuple = bpf_sock_tuple {
        __bindgen_anon_1: bpf_sock_tuple__bindgen_ty_1 {
            ipv4: bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 {
                saddr: u32::from_ne_bytes(key.src),
                daddr: u32::from_ne_bytes(key.dst),
                sport: key.sport,
                dport: key.dport,
            },
        },
    };
    let size = size_of::<bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1>() as u32;
    let netns = BPF_F_CURRENT_NETNS as u64;
    // SAFETY: helper calls on the program's context with a tuple of the size given; a socket
    // found is released at once.
    unsafe {
        let socket = if key.proto == PROTO_TCP {
            bpf_skc_lookup_tcp(ctx.skb.skb.cast(), &mut tuple, size, netns, 0)
        } else {
            bpf_sk_lookup_udp(ctx.skb.skb.cast(), &mut tuple, size, netns, 0)
        };
        if socket.is_null() {
            return false;
        }
        bpf_sk_release(socket.cast());
    }
    true
}

/// Rewrites the packet's tuple to `to`, fixing the IP and L4 checksums.
#[inline(always)]
fn rewrite(ctx: &TcContext, flow: &Flow, to: &NatEntry) -> Result<(), DropReason> {
    if flow.key.proto == IPPROTO_ICMP {
        return rewrite_icmp_echo(ctx, flow, to);
    }
    let (l4_check, mangled) = if flow.key.proto == PROTO_TCP {
        (flow.l4 + 16, 0)
    } else {
        // A UDP checksum of 0 means "none" and must stay so.
        (flow.l4 + 6, u64::from(BPF_F_MARK_MANGLED_0))
    };
    let malformed = |_| DropReason::Malformed;
    for (offset, old, new) in [
        (IP_SRC, flow.key.src, to.src),
        (IP_DST, flow.key.dst, to.dst),
    ] {
        if old == new {
            continue;
        }
        let (old, new) = (
            u64::from(u32::from_ne_bytes(old)),
            u64::from(u32::from_ne_bytes(new)),
        );
        ctx.l4_csum_replace(
            l4_check,
            old,
            new,
            u64::from(BPF_F_PSEUDO_HDR) | mangled | 4,
        )
        .map_err(malformed)?;
        ctx.l3_csum_replace(IP_CHECK, old, new, 4)
            .map_err(malformed)?;
        ctx.store(offset, &to_bytes(new), 0).map_err(malformed)?;
    }
    for (offset, old, new) in [
        (flow.l4, flow.key.sport, to.sport),
        (flow.l4 + 2, flow.key.dport, to.dport),
    ] {
        if old == new {
            continue;
        }
        ctx.l4_csum_replace(l4_check, u64::from(old), u64::from(new), mangled | 2)
            .map_err(malformed)?;
        ctx.store(offset, &new, 0).map_err(malformed)?;
    }
    Ok(())
}

/// Rewrites an ICMP echo's addresses (the IP checksum; ICMP's has no pseudo-header) and its
/// identifier (a request's source port, a reply's destination port; the other stays 0).
#[inline(always)]
fn rewrite_icmp_echo(ctx: &TcContext, flow: &Flow, to: &NatEntry) -> Result<(), DropReason> {
    let malformed = |_| DropReason::Malformed;
    for (offset, old, new) in [
        (IP_SRC, flow.key.src, to.src),
        (IP_DST, flow.key.dst, to.dst),
    ] {
        if old != new {
            rewrite_address(ctx, offset, old, new)?;
        }
    }
    let (old, new) = if flow.key.sport != to.sport {
        (flow.key.sport, to.sport)
    } else {
        (flow.key.dport, to.dport)
    };
    if old != new {
        // Identifier at 4, checksum at 2.
        ctx.l4_csum_replace(flow.l4 + 2, u64::from(old), u64::from(new), 2)
            .map_err(malformed)?;
        ctx.store(flow.l4 + 4, &new, 0).map_err(malformed)?;
    }
    Ok(())
}

/// Rewrites one IPv4 address of the packet's own header (`offset` = [`IP_SRC`] or [`IP_DST`]
/// relative to the frame) and its header checksum only: for packets whose L4 checksum does not
/// cover it (ICMP, fragments without an L4 header).
#[inline(always)]
pub(crate) fn rewrite_address(
    ctx: &TcContext,
    offset: usize,
    old: [u8; 4],
    new: [u8; 4],
) -> Result<(), DropReason> {
    rewrite_header_address(ctx, IP_CHECK, offset, old, new)
}

/// Rewrites the IPv4 address at `offset` of a header whose checksum is at `check` (the
/// packet's own, or one an ICMP error quotes), keeping that checksum valid.
#[inline(always)]
pub(crate) fn rewrite_header_address(
    ctx: &TcContext,
    check: usize,
    offset: usize,
    old: [u8; 4],
    new: [u8; 4],
) -> Result<(), DropReason> {
    let (old, new) = (
        u64::from(u32::from_ne_bytes(old)),
        u64::from(u32::from_ne_bytes(new)),
    );
    ctx.l3_csum_replace(check, old, new, 4)
        .map_err(|_| DropReason::Malformed)?;
    ctx.store(offset, &to_bytes(new), 0)
        .map_err(|_| DropReason::Malformed)
}

#[inline(always)]
fn to_bytes(raw: u64) -> [u8; 4] {
    (raw as u32).to_ne_bytes()
}

/// The ICMP "port unreachable" answer to a packet, as an IPv4 header + ICMP header + the quoted
/// original header and 8 bytes of its payload; 4-byte aligned for `bpf_csum_diff`.
#[repr(C, align(4))]
struct Unreachable {
    ip: [u8; 20],
    icmp: [u8; 8],
    quoted: [u8; 28],
}

const UNREACHABLE_LEN: u32 = (ETH_HLEN + core::mem::size_of::<Unreachable>()) as u32;

/// Turns a connection attempt to a frontend without backends into the ICMP port unreachable a
/// rejecting firewall would send (what kube-proxy's REJECT rule does), MACs swapped; the caller
/// sends it back where the packet came from. Err for packets that get no answer (TCP segments
/// other than a SYN, IP options), which the caller drops.
#[inline(always)]
pub(crate) fn reject(ctx: &TcContext, flow: &Flow) -> Result<(), DropReason> {
    if !flow.opens() || flow.l4 != ETH_HLEN + 20 {
        return Err(DropReason::NoBackend);
    }
    let malformed = |_| DropReason::Malformed;
    let macs = ctx.load::<[u8; 12]>(0).map_err(malformed)?;
    let mut answer = Unreachable {
        ip: [0; 20],
        icmp: [3, 3, 0, 0, 0, 0, 0, 0],
        quoted: ctx.load::<[u8; 28]>(ETH_HLEN).map_err(malformed)?,
    };
    let total = (core::mem::size_of::<Unreachable>() as u16).to_be_bytes();
    answer.ip[..12].copy_from_slice(&[0x45, 0, total[0], total[1], 0, 0, 0x40, 0, 64, 1, 0, 0]);
    answer.ip[12..16].copy_from_slice(&flow.key.dst);
    answer.ip[16..].copy_from_slice(&flow.key.src);
    let ip_check = checksum(&mut answer.ip);
    answer.ip[10..12].copy_from_slice(&ip_check);
    let icmp_check = {
        let mut icmp = [0u8; 36];
        icmp[..8].copy_from_slice(&answer.icmp);
        icmp[8..].copy_from_slice(&answer.quoted);
        checksum(&mut icmp)
    };
    answer.icmp[2..4].copy_from_slice(&icmp_check);
    // SAFETY: plain helper call on the program's skb.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, UNREACHABLE_LEN, 0) } != 0 {
        return Err(DropReason::NoBackend);
    }
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    ctx.store(0, &swapped, 0).map_err(malformed)?;
    ctx.store(ETH_HLEN, &answer, 0).map_err(malformed)?;
    Ok(())
}

/// The Internet checksum of `bytes` (a multiple of 4 long), ready to store as is.
#[inline(always)]
fn checksum<const N: usize>(bytes: &mut [u8; N]) -> [u8; 2] {
    // SAFETY: `bytes` is a valid stack buffer of N bytes; the helper only reads it.
    let sum = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            bytes.as_mut_ptr().cast(),
            N as u32,
            0,
        )
    } as u64;
    let mut folded = (sum & 0xffff) + (sum >> 16);
    folded = (folded & 0xffff) + (folded >> 16);
    folded = (folded & 0xffff) + (folded >> 16);
    (!(folded as u16)).to_ne_bytes()
}
