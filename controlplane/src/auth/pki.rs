//! The control plane's certificates: a CA made on first start, the API server's serving
//! certificate (signed by it, for loopback and the configured names) and an admin client
//! certificate (CN=admin, O=system:masters), kept as PEM files in the state directory.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
};

use super::AuthError;

/// PEM files of the control plane's PKI.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA certificate (what clients trust).
    pub ca_cert: String,
    /// The serving certificate.
    pub server_cert: String,
    /// The serving key.
    pub server_key: String,
    /// The admin client certificate.
    pub admin_cert: String,
    /// The admin client key.
    pub admin_key: String,
}

const FILES: [&str; 6] = [
    "ca.crt",
    "ca.key",
    "apiserver.crt",
    "apiserver.key",
    "admin.crt",
    "admin.key",
];

impl Pki {
    /// Loads the PKI from `dir`, creating it on first use. `names` are the DNS names and IPs the
    /// serving certificate is valid for (loopback is always included).
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Self, AuthError> {
        if FILES.iter().all(|file| dir.join(file).exists()) {
            return Ok(Self {
                ca_cert: read(&dir.join("ca.crt"))?,
                server_cert: read(&dir.join("apiserver.crt"))?,
                server_key: read(&dir.join("apiserver.key"))?,
                admin_cert: read(&dir.join("admin.crt"))?,
                admin_key: read(&dir.join("admin.key"))?,
            });
        }
        std::fs::create_dir_all(dir).map_err(|source| AuthError::Io {
            action: "creating",
            path: dir.to_owned(),
            source,
        })?;
        let (pki, ca_key) = Self::generate(names)?;
        for (file, content, secret) in [
            ("ca.crt", &pki.ca_cert, false),
            ("ca.key", &ca_key, true),
            ("apiserver.crt", &pki.server_cert, false),
            ("apiserver.key", &pki.server_key, true),
            ("admin.crt", &pki.admin_cert, false),
            ("admin.key", &pki.admin_key, true),
        ] {
            write(&dir.join(file), content, secret)?;
        }
        Ok(pki)
    }

    /// Generates a fresh PKI; returns it and the CA key.
    pub fn generate(names: &[String]) -> Result<(Self, String), AuthError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "flotilla-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

        let mut server_params = CertificateParams::new(Vec::<String>::new())?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "flotilla-apiserver");
        let mut sans = vec![
            SanType::DnsName("localhost".try_into()?),
            SanType::DnsName("kubernetes".try_into()?),
            SanType::DnsName("kubernetes.default".try_into()?),
            SanType::DnsName("kubernetes.default.svc".try_into()?),
            SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
            SanType::IpAddress(IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1])),
        ];
        for name in names {
            match name.parse::<IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(name.as_str().try_into()?)),
            }
        }
        server_params.subject_alt_names = sans;
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        let mut admin_params = CertificateParams::new(Vec::<String>::new())?;
        admin_params
            .distinguished_name
            .push(DnType::CommonName, "admin");
        admin_params
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_key = KeyPair::generate()?;
        let admin_cert = admin_params.signed_by(&admin_key, &ca)?;

        Ok((
            Self {
                ca_cert: ca.pem(),
                server_cert: server_cert.pem(),
                server_key: server_key.serialize_pem(),
                admin_cert: admin_cert.pem(),
                admin_key: admin_key.serialize_pem(),
            },
            ca_key_pem,
        ))
    }

    /// A rustls server configuration: the serving certificate, and client certificates signed by
    /// the CA accepted but not required (token users have none).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, AuthError> {
        let pem_error = |what: &str, err: rustls::pki_types::pem::Error| AuthError::Pem {
            path: PathBuf::from(what),
            message: err.to_string(),
        };
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server_cert.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|err| pem_error("apiserver.crt", err))?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key.as_bytes())
            .map_err(|err| pem_error("apiserver.key", err))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_cert.as_bytes()) {
            roots.add(ca.map_err(|err| pem_error("ca.crt", err))?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|err| AuthError::Pem {
                    path: PathBuf::from("ca.crt"),
                    message: err.to_string(),
                })?;
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The subject's CN and O values of a DER certificate.
pub fn subject_of(certificate: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let subject = parsed.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_owned();
    let organizations = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_owned)
        .collect();
    Some((common_name, organizations))
}

fn read(path: &Path) -> Result<String, AuthError> {
    std::fs::read_to_string(path).map_err(|source| AuthError::Io {
        action: "reading",
        path: path.to_owned(),
        source,
    })
}

/// Writes `content`; secrets are created mode 0600.
pub(crate) fn write(path: &Path, content: &str, secret: bool) -> Result<(), AuthError> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if secret {
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(content.as_bytes()))
        .map_err(|source| AuthError::Io {
            action: "writing",
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_certificate_names_admin_in_system_masters() {
        let (pki, _) = Pki::generate(&["10.0.0.1".into(), "cp.example".into()]).unwrap();
        let der = CertificateDer::from_pem_slice(pki.admin_cert.as_bytes()).unwrap();
        let (cn, orgs) = subject_of(&der).unwrap();
        assert_eq!(cn, "admin");
        assert_eq!(orgs, vec!["system:masters"]);
        pki.server_config().unwrap();
    }
}
