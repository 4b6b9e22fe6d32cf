//! EndpointSlices and Endpoints follow the pods a Service selects.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::Cluster;
use k8s_openapi::api::{
    core::v1::{EndpointSubset, Endpoints, Pod},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams},
};

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"schedulerName": "nobody", "containers": [{"name": "c", "image": "i", "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))
    .unwrap()
}

async fn slice(
    slices: &Api<EndpointSlice>,
    want: impl Fn(&EndpointSlice) -> bool,
) -> EndpointSlice {
    let mut last = None;
    for _ in 0..100 {
        let list = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .unwrap();
        if let Some(slice) = list.items.into_iter().next() {
            if want(&slice) {
                return slice;
            }
            last = Some(slice);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the EndpointSlice never matched; last: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slices_follow_selected_pods() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let client = cluster.client().await?;
    cluster.kubectl_ok(&["apply", "-f", &cluster.write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  selector: {app: web}\n  ports: [{name: http, port: 80, targetPort: http}]\n").to_string_lossy()]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (i, ready) in [(1, true), (2, true), (3, false)] {
        pods.create(&PostParams::default(), &pod(&format!("web-{i}")))
            .await?;
        // What the node agent will do: report the pod's IP and readiness.
        let status = serde_json::json!({"status": {"phase": "Running", "podIP": format!("10.244.0.{i}"),
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        pods.patch_status(
            &format!("web-{i}"),
            &PatchParams::default(),
            &Patch::Strategic(&status),
        )
        .await?;
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let found = slice(&slices, |s| s.endpoints.len() == 3).await;
    let ready = found
        .endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .count();
    assert_eq!(ready, 2);
    let port = &found.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("http"), Some(8080)),
        "named targetPort resolved"
    );
    assert_eq!(found.address_type, "IPv4");

    // The controller writes the Endpoints in a second request after the slice, so the slice
    // matching says nothing about them yet: wait (bounded) until they list all three pods (each
    // got its address and readiness in one status patch) before judging how they are split.
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let listed = |s: &EndpointSubset| {
        s.addresses.as_ref().map_or(0, Vec::len)
            + s.not_ready_addresses.as_ref().map_or(0, Vec::len)
    };
    let mut last = None;
    for _ in 0..100 {
        last = endpoints
            .get_opt("web")
            .await?
            .and_then(|e| e.subsets)
            .and_then(|subsets| subsets.into_iter().next());
        if last.as_ref().is_some_and(|s| listed(s) == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let subset = last
        .as_ref()
        .filter(|s| listed(s) == 3)
        .unwrap_or_else(|| panic!("the Endpoints never listed the three pods; last: {last:?}"));
    assert_eq!(subset.addresses.as_ref().unwrap().len(), 2);
    assert_eq!(subset.not_ready_addresses.as_ref().unwrap().len(), 1);

    pods.delete("web-1", &Default::default()).await?;
    slice(&slices, |s| s.endpoints.len() == 2).await;
    let shown = cluster.kubectl_ok(&["get", "endpoints", "web"]);
    assert!(shown.contains("10.244.0.2:8080"), "{shown}");

    // Objects the controller owns come back when someone deletes them, at once (the controller
    // watches them) and not after a periodic resync.
    let deleted = slice(&slices, |_| true).await;
    slices
        .delete(&deleted.metadata.name.unwrap(), &Default::default())
        .await?;
    endpoints.delete("web", &Default::default()).await?;
    let restored = slice(&slices, |s| {
        s.metadata.uid != deleted.metadata.uid && s.endpoints.len() == 2
    })
    .await;
    assert_eq!(restored.endpoints.len(), 2);
    let mut back = None;
    for _ in 0..100 {
        back = endpoints.get_opt("web").await?;
        if back.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        back.is_some(),
        "the Endpoints object was not recreated in 10 s"
    );

    // A pod relabelled away leaves the slice, though its new labels select no Service: the
    // controller remembers which Services listed it.
    pods.patch(
        "web-2",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"app": "elsewhere"}}})),
    )
    .await?;
    let left = slice(&slices, |s| s.endpoints.len() == 1).await;
    assert_eq!(
        left.endpoints[0].addresses,
        ["10.244.0.3"],
        "web-3 stays, web-2 left"
    );
    // And back again.
    pods.patch(
        "web-2",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await?;
    slice(&slices, |s| s.endpoints.len() == 2).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn headless_services_carry_hostnames_and_may_publish_unready_pods() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let client = cluster.client().await?;
    cluster.kubectl_ok(&["apply", "-f", &cluster.write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  clusterIP: None\n  publishNotReadyAddresses: true\n  selector: {app: web}\n  ports: [{name: http, port: 8080}]\n").to_string_lossy()]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // web-0 is a StatefulSet-style pod of this Service; other-0 names another subdomain.
    for (i, (name, subdomain)) in [("web-0", "web"), ("other-0", "other")].iter().enumerate() {
        let mut pod = pod(name);
        let spec = pod.spec.as_mut().unwrap();
        spec.hostname = Some((*name).to_owned());
        spec.subdomain = Some((*subdomain).to_owned());
        pods.create(&PostParams::default(), &pod).await?;
        let status = serde_json::json!({"status": {"phase": "Running", "podIP": format!("10.244.0.{}", i + 1),
            "conditions": [{"type": "Ready", "status": "False"}]}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
            .await?;
    }
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let found = slice(&slices, |s| s.endpoints.len() == 2).await;
    // (address, hostname, ready, serving)
    type Seen = (String, Option<String>, Option<bool>, Option<bool>);
    let mut seen: Vec<Seen> = found
        .endpoints
        .iter()
        .map(|e| {
            let conditions = e.conditions.clone().unwrap_or_default();
            (
                e.addresses[0].clone(),
                e.hostname.clone(),
                conditions.ready,
                conditions.serving,
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (
                "10.244.0.1".to_owned(),
                Some("web-0".to_owned()),
                Some(true),
                Some(false)
            ),
            ("10.244.0.2".to_owned(), None, Some(true), Some(false)),
        ],
        "unready pods published as ready; only the pod whose subdomain is the Service has a hostname"
    );
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let subset = &endpoints.get("web").await?.subsets.unwrap()[0];
    let addresses = subset.addresses.clone().unwrap_or_default();
    assert_eq!(addresses.len(), 2);
    assert!(subset.not_ready_addresses.is_none());
    assert!(
        addresses
            .iter()
            .any(|a| a.ip == "10.244.0.1" && a.hostname.as_deref() == Some("web-0"))
    );
    Ok(())
}
