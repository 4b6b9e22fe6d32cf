//! `v1` Event: validation, the table and the patch schema.

use crate::apiserver::registry::prelude::*;
use k8s_openapi::api::core::v1 as api;

/// The `events` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Event",
    plural: "events",
    singular: "event",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    subresources: &[],
    storage_prefix: "events",
    field_labels: &[
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ],
    strategy: &Events,
};

/// The `Event` strategy.
pub struct Events;

impl Strategy for Events {
    typed_as!("v1.Event", api::Event);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        let _ = old;
        event(e, Some(object));
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::EVENT_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::event_cells(object, now)
    }

    /// core/v1 Events skip ObjectMeta name validation upstream (legacy clients): only what
    /// the storage key needs is checked.
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    /// The reporting fields have no `omitempty` in the Go type, so upstream's Events always
    /// carry them, empty when the reporter did not say.
    fn default(&self, object: &mut Value) {
        for field in ["reportingComponent", "reportingInstance"] {
            set_default(object, field, json!(""));
        }
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "e1", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Started", "type": "Normal"}),
            invalid: json!({"metadata": {"name": "e1", "namespace": "default"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}, "reason": "Started", "type": "Normal"}),
            invalid_field: "involvedObject.namespace",
        }
    }
}

pub(crate) fn event(e: &mut Errs, obj: Option<&Value>) {
    let meta = get(obj, "metadata");
    let ns = str_of(meta, "namespace");
    let involved = get(obj, "involvedObject");
    // Not checked by upstream's legacy core/v1 path, but an Event about nothing is useless and
    // every real client sets it.
    if involved.is_none_or(|i| i.as_object().is_none_or(Map::is_empty)) {
        e.required("involvedObject", "");
    }
    let inv_ns = str_of(involved, "namespace");
    let has_event_time = get(obj, "eventTime").is_some();
    if !has_event_time {
        let mismatch = if inv_ns.is_empty() {
            !ns.is_empty() && ns != "default"
        } else {
            ns != inv_ns
        };
        if mismatch {
            e.invalid_s(
                "involvedObject.namespace",
                inv_ns,
                "does not match event.namespace",
            );
        }
    } else {
        if inv_ns.is_empty() && ns != "default" && ns != "kube-system" {
            e.invalid_s(
                "involvedObject.namespace",
                inv_ns,
                "does not match event.namespace",
            );
        }
        let rc = str_of(obj, "reportingComponent");
        if rc.is_empty() {
            e.required("reportingComponent", "");
        }
        for m in is_qualified_name(rc) {
            e.invalid_s("reportingComponent", rc, &m);
        }
        let ri = str_of(obj, "reportingInstance");
        if ri.is_empty() {
            e.required("reportingInstance", "");
        }
        for (f, limit) in [
            ("reportingInstance", 128),
            ("action", 128),
            ("reason", 128),
            ("message", 1024),
        ] {
            if str_of(obj, f).len() > limit {
                e.invalid_s(f, "", &format!("can have at most {limit} characters"));
            }
        }
    }
    for m in is_dns1123_subdomain(ns) {
        e.invalid_s("namespace", ns, &m);
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const EVENT_COLUMNS: &[Column] = &[
        col(
            "Last Seen",
            "string",
            "The time at which the most recent occurrence of this event was recorded.",
        ),
        col("Type", "string", "Type of this event (Normal, Warning)."),
        col(
            "Reason",
            "string",
            "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
        ),
        col("Object", "string", "The object that this event is about."),
        wide(
            "Subobject",
            "string",
            "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement.",
        ),
        wide("Source", "string", "The component reporting this event."),
        col(
            "Message",
            "string",
            "A human-readable description of the status of this operation.",
        ),
        wide(
            "First Seen",
            "string",
            "The time at which the event was first recorded.",
        ),
        wide(
            "Count",
            "string",
            "The number of times this event has occurred.",
        ),
        Column {
            priority: 1,
            ..NAME
        },
    ];

    pub(crate) fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
        // Events from the events.k8s.io API carry eventTime and series instead of the old fields.
        let first_seen = match time_at(event, &["firstTimestamp"]) {
            Some(t) => since(Some(t), now),
            None => since(time_at(event, &["eventTime"]), now),
        };
        let mut last_seen = match time_at(event, &["lastTimestamp"]) {
            Some(t) => since(Some(t), now),
            None => first_seen.clone(),
        };
        let mut count = int_at(event, &["count"]);
        if let Some(series) = get(event, &["series"]) {
            last_seen = since(time_at(series, &["lastObservedTime"]), now);
            count = int_at(series, &["count"]);
        } else if count == 0 {
            count = 1;
        }

        let kind = str_at(event, &["involvedObject", "kind"]).to_lowercase();
        let object_name = str_at(event, &["involvedObject", "name"]);
        let target = if object_name.is_empty() {
            kind
        } else {
            format!("{kind}/{object_name}")
        };

        let component = or_default(
            str_at(event, &["source", "component"]),
            str_at(event, &["reportingComponent"]),
        );
        let host = or_default(
            str_at(event, &["source", "host"]),
            str_at(event, &["reportingInstance"]),
        );
        let source = if host.is_empty() {
            component.to_string()
        } else {
            format!("{component}, {host}")
        };

        vec![
            json!(last_seen),
            json!(str_at(event, &["type"])),
            json!(str_at(event, &["reason"])),
            json!(target),
            json!(str_at(event, &["involvedObject", "fieldPath"])),
            json!(source),
            json!(str_at(event, &["message"]).trim()),
            json!(first_seen),
            json!(count),
            json!(name(event)),
        ]
    }
}
