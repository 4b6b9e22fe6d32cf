//! A custom kind served in two versions with one storage version: each version shows the
//! objects as its own (conversion None), whichever version wrote them, and discovery prefers
//! the GA version.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use serde_json::Value;

use crate::common::Cluster;

const DEFINITION: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gizmos.example.org
spec:
  group: example.org
  scope: Cluster
  names: {plural: gizmos, singular: gizmo, kind: Gizmo}
  versions:
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
"#;

fn raw(cluster: &Cluster, path: &str) -> Value {
    serde_json::from_str(&cluster.kubectl_ok(&["get", "--raw", path])).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_served_version_shows_objects_as_its_own() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    cluster.apply("crd.yaml", DEFINITION);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gizmos.example.org",
        "--timeout=30s",
    ]);
    let group = raw(&cluster, "/apis/example.org");
    assert_eq!(group["preferredVersion"]["version"], "v1", "{group}");
    assert_eq!(group["versions"].as_array().unwrap().len(), 2, "{group}");

    // Written through the older version, stored in v1.
    cluster.apply(
        "gizmo.yaml",
        "apiVersion: example.org/v1beta1\nkind: Gizmo\nmetadata: {name: small}\nspec: {size: 2}\n",
    );
    let old = raw(&cluster, "/apis/example.org/v1beta1/gizmos/small");
    assert_eq!(old["apiVersion"], "example.org/v1beta1");
    let new = raw(&cluster, "/apis/example.org/v1/gizmos/small");
    assert_eq!(new["apiVersion"], "example.org/v1");
    let listed = raw(&cluster, "/apis/example.org/v1beta1/gizmos");
    assert_eq!(
        listed["items"][0]["apiVersion"], "example.org/v1beta1",
        "{listed}"
    );

    // A patch through the older version is checked as that version's object.
    cluster.kubectl_ok(&[
        "patch",
        "gizmos.v1beta1.example.org",
        "small",
        "--type=merge",
        "-p",
        r#"{"spec":{"size":3}}"#,
    ]);
    let patched = raw(&cluster, "/apis/example.org/v1/gizmos/small");
    assert_eq!(patched["spec"]["size"], 3);
    // kubectl uses the preferred version.
    let shown: Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "gizmo", "small", "-o", "json"]))?;
    assert_eq!(shown["apiVersion"], "example.org/v1");
    Ok(())
}
