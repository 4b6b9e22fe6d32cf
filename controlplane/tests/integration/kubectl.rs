//! The real kubectl against a real control plane: the admin flows of issue 2.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::Cluster;

const APP: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web, tier: frontend, environment: production}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: flotilla/testapp:v1
        ports:
        - containerPort: 8080
        env:
        - name: MODE
          value: prod
      - name: sidecar
        image: busybox:1.36
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
  labels: {environment: qa, tier: frontend}
data:
  greeting: hello
"#;

fn jsonpath(cluster: &Cluster, args: &[&str], path: &str) -> String {
    let output = format!("jsonpath={path}");
    let mut all = args.to_vec();
    all.extend(["-o", &output]);
    cluster.kubectl_ok(&all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn apply_get_describe_and_selectors() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let manifest = cluster.write("app.yaml", APP);
    let manifest = manifest.to_string_lossy();
    let out = cluster.kubectl_ok(&["apply", "-f", &manifest]);
    for line in [
        "namespace/shop created",
        "deployment.apps/web created",
        "service/web created",
        "configmap/web-config created",
    ] {
        assert!(out.contains(line), "{out}");
    }

    let out = cluster.kubectl_ok(&[
        "get",
        "deploy,cm",
        "-n",
        "shop",
        "-l",
        "environment in (production, qa),tier in (frontend)",
    ]);
    assert!(out.contains("deployment.apps/web"), "{out}");
    assert!(out.contains("configmap/web-config"), "{out}");
    let out = cluster.kubectl_ok(&["get", "cm", "-n", "shop", "-l", "environment=production"]);
    assert!(!out.contains("web-config"), "{out}");

    let wide = cluster.kubectl_ok(&["get", "deploy", "web", "-n", "shop", "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert!(wide.contains("web,sidecar"), "{wide}");

    let json = cluster.kubectl_ok(&["get", "deploy", "web", "-n", "shop", "-o", "json"]);
    let object: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(object["spec"]["replicas"], 3);
    assert!(object["metadata"]["uid"].is_string());
    assert_eq!(object["metadata"]["generation"], 1);
    let yaml = cluster.kubectl_ok(&["get", "svc", "web", "-n", "shop", "-o", "yaml"]);
    assert!(yaml.contains("targetPort: 8080"), "{yaml}");

    let described = cluster.kubectl_ok(&["describe", "deploy", "web", "-n", "shop"]);
    assert!(
        described.contains("Replicas:               3 desired"),
        "{described}"
    );
    assert!(described.contains("sidecar:"), "{described}");

    let namespaces = cluster.kubectl_ok(&["get", "ns"]);
    for namespace in [
        "default",
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "shop",
    ] {
        assert!(namespaces.contains(namespace), "{namespaces}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reapply_label_annotate_scale_and_set_image() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let manifest = cluster.write("app.yaml", APP);
    cluster.kubectl_ok(&["apply", "-f", &manifest.to_string_lossy()]);
    // Someone else labels the deployment; the three-way merge of the next apply keeps it.
    cluster.kubectl_ok(&["label", "deploy", "web", "-n", "shop", "team=blue"]);
    cluster.kubectl_ok(&["annotate", "deploy", "web", "-n", "shop", "note=hi"]);

    let edited = APP
        .replace("replicas: 3", "replicas: 4")
        .replace("value: prod", "value: staging");
    let edited = cluster.write("edited.yaml", &edited);
    let out = cluster.kubectl_ok(&["apply", "-f", &edited.to_string_lossy()]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    assert!(out.contains("service/web unchanged"), "{out}");
    let args = ["get", "deploy", "web", "-n", "shop"];
    assert_eq!(jsonpath(&cluster, &args, "{.spec.replicas}"), "4");
    assert_eq!(jsonpath(&cluster, &args, "{.metadata.labels.team}"), "blue");
    assert_eq!(
        jsonpath(&cluster, &args, "{.metadata.annotations.note}"),
        "hi"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            &args,
            "{.spec.template.spec.containers[0].env[0].value}"
        ),
        "staging"
    );
    assert_eq!(jsonpath(&cluster, &args, "{.metadata.generation}"), "2");

    cluster.kubectl_ok(&["scale", "deploy", "web", "-n", "shop", "--replicas=6"]);
    assert_eq!(jsonpath(&cluster, &args, "{.spec.replicas}"), "6");
    cluster.kubectl_ok(&[
        "set",
        "image",
        "deploy/web",
        "-n",
        "shop",
        "web=flotilla/testapp:v2",
    ]);
    // Strategic merge by container name: the sidecar, the port and the env stay.
    assert_eq!(
        jsonpath(&cluster, &args, "{.spec.template.spec.containers[*].image}"),
        "flotilla/testapp:v2 busybox:1.36"
    );
    assert_eq!(
        jsonpath(
            &cluster,
            &args,
            "{.spec.template.spec.containers[0].ports[0].containerPort}"
        ),
        "8080"
    );
    // A label removed from the manifest is removed by the next apply, the foreign one stays.
    let no_tier = APP.replace(", tier: frontend, environment: production}", "}");
    let no_tier = cluster.write("no-tier.yaml", &no_tier);
    cluster.kubectl_ok(&["apply", "-f", &no_tier.to_string_lossy()]);
    assert_eq!(jsonpath(&cluster, &args, "{.metadata.labels.tier}"), "");
    assert_eq!(jsonpath(&cluster, &args, "{.metadata.labels.team}"), "blue");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cascading_deletion_and_watch() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let manifest = cluster.write("app.yaml", APP);
    cluster.kubectl_ok(&["apply", "-f", &manifest.to_string_lossy()]);
    let uid = jsonpath(
        &cluster,
        &["get", "deploy", "web", "-n", "shop"],
        "{.metadata.uid}",
    );

    // Another client's changes show up in `kubectl get -w`.
    let watch = tokio::process::Command::new("timeout")
        .args([
            "60",
            "kubectl",
            "get",
            "cm",
            "-n",
            "shop",
            "-w",
            "--output-watch-events",
        ])
        .env("KUBECONFIG", cluster.kubeconfig())
        .stdout(std::process::Stdio::piped())
        // Its own process group, so that ending it also ends kubectl (which holds stdout).
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let watch_group = watch.id().unwrap_or_default();
    let mut watch = watch;
    let stdout = watch.stdout.take().expect("piped stdout");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let seen = seen.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt as _;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                seen.lock().unwrap().push(line);
            }
        })
    };
    // Waits, bounded, until kubectl has printed `event` (the first two columns).
    let printed = |event: &'static str| {
        let seen = seen.clone();
        async move {
            for _ in 0..300 {
                let found = seen.lock().unwrap().iter().any(|line| {
                    line.split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" ")
                        == event
                });
                if found {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("kubectl get -w did not print {event:?} within 30 s");
        }
    };
    // Once the watch shows a marker, kubectl has listed and watches from that listing, so it
    // sees every later change.
    let marker = cluster.write("marker.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: marker, namespace: shop}\ndata: {a: b}\n");
    cluster.kubectl_ok(&["apply", "-f", &marker.to_string_lossy()]);
    printed("ADDED marker").await;

    // Orphan: the dependent stays, without its owner reference.
    let path = cluster.write("dep.yaml", &dependent("owned", &uid));
    cluster.kubectl_ok(&["apply", "-f", &path.to_string_lossy()]);
    cluster.kubectl_ok(&["delete", "deploy", "web", "-n", "shop", "--cascade=orphan"]);
    let refs = jsonpath(
        &cluster,
        &["get", "cm", "owned", "-n", "shop"],
        "{.metadata.ownerReferences}",
    );
    assert_eq!(refs, "", "owner reference removed");
    assert!(
        cluster
            .kubectl_err(&["get", "deploy", "web", "-n", "shop"])
            .contains("NotFound")
    );

    // Foreground: the dependent goes first, then the owner.
    cluster.kubectl_ok(&["apply", "-f", &manifest.to_string_lossy()]);
    let uid = jsonpath(
        &cluster,
        &["get", "deploy", "web", "-n", "shop"],
        "{.metadata.uid}",
    );
    let path = cluster.write("fg.yaml", &dependent("fg", &uid));
    cluster.kubectl_ok(&["apply", "-f", &path.to_string_lossy()]);
    cluster.kubectl_ok(&[
        "delete",
        "deploy",
        "web",
        "-n",
        "shop",
        "--cascade=foreground",
        "--wait=true",
        "--timeout=30s",
    ]);
    assert!(
        cluster
            .kubectl_err(&["get", "cm", "fg", "-n", "shop"])
            .contains("NotFound")
    );
    assert!(
        cluster
            .kubectl_err(&["get", "deploy", "web", "-n", "shop"])
            .contains("NotFound")
    );

    // Background (kubectl's default): the owner goes at once, the dependent right after.
    cluster.kubectl_ok(&["apply", "-f", &manifest.to_string_lossy()]);
    let uid = jsonpath(
        &cluster,
        &["get", "deploy", "web", "-n", "shop"],
        "{.metadata.uid}",
    );
    let path = cluster.write("bg.yaml", &dependent("bg", &uid));
    cluster.kubectl_ok(&["apply", "-f", &path.to_string_lossy()]);
    cluster.kubectl_ok(&["delete", "deploy", "web", "-n", "shop"]);
    let mut gone = false;
    for _ in 0..50 {
        if !cluster
            .kubectl(&["get", "cm", "bg", "-n", "shop"])
            .status
            .success()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the background cascade deleted the dependent");

    printed("DELETED bg").await;
    std::process::Command::new("kill")
        .args(["-TERM", "--", &format!("-{watch_group}")])
        .status()?;
    tokio::time::timeout(Duration::from_secs(30), watch.wait()).await??;
    tokio::time::timeout(Duration::from_secs(30), reader).await??;
    // Table output with an EVENT column: "ADDED   owned   1   0s".
    let stdout = seen.lock().unwrap().join("\n");
    let events: Vec<String> = stdout
        .lines()
        .map(|line| {
            line.split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for expected in ["ADDED owned", "ADDED fg", "DELETED fg", "DELETED bg"] {
        assert!(
            events.iter().any(|e| e == expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    Ok(())
}

/// A ConfigMap owned by the deployment `web` with `uid`.
fn dependent(name: &str, uid: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: shop\n  ownerReferences:\n  - apiVersion: apps/v1\n    kind: Deployment\n    name: web\n    uid: {uid}\ndata: {{a: b}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_manifests_get_clear_errors_and_nothing_is_stored() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let bad_name = cluster.write(
        "bad-name.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n  namespace: default\ndata: {a: b}\n",
    );
    let err = cluster.kubectl_err(&["apply", "-f", &bad_name.to_string_lossy()]);
    assert!(err.contains("is invalid"), "{err}");
    assert!(
        err.contains("metadata.name: Invalid value: \"Bad_Name\""),
        "{err}"
    );

    let unknown = cluster.write(
        "unknown.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n  namespace: default\nspec:\n  replicass: 2\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec:\n      containers: [{name: x, image: nginx}]\n",
    );
    let err = cluster.kubectl_err(&["apply", "-f", &unknown.to_string_lossy()]);
    assert!(err.contains("unknown field \"spec.replicass\""), "{err}");
    // Under fieldValidation=Warn the field is dropped and the server says so in a header
    // (a dry run: nothing is stored).
    let warned = cluster.write(
        "warned.yaml",
        &std::fs::read_to_string(&unknown)?.replace("name: x", "name: warned"),
    );
    let output = cluster.kubectl(&[
        "apply",
        "--validate=warn",
        "--dry-run=server",
        "-f",
        &warned.to_string_lossy(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: unknown field \"spec.replicass\""),
        "{stderr}"
    );

    let mismatch = cluster.write(
        "mismatch.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: mismatch\n  namespace: default\nspec:\n  selector: {matchLabels: {app: mismatch}}\n  template:\n    metadata: {labels: {app: other}}\n    spec:\n      containers: [{name: c, image: nginx}]\n",
    );
    let err = cluster.kubectl_err(&["apply", "-f", &mismatch.to_string_lossy()]);
    assert!(err.contains("does not match template `labels`"), "{err}");

    let malformed = cluster.write(
        "malformed.yaml",
        "apiVersion: v1\nkind: ConfigMap\ndata: [1, 2\n",
    );
    let err = cluster.kubectl_err(&["apply", "-f", &malformed.to_string_lossy()]);
    assert!(err.contains("yaml"), "{err}");

    let missing_ns = cluster.write(
        "missing-ns.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: nowhere\n",
    );
    let err = cluster.kubectl_err(&["apply", "-f", &missing_ns.to_string_lossy()]);
    assert!(err.contains("namespaces \"nowhere\" not found"), "{err}");

    let err = cluster.kubectl_err(&["get", "deploy", "-l", "environment in (production"]);
    assert!(err.contains("unable to parse"), "{err}");
    let err = cluster.kubectl_err(&["get", "pods", "--field-selector", "spec.bogus=1"]);
    assert!(
        err.contains("field label not supported: spec.bogus"),
        "{err}"
    );
    let err = cluster.kubectl_err(&["get", "pods", "nope"]);
    assert!(err.contains("pods \"nope\" not found"), "{err}");
    let err = cluster.kubectl_err(&["delete", "ns", "default"]);
    assert!(err.contains("may not be deleted"), "{err}");

    let listed = cluster.kubectl_ok(&["get", "cm,deploy", "-A", "-o", "name"]);
    assert!(
        !listed.contains("Bad_Name") && !listed.contains("/x") && !listed.contains("/mismatch"),
        "{listed}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_side_dry_run_stores_nothing() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let manifest = cluster.write("app.yaml", APP);
    cluster.kubectl_ok(&["apply", "-f", &manifest.to_string_lossy()]);
    let out = cluster.kubectl_ok(&[
        "scale",
        "deploy",
        "web",
        "-n",
        "shop",
        "--replicas=9",
        "--dry-run=server",
    ]);
    assert!(out.contains("server dry run"), "{out}");
    assert_eq!(
        jsonpath(
            &cluster,
            &["get", "deploy", "web", "-n", "shop"],
            "{.spec.replicas}"
        ),
        "3"
    );
    let out = cluster.kubectl_ok(&[
        "delete",
        "cm",
        "web-config",
        "-n",
        "shop",
        "--dry-run=server",
    ]);
    assert!(out.contains("server dry run"), "{out}");
    cluster.kubectl_ok(&["get", "cm", "web-config", "-n", "shop"]);
    Ok(())
}

const PRIORITY: &str = r#"apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
description: pods that matter
---
apiVersion: v1
kind: Pod
metadata: {name: important, namespace: default}
spec:
  priorityClassName: high
  containers: [{name: c, image: flotilla/testapp:v1}]
---
apiVersion: v1
kind: Pod
metadata: {name: ordinary, namespace: default}
spec:
  containers: [{name: c, image: flotilla/testapp:v1}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn priority_classes_set_pod_priorities() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    // The system classes exist from the start, in upstream's columns.
    let classes = cluster.kubectl_ok(&["get", "priorityclasses"]);
    let header: Vec<&str> = classes.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    );
    assert!(classes.contains("system-node-critical"), "{classes}");
    assert!(classes.contains("2000001000"), "{classes}");
    let refused = cluster.kubectl_err(&["delete", "pc", "system-cluster-critical"]);
    assert!(
        refused.contains("this is a system priority class and cannot be deleted"),
        "{refused}"
    );

    cluster.apply("priority.yaml", PRIORITY);
    let priority =
        |pod: &str| cluster.kubectl_ok(&["get", "pod", pod, "-o", "jsonpath={.spec.priority}"]);
    assert_eq!(priority("important"), "1000");
    assert_eq!(priority("ordinary"), "0");

    let unknown = "apiVersion: v1\nkind: Pod\nmetadata: {name: lost, namespace: default}\nspec:\n  priorityClassName: nope\n  containers: [{name: c, image: flotilla/testapp:v1}]\n";
    let path = cluster.write("lost.yaml", unknown);
    let err = cluster.kubectl_err(&["apply", "-f", &path.to_string_lossy()]);
    assert!(
        err.contains("no PriorityClass with name nope was found"),
        "{err}"
    );
    let reserved = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: huge}\nvalue: 2000000000\n";
    let path = cluster.write("huge.yaml", reserved);
    let err = cluster.kubectl_err(&["apply", "-f", &path.to_string_lossy()]);
    assert!(
        err.contains("maximum allowed value of a user defined priority is 1000000000"),
        "{err}"
    );
    // One global default at most.
    for (name, expect_ok) in [("first", true), ("second", false)] {
        let manifest = format!(
            "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {{name: {name}}}\nvalue: 10\nglobalDefault: true\n"
        );
        let path = cluster.write(&format!("{name}.yaml"), &manifest);
        let output = cluster.kubectl(&["apply", "-f", &path.to_string_lossy()]);
        assert_eq!(output.status.success(), expect_ok, "{output:?}");
        if !expect_ok {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.contains("PriorityClass first is already marked as default"),
                "{stderr}"
            );
        }
    }
    Ok(())
}

/// The versioned kubectl binaries beside the dispatcher `kubectl` resolves to (PLATFORM.md).
fn versioned_kubectl(version: &str) -> Option<std::path::PathBuf> {
    let dispatcher = which::which("kubectl").ok()?;
    let path = std::fs::canonicalize(dispatcher).ok()?;
    let candidate = path.parent()?.join(format!("kubectl.{version}"));
    candidate.exists().then_some(candidate)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_discovers_every_group_in_one_aggregated_round_trip() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let cache = tempfile::tempdir()?;
    let cache_dir = format!("--cache-dir={}", cache.path().display());
    // kubectl 1.33 (what the dispatcher picks for this server) asks /api and /apis for
    // apidiscovery.k8s.io/v2 and, answered, never fetches a group-version's resource list.
    let output = cluster.kubectl(&["api-resources", &cache_dir, "-v=6"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stderr}");
    for resource in [
        "deployments",
        "poddisruptionbudgets",
        "priorityclasses",
        "pods",
    ] {
        assert!(stdout.contains(resource), "{resource} not listed: {stdout}");
    }
    // kubectl -v=6 logs each request as `"Response" verb="GET" url="https://...`.
    let urls: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("verb=\"GET\""))
        .filter_map(|line| line.split("url=\"").nth(1)?.split('"').next())
        .collect();
    let per_group: Vec<&&str> = urls
        .iter()
        .filter(|url| url.contains("/apis/") || url.contains("/api/v1"))
        .collect();
    assert!(
        per_group.is_empty(),
        "kubectl fell back to per-group discovery: {per_group:?}"
    );
    assert!(
        urls.iter().any(|url| url.contains("/apis?")),
        "no aggregated request seen: {urls:?}"
    );

    // The oldest supported kubectl (v2beta1, or the legacy documents) lists the same.
    if let Some(kubectl) = versioned_kubectl("1.27") {
        let cache = tempfile::tempdir()?;
        let output = std::process::Command::new("timeout")
            .arg("60")
            .arg(kubectl)
            .args([
                "api-resources",
                &format!("--cache-dir={}", cache.path().display()),
            ])
            .env("KUBECONFIG", cluster.kubeconfig())
            .output()?;
        let listed = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            listed.contains("deployments") && listed.contains("poddisruptionbudgets"),
            "{listed}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_explain_reads_the_served_schemas() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let cache = tempfile::tempdir()?;
    let cache_dir = format!("--cache-dir={}", cache.path().display());
    let explained = cluster.kubectl_ok(&["explain", "deployment.spec.strategy", &cache_dir]);
    for expected in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "FIELD: strategy <DeploymentStrategy>",
        "DeploymentStrategy describes how to replace existing pods with new ones.",
        "rollingUpdate\t<RollingUpdateDeployment>",
    ] {
        assert!(
            explained.contains(expected),
            "no {expected:?} in:\n{explained}"
        );
    }
    let pdb = cluster.kubectl_ok(&["explain", "pdb.spec.minAvailable", &cache_dir]);
    assert!(pdb.contains("KIND:       PodDisruptionBudget"), "{pdb}");
    let err = cluster.kubectl_err(&["explain", "deployment.spec.nope", &cache_dir]);
    assert!(err.contains("field \"nope\" does not exist"), "{err}");
    Ok(())
}
