//! `authorization.k8s.io/v1` SubjectAccessReview: may this user (and these groups) do this? Asked by
//! components that authorize their own callers through the API (the kubelet API among them).

use super::{GROUP, a_review, access_review_spec, answer_access, empty_metadata};
use crate::apiserver::registry::prelude::*;
use crate::apiserver::status::ApiError;
use crate::auth::User;
use k8s_openapi::api::authorization::v1 as api;

/// The `subjectaccessreviews` resource.
pub static RESOURCE: Resource = Resource {
    group: GROUP,
    version: "v1",
    kind: "SubjectAccessReview",
    plural: "subjectaccessreviews",
    singular: "subjectaccessreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "subjectaccessreviews",
    field_labels: &[],
    strategy: &SubjectAccessReviews,
};

/// The `SubjectAccessReview` strategy.
pub struct SubjectAccessReviews;

impl Strategy for SubjectAccessReviews {
    typed_as!("v1.SubjectAccessReview", api::SubjectAccessReview);
    a_review!();

    fn validate(&self, e: &mut Errs, object: &Value, _old: Option<&Value>) {
        access_review_spec(e, object, true);
        empty_metadata(e, object, &[]);
    }

    /// Judges the user the spec names, not the requester.
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
            valid: json!({"metadata": {}, "spec": {"user": "jane", "groups": ["dev"],
                "nonResourceAttributes": {"verb": "get", "path": "/healthz"}}}),
            invalid: json!({"metadata": {}, "spec": {
                "nonResourceAttributes": {"verb": "get", "path": "/healthz"}}}),
            invalid_field: "spec.user",
        }
    }
}

/// The user a SubjectAccessReview or LocalSubjectAccessReview asks about.
pub(crate) fn subject_of(object: &Value) -> User {
    let spec = get(Some(object), "spec");
    User {
        name: str_of(spec, "user").to_owned(),
        groups: strings_of(spec, "groups")
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
}
