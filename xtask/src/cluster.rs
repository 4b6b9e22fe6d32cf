//! `cargo xtask up/down/status`: the local cluster.
//!
//! Today the control plane runs (API server with its own etcd, admin kubeconfig); nodes need the
//! agent, which is not built yet, so `up` says so after showing the API working. Everything `up`
//! creates lives under `<workspace>/.flotilla/cluster/` and in one process group, which is what
//! `down` removes.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};

use crate::{
    process::{cargo, is_root, output_of, run_visible, target_dir, workspace_root},
    setup,
};

/// The API server's address in the local cluster.
const API_ADDRESS: &str = "127.0.0.1:6443";
/// Ports the local cluster's etcd uses (client, peer).
const ETCD_PORTS: (u16, u16) = (12379, 12380);

/// Options of `cargo xtask up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Number of worker nodes (used once the node agent exists).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
}

/// Where the local cluster keeps its state.
fn cluster_dir() -> PathBuf {
    workspace_root().join(".flotilla").join("cluster")
}

fn pid_file() -> PathBuf {
    cluster_dir().join("controlplane.pid")
}

fn kubeconfig() -> PathBuf {
    cluster_dir().join("controlplane").join("admin.kubeconfig")
}

/// The control plane's process (group) id, if one from an earlier `up` is alive.
fn running_control_plane() -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains("flotilla-controlplane")
        .then_some(pid)
}

pub(crate) fn up(args: &UpArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the local cluster creates network namespaces and loads eBPF, so `up` needs root");
    }
    setup::run()?;
    run_visible(
        "building Flotilla",
        cargo().args([
            "build",
            "--package",
            "flotilla-controlplane",
            "--package",
            "flotilla-agent",
        ]),
    )?;
    if let Some(pid) = running_control_plane() {
        eprintln!("up: the control plane is already running (pid {pid}); nothing to start");
    } else {
        start_control_plane()?;
    }
    wait_ready(Duration::from_secs(60))?;
    let kubeconfig = kubeconfig();
    run_visible(
        "kubectl get namespaces",
        Command::new("kubectl")
            .args(["get", "namespaces"])
            .env("KUBECONFIG", &kubeconfig),
    )?;
    println!(
        "\nThe API server is up. Use it with:\n\n  export KUBECONFIG={}\n",
        kubeconfig.display()
    );
    bail!(
        "the control plane runs, but the {} worker nodes cannot join yet: the node agent's pod \
         lifecycle on containerd (issue 4) and the CNI plugin with the VXLAN overlay (issue 5) \
         are not implemented, and of the workload controllers only ReplicaSet, Deployment, \
         Job and CronJob exist (issue 3). You can store and watch any supported object with kubectl, and \
         Deployment pods get created and scheduled to nodes you create by hand, but no pod will \
         run. `cargo xtask down` \
         stops everything",
        args.nodes
    )
}

fn start_control_plane() -> anyhow::Result<()> {
    for (address, what) in [
        (API_ADDRESS.to_owned(), "the API server"),
        (format!("127.0.0.1:{}", ETCD_PORTS.0), "etcd's client port"),
        (format!("127.0.0.1:{}", ETCD_PORTS.1), "etcd's peer port"),
    ] {
        if TcpListener::bind(&address).is_err() {
            bail!(
                "{address} ({what}) is in use by another process; find it with `ss -ltnp` and stop \
                 it, or run `cargo xtask down` if it is a Flotilla cluster from an earlier run"
            );
        }
    }
    let dir = cluster_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = dir.join("controlplane.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let binary = target_dir().join("debug").join("flotilla-controlplane");
    let child = {
        use std::os::unix::process::CommandExt as _;
        Command::new(&binary)
            .arg("--state-dir")
            .arg(dir.join("controlplane"))
            .args(["--listen", API_ADDRESS])
            .args(["--etcd-client-port", &ETCD_PORTS.0.to_string()])
            .args(["--etcd-peer-port", &ETCD_PORTS.1.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group (with its etcd), outliving this command; `down` ends the group.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?
    };
    std::fs::write(pid_file(), child.id().to_string())?;
    eprintln!(
        "up: started the control plane (pid {}, log {})",
        child.id(),
        log_path.display()
    );
    Ok(())
}

/// Whether `pid` exists and is not a zombie (a child that died but was not reaped yet).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn wait_ready(timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let kubeconfig = kubeconfig();
    let pid: i32 = std::fs::read_to_string(pid_file())
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    while Instant::now() < deadline {
        if !alive(pid) {
            bail!(
                "the control plane exited during start-up; the end of its log:\n{}",
                crate::process::tail(&cluster_dir().join("controlplane.log"), 15)
            );
        }
        let ready = kubeconfig.exists()
            && output_of(
                Command::new("kubectl")
                    .args(["get", "--raw", "/readyz", "--request-timeout=2s"])
                    .env("KUBECONFIG", &kubeconfig),
            )
            .is_some_and(|body| body.trim() == "ok");
        if ready {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!(
        "the API server did not become ready within {timeout:?}; see {}",
        cluster_dir().join("controlplane.log").display()
    )
}

pub(crate) fn down() -> anyhow::Result<()> {
    if !is_root() {
        bail!("removing namespaces, processes and bpffs pins needs root");
    }
    let mut did = Vec::new();
    if let Some(pid) = running_control_plane() {
        stop_group(pid)?;
        did.push(format!(
            "stopped the control plane and its etcd (process group {pid})"
        ));
    }
    let dir = workspace_root().join(".flotilla");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
        did.push(format!("removed {}", dir.display()));
    }
    for path in flotilla_testbed::remove_with_prefix(flotilla_testbed::RUN_PREFIX)? {
        did.push(format!("removed {}", path.display()));
    }
    if did.is_empty() {
        eprintln!("down: nothing to remove");
    }
    for line in did {
        eprintln!("down: {line}");
    }
    Ok(())
}

/// SIGTERM to the process group, SIGKILL after 10 s if anything is left.
fn stop_group(pid: i32) -> anyhow::Result<()> {
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
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
    match running_control_plane() {
        Some(pid) => println!(
            "control plane: running (pid {pid}) at https://{API_ADDRESS}; export KUBECONFIG={}",
            kubeconfig().display()
        ),
        None => println!("control plane: not running"),
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
