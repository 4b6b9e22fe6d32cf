//! `authorization.k8s.io/v1` SelfSubjectRulesReview: what may I do in this namespace?
//! (`kubectl auth can-i --list`). Lists every rule RBAC grants the requester there, cluster-wide
//! ones included.

use super::{GROUP, a_review};
use crate::apiserver::registry::prelude::*;
use crate::apiserver::status::ApiError;
use crate::auth::{User, authorizer::Authorizer};
use k8s_openapi::api::authorization::v1 as api;

/// The `selfsubjectrulesreviews` resource.
pub static RESOURCE: Resource = Resource {
    group: GROUP,
    version: "v1",
    kind: "SelfSubjectRulesReview",
    plural: "selfsubjectrulesreviews",
    singular: "selfsubjectrulesreview",
    namespaced: false,
    short_names: &[],
    categories: &[],
    subresources: &[],
    storage_prefix: "selfsubjectrulesreviews",
    field_labels: &[],
    strategy: &SelfSubjectRulesReviews,
};

/// The `SelfSubjectRulesReview` strategy.
pub struct SelfSubjectRulesReviews;

impl Strategy for SelfSubjectRulesReviews {
    typed_as!("v1.SelfSubjectRulesReview", api::SelfSubjectRulesReview);
    a_review!();

    fn validate(&self, e: &mut Errs, object: &Value, _old: Option<&Value>) {
        super::empty_metadata(e, object, &[]);
    }

    /// Upstream's REST: a namespace is required; a binding whose role is missing makes the
    /// answer `incomplete`, with the reason in `evaluationError`.
    fn answer<'a>(
        &'a self,
        review: Review<'a>,
        object: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        answered(rules_review(review.requester, review.authorizer, object))
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {}, "spec": {"namespace": "default"}}),
            invalid: json!({"metadata": {"name": "mine"}, "spec": {"namespace": "default"}}),
            invalid_field: "metadata",
        }
    }
}

/// The rules `requester` has in the review's namespace.
fn rules_review(
    requester: &User,
    authorizer: &Authorizer,
    object: &mut Value,
) -> Result<(), ApiError> {
    let namespace = str_of(get(Some(object), "spec"), "namespace");
    if namespace.is_empty() {
        return Err(ApiError::bad_request("no namespace on request"));
    }
    let (rules, errors) = authorizer.policy.read().rules_for(requester, namespace);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for rule in rules {
        if rule.non_resource_urls.is_empty() {
            let mut shown = json!({"verbs": rule.verbs, "apiGroups": rule.api_groups,
                                   "resources": rule.resources});
            if !rule.resource_names.is_empty() {
                shown["resourceNames"] = json!(rule.resource_names);
            }
            resource_rules.push(shown);
        } else {
            non_resource_rules
                .push(json!({"verbs": rule.verbs, "nonResourceURLs": rule.non_resource_urls}));
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    object["status"] = status;
    Ok(())
}
