//! The kubelet API's TLS: the node's serving certificate (`--tls-cert-file`,
//! `--tls-private-key-file`) and mandatory client certificates signed by `--client-ca-file`.
//!
//! Unlike kubelet we accept no anonymous or bearer-token requests at all: the only client of this
//! API is the API server, which always presents its kubelet-client certificate, and exec into any
//! pod must never be one missing flag away from being open.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};

/// Why the kubelet API's TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {what} {path}: {source}")]
    Read {
        /// Which file it is meant to be (e.g. "the client CA file").
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{what} {path} holds no valid PEM {kind}: {message}")]
    Pem {
        /// Which file it is meant to be.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What was looked for ("CERTIFICATE", "PRIVATE KEY").
        kind: &'static str,
        /// The parser's complaint.
        message: String,
    },
    /// rustls refused the certificates or key (e.g. key does not match the certificate).
    #[error("building the kubelet API's TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA could not be turned into a verifier.
    #[error("building the client certificate verifier from {path}: {message}")]
    Verifier {
        /// The client CA file.
        path: PathBuf,
        /// rustls' complaint.
        message: String,
    },
}

/// The files kubelet's flags name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// `--tls-cert-file`: the serving certificate (chain), PEM.
    pub cert: PathBuf,
    /// `--tls-private-key-file`: its key, PEM.
    pub key: PathBuf,
    /// `--client-ca-file`: CA certificates that sign acceptable client certificates, PEM.
    pub client_ca: PathBuf,
}

/// A rustls server configuration that serves `files.cert` and requires a client certificate
/// signed by one of the CAs in `files.client_ca`. Speaks HTTP/1.1 only: exec, attach and
/// port-forward are HTTP/1.1 upgrades.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = read(&files.cert, "the serving certificate")?;
    let key_pem = read(&files.key, "the serving key")?;
    let ca_pem = read(&files.client_ca, "the client CA file")?;
    server_config_from_pem(&cert_pem, &key_pem, &ca_pem, files)
}

/// Like [`server_config`], from PEM text already in memory; `files` only names the sources in
/// errors.
pub fn server_config_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    ca_pem: &[u8],
    files: &TlsFiles,
) -> Result<Arc<ServerConfig>, TlsError> {
    let pem_error = |what, path: &Path, kind, message: String| TlsError::Pem {
        what,
        path: path.to_owned(),
        kind,
        message,
    };
    let chain = certificates(cert_pem)
        .map_err(|m| pem_error("the serving certificate", &files.cert, "CERTIFICATE", m))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|err| {
        pem_error(
            "the serving key",
            &files.key,
            "PRIVATE KEY",
            err.to_string(),
        )
    })?;
    let mut roots = RootCertStore::empty();
    for ca in certificates(ca_pem)
        .map_err(|m| pem_error("the client CA file", &files.client_ca, "CERTIFICATE", m))?
    {
        roots.add(ca)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|err| TlsError::Verifier {
            path: files.client_ca.clone(),
            message: err.to_string(),
        })?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in `pem`; at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let all = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| err.to_string())?;
    if all.is_empty() {
        return Err("no CERTIFICATE block found".into());
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> TlsFiles {
        TlsFiles {
            cert: "/etc/kubelet.crt".into(),
            key: "/etc/kubelet.key".into(),
            client_ca: "/etc/ca.crt".into(),
        }
    }

    #[test]
    fn empty_files_name_what_is_wrong() {
        let err = server_config_from_pem(b"", b"", b"", &files()).unwrap_err();
        assert!(
            err.to_string()
                .contains("the serving certificate /etc/kubelet.crt"),
            "{err}"
        );
    }

    #[test]
    fn missing_files_name_their_flag_role() {
        let err = server_config(&TlsFiles {
            cert: "/nonexistent/kubelet.crt".into(),
            ..files()
        })
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("reading the serving certificate /nonexistent/kubelet.crt"),
            "{err}"
        );
    }
}
