//! The Deployment controller: one ReplicaSet per pod template (named `<deployment>-<hash>`,
//! labelled `pod-template-hash`), revisions in `deployment.kubernetes.io/revision` (which
//! `kubectl rollout history/undo` read), RollingUpdate within maxSurge/maxUnavailable or
//! Recreate, `paused` honoured, old ReplicaSets pruned to revisionHistoryLimit, and the status
//! `kubectl rollout status` waits on.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{
    api::apps::v1::{Deployment, DeploymentCondition, ReplicaSet},
    apimachinery::pkg::{apis::meta::v1::OwnerReference, util::intstr::IntOrString},
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::json;

use super::{Context, ReconcileError, drive, percent, retry_later};

/// The label that tells ReplicaSets (and their pods) of one Deployment apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// The annotation carrying a ReplicaSet's revision.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The Deployment's replicas when the controller last sized this ReplicaSet.
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas + maxSurge when the controller last sized this ReplicaSet.
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Runs the controller until the task is dropped.
pub async fn run(client: Client) {
    let results = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .run(reconcile, retry_later, Arc::new(Context { client }));
    drive("deployment", results).await;
}

/// A short stable hash of the pod template (FNV-1a of its JSON; serde_json maps are sorted).
pub fn template_hash(template: &serde_json::Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in template.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| char::from(ALPHABET[((hash >> (i * 6)) % ALPHABET.len() as u64) as usize]))
        .collect()
}

/// maxSurge/maxUnavailable as counts: percentages of `desired`, surge rounded up and
/// unavailable down, as upstream; both zero is not allowed, so unavailable becomes 1.
pub fn surge_and_unavailable(
    desired: i32,
    surge: Option<&IntOrString>,
    unavailable: Option<&IntOrString>,
) -> (i32, i32) {
    let resolve = |value: Option<&IntOrString>, default: &str, round_up: bool| -> i32 {
        match value {
            Some(IntOrString::Int(n)) => *n,
            Some(IntOrString::String(text)) => percent(text, desired, round_up),
            None => percent(default, desired, round_up),
        }
    };
    let surge = resolve(surge, "25%", true).max(0);
    let mut unavailable = resolve(unavailable, "25%", false).max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(desired.max(0)))
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// An integer annotation of a ReplicaSet.
fn annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.annotations().get(key).and_then(|v| v.parse().ok())
}

/// The new sizes when the Deployment's replicas changed while more than one of its ReplicaSets
/// is active (one of them was sized for other replicas), as upstream's `isScalingEvent`; None
/// otherwise (the rollout logic sizes a single active ReplicaSet itself).
fn scaling_event(
    deployment: &Deployment,
    desired: i32,
    surge: i32,
    new: &ReplicaSet,
    old: &[ReplicaSet],
) -> Option<Vec<(String, i32)>> {
    let active: Vec<&ReplicaSet> = old
        .iter()
        .chain(std::iter::once(new))
        .filter(|rs| replicas(rs) > 0)
        .collect();
    let resized = active
        .iter()
        .any(|rs| annotation(rs, DESIRED_REPLICAS).is_some_and(|was| was != desired));
    if active.len() < 2 || !resized {
        return None;
    }
    let status_replicas = deployment
        .status
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(0);
    let active = active
        .into_iter()
        .map(|rs| Sized {
            name: rs.name_any(),
            replicas: replicas(rs),
            max_replicas: annotation(rs, MAX_REPLICAS),
            revision: revision(rs),
        })
        .collect();
    Some(proportional_sizes(desired, surge, status_replicas, active))
}

/// One ReplicaSet as proportional scaling sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sized {
    name: String,
    replicas: i32,
    /// Its `max-replicas` annotation: the Deployment's size + surge it was last sized for.
    max_replicas: Option<i32>,
    revision: i64,
}

/// Upstream's proportional scaling (`dc.scale` for a rolling Deployment with more than one
/// active ReplicaSet): the change of the allowed total (`desired + surge`, 0 when scaling to 0)
/// is split across the active ReplicaSets in proportion to their size, the leftover going to the
/// largest; ties go to newer ReplicaSets when growing and older ones when shrinking. Returns the
/// new size of each.
fn proportional_sizes(
    desired: i32,
    surge: i32,
    status_replicas: i32,
    mut active: Vec<Sized>,
) -> Vec<(String, i32)> {
    let total: i32 = active.iter().map(|rs| rs.replicas).sum();
    let allowed = if desired > 0 { desired + surge } else { 0 };
    let to_add = allowed - total;
    active.sort_by(|a, b| {
        b.replicas.cmp(&a.replicas).then(if to_add > 0 {
            b.revision.cmp(&a.revision)
        } else {
            a.revision.cmp(&b.revision)
        })
    });
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::with_capacity(active.len());
    for rs in &active {
        let proportion = if to_add == 0 || rs.replicas == 0 || to_add == added {
            0
        } else {
            let fraction = if desired == 0 {
                -rs.replicas
            } else {
                let before = rs
                    .max_replicas
                    .filter(|max| *max > 0)
                    .unwrap_or(status_replicas);
                if before == 0 {
                    0
                } else {
                    let size =
                        f64::from(rs.replicas) * f64::from(desired + surge) / f64::from(before);
                    size.round() as i32 - rs.replicas
                }
            };
            let allowed = to_add - added;
            if to_add > 0 {
                fraction.min(allowed)
            } else {
                fraction.max(allowed)
            }
        };
        added += proportion;
        sizes.push((rs.name.clone(), rs.replicas + proportion));
    }
    if let Some(largest) = sizes.first_mut() {
        largest.1 = (largest.1 + to_add - added).max(0);
    }
    sizes
}

fn revision(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

async fn reconcile(
    deployment: Arc<Deployment>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = deployment.namespace().unwrap_or_default();
    let name = deployment.name_any();
    let fail = ReconcileError::about("Deployment", &namespace, &name);
    if deployment.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let uid = deployment.uid().unwrap_or_default();
    let spec = deployment.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
    // Recreate tolerates no unavailable replicas for the Available condition, as upstream.
    let (surge, unavailable) = if recreate {
        (0, 0)
    } else {
        let rolling = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        surge_and_unavailable(
            desired,
            rolling.and_then(|r| r.max_surge.as_ref()),
            rolling.and_then(|r| r.max_unavailable.as_ref()),
        )
    };
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut owned: Vec<ReplicaSet> = rs_api
        .list(&ListParams::default())
        .await
        .map_err(fail)?
        .items
        .into_iter()
        .filter(|rs| super::controlled_by(&rs.metadata, &uid))
        .collect();

    let template = serde_json::to_value(&spec.template).unwrap_or_default();
    let hash = template_hash(&template);
    let max_revision = owned.iter().map(revision).max().unwrap_or(0);
    let new_index = owned
        .iter()
        .position(|rs| rs.labels().get(POD_TEMPLATE_HASH) == Some(&hash));
    let paused = spec.paused.unwrap_or(false);

    if new_index.is_none() && !paused {
        // A template never seen before: a new ReplicaSet at the next revision.
        let mut labels: BTreeMap<String, String> = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels = Some(labels.clone());
        let first = owned.is_empty();
        let initial = if first || (recreate && owned.iter().all(|rs| replicas(rs) == 0)) {
            desired
        } else {
            0
        };
        let rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {
                "name": format!("{name}-{hash}"),
                "namespace": namespace,
                "labels": labels,
                "annotations": {REVISION: (max_revision + 1).to_string(), DESIRED_REPLICAS: desired.to_string(), MAX_REPLICAS: (desired + surge).to_string()},
                "ownerReferences": [OwnerReference {
                    api_version: "apps/v1".into(), kind: "Deployment".into(), name: name.clone(), uid: uid.clone(),
                    controller: Some(true), block_owner_deletion: Some(true),
                }],
            },
            "spec": {"replicas": initial, "selector": selector, "template": template, "minReadySeconds": spec.min_ready_seconds},
        }))
        .unwrap_or_default();
        match rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => owned.push(created),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(err) => return Err(fail(err)),
        }
    } else if let Some(index) = new_index
        && revision(&owned[index]) < max_revision
        && !paused
    {
        // Rolling back to an old template makes its ReplicaSet the newest revision again.
        let patch =
            json!({"metadata": {"annotations": {REVISION: (max_revision + 1).to_string()}}});
        owned[index] = rs_api
            .patch(
                &owned[index].name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(fail)?;
    }

    let (new, old): (Vec<ReplicaSet>, Vec<ReplicaSet>) = owned
        .into_iter()
        .partition(|rs| rs.labels().get(POD_TEMPLATE_HASH) == Some(&hash));
    let new = new.into_iter().next();
    // The Deployment carries its new ReplicaSet's revision too, as upstream's controller keeps
    // it (`kubectl rollout undo` of a Deployment reads and patches it).
    if let Some(wanted) = new.as_ref().and_then(|rs| rs.annotations().get(REVISION))
        && deployment.annotations().get(REVISION) != Some(wanted)
    {
        let patch = json!({"metadata": {"annotations": {REVISION: wanted}}});
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
        match deployments
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            // The patch is itself a change this controller watches: reconcile again from it.
            Ok(_) => return Ok(Action::await_change()),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Ok(Action::await_change());
            }
            Err(err) => return Err(fail(err)),
        }
    }
    // Every sizing records what the Deployment looked like, so a later change of its replicas
    // is recognised as a scaling event (as upstream's SetReplicasAnnotations).
    let sized_for =
        json!({DESIRED_REPLICAS: desired.to_string(), MAX_REPLICAS: (desired + surge).to_string()});
    let scale = |rs: &ReplicaSet, to: i32| {
        let rs_api = rs_api.clone();
        let rs_name = rs.name_any();
        let annotations = sized_for.clone();
        async move {
            let patch = json!({"metadata": {"annotations": annotations}, "spec": {"replicas": to}});
            rs_api
                .patch(&rs_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        }
    };

    if !paused && let Some(new) = &new {
        let old_total: i32 = old.iter().map(replicas).sum();
        if recreate {
            for rs in old.iter().filter(|rs| replicas(rs) > 0) {
                scale(rs, 0).await.map_err(fail)?;
            }
            let old_running: i32 = old
                .iter()
                .map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas))
                .sum();
            if old_total == 0 && old_running == 0 && replicas(new) != desired {
                scale(new, desired).await.map_err(fail)?;
            }
        } else if let Some(sizes) = scaling_event(&deployment, desired, surge, new, &old) {
            // The Deployment's replicas changed mid-rollout: resize every active ReplicaSet
            // in proportion first (whatever their availability, so scaling to 0 empties them
            // all), and roll on from there in the next round.
            for rs in old.iter().chain(std::iter::once(new)) {
                if let Some((_, size)) = sizes.iter().find(|(name, _)| *name == rs.name_any())
                    && *size != replicas(rs)
                {
                    scale(rs, *size).await.map_err(fail)?;
                }
            }
        } else {
            let total = old_total + replicas(new);
            // Scale the new ReplicaSet up within the surge budget.
            let room = desired + surge - total;
            let new_target = if old_total == 0 {
                desired
            } else {
                (replicas(new) + room.max(0)).min(desired)
            };
            if new_target != replicas(new) {
                scale(new, new_target).await.map_err(fail)?;
            }
            // Scale old ones down as far as availability allows.
            let available: i32 = old.iter().map(ready).sum::<i32>() + ready(new);
            let mut can_remove = (available - (desired - unavailable)).max(0);
            let mut by_age = old.clone();
            by_age.sort_by_key(revision);
            for rs in by_age.iter().filter(|rs| replicas(rs) > 0) {
                if can_remove == 0 {
                    break;
                }
                let remove = can_remove.min(replicas(rs));
                scale(rs, replicas(rs) - remove).await.map_err(fail)?;
                can_remove -= remove;
            }
        }
    }

    // Keep revisionHistoryLimit old ReplicaSets that are scaled to zero.
    let limit = usize::try_from(spec.revision_history_limit.unwrap_or(10)).unwrap_or(10);
    let mut idle: Vec<&ReplicaSet> = old
        .iter()
        .filter(|rs| replicas(rs) == 0 && rs.status.as_ref().is_none_or(|s| s.replicas == 0))
        .collect();
    idle.sort_by_key(|rs| revision(rs));
    if idle.len() > limit {
        for rs in &idle[..idle.len() - limit] {
            let _ = rs_api
                .delete(&rs.name_any(), &DeleteParams::default())
                .await;
        }
    }

    let all: Vec<&ReplicaSet> = old.iter().chain(new.iter()).collect();
    let status_replicas: i32 = all
        .iter()
        .map(|rs| rs.status.as_ref().map_or(0, |s| s.replicas))
        .sum();
    let updated = new
        .as_ref()
        .and_then(|rs| rs.status.as_ref())
        .map_or(0, |s| s.replicas);
    let ready_total: i32 = all.iter().map(|rs| ready(rs)).sum();
    let available = ready_total;
    let now = jiff::Timestamp::now();
    let complete = updated == desired && status_replicas == desired && available == desired;
    let current = deployment.status.clone().unwrap_or_default();
    let conditions = current.conditions.clone().unwrap_or_default();
    let find = |kind: &str| conditions.iter().find(|c| c.type_ == kind);
    let rs_name = format!("{name}-{hash}");
    let progress = Progress {
        complete,
        paused,
        // Upstream's DeploymentProgressing: more updated, ready or available replicas, or fewer
        // old ones, than the last status said.
        advanced: updated > current.updated_replicas.unwrap_or(0)
            || ready_total > current.ready_replicas.unwrap_or(0)
            || available > current.available_replicas.unwrap_or(0)
            || status_replicas - updated
                < current.replicas.unwrap_or(0) - current.updated_replicas.unwrap_or(0),
        deadline: spec.progress_deadline_seconds,
    };
    let (progressing, wake) = progressing_condition(find("Progressing"), &progress, &rs_name, now);
    let available_status = if available >= desired - unavailable {
        "True"
    } else {
        "False"
    };
    let available_condition = condition(
        find("Available"),
        "Available",
        available_status,
        if available >= desired {
            "MinimumReplicasAvailable"
        } else {
            "MinimumReplicasUnavailable"
        },
        &format!("{available} of {desired} replicas available"),
        now,
        false,
    );
    let status = json!({"status": {
        "observedGeneration": deployment.metadata.generation,
        "replicas": status_replicas,
        "updatedReplicas": updated,
        "readyReplicas": ready_total,
        "availableReplicas": available,
        "unavailableReplicas": (desired - available).max(0),
        "conditions": [available_condition, progressing],
    }});
    let unchanged = current.observed_generation == deployment.metadata.generation
        && current.replicas == Some(status_replicas)
        && current.updated_replicas == Some(updated)
        && current.ready_replicas.unwrap_or(0) == ready_total
        && same_conditions(&conditions, &status["status"]["conditions"]);
    if !unchanged {
        let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(fail)?;
    }
    Ok(Action::requeue(
        wake.unwrap_or(Duration::from_secs(30))
            .min(Duration::from_secs(30)),
    ))
}

/// What the rollout's Progressing condition is decided from.
struct Progress {
    complete: bool,
    paused: bool,
    advanced: bool,
    deadline: Option<i32>,
}

/// A condition as JSON, keeping lastTransitionTime (and, unless `touched`, lastUpdateTime) from
/// `previous` while its status stays the same.
fn condition(
    previous: Option<&DeploymentCondition>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: jiff::Timestamp,
    touched: bool,
) -> serde_json::Value {
    let now_text = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let same = previous.filter(|p| p.status == status);
    let time = |t: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        t.map_or(now_text.clone(), |t| {
            t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        })
    };
    let transition = same.map_or(now_text.clone(), |p| time(p.last_transition_time.as_ref()));
    let same_reason = same.filter(|p| p.reason.as_deref() == Some(reason) && !touched);
    let update = same_reason.map_or(now_text.clone(), |p| time(p.last_update_time.as_ref()));
    json!({"type": kind, "status": status, "reason": reason, "message": message,
           "lastUpdateTime": update, "lastTransitionTime": transition})
}

/// Upstream's Progressing condition: True while the rollout advances (or is complete), Unknown
/// while paused, False with ProgressDeadlineExceeded once it has not advanced for
/// progressDeadlineSeconds. Also returns when the deadline would pass, to look again then.
fn progressing_condition(
    previous: Option<&DeploymentCondition>,
    progress: &Progress,
    rs_name: &str,
    now: jiff::Timestamp,
) -> (serde_json::Value, Option<Duration>) {
    if progress.paused {
        let c = condition(
            previous,
            "Progressing",
            "Unknown",
            "DeploymentPaused",
            "Deployment is paused",
            now,
            false,
        );
        return (c, None);
    }
    if progress.complete {
        let message = format!("ReplicaSet \"{rs_name}\" has successfully progressed.");
        let c = condition(
            previous,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &message,
            now,
            false,
        );
        return (c, None);
    }
    let progressing_message = format!("ReplicaSet \"{rs_name}\" is progressing.");
    let was_timed_out =
        previous.is_some_and(|p| p.reason.as_deref() == Some("ProgressDeadlineExceeded"));
    let resumed = previous.is_some_and(|p| p.reason.as_deref() == Some("DeploymentPaused"));
    if progress.advanced
        || previous.is_none()
        || resumed
        || previous.is_some_and(|p| p.reason.as_deref() == Some("NewReplicaSetAvailable"))
    {
        let c = condition(
            previous,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &progressing_message,
            now,
            true,
        );
        return (
            c,
            progress
                .deadline
                .map(|d| Duration::from_secs(u64::from(d.unsigned_abs()))),
        );
    }
    let timed_out = || {
        let message = format!("ReplicaSet \"{rs_name}\" has timed out progressing.");
        let c = condition(
            previous,
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            &message,
            now,
            false,
        );
        (c, None)
    };
    if was_timed_out {
        return timed_out();
    }
    let last = previous
        .and_then(|p| p.last_update_time.as_ref())
        .map_or(now, |t| t.0);
    let Some(deadline) = progress.deadline else {
        return (
            condition(
                previous,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &progressing_message,
                now,
                false,
            ),
            None,
        );
    };
    let elapsed = now.duration_since(last).as_secs();
    let allowed = i64::from(deadline);
    if elapsed >= allowed {
        timed_out()
    } else {
        let c = condition(
            previous,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &progressing_message,
            now,
            false,
        );
        (
            c,
            Some(Duration::from_secs((allowed - elapsed).unsigned_abs())),
        )
    }
}

/// Whether the stored conditions say what `wanted` (JSON) says, timestamps included.
fn same_conditions(stored: &[DeploymentCondition], wanted: &serde_json::Value) -> bool {
    serde_json::to_value(stored).is_ok_and(|stored| {
        let strip = |v: &serde_json::Value| -> Vec<serde_json::Value> {
            v.as_array().cloned().unwrap_or_default()
        };
        strip(&stored) == strip(wanted)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sized(name: &str, replicas: i32, max_replicas: i32, revision: i64) -> Sized {
        Sized {
            name: name.into(),
            replicas,
            max_replicas: Some(max_replicas),
            revision,
        }
    }

    #[test]
    fn scaling_mid_rollout_resizes_every_replica_set_in_proportion() {
        // 10 replicas + 3 surge, split 8 (old) / 5 (new); scaled to 20 (+5 surge): 25 allowed.
        let sizes = proportional_sizes(
            20,
            5,
            13,
            vec![sized("old", 8, 13, 1), sized("new", 5, 13, 2)],
        );
        assert_eq!(sizes, vec![("old".into(), 15), ("new".into(), 10)]);
        // Scaling to 0 empties every active ReplicaSet, available or not.
        let sizes = proportional_sizes(0, 0, 3, vec![sized("a", 2, 4, 1), sized("b", 2, 4, 2)]);
        assert_eq!(sizes, vec![("a".into(), 0), ("b".into(), 0)]);
        // Shrinking: equal sizes give up replicas from the older one first (leftover included).
        let sizes = proportional_sizes(3, 1, 6, vec![sized("a", 3, 6, 1), sized("b", 3, 6, 2)]);
        assert_eq!(sizes.iter().map(|(_, n)| n).sum::<i32>(), 4);
        assert_eq!(sizes[0], ("a".into(), 2));
    }

    #[test]
    fn budgets_follow_upstream_rounding() {
        assert_eq!(surge_and_unavailable(3, None, None), (1, 0));
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(
            surge_and_unavailable(10, Some(&pct("25%")), Some(&pct("25%"))),
            (3, 2)
        );
        assert_eq!(
            surge_and_unavailable(4, Some(&IntOrString::Int(0)), Some(&IntOrString::Int(0))),
            (0, 1)
        );
    }

    #[test]
    fn progress_deadline_turns_progressing_false() {
        let now: jiff::Timestamp = "2026-11-23T10:00:10Z".parse().unwrap();
        let previous: DeploymentCondition = serde_json::from_value(json!({
            "type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
            "lastUpdateTime": "2026-11-23T10:00:00Z", "lastTransitionTime": "2026-11-23T10:00:00Z",
        }))
        .unwrap();
        let stalled = Progress {
            complete: false,
            paused: false,
            advanced: false,
            deadline: Some(5),
        };
        let (c, wake) = progressing_condition(Some(&previous), &stalled, "web-1", now);
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("False"), Some("ProgressDeadlineExceeded"))
        );
        assert_eq!(wake, None);
        let patient = Progress {
            deadline: Some(60),
            ..stalled
        };
        let (c, wake) = progressing_condition(Some(&previous), &patient, "web-1", now);
        assert_eq!(c["reason"], "ReplicaSetUpdated");
        assert_eq!(c["lastUpdateTime"], "2026-11-23T10:00:00Z");
        assert_eq!(wake, Some(Duration::from_secs(50)));
        let advanced = Progress {
            advanced: true,
            ..patient
        };
        let (c, _) = progressing_condition(Some(&previous), &advanced, "web-1", now);
        assert_eq!(c["lastUpdateTime"], "2026-11-23T10:00:10Z");
        assert_eq!(c["lastTransitionTime"], "2026-11-23T10:00:00Z");
        let paused = Progress {
            paused: true,
            ..advanced
        };
        let (c, _) = progressing_condition(Some(&previous), &paused, "web-1", now);
        assert_eq!(c["status"], "Unknown");
    }

    #[test]
    fn template_hashes_are_stable_and_differ() {
        let a = json!({"spec": {"containers": [{"name": "c", "image": "v1"}]}});
        let b = json!({"spec": {"containers": [{"name": "c", "image": "v2"}]}});
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
        assert_eq!(template_hash(&a).len(), 10);
    }
}
