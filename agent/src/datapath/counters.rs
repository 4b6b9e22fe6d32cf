//! The per-protocol packet counter on a pod's host-side veth (`from_pod_count`, ingress): attach
//! it as a pinned TCX link, detach it, and read the pinned counter map.

use std::path::Path;

use aya::{
    maps::{Map, MapData, PerCpuHashMap},
    programs::SchedClassifier,
};
use flotilla_common::counters::{
    FROM_POD_COUNT_PROG, PROTO_COUNTERS_MAP, PacketCounter, ProtocolKey,
};
use serde::Serialize;

pub use super::attach::AttachOutcome;
use super::{
    DatapathError,
    attach::{attach_pinned, detach_pinned},
    loader,
    pins::{Direction, NodePins},
};

/// Attaches `from_pod_count` to the ingress of `iface` (in the caller's network namespace) and pins
/// the link, so the counter keeps running after this process exits.
pub fn attach(pins: &NodePins, iface: &str) -> Result<AttachOutcome, DatapathError> {
    let mut ebpf = loader::load(pins)?;
    let program: &mut SchedClassifier = ebpf
        .program_mut(FROM_POD_COUNT_PROG)
        .ok_or(DatapathError::MissingObject {
            kind: "program",
            name: FROM_POD_COUNT_PROG,
        })?
        .try_into()
        .map_err(program_error)?;
    program.load().map_err(program_error)?;
    attach_pinned(
        program,
        FROM_POD_COUNT_PROG,
        pins,
        iface,
        Direction::Ingress,
    )
}

/// Detaches the counter from `iface` by removing its pinned link. Detaching what is not attached
/// succeeds, so callers can clean up without checking first.
pub fn detach(pins: &NodePins, iface: &str) -> Result<(), DatapathError> {
    detach_pinned(pins, FROM_POD_COUNT_PROG, iface, Direction::Ingress)
}

/// One row of the counter map, summed over all CPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProtocolCount {
    /// Layer-3 protocol name ("ipv4", "ipv6", "arp", "other").
    pub l3: &'static str,
    /// Layer-4 protocol name ("tcp", "udp", "icmp", ...; "-" for non-IP).
    pub l4: &'static str,
    /// EtherType (host order).
    pub ethertype: u16,
    /// IP protocol number (0 for non-IP).
    pub ip_proto: u8,
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted.
    pub bytes: u64,
}

/// Reads the node's pinned counter map: one row per protocol seen, sorted by protocol.
pub fn read(pins: &NodePins) -> Result<Vec<ProtocolCount>, DatapathError> {
    let path = pins.map(PROTO_COUNTERS_MAP);
    let per_cpu = read_pinned_map(&path)?;
    Ok(sum_per_cpu(per_cpu))
}

fn read_pinned_map(path: &Path) -> Result<Vec<(ProtocolKey, Vec<PacketCounter>)>, DatapathError> {
    let map_error = |source| DatapathError::Map {
        map: path.display().to_string(),
        source,
    };
    if !path.exists() {
        return Err(DatapathError::NotPinned {
            path: path.to_owned(),
            what: "the protocol counter map; attach the counter first (`flotilla-agent datapath attach-counter`)",
        });
    }
    let data = MapData::from_pin(path).map_err(map_error)?;
    let map = Map::from_map_data(data).map_err(map_error)?;
    let counters: PerCpuHashMap<MapData, ProtocolKey, PacketCounter> =
        map.try_into().map_err(map_error)?;
    counters
        .iter()
        .map(|entry| {
            entry
                .map(|(key, values)| (key, values.iter().copied().collect()))
                .map_err(map_error)
        })
        .collect()
}

/// Sums the per-CPU values of each key and sorts the rows by protocol.
pub fn sum_per_cpu(entries: Vec<(ProtocolKey, Vec<PacketCounter>)>) -> Vec<ProtocolCount> {
    let mut rows: Vec<(ProtocolKey, PacketCounter)> = entries
        .into_iter()
        .map(|(key, per_cpu)| {
            let total = per_cpu
                .into_iter()
                .fold(PacketCounter::default(), PacketCounter::add);
            (key, total)
        })
        .collect();
    rows.sort_by_key(|(key, _)| *key);
    rows.into_iter()
        .map(|(key, total)| {
            let (l3, l4) = key.describe();
            ProtocolCount {
                l3,
                l4,
                ethertype: key.ethertype,
                ip_proto: key.ip_proto,
                packets: total.packets,
                bytes: total.bytes,
            }
        })
        .collect()
}

fn program_error(source: aya::programs::ProgramError) -> DatapathError {
    DatapathError::Program {
        program: FROM_POD_COUNT_PROG,
        source,
    }
}

#[cfg(test)]
mod tests {
    use flotilla_common::counters::{ETH_P_ARP, IPPROTO_TCP, IPPROTO_UDP};

    use super::*;

    fn counter(packets: u64, bytes: u64) -> PacketCounter {
        PacketCounter { packets, bytes }
    }

    #[test]
    fn per_cpu_values_are_summed_and_rows_sorted() {
        let arp = ProtocolKey {
            ethertype: ETH_P_ARP,
            ip_proto: 0,
            pad: 0,
        };
        let rows = sum_per_cpu(vec![
            (
                ProtocolKey::ipv4(IPPROTO_UDP),
                vec![counter(1, 100), counter(2, 200)],
            ),
            (arp, vec![counter(0, 0), counter(3, 126)]),
            (ProtocolKey::ipv4(IPPROTO_TCP), vec![counter(5, 500)]),
        ]);
        let summary: Vec<_> = rows
            .iter()
            .map(|row| (row.l3, row.l4, row.packets, row.bytes))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("ipv4", "tcp", 5, 500),
                ("ipv4", "udp", 3, 300),
                ("arp", "-", 3, 126),
            ]
        );
    }
}
