//! Storage object in-use protection (upstream's pvc-protection and pv-protection controllers):
//! the API server gives every new claim the `kubernetes.io/pvc-protection` finalizer and every
//! new volume `kubernetes.io/pv-protection`; this controller removes them once the object is
//! being deleted and nothing uses it: no pod that has not finished uses the claim, and the
//! volume is not Bound. Until then `kubectl delete pvc` leaves the claim Terminating, so a
//! running pod never loses its storage.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::reflector,
};

use super::{next_pass, reflect, watch_until};
use serde_json::json;

/// The finalizer that keeps a claim while a pod uses it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// The finalizer that keeps a volume while it is bound.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
/// How often everything is looked at even without a change.
const RESYNC: Duration = Duration::from_secs(15);

/// A finalizer to remove: which object, its finalizers without ours, and the resourceVersion
/// they were read at (the patch is a compare-and-swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The claim's namespace (None for a volume).
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
    /// The finalizers that stay.
    pub finalizers: Vec<String>,
    /// The version they were read at.
    pub resource_version: String,
}

/// Whether a pod that has not finished uses the claim `namespace/name`.
pub fn claim_in_use<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    namespace: &str,
    name: &str,
) -> bool {
    pods.into_iter().any(|pod| {
        pod.metadata.namespace.as_deref() == Some(namespace)
            && !crate::scheduler::predicates::terminal(pod)
            && pod
                .spec
                .iter()
                .flat_map(|s| s.volumes.iter().flatten())
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .any(|c| c.claim_name == name)
    })
}

fn release(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    finalizer: &str,
) -> Option<Release> {
    let finalizers = meta.finalizers.as_ref()?;
    if meta.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == finalizer) {
        return None;
    }
    Some(Release {
        namespace: meta.namespace.clone(),
        name: meta.name.clone()?,
        finalizers: finalizers
            .iter()
            .filter(|f| *f != finalizer)
            .cloned()
            .collect(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
    })
}

/// The finalizers that may go now.
pub fn plan(
    claims: &[&PersistentVolumeClaim],
    volumes: &[&PersistentVolume],
    pods: &[&Pod],
) -> Vec<Release> {
    let claims = claims.iter().filter_map(|claim| {
        let release = release(&claim.metadata, PVC_PROTECTION)?;
        let namespace = release.namespace.as_deref().unwrap_or_default();
        (!claim_in_use(pods.iter().copied(), namespace, &release.name)).then_some(release)
    });
    let volumes = volumes.iter().filter_map(|volume| {
        let bound = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if bound {
            return None;
        }
        release(&volume.metadata, PV_PROTECTION)
    });
    claims.chain(volumes).collect()
}

/// Runs the controller until the task is dropped.
pub async fn run(client: Client) {
    let (claims, claims_writer) = reflector::store::<PersistentVolumeClaim>();
    let (volumes, volumes_writer) = reflector::store::<PersistentVolume>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let changes = futures::stream::select_all([
        reflect(claims_writer, Api::all(client.clone())),
        reflect(volumes_writer, Api::all(client.clone())),
        reflect(pods_writer, Api::all(client.clone())),
    ]);
    let mut changes = std::pin::pin!(changes);
    let ready = futures::future::join3(
        claims.wait_until_ready(),
        volumes.wait_until_ready(),
        pods.wait_until_ready(),
    );
    watch_until(&mut changes, ready).await;
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let (claim_state, volume_state, pod_state) =
            (claims.state(), volumes.state(), pods.state());
        let releases = plan(
            &claim_state.iter().map(|c| &**c).collect::<Vec<_>>(),
            &volume_state.iter().map(|v| &**v).collect::<Vec<_>>(),
            &pod_state.iter().map(|p| &**p).collect::<Vec<_>>(),
        );
        for release in releases {
            let patch = json!({"metadata": {"finalizers": release.finalizers,
                                            "resourceVersion": release.resource_version}});
            let params = PatchParams::default();
            let result = match &release.namespace {
                Some(namespace) => {
                    Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
                        .patch(&release.name, &params, &Patch::Merge(&patch))
                        .await
                        .map(|_| ())
                }
                None => Api::<PersistentVolume>::all(client.clone())
                    .patch(&release.name, &params, &Patch::Merge(&patch))
                    .await
                    .map(|_| ()),
            };
            if let Err(err) = result {
                tracing::debug!(name = %release.name, "removing a protection finalizer (retried): {err}");
            }
        }
        next_pass(&mut changes, &mut resync).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (project rule).
mod tests {
    use super::*;

    fn claim() -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "data", "namespace": "shop", "resourceVersion": "3",
            "deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": [PVC_PROTECTION]}}),
        )
        .unwrap()
    }

    fn pod(phase: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"containers": [], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
            "status": {"phase": phase}}))
        .unwrap()
    }

    #[test]
    fn a_claim_in_use_keeps_its_finalizer_until_the_pod_is_done() {
        let running = pod("Running");
        assert!(plan(&[&claim()], &[], &[&running]).is_empty());
        let done = pod("Succeeded");
        assert_eq!(
            plan(&[&claim()], &[], &[&done]),
            [Release {
                namespace: Some("shop".into()),
                name: "data".into(),
                finalizers: vec![],
                resource_version: "3".into()
            }]
        );
    }

    #[test]
    fn a_bound_volume_keeps_its_finalizer() {
        let volume = |phase: &str| -> PersistentVolume {
            serde_json::from_value(
                json!({"metadata": {"name": "pv1", "deletionTimestamp": "2026-01-01T00:00:00Z",
                "finalizers": [PV_PROTECTION, "other"]}, "status": {"phase": phase}}),
            )
            .unwrap()
        };
        assert!(plan(&[], &[&volume("Bound")], &[]).is_empty());
        let released = plan(&[], &[&volume("Released")], &[]);
        assert_eq!(released[0].finalizers, ["other"]);
    }
}
