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

/// The credentials `flotilla-controlplane node-credentials` issues for `node`.
fn node_kubeconfig(cluster: &Cluster, node: &str) -> PathBuf {
    let credentials = flotilla_controlplane::auth::node::write_node_credentials(
        &cluster.dir.path().join("state").join("pki"),
        node,
        "127.0.0.1",
        &cluster.url(),
        &cluster.dir.path().join(node),
    )
    .unwrap();
    credentials.kubeconfig
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_reaches_only_its_own_objects() {
    let cluster = Cluster::start().await.unwrap();
    let node1 = node_kubeconfig(&cluster, "node1");
    let node = |name: &str| format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n");

    // Its own Node, not another's.
    let (ok, _, stderr) = kubectl_create(&cluster, &node1, &node("node1"));
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = kubectl_create(&cluster, &node1, &node("node2"));
    assert!(!ok);
    assert!(
        stderr.contains(
            r#"nodes "node2" is forbidden: node "node1" is not allowed to modify node "node2""#
        ),
        "{stderr}"
    );
    cluster.apply("node2.yaml", &node("node2"));
    let (ok, _, stderr) = kubectl_as(&cluster, &node1, &["label", "node", "node1", "zone=a"]);
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = kubectl_as(&cluster, &node1, &["label", "node", "node2", "zone=a"]);
    assert!(!ok);
    assert!(
        stderr.contains(r#"nodes "node2" is forbidden: User "system:node:node1" cannot patch resource "nodes" in API group "" at the cluster scope: node "node1" is not allowed to modify node "node2""#),
        "{stderr}"
    );

    // Secrets: only those its pods use.
    cluster.kubectl_ok(&["create", "secret", "generic", "mine", "--from-literal=a=b"]);
    cluster.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "theirs",
        "--from-literal=a=b",
    ]);
    let pod = |name: &str, node: &str, secret: &str| {
        format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  containers:
  - name: c
    image: busybox
    env:
    - name: A
      valueFrom: {{secretKeyRef: {{name: {secret}, key: a}}}}
"
        )
    };
    cluster.apply("p1.yaml", &pod("p1", "node1", "mine"));
    cluster.apply("p2.yaml", &pod("p2", "node2", "theirs"));
    eventually(
        Duration::from_secs(10),
        "node1 reads its pod's secret",
        || async {
            let (ok, _, _) = kubectl_as(&cluster, &node1, &["get", "secret", "mine"]);
            ok.then_some(())
        },
    )
    .await;
    let (ok, _, stderr) = kubectl_as(&cluster, &node1, &["get", "secret", "theirs"]);
    assert!(!ok);
    assert!(
        stderr.contains(r#"secrets "theirs" is forbidden: User "system:node:node1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'node1' and this object"#),
        "{stderr}"
    );
    let (ok, _, stderr) = kubectl_as(&cluster, &node1, &["get", "secrets"]);
    assert!(!ok && stderr.contains("Forbidden"), "{stderr}");

    // Pods: it reads all (the datapath needs them), deletes only its own, creates none for
    // another node.
    let (ok, stdout, stderr) = kubectl_as(&cluster, &node1, &["get", "pods", "-o", "name"]);
    assert!(ok && stdout.contains("pod/p2"), "{stderr}");
    let (ok, _, stderr) = kubectl_as(&cluster, &node1, &["delete", "pod", "p2", "--wait=false"]);
    assert!(!ok);
    assert!(
        stderr.contains(r#"node "node1" can only delete pods with spec.nodeName set to itself"#),
        "{stderr}"
    );
    let (ok, _, stderr) = kubectl_create(&cluster, &node1, &pod("p3", "node2", "theirs"));
    assert!(!ok);
    assert!(
        stderr.contains(r#"pods "p3" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "node1" can only create mirror pods"#),
        "{stderr}"
    );
    let mirror = "apiVersion: v1
kind: Pod
metadata: {name: p4, annotations: {kubernetes.io/config.mirror: x}}
spec:
  nodeName: node2
  containers:
  - {name: c, image: busybox}
";
    let (ok, _, stderr) = kubectl_create(&cluster, &node1, mirror);
    assert!(!ok);
    assert!(
        stderr.contains(r#"node "node1" can only create pods with spec.nodeName set to itself"#),
        "{stderr}"
    );
    // A mirror pod may not reference Secrets (the ServiceAccount admission).
    let secretive = pod("p5", "node1", "mine").replace(
        "metadata: {name: p5}",
        "metadata: {name: p5, annotations: {kubernetes.io/config.mirror: x}}",
    );
    let (ok, _, stderr) = kubectl_create(&cluster, &node1, &secretive);
    assert!(!ok);
    assert!(
        stderr.contains(r#"pods "p5" is forbidden: a mirror pod may not reference secrets"#),
        "{stderr}"
    );

    // Tokens: only for its pods' ServiceAccounts, bound to those pods (NodeRestriction).
    let (ok, _, stderr) = kubectl_as(&cluster, &node1, &["create", "token", "default"]);
    assert!(!ok);
    assert!(
        stderr.contains(
            r#"serviceaccounts "default" is forbidden: node requested token not bound to a pod"#
        ),
        "{stderr}"
    );
    let bound_to = |pod: &str| {
        let uid = cluster.kubectl_ok(&["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"]);
        kubectl_as(
            &cluster,
            &node1,
            &[
                "create",
                "token",
                "default",
                "--bound-object-kind=Pod",
                &format!("--bound-object-name={pod}"),
                &format!("--bound-object-uid={uid}"),
            ],
        )
    };
    let (ok, _, stderr) = bound_to("p2");
    assert!(!ok);
    assert!(
        stderr.contains("node requested token bound to a pod scheduled on a different node"),
        "{stderr}"
    );
    let (ok, token, stderr) = bound_to("p1");
    assert!(ok && token.split('.').count() == 3, "{stderr}");

    // Leases: its own only.
    let lease = |name: &str| {
        format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {name}, namespace: kube-node-lease}}\nspec: {{holderIdentity: {name}}}\n"
        )
    };
    let (ok, _, stderr) = kubectl_create(&cluster, &node1, &lease("node1"));
    assert!(ok, "{stderr}");
    let (ok, _, stderr) = kubectl_create(&cluster, &node1, &lease("node2"));
    assert!(!ok);
    assert!(
        stderr.contains("can only access node lease with the same name as the requesting node"),
        "{stderr}"
    );
    // Nothing was left behind by the refusals.
    let nodes = cluster.kubectl_ok(&["get", "pods", "-o", "name"]);
    assert!(
        !nodes.contains("p3") && !nodes.contains("p4") && !nodes.contains("p5"),
        "{nodes}"
    );
}

/// `kubectl create -f -` of `manifest` with `kubeconfig`.
fn kubectl_create(cluster: &Cluster, kubeconfig: &Path, manifest: &str) -> (bool, String, String) {
    let output = cluster.kubectl_with_input(
        &[
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "create",
            "-f",
            "-",
        ],
        Some(manifest),
    );
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A kubeconfig that authenticates with `token` only.
fn token_kubeconfig(cluster: &Cluster, name: &str, token: &str) -> PathBuf {
    cluster.write(
        &format!("{name}.kubeconfig"),
        &format!(
            "apiVersion: v1
kind: Config
clusters:
- name: flotilla
  cluster: {{server: {server}, certificate-authority: {ca}}}
users:
- name: {name}
  user: {{token: {token}}}
contexts:
- name: {name}
  context: {{cluster: flotilla, user: {name}}}
current-context: {name}
",
            server = cluster.url(),
            ca = cluster.dir.path().join("state/pki/ca.crt").display(),
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_tokens_authenticate_until_their_objects_go() {
    let cluster = Cluster::start().await.unwrap();
    cluster.kubectl_ok(&["create", "namespace", "ci"]);
    cluster.kubectl_ok(&["create", "serviceaccount", "deployer", "-n", "ci"]);
    cluster.kubectl_ok(&[
        "create",
        "rolebinding",
        "deployer-view",
        "-n",
        "ci",
        "--clusterrole=view",
        "--serviceaccount=ci:deployer",
    ]);

    let token = cluster.kubectl_ok(&["create", "token", "deployer", "-n", "ci"]);
    let deployer = token_kubeconfig(&cluster, "deployer", token.trim());
    let (ok, whoami, stderr) = kubectl_as(
        &cluster,
        &deployer,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(whoami, "system:serviceaccount:ci:deployer");
    eventually(
        Duration::from_secs(10),
        "the binding is in force",
        || async {
            kubectl_as(&cluster, &deployer, &["get", "pods", "-n", "ci"])
                .0
                .then_some(())
        },
    )
    .await;
    let (ok, _, stderr) = kubectl_as(&cluster, &deployer, &["get", "secrets", "-n", "ci"]);
    assert!(
        !ok && stderr.contains(r#"User "system:serviceaccount:ci:deployer" cannot list resource "secrets" in API group "" in the namespace "ci""#),
        "{stderr}"
    );

    // Bad tokens: 401, nothing else.
    let header = "eyJhbGciOiJFUzI1NiJ9";
    for bad in [
        "not-a-token",
        "a.b.c",
        &format!("{header}.e30.AAAA"),
        &token.trim().replace('.', ".x"),
    ] {
        let forged = token_kubeconfig(&cluster, "forged", bad);
        let (ok, _, stderr) = kubectl_as(&cluster, &forged, &["get", "pods", "-n", "ci"]);
        assert!(!ok && stderr.contains("Unauthorized"), "{bad}: {stderr}");
    }
    let short = cluster.kubectl(&["create", "token", "deployer", "-n", "ci", "--duration=5m"]);
    let stderr = String::from_utf8_lossy(&short.stderr);
    assert!(
        stderr.contains("spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes"),
        "{stderr}"
    );
    let other_audience = cluster.kubectl_ok(&[
        "create",
        "token",
        "deployer",
        "-n",
        "ci",
        "--audience=vault",
    ]);
    let (ok, _, stderr) = kubectl_as(
        &cluster,
        &token_kubeconfig(&cluster, "vault", other_audience.trim()),
        &["get", "pods", "-n", "ci"],
    );
    assert!(
        !ok && stderr.contains("Unauthorized"),
        "a token for another audience: {stderr}"
    );

    // A token bound to a Secret dies with it; every token dies with its ServiceAccount.
    cluster.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "holder",
        "-n",
        "ci",
        "--from-literal=a=b",
    ]);
    let bound = cluster.kubectl_ok(&[
        "create",
        "token",
        "deployer",
        "-n",
        "ci",
        "--bound-object-kind=Secret",
        "--bound-object-name=holder",
    ]);
    let bound = token_kubeconfig(&cluster, "bound", bound.trim());
    assert!(kubectl_as(&cluster, &bound, &["get", "pods", "-n", "ci"]).0);
    cluster.kubectl_ok(&["delete", "secret", "holder", "-n", "ci"]);
    let (ok, _, stderr) = kubectl_as(&cluster, &bound, &["get", "pods", "-n", "ci"]);
    assert!(!ok && stderr.contains("Unauthorized"), "{stderr}");
    cluster.kubectl_ok(&["delete", "serviceaccount", "deployer", "-n", "ci"]);
    let (ok, _, stderr) = kubectl_as(&cluster, &deployer, &["get", "pods", "-n", "ci"]);
    assert!(!ok && stderr.contains("Unauthorized"), "{stderr}");

    // Every namespace has a default ServiceAccount and the cluster CA, and gets them back.
    let ca = std::fs::read_to_string(cluster.dir.path().join("state/pki/ca.crt")).unwrap();
    for _ in 0..2 {
        eventually(
            Duration::from_secs(10),
            "the namespace defaults",
            || async {
                let account = cluster.kubectl(&["get", "serviceaccount", "default", "-n", "ci"]);
                let root_ca = cluster.kubectl(&[
                    "get",
                    "configmap",
                    "kube-root-ca.crt",
                    "-n",
                    "ci",
                    "-o",
                    "jsonpath={.data.ca\\.crt}",
                ]);
                (account.status.success() && String::from_utf8_lossy(&root_ca.stdout) == ca)
                    .then_some(())
            },
        )
        .await;
        cluster.kubectl_ok(&["delete", "serviceaccount", "default", "-n", "ci"]);
        cluster.kubectl_ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "ci"]);
    }

    // The issuer's discovery documents.
    let jwks: serde_json::Value =
        serde_json::from_str(&cluster.kubectl_ok(&["get", "--raw", "/openid/v1/jwks"])).unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "ES256");
    let discovery: serde_json::Value = serde_json::from_str(&cluster.kubectl_ok(&[
        "get",
        "--raw",
        "/.well-known/openid-configuration",
    ]))
    .unwrap();
    assert_eq!(
        discovery["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
}
