//! `authentication.k8s.io/v1` SelfSubjectReview: who am I? (`kubectl auth whoami`). Answers
//! with the user the request was authenticated (or impersonated) as.

use crate::apiserver::registry::prelude::*;
use crate::apiserver::status::ApiError;
use k8s_openapi::api::authentication::v1 as api;

/// The `selfsubjectreviews` resource.
pub static RESOURCE: Resource = Resource {
    group: "authentication.k8s.io",
    version: "v1",
    kind: "SelfSubjectReview",
    plural: "selfsubjectreviews",
    singular: "selfsubjectreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "selfsubjectreviews",
    field_labels: &[],
    strategy: &SelfSubjectReviews,
};

/// The `SelfSubjectReview` strategy.
pub struct SelfSubjectReviews;

impl Strategy for SelfSubjectReviews {
    typed_as!("v1.SelfSubjectReview", api::SelfSubjectReview);
    crate::apiserver::registry::authorization::a_review!();

    /// Upstream checks nothing: there is nothing to ask but who is asking.
    fn validate(&self, _e: &mut Errs, _object: &Value, _old: Option<&Value>) {}

    fn answer<'a>(
        &'a self,
        review: Review<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        let requester = review.requester;
        let mut user_info = json!({"username": requester.name});
        if !requester.groups.is_empty() {
            user_info["groups"] = json!(requester.groups);
        }
        object["status"] = json!({"userInfo": user_info});
        answered(Ok(()))
    }

    /// Nothing about a SelfSubjectReview can be invalid, so the invalid sample names no field.
    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {}}),
            invalid: json!({"metadata": {}}),
            invalid_field: "",
        }
    }
}
