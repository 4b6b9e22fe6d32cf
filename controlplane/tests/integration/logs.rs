//! `kubectl logs` through the API server to a node agent's kubelet-style log endpoint.
//!
//! The node agent is not built yet, so a small stand-in plays its part here: an HTTPS server with
//! a certificate from the cluster CA that requires the API server's kubelet-client certificate
//! and answers `/containerLogs/<ns>/<pod>/<container>` the way the agent must.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::{convert::Infallible, sync::Arc, time::Duration};

use crate::common::Cluster;
use bytes::Bytes;
use flotilla_controlplane::{auth::pki::Pki, etcd::free_port};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};

/// Serves container logs like a node agent; returns its port.
async fn stand_in_agent(cluster: &Cluster) -> anyhow::Result<u16> {
    let pki_dir = cluster.dir.path().join("state/pki");
    let ca_cert = std::fs::read_to_string(pki_dir.join("ca.crt"))?;
    let ca_key = std::fs::read_to_string(pki_dir.join("ca.key"))?;
    let (cert, key) = Pki::issue_with(&ca_cert, &ca_key, "node-1", &["127.0.0.1".into()], true)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_cert.as_bytes())?)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
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
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let path = request.uri().path().to_owned();
                        let query = request.uri().query().unwrap_or_default().to_owned();
                        let body: http_body_util::combinators::BoxBody<Bytes, Infallible> = if path
                            == "/containerLogs/default/p/web"
                            && query.contains("follow=true")
                        {
                            let lines = futures::stream::unfold(0, |i| async move {
                                if i == 3 {
                                    return None;
                                }
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                Some((
                                    Ok::<_, Infallible>(Frame::data(Bytes::from(format!(
                                        "follow {i}\n"
                                    )))),
                                    i + 1,
                                ))
                            });
                            StreamBody::new(lines).boxed()
                        } else if path == "/containerLogs/default/p/web" {
                            Full::new(Bytes::from(format!("hello from web\nquery: {query}\n")))
                                .boxed()
                        } else if path == "/containerLogs/default/p/sidecar" {
                            Full::new(Bytes::from("hello from sidecar\n")).boxed()
                        } else {
                            return Ok::<_, Infallible>(http::Response::builder().status(400).body(Full::new(Bytes::from("container \"x\" in pod \"p\" is waiting to start: ContainerCreating")).boxed()).unwrap());
                        };
                        Ok(http::Response::new(body))
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

/// A node that is not ready (so the scheduler leaves the pod to the test's own binding), as a
/// kubelet registers one: Ready=False and the not-ready taint.
fn node(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\nspec:\n  taints: [{{key: node.kubernetes.io/not-ready, effect: NoSchedule}}]\nstatus:\n  conditions: [{{type: Ready, status: \"False\"}}]\n  addresses: [{{type: InternalIP, address: 127.0.0.1}}]\n  daemonEndpoints: {{kubeletEndpoint: {{Port: {port}}}}}\n"
    )
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec:\n  containers:\n  - {name: web, image: flotilla/testapp:v1}\n  - {name: sidecar, image: busybox:1.36}\n";

fn bind(cluster: &Cluster, pod: &str, node: &str) {
    let output = std::process::Command::new("curl")
        .args(["-sk", "--max-time", "10", "-X", "POST", "-H"])
        .arg(format!("Authorization: Bearer {}", cluster.control_plane.admin_token))
        .args(["-H", "Content-Type: application/json", "-d"])
        .arg(format!(r#"{{"apiVersion":"v1","kind":"Binding","metadata":{{"name":"{pod}"}},"target":{{"kind":"Node","name":"{node}"}}}}"#))
        .arg(format!("{}/api/v1/namespaces/default/pods/{pod}/binding", cluster.url()))
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(answer.contains("\"Success\""), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_logs_reaches_the_node_agent() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let port = stand_in_agent(&cluster).await?;
    cluster.kubectl_ok(&[
        "create",
        "-f",
        &cluster
            .write("node.yaml", &node("node-1", port))
            .to_string_lossy(),
    ]);
    cluster.kubectl_ok(&[
        "create",
        "-f",
        &cluster.write("pod.yaml", POD).to_string_lossy(),
    ]);

    let err = cluster.kubectl_err(&["logs", "p", "-c", "web"]);
    assert!(err.contains("pod p does not have a host assigned"), "{err}");

    bind(&cluster, "p", "node-1");
    let out = cluster.kubectl_ok(&["logs", "p", "-c", "web", "--tail=5", "--timestamps"]);
    assert!(out.starts_with("hello from web\n"), "{out}");
    assert!(
        out.contains("tailLines=5") && out.contains("timestamps=true"),
        "{out}"
    );
    let out = cluster.kubectl_ok(&["logs", "p", "-c", "sidecar"]);
    assert_eq!(out, "hello from sidecar\n");
    let out = cluster.kubectl_ok(&["logs", "-f", "p", "-c", "web"]);
    assert_eq!(out, "follow 0\nfollow 1\nfollow 2\n");
    let err = cluster.kubectl_err(&["logs", "p", "-c", "nope"]);
    assert!(
        err.contains("container nope is not valid for pod p"),
        "{err}"
    );

    // A node whose agent does not answer: a clear 503, quickly.
    let dead_port = free_port()?;
    cluster.kubectl_ok(&[
        "create",
        "-f",
        &cluster
            .write("node2.yaml", &node("node-2", dead_port))
            .to_string_lossy(),
    ]);
    cluster.kubectl_ok(&[
        "create",
        "-f",
        &cluster
            .write("pod2.yaml", &POD.replace("name: p,", "name: q,"))
            .to_string_lossy(),
    ]);
    bind(&cluster, "q", "node-2");
    let err = cluster.kubectl_err(&["logs", "q", "-c", "web"]);
    assert!(
        err.contains("cannot reach the agent of node node-2"),
        "{err}"
    );
    Ok(())
}
