//! Privileged end-to-end test of the node agent: a real control plane (with its own etcd) on the
//! host, joined to a test-bed node namespace where a real containerd and the agent run; pods are
//! driven with the real kubectl.
//!
//! Everything runs inside namespaces the test creates (the host only gets a link into the test
//! bed's underlay bridge). Guards stop the agent, remove every sandbox through CRI, stop
//! containerd, remove the node's cgroups and tear the namespaces down, also when an assertion
//! fails. Every wait is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::{
    fs,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use flotilla_agent::{
    pods::{
        containerd::{NodeDirs, config_toml},
        cri::{Cri, api},
    },
    run::AgentConfig,
};
use flotilla_controlplane::{
    auth::node::write_node_credentials,
    etcd::free_port,
    run::{Config, ControlPlane},
};
use flotilla_testbed::{Netns, Testbed, TestbedConfig, containerd::Containerd};
use nix::sched::{CloneFlags, setns};
use serde_json::Value;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test starts containerd and creates network namespaces, so it needs root; run it via \
         `cargo xtask test`"
    );
}

/// Builds the image tarballs with `cargo xtask images` into `out` and returns them.
fn build_images(out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the tests crate has a parent directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = flotilla_testbed::containerd::run_bounded(
        Command::new(cargo)
            .current_dir(workspace)
            .args([
                "run",
                "--quiet",
                "--package",
                "xtask",
                "--",
                "images",
                "--out",
            ])
            .arg(out),
        Duration::from_secs(20 * 60),
    )?;
    ensure!(
        output.status.success(),
        "cargo xtask images failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok([
        "flotilla-pause-3.10.tar",
        "flotilla-testapp-v1.tar",
        "flotilla-testapp-v2.tar",
    ]
    .iter()
    .map(|file| out.join(file))
    .collect())
}

/// The agent, running on its own thread inside the node's namespace with its own tokio runtime
/// (so every socket it opens belongs to the node); stopped on drop. Stopping it leaves the pods
/// running, as stopping the real daemon does.
struct AgentThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl AgentThread {
    fn start(netns: &Netns, config: AgentConfig) -> anyhow::Result<Self> {
        let namespace = fs::File::open(netns.path())?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            setns(namespace.as_fd(), CloneFlags::CLONE_NEWNET)?;
            // Worker threads are spawned from this thread and inherit its namespace.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
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

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            ensure!(thread.is_finished(), "the agent did not stop within 20 s");
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
struct LocalNode {
    dirs: NodeDirs,
    cgroup_root: String,
    containerd: Option<Containerd>,
    agent: Option<AgentThread>,
    netns: Netns,
    config: AgentConfig,
}

impl LocalNode {
    fn start_agent(&mut self) -> anyhow::Result<()> {
        self.agent = Some(AgentThread::start(&self.netns, self.config.clone())?);
        Ok(())
    }

    fn stop_agent(&mut self) -> anyhow::Result<()> {
        if let Some(mut agent) = self.agent.take() {
            agent.stop()?;
        }
        Ok(())
    }

    /// Removes all pod sandboxes (bounded), through a runtime of its own on a thread of its own
    /// (drop may run inside the test's runtime).
    fn remove_sandboxes(&self) {
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
        remove_cgroups(&self.cgroup_root);
        flotilla_testbed::containerd::unmount_below(&self.dirs.lib);
        flotilla_testbed::containerd::unmount_below(&self.dirs.run);
    }
}

/// Removes the cgroup `root` (e.g. /fltb-1-0-node1) and everything below it, in every
/// hierarchy, deepest first; runc leaves the pod-level parents behind.
fn remove_cgroups(root: &str) {
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let top = hierarchy.path().join(root.trim_start_matches('/'));
        remove_cgroup_dir(&top);
    }
}

fn remove_cgroup_dir(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_dir(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The control plane, with kubectl helpers.
struct Cluster {
    dir: tempfile::TempDir,
    control_plane: Option<ControlPlane>,
    kubeconfig: PathBuf,
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("60")
            .arg("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .output()
            .expect("kubectl must be on PATH")
    }

    fn kubectl_ok(&self, args: &[&str]) -> anyhow::Result<String> {
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

    fn apply(&self, name: &str, manifest: &str) -> anyhow::Result<()> {
        let path = self.dir.path().join(name);
        fs::write(&path, manifest)?;
        self.kubectl_ok(&["apply", "-f", &path.to_string_lossy()])?;
        Ok(())
    }

    fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl_ok(&all)?)?)
    }
}

/// Polls `check` every 250 ms until it returns Some or `limit` passes.
async fn eventually<T>(
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

fn pod_phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

const WEB: &str = r"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: docker.io/flotilla/testapp:v1
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: unready, labels: {app: web}}
spec:
  containers:
  - name: web
    image: docker.io/flotilla/testapp:v1
    readinessProbe:
      exec: {command: [cat, /tmp/ready]}
      periodSeconds: 1
";

const UNHEALTHY: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  containers:
  - name: main
    image: docker.io/flotilla/testapp:v1
    livenessProbe:
      tcpSocket: {port: 9999}
      periodSeconds: 1
      failureThreshold: 2
";

const CRASHER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - name: crash
    image: docker.io/flotilla/testapp:v1
    command: ["sh", "-c", "echo crashing; exit 3"]
"#;

const STUBBORN: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: main
    image: docker.io/flotilla/testapp:v1
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
"#;

const MISSING: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: missing}
spec:
  containers:
  - name: main
    image: docker.io/flotilla/not-built-here:v9
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_runs_pods_on_containerd() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let mut bed = Testbed::create(TestbedConfig::nodes(1)).await?;
    let host_ip = bed.link_host().await?;
    let node = bed.node(0)?.clone();

    let dir = tempfile::Builder::new()
        .prefix("flotilla-agent-")
        .tempdir()?;
    let images = build_images(&dir.path().join("images"))?;
    eprintln!("images ready after {:?}", started.elapsed());

    // The control plane, reachable from the node over the underlay.
    let listen: std::net::SocketAddr = format!("{host_ip}:{}", free_port()?).parse()?;
    let config = Config {
        etcd_ports: (free_port()?, free_port()?),
        extra_names: vec![host_ip.to_string()],
        ..Config::new(dir.path().join("state"), listen)
    };
    let control_plane =
        tokio::time::timeout(Duration::from_secs(60), ControlPlane::start(config)).await??;
    let mut cluster = Cluster {
        kubeconfig: control_plane.kubeconfig.clone(),
        control_plane: Some(control_plane),
        dir,
    };

    // The node: containerd in its namespace, credentials from the cluster CA, the agent.
    let node_name = node.name().to_owned();
    let dirs = NodeDirs::under(&cluster.dir.path().join("node"));
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
    containerd.import(&images)?;
    let credentials = write_node_credentials(
        &cluster.dir.path().join("state/pki"),
        &node_name,
        &node.underlay_ip().to_string(),
        &format!("https://{listen}"),
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
        cluster_dns: Vec::new(),
        cluster_domain: "cluster.local".into(),
        max_pods: 110,
    };
    let mut local = LocalNode {
        dirs: dirs.clone(),
        cgroup_root,
        containerd: Some(containerd),
        agent: None,
        netns: node.netns().clone(),
        config: agent_config,
    };
    local.start_agent()?;

    // The node registers and turns Ready once containerd's CNI config is in place.
    eventually(Duration::from_secs(60), "node Ready", || {
        let node = cluster.json(&["get", "node", &node_name])?;
        let ready = node["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let untainted = node["spec"]["taints"]
            .as_array()
            .is_none_or(|taints| taints.is_empty());
        Ok((ready && untainted).then_some(()))
    })
    .await?;
    let pod_cidr = cluster.json(&["get", "node", &node_name])?["spec"]["podCIDR"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    eprintln!(
        "node Ready with podCIDR {pod_cidr} after {:?}",
        started.elapsed()
    );

    // A Deployment's pods run with IPs from the node's podCIDR.
    cluster.apply("web.yaml", WEB)?;
    let prefix = pod_cidr
        .rsplit_once('.')
        .map(|(p, _)| p.to_owned())
        .unwrap_or_default();
    let web = eventually(Duration::from_secs(60), "web pods Running", || {
        let pods = cluster.json(&["get", "pods", "-l", "app=web"])?;
        let items: Vec<Value> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["name"] != "unready")
            .cloned()
            .collect();
        let running = items.len() == 2
            && items.iter().all(|p| {
                pod_phase(p) == "Running"
                    && p["status"]["podIP"]
                        .as_str()
                        .is_some_and(|ip| ip.starts_with(&prefix))
            });
        Ok(running.then_some(items))
    })
    .await?;
    eprintln!("web pods Running after {:?}", started.elapsed());
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let container_ids: Vec<String> = web
        .iter()
        .map(|p| {
            p["status"]["containerStatuses"][0]["containerID"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    ensure!(
        container_ids
            .iter()
            .all(|id| id.starts_with("containerd://")),
        "{container_ids:?}"
    );

    // Readiness: the web pods pass their httpGet probe and serve the Service; the pod whose exec
    // probe fails stays in the EndpointSlice only as not ready.
    let unready_ip = eventually(Duration::from_secs(30), "unready pod Running", || {
        let pod = cluster.json(&["get", "pod", "unready"])?;
        Ok((pod_phase(&pod) == "Running")
            .then(|| pod["status"]["podIP"].as_str().map(str::to_owned))
            .flatten())
    })
    .await?;
    let web_ips: Vec<String> = web
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_owned))
        .collect();
    eventually(Duration::from_secs(30), "EndpointSlice readiness", || {
        let slices = cluster.json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ])?;
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for endpoint in slices["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        {
            let address = endpoint["addresses"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if endpoint["conditions"]["ready"] == true {
                ready.push(address);
            } else {
                not_ready.push(address);
            }
        }
        ready.sort();
        let mut expected = web_ips.clone();
        expected.sort();
        Ok((ready == expected && not_ready == [unready_ip.clone()]).then_some(()))
    })
    .await?;
    let unready = cluster.json(&["get", "pod", "unready"])?;
    ensure!(
        unready["status"]["containerStatuses"][0]["ready"] == false,
        "{unready}"
    );
    eprintln!(
        "readiness reflected in the EndpointSlice after {:?}",
        started.elapsed()
    );

    // A failing liveness probe restarts the container.
    cluster.apply("unhealthy.yaml", UNHEALTHY)?;
    eventually(Duration::from_secs(60), "unhealthy restarted", || {
        let pod = cluster.json(&["get", "pod", "unhealthy"])?;
        Ok((pod["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1)
            .then_some(()))
    })
    .await?;

    // A crashing container backs off and its restart count climbs.
    cluster.apply("crasher.yaml", CRASHER)?;
    let crasher = eventually(Duration::from_secs(90), "crasher restarted twice", || {
        let pod = cluster.json(&["get", "pod", "crasher"])?;
        let status = &pod["status"]["containerStatuses"][0];
        Ok((status["restartCount"].as_i64().unwrap_or(0) >= 2).then_some(pod))
    })
    .await?;
    let status = &crasher["status"]["containerStatuses"][0];
    ensure!(
        status["lastState"]["terminated"]["exitCode"] == 3,
        "last state should show exit code 3: {status}"
    );
    eventually(Duration::from_secs(30), "CrashLoopBackOff shown", || {
        let pod = cluster.json(&["get", "pod", "crasher"])?;
        Ok(
            (pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "CrashLoopBackOff")
                .then_some(()),
        )
    })
    .await?;
    eprintln!("crash loop seen after {:?}", started.elapsed());

    // An image that is not there: ErrImagePull, then ImagePullBackOff, with the image named.
    cluster.apply("missing.yaml", MISSING)?;
    let waiting = eventually(Duration::from_secs(60), "missing image reported", || {
        let pod = cluster.json(&["get", "pod", "missing"])?;
        let waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        Ok(matches!(
            waiting["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
        .then_some(waiting))
    })
    .await?;
    ensure!(
        waiting["message"]
            .as_str()
            .is_some_and(|m| m.contains("docker.io/flotilla/not-built-here:v9")),
        "{waiting}"
    );

    // Deletion kills a container that ignores SIGTERM within its 3 s grace period.
    cluster.apply("stubborn.yaml", STUBBORN)?;
    eventually(Duration::from_secs(60), "stubborn Running", || {
        Ok((pod_phase(&cluster.json(&["get", "pod", "stubborn"])?) == "Running").then_some(()))
    })
    .await?;
    let deleting = Instant::now();
    cluster.kubectl_ok(&["delete", "pod", "stubborn", "--wait=true", "--timeout=60s"])?;
    let took = deleting.elapsed();
    ensure!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "deleting a pod with a 3 s grace period took {took:?}"
    );
    eprintln!("stubborn pod deleted in {took:?}");

    // An agent restart re-adopts the running containers instead of restarting them.
    local.stop_agent()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    local.start_agent()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = cluster.json(&["get", "pods", "-l", "app=web"])?;
    let ids_after: Vec<String> = after["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["name"] != "unready")
        .map(|p| {
            p["status"]["containerStatuses"][0]["containerID"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    ensure!(
        ids_after == container_ids,
        "containers changed across an agent restart: {container_ids:?} -> {ids_after:?}"
    );
    for pod in after["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["name"] != "unready")
    {
        ensure!(pod_phase(pod) == "Running", "{pod}");
        ensure!(
            pod["status"]["containerStatuses"][0]["restartCount"] == 0,
            "{pod}"
        );
    }
    eprintln!(
        "agent restart kept the containers, after {:?}",
        started.elapsed()
    );

    // Deleting the Deployment removes its pods and their containers from containerd.
    cluster.kubectl_ok(&[
        "delete",
        "deployment",
        "web",
        "--wait=true",
        "--timeout=60s",
    ])?;
    cluster.kubectl_ok(&[
        "delete",
        "pod",
        "crasher",
        "missing",
        "unready",
        "unhealthy",
        "--wait=true",
        "--timeout=60s",
    ])?;
    eventually(Duration::from_secs(60), "pods gone", || {
        let pods = cluster.json(&["get", "pods"])?;
        let left: Vec<String> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{} {} deleting={}",
                    p["metadata"]["name"],
                    pod_phase(p),
                    p["metadata"]["deletionTimestamp"]
                )
            })
            .collect();
        if left.is_empty() {
            Ok(Some(()))
        } else {
            Err(anyhow::anyhow!("left: {left:?}"))
        }
    })
    .await?;
    drop(local);
    if let Some(control_plane) = cluster.control_plane.take() {
        control_plane.stop().await;
    }
    drop(bed);
    Ok(())
}
