//! Services in the node's maps: which frontends (ClusterIP:port, NodePort, external IP:port) lead
//! to which endpoints, decided by a pure function over a Service and its EndpointSlices the way
//! kube-proxy decides it (ready endpoints, else serving terminating ones; `Local` traffic
//! policies keep this node's), and applied to the pinned SERVICES/BACKENDS maps one Service at
//! a time, touching only that Service's entries (adding one service to 10,000 writes its own few
//! entries) through the map reconcilers of [`super::reconcile`], which record only the writes
//! the kernel accepted. The socket balancer and the per-packet NAT read the same maps.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Display,
    net::Ipv4Addr,
};

use aya::maps::{HashMap, MapData};
use flotilla_common::services::{
    BACKENDS_MAP, BackendEntry, BackendKey, NODEPORT_IP, PROTO_SCTP, PROTO_UDP, SERVICE_AFFINITY,
    SERVICE_LOCAL_ONLY, SERVICE_MAGLEV, SERVICES_MAP, ServiceEntry, ServiceKey,
};
use k8s_openapi::api::{
    core::v1::Service,
    discovery::v1::{Endpoint, EndpointSlice},
};

use super::{
    DatapathError,
    announce::{Announcements, announcement},
    conntrack::{Departure, NatTable},
    maglev::{Balancing, LbAlgorithm, MaglevMap, TableSize, TableSpec},
    network::{map_error, open_map, removed},
    pins::NodePins,
    protocol_name, protocol_number,
    reconcile::{Changes, MapHandle, Reconciler, Report, Retry, Wake, next_or_due},
};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// ClientIP session affinity's timeout when the Service gives none (kube's default, 3 hours).
const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// One frontend as it should be programmed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontend {
    /// Its backends.
    pub backends: BTreeSet<BackendEntry>,
    /// [`SERVICE_AFFINITY`], [`SERVICE_LOCAL_ONLY`], [`SERVICE_MAGLEV`].
    pub flags: u32,
    /// Session affinity timeout, seconds.
    pub affinity_timeout: u32,
}

/// What an endpoint can be used for: kube-proxy takes ready endpoints, and while a Service has
/// none, the terminating ones that still serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EndpointState {
    /// Ready.
    Ready,
    /// Terminating but still serving.
    Terminating,
}

impl EndpointState {
    /// The endpoint's state; None for one that neither is ready nor serves.
    pub(crate) fn of(endpoint: &Endpoint) -> Option<Self> {
        let conditions = endpoint.conditions.as_ref();
        // Unset ready means ready; unset serving means as ready (the API's documented defaults).
        let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
        let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
        let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
        if ready {
            Some(Self::Ready)
        } else if serving && terminating {
            Some(Self::Terminating)
        } else {
            None
        }
    }
}

/// Endpoints of one service port, split the way kube-proxy's traffic policies need them.
#[derive(Default)]
struct Candidates {
    ready: BTreeSet<BackendEntry>,
    terminating: BTreeSet<BackendEntry>,
    local_ready: BTreeSet<BackendEntry>,
    local_terminating: BTreeSet<BackendEntry>,
}

impl Candidates {
    fn add(&mut self, endpoint: &Endpoint, port: u16, node: &str) {
        let Some(state) = EndpointState::of(endpoint) else {
            return;
        };
        let local = endpoint.node_name.as_deref() == Some(node);
        for address in &endpoint.addresses {
            let Ok(ip) = address.parse::<Ipv4Addr>() else {
                continue;
            };
            let backend = BackendEntry {
                ip: ip.octets(),
                port: port.to_be(),
                pad: 0,
            };
            let (all, here) = match state {
                EndpointState::Ready => (&mut self.ready, &mut self.local_ready),
                EndpointState::Terminating => (&mut self.terminating, &mut self.local_terminating),
            };
            all.insert(backend);
            if local {
                here.insert(backend);
            }
        }
    }

    /// The backends for a traffic policy: ready ones, or while none is ready the terminating
    /// ones that still serve (kube-proxy's ProxyTerminatingEndpoints), of the node only for
    /// `Local`. The flag says a `Local` policy left the frontend empty although the Service has
    /// endpoints elsewhere (dropped, not rejected).
    fn for_policy(&self, local: bool) -> (BTreeSet<BackendEntry>, u32) {
        let pick = |ready: &BTreeSet<BackendEntry>, terminating: &BTreeSet<BackendEntry>| {
            if ready.is_empty() {
                terminating.clone()
            } else {
                ready.clone()
            }
        };
        if !local {
            return (pick(&self.ready, &self.terminating), 0);
        }
        let backends = pick(&self.local_ready, &self.local_terminating);
        let elsewhere = !self.ready.is_empty() || !self.terminating.is_empty();
        let flags = if backends.is_empty() && elsewhere {
            SERVICE_LOCAL_ONLY
        } else {
            0
        };
        (backends, flags)
    }
}

/// The frontends of one Service as seen from `node`: ClusterIP:port (internalTrafficPolicy),
/// NodePort and external IP:port (externalTrafficPolicy), each with its backends, balanced by
/// the Service's algorithm (its annotation's, else `algorithm`).
pub fn frontends(
    service: &Service,
    slices: &[&EndpointSlice],
    node: &str,
    algorithm: LbAlgorithm,
) -> BTreeMap<ServiceKey, Frontend> {
    let mut frontends = BTreeMap::new();
    let Some(spec) = service.spec.as_ref() else {
        return frontends;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return frontends;
    }
    // Headless ("None") services have no ClusterIP frontend (DNS gives their pods out).
    let cluster_ip = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    // Traffic for a LoadBalancer's address is taken like an external IP's (kube-proxy's
    // ipMode VIP; `Proxy` addresses are the load balancer's to forward, not the nodes').
    let external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .chain(load_balancer_ips(service))
        .collect();
    let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let (affinity, affinity_timeout) = if spec.session_affinity.as_deref() == Some("ClientIP") {
        let timeout = spec
            .session_affinity_config
            .as_ref()
            .and_then(|config| config.client_ip.as_ref())
            .and_then(|client_ip| client_ip.timeout_seconds)
            .and_then(|seconds| u32::try_from(seconds).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT);
        (SERVICE_AFFINITY, timeout)
    } else {
        (0, 0)
    };
    let maglev = match LbAlgorithm::for_service(service, algorithm) {
        LbAlgorithm::Maglev => SERVICE_MAGLEV,
        LbAlgorithm::Random => 0,
    };
    for port in spec.ports.iter().flatten() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        // The datapath balances TCP and UDP; SCTP Services get no frontend.
        let Some(proto) = protocol_number(Some(protocol)).filter(|p| *p != PROTO_SCTP) else {
            continue;
        };
        let Ok(service_port) = u16::try_from(port.port) else {
            continue;
        };
        let name = port.name.as_deref().unwrap_or_default();
        let mut candidates = Candidates::default();
        for slice in slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            // The slice's port for this service port: matched by name, as kube-proxy does (the
            // EndpointSlice controller resolved named targetPorts per pod already).
            let Some(target) = slice.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or_default() == name
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            }) else {
                continue;
            };
            let Some(target_port) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for endpoint in &slice.endpoints {
                candidates.add(endpoint, target_port, node);
            }
        }
        let mut add = |ip: [u8; 4], port: u16, local: bool| {
            let (backends, policy_flags) = candidates.for_policy(local);
            frontends.insert(
                ServiceKey {
                    ip,
                    port: port.to_be(),
                    proto,
                    pad: 0,
                },
                Frontend {
                    backends,
                    flags: affinity | policy_flags | maglev,
                    affinity_timeout,
                },
            );
        };
        if let Some(vip) = cluster_ip {
            add(vip.octets(), service_port, internal_local);
        }
        for ip in &external_ips {
            add(ip.octets(), service_port, external_local);
        }
        if node_ports && let Some(node_port) = port.node_port.and_then(|p| u16::try_from(p).ok()) {
            add(NODEPORT_IP, node_port, external_local);
        }
    }
    frontends
}

/// The IPv4 addresses a LoadBalancer Service's status gives it (`ipMode` VIP or unset); none
/// for other types.
pub fn load_balancer_ips(service: &Service) -> Vec<Ipv4Addr> {
    let is_load_balancer = service
        .spec
        .as_ref()
        .is_some_and(|spec| spec.type_.as_deref() == Some("LoadBalancer"));
    if !is_load_balancer {
        return Vec::new();
    }
    service
        .status
        .iter()
        .filter_map(|status| status.load_balancer.as_ref())
        .flat_map(|balancer| balancer.ingress.iter().flatten())
        .filter(|ingress| ingress.ip_mode.as_deref().is_none_or(|mode| mode == "VIP"))
        .filter_map(|ingress| ingress.ip.as_deref()?.parse().ok())
        .collect()
}

/// A frontend as laid out for the maps (or read back from them): its entry and its backends
/// by slot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots {
    /// The frontend's entry (id, count = slots.len(), flags).
    pub entry: ServiceEntry,
    /// Slot i's backend.
    pub slots: Vec<BackendEntry>,
}

/// Frontends with their slots, by frontend.
pub type Programmed = BTreeMap<ServiceKey, Slots>;

/// Backends keep their slot while they stay (session affinity remembers slots, and a change
/// writes only what changed): a leaving backend's slot goes to a new one, else to the last slot's
/// backend, and the table shrinks from the end.
fn arrange(before: &[BackendEntry], wanted: &BTreeSet<BackendEntry>) -> Vec<BackendEntry> {
    let present: BTreeSet<&BackendEntry> = before.iter().collect();
    let mut added = wanted.iter().filter(|b| !present.contains(b)).copied();
    let mut slots: Vec<Option<BackendEntry>> = before
        .iter()
        .map(|backend| {
            if wanted.contains(backend) {
                Some(*backend)
            } else {
                added.next()
            }
        })
        .collect();
    slots.extend(added.map(Some));
    let mut hole = 0;
    while hole < slots.len() {
        if slots[hole].is_none() {
            while let Some(None) = slots.last() {
                slots.pop();
            }
            if hole >= slots.len() {
                break;
            }
            slots[hole] = slots.pop().flatten();
        }
        hole += 1;
    }
    slots.into_iter().flatten().collect()
}

/// How `new` is laid out in the maps given `old` (one Service's frontends as laid out before):
/// frontends keep their ids and backends their slots (`arrange`); `next_id` hands out ids
/// for new frontends.
pub fn layout(
    old: &Programmed,
    new: &BTreeMap<ServiceKey, Frontend>,
    mut next_id: impl FnMut() -> u32,
) -> Programmed {
    new.iter()
        .map(|(key, frontend)| {
            let (id, before) = match old.get(key) {
                Some(slots) => (slots.entry.id, slots.slots.as_slice()),
                None => (next_id(), &[][..]),
            };
            let slots = arrange(before, &frontend.backends);
            let entry = ServiceEntry {
                id,
                count: u32::try_from(slots.len()).unwrap_or(u32::MAX),
                flags: frontend.flags,
                affinity_timeout: frontend.affinity_timeout,
            };
            (*key, Slots { entry, slots })
        })
        .collect()
}

/// The backend slot keys of a laid-out frontend.
fn slot_keys(slots: &Slots) -> impl Iterator<Item = BackendKey> + '_ {
    (0..slots.slots.len()).map(|slot| BackendKey {
        service_id: slots.entry.id,
        slot: slot as u32,
    })
}

/// The Maglev table specs of laid-out frontends that have one (Maglev, with backends).
fn table_specs(layout: &Programmed, size: u32) -> impl Iterator<Item = (u32, TableSpec)> + '_ {
    layout
        .values()
        .filter(|slots| slots.entry.flags & SERVICE_MAGLEV != 0 && !slots.slots.is_empty())
        .map(move |slots| {
            (
                slots.entry.id,
                TableSpec {
                    size,
                    slots: slots.slots.clone(),
                },
            )
        })
}

/// The maps a [`ServiceTable`] writes: frontends, backend slots and Maglev tables.
pub trait ServiceMapHandles<E>:
    MapHandle<ServiceKey, ServiceEntry, Error = E>
    + MapHandle<BackendKey, BackendEntry, Error = E>
    + MapHandle<u32, TableSpec, Error = E>
{
}

impl<M, E> ServiceMapHandles<E> for M where
    M: MapHandle<ServiceKey, ServiceEntry, Error = E>
        + MapHandle<BackendKey, BackendEntry, Error = E>
        + MapHandle<u32, TableSpec, Error = E>
{
}

/// Map keys whose writes or deletions one Service's passes left pending.
#[derive(Clone, Debug, Default)]
struct Unsettled {
    frontends: BTreeSet<ServiceKey>,
    backends: BTreeSet<BackendKey>,
    tables: BTreeSet<u32>,
}

impl Unsettled {
    fn is_empty(&self) -> bool {
        self.frontends.is_empty() && self.backends.is_empty() && self.tables.is_empty()
    }
}

/// The group in [`ServiceTable`]'s unsettled keys for entries of an earlier agent that no
/// Service claimed (Service names are namespace/name, never empty).
const ORPHANED: &str = "";

/// The node's service maps as the sync keeps them: each Service's layout (what it wants
/// written: frontend ids and backend slots) and one reconciler per map, so a Service's change
/// costs its own entries and only the writes the kernel accepted count as programmed.
#[derive(Debug)]
pub struct ServiceTable {
    frontends: Reconciler<ServiceKey, ServiceEntry>,
    backends: Reconciler<BackendKey, BackendEntry>,
    /// Maglev tables by frontend id.
    tables: Reconciler<u32, TableSpec>,
    /// The entries of every Maglev table.
    table_size: u32,
    /// Each Service's frontends as laid out, by namespace/name.
    layouts: BTreeMap<String, Programmed>,
    /// Frontends an earlier agent programmed that no Service has claimed yet.
    orphans: Programmed,
    /// Per Service, the keys still pending, for the retries.
    unsettled: BTreeMap<String, Unsettled>,
    /// Backends that left UDP frontends since the last [`Self::take_departed`].
    departed: BTreeSet<Departure>,
    next_id: u32,
}

impl Default for ServiceTable {
    fn default() -> Self {
        Self {
            frontends: Reconciler::new(),
            backends: Reconciler::new(),
            tables: Reconciler::new(),
            table_size: TableSize::default().get(),
            layouts: BTreeMap::new(),
            orphans: Programmed::new(),
            unsettled: BTreeMap::new(),
            departed: BTreeSet::new(),
            // Id 0 is never handed out.
            next_id: 1,
        }
    }
}

impl ServiceTable {
    /// An empty table whose Maglev tables get `table_size` entries.
    pub fn new(table_size: TableSize) -> Self {
        Self {
            table_size: table_size.get(),
            ..Self::default()
        }
    }

    /// Takes over what the pinned maps hold: the frontends of an earlier agent keep their ids
    /// and slots when a Service wants them again, and nothing is rewritten that is still right
    /// (but the Maglev tables, rewritten once with the same contents: they are not read back).
    /// New Maglev tables get `table_size` entries.
    pub fn adopt<M, E>(maps: &M, table_size: TableSize) -> Result<Self, E>
    where
        M: ServiceMapHandles<E>,
    {
        let frontends = Reconciler::adopt(maps)?;
        let backends: Reconciler<BackendKey, BackendEntry> = Reconciler::adopt(maps)?;
        let tables = Reconciler::adopt(maps)?;
        // A frontend's slots as far as they are all there (a missing one is written again).
        let orphans: Programmed = frontends
            .programmed()
            .iter()
            .map(|(key, entry): (&ServiceKey, &ServiceEntry)| {
                let slots = (0..entry.count)
                    .map_while(|slot| {
                        backends
                            .programmed()
                            .get(&BackendKey {
                                service_id: entry.id,
                                slot,
                            })
                            .copied()
                    })
                    .collect();
                (
                    *key,
                    Slots {
                        entry: *entry,
                        slots,
                    },
                )
            })
            .collect();
        let next_id = orphans
            .values()
            .map(|slots| slots.entry.id + 1)
            .chain(backends.programmed().keys().map(|key| key.service_id + 1))
            .max()
            .unwrap_or(1);
        Ok(Self {
            frontends,
            backends,
            tables,
            table_size: table_size.get(),
            orphans,
            next_id,
            ..Self::default()
        })
    }

    /// Makes the maps hold `wanted` as Service `name`'s frontends (none: the Service is gone),
    /// touching only that Service's entries, in an order that never lets a frontend count a
    /// slot that is not written (see `settle`).
    pub fn program<M, E: Display>(
        &mut self,
        maps: &mut M,
        name: &str,
        wanted: &BTreeMap<ServiceKey, Frontend>,
    ) -> Report
    where
        M: ServiceMapHandles<E>,
    {
        let mut old = self.layouts.remove(name).unwrap_or_default();
        // Frontends left by an earlier agent are adopted by the Service that wants them.
        for key in wanted.keys() {
            if let Some(slots) = self.orphans.remove(key) {
                old.insert(*key, slots);
            }
        }
        let next_id = &mut self.next_id;
        let new = layout(&old, wanted, || {
            let id = *next_id;
            *next_id += 1;
            id
        });
        for (key, slots) in old.iter().filter(|(key, _)| key.proto == PROTO_UDP) {
            let kept: BTreeSet<&BackendEntry> =
                new.get(key).into_iter().flat_map(|s| &s.slots).collect();
            self.departed.extend(
                slots
                    .slots
                    .iter()
                    .filter(|backend| !kept.contains(backend))
                    .map(|backend| (*key, *backend)),
            );
        }
        let mut keys = self.unsettled.remove(name).unwrap_or_default();
        let new_slots: BTreeMap<BackendKey, BackendEntry> = new
            .values()
            .flat_map(|slots| slot_keys(slots).zip(slots.slots.iter().copied()))
            .collect();
        for (key, slots) in &old {
            if !new.contains_key(key) {
                self.frontends.unset(key);
                keys.frontends.insert(*key);
            }
            for slot in slot_keys(slots) {
                if !new_slots.contains_key(&slot) {
                    self.backends.unset(&slot);
                    keys.backends.insert(slot);
                }
            }
        }
        for (key, slots) in &new {
            self.frontends.set(*key, slots.entry);
            keys.frontends.insert(*key);
        }
        for (slot, backend) in new_slots {
            self.backends.set(slot, backend);
            keys.backends.insert(slot);
        }
        let new_tables: BTreeMap<u32, TableSpec> = table_specs(&new, self.table_size).collect();
        for slots in old.values() {
            if !new_tables.contains_key(&slots.entry.id) {
                self.tables.unset(&slots.entry.id);
                keys.tables.insert(slots.entry.id);
            }
        }
        for (id, spec) in new_tables {
            self.tables.set(id, spec);
            keys.tables.insert(id);
        }
        let report = self.settle(maps, name, keys);
        if !new.is_empty() {
            self.layouts.insert(name.to_owned(), new);
        }
        report
    }

    /// After the first complete sync: deletes what an earlier agent programmed and no Service
    /// claimed (its frontends, and backend slots no frontend counts).
    pub fn release_orphans<M, E: Display>(&mut self, maps: &mut M) -> Report
    where
        M: ServiceMapHandles<E>,
    {
        self.orphans.clear();
        let claimed_frontends: BTreeSet<&ServiceKey> =
            self.layouts.values().flat_map(BTreeMap::keys).collect();
        let claimed_backends: BTreeSet<BackendKey> = self
            .layouts
            .values()
            .flat_map(BTreeMap::values)
            .flat_map(slot_keys)
            .collect();
        let claimed_tables: BTreeSet<u32> = self
            .layouts
            .values()
            .flat_map(|layout| table_specs(layout, 0))
            .map(|(id, _)| id)
            .collect();
        let mut keys = self.unsettled.remove(ORPHANED).unwrap_or_default();
        keys.frontends.extend(
            self.frontends
                .desired()
                .keys()
                .filter(|key| !claimed_frontends.contains(key)),
        );
        keys.backends.extend(
            self.backends
                .desired()
                .keys()
                .filter(|key| !claimed_backends.contains(key)),
        );
        keys.tables.extend(
            self.tables
                .desired()
                .keys()
                .filter(|id| !claimed_tables.contains(id)),
        );
        for key in &keys.frontends {
            self.frontends.unset(key);
        }
        for key in &keys.backends {
            self.backends.unset(key);
        }
        for id in &keys.tables {
            self.tables.unset(id);
        }
        self.settle(maps, ORPHANED, keys)
    }

    /// Tries again what earlier passes left pending, Service by Service.
    pub fn retry<M, E: Display>(&mut self, maps: &mut M) -> Vec<(String, Report)>
    where
        M: ServiceMapHandles<E>,
    {
        std::mem::take(&mut self.unsettled)
            .into_iter()
            .map(|(name, keys)| {
                let report = self.settle(maps, &name, keys);
                (name, report)
            })
            .collect()
    }

    /// The backends that left UDP frontends since the last call, whose tracked flows the caller
    /// should forget ([`super::conntrack`]).
    pub fn take_departed(&mut self) -> BTreeSet<Departure> {
        std::mem::take(&mut self.departed)
    }

    /// Whether every Service's entries are programmed as wanted.
    pub fn is_converged(&self) -> bool {
        self.unsettled.is_empty()
    }

    /// The frontends as programmed (written and accepted).
    pub fn programmed(&self) -> &BTreeMap<ServiceKey, ServiceEntry> {
        self.frontends.programmed()
    }

    /// Applies the pending changes of `keys` (one Service's) in an order that never lets a
    /// frontend count a slot that is not written, nor a table name one: backend writes, Maglev
    /// table writes, then the frontends (new counts, flags, deletions), then the deletion of
    /// slots beyond the new counts and of tables no frontend uses. A step runs only if the one
    /// before succeeded; what stays pending is kept under `name` for a retry.
    fn settle<M, E: Display>(&mut self, maps: &mut M, name: &str, mut keys: Unsettled) -> Report
    where
        M: ServiceMapHandles<E>,
    {
        let mut report = Report::default();
        if report.add(
            &self
                .backends
                .apply_keys(maps, Changes::Writes, &keys.backends),
        ) && report.add(&self.tables.apply_keys(maps, Changes::Writes, &keys.tables))
            && report.add(
                &self
                    .frontends
                    .apply_keys(maps, Changes::All, &keys.frontends),
            )
            && report.add(
                &self
                    .backends
                    .apply_keys(maps, Changes::Deletes, &keys.backends),
            )
        {
            report.add(&self.tables.apply_keys(maps, Changes::Deletes, &keys.tables));
        }
        keys.frontends.retain(|key| self.frontends.is_pending(key));
        keys.backends.retain(|key| self.backends.is_pending(key));
        keys.tables.retain(|id| self.tables.is_pending(id));
        if !keys.is_empty() {
            self.unsettled.insert(name.to_owned(), keys);
        }
        report
    }
}

/// One frontend as listed by [`ServiceMaps::rows`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ServiceRow {
    /// `ip:port/PROTO`, `*:port/PROTO` for a NodePort.
    pub frontend: String,
    /// The frontend's id (its backends' key).
    pub id: u32,
    /// `affinity=<s>`, `local-only`, or empty.
    pub flags: Vec<String>,
    /// `ip:port` of every backend, by slot.
    pub backends: Vec<String>,
}

impl ServiceRow {
    fn new(key: &ServiceKey, slots: &Slots) -> Self {
        let ip = if key.ip == NODEPORT_IP {
            "*".to_owned()
        } else {
            Ipv4Addr::from(key.ip).to_string()
        };
        let proto = protocol_name(key.proto);
        let mut flags = Vec::new();
        if slots.entry.flags & SERVICE_AFFINITY != 0 {
            flags.push(format!("affinity={}s", slots.entry.affinity_timeout));
        }
        if slots.entry.flags & SERVICE_MAGLEV != 0 {
            flags.push("maglev".to_owned());
        }
        if slots.entry.flags & SERVICE_LOCAL_ONLY != 0 {
            flags.push("local-only".to_owned());
        }
        Self {
            frontend: format!("{ip}:{}/{proto}", u16::from_be(key.port)),
            id: slots.entry.id,
            flags,
            backends: slots
                .slots
                .iter()
                .map(|b| format!("{}:{}", Ipv4Addr::from(b.ip), u16::from_be(b.port)))
                .collect(),
        }
    }
}

/// The node's pinned service maps.
pub struct ServiceMaps {
    services: HashMap<MapData, ServiceKey, ServiceEntry>,
    backends: HashMap<MapData, BackendKey, BackendEntry>,
    maglev: MaglevMap,
    conntrack: NatTable,
}

impl std::fmt::Debug for ServiceMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceMaps").finish_non_exhaustive()
    }
}

impl ServiceMaps {
    /// Opens the node's pinned service maps.
    pub fn open(pins: &NodePins) -> Result<Self, DatapathError> {
        Ok(Self {
            services: open_map(pins, SERVICES_MAP)?,
            backends: open_map(pins, BACKENDS_MAP)?,
            maglev: MaglevMap::open(pins)?,
            conntrack: NatTable::service(pins)?,
        })
    }

    /// Every frontend with its backends, for listing (`flotilla-agent bpf services`).
    pub fn rows(&self) -> Result<Vec<ServiceRow>, DatapathError> {
        Ok(self
            .programmed()?
            .into_iter()
            .map(|(key, slots)| ServiceRow::new(&key, &slots))
            .collect())
    }

    /// Forgets the tracked UDP flows to backends that left their frontends; how many entries
    /// went.
    pub fn forget_departed(
        &mut self,
        departed: &BTreeSet<Departure>,
    ) -> Result<usize, DatapathError> {
        self.conntrack.forget(departed)
    }

    /// Every frontend in the map with its backends, as programmed (for a restarted agent).
    pub fn programmed(&self) -> Result<Programmed, DatapathError> {
        let mut programmed = Programmed::new();
        for entry in self.services.iter() {
            let (key, service) = entry.map_err(map_error(SERVICES_MAP))?;
            let backends = (0..service.count)
                .filter_map(|slot| {
                    self.backends
                        .get(
                            &BackendKey {
                                service_id: service.id,
                                slot,
                            },
                            0,
                        )
                        .ok()
                })
                .collect();
            programmed.insert(
                key,
                Slots {
                    entry: service,
                    slots: backends,
                },
            );
        }
        Ok(programmed)
    }
}

/// The frontends map, for the service sync's reconciler.
impl MapHandle<ServiceKey, ServiceEntry> for ServiceMaps {
    type Error = DatapathError;

    fn insert(&mut self, key: &ServiceKey, value: &ServiceEntry) -> Result<(), DatapathError> {
        self.services
            .insert(key, value, 0)
            .map_err(map_error(SERVICES_MAP))
    }

    fn remove(&mut self, key: &ServiceKey) -> Result<(), DatapathError> {
        removed(self.services.remove(key), SERVICES_MAP)
    }

    fn entries(&self) -> Result<Vec<(ServiceKey, ServiceEntry)>, DatapathError> {
        self.services
            .iter()
            .map(|entry| entry.map_err(map_error(SERVICES_MAP)))
            .collect()
    }
}

/// The backends map (slots by frontend id), for the service sync's reconciler.
impl MapHandle<BackendKey, BackendEntry> for ServiceMaps {
    type Error = DatapathError;

    fn insert(&mut self, key: &BackendKey, value: &BackendEntry) -> Result<(), DatapathError> {
        self.backends
            .insert(key, value, 0)
            .map_err(map_error(BACKENDS_MAP))
    }

    fn remove(&mut self, key: &BackendKey) -> Result<(), DatapathError> {
        removed(self.backends.remove(key), BACKENDS_MAP)
    }

    fn entries(&self) -> Result<Vec<(BackendKey, BackendEntry)>, DatapathError> {
        self.backends
            .iter()
            .map(|entry| entry.map_err(map_error(BACKENDS_MAP)))
            .collect()
    }
}

/// The Maglev tables, for the service sync's reconciler.
impl MapHandle<u32, TableSpec> for ServiceMaps {
    type Error = DatapathError;

    fn insert(&mut self, id: &u32, spec: &TableSpec) -> Result<(), DatapathError> {
        self.maglev.insert(id, spec)
    }

    fn remove(&mut self, id: &u32) -> Result<(), DatapathError> {
        self.maglev.remove(id)
    }

    fn entries(&self) -> Result<Vec<(u32, TableSpec)>, DatapathError> {
        self.maglev.entries()
    }
}

/// A local copy of one kind of object, fed by a watcher: a relist replaces the copy only once
/// it is complete, and reports what it added, changed and dropped (objects deleted while the
/// watch was down get no Delete event of their own).
pub(crate) struct Mirror<T> {
    /// The objects by namespace/name.
    pub(crate) objects: BTreeMap<String, T>,
    relist: Option<BTreeMap<String, T>>,
    /// Whether a first complete list arrived.
    pub(crate) synced: bool,
}

impl<T: kube::Resource + Clone> Mirror<T> {
    pub(crate) fn new() -> Self {
        Self {
            objects: BTreeMap::new(),
            relist: None,
            synced: false,
        }
    }

    fn key(object: &T) -> String {
        let meta = object.meta();
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        )
    }

    /// Applies one watch event; returns the objects that changed, each with its old and new
    /// version.
    pub(crate) fn apply(
        &mut self,
        event: kube::runtime::watcher::Event<T>,
    ) -> Vec<(String, Option<T>, Option<T>)> {
        use kube::runtime::watcher::Event;
        match event {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                Vec::new()
            }
            Event::InitApply(object) => {
                let key = Self::key(&object);
                self.relist.get_or_insert_default().insert(key, object);
                Vec::new()
            }
            Event::InitDone => {
                self.synced = true;
                let fresh = self.relist.take().unwrap_or_default();
                let old = std::mem::replace(&mut self.objects, fresh);
                let mut changes: Vec<_> = self
                    .objects
                    .iter()
                    .map(|(key, object)| (key.clone(), old.get(key).cloned(), Some(object.clone())))
                    .collect();
                changes.extend(
                    old.into_iter()
                        .filter(|(key, _)| !self.objects.contains_key(key))
                        .map(|(key, object)| (key, Some(object), None)),
                );
                changes
            }
            Event::Apply(object) => {
                let key = Self::key(&object);
                let old = self.objects.insert(key.clone(), object.clone());
                vec![(key, old, Some(object))]
            }
            Event::Delete(object) => {
                let key = Self::key(&object);
                let old = self.objects.remove(&key);
                vec![(key, old, None)]
            }
        }
    }
}

/// The Service (namespace/name) an EndpointSlice belongs to.
fn slice_service(slice: &EndpointSlice) -> Option<String> {
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    Some(format!(
        "{}/{service}",
        slice.metadata.namespace.as_deref().unwrap_or_default()
    ))
}

/// Keeps the service maps equal to the cluster's Services and EndpointSlices as seen from
/// `node` for as long as the task runs; every change reprograms only the Service it concerns.
/// `observe` gets how long each Service's programming took; `announcements` what each
/// LoadBalancer Service asks of the L2 announcers, from the first complete list on.
pub async fn sync(
    client: kube::Client,
    node: String,
    mut maps: ServiceMaps,
    balancing: Balancing,
    observe: impl Fn(std::time::Duration) + Send,
    announcements: tokio::sync::watch::Sender<Announcements>,
) {
    use futures::{StreamExt as _, stream};
    use kube::runtime::{WatchStreamExt as _, watcher};

    #[allow(
        clippy::large_enum_variant,
        reason = "one event at a time lives on the stack of this loop"
    )]
    enum Change {
        Service(Result<watcher::Event<Service>, watcher::Error>),
        Slice(Result<watcher::Event<EndpointSlice>, watcher::Error>),
    }
    let mut table = ServiceTable::adopt(&maps, balancing.table_size).unwrap_or_else(|err| {
        tracing::warn!("reading the service maps: {err}");
        ServiceTable::new(balancing.table_size)
    });
    let mut orphans_released = false;
    let mut retry = Retry::default();
    let mut services = Mirror::<Service>::new();
    let mut slices = Mirror::<EndpointSlice>::new();
    // Service -> its slices' keys, so a change costs the size of its own Service.
    let mut slices_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();

    let service_events = watcher(
        kube::Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(Change::Service);
    let slice_events = watcher(
        kube::Api::<EndpointSlice>::all(client),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(Change::Slice);
    let events = stream::select(service_events, slice_events);
    futures::pin_mut!(events);
    let mut touched: BTreeSet<String> = BTreeSet::new();
    loop {
        let change = match next_or_due(&mut events, retry.due()).await {
            Wake::Event(change) => change,
            Wake::Closed => break,
            Wake::Due => {
                for (name, report) in table.retry(&mut maps) {
                    warn_failures(&name, &report);
                }
                schedule_retry(&mut retry, &table);
                continue;
            }
        };
        match change {
            Change::Service(Ok(event)) => {
                touched.extend(services.apply(event).into_iter().map(|(key, _, _)| key));
            }
            Change::Slice(Ok(event)) => {
                for (key, old, new) in slices.apply(event) {
                    for (slice, present) in [(old, false), (new, true)] {
                        let Some(service) = slice.as_ref().and_then(slice_service) else {
                            continue;
                        };
                        let owned = slices_of.entry(service.clone()).or_default();
                        if present {
                            owned.insert(key.clone());
                        } else {
                            owned.remove(&key);
                            if owned.is_empty() {
                                slices_of.remove(&service);
                            }
                        }
                        touched.insert(service);
                    }
                }
            }
            Change::Service(Err(err)) => {
                tracing::warn!("watching services: {err}");
                continue;
            }
            Change::Slice(Err(err)) => {
                tracing::warn!("watching endpointslices: {err}");
                continue;
            }
        }
        // Until both lists are complete, a Service could look endpointless: wait.
        if !(services.synced && slices.synced) {
            continue;
        }
        let mut asked = announcements.borrow().clone().unwrap_or_default();
        for name in std::mem::take(&mut touched) {
            let started = std::time::Instant::now();
            let (wanted, announced) = match services.objects.get(&name) {
                Some(service) => {
                    let owned: Vec<&EndpointSlice> = slices_of
                        .get(&name)
                        .into_iter()
                        .flatten()
                        .filter_map(|key| slices.objects.get(key))
                        .collect();
                    (
                        frontends(service, &owned, &node, balancing.algorithm),
                        announcement(service, &owned),
                    )
                }
                None => (BTreeMap::new(), None),
            };
            match announced {
                Some(announced) => asked.insert(name.clone(), announced),
                None => asked.remove(&name),
            };
            let report = table.program(&mut maps, &name, &wanted);
            if report.attempted() {
                observe(started.elapsed());
            }
            warn_failures(&name, &report);
        }
        announcements.send_if_modified(|published| {
            let changed = published.as_ref() != Some(&asked);
            *published = Some(asked);
            changed
        });
        let departed = table.take_departed();
        match maps.forget_departed(&departed) {
            Ok(0) => {}
            Ok(forgotten) => tracing::debug!(
                forgotten,
                departed = departed.len(),
                "forgot the tracked UDP flows to backends that left"
            ),
            Err(err) => tracing::warn!("forgetting UDP flows to backends that left: {err}"),
        }
        if !orphans_released {
            // What no Service wants after the first complete sync is gone for good.
            orphans_released = true;
            warn_failures(ORPHANED, &table.release_orphans(&mut maps));
        }
        schedule_retry(&mut retry, &table);
    }
}

/// Logs the failures of one Service's pass, if it had any.
fn warn_failures(name: &str, report: &Report) {
    let name = if name == ORPHANED {
        "(none: left by an earlier agent)"
    } else {
        name
    };
    if let Some(failure) = report.failure_summary() {
        tracing::warn!(service = %name, "programming the service maps: {failure}");
    }
}

/// Schedules a retry if a pass left something pending.
fn schedule_retry(retry: &mut Retry, table: &ServiceTable) {
    if let Some(delay) = retry.after_pass(table.is_converged(), tokio::time::Instant::now()) {
        tracing::warn!("retrying the service maps in {delay:?}");
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        core::v1::{ClientIPConfig, ServicePort, ServiceSpec, SessionAffinityConfig},
        discovery::v1::{EndpointConditions, EndpointPort},
    };

    use super::*;
    use crate::datapath::reconcile::fake::FakeMap;
    use flotilla_common::services::{PROTO_TCP, PROTO_UDP};

    const NODE: &str = "node1";

    fn service(ip: &str, ports: &[(&str, i32, &str)]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .enumerate()
                        .map(|(index, (name, port, proto))| ServicePort {
                            name: Some((*name).into()),
                            port: *port,
                            protocol: Some((*proto).into()),
                            node_port: Some(30_000 + index as i32),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// An endpoint: address, node, (ready, serving, terminating).
    type Ep<'a> = (&'a str, &'a str, (bool, bool, bool));

    fn slice(ports: &[(&str, i32, &str)], endpoints: &[Ep<'_>]) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port, proto)| EndpointPort {
                        name: Some((*name).into()),
                        port: Some(*port),
                        protocol: Some((*proto).into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            endpoints: endpoints
                .iter()
                .map(|(ip, node, (ready, serving, terminating))| Endpoint {
                    addresses: vec![(*ip).into()],
                    node_name: Some((*node).into()),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        serving: Some(*serving),
                        terminating: Some(*terminating),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    const READY: (bool, bool, bool) = (true, true, false);
    const TERMINATING: (bool, bool, bool) = (false, true, true);
    const GONE: (bool, bool, bool) = (false, false, true);

    fn backend(ip: &str, port: u16) -> BackendEntry {
        BackendEntry {
            ip: ip.parse::<Ipv4Addr>().unwrap().octets(),
            port: port.to_be(),
            pad: 0,
        }
    }

    fn key(ip: [u8; 4], port: u16, proto: u8) -> ServiceKey {
        ServiceKey {
            ip,
            port: port.to_be(),
            proto,
            pad: 0,
        }
    }

    fn backends(frontend: &Frontend) -> Vec<BackendEntry> {
        frontend.backends.iter().copied().collect()
    }

    #[test]
    fn ready_endpoints_back_each_port_by_name() {
        let svc = service("10.96.0.20", &[("http", 80, "TCP"), ("dns", 53, "UDP")]);
        let slice = slice(
            &[("http", 8080, "TCP"), ("dns", 9001, "UDP")],
            &[
                ("10.244.0.5", NODE, READY),
                ("10.244.1.5", "node2", READY),
                ("10.244.1.6", "node2", (false, false, false)),
            ],
        );
        let frontends = frontends(&svc, &[&slice], NODE, LbAlgorithm::Random);
        assert_eq!(frontends.len(), 2, "ClusterIP only: {frontends:?}");
        let http = &frontends[&key([10, 96, 0, 20], 80, PROTO_TCP)];
        assert_eq!(
            backends(http),
            vec![backend("10.244.0.5", 8080), backend("10.244.1.5", 8080)]
        );
        assert_eq!(http.flags, 0);
        let headless = service("None", &[("http", 80, "TCP")]);
        assert!(super::frontends(&headless, &[&slice], NODE, LbAlgorithm::Random).is_empty());
    }

    #[test]
    fn terminating_endpoints_serve_only_while_none_is_ready() {
        let svc = service("10.96.0.20", &[("http", 80, "TCP")]);
        let vip = key([10, 96, 0, 20], 80, PROTO_TCP);
        let mixed = slice(
            &[("http", 8080, "TCP")],
            &[
                ("10.244.0.5", NODE, READY),
                ("10.244.0.6", NODE, TERMINATING),
            ],
        );
        assert_eq!(
            backends(&frontends(&svc, &[&mixed], NODE, LbAlgorithm::Random)[&vip]),
            vec![backend("10.244.0.5", 8080)]
        );
        let draining = slice(
            &[("http", 8080, "TCP")],
            &[
                ("10.244.0.6", NODE, TERMINATING),
                ("10.244.0.7", NODE, GONE),
            ],
        );
        assert_eq!(
            backends(&frontends(&svc, &[&draining], NODE, LbAlgorithm::Random)[&vip]),
            vec![backend("10.244.0.6", 8080)]
        );
    }

    #[test]
    fn local_traffic_policies_keep_this_nodes_endpoints() {
        let mut svc = service("10.96.0.20", &[("http", 80, "TCP")]);
        let spec = svc.spec.as_mut().unwrap();
        spec.type_ = Some("NodePort".into());
        spec.external_traffic_policy = Some("Local".into());
        let vip = key([10, 96, 0, 20], 80, PROTO_TCP);
        let node_port = key(NODEPORT_IP, 30_000, PROTO_TCP);
        let elsewhere = slice(&[("http", 8080, "TCP")], &[("10.244.1.5", "node2", READY)]);
        let seen = frontends(&svc, &[&elsewhere], NODE, LbAlgorithm::Random);
        // Cluster-wide for in-cluster traffic, this node's only for NodePort: none here, so
        // the NodePort drops (rather than rejects) as kube-proxy does.
        assert_eq!(backends(&seen[&vip]), vec![backend("10.244.1.5", 8080)]);
        assert!(seen[&node_port].backends.is_empty());
        assert_eq!(seen[&node_port].flags, SERVICE_LOCAL_ONLY);
        let here = slice(
            &[("http", 8080, "TCP")],
            &[("10.244.0.5", NODE, READY), ("10.244.1.5", "node2", READY)],
        );
        svc.spec.as_mut().unwrap().internal_traffic_policy = Some("Local".into());
        let seen = frontends(&svc, &[&here], NODE, LbAlgorithm::Random);
        assert_eq!(backends(&seen[&vip]), vec![backend("10.244.0.5", 8080)]);
        assert_eq!(
            backends(&seen[&node_port]),
            vec![backend("10.244.0.5", 8080)]
        );
        // No endpoints anywhere: rejected, not dropped.
        let seen = frontends(&svc, &[], NODE, LbAlgorithm::Random);
        assert_eq!(seen[&node_port].flags, 0);
    }

    #[test]
    fn load_balancer_addresses_are_frontends_under_the_external_policy() {
        use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceStatus};
        let mut svc = service("10.96.0.20", &[("http", 80, "TCP")]);
        let spec = svc.spec.as_mut().unwrap();
        spec.type_ = Some("LoadBalancer".into());
        spec.external_traffic_policy = Some("Local".into());
        let ingress = |ip: &str, mode: Option<&str>| LoadBalancerIngress {
            ip: Some(ip.into()),
            ip_mode: mode.map(Into::into),
            ..Default::default()
        };
        svc.status = Some(ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![
                    ingress("192.168.78.240", Some("VIP")),
                    ingress("192.168.78.241", None),
                    // The load balancer forwards these itself: not the nodes' to take.
                    ingress("192.168.78.242", Some("Proxy")),
                ]),
            }),
            ..Default::default()
        });
        let here = slice(
            &[("http", 8080, "TCP")],
            &[("10.244.0.5", NODE, READY), ("10.244.1.5", "node2", READY)],
        );
        let seen = frontends(&svc, &[&here], NODE, LbAlgorithm::Random);
        for ip in [[192, 168, 78, 240], [192, 168, 78, 241]] {
            assert_eq!(
                backends(&seen[&key(ip, 80, PROTO_TCP)]),
                vec![backend("10.244.0.5", 8080)]
            );
        }
        assert!(!seen.contains_key(&key([192, 168, 78, 242], 80, PROTO_TCP)));
        // The same status on another type is stale: no frontend.
        svc.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
        let seen = frontends(&svc, &[&here], NODE, LbAlgorithm::Random);
        assert!(!seen.contains_key(&key([192, 168, 78, 240], 80, PROTO_TCP)));
    }

    #[test]
    fn client_ip_affinity_carries_its_timeout() {
        let mut svc = service("10.96.0.20", &[("http", 80, "TCP")]);
        let spec = svc.spec.as_mut().unwrap();
        spec.session_affinity = Some("ClientIP".into());
        let vip = key([10, 96, 0, 20], 80, PROTO_TCP);
        let seen = frontends(&svc, &[], NODE, LbAlgorithm::Random);
        assert_eq!(
            (seen[&vip].flags, seen[&vip].affinity_timeout),
            (SERVICE_AFFINITY, 10_800)
        );
        svc.spec.as_mut().unwrap().session_affinity_config = Some(SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(60),
            }),
        });
        assert_eq!(
            frontends(&svc, &[], NODE, LbAlgorithm::Random)[&vip].affinity_timeout,
            60
        );
    }

    #[test]
    fn backends_keep_their_slots() {
        let (a, b, c, d) = (
            backend("10.0.0.1", 80),
            backend("10.0.0.2", 80),
            backend("10.0.0.3", 80),
            backend("10.0.0.4", 80),
        );
        let set = |items: &[BackendEntry]| items.iter().copied().collect::<BTreeSet<_>>();
        // A leaving backend's slot goes to a newcomer.
        assert_eq!(arrange(&[a, b, c], &set(&[a, c, d])), vec![a, d, c]);
        // Without one, the last slot's backend moves into the hole.
        assert_eq!(arrange(&[a, b, c], &set(&[a, c])), vec![a, c]);
        assert_eq!(arrange(&[a, b, c, d], &set(&[d])), vec![d]);
        assert_eq!(arrange(&[a, b], &set(&[a, b, c])), vec![a, b, c]);
        assert_eq!(arrange(&[a, b], &set(&[])), Vec::<BackendEntry>::new());
    }

    fn frontend(backends: &[BackendEntry]) -> Frontend {
        Frontend {
            backends: backends.iter().copied().collect(),
            ..Default::default()
        }
    }

    /// One accepted operation on the fake service maps.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Op {
        PutBackend(BackendKey, BackendEntry),
        PutService(ServiceKey, ServiceEntry),
        PutTable(u32, Vec<BackendEntry>),
        DeleteBackend(BackendKey),
        DeleteService(ServiceKey),
        DeleteTable(u32),
    }

    /// The two service maps in memory, logging every accepted operation in order.
    #[derive(Default)]
    struct FakeServiceMaps {
        services: FakeMap<ServiceKey, ServiceEntry>,
        backends: FakeMap<BackendKey, BackendEntry>,
        tables: FakeMap<u32, TableSpec>,
        log: Vec<Op>,
    }

    impl FakeServiceMaps {
        /// Operations tried on either map, accepted or not.
        fn attempts(&self) -> usize {
            self.services.attempts + self.backends.attempts
        }
    }

    impl MapHandle<ServiceKey, ServiceEntry> for FakeServiceMaps {
        type Error = String;
        fn insert(&mut self, key: &ServiceKey, value: &ServiceEntry) -> Result<(), String> {
            self.services.insert(key, value)?;
            self.log.push(Op::PutService(*key, *value));
            Ok(())
        }
        fn remove(&mut self, key: &ServiceKey) -> Result<(), String> {
            MapHandle::remove(&mut self.services, key)?;
            self.log.push(Op::DeleteService(*key));
            Ok(())
        }
        fn entries(&self) -> Result<Vec<(ServiceKey, ServiceEntry)>, String> {
            self.services.entries()
        }
    }

    impl MapHandle<BackendKey, BackendEntry> for FakeServiceMaps {
        type Error = String;
        fn insert(&mut self, key: &BackendKey, value: &BackendEntry) -> Result<(), String> {
            self.backends.insert(key, value)?;
            self.log.push(Op::PutBackend(*key, *value));
            Ok(())
        }
        fn remove(&mut self, key: &BackendKey) -> Result<(), String> {
            MapHandle::remove(&mut self.backends, key)?;
            self.log.push(Op::DeleteBackend(*key));
            Ok(())
        }
        fn entries(&self) -> Result<Vec<(BackendKey, BackendEntry)>, String> {
            self.backends.entries()
        }
    }

    impl MapHandle<u32, TableSpec> for FakeServiceMaps {
        type Error = String;
        fn insert(&mut self, id: &u32, spec: &TableSpec) -> Result<(), String> {
            self.tables.insert(id, spec)?;
            self.log.push(Op::PutTable(*id, spec.slots.clone()));
            Ok(())
        }
        fn remove(&mut self, id: &u32) -> Result<(), String> {
            MapHandle::remove(&mut self.tables, id)?;
            self.log.push(Op::DeleteTable(*id));
            Ok(())
        }
        /// Ids only, as [`MaglevMap`] reads them.
        fn entries(&self) -> Result<Vec<(u32, TableSpec)>, String> {
            Ok(self
                .tables
                .entries
                .keys()
                .map(|id| (*id, TableSpec::default()))
                .collect())
        }
    }

    fn slot(service_id: u32, slot: u32) -> BackendKey {
        BackendKey { service_id, slot }
    }

    fn entry(id: u32, count: u32) -> ServiceEntry {
        ServiceEntry {
            id,
            count,
            flags: 0,
            affinity_timeout: 0,
        }
    }

    #[test]
    fn writes_never_expose_unwritten_slots_and_touch_only_changes() {
        let vip = key([10, 96, 0, 20], 80, PROTO_TCP);
        let (one, two) = (backend("10.0.0.1", 80), backend("10.0.0.2", 80));
        let both = BTreeMap::from([(vip, frontend(&[one, two]))]);
        let mut maps = FakeServiceMaps::default();
        let mut table = ServiceTable::default();
        table.program(&mut maps, "default/web", &both);
        // Slots first, then the frontend that counts them.
        assert_eq!(
            maps.log,
            vec![
                Op::PutBackend(slot(1, 0), one),
                Op::PutBackend(slot(1, 1), two),
                Op::PutService(vip, entry(1, 2)),
            ]
        );
        // Unchanged: nothing to write.
        maps.log.clear();
        let report = table.program(&mut maps, "default/web", &both);
        assert!(maps.log.is_empty() && !report.attempted());
        // Shrinking: the survivor moves into the leaver's slot, then the count goes down, then
        // the last slot goes away.
        table.program(
            &mut maps,
            "default/web",
            &BTreeMap::from([(vip, frontend(&[two]))]),
        );
        assert_eq!(
            maps.log,
            vec![
                Op::PutBackend(slot(1, 0), two),
                Op::PutService(vip, entry(1, 1)),
                Op::DeleteBackend(slot(1, 1)),
            ]
        );
        // Deleting: frontend first.
        maps.log.clear();
        table.program(&mut maps, "default/web", &BTreeMap::new());
        assert_eq!(
            maps.log,
            vec![Op::DeleteService(vip), Op::DeleteBackend(slot(1, 0))]
        );
        assert!(maps.services.entries.is_empty() && maps.backends.entries.is_empty());
        assert!(table.is_converged());
    }

    #[test]
    fn a_maglev_table_is_written_after_its_slots_and_before_its_frontend() {
        let vip = key([10, 96, 0, 21], 80, PROTO_TCP);
        let (one, two) = (backend("10.0.0.1", 80), backend("10.0.0.2", 80));
        let maglev = |backends: &[BackendEntry]| Frontend {
            flags: SERVICE_MAGLEV,
            ..frontend(backends)
        };
        let mut maps = FakeServiceMaps::default();
        let mut table = ServiceTable::new(TableSize::default());
        table.program(
            &mut maps,
            "default/web",
            &BTreeMap::from([(vip, maglev(&[one, two]))]),
        );
        let flagged = |count| ServiceEntry {
            flags: SERVICE_MAGLEV,
            ..entry(1, count)
        };
        assert_eq!(
            maps.log,
            vec![
                Op::PutBackend(slot(1, 0), one),
                Op::PutBackend(slot(1, 1), two),
                Op::PutTable(1, vec![one, two]),
                Op::PutService(vip, flagged(2)),
            ]
        );
        assert_eq!(maps.tables.entries[&1].size, 16_381);
        // One backend leaves: the new table names only slot 0 before the count drops.
        maps.log.clear();
        table.program(
            &mut maps,
            "default/web",
            &BTreeMap::from([(vip, maglev(&[two]))]),
        );
        assert_eq!(
            maps.log,
            vec![
                Op::PutBackend(slot(1, 0), two),
                Op::PutTable(1, vec![two]),
                Op::PutService(vip, flagged(1)),
                Op::DeleteBackend(slot(1, 1)),
            ]
        );
        // Back to random: the frontend loses its flag before its table goes.
        maps.log.clear();
        table.program(
            &mut maps,
            "default/web",
            &BTreeMap::from([(vip, frontend(&[two]))]),
        );
        assert_eq!(
            maps.log,
            vec![Op::PutService(vip, entry(1, 1)), Op::DeleteTable(1)]
        );
        // A restarted agent rewrites the tables it finds once, and drops unclaimed ones.
        table.program(
            &mut maps,
            "default/web",
            &BTreeMap::from([(vip, maglev(&[two]))]),
        );
        maps.tables.entries.insert(9, TableSpec::default());
        let mut adopted = ServiceTable::adopt(&maps, TableSize::default()).unwrap();
        maps.log.clear();
        adopted.program(
            &mut maps,
            "default/web",
            &BTreeMap::from([(vip, maglev(&[two]))]),
        );
        assert_eq!(maps.log, vec![Op::PutTable(1, vec![two])]);
        maps.log.clear();
        adopted.release_orphans(&mut maps);
        assert_eq!(maps.log, vec![Op::DeleteTable(9)]);
        assert!(adopted.is_converged());
    }

    #[test]
    fn backends_leaving_udp_frontends_are_reported_once() {
        let dns = key([10, 96, 0, 10], 53, PROTO_UDP);
        let web = key([10, 96, 0, 20], 80, PROTO_TCP);
        let (one, two) = (backend("10.0.0.1", 53), backend("10.0.0.2", 53));
        let mut maps = FakeServiceMaps::default();
        let mut table = ServiceTable::default();
        let both = BTreeMap::from([(dns, frontend(&[one, two])), (web, frontend(&[one, two]))]);
        table.program(&mut maps, "default/dns", &both);
        assert!(table.take_departed().is_empty());
        let only_two = BTreeMap::from([(dns, frontend(&[two])), (web, frontend(&[two]))]);
        table.program(&mut maps, "default/dns", &only_two);
        // TCP connections keep their backend until they close: only the UDP frontend's count.
        assert_eq!(table.take_departed(), BTreeSet::from([(dns, one)]));
        assert!(table.take_departed().is_empty());
        table.program(&mut maps, "default/dns", &BTreeMap::new());
        assert_eq!(table.take_departed(), BTreeSet::from([(dns, two)]));
    }

    #[test]
    fn a_refused_slot_holds_back_its_frontend_until_a_retry_writes_it() {
        let vip = key([10, 96, 0, 20], 80, PROTO_TCP);
        let other = key([10, 96, 0, 21], 80, PROTO_TCP);
        let (one, two) = (backend("10.0.0.1", 80), backend("10.0.0.2", 80));
        let mut maps = FakeServiceMaps::default();
        let mut table = ServiceTable::default();
        maps.backends.failing.insert(slot(1, 1));
        let report = table.program(
            &mut maps,
            "default/web",
            &BTreeMap::from([(vip, frontend(&[one, two]))]),
        );
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        // The frontend would count a slot that is not there: it is not written, and nothing
        // refused or held back counts as programmed.
        assert_eq!(maps.log, vec![Op::PutBackend(slot(1, 0), one)]);
        assert!(table.programmed().is_empty());
        assert!(!table.is_converged());
        // Another Service is not held back by it.
        let report = table.program(
            &mut maps,
            "default/other",
            &BTreeMap::from([(other, frontend(&[one]))]),
        );
        assert!(report.failures.is_empty());
        assert_eq!(table.programmed().keys().collect::<Vec<_>>(), vec![&other]);
        // A retry while the map still refuses changes nothing.
        maps.log.clear();
        let retried = table.retry(&mut maps);
        assert_eq!(retried.len(), 1);
        assert_eq!(retried[0].0, "default/web");
        assert!(maps.log.is_empty() && !table.is_converged());
        // Once the map accepts it, the retry writes what was missing, and only that.
        maps.backends.failing.clear();
        let retried = table.retry(&mut maps);
        assert!(retried[0].1.failures.is_empty());
        assert_eq!(
            maps.log,
            vec![
                Op::PutBackend(slot(1, 1), two),
                Op::PutService(vip, entry(1, 2)),
            ]
        );
        assert!(table.is_converged());
        assert!(table.retry(&mut maps).is_empty());
    }

    #[test]
    fn a_restarted_agent_adopts_the_pinned_maps_and_rewrites_nothing_still_right() {
        let (web, gone, new) = (
            key([10, 96, 0, 20], 80, PROTO_TCP),
            key([10, 96, 0, 21], 80, PROTO_TCP),
            key([10, 96, 0, 22], 80, PROTO_TCP),
        );
        let (one, two) = (backend("10.0.0.1", 80), backend("10.0.0.2", 80));
        let both = BTreeMap::from([(web, frontend(&[one, two]))]);
        let mut maps = FakeServiceMaps::default();
        let mut before = ServiceTable::default();
        before.program(&mut maps, "default/web", &both);
        before.program(
            &mut maps,
            "default/gone",
            &BTreeMap::from([(gone, frontend(&[one]))]),
        );
        // A slot beyond its frontend's count, as a crash between two writes leaves it.
        maps.backends.entries.insert(slot(1, 5), one);
        maps.log.clear();

        let mut table = ServiceTable::adopt(&maps, TableSize::default()).unwrap();
        let report = table.program(&mut maps, "default/web", &both);
        assert!(!report.attempted() && maps.log.is_empty());
        // After the first complete sync, what no Service claimed goes, frontends first.
        table.release_orphans(&mut maps);
        assert_eq!(
            maps.log,
            vec![
                Op::DeleteService(gone),
                Op::DeleteBackend(slot(1, 5)),
                Op::DeleteBackend(slot(2, 0)),
            ]
        );
        // New frontends get ids no earlier one had.
        table.program(
            &mut maps,
            "default/new",
            &BTreeMap::from([(new, frontend(&[two]))]),
        );
        assert_eq!(table.programmed()[&new].id, 3);
        assert!(table.is_converged());
    }

    #[test]
    fn a_new_service_among_ten_thousand_writes_only_its_own_entries() {
        // The 10,000 are programmed through the same table (and its reconcilers) the sync uses.
        let mut maps = FakeServiceMaps::default();
        let mut table = ServiceTable::default();
        for index in 0..10_000u32 {
            let [_, _, high, low] = index.to_be_bytes();
            let wanted = BTreeMap::from([(
                key([10, 96, high, low], 80, PROTO_TCP),
                frontend(&[backend("10.244.0.5", 8080)]),
            )]);
            let report = table.program(&mut maps, &format!("default/svc-{index}"), &wanted);
            assert!(report.failures.is_empty());
        }
        assert_eq!(table.programmed().len(), 10_000);
        assert_eq!(maps.services.entries.len(), 10_000);
        assert_eq!(maps.backends.entries.len(), 10_000);
        let attempts = maps.attempts();
        maps.log.clear();

        let vip = key([10, 97, 0, 1], 80, PROTO_TCP);
        let (six, seven) = (backend("10.244.0.6", 8080), backend("10.244.0.7", 8080));
        let wanted = BTreeMap::from([(vip, frontend(&[six, seven]))]);
        let report = table.program(&mut maps, "default/svc-new", &wanted);
        let id = table.programmed()[&vip].id;
        assert_eq!(
            maps.log,
            vec![
                Op::PutBackend(slot(id, 0), six),
                Op::PutBackend(slot(id, 1), seven),
                Op::PutService(vip, entry(id, 2)),
            ],
            "two slots and the frontend"
        );
        assert_eq!(report.changed, 3);
        assert_eq!(maps.attempts() - attempts, 3, "no other entry was touched");
        assert_eq!(table.programmed().len(), 10_001);
        assert!(table.is_converged());
    }
}
