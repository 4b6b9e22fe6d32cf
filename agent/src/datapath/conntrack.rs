//! The pinned NAT tables as the agent touches them: `SERVICE_CT` (the per-packet Service NAT)
//! and `MASQUERADE_CT` (pod traffic leaving the cluster), one layout, one handle type.
//!
//! Service NAT: UDP flows to a backend that left their frontend are forgotten, as kube-proxy
//! clears their conntrack entries. UDP has no close. A client that keeps sending from one port
//! (a resolver, a game, a metrics agent) would otherwise stay on the old entry, refreshed by
//! every datagram, and go to a pod that is gone for as long as it sends. Forgotten, its next
//! datagram picks a backend afresh (Maglev: the one any node picks). TCP connections keep their
//! backend until they close (graceful termination).
//!
//! Masquerade: entries the datapath no longer honours (idle past their lifetime) are deleted, so
//! the node ports they hold are free again; LRU eviction alone would keep them until the table
//! fills.

use std::collections::BTreeSet;

use aya::maps::{HashMap, MapData};
use flotilla_common::{
    masquerade::MASQUERADE_CT_MAP,
    services::{
        BackendEntry, FlowKey, NAT_REPLY, NODEPORT_IP, NatEntry, PROTO_UDP, SERVICE_CT_MAP,
        ServiceKey, ct_lifetime_ns,
    },
};

use super::{
    DatapathError,
    network::{map_error, open_map, removed},
    pins::NodePins,
};

/// A backend that left a UDP frontend: (frontend, backend).
pub type Departure = (ServiceKey, BackendEntry);

/// Whether the tracked direction `key` -> `nat` belongs to a flow from one of `departed`'s
/// frontends to its departed backend. A forward entry is keyed by the flow as the client sent it
/// (to the frontend) and rewrites it to the backend. A reply entry is keyed by the backend's
/// answer and restores the frontend as its source. A NodePort frontend (address 0.0.0.0)
/// matches its port on any of the node's addresses.
pub fn is_departed(key: &FlowKey, nat: &NatEntry, departed: &BTreeSet<Departure>) -> bool {
    if key.proto != PROTO_UDP {
        return false;
    }
    let (frontend, backend) = if nat.flags & NAT_REPLY == 0 {
        ((key.dst, key.dport), (nat.dst, nat.dport))
    } else {
        ((nat.src, nat.sport), (key.src, key.sport))
    };
    let backend = BackendEntry {
        ip: backend.0,
        port: backend.1,
        pad: 0,
    };
    [frontend.0, NODEPORT_IP].into_iter().any(|ip| {
        let frontend = ServiceKey {
            ip,
            port: frontend.1,
            proto: PROTO_UDP,
            pad: 0,
        };
        departed.contains(&(frontend, backend))
    })
}

/// Whether the datapath no longer honours a tracked direction at `now_ns` (`CLOCK_MONOTONIC`,
/// the clock of `bpf_ktime_get_ns`): idle past its lifetime. Placeholders the port allocator
/// left behind (never stamped) count as expired.
pub fn is_expired(key: &FlowKey, nat: &NatEntry, now_ns: u64) -> bool {
    now_ns.saturating_sub(nat.last_seen_ns) > ct_lifetime_ns(key.proto, nat.flags)
}

/// The `CLOCK_MONOTONIC` time in nanoseconds, the clock the datapath stamps entries with.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    u64::try_from(now.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(now.tv_nsec).unwrap_or(0))
}

/// One of the node's pinned NAT tables.
pub struct NatTable {
    map: HashMap<MapData, FlowKey, NatEntry>,
    name: &'static str,
}

impl std::fmt::Debug for NatTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatTable")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NatTable {
    /// Opens the node's Service NAT table.
    pub fn service(pins: &NodePins) -> Result<Self, DatapathError> {
        Self::open(pins, SERVICE_CT_MAP)
    }

    /// Opens the node's masquerade table.
    pub fn masquerade(pins: &NodePins) -> Result<Self, DatapathError> {
        Self::open(pins, MASQUERADE_CT_MAP)
    }

    fn open(pins: &NodePins, name: &'static str) -> Result<Self, DatapathError> {
        Ok(Self {
            map: open_map(pins, name)?,
            name,
        })
    }

    /// Deletes every entry [`is_expired`] at `now_ns`; returns (how many went, how many stay).
    pub fn collect_expired(&mut self, now_ns: u64) -> Result<(usize, usize), DatapathError> {
        self.remove_where(|key, nat| is_expired(key, nat, now_ns))
    }

    /// Deletes both directions of every tracked UDP flow to a departed backend. Returns how many
    /// entries went. One pass over the entries the map holds (it is LRU, so it holds only live
    /// flows), paid only when a UDP backend leaves.
    pub fn forget(&mut self, departed: &BTreeSet<Departure>) -> Result<usize, DatapathError> {
        if departed.is_empty() {
            return Ok(0);
        }
        let (gone, _) = self.remove_where(|key, nat| is_departed(key, nat, departed))?;
        Ok(gone)
    }

    /// Deletes the entries `doomed` picks, in one pass over what the table holds; returns (how
    /// many went, how many stay).
    fn remove_where(
        &mut self,
        doomed: impl Fn(&FlowKey, &NatEntry) -> bool,
    ) -> Result<(usize, usize), DatapathError> {
        let (mut stale, mut kept) = (Vec::new(), 0);
        for entry in self.map.iter() {
            // An entry the datapath evicted while we read is simply not there any more.
            let Ok((key, nat)) = entry else {
                continue;
            };
            if doomed(&key, &nat) {
                stale.push(key);
            } else {
                kept += 1;
            }
        }
        for key in &stale {
            removed(self.map.remove(key), self.name)?;
        }
        Ok((stale.len(), kept))
    }

    /// Every tracked direction (for checks and listings).
    pub fn entries(&self) -> Result<Vec<(FlowKey, NatEntry)>, DatapathError> {
        self.map
            .iter()
            .map(|entry| entry.map_err(map_error(self.name)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: [u8; 4] = [192, 168, 1, 254];
    const NODE: [u8; 4] = [192, 168, 1, 11];
    const VIP: [u8; 4] = [10, 96, 0, 10];
    const POD: [u8; 4] = [10, 244, 1, 5];

    fn flow(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, proto: u8) -> FlowKey {
        FlowKey {
            src,
            dst,
            sport: sport.to_be(),
            dport: dport.to_be(),
            proto,
            pad: [0; 3],
        }
    }

    fn nat(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u32) -> NatEntry {
        NatEntry {
            src,
            dst,
            sport: sport.to_be(),
            dport: dport.to_be(),
            flags,
            last_seen_ns: 0,
        }
    }

    fn departure(ip: [u8; 4], port: u16, backend: [u8; 4], backend_port: u16) -> Departure {
        (
            ServiceKey {
                ip,
                port: port.to_be(),
                proto: PROTO_UDP,
                pad: 0,
            },
            BackendEntry {
                ip: backend,
                port: backend_port.to_be(),
                pad: 0,
            },
        )
    }

    #[test]
    fn both_directions_of_a_departed_backends_udp_flows_match() {
        let departed = BTreeSet::from([departure(VIP, 53, POD, 5353)]);
        // Client -> VIP:53 rewritten to POD:5353, and the answer restored to come from VIP:53.
        let forward = (
            flow(CLIENT, 40_000, VIP, 53, PROTO_UDP),
            nat(CLIENT, 40_000, POD, 5353, 0),
        );
        let reply = (
            flow(POD, 5353, CLIENT, 40_000, PROTO_UDP),
            nat(VIP, 53, CLIENT, 40_000, NAT_REPLY),
        );
        assert!(is_departed(&forward.0, &forward.1, &departed));
        assert!(is_departed(&reply.0, &reply.1, &departed));
        // Another backend of the same frontend, the same backend behind another frontend, and
        // TCP all stay.
        let other = nat(CLIENT, 40_000, [10, 244, 1, 6], 5353, 0);
        assert!(!is_departed(&forward.0, &other, &departed));
        let elsewhere = flow(CLIENT, 40_000, [10, 96, 0, 11], 53, PROTO_UDP);
        assert!(!is_departed(&elsewhere, &forward.1, &departed));
        let tcp = flow(CLIENT, 40_000, VIP, 53, 6);
        assert!(!is_departed(&tcp, &forward.1, &departed));
    }

    #[test]
    fn a_nodeport_matches_on_any_node_address_and_through_snat() {
        let departed = BTreeSet::from([departure(NODEPORT_IP, 30_053, POD, 5353)]);
        // SNATed to the node's address and a port of its own for a backend on another node.
        let forward = (
            flow(CLIENT, 40_000, NODE, 30_053, PROTO_UDP),
            nat(NODE, 41_000, POD, 5353, 0),
        );
        let reply = (
            flow(POD, 5353, NODE, 41_000, PROTO_UDP),
            nat(NODE, 30_053, CLIENT, 40_000, NAT_REPLY),
        );
        assert!(is_departed(&forward.0, &forward.1, &departed));
        assert!(is_departed(&reply.0, &reply.1, &departed));
        let other_port = flow(CLIENT, 40_000, NODE, 30_054, PROTO_UDP);
        assert!(!is_departed(&other_port, &forward.1, &departed));
    }
}
