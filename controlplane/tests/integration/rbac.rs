//! RBAC through the real kubectl: a user without bindings is refused with upstream's message;
//! a Role and RoleBinding made with `kubectl create` grant exactly their rules; `kubectl auth
//! can-i` (with `--list` and `--as`) and `kubectl auth whoami` answer from the policy;
//! impersonation needs the `impersonate` verb; nobody grants what they do not hold; and the
//! aggregated `view` role follows the ClusterRoles labelled for it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use flotilla_controlplane::auth::pki::Pki;

use crate::common::{Cluster, eventually};

/// A kubeconfig for `user` (in `group`) with a client certificate from the cluster's CA.
fn kubeconfig_for(cluster: &Cluster, user: &str, group: &str) -> PathBuf {
    let pki = cluster.dir.path().join("state").join("pki");
    let read = |file: &str| std::fs::read_to_string(pki.join(file)).unwrap();
    let (cert, key) =
        Pki::issue_client_with(&read("ca.crt"), &read("ca.key"), user, group).unwrap();
    let cert_path = cluster.write(&format!("{user}.crt"), &cert);
    let key_path = cluster.write(&format!("{user}.key"), &key);
    cluster.write(
        &format!("{user}.kubeconfig"),
        &format!(
            "apiVersion: v1
kind: Config
clusters:
- name: flotilla
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: {user}
  context: {{cluster: flotilla, user: {user}}}
current-context: {user}
",
            server = cluster.url(),
            ca = pki.join("ca.crt").display(),
            cert = cert_path.display(),
            key = key_path.display(),
        ),
    )
}

/// Runs kubectl with `kubeconfig`; returns (success, stdout, stderr).
fn kubectl_as(cluster: &Cluster, kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let mut full = vec!["--kubeconfig", kubeconfig.to_str().unwrap()];
    full.extend(args);
    let output = cluster.kubectl(&full);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_roles_bindings_reviews_and_impersonation() {
    let cluster = Cluster::start().await.unwrap();
    let jane = kubeconfig_for(&cluster, "jane", "dev-team");
    cluster.kubectl_ok(&["create", "namespace", "dev"]);

    // Without a binding: upstream's words.
    let (ok, _, stderr) = kubectl_as(&cluster, &jane, &["get", "pods", "-n", "dev"]);
    assert!(!ok);
    assert!(
        stderr.contains(r#"Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "dev""#),
        "{stderr}"
    );
    // Discovery and whoami need no binding of their own.
    let (ok, whoami, stderr) = kubectl_as(&cluster, &jane, &["auth", "whoami", "-o", "json"]);
    assert!(ok, "{stderr}");
    let whoami: serde_json::Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(whoami["status"]["userInfo"]["username"], "jane");
    assert_eq!(
        whoami["status"]["userInfo"]["groups"],
        serde_json::json!(["dev-team", "system:authenticated"])
    );

    // A Role and a RoleBinding from kubectl's generators.
    cluster.kubectl_ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "dev",
        "--verb=get,list",
        "--resource=pods",
    ]);
    cluster.kubectl_ok(&[
        "create",
        "rolebinding",
        "jane-reads",
        "-n",
        "dev",
        "--role=pod-reader",
        "--user=jane",
    ]);
    let table = cluster.kubectl_ok(&["get", "rolebinding", "-n", "dev", "-o", "wide"]);
    assert!(
        table.contains("Role/pod-reader") && table.contains("jane"),
        "{table}"
    );
    eventually(Duration::from_secs(10), "jane may list pods", || async {
        let (ok, stdout, stderr) = kubectl_as(&cluster, &jane, &["get", "pods", "-n", "dev"]);
        (ok && stderr.contains("No resources found")).then_some(stdout)
    })
    .await;
    let (ok, _, stderr) = kubectl_as(&cluster, &jane, &["get", "pods", "-n", "default"]);
    assert!(!ok && stderr.contains("Forbidden"), "{stderr}");

    // can-i, as the admin impersonating jane, with every installed kubectl.
    let dir = std::fs::canonicalize(which::which("kubectl").unwrap())
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    for minor in 27..=33 {
        let binary = dir.join(format!("kubectl.1.{minor}"));
        let binary = binary.to_str().unwrap();
        let yes = cluster.kubectl_binary(
            binary,
            &["auth", "can-i", "list", "pods", "-n", "dev", "--as", "jane"],
            None,
        );
        assert_eq!(
            String::from_utf8_lossy(&yes.stdout).trim(),
            "yes",
            "kubectl 1.{minor}"
        );
        let no = cluster.kubectl_binary(
            binary,
            &[
                "auth", "can-i", "delete", "pods", "-n", "dev", "--as", "jane",
            ],
            None,
        );
        assert_eq!(
            String::from_utf8_lossy(&no.stdout).trim(),
            "no",
            "kubectl 1.{minor}"
        );
        assert!(
            !no.status.success(),
            "kubectl 1.{minor}: `no` exits non-zero"
        );
    }
    let list = cluster.kubectl_ok(&["auth", "can-i", "--list", "-n", "dev", "--as", "jane"]);
    let pods = list
        .lines()
        .find(|line| line.starts_with("pods "))
        .unwrap_or_else(|| panic!("no pods rule in\n{list}"));
    assert!(pods.contains("[get list]"), "{pods}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("selfsubjectaccessreviews.authorization.k8s.io")),
        "{list}"
    );

    // Impersonation takes the impersonate verb.
    let (ok, _, stderr) = kubectl_as(
        &cluster,
        &jane,
        &["get", "pods", "-n", "dev", "--as", "bob"],
    );
    assert!(!ok);
    assert!(
        stderr.contains(r#"users "bob" is forbidden: User "jane" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{stderr}"
    );
    cluster.kubectl_ok(&[
        "create",
        "clusterrole",
        "impersonate-bob",
        "--verb=impersonate",
        "--resource=users",
        "--resource-name=bob",
    ]);
    cluster.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "jane-impersonates-bob",
        "--clusterrole=impersonate-bob",
        "--user=jane",
    ]);
    eventually(Duration::from_secs(10), "jane acts as bob", || async {
        let (_, _, stderr) = kubectl_as(
            &cluster,
            &jane,
            &["get", "pods", "-n", "dev", "--as", "bob"],
        );
        // bob has no binding: the request gets through impersonation and is judged as bob.
        stderr
            .contains(r#"User "bob" cannot list resource "pods""#)
            .then_some(())
    })
    .await;

    // Escalation prevention: jane is a namespace admin of dev, but may not grant what she lacks.
    cluster.kubectl_ok(&[
        "create",
        "rolebinding",
        "jane-admin",
        "-n",
        "dev",
        "--clusterrole=admin",
        "--user=jane",
    ]);
    eventually(
        Duration::from_secs(30),
        "admin aggregated and in force",
        || async {
            let (ok, _, _) = kubectl_as(&cluster, &jane, &["get", "deployments", "-n", "dev"]);
            ok.then_some(())
        },
    )
    .await;
    let (ok, _, stderr) = kubectl_as(
        &cluster,
        &jane,
        &[
            "create",
            "role",
            "secret-deleter",
            "-n",
            "dev",
            "--verb=delete",
            "--resource=secrets",
        ],
    );
    assert!(ok, "admin holds delete on secrets: {stderr}");
    let (ok, _, stderr) = kubectl_as(
        &cluster,
        &jane,
        &[
            "create",
            "role",
            "node-reader",
            "-n",
            "dev",
            "--verb=get",
            "--resource=nodes",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains(r#"roles.rbac.authorization.k8s.io "node-reader" is forbidden: user "jane" (groups=["dev-team" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#)
            && stderr.contains(r#"{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}"#),
        "{stderr}"
    );
    let (ok, _, stderr) = kubectl_as(
        &cluster,
        &jane,
        &[
            "create",
            "rolebinding",
            "grab",
            "-n",
            "dev",
            "--clusterrole=cluster-admin",
            "--user=jane",
        ],
    );
    assert!(
        !ok && stderr.contains("attempting to grant RBAC permissions not currently held"),
        "{stderr}"
    );
    let (ok, _, stderr) = kubectl_as(
        &cluster,
        &jane,
        &[
            "create",
            "rolebinding",
            "mate",
            "-n",
            "dev",
            "--clusterrole=view",
            "--user=joe",
        ],
    );
    assert!(ok, "view is within admin: {stderr}");

    // Aggregation: a ClusterRole labelled for view joins view (and so edit and admin).
    cluster.apply(
        "widgets-view.yaml",
        "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widgets-view
  labels: {rbac.authorization.k8s.io/aggregate-to-view: \"true\"}
rules:
- {apiGroups: [example.com], resources: [widgets], verbs: [get, list, watch]}
",
    );
    for role in ["view", "edit", "admin"] {
        eventually(Duration::from_secs(10), "widgets aggregated", || async {
            cluster
                .kubectl_ok(&[
                    "get",
                    "clusterrole",
                    role,
                    "-o",
                    "jsonpath={.rules[*].resources}",
                ])
                .contains("widgets")
                .then_some(())
        })
        .await;
    }

    // A SubjectAccessReview written by hand.
    let review = cluster.kubectl_with_input(
        &["create", "-o", "jsonpath={.status.allowed}", "-f", "-"],
        Some(
            "apiVersion: authorization.k8s.io/v1
kind: SubjectAccessReview
spec:
  user: jane
  resourceAttributes: {namespace: dev, verb: list, resource: pods}
",
        ),
    );
    assert_eq!(String::from_utf8_lossy(&review.stdout), "true");
    let invalid = cluster.kubectl_with_input(
        &["create", "-f", "-"],
        Some("apiVersion: authorization.k8s.io/v1\nkind: SubjectAccessReview\nspec:\n  resourceAttributes: {verb: list, resource: pods}\n"),
    );
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(
        stderr.contains(
            "spec.user: Invalid value: \"\": at least one of user or group must be specified"
        ),
        "{stderr}"
    );
}
