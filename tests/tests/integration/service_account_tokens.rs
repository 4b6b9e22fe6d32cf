//! ServiceAccount tokens in pods, end to end on one node: the ServiceAccount admission mounts a
//! `kube-api-access-*` volume in the pod, the agent fills it with a token bound to the pod (from
//! the TokenRequest API, on the node's own credentials), the CA and the namespace, and software
//! in the pod calls the API through `https://kubernetes.default.svc` as its ServiceAccount: 403
//! with upstream's message until a RoleBinding grants the list, the pods after, and 401 within
//! seconds of the ServiceAccount's deletion. TokenReview tells the same about the token.

use std::{process::Output, time::Duration, time::Instant};

use anyhow::{Context as _, ensure};
use base64::Engine as _;
use serde_json::Value;

use crate::support::{Cluster, LocalCluster, eventually, pod_phase, require_root};

const NAMESPACE: &str = "tokens";
const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

const MANIFEST: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: tokens
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: reader
  namespace: tokens
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-reader
  namespace: tokens
rules:
- apiGroups: [\"\"]
  resources: [pods]
  verbs: [get, list]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
  namespace: tokens
spec:
  serviceAccountName: reader
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: docker.io/flotilla/testapp:v1
    imagePullPolicy: Never
";

const BINDING: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: reader-reads-pods
  namespace: tokens
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: pod-reader
subjects:
- kind: ServiceAccount
  name: reader
  namespace: tokens
";

/// `kubectl exec client -- <command>` in the test namespace.
fn in_client(cluster: &Cluster, command: &[&str]) -> Output {
    let mut args = vec!["-n", NAMESPACE, "exec", "client", "--"];
    args.extend(command);
    cluster.kubectl(&args)
}

/// `/testapp api-get <path>` in the client: (exit code, stdout, stderr).
fn api_get(cluster: &Cluster, path: &str) -> (Option<i32>, String, String) {
    let output = in_client(cluster, &["/testapp", "api-get", path]);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_call_the_api_as_their_service_account() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 1).await?;
    let cluster = &local.cluster;
    cluster.apply("tokens.yaml", MANIFEST)?;
    eventually(Duration::from_secs(60), "client Running", || {
        let pod = cluster.json(&["-n", NAMESPACE, "get", "pod", "client"])?;
        Ok((pod_phase(&pod) == "Running").then_some(()))
    })
    .await?;
    eprintln!("client running after {:?}", started.elapsed());

    // The admission mounted the token volume.
    let pod = cluster.json(&["-n", NAMESPACE, "get", "pod", "client"])?;
    let volume = &pod["spec"]["volumes"][0];
    let volume_name = volume["name"].as_str().unwrap_or_default();
    ensure!(
        volume_name.starts_with("kube-api-access-")
            && volume["projected"]["sources"][0]["serviceAccountToken"]["path"] == "token",
        "the pod has no token volume: {}",
        pod["spec"]
    );
    ensure!(
        pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == TOKEN_DIR,
        "the token volume is not mounted: {}",
        pod["spec"]
    );

    // The agent wrote the token (bound to the pod), the CA and the namespace.
    let read = |file: &str| -> anyhow::Result<String> {
        let output = in_client(cluster, &["cat", &format!("{TOKEN_DIR}/{file}")]);
        ensure!(output.status.success(), "cat {file}: {output:?}");
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    };
    ensure!(read("namespace")? == NAMESPACE, "the namespace file");
    let root_ca = cluster.json(&["-n", NAMESPACE, "get", "configmap", "kube-root-ca.crt"])?;
    ensure!(
        root_ca["data"]["ca.crt"].as_str() == Some(read("ca.crt")?.as_str()),
        "ca.crt is not kube-root-ca.crt's"
    );
    let token = read("token")?;
    let payload = token.split('.').nth(1).context("the token is not a JWT")?;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    ensure!(
        claims["sub"] == "system:serviceaccount:tokens:reader"
            && claims["kubernetes.io"]["pod"]["name"] == "client"
            && claims["kubernetes.io"]["pod"]["uid"] == pod["metadata"]["uid"],
        "the token's claims: {claims}"
    );
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    ensure!(lifetime == 3607, "the token lives {lifetime} s, not 3607");

    // Without a binding: 403 with upstream's message, through kubernetes.default.svc.
    let pods_path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let (code, body, stderr) = api_get(cluster, &pods_path);
    ensure!(
        code == Some(1) && stderr.contains("HTTP 403"),
        "without a binding: exit {code:?}, {body} {stderr}"
    );
    ensure!(
        body.contains(
            "pods is forbidden: User \\\"system:serviceaccount:tokens:reader\\\" cannot list resource \\\"pods\\\" in API group \\\"\\\" in the namespace \\\"tokens\\\""
        ),
        "the 403's message: {body}"
    );

    // With one: the pods, as soon as the binding is in force.
    cluster.apply("binding.yaml", BINDING)?;
    let listed = eventually(Duration::from_secs(15), "the pod lists pods", || {
        let (code, body, _) = api_get(cluster, &pods_path);
        Ok((code == Some(0)).then_some(body))
    })
    .await?;
    let list: Value = serde_json::from_str(&listed).context("the list is not JSON")?;
    ensure!(
        list["kind"] == "PodList" && list["items"][0]["metadata"]["name"] == "client",
        "the pod listed {listed}"
    );

    // TokenReview says whose token it is.
    let status = cluster.review_token(&token)?;
    ensure!(
        status["authenticated"] == true
            && status["user"]["username"] == "system:serviceaccount:tokens:reader"
            && status["user"]["extra"]["authentication.kubernetes.io/pod-name"][0] == "client",
        "TokenReview of the pod's token: {status}"
    );

    // Deleting the ServiceAccount kills its tokens: 401 within seconds.
    cluster.kubectl_ok(&["-n", NAMESPACE, "delete", "serviceaccount", "reader"])?;
    let refused_after = Instant::now();
    eventually(Duration::from_secs(10), "the token is refused", || {
        let (_, _, stderr) = api_get(cluster, &pods_path);
        Ok(stderr.contains("HTTP 401").then_some(()))
    })
    .await?;
    eprintln!(
        "token refused {:?} after its ServiceAccount's deletion",
        refused_after.elapsed()
    );
    let status = cluster.review_token(&token)?;
    ensure!(
        status["authenticated"] != true && !status["error"].as_str().unwrap_or_default().is_empty(),
        "TokenReview after the deletion: {status}"
    );

    local.shutdown().await;
    eprintln!("done after {:?}", started.elapsed());
    Ok(())
}
