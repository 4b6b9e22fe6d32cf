//! The Job controller: runs pods from the template until `completions` of them succeed (or, in
//! work-queue mode without completions, until one succeeds and the rest finish), at most
//! `parallelism` at a time; fails the Job past `backoffLimit` or `activeDeadlineSeconds`;
//! honours `suspend`; deletes finished Jobs after `ttlSecondsAfterFinished`.
//!
//! Differences from upstream, by choice:
//! - Succeeded and failed pods are counted from the pods that exist (phase Succeeded/Failed),
//!   not through the `batch.kubernetes.io/job-tracking` finalizer and `uncountedTerminatedPods`.
//!   The controller never deletes a finished pod, so counts stay right unless someone else
//!   deletes finished pods (then the Job runs replacements).
//! - A pod deleted while running (by someone else) is replaced but not counted as failed.
//! - `Complete`/`Failed` are set together with `SuccessCriteriaMet`/`FailureTarget`, without
//!   waiting for the pods being deleted to terminate.
//! - `podFailurePolicy`, `successPolicy` and `backoffLimitPerIndex` are not acted on.
//!
//! `completionMode: Indexed` Jobs run one pod per index in `0..completions` (annotation and
//! label `batch.kubernetes.io/job-completion-index`, env `JOB_COMPLETION_INDEX`, hostname
//! `<job>-<index>`) and report `completedIndexes`.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::{
    api::{
        batch::v1::{Job, JobCondition},
        core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy},
    core::Selector,
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::{Value, json};

use super::{Context, ReconcileError, drive, pod_ready, record_event, requeue_within, retry_later};

/// The name our Events give as their source, upstream's.
const COMPONENT: &str = "job-controller";
/// The annotation and label carrying an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Upstream's burst limit: at most this many pods created or deleted per reconcile.
const BURST: usize = 500;
/// Upstream's pod-failure backoff: 10 s, doubled per failure since the last success, at most 6 min.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// Runs the controller until the task is dropped.
pub async fn run(client: Client) {
    let results = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .run(reconcile, retry_later, Arc::new(Context { client }));
    drive("job", results).await;
}

/// What one reconcile decided: pods to create and delete, the status to write, whether the
/// Job's time to live is over, and when to look again.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Pods to create from the template, each with its completion index (Indexed Jobs only).
    pub create: Vec<Option<i64>>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// The status to write (a full JobStatus), if it differs from the current one.
    pub status: Option<Value>,
    /// Whether to delete the Job itself (ttlSecondsAfterFinished passed).
    pub delete_job: bool,
    /// When to reconcile again even if nothing changes (deadline, backoff, TTL).
    pub requeue: Option<Duration>,
    /// Events to record on the Job: (type, reason, message).
    pub events: Vec<(&'static str, &'static str, String)>,
}

/// The pods of a Job, by state.
#[derive(Debug, Default)]
struct Census<'a> {
    active: Vec<&'a Pod>,
    succeeded: Vec<&'a Pod>,
    failed: Vec<&'a Pod>,
    terminating: usize,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

fn census<'a>(pods: &'a [Pod], uid: &str) -> Census<'a> {
    let mut census = Census::default();
    let owned = pods
        .iter()
        .filter(|pod| super::controlled_by(&pod.metadata, uid));
    for pod in owned {
        match phase(pod) {
            "Succeeded" => census.succeeded.push(pod),
            "Failed" => census.failed.push(pod),
            _ if pod.metadata.deletion_timestamp.is_some() => census.terminating += 1,
            _ => census.active.push(pod),
        }
    }
    census
}

/// Container restarts of the pod (init containers included), which count as failures under
/// restartPolicy OnFailure.
fn restarts(pod: &Pod) -> i64 {
    let Some(status) = pod.status.as_ref() else {
        return 0;
    };
    [&status.init_container_statuses, &status.container_statuses]
        .into_iter()
        .flatten()
        .flatten()
        .map(|c| i64::from(c.restart_count))
        .sum()
}

/// When a finished pod finished: its containers' last finishedAt, else when it stopped being
/// Ready, else when it was deleted.
fn finished_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    containers
        .or_else(|| {
            status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .find(|c| c.type_ == "Ready" && c.status == "False")
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
        })
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn condition_true(job: &Job, type_: &str) -> bool {
    condition(job, type_).is_some_and(|c| c.status == "True")
}

/// When the Job finished (Complete or Failed), if it has.
pub fn finished_time(job: &Job) -> Option<Timestamp> {
    ["Complete", "Failed"]
        .into_iter()
        .filter_map(|t| condition(job, t).filter(|c| c.status == "True"))
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| job.status.as_ref()?.completion_time.as_ref().map(|t| t.0))
        })
        .next()
        .map(|t| t.unwrap_or(Timestamp::UNIX_EPOCH))
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now,
    })
}

fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// The pod-creation delay after `failures` failures in a row: 10 s doubling, at most 6 min.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_MAX)
}

/// Indexes as upstream writes `completedIndexes`: ascending, runs as ranges (`0-2,4`).
pub fn index_ranges(indexes: &BTreeSet<i64>) -> String {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for &i in indexes {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => runs.push((i, i)),
        }
    }
    runs.iter()
        .map(|(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Decides what to do about `job` given its pods at `now`.
pub fn plan(job: &Job, pods: &[Pod], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    let census = census(pods, &uid);
    let now_text = rfc3339(now);

    if let Some(finished) = finished_time(job) {
        // Finished Jobs keep their status; leftovers still go.
        plan.delete = census
            .active
            .iter()
            .take(BURST)
            .map(|p| p.name_any())
            .collect();
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let expires = finished
                .checked_add(SignedDuration::from_secs(i64::from(ttl)))
                .unwrap_or(finished);
            if now >= expires {
                plan.delete_job = true;
            } else {
                plan.requeue = Some(until(now, expires));
            }
        }
        return plan;
    }

    let current = job.status.clone().unwrap_or_default();
    let mut conditions: Vec<Value> = current
        .conditions
        .iter()
        .flatten()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    let set_condition = |conditions: &mut Vec<Value>, new: Value| match conditions
        .iter_mut()
        .find(|c| c["type"] == new["type"])
    {
        Some(existing) if existing["status"] == new["status"] => {}
        Some(existing) => *existing = new,
        None => conditions.push(new),
    };

    let parallelism = i64::from(spec.parallelism.unwrap_or(1).max(0));
    let completions = spec.completions.map(|c| i64::from(c.max(0)));
    let backoff_limit = i64::from(spec.backoff_limit.unwrap_or(6).max(0));
    let suspended = spec.suspend == Some(true);
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let index_of = |pod: &Pod| -> Option<i64> {
        let index: i64 = pod.annotations().get(COMPLETION_INDEX)?.parse().ok()?;
        (0..completions.unwrap_or(0))
            .contains(&index)
            .then_some(index)
    };
    let succeeded_indexes: BTreeSet<i64> = if indexed {
        census
            .succeeded
            .iter()
            .filter_map(|p| index_of(p))
            .collect()
    } else {
        BTreeSet::new()
    };
    // An Indexed Job needs one running pod per index not yet done; others are redundant.
    let mut active_indexes = BTreeSet::new();
    let (needed, redundant): (Vec<&Pod>, Vec<&Pod>) = census.active.iter().partition(|pod| {
        !indexed
            || index_of(pod)
                .is_some_and(|i| !succeeded_indexes.contains(&i) && active_indexes.insert(i))
    });
    let succeeded = if indexed {
        succeeded_indexes.len() as i64
    } else {
        census.succeeded.len() as i64
    };
    let failed = census.failed.len() as i64;
    let active = needed.len() as i64;
    let mut start_time = current.start_time.as_ref().map(|t| t.0);
    let mut completion_time = None;
    let mut new_active = active;
    let mut reported_failed = failed;

    let was_suspended = condition_true(job, "Suspended");
    if suspended {
        if !was_suspended {
            set_condition(
                &mut conditions,
                new_condition(
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    &now_text,
                ),
            );
            plan.events
                .push(("Normal", "Suspended", "Job suspended".to_owned()));
        }
    } else {
        if was_suspended {
            set_condition(
                &mut conditions,
                new_condition("Suspended", "False", "JobResumed", "Job resumed", &now_text),
            );
            plan.events
                .push(("Normal", "Resumed", "Job resumed".to_owned()));
            // Resuming restarts the activeDeadlineSeconds clock.
            start_time = Some(now);
        }
        start_time.get_or_insert(now);
    }

    let restarts: i64 = if on_failure {
        census.active.iter().map(|p| restarts(p)).sum()
    } else {
        0
    };
    let past_backoff = failed > backoff_limit
        || (on_failure
            && if backoff_limit == 0 {
                restarts > 0
            } else {
                restarts >= backoff_limit
            });
    let deadline = match (spec.active_deadline_seconds, start_time) {
        (Some(seconds), Some(start)) if !suspended => {
            start.checked_add(SignedDuration::from_secs(seconds)).ok()
        }
        _ => None,
    };
    let failure = if past_backoff {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline.is_some_and(|d| now >= d) {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    let complete = match completions {
        Some(completions) => succeeded >= completions,
        None => succeeded > 0 && active == 0,
    };

    let delete_all = |plan: &mut Plan| {
        plan.delete = census
            .active
            .iter()
            .take(BURST)
            .map(|p| p.name_any())
            .collect();
    };
    if let Some((reason, message)) = failure {
        delete_all(&mut plan);
        // Pods stopped for the failure count as failed, as upstream counts them.
        reported_failed += census.active.len() as i64;
        new_active = 0;
        set_condition(
            &mut conditions,
            new_condition("FailureTarget", "True", reason, message, &now_text),
        );
        set_condition(
            &mut conditions,
            new_condition("Failed", "True", reason, message, &now_text),
        );
        plan.events.push(("Warning", reason, message.to_owned()));
    } else if complete {
        delete_all(&mut plan);
        new_active = 0;
        completion_time = Some(now);
        let message = "Reached expected number of succeeded pods";
        set_condition(
            &mut conditions,
            new_condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                message,
                &now_text,
            ),
        );
        set_condition(
            &mut conditions,
            new_condition("Complete", "True", "CompletionsReached", message, &now_text),
        );
        plan.events
            .push(("Normal", "Completed", "Job completed".to_owned()));
    } else if suspended {
        delete_all(&mut plan);
        new_active = 0;
    } else {
        let want = match completions {
            Some(completions) => parallelism.min(completions - succeeded).max(0),
            // A work queue starts no pods once one succeeded, and leaves the rest running.
            None if succeeded > 0 => active,
            None => parallelism,
        };
        // With podReplacementPolicy Failed, a terminating pod holds its slot until it is gone.
        let occupied = if spec.pod_replacement_policy.as_deref() == Some("Failed") {
            active + census.terminating as i64
        } else {
            active
        };
        if occupied < want {
            let failures_in_a_row = {
                let last_success = census.succeeded.iter().filter_map(|p| finished_at(p)).max();
                census
                    .failed
                    .iter()
                    .filter_map(|p| finished_at(p))
                    .filter(|t| last_success.is_none_or(|s| *t > s))
                    .collect::<Vec<_>>()
            };
            let next_try = failures_in_a_row.iter().max().and_then(|last| {
                let count = u32::try_from(failures_in_a_row.len()).unwrap_or(u32::MAX);
                let delay = SignedDuration::try_from(backoff(count)).ok()?;
                last.checked_add(delay).ok()
            });
            match next_try {
                Some(at) if at > now => plan.requeue = Some(until(now, at)),
                _ => {
                    let count = usize::try_from(want - occupied).unwrap_or(0).min(BURST);
                    plan.create = if indexed {
                        (0..completions.unwrap_or(0))
                            .filter(|i| {
                                !succeeded_indexes.contains(i) && !active_indexes.contains(i)
                            })
                            .take(count)
                            .map(Some)
                            .collect()
                    } else {
                        vec![None; count]
                    };
                    new_active = active + plan.create.len() as i64;
                }
            }
        } else if active > want {
            let excess = usize::try_from(active - want).unwrap_or(0);
            plan.delete = super::replicaset::deletion_order(needed.clone())
                .into_iter()
                .take(excess.min(BURST))
                .map(|p| p.name_any())
                .collect();
            new_active = active - plan.delete.len() as i64;
        }
        plan.delete
            .extend(redundant.iter().take(BURST).map(|p| p.name_any()));
        if let Some(deadline) = deadline {
            let wake = until(now, deadline);
            plan.requeue = Some(plan.requeue.map_or(wake, |r| r.min(wake)));
        }
    }

    let ready = census
        .active
        .iter()
        .filter(|p| pod_ready(p) && !plan.delete.contains(&p.name_any()))
        .count();
    let terminating = census.terminating + plan.delete.len();
    let mut status = json!({
        "active": new_active,
        "ready": ready,
        "succeeded": succeeded,
        "failed": reported_failed,
        "terminating": terminating,
        "conditions": conditions,
        "startTime": start_time.map(rfc3339),
        "completionTime": completion_time.map(rfc3339),
        "completedIndexes": indexed.then(|| index_ranges(&succeeded_indexes)).filter(|r| !r.is_empty()),
    });
    if let Some(map) = status.as_object_mut() {
        map.retain(|_, v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
    }
    let as_is = json!({
        "active": current.active.unwrap_or(0),
        "ready": current.ready.unwrap_or(0),
        "succeeded": current.succeeded.unwrap_or(0),
        "failed": current.failed.unwrap_or(0),
        "terminating": current.terminating.unwrap_or(0),
        "conditions": current.conditions.iter().flatten().filter_map(|c| serde_json::to_value(c).ok()).collect::<Vec<_>>(),
        "startTime": current.start_time.map(|t| rfc3339(t.0)),
        "completionTime": current.completion_time.map(|t| rfc3339(t.0)),
        "completedIndexes": current.completed_indexes.filter(|r| !r.is_empty()),
    });
    let mut as_is = as_is;
    if let Some(map) = as_is.as_object_mut() {
        map.retain(|_, v| !v.is_null() && v.as_array().is_none_or(|a| !a.is_empty()));
    }
    if status != as_is {
        plan.status = Some(status);
    }
    plan
}

/// What upstream gives an Indexed Job's pod: its index in an annotation, a label and the
/// `JOB_COMPLETION_INDEX` environment variable, and the hostname `<job>-<index>`.
fn index_pod(job: &str, index: i64, metadata: &mut ObjectMeta, spec: &mut PodSpec) {
    metadata.generate_name = Some(format!("{job}-{index}-"));
    for map in [&mut metadata.annotations, &mut metadata.labels] {
        map.get_or_insert_default()
            .insert(COMPLETION_INDEX.into(), index.to_string());
    }
    spec.hostname
        .get_or_insert_with(|| format!("{job}-{index}"));
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for container in containers {
        let env = container.env.get_or_insert_default();
        if env.iter().all(|e| e.name != "JOB_COMPLETION_INDEX") {
            env.push(EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                    }),
                    ..EnvVarSource::default()
                }),
            });
        }
    }
}

async fn reconcile(cached: Arc<Job>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let fail = ReconcileError::about("Job", &namespace, &name);
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    // The watch can lag our own status writes; decide from the stored Job.
    let Some(job) = jobs.get_opt(&name).await.map_err(fail)? else {
        return Ok(Action::await_change());
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let spec = job.spec.clone().unwrap_or_default();
    let pods_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut list = ListParams::default();
    if let Some(selector) = spec
        .selector
        .clone()
        .and_then(|s| Selector::try_from(s).ok())
    {
        list = list.labels_from(&selector);
    }
    let pods = pods_api.list(&list).await.map_err(fail)?.items;
    let plan = plan(&job, &pods, Timestamp::now());

    if plan.delete_job {
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: None,
            ..DeleteParams::default()
        };
        match jobs.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(fail(err)),
        }
        return Ok(Action::await_change());
    }

    let uid = job.uid().unwrap_or_default();
    let owner = OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: name.clone(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    for index in &plan.create {
        let mut metadata = spec.template.metadata.clone().unwrap_or_default();
        metadata.generate_name = Some(format!("{name}-"));
        metadata.name = None;
        metadata.namespace = Some(namespace.clone());
        metadata.owner_references = Some(vec![owner.clone()]);
        let mut pod_spec = spec.template.spec.clone();
        if let Some(index) = index {
            index_pod(
                &name,
                *index,
                &mut metadata,
                pod_spec.get_or_insert_default(),
            );
        }
        let pod = Pod {
            metadata,
            spec: pod_spec,
            status: None,
        };
        let created = pods_api
            .create(&PostParams::default(), &pod)
            .await
            .map_err(fail)?;
        let message = format!("Created pod: {}", created.name_any());
        record_event(
            &ctx.client,
            &job,
            COMPONENT,
            ("Normal", "SuccessfulCreate", &message),
        )
        .await;
    }
    for pod in &plan.delete {
        match pods_api.delete(pod, &DeleteParams::default()).await {
            Ok(_) => {
                let message = format!("Deleted pod: {pod}");
                record_event(
                    &ctx.client,
                    &job,
                    COMPONENT,
                    ("Normal", "SuccessfulDelete", &message),
                )
                .await;
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(fail(err)),
        }
    }
    if let Some(status) = &plan.status {
        jobs.patch_status(
            &name,
            &PatchParams::default(),
            // A write from a stale view of the Job fails (and is retried) instead of undoing
            // a newer status.
            &Patch::Merge(&json!({
                "metadata": {"resourceVersion": job.resource_version()},
                "status": status,
            })),
        )
        .await
        .map_err(fail)?;
        for (type_, reason, message) in &plan.events {
            record_event(&ctx.client, &job, COMPONENT, (type_, reason, message)).await;
        }
    }
    Ok(plan.requeue.map_or_else(Action::await_change, |after| {
        // A little late rather than early, so the deadline has passed when we look.
        requeue_within(after + Duration::from_millis(100))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-03-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    fn job(spec: Value, status: Value) -> Job {
        let mut spec = spec;
        spec["template"] = json!({"spec": {"restartPolicy": spec.get("restartPolicy").cloned().unwrap_or(json!("Never")), "containers": [{"name": "c"}]}});
        if let Some(map) = spec.as_object_mut() {
            map.remove("restartPolicy");
        }
        serde_json::from_value(json!({
            "metadata": {"name": "pi", "namespace": "default", "uid": "job-uid"},
            "spec": spec,
            "status": status,
        }))
        .unwrap()
    }

    fn pod(name: &str, phase: &str, extra_status: Value) -> Pod {
        let mut status = json!({"phase": phase});
        if let (Some(status), Some(extra)) = (status.as_object_mut(), extra_status.as_object()) {
            status.extend(extra.clone());
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": "pi", "uid": "job-uid", "controller": true}
            ]},
            "spec": {"containers": [{"name": "c"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn failed_at(name: &str, at: &str) -> Pod {
        pod(
            name,
            "Failed",
            json!({"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "finishedAt": at}}}]}),
        )
    }

    fn status(plan: &Plan) -> &Value {
        plan.status.as_ref().expect("a status update")
    }

    fn condition_types(plan: &Plan) -> Vec<(String, String)> {
        status(plan)["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["type"].as_str().unwrap().to_owned(),
                    c["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn runs_at_most_parallelism_and_no_more_than_remain() {
        let j = job(json!({"completions": 3, "parallelism": 2}), json!({}));
        let plan = plan(&j, &[], now());
        assert_eq!(plan.create.len(), 2);
        assert_eq!(status(&plan)["active"], 2);
        assert_eq!(status(&plan)["startTime"], NOW);

        let pods = [
            pod("a", "Succeeded", json!({})),
            pod("b", "Succeeded", json!({})),
            pod("c", "Running", json!({})),
        ];
        let plan = super::plan(&j, &pods, now());
        assert_eq!(
            plan.create.len(),
            0,
            "one completion left and one pod running"
        );
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn completes_when_completions_succeeded() {
        let j = job(
            json!({"completions": 2, "parallelism": 2}),
            json!({"startTime": "2026-03-01T11:59:00Z"}),
        );
        let pods = [
            pod("a", "Succeeded", json!({})),
            pod("b", "Succeeded", json!({})),
        ];
        let plan = plan(&j, &pods, now());
        assert_eq!(plan.create.len(), 0);
        assert_eq!(status(&plan)["succeeded"], 2);
        assert_eq!(status(&plan)["completionTime"], NOW);
        assert_eq!(
            condition_types(&plan),
            [
                ("SuccessCriteriaMet".into(), "CompletionsReached".into()),
                ("Complete".into(), "CompletionsReached".into())
            ]
        );
    }

    #[test]
    fn work_queue_stops_starting_pods_after_a_success() {
        let j = job(json!({"parallelism": 3}), json!({"startTime": NOW}));
        let pods = [
            pod("a", "Succeeded", json!({})),
            pod("b", "Running", json!({})),
        ];
        let plan = plan(&j, &pods, now());
        assert_eq!((plan.create.len(), plan.delete.len()), (0, 0));
        assert!(condition_types(&plan).is_empty() || plan.status.is_none());

        let pods = [
            pod("a", "Succeeded", json!({})),
            pod("b", "Failed", json!({})),
        ];
        let plan = super::plan(&j, &pods, now());
        assert!(condition_types(&plan).contains(&("Complete".into(), "CompletionsReached".into())));

        let plan = super::plan(&j, &[pod("b", "Running", json!({}))], now());
        assert_eq!(
            plan.create.len(),
            2,
            "no success yet: keep parallelism running"
        );
    }

    #[test]
    fn fails_past_the_backoff_limit_and_stops_the_rest() {
        let j = job(
            json!({"completions": 3, "parallelism": 2, "backoffLimit": 1}),
            json!({"startTime": NOW}),
        );
        let one = [failed_at("a", "2026-03-01T11:00:00Z")];
        let plan = plan(&j, &one, now());
        assert_eq!(plan.create.len(), 2, "one failure is within the limit");

        let two = [
            failed_at("a", "2026-03-01T11:00:00Z"),
            failed_at("b", "2026-03-01T11:00:00Z"),
            pod("c", "Running", json!({})),
        ];
        let plan = super::plan(&j, &two, now());
        assert_eq!(plan.create.len(), 0);
        assert_eq!(plan.delete, ["c"]);
        assert_eq!(
            status(&plan)["failed"],
            3,
            "the stopped pod counts as failed"
        );
        assert_eq!(status(&plan)["active"], 0);
        assert_eq!(
            condition_types(&plan),
            [
                ("FailureTarget".into(), "BackoffLimitExceeded".into()),
                ("Failed".into(), "BackoffLimitExceeded".into())
            ]
        );
    }

    #[test]
    fn restarts_count_against_the_backoff_limit_under_on_failure() {
        let j = job(
            json!({"backoffLimit": 2, "restartPolicy": "OnFailure"}),
            json!({"startTime": NOW, "active": 1}),
        );
        let restarted = |count: i32| {
            pod(
                "a",
                "Running",
                json!({"containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": count}]}),
            )
        };
        assert!(plan(&j, &[restarted(1)], now()).status.is_none());
        let plan = plan(&j, &[restarted(2)], now());
        assert_eq!(
            condition_types(&plan).last().unwrap(),
            &("Failed".into(), "BackoffLimitExceeded".into())
        );
        assert_eq!(plan.delete, ["a"]);
    }

    #[test]
    fn new_pods_wait_out_the_failure_backoff() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(40), BACKOFF_MAX);
        let j = job(json!({"backoffLimit": 6}), json!({"startTime": NOW}));
        let plan = plan(&j, &[failed_at("a", "2026-03-01T11:59:55Z")], now());
        assert_eq!(plan.create.len(), 0);
        assert_eq!(plan.requeue, Some(Duration::from_secs(5)));
        let later: Timestamp = "2026-03-01T12:00:06Z".parse().unwrap();
        let plan = super::plan(&j, &[failed_at("a", "2026-03-01T11:59:55Z")], later);
        assert_eq!(plan.create.len(), 1);
    }

    #[test]
    fn fails_past_the_active_deadline_and_wakes_up_for_it() {
        let j = job(
            json!({"activeDeadlineSeconds": 30}),
            json!({"startTime": "2026-03-01T11:59:50Z", "active": 1}),
        );
        let running = [pod("a", "Running", json!({}))];
        let plan = plan(&j, &running, now());
        assert!(plan.status.is_none());
        assert_eq!(plan.requeue, Some(Duration::from_secs(20)));

        let late: Timestamp = "2026-03-01T12:00:20Z".parse().unwrap();
        let plan = super::plan(&j, &running, late);
        assert_eq!(plan.delete, ["a"]);
        assert_eq!(
            condition_types(&plan).last().unwrap(),
            &("Failed".into(), "DeadlineExceeded".into())
        );
    }

    #[test]
    fn suspend_stops_pods_and_resume_restarts_the_clock() {
        let j = job(
            json!({"suspend": true, "activeDeadlineSeconds": 30}),
            json!({"startTime": "2026-03-01T10:00:00Z", "active": 1}),
        );
        let plan = plan(&j, &[pod("a", "Running", json!({}))], now());
        assert_eq!(plan.delete, ["a"]);
        assert_eq!(plan.create.len(), 0);
        assert_eq!(
            condition_types(&plan),
            [("Suspended".into(), "JobSuspended".into())]
        );

        let resumed = job(
            json!({"suspend": false, "activeDeadlineSeconds": 30}),
            json!({"startTime": "2026-03-01T10:00:00Z", "conditions": [
                {"type": "Suspended", "status": "True", "reason": "JobSuspended"}]}),
        );
        let plan = super::plan(&resumed, &[], now());
        assert_eq!(plan.create.len(), 1, "the old start time no longer counts");
        assert_eq!(status(&plan)["startTime"], NOW);
        assert_eq!(status(&plan)["conditions"][0]["status"], "False");
    }

    #[test]
    fn finished_jobs_only_wait_for_their_time_to_live() {
        let finished = json!({"startTime": "2026-03-01T11:00:00Z", "completionTime": "2026-03-01T11:59:00Z",
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-03-01T11:59:00Z"}]});
        let j = job(json!({"ttlSecondsAfterFinished": 100}), finished.clone());
        let plan = plan(&j, &[pod("a", "Succeeded", json!({}))], now());
        assert_eq!(plan.requeue, Some(Duration::from_secs(40)));
        assert!(!plan.delete_job);
        assert!(plan.status.is_none());
        let expired = job(json!({"ttlSecondsAfterFinished": 60}), finished);
        assert!(super::plan(&expired, &[], now()).delete_job);
    }

    fn indexed(name: &str, phase: &str, index: i64) -> Pod {
        let mut pod = pod(name, phase, json!({}));
        pod.metadata.annotations = Some([(COMPLETION_INDEX.to_owned(), index.to_string())].into());
        pod
    }

    #[test]
    fn indexed_jobs_run_each_missing_index_once() {
        let j = job(
            json!({"completionMode": "Indexed", "completions": 4, "parallelism": 2}),
            json!({"startTime": NOW}),
        );
        assert_eq!(plan(&j, &[], now()).create, [Some(0), Some(1)]);

        let pods = [
            indexed("a", "Succeeded", 0),
            indexed("b", "Running", 1),
            indexed("b-twin", "Running", 1),
            indexed("c", "Running", 0),
            indexed("d", "Failed", 2),
        ];
        let plan = plan(&j, &pods, now());
        assert_eq!(
            plan.delete,
            ["b-twin", "c"],
            "a second pod for an index, and one for a done index, are not needed"
        );
        assert_eq!(
            plan.create,
            [Some(2)],
            "the failed index is retried, lowest first"
        );
        assert_eq!(status(&plan)["completedIndexes"], "0");
        assert_eq!(status(&plan)["succeeded"], 1);
        assert_eq!(status(&plan)["active"], 2);

        let done: Vec<Pod> = (0..4)
            .map(|i| indexed(&format!("p{i}"), "Succeeded", i))
            .collect();
        let plan = super::plan(&j, &done, now());
        assert_eq!(status(&plan)["completedIndexes"], "0-3");
        assert!(condition_types(&plan).contains(&("Complete".into(), "CompletionsReached".into())));
    }

    #[test]
    fn completed_indexes_are_written_as_ranges() {
        let set = |v: &[i64]| v.iter().copied().collect::<BTreeSet<i64>>();
        assert_eq!(index_ranges(&set(&[])), "");
        assert_eq!(index_ranges(&set(&[3])), "3");
        assert_eq!(index_ranges(&set(&[0, 1, 2, 4, 6, 7])), "0-2,4,6-7");
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let mut metadata = ObjectMeta::default();
        let mut spec: PodSpec =
            serde_json::from_value(json!({"containers": [{"name": "a"}, {"name": "b"}]})).unwrap();
        index_pod("pi", 3, &mut metadata, &mut spec);
        assert_eq!(metadata.generate_name.as_deref(), Some("pi-3-"));
        assert_eq!(metadata.annotations.unwrap()[COMPLETION_INDEX], "3");
        assert_eq!(metadata.labels.unwrap()[COMPLETION_INDEX], "3");
        assert_eq!(spec.hostname.as_deref(), Some("pi-3"));
        for container in &spec.containers {
            let env = &container.env.as_ref().unwrap()[0];
            assert_eq!(env.name, "JOB_COMPLETION_INDEX");
            assert_eq!(
                env.value_from
                    .as_ref()
                    .unwrap()
                    .field_ref
                    .as_ref()
                    .unwrap()
                    .field_path,
                "metadata.annotations['batch.kubernetes.io/job-completion-index']"
            );
        }
    }

    #[test]
    fn pods_of_other_owners_do_not_count() {
        let j = job(json!({"completions": 1}), json!({}));
        let mut stranger = pod("x", "Succeeded", json!({}));
        stranger.metadata.owner_references = None;
        let plan = plan(&j, &[stranger], now());
        assert_eq!(plan.create.len(), 1);
    }
}
