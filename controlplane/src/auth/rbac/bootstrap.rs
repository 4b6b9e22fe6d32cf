//! The default roles and bindings (`bootstrap-policy.yaml`), reconciled at every start as
//! kube-apiserver's `rbac/bootstrap-roles` post-start hook does: a missing object is created;
//! an existing one marked `rbac.authorization.kubernetes.io/autoupdate: "true"` gets back the
//! rules, aggregation selectors and subjects it lacks (what an admin added stays); one marked
//! "false" is left alone.

use serde_json::{Value, json};

use super::Rule;

const POLICY: &str = include_str!("bootstrap-policy.yaml");

/// The annotation that lets reconciliation update a default object.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// The default ClusterRoles and ClusterRoleBindings, as objects ready to create.
pub fn defaults() -> (Vec<Value>, Vec<Value>) {
    (
        objects("clusterRoles", "ClusterRole"),
        objects("clusterRoleBindings", "ClusterRoleBinding"),
    )
}

/// The default Roles and RoleBindings (each names its namespace), as objects ready to create.
pub fn namespaced_defaults() -> (Vec<Value>, Vec<Value>) {
    (
        objects("roles", "Role"),
        objects("roleBindings", "RoleBinding"),
    )
}

/// The objects of the policy file's list `key`, as `kind`s with the default labels.
fn objects(key: &str, kind: &str) -> Vec<Value> {
    // The file is part of the binary and a test parses it, so it cannot fail here.
    let policy: Value = serde_yaml_ng::from_str(POLICY).unwrap_or_default();
    policy[key]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut object| {
            object["apiVersion"] = json!("rbac.authorization.k8s.io/v1");
            object["kind"] = json!(kind);
            let metadata = &mut object["metadata"];
            metadata["labels"]["kubernetes.io/bootstrapping"] = json!("rbac-defaults");
            metadata["annotations"][AUTOUPDATE] = json!("true");
            if object.get("roleRef").is_some() {
                crate::apiserver::registry::rbac::default_binding(&mut object);
            }
            object
        })
        .collect()
}

/// `existing` brought up to `default` (None when nothing is missing or it may not be changed).
pub fn reconciled(existing: &Value, default: &Value) -> Option<Value> {
    if existing["metadata"]["annotations"][AUTOUPDATE].as_str() == Some("false") {
        return None;
    }
    let mut updated = existing.clone();
    let mut changed = false;
    // Labels and annotations of the default (aggregation labels among them).
    for field in ["labels", "annotations"] {
        if let Some(wanted) = default["metadata"][field].as_object() {
            for (key, value) in wanted {
                if updated["metadata"][field][key] != *value {
                    updated["metadata"][field][key] = value.clone();
                    changed = true;
                }
            }
        }
    }
    if default.get("roleRef").is_some() {
        // A binding: every default subject is kept.
        let subjects = updated["subjects"].as_array().cloned().unwrap_or_default();
        let mut merged = subjects.clone();
        for subject in default["subjects"].as_array().into_iter().flatten() {
            let same = |s: &Value| {
                s["kind"] == subject["kind"]
                    && s["name"] == subject["name"]
                    && s["namespace"] == subject["namespace"]
            };
            if !merged.iter().any(same) {
                merged.push(subject.clone());
            }
        }
        if merged != subjects {
            updated["subjects"] = json!(merged);
            changed = true;
        }
    } else {
        // A role: every default rule is kept; an aggregated role's rules belong to its controller.
        if default.get("aggregationRule").is_some() {
            if updated["aggregationRule"] != default["aggregationRule"] {
                updated["aggregationRule"] = default["aggregationRule"].clone();
                changed = true;
            }
        } else {
            let have = Rule::of(&updated);
            let mut rules = updated["rules"].as_array().cloned().unwrap_or_default();
            for (rule, value) in Rule::of(default)
                .iter()
                .zip(default["rules"].as_array().into_iter().flatten())
            {
                if !have.contains(rule) {
                    rules.push(value.clone());
                    changed = true;
                }
            }
            updated["rules"] = json!(rules);
        }
    }
    changed.then_some(updated)
}

/// Creates the default roles and bindings that are missing and brings back what the
/// auto-updated ones lack (upstream's `rbac/bootstrap-roles` post-start hook).
pub async fn reconcile(
    server: &crate::apiserver::ApiServer,
) -> Result<(), crate::apiserver::status::ApiError> {
    use crate::apiserver::{
        handlers::Scope,
        query::Query,
        registry::rbac::{cluster_role, cluster_role_binding, role, role_binding},
    };
    let (cluster_roles, cluster_bindings) = defaults();
    let (roles, bindings) = namespaced_defaults();
    let query = Query::default().with_user_agent(Some("flotilla-controlplane"));
    let kinds = [
        (&cluster_role::RESOURCE, cluster_roles),
        (&cluster_role_binding::RESOURCE, cluster_bindings),
        (&role::RESOURCE, roles),
        (&role_binding::RESOURCE, bindings),
    ];
    for (resource, defaults) in kinds {
        for default in defaults {
            let scope = Scope {
                resource,
                namespace: default["metadata"]["namespace"].as_str().map(str::to_owned),
            };
            let name = default["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match server.get_object(&scope, &name).await {
                Ok(existing) => {
                    if let Some(updated) = reconciled(&existing.object, &default) {
                        server
                            .replace_object(&scope, &name, updated, &query, None)
                            .await?;
                        tracing::info!(
                            kind = resource.kind,
                            name,
                            "reconciled default RBAC object"
                        );
                    }
                }
                Err(err) if err.code == 404 => {
                    match server.create_object(&scope, default, &query).await {
                        Ok(_) => tracing::debug!(
                            kind = resource.kind,
                            name,
                            "created default RBAC object"
                        ),
                        Err(err) if err.code == 409 => {}
                        Err(err) => return Err(err),
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }
    Ok(())
}
