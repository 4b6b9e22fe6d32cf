//! ARP answers for the LoadBalancer addresses this node announces (L2 mode): the agent of the
//! node elected for an address puts it in `L2_RESPONDER`, and a request for it that arrives on
//! the underlay link is turned into the answer in place and sent back out of that link, so no
//! address is ever added to the node's interfaces (Cilium's L2 responder does the same at XDP).

use aya_ebpf::{
    bindings::TC_ACT_OK, btf_maps::HashMap, helpers::generated::bpf_redirect, macros::btf_map,
    programs::TcContext,
};
use flotilla_common::{
    announce::{L2_RESPONDER_MAX_ENTRIES, L2Responder},
    network::DropReason,
};

use crate::network::ETH_HLEN;

#[btf_map]
static L2_RESPONDER: HashMap<[u8; 4], L2Responder, { L2_RESPONDER_MAX_ENTRIES as usize }> =
    HashMap::new();

/// EtherType of ARP.
pub(crate) const ETH_P_ARP: u16 = 0x0806;
/// ARP's hardware type for Ethernet and protocol type for IPv4, as carried.
const HTYPE_ETHERNET: [u8; 2] = [0, 1];
const PTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const OP_REQUEST: [u8; 2] = [0, 1];
const OP_REPLY: [u8; 2] = [0, 2];

/// An ARP packet for IPv4 over Ethernet (RFC 826), as it follows the Ethernet header.
#[repr(C)]
#[derive(Clone, Copy)]
struct ArpIpv4 {
    htype: [u8; 2],
    ptype: [u8; 2],
    hlen: u8,
    plen: u8,
    op: [u8; 2],
    /// Sender hardware and protocol address.
    sha: [u8; 6],
    spa: [u8; 4],
    /// Target hardware and protocol address.
    tha: [u8; 6],
    tpa: [u8; 4],
}

/// Answers an ARP request for an address announced on the link it came in on; every other ARP
/// packet (replies, gratuitous announcements, requests for other addresses) goes on to the
/// node's stack.
#[inline(always)]
pub(crate) fn answer_arp(ctx: &TcContext) -> Result<i32, DropReason> {
    let Ok(arp) = ctx.load::<ArpIpv4>(ETH_HLEN) else {
        return Ok(TC_ACT_OK);
    };
    // A gratuitous ARP (sender address = target address) announces, it does not ask.
    if arp.htype != HTYPE_ETHERNET
        || arp.ptype != PTYPE_IPV4
        || arp.hlen != 6
        || arp.plen != 4
        || arp.op != OP_REQUEST
        || arp.spa == arp.tpa
    {
        return Ok(TC_ACT_OK);
    }
    let Some(responder) = L2_RESPONDER.get_ptr(arp.tpa) else {
        return Ok(TC_ACT_OK);
    };
    // SAFETY: a pointer into the map's value, valid during this program run.
    let responder = unsafe { *responder };
    // SAFETY: the skb context is valid for the program's run.
    let ingress = unsafe { (*ctx.skb.skb).ifindex };
    if responder.ifindex != ingress {
        return Ok(TC_ACT_OK);
    }
    let mut frame = [0u8; ETH_HLEN + size_of::<ArpIpv4>()];
    frame[..6].copy_from_slice(&arp.sha);
    frame[6..12].copy_from_slice(&responder.mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    let answer = &mut frame[ETH_HLEN..];
    answer[..2].copy_from_slice(&HTYPE_ETHERNET);
    answer[2..4].copy_from_slice(&PTYPE_IPV4);
    answer[4] = 6;
    answer[5] = 4;
    answer[6..8].copy_from_slice(&OP_REPLY);
    answer[8..14].copy_from_slice(&responder.mac);
    answer[14..18].copy_from_slice(&arp.tpa);
    answer[18..24].copy_from_slice(&arp.sha);
    answer[24..28].copy_from_slice(&arp.spa);
    ctx.store(0, &frame, 0).map_err(|_| DropReason::Malformed)?;
    // SAFETY: plain helper call: back out of the link the request came in on.
    Ok(unsafe { bpf_redirect(ingress, 0) } as i32)
}
