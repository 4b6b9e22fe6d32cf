//! `flotilla-controlplane`: parses flags, sets up logging and runs the control plane.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use flotilla_controlplane::{
    apiserver::admission::Admission,
    controllers::{Settings, node_lifecycle},
    etcd::EtcdMember,
    ipam::{AddressRange, Cidr, PortRange},
    leader_election::Timings,
    run::{ClusterDns, Config, ControlPlane},
};

// The API server allocates and frees many small JSON values per request from many threads;
// glibc's malloc spent about a fifth of the CPU of the scheduler benchmark in its own locks and
// consolidation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Flotilla control plane: a Kubernetes-compatible API server on etcd.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Where certificates, tokens, the admin kubeconfig and the embedded etcd's data live.
    #[arg(
        long,
        env = "FLOTILLA_STATE_DIR",
        default_value = "/var/lib/flotilla/controlplane",
        global = true
    )]
    state_dir: PathBuf,
    /// Without a subcommand the control plane runs.
    #[command(subcommand)]
    command: Option<CliCommand>,
    /// Address and port the API server listens on (HTTPS).
    #[arg(long, env = "FLOTILLA_LISTEN", default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Comma-separated etcd client URLs of an external cluster; without it the control plane
    /// starts and supervises its own single etcd member under --state-dir.
    #[arg(long, env = "FLOTILLA_ETCD_ENDPOINTS", value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// Client port of the embedded etcd (loopback only).
    #[arg(long, default_value_t = 12379)]
    etcd_client_port: u16,
    /// Peer port of the embedded etcd (on --etcd-peer-address).
    #[arg(long, default_value_t = 12380)]
    etcd_peer_port: u16,
    /// The embedded etcd member's name, unique among the control planes of the cluster.
    #[arg(long, env = "FLOTILLA_ETCD_NAME", default_value = "flotilla")]
    etcd_name: String,
    /// Address the embedded etcd's peer port listens on: this machine's address when the
    /// control planes' members form one etcd cluster (--etcd-initial-cluster).
    #[arg(long, env = "FLOTILLA_ETCD_PEER_ADDRESS", default_value = "127.0.0.1")]
    etcd_peer_address: std::net::IpAddr,
    /// Every member of the control planes' etcd cluster at its first start, this one included:
    /// NAME=https://IP:PEER_PORT,... Members speak TLS to each other with certificates from the
    /// cluster CA, so the control planes share <state-dir>/pki (copy it from the first before
    /// starting the others); start them together, as etcd serves once most members run.
    #[arg(
        long,
        env = "FLOTILLA_ETCD_INITIAL_CLUSTER",
        value_delimiter = ',',
        value_parser = parse_member
    )]
    etcd_initial_cluster: Vec<(String, String)>,
    /// Extra DNS names or IPs for the serving certificate (repeatable, or comma-separated).
    #[arg(long = "tls-san", env = "FLOTILLA_TLS_SAN", value_delimiter = ',')]
    tls_sans: Vec<String>,
    /// CIDR Service ClusterIPs are allocated from; the first address is the `kubernetes` Service.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: Cidr,
    /// The cluster's pod network, cut into one podCIDR per node.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: Cidr,
    /// Prefix length of each node's podCIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// NodePort range.
    #[arg(long, default_value = "30000-32767")]
    service_node_port_range: PortRange,
    /// Addresses for Services of type LoadBalancer (MetalLB's and k3s ServiceLB's job): each
    /// such Service without a spec.loadBalancerClass gets one in status.loadBalancer.ingress
    /// (`kubectl get svc` shows it as EXTERNAL-IP); without a pool they stay <pending>.
    /// Entries are CIDRs, whose every address is handed out (192.168.1.240/28; a /32 is one
    /// address), or inclusive ranges A-B (192.168.1.240-192.168.1.250); repeat the flag or
    /// separate entries with commas. The lowest free address goes first, entries in the order
    /// given; spec.loadBalancerIP asks for one address of the pool. Take addresses of the nodes'
    /// own network that nothing else uses (outside any DHCP range), so that clients on it reach
    /// them; they may not overlap --cluster-cidr, --service-cluster-ip-range, each other or
    /// the --listen address.
    #[arg(
        long = "loadbalancer-pool",
        env = "FLOTILLA_LOADBALANCER_POOL",
        value_delimiter = ',',
        value_name = "CIDR|A-B"
    )]
    loadbalancer_pool: Vec<AddressRange>,
    /// How long a node may go without heartbeats before it is marked Unknown and tainted
    /// unreachable (seconds).
    #[arg(long, default_value_t = 40)]
    node_monitor_grace_period: u64,
    /// How often node health is checked (seconds).
    #[arg(long, default_value_t = 5)]
    node_monitor_period: u64,
    /// How long pods tolerate a not-ready node before eviction (seconds; added to every pod).
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// How long pods tolerate an unreachable node before eviction (seconds; added to every pod).
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
    /// Serve the cluster DNS: the ClusterIP of the `kube-system/kube-dns` Service the control
    /// plane keeps (inside --service-cluster-ip-range; kubeadm and k3s use its tenth address,
    /// 10.96.0.10 by default), answered by a DNS server on the --listen address. Give the same
    /// IP to every agent's --cluster-dns.
    #[arg(long, env = "FLOTILLA_CLUSTER_DNS")]
    cluster_dns: Option<std::net::Ipv4Addr>,
    /// Port the cluster DNS server listens on (UDP and TCP, on the --listen address); the
    /// kube-dns Service keeps offering port 53 and forwards there.
    #[arg(long, default_value_t = 53)]
    cluster_dns_port: u16,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Where the cluster DNS forwards names outside the cluster domain (IP or IP:PORT); by
    /// default the first nameserver of /etc/resolv.conf; `none` refuses them.
    #[arg(long, env = "FLOTILLA_CLUSTER_DNS_UPSTREAM", value_parser = parse_upstream)]
    cluster_dns_upstream: Option<Upstream>,
    /// Elect one control plane to run the scheduler and the controllers, through the Leases
    /// kube-system/kube-scheduler and kube-system/kube-controller-manager; every control plane
    /// serves the API. `false` runs them unelected (only for a control plane that is alone).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Route every node's podCIDR through the node's InternalIP where that address is on a
    /// network this machine is attached to (routes of protocol 241), so that the API server
    /// reaches admission webhooks served by pods. Needs CAP_NET_ADMIN.
    #[arg(long, env = "FLOTILLA_POD_ROUTES", default_value_t = true, action = clap::ArgAction::Set)]
    pod_routes: bool,
    /// How long a Lease not renewed stays with its holder.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: Duration,
    /// How long a leader keeps trying to renew before it stops its control loops.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: Duration,
    /// How often the leader renews and the other control planes try to take over.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: Duration,
}

/// One `NAME=URL` of `--etcd-initial-cluster`.
fn parse_member(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, url)) if !name.is_empty() && url.contains("://") => {
            Ok((name.to_owned(), url.to_owned()))
        }
        _ => Err(format!(
            "{text:?} is not NAME=URL (e.g. cp1=https://192.168.1.10:12380)"
        )),
    }
}

/// `--cluster-dns-upstream`: a server, or none.
#[derive(Debug, Clone, Copy)]
enum Upstream {
    Server(SocketAddr),
    Refuse,
}

fn parse_upstream(text: &str) -> Result<Upstream, String> {
    if text == "none" {
        return Ok(Upstream::Refuse);
    }
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(Upstream::Server(SocketAddr::new(ip, 53)));
    }
    text.parse().map(Upstream::Server).map_err(|_| {
        format!("{text:?} is not an IP, IP:PORT or `none` (e.g. 1.1.1.1 or 192.168.1.1:53)")
    })
}

#[derive(Debug, Subcommand)]
enum CliCommand {
    /// Create what the control planes of one cluster share (the CA and certificates under
    /// <state-dir>/pki, the ServiceAccount key, tokens.csv) without starting anything; copy them
    /// to every control plane's --state-dir before starting them together (kubeadm's `init
    /// phase certs`).
    Certs {
        /// DNS names or IPs the serving and etcd peer certificates must be valid for: every
        /// control plane's address (repeatable; loopback is always included).
        #[arg(long = "tls-san")]
        sans: Vec<String>,
    },
    /// Issue a node's credentials from the cluster CA (<state-dir>/pki): a kubeconfig with a
    /// client certificate for `system:node:<node>` and the kubelet API's serving certificate.
    NodeCredentials {
        /// The node's name.
        #[arg(long)]
        node: String,
        /// The node's address, put into the serving certificate (where the API server dials it).
        #[arg(long)]
        address: String,
        /// The API server URL the node's kubeconfig points at, e.g. https://192.168.78.254:6443.
        #[arg(long)]
        server: String,
        /// Directory to write kubeconfig, kubelet.crt, kubelet.key and ca.crt into.
        #[arg(long)]
        out: PathBuf,
    },
    /// Bootstrap tokens, with which new nodes join (`flotilla-agent join`).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Serve the cluster's DNS (`<svc>.<ns>.svc.<domain>`, `<ip>.<ns>.pod.<domain>`, ...) from
    /// the API's Services, EndpointSlices and Pods, over UDP and TCP.
    Dns {
        /// Kubeconfig with the credentials to list and watch Services, EndpointSlices and Pods.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: PathBuf,
        /// Address to answer on (UDP and TCP).
        #[arg(long, default_value = "0.0.0.0:53")]
        listen: SocketAddr,
        /// The cluster domain.
        #[arg(long, default_value = "cluster.local")]
        cluster_domain: String,
        /// DNS server (IP:port) that names outside the cluster domain are forwarded to; without
        /// it they are refused.
        #[arg(long)]
        upstream: Option<SocketAddr>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token (a Secret in kube-system, through the API as the admin) and print it.
    Create {
        /// How long the token is valid, e.g. 24h, 90m, 1h30m; 0 never expires.
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        /// What the token is for (kept in its Secret).
        #[arg(long, default_value = "")]
        description: String,
        /// Print the whole join command for a new node, not only the token.
        #[arg(long)]
        print_join_command: bool,
    },
}

/// `--ttl`: hours, minutes and seconds as Go writes durations (`24h`, `1h30m`, `90s`, `0`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {c:?} (use h, m and s, e.g. 24h or 1h30m)"
                ));
            }
        };
        let value: u64 = number
            .parse()
            .map_err(|_| format!("{text:?}: a number must come before {c:?}"))?;
        total = total.saturating_add(value.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(format!(
            "{text:?} is not a duration such as 24h, 90m or 1h30m"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// `node-credentials`: writes the files and lists them.
fn node_credentials(
    state_dir: &std::path::Path,
    node: &str,
    address: &str,
    server: &str,
    out: &std::path::Path,
) -> ExitCode {
    let pki = state_dir.join("pki");
    if !pki.join("ca.key").exists() {
        eprintln!(
            "flotilla-controlplane: no cluster CA at {}; start the control plane once with this \
             --state-dir (it creates the CA), or pass the --state-dir it uses",
            pki.display()
        );
        return ExitCode::FAILURE;
    }
    match flotilla_controlplane::auth::node::write_node_credentials(
        &pki, node, address, server, out,
    ) {
        Ok(credentials) => {
            for path in [
                &credentials.kubeconfig,
                &credentials.serving_cert,
                &credentials.serving_key,
                &credentials.client_ca,
            ] {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("flotilla-controlplane: issuing the credentials of node {node}: {err}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // hickory-server logs every DNS query and answer at info.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(CliCommand::Certs { sans }) = &cli.command {
        return match flotilla_controlplane::run::create_shared_state(&cli.state_dir, sans) {
            Ok(paths) => {
                for path in paths {
                    println!("{}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("flotilla-controlplane certs: {err}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(CliCommand::NodeCredentials {
        node,
        address,
        server,
        out,
    }) = &cli.command
    {
        return node_credentials(&cli.state_dir, node, address, server, out);
    }
    if let Some(CliCommand::Token {
        command:
            TokenCommand::Create {
                ttl,
                description,
                print_join_command,
            },
    }) = &cli.command
    {
        let ttl = (!ttl.is_zero()).then_some(*ttl);
        return match flotilla_controlplane::auth::bootstrap_tokens::create(
            &cli.state_dir,
            ttl,
            description,
        )
        .await
        {
            Ok(created) => {
                if *print_join_command {
                    println!("{}", created.join_command);
                } else {
                    println!("{}", created.token);
                }
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("flotilla-controlplane token create: {err}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(CliCommand::Dns {
        kubeconfig,
        listen,
        cluster_domain,
        upstream,
    }) = cli.command
    {
        let config = flotilla_controlplane::dns::Config {
            listen,
            cluster_domain,
            upstream,
        };
        return tokio::select! {
            result = flotilla_controlplane::dns::run(&kubeconfig, config) => {
                if let Err(err) = result {
                    eprintln!("flotilla-controlplane dns: {err}");
                }
                ExitCode::FAILURE
            }
            () = shutdown_signal() => ExitCode::SUCCESS,
        };
    }
    let cluster_dns = cli.cluster_dns.map(|ip| {
        let upstream = match cli.cluster_dns_upstream {
            Some(Upstream::Server(server)) => Some(server),
            Some(Upstream::Refuse) => None,
            None => flotilla_controlplane::dns::upstream_from_resolv_conf(
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
                &[cli.listen.ip(), ip.into()],
            ),
        };
        ClusterDns {
            port: cli.cluster_dns_port,
            domain: cli.cluster_domain.clone(),
            ..ClusterDns::new(ip, upstream)
        }
    });
    let loadbalancer_pool =
        flotilla_controlplane::ipam::loadbalancer_pool::describe_pool(&cli.loadbalancer_pool);
    let config = Config {
        etcd_endpoints: cli.etcd_endpoints,
        etcd_ports: (cli.etcd_client_port, cli.etcd_peer_port),
        etcd_member: EtcdMember {
            name: cli.etcd_name,
            peer_ip: cli.etcd_peer_address,
            initial_cluster: cli.etcd_initial_cluster,
            ..EtcdMember::default()
        },
        extra_names: cli.tls_sans,
        service_cidr: cli.service_cluster_ip_range,
        cluster_cidr: cli.cluster_cidr,
        node_cidr_mask: cli.node_cidr_mask_size,
        node_port_range: cli.service_node_port_range,
        loadbalancer_pool: cli.loadbalancer_pool,
        controllers: Settings {
            node_lifecycle: node_lifecycle::Settings {
                grace_period: Duration::from_secs(cli.node_monitor_grace_period),
                monitor_period: Duration::from_secs(cli.node_monitor_period.max(1)),
            },
            ..Settings::default()
        },
        admission: Admission {
            not_ready_toleration_seconds: cli.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds: cli.default_unreachable_toleration_seconds,
        },
        cluster_dns,
        pod_routes: cli.pod_routes,
        leader_election: cli.leader_elect.then_some(Timings {
            lease_duration: cli.leader_elect_lease_duration,
            renew_deadline: cli.leader_elect_renew_deadline,
            retry_period: cli.leader_elect_retry_period,
        }),
        ..Config::new(cli.state_dir, cli.listen)
    };
    let mut control_plane = match ControlPlane::start(config).await {
        Ok(control_plane) => control_plane,
        Err(err) => {
            eprintln!("flotilla-controlplane: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "flotilla-controlplane: serving https://{}; admin kubeconfig: {}\n  export KUBECONFIG={}",
        control_plane.address,
        control_plane.kubeconfig.display(),
        control_plane.kubeconfig.display()
    );
    if !loadbalancer_pool.is_empty() {
        eprintln!(
            "flotilla-controlplane: Services of type LoadBalancer get addresses from \
             {loadbalancer_pool}"
        );
    }
    if let (Some(address), Some(ip)) = (control_plane.dns_address, cli.cluster_dns) {
        eprintln!(
            "flotilla-controlplane: cluster DNS on {address} (UDP and TCP), Service \
             kube-system/kube-dns at {ip}:53; give the agents --cluster-dns {ip}"
        );
    }
    tokio::select! {
        result = control_plane.wait() => {
            if let Err(err) = result {
                eprintln!("flotilla-controlplane: stopped: {err}");
                control_plane.stop().await;
                return ExitCode::FAILURE;
            }
        }
        _ = shutdown_signal() => {
            eprintln!("flotilla-controlplane: shutting down");
        }
    }
    control_plane.stop().await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
