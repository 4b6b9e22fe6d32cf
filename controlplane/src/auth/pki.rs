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
    Issuer, KeyPair, KeyUsagePurpose, SanType,
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
    /// The CA's key (what the CSR signers sign with).
    pub ca_key: String,
    /// The serving certificate.
    pub server_cert: String,
    /// The serving key.
    pub server_key: String,
    /// The admin client certificate.
    pub admin_cert: String,
    /// The admin client key.
    pub admin_key: String,
    /// The certificate the API server presents to node agents (kubelet client).
    pub kubelet_client_cert: String,
    /// Its key.
    pub kubelet_client_key: String,
    /// Client certificate and key of each in-process component, in [`Component::ALL`] order.
    pub components: [(String, String); 3],
}

/// The control plane's in-process clients, each with a client certificate of its own (as
/// kubeadm writes scheduler.conf and controller-manager.conf), so RBAC grants each only what
/// its bootstrap role allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The scheduler (`system:kube-scheduler`).
    Scheduler,
    /// The controllers (`system:kube-controller-manager`).
    ControllerManager,
    /// The cluster DNS (`system:flotilla:dns`).
    Dns,
}

impl Component {
    /// Every component, in the order of [`Pki::components`].
    pub const ALL: [Component; 3] = [Self::Scheduler, Self::ControllerManager, Self::Dns];

    /// The user its certificate names.
    pub fn user(self) -> &'static str {
        LEAVES[self.leaf()].common_name
    }

    /// Its index in [`LEAVES`].
    fn leaf(self) -> usize {
        3 + self as usize
    }
}

impl Pki {
    /// The client certificate and key of `component`.
    pub fn component(&self, component: Component) -> (&str, &str) {
        let (cert, key) = &self.components[component as usize];
        (cert, key)
    }
}

/// A certificate the CA issues: file stem, subject CN, O, usage and SANs.
struct Leaf {
    stem: &'static str,
    common_name: &'static str,
    organization: Option<&'static str>,
    usages: &'static [ExtendedKeyUsagePurpose],
}

impl Leaf {
    fn serves(&self) -> bool {
        self.usages.contains(&ExtendedKeyUsagePurpose::ServerAuth)
    }
}

const LEAVES: [Leaf; 7] = [
    Leaf {
        stem: "apiserver",
        common_name: "flotilla-apiserver",
        organization: None,
        usages: &[ExtendedKeyUsagePurpose::ServerAuth],
    },
    Leaf {
        stem: "admin",
        common_name: "admin",
        organization: Some("system:masters"),
        usages: &[ExtendedKeyUsagePurpose::ClientAuth],
    },
    Leaf {
        stem: "apiserver-kubelet-client",
        common_name: "flotilla-apiserver-kubelet-client",
        organization: Some("system:masters"),
        usages: &[ExtendedKeyUsagePurpose::ClientAuth],
    },
    // The components, in `Component` order.
    Leaf {
        stem: "scheduler",
        common_name: "system:kube-scheduler",
        organization: None,
        usages: &[ExtendedKeyUsagePurpose::ClientAuth],
    },
    Leaf {
        stem: "controller-manager",
        common_name: "system:kube-controller-manager",
        organization: None,
        usages: &[ExtendedKeyUsagePurpose::ClientAuth],
    },
    Leaf {
        stem: "dns",
        common_name: "system:flotilla:dns",
        organization: None,
        usages: &[ExtendedKeyUsagePurpose::ClientAuth],
    },
    // The embedded etcd's member, serving and dialling its peers (kubeadm's etcd/peer).
    Leaf {
        stem: ETCD_PEER,
        common_name: "flotilla-etcd-peer",
        organization: None,
        usages: &[
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    },
];

/// The file stem of the embedded etcd's peer certificate and key in the PKI directory.
pub const ETCD_PEER: &str = "etcd-peer";

impl Pki {
    /// Loads the PKI from `dir`. A missing CA is created; a missing certificate is issued by the
    /// CA (so upgrades add new certificates without invalidating existing kubeconfigs), and so is
    /// a serving certificate that lacks one of `names`, the DNS names and IPs it must be valid
    /// for (loopback always is).
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Self, AuthError> {
        std::fs::create_dir_all(dir).map_err(|source| AuthError::Io {
            action: "creating",
            path: dir.to_owned(),
            source,
        })?;
        let (ca_cert, ca_key) = if dir.join("ca.crt").exists() && dir.join("ca.key").exists() {
            (read(&dir.join("ca.crt"))?, read(&dir.join("ca.key"))?)
        } else {
            let (cert, key) = generate_ca()?;
            write(&dir.join("ca.crt"), &cert, false)?;
            write(&dir.join("ca.key"), &key, true)?;
            (cert, key)
        };
        let signing_key = KeyPair::from_pem(&ca_key)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert, signing_key)?;
        for leaf in &LEAVES {
            let cert_path = dir.join(format!("{}.crt", leaf.stem));
            let key_path = dir.join(format!("{}.key", leaf.stem));
            // A serving certificate lacking a name is issued again with the names it had too:
            // control planes sharing a PKI (`certs --tls-san` for all of them) each add their
            // own run-time names without dropping the others'.
            let served = if leaf.serves() && cert_path.exists() {
                served_names(&read(&cert_path)?)
            } else {
                Vec::new()
            };
            let outdated = leaf.serves() && cert_path.exists() && !covers(&served, names);
            if !cert_path.exists() || !key_path.exists() || outdated {
                let wanted = serving_names(names);
                let mut all = names.to_vec();
                all.extend(served.into_iter().filter(|name| !wanted.contains(name)));
                let (cert, key) = issue(leaf, &all, &issuer)?;
                write(&cert_path, &cert, false)?;
                write(&key_path, &key, true)?;
            }
        }
        let pem = |stem: &str, extension: &str| read(&dir.join(format!("{stem}.{extension}")));
        Ok(Self {
            ca_cert,
            ca_key,
            server_cert: pem("apiserver", "crt")?,
            server_key: pem("apiserver", "key")?,
            admin_cert: pem("admin", "crt")?,
            admin_key: pem("admin", "key")?,
            kubelet_client_cert: pem("apiserver-kubelet-client", "crt")?,
            kubelet_client_key: pem("apiserver-kubelet-client", "key")?,
            components: [
                (pem("scheduler", "crt")?, pem("scheduler", "key")?),
                (
                    pem("controller-manager", "crt")?,
                    pem("controller-manager", "key")?,
                ),
                (pem("dns", "crt")?, pem("dns", "key")?),
            ],
        })
    }

    /// Generates a fresh PKI in memory; returns it and the CA key.
    pub fn generate(names: &[String]) -> Result<(Self, String), AuthError> {
        let (ca_cert, ca_key) = generate_ca()?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert, KeyPair::from_pem(&ca_key)?)?;
        // The etcd peer certificate is only written to disk (etcd reads files).
        let [
            server,
            admin,
            kubelet,
            scheduler,
            controllers,
            dns,
            _etcd_peer,
        ] = LEAVES.each_ref().map(|leaf| issue(leaf, names, &issuer));
        let (server_cert, server_key) = server?;
        let (admin_cert, admin_key) = admin?;
        let (kubelet_client_cert, kubelet_client_key) = kubelet?;
        let components = [scheduler?, controllers?, dns?];
        Ok((
            Self {
                ca_cert,
                ca_key: ca_key.clone(),
                server_cert,
                server_key,
                admin_cert,
                admin_key,
                kubelet_client_cert,
                kubelet_client_key,
                components,
            },
            ca_key,
        ))
    }

    /// Issues a certificate for `common_name` (in `organization`) with `usage`, signed by this
    /// PKI's CA whose key is `ca_key` (used by tests and, later, node agent bootstrap).
    pub fn issue_with(
        ca_cert: &str,
        ca_key: &str,
        common_name: &str,
        sans: &[String],
        server: bool,
    ) -> Result<(String, String), AuthError> {
        let issuer = Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key)?)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.subject_alt_names = subject_alt_names(sans)?;
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issues a client certificate for user `common_name` in group `organization`, signed by the
    /// CA whose key is `ca_key` (node agents' credentials).
    pub fn issue_client_with(
        ca_cert: &str,
        ca_key: &str,
        common_name: &str,
        organization: &str,
    ) -> Result<(String, String), AuthError> {
        let issuer = Issuer::from_ca_cert_pem(ca_cert, KeyPair::from_pem(ca_key)?)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
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

/// A fresh CA (certificate, key) for tests elsewhere in the crate.
#[cfg(test)]
#[allow(clippy::expect_used)] // Tests may panic (project rule).
pub(crate) fn generate_ca_for_tests() -> (String, String) {
    generate_ca().expect("generating a CA")
}

fn generate_ca() -> Result<(String, String), AuthError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "flotilla-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let key_pem = key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(params, key)?;
    Ok((ca.pem(), key_pem))
}

fn issue(
    leaf: &Leaf,
    names: &[String],
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), AuthError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, leaf.common_name);
    if let Some(organization) = leaf.organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
    }
    if leaf.serves() {
        params.subject_alt_names = subject_alt_names(&serving_names(names))?;
    }
    params.extended_key_usages = leaf.usages.to_vec();
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The names a serving certificate is valid for: loopback, the `kubernetes` Service's short
/// names, and `names`.
fn serving_names(names: &[String]) -> Vec<String> {
    let mut all: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "127.0.0.1",
        "::1",
    ]
    .iter()
    .map(|name| (*name).to_owned())
    .collect();
    all.extend(names.iter().cloned());
    all
}

/// The names (DNS names, and IPs in their canonical text) the certificate `pem` is valid for;
/// none if it cannot be read.
fn served_names(pem: &str) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(der) = CertificateDer::from_pem_slice(pem.as_bytes()) else {
        return Vec::new();
    };
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(sans)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    sans.value
        .general_names
        .iter()
        .filter_map(|general| match general {
            GeneralName::DNSName(name) => Some((*name).to_owned()),
            GeneralName::IPAddress(octets) => match octets.len() {
                4 => <[u8; 4]>::try_from(*octets)
                    .ok()
                    .map(|ip| std::net::Ipv4Addr::from(ip).to_string()),
                16 => <[u8; 16]>::try_from(*octets)
                    .ok()
                    .map(|ip| std::net::Ipv6Addr::from(ip).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Whether `served` (from [`served_names`]) holds every name a serving certificate needs now
/// (one issued before a name was added is issued again).
fn covers(served: &[String], names: &[String]) -> bool {
    serving_names(names).iter().all(|name| {
        let canonical = name
            .parse::<IpAddr>()
            .map_or_else(|_| name.clone(), |ip| ip.to_string());
        served.contains(&canonical)
    })
}

/// Whether the certificate `pem` is valid for every name a serving certificate needs now.
#[cfg(test)]
fn serves_all(pem: &str, names: &[String]) -> bool {
    covers(&served_names(pem), names)
}

fn subject_alt_names(names: &[String]) -> Result<Vec<SanType>, AuthError> {
    names
        .iter()
        .map(|name| match name.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(name.as_str().try_into()?)),
        })
        .collect()
}

/// A rustls client configuration for talking to node agents: trusts the CA, presents the
/// kubelet-client certificate.
pub fn kubelet_client_config(pki: &Pki) -> Result<Arc<rustls::ClientConfig>, AuthError> {
    let pem_error = |what: &str, err: rustls::pki_types::pem::Error| AuthError::Pem {
        path: PathBuf::from(what),
        message: err.to_string(),
    };
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(pki.ca_cert.as_bytes()) {
        roots.add(ca.map_err(|err| pem_error("ca.crt", err))?)?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pki.kubelet_client_cert.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|err| pem_error("apiserver-kubelet-client.crt", err))?;
    let key = PrivateKeyDer::from_pem_slice(pki.kubelet_client_key.as_bytes())
        .map_err(|err| pem_error("apiserver-kubelet-client.key", err))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
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

    #[test]
    fn a_serving_certificate_lacking_a_name_is_issued_again() {
        let dir = tempfile::tempdir().unwrap();
        let before = Pki::load_or_create(dir.path(), &["192.168.77.254".into()]).unwrap();
        assert!(serves_all(&before.server_cert, &["192.168.77.254".into()]));
        assert!(!serves_all(&before.server_cert, &["10.96.0.1".into()]));
        // Same names: kept as it is.
        let same = Pki::load_or_create(dir.path(), &["192.168.77.254".into()]).unwrap();
        assert_eq!(same.server_cert, before.server_cert);
        // A name more: issued again by the same CA; the other certificates stay.
        let names = [
            "192.168.77.254".into(),
            "10.96.0.1".into(),
            "kubernetes.default.svc.cluster.local".into(),
        ];
        let after = Pki::load_or_create(dir.path(), &names).unwrap();
        assert_ne!(after.server_cert, before.server_cert);
        assert!(serves_all(&after.server_cert, &names));
        assert_eq!(after.ca_cert, before.ca_cert);
        assert_eq!(after.admin_cert, before.admin_cert);
        // Another control plane sharing the PKI adds its own address; the first's stay.
        let other = Pki::load_or_create(dir.path(), &["192.168.77.253".into()]).unwrap();
        let mut both = names.to_vec();
        both.push("192.168.77.253".into());
        assert!(serves_all(&other.server_cert, &both));
        let served = served_names(&other.server_cert);
        let mut unique = served.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), served.len(), "no name twice: {served:?}");
    }
}
