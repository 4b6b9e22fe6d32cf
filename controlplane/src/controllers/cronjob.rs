//! The CronJob controller: creates a Job named `<cronjob>-<scheduled minute since the epoch>` for
//! each schedule time (in `spec.timeZone`), within `startingDeadlineSeconds`, honouring
//! `concurrencyPolicy` and `suspend`; tracks active Jobs, `lastScheduleTime` and
//! `lastSuccessfulTime`; prunes finished Jobs beyond the history limits; and sleeps until the
//! next schedule time rather than polling.
//!
//! When to run is decided by [`decide`], a plain function of the schedule and the times
//! involved, as upstream's `mostRecentScheduleTime`/`nextScheduleTime` in cronjob utils.go.
//! Schedules without a time zone are read in UTC (upstream uses kube-controller-manager's local
//! zone, UTC in the usual container).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use croner::{Cron, parser::CronParser};
use jiff::{SignedDuration, Timestamp, tz::TimeZone};
use k8s_openapi::{
    api::{
        batch::v1::{CronJob, Job},
        core::v1::ObjectReference,
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy},
    runtime::{Controller, controller::Action, watcher},
};
use serde_json::{Value, json};

use super::{Context, ReconcileError, drive, record_event, requeue_within, retry_later};

/// The annotation on a created Job saying which schedule time it is for (RFC 3339).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// The name our Events give as their source, upstream's.
const COMPONENT: &str = "cronjob-controller";
/// More missed start times than this means a stopped controller or a wrong clock.
const TOO_MANY_MISSED: i64 = 100;
/// Upstream wakes this long after a schedule time, so the time has surely passed.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);

/// Runs the controller until the task is dropped.
pub async fn run(client: Client) {
    let results = Controller::new(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client.clone()), watcher::Config::default())
    .run(reconcile, retry_later, Arc::new(Context { client }));
    drive("cronjob", results).await;
}

/// Why a schedule cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    /// The time zone is not in the time zone database.
    #[error("unknown time zone {zone:?}: {reason}")]
    UnknownTimeZone {
        /// The name given.
        zone: String,
        /// What the database said.
        reason: String,
    },
    /// The cron expression does not parse.
    #[error("unparseable schedule {schedule:?}: {reason}")]
    Unparseable {
        /// The schedule given.
        schedule: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The schedule parses but names no time that exists (like `0 0 30 2 *`).
    #[error("schedule {schedule:?} never runs: no time matches it")]
    NeverRuns {
        /// The schedule given.
        schedule: String,
    },
}

/// A parsed schedule: a cron expression read in a time zone, or robfig/cron's `@every`.
#[derive(Debug)]
pub enum Schedule {
    /// Five-field cron (or a descriptor such as `@daily`) in a time zone.
    Cron {
        /// The parsed expression.
        cron: Box<Cron>,
        /// The zone its fields are read in.
        zone: TimeZone,
        /// The text, for error messages.
        text: String,
    },
    /// `@every <duration>`: fixed intervals (whole seconds, at least one).
    Every(SignedDuration),
}

impl Schedule {
    /// Parses `spec.schedule` with `spec.timeZone`. A `TZ=`/`CRON_TZ=` prefix in the schedule
    /// (allowed only on old objects) wins over the field, as upstream's formatSchedule does.
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let unparseable = |reason: String| ScheduleError::Unparseable {
            schedule: schedule.to_owned(),
            reason,
        };
        let mut text = schedule.trim();
        let mut zone_name = time_zone;
        for prefix in ["TZ=", "CRON_TZ="] {
            if let Some(rest) = text.strip_prefix(prefix) {
                let (zone, expression) = rest.split_once(' ').ok_or_else(|| {
                    unparseable("a time zone prefix needs a schedule after it".into())
                })?;
                zone_name = Some(zone);
                text = expression.trim();
            }
        }
        if let Some(every) = text.strip_prefix("@every ") {
            let duration: SignedDuration = every
                .trim()
                .parse()
                .map_err(|err| unparseable(format!("failed to parse duration {every}: {err}")))?;
            // robfig/cron truncates to whole seconds and runs at most once a second.
            let seconds = duration.as_secs().max(1);
            return Ok(Self::Every(SignedDuration::from_secs(seconds)));
        }
        let zone = match zone_name {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).map_err(|err| ScheduleError::UnknownTimeZone {
                zone: name.to_owned(),
                reason: err.to_string(),
            })?,
        };
        // robfig/cron's descriptors (croner lacks @midnight, so all are spelled out here).
        let text = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            _ if text.starts_with('@') => {
                return Err(unparseable(format!("unrecognized descriptor: {text}")));
            }
            _ => text,
        };
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(unparseable(format!(
                "expected exactly 5 fields, found {}",
                fields.len()
            )));
        }
        let cron = CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .build()
            .parse(&robfig_day_matching(text))
            .map_err(|err| unparseable(err.to_string()))?;
        Ok(Self::Cron {
            cron: Box::new(cron),
            zone,
            text: schedule.to_owned(),
        })
    }

    /// The first schedule time strictly after `after`, at whole seconds; None if there is none.
    pub fn next(&self, after: Timestamp) -> Option<Timestamp> {
        let whole = Timestamp::from_second(after.as_second()).ok()?;
        match self {
            Self::Every(every) => whole.checked_add(*every).ok(),
            Self::Cron { cron, zone, .. } => cron
                .find_next_occurrence(&whole.to_zoned(zone.clone()), false)
                .ok()
                .map(|z| z.timestamp()),
        }
    }

    /// `time` as upstream writes the scheduled-timestamp annotation: RFC 3339 in the
    /// schedule's zone, `Z` for a zero offset.
    pub fn format(&self, time: Timestamp) -> String {
        let zone = match self {
            Self::Cron { zone, .. } => zone.clone(),
            Self::Every(_) => TimeZone::UTC,
        };
        let zoned = time.to_zoned(zone);
        if zoned.offset().seconds() == 0 {
            zoned.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        } else {
            zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Cron { text, .. } => text.clone(),
            Self::Every(every) => format!("@every {every:#}"),
        }
    }
}

/// robfig/cron (upstream's parser) ANDs day-of-month with day-of-week when either field starts
/// with `*` or `?` (so `*/2 * MON` means "even days that are Mondays"); croner only does when
/// the field is exactly `*`, and otherwise ORs them unless day-of-week starts with `+`.
fn robfig_day_matching(text: &str) -> String {
    let fields: Vec<&str> = text.split_whitespace().collect();
    match fields.as_slice() {
        [minute, hour, dom, month, dow] if [dom, dow].iter().any(|f| f.starts_with(['*', '?'])) => {
            format!("{minute} {hour} {dom} {month} +{dow}")
        }
        _ => text.to_owned(),
    }
}

/// How many schedule times were missed since the last one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// At most the one about to run.
    None,
    /// A few (all but the latest are skipped).
    Few,
    /// More than 100: a stopped controller or a wrong clock; worth a warning.
    Many,
}

/// What the controller should do about a schedule at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The most recent unmet schedule time, if any.
    pub scheduled: Option<Timestamp>,
    /// Whether `scheduled` is already past its starting deadline.
    pub too_late: bool,
    /// How many times were missed.
    pub missed: Missed,
    /// The next schedule time after the ones considered, to wake up for.
    pub wake_at: Option<Timestamp>,
}

/// upstream's `mostRecentScheduleTime`: the earliest time considered, the latest schedule time
/// in (earliest, now], and how many were missed.
fn most_recent(
    schedule: &Schedule,
    now: Timestamp,
    earliest: Timestamp,
) -> Result<(Option<Timestamp>, Missed), ScheduleError> {
    let never = || ScheduleError::NeverRuns {
        schedule: schedule.describe(),
    };
    let t1 = schedule.next(earliest).ok_or_else(never)?;
    if now < t1 {
        return Ok((None, Missed::None));
    }
    let t2 = schedule.next(t1).ok_or_else(never)?;
    if now < t2 {
        return Ok((Some(t1), Missed::None));
    }
    let between = t2.duration_since(t1).as_secs().max(1);
    let elapsed = now.duration_since(t1).as_secs();
    let missed = elapsed / between + 1;
    // Jump close to now instead of stepping through every missed time, one interval early so
    // irregular schedules (`30 6-16/4 * * 1-5`) still land on a real schedule time.
    let jump = SignedDuration::from_secs((missed - 2).saturating_mul(between));
    let mut t = schedule.next(t1.checked_add(jump).unwrap_or(t1));
    let mut latest = None;
    while let Some(time) = t
        && time <= now
    {
        latest = Some(time);
        t = schedule.next(time);
    }
    let missed = match missed {
        m if m > TOO_MANY_MISSED => Missed::Many,
        m if m > 1 => Missed::Few,
        _ => Missed::None,
    };
    Ok((latest, missed))
}

/// Decides, at `now`, which schedule time (if any) to run and when to look again, from the
/// CronJob's creation time, its `lastScheduleTime` and `startingDeadlineSeconds`.
pub fn decide(
    schedule: &Schedule,
    now: Timestamp,
    created: Timestamp,
    last_scheduled: Option<Timestamp>,
    starting_deadline_seconds: Option<i64>,
) -> Result<Decision, ScheduleError> {
    let earliest = last_scheduled.unwrap_or(created);
    let deadline = starting_deadline_seconds.map(SignedDuration::from_secs);
    // Nothing older than the starting deadline is worth looking at.
    let earliest_in_window = match deadline.and_then(|d| now.checked_sub(d).ok()) {
        Some(window) if window > earliest => window,
        _ => earliest,
    };
    let (scheduled, missed) = most_recent(schedule, now, earliest_in_window)?;
    let too_late = match (scheduled, deadline) {
        (Some(time), Some(deadline)) => time.checked_add(deadline).is_ok_and(|end| end < now),
        _ => false,
    };
    // The wake-up ignores the deadline window, as upstream's nextScheduleTimeDuration does.
    let (latest, _) = most_recent(schedule, now, earliest)?;
    let wake_at = schedule.next(latest.unwrap_or(earliest).max(now));
    Ok(Decision {
        scheduled,
        too_late,
        missed,
        wake_at,
    })
}

/// The Job name for a schedule time: the CronJob's name and the minutes since the epoch.
pub fn job_name(cron_job: &str, scheduled: Timestamp) -> String {
    format!("{cron_job}-{}", scheduled.as_second().div_euclid(60))
}

fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    ["Complete", "Failed"].into_iter().find(|type_| {
        conditions
            .iter()
            .any(|c| c.type_ == *type_ && c.status == "True")
    })
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// Which finished Jobs to delete: the oldest (by start time, unstarted ones counted newest,
/// names breaking ties) beyond `limit` among those that ended as `outcome`.
pub fn beyond_history<'a>(jobs: &[&'a Job], outcome: &str, limit: Option<i32>) -> Vec<&'a Job> {
    let Some(limit) = limit else {
        return Vec::new();
    };
    let mut ended: Vec<&Job> = jobs
        .iter()
        .copied()
        .filter(|job| finished(job) == Some(outcome))
        .collect();
    ended.sort_by_key(|job| {
        let start = job
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0);
        (start.is_none(), start, job.name_any())
    });
    let keep = usize::try_from(limit.max(0)).unwrap_or(0);
    let excess = ended.len().saturating_sub(keep);
    ended.into_iter().take(excess).collect()
}

async fn reconcile(cached: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let fail = ReconcileError::about("CronJob", &namespace, &name);
    // The watch can lag our own status writes (a Job created a moment ago would look
    // unexpected), so decide from the stored object.
    let cron_jobs: Api<CronJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(cron_job) = cron_jobs.get_opt(&name).await.map_err(fail)? else {
        return Ok(Action::await_change());
    };
    let cron_job = Arc::new(cron_job);
    let uid = cron_job.uid().unwrap_or_default();
    let spec = cron_job.spec.clone().unwrap_or_default();
    let status = cron_job.status.clone().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let client = &ctx.client;
    let event = |type_: &'static str, reason: &'static str, message: String| {
        let cron_job = Arc::clone(&cron_job);
        async move {
            record_event(
                client,
                cron_job.as_ref(),
                COMPONENT,
                (type_, reason, &message),
            )
            .await;
        }
    };

    let listed = jobs_api
        .list(&ListParams::default())
        .await
        .map_err(fail)?
        .items;
    let owned = |job: &&Job| super::controlled_by(&job.metadata, &uid);
    let jobs: Vec<Job> = listed.iter().filter(owned).cloned().collect();

    // Active: the Jobs the status lists, while they exist and run. Like upstream, an unfinished
    // Job we own but never recorded (made by hand, say) is reported, not adopted.
    let mut active: BTreeMap<String, ObjectReference> = BTreeMap::new();
    for reference in status.active.iter().flatten() {
        let job = listed.iter().find(|j| j.metadata.uid == reference.uid);
        match job {
            Some(job) if finished(job).is_none() => {
                active.insert(job.name_any(), reference.clone());
            }
            Some(_) => {}
            None => {
                let name = reference.name.clone().unwrap_or_default();
                event(
                    "Normal",
                    "MissingJob",
                    format!("Active job went missing: {name}"),
                )
                .await;
            }
        }
    }
    let mut last_successful = status.last_successful_time.as_ref().map(|t| t.0);
    let was_active = |job: &Job| {
        status
            .active
            .iter()
            .flatten()
            .any(|r| r.uid == job.metadata.uid)
    };
    for job in &jobs {
        match finished(job) {
            None if !was_active(job) => {
                event(
                    "Warning",
                    "UnexpectedJob",
                    format!(
                        "Saw a job that the controller did not create or forgot: {}",
                        job.name_any()
                    ),
                )
                .await;
            }
            None => {}
            Some(outcome) => {
                if was_active(job) {
                    event(
                        "Normal",
                        "SawCompletedJob",
                        format!(
                            "Saw completed job: {}, condition: {outcome}",
                            job.name_any()
                        ),
                    )
                    .await;
                }
                if outcome == "Complete"
                    && let Some(done) = job
                        .status
                        .as_ref()
                        .and_then(|s| s.completion_time.as_ref())
                        .map(|t| t.0)
                {
                    last_successful = Some(last_successful.map_or(done, |l| l.max(done)));
                }
            }
        }
    }
    let mut last_scheduled = status.last_schedule_time.as_ref().map(|t| t.0);

    let mut wake = None;
    if cron_job.metadata.deletion_timestamp.is_none() && spec.suspend != Some(true) {
        match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
            Err(err) => {
                let reason = match err {
                    ScheduleError::UnknownTimeZone { .. } => "UnknownTimeZone",
                    _ => "UnparseableSchedule",
                };
                event("Warning", reason, err.to_string()).await;
            }
            Ok(schedule) => {
                let now = Timestamp::now();
                let created = cron_job
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(now, |t| t.0);
                match decide(
                    &schedule,
                    now,
                    created,
                    last_scheduled,
                    spec.starting_deadline_seconds,
                ) {
                    Err(err) => event("Warning", "InvalidSchedule", err.to_string()).await,
                    Ok(decision) => {
                        wake = decision.wake_at.map(|at| {
                            Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
                                + NEXT_SCHEDULE_DELTA
                        });
                        if decision.missed == Missed::Many {
                            event(
                                "Warning",
                                "TooManyMissedTimes",
                                "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".into(),
                            )
                            .await;
                            tracing::warn!(
                                "CronJob {namespace}/{name}: too many missed start times; running only the latest"
                            );
                        }
                        if let Some(scheduled) = decision.scheduled {
                            if decision.too_late {
                                event(
                                    "Warning",
                                    "MissSchedule",
                                    format!(
                                        "Missed scheduled time to start a job: {}",
                                        schedule.format(scheduled)
                                    ),
                                )
                                .await;
                            } else if let Some(created) = run_scheduled(
                                &ctx,
                                &cron_job,
                                &schedule,
                                scheduled,
                                &mut active,
                                &jobs,
                            )
                            .await
                            .map_err(fail)?
                            {
                                last_scheduled = Some(scheduled);
                                if created {
                                    event(
                                        "Normal",
                                        "SuccessfulCreate",
                                        format!("Created job {}", job_name(&name, scheduled)),
                                    )
                                    .await;
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // History limits.
    let finished_jobs: Vec<&Job> = jobs.iter().filter(|j| finished(j).is_some()).collect();
    let doomed = beyond_history(
        &finished_jobs,
        "Complete",
        spec.successful_jobs_history_limit,
    )
    .into_iter()
    .chain(beyond_history(
        &finished_jobs,
        "Failed",
        spec.failed_jobs_history_limit,
    ));
    for job in doomed {
        if delete_job(&jobs_api, &job.name_any()).await.map_err(fail)? {
            event(
                "Normal",
                "SuccessfulDelete",
                format!("Deleted job {}", job.name_any()),
            )
            .await;
        }
    }

    let active: Vec<&ObjectReference> = active.values().collect();
    let unchanged = status
        .active
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|r| &r.uid)
        .eq(active.iter().map(|r| &r.uid))
        && status.last_schedule_time.as_ref().map(|t| t.0) == last_scheduled
        && status.last_successful_time.as_ref().map(|t| t.0) == last_successful;
    if !unchanged {
        let as_text =
            |t: Option<Timestamp>| t.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
        // The resourceVersion makes a write from a stale view fail (and be retried) rather
        // than undo a newer status.
        let patch = json!({"metadata": {"resourceVersion": cron_job.resource_version()}, "status": {
            "active": if active.is_empty() { Value::Null } else { json!(active) },
            "lastScheduleTime": as_text(last_scheduled),
            "lastSuccessfulTime": as_text(last_successful),
        }});
        cron_jobs
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(fail)?;
    }
    Ok(wake.map_or_else(Action::await_change, requeue_within))
}

/// Deletes a Job and its pods; false if it was already gone.
async fn delete_job(jobs: &Api<Job>, name: &str) -> Result<bool, kube::Error> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match jobs.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(err) => Err(err),
    }
}

/// Runs the Job for `scheduled` unless it ran already or concurrencyPolicy forbids it.
/// Returns None if it did not run, Some(true) if it created the Job, Some(false) if the Job
/// already existed (created before a crash, say).
async fn run_scheduled(
    ctx: &Context,
    cron_job: &CronJob,
    schedule: &Schedule,
    scheduled: Timestamp,
    active: &mut BTreeMap<String, ObjectReference>,
    jobs: &[Job],
) -> Result<Option<bool>, kube::Error> {
    let namespace = cron_job.namespace().unwrap_or_default();
    let name = cron_job.name_any();
    let spec = cron_job.spec.clone().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let job_name = job_name(&name, scheduled);
    let already = cron_job
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .is_some_and(|t| t.0 == scheduled);
    if already {
        return Ok(None);
    }
    if let Some(existing) = jobs.iter().find(|j| j.name_any() == job_name) {
        // Created before its status was written (a conflict or a crash): it ran.
        if finished(existing).is_none() {
            active.insert(job_name, reference(existing));
        }
        return Ok(Some(false));
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            let message = "Not starting job because prior execution is running and concurrency policy is Forbid";
            record_event(
                &ctx.client,
                cron_job,
                COMPONENT,
                ("Normal", "JobAlreadyActive", message),
            )
            .await;
            return Ok(None);
        }
        Some("Replace") => {
            for running in std::mem::take(active).into_keys() {
                if delete_job(&jobs_api, &running).await? {
                    let message = format!("Deleted job {running}");
                    record_event(
                        &ctx.client,
                        cron_job,
                        COMPONENT,
                        ("Normal", "SuccessfulDelete", &message),
                    )
                    .await;
                }
            }
        }
        _ => {}
    }

    let template = spec.job_template;
    let mut metadata = template.metadata.unwrap_or_default();
    metadata.name = Some(job_name.clone());
    metadata.generate_name = None;
    metadata.namespace = Some(namespace);
    metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(SCHEDULED_TIMESTAMP.into(), schedule.format(scheduled));
    metadata.owner_references = Some(vec![OwnerReference {
        api_version: "batch/v1".into(),
        kind: "CronJob".into(),
        name,
        uid: cron_job.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    let job = Job {
        metadata,
        spec: template.spec,
        status: None,
    };
    match jobs_api.create(&PostParams::default(), &job).await {
        Ok(created) => {
            active.insert(job_name, reference(&created));
            Ok(Some(true))
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = jobs_api.get(&job_name).await?;
            let ours = cron_job
                .metadata
                .uid
                .as_deref()
                .is_some_and(|uid| super::controlled_by(&existing.metadata, uid));
            if !ours {
                return Ok(None);
            }
            if finished(&existing).is_none() {
                active.insert(job_name, reference(&existing));
            }
            Ok(Some(false))
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn cron(text: &str) -> Schedule {
        Schedule::parse(text, None).unwrap()
    }

    fn nexts(schedule: &Schedule, from: &str, count: usize) -> Vec<String> {
        let mut t = at(from);
        (0..count)
            .map(|_| {
                t = schedule.next(t).unwrap();
                t.to_string()
            })
            .collect()
    }

    #[test]
    fn next_times_of_standard_syntax() {
        assert_eq!(
            nexts(&cron("* * * * *"), "2026-03-01T12:00:30Z", 2),
            ["2026-03-01T12:01:00Z", "2026-03-01T12:02:00Z"]
        );
        // Strictly after: a time on the schedule is not its own next.
        assert_eq!(
            nexts(&cron("*/15 * * * *"), "2026-03-01T12:15:00Z", 3),
            [
                "2026-03-01T12:30:00Z",
                "2026-03-01T12:45:00Z",
                "2026-03-01T13:00:00Z"
            ]
        );
        assert_eq!(
            nexts(&cron("0 9-17/4 * * MON-FRI"), "2026-03-06T16:00:00Z", 3),
            [
                "2026-03-06T17:00:00Z",
                "2026-03-09T09:00:00Z",
                "2026-03-09T13:00:00Z"
            ],
            "Friday 17:00, then Monday"
        );
        assert_eq!(
            nexts(&cron("0 0 1,15 JAN,jul *"), "2026-01-01T00:00:00Z", 3),
            [
                "2026-01-15T00:00:00Z",
                "2026-07-01T00:00:00Z",
                "2026-07-15T00:00:00Z"
            ]
        );
    }

    #[test]
    fn descriptors() {
        let from = "2026-03-04T10:30:00Z"; // a Wednesday
        for (descriptor, next) in [
            ("@hourly", "2026-03-04T11:00:00Z"),
            ("@daily", "2026-03-05T00:00:00Z"),
            ("@midnight", "2026-03-05T00:00:00Z"),
            ("@weekly", "2026-03-08T00:00:00Z"),
            ("@monthly", "2026-04-01T00:00:00Z"),
            ("@yearly", "2027-01-01T00:00:00Z"),
            ("@annually", "2027-01-01T00:00:00Z"),
        ] {
            assert_eq!(nexts(&cron(descriptor), from, 1), [next], "{descriptor}");
        }
        assert_eq!(
            nexts(&cron("@every 1h30m"), "2026-03-04T10:30:00.5Z", 2),
            ["2026-03-04T12:00:00Z", "2026-03-04T13:30:00Z"]
        );
    }

    #[test]
    fn day_of_month_and_week_combine_like_robfig() {
        // Both restricted: either matches (Vixie cron).
        assert_eq!(
            nexts(&cron("0 0 13 * FRI"), "2026-03-01T00:00:00Z", 2),
            ["2026-03-06T00:00:00Z", "2026-03-13T00:00:00Z"]
        );
        // One starting with `*`: both must match (robfig's star bit), here odd days that are
        // Mondays: 2026-03-09 is a Monday on an odd day.
        assert_eq!(
            nexts(&cron("0 0 */2 * MON"), "2026-03-01T00:00:00Z", 1),
            ["2026-03-09T00:00:00Z"]
        );
    }

    #[test]
    fn time_zones_shift_the_schedule_and_follow_dst() {
        let berlin = Schedule::parse("0 9 * * *", Some("Europe/Berlin")).unwrap();
        // CET is UTC+1 until the last Sunday of March (2026-03-29), then CEST is UTC+2.
        assert_eq!(
            nexts(&berlin, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T08:00:00Z",
                "2026-03-29T07:00:00Z",
                "2026-03-30T07:00:00Z"
            ]
        );
        assert_eq!(
            berlin.format(at("2026-03-29T07:00:00Z")),
            "2026-03-29T09:00:00+02:00"
        );
        assert_eq!(
            cron("0 9 * * *").format(at("2026-03-29T09:00:00Z")),
            "2026-03-29T09:00:00Z"
        );
        let prefixed = Schedule::parse("CRON_TZ=America/New_York 0 9 * * *", None).unwrap();
        assert_eq!(
            nexts(&prefixed, "2026-06-01T00:00:00Z", 1),
            ["2026-06-01T13:00:00Z"]
        );
    }

    #[test]
    fn invalid_schedules_say_what_is_wrong() {
        let err = Schedule::parse("0 9 * * *", Some("Mars/Olympus")).unwrap_err();
        assert!(
            matches!(err, ScheduleError::UnknownTimeZone { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
        let err = Schedule::parse("* * *", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unparseable schedule \"* * *\": expected exactly 5 fields, found 3"
        );
        assert!(Schedule::parse("61 * * * *", None).is_err());
        assert!(Schedule::parse("@fortnightly", None).is_err());
        assert!(Schedule::parse("@every soon", None).is_err());
        let never = Schedule::parse("0 0 30 2 *", None).unwrap();
        let err = decide(
            &never,
            at("2026-03-01T00:00:00Z"),
            at("2026-01-01T00:00:00Z"),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "schedule \"0 0 30 2 *\" never runs: no time matches it"
        );
    }

    #[test]
    fn decides_the_latest_unmet_time_and_when_to_wake() {
        let every_minute = cron("* * * * *");
        let created = at("2026-03-01T12:00:10Z");
        // Before the first schedule time: nothing to run, wake at it.
        let d = decide(
            &every_minute,
            at("2026-03-01T12:00:40Z"),
            created,
            None,
            None,
        )
        .unwrap();
        assert_eq!((d.scheduled, d.missed), (None, Missed::None));
        assert_eq!(d.wake_at, Some(at("2026-03-01T12:01:00Z")));
        // Just after it: run it, wake for the next.
        let d = decide(
            &every_minute,
            at("2026-03-01T12:01:00.2Z"),
            created,
            None,
            None,
        )
        .unwrap();
        assert_eq!(d.scheduled, Some(at("2026-03-01T12:01:00Z")));
        assert!(!d.too_late);
        assert_eq!(d.wake_at, Some(at("2026-03-01T12:02:00Z")));
        // Once it ran (lastScheduleTime), nothing more until the next.
        let d = decide(
            &every_minute,
            at("2026-03-01T12:01:30Z"),
            created,
            Some(at("2026-03-01T12:01:00Z")),
            None,
        )
        .unwrap();
        assert_eq!(d.scheduled, None);
        assert_eq!(d.wake_at, Some(at("2026-03-01T12:02:00Z")));
    }

    #[test]
    fn missed_runs_collapse_into_the_latest() {
        let hourly = cron("0 * * * *");
        let last = at("2026-03-01T08:00:00Z");
        let d = decide(&hourly, at("2026-03-01T12:30:00Z"), last, Some(last), None).unwrap();
        assert_eq!(d.scheduled, Some(at("2026-03-01T12:00:00Z")));
        assert_eq!(d.missed, Missed::Few);
        assert_eq!(d.wake_at, Some(at("2026-03-01T13:00:00Z")));

        // A controller stopped for a week misses 168: too many, but the latest still runs.
        let d = decide(&hourly, at("2026-03-08T08:10:00Z"), last, Some(last), None).unwrap();
        assert_eq!(d.missed, Missed::Many);
        assert_eq!(d.scheduled, Some(at("2026-03-08T08:00:00Z")));

        // Irregular: 06:30, 10:30, 14:30 on weekdays; Friday evening to Monday noon.
        let irregular = cron("30 6-16/4 * * 1-5");
        let friday = at("2026-03-06T15:00:00Z");
        let d = decide(
            &irregular,
            at("2026-03-09T12:00:00Z"),
            friday,
            Some(friday),
            None,
        )
        .unwrap();
        assert_eq!(d.scheduled, Some(at("2026-03-09T10:30:00Z")));
    }

    #[test]
    fn starting_deadline_skips_stale_runs() {
        let hourly = cron("0 * * * *");
        let last = at("2026-03-01T10:00:00Z");
        // 12:00 was 5 minutes ago; a 10-minute deadline still runs it.
        let d = decide(
            &hourly,
            at("2026-03-01T12:05:00Z"),
            last,
            Some(last),
            Some(600),
        )
        .unwrap();
        assert_eq!(d.scheduled, Some(at("2026-03-01T12:00:00Z")));
        assert!(!d.too_late);
        // A 2-minute deadline: nothing in the window, so nothing to run; wake at 13:00.
        let d = decide(
            &hourly,
            at("2026-03-01T12:05:00Z"),
            last,
            Some(last),
            Some(120),
        )
        .unwrap();
        assert_eq!(d.scheduled, None);
        assert_eq!(d.wake_at, Some(at("2026-03-01T13:00:00Z")));
        // The window's edge is exclusive, as upstream's.
        let d = decide(
            &hourly,
            at("2026-03-01T12:02:00Z"),
            last,
            Some(last),
            Some(120),
        )
        .unwrap();
        assert_eq!(d.scheduled, None);
        let d = decide(
            &hourly,
            at("2026-03-01T12:02:00Z"),
            last,
            Some(last),
            Some(121),
        )
        .unwrap();
        assert_eq!(d.scheduled, Some(at("2026-03-01T12:00:00Z")));
        assert!(!d.too_late);
    }

    #[test]
    fn job_names_count_minutes_since_the_epoch() {
        assert_eq!(
            job_name("hello", at("2026-03-01T12:00:00Z")),
            "hello-29539440"
        );
        assert_eq!(job_name("hello", at("1970-01-01T00:01:59Z")), "hello-1");
    }

    #[test]
    fn history_keeps_the_newest_finished_jobs() {
        let job = |name: &str, outcome: &str, start: Option<&str>| -> Job {
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {"startTime": start, "conditions": [{"type": outcome, "status": "True"}]},
            }))
            .unwrap()
        };
        let jobs = [
            job("c-3", "Complete", Some("2026-03-01T03:00:00Z")),
            job("c-1", "Complete", Some("2026-03-01T01:00:00Z")),
            job("c-unstarted", "Complete", None),
            job("c-2", "Complete", Some("2026-03-01T02:00:00Z")),
            job("f-1", "Failed", Some("2026-03-01T01:00:00Z")),
            job("f-2", "Failed", Some("2026-03-01T02:00:00Z")),
        ];
        let refs: Vec<&Job> = jobs.iter().collect();
        let names = |jobs: Vec<&Job>| jobs.iter().map(|j| j.name_any()).collect::<Vec<_>>();
        assert_eq!(
            names(beyond_history(&refs, "Complete", Some(2))),
            ["c-1", "c-2"]
        );
        assert_eq!(names(beyond_history(&refs, "Failed", Some(1))), ["f-1"]);
        assert_eq!(
            names(beyond_history(&refs, "Failed", Some(0))),
            ["f-1", "f-2"]
        );
        assert!(beyond_history(&refs, "Complete", None).is_empty());
    }
}
