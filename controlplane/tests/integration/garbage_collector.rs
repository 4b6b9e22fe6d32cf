//! The garbage collector's sweep (objects whose owners are gone) and deletions that survive a
//! control-plane restart (a namespace being emptied when the server stopped).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::Cluster;
use flotilla_controlplane::{
    etcd::free_port,
    run::{Config, ControlPlane},
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{Api, api::PostParams};

fn configmap(name: &str, owners: serde_json::Value) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "ownerReferences": owners},
        "data": {"k": "v"},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn owners_of_custom_kinds_are_looked_up_too() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(|config| {
        config.controllers.garbage_collector.sweep_period = Duration::from_millis(500);
    })
    .await?;
    cluster.apply(
        "crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.net}
spec:
  group: example.net
  scope: Namespaced
  names: {plural: gadgets, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
",
    );
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.net",
        "--timeout=30s",
    ]);
    cluster.apply(
        "gadget.yaml",
        "apiVersion: example.net/v1\nkind: Gadget\nmetadata: {name: g1, namespace: default}\n",
    );
    let uid = cluster.kubectl_ok(&["get", "gadget", "g1", "-o", "jsonpath={.metadata.uid}"]);
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client().await?, "default");
    let live = serde_json::json!({"apiVersion": "example.net/v1", "kind": "Gadget", "name": "g1", "uid": uid});
    let gone = serde_json::json!({"apiVersion": "example.net/v1", "kind": "Gadget", "name": "g0", "uid": "6f1c1c33-0000-4000-8000-000000000003"});
    for (name, owners) in [
        ("by-gadget", serde_json::json!([live])),
        ("by-gone-gadget", serde_json::json!([gone])),
    ] {
        configmaps
            .create(&PostParams::default(), &configmap(name, owners))
            .await?;
    }
    // A sweep is followed by a pause twenty times its length (the collector's own bound on its
    // share of the control plane): under a loaded machine that is seconds, so wait up to 60 s.
    let mut collected = false;
    for _ in 0..600 {
        if configmaps.get_opt("by-gone-gadget").await?.is_none() {
            collected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(collected, "an object whose Gadget owner is gone was kept");
    assert!(
        configmaps.get_opt("by-gadget").await?.is_some(),
        "a live Gadget's object was collected"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_whose_owners_are_gone_are_collected() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(|config| {
        config.controllers.garbage_collector.sweep_period = Duration::from_millis(500);
    })
    .await?;
    let configmaps: Api<ConfigMap> = Api::namespaced(cluster.client().await?, "default");
    let owner = configmaps
        .create(
            &PostParams::default(),
            &configmap("owner", serde_json::json!([])),
        )
        .await?;
    let live = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid});
    let ghost = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "6f1c1c33-0000-4000-8000-000000000000"});
    // A Node owner is cluster-scoped, of a kind we serve, and absent.
    let ghost_node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "name": "gone", "uid": "6f1c1c33-0000-4000-8000-000000000001"});
    // An owner of a kind this server does not serve is never judged gone.
    let foreign = serde_json::json!({"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "6f1c1c33-0000-4000-8000-000000000002"});
    for (name, owners) in [
        ("orphan", serde_json::json!([ghost, ghost_node])),
        ("shared", serde_json::json!([live, ghost])),
        ("kept", serde_json::json!([live])),
        ("foreign", serde_json::json!([foreign])),
    ] {
        configmaps
            .create(&PostParams::default(), &configmap(name, owners))
            .await?;
    }
    let mut done = false;
    for _ in 0..100 {
        let orphan_gone = configmaps.get_opt("orphan").await?.is_none();
        let shared = configmaps.get("shared").await?;
        let shared_owners: Vec<String> = shared
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.name)
            .collect();
        if orphan_gone && shared_owners == ["owner"] {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        done,
        "the orphan was not collected or the shared object kept its ghost owner"
    );
    assert_eq!(
        configmaps
            .get("kept")
            .await?
            .metadata
            .owner_references
            .unwrap()
            .len(),
        1
    );
    assert!(configmaps.get_opt("foreign").await?.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_namespace_deletion_interrupted_by_a_restart_finishes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        etcd_ports: (free_port()?, free_port()?),
        ..Config::new(
            dir.path().join("state"),
            format!("127.0.0.1:{}", free_port()?).parse()?,
        )
    };
    // The first control plane runs on a runtime of its own that is dropped afterwards, as a
    // stopped process takes its background tasks with it.
    let first_config = config.clone();
    let dir = tokio::task::spawn_blocking(move || -> anyhow::Result<tempfile::TempDir> {
        let runtime = tokio::runtime::Runtime::new()?;
        let dir = runtime.block_on(async move {
            let first = ControlPlane::start(first_config).await?;
            let cluster = Cluster::adopt(dir, first);
            let client = cluster.client().await?;
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let ns: Namespace =
                serde_json::from_value(serde_json::json!({"metadata": {"name": "doomed"}}))?;
            namespaces.create(&PostParams::default(), &ns).await?;
            let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
            configmaps
                .create(
                    &PostParams::default(),
                    &configmap("data", serde_json::json!([])),
                )
                .await?;
            cluster.kubectl_ok(&["delete", "namespace", "doomed", "--wait=false"]);
            // Stop before the namespace is emptied (that starts 2 s after the request).
            let Cluster { dir, control_plane } = cluster;
            control_plane.stop().await;
            anyhow::Ok(dir)
        })?;
        drop(runtime);
        Ok(dir)
    })
    .await??;
    let phase = |ns: &Namespace| ns.status.as_ref().and_then(|s| s.phase.clone());

    let second = ControlPlane::start(config).await?;
    let cluster = Cluster::adopt(dir, second);
    let namespaces: Api<Namespace> = Api::all(cluster.client().await?);
    let still = namespaces.get("doomed").await?;
    assert_eq!(phase(&still).as_deref(), Some("Terminating"));
    let mut gone = false;
    for _ in 0..150 {
        if namespaces.get_opt("doomed").await?.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the namespace was never removed after the restart");
    Ok(())
}
