//! Bootstrap token authentication (upstream's `plugin/pkg/auth/authenticator/token/bootstrap`):
//! a bearer token `<id>.<secret>` is good while the Secret `kube-system/bootstrap-token-<id>` of
//! type `bootstrap.kubernetes.io/token` holds the same secret, is not being deleted, has not
//! expired and allows `usage-bootstrap-authentication`. Its user is `system:bootstrap:<id>` in
//! `system:bootstrappers` and the token's `auth-extra-groups`.

use std::collections::BTreeMap;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use flotilla_apimachinery::bootstrap;
use jiff::Timestamp;
use serde_json::Value;

use super::User;

/// A value of the Secret's `data`, decoded ("" when absent or not base64).
pub fn data(secret: &Value, key: &str) -> String {
    secret["data"][key]
        .as_str()
        .and_then(|encoded| STANDARD.decode(encoded).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Whether the token's Secret says it has expired at `now` (an unparsable expiry counts as
/// expired, as upstream's `HasExpired`).
pub fn expired(secret: &Value, now: Timestamp) -> bool {
    let expiration = data(secret, "expiration");
    if expiration.is_empty() {
        return false;
    }
    expiration.parse::<Timestamp>().map_or(true, |at| at <= now)
}

/// The user token `id`.`token_secret` authenticates as, given its Secret; the error says why not
/// (logged at debug only: it is the client's mistake).
pub fn user_of(
    secret: &Value,
    id: &str,
    token_secret: &str,
    now: Timestamp,
) -> Result<User, String> {
    let name = secret["metadata"]["name"].as_str().unwrap_or_default();
    let refuse = |why: &str| Err(format!("bootstrap token secret {name:?} {why}"));
    if !secret["metadata"]["deletionTimestamp"].is_null() {
        return refuse("is deleted and awaiting removal");
    }
    if secret["type"].as_str() != Some(bootstrap::SECRET_TYPE) {
        return refuse(&format!(
            "has invalid type, expected {}",
            bootstrap::SECRET_TYPE
        ));
    }
    let stored = data(secret, "token-secret");
    if !ring_equal(stored.as_bytes(), token_secret.as_bytes()) {
        return refuse("has invalid value for key token-secret");
    }
    if data(secret, "token-id") != id {
        return refuse("has invalid value for key token-id");
    }
    if expired(secret, now) {
        return refuse("has expired");
    }
    if data(secret, "usage-bootstrap-authentication") != "true" {
        return refuse("not marked usage-bootstrap-authentication=true");
    }
    let mut groups = vec![bootstrap::GROUP.to_owned()];
    for group in data(secret, "auth-extra-groups")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        if !bootstrap::valid_extra_group(group) {
            return refuse(&format!("has an invalid auth-extra-groups entry {group:?}"));
        }
        if !groups.iter().any(|g| g == group) {
            groups.push(group.to_owned());
        }
    }
    Ok(User {
        name: format!("{}{id}", bootstrap::USER_PREFIX),
        groups,
    })
}

/// Constant-time equality of two secrets.
fn ring_equal(a: &[u8], b: &[u8]) -> bool {
    use sha2::Digest as _;
    // Comparing digests keeps the time independent of where the values differ.
    let (a, b) = (sha2::Sha256::digest(a), sha2::Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests may unwrap (project rule).

    use serde_json::json;

    use super::*;

    fn secret(expiration: &str, extra: &str) -> Value {
        let b = |s: &str| STANDARD.encode(s);
        json!({"metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
               "type": "bootstrap.kubernetes.io/token",
               "data": {"token-id": b("abcdef"), "token-secret": b("0123456789abcdef"),
                        "expiration": b(expiration), "auth-extra-groups": b(extra),
                        "usage-bootstrap-authentication": b("true")}})
    }

    #[test]
    fn a_token_is_good_while_its_secret_says_so() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let good = secret("2026-12-07T12:00:00Z", bootstrap::DEFAULT_NODE_GROUP);
        let user = user_of(&good, "abcdef", "0123456789abcdef", now).unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            [bootstrap::GROUP, bootstrap::DEFAULT_NODE_GROUP]
        );
        let wrong = user_of(&good, "abcdef", "0123456789abcdee", now).unwrap_err();
        assert!(
            wrong.ends_with("has invalid value for key token-secret"),
            "{wrong}"
        );
        let old = secret("2026-12-05T12:00:00Z", "");
        assert!(
            user_of(&old, "abcdef", "0123456789abcdef", now)
                .unwrap_err()
                .ends_with("has expired")
        );
        let masters = secret("", "system:masters");
        assert!(user_of(&masters, "abcdef", "0123456789abcdef", now).is_err());
        let mut deleting = good.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-12-06T11:00:00Z");
        assert!(user_of(&deleting, "abcdef", "0123456789abcdef", now).is_err());
        let mut opaque = good;
        opaque["type"] = json!("Opaque");
        assert!(user_of(&opaque, "abcdef", "0123456789abcdef", now).is_err());
    }
}

/// A token `token create` made, and how a new node joins with it.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    /// `<id>.<secret>`.
    pub token: String,
    /// `flotilla-agent join <server> --token ... --discovery-token-ca-cert-hash sha256:...`.
    pub join_command: String,
}

/// Creates a bootstrap token for joining nodes through the API, as the admin of the control
/// plane whose state is in `state_dir`: valid for `ttl` (None: until deleted), usable to
/// authenticate (as a joining node) and to sign cluster-info.
pub async fn create(
    state_dir: &std::path::Path,
    ttl: Option<std::time::Duration>,
    description: &str,
) -> Result<CreatedToken, String> {
    use k8s_openapi::{ByteString, api::core::v1::Secret};
    use rand::Rng as _;
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};

    let kubeconfig_path = state_dir.join("admin.kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&kubeconfig_path)
        .map_err(|err| format!("reading {}: {err}", kubeconfig_path.display()))?;
    let server = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .ok_or_else(|| format!("{} names no server", kubeconfig_path.display()))?;
    let ca_path = state_dir.join("pki").join("ca.crt");
    let ca_pem = std::fs::read(&ca_path)
        .map_err(|err| format!("reading the cluster CA {}: {err}", ca_path.display()))?;
    let ca_der = CertificateDer::from_pem_slice(&ca_pem)
        .map_err(|err| format!("parsing {}: {err}", ca_path.display()))?;
    let hash = bootstrap::ca_cert_hash(ca_der.as_ref())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|err| format!("using {}: {err}", kubeconfig_path.display()))?;
    let client = kube::Client::try_from(config).map_err(|err| err.to_string())?;

    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut random = |len: usize| -> String {
        (0..len)
            .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
            .collect()
    };
    let (id, secret) = (random(6), random(16));
    let mut data = BTreeMap::from([
        ("token-id", id.clone()),
        ("token-secret", secret.clone()),
        ("usage-bootstrap-authentication", "true".to_owned()),
        ("usage-bootstrap-signing", "true".to_owned()),
        (
            "auth-extra-groups",
            bootstrap::DEFAULT_NODE_GROUP.to_owned(),
        ),
    ]);
    if !description.is_empty() {
        data.insert("description", description.to_owned());
    }
    if let Some(ttl) = ttl.filter(|ttl| !ttl.is_zero()) {
        let seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let at = Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(seconds))
            .map_err(|err| format!("--ttl {ttl:?}: {err}"))?;
        data.insert("expiration", at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    let object = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{}{id}", bootstrap::SECRET_PREFIX)),
            namespace: Some(bootstrap::NAMESPACE.to_owned()),
            ..Default::default()
        },
        type_: Some(bootstrap::SECRET_TYPE.to_owned()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    };
    kube::Api::<Secret>::namespaced(client, bootstrap::NAMESPACE)
        .create(&Default::default(), &object)
        .await
        .map_err(|err| format!("creating the token's Secret: {err}"))?;
    let token = format!("{id}.{secret}");
    Ok(CreatedToken {
        join_command: format!(
            "flotilla-agent join {server} --token {token} --discovery-token-ca-cert-hash {hash}"
        ),
        token,
    })
}
