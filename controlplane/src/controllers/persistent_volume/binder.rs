//! The PV controller's decisions (upstream's `pkg/controller/volume/persistentvolume`
//! `syncClaim` / `syncVolume`), as plain functions from every claim, volume, class and node to
//! the writes that move them one step on:
//!
//! - an unbound claim binds to a volume reserved for it or the smallest matching Available one
//!   (for a WaitForFirstConsumer class, only once the scheduler picked a node, and only to a
//!   volume usable there); failing that it is handed to its class's provisioner (annotations
//!   `volume.kubernetes.io/storage-provisioner` and, for the built-in local-path provisioner
//!   with an Immediate class, `selected-node`), or waits with upstream's event;
//! - binding is the volume's `claimRef` first, then the claim's `volumeName`, then both phases
//!   Bound, so a crash in between is finished by the next pass;
//! - a volume whose claim is gone is Released and then reclaimed: Retain keeps it, Delete
//!   deletes a local-path volume (its node removes the data) and fails others, which no plugin
//!   here can delete, with upstream's VolumeFailedDelete.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim},
    storage::v1::StorageClass,
};
use serde_json::{Value, json};

use super::matching::{
    BETA_STORAGE_PROVISIONER, BIND_COMPLETED, BOUND_BY_CONTROLLER, LOCAL_PATH_PROVISIONER,
    NO_PROVISIONER, PROVISIONED_BY, SELECTED_NODE, STORAGE_PROVISIONER, annotation, claim_class,
    claim_volume_name, find_volume, is_bound_to, waits_for_consumer,
};

/// Everything the controller decides from.
#[derive(Default)]
pub struct World<'a> {
    /// Every claim.
    pub claims: Vec<&'a PersistentVolumeClaim>,
    /// Every volume.
    pub volumes: Vec<&'a PersistentVolume>,
    /// Every class, by name.
    pub classes: BTreeMap<String, &'a StorageClass>,
    /// Every node.
    pub nodes: Vec<&'a Node>,
}

/// Which object a write or event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A claim: namespace and name.
    Claim(String, String),
    /// A volume, by name.
    Volume(String),
}

/// One write the controller makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// A merge patch of the object (with its resourceVersion when it must not race).
    Patch(Target, Value),
    /// A merge patch of the object's status.
    Status(Target, Value),
    /// Delete the volume.
    DeleteVolume(String),
    /// An event about the object: type, reason, message.
    Event(Target, &'static str, &'static str, String),
}

/// The writes that move every claim and volume on one step.
pub fn plan(world: &World<'_>) -> Vec<Write> {
    let mut writes = Vec::new();
    // Volumes bound in this pass, so two claims never get the same one.
    let mut taken: HashSet<String> = HashSet::new();
    for claim in &world.claims {
        sync_claim(world, claim, &mut taken, &mut writes);
    }
    for volume in &world.volumes {
        sync_volume(world, volume, &taken, &mut writes);
    }
    writes
}

fn claim_target(claim: &PersistentVolumeClaim) -> Target {
    Target::Claim(
        claim
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        claim.metadata.name.clone().unwrap_or_default(),
    )
}

fn volume_target(volume: &PersistentVolume) -> Target {
    Target::Volume(volume.metadata.name.clone().unwrap_or_default())
}

fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn volume_phase(volume: &PersistentVolume) -> &str {
    volume
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn sync_claim(
    world: &World<'_>,
    claim: &PersistentVolumeClaim,
    taken: &mut HashSet<String>,
    writes: &mut Vec<Write>,
) {
    if claim.metadata.deletion_timestamp.is_some() {
        return;
    }
    let target = claim_target(claim);
    let bound_name = claim_volume_name(claim);
    if !bound_name.is_empty() {
        sync_bound_claim(world, claim, bound_name, writes);
        return;
    }
    let class_name = claim_class(claim);
    let class = world.classes.get(class_name).copied();
    let delayed = waits_for_consumer(class);
    let selected = annotation(&claim.metadata, SELECTED_NODE);
    let node = selected.and_then(|name| {
        world
            .nodes
            .iter()
            .copied()
            .find(|n| n.metadata.name.as_deref() == Some(name))
    });
    if delayed && selected.is_none() {
        // Pre-bound volumes bind at once; the rest waits for the scheduler.
        let reserved = world.volumes.iter().copied().find(|v| {
            is_bound_to(v, claim)
                && v.spec
                    .as_ref()
                    .and_then(|s| s.claim_ref.as_ref())
                    .and_then(|r| r.uid.as_ref())
                    .is_some()
        });
        if let Some(volume) = reserved {
            bind(claim, volume, writes, taken);
        } else if claim_phase(claim) != "Pending" || claim.status.is_none() {
            writes.push(Write::Status(
                target.clone(),
                json!({"status": {"phase": "Pending"}}),
            ));
        } else {
            writes.push(Write::Event(
                target,
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".into(),
            ));
        }
        return;
    }
    let candidates = world
        .volumes
        .iter()
        .copied()
        .filter(|v| !taken.contains(v.metadata.name.as_deref().unwrap_or_default()));
    if let Some(volume) = find_volume(claim, candidates, if delayed { node } else { None }) {
        bind(claim, volume, writes, taken);
        return;
    }
    // Nothing to bind to: provision, or say why not.
    if !class_name.is_empty() && class.is_none() {
        writes.push(Write::Event(
            target,
            "Warning",
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io {class_name:?} not found"),
        ));
        return;
    }
    let provisioner = class
        .map(|c| c.provisioner.as_str())
        .filter(|p| *p != NO_PROVISIONER);
    let Some(provisioner) = provisioner else {
        let message = if class_name.is_empty() {
            "no persistent volumes available for this claim and no storage class is set"
        } else {
            "no persistent volumes available for this claim"
        };
        writes.push(Write::Event(
            target,
            "Normal",
            "FailedBinding",
            message.into(),
        ));
        return;
    };
    let handed = annotation(&claim.metadata, STORAGE_PROVISIONER) == Some(provisioner);
    let mut annotations = serde_json::Map::new();
    if !handed {
        annotations.insert(STORAGE_PROVISIONER.into(), json!(provisioner));
        annotations.insert(BETA_STORAGE_PROVISIONER.into(), json!(provisioner));
    }
    // An Immediate local-path claim has no consumer to follow: it goes to a node now.
    if provisioner == LOCAL_PATH_PROVISIONER && !delayed && selected.is_none() {
        match pick_node(world, claim) {
            Some(node) => {
                annotations.insert(SELECTED_NODE.into(), json!(node));
            }
            None => {
                writes.push(Write::Event(
                    target,
                    "Warning",
                    "ProvisioningFailed",
                    "failed to provision volume: no ready node to hold a local-path volume".into(),
                ));
                return;
            }
        }
    }
    if !annotations.is_empty() {
        writes.push(Write::Patch(
            target.clone(),
            json!({"metadata": {"annotations": annotations}}),
        ));
    }
    writes.push(Write::Event(
        target,
        "Normal",
        "ExternalProvisioning",
        format!(
            "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
        ),
    ));
}

/// A ready, schedulable node for an Immediate local-path claim: spread by the claim's uid.
fn pick_node(world: &World<'_>, claim: &PersistentVolumeClaim) -> Option<String> {
    let mut ready: Vec<&str> = world
        .nodes
        .iter()
        .filter(|n| {
            is_ready(n)
                && !n
                    .spec
                    .as_ref()
                    .and_then(|s| s.unschedulable)
                    .unwrap_or(false)
        })
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    ready.sort_unstable();
    if ready.is_empty() {
        return None;
    }
    let uid = claim.metadata.uid.as_deref().unwrap_or_default();
    let hash = uid.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    Some(ready[hash % ready.len()].to_owned())
}

fn is_ready(node: &Node) -> bool {
    crate::controllers::node_lifecycle::ready_condition(node)
        .is_some_and(|(status, _)| status == "True")
}

/// Binds `claim` to `volume`: the volume's claimRef (guarded by its resourceVersion), the
/// claim's volumeName, then both statuses.
fn bind(
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
    writes: &mut Vec<Write>,
    taken: &mut HashSet<String>,
) {
    let name = volume.metadata.name.clone().unwrap_or_default();
    taken.insert(name.clone());
    let has_ref = volume
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_ref())
        .is_some();
    if !has_ref {
        writes.push(Write::Patch(
            volume_target(volume),
            json!({
                "metadata": {
                    "resourceVersion": volume.metadata.resource_version,
                    "annotations": {BOUND_BY_CONTROLLER: "yes"},
                },
                "spec": {"claimRef": claim_ref(claim)},
            }),
        ));
    }
    writes.push(Write::Patch(
        claim_target(claim),
        json!({
            "metadata": {
                "resourceVersion": claim.metadata.resource_version,
                "annotations": {BIND_COMPLETED: "yes", BOUND_BY_CONTROLLER: "yes"},
            },
            "spec": {"volumeName": name},
        }),
    ));
    writes.push(Write::Status(
        volume_target(volume),
        json!({"status": {"phase": "Bound"}}),
    ));
    writes.push(Write::Status(claim_target(claim), bound_status(volume)));
}

fn claim_ref(claim: &PersistentVolumeClaim) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "namespace": claim.metadata.namespace, "name": claim.metadata.name,
        "uid": claim.metadata.uid, "resourceVersion": claim.metadata.resource_version,
    })
}

/// A bound claim's status: the volume's access modes and capacity.
fn bound_status(volume: &PersistentVolume) -> Value {
    let spec = volume.spec.clone().unwrap_or_default();
    json!({"status": {
        "phase": "Bound",
        "accessModes": spec.access_modes,
        "capacity": spec.capacity,
    }})
}

fn sync_bound_claim(
    world: &World<'_>,
    claim: &PersistentVolumeClaim,
    volume_name: &str,
    writes: &mut Vec<Write>,
) {
    let target = claim_target(claim);
    let volume = world
        .volumes
        .iter()
        .copied()
        .find(|v| v.metadata.name.as_deref() == Some(volume_name));
    let Some(volume) = volume else {
        lose(
            claim,
            "ClaimLost",
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            writes,
        );
        return;
    };
    let claimed = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    if claimed.is_none() || is_bound_to(volume, claim) {
        // A claim the user bound by volumeName (or a binding a crash left half done).
        let has_uid = claimed.and_then(|r| r.uid.as_ref()).is_some();
        if !has_uid {
            writes.push(Write::Patch(
                volume_target(volume),
                json!({
                    "metadata": {"resourceVersion": volume.metadata.resource_version},
                    "spec": {"claimRef": claim_ref(claim)},
                }),
            ));
        }
        if annotation(&claim.metadata, BIND_COMPLETED).is_none() {
            writes.push(Write::Patch(
                target.clone(),
                json!({"metadata": {"annotations": {BIND_COMPLETED: "yes"}}}),
            ));
        }
        if volume_phase(volume) != "Bound" {
            writes.push(Write::Status(
                volume_target(volume),
                json!({"status": {"phase": "Bound"}}),
            ));
        }
        if claim_phase(claim) != "Bound" {
            writes.push(Write::Status(target, bound_status(volume)));
        }
        return;
    }
    lose(
        claim,
        "ClaimMisbound",
        "Two claims are bound to the same volume, this one is bound incorrectly",
        writes,
    );
}

/// A bound claim whose volume is gone or bound elsewhere turns Lost, once, with a warning.
fn lose(
    claim: &PersistentVolumeClaim,
    reason: &'static str,
    message: &str,
    writes: &mut Vec<Write>,
) {
    if claim_phase(claim) == "Lost" {
        return;
    }
    let target = claim_target(claim);
    writes.push(Write::Status(
        target.clone(),
        json!({"status": {"phase": "Lost"}}),
    ));
    writes.push(Write::Event(target, "Warning", reason, message.to_owned()));
}

fn sync_volume(
    world: &World<'_>,
    volume: &PersistentVolume,
    bound_now: &HashSet<String>,
    writes: &mut Vec<Write>,
) {
    let name = volume.metadata.name.clone().unwrap_or_default();
    if bound_now.contains(&name) || volume.metadata.deletion_timestamp.is_some() {
        return;
    }
    let target = volume_target(volume);
    let phase = volume_phase(volume);
    let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        if phase != "Available" {
            writes.push(Write::Status(
                target,
                json!({"status": {"phase": "Available"}}),
            ));
        }
        return;
    };
    let claim = world.claims.iter().copied().find(|c| {
        c.metadata.name == claim_ref.name
            && c.metadata.namespace.as_deref().unwrap_or("default")
                == claim_ref.namespace.as_deref().unwrap_or("default")
    });
    let same_claim = claim.filter(|c| {
        claim_ref
            .uid
            .as_ref()
            .is_none_or(|uid| Some(uid) == c.metadata.uid.as_ref())
    });
    match same_claim {
        Some(claim) if claim_volume_name(claim) == name => {
            if phase != "Bound" {
                writes.push(Write::Status(target, json!({"status": {"phase": "Bound"}})));
            }
        }
        // Reserved for a claim that does not exist yet, or whose binding is under way.
        Some(claim) if claim_volume_name(claim).is_empty() => {
            if phase == "Pending" {
                writes.push(Write::Status(
                    target,
                    json!({"status": {"phase": "Available"}}),
                ));
            }
        }
        Some(_) => {
            // The claim went to another volume: a binding the controller made is undone.
            if annotation(&volume.metadata, BOUND_BY_CONTROLLER) == Some("yes") {
                writes.push(Write::Patch(
                    target,
                    json!({"metadata": {"resourceVersion": volume.metadata.resource_version},
                           "spec": {"claimRef": null}}),
                ));
            }
        }
        None if claim_ref.uid.is_none() => {
            if phase == "Pending" {
                writes.push(Write::Status(
                    target,
                    json!({"status": {"phase": "Available"}}),
                ));
            }
        }
        None => reclaim(volume, phase, writes),
    }
}

/// A volume whose claim is gone: Released, then its reclaim policy.
fn reclaim(volume: &PersistentVolume, phase: &str, writes: &mut Vec<Write>) {
    let target = volume_target(volume);
    let name = volume.metadata.name.clone().unwrap_or_default();
    if phase == "Failed" {
        return;
    }
    if phase != "Released" {
        writes.push(Write::Status(
            target.clone(),
            json!({"status": {"phase": "Released"}}),
        ));
    }
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    match policy {
        "Delete"
            if annotation(&volume.metadata, PROVISIONED_BY) == Some(LOCAL_PATH_PROVISIONER) =>
        {
            writes.push(Write::DeleteVolume(name));
        }
        // Another provisioner deletes its own volumes.
        "Delete" if annotation(&volume.metadata, PROVISIONED_BY).is_some() => {}
        "Delete" => {
            let message = format!(
                "error getting deleter volume plugin for volume {name:?}: no deletable volume plugin matched"
            );
            writes.push(Write::Status(
                target.clone(),
                json!({"status": {"phase": "Failed", "message": message}}),
            ));
            writes.push(Write::Event(
                target,
                "Warning",
                "VolumeFailedDelete",
                message,
            ));
        }
        "Recycle" => {
            let message = "No recycler plugin found for the volume!".to_owned();
            writes.push(Write::Status(
                target.clone(),
                json!({"status": {"phase": "Failed", "message": message}}),
            ));
            writes.push(Write::Event(
                target,
                "Warning",
                "VolumeFailedRecycle",
                message,
            ));
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (project rule).
mod tests {
    use super::*;

    fn claim(name: &str, extra: Value) -> PersistentVolumeClaim {
        let mut claim = json!({
            "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "resourceVersion": "5"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"},
        });
        json_patch::merge(&mut claim, &extra);
        serde_json::from_value(claim).unwrap()
    }

    fn volume(name: &str, extra: Value) -> PersistentVolume {
        let mut volume = json!({
            "metadata": {"name": name, "resourceVersion": "9"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/srv"},
                     "persistentVolumeReclaimPolicy": "Retain"},
            "status": {"phase": "Available"},
        });
        json_patch::merge(&mut volume, &extra);
        serde_json::from_value(volume).unwrap()
    }

    fn class(name: &str, provisioner: &str, mode: &str) -> StorageClass {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "provisioner": provisioner,
                                       "volumeBindingMode": mode}),
        )
        .unwrap()
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .unwrap()
    }

    fn world<'a>(
        claims: &'a [PersistentVolumeClaim],
        volumes: &'a [PersistentVolume],
        classes: &'a [StorageClass],
        nodes: &'a [Node],
    ) -> World<'a> {
        World {
            claims: claims.iter().collect(),
            volumes: volumes.iter().collect(),
            classes: classes
                .iter()
                .map(|c| (c.metadata.name.clone().unwrap(), c))
                .collect(),
            nodes: nodes.iter().collect(),
        }
    }

    #[test]
    fn a_claim_binds_to_a_matching_volume_in_order() {
        let claims = [claim("data", json!({}))];
        let volumes = [volume("pv1", json!({}))];
        let writes = plan(&world(&claims, &volumes, &[], &[]));
        let vol = Target::Volume("pv1".into());
        let cl = Target::Claim("shop".into(), "data".into());
        assert!(
            matches!(&writes[0], Write::Patch(t, v) if *t == vol && v["spec"]["claimRef"]["uid"] == "uid-data" && v["metadata"]["resourceVersion"] == "9")
        );
        assert!(
            matches!(&writes[1], Write::Patch(t, v) if *t == cl && v["spec"]["volumeName"] == "pv1")
        );
        assert_eq!(
            writes[2],
            Write::Status(vol, json!({"status": {"phase": "Bound"}}))
        );
        assert!(
            matches!(&writes[3], Write::Status(t, v) if *t == cl && v["status"]["capacity"]["storage"] == "1Gi")
        );
        assert_eq!(writes.len(), 4, "{writes:?}");
    }

    #[test]
    fn two_claims_never_get_one_volume() {
        let claims = [claim("a", json!({})), claim("b", json!({}))];
        let volumes = [volume("pv1", json!({}))];
        let writes = plan(&world(&claims, &volumes, &[], &[]));
        let bound: Vec<_> = writes.iter().filter(|w| matches!(w, Write::Patch(Target::Claim(..), v) if v["spec"]["volumeName"] == "pv1")).collect();
        assert_eq!(bound.len(), 1);
        assert!(writes.iter().any(|w| matches!(w, Write::Event(Target::Claim(_, n), _, "ProvisioningFailed", _) if n == "b")));
    }

    #[test]
    fn unbindable_claims_say_why_as_upstream() {
        let missing = [claim("data", json!({"spec": {"storageClassName": "nope"}}))];
        let writes = plan(&world(&missing, &[], &[], &[]));
        assert_eq!(
            writes,
            [Write::Event(
                Target::Claim("shop".into(), "data".into()),
                "Warning",
                "ProvisioningFailed",
                "storageclass.storage.k8s.io \"nope\" not found".into()
            )]
        );
        let classless = [claim("data", json!({"spec": {"storageClassName": ""}}))];
        let writes = plan(&world(&classless, &[], &[], &[]));
        assert!(
            matches!(&writes[0], Write::Event(_, "Normal", "FailedBinding", m) if m == "no persistent volumes available for this claim and no storage class is set")
        );
    }

    #[test]
    fn delayed_claims_wait_for_the_scheduler_then_go_to_the_provisioner() {
        let classes = [class(
            "local-path",
            LOCAL_PATH_PROVISIONER,
            "WaitForFirstConsumer",
        )];
        let waiting = [claim(
            "data",
            json!({"spec": {"storageClassName": "local-path"}}),
        )];
        let writes = plan(&world(&waiting, &[], &classes, &[]));
        assert!(
            matches!(
                &writes[0],
                Write::Event(_, "Normal", "WaitForFirstConsumer", _)
            ),
            "{writes:?}"
        );
        let placed = [claim(
            "data",
            json!({"metadata": {"annotations": {SELECTED_NODE: "n1"}},
                                          "spec": {"storageClassName": "local-path"}}),
        )];
        let writes = plan(&world(&placed, &[], &classes, &[node("n1")]));
        assert!(
            matches!(&writes[0], Write::Patch(_, v) if v["metadata"]["annotations"][STORAGE_PROVISIONER] == LOCAL_PATH_PROVISIONER)
        );
        assert!(matches!(
            &writes[1],
            Write::Event(_, "Normal", "ExternalProvisioning", _)
        ));
        // Immediate local-path claims get a node from the controller.
        let immediate = [class("local-path", LOCAL_PATH_PROVISIONER, "Immediate")];
        let writes = plan(&world(&waiting, &[], &immediate, &[node("n1")]));
        assert!(
            matches!(&writes[0], Write::Patch(_, v) if v["metadata"]["annotations"][SELECTED_NODE] == "n1"),
            "{writes:?}"
        );
    }

    #[test]
    fn released_volumes_follow_their_reclaim_policy() {
        let gone_claim = json!({"spec": {"claimRef": {"name": "data", "namespace": "shop", "uid": "old"}}, "status": {"phase": "Bound"}});
        let retained = [volume("pv1", gone_claim.clone())];
        let writes = plan(&world(&[], &retained, &[], &[]));
        assert_eq!(
            writes,
            [Write::Status(
                Target::Volume("pv1".into()),
                json!({"status": {"phase": "Released"}})
            )]
        );
        let mut provisioned = gone_claim.clone();
        json_patch::merge(
            &mut provisioned,
            &json!({"metadata": {"annotations": {PROVISIONED_BY: LOCAL_PATH_PROVISIONER}},
                                                     "spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
        );
        let deleted = [volume("pv1", provisioned)];
        let writes = plan(&world(&[], &deleted, &[], &[]));
        assert_eq!(writes[1], Write::DeleteVolume("pv1".into()));
        let mut manual = gone_claim;
        json_patch::merge(
            &mut manual,
            &json!({"spec": {"persistentVolumeReclaimPolicy": "Delete"}}),
        );
        let failed = [volume("pv1", manual)];
        let writes = plan(&world(&[], &failed, &[], &[]));
        assert!(
            matches!(&writes[2], Write::Event(_, "Warning", "VolumeFailedDelete", m) if m.contains("no deletable volume plugin matched"))
        );
    }

    #[test]
    fn a_bound_claim_without_its_volume_is_lost() {
        let claims = [claim(
            "data",
            json!({"spec": {"volumeName": "gone"}, "status": {"phase": "Bound"}}),
        )];
        let writes = plan(&world(&claims, &[], &[], &[]));
        assert_eq!(
            writes[0],
            Write::Status(
                Target::Claim("shop".into(), "data".into()),
                json!({"status": {"phase": "Lost"}})
            )
        );
        assert!(matches!(
            &writes[1],
            Write::Event(_, "Warning", "ClaimLost", _)
        ));
    }
}
