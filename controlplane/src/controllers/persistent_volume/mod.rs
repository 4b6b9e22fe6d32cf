//! The PersistentVolume controller: binds claims to volumes, hands claims to provisioners,
//! keeps both phases, and reclaims released volumes ([`binder`] decides; this module watches
//! and writes). [`matching`] is the claim/volume fit the scheduler uses too.
//!
//! Like upstream's controller it is level-triggered: every pass looks at every claim and
//! volume (a pass runs after a burst of watch events, and every [`RESYNC`] in any case), and
//! writes only what differs, so a write that failed is simply made again by a later pass.

pub mod binder;
pub mod matching;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use k8s_openapi::{
    api::{
        core::v1::{Node, PersistentVolume, PersistentVolumeClaim},
        storage::v1::StorageClass,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams},
    runtime::reflector,
};

use super::{next_pass, reflect, watch_until};
use binder::{Target, World, Write};

/// How often every claim and volume is looked at even without a change.
const RESYNC: Duration = Duration::from_secs(15);
/// The component events name (upstream's).
const COMPONENT: &str = "persistentvolume-controller";

/// Runs the controller until the task is dropped.
pub async fn run(client: Client) {
    let (claims, claims_writer) = reflector::store::<PersistentVolumeClaim>();
    let (volumes, volumes_writer) = reflector::store::<PersistentVolume>();
    let (classes, classes_writer) = reflector::store::<StorageClass>();
    let (nodes, nodes_writer) = reflector::store::<Node>();
    let changes = futures::stream::select_all([
        reflect(claims_writer, Api::all(client.clone())),
        reflect(volumes_writer, Api::all(client.clone())),
        reflect(classes_writer, Api::all(client.clone())),
        reflect(nodes_writer, Api::all(client.clone())),
    ]);
    let mut changes = std::pin::pin!(changes);
    let ready = futures::future::join4(
        claims.wait_until_ready(),
        volumes.wait_until_ready(),
        classes.wait_until_ready(),
        nodes.wait_until_ready(),
    );
    watch_until(&mut changes, ready).await;
    let mut reported: HashSet<(Target, &'static str, String)> = HashSet::new();
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let (claims, volumes, classes, nodes) = (
            claims.state(),
            volumes.state(),
            classes.state(),
            nodes.state(),
        );
        let world = World {
            claims: claims.iter().map(|c| &**c).collect(),
            volumes: volumes.iter().map(|v| &**v).collect(),
            classes: classes
                .iter()
                .filter_map(|c| Some((c.metadata.name.clone()?, &**c)))
                .collect(),
            nodes: nodes.iter().map(|n| &**n).collect(),
        };
        let writes = binder::plan(&world);
        // Events of objects that are gone may be reported again if the object comes back.
        let uids = uids(&world);
        reported.retain(|(target, _, _)| uids.contains_key(target));
        apply(&client, writes, &uids, &mut reported).await;
        next_pass(&mut changes, &mut resync).await;
    }
}

/// Every claim's and volume's uid (events name it: `kubectl describe` selects by it).
fn uids(world: &World<'_>) -> HashMap<Target, String> {
    let claims = world.claims.iter().map(|c| {
        let target = Target::Claim(
            c.metadata.namespace.clone().unwrap_or_default(),
            c.metadata.name.clone().unwrap_or_default(),
        );
        (target, c.metadata.uid.clone().unwrap_or_default())
    });
    let volumes = world.volumes.iter().map(|v| {
        let target = Target::Volume(v.metadata.name.clone().unwrap_or_default());
        (target, v.metadata.uid.clone().unwrap_or_default())
    });
    claims.chain(volumes).collect()
}

/// Makes the writes in order; a failed write skips the rest about the same object (they
/// assumed it), and the next pass decides again.
async fn apply(
    client: &Client,
    writes: Vec<Write>,
    uids: &HashMap<Target, String>,
    reported: &mut HashSet<(Target, &'static str, String)>,
) {
    let mut failed: HashSet<Target> = HashSet::new();
    let params = PatchParams::default();
    for write in writes {
        let result = match &write {
            Write::Patch(target, _) | Write::Status(target, _) if failed.contains(target) => {
                continue;
            }
            Write::Patch(target, patch) => match target {
                Target::Claim(ns, name) => {
                    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
                        .patch(name, &params, &Patch::Merge(patch))
                        .await
                        .map(|_| ())
                }
                Target::Volume(name) => Api::<PersistentVolume>::all(client.clone())
                    .patch(name, &params, &Patch::Merge(patch))
                    .await
                    .map(|_| ()),
            },
            Write::Status(target, patch) => match target {
                Target::Claim(ns, name) => {
                    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
                        .patch_status(name, &params, &Patch::Merge(patch))
                        .await
                        .map(|_| ())
                }
                Target::Volume(name) => Api::<PersistentVolume>::all(client.clone())
                    .patch_status(name, &params, &Patch::Merge(patch))
                    .await
                    .map(|_| ()),
            },
            Write::DeleteVolume(name) => {
                tracing::info!(volume = %name, "deleting a released volume (reclaim policy Delete)");
                match Api::<PersistentVolume>::all(client.clone())
                    .delete(name, &DeleteParams::default())
                    .await
                {
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    other => other.map(|_| ()),
                }
            }
            Write::Event(target, kind, reason, message) => {
                if reported.insert((target.clone(), reason, message.clone())) {
                    let uid = uids.get(target).map_or("", String::as_str);
                    record(client, target, uid, kind, reason, message).await;
                }
                continue;
            }
        };
        if let Err(err) = result {
            tracing::debug!(
                ?write,
                "the PV controller's write failed (retried next pass): {err}"
            );
            if let Write::Patch(target, _) | Write::Status(target, _) = &write {
                failed.insert(target.clone());
            }
        }
    }
}

/// Records an event about a claim (in its namespace) or a volume (in `default`, as upstream)
/// through the controllers' recorder, which needs only the object's identity.
async fn record(
    client: &Client,
    target: &Target,
    uid: &str,
    kind: &str,
    reason: &str,
    message: &str,
) {
    let identity = |name: &str, namespace: Option<&str>| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        uid: Some(uid.to_owned()),
        ..ObjectMeta::default()
    };
    let note = (kind, reason, message);
    match target {
        Target::Claim(namespace, name) => {
            let claim = PersistentVolumeClaim {
                metadata: identity(name, Some(namespace)),
                ..PersistentVolumeClaim::default()
            };
            super::record_event(client, &claim, COMPONENT, note).await;
        }
        Target::Volume(name) => {
            let volume = PersistentVolume {
                metadata: identity(name, None),
                ..PersistentVolume::default()
            };
            super::record_event(client, &volume, COMPONENT, note).await;
        }
    }
}
