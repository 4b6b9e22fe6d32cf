//! The resources this API server serves: their group/version/kind, REST names, scope, verbs,
//! subresources and where kube-apiserver keeps them in etcd (the same keys, so the layout is
//! familiar to anyone who has run `etcdctl get --prefix /registry`).

/// Verbs of an ordinary resource.
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A served resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// API group ("" for the core group).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind of one object.
    pub kind: &'static str,
    /// Plural REST name (`pods`).
    pub plural: &'static str,
    /// Singular name (`pod`).
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// kubectl short names (`po`).
    pub short_names: &'static [&'static str],
    /// Categories (`all` makes `kubectl get all` include it).
    pub categories: &'static [&'static str],
    /// Subresources beyond the object itself.
    pub subresources: &'static [Subresource],
    /// etcd key prefix below `/registry/` (kube-apiserver's, e.g. `minions` for nodes).
    pub storage_prefix: &'static str,
    /// Field selector labels besides metadata.name/metadata.namespace.
    pub field_labels: &'static [&'static str],
}

/// A subresource (`pods/status`, `deployments/scale`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: get, update and patch of `.status` only.
    Status,
    /// `/scale`: an autoscaling/v1 Scale view of `.spec.replicas`.
    Scale,
    /// `/binding` (pods): assigns a node.
    Binding,
    /// `/log` (pods): container logs, served by the node agent.
    Log,
    /// `/exec` (pods): a command in a container, streamed through the node agent.
    Exec,
    /// `/attach` (pods): attach to a container's process through the node agent.
    Attach,
    /// `/portforward` (pods): TCP forwarding into the pod through the node agent.
    PortForward,
}

impl Subresource {
    /// Its REST name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Scale => "scale",
            Self::Binding => "binding",
            Self::Log => "log",
            Self::Exec => "exec",
            Self::Attach => "attach",
            Self::PortForward => "portforward",
        }
    }
}

impl Resource {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `deployments.apps` (how errors name a resource, like kube-apiserver).
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether the resource has `subresource`.
    pub fn has(&self, subresource: Subresource) -> bool {
        self.subresources.contains(&subresource)
    }

    /// The verbs of the resource itself.
    pub fn verbs(&self) -> &'static [&'static str] {
        ALL_VERBS
    }

    /// The etcd key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(namespace) if self.namespaced => {
                format!("/registry/{}/{namespace}/{name}", self.storage_prefix)
            }
            _ => format!("/registry/{}/{name}", self.storage_prefix),
        }
    }

    /// The etcd prefix of every object in `namespace` (or of all, for None).
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(namespace) if self.namespaced => {
                format!("/registry/{}/{namespace}/", self.storage_prefix)
            }
            _ => format!("/registry/{}/", self.storage_prefix),
        }
    }
}

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr,
     short: [$($short:expr),*], categories: [$($category:expr),*], sub: [$($sub:ident),*],
     storage: $storage:expr, fields: [$($field:expr),*]) => {
        Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: &[$($short),*],
            categories: &[$($category),*],
            subresources: &[$(Subresource::$sub),*],
            storage_prefix: $storage,
            field_labels: &[$($field),*],
        }
    };
}

/// Every resource served, in discovery order.
pub static RESOURCES: &[Resource] = &[
    resource!("", "v1", "Namespace", "namespaces", "namespace", false,
        short: ["ns"], categories: [], sub: [Status], storage: "namespaces", fields: ["status.phase"]),
    resource!("", "v1", "Node", "nodes", "node", false,
        short: ["no"], categories: [], sub: [Status], storage: "minions", fields: ["spec.unschedulable"]),
    resource!("", "v1", "Pod", "pods", "pod", true,
        short: ["po"], categories: ["all"], sub: [Status, Binding, Log, Exec, Attach, PortForward], storage: "pods",
        fields: ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                 "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"]),
    resource!("", "v1", "Service", "services", "service", true,
        short: ["svc"], categories: ["all"], sub: [Status], storage: "services/specs",
        fields: ["spec.clusterIP", "spec.type"]),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", true,
        short: ["ep"], categories: [], sub: [], storage: "services/endpoints", fields: []),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", true,
        short: ["cm"], categories: [], sub: [], storage: "configmaps", fields: []),
    resource!("", "v1", "Secret", "secrets", "secret", true,
        short: [], categories: [], sub: [], storage: "secrets", fields: ["type"]),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true,
        short: ["sa"], categories: [], sub: [], storage: "serviceaccounts", fields: []),
    resource!("", "v1", "Event", "events", "event", true,
        short: ["ev"], categories: [], sub: [], storage: "events",
        fields: ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                 "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                 "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"]),
    resource!("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", true,
        short: ["rc"], categories: ["all"], sub: [Status, Scale], storage: "controllers", fields: ["status.replicas"]),
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", true,
        short: [], categories: [], sub: [], storage: "leases", fields: []),
    resource!("apps", "v1", "Deployment", "deployments", "deployment", true,
        short: ["deploy"], categories: ["all"], sub: [Status, Scale], storage: "deployments", fields: []),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true,
        short: ["rs"], categories: ["all"], sub: [Status, Scale], storage: "replicasets", fields: []),
    resource!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true,
        short: ["sts"], categories: ["all"], sub: [Status, Scale], storage: "statefulsets", fields: []),
    resource!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true,
        short: ["ds"], categories: ["all"], sub: [Status], storage: "daemonsets", fields: []),
    resource!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", true,
        short: [], categories: [], sub: [], storage: "controllerrevisions", fields: []),
    resource!("batch", "v1", "Job", "jobs", "job", true,
        short: [], categories: ["all"], sub: [Status], storage: "jobs", fields: ["status.successful"]),
    resource!("batch", "v1", "CronJob", "cronjobs", "cronjob", true,
        short: ["cj"], categories: ["all"], sub: [Status], storage: "cronjobs", fields: []),
    resource!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", true,
        short: ["netpol"], categories: [], sub: [], storage: "networkpolicies", fields: []),
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true,
        short: [], categories: [], sub: [], storage: "endpointslices", fields: []),
];

/// The API groups served besides the core group, with their one version.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&'static str, &'static str)> = Vec::new();
    for resource in RESOURCES {
        if !resource.group.is_empty() && !groups.iter().any(|(g, _)| *g == resource.group) {
            groups.push((resource.group, resource.version));
        }
    }
    groups
}

/// Finds the resource `plural` in `group`/`version`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds the resource of `kind` in `api_version` (`v1`, `apps/v1`).
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kube_apiserver() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        let nodes = find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/minions/n1");
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/minions/n1");
        let services = find("", "v1", "services").unwrap();
        assert_eq!(
            services.prefix(Some("kube-system")),
            "/registry/services/specs/kube-system/"
        );
        let rcs = find_kind("v1", "ReplicationController").unwrap();
        assert_eq!(
            rcs.key(Some("default"), "web"),
            "/registry/controllers/default/web"
        );
        assert_eq!(
            find_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(
            find("apps", "v1", "deployments").unwrap().qualified_name(),
            "deployments.apps"
        );
    }

    #[test]
    fn prefixes_of_different_resources_do_not_overlap() {
        for a in RESOURCES {
            for b in RESOURCES {
                if a != b {
                    assert!(
                        !a.prefix(None).starts_with(&b.prefix(None)),
                        "{} inside {}",
                        a.plural,
                        b.plural
                    );
                }
            }
        }
    }
}
