//! NetworkPolicy in the node's maps (layout in `common/src/policy.rs`): a pure function turns
//! the cluster's Pods, Namespaces and NetworkPolicies into what this node's datapath must hold
//! (the identity cache, the allow rules of its local endpoints, their isolation flags), and the
//! sync task applies only the differences, in an order that never denies what both the old and
//! the new policies allow.
//!
//! Identities: an identity is a class of addresses that no policy can tell apart: pods of one
//! namespace with the same labels inside the same ipBlock prefixes, or the addresses whose
//! longest ipBlock boundary is the same prefix. Each node numbers them itself (nothing carries
//! an identity in packets), keeping numbers while their class exists.
//!
//! Ports: a port is a /16 of the rule key; an `endPort` range is written as its aligned
//! power-of-two blocks (at most 30 prefixes for any range), so ranges cost no extra lookup.
//! Named ports resolve on the pod that owns them: the local endpoint for ingress, the peer pods
//! for egress (one identity's pods are expected to agree; if not, the union of their numbers is
//! allowed for the whole identity).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Display,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::Duration,
};

use aya::maps::{
    MapData,
    lpm_trie::{Key, LpmTrie},
};
use flotilla_common::policy::{
    DIR_EGRESS, DIR_INGRESS, EP_EGRESS_ISOLATED, EP_INGRESS_ISOLATED, EP_POLICY, IDENTITY_ANY,
    IDENTITY_WORLD, IPCACHE_MAP, POLICY_EVENTS_MAP, POLICY_MAP, POLICY_PREFIX_ALL_PORTS,
    POLICY_PREFIX_PROTO, PolicyDrop, PolicyKey,
};
use k8s_openapi::{
    api::{
        core::v1::{Namespace, Pod},
        networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};

use tokio::time::Instant;

use super::{
    DatapathError, lock,
    network::{NetworkMaps, map_error, open_map, removed},
    pins::NodePins,
    protocol_name, protocol_number,
    reconcile::{Changes, MapHandle, Reconciler, Report, Retry, Wake, next_or_due},
    tunnels::{Prefix, parse_ipv4_cidr},
};

/// Labels of a pod or namespace.
pub type Labels = BTreeMap<String, String>;

/// Whether `selector` selects an object with `labels` (an empty selector selects everything,
/// an invalid one nothing, as `LabelSelectorAsSelector` would have it).
pub fn selects(selector: &LabelSelector, labels: &Labels) -> bool {
    flotilla_apimachinery::selectors::LabelSelector::try_from(selector)
        .is_ok_and(|selector| selector.matches(labels))
}

/// What an identity stands for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdentityKey {
    /// Pods of a namespace with these labels, inside these ipBlock boundaries.
    Pods {
        /// Namespace.
        namespace: String,
        /// Labels.
        labels: Labels,
        /// ipBlock boundaries containing the pods' addresses.
        within: BTreeSet<Prefix>,
    },
    /// Addresses outside every pod whose longest ipBlock boundary is this prefix.
    Prefix(Prefix),
}

/// The node's identity numbers, kept while their class exists.
#[derive(Debug, Default)]
pub struct Identities {
    ids: BTreeMap<IdentityKey, u32>,
    next: u32,
}

impl Identities {
    fn id(&mut self, key: IdentityKey) -> u32 {
        if key == IdentityKey::Prefix((Ipv4Addr::UNSPECIFIED, 0)) {
            return IDENTITY_WORLD;
        }
        if let Some(id) = self.ids.get(&key) {
            return *id;
        }
        self.next = self.next.max(IDENTITY_WORLD + 1);
        let id = self.next;
        self.next += 1;
        self.ids.insert(key, id);
        id
    }

    fn retain(&mut self, used: &BTreeSet<u32>) {
        self.ids.retain(|_, id| used.contains(id));
    }
}

/// What the node's maps should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// Identity cache: prefix -> identity.
    pub ipcache: BTreeMap<Prefix, u32>,
    /// Allow rules: (prefix length, key).
    pub rules: BTreeSet<(u32, PolicyKey)>,
    /// Isolation flags of local endpoints (only those some policy selects).
    pub flags: BTreeMap<Ipv4Addr, u32>,
}

fn contains(outer: Prefix, inner: Prefix) -> bool {
    outer.1 <= inner.1 && mask(inner.0, outer.1) == outer.0
}

fn mask(address: Ipv4Addr, len: u32) -> Ipv4Addr {
    let bits = u32::from(address);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Ipv4Addr::from(bits & mask)
}

/// A pod's IPv4 address if it takes part in the pod network (not hostNetwork, not finished).
fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
    {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

fn labels_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Labels {
    meta.labels.clone().unwrap_or_default()
}

/// A port range as aligned blocks: (first port, prefix bits of the 16).
pub fn port_blocks(first: u16, last: u16) -> Vec<(u16, u32)> {
    let mut blocks = Vec::new();
    let (mut at, last) = (u32::from(first), u32::from(last));
    while at <= last {
        // The largest aligned block starting at `at` that does not pass `last`.
        let mut size = if at == 0 {
            1 << 16
        } else {
            1 << at.trailing_zeros()
        };
        while at + size - 1 > last {
            size >>= 1;
        }
        blocks.push((at as u16, 16 - size.trailing_zeros()));
        at += size;
    }
    blocks
}

/// The named container port `name`/`proto` of a pod.
fn named_port(pod: &Pod, name: &str, proto: u8) -> Option<u16> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| {
            p.name.as_deref() == Some(name) && protocol_number(p.protocol.as_deref()) == Some(proto)
        })
        .and_then(|p| u16::try_from(p.container_port).ok())
}

/// One rule of a policy: its peers and its ports, as the API has them.
type Rule<'a> = (
    Option<&'a Vec<NetworkPolicyPeer>>,
    Option<&'a Vec<NetworkPolicyPort>>,
);

/// Who a rule's peers are.
enum Peers {
    /// Everyone (no peers listed).
    Any,
    /// These identities.
    Some(BTreeSet<u32>),
}

/// One identity class as the computation sees it.
struct Class<'a> {
    /// Namespace and labels for pod classes.
    pods: Option<(&'a str, &'a Labels)>,
    within: BTreeSet<Prefix>,
    members: Vec<&'a Pod>,
}

/// The node's maps for `node` given every pod, namespace and policy of the cluster.
pub fn desired(
    pods: &[&Pod],
    namespaces: &[&Namespace],
    policies: &[&NetworkPolicy],
    node: &str,
    identities: &mut Identities,
) -> Desired {
    let mut out = Desired::default();
    // Every ipBlock boundary of every policy.
    let mut boundaries: BTreeSet<Prefix> = BTreeSet::new();
    boundaries.insert((Ipv4Addr::UNSPECIFIED, 0));
    for policy in policies {
        let Some(spec) = &policy.spec else { continue };
        let peers = spec
            .ingress
            .iter()
            .flatten()
            .flat_map(|r| r.from.iter().flatten())
            .chain(
                spec.egress
                    .iter()
                    .flatten()
                    .flat_map(|r| r.to.iter().flatten()),
            );
        for peer in peers {
            if let Some(block) = &peer.ip_block {
                for cidr in std::iter::once(&block.cidr).chain(block.except.iter().flatten()) {
                    if let Some(prefix) = parse_ipv4_cidr(cidr) {
                        boundaries.insert(prefix);
                    }
                }
            }
        }
    }
    let within = |prefix: Prefix| -> BTreeSet<Prefix> {
        boundaries
            .iter()
            .filter(|b| contains(**b, prefix))
            .copied()
            .collect()
    };
    let mut pod_labels: Vec<(Ipv4Addr, &Pod, String, Labels)> = Vec::new();
    for pod in pods {
        if let Some(ip) = pod_ip(pod) {
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            pod_labels.push((ip, pod, namespace, labels_of(&pod.metadata)));
        }
    }
    let mut classes: BTreeMap<u32, Class<'_>> = BTreeMap::new();
    for prefix in &boundaries {
        let id = identities.id(IdentityKey::Prefix(*prefix));
        out.ipcache.insert(*prefix, id);
        classes.entry(id).or_insert_with(|| Class {
            pods: None,
            within: within(*prefix),
            members: Vec::new(),
        });
    }
    for (ip, pod, namespace, labels) in &pod_labels {
        let inside = within((*ip, 32));
        let id = identities.id(IdentityKey::Pods {
            namespace: namespace.clone(),
            labels: labels.clone(),
            within: inside.clone(),
        });
        out.ipcache.insert((*ip, 32), id);
        classes
            .entry(id)
            .or_insert_with(|| Class {
                pods: Some((namespace.as_str(), labels)),
                within: inside,
                members: Vec::new(),
            })
            .members
            .push(pod);
    }
    let used: BTreeSet<u32> = out.ipcache.values().copied().collect();
    identities.retain(&used);
    let namespace_labels: BTreeMap<String, Labels> = namespaces
        .iter()
        .map(|ns| {
            (
                ns.metadata.name.clone().unwrap_or_default(),
                labels_of(&ns.metadata),
            )
        })
        .collect();
    let no_labels = Labels::new();

    let peer_ids = |policy_ns: &str, peer: &NetworkPolicyPeer| -> BTreeSet<u32> {
        classes
            .iter()
            .filter(|(_, class)| {
                if let Some(block) = &peer.ip_block {
                    let Some(cidr) = parse_ipv4_cidr(&block.cidr) else {
                        return false;
                    };
                    let excepted = block
                        .except
                        .iter()
                        .flatten()
                        .filter_map(|e| parse_ipv4_cidr(e))
                        .any(|e| class.within.contains(&e));
                    return class.within.contains(&cidr) && !excepted;
                }
                let Some((namespace, labels)) = class.pods else {
                    return false;
                };
                let namespace_ok = match &peer.namespace_selector {
                    Some(selector) => selects(
                        selector,
                        namespace_labels.get(namespace).unwrap_or(&no_labels),
                    ),
                    None => namespace == policy_ns,
                };
                namespace_ok
                    && peer
                        .pod_selector
                        .as_ref()
                        .is_none_or(|selector| selects(selector, labels))
            })
            .map(|(id, _)| *id)
            .collect()
    };

    for (ip, pod, namespace, labels) in &pod_labels {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
            continue;
        }
        let mut flags = 0;
        for policy in policies {
            if policy.metadata.namespace.as_deref() != Some(namespace.as_str()) {
                continue;
            }
            let Some(spec) = &policy.spec else { continue };
            if !spec
                .pod_selector
                .as_ref()
                .is_none_or(|selector| selects(selector, labels))
            {
                continue;
            }
            flags |= EP_POLICY;
            let types: Vec<&str> = match &spec.policy_types {
                Some(types) if !types.is_empty() => types.iter().map(String::as_str).collect(),
                _ if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) => {
                    vec!["Ingress", "Egress"]
                }
                _ => vec!["Ingress"],
            };
            for (direction, flag) in [
                (DIR_INGRESS, EP_INGRESS_ISOLATED),
                (DIR_EGRESS, EP_EGRESS_ISOLATED),
            ] {
                let name = if direction == DIR_INGRESS {
                    "Ingress"
                } else {
                    "Egress"
                };
                if !types.contains(&name) {
                    continue;
                }
                flags |= flag;
                let rules: Vec<Rule<'_>> = if direction == DIR_INGRESS {
                    spec.ingress
                        .iter()
                        .flatten()
                        .map(|r| (r.from.as_ref(), r.ports.as_ref()))
                        .collect()
                } else {
                    spec.egress
                        .iter()
                        .flatten()
                        .map(|r| (r.to.as_ref(), r.ports.as_ref()))
                        .collect()
                };
                for (peers, ports) in rules {
                    let peers = match peers {
                        Some(list) if !list.is_empty() => Peers::Some(
                            list.iter()
                                .flat_map(|peer| peer_ids(namespace, peer))
                                .collect(),
                        ),
                        _ => Peers::Any,
                    };
                    let key = |identity: u32, proto: u8, port: u16| PolicyKey {
                        endpoint: ip.octets(),
                        direction,
                        identity,
                        proto,
                        port,
                    };
                    let identities: Vec<u32> = match &peers {
                        Peers::Any => vec![IDENTITY_ANY],
                        Peers::Some(ids) => ids.iter().copied().collect(),
                    };
                    let ports = ports.map(Vec::as_slice).unwrap_or_default();
                    if ports.is_empty() {
                        for identity in &identities {
                            out.rules
                                .insert((POLICY_PREFIX_ALL_PORTS, key(*identity, 0, 0)));
                        }
                        continue;
                    }
                    for port in ports {
                        let Some(proto) = protocol_number(port.protocol.as_deref()) else {
                            continue;
                        };
                        match &port.port {
                            None => {
                                for identity in &identities {
                                    out.rules
                                        .insert((POLICY_PREFIX_PROTO, key(*identity, proto, 0)));
                                }
                            }
                            Some(IntOrString::Int(first)) => {
                                let Ok(first) = u16::try_from(*first) else {
                                    continue;
                                };
                                let last = port
                                    .end_port
                                    .and_then(|end| u16::try_from(end).ok())
                                    .filter(|end| *end >= first)
                                    .unwrap_or(first);
                                for (start, bits) in port_blocks(first, last) {
                                    for identity in &identities {
                                        out.rules.insert((
                                            POLICY_PREFIX_PROTO + bits,
                                            key(*identity, proto, start),
                                        ));
                                    }
                                }
                            }
                            Some(IntOrString::String(name)) => {
                                if direction == DIR_INGRESS {
                                    if let Some(number) = named_port(pod, name, proto) {
                                        for identity in &identities {
                                            out.rules.insert((
                                                POLICY_PREFIX_PROTO + 16,
                                                key(*identity, proto, number),
                                            ));
                                        }
                                    }
                                    continue;
                                }
                                // Egress: the port is the peer's; world has no named ports.
                                for (identity, class) in &classes {
                                    if let Peers::Some(ids) = &peers
                                        && !ids.contains(identity)
                                    {
                                        continue;
                                    }
                                    for member in &class.members {
                                        if let Some(number) = named_port(member, name, proto) {
                                            out.rules.insert((
                                                POLICY_PREFIX_PROTO + 16,
                                                key(*identity, proto, number),
                                            ));
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        if flags != 0 {
            out.flags.insert(*ip, flags);
        }
    }
    out
}

/// The node's pinned policy maps.
pub struct PolicyMaps {
    ipcache: LpmTrie<MapData, [u8; 4], u32>,
    rules: LpmTrie<MapData, [u8; 12], u32>,
}

impl std::fmt::Debug for PolicyMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyMaps").finish_non_exhaustive()
    }
}

impl PolicyMaps {
    /// Opens the node's pinned policy maps.
    pub fn open(pins: &NodePins) -> Result<Self, DatapathError> {
        Ok(Self {
            ipcache: open_map(pins, IPCACHE_MAP)?,
            rules: open_map(pins, POLICY_MAP)?,
        })
    }

    /// The identity cache as programmed.
    pub fn ipcache(&self) -> Result<BTreeMap<Prefix, u32>, DatapathError> {
        self.ipcache
            .iter()
            .map(|entry| {
                entry
                    .map(|(key, id)| ((Ipv4Addr::from(key.data()), key.prefix_len()), id))
                    .map_err(map_error(IPCACHE_MAP))
            })
            .collect()
    }

    /// The rules as programmed.
    pub fn rules(&self) -> Result<BTreeSet<(u32, PolicyKey)>, DatapathError> {
        self.rules
            .iter()
            .map(|entry| {
                entry
                    .map(|(key, _)| (key.prefix_len(), PolicyKey::from_bytes(key.data())))
                    .map_err(map_error(POLICY_MAP))
            })
            .collect()
    }
}

/// The identity cache, for the policy sync's reconciler: prefix -> identity.
impl MapHandle<Prefix, u32> for PolicyMaps {
    type Error = DatapathError;

    fn insert(&mut self, prefix: &Prefix, id: &u32) -> Result<(), DatapathError> {
        self.ipcache
            .insert(&Key::new(prefix.1, prefix.0.octets()), id, 0)
            .map_err(map_error(IPCACHE_MAP))
    }

    fn remove(&mut self, prefix: &Prefix) -> Result<(), DatapathError> {
        removed(
            self.ipcache.remove(&Key::new(prefix.1, prefix.0.octets())),
            IPCACHE_MAP,
        )
    }

    fn entries(&self) -> Result<Vec<(Prefix, u32)>, DatapathError> {
        Ok(self.ipcache()?.into_iter().collect())
    }
}

/// The allow rules, for the policy sync's reconciler: a set of (prefix length, key).
impl MapHandle<(u32, PolicyKey), ()> for PolicyMaps {
    type Error = DatapathError;

    fn insert(&mut self, rule: &(u32, PolicyKey), _: &()) -> Result<(), DatapathError> {
        self.rules
            .insert(&Key::new(rule.0, rule.1.to_bytes()), 1, 0)
            .map_err(map_error(POLICY_MAP))
    }

    fn remove(&mut self, rule: &(u32, PolicyKey)) -> Result<(), DatapathError> {
        removed(
            self.rules.remove(&Key::new(rule.0, rule.1.to_bytes())),
            POLICY_MAP,
        )
    }

    fn entries(&self) -> Result<Vec<((u32, PolicyKey), ())>, DatapathError> {
        Ok(self.rules()?.into_iter().map(|rule| (rule, ())).collect())
    }
}

/// The node's policy state as the sync keeps it: one reconciler per map, and the endpoints'
/// isolation flags as last written.
#[derive(Debug, Default)]
pub struct PolicyTable {
    ipcache: Reconciler<Prefix, u32>,
    rules: Reconciler<(u32, PolicyKey), ()>,
    /// The flags as last written; None until written, and after a failed write.
    flags: Option<BTreeMap<Ipv4Addr, u32>>,
}

impl PolicyTable {
    /// Takes over what the pinned maps hold (a restarted agent keeps enforcing it until its
    /// first computation, and then changes only what differs).
    pub fn adopt<M, E>(maps: &M) -> Result<Self, E>
    where
        M: MapHandle<Prefix, u32, Error = E> + MapHandle<(u32, PolicyKey), (), Error = E>,
    {
        Ok(Self {
            ipcache: Reconciler::adopt(maps)?,
            rules: Reconciler::adopt(maps)?,
            flags: None,
        })
    }

    /// The highest identity number in the identity cache (new numbers stay clear of it).
    pub fn max_identity(&self) -> Option<u32> {
        self.ipcache.desired().values().copied().max()
    }

    /// Whether the maps and the flags hold what the last [`PolicyTable::program`] wanted.
    pub fn is_converged(&self) -> bool {
        self.ipcache.is_converged() && self.rules.is_converged() && self.flags.is_some()
    }

    /// Makes the maps hold `wanted`: additions first, then the endpoints' flags (through
    /// `set_flags`), then removals, so nothing both versions allow is denied in between. A
    /// step runs only once every step before it succeeded; what it leaves pending is retried by
    /// the next call.
    pub fn program<M, E: Display>(
        &mut self,
        maps: &mut M,
        set_flags: impl FnOnce(&BTreeMap<Ipv4Addr, u32>) -> Result<(), E>,
        wanted: &Desired,
    ) -> Report
    where
        M: MapHandle<Prefix, u32, Error = E> + MapHandle<(u32, PolicyKey), (), Error = E>,
    {
        self.ipcache.set_all(wanted.ipcache.clone());
        self.rules
            .set_all(wanted.rules.iter().map(|rule| (*rule, ())).collect());
        if self.flags.as_ref() != Some(&wanted.flags) {
            self.flags = None;
        }
        let mut report = Report::default();
        if !report.add(&self.ipcache.apply(maps, Changes::Writes))
            || !report.add(&self.rules.apply(maps, Changes::Writes))
        {
            return report;
        }
        if self.flags.is_none() {
            match set_flags(&wanted.flags) {
                Ok(()) => {
                    report.changed += 1;
                    self.flags = Some(wanted.flags.clone());
                }
                Err(err) => {
                    report.fail(format_args!("writing the endpoints' policy flags: {err}"));
                    return report;
                }
            }
        }
        if report.add(&self.rules.apply(maps, Changes::Deletes)) {
            report.add(&self.ipcache.apply(maps, Changes::Deletes));
        }
        report
    }
}

/// How long the sync waits for more events before computing (a burst of changes, e.g. a
/// namespace of pods starting, is computed once).
const SETTLE: Duration = Duration::from_millis(50);

/// Keeps the node's policy maps equal to the cluster's NetworkPolicies, Pods and Namespaces as
/// long as the task runs.
pub async fn sync(
    client: kube::Client,
    node: String,
    mut maps: PolicyMaps,
    network: Arc<Mutex<NetworkMaps>>,
) {
    use futures::{StreamExt as _, stream};
    use kube::runtime::{WatchStreamExt as _, watcher};

    use super::services::Mirror;

    #[allow(
        clippy::large_enum_variant,
        reason = "one event at a time lives on the stack of this loop"
    )]
    enum Change {
        Pod(Result<watcher::Event<Pod>, watcher::Error>),
        Namespace(Result<watcher::Event<Namespace>, watcher::Error>),
        Policy(Result<watcher::Event<NetworkPolicy>, watcher::Error>),
    }
    let mut table = PolicyTable::adopt(&maps).unwrap_or_else(|err| {
        tracing::warn!("reading the policy maps: {err}");
        PolicyTable::default()
    });
    // Numbers already in the maps stay out of the way of new ones.
    let mut identities = Identities {
        next: table.max_identity().map_or(0, |max| max + 1),
        ..Identities::default()
    };
    let mut retry = Retry::default();
    let mut pods = Mirror::<Pod>::new();
    let mut namespaces = Mirror::<Namespace>::new();
    let mut policies = Mirror::<NetworkPolicy>::new();
    let events = stream::select(
        stream::select(
            watcher(
                kube::Api::<Pod>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .map(Change::Pod),
            watcher(
                kube::Api::<Namespace>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff()
            .map(Change::Namespace),
        ),
        watcher(
            kube::Api::<NetworkPolicy>::all(client),
            watcher::Config::default(),
        )
        .default_backoff()
        .map(Change::Policy),
    );
    futures::pin_mut!(events);
    let mut dirty = false;
    loop {
        // A burst of events is computed once it settles; a failed pass is retried later.
        let deadline = if dirty {
            Some(Instant::now() + SETTLE)
        } else {
            retry.due()
        };
        let change = match next_or_due(&mut events, deadline).await {
            Wake::Event(change) => change,
            Wake::Closed => break,
            Wake::Due => {
                if pods.synced && namespaces.synced && policies.synced {
                    let pod_list: Vec<&Pod> = pods.objects.values().collect();
                    let ns_list: Vec<&Namespace> = namespaces.objects.values().collect();
                    let policy_list: Vec<&NetworkPolicy> = policies.objects.values().collect();
                    let wanted = desired(&pod_list, &ns_list, &policy_list, &node, &mut identities);
                    let report = table.program(
                        &mut maps,
                        |flags| lock(&network).set_policy_flags(flags.clone()),
                        &wanted,
                    );
                    let retry_in = retry.after_pass(table.is_converged(), Instant::now());
                    if let Some(failure) = report.failure_summary() {
                        tracing::warn!(
                            "programming the policy maps: {failure}; retrying in {:?}",
                            retry_in.unwrap_or_default()
                        );
                    }
                }
                dirty = false;
                continue;
            }
        };
        let changed = match change {
            Change::Pod(Ok(event)) => !pods.apply(event).is_empty(),
            Change::Namespace(Ok(event)) => !namespaces.apply(event).is_empty(),
            Change::Policy(Ok(event)) => !policies.apply(event).is_empty(),
            Change::Pod(Err(err)) => {
                tracing::warn!("watching pods: {err}");
                false
            }
            Change::Namespace(Err(err)) => {
                tracing::warn!("watching namespaces: {err}");
                false
            }
            Change::Policy(Err(err)) => {
                tracing::warn!("watching networkpolicies: {err}");
                false
            }
        };
        // A completed relist with no changes still needs a first computation.
        dirty |= changed || (pods.synced && namespaces.synced && policies.synced);
    }
}

/// One policy drop as listed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DropRow {
    /// Seconds since boot (the kernel's monotonic clock) at the drop.
    pub time_s: f64,
    /// "ingress" (the destination's policy denied it) or "egress" (the source's).
    pub direction: &'static str,
    /// "TCP", "UDP", "ICMP" or the protocol number.
    pub proto: String,
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port.
    pub dport: u16,
    /// The peer's identity on this node.
    pub identity: u32,
}

fn direction_name(direction: u8) -> &'static str {
    if direction == DIR_INGRESS {
        "ingress"
    } else {
        "egress"
    }
}

impl From<PolicyDrop> for DropRow {
    fn from(drop: PolicyDrop) -> Self {
        Self {
            time_s: drop.time_ns as f64 / 1e9,
            direction: direction_name(drop.flow.direction),
            proto: protocol_name(drop.flow.proto),
            src: Ipv4Addr::from(drop.flow.src),
            sport: u16::from_be(drop.flow.sport),
            dst: Ipv4Addr::from(drop.flow.dst),
            dport: u16::from_be(drop.flow.dport),
            identity: drop.identity,
        }
    }
}

/// Hands every policy drop waiting in the node's event ring buffer to `each`, oldest first;
/// with `follow`, keeps waiting for more (polling every 100 ms) until the process ends.
pub fn read_drops(
    pins: &NodePins,
    follow: bool,
    mut each: impl FnMut(DropRow),
) -> Result<(), DatapathError> {
    let mut ring: aya::maps::RingBuf<MapData> = open_map(pins, POLICY_EVENTS_MAP)?;
    loop {
        while let Some(item) = ring.next() {
            if item.len() >= std::mem::size_of::<PolicyDrop>() {
                // SAFETY: the program writes whole PolicyDrop records; read unaligned from the
                // ring's memory.
                let drop = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<PolicyDrop>()) };
                each(drop.into());
            }
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One allow rule as listed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RuleRow {
    /// The local endpoint.
    pub endpoint: Ipv4Addr,
    /// "ingress" or "egress".
    pub direction: &'static str,
    /// The peer identity (0: any peer).
    pub identity: u32,
    /// Protocol ("any" for every protocol).
    pub proto: String,
    /// Ports ("any", one port, or first-last).
    pub ports: String,
}

/// The node's policy state as listed by `flotilla-agent bpf policy`.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PolicyListing {
    /// Allow rules, by endpoint.
    pub rules: Vec<RuleRow>,
    /// Identity cache: prefix -> identity.
    pub ipcache: BTreeMap<String, u32>,
}

impl PolicyMaps {
    /// Everything in the maps, for listing.
    pub fn listing(&self) -> Result<PolicyListing, DatapathError> {
        let rules = self
            .rules()?
            .into_iter()
            .map(|(len, key)| {
                let (proto, ports) = if len <= POLICY_PREFIX_ALL_PORTS {
                    ("any".to_owned(), "any".to_owned())
                } else if len <= POLICY_PREFIX_PROTO {
                    (protocol_name(key.proto), "any".to_owned())
                } else {
                    let span = 1u32 << (POLICY_PREFIX_PROTO + 16 - len);
                    let last = u32::from(key.port) + span - 1;
                    let ports = if span == 1 {
                        key.port.to_string()
                    } else {
                        format!("{}-{last}", key.port)
                    };
                    (protocol_name(key.proto), ports)
                };
                RuleRow {
                    endpoint: Ipv4Addr::from(key.endpoint),
                    direction: direction_name(key.direction),
                    identity: key.identity,
                    proto,
                    ports,
                }
            })
            .collect();
        let ipcache = self
            .ipcache()?
            .into_iter()
            .map(|((address, len), id)| (format!("{address}/{len}"), id))
            .collect();
        Ok(PolicyListing { rules, ipcache })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datapath::reconcile::fake::FakeMap;
    use flotilla_common::services::{PROTO_TCP, PROTO_UDP};

    fn pod(ns: &str, name: &str, ip: &str, node: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "labels": {"pod": name}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "ports": [
                {"name": "serve-81-tcp", "containerPort": 81},
                {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"}
            ]}]},
            "status": {"phase": "Running", "podIP": ip}
        }))
        .unwrap()
    }

    fn namespace(name: &str) -> Namespace {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"ns": name}}
        }))
        .unwrap()
    }

    fn policy(ns: &str, spec: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": ns},
            "spec": spec
        }))
        .unwrap()
    }

    /// x/a on node1, y/b on node2, z/c on node1.
    fn compute(policies: &[NetworkPolicy]) -> (Desired, BTreeMap<Ipv4Addr, u32>) {
        let pods = [
            pod("x", "a", "10.244.1.2", "node1"),
            pod("y", "b", "10.244.2.2", "node2"),
            pod("z", "c", "10.244.1.3", "node1"),
        ];
        let namespaces = [namespace("x"), namespace("y"), namespace("z")];
        let desired = desired(
            &pods.iter().collect::<Vec<_>>(),
            &namespaces.iter().collect::<Vec<_>>(),
            &policies.iter().collect::<Vec<_>>(),
            "node1",
            &mut Identities::default(),
        );
        let ids = desired
            .ipcache
            .iter()
            .filter(|((_, len), _)| *len == 32)
            .map(|((ip, _), id)| (*ip, *id))
            .collect();
        (desired, ids)
    }

    const XA: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
    const YB: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
    const ZC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 3);

    fn allowed(
        desired: &Desired,
        endpoint: Ipv4Addr,
        direction: u8,
        id: u32,
    ) -> Vec<(u32, u8, u16)> {
        desired
            .rules
            .iter()
            .filter(|(_, key)| {
                key.endpoint == endpoint.octets()
                    && key.direction == direction
                    && key.identity == id
            })
            .map(|(len, key)| (*len, key.proto, key.port))
            .collect()
    }

    #[test]
    fn pods_without_policies_are_not_flagged() {
        let (desired, ids) = compute(&[]);
        assert!(desired.flags.is_empty());
        assert!(desired.rules.is_empty());
        assert_eq!(ids.len(), 3);
        assert_eq!(desired.ipcache[&(Ipv4Addr::UNSPECIFIED, 0)], IDENTITY_WORLD);
    }

    #[test]
    fn default_deny_isolates_without_rules() {
        let (desired, _) = compute(&[policy(
            "x",
            serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        )]);
        assert_eq!(
            desired.flags,
            [(XA, EP_POLICY | EP_INGRESS_ISOLATED | EP_EGRESS_ISOLATED)].into()
        );
        assert!(desired.rules.is_empty());
    }

    #[test]
    fn namespace_and_pod_selectors_and_together() {
        let (desired, ids) = compute(&[policy(
            "x",
            serde_json::json!({"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"ns": "y"}}, "podSelector": {"matchLabels": {"pod": "b"}}},
                {"namespaceSelector": {"matchLabels": {"ns": "z"}}, "podSelector": {"matchLabels": {"pod": "b"}}}
            ], "ports": [{"port": 80}, {"port": "serve-81-tcp"}, {"port": 1000, "endPort": 1003, "protocol": "UDP"}]}]}),
        )]);
        assert_eq!(
            desired.flags,
            [(XA, EP_POLICY | EP_INGRESS_ISOLATED)].into()
        );
        assert_eq!(
            allowed(&desired, XA, DIR_INGRESS, ids[&YB]),
            vec![
                (94, PROTO_UDP, 1000),
                (96, PROTO_TCP, 80),
                (96, PROTO_TCP, 81)
            ]
        );
        assert!(allowed(&desired, XA, DIR_INGRESS, ids[&ZC]).is_empty());
    }

    #[test]
    fn ip_blocks_match_pods_and_prefixes_minus_exceptions() {
        let (desired, ids) = compute(&[policy(
            "z",
            serde_json::json!({"podSelector": {}, "egress": [{"to": [
                {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.2.0/24"]}}
            ]}]}),
        )]);
        assert_eq!(
            desired.flags,
            [(ZC, EP_POLICY | EP_INGRESS_ISOLATED | EP_EGRESS_ISOLATED)].into()
        );
        let cidr_id = desired.ipcache[&(Ipv4Addr::new(10, 244, 0, 0), 16)];
        let except_id = desired.ipcache[&(Ipv4Addr::new(10, 244, 2, 0), 24)];
        assert_eq!(allowed(&desired, ZC, DIR_EGRESS, cidr_id), vec![(72, 0, 0)]);
        assert_eq!(
            allowed(&desired, ZC, DIR_EGRESS, ids[&XA]),
            vec![(72, 0, 0)]
        );
        assert!(allowed(&desired, ZC, DIR_EGRESS, except_id).is_empty());
        assert!(allowed(&desired, ZC, DIR_EGRESS, ids[&YB]).is_empty());
        assert!(allowed(&desired, ZC, DIR_EGRESS, IDENTITY_WORLD).is_empty());
    }

    #[test]
    fn egress_named_ports_resolve_on_the_peer() {
        let (desired, ids) = compute(&[policy(
            "x",
            serde_json::json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [
                {"ports": [{"port": "serve-80-udp", "protocol": "UDP"}]}
            ]}),
        )]);
        for peer in [XA, YB, ZC] {
            assert_eq!(
                allowed(&desired, XA, DIR_EGRESS, ids[&peer]),
                vec![(96, PROTO_UDP, 80)]
            );
        }
        assert!(allowed(&desired, XA, DIR_EGRESS, IDENTITY_ANY).is_empty());
    }

    #[test]
    fn port_ranges_become_aligned_blocks() {
        assert_eq!(port_blocks(80, 80), vec![(80, 16)]);
        assert_eq!(port_blocks(80, 81), vec![(80, 15)]);
        assert_eq!(port_blocks(81, 82), vec![(81, 16), (82, 16)]);
        assert_eq!(port_blocks(0, 65535), vec![(0, 0)]);
        let blocks = port_blocks(1000, 2000);
        let covered: u32 = blocks.iter().map(|(_, bits)| 1u32 << (16 - bits)).sum();
        assert_eq!(covered, 1001);
        assert!(blocks.len() <= 30);
    }

    /// The two policy maps in memory.
    #[derive(Default)]
    struct FakePolicyMaps {
        ipcache: FakeMap<Prefix, u32>,
        rules: FakeMap<(u32, PolicyKey), ()>,
    }

    impl MapHandle<Prefix, u32> for FakePolicyMaps {
        type Error = String;
        fn insert(&mut self, key: &Prefix, value: &u32) -> Result<(), String> {
            self.ipcache.insert(key, value)
        }
        fn remove(&mut self, key: &Prefix) -> Result<(), String> {
            MapHandle::remove(&mut self.ipcache, key)
        }
        fn entries(&self) -> Result<Vec<(Prefix, u32)>, String> {
            self.ipcache.entries()
        }
    }

    impl MapHandle<(u32, PolicyKey), ()> for FakePolicyMaps {
        type Error = String;
        fn insert(&mut self, key: &(u32, PolicyKey), value: &()) -> Result<(), String> {
            self.rules.insert(key, value)
        }
        fn remove(&mut self, key: &(u32, PolicyKey)) -> Result<(), String> {
            MapHandle::remove(&mut self.rules, key)
        }
        fn entries(&self) -> Result<Vec<((u32, PolicyKey), ())>, String> {
            self.rules.entries()
        }
    }

    #[test]
    fn flags_wait_for_the_rules_and_removals_wait_for_the_flags() {
        let (open, _) = compute(&[]);
        let (isolated, _) = compute(&[policy(
            "x",
            serde_json::json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}),
        )]);
        let rule = *isolated.rules.first().unwrap();
        let mut maps = FakePolicyMaps::default();
        let mut table = PolicyTable::default();
        let mut flags_written = Vec::new();
        let mut write_flags = |flags: &BTreeMap<Ipv4Addr, u32>| {
            flags_written.push(flags.clone());
            Ok::<_, String>(())
        };
        let report = table.program(&mut maps, &mut write_flags, &open);
        assert!(report.failures.is_empty() && table.is_converged());
        // The allow rule is refused: the endpoint must not be isolated without it.
        maps.rules.failing.insert(rule);
        let report = table.program(&mut maps, &mut write_flags, &isolated);
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert!(!table.is_converged());
        // The retry converges.
        maps.rules.failing.clear();
        let report = table.program(&mut maps, &mut write_flags, &isolated);
        assert!(report.failures.is_empty() && table.is_converged());
        assert_eq!(
            maps.rules.entries.keys().copied().collect::<BTreeSet<_>>(),
            isolated.rules
        );
        // Back to no policy: while the flags cannot be cleared, the rule stays.
        let report = table.program(&mut maps, |_| Err("refused".to_owned()), &open);
        assert!(report.failure_summary().unwrap().contains("flags"));
        assert!(maps.rules.entries.contains_key(&rule));
        let report = table.program(&mut maps, &mut write_flags, &open);
        assert!(report.failures.is_empty() && table.is_converged());
        assert!(maps.rules.entries.is_empty());
        assert_eq!(
            flags_written,
            vec![open.flags.clone(), isolated.flags.clone(), open.flags]
        );
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels: Labels = [("pod".to_owned(), "a".to_owned())].into();
        assert!(selects(&LabelSelector::default(), &labels));
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"pod": "a"},
            "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]
        }))
        .unwrap();
        assert!(selects(&selector, &labels));
        let selector: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["a"]}]
        }))
        .unwrap();
        assert!(!selects(&selector, &labels));
    }
}
