//! The Job and CronJob controllers against a real API server and etcd. There is no kubelet:
//! the tests play it by patching pod status, and create Ready nodes so the scheduler binds pods.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::{
    future::Future,
    time::{Duration, Instant},
};

use crate::common::Cluster;
use k8s_openapi::api::{
    batch::v1::{CronJob, Job},
    core::v1::{Event, Pod},
};
use kube::{
    Api, ResourceExt as _,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

const NODES: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus:\n  conditions: [{type: Ready, status: \"True\"}]\n  allocatable: {cpu: \"4\", memory: 8Gi, pods: \"110\"}\n";

/// Polls `check` every 100 ms until it returns Some, for at most `limit`; panics with `what`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    // Bounded by count too, in case a check itself is slow.
    for _ in 0..(limit.as_millis() / 100 + 1) {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

fn apply(cluster: &Cluster, name: &str, yaml: &str) {
    cluster.kubectl_ok(&["apply", "-f", &cluster.write(name, yaml).to_string_lossy()]);
}

fn job_yaml(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: work, image: busybox:1.36}}]\n"
    )
}

/// Pods owned by the Job `uid`.
async fn pods_of(pods: &Api<Pod>, uid: &str) -> Vec<Pod> {
    pods.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.owner_references().iter().any(|o| o.uid == uid))
        .collect()
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Pods not finished and not being deleted.
fn running(pods: &[Pod]) -> Vec<&Pod> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !matches!(phase(p), "Succeeded" | "Failed"))
        .collect()
}

/// Plays the kubelet: the pod's container ran and exited with `exit_code`.
async fn finish(pods: &Api<Pod>, name: &str, exit_code: i32) {
    let now = flotilla_controlplane::apiserver::meta::now();
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    let status = json!({"status": {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
        "containerStatuses": [{
            "name": "work", "image": "busybox:1.36", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": now, "finishedAt": now}},
        }],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
}

fn condition(job: &Job, type_: &str) -> Option<(String, String)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completions_run_within_parallelism_and_deleting_the_job_deletes_its_pods()
-> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    apply(&cluster, "nodes.yaml", NODES);
    apply(
        &cluster,
        "job.yaml",
        &job_yaml("batch", "  completions: 3\n  parallelism: 2\n"),
    );
    let client = cluster.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let job = jobs.get("batch").await?;
    let uid = job.uid().unwrap();
    // The API server generated the selector and the pod labels from the uid.
    assert_eq!(
        job.spec
            .as_ref()
            .unwrap()
            .selector
            .as_ref()
            .unwrap()
            .match_labels,
        Some([("batch.kubernetes.io/controller-uid".to_owned(), uid.clone())].into())
    );

    let mut finished = Vec::new();
    for round in 0..3 {
        let active = eventually(
            &format!("round {round}: a running pod"),
            Duration::from_secs(15),
            || async {
                let all = pods_of(&pods, &uid).await;
                let active: Vec<String> = running(&all).iter().map(|p| p.name_any()).collect();
                assert!(
                    active.len() <= 2,
                    "at most parallelism pods at once: {active:?}"
                );
                // Wait for the controller to top up to min(parallelism, remaining).
                let want = 2.min(3 - round);
                (active.len() == want).then_some(active)
            },
        )
        .await;
        let pod = pods.get(&active[0]).await?;
        assert_eq!(pod.labels()["batch.kubernetes.io/job-name"], "batch");
        assert_eq!(pod.labels()["batch.kubernetes.io/controller-uid"], uid);
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.controller,
                owner.block_owner_deletion
            ),
            ("Job", Some(true), Some(true))
        );
        finish(&pods, &active[0], 0).await;
        finished.push(active[0].clone());
    }

    let done = eventually("the Job to complete", Duration::from_secs(15), || async {
        let job = jobs.get("batch").await.unwrap();
        (condition(&job, "Complete").map(|c| c.0) == Some("True".into())).then_some(job)
    })
    .await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(status.active.unwrap_or(0), 0);
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    let all = pods_of(&pods, &uid).await;
    assert_eq!(all.len(), 3, "one pod per completion, no extra");
    assert!(all.iter().all(|p| phase(p) == "Succeeded"));
    let table = cluster.kubectl_ok(&["get", "job", "batch"]);
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("3/3") && row.contains("Complete"),
        "kubectl get job: {table}"
    );

    cluster.kubectl_ok(&["delete", "job", "batch"]);
    eventually("the Job's pods to go", Duration::from_secs(15), || async {
        let left = pods_of(&pods, &uid).await;
        left.iter()
            .all(|p| p.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_past_the_backoff_limit_fail_the_job() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    apply(&cluster, "nodes.yaml", NODES);
    apply(
        &cluster,
        "job.yaml",
        &job_yaml("flaky", "  backoffLimit: 1\n"),
    );
    let client = cluster.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let uid = jobs.get("flaky").await?.uid().unwrap();

    let first = eventually("the first pod", Duration::from_secs(15), || async {
        running(&pods_of(&pods, &uid).await)
            .first()
            .map(|p| p.name_any())
    })
    .await;
    finish(&pods, &first, 1).await;
    let failed_at = Instant::now();
    // One failure is within the limit: a replacement, after upstream's 10 s backoff.
    let second = eventually("a replacement pod", Duration::from_secs(25), || async {
        running(&pods_of(&pods, &uid).await)
            .first()
            .map(|p| p.name_any())
    })
    .await;
    assert_ne!(first, second);
    assert!(
        failed_at.elapsed() >= Duration::from_secs(8),
        "the replacement came {:?} after the failure, before the backoff",
        failed_at.elapsed()
    );
    let job = jobs.get("flaky").await?;
    assert_eq!(job.status.as_ref().unwrap().failed, Some(1));
    assert_eq!(condition(&job, "Failed"), None);

    finish(&pods, &second, 1).await;
    let job = eventually("the Job to fail", Duration::from_secs(15), || async {
        let job = jobs.get("flaky").await.unwrap();
        condition(&job, "Failed").is_some().then_some(job)
    })
    .await;
    assert_eq!(
        condition(&job, "Failed"),
        Some(("True".into(), "BackoffLimitExceeded".into()))
    );
    assert_eq!(job.status.as_ref().unwrap().failed, Some(2));
    // Past the limit nothing new starts, even after a backoff's worth of time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = pods_of(&pods, &uid).await;
    assert_eq!(all.len(), 2, "no pod after the Job failed");
    assert!(running(&all).is_empty());
    let table = cluster.kubectl_ok(&["get", "job", "flaky"]);
    assert!(table.contains("Failed") && table.contains("0/1"), "{table}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_active_deadline_fails_the_job_and_stops_its_pods() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    apply(&cluster, "nodes.yaml", NODES);
    apply(
        &cluster,
        "job.yaml",
        &job_yaml(
            "slow",
            "  activeDeadlineSeconds: 2\n  parallelism: 2\n  completions: 4\n  ttlSecondsAfterFinished: 1\n",
        ),
    );
    let client = cluster.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let uid = jobs.get("slow").await?.uid().unwrap();
    eventually("two pods", Duration::from_secs(10), || async {
        (running(&pods_of(&pods, &uid).await).len() == 2).then_some(())
    })
    .await;
    let started = Instant::now();
    let job = eventually("the deadline", Duration::from_secs(10), || async {
        let job = jobs.get("slow").await.unwrap();
        condition(&job, "Failed").is_some().then_some(job)
    })
    .await;
    assert!(
        // 2 s after the start, plus slack for a loaded machine; without the controller's
        // timed wake-up nothing would look at the Job again.
        started.elapsed() <= Duration::from_secs(6),
        "failed {:?} after the pods started",
        started.elapsed()
    );
    assert_eq!(
        condition(&job, "Failed"),
        Some(("True".into(), "DeadlineExceeded".into()))
    );
    assert_eq!(job.status.as_ref().unwrap().active.unwrap_or(0), 0);
    let all = pods_of(&pods, &uid).await;
    assert_eq!(all.len(), 2);
    assert!(
        all.iter().all(|p| p.metadata.deletion_timestamp.is_some()),
        "the Job's pods are being deleted"
    );
    // ttlSecondsAfterFinished: the finished Job goes a second later.
    eventually(
        "the Job's time to live",
        Duration::from_secs(10),
        || async { matches!(jobs.get_opt("slow").await, Ok(None)).then_some(()) },
    )
    .await;
    Ok(())
}

fn cron_yaml(name: &str, schedule: &str, extra: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  schedule: \"{schedule}\"\n{extra}  jobTemplate:\n    metadata: {{labels: {{from: {name}}}}}\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers: [{{name: work, image: busybox:1.36}}]\n"
    )
}

async fn jobs_of(jobs: &Api<Job>, uid: &str) -> Vec<Job> {
    jobs.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|j| {
            j.owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cron_job_runs_on_schedule() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    apply(
        &cluster,
        "cron.yaml",
        &cron_yaml("tick", "* * * * *", "  concurrencyPolicy: Forbid\n"),
    );
    let client = cluster.client().await?;
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let uid = cron_jobs.get("tick").await?.uid().unwrap();
    // The first minute boundary is at most 60 s away.
    let job = eventually("the first run", Duration::from_secs(75), || async {
        jobs_of(&jobs, &uid).await.into_iter().next()
    })
    .await;
    let scheduled = job.annotations()["batch.kubernetes.io/cronjob-scheduled-timestamp"].clone();
    let at: jiff::Timestamp = scheduled.parse()?;
    assert_eq!(
        at.as_second() % 60,
        0,
        "runs on minute boundaries: {scheduled}"
    );
    assert_eq!(job.name_any(), format!("tick-{}", at.as_second() / 60));
    assert_eq!(job.labels()["from"], "tick");
    let owner = &job.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("CronJob", "tick", Some(true))
    );
    let cron_job = eventually("status to list it", Duration::from_secs(10), || async {
        let cron_job = cron_jobs.get("tick").await.unwrap();
        let status = cron_job.status.clone()?;
        (status.active.as_ref()?.len() == 1).then_some(cron_job)
    })
    .await;
    let status = cron_job.status.unwrap();
    assert_eq!(
        status.active.unwrap()[0].name.as_deref(),
        Some(job.name_any().as_str())
    );
    assert_eq!(status.last_schedule_time.map(|t| t.0), Some(at));
    let events: Api<Event> = Api::namespaced(cluster.client().await?, "default");
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("tick"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"SuccessfulCreate".to_owned()),
        "{reasons:?}"
    );
    assert!(
        !reasons.contains(&"UnexpectedJob".to_owned()),
        "its own Job is never unexpected: {reasons:?}"
    );
    let table = cluster.kubectl_ok(&["get", "cronjob", "tick"]);
    let row = table.lines().nth(1).unwrap_or_default();
    // ACTIVE is the third column from the end (the schedule has spaces).
    assert!(
        row.split_whitespace().rev().nth(2) == Some("1"),
        "one ACTIVE: {table}"
    );
    Ok(())
}

/// Makes the CronJob believe its last run was `minutes` ago, so the current minute is due.
async fn last_ran_minutes_ago(cron_jobs: &Api<CronJob>, name: &str, minutes: i64) {
    let then = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_mins(minutes))
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:00Z")
        .to_string();
    cron_jobs
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"lastScheduleTime": then}})),
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrency_policies_forbid_and_replace() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    apply(
        &cluster,
        "cron.yaml",
        &cron_yaml(
            "guarded",
            "* * * * *",
            "  concurrencyPolicy: Forbid\n  suspend: true\n",
        ),
    );
    let client = cluster.client().await?;
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client, "default");
    let cron_job = cron_jobs.get("guarded").await?;
    let uid = cron_job.uid().unwrap();
    // A run still going, as if started earlier.
    let running: Job = serde_json::from_value(json!({
        "metadata": {"name": "guarded-earlier", "namespace": "default", "ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "CronJob", "name": "guarded", "uid": uid, "controller": true}
        ]},
        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox:1.36"}]}}},
    }))?;
    let running = jobs.create(&PostParams::default(), &running).await?;
    // Recorded as the CronJob's active run, the way the controller records its own.
    let reference = json!({"apiVersion": "batch/v1", "kind": "Job", "namespace": "default",
        "name": "guarded-earlier", "uid": running.uid()});
    cron_jobs
        .patch_status(
            "guarded",
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"active": [reference]}})),
        )
        .await?;
    last_ran_minutes_ago(&cron_jobs, "guarded", 10).await;
    cluster.kubectl_ok(&[
        "patch",
        "cronjob",
        "guarded",
        "-p",
        "{\"spec\":{\"suspend\":false}}",
    ]);

    eventually(
        "Forbid to hold back the due run",
        Duration::from_secs(15),
        || async {
            events
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .any(|e| {
                    e.involved_object.name.as_deref() == Some("guarded")
                        && e.reason.as_deref() == Some("JobAlreadyActive")
                })
                .then_some(())
        },
    )
    .await;
    let names: Vec<String> = jobs_of(&jobs, &uid)
        .await
        .iter()
        .map(|j| j.name_any())
        .collect();
    assert_eq!(names, ["guarded-earlier"], "Forbid starts nothing new");

    // Replace stops the running one and starts the due run.
    cluster.kubectl_ok(&[
        "patch",
        "cronjob",
        "guarded",
        "-p",
        "{\"spec\":{\"concurrencyPolicy\":\"Replace\"}}",
    ]);
    let replaced = eventually("the replacement", Duration::from_secs(15), || async {
        let owned = jobs_of(&jobs, &uid).await;
        (owned.len() == 1 && owned[0].name_any() != "guarded-earlier").then_some(owned)
    })
    .await;
    let name = replaced[0].name_any();
    let minute: i64 = name.strip_prefix("guarded-").unwrap().parse()?;
    let now_minute = jiff::Timestamp::now().as_second() / 60;
    assert!(
        (now_minute - 1..=now_minute).contains(&minute),
        "the latest due minute ({now_minute}) runs, not the missed ones: {name}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_limits_prune_finished_jobs() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    apply(
        &cluster,
        "cron.yaml",
        &cron_yaml(
            "nightly",
            "0 3 1 1 *",
            "  successfulJobsHistoryLimit: 1\n  failedJobsHistoryLimit: 1\n",
        ),
    );
    // The schedule is checked on the way in, with upstream's message.
    let err = cluster.kubectl_err(&[
        "apply",
        "-f",
        &cluster
            .write("bad.yaml", &cron_yaml("bad", "61 * * * *", ""))
            .to_string_lossy(),
    ]);
    assert!(
        err.contains("spec.schedule: Invalid value: \"61 * * * *\""),
        "{err}"
    );
    let client = cluster.client().await?;
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let uid = cron_jobs.get("nightly").await?.uid().unwrap();
    let finished = [
        ("nightly-1", "Complete", "2026-01-01T01:00:00Z"),
        ("nightly-2", "Failed", "2026-01-01T02:00:00Z"),
        ("nightly-3", "Complete", "2026-01-01T03:00:00Z"),
        ("nightly-4", "Failed", "2026-01-01T04:00:00Z"),
        ("nightly-5", "Complete", "2026-01-01T05:00:00Z"),
    ];
    for (name, _, _) in finished {
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "CronJob", "name": "nightly", "uid": uid, "controller": true}
            ]},
            "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox:1.36"}]}}},
        }))?;
        jobs.create(&PostParams::default(), &job).await?;
    }
    for (name, outcome, start) in finished {
        // Let the Job controller record the suspension first, so it does not overwrite ours.
        eventually(
            "the Job to be suspended",
            Duration::from_secs(10),
            || async {
                let job = jobs.get(name).await.unwrap();
                condition(&job, "Suspended").map(|_| ())
            },
        )
        .await;
        let end = start.replace(":00:00Z", ":30:00Z");
        let mut status = json!({"startTime": start, "conditions": [
            {"type": outcome, "status": "True", "lastTransitionTime": end}]});
        if outcome == "Complete" {
            status["completionTime"] = json!(end);
            status["succeeded"] = json!(1);
        } else {
            status["failed"] = json!(1);
        }
        jobs.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await?;
    }
    let left = eventually(
        "the oldest finished Jobs to go",
        Duration::from_secs(15),
        || async {
            let mut names: Vec<String> = jobs_of(&jobs, &uid)
                .await
                .iter()
                .filter(|j| j.metadata.deletion_timestamp.is_none())
                .map(|j| j.name_any())
                .collect();
            names.sort();
            (names.len() == 2).then_some(names)
        },
    )
    .await;
    assert_eq!(left, ["nightly-4", "nightly-5"]);
    // The controller may record an earlier Job's completion first (seen under load); wait for
    // the latest one, bounded, and then check it.
    let latest = "2026-01-01T05:30:00Z".parse::<jiff::Timestamp>()?;
    let status = eventually("lastSuccessfulTime", Duration::from_secs(10), || async {
        let status = cron_jobs.get("nightly").await.unwrap().status?;
        let time = status.last_successful_time.as_ref()?;
        (time.0 == latest).then_some(status)
    })
    .await;
    assert_eq!(
        status.last_successful_time.unwrap().0,
        "2026-01-01T05:30:00Z".parse::<jiff::Timestamp>()?
    );
    assert!(
        status.active.unwrap_or_default().is_empty(),
        "finished Jobs are not active"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suspended_job_starts_when_resumed() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    apply(&cluster, "nodes.yaml", NODES);
    apply(
        &cluster,
        "job.yaml",
        &job_yaml(
            "later",
            "  suspend: true\n  parallelism: 2\n  completions: 2\n",
        ),
    );
    let client = cluster.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let uid = jobs.get("later").await?.uid().unwrap();
    let job = eventually(
        "the Suspended condition",
        Duration::from_secs(10),
        || async {
            let job = jobs.get("later").await.unwrap();
            condition(&job, "Suspended").is_some().then_some(job)
        },
    )
    .await;
    assert_eq!(
        condition(&job, "Suspended"),
        Some(("True".into(), "JobSuspended".into()))
    );
    assert!(job.status.as_ref().unwrap().start_time.is_none());
    assert!(
        pods_of(&pods, &uid).await.is_empty(),
        "no pods while suspended"
    );
    let table = cluster.kubectl_ok(&["get", "job", "later"]);
    assert!(table.contains("Suspended"), "{table}");

    cluster.kubectl_ok(&[
        "patch",
        "job",
        "later",
        "-p",
        "{\"spec\":{\"suspend\":false}}",
    ]);
    eventually("pods after resuming", Duration::from_secs(10), || async {
        (running(&pods_of(&pods, &uid).await).len() == 2).then_some(())
    })
    .await;
    let job = eventually("the resumed status", Duration::from_secs(10), || async {
        let job = jobs.get("later").await.unwrap();
        (condition(&job, "Suspended").map(|c| c.0) == Some("False".into())).then_some(job)
    })
    .await;
    assert!(job.status.as_ref().unwrap().start_time.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_indexed_job_runs_one_pod_per_index() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    apply(&cluster, "nodes.yaml", NODES);
    apply(
        &cluster,
        "job.yaml",
        &job_yaml(
            "shards",
            "  completionMode: Indexed\n  completions: 3\n  parallelism: 3\n",
        ),
    );
    let client = cluster.client().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client, "default");
    let uid = jobs.get("shards").await?.uid().unwrap();
    let started = eventually("three pods", Duration::from_secs(10), || async {
        let all = pods_of(&pods, &uid).await;
        (running(&all).len() == 3).then_some(all)
    })
    .await;
    let mut indexes: Vec<(String, String)> = started
        .iter()
        .map(|p| {
            (
                p.annotations()["batch.kubernetes.io/job-completion-index"].clone(),
                p.spec
                    .as_ref()
                    .unwrap()
                    .hostname
                    .clone()
                    .unwrap_or_default(),
            )
        })
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        [
            ("0".into(), "shards-0".into()),
            ("1".into(), "shards-1".into()),
            ("2".into(), "shards-2".into())
        ]
    );
    for pod in &started {
        finish(&pods, &pod.name_any(), 0).await;
    }
    let job = eventually("the Job to complete", Duration::from_secs(10), || async {
        let job = jobs.get("shards").await.unwrap();
        condition(&job, "Complete").is_some().then_some(job)
    })
    .await;
    let status = job.status.unwrap();
    assert_eq!(status.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(status.succeeded, Some(3));
    Ok(())
}
