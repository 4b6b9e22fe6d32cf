//! Admission webhooks against a real control plane: a validating webhook refuses Deployments
//! without a `team` label with its own message, a mutating one adds a label, and a webhook that
//! is down, too slow or answers for another request refuses writes under `failurePolicy: Fail`
//! and lets them through under `Ignore`. A match condition (CEL) leaves out Deployments
//! annotated `skip-validation`, and one that does not compile refuses its configuration. The
//! webhook is an HTTPS server in the test, with a certificate from the cluster's CA, which its
//! configuration's caBundle names.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use flotilla_controlplane::auth::pki::Pki;
use http_body_util::{BodyExt as _, Full};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde_json::{Value, json};

use crate::common::Cluster;

/// How the stand-in webhook answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// As a webhook should.
    Answer,
    /// After 3 s (longer than the configurations' 1 s timeout).
    Slowly,
    /// With another request's uid.
    WrongUid,
}

/// The stand-in webhook: `/validate` refuses Deployments without a `team` label, `/mutate`
/// adds `mutated: "yes"`; every review it gets goes into `seen`. Returns its port.
async fn webhook_server(
    cluster: &Cluster,
    behaviour: Arc<Mutex<Behaviour>>,
    seen: Arc<Mutex<Vec<Value>>>,
) -> anyhow::Result<u16> {
    let pki_dir = cluster.dir.path().join("state/pki");
    let ca_cert = std::fs::read_to_string(pki_dir.join("ca.crt"))?;
    let ca_key = std::fs::read_to_string(pki_dir.join("ca.key"))?;
    let (cert, key) = Pki::issue_with(&ca_cert, &ca_key, "webhook", &["127.0.0.1".into()], true)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert.as_bytes())?],
        PrivateKeyDer::from_pem_slice(key.as_bytes())?,
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let behaviour = Arc::clone(&behaviour);
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let behaviour = *behaviour.lock().unwrap();
                        let seen = Arc::clone(&seen);
                        async move {
                            let path = request.uri().path().to_owned();
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let review: Value = serde_json::from_slice(&body).unwrap();
                            seen.lock().unwrap().push(review.clone());
                            if behaviour == Behaviour::Slowly {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                            }
                            let uid = if behaviour == Behaviour::WrongUid {
                                "not-the-request".to_owned()
                            } else {
                                review["request"]["uid"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned()
                            };
                            let object = &review["request"]["object"];
                            let response = if path == "/validate" {
                                if object["metadata"]["labels"]["team"].is_string() {
                                    json!({"uid": uid, "allowed": true, "warnings": ["team labels are checked", ""]})
                                } else {
                                    json!({"uid": uid, "allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "every Deployment needs a team label"}})
                                }
                            } else {
                                let patch = json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]);
                                let patch = base64::engine::general_purpose::STANDARD
                                    .encode(patch.to_string());
                                json!({"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch})
                            };
                            let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                                answer.to_string(),
                            ))))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok(port)
}

/// The two configurations, pointing at `port`, with `policy` as their failurePolicy.
fn configurations(ca_bundle: &str, port: u16, policy: &str) -> String {
    let hook = |name: &str, path: &str| {
        format!(
            r#"- name: {name}
  clientConfig:
    url: https://127.0.0.1:{port}/{path}
    caBundle: {ca_bundle}
  rules:
  - operations: [CREATE, UPDATE]
    apiGroups: [apps]
    apiVersions: [v1]
    resources: [deployments]
  objectSelector:
    matchExpressions: [{{key: skip-webhooks, operator: DoesNotExist}}]
  matchConditions:
  - name: not-skipped
    expression: "!has(object.metadata.annotations) || !('skip-validation' in object.metadata.annotations)"
  failurePolicy: {policy}
  sideEffects: None
  timeoutSeconds: 1
  admissionReviewVersions: [v1]
"#
        )
    };
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {{name: teams}}\nwebhooks:\n{}---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {{name: marks}}\nwebhooks:\n{}",
        hook("team.example.com", "validate"),
        hook("mark.example.com", "mutate"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_refuse_mutate_and_fail_as_configured() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let behaviour = Arc::new(Mutex::new(Behaviour::Answer));
    let port = webhook_server(&cluster, Arc::clone(&behaviour), Arc::default()).await?;
    let ca = std::fs::read(cluster.dir.path().join("state/pki/ca.crt"))?;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    cluster.apply("hooks.yaml", &configurations(&ca_bundle, port, "Fail"));
    // Every API server follows the configurations through a watch: give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let err = cluster.kubectl_err(&["create", "deployment", "web", "--image=flotilla/testapp:v1"]);
    assert!(
        err.contains(r#"admission webhook "team.example.com" denied the request: every Deployment needs a team label"#),
        "{err}"
    );
    // The match condition leaves out an annotated Deployment: no team label, yet not refused
    // (nor mutated: both webhooks have the condition).
    let unchecked = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: unchecked, labels: {app: web}, annotations: {skip-validation: \"yes\"}}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: flotilla/testapp:v1}]}\n";
    cluster.apply("unchecked.yaml", unchecked);
    let labels = cluster.kubectl_ok(&[
        "get",
        "deployment",
        "unchecked",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(!labels.contains("mutated"), "{labels}");
    cluster.kubectl_ok(&["delete", "deployment", "unchecked"]);

    // A match condition that does not compile refuses its configuration.
    let broken = configurations(&ca_bundle, port, "Fail").replace(
        "!has(object.metadata.annotations) ||",
        "!has(object.metadata.annotations) ||)",
    );
    let path = cluster.write("broken.yaml", &broken);
    let err = cluster.kubectl_err(&["apply", "-f", &path.to_string_lossy()]);
    assert!(
        err.contains(r#"webhooks[0].matchConditions[0].expression: Invalid value: "!has(object.metadata.annotations) ||) !('skip-validation' in object.metadata.annotations)": compilation failed: ERROR: <input>:1:"#),
        "{err}"
    );

    let labelled = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, labels: {app: web, team: blue}}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: flotilla/testapp:v1}]}\n";
    let path = cluster.write("web.yaml", labelled);
    let applied = cluster.kubectl(&["apply", "-f", &path.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&applied.stderr);
    assert!(applied.status.success(), "{stderr}");
    // The validating webhook's warning reaches kubectl (the empty one is left out).
    assert_eq!(stderr.trim(), "Warning: team labels are checked");
    let labels = cluster.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(
        labels.contains(r#""mutated":"yes""#),
        "the mutating webhook's label: {labels}"
    );

    // A webhook that answers for another request is not believed.
    *behaviour.lock().unwrap() = Behaviour::WrongUid;
    let err = cluster.kubectl_err(&["label", "deployment", "web", "tier=front"]);
    assert!(
        err.contains(r#"failed calling webhook "mark.example.com": expected response.uid="#),
        "{err}"
    );

    // Too slow counts as down: Fail refuses.
    *behaviour.lock().unwrap() = Behaviour::Slowly;
    let err = cluster.kubectl_err(&["label", "deployment", "web", "tier=front"]);
    assert!(
        err.contains("failed calling webhook") && err.contains("context deadline exceeded"),
        "{err}"
    );

    // Down: Fail refuses, Ignore lets the write through.
    *behaviour.lock().unwrap() = Behaviour::Answer;
    let down_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    cluster.apply("hooks.yaml", &configurations(&ca_bundle, down_port, "Fail"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = cluster.kubectl_err(&["label", "deployment", "web", "tier=front"]);
    assert!(
        err.contains(r#"failed calling webhook "mark.example.com": failed to call webhook: Post"#),
        "{err}"
    );
    cluster.apply(
        "hooks.yaml",
        &configurations(&ca_bundle, down_port, "Ignore"),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kubectl_ok(&["label", "deployment", "web", "tier=front"]);

    // The object selector leaves out what it does not select, and a webhook cannot lock out
    // its own configuration.
    cluster.apply("hooks.yaml", &configurations(&ca_bundle, down_port, "Fail"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let skipped = labelled
        .replace("name: web,", "name: skipped,")
        .replace("team: blue", "skip-webhooks: \"true\"");
    cluster.apply("skipped.yaml", &skipped);
    cluster.kubectl_ok(&["delete", "validatingwebhookconfiguration", "teams"]);
    cluster.kubectl_ok(&["delete", "mutatingwebhookconfiguration", "marks"]);
    Ok(())
}

const WIDGETS: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
  - {name: v2, served: true, storage: false, schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}}
";

/// A validating webhook for v1 Widgets (at the stand-in's `/validate`) under `policy`.
fn widget_hook(ca_bundle: &str, port: u16, policy: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: widgets}}
webhooks:
- name: widgets.example.com
  clientConfig: {{url: \"https://127.0.0.1:{port}/validate\", caBundle: {ca_bundle}}}
  rules: [{{operations: [CREATE], apiGroups: [example.com], apiVersions: [v1], resources: [widgets]}}]
  matchPolicy: {policy}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
"
    )
}

/// A stand-in webhook that answers as it should and keeps every review: its port, the
/// reviews, and the caBundle that trusts it.
async fn recording_webhook(
    cluster: &Cluster,
) -> anyhow::Result<(u16, Arc<Mutex<Vec<Value>>>, String)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let behaviour = Arc::new(Mutex::new(Behaviour::Answer));
    let port = webhook_server(cluster, behaviour, Arc::clone(&seen)).await?;
    let ca = std::fs::read(cluster.dir.path().join("state/pki/ca.crt"))?;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    Ok((port, seen, ca_bundle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_equivalent_version_is_reviewed_in_the_webhooks_version() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let (port, seen, ca_bundle) = recording_webhook(&cluster).await?;
    cluster.apply("crd.yaml", WIDGETS);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ]);
    cluster.apply("hook.yaml", &widget_hook(&ca_bundle, port, "Equivalent"));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A v2 Widget goes to the webhook registered for v1 (matchPolicy Equivalent), as a v1 object.
    let v2 = |name: &str| {
        format!(
            "apiVersion: example.com/v2\nkind: Widget\nmetadata: {{name: {name}, namespace: default}}\nspec: {{size: 3}}\n"
        )
    };
    let path = cluster.write("blue.yaml", &v2("blue"));
    let err = cluster.kubectl_err(&["create", "-f", &path.to_string_lossy()]);
    assert!(
        err.contains(r#"admission webhook "widgets.example.com" denied the request"#),
        "{err}"
    );
    let review = seen.lock().unwrap().pop().unwrap();
    let request = &review["request"];
    assert_eq!(
        request["kind"],
        json!({"group": "example.com", "version": "v1", "kind": "Widget"})
    );
    assert_eq!(request["resource"]["version"], "v1");
    assert_eq!(request["requestKind"]["version"], "v2");
    assert_eq!(request["requestResource"]["version"], "v2");
    assert_eq!(request["object"]["apiVersion"], "example.com/v1");
    assert_eq!(request["object"]["spec"], json!({"size": 3}));

    // Under Exact the v2 Widget is not the webhook's business.
    cluster.apply("hook.yaml", &widget_hook(&ca_bundle, port, "Exact"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kubectl_ok(&["create", "-f", &path.to_string_lossy()]);
    assert!(seen.lock().unwrap().is_empty());
    let stored = cluster.kubectl_ok(&[
        "get",
        "widgets.v2.example.com",
        "blue",
        "-o",
        "jsonpath={.apiVersion}",
    ]);
    assert_eq!(stored, "example.com/v2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_writes_are_reviewed_as_scales() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let (port, seen, ca_bundle) = recording_webhook(&cluster).await?;
    cluster.kubectl_ok(&["create", "deployment", "web", "--image=flotilla/testapp:v1"]);
    let hook = format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {{name: scales}}
webhooks:
- name: scales.example.com
  clientConfig: {{url: \"https://127.0.0.1:{port}/validate\", caBundle: {ca_bundle}}}
  rules: [{{operations: [UPDATE], apiGroups: [apps], apiVersions: [v1], resources: [deployments/scale]}}]
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
"
    );
    cluster.apply("scales.yaml", &hook);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // An update of the Deployment itself is not the webhook's business.
    cluster.kubectl_ok(&["label", "deployment", "web", "tier=front"]);
    assert!(seen.lock().unwrap().is_empty());
    // A scale is, and the webhook sees a Scale (which has no team label: refused).
    let err = cluster.kubectl_err(&["scale", "deployment", "web", "--replicas=3"]);
    assert!(
        err.contains(r#"admission webhook "scales.example.com" denied the request"#),
        "{err}"
    );
    let review = seen.lock().unwrap().pop().unwrap();
    let request = &review["request"];
    assert_eq!(
        request["kind"],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
    assert_eq!(
        request["resource"],
        json!({"group": "apps", "version": "v1", "resource": "deployments"})
    );
    assert_eq!(request["subResource"], "scale");
    assert_eq!(request["object"]["kind"], "Scale");
    assert_eq!(request["object"]["spec"]["replicas"], 3);
    assert_eq!(request["oldObject"]["spec"]["replicas"], 1);
    let replicas = cluster.kubectl_ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "1");
    Ok(())
}
