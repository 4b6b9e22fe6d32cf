//! Persistent storage end to end on two nodes, through the default `local-path` StorageClass:
//! a StatefulSet's pods get a claim each from its volumeClaimTemplates, provisioned by the agent
//! of the node the scheduler picked (WaitForFirstConsumer); a pod recreated under its name comes
//! back to its node and finds its data; scaling down and up keeps the claims (whenScaled:
//! Retain), and with whenScaled: Delete scaling down deletes them; a claim in use stays
//! Terminating; deleting the set deletes its claims, volumes and
//! directories (whenDeleted: Delete). A Deployment keeps a ReadWriteOnce claim's data across a
//! Recreate rollout. Bad input gets upstream's answers, and data deleted under a bound volume is
//! reported on the pod.

use std::{path::PathBuf, time::Duration, time::Instant};

use anyhow::{Context as _, ensure};
use serde_json::Value;

use crate::support::{Cluster, LocalCluster, eventually, pod_phase, require_root};

const NAMESPACE: &str = "storage";

const STATEFUL_SET: &str = "apiVersion: v1
kind: Namespace
metadata: {name: storage}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: storage}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: storage}
spec:
  serviceName: web
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: web}}
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Retain}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: docker.io/flotilla/testapp:v1
        imagePullPolicy: Never
        command: [\"sh\", \"-c\", \"[ -f /data/hostname ] || hostname > /data/hostname; echo start >> /data/starts; while true; do sleep 1; done\"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 64Mi}}
";

const DEPLOYMENT: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: journal, namespace: storage}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 16Mi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: writer, namespace: storage}
spec:
  replicas: 1
  strategy: {type: Recreate}
  selector: {matchLabels: {app: writer}}
  template:
    metadata: {labels: {app: writer}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: docker.io/flotilla/testapp:v1
        imagePullPolicy: Never
        command: [\"sh\", \"-c\", \"echo $(hostname) >> /journal/log; while true; do sleep 1; done\"]
        volumeMounts: [{name: journal, mountPath: /journal}]
      volumes:
      - name: journal
        persistentVolumeClaim: {claimName: journal}
";

const BAD_CLAIMS: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: classless, namespace: storage}
spec:
  storageClassName: nope
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: orphan, namespace: storage}
spec:
  containers:
  - name: app
    image: docker.io/flotilla/testapp:v1
    imagePullPolicy: Never
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: missing}
";

fn exec(cluster: &Cluster, pod: &str, command: &str) -> anyhow::Result<String> {
    cluster.kubectl_ok(&["-n", NAMESPACE, "exec", pod, "--", "sh", "-c", command])
}

fn pod(cluster: &Cluster, name: &str) -> anyhow::Result<Value> {
    cluster.json(&["-n", NAMESPACE, "get", "pod", name])
}

/// Waits until the pods are Running (each a new one when its old uid is given).
async fn running(cluster: &Cluster, names: &[&str], not_uid: Option<&str>) -> anyhow::Result<()> {
    for name in names {
        eventually(Duration::from_secs(90), &format!("{name} Running"), || {
            let pod = pod(cluster, name)?;
            let fresh = not_uid.is_none_or(|old| pod["metadata"]["uid"] != old);
            Ok((fresh && pod_phase(&pod) == "Running").then_some(()))
        })
        .await?;
    }
    Ok(())
}

/// The events about `kind` `name` in the namespace, as "reason: message" lines.
fn events(cluster: &Cluster, kind: &str, name: &str) -> anyhow::Result<Vec<String>> {
    let selector = format!("involvedObject.kind={kind},involvedObject.name={name}");
    let list = cluster.json(&[
        "-n",
        NAMESPACE,
        "get",
        "events",
        "--field-selector",
        &selector,
    ])?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}: {}",
                e["reason"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default()
            )
        })
        .collect())
}

/// The directory of the volume bound to a claim.
fn claim_dir(cluster: &Cluster, claim: &str) -> anyhow::Result<PathBuf> {
    let claim = cluster.json(&["-n", NAMESPACE, "get", "pvc", claim])?;
    let volume = claim["spec"]["volumeName"]
        .as_str()
        .context("unbound claim")?;
    let volume = cluster.json(&["get", "pv", volume])?;
    Ok(PathBuf::from(
        volume["spec"]["local"]["path"]
            .as_str()
            .context("no local path")?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_keep_data_where_their_pods_go() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 2).await?;
    let cluster = &local.cluster;

    // The default class is there.
    let classes = cluster.kubectl_ok(&["get", "storageclass"])?;
    ensure!(
        classes.contains("local-path (default)") && classes.contains("WaitForFirstConsumer"),
        "kubectl get storageclass: {classes}"
    );

    cluster.apply("web.yaml", STATEFUL_SET)?;
    running(cluster, &["web-0", "web-1", "web-2"], None).await?;
    eprintln!("3 stateful pods Running after {:?}", started.elapsed());
    let claims = cluster.kubectl_ok(&["-n", NAMESPACE, "get", "pvc"])?;
    for name in ["data-web-0", "data-web-1", "data-web-2"] {
        ensure!(
            claims
                .lines()
                .any(|l| l.starts_with(name) && l.contains("Bound") && l.contains("local-path")),
            "kubectl get pvc: {claims}"
        );
    }
    let volumes = cluster.kubectl_ok(&["get", "pv"])?;
    ensure!(
        volumes.contains("Delete") && volumes.contains("storage/data-web-1"),
        "kubectl get pv: {volumes}"
    );
    for name in ["web-0", "web-1", "web-2"] {
        let written = exec(cluster, name, "cat /data/hostname")?;
        ensure!(written.trim() == name, "{name} wrote {written:?}");
    }
    let dir = claim_dir(cluster, "data-web-1")?;
    ensure!(
        std::fs::read_to_string(dir.join("hostname"))?.trim() == "web-1",
        "the volume's directory on the node holds the data"
    );

    // A pod deleted comes back to its volume's node and reads the same file.
    let before = pod(cluster, "web-1")?;
    let node = before["spec"]["nodeName"].clone();
    cluster.kubectl_ok(&["-n", NAMESPACE, "delete", "pod", "web-1"])?;
    running(cluster, &["web-1"], before["metadata"]["uid"].as_str()).await?;
    let after = pod(cluster, "web-1")?;
    ensure!(
        after["spec"]["nodeName"] == node,
        "web-1 moved from {node} to {}",
        after["spec"]["nodeName"]
    );
    ensure!(
        exec(cluster, "web-1", "cat /data/hostname")?.trim() == "web-1",
        "web-1 lost its data"
    );
    ensure!(
        exec(cluster, "web-1", "wc -l < /data/starts")?.trim() == "2",
        "web-1 started twice on one volume"
    );

    // Scale to 1 and back: the claims stay (whenScaled: Retain) and the data comes back.
    cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "scale",
        "statefulset",
        "web",
        "--replicas=1",
    ])?;
    eventually(Duration::from_secs(60), "web-1 and web-2 gone", || {
        let pods = cluster.json(&["-n", NAMESPACE, "get", "pods", "-l", "app=web"])?;
        Ok((pods["items"].as_array().map_or(0, Vec::len) == 1).then_some(()))
    })
    .await?;
    let claims = cluster.kubectl_ok(&["-n", NAMESPACE, "get", "pvc", "-o", "name"])?;
    ensure!(
        claims.contains("data-web-2"),
        "the scaled-down pod's claim went: {claims}"
    );
    cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "scale",
        "statefulset",
        "web",
        "--replicas=3",
    ])?;
    running(cluster, &["web-1", "web-2"], None).await?;
    ensure!(
        exec(cluster, "web-2", "cat /data/hostname")?.trim() == "web-2",
        "web-2 lost its data"
    );
    ensure!(
        exec(cluster, "web-2", "wc -l < /data/starts")?.trim() == "2",
        "web-2 got a new volume"
    );
    eprintln!(
        "scaled down and up with data kept after {:?}",
        started.elapsed()
    );

    // With whenScaled: Delete, scaling down deletes the condemned pod's claim, volume and data.
    let web_2_dir = claim_dir(cluster, "data-web-2")?;
    let policy = r#"{"spec": {"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete"}}}"#;
    cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "patch",
        "statefulset",
        "web",
        "--type=merge",
        "-p",
        policy,
    ])?;
    cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "scale",
        "statefulset",
        "web",
        "--replicas=2",
    ])?;
    eventually(
        Duration::from_secs(60),
        "web-2's claim, volume and data gone",
        || {
            let claims = cluster.kubectl_ok(&["-n", NAMESPACE, "get", "pvc", "-o", "name"])?;
            let volumes = cluster.json(&["get", "pv"])?.to_string();
            let gone = !claims.contains("data-web-2")
                && claims.contains("data-web-1")
                && !volumes.contains("data-web-2")
                && !web_2_dir.exists();
            Ok(gone.then_some(()))
        },
    )
    .await?;

    // A claim in use stays Terminating.
    cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "delete",
        "pvc",
        "data-web-0",
        "--wait=false",
    ])?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let claim = cluster.json(&["-n", NAMESPACE, "get", "pvc", "data-web-0"])?;
    ensure!(
        claim["metadata"]["deletionTimestamp"].is_string()
            && claim["metadata"]["finalizers"]
                == serde_json::json!(["kubernetes.io/pvc-protection"]),
        "a claim in use: {}",
        claim["metadata"]
    );
    ensure!(
        pod_phase(&pod(cluster, "web-0")?) == "Running",
        "web-0 kept running"
    );

    // Deleting the set deletes its claims (whenDeleted: Delete), their volumes and directories.
    let dirs: Vec<PathBuf> = ["data-web-0", "data-web-1"]
        .iter()
        .map(|c| claim_dir(cluster, c))
        .collect::<anyhow::Result<_>>()?;
    cluster.kubectl_ok(&["-n", NAMESPACE, "delete", "statefulset", "web"])?;
    eventually(
        Duration::from_secs(90),
        "claims, volumes and directories gone",
        || {
            let claims = cluster.json(&["-n", NAMESPACE, "get", "pvc"])?;
            let volumes = cluster.json(&["get", "pv"])?;
            let gone = claims["items"].as_array().is_some_and(Vec::is_empty)
                && volumes["items"].as_array().is_some_and(Vec::is_empty)
                && dirs.iter().all(|d| !d.exists());
            Ok(gone.then_some(()))
        },
    )
    .await?;
    eprintln!("the set's storage deleted after {:?}", started.elapsed());

    // A Deployment keeps a ReadWriteOnce claim's data across a Recreate rollout.
    cluster.apply("writer.yaml", DEPLOYMENT)?;
    let first = eventually(Duration::from_secs(90), "writer Running", || {
        let pods = cluster.json(&["-n", NAMESPACE, "get", "pods", "-l", "app=writer"])?;
        let items = pods["items"].as_array().cloned().unwrap_or_default();
        Ok(items
            .iter()
            .find(|p| pod_phase(p) == "Running")
            .and_then(|p| p["metadata"]["name"].as_str().map(str::to_owned)))
    })
    .await?;
    cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "set",
        "env",
        "deployment/writer",
        "ROUND=2",
    ])?;
    let second = eventually(
        Duration::from_secs(90),
        "the rolled-out writer Running",
        || {
            let pods = cluster.json(&["-n", NAMESPACE, "get", "pods", "-l", "app=writer"])?;
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            Ok(items
                .iter()
                .find(|p| pod_phase(p) == "Running" && p["metadata"]["name"] != first.as_str())
                .and_then(|p| p["metadata"]["name"].as_str().map(str::to_owned)))
        },
    )
    .await?;
    let log = eventually(
        Duration::from_secs(20),
        "both writers in the journal",
        || {
            let log = exec(cluster, &second, "cat /journal/log")?;
            Ok((log.lines().count() == 2).then_some(log))
        },
    )
    .await?;
    ensure!(
        log.lines().next() == Some(first.as_str()) && log.lines().nth(1) == Some(second.as_str()),
        "the journal after the rollout: {log:?}"
    );

    // Data deleted under a bound volume: the replacement pod reports it, nothing recreates it.
    let dir = claim_dir(cluster, "journal")?;
    std::fs::remove_dir_all(&dir)?;
    cluster.kubectl_ok(&["-n", NAMESPACE, "delete", "pod", &second, "--wait=false"])?;
    eventually(
        Duration::from_secs(60),
        "FailedMount for the deleted directory",
        || {
            let pods = cluster.json(&["-n", NAMESPACE, "get", "pods", "-l", "app=writer"])?;
            let items = pods["items"].as_array().cloned().unwrap_or_default();
            for p in items
                .iter()
                .filter(|p| p["metadata"]["name"] != second.as_str())
            {
                let name = p["metadata"]["name"].as_str().unwrap_or_default();
                if events(cluster, "Pod", name)?
                    .iter()
                    .any(|e| e.starts_with("FailedMount") && e.contains("does not exist"))
                {
                    return Ok(Some(()));
                }
            }
            Ok(None)
        },
    )
    .await?;
    ensure!(!dir.exists(), "the deleted directory was recreated");

    // Bad input: a missing class, a missing claim, invalid volumes.
    cluster.apply("bad.yaml", BAD_CLAIMS)?;
    eventually(
        Duration::from_secs(30),
        "ProvisioningFailed for the missing class",
        || {
            Ok(events(cluster, "PersistentVolumeClaim", "classless")?
                .iter()
                .any(|e| e == "ProvisioningFailed: storageclass.storage.k8s.io \"nope\" not found")
                .then_some(()))
        },
    )
    .await?;
    let claim = cluster.json(&["-n", NAMESPACE, "get", "pvc", "classless"])?;
    ensure!(
        claim["status"]["phase"] == "Pending",
        "the classless claim: {}",
        claim["status"]
    );
    eventually(Duration::from_secs(30), "the orphan pod unschedulable", || {
        let pod = pod(cluster, "orphan")?;
        let condition = pod["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "PodScheduled").cloned());
        Ok(condition
            .filter(|c| {
                c["status"] == "False"
                    && c["message"] == "0/2 nodes are available: persistentvolumeclaim \"missing\" not found."
            })
            .map(|_| ()))
    })
    .await?;
    let path = cluster.dir.path().join("bad-pv.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: bad}\nspec:\n  capacity: {storage: -1Gi}\n  accessModes: [ReadWriteOnce]\n  hostPath: {path: /srv/../etc}\n",
    )?;
    let refused = cluster.kubectl(&["create", "-f", &path.to_string_lossy()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success()
            && stderr.contains("spec.capacity[storage]")
            && stderr.contains("spec.hostPath.path"),
        "an invalid PV: {stderr}"
    );

    local.shutdown().await;
    eprintln!("done after {:?}", started.elapsed());
    Ok(())
}
