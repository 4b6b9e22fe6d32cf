//! Who may use the kubelet API, decided as kubelet's webhook authorization does: each request
//! becomes a SubjectAccessReview to the API server for verb (from the method) on
//! `nodes/<subresource>` named after this node (`stats`, `metrics`, `log` for `/logs/`, `spec`,
//! `checkpoint`, and `proxy` for everything else: exec, attach, port-forward, container logs).
//! Answers are cached as kubelet's: allowed for 5 minutes, denied for 30 seconds.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::Method;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::{Api, Client, api::PostParams};

/// How long an allowed answer is kept (kubelet's `--authorization-webhook-cache-authorized-ttl`).
const ALLOWED_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a denial is kept (kubelet's `--authorization-webhook-cache-unauthorized-ttl`).
const DENIED_TTL: Duration = Duration::from_secs(30);

/// Who calls the kubelet API, as their certificate names them: the user (CN) and groups (O).
pub type Caller = (String, Vec<String>);

/// What a kubelet API request asks, in authorization's terms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Asked {
    /// get, create, update, patch or delete.
    pub verb: &'static str,
    /// The subresource of `nodes`.
    pub subresource: &'static str,
}

impl Asked {
    /// Kubelet's `GetRequestAttributes` for `method` on `path`.
    pub fn of(method: &Method, path: &str) -> Self {
        let verb = match *method {
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "get",
        };
        let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
        let subresource = if under("/stats") {
            "stats"
        } else if under("/metrics") {
            "metrics"
        } else if under("/logs") {
            "log"
        } else if under("/spec") {
            "spec"
        } else if under("/checkpoint") {
            "checkpoint"
        } else {
            "proxy"
        };
        Self { verb, subresource }
    }

    /// Kubelet's refusal text.
    pub fn refusal(&self, user: &str) -> String {
        format!(
            "Forbidden (user={user}, verb={}, resource=nodes, subresource={})",
            self.verb, self.subresource
        )
    }
}

/// Decides whether a client may make a request.
pub trait Authorize: Send + Sync + 'static {
    /// Whether `client` may do `asked`; Err when no answer could be had.
    fn allowed<'a>(
        &'a self,
        client: &'a Caller,
        asked: &'a Asked,
    ) -> BoxFuture<'a, Result<bool, String>>;
}

/// Asks the API server with SubjectAccessReviews, as this node.
pub struct SubjectAccessReviews {
    client: Client,
    node: String,
    cache: Mutex<HashMap<(Caller, Asked), (bool, Instant)>>,
}

impl SubjectAccessReviews {
    /// Reviews for the node `node` through `client` (the node's own credentials).
    pub fn new(client: Client, node: &str) -> Self {
        Self {
            client,
            node: node.to_owned(),
            cache: Mutex::default(),
        }
    }

    fn cached(&self, key: &(Caller, Asked)) -> Option<bool> {
        let cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (allowed, until) = cache.get(key)?;
        (Instant::now() < *until).then_some(*allowed)
    }

    fn remember(&self, key: (Caller, Asked), allowed: bool) {
        let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
        let now = Instant::now();
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Expired answers go when the cache is written, so it holds only live ones.
        cache.retain(|_, (_, until)| *until > now);
        cache.insert(key, (allowed, now + ttl));
    }
}

impl Authorize for SubjectAccessReviews {
    fn allowed<'a>(
        &'a self,
        client: &'a Caller,
        asked: &'a Asked,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let key = (client.clone(), asked.clone());
            if let Some(allowed) = self.cached(&key) {
                return Ok(allowed);
            }
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(client.0.clone()),
                    groups: Some(client.1.clone()),
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(asked.verb.to_owned()),
                        resource: Some("nodes".to_owned()),
                        subresource: Some(asked.subresource.to_owned()),
                        name: Some(self.node.clone()),
                        ..ResourceAttributes::default()
                    }),
                    ..SubjectAccessReviewSpec::default()
                },
                ..SubjectAccessReview::default()
            };
            let answer = Api::<SubjectAccessReview>::all(self.client.clone())
                .create(&PostParams::default(), &review)
                .await
                .map_err(|err| err.to_string())?;
            let allowed = answer.status.is_some_and(|status| status.allowed);
            self.remember(key, allowed);
            Ok(allowed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_kubelets_subresources() {
        let of = |method: Method, path: &str| {
            let asked = Asked::of(&method, path);
            (asked.verb, asked.subresource)
        };
        assert_eq!(of(Method::GET, "/stats/summary"), ("get", "stats"));
        assert_eq!(of(Method::GET, "/metrics"), ("get", "metrics"));
        assert_eq!(of(Method::GET, "/logs/syslog"), ("get", "log"));
        assert_eq!(of(Method::GET, "/containerLogs/ns/p/c"), ("get", "proxy"));
        assert_eq!(of(Method::POST, "/exec/ns/p/c"), ("create", "proxy"));
        assert_eq!(of(Method::GET, "/statsx"), ("get", "proxy"));
        assert_eq!(
            Asked::of(&Method::GET, "/healthz").refusal("system:node:n1"),
            "Forbidden (user=system:node:n1, verb=get, resource=nodes, subresource=proxy)"
        );
    }
}
