//! Certificate signing requests as upstream's `pkg/apis/certificates` and the kube-controller-
//! manager's `csrsigning` see them: what a PEM request asks for, which requests the built-in
//! `kubernetes.io/*` signers accept, and signing one with the cluster CA.

use std::{net::IpAddr, time::Duration};

use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use x509_parser::{
    certification_request::X509CertificationRequest, extensions::GeneralName,
    extensions::ParsedExtension, prelude::FromDer as _,
};

/// Client certificates of node agents (`system:node:<name>`, group `system:nodes`).
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Client certificates for the API server in general.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// Serving certificates of node agents' kubelet APIs.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The longest certificate the signers issue (kube-controller-manager's
/// `--cluster-signing-duration` default, a year).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// How far back a certificate's validity starts, so clocks a little behind accept it (upstream's
/// backdating).
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The key usages upstream knows, in its order.
pub const KNOWN_USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// What a certificate request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Subject common name.
    pub common_name: String,
    /// Subject organizations.
    pub organizations: Vec<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Email and URI subject alternative names (no built-in signer accepts them).
    pub other_names: Vec<String>,
}

/// Parses a PEM `CERTIFICATE REQUEST`; the error is upstream's reason.
pub fn parse(pem: &[u8]) -> Result<Request, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|_| "PEM block type must be CERTIFICATE REQUEST".to_owned())?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err("PEM block type must be CERTIFICATE REQUEST".to_owned());
    }
    let (_, csr) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|err| format!("x509: malformed certificate request: {err}"))?;
    let subject = &csr.certification_request_info.subject;
    let mut request = Request {
        common_name: subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned(),
        organizations: subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .map(str::to_owned)
            .collect(),
        ..Request::default()
    };
    for extension in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(sans) = extension else {
            continue;
        };
        for name in &sans.general_names {
            match name {
                GeneralName::DNSName(dns) => request.dns_names.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => request.ip_addresses.push(IpAddr::from(
                        <[u8; 4]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    16 => request.ip_addresses.push(IpAddr::from(
                        <[u8; 16]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    _ => request.other_names.push(format!("{name:?}")),
                },
                other => request.other_names.push(format!("{other:?}")),
            }
        }
    }
    Ok(request)
}

fn usages_are(usages: &[String], with_rsa: &[&str], without_rsa: &[&str]) -> bool {
    fn set<'a>(list: impl Iterator<Item = &'a str>) -> std::collections::BTreeSet<&'a str> {
        list.collect()
    }
    let given = set(usages.iter().map(String::as_str));
    given == set(with_rsa.iter().copied()) || given == set(without_rsa.iter().copied())
}

/// Upstream's `ValidateKubeletClientCSR`: what `kube-apiserver-client-kubelet` signs.
pub fn check_kubelet_client(request: &Request, usages: &[String]) -> Result<(), String> {
    if request.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if !request.dns_names.is_empty() {
        return Err("DNS subjectAltNames are not allowed".into());
    }
    if !request.ip_addresses.is_empty() {
        return Err("IP subjectAltNames are not allowed".into());
    }
    if !request.other_names.is_empty() {
        return Err("Email and URI subjectAltNames are not allowed".into());
    }
    if !request.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    if !usages_are(
        usages,
        &["digital signature", "key encipherment", "client auth"],
        &["digital signature", "client auth"],
    ) {
        return Err("usages did not match [client auth digital signature key encipherment]".into());
    }
    Ok(())
}

/// Upstream's `ValidateKubeletServingCSR`: what `kubelet-serving` signs.
pub fn check_kubelet_serving(request: &Request, usages: &[String]) -> Result<(), String> {
    if request.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if !request.other_names.is_empty() {
        return Err("Email and URI subjectAltNames are not allowed".into());
    }
    if request.dns_names.is_empty() && request.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !request.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    if !usages_are(
        usages,
        &["digital signature", "key encipherment", "server auth"],
        &["digital signature", "server auth"],
    ) {
        return Err("usages did not match [digital signature key encipherment server auth]".into());
    }
    Ok(())
}

/// Whether `signer` is one of the signers the control plane runs, and if so whether it accepts
/// the request.
pub fn check_for_signer(signer: &str, request: &Request, usages: &[String]) -> Result<(), String> {
    match signer {
        KUBELET_CLIENT_SIGNER => check_kubelet_client(request, usages),
        KUBELET_SERVING_SIGNER => check_kubelet_serving(request, usages),
        CLIENT_SIGNER => {
            if usages_are(
                usages,
                &["digital signature", "key encipherment", "client auth"],
                &["digital signature", "client auth"],
            ) || usages == ["client auth"]
            {
                Ok(())
            } else {
                Err("usages did not match [client auth digital signature key encipherment]".into())
            }
        }
        other => Err(format!("{other} is not a signer this control plane runs")),
    }
}

/// Signs the PEM request with the CA (`ca_cert`, `ca_key`, PEM) for `duration` (at most
/// [`MAX_DURATION`]) with `usages`; the certificate as PEM.
pub fn sign(
    request_pem: &str,
    usages: &[String],
    ca_cert: &str,
    ca_key: &str,
    duration: Duration,
) -> Result<String, String> {
    let mut csr = CertificateSigningRequestParams::from_pem(request_pem)
        .map_err(|err| format!("the request cannot be signed: {err}"))?;
    let issuer = Issuer::from_ca_cert_pem(
        ca_cert,
        KeyPair::from_pem(ca_key).map_err(|err| err.to_string())?,
    )
    .map_err(|err| err.to_string())?;
    let now = time::OffsetDateTime::now_utc();
    let params = &mut csr.params;
    params.not_before = now - BACKDATE;
    params.not_after = now + duration.min(MAX_DURATION);
    params.serial_number = Some(SerialNumber::from_slice(
        uuid::Uuid::new_v4().as_bytes().as_slice(),
    ));
    params.key_usages = usages
        .iter()
        .filter_map(|usage| match usage.as_str() {
            "digital signature" | "signing" => Some(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            "content commitment" => Some(KeyUsagePurpose::ContentCommitment),
            "key agreement" => Some(KeyUsagePurpose::KeyAgreement),
            "data encipherment" => Some(KeyUsagePurpose::DataEncipherment),
            _ => None,
        })
        .collect();
    params.extended_key_usages = usages
        .iter()
        .filter_map(|usage| match usage.as_str() {
            "client auth" => Some(ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => Some(ExtendedKeyUsagePurpose::ServerAuth),
            "code signing" => Some(ExtendedKeyUsagePurpose::CodeSigning),
            "email protection" => Some(ExtendedKeyUsagePurpose::EmailProtection),
            "timestamping" => Some(ExtendedKeyUsagePurpose::TimeStamping),
            "ocsp signing" => Some(ExtendedKeyUsagePurpose::OcspSigning),
            _ => None,
        })
        .collect();
    params.use_authority_key_identifier_extension = true;
    let certificate = csr.signed_by(&issuer).map_err(|err| err.to_string())?;
    Ok(certificate.pem())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (project rule).

    use rcgen::{CertificateParams, DnType};
    use rustls::pki_types::pem::PemObject as _;

    use super::*;

    fn request(common_name: &str, organization: &str, sans: &[&str]) -> String {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        let key = KeyPair::generate().unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn usages(list: &[&str]) -> Vec<String> {
        list.iter().map(|u| (*u).to_owned()).collect()
    }

    #[test]
    fn kubelet_requests_are_checked_as_upstream_does() {
        let client = parse(request("system:node:n1", "system:nodes", &[]).as_bytes()).unwrap();
        assert_eq!(client.common_name, "system:node:n1");
        let client_usages = usages(&["digital signature", "client auth"]);
        check_kubelet_client(&client, &client_usages).unwrap();
        assert_eq!(
            check_kubelet_client(&client, &usages(&["client auth", "server auth"])).unwrap_err(),
            "usages did not match [client auth digital signature key encipherment]"
        );
        let admin = parse(request("admin", "system:masters", &[]).as_bytes()).unwrap();
        assert_eq!(
            check_kubelet_client(&admin, &client_usages).unwrap_err(),
            "subject organization is not system:nodes"
        );
        let serving =
            parse(request("system:node:n1", "system:nodes", &["n1", "192.168.77.11"]).as_bytes())
                .unwrap();
        assert_eq!(serving.dns_names, ["n1"]);
        assert_eq!(
            serving.ip_addresses,
            ["192.168.77.11".parse::<IpAddr>().unwrap()]
        );
        check_kubelet_serving(&serving, &usages(&["digital signature", "server auth"])).unwrap();
        assert_eq!(
            check_kubelet_client(&serving, &client_usages).unwrap_err(),
            "DNS subjectAltNames are not allowed"
        );
        assert_eq!(
            parse(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap_err(),
            "PEM block type must be CERTIFICATE REQUEST"
        );
    }

    #[test]
    fn signed_certificates_carry_the_request_and_the_usages() {
        let (ca_cert, ca_key) = super::super::pki::generate_ca_for_tests();
        let pem = request("system:node:n1", "system:nodes", &[]);
        let signed = sign(
            &pem,
            &usages(&["digital signature", "client auth"]),
            &ca_cert,
            &ca_key,
            Duration::from_secs(3600),
        )
        .unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(signed.as_bytes()).unwrap();
        let (cn, orgs) = super::super::pki::subject_of(&der).unwrap();
        assert_eq!(
            (cn.as_str(), orgs),
            ("system:node:n1", vec!["system:nodes".to_owned()])
        );
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let validity = parsed.validity();
        let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
        assert_eq!(lifetime, 3600 + 300);
    }
}
