//! The built-in local-path provisioner's node half (k3s ships rancher's local-path-provisioner
//! for the same job): each agent provisions the claims the scheduler placed on its node and
//! cleans up the volumes it made once they are deleted.
//!
//! - A claim is this node's to provision when the PV controller has handed it to
//!   [`PROVISIONER`] (`volume.kubernetes.io/storage-provisioner`) and the scheduler (or, for an
//!   Immediate class, the PV controller) picked this node (`volume.kubernetes.io/selected-node`).
//!   The agent makes `<root>/pvc-<uid>_<namespace>_<name>` first and then the PersistentVolume
//!   `pvc-<uid>`: a `local` volume with node affinity to this node, pre-bound to the claim, so
//!   a volume that exists always has its directory, and a missing directory later means its data
//!   is gone (the pod reports it; nothing recreates it empty).
//! - The volume carries the finalizer [`CLEANUP_FINALIZER`]; when it is deleted (the PV
//!   controller deletes a Released volume whose reclaim policy is Delete) the agent removes the
//!   directory and then the finalizer, so the object outlives its data by nothing and the data
//!   never outlives the object unnoticed.
//!
//! Deciding is [`plan`] over plain objects; [`run`] watches and acts.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt as _;
use k8s_openapi::{
    api::{
        core::v1::{PersistentVolume, PersistentVolumeClaim},
        storage::v1::StorageClass,
    },
    apimachinery::pkg::api::resource::Quantity,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt as _, reflector, watcher},
};
use serde_json::json;

use flotilla_apimachinery::volumes::HOSTNAME_LABEL;

use crate::pods::events::{self, Kind};

pub use flotilla_apimachinery::volumes::{
    BETA_STORAGE_PROVISIONER, LOCAL_PATH_CLEANUP as CLEANUP_FINALIZER,
    LOCAL_PATH_NODE as NODE_ANNOTATION, LOCAL_PATH_PROVISIONER as PROVISIONER, PROVISIONED_BY,
    SELECTED_NODE, STORAGE_PROVISIONER,
};
/// The component the events name.
const COMPONENT: &str = "flotilla.dev/local-path";
/// How often everything is looked at again even when nothing changed (failed attempts retry).
const RESYNC: Duration = Duration::from_secs(10);
/// The access modes a directory on one node can honour.
const SUPPORTED_MODES: [&str; 2] = ["ReadWriteOnce", "ReadWriteOncePod"];

/// What the agent does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Make the directory, then the volume (bound to `claim`).
    Provision {
        /// The claim (for events).
        claim: Arc<PersistentVolumeClaim>,
        /// The directory to make.
        dir: PathBuf,
        /// The volume to create.
        volume: Box<PersistentVolume>,
    },
    /// Tell the claim why it gets no volume (a ProvisioningFailed event).
    Refuse {
        /// The claim.
        claim: Arc<PersistentVolumeClaim>,
        /// Why.
        message: String,
    },
    /// Remove a deleted volume's directory, then its finalizer.
    CleanUp {
        /// The volume's name.
        volume: String,
        /// Its directory.
        dir: PathBuf,
        /// Its finalizers without ours.
        finalizers: Vec<String>,
        /// The resourceVersion the finalizers were read at.
        resource_version: String,
    },
}

/// What the node's provisioner should do, given every claim, volume and class.
pub fn plan(
    node: &str,
    root: &Path,
    claims: &[Arc<PersistentVolumeClaim>],
    volumes: &[Arc<PersistentVolume>],
    classes: &[Arc<StorageClass>],
) -> Vec<Action> {
    let existing: HashSet<&str> = volumes
        .iter()
        .filter_map(|v| v.metadata.name.as_deref())
        .collect();
    let classes: BTreeMap<&str, &StorageClass> = classes
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, &**c)))
        .collect();
    let mut actions = Vec::new();
    for claim in claims {
        if !is_ours_to_provision(node, claim) {
            continue;
        }
        let Some(uid) = claim.metadata.uid.as_deref() else {
            continue;
        };
        let name = volume_name(uid);
        if existing.contains(name.as_str()) {
            continue;
        }
        let class_name = claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            .unwrap_or_default();
        // The PV controller reports a missing class; nothing to provision from.
        let Some(class) = classes.get(class_name) else {
            continue;
        };
        match provisioned_volume(node, root, claim, class, &name) {
            Ok((dir, volume)) => actions.push(Action::Provision {
                claim: claim.clone(),
                dir,
                volume: Box::new(volume),
            }),
            Err(message) => actions.push(Action::Refuse {
                claim: claim.clone(),
                message: format!(
                    "failed to provision volume with StorageClass {class_name:?}: {message}"
                ),
            }),
        }
    }
    for volume in volumes {
        if let Some(action) = clean_up(node, root, volume) {
            actions.push(action);
        }
    }
    actions
}

/// The name of the volume provisioned for the claim with `uid` (upstream's `pvc-<uid>`).
pub fn volume_name(uid: &str) -> String {
    format!("pvc-{uid}")
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Whether `claim` waits for this node's provisioner.
fn is_ours_to_provision(node: &str, claim: &PersistentVolumeClaim) -> bool {
    let meta = &claim.metadata;
    let handed_to = annotation(meta, STORAGE_PROVISIONER)
        .or_else(|| annotation(meta, BETA_STORAGE_PROVISIONER));
    let unbound = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .is_none_or(str::is_empty);
    meta.deletion_timestamp.is_none()
        && unbound
        && handed_to == Some(PROVISIONER)
        && annotation(meta, SELECTED_NODE) == Some(node)
}

/// The directory and the volume for `claim` on this node, or why there is none.
fn provisioned_volume(
    node: &str,
    root: &Path,
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    name: &str,
) -> Result<(PathBuf, PersistentVolume), String> {
    let spec = claim.spec.clone().unwrap_or_default();
    let modes = spec.access_modes.clone().unwrap_or_default();
    if let Some(mode) = modes
        .iter()
        .find(|m| !SUPPORTED_MODES.contains(&m.as_str()))
    {
        return Err(format!(
            "access mode {mode} is not supported: a local-path volume is a directory on one node \
             (supported: ReadWriteOnce, ReadWriteOncePod)"
        ));
    }
    if spec.volume_mode.as_deref() == Some("Block") {
        return Err("volumeMode Block is not supported: a local-path volume is a directory".into());
    }
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .ok_or_else(|| "the claim requests no storage".to_owned())?;
    let namespace = claim.metadata.namespace.as_deref().unwrap_or("default");
    let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
    let dir = root.join(format!("{name}_{namespace}_{claim_name}"));
    let volume = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {PROVISIONED_BY: PROVISIONER, NODE_ANNOTATION: node},
            "finalizers": [CLEANUP_FINALIZER],
        },
        "spec": {
            "capacity": {"storage": Quantity::clone(&size)},
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": class.reclaim_policy.as_deref().unwrap_or("Delete"),
            "storageClassName": class.metadata.name,
            "volumeMode": "Filesystem",
            "mountOptions": class.mount_options,
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": namespace, "name": claim_name,
                "uid": claim.metadata.uid, "resourceVersion": claim.metadata.resource_version,
            },
            "local": {"path": dir.to_string_lossy()},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]},
            ]}]}},
        },
    }))
    .map_err(|err| format!("building the volume: {err}"))?;
    Ok((dir, volume))
}

/// The clean-up a deleted volume of this node needs, if any.
fn clean_up(node: &str, root: &Path, volume: &PersistentVolume) -> Option<Action> {
    let meta = &volume.metadata;
    let finalizers = meta.finalizers.clone().unwrap_or_default();
    if meta.deletion_timestamp.is_none()
        || !finalizers.iter().any(|f| f == CLEANUP_FINALIZER)
        || annotation(meta, NODE_ANNOTATION) != Some(node)
    {
        return None;
    }
    let path = volume.spec.as_ref()?.local.as_ref()?.path.clone();
    let dir = PathBuf::from(path);
    // Only ever a directory this provisioner made: one component below the root.
    let inside = dir.parent() == Some(root)
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("pvc-") && n != "." && n != "..");
    if !inside {
        tracing::warn!(volume = %volume.name_any(), dir = %dir.display(), "a local-path volume names a directory outside the provisioner's root; leaving it");
    }
    Some(Action::CleanUp {
        volume: meta.name.clone()?,
        dir: if inside { dir } else { PathBuf::new() },
        finalizers: finalizers
            .into_iter()
            .filter(|f| f != CLEANUP_FINALIZER)
            .collect(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
    })
}

/// Runs the node's provisioner until the task is dropped: volumes go in `root`.
pub async fn run(client: Client, node: String, root: PathBuf) {
    if let Err(err) = std::fs::create_dir_all(&root) {
        tracing::error!(root = %root.display(), "the local-path provisioner cannot make its root: {err}");
    }
    let (claims, claims_writer) = reflector::store::<PersistentVolumeClaim>();
    let (volumes, volumes_writer) = reflector::store::<PersistentVolume>();
    let (classes, classes_writer) = reflector::store::<StorageClass>();
    let claim_events = reflector::reflector(
        claims_writer,
        watcher(Api::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ());
    let volume_events = reflector::reflector(
        volumes_writer,
        watcher(Api::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ());
    let class_events = reflector::reflector(
        classes_writer,
        watcher(Api::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map(|_| ());
    let mut changes = std::pin::pin!(futures::stream::select(
        futures::stream::select(claim_events, volume_events),
        class_events
    ));
    let mut resync = tokio::time::interval(RESYNC);
    let mut refused: HashSet<(String, String)> = HashSet::new();
    let mut provisioning = Provisioner {
        client,
        node,
        refused: &mut refused,
    };
    let ready = futures::future::join3(
        claims.wait_until_ready(),
        volumes.wait_until_ready(),
        classes.wait_until_ready(),
    );
    tokio::pin!(ready);
    // Drive the watches until all three have listed once.
    loop {
        tokio::select! {
            _ = &mut ready => break,
            Some(()) = changes.next() => {}
        }
    }
    loop {
        let actions = plan(
            &provisioning.node,
            &root,
            &claims.state(),
            &volumes.state(),
            &classes.state(),
        );
        for action in actions {
            provisioning.act(action).await;
        }
        tokio::select! {
            Some(()) = changes.next() => {
                // Take what else arrived at once, so a burst is one pass.
                while let Some(Some(())) = futures::FutureExt::now_or_never(changes.next()) {}
            }
            _ = resync.tick() => {}
        }
    }
}

struct Provisioner<'a> {
    client: Client,
    node: String,
    /// (claim uid, message) already reported, so each refusal is one event.
    refused: &'a mut HashSet<(String, String)>,
}

impl Provisioner<'_> {
    async fn act(&mut self, action: Action) {
        match action {
            Action::Provision { claim, dir, volume } => self.provision(&claim, &dir, *volume).await,
            Action::Refuse { claim, message } => {
                let key = (
                    claim.metadata.uid.clone().unwrap_or_default(),
                    message.clone(),
                );
                if self.refused.insert(key) {
                    events::record_about(
                        &self.client,
                        &self.node,
                        COMPONENT,
                        &*claim,
                        Kind::Warning,
                        "ProvisioningFailed",
                        message,
                    );
                }
            }
            Action::CleanUp {
                volume,
                dir,
                finalizers,
                resource_version,
            } => {
                self.clean_up(&volume, &dir, finalizers, &resource_version)
                    .await;
            }
        }
    }

    async fn provision(
        &mut self,
        claim: &PersistentVolumeClaim,
        dir: &Path,
        volume: PersistentVolume,
    ) {
        let name = volume.name_any();
        let warn = |message: String| {
            events::record_about(
                &self.client,
                &self.node,
                COMPONENT,
                claim,
                Kind::Warning,
                "ProvisioningFailed",
                message,
            );
        };
        if let Err(err) = make_volume_dir(dir) {
            warn(format!(
                "failed to provision volume {name}: creating {}: {err}",
                dir.display()
            ));
            return;
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &volume).await {
            Ok(_) => {
                tracing::info!(volume = %name, dir = %dir.display(), claim = %format!("{}/{}", claim.namespace().unwrap_or_default(), claim.name_any()), "provisioned a local-path volume");
                events::record_about(
                    &self.client,
                    &self.node,
                    COMPONENT,
                    claim,
                    Kind::Normal,
                    "ProvisioningSucceeded",
                    format!("Successfully provisioned volume {name}"),
                );
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(err) => warn(format!("failed to provision volume {name}: {err}")),
        }
    }

    async fn clean_up(
        &mut self,
        volume: &str,
        dir: &Path,
        finalizers: Vec<String>,
        resource_version: &str,
    ) {
        if !dir.as_os_str().is_empty() {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {
                    tracing::info!(volume, dir = %dir.display(), "deleted a local-path volume's data");
                }
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    tracing::warn!(volume, dir = %dir.display(), "deleting a local-path volume's data: {err}");
                    return;
                }
            }
        }
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        // The resourceVersion makes this a compare-and-swap: a finalizer added meanwhile stays.
        let patch =
            json!({"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}});
        if let Err(err) = api
            .patch(volume, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(volume, "removing the local-path finalizer: {err}");
        }
    }
}

/// Makes a volume's directory, writable by whatever user the pod runs as (as
/// local-path-provisioner does: the pod owns its data, not the node).
fn make_volume_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (project rule).
mod tests {
    use super::*;

    fn claim(annotations: serde_json::Value, modes: &[&str]) -> Arc<PersistentVolumeClaim> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "data", "namespace": "shop", "uid": "u1", "annotations": annotations},
                "spec": {"accessModes": modes, "storageClassName": "local-path",
                         "resources": {"requests": {"storage": "1Gi"}}},
            }))
            .unwrap(),
        )
    }

    fn class() -> Arc<StorageClass> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": "local-path"}, "provisioner": PROVISIONER,
                "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
            }))
            .unwrap(),
        )
    }

    fn handed(node: &str) -> serde_json::Value {
        json!({STORAGE_PROVISIONER: PROVISIONER, SELECTED_NODE: node})
    }

    #[test]
    fn a_claim_placed_here_gets_a_directory_and_a_prebound_volume() {
        let root = Path::new("/srv/lp");
        let actions = plan(
            "n1",
            root,
            &[claim(handed("n1"), &["ReadWriteOnce"])],
            &[],
            &[class()],
        );
        let [Action::Provision { dir, volume, .. }] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert_eq!(dir, &root.join("pvc-u1_shop_data"));
        let v = serde_json::to_value(volume).unwrap();
        assert_eq!(v["metadata"]["name"], "pvc-u1");
        assert_eq!(v["spec"]["claimRef"]["uid"], "u1");
        assert_eq!(v["spec"]["local"]["path"], "/srv/lp/pvc-u1_shop_data");
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(v["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
            json!(["n1"])
        );
        assert_eq!(v["metadata"]["finalizers"], json!([CLEANUP_FINALIZER]));
    }

    #[test]
    fn only_this_nodes_unprovisioned_claims_are_taken() {
        let root = Path::new("/srv/lp");
        let elsewhere = claim(handed("n2"), &["ReadWriteOnce"]);
        let unhanded = claim(json!({SELECTED_NODE: "n1"}), &["ReadWriteOnce"]);
        assert!(plan("n1", root, &[elsewhere, unhanded], &[], &[class()]).is_empty());
        let existing: Arc<PersistentVolume> =
            Arc::new(serde_json::from_value(json!({"metadata": {"name": "pvc-u1"}})).unwrap());
        assert!(
            plan(
                "n1",
                root,
                &[claim(handed("n1"), &["ReadWriteOnce"])],
                &[existing],
                &[class()]
            )
            .is_empty()
        );
        let shared = plan(
            "n1",
            root,
            &[claim(handed("n1"), &["ReadWriteMany"])],
            &[],
            &[class()],
        );
        let [Action::Refuse { message, .. }] = shared.as_slice() else {
            panic!("{shared:?}");
        };
        assert!(message.starts_with("failed to provision volume with StorageClass \"local-path\": access mode ReadWriteMany is not supported"));
    }

    #[test]
    fn deleted_volumes_of_this_node_are_cleaned_only_inside_the_root() {
        let root = Path::new("/srv/lp");
        let volume = |path: &str, node: &str| -> Arc<PersistentVolume> {
            Arc::new(
                serde_json::from_value(json!({
                    "metadata": {"name": "pvc-u1", "resourceVersion": "7",
                                 "deletionTimestamp": "2026-01-01T00:00:00Z",
                                 "annotations": {NODE_ANNOTATION: node},
                                 "finalizers": ["kubernetes.io/pv-protection", CLEANUP_FINALIZER]},
                    "spec": {"local": {"path": path}},
                }))
                .unwrap(),
            )
        };
        let actions = plan(
            "n1",
            root,
            &[],
            &[volume("/srv/lp/pvc-u1_shop_data", "n1")],
            &[],
        );
        assert_eq!(
            actions,
            [Action::CleanUp {
                volume: "pvc-u1".into(),
                dir: root.join("pvc-u1_shop_data"),
                finalizers: vec!["kubernetes.io/pv-protection".into()],
                resource_version: "7".into(),
            }]
        );
        assert!(
            plan(
                "n2",
                root,
                &[],
                &[volume("/srv/lp/pvc-u1_shop_data", "n1")],
                &[]
            )
            .is_empty()
        );
        let outside = plan("n1", root, &[], &[volume("/etc", "n1")], &[]);
        let [Action::CleanUp { dir, .. }] = outside.as_slice() else {
            panic!("{outside:?}");
        };
        assert_eq!(dir, &PathBuf::new(), "nothing outside the root is removed");
    }
}
