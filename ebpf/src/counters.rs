//! `from_pod_count`: a TC classifier for the host side of a pod's veth that counts every packet
//! the pod sends, per protocol, into a pinned per-CPU hash map. It never changes a verdict.

use aya_ebpf::{
    bindings::{BPF_NOEXIST, TC_ACT_PIPE},
    btf_maps::PerCpuHashMap,
    macros::{btf_map, classifier},
    programs::TcContext,
};
use flotilla_common::counters::{
    ETH_P_IP, ETH_P_IPV6, PROTO_COUNTERS_MAX_ENTRIES, PacketCounter, ProtocolKey,
};

const ETH_HLEN: usize = 14;
/// Offset of the protocol field in an IPv4 header.
const IPV4_PROTO_OFFSET: usize = ETH_HLEN + 9;
/// Offset of the next-header field in an IPv6 header (extension headers are not followed).
const IPV6_NEXT_HEADER_OFFSET: usize = ETH_HLEN + 6;

/// BTF-defined (`.maps`) so libbpf tools such as bpftool can open the object; the agent pins it by
/// name (see `agent/src/datapath/loader.rs`).
#[btf_map]
static PROTO_COUNTERS: PerCpuHashMap<
    ProtocolKey,
    PacketCounter,
    { PROTO_COUNTERS_MAX_ENTRIES as usize },
> = PerCpuHashMap::new();

/// Counts the packet and lets it continue (TC_ACT_PIPE) whatever happens.
#[classifier]
fn from_pod_count(ctx: TcContext) -> i32 {
    count(&ctx);
    TC_ACT_PIPE
}

#[inline(always)]
fn count(ctx: &TcContext) {
    let ethertype = u16::from_be(ctx.skb.protocol() as u16);
    let ip_proto = match ethertype {
        ETH_P_IP => ctx.load::<u8>(IPV4_PROTO_OFFSET).unwrap_or(0),
        ETH_P_IPV6 => ctx.load::<u8>(IPV6_NEXT_HEADER_OFFSET).unwrap_or(0),
        _ => 0,
    };
    let key = ProtocolKey {
        ethertype,
        ip_proto,
        pad: 0,
    };
    let len = u64::from(ctx.len());
    if let Some(counter) = PROTO_COUNTERS.get_ptr_mut(key) {
        // SAFETY: per-CPU value of an existing entry; only this CPU writes it.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len;
        }
        return;
    }
    let first = PacketCounter {
        packets: 1,
        bytes: len,
    };
    // Another CPU may have created the entry since the lookup: then add to it instead.
    if PROTO_COUNTERS
        .insert(key, first, u64::from(BPF_NOEXIST))
        .is_err()
        && let Some(counter) = PROTO_COUNTERS.get_ptr_mut(key)
    {
        // SAFETY: as above.
        unsafe {
            (*counter).packets += 1;
            (*counter).bytes += len;
        }
    }
}
