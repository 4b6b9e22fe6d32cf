//! `serviceaccounts/<name>/token`: the TokenRequest API (what `kubectl create token` and the
//! kubelet call), as kube-apiserver's `TokenREST`: a token for the ServiceAccount, for the
//! audiences asked (the API server's by default), valid for `expirationSeconds` (one hour by
//! default, ten minutes at least), optionally bound to a Pod or Secret so that it dies with it.

use serde_json::{Value, json};

use super::{
    ApiServer,
    handlers::{Scope, reject_invalid},
    machinery::field::{CauseReason, Errs},
    registry::core::{pod, secret},
    status::ApiError,
};
use crate::auth::service_accounts::{Claims, ISSUER, KubernetesClaims, Named};

/// Default lifetime of a requested token (upstream's TokenRequest default).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime upstream issues.
const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest lifetime upstream accepts (2^32 seconds).
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

impl ApiServer {
    /// Issues a token for the ServiceAccount `name` as `request` (a TokenRequest) asks.
    pub async fn request_token(
        &self,
        scope: &Scope,
        name: &str,
        mut request: Value,
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

    /// The ServiceAccount a bearer JWT authenticates, if it is a live one of ours: signed by
    /// our key for our audience and unexpired, its ServiceAccount (and bound Pod or Secret)
    /// still there with the same uid. Anything else is None (401), logged at debug only.
    pub(crate) async fn service_account_user(&self, token: &str) -> Option<crate::auth::User> {
        let issuer = self.service_account_tokens.as_ref()?;
        let claims = match issuer.verify(token, ISSUER) {
            Ok(claims) => claims,
            Err(why) => {
                tracing::debug!("bearer token refused: {why}");
                return None;
            }
        };
        let k = &claims.kubernetes;
        let mut alive = vec![(
            super::registry::core::service_account::RESOURCE
                .key(Some(&k.namespace), &k.serviceaccount.name),
            &k.serviceaccount.uid,
        )];
        if let Some(pod) = &k.pod {
            alive.push((pod::RESOURCE.key(Some(&k.namespace), &pod.name), &pod.uid));
        }
        if let Some(secret) = &k.secret {
            alive.push((
                secret::RESOURCE.key(Some(&k.namespace), &secret.name),
                &secret.uid,
            ));
        }
        for (key, uid) in alive {
            let current = self.store.get(&key).await.ok()?;
            if current.object["metadata"]["uid"].as_str() != Some(uid.as_str()) {
                tracing::debug!(key, "bearer token refused: its object is gone");
                return None;
            }
        }
        Some(claims.user())
    }
}
