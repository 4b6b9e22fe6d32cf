//! Starting the control plane: state directory, PKI, tokens, kubeconfig, etcd (own or
//! external), then the API server.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use rand::Rng as _;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    apiserver::system_services::SystemServiceError,
    apiserver::{ApiServer, allocations::Ipam},
    auth::{
        AuthError, Tokens, kubeconfig,
        pki::{Component, Pki},
    },
    dns::{Dns, DnsError},
    etcd::{EtcdConfig, EtcdError, EtcdMember, EtcdProcess},
    ipam::{
        AddressRange, Cidr, Pool, PortRange, loadbalancer_pool,
        ranges::{Range as _, ServiceIps, Subnets},
    },
    storage::{StorageError, Store},
};

/// How to run the control plane.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where certificates, tokens, the kubeconfig and the embedded etcd's data live.
    pub state_dir: PathBuf,
    /// Address the API server listens on.
    pub listen: SocketAddr,
    /// External etcd endpoints; empty = start our own member.
    pub etcd_endpoints: Vec<String>,
    /// Client and peer ports of the embedded etcd.
    pub etcd_ports: (u16, u16),
    /// The embedded etcd member's name, peer address and initial cluster (its peer TLS and
    /// cluster token are filled in from the PKI).
    pub etcd_member: EtcdMember,
    /// Extra names/IPs for the serving certificate.
    pub extra_names: Vec<String>,
    /// Where Service ClusterIPs come from (the first one goes to the `kubernetes` Service).
    pub service_cidr: Cidr,
    /// The cluster's pod network, cut into one podCIDR per node.
    pub cluster_cidr: Cidr,
    /// Prefix length of each node's podCIDR.
    pub node_cidr_mask: u8,
    /// Where NodePorts come from.
    pub node_port_range: PortRange,
    /// The addresses Services of type LoadBalancer (without a `loadBalancerClass`) get, lowest
    /// first, entries in this order; empty: such Services stay `<pending>`, as upstream
    /// without a load balancer implementation. No entry may overlap `cluster_cidr`,
    /// `service_cidr`, another entry or the API server's address ([`ControlPlane::start`]
    /// refuses it).
    pub loadbalancer_pool: Vec<AddressRange>,
    /// Whether this control plane runs the control loops (scheduler, controllers, IPAM repair,
    /// the system Services' reconciler); false serves only the API.
    pub control_loops: bool,
    /// How the control loops are elected among control planes (None: they run unelected, for
    /// a control plane that knows it is alone, as upstream's `--leader-elect=false`).
    pub leader_election: Option<crate::leader_election::Timings>,
    /// Controller settings (node heartbeat grace period and monitor period).
    pub controllers: crate::controllers::Settings,
    /// Admission settings (default toleration of not-ready/unreachable nodes).
    pub admission: crate::apiserver::admission::Admission,
    /// How often IPAM pools are checked against the objects holding their items.
    pub ipam_repair_period: Duration,
    /// The cluster DNS this control plane serves (None: it serves none).
    pub cluster_dns: Option<ClusterDns>,
    /// Whether to route every node's podCIDR through its InternalIP where that is on-link, so
    /// that the API server reaches webhooks served by pods (see [`crate::pod_routes`]).
    pub pod_routes: bool,
}

/// The cluster DNS served by the control plane: a DNS server on the API server's address and
/// the `kube-system/kube-dns` Service in front of it, whose ClusterIP goes into every pod's
/// resolv.conf (the agents' `--cluster-dns`).
#[derive(Debug, Clone)]
pub struct ClusterDns {
    /// The `kube-dns` Service's ClusterIP; inside the service CIDR, not its first address
    /// (the `kubernetes` Service's).
    pub ip: Ipv4Addr,
    /// The port the server answers on (UDP and TCP), on the API server's address; the Service
    /// still offers port 53 and forwards to it. 0 picks a free port.
    pub port: u16,
    /// The cluster domain.
    pub domain: String,
    /// Where names outside the cluster domain are forwarded (None: refused).
    pub upstream: Option<SocketAddr>,
}

impl ClusterDns {
    /// Serving `ip` on port 53 for `cluster.local`, forwarding other names to `upstream`.
    pub fn new(ip: Ipv4Addr, upstream: Option<SocketAddr>) -> Self {
        Self {
            ip,
            port: 53,
            domain: "cluster.local".to_owned(),
            upstream,
        }
    }

    /// Where the server listens, given the API server's address; an error says why the
    /// settings cannot work.
    pub fn listen_address(
        &self,
        service_cidr: Cidr,
        api: SocketAddr,
    ) -> Result<SocketAddr, RunError> {
        let invalid = |reason: String| RunError::ClusterDns(reason);
        let ips = ServiceIps(service_cidr);
        let Some(index) = ips.index_of(&self.ip.to_string()) else {
            return Err(invalid(if service_cidr.contains(self.ip) {
                format!(
                    "--cluster-dns {} is the network or broadcast address of \
                     --service-cluster-ip-range {service_cidr}; pick a host address such as {}",
                    self.ip,
                    suggested_dns_ip(service_cidr)
                )
            } else {
                format!(
                    "--cluster-dns {} is outside --service-cluster-ip-range {service_cidr}: the \
                     kube-dns Service's ClusterIP must come from that range; pick an address \
                     inside it such as {}",
                    self.ip,
                    suggested_dns_ip(service_cidr)
                )
            }));
        };
        if index == 0 {
            return Err(invalid(format!(
                "--cluster-dns {} is the first address of --service-cluster-ip-range \
                 {service_cidr}, which belongs to the kubernetes Service; pick another, such as {}",
                self.ip,
                suggested_dns_ip(service_cidr)
            )));
        }
        if api.ip().is_unspecified() {
            return Err(invalid(format!(
                "the cluster DNS answers on the API server's address, and --listen {api} names \
                 none: listen on the address pods reach the control plane at (e.g. --listen \
                 192.168.78.254:{}), which the kube-dns Service then points to",
                api.port()
            )));
        }
        if self.domain.is_empty() || self.domain.starts_with('.') || self.domain.ends_with('.') {
            return Err(invalid(format!(
                "--cluster-domain {:?} is not a domain name like cluster.local",
                self.domain
            )));
        }
        Ok(SocketAddr::new(api.ip(), self.port))
    }
}

/// The tenth address of the service CIDR, which kubeadm and k3s give the cluster DNS (10.96.0.10
/// for 10.96.0.0/12), or the last address of a range too small for that.
pub fn suggested_dns_ip(service_cidr: Cidr) -> Ipv4Addr {
    let ips = ServiceIps(service_cidr);
    let index = 9.min(ips.size().saturating_sub(1));
    ips.item(index)
        .and_then(|ip| ip.parse().ok())
        .unwrap_or(service_cidr.network)
}

impl Config {
    /// A configuration with the upstream defaults for the network ranges.
    pub fn new(state_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            state_dir,
            listen,
            etcd_endpoints: Vec::new(),
            etcd_ports: (12379, 12380),
            etcd_member: EtcdMember::default(),
            extra_names: Vec::new(),
            service_cidr: Cidr {
                network: std::net::Ipv4Addr::new(10, 96, 0, 0),
                prefix: 12,
            },
            cluster_cidr: Cidr {
                network: std::net::Ipv4Addr::new(10, 244, 0, 0),
                prefix: 16,
            },
            node_cidr_mask: 24,
            node_port_range: PortRange {
                first: 30000,
                last: 32767,
            },
            loadbalancer_pool: Vec::new(),
            control_loops: true,
            leader_election: Some(crate::leader_election::Timings::default()),
            controllers: crate::controllers::Settings::default(),
            admission: crate::apiserver::admission::Admission::default(),
            ipam_repair_period: Duration::from_secs(60),
            cluster_dns: None,
            pod_routes: false,
        }
    }
}

/// Errors starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Certificates, tokens or kubeconfig.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The embedded etcd.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The store.
    #[error("connecting to etcd: {0}")]
    Storage(#[from] StorageError),
    /// The listening socket.
    #[error(
        "cannot listen on {address}: {source} (is another API server running? pick another --listen)"
    )]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Creating the default namespaces failed.
    #[error("bootstrapping the default namespaces: {0}")]
    Bootstrap(String),
    /// The cluster DNS settings cannot work.
    #[error("{0}")]
    ClusterDns(String),
    /// The load balancer pool overlaps the pod or Service network, itself or the API server.
    #[error(transparent)]
    LoadBalancerPool(#[from] loadbalancer_pool::PoolError),
    /// The leader election settings cannot work.
    #[error("leader election: {0}")]
    LeaderElection(String),
    /// The cluster DNS server could not start.
    #[error("the cluster DNS (--cluster-dns): {0}; --cluster-dns-port picks another port")]
    DnsServer(#[source] DnsError),
    /// The `kubernetes` or `kube-dns` Service could not be put in place.
    #[error(transparent)]
    SystemServices(Box<SystemServiceError>),
}

impl From<SystemServiceError> for RunError {
    fn from(err: SystemServiceError) -> Self {
        Self::SystemServices(Box::new(err))
    }
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlPlane {
    /// The address the API server listens on.
    pub address: SocketAddr,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// A bearer token of the admin user.
    pub admin_token: String,
    /// The client port of the embedded etcd (0 with external etcd).
    pub etcd_client_port: u16,
    /// Where the cluster DNS answers (UDP and TCP), if it is served.
    pub dns_address: Option<SocketAddr>,
    /// This control plane's name in leader elections (`<hostname>_<id>`).
    pub identity: String,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    system_services: tokio::task::JoinHandle<()>,
    /// The API server, to take it out of the system Services' endpoints on stop.
    api: ApiServer,
    dns: Option<Dns>,
    /// The embedded etcd's supervisor and the signal that stops it (and etcd with it).
    etcd: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    /// The control loops (each behind its Lease when elected) and the signal that stops them.
    control_loops: Option<(watch::Sender<bool>, Vec<tokio::task::JoinHandle<()>>)>,
}

impl ControlPlane {
    /// Starts everything and returns once the API server accepts connections.
    pub async fn start(config: Config) -> Result<Self, RunError> {
        if let Some(timings) = &config.leader_election {
            timings.validate().map_err(RunError::LeaderElection)?;
        }
        let api_ip = match config.listen.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        };
        loadbalancer_pool::check_pool(
            &config.loadbalancer_pool,
            config.cluster_cidr,
            config.service_cidr,
            api_ip,
        )?;
        std::fs::create_dir_all(&config.state_dir).map_err(|source| AuthError::Io {
            action: "creating",
            path: config.state_dir.clone(),
            source,
        })?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| RunError::Listen {
                address: config.listen,
                source,
            })?;
        let address = listener.local_addr().map_err(|source| RunError::Listen {
            address: config.listen,
            source,
        })?;
        // The DNS sockets are bound before anything starts, so a taken port fails fast.
        let dns = match &config.cluster_dns {
            Some(dns) => {
                let listen = dns.listen_address(config.service_cidr, address)?;
                let bound = Dns::bind(crate::dns::Config {
                    listen,
                    cluster_domain: dns.domain.clone(),
                    upstream: dns.upstream,
                })
                .await
                .map_err(RunError::DnsServer)?;
                Some((dns.ip, bound))
            }
            None => None,
        };

        let mut names = config.extra_names.clone();
        names.push(address.ip().to_string());
        // The etcd peer certificate is valid for the peer address too.
        names.push(config.etcd_member.peer_ip.to_string());
        // Pods reach the API server through the `kubernetes` Service: its ClusterIP (what
        // in-cluster clients dial, from KUBERNETES_SERVICE_HOST) and its full DNS name.
        names.extend(ServiceIps(config.service_cidr).item(0));
        let domain = config
            .cluster_dns
            .as_ref()
            .map_or("cluster.local", |dns| dns.domain.as_str());
        names.push(format!("kubernetes.default.svc.{domain}"));
        let pki = Pki::load_or_create(&config.state_dir.join("pki"), &names)?;
        let (tokens, admin_token) = load_or_create_tokens(&config.state_dir.join("tokens.csv"))?;

        let (store, etcd) = if config.etcd_endpoints.is_empty() {
            let etcd_config = EtcdConfig {
                data_dir: config.state_dir.join("etcd"),
                client_port: config.etcd_ports.0,
                peer_port: config.etcd_ports.1,
                member: etcd_member(&config.etcd_member, &config.state_dir.join("pki"), &pki),
            };
            let (process, store) = EtcdProcess::start(etcd_config, Duration::from_secs(30)).await?;
            let (stop, stopped) = tokio::sync::oneshot::channel();
            (
                store,
                Some((
                    stop,
                    AbortOnDrop(Some(tokio::spawn(process.supervise(stopped)))),
                )),
            )
        } else {
            let store = Store::connect(&config.etcd_endpoints, Duration::from_secs(30)).await?;
            (store, None)
        };

        let server_url = format!("https://{address}");
        let kubeconfig_path = config.state_dir.join("admin.kubeconfig");
        kubeconfig::write(&pki, &server_url, "flotilla", &kubeconfig_path)?;

        if config.node_cidr_mask < config.cluster_cidr.prefix || config.node_cidr_mask > 30 {
            return Err(RunError::Bootstrap(format!(
                "the node podCIDR size /{} does not fit in the cluster CIDR {}",
                config.node_cidr_mask, config.cluster_cidr
            )));
        }
        let ipam = Ipam {
            service_ips: Pool::new(store.clone(), "serviceips", ServiceIps(config.service_cidr)),
            node_ports: Pool::new(store.clone(), "nodeports", config.node_port_range),
            pod_cidrs: Pool::new(
                store.clone(),
                "podcidrs",
                Subnets {
                    cluster: config.cluster_cidr,
                    mask: config.node_cidr_mask,
                },
            ),
        };
        let authorizer = crate::auth::authorizer::Authorizer::new(
            crate::auth::rbac::cache::PolicyCache::start(store.clone())
                .await
                .map_err(|err| RunError::Bootstrap(format!("loading the RBAC policy: {err}")))?,
            crate::auth::node_authorizer::NodeGraph::start(&store)
                .await
                .map_err(|err| RunError::Bootstrap(format!("loading the pods by node: {err}")))?,
        );
        let webhooks = crate::apiserver::webhooks::Webhooks::start(&store)
            .await
            .map_err(|err| {
                RunError::Bootstrap(format!("loading the webhook configurations: {err}"))
            })?;
        let mut api = ApiServer::new(store, tokens, address.to_string())
            .with_authorizer(authorizer)
            .with_service_account_tokens(std::sync::Arc::new(
                crate::auth::service_accounts::TokenIssuer::load_or_create(
                    &config.state_dir.join("pki"),
                )?,
            ))
            .with_kubelet_client(crate::auth::pki::kubelet_client_config(&pki)?)
            .with_ipam(ipam)
            .with_admission(config.admission)
            .with_webhooks(webhooks);
        if let Some((ip, bound)) = &dns {
            api = api.with_cluster_dns(*ip, bound.address);
        }
        api.bootstrap()
            .await
            .map_err(|err| RunError::Bootstrap(err.to_string()))?;
        api.reconcile_system_services().await?;
        // Kinds defined by CustomResourceDefinitions are served before the first request is.
        crate::apiserver::custom_resources::definitions::follow(api.clone())
            .await
            .map_err(|err| {
                RunError::Bootstrap(format!("loading the custom resource definitions: {err}"))
            })?;
        if config.pod_routes {
            let table = crate::pod_routes::Netlink::new()
                .map_err(|err| RunError::Bootstrap(format!("routing to the pods: {err}")))?;
            crate::pod_routes::keep(&api.store, table)
                .await
                .map_err(|err| RunError::Bootstrap(format!("listing the nodes: {err}")))?;
        }
        let tls = pki.server_config()?;
        let server = tokio::spawn(api.clone().serve(listener, tls));
        // Every API server keeps its record and the system Services' endpoints (all live API
        // servers agree on them), as kube-apiserver's lease endpoint reconciler does.
        let system_services = tokio::spawn(api.clone().reconcile_system_services_forever());
        let api_for_stop = api.clone();
        // The in-process clients (scheduler, controllers, DNS) each have a certificate of their
        // own, as kube-scheduler and kube-controller-manager have theirs, so RBAC grants each
        // only its role.
        let client_of = |component: Component| {
            let (cert, key) = pki.component(component);
            component_client(&pki.ca_cert, &server_url, (component.user(), cert, key))
        };
        let dns = match dns {
            Some((_, bound)) => Some(bound.start(client_of(Component::Dns).await?)),
            None => None,
        };
        let identity = crate::leader_election::identity(&config.state_dir).map_err(|source| {
            AuthError::Io {
                action: "keeping the leader election id in",
                path: config.state_dir.clone(),
                source,
            }
        })?;
        let control_loops = if config.control_loops {
            let scheduler_client = client_of(Component::Scheduler).await?;
            let controllers_client = client_of(Component::ControllerManager).await?;
            let settings = config.controllers;
            let loadbalancer_pool = config.loadbalancer_pool.clone();
            let ca = crate::controllers::certificates::ClusterCa {
                cert: pki.ca_cert.clone(),
                key: pki.ca_key.clone(),
            };
            let server = server_url.clone();
            let repair_period = config.ipam_repair_period;
            let (stop, stopped) = watch::channel(false);
            let loops = ControlLoops {
                identity: &identity,
                timings: config.leader_election,
                stopped,
            };
            let scheduler = loops.spawn(scheduler_client.clone(), SCHEDULER_LEASE, move || {
                crate::scheduler::run(scheduler_client.clone())
            });
            // The IPAM repair must also run once; it goes with the controllers, behind their
            // Lease.
            let controllers = loops.spawn(
                controllers_client.clone(),
                CONTROLLER_MANAGER_LEASE,
                move || {
                    let controllers = crate::controllers::run(
                        controllers_client.clone(),
                        settings,
                        loadbalancer_pool.clone(),
                        ca.clone(),
                        server.clone(),
                    );
                    let repair = api.clone().repair_allocations_forever(repair_period);
                    async move {
                        tokio::join!(controllers, repair);
                    }
                },
            );
            Some((stop, vec![scheduler, controllers]))
        } else {
            None
        };
        Ok(Self {
            address,
            kubeconfig: kubeconfig_path,
            admin_token,
            etcd_client_port: if config.etcd_endpoints.is_empty() {
                config.etcd_ports.0
            } else {
                0
            },
            dns_address: dns.as_ref().map(|dns| dns.address),
            identity,
            server,
            system_services,
            api: api_for_stop,
            dns,
            etcd: etcd.and_then(|(stop, task)| Some((stop, task.disarm()?))),
            control_loops,
        })
    }

    /// Waits until the API server stops (it only stops on an accept error) or the cluster DNS
    /// does.
    pub async fn wait(&mut self) -> std::io::Result<()> {
        let dns = async {
            match &mut self.dns {
                Some(dns) => dns.wait().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut self.server => match result {
                Ok(result) => result,
                Err(err) => Err(std::io::Error::other(err)),
            },
            result = dns => Err(std::io::Error::other(format!(
                "the cluster DNS stopped: {}",
                result.err().map_or_else(|| "without an error".to_owned(), |err| err.to_string())
            ))),
        }
    }

    /// Stops the control loops (handing their Leases over), the API server and the embedded
    /// etcd.
    ///
    /// Waits for each aborted task to end: an aborted task drops its sockets only when the
    /// runtime next polls it, and a restart on the same address must find them closed.
    pub async fn stop(self) {
        if let Some((stop, loops)) = self.control_loops {
            // Each elector stops its work and releases its Lease through this API server, so
            // the server stops after them.
            let _ = stop.send(true);
            let aborts: Vec<_> = loops.iter().map(JoinHandle::abort_handle).collect();
            let joined = futures::future::join_all(loops);
            if tokio::time::timeout(SHUTDOWN_WRITES_LIMIT, joined)
                .await
                .is_err()
            {
                tracing::warn!(
                    "the Leases were not released within {SHUTDOWN_WRITES_LIMIT:?} (etcd without \
                     most of its members?); the other control planes take over when they expire"
                );
                for abort in aborts {
                    abort.abort();
                }
            }
        }
        // Pods stop being sent here before the server goes (upstream's RemoveEndpoints).
        abort_and_wait(self.system_services).await;
        if tokio::time::timeout(
            SHUTDOWN_WRITES_LIMIT,
            self.api.withdraw_from_system_services(),
        )
        .await
        .is_err()
        {
            tracing::warn!(
                "this API server was not taken out of the system Services within \
                 {SHUTDOWN_WRITES_LIMIT:?}; its record expires by itself"
            );
        }
        abort_and_wait(self.server).await;
        if let Some(dns) = self.dns {
            dns.stop().await;
        }
        if let Some((stop, supervisor)) = self.etcd {
            // The supervisor kills etcd and ends once the process has exited.
            let _ = stop.send(());
            let _ = supervisor.await;
        }
    }
}

/// How long a stopping control plane spends on each of its last writes (releasing its Leases,
/// leaving the system Services): bounded, so one whose etcd lost most of its members (the last
/// of several stopping) still stops at once; what it could not write expires by itself.
const SHUTDOWN_WRITES_LIMIT: Duration = Duration::from_secs(3);

/// The Lease kube-scheduler holds upstream, held here by the scheduler.
pub const SCHEDULER_LEASE: &str = "kube-scheduler";
/// The Lease kube-controller-manager holds upstream, held here by the controllers.
pub const CONTROLLER_MANAGER_LEASE: &str = "kube-controller-manager";

/// What every control loop of one control plane shares.
struct ControlLoops<'a> {
    identity: &'a str,
    timings: Option<crate::leader_election::Timings>,
    stopped: watch::Receiver<bool>,
}

impl ControlLoops<'_> {
    /// Runs `work` behind the Lease `lease` (or unelected) until stopped.
    fn spawn<W, F>(&self, client: kube::Client, lease: &str, mut work: W) -> JoinHandle<()>
    where
        W: FnMut() -> F + Send + 'static,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut stopped = self.stopped.clone();
        match self.timings {
            Some(timings) => {
                let elector =
                    crate::leader_election::Elector::new(client, lease, self.identity, timings);
                tokio::spawn(elector.run(work, stopped))
            }
            None => tokio::spawn(async move {
                tokio::select! {
                    () = work() => {}
                    _ = stopped.wait_for(|stop| *stop) => {}
                }
            }),
        }
    }
}

/// Aborts a task and waits until it has ended (and dropped what it owned).
async fn abort_and_wait<T>(task: tokio::task::JoinHandle<T>) {
    task.abort();
    // The only error left is the cancellation asked for, or a panic already logged.
    let _ = task.await;
}

/// A task aborted when this is dropped: the embedded etcd while start-up may still fail (a
/// failed start must not leave its etcd running on the ports the next start needs).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    fn disarm(mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.0.take()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// A client of the API server at `server` as `user` (name, certificate, key).
async fn component_client(
    ca_cert: &str,
    server: &str,
    user: (&str, &str, &str),
) -> Result<kube::Client, RunError> {
    let failed = |err: String| RunError::Bootstrap(format!("a client for {}: {err}", user.0));
    let text = kubeconfig::render_for(ca_cert, server, "flotilla", user);
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&text).map_err(|err| failed(err.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|err| failed(err.to_string()))?;
    kube::Client::try_from(config).map_err(|err| failed(err.to_string()))
}

/// The embedded etcd member as configured, with peer TLS from the PKI when it is one of several
/// or its peers are not on loopback, and a cluster token derived from the cluster CA (so two
/// clusters' members never join each other).
fn etcd_member(configured: &EtcdMember, pki_dir: &Path, pki: &Pki) -> EtcdMember {
    use sha2::Digest as _;
    if configured.initial_cluster.is_empty() && configured.peer_ip.is_loopback() {
        return configured.clone();
    }
    let stem = crate::auth::pki::ETCD_PEER;
    let hash = sha2::Sha256::digest(pki.ca_cert.as_bytes());
    let token: String = hash[..8].iter().map(|byte| format!("{byte:02x}")).collect();
    EtcdMember {
        peer_tls: Some((
            pki_dir.join(format!("{stem}.crt")),
            pki_dir.join(format!("{stem}.key")),
            pki_dir.join("ca.crt"),
        )),
        cluster_token: format!("flotilla-{token}"),
        ..configured.clone()
    }
}

/// Creates what control planes of one cluster share, under `state_dir`, unless it is there: the
/// CA and certificates (`pki/`, serving certificates valid for `names` and loopback), the
/// ServiceAccount token key and the static token file (kubeadm's `init phase certs`). Copy the
/// directory to each control plane before they start together.
pub fn create_shared_state(state_dir: &Path, names: &[String]) -> Result<Vec<PathBuf>, RunError> {
    let pki = state_dir.join("pki");
    Pki::load_or_create(&pki, names)?;
    crate::auth::service_accounts::TokenIssuer::load_or_create(&pki)?;
    let tokens = state_dir.join("tokens.csv");
    load_or_create_tokens(&tokens)?;
    Ok(vec![pki, tokens])
}

/// Copies what [`create_shared_state`] made in the state directory `from` (`pki/` and
/// `tokens.csv`) into `to`, a further control plane's state directory, as an admin copies them
/// before the control planes start together.
pub fn copy_shared_state(from: &Path, to: &Path) -> Result<(), RunError> {
    let failed = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| AuthError::Io {
            action,
            path,
            source,
        }
    };
    let (from_pki, to_pki) = (from.join("pki"), to.join("pki"));
    std::fs::create_dir_all(&to_pki).map_err(failed("creating", &to_pki))?;
    for entry in std::fs::read_dir(&from_pki).map_err(failed("reading", &from_pki))? {
        let entry = entry.map_err(failed("reading", &from_pki))?;
        std::fs::copy(entry.path(), to_pki.join(entry.file_name()))
            .map_err(failed("copying", &entry.path()))?;
    }
    let tokens = from.join("tokens.csv");
    std::fs::copy(&tokens, to.join("tokens.csv")).map_err(failed("copying", &tokens))?;
    Ok(())
}

/// Reads the static token file, creating it with one admin token on first start.
fn load_or_create_tokens(path: &Path) -> Result<(Tokens, String), AuthError> {
    if !path.exists() {
        let token: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(40)
            .map(char::from)
            .collect();
        let content =
            format!("# token,user,uid,\"groups\"\n{token},admin,admin,\"system:masters\"\n");
        crate::auth::pki::write(path, &content, true)?;
    }
    let tokens = Tokens::load(path)?;
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::Io {
        action: "reading",
        path: path.to_owned(),
        source,
    })?;
    let admin_token = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split(',');
            let token = fields.next()?;
            (fields.next()? == "admin").then(|| token.to_owned())
        })
        .unwrap_or_default();
    Ok((tokens, admin_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ip: &str, api: &str) -> Result<SocketAddr, String> {
        ClusterDns::new(ip.parse().unwrap(), None)
            .listen_address("10.96.0.0/12".parse().unwrap(), api.parse().unwrap())
            .map_err(|err| err.to_string())
    }

    #[test]
    fn cluster_dns_listens_on_the_api_address() {
        assert_eq!(
            check("10.96.0.10", "192.168.78.254:6443"),
            Ok("192.168.78.254:53".parse().unwrap())
        );
        assert_eq!(
            suggested_dns_ip("10.96.0.0/12".parse().unwrap()),
            Ipv4Addr::new(10, 96, 0, 10)
        );
        assert_eq!(
            suggested_dns_ip("10.0.0.0/30".parse().unwrap()),
            Ipv4Addr::new(10, 0, 0, 2)
        );
    }

    #[tokio::test]
    async fn a_load_balancer_pool_overlapping_the_pod_network_is_refused_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let config = Config {
            loadbalancer_pool: vec![
                "192.168.78.240/28".parse().unwrap(),
                "10.244.1.0/28".parse().unwrap(),
            ],
            ..Config::new(state.clone(), "127.0.0.1:0".parse().unwrap())
        };
        let err = ControlPlane::start(config).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "--loadbalancer-pool 10.244.1.0/28 overlaps the pod network (--cluster-cidr \
             10.244.0.0/16); give addresses outside the pod and Service networks, on the nodes' \
             own network"
        );
        assert!(!state.exists(), "nothing is created before the check");
    }

    #[test]
    fn bad_cluster_dns_settings_say_what_to_do() {
        let outside = check("10.0.0.10", "192.168.78.254:6443").unwrap_err();
        assert!(
            outside.contains("outside --service-cluster-ip-range 10.96.0.0/12")
                && outside.contains("10.96.0.10"),
            "{outside}"
        );
        let broadcast = check("10.111.255.255", "192.168.78.254:6443").unwrap_err();
        assert!(broadcast.contains("broadcast"), "{broadcast}");
        let first = check("10.96.0.1", "192.168.78.254:6443").unwrap_err();
        assert!(first.contains("kubernetes Service"), "{first}");
        let anywhere = check("10.96.0.10", "0.0.0.0:6443").unwrap_err();
        assert!(anywhere.contains("--listen 0.0.0.0:6443"), "{anywhere}");
    }
}
