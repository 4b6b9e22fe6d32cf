//! A served resource's descriptor: group/version/kind, REST names, scope, verbs, subresources,
//! where kube-apiserver keeps it in etcd (the same keys, so the layout is familiar to anyone
//! who has run `etcdctl get --prefix /registry`), and the [`Strategy`] that answers every
//! kind-specific question.

use serde_json::Value;

use super::Strategy;
use crate::apiserver::machinery::field::Cause;
use crate::apiserver::machinery::{
    field::{CauseReason, Errs, compact},
    object_meta::{meta_create, meta_update},
};

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
#[derive(Clone, Copy)]
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
    /// Everything kind-specific.
    pub strategy: &'static dyn Strategy,
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resource")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("kind", &self.kind)
            .field("plural", &self.plural)
            .finish_non_exhaustive()
    }
}

/// Two descriptors are the same resource when they name the same group, version and plural.
impl PartialEq for Resource {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Eq for Resource {}

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
    /// `/eviction` (pods): a deletion that honours PodDisruptionBudgets.
    Eviction,
    /// `/token` (serviceaccounts): a TokenRequest for the account.
    Token,
    /// `/approval` (certificatesigningrequests): the Approved and Denied conditions.
    Approval,
}

impl Subresource {
    /// The (group, version, kind) of what it answers with and takes, on `resource`.
    pub fn kind_on(self, resource: &Resource) -> (&'static str, &'static str, &'static str) {
        let own = (resource.group, resource.version);
        match self {
            Self::Status | Self::Approval => (own.0, own.1, resource.kind),
            Self::Scale => ("autoscaling", "v1", "Scale"),
            Self::Eviction => ("policy", "v1", "Eviction"),
            Self::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
            Self::Binding => (own.0, own.1, "Binding"),
            Self::Log => (own.0, own.1, "Pod"),
            Self::Exec => (own.0, own.1, "PodExecOptions"),
            Self::Attach => (own.0, own.1, "PodAttachOptions"),
            Self::PortForward => (own.0, own.1, "PodPortForwardOptions"),
        }
    }

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
            Self::Eviction => "eviction",
            Self::Token => "token",
            Self::Approval => "approval",
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

    /// The verbs of the resource itself (a review is only created).
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.strategy.is_review() {
            &["create"]
        } else {
            ALL_VERBS
        }
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

impl Resource {
    /// Whether `other` describes this resource in every static respect (re-registration).
    pub(crate) fn same_definition(&self, other: &Resource) -> bool {
        self == other
            && self.kind == other.kind
            && self.namespaced == other.namespaced
            && self.storage_prefix == other.storage_prefix
            && self.subresources == other.subresources
    }

    /// What [`Self::validate`] says of a new `object`, as text: the registry's unit tests
    /// compare messages.
    #[cfg(test)]
    pub fn cause_messages(&self, object: &Value) -> Vec<String> {
        self.validate(object, None)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Everything kube-apiserver checks on create (`old` None) and update: ObjectMeta by the
    /// kind's scope and name rule, then the kind's own rules. Expects `metadata.name` filled in
    /// from `generateName` and `metadata.namespace` from the request path. A review's metadata
    /// is not an object's (it has no name), so only the review's own rules apply to it.
    pub fn validate(&self, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut e = Errs::default();
        if !object.is_object() {
            e.push(
                CauseReason::TypeInvalid,
                "",
                Some(&compact(object)),
                "must be a JSON object",
            );
            return e.0;
        }
        let old = old.filter(|o| o.is_object());
        let meta = object.get("metadata");
        let rule = self.strategy.name_rule();
        match old {
            _ if self.strategy.is_review() => {}
            None => meta_create(&mut e, meta, self.namespaced, rule),
            Some(o) => meta_update(&mut e, meta, o.get("metadata"), rule),
        }
        self.strategy.validate(&mut e, object, old);
        e.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::{BUILTIN, Registry};

    fn builtin_find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        Registry::new().find(group, version, plural)
    }

    #[test]
    fn keys_follow_kube_apiserver() {
        let pods = builtin_find("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/pods/default/web"
        );
        let nodes = builtin_find("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(None, "n1"), "/registry/minions/n1");
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/registry/minions/n1");
        let services = builtin_find("", "v1", "services").unwrap();
        assert_eq!(
            services.prefix(Some("kube-system")),
            "/registry/services/specs/kube-system/"
        );
        let rcs = Registry::new()
            .find_kind("v1", "ReplicationController")
            .unwrap();
        assert_eq!(
            rcs.key(Some("default"), "web"),
            "/registry/controllers/default/web"
        );
        assert_eq!(
            Registry::new()
                .find_kind("apps/v1", "Deployment")
                .unwrap()
                .plural,
            "deployments"
        );
        assert_eq!(
            builtin_find("apps", "v1", "deployments")
                .unwrap()
                .qualified_name(),
            "deployments.apps"
        );
    }

    #[test]
    fn prefixes_of_different_resources_do_not_overlap() {
        for a in BUILTIN {
            for b in BUILTIN {
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
