//! The RBAC policy kept in memory: each of the four kinds is listed from etcd and then followed
//! by a watch from the list's revision (relisted when the watch ends or falls behind
//! compaction), as upstream's authorizer follows its informers. Decisions read the current
//! policy without touching storage; a change is in effect as soon as its watch event arrives.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;

use super::{Kind, Policy};
use crate::storage::{StorageError, Store, WatchEvent};

/// How long to wait before listing again after a watch failed.
const RELIST_PAUSE: Duration = Duration::from_secs(1);

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
            let revision = cache.list(&store, kind, prefix).await?;
            let (cache, store) = (Arc::clone(&cache), store.clone());
            tokio::spawn(async move { cache.follow(store, kind, prefix, revision).await });
        }
        Ok(cache)
    }

    /// A cache holding `policy` and following nothing (tests).
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

    fn write(&self, change: impl FnOnce(&mut Policy)) {
        let mut policy = self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut policy);
    }

    /// Replaces every object of `kind` by what etcd holds; returns the list's revision.
    async fn list(&self, store: &Store, kind: Kind, prefix: &str) -> Result<i64, StorageError> {
        let page = store.list(prefix, 0, None).await?;
        self.write(|policy| {
            policy.clear(kind);
            for item in &page.items {
                let (namespace, name) = identity(&item.object);
                policy.set(kind, namespace, name, Some(&item.object));
            }
        });
        Ok(page.revision)
    }

    /// Applies the watch events of `kind` after `revision`, listing again whenever the watch
    /// breaks.
    async fn follow(&self, store: Store, kind: Kind, prefix: &str, mut revision: i64) {
        loop {
            match store.watch(prefix, revision).await {
                Ok(events) => {
                    let mut events = std::pin::pin!(events);
                    while let Some(event) = events.next().await {
                        match event {
                            Ok(event) => revision = revision.max(self.apply(kind, event)),
                            Err(err) => {
                                tracing::debug!(prefix, "RBAC watch ended: {err}");
                                break;
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(prefix, "watching RBAC objects: {err}"),
            }
            tokio::time::sleep(RELIST_PAUSE).await;
            match self.list(&store, kind, prefix).await {
                Ok(listed) => revision = listed,
                Err(err) => tracing::warn!(prefix, "listing RBAC objects: {err}"),
            }
        }
    }

    /// Records one change; returns its revision.
    fn apply(&self, kind: Kind, event: WatchEvent) -> i64 {
        match event {
            WatchEvent::Added(stored)
            | WatchEvent::Modified {
                current: stored, ..
            } => {
                let (namespace, name) = identity(&stored.object);
                self.write(|p| p.set(kind, namespace, name, Some(&stored.object)));
                stored.revision
            }
            WatchEvent::Deleted(stored) => {
                let (namespace, name) = identity(&stored.object);
                self.write(|p| p.set(kind, namespace, name, None));
                stored.revision
            }
            WatchEvent::Progress(revision) => revision,
        }
    }
}

/// An object's namespace ("" when cluster-scoped) and name.
fn identity(object: &Value) -> (&str, &str) {
    let metadata = &object["metadata"];
    (
        metadata["namespace"].as_str().unwrap_or_default(),
        metadata["name"].as_str().unwrap_or_default(),
    )
}
