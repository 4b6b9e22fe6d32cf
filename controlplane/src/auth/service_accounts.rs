//! ServiceAccount tokens (upstream's `pkg/serviceaccount`): JWTs the control plane signs with
//! its own key (ES256, `<state>/pki/sa.key`), issued by the TokenRequest API
//! (`serviceaccounts/<name>/token`, what `kubectl create token` calls) and accepted as bearer
//! tokens while they are unexpired, meant for the API server's audience, and their
//! ServiceAccount (and the Pod or Secret they are bound to) still exists with the same uid.
//! The public key is published at `/openid/v1/jwks`.

use std::{collections::BTreeMap, path::Path};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::KeyPair;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::{AuthError, User};

/// The issuer and default audience of tokens (kube-apiserver's default
/// `--service-account-issuer` with the cluster domain `cluster.local`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// One object a token names: its name and uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named {
    /// Name.
    pub name: String,
    /// Uid.
    pub uid: String,
}

/// The `kubernetes.io` claim: whose token it is and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub serviceaccount: Named,
    /// The Pod the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Named>,
    /// The Secret the token is bound to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Named>,
}

/// The claims of a ServiceAccount token, as upstream writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// The issuer.
    pub iss: String,
    /// A unique id.
    #[serde(default)]
    pub jti: String,
    /// Not before.
    pub nbf: i64,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// Whose token and what it is bound to.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

impl Claims {
    /// The user a token with these claims authenticates as.
    pub fn user(&self) -> User {
        let namespace = &self.kubernetes.namespace;
        User {
            name: format!(
                "system:serviceaccount:{namespace}:{}",
                self.kubernetes.serviceaccount.name
            ),
            groups: vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
            ],
        }
    }
}

impl Claims {
    /// What else upstream says of the user such a token authenticates (TokenReview's `extra`).
    pub fn extra(&self) -> BTreeMap<String, Vec<String>> {
        let mut extra = BTreeMap::new();
        if !self.jti.is_empty() {
            extra.insert(
                "authentication.kubernetes.io/credential-id".to_owned(),
                vec![format!("JTI={}", self.jti)],
            );
        }
        if let Some(pod) = &self.kubernetes.pod {
            extra.insert(
                "authentication.kubernetes.io/pod-name".to_owned(),
                vec![pod.name.clone()],
            );
            extra.insert(
                "authentication.kubernetes.io/pod-uid".to_owned(),
                vec![pod.uid.clone()],
            );
        }
        extra
    }
}

/// Signs and checks ServiceAccount tokens.
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
    /// The public key as a JWK.
    jwk: Value,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// The issuer whose key is `dir/sa.key`, created on first start.
    pub fn load_or_create(dir: &Path) -> Result<Self, AuthError> {
        let path = dir.join("sa.key");
        let pem = if path.exists() {
            std::fs::read_to_string(&path).map_err(|source| AuthError::Io {
                action: "reading",
                path: path.clone(),
                source,
            })?
        } else {
            let pem = KeyPair::generate()?.serialize_pem();
            super::pki::write(&path, &pem, true)?;
            pem
        };
        Self::from_pem(&pem).map_err(|message| AuthError::Pem { path, message })
    }

    /// The issuer with the P-256 key in `pem` (PKCS#8).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let pair = KeyPair::from_pem(pem).map_err(|err| err.to_string())?;
        let public = pair.public_key_raw().to_vec();
        // An uncompressed P-256 point: 0x04, x (32 bytes), y (32 bytes).
        if public.len() != 65 {
            return Err("the ServiceAccount key must be an ECDSA P-256 key".into());
        }
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|err| err.to_string())?;
        let decoding = DecodingKey::from_ec_der(&public);
        // The key id upstream uses: the base64url SHA-256 of the public key's DER.
        let key_id = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(
            rcgen::PublicKeyData::subject_public_key_info(&pair),
        ));
        let jwk = json!({
            "use": "sig",
            "kty": "EC",
            "kid": key_id,
            "crv": "P-256",
            "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&public[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&public[33..]),
        });
        Ok(Self {
            encoding,
            decoding,
            key_id,
            jwk,
        })
    }

    /// A signed token with `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|err| err.to_string())
    }

    /// The claims of `token` if it is one of ours: signed with our key, from our issuer, for
    /// one of `audiences`, and within its validity period. The error says why not (never logged
    /// above debug: it is the client's mistake).
    pub fn verify(&self, token: &str, audiences: &[&str]) -> Result<Claims, String> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 60;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|err| err.to_string())
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }
}

/// `/.well-known/openid-configuration` (upstream's OIDC discovery document).
pub fn openid_configuration() -> Value {
    json!({
        "issuer": ISSUER,
        "jwks_uri": format!("{ISSUER}/openid/v1/jwks"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

/// Whether `token` looks like a JWT (three dot-separated parts), before any work is spent on it.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (project rule).

    use super::*;

    fn claims(now: i64, audience: &str) -> Claims {
        Claims {
            aud: vec![audience.to_owned()],
            exp: now + 600,
            iat: now,
            iss: ISSUER.to_owned(),
            jti: "j".into(),
            nbf: now,
            sub: "system:serviceaccount:dev:builder".into(),
            kubernetes: KubernetesClaims {
                namespace: "dev".into(),
                serviceaccount: Named {
                    name: "builder".into(),
                    uid: "u1".into(),
                },
                pod: None,
                secret: None,
            },
        }
    }

    #[test]
    fn tokens_verify_only_when_ours_fresh_and_for_the_audience() {
        let issuer = TokenIssuer::from_pem(&KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let token = issuer.sign(&claims(now, ISSUER)).unwrap();
        let verified = issuer.verify(&token, &[ISSUER]).unwrap();
        assert_eq!(verified.user().name, "system:serviceaccount:dev:builder");
        assert_eq!(
            verified.user().groups,
            vec!["system:serviceaccounts", "system:serviceaccounts:dev"]
        );
        // Another audience, an expired token, another key, a tampered payload: refused.
        assert!(issuer.verify(&token, &["vault"]).is_err());
        let expired = issuer.sign(&claims(now - 7200, ISSUER)).unwrap();
        assert!(issuer.verify(&expired, &[ISSUER]).is_err());
        let other = TokenIssuer::from_pem(&KeyPair::generate().unwrap().serialize_pem()).unwrap();
        assert!(other.verify(&token, &[ISSUER]).is_err());
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                sub: "system:serviceaccount:kube-system:admin".into(),
                ..claims(now, ISSUER)
            })
            .unwrap(),
        );
        parts[1] = &forged;
        assert!(issuer.verify(&parts.join("."), &[ISSUER]).is_err());
        assert!(issuer.verify("not.a.jwt", &[ISSUER]).is_err());
        assert_eq!(issuer.jwks()["keys"][0]["kty"], "EC");
    }
}
