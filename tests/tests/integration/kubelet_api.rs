//! Privileged end-to-end test of the agent's kubelet API and the API server's pods/log,
//! pods/exec and pods/portforward: the real kubectl talks to an in-process control plane, which
//! proxies over mTLS to the agent's kubelet API server, which reads CRI log files and proxies
//! exec and port-forward to a real containerd's streaming server.
//!
//! Streams are exercised under every installed kubectl (1.27 to 1.33), so with both protocols
//! kubectl has spoken: 1.31+ (WebSocket: exec, attach and cp over `v5.channel.k8s.io`, which the
//! API server translates to SPDY; port-forward as SPDY tunnelled over WebSocket; 1.30 exec only)
//! must not need their SPDY fallback, and the SPDY-only ones must keep working. A client written here that speaks only WebSocket checks the v5
//! protocol itself: stdin, its close signal, exit codes, malformed input.
//!
//! containerd runs inside a network namespace the test creates (never the host's), with a pod
//! sandbox in the node network mode (no CNI needed: the pod shares that namespace). Like the real
//! agent, which runs inside its node's namespace, the kubelet API server's tasks run on a runtime
//! whose threads entered that namespace, so containerd's streaming server on 127.0.0.1 is the
//! namespace's loopback. Only its listening socket is created in the host namespace, so the API
//! server (and kubectl) on the host can reach it. Containers, sandbox, containerd, shims, the
//! namespace, the control plane and the temp dir are removed by guards, also when an assertion
//! fails. Every wait is bounded.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::support;
use anyhow::{Context as _, ensure};
use flotilla_agent::{
    pods::{
        containerd::{NodeDirs, config_toml},
        cri::{Cri, api},
    },
    server::{self, ContainerLocator, LocateError, auth::Authorize, tls::TlsFiles},
};
use flotilla_controlplane::{
    auth::pki::Pki,
    etcd::free_port,
    run::{Config, ControlPlane},
};
use flotilla_testbed::{Netlink, Netns, containerd::Containerd, unique_prefix};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test starts containerd and creates network namespaces, so it needs root"
    );
}

const TESTAPP: &str = "docker.io/flotilla/testapp:v1";

/// The node: a namespace with containerd in it. Fields drop in order: containerd (and its shims,
/// mounts) first, then the namespace, then the files.
struct Node {
    containerd: Containerd,
    netns: NetnsGuard,
    dirs: NodeDirs,
    _dir: tempfile::TempDir,
}

struct NetnsGuard(Netns);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(err) = self.0.delete() {
            eprintln!("removing network namespace {}: {err}", self.0.name());
        }
    }
}

impl Node {
    async fn start() -> anyhow::Result<Self> {
        let dir = flotilla_testbed::run_dir("kubelet-api")?;
        let dirs = NodeDirs::under(dir.path());
        for sub in dirs.all() {
            std::fs::create_dir_all(&sub)?;
        }
        std::fs::write(dirs.containerd_config(), config_toml(&dirs))?;
        let netns = NetnsGuard(Netns::create(&format!("{}kapi", unique_prefix()))?);
        Netlink::connect(&netns.0)?.set_up("lo").await?;
        let containerd = Containerd::start(
            &dirs.containerd_config(),
            &dirs.containerd_socket(),
            &dir.path().join("containerd.log"),
            vec![dirs.lib.clone(), dirs.run.clone()],
            Some(&netns.0),
            Duration::from_secs(30),
        )?;
        let images = support::test_images()?;
        containerd.import(&images)?;
        Ok(Self {
            containerd,
            netns,
            dirs,
            _dir: dir,
        })
    }
}

/// A pod sandbox in the node's network namespace and its containers, as CRI ids.
#[derive(Debug, Default, Clone)]
struct Pod {
    sandbox: String,
    containers: HashMap<String, String>,
}

impl Pod {
    async fn run(
        cri: &Cri,
        dirs: &NodeDirs,
        name: &str,
        containers: &[(&str, Vec<String>, bool)],
    ) -> anyhow::Result<Self> {
        let log_directory = dirs.pod_logs().join(format!("default_{name}_uid-{name}"));
        let sandbox_config = api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            // The node network mode shares the node's UTS namespace: no hostname of its own.
            log_directory: log_directory.to_string_lossy().into_owned(),
            linux: Some(api::LinuxPodSandboxConfig {
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(api::NamespaceOption {
                        network: api::NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut runtime = cri.runtime.clone();
        let sandbox = runtime
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .map_err(|status| anyhow::anyhow!("RunPodSandbox: {status:?}"))?
            .into_inner()
            .pod_sandbox_id;
        let mut pod = Self {
            sandbox,
            containers: HashMap::new(),
        };
        for (container, command, stdin_once) in containers {
            let id = runtime
                .create_container(api::CreateContainerRequest {
                    pod_sandbox_id: pod.sandbox.clone(),
                    config: Some(api::ContainerConfig {
                        metadata: Some(api::ContainerMetadata {
                            name: (*container).into(),
                            attempt: 0,
                        }),
                        image: Some(api::ImageSpec {
                            image: TESTAPP.into(),
                            ..Default::default()
                        }),
                        command: command.clone(),
                        log_path: format!("{container}/0.log"),
                        stdin: true,
                        stdin_once: *stdin_once,
                        ..Default::default()
                    }),
                    sandbox_config: Some(sandbox_config.clone()),
                })
                .await
                .map_err(|status| anyhow::anyhow!("CreateContainer {container}: {status:?}"))?
                .into_inner()
                .container_id;
            runtime
                .start_container(api::StartContainerRequest {
                    container_id: id.clone(),
                })
                .await
                .map_err(|status| anyhow::anyhow!("StartContainer {container}: {status:?}"))?;
            pod.containers.insert((*container).to_owned(), id);
        }
        Ok(pod)
    }

    /// Stops and removes the containers and the sandbox (best effort, bounded by CRI's timeout).
    async fn remove(&self, cri: &Cri) {
        let mut runtime = cri.runtime.clone();
        for id in self.containers.values() {
            let _ = runtime
                .stop_container(api::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 1,
                })
                .await;
            let _ = runtime
                .remove_container(api::RemoveContainerRequest {
                    container_id: id.clone(),
                })
                .await;
        }
        let _ = runtime
            .stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: self.sandbox.clone(),
            })
            .await;
        let _ = runtime
            .remove_pod_sandbox(api::RemovePodSandboxRequest {
                pod_sandbox_id: self.sandbox.clone(),
            })
            .await;
    }
}

/// The pod manager's part, played from a fixed table: pod name -> Pod.
struct Table(HashMap<String, Pod>);

impl ContainerLocator for Table {
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<String, LocateError> {
        let found = self
            .0
            .get(pod)
            .filter(|_| namespace == "default")
            .ok_or_else(|| LocateError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            })?;
        let id = found
            .containers
            .get(container)
            .ok_or_else(|| LocateError::ContainerNotFound {
                pod: pod.into(),
                container: container.into(),
            })?;
        if previous {
            return Err(LocateError::NoPrevious {
                pod: pod.into(),
                container: container.into(),
            });
        }
        Ok(id.clone())
    }

    fn sandbox(&self, namespace: &str, pod: &str) -> Result<String, LocateError> {
        self.0
            .get(pod)
            .filter(|_| namespace == "default")
            .map(|p| p.sandbox.clone())
            .ok_or_else(|| LocateError::PodNotFound {
                namespace: namespace.into(),
                pod: pod.into(),
            })
    }
}

/// Asks `reviews` on the host's runtime: the agent's runtime lives in the node's namespace,
/// which cannot reach the API server on the host's loopback.
struct OnHost {
    reviews: Arc<server::auth::SubjectAccessReviews>,
    host: tokio::runtime::Handle,
}

impl Authorize for OnHost {
    fn allowed<'a>(
        &'a self,
        caller: &'a server::auth::Caller,
        asked: &'a server::auth::Asked,
    ) -> futures::future::BoxFuture<'a, Result<bool, String>> {
        let (reviews, caller, asked) = (self.reviews.clone(), caller.clone(), asked.clone());
        let answer = self
            .host
            .spawn(async move { reviews.allowed(&caller, &asked).await });
        Box::pin(async move { answer.await.map_err(|err| err.to_string())? })
    }
}

/// The kubelet API server on its own runtime inside the node's namespace; stopped on drop.
struct Agent {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Agent {
    fn start(
        netns: &Netns,
        socket: PathBuf,
        tls: Arc<rustls::ServerConfig>,
        locator: Arc<dyn ContainerLocator>,
        authorizer: Arc<dyn Authorize>,
    ) -> anyhow::Result<Self> {
        // Bound in the host namespace (where the API server is); the runtime below makes every
        // outgoing connection from the node's namespace.
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let netns = netns.clone();
        let thread = std::thread::spawn(move || {
            let result = netns.run(move || -> anyhow::Result<()> {
                // Threads inherit the namespace of the thread that creates them, so every
                // worker of this runtime lives in the node's namespace.
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    let cri = Cri::connect(&socket)?;
                    tokio::select! {
                        served = server::serve(listener, tls, cri, locator, authorizer) => served?,
                        _ = stopped => {}
                    }
                    anyhow::Ok(())
                })?;
                runtime.shutdown_timeout(Duration::from_secs(5));
                Ok(())
            });
            match result {
                Ok(Ok(())) => {}
                Ok(Err(err)) => eprintln!("kubelet API server failed: {err:#}"),
                Err(err) => eprintln!("kubelet API server thread: {err}"),
            }
        });
        Ok(Self {
            port,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A control plane in this process and its files (its tasks and etcd end with the test's
/// runtime).
struct Cluster {
    control_plane: ControlPlane,
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> anyhow::Result<Self> {
        let dir = flotilla_testbed::run_dir("kubelet-api-cp")?;
        let config = Config {
            etcd_ports: (free_port()?, free_port()?),
            ..Config::new(
                dir.path().join("state"),
                format!("127.0.0.1:{}", free_port()?).parse()?,
            )
        };
        let control_plane =
            tokio::time::timeout(Duration::from_secs(60), ControlPlane::start(config)).await??;
        Ok(Self { control_plane, dir })
    }

    fn pki(&self) -> PathBuf {
        self.dir.path().join("state/pki")
    }

    fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    fn kubectl_command(&self, args: &[&str]) -> Command {
        self.kubectl_binary_command("kubectl", args)
    }

    /// `binary` (a path, or a name on PATH) with `args`, bounded to 60 s.
    fn kubectl_binary_command(&self, binary: &str, args: &[&str]) -> Command {
        let mut command = Command::new("timeout");
        command
            .arg("60")
            .arg(binary)
            .args(args)
            .env("KUBECONFIG", &self.control_plane().kubeconfig);
        command
    }

    fn kubectl(&self, args: &[&str], input: Option<&str>) -> Output {
        self.kubectl_binary("kubectl", args, input.map(str::as_bytes))
    }

    fn kubectl_binary(&self, binary: &str, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut child = self
            .kubectl_binary_command(binary, args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl must be on PATH");
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            // Written from a thread: kubectl may answer before it has read everything.
            let input = input.to_vec();
            std::thread::spawn(move || stdin.write_all(&input));
        }
        child.wait_with_output().unwrap()
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args, None);
        assert!(
            output.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn kubectl_err(&self, args: &[&str]) -> String {
        let output = self.kubectl(args, None);
        assert!(
            !output.status.success(),
            "kubectl {} should have failed but printed {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    fn apply(&self, name: &str, manifest: &str) {
        let path = self.dir.path().join(name);
        std::fs::write(&path, manifest).unwrap();
        self.kubectl_ok(&["create", "-f", &path.to_string_lossy()]);
    }

    fn bind(&self, pod: &str, node: &str) {
        let cp = self.control_plane();
        let output = Command::new("curl")
            .args(["-sk", "--max-time", "10", "-X", "POST", "-H"])
            .arg(format!("Authorization: Bearer {}", cp.admin_token))
            .args(["-H", "Content-Type: application/json", "-d"])
            .arg(format!(r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{pod}"}},"target":{{"kind":"Node","name":"{node}"}}}}"#))
            .arg(format!("https://{}/api/v1/namespaces/default/pods/{pod}/binding", cp.address))
            .output()
            .unwrap();
        let answer = String::from_utf8_lossy(&output.stdout);
        assert!(answer.contains("\"Success\""), "{answer}");
    }
}

/// A child process killed on drop (kubectl port-forward).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_manifest(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nspec:\n  taints: [{{key: node.kubernetes.io/not-ready, effect: NoSchedule}}]\nstatus:\n  conditions: [{{type: Ready, status: \"False\"}}]\n  addresses: [{{type: InternalIP, address: 127.0.0.1}}]\n  daemonEndpoints: {{kubeletEndpoint: {{Port: {port}}}}}\n"
    )
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec:\n  containers:\n  - {name: web, image: flotilla/testapp:v1}\n  - {name: counter, image: flotilla/testapp:v1}\n  - {name: catter, image: flotilla/testapp:v1}\n";

/// Waits up to `timeout` for `check` to return Some.
async fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        ensure!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_logs_exec_and_port_forward_reach_containerd() -> anyhow::Result<()> {
    require_root();
    // A run killed before its guards ran leaves its namespace (with containerd and shims in it).
    flotilla_testbed::sweep_stale()?;
    let cluster = Cluster::start().await?;
    let node = Node::start().await?;
    let cri = Cri::connect(&node.dirs.containerd_socket())?;

    // The agent's certificate from the cluster CA, in kubelet-style files.
    let pki = cluster.pki();
    let ca_cert = std::fs::read_to_string(pki.join("ca.crt"))?;
    let ca_key = std::fs::read_to_string(pki.join("ca.key"))?;
    let (cert, key) = Pki::issue_with(&ca_cert, &ca_key, "node-1", &["127.0.0.1".into()], true)?;
    let files = TlsFiles {
        cert: cluster.dir.path().join("kubelet.crt"),
        key: cluster.dir.path().join("kubelet.key"),
        client_ca: pki.join("ca.crt"),
    };
    std::fs::write(&files.cert, cert)?;
    std::fs::write(&files.key, key)?;
    let tls = server::tls::server_config(&files)?;

    // stdout and stderr reach containerd through separate pipes, so lines written back to back
    // on both may be logged in either order: the sleeps keep the expected order certain.
    let counter = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        "sleep 3; for i in 1 2 3 4 5; do echo line $i; sleep 0.3; done; echo to-stderr >&2; sleep 0.3; echo last"
            .to_owned(),
    ];
    let pod = match Pod::run(
        &cri,
        &node.dirs,
        "p",
        &[
            ("web", Vec::new(), false),
            ("counter", counter, false),
            // Reads what an attached client sends; ends when that client closes stdin.
            ("catter", vec!["cat".to_owned()], true),
        ],
    )
    .await
    {
        Ok(pod) => pod,
        Err(err) => {
            eprintln!("containerd's log:\n{}", node.containerd.log());
            return Err(err);
        }
    };
    let result = exercise(&cluster, &node, &cri, &pod, tls).await;
    pod.remove(&cri).await;
    if result.is_err() {
        eprintln!("containerd's log:\n{}", node.containerd.log());
    }
    result
}

async fn exercise(
    cluster: &Cluster,
    node: &Node,
    cri: &Cri,
    pod: &Pod,
    tls: Arc<rustls::ServerConfig>,
) -> anyhow::Result<()> {
    let locator = Arc::new(Table(HashMap::from([("p".to_owned(), pod.clone())])));
    // The agent asks the API server about each caller, as the real agent does.
    let reviews = server::auth::SubjectAccessReviews::new(
        support::client(&cluster.control_plane().kubeconfig).await?,
        "node-1",
    );
    let authorizer = Arc::new(OnHost {
        reviews: Arc::new(reviews),
        host: tokio::runtime::Handle::current(),
    });
    let agent = Agent::start(
        &node.netns.0,
        node.dirs.containerd_socket(),
        tls,
        locator,
        authorizer,
    )?;

    // The agent requires a client certificate from the cluster CA.
    let healthz = format!("https://127.0.0.1:{}/healthz", agent.port);
    let anonymous = Command::new("curl")
        .args(["-sk", "--max-time", "5", &healthz])
        .output()?;
    ensure!(
        !anonymous.status.success(),
        "the agent answered without a client certificate: {}",
        String::from_utf8_lossy(&anonymous.stdout)
    );
    let pki = cluster.pki();
    let with_cert = Command::new("curl")
        .args(["-s", "--max-time", "5", "--cacert"])
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("apiserver-kubelet-client.crt"))
        .arg("--key")
        .arg(pki.join("apiserver-kubelet-client.key"))
        .arg(&healthz)
        .output()?;
    ensure!(
        String::from_utf8_lossy(&with_cert.stdout) == "ok",
        "healthz with the kubelet-client certificate: {with_cert:?}"
    );
    // A node's own certificate from the same CA is authenticated but not authorized.
    let node_credentials = flotilla_controlplane::auth::node::write_node_credentials(
        &pki,
        "node-x",
        "127.0.0.1",
        "https://127.0.0.1:1",
        &cluster.dir.path().join("node-x"),
    )?;
    let kubeconfig = std::fs::read_to_string(&node_credentials.kubeconfig)?;
    let decode = |field: &str| -> anyhow::Result<Vec<u8>> {
        use base64::Engine as _;
        let value = kubeconfig
            .lines()
            .find_map(|line| line.trim().strip_prefix(&format!("{field}: ")))
            .unwrap_or_default();
        Ok(base64::engine::general_purpose::STANDARD.decode(value)?)
    };
    let node_dir = cluster.dir.path().join("node-x");
    std::fs::write(
        node_dir.join("client.crt"),
        decode("client-certificate-data")?,
    )?;
    std::fs::write(node_dir.join("client.key"), decode("client-key-data")?)?;
    let as_node = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            "--cacert",
        ])
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(node_dir.join("client.crt"))
        .arg("--key")
        .arg(node_dir.join("client.key"))
        .arg(&healthz)
        .output()?;
    ensure!(
        String::from_utf8_lossy(&as_node.stdout) == "403",
        "a node certificate must be refused with 403: {as_node:?}"
    );

    cluster.apply("node.yaml", &node_manifest("node-1", agent.port));
    cluster.apply("pod.yaml", POD);
    cluster.apply("ghost.yaml", &POD.replace("name: p,", "name: ghost,"));
    cluster.bind("p", "node-1");
    cluster.bind("ghost", "node-1");
    // What the pod manager will report; kubectl port-forward checks it before connecting.
    cluster.kubectl_ok(&[
        "patch",
        "pod",
        "p",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running"}}"#,
    ]);

    // Follow a running container: lines arrive as written, and the stream ends once it exits.
    let counter_id = pod.containers["counter"].clone();
    let mut runtime = cri.runtime.clone();
    let follow = cluster
        .kubectl_command(&["logs", "-f", "p", "-c", "counter"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let follow = std::thread::spawn(move || follow.wait_with_output());
    let state = runtime
        .container_status(api::ContainerStatusRequest {
            container_id: counter_id.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("no status")?
        .state;
    ensure!(
        state == api::ContainerState::ContainerRunning as i32,
        "the counter should still run while its log is followed (state {state})"
    );

    // Logs: the counter's lines once it has exited, tail, timestamps, follow to the end.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = runtime
            .container_status(api::ContainerStatusRequest {
                container_id: counter_id.clone(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")?;
        if status.state == api::ContainerState::ContainerExited as i32 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the counter did not exit: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = cluster.kubectl_ok(&["logs", "p", "-c", "counter"]);
    let followed_live = follow
        .join()
        .map_err(|_| anyhow::anyhow!("the follow thread panicked"))??;
    assert!(followed_live.status.success(), "{followed_live:?}");
    assert_eq!(String::from_utf8_lossy(&followed_live.stdout), all);
    assert_eq!(
        all,
        "line 1\nline 2\nline 3\nline 4\nline 5\nto-stderr\nlast\n"
    );
    let tail = cluster.kubectl_ok(&["logs", "p", "-c", "counter", "--tail=2"]);
    assert_eq!(tail, "to-stderr\nlast\n");
    let stamped = cluster.kubectl_ok(&["logs", "p", "-c", "counter", "--tail=1", "--timestamps"]);
    let (stamp, line) = stamped.split_once(' ').context("no timestamp")?;
    assert!(stamp.parse::<jiff::Timestamp>().is_ok(), "{stamped}");
    assert_eq!(line, "last\n");
    let limited = cluster.kubectl_ok(&["logs", "p", "-c", "counter", "--limit-bytes=10"]);
    assert_eq!(limited, "line 1\nlin");
    // Following an exited container drains the file and ends.
    let followed = cluster.kubectl_ok(&["logs", "-f", "p", "-c", "counter"]);
    assert_eq!(followed, all);
    let since = cluster.kubectl_ok(&["logs", "p", "-c", "counter", "--since=1h"]);
    assert_eq!(since, all);

    // Following a container that never exits stops when the client goes away: the API server's
    // connection to the agent closes, the agent closes its end too (a socket left in CLOSE-WAIT
    // would mean it still streams to nobody), and its follow task ends, closing the log file
    // (the agent runs in this process, so its open files are ours).
    let web_log = node
        .dirs
        .pod_logs()
        .join("default_p_uid-p/web/0.log")
        .canonicalize()?;
    let open_web_logs = || {
        std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == web_log))
            .count()
    };
    let agent_connections = || {
        let output = Command::new("ss")
            .args(["-Htn", "state", "established", "state", "close-wait"])
            .arg(format!(
                "( sport = :{port} or dport = :{port} )",
                port = agent.port
            ))
            .output()
            .ok()?;
        Some(String::from_utf8_lossy(&output.stdout).lines().count())
    };
    let mut endless = Killed(
        Command::new("kubectl")
            .args(["logs", "-f", "p", "-c", "web"])
            .env("KUBECONFIG", &cluster.control_plane().kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for(
        Duration::from_secs(10),
        "the followed log's connection",
        || agent_connections().filter(|n| *n > 0),
    )
    .await?;
    wait_for(
        Duration::from_secs(10),
        "the agent to open the followed log",
        || Some(open_web_logs()).filter(|n| *n > 0),
    )
    .await?;
    endless.0.kill()?;
    endless.0.wait()?;
    wait_for(
        Duration::from_secs(10),
        "the agent connection to close after the client left",
        || agent_connections().filter(|n| *n == 0),
    )
    .await?;
    wait_for(
        Duration::from_secs(10),
        "the agent to stop following the log after the client left",
        || Some(open_web_logs()).filter(|n| *n == 0),
    )
    .await?;

    // Logs errors: the locator's (kubelet's) messages with their codes.
    let err = cluster.kubectl_err(&["logs", "ghost", "-c", "web"]);
    assert!(
        err.contains("pod default/ghost not found on this node"),
        "{err}"
    );
    let err = cluster.kubectl_err(&["logs", "p", "-c", "web", "--previous"]);
    assert!(
        err.contains("previous terminated container \"web\" in pod \"p\" not found"),
        "{err}"
    );

    // Exec: output, exit codes, stdin, -it without a terminal.
    let out = cluster.kubectl_ok(&["exec", "p", "-c", "web", "--", "echo", "hello", "world"]);
    assert_eq!(out, "hello world\n");
    let exit = cluster.kubectl(
        &["exec", "p", "-c", "web", "--", "sh", "-c", "exit 3"],
        None,
    );
    assert_eq!(exit.status.code(), Some(3), "{exit:?}");
    let stderr = cluster.kubectl(
        &["exec", "p", "-c", "web", "--", "sh", "-c", "echo oops >&2"],
        None,
    );
    assert_eq!(String::from_utf8_lossy(&stderr.stderr), "oops\n");
    let cat = cluster.kubectl(
        &["exec", "-i", "p", "-c", "web", "--", "cat"],
        Some("hi\nthere\n"),
    );
    assert!(cat.status.success(), "{cat:?}");
    assert_eq!(String::from_utf8_lossy(&cat.stdout), "hi\nthere\n");
    let tty = cluster.kubectl(
        &["exec", "-it", "p", "-c", "web", "--", "echo", "tty"],
        Some(""),
    );
    assert!(tty.status.success(), "{tty:?}");
    assert_eq!(String::from_utf8_lossy(&tty.stdout).trim(), "tty");
    // With a real terminal (script(1) gives kubectl a pseudo-terminal) the container gets one
    // too, and the exit code still comes back. `timeout --foreground` keeps kubectl in the
    // terminal's foreground process group, where it may switch the terminal to raw mode.
    let kubectl_in_terminal = "timeout --foreground 60 kubectl exec -it p -c web -- sh -c 'tty; exit 4'; \
         echo kubectl-exit=$?";
    let terminal = Command::new("script")
        .args(["-q", "-e", "-c", kubectl_in_terminal, "/dev/null"])
        .env("KUBECONFIG", &cluster.control_plane().kubeconfig)
        .stdin(Stdio::null())
        .output()?;
    let shown = String::from_utf8_lossy(&terminal.stdout);
    assert!(shown.contains("/dev/pts/"), "{terminal:?}");
    assert!(shown.contains("kubectl-exit=4"), "{terminal:?}");

    // Exec errors.
    let err = cluster.kubectl_err(&["exec", "p", "-c", "nope", "--", "ls"]);
    assert!(
        err.contains("container nope is not valid for pod p"),
        "{err}"
    );
    let err = cluster.kubectl_err(&["exec", "ghost", "-c", "web", "--", "ls"]);
    assert!(
        err.contains("pod default/ghost not found on this node"),
        "{err}"
    );

    // Attach: stdin reaches the container's process, its output comes back, and closing stdin
    // ends it (the container was created with stdin_once).
    let attached = cluster.kubectl(&["attach", "-i", "p", "-c", "catter"], Some("attached\n"));
    assert!(attached.status.success(), "{attached:?}");
    assert_eq!(String::from_utf8_lossy(&attached.stdout), "attached\n");

    // A node whose agent does not answer: a clear 503 naming the node and address.
    let dead_port = free_port()?;
    cluster.apply("node2.yaml", &node_manifest("node-2", dead_port));
    cluster.apply("q.yaml", &POD.replace("name: p,", "name: q,"));
    cluster.bind("q", "node-2");
    let err = cluster.kubectl_err(&["exec", "q", "-c", "web", "--", "ls"]);
    assert!(
        err.contains(&format!(
            "cannot reach the agent of node node-2 at 127.0.0.1:{dead_port} for exec of pod q"
        )),
        "{err}"
    );

    // Port-forward: a local port on the host reaches the testapp's HTTP port in the pod.
    port_forward_healthz(cluster, "kubectl").await?;

    // The streaming protocols themselves, then each kubectl generation.
    websocket_only_client(cluster).await?;
    for minor in 27..=33 {
        // kubectl speaks WebSocket first for exec from 1.30 and for port-forward from 1.31
        // (their feature gates' beta defaults); older ones speak SPDY.
        let speaks = WebSocketFirst {
            exec: minor >= 30,
            port_forward: minor >= 31,
        };
        kubectl_streams(cluster, &format!("1.{minor}"), speaks).await?;
    }
    drop(agent);
    Ok(())
}

/// `kubectl port-forward` with `binary` to the testapp's port 8080, one HTTP request through
/// it; returns kubectl's log (at -v=4, which shows the protocol and any fallback).
async fn port_forward_healthz(cluster: &Cluster, binary: &str) -> anyhow::Result<String> {
    let local = free_port()?;
    let forward_log = cluster.dir.path().join("port-forward.err");
    let mut forward = Killed(
        cluster
            .kubectl_binary_command(
                binary,
                &["port-forward", "pod/p", &format!("{local}:8080"), "-v=4"],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&forward_log)?)
            .spawn()?,
    );
    let forward_stderr = || std::fs::read_to_string(&forward_log).unwrap_or_default();
    let stdout = forward.0.stdout.take().context("no stdout")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("Forwarding from") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| {
            anyhow::anyhow!(
                "{binary} port-forward did not start forwarding: {}",
                forward_stderr()
            )
        })?;
    let answer = wait_for(
        Duration::from_secs(10),
        "an HTTP answer through port-forward",
        || {
            let mut stream = TcpStream::connect(("127.0.0.1", local)).ok()?;
            stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
                .ok()?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).ok()?;
            answer.starts_with("HTTP/1.1 200").then_some(answer)
        },
    )
    .await
    .with_context(forward_stderr)?;
    ensure!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer}\n{}",
        forward_stderr()
    );
    drop(forward);
    Ok(forward_stderr())
}

/// The directory of the installed kubectl versions (`kubectl.1.27` ... `kubectl.1.33`).
fn kubectl_versions_dir() -> anyhow::Result<PathBuf> {
    let kubectl = which::which("kubectl").context("kubectl must be on PATH")?;
    let real = kubectl.canonicalize()?;
    Ok(real
        .parent()
        .context("kubectl has no directory")?
        .to_path_buf())
}

/// Which streams a kubectl version opens over WebSocket first (and must not fall back to SPDY).
#[derive(Clone, Copy)]
struct WebSocketFirst {
    exec: bool,
    port_forward: bool,
}

/// exec (output, exit code, stdin past SPDY's 64 KiB window), exec -it in a terminal (its size
/// reaches the container), port-forward, logs -f and cp both ways with kubectl `version`.
async fn kubectl_streams(
    cluster: &Cluster,
    version: &str,
    speaks: WebSocketFirst,
) -> anyhow::Result<()> {
    let binary = kubectl_versions_dir()?.join(format!("kubectl.{version}"));
    let binary = binary.to_str().context("kubectl path")?.to_owned();
    let run = |args: &[&str], input: Option<&[u8]>| cluster.kubectl_binary(&binary, args, input);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    // kubectl logs the negotiated protocol, and any fallback to SPDY, at -v=4.
    let no_fallback = |what: &str, log: &str| -> anyhow::Result<()> {
        let websocket = if what == "port-forward" {
            speaks.port_forward
        } else {
            speaks.exec
        };
        if websocket {
            ensure!(
                !log.to_lowercase().contains("fallback"),
                "kubectl {version} {what} fell back to SPDY:\n{log}"
            );
        }
        Ok(())
    };

    let echo = run(
        &[
            "exec", "-v=4", "p", "-c", "web", "--", "echo", "hello", version,
        ],
        None,
    );
    ensure!(echo.status.success(), "kubectl {version} exec: {echo:?}");
    assert_eq!(text(&echo.stdout), format!("hello {version}\n"));
    let log = text(&echo.stderr);
    no_fallback("exec", &log)?;
    if speaks.exec {
        ensure!(
            log.contains("The subprotocol is v5.channel.k8s.io"),
            "kubectl {version} exec did not use WebSocket v5:\n{log}"
        );
    }

    let exit = run(
        &[
            "exec",
            "-v=4",
            "p",
            "-c",
            "web",
            "--",
            "sh",
            "-c",
            "echo oops >&2; exit 3",
        ],
        None,
    );
    assert_eq!(exit.status.code(), Some(3), "kubectl {version}: {exit:?}");
    assert!(text(&exit.stderr).contains("oops\n"), "{exit:?}");
    no_fallback("exec", &text(&exit.stderr))?;

    // More stdin than SPDY's initial window; it ends because closing stdin reaches `cat`.
    let input: Vec<u8> = (0..40_000)
        .flat_map(|i| format!("line {i}\n").into_bytes())
        .collect();
    let cat = run(
        &["exec", "-v=4", "-i", "p", "-c", "web", "--", "cat"],
        Some(&input),
    );
    ensure!(
        cat.status.success(),
        "kubectl {version} exec -i cat: {}",
        text(&cat.stderr)
    );
    ensure!(
        cat.stdout == input,
        "kubectl {version} exec -i cat returned {} of {} bytes",
        cat.stdout.len(),
        input.len()
    );
    no_fallback("exec -i", &text(&cat.stderr))?;

    // A terminal (script(1) gives kubectl one) of a known size: kubectl sends the size on the
    // resize channel, and the container's terminal has it.
    let in_terminal = format!(
        "stty cols 123 rows 45; timeout --foreground 60 {binary} exec -it p -c web -- \
         sh -c 'sleep 1; stty size; tty; exit 4'; echo kubectl-exit=$?"
    );
    let terminal = Command::new("script")
        .args(["-q", "-e", "-c", &in_terminal, "/dev/null"])
        .env("KUBECONFIG", &cluster.control_plane().kubeconfig)
        .stdin(Stdio::null())
        .output()?;
    let shown = text(&terminal.stdout);
    ensure!(
        shown.contains("45 123"),
        "kubectl {version} exec -it: the size did not arrive: {terminal:?}"
    );
    ensure!(
        shown.contains("/dev/pts/"),
        "kubectl {version} exec -it: {terminal:?}"
    );
    ensure!(
        shown.contains("kubectl-exit=4"),
        "kubectl {version} exec -it: {terminal:?}"
    );

    let log = port_forward_healthz(cluster, &binary).await?;
    no_fallback("port-forward", &log)?;
    if speaks.port_forward {
        ensure!(
            log.contains("Before WebSocket Upgrade Connection")
                && log.contains("negotiated protocol: portforward.k8s.io"),
            "kubectl {version} port-forward did not tunnel SPDY over WebSocket:\n{log}"
        );
    }

    // logs -f of the exited counter container drains its file and ends.
    let followed = run(&["logs", "-f", "p", "-c", "counter"], None);
    ensure!(
        followed.status.success() && text(&followed.stdout).ends_with("last\n"),
        "kubectl {version} logs -f: {followed:?}"
    );

    // cp runs tar through exec: into the pod it needs stdin's end to reach tar.
    let local = cluster.dir.path().join(format!("cp-{version}.txt"));
    let content: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("{version} {i}\n").into_bytes())
        .collect();
    std::fs::write(&local, &content)?;
    let remote = format!("p:/tmp/cp-{version}.txt");
    let local_str = local.to_str().context("path")?;
    let to_pod = run(&["cp", "-c", "web", local_str, &remote], None);
    ensure!(
        to_pod.status.success(),
        "kubectl {version} cp to the pod: {to_pod:?}"
    );
    let size = run(
        &[
            "exec",
            "p",
            "-c",
            "web",
            "--",
            "wc",
            "-c",
            &format!("/tmp/cp-{version}.txt"),
        ],
        None,
    );
    ensure!(
        text(&size.stdout).split_whitespace().next() == Some(&content.len().to_string()),
        "kubectl {version} cp wrote {:?}, not {} bytes",
        text(&size.stdout),
        content.len()
    );
    let back = cluster.dir.path().join(format!("cp-{version}-back.txt"));
    let from_pod = run(
        &["cp", "-c", "web", &remote, back.to_str().context("path")?],
        None,
    );
    ensure!(
        from_pod.status.success(),
        "kubectl {version} cp from the pod: {from_pod:?}"
    );
    ensure!(
        std::fs::read(&back)? == content,
        "kubectl {version} cp from the pod changed the file"
    );
    Ok(())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;
type Refusal = http::Response<Option<Vec<u8>>>;

/// Opens a WebSocket to the API server's `path` offering only `protocol`, as the admin; the
/// socket and the subprotocol chosen, or the answer that refused the upgrade.
async fn websocket(
    cluster: &Cluster,
    path: &str,
    protocol: &str,
) -> anyhow::Result<Result<(Socket, String), Refusal>> {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
    use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _};

    let cp = cluster.control_plane();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cluster.pki().join("ca.crt"))? {
        roots.add(cert?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(cp.address).await?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::IpAddress(cp.address.ip().into()), tcp)
        .await?;
    let mut request = format!("wss://{}{path}", cp.address).into_client_request()?;
    let headers = request.headers_mut();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {}", cp.admin_token).parse()?,
    );
    headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, protocol.parse()?);
    let handshake = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::client_async(request, stream),
    )
    .await
    .context("the WebSocket handshake did not finish within 30 s")?;
    match handshake {
        Ok((socket, response)) => {
            let chosen = response
                .headers()
                .get(http::header::SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Ok(Ok((socket, chosen)))
        }
        Err(tungstenite::Error::Http(response)) => Ok(Err(*response)),
        Err(err) => Err(err.into()),
    }
}

/// What a v5 exec session returned.
#[derive(Debug)]
struct V5Exec {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: serde_json::Value,
}

/// Runs `command` in container web over WebSocket v5 only, sends `input` messages, and reads
/// until the server closes.
async fn v5_exec(
    cluster: &Cluster,
    command: &[&str],
    streams: &str,
    input: Vec<tokio_tungstenite::tungstenite::Message>,
) -> anyhow::Result<V5Exec> {
    use futures::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;

    let command: String = command
        .iter()
        .map(|c| {
            format!(
                "command={}&",
                flotilla_controlplane::apiserver::node_proxy::percent_encode(c)
            )
        })
        .collect();
    let path = format!("/api/v1/namespaces/default/pods/p/exec?{command}container=web&{streams}");
    let (mut socket, chosen) = websocket(cluster, &path, "v5.channel.k8s.io")
        .await?
        .map_err(|refusal| anyhow::anyhow!("the v5 upgrade was refused: {refusal:?}"))?;
    ensure!(chosen == "v5.channel.k8s.io", "the server chose {chosen:?}");
    for message in input {
        socket.send(message).await?;
    }
    let mut exec = V5Exec {
        stdout: Vec::new(),
        stderr: Vec::new(),
        status: serde_json::Value::Null,
    };
    let mut status = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, socket.next())
            .await
            .with_context(|| format!("the v5 session did not end within 30 s: {exec:?}"))?;
        match message {
            Some(Ok(Message::Binary(data))) => match data.split_first() {
                Some((1, rest)) => exec.stdout.extend_from_slice(rest),
                Some((2, rest)) => exec.stderr.extend_from_slice(rest),
                Some((3, rest)) => status.extend_from_slice(rest),
                other => anyhow::bail!("a message on an unexpected channel: {other:?}"),
            },
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(err)) => anyhow::bail!("the v5 session failed: {err}"),
        }
    }
    exec.status = serde_json::from_slice(&status).with_context(|| {
        format!(
            "the error channel carried {:?}",
            String::from_utf8_lossy(&status)
        )
    })?;
    Ok(exec)
}

/// A client that speaks only WebSocket: exec over v5 (stdin and its close signal, stdout,
/// stderr, exit codes), malformed input, an unknown subprotocol, and port-forward with its SPDY
/// session tunnelled in WebSocket messages.
async fn websocket_only_client(cluster: &Cluster) -> anyhow::Result<()> {
    use bytes::Bytes;
    use flotilla_controlplane::apiserver::streaming::{spdy, websocket::WebSocketIo};
    use tokio_tungstenite::tungstenite::Message;

    let binary = |bytes: &[u8]| Message::Binary(Bytes::copy_from_slice(bytes));
    let all = "stdin=true&stdout=true&stderr=true";

    // stdin reaches cat, and the close signal ends it; then the exit status.
    let cat = v5_exec(
        cluster,
        &["sh", "-c", "cat; echo to-stderr >&2"],
        all,
        vec![
            binary(b"\x00hello "),
            binary(b"\x00v5\n"),
            binary(&[255, 0]),
        ],
    )
    .await?;
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout),
        "hello v5\n",
        "{cat:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&cat.stderr),
        "to-stderr\n",
        "{cat:?}"
    );
    assert_eq!(cat.status["status"], "Success", "{cat:?}");

    // A non-zero exit code comes back as NonZeroExitCode with the code as its cause.
    let failed = v5_exec(
        cluster,
        &["sh", "-c", "echo out; exit 7"],
        "stdout=true&stderr=true",
        Vec::new(),
    )
    .await?;
    assert_eq!(String::from_utf8_lossy(&failed.stdout), "out\n");
    assert_eq!(failed.status["status"], "Failure", "{failed:?}");
    assert_eq!(failed.status["reason"], "NonZeroExitCode", "{failed:?}");
    assert_eq!(
        failed.status["details"]["causes"][0]["reason"], "ExitCode",
        "{failed:?}"
    );
    assert_eq!(
        failed.status["details"]["causes"][0]["message"], "7",
        "{failed:?}"
    );

    // Malformed input ends the session with a Status saying what was wrong.
    let text = v5_exec(cluster, &["cat"], all, vec![Message::text("hello")]).await?;
    assert_eq!(text.status["reason"], "BadRequest", "{text:?}");
    assert!(
        text.status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("only binary messages"),
        "{text:?}"
    );
    let channel = v5_exec(cluster, &["cat"], all, vec![binary(b"\x09what")]).await?;
    assert!(
        channel.status["message"]
            .as_str()
            .unwrap_or_default()
            .contains("channel 9"),
        "{channel:?}"
    );

    // A subprotocol nobody speaks is refused before any upgrade, saying what is supported.
    let refusal = websocket(
        cluster,
        "/api/v1/namespaces/default/pods/p/exec?command=ls&container=web&stdout=true",
        "v6.channel.k8s.io",
    )
    .await?
    .err()
    .context("a v6-only upgrade was accepted")?;
    assert_eq!(refusal.status(), http::StatusCode::BAD_REQUEST);
    let body = String::from_utf8_lossy(refusal.body().as_deref().unwrap_or_default()).into_owned();
    assert!(
        body.contains("none of the WebSocket subprotocols [v6.channel.k8s.io]")
            && body.contains("v5.channel.k8s.io"),
        "{body}"
    );

    // Port-forward: kubectl's SPDY session, carried in WebSocket binary messages.
    let (socket, chosen) = websocket(
        cluster,
        "/api/v1/namespaces/default/pods/p/portforward?ports=8080",
        "SPDY/3.1+portforward.k8s.io",
    )
    .await?
    .map_err(|refusal| anyhow::anyhow!("the port-forward upgrade was refused: {refusal:?}"))?;
    assert_eq!(chosen, "SPDY/3.1+portforward.k8s.io");
    let session = spdy::Connection::client(WebSocketIo::new(socket))?;
    let stream = |kind| [("streamtype", kind), ("port", "8080"), ("requestid", "0")];
    let error = session.open_stream(&stream("error")).await?;
    error.writer.finish().await?;
    let mut data = session.open_stream(&stream("data")).await?;
    data.writer
        .send(Bytes::from_static(
            b"GET /healthz HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
        ))
        .await?;
    // The node resets the stream once the pod's server has closed the connection.
    let (answer, _) =
        tokio::time::timeout(Duration::from_secs(20), data.reader.read_to_end(1 << 20))
            .await
            .context("no HTTP answer through the tunnel within 20 s")?;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    session.close().await;
    Ok(())
}
