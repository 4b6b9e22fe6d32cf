//! `batch/v1` Job: validation (shared with CronJob's jobTemplate), defaults, the generated
//! selector and pod labels, the table and the patch schema.

use crate::apiserver::meta::{name, uid};
use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::batch::v1 as api;

/// The `jobs` resource.
pub static RESOURCE: Resource = Resource {
    group: "batch",
    version: "v1",
    kind: "Job",
    plural: "jobs",
    singular: "job",
    namespaced: true,
    short_names: &[],
    categories: &["all"],
    subresources: &[Subresource::Status],
    storage_prefix: "jobs",
    field_labels: &["status.successful"],
    strategy: &Jobs,
};

/// The `Job` strategy.
pub struct Jobs;

impl Strategy for Jobs {
    typed_as!("v1.Job", api::Job);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        job(e, Some(object), old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::JOB_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::job_cells(object, now)
    }

    fn default(&self, object: &mut Value) {
        default_job(&mut object["spec"]);
    }

    fn prepare_named(&self, object: &mut Value) {
        generate_job_selector(object);
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "pi", "uid": "8d4c5e1a-0000-4000-8000-000000000001"}, "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}}),
            invalid: json!({"metadata": {"name": "pi", "uid": "8d4c5e1a-0000-4000-8000-000000000001"}, "spec": {"parallelism": -1, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}}),
            invalid_field: "spec.parallelism",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// batch/v1
// ---------------------------------------------------------------------------------------------

/// `validateJobSpec` (shared by Job and CronJob's jobTemplate), rooted at `p`.
pub(crate) fn job_spec(e: &mut Errs, spec: Option<&Value>, p: &str) {
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        e.non_negative(&child(p, f), int_of(spec, f));
    }
    let indexed = str_of(spec, "completionMode") == "Indexed";
    if get(spec, "maxFailedIndexes").is_some() && get(spec, "backoffLimitPerIndex").is_none() {
        e.required(
            &child(p, "backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        );
    }
    if let Some(mb) = str_opt(spec, "managedBy") {
        let mp = child(p, "managedBy");
        match mb.split_once('/') {
            Some((host, rest)) if !host.is_empty() && !rest.is_empty() => {
                for m in is_dns1123_subdomain(host) {
                    e.invalid_s(&mp, host, &m);
                }
            }
            _ => e.invalid_s(
                &mp,
                mb,
                "must be a domain-prefixed path (such as \"acme.io/foo\")",
            ),
        }
        if mb.len() > 63 {
            e.too_long(&mp, 63);
        }
    }
    if let Some(cm) = str_opt(spec, "completionMode") {
        if cm != "NonIndexed" && cm != "Indexed" {
            e.not_supported(&child(p, "completionMode"), cm, &["NonIndexed", "Indexed"]);
        }
        if indexed {
            if get(spec, "completions").is_none() {
                e.required(&child(p, "completions"), "when completion mode is Indexed");
            }
            if let Some(par) = int_of(spec, "parallelism").filter(|v| *v > 100_000) {
                e.invalid_i(
                    &child(p, "parallelism"),
                    par,
                    "must be less than or equal to 100000 when completion mode is Indexed",
                );
            }
        }
    }
    if !indexed {
        for f in ["backoffLimitPerIndex", "maxFailedIndexes"] {
            if let Some(v) = int_of(spec, f) {
                e.invalid_i(&child(p, f), v, "requires indexed completion mode");
            }
        }
        if let Some(sp) = get(spec, "successPolicy") {
            e.invalid(
                &child(p, "successPolicy"),
                &compact(sp),
                "requires indexed completion mode",
            );
        }
    }
    if let Some(prp) = str_opt(spec, "podReplacementPolicy")
        && prp != "Failed"
        && prp != "TerminatingOrFailed"
    {
        e.not_supported(
            &child(p, "podReplacementPolicy"),
            prp,
            &["Failed", "TerminatingOrFailed"],
        );
    }
    let template = get(spec, "template");
    let tp = child(p, "template");
    pod_template(e, template, &tp, &PodCtx::default());
    let rp_path = child(&child(&tp, "spec"), "restartPolicy");
    match str_of(get(template, "spec"), "restartPolicy") {
        "" | "Always" => e.required(&rp_path, "valid values: \"OnFailure\", \"Never\""),
        "OnFailure" if get(spec, "podFailurePolicy").is_some() => {
            e.invalid_s(
                &rp_path,
                "OnFailure",
                "only \"Never\" is supported when podFailurePolicy is specified",
            );
        }
        "OnFailure" | "Never" => {}
        other => e.not_supported(&rp_path, other, &["OnFailure", "Never"]),
    }
}

pub(crate) fn job(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    job_spec(e, spec, "spec");
    // Without manualSelector the registry generates the selector (and the matching template
    // labels) itself, so only a caller-supplied selector is held to the template here.
    let manual = bool_of(spec, "manualSelector") == Some(true);
    let sel = get(spec, "selector");
    if manual && sel.is_none() {
        e.required("spec.selector", "");
    }
    if let Some(s) = sel {
        let ok = label_selector(e, Some(s), "spec.selector");
        let labels = obj_of(get(get(spec, "template"), "metadata"), "labels");
        if ok && !selector_matches(Some(s), labels) {
            e.invalid(
                "spec.template.metadata.labels",
                &go_map(labels),
                "`selector` does not match template `labels`",
            );
        }
    }
    let name = str_of(get(obj, "metadata"), "name");
    if str_of(spec, "completionMode") == "Indexed"
        && let Some(c) = int_of(spec, "completions").filter(|c| *c > 0)
    {
        let host = format!("{name}-{}", c - 1);
        if !is_dns1123_label(&host).is_empty() {
            e.invalid_s(
                "metadata.name",
                name,
                &format!("will not able to create pod with invalid DNS label: {host}"),
            );
        }
    }
    if let Some(old) = old {
        let old_spec = get(Some(old), "spec");
        // The generated selector lives only on the stored object; an omitted one is kept.
        if sel.is_some() && sel.map(normalize) != get(old_spec, "selector").map(normalize) {
            e.invalid("spec.selector", &go_label_selector(sel), IMMUTABLE);
        }
        for f in ["completionMode"] {
            if str_of(spec, f) != str_of(old_spec, f) && get(spec, f).is_some() {
                e.invalid_s(&child("spec", f), str_of(spec, f), IMMUTABLE);
            }
        }
        let new_c = int_of(spec, "completions");
        let old_c = int_of(old_spec, "completions");
        if new_c != old_c {
            let elastic = str_of(spec, "completionMode") == "Indexed"
                && new_c.is_some()
                && new_c == int_of(spec, "parallelism");
            if !elastic {
                let v = new_c.map_or("null".to_string(), |c| c.to_string());
                e.invalid("spec.completions", &v, IMMUTABLE);
            }
        }
        let canon = |t: Option<&Value>, suspended: bool| {
            let mut t = t.cloned().unwrap_or(Value::Object(Map::new()));
            if let Some(m) = t.as_object_mut() {
                let spec = canonical_pod_spec(m.get("spec"));
                m.insert("spec".to_string(), spec);
                // A suspended Job may have its scheduling directives and metadata updated.
                if suspended {
                    m.remove("metadata");
                    if let Some(Value::Object(s)) = m.get_mut("spec") {
                        for f in ["nodeSelector", "tolerations", "schedulingGates"] {
                            s.remove(f);
                        }
                        if let Some(Value::Object(a)) = s.get_mut("affinity") {
                            a.remove("nodeAffinity");
                        }
                    }
                }
                // Labels the registry adds to the template when it generates the selector.
                if let Some(Value::Object(md)) = m.get_mut("metadata")
                    && let Some(Value::Object(l)) = md.get_mut("labels")
                {
                    for k in [
                        "controller-uid",
                        "job-name",
                        "batch.kubernetes.io/controller-uid",
                        "batch.kubernetes.io/job-name",
                    ] {
                        l.remove(k);
                    }
                }
            }
            normalize(&t)
        };
        let suspended =
            bool_of(spec, "suspend") == Some(true) && bool_of(old_spec, "suspend") == Some(true);
        let nt = canon(get(spec, "template"), suspended);
        let ot = canon(get(old_spec, "template"), suspended);
        if nt != ot {
            e.invalid("spec.template", &compact(&nt), IMMUTABLE);
        }
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const JOB_COLUMNS: &[Column] = &[
        NAME,
        col("Status", "string", "Status of the job."),
        col(
            "Completions",
            "string",
            "The number of pods which reached phase Succeeded.",
        ),
        col("Duration", "string", "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide(
            "Selector",
            "string",
            "A label query over pods that should match the pod count.",
        ),
    ];

    pub(crate) fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
        let succeeded = int_at(job, &["status", "succeeded"]);
        let completions = match opt_int(job, &["spec", "completions"]) {
            Some(completions) => format!("{succeeded}/{completions}"),
            None => match opt_int(job, &["spec", "parallelism"]).unwrap_or(0) {
                parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
                _ => format!("{succeeded}/1"),
            },
        };
        let start = time_at(job, &["status", "startTime"]);
        let completion = time_at(job, &["status", "completionTime"]);
        let duration = match (start, completion) {
            (None, _) => String::new(),
            (Some(start), None) => since(Some(start), now),
            (Some(start), Some(end)) => human_nanos(go_nanos(end.duration_since(start).as_nanos())),
        };
        let condition = |condition_type: &str| has_condition(job, condition_type) == Some(true);
        let status = if condition("Complete") {
            "Complete"
        } else if condition("Failed") {
            "Failed"
        } else if is_deleting(job) {
            "Terminating"
        } else if condition("Suspended") {
            "Suspended"
        } else if condition("FailureTarget") {
            "FailureTarget"
        } else {
            "Running"
        };
        let (names, images) = container_cells(job, &["spec", "template"]);
        vec![
            json!(name(job)),
            json!(status),
            json!(completions),
            json!(duration),
            json!(age(job, now)),
            json!(names),
            json!(images),
            json!(format_label_selector(get(job, &["spec", "selector"]))),
        ]
    }
}

/// `SetDefaults_Job`.
fn default_job(spec: &mut Value) {
    // Both unset is the non-parallel Job; parallelism alone is a work queue, whose
    // completions stay unset.
    if spec["completions"].is_null() && spec["parallelism"].is_null() {
        set_default(spec, "completions", json!(1));
    }
    set_default(spec, "parallelism", json!(1));
    let per_index = !spec["backoffLimitPerIndex"].is_null();
    set_default(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    if spec["podFailurePolicy"].is_null() {
        set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    } else {
        set_default(spec, "podReplacementPolicy", json!("Failed"));
    }
    default_pod_spec(&mut spec["template"]["spec"]);
}

/// The label selecting a Job's pods by the Job's uid.
pub const JOB_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// The label carrying a Job's name on its pods.
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// What upstream's Job strategy does at validation time, once the Job has its name and uid:
/// unless `spec.manualSelector` is true, select the pods by the Job's uid and label the pod
/// template with it and the Job's name (both the current and the legacy label keys). Labels
/// the caller set are kept, so a conflicting one fails validation rather than being hidden.
fn generate_job_selector(object: &mut Value) {
    if object["spec"]["manualSelector"] == json!(true) || !object["spec"].is_object() {
        return;
    }
    let job_name = name(object).to_owned();
    let Some(job_uid) = uid(object).map(str::to_owned) else {
        return;
    };
    let template = &mut object["spec"]["template"];
    if !template.is_object() {
        *template = json!({});
    }
    let labels = &mut template["metadata"]["labels"];
    for key in ["job-name", JOB_NAME] {
        set_default(labels, key, json!(job_name));
    }
    for key in ["controller-uid", JOB_CONTROLLER_UID] {
        set_default(labels, key, json!(job_uid));
    }
    let template_labels = labels.clone();
    set_default(
        &mut object["spec"]["selector"]["matchLabels"],
        JOB_CONTROLLER_UID,
        json!(job_uid),
    );
    // Upstream defaults a Job without labels to its template's labels (the same map, so the
    // generated ones show on the Job too).
    let job_labels = &object["metadata"]["labels"];
    if job_labels.is_null() || job_labels.as_object().is_some_and(Map::is_empty) {
        object["metadata"]["labels"] = template_labels;
    }
}
