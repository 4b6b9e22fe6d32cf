//! The Node authorizer (upstream's `plugin/pkg/auth/authorizer/node`): a node agent
//! (`system:node:<name>` in `system:nodes`) may read the Secrets, ConfigMaps and
//! PersistentVolumeClaims the pods bound to it use and create tokens for their
//! ServiceAccounts, write only its own Node and Leases (its heartbeat and its L2 announcer's;
//! every node Lease may be listed and watched, for the announcers), and write the status of,
//! delete and evict only the pods bound to it; everything else a node may do is the static
//! `system:node` rules. Which objects relate to which node comes from a [`NodeGraph`] of the pods, kept from
//! etcd. Users who are not nodes get no opinion here (RBAC decides).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use flotilla_apimachinery::node_leases::{self, NAMESPACE as NODE_LEASE_NAMESPACE};
use serde_json::Value;

use super::User;
use super::rbac::{Attributes, Rule, bootstrap};
use crate::storage::{
    StorageError, Store, WatchEvent,
    mirror::{Change, mirror},
};

/// The node a user is, if they are one.
pub fn node_name(user: &User) -> Option<&str> {
    let name = user.name.strip_prefix("system:node:")?;
    (!name.is_empty() && user.groups.iter().any(|g| g == "system:nodes")).then_some(name)
}

/// What a pod refers to that its node may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Uses {
    /// A Secret (volumes, env, envFrom, imagePullSecrets).
    Secret,
    /// A ConfigMap (volumes, env, envFrom).
    ConfigMap,
    /// A PersistentVolumeClaim (volumes, ephemeral volumes).
    Claim,
    /// Its ServiceAccount.
    ServiceAccount,
}

/// One object a pod uses.
type Used = (Uses, String, String);

/// The pods by node, and what they use.
#[derive(Debug, Default)]
pub struct Graph {
    /// (namespace, name) of each pod bound to a node: the node and what the pod uses.
    pods: HashMap<(String, String), (String, Vec<Used>)>,
    /// Each used object: how many pods of each node use it.
    users: HashMap<Used, HashMap<String, usize>>,
}

impl Graph {
    /// Records `pod` (None removes the pod `namespace/name`).
    pub fn set_pod(&mut self, namespace: &str, name: &str, pod: Option<&Value>) {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some((node, used)) = self.pods.remove(&key) {
            for object in used {
                if let Some(nodes) = self.users.get_mut(&object) {
                    if let Some(count) = nodes.get_mut(&node) {
                        *count -= 1;
                        if *count == 0 {
                            nodes.remove(&node);
                        }
                    }
                    if nodes.is_empty() {
                        self.users.remove(&object);
                    }
                }
            }
        }
        let Some(pod) = pod else { return };
        let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
        if node.is_empty() {
            return;
        }
        let used = uses(namespace, name, pod);
        for object in &used {
            *self
                .users
                .entry(object.clone())
                .or_default()
                .entry(node.to_owned())
                .or_default() += 1;
        }
        self.pods.insert(key, (node.to_owned(), used));
    }

    /// The node the pod `namespace/name` is bound to.
    pub fn node_of(&self, namespace: &str, name: &str) -> Option<&str> {
        self.pods
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|(node, _)| node.as_str())
    }

    /// Whether a pod bound to `node` uses the object.
    pub fn used_by(&self, node: &str, kind: Uses, namespace: &str, name: &str) -> bool {
        self.users
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .is_some_and(|nodes| nodes.contains_key(node))
    }
}

/// Whether `pod` references a Secret anywhere (upstream's `VisitPodSecretNames`).
pub(crate) fn references_secrets(pod: &Value) -> bool {
    uses("", "", pod)
        .iter()
        .any(|(kind, _, _)| *kind == Uses::Secret)
}

/// Everything `pod` uses that its node must read.
fn uses(namespace: &str, pod_name: &str, pod: &Value) -> Vec<Used> {
    let spec = &pod["spec"];
    let mut used: Vec<Used> = Vec::new();
    let mut add = |kind: Uses, name: Option<&str>| {
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            let entry = (kind, namespace.to_owned(), name.to_owned());
            if !used.contains(&entry) {
                used.push(entry);
            }
        }
    };
    add(
        Uses::ServiceAccount,
        Some(spec["serviceAccountName"].as_str().unwrap_or("default")),
    );
    for secret in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        add(Uses::Secret, secret["name"].as_str());
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        add(Uses::Secret, volume["secret"]["secretName"].as_str());
        add(Uses::ConfigMap, volume["configMap"]["name"].as_str());
        add(
            Uses::Claim,
            volume["persistentVolumeClaim"]["claimName"].as_str(),
        );
        if volume.get("ephemeral").is_some() {
            let claim = format!("{pod_name}-{}", volume["name"].as_str().unwrap_or_default());
            add(Uses::Claim, Some(&claim));
        }
        for source in volume["projected"]["sources"]
            .as_array()
            .into_iter()
            .flatten()
        {
            add(Uses::Secret, source["secret"]["name"].as_str());
            add(Uses::ConfigMap, source["configMap"]["name"].as_str());
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in spec[list].as_array().into_iter().flatten() {
            for env in container["env"].as_array().into_iter().flatten() {
                add(
                    Uses::Secret,
                    env["valueFrom"]["secretKeyRef"]["name"].as_str(),
                );
                add(
                    Uses::ConfigMap,
                    env["valueFrom"]["configMapKeyRef"]["name"].as_str(),
                );
            }
            for from in container["envFrom"].as_array().into_iter().flatten() {
                add(Uses::Secret, from["secretRef"]["name"].as_str());
                add(Uses::ConfigMap, from["configMapRef"]["name"].as_str());
            }
        }
    }
    used
}

/// The pods as the Node authorizer sees them, kept from etcd.
#[derive(Debug, Default)]
pub struct NodeGraph {
    graph: RwLock<Graph>,
}

impl NodeGraph {
    /// Loads every pod from `store` and keeps following them.
    pub async fn start(store: &Store) -> Result<Arc<Self>, StorageError> {
        let graph = Arc::new(Self::default());
        let sink = Arc::clone(&graph);
        mirror(
            store,
            "/registry/pods/",
            Arc::new(move |change| sink.apply(change)),
        )
        .await?;
        Ok(graph)
    }

    /// The current graph.
    pub fn read(&self) -> RwLockReadGuard<'_, Graph> {
        self.graph
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn apply(&self, change: Change<'_>) {
        let mut graph = self
            .graph
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match change {
            Change::Reset(items) => {
                *graph = Graph::default();
                for item in items {
                    let (namespace, name) = super::rbac::cache::identity(&item.object);
                    graph.set_pod(namespace, name, Some(&item.object));
                }
            }
            Change::Event(
                WatchEvent::Added(stored)
                | WatchEvent::Modified {
                    current: stored, ..
                },
            ) => {
                let (namespace, name) = super::rbac::cache::identity(&stored.object);
                graph.set_pod(namespace, name, Some(&stored.object));
            }
            Change::Event(WatchEvent::Deleted(stored)) => {
                let (namespace, name) = super::rbac::cache::identity(&stored.object);
                graph.set_pod(namespace, name, None);
            }
            Change::Event(WatchEvent::Progress(_)) => {}
        }
    }
}

/// The Node authorizer's decision for a node user: Ok to allow, Err with its reason for no
/// opinion (RBAC is asked next). None when `user` is not a node.
pub fn authorize(
    graph: &Graph,
    node_rules: &[Rule],
    user: &User,
    attributes: &Attributes,
) -> Option<Result<(), String>> {
    let node = node_name(user)?;
    if !attributes.resource_request {
        return Some(Err(String::new()));
    }
    let a = attributes;
    let unrelated = || {
        Err(format!(
            "no relationship found between node '{node}' and this object"
        ))
    };
    let decision = match (a.api_group.as_str(), a.resource.as_str()) {
        ("", "secrets") | ("", "configmaps") => {
            let kind = if a.resource == "secrets" {
                Uses::Secret
            } else {
                Uses::ConfigMap
            };
            if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
                Err("can only read resources of this type".to_owned())
            } else if !a.subresource.is_empty() {
                Err("cannot read subresource".to_owned())
            } else if a.namespace.is_empty() {
                Err("can only read namespaced object of this type".to_owned())
            } else if a.name.is_empty() {
                Err("No Object name found".to_owned())
            } else if graph.used_by(node, kind, &a.namespace, &a.name) {
                Ok(())
            } else {
                unrelated()
            }
        }
        ("", "persistentvolumeclaims") => {
            if a.verb != "get" {
                Err("can only get individual resources of this type".to_owned())
            } else if !a.subresource.is_empty() {
                Err("cannot get subresource".to_owned())
            } else if graph.used_by(node, Uses::Claim, &a.namespace, &a.name) {
                Ok(())
            } else {
                unrelated()
            }
        }
        ("", "serviceaccounts") => {
            if a.verb != "create" || a.subresource != "token" || a.name.is_empty() {
                Err("can only create tokens for individual service accounts".to_owned())
            } else if graph.used_by(node, Uses::ServiceAccount, &a.namespace, &a.name) {
                Ok(())
            } else {
                unrelated()
            }
        }
        // Beyond upstream: the agents' L2 announcers watch each other's Leases (every node's
        // heartbeat there is no secret) and each renews its own second Lease.
        ("coordination.k8s.io", "leases")
            if a.namespace == NODE_LEASE_NAMESPACE
                && matches!(a.verb.as_str(), "list" | "watch") =>
        {
            Ok(())
        }
        ("coordination.k8s.io", "leases") => {
            if !matches!(
                a.verb.as_str(),
                "get" | "create" | "update" | "patch" | "delete"
            ) {
                Err("can only get, create, update, patch, or delete a node lease".to_owned())
            } else if a.namespace != NODE_LEASE_NAMESPACE {
                Err(format!(
                    "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
                ))
            } else if a.verb != "create"
                && a.name != node
                && a.name != node_leases::l2_announcer_lease(node)
            {
                Err(
                    "can only access node lease with the same name as the requesting node"
                        .to_owned(),
                )
            } else {
                Ok(())
            }
        }
        // NodeRestriction's rule, judged here where the name is known: a node writes only its
        // own Node (creation is checked at admission, where the name is).
        ("", "nodes")
            if matches!(a.verb.as_str(), "update" | "patch" | "delete") && a.name != node =>
        {
            Err(format!(
                "node {node:?} is not allowed to modify node {:?}",
                a.name
            ))
        }
        // A node writes the status of, deletes and evicts only the pods bound to it.
        ("", "pods")
            if (matches!(a.verb.as_str(), "update" | "patch") && a.subresource == "status")
                || (a.verb == "delete" && a.subresource.is_empty())
                || (a.verb == "create" && a.subresource == "eviction") =>
        {
            if graph.node_of(&a.namespace, &a.name) == Some(node) {
                static_rules(node_rules, a)
            } else {
                let what = match (a.verb.as_str(), a.subresource.as_str()) {
                    ("delete", _) => "delete pods",
                    (_, "eviction") => "evict pods",
                    _ => "update pod status for pods",
                };
                Err(format!(
                    "node {node:?} can only {what} with spec.nodeName set to itself"
                ))
            }
        }
        _ => static_rules(node_rules, a),
    };
    Some(decision)
}

/// What every node may do besides what the graph relates to it: upstream's `NodeRules`.
fn static_rules(node_rules: &[Rule], attributes: &Attributes) -> Result<(), String> {
    if node_rules.iter().any(|rule| rule.allows(attributes)) {
        Ok(())
    } else {
        Err(String::new())
    }
}

/// The static node rules: the default `system:node` ClusterRole's.
pub fn default_node_rules() -> Vec<Rule> {
    let (roles, _) = bootstrap::defaults();
    roles
        .iter()
        .find(|role| role["metadata"]["name"] == "system:node")
        .map(Rule::of)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (project rule).

    use serde_json::json;

    use super::*;

    fn node_user(name: &str) -> User {
        User {
            name: format!("system:node:{name}"),
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
        }
    }

    #[test]
    fn the_graph_follows_pods_and_what_they_use() {
        let mut graph = Graph::default();
        let pod = json!({"spec": {"nodeName": "n1", "serviceAccountName": "builder",
            "imagePullSecrets": [{"name": "registry"}],
            "volumes": [{"name": "cfg", "configMap": {"name": "settings"}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                        {"name": "scratch", "ephemeral": {}},
                        {"name": "all", "projected": {"sources": [{"secret": {"name": "tls"}}]}}],
            "initContainers": [{"envFrom": [{"configMapRef": {"name": "init-env"}}]}],
            "containers": [{"env": [{"valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]}]}});
        graph.set_pod("dev", "web", Some(&pod));
        for (kind, name) in [
            (Uses::ServiceAccount, "builder"),
            (Uses::Secret, "registry"),
            (Uses::Secret, "tls"),
            (Uses::Secret, "db"),
            (Uses::ConfigMap, "settings"),
            (Uses::ConfigMap, "init-env"),
            (Uses::Claim, "data"),
            (Uses::Claim, "web-scratch"),
        ] {
            assert!(graph.used_by("n1", kind, "dev", name), "{kind:?} {name}");
            assert!(!graph.used_by("n2", kind, "dev", name), "{kind:?} {name}");
            assert!(!graph.used_by("n1", kind, "prod", name), "{kind:?} {name}");
        }
        assert_eq!(graph.node_of("dev", "web"), Some("n1"));
        // A second pod on n1 using the same secret keeps it after the first goes.
        let other = json!({"spec": {"nodeName": "n1", "containers": [
            {"envFrom": [{"secretRef": {"name": "db"}}]}]}});
        graph.set_pod("dev", "worker", Some(&other));
        graph.set_pod("dev", "web", None);
        assert!(graph.used_by("n1", Uses::Secret, "dev", "db"));
        assert!(!graph.used_by("n1", Uses::ConfigMap, "dev", "settings"));
        assert_eq!(graph.node_of("dev", "web"), None);
        graph.set_pod("dev", "worker", None);
        assert!(graph.users.is_empty() && graph.pods.is_empty());
        // Unbound pods relate to no node.
        graph.set_pod(
            "dev",
            "pending",
            Some(&json!({"spec": {"volumes": [{"configMap": {"name": "x"}}]}})),
        );
        assert!(graph.pods.is_empty());
    }

    #[test]
    fn nodes_get_their_own_objects_and_the_static_rules() {
        let mut graph = Graph::default();
        graph.set_pod(
            "dev",
            "web",
            Some(&json!({"spec": {"nodeName": "n1",
            "volumes": [{"secret": {"secretName": "tls"}}]}})),
        );
        let rules = default_node_rules();
        assert!(!rules.is_empty());
        let n1 = node_user("n1");
        let decide = |user: &User, verb: &str, resource: &str, namespace: &str, name: &str| {
            authorize(
                &graph,
                &rules,
                user,
                &Attributes::resource(verb, "", resource, namespace, name),
            )
        };
        assert_eq!(decide(&n1, "get", "secrets", "dev", "tls"), Some(Ok(())));
        assert_eq!(
            decide(&node_user("n2"), "get", "secrets", "dev", "tls"),
            Some(Err(
                "no relationship found between node 'n2' and this object".into()
            ))
        );
        assert_eq!(
            decide(&n1, "list", "secrets", "dev", ""),
            Some(Err("No Object name found".into()))
        );
        assert!(
            decide(&n1, "delete", "secrets", "dev", "tls")
                .unwrap()
                .is_err()
        );
        assert_eq!(decide(&n1, "patch", "nodes/status", "", "n1"), Some(Ok(())));
        assert_eq!(
            decide(&n1, "patch", "nodes/status", "", "n2"),
            Some(Err(
                "node \"n1\" is not allowed to modify node \"n2\"".into()
            ))
        );
        assert_eq!(
            decide(&n1, "update", "pods/status", "dev", "web"),
            Some(Ok(()))
        );
        assert!(
            decide(&node_user("n2"), "update", "pods/status", "dev", "web")
                .unwrap()
                .is_err()
        );
        assert_eq!(decide(&n1, "delete", "pods", "dev", "web"), Some(Ok(())));
        // Static rules: services for env vars, events; not deployments.
        assert_eq!(decide(&n1, "list", "services", "", ""), Some(Ok(())));
        assert_eq!(decide(&n1, "create", "events", "dev", ""), Some(Ok(())));
        let lease = Attributes::resource(
            "update",
            "coordination.k8s.io",
            "leases",
            "kube-node-lease",
            "n1",
        );
        assert_eq!(authorize(&graph, &rules, &n1, &lease), Some(Ok(())));
        let other = Attributes::resource(
            "update",
            "coordination.k8s.io",
            "leases",
            "kube-node-lease",
            "n2",
        );
        assert!(authorize(&graph, &rules, &n1, &other).unwrap().is_err());
        // Its L2 announcer Lease too, not another's; every node Lease may be listed and watched.
        let announcer = |verb: &str, name: &str| {
            Attributes::resource(
                verb,
                "coordination.k8s.io",
                "leases",
                "kube-node-lease",
                name,
            )
        };
        let own = announcer("update", "l2-announcer-n1");
        assert_eq!(authorize(&graph, &rules, &n1, &own), Some(Ok(())));
        let others = announcer("update", "l2-announcer-n2");
        assert!(authorize(&graph, &rules, &n1, &others).unwrap().is_err());
        for verb in ["list", "watch"] {
            assert_eq!(
                authorize(&graph, &rules, &n1, &announcer(verb, "")),
                Some(Ok(()))
            );
        }
        let elsewhere =
            Attributes::resource("list", "coordination.k8s.io", "leases", "kube-system", "");
        assert!(authorize(&graph, &rules, &n1, &elsewhere).unwrap().is_err());
        // Not a node: no opinion at all.
        let jane = User {
            name: "jane".into(),
            groups: vec![],
        };
        assert_eq!(decide(&jane, "get", "secrets", "dev", "tls"), None);
        let impostor = User {
            name: "system:node:n1".into(),
            groups: vec![],
        };
        assert_eq!(decide(&impostor, "get", "secrets", "dev", "tls"), None);
    }
}
