//! `authorization.k8s.io/v1` LocalSubjectAccessReview: a SubjectAccessReview confined to one
//! namespace, which namespace admins may ask (`system:aggregate-to-admin` grants it).

use super::subject_access_review::subject_of;
use super::{GROUP, a_review, access_review_spec, answer_access, empty_metadata};
use crate::apiserver::registry::prelude::*;
use crate::apiserver::status::ApiError;
use k8s_openapi::api::authorization::v1 as api;

/// The `localsubjectaccessreviews` resource.
pub static RESOURCE: Resource = Resource {
    group: GROUP,
    version: "v1",
    kind: "LocalSubjectAccessReview",
    plural: "localsubjectaccessreviews",
    singular: "localsubjectaccessreview",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "localsubjectaccessreviews",
    field_labels: &[],
    strategy: &LocalSubjectAccessReviews,
};

/// The `LocalSubjectAccessReview` strategy.
pub struct LocalSubjectAccessReviews;

impl Strategy for LocalSubjectAccessReviews {
    typed_as!("v1.LocalSubjectAccessReview", api::LocalSubjectAccessReview);
    a_review!();

    /// Upstream's `ValidateLocalSubjectAccessReview`: no non-resource questions, and the
    /// namespace asked about is the review's own.
    fn validate(&self, e: &mut Errs, object: &Value, _old: Option<&Value>) {
        access_review_spec(e, object, true);
        empty_metadata(e, object, &["namespace"]);
        let spec = get(Some(object), "spec");
        if let Some(given) = get(spec, "nonResourceAttributes").filter(|v| !v.is_null()) {
            e.invalid(
                "spec.nonResourceAttributes",
                &compact(given),
                "disallowed on this kind of request",
            );
        }
        let asked = str_of(get(spec, "resourceAttributes"), "namespace");
        let own = str_of(get(Some(object), "metadata"), "namespace");
        if get(spec, "resourceAttributes").is_some_and(|v| !v.is_null()) && asked != own {
            e.invalid_s(
                "spec.resourceAttributes.namespace",
                asked,
                "must match metadata.namespace",
            );
        }
    }

    fn answer<'a>(
        &'a self,
        review: Review<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        answer_access(review.authorizer, &subject_of(object), object);
        answered(Ok(()))
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {}, "spec": {"user": "jane", "resourceAttributes": {
                "namespace": "default", "verb": "list", "resource": "pods"}}}),
            invalid: json!({"metadata": {}, "spec": {"user": "jane", "resourceAttributes": {
                "namespace": "other", "verb": "list", "resource": "pods"}}}),
            invalid_field: "spec.resourceAttributes.namespace",
        }
    }
}
