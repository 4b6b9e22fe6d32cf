#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (project rule).

use serde_json::json;

use super::escalation::{compact_string, confirm_no_escalation};
use super::*;

fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

/// The default policy, plus a Role `pod-reader` in `dev` bound to jane and to the `builder`
/// ServiceAccount (namespace left to the binding's).
fn policy() -> Policy {
    let mut policy = Policy::default();
    let (roles, bindings) = bootstrap::defaults();
    for role in &roles {
        policy.set(
            Kind::ClusterRole,
            "",
            role["metadata"]["name"].as_str().unwrap(),
            Some(role),
        );
    }
    for binding in &bindings {
        policy.set(
            Kind::ClusterRoleBinding,
            "",
            binding["metadata"]["name"].as_str().unwrap(),
            Some(binding),
        );
    }
    policy.set(
        Kind::Role,
        "dev",
        "pod-reader",
        Some(&json!({"rules": [
            {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"], "verbs": ["get"]}]})),
    );
    policy.set(
        Kind::RoleBinding,
        "dev",
        "read-pods",
        Some(&json!({"metadata": {"namespace": "dev"},
            "roleRef": {"kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "jane"},
                         {"kind": "ServiceAccount", "name": "builder"}]})),
    );
    policy
}

#[test]
fn bindings_grant_their_roles_rules_and_nothing_else() {
    let policy = policy();
    let jane = user("jane", &["system:authenticated"]);
    let list_pods = Attributes::resource("list", "", "pods", "dev", "");
    assert_eq!(policy.authorize(&jane, &list_pods), Ok(()));
    assert_eq!(
        policy.authorize(
            &jane,
            &Attributes::resource("get", "", "pods/log", "dev", "web")
        ),
        Ok(())
    );
    // Another namespace, another verb, another subresource: denied.
    assert!(
        policy
            .authorize(&jane, &Attributes::resource("list", "", "pods", "prod", ""))
            .is_err()
    );
    assert!(
        policy
            .authorize(
                &jane,
                &Attributes::resource("delete", "", "pods", "dev", "x")
            )
            .is_err()
    );
    assert!(
        policy
            .authorize(
                &jane,
                &Attributes::resource("create", "", "pods/exec", "dev", "x")
            )
            .is_err()
    );
    // resourceNames restrict to the named object.
    assert_eq!(
        policy.authorize(
            &jane,
            &Attributes::resource("get", "apps", "deployments", "dev", "web")
        ),
        Ok(())
    );
    assert!(
        policy
            .authorize(
                &jane,
                &Attributes::resource("get", "apps", "deployments", "dev", "db")
            )
            .is_err()
    );
    assert!(
        policy
            .authorize(
                &jane,
                &Attributes::resource("list", "apps", "deployments", "dev", "")
            )
            .is_err()
    );
    // A ServiceAccount subject without a namespace means the binding's.
    let builder = user(
        "system:serviceaccount:dev:builder",
        &["system:serviceaccounts"],
    );
    assert_eq!(policy.authorize(&builder, &list_pods), Ok(()));
    let other = user("system:serviceaccount:prod:builder", &[]);
    assert!(policy.authorize(&other, &list_pods).is_err());
    // Discovery and self-reviews for every authenticated user; system:masters for anything.
    assert_eq!(
        policy.authorize(&jane, &Attributes::path("get", "/apis/apps/v1")),
        Ok(())
    );
    assert!(
        policy
            .authorize(&jane, &Attributes::path("get", "/metrics"))
            .is_err()
    );
    assert_eq!(
        policy.authorize(
            &jane,
            &Attributes::resource(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "",
                ""
            )
        ),
        Ok(())
    );
    let admin = user("admin", &["system:masters"]);
    assert_eq!(
        policy.authorize(
            &admin,
            &Attributes::resource("delete", "", "nodes", "", "n1")
        ),
        Ok(())
    );
}

#[test]
fn wildcards_match_as_upstream() {
    let rule = |resources: &[&str]| Rule {
        verbs: vec!["get".into()],
        api_groups: vec!["*".into()],
        resources: resources.iter().map(|r| (*r).to_owned()).collect(),
        ..Rule::default()
    };
    let scale = Attributes::resource("get", "apps", "deployments/scale", "dev", "web");
    assert!(rule(&["*/scale"]).allows(&scale));
    assert!(rule(&["*"]).allows(&scale));
    assert!(!rule(&["deployments"]).allows(&scale));
    assert!(!rule(&["*/status"]).allows(&scale));
    let urls = Rule {
        verbs: vec!["get".into()],
        non_resource_urls: vec!["/apis/*".into()],
        ..Rule::default()
    };
    assert!(urls.allows(&Attributes::path("get", "/apis/apps")));
    assert!(!urls.allows(&Attributes::path("get", "/api")));
    assert!(!urls.allows(&scale));
}

#[test]
fn denials_read_like_upstreams_and_name_missing_roles() {
    let mut policy = policy();
    let jane = user("jane", &["system:authenticated"]);
    let attributes = Attributes::resource("list", "", "secrets", "dev", "");
    assert_eq!(
        attributes.denial(&jane),
        r#"User "jane" cannot list resource "secrets" in API group "" in the namespace "dev""#
    );
    assert_eq!(
        Attributes::resource("get", "", "nodes", "", "n1").denial(&jane),
        r#"User "jane" cannot get resource "nodes" in API group "" at the cluster scope"#
    );
    assert_eq!(policy.authorize(&jane, &attributes), Err(String::new()));
    policy.set(
        Kind::RoleBinding,
        "dev",
        "dangling",
        Some(&json!({"metadata": {"namespace": "dev"},
            "roleRef": {"kind": "ClusterRole", "name": "gone"},
            "subjects": [{"kind": "User", "name": "jane"}]})),
    );
    assert_eq!(
        policy.authorize(&jane, &attributes),
        Err(r#"RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#.to_owned())
    );
    // Deleting the binding takes the grant away.
    policy.set(Kind::RoleBinding, "dev", "read-pods", None);
    assert!(
        policy
            .authorize(&jane, &Attributes::resource("list", "", "pods", "dev", ""))
            .is_err()
    );
}

#[test]
fn nobody_grants_what_they_do_not_hold_unless_they_may_escalate() {
    let mut policy = policy();
    let jane = user("jane", &["system:authenticated"]);
    let escalate =
        Attributes::resource("escalate", "rbac.authorization.k8s.io", "roles", "dev", "r");
    let held =
        Rule::of(&json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}));
    assert_eq!(
        confirm_no_escalation(&policy, &jane, "dev", &held, &escalate),
        Ok(())
    );
    let more = Rule::of(&json!({"rules": [
        {"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "delete"]}]}));
    let refused = confirm_no_escalation(&policy, &jane, "dev", &more, &escalate).unwrap_err();
    assert_eq!(
        refused,
        "user \"jane\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n\
         {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}\n\
         {APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\" \"delete\"]}"
    );
    // The escalate verb lifts the check; so does system:masters.
    policy.set(Kind::ClusterRole, "", "escalator", Some(&json!({"rules": [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}]})));
    policy.set(
        Kind::RoleBinding,
        "dev",
        "escalators",
        Some(&json!({"metadata": {"namespace": "dev"},
        "roleRef": {"kind": "ClusterRole", "name": "escalator"},
        "subjects": [{"kind": "User", "name": "jane"}]})),
    );
    assert_eq!(
        confirm_no_escalation(&policy, &jane, "dev", &more, &escalate),
        Ok(())
    );
    let admin = user("admin", &["system:masters"]);
    assert_eq!(
        confirm_no_escalation(&policy, &admin, "", &more, &escalate),
        Ok(())
    );
    assert_eq!(
        compact_string(&Rule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/x".into()],
            ..Rule::default()
        }),
        "{NonResourceURLs:[\"/x\"], Verbs:[\"get\"]}"
    );
}

#[test]
fn the_default_policy_parses_and_reconciles_without_losing_additions() {
    let (roles, bindings) = bootstrap::defaults();
    assert!(
        roles.len() > 20 && bindings.len() > 10,
        "{} {}",
        roles.len(),
        bindings.len()
    );
    for object in roles.iter().chain(&bindings) {
        assert_eq!(
            object["metadata"]["annotations"][bootstrap::AUTOUPDATE],
            "true"
        );
        let kind = object["kind"].as_str().unwrap();
        let resource = crate::apiserver::registry::Registry::new()
            .find_kind("rbac.authorization.k8s.io/v1", kind)
            .unwrap();
        let causes = resource.validate(object, None);
        assert!(
            causes.is_empty(),
            "{}: {causes:?}",
            object["metadata"]["name"]
        );
    }
    let view = roles
        .iter()
        .find(|r| r["metadata"]["name"] == "system:aggregate-to-view")
        .unwrap();
    // Up to date: nothing to do. An admin's extra rule stays; a lost default rule comes back.
    assert_eq!(bootstrap::reconciled(view, view), None);
    let mut edited = view.clone();
    edited["rules"][0] =
        json!({"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]});
    let fixed = bootstrap::reconciled(&edited, view).unwrap();
    assert_eq!(fixed["rules"][0]["resources"], json!(["widgets"]));
    assert_eq!(Rule::of(&fixed).len(), Rule::of(view).len() + 1);
    // autoupdate=false leaves it alone.
    edited["metadata"]["annotations"][bootstrap::AUTOUPDATE] = json!("false");
    assert_eq!(bootstrap::reconciled(&edited, view), None);
    // A binding gets back its default subjects and keeps the others.
    let masters = bindings
        .iter()
        .find(|b| b["metadata"]["name"] == "cluster-admin")
        .unwrap();
    let mut edited = masters.clone();
    edited["subjects"] =
        json!([{"kind": "User", "name": "root", "apiGroup": "rbac.authorization.k8s.io"}]);
    let fixed = bootstrap::reconciled(&edited, masters).unwrap();
    assert_eq!(fixed["subjects"].as_array().unwrap().len(), 2);
}

#[test]
fn impersonation_needs_the_impersonate_verb_on_each_thing_asked() {
    use crate::auth::impersonation::{Refusal, impersonate};
    let mut policy = policy();
    let mut headers = http::HeaderMap::new();
    headers.insert("impersonate-user", "jane".parse().unwrap());
    let bob = user("bob", &["system:authenticated"]);
    let authorizer = |policy: &Policy| {
        crate::auth::authorizer::Authorizer::new(
            std::sync::Arc::new(cache::PolicyCache::fixed(policy.clone())),
            std::sync::Arc::default(),
        )
    };
    let Err(Refusal::Forbidden { attributes, .. }) =
        impersonate(&authorizer(&policy), bob.clone(), &headers)
    else {
        panic!("bob may not impersonate");
    };
    assert_eq!(
        (attributes.resource.as_str(), attributes.name.as_str()),
        ("users", "jane")
    );
    policy.set(
        Kind::ClusterRole,
        "",
        "impersonator",
        Some(&json!({"rules": [
        {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"]}]})),
    );
    policy.set(
        Kind::ClusterRoleBinding,
        "",
        "bob-impersonates",
        Some(&json!({
        "roleRef": {"kind": "ClusterRole", "name": "impersonator"},
        "subjects": [{"kind": "User", "name": "bob"}]})),
    );
    let jane = impersonate(&authorizer(&policy), bob.clone(), &headers).unwrap();
    assert_eq!(jane, user("jane", &["system:authenticated"]));
    // Groups need their own grant.
    headers.append("impersonate-group", "system:masters".parse().unwrap());
    assert!(matches!(
        impersonate(&authorizer(&policy), bob.clone(), &headers),
        Err(Refusal::Forbidden { .. })
    ));
    // A group without a user is malformed.
    let mut only_group = http::HeaderMap::new();
    only_group.insert("impersonate-group", "dev".parse().unwrap());
    assert!(matches!(
        impersonate(&authorizer(&policy), bob.clone(), &only_group),
        Err(Refusal::BadRequest(_))
    ));
    // No headers: the requester itself.
    assert_eq!(
        impersonate(&authorizer(&policy), bob.clone(), &http::HeaderMap::new()).unwrap(),
        bob
    );
}
