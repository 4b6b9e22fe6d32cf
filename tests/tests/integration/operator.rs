//! A custom resource and its operator, end to end on one node: a CustomResourceDefinition
//! defines `Widget`, a small operator written with kube-rs (`flotilla-widget-operator`, its own
//! image) runs as a pod under its own ServiceAccount with only the RBAC it needs, turns each
//! Widget into a Deployment it owns and reports the Deployment's ready replicas in the
//! Widget's status; `kubectl scale` on the Widget reaches the pods, and deleting the Widget
//! takes its Deployment with it.

use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::Value;

use crate::support::{LocalCluster, eventually, pod_phase, require_root};

const DEFINITION: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas, labelSelectorPath: .status.selector}
    additionalPrinterColumns:
    - {name: Ready, type: integer, jsonPath: .status.readyReplicas}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {type: integer, minimum: 0, default: 1}
              image: {type: string}
          status:
            type: object
            properties:
              replicas: {type: integer}
              readyReplicas: {type: integer}
              selector: {type: string}
";

const OPERATOR: &str = "apiVersion: v1
kind: Namespace
metadata: {name: widgets}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: operator, namespace: widgets}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: widget-operator}
rules:
- {apiGroups: [example.com], resources: [widgets], verbs: [get, list, watch]}
- {apiGroups: [example.com], resources: [widgets/status], verbs: [get, patch, update]}
- {apiGroups: [apps], resources: [deployments], verbs: [get, list, watch, create, patch, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: widget-operator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: widget-operator}
subjects: [{kind: ServiceAccount, name: operator, namespace: widgets}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: widget-operator, namespace: widgets}
spec:
  selector: {matchLabels: {app: widget-operator}}
  template:
    metadata: {labels: {app: widget-operator}}
    spec:
      serviceAccountName: operator
      terminationGracePeriodSeconds: 1
      containers:
      - {name: operator, image: docker.io/flotilla/widget-operator:v1, imagePullPolicy: Never}
";

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata: {name: blue, namespace: widgets}
spec: {replicas: 2}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_in_a_pod_reconciles_its_custom_resource() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 1).await?;
    let cluster = &local.cluster;
    cluster.apply("crd.yaml", DEFINITION)?;
    cluster.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=30s",
    ])?;
    cluster.apply("operator.yaml", OPERATOR)?;
    eventually(Duration::from_secs(90), "the operator Running", || {
        let pods = cluster.json(&["-n", "widgets", "get", "pods", "-l", "app=widget-operator"])?;
        Ok((pod_phase(&pods["items"][0]) == "Running").then_some(()))
    })
    .await?;
    eprintln!("operator running after {:?}", started.elapsed());

    cluster.apply("widget.yaml", WIDGET)?;
    let widget_status = |ready: i64| {
        move || -> anyhow::Result<Option<Value>> {
            let widget = cluster.json(&["-n", "widgets", "get", "widget", "blue"])?;
            Ok((widget["status"]["readyReplicas"] == ready).then_some(widget))
        }
    };
    let widget = eventually(
        Duration::from_secs(120),
        "the Widget reports 2 ready",
        widget_status(2),
    )
    .await?;
    eprintln!("widget ready after {:?}", started.elapsed());
    let deployment = cluster.json(&[
        "-n",
        "widgets",
        "get",
        "deployment",
        "blue",
        "--show-managed-fields",
    ])?;
    let owner = &deployment["metadata"]["ownerReferences"][0];
    ensure!(
        owner["kind"] == "Widget"
            && owner["uid"] == widget["metadata"]["uid"]
            && owner["controller"] == true,
        "the Deployment is not owned by its Widget: {}",
        deployment["metadata"]
    );
    let managers: Vec<&str> = deployment["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    ensure!(
        managers.contains(&"widget-operator"),
        "managers: {managers:?}"
    );

    // The operator is refused what its role does not grant.
    let denied = cluster.kubectl(&[
        "auth",
        "can-i",
        "delete",
        "deployments",
        "--as=system:serviceaccount:widgets:operator",
        "-n",
        "widgets",
    ]);
    ensure!(
        String::from_utf8_lossy(&denied.stdout).trim() == "no",
        "the operator may delete Deployments: {denied:?}"
    );

    // kubectl scale goes through the Widget's scale subresource to the operator and the pods.
    cluster.kubectl_ok(&["-n", "widgets", "scale", "widget/blue", "--replicas=1"])?;
    eventually(
        Duration::from_secs(60),
        "the Widget reports 1 ready",
        || {
            let widget = cluster.json(&["-n", "widgets", "get", "widget", "blue"])?;
            let deployment = cluster.json(&["-n", "widgets", "get", "deployment", "blue"])?;
            Ok(
                (widget["status"]["readyReplicas"] == 1 && deployment["spec"]["replicas"] == 1)
                    .then_some(()),
            )
        },
    )
    .await?;
    let table = cluster.kubectl_ok(&["-n", "widgets", "get", "widgets"])?;
    ensure!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.split_whitespace().collect::<Vec<_>>() == ["blue", "1"]),
        "the printer columns: {table}"
    );

    // The Deployment goes with its Widget.
    cluster.kubectl_ok(&["-n", "widgets", "delete", "widget", "blue"])?;
    eventually(Duration::from_secs(60), "the Deployment deleted", || {
        let output = cluster.kubectl(&["-n", "widgets", "get", "deployment", "blue"]);
        Ok((!output.status.success()).then_some(()))
    })
    .await?;

    local.shutdown().await;
    eprintln!("done after {:?}", started.elapsed());
    Ok(())
}
