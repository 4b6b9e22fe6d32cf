//! The README's "Install on machines", followed as written: `cargo xtask dist` (debug binaries,
//! to save the build), then every `sh` block of the section on the machines its first line names,
//! with the test bed's addresses for the README's example ones. Three control planes and two
//! nodes, each a machine of its own (see `support::machines`), joined by the underlay and
//! nothing else. On top of the README's own checks: the units pass `systemd-analyze verify`, a
//! DaemonSet's pods answer through a ClusterIP from both nodes, a restarted agent keeps its
//! pods, the API takes writes with cp1 stopped; then the README's removal commands leave nothing
//! behind.
//!
//! Where the test departs from a real machine, it says so: `apt-get install` is checked, not
//! run (the machines share the host's packages); `rm -rf` of the directories that are mount
//! points in the test empties them instead; copying between machines is a copy between their
//! directories; systemd's part is `support::machines`' emulation.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use flotilla_testbed::{
    Testbed, TestbedConfig,
    containerd::{kill_shims_of, remove_cgroups},
};
use serde_json::Value;

use crate::{
    join::flag,
    local_cluster::{workspace, xtask},
    support::{
        hostname_at,
        machines::{Machine, Mountpoints, expand},
        require_root, test_images,
    },
};

/// Bounds one README block on one machine.
const BLOCK_LIMIT: Duration = Duration::from_secs(360);
/// Bounds `cargo xtask dist --debug` (a build, if the tests' build has not made it yet).
const DIST_LIMIT: Duration = Duration::from_secs(20 * 60);

/// The variables the README's address block sets.
const ADDRESS_VARIABLES: [&str; 5] = ["CP1", "CP2", "CP3", "NAME", "IP"];

/// One `sh` block of the section: who runs it and what.
#[derive(Debug)]
struct Block {
    /// What follows `# on ` in its first line, e.g. `every node`.
    who: String,
    script: String,
}

/// The section's `sh` blocks, in order.
fn readme_blocks(readme: &str) -> anyhow::Result<Vec<Block>> {
    let start = readme
        .find("\n## Install on machines\n")
        .context("the README has no \"## Install on machines\" section")?;
    let section = &readme[start + 1..];
    let end = section[3..]
        .find("\n## ")
        .map_or(section.len(), |at| at + 3);
    let mut lines = section[..end].lines();
    let mut blocks = Vec::new();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        if !trimmed.starts_with("```") {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|line| line.trim() != "```")
            .map(|line| line.get(indent..).unwrap_or_else(|| line.trim_start()))
            .collect();
        if trimmed != "```sh" {
            continue;
        }
        let (first, rest) = body.split_first().context("an empty sh block")?;
        let who = first
            .strip_prefix("# on ")
            .with_context(|| format!("an sh block that does not start with `# on `: {first}"))?;
        blocks.push(Block {
            who: who.to_owned(),
            script: format!("{}\n", rest.join("\n")),
        });
    }
    Ok(blocks)
}

/// What a machine is in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    ControlPlane,
    Node,
}

/// A piece of a block: shell lines, or a `systemctl` line the emulation does.
#[derive(Debug)]
enum Chunk {
    Shell(String),
    Systemctl(Vec<String>),
}

/// Splits a block at its `systemctl` lines and turns the lines that cannot run as written here
/// into what stands in for them (see the module's doc).
fn chunks(script: &str) -> anyhow::Result<Vec<Chunk>> {
    let mut chunks = Vec::new();
    let mut shell = String::new();
    for line in script.lines() {
        let command = line.split(" #").next().unwrap_or(line).trim();
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["systemctl", args @ ..] => {
                if !shell.trim().is_empty() {
                    chunks.push(Chunk::Shell(std::mem::take(&mut shell)));
                }
                shell.clear();
                chunks.push(Chunk::Systemctl(
                    args.iter().map(|arg| (*arg).to_owned()).collect(),
                ));
            }
            ["apt-get", "install", "-y", packages @ ..] => {
                shell.push_str(&format!("dpkg -s {} >/dev/null\n", packages.join(" ")));
            }
            ["rm", "-rf", paths @ ..] if paths.iter().any(|path| is_mountpoint(path)) => {
                ensure!(
                    paths.iter().all(|path| is_mountpoint(path)),
                    "`{command}` mixes the machine's own directories with others"
                );
                for path in paths {
                    shell.push_str(&format!("find {path} -mindepth 1 -delete\n"));
                }
            }
            _ => {
                shell.push_str(line);
                shell.push('\n');
            }
        }
    }
    if !shell.trim().is_empty() {
        chunks.push(Chunk::Shell(shell));
    }
    Ok(chunks)
}

/// Whether `path` is one of the directories that are mount points on a test machine.
fn is_mountpoint(path: &str) -> bool {
    [
        "/etc/flotilla",
        "/var/lib/flotilla",
        "/run/flotilla",
        "/var/log/flotilla",
    ]
    .contains(&path.trim_end_matches('/'))
}

/// The cluster: its machines, and what the blocks learn on the way.
struct Cluster {
    machines: Vec<(Role, Machine)>,
    /// TOKEN and CA_CERT_HASH, once cp1 printed the join command.
    join: Vec<(String, String)>,
}

impl Cluster {
    /// The indices of the machines a block's `who` names (`every node: to remove Flotilla`
    /// names every node).
    fn targets(&self, who: &str) -> anyhow::Result<Vec<usize>> {
        let who = who.split(':').next().unwrap_or(who).trim();
        let with_role = |role: Role| {
            self.machines
                .iter()
                .enumerate()
                .filter(|(_, (r, _))| *r == role)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        Ok(match who {
            "every machine" => (0..self.machines.len()).collect(),
            "every control plane" => with_role(Role::ControlPlane),
            "every node" => with_role(Role::Node),
            "cp1" => with_role(Role::ControlPlane).into_iter().take(1).collect(),
            other => bail!("the test does not know the machine(s) {other:?}"),
        })
    }

    fn machine_mut(&mut self, name: &str) -> anyhow::Result<&mut Machine> {
        self.machines
            .iter_mut()
            .map(|(_, machine)| machine)
            .find(|machine| machine.name == name)
            .with_context(|| format!("no machine {name}"))
    }

    fn control_plane(&self, index: usize) -> &Machine {
        self.of_role(Role::ControlPlane)[index]
    }

    fn of_role(&self, role: Role) -> Vec<&Machine> {
        self.machines
            .iter()
            .filter(|(r, _)| *r == role)
            .map(|(_, machine)| machine)
            .collect()
    }

    /// The README's variables on the machine at `index`.
    fn variables(&self, index: usize) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = self
            .of_role(Role::ControlPlane)
            .iter()
            .enumerate()
            .map(|(i, cp)| (format!("CP{}", i + 1), cp.ip.to_string()))
            .collect();
        let machine = &self.machines[index].1;
        vars.push(("NAME".to_owned(), machine.name.clone()));
        vars.push(("IP".to_owned(), machine.ip.to_string()));
        vars.extend(self.join.iter().cloned());
        vars
    }

    /// Runs `block` on the machines it names, each in its copy of dist; their stdout, joined.
    fn run(&mut self, block: &Block) -> anyhow::Result<String> {
        let chunks = chunks(&block.script)?;
        let mut stdout = String::new();
        for index in self.targets(&block.who)? {
            let vars = self.variables(index);
            let machine = &mut self.machines[index].1;
            let dir = machine.own_dir("flotilla");
            eprintln!("install: on {}: {}", machine.name, block.who);
            for chunk in &chunks {
                let done = match chunk {
                    Chunk::Shell(script) => machine
                        .sh(script, &dir, &vars, BLOCK_LIMIT)
                        .map(|out| stdout.push_str(&out)),
                    Chunk::Systemctl(args) => {
                        let args: Vec<&str> = args.iter().map(String::as_str).collect();
                        machine.systemctl(&args)
                    }
                };
                if let Err(err) = done {
                    return Err(err.context(self.report()));
                }
            }
        }
        Ok(stdout)
    }

    /// Every machine's unit output and the etcd members' logs.
    fn report(&self) -> String {
        self.machines
            .iter()
            .map(|(_, machine)| machine.report(&["/var/lib/flotilla/controlplane/etcd.log"]))
            .collect()
    }

    /// `kubectl ARGS` on cp`number` (1-based) with its admin kubeconfig; stdout.
    fn kubectl(&self, number: usize, args: &str) -> anyhow::Result<String> {
        let machine = self.control_plane(number - 1);
        machine.sh(
            &format!(
                "kubectl --kubeconfig /var/lib/flotilla/controlplane/admin.kubeconfig \
                 --request-timeout=20s {args}"
            ),
            Path::new("/"),
            &[],
            Duration::from_secs(60),
        )
    }

    /// `kubectl ... -o json` on cp1, parsed.
    fn json(&self, args: &str) -> anyhow::Result<Value> {
        Ok(serde_json::from_str(
            &self.kubectl(1, &format!("{args} -o json"))?,
        )?)
    }
}

/// A node's pods, containerd shims and cgroups: removed if the test stops half-way (the
/// README's removal commands do it otherwise).
struct NodeLeftovers {
    nodes: Vec<String>,
}

impl Drop for NodeLeftovers {
    fn drop(&mut self) {
        for node in &self.nodes {
            kill_shims_of(
                &Path::new("/run/flotilla/nodes")
                    .join(node)
                    .join("containerd/containerd.sock"),
            );
            let cgroup = Path::new("flotilla").join(node);
            for pid in pids_below(&Path::new("/sys/fs/cgroup/unified").join(&cgroup)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(200));
            remove_cgroups(&cgroup);
        }
    }
}

/// Every process in the cgroup `dir` and below.
fn pids_below(dir: &Path) -> Vec<i32> {
    let mut pids: Vec<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                pids.extend(pids_below(&entry.path()));
            }
        }
    }
    pids
}

/// The web DaemonSet (the test app on every node) and its ClusterIP Service.
const WEB: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: docker.io/flotilla/testapp:v1, imagePullPolicy: Never}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

#[test]
fn machines_from_the_readme() -> anyhow::Result<()> {
    require_root();
    let readme = std::fs::read_to_string(workspace().join("README.md"))?;
    let blocks = readme_blocks(&readme)?;
    let whos: Vec<&str> = blocks.iter().map(|block| block.who.as_str()).collect();
    ensure!(
        whos.first() == Some(&"the build machine")
            && blocks[0].script.trim() == "cargo xtask dist"
            && whos.get(1) == Some(&"every machine: the cluster's addresses"),
        "the section should start with `cargo xtask dist` on the build machine, then the \
         addresses; it has {whos:?}"
    );
    for var in ADDRESS_VARIABLES {
        ensure!(
            blocks[1].script.contains(&format!("{var}=")),
            "the address block does not set {var}"
        );
    }
    ensure!(
        readme.contains("Copy `pki.tar.gz` into the `flotilla` directory on cp2 and cp3"),
        "the README no longer copies pki.tar.gz as this test does"
    );
    ensure!(
        Command::new("systemd-analyze")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing (Debian's systemd package): the test checks the units with it"
    );

    let run = flotilla_testbed::run_dir("install")?;
    let dist = run.path().join("dist");
    xtask(
        &["dist", "--debug", "--out", &dist.to_string_lossy()],
        DIST_LIMIT,
    )?;
    let testapp = test_images()?
        .into_iter()
        .find(|image| image.ends_with("flotilla-testapp-v1.tar"))
        .context("the testapp image")?;

    let _mountpoints = Mountpoints::ensure()?;
    let config = TestbedConfig {
        control_planes: 3,
        ..TestbedConfig::nodes(2)
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let testbed = runtime.block_on(Testbed::create(config.clone()))?;
    let _leftovers = NodeLeftovers {
        nodes: testbed
            .nodes()
            .iter()
            .map(|n| n.name().to_owned())
            .collect(),
    };
    let mut machines = Vec::new();
    for (number, kept) in testbed.control_planes().iter().enumerate() {
        let name = format!("cp{}", number + 1);
        machines.push((
            Role::ControlPlane,
            name,
            kept.underlay_ip,
            kept.netns.path().to_path_buf(),
        ));
    }
    for node in testbed.nodes() {
        machines.push((
            Role::Node,
            node.name().to_owned(),
            node.underlay_ip(),
            node.netns().path().to_path_buf(),
        ));
    }
    let mut cluster = Cluster {
        machines: Vec::new(),
        join: Vec::new(),
    };
    for (role, name, ip, netns) in machines {
        let machine = Machine::start(&name, ip, &netns, run.path().join(&name))?;
        // "Copy the directory to every machine": hard links, as the files are only read.
        let copy = machine.own_dir("flotilla");
        let status = Command::new("cp")
            .arg("-al")
            .arg(&dist)
            .arg(&copy)
            .status()?;
        if !status.success() {
            let status = Command::new("cp")
                .arg("-a")
                .arg(&dist)
                .arg(&copy)
                .status()?;
            ensure!(
                status.success(),
                "copying {} to {}",
                dist.display(),
                copy.display()
            );
        }
        cluster.machines.push((role, machine));
    }

    let (install, remove): (Vec<&Block>, Vec<&Block>) = blocks[2..]
        .iter()
        .partition(|block| !block.who.ends_with("to remove Flotilla"));
    ensure!(!remove.is_empty(), "the section has no removal blocks");
    for block in install {
        let stdout = cluster.run(block)?;
        if block.script.contains("install -m 644 systemd/") {
            for index in cluster.targets(&block.who)? {
                cluster.machines[index].1.sh(
                    "systemd-analyze verify /etc/systemd/system/flotilla-*.service",
                    Path::new("/"),
                    &[],
                    Duration::from_secs(60),
                )?;
            }
        }
        if block.script.contains("pki.tar.gz pki tokens.csv") {
            let from = cluster
                .control_plane(0)
                .own_dir("flotilla")
                .join("pki.tar.gz");
            for cp in cluster.of_role(Role::ControlPlane).iter().skip(1) {
                std::fs::copy(&from, cp.own_dir("flotilla").join("pki.tar.gz"))?;
            }
        }
        if block.script.contains("--print-join-command") {
            cluster.join = vec![
                ("TOKEN".to_owned(), flag(&stdout, "--token")?),
                (
                    "CA_CERT_HASH".to_owned(),
                    flag(&stdout, "--discovery-token-ca-cert-hash")?,
                ),
            ];
        }
    }
    for (role, machine) in &mut cluster.machines {
        let units: &[&str] = match role {
            Role::ControlPlane => &["flotilla-controlplane"],
            Role::Node => &["flotilla-containerd", "flotilla-agent"],
        };
        for unit in units {
            ensure!(
                machine.unit_running(unit),
                "{unit} is not running on {}:\n{}",
                machine.name,
                machine.journal(unit)
            );
        }
    }

    // Both nodes (the README's check passes once any node is Ready).
    let node_names: Vec<String> = cluster
        .of_role(Role::Node)
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let started = Instant::now();
    loop {
        let nodes = cluster.json("get nodes")?;
        let ready = |name: &str| {
            nodes["items"].as_array().into_iter().flatten().any(|node| {
                node["metadata"]["name"] == name
                    && node["status"]["conditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        };
        if node_names.iter().all(|name| ready(name)) {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(180),
            "not every node is Ready after 180 s: {nodes}\n{}",
            cluster.report()
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // The nodes run pods that answer through a ClusterIP, across nodes.
    for node in cluster.of_role(Role::Node) {
        node.sh(
            &format!(
                "ctr --address /run/flotilla/nodes/$NAME/containerd/containerd.sock --namespace \
                 k8s.io images import {}",
                testapp.display()
            ),
            Path::new("/"),
            &[("NAME".to_owned(), node.name.clone())],
            Duration::from_secs(60),
        )?;
    }
    cluster.control_plane(0).sh(
        &format!(
            "kubectl --kubeconfig /var/lib/flotilla/controlplane/admin.kubeconfig apply -f - <<'EOF'\n{WEB}EOF\n"
        ),
        Path::new("/"),
        &[],
        Duration::from_secs(60),
    )?;
    // A node registers with the not-ready NoSchedule taint, which daemon pods do not tolerate,
    // and keeps it a moment after it reports Ready; `rollout status` counts only the nodes the
    // DaemonSet wants so far, so wait until it wants every node.
    let started = Instant::now();
    loop {
        let daemon_set = cluster.json("get daemonset web")?;
        if daemon_set["status"]["desiredNumberScheduled"].as_u64()
            == Some(u64::try_from(node_names.len())?)
        {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the web DaemonSet does not want a pod on every node after 120 s: {}\n{}",
            daemon_set["status"],
            cluster.report()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    cluster.kubectl(1, "rollout status daemonset/web --timeout=180s")?;
    let service = cluster.json("get service web")?;
    let cluster_ip: Ipv4Addr = service["spec"]["clusterIP"]
        .as_str()
        .context("the web Service's clusterIP")?
        .parse()?;
    let web = SocketAddr::from((cluster_ip, 80));
    let pods = cluster.json("get pods -l app=web")?;
    let pod_on = |pods: &Value, node: &str| -> anyhow::Result<(String, String)> {
        let pod = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|pod| pod["spec"]["nodeName"] == node)
            .with_context(|| format!("no web pod on {node}"))?;
        Ok((
            pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ))
    };
    let expected: Vec<String> = node_names
        .iter()
        .map(|node| pod_on(&pods, node).map(|(name, _)| name))
        .collect::<anyhow::Result<_>>()?;
    let node1 = testbed.node(0)?.netns().clone();
    let answered = |what: &str| -> anyhow::Result<()> {
        let mut seen = std::collections::BTreeSet::new();
        let started = Instant::now();
        for _ in 0..100 {
            if let Ok(Ok(name)) = node1.run(|| hostname_at(web)) {
                seen.insert(name);
            }
            if expected.iter().all(|pod| seen.contains(pod)) {
                eprintln!(
                    "install: {what}: both pods answered through {web} in {:?}",
                    started.elapsed()
                );
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        bail!(
            "{what}: through {web} from {} answered {seen:?}, not all of {expected:?}",
            node_names[0]
        )
    };
    answered("after the install")?;

    // The agent's unit starts again with the node's kept credentials; its pods stay.
    let (_, uid_before) = pod_on(&pods, &node_names[0])?;
    cluster
        .machine_mut(&node_names[0])?
        .systemctl(&["restart", "flotilla-agent"])?;
    cluster.kubectl(
        1,
        &format!(
            "wait --for=condition=Ready node/{} --timeout=120s",
            node_names[0]
        ),
    )?;
    let pods = cluster.json("get pods -l app=web")?;
    let (_, uid_after) = pod_on(&pods, &node_names[0])?;
    ensure!(
        uid_before == uid_after,
        "the restarted agent's pod was replaced"
    );
    let restarts = &pods["items"][0]["status"]["containerStatuses"][0]["restartCount"];
    ensure!(restarts == 0, "a web container restarted: {pods}");
    answered("after the agent's restart")?;

    // With cp1 stopped, cp2 takes writes (etcd keeps two of three members).
    let cp1 = &mut cluster.machines[0].1;
    cp1.systemctl(&["disable", "--now", "flotilla-controlplane"])?;
    let started = Instant::now();
    let mut written = None;
    while started.elapsed() < Duration::from_secs(60) {
        if cluster
            .kubectl(2, "create configmap written-without-cp1")
            .is_ok()
        {
            written = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let written = written.context("cp2 took no write within 60 s of cp1's stop")?;
    eprintln!("install: cp1 stopped; cp2 took a write after {written:?}");

    // An agent that starts while cp1, its kubeconfig's server, is down reaches the others (it
    // remembers them from its last run) and renews its node's Lease.
    let node1_name = &node_names[0];
    let renewed = |cluster: &Cluster| {
        cluster.kubectl(
            2,
            &format!("-n kube-node-lease get lease {node1_name} -o jsonpath={{.spec.renewTime}}"),
        )
    };
    cluster
        .machine_mut(node1_name)?
        .systemctl(&["disable", "--now", "flotilla-agent"])?;
    let before = renewed(&cluster)?;
    cluster
        .machine_mut(node1_name)?
        .systemctl(&["enable", "--now", "flotilla-agent"])?;
    let started = Instant::now();
    loop {
        if renewed(&cluster).is_ok_and(|now| now != before) {
            eprintln!(
                "install: node1's agent, started with cp1 down, renewed its Lease after {:?}",
                started.elapsed()
            );
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(45),
            "node1's agent, started with cp1 down, did not renew its Lease within 45 s; it \
             remembered {:?}; it learned:\n{}\nits output:\n{}",
            std::fs::read_to_string(
                cluster
                    .machine_mut(node1_name)?
                    .path(&format!("/var/lib/flotilla/nodes/{node1_name}/api-servers"))
            ),
            cluster
                .machine_mut(node1_name)?
                .whole_journal("flotilla-agent")
                .lines()
                .filter(|line| line.contains("API servers"))
                .collect::<Vec<_>>()
                .join("\n"),
            cluster.machine_mut(node1_name)?.journal("flotilla-agent")
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let cp1 = &mut cluster.machines[0].1;
    cp1.systemctl(&["enable", "--now", "flotilla-controlplane"])?;

    for block in remove {
        cluster.run(block)?;
    }
    for (role, machine) in &mut cluster.machines {
        for unit in [
            "flotilla-controlplane",
            "flotilla-containerd",
            "flotilla-agent",
        ] {
            ensure!(
                !machine.unit_running(unit),
                "{unit} still runs on {}",
                machine.name
            );
        }
        for dir in [
            "etc-flotilla",
            "var-lib-flotilla",
            "run-flotilla",
            "var-log-flotilla",
        ] {
            let left: Vec<_> = std::fs::read_dir(machine.own_dir(dir))?
                .flatten()
                .map(|e| e.path())
                .collect();
            ensure!(left.is_empty(), "{} keeps {left:?}", machine.name);
        }
        if *role == Role::Node {
            let pins = Path::new(flotilla_testbed::BPF_PIN_ROOT).join(&machine.name);
            ensure!(!pins.exists(), "{} is left", pins.display());
            let cgroups: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")?
                .flatten()
                .map(|h| h.path().join("flotilla").join(&machine.name))
                .filter(|dir| dir.exists())
                .collect();
            ensure!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
        }
    }
    Ok(())
}

#[test]
fn exec_lines_expand_as_systemd_does() {
    let env = [
        ("A".to_owned(), "one two".to_owned()),
        ("B".to_owned(), "x".to_owned()),
    ]
    .into();
    let (ignore, words) = expand("-/bin/p ${A} $A --f=${B}/y $UNSET", &env).unwrap();
    assert!(ignore);
    assert_eq!(words, ["/bin/p", "one two", "one", "two", "--f=x/y"]);
}
