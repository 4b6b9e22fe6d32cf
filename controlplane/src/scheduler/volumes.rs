//! Volume binding (upstream's VolumeBinding plugin): a pod's claims decide where it may go.
//!
//! - PreFilter ([`Volumes::claims_of`]): every claim must exist and not be being deleted; an
//!   unbound claim of an Immediate class makes the pod wait ("pod has unbound immediate
//!   PersistentVolumeClaims") until the PV controller binds it.
//! - Filter ([`ClaimSet::reasons`]): a bound claim's volume must allow the node (its node
//!   affinity: a local volume only fits its node); a claim of a WaitForFirstConsumer class needs
//!   either a provisioner (the volume will follow the pod) or an Available volume that fits.
//! - PreBind ([`ClaimSet::prebind`]): the node goes to the waiting claims (the chosen volume's
//!   claimRef for a static one, `volume.kubernetes.io/selected-node` for a provisioned one), and
//!   the pod is bound only when every claim is Bound, so the node agent finds its storage ready.
//!
//! The claims, volumes and classes come from the scheduler's own watches.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod},
    storage::v1::StorageClass,
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::watcher::Event,
};
use serde_json::json;

use crate::controllers::persistent_volume::matching::{
    NO_PROVISIONER, SELECTED_NODE, annotation, claim_class, claim_volume_name, find_volume,
    fits_node, waits_for_consumer,
};

/// How long a pod waits for its claims to bind after its node was chosen (upstream's
/// `bindTimeoutSeconds`).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the claims are looked at while waiting.
const BIND_POLL: Duration = Duration::from_millis(50);

/// Claims, volumes and classes, kept from watch events.
#[derive(Default)]
pub struct Volumes {
    claims: Known<(String, String), PersistentVolumeClaim>,
    volumes: Known<String, PersistentVolume>,
    classes: Known<String, StorageClass>,
    /// Volumes promised to a claim by a binding in flight: volume name -> claim key.
    assumed: HashMap<String, (String, String)>,
}

/// The objects of one kind by key, kept from a watch: a re-list replaces them when complete.
struct Known<Key, K> {
    objects: HashMap<Key, Arc<K>>,
    listing: Option<Vec<Arc<K>>>,
    synced: bool,
}

impl<Key, K> Default for Known<Key, K> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            listing: None,
            synced: false,
        }
    }
}

impl<Key: Eq + std::hash::Hash, K> Known<Key, K> {
    /// Takes one watch event; `key` names an object.
    fn apply(&mut self, event: Event<K>, key: impl Fn(&K) -> Key) {
        match event {
            Event::Apply(object) => {
                self.objects.insert(key(&object), Arc::new(object));
            }
            Event::Delete(object) => {
                self.objects.remove(&key(&object));
            }
            Event::Init => self.listing = Some(Vec::new()),
            Event::InitApply(object) => self.listing.get_or_insert_default().push(Arc::new(object)),
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                self.objects = listed.into_iter().map(|o| (key(&o), o)).collect();
                self.synced = true;
            }
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<&Arc<K>>
    where
        Key: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ?Sized,
    {
        self.objects.get(key)
    }
}

fn object_name<K: kube::Resource>(object: &K) -> String {
    object.meta().name.clone().unwrap_or_default()
}

fn claim_key(claim: &PersistentVolumeClaim) -> (String, String) {
    (
        claim.metadata.namespace.clone().unwrap_or_default(),
        claim.metadata.name.clone().unwrap_or_default(),
    )
}

/// A claim the pod waits on, and what its node must offer.
#[derive(Debug, Clone)]
enum Need {
    /// Bound: its volume must allow the node.
    Bound(Arc<PersistentVolume>),
    /// Waiting for a node, to be provisioned there.
    Provisioned(Arc<PersistentVolumeClaim>),
    /// Waiting for a node, to bind to a static volume usable there.
    Static(Arc<PersistentVolumeClaim>),
}

/// What a pod's claims ask of its node.
#[derive(Debug, Clone, Default)]
pub struct ClaimSet {
    needs: Vec<Need>,
}

/// What [`ClaimSet::reserve`] chose on a node, written by [`ClaimSet::prebind`].
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    /// Claims to annotate with the node: (namespace, name).
    provision: Vec<(String, String)>,
    /// Static volumes to pre-bind: volume name -> the claim.
    bind: Vec<(String, Arc<PersistentVolumeClaim>)>,
    /// Every claim that must be Bound before the pod is: (namespace, name).
    wait: Vec<(String, String)>,
}

impl Volumes {
    /// Whether all three watches have listed once.
    pub fn synced(&self) -> bool {
        self.claims.synced && self.volumes.synced && self.classes.synced
    }

    /// Takes a claim event.
    pub fn claim_event(&mut self, event: Event<PersistentVolumeClaim>) {
        self.claims.apply(event, claim_key);
    }

    /// Takes a volume event.
    pub fn volume_event(&mut self, event: Event<PersistentVolume>) {
        // Once the watch shows a promised volume claimed, the object keeps the promise.
        if let Event::Apply(volume) = &event
            && volume
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .is_some()
        {
            self.assumed.remove(&object_name(volume));
        }
        self.volumes.apply(event, object_name);
    }

    /// Takes a class event.
    pub fn class_event(&mut self, event: Event<StorageClass>) {
        self.classes.apply(event, object_name);
    }

    /// PreFilter: what the pod's claims ask of its node, or why no node will do (the message
    /// upstream puts after "0/N nodes are available: ").
    pub fn claims_of(&self, pod: &Pod) -> Result<ClaimSet, String> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let mut set = ClaimSet::default();
        let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
        for source in volumes.filter_map(|v| v.persistent_volume_claim.as_ref()) {
            let name = &source.claim_name;
            let Some(claim) = self.claims.get(&(namespace.clone(), name.clone())) else {
                return Err(format!("persistentvolumeclaim {name:?} not found"));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
            }
            let bound = claim_volume_name(claim);
            if !bound.is_empty() {
                match self.volumes.get(bound) {
                    Some(volume) => set.needs.push(Need::Bound(volume.clone())),
                    None => {
                        return Err(format!("pvc {name:?} bound to non-existent pv {bound:?}"));
                    }
                }
                continue;
            }
            let class = self
                .classes
                .get(&claim_class(claim).to_owned())
                .map(|c| &**c);
            if !waits_for_consumer(class) {
                return Err("pod has unbound immediate PersistentVolumeClaims".to_owned());
            }
            let provisioned = class.is_some_and(|c| c.provisioner != NO_PROVISIONER);
            set.needs.push(if provisioned {
                Need::Provisioned(claim.clone())
            } else {
                Need::Static(claim.clone())
            });
        }
        Ok(set)
    }

    /// Volumes a static claim may take (not promised to another claim).
    fn free_volumes<'a>(
        &'a self,
        claim: &'a PersistentVolumeClaim,
    ) -> impl Iterator<Item = &'a PersistentVolume> {
        let key = claim_key(claim);
        self.volumes
            .objects
            .iter()
            .filter_map(move |(name, volume)| {
                let promised = self.assumed.get(name).is_some_and(|to| *to != key);
                (!promised).then_some(&**volume)
            })
    }

    /// Promises the reservation's static volumes to their claims until the watch shows them
    /// bound (or [`Volumes::forget`]).
    pub fn assume(&mut self, reservation: &Reservation) {
        for (volume, claim) in &reservation.bind {
            self.assumed.insert(volume.clone(), claim_key(claim));
        }
    }

    /// Drops the promises of a binding that failed.
    pub fn forget(&mut self, reservation: &Reservation) {
        for (volume, _) in &reservation.bind {
            self.assumed.remove(volume);
        }
    }
}

impl ClaimSet {
    /// Whether the pod uses no claims.
    pub fn is_empty(&self) -> bool {
        self.needs.is_empty()
    }

    /// Filter: why `node` cannot give the pod its storage (empty: it can).
    pub fn reasons(&self, volumes: &Volumes, node: &Node) -> Vec<String> {
        let mut reasons = Vec::new();
        let mut conflict = false;
        let mut missing = false;
        let mut taken: HashSet<&str> = HashSet::new();
        for need in &self.needs {
            match need {
                Need::Bound(volume) => conflict |= !fits_node(volume, node),
                // A node chosen before (a binding that did not finish) stays the claim's node:
                // its provisioner may already be making the volume there.
                Need::Provisioned(claim) => {
                    let chosen = annotation(&claim.metadata, SELECTED_NODE);
                    conflict |= chosen.is_some_and(|n| Some(n) != node.metadata.name.as_deref());
                }
                Need::Static(claim) => {
                    let free = volumes.free_volumes(claim).filter(|v| {
                        !taken.contains(v.metadata.name.as_deref().unwrap_or_default())
                    });
                    match find_volume(claim, free, Some(node)) {
                        Some(volume) => {
                            taken.insert(volume.metadata.name.as_deref().unwrap_or_default());
                        }
                        None => missing = true,
                    }
                }
            }
        }
        if conflict {
            reasons.push("node(s) had volume node affinity conflict".to_owned());
        }
        if missing {
            reasons.push("node(s) didn't find available persistent volumes to bind".to_owned());
        }
        reasons
    }

    /// Reserve: what binding the pod to `node` takes (the filter passed there).
    pub fn reserve(&self, volumes: &Volumes, node: &Node) -> Reservation {
        let mut reservation = Reservation::default();
        let mut taken: HashSet<String> = HashSet::new();
        for need in &self.needs {
            match need {
                Need::Bound(_) => {}
                Need::Provisioned(claim) => {
                    reservation.provision.push(claim_key(claim));
                    reservation.wait.push(claim_key(claim));
                }
                Need::Static(claim) => {
                    let free = volumes.free_volumes(claim).filter(|v| {
                        !taken.contains(v.metadata.name.as_deref().unwrap_or_default())
                    });
                    if let Some(volume) = find_volume(claim, free, Some(node)) {
                        let name = volume.metadata.name.clone().unwrap_or_default();
                        taken.insert(name.clone());
                        reservation.bind.push((name, claim.clone()));
                    }
                    reservation.wait.push(claim_key(claim));
                }
            }
        }
        reservation
    }
}

impl Reservation {
    /// Whether nothing has to be written or waited for.
    pub fn is_empty(&self) -> bool {
        self.wait.is_empty()
    }

    /// PreBind: writes the node to the waiting claims and waits until every one is Bound.
    pub async fn prebind(&self, client: &Client, node: &str) -> Result<(), String> {
        let params = PatchParams::default();
        for (volume, claim) in &self.bind {
            let patch = json!({"spec": {"claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": claim.metadata.namespace, "name": claim.metadata.name,
                "uid": claim.metadata.uid, "resourceVersion": claim.metadata.resource_version,
            }}, "metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": "yes"}}});
            Api::<PersistentVolume>::all(client.clone())
                .patch(volume, &params, &Patch::Merge(&patch))
                .await
                .map_err(|err| format!("binding volume {volume}: {err}"))?;
        }
        for (namespace, name) in &self.provision {
            let patch = json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
                .patch(name, &params, &Patch::Merge(&patch))
                .await
                .map_err(|err| {
                    format!("selecting node {node} for claim {namespace}/{name}: {err}")
                })?;
        }
        let deadline = Instant::now() + BIND_TIMEOUT;
        for (namespace, name) in &self.wait {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
            loop {
                let claim = claims
                    .get_opt(name)
                    .await
                    .map_err(|err| format!("reading claim {namespace}/{name}: {err}"))?
                    .ok_or_else(|| format!("persistentvolumeclaim {name:?} not found"))?;
                let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
                if phase == Some("Bound") && !claim_volume_name(&claim).is_empty() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "binding volumes: claim {namespace}/{name} was not bound within {}s",
                        BIND_TIMEOUT.as_secs()
                    ));
                }
                tokio::time::sleep(BIND_POLL).await;
            }
        }
        Ok(())
    }

    /// Undoes the node choice of claims still waiting for it (upstream's Unreserve), so a
    /// failed binding does not leave them promised to a node the pod will not run on.
    pub async fn unreserve(&self, client: &Client) {
        for (namespace, name) in &self.provision {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
            let Ok(Some(claim)) = claims.get_opt(name).await else {
                continue;
            };
            if !claim_volume_name(&claim).is_empty() {
                continue;
            }
            let patch = json!({"metadata": {"annotations": {SELECTED_NODE: null}}});
            if let Err(err) = claims
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::debug!("unreserving claim {namespace}/{name}: {err}");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (project rule).
mod tests {
    use super::*;

    fn volumes(
        claims: &[serde_json::Value],
        pvs: &[serde_json::Value],
        classes: &[serde_json::Value],
    ) -> Volumes {
        let mut v = Volumes::default();
        for c in claims {
            v.claim_event(Event::Apply(serde_json::from_value(c.clone()).unwrap()));
        }
        for p in pvs {
            v.volume_event(Event::Apply(serde_json::from_value(p.clone()).unwrap()));
        }
        for c in classes {
            v.class_event(Event::Apply(serde_json::from_value(c.clone()).unwrap()));
        }
        v
    }

    fn pod(claim: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"containers": [], "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}}))
        .unwrap()
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
        )
        .unwrap()
    }

    fn claim(name: &str, class: &str, volume: Option<&str>) -> serde_json::Value {
        json!({"metadata": {"name": name, "namespace": "shop", "uid": format!("u-{name}")},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class, "volumeName": volume,
                        "resources": {"requests": {"storage": "1Gi"}}}})
    }

    fn local_volume(name: &str, node: &str, class: &str) -> serde_json::Value {
        json!({"metadata": {"name": name},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class, "capacity": {"storage": "1Gi"},
                        "local": {"path": "/srv"},
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}})
    }

    fn class(name: &str, provisioner: &str, mode: &str) -> serde_json::Value {
        json!({"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode})
    }

    #[test]
    fn missing_deleted_and_unbound_immediate_claims_keep_the_pod_pending() {
        let v = volumes(
            &[claim("imm", "fast", None)],
            &[],
            &[class("fast", "x", "Immediate")],
        );
        assert_eq!(
            v.claims_of(&pod("nope")).unwrap_err(),
            "persistentvolumeclaim \"nope\" not found"
        );
        assert_eq!(
            v.claims_of(&pod("imm")).unwrap_err(),
            "pod has unbound immediate PersistentVolumeClaims"
        );
    }

    #[test]
    fn a_bound_local_volume_only_fits_its_node() {
        let v = volumes(
            &[claim("data", "local-path", Some("pv1"))],
            &[local_volume("pv1", "n1", "local-path")],
            &[],
        );
        let set = v.claims_of(&pod("data")).unwrap();
        assert!(set.reasons(&v, &node("n1")).is_empty());
        assert_eq!(
            set.reasons(&v, &node("n2")),
            ["node(s) had volume node affinity conflict"]
        );
    }

    #[test]
    fn delayed_claims_follow_the_pod_or_need_a_fitting_volume() {
        let v = volumes(
            &[claim("lp", "local-path", None), claim("st", "manual", None)],
            &[local_volume("pv1", "n1", "manual")],
            &[
                class(
                    "local-path",
                    "flotilla.dev/local-path",
                    "WaitForFirstConsumer",
                ),
                class("manual", NO_PROVISIONER, "WaitForFirstConsumer"),
            ],
        );
        let provisioned = v.claims_of(&pod("lp")).unwrap();
        assert!(provisioned.reasons(&v, &node("n2")).is_empty());
        // Once a node was chosen for the claim, it stays the claim's node.
        let mut chosen = claim("lp", "local-path", None);
        chosen["metadata"]["annotations"] = json!({SELECTED_NODE: "n1"});
        let w = volumes(
            &[chosen],
            &[],
            &[class(
                "local-path",
                "flotilla.dev/local-path",
                "WaitForFirstConsumer",
            )],
        );
        let set = w.claims_of(&pod("lp")).unwrap();
        assert_eq!(
            set.reasons(&w, &node("n2")),
            ["node(s) had volume node affinity conflict"]
        );
        assert!(set.reasons(&w, &node("n1")).is_empty());
        let reservation = provisioned.reserve(&v, &node("n2"));
        assert_eq!(
            reservation.provision,
            [("shop".to_owned(), "lp".to_owned())]
        );
        let fixed = v.claims_of(&pod("st")).unwrap();
        assert!(fixed.reasons(&v, &node("n1")).is_empty());
        assert_eq!(
            fixed.reasons(&v, &node("n2")),
            ["node(s) didn't find available persistent volumes to bind"]
        );
        let mut v = v;
        let reservation = fixed.reserve(&v, &node("n1"));
        assert_eq!(reservation.bind[0].0, "pv1");
        // A volume promised to one claim is not offered to another.
        v.assume(&Reservation {
            bind: vec![(
                "pv1".into(),
                Arc::new(serde_json::from_value(claim("other", "manual", None)).unwrap()),
            )],
            ..Reservation::default()
        });
        assert!(!fixed.reasons(&v, &node("n1")).is_empty());
    }
}
