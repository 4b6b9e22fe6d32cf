//! An API client as software in a pod makes one, the way client-go's `InClusterConfig` does:
//! the ServiceAccount token, the cluster CA and the namespace come from the files every pod has
//! at `/var/run/secrets/kubernetes.io/serviceaccount`, the server is `kubernetes.default.svc`
//! (found through the pod's resolv.conf, search list included) and its certificate is checked
//! against that CA. `flotilla-testapp api-get` runs it inside test pods.

use std::{net::IpAddr, path::Path, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};

/// Where a pod finds its token, the CA and its namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How long connecting, the TLS handshake and the answer may take together.
const TIMEOUT: Duration = Duration::from_secs(15);

/// An answer: the HTTP status and the body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// GETs `path` from `https://<host>:<port>` with the credentials in `credentials_dir`.
pub async fn get(
    host: &str,
    port: u16,
    path: &str,
    credentials_dir: &Path,
) -> anyhow::Result<Answer> {
    tokio::time::timeout(TIMEOUT, get_unbounded(host, port, path, credentials_dir))
        .await
        .with_context(|| format!("no answer from {host}:{port} within {TIMEOUT:?}"))?
}

async fn get_unbounded(
    host: &str,
    port: u16,
    path: &str,
    credentials_dir: &Path,
) -> anyhow::Result<Answer> {
    let read = |name: &str| {
        let file = credentials_dir.join(name);
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))
    };
    let token = read("token")?;
    let ca = read("ca.crt")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots
            .add(cert.context("parsing ca.crt")?)
            .context("adding ca.crt")?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();

    let ip = resolve(host).await?;
    let tcp = tokio::net::TcpStream::connect((ip, port))
        .await
        .with_context(|| format!("connecting to {host} ({ip}) port {port}"))?;
    let server_name = ServerName::try_from(host.to_owned()).context("the server's name")?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .with_context(|| format!("TLS with {host}: is its certificate signed by ca.crt?"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()),
        )
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::USER_AGENT, "flotilla-testapp")
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let response = sender
        .send_request(request)
        .await
        .context("sending the request")?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .context("reading the answer")?
        .to_bytes();
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The first IPv4 address of `host` by the system's resolver configuration (a statically
/// linked program has no NSS, so the lookup is made here, search list and all).
async fn resolve(host: &str) -> anyhow::Result<IpAddr> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    let resolver = hickory_resolver::Resolver::builder_tokio()
        .context("reading /etc/resolv.conf")?
        .build()
        .context("building the resolver")?;
    let found = resolver
        .lookup_ip(host)
        .await
        .with_context(|| format!("looking up {host}"))?;
    match found.iter().find(IpAddr::is_ipv4) {
        Some(ip) => Ok(ip),
        None => bail!("{host} has no IPv4 address"),
    }
}
