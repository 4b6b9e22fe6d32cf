//! `cargo xtask demo`: the walk-through of what Flotilla promises, on the local cluster, with the
//! real kubectl and real requests. A `web` Deployment (3 replicas) behind a Service in namespace
//! `prod`, a client pod in `prod` and one in `dev`; then, each step checked and shown:
//! the pods spread over the nodes, requests to the Service's VIP answered by different pods, a
//! NetworkPolicy that isolates `prod` from `dev` (dev -> prod blocked and counted by the eBPF
//! datapath, prod -> prod still served), a rolling update to a new image and `kubectl rollout
//! undo`, a deleted pod replaced, and `kubectl drain` of a node keeping within a
//! PodDisruptionBudget. The objects stay afterwards for the user to explore.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use flotilla_testbed::objects;
use serde_json::Value;

use super::{
    bin_dir,
    check::{apply, kubectl},
};
use crate::process::{output_of, run_visible, wait_for};

/// The label that marks the demo's namespaces, so a second run may replace them and never
/// touches a namespace of the same name that someone else made.
const DEMO_LABEL: &str = "flotilla.dev/demo";
/// The demo's namespaces.
const NAMESPACES: [&str; 2] = ["prod", "dev"];
/// The web pods' container port.
const WEB_PORT: u16 = 8080;
/// Requests sent to the Service to show the balancing.
const REQUESTS: usize = 12;
/// How long one request from a client pod may take before it counts as blocked.
const REQUEST_SECONDS: u32 = 3;

/// The demo's objects (the NetworkPolicy comes later, as its own step).
const MANIFEST: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: prod
  labels: {flotilla.dev/demo: \"true\"}
---
apiVersion: v1
kind: Namespace
metadata:
  name: dev
  labels: {flotilla.dev/demo: \"true\"}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: prod
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: docker.io/flotilla/testapp:v1
        imagePullPolicy: IfNotPresent
        ports:
        - {name: http, containerPort: 8080}
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: prod
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: prod
  labels: {app: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: docker.io/flotilla/testapp:v1
    imagePullPolicy: IfNotPresent
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: dev
  labels: {app: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: client
    image: docker.io/flotilla/testapp:v1
    imagePullPolicy: IfNotPresent
";

/// Ingress to every pod of `prod` only from pods of `prod` (namespaces carry their name as the
/// `kubernetes.io/metadata.name` label, as with kube-apiserver).
const POLICY: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: prod-only
  namespace: prod
spec:
  podSelector: {}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: prod}
";

/// What came of one request from a client pod.
#[derive(Debug)]
enum Request {
    /// The body.
    Answered(String),
    /// No answer within [`REQUEST_SECONDS`] (what a policy drop looks like to the client).
    TimedOut,
    /// Anything else: refused, unreachable, no name, kubectl failed.
    Failed(String),
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Answered(body) => write!(f, "answered {body:?}"),
            Self::TimedOut => write!(f, "no answer within {REQUEST_SECONDS} s"),
            Self::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// A client pod of the demo: its namespace and name.
#[derive(Debug, Clone, Copy)]
struct Client {
    namespace: &'static str,
}

impl Client {
    const PROD: Self = Self { namespace: "prod" };
    const DEV: Self = Self { namespace: "dev" };

    /// One HTTP GET from the client pod, bounded by busybox's `timeout` inside the pod
    /// (busybox-static 1.35's `wget -T` segfaults); what came of it.
    fn get(self, kubeconfig: &Path, url: &str) -> Request {
        let script = format!(
            "out=$(timeout {REQUEST_SECONDS} wget -qO- {url} 2>&1); code=$?; echo \"$out\"; \
             echo \"exit=$code\""
        );
        let output = self
            .shell(kubeconfig, &script, REQUEST_SECONDS + 7)
            .stdin(Stdio::null())
            .output();
        let output = match output {
            Ok(output) if output.status.success() => output,
            Ok(output) => {
                return Request::Failed(format!(
                    "kubectl exec: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            Err(err) => return Request::Failed(format!("running kubectl: {err}")),
        };
        let text = String::from_utf8_lossy(&output.stdout);
        let (body, code) = text
            .trim_end()
            .rsplit_once("exit=")
            .map_or((text.as_ref(), ""), |(body, code)| (body, code));
        match code.trim() {
            "0" => Request::Answered(body.trim().to_owned()),
            // busybox `timeout` ends wget with SIGTERM: 128 + 15.
            "143" => Request::TimedOut,
            code => Request::Failed(format!("wget exit {code}: {}", body.trim())),
        }
    }

    /// `count` GETs of `url` in one exec (a shell loop in the pod); the answers in order, "-" for
    /// a request that got none.
    fn get_many(self, kubeconfig: &Path, url: &str, count: usize) -> anyhow::Result<Vec<String>> {
        let script = format!(
            "for i in $(seq {count}); do timeout {REQUEST_SECONDS} wget -qO- {url} || echo -n -; \
             echo; done"
        );
        let output =
            output_of(&mut self.shell(kubeconfig, &script, count as u32 * REQUEST_SECONDS + 10))
                .with_context(|| format!("kubectl exec into {}/client failed", self.namespace))?;
        Ok(output.lines().map(|line| line.trim().to_owned()).collect())
    }

    /// `kubectl exec` of `script` in the client pod's shell (the image has busybox's applets
    /// inside its shell, not as files on PATH), bounded to `seconds` from outside.
    fn shell(self, kubeconfig: &Path, script: &str, seconds: u32) -> Command {
        let mut command = Command::new("timeout");
        command
            .arg(seconds.to_string())
            .arg("kubectl")
            .env("KUBECONFIG", kubeconfig)
            .args([
                "exec",
                "-n",
                self.namespace,
                "client",
                "--",
                "sh",
                "-c",
                script,
            ]);
        command
    }

    fn name(self) -> String {
        format!("{}/client", self.namespace)
    }
}

/// Runs the walk-through on the running local cluster whose nodes are `nodes`.
pub(super) fn run(kubeconfig: &Path, nodes: &[String]) -> anyhow::Result<()> {
    eprintln!(
        "\n==> the demo: a web Deployment behind a Service in namespace prod, clients in prod and \
         dev"
    );
    clear_earlier_run(kubeconfig)?;
    apply(
        kubeconfig,
        MANIFEST,
        "the demo's namespaces, Deployment, Service and clients",
    )?;
    rollout(kubeconfig)?;
    for namespace in NAMESPACES {
        run_visible(
            &format!("kubectl wait for the client pod in {namespace}"),
            kubectl(kubeconfig).args([
                "wait",
                "-n",
                namespace,
                "--for=condition=Ready",
                "pod/client",
                "--timeout=120s",
            ]),
        )?;
    }

    step("1. the web pods, spread over the nodes");
    show(kubectl(kubeconfig).args(["get", "pods", "-n", "prod", "-o", "wide", "-l", "app=web"]))?;
    let pods = web_pods(kubeconfig)?;
    let used: BTreeSet<&str> = pods.values().map(String::as_str).collect();
    let expected = nodes.len().min(3);
    if used.len() < expected {
        bail!(
            "the 3 web pods run on {} node(s) ({used:?}); the scheduler spreads a Deployment's \
             pods over the {} nodes",
            used.len(),
            nodes.len()
        );
    }
    say(&format!("the 3 pods run on {} nodes: {used:?}", used.len()));

    step("2. requests to the Service's VIP, balanced over the pods");
    show(kubectl(kubeconfig).args(["get", "service", "web", "-n", "prod", "-o", "wide"]))?;
    let vip = output_of(kubectl(kubeconfig).args([
        "get",
        "service",
        "web",
        "-n",
        "prod",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]))
    .context("reading the web Service's ClusterIP")?;
    let vip = vip.trim().to_owned();
    for (client, url) in [
        (Client::PROD, format!("http://{vip}/hostname")),
        (Client::DEV, "http://web.prod/hostname".to_owned()),
    ] {
        let answers = balanced(kubeconfig, client, &url, &pods)?;
        say(&format!(
            "{REQUESTS} requests from {} to {url} were answered by {}",
            client.name(),
            tally(&answers)
        ));
    }

    step("3. a NetworkPolicy isolates prod from dev");
    say(&format!("applying:\n{POLICY}"));
    apply(kubeconfig, POLICY, "the NetworkPolicy prod-only")?;
    let url = "http://web.prod/hostname";
    let mut last = None;
    wait_for(
        "waiting until dev -> prod is blocked (the agents program the policy)",
        Duration::from_secs(60),
        || match Client::DEV.get(kubeconfig, url) {
            Request::TimedOut => Ok(Some(())),
            other => {
                last = Some(other);
                Ok(None)
            }
        },
    )
    .with_context(|| {
        format!(
            "dev's client still gets through to prod's web pods, or fails otherwise, after the \
             policy was applied; last attempt: {}",
            last.as_ref()
                .map_or_else(|| "none".to_owned(), ToString::to_string)
        )
    })?;
    for attempt in 1..=3 {
        match Client::DEV.get(kubeconfig, url) {
            Request::TimedOut => {}
            other => bail!("dev -> prod attempt {attempt} after the policy: {other}"),
        }
    }
    say(&format!(
        "dev/client -> {url}: no answer within {REQUEST_SECONDS} s, 3 times out of 3 (dropped)"
    ));
    let answers = balanced(kubeconfig, Client::PROD, url, &pods)?;
    say(&format!(
        "prod/client -> {url}: answered by {}",
        tally(&answers)
    ));
    policy_drops(&pods)?;

    step("4. a rolling update to testapp:v2, then kubectl rollout undo");
    run_visible(
        "kubectl set image deployment/web web=docker.io/flotilla/testapp:v2",
        kubectl(kubeconfig).args([
            "set",
            "image",
            "-n",
            "prod",
            "deployment/web",
            "web=docker.io/flotilla/testapp:v2",
        ]),
    )?;
    rollout(kubeconfig)?;
    versions_become(kubeconfig, "v2")?;
    show(kubectl(kubeconfig).args(["rollout", "history", "-n", "prod", "deployment/web"]))?;
    run_visible(
        "kubectl rollout undo deployment/web",
        kubectl(kubeconfig).args(["rollout", "undo", "-n", "prod", "deployment/web"]),
    )?;
    rollout(kubeconfig)?;
    versions_become(kubeconfig, "v1")?;

    step("5. a deleted pod is replaced");
    let pods = web_pods(kubeconfig)?;
    let victim = pods.keys().next().context("no web pod to delete")?.clone();
    run_visible(
        &format!("kubectl delete pod {victim}"),
        kubectl(kubeconfig).args(["delete", "pod", "-n", "prod", &victim, "--wait=false"]),
    )?;
    let replaced = wait_for(
        "waiting for the ReplicaSet to replace it",
        Duration::from_secs(120),
        || {
            let list = web_pod_list(kubeconfig)?;
            let ready = list.iter().filter(|(_, _, ready)| *ready).count();
            let now: BTreeMap<String, String> = list
                .into_iter()
                .map(|(name, node, _)| (name, node))
                .collect();
            Ok((now.len() == 3 && ready == 3 && !now.contains_key(&victim)).then_some(now))
        },
    )?;
    let new: Vec<&String> = replaced
        .keys()
        .filter(|name| !pods.contains_key(*name))
        .collect();
    show(kubectl(kubeconfig).args(["get", "pods", "-n", "prod", "-o", "wide", "-l", "app=web"]))?;
    say(&format!(
        "{victim} is terminating; the ReplicaSet replaced it with {new:?}"
    ));

    step("6. kubectl drain keeps within a PodDisruptionBudget");
    drain_within_budget(kubeconfig)?;

    println!(
        "\nThe demo passed. Its objects stay for you to explore:\n\n  \
         kubectl get all,networkpolicy,pdb -n prod\n  \
         kubectl exec -n dev client -- wget -qO- http://web.prod/hostname   # blocked\n  \
         kubectl delete namespace prod dev                                  # remove them\n"
    );
    Ok(())
}

/// At least two of the three web pods must stay available while a node is drained.
const BUDGET: &str = "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
  namespace: prod
spec:
  minAvailable: 2
  selector:
    matchLabels: {app: web}
";

/// Drains the node with the most web pods under [`BUDGET`]: kubectl evicts one pod, is refused
/// (429) for the next until the replacement is Ready elsewhere, then evicts it; the node is
/// uncordoned afterwards. Checks that the refusal happened when the node held two pods or more,
/// and that all three pods end Ready on other nodes.
fn drain_within_budget(kubeconfig: &Path) -> anyhow::Result<()> {
    say(&format!("applying:\n{BUDGET}"));
    apply(kubeconfig, BUDGET, "the PodDisruptionBudget web")?;
    wait_for(
        "waiting for the disruption controller to allow one disruption",
        Duration::from_secs(60),
        || {
            let allowed = output_of(kubectl(kubeconfig).args([
                "get",
                "pdb",
                "web",
                "-n",
                "prod",
                "-o",
                "jsonpath={.status.disruptionsAllowed}",
            ]));
            Ok((allowed.as_deref().map(str::trim) == Some("1")).then_some(()))
        },
    )?;
    show(kubectl(kubeconfig).args(["get", "pdb", "web", "-n", "prod"]))?;
    let pods = web_pods(kubeconfig)?;
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for node in pods.values() {
        *per_node.entry(node).or_default() += 1;
    }
    let (node, held) = per_node
        .iter()
        .max_by_key(|(_, count)| **count)
        .map(|(node, count)| ((*node).to_owned(), *count))
        .context("no web pod runs on any node")?;
    say(&format!("{node} runs {held} of the web pods; draining it"));
    // Through a shell so kubectl's stderr (the refusals) interleaves with its stdout in order.
    let drained = Command::new("timeout")
        .args(["200", "sh", "-c", "exec kubectl \"$@\" 2>&1", "kubectl"])
        .env("KUBECONFIG", kubeconfig)
        .args([
            "drain",
            &node,
            "--ignore-daemonsets",
            "--pod-selector=app=web",
            "--timeout=180s",
        ])
        .stdin(Stdio::null())
        .output()
        .context("running kubectl drain")?;
    let text = String::from_utf8_lossy(&drained.stdout).into_owned();
    say(&text);
    let uncordon = run_visible(
        &format!("kubectl uncordon {node}"),
        kubectl(kubeconfig).args(["uncordon", &node]),
    );
    if !drained.status.success() {
        bail!("kubectl drain {node} failed");
    }
    uncordon?;
    let refused = text.contains("would violate the pod's disruption budget");
    if held >= 2 && !refused {
        bail!(
            "{node} held {held} web pods and the budget allows one disruption at a time, yet              kubectl drain was never refused: the eviction did not honour the budget"
        );
    }
    let after = wait_for(
        "waiting for the three web pods to be Ready",
        Duration::from_secs(120),
        || {
            let list = web_pod_list(kubeconfig)?;
            let ready = list.iter().filter(|(_, _, ready)| *ready).count();
            Ok((list.len() == 3 && ready == 3).then_some(list))
        },
    )?;
    if let Some((name, _, _)) = after.iter().find(|(_, on, _)| *on == node) {
        bail!("{name} still runs on the drained node {node}");
    }
    show(kubectl(kubeconfig).args(["get", "pods", "-n", "prod", "-o", "wide", "-l", "app=web"]))?;
    say(&format!(
        "kubectl evicted the {held} pod(s) on {node} one at a time{}; all three run elsewhere",
        if refused {
            ", waiting (429 TooManyRequests) until each replacement was Ready"
        } else {
            ""
        }
    ));
    Ok(())
}

/// Removes the namespaces of an earlier demo (labelled as ours) so this run starts clean;
/// refuses to touch namespaces of the same name that are not the demo's.
fn clear_earlier_run(kubeconfig: &Path) -> anyhow::Result<()> {
    let mut ours = Vec::new();
    for namespace in NAMESPACES {
        let Some(text) = output_of(kubectl(kubeconfig).args([
            "get",
            "namespace",
            namespace,
            "-o",
            "json",
            "--ignore-not-found",
        ])) else {
            bail!("kubectl could not read namespace {namespace}; is the API server up?");
        };
        if text.trim().is_empty() {
            continue;
        }
        let object: Value = serde_json::from_str(&text).context("parsing kubectl's namespace")?;
        if object["metadata"]["labels"][DEMO_LABEL].is_null() {
            bail!(
                "namespace {namespace} exists and is not the demo's (no {DEMO_LABEL} label); the \
                 demo creates namespaces {NAMESPACES:?}: delete it (`kubectl delete namespace \
                 {namespace}`) or run the demo on another cluster"
            );
        }
        ours.push(namespace);
    }
    if ours.is_empty() {
        return Ok(());
    }
    run_visible(
        "kubectl delete namespace (an earlier demo's)",
        kubectl(kubeconfig)
            .args(["delete", "namespace", "--wait=false"])
            .args(&ours),
    )?;
    wait_for(
        "waiting for the earlier demo's namespaces to go",
        Duration::from_secs(120),
        || {
            let left = output_of(kubectl(kubeconfig).args([
                "get",
                "namespace",
                "-o",
                "name",
                "-l",
                DEMO_LABEL,
            ]));
            Ok(left
                .is_some_and(|names| names.trim().is_empty())
                .then_some(()))
        },
    )
}

fn step(title: &str) {
    eprintln!("\n--- {title}");
}

fn say(text: &str) {
    for line in text.lines() {
        eprintln!("    {line}");
    }
}

/// Runs kubectl and shows what it printed.
fn show(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .context("running kubectl")?;
    if !output.status.success() {
        bail!(
            "{:?} failed: {}",
            command,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    say(&String::from_utf8_lossy(&output.stdout));
    Ok(())
}

fn rollout(kubeconfig: &Path) -> anyhow::Result<()> {
    run_visible(
        "kubectl rollout status deployment/web",
        kubectl(kubeconfig).args([
            "rollout",
            "status",
            "-n",
            "prod",
            "deployment/web",
            "--timeout=180s",
        ]),
    )
}

/// The web pods that are not terminating: name -> node.
fn web_pods(kubeconfig: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(web_pod_list(kubeconfig)?
        .into_iter()
        .map(|(name, node, _)| (name, node))
        .collect())
}

/// (name, node, ready) of every web pod that is not terminating.
fn web_pod_list(kubeconfig: &Path) -> anyhow::Result<Vec<(String, String, bool)>> {
    let text = output_of(
        kubectl(kubeconfig).args(["get", "pods", "-n", "prod", "-l", "app=web", "-o", "json"]),
    )
    .context("listing the web pods")?;
    let list: Value = serde_json::from_str(&text).context("parsing kubectl's pod list")?;
    Ok(objects::live_pods(&list)
        .into_iter()
        .map(|pod| (pod.name, pod.node, pod.ready))
        .collect())
}

/// Sends [`REQUESTS`] requests from `client` to `url` (the pods' hostnames) until every one is
/// answered by a web pod and more than one pod answered; the answers.
fn balanced(
    kubeconfig: &Path,
    client: Client,
    url: &str,
    pods: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<String>> {
    let mut last = Vec::new();
    // The first requests may race the Service's programming on a node just after the rollout.
    for _ in 0..10 {
        last = client.get_many(kubeconfig, url, REQUESTS)?;
        let from_pods = last.len() == REQUESTS && last.iter().all(|a| pods.contains_key(a));
        let distinct: BTreeSet<&String> = last.iter().collect();
        if from_pods && distinct.len() > 1 {
            return Ok(last);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    bail!(
        "{} -> {url}: {REQUESTS} requests were not all answered by the web pods ({:?}), or all \
         by one; answers: {last:?}",
        client.name(),
        pods.keys().collect::<Vec<_>>()
    )
}

/// "web-a x5, web-b x4, web-c x3".
fn tally(answers: &[String]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for answer in answers {
        *counts.entry(answer).or_default() += 1;
    }
    counts
        .iter()
        .map(|(pod, n)| format!("{pod} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits until every answer of `/version` through the Service is `version`.
fn versions_become(kubeconfig: &Path, version: &str) -> anyhow::Result<()> {
    let url = "http://web.prod/version";
    let answers = wait_for(
        &format!("waiting until every request to {url} answers {version}"),
        Duration::from_secs(60),
        || {
            let answers = Client::PROD.get_many(kubeconfig, url, REQUESTS)?;
            let all = answers.len() == REQUESTS && answers.iter().all(|a| a == version);
            Ok(all.then_some(answers))
        },
    )?;
    say(&format!(
        "{REQUESTS} requests from prod/client to {url}: {}",
        tally(&answers)
    ));
    Ok(())
}

/// Shows the policy drops the datapath recorded on the web pods' nodes, read from each node's
/// event ring with the agent's own CLI (which consumes them), and fails if none was an ingress
/// drop to the web port: the dev client's timeouts must be the policy's doing.
fn policy_drops(pods: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let agent = bin_dir().join("flotilla-agent");
    let nodes: BTreeSet<&String> = pods.values().collect();
    let mut to_web = 0;
    for node in nodes {
        let output = Command::new(&agent)
            .args(["--node", node, "bpf", "policy-drops", "-o", "json"])
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("running {}", agent.display()))?;
        // Say why it failed: the ring of drops is read once, so a rerun cannot tell.
        anyhow::ensure!(
            output.status.success(),
            "`{} --node {node} bpf policy-drops` failed ({}): {}",
            agent.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        say(&format!("`flotilla-agent --node {node} bpf policy-drops`:"));
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let drop: Value = serde_json::from_str(line)
                .with_context(|| format!("parsing the policy drop {line:?}"))?;
            say(&format!(
                "  {} {} {}:{} -> {}:{}",
                drop["direction"].as_str().unwrap_or("?"),
                drop["proto"].as_str().unwrap_or("?"),
                drop["src"].as_str().unwrap_or("?"),
                drop["sport"],
                drop["dst"].as_str().unwrap_or("?"),
                drop["dport"]
            ));
            if drop["direction"] == "ingress" && drop["dport"] == WEB_PORT {
                to_web += 1;
            }
        }
    }
    if to_web == 0 {
        bail!(
            "dev's requests got no answer, but no node recorded a policy drop to port {WEB_PORT}: \
             they were lost some other way (see `flotilla-agent --node N bpf drops`)"
        );
    }
    Ok(())
}
