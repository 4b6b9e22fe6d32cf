//! `cargo xtask up/down/status`: the local cluster.
//!
//! `up` builds a test bed that outlives the command (namespaces `flotilla-underlay`,
//! `flotilla-node<N>` on 192.168.78.0/24, the host joined as 192.168.78.254 through the link
//! `flotilla-host`), starts the control plane on the host's underlay address, and per node a
//! containerd and the agent inside the node's namespace, each in a process group of its own.
//! Everything on disk lives under `<workspace>/.flotilla/cluster/` (pid files, logs, the control
//! plane's state, one directory per node). `down` takes it apart in the order that leaves
//! nothing behind: agents, pods (through CRI, so CNI releases addresses and pod namespaces),
//! containerd and its shims, cgroups, the control plane, namespaces and pins, files.
//!
//! The fixed `flotilla-` prefix keeps the cluster apart from the privileged tests' test beds
//! (`fltb-<pid>-`, subnet 192.168.1xx.0/24 per process), which may run at the same time.

mod check;
mod control_plane;
mod demo;
mod inventory;
mod node;
mod supervisor;

use std::{
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Args;
use flotilla_testbed::{Testbed, TestbedConfig};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

use crate::{
    images,
    process::{cargo, is_root, output_of, run_visible, target_dir, workspace_root},
    setup,
};
use control_plane::{Site, kubeconfig};
use inventory::Inventory;

/// Prefix of the local cluster's namespaces, node names and pin directories.
pub(crate) const PREFIX: &str = "flotilla-";
/// Third octet of the cluster's underlay subnet (the tests use 77).
const UNDERLAY_OCTET: u8 = 78;
/// The host side of the host's link to the underlay bridge.
const HOST_LINK: &str = "flotilla-host";
/// The API server's port on the host's underlay address.
const API_PORT: u16 = 6443;
/// The kube-dns Service's ClusterIP: the control plane serves the cluster DNS behind it (on the
/// host's underlay address, port 53) and every agent writes it into its pods' resolv.conf.
pub(crate) const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// The addresses Services of type LoadBalancer get (`--loadbalancer-pool`), as MetalLB's or
/// k3s ServiceLB's on a LAN: the top of the underlay (192.168.78.240-192.168.78.253), which no
/// node (.11 up), control-plane machine (.2 up) or the host (.254, where the API server or
/// balancer listens) ever holds. Not `.240/28`: that holds the host's .254 (the control plane
/// refuses a pool with its own address) and the broadcast .255.
pub(crate) fn loadbalancer_pool() -> String {
    let octet = UNDERLAY_OCTET;
    format!("192.168.{octet}.240-192.168.{octet}.253")
}
/// Ports the local cluster's etcd uses on loopback (client, peer).
const ETCD_PORTS: (u16, u16) = (12379, 12380);
/// Node count when `--nodes` is not given and no cluster runs.
const DEFAULT_NODES: usize = 2;
/// Most nodes `up` starts: each runs a containerd and an agent on a machine shared with builds.
const MAX_NODES: usize = 20;

/// Options of `cargo xtask up`.
#[derive(Debug, Default, Args)]
pub(crate) struct UpArgs {
    /// Number of worker nodes (default 2; a running cluster keeps the count it has).
    #[arg(long)]
    nodes: Option<usize>,
    /// Number of control planes: 1 (default) runs on the host; 3 or 5 each run on a machine
    /// (namespace) of their own with one member of a shared etcd cluster, behind an API
    /// balancer on the host's address (a running cluster keeps the count it has).
    #[arg(long)]
    control_planes: Option<usize>,
    /// How pod traffic reaches other nodes: `vxlan` (default), `native` or `auto` (every node
    /// of the local cluster shares one segment, so both route unencapsulated; see the README's
    /// "The pod network"). A running cluster keeps the mode it was started with.
    #[arg(long, value_parser = ROUTING_MODES)]
    routing: Option<String>,
    /// Then run the walk-through of `cargo xtask demo`.
    #[arg(long)]
    pub(crate) demo: bool,
}

/// The agents' `--routing` modes.
const ROUTING_MODES: [&str; 3] = ["vxlan", "native", "auto"];
/// The agents' default `--routing`, for a cluster started without `up --routing`.
const DEFAULT_ROUTING: &str = "vxlan";

/// Where the local cluster keeps the routing mode its agents run with.
fn routing_file() -> PathBuf {
    cluster_dir().join("routing")
}

/// The routing mode the local cluster's agents run with (VXLAN unless `up --routing` said
/// otherwise).
fn routing() -> String {
    std::fs::read_to_string(routing_file())
        .map(|mode| mode.trim().to_owned())
        .unwrap_or_else(|_| DEFAULT_ROUTING.to_owned())
}

/// The test-bed settings of the local cluster with `nodes` nodes.
fn testbed_config(nodes: usize) -> TestbedConfig {
    TestbedConfig {
        prefix: Some(PREFIX.to_owned()),
        underlay_octet: UNDERLAY_OCTET,
        host_link: Some(HOST_LINK.to_owned()),
        ..TestbedConfig::nodes(nodes)
    }
}

/// The host's address on the cluster's underlay, where the API server listens.
fn host_ip() -> Ipv4Addr {
    testbed_config(1).host_ip()
}

/// Where the API server listens.
fn api_address() -> SocketAddr {
    SocketAddr::from((host_ip(), API_PORT))
}

/// The API server's URL.
fn server_url() -> String {
    format!("https://{}", api_address())
}

/// Where the local cluster keeps its state.
fn cluster_dir() -> PathBuf {
    workspace_root().join(".flotilla").join("cluster")
}

/// The binaries the cluster runs, copied out of the target directory, each with arguments and a
/// word their output must contain (to tell a current build from an older one). The agent installs
/// the CNI plugin found next to itself into each node's CNI bin dir.
const BINARIES: [(&str, &[&str], &str); 3] = [
    (
        "flotilla-controlplane",
        &["token", "create", "--help"],
        "print-join-command",
    ),
    (
        "flotilla-agent",
        &["join", "--help"],
        "discovery-token-ca-cert-hash",
    ),
    ("flotilla-cni", &["--help"], "CNI_COMMAND"),
];

/// Builds the cluster's binaries (debug, or `release`); returns the directory they are in.
pub(crate) fn build_binaries(release: bool) -> anyhow::Result<PathBuf> {
    let mut command = cargo();
    command.arg("build");
    if release {
        command.arg("--release");
    }
    for (name, _, _) in BINARIES {
        command.args(["--package", name]);
    }
    run_visible("building Flotilla", &mut command)?;
    Ok(target_dir().join(if release { "release" } else { "debug" }))
}

/// The names of the binaries a cluster runs.
pub(crate) fn binary_names() -> impl Iterator<Item = &'static str> {
    BINARIES.iter().map(|(name, _, _)| *name)
}

/// Where the cluster's copies of the binaries live.
fn bin_dir() -> PathBuf {
    cluster_dir().join("bin")
}

/// A binary of the cluster: its copy, or the build output if there is no copy (yet).
fn binary(name: &str) -> PathBuf {
    let copy = bin_dir().join(name);
    if copy.exists() {
        copy
    } else {
        target_dir().join("debug").join(name)
    }
}

/// Copies the freshly built binaries next to the cluster's state. The target directory may be
/// shared with other checkouts whose builds replace the files there; the cluster keeps running,
/// and `down` later uses, exactly the binaries it started with.
fn copy_binaries() -> anyhow::Result<()> {
    let dir = bin_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, args, subcommand) in BINARIES {
        let built = target_dir().join("debug").join(name);
        let copy = dir.join(name);
        std::fs::copy(&built, &copy)
            .with_context(|| format!("copying {} into {}", built.display(), dir.display()))?;
        // A build from another checkout sharing the target directory may have replaced the file
        // between our build and the copy. (flotilla-cni answers any flag with a CNI error on
        // stdout and a non-zero exit, which output_of treats as failure, hence stdout+stderr.)
        let help = Command::new(&copy)
            .args(args)
            .output()
            .map(|out| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .unwrap_or_default();
        if !help.contains(subcommand) {
            bail!(
                "{} lacks `{subcommand}` in its `{}` output: a build from another checkout sharing \
                 the target directory replaced it after ours; run `cargo xtask down` and `cargo \
                 xtask up` again (or give this checkout its own CARGO_TARGET_DIR)",
                built.display(),
                args.join(" ")
            );
        }
    }
    Ok(())
}

/// `cargo xtask up`, and with `--demo` (or as `cargo xtask demo`) the walk-through after it.
pub(crate) fn up(args: &UpArgs) -> anyhow::Result<()> {
    let nodes = up_cluster(args)?;
    if args.demo {
        demo::run(&kubeconfig(), &nodes).context(
            "the demo failed; its objects are left in namespaces prod and dev for inspection \
             (`kubectl get all -n prod`), and `cargo xtask demo` starts it over",
        )?;
    }
    Ok(())
}

/// Brings the cluster up (or reuses a running one), checks it; returns the node names.
fn up_cluster(args: &UpArgs) -> anyhow::Result<Vec<String>> {
    if !is_root() {
        bail!("the local cluster creates network namespaces and loads eBPF, so `up` needs root");
    }
    if which::which("kubectl").is_err() {
        bail!(
            "`up` checks the cluster with kubectl, which is not on PATH; Debian bookworm does not \
             package it: install kubectl 1.32 from the Kubernetes release binaries"
        );
    }
    // The supervisor restarts daemons too: one of the two at a time.
    let repairing = match supervisor::lock(false)? {
        Some(lock) => lock,
        None => {
            eprintln!("up: the supervisor is restarting a daemon; waiting for it to finish");
            supervisor::lock(true)?.context("the repair lock")?
        }
    };
    let inventory = Inventory::scan();
    let blockers = inventory.repair_blockers();
    if !inventory.is_empty() && blockers.is_empty() {
        let (nodes, control_planes) = (inventory.nodes.len(), inventory.control_planes.len());
        if let Some(wanted) = args.nodes
            && wanted != nodes
        {
            bail!(
                "the local cluster has {nodes} nodes; `cargo xtask down` first to start one with \
                 {wanted}"
            );
        }
        if let Some(wanted) = args.control_planes
            && wanted != control_planes
        {
            bail!(
                "the local cluster has {control_planes} control planes; `cargo xtask down` first \
                 to start one with {wanted}"
            );
        }
        let routing = routing();
        if let Some(wanted) = &args.routing
            && *wanted != routing
        {
            bail!(
                "the local cluster routes with {routing}; `cargo xtask down` first to start one \
                 routing with {wanted}"
            );
        }
    }
    let nodes = if inventory.is_complete() {
        eprintln!(
            "up: the local cluster is already running ({} control planes, {} nodes); reusing \
             it. It runs the binaries it was started with: `cargo xtask down && cargo xtask up` \
             restarts it with freshly built ones.",
            inventory.control_planes.len(),
            inventory.nodes.len()
        );
        inventory.node_names()
    } else if !inventory.is_empty() && blockers.is_empty() {
        repair(&inventory).context(
            "repairing the local cluster failed; logs under .flotilla/cluster/, and `cargo xtask \
             down` removes it",
        )?;
        inventory.node_names()
    } else if !inventory.is_empty() {
        bail!("{}", inventory.stale_message(&blockers));
    } else {
        let nodes = args.nodes.unwrap_or(DEFAULT_NODES);
        if !(1..=MAX_NODES).contains(&nodes) {
            bail!("--nodes {nodes}: the local cluster has 1 to {MAX_NODES} nodes");
        }
        let control_planes = args.control_planes.unwrap_or(1);
        if !control_plane::COUNTS.contains(&control_planes) {
            bail!(
                "--control-planes {control_planes}: the local cluster runs 1, 3 or 5 (etcd needs \
                 most of its members, so a fourth tolerates no more failures than three do)"
            );
        }
        setup::run()?;
        let lacking = setup::kernel_problems();
        if !lacking.is_empty() {
            bail!(
                "this machine's kernel cannot run Flotilla's datapath:\n  - {}",
                lacking.join("\n  - ")
            );
        }
        build_binaries(false)?;
        let images = images::build(None)?;
        let routing = args.routing.as_deref().unwrap_or(DEFAULT_ROUTING);
        start_fresh(
            nodes,
            &control_plane::sites_for(control_planes),
            routing,
            &images,
        )
        .context(
            "the cluster did not come up; what was started is left for inspection (logs under \
             .flotilla/cluster/) and `cargo xtask down` removes it",
        )?
    };
    drop(repairing);
    supervisor::ensure_running()?;
    let kubeconfig = kubeconfig();
    let after_start = || {
        format!(
            "the cluster runs but is not healthy; logs: {} and .flotilla/cluster/nodes/*/\
             {{containerd,agent}}.log; `cargo xtask down` removes it",
            control_plane::sites()
                .iter()
                .map(|site| site.log().display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    check::wait_nodes_ready(&kubeconfig, &nodes, Duration::from_secs(120))
        .with_context(after_start)?;
    run_visible(
        "kubectl get nodes -o wide",
        check::kubectl(&kubeconfig).args(["get", "nodes", "-o", "wide"]),
    )?;
    check::deployment(&kubeconfig).with_context(after_start)?;
    let sites = control_plane::sites();
    let api = if control_plane::balanced(&sites) {
        format!(
            "{} control planes ({}) behind the API balancer at {}",
            sites.len(),
            sites
                .iter()
                .map(|site| site.address().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            server_url()
        )
    } else {
        format!("API server {}", server_url())
    };
    println!(
        "\nThe local cluster is up: {} nodes ({}), {api}.\n\
         Pods reach each other on every node through Flotilla's eBPF datapath (routing between \
         nodes: {}); inspect it with `flotilla-agent --node NODE bpf endpoints|tunnels|drops` \
         (in .flotilla/cluster/bin) or the agents' metrics on http://<node IP>:9962/metrics.\n\
         Pods resolve Services by name (`<svc>`, `<svc>.<ns>.svc.cluster.local`) through the \
         cluster DNS, which every control plane serves on its address, port 53, behind the \
         Service kube-system/kube-dns ({CLUSTER_DNS}).\n\
         `kubectl expose --type=LoadBalancer` gives a Service an address from {} (its \
         EXTERNAL-IP).\n\
         `cargo xtask status` shows what runs, `cargo xtask down` removes it all.\n\
         Use it with:\n\n  export KUBECONFIG={}\n",
        nodes.len(),
        nodes.join(", "),
        routing(),
        loadbalancer_pool(),
        kubeconfig.display()
    );
    Ok(nodes)
}

/// Restarts what died of a cluster whose namespaces and state are intact: the control planes
/// (on their etcd data; all at once, as a stopped etcd cluster needs most of its members back
/// before any serves), the API balancer, each node's containerd (its pods' shims keep running)
/// and agent (it re-adopts the pods and the pinned datapath). Pods and objects are kept;
/// nothing is rebuilt.
fn repair(inventory: &Inventory) -> anyhow::Result<()> {
    eprintln!(
        "up: the local cluster is partly down; restarting what is missing with the binaries \
         it was started with (nothing is deleted)"
    );
    let sites = inventory.sites();
    let mut started = Vec::new();
    let mut others = Vec::new();
    for daemon in inventory.missing() {
        match daemon {
            Daemon::ControlPlane(site) => started.push((site, control_plane::start(site, &sites)?)),
            other => others.push(other),
        }
    }
    for (site, child) in &mut started {
        control_plane::wait_ready(*site, child, Duration::from_secs(60))?;
    }
    for daemon in others {
        restart(inventory, &daemon)?;
    }
    Ok(())
}

/// A daemon of the local cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Daemon {
    /// A control plane (with its embedded etcd).
    ControlPlane(Site),
    /// The API balancer in front of several control planes.
    ApiBalancer,
    /// The containerd of the named node.
    Containerd(String),
    /// The agent of the named node.
    Agent(String),
}

impl std::fmt::Display for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ControlPlane(site) => write!(f, "{site}"),
            Self::ApiBalancer => write!(f, "the API balancer"),
            Self::Containerd(node) => write!(f, "{node}'s containerd"),
            Self::Agent(node) => write!(f, "{node}'s agent"),
        }
    }
}

/// Starts `daemon` again with the binaries and flags the cluster was started with. A control
/// plane is not waited for: with the others down it cannot serve until they are back.
fn restart(inventory: &Inventory, daemon: &Daemon) -> anyhow::Result<()> {
    let kept = |name: &str| -> anyhow::Result<flotilla_testbed::KeptNode> {
        let state = inventory
            .nodes
            .iter()
            .find(|state| state.name == name)
            .with_context(|| format!("{name} is not a node of the cluster"))?;
        Ok(flotilla_testbed::KeptNode {
            name: state.name.clone(),
            netns: flotilla_testbed::Netns::open(&state.name)?,
            underlay_ip: state
                .ip()
                .with_context(|| format!("{}: no node number in its name", state.name))?,
        })
    };
    match daemon {
        // The etcd a killed control plane leaves behind is stopped by the control plane
        // starting on the same data directory (etcd.rs, `stop_orphans`).
        Daemon::ControlPlane(site) => control_plane::start(*site, &inventory.sites()).map(drop),
        Daemon::ApiBalancer => control_plane::start_balancer(&inventory.sites()),
        Daemon::Containerd(name) => node::start_containerd(&kept(name)?).map(drop),
        Daemon::Agent(name) => node::start_agent(&kept(name)?),
    }
}

/// Builds the namespaces, starts the control planes at `sites` and every node; returns the node
/// names.
fn start_fresh(
    nodes: usize,
    sites: &[Site],
    routing: &str,
    images: &[images::WrittenImage],
) -> anyhow::Result<Vec<String>> {
    let balanced = control_plane::balanced(sites);
    if !balanced {
        for port in [ETCD_PORTS.0, ETCD_PORTS.1] {
            check_port_free(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "etcd")?;
        }
    }
    copy_binaries()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting an async runtime for netlink")?;
    let kept = runtime.block_on(async {
        let config = TestbedConfig {
            control_planes: if balanced { sites.len() } else { 0 },
            ..testbed_config(nodes)
        };
        let mut bed = Testbed::create(config)
            .await
            .context("creating the node namespaces")?;
        bed.link_host()
            .await
            .with_context(|| format!("joining the host to the underlay as {}", host_ip()))?;
        // Checked with the address in place; on failure `bed` drops and removes the namespaces.
        check_port_free(
            api_address(),
            if balanced {
                "the API balancer"
            } else {
                "the API server"
            },
        )?;
        if !balanced {
            let dns = SocketAddr::from((host_ip(), 53));
            check_port_free(dns, "the cluster DNS")?;
            if std::net::UdpSocket::bind(dns).is_err() {
                bail!(
                    "{dns}/udp (the cluster DNS) is in use by another process; find it with `ss \
                     -lunp` and stop it, or run `cargo xtask down` if it is a Flotilla cluster \
                     from an earlier run"
                );
            }
        }
        anyhow::Ok(bed.keep())
    })?;
    eprintln!(
        "up: created the namespaces {} on 192.168.{UNDERLAY_OCTET}.0/24; the host is {} on {HOST_LINK}",
        std::iter::once(format!("{PREFIX}underlay"))
            .chain(
                kept.control_planes
                    .iter()
                    .map(|machine| machine.name.clone())
            )
            .chain(kept.nodes.iter().map(|node| node.name.clone()))
            .collect::<Vec<_>>()
            .join(", "),
        host_ip()
    );
    if balanced {
        control_plane::share_state(sites)?;
    }
    // Started together: the members of a new etcd cluster wait for each other.
    let mut started = Vec::new();
    for site in sites {
        started.push((*site, control_plane::start(*site, sites)?));
    }
    for (site, child) in &mut started {
        control_plane::wait_ready(*site, child, Duration::from_secs(60))?;
    }
    if balanced {
        control_plane::write_balanced_kubeconfig(sites)?;
        control_plane::start_balancer(sites)?;
    }
    // Kept for every later start of an agent (repair, `start`, the supervisor).
    std::fs::write(routing_file(), routing)
        .with_context(|| format!("writing {}", routing_file().display()))?;
    for kept_node in &kept.nodes {
        node::start(kept_node, images)
            .with_context(|| format!("starting node {}", kept_node.name))?;
    }
    Ok(kept.nodes.into_iter().map(|node| node.name).collect())
}

fn check_port_free(address: SocketAddr, what: &str) -> anyhow::Result<()> {
    if TcpListener::bind(address).is_err() {
        bail!(
            "{address} ({what}) is in use by another process; find it with `ss -ltnp` and stop \
             it, or run `cargo xtask down` if it is a Flotilla cluster from an earlier run"
        );
    }
    Ok(())
}

/// Starts `command` as a daemon of the cluster: in a process group of its own (it outlives this
/// command and a Ctrl-C in its terminal; `stop`/`down` end it), no stdin, stdout and stderr
/// appended to `log` (after a crash, what the last run wrote is what explains it), its pid
/// written to `pid_file`.
fn spawn_daemon(
    command: &mut Command,
    log: &Path,
    pid_file: &Path,
) -> anyhow::Result<std::process::Child> {
    use std::os::unix::process::CommandExt as _;
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", command.get_program().to_string_lossy()))?;
    write_pid(pid_file, child.id())?;
    Ok(child)
}

/// Records a daemon's pid.
fn write_pid(file: &Path, pid: u32) -> anyhow::Result<()> {
    std::fs::write(file, pid.to_string()).with_context(|| format!("writing {}", file.display()))
}

/// `cargo xtask stop`: stops the control planes (with their etcd), the API balancer, the agents
/// and containerd,
/// keeping everything else: etcd's data, the namespaces, the pinned datapath and the pods, which
/// keep running; `cargo xtask start` (or `up`) starts them again.
pub(crate) fn stop() -> anyhow::Result<()> {
    if !is_root() {
        bail!("stopping the local cluster's processes needs root");
    }
    // First the supervisor, or it would start again what this stops.
    let supervisor = supervisor::stop()?;
    let inventory = Inventory::scan();
    if inventory.is_empty() {
        println!("stop: there is no local cluster");
        return Ok(());
    }
    let mut did = Vec::new();
    if let Some(pid) = supervisor {
        did.push(format!("stopped the supervisor (pid {pid})"));
    }
    for state in &inventory.nodes {
        node::stop(state, &mut did);
    }
    stop_control_planes(&inventory, &mut did)?;
    // An etcd that outlived a killed control plane.
    for (pid, program) in &inventory.strays {
        if inventory::program_name(program) == "etcd" {
            crate::process::kill_now(*pid);
            did.push(format!(
                "stopped etcd {pid}, left by a killed control plane"
            ));
        }
    }
    for line in &did {
        println!("stop: {line}");
    }
    println!(
        "stop: the cluster's state and pods are kept; `cargo xtask start` starts it again, \
         `cargo xtask down` removes it"
    );
    Ok(())
}

/// `cargo xtask start`: starts a stopped (or crashed) local cluster again; `up` without building.
pub(crate) fn start() -> anyhow::Result<()> {
    let inventory = Inventory::scan();
    if inventory.is_empty() {
        bail!("there is no local cluster to start; `cargo xtask up` creates one");
    }
    up_cluster(&UpArgs::default()).map(|_| ())
}

pub(crate) fn down() -> anyhow::Result<()> {
    if !is_root() {
        bail!("removing namespaces, processes, cgroups and bpffs pins needs root");
    }
    let mut did = Vec::new();
    let mut problems = Vec::new();
    // First the supervisor, or it would start again what this removes.
    match supervisor::stop() {
        Ok(Some(pid)) => did.push(format!("stopped the supervisor (pid {pid})")),
        Ok(None) => {}
        Err(err) => problems.push(format!("stopping the supervisor: {err:#}")),
    }
    let inventory = Inventory::scan();
    // Nodes first, while the API is still there for nothing to notice; pods go before
    // containerd, containerd before the namespaces.
    for state in &inventory.nodes {
        node::take_down(state, &mut did, &mut problems);
    }
    node::remove_empty_cgroup_parents();
    if let Err(err) = stop_control_planes(&inventory, &mut did) {
        problems.push(format!("stopping the control planes: {err:#}"));
    }
    // Whatever still runs from the cluster's files (an orphaned etcd, a shim of a containerd
    // that died) goes too.
    for (pid, program) in inventory::processes_mentioning(&cluster_dir()) {
        crate::process::kill_now(pid);
        did.push(format!("killed leftover process {pid} ({program})"));
    }
    match flotilla_testbed::remove_with_prefix(PREFIX) {
        Ok(removed) => {
            for path in removed {
                did.push(format!("removed {}", path.display()));
            }
        }
        Err(err) => problems.push(format!("removing the cluster's namespaces and pins: {err}")),
    }
    let dir = cluster_dir();
    if dir.exists() {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => did.push(format!("removed {}", dir.display())),
            Err(err) => problems.push(format!(
                "removing {}: {err} (a mount left below it? see `mount | grep {}`)",
                dir.display(),
                dir.display()
            )),
        }
        // The parent goes if the cluster was all it held.
        if let Some(parent) = dir.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    // Test beds of killed test runs; those of running tests are left alone.
    match flotilla_testbed::sweep_stale() {
        Ok(report) => {
            for path in report.removed {
                did.push(format!(
                    "removed {} (left by a killed test run)",
                    path.display()
                ));
            }
        }
        Err(err) => problems.push(format!("sweeping stale test beds: {err}")),
    }
    if did.is_empty() && problems.is_empty() {
        eprintln!("down: nothing to remove");
    }
    for line in did {
        eprintln!("down: {line}");
    }
    if !problems.is_empty() {
        bail!(
            "some of the cluster could not be removed:\n  - {}\nfix the cause and run `cargo \
             xtask down` again",
            problems.join("\n  - ")
        );
    }
    Ok(())
}

/// `xtask supervise`: keeps the local cluster's daemons running (see [`supervisor`]).
pub(crate) fn supervise(dir: &Path) -> anyhow::Result<()> {
    if dir != cluster_dir() {
        bail!(
            "this checkout's cluster is {}, not {}: run the supervisor from the checkout that \
             owns the cluster",
            cluster_dir().display(),
            dir.display()
        );
    }
    supervisor::run()
}

/// Stops the API balancer and every control plane with its etcd, all at once (one by one, the
/// last ones would wait for an etcd that lost most of its members).
fn stop_control_planes(inventory: &Inventory, did: &mut Vec<String>) -> anyhow::Result<()> {
    let mut groups = Vec::new();
    let mut stopped = Vec::new();
    if let Some(pid) = inventory.balancer {
        groups.push(pid);
        stopped.push(format!("stopped the API balancer (pid {pid})"));
    }
    for state in &inventory.control_planes {
        if let Some(pid) = state.pid {
            groups.push(pid);
            stopped.push(format!(
                "stopped {} and its etcd (process group {pid})",
                state.site
            ));
        }
    }
    stop_groups(&groups)?;
    did.extend(stopped);
    Ok(())
}

/// SIGTERM to the process groups, SIGKILL after 10 s to those with anything left.
fn stop_groups(pids: &[i32]) -> anyhow::Result<()> {
    let groups: Vec<Pid> = pids.iter().map(|pid| Pid::from_raw(*pid)).collect();
    for group in &groups {
        let _ = killpg(*group, Signal::SIGTERM);
    }
    let left = || {
        groups
            .iter()
            .copied()
            .filter(|group| killpg(*group, None).is_ok())
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if left().is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for group in left() {
        let _ = killpg(group, Signal::SIGKILL);
    }
    // Dying takes a moment (a process in the middle of an fsync finishes it first).
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        if left().is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("processes of groups {:?} survived SIGKILL", left())
}

pub(crate) fn status() -> anyhow::Result<()> {
    let inventory = Inventory::scan();
    let kubeconfig = kubeconfig();
    let api_up = inventory
        .control_planes
        .iter()
        .any(|state| state.pid.is_some());
    for state in &inventory.control_planes {
        match state.pid {
            Some(pid) => println!(
                "{}: running (pid {pid}) at https://{}",
                state.site,
                state.site.address()
            ),
            None => println!("{}: not running", state.site),
        }
    }
    if inventory.balanced() {
        match inventory.balancer {
            Some(pid) => println!(
                "API balancer: running (pid {pid}) at {}, in front of the control planes",
                server_url()
            ),
            None => println!("API balancer: not running"),
        }
    }
    if api_up {
        println!("use it with: export KUBECONFIG={}", kubeconfig.display());
    }
    if !inventory.is_empty() {
        match supervisor::running() {
            Some(pid) => println!(
                "supervisor: running (pid {pid}), restarts a daemon that dies; log {}",
                supervisor::log_path().display()
            ),
            None => println!(
                "supervisor: not running, nothing restarts a daemon that dies (`cargo xtask \
                 start` starts it)"
            ),
        }
    }
    if !inventory.nodes.is_empty() {
        let readiness = api_up.then(|| check::node_readiness(&kubeconfig)).flatten();
        println!(
            "{:<18} {:<16} {:<16} {:<16} READY",
            "NODE", "ADDRESS", "CONTAINERD", "AGENT"
        );
        let show =
            |pid: Option<i32>| pid.map_or_else(|| "not running".to_owned(), |p| format!("pid {p}"));
        for state in &inventory.nodes {
            let ready = match &readiness {
                None => "unknown (no API)".to_owned(),
                Some(map) => match map.get(&state.name) {
                    Some(true) => "Ready".to_owned(),
                    Some(false) => "NotReady".to_owned(),
                    None => "not registered".to_owned(),
                },
            };
            println!(
                "{:<18} {:<16} {:<16} {:<16} {ready}",
                state.name,
                state
                    .ip()
                    .map_or_else(|| "?".to_owned(), |ip| ip.to_string()),
                show(state.containerd),
                show(state.agent),
            );
        }
    }
    if !inventory.is_empty() && !inventory.is_complete() {
        let blockers = inventory.repair_blockers();
        if blockers.is_empty() {
            println!(
                "\nthe cluster is stopped or partly down (its state and pods are kept): `cargo \
                 xtask start` restarts what is not running, `cargo xtask down` removes it"
            );
        } else {
            println!("\n{}", inventory.stale_message(&blockers));
        }
    }
    let leftovers = flotilla_testbed::leftovers(flotilla_testbed::RUN_PREFIX);
    if !leftovers.is_empty() {
        println!("test-bed namespaces and pins on this machine:");
        for path in leftovers {
            let owner = path
                .file_name()
                .and_then(|name| flotilla_testbed::owner_pid(&name.to_string_lossy()));
            match owner {
                Some(pid) if Path::new("/proc").join(pid.to_string()).exists() => {
                    println!("  {} (run by pid {pid})", path.display());
                }
                _ => println!("  {} (stale: its run is gone)", path.display()),
            }
        }
    }
    if let Some(version) = output_of(Command::new("bpf-linker").arg("--version")) {
        println!("toolchain: {}", version.trim());
    }
    Ok(())
}
