//! L2 announcements of LoadBalancer addresses (MetalLB's and Cilium's L2 mode): for each address
//! in a Service's `status.loadBalancer.ingress`, one node answers ARP for it on the underlay
//! segment, so the segment's clients send the address's traffic to that node, whose
//! `from_underlay` translates it as any Service frontend (every node has the frontends).
//!
//! Which node: every agent that has something to announce renews a short Lease,
//! `kube-node-lease/l2-announcer-<node>`, every second. Each agent ranks the nodes whose Lease
//! it saw move within the Lease's duration by a hash of (node, address), rendezvous hashing as
//! MetalLB ranks its live speakers, and the first in rank among those that may serve the
//! address (under `externalTrafficPolicy: Local`, the nodes with an endpoint) answers. When a
//! node dies its Lease stops moving; every agent drops it once the duration passed, the next in
//! rank writes the address into its `L2_RESPONDER` map and sends gratuitous ARPs, so clients
//! switch at once. Nothing is written per Service: a failover costs the Lease's duration and one
//! ARP, and a node joining or leaving moves only the addresses it ranks first for.
//!
//! Nodes labelled `node.kubernetes.io/exclude-from-external-load-balancers` never announce.
//!
//! An agent that cannot renew its own Lease (the API is away) freezes what it announces rather
//! than drop it: the others cannot tell its silence from death, but traffic still finds a node.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    time::Duration,
};

use aya::maps::{HashMap, MapData};
use flotilla_apimachinery::node_leases::{self, L2_ANNOUNCER_LABEL};
use flotilla_common::{
    announce::{L2_RESPONDER_MAP, L2Responder},
    services::mix64,
};
use futures::StreamExt as _;
use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{Node, Service},
        discovery::v1::{Endpoint, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt as _, watcher},
};
use serde_json::json;
use tokio::{sync::watch, time::Instant};

use super::{
    DatapathError,
    network::{format_mac, map_error, open_map, removed},
    pins::NodePins,
    reconcile::{Changes, MapHandle, Reconciler},
    services::{EndpointState, Mirror, load_balancer_ips},
};
use crate::pods::events::{self, Kind};

/// The label that keeps a node from announcing (upstream's, which cloud load balancers and
/// MetalLB honour too).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// How long an announcer Lease holds unrenewed: a dead node's addresses move this long after
/// its last renewal (Cilium's `l2-announcements-lease-duration`, at the low end of what its
/// documentation suggests for fast failover).
pub const LEASE_DURATION: Duration = Duration::from_secs(3);
/// How often an announcer renews its Lease.
pub const RENEW_PERIOD: Duration = Duration::from_secs(1);
/// How often the owners are judged again while anything is announced: a dead node's Lease is
/// noticed expired within this.
const JUDGE_PERIOD: Duration = Duration::from_millis(200);
/// How many gratuitous ARPs announce a gained address, one a second (one may be lost).
const GRATUITOUS_ARPS: u32 = 3;

/// What one Service asks of the announcers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The Service's uid (for its events).
    pub uid: Option<String>,
    /// Its LoadBalancer addresses.
    pub addresses: Vec<Ipv4Addr>,
    /// The nodes that may answer for them: under `externalTrafficPolicy: Local` those with an
    /// endpoint to serve them; None: any node.
    pub nodes: Option<BTreeSet<String>>,
}

/// What every Service asks, by namespace/name; None until the service sync listed them all.
pub type Announcements = Option<BTreeMap<String, Announcement>>;

/// What `service` asks of the announcers: None for a Service that is no LoadBalancer of this
/// cluster's own (one with a `loadBalancerClass` is another implementation's) or that has no
/// address yet.
pub fn announcement(service: &Service, slices: &[&EndpointSlice]) -> Option<Announcement> {
    let spec = service.spec.as_ref()?;
    if spec
        .load_balancer_class
        .as_deref()
        .is_some_and(|class| !class.is_empty())
    {
        return None;
    }
    let addresses = load_balancer_ips(service);
    if addresses.is_empty() {
        return None;
    }
    let nodes = (spec.external_traffic_policy.as_deref() == Some("Local")).then(|| {
        serving_nodes(
            slices
                .iter()
                .filter(|slice| slice.address_type == "IPv4")
                .flat_map(|slice| &slice.endpoints),
        )
    });
    Some(Announcement {
        uid: service.metadata.uid.clone(),
        addresses,
        nodes,
    })
}

/// The nodes with a ready endpoint, or while none is ready those with a terminating one that
/// still serves: where a `Local` policy finds backends.
fn serving_nodes<'a>(endpoints: impl Iterator<Item = &'a Endpoint>) -> BTreeSet<String> {
    let mut ready = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    for endpoint in endpoints {
        let Some(node) = endpoint.node_name.clone() else {
            continue;
        };
        match EndpointState::of(endpoint) {
            Some(EndpointState::Ready) => ready.insert(node),
            Some(EndpointState::Terminating) => terminating.insert(node),
            None => false,
        };
    }
    if ready.is_empty() { terminating } else { ready }
}

/// The node that answers for `address` among `candidates`: the first in rank by a hash of
/// (node, address). The hash is fixed (FNV-1a, then MurmurHash3's finaliser), so agents of
/// different builds agree.
pub fn owner<'a>(
    candidates: impl IntoIterator<Item = &'a str>,
    address: Ipv4Addr,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .max_by_key(|node| (rank(node, address), *node))
}

fn rank(node: &str, address: Ipv4Addr) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node.bytes().chain([0]).chain(address.octets()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix64(hash)
}

/// The addresses `node` answers for, `live` being the nodes whose announcer is alive.
pub fn answered_by(
    node: &str,
    live: &BTreeSet<&str>,
    announcements: &BTreeMap<String, Announcement>,
) -> BTreeSet<Ipv4Addr> {
    let mut answered = BTreeSet::new();
    for announcement in announcements.values() {
        for address in &announcement.addresses {
            let candidates = live.iter().copied().filter(|candidate| {
                announcement
                    .nodes
                    .as_ref()
                    .is_none_or(|nodes| nodes.contains(*candidate))
            });
            if owner(candidates, *address) == Some(node) {
                answered.insert(*address);
            }
        }
    }
    answered
}

/// The announcer Leases as this agent saw them: when each last moved, by this agent's clock (as
/// client-go's leader election judges Leases, so the nodes' clocks need not agree).
#[derive(Debug, Default)]
pub struct Peers {
    seen: BTreeMap<String, Sighting>,
}

#[derive(Debug)]
struct Sighting {
    renew_time: Option<Timestamp>,
    duration: Duration,
    /// When it last moved; None: not since it was first seen, when it had expired already.
    moved: Option<Instant>,
}

impl Peers {
    /// Records `lease` as seen at `now`. A Lease seen for the first time counts from its
    /// renewTime by the wall clock (`wall_now`), so an agent that just started does not take a
    /// node that died a while ago for alive.
    pub fn observe(&mut self, lease: &Lease, now: Instant, wall_now: Timestamp) {
        let Some(spec) = lease.spec.as_ref() else {
            return;
        };
        let Some(node) = spec.holder_identity.clone() else {
            return;
        };
        let renew_time = spec.renew_time.as_ref().map(|time| time.0);
        let duration = Duration::from_secs(
            spec.lease_duration_seconds
                .and_then(|seconds| u64::try_from(seconds).ok())
                .unwrap_or(0),
        );
        match self.seen.get_mut(&node) {
            Some(sighting) => {
                if sighting.renew_time != renew_time {
                    sighting.renew_time = renew_time;
                    sighting.moved = Some(now);
                }
                sighting.duration = duration;
            }
            None => {
                // A renewTime ahead of this clock counts as now.
                let moved = renew_time
                    .map(|time| {
                        Duration::try_from(wall_now.duration_since(time)).unwrap_or_default()
                    })
                    .filter(|age| *age < duration)
                    .and_then(|age| now.checked_sub(age));
                self.seen.insert(
                    node,
                    Sighting {
                        renew_time,
                        duration,
                        moved,
                    },
                );
            }
        }
    }

    /// Forgets the Lease of `node` (deleted).
    pub fn forget(&mut self, node: &str) {
        self.seen.remove(node);
    }

    /// The nodes whose Lease moved within its duration before `now`.
    pub fn live(&self, now: Instant) -> impl Iterator<Item = &str> {
        self.seen
            .iter()
            .filter(move |(_, sighting)| {
                sighting
                    .moved
                    .is_some_and(|moved| now.duration_since(moved) <= sighting.duration)
            })
            .map(|(node, _)| node.as_str())
    }
}

/// The node's `L2_RESPONDER` map: the addresses it answers ARP for.
pub struct ResponderMap {
    map: HashMap<MapData, [u8; 4], L2Responder>,
}

impl ResponderMap {
    /// Opens the node's pinned map.
    pub fn open(pins: &NodePins) -> Result<Self, DatapathError> {
        Ok(Self {
            map: open_map(pins, L2_RESPONDER_MAP)?,
        })
    }

    /// Every announced address, for listing (`flotilla-agent bpf announced`).
    pub fn rows(&self) -> Result<Vec<AnnouncedRow>, DatapathError> {
        Ok(self
            .entries()?
            .into_iter()
            .map(|(address, responder)| AnnouncedRow {
                address: Ipv4Addr::from(address),
                ifindex: responder.ifindex,
                mac: format_mac(&responder.mac),
            })
            .collect())
    }
}

/// One announced address as `flotilla-agent bpf announced` lists it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AnnouncedRow {
    /// The address.
    pub address: Ipv4Addr,
    /// The link ARP requests for it are answered on.
    pub ifindex: u32,
    /// The MAC the answers give.
    pub mac: String,
}

impl MapHandle<[u8; 4], L2Responder> for ResponderMap {
    type Error = DatapathError;

    fn insert(&mut self, key: &[u8; 4], value: &L2Responder) -> Result<(), DatapathError> {
        self.map
            .insert(key, value, 0)
            .map_err(map_error(L2_RESPONDER_MAP))
    }

    fn remove(&mut self, key: &[u8; 4]) -> Result<(), DatapathError> {
        removed(self.map.remove(key), L2_RESPONDER_MAP)
    }

    fn entries(&self) -> Result<Vec<([u8; 4], L2Responder)>, DatapathError> {
        self.map
            .iter()
            .map(|entry| entry.map_err(map_error(L2_RESPONDER_MAP)))
            .collect()
    }
}

/// The underlay link addresses are announced on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// Its ifindex.
    pub ifindex: u32,
    /// Its MAC: what ARP answers give for an announced address.
    pub mac: [u8; 6],
}

/// Who announces.
#[derive(Clone, Debug)]
pub struct Announcer {
    /// This node's name.
    pub node: String,
    /// Its Node's uid (the owner of its Lease, so the Lease goes with the Node).
    pub node_uid: Option<String>,
    /// The link to announce on.
    pub link: Link,
}

/// An unbroken run of successful renewals of this agent's Lease.
#[derive(Clone, Copy, Debug)]
struct Renewals {
    since: Instant,
    last: Instant,
}

/// Announces, until the task is dropped, the addresses this node ranks first for among the
/// live announcers (see the module docs); `announcements` comes from the service sync.
pub async fn run(
    client: Client,
    announcer: Announcer,
    mut map: ResponderMap,
    mut announcements: watch::Receiver<Announcements>,
) {
    let mut responders = Reconciler::adopt(&map).unwrap_or_else(|err| {
        tracing::warn!("reading the L2 responder map: {err}");
        Reconciler::new()
    });
    let (wanted, wanted_rx) = watch::channel(false);
    let (renewals_tx, mut renewals) = watch::channel(None::<Renewals>);
    let heartbeat = tokio::spawn(heartbeat(
        client.clone(),
        announcer.clone(),
        wanted_rx,
        renewals_tx,
    ));
    let _heartbeat = crate::AbortOnDrop(heartbeat);
    let lease_events = watcher(
        Api::<Lease>::namespaced(client.clone(), node_leases::NAMESPACE),
        watcher::Config::default().labels(L2_ANNOUNCER_LABEL),
    )
    .default_backoff();
    futures::pin_mut!(lease_events);
    // Nodes kept from announcing, as upstream's service controllers keep them from load
    // balancers: usually none, so the watch costs nothing.
    let excluded_events = watcher(
        Api::<Node>::all(client.clone()),
        watcher::Config::default().labels(EXCLUDE_LABEL),
    )
    .default_backoff();
    futures::pin_mut!(excluded_events);
    let mut exclusions = Mirror::<Node>::new();
    let mut leases = Mirror::<Lease>::new();
    let mut peers = Peers::default();
    let mut judge = tokio::time::interval(JUDGE_PERIOD);
    judge.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let judging = *wanted.borrow() || !responders.is_converged();
        tokio::select! {
            event = lease_events.next() => match event {
                Some(Ok(event)) => {
                    let (now, wall_now) = (Instant::now(), Timestamp::now());
                    for (_, old, new) in leases.apply(event) {
                        match (old, new) {
                            (_, Some(lease)) => peers.observe(&lease, now, wall_now),
                            (Some(lease), None) => {
                                if let Some(node) =
                                    lease.spec.and_then(|spec| spec.holder_identity)
                                {
                                    peers.forget(&node);
                                }
                            }
                            (None, None) => {}
                        }
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!("watching the L2 announcer leases: {err}");
                    continue;
                }
                None => break,
            },
            event = excluded_events.next() => match event {
                Some(Ok(event)) => {
                    exclusions.apply(event);
                }
                Some(Err(err)) => {
                    tracing::warn!("watching the nodes excluded from load balancers: {err}");
                    continue;
                }
                None => break,
            },
            changed = announcements.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = renewals.changed() => {}
            _ = judge.tick(), if judging => {}
        }
        let all = announcements.borrow().clone();
        let Some(all) = all else {
            continue;
        };
        if !(leases.synced && exclusions.synced) {
            continue;
        }
        let excluded: BTreeSet<&str> = exclusions
            .objects
            .values()
            .filter_map(|node| node.metadata.name.as_deref())
            .collect();
        let announcing = !all.is_empty() && !excluded.contains(announcer.node.as_str());
        wanted.send_if_modified(|wanted| std::mem::replace(wanted, announcing) != announcing);
        let now = Instant::now();
        let answered = if !announcing {
            BTreeSet::new()
        } else {
            // Judge only from a run of renewals as long as a Lease lasts: by then every live
            // peer renewed too, so none is taken for dead; before it (starting, or back after
            // the API was away) keep what is announced.
            let Some(run) = *renewals.borrow() else {
                continue;
            };
            if now.duration_since(run.last) > LEASE_DURATION
                || run.last.duration_since(run.since) < LEASE_DURATION
            {
                continue;
            }
            let mut live: BTreeSet<&str> = peers
                .live(now)
                .filter(|node| !excluded.contains(node))
                .collect();
            live.insert(&announcer.node);
            answered_by(&announcer.node, &live, &all)
        };
        let responder = L2Responder {
            ifindex: announcer.link.ifindex,
            mac: announcer.link.mac,
            pad: [0; 2],
        };
        responders.set_all(
            answered
                .iter()
                .map(|address| (address.octets(), responder))
                .collect(),
        );
        if responders.is_converged() {
            continue;
        }
        let pass = responders.apply(&mut map, Changes::All);
        for failure in &pass.failed {
            tracing::warn!("programming the L2 responder map: {failure}");
        }
        for address in pass.written.iter().map(|octets| Ipv4Addr::from(*octets)) {
            tracing::info!(%address, "announcing");
            tokio::spawn(announce_gratuitously(announcer.link, address));
            if let Some((name, announcement)) = all
                .iter()
                .find(|(_, announcement)| announcement.addresses.contains(&address))
            {
                record_assigned(&client, &announcer.node, name, announcement);
            }
        }
        for address in pass.deleted.iter().map(|octets| Ipv4Addr::from(*octets)) {
            tracing::info!(%address, "no longer announcing");
        }
    }
}

/// Renews this node's announcer Lease every [`RENEW_PERIOD`] while `wanted`, reporting each
/// run of successful renewals.
async fn heartbeat(
    client: Client,
    announcer: Announcer,
    mut wanted: watch::Receiver<bool>,
    renewals: watch::Sender<Option<Renewals>>,
) {
    let leases: Api<Lease> = Api::namespaced(client, node_leases::NAMESPACE);
    let name = node_leases::l2_announcer_lease(&announcer.node);
    let mut failing = false;
    loop {
        if !*wanted.borrow_and_update() {
            renewals.send_replace(None);
            if wanted.changed().await.is_err() {
                return;
            }
            continue;
        }
        let started = Instant::now();
        match renew(&leases, &name, &announcer).await {
            Ok(()) => {
                failing = false;
                renewals.send_modify(|run| {
                    let since = match run {
                        Some(run) if started.duration_since(run.last) <= LEASE_DURATION => {
                            run.since
                        }
                        _ => started,
                    };
                    *run = Some(Renewals {
                        since,
                        last: started,
                    });
                });
            }
            // Once per outage: the API being away is logged by every other task too.
            Err(err) if !failing => {
                failing = true;
                tracing::warn!(lease = %name, "renewing the L2 announcer lease: {err}");
            }
            Err(_) => {}
        }
        tokio::select! {
            () = tokio::time::sleep_until(started + RENEW_PERIOD) => {}
            changed = wanted.changed() => if changed.is_err() { return },
        }
    }
}

/// Renews the Lease `name`, creating it if it is missing.
async fn renew(leases: &Api<Lease>, name: &str, announcer: &Announcer) -> Result<(), kube::Error> {
    let now = MicroTime(Timestamp::now());
    let renewed = leases
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "holderIdentity": announcer.node,
                "renewTime": now,
            }})),
        )
        .await;
    match renewed {
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        other => return other.map(|_| ()),
    }
    let owner = announcer.node_uid.as_ref().map(
        |uid| json!([{"apiVersion": "v1", "kind": "Node", "name": announcer.node, "uid": uid}]),
    );
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "namespace": node_leases::NAMESPACE,
            "labels": {L2_ANNOUNCER_LABEL: announcer.node},
            "ownerReferences": owner,
        },
        "spec": {
            "holderIdentity": announcer.node,
            "leaseDurationSeconds": LEASE_DURATION.as_secs(),
            "acquireTime": now,
            "renewTime": now,
        },
    }))
    .map_err(kube::Error::SerdeError)?;
    match leases.create(&PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        // Created meanwhile (an earlier attempt that timed out): the next renewal patches it.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}

/// Tells the Service that this node answers for its address, as MetalLB's speaker does
/// (`kubectl describe service` shows it).
fn record_assigned(client: &Client, node: &str, name: &str, announcement: &Announcement) {
    let (namespace, service) = name.split_once('/').unwrap_or(("default", name));
    let service = Service {
        metadata: ObjectMeta {
            name: Some(service.to_owned()),
            namespace: Some(namespace.to_owned()),
            uid: announcement.uid.clone(),
            ..ObjectMeta::default()
        },
        ..Service::default()
    };
    events::record_about(
        client,
        node,
        "flotilla-l2-announcer",
        &service,
        Kind::Normal,
        "nodeAssigned",
        format!("announcing from node {node:?} with protocol \"layer2\""),
    );
}

/// Sends [`GRATUITOUS_ARPS`] gratuitous ARPs for `address` on `link`, a second apart.
async fn announce_gratuitously(link: Link, address: Ipv4Addr) {
    for attempt in 0..GRATUITOUS_ARPS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if let Err(err) = send_gratuitous_arp(link, address) {
            tracing::warn!(%address, "sending a gratuitous ARP: {err}");
            return;
        }
    }
}

/// The gratuitous ARP for `address` at `mac`: a broadcast request whose sender and target
/// address are both `address` (RFC 5227's announcement), which every neighbour holding an entry
/// for the address takes at once (Linux overrides its locktime for one).
fn gratuitous_arp(mac: [u8; 6], address: Ipv4Addr) -> [u8; 42] {
    let mut frame = [0u8; 42];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, address lengths 6 and 4, request.
    frame[14..22].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    frame[22..28].copy_from_slice(&mac);
    frame[28..32].copy_from_slice(&address.octets());
    frame[38..42].copy_from_slice(&address.octets());
    frame
}

/// EtherType of ARP.
const ETH_P_ARP: u16 = 0x0806;

/// Sends one gratuitous ARP out of `link` through a packet socket of the agent's network
/// namespace.
fn send_gratuitous_arp(link: Link, address: Ipv4Addr) -> std::io::Result<()> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
    let frame = gratuitous_arp(link.mac, address);
    // Protocol 0: the socket only sends, it receives nothing.
    // SAFETY: plain syscall; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor just returned by socket(2), owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = i32::try_from(link.ifindex).unwrap_or(0);
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the frame and address outlive the call; the lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&raw const to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::{
        coordination::v1::LeaseSpec,
        core::v1::{LoadBalancerIngress, LoadBalancerStatus, ServiceSpec, ServiceStatus},
        discovery::v1::EndpointConditions,
    };

    use super::*;

    fn lb_service(ips: &[&str], local: bool, class: Option<&str>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("LoadBalancer".into()),
                external_traffic_policy: Some(if local { "Local" } else { "Cluster" }.into()),
                load_balancer_class: class.map(Into::into),
                ..ServiceSpec::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(
                        ips.iter()
                            .map(|ip| LoadBalancerIngress {
                                ip: Some((*ip).into()),
                                ip_mode: Some("VIP".into()),
                                ..LoadBalancerIngress::default()
                            })
                            .collect(),
                    ),
                }),
                ..ServiceStatus::default()
            }),
        }
    }

    fn slice(endpoints: &[(&str, bool)]) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: endpoints
                .iter()
                .enumerate()
                .map(|(index, (node, ready))| Endpoint {
                    addresses: vec![format!("10.244.0.{}", index + 2)],
                    node_name: Some((*node).into()),
                    conditions: Some(EndpointConditions {
                        ready: Some(*ready),
                        serving: Some(*ready),
                        terminating: Some(false),
                    }),
                    ..Endpoint::default()
                })
                .collect(),
            ..EndpointSlice::default()
        }
    }

    #[test]
    fn a_load_balancer_of_its_own_with_an_address_is_announced() {
        let service = lb_service(&["192.168.78.240"], false, None);
        let announced = announcement(&service, &[]).expect("announced");
        assert_eq!(announced.addresses, vec![Ipv4Addr::new(192, 168, 78, 240)]);
        assert_eq!(announced.nodes, None);
        assert_eq!(announced.uid.as_deref(), Some("u1"));
        // Another implementation's, or no address yet: nothing.
        assert!(announcement(&lb_service(&["192.168.78.240"], false, Some("x/y")), &[]).is_none());
        assert!(announcement(&lb_service(&[], false, None), &[]).is_none());
        let mut node_port = service.clone();
        node_port.spec.as_mut().expect("spec").type_ = Some("NodePort".into());
        assert!(announcement(&node_port, &[]).is_none());
    }

    #[test]
    fn a_local_policy_announces_only_from_nodes_with_a_ready_endpoint() {
        let service = lb_service(&["192.168.78.240"], true, None);
        let endpoints = slice(&[("n1", true), ("n2", false), ("n3", true)]);
        let announced = announcement(&service, &[&endpoints]).expect("announced");
        let nodes: BTreeSet<String> = ["n1", "n3"].map(String::from).into();
        assert_eq!(announced.nodes, Some(nodes));
        // No endpoint anywhere: no node may answer.
        let announced = announcement(&service, &[]).expect("announced");
        assert_eq!(announced.nodes, Some(BTreeSet::new()));
    }

    #[test]
    fn owners_spread_and_a_leaving_node_moves_only_its_own_addresses() {
        let nodes = ["n1", "n2", "n3", "n4"];
        let addresses: Vec<Ipv4Addr> = (0..200).map(|i| Ipv4Addr::new(10, 0, 0, i)).collect();
        let before: Vec<&str> = addresses
            .iter()
            .map(|a| owner(nodes, *a).expect("an owner"))
            .collect();
        for node in nodes {
            let count = before.iter().filter(|owner| **owner == node).count();
            assert!((25..=75).contains(&count), "{node} owns {count} of 200");
        }
        let after: Vec<&str> = addresses
            .iter()
            .map(|a| owner(["n1", "n2", "n4"], *a).expect("an owner"))
            .collect();
        for (was, is) in before.iter().zip(&after) {
            if *was != "n3" {
                assert_eq!(was, is, "only n3's addresses move");
            }
        }
        assert_eq!(owner([], addresses[0]), None);
    }

    #[test]
    fn each_address_is_answered_by_exactly_one_live_allowed_node() {
        let mut all = BTreeMap::new();
        for i in 0..20u8 {
            let mut announced =
                announcement(&lb_service(&[&format!("10.0.0.{i}")], false, None), &[])
                    .expect("announced");
            if i % 2 == 0 {
                announced.nodes = Some(["n2".to_owned()].into());
            }
            all.insert(format!("default/s{i}"), announced);
        }
        let live: BTreeSet<&str> = ["n1", "n2", "n3"].into();
        let by_node: Vec<BTreeSet<Ipv4Addr>> = ["n1", "n2", "n3"]
            .iter()
            .map(|node| answered_by(node, &live, &all))
            .collect();
        let total: usize = by_node.iter().map(BTreeSet::len).sum();
        assert_eq!(total, 20, "every address once: {by_node:?}");
        for i in (0..20u8).step_by(2) {
            assert!(by_node[1].contains(&Ipv4Addr::new(10, 0, 0, i)));
        }
        // The only allowed node dead: nobody answers for those addresses.
        let live: BTreeSet<&str> = ["n1", "n3"].into();
        let answered: usize = ["n1", "n3"]
            .iter()
            .map(|node| answered_by(node, &live, &all).len())
            .sum();
        assert_eq!(answered, 10);
    }

    fn lease(node: &str, renew: Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(node.into()),
                lease_duration_seconds: Some(3),
                renew_time: Some(MicroTime(renew)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_lease_that_stops_moving_expires_after_its_duration_by_the_local_clock() {
        let start = Instant::now();
        let wall = Timestamp::now();
        let mut peers = Peers::default();
        peers.observe(&lease("n1", wall), start, wall);
        // A Lease last renewed a minute ago by the wall clock is dead on first sight.
        let old = wall - Duration::from_secs(60);
        peers.observe(&lease("n2", old), start, wall);
        assert_eq!(peers.live(start).collect::<Vec<_>>(), vec!["n1"]);
        // The same renewTime seen again later does not count as a renewal.
        let later = start + Duration::from_secs(2);
        peers.observe(&lease("n1", wall), later, wall);
        assert_eq!(peers.live(start + Duration::from_secs(3)).count(), 1);
        assert_eq!(peers.live(start + Duration::from_millis(3_100)).count(), 0);
        // A new renewTime does, whatever the clocks say.
        peers.observe(&lease("n2", old + Duration::from_secs(1)), later, wall);
        assert_eq!(
            peers
                .live(later + Duration::from_millis(1_500))
                .collect::<Vec<_>>(),
            vec!["n2"]
        );
        peers.forget("n2");
        assert_eq!(peers.live(later + Duration::from_millis(1_500)).count(), 0);
    }

    #[test]
    fn the_gratuitous_arp_announces_the_address_at_the_mac() {
        let mac = [2, 0, 0, 0, 0, 1];
        let frame = gratuitous_arp(mac, Ipv4Addr::new(192, 168, 78, 240));
        assert_eq!(&frame[..6], &[0xff; 6]);
        assert_eq!(&frame[6..12], &mac);
        assert_eq!(&frame[12..14], &[0x08, 0x06]);
        assert_eq!(&frame[20..22], &[0, 1], "a request");
        assert_eq!(&frame[22..28], &mac, "sender hardware address");
        assert_eq!(&frame[28..32], &[192, 168, 78, 240], "sender address");
        assert_eq!(&frame[32..38], &[0; 6], "target hardware address unknown");
        assert_eq!(&frame[38..42], &[192, 168, 78, 240], "target = sender");
    }
}
