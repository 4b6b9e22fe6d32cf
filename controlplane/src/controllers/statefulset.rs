//! The StatefulSet controller: pods with stable names (`<set>-<ordinal>`), hostnames and
//! subdomain (so the headless service can give each a DNS name), created in ordinal order and
//! removed from the highest ordinal (OrderedReady) or all at once (Parallel), and rolled to new
//! templates in reverse ordinal order above `partition`, through ControllerRevisions named in
//! the pods' `controller-revision-hash` label. Each pod's claims come from the
//! volumeClaimTemplates (`<template>-<pod>`), made before the pod and kept when it goes, so a
//! pod recreated under its name finds its data; `persistentVolumeClaimRetentionPolicy` decides
//! which claims the garbage collector may take (owner references to the set when it is deleted,
//! to a condemned pod when the set scales down).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::{
        apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus},
        core::v1::{
            PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
        },
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

use super::{
    Context, ReconcileError, drive,
    history::{self, CONTROLLER_REVISION_HASH},
    pod_available, pod_finished, pod_ready, retry_later, selector_string,
};

/// The label carrying a pod's own name (a Service can select one pod by it).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying a pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// Runs the controller until the task is dropped.
pub async fn run(client: Client) {
    let results = Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
    .run(reconcile, retry_later, Arc::new(Context { client }));
    drive("statefulset", results).await;
}

/// The ordinal of `pod` in the set `set`, None if its name is not `<set>-<n>`.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // "web-01" is not ordinal 1's name, so it is not a member.
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok()
}

/// One step the controller takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Create the pod of this ordinal, from the update revision (true) or the current one.
    Create(i32, bool),
    /// Delete this pod.
    Delete(String),
}

/// What the decision needs to know about the set.
#[derive(Debug, Clone)]
pub struct Shape<'a> {
    /// The set's name.
    pub name: &'a str,
    /// spec.replicas.
    pub replicas: i32,
    /// spec.ordinals.start.
    pub start: i32,
    /// OrderedReady (true) or Parallel.
    pub ordered: bool,
    /// RollingUpdate's partition; None for OnDelete.
    pub partition: Option<i32>,
    /// The update revision's name.
    pub update_revision: &'a str,
}

fn revision_of(pod: &Pod) -> &str {
    pod.labels()
        .get(CONTROLLER_REVISION_HASH)
        .map_or("", String::as_str)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Upstream's `updateStatefulSet` as a decision over the owned pods: the steps for this pass.
/// Ordered sets take one step and then wait for the cluster to catch up; Parallel sets take
/// every step of scaling at once. `healthy` says whether a pod is Running, Ready and available.
pub fn plan(shape: &Shape<'_>, pods: &[&Pod], healthy: impl Fn(&Pod) -> bool) -> Vec<Step> {
    let count = usize::try_from(shape.replicas.max(0)).unwrap_or(0);
    let end = shape.start.saturating_add(shape.replicas.max(0));
    let mut replicas: Vec<Option<&Pod>> = vec![None; count];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for pod in pods {
        let Some(ordinal) = ordinal_of(shape.name, &pod.name_any()) else {
            continue;
        };
        if ordinal >= shape.start && ordinal < end {
            if let Ok(index) = usize::try_from(ordinal - shape.start) {
                replicas[index] = Some(pod);
            }
        } else {
            condemned.push((ordinal, pod));
        }
    }
    condemned.sort_by_key(|(ordinal, _)| std::cmp::Reverse(*ordinal));
    let first_unhealthy = replicas
        .iter()
        .flatten()
        .chain(condemned.iter().map(|(_, pod)| pod))
        .find(|pod| !healthy(pod))
        .map(|pod| pod.name_any());
    let uses_update = |ordinal: i32| {
        shape
            .partition
            .is_none_or(|partition| ordinal >= shape.start + partition)
    };

    let mut steps = Vec::new();
    for (index, replica) in replicas.iter().enumerate() {
        let ordinal = shape.start + i32::try_from(index).unwrap_or(i32::MAX);
        match replica {
            None => steps.push(Step::Create(ordinal, uses_update(ordinal))),
            // A finished pod is deleted; its successor is created once the name is free.
            Some(pod) if pod_finished(pod) && !terminating(pod) => {
                steps.push(Step::Delete(pod.name_any()));
            }
            Some(pod) if healthy(pod) => continue,
            Some(_) => {}
        }
        if shape.ordered {
            return steps;
        }
    }
    for (_, pod) in &condemned {
        if terminating(pod) {
            if shape.ordered {
                return steps;
            }
            continue;
        }
        // Scale down one at a time, and only below a set that is otherwise healthy.
        if shape.ordered && !healthy(pod) && first_unhealthy.as_deref() != Some(&*pod.name_any()) {
            return steps;
        }
        steps.push(Step::Delete(pod.name_any()));
        if shape.ordered {
            return steps;
        }
    }
    let Some(partition) = shape.partition else {
        return steps;
    };
    if !steps.is_empty() {
        // Scaling goes first; the update continues once it is done.
        return steps;
    }
    let lowest = usize::try_from(partition.max(0)).unwrap_or(0);
    for replica in replicas.iter().skip(lowest).rev() {
        let Some(pod) = replica else {
            return steps;
        };
        if revision_of(pod) != shape.update_revision && !terminating(pod) {
            steps.push(Step::Delete(pod.name_any()));
            return steps;
        }
        if !healthy(pod) {
            return steps;
        }
    }
    steps
}

/// The pod of `ordinal`: the template's, with its stable identity, revision label, controller
/// reference and a claim volume per volumeClaimTemplate (`<template>-<pod>`, as upstream).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let set_name = set.name_any();
    let name = format!("{set_name}-{ordinal}");
    let spec = set.spec.clone().unwrap_or_default();
    let mut metadata = template.metadata.clone().unwrap_or_default();
    metadata.name = Some(name.clone());
    metadata.generate_name = None;
    metadata.namespace = set.namespace();
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(CONTROLLER_REVISION_HASH.into(), revision.into());
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: set_name,
        uid: set.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    let mut pod_spec = template.spec.clone().unwrap_or_default();
    pod_spec.hostname = Some(name.clone());
    pod_spec.subdomain = spec.service_name.clone().filter(|s| !s.is_empty());
    for claim in spec.volume_claim_templates.iter().flatten() {
        let claim_name = claim.metadata.name.clone().unwrap_or_default();
        let volumes = pod_spec.volumes.get_or_insert_with(Vec::new);
        volumes.retain(|v| v.name != claim_name);
        volumes.push(Volume {
            name: claim_name.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: format!("{claim_name}-{name}"),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    Pod {
        metadata,
        spec: Some(pod_spec),
        status: None,
    }
}

/// The claims of the pod of `ordinal` (upstream's `getPersistentVolumeClaims`): each template
/// named `<template>-<set>-<ordinal>` in the set's namespace, labelled with the set's selector.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let spec = set.spec.clone().unwrap_or_default();
    let pod = format!("{}-{ordinal}", set.name_any());
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    let templates = spec.volume_claim_templates.unwrap_or_default();
    templates
        .into_iter()
        .map(|mut claim| {
            let template = claim.metadata.name.clone().unwrap_or_default();
            claim.metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(format!("{template}-{pod}")),
                namespace: set.namespace(),
                labels: Some({
                    let mut labels = claim.metadata.labels.unwrap_or_default();
                    labels.extend(selector.clone());
                    labels
                }),
                annotations: claim.metadata.annotations,
                ..Default::default()
            };
            claim.status = None;
            claim
        })
        .collect()
}

/// The owner reference the retention policy gives a claim of the set, if any (upstream's
/// `updateClaimOwnerRefForSetAndPod`): the pod when `whenScaled` is Delete and the pod is
/// condemned (its ordinal is beyond the replicas), else the set when `whenDeleted` is Delete.
/// Plain references, as upstream's: the garbage collector deletes the claim once its owner is
/// gone, and nothing blocks the owner's deletion.
pub fn claim_owners(set: &StatefulSet, pod: Option<&Pod>, condemned: bool) -> Vec<OwnerReference> {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.clone())
        .unwrap_or_default();
    if let Some(pod) = pod
        && condemned
        && policy.when_scaled.as_deref() == Some("Delete")
    {
        return vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.name_any(),
            uid: pod.uid().unwrap_or_default(),
            ..OwnerReference::default()
        }];
    }
    if policy.when_deleted.as_deref() == Some("Delete") {
        return vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: set.name_any(),
            uid: set.uid().unwrap_or_default(),
            ..OwnerReference::default()
        }];
    }
    Vec::new()
}

/// A claim's owner references with those the retention policy decides replaced by `wanted`
/// (references to anything but this set and its pods stay); None when nothing changes.
fn reowned(
    claim: &PersistentVolumeClaim,
    set_uid: &str,
    pod_uids: &BTreeSet<String>,
    wanted: &[OwnerReference],
) -> Option<Vec<OwnerReference>> {
    let current = claim.metadata.owner_references.clone().unwrap_or_default();
    let mut next: Vec<OwnerReference> = current
        .iter()
        .filter(|o| o.uid != set_uid && !pod_uids.contains(&o.uid))
        .cloned()
        .collect();
    next.extend(wanted.iter().cloned());
    (next != current).then_some(next)
}

/// The replica counts of the status, over the owned pods.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Pods that exist.
    pub replicas: i32,
    /// Running and Ready.
    pub ready: i32,
    /// Ready for minReadySeconds.
    pub available: i32,
    /// Not terminating, at the current revision.
    pub current: i32,
    /// Not terminating, at the update revision.
    pub updated: i32,
}

/// Upstream's status counts.
pub fn counts(
    pods: &[&Pod],
    current_revision: &str,
    update_revision: &str,
    available: impl Fn(&Pod) -> bool,
) -> Counts {
    let mut counts = Counts::default();
    for pod in pods {
        counts.replicas += 1;
        if running(pod) && pod_ready(pod) {
            counts.ready += 1;
            if available(pod) {
                counts.available += 1;
            }
        }
        if !terminating(pod) {
            if revision_of(pod) == current_revision {
                counts.current += 1;
            }
            if revision_of(pod) == update_revision {
                counts.updated += 1;
            }
        }
    }
    counts
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let fail = ReconcileError::about("StatefulSet", &namespace, &name);
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = set.uid().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let Some(selector) = selector_string(&spec.selector) else {
        return Ok(Action::await_change());
    };
    let client = ctx.client.clone();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let revisions_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);

    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(fail)?
        .items
        .into_iter()
        .filter(|pod| super::controlled_by(&pod.metadata, &uid))
        .filter(|pod| ordinal_of(&name, &pod.name_any()).is_some())
        .collect();
    let pods: Vec<&Pod> = pods.iter().collect();

    let mut revisions = history::list(&revisions_api, &selector, &uid)
        .await
        .map_err(fail)?;
    let status = set.status.clone().unwrap_or_default();
    let annotations = set.annotations().clone();
    let owner = history::Owner {
        kind: "StatefulSet",
        name: &name,
        uid: &uid,
        namespace: &namespace,
        template: &spec.template,
        annotations: &annotations,
    };
    let (update_index, collision_count) = history::sync_update_revision(
        &revisions_api,
        &owner,
        &mut revisions,
        status.collision_count.unwrap_or(0),
    )
    .await
    .map_err(fail)?;
    let update = revisions[update_index].clone();
    let update_name = update.name_any();
    // The revision pods below the partition stay at; the update revision when there is none yet.
    let current = status
        .current_revision
        .as_ref()
        .and_then(|current| revisions.iter().find(|r| r.name_any() == *current))
        .cloned()
        .unwrap_or_else(|| update.clone());
    let current_name = current.name_any();

    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    let partition = rolling.then(|| {
        spec.update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0)
    });
    let shape = Shape {
        name: &name,
        replicas: spec.replicas.unwrap_or(1),
        start: spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0),
        ordered: spec.pod_management_policy.as_deref() != Some("Parallel"),
        partition,
        update_revision: &update_name,
    };
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let claims: BTreeMap<String, PersistentVolumeClaim> = if spec
        .volume_claim_templates
        .as_ref()
        .is_some_and(|t| !t.is_empty())
    {
        claims_api
            .list(&ListParams::default())
            .await
            .map_err(fail)?
            .items
            .into_iter()
            .map(|claim| (claim.name_any(), claim))
            .collect()
    } else {
        BTreeMap::new()
    };
    // Claims of pods that exist follow the retention policy before any pod goes.
    let end = shape.start.saturating_add(shape.replicas);
    let pod_uids: BTreeSet<String> = pods.iter().filter_map(|p| p.uid()).collect();
    for pod in &pods {
        let Some(ordinal) = ordinal_of(&name, &pod.name_any()) else {
            continue;
        };
        let condemned = ordinal < shape.start || ordinal >= end;
        let wanted = claim_owners(&set, Some(pod), condemned);
        for template in claims_for(&set, ordinal) {
            let claim_name = template.name_any();
            let Some(claim) = claims.get(&claim_name) else {
                continue;
            };
            if let Some(owners) = reowned(claim, &uid, &pod_uids, &wanted) {
                claims_api
                    .patch(
                        &claim_name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"metadata": {"ownerReferences": owners}})),
                    )
                    .await
                    .map_err(fail)?;
            }
        }
    }
    let now = jiff::Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let available = |pod: &Pod| pod_available(pod, min_ready, now).0;
    let healthy = |pod: &Pod| running(pod) && !terminating(pod) && pod_ready(pod) && available(pod);

    let mut waiting_for_claims = false;
    for step in plan(&shape, &pods, healthy) {
        match step {
            Step::Create(ordinal, from_update) => {
                let (revision, template) = if from_update {
                    (&update_name, spec.template.clone())
                } else {
                    (
                        &current_name,
                        history::template_of(&current).unwrap_or_else(|| spec.template.clone()),
                    )
                };
                // The claims come first (upstream's createPersistentVolumeClaims); a claim
                // still being deleted holds the pod back until it is gone.
                let mut claim_deleting = false;
                for mut claim in claims_for(&set, ordinal) {
                    match claims.get(&claim.name_any()) {
                        Some(existing) => {
                            claim_deleting |= existing.metadata.deletion_timestamp.is_some();
                        }
                        None => {
                            let owners = claim_owners(&set, None, false);
                            claim.metadata.owner_references =
                                (!owners.is_empty()).then_some(owners);
                            match claims_api.create(&PostParams::default(), &claim).await {
                                Ok(_) => {}
                                Err(kube::Error::Api(status)) if status.code == 409 => {}
                                Err(err) => return Err(fail(err)),
                            }
                        }
                    }
                }
                if claim_deleting {
                    tracing::debug!(set = %name, ordinal, "a claim of the pod is being deleted; waiting");
                    waiting_for_claims = true;
                    continue;
                }
                let pod = new_pod(&set, &template, ordinal, revision);
                match pods_api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {}
                    // The previous pod of that name is still going away; its deletion requeues us.
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    Err(err) => return Err(fail(err)),
                }
            }
            Step::Delete(pod) => match pods_api.delete(&pod, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(fail(err)),
            },
        }
    }

    let counts = counts(&pods, &current_name, &update_name, available);
    let (current_name, current_replicas) =
        if rolling && counts.updated == counts.replicas && counts.ready == counts.replicas {
            (update_name.clone(), counts.updated)
        } else {
            (current_name, counts.current)
        };

    let live: BTreeSet<String> = pods
        .iter()
        .map(|p| revision_of(p).to_owned())
        .chain([current_name.clone(), update_name.clone()])
        .collect();
    let stale = history::to_prune(&revisions, &live, spec.revision_history_limit.unwrap_or(10));
    history::prune(&revisions_api, &stale).await.map_err(fail)?;

    let new_status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: counts.replicas,
        ready_replicas: Some(counts.ready),
        available_replicas: Some(counts.available),
        current_replicas: Some(current_replicas),
        updated_replicas: Some(counts.updated),
        current_revision: Some(current_name),
        update_revision: Some(update_name),
        collision_count: Some(collision_count),
        // Earlier versions reported claims they could not make; that condition is over.
        conditions: status
            .conditions
            .clone()
            .map(|c| {
                c.into_iter()
                    .filter(|c| c.type_ != "VolumeClaimTemplatesNotProvisioned")
                    .collect::<Vec<_>>()
            })
            .filter(|c| !c.is_empty()),
    };
    if new_status != status {
        Api::<StatefulSet>::namespaced(client, &namespace)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": new_status})),
            )
            .await
            .map_err(fail)?;
    }
    // Claim deletions are not watched: look again soon while one holds a pod back.
    let wait = pods
        .iter()
        .filter_map(|pod| pod_available(pod, min_ready, now).1)
        .chain(waiting_for_claims.then_some(Duration::from_secs(1)))
        .min();
    Ok(wait.map_or_else(
        || Action::requeue(Duration::from_secs(300)),
        |wait| Action::requeue(wait + Duration::from_millis(100)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, revision: &str, healthy: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {CONTROLLER_REVISION_HASH: revision}},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": if healthy { "Running" } else { "Pending" }, "conditions": [
                {"type": "Ready", "status": if healthy { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn deleting(mut pod: Pod) -> Pod {
        pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        pod
    }

    fn shape(replicas: i32, ordered: bool, partition: Option<i32>) -> Shape<'static> {
        Shape {
            name: "web",
            replicas,
            start: 0,
            ordered,
            partition,
            update_revision: "web-new",
        }
    }

    fn healthy(pod: &Pod) -> bool {
        running(pod) && !terminating(pod) && pod_ready(pod)
    }

    fn steps(shape: &Shape<'_>, pods: &[Pod]) -> Vec<Step> {
        let pods: Vec<&Pod> = pods.iter().collect();
        plan(shape, &pods, healthy)
    }

    fn delete(name: &str) -> Step {
        Step::Delete(name.into())
    }

    #[test]
    fn ordinals_parse_only_member_names() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-01"), None);
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
    }

    #[test]
    fn ordered_creation_waits_for_each_predecessor() {
        let ordered = shape(3, true, Some(0));
        assert_eq!(steps(&ordered, &[]), [Step::Create(0, true)]);
        assert!(steps(&ordered, &[pod("web-0", "web-new", false)]).is_empty());
        assert_eq!(
            steps(&ordered, &[pod("web-0", "web-new", true)]),
            [Step::Create(1, true)]
        );
        let parallel = shape(3, false, Some(0));
        assert_eq!(
            steps(&parallel, &[pod("web-1", "web-new", false)]),
            [Step::Create(0, true), Step::Create(2, true)]
        );
    }

    #[test]
    fn scale_down_removes_the_highest_ordinal_first_one_at_a_time() {
        let ordered = shape(1, true, Some(0));
        let three = [
            pod("web-0", "web-new", true),
            pod("web-1", "web-new", true),
            pod("web-2", "web-new", true),
        ];
        assert_eq!(steps(&ordered, &three), [delete("web-2")]);
        let going = [
            three[0].clone(),
            three[1].clone(),
            deleting(three[2].clone()),
        ];
        assert!(steps(&ordered, &going).is_empty(), "waits for termination");
        assert_eq!(steps(&ordered, &three[..2]), [delete("web-1")]);
        let parallel = shape(1, false, Some(0));
        assert_eq!(steps(&parallel, &three), [delete("web-2"), delete("web-1")]);
    }

    #[test]
    fn failed_pods_are_replaced_under_the_same_name() {
        let mut failed = pod("web-0", "web-new", false);
        failed.status.as_mut().unwrap().phase = Some("Failed".into());
        assert_eq!(
            steps(&shape(1, true, Some(0)), &[failed]),
            [delete("web-0")]
        );
    }

    #[test]
    fn rolling_update_goes_down_from_the_top_and_honours_the_partition() {
        let old = [
            pod("web-0", "web-old", true),
            pod("web-1", "web-old", true),
            pod("web-2", "web-old", true),
        ];
        assert_eq!(steps(&shape(3, true, Some(0)), &old), [delete("web-2")]);
        // web-2 was recreated at the new revision but is not ready: wait.
        let mut rolled = old.clone();
        rolled[2] = pod("web-2", "web-new", false);
        assert!(steps(&shape(3, true, Some(0)), &rolled).is_empty());
        rolled[2] = pod("web-2", "web-new", true);
        assert_eq!(steps(&shape(3, true, Some(0)), &rolled), [delete("web-1")]);
        // A partition of 2 keeps web-0 and web-1 at the old revision.
        assert!(steps(&shape(3, true, Some(2)), &rolled).is_empty());
        // OnDelete never deletes for an update.
        assert!(steps(&shape(3, true, None), &old).is_empty());
        // Recreated pods below the partition come from the current revision.
        assert_eq!(
            steps(&shape(3, true, Some(2)), &rolled[1..]),
            [Step::Create(0, false)]
        );
    }

    #[test]
    fn pods_get_stable_identity() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u"},
            "spec": {"serviceName": "nginx", "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}}]},
        }))
        .unwrap();
        let template = set.spec.clone().unwrap().template;
        let pod = new_pod(&set, &template, 2, "web-abc");
        assert_eq!(pod.name_any(), "web-2");
        let labels = pod.labels();
        assert_eq!(labels[POD_NAME_LABEL], "web-2");
        assert_eq!(labels[POD_INDEX_LABEL], "2");
        assert_eq!(labels[CONTROLLER_REVISION_HASH], "web-abc");
        assert_eq!(labels["app"], "web");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let volume = &spec.volumes.unwrap()[0];
        assert_eq!(
            volume.persistent_volume_claim.as_ref().unwrap().claim_name,
            "data-web-2"
        );
        assert_eq!(pod.metadata.owner_references.unwrap()[0].uid, "u");
    }

    #[test]
    fn claims_follow_the_templates_and_the_retention_policy() {
        let set = |when_deleted: &str, when_scaled: &str| -> StatefulSet {
            serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "shop", "uid": "set-uid"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                         "template": {"spec": {"containers": [{"name": "c"}]}},
                         "persistentVolumeClaimRetentionPolicy": {"whenDeleted": when_deleted, "whenScaled": when_scaled},
                         "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "db"}},
                             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]},
            }))
            .unwrap()
        };
        let retained = set("Retain", "Retain");
        let claims = claims_for(&retained, 1);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].name_any(), "data-web-1");
        assert_eq!(claims[0].namespace().as_deref(), Some("shop"));
        assert_eq!(claims[0].labels()["app"], "web");
        assert_eq!(claims[0].labels()["tier"], "db");
        let web_1 = pod("web-1", "r", true);
        assert!(claim_owners(&retained, Some(&web_1), true).is_empty());
        let owner_kinds = |set: &StatefulSet, condemned: bool| -> Vec<String> {
            claim_owners(set, Some(&web_1), condemned)
                .into_iter()
                .map(|o| o.kind)
                .collect()
        };
        let deleted_with_set = set("Delete", "Retain");
        assert_eq!(owner_kinds(&deleted_with_set, false), ["StatefulSet"]);
        assert_eq!(owner_kinds(&deleted_with_set, true), ["StatefulSet"]);
        let deleted_on_scale = set("Retain", "Delete");
        assert!(owner_kinds(&deleted_on_scale, false).is_empty());
        assert_eq!(owner_kinds(&deleted_on_scale, true), ["Pod"]);
        let both = set("Delete", "Delete");
        assert_eq!(owner_kinds(&both, true), ["Pod"]);
        // Someone else's owner reference stays.
        let mut claim = claims[0].clone();
        claim.metadata.owner_references = Some(vec![OwnerReference {
            uid: "other".into(),
            ..OwnerReference::default()
        }]);
        let wanted = claim_owners(&deleted_with_set, Some(&web_1), false);
        let next = reowned(&claim, "set-uid", &BTreeSet::new(), &wanted).unwrap();
        assert_eq!(
            next.iter().map(|o| o.uid.as_str()).collect::<Vec<_>>(),
            ["other", "set-uid"]
        );
        claim.metadata.owner_references = Some(next);
        assert!(reowned(&claim, "set-uid", &BTreeSet::new(), &wanted).is_none());
    }

    #[test]
    fn counts_split_current_and_updated() {
        let pods = [
            pod("web-0", "web-old", true),
            pod("web-1", "web-new", false),
            deleting(pod("web-2", "web-new", true)),
        ];
        let pods: Vec<&Pod> = pods.iter().collect();
        let counts = counts(&pods, "web-old", "web-new", pod_ready);
        assert_eq!(
            counts,
            Counts {
                replicas: 3,
                ready: 2,
                available: 2,
                current: 1,
                updated: 1
            }
        );
    }
}
