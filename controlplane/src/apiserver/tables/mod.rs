//! Server-side Table printing (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
//!
//! `kubectl get` asks the API server for a `meta.k8s.io/v1` Table and prints its columns as they
//! come, so the columns and cells here follow kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`, Kubernetes 1.32) kind by kind. The server always
//! prints "wide" rows: every column, priority 1 ones included, and kubectl hides those unless it
//! is given `-o wide`. Objects arrive as the stored `v1` JSON; where upstream would see a value
//! that API defaulting fills in (a Service's type, a Deployment's replicas, ...) the printer
//! applies the same default, so an object stored without it prints the same as upstream.

use std::borrow::Cow;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::apiserver::selectors::label_selector_from_json;

#[cfg(test)]
mod tests;
// Printers for kinds the next issues serve (PodDisruptionBudget, PriorityClass, PVs, RBAC, ...);
// only the tests read them until their kinds are registered.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) mod upstream;

/// `ObjectMeta.name`'s API documentation, upstream's description of every Name column.
pub(crate) const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// `ObjectMeta.creationTimestamp`'s API documentation, upstream's description of every Age column.
pub(crate) const CREATION_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

pub(crate) const CONTAINERS_DOC: &str = "Names of each container in the template.";

pub(crate) const IMAGES_DOC: &str = "Images referenced by each container in the template.";

pub(crate) const SELECTOR_DOC: &str =
    "A label query over pods that should match the replica count.";

/// One `metav1.TableColumnDefinition`. Built-in kinds' columns are constants; a custom
/// resource's come from its definition, hence owned-or-static text.
#[derive(Debug, Clone)]
pub struct Column {
    pub(crate) name: Cow<'static, str>,
    pub(crate) kind: Cow<'static, str>,
    pub(crate) format: Cow<'static, str>,
    pub(crate) priority: u8,
    pub(crate) description: Cow<'static, str>,
}

/// A column shown by default.
pub(crate) const fn col(
    name: &'static str,
    kind: &'static str,
    description: &'static str,
) -> Column {
    Column {
        name: Cow::Borrowed(name),
        kind: Cow::Borrowed(kind),
        format: Cow::Borrowed(""),
        priority: 0,
        description: Cow::Borrowed(description),
    }
}

/// A column shown only with `-o wide`.
pub(crate) const fn wide(
    name: &'static str,
    kind: &'static str,
    description: &'static str,
) -> Column {
    Column {
        name: Cow::Borrowed(name),
        kind: Cow::Borrowed(kind),
        format: Cow::Borrowed(""),
        priority: 1,
        description: Cow::Borrowed(description),
    }
}

pub(crate) const NAME: Column = Column {
    name: Cow::Borrowed("Name"),
    kind: Cow::Borrowed("string"),
    format: Cow::Borrowed("name"),
    priority: 0,
    description: Cow::Borrowed(NAME_DOC),
};

pub(crate) const AGE: Column = col("Age", "string", CREATION_DOC);

pub(crate) const CONTAINERS: Column = wide("Containers", "string", CONTAINERS_DOC);

pub(crate) const IMAGES: Column = wide("Images", "string", IMAGES_DOC);

/// Any other kind (custom resources): the columns a CRD without printer columns gets.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const DEFAULT_COLUMNS: &[Column] = &[NAME, AGE];

/// Column definitions (metav1.TableColumnDefinition JSON objects: name, type, format, description, priority) for objects of `kind`.
pub fn column_definitions(columns: &[Column]) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": c.kind,
                "format": c.format,
                "description": c.description,
                "priority": c.priority,
            })
        })
        .collect()
}

/// Kubernetes' HumanDuration ("5s", "3m2s"?, "10m", "5h", "3d", "2y"...) exactly as upstream.
pub fn human_duration(duration: std::time::Duration) -> String {
    // Go's time.Duration is int64 nanoseconds and saturates there (~292 years).
    human_nanos(i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX))
}

/// HumanDuration over a signed Go-style duration in nanoseconds, negative values included.
pub(crate) fn human_nanos(d: i64) -> String {
    const SECOND: i64 = 1_000_000_000;
    const MINUTE: i64 = 60 * SECOND;
    const HOUR: i64 = 60 * MINUTE;
    // Up to two seconds into the future still counts as "now", to tolerate clock skew.
    let seconds = d / SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d / MINUTE;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d / HOUR;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{days}d");
        }
        return format!("{days}d{h}h");
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        if dy == 0 {
            return format!("{years}y");
        }
        return format!("{years}y{dy}d");
    }
    format!("{years}y")
}

pub(crate) fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let mut cur = v;
    for key in path {
        cur = cur.get(key)?;
    }
    if cur.is_null() { None } else { Some(cur) }
}

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    get(v, path).and_then(Value::as_str).unwrap_or("")
}

pub(crate) fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    get(v, path).and_then(Value::as_i64)
}

pub(crate) fn int_at(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

pub(crate) fn bool_at(v: &Value, path: &[&str]) -> Option<bool> {
    get(v, path).and_then(Value::as_bool)
}

pub(crate) fn list_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    get(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub(crate) fn map_len(v: &Value, path: &[&str]) -> usize {
    get(v, path)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

pub(crate) fn or_default<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() { default } else { value }
}

pub(crate) fn name(o: &Value) -> &str {
    str_at(o, &["metadata", "name"])
}

pub(crate) fn is_deleting(o: &Value) -> bool {
    get(o, &["metadata", "deletionTimestamp"]).is_some()
}

/// `spec.replicas`, which workload defaulting sets to 1 when unset.
pub(crate) fn replicas(o: &Value) -> i64 {
    opt_int(o, &["spec", "replicas"]).unwrap_or(1)
}

/// A Quantity as upstream prints it: the stored string, or "0" for an absent quantity.
pub(crate) fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".to_string(),
    }
}

/// An IntOrString as upstream prints it, "N/A" when unset.
pub(crate) fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".to_string(),
    }
}

/// Unix seconds of Go's zero time (0001-01-01T00:00:00Z), which upstream treats as unset.
pub(crate) const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

pub(crate) fn time_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    let text = get(v, path)?.as_str()?;
    let t: Timestamp = text.parse().ok()?;
    (t.as_second() != GO_ZERO_TIME_SECONDS).then_some(t)
}

/// Clamps jiff's signed span to Go's int64 nanoseconds, which saturate the same way.
pub(crate) fn go_nanos(nanos: i128) -> i64 {
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}

/// upstream's translateTimestampSince: "<unknown>" for an unset time.
pub(crate) fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        Some(t) => human_nanos(go_nanos(now.duration_since(t).as_nanos())),
        None => "<unknown>".to_string(),
    }
}

pub(crate) fn age(o: &Value, now: Timestamp) -> String {
    since(time_at(o, &["metadata", "creationTimestamp"]), now)
}

/// The default table convertor's cell: creation time in RFC 3339 at whole seconds.
pub(crate) fn created_at(o: &Value) -> String {
    let seconds = time_at(o, &["metadata", "creationTimestamp"])
        .map_or(GO_ZERO_TIME_SECONDS, Timestamp::as_second);
    Timestamp::from_second(seconds)
        .map_or_else(|_| "0001-01-01T00:00:00Z".to_string(), |t| t.to_string())
}

/// Names and images of the containers in the pod template at `template`, comma-separated.
/// The row of a kind printed with the default columns (name and age).
pub(crate) fn default_cells(o: &Value, now: Timestamp) -> Vec<Value> {
    vec![json!(name(o)), json!(age(o, now))]
}

/// The row of a kind printed as name and creation time (Role, ClusterRole, ...).
pub(crate) fn created_at_cells(o: &Value) -> Vec<Value> {
    vec![json!(name(o)), json!(created_at(o))]
}

pub(crate) fn container_cells(o: &Value, template: &[&str]) -> (String, String) {
    let mut path = template.to_vec();
    path.extend(["spec", "containers"]);
    let containers = list_at(o, &path);
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// labels.FormatLabels: sorted `k=v` pairs, "<none>" when empty.
pub(crate) fn format_labels(v: Option<&Value>) -> String {
    let mut pairs: Vec<String> = v
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs.sort();
    pairs.join(",")
}

/// LabelSelectorAsSelector(selector).String(), or None where upstream reports the selector invalid.
pub fn selector_string(selector: Option<&Value>) -> Option<String> {
    // A nil selector selects nothing and an empty one everything; both print as "".
    match label_selector_from_json(selector) {
        Ok(Some(selector)) => Some(selector.to_string()),
        Ok(None) => Some(String::new()),
        Err(_) => None,
    }
}

/// metav1.FormatLabelSelector: "<none>" when empty, "<error>" when invalid.
pub(crate) fn format_label_selector(selector: Option<&Value>) -> String {
    match selector_string(selector) {
        None => "<error>".to_string(),
        Some(s) if s.is_empty() => "<none>".to_string(),
        Some(s) => s,
    }
}

/// net.JoinHostPort: brackets around IPv6 hosts.
pub(crate) fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Up to three items, then " + N more...", "<unset>" when there are none.
pub(crate) fn list_with_more(list: &[String], more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count.saturating_sub(max));
    }
    if ret.is_empty() {
        return "<unset>".to_string();
    }
    ret
}

/// The load balancer's ingress points, sorted and deduplicated, IP preferred to hostname.
pub(crate) fn load_balancer_ingress(o: &Value) -> String {
    let mut points: Vec<&str> = list_at(o, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| {
            let ip = str_at(i, &["ip"]);
            let hostname = str_at(i, &["hostname"]);
            if !ip.is_empty() {
                Some(ip)
            } else if !hostname.is_empty() {
                Some(hostname)
            } else {
                None
            }
        })
        .collect();
    points.sort_unstable();
    points.dedup();
    // Server-side tables are always generated wide, so upstream never truncates this.
    points.join(",")
}

pub(crate) fn has_condition(o: &Value, condition_type: &str) -> Option<bool> {
    list_at(o, &["status", "conditions"])
        .iter()
        .find(|c| str_at(c, &["type"]) == condition_type)
        .map(|c| str_at(c, &["status"]) == "True")
}

/// Keeps the later of `latest` and the container's last termination time.
pub(crate) fn note_termination(latest: &mut Option<Timestamp>, status: &Value) {
    if let Some(t) = time_at(status, &["lastState", "terminated", "finishedAt"])
        && latest.is_none_or(|l| l < t)
    {
        *latest = Some(t);
    }
}
