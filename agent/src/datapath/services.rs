//! ClusterIP services at the socket: which (ClusterIP, port, protocol) frontends lead to which
//! ready endpoints, decided by a pure function over a Service and its EndpointSlices, and
//! applied to the pinned SERVICES/BACKENDS maps one Service at a time, touching only that
//! Service's entries (adding one service to 10,000 writes its own few entries).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use aya::maps::{HashMap, MapData};
use flotilla_common::services::{
    BACKENDS_MAP, BackendEntry, BackendKey, PROTO_TCP, PROTO_UDP, SERVICES_MAP, ServiceEntry,
    ServiceKey,
};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

use super::{
    DatapathError,
    network::{map_error, open_map},
    pins::NodePins,
};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The frontends of one Service and their ready backends (sorted, deduplicated).
pub fn frontends(
    service: &Service,
    slices: &[&EndpointSlice],
) -> BTreeMap<ServiceKey, Vec<BackendEntry>> {
    let mut frontends = BTreeMap::new();
    let Some(spec) = service.spec.as_ref() else {
        return frontends;
    };
    let Some(vip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        // Headless ("None") and ExternalName services have no frontend.
        return frontends;
    };
    for port in spec.ports.iter().flatten() {
        let proto = match port.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => PROTO_TCP,
            "UDP" => PROTO_UDP,
            _ => continue,
        };
        let Ok(service_port) = u16::try_from(port.port) else {
            continue;
        };
        let name = port.name.as_deref().unwrap_or_default();
        let mut backends = BTreeSet::new();
        for slice in slices {
            if slice.address_type != "IPv4" {
                continue;
            }
            // The slice's port for this service port: matched by name, as kube-proxy does (the
            // EndpointSlice controller resolved named targetPorts per pod already).
            let Some(target) = slice.ports.iter().flatten().find(|p| {
                p.name.as_deref().unwrap_or_default() == name
                    && p.protocol.as_deref().unwrap_or("TCP")
                        == port.protocol.as_deref().unwrap_or("TCP")
            }) else {
                continue;
            };
            let Some(target_port) = target.port.and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            for endpoint in &slice.endpoints {
                let ready = endpoint
                    .conditions
                    .as_ref()
                    .and_then(|conditions| conditions.ready)
                    .unwrap_or(true);
                if !ready {
                    continue;
                }
                for address in &endpoint.addresses {
                    if let Ok(ip) = address.parse::<Ipv4Addr>() {
                        backends.insert(BackendEntry {
                            ip: ip.octets(),
                            port: target_port.to_be(),
                            pad: 0,
                        });
                    }
                }
            }
        }
        frontends.insert(
            ServiceKey {
                ip: vip.octets(),
                port: service_port.to_be(),
                proto,
                pad: 0,
            },
            backends.into_iter().collect(),
        );
    }
    frontends
}

/// One map write, in the order it must happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    /// Write a backend slot.
    PutBackend(BackendKey, BackendEntry),
    /// Write (create or change) a frontend.
    PutService(ServiceKey, ServiceEntry),
    /// Delete a backend slot.
    DeleteBackend(BackendKey),
    /// Delete a frontend.
    DeleteService(ServiceKey),
}

/// What is programmed per frontend: its id and backends.
pub type Programmed = BTreeMap<ServiceKey, (u32, Vec<BackendEntry>)>;

/// The writes that turn `old` (one Service's frontends as programmed) into `new`, never
/// exposing a slot that is not written: slots first then the count when growing, the count
/// first then the slots when shrinking. `next_id` hands out ids for new frontends.
pub fn plan(
    old: &Programmed,
    new: &BTreeMap<ServiceKey, Vec<BackendEntry>>,
    mut next_id: impl FnMut() -> u32,
) -> (Vec<MapOp>, Programmed) {
    let mut ops = Vec::new();
    let mut programmed = Programmed::new();
    for (key, backends) in new {
        let (id, before) = match old.get(key) {
            Some((id, before)) => (*id, before.as_slice()),
            None => (next_id(), &[][..]),
        };
        let count = u32::try_from(backends.len()).unwrap_or(u32::MAX);
        for (slot, backend) in backends.iter().enumerate() {
            if before.get(slot) != Some(backend) {
                ops.push(MapOp::PutBackend(
                    BackendKey {
                        service_id: id,
                        slot: slot as u32,
                    },
                    *backend,
                ));
            }
        }
        if before.len() != backends.len() || !old.contains_key(key) {
            ops.push(MapOp::PutService(*key, ServiceEntry { id, count }));
        }
        for slot in backends.len()..before.len() {
            ops.push(MapOp::DeleteBackend(BackendKey {
                service_id: id,
                slot: slot as u32,
            }));
        }
        programmed.insert(*key, (id, backends.clone()));
    }
    for (key, (id, before)) in old {
        if new.contains_key(key) {
            continue;
        }
        ops.push(MapOp::DeleteService(*key));
        for slot in 0..before.len() {
            ops.push(MapOp::DeleteBackend(BackendKey {
                service_id: *id,
                slot: slot as u32,
            }));
        }
    }
    (ops, programmed)
}

/// The node's pinned service maps.
pub struct ServiceMaps {
    services: HashMap<MapData, ServiceKey, ServiceEntry>,
    backends: HashMap<MapData, BackendKey, BackendEntry>,
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
        })
    }

    /// Applies `ops` in order.
    pub fn apply(&mut self, ops: &[MapOp]) -> Result<(), DatapathError> {
        let service_err = map_error(SERVICES_MAP);
        let backend_err = map_error(BACKENDS_MAP);
        for op in ops {
            match op {
                MapOp::PutBackend(key, value) => {
                    self.backends.insert(key, value, 0).map_err(&backend_err)?;
                }
                MapOp::PutService(key, value) => {
                    self.services.insert(key, value, 0).map_err(&service_err)?;
                }
                MapOp::DeleteBackend(key) => match self.backends.remove(key) {
                    Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                    Err(err) => return Err(backend_err(err)),
                },
                MapOp::DeleteService(key) => match self.services.remove(key) {
                    Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                    Err(err) => return Err(service_err(err)),
                },
            }
        }
        Ok(())
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
            programmed.insert(key, (service.id, backends));
        }
        Ok(programmed)
    }
}

/// Keeps the service maps equal to the cluster's Services and EndpointSlices for as long as the
/// task runs; every change reprograms only the Service it concerns. `observe` gets how long
/// each Service's programming took.
pub async fn sync(
    client: kube::Client,
    mut maps: ServiceMaps,
    observe: impl Fn(std::time::Duration) + Send,
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
    let programmed_at_start = maps.programmed().unwrap_or_else(|err| {
        tracing::warn!("reading the service maps: {err}");
        Programmed::new()
    });
    // Programmed frontends per Service (namespace/name); ids stay with their frontend.
    let mut programmed: BTreeMap<String, Programmed> = BTreeMap::new();
    let mut orphans = programmed_at_start;
    let mut next_id = orphans.values().map(|(id, _)| *id + 1).max().unwrap_or(1);
    let mut services: BTreeMap<String, Service> = BTreeMap::new();
    let mut slices: BTreeMap<String, EndpointSlice> = BTreeMap::new();
    let mut synced = (false, false);

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
    let key = |meta: &kube::api::ObjectMeta| {
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        )
    };
    let slice_service = |slice: &EndpointSlice| {
        format!(
            "{}/{}",
            slice.metadata.namespace.as_deref().unwrap_or_default(),
            slice
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(SERVICE_NAME_LABEL))
                .map(String::as_str)
                .unwrap_or_default()
        )
    };
    while let Some(change) = events.next().await {
        // The Services whose frontends may have changed.
        let touched: Vec<String> = match change {
            Change::Service(Ok(watcher::Event::Apply(svc) | watcher::Event::InitApply(svc))) => {
                let name = key(&svc.metadata);
                services.insert(name.clone(), svc);
                vec![name]
            }
            Change::Service(Ok(watcher::Event::Delete(svc))) => {
                let name = key(&svc.metadata);
                services.remove(&name);
                vec![name]
            }
            Change::Service(Ok(watcher::Event::InitDone)) => {
                synced.0 = true;
                services.keys().cloned().collect()
            }
            Change::Slice(Ok(watcher::Event::Apply(slice) | watcher::Event::InitApply(slice))) => {
                let name = slice_service(&slice);
                slices.insert(key(&slice.metadata), slice);
                vec![name]
            }
            Change::Slice(Ok(watcher::Event::Delete(slice))) => {
                let name = slice_service(&slice);
                slices.remove(&key(&slice.metadata));
                vec![name]
            }
            Change::Slice(Ok(watcher::Event::InitDone)) => {
                synced.1 = true;
                services.keys().cloned().collect()
            }
            Change::Service(Ok(watcher::Event::Init)) | Change::Slice(Ok(watcher::Event::Init)) => {
                continue;
            }
            Change::Service(Err(err)) => {
                tracing::warn!("watching services: {err}");
                continue;
            }
            Change::Slice(Err(err)) => {
                tracing::warn!("watching endpointslices: {err}");
                continue;
            }
        };
        // Until both lists are complete, a Service could look endpointless: wait.
        if synced != (true, true) {
            continue;
        }
        for name in touched {
            let started = std::time::Instant::now();
            let wanted = match services.get(&name) {
                Some(service) => {
                    let owned: Vec<&EndpointSlice> = slices
                        .values()
                        .filter(|slice| slice_service(slice) == name)
                        .collect();
                    frontends(service, &owned)
                }
                None => BTreeMap::new(),
            };
            let mut old = programmed.remove(&name).unwrap_or_default();
            // Frontends left by an earlier agent are adopted by the Service that wants them.
            for key in wanted.keys() {
                if let Some(entry) = orphans.remove(key) {
                    old.insert(*key, entry);
                }
            }
            let (ops, now) = plan(&old, &wanted, || {
                let id = next_id;
                next_id += 1;
                id
            });
            if let Err(err) = maps.apply(&ops) {
                tracing::warn!(service = %name, "programming the service maps: {err}");
            }
            if !now.is_empty() {
                programmed.insert(name, now);
            }
            if !ops.is_empty() {
                observe(started.elapsed());
            }
        }
        if !orphans.is_empty() && synced == (true, true) {
            // What no Service wants after the first complete sync is gone for good.
            let stale = std::mem::take(&mut orphans);
            let (ops, _) = plan(&stale, &BTreeMap::new(), || 0);
            if let Err(err) = maps.apply(&ops) {
                tracing::warn!("removing stale frontends: {err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        core::v1::{ServicePort, ServiceSpec},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort},
    };

    use super::*;

    fn service(ip: &str, ports: &[(&str, i32, &str)]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, port, proto)| ServicePort {
                            name: Some((*name).into()),
                            port: *port,
                            protocol: Some((*proto).into()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice(ports: &[(&str, i32, &str)], endpoints: &[(&str, bool)]) -> EndpointSlice {
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
                .map(|(ip, ready)| Endpoint {
                    addresses: vec![(*ip).into()],
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn backend(ip: &str, port: u16) -> BackendEntry {
        BackendEntry {
            ip: ip.parse::<Ipv4Addr>().unwrap().octets(),
            port: port.to_be(),
            pad: 0,
        }
    }

    #[test]
    fn ready_endpoints_back_each_port_by_name() {
        let svc = service("10.96.0.20", &[("http", 80, "TCP"), ("dns", 53, "UDP")]);
        let slice = slice(
            &[("http", 8080, "TCP"), ("dns", 9001, "UDP")],
            &[
                ("10.244.0.5", true),
                ("10.244.1.5", true),
                ("10.244.1.6", false),
            ],
        );
        let frontends = frontends(&svc, &[&slice]);
        assert_eq!(frontends.len(), 2);
        let http = ServiceKey {
            ip: [10, 96, 0, 20],
            port: 80u16.to_be(),
            proto: PROTO_TCP,
            pad: 0,
        };
        assert_eq!(
            frontends[&http],
            vec![backend("10.244.0.5", 8080), backend("10.244.1.5", 8080)]
        );
        let headless = service("None", &[("http", 80, "TCP")]);
        assert!(super::frontends(&headless, &[&slice]).is_empty());
    }

    #[test]
    fn plans_never_expose_unwritten_slots_and_touch_only_changes() {
        let key = ServiceKey {
            ip: [10, 96, 0, 20],
            port: 80u16.to_be(),
            proto: PROTO_TCP,
            pad: 0,
        };
        let two = BTreeMap::from([(key, vec![backend("10.0.0.1", 80), backend("10.0.0.2", 80)])]);
        let (ops, programmed) = plan(&Programmed::new(), &two, || 7);
        assert_eq!(
            ops.last(),
            Some(&MapOp::PutService(key, ServiceEntry { id: 7, count: 2 }))
        );
        // Unchanged: nothing to write.
        let (ops, _) = plan(&programmed, &two, || unreachable!());
        assert!(ops.is_empty());
        // Shrinking: the count goes down before the slot goes away.
        let one = BTreeMap::from([(key, vec![backend("10.0.0.1", 80)])]);
        let (ops, _) = plan(&programmed, &one, || unreachable!());
        assert_eq!(
            ops,
            vec![
                MapOp::PutService(key, ServiceEntry { id: 7, count: 1 }),
                MapOp::DeleteBackend(BackendKey {
                    service_id: 7,
                    slot: 1
                }),
            ]
        );
        // Deleting: frontend first.
        let (ops, programmed) = plan(&programmed, &BTreeMap::new(), || unreachable!());
        assert_eq!(ops[0], MapOp::DeleteService(key));
        assert!(programmed.is_empty());
    }
}
