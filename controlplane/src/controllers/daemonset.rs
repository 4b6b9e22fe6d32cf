//! The DaemonSet controller: one pod per eligible node. As upstream since 1.12, the controller
//! does not bind pods itself: each pod carries a required node affinity on its node's name and
//! the default scheduler binds it. Template changes roll out through ControllerRevisions (the
//! `controller-revision-hash` label on pods), node by node within maxUnavailable (RollingUpdate)
//! or only as the user deletes pods (OnDelete).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::{
        apps::v1::{ControllerRevision, DaemonSet},
        core::v1::{
            Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
            Pod, PodSpec, Taint, Toleration,
        },
    },
    apimachinery::pkg::{apis::meta::v1::OwnerReference, util::intstr::IntOrString},
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};
use serde_json::json;

use super::{
    Context, ReconcileError, drive,
    history::{self, CONTROLLER_REVISION_HASH},
    pod_available, pod_finished, pod_ready, retry_later, scaled_value, selector_string,
};
use crate::scheduler::predicates::{matches_node_selection, untolerated_taint};

/// Upstream's burst limit: at most this many pods created or deleted per reconcile.
const BURST: usize = 500;

/// Runs the controller until the task is dropped.
pub async fn run(client: Client) {
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let daemonsets = controller.store();
    let results = controller
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        // Any node change (joined, left, relabelled, tainted) may change where daemons belong.
        .watches(
            Api::<Node>::all(client.clone()),
            watcher::Config::default(),
            move |_node| {
                daemonsets
                    .state()
                    .iter()
                    .map(|ds| ObjectRef::from_obj(&**ds))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, retry_later, Arc::new(Context { client }));
    drive("daemonset", results).await;
}

/// Adds the tolerations upstream gives every daemon pod (`AddOrUpdateDaemonPodTolerations`):
/// daemons keep running on nodes that are not ready, unreachable, under pressure or cordoned.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let toleration = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Toleration::default()
        };
        // Upstream adds or replaces by key and effect (a user's tolerationSeconds is dropped).
        tolerations
            .retain(|t| !(t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect)));
        tolerations.push(toleration);
    }
}

/// Pins a daemon pod to `node` through required node affinity (upstream's
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`): any other required terms are replaced, since the
/// controller has already checked them against this node.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// The node a daemon pod is for: its binding, or else the node its affinity pins it to.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(node.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

/// Upstream's `NodeShouldRunDaemonPod`: (should run a pod, may keep a running one). `spec` is
/// the template's pod spec with the daemon tolerations added. Resources are not considered:
/// the scheduler decides whether the pod fits.
pub fn should_run(spec: &PodSpec, node: &Node) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return (false, false);
    }
    if !matches_node_selection(spec, node) {
        return (false, false);
    }
    let tolerations = spec.tolerations.clone().unwrap_or_default();
    let blocking = |effect: &str| effect == "NoSchedule" || effect == "NoExecute";
    if untolerated_taint(&tolerations, node, blocking).is_some() {
        // A NoSchedule taint keeps new daemons off but lets running ones stay.
        let evicting: Option<&Taint> =
            untolerated_taint(&tolerations, node, |effect| effect == "NoExecute");
        return (false, evicting.is_none());
    }
    (true, true)
}

/// Scheduled pods first, then the oldest (upstream's `podByCreationTimestampAndPhase`).
fn oldest_first(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let scheduled = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        scheduled(b)
            .cmp(&scheduled(a))
            .then_with(|| {
                let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
                created(a).cmp(&created(b))
            })
            .then_with(|| a.name_any().cmp(&b.name_any()))
    });
}

/// What `manage` decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodePlan {
    /// Nodes needing a daemon pod.
    pub create: Vec<String>,
    /// Pods to delete gracefully (misplaced, finished, duplicates).
    pub delete: Vec<String>,
    /// Pods bound to nodes that no longer exist: no kubelet will finish their graceful deletion,
    /// so they are removed at once (what upstream's pod garbage collector does for them).
    pub force_delete: Vec<String>,
}

/// Upstream's `podsShouldBeOnNode` over every node, plus pods of vanished nodes.
/// `pods_by_node` holds the DaemonSet's pods by target node (terminating ones included).
pub fn plan_nodes(
    spec: &PodSpec,
    nodes: &[Node],
    pods_by_node: &BTreeMap<String, Vec<&Pod>>,
) -> NodePlan {
    let mut plan = NodePlan::default();
    let mut known = BTreeSet::new();
    for node in nodes {
        let name = node.name_any();
        known.insert(name.clone());
        let pods = pods_by_node.get(&name).cloned().unwrap_or_default();
        let (run, keep) = should_run(spec, node);
        if run && pods.is_empty() {
            plan.create.push(name);
        } else if keep {
            let mut running = Vec::new();
            for pod in pods {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if pod_finished(pod) {
                    // A failed or completed daemon is replaced on the next pass.
                    plan.delete.push(pod.name_any());
                } else {
                    running.push(pod);
                }
            }
            oldest_first(&mut running);
            plan.delete
                .extend(running.iter().skip(1).map(|pod| pod.name_any()));
        } else {
            plan.delete.extend(
                pods.iter()
                    .filter(|pod| pod.metadata.deletion_timestamp.is_none())
                    .map(|pod| pod.name_any()),
            );
        }
    }
    for (node, pods) in pods_by_node {
        if !known.contains(node) {
            plan.force_delete
                .extend(pods.iter().map(|pod| pod.name_any()));
        }
    }
    plan
}

/// maxUnavailable as a count of `desired` nodes (percentages round up, as upstream does for
/// DaemonSets); never 0 without surge, so an update always makes progress.
pub fn max_unavailable(value: Option<&IntOrString>, desired: i32) -> i32 {
    let count = value.map_or(1, |v| scaled_value(v, desired, true));
    count.max(1)
}

/// Upstream's rolling update without surge: old pods to delete (the manage pass then creates
/// their replacements) so that at most `max_unavailable` nodes lack an available daemon.
/// Unavailable old pods are always replaceable: deleting them costs no availability.
pub fn rolling_deletions(
    pods_by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    max_unavailable: i32,
    available: impl Fn(&Pod) -> bool,
) -> Vec<String> {
    let mut unavailable = 0;
    let mut replace_now = Vec::new();
    let mut candidates = Vec::new();
    for pods in pods_by_node.values() {
        let live: Vec<&&Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let (new, old): (Vec<&&Pod>, Vec<&&Pod>) = live.into_iter().partition(|p| {
            p.labels().get(CONTROLLER_REVISION_HASH).map(String::as_str) == Some(hash)
        });
        match (new.as_slice(), old.as_slice()) {
            // Duplicates, an empty node, or a node mid-replacement: manage's business, and
            // unavailable meanwhile.
            (n, o) if n.len() > 1 || o.len() > 1 => unavailable += 1,
            ([], []) | ([_], [_]) => unavailable += 1,
            ([new], []) => {
                if !available(new) {
                    unavailable += 1;
                }
            }
            ([], [old]) => {
                if !available(old) {
                    replace_now.push(old.name_any());
                } else if unavailable < max_unavailable {
                    candidates.push(old.name_any());
                }
            }
            _ => unavailable += 1,
        }
    }
    let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
    replace_now.extend(candidates.into_iter().take(room));
    replace_now
}

/// The status upstream's `updateDaemonSetStatus` computes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Nodes that should run a daemon.
    pub desired: i32,
    /// Of those, nodes running one.
    pub current: i32,
    /// Nodes running a daemon they should not.
    pub misscheduled: i32,
    /// Nodes whose daemon is ready.
    pub ready: i32,
    /// Nodes whose daemon is available.
    pub available: i32,
    /// Nodes whose daemon runs the current template.
    pub updated: i32,
}

/// Counts per node, judging each node by its oldest pod, as upstream.
pub fn counts(
    spec: &PodSpec,
    nodes: &[Node],
    pods_by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    available: impl Fn(&Pod) -> bool,
) -> Counts {
    let mut counts = Counts::default();
    for node in nodes {
        let (run, _) = should_run(spec, node);
        let mut pods: Vec<&Pod> = pods_by_node
            .get(&node.name_any())
            .into_iter()
            .flatten()
            .copied()
            .filter(|p| !(pod_finished(p) && p.metadata.deletion_timestamp.is_some()))
            .collect();
        if !run {
            if !pods.is_empty() {
                counts.misscheduled += 1;
            }
            continue;
        }
        counts.desired += 1;
        oldest_first(&mut pods);
        let Some(pod) = pods.first() else {
            continue;
        };
        counts.current += 1;
        if pod_ready(pod) {
            counts.ready += 1;
            if available(pod) {
                counts.available += 1;
            }
        }
        if pod
            .labels()
            .get(CONTROLLER_REVISION_HASH)
            .map(String::as_str)
            == Some(hash)
        {
            counts.updated += 1;
        }
    }
    counts
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let fail = ReconcileError::about("DaemonSet", &namespace, &name);
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = ds.uid().unwrap_or_default();
    let spec = ds.spec.clone().unwrap_or_default();
    let Some(selector) = selector_string(&spec.selector) else {
        return Ok(Action::await_change());
    };
    let client = ctx.client.clone();
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let revisions_api: Api<ControllerRevision> = Api::namespaced(client.clone(), &namespace);

    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map_err(fail)?
        .items;
    let pods: Vec<Pod> = pods_api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(fail)?
        .items
        .into_iter()
        .filter(|pod| super::controlled_by(&pod.metadata, &uid))
        .collect();

    let mut revisions = history::list(&revisions_api, &selector, &uid)
        .await
        .map_err(fail)?;
    let status = ds.status.clone().unwrap_or_default();
    let annotations = ds.annotations().clone();
    let owner = history::Owner {
        kind: "DaemonSet",
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
    let hash = history::hash_of(&revisions[update_index]);

    let mut template_spec = spec.template.spec.clone().unwrap_or_default();
    add_daemon_tolerations(&mut template_spec);
    let mut pods_by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for pod in &pods {
        if let Some(node) = target_node(pod) {
            pods_by_node.entry(node).or_default().push(pod);
        }
    }

    let plan = plan_nodes(&template_spec, &nodes, &pods_by_node);
    let mut acted = false;
    for node in plan.create.iter().take(BURST) {
        let mut metadata = spec.template.metadata.clone().unwrap_or_default();
        metadata.name = None;
        metadata.generate_name = Some(format!("{name}-"));
        metadata.namespace = Some(namespace.clone());
        metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(CONTROLLER_REVISION_HASH.into(), hash.clone());
        metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "DaemonSet".into(),
            name: name.clone(),
            uid: uid.clone(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        let mut pod_spec = template_spec.clone();
        pin_to_node(&mut pod_spec, node);
        let pod = Pod {
            metadata,
            spec: Some(pod_spec),
            status: None,
        };
        pods_api
            .create(&PostParams::default(), &pod)
            .await
            .map_err(fail)?;
        acted = true;
    }
    for pod in plan.delete.iter().take(BURST) {
        delete_pod(&pods_api, pod, None).await.map_err(fail)?;
        acted = true;
    }
    for pod in plan.force_delete.iter().take(BURST) {
        delete_pod(&pods_api, pod, Some(0)).await.map_err(fail)?;
        acted = true;
    }

    let now = jiff::Timestamp::now();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let available = |pod: &Pod| pod_available(pod, min_ready, now).0;
    let rolling = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate");
    let counts = counts(&template_spec, &nodes, &pods_by_node, &hash, available);
    // A pass that created or deleted pods judges the rollout on the next pass, from the
    // state those writes produce (their watch events requeue this DaemonSet).
    if rolling && !acted {
        let max = max_unavailable(
            spec.update_strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_unavailable.as_ref()),
            counts.desired,
        );
        for pod in rolling_deletions(&pods_by_node, &hash, max, available) {
            delete_pod(&pods_api, &pod, None).await.map_err(fail)?;
        }
    }

    let mut live: BTreeSet<String> = BTreeSet::new();
    live.insert(revisions[update_index].name_any());
    let pod_hashes: BTreeSet<&String> = pods
        .iter()
        .filter_map(|p| p.labels().get(CONTROLLER_REVISION_HASH))
        .collect();
    for revision in &revisions {
        if pod_hashes.contains(&history::hash_of(revision)) {
            live.insert(revision.name_any());
        }
    }
    let stale = history::to_prune(&revisions, &live, spec.revision_history_limit.unwrap_or(10));
    history::prune(&revisions_api, &stale).await.map_err(fail)?;

    let new_status = json!({
        "observedGeneration": ds.metadata.generation,
        "desiredNumberScheduled": counts.desired,
        "currentNumberScheduled": counts.current,
        "numberMisscheduled": counts.misscheduled,
        "numberReady": counts.ready,
        "numberAvailable": counts.available,
        "numberUnavailable": counts.desired - counts.available,
        "updatedNumberScheduled": counts.updated,
        "collisionCount": (collision_count > 0).then_some(collision_count),
    });
    let unchanged = status.observed_generation == ds.metadata.generation
        && status.desired_number_scheduled == counts.desired
        && status.current_number_scheduled == counts.current
        && status.number_misscheduled == counts.misscheduled
        && status.number_ready == counts.ready
        && status.number_available.unwrap_or(0) == counts.available
        && status.number_unavailable.unwrap_or(0) == counts.desired - counts.available
        && status.updated_number_scheduled.unwrap_or(0) == counts.updated
        && status.collision_count.unwrap_or(0) == collision_count;
    if !unchanged {
        Api::<DaemonSet>::namespaced(client, &namespace)
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": new_status})),
            )
            .await
            .map_err(fail)?;
    }
    // Pods that are Ready but not yet for minReadySeconds become available without an event.
    let wait = pods
        .iter()
        .filter_map(|pod| pod_available(pod, min_ready, now).1)
        .min();
    Ok(wait.map_or_else(
        || Action::requeue(Duration::from_secs(300)),
        |wait| Action::requeue(wait + Duration::from_millis(100)),
    ))
}

async fn delete_pod(api: &Api<Pod>, name: &str, grace: Option<u32>) -> Result<(), kube::Error> {
    let params = match grace {
        Some(seconds) => DeleteParams::default().grace_period(seconds),
        None => DeleteParams::default(),
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))
        .unwrap()
    }

    fn daemon_spec(extra: serde_json::Value) -> PodSpec {
        let mut spec = json!({"containers": [{"name": "c"}]});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        let mut spec: PodSpec = serde_json::from_value(spec).unwrap();
        add_daemon_tolerations(&mut spec);
        spec
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "creationTimestamp": created,
                         "labels": {CONTROLLER_REVISION_HASH: hash}},
            "spec": {"containers": [{"name": "c"}], "nodeName": node},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn by_node(pods: &[Pod]) -> BTreeMap<String, Vec<&Pod>> {
        let mut map: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
        for pod in pods {
            map.entry(target_node(pod).unwrap()).or_default().push(pod);
        }
        map
    }

    #[test]
    fn eligibility_follows_selectors_and_taints() {
        let spec = daemon_spec(json!({"nodeSelector": {"role": "edge"}}));
        assert_eq!(
            should_run(&spec, &node("a", json!({"role": "edge"}), json!([]))),
            (true, true)
        );
        assert_eq!(
            should_run(&spec, &node("b", json!({}), json!([]))),
            (false, false)
        );
        let plain = daemon_spec(json!({}));
        let no_schedule = json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
        assert_eq!(
            should_run(&plain, &node("c", json!({}), no_schedule)),
            (false, true),
            "a NoSchedule taint lets a running daemon stay"
        );
        let no_execute = json!([{"key": "dedicated", "effect": "NoExecute"}]);
        assert_eq!(
            should_run(&plain, &node("d", json!({}), no_execute)),
            (false, false)
        );
        // The automatic tolerations cover cordoned and not-ready nodes.
        let cordoned = json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                              {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]);
        assert_eq!(
            should_run(&plain, &node("e", json!({}), cordoned)),
            (true, true)
        );
        let tolerant =
            daemon_spec(json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert_eq!(
            should_run(
                &tolerant,
                &node(
                    "f",
                    json!({}),
                    json!([{"key": "dedicated", "effect": "NoSchedule"}])
                )
            ),
            (true, true)
        );
    }

    #[test]
    fn tolerations_are_added_once_and_network_only_for_host_network() {
        let mut spec = daemon_spec(json!({}));
        add_daemon_tolerations(&mut spec);
        let tolerations = spec.tolerations.clone().unwrap();
        assert_eq!(tolerations.len(), 6);
        assert!(tolerations.iter().all(|t| t.toleration_seconds.is_none()));
        let host = daemon_spec(json!({"hostNetwork": true}));
        assert!(
            host.tolerations
                .unwrap()
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/network-unavailable"))
        );
    }

    #[test]
    fn pinning_replaces_required_affinity_and_is_read_back() {
        let mut spec = daemon_spec(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]}}}}),
        );
        pin_to_node(&mut spec, "n7");
        let pod = Pod {
            spec: Some(spec.clone()),
            ..Pod::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n7"));
        let terms = spec
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert!(terms[0].match_expressions.is_none());
    }

    #[test]
    fn plan_creates_missing_removes_misplaced_duplicates_and_orphans() {
        let spec = daemon_spec(json!({}));
        let nodes = [
            node("empty", json!({}), json!([])),
            node("twice", json!({}), json!([])),
            node(
                "evicting",
                json!({}),
                json!([{"key": "x", "effect": "NoExecute"}]),
            ),
        ];
        let pods = [
            pod("old", "twice", "h", true, "2026-01-01T00:00:00Z"),
            pod("new", "twice", "h", true, "2026-01-02T00:00:00Z"),
            pod("evicted", "evicting", "h", true, "2026-01-01T00:00:00Z"),
            pod("stranded", "gone", "h", true, "2026-01-01T00:00:00Z"),
        ];
        let plan = plan_nodes(&spec, &nodes, &by_node(&pods));
        assert_eq!(plan.create, ["empty"]);
        assert_eq!(plan.delete, ["new", "evicted"]);
        assert_eq!(plan.force_delete, ["stranded"]);
    }

    #[test]
    fn rolling_update_stays_within_max_unavailable() {
        let pods = [
            pod("a", "n1", "old", true, "2026-01-01T00:00:00Z"),
            pod("b", "n2", "old", true, "2026-01-01T00:00:00Z"),
            pod("c", "n3", "old", true, "2026-01-01T00:00:00Z"),
            pod("d", "n4", "old", false, "2026-01-01T00:00:00Z"),
        ];
        let map = by_node(&pods);
        // The unready old pod is always replaceable, plus one within the budget.
        assert_eq!(rolling_deletions(&map, "new", 1, pod_ready), ["d", "a"]);
        assert_eq!(rolling_deletions(&map, "new", 2, pod_ready).len(), 3);

        // A new pod that is not ready yet uses up the budget.
        let pods = [
            pod("a", "n1", "new", false, "2026-01-01T00:00:00Z"),
            pod("b", "n2", "old", true, "2026-01-01T00:00:00Z"),
        ];
        assert!(rolling_deletions(&by_node(&pods), "new", 1, pod_ready).is_empty());
        // Once it is ready, the next node goes.
        let pods = [
            pod("a", "n1", "new", true, "2026-01-01T00:00:00Z"),
            pod("b", "n2", "old", true, "2026-01-01T00:00:00Z"),
        ];
        assert_eq!(
            rolling_deletions(&by_node(&pods), "new", 1, pod_ready),
            ["b"]
        );
    }

    #[test]
    fn max_unavailable_rounds_up_and_is_at_least_one() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(max_unavailable(None, 5), 1);
        assert_eq!(max_unavailable(Some(&pct("30%")), 5), 2);
        assert_eq!(max_unavailable(Some(&pct("0%")), 5), 1);
        assert_eq!(max_unavailable(Some(&IntOrString::Int(3)), 5), 3);
    }

    #[test]
    fn counts_judge_each_node_by_its_oldest_pod() {
        let spec = daemon_spec(json!({"nodeSelector": {"run": "yes"}}));
        let nodes = [
            node("n1", json!({"run": "yes"}), json!([])),
            node("n2", json!({"run": "yes"}), json!([])),
            node("n3", json!({}), json!([])),
        ];
        let pods = [
            pod("a", "n1", "new", true, "2026-01-01T00:00:00Z"),
            pod("b", "n1", "old", false, "2026-01-02T00:00:00Z"),
            pod("c", "n3", "old", true, "2026-01-01T00:00:00Z"),
        ];
        let counts = counts(&spec, &nodes, &by_node(&pods), "new", pod_ready);
        assert_eq!(
            counts,
            Counts {
                desired: 2,
                current: 1,
                misscheduled: 1,
                ready: 1,
                available: 1,
                updated: 1
            }
        );
    }
}
