//! The pod network: `from_pod` on each pod's host-side veth, `from_overlay` and `to_overlay` on the
//! node's collect-metadata VXLAN device. Every forwarding decision is a map lookup:
//!
//! - to a pod on this node: `bpf_redirect_peer` straight into the destination pod's namespace
//!   (no host routing, no bridge; the frame is left as the pod sent it, as a bridge would);
//! - to a pod or node IP owned by another node (LPM trie of podCIDRs and node IPs): set the VXLAN
//!   tunnel destination and redirect to the VXLAN device;
//! - anything else (this node, the world outside the cluster): hand it to the node's own stack,
//!   which delivers it locally or routes (and masquerades) it out.

use core::mem::{size_of, zeroed};

use aya_ebpf::{
    bindings::{BPF_F_ZERO_CSUM_TX, TC_ACT_OK, TC_ACT_SHOT, bpf_tunnel_key},
    btf_maps::{Array, HashMap, LpmTrie, PerCpuArray, lpm_trie::Key},
    helpers::generated::{
        bpf_redirect, bpf_redirect_peer, bpf_skb_get_tunnel_key, bpf_skb_set_tunnel_key,
    },
    macros::{btf_map, classifier},
    programs::TcContext,
};
use flotilla_common::{
    counters::ETH_P_IP,
    network::{
        DropReason, ENDPOINTS_MAX_ENTRIES, Endpoint, EndpointKey, NodeConfig, TUNNELS_MAX_ENTRIES,
        Tunnel,
    },
};

const ETH_HLEN: usize = 14;
/// Offset of the TTL (followed by the protocol, one 16-bit word for the checksum update).
const IP_TTL: usize = ETH_HLEN + 8;
const IP_CHECK: usize = ETH_HLEN + 10;
const IP_SRC: usize = ETH_HLEN + 12;
const IP_DST: usize = ETH_HLEN + 16;
/// `PACKET_HOST`: the frame is for this host (set on frames handed to the node's stack).
const PACKET_HOST: u32 = 0;
/// Outer TTL of encapsulated packets (the kernel's default IP TTL).
const TUNNEL_TTL: u8 = 64;

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
    let (src, dst) = addresses(ctx)?;
    // A pod may only send from the address it was given (no spoofing another pod's identity).
    // SAFETY: the skb context is valid for the program's whole run.
    let ingress_ifindex = unsafe { (*ctx.skb.skb).ifindex };
    match endpoint(src) {
        Some(own) if own.host_ifindex == ingress_ifindex => {}
        _ => return Err(DropReason::SourceMismatch),
    }
    if let Some(target) = endpoint(dst) {
        // Same node: handed over as a bridge would, unmodified. Every TCP data segment is a
        // clone (TCP keeps the original for retransmission), and writing a clone's header
        // makes the kernel copy it first; rewriting MACs and TTL here cost 22% of same-node
        // TCP_STREAM (18.3 vs 23.3 Gbit/s measured). The peer's stack does not look at the
        // MACs: redirect_peer marks the packet as addressed to it.
        // SAFETY: plain helper call; the kernel checks the ifindex is a veth with a peer.
        return Ok(unsafe { bpf_redirect_peer(target.host_ifindex, 0) } as i32);
    }
    if let Some(tunnel) = tunnel(dst) {
        decrement_ttl(ctx)?;
        set_tunnel(ctx, &config, &tunnel)?;
        // SAFETY: plain helper call; an invalid ifindex makes the kernel drop the packet.
        return Ok(unsafe { bpf_redirect(config.vxlan_ifindex, 0) } as i32);
    }
    Ok(TC_ACT_OK)
}

#[inline(always)]
fn from_overlay_route(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(config) = node_config(ctx) else {
        return Ok(TC_ACT_OK);
    };
    let (src, dst) = addresses(ctx)?;
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
    match tunnel(src) {
        Some(owner) if owner.node_ipv4 == remote => {}
        _ => return Err(DropReason::TunnelSourceMismatch),
    }
    if let Some(target) = endpoint(dst) {
        return deliver(ctx, &target);
    }
    if dst == config.node_ipv4 {
        // The sender's frame carries its own device MAC as destination; the stack only accepts
        // frames addressed to this device.
        ctx.store(0, &config.vxlan_mac, 0)
            .map_err(|_| DropReason::Malformed)?;
        ctx.change_type(PACKET_HOST)
            .map_err(|_| DropReason::Malformed)?;
        return Ok(TC_ACT_OK);
    }
    Err(DropReason::UnknownDestination)
}

#[inline(always)]
fn to_overlay_route(ctx: &TcContext) -> Result<i32, DropReason> {
    let Some(config) = node_config(ctx) else {
        return Ok(TC_ACT_OK);
    };
    let (_, dst) = addresses(ctx)?;
    let Some(tunnel) = tunnel(dst) else {
        return Err(DropReason::NoTunnel);
    };
    set_tunnel(ctx, &config, &tunnel)?;
    Ok(TC_ACT_OK)
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

#[inline(always)]
fn addresses(ctx: &TcContext) -> Result<([u8; 4], [u8; 4]), DropReason> {
    let src = ctx
        .load::<[u8; 4]>(IP_SRC)
        .map_err(|_| DropReason::Malformed)?;
    let dst = ctx
        .load::<[u8; 4]>(IP_DST)
        .map_err(|_| DropReason::Malformed)?;
    Ok((src, dst))
}

#[inline(always)]
fn endpoint(ipv4: [u8; 4]) -> Option<Endpoint> {
    let found = ENDPOINTS.get_ptr(EndpointKey { ipv4 })?;
    // SAFETY: a pointer into the map's value, valid during this program run.
    Some(unsafe { *found })
}

#[inline(always)]
fn tunnel(ipv4: [u8; 4]) -> Option<Tunnel> {
    TUNNELS.get(&Key::new(32, ipv4)).copied()
}

/// Hands a packet that came over the overlay to a pod on this node: as a router would, TTL minus
/// one and the pod's MAC as destination with its gateway's as source (the decapsulated packet is
/// not a clone, so the writes cost no copy); then straight into the pod's namespace.
#[inline(always)]
fn deliver(ctx: &TcContext, target: &Endpoint) -> Result<i32, DropReason> {
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
