//! Every installed kubectl (1.27 to 1.33) runs the same generator and editing commands against
//! the API server. kubectl 1.32 and later send protobuf request bodies and ask for protobuf
//! answers, older ones JSON: both wires are exercised with the clients people use.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::path::PathBuf;

use crate::common::Cluster;

/// The kubectl versions installed beside the binary `kubectl` resolves to.
pub(crate) fn installed_kubectls() -> Vec<(String, PathBuf)> {
    let kubectl = which::which("kubectl").expect("kubectl on PATH");
    let dir = std::fs::canonicalize(kubectl)
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let versions: Vec<(String, PathBuf)> = (27..=33)
        .map(|minor| format!("1.{minor}"))
        .map(|version| {
            let path = dir.join(format!("kubectl.{version}"));
            (version, path)
        })
        .collect();
    for (version, path) in &versions {
        assert!(
            path.is_file(),
            "kubectl {version} is missing at {}; every machine of this kind has 1.27 to 1.33",
            path.display()
        );
    }
    versions
}

/// One kubectl version against the test's cluster, in a namespace of its own.
struct Kubectl<'a> {
    cluster: &'a Cluster,
    version: String,
    binary: String,
    namespace: String,
    /// Each version its own discovery and OpenAPI cache, as on a machine with one kubectl.
    cache: String,
}

impl Kubectl<'_> {
    /// Runs a command (with `-n` when `namespaced`) and returns its stdout, whether it failed or not.
    fn output(&self, args: &[&str], namespaced: bool) -> std::process::Output {
        // The namespace first: arguments after `--` belong to the container's command.
        let mut full: Vec<&str> = Vec::new();
        if namespaced {
            full.extend(["-n", self.namespace.as_str()]);
        }
        full.push(&self.cache);
        full.extend(args);
        self.cluster.kubectl_binary(&self.binary, &full, None)
    }

    /// Runs a command that must succeed.
    fn run(&self, args: &[&str], namespaced: bool) -> String {
        let output = self.output(args, namespaced);
        assert!(
            output.status.success(),
            "kubectl {} {} failed: {}{}",
            self.version,
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs a namespaced command that must succeed.
    fn run_ns(&self, args: &[&str]) -> String {
        self.run(args, true)
    }

    /// `kubectl get <kind> <name> -o jsonpath=<template>` in the namespace.
    fn jsonpath(&self, kind: &str, name: &str, template: &str) -> String {
        self.run_ns(&["get", kind, name, "-o", &format!("jsonpath={template}")])
    }

    /// Polls a namespaced command until `done` accepts its stdout (20 s at most).
    async fn until(&self, what: &str, args: &[&str], done: impl Fn(&str) -> bool) -> String {
        crate::common::eventually(std::time::Duration::from_secs(20), what, || {
            let text = String::from_utf8_lossy(&self.output(args, true).stdout).into_owned();
            let finished = done(&text);
            async move { finished.then_some(text) }
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kubectl_runs_the_generator_and_editing_commands() {
    let cluster = Cluster::start().await.unwrap();
    for (version, binary) in installed_kubectls() {
        let namespace = format!("v{}", version.replace('.', "-"));
        let kubectl = Kubectl {
            cluster: &cluster,
            cache: format!(
                "--cache-dir={}",
                cluster.dir.path().join(&namespace).display()
            ),
            binary: binary.to_string_lossy().into_owned(),
            version,
            namespace,
        };
        let (ns, version) = (&kubectl.namespace, &kubectl.version);
        let out = kubectl.run(&["create", "namespace", ns], false);
        assert!(out.contains(&format!("namespace/{ns} created")), "{out}");

        kubectl.run_ns(&[
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
        ]);
        kubectl.run_ns(&[
            "create",
            "configmap",
            "settings",
            "--from-literal=mode=prod",
        ]);
        kubectl.run_ns(&[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=s3cret",
        ]);
        kubectl.run_ns(&["create", "service", "clusterip", "backend", "--tcp=80:8080"]);
        kubectl.run_ns(&[
            "create",
            "job",
            "once",
            "--image=busybox:1.36",
            "--",
            "echo",
            "hi",
        ]);
        kubectl.run_ns(&[
            "create",
            "cronjob",
            "nightly",
            "--image=busybox:1.36",
            "--schedule=0 3 * * *",
            "--",
            "echo",
            "hi",
        ]);
        kubectl.run_ns(&["run", "solo", "--image=nginx:1.27", "--labels=app=solo"]);
        kubectl.run_ns(&[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=8080",
        ]);
        kubectl.run_ns(&["scale", "deployment", "web", "--replicas=3"]);
        kubectl.run_ns(&["set", "image", "deployment/web", "nginx=nginx:1.28"]);
        kubectl.run_ns(&["label", "deployment", "web", "tier=frontend"]);
        kubectl.run_ns(&["annotate", "deployment", "web", "owner=team-a"]);

        // What the commands wrote, read back.
        let secret = kubectl.jsonpath("secret", "creds", "{.data.password}");
        assert_eq!(secret, "czNjcmV0", "kubectl {version}");
        let spec = kubectl.jsonpath("deployment", "web", "{.spec.replicas} {.spec.template.spec.containers[0].image} {.metadata.labels.tier} {.metadata.annotations.owner}");
        assert_eq!(spec, "3 nginx:1.28 frontend team-a", "kubectl {version}");
        let ports = kubectl.jsonpath(
            "service",
            "web",
            "{.spec.ports[0].port}/{.spec.ports[0].targetPort} {.spec.selector.app}",
        );
        assert_eq!(ports, "80/8080 web", "kubectl {version}");
        let schedule = kubectl.jsonpath("cronjob", "nightly", "{.spec.schedule}");
        assert_eq!(schedule, "0 3 * * *");

        // The Deployment controller keeps revisions, so history and undo work.
        let history = kubectl
            .until(
                "two revisions of deployment/web",
                &["rollout", "history", "deployment/web"],
                |text| text.contains("\n2 "),
            )
            .await;
        assert!(history.contains("\n1 "), "{history}");
        kubectl.run_ns(&["rollout", "undo", "deployment/web"]);
        kubectl
            .until(
                "the image of revision 1 back",
                &[
                    "get",
                    "deployment",
                    "web",
                    "-o",
                    "jsonpath={.spec.template.spec.containers[0].image}",
                ],
                |image| image == "nginx:1.27",
            )
            .await;

        // Client-side apply three-way merges lists by their merge keys (kubectl 1.27 and 1.28
        // read them from /openapi/v2): a container added by `kubectl set env` survives a
        // re-apply that changes only the image.
        let manifest = |image: &str| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: api, namespace: {ns}}}\n\
                 spec:\n  selector: {{matchLabels: {{app: api}}}}\n  template:\n    metadata: {{labels: {{app: api}}}}\n    \
                 spec:\n      containers:\n      - {{name: api, image: {image}}}\n"
            )
        };
        let first = cluster.write(&format!("{ns}-api-1.yaml"), &manifest("api:1"));
        kubectl.run(&["apply", "-f", &first.to_string_lossy()], false);
        kubectl.run_ns(&["set", "env", "deployment/api", "MODE=blue"]);
        let second = cluster.write(&format!("{ns}-api-2.yaml"), &manifest("api:2"));
        kubectl.run(&["apply", "-f", &second.to_string_lossy()], false);
        let applied = kubectl.jsonpath("deployment", "api", "{.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].value}");
        assert_eq!(applied, "api:2 blue", "kubectl {version}");

        // Server-side apply of the same manifest: kubectl first moves the client-side apply
        // manager's fields to its own apply entry (a JSON patch of managedFields), then applies.
        kubectl.run(
            &["apply", "--server-side", "-f", &second.to_string_lossy()],
            false,
        );
        let managers_of_api = || {
            kubectl.run_ns(&[
                "get",
                "deployment",
                "api",
                "--show-managed-fields",
                "-o",
                "jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation} {end}",
            ])
        };
        let managers = managers_of_api();
        assert!(
            managers.contains("kubectl/Apply") && !managers.contains("kubectl-client-side-apply"),
            "kubectl {version}: {managers}"
        );
        // A second manager changing the image kubectl applied conflicts, until it forces.
        let third = cluster.write(&format!("{ns}-api-3.yaml"), &manifest("api:3"));
        let third = third.to_string_lossy();
        let conflict = kubectl.output(
            &[
                "apply",
                "--server-side",
                "--field-manager=other",
                "-f",
                &third,
            ],
            false,
        );
        let stderr = String::from_utf8_lossy(&conflict.stderr);
        assert!(
            !conflict.status.success()
                && stderr.contains(
                    r#"Apply failed with 1 conflict: conflict with "kubectl": .spec.template.spec.containers[name="api"].image"#
                ),
            "kubectl {version}: {stderr}"
        );
        kubectl.run(
            &[
                "apply",
                "--server-side",
                "--field-manager=other",
                "--force-conflicts",
                "-f",
                &third,
            ],
            false,
        );
        let image = kubectl.jsonpath("deployment", "api", "{.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].env[0].value}");
        assert_eq!(image, "api:3 blue", "kubectl {version}");
        let managers = managers_of_api();
        assert!(
            managers.contains("other/Apply") && managers.contains("kubectl/Apply"),
            "kubectl {version}: {managers}"
        );

        // rollout status watches the Deployment (a protobuf watch for 1.32+). With no kubelet
        // here pods never become ready, so it is checked at zero replicas: scaling to 0 in the
        // middle of the stuck rollout must empty every ReplicaSet (upstream's proportional
        // scaling), after which the rollout is complete.
        kubectl.run_ns(&["scale", "deployment", "web", "--replicas=0"]);
        let status = kubectl.run_ns(&["rollout", "status", "deployment/web", "--timeout=60s"]);
        assert!(
            status.contains("successfully rolled out"),
            "kubectl {version}: {status}"
        );

        let explained = kubectl.run(&["explain", "deployment.spec.strategy"], false);
        assert!(
            explained.contains("rollingUpdate"),
            "kubectl {version}: {explained}"
        );

        kubectl.run_ns(&["delete", "deployment", "web", "--wait=false"]);
        kubectl.run_ns(&["delete", "pod", "solo", "--wait=false"]);
        kubectl.run(&["delete", "namespace", ns, "--wait=false"], false);
    }
}

/// kubectl 1.33 really speaks protobuf to Flotilla (request bodies and answers), so the test
/// above covers that wire and not a JSON fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_sends_and_receives_protobuf() {
    let cluster = Cluster::start().await.unwrap();
    let (_, binary) = installed_kubectls().pop().unwrap();
    let output = cluster.kubectl_binary(
        &binary.to_string_lossy(),
        &["create", "namespace", "wire", "-v=8"],
        None,
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf")
            || log.contains("\"Content-Type\"=\"application/vnd.kubernetes.protobuf\""),
        "kubectl 1.33 did not send protobuf:\n{log}"
    );
}
