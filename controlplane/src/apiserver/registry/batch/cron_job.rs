//! `batch/v1` CronJob: validation (schedule, time zone), defaults, the table and the patch
//! schema.

use super::job::job_spec;
use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::batch::v1 as api;

/// The `cronjobs` resource.
pub static RESOURCE: Resource = Resource {
    group: "batch",
    version: "v1",
    kind: "CronJob",
    plural: "cronjobs",
    singular: "cronjob",
    namespaced: true,
    short_names: &["cj"],
    categories: &["all"],
    subresources: &[Subresource::Status],
    storage_prefix: "cronjobs",
    field_labels: &[],
    strategy: &CronJobs,
};

/// The `CronJob` strategy.
pub struct CronJobs;

impl Strategy for CronJobs {
    typed_as!("v1.CronJob", api::CronJob);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        cron_job(e, Some(object), old.is_some());
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::CRON_JOB_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cron_job_cells(object, now)
    }

    fn default(&self, object: &mut Value) {
        let spec = &mut object["spec"];
        set_default(spec, "concurrencyPolicy", json!("Allow"));
        set_default(spec, "suspend", json!(false));
        set_default(spec, "successfulJobsHistoryLimit", json!(3));
        set_default(spec, "failedJobsHistoryLimit", json!(1));
        default_pod_spec(&mut spec["jobTemplate"]["spec"]["template"]["spec"]);
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "tick"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
            invalid: json!({"metadata": {"name": "tick"}, "spec": {"schedule": "not a schedule", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
            invalid_field: "spec.schedule",
        }
    }
}

pub(crate) fn cron_job(e: &mut Errs, obj: Option<&Value>, is_update: bool) {
    let spec = get(obj, "spec");
    let schedule = str_of(spec, "schedule");
    if schedule.is_empty() {
        e.required("spec.schedule", "");
    } else {
        if let Err(msg) = parse_cron(schedule) {
            e.invalid_s("spec.schedule", schedule, &msg);
        }
        if schedule.contains("TZ") && !is_update {
            e.invalid_s(
                "spec.schedule",
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            );
        } else if schedule.contains("TZ") && get(spec, "timeZone").is_some() {
            e.invalid_s(
                "spec.schedule",
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            );
        }
    }
    e.non_negative(
        "spec.startingDeadlineSeconds",
        int_of(spec, "startingDeadlineSeconds"),
    );
    if let Some(tz) = str_opt(spec, "timeZone") {
        time_zone(e, tz);
    }
    if let Some(cp) = str_opt(spec, "concurrencyPolicy").filter(|c| !c.is_empty())
        && !matches!(cp, "Allow" | "Forbid" | "Replace")
    {
        e.not_supported(
            "spec.concurrencyPolicy",
            cp,
            &["Allow", "Forbid", "Replace"],
        );
    }
    let jt = get(spec, "jobTemplate");
    let jspec = get(jt, "spec");
    job_spec(e, jspec, "spec.jobTemplate.spec");
    if let Some(sel) = get(jspec, "selector") {
        e.invalid(
            "spec.jobTemplate.spec.selector",
            &go_label_selector(Some(sel)),
            "`selector` will be auto-generated",
        );
    }
    if bool_of(jspec, "manualSelector") == Some(true) {
        e.not_supported(
            "spec.jobTemplate.spec.manualSelector",
            "true",
            &["nil", "false"],
        );
        if let Some(last) = e.0.last_mut() {
            last.message = last.message.replacen("\"true\"", "true", 1);
        }
    }
    for f in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        e.non_negative(&child("spec", f), int_of(spec, f));
    }
    let name = str_of(get(obj, "metadata"), "name");
    if !is_update && name.len() > 52 {
        e.invalid_s("metadata.name", name, "must be no more than 52 characters");
    }
}

pub(crate) fn time_zone(e: &mut Errs, tz: &str) {
    if tz.is_empty() {
        e.invalid_s(
            "spec.timeZone",
            tz,
            "timeZone must be nil or non-empty string",
        );
        return;
    }
    for part in tz.split('/') {
        let ok = part != "."
            && part != ".."
            && !part.starts_with('-')
            && (1..=14).contains(&part.len())
            && part
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'));
        if !ok {
            e.invalid_s("spec.timeZone", tz, &format!("unknown time zone {tz}"));
            return;
        }
    }
    if tz.eq_ignore_ascii_case("local") {
        e.invalid_s(
            "spec.timeZone",
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        );
        return;
    }
    // Upstream loads the zone; so do we, when this machine has a time zone database at all
    // (without one every name would fail, and the CronJob controller reports it instead).
    let db = jiff::tz::db();
    if !db.is_definitively_empty() && db.get(tz).is_err() {
        e.invalid_s("spec.timeZone", tz, &format!("unknown time zone {tz}"));
    }
}

/// robfig/cron's `ParseStandard`, with its error messages.
pub(crate) fn parse_cron(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".to_string());
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        // The location itself cannot be checked here (no tz database); only the shape is.
        match spec.find(' ') {
            Some(i) => spec = spec.get(i..).unwrap_or("").trim(),
            None => return Err(format!("provided bad location {spec}: unknown time zone")),
        }
    }
    if let Some(desc) = spec.strip_prefix('@') {
        let known = [
            "yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly",
        ];
        if known.contains(&desc) {
            return Ok(());
        }
        if let Some(d) = desc.strip_prefix("every ") {
            return parse_go_duration(d)
                .map_err(|err| format!("failed to parse duration {spec}: {err}"));
        }
        return Err(format!("unrecognized descriptor: {spec}"));
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(i64, i64, &[&str], i64); 5] = [
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, &MONTHS, 1),
        (0, 6, &DAYS, 0),
    ];
    for (field, (min, max, names, base)) in fields.iter().zip(bounds) {
        for expr in field.split(',') {
            cron_range(expr, min, max, names, base)?;
        }
    }
    Ok(())
}

pub(crate) fn cron_range(
    expr: &str,
    min: i64,
    max: i64,
    names: &[&str],
    base: i64,
) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_high: Vec<&str> = range_and_step
        .first()
        .map(|r| r.split('-').collect())
        .unwrap_or_default();
    let single = low_high.len() == 1;
    let parse = |s: &str| -> Result<i64, String> {
        if let Some(pos) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
            return Ok(pos as i64 + base);
        }
        must_parse_int(s)
    };
    let (start, mut end) = match low_high.as_slice() {
        ["*" | "?"] => (min, max),
        [lo] => {
            let v = parse(lo)?;
            (v, v)
        }
        [lo, hi] => {
            let lo_v = if *lo == "*" || *lo == "?" {
                min
            } else {
                parse(lo)?
            };
            (lo_v, parse(hi)?)
        }
        _ => return Err(format!("too many hyphens: {expr}")),
    };
    let step = match range_and_step.as_slice() {
        [_] => 1,
        [_, step] => {
            let s = must_parse_int(step)?;
            if single && !matches!(low_high.first(), Some(&"*" | &"?")) {
                end = max;
            }
            s
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

pub(crate) fn must_parse_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {}: invalid syntax",
            q(s)
        ));
    }
    let n: i64 = s.parse().map_err(|_| {
        format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {}: value out of range",
            q(s)
        )
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {s}"));
    }
    Ok(n)
}

/// Go's `time.ParseDuration` grammar (value checked, not computed).
pub(crate) fn parse_go_duration(s: &str) -> Result<(), String> {
    let bad = || format!("time: invalid duration {}", q(s));
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if body == "0" {
        return Ok(());
    }
    if body.is_empty() {
        return Err(bad());
    }
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .bytes()
            .take_while(|c| c.is_ascii_digit() || *c == b'.')
            .count();
        if num_len == 0 {
            return Err(bad());
        }
        rest = rest.get(num_len..).unwrap_or("");
        let unit_len = rest
            .bytes()
            .take_while(|c| !c.is_ascii_digit() && *c != b'.')
            .count();
        let unit = rest.get(..unit_len).unwrap_or("");
        if !matches!(unit, "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return Err(if unit.is_empty() {
                format!("time: missing unit in duration {}", q(s))
            } else {
                format!("time: unknown unit {} in duration {}", q(unit), q(s))
            });
        }
        rest = rest.get(unit_len..).unwrap_or("");
    }
    Ok(())
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const CRON_JOB_COLUMNS: &[Column] = &[
        NAME,
        col(
            "Schedule",
            "string",
            "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
        ),
        col(
            "Timezone",
            "string",
            "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
        ),
        col(
            "Suspend",
            "boolean",
            "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
        ),
        col(
            "Active",
            "integer",
            "A list of pointers to currently running jobs.",
        ),
        col(
            "Last Schedule",
            "string",
            "Information when was the last time the job was successfully scheduled.",
        ),
        AGE,
        CONTAINERS,
        IMAGES,
        wide(
            "Selector",
            "string",
            "A label query over pods that should match the pod count.",
        ),
    ];

    pub(crate) fn cron_job_cells(o: &Value, now: Timestamp) -> Vec<Value> {
        let last_schedule = match time_at(o, &["status", "lastScheduleTime"]) {
            Some(t) => since(Some(t), now),
            None if get(o, &["status", "lastScheduleTime"]).is_some() => "<unknown>".to_string(),
            None => "<none>".to_string(),
        };
        // CronJob defaulting sets suspend to false, so upstream never meets it unset.
        let suspend = if bool_at(o, &["spec", "suspend"]) == Some(true) {
            "True"
        } else {
            "False"
        };
        let (names, images) = container_cells(o, &["spec", "jobTemplate", "spec", "template"]);
        vec![
            json!(name(o)),
            json!(str_at(o, &["spec", "schedule"])),
            json!(or_default(str_at(o, &["spec", "timeZone"]), "<none>")),
            json!(suspend),
            json!(list_at(o, &["status", "active"]).len()),
            json!(last_schedule),
            json!(age(o, now)),
            json!(names),
            json!(images),
            json!(format_label_selector(get(
                o,
                &["spec", "jobTemplate", "spec", "selector"]
            ))),
        ]
    }
}
