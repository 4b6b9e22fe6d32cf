//! Credentials for a node agent, issued by the cluster CA as kubeadm's join does: a client
//! certificate for `system:node:<name>` (group system:nodes) inside a kubeconfig, and a serving
//! certificate for the agent's kubelet API valid for the node's address.

use std::path::{Path, PathBuf};

use super::{AuthError, pki::Pki};

/// The files a node agent needs, as written by [`write_node_credentials`].
#[derive(Clone, Debug)]
pub struct NodeCredentials {
    /// Kubeconfig with the node's client certificate.
    pub kubeconfig: PathBuf,
    /// Serving certificate of the kubelet API.
    pub serving_cert: PathBuf,
    /// Its key.
    pub serving_key: PathBuf,
    /// The cluster CA (to verify the API server's client certificate).
    pub client_ca: PathBuf,
}

/// Issues and writes the credentials of node `name` at `address` into `out`, for an API server
/// at `server`, with the CA kept in `pki_dir` (ca.crt, ca.key).
pub fn write_node_credentials(
    pki_dir: &Path,
    name: &str,
    address: &str,
    server: &str,
    out: &Path,
) -> Result<NodeCredentials, AuthError> {
    let read = |file: &str| {
        let path = pki_dir.join(file);
        std::fs::read_to_string(&path).map_err(|source| AuthError::Io {
            action: "reading",
            path,
            source,
        })
    };
    let ca_cert = read("ca.crt")?;
    let ca_key = read("ca.key")?;
    let user = format!("system:node:{name}");
    let (client_cert, client_key) =
        Pki::issue_client_with(&ca_cert, &ca_key, &user, "system:nodes")?;
    let (serving_cert, serving_key) = Pki::issue_with(
        &ca_cert,
        &ca_key,
        name,
        &[address.to_owned(), name.to_owned()],
        true,
    )?;
    std::fs::create_dir_all(out).map_err(|source| AuthError::Io {
        action: "creating",
        path: out.to_owned(),
        source,
    })?;
    let kubeconfig = super::kubeconfig::render_for(
        &ca_cert,
        server,
        "flotilla",
        (&user, &client_cert, &client_key),
    );
    let credentials = NodeCredentials {
        kubeconfig: out.join("kubeconfig"),
        serving_cert: out.join("kubelet.crt"),
        serving_key: out.join("kubelet.key"),
        client_ca: out.join("ca.crt"),
    };
    super::pki::write(&credentials.kubeconfig, &kubeconfig, true)?;
    super::pki::write(&credentials.serving_cert, &serving_cert, false)?;
    super::pki::write(&credentials.serving_key, &serving_key, true)?;
    super::pki::write(&credentials.client_ca, &ca_cert, false)?;
    Ok(credentials)
}
