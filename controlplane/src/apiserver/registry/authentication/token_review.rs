//! `authentication.k8s.io/v1` TokenReview: is this bearer token good, and whose is it? What
//! webhook authenticators (a kubelet, an aggregated API server, a service that accepts
//! ServiceAccount tokens) ask the API server, as kube-apiserver's `TokenREST` answers it.

use crate::apiserver::registry::prelude::*;
use crate::apiserver::status::ApiError;
use k8s_openapi::api::authentication::v1 as api;

/// The `tokenreviews` resource.
pub static RESOURCE: Resource = Resource {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "TokenReview",
    plural: "tokenreviews",
    singular: "tokenreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "tokenreviews",
    field_labels: &[],
    strategy: &TokenReviews,
};

/// The `TokenReview` strategy.
pub struct TokenReviews;

impl Strategy for TokenReviews {
    typed_as!("v1.TokenReview", api::TokenReview);
    crate::apiserver::registry::authorization::a_review!();

    /// Upstream validates nothing; an empty token is a bad request (see `answer`).
    fn validate(&self, _e: &mut Errs, _object: &Value, _old: Option<&Value>) {}

    /// `authenticated` and the user when the token is good for one of the audiences asked (the
    /// API server's when none are), else the reason in `error`: a review that says no is still
    /// a successful request.
    fn answer<'a>(
        &'a self,
        review: Review<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let spec = &object["spec"];
            let token = spec["token"].as_str().unwrap_or_default().to_owned();
            if token.is_empty() {
                return Err(ApiError::bad_request(
                    "token is required for TokenReview in authentication",
                ));
            }
            let audiences: Vec<String> = spec["audiences"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect();
            object["status"] = match review.tokens.authenticate_token(&token, &audiences).await {
                Ok(identity) => {
                    let mut user = json!({"username": identity.user.name});
                    if !identity.uid.is_empty() {
                        user["uid"] = json!(identity.uid);
                    }
                    if !identity.user.groups.is_empty() {
                        user["groups"] = json!(identity.user.groups);
                    }
                    if !identity.extra.is_empty() {
                        user["extra"] = json!(identity.extra);
                    }
                    json!({"authenticated": true, "user": user, "audiences": identity.audiences})
                }
                Err(why) => json!({"user": {}, "error": why}),
            };
            Ok(())
        })
    }

    /// Nothing is validated (an empty token is refused when answered), so the invalid sample
    /// names no field.
    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {}, "spec": {"token": "abc"}}),
            invalid: json!({"metadata": {}, "spec": {"token": "abc"}}),
            invalid_field: "",
        }
    }
}
