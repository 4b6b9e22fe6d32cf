//! Keeping an in-memory copy of one etcd prefix: list it, then follow a watch from the list's
//! revision, listing again whenever the watch ends or falls behind compaction. The authorizers
//! use it (the RBAC policy, the pods the Node authorizer relates to nodes), as upstream's
//! authorizers follow informers, so that a decision never waits on storage.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use super::{StorageError, Store, Stored, WatchEvent};

/// How long to wait before listing again after a watch failed.
const RELIST_PAUSE: Duration = Duration::from_secs(1);

/// What the copy is told.
#[derive(Debug)]
pub enum Change<'a> {
    /// Everything under the prefix now (the first list, and each relist).
    Reset(&'a [Stored]),
    /// One change after the last list.
    Event(&'a WatchEvent),
}

impl Change<'_> {
    /// Applies the change to a copy of cluster-scoped objects kept by name, `keep` making
    /// what is kept of each object.
    pub fn apply_by_name<T>(
        &self,
        copy: &mut std::collections::BTreeMap<String, T>,
        keep: impl Fn(&serde_json::Value) -> T,
    ) {
        let name = |stored: &Stored| {
            stored.object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        match self {
            Change::Reset(items) => {
                copy.clear();
                for item in *items {
                    copy.insert(name(item), keep(&item.object));
                }
            }
            Change::Event(
                WatchEvent::Added(stored)
                | WatchEvent::Modified {
                    current: stored, ..
                },
            ) => {
                copy.insert(name(stored), keep(&stored.object));
            }
            Change::Event(WatchEvent::Deleted(stored)) => {
                copy.remove(&name(stored));
            }
            Change::Event(WatchEvent::Progress(_)) => {}
        }
    }
}

/// Whoever keeps a copy of a prefix.
pub type Sink = Arc<dyn Fn(Change<'_>) + Send + Sync>;

/// Lists `prefix` into `sink` (returning once that is done, so the copy is complete when the
/// caller goes on) and keeps it current on a background task that ends with the runtime.
pub async fn mirror(store: &Store, prefix: &'static str, sink: Sink) -> Result<(), StorageError> {
    let revision = list(store, prefix, &sink).await?;
    let store = store.clone();
    tokio::spawn(follow(store, prefix, revision, sink));
    Ok(())
}

/// Lists everything under `prefix` into `sink`; returns the list's revision.
async fn list(store: &Store, prefix: &str, sink: &Sink) -> Result<i64, StorageError> {
    let page = store.list(prefix, 0, None).await?;
    sink(Change::Reset(&page.items));
    Ok(page.revision)
}

/// Applies the watch events under `prefix` after `revision`, listing again whenever the watch
/// breaks.
async fn follow(store: Store, prefix: &'static str, mut revision: i64, sink: Sink) {
    loop {
        match store.watch(prefix, revision).await {
            Ok(events) => {
                let mut events = std::pin::pin!(events);
                while let Some(event) = events.next().await {
                    match event {
                        Ok(event) => {
                            revision = revision.max(revision_of(&event));
                            sink(Change::Event(&event));
                        }
                        Err(err) => {
                            tracing::debug!(prefix, "watch ended: {err}");
                            break;
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(prefix, "watching: {err}"),
        }
        tokio::time::sleep(RELIST_PAUSE).await;
        match list(&store, prefix, &sink).await {
            Ok(listed) => revision = listed,
            Err(err) => tracing::warn!(prefix, "listing: {err}"),
        }
    }
}

/// The revision an event brings the copy to.
fn revision_of(event: &WatchEvent) -> i64 {
    match event {
        WatchEvent::Added(stored)
        | WatchEvent::Modified {
            current: stored, ..
        }
        | WatchEvent::Deleted(stored) => stored.revision,
        WatchEvent::Progress(revision) => *revision,
    }
}
