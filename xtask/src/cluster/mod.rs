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
    process::{cargo, is_root, output_of, run_visible, target_dir, wait_for, workspace_root},
    setup,
};
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
    /// Then run the walk-through of `cargo xtask demo`.
    #[arg(long)]
    pub(crate) demo: bool,
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

fn control_plane_state() -> PathBuf {
    cluster_dir().join("controlplane")
}

fn pid_file() -> PathBuf {
    cluster_dir().join("controlplane.pid")
}

fn control_plane_log() -> PathBuf {
    cluster_dir().join("controlplane.log")
}

/// The admin kubeconfig the control plane writes.
fn kubeconfig() -> PathBuf {
    control_plane_state().join("admin.kubeconfig")
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
    let nodes = if inventory.is_complete() {
        let running = inventory.nodes.len();
        if let Some(wanted) = args.nodes
            && wanted != running
        {
            bail!(
                "a local cluster with {running} nodes is already running; `cargo xtask down` \
                 first to start one with {wanted}"
            );
        }
        eprintln!(
            "up: the local cluster is already running (control plane pid {}, {running} nodes); \
             reusing it. It runs the binaries it was started with: `cargo xtask down && cargo \
             xtask up` restarts it with freshly built ones.",
            inventory.control_plane.unwrap_or_default()
        );
        inventory.node_names()
    } else if !inventory.is_empty() && blockers.is_empty() {
        if let Some(wanted) = args.nodes
            && wanted != inventory.nodes.len()
        {
            bail!(
                "the local cluster has {} nodes; `cargo xtask down` first to start one with \
                 {wanted}",
                inventory.nodes.len()
            );
        }
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
        setup::run()?;
        let lacking = setup::kernel_problems();
        if !lacking.is_empty() {
            bail!(
                "this machine's kernel cannot run Flotilla's datapath:\n  - {}",
                lacking.join("\n  - ")
            );
        }
        run_visible(
            "building Flotilla",
            cargo().args([
                "build",
                "--package",
                "flotilla-controlplane",
                "--package",
                "flotilla-agent",
                "--package",
                "flotilla-cni",
            ]),
        )?;
        let images = images::build(None)?;
        start_fresh(nodes, &images).context(
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
            control_plane_log().display()
        )
    };
    check::wait_nodes_ready(&kubeconfig, &nodes, Duration::from_secs(120))
        .with_context(after_start)?;
    run_visible(
        "kubectl get nodes -o wide",
        check::kubectl(&kubeconfig).args(["get", "nodes", "-o", "wide"]),
    )?;
    check::deployment(&kubeconfig).with_context(after_start)?;
    println!(
        "\nThe local cluster is up: {} nodes ({}), API server {}.\n\
         Pods reach each other on every node through Flotilla's eBPF VXLAN overlay; inspect it \
         with `flotilla-agent --node NODE bpf endpoints|tunnels|drops` (in .flotilla/cluster/bin) \
         or the agents' metrics on http://<node IP>:9962/metrics.\n\
         Pods resolve Services by name (`<svc>`, `<svc>.<ns>.svc.cluster.local`) through the \
         cluster DNS, which the control plane serves on {}:53 behind the Service \
         kube-system/kube-dns ({CLUSTER_DNS}).\n\
         `cargo xtask status` shows what runs, `cargo xtask down` removes it all.\n\
         Use it with:\n\n  export KUBECONFIG={}\n",
        nodes.len(),
        nodes.join(", "),
        server_url(),
        host_ip(),
        kubeconfig.display()
    );
    Ok(nodes)
}

/// Restarts what died of a cluster whose namespaces and state are intact: the control plane
/// (on its etcd data), each node's containerd (its pods' shims keep running) and agent (it
/// re-adopts the pods and the pinned datapath). Pods and objects are kept; nothing is rebuilt.
fn repair(inventory: &Inventory) -> anyhow::Result<()> {
    eprintln!(
        "up: the local cluster is partly down; restarting what is missing with the binaries \
         it was started with (nothing is deleted)"
    );
    for daemon in inventory.missing() {
        restart(inventory, &daemon)?;
    }
    Ok(())
}

/// A daemon of the local cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Daemon {
    /// The control plane (with its embedded etcd).
    ControlPlane,
    /// The containerd of the named node.
    Containerd(String),
    /// The agent of the named node.
    Agent(String),
}

impl std::fmt::Display for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ControlPlane => write!(f, "the control plane"),
            Self::Containerd(node) => write!(f, "{node}'s containerd"),
            Self::Agent(node) => write!(f, "{node}'s agent"),
        }
    }
}

/// Starts `daemon` again with the binaries and flags the cluster was started with; the control
/// plane is waited for until its API is ready.
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
        Daemon::ControlPlane => {
            let mut control_plane = start_control_plane()?;
            wait_api_ready(&mut control_plane, Duration::from_secs(60))
        }
        Daemon::Containerd(name) => node::start_containerd(&kept(name)?).map(drop),
        Daemon::Agent(name) => node::start_agent(&kept(name)?),
    }
}

/// Builds the namespaces, starts the control plane and every node; returns the node names.
fn start_fresh(nodes: usize, images: &[images::WrittenImage]) -> anyhow::Result<Vec<String>> {
    for port in [ETCD_PORTS.0, ETCD_PORTS.1] {
        check_port_free(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "etcd")?;
    }
    copy_binaries()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting an async runtime for netlink")?;
    let kept = runtime.block_on(async {
        let mut bed = Testbed::create(testbed_config(nodes))
            .await
            .context("creating the node namespaces")?;
        bed.link_host()
            .await
            .with_context(|| format!("joining the host to the underlay as {}", host_ip()))?;
        // Checked with the address in place; on failure `bed` drops and removes the namespaces.
        check_port_free(api_address(), "the API server")?;
        let dns = SocketAddr::from((host_ip(), 53));
        check_port_free(dns, "the cluster DNS")?;
        if std::net::UdpSocket::bind(dns).is_err() {
            bail!(
                "{dns}/udp (the cluster DNS) is in use by another process; find it with `ss \
                 -lunp` and stop it, or run `cargo xtask down` if it is a Flotilla cluster from an \
                 earlier run"
            );
        }
        anyhow::Ok(bed.keep())
    })?;
    eprintln!(
        "up: created the namespaces {} on 192.168.{UNDERLAY_OCTET}.0/24; the host is {} on {HOST_LINK}",
        std::iter::once(format!("{PREFIX}underlay"))
            .chain(kept.nodes.iter().map(|node| node.name.clone()))
            .collect::<Vec<_>>()
            .join(", "),
        host_ip()
    );
    let mut control_plane = start_control_plane()?;
    wait_api_ready(&mut control_plane, Duration::from_secs(60))?;
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

/// Starts the control plane in a process group of its own; the child, for `up` to notice its
/// exit while it waits.
fn start_control_plane() -> anyhow::Result<std::process::Child> {
    let dir = cluster_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = control_plane_log();
    // Its process group holds its etcd too; `down` ends the group.
    let child = spawn_daemon(
        Command::new(binary("flotilla-controlplane"))
            .arg("--state-dir")
            .arg(control_plane_state())
            .args(["--listen", &api_address().to_string()])
            .args(["--tls-san", &host_ip().to_string()])
            .args(["--etcd-client-port", &ETCD_PORTS.0.to_string()])
            .args(["--etcd-peer-port", &ETCD_PORTS.1.to_string()])
            .args(["--cluster-dns", &CLUSTER_DNS.to_string()]),
        &log_path,
        &pid_file(),
    )?;
    eprintln!(
        "up: started the control plane (pid {}, log {})",
        child.id(),
        log_path.display()
    );
    Ok(child)
}

/// Waits until the API server answers /readyz; fails at once if `control_plane` exits (its exit
/// status says so for certain, where /proc of a process this young may not; see
/// `inventory::pid_from_file`).
fn wait_api_ready(
    control_plane: &mut std::process::Child,
    timeout: Duration,
) -> anyhow::Result<()> {
    let kubeconfig = kubeconfig();
    wait_for("waiting for the API server", timeout, || {
        if let Some(status) = control_plane.try_wait()? {
            bail!(
                "the control plane exited during start-up ({status}); the end of its log:\n{}",
                crate::process::tail(&control_plane_log(), 15)
            );
        }
        let ready = kubeconfig.exists()
            && output_of(check::kubectl(&kubeconfig).args([
                "get",
                "--raw",
                "/readyz",
                "--request-timeout=2s",
            ]))
            .is_some_and(|body| body.trim() == "ok");
        Ok(ready.then_some(()))
    })
    .with_context(|| format!("see {}", control_plane_log().display()))
}

/// `cargo xtask stop`: stops the control plane (with its etcd), the agents and containerd,
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
    if let Some(pid) = inventory.control_plane {
        stop_group(pid)?;
        did.push(format!(
            "stopped the control plane and its etcd (process group {pid})"
        ));
    }
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
    if let Some(pid) = inventory.control_plane {
        match stop_group(pid) {
            Ok(()) => did.push(format!(
                "stopped the control plane and its etcd (process group {pid})"
            )),
            Err(err) => problems.push(format!("stopping the control plane: {err:#}")),
        }
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

/// SIGTERM to the process group, SIGKILL after 10 s if anything is left.
fn stop_group(pid: i32) -> anyhow::Result<()> {
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if killpg(group, None).is_err() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = killpg(group, Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(200));
    if killpg(group, None).is_ok() {
        bail!("processes of group {pid} survived SIGKILL");
    }
    Ok(())
}

pub(crate) fn status() -> anyhow::Result<()> {
    let inventory = Inventory::scan();
    let kubeconfig = kubeconfig();
    match inventory.control_plane {
        Some(pid) => println!(
            "control plane: running (pid {pid}) at {}; export KUBECONFIG={}",
            server_url(),
            kubeconfig.display()
        ),
        None => println!("control plane: not running"),
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
        let readiness = inventory
            .control_plane
            .and_then(|_| check::node_readiness(&kubeconfig));
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
