//! One node of the local cluster: containerd and the agent inside the node's network namespace,
//! each in a process group of its own so they outlive `cargo xtask up`, with pid files and logs
//! in the node's directory; and taking a node apart again for `down`.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use flotilla_testbed::{
    KeptNode, Netns,
    containerd::{
        Containerd, answers, kill_shims_of, remove_cgroups, run_bounded, stop_pid, unmount_below,
    },
};

use super::{
    binary, cluster_dir, control_plane,
    inventory::{NodeState, pid_from_file},
    routing, server_url,
};
use crate::{images::WrittenImage, process::tail};

/// The kubelet API's port on the node's address.
const KUBELET_PORT: u16 = 10250;
/// Longest unix socket path the kernel accepts (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// How long containerd gets to answer after its start.
const CONTAINERD_START: Duration = Duration::from_secs(30);
/// How long the agent and containerd get to stop before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The node's directory (`--node-dir` of the agent).
pub(super) fn node_dir(name: &str) -> PathBuf {
    cluster_dir().join("nodes").join(name)
}

fn containerd_pid_file(name: &str) -> PathBuf {
    node_dir(name).join("containerd.pid")
}

fn agent_pid_file(name: &str) -> PathBuf {
    node_dir(name).join("agent.pid")
}

/// The containerd config of a node: where `flotilla-agent containerd-config --write` puts it
/// (the layout of the agent's `NodeDirs::under`; `start` checks that the two agree).
fn containerd_config(name: &str) -> PathBuf {
    node_dir(name).join("lib/containerd/config.toml")
}

/// The cgroup below which the agent puts the node's pods (its default `--cgroup-root`), relative
/// to each hierarchy's root.
fn cgroup_root(name: &str) -> PathBuf {
    Path::new("flotilla").join(name)
}

/// containerd's pid, if the one `up` started for `name` runs.
pub(super) fn running_containerd(name: &str) -> Option<i32> {
    pid_from_file(&containerd_pid_file(name), "containerd")
}

/// The agent's pid, if the one `up` started for `name` runs.
pub(super) fn running_agent(name: &str) -> Option<i32> {
    pid_from_file(&agent_pid_file(name), "flotilla-agent")
}

/// The socket of node `name`'s containerd, from its config.
pub(super) fn containerd_socket(name: &str) -> Option<PathBuf> {
    socket_in_config(&containerd_config(name)).ok()
}

/// The gRPC socket named in a containerd config (`[grpc] address = "..."`).
fn socket_in_config(config: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("reading the containerd config {}", config.display()))?;
    text.lines()
        .find_map(|line| {
            let value = line.trim().strip_prefix("address")?.trim_start();
            let value = value.strip_prefix('=')?.trim();
            Some(PathBuf::from(value.trim_matches('"')))
        })
        .with_context(|| format!("no [grpc] address in {}", config.display()))
}

/// Starts containerd and the agent of `node`, with the images imported and credentials issued.
pub(super) fn start(node: &KeptNode, images: &[WrittenImage]) -> anyhow::Result<()> {
    let name = &node.name;
    let dir = node_dir(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let agent = binary("flotilla-agent");

    let written = run_checked(
        Command::new(&agent)
            .args(["--node", name, "containerd-config", "--node-dir"])
            .arg(&dir)
            .arg("--write"),
        "writing the containerd config",
    )?;
    let config = containerd_config(name);
    if Path::new(written.trim()) != config {
        bail!(
            "the agent wrote the containerd config to {}, but xtask expects {}; update \
             `containerd_config` in xtask/src/cluster/node.rs to the agent's node layout",
            written.trim(),
            config.display()
        );
    }
    let socket = start_containerd(node)?;
    crate::images::import(&socket, images)?;

    // The node joins as kubeadm's nodes do: a bootstrap token and the CA's hash, then its
    // certificates through CertificateSigningRequests. It joins through the host's address:
    // the API server there, or the API balancer in front of several.
    let first = control_plane::sites()
        .first()
        .copied()
        .context("the cluster has no control plane")?;
    let join = run_checked(
        Command::new(binary("flotilla-controlplane"))
            .arg("--state-dir")
            .arg(first.state())
            .args(["token", "create", "--ttl", "1h", "--print-join-command"])
            .args(["--description", &format!("cargo xtask up: node {name}")]),
        "creating a bootstrap token",
    )?;
    let words: Vec<&str> = join.split_whitespace().collect();
    let (Some(token), Some(hash)) = (
        flag_value(&words, "--token"),
        flag_value(&words, "--discovery-token-ca-cert-hash"),
    ) else {
        bail!(
            "`flotilla-controlplane token create --print-join-command` printed {join:?}, not a join command"
        );
    };
    spawn_agent(
        node,
        &[
            "join",
            &server_url(),
            "--token",
            token,
            "--discovery-token-ca-cert-hash",
            hash,
        ],
    )
}

/// The word after `flag` in `words`.
fn flag_value<'a>(words: &[&'a str], flag: &str) -> Option<&'a str> {
    words
        .iter()
        .position(|word| *word == flag)
        .and_then(|at| words.get(at + 1))
        .copied()
}

/// Starts the node's containerd from its written config (again, after a crash: its state, images
/// and pods' shims are kept); returns its socket.
pub(super) fn start_containerd(node: &KeptNode) -> anyhow::Result<PathBuf> {
    let name = &node.name;
    let config = containerd_config(name);
    let socket = socket_in_config(&config)?;
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        bail!(
            "containerd's socket path {} is longer than the {MAX_SOCKET_PATH} bytes a unix socket \
             may have; use a workspace at a shorter path",
            socket.display()
        );
    }
    let log = node_dir(name).join("containerd.log");
    let pid =
        Containerd::start_detached(&config, &socket, &log, Some(&node.netns), CONTAINERD_START)
            .with_context(|| format!("starting containerd in namespace {name}"))?;
    super::write_pid(&containerd_pid_file(name), pid)?;
    eprintln!(
        "up: {name}: containerd runs (pid {pid}, socket {}, log {})",
        socket.display(),
        log.display()
    );
    Ok(socket)
}

/// Starts the node's agent with the credentials `join` left in its directory (again, after a
/// crash: it re-adopts the node's running pods and re-attaches the pinned datapath).
pub(super) fn start_agent(node: &KeptNode) -> anyhow::Result<()> {
    spawn_agent(node, &["run"])
}

/// Starts the agent of `node` in its namespace with `command` (`run`, or `join ...`) and the
/// node's flags.
fn spawn_agent(node: &KeptNode, command: &[&str]) -> anyhow::Result<()> {
    let name = &node.name;
    let dir = node_dir(name);
    let agent = binary("flotilla-agent");
    let ip = node.underlay_ip.to_string();
    let log_path = dir.join("agent.log");
    let child = super::spawn_daemon(
        node.netns
            .command(&agent)?
            .args(["--node", name])
            .args(command)
            .args(["--node-ip", &ip])
            .arg("--node-dir")
            .arg(&dir)
            .args(["--listen", &format!("{ip}:{KUBELET_PORT}")])
            .args(["--cluster-dns", &super::CLUSTER_DNS.to_string()])
            .args(["--routing", &routing()]),
        &log_path,
        &agent_pid_file(name),
    )
    .with_context(|| format!("starting {} in namespace {name}", agent.display()))?;
    eprintln!(
        "up: {name}: agent runs (pid {}, {ip}, log {})",
        child.id(),
        log_path.display()
    );
    Ok(())
}

/// Runs `command` (bounded to 2 minutes) and returns its stdout; fails with its stderr.
fn run_checked(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = run_bounded(command, Duration::from_secs(120)).with_context(|| what.to_owned())?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Why a node is not healthy (a dead agent or containerd, with the end of its log), if it is not.
pub(super) fn failure(name: &str) -> Option<String> {
    let dir = node_dir(name);
    if running_containerd(name).is_none() {
        return Some(format!(
            "containerd of {name} is not running; the end of its log:\n{}",
            tail(&dir.join("containerd.log"), 15)
        ));
    }
    if running_agent(name).is_none() {
        return Some(format!(
            "the agent of {name} is not running; the end of its log:\n{}",
            tail(&dir.join("agent.log"), 15)
        ));
    }
    None
}

/// Stops node `state`'s agent and containerd and nothing else: the pods' shims and containers
/// keep running (and serving, through the pinned datapath) until `start` brings both back.
pub(super) fn stop(state: &NodeState, did: &mut Vec<String>) {
    stop_agent(state, did);
    stop_containerd(state, did);
}

/// Stops the node's agent (every one running on its directory).
fn stop_agent(state: &NodeState, did: &mut Vec<String>) {
    let name = &state.name;
    let agents = pids_of("flotilla-agent", &node_dir(name), state.agent);
    for pid in &agents {
        stop_pid(pid.unsigned_abs(), STOP_GRACE);
    }
    if !agents.is_empty() {
        did.push(format!("{name}: stopped the agent (pid {})", join(&agents)));
    }
}

/// Stops the node's containerd (every one running on its config); its shims run on.
fn stop_containerd(state: &NodeState, did: &mut Vec<String>) {
    let name = &state.name;
    let containerds = pids_of("containerd", &containerd_config(name), state.containerd);
    for pid in &containerds {
        stop_pid(pid.unsigned_abs(), STOP_GRACE);
    }
    if !containerds.is_empty() {
        did.push(format!(
            "{name}: stopped containerd (pid {})",
            join(&containerds)
        ));
    }
}

/// Takes node `state` apart: the agent, every pod (through CRI), containerd with its shims and
/// mounts, the node's cgroups. Notes what it did and what failed; goes on after failures so
/// `down` removes as much as it can.
pub(super) fn take_down(state: &NodeState, did: &mut Vec<String>, problems: &mut Vec<String>) {
    let name = &state.name;
    let dir = node_dir(name);
    // The agent first: it would start the pods again.
    stop_agent(state, did);

    let config = containerd_config(name);
    let socket = socket_in_config(&config).ok();
    if let Some(socket) = &socket {
        remove_pods(state, &config, socket, did, problems);
    }
    stop_containerd(state, did);
    if let Some(socket) = &socket {
        kill_shims_of(socket);
    }
    unmount_below(&dir);

    let removed = remove_cgroups(&cgroup_root(name));
    if removed > 0 {
        did.push(format!(
            "{name}: removed {removed} cgroup directories under /sys/fs/cgroup/*/{}",
            cgroup_root(name).display()
        ));
    }
}

/// Removes every pod sandbox of the node through containerd. A containerd that is not running
/// (it crashed) is started again for this, in the node's namespace, since only containerd knows
/// its sandboxes and runs CNI DEL for them.
fn remove_pods(
    state: &NodeState,
    config: &Path,
    socket: &Path,
    did: &mut Vec<String>,
    problems: &mut Vec<String>,
) {
    let name = &state.name;
    let dir = node_dir(name);
    let mut temporary = None;
    if !answers(socket) {
        if !(dir.join("lib/containerd/root").exists() && config.exists()) {
            return;
        }
        // Without the node's namespace CNI could not find the pods' host side; deleting the
        // namespace already took their veths.
        let Ok(netns) = Netns::open(name) else {
            did.push(format!(
                "{name}: containerd is not running and the node's namespace is gone, so its \
                 pods were not removed through CRI; their processes and network namespaces go \
                 with the node's directory"
            ));
            return;
        };
        match Containerd::start_detached(
            config,
            socket,
            &dir.join("containerd-down.log"),
            Some(&netns),
            CONTAINERD_START,
        ) {
            Ok(pid) => {
                did.push(format!(
                    "{name}: containerd was not running; started it again (pid {pid}) to remove \
                     the pods"
                ));
                temporary = Some(pid);
            }
            Err(err) => {
                did.push(format!(
                    "{name}: containerd is not running and could not be started to remove the \
                     pods ({err}); their processes and network namespaces go with the node's \
                     directory"
                ));
                return;
            }
        }
    }
    let agent = super::binary("flotilla-agent");
    let result = run_checked(
        Command::new(&agent)
            .args(["--node", name, "remove-pods", "--node-dir"])
            .arg(&dir),
        "removing the pods",
    );
    match result {
        Ok(output) => {
            let summary = output.lines().last().unwrap_or_default().to_owned();
            did.push(format!("{name}: {summary}"));
        }
        Err(err) => problems.push(format!("{name}: {err:#}")),
    }
    if let Some(pid) = temporary {
        stop_pid(pid, STOP_GRACE);
    }
}

/// The pids of live processes whose program ends with `program` and which name `path` in their
/// arguments, plus `known` (from the pid file).
fn pids_of(program: &str, path: &Path, known: Option<i32>) -> Vec<i32> {
    let mut pids: Vec<i32> = super::inventory::processes_mentioning(path)
        .into_iter()
        .filter(|(_, argv0)| argv0.ends_with(program))
        .map(|(pid, _)| pid)
        .chain(known)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn join(pids: &[i32]) -> String {
    pids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes /sys/fs/cgroup/*/flotilla where it is empty (rmdir refuses a cgroup with children,
/// so another cluster's nodes keep it).
pub(super) fn remove_empty_cgroup_parents() {
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        for hierarchy in hierarchies.flatten() {
            let _ = std::fs::remove_dir(hierarchy.path().join("flotilla"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_comes_from_the_grpc_section() {
        let dir = std::env::temp_dir().join(format!("xtask-node-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            "version = 2\nroot = \"/x/root\"\n\n[grpc]\n  address = \"/x/run/containerd.sock\"\n",
        )
        .unwrap();
        assert_eq!(
            socket_in_config(&config).unwrap(),
            PathBuf::from("/x/run/containerd.sock")
        );
        std::fs::write(&config, "version = 2\n").unwrap();
        assert!(socket_in_config(&config).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
