//! A local cluster for privileged tests and benchmarks: a real control plane (with its own etcd,
//! serving the cluster DNS) on the host, joined over a test-bed underlay to node namespaces where
//! a real containerd and the agent run. Guards stop the agent, remove every sandbox through CRI, stop
//! containerd, remove the node's cgroups and tear the namespaces down, also on failure.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "shared by several test and bench targets, each using a part"
)]

pub mod consistency;
pub mod machines;

use std::{
    fs,
    net::Ipv4Addr,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use flotilla_agent::{
    datapath::{maglev::Balancing, tunnels::Routing},
    pods::{
        containerd::{NodeDirs, config_toml},
        cri::{Cri, api},
    },
    run::AgentConfig,
};
use flotilla_controlplane::{
    auth::node::write_node_credentials,
    etcd::free_port,
    run::{ClusterDns, Config, ControlPlane},
};
use flotilla_testbed::{
    NODE_UNDERLAY_IFACE, Netns, Testbed, TestbedConfig,
    containerd::Containerd,
    flannel::{BaselineNode, BaselinePod, FlannelBaseline},
    objects,
};
use nix::sched::{CloneFlags, setns};
use serde_json::Value;

/// The kube-dns Service's ClusterIP, in every pod's resolv.conf.
pub const CLUSTER_DNS: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test starts containerd and creates network namespaces, so it needs root; run it via \
         `cargo xtask test`"
    );
}

/// [`testapp_pod`]'s `container` for a pod Ready once the test app serves (its /healthz).
pub const TESTAPP_READINESS: &str = "    readinessProbe:
      httpGet:
        path: /healthz
        port: 8080
      periodSeconds: 1
";

/// The manifest of a test-app pod pinned to `node`, labelled `labels`; `container` is appended
/// to its container (YAML lines indented by four spaces, e.g. a readinessProbe).
pub fn testapp_pod(name: &str, node: &str, labels: &[(&str, &str)], container: &str) -> String {
    let labels: String = if labels.is_empty() {
        String::new()
    } else {
        let lines: String = labels
            .iter()
            .map(|(key, value)| format!("    {key}: {value}\n"))
            .collect();
        format!("  labels:\n{lines}")
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
{labels}spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: docker.io/flotilla/testapp:v1
    imagePullPolicy: Never
{container}"
    )
}

/// One HTTP/1.0 GET of the test app's /hostname, 2 s bounds: the answering pod's name.
pub fn hostname_at(address: std::net::SocketAddr) -> anyhow::Result<String> {
    http_get_at(address, "/hostname", Duration::from_secs(2))
}

/// One HTTP/1.0 GET of `path` from the test app at `address`: the body. Connecting may take
/// `connect`, reading and writing 2 s each.
pub fn http_get_at(
    address: std::net::SocketAddr,
    path: &str,
    connect: Duration,
) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(&address, connect)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: web\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    ensure!(
        answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200"),
        "answer: {answer}"
    );
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    Ok(body.trim().to_owned())
}

/// The test images (pause, testapp v1 and v2) as `cargo xtask images` writes them to
/// `<target>/images/oci`: built now if missing or stale (cargo and the deterministic tarballs make
/// a rebuild of unchanged sources cheap), so a fresh clone needs no manual step.
pub fn test_images() -> anyhow::Result<Vec<PathBuf>> {
    let target = workspace_cargo(
        &["run", "--quiet", "--package", "xtask", "--", "images"],
        "cargo xtask images",
    )?;
    let dir = target.join("images/oci");
    Ok([
        "flotilla-pause-3.10.tar",
        "flotilla-testapp-v1.tar",
        "flotilla-testapp-v2.tar",
        "flotilla-widget-operator-v1.tar",
    ]
    .iter()
    .map(|file| dir.join(file))
    .collect())
}

/// Every thread of this process with its name, kernel wait channel and kernel stack (as root,
/// /proc/self/task/*/stack shows where a thread sleeps in the kernel, e.g. on rtnl_lock), for a
/// stop that hangs.
fn thread_dump() -> String {
    thread_dump_of("self")
}

/// [`thread_dump`] of process `pid` (a number, or `self`).
pub fn thread_dump_of(pid: &str) -> String {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("(no /proc/{pid}/task)");
    };
    let mut lines = Vec::new();
    for task in tasks.flatten() {
        let read = |file: &str| {
            fs::read_to_string(task.path().join(file))
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let stack: Vec<String> = read("stack")
            .lines()
            .take(8)
            .map(|frame| {
                frame
                    .split_whitespace()
                    .last()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        lines.push(format!(
            "  {} {:<16} wchan={} stack=[{}]",
            task.file_name().to_string_lossy(),
            read("comm"),
            read("wchan"),
            stack.join(" < ")
        ));
    }
    lines.join("\n")
}

/// The agent, running on its own thread inside the node's namespace with its own tokio runtime
/// (so every socket it opens belongs to the node); stopped on drop. Stopping it leaves the pods
/// running, as stopping the real daemon does.
pub struct AgentThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl AgentThread {
    pub fn start(netns: &Netns, config: AgentConfig) -> anyhow::Result<Self> {
        let namespace = fs::File::open(netns.path())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            setns(namespace.as_fd(), CloneFlags::CLONE_NEWNET)?;
            // Worker threads are spawned from this thread and inherit its namespace.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                // Named for `thread_dump`: its workers and blocking threads.
                .thread_name("agent-runtime")
                .enable_all()
                .build()?;
            runtime.block_on(flotilla_agent::run::run(config, async {
                let _ = stopped.await;
            }))
        });
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Whether the agent stopped on its own (its error comes with [`Self::stop`]).
    pub fn failure(&self) -> Option<String> {
        let thread = self.thread.as_ref()?;
        thread
            .is_finished()
            .then(|| "it returned on its own".to_owned())
    }

    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            ensure!(
                thread.is_finished(),
                "the agent did not stop within 20 s; this process's threads (name, kernel wait \
                 channel, kernel stack):\n{}",
                thread_dump()
            );
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("the agent thread panicked"))??;
        }
        Ok(())
    }
}

impl Drop for AgentThread {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("stopping the agent: {err:#}");
        }
    }
}

/// One node: containerd in the node's namespace plus the agent. Dropping it removes every
/// sandbox through CRI (which releases pod addresses and namespaces), stops containerd and
/// removes the node's cgroups.
pub struct LocalNode {
    pub dirs: NodeDirs,
    pub cgroup_root: String,
    pub containerd: Option<Containerd>,
    pub agent: Option<AgentThread>,
    pub netns: Netns,
    pub config: AgentConfig,
}

impl LocalNode {
    pub fn start_agent(&mut self) -> anyhow::Result<()> {
        self.agent = Some(AgentThread::start(&self.netns, self.config.clone())?);
        Ok(())
    }

    pub fn stop_agent(&mut self) -> anyhow::Result<()> {
        if let Some(mut agent) = self.agent.take() {
            agent.stop()?;
        }
        Ok(())
    }

    /// Removes all pod sandboxes (bounded), through a runtime of its own on a thread of its own
    /// (drop may run inside the test's runtime).
    pub fn remove_sandboxes(&self) {
        let socket = self.dirs.containerd_socket();
        let removed = std::thread::spawn(move || Self::remove_sandboxes_at(&socket)).join();
        if removed.is_err() {
            eprintln!("removing sandboxes: the thread panicked");
        }
    }

    fn remove_sandboxes_at(socket: &Path) {
        let socket = socket.to_path_buf();
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let result = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), async {
                let cri = Cri::connect(&socket)?;
                let sandboxes = cri
                    .runtime
                    .clone()
                    .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
                    .await?
                    .into_inner()
                    .items;
                for sandbox in sandboxes {
                    let id = sandbox.id;
                    let _ = cri
                        .runtime
                        .clone()
                        .stop_pod_sandbox(api::StopPodSandboxRequest {
                            pod_sandbox_id: id.clone(),
                        })
                        .await;
                    let _ = cri
                        .runtime
                        .clone()
                        .remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: id })
                        .await;
                }
                anyhow::Ok(())
            })
            .await
        });
        match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("removing sandboxes: {err:#}"),
            Err(_) => eprintln!("removing sandboxes took longer than 60 s"),
        }
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        let _ = self.stop_agent();
        if self.containerd.is_some() {
            self.remove_sandboxes();
        }
        if let Some(mut containerd) = self.containerd.take() {
            containerd.stop();
        }
        flotilla_testbed::containerd::remove_cgroups(Path::new(&self.cgroup_root));
        flotilla_testbed::containerd::unmount_below(&self.dirs.lib);
        flotilla_testbed::containerd::unmount_below(&self.dirs.run);
    }
}

/// The control plane, with kubectl helpers.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub control_plane: Option<ControlPlane>,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// Waits up to `limit` until `count` pods labelled `selector` are Ready.
    pub async fn pods_ready(
        &self,
        selector: &str,
        count: usize,
        limit: Duration,
    ) -> anyhow::Result<()> {
        eventually(limit, &format!("{count} pods {selector} Ready"), || {
            let list = self.json(&["get", "pods", "-l", selector])?;
            let ready = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|pod| objects::condition_true(pod, "Ready"))
                .count();
            Ok((ready == count).then_some(()))
        })
        .await
    }

    /// Starts a control plane as `config` says (its state under `dir`), within a minute.
    pub async fn start(dir: tempfile::TempDir, config: Config) -> anyhow::Result<Self> {
        let control_plane =
            tokio::time::timeout(Duration::from_secs(60), ControlPlane::start(config)).await??;
        Ok(Self {
            kubeconfig: control_plane.kubeconfig.clone(),
            control_plane: Some(control_plane),
            dir,
        })
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("60")
            .arg("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("kubectl could not start ({err}); it must be on PATH"))
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.kubectl(args);
        ensure!(
            output.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub fn apply(&self, name: &str, manifest: &str) -> anyhow::Result<()> {
        let path = self.dir.path().join(name);
        fs::write(&path, manifest)?;
        self.kubectl_ok(&["apply", "-f", &path.to_string_lossy()])?;
        Ok(())
    }

    /// The status a TokenReview of `token` gets.
    pub fn review_token(&self, token: &str) -> anyhow::Result<Value> {
        let path = self.dir.path().join("review.json");
        let review = serde_json::json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        });
        fs::write(&path, review.to_string())?;
        let answer = self.json(&["create", "-f", &path.to_string_lossy()])?;
        Ok(answer["status"].clone())
    }

    pub fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl_ok(&all)?)?)
    }
}

/// Polls `check` every 250 ms until it returns Some or `limit` passes.
pub async fn eventually<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last_error = Some(err),
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn pod_phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

/// `flotilla-cni`, built now if missing or stale (the agent installs it into each node's CNI
/// bin dir, where containerd runs it for every pod): a debug build for tests, a release build
/// for benchmarks (which are built without debug assertions).
pub fn cni_plugin() -> anyhow::Result<PathBuf> {
    let release = !cfg!(debug_assertions);
    let mut args = vec!["build", "--quiet", "--package", "flotilla-cni"];
    args.extend(release.then_some("--release"));
    let target = workspace_cargo(&args, "building flotilla-cni")?;
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("flotilla-cni"))
}

/// `flotilla-perf` (the benchmark tool the test-app image carries at /bin/flotilla-perf), built
/// now if missing or stale, for benchmarks that run its client as a child process (in a pod's
/// namespace and cgroup): a release build for benchmarks, a debug build for tests.
pub fn flotilla_perf() -> anyhow::Result<PathBuf> {
    let release = !cfg!(debug_assertions);
    let mut args = vec![
        "build",
        "--quiet",
        "--package",
        "flotilla-testbed",
        "--bin",
        "flotilla-perf",
    ];
    args.extend(release.then_some("--release"));
    let target = workspace_cargo(&args, "building flotilla-perf")?;
    Ok(target
        .join(if release { "release" } else { "debug" })
        .join("flotilla-perf"))
}

/// Runs cargo with `args` in the workspace (bounded to 20 min) and returns the target directory
/// it builds into; `what` names the step in errors.
fn workspace_cargo(args: &[&str], what: &str) -> anyhow::Result<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests crate has a parent directory")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace.join("target"), PathBuf::from);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = flotilla_testbed::containerd::run_bounded(
        Command::new(cargo).current_dir(workspace).args(args),
        Duration::from_secs(20 * 60),
    )?;
    ensure!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(target)
}

/// Runs a Python snippet inside a pod's network namespace and a cgroup below the node's pod
/// cgroup (where the socket load balancer applies), as a pod's process would; its stdout.
pub fn python_in_pod(netns: &Path, cgroup: &Path, script: &str) -> anyhow::Result<String> {
    fs::create_dir_all(cgroup)?;
    let output = Command::new("timeout")
        .arg("20")
        .arg("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["sh", "-c"])
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec python3 -c \"$0\"",
            cgroup.display()
        ))
        .arg(script)
        .output()
        .context("running python3 (it must be on PATH)")?;
    ensure!(
        output.status.success(),
        "python in the pod failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Where Services of type LoadBalancer get addresses on the underlay whose host is `host_ip`:
/// its top, as `cargo xtask up`'s, 192.168.<octet>.240-.253 (the host's .254, where the API
/// server listens, and the broadcast .255 left out).
pub fn loadbalancer_pool(host_ip: Ipv4Addr) -> flotilla_controlplane::ipam::AddressRange {
    let [a, b, octet, _] = host_ip.octets();
    flotilla_controlplane::ipam::AddressRange {
        first: Ipv4Addr::new(a, b, octet, 240),
        last: Ipv4Addr::new(a, b, octet, 253),
    }
}

/// A control plane plus nodes with containerd and the agent, Ready. Fields drop in order: the
/// nodes first, then the control plane, then the namespaces.
pub struct LocalCluster {
    /// The first node.
    pub node: LocalNode,
    /// The other nodes, if started with more than one.
    pub others: Vec<LocalNode>,
    pub cluster: Cluster,
    pub bed: Testbed,
    /// The first node's name.
    pub node_name: String,
    /// The first node's podCIDR.
    pub pod_cidr: String,
    /// The host's address on the underlay (where the control plane listens; outside the
    /// cluster's pod network).
    pub host_ip: Ipv4Addr,
}

impl LocalCluster {
    /// Builds a one-node cluster; `started` is for progress lines.
    pub async fn start(started: Instant) -> anyhow::Result<Self> {
        Self::start_nodes(started, 1).await
    }

    /// Builds a cluster of `count` nodes.
    pub async fn start_nodes(started: Instant, count: usize) -> anyhow::Result<Self> {
        Self::start_with(started, TestbedConfig::nodes(count), Routing::default()).await
    }

    /// Builds a cluster on the test bed `bed_config` describes, whose agents route pod traffic
    /// between nodes as `routing` says.
    pub async fn start_with(
        started: Instant,
        bed_config: TestbedConfig,
        routing: Routing,
    ) -> anyhow::Result<Self> {
        let count = bed_config.nodes;
        let mut bed = Testbed::create(bed_config).await?;
        let host_ip = bed.link_host().await?;

        let dir = flotilla_testbed::run_dir("cluster")?;
        let images = test_images()?;
        let plugin = cni_plugin()?;
        eprintln!("images and CNI plugin ready after {:?}", started.elapsed());

        // The control plane, reachable from the nodes over the underlay.
        let listen: std::net::SocketAddr = format!("{host_ip}:{}", free_port()?).parse()?;
        // It serves the cluster DNS on the host's address, port 53, behind the kube-dns
        // Service, as `cargo xtask up` does; names outside the cluster are refused (no
        // upstream: the tests never leave the machine).
        let config = Config {
            etcd_ports: (free_port()?, free_port()?),
            extra_names: vec![host_ip.to_string()],
            cluster_dns: Some(ClusterDns::new(CLUSTER_DNS, None)),
            // As the binary does by default: the API server reaches pods (webhooks).
            pod_routes: true,
            loadbalancer_pool: vec![loadbalancer_pool(host_ip)],
            ..Config::new(dir.path().join("state"), listen)
        };
        let cluster = Cluster::start(dir, config).await?;

        let mut nodes = Vec::new();
        for index in 0..count {
            let node = bed.node(index)?.clone();
            nodes.push(start_node(
                &cluster, &node, &images, &plugin, listen, routing,
            )?);
        }
        let mut pod_cidrs = Vec::new();
        for node in &mut nodes {
            let name = node.config.node_name.clone();
            // Each node registers and turns Ready once containerd's CNI config is in place.
            let agent = node.agent.as_ref();
            let ready = eventually(Duration::from_secs(60), "node Ready", || {
                if let Some(failure) = agent.and_then(AgentThread::failure) {
                    bail!("the agent of {name} stopped: {failure}");
                }
                let node = cluster.json(&["get", "node", &name])?;
                Ok(objects::node_schedulable(&node).then_some(()))
            })
            .await;
            if let Err(err) = ready {
                let stopped = node.stop_agent();
                bail!("{err:#}; stopping the agent of {name}: {stopped:?}");
            }
            let pod_cidr = cluster.json(&["get", "node", &name])?["spec"]["podCIDR"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            eprintln!(
                "node {name} Ready with podCIDR {pod_cidr} after {:?}",
                started.elapsed()
            );
            pod_cidrs.push(pod_cidr);
        }
        let mut nodes = nodes.into_iter();
        let node = nodes.next().context("at least one node")?;
        Ok(Self {
            node_name: node.config.node_name.clone(),
            node,
            others: nodes.collect(),
            cluster,
            bed,
            pod_cidr: pod_cidrs.swap_remove(0),
            host_ip,
        })
    }

    /// Every node, the first one first.
    pub fn nodes(&self) -> impl Iterator<Item = &LocalNode> {
        std::iter::once(&self.node).chain(self.others.iter())
    }

    /// The network namespace containerd created for this cluster's pod with `ip`, found among
    /// the pod namespaces under each node's containerd state dir (never another cluster's).
    pub fn pod_netns(&self, ip: Ipv4Addr) -> anyhow::Result<Netns> {
        let mut found = Vec::new();
        for node in self.nodes() {
            let dir = node.dirs.pod_netns_dir();
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let netns = Netns::at(&entry.path())?;
                let output = netns
                    .command("ip")?
                    .args(["-4", "-o", "addr", "show"])
                    .output()
                    .context("running ip (iproute2 must be installed)")?;
                if String::from_utf8_lossy(&output.stdout).contains(&format!("inet {ip}/32")) {
                    found.push(netns);
                }
            }
        }
        match found.len() {
            1 => Ok(found.swap_remove(0)),
            0 => bail!("no pod network namespace of this cluster has {ip}"),
            _ => bail!("several pod network namespaces have {ip}: {found:?}"),
        }
    }

    /// Applies a benchmark's pod manifest and waits until the pods `names` run: their network
    /// namespaces, in `names`' order.
    pub async fn running_pods(
        &self,
        file: &str,
        manifest: &str,
        names: &[&str],
    ) -> anyhow::Result<Vec<(Ipv4Addr, Netns)>> {
        self.cluster.apply(file, manifest)?;
        let ips: Vec<Ipv4Addr> =
            eventually(Duration::from_secs(120), "benchmark pods Running", || {
                let mut ips = Vec::new();
                for name in names {
                    let pod = self.cluster.json(&["get", "pod", name])?;
                    let ip = pod["status"]["podIP"]
                        .as_str()
                        .and_then(|ip| ip.parse().ok());
                    match ip {
                        Some(ip) if pod_phase(&pod) == "Running" => ips.push(ip),
                        _ => return Ok(None),
                    }
                }
                Ok(Some(ips))
            })
            .await?;
        ips.into_iter()
            .map(|ip| Ok((ip, self.pod_netns(ip)?)))
            .collect()
    }

    /// The flannel-style kernel VXLAN network (the benchmarks' baseline) beside Flotilla's, over
    /// every node, for `pods`: each pod's namespace with the index of its node.
    pub async fn flannel_beside(
        &self,
        pods: &[(&Netns, usize)],
    ) -> anyhow::Result<FlannelBaseline> {
        let nodes = self
            .nodes()
            .map(|node| {
                Ok(BaselineNode {
                    netns: node.netns.clone(),
                    underlay_ip: node.config.node_ip.parse()?,
                    underlay_iface: NODE_UNDERLAY_IFACE.to_owned(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let pods: Vec<BaselinePod> = pods
            .iter()
            .map(|(netns, node)| BaselinePod {
                netns: (*netns).clone(),
                node: *node,
            })
            .collect();
        Ok(FlannelBaseline::create(&nodes, &pods).await?)
    }

    /// Stops the nodes and the control plane in order.
    pub async fn shutdown(mut self) {
        // The nodes' containers go first, then the API.
        for node in std::iter::once(&mut self.node).chain(self.others.iter_mut()) {
            node.stop_agent().ok();
            if let Some(mut containerd) = node.containerd.take() {
                node.remove_sandboxes();
                containerd.stop();
            }
        }
        if let Some(control_plane) = self.cluster.control_plane.take() {
            control_plane.stop().await;
        }
    }
}

/// One node of a local cluster: containerd in the node's namespace, credentials from the
/// cluster CA, and the agent.
fn start_node(
    cluster: &Cluster,
    node: &flotilla_testbed::Node,
    images: &[PathBuf],
    plugin: &Path,
    api: std::net::SocketAddr,
    routing: Routing,
) -> anyhow::Result<LocalNode> {
    let node_name = node.name().to_owned();
    let dirs = NodeDirs::under(&cluster.dir.path().join(format!("nodes/{node_name}")));
    for sub in dirs.all() {
        fs::create_dir_all(sub)?;
    }
    let config_path = dirs.containerd_config();
    fs::write(&config_path, config_toml(&dirs))?;
    let containerd = Containerd::start(
        &config_path,
        &dirs.containerd_socket(),
        &dirs.lib.join("containerd.log"),
        vec![dirs.lib.clone(), dirs.run.clone()],
        Some(node.netns()),
        Duration::from_secs(30),
    )?;
    containerd.import(images)?;
    let credentials = write_node_credentials(
        &cluster.dir.path().join("state/pki"),
        &node_name,
        &node.underlay_ip().to_string(),
        &format!("https://{api}"),
        &dirs.lib.join("credentials"),
    )?;
    let cgroup_root = format!("/{node_name}");
    let agent_config = AgentConfig {
        node_name: node_name.clone(),
        node_ip: node.underlay_ip().to_string(),
        kubeconfig: credentials.kubeconfig.clone(),
        dirs: dirs.clone(),
        listen: format!("{}:{}", node.underlay_ip(), 10250).parse()?,
        tls_cert_file: credentials.serving_cert.clone(),
        tls_private_key_file: credentials.serving_key.clone(),
        client_ca_file: credentials.client_ca.clone(),
        cgroup_root: cgroup_root.clone(),
        cluster_dns: vec![CLUSTER_DNS.to_string()],
        cluster_domain: "cluster.local".into(),
        max_pods: 110,
        cluster_cidr: "10.244.0.0/16".into(),
        mtu: None,
        routing,
        balancing: Balancing::default(),
        cni_plugin: plugin.to_owned(),
        metrics_listen: Some(format!("{}:9962", node.underlay_ip()).parse()?),
        api_balancer: true,
        l2_announcements: true,
    };
    let mut local = LocalNode {
        dirs,
        cgroup_root,
        containerd: Some(containerd),
        agent: None,
        netns: node.netns().clone(),
        config: agent_config,
    };
    local.start_agent()?;
    Ok(local)
}

/// Packets the node's VXLAN device sent and received so far (`/proc/net/dev` as the node's
/// namespace shows it).
pub fn overlay_packets(netns: &Netns) -> anyhow::Result<(u64, u64)> {
    let table = netns.run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))??;
    let line = table
        .lines()
        .find(|line| line.trim_start().starts_with("flotilla.1:"))
        .with_context(|| {
            format!(
                "no flotilla.1 in {}'s /proc/net/dev:\n{table}",
                netns.name()
            )
        })?;
    let fields: Vec<u64> = line
        .split_once(':')
        .map(|(_, counters)| counters)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    ensure!(fields.len() >= 10, "unexpected /proc/net/dev line {line:?}");
    // Receive packets are the 2nd field, transmit packets the 10th.
    Ok((fields[1], fields[9]))
}

/// A kube client from a kubeconfig file.
pub async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}
