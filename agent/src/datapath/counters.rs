//! The per-protocol packet counter on a pod's host-side veth (`from_pod_count`, ingress): attach
//! it as a pinned TCX link, detach it, and read the pinned counter map.

use std::{io, path::Path};

use aya::{
    maps::{Map, MapData, PerCpuHashMap},
    programs::{
        LinkOrder, SchedClassifier, TcAttachType,
        links::{FdLink, LinkError, PinnedLink},
        tc::TcAttachOptions,
    },
    sys::SyscallError,
};
use flotilla_common::counters::{
    FROM_POD_COUNT_PROG, PROTO_COUNTERS_MAP, PacketCounter, ProtocolKey,
};
use serde::Serialize;

use super::{
    DatapathError, loader,
    pins::{Direction, NodePins},
};

/// What [`attach`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachOutcome {
    /// The program was attached to the interface for the first time.
    Attached,
    /// A link pinned by an earlier agent existed; its program was replaced atomically, so no
    /// packet went uncounted or was dropped in between.
    Replaced,
}

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

    let link_path = pins.link(FROM_POD_COUNT_PROG, iface, Direction::Ingress);
    let (link_id, outcome) = match PinnedLink::from_pin(&link_path) {
        Ok(old) => {
            let link =
                FdLink::from(old)
                    .try_into()
                    .map_err(|err: LinkError| DatapathError::Link {
                        path: link_path.clone(),
                        message: format!(
                            "the pinned link is not a TCX link: {}",
                            error_chain(&err)
                        ),
                    })?;
            let id = program.attach_to_link(link).map_err(program_error)?;
            (id, AttachOutcome::Replaced)
        }
        Err(LinkError::SyscallError(SyscallError { io_error, .. }))
            if io_error.kind() == io::ErrorKind::NotFound =>
        {
            if !interface_exists(iface) {
                return Err(DatapathError::NoSuchInterface {
                    iface: iface.to_owned(),
                });
            }
            let id = program
                .attach_with_options(
                    iface,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(program_error)?;
            (id, AttachOutcome::Attached)
        }
        Err(err) => {
            return Err(DatapathError::Link {
                path: link_path,
                message: error_chain(&err),
            });
        }
    };

    let link = program.take_link(link_id).map_err(program_error)?;
    let fd_link: FdLink = link
        .try_into()
        .map_err(|err: LinkError| DatapathError::Link {
            path: link_path.clone(),
            message: format!(
                "the new link is not a TCX link (kernel older than 6.6?): {}",
                error_chain(&err)
            ),
        })?;
    let links_dir = pins.links_dir();
    std::fs::create_dir_all(&links_dir).map_err(|source| DatapathError::Io {
        action: "creating",
        path: links_dir,
        source,
    })?;
    if outcome == AttachOutcome::Replaced {
        // The old pin still refers to the same kernel link, now running the new program.
        return Ok(outcome);
    }
    fd_link.pin(&link_path).map_err(|err| DatapathError::Link {
        path: link_path.clone(),
        message: error_chain(&err),
    })?;
    Ok(outcome)
}

/// Detaches the counter from `iface` by removing its pinned link. Detaching what is not attached
/// succeeds, so callers can clean up without checking first.
pub fn detach(pins: &NodePins, iface: &str) -> Result<(), DatapathError> {
    let link_path = pins.link(FROM_POD_COUNT_PROG, iface, Direction::Ingress);
    match std::fs::remove_file(&link_path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DatapathError::Io {
            action: "removing",
            path: link_path,
            source,
        }),
    }
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

/// `err` and its sources, joined with ": " (aya's errors keep the errno in the source).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// Asks the kernel (not /sys, which shows the netns of whoever mounted it) whether `iface` exists in
/// this thread's network namespace.
fn interface_exists(iface: &str) -> bool {
    nix::net::if_::if_nametoindex(iface).is_ok()
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
