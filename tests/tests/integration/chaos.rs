//! The chaos test: `cargo xtask up --control-planes 3 --nodes 2` (three control planes, each in
//! a namespace of its own with its member of one etcd cluster, behind the API balancer on the
//! host's address), under load for the whole run: a writer creating ConfigMaps through the
//! kubeconfig `up` printed, a loop of HTTP requests through a ClusterIP (from node 1's
//! namespace to `web` pods on both nodes) and a long-lived TCP stream through a ClusterIP (to
//! an echo pod on node 1). Then, one after another:
//!
//! 1. the control plane holding the Leases is SIGKILLed with its etcd member, the supervisor
//!    stopped first so nothing restarts it (a lost machine): another takes the Leases over;
//!    `up` then brings it back;
//! 2. the etcd leader is SIGKILLed (its control plane restarts it): writes resume;
//! 3. node 2's agent is SIGKILLed: the supervisor restarts it, its pods are re-adopted with
//!    their restart counts unchanged;
//! 4. node 2's underlay link goes down for 60 s: the node turns NotReady after the grace
//!    period, its `web` pods are replaced on node 1 after their 5 s tolerations, its
//!    StatefulSet pod is not (never two pods with one ordinal running), and the node is Ready
//!    again after.
//!
//! It prints a table (fault, recovery time, objects lost, writes and requests failed,
//! connections dropped) and fails when an answered write is lost, a connection not to the
//! downed node drops, a request fails while no node is down, or a recovery takes longer than
//! its bound. Every loop is bounded; all traffic stays in the cluster's namespaces.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use flotilla_testbed::Netns;

use crate::support::hostname_at;

use crate::local_cluster::{
    DEMO_LIMIT, DOWN_LIMIT, Snapshot, no_cluster_here, nothing_left, xtask,
};

/// The control planes `up` starts here.
const CONTROL_PLANES: usize = 3;
/// How long another control plane may take to hold the Leases: upstream's 15 s lease, tried
/// every 2 s (x1.2 jitter) counted from when a candidate last saw it renewed.
const HANDOVER_LIMIT: Duration = Duration::from_secs(25);
/// How long writes may stop after the etcd leader dies (an election takes ~2 s here).
const WRITES_RESUME_LIMIT: Duration = Duration::from_secs(5);
/// How long the supervisor may take to restart an agent that then reports its pods again.
const AGENT_LIMIT: Duration = Duration::from_secs(30);
/// How long node 2's underlay link stays down.
const LINK_DOWN: Duration = Duration::from_secs(60);
/// The node-lifecycle grace period (`--node-monitor-grace-period`) and its 5 s check period.
const GRACE: Duration = Duration::from_secs(40);
/// How often an agent renews its node Lease.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Longest write outage through the balancer while a control plane dies.
const WRITE_OUTAGE_LIMIT: Duration = Duration::from_secs(5);

/// The workloads: `web` (4 replicas, spread over both nodes) behind a ClusterIP, an echo pod
/// pinned to node 1 behind another, and a 2-replica StatefulSet; every pod leaves a node 5 s
/// after it is tainted unreachable or not-ready (upstream's default is 300 s).
const WORKLOADS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - {name: web, image: docker.io/flotilla/testapp:v1, imagePullPolicy: Never}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      nodeSelector: {kubernetes.io/hostname: flotilla-node1}
      containers:
      - {name: echo, image: docker.io/flotilla/testapp:v1, imagePullPolicy: Never}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{port: 9000, targetPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - {name: db, image: docker.io/flotilla/testapp:v1, imagePullPolicy: Never}
"#;

/// What the test looks at of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PodState {
    uid: String,
    node: String,
    phase: String,
    /// Its containers' restart counts.
    restarts: String,
    /// Whether it has a deletionTimestamp.
    deleting: bool,
}

impl PodState {
    fn running(&self) -> bool {
        self.phase == "Running" && !self.deleting
    }
}

/// The running cluster.
#[derive(Clone)]
struct Cluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Cluster {
    /// `kubectl` bounded; its stdout, or its stderr as the error.
    fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.kubectl_with(args, None)
    }

    fn kubectl_with(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        let mut child = Command::new("timeout")
            .arg("20")
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=5s")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running kubectl")?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "kubectl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Control plane `number`'s directory.
    fn machine(&self, number: usize) -> PathBuf {
        self.dir
            .join("controlplanes")
            .join(format!("flotilla-cp{number}"))
    }

    /// The holder of the controllers' Lease.
    fn leader_identity(&self) -> anyhow::Result<String> {
        self.kubectl(&[
            "-n",
            "kube-system",
            "get",
            "lease",
            "kube-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
    }

    /// The control plane whose identity (`<hostname>_<id>`, the id kept in its state
    /// directory) is `identity`.
    fn control_plane_of(&self, identity: &str) -> Option<usize> {
        (1..=CONTROL_PLANES).find(|number| {
            std::fs::read_to_string(
                self.machine(*number)
                    .join("controlplane/leader-election-id"),
            )
            .is_ok_and(|id| !id.trim().is_empty() && identity.ends_with(id.trim()))
        })
    }

    /// The pods by name.
    fn pods(&self) -> anyhow::Result<BTreeMap<String, PodState>> {
        let text = self.kubectl(&[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.spec.nodeName} \
             {.status.phase} {.status.containerStatuses[*].restartCount} \
             {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ])?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let [name, uid, node, phase, restarts, rest @ ..] = fields.as_slice() else {
                    return None;
                };
                Some((
                    (*name).to_owned(),
                    PodState {
                        uid: (*uid).to_owned(),
                        node: (*node).to_owned(),
                        phase: (*phase).to_owned(),
                        restarts: (*restarts).to_owned(),
                        deleting: !rest.is_empty(),
                    },
                ))
            })
            .collect())
    }

    /// Whether node `name` is Ready.
    fn node_ready(&self, name: &str) -> anyhow::Result<bool> {
        let status = self.kubectl(&[
            "get",
            "node",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ])?;
        Ok(status == "True")
    }

    fn cluster_ip(&self, service: &str) -> anyhow::Result<std::net::Ipv4Addr> {
        self.kubectl(&[
            "get",
            "service",
            service,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])?
        .parse()
        .with_context(|| format!("the ClusterIP of {service}"))
    }
}

/// Polls `check` every 250 ms until it returns Some, for at most `limit`.
fn wait<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last = format!("{err:#}"),
        }
        if started.elapsed() > limit {
            bail!("{what}: not within {limit:?} (last error: {last})");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn read_pid(file: &Path) -> anyhow::Result<i32> {
    Ok(std::fs::read_to_string(file)
        .with_context(|| format!("reading {}", file.display()))?
        .trim()
        .parse()?)
}

/// The pid of the etcd whose arguments name `data_dir`.
fn etcd_on(data_dir: &Path) -> Option<i32> {
    let wanted = data_dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|byte| *byte == 0)
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect();
            let etcd = args.first()?.rsplit('/').next()? == "etcd";
            (etcd && args.iter().any(|arg| arg.contains(&wanted))).then_some(pid)
        })
}

fn kill(pid: i32) -> anyhow::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
        .with_context(|| format!("killing {pid}"))
}

/// What the load saw, with when.
#[derive(Debug, Default)]
struct Log {
    /// Answered creates: (started, answered, name).
    written: Vec<(Instant, Instant, String)>,
    /// Failed creates: (when, error).
    write_failures: Vec<(Instant, String)>,
    /// HTTP requests through the `web` ClusterIP: (when, answered 200).
    requests: Vec<(Instant, bool)>,
    /// Echo rounds over the long-lived stream.
    stream_rounds: usize,
    /// The stream broke: (when, why).
    stream_drops: Vec<(Instant, String)>,
}

impl Log {
    /// Between `from` and `to`: answered writes then missing from `stored`, failed writes,
    /// failed requests and stream drops.
    fn counts(
        &self,
        stored: &std::collections::HashSet<&str>,
        from: Instant,
        to: Instant,
    ) -> [usize; 4] {
        let within = |when: &Instant| *when >= from && *when <= to;
        [
            self.written
                .iter()
                .filter(|(_, answered, name)| within(answered) && !stored.contains(name.as_str()))
                .count(),
            self.write_failures
                .iter()
                .filter(|(w, _)| within(w))
                .count(),
            self.requests
                .iter()
                .filter(|(w, ok)| within(w) && !ok)
                .count(),
            self.stream_drops.iter().filter(|(w, _)| within(w)).count(),
        ]
    }
}

/// The load threads; they end when `stop` is set.
struct Load {
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(cluster: &Cluster, web: SocketAddr, echo: SocketAddr) -> anyhow::Result<Self> {
        let log = Arc::new(Mutex::new(Log::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let (writer_log, writer_stop, cluster) = (log.clone(), stop.clone(), cluster.clone());
        threads.push(std::thread::spawn(move || {
            for round in 0..10_000 {
                if writer_stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("chaos-{round}");
                let started = Instant::now();
                let result = cluster.kubectl(&["create", "configmap", &name]);
                let mut log = lock(&writer_log);
                match result {
                    Ok(_) => log.written.push((started, Instant::now(), name)),
                    Err(err) => log
                        .write_failures
                        .push((Instant::now(), format!("{err:#}"))),
                }
                drop(log);
                std::thread::sleep(Duration::from_millis(200));
            }
        }));
        let node1 = Netns::open("flotilla-node1")?;
        let (http_log, http_stop, http_netns) = (log.clone(), stop.clone(), node1.clone());
        threads.push(std::thread::spawn(move || {
            let _ = http_netns.run(|| {
                for _ in 0..100_000 {
                    if http_stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let ok = hostname_at(web).is_ok();
                    lock(&http_log).requests.push((Instant::now(), ok));
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
        }));
        let (stream_log, stream_stop) = (log.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let _ = node1.run(|| echo_stream(echo, &stream_log, &stream_stop));
        }));
        Ok(Self { log, stop, threads })
    }

    /// When the first write started after `after` was answered.
    fn first_write_after(&self, after: Instant) -> Option<Instant> {
        lock(&self.log)
            .written
            .iter()
            .find(|(started, _, _)| *started >= after)
            .map(|(_, answered, _)| *answered)
    }

    /// The longest run of failed writes between `from` and `to`: from the first failure to the
    /// next answer.
    fn longest_write_outage(&self, from: Instant, to: Instant) -> Duration {
        let log = lock(&self.log);
        let mut longest = Duration::ZERO;
        for (failed, _) in log
            .write_failures
            .iter()
            .filter(|(w, _)| *w >= from && *w <= to)
        {
            let back = log
                .written
                .iter()
                .find(|(_, answered, _)| answered > failed)
                .map_or(to, |(_, answered, _)| *answered);
            longest = longest.max(back.duration_since(*failed));
        }
        longest
    }

    fn stop(self) -> Log {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        std::mem::take(&mut *lock(&self.log))
    }
}

fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps one TCP connection to the echo Service, a numbered 8-byte round every 100 ms; a
/// broken connection is logged and made again.
fn echo_stream(address: SocketAddr, log: &Mutex<Log>, stop: &AtomicBool) {
    let connect = || -> std::io::Result<TcpStream> {
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        Ok(stream)
    };
    let mut stream = None;
    for round in 0u64..1_000_000 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        let connection = match stream.take() {
            Some(connection) => connection,
            None => match connect() {
                Ok(connection) => connection,
                Err(_) => continue,
            },
        };
        let mut connection = connection;
        let sent = round.to_be_bytes();
        let mut back = [0u8; 8];
        let result = connection
            .write_all(&sent)
            .and_then(|()| connection.read_exact(&mut back));
        match result {
            Ok(()) if back == sent => {
                lock(log).stream_rounds += 1;
                stream = Some(connection);
            }
            Ok(()) => lock(log)
                .stream_drops
                .push((Instant::now(), format!("round {round}: echoed {back:?}"))),
            Err(err) => lock(log)
                .stream_drops
                .push((Instant::now(), format!("round {round}: {err}"))),
        }
    }
}

/// One row of the table.
struct Row {
    fault: &'static str,
    recovery: String,
    /// From the fault to the recovery.
    from: Instant,
    to: Instant,
}

/// Fault 1: SIGKILL the control plane holding the Leases and its etcd member, with nothing to
/// restart it; returns how long until another held them.
fn kill_the_leader(cluster: &Cluster, load: &Load) -> anyhow::Result<(Duration, Instant)> {
    let supervisor = read_pid(&cluster.dir.join("supervisor.pid"))?;
    kill(supervisor).context("stopping the supervisor")?;
    let identity = cluster.leader_identity()?;
    let victim = cluster
        .control_plane_of(&identity)
        .with_context(|| format!("no control plane has the leader identity {identity:?}"))?;
    let group = read_pid(&cluster.machine(victim).join("controlplane.pid"))?;
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::SIGKILL)
        .with_context(|| format!("killing control plane {victim}'s process group {group}"))?;
    let killed = Instant::now();
    let handover = wait(
        HANDOVER_LIMIT,
        "another control plane holds the Leases",
        || {
            let now = cluster.leader_identity()?;
            Ok(cluster
                .control_plane_of(&now)
                .is_some_and(|number| number != victim)
                .then(|| killed.elapsed()))
        },
    )?;
    let outage = load.longest_write_outage(killed, Instant::now());
    ensure!(
        outage <= WRITE_OUTAGE_LIMIT,
        "writes through the balancer failed for {outage:?} in a row after control plane \
         {victim} died"
    );
    println!("chaos: control plane {victim} led; another held the Leases after {handover:?}");
    Ok((handover, killed))
}

/// Fault 2: SIGKILL the etcd leader (its control plane restarts it); returns how long until a
/// write started after the kill was answered.
fn kill_the_etcd_leader(cluster: &Cluster, load: &Load) -> anyhow::Result<(Duration, Instant)> {
    let leader = (1..=CONTROL_PLANES)
        .find(|number| {
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/flotilla-cp{number}"))
                .args([
                    "etcdctl",
                    "--endpoints",
                    "http://127.0.0.1:12379",
                    "--command-timeout=3s",
                    "endpoint",
                    "status",
                ])
                .output()
                .is_ok_and(|out| {
                    // endpoint, ID, version, db size, is leader, ...
                    String::from_utf8_lossy(&out.stdout)
                        .split(',')
                        .nth(4)
                        .is_some_and(|field| field.trim() == "true")
                })
        })
        .context("no etcd member says it leads")?;
    let data_dir = cluster.machine(leader).join("controlplane/etcd");
    let etcd =
        etcd_on(&data_dir).with_context(|| format!("no etcd runs on {}", data_dir.display()))?;
    kill(etcd)?;
    let killed = Instant::now();
    let resumed = wait(
        WRITES_RESUME_LIMIT + Duration::from_secs(5),
        "a write after the etcd leader's death",
        || Ok(load.first_write_after(killed)),
    )?;
    println!("chaos: etcd member cp{leader} led; SIGKILLed (pid {etcd})");
    Ok((resumed.duration_since(killed), killed))
}

/// Fault 3: SIGKILL node 2's agent; returns how long until the supervisor's new agent ran and
/// the node's pods were reported as before.
fn kill_an_agent(cluster: &Cluster) -> anyhow::Result<(Duration, Instant)> {
    let before = cluster.pods()?;
    let pid_file = cluster.dir.join("nodes/flotilla-node2/agent.pid");
    let old = read_pid(&pid_file)?;
    kill(old)?;
    let killed = Instant::now();
    wait(
        AGENT_LIMIT,
        "the supervisor restarts node 2's agent",
        || {
            let now = read_pid(&pid_file).unwrap_or(old);
            Ok((now != old && Path::new(&format!("/proc/{now}")).exists()).then_some(()))
        },
    )?;
    wait(AGENT_LIMIT, "node 2 Ready with its pods as before", || {
        Ok((cluster.node_ready("flotilla-node2")? && cluster.pods()? == before).then_some(()))
    })?;
    Ok((killed.elapsed(), killed))
}

/// The `web` pods running on node 1.
fn web_on_node1(pods: &BTreeMap<String, PodState>) -> usize {
    pods.iter()
        .filter(|(name, pod)| {
            name.starts_with("web-") && pod.node == "flotilla-node1" && pod.running()
        })
        .count()
}

/// Fault 4: node 2's underlay link down for [`LINK_DOWN`]; returns (NotReady after, web pods
/// replaced after, Ready again after the link came back, when it went down, when it came up).
fn take_node2_off(
    cluster: &Cluster,
) -> anyhow::Result<(Duration, Duration, Duration, Instant, Instant)> {
    let pods = cluster.pods()?;
    let (db_name, db_uid) = pods
        .iter()
        .find(|(name, pod)| name.starts_with("db-") && pod.node == "flotilla-node2")
        .map(|(name, pod)| (name.clone(), pod.uid.clone()))
        .context("no StatefulSet pod on node 2 (the scheduler spreads replicas)")?;
    let underlay = Netns::open("flotilla-underlay")?;
    let link = |state: &str| -> anyhow::Result<()> {
        let status = underlay
            .command("ip")?
            .args(["link", "set", "n2", state])
            .status()?;
        ensure!(status.success(), "ip link set n2 {state}: {status}");
        Ok(())
    };
    link("down")?;
    let down = Instant::now();
    let result =
        (|| -> anyhow::Result<(Duration, Option<Duration>, BTreeMap<String, PodState>)> {
            let not_ready = wait(GRACE + Duration::from_secs(25), "node 2 NotReady", || {
                Ok((!cluster.node_ready("flotilla-node2")?).then(|| down.elapsed()))
            })?;
            println!("chaos: node 2 NotReady {not_ready:?} after its link went down");
            let mut replaced = None;
            let mut shown = Instant::now();
            let mut pods = BTreeMap::new();
            while down.elapsed() < LINK_DOWN {
                pods = cluster.pods()?;
                if shown.elapsed() >= Duration::from_secs(5) {
                    shown = Instant::now();
                    println!(
                        "chaos: {:?} after the link went down: {pods:?}",
                        down.elapsed()
                    );
                }
                if replaced.is_none() && web_on_node1(&pods) == 4 {
                    replaced = Some(down.elapsed());
                }
                // The ordinal stays with the pod the node may still run until the node confirms
                // it stopped: no second db pod of that name anywhere.
                if let Some(pod) = pods.get(&db_name) {
                    ensure!(
                        pod.uid == db_uid,
                        "{db_name} was created again on {} while node 2, which may still run it, \
                     was unreachable",
                        pod.node
                    );
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok((not_ready, replaced, pods))
        })();
    link("up")?;
    let up = Instant::now();
    let (not_ready, replaced, pods) = result?;
    // Evicted near the end of the outage, the replacements may still be starting.
    let replaced = match replaced {
        Some(after) => after,
        None => wait(
            Duration::from_secs(20),
            "web pods replaced on node 1",
            || Ok((web_on_node1(&cluster.pods()?) == 4).then(|| down.elapsed())),
        )
        .with_context(|| format!("the pods at the end of the outage: {pods:#?}"))?,
    };
    // The grace period runs from the last heartbeat seen, up to one renewal (10 s) before the
    // link went down.
    ensure!(
        not_ready + HEARTBEAT >= GRACE,
        "node 2 turned NotReady {not_ready:?} after its link went down, before the {GRACE:?} \
         grace period"
    );
    let ready = wait(Duration::from_secs(60), "node 2 Ready again", || {
        Ok(cluster.node_ready("flotilla-node2")?.then(|| up.elapsed()))
    })?;
    // The StatefulSet gets its pod back once node 2 confirmed the old one stopped.
    wait(
        Duration::from_secs(90),
        "both db pods running again",
        || {
            let pods = cluster.pods()?;
            let running = pods
                .iter()
                .filter(|(name, pod)| name.starts_with("db-") && pod.running())
                .count();
            Ok((running == 2).then_some(()))
        },
    )?;
    Ok((not_ready, replaced, ready, down, up))
}

/// The faults, one after another, against the running cluster in `dir`.
fn run_faults(dir: &Path) -> anyhow::Result<()> {
    let cluster = Cluster {
        dir: dir.to_owned(),
        kubeconfig: dir.join("admin.kubeconfig"),
    };
    cluster.kubectl_with(&["apply", "-f", "-"], Some(WORKLOADS))?;
    wait(Duration::from_secs(120), "the workloads running", || {
        let pods = cluster.pods()?;
        Ok((pods.values().filter(|pod| pod.running()).count() == 7).then_some(()))
    })?;
    let web = SocketAddr::from((cluster.cluster_ip("web")?, 80));
    let echo = SocketAddr::from((cluster.cluster_ip("echo")?, 9000));
    let load = Load::start(&cluster, web, echo)?;
    let faults = (|| -> anyhow::Result<Vec<Row>> {
        std::thread::sleep(Duration::from_secs(3));
        let mut rows = Vec::new();
        let row = |fault, recovery: String, from: Instant, to: Instant| Row {
            fault,
            recovery,
            from,
            to,
        };

        let (handover, killed) = kill_the_leader(&cluster, &load)?;
        rows.push(row(
            "SIGKILL the leading control plane (+ its etcd)",
            format!("{:.1} s to a new leader", handover.as_secs_f64()),
            killed,
            Instant::now(),
        ));
        xtask(&["up"], DEMO_LIMIT).context("`cargo xtask up` bringing it back")?;

        let (resumed, killed) = kill_the_etcd_leader(&cluster, &load)?;
        rows.push(row(
            "SIGKILL the etcd leader",
            format!("{:.1} s to a write", resumed.as_secs_f64()),
            killed,
            Instant::now(),
        ));
        ensure!(
            resumed <= WRITES_RESUME_LIMIT,
            "writes resumed {resumed:?} after the etcd leader died"
        );

        let (restarted, killed) = kill_an_agent(&cluster)?;
        rows.push(row(
            "SIGKILL node 2's agent",
            format!(
                "{:.1} s to restarted, pods as before",
                restarted.as_secs_f64()
            ),
            killed,
            Instant::now(),
        ));

        let (not_ready, replaced, ready, down, up) = take_node2_off(&cluster)?;
        rows.push(row(
            "node 2's underlay link down 60 s",
            format!(
                "NotReady {:.0} s, web replaced {:.0} s, Ready {:.1} s after link up",
                not_ready.as_secs_f64(),
                replaced.as_secs_f64(),
                ready.as_secs_f64()
            ),
            down,
            up + ready,
        ));
        Ok(rows)
    })();
    let log = load.stop();
    let rows = faults?;

    let stored = cluster.kubectl(&[
        "get",
        "configmaps",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])?;
    let stored: std::collections::HashSet<&str> = stored.split_whitespace().collect();
    let lost: Vec<&String> = log
        .written
        .iter()
        .map(|(_, _, name)| name)
        .filter(|name| !stored.contains(name.as_str()))
        .collect();
    println!(
        "\n{:<48} | {:<62} | {:>4} | {:>13} | {:>15} | {:>19}",
        "fault", "recovery", "lost", "writes failed", "requests failed", "connections dropped"
    );
    let mut failed_requests = Vec::new();
    for row in &rows {
        let [lost, writes, requests, dropped] = log.counts(&stored, row.from, row.to);
        println!(
            "{:<48} | {:<62} | {lost:>4} | {writes:>13} | {requests:>15} | {dropped:>19}",
            row.fault, row.recovery
        );
        failed_requests.push(requests);
    }
    println!(
        "load over the run: {} writes answered, {} failed, {} lost; {} HTTP requests, {} failed; \
         {} echo rounds on one connection, {} drops\nwrite failures: {:#?}\nstream drops: {:#?}",
        log.written.len(),
        log.write_failures.len(),
        lost.len(),
        log.requests.len(),
        log.requests.iter().filter(|(_, ok)| !ok).count(),
        log.stream_rounds,
        log.stream_drops.len(),
        log.write_failures,
        log.stream_drops
    );
    ensure!(lost.is_empty(), "answered writes lost: {lost:?}");
    ensure!(
        log.stream_drops.is_empty(),
        "the stream to the echo pod on node 1 dropped: {:?}",
        log.stream_drops
    );
    for (row, failed) in rows.iter().zip(&failed_requests).take(3) {
        ensure!(
            *failed == 0,
            "{}: {failed} HTTP requests through the ClusterIP failed with every node up",
            row.fault
        );
    }
    Ok(())
}

#[test]
fn chaos_three_control_planes_two_nodes() -> anyhow::Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the local cluster creates network namespaces and loads eBPF: run as root"
    );
    let cluster_dir = no_cluster_here()?;
    let before = Snapshot::take();
    let up = xtask(&["up", "--control-planes", "3", "--nodes", "2"], DEMO_LIMIT);
    let running = Snapshot::take();
    let result = up.and_then(|()| run_faults(&cluster_dir));
    let down = xtask(&["down"], DOWN_LIMIT);
    result?;
    down?;
    let created = running.added_since(&before);
    for expected in [
        "network namespace flotilla-cp1",
        "network namespace flotilla-cp2",
        "network namespace flotilla-cp3",
    ] {
        ensure!(
            created.iter().any(|item| item == expected),
            "the running cluster lacks {expected}; it had: {created:#?}"
        );
    }
    nothing_left(&before, &Snapshot::take(), &cluster_dir)
}
