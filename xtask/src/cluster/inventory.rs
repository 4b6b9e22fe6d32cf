//! What of the local cluster exists on this machine: its processes (from pid files, checked
//! against /proc so a recycled pid is not mistaken for ours), namespaces, the host link, node
//! directories and pins. `up` reuses a complete cluster and refuses a partial one, `down`
//! removes whatever is there, `status` shows it.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use super::{
    Daemon, HOST_LINK, PREFIX, cluster_dir,
    control_plane::{self, Site},
    node, testbed_config,
};
use crate::process::{all_pids, cmdline};

/// One node's pieces.
#[derive(Debug)]
pub(super) struct NodeState {
    /// The node's name (and namespace's).
    pub(super) name: String,
    /// Whether its network namespace exists.
    pub(super) netns: bool,
    /// Whether its directory under .flotilla/cluster/nodes exists.
    pub(super) dir: bool,
    /// containerd's pid, if it runs.
    pub(super) containerd: Option<i32>,
    /// The agent's pid, if it runs.
    pub(super) agent: Option<i32>,
}

impl NodeState {
    /// The node's underlay address, from its number.
    pub(super) fn ip(&self) -> Option<Ipv4Addr> {
        let number: usize = self
            .name
            .strip_prefix(PREFIX)?
            .strip_prefix("node")?
            .parse()
            .ok()?;
        Some(testbed_config(1).node_ip(number))
    }

    fn complete(&self) -> bool {
        self.netns && self.dir && self.containerd.is_some() && self.agent.is_some()
    }

    fn describe(&self) -> String {
        let yes_no = |present: bool, what: &str| {
            format!("{what} {}", if present { "present" } else { "missing" })
        };
        let process = |pid: Option<i32>, what: &str| {
            pid.map_or_else(
                || format!("{what} not running"),
                |pid| format!("{what} pid {pid}"),
            )
        };
        format!(
            "node {}: {}, {}, {}, {}",
            self.name,
            yes_no(self.netns, "namespace"),
            yes_no(self.dir, "directory"),
            process(self.containerd, "containerd"),
            process(self.agent, "agent")
        )
    }
}

/// One control plane's pieces.
#[derive(Debug)]
pub(super) struct ControlPlaneState {
    /// Where it runs.
    pub(super) site: Site,
    /// Its pid (its process group's id), if it runs.
    pub(super) pid: Option<i32>,
    /// Whether its machine's namespace exists (always for the host).
    pub(super) netns: bool,
}

/// Everything of the local cluster found on the machine.
#[derive(Debug)]
pub(super) struct Inventory {
    /// The control planes (the host's, if it has no machines).
    pub(super) control_planes: Vec<ControlPlaneState>,
    /// The API balancer's pid, if it runs.
    pub(super) balancer: Option<i32>,
    /// Whether the underlay namespace exists.
    pub(super) underlay: bool,
    /// Whether the host's link to the underlay exists.
    pub(super) host_link: bool,
    /// The nodes with a namespace or a directory, by number.
    pub(super) nodes: Vec<NodeState>,
    /// Whether .flotilla/cluster holds more than the copied binaries and the repair lock (those
    /// alone are what a start that failed early leaves, and harmless).
    pub(super) cluster_dir: bool,
    /// Pin directories under /sys/fs/bpf/flotilla of the cluster's nodes.
    pub(super) pins: Vec<PathBuf>,
    /// Processes that name the cluster's files but are none of the above (pid, program).
    pub(super) strays: Vec<(i32, String)>,
}

impl Inventory {
    /// Looks at the machine.
    pub(super) fn scan() -> Self {
        let control_planes: Vec<ControlPlaneState> = control_plane::sites()
            .into_iter()
            .map(|site| ControlPlaneState {
                site,
                pid: site.running(),
                netns: site.netns_name().is_none_or(|name| {
                    Path::new(flotilla_testbed::netns::NETNS_DIR)
                        .join(name)
                        .exists()
                }),
            })
            .collect();
        let groups: Vec<i32> = control_planes.iter().filter_map(|cp| cp.pid).collect();
        let balancer = control_plane::running_balancer();
        let mut names: Vec<String> = Vec::new();
        let mut pins = Vec::new();
        for path in flotilla_testbed::leftovers(PREFIX) {
            let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                continue;
            };
            if path.starts_with(flotilla_testbed::netns::NETNS_DIR) {
                if name.starts_with(&format!("{PREFIX}node")) {
                    names.push(name);
                }
            } else {
                pins.push(path);
            }
        }
        if let Ok(entries) = std::fs::read_dir(cluster_dir().join("nodes")) {
            names.extend(
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned()),
            );
        }
        names.sort_by_key(|name| (node_number(name), name.clone()));
        names.dedup();
        let nodes: Vec<NodeState> = names
            .into_iter()
            .map(|name| NodeState {
                netns: Path::new(flotilla_testbed::netns::NETNS_DIR)
                    .join(&name)
                    .exists(),
                dir: node::node_dir(&name).is_dir(),
                containerd: node::running_containerd(&name),
                agent: node::running_agent(&name),
                name,
            })
            .collect();
        let known: Vec<i32> = groups
            .iter()
            .copied()
            .chain(balancer)
            .chain(
                nodes
                    .iter()
                    .flat_map(|n| n.containerd.into_iter().chain(n.agent)),
            )
            .collect();
        // The shims of a running containerd are its business, not leftovers.
        let live_sockets: Vec<String> = nodes
            .iter()
            .filter(|n| n.containerd.is_some())
            .filter_map(|n| node::containerd_socket(&n.name))
            .map(|socket| socket.to_string_lossy().into_owned())
            .collect();
        let strays = processes_mentioning(&cluster_dir())
            .into_iter()
            .filter(|(pid, _)| {
                let shim_of_live = cmdline(*pid)
                    .is_some_and(|args| args.iter().any(|arg| live_sockets.contains(arg)));
                !known.contains(pid)
                    && !shim_of_live
                    && process_group(*pid).is_none_or(|group| !groups.contains(&group))
            })
            .collect();
        Self {
            control_planes,
            balancer,
            underlay: Path::new(flotilla_testbed::netns::NETNS_DIR)
                .join(format!("{PREFIX}underlay"))
                .exists(),
            host_link: Path::new("/sys/class/net").join(HOST_LINK).exists(),
            nodes,
            cluster_dir: std::fs::read_dir(cluster_dir()).is_ok_and(|entries| {
                entries.flatten().any(|entry| {
                    !["bin", "repair.lock"].contains(&&*entry.file_name().to_string_lossy())
                })
            }),
            pins,
            strays,
        }
    }

    /// Where the control planes run.
    pub(super) fn sites(&self) -> Vec<Site> {
        self.control_planes.iter().map(|cp| cp.site).collect()
    }

    /// Whether the control planes run on machines behind the API balancer.
    pub(super) fn balanced(&self) -> bool {
        control_plane::balanced(&self.sites())
    }

    /// Whether every piece of a cluster runs: `up` can reuse it.
    pub(super) fn is_complete(&self) -> bool {
        self.control_planes.iter().all(|cp| cp.pid.is_some())
            && (self.balancer.is_some() || !self.balanced())
            && self.underlay
            && self.host_link
            && !self.nodes.is_empty()
            && self.nodes.iter().all(NodeState::complete)
    }

    /// Whether nothing of a cluster is there: `up` starts from scratch.
    pub(super) fn is_empty(&self) -> bool {
        self.control_planes
            .iter()
            .all(|cp| cp.pid.is_none() && !(cp.netns && cp.site.netns_name().is_some()))
            && self.balancer.is_none()
            && !self.underlay
            && !self.host_link
            && self.nodes.is_empty()
            && !self.cluster_dir
            && self.pins.is_empty()
            && self.strays.is_empty()
    }

    /// What keeps `up` from repairing a partial cluster by restarting its dead processes
    /// (empty when it can): the namespaces, links and state must all be there, and the only
    /// leftovers allowed are the pods' shims (a restarted containerd adopts them) and what the
    /// dead control plane left in its process group (its etcd, which the restarted control
    /// plane stops before starting its own on the same data).
    pub(super) fn repair_blockers(&self) -> Vec<String> {
        let mut blockers = Vec::new();
        if !self.underlay || !self.host_link {
            blockers.push("the underlay namespace or the host link is gone".to_owned());
        }
        if self.nodes.is_empty() {
            blockers.push("no node namespaces".to_owned());
        }
        for node in &self.nodes {
            if !node.netns || !node.dir {
                blockers.push(format!("{}: its namespace or directory is gone", node.name));
            }
        }
        for cp in &self.control_planes {
            if !cp.site.state().exists() {
                blockers.push(format!("{} is gone", cp.site.state().display()));
            }
            if !cp.netns {
                blockers.push(format!("{}: its namespace is gone", cp.site));
            }
        }
        let old_groups: Vec<i32> = self
            .control_planes
            .iter()
            .filter_map(|cp| cp.site.dead_group())
            .collect();
        for (pid, program) in &self.strays {
            let shim = program_name(program).starts_with("containerd-shim");
            let left_by_control_plane =
                process_group(*pid).is_some_and(|group| old_groups.contains(&group));
            if !shim && !left_by_control_plane {
                blockers.push(format!("leftover process {pid} ({program})"));
            }
        }
        blockers
    }

    /// The daemons that do not run, in the order they must start: the control planes, the API
    /// balancer, then per node containerd before the agent.
    pub(super) fn missing(&self) -> Vec<Daemon> {
        let control_planes = self
            .control_planes
            .iter()
            .filter(|cp| cp.pid.is_none())
            .map(|cp| Daemon::ControlPlane(cp.site));
        let balancer = (self.balanced() && self.balancer.is_none()).then_some(Daemon::ApiBalancer);
        let nodes = self.nodes.iter().flat_map(|node| {
            let containerd = node
                .containerd
                .is_none()
                .then(|| Daemon::Containerd(node.name.clone()));
            let agent = node
                .agent
                .is_none()
                .then(|| Daemon::Agent(node.name.clone()));
            containerd.into_iter().chain(agent)
        });
        control_planes.chain(balancer).chain(nodes).collect()
    }

    /// The node names.
    pub(super) fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|node| node.name.clone()).collect()
    }

    /// What is there and what is missing of a partial cluster, why it cannot be repaired
    /// (`blockers`, from [`Self::repair_blockers`]), and what to do about it.
    pub(super) fn stale_message(&self, blockers: &[String]) -> String {
        let mut lines: Vec<String> = self
            .control_planes
            .iter()
            .map(|cp| match cp.pid {
                Some(pid) => format!("{}: running (pid {pid})", cp.site),
                None => format!(
                    "{}: not running ({} is stale or absent{})",
                    cp.site,
                    cp.site.pid_file().display(),
                    if cp.netns {
                        ""
                    } else {
                        "; its namespace is gone"
                    }
                ),
            })
            .collect();
        if self.balanced() {
            lines.push(match self.balancer {
                Some(pid) => format!("API balancer: running (pid {pid})"),
                None => "API balancer: not running".to_owned(),
            });
        }
        lines.push(format!(
            "underlay namespace {PREFIX}underlay: {}; host link {HOST_LINK}: {}",
            if self.underlay { "present" } else { "missing" },
            if self.host_link { "present" } else { "missing" }
        ));
        lines.extend(self.nodes.iter().map(NodeState::describe));
        if self.nodes.is_empty() {
            lines.push("no nodes".to_owned());
        }
        if self.cluster_dir {
            lines.push(format!("state and logs in {}", cluster_dir().display()));
        }
        lines.extend(
            self.pins
                .iter()
                .map(|pin| format!("pinned BPF objects in {}", pin.display())),
        );
        lines.extend(
            self.strays
                .iter()
                .map(|(pid, program)| format!("leftover process {pid} ({program})")),
        );
        format!(
            "a local cluster from an earlier run (crashed, killed or half started) is partly \
             there, so `up` cannot reuse it:\n  - {}\nIt cannot be repaired by restarting its \
             processes: {}.\nRun `cargo xtask down` to remove what is left (it stops the \
             processes, removes the pods, namespaces, cgroups, pins and .flotilla/cluster), then \
             `cargo xtask up` again.",
            lines.join("\n  - "),
            blockers.join("; ")
        )
    }
}

fn node_number(name: &str) -> Option<usize> {
    name.strip_prefix(PREFIX)?
        .strip_prefix("node")?
        .parse()
        .ok()
}

/// The pid in `file` if that process is alive (not a zombie) and its program's name ends with
/// `program` (so a recycled pid is not taken for ours).
pub(super) fn pid_from_file(file: &Path, program: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    // A process that is still inside execve has an empty /proc/<pid>/cmdline: the parent of a
    // vfork-style spawn runs on once the new mm is in place, before the kernel has copied the
    // arguments into it (`up` once took its control plane for dead that way). Its exe link is
    // set before that, so it names the program in that window.
    let argv0 = cmdline(pid)
        .and_then(|args| args.into_iter().next())
        .or_else(|| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|exe| exe.to_string_lossy().into_owned())
        })?;
    (alive(pid) && argv0.ends_with(program)).then_some(pid)
}

/// Whether `pid` exists and is not a zombie (a child that died but was not reaped yet).
pub(super) fn alive(pid: i32) -> bool {
    flotilla_testbed::containerd::running(pid)
}

/// The file name of a process's program (`/usr/bin/etcd` -> `etcd`).
pub(super) fn program_name(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// The process group of `pid`.
fn process_group(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name: state, ppid, pgrp.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// The programs a cluster runs; only these count as its leftovers (a `tail -f` of one of its
/// logs is the user's, not ours).
const CLUSTER_PROGRAMS: &[&str] = &[
    "flotilla-controlplane",
    "flotilla-agent",
    "etcd",
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
];

/// Live processes of the cluster's programs (other than this one) with an argument inside `dir`
/// (pid, program).
pub(super) fn processes_mentioning(dir: &Path) -> Vec<(i32, String)> {
    let own = i32::try_from(std::process::id()).unwrap_or_default();
    let dir = dir.to_string_lossy().into_owned();
    all_pids()
        .into_iter()
        .filter(|pid| *pid != own && alive(*pid))
        .filter_map(|pid| {
            let args = cmdline(pid)?;
            let program = args.first()?;
            let ours = CLUSTER_PROGRAMS.iter().any(|name| {
                Path::new(program)
                    .file_name()
                    .is_some_and(|file| file == *name)
            });
            let mentions = args.iter().any(|arg| arg.contains(dir.as_str()));
            (ours && mentions).then(|| (pid, program.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_named_by_their_file_name() {
        assert_eq!(
            program_name("/usr/bin/containerd-shim-runc-v2"),
            "containerd-shim-runc-v2"
        );
        assert_eq!(program_name("etcd"), "etcd");
    }

    #[test]
    fn nodes_are_numbered_from_their_names() {
        assert_eq!(node_number("flotilla-node2"), Some(2));
        assert_eq!(node_number("flotilla-node12"), Some(12));
        assert_eq!(node_number("flotilla-underlay"), None);
        assert_eq!(node_number("fltb-1-0-node1"), None);
    }

    #[test]
    fn dead_control_planes_start_first_then_the_balancer_then_nodes() {
        let control_plane = |number, pid| ControlPlaneState {
            site: Site::Machine(number),
            pid,
            netns: true,
        };
        let inventory = Inventory {
            control_planes: vec![control_plane(1, Some(10)), control_plane(2, None)],
            balancer: None,
            underlay: true,
            host_link: true,
            nodes: vec![NodeState {
                name: "flotilla-node1".to_owned(),
                netns: true,
                dir: true,
                containerd: None,
                agent: None,
            }],
            cluster_dir: true,
            pins: Vec::new(),
            strays: Vec::new(),
        };
        assert!(inventory.balanced());
        assert!(!inventory.is_complete() && !inventory.is_empty());
        assert_eq!(
            inventory.missing(),
            [
                Daemon::ControlPlane(Site::Machine(2)),
                Daemon::ApiBalancer,
                Daemon::Containerd("flotilla-node1".to_owned()),
                Daemon::Agent("flotilla-node1".to_owned()),
            ]
        );
    }

    #[test]
    fn node_addresses_are_on_the_clusters_underlay() {
        let state = |name: &str| NodeState {
            name: name.to_owned(),
            netns: true,
            dir: true,
            containerd: None,
            agent: None,
        };
        assert_eq!(
            state("flotilla-node1").ip(),
            Some(Ipv4Addr::new(192, 168, 78, 11))
        );
        assert_eq!(state("flotilla-other").ip(), None);
    }
}
