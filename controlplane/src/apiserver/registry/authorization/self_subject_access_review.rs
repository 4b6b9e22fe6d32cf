//! `authorization.k8s.io/v1` SelfSubjectAccessReview: may I do this? (`kubectl auth can-i`).

use super::{GROUP, a_review, access_review_spec, answer_access, empty_metadata};
use crate::apiserver::registry::prelude::*;
use crate::apiserver::status::ApiError;
use k8s_openapi::api::authorization::v1 as api;

/// The `selfsubjectaccessreviews` resource.
pub static RESOURCE: Resource = Resource {
    group: GROUP,
    version: "v1",
    kind: "SelfSubjectAccessReview",
    plural: "selfsubjectaccessreviews",
    singular: "selfsubjectaccessreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "selfsubjectaccessreviews",
    field_labels: &[],
    strategy: &SelfSubjectAccessReviews,
};

/// The `SelfSubjectAccessReview` strategy.
pub struct SelfSubjectAccessReviews;

impl Strategy for SelfSubjectAccessReviews {
    typed_as!("v1.SelfSubjectAccessReview", api::SelfSubjectAccessReview);
    a_review!();

    fn validate(&self, e: &mut Errs, object: &Value, _old: Option<&Value>) {
        access_review_spec(e, object, false);
        empty_metadata(e, object, &[]);
    }

    fn answer<'a>(
        &'a self,
        review: Review<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        answer_access(review.authorizer, review.requester, object);
        answered(Ok(()))
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {}, "spec": {"resourceAttributes": {
                "namespace": "default", "verb": "list", "resource": "pods"}}}),
            invalid: json!({"metadata": {}, "spec": {}}),
            invalid_field: "spec.resourceAttributes",
        }
    }
}
