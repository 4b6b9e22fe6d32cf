//! The RBAC policy kept in memory from etcd ([`crate::storage::mirror`]): each of the four kinds
//! is listed and then followed by a watch, so a decision never touches storage and a change is
//! in force as soon as its watch event arrives.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use serde_json::Value;

use super::{Kind, Policy};
use crate::storage::{
    StorageError, Store, WatchEvent,
    mirror::{Change, mirror},
};

/// Where each kind lives in etcd (kube-apiserver's keys).
const PREFIXES: [(Kind, &str); 4] = [
    (Kind::ClusterRole, "/registry/clusterroles/"),
    (Kind::ClusterRoleBinding, "/registry/clusterrolebindings/"),
    (Kind::Role, "/registry/roles/"),
    (Kind::RoleBinding, "/registry/rolebindings/"),
];

/// The policy every request is authorized against.
#[derive(Debug, Default)]
pub struct PolicyCache {
    policy: RwLock<Policy>,
}

impl PolicyCache {
    /// Loads the policy from `store` and keeps following it on background tasks (which end
    /// when the runtime does).
    pub async fn start(store: Store) -> Result<Arc<Self>, StorageError> {
        let cache = Arc::new(Self::default());
        for (kind, prefix) in PREFIXES {
            let sink = Arc::clone(&cache);
            mirror(
                &store,
                prefix,
                Arc::new(move |change| sink.apply(kind, change)),
            )
            .await?;
        }
        Ok(cache)
    }

    /// A cache holding `policy` and following nothing (tests).
    #[cfg(test)]
    pub fn fixed(policy: Policy) -> Self {
        Self {
            policy: RwLock::new(policy),
        }
    }

    /// The current policy.
    pub fn read(&self) -> RwLockReadGuard<'_, Policy> {
        self.policy
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a change to the objects of `kind`.
    fn apply(&self, kind: Kind, change: Change<'_>) {
        let mut policy = self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match change {
            Change::Reset(items) => {
                policy.clear(kind);
                for item in items {
                    let (namespace, name) = identity(&item.object);
                    policy.set(kind, namespace, name, Some(&item.object));
                }
            }
            Change::Event(
                WatchEvent::Added(stored)
                | WatchEvent::Modified {
                    current: stored, ..
                },
            ) => {
                let (namespace, name) = identity(&stored.object);
                policy.set(kind, namespace, name, Some(&stored.object));
            }
            Change::Event(WatchEvent::Deleted(stored)) => {
                let (namespace, name) = identity(&stored.object);
                policy.set(kind, namespace, name, None);
            }
            Change::Event(WatchEvent::Progress(_)) => {}
        }
    }
}

/// An object's namespace ("" when cluster-scoped) and name.
pub(crate) fn identity(object: &Value) -> (&str, &str) {
    let metadata = &object["metadata"];
    (
        metadata["namespace"].as_str().unwrap_or_default(),
        metadata["name"].as_str().unwrap_or_default(),
    )
}
