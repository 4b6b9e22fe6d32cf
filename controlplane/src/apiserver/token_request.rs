//! ServiceAccount tokens in the API server. `serviceaccounts/<name>/token`: the TokenRequest API
//! (what `kubectl create token` and the node agents call), as kube-apiserver's `TokenREST`: a
//! token for the ServiceAccount, for the audiences asked (the API server's by default), valid for
//! `expirationSeconds` (one hour by default, ten minutes at least), optionally bound to a Pod or
//! Secret so that it dies with it; a node gets only tokens bound to its own pods
//! (NodeRestriction). Checking them: as bearer tokens and for TokenReviews.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{
    ApiServer,
    handlers::{Scope, reject_invalid},
    machinery::field::{CauseReason, Errs},
    registry::core::{pod, secret, service_account},
    status::ApiError,
};
use crate::auth::{
    TokenAuthenticator, TokenIdentity, User, node_authorizer,
    service_accounts::{self, Claims, ISSUER, KubernetesClaims, Named},
};

/// Default lifetime of a requested token (upstream's TokenRequest default).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime upstream issues.
const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest lifetime upstream accepts (2^32 seconds).
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

impl ApiServer {
    /// Issues a token for the ServiceAccount `name` as `request` (a TokenRequest) asks, for
    /// `requester`.
    pub async fn request_token(
        &self,
        scope: &Scope,
        name: &str,
        mut request: Value,
        requester: Option<&User>,
    ) -> Result<Value, ApiError> {
        let issuer = self.service_account_tokens.clone().ok_or_else(|| {
            ApiError::unavailable("this API server has no ServiceAccount signing key")
        })?;
        let namespace = scope.namespace.clone().unwrap_or_default();
        let account = self.get_object(scope, name).await?.object;
        let spec = &request["spec"];
        let expiration = spec["expirationSeconds"]
            .as_i64()
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        let audiences: Vec<String> = match spec["audiences"].as_array() {
            Some(given) if !given.is_empty() => given
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect(),
            _ => vec![ISSUER.to_owned()],
        };
        let mut errs = Errs::default();
        if expiration < MIN_EXPIRATION_SECONDS {
            errs.invalid_i(
                "spec.expirationSeconds",
                expiration,
                "may not specify a duration less than 10 minutes",
            );
        } else if expiration > MAX_EXPIRATION_SECONDS {
            errs.invalid_i(
                "spec.expirationSeconds",
                expiration,
                "may not specify a duration larger than 2^32 seconds",
            );
        }
        let bound = &spec["boundObjectRef"];
        let bound_kind = bound["kind"].as_str().unwrap_or_default();
        if !bound.is_null() && !matches!(bound_kind, "Pod" | "Secret") {
            errs.push(
                CauseReason::NotSupported,
                "spec.boundObjectRef.kind",
                Some(&format!("{bound_kind:?}")),
                "supported values: \"Pod\", \"Secret\"",
            );
        }
        reject_invalid(
            "TokenRequest.authentication.k8s.io",
            &json!({"metadata": {"name": name}}),
            errs.0,
        )?;
        let requesting_node = requester.and_then(node_authorizer::node_name);
        let node_refused = |why: &str| ApiError::forbidden("serviceaccounts", name, why);
        if requesting_node.is_some() {
            // NodeRestriction: a node asks only for tokens bound to a pod of its own.
            if bound_kind != "Pod" {
                return Err(node_refused("node requested token not bound to a pod"));
            }
            if bound["uid"].as_str().is_none_or(str::is_empty) {
                return Err(node_refused(
                    "node requested token with a pod binding without a uid",
                ));
            }
        }
        // A bound object must exist (with the uid given, if one is), and the token names it.
        let mut pod_claim = None;
        let mut secret_claim = None;
        if !bound.is_null() {
            let bound_name = bound["name"].as_str().unwrap_or_default();
            let resource = if bound_kind == "Pod" {
                &pod::RESOURCE
            } else {
                &secret::RESOURCE
            };
            let object_scope = Scope {
                resource,
                namespace: Some(namespace.clone()),
            };
            let object = self.get_object(&object_scope, bound_name).await?.object;
            let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
            if let Some(wanted) = bound["uid"].as_str().filter(|u| !u.is_empty())
                && wanted != uid
            {
                return Err(ApiError::conflict(
                    &resource.qualified_name(),
                    bound_name,
                    &format!(
                        "the UID in the bound object reference ({wanted}) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
                    ),
                ));
            }
            if let Some(node) = requesting_node {
                if object["spec"]["nodeName"].as_str() != Some(node) {
                    return Err(node_refused(
                        "node requested token bound to a pod scheduled on a different node",
                    ));
                }
                let runs_as = object["spec"]["serviceAccountName"]
                    .as_str()
                    .unwrap_or_default();
                if runs_as != name {
                    return Err(node_refused(&format!(
                        "node requested token bound to a pod that runs as service account {runs_as:?}"
                    )));
                }
            }
            let named = Named {
                name: bound_name.to_owned(),
                uid: uid.to_owned(),
            };
            if bound_kind == "Pod" {
                pod_claim = Some(named);
            } else {
                secret_claim = Some(named);
            }
        }
        let now = jiff::Timestamp::now().as_second();
        let claims = Claims {
            aud: audiences.clone(),
            exp: now + expiration,
            iat: now,
            iss: ISSUER.to_owned(),
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now,
            sub: format!("system:serviceaccount:{namespace}:{name}"),
            kubernetes: KubernetesClaims {
                namespace: namespace.clone(),
                serviceaccount: Named {
                    name: name.to_owned(),
                    uid: account["metadata"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                },
                pod: pod_claim,
                secret: secret_claim,
            },
        };
        let token = issuer.sign(&claims).map_err(ApiError::internal)?;
        let expires = jiff::Timestamp::from_second(claims.exp)
            .map(|t| t.to_string())
            .unwrap_or_default();
        request["apiVersion"] = json!("authentication.k8s.io/v1");
        request["kind"] = json!("TokenRequest");
        request["metadata"] =
            json!({"name": name, "namespace": namespace, "creationTimestamp": null});
        request["spec"]["audiences"] = json!(audiences);
        request["spec"]["expirationSeconds"] = json!(expiration);
        request["status"] = json!({"token": token, "expirationTimestamp": expires});
        Ok(request)
    }

    /// The ServiceAccount a bearer JWT authenticates, if it is a live one of ours for the API
    /// server. Anything else is None (401), logged at debug only.
    pub(crate) async fn service_account_user(&self, token: &str) -> Option<User> {
        match self.live_service_account_claims(token, &[ISSUER]).await {
            Ok(claims) => Some(claims.user()),
            Err(why) => {
                tracing::debug!("bearer token refused: {why}");
                None
            }
        }
    }

    /// The claims of `token` if it is a live ServiceAccount token of ours: signed by our key
    /// for one of `audiences` and unexpired, its ServiceAccount (and bound Pod or Secret) still
    /// there with the same uid. The error says why not.
    async fn live_service_account_claims(
        &self,
        token: &str,
        audiences: &[&str],
    ) -> Result<Claims, String> {
        let issuer = self
            .service_account_tokens
            .as_ref()
            .ok_or("this API server has no ServiceAccount signing key")?;
        let claims = issuer.verify(token, audiences)?;
        let k = &claims.kubernetes;
        let mut alive = vec![(
            service_account::RESOURCE.key(Some(&k.namespace), &k.serviceaccount.name),
            "service account",
            &k.serviceaccount.uid,
        )];
        if let Some(pod) = &k.pod {
            alive.push((
                pod::RESOURCE.key(Some(&k.namespace), &pod.name),
                "pod",
                &pod.uid,
            ));
        }
        if let Some(secret) = &k.secret {
            alive.push((
                secret::RESOURCE.key(Some(&k.namespace), &secret.name),
                "secret",
                &secret.uid,
            ));
        }
        for (key, what, uid) in alive {
            let current = self.store.get(&key).await.ok();
            let current_uid = current
                .as_ref()
                .and_then(|stored| stored.object["metadata"]["uid"].as_str());
            if current_uid != Some(uid.as_str()) {
                return Err(format!("the token's {what} no longer exists"));
            }
        }
        Ok(claims)
    }
}

/// TokenReview: static and bootstrap tokens are good for the API server's audience only;
/// ServiceAccount tokens for the audiences they name.
impl TokenAuthenticator for ApiServer {
    fn authenticate_token<'a>(
        &'a self,
        token: &'a str,
        audiences: &'a [String],
    ) -> BoxFuture<'a, Result<TokenIdentity, String>> {
        Box::pin(async move {
            let wanted: Vec<&str> = if audiences.is_empty() {
                vec![ISSUER]
            } else {
                audiences.iter().map(String::as_str).collect()
            };
            let refused = |why: &str| format!("[invalid bearer token, {why}]");
            // Static and bootstrap tokens are good for the API server's own audience only.
            let audience_agnostic = match self.tokens.authenticate(token) {
                Some(user) => Some(user),
                None => match flotilla_apimachinery::bootstrap::parse_token(token) {
                    Some((id, secret)) => Some(
                        self.bootstrap_token_user(id, secret)
                            .await
                            .ok_or_else(|| refused("bootstrap token is not valid"))?,
                    ),
                    None => None,
                },
            };
            if let Some(user) = audience_agnostic {
                if !wanted.contains(&ISSUER) {
                    return Err(refused(
                        "token audiences do not include the audiences asked for",
                    ));
                }
                return Ok(TokenIdentity {
                    user,
                    uid: String::new(),
                    extra: BTreeMap::new(),
                    audiences: vec![ISSUER.to_owned()],
                });
            }
            if !service_accounts::looks_like_jwt(token) {
                return Err(refused("token is neither a known token nor a JWT"));
            }
            let claims = self
                .live_service_account_claims(token, &wanted)
                .await
                .map_err(|why| refused(&why))?;
            Ok(TokenIdentity {
                user: claims.user(),
                uid: claims.kubernetes.serviceaccount.uid.clone(),
                extra: claims.extra(),
                audiences: claims
                    .aud
                    .iter()
                    .filter(|aud| wanted.contains(&aud.as_str()))
                    .cloned()
                    .collect(),
            })
        })
    }
}
