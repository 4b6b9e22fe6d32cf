//! Starting the control plane: state directory, PKI, tokens, kubeconfig, etcd (own or
//! external), then the API server.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use rand::Rng as _;

use crate::{
    apiserver::{ApiServer, allocations::Ipam},
    auth::{AuthError, Tokens, kubeconfig, pki::Pki},
    etcd::{EtcdConfig, EtcdError, EtcdProcess},
    ipam::{
        Cidr, Pool, PortRange,
        ranges::{ServiceIps, Subnets},
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
    /// Whether to run the scheduler and the controllers.
    pub scheduler: bool,
    /// Controller settings (node heartbeat grace period and monitor period).
    pub controllers: crate::controllers::Settings,
    /// Admission settings (default toleration of not-ready/unreachable nodes).
    pub admission: crate::apiserver::admission::Admission,
    /// How often IPAM pools are checked against the objects holding their items.
    pub ipam_repair_period: Duration,
}

impl Config {
    /// A configuration with the upstream defaults for the network ranges.
    pub fn new(state_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            state_dir,
            listen,
            etcd_endpoints: Vec::new(),
            etcd_ports: (12379, 12380),
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
            scheduler: true,
            controllers: crate::controllers::Settings::default(),
            admission: crate::apiserver::admission::Admission::default(),
            ipam_repair_period: Duration::from_secs(60),
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
        "cannot listen on {address}: {source} (is another API server running? pick another --secure-port)"
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
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    repair: tokio::task::JoinHandle<()>,
    etcd: Option<tokio::task::JoinHandle<()>>,
    scheduler: Option<tokio::task::JoinHandle<()>>,
}

impl ControlPlane {
    /// Starts everything and returns once the API server accepts connections.
    pub async fn start(config: Config) -> Result<Self, RunError> {
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

        let mut names = config.extra_names.clone();
        names.push(address.ip().to_string());
        let pki = Pki::load_or_create(&config.state_dir.join("pki"), &names)?;
        let (tokens, admin_token) = load_or_create_tokens(&config.state_dir.join("tokens.csv"))?;

        let (store, etcd) = if config.etcd_endpoints.is_empty() {
            let etcd_config = EtcdConfig {
                data_dir: config.state_dir.join("etcd"),
                client_port: config.etcd_ports.0,
                peer_port: config.etcd_ports.1,
            };
            let (process, store) = EtcdProcess::start(etcd_config, Duration::from_secs(30)).await?;
            (store, Some(tokio::spawn(process.supervise())))
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
        let api = ApiServer::new(store, tokens, address.to_string())
            .with_kubelet_client(crate::auth::pki::kubelet_client_config(&pki)?)
            .with_ipam(ipam)
            .with_admission(config.admission);
        api.bootstrap()
            .await
            .map_err(|err| RunError::Bootstrap(err.to_string()))?;
        let tls = pki.server_config()?;
        let repair = tokio::spawn(
            api.clone()
                .repair_allocations_forever(config.ipam_repair_period),
        );
        let server = tokio::spawn(api.serve(listener, tls));
        let scheduler = if config.scheduler {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(&kubeconfig_path).map_err(|err| {
                    RunError::Bootstrap(format!("reading the admin kubeconfig: {err}"))
                })?;
            let client_config =
                kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                    .await
                    .map_err(|err| RunError::Bootstrap(format!("the admin kubeconfig: {err}")))?;
            let client = kube::Client::try_from(client_config)
                .map_err(|err| RunError::Bootstrap(format!("a client for the scheduler: {err}")))?;
            let settings = config.controllers;
            Some(tokio::spawn(async move {
                tokio::join!(
                    crate::scheduler::run(client.clone()),
                    crate::controllers::run(client, settings)
                );
            }))
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
            server,
            repair,
            etcd,
            scheduler,
        })
    }

    /// Waits until the server stops (it only stops on an accept error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.server).await {
            Ok(result) => result,
            Err(err) => Err(std::io::Error::other(err)),
        }
    }

    /// Stops the API server and the embedded etcd.
    pub async fn stop(self) {
        if let Some(scheduler) = self.scheduler {
            scheduler.abort();
        }
        self.server.abort();
        self.repair.abort();
        if let Some(etcd) = self.etcd {
            etcd.abort();
            let _ = etcd.await;
        }
    }
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
