//! Cluster DNS (the job of CoreDNS's `kubernetes` plugin): watches Services, EndpointSlices and
//! Pods, keeps the zone of `<cluster domain>` equal to them ([`records`]) and answers it over
//! UDP and TCP ([`server`]); other names go to an upstream server or are refused.

pub mod records;
pub mod server;

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{StreamExt as _, stream::BoxStream};
use k8s_openapi::api::{
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, ResourceExt as _,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::task::JoinHandle;

use records::{Entry, Owner, SERVICE_NAME_LABEL, Zone};
use server::{Handler, Serving};

/// What can go wrong running the DNS server.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The listen address could not be bound.
    #[error(
        "cannot listen on {address} (UDP and TCP): {source}; is another DNS server running there, \
         or does the port need root (below 1024)?"
    )]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Talking to the upstream server failed.
    #[error("forwarding to the upstream DNS server {upstream}: {source}")]
    Upstream {
        /// The upstream server.
        upstream: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The upstream server did not answer in time.
    #[error(
        "the upstream DNS server {upstream} did not answer within {:?}",
        server::UPSTREAM_TIMEOUT
    )]
    UpstreamTimeout {
        /// The upstream server.
        upstream: SocketAddr,
    },
    /// The upstream server answered something unusable.
    #[error("the upstream DNS server {upstream} sent an unusable answer: {reason}")]
    UpstreamAnswer {
        /// The upstream server.
        upstream: SocketAddr,
        /// What was wrong.
        reason: String,
    },
    /// A listener stopped.
    #[error("the DNS server stopped: {0}")]
    Serve(String),
    /// The kubeconfig could not be used.
    #[error("cannot use the kubeconfig {path}: {reason}; pass --kubeconfig with a readable file")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The watch task ended (it only does when it panicked or was cancelled).
    #[error("the watch of Services, EndpointSlices and Pods ended: {0}")]
    Watch(String),
}

/// Settings of the DNS server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to answer on, over UDP and TCP.
    pub listen: SocketAddr,
    /// The cluster domain, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// Where names outside the cluster domain are forwarded; without it they are refused.
    pub upstream: Option<SocketAddr>,
}

/// A running DNS server; dropping it stops it.
#[derive(Debug)]
pub struct Dns {
    /// The address it answers on (the bound port when `listen` asked for port 0).
    pub address: SocketAddr,
    serving: JoinHandle<Result<(), DnsError>>,
    watching: JoinHandle<()>,
}

/// A DNS server with its sockets bound, answering SERVFAIL for cluster names until
/// [`Bound::start`] gives it the API to watch (so a busy port is found before anything else
/// starts).
#[derive(Debug)]
pub struct Bound {
    /// The address it answers on (the bound port when `listen` asked for port 0).
    pub address: SocketAddr,
    config: Config,
    zone: Arc<RwLock<Zone>>,
    synced: Arc<AtomicBool>,
    serving: Serving,
}

impl Bound {
    /// Starts watching the API through `client` and keeps answering.
    pub fn start(self, client: Client) -> Dns {
        let Self {
            address,
            config,
            zone,
            synced,
            mut serving,
        } = self;
        let watching = tokio::spawn(watch(client, config.cluster_domain.clone(), zone, synced));
        let serving = tokio::spawn(async move { serving.wait().await });
        tracing::info!(%address, domain = %config.cluster_domain, upstream = ?config.upstream, "cluster DNS serving");
        Dns {
            address,
            serving,
            watching,
        }
    }
}

impl Dns {
    /// Binds the sockets (UDP and TCP) of `config.listen`.
    pub async fn bind(config: Config) -> Result<Bound, DnsError> {
        let zone = Arc::new(RwLock::new(Zone::new(&config.cluster_domain)));
        let synced = Arc::new(AtomicBool::new(false));
        let handler = Handler::new(zone.clone(), synced.clone(), config.upstream);
        let serving = Serving::bind(config.listen, handler).await?;
        Ok(Bound {
            address: serving.address,
            config,
            zone,
            synced,
            serving,
        })
    }

    /// Binds the sockets, starts watching the API through `client` and answering.
    pub async fn start(client: Client, config: Config) -> Result<Self, DnsError> {
        Ok(Self::bind(config).await?.start(client))
    }

    /// Runs until the server or the watch stops (an error either way).
    pub async fn wait(&mut self) -> Result<(), DnsError> {
        tokio::select! {
            result = &mut self.serving => match result {
                Ok(result) => result,
                Err(err) => Err(DnsError::Serve(err.to_string())),
            },
            result = &mut self.watching => Err(DnsError::Watch(match result {
                Ok(()) => "the watch streams ended".to_owned(),
                Err(err) => err.to_string(),
            })),
        }
    }

    /// Stops serving and waits until the sockets are closed, so the port can be bound again.
    pub async fn stop(mut self) {
        self.serving.abort();
        self.watching.abort();
        let _ = (&mut self.serving).await;
        let _ = (&mut self.watching).await;
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.serving.abort();
        self.watching.abort();
    }
}

/// The first nameserver of a resolv.conf (port 53) that is not one of `except` (the cluster
/// DNS itself must not forward to itself): where CoreDNS's `forward . /etc/resolv.conf` sends
/// names outside the cluster.
pub fn upstream_from_resolv_conf(text: &str, except: &[std::net::IpAddr]) -> Option<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next())?
        })
        .filter_map(|address| address.parse::<std::net::IpAddr>().ok())
        .find(|ip| !except.contains(ip))
        .map(|ip| SocketAddr::new(ip, 53))
}

/// A client for the API server in the kubeconfig at `path`.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client, DnsError> {
    let error = |reason: String| DnsError::Kubeconfig {
        path: path.to_owned(),
        reason,
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| error(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| error(e.to_string()))?;
    Client::try_from(config).map_err(|e| error(e.to_string()))
}

/// Runs the DNS server with the credentials in `kubeconfig` until it fails.
pub async fn run(kubeconfig: &Path, config: Config) -> Result<(), DnsError> {
    let client = client_from_kubeconfig(kubeconfig).await?;
    Dns::start(client, config).await?.wait().await
}

type Key = (String, String);

// Boxed: the three events differ a lot in size.
enum Change {
    Service(Box<watcher::Event<Service>>),
    Slice(Box<watcher::Event<EndpointSlice>>),
    Pod(Box<watcher::Event<Pod>>),
}

fn key<K: kube::Resource>(object: &K) -> Key {
    (object.namespace().unwrap_or_default(), object.name_any())
}

fn slice_service(slice: &EndpointSlice) -> Option<Key> {
    let service = slice.labels().get(SERVICE_NAME_LABEL)?;
    Some((slice.namespace().unwrap_or_default(), service.clone()))
}

/// The API objects the zone is computed from, and what it has seen of each watch.
struct State {
    domain: String,
    zone: Arc<RwLock<Zone>>,
    services: HashMap<Key, Service>,
    slices: HashMap<Key, EndpointSlice>,
    // Service -> names of its EndpointSlices.
    slices_of: HashMap<Key, BTreeSet<String>>,
    // Re-lists in progress.
    listing_services: Option<HashMap<Key, Service>>,
    listing_slices: Option<HashMap<Key, EndpointSlice>>,
    listing_pods: Option<HashMap<Key, Vec<Entry>>>,
    listed: [bool; 3],
}

impl State {
    fn set(&self, owner: &Owner, entries: Vec<Entry>) {
        match self.zone.write() {
            Ok(mut zone) => zone.set(owner, entries),
            Err(poisoned) => poisoned.into_inner().set(owner, entries),
        }
    }

    fn refresh_service(&self, (namespace, name): &Key) {
        let key = (namespace.clone(), name.clone());
        let entries = self.services.get(&key).map_or_else(Vec::new, |service| {
            let slices: Vec<&EndpointSlice> = self
                .slices_of
                .get(&key)
                .into_iter()
                .flatten()
                .filter_map(|slice| self.slices.get(&(namespace.clone(), slice.clone())))
                .collect();
            records::service_records(&self.domain, service, &slices)
        });
        self.set(&Owner::Service(key.0, key.1), entries);
    }

    fn insert_slice(&mut self, slice: EndpointSlice) -> Option<Key> {
        let key = key(&slice);
        let service = slice_service(&slice);
        if let Some(service) = &service {
            self.slices_of
                .entry(service.clone())
                .or_default()
                .insert(key.1.clone());
        }
        self.slices.insert(key, slice);
        service
    }

    fn remove_slice(&mut self, key: &Key) -> Option<Key> {
        let slice = self.slices.remove(key)?;
        let service = slice_service(&slice)?;
        if let Some(names) = self.slices_of.get_mut(&service) {
            names.remove(&key.1);
            if names.is_empty() {
                self.slices_of.remove(&service);
            }
        }
        Some(service)
    }

    fn apply(&mut self, change: Change) {
        match change {
            Change::Service(event) => self.service_event(*event),
            Change::Slice(event) => self.slice_event(*event),
            Change::Pod(event) => self.pod_event(*event),
        }
    }

    fn service_event(&mut self, event: watcher::Event<Service>) {
        match event {
            watcher::Event::Apply(service) => {
                let key = key(&service);
                self.services.insert(key.clone(), service);
                self.refresh_service(&key);
            }
            watcher::Event::Delete(service) => {
                let key = key(&service);
                self.services.remove(&key);
                self.refresh_service(&key);
            }
            watcher::Event::Init => self.listing_services = Some(HashMap::new()),
            watcher::Event::InitApply(service) => {
                if let Some(listing) = &mut self.listing_services {
                    listing.insert(key(&service), service);
                }
            }
            watcher::Event::InitDone => {
                let Some(listing) = self.listing_services.take() else {
                    return;
                };
                let old = std::mem::replace(&mut self.services, listing);
                for key in old
                    .keys()
                    .chain(self.services.keys())
                    .collect::<BTreeSet<_>>()
                {
                    self.refresh_service(key);
                }
                self.listed[0] = true;
            }
        }
    }

    fn slice_event(&mut self, event: watcher::Event<EndpointSlice>) {
        match event {
            watcher::Event::Apply(slice) => {
                let key = key(&slice);
                let before = self.remove_slice(&key);
                let after = self.insert_slice(slice);
                for service in before.iter().chain(after.iter()) {
                    self.refresh_service(service);
                }
            }
            watcher::Event::Delete(slice) => {
                if let Some(service) = self.remove_slice(&key(&slice)) {
                    self.refresh_service(&service);
                }
            }
            watcher::Event::Init => self.listing_slices = Some(HashMap::new()),
            watcher::Event::InitApply(slice) => {
                if let Some(listing) = &mut self.listing_slices {
                    listing.insert(key(&slice), slice);
                }
            }
            watcher::Event::InitDone => {
                let Some(listing) = self.listing_slices.take() else {
                    return;
                };
                let mut touched: BTreeSet<Key> = self.slices_of.keys().cloned().collect();
                self.slices.clear();
                self.slices_of.clear();
                for slice in listing.into_values() {
                    touched.extend(self.insert_slice(slice));
                }
                for service in &touched {
                    self.refresh_service(service);
                }
                self.listed[1] = true;
            }
        }
    }

    fn pod_event(&mut self, event: watcher::Event<Pod>) {
        match event {
            watcher::Event::Apply(pod) => {
                let (namespace, name) = key(&pod);
                let entries = pod_entries(&self.domain, &pod);
                self.set(&Owner::Pod(namespace, name), entries);
            }
            watcher::Event::Delete(pod) => {
                let (namespace, name) = key(&pod);
                self.set(&Owner::Pod(namespace, name), Vec::new());
            }
            watcher::Event::Init => self.listing_pods = Some(HashMap::new()),
            watcher::Event::InitApply(pod) => {
                let entries = pod_entries(&self.domain, &pod);
                if let Some(listing) = &mut self.listing_pods {
                    listing.insert(key(&pod), entries);
                }
            }
            watcher::Event::InitDone => {
                let Some(listing) = self.listing_pods.take() else {
                    return;
                };
                let gone: Vec<Owner> = match self.zone.read() {
                    Ok(zone) => zone
                        .owners()
                        .filter(|owner| match owner {
                            Owner::Pod(namespace, name) => {
                                !listing.contains_key(&(namespace.clone(), name.clone()))
                            }
                            Owner::Service(..) => false,
                        })
                        .cloned()
                        .collect(),
                    Err(_) => Vec::new(),
                };
                for owner in gone {
                    self.set(&owner, Vec::new());
                }
                for ((namespace, name), entries) in listing {
                    self.set(&Owner::Pod(namespace, name), entries);
                }
                self.listed[2] = true;
            }
        }
    }
}

/// Host-network pods carry their node's address: CoreDNS gives them no pod record either.
fn pod_entries(domain: &str, pod: &Pod) -> Vec<Entry> {
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    if host_network {
        Vec::new()
    } else {
        records::pod_records(domain, pod)
    }
}

/// Keeps `zone` equal to the API's Services, EndpointSlices and Pods; sets `synced` once all
/// three have been listed. Watch errors are retried with backoff; this never returns.
async fn watch(client: Client, domain: String, zone: Arc<RwLock<Zone>>, synced: Arc<AtomicBool>) {
    let config = watcher::Config::default();
    let services: BoxStream<'static, _> =
        watcher(Api::<Service>::all(client.clone()), config.clone())
            .default_backoff()
            .map(|event| event.map(|event| Change::Service(Box::new(event))))
            .boxed();
    let slices: BoxStream<'static, _> =
        watcher(Api::<EndpointSlice>::all(client.clone()), config.clone())
            .default_backoff()
            .map(|event| event.map(|event| Change::Slice(Box::new(event))))
            .boxed();
    let pods: BoxStream<'static, _> = watcher(Api::<Pod>::all(client), config)
        .default_backoff()
        .map(|event| event.map(|event| Change::Pod(Box::new(event))))
        .boxed();
    let mut changes = futures::stream::select_all([services, slices, pods]);
    let mut state = State {
        domain,
        zone,
        services: HashMap::new(),
        slices: HashMap::new(),
        slices_of: HashMap::new(),
        listing_services: None,
        listing_slices: None,
        listing_pods: None,
        listed: [false; 3],
    };
    while let Some(change) = changes.next().await {
        match change {
            Ok(change) => {
                state.apply(change);
                if state.listed.iter().all(|listed| *listed) && !synced.load(Ordering::Acquire) {
                    tracing::info!("cluster DNS: Services, EndpointSlices and Pods listed");
                    synced.store(true, Ordering::Release);
                }
            }
            Err(err) => tracing::warn!(%err, "cluster DNS: watch failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::upstream_from_resolv_conf;

    #[test]
    fn upstream_is_the_first_other_nameserver() {
        let text = "# generated\nsearch example.com\nnameserver 192.168.78.254\nnameserver fe80::1%eth0\nnameserver 10.255.255.53\n";
        let own = ["192.168.78.254".parse().unwrap()];
        assert_eq!(
            upstream_from_resolv_conf(text, &own),
            Some("10.255.255.53:53".parse().unwrap())
        );
        assert_eq!(
            upstream_from_resolv_conf(text, &[]),
            Some("192.168.78.254:53".parse().unwrap())
        );
        assert_eq!(upstream_from_resolv_conf("search x\n", &[]), None);
    }
}
