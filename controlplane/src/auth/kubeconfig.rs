//! The admin kubeconfig `flotilla-controlplane` writes on first start: the CA, the server URL and
//! the admin client certificate embedded, so `KUBECONFIG=<file> kubectl ...` just works.

use std::path::Path;

use base64::{Engine as _, engine::general_purpose::STANDARD};

use super::{AuthError, pki::Pki};

/// Renders a kubeconfig for `server` (e.g. `https://127.0.0.1:6443`) using the admin certificate.
pub fn render(pki: &Pki, server: &str, cluster_name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {cluster_name}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {cluster_name}-admin
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {cluster_name}
  context:
    cluster: {cluster_name}
    user: {cluster_name}-admin
    namespace: default
current-context: {cluster_name}
",
        ca = STANDARD.encode(&pki.ca_cert),
        cert = STANDARD.encode(&pki.admin_cert),
        key = STANDARD.encode(&pki.admin_key),
    )
}

/// Writes the kubeconfig (mode 0600: it holds the admin key).
pub fn write(pki: &Pki, server: &str, cluster_name: &str, path: &Path) -> Result<(), AuthError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| AuthError::Io {
            action: "creating",
            path: parent.to_owned(),
            source,
        })?;
    }
    super::pki::write(path, &render(pki, server, cluster_name), true)
}
