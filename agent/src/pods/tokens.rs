//! ServiceAccount tokens for the pods' `serviceAccountToken` projections (kubelet's token
//! manager): each token comes from the TokenRequest API, bound to its pod so that it dies with
//! the pod, and is kept per (pod, ServiceAccount, audience, lifetime). It is asked for again once
//! 80% of its lifetime (or 24 hours) has passed, so the file a pod reads always holds a token
//! that stays valid for a while yet.

use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
};

use k8s_openapi::{
    api::{
        authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec},
        core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection},
    },
    jiff::Timestamp,
};
use kube::{Api, Client, api::PostParams};

/// The longest a token is used before a new one is asked for, whatever its lifetime
/// (kubelet's `maxTTL`).
const MAX_AGE_SECONDS: i64 = 24 * 3600;
/// A projection's lifetime when it names none (the API's default for the field).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// What one `serviceAccountToken` projection asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenSpec {
    /// The audience ("" for the API server's own).
    pub audience: String,
    /// The lifetime asked for, in seconds.
    pub expiration_seconds: i64,
}

impl TokenSpec {
    /// The token a projection asks for.
    pub fn of(projection: &ServiceAccountTokenProjection) -> Self {
        Self {
            audience: projection.audience.clone().unwrap_or_default(),
            expiration_seconds: projection
                .expiration_seconds
                .unwrap_or(DEFAULT_EXPIRATION_SECONDS),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    pod_uid: String,
    namespace: String,
    service_account: String,
    spec: TokenSpec,
}

/// A token with its validity, in Unix seconds.
#[derive(Clone, Debug)]
struct Issued {
    token: String,
    issued: i64,
    expires: i64,
}

impl Issued {
    /// Whether a new token must be asked for at `now`: 80% of the lifetime has passed, or a day.
    fn needs_refresh(&self, now: i64) -> bool {
        let lifetime = self.expires - self.issued;
        now >= self.issued + MAX_AGE_SECONDS || now >= self.issued + lifetime * 4 / 5
    }
}

/// Fetching a token failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The API server refused or could not be reached.
    #[error("{0}")]
    Api(#[from] kube::Error),
    /// The answer had no token or no valid expiry.
    #[error("the TokenRequest answer has no {0}")]
    Incomplete(&'static str),
}

/// The node's cache of pod tokens.
#[derive(Debug, Default)]
pub struct TokenManager {
    cache: Mutex<HashMap<Key, Issued>>,
}

impl TokenManager {
    /// A token of `pod`'s ServiceAccount as `spec` asks, from the cache while it is fresh, else
    /// newly requested bound to the pod.
    pub async fn token(
        &self,
        client: &Client,
        pod: &Pod,
        spec: &TokenSpec,
    ) -> Result<String, TokenError> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let service_account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let key = Key {
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace,
            service_account,
            spec: spec.clone(),
        };
        let now = Timestamp::now().as_second();
        if let Some(cached) = self.lock().get(&key)
            && !cached.needs_refresh(now)
        {
            return Ok(cached.token.clone());
        }
        let issued = request(client, pod, &key).await?;
        let token = issued.token.clone();
        self.lock().insert(key, issued);
        Ok(token)
    }

    /// Drops the tokens of a pod that is gone.
    pub fn forget_pod(&self, uid: &str) {
        self.lock().retain(|key, _| key.pod_uid != uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Issued>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Asks the API server for a token as `key` says, bound to `pod`.
async fn request(client: &Client, pod: &Pod, key: &Key) -> Result<Issued, TokenError> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &key.namespace);
    let asked = TokenRequest {
        spec: TokenRequestSpec {
            audiences: if key.spec.audience.is_empty() {
                Vec::new()
            } else {
                vec![key.spec.audience.clone()]
            },
            expiration_seconds: Some(key.spec.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..TokenRequest::default()
    };
    let answer = api
        .create_token_request(&key.service_account, &PostParams::default(), &asked)
        .await?;
    let status = answer.status.ok_or(TokenError::Incomplete("status"))?;
    if status.token.is_empty() {
        return Err(TokenError::Incomplete("token"));
    }
    let expires = status.expiration_timestamp.0.as_second();
    // The issue time as kubelet derives it: the expiry less the lifetime granted.
    let lifetime = answer
        .spec
        .expiration_seconds
        .unwrap_or(key.spec.expiration_seconds);
    Ok(Issued {
        token: status.token,
        issued: expires - lifetime,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_at_eighty_percent_or_after_a_day() {
        let hour = Issued {
            token: "t".into(),
            issued: 1000,
            expires: 1000 + 3600,
        };
        assert!(!hour.needs_refresh(1000));
        assert!(!hour.needs_refresh(1000 + 2879));
        assert!(hour.needs_refresh(1000 + 2880));
        assert!(hour.needs_refresh(1000 + 4000));
        let year = Issued {
            token: "t".into(),
            issued: 0,
            expires: 365 * 24 * 3600,
        };
        assert!(!year.needs_refresh(MAX_AGE_SECONDS - 1));
        assert!(year.needs_refresh(MAX_AGE_SECONDS));
    }

    #[test]
    fn a_projection_without_lifetime_asks_for_an_hour() {
        let spec = TokenSpec::of(&ServiceAccountTokenProjection {
            path: "token".into(),
            ..ServiceAccountTokenProjection::default()
        });
        assert_eq!(
            spec,
            TokenSpec {
                audience: String::new(),
                expiration_seconds: 3600
            }
        );
    }
}
