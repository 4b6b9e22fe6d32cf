//! PersistentVolumeClaim volumes: which directory on this node a pod's claim stands for.
//!
//! As kubelet's volume manager, a claim must be bound (`spec.volumeName`, phase Bound), not
//! being deleted, and its PersistentVolume must name the claim back; the volume's source must
//! be one this node mounts: `local` (the built-in local-path provisioner's, and an admin's
//! static local volumes) or `hostPath`. The messages are kubelet's `error processing PVC ...`.
//! Containers get the directory by a bind mount from the runtime, so nothing stays mounted on
//! the node when the pod goes (nor after an agent restart).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::{Api, Client};

/// The storage behind one claim, as the pod's volume uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedVolume {
    /// The PersistentVolume's name.
    pub volume_name: String,
    /// Its directory on this node.
    pub path: PathBuf,
    /// What the directory is: a `local` volume's must exist; a `hostPath` one gets kubelet's
    /// type check (its `type`).
    pub source: ClaimedSource,
}

/// The kind of volume source behind a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimedSource {
    /// `spec.local`: the path must exist.
    Local,
    /// `spec.hostPath` with its `type`.
    HostPath(String),
}

/// The names of the claims a pod's volumes use.
pub fn claim_names(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    let mut names: Vec<String> = volumes
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Fetches the claim `name` of the pod's namespace and its volume, and resolves them; the
/// error is kubelet's message, which fails only the volumes using this claim.
pub async fn fetch(client: &Client, namespace: &str, name: &str) -> Result<ClaimedVolume, String> {
    let processing = |why: String| format!("error processing PVC {namespace}/{name}: {why}");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let claim = match claims.get_opt(name).await {
        Ok(Some(claim)) => claim,
        Ok(None) => {
            return Err(processing(format!(
                "failed to fetch PVC from API server: persistentvolumeclaims \"{name}\" not found"
            )));
        }
        Err(err) => {
            return Err(processing(format!(
                "failed to fetch PVC from API server: {err}"
            )));
        }
    };
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let volume = if volume_name.is_empty() {
        None
    } else {
        let volumes: Api<PersistentVolume> = Api::all(client.clone());
        volumes.get_opt(&volume_name).await.map_err(|err| {
            processing(format!(
                "failed to fetch PV {volume_name:?} from API server: {err}"
            ))
        })?
    };
    resolve(&claim, volume.as_ref()).map_err(processing)
}

/// Decides what a claim gives its pod, from the claim and its volume (None: not found).
pub fn resolve(
    claim: &PersistentVolumeClaim,
    volume: Option<&PersistentVolume>,
) -> Result<ClaimedVolume, String> {
    if claim.metadata.deletion_timestamp.is_some() {
        return Err("can't start pod because PVC is being deleted".to_owned());
    }
    let volume_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    if volume_name.is_empty() || phase != Some("Bound") {
        return Err("PVC is not bound".to_owned());
    }
    let Some(volume) = volume else {
        return Err(format!(
            "failed to fetch PV {volume_name:?} from API server: persistentvolumes \"{volume_name}\" not found"
        ));
    };
    let claim_ref = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let bound_to_claim = claim_ref.is_some_and(|r| {
        r.name == claim.metadata.name
            && r.namespace == claim.metadata.namespace
            && (r.uid.is_none() || r.uid == claim.metadata.uid)
    });
    if !bound_to_claim {
        return Err(format!(
            "PVC is bound to PV {volume_name:?}, but the PV's claimRef does not name the PVC"
        ));
    }
    let spec = volume.spec.as_ref();
    if let Some(local) = spec.and_then(|s| s.local.as_ref()) {
        return Ok(ClaimedVolume {
            volume_name,
            path: PathBuf::from(&local.path),
            source: ClaimedSource::Local,
        });
    }
    if let Some(host_path) = spec.and_then(|s| s.host_path.as_ref()) {
        return Ok(ClaimedVolume {
            volume_name,
            path: PathBuf::from(&host_path.path),
            source: ClaimedSource::HostPath(host_path.type_.clone().unwrap_or_default()),
        });
    }
    Err(format!(
        "no volume plugin matched PV {volume_name:?}: this node mounts local and hostPath persistent volumes"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (project rule).
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7386 merge: objects merge, null removes, anything else replaces.
    fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
        match (target.as_object_mut(), patch.as_object()) {
            (Some(target), Some(patch)) => {
                for (key, value) in patch {
                    if value.is_null() {
                        target.remove(key);
                    } else {
                        merge(target.entry(key.clone()).or_insert(json!({})), value);
                    }
                }
            }
            _ => *target = patch.clone(),
        }
    }

    fn claim(extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut value = json!({
            "metadata": {"name": "data", "namespace": "shop", "uid": "u1"},
            "spec": {"volumeName": "pv1", "accessModes": ["ReadWriteOnce"]},
            "status": {"phase": "Bound"},
        });
        merge(&mut value, &extra);
        serde_json::from_value(value).unwrap()
    }

    fn volume(extra: serde_json::Value) -> PersistentVolume {
        let mut value = json!({
            "metadata": {"name": "pv1"},
            "spec": {"claimRef": {"name": "data", "namespace": "shop", "uid": "u1"},
                     "local": {"path": "/srv/pv1"}},
        });
        merge(&mut value, &extra);
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_bound_claim_gives_its_volumes_directory() {
        let resolved = resolve(&claim(json!({})), Some(&volume(json!({})))).unwrap();
        assert_eq!(resolved.path, PathBuf::from("/srv/pv1"));
        assert_eq!(resolved.source, ClaimedSource::Local);
        let host = volume(
            json!({"spec": {"local": null, "hostPath": {"path": "/h", "type": "Directory"}}}),
        );
        let resolved = resolve(&claim(json!({})), Some(&host)).unwrap();
        assert_eq!(resolved.source, ClaimedSource::HostPath("Directory".into()));
    }

    #[test]
    fn unusable_claims_say_why_as_kubelet() {
        let pending = claim(json!({"spec": {"volumeName": null}, "status": {"phase": "Pending"}}));
        assert_eq!(resolve(&pending, None).unwrap_err(), "PVC is not bound");
        let deleting = claim(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}));
        assert_eq!(
            resolve(&deleting, None).unwrap_err(),
            "can't start pod because PVC is being deleted"
        );
        assert!(
            resolve(&claim(json!({})), None)
                .unwrap_err()
                .contains("persistentvolumes \"pv1\" not found")
        );
        let other = volume(json!({"spec": {"claimRef": {"uid": "u2"}}}));
        assert!(
            resolve(&claim(json!({})), Some(&other))
                .unwrap_err()
                .contains("claimRef does not name the PVC")
        );
        let nfs = volume(json!({"spec": {"local": null, "nfs": {"server": "s", "path": "/"}}}));
        assert!(
            resolve(&claim(json!({})), Some(&nfs))
                .unwrap_err()
                .starts_with("no volume plugin matched")
        );
    }
}
