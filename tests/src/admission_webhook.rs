//! The admission webhook the test app serves (`flotilla-testapp webhook`, like upstream's
//! `agnhost webhook`): AdmissionReview v1 over HTTPS, each behaviour at a path of its own so
//! that one server backs several webhook configurations.
//!
//! - `POST /require-label/<key>` refuses an object without the label `<key>`, with the message
//!   `every <Kind> needs a "<key>" label` (403 Forbidden in the response's status).
//! - `POST /add-label/<key>/<value>` allows it with a JSONPatch that sets the label.
//! - `POST /sleep/<seconds>` allows it after that long (a webhook slower than its timeout).

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{Json, Router, extract::Path as UrlPath, routing::post};
use base64::Engine as _;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto::Builder,
    service::TowerToHyperService,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// The answer to `review` (an AdmissionReview v1 request) with `response`'s fields beside the
/// request's uid.
fn answer(review: &Value, mut response: Value) -> Json<Value> {
    response["uid"] = review["request"]["uid"].clone();
    Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    }))
}

/// Refuses objects without the label `key`.
fn require_label(review: &Value, key: &str) -> Value {
    let object = &review["request"]["object"];
    if object["metadata"]["labels"][key].is_string() {
        json!({"allowed": true})
    } else {
        let kind = review["request"]["kind"]["kind"]
            .as_str()
            .unwrap_or("object");
        json!({
            "allowed": false,
            "status": {
                "code": 403,
                "reason": "Forbidden",
                "message": format!("every {kind} needs a \"{key}\" label"),
            },
        })
    }
}

/// Allows the object with a JSONPatch setting the label `key` to `value`.
fn add_label(review: &Value, key: &str, value: &str) -> Value {
    let has_labels = review["request"]["object"]["metadata"]["labels"].is_object();
    // A JSON Pointer escapes `~` and `/` in a key.
    let pointer_key = key.replace('~', "~0").replace('/', "~1");
    let patch = if has_labels {
        json!([{"op": "add", "path": format!("/metadata/labels/{pointer_key}"), "value": value}])
    } else {
        json!([{"op": "add", "path": "/metadata/labels", "value": {key: value}}])
    };
    json!({
        "allowed": true,
        "patchType": "JSONPatch",
        "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string()),
    })
}

/// The webhook's routes.
fn router() -> Router {
    Router::new()
        .route(
            "/require-label/{key}",
            post(|UrlPath(key): UrlPath<String>, Json(review): Json<Value>| async move {
                answer(&review, require_label(&review, &key))
            }),
        )
        .route(
            "/add-label/{key}/{value}",
            post(
                |UrlPath((key, value)): UrlPath<(String, String)>, Json(review): Json<Value>| async move {
                    answer(&review, add_label(&review, &key, &value))
                },
            ),
        )
        .route(
            "/sleep/{seconds}",
            post(|UrlPath(seconds): UrlPath<u64>, Json(review): Json<Value>| async move {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                answer(&review, json!({"allowed": true}))
            }),
        )
}

/// Serves the webhook over HTTPS on `address` with the PEM certificate and key at the given
/// paths, until the task is dropped.
pub async fn serve(address: SocketAddr, cert_file: &Path, key_file: &Path) -> anyhow::Result<()> {
    let cert = std::fs::read(cert_file)
        .with_context(|| format!("reading the certificate {}", cert_file.display()))?;
    let key = std::fs::read(key_file)
        .with_context(|| format!("reading the private key {}", key_file.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .with_context(|| format!("parsing {}", key_file.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("the certificate and key do not make a TLS identity")?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the webhook to {address}"))?;
    let service = TowerToHyperService::new(router());
    loop {
        let (stream, client) = listener.accept().await.context("accepting")?;
        let acceptor = acceptor.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(tls) => tls,
                Err(err) => return println!("webhook {client}: TLS: {err}"),
            };
            println!("webhook {client}: connected");
            if let Err(err) = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                println!("webhook {client}: {err}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(labels: Value) -> Value {
        json!({
            "request": {
                "uid": "u1",
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "object": {"metadata": {"name": "web", "labels": labels}},
            },
        })
    }

    #[test]
    fn a_missing_label_is_refused_with_its_name() {
        assert_eq!(
            require_label(&review(json!({"team": "a"})), "team"),
            json!({"allowed": true})
        );
        let refused = require_label(&review(json!({"app": "web"})), "team");
        assert_eq!(refused["allowed"], false);
        assert_eq!(
            refused["status"]["message"],
            "every Deployment needs a \"team\" label"
        );
        let Json(answer) = answer(&review(Value::Null), refused);
        assert_eq!(answer["response"]["uid"], "u1");
        assert_eq!(answer["kind"], "AdmissionReview");
    }

    #[test]
    fn a_label_is_added_with_or_without_a_labels_map() {
        let patch = |labels: Value| -> Value {
            let response = add_label(&review(labels), "example.com/mutated", "yes");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(response["patch"].as_str().unwrap())
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        assert_eq!(
            patch(json!({"app": "web"})),
            json!([{"op": "add", "path": "/metadata/labels/example.com~1mutated", "value": "yes"}])
        );
        assert_eq!(
            patch(Value::Null),
            json!([{"op": "add", "path": "/metadata/labels", "value": {"example.com/mutated": "yes"}}])
        );
    }
}
