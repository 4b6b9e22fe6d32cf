//! `flotilla-agent run`: the node agent as a daemon. Registers the node, keeps its Lease and
//! status fresh, runs the pods bound to it on containerd and serves the kubelet API. Stopping the
//! agent leaves the pods running; the next start re-adopts them.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use anyhow::Context as _;
use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::{
    cni_api,
    datapath::{self, maglev::Balancing, start::NetworkSettings, tunnels::Routing},
    node::{self, NodeIdentity, network},
    pods::{
        containerd::NodeDirs,
        cri::Cri,
        manager::{self, NodeSettings, Runtime},
        spec::{DnsSettings, parse_resolv_conf},
    },
    server::{self, ContainerLocator, tls},
};

/// How long the agent waits for containerd at start.
const CONTAINERD_WAIT: Duration = Duration::from_secs(60);

/// Everything the agent needs to run a node.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The node's name.
    pub node_name: String,
    /// The node's InternalIP.
    pub node_ip: String,
    /// Kubeconfig with the node's credentials.
    pub kubeconfig: PathBuf,
    /// The node's directories.
    pub dirs: NodeDirs,
    /// Where the kubelet API listens.
    pub listen: SocketAddr,
    /// Serving certificate (PEM) of the kubelet API.
    pub tls_cert_file: PathBuf,
    /// Its key.
    pub tls_private_key_file: PathBuf,
    /// The CA client certificates must chain to.
    pub client_ca_file: PathBuf,
    /// cgroup parent of the node's pods.
    pub cgroup_root: String,
    /// Cluster DNS server IPs written into pods' resolv.conf.
    pub cluster_dns: Vec<String>,
    /// The cluster domain.
    pub cluster_domain: String,
    /// Maximum pods on the node.
    pub max_pods: u32,
    /// The cluster's pod network (every node's podCIDR lies inside it).
    pub cluster_cidr: String,
    /// MTU of the overlay and the pods (default: the underlay's minus the VXLAN overhead).
    pub mtu: Option<u32>,
    /// How pod traffic reaches other nodes.
    pub routing: Routing,
    /// How new connections to Services pick their backends.
    pub balancing: Balancing,
    /// The flotilla-cni binary to install into containerd's CNI bin dir.
    pub cni_plugin: PathBuf,
    /// Where Prometheus metrics are served (plain HTTP, `/metrics`); None turns them off.
    pub metrics_listen: Option<SocketAddr>,
    /// Reach the API through the agent's load balancer (every live API server) rather than
    /// the kubeconfig's server alone.
    pub api_balancer: bool,
    /// Answer ARP for the LoadBalancer addresses this node is elected for (L2 mode); off where
    /// another implementation (MetalLB) announces them.
    pub l2_announcements: bool,
}

/// The client configuration a kubeconfig file gives.
async fn config_from(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Config> {
    let file = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading the kubeconfig {}", kubeconfig.display()))?;
    kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading the kubeconfig {}", kubeconfig.display()))
}

/// An API client from a kubeconfig file.
pub async fn client_from(kubeconfig: &std::path::Path) -> anyhow::Result<Client> {
    Client::try_from(config_from(kubeconfig).await?).context("building the API client")
}

/// An API client from a kubeconfig file whose connections go through a load balancer on this
/// namespace's loopback to the kubeconfig's server and every API server the `kubernetes`
/// Endpoints list (see [`node::api_balancer`]), which it follows until the balancer returned is
/// dropped; `state_file` keeps those servers for the next start.
pub async fn balanced_client_from(
    kubeconfig: &std::path::Path,
    state_file: Option<std::path::PathBuf>,
) -> anyhow::Result<(Client, node::api_balancer::ApiBalancer)> {
    let mut config = config_from(kubeconfig).await?;
    let url = config.cluster_url.clone();
    let host = url.host().unwrap_or_default().trim_matches(['[', ']']);
    let port = url.port_u16().unwrap_or(443);
    let configured = tokio::net::lookup_host((host, port))
        .await
        .ok()
        .and_then(|mut found| found.next())
        .with_context(|| {
            format!(
                "the API server {url} (in {}) has no address",
                kubeconfig.display()
            )
        })?;
    let mut balancer = node::api_balancer::ApiBalancer::start(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        vec![configured],
    )
    .await
    .context("starting the API balancer on 127.0.0.1")?;
    if let Some(file) = state_file {
        balancer.remember_in(file);
    }
    // The API servers' certificate names 127.0.0.1, as k3s's does for its agents' balancer.
    config.cluster_url = format!("https://{}", balancer.address())
        .parse()
        .context("the API balancer's URL")?;
    let client = Client::try_from(config).context("building the API client")?;
    balancer.follow_endpoints(client.clone());
    Ok((client, balancer))
}

/// Runs the agent until `shutdown` completes.
pub async fn run(
    config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    for dir in config.dirs.all() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let (client, _balancer) = if config.api_balancer {
        let (client, balancer) =
            balanced_client_from(&config.kubeconfig, Some(config.dirs.api_servers_file())).await?;
        (client, Some(balancer))
    } else {
        (client_from(&config.kubeconfig).await?, None)
    };
    let cri = Cri::connect(&config.dirs.containerd_socket())?;
    let started = tokio::time::Instant::now();
    let version = loop {
        match cri.version().await {
            Ok(version) => break version,
            Err(err) if started.elapsed() < CONTAINERD_WAIT => {
                tracing::info!("waiting for containerd: {err}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => {
                return Err(err).context(format!(
                    "containerd did not answer within {CONTAINERD_WAIT:?}"
                ));
            }
        }
    };
    let runtime_version = format!("{}://{}", version.runtime_name, version.runtime_version);
    let identity = NodeIdentity {
        name: config.node_name.clone(),
        ip: config.node_ip.clone(),
        kubelet_port: config.listen.port(),
        max_pods: config.max_pods,
        labels: Default::default(),
    };
    let readiness = node::readiness(&cri).await;
    let registered = node::register(&client, &identity, &runtime_version, &readiness).await?;
    let pod_cidr = registered
        .spec
        .as_ref()
        .and_then(|s| s.pod_cidr.clone())
        .context("the control plane gave the node no podCIDR; is --cluster-cidr set?")?;
    tracing::info!(node = %config.node_name, %pod_cidr, "registered");

    // The pod network: datapath and address pool first, then the API the plugin calls, and only
    // then the conflist (which makes containerd report the network ready).
    let node_ip: Ipv4Addr = config
        .node_ip
        .parse()
        .with_context(|| format!("--node-ip {:?} is not an IPv4 address", config.node_ip))?;
    let network = datapath::start::start(&NetworkSettings {
        node_name: config.node_name.clone(),
        node_ip,
        pod_cidr: pod_cidr.clone(),
        cluster_cidr: config.cluster_cidr.clone(),
        mtu: config.mtu,
        routing: config.routing,
        maglev_table_size: config.balancing.table_size,
        ipam_dir: config.dirs.ipam_dir(),
        pod_cgroup: Some(datapath::start::unified_cgroup(&config.cgroup_root)),
    })
    .await?;
    let cni_socket = config.dirs.cni_socket();
    let cni_api = {
        let backend = network.backend.clone();
        let socket = cni_socket.clone();
        tokio::spawn(async move {
            if let Err(err) = cni_api::serve(&socket, backend).await {
                tracing::error!(socket = %socket.display(), "the CNI API stopped: {err}");
            }
        })
    };
    let address_gc = tokio::spawn(collect_addresses(cri.clone(), network.backend.clone()));
    let masquerade_metrics = datapath::masquerade::Metrics::default();
    let masquerade_gc = tokio::spawn(datapath::masquerade::collect(
        datapath::conntrack::NatTable::masquerade(&datapath::pins::NodePins::new(
            &config.node_name,
        )?)?,
        masquerade_metrics.clone(),
    ));
    let tunnels = tokio::spawn(datapath::tunnels::sync(
        client.clone(),
        network.maps.clone(),
        config.node_name.clone(),
        network.routing,
    ));
    let policies = {
        let maps =
            datapath::policy::PolicyMaps::open(&datapath::pins::NodePins::new(&config.node_name)?)?;
        tokio::spawn(datapath::policy::sync(
            client.clone(),
            config.node_name.clone(),
            maps,
            network.maps.clone(),
        ))
    };
    let programming = prometheus_client::metrics::histogram::Histogram::new(
        prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 16),
    );
    let (announcements, announcements_rx) = tokio::sync::watch::channel(None);
    let services = {
        let maps = datapath::services::ServiceMaps::open(&datapath::pins::NodePins::new(
            &config.node_name,
        )?)?;
        let programming = programming.clone();
        tokio::spawn(datapath::services::sync(
            client.clone(),
            config.node_name.clone(),
            maps,
            config.balancing,
            move |took| programming.observe(took.as_secs_f64()),
            announcements,
        ))
    };
    let announcer = match (config.l2_announcements, network.announce_link) {
        (true, Some(link)) => {
            let map = datapath::announce::ResponderMap::open(&datapath::pins::NodePins::new(
                &config.node_name,
            )?)?;
            let announcer = datapath::announce::Announcer {
                node: config.node_name.clone(),
                node_uid: registered.metadata.uid.clone(),
                link,
            };
            Some(tokio::spawn(datapath::announce::run(
                client.clone(),
                announcer,
                map,
                announcements_rx,
            )))
        }
        (true, None) => {
            tracing::warn!(
                "the underlay link has no MAC address: LoadBalancer addresses are not announced"
            );
            None
        }
        (false, _) => None,
    };
    let metrics = match config.metrics_listen {
        Some(address) => {
            let mut registry = prometheus_client::registry::Registry::default();
            registry.register_collector(Box::new(datapath::metrics::DatapathCollector::new(
                network.maps.clone(),
            )));
            registry.register(
                "flotilla_masquerade_entries",
                "Tracked directions of pods' flows leaving the cluster (two per flow)",
                masquerade_metrics.entries,
            );
            registry.register(
                "flotilla_masquerade_expired",
                "Masquerade entries deleted after idling past their lifetime",
                masquerade_metrics.collected,
            );
            registry.register(
                "flotilla_services_programming_seconds",
                "How long writing one Service's frontends and backends into the maps took",
                programming,
            );
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("listening for metrics on {address}"))?;
            tracing::info!(%address, "serving metrics");
            Some(tokio::spawn(datapath::metrics::serve(
                listener,
                Arc::new(registry),
            )))
        }
        None => None,
    };
    network::install(
        &config.cni_plugin,
        &cni_socket,
        network.mtu,
        &config.dirs.cni_bin_dir(),
        &config.dirs.cni_conf_dir(),
    )?;

    let host_resolv =
        parse_resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default());
    if config.cluster_dns.is_empty() {
        // The kubelet's MissingClusterDNS: ClusterFirst pods fall back to the node's resolver.
        tracing::warn!(
            "no --cluster-dns: pods with dnsPolicy ClusterFirst get the node's resolv.conf and \
             cannot resolve Services by name"
        );
    } else {
        tracing::info!(servers = ?config.cluster_dns, domain = %config.cluster_domain, "pods resolve names through the cluster DNS");
    }
    let runtime = Arc::new(Runtime::new(
        client.clone(),
        cri.clone(),
        NodeSettings {
            name: config.node_name.clone(),
            ip: config.node_ip.clone(),
            dirs: config.dirs.clone(),
            cgroup_root: config.cgroup_root.clone(),
            dns: DnsSettings {
                servers: config.cluster_dns.clone(),
                domain: config.cluster_domain.clone(),
                host: host_resolv,
            },
        },
        node::capacity(config.max_pods),
    ));
    let node_name = identity.name.clone();
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        identity,
        cri.clone(),
        runtime_version,
    ));
    let pods = tokio::spawn(manager::run(runtime.clone()));
    let local_path = tokio::spawn(crate::storage::local_path::run(
        client.clone(),
        node_name.clone(),
        config.dirs.local_path_dir(),
    ));
    let tls = tls::server_config(&tls::TlsFiles {
        cert: config.tls_cert_file.clone(),
        key: config.tls_private_key_file.clone(),
        client_ca: config.client_ca_file.clone(),
    })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening for the kubelet API on {}", config.listen))?;
    let locator: Arc<dyn ContainerLocator> = runtime.clone();
    let authorizer = Arc::new(server::auth::SubjectAccessReviews::new(
        client.clone(),
        &node_name,
    ));
    let api = tokio::spawn(server::serve(
        listener,
        tls,
        cri.clone(),
        locator,
        authorizer,
    ));
    tracing::info!(listen = %config.listen, "serving the kubelet API");
    shutdown.await;
    heartbeat.abort();
    pods.abort();
    local_path.abort();
    api.abort();
    cni_api.abort();
    address_gc.abort();
    masquerade_gc.abort();
    services.abort();
    if let Some(announcer) = announcer {
        announcer.abort();
    }
    policies.abort();
    tunnels.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    tracing::info!("stopped; pods keep running");
    Ok(())
}

/// How often the agent compares its address pool with containerd's sandboxes.
const ADDRESS_GC_PERIOD: Duration = Duration::from_secs(60);
/// Allocations younger than this are never collected (their ADD may still be running).
const ADDRESS_GC_MIN_AGE: Duration = Duration::from_secs(120);

/// Frees addresses whose sandbox containerd no longer has: the CNI DEL of a sandbox removed
/// while the agent was down only removes its links, and this returns the address to the pool.
async fn collect_addresses(cri: Cri, backend: Arc<cni_api::Backend>) {
    let mut interval = tokio::time::interval(ADDRESS_GC_PERIOD);
    loop {
        interval.tick().await;
        match cri.sandbox_ids().await {
            Ok(live) => match backend.collect_garbage(&live, ADDRESS_GC_MIN_AGE).await {
                Ok(0) => {}
                Ok(released) => tracing::info!(released, "released addresses of gone sandboxes"),
                Err(err) => tracing::warn!("collecting stale addresses: {}", err.message()),
            },
            Err(err) => tracing::warn!("listing sandboxes for address GC: {err}"),
        }
    }
}
