//! Which requests a policy's `matchConstraints` (and a binding's `matchResources`) select by
//! their rules, as upstream's `policy/matching` does: an excluded rule leaves the request out,
//! then a resource rule (with its `resourceNames`) must name it, in the requested version or,
//! under `matchPolicy: Equivalent`, in another served version of the same resource. Plain
//! functions over the request's attributes and the stored JSON; the selectors are matched by
//! the webhooks' functions ([`crate::apiserver::webhooks::matching`]).

use serde_json::Value;

use crate::apiserver::registry::Resource;
use crate::apiserver::webhooks::matching::{Attributes, rule_matches};

/// The version in which `constraints` (a MatchResources) selects the request by its rules, if
/// it does: None when an `excludeResourceRules` entry matches or no `resourceRules` entry
/// does. Empty `resourceRules` select everything (a binding that narrows nothing).
/// `equivalents` gives the other served versions of the requested resource.
pub fn selected_version(
    constraints: &Value,
    attributes: &Attributes<'_>,
    equivalents: impl Fn() -> Vec<&'static Resource>,
) -> Option<&'static Resource> {
    let equivalent = constraints["matchPolicy"] == "Equivalent";
    let rules = |field: &str| {
        constraints[field]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    };
    if matched_in(
        rules("excludeResourceRules"),
        equivalent,
        attributes,
        &equivalents,
    )
    .is_some()
    {
        return None;
    }
    let included = rules("resourceRules");
    if included.is_empty() {
        return Some(attributes.resource);
    }
    matched_in(included, equivalent, attributes, &equivalents)
}

/// Upstream's `matchesResourceRules`: the requested resource when one of `rules` names it
/// (and, if it lists names, the object's); else, when `equivalent`, the first other version
/// one of them names.
fn matched_in(
    rules: &[Value],
    equivalent: bool,
    attributes: &Attributes<'_>,
    equivalents: &dyn Fn() -> Vec<&'static Resource>,
) -> Option<&'static Resource> {
    let named = |rule: &Value, attributes: &Attributes<'_>| {
        rule_matches(rule, attributes) && names_match(rule, attributes.name)
    };
    if rules.is_empty() {
        return None;
    }
    if rules.iter().any(|rule| named(rule, attributes)) {
        return Some(attributes.resource);
    }
    if !equivalent {
        return None;
    }
    let others = equivalents();
    rules.iter().find_map(|rule| {
        others.iter().copied().find(|other| {
            named(
                rule,
                &Attributes {
                    resource: other,
                    ..*attributes
                },
            )
        })
    })
}

/// A rule's `resourceNames`: empty names every object; otherwise the object's name must be
/// listed (a create with generateName has no name yet, and is not named).
fn names_match(rule: &Value, name: &str) -> bool {
    match rule["resourceNames"].as_array() {
        Some(names) if !names.is_empty() => names.iter().any(|listed| listed == name),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::apiserver::registry::builtin;
    use crate::apiserver::webhooks::matching::Operation;

    fn create(group: &str, plural: &str, name: &'static str) -> Attributes<'static> {
        Attributes::new(
            builtin(group, plural).unwrap(),
            None,
            Operation::Create,
            Some("default"),
            name,
        )
    }

    fn rule(resources: Value) -> Value {
        json!({"operations": ["CREATE", "UPDATE"], "apiGroups": ["apps"], "apiVersions": ["v1"],
            "resources": ["deployments"], "scope": "*", "resourceNames": resources})
    }

    #[test]
    fn resource_rules_select_and_exclusions_win() {
        let deployments = json!({"matchPolicy": "Equivalent", "resourceRules": [rule(json!([]))]});
        let web = create("apps", "deployments", "web");
        assert!(selected_version(&deployments, &web, Vec::new).is_some());
        assert!(selected_version(&deployments, &create("", "pods", "web"), Vec::new).is_none());
        let excluded = json!({"resourceRules": [rule(json!([]))],
            "excludeResourceRules": [rule(json!(["web"]))]});
        assert!(selected_version(&excluded, &web, Vec::new).is_none());
        assert!(
            selected_version(&excluded, &create("apps", "deployments", "api"), Vec::new).is_some()
        );
        // Names narrow a rule.
        let named = json!({"resourceRules": [rule(json!(["api"]))]});
        assert!(selected_version(&named, &web, Vec::new).is_none());
        // No resource rules (a binding's matchResources): everything not excluded.
        assert!(selected_version(&json!({}), &web, Vec::new).is_some());
    }

    #[test]
    fn equivalent_versions_match_unless_exact() {
        // Stand-ins: the request is for configmaps; pods plays another served version.
        let pods = builtin("", "pods").unwrap();
        let constraints = |policy: &str| {
            json!({"matchPolicy": policy, "resourceRules": [{"operations": ["*"], "apiGroups": [""],
                "apiVersions": ["v1"], "resources": ["pods"], "scope": "*"}]})
        };
        let config_maps = create("", "configmaps", "x");
        let found = selected_version(&constraints("Equivalent"), &config_maps, || vec![pods]);
        assert!(found.is_some_and(|r| std::ptr::eq(r, pods)));
        assert!(selected_version(&constraints("Exact"), &config_maps, || vec![pods]).is_none());
    }
}
