//! Escalation prevention (upstream's `pkg/registry/rbac/validation`): a user may write a role
//! only with permissions they hold themselves, and bind a role only if they hold its
//! permissions, unless RBAC grants them the `escalate` (roles) or `bind` (bindings) verb.
//! Members of `system:masters` may do both.

use super::{Attributes, Policy, Rule};
use crate::auth::User;

/// One permission a rule grants: a single verb on a single group/resource(/name) or path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Atom<'a> {
    verb: &'a str,
    target: Target<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target<'a> {
    Resource {
        group: &'a str,
        resource: &'a str,
        name: Option<&'a str>,
    },
    Path(&'a str),
}

impl Atom<'_> {
    /// Whether `owner` grants this permission (upstream's `ruleCovers` on a broken-down rule).
    fn covered_by(&self, owner: &Rule) -> bool {
        let has = |values: &[String], wanted: &str| values.iter().any(|v| v == "*" || v == wanted);
        if !has(&owner.verbs, self.verb) {
            return false;
        }
        match self.target {
            Target::Path(path) => owner.non_resource_urls.iter().any(|url| {
                url == path
                    || url == "*"
                    || url
                        .strip_suffix('*')
                        .is_some_and(|prefix| path.starts_with(prefix))
            }),
            Target::Resource {
                group,
                resource,
                name,
            } => {
                let resource_covered = owner.resources.iter().any(|r| {
                    r == "*"
                        || r == resource
                        || resource
                            .split_once('/')
                            .is_some_and(|(_, sub)| r.strip_prefix("*/") == Some(sub))
                });
                let name_covered = owner.resource_names.is_empty()
                    || name.is_some_and(|name| owner.resource_names.iter().any(|n| n == name));
                has(&owner.api_groups, group) && resource_covered && name_covered
            }
        }
    }
}

/// Every single permission `rule` grants (upstream's `BreakdownRule`).
fn breakdown(rule: &Rule) -> Vec<Atom<'_>> {
    let mut atoms = Vec::new();
    for verb in &rule.verbs {
        for group in &rule.api_groups {
            for resource in &rule.resources {
                if rule.resource_names.is_empty() {
                    atoms.push(Atom {
                        verb,
                        target: Target::Resource {
                            group,
                            resource,
                            name: None,
                        },
                    });
                }
                for name in &rule.resource_names {
                    atoms.push(Atom {
                        verb,
                        target: Target::Resource {
                            group,
                            resource,
                            name: Some(name),
                        },
                    });
                }
            }
        }
        for path in &rule.non_resource_urls {
            atoms.push(Atom {
                verb,
                target: Target::Path(path),
            });
        }
    }
    atoms
}

/// The permissions of `wanted` that `owner` does not grant, as rules compacted the way
/// upstream prints them (one rule per group/resource with all its verbs).
pub fn missing(owner: &[Rule], wanted: &[Rule]) -> Vec<Rule> {
    let mut missing: Vec<Rule> = Vec::new();
    for rule in wanted {
        for atom in breakdown(rule) {
            if owner.iter().any(|o| atom.covered_by(o)) {
                continue;
            }
            let mut single = match atom.target {
                Target::Resource {
                    group,
                    resource,
                    name,
                } => Rule {
                    api_groups: vec![group.to_owned()],
                    resources: vec![resource.to_owned()],
                    resource_names: name.map(str::to_owned).into_iter().collect(),
                    ..Rule::default()
                },
                Target::Path(path) => Rule {
                    non_resource_urls: vec![path.to_owned()],
                    ..Rule::default()
                },
            };
            let simple = single.resource_names.is_empty() && single.non_resource_urls.is_empty();
            match missing.iter_mut().find(|m| {
                simple
                    && m.api_groups == single.api_groups
                    && m.resources == single.resources
                    && m.resource_names.is_empty()
                    && m.non_resource_urls.is_empty()
            }) {
                Some(merged) => {
                    if !merged.verbs.iter().any(|v| v == atom.verb) {
                        merged.verbs.push(atom.verb.to_owned());
                    }
                }
                None => {
                    single.verbs.push(atom.verb.to_owned());
                    missing.push(single);
                }
            }
        }
    }
    missing
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quoted(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// Upstream's `CompactString` of a rule.
pub fn compact_string(rule: &Rule) -> String {
    let mut parts = Vec::new();
    for (label, values) in [
        ("APIGroups", &rule.api_groups),
        ("Resources", &rule.resources),
        ("ResourceNames", &rule.resource_names),
        ("NonResourceURLs", &rule.non_resource_urls),
        ("Verbs", &rule.verbs),
    ] {
        if !values.is_empty() {
            parts.push(format!("{label}:{}", go_quoted(values)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// Why `user` may not grant `wanted` in `namespace` (upstream's `ConfirmNoEscalation`), or
/// Ok when they hold every permission in it, or may escalate (`escalate` per `may_escalate`;
/// `system:masters` may, as the policy allows them everything).
pub fn confirm_no_escalation(
    policy: &Policy,
    user: &User,
    namespace: &str,
    wanted: &[Rule],
    may_escalate: &Attributes,
) -> Result<(), String> {
    if policy.authorize(user, may_escalate).is_ok() {
        return Ok(());
    }
    let (owned, errors) = policy.rules_for(user, namespace);
    let missing = missing(&owned, wanted);
    if missing.is_empty() {
        return Ok(());
    }
    let mut described: Vec<String> = missing.iter().map(compact_string).collect();
    described.sort();
    described.dedup();
    let mut message = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_quoted(&user.groups),
        described.join("\n")
    );
    if !errors.is_empty() {
        message.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(message)
}
