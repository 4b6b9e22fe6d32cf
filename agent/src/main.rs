//! `flotilla-agent`: the node agent binary. Parses flags, sets up logging, calls the library.

use std::process::ExitCode;

use anyhow::Context as _;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use flotilla_agent::{
    datapath::{
        counters::{self, AttachOutcome, ProtocolCount},
        maglev::{Balancing, LbAlgorithm, TableSize},
        network::NetworkMaps,
        pins::NodePins,
        tunnels::Routing,
    },
    join::{self, CredentialPaths, JoinRequest},
    pods::{
        containerd::{NodeDirs, config_toml},
        cri::Cri,
    },
    run::AgentConfig,
};

/// The Flotilla node agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Name of the node this agent runs for; scopes its pins under /sys/fs/bpf/flotilla/<node>/.
    #[arg(long, env = "FLOTILLA_NODE_NAME", global = true, default_value = "")]
    node: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node agent: register the node, run its pods on containerd, serve the kubelet API.
    Run(Box<RunArgs>),
    /// Join a cluster with a bootstrap token (from `flotilla-controlplane token create
    /// --print-join-command`): check the server against the CA hash, get the node's certificates
    /// through CertificateSigningRequests, write them to the node's pki directory, then run as
    /// `run` does. With credentials already there it runs at once.
    Join(Box<JoinArgs>),
    /// Print (or write) the containerd configuration for this node's directories.
    ContainerdConfig {
        /// Base directory of the node's files (default: the system layout under /var/lib,
        /// /run and /var/log).
        #[arg(long, env = "FLOTILLA_NODE_DIR")]
        node_dir: Option<PathBuf>,
        /// Write the file to the node's config path (and create the node's directories) instead
        /// of printing it; prints the path written.
        #[arg(long)]
        write: bool,
    },
    /// Stop and remove every pod sandbox of this node's containerd (through CRI, so CNI releases
    /// the pods' addresses and namespaces), then the pods' volumes; for taking a node apart.
    /// Stop the agent first, or it starts the pods again.
    RemovePods {
        /// Base directory of the node's files (default: the system layout under /var/lib,
        /// /run and /var/log).
        #[arg(long, env = "FLOTILLA_NODE_DIR")]
        node_dir: Option<PathBuf>,
    },
    /// Manage the node's eBPF datapath.
    #[command(subcommand)]
    Datapath(DatapathCommand),
    /// Inspect the node's pinned BPF maps.
    #[command(subcommand)]
    Bpf(BpfCommand),
    /// Pass each TCP connection on --listen to the first of the API servers that accepts it
    /// (TLS goes end to end), for an address that outlives any one control plane: the admins'
    /// kubeconfig and the nodes' join address in front of several control planes. Needs no
    /// --node.
    ApiBalancer {
        /// Address to accept connections on, e.g. 192.168.78.254:6443.
        #[arg(long)]
        listen: SocketAddr,
        /// An API server (IP:PORT; repeatable, tried in this order while it accepts).
        #[arg(long = "server", required = true)]
        servers: Vec<SocketAddr>,
    },
}

/// Flags of `flotilla-agent join` (named as kubeadm join's), then those of `run`.
#[derive(Debug, Args)]
struct JoinArgs {
    /// The API server, e.g. https://192.168.78.254:6443.
    server: String,
    /// The bootstrap token, `<id>.<secret>`.
    #[arg(long, env = "FLOTILLA_TOKEN")]
    token: String,
    /// `sha256:<hex>` of the cluster CA's public key, as `token create --print-join-command`
    /// prints it.
    #[arg(long)]
    discovery_token_ca_cert_hash: String,
    /// How long to wait for each certificate to be signed (seconds).
    #[arg(long, default_value_t = 60)]
    certificate_timeout: u64,
    #[command(flatten)]
    run: RunArgs,
}

/// Flags of `flotilla-agent run` (named as kubelet's where kubelet has them).
#[derive(Debug, Args)]
struct RunArgs {
    /// The node's InternalIP (its pods' hostIP; where the API server reaches the kubelet API).
    #[arg(long, env = "FLOTILLA_NODE_IP")]
    node_ip: String,
    /// Kubeconfig with the node's credentials (default: `kubeconfig` in the node's pki
    /// directory, where `join` writes it).
    #[arg(long, env = "FLOTILLA_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Base directory of the node's files (default: the system layout under /var/lib, /run and
    /// /var/log).
    #[arg(long, env = "FLOTILLA_NODE_DIR")]
    node_dir: Option<PathBuf>,
    /// Address of the kubelet API.
    #[arg(long, default_value = "0.0.0.0:10250")]
    listen: SocketAddr,
    /// Reach the API through a load balancer on 127.0.0.1 that passes each connection to the
    /// kubeconfig's server or any other live API server (from the `kubernetes` Endpoints), as
    /// k3s's agents do; `false` talks to the kubeconfig's server only.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    api_balancer: bool,
    /// Answer ARP on the underlay for the LoadBalancer addresses (status.loadBalancer.ingress
    /// of Services without a loadBalancerClass) this node is elected for, with the other agents,
    /// as MetalLB's and Cilium's L2 mode do; `false` where something else announces them.
    #[arg(long, env = "FLOTILLA_L2_ANNOUNCEMENTS", default_value_t = true, action = clap::ArgAction::Set)]
    l2_announcements: bool,
    /// Serving certificate of the kubelet API (PEM, signed by the cluster CA; default:
    /// `kubelet.crt` in the node's pki directory).
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    /// Its private key (default: `kubelet.key` in the node's pki directory).
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,
    /// CA that client certificates (the API server's) must chain to (default: `ca.crt` in the
    /// node's pki directory).
    #[arg(long)]
    client_ca_file: Option<PathBuf>,
    /// cgroup the node's pods go below (default /flotilla/<node>).
    #[arg(long)]
    cgroup_root: Option<String>,
    /// Cluster DNS server IPs for pods' resolv.conf (comma-separated): the kube-dns Service's
    /// ClusterIP, the control plane's --cluster-dns. Without it pods get the node's resolv.conf.
    #[arg(long, env = "FLOTILLA_CLUSTER_DNS", value_delimiter = ',')]
    cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Maximum number of pods on the node.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// The cluster's pod network (the control plane's --cluster-cidr).
    #[arg(long, env = "FLOTILLA_CLUSTER_CIDR", default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// MTU of the overlay device and pods (default: the underlay's MTU minus 50 bytes of VXLAN).
    #[arg(long)]
    mtu: Option<u32>,
    /// How pod traffic reaches other nodes: `vxlan` (always encapsulated), `native`
    /// (unencapsulated to nodes on this node's underlay segment, VXLAN to the rest) or `auto`
    /// (native when every node is on the segment, else VXLAN).
    #[arg(long, env = "FLOTILLA_ROUTING", default_value = "vxlan")]
    routing: Routing,
    /// How new connections to a Service pick a backend: `random` (kube-proxy's and Cilium's
    /// default) or `maglev` (consistent hashing of each flow at tc, so every node picks the same
    /// backend and removing one moves only its own flows; connections from pods' sockets stay
    /// random). A Service's `service.flotilla.io/lb-algorithm` annotation overrides it.
    #[arg(long, env = "FLOTILLA_LB_ALGORITHM", default_value = "random")]
    lb_algorithm: LbAlgorithm,
    /// Entries per Maglev table (a prime: 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521
    /// or 131071): 4 bytes each per Maglev frontend; at least 100 times the backends a Service
    /// has, for an even spread.
    #[arg(long, env = "FLOTILLA_MAGLEV_TABLE_SIZE", default_value = "16381")]
    maglev_table_size: TableSize,
    /// The flotilla-cni binary installed into containerd's CNI bin dir (default: next to this
    /// binary).
    #[arg(long)]
    cni_plugin: Option<PathBuf>,
    /// Address of the Prometheus metrics endpoint (`/metrics`, plain HTTP); "off" disables it.
    #[arg(long, default_value = "0.0.0.0:9962")]
    metrics_listen: String,
}

#[derive(Debug, Subcommand)]
enum DatapathCommand {
    /// Attach the per-protocol packet counter to the ingress of a pod's host-side veth (in this
    /// process's network namespace). The link is pinned, so it outlives this command; running it
    /// again replaces the program atomically.
    AttachCounter {
        /// Host-side interface of the pod's veth pair.
        #[arg(long)]
        iface: String,
    },
    /// Detach the packet counter from an interface (succeeds if it is not attached).
    DetachCounter {
        /// Host-side interface of the pod's veth pair.
        #[arg(long)]
        iface: String,
    },
}

#[derive(Debug, Subcommand)]
enum BpfCommand {
    /// List the pods of this node in the datapath's endpoint map.
    Endpoints {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List the tunnel map: other nodes' podCIDRs and node IPs, and the node behind each.
    Tunnels {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List the Service frontends (ClusterIP, NodePort, external IP) and their backends.
    Services {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List the masquerade's tracked flows: pods' flows leaving the cluster (and the node's
    /// own moved off a port one of them holds), both directions, with their rewrites.
    Masquerade {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List the LoadBalancer addresses this node answers ARP for, with the link and MAC.
    Announced {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show the packets the datapath dropped, per reason, summed over all CPUs.
    Drops {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print the packets NetworkPolicy dropped (source, destination, ports, the direction whose
    /// policy denied it, the peer's identity), oldest first, from the node's event ring buffer;
    /// each event is printed once (reading consumes it).
    PolicyDrops {
        /// Keep waiting for new drops.
        #[arg(long, short)]
        follow: bool,
        /// Output format (JSON: one object per line).
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List the node's policy state: each local endpoint's allow rules and the identity cache.
    Policy {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List the per-protocol packet counters, summed over all CPUs.
    Counters {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("flotilla-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::ApiBalancer { listen, servers } = cli.command {
        return run_api_balancer(listen, servers);
    }
    if cli.node.is_empty() {
        anyhow::bail!("no node name: pass --node NAME or set FLOTILLA_NODE_NAME");
    }
    let dirs = |base: Option<PathBuf>| match base {
        Some(base) => NodeDirs::under(&base),
        None => NodeDirs::system(&cli.node),
    };
    match cli.command {
        Command::Join(args) => {
            let JoinArgs {
                server,
                token,
                discovery_token_ca_cert_hash,
                certificate_timeout,
                run,
            } = *args;
            let paths = CredentialPaths::in_dir(&dirs(run.node_dir.clone()).lib.join("pki"));
            if paths.kubeconfig.exists() {
                eprintln!(
                    "flotilla-agent: {} exists: this node has joined already; running",
                    paths.kubeconfig.display()
                );
            } else {
                let request = JoinRequest {
                    server,
                    token,
                    ca_cert_hash: discovery_token_ca_cert_hash,
                    node: cli.node.clone(),
                    address: run.node_ip.clone(),
                    timeout: Duration::from_secs(certificate_timeout),
                };
                let runtime =
                    tokio::runtime::Runtime::new().context("starting the async runtime")?;
                runtime
                    .block_on(flotilla_agent::join::join(&request, &paths))
                    .with_context(|| format!("joining {} as node {}", request.server, cli.node))?;
                eprintln!(
                    "flotilla-agent: node {} joined {}; credentials in {}",
                    cli.node,
                    request.server,
                    paths.kubeconfig.parent().unwrap_or(Path::new("")).display()
                );
            }
            return run_agent(&cli.node, run, dirs);
        }
        Command::Run(args) => return run_agent(&cli.node, *args, dirs),
        Command::RemovePods { node_dir } => {
            let node_dirs = dirs(node_dir);
            let socket = node_dirs.containerd_socket();
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let removed = runtime.block_on(async {
                let cri = Cri::connect(&socket)?;
                cri.remove_all_sandboxes().await
            });
            let removed = removed.with_context(|| {
                format!(
                    "removing the pods of node {} through containerd at {}",
                    cli.node,
                    socket.display()
                )
            })?;
            for name in &removed {
                println!("removed pod sandbox {name}");
            }
            println!("{} pod sandboxes removed", removed.len());
            // What the agent made for the pods outside containerd: their volumes (tmpfs mounts
            // for projected tokens, secrets, memory emptyDirs) under pods/<uid>.
            let pods_dir = node_dirs.pods_dir();
            let uids: Vec<String> = std::fs::read_dir(&pods_dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|entry| entry.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            for uid in &uids {
                flotilla_agent::pods::volumes::remove_pod_volumes(
                    &pods_dir,
                    uid,
                    &flotilla_agent::pods::volumes::HostMounter,
                )
                .with_context(|| format!("removing the volumes of pod {uid}"))?;
            }
            println!("{} pods' volumes removed", uids.len());
            return Ok(());
        }
        Command::ContainerdConfig { node_dir, write } => {
            let dirs = dirs(node_dir);
            let text = config_toml(&dirs);
            if write {
                // containerd and the agent expect these; creating them here lets a caller start
                // containerd right after writing its config.
                for dir in dirs.all() {
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let path = dirs.containerd_config();
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("{}", path.display());
            } else {
                print!("{text}");
            }
            return Ok(());
        }
        _ => {}
    }
    let pins = NodePins::new(&cli.node)?;
    match cli.command {
        Command::Run(_)
        | Command::Join(_)
        | Command::ContainerdConfig { .. }
        | Command::RemovePods { .. }
        | Command::ApiBalancer { .. } => {}
        Command::Datapath(DatapathCommand::AttachCounter { iface }) => {
            let outcome = counters::attach(&pins, &iface)
                .with_context(|| format!("attaching the packet counter to {iface}"))?;
            match outcome {
                AttachOutcome::Attached => println!("attached from_pod_count to {iface} ingress"),
                AttachOutcome::Replaced => {
                    println!("replaced the program on the existing link of {iface} ingress");
                }
            }
        }
        Command::Datapath(DatapathCommand::DetachCounter { iface }) => {
            counters::detach(&pins, &iface)?;
            println!("detached from_pod_count from {iface}");
        }
        Command::Bpf(BpfCommand::Endpoints { output }) => {
            let rows = NetworkMaps::open(&pins)?.endpoints()?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => {
                    println!(
                        "{:<16} {:>8} {:<18} {:<18}",
                        "ADDRESS", "IFINDEX", "POD MAC", "HOST MAC"
                    );
                    for row in rows {
                        println!(
                            "{:<16} {:>8} {:<18} {:<18}",
                            row.address, row.host_ifindex, row.pod_mac, row.host_mac
                        );
                    }
                }
            }
        }
        Command::Bpf(BpfCommand::Tunnels { output }) => {
            let rows = NetworkMaps::open(&pins)?.tunnels()?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => {
                    println!("{:<20} {:<16} ROUTING", "PREFIX", "NODE");
                    for row in rows {
                        let prefix = format!("{}/{}", row.prefix, row.prefix_len);
                        let routing = match (row.native, row.accepts_native) {
                            (true, _) => "native",
                            (false, true) => "vxlan (takes native)",
                            (false, false) => "vxlan",
                        };
                        println!("{prefix:<20} {:<16} {routing}", row.node_ip);
                    }
                }
            }
        }
        Command::Bpf(BpfCommand::Services { output }) => {
            let rows = flotilla_agent::datapath::services::ServiceMaps::open(&pins)?.rows()?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => {
                    println!("{:<24} {:>6} {:<16} BACKENDS", "FRONTEND", "ID", "FLAGS");
                    for row in rows {
                        println!(
                            "{:<24} {:>6} {:<16} {}",
                            row.frontend,
                            row.id,
                            row.flags.join(","),
                            row.backends.join(" ")
                        );
                    }
                }
            }
        }
        Command::Bpf(BpfCommand::Masquerade { output }) => {
            use flotilla_agent::datapath::{conntrack, masquerade};
            let entries = conntrack::NatTable::masquerade(&pins)?.entries()?;
            let rows = masquerade::rows(&entries, conntrack::monotonic_ns());
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => {
                    println!(
                        "{:<6} {:<5} {:<22} {:<22} {:<22} {:<22} {:>6} STATE",
                        "DIR", "PROTO", "FROM", "TO", "NEW FROM", "NEW TO", "IDLE"
                    );
                    for row in rows {
                        let state = match (row.live, row.closing) {
                            (false, _) => "expired",
                            (true, true) => "closing",
                            (true, false) => "live",
                        };
                        println!(
                            "{:<6} {:<5} {:<22} {:<22} {:<22} {:<22} {:>5}s {state}",
                            row.direction,
                            row.protocol,
                            row.from,
                            row.to,
                            row.new_from,
                            row.new_to,
                            row.idle_seconds
                        );
                    }
                }
            }
        }
        Command::Bpf(BpfCommand::Announced { output }) => {
            let rows = flotilla_agent::datapath::announce::ResponderMap::open(&pins)?.rows()?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => {
                    println!("{:<16} {:>8} MAC", "ADDRESS", "IFINDEX");
                    for row in rows {
                        println!("{:<16} {:>8} {}", row.address, row.ifindex, row.mac);
                    }
                }
            }
        }
        Command::Bpf(BpfCommand::Drops { output }) => {
            let rows = NetworkMaps::open(&pins)?.drops()?;
            match output {
                Output::Json => {
                    let rows: serde_json::Map<String, serde_json::Value> = rows
                        .into_iter()
                        .map(|(reason, count)| (reason.name().to_owned(), count.into()))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                Output::Table => {
                    println!("{:<24} {:>12}", "REASON", "PACKETS");
                    for (reason, count) in rows {
                        println!("{:<24} {count:>12}", reason.name());
                    }
                }
            }
        }
        Command::Bpf(BpfCommand::PolicyDrops { follow, output }) => {
            if matches!(output, Output::Table) {
                println!(
                    "{:<10} {:<8} {:<5} {:<21} {:<21} {:>8}",
                    "TIME", "DIR", "PROTO", "SOURCE", "DESTINATION", "IDENTITY"
                );
            }
            flotilla_agent::datapath::policy::read_drops(&pins, follow, |drop| match output {
                Output::Json => match serde_json::to_string(&drop) {
                    Ok(line) => println!("{line}"),
                    Err(err) => eprintln!("{err}"),
                },
                Output::Table => println!(
                    "{:<10.3} {:<8} {:<5} {:<21} {:<21} {:>8}",
                    drop.time_s,
                    drop.direction,
                    drop.proto,
                    format!("{}:{}", drop.src, drop.sport),
                    format!("{}:{}", drop.dst, drop.dport),
                    drop.identity
                ),
            })?;
        }
        Command::Bpf(BpfCommand::Policy { output }) => {
            let maps = flotilla_agent::datapath::policy::PolicyMaps::open(&pins)?;
            let listing = maps.listing()?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&listing)?),
                Output::Table => {
                    println!(
                        "{:<18} {:<8} {:>8} {:<5} {:<12}",
                        "ENDPOINT", "DIR", "IDENTITY", "PROTO", "PORTS"
                    );
                    for rule in &listing.rules {
                        println!(
                            "{:<18} {:<8} {:>8} {:<5} {:<12}",
                            rule.endpoint, rule.direction, rule.identity, rule.proto, rule.ports
                        );
                    }
                    println!();
                    println!("{:<20} {:>8}", "PREFIX", "IDENTITY");
                    for (prefix, identity) in &listing.ipcache {
                        println!("{prefix:<20} {identity:>8}");
                    }
                }
            }
        }
        Command::Bpf(BpfCommand::Counters { output }) => {
            let rows = counters::read(&pins)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => print_table(&rows),
            }
        }
    }
    Ok(())
}

fn print_table(rows: &[ProtocolCount]) {
    println!(
        "{:<6} {:<7} {:>9} {:>8} {:>12} {:>14}",
        "L3", "L4", "ETHERTYPE", "IPPROTO", "PACKETS", "BYTES"
    );
    for row in rows {
        println!(
            "{:<6} {:<7} {:>#9x} {:>8} {:>12} {:>14}",
            row.l3, row.l4, row.ethertype, row.ip_proto, row.packets, row.bytes
        );
    }
}

/// `api-balancer`: serves until SIGTERM or Ctrl-C.
fn run_api_balancer(listen: SocketAddr, servers: Vec<SocketAddr>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("listening for SIGTERM")?;
        let balancer =
            flotilla_agent::node::api_balancer::ApiBalancer::start(listen, servers.clone())
                .await
                .with_context(|| format!("listening on {listen}"))?;
        tracing::info!(
            address = %balancer.address(),
            ?servers,
            "the API balancer passes connections on to the first API server that accepts them"
        );
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        anyhow::Ok(())
    })
}

/// `run` (and `join` once the node has its credentials): runs the agent until SIGTERM or
/// Ctrl-C.
fn run_agent(
    node: &str,
    args: RunArgs,
    dirs: impl Fn(Option<PathBuf>) -> NodeDirs,
) -> anyhow::Result<()> {
    let node_dirs = dirs(args.node_dir);
    let pki = CredentialPaths::in_dir(&node_dirs.lib.join("pki"));
    // Credentials `join` wrote are renewed before they expire; given ones are the giver's.
    let renewed = (args.kubeconfig.is_none() && pki.client_cert.exists()).then(|| pki.clone());
    let node_ip = args.node_ip.clone();
    let config = AgentConfig {
        node_name: node.to_owned(),
        node_ip: args.node_ip,
        kubeconfig: args.kubeconfig.unwrap_or(pki.kubeconfig),
        dirs: node_dirs,
        listen: args.listen,
        tls_cert_file: args.tls_cert_file.unwrap_or(pki.serving_cert),
        tls_private_key_file: args.tls_private_key_file.unwrap_or(pki.serving_key),
        client_ca_file: args.client_ca_file.unwrap_or(pki.client_ca),
        cgroup_root: args
            .cgroup_root
            .unwrap_or_else(|| format!("/flotilla/{node}")),
        cluster_dns: args.cluster_dns.iter().map(ToString::to_string).collect(),
        cluster_domain: args.cluster_domain,
        max_pods: args.max_pods,
        cluster_cidr: args.cluster_cidr,
        mtu: args.mtu,
        routing: args.routing,
        balancing: Balancing {
            algorithm: args.lb_algorithm,
            table_size: args.maglev_table_size,
        },
        cni_plugin: args
            .cni_plugin
            .unwrap_or_else(flotilla_agent::node::network::default_plugin_path),
        api_balancer: args.api_balancer,
        l2_announcements: args.l2_announcements,
        metrics_listen: match args.metrics_listen.as_str() {
            "off" | "" => None,
            address => Some(address.parse().with_context(|| {
                format!("--metrics-listen {address:?} is not an address:port or \"off\"")
            })?),
        },
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let renewal_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::clone(&renewal_done);
    runtime.block_on(async {
        // SIGTERM is how process supervisors (and `cargo xtask down`) stop a daemon.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("listening for SIGTERM")?;
        let node = node.to_owned();
        flotilla_agent::run::run(config, async move {
            let renewal = async {
                match &renewed {
                    Some(paths) => join::renew_when_due(paths, &node, &node_ip).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
                () = renewal => done.store(true, std::sync::atomic::Ordering::SeqCst),
            }
        })
        .await
    })?;
    if renewal_done.load(std::sync::atomic::Ordering::SeqCst) {
        // The clients hold the old certificates: start again with the new ones (pods and the
        // datapath carry on through an agent restart).
        eprintln!("flotilla-agent: certificates renewed; restarting with them");
        let program = std::env::current_exe().context("finding this program to restart")?;
        let err = std::os::unix::process::CommandExt::exec(
            std::process::Command::new(&program).args(std::env::args_os().skip(1)),
        );
        return Err(err).with_context(|| format!("restarting {}", program.display()));
    }
    Ok(())
}
