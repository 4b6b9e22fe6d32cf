//! Admission webhooks served by pods, end to end: `flotilla-testapp webhook` runs in a
//! Deployment behind a Service with a certificate for `webhook.hooks.svc` from a TLS Secret;
//! the API server reaches the pod over the routes the control plane keeps to each node's
//! podCIDR. A validating webhook refuses a Deployment without a `team` label with its message,
//! a mutating one adds a label, a webhook slower than its timeout counts as down, and with the
//! webhook's pods gone `failurePolicy: Fail` refuses writes while `Ignore` lets them through.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use base64::Engine as _;
use flotilla_controlplane::auth::pki::Pki;

use crate::support::{LocalCluster, eventually, require_root};

const WEBHOOK: &str = "apiVersion: v1
kind: Service
metadata: {name: webhook, namespace: hooks}
spec:
  selector: {app: webhook}
  ports: [{port: 443, targetPort: 8443}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: webhook, namespace: hooks}
spec:
  selector: {matchLabels: {app: webhook}}
  template:
    metadata: {labels: {app: webhook}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: webhook
        image: flotilla/testapp:v1
        args: [webhook, --tls-cert-file=/tls/tls.crt, --tls-private-key-file=/tls/tls.key]
        volumeMounts: [{name: tls, mountPath: /tls, readOnly: true}]
      volumes: [{name: tls, secret: {secretName: webhook-tls}}]
";

/// The validating and mutating configurations for Deployments in namespaces labelled
/// `admission: checked`, with `policy` as their failurePolicy. A third validating webhook,
/// for Deployments labelled `slow: "yes"`, answers after 3 s with a timeout of 1 s.
fn configurations(ca_bundle: &str, policy: &str) -> String {
    let hook = |name: &str, path: &str, object_selector: &str| {
        format!(
            "- name: {name}
  clientConfig:
    service: {{namespace: hooks, name: webhook, path: {path}}}
    caBundle: {ca_bundle}
  rules: [{{operations: [CREATE, UPDATE], apiGroups: [apps], apiVersions: [v1], resources: [deployments]}}]
  namespaceSelector: {{matchLabels: {{admission: checked}}}}
  objectSelector: {object_selector}
  failurePolicy: {policy}
  sideEffects: None
  timeoutSeconds: 1
  admissionReviewVersions: [v1]
"
        )
    };
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: teams}}
webhooks:
{}{}---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {{name: marks}}
webhooks:
{}",
        hook("team.example.com", "/require-label/team", "{}"),
        hook(
            "slow.example.com",
            "/sleep/3",
            "{matchLabels: {slow: \"yes\"}}"
        ),
        hook("mark.example.com", "/add-label/mutated/yes", "{}"),
    )
}

/// A Deployment `name` in the checked namespace with these labels (YAML flow mapping
/// entries).
fn deployment(name: &str, labels: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: apps, labels: {{{labels}}}}}
spec:
  replicas: 0
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: web, image: flotilla/testapp:v1}}]}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_served_by_pods_refuse_mutate_and_fail_as_configured() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 1).await?;
    let cluster = &local.cluster;
    let dir = cluster.dir.path();

    // The webhook's serving certificate, from the cluster's CA, which the caBundle names.
    let ca_cert = std::fs::read_to_string(dir.join("state/pki/ca.crt"))?;
    let ca_key = std::fs::read_to_string(dir.join("state/pki/ca.key"))?;
    let (cert, key) = Pki::issue_with(
        &ca_cert,
        &ca_key,
        "webhook",
        &["webhook.hooks.svc".to_owned()],
        true,
    )?;
    std::fs::write(dir.join("webhook.crt"), cert)?;
    std::fs::write(dir.join("webhook.key"), key)?;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&ca_cert);

    cluster.kubectl_ok(&["create", "namespace", "hooks"])?;
    cluster.kubectl_ok(&["create", "namespace", "apps"])?;
    cluster.kubectl_ok(&["label", "namespace", "apps", "admission=checked"])?;
    cluster.kubectl_ok(&[
        "-n",
        "hooks",
        "create",
        "secret",
        "tls",
        "webhook-tls",
        &format!("--cert={}", dir.join("webhook.crt").display()),
        &format!("--key={}", dir.join("webhook.key").display()),
    ])?;
    cluster.apply("webhook.yaml", WEBHOOK)?;
    let ready_endpoint = || -> anyhow::Result<Option<()>> {
        let slices = cluster.json(&[
            "-n",
            "hooks",
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=webhook",
        ])?;
        let ready = slices["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|slice| {
                slice["endpoints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|endpoint| endpoint["conditions"]["ready"] == true)
            });
        Ok(ready.then_some(()))
    };
    eventually(
        Duration::from_secs(90),
        "a ready webhook endpoint",
        ready_endpoint,
    )
    .await?;
    eprintln!("webhook ready after {:?}", started.elapsed());

    cluster.apply("hooks.yaml", &configurations(&ca_bundle, "Fail"))?;
    // Every API server follows the configurations through a watch: give it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let refused = |name: &str, labels: &str| -> anyhow::Result<String> {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, deployment(name, labels))?;
        let output = cluster.kubectl(&["apply", "-f", &path.to_string_lossy()]);
        ensure!(
            !output.status.success(),
            "the Deployment {name} was admitted: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        Ok(String::from_utf8_lossy(&output.stderr).into_owned())
    };

    // The validating webhook's own message reaches the user.
    let err = refused("nolabel", "app: web")?;
    ensure!(
        err.contains(
            r#"admission webhook "team.example.com" denied the request: every Deployment needs a "team" label"#
        ),
        "{err}"
    );
    // A Deployment with the label is admitted, and the mutating webhook labelled it.
    cluster.apply("labelled.yaml", &deployment("labelled", "team: blue"))?;
    let labels =
        cluster.json(&["-n", "apps", "get", "deployment", "labelled"])?["metadata"]["labels"]
            .clone();
    ensure!(
        labels["mutated"] == "yes" && labels["team"] == "blue",
        "the mutating webhook's label: {labels}"
    );
    // Too slow counts as down.
    let err = refused("slow", "team: blue, slow: \"yes\"")?;
    ensure!(
        err.contains(r#"failed calling webhook "slow.example.com""#)
            && err.contains("context deadline exceeded"),
        "{err}"
    );
    eprintln!("webhooks answered after {:?}", started.elapsed());

    // The webhook's pods gone: Fail refuses, saying why; Ignore lets the write through.
    cluster.kubectl_ok(&[
        "-n",
        "hooks",
        "scale",
        "deployment",
        "webhook",
        "--replicas=0",
    ])?;
    eventually(Duration::from_secs(60), "no webhook endpoint", || {
        Ok(ready_endpoint()?.is_none().then_some(()))
    })
    .await?;
    let err = refused("down", "team: blue")?;
    ensure!(
        err.contains(r#"failed calling webhook "mark.example.com""#)
            && err.contains(r#"no endpoints available for service "webhook""#),
        "{err}"
    );
    cluster.apply("hooks.yaml", &configurations(&ca_bundle, "Ignore"))?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster
        .apply("down.yaml", &deployment("down", "team: blue"))
        .context("with failurePolicy Ignore and the webhook down")?;
    let labels =
        cluster.json(&["-n", "apps", "get", "deployment", "down"])?["metadata"]["labels"].clone();
    ensure!(labels.get("mutated").is_none(), "{labels}");

    local.shutdown().await;
    eprintln!("done after {:?}", started.elapsed());
    Ok(())
}
