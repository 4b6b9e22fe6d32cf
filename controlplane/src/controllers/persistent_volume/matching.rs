//! Which PersistentVolume can serve which claim (upstream's `FindMatchingVolume` and
//! `CheckVolumeModeMismatches`), shared by the PV controller and the scheduler's volume binding.

use std::collections::BTreeMap;

use flotilla_apimachinery::quantity::Quantity;
use k8s_openapi::{
    api::{
        core::v1::{Node, PersistentVolume, PersistentVolumeClaim},
        storage::v1::StorageClass,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};

use crate::scheduler::predicates::node_selector_matches;

pub use flotilla_apimachinery::volumes::{
    BETA_STORAGE_PROVISIONER, LOCAL_PATH_PROVISIONER, PROVISIONED_BY, SELECTED_NODE,
    STORAGE_PROVISIONER,
};
/// Set on a claim once its binding is complete.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim or volume whose binding the controller (not the user) made.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The provisioner name of classes whose volumes an admin makes by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
/// The binding mode that waits for a pod to be scheduled.
pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";

/// An annotation's value.
pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The claim's class name ("" for none).
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The volume's class name ("" for none).
pub fn volume_class(volume: &PersistentVolume) -> &str {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

/// The volume the claim is bound to ("" for none).
pub fn claim_volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or_default()
}

/// Whether the class binds only once a pod using the claim is scheduled.
pub fn waits_for_consumer(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some(WAIT_FOR_FIRST_CONSUMER)
}

/// Whether the volume's claimRef names this claim (by uid when the ref has one).
pub fn is_bound_to(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| {
            r.name == claim.metadata.name
                && r.namespace.as_deref().unwrap_or("default")
                    == claim.metadata.namespace.as_deref().unwrap_or("default")
                && r.uid
                    .as_ref()
                    .is_none_or(|uid| Some(uid) == claim.metadata.uid.as_ref())
        })
}

fn storage(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> Option<Quantity> {
    Quantity::parse(&map?.get("storage")?.0).ok()
}

/// The storage the claim asks for.
pub fn requested(claim: &PersistentVolumeClaim) -> Option<Quantity> {
    storage(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
}

/// The volume's capacity.
pub fn capacity(volume: &PersistentVolume) -> Option<Quantity> {
    storage(volume.spec.as_ref().and_then(|s| s.capacity.as_ref()))
}

/// Why `volume` cannot serve `claim` (None: it can), not looking at bindings or nodes: class,
/// volume mode, access modes, size, selector, and the volume not being deleted.
pub fn mismatch(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<&'static str> {
    if volume.metadata.deletion_timestamp.is_some() {
        return Some("the volume is being deleted");
    }
    if volume_class(volume) != claim_class(claim) {
        return Some("storage class differs");
    }
    let mode = |m: Option<&String>| m.map_or("Filesystem", String::as_str).to_owned();
    let claim_spec = claim.spec.clone().unwrap_or_default();
    let volume_spec = volume.spec.clone().unwrap_or_default();
    if mode(claim_spec.volume_mode.as_ref()) != mode(volume_spec.volume_mode.as_ref()) {
        return Some("volume mode differs");
    }
    let offered = volume_spec.access_modes.unwrap_or_default();
    if !claim_spec
        .access_modes
        .unwrap_or_default()
        .iter()
        .all(|m| offered.contains(m))
    {
        return Some("access modes do not cover the claim's");
    }
    match (capacity(volume), requested(claim)) {
        (Some(has), Some(wants)) if has >= wants => {}
        _ => return Some("capacity is smaller than the request"),
    }
    if let Some(selector) = &claim_spec.selector {
        let labels = volume.metadata.labels.clone().unwrap_or_default();
        let matches = flotilla_apimachinery::selectors::LabelSelector::try_from(selector)
            .is_ok_and(|s| s.matches(&labels));
        if !matches {
            return Some("labels do not match the claim's selector");
        }
    }
    None
}

/// Whether the volume may be used on `node` (its node affinity; none = anywhere).
pub fn fits_node(volume: &PersistentVolume, node: &Node) -> bool {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|required| node_selector_matches(required, node))
}

/// Whether the volume is free to bind to `claim`: unclaimed (or pre-bound to it) and matching.
pub fn available_for(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let claimed = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    (claimed.is_none() || is_bound_to(volume, claim)) && mismatch(volume, claim).is_none()
}

/// The best volume for `claim` among `volumes`: one pre-bound to it, else the smallest that
/// matches; `node` restricts to volumes usable there (delayed binding).
pub fn find_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node: Option<&Node>,
) -> Option<&'a PersistentVolume> {
    let mut best: Option<(&PersistentVolume, Option<Quantity>)> = None;
    for volume in volumes {
        if !available_for(volume, claim) || node.is_some_and(|n| !fits_node(volume, n)) {
            continue;
        }
        // A volume the admin reserved for this claim wins outright.
        if volume
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_some()
        {
            return Some(volume);
        }
        let size = capacity(volume);
        if best.as_ref().is_none_or(|(_, best_size)| size < *best_size) {
            best = Some((volume, size));
        }
    }
    best.map(|(volume, _)| volume)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (project rule).
mod tests {
    use serde_json::json;

    use super::*;

    fn claim(extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut claim = json!({
            "metadata": {"name": "data", "namespace": "shop", "uid": "c1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "resources": {"requests": {"storage": "1Gi"}}},
        });
        json_patch::merge(&mut claim, &extra);
        serde_json::from_value(claim).unwrap()
    }

    fn volume(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut volume = json!({
            "metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"accessModes": ["ReadWriteOnce", "ReadOnlyMany"], "storageClassName": "manual",
                     "capacity": {"storage": size}, "hostPath": {"path": "/srv"}},
        });
        json_patch::merge(&mut volume, &extra);
        serde_json::from_value(volume).unwrap()
    }

    #[test]
    fn the_smallest_matching_volume_wins_and_a_reserved_one_first() {
        let volumes = [
            volume("big", "10Gi", json!({})),
            volume("small", "2Gi", json!({})),
            volume("tiny", "512Mi", json!({})),
            volume(
                "other-class",
                "1Gi",
                json!({"spec": {"storageClassName": "fast"}}),
            ),
        ];
        let found = find_volume(&claim(json!({})), &volumes, None).unwrap();
        assert_eq!(found.metadata.name.as_deref(), Some("small"));
        let reserved = volume(
            "reserved",
            "50Gi",
            json!({"spec": {"claimRef": {"name": "data", "namespace": "shop"}}}),
        );
        let all: Vec<&PersistentVolume> = volumes.iter().chain([&reserved]).collect();
        let found = find_volume(&claim(json!({})), all, None).unwrap();
        assert_eq!(found.metadata.name.as_deref(), Some("reserved"));
    }

    #[test]
    fn each_mismatch_is_named() {
        let c = claim(json!({}));
        assert_eq!(
            mismatch(&volume("v", "512Mi", json!({})), &c),
            Some("capacity is smaller than the request")
        );
        assert_eq!(
            mismatch(
                &volume(
                    "v",
                    "1Gi",
                    json!({"spec": {"accessModes": ["ReadOnlyMany"]}})
                ),
                &c
            ),
            Some("access modes do not cover the claim's")
        );
        assert_eq!(
            mismatch(
                &volume("v", "1Gi", json!({"spec": {"volumeMode": "Block"}})),
                &c
            ),
            Some("volume mode differs")
        );
        let picky = claim(json!({"spec": {"selector": {"matchLabels": {"tier": "slow"}}}}));
        assert_eq!(
            mismatch(&volume("v", "1Gi", json!({})), &picky),
            Some("labels do not match the claim's selector")
        );
        assert_eq!(mismatch(&volume("v", "1Gi", json!({})), &c), None);
        let taken = volume(
            "v",
            "1Gi",
            json!({"spec": {"claimRef": {"name": "other", "namespace": "shop"}}}),
        );
        assert!(!available_for(&taken, &c));
    }

    #[test]
    fn node_affinity_limits_where_a_volume_is_used() {
        let node = |name: &str| -> Node {
            serde_json::from_value(
                json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
            )
            .unwrap()
        };
        let local = volume(
            "v",
            "1Gi",
            json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}}),
        );
        assert!(fits_node(&local, &node("n1")));
        assert!(!fits_node(&local, &node("n2")));
        assert!(find_volume(&claim(json!({})), [&local], Some(&node("n2"))).is_none());
        assert!(fits_node(
            &volume("anywhere", "1Gi", json!({})),
            &node("n2")
        ));
    }
}
