//! Which webhooks a request goes to: upstream's rule matching (operations, groups, versions,
//! resources with subresources, scope) and the namespace and object selectors, as plain
//! functions over the request's attributes and the webhook's JSON.

use flotilla_apimachinery::selectors::label_selector_from_json;
use serde_json::{Map, Value};

use crate::apiserver::registry::{Resource, Subresource};

/// What a request does (upstream's admission operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A create (POST, or an apply that creates).
    Create,
    /// An update (PUT, PATCH, an apply that updates, a subresource write).
    Update,
    /// A delete.
    Delete,
}

impl Operation {
    /// Upstream's name (`CREATE`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "CREATE",
            Self::Update => "UPDATE",
            Self::Delete => "DELETE",
        }
    }

    /// The options kind sent beside the object (`CreateOptions`).
    pub fn options_kind(self) -> &'static str {
        match self {
            Self::Create => "CreateOptions",
            Self::Update => "UpdateOptions",
            Self::Delete => "DeleteOptions",
        }
    }
}

/// The request a webhook may be asked about.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// The resource written.
    pub resource: &'static Resource,
    /// The subresource (`status`), if any.
    pub subresource: Option<Subresource>,
    /// What the request does.
    pub operation: Operation,
    /// The object's namespace (None for cluster-scoped resources).
    pub namespace: Option<&'a str>,
    /// The object's name (empty for a create with generateName before a name is chosen).
    pub name: &'a str,
}

impl<'a> Attributes<'a> {
    /// The attributes of a write.
    pub fn new(
        resource: &'static Resource,
        subresource: Option<Subresource>,
        operation: Operation,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> Self {
        Self {
            resource,
            subresource,
            operation,
            namespace,
            name,
        }
    }
}

/// Whether one of `webhook`'s rules matches the request.
pub fn rules_match(webhook: &Value, attributes: &Attributes<'_>) -> bool {
    webhook["rules"]
        .as_array()
        .is_some_and(|rules| rules.iter().any(|rule| rule_matches(rule, attributes)))
}

/// The version in which `webhook` is asked about the request: the requested resource when a
/// rule names it; otherwise, under `matchPolicy: Equivalent` (the default), the first of
/// `equivalents` (the other served versions of the same resource) that a rule names, as
/// upstream asks with the object converted to that version; None when no rule matches.
pub fn matched_version(
    webhook: &Value,
    attributes: &Attributes<'_>,
    equivalents: impl FnOnce() -> Vec<&'static Resource>,
) -> Option<&'static Resource> {
    if rules_match(webhook, attributes) {
        return Some(attributes.resource);
    }
    if webhook["matchPolicy"] == "Exact" {
        return None;
    }
    equivalents().into_iter().find(|other| {
        rules_match(
            webhook,
            &Attributes {
                resource: other,
                ..*attributes
            },
        )
    })
}

/// Upstream's `RuleMatcher.Matches`: one rule (operations, groups, versions, resources,
/// scope) against the request.
pub(crate) fn rule_matches(rule: &Value, attributes: &Attributes<'_>) -> bool {
    let resource = attributes.resource;
    let listed = |field: &str, wanted: &str| {
        rule[field]
            .as_array()
            .is_some_and(|items| items.iter().any(|item| item == "*" || item == wanted))
    };
    listed("operations", attributes.operation.name())
        && listed("apiGroups", resource.group)
        && listed("apiVersions", resource.version)
        && resource_matches(rule, resource.plural, attributes.subresource)
        && scope_matches(rule, resource.namespaced)
}

/// `resources` entries: `*/*` (everything), `*` (every resource, no subresource), `pods`,
/// `pods/*` (every subresource of pods), `*/status`, `pods/status`.
fn resource_matches(rule: &Value, plural: &str, subresource: Option<Subresource>) -> bool {
    let sub = subresource.map(Subresource::name).unwrap_or_default();
    rule["resources"].as_array().is_some_and(|entries| {
        entries.iter().filter_map(Value::as_str).any(|entry| {
            let (res, entry_sub) = entry.split_once('/').unwrap_or((entry, ""));
            (res == "*" || res == plural) && (entry_sub == "*" || entry_sub == sub)
        })
    })
}

/// `scope`: `*` (default), `Cluster` or `Namespaced`.
fn scope_matches(rule: &Value, namespaced: bool) -> bool {
    match rule["scope"].as_str().unwrap_or("*") {
        "Cluster" => !namespaced,
        "Namespaced" => namespaced,
        _ => true,
    }
}

/// Whether `selector` (a LabelSelector; absent or null matches everything, as the defaulted
/// `{}` does) matches `labels`. A malformed selector matches nothing (validation refuses it).
pub fn selector_matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    if selector.is_null() {
        return true;
    }
    match label_selector_from_json(Some(selector)) {
        Ok(Some(parsed)) => parsed.matches(labels),
        Ok(None) => true,
        Err(_) => false,
    }
}

/// The object selector: the new object's labels or, for a delete or an update that changes
/// them, the old object's (upstream matches if either does).
pub fn object_matches(webhook: &Value, object: Option<&Value>, old: Option<&Value>) -> bool {
    let selector = &webhook["objectSelector"];
    let empty = Map::new();
    match (object, old) {
        (None, None) => selector_matches(selector, &empty),
        _ => [object, old].into_iter().flatten().any(|o| {
            selector_matches(
                selector,
                o["metadata"]["labels"].as_object().unwrap_or(&empty),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::apiserver::registry::builtin;

    fn attributes(
        group: &str,
        plural: &str,
        sub: Option<Subresource>,
        op: Operation,
    ) -> Attributes<'static> {
        Attributes {
            resource: builtin(group, plural).unwrap(),
            subresource: sub,
            operation: op,
            namespace: Some("default"),
            name: "web",
        }
    }

    #[test]
    fn rules_match_as_upstream() {
        let webhook = json!({"rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["apps"],
            "apiVersions": ["v1"], "resources": ["deployments", "deployments/scale"], "scope": "*"}]});
        assert!(rules_match(
            &webhook,
            &attributes("apps", "deployments", None, Operation::Create)
        ));
        assert!(rules_match(
            &webhook,
            &attributes(
                "apps",
                "deployments",
                Some(Subresource::Scale),
                Operation::Update
            )
        ));
        assert!(!rules_match(
            &webhook,
            &attributes(
                "apps",
                "deployments",
                Some(Subresource::Status),
                Operation::Update
            )
        ));
        assert!(!rules_match(
            &webhook,
            &attributes("apps", "deployments", None, Operation::Delete)
        ));
        assert!(!rules_match(
            &webhook,
            &attributes("apps", "replicasets", None, Operation::Create)
        ));

        let everything = json!({"rules": [{"operations": ["*"], "apiGroups": ["*"],
            "apiVersions": ["*"], "resources": ["*/*"]}]});
        assert!(rules_match(
            &everything,
            &attributes("", "pods", Some(Subresource::Status), Operation::Update)
        ));
        let no_sub = json!({"rules": [{"operations": ["*"], "apiGroups": ["*"],
            "apiVersions": ["*"], "resources": ["*"]}]});
        assert!(rules_match(
            &no_sub,
            &attributes("", "pods", None, Operation::Delete)
        ));
        assert!(!rules_match(
            &no_sub,
            &attributes("", "pods", Some(Subresource::Status), Operation::Update)
        ));
        let status = json!({"rules": [{"operations": ["*"], "apiGroups": ["*"],
            "apiVersions": ["*"], "resources": ["*/status"]}]});
        assert!(rules_match(
            &status,
            &attributes("", "pods", Some(Subresource::Status), Operation::Update)
        ));

        let cluster = json!({"rules": [{"operations": ["*"], "apiGroups": ["*"],
            "apiVersions": ["*"], "resources": ["*"], "scope": "Cluster"}]});
        assert!(!rules_match(
            &cluster,
            &attributes("", "pods", None, Operation::Create)
        ));
        assert!(rules_match(
            &cluster,
            &attributes("", "namespaces", None, Operation::Create)
        ));
    }

    #[test]
    fn equivalent_versions_match_unless_the_policy_is_exact() {
        // Stand-ins: the request is for configmaps, and pods plays the other served version of
        // the same resource (the registry gives custom kinds' versions).
        let webhook = json!({"rules": [{"operations": ["*"], "apiGroups": [""],
            "apiVersions": ["v1"], "resources": ["pods"]}]});
        let requested = attributes("", "configmaps", None, Operation::Create);
        let pods = builtin("", "pods").unwrap();
        let found = matched_version(&webhook, &requested, || vec![pods]);
        assert!(found.is_some_and(|r| std::ptr::eq(r, pods)));
        let mut exact = webhook.clone();
        exact["matchPolicy"] = json!("Exact");
        assert!(matched_version(&exact, &requested, || vec![pods]).is_none());
        assert!(matched_version(&webhook, &requested, Vec::new).is_none());
        // An exact match needs no equivalents.
        let direct = attributes("", "pods", None, Operation::Create);
        let found = matched_version(&webhook, &direct, || unreachable!("not asked"));
        assert!(found.is_some_and(|r| std::ptr::eq(r, pods)));
    }

    #[test]
    fn selectors_match_labels_of_the_object_or_the_old_one() {
        let webhook = json!({"objectSelector": {"matchLabels": {"team": "a"}}});
        let a = json!({"metadata": {"labels": {"team": "a"}}});
        let b = json!({"metadata": {"labels": {"team": "b"}}});
        assert!(object_matches(&webhook, Some(&a), None));
        assert!(!object_matches(&webhook, Some(&b), None));
        assert!(object_matches(&webhook, Some(&b), Some(&a)));
        assert!(object_matches(&json!({}), Some(&b), None));
        let expression =
            json!({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]});
        assert!(selector_matches(
            &expression,
            b["metadata"]["labels"].as_object().unwrap()
        ));
        assert!(!selector_matches(
            &expression,
            a["metadata"]["labels"].as_object().unwrap()
        ));
    }
}
