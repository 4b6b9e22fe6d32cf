//! Bootstrap tokens as upstream's `k8s.io/cluster-bootstrap` defines them: the `<id>.<secret>`
//! token format, the Secret that holds one, the detached JWS with which the control plane signs
//! `kube-public/cluster-info` for each token (so a joining node can check the CA it is told about
//! with nothing but its token), and the CA public-key hash of `--discovery-token-ca-cert-hash`.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::Digest as _;

/// The namespace bootstrap token Secrets live in.
pub const NAMESPACE: &str = "kube-system";
/// A token's Secret is named this prefix and the token id.
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// The Secret type of bootstrap tokens.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The ConfigMap a joining node reads (anonymously) in [`PUBLIC_NAMESPACE`].
pub const CLUSTER_INFO: &str = "cluster-info";
/// Its namespace.
pub const PUBLIC_NAMESPACE: &str = "kube-public";
/// The key of the kubeconfig in `cluster-info`.
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// `cluster-info` keys holding a token's signature: this prefix and the token id.
pub const JWS_PREFIX: &str = "jws-kubeconfig-";
/// The user name of a token: this prefix and the token id.
pub const USER_PREFIX: &str = "system:bootstrap:";
/// The group every token's user is in.
pub const GROUP: &str = "system:bootstrappers";
/// The extra group `token create` gives node tokens (what the default bindings name).
pub const DEFAULT_NODE_GROUP: &str = "system:bootstrappers:flotilla:default-node-token";

/// The id and secret of a token `<6 [a-z0-9]>.<16 [a-z0-9]>`; None for anything else.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let valid = |part: &str, len: usize| {
        part.len() == len
            && part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (valid(id, 6) && valid(secret, 16)).then_some((id, secret))
}

/// Whether `group` may be an extra group of a token (`system:bootstrappers:[a-z0-9:-]*[a-z0-9]`).
pub fn valid_extra_group(group: &str) -> bool {
    group
        .strip_prefix("system:bootstrappers:")
        .is_some_and(|rest| {
            !rest.is_empty()
                && rest.len() <= 256
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
                && rest
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The detached JWS (RFC 7515 appendix F: `header..signature`) of `content` for the token: HS256
/// keyed with the token secret zero-padded to 32 bytes, `kid` the token id, as upstream's
/// `ComputeDetachedSignature` writes it.
pub fn detached_signature(content: &str, id: &str, secret: &str) -> String {
    let (header, input) = signing_input(content, id);
    let tag = ring::hmac::sign(&hmac_key(secret), input.as_bytes());
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Whether `signature` is the token's signature of `content` (checked in constant time).
pub fn signature_is_valid(signature: &str, content: &str, id: &str, secret: &str) -> bool {
    let (header, input) = signing_input(content, id);
    let Some(tag) = signature
        .strip_prefix(&header)
        .and_then(|rest| rest.strip_prefix(".."))
        .and_then(|tag| URL_SAFE_NO_PAD.decode(tag).ok())
    else {
        return false;
    };
    ring::hmac::verify(&hmac_key(secret), input.as_bytes(), &tag).is_ok()
}

/// The protected header and the JWS signing input (`header.payload`) of `content`.
fn signing_input(content: &str, id: &str) -> (String, String) {
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"HS256","kid":"{id}"}}"#));
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(content));
    (header, input)
}

/// The HMAC key of a token secret: zero-padded to 32 bytes, as go-jose requires for HS256.
fn hmac_key(secret: &str) -> ring::hmac::Key {
    let mut key = secret.as_bytes().to_vec();
    if key.len() < 32 {
        key.resize(32, 0);
    }
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key)
}

/// `sha256:<hex>` of the certificate's SubjectPublicKeyInfo (DER), what kubeadm prints as
/// `--discovery-token-ca-cert-hash`.
pub fn ca_cert_hash(certificate_der: &[u8]) -> Result<String, String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(certificate_der)
        .map_err(|err| format!("parsing the CA certificate: {err}"))?;
    let digest = sha2::Sha256::digest(certificate.public_key().raw);
    Ok(format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_groups() {
        assert_eq!(
            parse_token("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdefg",
            "",
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
        assert!(valid_extra_group(DEFAULT_NODE_GROUP));
        assert!(!valid_extra_group("system:masters"));
        assert!(!valid_extra_group("system:bootstrappers:"));
        assert!(!valid_extra_group("system:bootstrappers:x-"));
    }

    /// The values upstream's cluster-bootstrap computes for these inputs (its jws tests).
    #[test]
    fn signatures_are_upstreams() {
        let content = "Hello from the other side. I must have called a thousand times.";
        let (id, secret) = ("joshua", "my voice is my passcode");
        let signature = detached_signature(content, id, secret);
        assert_eq!(
            signature,
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"
        );
        assert_eq!(
            detached_signature("", id, secret),
            "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk"
        );
        assert!(signature_is_valid(&signature, content, id, secret));
        assert!(!signature_is_valid(
            &format!("{signature}foo"),
            content,
            id,
            secret
        ));
        assert!(!signature_is_valid(&signature, "other", id, secret));
    }
}
