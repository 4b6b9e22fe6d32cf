//! A real control plane (its own etcd on free loopback ports, HTTPS on a free port) per test,
//! and the real kubectl pointed at it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]
#![allow(dead_code, unreachable_pub)]

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::Duration,
};

use flotilla_controlplane::{
    etcd::free_port,
    run::{Config, ControlPlane},
};

/// Two Ready nodes with room for many pods, so the scheduler binds what the controllers create.
pub const TWO_NODES: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus:\n  conditions: [{type: Ready, status: \"True\"}]\n  allocatable: {cpu: \"4\", memory: 8Gi, pods: \"110\"}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n2}\nstatus:\n  conditions: [{type: Ready, status: \"True\"}]\n  allocatable: {cpu: \"4\", memory: 8Gi, pods: \"110\"}\n";

/// Active (not terminating) pods matching `selector`, waiting up to 10 s for `count` of them,
/// all bound to a node.
pub async fn wait_for_bound(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    selector: &str,
    count: usize,
) -> Vec<k8s_openapi::api::core::v1::Pod> {
    let mut last = Vec::new();
    for _ in 0..100 {
        last = pods
            .list(&kube::api::ListParams::default().labels(selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let bound = last
            .iter()
            .all(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some());
        if last.len() == count && bound {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("expected {count} bound pods, have {}", last.len());
}

/// Deletes `victim` with kubectl and waits for its controller to bring the `count` pods matching
/// `selector` back, without it.
pub async fn expect_replaced(
    cluster: &Cluster,
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    selector: &str,
    count: usize,
    victim: &str,
) {
    cluster.kubectl_ok(&["delete", "pod", victim, "--wait=false"]);
    let replaced = wait_for_bound(pods, selector, count).await;
    assert!(
        replaced
            .iter()
            .all(|p| p.metadata.name.as_deref() != Some(victim)),
        "{victim} is still there"
    );
}

/// A running control plane and the files of its test.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub control_plane: ControlPlane,
}

impl Cluster {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Starts a control plane with a configuration changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = Config {
            etcd_ports: (free_port()?, free_port()?),
            ..Config::new(
                dir.path().join("state"),
                format!("127.0.0.1:{}", free_port()?).parse()?,
            )
        };
        adjust(&mut config);
        let control_plane =
            tokio::time::timeout(Duration::from_secs(60), ControlPlane::start(config)).await??;
        Ok(Self { dir, control_plane })
    }

    /// Wraps a control plane the test started itself.
    pub fn adopt(dir: tempfile::TempDir, control_plane: ControlPlane) -> Self {
        Self { dir, control_plane }
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.control_plane.kubeconfig
    }

    /// Runs kubectl with a 60 s limit.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_input(args, None)
    }

    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Output {
        self.kubectl_binary("kubectl", args, input)
    }

    /// Runs one kubectl binary (`kubectl.1.27`, a path) with a 60 s limit.
    pub fn kubectl_binary(&self, binary: &str, args: &[&str], input: Option<&str>) -> Output {
        let mut child = Command::new("timeout")
            .arg("60")
            .arg(binary)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("kubectl could not start ({err}); it must be on PATH"));
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl and returns stdout, failing the test with stderr if it failed.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits (20 s at most) until the controller of `resource` (e.g. `deploy/web`) has acted on
    /// its current spec, which it records by writing `status.observedGeneration` equal to
    /// `metadata.generation` at the end of a reconcile: what a test needs before it asserts
    /// that the controller did nothing.
    pub async fn wait_observed(&self, resource: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        for _ in 0..200 {
            last = self.kubectl_ok(&[
                "get",
                resource,
                "-o",
                "jsonpath={.metadata.generation} {.status.observedGeneration}",
            ]);
            let mut numbers = last.split_whitespace();
            if let (Some(generation), Some(observed)) = (numbers.next(), numbers.next())
                && generation == observed
            {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{resource}: status.observedGeneration did not reach metadata.generation (last \
             \"generation observed\": {last:?})"
        );
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn kubectl_err(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            !output.status.success(),
            "kubectl {} should have failed but printed {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    /// Writes `manifest` to the file `name` and `kubectl apply`s it; returns kubectl's output.
    pub fn apply(&self, name: &str, manifest: &str) -> String {
        let path = self.write(name, manifest);
        self.kubectl_ok(&["apply", "-f", &path.to_string_lossy()])
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        Ok(kube::Client::try_from(self.client_config().await?)?)
    }

    /// A client that returns a 429 or 503 at once: kube-rs clients otherwise retry them, up to
    /// 15 times with a backoff growing to 1000 s.
    pub async fn client_without_retries(&self) -> anyhow::Result<kube::Client> {
        let mut config = self.client_config().await?;
        config.default_retry = false;
        Ok(kube::Client::try_from(config)?)
    }

    async fn client_config(&self) -> anyhow::Result<kube::Config> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?)
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.control_plane.address)
    }
}

/// Polls `check` every 100 ms for up to `limit`, returning its first Some.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
