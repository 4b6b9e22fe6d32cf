//! Checks of the running cluster through the real `kubectl`: nodes Ready, and a small Deployment
//! of the test app behind a Service that must reach Running with pod IPs, answer each other by
//! pod IP and by the Service's name (cluster DNS, then the socket load balancer) before `up`
//! calls the cluster up.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use flotilla_testbed::objects;
use serde_json::Value;

use super::node;
use crate::process::{output_of, run_visible, wait_for};

/// Name (and `app` label) of the check's Deployment.
const CHECK_NAME: &str = "flotilla-up-check";
/// How long the check's rollout may take (the first pod on a node starts its sandbox image).
const ROLLOUT_TIMEOUT: &str = "180s";

/// `kubectl` against the local cluster, each request bounded.
pub(super) fn kubectl(kubeconfig: &Path) -> Command {
    let mut command = Command::new("kubectl");
    command
        .env("KUBECONFIG", kubeconfig)
        .arg("--request-timeout=10s");
    command
}

/// Ready (condition True and no NoSchedule/NoExecute taint) per registered node, or None if the
/// API does not answer.
pub(super) fn node_readiness(kubeconfig: &Path) -> Option<BTreeMap<String, bool>> {
    let text = output_of(kubectl(kubeconfig).args(["get", "nodes", "-o", "json"]))?;
    let list: Value = serde_json::from_str(&text).ok()?;
    Some(
        list["items"]
            .as_array()?
            .iter()
            .map(|node| {
                let name = node["metadata"]["name"].as_str().unwrap_or_default();
                (name.to_owned(), objects::node_schedulable(node))
            })
            .collect(),
    )
}

/// Waits until every node in `names` is Ready; fails at once if a node's containerd or agent
/// dies, with the end of its log.
pub(super) fn wait_nodes_ready(
    kubeconfig: &Path,
    names: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_for(
        &format!("waiting for {} nodes to be Ready", names.len()),
        timeout,
        || {
            if let Some(failure) = names.iter().find_map(|name| node::failure(name)) {
                bail!("{failure}");
            }
            let all_ready = node_readiness(kubeconfig).is_some_and(|ready| {
                names
                    .iter()
                    .all(|name| ready.get(name).copied().unwrap_or(false))
            });
            Ok(all_ready.then_some(()))
        },
    )
    .with_context(|| {
        let shown = output_of(kubectl(kubeconfig).args(["get", "nodes"])).unwrap_or_default();
        format!(
            "the nodes did not all turn Ready; `kubectl get nodes` says:\n{shown}see each \
             node's agent.log under .flotilla/cluster/nodes/"
        )
    })
}

/// The check's Deployment: two replicas of the test app with a readiness probe, so a rollout
/// that completes means both pods run, got addresses and answer HTTP from their node; and a
/// Service of the same name in front of them (port 80).
fn manifest() -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {CHECK_NAME}
  namespace: default
  labels:
    app: {CHECK_NAME}
spec:
  replicas: 2
  selector:
    matchLabels:
      app: {CHECK_NAME}
  template:
    metadata:
      labels:
        app: {CHECK_NAME}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: testapp
        image: docker.io/flotilla/testapp:v1
        imagePullPolicy: IfNotPresent
        ports:
        - containerPort: 8080
        readinessProbe:
          httpGet:
            path: /healthz
            port: 8080
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {CHECK_NAME}
  namespace: default
spec:
  selector:
    app: {CHECK_NAME}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"
    )
}

/// Runs the Deployment check and removes it again.
pub(super) fn deployment(kubeconfig: &Path) -> anyhow::Result<()> {
    eprintln!(
        "==> checking the cluster: a Deployment of docker.io/flotilla/testapp:v1, 2 replicas, \
         and a Service {CHECK_NAME}"
    );
    apply(kubeconfig, &manifest(), "the check Deployment")?;
    let result = (|| {
        run_visible(
            "kubectl rollout status",
            kubectl(kubeconfig).args([
                "rollout",
                "status",
                &format!("deployment/{CHECK_NAME}"),
                &format!("--timeout={ROLLOUT_TIMEOUT}"),
            ]),
        )?;
        run_visible(
            "kubectl get pods -o wide",
            kubectl(kubeconfig).args([
                "get",
                "pods",
                "-o",
                "wide",
                "-l",
                &format!("app={CHECK_NAME}"),
            ]),
        )?;
        verify_pods(kubeconfig)
    })();
    if let Err(err) = result {
        let pods = output_of(kubectl(kubeconfig).args([
            "get",
            "pods",
            "-o",
            "wide",
            "-l",
            &format!("app={CHECK_NAME}"),
        ]))
        .unwrap_or_default();
        // Left in place so the failure can be looked at; the next `up` applies it again.
        return Err(err.context(format!(
            "the check Deployment {CHECK_NAME} did not come up (left in namespace default for \
             inspection: `kubectl describe pods -l app={CHECK_NAME}`); its pods:\n{pods}"
        )));
    }
    delete(kubeconfig)
}

/// `kubectl apply -f -` of `manifest` (`what` names it in errors); shows what kubectl printed.
pub(super) fn apply(kubeconfig: &Path, manifest: &str, what: &str) -> anyhow::Result<()> {
    let mut child = kubectl(kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running kubectl (is it on PATH?)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(manifest.as_bytes())
            .context("writing the manifest to kubectl")?;
    }
    let output = child.wait_with_output().context("waiting for kubectl")?;
    if !output.status.success() {
        bail!(
            "kubectl apply of {what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        eprintln!("    {line}");
    }
    Ok(())
}

/// Both pods Running with an IP; says where they run.
fn verify_pods(kubeconfig: &Path) -> anyhow::Result<()> {
    let text = output_of(kubectl(kubeconfig).args([
        "get",
        "pods",
        "-o",
        "json",
        "-l",
        &format!("app={CHECK_NAME}"),
    ]))
    .context("listing the check's pods")?;
    let list: Value = serde_json::from_str(&text).context("parsing kubectl's pod list")?;
    let pods: Vec<(String, String, String, String)> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pod| pod["metadata"]["deletionTimestamp"].is_null())
        .map(|pod| {
            let field = |value: &Value| value.as_str().unwrap_or_default().to_owned();
            (
                field(&pod["metadata"]["name"]),
                field(&pod["status"]["phase"]),
                field(&pod["status"]["podIP"]),
                field(&pod["spec"]["nodeName"]),
            )
        })
        .collect();
    let good = pods
        .iter()
        .filter(|(_, phase, ip, _)| phase == "Running" && !ip.is_empty())
        .count();
    if good < 2 {
        bail!("expected 2 Running pods with an IP, found {pods:?}");
    }
    for (name, _, ip, node) in &pods {
        eprintln!("    pod {name} runs on {node} with IP {ip}");
    }
    // Pod to pod, through the eBPF datapath (across nodes when the pods landed on two).
    for (from, _, _, from_node) in &pods {
        for (to, _, to_ip, to_node) in pods.iter().filter(|(other, ..)| other != from) {
            // Bounded from outside: busybox-static 1.35's `wget -T` segfaults.
            let answer = output_of(
                Command::new("timeout")
                    .arg("20")
                    .arg("kubectl")
                    .env("KUBECONFIG", kubeconfig)
                    .args(["exec", from, "--", "wget", "-qO-"])
                    .arg(format!("http://{to_ip}:8080/hostname")),
            )
            .with_context(|| {
                format!("pod {from} ({from_node}) could not reach pod {to} ({to_node}) at {to_ip}")
            })?;
            if answer.trim() != to {
                bail!("pod {from} asked {to_ip} for its hostname and got {answer:?}, not {to:?}");
            }
            eprintln!("    pod {from} ({from_node}) -> {to_ip}:8080 answered {to:?}");
        }
    }
    by_service_name(kubeconfig, &pods)
}

/// Every pod resolves the Service by its full name (busybox nslookup against the cluster DNS)
/// and fetches `http://<service>/hostname` by its short name (resolved through the search path,
/// then balanced over the pods at the socket); the answer must be one of the pods.
fn by_service_name(
    kubeconfig: &Path,
    pods: &[(String, String, String, String)],
) -> anyhow::Result<()> {
    let cluster_ip = output_of(kubectl(kubeconfig).args([
        "get",
        "service",
        CHECK_NAME,
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]))
    .context("reading the check Service's ClusterIP")?;
    let cluster_ip = cluster_ip.trim();
    let full_name = format!("{CHECK_NAME}.default.svc.cluster.local");
    for (from, _, _, from_node) in pods {
        // Bounded from outside, as above; the first answers may wait for the Service's
        // endpoints to be programmed on the node.
        let exec = |command: &[&str]| {
            output_of(
                Command::new("timeout")
                    .arg("10")
                    .arg("kubectl")
                    .env("KUBECONFIG", kubeconfig)
                    .args(["exec", from, "--"])
                    .args(command),
            )
        };
        let resolved = wait_for(
            &format!("pod {from}: nslookup {full_name}"),
            Duration::from_secs(30),
            || Ok(exec(&["nslookup", &full_name]).filter(|out| out.contains(cluster_ip))),
        )
        .with_context(|| {
            format!(
                "pod {from} ({from_node}) could not resolve {full_name} to {cluster_ip} through \
                 the cluster DNS (kube-system/kube-dns; see the control plane's log)"
            )
        })?;
        let server = resolved
            .lines()
            .find_map(|line| line.strip_prefix("Server:"))
            .map_or("", str::trim);
        eprintln!("    pod {from}: {full_name} is {cluster_ip} (asked {server})");
        let url = format!("http://{CHECK_NAME}/hostname");
        let answer = wait_for(
            &format!("pod {from}: wget {url}"),
            Duration::from_secs(30),
            || Ok(exec(&["wget", "-qO-", &url]).map(|out| out.trim().to_owned())),
        )
        .with_context(|| format!("pod {from} ({from_node}) could not fetch {url}"))?;
        if !pods.iter().any(|(name, ..)| *name == answer) {
            bail!("pod {from} fetched {url} and got {answer:?}, not one of the check's pods");
        }
        eprintln!("    pod {from} ({from_node}) -> {url} answered {answer:?}");
    }
    Ok(())
}

fn delete(kubeconfig: &Path) -> anyhow::Result<()> {
    run_visible(
        "kubectl delete deployment,service (the check is done)",
        kubectl(kubeconfig).args([
            "delete",
            "deployment,service",
            CHECK_NAME,
            "--ignore-not-found",
        ]),
    )?;
    wait_for(
        "waiting for the check's pods to go",
        Duration::from_secs(90),
        || {
            let names = output_of(kubectl(kubeconfig).args([
                "get",
                "pods",
                "-o",
                "name",
                "-l",
                &format!("app={CHECK_NAME}"),
            ]));
            Ok(names
                .is_some_and(|names| names.trim().is_empty())
                .then_some(()))
        },
    )
}
