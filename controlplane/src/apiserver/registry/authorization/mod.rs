//! `authorization.k8s.io/v1`: the access reviews (`kubectl auth can-i`). Each is created to ask
//! whether a user may do something, or what they may do in a namespace, and answered at once
//! from the RBAC policy; none is stored. The validation shared by the subject access reviews
//! (upstream's `ValidateSubjectAccessReviewSpec`) and the translation of a spec into
//! authorization attributes live here.

pub mod local_subject_access_review;
pub mod self_subject_access_review;
pub mod self_subject_rules_review;
pub mod subject_access_review;

use crate::apiserver::registry::prelude::*;
use crate::auth::{User, authorizer::Authorizer, rbac::Attributes};

/// The API group.
pub const GROUP: &str = "authorization.k8s.io";

/// The Strategy methods every review shares: it is a review, and its table is the default one
/// (nothing is stored to list, but the registry asks every kind for a table).
macro_rules! a_review {
    () => {
        fn is_review(&self) -> bool {
            true
        }

        fn columns(&self) -> Cow<'static, [Column]> {
            Cow::Borrowed(crate::apiserver::tables::DEFAULT_COLUMNS)
        }

        fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
            crate::apiserver::tables::default_cells(object, now)
        }
    };
}
pub(crate) use a_review;

/// Upstream's `ValidateSubjectAccessReviewSpec` (`needs_subject` for SubjectAccessReview,
/// which names its user).
pub(crate) fn access_review_spec(e: &mut Errs, object: &Value, needs_subject: bool) {
    let spec = get(Some(object), "spec");
    let resource = get(spec, "resourceAttributes").filter(|v| !v.is_null());
    let non_resource = get(spec, "nonResourceAttributes").filter(|v| !v.is_null());
    match (resource, non_resource) {
        (Some(_), Some(given)) => e.invalid(
            "spec.nonResourceAttributes",
            &compact(given),
            "cannot be specified in combination with resourceAttributes",
        ),
        (None, None) => e.invalid(
            "spec.resourceAttributes",
            "null",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ),
        _ => {}
    }
    if needs_subject && str_of(spec, "user").is_empty() && arr_of(spec, "groups").is_empty() {
        e.invalid_s(
            "spec.user",
            "",
            "at least one of user or group must be specified",
        );
    }
}

/// A review's metadata must be empty but for `allowed` fields (upstream: "must be empty").
pub(crate) fn empty_metadata(e: &mut Errs, object: &Value, allowed: &[&str]) {
    let Some(metadata) = obj_of(Some(object), "metadata") else {
        return;
    };
    let set: Vec<&String> = metadata
        .iter()
        .filter(|(key, value)| {
            !allowed.contains(&key.as_str())
                && key.as_str() != "managedFields"
                && !is_empty_value(&normalize(value))
        })
        .map(|(key, _)| key)
        .collect();
    if !set.is_empty() {
        e.invalid(
            "metadata",
            &compact(&Value::Object(metadata.clone())),
            "must be empty",
        );
    }
}

/// The attributes a review's spec asks about.
pub(crate) fn attributes_of(object: &Value) -> Attributes {
    let spec = get(Some(object), "spec");
    if let Some(resource) = get(spec, "resourceAttributes").filter(|v| !v.is_null()) {
        let resource = Some(resource);
        let mut attributes = Attributes::resource(
            str_of(resource, "verb"),
            str_of(resource, "group"),
            str_of(resource, "resource"),
            str_of(resource, "namespace"),
            str_of(resource, "name"),
        );
        attributes.subresource = str_of(resource, "subresource").to_owned();
        return attributes;
    }
    let non_resource = get(spec, "nonResourceAttributes");
    Attributes::path(str_of(non_resource, "verb"), str_of(non_resource, "path"))
}

/// Answers an access review for `user` (upstream's SubjectAccessReview REST): `allowed`, and
/// RBAC's reason when it has one.
pub(crate) fn answer_access(authorizer: &Authorizer, user: &User, object: &mut Value) {
    let attributes = attributes_of(object);
    object["status"] = match authorizer.authorize(user, &attributes) {
        Ok(()) => json!({"allowed": true}),
        Err(reason) if reason.is_empty() => json!({"allowed": false}),
        Err(reason) => json!({"allowed": false, "reason": reason}),
    };
}
