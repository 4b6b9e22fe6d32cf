//! The pod network: `from_pod` on each pod's host-side veth, `from_overlay` and `to_overlay` on the
//! node's collect-metadata VXLAN device. Every forwarding decision is a map lookup:
//!
//! - to a pod on this node: `bpf_redirect_peer` straight into the destination pod's namespace
//!   (no host routing, no bridge; the frame is left as the pod sent it, as a bridge would);
//! - to a pod or node IP owned by another node (LPM trie of podCIDRs and node IPs): set the VXLAN
//!   tunnel destination and redirect to the VXLAN device, or, where the pair routes natively
//!   (the other node shares this node's underlay segment), send it unencapsulated out of the
//!   underlay link with the other node's address as the next hop (`bpf_redirect_neigh`), where
//!   that node's `from_underlay` takes it as its `from_overlay` takes what VXLAN carried;
//! - anything else (this node, the world outside the cluster): hand it to the node's own stack,
//!   which delivers it locally or routes it out, where `to_underlay` masquerades what leaves the
//!   cluster (`masquerade.rs`).
//!
//! Before routing, Service connections are translated per packet (`nat.rs`): on the pod veth for
//! sockets the socket balancer did not see, on the underlay link (`from_underlay`) for NodePorts,
//! and replies wherever they pass.

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{
        BPF_F_ZERO_CSUM_TX, TC_ACT_OK, TC_ACT_SHOT, bpf_redir_neigh, bpf_redir_neigh__bindgen_ty_1,
        bpf_tunnel_key,
    },
    btf_maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    helpers::generated::{
        bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer, bpf_skb_get_tunnel_key,
        bpf_skb_set_tunnel_key,
    },
    macros::{btf_map, classifier},
    programs::TcContext,
};
use flotilla_common::{
    counters::ETH_P_IP,
    network::{
        DropReason, ENDPOINTS_MAX_ENTRIES, Endpoint, EndpointKey, NodeConfig, OVERLAY_PORT,
        TUNNEL_ACCEPT_NATIVE, TUNNEL_NATIVE, TUNNELS_MAX_ENTRIES, Tunnel,
    },
    services::{NAT_REPLY, NODEPORT_IP, PROTO_UDP, SERVICE_LOCAL_ONLY, ServiceEntry},
};

use crate::{
    announce::{self, ETH_P_ARP},
    masquerade,
    nat::{self, Flow, Translation},
    policy::{self, Tuple},
    services,
};

/// Length of the Ethernet header every packet here starts with.
pub(crate) const ETH_HLEN: usize = 14;
/// Offset of the TTL (followed by the protocol, one 16-bit word for the checksum update).
const IP_TTL: usize = ETH_HLEN + 8;
const IP_CHECK: usize = ETH_HLEN + 10;
const IP_DST: usize = ETH_HLEN + 16;
/// `PACKET_HOST`: the frame is for this host (set on frames handed to the node's stack).
const PACKET_HOST: u32 = 0;
/// Outer TTL of encapsulated packets (the kernel's default IP TTL).
const TUNNEL_TTL: u8 = 64;
/// `AF_INET`: the next hop handed to `bpf_redirect_neigh` is an IPv4 address.
const AF_INET: u32 = 2;

#[btf_map]
static ENDPOINTS: HashMap<EndpointKey, Endpoint, { ENDPOINTS_MAX_ENTRIES as usize }> =
    HashMap::new();

#[btf_map]
static TUNNELS: LpmTrie<[u8; 4], Tunnel, { TUNNELS_MAX_ENTRIES as usize }> = LpmTrie::new();

#[btf_map]
static NODE_CONFIG: Array<NodeConfig, 1> = Array::new();

#[btf_map]
static DROPS: PerCpuArray<u64, { DropReason::COUNT as usize }> = PerCpuArray::new();

/// Packets a pod sends (ingress of its host-side veth).
#[classifier]
fn from_pod(ctx: TcContext) -> i32 {
    verdict(from_pod_route(&ctx))
}

/// Packets the node's stack routes to a pod (egress of its host-side veth; what other pods and
/// the overlay send is redirected past it): replies of Service connections translated on the
/// way out whose backend answered through the stack (a backend outside the cluster, reached
/// masqueraded) get their frontend address back; then, like everything handed to a pod, they
/// answer to its ingress policy (clients outside the cluster routed in through the node,
/// replies the node de-masqueraded, which the pod's own connection tracked).
#[classifier]
fn to_pod(ctx: TcContext) -> i32 {
    verdict(to_pod_route(&ctx))
}

#[inline(always)]
fn to_pod_route(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(config) = node_config(ctx) else {
        return Ok(TC_ACT_OK);
    };
    let packet = nat::parse(ctx)?;
    let mut seen = Tuple::of(&packet);
    if let Some(flow) = packet.flow
        && let Some(nat) = nat::tracked(ctx, &flow)?
    {
        seen = seen.rewritten(nat.src, nat.dst, nat.sport, nat.dport);
    }
    if let Some(target) = endpoint(seen.dst) {
        policy::ingress(target.flags, &seen, config.node_ipv4)?;
    }
    Ok(TC_ACT_OK)
}

/// Packets decapsulated from other nodes (ingress of the VXLAN device).
#[classifier]
fn from_overlay(ctx: TcContext) -> i32 {
    verdict(from_overlay_route(&ctx))
}

/// Packets leaving through the VXLAN device, from pods (already redirected by `from_pod`) or
/// from the node's own stack (its route for the cluster CIDR points at the device): each gets the
/// underlay address of the node owning its destination.
#[classifier]
fn to_overlay(ctx: TcContext) -> i32 {
    verdict(to_overlay_route(&ctx))
}

/// Packets the node receives on its underlay link: what a node routing natively with this one
/// sent unencapsulated is taken as `from_overlay` takes what VXLAN carried; connections to a
/// NodePort or to a Service's external address (externalIPs, a LoadBalancer's) are translated
/// and forwarded to a backend (SNATed to the node's address when the backend is on another
/// node); ARP requests for the LoadBalancer addresses the node announces are answered; everything
/// else goes on to the node's stack untouched.
#[classifier]
fn from_underlay(ctx: TcContext) -> i32 {
    if u16::from_be(ctx.skb.protocol() as u16) == ETH_P_ARP {
        return verdict(announce::answer_arp(&ctx));
    }
    verdict(from_underlay_route(&ctx))
}

/// Packets leaving through the node's underlay link: pod traffic leaving the cluster is
/// masqueraded to the node's address (`masquerade.rs`).
#[classifier]
fn to_underlay(ctx: TcContext) -> i32 {
    let Some(config) = node_config(&ctx) else {
        return TC_ACT_OK;
    };
    verdict(masquerade::leaving(&ctx, &config))
}

#[inline(always)]
fn verdict(result: Result<i32, DropReason>) -> i32 {
    match result {
        Ok(action) => action,
        Err(reason) => {
            if let Some(counter) = DROPS.get_ptr_mut(reason as u32) {
                // SAFETY: this CPU's slot of a per-CPU array; nothing else writes it concurrently.
                unsafe { *counter += 1 };
            }
            TC_ACT_SHOT
        }
    }
}

#[inline(always)]
fn from_pod_route(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(config) = node_config(ctx) else {
        return Ok(TC_ACT_OK);
    };
    let packet = nat::parse(ctx)?;
    // A pod may only send from the address it was given (no spoofing another pod's identity).
    // SAFETY: the skb context is valid for the program's whole run.
    let ingress_ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let own = match endpoint(packet.src) {
        Some(own) if own.host_ifindex == ingress_ifindex => own,
        _ => return Err(DropReason::SourceMismatch),
    };
    let flow = packet.flow;
    // The packet as the pod sent it (its connection is tracked by that) and, once translated,
    // as it travels on.
    let seen = Tuple::of(&packet);
    let mut now = seen;
    let mut via_node = false;
    // Egress policy is about the peer after Service translation (the backend, not the VIP);
    // a reply of a translated connection is about whom the pod answers.
    let (mut peer, mut peer_port) = (seen.dst, seen.dport);
    if let Some(flow) = flow {
        // Only a packet that opens a connection can start a Service one; the rest of the pod's
        // traffic pays for one lookup here.
        let translated = match nat::tracked(ctx, &flow)? {
            Some(nat) => Some(nat),
            None if !flow.opens() => None,
            None => match services::frontend(&flow.frontend_key()) {
                Some(service) => match nat::translate(ctx, &flow, &service, None)? {
                    Translation::To(nat) => Some(nat),
                    Translation::NoBackend => {
                        refuse(ctx, &flow, &service)?;
                        // Back into the pod it came from.
                        // SAFETY: plain helper call.
                        return Ok(unsafe { bpf_redirect_peer(ingress_ifindex, 0) } as i32);
                    }
                },
                None => None,
            },
        };
        if let Some(nat) = translated {
            now = seen.rewritten(nat.src, nat.dst, nat.sport, nat.dport);
            if nat.flags & NAT_REPLY == 0 {
                (peer, peer_port) = (nat.dst, nat.dport);
            }
            // A NodePort reply now comes from the node's address, which the node's own stack
            // would take for a spoofed (martian) source.
            via_node = nat.src == config.node_ipv4;
        }
    }
    policy::egress(own.flags, &seen, peer, peer_port, config.node_ipv4)?;
    let dst = now.dst;
    if let Some(target) = endpoint(dst) {
        policy::ingress(target.flags, &now, config.node_ipv4)?;
        // Same node: handed over as a bridge would, unmodified. Every TCP data segment is a
        // clone (TCP keeps the original for retransmission), and writing a clone's header
        // makes the kernel copy it first; rewriting MACs and TTL here cost 22% of same-node
        // TCP_STREAM (18.3 vs 23.3 Gbit/s measured). The peer's stack does not look at the
        // MACs: redirect_peer marks the packet as addressed to it.
        // SAFETY: plain helper call; the kernel checks the ifindex is a veth with a peer.
        return Ok(unsafe { bpf_redirect_peer(target.host_ifindex, 0) } as i32);
    }
    if let Some(tunnel) = tunnel(dst) {
        return to_node(ctx, &config, &tunnel);
    }
    if via_node {
        return Ok(out_of_underlay(&config));
    }
    Ok(TC_ACT_OK)
}

/// Sends a packet out of the node's underlay link, routed and with its neighbour resolved by the
/// kernel (for packets whose source is the node's address).
#[inline(always)]
fn out_of_underlay(config: &NodeConfig) -> i32 {
    // SAFETY: plain helper call; no parameters means the kernel looks the route up itself.
    unsafe { bpf_redirect_neigh(config.underlay_ifindex, core::ptr::null_mut(), 0, 0) as i32 }
}

/// Answers a new connection to a frontend without backends with ICMP port unreachable (or drops
/// it when the frontend's backends are limited to this node by a traffic policy, as kube-proxy
/// does); Ok means the answer is ready to send back.
#[inline(always)]
fn refuse(ctx: &TcContext, flow: &Flow, service: &ServiceEntry) -> Result<(), DropReason> {
    if service.flags & SERVICE_LOCAL_ONLY != 0 {
        return Err(DropReason::NoBackend);
    }
    nat::reject(ctx, flow)
}

#[inline(always)]
fn from_overlay_route(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(config) = node_config(ctx) else {
        return Ok(TC_ACT_OK);
    };
    let packet = nat::parse(ctx)?;
    // SAFETY: zeroed is a valid bpf_tunnel_key (plain integers and unions of integers).
    let mut key: bpf_tunnel_key = unsafe { zeroed() };
    // SAFETY: key is a valid, writable bpf_tunnel_key of the size passed.
    let read = unsafe {
        bpf_skb_get_tunnel_key(ctx.skb.skb, &mut key, size_of::<bpf_tunnel_key>() as u32, 0)
    };
    if read != 0 {
        return Err(DropReason::TunnelKey);
    }
    // SAFETY: the IPv4 member of the union, which the kernel filled for an IPv4 tunnel.
    let remote = unsafe { key.__bindgen_anon_1.remote_ipv4 }.to_be_bytes();
    // Only the node that owns the inner source may send it (no injecting another node's pods).
    match tunnel(packet.src) {
        Some(owner) if owner.node_ipv4 == remote => {}
        _ => return Err(DropReason::TunnelSourceMismatch),
    }
    from_node(ctx, &config, &packet, Arrival::Overlay)
}

/// How a packet from another node reached this one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// Decapsulated by the VXLAN device.
    Overlay,
    /// Unencapsulated on the underlay link, from a node native routing is accepted from.
    Underlay,
}

/// A packet another node sent (its sender checked by the caller): replies of connections this
/// node translated, NodePort connections from pods elsewhere, and what is for a pod here.
/// What is for the node itself goes to its stack; anything else that came over VXLAN is dropped
/// (native packets for other addresses are the stack's to route, as any router's would be).
#[inline(always)]
fn from_node(
    ctx: &TcContext,
    config: &NodeConfig,
    packet: &nat::Packet,
    arrival: Arrival,
) -> Result<i32, DropReason> {
    let dst = packet.dst;
    let seen = Tuple::of(packet);
    if let Some(flow) = packet.flow {
        // Replies of connections this node translated (to a pod here, or SNATed NodePort
        // traffic on its way back to the client).
        if let Some(nat) = nat::tracked(ctx, &flow)? {
            return forward(
                ctx,
                config,
                &seen.rewritten(nat.src, nat.dst, nat.sport, nat.dport),
            );
        }
        // A pod elsewhere connecting to this node's NodePort.
        if dst == config.node_ipv4
            && let Some(action) = external(
                ctx,
                config,
                &flow,
                NODEPORT_IP,
                arrival == Arrival::Underlay,
            )?
        {
            return Ok(action);
        }
    }
    if let Some(target) = endpoint(dst) {
        return deliver(ctx, config, &target, &seen);
    }
    match arrival {
        Arrival::Underlay => Ok(TC_ACT_OK),
        Arrival::Overlay if dst == config.node_ipv4 => {
            // The sender's frame carries its own device MAC as destination; the stack only
            // accepts frames addressed to this device.
            ctx.store(0, &config.vxlan_mac, 0)
                .map_err(|_| DropReason::Malformed)?;
            ctx.change_type(PACKET_HOST)
                .map_err(|_| DropReason::Malformed)?;
            Ok(TC_ACT_OK)
        }
        Arrival::Overlay => Err(DropReason::UnknownDestination),
    }
}

#[inline(always)]
fn from_underlay_route(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(config) = node_config(ctx) else {
        return Ok(TC_ACT_OK);
    };
    let packet = nat::parse(ctx)?;
    if let Some(flow) = packet.flow
        && flow.key.dst == config.node_ipv4
        && flow.key.proto == PROTO_UDP
        && flow.key.dport == OVERLAY_PORT.to_be()
    {
        // The overlay's own packets, for the VXLAN device.
        return Ok(TC_ACT_OK);
    }
    match tunnel(packet.src) {
        Some(owner) if owner.flags & TUNNEL_ACCEPT_NATIVE != 0 => {
            return from_node(ctx, &config, &packet, Arrival::Underlay);
        }
        // Another node's address, unencapsulated, for a pod here: only that node's VXLAN
        // tunnel may carry it.
        Some(_) if endpoint(packet.dst).is_some() => return Err(DropReason::NotNative),
        _ => {}
    }
    // SAFETY: the skb context is valid for the program's run.
    if unsafe { (*ctx.skb.skb).pkt_type } != PACKET_HOST {
        // A frame for another host's MAC (a bridge flooding what it has not learnt) is that
        // host's to answer, as the stack would drop it.
        return Ok(TC_ACT_OK);
    }
    if packet.dst == config.node_ipv4 {
        // Replies of masqueraded flows first: a pod's flow keeps its own source port when free,
        // which may be a NodePort.
        let action = masquerade::arriving(ctx, &config, &packet)?;
        if action != masquerade::NOT_A_REPLY {
            return Ok(action);
        }
    } else if endpoint(packet.dst).is_some() && !config.cluster_cidr.contains(packet.src) {
        masquerade::inbound(ctx, &packet)?;
    }
    let Some(flow) = packet.flow else {
        return Ok(TC_ACT_OK);
    };
    // The node's own address: its NodePorts; any other: a Service's external address.
    let frontend = if flow.key.dst == config.node_ipv4 {
        NODEPORT_IP
    } else {
        flow.key.dst
    };
    Ok(external(ctx, &config, &flow, frontend, true)?.unwrap_or(TC_ACT_OK))
}

/// A packet for a frontend reached from outside the node's pods: one of this node's NodePorts
/// (`frontend` = [`NODEPORT_IP`]; the caller checked the address is the node's) or a Service's
/// external address (`frontend` = the destination): translated, SNATed to the node's address
/// when the backend is on another node, and sent on; None when no such frontend is open on its
/// port (the node's stack gets it). Connections to a frontend without backends are answered
/// with ICMP port unreachable where `may_answer` (the packet came from the underlay, where the
/// answer can go straight back), else dropped.
#[inline(always)]
fn external(
    ctx: &TcContext,
    config: &NodeConfig,
    flow: &Flow,
    frontend: [u8; 4],
    may_answer: bool,
) -> Result<Option<i32>, DropReason> {
    let key = flotilla_common::services::ServiceKey {
        ip: frontend,
        ..flow.frontend_key()
    };
    let Some(service) = services::exact(&key) else {
        return Ok(None);
    };
    let nat = match nat::tracked(ctx, flow)? {
        Some(nat) => nat,
        // A reply to one of the node's own connections may use a port in the NodePort range:
        // only what opens a connection starts a NodePort one.
        None if !flow.opens() => return Ok(None),
        None => match nat::translate(ctx, flow, &service, Some(config.node_ipv4))? {
            Translation::To(nat) => nat,
            Translation::NoBackend if may_answer => {
                refuse(ctx, flow, &service)?;
                // SAFETY: the skb context is valid; back out of the link it came in on.
                let ingress = unsafe { (*ctx.skb.skb).ifindex };
                // SAFETY: plain helper call.
                return Ok(Some(unsafe { bpf_redirect(ingress, 0) } as i32));
            }
            Translation::NoBackend => return Err(DropReason::NoBackend),
        },
    };
    let seen = Tuple::of_flow(flow).rewritten(nat.src, nat.dst, nat.sport, nat.dport);
    forward(ctx, config, &seen).map(Some)
}

/// Sends a translated packet that arrived from outside the node's pods on to its destination
/// (`now`, the tuple after translation): a pod here, a pod or node behind the overlay, or out of
/// the underlay.
#[inline(always)]
pub(crate) fn forward(
    ctx: &TcContext,
    config: &NodeConfig,
    now: &Tuple,
) -> Result<i32, DropReason> {
    let dst = now.dst;
    if let Some(target) = endpoint(dst) {
        return deliver(ctx, config, &target, now);
    }
    if let Some(tunnel) = tunnel(dst) {
        return to_node(ctx, config, &tunnel);
    }
    Ok(out_of_underlay(config))
}

#[inline(always)]
fn to_overlay_route(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(config) = node_config(ctx) else {
        return Ok(TC_ACT_OK);
    };
    let dst = ctx
        .load::<[u8; 4]>(IP_DST)
        .map_err(|_| DropReason::Malformed)?;
    let Some(tunnel) = tunnel(dst) else {
        return Err(DropReason::NoTunnel);
    };
    if tunnel.flags & TUNNEL_NATIVE != 0 {
        return Ok(native(&config, &tunnel));
    }
    set_tunnel(ctx, &config, &tunnel)?;
    Ok(TC_ACT_OK)
}

/// Sends a packet on to the node owning its destination, as a router would (TTL minus one):
/// encapsulated through the VXLAN device, or natively where the pair routes so.
#[inline(always)]
fn to_node(ctx: &TcContext, config: &NodeConfig, tunnel: &Tunnel) -> Result<i32, DropReason> {
    decrement_ttl(ctx)?;
    if tunnel.flags & TUNNEL_NATIVE != 0 {
        return Ok(native(config, tunnel));
    }
    set_tunnel(ctx, config, tunnel)?;
    // SAFETY: plain helper call; an invalid ifindex makes the kernel drop the packet.
    Ok(unsafe { bpf_redirect(config.vxlan_ifindex, 0) } as i32)
}

/// Sends a packet unencapsulated out of the underlay link to the node behind `tunnel`: that
/// node's address is the next hop, its MAC the kernel's neighbour entry (resolved by ARP when
/// missing), whatever the node's own routes say about the pod network.
#[inline(always)]
fn native(config: &NodeConfig, tunnel: &Tunnel) -> i32 {
    let mut next_hop = bpf_redir_neigh {
        nh_family: AF_INET,
        // The address in network order, as it sits in the map.
        __bindgen_anon_1: bpf_redir_neigh__bindgen_ty_1 {
            ipv4_nh: u32::from_ne_bytes(tunnel.node_ipv4),
        },
    };
    // SAFETY: plain helper call with a valid next hop of the size passed.
    unsafe {
        bpf_redirect_neigh(
            config.underlay_ifindex,
            &mut next_hop,
            size_of::<bpf_redir_neigh>() as i32,
            0,
        ) as i32
    }
}

/// The node's settings, or None for non-IPv4 frames and before the agent configured the node.
#[inline(always)]
fn node_config(ctx: &TcContext) -> Option<NodeConfig> {
    if u16::from_be(ctx.skb.protocol() as u16) != ETH_P_IP {
        return None;
    }
    let config = *NODE_CONFIG.get(0)?;
    (config.vxlan_ifindex != 0).then_some(config)
}

/// Whether `ipv4` is this node's address. NodePorts of other nodes are theirs to translate
/// (with their endpoints, for externalTrafficPolicy Local).
#[inline(always)]
pub(crate) fn is_own_address(ipv4: [u8; 4]) -> bool {
    NODE_CONFIG
        .get(0)
        .is_some_and(|config| config.node_ipv4 == ipv4)
}

/// The node's Maglev table size (0 before the agent configured the node).
#[inline(always)]
pub(crate) fn maglev_table_size() -> u32 {
    NODE_CONFIG
        .get(0)
        .map_or(0, |config| config.maglev_table_size)
}

/// Whether `cookie` is the node's own network namespace.
#[inline(always)]
pub(crate) fn is_node_netns(cookie: u64) -> bool {
    NODE_CONFIG
        .get(0)
        .is_some_and(|config| config.netns_cookie != 0 && config.netns_cookie == cookie)
}

#[inline(always)]
pub(crate) fn endpoint(ipv4: [u8; 4]) -> Option<Endpoint> {
    let found = ENDPOINTS.get_ptr(EndpointKey { ipv4 })?;
    // SAFETY: a pointer into the map's value, valid during this program run.
    Some(unsafe { *found })
}

/// The node behind a remote address (another node's pod or the node's own address).
#[inline(always)]
pub(crate) fn tunnel(ipv4: [u8; 4]) -> Option<Tunnel> {
    TUNNELS.get(&Key::new(32, ipv4)).copied()
}

/// Hands a packet that came over the overlay to a pod on this node, once its ingress policy
/// allows `seen` (the packet as delivered): as a router would, TTL minus one and the pod's MAC
/// as destination with its gateway's as source (the decapsulated packet is not a clone, so the
/// writes cost no copy); then straight into the pod's namespace.
#[inline(always)]
fn deliver(
    ctx: &TcContext,
    config: &NodeConfig,
    target: &Endpoint,
    seen: &Tuple,
) -> Result<i32, DropReason> {
    policy::ingress(target.flags, seen, config.node_ipv4)?;
    decrement_ttl(ctx)?;
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&target.pod_mac);
    macs[6..].copy_from_slice(&target.host_mac);
    ctx.store(0, &macs, 0).map_err(|_| DropReason::Malformed)?;
    // SAFETY: plain helper call; the kernel checks the ifindex is a veth with a peer.
    Ok(unsafe { bpf_redirect_peer(target.host_ifindex, 0) } as i32)
}

#[inline(always)]
fn decrement_ttl(ctx: &TcContext) -> Result<(), DropReason> {
    // TTL and protocol as one 16-bit word in memory order: the TTL is the first byte.
    let old = ctx
        .load::<[u8; 2]>(IP_TTL)
        .map_err(|_| DropReason::Malformed)?;
    if old[0] <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    let new = [old[0] - 1, old[1]];
    ctx.store(IP_TTL, &new, 0)
        .map_err(|_| DropReason::Malformed)?;
    ctx.l3_csum_replace(
        IP_CHECK,
        u64::from(u16::from_ne_bytes(old)),
        u64::from(u16::from_ne_bytes(new)),
        2,
    )
    .map_err(|_| DropReason::Malformed)
}

#[inline(always)]
fn set_tunnel(ctx: &TcContext, config: &NodeConfig, tunnel: &Tunnel) -> Result<(), DropReason> {
    // SAFETY: zeroed is a valid bpf_tunnel_key.
    let mut key: bpf_tunnel_key = unsafe { zeroed() };
    key.tunnel_id = config.vni;
    key.__bindgen_anon_1.remote_ipv4 = u32::from_be_bytes(tunnel.node_ipv4);
    key.tunnel_ttl = TUNNEL_TTL;
    // No outer UDP checksum, like the kernel VXLAN default flannel uses; the inner packet keeps
    // its own checksums.
    // SAFETY: key is a valid bpf_tunnel_key of the size passed.
    let result = unsafe {
        bpf_skb_set_tunnel_key(
            ctx.skb.skb,
            &mut key,
            size_of::<bpf_tunnel_key>() as u32,
            u64::from(BPF_F_ZERO_CSUM_TX),
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(DropReason::TunnelKey)
    }
}
