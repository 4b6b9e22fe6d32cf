//! CustomResourceDefinitions through the real kubectl: a definition becomes Established, its
//! kind is discovered and served (defaults, pruning, schema errors, printer columns, status and
//! scale subresources, label selectors, watch), `kubectl explain` reads its schema, and
//! deleting the definition deletes its objects first.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use serde_json::Value;

use crate::common::{Cluster, eventually};

const DEFINITION: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: A widget, made to order.
        properties:
          spec:
            type: object
            required: [color]
            x-kubernetes-validations:
            - rule: "self.color != 'red' || !has(self.replicas) || self.replicas <= 5"
              message: replicas must be at most 5 when color is red
            - rule: self.color == oldSelf.color
              message: color is immutable
            properties:
              color:
                type: string
                description: What colour the widget is painted.
                enum: [red, green, blue]
              size:
                type: integer
                minimum: 1
                maximum: 10
                default: 3
              replicas:
                type: integer
          status:
            type: object
            properties:
              replicas:
                type: integer
              selector:
                type: string
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Color
      type: string
      jsonPath: .spec.color
    - name: Size
      type: integer
      jsonPath: .spec.size
"#;

const WIDGET: &str = r#"apiVersion: example.com/v1
kind: Widget
metadata:
  name: first
  namespace: default
  labels: {shape: round}
spec:
  color: red
  replicas: 1
"#;

fn json(cluster: &Cluster, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&cluster.kubectl_ok(&all)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_definition_serves_its_kind_to_kubectl() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let out = cluster.apply("crd.yaml", DEFINITION);
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/widgets.example.com created"),
        "{out}"
    );
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ]);
    let crd = json(&cluster, &["get", "crd", "widgets.example.com"]);
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["storedVersions"], serde_json::json!(["v1"]));
    assert_eq!(crd["metadata"]["generation"], 1);

    // Created through kubectl apply (which needs the kind's OpenAPI for field validation).
    let out = cluster.apply("widget.yaml", WIDGET);
    assert!(out.contains("widget.example.com/first created"), "{out}");
    let widget = json(&cluster, &["get", "widget", "first"]);
    assert_eq!(widget["spec"]["size"], 3, "the schema's default: {widget}");
    assert_eq!(widget["apiVersion"], "example.com/v1");

    // Unknown fields: refused by strict field validation, pruned when ignored.
    let with_extra = WIDGET
        .replace("name: first", "name: extra")
        .replace("shape: round", "shape: square")
        .replace("replicas: 1", "replicas: 1\n  gears: 12");
    let path = cluster.write("extra.yaml", &with_extra);
    let err = cluster.kubectl_err(&["create", "-f", &path.to_string_lossy()]);
    assert!(err.contains(r#"unknown field "spec.gears""#), "{err}");
    cluster.kubectl_ok(&["create", "--validate=false", "-f", &path.to_string_lossy()]);
    let extra = json(&cluster, &["get", "widgets.example.com", "extra"]);
    assert!(extra["spec"].get("gears").is_none(), "not pruned: {extra}");

    // Schema errors name the field, as upstream's.
    let bad = WIDGET
        .replace("name: first", "name: bad")
        .replace("color: red", "color: purple")
        .replace("replicas: 1", "replicas: 1\n  size: 11");
    let path = cluster.write("bad.yaml", &bad);
    let err = cluster.kubectl_err(&["create", "-f", &path.to_string_lossy()]);
    assert!(err.contains(r#"The Widget "bad" is invalid"#), "{err}");
    assert!(
        err.contains(
            r#"spec.color: Unsupported value: "purple": supported values: "red", "green", "blue""#
        ),
        "{err}"
    );
    assert!(
        err.contains(
            "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
        ),
        "{err}"
    );

    // CEL rules (x-kubernetes-validations): one on every write, one on updates only.
    let big = WIDGET
        .replace("name: first", "name: big")
        .replace("replicas: 1", "replicas: 6");
    let path = cluster.write("big.yaml", &big);
    let err = cluster.kubectl_err(&["create", "-f", &path.to_string_lossy()]);
    assert!(
        err.contains(r#"The Widget "big" is invalid: spec: Invalid value: "object": replicas must be at most 5 when color is red"#),
        "{err}"
    );
    let err = cluster.kubectl_err(&[
        "patch",
        "widget",
        "first",
        "--type=merge",
        "-p",
        r#"{"spec":{"color":"blue"}}"#,
    ]);
    assert!(
        err.contains(
            r#"The Widget "first" is invalid: spec: Invalid value: "object": color is immutable"#
        ),
        "{err}"
    );

    // The printer columns, a short name and a label selector.
    let table = cluster.kubectl_ok(&["get", "wd", "-l", "shape=round"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "COLOR", "SIZE"], "{table}");
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row, ["first", "red", "3"], "{table}");
    assert!(lines.next().is_none(), "only the labelled widget: {table}");

    // kubectl explain reads the published schema.
    let explained = cluster.kubectl_ok(&["explain", "widget.spec.color"]);
    assert!(
        explained.contains("What colour the widget is painted."),
        "{explained}"
    );

    // Status through /status only; the spec through the object only.
    let patched = cluster.kubectl_ok(&[
        "patch",
        "widget",
        "first",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":1,"selector":"shape=round"},"spec":{"color":"blue"}}"#,
        "-o",
        "json",
    ]);
    let patched: Value = serde_json::from_str(&patched)?;
    assert_eq!(patched["status"]["replicas"], 1);
    assert_eq!(
        patched["spec"]["color"], "red",
        "a status write changed spec"
    );
    cluster.kubectl_ok(&[
        "patch",
        "widget",
        "first",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":7}}"#,
    ]);
    let widget = json(&cluster, &["get", "widget", "first"]);
    assert_eq!(
        widget["status"]["replicas"], 1,
        "a main-resource write changed status"
    );

    // kubectl scale goes through the scale subresource.
    let scale: Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/widgets/first/scale",
    ]))?;
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "shape=round");
    let out = cluster.kubectl_ok(&["scale", "widget/first", "--replicas=4"]);
    assert!(out.contains("widget.example.com/first scaled"), "{out}");
    let widget = json(&cluster, &["get", "widget", "first"]);
    assert_eq!(widget["spec"]["replicas"], 4);

    // Deleting the definition deletes its objects first, then the definition.
    cluster.kubectl_ok(&["delete", "crd", "widgets.example.com", "--wait=false"]);
    eventually(
        Duration::from_secs(30),
        "the definition is gone",
        || async {
            let output = cluster.kubectl(&["get", "crd", "widgets.example.com"]);
            (!output.status.success()).then_some(())
        },
    )
    .await;
    let err = cluster.kubectl_err(&[
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/widgets",
    ]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    // A definition made again starts empty: the objects went with the old one.
    cluster.apply("crd.yaml", DEFINITION);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ]);
    let listed = json(&cluster, &["get", "widgets", "-A"]);
    assert_eq!(listed["items"], serde_json::json!([]), "{listed}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_definitions_are_refused_and_name_clashes_reported() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    // Not structural: a property without a type.
    let untyped = DEFINITION.replace(
        "              replicas:\n                type: integer\n          status:",
        "              replicas: {}\n          status:",
    );
    let path = cluster.write("untyped.yaml", &untyped);
    let err = cluster.kubectl_err(&["create", "-f", &path.to_string_lossy()]);
    assert!(
        err.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[replicas].type: Required value: must not be empty for specified object fields"),
        "{err}"
    );
    let err = cluster.kubectl_err(&["get", "crd", "widgets.example.com"]);
    assert!(err.contains("NotFound"), "nothing stored: {err}");

    // A second definition wanting a taken kind is stored, but not served.
    cluster.apply("crd.yaml", DEFINITION);
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ]);
    let clash = DEFINITION
        .replace("widgets.example.com", "gadgets.example.com")
        .replace("plural: widgets", "plural: gadgets")
        .replace("singular: widget", "singular: gadget")
        .replace("shortNames: [wd]", "shortNames: [gd]");
    cluster.apply("clash.yaml", &clash);
    let condition = eventually(Duration::from_secs(20), "NamesAccepted False", || async {
        let crd = json(&cluster, &["get", "crd", "gadgets.example.com"]);
        crd["status"]["conditions"]
            .as_array()
            .and_then(|list| {
                list.iter()
                    .find(|c| c["type"] == "NamesAccepted" && c["status"] == "False")
            })
            .cloned()
    })
    .await;
    // Kind and list kind both clash; upstream reports the last name it checks.
    assert_eq!(condition["reason"], "ListKindConflict");
    assert_eq!(condition["message"], r#""WidgetList" is already in use"#);
    let err = cluster.kubectl_err(&[
        "get",
        "--raw",
        "/apis/example.com/v1/namespaces/default/gadgets",
    ]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    Ok(())
}
