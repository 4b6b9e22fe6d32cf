//! `rbac.authorization.k8s.io/v1`: Role, ClusterRole, RoleBinding, ClusterRoleBinding. The rules
//! all four share (upstream's `pkg/apis/rbac/validation` and `pkg/apis/rbac/v1/defaults.go`) live
//! here; what a rule grants is decided in [`crate::auth::rbac`], and who may write a role or a
//! binding (escalation prevention) in [`crate::auth::rbac::escalation`].

pub mod cluster_role;
pub mod cluster_role_binding;
pub mod role;
pub mod role_binding;

use crate::apiserver::{registry::prelude::*, status::ApiError};
use crate::auth::rbac::{Attributes, Rule, escalation::confirm_no_escalation};

/// A Strategy's `admit`: escalation prevention by `$check` (upstream's policy-based storage).
macro_rules! escalation_checked {
    ($check:ident) => {
        fn admit<'a>(
            &'a self,
            _admission: &'a crate::apiserver::admission::Admission,
            lookup: &'a dyn Lookup,
            object: &'a mut Value,
            _old: Option<&'a Value>,
        ) -> futures::future::BoxFuture<'a, Result<(), crate::apiserver::status::ApiError>> {
            Box::pin(async move { $check(lookup, &RESOURCE, object) })
        }
    };
}
use escalation_checked;

/// The API group of RBAC objects, and of the User and Group subjects.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// `ValidatePolicyRule`: every rule of a role (`namespaced` for a Role, which may not name
/// non-resource URLs).
pub(crate) fn policy_rules(e: &mut Errs, object: &Value, namespaced: bool) {
    for (i, rule) in arr_of(Some(object), "rules").iter().enumerate() {
        let path = idx("rules", i);
        let rule = Some(rule);
        if strings_of(rule, "verbs").is_empty() {
            e.required(
                &child(&path, "verbs"),
                "verbs must contain at least one value",
            );
        }
        let urls = arr_of(rule, "nonResourceURLs");
        if !urls.is_empty() {
            let shown = go_strings(get(rule, "nonResourceURLs"));
            if namespaced {
                e.invalid(
                    &child(&path, "nonResourceURLs"),
                    &shown,
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            let resource_fields = ["apiGroups", "resources", "resourceNames"];
            if resource_fields
                .iter()
                .any(|field| !arr_of(rule, field).is_empty())
            {
                e.invalid(
                    &child(&path, "nonResourceURLs"),
                    &shown,
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if arr_of(rule, "apiGroups").is_empty() {
            e.required(
                &child(&path, "apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if arr_of(rule, "resources").is_empty() {
            e.required(
                &child(&path, "resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

/// `ValidateRoleBinding` and `ValidateClusterRoleBinding`: the roleRef (whose kinds are
/// `kinds`) and every subject; a ClusterRoleBinding's (`namespaced` false) ServiceAccount
/// subjects must name their namespace.
pub(crate) fn binding(e: &mut Errs, object: &Value, old: Option<&Value>, kinds: &[&str]) {
    let namespaced = kinds.contains(&"Role");
    let role_ref = get(Some(object), "roleRef");
    let api_group = str_of(role_ref, "apiGroup");
    if api_group != GROUP {
        e.not_supported("roleRef.apiGroup", api_group, &[GROUP]);
    }
    let kind = str_of(role_ref, "kind");
    if !kinds.contains(&kind) {
        e.not_supported("roleRef.kind", kind, kinds);
    }
    let name = str_of(role_ref, "name");
    if name.is_empty() {
        e.required("roleRef.name", "");
    } else {
        for message in is_path_segment_name(name, false) {
            e.invalid_s("roleRef.name", name, &message);
        }
    }
    for (i, subject) in arr_of(Some(object), "subjects").iter().enumerate() {
        binding_subject(e, Some(subject), &idx("subjects", i), namespaced);
    }
    if let Some(old) = old {
        let old_ref = get(Some(old), "roleRef");
        if normalize(role_ref.unwrap_or(&Value::Null)) != normalize(old_ref.unwrap_or(&Value::Null))
        {
            let shown = format!(
                "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
                q(api_group),
                q(kind),
                q(name)
            );
            e.invalid("roleRef", &shown, "cannot change roleRef");
        }
    }
}

/// `ValidateRoleBindingSubject`.
fn binding_subject(e: &mut Errs, subject: Option<&Value>, path: &str, namespaced: bool) {
    let name = str_of(subject, "name");
    if name.is_empty() {
        e.required(&child(path, "name"), "");
    }
    let api_group = str_of(subject, "apiGroup");
    match str_of(subject, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for message in is_dns1123_subdomain(name) {
                    e.invalid_s(&child(path, "name"), name, &message);
                }
            }
            if !api_group.is_empty() {
                e.not_supported(&child(path, "apiGroup"), api_group, &[""]);
            }
            if !namespaced && str_of(subject, "namespace").is_empty() {
                e.required(&child(path, "namespace"), "");
            }
        }
        "User" | "Group" => {
            if api_group != GROUP {
                e.not_supported(&child(path, "apiGroup"), api_group, &[GROUP]);
            }
        }
        other => e.not_supported(
            &child(path, "kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        ),
    }
}

/// `SetDefaults_RoleBinding`, `SetDefaults_ClusterRoleBinding` and `SetDefaults_Subject`: the
/// roleRef's and the User and Group subjects' apiGroup default to RBAC's.
pub(crate) fn default_binding(object: &mut Value) {
    if let Some(role_ref) = object.get_mut("roleRef").and_then(Value::as_object_mut)
        && role_ref
            .get("apiGroup")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        role_ref.insert("apiGroup".into(), json!(GROUP));
    }
    let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) else {
        return;
    };
    for subject in subjects.iter_mut().filter_map(Value::as_object_mut) {
        let unset = subject
            .get("apiGroup")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
        if unset && matches!(kind, "User" | "Group") {
            subject.insert("apiGroup".into(), json!(GROUP));
        }
    }
}

/// Escalation prevention on a Role or ClusterRole write: the requester must hold every
/// permission the role grants, or be allowed to `escalate` roles; an aggregationRule can gather
/// anything, so setting one takes every permission.
pub(crate) fn admit_role(
    lookup: &dyn Lookup,
    resource: &Resource,
    object: &Value,
) -> Result<(), ApiError> {
    let Some(requester) = lookup.requester() else {
        return Ok(());
    };
    let metadata = get(Some(object), "metadata");
    let (namespace, name) = (str_of(metadata, "namespace"), str_of(metadata, "name"));
    let may_escalate = Attributes::resource("escalate", GROUP, resource.plural, namespace, name);
    let policy = requester.policy.read();
    let forbidden = |why: String| ApiError::forbidden(&resource.qualified_name(), name, &why);
    confirm_no_escalation(
        &policy,
        requester.user,
        namespace,
        &Rule::of(object),
        &may_escalate,
    )
    .map_err(forbidden)?;
    if object.get("aggregationRule").is_some_and(|a| !a.is_null()) {
        let everything = [
            Rule {
                verbs: vec!["*".into()],
                api_groups: vec!["*".into()],
                resources: vec!["*".into()],
                ..Rule::default()
            },
            Rule {
                verbs: vec!["*".into()],
                non_resource_urls: vec!["*".into()],
                ..Rule::default()
            },
        ];
        confirm_no_escalation(
            &policy,
            requester.user,
            namespace,
            &everything,
            &may_escalate,
        )
        .map_err(|_| {
            forbidden("must have cluster-admin privileges to use the aggregationRule".into())
        })?;
    }
    Ok(())
}

/// Escalation prevention on a RoleBinding or ClusterRoleBinding write: the requester must be
/// allowed to `bind` the role it refers to, or hold every permission of that role (in the
/// binding's namespace).
pub(crate) fn admit_binding(
    lookup: &dyn Lookup,
    resource: &Resource,
    object: &Value,
) -> Result<(), ApiError> {
    let Some(requester) = lookup.requester() else {
        return Ok(());
    };
    let metadata = get(Some(object), "metadata");
    let (namespace, name) = (str_of(metadata, "namespace"), str_of(metadata, "name"));
    let role_ref = get(Some(object), "roleRef");
    let (kind, role) = (str_of(role_ref, "kind"), str_of(role_ref, "name"));
    let (plural, singular) = if kind == "Role" {
        ("roles", "role")
    } else {
        ("clusterroles", "clusterrole")
    };
    let may_bind = Attributes::resource("bind", GROUP, plural, namespace, role);
    let policy = requester.policy.read();
    if policy.authorize(requester.user, &may_bind).is_ok() {
        return Ok(());
    }
    let rules = policy
        .role_rules(kind, namespace, role)
        .ok_or_else(|| ApiError::not_found(&format!("{singular}.{GROUP}"), role))?;
    confirm_no_escalation(&policy, requester.user, namespace, rules, &may_bind)
        .map_err(|why| ApiError::forbidden(&resource.qualified_name(), name, &why))
}
