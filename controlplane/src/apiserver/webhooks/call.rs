//! One AdmissionReview exchange with a webhook: where it is (a URL, or a Service resolved to
//! one of its ready endpoints, as kube-apiserver's endpoint routing does), TLS checked against
//! the webhook's `caBundle` (the system's roots without one), a POST bounded by the webhook's
//! timeout, and upstream's checks of the answer.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
use serde_json::Value;
use tokio_rustls::TlsConnector;

use crate::storage::Store;

/// The largest answer read from a webhook.
const MAX_ANSWER_BYTES: usize = 3 * 1024 * 1024;

/// Where a webhook listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Where to connect.
    pub host: String,
    /// The port.
    pub port: u16,
    /// The name the certificate must carry (`<service>.<namespace>.svc` for a Service).
    pub server_name: String,
    /// The request path.
    pub path: String,
    /// How errors name it (`https://...`, as upstream's `Post "<url>"`).
    pub url: String,
}

/// Where `client_config` (a webhook's clientConfig) points, a Service resolved through `store`.
pub async fn endpoint_of(store: &Store, client_config: &Value) -> Result<Endpoint, String> {
    if let Some(url) = client_config["url"].as_str() {
        let uri: http::Uri = url
            .parse()
            .map_err(|err| format!("invalid url {url:?}: {err}"))?;
        let host = uri
            .host()
            .ok_or_else(|| format!("url {url:?} has no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        return Ok(Endpoint {
            server_name: host.clone(),
            port: uri.port_u16().unwrap_or(443),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            host,
            url: url.to_owned(),
        });
    }
    let service = &client_config["service"];
    let namespace = service["namespace"].as_str().unwrap_or_default();
    let name = service["name"].as_str().unwrap_or_default();
    let port = service["port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(443);
    let path = service["path"].as_str().unwrap_or("/").to_owned();
    let url = format!("https://{name}.{namespace}.svc:{port}{path}");
    let (address, target_port) = service_endpoint(store, namespace, name, port)
        .await
        .map_err(|err| format!("Post {url:?}: {err}"))?;
    Ok(Endpoint {
        host: address.to_string(),
        port: target_port,
        server_name: format!("{name}.{namespace}.svc"),
        path,
        url,
    })
}

/// A ready endpoint of the Service port `port`: its address and the target port.
async fn service_endpoint(
    store: &Store,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<(IpAddr, u16), String> {
    let service = store
        .get(&format!("/registry/services/specs/{namespace}/{name}"))
        .await
        .map_err(|_| format!("service \"{name}\" not found"))?
        .object;
    let service_port = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        .ok_or_else(|| format!("service \"{name}\" has no port {port}"))?;
    let port_name = service_port["name"].as_str().unwrap_or_default();
    let slices = store
        .list(&format!("/registry/endpointslices/{namespace}/"), 0, None)
        .await
        .map_err(|err| err.to_string())?;
    for slice in slices.items {
        let slice = slice.object;
        if slice["metadata"]["labels"]["kubernetes.io/service-name"] != name {
            continue;
        }
        let Some(target) = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            if endpoint["conditions"]["ready"] == Value::Bool(false) {
                continue;
            }
            if let Some(address) = endpoint["addresses"][0]
                .as_str()
                .and_then(|a| a.parse().ok())
            {
                return Ok((address, target));
            }
        }
    }
    Err(format!("no endpoints available for service \"{name}\""))
}

/// The TLS client for a webhook: its caBundle (base64 of PEM certificates) or the system's
/// roots.
pub fn tls_config(ca_bundle: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_bundle.filter(|b| !b.is_empty()) {
        Some(bundle) => {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(bundle)
                .map_err(|err| format!("caBundle is not base64: {err}"))?;
            for certificate in CertificateDer::pem_slice_iter(&pem) {
                let certificate = certificate.map_err(|err| format!("caBundle: {err}"))?;
                roots
                    .add(certificate)
                    .map_err(|err| format!("caBundle: {err}"))?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
        }
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// POSTs `review` to `endpoint` within `timeout` and returns the decoded answer. Errors read as
/// upstream's (`Post "<url>": ...`).
pub async fn post(
    endpoint: &Endpoint,
    tls: Arc<rustls::ClientConfig>,
    review: &Value,
    timeout: Duration,
) -> Result<Value, String> {
    let url = &endpoint.url;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|err| format!("dial tcp {}:{}: {err}", endpoint.host, endpoint.port))?;
        let server_name = match endpoint.server_name.parse::<IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(endpoint.server_name.clone())
                .map_err(|err| format!("invalid server name: {err}"))?,
        };
        let stream = TlsConnector::from(tls)
            .connect(server_name, stream)
            .await
            .map_err(|err| format!("tls: {err}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|err| err.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let body = serde_json::to_vec(review).map_err(|err| err.to_string())?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(endpoint.path.as_str())
            .header(
                header::HOST,
                format!("{}:{}", endpoint.server_name, endpoint.port),
            )
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, */*")
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| err.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| err.to_string())?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|err| format!("reading the answer: {err}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "the server responded with the status code {} but did not return more information",
                status.as_u16()
            ));
        }
        serde_json::from_slice::<Value>(&bytes)
            .map_err(|err| format!("the answer is not JSON: {err}"))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(format!("Post {url:?}: {err}")),
        Err(_) => Err(format!(
            "Post {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}
