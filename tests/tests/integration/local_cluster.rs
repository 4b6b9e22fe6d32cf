//! The README's first command, end to end: `cargo xtask demo` brings the local cluster up (real
//! etcd, containerd, agents, eBPF datapath) and runs the walk-through with the real kubectl;
//! `cargo xtask up` again reuses it; the supervisor it leaves running restarts a SIGKILLed agent
//! and containerd by itself; after its control plane, an agent and a containerd are killed, `up`
//! restarts them (or finds the supervisor did) and every pod is still there, unrestarted; so do
//! `cargo xtask stop` and `start`; `cargo xtask down` then
//! removes it, and nothing of it may be left: no namespaces, links, processes, mounts, cgroups,
//! bpffs pins, eBPF programs or files.

use std::{
    collections::BTreeSet,
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

/// Bounds `cargo xtask demo` (a build, if needed, the cluster's start, the walk-through).
pub(crate) const DEMO_LIMIT: Duration = Duration::from_secs(30 * 60);
/// Bounds `cargo xtask down`.
pub(crate) const DOWN_LIMIT: Duration = Duration::from_secs(5 * 60);

/// How the names of Flotilla's eBPF programs start.
const OUR_PROGRAMS: [&str; 5] = ["from_", "to_", "sock_", "host_", "count"];

pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// Runs `cargo xtask <args>` with its output shown, in a process group of its own that is killed
/// if it runs past `limit`.
pub(crate) fn xtask(args: &[&str], limit: Duration) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .current_dir(workspace())
        .arg("xtask")
        .args(args)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting cargo xtask {}", args.join(" ")))?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            ensure!(
                status.success(),
                "cargo xtask {} failed ({status})",
                args.join(" ")
            );
            return Ok(());
        }
        if started.elapsed() > limit {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            bail!("cargo xtask {} ran past {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What of the machine a cluster could leave behind, as names.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    netns: BTreeSet<String>,
    links: BTreeSet<String>,
    mounts: BTreeSet<String>,
    cgroups: BTreeSet<String>,
    pins: BTreeSet<String>,
    programs: BTreeSet<String>,
    processes: BTreeSet<String>,
}

fn names_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

impl Snapshot {
    pub(crate) fn take() -> Self {
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
            .collect();
        let cgroups = names_in(Path::new("/sys/fs/cgroup"))
            .into_iter()
            .flat_map(|hierarchy| {
                let dir = Path::new("/sys/fs/cgroup")
                    .join(&hierarchy)
                    .join("flotilla");
                names_in(&dir)
                    .into_iter()
                    .map(move |name| format!("{hierarchy}/flotilla/{name}"))
            })
            .collect();
        // Flotilla's loaded eBPF programs as "id name", from bpftool (names are the programs'
        // functions: from_pod, to_pod, from_overlay, sock_connect4, host_connect4, ...).
        let programs = Command::new("bpftool")
            .args(["prog", "show"])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|line| !line.starts_with(char::is_whitespace))
                    .filter_map(|line| {
                        let mut fields = line.split_whitespace();
                        let id = fields.next()?.trim_end_matches(':');
                        let name = fields.skip_while(|f| *f != "name").nth(1)?;
                        OUR_PROGRAMS
                            .iter()
                            .any(|prefix| name.starts_with(prefix))
                            .then(|| format!("{id} {name}"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let cluster_dir = workspace().join(".flotilla");
        let processes = names_in(Path::new("/proc"))
            .into_iter()
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
            .filter_map(|pid| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                cmdline
                    .contains(&*cluster_dir.to_string_lossy())
                    .then(|| format!("{pid} {cmdline}"))
            })
            .collect();
        Self {
            netns: names_in(Path::new("/run/netns")),
            links: names_in(Path::new("/sys/class/net")),
            mounts,
            cgroups,
            pins: names_in(Path::new("/sys/fs/bpf/flotilla")),
            programs,
            processes,
        }
    }

    /// What is here and was not in `before`, per kind.
    pub(crate) fn added_since(&self, before: &Self) -> Vec<String> {
        let mut added = Vec::new();
        for (kind, now, then) in [
            ("network namespace", &self.netns, &before.netns),
            ("link", &self.links, &before.links),
            ("mount", &self.mounts, &before.mounts),
            ("cgroup", &self.cgroups, &before.cgroups),
            ("bpffs pin directory", &self.pins, &before.pins),
            ("eBPF program", &self.programs, &before.programs),
            ("process", &self.processes, &before.processes),
        ] {
            added.extend(now.difference(then).map(|name| format!("{kind} {name}")));
        }
        added
    }
}

/// Every pod of the cluster: namespace/name, uid, phase and restart counts.
fn pods(cluster_dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(cluster_dir.join("controlplane").join("admin.kubeconfig"))
        .args([
            "get",
            "pods",
            "--all-namespaces",
            "--request-timeout=20s",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {.metadata.uid} \
             {.status.phase} {.status.containerStatuses[*].restartCount}{\"\\n\"}{end}",
        ])
        .output()
        .context("running kubectl get pods")?;
    ensure!(
        output.status.success(),
        "kubectl get pods: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

/// SIGKILLs the control plane (its etcd survives it), node1's agent and node2's containerd,
/// then `cargo xtask up` must bring them back with every pod as it was.
fn crash_and_repair(cluster_dir: &Path) -> anyhow::Result<()> {
    let before = pods(cluster_dir)?;
    ensure!(!before.is_empty(), "the demo left no pods to keep");
    for pid_file in [
        cluster_dir.join("controlplane.pid"),
        cluster_dir.join("nodes/flotilla-node1/agent.pid"),
        cluster_dir.join("nodes/flotilla-node2/containerd.pid"),
    ] {
        let pid: i32 = fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?
            .trim()
            .parse()?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
            .with_context(|| format!("killing {pid} ({})", pid_file.display()))?;
    }
    std::thread::sleep(Duration::from_secs(1));
    xtask(&["up"], DEMO_LIMIT).context("`cargo xtask up` after a crash")?;
    // The agents report their pods again within a few status rounds.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let after = pods(cluster_dir)?;
        if after == before {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("after the repair the pods differ:\n  before: {before:#?}\n  after: {after:#?}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The supervisor `up` leaves running restarts an agent and a containerd that were SIGKILLed,
/// with nothing run by hand, and every pod stays as it was.
fn supervised(cluster_dir: &Path) -> anyhow::Result<()> {
    let before = pods(cluster_dir)?;
    let read_pid = |file: &Path| -> anyhow::Result<i32> {
        Ok(fs::read_to_string(file)
            .with_context(|| format!("reading {}", file.display()))?
            .trim()
            .parse()?)
    };
    let supervisor = read_pid(&cluster_dir.join("supervisor.pid"))?;
    ensure!(
        Path::new(&format!("/proc/{supervisor}")).exists(),
        "`up` left no supervisor running"
    );
    let victims = [
        cluster_dir.join("nodes/flotilla-node1/agent.pid"),
        cluster_dir.join("nodes/flotilla-node2/containerd.pid"),
    ];
    let mut killed = Vec::new();
    for pid_file in &victims {
        let pid = read_pid(pid_file)?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
            .with_context(|| format!("killing {pid} ({})", pid_file.display()))?;
        killed.push(pid);
    }
    let started = Instant::now();
    for (pid_file, old) in victims.iter().zip(killed) {
        loop {
            let now = read_pid(pid_file).unwrap_or(old);
            if now != old && Path::new(&format!("/proc/{now}")).exists() {
                println!(
                    "the supervisor restarted {} in {:?}",
                    pid_file.display(),
                    started.elapsed()
                );
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the supervisor did not restart {} within 30 s; its log:\n{}",
                    pid_file.display(),
                    fs::read_to_string(cluster_dir.join("supervisor.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    wait_for_pods(cluster_dir, &before)
}

/// `cargo xtask stop` stops every daemon of the cluster and nothing else; `start` brings them
/// back with every pod as it was.
fn stop_and_start(cluster_dir: &Path) -> anyhow::Result<()> {
    let before = pods(cluster_dir)?;
    xtask(&["stop"], DOWN_LIMIT)?;
    for pid_file in [
        "supervisor.pid",
        "controlplane.pid",
        "nodes/flotilla-node1/agent.pid",
        "nodes/flotilla-node1/containerd.pid",
        "nodes/flotilla-node2/agent.pid",
        "nodes/flotilla-node2/containerd.pid",
    ] {
        let pid = fs::read_to_string(cluster_dir.join(pid_file))?;
        ensure!(
            !Path::new(&format!("/proc/{}", pid.trim())).exists(),
            "`cargo xtask stop` left {pid_file} ({}) running",
            pid.trim()
        );
    }
    xtask(&["start"], DEMO_LIMIT)?;
    wait_for_pods(cluster_dir, &before)
}

/// Waits (bounded) until the cluster's pods are `expected` again: the agents report them within
/// a few status rounds.
fn wait_for_pods(cluster_dir: &Path, expected: &BTreeSet<String>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = pods(cluster_dir)?;
        if &now == expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the pods differ:\n  before: {expected:#?}\n  now: {now:#?}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The cluster directory, after checking that no local cluster exists (a test that ends with
/// `cargo xtask down` must not take down someone's cluster).
pub(crate) fn no_cluster_here() -> anyhow::Result<PathBuf> {
    let cluster_dir = workspace().join(".flotilla").join("cluster");
    let underlay = Path::new("/run/netns/flotilla-underlay");
    // Name what was found: the underlay may belong to a cluster of another checkout.
    let found: Vec<String> = [cluster_dir.as_path(), underlay]
        .into_iter()
        .filter(|path| path.exists())
        .map(|path| path.display().to_string())
        .collect();
    ensure!(
        found.is_empty(),
        "a local cluster exists on this machine (found {}), and this test ends with `cargo \
         xtask down`: run `cargo xtask down` first (from the checkout that started it, if the \
         cluster directory named is not this one's)",
        found.join(" and ")
    );
    Ok(cluster_dir)
}

#[test]
fn up_demo_down_leaves_nothing_behind() -> anyhow::Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the local cluster creates network namespaces and loads eBPF: run as root"
    );
    let cluster_dir = no_cluster_here()?;
    let before = Snapshot::take();
    let demo = xtask(&["demo"], DEMO_LIMIT);
    // Taken while the cluster runs, so the check below is known to look at the right things.
    let running = Snapshot::take();
    // `up` again reuses the running cluster (and checks it again); after a crash it repairs
    // it; `status` reads it.
    let again = demo
        .as_ref()
        .map_err(|err| anyhow::anyhow!("{err:#}"))
        .and_then(|()| xtask(&["up"], DEMO_LIMIT))
        .and_then(|()| supervised(&cluster_dir))
        .and_then(|()| crash_and_repair(&cluster_dir))
        .and_then(|()| stop_and_start(&cluster_dir))
        .and_then(|()| xtask(&["status"], DOWN_LIMIT));
    let reused = Snapshot::take();
    let down = xtask(&["down"], DOWN_LIMIT);
    demo?;
    again.context("`cargo xtask up` or `status` on the running cluster")?;
    down?;
    anyhow::ensure!(
        reused.netns == running.netns && reused.pins == running.pins,
        "a second `up` changed the running cluster's namespaces or pins: {:?}",
        reused.added_since(&running)
    );
    let after = Snapshot::take();

    let created = running.added_since(&before);
    for expected in [
        "network namespace flotilla-underlay",
        "network namespace flotilla-node1",
        "network namespace flotilla-node2",
        "link flotilla-host",
    ] {
        ensure!(
            created.iter().any(|item| item == expected),
            "the running cluster lacks {expected}; it had: {created:#?}"
        );
    }
    // Pod namespaces are mounted under each node's containerd state dir, not in /run/netns.
    ensure!(
        created.iter().any(|item| item.starts_with("mount ")
            && item.contains("/io.containerd.grpc.v1.cri/netns/cni-")),
        "the running cluster showed no pod network namespace under a node's state dir: \
         {created:#?}"
    );
    for kind in [
        "bpffs pin directory flotilla-node",
        "eBPF program",
        "process",
        "cgroup",
    ] {
        ensure!(
            created.iter().any(|item| item.starts_with(kind)),
            "the running cluster showed no {kind}*: {created:#?}"
        );
    }

    nothing_left(&before, &after, &cluster_dir)
}

/// Checks that `after` (taken after `cargo xtask down`) has nothing `before` lacked, and that
/// the cluster directory is gone.
pub(crate) fn nothing_left(
    before: &Snapshot,
    after: &Snapshot,
    cluster_dir: &Path,
) -> anyhow::Result<()> {
    let left = after.added_since(before);
    ensure!(
        left.is_empty(),
        "`cargo xtask down` left behind:\n  {}",
        left.join("\n  ")
    );
    ensure!(
        !cluster_dir.exists(),
        "`cargo xtask down` left {}",
        cluster_dir.display()
    );
    Ok(())
}
