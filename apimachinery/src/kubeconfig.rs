//! Kubeconfig files as kubectl reads them, for the control plane (its admin's) and the node
//! agents (what `join` writes).

use base64::{Engine as _, engine::general_purpose::STANDARD};

/// Renders a kubeconfig for `server`, trusting `ca_cert`, as the user whose client certificate
/// and key are `user` (name, cert, key).
pub fn render(ca_cert: &str, server: &str, cluster_name: &str, user: (&str, &str, &str)) -> String {
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
