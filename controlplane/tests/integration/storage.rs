//! The storage layer against a real etcd (started per test on free loopback ports).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use flotilla_controlplane::{
    etcd::{EtcdConfig, EtcdProcess},
    storage::{StorageError, Store, WatchEvent},
};
use futures::StreamExt as _;
use serde_json::{Value, json};

async fn etcd() -> anyhow::Result<(tempfile::TempDir, EtcdProcess, Store)> {
    let dir = tempfile::tempdir()?;
    let config = EtcdConfig::on_free_ports(&dir.path().join("etcd"))?;
    let (process, store) = EtcdProcess::start(config, Duration::from_secs(15)).await?;
    Ok((dir, process, store))
}

fn configmap(name: &str, data: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"k": data},
    })
}

const PREFIX: &str = "/registry/configmaps/default/";

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

#[tokio::test]
async fn create_get_and_already_exists() -> anyhow::Result<()> {
    let (_dir, _etcd, store) = etcd().await?;
    let created = store.create(&key("a"), &configmap("a", "1")).await?;
    assert!(created.revision > 0);
    assert_eq!(
        created.object["metadata"]["resourceVersion"],
        created.revision.to_string()
    );
    let read = store.get(&key("a")).await?;
    assert_eq!(read, created);
    let err = store
        .create(&key("a"), &configmap("a", "2"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
    assert_eq!(
        store.get(&key("a")).await?.object["data"]["k"],
        "1",
        "nothing overwritten"
    );
    let err = store.get(&key("missing")).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn stale_updates_conflict_and_nothing_is_lost() -> anyhow::Result<()> {
    let (_dir, _etcd, store) = etcd().await?;
    let first = store.create(&key("a"), &configmap("a", "0")).await?;
    let second = store
        .update(&key("a"), &configmap("a", "1"), first.revision)
        .await?;
    assert!(second.revision > first.revision);
    // Based on the first version: rejected, and the second version stays.
    let err = store
        .update(&key("a"), &configmap("a", "stale"), first.revision)
        .await
        .unwrap_err();
    match err {
        StorageError::Conflict {
            expected, actual, ..
        } => {
            assert_eq!(expected, first.revision);
            assert_eq!(actual, second.revision);
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(store.get(&key("a")).await?.object["data"]["k"], "1");

    // Ten concurrent read-modify-write loops: every increment survives.
    store
        .create(&key("counter"), &configmap("counter", "0"))
        .await?;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .guaranteed_update::<_, StorageError>(&key("counter"), |current| {
                        let value: u32 = current.object["data"]["k"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0);
                        let mut next = current.object;
                        next["data"]["k"] = json!((value + 1).to_string());
                        Ok(Some(next))
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    assert_eq!(store.get(&key("counter")).await?.object["data"]["k"], "10");
    Ok(())
}

#[tokio::test]
async fn deletes_honour_preconditions() -> anyhow::Result<()> {
    let (_dir, _etcd, store) = etcd().await?;
    let first = store.create(&key("a"), &configmap("a", "0")).await?;
    let second = store
        .update(&key("a"), &configmap("a", "1"), first.revision)
        .await?;
    let err = store
        .delete(&key("a"), Some(first.revision))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Conflict { .. }), "{err}");
    let last = store.delete(&key("a"), Some(second.revision)).await?;
    assert_eq!(last.object["data"]["k"], "1");
    assert!(last.revision > second.revision);
    assert!(matches!(
        store.get(&key("a")).await.unwrap_err(),
        StorageError::NotFound { .. }
    ));
    assert!(matches!(
        store.delete(&key("a"), None).await.unwrap_err(),
        StorageError::NotFound { .. }
    ));
    Ok(())
}

#[tokio::test]
async fn paginated_lists_read_one_consistent_revision() -> anyhow::Result<()> {
    let (_dir, _etcd, store) = etcd().await?;
    for i in 0..25 {
        store
            .create(&key(&format!("cm-{i:02}")), &configmap("x", &i.to_string()))
            .await?;
    }
    // Something outside the prefix must not leak in.
    store
        .create("/registry/configmaps/other/z", &configmap("z", "z"))
        .await?;

    let first = store.list(PREFIX, 10, None).await?;
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.remaining, Some(15));
    // Written after the first page: not part of this list.
    store
        .create(&key("cm-99"), &configmap("late", "late"))
        .await?;
    let second = store
        .list(PREFIX, 10, first.continue_token.as_deref())
        .await?;
    let third = store
        .list(PREFIX, 10, second.continue_token.as_deref())
        .await?;
    assert_eq!((second.items.len(), third.items.len()), (10, 5));
    assert_eq!(third.continue_token, None);
    assert_eq!(second.revision, first.revision);
    assert_eq!(third.revision, first.revision);
    let names: Vec<String> = [first.items, second.items, third.items]
        .concat()
        .iter()
        .map(|stored| stored.object["data"]["k"].as_str().unwrap_or("").to_owned())
        .collect();
    let expected: Vec<String> = (0..25).map(|i| i.to_string()).collect();
    assert_eq!(names, expected);

    let all = store.list(PREFIX, 0, None).await?;
    assert_eq!(all.items.len(), 26, "a fresh list sees the late object");

    let err = store
        .list("/registry/secrets/", 10, first.continue_token.as_deref())
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidContinue(_)), "{err}");
    Ok(())
}

#[tokio::test]
async fn watch_resumes_from_a_revision_in_order() -> anyhow::Result<()> {
    let (_dir, _etcd, store) = etcd().await?;
    let a = store.create(&key("a"), &configmap("a", "0")).await?;
    let modified = store
        .update(&key("a"), &configmap("a", "1"), a.revision)
        .await?;
    store.delete(&key("a"), None).await?;
    store.create(&key("b"), &configmap("b", "0")).await?;
    store
        .create("/registry/secrets/default/s", &configmap("s", "0"))
        .await?;

    let mut events = Box::pin(store.watch(PREFIX, a.revision).await?);
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("watch ended early"))??;
        match event {
            WatchEvent::Progress(_) => continue,
            WatchEvent::Added(s) => {
                seen.push(("ADDED", s));
            }
            WatchEvent::Modified { current, previous } => {
                assert_eq!(previous.map(|p| p.revision), Some(a.revision));
                seen.push(("MODIFIED", current));
            }
            WatchEvent::Deleted(s) => {
                seen.push(("DELETED", s));
            }
        }
    }
    let kinds: Vec<_> = seen
        .iter()
        .map(|(kind, stored)| (*kind, stored.object["metadata"]["name"].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("MODIFIED", json!("a")),
            ("DELETED", json!("a")),
            ("ADDED", json!("b")),
        ]
    );
    assert_eq!(seen[0].1.revision, modified.revision);
    assert!(
        seen.windows(2)
            .all(|pair| pair[0].1.revision < pair[1].1.revision),
        "revisions increase"
    );

    // Live events arrive too.
    store.create(&key("c"), &configmap("c", "0")).await?;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("watch ended early"))??;
        if let WatchEvent::Added(stored) = event {
            assert_eq!(stored.object["metadata"]["name"], "c");
            break;
        }
    }
    Ok(())
}

#[tokio::test]
async fn compacted_revisions_are_expired() -> anyhow::Result<()> {
    let (_dir, _etcd, store) = etcd().await?;
    let mut current = store.create(&key("a"), &configmap("a", "0")).await?;
    let old = current.revision;
    for i in 1..5 {
        store
            .create(&key(&format!("b{i}")), &configmap("b", "0"))
            .await?;
        current = store
            .update(&key("a"), &configmap("a", &i.to_string()), current.revision)
            .await?;
    }
    let page = store.list(PREFIX, 2, None).await?;
    // Compacting at revision R keeps R readable, so write once more and compact past the page.
    current = store
        .update(&key("a"), &configmap("a", "last"), current.revision)
        .await?;
    store.compact(current.revision).await?;

    let mut events = Box::pin(store.watch(PREFIX, old).await?);
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("watch ended without an error"))?;
    assert!(
        matches!(event, Err(StorageError::Expired { requested, .. }) if requested == old),
        "{event:?}"
    );
    let err = store
        .list(PREFIX, 2, page.continue_token.as_deref())
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Expired { .. }), "{err}");
    Ok(())
}

/// A second embedded etcd on the ports of a running one refuses to start instead of handing
/// out the running cluster's data; an etcd that is not the member a state directory created is
/// refused too (seen before: a second control plane served the first one's objects).
#[tokio::test]
async fn an_embedded_etcd_never_adopts_another_clusters_member() -> anyhow::Result<()> {
    let (dir, first, _store) = etcd().await?;
    let taken = first.config().clone();
    let other = EtcdConfig {
        data_dir: dir.path().join("other"),
        ..taken.clone()
    };
    let err = EtcdProcess::start(other, Duration::from_secs(15))
        .await
        .expect_err("a second etcd on taken ports must not start");
    let message = err.to_string();
    assert!(
        message.contains(&format!("127.0.0.1:{}", taken.client_port))
            && message.contains("already in use"),
        "{message}"
    );
    assert!(!dir.path().join("other").exists(), "nothing is created");

    // The member recorded for `etcd` is not the member of a fresh data directory: move the
    // first member's identity beside a new one and start it on free ports.
    first.stop().await;
    let fresh = EtcdConfig::on_free_ports(&dir.path().join("fresh"))?;
    std::fs::copy(
        taken.data_dir.with_extension("identity"),
        fresh.data_dir.with_extension("identity"),
    )?;
    let err = EtcdProcess::start(fresh, Duration::from_secs(15))
        .await
        .expect_err("a member other than the recorded one is refused");
    assert!(
        err.to_string()
            .contains("refusing to use another cluster's data"),
        "{err}"
    );
    // The first member, restarted on its own data, is itself again.
    let (again, _store) = EtcdProcess::start(taken, Duration::from_secs(15)).await?;
    again.stop().await;
    Ok(())
}

/// An etcd left running on a state directory's data (its control plane was killed outright) is
/// stopped by the next start on that directory, which then runs its own member on the same data.
#[tokio::test]
async fn an_etcd_left_by_a_killed_control_plane_is_replaced_on_restart() -> anyhow::Result<()> {
    let (_dir, first, store) = etcd().await?;
    store.create(&key("kept"), &configmap("kept", "1")).await?;
    let config = first.config().clone();
    // As after a SIGKILL of the control plane: nothing stops this etcd.
    std::mem::forget(first);
    let (again, store) = EtcdProcess::start(config, Duration::from_secs(15)).await?;
    let kept = store.get(&key("kept")).await?;
    assert_eq!(kept.object["data"]["k"], "1");
    again.stop().await;
    Ok(())
}
