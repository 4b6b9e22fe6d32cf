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

pub use flotilla_apimachinery::kubeconfig::render as render_for;

/// The kubeconfig `kube-public/cluster-info` publishes: the server and its CA, no users (what
/// kubeadm writes there).
pub fn render_cluster_info(ca_cert: &str, server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: \"\"
  cluster:
    server: {server}
    certificate-authority-data: {ca}
contexts: null
current-context: \"\"
preferences: {{}}
users: null
",
        ca = STANDARD.encode(ca_cert),
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
