//! The cluster's DNS records as the Kubernetes DNS specification defines them
//! (github.com/kubernetes/dns, docs/specification.md), computed from Services, EndpointSlices
//! and Pods: plain functions over API objects, and the [`Zone`] that answers lookups.
//!
//! Names are lower-case, fully qualified and end with a dot (`web.default.svc.cluster.local.`).

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

use k8s_openapi::api::{core::v1::Pod, core::v1::Service, discovery::v1::EndpointSlice};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Record data, without the owner name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Data {
    /// An A or AAAA record.
    Ip(IpAddr),
    /// A CNAME to this (fully qualified) name.
    Cname(String),
    /// An SRV record.
    Srv {
        /// Priority (lower first).
        priority: u16,
        /// Relative weight within a priority.
        weight: u16,
        /// The port.
        port: u16,
        /// The target host name.
        target: String,
    },
}

/// One record: owner name and data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// Lower-case fully qualified owner name, ending with a dot.
    pub name: String,
    /// The record data.
    pub data: Data,
}

/// The object that contributes a set of records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// A Service (namespace, name) with its EndpointSlices.
    Service(String, String),
    /// A Pod (namespace, name).
    Pod(String, String),
}

/// The record types a query can ask for, as far as the zone cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    /// A (IPv4 address).
    A,
    /// AAAA (IPv6 address).
    Aaaa,
    /// CNAME.
    Cname,
    /// SRV.
    Srv,
    /// ANY.
    Any,
    /// Anything else (the zone has none of those).
    Other,
}

/// What the zone says about a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Records to answer with (for a CNAME owner queried for another type: the CNAME).
    Answer(Vec<Entry>),
    /// The name exists but has no record of the type asked for (NOERROR, empty answer).
    NoData,
    /// The name is inside the cluster domain and does not exist.
    NxDomain,
    /// The name is outside the cluster domain.
    Outside,
}

/// Lower-cases `name` and makes it fully qualified.
pub fn normalize(name: &str) -> String {
    let mut name = name.to_ascii_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    name
}

/// `10.244.1.7` -> `10-244-1-7`; `fd00::1` -> `fd00--1` (as CoreDNS writes pod and endpoint names).
pub fn dashed(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string().replace('.', "-"),
        IpAddr::V6(ip) => ip.to_string().replace(':', "-"),
    }
}

fn ready(endpoint: &k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    // The EndpointSlice API: a nil `ready` is to be read as true.
    endpoint
        .conditions
        .as_ref()
        .and_then(|c| c.ready)
        .unwrap_or(true)
}

/// The records of one Service in `domain` (e.g. `cluster.local`), given the EndpointSlices
/// labelled with its name. Normal services: the ClusterIPs and SRV records of named ports;
/// headless services (clusterIP `None`): the ready endpoints' addresses, a name per endpoint
/// (its `hostname`, else its dashed address) and SRV records per endpoint; ExternalName
/// services: a CNAME.
pub fn service_records(domain: &str, service: &Service, slices: &[&EndpointSlice]) -> Vec<Entry> {
    let (Some(namespace), Some(name)) = (&service.metadata.namespace, &service.metadata.name)
    else {
        return Vec::new();
    };
    let base = normalize(&format!("{name}.{namespace}.svc.{domain}"));
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    if spec.type_.as_deref() == Some("ExternalName") {
        if let Some(target) = spec.external_name.as_deref().filter(|t| !t.is_empty()) {
            entries.push(Entry {
                name: base,
                data: Data::Cname(normalize(target)),
            });
        }
        return entries;
    }
    let named_ports: Vec<(String, String, u16)> = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port_name = p.name.as_deref().filter(|n| !n.is_empty())?;
            let protocol = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            Some((
                port_name.to_ascii_lowercase(),
                protocol,
                u16::try_from(p.port).ok()?,
            ))
        })
        .collect();
    let headless = spec.cluster_ip.as_deref() == Some("None");
    if !headless {
        let ips = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse::<IpAddr>().ok());
        let mut any = false;
        for ip in ips {
            any = true;
            entries.push(Entry {
                name: base.clone(),
                data: Data::Ip(ip),
            });
        }
        if any {
            for (port_name, protocol, port) in &named_ports {
                entries.push(Entry {
                    name: format!("_{port_name}._{protocol}.{base}"),
                    data: Data::Srv {
                        priority: 0,
                        weight: 100,
                        port: *port,
                        target: base.clone(),
                    },
                });
            }
        }
    } else {
        for slice in slices {
            let slice_ports: Vec<(String, String, u16)> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    let port_name = p.name.as_deref().filter(|n| !n.is_empty())?;
                    let protocol = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
                    Some((
                        port_name.to_ascii_lowercase(),
                        protocol,
                        u16::try_from(p.port?).ok()?,
                    ))
                })
                .collect();
            for endpoint in slice.endpoints.iter().filter(|e| ready(e)) {
                for ip in endpoint
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse::<IpAddr>().ok())
                {
                    let host = endpoint
                        .hostname
                        .as_deref()
                        .filter(|h| !h.is_empty())
                        .map_or_else(|| dashed(ip), str::to_ascii_lowercase);
                    let host_name = format!("{host}.{base}");
                    entries.push(Entry {
                        name: base.clone(),
                        data: Data::Ip(ip),
                    });
                    entries.push(Entry {
                        name: host_name.clone(),
                        data: Data::Ip(ip),
                    });
                    for (port_name, protocol, port) in &slice_ports {
                        entries.push(Entry {
                            name: format!("_{port_name}._{protocol}.{base}"),
                            data: Data::Srv {
                                priority: 0,
                                weight: 100,
                                port: *port,
                                target: host_name.clone(),
                            },
                        });
                    }
                }
            }
        }
    }
    entries.sort();
    entries.dedup();
    entries
}

/// The records of one Pod: `<dashed-ip>.<namespace>.pod.<domain>` for each of its IPs.
pub fn pod_records(domain: &str, pod: &Pod) -> Vec<Entry> {
    let Some(namespace) = &pod.metadata.namespace else {
        return Vec::new();
    };
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut entries: Vec<Entry> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .chain(status.pod_ip.as_deref())
        .filter_map(|ip| ip.parse::<IpAddr>().ok())
        .map(|ip| Entry {
            name: normalize(&format!("{}.{namespace}.pod.{domain}", dashed(ip))),
            data: Data::Ip(ip),
        })
        .collect();
    entries.sort();
    entries.dedup();
    entries
}

/// The cluster zone: every owner's records, indexed by name, updated one owner at a time.
#[derive(Debug)]
pub struct Zone {
    domain: String,
    by_owner: HashMap<Owner, Vec<Entry>>,
    by_name: HashMap<String, BTreeMap<Owner, Vec<Data>>>,
    // How many records sit at or below each name (empty non-terminals exist: NODATA, not
    // NXDOMAIN).
    nodes: HashMap<String, usize>,
}

impl Zone {
    /// An empty zone for `domain` (e.g. `cluster.local`).
    pub fn new(domain: &str) -> Self {
        Self {
            domain: normalize(domain),
            by_owner: HashMap::new(),
            by_name: HashMap::new(),
            nodes: HashMap::new(),
        }
    }

    /// The zone's apex, lower-case, fully qualified.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Replaces what `owner` contributes with `entries` (empty: removes the owner).
    pub fn set(&mut self, owner: &Owner, entries: Vec<Entry>) {
        if let Some(old) = self.by_owner.remove(owner) {
            for entry in &old {
                if let Some(owners) = self.by_name.get_mut(&entry.name) {
                    owners.remove(owner);
                    if owners.is_empty() {
                        self.by_name.remove(&entry.name);
                    }
                }
                self.count(&entry.name, false);
            }
        }
        if entries.is_empty() {
            return;
        }
        for entry in &entries {
            self.by_name
                .entry(entry.name.clone())
                .or_default()
                .entry(owner.clone())
                .or_default()
                .push(entry.data.clone());
            self.count(&entry.name, true);
        }
        self.by_owner.insert(owner.clone(), entries);
    }

    /// The owners that currently contribute records.
    pub fn owners(&self) -> impl Iterator<Item = &Owner> {
        self.by_owner.keys()
    }

    fn count(&mut self, name: &str, add: bool) {
        let mut current = name;
        loop {
            if add {
                *self.nodes.entry(current.to_owned()).or_default() += 1;
            } else if let Some(n) = self.nodes.get_mut(current) {
                *n -= 1;
                if *n == 0 {
                    self.nodes.remove(current);
                }
            }
            if current == self.domain || current.len() <= self.domain.len() {
                return;
            }
            match current.split_once('.') {
                Some((_, rest)) if !rest.is_empty() => current = rest,
                _ => return,
            }
        }
    }

    /// Whether `name` (normalized) is the zone's apex or inside it.
    pub fn contains(&self, name: &str) -> bool {
        name == self.domain || name.ends_with(&format!(".{}", self.domain))
    }

    /// Answers a query for `name` (any case, with or without the final dot).
    pub fn lookup(&self, name: &str, query_type: QueryType) -> Lookup {
        let name = normalize(name);
        if !self.contains(&name) {
            return Lookup::Outside;
        }
        let data: Vec<&Data> = self
            .by_name
            .get(&name)
            .into_iter()
            .flat_map(|owners| owners.values().flatten())
            .collect();
        let wanted = |d: &&Data| match (query_type, d) {
            (QueryType::Any, _)
            | (QueryType::A, Data::Ip(IpAddr::V4(_)))
            | (QueryType::Aaaa, Data::Ip(IpAddr::V6(_)))
            | (QueryType::Cname, Data::Cname(_))
            | (QueryType::Srv, Data::Srv { .. }) => true,
            // A CNAME answers every type (the resolver follows it).
            (_, Data::Cname(_)) => true,
            _ => false,
        };
        let mut answer: Vec<Entry> = data
            .into_iter()
            .filter(wanted)
            .map(|d| Entry {
                name: name.clone(),
                data: d.clone(),
            })
            .collect();
        answer.sort();
        answer.dedup();
        if !answer.is_empty() {
            Lookup::Answer(answer)
        } else if name == self.domain || self.nodes.contains_key(&name) {
            Lookup::NoData
        } else {
            Lookup::NxDomain
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    fn service(value: serde_json::Value) -> Service {
        serde_json::from_value(value).unwrap()
    }

    fn slice(value: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(value).unwrap()
    }

    fn ips(zone: &Zone, name: &str) -> Vec<String> {
        match zone.lookup(name, QueryType::A) {
            Lookup::Answer(entries) => entries
                .into_iter()
                .map(|e| match e.data {
                    Data::Ip(ip) => ip.to_string(),
                    other => format!("{other:?}"),
                })
                .collect(),
            other => vec![format!("{other:?}")],
        }
    }

    fn zone_with(owner: Owner, entries: Vec<Entry>) -> Zone {
        let mut zone = Zone::new("cluster.local");
        zone.set(&owner, entries);
        zone
    }

    fn svc_owner(name: &str) -> Owner {
        Owner::Service("default".into(), name.into())
    }

    #[test]
    fn cluster_ip_service_has_a_and_srv_for_named_ports() {
        let svc = service(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
                     "ports": [{"name": "http", "port": 80}, {"port": 81}]}
        }));
        let zone = zone_with(
            svc_owner("web"),
            service_records("cluster.local", &svc, &[]),
        );
        assert_eq!(ips(&zone, "web.default.svc.cluster.local"), ["10.96.0.20"]);
        assert_eq!(ips(&zone, "WEB.Default.svc.cluster.local."), ["10.96.0.20"]);
        assert_eq!(
            zone.lookup("_http._tcp.web.default.svc.cluster.local", QueryType::Srv),
            Lookup::Answer(vec![Entry {
                name: "_http._tcp.web.default.svc.cluster.local.".into(),
                data: Data::Srv {
                    priority: 0,
                    weight: 100,
                    port: 80,
                    target: "web.default.svc.cluster.local.".into()
                }
            }])
        );
        // The name exists; no IPv6 address: NODATA, not NXDOMAIN.
        assert_eq!(
            zone.lookup("web.default.svc.cluster.local", QueryType::Aaaa),
            Lookup::NoData
        );
        // Empty non-terminals and the apex exist.
        assert_eq!(
            zone.lookup("default.svc.cluster.local", QueryType::A),
            Lookup::NoData
        );
        assert_eq!(zone.lookup("cluster.local", QueryType::A), Lookup::NoData);
        assert_eq!(
            zone.lookup("nope.default.svc.cluster.local", QueryType::A),
            Lookup::NxDomain
        );
        assert_eq!(zone.lookup("example.com", QueryType::A), Lookup::Outside);
        assert_eq!(
            zone.lookup("notcluster.local", QueryType::A),
            Lookup::Outside
        );
    }

    fn headless_and_slice() -> (Service, EndpointSlice) {
        let svc = service(serde_json::json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}
        }));
        let slice = slice(serde_json::json!({
            "metadata": {"name": "db-abc", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.2.6"], "hostname": "db-1", "conditions": {"ready": true}},
                {"addresses": ["10.244.2.7"], "hostname": "db-2", "conditions": {"ready": false}},
                {"addresses": ["10.244.2.8"]}
            ]
        }));
        (svc, slice)
    }

    #[test]
    fn headless_service_lists_ready_endpoints_with_statefulset_hostnames() {
        let (svc, slice) = headless_and_slice();
        let zone = zone_with(
            svc_owner("db"),
            service_records("cluster.local", &svc, &[&slice]),
        );
        // Ready endpoints only; a nil `ready` counts as ready.
        assert_eq!(
            ips(&zone, "db.default.svc.cluster.local"),
            ["10.244.1.5", "10.244.2.6", "10.244.2.8"]
        );
        assert_eq!(
            ips(&zone, "db-0.db.default.svc.cluster.local"),
            ["10.244.1.5"]
        );
        assert_eq!(
            ips(&zone, "db-1.db.default.svc.cluster.local"),
            ["10.244.2.6"]
        );
        assert_eq!(
            zone.lookup("db-2.db.default.svc.cluster.local", QueryType::A),
            Lookup::NxDomain
        );
        // Without a hostname the endpoint is named by its dashed address.
        assert_eq!(
            ips(&zone, "10-244-2-8.db.default.svc.cluster.local"),
            ["10.244.2.8"]
        );
        let Lookup::Answer(srv) =
            zone.lookup("_pg._tcp.db.default.svc.cluster.local", QueryType::Srv)
        else {
            panic!("no SRV records");
        };
        let targets: Vec<_> = srv
            .iter()
            .map(|e| match &e.data {
                Data::Srv { target, port, .. } => format!("{target}:{port}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            targets,
            [
                "10-244-2-8.db.default.svc.cluster.local.:5432",
                "db-0.db.default.svc.cluster.local.:5432",
                "db-1.db.default.svc.cluster.local.:5432"
            ]
        );
    }

    #[test]
    fn headless_service_without_endpoints_is_nxdomain_and_changes_replace_records() {
        let (svc, slice) = headless_and_slice();
        let mut zone = Zone::new("cluster.local");
        zone.set(
            &svc_owner("db"),
            service_records("cluster.local", &svc, &[]),
        );
        assert_eq!(
            zone.lookup("db.default.svc.cluster.local", QueryType::A),
            Lookup::NxDomain
        );
        zone.set(
            &svc_owner("db"),
            service_records("cluster.local", &svc, &[&slice]),
        );
        assert_eq!(
            ips(&zone, "db-0.db.default.svc.cluster.local"),
            ["10.244.1.5"]
        );
        zone.set(&svc_owner("db"), Vec::new());
        assert_eq!(
            zone.lookup("db-0.db.default.svc.cluster.local", QueryType::A),
            Lookup::NxDomain
        );
        assert_eq!(
            zone.lookup("default.svc.cluster.local", QueryType::A),
            Lookup::NxDomain
        );
        assert_eq!(zone.owners().count(), 0);
    }

    #[test]
    fn external_name_is_a_cname_for_every_type() {
        let svc = service(serde_json::json!({
            "metadata": {"name": "ext", "namespace": "prod"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"}
        }));
        let records = service_records("cluster.local", &svc, &[]);
        assert_eq!(
            records,
            [Entry {
                name: "ext.prod.svc.cluster.local.".into(),
                data: Data::Cname("db.example.com.".into())
            }]
        );
        let zone = zone_with(Owner::Service("prod".into(), "ext".into()), records.clone());
        assert_eq!(
            zone.lookup("ext.prod.svc.cluster.local", QueryType::A),
            Lookup::Answer(records)
        );
    }

    #[test]
    fn service_without_cluster_ip_has_no_records() {
        let svc = service(serde_json::json!({
            "metadata": {"name": "pending", "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 80}]}
        }));
        assert!(service_records("cluster.local", &svc, &[]).is_empty());
        let nameless = service(serde_json::json!({"spec": {"clusterIP": "10.96.0.9"}}));
        assert!(service_records("cluster.local", &nameless, &[]).is_empty());
    }

    #[test]
    fn pods_are_named_by_dashed_address() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "team"},
            "status": {"podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}]}
        }))
        .unwrap();
        let zone = zone_with(
            Owner::Pod("team".into(), "p".into()),
            pod_records("cluster.local", &pod),
        );
        assert_eq!(
            ips(&zone, "10-244-1-7.team.pod.cluster.local"),
            ["10.244.1.7"]
        );
        assert_eq!(
            zone.lookup("10-244-1-8.team.pod.cluster.local", QueryType::A),
            Lookup::NxDomain
        );
    }
}
