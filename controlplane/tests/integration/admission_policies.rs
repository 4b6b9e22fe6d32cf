//! ValidatingAdmissionPolicies against a real control plane, with the real kubectl: a policy
//! bound with `Deny` refuses a Deployment with too many replicas in upstream's words; a policy
//! that takes its limit from a ConfigMap (paramKind, and the binding's paramRef by name) reads
//! it at each request and refuses when it is missing; a `Warn` binding lets the write through
//! with a kubectl `Warning:`; a binding's namespaceSelector applies it only in labelled
//! namespaces. The kinds are listed with upstream's columns, and a policy whose CEL does not
//! compile (or a binding that both denies and warns) is refused with a field error.
//!
//! Each policy selects Deployments by a `policy` label of its own, so the cases do not meet.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::{Cluster, eventually};

/// A Deployment labelled `policy: <policy>` (what the policies select by).
fn deployment(name: &str, namespace: &str, policy: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {namespace}, labels: {{app: {name}, policy: {policy}}}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec: {{containers: [{{name: web, image: flotilla/testapp:v1}}]}}
"
    )
}

/// A policy on Deployments labelled `policy: <label>`, with `rest` (YAML under `spec:`), and
/// its binding (`binding`, YAML under its `spec:` besides the policy name).
fn policy_and_binding(name: &str, label: &str, rest: &str, binding: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  matchConstraints:
    resourceRules:
    - {{operations: [CREATE, UPDATE], apiGroups: [apps], apiVersions: [v1], resources: [deployments]}}
    objectSelector: {{matchLabels: {{policy: {label}}}}}
{rest}---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
{binding}"
    )
}

/// Creates `manifest` as a server-side dry run: kubectl's output and whether it succeeded.
fn dry_run(cluster: &Cluster, name: &str, manifest: &str) -> (bool, String) {
    let path = cluster.write(name, manifest);
    let output = cluster.kubectl(&["create", "--dry-run=server", "-f", &path.to_string_lossy()]);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Waits until the API server refuses `manifest` (it follows policies through a watch), and
/// returns kubectl's error.
async fn refused(cluster: &Cluster, name: &str, manifest: &str) -> String {
    eventually(
        Duration::from_secs(10),
        &format!("{name} to be refused"),
        || {
            let (ok, stderr) = dry_run(cluster, name, manifest);
            std::future::ready((!ok).then_some(stderr))
        },
    )
    .await
}

/// Creates `manifest` for real, expecting kubectl to fail: its error.
fn create_err(cluster: &Cluster, name: &str, manifest: &str) -> String {
    let path = cluster.write(name, manifest);
    cluster.kubectl_err(&["create", "-f", &path.to_string_lossy()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policies_deny_warn_take_params_and_select_namespaces() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;

    // Deny: more than 5 replicas is refused, with upstream's message.
    cluster.apply(
        "max.yaml",
        &policy_and_binding(
            "max-replicas",
            "max",
            "  validations:\n  - expression: object.spec.replicas <= 5\n",
            "  validationActions: [Deny]\n",
        ),
    );
    let six = deployment("six", "default", "max", 6);
    refused(&cluster, "six.yaml", &six).await;
    let err = create_err(&cluster, "six.yaml", &six);
    assert!(
        err.contains(r#"The deployments "six" is invalid: : ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas' denied request: failed expression: object.spec.replicas <= 5"#),
        "{err}"
    );
    cluster.apply("five.yaml", &deployment("five", "default", "max", 5));
    // Scaling past the limit is an update the policy refuses too.
    let err = cluster.kubectl_err(&[
        "patch",
        "deployment",
        "five",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":7}}"#,
    ]);
    assert!(
        err.contains(
            "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas' denied request"
        ),
        "{err}"
    );

    // Params: the limit is a ConfigMap's, in the request's namespace, read at each request.
    cluster.apply(
        "limit.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: replica-limit, namespace: default}\ndata: {maxReplicas: \"3\"}\n",
    );
    cluster.apply(
        "params.yaml",
        &policy_and_binding(
            "param-replicas",
            "params",
            "  paramKind: {apiVersion: v1, kind: ConfigMap}
  validations:
  - expression: object.spec.replicas <= int(params.data.maxReplicas)
    messageExpression: \"'at most ' + params.data.maxReplicas + ' replicas, not ' + string(object.spec.replicas)\"
    reason: Forbidden
",
            "  paramRef: {name: replica-limit, parameterNotFoundAction: Deny}\n  validationActions: [Deny]\n",
        ),
    );
    let four = deployment("four", "default", "params", 4);
    let err = refused(&cluster, "four.yaml", &four).await;
    assert!(
        err.contains(r#"Error from server (Forbidden): error when creating"#)
            && err.contains(r#"deployments.apps "four" is forbidden: ValidatingAdmissionPolicy 'param-replicas' with binding 'param-replicas' denied request: at most 3 replicas, not 4"#),
        "{err}"
    );
    cluster.apply("three.yaml", &deployment("three", "default", "params", 3));
    cluster.kubectl_ok(&["create", "namespace", "elsewhere"]);
    let err = create_err(
        &cluster,
        "elsewhere.yaml",
        &deployment("one", "elsewhere", "params", 1),
    );
    assert!(
        err.contains("ValidatingAdmissionPolicy 'param-replicas' with binding 'param-replicas' denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"),
        "{err}"
    );
    cluster.kubectl_ok(&[
        "patch",
        "configmap",
        "replica-limit",
        "--type=merge",
        "-p",
        r#"{"data":{"maxReplicas":"4"}}"#,
    ]);
    cluster.apply("four.yaml", &four);

    // Warn: the write goes through, and kubectl prints the warning.
    cluster.apply(
        "warn.yaml",
        &policy_and_binding(
            "warn-replicas",
            "warn",
            "  validations:\n  - {expression: object.spec.replicas <= 2, message: more than 2 replicas}\n",
            "  validationActions: [Warn, Audit]\n",
        ),
    );
    let warned = deployment("warned", "default", "warn", 3);
    let expected = "Warning: Validation failed for ValidatingAdmissionPolicy 'warn-replicas' with binding 'warn-replicas': more than 2 replicas";
    eventually(Duration::from_secs(10), "the Warn binding to warn", || {
        let (ok, stderr) = dry_run(&cluster, "warned.yaml", &warned);
        assert!(ok, "a Warn binding refused: {stderr}");
        std::future::ready(stderr.contains(expected).then_some(()))
    })
    .await;
    let path = cluster.write("warned.yaml", &warned);
    let created = cluster.kubectl(&["create", "-f", &path.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&created.stderr);
    assert!(created.status.success(), "{stderr}");
    assert_eq!(stderr.trim(), expected);

    // A binding's namespaceSelector: only Deployments in labelled namespaces are judged.
    cluster.apply(
        "namespaces.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod, labels: {env: prod}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n",
    );
    cluster.apply(
        "ns.yaml",
        &policy_and_binding(
            "single-replica",
            "ns",
            "  validations:\n  - {expression: object.spec.replicas <= 1, message: production runs one replica}\n",
            "  matchResources:\n    namespaceSelector: {matchLabels: {env: prod}}\n  validationActions: [Deny]\n",
        ),
    );
    let in_prod = deployment("two", "prod", "ns", 2);
    let err = refused(&cluster, "prod.yaml", &in_prod).await;
    assert!(
        err.contains("ValidatingAdmissionPolicy 'single-replica' with binding 'single-replica' denied request: production runs one replica"),
        "{err}"
    );
    cluster.apply("dev.yaml", &deployment("two", "dev", "ns", 2));

    // Without its policy a binding does nothing.
    cluster.kubectl_ok(&["delete", "validatingadmissionpolicy", "max-replicas"]);
    eventually(
        Duration::from_secs(10),
        "the deleted policy to stop",
        || std::future::ready(dry_run(&cluster, "six.yaml", &six).0.then_some(())),
    )
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn policies_and_bindings_are_served_and_validated() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    cluster.apply(
        "params.yaml",
        &policy_and_binding(
            "param-replicas",
            "params",
            "  paramKind: {apiVersion: v1, kind: ConfigMap}\n  validations:\n  - expression: object.spec.replicas <= int(params.data.maxReplicas)\n",
            "  paramRef: {name: replica-limit, parameterNotFoundAction: Allow}\n  validationActions: [Deny]\n",
        ),
    );
    let policies = cluster.kubectl_ok(&["get", "validatingadmissionpolicies"]);
    let lines: Vec<Vec<&str>> = policies
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "VALIDATIONS", "PARAMKIND", "AGE"],
        "{policies}"
    );
    assert_eq!(
        lines[1][..3],
        ["param-replicas", "1", "v1/ConfigMap"],
        "{policies}"
    );
    let bindings = cluster.kubectl_ok(&["get", "validatingadmissionpolicybindings"]);
    let lines: Vec<Vec<&str>> = bindings
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["NAME", "POLICYNAME", "PARAMREF", "AGE"],
        "{bindings}"
    );
    assert_eq!(
        lines[1][..3],
        ["param-replicas", "param-replicas", "*/replica-limit"],
        "{bindings}"
    );
    // Defaults are upstream's.
    let defaulted = cluster.kubectl_ok(&[
        "get",
        "validatingadmissionpolicy",
        "param-replicas",
        "-o",
        "jsonpath={.spec.failurePolicy} {.spec.matchConstraints.matchPolicy} {.spec.matchConstraints.resourceRules[0].scope} {.metadata.generation}",
    ]);
    assert_eq!(defaulted, "Fail Equivalent * 1");
    // Under parameterNotFoundAction Allow, a missing param leaves the write alone.
    cluster.apply("nine.yaml", &deployment("nine", "default", "params", 9));

    // A validation that does not compile refuses the policy, at its field.
    let broken = policy_and_binding(
        "broken",
        "broken",
        "  validations:\n  - expression: object.spec.replicas <=\n",
        "  validationActions: [Deny]\n",
    );
    let path = cluster.write("broken.yaml", &broken);
    let err = cluster.kubectl_err(&["apply", "-f", &path.to_string_lossy()]);
    assert!(
        err.contains(r#"The ValidatingAdmissionPolicy "broken" is invalid: spec.validations[0].expression: Invalid value: "object.spec.replicas <=": compilation failed: ERROR: <input>:1:"#),
        "{err}"
    );
    // An undeclared variable too: params needs a paramKind.
    let undeclared = broken.replace(
        "object.spec.replicas <=",
        "object.spec.replicas <= int(params.data.max)",
    );
    let path = cluster.write("undeclared.yaml", &undeclared);
    let err = cluster.kubectl_err(&["apply", "-f", &path.to_string_lossy()]);
    assert!(err.contains("undeclared reference to 'params'"), "{err}");
    // A binding may not both deny and warn.
    let err = create_err(
        &cluster,
        "both.yaml",
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata: {name: both}\nspec: {policyName: param-replicas, validationActions: [Deny, Warn]}\n",
    );
    assert!(
        err.contains(r#"spec.validationActions: Invalid value: []admissionregistration.ValidationAction{"Deny", "Warn"}: must not contain both Deny and Warn"#),
        "{err}"
    );
    cluster.kubectl_ok(&[
        "delete",
        "validatingadmissionpolicybinding",
        "param-replicas",
    ]);
    cluster.kubectl_ok(&["delete", "validatingadmissionpolicy", "param-replicas"]);
    let left = cluster.kubectl_ok(&["get", "validatingadmissionpolicies", "-o", "name"]);
    assert_eq!(left.trim(), "");
    Ok(())
}
