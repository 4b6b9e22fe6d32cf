//! PersistentVolumes, claims and StorageClasses through kubectl with the PV controller and no
//! nodes: hand-made volumes of an Immediate class bind to the smallest matching claim at once,
//! `kubectl get pv,pvc,sc` prints upstream's columns under the oldest and newest kubectl, an
//! unbindable claim says why in `kubectl describe`, and released volumes follow their reclaim
//! policy (Retain keeps, Delete without a deleter fails with upstream's VolumeFailedDelete).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use crate::common::{Cluster, eventually};

const MANIFEST: &str = "apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: manual}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: Immediate
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: small}
spec:
  storageClassName: manual
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  hostPath: {path: /srv/small}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: big}
spec:
  storageClassName: manual
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Delete
  hostPath: {path: /srv/big}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: default}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 512Mi}}
";

const HUGE: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: huge, namespace: default}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 10Gi}}
";

const SECOND: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: second, namespace: default}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
";

const DEFAULTED: &str = "apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: defaulted, namespace: default}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
";

fn jsonpath(cluster: &Cluster, what: &[&str], path: &str) -> String {
    let mut args = vec!["get"];
    args.extend(what);
    let path = format!("jsonpath={path}");
    args.extend(["-o", &path]);
    cluster.kubectl_ok(&args)
}

async fn wait_for(cluster: &Cluster, what: &[&str], path: &str, wanted: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("{what:?} {path} = {wanted}"),
        || {
            let got = jsonpath(cluster, what, path);
            async move { (got == wanted).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn volumes_bind_release_and_say_why() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    cluster.apply("volumes.yaml", MANIFEST);
    // The smallest matching volume, at once (Immediate).
    wait_for(
        &cluster,
        &["pvc", "data"],
        "{.status.phase}/{.spec.volumeName}",
        "Bound/small",
    )
    .await;
    wait_for(&cluster, &["pv", "small"], "{.status.phase}", "Bound").await;
    wait_for(&cluster, &["pv", "big"], "{.status.phase}", "Available").await;
    let claim = jsonpath(
        &cluster,
        &["pvc", "data"],
        "{.status.capacity.storage} {.metadata.finalizers}",
    );
    assert_eq!(claim, r#"1Gi ["kubernetes.io/pvc-protection"]"#);

    // Upstream's columns, under the oldest and the newest kubectl.
    let oldest_and_newest = crate::kubectl_versions::installed_kubectls()
        .into_iter()
        .filter(|(version, _)| version == "1.27" || version == "1.33");
    for (version, binary) in oldest_and_newest {
        let output = cluster.kubectl_binary(&binary.to_string_lossy(), &["get", "pv,pvc,sc"], None);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "kubectl {version}: {output:?}");
        assert!(
            text.contains("CAPACITY")
                && text.contains("RECLAIM POLICY")
                && text.contains("VOLUMEBINDINGMODE"),
            "kubectl {version} get pv,pvc,sc:\n{text}"
        );
        let small = text
            .lines()
            .find(|l| l.starts_with("persistentvolume/small"))
            .unwrap_or_default();
        let words: Vec<&str> = small.split_whitespace().collect();
        assert_eq!(
            words[1..6],
            ["1Gi", "RWO", "Retain", "Bound", "default/data"],
            "{small}"
        );
        assert!(
            text.contains("storageclass.storage.k8s.io/local-path (default)"),
            "{text}"
        );
    }

    // A claim nothing can serve stays Pending and says why.
    cluster.apply("huge.yaml", HUGE);
    eventually(Duration::from_secs(20), "FailedBinding in describe", || {
        let described = cluster.kubectl_ok(&["describe", "pvc", "huge"]);
        async move {
            described
                .contains("no persistent volumes available for this claim")
                .then_some(())
        }
    })
    .await;
    assert_eq!(
        jsonpath(&cluster, &["pvc", "huge"], "{.status.phase}"),
        "Pending"
    );

    // Retain: the released volume stays, Released.
    cluster.kubectl_ok(&["delete", "pvc", "data"]);
    wait_for(&cluster, &["pv", "small"], "{.status.phase}", "Released").await;
    // Delete without a deleter for hostPath: Failed, with upstream's event.
    cluster.apply("second.yaml", SECOND);
    wait_for(&cluster, &["pvc", "second"], "{.spec.volumeName}", "big").await;
    cluster.kubectl_ok(&["delete", "pvc", "second"]);
    wait_for(&cluster, &["pv", "big"], "{.status.phase}", "Failed").await;
    let message = jsonpath(&cluster, &["pv", "big"], "{.status.message}");
    assert_eq!(
        message,
        r#"error getting deleter volume plugin for volume "big": no deletable volume plugin matched"#
    );

    // A claim that names no class gets the default one and waits for its first consumer.
    cluster.apply("defaulted.yaml", DEFAULTED);
    assert_eq!(
        jsonpath(&cluster, &["pvc", "defaulted"], "{.spec.storageClassName}"),
        "local-path"
    );
    eventually(
        Duration::from_secs(20),
        "WaitForFirstConsumer in describe",
        || {
            let described = cluster.kubectl_ok(&["describe", "pvc", "defaulted"]);
            async move {
                described
                    .contains("waiting for first consumer to be created before binding")
                    .then_some(())
            }
        },
    )
    .await;
    Ok(())
}
