//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//! Balancer", NSDI 2016, section 3.4) for the per-packet Service NAT: each Maglev frontend gets a
//! table of M entries (a prime), each naming a backend slot, filled so that every backend owns
//! about M/N entries and a backend leaving frees only its own entries (taken over by the others)
//! while almost every other entry keeps its backend. The programs index the table with a hash of
//! the flow ([`maglev_flow_hash`]), so any node picks the same backend for a flow and removing one
//! of N backends moves about 1/N of the new flows, where random selection moves nearly all.
//!
//! Which frontends use it: the agent's `--lb-algorithm` (`random`, Cilium's and kube-proxy's
//! default, or `maglev`), overridden per Service by the annotation
//! `service.flotilla.io/lb-algorithm` (Cilium's `service.cilium.io/lb-algorithm` is honoured too).
//! The table holds slots, not addresses: written after the slots it names, before the frontend
//! counts them (see `ServiceTable::settle`).
//!
//! [`maglev_flow_hash`]: flotilla_common::services::maglev_flow_hash

use std::{fmt, str::FromStr};

use aya::maps::{Array, HashOfMaps, MapData};
use flotilla_common::services::{
    BackendEntry, MAGLEV_CHUNK, MAGLEV_DEFAULT_TABLE_SIZE, MAGLEV_MAP, MAGLEV_TABLE_SIZES,
    MaglevChunk, mix64,
};
use k8s_openapi::api::core::v1::Service;

use super::{
    DatapathError,
    network::{map_error, open_map, removed},
    pins::NodePins,
    reconcile::MapHandle,
};

/// The annotation that picks a Service's algorithm.
pub const LB_ALGORITHM_ANNOTATION: &str = "service.flotilla.io/lb-algorithm";
/// Cilium's annotation for the same, honoured when Flotilla's is absent.
pub const CILIUM_LB_ALGORITHM_ANNOTATION: &str = "service.cilium.io/lb-algorithm";

/// `BPF_F_INNER_MAP`: an inner array whose size may differ from the programs' template.
const BPF_F_INNER_MAP: u32 = 1 << 12;

/// How new connections to a frontend pick their backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LbAlgorithm {
    /// At random (per socket for the socket balancer, per new flow for the per-packet NAT).
    #[default]
    Random,
    /// By the frontend's Maglev table, per flow, in the per-packet NAT (the socket balancer
    /// stays random).
    Maglev,
}

impl LbAlgorithm {
    /// Every algorithm.
    pub const ALL: [Self; 2] = [Self::Random, Self::Maglev];

    /// The algorithm as spelled on the command line and in the annotation.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Maglev => "maglev",
        }
    }

    /// The algorithm for `service`: its annotation's, else `default`. An annotation naming no
    /// algorithm is logged and ignored.
    pub fn for_service(service: &Service, default: Self) -> Self {
        let annotations = service.metadata.annotations.as_ref();
        let Some(value) = annotations.and_then(|annotations| {
            annotations
                .get(LB_ALGORITHM_ANNOTATION)
                .or_else(|| annotations.get(CILIUM_LB_ALGORITHM_ANNOTATION))
        }) else {
            return default;
        };
        value.parse().unwrap_or_else(|err| {
            tracing::warn!(
                service = %format!(
                    "{}/{}",
                    service.metadata.namespace.as_deref().unwrap_or_default(),
                    service.metadata.name.as_deref().unwrap_or_default()
                ),
                "{err}; using {default}"
            );
            default
        })
    }
}

impl FromStr for LbAlgorithm {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        super::by_name(value, &Self::ALL, Self::name, "load-balancing algorithm")
    }
}

impl fmt::Display for LbAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A Maglev table size (M): one of [`MAGLEV_TABLE_SIZES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TableSize(u32);

impl TableSize {
    /// The entries of a table.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for TableSize {
    fn default() -> Self {
        Self(MAGLEV_DEFAULT_TABLE_SIZE)
    }
}

impl FromStr for TableSize {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let sizes = || MAGLEV_TABLE_SIZES.map(|size| size.to_string()).join(", ");
        let size: u32 = value
            .parse()
            .map_err(|_| format!("{value:?} is not a table size; use one of {}", sizes()))?;
        if MAGLEV_TABLE_SIZES.contains(&size) {
            Ok(Self(size))
        } else {
            Err(format!(
                "{size} is not an allowed Maglev table size (a prime well above 100 times the \
                 backends per Service); use one of {}",
                sizes()
            ))
        }
    }
}

impl fmt::Display for TableSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The node's load-balancing settings (`--lb-algorithm`, `--maglev-table-size`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balancing {
    /// The algorithm of Services without an annotation.
    pub algorithm: LbAlgorithm,
    /// M of every Maglev table.
    pub table_size: TableSize,
}

/// What a frontend's table is made from: its size and the backends by slot. The table is a pure
/// function of it, so this is what the service sync compares and keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableSpec {
    /// M; 0 for a table read back from the map (its contents unknown, so rewritten).
    pub size: u32,
    /// The frontend's backends, slot i at index i.
    pub slots: Vec<BackendEntry>,
}

/// The Maglev table for `slots` (backend slot i = `slots[i]`) with `size` (prime) entries: entry
/// e holds the slot that owns it. Backends take their preferred entries in turn, in the order of
/// their addresses (not their slots), so the table depends on the set of backends alone.
pub fn table(slots: &[BackendEntry], size: u32) -> Vec<u32> {
    let m = u64::from(size);
    let mut table = vec![u32::MAX; size as usize];
    if slots.is_empty() || size < 2 {
        return table;
    }
    let mut order: Vec<(BackendEntry, u32)> = slots
        .iter()
        .enumerate()
        .map(|(slot, backend)| (*backend, slot as u32))
        .collect();
    order.sort_unstable();
    order.dedup_by_key(|(backend, _)| *backend);
    // Each backend's permutation of the entries: offset + j * skip (mod M), skip in 1..M, so
    // with M prime every permutation visits every entry.
    let permutations: Vec<(u64, u64)> = order
        .iter()
        .map(|(backend, _)| {
            let name = (u64::from(u32::from_be_bytes(backend.ip)) << 16)
                | u64::from(u16::from_be(backend.port));
            let offset = mix64(name ^ OFFSET_SEED) % m;
            let skip = mix64(name ^ SKIP_SEED) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; order.len()];
    let mut filled = 0u64;
    'fill: loop {
        for (i, (offset, skip)) in permutations.iter().enumerate() {
            let mut entry = (offset + next[i] * skip) % m;
            while table[entry as usize] != u32::MAX {
                next[i] += 1;
                entry = (offset + next[i] * skip) % m;
            }
            table[entry as usize] = order[i].1;
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    table
}

/// Seeds of the two hashes a backend's permutation comes from (any two distinct constants; every
/// agent must use the same ones, or nodes would disagree).
const OFFSET_SEED: u64 = 0x6d61_676c_6576_6f66;
const SKIP_SEED: u64 = 0x6d61_676c_6576_736b;

/// The node's pinned Maglev map (frontend id -> inner array of the table).
pub struct MaglevMap {
    map: HashOfMaps<MapData, u32, Array<MapData, MaglevChunk>>,
}

impl fmt::Debug for MaglevMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaglevMap").finish_non_exhaustive()
    }
}

impl MaglevMap {
    /// Opens the node's pinned Maglev map.
    pub fn open(pins: &NodePins) -> Result<Self, DatapathError> {
        Ok(Self {
            map: open_map(pins, MAGLEV_MAP)?,
        })
    }

    /// The frontend ids that have a table.
    pub fn ids(&self) -> Result<Vec<u32>, DatapathError> {
        self.map
            .keys()
            .map(|key| key.map_err(map_error(MAGLEV_MAP)))
            .collect()
    }

    /// The table of frontend `id`, entry by entry (None: it has none).
    pub fn read(&self, id: u32, size: u32) -> Result<Option<Vec<u32>>, DatapathError> {
        let inner = match self.map.get(&id, 0) {
            Ok(inner) => inner,
            Err(aya::maps::MapError::KeyNotFound) => return Ok(None),
            Err(err) => return Err(map_error(MAGLEV_MAP)(err)),
        };
        let mut entries = Vec::with_capacity(size as usize);
        for chunk in inner.iter() {
            entries.extend_from_slice(&chunk.map_err(map_error(MAGLEV_MAP))?);
        }
        entries.truncate(size as usize);
        Ok(Some(entries))
    }
}

/// The Maglev map, for the service sync's reconciler: a write builds the table in a new inner
/// array and then swaps it in with one update, so the programs never see half a table.
impl MapHandle<u32, TableSpec> for MaglevMap {
    type Error = DatapathError;

    fn insert(&mut self, id: &u32, spec: &TableSpec) -> Result<(), DatapathError> {
        let entries = table(&spec.slots, spec.size);
        let chunks = entries.len().div_ceil(MAGLEV_CHUNK);
        let mut inner = Array::<MapData, MaglevChunk>::create(chunks as u32, BPF_F_INNER_MAP)
            .map_err(map_error(MAGLEV_MAP))?;
        for (index, part) in entries.chunks(MAGLEV_CHUNK).enumerate() {
            let mut chunk: MaglevChunk = [u32::MAX; MAGLEV_CHUNK];
            chunk[..part.len()].copy_from_slice(part);
            inner
                .set(index as u32, chunk, 0)
                .map_err(map_error(MAGLEV_MAP))?;
        }
        self.map
            .insert(id, &inner, 0)
            .map_err(map_error(MAGLEV_MAP))
    }

    fn remove(&mut self, id: &u32) -> Result<(), DatapathError> {
        removed(self.map.remove(id), MAGLEV_MAP)
    }

    /// The ids only: a table's contents are not read back (size 0 differs from every wanted
    /// spec, so a restarted agent rewrites each wanted table once, identically).
    fn entries(&self) -> Result<Vec<(u32, TableSpec)>, DatapathError> {
        Ok(self
            .ids()?
            .into_iter()
            .map(|id| (id, TableSpec::default()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use flotilla_common::services::{FlowKey, PROTO_TCP, maglev_flow_hash};

    use super::*;

    fn backends(n: u8) -> Vec<BackendEntry> {
        (1..=n)
            .map(|i| BackendEntry {
                ip: [10, 244, 1, i],
                port: 8080u16.to_be(),
                pad: 0,
            })
            .collect()
    }

    fn owners(table: &[u32], slots: &[BackendEntry]) -> Vec<BackendEntry> {
        table.iter().map(|slot| slots[*slot as usize]).collect()
    }

    #[test]
    fn every_backend_gets_its_share_of_the_table() {
        let slots = backends(10);
        let table = table(&slots, MAGLEV_DEFAULT_TABLE_SIZE);
        assert_eq!(table.len(), MAGLEV_DEFAULT_TABLE_SIZE as usize);
        let mut counts = BTreeMap::new();
        for slot in &table {
            *counts.entry(*slot).or_insert(0u32) += 1;
        }
        assert_eq!(counts.len(), 10);
        // Maglev's round-robin fill: shares differ by at most one entry per turn taken.
        let (min, max) = (
            counts.values().min().unwrap(),
            counts.values().max().unwrap(),
        );
        assert!(max - min <= 1, "{counts:?}");
    }

    #[test]
    fn the_table_depends_on_the_backends_not_their_slots() {
        let slots = backends(5);
        let mut reversed = slots.clone();
        reversed.reverse();
        let size = 1_021;
        assert_eq!(
            owners(&table(&slots, size), &slots),
            owners(&table(&reversed, size), &reversed)
        );
    }

    #[test]
    fn removing_one_of_ten_backends_moves_little_more_than_its_own_entries() {
        let slots = backends(10);
        let before = owners(&table(&slots, MAGLEV_DEFAULT_TABLE_SIZE), &slots);
        let survivors: Vec<BackendEntry> = slots[..9].to_vec();
        let after = owners(&table(&survivors, MAGLEV_DEFAULT_TABLE_SIZE), &survivors);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
        let own = before.iter().filter(|b| **b == slots[9]).count();
        // Every entry of the leaver moves; of the others, the paper measures a few percent.
        assert!(moved >= own);
        let fraction = moved as f64 / f64::from(MAGLEV_DEFAULT_TABLE_SIZE);
        assert!((0.10..0.13).contains(&fraction), "moved {fraction}");
    }

    #[test]
    fn flows_spread_evenly_over_the_table() {
        let size = MAGLEV_DEFAULT_TABLE_SIZE;
        let mut hits = vec![0u32; 16];
        for client in 0..64u32 {
            for sport in 0..256u16 {
                let flow = FlowKey {
                    src: [10, 0, (client >> 8) as u8, client as u8],
                    dst: [10, 96, 0, 1],
                    sport: (40_000 + sport).to_be(),
                    dport: 80u16.to_be(),
                    proto: PROTO_TCP,
                    pad: [0; 3],
                };
                let entry = maglev_flow_hash(&flow) % size;
                hits[(entry * 16 / size) as usize] += 1;
            }
        }
        // 16,384 flows into 16 buckets: about 1,024 each.
        assert!(hits.iter().all(|h| (900..1_150).contains(h)), "{hits:?}");
    }

    #[test]
    fn sizes_and_algorithms_parse_from_their_names() {
        assert_eq!("16381".parse::<TableSize>().unwrap().get(), 16_381);
        let err = "16384".parse::<TableSize>().unwrap_err();
        assert!(
            err.contains("16384 is not an allowed Maglev table size"),
            "{err}"
        );
        assert!(err.contains("251, 509"), "{err}");
        assert_eq!("maglev".parse::<LbAlgorithm>(), Ok(LbAlgorithm::Maglev));
        assert!(
            "ring"
                .parse::<LbAlgorithm>()
                .unwrap_err()
                .contains("random, maglev")
        );
    }

    #[test]
    fn annotations_pick_the_algorithm() {
        let service = |annotations: &[(&str, &str)]| Service {
            metadata: kube::api::ObjectMeta {
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        let random = LbAlgorithm::Random;
        assert_eq!(LbAlgorithm::for_service(&service(&[]), random), random);
        let ours = service(&[(LB_ALGORITHM_ANNOTATION, "maglev")]);
        assert_eq!(LbAlgorithm::for_service(&ours, random), LbAlgorithm::Maglev);
        let cilium = service(&[(CILIUM_LB_ALGORITHM_ANNOTATION, "maglev")]);
        assert_eq!(
            LbAlgorithm::for_service(&cilium, random),
            LbAlgorithm::Maglev
        );
        let both = service(&[
            (LB_ALGORITHM_ANNOTATION, "random"),
            (CILIUM_LB_ALGORITHM_ANNOTATION, "maglev"),
        ]);
        assert_eq!(LbAlgorithm::for_service(&both, LbAlgorithm::Maglev), random);
        let bad = service(&[(LB_ALGORITHM_ANNOTATION, "ring")]);
        assert_eq!(
            LbAlgorithm::for_service(&bad, LbAlgorithm::Maglev),
            LbAlgorithm::Maglev
        );
    }
}
