//! RBAC authorization (upstream's `plugin/pkg/auth/authorizer/rbac`): what a request asks
//! ([`Attributes`]), what a rule grants ([`Rule::allows`]), and the decision over every binding
//! that names the user ([`Policy::authorize`]). The roles and bindings come from etcd through
//! [`cache::PolicyCache`], so a decision never waits for storage.

pub mod bootstrap;
pub mod cache;
pub mod escalation;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::User;

/// The group whose members may do anything, without consulting RBAC (upstream's
/// `system:masters`, the `SystemPrivilegedGroup`).
pub const PRIVILEGED_GROUP: &str = "system:masters";

/// Who makes a request, and the policy that judges them.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// The (possibly impersonated) user.
    pub user: &'a User,
    /// The policy in force.
    pub policy: &'a cache::PolicyCache,
}

/// What one request asks to do (upstream's `authorizer.Attributes` without the user).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// The verb: get, list, watch, create, update, patch, delete, deletecollection, or a special
    /// one (impersonate, bind, escalate, approve, use).
    pub verb: String,
    /// Whether the request addresses a resource; otherwise it addresses `path`.
    pub resource_request: bool,
    /// The URL path of a non-resource request.
    pub path: String,
    /// API group of the resource ("" for the core group).
    pub api_group: String,
    /// The resource's REST name (`pods`).
    pub resource: String,
    /// The subresource (`status`, `log`), or "".
    pub subresource: String,
    /// The namespace, or "" at the cluster scope.
    pub namespace: String,
    /// The object's name, or "" for collections.
    pub name: String,
}

impl Attributes {
    /// A request on a resource.
    pub fn resource(
        verb: &str,
        api_group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Self {
        let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
        Self {
            verb: verb.to_owned(),
            resource_request: true,
            api_group: api_group.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            ..Self::default()
        }
    }

    /// A request on a non-resource path (`/healthz`, `/apis`).
    pub fn path(verb: &str, path: &str) -> Self {
        Self {
            verb: verb.to_owned(),
            path: path.to_owned(),
            ..Self::default()
        }
    }

    /// `pods` or `pods/log`, as rules name it.
    fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// Upstream's reason for a denial: `User "jane" cannot list resource "pods" in API group ""
    /// in the namespace "default"`.
    pub fn denial(&self, user: &User) -> String {
        if !self.resource_request {
            return format!(
                "User {:?} cannot {} path {:?}",
                user.name, self.verb, self.path
            );
        }
        let scope = if self.namespace.is_empty() {
            "at the cluster scope".to_owned()
        } else {
            format!("in the namespace {:?}", self.namespace)
        };
        format!(
            "User {:?} cannot {} resource {:?} in API group {:?} {scope}",
            user.name,
            self.verb,
            self.combined_resource(),
            self.api_group
        )
    }
}

/// One `PolicyRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Verbs, `*` for all.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups, `*` for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources (`pods`, `pods/log`, `*`, `*/scale`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Object names; empty for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Non-resource paths (`/healthz`, `/apis/*`).
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

impl Rule {
    /// The rules of a role object (unreadable rules are skipped: validation let none in).
    pub fn of(role: &Value) -> Vec<Rule> {
        role.get("rules")
            .and_then(Value::as_array)
            .map(|rules| {
                rules
                    .iter()
                    .filter_map(|rule| serde_json::from_value(rule.clone()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Upstream's `RuleAllows`.
    pub fn allows(&self, attributes: &Attributes) -> bool {
        if !any_matches(&self.verbs, &attributes.verb) {
            return false;
        }
        if !attributes.resource_request {
            return self.non_resource_urls.iter().any(|url| {
                url == "*"
                    || *url == attributes.path
                    || url
                        .strip_suffix('*')
                        .is_some_and(|prefix| attributes.path.starts_with(prefix))
            });
        }
        let combined = attributes.combined_resource();
        let resource_matches = self.resources.iter().any(|resource| {
            resource == "*"
                || *resource == combined
                || (!attributes.subresource.is_empty()
                    && resource.strip_prefix("*/") == Some(attributes.subresource.as_str()))
        });
        any_matches(&self.api_groups, &attributes.api_group)
            && resource_matches
            && (self.resource_names.is_empty() || self.resource_names.contains(&attributes.name))
    }
}

/// Whether `values` holds `*` or `wanted`.
fn any_matches(values: &[String], wanted: &str) -> bool {
    values.iter().any(|value| value == "*" || value == wanted)
}

/// A subject of a binding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Subject {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: String,
}

impl Subject {
    /// Upstream's `appliesToUser`; a ServiceAccount subject of a RoleBinding without a
    /// namespace means the binding's own.
    fn applies_to(&self, user: &User, binding_namespace: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.groups.contains(&self.name),
            "ServiceAccount" => {
                let namespace = if self.namespace.is_empty() {
                    binding_namespace
                } else {
                    &self.namespace
                };
                !namespace.is_empty()
                    && user.name == format!("system:serviceaccount:{namespace}:{}", self.name)
            }
            _ => false,
        }
    }
}

/// What a binding refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RoleRef {
    Role(String),
    ClusterRole(String),
}

/// A RoleBinding or ClusterRoleBinding, as the authorizer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Binding {
    /// Its namespace ("" for a ClusterRoleBinding).
    namespace: String,
    role: RoleRef,
    subjects: Vec<Subject>,
}

impl Binding {
    fn of(object: &Value) -> Option<Binding> {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = object["roleRef"]["name"].as_str()?.to_owned();
        let role = match object["roleRef"]["kind"].as_str()? {
            "Role" if !namespace.is_empty() => RoleRef::Role(name),
            "ClusterRole" => RoleRef::ClusterRole(name),
            _ => return None,
        };
        let subjects = object
            .get("subjects")
            .and_then(Value::as_array)
            .map(|subjects| {
                subjects
                    .iter()
                    .filter_map(|s| serde_json::from_value(s.clone()).ok())
                    .collect()
            })
            .unwrap_or_default();
        Some(Binding {
            namespace,
            role,
            subjects,
        })
    }

    fn applies_to(&self, user: &User) -> bool {
        self.subjects
            .iter()
            .any(|subject| subject.applies_to(user, &self.namespace))
    }
}

/// What [`Policy::visit`] calls with each binding's rules (or why they are missing); false
/// stops the visit.
type RuleVisitor<'a> = dyn FnMut(Result<&[Rule], String>) -> bool + 'a;

/// Every role and binding, indexed for decisions.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    cluster_roles: HashMap<String, Vec<Rule>>,
    roles: HashMap<(String, String), Vec<Rule>>,
    cluster_bindings: HashMap<String, Binding>,
    /// RoleBindings by namespace, then name: a decision reads only its namespace's.
    bindings: HashMap<String, HashMap<String, Binding>>,
}

/// The four kinds the policy is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ClusterRole.
    ClusterRole,
    /// Role.
    Role,
    /// ClusterRoleBinding.
    ClusterRoleBinding,
    /// RoleBinding.
    RoleBinding,
}

impl Policy {
    /// Records `object` (a role or binding of `kind`) as current; None removes it.
    pub fn set(&mut self, kind: Kind, namespace: &str, name: &str, object: Option<&Value>) {
        let key = (namespace.to_owned(), name.to_owned());
        match (kind, object) {
            (Kind::ClusterRole, Some(o)) => {
                self.cluster_roles.insert(name.to_owned(), Rule::of(o));
            }
            (Kind::ClusterRole, None) => {
                self.cluster_roles.remove(name);
            }
            (Kind::Role, Some(o)) => {
                self.roles.insert(key, Rule::of(o));
            }
            (Kind::Role, None) => {
                self.roles.remove(&key);
            }
            (Kind::ClusterRoleBinding, object) => match object.and_then(Binding::of) {
                Some(binding) => {
                    self.cluster_bindings.insert(name.to_owned(), binding);
                }
                None => {
                    self.cluster_bindings.remove(name);
                }
            },
            (Kind::RoleBinding, object) => match object.and_then(Binding::of) {
                Some(binding) => {
                    self.bindings
                        .entry(key.0)
                        .or_default()
                        .insert(key.1, binding);
                }
                None => {
                    if let Some(in_namespace) = self.bindings.get_mut(namespace) {
                        in_namespace.remove(name);
                        if in_namespace.is_empty() {
                            self.bindings.remove(namespace);
                        }
                    }
                }
            },
        }
    }

    /// Forgets every object of `kind` (before a fresh list replaces them).
    pub fn clear(&mut self, kind: Kind) {
        match kind {
            Kind::ClusterRole => self.cluster_roles.clear(),
            Kind::Role => self.roles.clear(),
            Kind::ClusterRoleBinding => self.cluster_bindings.clear(),
            Kind::RoleBinding => self.bindings.clear(),
        }
    }

    /// Calls `visit` with the rules every binding that applies to `user` grants in `namespace`
    /// (cluster-wide bindings first, then the namespace's), and with an error for each binding
    /// whose role is missing. `visit` returns false to stop. Upstream's `VisitRulesFor`.
    fn visit(&self, user: &User, namespace: &str, visit: &mut RuleVisitor<'_>) {
        let mut bindings: Vec<&Binding> = self
            .cluster_bindings
            .values()
            .filter(|b| b.applies_to(user))
            .collect();
        if let Some(in_namespace) = self.bindings.get(namespace) {
            bindings.extend(in_namespace.values().filter(|b| b.applies_to(user)));
        }
        for binding in bindings {
            let rules = match &binding.role {
                RoleRef::ClusterRole(name) => self.cluster_roles.get(name).ok_or_else(|| {
                    format!("clusterrole.rbac.authorization.k8s.io {name:?} not found")
                }),
                RoleRef::Role(name) => self
                    .roles
                    .get(&(binding.namespace.clone(), name.clone()))
                    .ok_or_else(|| format!("role.rbac.authorization.k8s.io {name:?} not found")),
            };
            if !visit(rules.map(Vec::as_slice)) {
                return;
            }
        }
    }

    /// Whether `user` may do what `attributes` ask, and when not, the reason RBAC adds to the
    /// denial (the bindings whose roles are missing). Members of `system:masters` may do
    /// anything.
    pub fn authorize(&self, user: &User, attributes: &Attributes) -> Result<(), String> {
        if user.groups.iter().any(|g| g == PRIVILEGED_GROUP) {
            return Ok(());
        }
        let mut allowed = false;
        let mut errors = Vec::new();
        self.visit(user, &attributes.namespace, &mut |rules| {
            match rules {
                Ok(rules) => allowed = rules.iter().any(|rule| rule.allows(attributes)),
                Err(err) => errors.push(err),
            }
            !allowed
        });
        if allowed {
            return Ok(());
        }
        errors.sort();
        errors.dedup();
        Err(match errors.as_slice() {
            [] => String::new(),
            [one] => format!("RBAC: {one}"),
            many => format!("RBAC: [{}]", many.join(", ")),
        })
    }

    /// Every rule granted to `user` in `namespace` (cluster-wide ones included), in binding
    /// order without duplicates, and whether some binding's role was missing
    /// (SelfSubjectRulesReview's `incomplete`).
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let mut all: Vec<Rule> = Vec::new();
        let mut errors = Vec::new();
        self.visit(user, namespace, &mut |rules| {
            match rules {
                Ok(rules) => {
                    for rule in rules {
                        if !all.contains(rule) {
                            all.push(rule.clone());
                        }
                    }
                }
                Err(err) => errors.push(err),
            }
            true
        });
        (all, errors)
    }

    /// The rules of the role a binding in `namespace` refers to (`kind` Role or ClusterRole).
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Option<&[Rule]> {
        match kind {
            "ClusterRole" => self.cluster_roles.get(name),
            "Role" => self.roles.get(&(namespace.to_owned(), name.to_owned())),
            _ => None,
        }
        .map(Vec::as_slice)
    }
}

#[cfg(test)]
mod tests;
