//! The API with the `kube` crate as client (and raw HTTPS where kube would hide the details).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::Cluster;
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ListParams, PostParams, WatchEvent, WatchParams},
};

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "demo"}},
        "data": {"value": value},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_updates_conflict() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await?, "default");
    let created = api
        .create(&PostParams::default(), &configmap("a", "1"))
        .await?;
    let mut first = created.clone();
    first.data = Some([("value".to_owned(), "2".to_owned())].into());
    api.replace("a", &PostParams::default(), &first).await?;
    let mut stale = created;
    stale.data = Some([("value".to_owned(), "stale".to_owned())].into());
    let err = api
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409);
            assert_eq!(status.reason, "Conflict");
        }
        other => panic!("expected a 409, got {other}"),
    }
    assert_eq!(api.get("a").await?.data.unwrap()["value"], "2");
    let err = api
        .create(&PostParams::default(), &configmap("a", "again"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_resumes_from_a_resource_version() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await?, "default");
    api.create(&PostParams::default(), &configmap("before", "1"))
        .await?;
    let list = api.list(&ListParams::default()).await?;
    let version = list.metadata.resource_version.clone().unwrap_or_default();
    // Changes made while nobody watches are delivered when watching from the list's version.
    api.create(&PostParams::default(), &configmap("after-1", "1"))
        .await?;
    api.delete("before", &Default::default()).await?;
    let mut stream = api
        .watch(
            &WatchParams::default().labels("app=demo").timeout(10),
            &version,
        )
        .await?
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await??
            .ok_or_else(|| anyhow::anyhow!("watch ended early"))?;
        match event {
            WatchEvent::Added(cm) => {
                seen.push(format!("ADDED {}", cm.metadata.name.unwrap_or_default()));
            }
            WatchEvent::Deleted(cm) => {
                seen.push(format!("DELETED {}", cm.metadata.name.unwrap_or_default()));
            }
            WatchEvent::Modified(cm) => {
                seen.push(format!("MODIFIED {}", cm.metadata.name.unwrap_or_default()));
            }
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(err) => anyhow::bail!("watch error {err:?}"),
        }
    }
    assert_eq!(seen, ["ADDED after-1", "DELETED before"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pagination_reads_one_snapshot() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await?, "default");
    for i in 0..7 {
        api.create(&PostParams::default(), &configmap(&format!("cm-{i}"), "x"))
            .await?;
    }
    // The namespace's own `kube-root-ca.crt` arrives from a controller at its own pace; wait
    // for it, so the snapshot holds a known 8 objects.
    crate::common::eventually(
        std::time::Duration::from_secs(10),
        "the kube-root-ca.crt ConfigMap",
        || async { api.get_opt("kube-root-ca.crt").await.ok().flatten() },
    )
    .await;
    let first = api.list(&ListParams::default().limit(3)).await?;
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().unwrap_or_default();
    assert!(!token.is_empty());
    api.create(&PostParams::default(), &configmap("late", "x"))
        .await?;
    let second = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await?;
    let third = api
        .list(
            &ListParams::default()
                .limit(3)
                .continue_token(second.metadata.continue_.as_deref().unwrap_or_default()),
        )
        .await?;
    assert_eq!(
        second.items.len() + third.items.len(),
        5,
        "the late object is not in this list"
    );
    assert_eq!(third.metadata.continue_.as_deref().unwrap_or_default(), "");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_without_credentials_are_unauthorized_and_tokens_work() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let url = format!("{}/api/v1/namespaces", cluster.url());
    let curl = |extra: &[&str]| {
        let output = std::process::Command::new("curl")
            .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let anonymous = curl(&[]);
    assert!(anonymous.ends_with("\n401"), "{anonymous}");
    assert!(
        anonymous.contains("\"reason\":\"Unauthorized\""),
        "{anonymous}"
    );
    let bearer = format!(
        "Authorization: Bearer {}",
        cluster.control_plane.admin_token
    );
    let with_token = curl(&["-H", &bearer]);
    assert!(with_token.ends_with("\n200"), "{with_token}");
    let wrong = curl(&["-H", "Authorization: Bearer not-a-token"]);
    assert!(wrong.ends_with("\n401"), "{wrong}");

    // Bodies over 3 MiB are refused before anything is decoded or stored. (HTTP/1.1: over HTTP/2,
    // curl 7.88 drops a response that arrives before its upload has finished.)
    let big = format!(
        "{{\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"a\":\"{}\"}}}}",
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let body = cluster.write("big.json", &big);
    let output = std::process::Command::new("curl")
        .args([
            "-sk",
            "--http1.1",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-H",
            &bearer,
        ])
        .args(["-H", "Content-Type: application/json", "--data-binary"])
        .arg(format!("@{}", body.display()))
        .arg(format!(
            "{}/api/v1/namespaces/default/configmaps",
            cluster.url()
        ))
        .output()?;
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(answer.ends_with("\n413"), "{answer}");
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await?, "default");
    assert!(api.get_opt("big").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compacted_resource_version_is_gone() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await?, "default");
    let first = api
        .create(&PostParams::default(), &configmap("a", "0"))
        .await?;
    let old = first.metadata.resource_version.clone().unwrap_or_default();
    let mut latest = first;
    for i in 1..4 {
        latest.data = Some([("value".to_owned(), i.to_string())].into());
        latest = api.replace("a", &PostParams::default(), &latest).await?;
    }
    // Compact etcd's history past `old`, as etcd's periodic compaction would.
    let store = flotilla_controlplane::storage::Store::connect(
        &[format!("http://127.0.0.1:{}", etcd_port(&cluster))],
        Duration::from_secs(5),
    )
    .await?;
    let revision = store.current_revision().await?;
    store.compact(revision).await?;
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &old)
        .await?
        .boxed();
    let event = tokio::time::timeout(Duration::from_secs(10), stream.next()).await?;
    match event {
        Some(Ok(WatchEvent::Error(status))) => assert_eq!(status.code, 410, "{status:?}"),
        Some(Err(kube::Error::Api(status))) => assert_eq!(status.code, 410, "{status:?}"),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    Ok(())
}

/// The embedded etcd's client port, from the control plane's etcd data directory name.
fn etcd_port(cluster: &Cluster) -> u16 {
    cluster.control_plane.etcd_client_port
}
