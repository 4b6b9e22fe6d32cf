//! Joining with a bootstrap token, against a real control plane: `token create` prints the join
//! command; the join reads cluster-info without credentials, checks the token's signature and the
//! CA hash, and gets the node's client and serving certificates through CertificateSigningRequests
//! the control plane approves and signs. A wrong secret, a wrong CA hash and an expired token each
//! fail with a clear message and leave no Node and no credentials behind. An admin approves or
//! denies other requests with `kubectl certificate approve|deny`.

use std::time::Duration;

use anyhow::{Context as _, ensure};
use flotilla_agent::join::{CredentialPaths, JoinRequest, join};
use flotilla_controlplane::{auth::bootstrap_tokens, etcd::free_port, run::Config};

use crate::support::{Cluster, eventually};

/// The value after `flag` in a join command.
pub(crate) fn flag(command: &str, flag: &str) -> anyhow::Result<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == flag)
        .with_context(|| format!("{flag} missing from {command:?}"))?;
    Ok(words.get(at + 1).context("no value")?.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_join_with_a_bootstrap_token() -> anyhow::Result<()> {
    let dir = flotilla_testbed::run_dir("join")?;
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let config = Config {
        etcd_ports: (free_port()?, free_port()?),
        ..Config::new(dir.path().join("state"), listen)
    };
    let cluster = Cluster::start(dir, config).await?;
    let state = cluster.dir.path().join("state");

    let created =
        bootstrap_tokens::create(&state, Some(Duration::from_secs(3600)), "join test").await;
    let created = created.map_err(anyhow::Error::msg)?;
    let command = &created.join_command;
    ensure!(
        command.starts_with(&format!("flotilla-agent join https://{listen} --token ")),
        "{command}"
    );
    let hash = flag(command, "--discovery-token-ca-cert-hash")?;
    let request = |token: &str, hash: &str| JoinRequest {
        server: format!("https://{listen}"),
        token: token.to_owned(),
        ca_cert_hash: hash.to_owned(),
        node: "joiner".to_owned(),
        address: "192.0.2.10".to_owned(),
        timeout: Duration::from_secs(20),
    };
    let paths = CredentialPaths::in_dir(&cluster.dir.path().join("joiner"));
    // cluster-info is signed for the token as soon as the controller sees it.
    eventually(
        Duration::from_secs(15),
        "cluster-info signed for the token",
        || {
            let info = cluster.json(&["-n", "kube-public", "get", "configmap", "cluster-info"])?;
            let id = &created.token[..6];
            Ok(info["data"][format!("jws-kubeconfig-{id}")]
                .is_string()
                .then_some(()))
        },
    )
    .await?;

    // Refusals: each says why, and nothing is left.
    let (id, _) = created.token.split_once('.').context("token")?;
    let wrong_secret = format!("{id}.0000000000000000");
    let err = join(&request(&wrong_secret, &hash), &paths)
        .await
        .unwrap_err();
    ensure!(
        err.to_string().contains("failed to verify JWS signature"),
        "a wrong secret: {err}"
    );
    let wrong_hash = format!("sha256:{}", "0".repeat(64));
    let err = join(&request(&created.token, &wrong_hash), &paths)
        .await
        .unwrap_err();
    ensure!(
        err.to_string().contains("none of the public keys"),
        "a wrong CA hash: {err}"
    );
    let err = join(&request("not-a-token", &hash), &paths)
        .await
        .unwrap_err();
    ensure!(
        err.to_string().contains("is not a bootstrap token"),
        "{err}"
    );
    let expiring = bootstrap_tokens::create(&state, Some(Duration::from_secs(1)), "expiring").await;
    let expiring = expiring.map_err(anyhow::Error::msg)?;
    // The token cleaner deletes the expired token's Secret, and its signature goes with it.
    let secret = format!("bootstrap-token-{}", &expiring.token[..6]);
    eventually(Duration::from_secs(20), "the expired token deleted", || {
        let output = cluster.kubectl(&["-n", "kube-system", "get", "secret", &secret]);
        Ok((!output.status.success()).then_some(()))
    })
    .await?;
    let err = join(&request(&expiring.token, &hash), &paths)
        .await
        .unwrap_err();
    ensure!(
        err.to_string().contains("there is no JWS signed token"),
        "an expired token: {err}"
    );
    ensure!(
        !paths.kubeconfig.exists(),
        "a failed join wrote credentials"
    );

    // The good token: client and serving certificates, approved and signed.
    join(&request(&created.token, &hash), &paths).await?;
    let user = whoami(&cluster, &paths.kubeconfig);
    ensure!(
        user == "system:node:joiner",
        "the joined node's kubeconfig: {user:?}"
    );
    let serving = std::fs::read_to_string(&paths.serving_cert)?;
    ensure!(serving.contains("BEGIN CERTIFICATE"), "{serving}");
    let csrs = cluster.kubectl_ok(&["get", "csr", "--no-headers"])?;
    ensure!(
        csrs.lines().count() == 2 && csrs.lines().all(|l| l.contains("Approved,Issued")),
        "the node's requests:\n{csrs}"
    );
    ensure!(
        csrs.contains("kubernetes.io/kube-apiserver-client-kubelet   system:bootstrap:")
            && csrs.contains("kubernetes.io/kubelet-serving"),
        "signers and requestors:\n{csrs}"
    );
    // TokenReview knows the token too.
    let reviewed = cluster.review_token(&created.token)?;
    ensure!(
        reviewed["authenticated"] == true
            && reviewed["user"]["username"] == format!("system:bootstrap:{id}"),
        "TokenReview of the bootstrap token: {reviewed}"
    );
    // Renewal: new certificates through requests the node makes as itself (selfnodeclient),
    // due 80% into the first one's year.
    let due = flotilla_agent::join::renewal_due(&paths)?;
    let year = 365 * 24 * 3600;
    let now = jiff::Timestamp::now().as_second();
    ensure!(
        (due - now - year * 4 / 5).abs() < 600,
        "renewal due in {} s",
        due - now
    );
    let before = std::fs::read_to_string(&paths.client_cert)?;
    flotilla_agent::join::renew(&paths, "joiner", "192.0.2.10", Duration::from_secs(20)).await?;
    ensure!(
        std::fs::read_to_string(&paths.client_cert)? != before,
        "renewal kept the old client certificate"
    );
    let renewed = cluster.json(&["get", "csr"])?;
    let by_node: Vec<&serde_json::Value> = renewed["items"]
        .as_array()
        .context("items")?
        .iter()
        .filter(|csr| {
            csr["spec"]["username"] == "system:node:joiner"
                && csr["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"
        })
        .collect();
    ensure!(
        by_node.len() == 1
            && by_node[0]["status"]["conditions"][0]["message"]
                == "Auto approving self kubelet client certificate after SubjectAccessReview.",
        "the renewal's request: {by_node:?}"
    );
    let user = whoami(&cluster, &paths.kubeconfig);
    ensure!(
        user == "system:node:joiner",
        "the renewed kubeconfig: {user:?}"
    );
    let nodes = cluster.kubectl_ok(&["get", "nodes", "-o", "name"])?;
    ensure!(nodes.trim().is_empty(), "joining registered nodes: {nodes}");

    // Other requests wait for an admin.
    let pem = |cn: &str| -> anyhow::Result<String> {
        let key = rcgen_request(cn)?;
        Ok(base64_encode(&key))
    };
    for (name, decision) in [("jane", "approve"), ("joe", "deny")] {
        let manifest = format!(
            "apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata: {{name: {name}}}
spec:
  request: {}
  signerName: kubernetes.io/kube-apiserver-client
  usages: [digital signature, client auth]
",
            pem(name)?
        );
        cluster.apply(&format!("{name}.yaml"), &manifest)?;
        let row = cluster.kubectl_ok(&["get", "csr", name, "--no-headers"])?;
        ensure!(row.contains("Pending"), "{row}");
        cluster.kubectl_ok(&["certificate", decision, name])?;
    }
    eventually(Duration::from_secs(15), "jane's certificate issued", || {
        let row = cluster.kubectl_ok(&["get", "csr", "jane", "--no-headers"])?;
        Ok(row.contains("Approved,Issued").then_some(()))
    })
    .await?;
    let joe = cluster.kubectl_ok(&["get", "csr", "joe", "--no-headers"])?;
    ensure!(joe.contains("Denied") && !joe.contains("Issued"), "{joe}");

    if let Some(control_plane) = cluster.control_plane {
        control_plane.stop().await;
    }
    Ok(())
}

/// Who `kubeconfig` authenticates as (`kubectl auth whoami`).
fn whoami(cluster: &Cluster, kubeconfig: &std::path::Path) -> String {
    let output = cluster.kubectl(&[
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A PEM certificate request for `cn`.
fn rcgen_request(cn: &str) -> anyhow::Result<String> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate()?;
    Ok(params.serialize_request(&key)?.pem()?)
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
