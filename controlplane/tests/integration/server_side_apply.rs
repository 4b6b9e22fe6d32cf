//! Server-side apply through kube-rs and raw requests: ownership and conflicts as client-go
//! and kube-rs see them, apply creating objects, the status subresource, managedFields kept by
//! every write, and the errors for bad apply requests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::common::Cluster;

fn config_map(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": data})
}

/// `manager/operation` of every entry.
fn managers(object: &impl serde::Serialize) -> Vec<String> {
    let value = serde_json::to_value(object).unwrap();
    value["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            format!(
                "{}/{}",
                entry["manager"].as_str().unwrap(),
                entry["operation"].as_str().unwrap()
            )
        })
        .collect()
}

fn kube_error(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_apply_owns_conflicts_and_forces() {
    let cluster = Cluster::start().await.unwrap();
    let client = cluster.client().await.unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");

    // Apply creates the object; the applier owns exactly what it applied.
    let created = maps
        .patch(
            "cm",
            &PatchParams::apply("first"),
            &Patch::Apply(config_map(json!({"a": "1", "b": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(managers(&created), ["first/Apply"]);
    let entry = &serde_json::to_value(&created).unwrap()["metadata"]["managedFields"][0];
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(entry["fieldsV1"], json!({"f:data": {"f:a": {}, "f:b": {}}}));
    assert_eq!(entry["apiVersion"], "v1");
    assert!(entry["time"].is_string());

    // The same value is shared; a different one is a 409 naming the owner and the field.
    maps.patch(
        "cm",
        &PatchParams::apply("second"),
        &Patch::Apply(config_map(json!({"a": "1"}))),
    )
    .await
    .unwrap();
    let err = kube_error(
        maps.patch(
            "cm",
            &PatchParams::apply("second"),
            &Patch::Apply(config_map(json!({"b": "3"}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Apply failed with 1 conflict: conflict with \"first\": .data.b"
    );

    // Forced, the field changes hands.
    let forced = maps
        .patch(
            "cm",
            &PatchParams::apply("second").force(),
            &Patch::Apply(config_map(json!({"a": "1", "b": "3"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["b"], "3");
    let fields: Vec<Value> = serde_json::to_value(&forced).unwrap()["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| json!([entry["manager"], entry["fieldsV1"]]))
        .collect();
    assert_eq!(
        fields,
        [
            json!(["first", {"f:data": {"f:a": {}}}]),
            json!(["second", {"f:data": {"f:a": {}, "f:b": {}}}]),
        ]
    );

    // The first applier drops "a": the second still owns it, so it stays. Then the second drops
    // both: nobody owns them any more, so they go.
    maps.patch(
        "cm",
        &PatchParams::apply("first"),
        &Patch::Apply(config_map(json!({}))),
    )
    .await
    .unwrap();
    let kept = maps
        .patch(
            "cm",
            &PatchParams::apply("second"),
            &Patch::Apply(config_map(json!({"c": "4"}))),
        )
        .await
        .unwrap();
    assert_eq!(kept.data.unwrap().keys().collect::<Vec<_>>(), ["c"]);

    // An update (kube-rs names itself in the User-Agent) owns what it changed.
    let mut current = maps.get("cm").await.unwrap();
    current
        .data
        .as_mut()
        .unwrap()
        .insert("d".into(), "5".into());
    let replaced = maps
        .replace("cm", &PostParams::default(), &current)
        .await
        .unwrap();
    let last = managers(&replaced).pop().unwrap();
    assert!(last.ends_with("/Update"), "{:?}", managers(&replaced));
    // ... and through fieldManager when given.
    maps.patch(
        "cm",
        &PatchParams {
            field_manager: Some("editor".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"data": {"e": "6"}})),
    )
    .await
    .unwrap();
    let edited = maps.get("cm").await.unwrap();
    assert!(managers(&edited).contains(&"editor/Update".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_merges_lists_by_key_and_applies_status() {
    let cluster = Cluster::start().await.unwrap();
    let client = cluster.client().await.unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client, "default");
    let deployment = |containers: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}}})
    };
    deployments
        .patch(
            "web",
            &PatchParams::apply("base"),
            &Patch::Apply(deployment(json!([{"name": "web", "image": "nginx"}]))),
        )
        .await
        .unwrap();
    // A second applier adds a sidecar to the map list without touching the first container.
    let both = deployments
        .patch("web", &PatchParams::apply("mesh"), &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}})))
        .await
        .unwrap();
    let names: Vec<String> = both
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["web", "proxy"]);
    // Defaults the server filled in are nobody's, so a re-apply does not fight them.
    let again = deployments
        .patch(
            "web",
            &PatchParams::apply("base"),
            &Patch::Apply(deployment(json!([{"name": "web", "image": "nginx:2"}]))),
        )
        .await
        .unwrap();
    let spec = again.spec.unwrap();
    assert_eq!(spec.template.spec.as_ref().unwrap().containers.len(), 2);
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("nginx:2")
    );

    // Status through its subresource: an entry of its own, marked with the subresource.
    let status = deployments
        .patch_status(
            "web",
            &PatchParams::apply("reporter").force(),
            &Patch::Apply(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "status": {"observedGeneration": 7}})),
        )
        .await
        .unwrap();
    let value = serde_json::to_value(&status).unwrap();
    let entry = value["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["manager"] == "reporter")
        .unwrap()
        .clone();
    assert_eq!(entry["subresource"], "status");
    assert_eq!(
        entry["fieldsV1"],
        json!({"f:status": {"f:observedGeneration": {}}})
    );
}

/// A raw PATCH with its own content type, fieldManager and body; returns (status, body).
async fn raw_patch(cluster: &Cluster, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let client = cluster.client().await.unwrap();
    let request = http::Request::patch(path)
        .header("Content-Type", content_type)
        .body(body.as_bytes().to_vec())
        .unwrap();
    let response = client
        .send(request.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = response.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_apply_requests_get_clear_errors() {
    let cluster = Cluster::start().await.unwrap();
    let path = "/api/v1/namespaces/default/configmaps/cm";
    let with_manager = format!("{path}?fieldManager=tester");
    let apply = "application/apply-patch+yaml";
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: \"1\"\n";
    let pod = "/api/v1/namespaces/default/pods/p?fieldManager=tester";
    let forced = format!("{path}?force=true");
    // (path, content type, body, code, what the message says)
    let refused: [(&str, &str, &str, u16, &str); 8] = [
        (
            path,
            apply,
            yaml,
            422,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ),
        (&with_manager, apply, "a: [b\n", 400, "error decoding YAML"),
        (&with_manager, apply, "- a\n", 400, "must be an object"),
        (
            &with_manager,
            apply,
            "apiVersion: apps/v1\nkind: ConfigMap\nmetadata: {name: cm}\n",
            400,
            "Incorrect version specified in apply patch. Specified patch version: apps/v1, expected: v1",
        ),
        (
            &with_manager,
            "application/apply-patch+cbor",
            yaml,
            415,
            "unknown format",
        ),
        (
            &with_manager,
            "application/yaml",
            yaml,
            415,
            "unknown format",
        ),
        // A map list without its key is an invalid object, not a crash.
        (
            pod,
            apply,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - image: x\n",
            422,
            "omits key field \"name\"",
        ),
        (
            &forced,
            "application/merge-patch+json",
            "{}",
            422,
            "may not be specified for non-apply patch",
        ),
    ];
    for (path, content_type, body, code, message) in refused {
        let (got, answer) = raw_patch(&cluster, path, content_type, body).await;
        assert_eq!(got, code, "{content_type} {body:?}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(message),
            "{content_type} {body:?}: {answer}"
        );
    }

    // YAML creates (201) and a dry run changes nothing.
    let (code, answer) = raw_patch(&cluster, &with_manager, apply, yaml).await;
    assert_eq!(code, 201, "{answer}");
    let dry = format!("{with_manager}&dryRun=All");
    let changed = yaml.replace("\"1\"", "\"2\"");
    let (code, answer) = raw_patch(&cluster, &dry, apply, &changed).await;
    assert_eq!((code, answer["data"]["a"].as_str()), (200, Some("2")));
    let stored = cluster.kubectl_ok(&["get", "configmap", "cm", "-o", "jsonpath={.data.a}"]);
    assert_eq!(stored, "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_fields_follow_updates_and_can_be_reset() {
    let cluster = Cluster::start().await.unwrap();
    cluster.kubectl_ok(&["create", "configmap", "cm", "--from-literal=a=1"]);
    let managed = |cluster: &Cluster| -> Value {
        let out = cluster.kubectl_ok(&[
            "get",
            "configmap",
            "cm",
            "--show-managed-fields",
            "-o",
            "json",
        ]);
        serde_json::from_str::<Value>(&out).unwrap()["metadata"]["managedFields"].clone()
    };
    // kubectl names its generators in fieldManager (kubectl-create); others come from the
    // User-Agent.
    let created = managed(&cluster);
    assert_eq!(created[0]["manager"], "kubectl-create");
    assert_eq!(created[0]["operation"], "Update");
    assert_eq!(
        created[0]["fieldsV1"],
        json!({"f:data": {".": {}, "f:a": {}}})
    );
    cluster.kubectl_ok(&["label", "configmap", "cm", "team=a"]);
    let labelled = managed(&cluster);
    assert!(
        labelled
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry["manager"] == "kubectl-label"
                && entry["fieldsV1"]
                    == json!({"f:metadata": {"f:labels": {".": {}, "f:team": {}}}})),
        "{labelled}"
    );

    // An empty list resets tracking (the object then has none until the next apply).
    cluster.kubectl_ok(&[
        "patch",
        "configmap",
        "cm",
        "--type=merge",
        "-p",
        r#"{"metadata":{"managedFields":[{}]}}"#,
    ]);
    assert!(managed(&cluster).is_null(), "{}", managed(&cluster));
    cluster.kubectl_ok(&["label", "configmap", "cm", "tier=b"]);
    assert!(managed(&cluster).is_null());
}
