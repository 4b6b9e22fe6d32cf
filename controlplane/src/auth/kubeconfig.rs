//! The admin kubeconfig `flotilla-controlplane` writes on first start: the CA, the server URL and
//! the admin client certificate embedded, so `KUBECONFIG=<file> kubectl ...` just works.

use std::path::Path;

use base64::{Engine as _, engine::general_purpose::STANDARD};

use super::{AuthError, pki::Pki};

/// Renders a kubeconfig for `server` (e.g. `https://127.0.0.1:6443`) using the admin certificate.
pub fn render(pki: &Pki, server: &str, cluster_name: &str) -> String {
    render_for(
        &pki.ca_cert,
        server,
        cluster_name,
        (
            &format!("{cluster_name}-admin"),
            &pki.admin_cert,
            &pki.admin_key,
        ),
    )
}

/// Renders a kubeconfig for `server`, trusting `ca_cert`, as the user whose client certificate
/// and key are `user` (name, cert, key).
pub fn render_for(
    ca_cert: &str,
    server: &str,
    cluster_name: &str,
    user: (&str, &str, &str),
) -> String {
    let (user_name, cert, key) = user;
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {cluster_name}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user_name}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {cluster_name}
  context:
    cluster: {cluster_name}
    user: {user_name}
    namespace: default
current-context: {cluster_name}
",
        ca = STANDARD.encode(ca_cert),
        cert = STANDARD.encode(cert),
        key = STANDARD.encode(key),
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
