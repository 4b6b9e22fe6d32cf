//! `flotilla-agent join`: a new node gets its credentials with nothing but a bootstrap token and
//! the hash of the cluster CA's public key, as `kubeadm join` does:
//! 1. discovery: `kube-public/cluster-info` is read without credentials (the server is not
//!    trusted yet); its kubeconfig must carry the token's signature (`jws-kubeconfig-<id>`, which
//!    only a server knowing the token's secret can make) and a CA whose public key has the hash;
//! 2. TLS bootstrap: with the token, over TLS checked against that CA, a CertificateSigningRequest
//!    for `system:node:<name>` (group `system:nodes`), which the control plane approves and
//!    signs; then, as the node, one for the kubelet API's serving certificate;
//! 3. the kubeconfig, the serving certificate and key, and the CA are written (keys mode 0600)
//!    where `flotilla-agent run` looks for them.
//!
//! Later the node renews both certificates the same way, as itself, at 80% of their lifetime.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use flotilla_apimachinery::bootstrap;
use k8s_openapi::api::{certificates::v1::CertificateSigningRequest, core::v1::ConfigMap};
use kube::{Api, Client, api::PostParams};
use rcgen::{CertificateParams, DnType, KeyPair};
use rustls::pki_types::{CertificateDer, pem::PemObject as _};
use serde_json::json;

/// Client certificates of node agents.
const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Serving certificates of node agents' kubelet APIs.
const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// Where a node's credentials are, as `join` writes them and `run` reads them.
#[derive(Debug, Clone)]
pub struct CredentialPaths {
    /// Kubeconfig with the node's client certificate.
    pub kubeconfig: PathBuf,
    /// The client certificate alone (what rotation reads).
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// The kubelet API's serving certificate.
    pub serving_cert: PathBuf,
    /// Its key.
    pub serving_key: PathBuf,
    /// The cluster CA.
    pub client_ca: PathBuf,
}

impl CredentialPaths {
    /// The files in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            kubeconfig: dir.join("kubeconfig"),
            client_cert: dir.join("kubelet-client.crt"),
            client_key: dir.join("kubelet-client.key"),
            serving_cert: dir.join("kubelet.crt"),
            serving_key: dir.join("kubelet.key"),
            client_ca: dir.join("ca.crt"),
        }
    }
}

/// What `join` needs.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The API server, `https://host:port`.
    pub server: String,
    /// The bootstrap token `<id>.<secret>`.
    pub token: String,
    /// `sha256:<hex>` of the CA's public key.
    pub ca_cert_hash: String,
    /// The node's name.
    pub node: String,
    /// The node's address (its serving certificate names it).
    pub address: String,
    /// How long to wait for each certificate to be issued.
    pub timeout: Duration,
}

/// Why a node could not join; each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The token is not `<id>.<secret>`.
    #[error(
        "the token {0:?} is not a bootstrap token: it must be <6 characters [a-z0-9]>.<16 characters [a-z0-9]>, as `flotilla-controlplane token create` prints it"
    )]
    BadToken(String),
    /// The hash is not `sha256:<64 hex>`.
    #[error("--discovery-token-ca-cert-hash {0:?} is not sha256:<64 hex digits>")]
    BadHash(String),
    /// The server could not be asked.
    #[error("{what}: {source}")]
    Api {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Discovery failed: the server cannot be trusted.
    #[error("{0}")]
    Untrusted(String),
    /// The control plane denied or failed a request, or did not sign in time.
    #[error("{0}")]
    NotIssued(String),
    /// A local step failed (keys, files).
    #[error("{0}")]
    Local(String),
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> JoinError {
    let what = what.into();
    move |source| JoinError::Api { what, source }
}

/// Joins the cluster and writes the node's credentials to `paths`.
pub async fn join(request: &JoinRequest, paths: &CredentialPaths) -> Result<(), JoinError> {
    let (id, secret) = bootstrap::parse_token(&request.token)
        .ok_or_else(|| JoinError::BadToken(request.token.clone()))?;
    let hash = request.ca_cert_hash.to_ascii_lowercase();
    let valid_hash = hash
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()));
    if !valid_hash {
        return Err(JoinError::BadHash(request.ca_cert_hash.clone()));
    }
    let ca_pem = discover(&request.server, id, secret, &hash).await?;
    let bootstrap_client =
        client_for(&request.server, &ca_pem, Auth::Token(&request.token)).await?;
    let credentials = Issue {
        server: &request.server,
        ca_pem: &ca_pem,
        node: &request.node,
        address: &request.address,
        timeout: request.timeout,
    };
    credentials.issue_and_write(&bootstrap_client, paths).await
}

/// Renews the node's certificates before they expire: new ones through CSRs made as the node
/// itself (approved by `selfnodeclient`), written over the old ones. The caller restarts what
/// holds the old ones.
pub async fn renew(
    paths: &CredentialPaths,
    node: &str,
    address: &str,
    timeout: Duration,
) -> Result<(), JoinError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|err| JoinError::Local(format!("reading {}: {err}", path.display())))
    };
    let ca_pem = read(&paths.client_ca)?;
    let (cert, key) = (read(&paths.client_cert)?, read(&paths.client_key)?);
    let kubeconfig = kube::config::Kubeconfig::read_from(&paths.kubeconfig).map_err(|err| {
        JoinError::Local(format!("reading {}: {err}", paths.kubeconfig.display()))
    })?;
    let server = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .ok_or_else(|| {
            JoinError::Local(format!("{} names no server", paths.kubeconfig.display()))
        })?;
    let node_client = client_for(&server, &ca_pem, Auth::Certificate(&cert, &key)).await?;
    let credentials = Issue {
        server: &server,
        ca_pem: &ca_pem,
        node,
        address,
        timeout,
    };
    credentials.issue_and_write(&node_client, paths).await
}

/// When the node's certificates should be renewed (Unix seconds): 80% into the lifetime of the
/// one that expires first, as kubelet renews between 70% and 90%.
pub fn renewal_due(paths: &CredentialPaths) -> Result<i64, JoinError> {
    let mut due = i64::MAX;
    for path in [&paths.client_cert, &paths.serving_cert] {
        let pem = std::fs::read(path)
            .map_err(|err| JoinError::Local(format!("reading {}: {err}", path.display())))?;
        let der = CertificateDer::from_pem_slice(&pem)
            .map_err(|err| JoinError::Local(format!("{}: {err}", path.display())))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|err| JoinError::Local(format!("{}: {err}", path.display())))?;
        let validity = parsed.validity();
        due = due.min(eighty_percent(
            validity.not_before.timestamp(),
            validity.not_after.timestamp(),
        ));
    }
    Ok(due)
}

/// 80% of the way from `not_before` to `not_after`.
fn eighty_percent(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before) / 5 * 4
}

/// What issuing the node's certificates needs.
struct Issue<'a> {
    server: &'a str,
    ca_pem: &'a str,
    node: &'a str,
    address: &'a str,
    timeout: Duration,
}

impl Issue<'_> {
    /// Asks `client`'s user for a client certificate, then as the node for a serving one, and
    /// writes all the files.
    async fn issue_and_write(
        &self,
        client: &Client,
        paths: &CredentialPaths,
    ) -> Result<(), JoinError> {
        let user = format!("system:node:{}", self.node);
        let (client_cert, client_key) = certificate(
            client,
            &user,
            &[],
            KUBELET_CLIENT_SIGNER,
            &["digital signature", "client auth"],
            self.timeout,
        )
        .await?;
        let kubeconfig = flotilla_apimachinery::kubeconfig::render(
            self.ca_pem,
            self.server,
            "flotilla",
            (&user, &client_cert, &client_key),
        );
        let node_client = client_for(
            self.server,
            self.ca_pem,
            Auth::Certificate(&client_cert, &client_key),
        )
        .await?;
        let (serving_cert, serving_key) = certificate(
            &node_client,
            &user,
            &[self.node.to_owned(), self.address.to_owned()],
            KUBELET_SERVING_SIGNER,
            &["digital signature", "server auth"],
            self.timeout,
        )
        .await?;
        let ca_pem = self.ca_pem.to_owned();
        // The kubeconfig last: its presence means the node has joined.
        for (path, content, private) in [
            (&paths.client_ca, &ca_pem, false),
            (&paths.client_cert, &client_cert, false),
            (&paths.client_key, &client_key, true),
            (&paths.serving_cert, &serving_cert, false),
            (&paths.serving_key, &serving_key, true),
            (&paths.kubeconfig, &kubeconfig, true),
        ] {
            write(path, content, private)?;
        }
        Ok(())
    }
}

/// Reads cluster-info without trusting the server, checks the token's signature and the CA's
/// hash; the CA (PEM).
async fn discover(server: &str, id: &str, secret: &str, hash: &str) -> Result<String, JoinError> {
    let mut config =
        kube::Config::new(server.parse().map_err(|err| {
            JoinError::Local(format!("the server {server:?} is not a URL: {err}"))
        })?);
    // Nothing is trusted yet: what is read is checked with the token and the hash below.
    config.accept_invalid_certs = true;
    let anonymous =
        Client::try_from(config).map_err(api_error("building a client for discovery"))?;
    let info: ConfigMap = Api::namespaced(anonymous, bootstrap::PUBLIC_NAMESPACE)
        .get(bootstrap::CLUSTER_INFO)
        .await
        .map_err(api_error(format!(
            "reading {}/{} from {server}",
            bootstrap::PUBLIC_NAMESPACE,
            bootstrap::CLUSTER_INFO
        )))?;
    let data = info.data.unwrap_or_default();
    let kubeconfig = data.get(bootstrap::KUBECONFIG_KEY).ok_or_else(|| {
        JoinError::Untrusted(format!(
            "the {} ConfigMap has no {} key",
            bootstrap::CLUSTER_INFO,
            bootstrap::KUBECONFIG_KEY
        ))
    })?;
    let signature = data
        .get(&format!("{}{id}", bootstrap::JWS_PREFIX))
        .ok_or_else(|| {
            JoinError::Untrusted(format!(
                "there is no JWS signed token in the {} ConfigMap. This token id {id:?} is \
                 invalid for this cluster, or it has expired. Create a new one with \
                 `flotilla-controlplane token create`",
                bootstrap::CLUSTER_INFO
            ))
        })?;
    if !bootstrap::signature_is_valid(signature, kubeconfig, id, secret) {
        return Err(JoinError::Untrusted(format!(
            "failed to verify JWS signature of received {} object, can't trust this API Server \
             (is the token's secret right?)",
            bootstrap::CLUSTER_INFO
        )));
    }
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig)
        .map_err(|err| JoinError::Untrusted(format!("the cluster-info kubeconfig: {err}")))?;
    let ca_data = parsed
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.clone())
        .ok_or_else(|| JoinError::Untrusted("the cluster-info kubeconfig has no CA".into()))?;
    let ca_pem = String::from_utf8(
        STANDARD
            .decode(ca_data.trim())
            .map_err(|err| JoinError::Untrusted(format!("the cluster-info CA: {err}")))?,
    )
    .map_err(|err| JoinError::Untrusted(format!("the cluster-info CA: {err}")))?;
    let der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|err| JoinError::Untrusted(format!("the cluster-info CA: {err}")))?;
    let actual = bootstrap::ca_cert_hash(der.as_ref()).map_err(JoinError::Untrusted)?;
    if actual != hash {
        return Err(JoinError::Untrusted(format!(
            "cluster CA found in cluster-info ConfigMap is invalid: none of the public keys \
             \"{actual}\" are pinned (--discovery-token-ca-cert-hash {hash})"
        )));
    }
    Ok(ca_pem)
}

/// How a client authenticates.
enum Auth<'a> {
    /// A bearer token.
    Token(&'a str),
    /// A client certificate and key (PEM).
    Certificate(&'a str, &'a str),
}

/// A client of `server` trusting only `ca_pem`.
async fn client_for(server: &str, ca_pem: &str, auth: Auth<'_>) -> Result<Client, JoinError> {
    let user = match auth {
        Auth::Token(token) => json!({"token": token}),
        Auth::Certificate(cert, key) => json!({
            "client-certificate-data": STANDARD.encode(cert),
            "client-key-data": STANDARD.encode(key),
        }),
    };
    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server,
                      "certificate-authority-data": STANDARD.encode(ca_pem)}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    });
    let kubeconfig: kube::config::Kubeconfig = serde_json::from_value(kubeconfig)
        .map_err(|err| JoinError::Local(format!("building a kubeconfig: {err}")))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|err| JoinError::Local(format!("building a client: {err}")))?;
    Client::try_from(config).map_err(api_error("building a client"))
}

/// Asks for a certificate for `user` (group system:nodes) with `sans` from `signer`, waits for
/// it; the certificate and its new key (PEM).
async fn certificate(
    client: &Client,
    user: &str,
    sans: &[String],
    signer: &str,
    usages: &[&str],
    timeout: Duration,
) -> Result<(String, String), JoinError> {
    let key = KeyPair::generate().map_err(|err| JoinError::Local(format!("a new key: {err}")))?;
    let mut params = CertificateParams::new(sans.to_vec())
        .map_err(|err| JoinError::Local(format!("the request's names {sans:?}: {err}")))?;
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:nodes");
    params.distinguished_name.push(DnType::CommonName, user);
    let request_pem = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|err| JoinError::Local(format!("the certificate request: {err}")))?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let object: CertificateSigningRequest = serde_json::from_value(json!({
        "metadata": {"generateName": "node-csr-"},
        "spec": {"request": STANDARD.encode(&request_pem), "signerName": signer, "usages": usages},
    }))
    .map_err(|err| JoinError::Local(format!("the CertificateSigningRequest: {err}")))?;
    let created = api
        .create(&PostParams::default(), &object)
        .await
        .map_err(api_error(format!("asking {signer} for a certificate")))?;
    let name = created.metadata.name.unwrap_or_default();
    let started = Instant::now();
    loop {
        let current = api.get(&name).await.map_err(api_error(format!(
            "reading CertificateSigningRequest {name}"
        )))?;
        let status = current.status.unwrap_or_default();
        if let Some(certificate) = status.certificate.filter(|c| !c.0.is_empty()) {
            let pem = String::from_utf8_lossy(&certificate.0).into_owned();
            return Ok((pem, key.serialize_pem()));
        }
        if let Some(refused) = status
            .conditions
            .iter()
            .flatten()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
        {
            return Err(JoinError::NotIssued(format!(
                "CertificateSigningRequest {name} ({signer}) was {}: {} {}",
                refused.type_.to_lowercase(),
                refused.reason.as_deref().unwrap_or_default(),
                refused.message.as_deref().unwrap_or_default()
            )));
        }
        if started.elapsed() > timeout {
            return Err(JoinError::NotIssued(format!(
                "CertificateSigningRequest {name} ({signer}) was not issued within {timeout:?}; \
                 an admin may approve it with `kubectl certificate approve {name}`"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes `content` to `path` (creating its directory), mode 0600 when `private`.
fn write(path: &Path, content: &str, private: bool) -> Result<(), JoinError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let failed =
        |err: std::io::Error| JoinError::Local(format!("writing {}: {err}", path.display()));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(path)
        .map_err(failed)?;
    std::io::Write::write_all(&mut file, content.as_bytes()).map_err(failed)
}

/// Waits until the node's certificates are due for renewal ([`renewal_due`]) and renews them,
/// trying again every minute while renewal fails; returns once new ones are written.
pub async fn renew_when_due(paths: &CredentialPaths, node: &str, address: &str) {
    const RECHECK: i64 = 3600;
    loop {
        let now = jiff::Timestamp::now().as_second();
        let wait = match renewal_due(paths) {
            Ok(due) => due - now,
            Err(err) => {
                tracing::warn!("reading the node's certificates for renewal: {err}");
                RECHECK
            }
        };
        if wait > 0 {
            let seconds = u64::try_from(wait.min(RECHECK)).unwrap_or(60);
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            continue;
        }
        match renew(paths, node, address, Duration::from_secs(60)).await {
            Ok(()) => {
                tracing::info!("renewed the node's client and serving certificates");
                return;
            }
            Err(err) => {
                tracing::warn!("renewing the node's certificates (retrying in a minute): {err}");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_at_eighty_percent() {
        assert_eq!(eighty_percent(1000, 2000), 1800);
        assert_eq!(eighty_percent(0, 365 * 86400), 292 * 86400);
    }
}
