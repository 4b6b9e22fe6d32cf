//! Validation of incoming objects the way kube-apiserver (v1.33) does it.
//!
//! Three entry points, called in this order by the request handlers:
//!
//! 1. [`decode_check`]: does the body decode into the typed object at all? A failure is a 400
//!    `BadRequest` upstream ("... cannot be handled as a Deployment: json: cannot unmarshal ...").
//! 2. [`unknown_fields`]: fields the typed schema does not know, for `fieldValidation=Strict`
//!    (400) or `Warn` (warning headers). `Ignore` simply skips this call.
//! 3. [`validate`]: everything the kind's `ValidateXxx`/`ValidateXxxUpdate` functions check; a
//!    non-empty result is a 422 `Invalid` whose `details.causes` are the returned [`Cause`]s.
//!
//! `validate` works on the JSON as sent, so it treats fields that kube-apiserver defaults before
//! validating (`restartPolicy`, `dnsPolicy`, port `protocol`, `sessionAffinity`, strategies, ...)
//! as defaulted when they are absent or empty: callers need not run defaulting first. It expects
//! what the generic registry does before validation to be done already: `metadata.name` filled in
//! from `generateName`, and `metadata.namespace` set from the request path for namespaced kinds.
//! Field paths and messages follow upstream's `field.Error` formatting, so
//! `format!("{}: {}", cause.field, cause.message)` reads exactly like kube-apiserver's output.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v1 as autoscaling, batch::v1 as batch,
    coordination::v1 as coordination, core::v1 as core, discovery::v1 as discovery,
    networking::v1 as networking,
};

type Obj = Map<String, Value>;

// ---------------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------------

/// One reason an object is invalid (becomes a StatusCause: reason, message, field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Upstream cause type, e.g. `FieldValueRequired`.
    pub reason: CauseReason,
    /// Field path in upstream notation, e.g. `spec.template.spec.containers[0].image`.
    pub field: String,
    /// Upstream `ErrorBody()`, e.g. `Invalid value: "Web_1": a lowercase RFC 1123 ...`.
    pub message: String,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Same shape as upstream field.Error.Error(): "<field>: <body>".
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Upstream cause types: FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, FieldValueDuplicate, FieldValueTooLong, FieldValueForbidden, FieldValueTypeInvalid...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseReason {
    /// `FieldValueNotFound`: a reference to something that does not exist (e.g. a volume).
    NotFound,
    /// `FieldValueRequired`: a required field is missing or empty.
    Required,
    /// `FieldValueDuplicate`: a value that must be unique is repeated.
    Duplicate,
    /// `FieldValueInvalid`: the value is malformed or out of range.
    Invalid,
    /// `FieldValueNotSupported`: the value is not one of an enumerated set.
    NotSupported,
    /// `FieldValueForbidden`: the field may not be set (or changed) here.
    Forbidden,
    /// `FieldValueTooLong`: the value exceeds a size limit.
    TooLong,
    /// `FieldValueTooMany`: a list has too many items.
    TooMany,
    /// `InternalError`: validation itself failed.
    Internal,
    /// `FieldValueTypeInvalid`: the value has the wrong JSON type.
    TypeInvalid,
}

impl CauseReason {
    /// Upstream's `metav1.CauseType` string, e.g. `"FieldValueRequired"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CauseReason::NotFound => "FieldValueNotFound",
            CauseReason::Required => "FieldValueRequired",
            CauseReason::Duplicate => "FieldValueDuplicate",
            CauseReason::Invalid => "FieldValueInvalid",
            CauseReason::NotSupported => "FieldValueNotSupported",
            CauseReason::Forbidden => "FieldValueForbidden",
            CauseReason::TooLong => "FieldValueTooLong",
            CauseReason::TooMany => "FieldValueTooMany",
            CauseReason::Internal => "InternalError",
            CauseReason::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human label upstream's `ErrorType.String()` puts at the start of a message.
    fn label(self) -> &'static str {
        match self {
            CauseReason::NotFound => "Not found",
            CauseReason::Required => "Required value",
            CauseReason::Duplicate => "Duplicate value",
            CauseReason::Invalid | CauseReason::TypeInvalid => "Invalid value",
            CauseReason::NotSupported => "Unsupported value",
            CauseReason::Forbidden => "Forbidden",
            CauseReason::TooLong => "Too long",
            CauseReason::TooMany => "Too many",
            CauseReason::Internal => "Internal error",
        }
    }
}

/// Typed decoding: Err(message) when the JSON does not deserialize into the k8s-openapi type for (apiVersion, kind) — e.g. a string where an int is expected. The message names the field if serde says it.
///
/// The message is the part upstream puts after `<Kind> in version "<v>" cannot be handled as a
/// <Kind>: `, e.g. `json: cannot unmarshal string into Go struct field spec.replicas of type
/// int32` (the caller adds that prefix). An unregistered (apiVersion, kind) gives
/// `no kind "X" is registered for version "Y"`. Missing required fields are not decode errors
/// (Go zero-fills them; [`validate`] reports them).
pub fn decode_check(api_version: &str, kind: &str, object: &Value) -> Result<(), String> {
    let Some(which) = registered(api_version, kind) else {
        return Err(format!(
            "no kind {} is registered for version {}",
            q(kind),
            q(api_version)
        ));
    };
    if !object.is_object() {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type {}",
            json_kind(object),
            go_type_name(which)
        ));
    }
    decode(which, object)?;
    // Quantities are plain strings to k8s-openapi but upstream parses them while decoding, so a
    // malformed one is a decode error (400) there too.
    if let Some(msg) = find_bad_quantity(object, "") {
        return Err(msg);
    }
    Ok(())
}

/// Fields present in `object` that the typed schema does not know (for fieldValidation=Strict / Warn): paths like `spec.template.spec.containers[0].imagee`.
///
/// Returns nothing when the object does not decode at all (call [`decode_check`] first) or the
/// kind is not registered. Keys whose value is `null` are never reported: they decode to "unset".
pub fn unknown_fields(api_version: &str, kind: &str, object: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(which) = registered(api_version, kind) else {
        return out;
    };
    if let Ok(round_trip) = decode(which, object) {
        diff_unknown(object, &round_trip, "", &mut out);
    }
    out
}

/// Everything kube-apiserver checks on create (and update, `old` = Some(previous object)), for a namespaced or cluster-scoped object.
///
/// Unregistered kinds get the generic ObjectMeta checks only.
pub fn validate(api_version: &str, kind: &str, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut e = Errs::default();
    if !object.is_object() {
        e.push(
            CauseReason::TypeInvalid,
            "",
            Some(&compact(object)),
            "must be a JSON object",
        );
        return e.0;
    }
    let which = registered(api_version, kind).unwrap_or(Which::Other);
    let obj = Some(object);
    let old = old.filter(|o| o.is_object());
    let meta = get(obj, "metadata");
    let (namespaced, rule) = scope_and_name_rule(which);
    match old {
        None => meta_create(&mut e, meta, namespaced, rule),
        Some(o) => meta_update(&mut e, meta, get(Some(o), "metadata"), rule),
    }
    let is_update = old.is_some();
    match which {
        Which::Pod => pod(&mut e, obj, old),
        Which::Service => service(&mut e, obj, old),
        Which::Endpoints => endpoints(&mut e, obj),
        Which::ConfigMap => config_map(&mut e, obj, old),
        Which::Secret => secret(&mut e, obj, old),
        Which::ServiceAccount | Which::Other => {}
        Which::Namespace => namespace(&mut e, obj),
        Which::Node => node(&mut e, obj, old),
        Which::Event => event(&mut e, obj),
        Which::Binding => binding(&mut e, obj),
        Which::Lease => lease(&mut e, obj),
        Which::Deployment => deployment(&mut e, obj, old),
        Which::ReplicaSet => replica_set(&mut e, obj, old),
        Which::ReplicationController => replication_controller(&mut e, obj),
        Which::StatefulSet => stateful_set(&mut e, obj, old),
        Which::DaemonSet => daemon_set(&mut e, obj, old),
        Which::ControllerRevision => controller_revision(&mut e, obj, old),
        Which::Job => job(&mut e, obj, old),
        Which::CronJob => cron_job(&mut e, obj, is_update),
        Which::NetworkPolicy => network_policy(&mut e, obj),
        Which::EndpointSlice => endpoint_slice(&mut e, obj, old),
        Which::Scale => scale(&mut e, obj),
    }
    e.0
}

/// The full 422 message upstream builds from the causes, e.g. `Deployment.apps "web" is invalid: spec.replicas: ...`.
pub fn invalid_message(api_version: &str, kind: &str, name: &str, causes: &[Cause]) -> String {
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let qualified = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    // utilerrors.NewAggregate drops exact duplicates and prints one error bare, several in [].
    let mut seen = BTreeSet::new();
    let msgs: Vec<String> = causes
        .iter()
        .map(ToString::to_string)
        .filter(|m| seen.insert(m.clone()))
        .collect();
    let body = match msgs.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    format!("{qualified} {} is invalid: {body}", q(name))
}

// ---------------------------------------------------------------------------------------------
// Registry and typed decoding
// ---------------------------------------------------------------------------------------------

/// The kinds this server registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Pod,
    Service,
    Endpoints,
    ConfigMap,
    Secret,
    ServiceAccount,
    Namespace,
    Node,
    Event,
    Binding,
    Lease,
    Deployment,
    ReplicaSet,
    ReplicationController,
    StatefulSet,
    DaemonSet,
    ControllerRevision,
    Job,
    CronJob,
    NetworkPolicy,
    EndpointSlice,
    Scale,
    Other,
}

fn registered(api_version: &str, kind: &str) -> Option<Which> {
    let w = match (api_version, kind) {
        ("v1", "Pod") => Which::Pod,
        ("v1", "Service") => Which::Service,
        ("v1", "Endpoints") => Which::Endpoints,
        ("v1", "ConfigMap") => Which::ConfigMap,
        ("v1", "Secret") => Which::Secret,
        ("v1", "ServiceAccount") => Which::ServiceAccount,
        ("v1", "Namespace") => Which::Namespace,
        ("v1", "Node") => Which::Node,
        ("v1", "Event") => Which::Event,
        ("v1", "Binding") => Which::Binding,
        ("v1", "ReplicationController") => Which::ReplicationController,
        ("coordination.k8s.io/v1", "Lease") => Which::Lease,
        ("apps/v1", "Deployment") => Which::Deployment,
        ("apps/v1", "ReplicaSet") => Which::ReplicaSet,
        ("apps/v1", "StatefulSet") => Which::StatefulSet,
        ("apps/v1", "DaemonSet") => Which::DaemonSet,
        ("apps/v1", "ControllerRevision") => Which::ControllerRevision,
        ("batch/v1", "Job") => Which::Job,
        ("batch/v1", "CronJob") => Which::CronJob,
        ("networking.k8s.io/v1", "NetworkPolicy") => Which::NetworkPolicy,
        ("discovery.k8s.io/v1", "EndpointSlice") => Which::EndpointSlice,
        ("autoscaling/v1", "Scale") => Which::Scale,
        _ => return None,
    };
    Some(w)
}

/// Name rule of the kind's `ValidateXxxName` function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    /// `NameIsDNSSubdomain`.
    Subdomain,
    /// `NameIsDNSLabel`.
    Label,
    /// `NameIsDNS1035Label` (Services: must start with a letter).
    Dns1035,
    /// Only the path-segment rules the storage key needs (no `/`, no `%`, not `.`/`..`).
    PathSegment,
    /// Path-segment rules when a name is given, which it need not be (Binding: from the URL).
    Unchecked,
}

fn scope_and_name_rule(w: Which) -> (bool, NameRule) {
    match w {
        Which::Namespace => (false, NameRule::Label),
        Which::Node | Which::Other => (false, NameRule::Subdomain),
        Which::Service => (true, NameRule::Dns1035),
        Which::StatefulSet => (true, NameRule::Label),
        // core/v1 Events skip ObjectMeta name validation upstream (legacy clients), and a
        // Binding's name comes from the URL: only what the storage key needs is checked.
        Which::Event => (true, NameRule::PathSegment),
        Which::Binding => (true, NameRule::Unchecked),
        _ => (true, NameRule::Subdomain),
    }
}

fn go_type_name(w: Which) -> &'static str {
    match w {
        Which::Pod => "v1.Pod",
        Which::Service => "v1.Service",
        Which::Endpoints => "v1.Endpoints",
        Which::ConfigMap => "v1.ConfigMap",
        Which::Secret => "v1.Secret",
        Which::ServiceAccount => "v1.ServiceAccount",
        Which::Namespace => "v1.Namespace",
        Which::Node => "v1.Node",
        Which::Event => "v1.Event",
        Which::Binding => "v1.Binding",
        Which::Lease => "v1.Lease",
        Which::Deployment => "v1.Deployment",
        Which::ReplicaSet => "v1.ReplicaSet",
        Which::ReplicationController => "v1.ReplicationController",
        Which::StatefulSet => "v1.StatefulSet",
        Which::DaemonSet => "v1.DaemonSet",
        Which::ControllerRevision => "v1.ControllerRevision",
        Which::Job => "v1.Job",
        Which::CronJob => "v1.CronJob",
        Which::NetworkPolicy => "v1.NetworkPolicy",
        Which::EndpointSlice => "v1.EndpointSlice",
        Which::Scale => "v1.Scale",
        Which::Other => "unstructured.Unstructured",
    }
}

type RoundTrip = fn(&str) -> Result<Value, serde_json::Error>;

fn rt<T: DeserializeOwned + Serialize>(text: &str) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_str(text)?;
    serde_json::to_value(&typed)
}

fn round_trip_fn(w: Which) -> Option<RoundTrip> {
    let f: RoundTrip = match w {
        Which::Pod => rt::<core::Pod>,
        Which::Service => rt::<core::Service>,
        Which::Endpoints => rt::<core::Endpoints>,
        Which::ConfigMap => rt::<core::ConfigMap>,
        Which::Secret => rt::<core::Secret>,
        Which::ServiceAccount => rt::<core::ServiceAccount>,
        Which::Namespace => rt::<core::Namespace>,
        Which::Node => rt::<core::Node>,
        Which::Event => rt::<core::Event>,
        Which::Binding => rt::<core::Binding>,
        Which::Lease => rt::<coordination::Lease>,
        Which::Deployment => rt::<apps::Deployment>,
        Which::ReplicaSet => rt::<apps::ReplicaSet>,
        Which::ReplicationController => rt::<core::ReplicationController>,
        Which::StatefulSet => rt::<apps::StatefulSet>,
        Which::DaemonSet => rt::<apps::DaemonSet>,
        Which::ControllerRevision => rt::<apps::ControllerRevision>,
        Which::Job => rt::<batch::Job>,
        Which::CronJob => rt::<batch::CronJob>,
        Which::NetworkPolicy => rt::<networking::NetworkPolicy>,
        Which::EndpointSlice => rt::<discovery::EndpointSlice>,
        Which::Scale => rt::<autoscaling::Scale>,
        Which::Other => return None,
    };
    Some(f)
}

/// JSON text with one member per line, plus for every line the field path (display form) and
/// JSON pointer it belongs to. serde_json reports errors by line, so this turns "line 7" into
/// `spec.replicas` without a path-tracking deserializer.
#[derive(Default)]
struct Rendered {
    text: String,
    lines: Vec<(String, String)>,
}

impl Rendered {
    fn new(v: &Value) -> Self {
        let mut r = Rendered {
            text: String::new(),
            lines: vec![(String::new(), String::new())],
        };
        r.value(v, "", "");
        r
    }

    fn newline(&mut self, path: &str, pointer: &str) {
        self.text.push('\n');
        self.lines.push((path.to_string(), pointer.to_string()));
    }

    fn value(&mut self, v: &Value, path: &str, pointer: &str) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                self.text.push('{');
                let n = m.len();
                for (i, (k, val)) in m.iter().enumerate() {
                    let p = child(path, k);
                    let ptr = format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1"));
                    self.newline(&p, &ptr);
                    self.text.push_str(&Value::String(k.clone()).to_string());
                    self.text.push(':');
                    self.value(val, &p, &ptr);
                    if i + 1 < n {
                        self.text.push(',');
                    }
                }
                self.newline(path, pointer);
                self.text.push('}');
            }
            Value::Array(a) if !a.is_empty() => {
                self.text.push('[');
                let n = a.len();
                for (i, val) in a.iter().enumerate() {
                    let p = idx(path, i);
                    let ptr = format!("{pointer}/{i}");
                    self.newline(&p, &ptr);
                    self.value(val, &p, &ptr);
                    if i + 1 < n {
                        self.text.push(',');
                    }
                }
                self.newline(path, pointer);
                self.text.push(']');
            }
            other => self.text.push_str(&other.to_string()),
        }
    }

    fn at(&self, line: usize) -> Option<&(String, String)> {
        line.checked_sub(1).and_then(|i| self.lines.get(i))
    }
}

/// Decodes into the typed object and returns its re-serialization. Required-but-missing fields
/// (a handful of `missing_field` checks in k8s-openapi) are filled with a placeholder and the
/// decode retried, because Go zero-fills them instead of failing.
fn decode(w: Which, object: &Value) -> Result<Value, String> {
    let Some(f) = round_trip_fn(w) else {
        return Err("no typed schema".to_string());
    };
    let mut current = object.clone();
    // Each retry fixes one missing field; the bound only guards against a pathological loop.
    for _ in 0..64 {
        let rendered = Rendered::new(&current);
        let err = match f(&rendered.text) {
            Ok(v) => return Ok(v),
            Err(err) => err,
        };
        let raw = err.to_string();
        let suffix = format!(" at line {} column {}", err.line(), err.column());
        let msg = raw.strip_suffix(&suffix).unwrap_or(&raw).to_string();
        let located = rendered.at(err.line());
        if let (Some(missing), Some((_, pointer))) = (missing_field_name(&msg), located)
            && fill_missing(&mut current, pointer, &missing, f)
        {
            continue;
        }
        let path = located.map(|(p, _)| p.as_str()).unwrap_or("");
        return Err(go_style_decode_error(&msg, path));
    }
    Err("too many missing required fields".to_string())
}

fn missing_field_name(msg: &str) -> Option<String> {
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Inserts the first placeholder for `name` under `pointer` that makes that missing-field
/// error go away. Returns false when none does (the caller then reports the error).
fn fill_missing(current: &mut Value, pointer: &str, name: &str, f: RoundTrip) -> bool {
    let candidates = [
        Value::String("1970-01-01T00:00:00Z".to_string()),
        Value::String(String::new()),
        Value::from(0),
        Value::Object(Map::new()),
        Value::Array(Vec::new()),
        Value::Bool(false),
    ];
    let field_ptr = format!("{pointer}/{}", name.replace('~', "~0").replace('/', "~1"));
    for c in candidates {
        let mut trial = current.clone();
        let Some(Value::Object(m)) = trial.pointer_mut(pointer) else {
            return false;
        };
        m.insert(name.to_string(), c);
        let rendered = Rendered::new(&trial);
        let accepted = match f(&rendered.text) {
            Ok(_) => true,
            Err(err) => {
                let msg = err.to_string();
                let at = rendered.at(err.line()).map(|(_, p)| p.as_str());
                let same_missing =
                    missing_field_name(&msg).as_deref() == Some(name) && at == Some(pointer);
                let candidate_rejected = at == Some(field_ptr.as_str());
                !(same_missing || candidate_rejected)
            }
        };
        if accepted {
            *current = trial;
            return true;
        }
    }
    false
}

/// Rewrites serde's "invalid type: string \"x\", expected i32" into Go's wording.
fn go_style_decode_error(msg: &str, path: &str) -> String {
    if let Some(rest) = msg.strip_prefix("invalid type: ")
        && let Some((got, want)) = rest.rsplit_once(", expected ")
    {
        let got = if got.starts_with("string") {
            "string"
        } else if got.starts_with("integer") || got.starts_with("floating point") {
            "number"
        } else if got.starts_with("boolean") {
            "bool"
        } else if got.starts_with("map") {
            "object"
        } else if got.starts_with("sequence") {
            "array"
        } else {
            got
        };
        let want = match want {
            "i32" => "int32".to_string(),
            "i64" => "int64".to_string(),
            "u16" | "u32" | "u64" | "u8" => "uint".to_string(),
            "f64" => "float64".to_string(),
            "a string" => "string".to_string(),
            "a boolean" => "bool".to_string(),
            "a sequence" => "[]interface {}".to_string(),
            "a map" => "map[string]string".to_string(),
            other => other.trim_start_matches("struct ").to_string(),
        };
        return if path.is_empty() {
            format!("json: cannot unmarshal {got} into Go value of type {want}")
        } else {
            format!("json: cannot unmarshal {got} into Go struct field {path} of type {want}")
        };
    }
    if path.is_empty() {
        msg.to_string()
    } else {
        format!("{path}: {msg}")
    }
}

fn diff_unknown(input: &Value, round_trip: &Value, path: &str, out: &mut Vec<String>) {
    match (input, round_trip) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = child(path, k);
                match b.get(k) {
                    None => out.push(p),
                    Some(bv) => diff_unknown(v, bv, &p, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, bv)) in a.iter().zip(b.iter()).enumerate() {
                diff_unknown(v, bv, &idx(path, i), out);
            }
        }
        _ => {}
    }
}

/// Finds the first malformed resource quantity in the places quantities live in these kinds.
/// The parent key keeps look-alike keys in labels, annotations or data maps out of it.
fn find_bad_quantity(v: &Value, parent_key: &str) -> Option<String> {
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                let is_quantity_map = matches!(
                    (parent_key, k.as_str()),
                    ("resources", "limits" | "requests")
                        | ("spec", "overhead")
                        | ("status", "capacity" | "allocatable")
                );
                let is_quantity = matches!(
                    (parent_key, k.as_str()),
                    ("emptyDir", "sizeLimit") | ("resourceFieldRef", "divisor")
                );
                if is_quantity_map && let Some(qm) = val.as_object() {
                    if let Some(msg) = qm.values().find_map(|qv| quantity_value(qv).err()) {
                        return Some(msg.to_string());
                    }
                    continue;
                }
                if is_quantity {
                    if let Err(msg) = quantity_value(val) {
                        return Some(msg.to_string());
                    }
                    continue;
                }
                if let Some(msg) = find_bad_quantity(val, k) {
                    return Some(msg);
                }
            }
            None
        }
        Value::Array(a) => a.iter().find_map(|x| find_bad_quantity(x, parent_key)),
        _ => None,
    }
}

fn quantity_value(v: &Value) -> Result<(), &'static str> {
    match v {
        Value::String(s) => parse_quantity(s).map(|_| ()),
        Value::Number(_) | Value::Null => Ok(()),
        _ => Err(QUANTITY_FORMAT_ERR),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------------------------------------
// Error accumulation, paths and upstream value formatting
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Errs(Vec<Cause>);

impl Errs {
    /// Builds upstream's `ErrorBody()`: label, then the (pre-formatted) bad value, then detail.
    fn push(&mut self, reason: CauseReason, field: &str, value: Option<&str>, detail: &str) {
        let mut message = reason.label().to_string();
        if let Some(v) = value {
            message.push_str(": ");
            message.push_str(v);
        }
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(detail);
        }
        self.0.push(Cause {
            reason,
            field: field.to_string(),
            message,
        });
    }
    fn required(&mut self, f: &str, detail: &str) {
        self.push(CauseReason::Required, f, None, detail);
    }
    fn forbidden(&mut self, f: &str, detail: &str) {
        self.push(CauseReason::Forbidden, f, None, detail);
    }
    /// `value` is already formatted the way Go's `%v`/`%q`/`%#v` would print it.
    fn invalid(&mut self, f: &str, value: &str, detail: &str) {
        self.push(CauseReason::Invalid, f, Some(value), detail);
    }
    fn invalid_s(&mut self, f: &str, value: &str, detail: &str) {
        self.invalid(f, &q(value), detail);
    }
    fn invalid_i(&mut self, f: &str, value: i64, detail: &str) {
        self.invalid(f, &value.to_string(), detail);
    }
    fn not_supported(&mut self, f: &str, value: &str, valid: &[&str]) {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| q(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        self.push(CauseReason::NotSupported, f, Some(&q(value)), &detail);
    }
    fn duplicate(&mut self, f: &str, value: &str) {
        self.push(CauseReason::Duplicate, f, Some(value), "");
    }
    fn not_found(&mut self, f: &str, value: &str) {
        self.push(CauseReason::NotFound, f, Some(&q(value)), "");
    }
    fn too_long(&mut self, f: &str, max: usize) {
        self.push(
            CauseReason::TooLong,
            f,
            None,
            &format!("may not be more than {max} bytes"),
        );
    }
    fn too_many(&mut self, f: &str, actual: usize, max: usize) {
        self.push(
            CauseReason::TooMany,
            f,
            Some(&actual.to_string()),
            &format!("must have at most {max} items"),
        );
    }
    /// `must be greater than or equal to 0` for negative values.
    fn non_negative(&mut self, f: &str, value: Option<i64>) {
        if let Some(v) = value.filter(|v| *v < 0) {
            self.invalid_i(f, v, IS_NEGATIVE);
        }
    }
}

const IS_NEGATIVE: &str = "must be greater than or equal to 0";
const IMMUTABLE: &str = "field is immutable";

fn child(p: &str, name: &str) -> String {
    if p.is_empty() {
        name.to_string()
    } else {
        format!("{p}.{name}")
    }
}

fn idx(p: &str, i: usize) -> String {
    format!("{p}[{i}]")
}

fn key(p: &str, k: &str) -> String {
    format!("{p}[{k}]")
}

/// Go's `strconv.Quote` (what `%q` prints).
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn compact(v: &Value) -> String {
    v.to_string()
}

/// `%#v` of a `map[string]string`.
fn go_map(m: Option<&Obj>) -> String {
    match m {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", q(k), q(v.as_str().unwrap_or_default())))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

/// `%#v` of a `[]string`.
fn go_strings(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".to_string(),
        Some(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|x| q(x.as_str().unwrap_or_default()))
                .collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// `%#v` of a (dereferenced) `*metav1.LabelSelector`, as in "field is immutable" messages.
fn go_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return "null".to_string();
    };
    let exprs = match get(Some(sel), "matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(a) => {
            let items: Vec<String> = a
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        q(str_of(Some(r), "key")),
                        q(str_of(Some(r), "operator")),
                        go_strings(get(Some(r), "values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_map(obj_of(Some(sel), "matchLabels"))
    )
}

/// `%#v` of an `intstr.IntOrString`.
fn go_int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}", q(s)),
        other => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or_default()
        ),
    }
}

// JSON accessors: a wrong JSON type reads as "unset" (decode_check reports type errors).

fn get<'a>(v: Option<&'a Value>, k: &str) -> Option<&'a Value> {
    v?.as_object()?.get(k).filter(|x| !x.is_null())
}

fn str_opt<'a>(v: Option<&'a Value>, k: &str) -> Option<&'a str> {
    get(v, k)?.as_str()
}

fn str_of<'a>(v: Option<&'a Value>, k: &str) -> &'a str {
    str_opt(v, k).unwrap_or("")
}

fn int_of(v: Option<&Value>, k: &str) -> Option<i64> {
    get(v, k)?.as_i64()
}

fn bool_of(v: Option<&Value>, k: &str) -> Option<bool> {
    get(v, k)?.as_bool()
}

fn arr_of<'a>(v: Option<&'a Value>, k: &str) -> &'a [Value] {
    get(v, k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn obj_of<'a>(v: Option<&'a Value>, k: &str) -> Option<&'a Obj> {
    get(v, k)?.as_object()
}

fn strings_of<'a>(v: Option<&'a Value>, k: &str) -> Vec<&'a str> {
    arr_of(v, k).iter().filter_map(Value::as_str).collect()
}

// ---------------------------------------------------------------------------------------------
// apimachinery/pkg/util/validation
// ---------------------------------------------------------------------------------------------

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_UNDERSCORE_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '_', '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_KEY_ERR: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const PERCENT_FMT: &str = "[0-9]+%";
const PERCENT_ERR: &str =
    "a valid percent string must be a numeric string followed by an ending '%'";
const HTTP_HEADER_FMT: &str = "[-A-Za-z0-9]+";
const HTTP_HEADER_ERR: &str = "a valid HTTP header must consist of alphanumeric characters or '-'";
const RELAXED_ENV_ERR: &str = "a valid environment variable name must consist only of printable ASCII characters other than '='";
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";
const IP_ERR: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const CIDR_ERR: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";
const QUANTITY_FORMAT_ERR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const QUANTITY_SUFFIX_ERR: &str = "unable to parse quantity's suffix";

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let ex: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{fmt}')",
        ex.join(" or ")
    )
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?` (or with `_` allowed inside and as a leading character).
fn matches_label(s: &str, underscore: bool) -> bool {
    let b = s
        .strip_prefix('_')
        .filter(|_| underscore)
        .unwrap_or(s)
        .as_bytes();
    match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            is_lower_alnum(f)
                && is_lower_alnum(l)
                && b.iter()
                    .all(|&c| is_lower_alnum(c) || c == b'-' || (underscore && c == b'_'))
        }
        _ => false,
    }
}

fn matches_subdomain(s: &str, underscore: bool) -> bool {
    s.split('.').all(|l| matches_label(l, underscore))
}

fn is_dns1123_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_label(v, false) {
        if matches_subdomain(v, false) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

fn is_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !matches_subdomain(v, false) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

fn is_dns1123_subdomain_underscore(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !matches_subdomain(v, true) {
        // Upstream prints the plain subdomain regex here too.
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_UNDERSCORE_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

fn is_dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    let b = v.as_bytes();
    let ok = match (b.first(), b.last()) {
        (Some(&f), Some(&l)) => {
            f.is_ascii_lowercase()
                && is_lower_alnum(l)
                && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    };
    if !ok {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && l.is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

fn is_qualified_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                for m in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !matches_qualified_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

fn is_label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !v.is_empty() && !matches_qualified_part(v) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn is_valid_port_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 15 {
        errs.push(max_len_error(15));
    }
    if v.is_empty()
        || !v
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if !v.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if v.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if v.starts_with('-') || v.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

fn is_valid_port_num(p: i64) -> Vec<String> {
    if (1..=65535).contains(&p) {
        Vec::new()
    } else {
        vec![PORT_RANGE.to_string()]
    }
}

fn has_chdir_prefix(v: &str) -> Option<&'static str> {
    if v == "." {
        Some("must not be '.'")
    } else if v == ".." {
        Some("must not be '..'")
    } else if v.starts_with("..") {
        Some("must not start with '..'")
    } else {
        None
    }
}

fn is_config_map_key(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    if v.is_empty()
        || !v
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
    {
        errs.push(regex_error(
            CONFIG_KEY_ERR,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if let Some(m) = has_chdir_prefix(v) {
        errs.push(m.to_string());
    }
    errs
}

/// RelaxedEnvironmentVariableValidation is on by default in 1.33: any printable ASCII but `=`.
fn is_relaxed_env_var_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.is_empty() {
        errs.push("environment variable name must be non-empty".to_string());
    }
    if v.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(RELAXED_ENV_ERR.to_string());
    }
    errs
}

fn is_valid_percent(v: &str) -> bool {
    v.strip_suffix('%')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()))
}

fn is_path_segment_name(name: &str, prefix: bool) -> Vec<String> {
    if !prefix {
        for bad in [".", ".."] {
            if name == bad {
                return vec![format!("may not be '{bad}'")];
            }
        }
    }
    ["/", "%"]
        .iter()
        .filter(|bad| name.contains(*bad))
        .map(|bad| format!("may not contain '{bad}'"))
        .collect()
}

/// Upstream's `maskTrailingDash` (kept verbatim, quirk included) for generateName prefixes.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let cut = name.len() - 2;
        match name.get(..cut) {
            Some(head) => format!("{head}a"),
            None => name.to_string(),
        }
    } else {
        name.to_string()
    }
}

fn name_msgs(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    let masked;
    let name = if prefix {
        masked = mask_trailing_dash(name);
        masked.as_str()
    } else {
        name
    };
    match rule {
        NameRule::Subdomain => is_dns1123_subdomain(name),
        NameRule::Label => is_dns1123_label(name),
        NameRule::Dns1035 => is_dns1035_label(name),
        NameRule::PathSegment | NameRule::Unchecked => is_path_segment_name(name, prefix),
    }
}

// --- IPs and CIDRs -----------------------------------------------------------------------------

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// `IsValidIP`: parses, and must be in canonical form.
fn validate_ip_strict(e: &mut Errs, path: &str, v: &str) {
    match parse_ip(v) {
        None => e.invalid_s(path, v, IP_ERR),
        Some(ip) => {
            let canonical = ip.to_string();
            if canonical != v {
                e.invalid_s(
                    path,
                    v,
                    &format!("must be in canonical form ({})", q(&canonical)),
                );
            }
        }
    }
}

/// `IsValidIPForLegacyField` with StrictIPCIDRValidation off (its 1.33 default).
fn validate_ip_legacy(e: &mut Errs, path: &str, v: &str) -> bool {
    if parse_ip(v).is_none() {
        e.invalid_s(path, v, IP_ERR);
        return false;
    }
    true
}

/// `ValidateNonSpecialIP`: no unspecified, loopback or link-local addresses.
fn validate_non_special_ip(e: &mut Errs, path: &str, v: &str) {
    let Some(ip) = parse_ip(v) else {
        e.invalid_s(path, v, "must be a valid IP address");
        return;
    };
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        other => other,
    };
    let (unspecified, loopback, link_local, ll_multicast) = match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            (
                a.is_unspecified(),
                a.is_loopback(),
                a.is_link_local(),
                o[0] == 224 && o[1] == 0 && o[2] == 0,
            )
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            (
                a.is_unspecified(),
                a.is_loopback(),
                (s[0] & 0xffc0) == 0xfe80,
                (s[0] & 0xff0f) == 0xff02,
            )
        }
    };
    if unspecified {
        e.invalid_s(path, v, &format!("may not be unspecified ({v})"));
    }
    if loopback {
        e.invalid_s(
            path,
            v,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        );
    }
    if link_local {
        e.invalid_s(
            path,
            v,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        );
    }
    if ll_multicast {
        e.invalid_s(
            path,
            v,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        );
    }
}

/// A parsed CIDR: network address as a 128-bit value, prefix length, and family.
#[derive(Debug, Clone, Copy)]
struct Cidr {
    bits: u128,
    prefix: u32,
    v6: bool,
}

impl Cidr {
    fn width(&self) -> u32 {
        if self.v6 { 128 } else { 32 }
    }
    fn mask(&self) -> u128 {
        let w = self.width();
        if self.prefix == 0 {
            0
        } else {
            let ones = (!0u128) << (128 - self.prefix);
            ones >> (128 - w)
        }
    }
    fn contains(&self, bits: u128) -> bool {
        (bits & self.mask()) == (self.bits & self.mask())
    }
}

fn parse_cidr(s: &str) -> Option<Cidr> {
    let (ip, len) = s.split_once('/')?;
    if len.is_empty() || !len.bytes().all(|c| c.is_ascii_digit()) || len.len() > 3 {
        return None;
    }
    let prefix: u32 = len.parse().ok()?;
    match parse_ip(ip)? {
        IpAddr::V4(a) if prefix <= 32 => Some(Cidr {
            bits: u128::from(u32::from(a)),
            prefix,
            v6: false,
        }),
        IpAddr::V6(a) if prefix <= 128 => Some(Cidr {
            bits: u128::from(a),
            prefix,
            v6: true,
        }),
        _ => None,
    }
}

// --- Quantities --------------------------------------------------------------------------------

/// Parses a resource quantity the way `resource.ParseQuantity` accepts it; the value is
/// approximate (f64), which is enough for the ordering checks done here.
fn parse_quantity(s: &str) -> Result<f64, &'static str> {
    let s = s.trim();
    if s.is_empty() {
        return Err(QUANTITY_FORMAT_ERR);
    }
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let mut digits = 0;
    let mut dots = 0;
    while let Some(&c) = b.get(i) {
        if c.is_ascii_digit() {
            digits += 1;
        } else if c == b'.' {
            dots += 1;
        } else {
            break;
        }
        i += 1;
    }
    if digits == 0 || dots > 1 {
        return Err(QUANTITY_FORMAT_ERR);
    }
    let literal = s.get(..i).unwrap_or("");
    let number: f64 = literal
        .strip_prefix('+')
        .unwrap_or(literal)
        .parse()
        .map_err(|_| QUANTITY_FORMAT_ERR)?;
    let suffix = s.get(i..).unwrap_or("");
    // Go's parseQuantityString: suffix letters from "eEinumkKMGTP", then an optional sign and
    // digits; anything else is a format error, an unknown combination a suffix error.
    let letters = suffix
        .bytes()
        .take_while(|c| b"eEinumkKMGTP".contains(c))
        .count();
    let tail = suffix.get(letters..).unwrap_or("");
    let tail_digits = tail.strip_prefix(['+', '-']).unwrap_or(tail);
    if !tail_digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err(QUANTITY_FORMAT_ERR);
    }
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .filter(|x| !x.is_empty())
                .ok_or(QUANTITY_SUFFIX_ERR)?;
            let e: i32 = exp.parse().map_err(|_| QUANTITY_SUFFIX_ERR)?;
            10f64.powi(e)
        }
    };
    Ok(number * factor)
}

// ---------------------------------------------------------------------------------------------
// ObjectMeta (apimachinery/pkg/api/validation/objectmeta.go + core's finalizer rules)
// ---------------------------------------------------------------------------------------------

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;
const STANDARD_FINALIZERS: [&str; 3] = ["kubernetes", "orphan", "foregroundDeletion"];

fn meta_create(e: &mut Errs, meta: Option<&Value>, namespaced: bool, rule: NameRule) {
    if let Some(g) = str_opt(meta, "generateName").filter(|g| !g.is_empty()) {
        for m in name_msgs(rule, g, true) {
            e.invalid_s("metadata.generateName", g, &m);
        }
    }
    let name = str_of(meta, "name");
    if name.is_empty() {
        if rule != NameRule::Unchecked {
            e.required("metadata.name", "name or generateName is required");
        }
    } else {
        for m in name_msgs(rule, name, false) {
            e.invalid_s("metadata.name", name, &m);
        }
    }
    // Cluster-scoped objects get their namespace cleared before validation upstream, so only
    // namespaced kinds look at it.
    // Events and Bindings check their namespace themselves (legacy rules).
    if namespaced && !matches!(rule, NameRule::PathSegment | NameRule::Unchecked) {
        let ns = str_of(meta, "namespace");
        if ns.is_empty() {
            e.required("metadata.namespace", "");
        } else {
            for m in is_dns1123_label(ns) {
                e.invalid_s("metadata.namespace", ns, &m);
            }
        }
    }
    meta_common(e, meta);
}

/// `ValidateObjectMetaUpdate`: identity fields are immutable; everything else is revalidated.
fn meta_update(e: &mut Errs, meta: Option<&Value>, old: Option<&Value>, rule: NameRule) {
    let name = str_of(meta, "name");
    if (rule != NameRule::Unchecked || !name.is_empty()) && name != str_of(old, "name") {
        e.invalid_s("metadata.name", name, IMMUTABLE);
    }
    let ns = str_of(meta, "namespace");
    if !ns.is_empty() && ns != str_of(old, "namespace") {
        e.invalid_s("metadata.namespace", ns, IMMUTABLE);
    }
    // The registry copies the old UID in when the update leaves it out.
    let uid = str_of(meta, "uid");
    if !uid.is_empty() && uid != str_of(old, "uid") {
        e.invalid_s("metadata.uid", uid, IMMUTABLE);
    }
    meta_common(e, meta);
}

fn meta_common(e: &mut Errs, meta: Option<&Value>) {
    e.non_negative("metadata.generation", int_of(meta, "generation"));
    validate_labels(e, obj_of(meta, "labels"), "metadata.labels");
    validate_annotations(e, obj_of(meta, "annotations"), "metadata.annotations");
    owner_references(e, arr_of(meta, "ownerReferences"));
    finalizers(e, get(meta, "finalizers"), "metadata.finalizers", true);
    for (i, mf) in arr_of(meta, "managedFields").iter().enumerate() {
        let p = idx("metadata.managedFields", i);
        let mf = Some(mf);
        let op = str_of(mf, "operation");
        if op != "Apply" && op != "Update" {
            e.invalid_s(&child(&p, "operation"), op, "must be `Apply` or `Update`");
        }
        let ft = str_of(mf, "fieldsType");
        if !ft.is_empty() && ft != "FieldsV1" {
            e.invalid_s(&child(&p, "fieldsType"), ft, "must be `FieldsV1`");
        }
        if str_of(mf, "manager").len() > 128 {
            e.too_long(&child(&p, "manager"), 128);
        }
    }
}

/// `ValidateLabels`: errors are reported on the map itself, not per key (as upstream does).
fn validate_labels(e: &mut Errs, labels: Option<&Obj>, path: &str) {
    for (k, v) in labels.into_iter().flatten() {
        for m in is_qualified_name(k) {
            e.invalid_s(path, k, &m);
        }
        if let Some(v) = v.as_str() {
            for m in is_label_value(v) {
                e.invalid_s(path, v, &m);
            }
        }
    }
}

fn validate_label_name(e: &mut Errs, name: &str, path: &str) {
    for m in is_qualified_name(name) {
        e.invalid_s(path, name, &m);
    }
}

fn validate_annotations(e: &mut Errs, ann: Option<&Obj>, path: &str) {
    let Some(ann) = ann else { return };
    let mut total = 0usize;
    for (k, v) in ann {
        for m in is_qualified_name(&k.to_lowercase()) {
            e.invalid_s(path, k, &m);
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        e.too_long(path, TOTAL_ANNOTATION_SIZE);
    }
}

fn owner_references(e: &mut Errs, refs: &[Value]) {
    let path = "metadata.ownerReferences";
    let mut first_controller: Option<String> = None;
    for raw in refs {
        let r = Some(raw);
        let api_version = str_of(r, "apiVersion");
        let kind = str_of(r, "kind");
        // schema.FromAPIVersionAndKind: "group/version", or a bare version; more slashes or a
        // trailing slash leave the version empty.
        let (group, version) = match api_version.split('/').collect::<Vec<_>>().as_slice() {
            [v] => ("", *v),
            [g, v] => (*g, *v),
            _ => ("", ""),
        };
        if version.is_empty() {
            e.invalid_s(
                &child(path, "apiVersion"),
                api_version,
                "version must not be empty",
            );
        }
        if kind.is_empty() {
            e.invalid_s(&child(path, "kind"), kind, "kind must not be empty");
        }
        let name = str_of(r, "name");
        if name.is_empty() {
            e.invalid_s(&child(path, "name"), name, "name must not be empty");
        }
        let uid = str_of(r, "uid");
        if uid.is_empty() {
            e.invalid_s(&child(path, "uid"), uid, "uid must not be empty");
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            e.invalid(
                path,
                &compact(raw),
                &format!("{group}/{version}, Kind={kind} is disallowed from being an owner"),
            );
        }
        if bool_of(r, "controller") == Some(true) {
            let current = format!("{kind}/{name}");
            match &first_controller {
                Some(first) => e.invalid(
                    path,
                    &compact(&Value::Array(refs.to_vec())),
                    &format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                ),
                None => first_controller = Some(current),
            }
        }
    }
}

/// Finalizer names: qualified names (reported on the list), plus core's rule that unprefixed
/// ones must be standard (reported per index). Upstream reports a bad name twice; so do we.
fn finalizers(e: &mut Errs, list: Option<&Value>, path: &str, object_meta: bool) {
    let Some(items) = list.and_then(Value::as_array) else {
        return;
    };
    let names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
    for f in &names {
        for m in is_qualified_name(f) {
            e.invalid_s(path, f, &m);
        }
    }
    if object_meta && names.contains(&"orphan") && names.contains(&"foregroundDeletion") {
        e.invalid(
            path,
            &go_strings(list),
            "finalizer orphan and foregroundDeletion cannot be both set",
        );
    }
    for (i, f) in names.iter().enumerate() {
        let p = if object_meta {
            idx(path, i)
        } else {
            path.to_string()
        };
        if object_meta {
            for m in is_qualified_name(f) {
                e.invalid_s(&p, f, &m);
            }
        }
        if !f.contains('/') && !STANDARD_FINALIZERS.contains(f) {
            e.invalid_s(
                &p,
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Label selectors
// ---------------------------------------------------------------------------------------------

/// `ValidateLabelSelector`; returns whether `LabelSelectorAsSelector` would succeed.
fn label_selector(e: &mut Errs, sel: Option<&Value>, path: &str) -> bool {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return true;
    };
    let before = e.0.len();
    validate_labels(
        e,
        obj_of(Some(sel), "matchLabels"),
        &child(path, "matchLabels"),
    );
    for (i, r) in arr_of(Some(sel), "matchExpressions").iter().enumerate() {
        let p = idx(&child(path, "matchExpressions"), i);
        let r = Some(r);
        let values = strings_of(r, "values");
        match str_of(r, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    e.required(
                        &child(&p, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    e.forbidden(
                        &child(&p, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
            op => e.invalid_s(&child(&p, "operator"), op, "not a valid selector operator"),
        }
        validate_label_name(e, str_of(r, "key"), &child(&p, "key"));
        for (j, v) in values.iter().enumerate() {
            for m in is_label_value(v) {
                e.invalid_s(&idx(&child(&p, "values"), j), v, &m);
            }
        }
    }
    e.0.len() == before
}

fn selector_is_empty(sel: Option<&Value>) -> bool {
    obj_of(sel, "matchLabels").is_none_or(Map::is_empty)
        && arr_of(sel, "matchExpressions").is_empty()
}

/// `selector.Matches(labels)`; a missing selector matches nothing (`labels.Nothing()`).
fn selector_matches(sel: Option<&Value>, labels: Option<&Obj>) -> bool {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return false;
    };
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    for (k, v) in obj_of(Some(sel), "matchLabels").into_iter().flatten() {
        if label(k) != v.as_str() {
            return false;
        }
    }
    for r in arr_of(Some(sel), "matchExpressions") {
        let r = Some(r);
        let actual = label(str_of(r, "key"));
        let values = strings_of(r, "values");
        let ok = match str_of(r, "operator") {
            "In" => actual.is_some_and(|a| values.contains(&a)),
            "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
            "Exists" => actual.is_some(),
            "DoesNotExist" => actual.is_none(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------------------------
// PodSpec (pkg/apis/core/validation: ValidatePodSpec and friends)
// ---------------------------------------------------------------------------------------------

const PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const MAX_INT32: i64 = 2_147_483_647;

/// What differs between validating a Pod's spec and a template's.
#[derive(Default)]
struct PodCtx {
    /// The spec belongs to a Pod (not a template): a few extra checks apply.
    is_pod: bool,
    /// A Pod being created (not updated): ephemeral containers and gated nodeName are refused.
    create: bool,
    /// Volumes declared elsewhere (StatefulSet volumeClaimTemplates), treated as PVC volumes.
    extra_pvc_volumes: Vec<String>,
}

/// Facts about the pod that container validation needs.
struct PodFacts<'a> {
    volumes: BTreeMap<String, &'static str>,
    grace: i64,
    restart_policy: &'a str,
    host_network: bool,
}

const VOLUME_SOURCES: [(&str, &str); 30] = [
    ("emptyDir", "emptyDir"),
    ("hostPath", "hostPath"),
    ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("flocker", "flocker"),
    ("persistentVolumeClaim", "persistentVolumeClaim"),
    ("rbd", "rbd"),
    ("cinder", "cinder"),
    // Upstream names these two differently in its "more than 1 volume type" errors.
    ("cephfs", "cephFS"),
    ("quobyte", "quobyte"),
    ("downwardAPI", "downwarAPI"),
    ("fc", "fc"),
    ("flexVolume", "flexVolume"),
    ("configMap", "configMap"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("azureDisk", "azureDisk"),
    ("storageos", "storageos"),
    ("projected", "projected"),
    ("scaleIO", "scaleIO"),
    ("csi", "csi"),
    ("ephemeral", "ephemeral"),
    ("image", "image"),
];

fn pod_spec(e: &mut Errs, spec: Option<&Value>, p: &str, ctx: &PodCtx) {
    let mut volumes = validate_volumes(e, spec, &child(p, "volumes"));
    for name in &ctx.extra_pvc_volumes {
        volumes
            .entry(name.clone())
            .or_insert("persistentVolumeClaim");
    }
    let restart_policy = str_opt(spec, "restartPolicy")
        .filter(|r| !r.is_empty())
        .unwrap_or("Always");
    let facts = PodFacts {
        volumes,
        grace: int_of(spec, "terminationGracePeriodSeconds").unwrap_or(30),
        restart_policy,
        host_network: bool_of(spec, "hostNetwork") == Some(true),
    };

    // Regular containers.
    let cpath = child(p, "containers");
    let containers = arr_of(spec, "containers");
    if containers.is_empty() {
        e.required(&cpath, "");
    }
    let mut names = BTreeSet::new();
    for (i, c) in containers.iter().enumerate() {
        let cp = idx(&cpath, i);
        container_common(e, c, &cp, &facts, ctx.is_pod);
        let name = str_of(Some(c), "name");
        if !names.insert(name.to_string()) {
            e.duplicate(&child(&cp, "name"), &q(name));
        }
        container_probes_and_lifecycle(e, c, &cp, facts.grace);
        if get(Some(c), "restartPolicy").is_some() {
            e.forbidden(
                &child(&cp, "restartPolicy"),
                "may not be set for non-init containers",
            );
        }
    }
    host_port_conflicts(e, containers, &cpath);

    // Init containers.
    let ipath = child(p, "initContainers");
    for (i, c) in arr_of(spec, "initContainers").iter().enumerate() {
        let cp = idx(&ipath, i);
        container_common(e, c, &cp, &facts, ctx.is_pod);
        let mut restart_always = false;
        if let Some(rp) = str_opt(Some(c), "restartPolicy") {
            if rp == "Always" {
                restart_always = true;
            } else {
                e.not_supported(&child(&cp, "restartPolicy"), rp, &["Always"]);
            }
        }
        let name = str_of(Some(c), "name");
        if names.contains(name) {
            e.duplicate(&child(&cp, "name"), &q(name));
        } else if !name.is_empty() {
            names.insert(name.to_string());
        }
        host_port_conflicts(e, std::slice::from_ref(c), &ipath);
        if restart_always {
            container_probes_and_lifecycle(e, c, &cp, facts.grace);
        } else {
            for f in [
                "lifecycle",
                "livenessProbe",
                "readinessProbe",
                "startupProbe",
            ] {
                if get(Some(c), f).is_some() {
                    e.forbidden(
                        &child(&cp, f),
                        "may not be set for init containers without restartPolicy=Always",
                    );
                }
            }
        }
    }

    // Ephemeral containers can only be added through the ephemeralcontainers subresource.
    if !arr_of(spec, "ephemeralContainers").is_empty() {
        if ctx.create {
            e.forbidden(&child(p, "ephemeralContainers"), "cannot be set on create");
        } else {
            e.forbidden(
                &child(p, "ephemeralContainers"),
                "ephemeral containers not allowed in pod template",
            );
        }
    }

    if facts.host_network {
        for (i, c) in containers.iter().enumerate() {
            for (j, port) in arr_of(Some(c), "ports").iter().enumerate() {
                let hp = int_of(Some(port), "hostPort").unwrap_or(0);
                let cport = int_of(Some(port), "containerPort").unwrap_or(0);
                if hp != 0 && hp != cport {
                    e.invalid_i(
                        &child(&idx(&child(&idx(&cpath, i), "ports"), j), "hostPort"),
                        hp,
                        "must match `containerPort` when `hostNetwork` is true",
                    );
                }
            }
        }
    }

    if let Some(rp) = str_opt(spec, "restartPolicy").filter(|r| !r.is_empty())
        && !matches!(rp, "Always" | "OnFailure" | "Never")
    {
        e.not_supported(
            &child(p, "restartPolicy"),
            rp,
            &["Always", "OnFailure", "Never"],
        );
    }
    let dns_policy = str_opt(spec, "dnsPolicy").filter(|d| !d.is_empty());
    if let Some(dp) = dns_policy
        && !matches!(
            dp,
            "ClusterFirstWithHostNet" | "ClusterFirst" | "Default" | "None"
        )
    {
        e.not_supported(
            &child(p, "dnsPolicy"),
            dp,
            &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
        );
    }
    validate_labels(e, obj_of(spec, "nodeSelector"), &child(p, "nodeSelector"));
    pod_security_context(
        e,
        get(spec, "securityContext"),
        &child(p, "securityContext"),
    );
    affinity(e, get(spec, "affinity"), &child(p, "affinity"));
    dns_config(
        e,
        get(spec, "dnsConfig"),
        dns_policy,
        &child(p, "dnsConfig"),
    );
    for (i, g) in arr_of(spec, "readinessGates").iter().enumerate() {
        let t = str_of(Some(g), "conditionType");
        for m in is_qualified_name(t) {
            e.invalid_s(
                &child(&idx(&child(p, "readinessGates"), i), "conditionType"),
                t,
                &m,
            );
        }
    }
    let mut gates = BTreeSet::new();
    for (i, g) in arr_of(spec, "schedulingGates").iter().enumerate() {
        let gp = idx(&child(p, "schedulingGates"), i);
        let n = str_of(Some(g), "name");
        for m in is_qualified_name(n) {
            e.invalid_s(&gp, n, &m);
        }
        if !gates.insert(n) {
            e.duplicate(&gp, &q(n));
        }
    }
    topology_spread(e, arr_of(spec, "topologySpreadConstraints"), p);

    let sa = str_of(spec, "serviceAccountName");
    if !sa.is_empty() {
        for m in is_dns1123_subdomain(sa) {
            e.invalid_s(&child(p, "serviceAccountName"), sa, &m);
        }
    }
    let node_name = str_of(spec, "nodeName");
    if !node_name.is_empty() {
        for m in is_dns1123_subdomain(node_name) {
            e.invalid_s(&child(p, "nodeName"), node_name, &m);
        }
    }
    if let Some(ads) = int_of(spec, "activeDeadlineSeconds")
        && !(1..=MAX_INT32).contains(&ads)
    {
        e.invalid_i(
            &child(p, "activeDeadlineSeconds"),
            ads,
            &format!("must be between 1 and {MAX_INT32}, inclusive"),
        );
    }
    for f in ["hostname", "subdomain"] {
        let v = str_of(spec, f);
        if !v.is_empty() {
            for m in is_dns1123_label(v) {
                e.invalid_s(&child(p, f), v, &m);
            }
        }
    }
    tolerations(e, arr_of(spec, "tolerations"), &child(p, "tolerations"));
    for (i, ha) in arr_of(spec, "hostAliases").iter().enumerate() {
        let hp = idx(&child(p, "hostAliases"), i);
        validate_ip_strict(e, &child(&hp, "ip"), str_of(Some(ha), "ip"));
        for (j, h) in strings_of(Some(ha), "hostnames").iter().enumerate() {
            for m in is_dns1123_subdomain(h) {
                e.invalid_s(&idx(&child(&hp, "hostnames"), j), h, &m);
            }
        }
    }
    for f in ["priorityClassName", "runtimeClassName"] {
        if let Some(v) = str_opt(spec, f).filter(|v| !v.is_empty() || f == "runtimeClassName") {
            for m in is_dns1123_subdomain(v) {
                e.invalid_s(&child(p, f), v, &m);
            }
        }
    }
    if let Some(pp) = str_opt(spec, "preemptionPolicy") {
        if pp.is_empty() {
            e.required(&child(p, "preemptionPolicy"), "");
        } else if pp != "PreemptLowerPriority" && pp != "Never" {
            e.not_supported(
                &child(p, "preemptionPolicy"),
                pp,
                &["PreemptLowerPriority", "Never"],
            );
        }
    }
    if let Some(overhead) = get(spec, "overhead") {
        let mut wrapper = Map::new();
        wrapper.insert("limits".to_string(), overhead.clone());
        resources(e, Some(&Value::Object(wrapper)), &child(p, "overhead"));
    }
    if let Some(os) = get(spec, "os") {
        let name = str_of(Some(os), "name");
        if name.is_empty() {
            e.required(&child(&child(p, "os"), "name"), "cannot be empty");
        } else if name != "linux" && name != "windows" {
            e.not_supported(&child(p, "os"), name, &["linux", "windows"]);
        }
    }
    if ctx.create && !node_name.is_empty() && !arr_of(spec, "schedulingGates").is_empty() {
        e.forbidden(
            &child(p, "nodeName"),
            "cannot be set until all schedulingGates have been cleared",
        );
    }
}

fn validate_volumes(
    e: &mut Errs,
    spec: Option<&Value>,
    path: &str,
) -> BTreeMap<String, &'static str> {
    let mut vols = BTreeMap::new();
    for (i, vol) in arr_of(spec, "volumes").iter().enumerate() {
        let vp = idx(path, i);
        let mut el = Errs::default();
        let name = str_of(Some(vol), "name");
        let source = volume_source(&mut el, Some(vol), &vp);
        if name.is_empty() {
            el.required(&child(&vp, "name"), "");
        } else {
            for m in is_dns1123_label(name) {
                el.invalid_s(&child(&vp, "name"), name, &m);
            }
        }
        if vols.contains_key(name) {
            el.duplicate(&child(&vp, "name"), &q(name));
        }
        // Only volumes that validated cleanly can be mounted (upstream keeps the others out).
        if el.0.is_empty() {
            if let Some(source) = source {
                vols.insert(name.to_string(), source);
            }
        } else {
            e.0.append(&mut el.0);
        }
    }
    vols
}

fn volume_source(e: &mut Errs, vol: Option<&Value>, vp: &str) -> Option<&'static str> {
    let mut found: Option<&'static str> = None;
    for (json, err_name) in VOLUME_SOURCES {
        let Some(src) = get(vol, json) else { continue };
        if found.is_some() {
            e.forbidden(
                &child(vp, err_name),
                "may not specify more than 1 volume type",
            );
            continue;
        }
        found = Some(json);
        let sp = child(vp, json);
        let src = Some(src);
        match json {
            "hostPath" => {
                let path = str_of(src, "path");
                if path.is_empty() {
                    e.required(&child(&sp, "path"), "");
                } else {
                    no_backsteps(e, path, &child(&sp, "path"));
                    if let Some(t) = str_opt(src, "type").filter(|t| !t.is_empty()) {
                        let valid = [
                            "BlockDevice",
                            "CharDevice",
                            "Directory",
                            "DirectoryOrCreate",
                            "File",
                            "FileOrCreate",
                            "Socket",
                        ];
                        if !valid.contains(&t) {
                            let mut list = vec![""];
                            list.extend(valid);
                            e.not_supported(&child(&sp, "type"), t, &list);
                        }
                    }
                }
            }
            "secret" => {
                if str_of(src, "secretName").is_empty() {
                    e.required(&child(&sp, "secretName"), "");
                }
                default_mode(e, src, &sp);
                key_to_paths(e, src, &sp);
            }
            "configMap" => {
                if str_of(src, "name").is_empty() {
                    e.required(&child(&sp, "name"), "");
                }
                default_mode(e, src, &sp);
                key_to_paths(e, src, &sp);
            }
            "persistentVolumeClaim" if str_of(src, "claimName").is_empty() => {
                e.required(&child(&sp, "claimName"), "");
            }
            "nfs" => {
                if str_of(src, "server").is_empty() {
                    e.required(&child(&sp, "server"), "");
                }
                let path = str_of(src, "path");
                if path.is_empty() {
                    e.required(&child(&sp, "path"), "");
                } else if !path.starts_with('/') {
                    e.invalid_s(&child(&sp, "path"), path, "must be an absolute path");
                }
            }
            "emptyDir" => {
                if let Some(size) = str_opt(src, "sizeLimit")
                    && parse_quantity(size).is_ok_and(|v| v < 0.0)
                {
                    e.forbidden(
                        &child(&sp, "sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    );
                }
            }
            "csi" if str_of(src, "driver").is_empty() => {
                e.required(&child(&sp, "driver"), "");
            }
            _ => {}
        }
    }
    if found.is_none() {
        e.required(vp, "must specify a volume type");
    }
    found
}

fn default_mode(e: &mut Errs, src: Option<&Value>, sp: &str) {
    if let Some(m) = int_of(src, "defaultMode")
        && !(0..=0o777).contains(&m)
    {
        e.invalid_i(
            &child(sp, "defaultMode"),
            m,
            "must be a number between 0 and 0777 (octal), both inclusive",
        );
    }
}

fn key_to_paths(e: &mut Errs, src: Option<&Value>, sp: &str) {
    for (i, item) in arr_of(src, "items").iter().enumerate() {
        let ip = idx(&child(sp, "items"), i);
        if str_of(Some(item), "key").is_empty() {
            e.required(&child(&ip, "key"), "");
        }
        let path = str_of(Some(item), "path");
        if path.is_empty() {
            e.required(&child(&ip, "path"), "");
        } else {
            local_descending_path(e, path, &child(&ip, "path"));
        }
        if let Some(m) = int_of(Some(item), "mode")
            && !(0..=0o777).contains(&m)
        {
            e.invalid_i(
                &child(&ip, "mode"),
                m,
                "must be a number between 0 and 0777 (octal), both inclusive",
            );
        }
    }
}

fn no_backsteps(e: &mut Errs, path: &str, p: &str) {
    if path.split(['/', '\\']).any(|part| part == "..") {
        e.invalid_s(p, path, "must not contain '..'");
    }
}

fn local_descending_path(e: &mut Errs, path: &str, p: &str) {
    if path.starts_with('/') || path.starts_with('\\') {
        e.invalid_s(p, path, "must be a relative path");
    }
    no_backsteps(e, path, p);
}

fn container_common(e: &mut Errs, c: &Value, cp: &str, facts: &PodFacts<'_>, is_pod: bool) {
    let c = Some(c);
    let name = str_of(c, "name");
    if name.is_empty() {
        e.required(&child(cp, "name"), "");
    } else {
        for m in is_dns1123_label(name) {
            e.invalid_s(&child(cp, "name"), name, &m);
        }
    }
    let image = str_of(c, "image");
    if image.is_empty() {
        e.required(&child(cp, "image"), "");
    } else if is_pod && image.trim() != image {
        e.invalid_s(
            &child(cp, "image"),
            image,
            "must not have leading or trailing whitespace",
        );
    }
    if let Some(tmp) = str_opt(c, "terminationMessagePolicy").filter(|t| !t.is_empty())
        && tmp != "File"
        && tmp != "FallbackToLogsOnError"
    {
        e.not_supported(
            &child(cp, "terminationMessagePolicy"),
            tmp,
            &["File", "FallbackToLogsOnError"],
        );
    }
    container_ports(e, arr_of(c, "ports"), &child(cp, "ports"));
    env(e, arr_of(c, "env"), &child(cp, "env"));
    env_from(e, arr_of(c, "envFrom"), &child(cp, "envFrom"));
    volume_mounts(e, c, cp, facts);
    if let Some(pp) = str_opt(c, "imagePullPolicy").filter(|p| !p.is_empty())
        && !matches!(pp, "Always" | "IfNotPresent" | "Never")
    {
        e.not_supported(
            &child(cp, "imagePullPolicy"),
            pp,
            &["Always", "IfNotPresent", "Never"],
        );
    }
    resources(e, get(c, "resources"), &child(cp, "resources"));
    for rp in arr_of(c, "resizePolicy") {
        let rpp = child(cp, "resizePolicy");
        let rn = str_of(Some(rp), "resourceName");
        if rn.is_empty() {
            e.required(&rpp, "");
        } else if rn != "cpu" && rn != "memory" {
            e.not_supported(&rpp, rn, &["cpu", "memory"]);
        }
        let pol = str_of(Some(rp), "restartPolicy");
        if pol.is_empty() {
            e.required(&rpp, "");
        } else if pol != "NotRequired" && pol != "RestartContainer" {
            e.not_supported(&rpp, pol, &["NotRequired", "RestartContainer"]);
        }
        if facts.restart_policy == "Never" && pol != "NotRequired" {
            e.invalid_s(
                &rpp,
                pol,
                "must be 'NotRequired' when `restartPolicy` is 'Never'",
            );
        }
    }
    container_security_context(e, get(c, "securityContext"), &child(cp, "securityContext"));
}

fn container_ports(e: &mut Errs, ports: &[Value], path: &str) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = idx(path, i);
        let port = Some(port);
        let name = str_of(port, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    e.invalid_s(&child(&pp, "name"), name, &m);
                }
            } else if !names.insert(name) {
                e.duplicate(&child(&pp, "name"), &q(name));
            }
        }
        match int_of(port, "containerPort").unwrap_or(0) {
            0 => e.required(&child(&pp, "containerPort"), ""),
            cport => {
                for m in is_valid_port_num(cport) {
                    e.invalid_i(&child(&pp, "containerPort"), cport, &m);
                }
            }
        }
        let hp = int_of(port, "hostPort").unwrap_or(0);
        if hp != 0 {
            for m in is_valid_port_num(hp) {
                e.invalid_i(&child(&pp, "hostPort"), hp, &m);
            }
        }
        protocol(e, port, &pp);
    }
}

/// Port protocol: empty is defaulted to TCP, anything else must be TCP/UDP/SCTP.
fn protocol(e: &mut Errs, port: Option<&Value>, pp: &str) {
    if let Some(proto) = str_opt(port, "protocol").filter(|p| !p.is_empty())
        && !PROTOCOLS.contains(&proto)
    {
        e.not_supported(&child(pp, "protocol"), proto, &PROTOCOLS);
    }
}

fn host_port_conflicts(e: &mut Errs, containers: &[Value], path: &str) {
    let mut seen = BTreeSet::new();
    for (ci, c) in containers.iter().enumerate() {
        for (pi, port) in arr_of(Some(c), "ports").iter().enumerate() {
            let port = Some(port);
            let hp = int_of(port, "hostPort").unwrap_or(0);
            if hp == 0 {
                continue;
            }
            let proto = str_opt(port, "protocol")
                .filter(|p| !p.is_empty())
                .unwrap_or("TCP");
            let k = format!("{proto}/{}/{hp}", str_of(port, "hostIP"));
            if !seen.insert(k.clone()) {
                e.duplicate(
                    &child(&idx(&child(&idx(path, ci), "ports"), pi), "hostPort"),
                    &q(&k),
                );
            }
        }
    }
}

const ENV_FIELD_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];
const CONVERTIBLE_FIELD_PATHS: [&str; 5] = [
    "spec.restartPolicy",
    "spec.schedulerName",
    "status.phase",
    "metadata.labels",
    "metadata.annotations",
];
const RESOURCE_FIELD_PATHS: [&str; 6] = [
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
];

fn env(e: &mut Errs, vars: &[Value], path: &str) {
    for (i, ev) in vars.iter().enumerate() {
        let ep = idx(path, i);
        let ev = Some(ev);
        let name = str_of(ev, "name");
        if name.is_empty() {
            e.required(&child(&ep, "name"), "");
        } else {
            for m in is_relaxed_env_var_name(name) {
                e.invalid_s(&child(&ep, "name"), name, &m);
            }
        }
        let Some(vf) = get(ev, "valueFrom") else {
            continue;
        };
        let vp = child(&ep, "valueFrom");
        let vf = Some(vf);
        let mut sources = 0;
        if let Some(fr) = get(vf, "fieldRef") {
            sources += 1;
            field_ref(e, Some(fr), &child(&vp, "fieldRef"));
        }
        if let Some(rr) = get(vf, "resourceFieldRef") {
            sources += 1;
            let rp = child(&vp, "resourceFieldRef");
            let res = str_of(Some(rr), "resource");
            if res.is_empty() {
                e.required(&child(&rp, "resource"), "");
            } else if !RESOURCE_FIELD_PATHS.contains(&res)
                && !res.starts_with("requests.hugepages-")
                && !res.starts_with("limits.hugepages-")
            {
                e.not_supported(&child(&rp, "resource"), res, &RESOURCE_FIELD_PATHS);
            }
        }
        for (f, _) in [("configMapKeyRef", 0), ("secretKeyRef", 1)] {
            if let Some(kr) = get(vf, f) {
                sources += 1;
                let kp = child(&vp, f);
                let n = str_of(Some(kr), "name");
                for m in is_dns1123_subdomain(n) {
                    e.invalid_s(&child(&kp, "name"), n, &m);
                }
                let k = str_of(Some(kr), "key");
                if k.is_empty() {
                    e.required(&child(&kp, "key"), "");
                } else {
                    for m in is_config_map_key(k) {
                        e.invalid_s(&child(&kp, "key"), k, &m);
                    }
                }
            }
        }
        if sources == 0 {
            e.invalid_s(
                &vp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            );
        } else if !str_of(ev, "value").is_empty() {
            e.invalid_s(&vp, "", "may not be specified when `value` is not empty");
        } else if sources > 1 {
            e.invalid_s(
                &vp,
                "",
                "may not have more than one field specified at a time",
            );
        }
    }
}

fn field_ref(e: &mut Errs, fr: Option<&Value>, fp: &str) {
    // apiVersion is defaulted to "v1".
    let fpath = str_of(fr, "fieldPath");
    if fpath.is_empty() {
        e.required(&child(fp, "fieldPath"), "");
        return;
    }
    if let Some((base, rest)) = fpath.split_once('[') {
        let subscript = rest
            .strip_suffix(']')
            .map(|s| s.trim_matches('\''))
            .unwrap_or("");
        match base {
            "metadata.annotations" => {
                for m in is_qualified_name(&subscript.to_lowercase()) {
                    e.invalid_s(fp, subscript, &m);
                }
            }
            "metadata.labels" => {
                for m in is_qualified_name(subscript) {
                    e.invalid_s(fp, subscript, &m);
                }
            }
            _ => e.invalid_s(fp, base, "does not support subscript"),
        }
        return;
    }
    if ENV_FIELD_PATHS.contains(&fpath) {
        return;
    }
    if CONVERTIBLE_FIELD_PATHS.contains(&fpath) {
        e.not_supported(&child(fp, "fieldPath"), fpath, &ENV_FIELD_PATHS);
    } else {
        e.invalid_s(
            &child(fp, "fieldPath"),
            fpath,
            &format!("error converting fieldPath: field label not supported: {fpath}"),
        );
    }
}

fn env_from(e: &mut Errs, list: &[Value], path: &str) {
    for (i, ef) in list.iter().enumerate() {
        let ep = idx(path, i);
        let ef = Some(ef);
        let prefix = str_of(ef, "prefix");
        if !prefix.is_empty() {
            for m in is_relaxed_env_var_name(prefix) {
                e.invalid_s(&child(&ep, "prefix"), prefix, &m);
            }
        }
        let mut sources = 0;
        for f in ["configMapRef", "secretRef"] {
            if let Some(r) = get(ef, f) {
                sources += 1;
                let rp = child(&ep, f);
                let n = str_of(Some(r), "name");
                if n.is_empty() {
                    e.required(&child(&rp, "name"), "");
                } else {
                    for m in name_msgs(NameRule::Subdomain, n, true) {
                        e.invalid_s(&child(&rp, "name"), n, &m);
                    }
                }
            }
        }
        if sources == 0 {
            e.invalid_s(
                path,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            );
        } else if sources > 1 {
            e.invalid_s(
                path,
                "",
                "may not have more than one field specified at a time",
            );
        }
    }
}

fn volume_mounts(e: &mut Errs, c: Option<&Value>, cp: &str, facts: &PodFacts<'_>) {
    let path = child(cp, "volumeMounts");
    let devices: BTreeMap<&str, &str> = arr_of(c, "volumeDevices")
        .iter()
        .map(|d| (str_of(Some(d), "name"), str_of(Some(d), "devicePath")))
        .collect();
    let privileged = bool_of(get(c, "securityContext"), "privileged") == Some(true);
    let mut mount_points = BTreeSet::new();
    for (i, m) in arr_of(c, "volumeMounts").iter().enumerate() {
        let mp = idx(&path, i);
        let m = Some(m);
        let name = str_of(m, "name");
        if name.is_empty() {
            e.required(&child(&mp, "name"), "");
        }
        if !facts.volumes.contains_key(name) {
            e.not_found(&child(&mp, "name"), name);
        }
        let mount_path = str_of(m, "mountPath");
        if mount_path.is_empty() {
            e.required(&child(&mp, "mountPath"), "");
        }
        if !mount_points.insert(mount_path) {
            e.invalid_s(&child(&mp, "mountPath"), mount_path, "must be unique");
        }
        if devices.contains_key(name) {
            e.invalid_s(
                &child(&mp, "name"),
                name,
                "must not already exist in volumeDevices",
            );
        }
        if devices.values().any(|d| *d == mount_path) {
            e.invalid_s(
                &child(&mp, "mountPath"),
                mount_path,
                "must not already exist as a path in volumeDevices",
            );
        }
        let sub_path = str_of(m, "subPath");
        let sub_expr = str_of(m, "subPathExpr");
        if facts.volumes.get(name) == Some(&"image") {
            if !sub_path.is_empty() {
                e.invalid_s(
                    &child(&mp, "subPath"),
                    sub_path,
                    "not allowed in image volume sources",
                );
            }
            if !sub_expr.is_empty() {
                e.invalid_s(
                    &child(&mp, "subPathExpr"),
                    sub_expr,
                    "not allowed in image volume sources",
                );
            }
        }
        // Upstream reports these two on the list path, not the item (kept as is).
        if !sub_path.is_empty() {
            local_descending_path(e, sub_path, &child(&path, "subPath"));
        }
        if !sub_expr.is_empty() {
            if !sub_path.is_empty() {
                e.invalid_s(
                    &child(&mp, "subPathExpr"),
                    sub_expr,
                    "subPathExpr and subPath are mutually exclusive",
                );
            }
            local_descending_path(e, sub_expr, &child(&path, "subPathExpr"));
        }
        if let Some(prop) = str_opt(m, "mountPropagation") {
            let pp = child(&path, "mountPropagation");
            match prop {
                "None" | "HostToContainer" => {}
                "Bidirectional" => {
                    if !privileged {
                        e.forbidden(
                            &pp,
                            "Bidirectional mount propagation is available only to privileged containers",
                        );
                    }
                }
                other => e.not_supported(&pp, other, &["Bidirectional", "HostToContainer", "None"]),
            }
        }
    }
    let dpath = child(cp, "volumeDevices");
    let mounts: BTreeMap<&str, &str> = arr_of(c, "volumeMounts")
        .iter()
        .map(|m| (str_of(Some(m), "name"), str_of(Some(m), "mountPath")))
        .collect();
    let mut dev_names = BTreeSet::new();
    let mut dev_paths = BTreeSet::new();
    for (i, d) in arr_of(c, "volumeDevices").iter().enumerate() {
        let dp = idx(&dpath, i);
        let d = Some(d);
        let name = str_of(d, "name");
        let dev_path = str_of(d, "devicePath");
        if name.is_empty() {
            e.required(&child(&dp, "name"), "");
        }
        if !dev_names.insert(name) {
            e.invalid_s(&child(&dp, "name"), name, "must be unique");
        }
        match facts.volumes.get(name) {
            Some(&"persistentVolumeClaim" | &"ephemeral") => {}
            Some(_) => e.invalid_s(
                &child(&dp, "name"),
                name,
                "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            ),
            None => e.not_found(&child(&dp, "name"), name),
        }
        if dev_path.is_empty() {
            e.required(&child(&dp, "devicePath"), "");
        }
        if !dev_paths.insert(dev_path) {
            e.invalid_s(&child(&dp, "devicePath"), dev_path, "must be unique");
        }
        if mounts.contains_key(name) {
            e.invalid_s(
                &child(&dp, "name"),
                name,
                "must not already exist in volumeMounts",
            );
        }
        if mounts.values().any(|m| *m == dev_path) {
            e.invalid_s(
                &child(&dp, "devicePath"),
                dev_path,
                "must not already exist as a path in volumeMounts",
            );
        }
    }
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.starts_with("kubernetes.io/")
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// cpu, memory, ephemeral-storage and other native resources may be overcommitted; hugepages
/// and extended resources may not (request must equal limit).
fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !is_hugepages(name)
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && is_qualified_name(&format!("requests.{name}")).is_empty()
}

fn container_resource_name(e: &mut Errs, name: &str, path: &str) {
    let msgs = is_qualified_name(name);
    if !msgs.is_empty() {
        for m in msgs {
            e.invalid_s(path, name, &m);
        }
        return;
    }
    if !name.contains('/') {
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_hugepages(name) {
            e.invalid_s(path, name, "must be a standard resource for containers");
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        e.invalid_s(path, name, "doesn't follow extended resource name standard");
    }
}

fn resources(e: &mut Errs, res: Option<&Value>, path: &str) {
    let lim_path = child(path, "limits");
    let req_path = child(path, "requests");
    let limits = obj_of(res, "limits");
    let requests = obj_of(res, "requests");
    let quantity = |v: &Value| -> Option<(String, f64)> {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        parse_quantity(&s).ok().map(|x| (s, x))
    };
    let mut has_cpu_mem = false;
    let mut has_huge = false;
    let mut check_value = |e: &mut Errs, name: &str, v: &Value, p: &str| {
        container_resource_name(e, name, p);
        if let Some((s, x)) = quantity(v) {
            if x < 0.0 {
                e.invalid_s(p, &s, IS_NEGATIVE);
            }
            if is_extended_resource(name) && (x * 1000.0).round() % 1000.0 != 0.0 {
                e.invalid_s(p, &s, "must be an integer");
            }
        }
        has_cpu_mem |= name == "cpu" || name == "memory";
        has_huge |= is_hugepages(name);
    };
    for (name, v) in limits.into_iter().flatten() {
        check_value(e, name, v, &key(&lim_path, name));
    }
    for (name, v) in requests.into_iter().flatten() {
        check_value(e, name, v, &key(&req_path, name));
        let limit = limits.and_then(|l| l.get(name));
        match (quantity(v), limit.and_then(quantity)) {
            (Some((rs, r)), Some((ls, l))) => {
                if (r - l).abs() > f64::EPSILON * l.abs().max(1.0) && !overcommit_allowed(name) {
                    e.invalid_s(
                        &req_path,
                        &rs,
                        &format!("must be equal to {name} limit of {ls}"),
                    );
                } else if r > l {
                    e.invalid_s(
                        &req_path,
                        &rs,
                        &format!("must be less than or equal to {name} limit of {ls}"),
                    );
                }
            }
            (_, None) if limit.is_none() && !overcommit_allowed(name) => {
                e.required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                );
            }
            _ => {}
        }
    }
    if has_huge && !has_cpu_mem {
        e.forbidden(path, "HugePages require cpu or memory");
    }
}

fn container_probes_and_lifecycle(e: &mut Errs, c: &Value, cp: &str, grace: i64) {
    let c = Some(c);
    if let Some(lc) = get(c, "lifecycle") {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = get(Some(lc), hook) {
                handler(e, h, &child(&child(cp, "lifecycle"), hook), grace, true);
            }
        }
    }
    for probe_name in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = get(c, probe_name) else {
            continue;
        };
        let pp = child(cp, probe_name);
        handler(e, probe, &pp, grace, false);
        for f in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            e.non_negative(&child(&pp, f), int_of(Some(probe), f));
        }
        if let Some(t) = int_of(Some(probe), "terminationGracePeriodSeconds") {
            if probe_name == "readinessProbe" {
                e.invalid_i(
                    &child(&pp, "terminationGracePeriodSeconds"),
                    t,
                    "must not be set for readinessProbes",
                );
            } else if t <= 0 {
                e.invalid_i(
                    &child(&pp, "terminationGracePeriodSeconds"),
                    t,
                    "must be greater than 0",
                );
            }
        }
        if probe_name != "readinessProbe"
            && let Some(st) = int_of(Some(probe), "successThreshold").filter(|s| *s != 1)
        {
            e.invalid_i(&child(&pp, "successThreshold"), st, "must be 1");
        }
    }
}

/// Probe / lifecycle handler: exactly one action, each action well formed.
fn handler(e: &mut Errs, h: &Value, hp: &str, grace: i64, lifecycle: bool) {
    let h = Some(h);
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut n = 0;
    for k in kinds {
        let Some(action) = get(h, k) else { continue };
        let ap = child(hp, k);
        if n > 0 {
            e.forbidden(&ap, "may not specify more than 1 handler type");
            continue;
        }
        n += 1;
        let action = Some(action);
        match *k {
            "exec" => {
                if arr_of(action, "command").is_empty() {
                    e.required(&child(&ap, "command"), "");
                }
            }
            "httpGet" => {
                port_num_or_name(e, get(action, "port"), &child(&ap, "port"));
                if let Some(s) = str_opt(action, "scheme").filter(|s| !s.is_empty())
                    && s != "HTTP"
                    && s != "HTTPS"
                {
                    e.not_supported(&child(&ap, "scheme"), s, &["HTTP", "HTTPS"]);
                }
                for hdr in arr_of(action, "httpHeaders") {
                    let name = str_of(Some(hdr), "name");
                    let ok = !name.is_empty()
                        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-');
                    if !ok {
                        e.invalid_s(
                            &child(&ap, "httpHeaders"),
                            name,
                            &regex_error(HTTP_HEADER_ERR, HTTP_HEADER_FMT, &["X-Header-Name"]),
                        );
                    }
                }
            }
            "tcpSocket" => port_num_or_name(e, get(action, "port"), &child(&ap, "port")),
            "grpc" => {
                let port = int_of(action, "port").unwrap_or(0);
                for m in is_valid_port_num(port) {
                    e.invalid_i(&child(&ap, "port"), port, &m);
                }
            }
            _ => {
                let secs = int_of(action, "seconds").unwrap_or(0);
                if secs < 0 || secs > grace {
                    e.invalid_i(
                        &ap,
                        secs,
                        &format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({grace})"
                        ),
                    );
                }
            }
        }
    }
    if n == 0 {
        e.required(hp, "must specify a handler type");
    }
}

fn port_num_or_name(e: &mut Errs, port: Option<&Value>, path: &str) {
    match port {
        Some(Value::String(s)) => {
            for m in is_valid_port_name(s) {
                e.invalid_s(path, s, &m);
            }
        }
        other => {
            let n = other.and_then(Value::as_i64).unwrap_or(0);
            for m in is_valid_port_num(n) {
                e.invalid_i(path, n, &m);
            }
        }
    }
}

fn id_range(e: &mut Errs, v: Option<&Value>, f: &str, path: &str) {
    if let Some(id) = int_of(v, f)
        && !(0..=MAX_INT32).contains(&id)
    {
        e.invalid_i(
            &child(path, f),
            id,
            &format!("must be between 0 and {MAX_INT32}, inclusive"),
        );
    }
}

fn pod_security_context(e: &mut Errs, sc: Option<&Value>, path: &str) {
    let Some(_) = sc else { return };
    for f in ["runAsUser", "runAsGroup", "fsGroup"] {
        id_range(e, sc, f, path);
    }
    for (i, g) in arr_of(sc, "supplementalGroups").iter().enumerate() {
        if let Some(g) = g.as_i64().filter(|g| !(0..=MAX_INT32).contains(g)) {
            e.invalid_i(
                &idx(&child(path, "supplementalGroups"), i),
                g,
                &format!("must be between 0 and {MAX_INT32}, inclusive"),
            );
        }
    }
    if let Some(p) = str_opt(sc, "fsGroupChangePolicy")
        && p != "OnRootMismatch"
        && p != "Always"
    {
        e.not_supported(
            &child(path, "fsGroupChangePolicy"),
            p,
            &["Always", "OnRootMismatch"],
        );
    }
    if let Some(p) = str_opt(sc, "supplementalGroupsPolicy")
        && p != "Merge"
        && p != "Strict"
    {
        e.not_supported(
            &child(path, "supplementalGroupsPolicy"),
            p,
            &["Merge", "Strict"],
        );
    }
    for (i, s) in arr_of(sc, "sysctls").iter().enumerate() {
        let sp = idx(&child(path, "sysctls"), i);
        if str_of(Some(s), "name").is_empty() {
            e.required(&child(&sp, "name"), "");
        }
    }
}

fn container_security_context(e: &mut Errs, sc: Option<&Value>, path: &str) {
    let Some(_) = sc else { return };
    for f in ["runAsUser", "runAsGroup"] {
        id_range(e, sc, f, path);
    }
    if let Some(pm) = str_opt(sc, "procMount")
        && pm != "Default"
        && pm != "Unmasked"
    {
        e.not_supported(&child(path, "procMount"), pm, &["Default", "Unmasked"]);
    }
    if bool_of(sc, "allowPrivilegeEscalation") == Some(false) {
        if bool_of(sc, "privileged") == Some(true) {
            e.invalid(
                path,
                &compact(sc.unwrap_or(&Value::Null)),
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            );
        }
        if strings_of(get(sc, "capabilities"), "add").contains(&"CAP_SYS_ADMIN") {
            e.invalid(
                path,
                &compact(sc.unwrap_or(&Value::Null)),
                "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN",
            );
        }
    }
}

fn tolerations(e: &mut Errs, list: &[Value], path: &str) {
    for (i, t) in list.iter().enumerate() {
        let tp = idx(path, i);
        let t = Some(t);
        let k = str_of(t, "key");
        let op = str_of(t, "operator");
        let effect = str_of(t, "effect");
        let value = str_of(t, "value");
        if !k.is_empty() {
            validate_label_name(e, k, &child(&tp, "key"));
        }
        if k.is_empty() && op != "Exists" {
            e.invalid_s(
                &child(&tp, "operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            e.invalid_s(
                &child(&tp, "effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        match op {
            "Equal" | "" => {
                let msgs = is_label_value(value);
                if !msgs.is_empty() {
                    e.invalid_s(&child(&tp, "operator"), value, &msgs.join(";"));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    e.invalid_s(
                        &child(&tp, "operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    );
                }
            }
            other => e.not_supported(&child(&tp, "operator"), other, &["Equal", "Exists"]),
        }
        if !effect.is_empty() {
            taint_effect(e, effect, &child(&tp, "effect"));
        }
    }
}

fn taint_effect(e: &mut Errs, effect: &str, path: &str) {
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        e.not_supported(
            path,
            effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
    }
}

fn dns_config(e: &mut Errs, cfg: Option<&Value>, policy: Option<&str>, path: &str) {
    if policy == Some("None") {
        let Some(_) = cfg else {
            e.required(path, "must provide `dnsConfig` when `dnsPolicy` is None");
            return;
        };
        if arr_of(cfg, "nameservers").is_empty() {
            e.required(
                &child(path, "nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            );
            return;
        }
    }
    let Some(_) = cfg else { return };
    let ns = strings_of(cfg, "nameservers");
    if ns.len() > 3 {
        e.invalid(
            &child(path, "nameservers"),
            &go_strings(get(cfg, "nameservers")),
            "must not have more than 3 nameservers",
        );
    }
    for (i, n) in ns.iter().enumerate() {
        validate_ip_strict(e, &idx(&child(path, "nameservers"), i), n);
    }
    let searches = strings_of(cfg, "searches");
    if searches.len() > 32 {
        e.invalid(
            &child(path, "searches"),
            &go_strings(get(cfg, "searches")),
            "must not have more than 32 search paths",
        );
    }
    if searches.join(" ").len() > 2048 {
        e.invalid(
            &child(path, "searches"),
            &go_strings(get(cfg, "searches")),
            "must not have more than 2048 characters (including spaces) in the search list",
        );
    }
    // RelaxedDNSSearchValidation is on by default in 1.33: "." and underscores are allowed.
    for (i, s) in searches.iter().enumerate() {
        if *s != "." {
            let s = s.strip_suffix('.').unwrap_or(s);
            for m in is_dns1123_subdomain_underscore(s) {
                e.invalid_s(&idx(&child(path, "searches"), i), s, &m);
            }
        }
    }
    for (i, o) in arr_of(cfg, "options").iter().enumerate() {
        if str_of(Some(o), "name").is_empty() {
            e.required(&idx(&child(path, "options"), i), "must not be empty");
        }
    }
}

fn node_selector_requirement(e: &mut Errs, r: Option<&Value>, path: &str, fields: bool) {
    let values = strings_of(r, "values");
    let vp = child(path, "values");
    match str_of(r, "operator") {
        "In" | "NotIn" => {
            if values.is_empty() {
                e.required(&vp, "must be specified when `operator` is 'In' or 'NotIn'");
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                e.forbidden(
                    &vp,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                );
            }
        }
        "Gt" | "Lt" => {
            if values.len() != 1 {
                e.required(
                    &vp,
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                );
            }
        }
        op => e.invalid_s(
            &child(path, "operator"),
            op,
            "not a valid selector operator",
        ),
    }
    let k = str_of(r, "key");
    if fields {
        if k != "metadata.name" {
            e.invalid_s(&child(path, "key"), k, "not a valid field selector key");
        }
    } else {
        validate_label_name(e, k, &child(path, "key"));
        for (i, v) in values.iter().enumerate() {
            for m in is_label_value(v) {
                e.invalid_s(&idx(&vp, i), v, &m);
            }
        }
    }
}

fn node_selector_term(e: &mut Errs, term: Option<&Value>, path: &str) {
    for (j, r) in arr_of(term, "matchExpressions").iter().enumerate() {
        node_selector_requirement(e, Some(r), &idx(&child(path, "matchExpressions"), j), false);
    }
    for (j, r) in arr_of(term, "matchFields").iter().enumerate() {
        node_selector_requirement(e, Some(r), &idx(&child(path, "matchFields"), j), true);
    }
}

fn weight(e: &mut Errs, term: Option<&Value>, path: &str) {
    let w = int_of(term, "weight").unwrap_or(0);
    if !(1..=100).contains(&w) {
        e.invalid_i(&child(path, "weight"), w, "must be in the range 1-100");
    }
}

fn pod_affinity_term(e: &mut Errs, term: Option<&Value>, path: &str) {
    label_selector(e, get(term, "labelSelector"), &child(path, "labelSelector"));
    label_selector(
        e,
        get(term, "namespaceSelector"),
        &child(path, "namespaceSelector"),
    );
    for (i, ns) in strings_of(term, "namespaces").iter().enumerate() {
        for m in is_dns1123_label(ns) {
            e.invalid_s(&idx(&child(path, "namespaces"), i), ns, &m);
        }
    }
    if str_of(term, "topologyKey").is_empty() {
        e.required(&child(path, "topologyKey"), "can not be empty");
    } else {
        validate_label_name(e, str_of(term, "topologyKey"), &child(path, "topologyKey"));
    }
}

fn affinity(e: &mut Errs, aff: Option<&Value>, path: &str) {
    if let Some(na) = get(aff, "nodeAffinity") {
        let np = child(path, "nodeAffinity");
        let na = Some(na);
        if let Some(req) = get(na, "requiredDuringSchedulingIgnoredDuringExecution") {
            let rp = child(&np, "requiredDuringSchedulingIgnoredDuringExecution");
            let terms = arr_of(Some(req), "nodeSelectorTerms");
            if terms.is_empty() {
                e.required(
                    &child(&rp, "nodeSelectorTerms"),
                    "must have at least one node selector term",
                );
            }
            for (i, t) in terms.iter().enumerate() {
                node_selector_term(e, Some(t), &idx(&child(&rp, "nodeSelectorTerms"), i));
            }
        }
        let pp = child(&np, "preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in arr_of(na, "preferredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            let tp = idx(&pp, i);
            weight(e, Some(t), &tp);
            node_selector_term(e, get(Some(t), "preference"), &child(&tp, "preference"));
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = get(aff, kind) else { continue };
        let kp = child(path, kind);
        let req = "requiredDuringSchedulingIgnoredDuringExecution";
        for (i, t) in arr_of(Some(pa), req).iter().enumerate() {
            pod_affinity_term(e, Some(t), &idx(&child(&kp, req), i));
        }
        let pref = "preferredDuringSchedulingIgnoredDuringExecution";
        for (i, t) in arr_of(Some(pa), pref).iter().enumerate() {
            let tp = idx(&child(&kp, pref), i);
            weight(e, Some(t), &tp);
            pod_affinity_term(
                e,
                get(Some(t), "podAffinityTerm"),
                &child(&tp, "podAffinityTerm"),
            );
        }
    }
}

fn topology_spread(e: &mut Errs, list: &[Value], p: &str) {
    let path = child(p, "topologySpreadConstraints");
    for (i, c) in list.iter().enumerate() {
        let cp = idx(&path, i);
        let c = Some(c);
        let skew = int_of(c, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            e.invalid_i(&child(&cp, "maxSkew"), skew, "must be greater than zero");
        }
        let tk = str_of(c, "topologyKey");
        if tk.is_empty() {
            e.required(&child(&cp, "topologyKey"), "can not be empty");
        }
        let wu = str_of(c, "whenUnsatisfiable");
        if wu != "DoNotSchedule" && wu != "ScheduleAnyway" {
            e.not_supported(
                &child(&cp, "whenUnsatisfiable"),
                wu,
                &["DoNotSchedule", "ScheduleAnyway"],
            );
        }
        let dup = list.iter().skip(i + 1).any(|o| {
            str_of(Some(o), "topologyKey") == tk && str_of(Some(o), "whenUnsatisfiable") == wu
        });
        if dup {
            e.duplicate(
                &child(&cp, "{topologyKey, whenUnsatisfiable}"),
                &q(&format!("{{{tk}, {wu}}}")),
            );
        }
        if let Some(md) = int_of(c, "minDomains") {
            if md <= 0 {
                e.invalid_i(&child(&cp, "minDomains"), md, "must be greater than zero");
            }
            if wu != "DoNotSchedule" {
                e.invalid_i(
                    &child(&cp, "minDomains"),
                    md,
                    &format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {wu}"
                    ),
                );
            }
        }
        for f in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            if let Some(pol) = str_opt(c, f)
                && pol != "Honor"
                && pol != "Ignore"
            {
                e.not_supported(&child(&cp, f), pol, &["Honor", "Ignore"]);
            }
        }
        label_selector(e, get(c, "labelSelector"), &child(&cp, "labelSelector"));
    }
}

/// `ValidatePodTemplateSpec`: template labels/annotations (upstream's paths omit "metadata")
/// and the pod spec.
fn pod_template(e: &mut Errs, template: Option<&Value>, p: &str, ctx: &PodCtx) {
    let meta = get(template, "metadata");
    validate_labels(e, obj_of(meta, "labels"), &child(p, "labels"));
    validate_annotations(e, obj_of(meta, "annotations"), &child(p, "annotations"));
    pod_specific_annotations(
        e,
        obj_of(meta, "annotations"),
        get(template, "spec"),
        &child(p, "annotations"),
    );
    pod_spec(e, get(template, "spec"), &child(p, "spec"), ctx);
}

fn pod_specific_annotations(e: &mut Errs, ann: Option<&Obj>, spec: Option<&Value>, path: &str) {
    let Some(ann) = ann else { return };
    let mirror = "kubernetes.io/config.mirror";
    if let Some(v) = ann.get(mirror).and_then(Value::as_str)
        && str_of(spec, "nodeName").is_empty()
    {
        e.invalid_s(
            &key(path, mirror),
            v,
            "must set spec.nodeName if mirror pod annotation is set",
        );
    }
    let cost = "controller.kubernetes.io/pod-deletion-cost";
    if let Some(v) = ann.get(cost).and_then(Value::as_str)
        && v.parse::<i32>().is_err()
    {
        e.invalid_s(&key(path, cost), v, "must be a 32bit integer");
    }
}

// ---------------------------------------------------------------------------------------------
// Pod
// ---------------------------------------------------------------------------------------------

const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn pod(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    let meta = get(obj, "metadata");
    pod_specific_annotations(e, obj_of(meta, "annotations"), spec, "metadata.annotations");
    let ctx = PodCtx {
        is_pod: true,
        create: old.is_none(),
        ..PodCtx::default()
    };
    match old {
        None => pod_spec(e, spec, "spec", &ctx),
        Some(old) => {
            // Ephemeral containers are managed through their subresource and may already be
            // present on the stored pod; only the create path rejects them.
            let mut spec_copy = spec.cloned().unwrap_or(Value::Object(Map::new()));
            if let Some(m) = spec_copy.as_object_mut() {
                m.remove("ephemeralContainers");
            }
            pod_spec(e, Some(&spec_copy), "spec", &ctx);
            pod_update(e, spec, get(Some(old), "spec"));
        }
    }
}

fn pod_update(e: &mut Errs, new: Option<&Value>, old: Option<&Value>) {
    for list in ["containers", "initContainers"] {
        if arr_of(new, list).len() != arr_of(old, list).len() {
            e.forbidden(
                &child("spec", list),
                "pod updates may not add or remove containers",
            );
            return;
        }
    }
    let new_ads = int_of(new, "activeDeadlineSeconds");
    let old_ads = int_of(old, "activeDeadlineSeconds");
    match (new_ads, old_ads) {
        (Some(n), _) if !(0..=MAX_INT32).contains(&n) => {
            e.invalid_i(
                "spec.activeDeadlineSeconds",
                n,
                &format!("must be between 0 and {MAX_INT32}, inclusive"),
            );
            return;
        }
        (Some(n), Some(o)) if o < n => {
            e.invalid_i(
                "spec.activeDeadlineSeconds",
                n,
                "must be less than or equal to previous value",
            );
            return;
        }
        (None, Some(_)) => e.invalid(
            "spec.activeDeadlineSeconds",
            "null",
            "must not update from a positive integer to nil value",
        ),
        _ => {}
    }
    // Tolerations: every old one must survive (tolerationSeconds may change).
    let strip_secs = |t: &Value| {
        let mut t = normalize(t);
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    let new_tols: Vec<Value> = arr_of(new, "tolerations").iter().map(strip_secs).collect();
    if arr_of(old, "tolerations")
        .iter()
        .any(|t| !new_tols.contains(&strip_secs(t)))
    {
        e.forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        );
    }
    // Scheduling gates may only be removed.
    let old_gates: BTreeSet<&str> = arr_of(old, "schedulingGates")
        .iter()
        .map(|g| str_of(Some(g), "name"))
        .collect();
    for (i, g) in arr_of(new, "schedulingGates").iter().enumerate() {
        let n = str_of(Some(g), "name");
        if !old_gates.contains(n) {
            e.forbidden(
                &child(&idx("spec.schedulingGates", i), "name"),
                &format!("only deletion is allowed, but found new scheduling gate '{n}'"),
            );
        }
    }

    // Munge the fields that may change to their old values, then compare what is left.
    let mut munged = canonical_pod_spec(new);
    let old_c = canonical_pod_spec(old);
    if let (Some(m), Some(o)) = (munged.as_object_mut(), old_c.as_object()) {
        for list in ["containers", "initContainers"] {
            if let (Some(Value::Array(nc)), Some(Value::Array(oc))) = (m.get_mut(list), o.get(list))
            {
                for (n, o) in nc.iter_mut().zip(oc) {
                    if let Some(nm) = n.as_object_mut() {
                        match o.get("image") {
                            Some(img) => nm.insert("image".to_string(), img.clone()),
                            None => nm.remove("image"),
                        };
                    }
                }
            }
        }
        for f in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match o.get(f) {
                Some(v) => m.insert(f.to_string(), v.clone()),
                None => m.remove(f),
            };
        }
        let old_grace = o
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        let new_grace = m
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0)
            && new_grace == Some(1)
            && let Some(g) = o.get("terminationGracePeriodSeconds")
        {
            m.insert("terminationGracePeriodSeconds".to_string(), g.clone());
        }
        // A gated pod may gain node selector entries and node affinity before scheduling.
        if o.get("schedulingGates").is_some() {
            let old_sel = o.get("nodeSelector").and_then(Value::as_object);
            let new_sel = m.get("nodeSelector").and_then(Value::as_object);
            let only_additions = old_sel
                .into_iter()
                .flatten()
                .all(|(k, v)| new_sel.and_then(|n| n.get(k)) == Some(v));
            if only_additions {
                match o.get("nodeSelector") {
                    Some(v) => m.insert("nodeSelector".to_string(), v.clone()),
                    None => m.remove("nodeSelector"),
                };
            }
            let old_na = o
                .get("affinity")
                .and_then(|a| a.get("nodeAffinity"))
                .cloned();
            if let Some(Value::Object(aff)) = m.get_mut("affinity") {
                match old_na {
                    Some(na) => aff.insert("nodeAffinity".to_string(), na),
                    None => aff.remove("nodeAffinity"),
                };
            }
            munged = normalize(&munged);
        }
    }
    if munged != old_c {
        let mut diffs = Vec::new();
        diff_values(&old_c, &munged, "spec", &mut diffs);
        e.forbidden(
            "spec",
            &format!(
                "pod updates may not change fields other than {UPDATABLE_POD_FIELDS}\n{}",
                diffs.join("\n")
            ),
        );
    }
}

/// A pod spec with nulls/empties dropped and the defaults kube-apiserver would have filled in,
/// so that a stored (defaulted) spec compares equal to the same spec as a client sends it.
fn canonical_pod_spec(spec: Option<&Value>) -> Value {
    let mut s = spec.cloned().unwrap_or(Value::Object(Map::new()));
    if let Some(m) = s.as_object_mut() {
        let defaults: [(&str, Value); 5] = [
            ("dnsPolicy", Value::from("ClusterFirst")),
            ("restartPolicy", Value::from("Always")),
            ("schedulerName", Value::from("default-scheduler")),
            ("terminationGracePeriodSeconds", Value::from(30)),
            ("enableServiceLinks", Value::from(true)),
        ];
        for (k, v) in defaults {
            let empty = m
                .get(k)
                .is_none_or(|x| x.is_null() || x.as_str() == Some(""));
            if empty {
                m.insert(k.to_string(), v);
            }
        }
        // serviceAccount is the deprecated alias of serviceAccountName.
        if let Some(sa) = m.remove("serviceAccount") {
            let missing = m
                .get("serviceAccountName")
                .is_none_or(|x| x.as_str().unwrap_or("").is_empty());
            if missing {
                m.insert("serviceAccountName".to_string(), sa);
            }
        }
        // Plain (non-pointer) Go bools: false and absent are the same value.
        for k in ["hostNetwork", "hostPID", "hostIPC"] {
            if m.get(k) == Some(&Value::Bool(false)) {
                m.remove(k);
            }
        }
        for list in ["containers", "initContainers"] {
            if let Some(Value::Array(cs)) = m.get_mut(list) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    default_container(c);
                }
            }
        }
    }
    normalize(&s)
}

fn default_container(c: &mut Obj) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    // Upstream: Always for ":latest" or untagged images, IfNotPresent otherwise.
    let last = image.rsplit('/').next().unwrap_or(image);
    let tag = if last.contains('@') {
        None
    } else {
        last.rsplit_once(':').map(|(_, t)| t)
    };
    let pull = if !last.contains('@') && tag.is_none_or(|t| t == "latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    let defaults: [(&str, Value); 3] = [
        (
            "terminationMessagePath",
            Value::from("/dev/termination-log"),
        ),
        ("terminationMessagePolicy", Value::from("File")),
        ("imagePullPolicy", Value::from(pull)),
    ];
    for (k, v) in defaults {
        let empty = c
            .get(k)
            .is_none_or(|x| x.is_null() || x.as_str() == Some(""));
        if empty {
            c.insert(k.to_string(), v);
        }
    }
    for k in ["stdin", "stdinOnce", "tty"] {
        if c.get(k) == Some(&Value::Bool(false)) {
            c.remove(k);
        }
    }
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            if p.get("hostPort").and_then(Value::as_i64) == Some(0) {
                p.remove("hostPort");
            }
            let empty = p
                .get("protocol")
                .is_none_or(|x| x.is_null() || x.as_str() == Some(""));
            if empty {
                p.insert("protocol".to_string(), Value::from("TCP"));
            }
        }
    }
}

/// Drops nulls, empty strings and empty objects/arrays recursively: Go's zero values and
/// nil-vs-empty collections compare equal under `apiequality.Semantic.DeepEqual`.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                let n = normalize(val);
                if !is_empty_value(&n) {
                    out.insert(k.clone(), n);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A short "what changed" listing for Forbidden update messages (upstream prints a cmp.Diff).
fn diff_values(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    if out.len() >= 20 || old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let null = Value::Null;
                diff_values(
                    a.get(k).unwrap_or(&null),
                    b.get(k).unwrap_or(&null),
                    &child(path, k),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_values(x, y, &idx(path, i), out);
            }
        }
        _ => {
            out.push(format!("- {path}: {}", compact(old)));
            out.push(format!("+ {path}: {}", compact(new)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Service, Endpoints
// ---------------------------------------------------------------------------------------------

fn effective_cluster_ips(spec: Option<&Value>) -> Vec<String> {
    let ips: Vec<String> = strings_of(spec, "clusterIPs")
        .into_iter()
        .map(str::to_string)
        .collect();
    if ips.is_empty() {
        let ip = str_of(spec, "clusterIP");
        if !ip.is_empty() {
            return vec![ip.to_string()];
        }
    }
    ips
}

fn service(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    let sp = "spec";
    let svc_type = str_opt(spec, "type")
        .filter(|t| !t.is_empty())
        .unwrap_or("ClusterIP");
    // The registry keeps allocated cluster IPs when an update leaves them out.
    let mut cluster_ips = effective_cluster_ips(spec);
    let old_spec = old.and_then(|o| get(Some(o), "spec"));
    if cluster_ips.is_empty()
        && svc_type != "ExternalName"
        && let Some(os) = old_spec
    {
        cluster_ips = effective_cluster_ips(Some(os));
    }
    let cluster_ip = str_opt(spec, "clusterIP")
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .or_else(|| cluster_ips.first().cloned())
        .unwrap_or_default();
    let headless =
        cluster_ips.len() == 1 && cluster_ips.first().map(String::as_str) == Some("None");
    let ports = arr_of(spec, "ports");

    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        e.required(&child(sp, "ports"), "");
    }
    match svc_type {
        "LoadBalancer" | "NodePort" if headless => e.invalid_s(
            "spec.clusterIPs[0]",
            "None",
            &format!("may not be set to 'None' for {svc_type} services"),
        ),
        "ExternalName" => {
            if !cluster_ips.is_empty() {
                e.forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                );
            }
            if !arr_of(spec, "ipFamilies").is_empty() {
                e.forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                );
            }
            if get(spec, "ipFamilyPolicy").is_some() {
                e.forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                );
            }
            let ext = str_of(spec, "externalName");
            let cname = ext.strip_suffix('.').unwrap_or(ext);
            if cname.is_empty() {
                e.required("spec.externalName", "");
            } else {
                for m in is_dns1123_subdomain(cname) {
                    e.invalid_s("spec.externalName", cname, &m);
                }
            }
        }
        _ => {}
    }
    let mut port_names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = idx("spec.ports", i);
        let port = Some(port);
        let name = str_of(port, "name");
        if ports.len() > 1 && name.is_empty() {
            e.required(&child(&pp, "name"), "");
        } else if !name.is_empty() {
            for m in is_dns1123_label(name) {
                e.invalid_s(&child(&pp, "name"), name, &m);
            }
            if !port_names.insert(name) {
                e.duplicate(&child(&pp, "name"), &q(name));
            }
        }
        let num = int_of(port, "port").unwrap_or(0);
        for m in is_valid_port_num(num) {
            e.invalid_i(&child(&pp, "port"), num, &m);
        }
        protocol(e, port, &pp);
        // targetPort defaults to port.
        let defaulted = |v: &&Value| v.as_i64() == Some(0) || v.as_str() == Some("");
        if let Some(tp) = get(port, "targetPort").filter(|v| !defaulted(v)) {
            port_num_or_name(e, Some(tp), &child(&pp, "targetPort"));
        }
        if let Some(ap) = str_opt(port, "appProtocol") {
            for m in is_qualified_name(ap) {
                e.invalid_s(&child(&pp, "appProtocol"), ap, &m);
            }
        }
    }
    validate_labels(e, obj_of(spec, "selector"), "spec.selector");

    let affinity = str_opt(spec, "sessionAffinity")
        .filter(|a| !a.is_empty())
        .unwrap_or("None");
    match affinity {
        "ClientIP" => {
            if let Some(t) = int_of(
                get(get(spec, "sessionAffinityConfig"), "clientIP"),
                "timeoutSeconds",
            ) && (t <= 0 || t > 86400)
            {
                e.invalid_i(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    t,
                    "must be greater than 0 and less than 86400",
                );
            }
        }
        "None" => {
            if get(spec, "sessionAffinityConfig").is_some() {
                e.forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                );
            }
        }
        other => e.not_supported("spec.sessionAffinity", other, &["ClientIP", "None"]),
    }

    if svc_type != "ExternalName" {
        service_cluster_ips(e, spec, &cluster_ip, &cluster_ips, headless);
    }
    for (i, ip) in strings_of(spec, "externalIPs").iter().enumerate() {
        let ipp = idx("spec.externalIPs", i);
        if validate_ip_legacy(e, &ipp, ip) {
            validate_non_special_ip(e, &ipp, ip);
        }
    }
    if !matches!(
        svc_type,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        e.not_supported(
            "spec.type",
            svc_type,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        );
    }
    let mut node_ports = BTreeSet::new();
    let mut seen_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = idx("spec.ports", i);
        let port = Some(port);
        let proto = str_opt(port, "protocol")
            .filter(|p| !p.is_empty())
            .unwrap_or("TCP");
        let node_port = int_of(port, "nodePort").unwrap_or(0);
        if svc_type == "ClusterIP" && node_port != 0 {
            e.forbidden(
                &child(&pp, "nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            );
        }
        if node_port != 0 && !node_ports.insert((proto, node_port)) {
            e.duplicate(&child(&pp, "nodePort"), &node_port.to_string());
        }
        let num = int_of(port, "port").unwrap_or(0);
        if !seen_ports.insert((proto, num)) {
            e.duplicate(
                &pp,
                &format!(
                    "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{num}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                    q(proto)
                ),
            );
        }
    }
    let ranges = strings_of(spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        // Upstream spells this path with a capital L.
        let fp = "spec.LoadBalancerSourceRanges";
        if svc_type != "LoadBalancer" {
            e.forbidden(fp, "may only be used when `type` is 'LoadBalancer'");
        }
        for (i, r) in ranges.iter().enumerate() {
            let r = r.trim();
            if parse_cidr(r).is_none() {
                e.invalid_s(&idx(fp, i), r, CIDR_ERR);
            }
        }
    }
    if get(spec, "allocateLoadBalancerNodePorts").is_some() && svc_type != "LoadBalancer" {
        e.forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        );
    }
    if let Some(class) = str_opt(spec, "loadBalancerClass") {
        if svc_type == "LoadBalancer" {
            for m in is_qualified_name(class) {
                e.invalid_s("spec.loadBalancerClass", class, &m);
            }
        } else {
            e.forbidden(
                "spec.loadBalancerClass",
                "may only be used when `type` is 'LoadBalancer'",
            );
        }
    }
    let externally_accessible = svc_type == "LoadBalancer"
        || svc_type == "NodePort"
        || (svc_type == "ClusterIP" && !arr_of(spec, "externalIPs").is_empty());
    if let Some(etp) = str_opt(spec, "externalTrafficPolicy").filter(|p| !p.is_empty()) {
        if !externally_accessible {
            e.invalid_s(
                "spec.externalTrafficPolicy",
                etp,
                "may only be set for externally-accessible services",
            );
        } else if etp != "Cluster" && etp != "Local" {
            e.not_supported("spec.externalTrafficPolicy", etp, &["Cluster", "Local"]);
        }
    }
    let needs_health_check =
        svc_type == "LoadBalancer" && str_of(spec, "externalTrafficPolicy") == "Local";
    if let Some(hc) = int_of(spec, "healthCheckNodePort").filter(|h| *h != 0) {
        if !needs_health_check {
            e.invalid_i(
                "spec.healthCheckNodePort",
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            );
        } else {
            for m in is_valid_port_num(hc) {
                e.invalid_i("spec.healthCheckNodePort", hc, &m);
            }
        }
    }
    if let Some(itp) = str_opt(spec, "internalTrafficPolicy")
        && itp != "Cluster"
        && itp != "Local"
    {
        e.not_supported("spec.internalTrafficPolicy", itp, &["Cluster", "Local"]);
    }
    if let Some(td) = str_opt(spec, "trafficDistribution")
        && td != "PreferClose"
    {
        e.not_supported("spec.trafficDistribution", td, &["PreferClose"]);
    }

    if let Some(os) = old_spec {
        let old_type = str_opt(Some(os), "type")
            .filter(|t| !t.is_empty())
            .unwrap_or("ClusterIP");
        let old_ips = effective_cluster_ips(Some(os));
        let old_headless =
            old_ips.len() == 1 && old_ips.first().map(String::as_str) == Some("None");
        if svc_type != "ExternalName" && old_type != "ExternalName" && !(headless && old_headless) {
            let changed = old_ips
                .iter()
                .zip(cluster_ips.iter())
                .position(|(o, n)| o != n);
            if let Some(i) = changed {
                e.invalid(
                    &idx("spec.clusterIPs", i),
                    &go_string_slice(&cluster_ips),
                    "may not change once set",
                );
            } else if old_ips.len() > cluster_ips.len() && cluster_ips.is_empty() {
                e.invalid(
                    "spec.clusterIPs[0]",
                    &go_string_slice(&cluster_ips),
                    "primary clusterIP can not be unset",
                );
            }
        }
        if old_type == "LoadBalancer"
            && svc_type == "LoadBalancer"
            && str_opt(Some(os), "loadBalancerClass") != str_opt(spec, "loadBalancerClass")
        {
            let v = str_opt(spec, "loadBalancerClass").map_or("null".to_string(), q);
            e.invalid("spec.loadBalancerClass", &v, "may not change once set");
        }
    }
}

fn go_string_slice(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| q(s)).collect();
    format!("[]string{{{}}}", items.join(", "))
}

fn service_cluster_ips(
    e: &mut Errs,
    spec: Option<&Value>,
    cluster_ip: &str,
    ips: &[String],
    headless: bool,
) {
    let explicit = strings_of(spec, "clusterIPs");
    if !cluster_ip.is_empty() && explicit.first().is_some_and(|f| *f != cluster_ip) {
        e.invalid(
            "spec.clusterIPs",
            &go_strings(get(spec, "clusterIPs")),
            "first value must match `clusterIP`",
        );
    }
    let families = strings_of(spec, "ipFamilies");
    let mut seen = BTreeSet::new();
    for (i, f) in families.iter().enumerate() {
        let fp = idx("spec.ipFamilies", i);
        if *f != "IPv4" && *f != "IPv6" {
            e.not_supported(&fp, f, &["IPv4", "IPv6"]);
        }
        if !seen.insert(*f) {
            e.duplicate(&fp, &q(f));
        }
    }
    if let Some(p) = str_opt(spec, "ipFamilyPolicy")
        && !matches!(p, "SingleStack" | "PreferDualStack" | "RequireDualStack")
    {
        e.not_supported(
            "spec.ipFamilyPolicy",
            p,
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        );
    }
    let mut invalid = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                invalid = true;
                e.invalid(
                    "spec.clusterIPs",
                    &go_string_slice(ips),
                    "'None' must be the first and only value",
                );
            }
            continue;
        }
        invalid |= !validate_ip_legacy(e, &idx("spec.clusterIPs", i), ip);
    }
    if ips.len() > 2 {
        e.invalid(
            "spec.clusterIPs",
            &go_string_slice(ips),
            "may only hold up to 2 values",
        );
    }
    if invalid {
        return;
    }
    if ips.len() > 1 {
        let v6: Vec<bool> = ips
            .iter()
            .filter_map(|i| parse_ip(i))
            .map(|ip| ip.is_ipv6())
            .collect();
        let dual = v6.len() == 2 && v6.first() != v6.get(1);
        if !dual {
            e.invalid(
                "spec.clusterIPs",
                &go_string_slice(ips),
                "may specify no more than one IP for each IP family",
            );
        }
    }
    if !headless {
        for (i, (ip, fam)) in ips.iter().zip(families.iter()).enumerate() {
            let is_v6 = parse_ip(ip).is_some_and(|a| a.is_ipv6());
            if *fam == "IPv4" && is_v6 {
                e.invalid_s(
                    &idx("spec.clusterIPs", i),
                    ip,
                    &format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                );
            }
            if *fam == "IPv6" && !is_v6 {
                e.invalid_s(
                    &idx("spec.clusterIPs", i),
                    ip,
                    &format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                );
            }
        }
    }
}

fn endpoints(e: &mut Errs, obj: Option<&Value>) {
    for (i, ss) in arr_of(obj, "subsets").iter().enumerate() {
        let sp = idx("subsets", i);
        let ss = Some(ss);
        if arr_of(ss, "addresses").is_empty() && arr_of(ss, "notReadyAddresses").is_empty() {
            e.required(&sp, "must specify `addresses` or `notReadyAddresses`");
        }
        for list in ["addresses", "notReadyAddresses"] {
            for (j, a) in arr_of(ss, list).iter().enumerate() {
                let ap = idx(&child(&sp, list), j);
                let a = Some(a);
                let ip = str_of(a, "ip");
                validate_ip_legacy(e, &child(&ap, "ip"), ip);
                let host = str_of(a, "hostname");
                if !host.is_empty() {
                    for m in is_dns1123_label(host) {
                        e.invalid_s(&child(&ap, "hostname"), host, &m);
                    }
                }
                if let Some(n) = str_opt(a, "nodeName") {
                    for m in is_dns1123_subdomain(n) {
                        e.invalid_s(&child(&ap, "nodeName"), n, &m);
                    }
                }
                validate_non_special_ip(e, &child(&ap, "ip"), ip);
            }
        }
        let ports = arr_of(ss, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = idx(&child(&sp, "ports"), j);
            let port = Some(port);
            let name = str_of(port, "name");
            if ports.len() > 1 && name.is_empty() {
                e.required(&child(&pp, "name"), "");
            } else if !name.is_empty() {
                for m in is_dns1123_label(name) {
                    e.invalid_s(&child(&pp, "name"), name, &m);
                }
            }
            let num = int_of(port, "port").unwrap_or(0);
            for m in is_valid_port_num(num) {
                e.invalid_i(&child(&pp, "port"), num, &m);
            }
            protocol(e, port, &pp);
            if let Some(ap) = str_opt(port, "appProtocol") {
                for m in is_qualified_name(ap) {
                    e.invalid_s(&child(&pp, "appProtocol"), ap, &m);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ConfigMap, Secret, Namespace, Node, Event, Binding, Lease, Scale
// ---------------------------------------------------------------------------------------------

const MAX_SECRET_SIZE: usize = 1024 * 1024;

/// Decoded length of a base64 string (what the typed object holds for Secret data).
fn base64_len(s: &str) -> usize {
    let s = s.trim_end_matches('=');
    s.len() * 3 / 4
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut buf = 0u32;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((buf >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

fn immutable_guard(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>, fields: &[&str]) {
    if bool_of(old, "immutable") != Some(true) {
        return;
    }
    if bool_of(obj, "immutable") != Some(true) {
        e.forbidden("immutable", "field is immutable when `immutable` is set");
    }
    for f in fields {
        let n = get(obj, f).map(normalize).unwrap_or(Value::Null);
        let o = get(old, f).map(normalize).unwrap_or(Value::Null);
        if !(n == o || is_empty_value(&n) && is_empty_value(&o)) {
            e.forbidden(f, "field is immutable when `immutable` is set");
        }
    }
}

fn config_map(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let data = obj_of(obj, "data");
    let binary = obj_of(obj, "binaryData");
    let mut total = 0usize;
    for (k, v) in data.into_iter().flatten() {
        for m in is_config_map_key(k) {
            e.invalid_s(&key("data", k), k, &m);
        }
        if binary.is_some_and(|b| b.contains_key(k)) {
            e.invalid_s(&key("data", k), k, "duplicate of key present in binaryData");
        }
        total += v.as_str().map_or(0, str::len);
    }
    for (k, v) in binary.into_iter().flatten() {
        for m in is_config_map_key(k) {
            e.invalid_s(&key("binaryData", k), k, &m);
        }
        total += v.as_str().map_or(0, base64_len);
    }
    if total > MAX_SECRET_SIZE {
        // Upstream uses field.NewPath(""), which prints as "[]".
        e.too_long("[]", MAX_SECRET_SIZE);
    }
    if let Some(old) = old {
        immutable_guard(e, obj, Some(old), &["data", "binaryData"]);
    }
}

fn secret(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    // stringData is merged into data before validation upstream.
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in obj_of(obj, "data").into_iter().flatten() {
        data.insert(
            k.clone(),
            v.as_str().and_then(base64_decode).unwrap_or_default(),
        );
    }
    for (k, v) in obj_of(obj, "stringData").into_iter().flatten() {
        data.insert(k.clone(), v.as_str().unwrap_or("").as_bytes().to_vec());
    }
    let mut total = 0usize;
    for (k, v) in &data {
        for m in is_config_map_key(k) {
            e.invalid_s(&key("data", k), k, &m);
        }
        total += v.len();
    }
    if total > MAX_SECRET_SIZE {
        e.too_long("data", MAX_SECRET_SIZE);
    }
    let secret_type = str_of(obj, "type");
    let need = |e: &mut Errs, k: &str| {
        if !data.contains_key(k) {
            e.required(&key("data", k), "");
        }
    };
    match secret_type {
        "kubernetes.io/service-account-token" => {
            let ann = obj_of(get(obj, "metadata"), "annotations");
            let sa = ann
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if sa.is_empty() {
                e.required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                );
            }
        }
        "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson" => {
            let k = if secret_type == "kubernetes.io/dockercfg" {
                ".dockercfg"
            } else {
                ".dockerconfigjson"
            };
            match data.get(k) {
                None => need(e, k),
                Some(bytes) => {
                    let parsed: Result<Map<String, Value>, _> = serde_json::from_slice(bytes);
                    if let Err(err) = parsed {
                        e.invalid_s(
                            &key("data", k),
                            "<secret contents redacted>",
                            &err.to_string(),
                        );
                    }
                }
            }
        }
        "kubernetes.io/basic-auth"
            if !data.contains_key("username") && !data.contains_key("password") =>
        {
            need(e, "username");
            need(e, "password");
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(Vec::is_empty) => {
            e.required("data[ssh-privatekey]", "");
        }
        "kubernetes.io/tls" => {
            need(e, "tls.crt");
            need(e, "tls.key");
        }
        _ => {}
    }
    if let Some(old) = old {
        let old_type = str_of(Some(old), "type");
        // An omitted type is defaulted to Opaque.
        let norm = |t: &str| {
            if t.is_empty() {
                "Opaque".to_string()
            } else {
                t.to_string()
            }
        };
        if norm(secret_type) != norm(old_type) {
            e.invalid_s("type", secret_type, IMMUTABLE);
        }
        immutable_guard(e, obj, Some(old), &["data"]);
    }
}

fn namespace(e: &mut Errs, obj: Option<&Value>) {
    finalizers(
        e,
        get(get(obj, "spec"), "finalizers"),
        "spec.finalizers",
        false,
    );
}

fn effective_pod_cidrs(spec: Option<&Value>) -> Vec<&str> {
    let cidrs = strings_of(spec, "podCIDRs");
    if cidrs.is_empty() {
        str_opt(spec, "podCIDR")
            .filter(|c| !c.is_empty())
            .into_iter()
            .collect()
    } else {
        cidrs
    }
}

fn node(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    // Upstream builds this path from "metadata" (sic).
    let tp = "metadata.taints";
    let mut unique: BTreeSet<(&str, &str)> = BTreeSet::new();
    for (i, raw) in arr_of(spec, "taints").iter().enumerate() {
        let ip = idx(tp, i);
        let t = Some(raw);
        let k = str_of(t, "key");
        validate_label_name(e, k, &child(&ip, "key"));
        let v = str_of(t, "value");
        let msgs = is_label_value(v);
        if !msgs.is_empty() {
            e.invalid_s(&child(&ip, "value"), v, &msgs.join(";"));
        }
        let effect = str_of(t, "effect");
        if effect.is_empty() {
            e.required(&child(&ip, "effect"), "");
        } else {
            taint_effect(e, effect, &child(&ip, "effect"));
        }
        if !unique.insert((effect, k)) {
            e.push(
                CauseReason::Duplicate,
                &ip,
                Some(&compact(raw)),
                "taints must be unique by key and effect pair",
            );
        }
    }
    let cidrs = effective_pod_cidrs(spec);
    for (i, c) in cidrs.iter().enumerate() {
        if parse_cidr(c).is_none() {
            e.invalid_s(&idx("spec.podCIDRs", i), c, CIDR_ERR);
        }
    }
    if cidrs.len() > 1 {
        let fams: Vec<bool> = cidrs
            .iter()
            .filter_map(|c| parse_cidr(c))
            .map(|c| c.v6)
            .collect();
        if fams.len() != 2 || fams.first() == fams.get(1) {
            e.invalid(
                "spec.podCIDRs",
                &go_strings(get(spec, "podCIDRs")),
                "may specify no more than one CIDR for each IP family",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, c) in cidrs.iter().enumerate() {
            if !seen.insert(*c) {
                e.duplicate(&idx("spec.podCIDRs", i), &q(c));
            }
        }
    }
    if let Some(old) = old {
        let old_spec = get(Some(old), "spec");
        let old_cidrs = effective_pod_cidrs(old_spec);
        if !old_cidrs.is_empty() {
            let changed = old_cidrs.len() > cidrs.len()
                || old_cidrs.iter().zip(cidrs.iter()).any(|(o, n)| o != n);
            if changed {
                e.forbidden(
                    "spec.podCIDRs",
                    "node updates may not change podCIDR except from \"\" to valid",
                );
            }
        }
        let old_pid = str_of(old_spec, "providerID");
        if !old_pid.is_empty() && old_pid != str_of(spec, "providerID") {
            e.forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            );
        }
    }
}

fn event(e: &mut Errs, obj: Option<&Value>) {
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

fn binding(e: &mut Errs, obj: Option<&Value>) {
    let target = get(obj, "target");
    let kind = str_of(target, "kind");
    if !kind.is_empty() && kind != "Node" {
        e.not_supported("target.kind", kind, &["Node", "<empty>"]);
    }
    if str_of(target, "name").is_empty() {
        e.required("target.name", "");
    }
}

fn lease(e: &mut Errs, obj: Option<&Value>) {
    let spec = get(obj, "spec");
    if let Some(d) = int_of(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
        e.invalid_i("spec.leaseDurationSeconds", d, "must be greater than 0");
    }
    e.non_negative("spec.leaseTransitions", int_of(spec, "leaseTransitions"));
    if let Some(s) = str_opt(spec, "strategy") {
        for m in is_qualified_name(s) {
            e.invalid_s("spec.strategy", s, &m);
        }
    }
}

fn scale(e: &mut Errs, obj: Option<&Value>) {
    if let Some(r) = int_of(get(obj, "spec"), "replicas").filter(|r| *r < 0) {
        e.invalid_i("spec.replicas", r, IS_NEGATIVE);
    }
}

// ---------------------------------------------------------------------------------------------
// apps/v1
// ---------------------------------------------------------------------------------------------

/// `ValidatePositiveIntOrPercent`.
fn int_or_percent(e: &mut Errs, v: Option<&Value>, path: &str) {
    match v {
        Some(Value::String(s)) if !is_valid_percent(s) => {
            e.invalid(
                path,
                &go_int_or_string(&Value::String(s.clone())),
                &regex_error(PERCENT_ERR, PERCENT_FMT, &["1%", "93%"]),
            );
        }
        Some(other) => e.non_negative(path, other.as_i64()),
        None => {}
    }
}

/// Value of an int-or-percent (the percentage number for "25%"), as upstream compares them.
fn int_or_percent_value(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s
            .strip_suffix('%')
            .and_then(|d| d.parse().ok())
            .unwrap_or(0),
        Some(other) => other.as_i64().unwrap_or(0),
        None => 0,
    }
}

fn not_more_than_100_percent(e: &mut Errs, v: Option<&Value>, path: &str) {
    if let Some(Value::String(s)) = v
        && is_valid_percent(s)
        && int_or_percent_value(v) > 100
    {
        e.invalid(
            path,
            &go_int_or_string(&Value::String(s.clone())),
            "must not be greater than 100%",
        );
    }
}

/// Selector presence/emptiness, selector syntax and the template-labels match, for the four
/// workload controllers. `kind_word` is the noun in "empty selector is invalid for ...".
fn workload_selector(e: &mut Errs, spec: Option<&Value>, kind_word: &str, require: bool) {
    let sel = get(spec, "selector");
    let mut selector_ok = true;
    match sel {
        None if require => e.required("spec.selector", ""),
        None => {}
        Some(s) => {
            selector_ok = label_selector(e, Some(s), "spec.selector");
            if selector_is_empty(Some(s)) {
                e.invalid(
                    "spec.selector",
                    &go_label_selector(Some(s)),
                    &format!("empty selector is invalid for {kind_word}"),
                );
            }
        }
    }
    if !selector_ok {
        if kind_word != "statefulset" && kind_word != "daemonset" {
            e.invalid(
                "spec.selector",
                &go_label_selector(sel),
                "invalid label selector",
            );
        }
        return;
    }
    let template_labels = obj_of(get(get(spec, "template"), "metadata"), "labels");
    // An empty (non-nil) selector selects everything; a missing one selects nothing.
    let empty_selector = sel.is_some() && selector_is_empty(sel);
    if !empty_selector && !selector_matches(sel, template_labels) {
        e.invalid(
            "spec.template.metadata.labels",
            &go_map(template_labels),
            "`selector` does not match template `labels`",
        );
    }
}

/// Template checks shared by Deployment, ReplicaSet, StatefulSet and DaemonSet.
fn workload_template(e: &mut Errs, spec: Option<&Value>, kind: &str, ctx: &PodCtx) {
    let template = get(spec, "template");
    pod_template(e, template, "spec.template", ctx);
    let tspec = get(template, "spec");
    if let Some(rp) = str_opt(tspec, "restartPolicy").filter(|r| !r.is_empty() && *r != "Always") {
        e.not_supported("spec.template.spec.restartPolicy", rp, &["Always"]);
    }
    if get(tspec, "activeDeadlineSeconds").is_some() {
        e.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        );
    }
}

fn selector_immutable(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let Some(old) = old else { return };
    let new_sel = get(get(obj, "spec"), "selector");
    let old_sel = get(get(Some(old), "spec"), "selector");
    if new_sel.map(normalize) != old_sel.map(normalize) {
        e.invalid("spec.selector", &go_label_selector(new_sel), IMMUTABLE);
    }
}

fn deployment(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    e.non_negative("spec.replicas", int_of(spec, "replicas"));
    workload_selector(e, spec, "deployment", true);
    workload_template(e, spec, "Deployment", &PodCtx::default());
    if let Some(strategy) = get(spec, "strategy") {
        let st = Some(strategy);
        let rolling = get(st, "rollingUpdate");
        match str_opt(st, "type")
            .filter(|t| !t.is_empty())
            .unwrap_or("RollingUpdate")
        {
            "Recreate" => {
                if rolling.is_some() {
                    e.forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    );
                }
            }
            "RollingUpdate" => {
                // Absent values are defaulted to 25%.
                let rp = "spec.strategy.rollingUpdate";
                let mu = get(rolling, "maxUnavailable");
                let ms = get(rolling, "maxSurge");
                int_or_percent(e, mu, &child(rp, "maxUnavailable"));
                int_or_percent(e, ms, &child(rp, "maxSurge"));
                let mu_v = if mu.is_some() {
                    int_or_percent_value(mu)
                } else {
                    25
                };
                let ms_v = if ms.is_some() {
                    int_or_percent_value(ms)
                } else {
                    25
                };
                if mu_v == 0 && ms_v == 0 {
                    e.invalid(
                        &child(rp, "maxUnavailable"),
                        &go_int_or_string(mu.unwrap_or(&Value::from(0))),
                        "may not be 0 when `maxSurge` is 0",
                    );
                }
                not_more_than_100_percent(e, mu, &child(rp, "maxUnavailable"));
            }
            other => {
                let rendered = format!(
                    "apps.DeploymentStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}}",
                    q(other)
                );
                e.push(
                    CauseReason::NotSupported,
                    "spec.strategy",
                    Some(&rendered),
                    "supported values: \"Recreate\", \"RollingUpdate\"",
                );
            }
        }
    }
    let min_ready = int_of(spec, "minReadySeconds");
    e.non_negative("spec.minReadySeconds", min_ready);
    e.non_negative(
        "spec.revisionHistoryLimit",
        int_of(spec, "revisionHistoryLimit"),
    );
    if let Some(pds) = int_of(spec, "progressDeadlineSeconds") {
        e.non_negative("spec.progressDeadlineSeconds", Some(pds));
        if pds <= min_ready.unwrap_or(0) {
            e.invalid_i(
                "spec.progressDeadlineSeconds",
                pds,
                "must be greater than minReadySeconds",
            );
        }
    }
    selector_immutable(e, obj, old);
}

fn replica_set(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    e.non_negative("spec.replicas", int_of(spec, "replicas"));
    e.non_negative("spec.minReadySeconds", int_of(spec, "minReadySeconds"));
    // Upstream's message says "deployment" for ReplicaSets too.
    workload_selector(e, spec, "deployment", true);
    workload_template(e, spec, "ReplicaSet", &PodCtx::default());
    selector_immutable(e, obj, old);
}

/// `ValidateReplicationControllerSpec`: unlike a ReplicaSet's, the selector is a plain label map
/// (defaulted from the template's labels) and may change on update.
fn replication_controller(e: &mut Errs, obj: Option<&Value>) {
    let spec = get(obj, "spec");
    e.non_negative("spec.minReadySeconds", int_of(spec, "minReadySeconds"));
    let selector = obj_of(spec, "selector").filter(|s| !s.is_empty());
    if selector.is_none() {
        e.required("spec.selector", "");
    }
    e.non_negative("spec.replicas", int_of(spec, "replicas"));
    let Some(template) = get(spec, "template") else {
        e.required("spec.template", "");
        return;
    };
    let template_labels = obj_of(get(Some(template), "metadata"), "labels");
    if let Some(selector) = selector {
        let as_label_selector = Value::Object(Map::from_iter([(
            "matchLabels".to_string(),
            Value::Object(selector.clone()),
        )]));
        if !selector_matches(Some(&as_label_selector), template_labels) {
            e.invalid(
                "spec.template.metadata.labels",
                &go_map(template_labels),
                "selector does not match labels in spec.template",
            );
        }
    }
    workload_template(e, spec, "ReplicationController", &PodCtx::default());
}

fn stateful_set(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    if let Some(p) = str_opt(spec, "podManagementPolicy").filter(|p| !p.is_empty())
        && p != "OrderedReady"
        && p != "Parallel"
    {
        e.invalid_s(
            "spec.podManagementPolicy",
            p,
            "must be 'OrderedReady' or 'Parallel'",
        );
    }
    if let Some(us) = get(spec, "updateStrategy") {
        let us = Some(us);
        let rolling = get(us, "rollingUpdate");
        let up = "spec.updateStrategy";
        match str_opt(us, "type").filter(|t| !t.is_empty()).unwrap_or("RollingUpdate") {
            "OnDelete" => {
                if let Some(r) = rolling {
                    e.invalid(
                        &child(up, "rollingUpdate"),
                        &compact(r),
                        "only allowed for updateStrategy 'RollingUpdate'",
                    );
                }
            }
            "RollingUpdate" => {
                let rp = child(up, "rollingUpdate");
                e.non_negative(&child(&rp, "partition"), int_of(rolling, "partition"));
                if let Some(mu) = get(rolling, "maxUnavailable") {
                    let mp = child(&rp, "maxUnavailable");
                    int_or_percent(e, Some(mu), &mp);
                    if int_or_percent_value(Some(mu)) == 0 {
                        e.invalid(&mp, &go_int_or_string(mu), "cannot be 0");
                    }
                    not_more_than_100_percent(e, Some(mu), &mp);
                }
            }
            other => e.invalid(
                up,
                &format!(
                    "apps.StatefulSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateStatefulSetStrategy)(nil)}}",
                    q(other)
                ),
                "must be 'RollingUpdate' or 'OnDelete'",
            ),
        }
    }
    if let Some(pol) = get(spec, "persistentVolumeClaimRetentionPolicy") {
        for f in ["whenDeleted", "whenScaled"] {
            if let Some(v) = str_opt(Some(pol), f)
                && v != "Retain"
                && v != "Delete"
            {
                e.not_supported(
                    &child("spec.persistentVolumeClaimRetentionPolicy", f),
                    v,
                    &["Retain", "Delete"],
                );
            }
        }
    }
    e.non_negative("spec.replicas", int_of(spec, "replicas"));
    e.non_negative("spec.minReadySeconds", int_of(spec, "minReadySeconds"));
    e.non_negative(
        "spec.ordinals.start",
        int_of(get(spec, "ordinals"), "start"),
    );
    workload_selector(e, spec, "statefulset", true);
    // Upstream skips PodSpec validation for StatefulSets because volumeClaimTemplates would look
    // like undeclared volumes; declaring them lets the template be checked like the others.
    let ctx = PodCtx {
        is_pod: false,
        create: false,
        extra_pvc_volumes: arr_of(spec, "volumeClaimTemplates")
            .iter()
            .map(|t| str_of(get(Some(t), "metadata"), "name").to_string())
            .filter(|n| !n.is_empty())
            .collect(),
    };
    workload_template(e, spec, "StatefulSet", &ctx);

    if let Some(old) = old {
        let strip = |v: Option<&Value>| {
            let mut s = normalize(v.unwrap_or(&Value::Null));
            if let Some(m) = s.as_object_mut() {
                for f in [
                    "replicas",
                    "ordinals",
                    "template",
                    "updateStrategy",
                    "persistentVolumeClaimRetentionPolicy",
                    "minReadySeconds",
                ] {
                    m.remove(f);
                }
                // Defaults, so a stored (defaulted) spec equals the one a client resends.
                let defaults: [(&str, Value); 2] = [
                    ("podManagementPolicy", Value::from("OrderedReady")),
                    ("revisionHistoryLimit", Value::from(10)),
                ];
                for (k, d) in defaults {
                    m.entry(k.to_string()).or_insert(d);
                }
                if let Some(Value::Array(ts)) = m.get_mut("volumeClaimTemplates") {
                    for t in ts.iter_mut().filter_map(Value::as_object_mut) {
                        t.remove("status");
                        t.remove("apiVersion");
                        t.remove("kind");
                        if let Some(Value::Object(ts)) = t.get_mut("spec") {
                            ts.entry("volumeMode".to_string())
                                .or_insert_with(|| Value::from("Filesystem"));
                        }
                    }
                }
            }
            normalize(&s)
        };
        if strip(spec) != strip(get(Some(old), "spec")) {
            e.forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            );
        }
    }
}

fn daemon_set(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let spec = get(obj, "spec");
    // Upstream does not require the selector here: a missing one matches nothing, which is
    // reported as the template-labels mismatch.
    workload_selector(e, spec, "daemonset", false);
    workload_template(e, spec, "DaemonSet", &PodCtx::default());
    e.non_negative("spec.minReadySeconds", int_of(spec, "minReadySeconds"));
    e.non_negative(
        "spec.revisionHistoryLimit",
        int_of(spec, "revisionHistoryLimit"),
    );
    if let Some(us) = get(spec, "updateStrategy") {
        let us = Some(us);
        let up = "spec.updateStrategy";
        match str_opt(us, "type")
            .filter(|t| !t.is_empty())
            .unwrap_or("RollingUpdate")
        {
            "OnDelete" => {}
            "RollingUpdate" => {
                // Absent values default to maxUnavailable=1, maxSurge=0.
                let rolling = get(us, "rollingUpdate");
                let rp = child(up, "rollingUpdate");
                let mu = get(rolling, "maxUnavailable");
                let ms = get(rolling, "maxSurge");
                int_or_percent(e, mu, &child(&rp, "maxUnavailable"));
                int_or_percent(e, ms, &child(&rp, "maxSurge"));
                not_more_than_100_percent(e, mu, &child(&rp, "maxUnavailable"));
                not_more_than_100_percent(e, ms, &child(&rp, "maxSurge"));
                let mu_v = if mu.is_some() {
                    int_or_percent_value(mu)
                } else {
                    1
                };
                let ms_v = int_or_percent_value(ms);
                if mu_v != 0 && ms_v != 0 {
                    e.invalid(
                        &child(&rp, "maxSurge"),
                        &go_int_or_string(ms.unwrap_or(&Value::from(0))),
                        "may not be set when maxUnavailable is non-zero",
                    );
                } else if mu_v == 0 && ms_v == 0 {
                    e.required(
                        &child(&rp, "maxUnavailable"),
                        "cannot be 0 when maxSurge is 0",
                    );
                }
            }
            other => {
                let rendered = format!(
                    "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}}",
                    q(other)
                );
                e.push(
                    CauseReason::NotSupported,
                    up,
                    Some(&rendered),
                    "supported values: \"RollingUpdate\", \"OnDelete\"",
                );
            }
        }
    }
    selector_immutable(e, obj, old);
}

/// `ValidateControllerRevisionCreate`/`Update`: data is required and, once written, fixed (a
/// revision is a snapshot; only its revision number moves, on rollback).
fn controller_revision(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    if get(obj, "data").is_none_or(Value::is_null) {
        e.required("data", "data is mandatory");
    }
    e.non_negative("revision", int_of(obj, "revision"));
    if let Some(old) = old
        && get(obj, "data").map(normalize) != get(Some(old), "data").map(normalize)
    {
        e.invalid(
            "data",
            &compact(get(obj, "data").unwrap_or(&Value::Null)),
            "field is immutable",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// batch/v1
// ---------------------------------------------------------------------------------------------

/// `validateJobSpec` (shared by Job and CronJob's jobTemplate), rooted at `p`.
fn job_spec(e: &mut Errs, spec: Option<&Value>, p: &str) {
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

fn job(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
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

fn cron_job(e: &mut Errs, obj: Option<&Value>, is_update: bool) {
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

fn time_zone(e: &mut Errs, tz: &str) {
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
fn parse_cron(spec: &str) -> Result<(), String> {
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

fn cron_range(expr: &str, min: i64, max: i64, names: &[&str], base: i64) -> Result<(), String> {
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

fn must_parse_int(s: &str) -> Result<i64, String> {
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
fn parse_go_duration(s: &str) -> Result<(), String> {
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

// ---------------------------------------------------------------------------------------------
// networking.k8s.io/v1, discovery.k8s.io/v1
// ---------------------------------------------------------------------------------------------

fn network_policy(e: &mut Errs, obj: Option<&Value>) {
    let spec = get(obj, "spec");
    label_selector(e, get(spec, "podSelector"), "spec.podSelector");
    for (dir, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in arr_of(spec, dir).iter().enumerate() {
            let rp = idx(&child("spec", dir), i);
            let rule = Some(rule);
            for (j, port) in arr_of(rule, "ports").iter().enumerate() {
                network_policy_port(e, Some(port), &idx(&child(&rp, "ports"), j));
            }
            for (j, peer) in arr_of(rule, peers).iter().enumerate() {
                network_policy_peer(e, Some(peer), &idx(&child(&rp, peers), j));
            }
        }
    }
    let types = strings_of(spec, "policyTypes");
    if types.len() > 2 {
        e.invalid(
            "spec.policyTypes",
            &go_strings(get(spec, "policyTypes")),
            "may not specify more than two policyTypes",
        );
        return;
    }
    for (i, t) in types.iter().enumerate() {
        if *t != "Ingress" && *t != "Egress" {
            e.not_supported(&idx("spec.policyTypes", i), t, &["Ingress", "Egress"]);
        }
    }
}

fn network_policy_port(e: &mut Errs, port: Option<&Value>, pp: &str) {
    if let Some(proto) = str_opt(port, "protocol")
        && !matches!(proto, "TCP" | "UDP" | "SCTP")
    {
        e.not_supported(&child(pp, "protocol"), proto, &["TCP", "UDP", "SCTP"]);
    }
    let end = int_of(port, "endPort");
    match get(port, "port") {
        Some(Value::String(s)) => {
            if let Some(end) = end {
                e.invalid_i(
                    &child(pp, "endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                );
            }
            for m in is_valid_port_name(s) {
                e.invalid_s(&child(pp, "port"), s, &m);
            }
        }
        Some(v) => {
            let n = v.as_i64().unwrap_or(0);
            for m in is_valid_port_num(n) {
                e.invalid_i(&child(pp, "port"), n, &m);
            }
            if let Some(end) = end {
                if end < n {
                    e.invalid_i(
                        &child(pp, "endPort"),
                        n,
                        "must be greater than or equal to `port`",
                    );
                }
                for m in is_valid_port_num(end) {
                    e.invalid_i(&child(pp, "endPort"), end, &m);
                }
            }
        }
        None => {
            if let Some(end) = end {
                e.invalid_i(
                    &child(pp, "endPort"),
                    end,
                    "may not be specified when `port` is not specified",
                );
            }
        }
    }
}

fn network_policy_peer(e: &mut Errs, peer: Option<&Value>, pp: &str) {
    let mut n = 0;
    for f in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = get(peer, f) {
            n += 1;
            label_selector(e, Some(sel), &child(pp, f));
        }
    }
    if let Some(block) = get(peer, "ipBlock") {
        n += 1;
        let bp = child(pp, "ipBlock");
        let cidr = str_of(Some(block), "cidr");
        if cidr.is_empty() {
            e.required(&child(&bp, "cidr"), "");
        } else if let Some(net) = parse_cidr(cidr) {
            for (i, ex) in strings_of(Some(block), "except").iter().enumerate() {
                let ep = idx(&child(&bp, "except"), i);
                match parse_cidr(ex) {
                    None => e.invalid_s(&ep, ex, CIDR_ERR),
                    Some(exc) => {
                        if exc.v6 != net.v6 || !net.contains(exc.bits) || net.prefix >= exc.prefix {
                            e.invalid_s(&ep, ex, "must be a strict subset of `cidr`");
                        }
                    }
                }
            }
        } else {
            e.invalid_s(&child(&bp, "cidr"), cidr, CIDR_ERR);
        }
    }
    if n == 0 {
        e.required(pp, "must specify a peer");
    } else if n > 1 && get(peer, "ipBlock").is_some() {
        e.forbidden(pp, "may not specify both ipBlock and another peer");
    }
}

fn endpoint_slice(e: &mut Errs, obj: Option<&Value>, old: Option<&Value>) {
    let addr_type = str_of(obj, "addressType");
    match old {
        None => {
            if addr_type.is_empty() {
                e.required("addressType", "");
            } else if !matches!(addr_type, "IPv4" | "IPv6" | "FQDN") {
                e.not_supported("addressType", addr_type, &["FQDN", "IPv4", "IPv6"]);
            }
        }
        Some(o) => {
            if addr_type != str_of(Some(o), "addressType") {
                e.invalid_s("addressType", addr_type, IMMUTABLE);
            }
        }
    }
    let eps = arr_of(obj, "endpoints");
    if eps.len() > 1000 {
        e.too_many("endpoints", eps.len(), 1000);
    }
    for (i, ep) in eps.iter().enumerate() {
        let p = idx("endpoints", i);
        let ep = Some(ep);
        let ap = child(&p, "addresses");
        let addrs = strings_of(ep, "addresses");
        if addrs.is_empty() {
            e.required(&ap, "must contain at least 1 address");
        } else if addrs.len() > 100 {
            e.too_many(&ap, addrs.len(), 100);
        }
        for (j, a) in addrs.iter().enumerate() {
            let aip = idx(&ap, j);
            match addr_type {
                "IPv4" | "IPv6" => {
                    let ok = match parse_ip(a) {
                        Some(IpAddr::V4(_)) => addr_type == "IPv4",
                        Some(IpAddr::V6(_)) => addr_type == "IPv6",
                        None => false,
                    };
                    if ok {
                        validate_non_special_ip(e, &aip, a);
                    } else {
                        e.invalid_s(&aip, a, &format!("must be a valid {addr_type} address"));
                    }
                }
                "FQDN" => fqdn(e, a, &aip),
                _ => {}
            }
        }
        if let Some(n) = str_opt(ep, "nodeName") {
            for m in is_dns1123_subdomain(n) {
                e.invalid_s(&child(&p, "nodeName"), n, &m);
            }
        }
        let topo = obj_of(ep, "deprecatedTopology");
        if topo.is_some_and(|t| t.len() > 16) {
            e.too_many(
                &child(&p, "deprecatedTopology"),
                topo.map_or(0, Map::len),
                16,
            );
        }
        validate_labels(e, topo, &child(&p, "deprecatedTopology"));
        if let Some(h) = str_opt(ep, "hostname") {
            for m in is_dns1123_label(h) {
                e.invalid_s(&child(&p, "hostname"), h, &m);
            }
        }
    }
    let ports = arr_of(obj, "ports");
    if ports.len() > 20000 {
        e.too_many("ports", ports.len(), 20000);
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = idx("ports", i);
        let port = Some(port);
        let name = str_of(port, "name");
        if !name.is_empty() {
            for m in is_dns1123_label(name) {
                e.invalid_s(&child(&pp, "name"), name, &m);
            }
        }
        if !names.insert(name) {
            e.duplicate(&child(&pp, "name"), &q(name));
        }
        protocol(e, port, &pp);
        if let Some(n) = int_of(port, "port") {
            for m in is_valid_port_num(n) {
                e.invalid_i(&child(&pp, "port"), n, &m);
            }
        }
        if let Some(ap) = str_opt(port, "appProtocol") {
            for m in is_qualified_name(ap) {
                e.invalid_s(&child(&pp, "appProtocol"), ap, &m);
            }
        }
    }
}

/// `IsFullyQualifiedDomainName`.
fn fqdn(e: &mut Errs, name: &str, path: &str) {
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = is_dns1123_subdomain(name);
    if !msgs.is_empty() {
        e.invalid_s(path, name, &msgs.join(","));
        return;
    }
    if name.split('.').count() < 2 {
        e.invalid_s(
            path,
            name,
            "should be a domain with at least two segments separated by dots",
        );
        return;
    }
    for label in name.split('.') {
        let msgs = is_dns1123_label(label);
        if !msgs.is_empty() {
            e.invalid_s(path, label, &msgs.join(","));
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (project rule).
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "web",
                            "image": "nginx:1.27",
                            "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                            "env": [{"name": "MODE", "value": "prod"}],
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}}
                        }],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            }
        })
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 8080}]}]}
        })
    }

    fn service() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
        })
    }

    /// Sets the value at a JSON pointer, creating nothing: the parent must exist.
    fn set(v: &mut Value, pointer: &str, new: Value) {
        let (parent, last) = pointer.rsplit_once('/').unwrap();
        match v.pointer_mut(parent).unwrap() {
            Value::Object(m) => {
                m.insert(last.to_string(), new);
            }
            Value::Array(a) => a[last.parse::<usize>().unwrap()] = new,
            other => panic!("cannot set into {other}"),
        }
    }

    fn remove(v: &mut Value, pointer: &str) {
        let (parent, last) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(last);
    }

    fn check(api_version: &str, kind: &str, obj: &Value) -> Vec<Cause> {
        validate(api_version, kind, obj, None)
    }

    /// Asserts a cause with this reason and field exists; returns its message.
    fn expect(causes: &[Cause], reason: CauseReason, field: &str) -> String {
        causes
            .iter()
            .find(|c| c.reason == reason && c.field == field)
            .unwrap_or_else(|| panic!("no {reason:?} at {field} in {causes:#?}"))
            .message
            .clone()
    }

    fn assert_valid(api_version: &str, kind: &str, obj: &Value) {
        assert_eq!(decode_check(api_version, kind, obj), Ok(()));
        assert_eq!(unknown_fields(api_version, kind, obj), Vec::<String>::new());
        let causes = check(api_version, kind, obj);
        assert!(causes.is_empty(), "{kind} should be valid: {causes:#?}");
    }

    // --- entry points -------------------------------------------------------------------------

    #[test]
    fn valid_deployment_passes() {
        assert_valid("apps/v1", "Deployment", &deployment());
    }

    #[test]
    fn valid_objects_of_every_kind_pass() {
        let cases = [
            ("v1", "Pod", pod()),
            ("v1", "Service", service()),
            (
                "v1",
                "Service",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "default"},
                       "spec": {"clusterIP": "None", "selector": {"app": "db"}}}),
            ),
            (
                "v1",
                "Service",
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "default"},
                       "spec": {"type": "ExternalName", "externalName": "example.com."}}),
            ),
            (
                "v1",
                "ConfigMap",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
                       "data": {"app.conf": "x=1", "KEY_NAME": "v"}}),
            ),
            (
                "v1",
                "Secret",
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                       "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}}),
            ),
            (
                "v1",
                "ServiceAccount",
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder", "namespace": "ci"}}),
            ),
            (
                "v1",
                "Namespace",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}, "spec": {"finalizers": ["kubernetes"]}}),
            ),
            (
                "v1",
                "Node",
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1.example"},
                       "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:1::/64"],
                                "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
            ),
            (
                "v1",
                "Event",
                json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.17a", "namespace": "default"},
                       "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Started"}),
            ),
            (
                "v1",
                "Endpoints",
                json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
                       "subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 8080}]}]}),
            ),
            (
                "v1",
                "Binding",
                json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "namespace": "default"},
                       "target": {"kind": "Node", "name": "node-1"}}),
            ),
            (
                "coordination.k8s.io/v1",
                "Lease",
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
                       "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}),
            ),
            (
                "apps/v1",
                "StatefulSet",
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default"},
                       "spec": {"selector": {"matchLabels": {"app": "db"}},
                                "template": {"metadata": {"labels": {"app": "db"}},
                                             "spec": {"containers": [{"name": "db", "image": "postgres:16",
                                                                      "volumeMounts": [{"name": "pgdata", "mountPath": "/var/lib/postgresql"}]}]}},
                                "volumeClaimTemplates": [{"metadata": {"name": "pgdata"},
                                                          "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
            ),
            (
                "apps/v1",
                "DaemonSet",
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "kube-system"},
                       "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["agent"]}]},
                                "template": {"metadata": {"labels": {"app": "agent"}},
                                             "spec": {"hostNetwork": true, "tolerations": [{"operator": "Exists"}],
                                                      "containers": [{"name": "agent", "image": "agent:v1"}]}}}}),
            ),
            (
                "apps/v1",
                "ReplicaSet",
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-5d", "namespace": "default"},
                       "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}),
            ),
            (
                "batch/v1",
                "Job",
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
                       "spec": {"backoffLimit": 4, "template": {"spec": {"restartPolicy": "Never",
                                "containers": [{"name": "pi", "image": "perl", "command": ["perl", "-e", "print 1"]}]}}}}),
            ),
            (
                "batch/v1",
                "CronJob",
                json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello", "namespace": "default"},
                       "spec": {"schedule": "*/5 0-6 * jan-jun MON-FRI", "concurrencyPolicy": "Forbid",
                                "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                                                "containers": [{"name": "hello", "image": "busybox"}]}}}}}}),
            ),
            (
                "networking.k8s.io/v1",
                "NetworkPolicy",
                json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": "default"},
                       "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                                "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                                             "ports": [{"protocol": "TCP", "port": 80, "endPort": 90}]}]}}),
            ),
            (
                "discovery.k8s.io/v1",
                "EndpointSlice",
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-abc", "namespace": "default"},
                       "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.2.3"], "conditions": {"ready": true}}],
                       "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
            ),
            (
                "autoscaling/v1",
                "Scale",
                json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web", "namespace": "default"},
                       "spec": {"replicas": 5}}),
            ),
        ];
        for (api_version, kind, obj) in cases {
            assert_valid(api_version, kind, &obj);
        }
    }

    #[test]
    fn cause_reason_strings_match_upstream() {
        assert_eq!(CauseReason::Required.as_str(), "FieldValueRequired");
        assert_eq!(CauseReason::Invalid.as_str(), "FieldValueInvalid");
        assert_eq!(CauseReason::NotSupported.as_str(), "FieldValueNotSupported");
        assert_eq!(CauseReason::Duplicate.as_str(), "FieldValueDuplicate");
        assert_eq!(CauseReason::TooLong.as_str(), "FieldValueTooLong");
        assert_eq!(CauseReason::Forbidden.as_str(), "FieldValueForbidden");
        assert_eq!(CauseReason::TypeInvalid.as_str(), "FieldValueTypeInvalid");
        assert_eq!(CauseReason::NotFound.as_str(), "FieldValueNotFound");
        assert_eq!(CauseReason::TooMany.as_str(), "FieldValueTooMany");
        assert_eq!(CauseReason::Internal.as_str(), "InternalError");
    }

    #[test]
    fn decode_check_reports_type_errors_with_the_field() {
        let mut d = deployment();
        set(&mut d, "/spec/replicas", json!("three"));
        let err = decode_check("apps/v1", "Deployment", &d).unwrap_err();
        assert_eq!(
            err,
            "json: cannot unmarshal string into Go struct field spec.replicas of type int32"
        );
        let mut p = pod();
        set(
            &mut p,
            "/spec/containers/0/ports/0/containerPort",
            json!(true),
        );
        let err = decode_check("v1", "Pod", &p).unwrap_err();
        assert!(
            err.contains("spec.containers[0].ports[0].containerPort"),
            "{err}"
        );
    }

    #[test]
    fn decode_check_rejects_unregistered_kinds_and_bad_quantities() {
        assert_eq!(
            decode_check("apps/v1", "Frobnicator", &json!({})),
            Err("no kind \"Frobnicator\" is registered for version \"apps/v1\"".to_string())
        );
        let mut p = pod();
        set(
            &mut p,
            "/spec/containers/0/resources",
            json!({"limits": {"memory": "12 GB"}}),
        );
        let err = decode_check("v1", "Pod", &p).unwrap_err();
        assert!(
            err.contains("quantities must match the regular expression"),
            "{err}"
        );
        assert!(decode_check("v1", "Pod", &json!([1, 2])).is_err());
    }

    #[test]
    fn decode_check_tolerates_missing_required_fields() {
        // Go zero-fills a missing condition lastTransitionTime; so must we.
        let mut s = service();
        set(
            &mut s,
            "/status",
            json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ok", "message": ""}]}),
        );
        assert_eq!(decode_check("v1", "Service", &s), Ok(()));
        assert!(unknown_fields("v1", "Service", &s).is_empty());
    }

    #[test]
    fn unknown_fields_finds_typos_only() {
        let mut d = deployment();
        set(&mut d, "/spec/replicass", json!(3));
        set(
            &mut d,
            "/spec/template/spec/containers/0/imagee",
            json!("nginx"),
        );
        // Known fields with empty or null values are not unknown.
        set(&mut d, "/metadata/annotations", json!({}));
        set(&mut d, "/metadata/creationTimestamp", Value::Null);
        set(&mut d, "/spec/template/spec/containers/0/env", json!([]));
        set(&mut d, "/spec/paused", Value::Null);
        set(&mut d, "/status", json!({}));
        let mut unknown = unknown_fields("apps/v1", "Deployment", &d);
        unknown.sort();
        assert_eq!(
            unknown,
            vec![
                "spec.replicass".to_string(),
                "spec.template.spec.containers[0].imagee".to_string()
            ]
        );
        assert!(unknown_fields("apps/v1", "Deployment", &deployment()).is_empty());
        set(&mut d, "/metadata/labels", json!({}));
        assert!(
            !unknown_fields("apps/v1", "Deployment", &d).contains(&"metadata.labels".to_string())
        );
    }

    #[test]
    fn invalid_message_aggregates_like_upstream() {
        let mut d = deployment();
        set(&mut d, "/spec/replicas", json!(-1));
        let causes = check("apps/v1", "Deployment", &d);
        assert_eq!(
            invalid_message("apps/v1", "Deployment", "web", &causes),
            "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "default"}, "spec": {}});
        let causes = check("v1", "Pod", &p);
        assert_eq!(
            invalid_message("v1", "Pod", "", &causes),
            "Pod \"\" is invalid: [metadata.name: Required value: name or generateName is required, spec.containers: Required value]"
        );
    }

    // --- ObjectMeta ---------------------------------------------------------------------------

    #[test]
    fn name_is_required_and_must_be_a_subdomain() {
        let mut d = deployment();
        remove(&mut d, "/metadata/name");
        let c = check("apps/v1", "Deployment", &d);
        assert_eq!(
            expect(&c, CauseReason::Required, "metadata.name"),
            "Required value: name or generateName is required"
        );
        set(&mut d, "/metadata/name", json!("Web_1"));
        let c = check("apps/v1", "Deployment", &d);
        assert_eq!(
            format!("{}", c[0]),
            r#"metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
        );
        set(&mut d, "/metadata/name", json!("a".repeat(254)));
        let msg = expect(
            &check("apps/v1", "Deployment", &d),
            CauseReason::Invalid,
            "metadata.name",
        );
        assert!(
            msg.ends_with("must be no more than 253 characters"),
            "{msg}"
        );
    }

    #[test]
    fn generate_name_is_checked_as_a_prefix() {
        let mut d = deployment();
        set(&mut d, "/metadata/generateName", json!("web-"));
        assert!(check("apps/v1", "Deployment", &d).is_empty());
        set(&mut d, "/metadata/generateName", json!("Web_"));
        expect(
            &check("apps/v1", "Deployment", &d),
            CauseReason::Invalid,
            "metadata.generateName",
        );
    }

    #[test]
    fn namespace_and_service_names_are_labels() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team.a"}});
        let msg = expect(
            &check("v1", "Namespace", &ns),
            CauseReason::Invalid,
            "metadata.name",
        );
        assert_eq!(msg, "Invalid value: \"team.a\": must not contain dots");
        let mut s = service();
        set(&mut s, "/metadata/name", json!("1web"));
        let msg = expect(
            &check("v1", "Service", &s),
            CauseReason::Invalid,
            "metadata.name",
        );
        assert!(msg.contains("DNS-1035 label"), "{msg}");
        assert!(msg.contains("(e.g. 'my-name',  or 'abc-123', "), "{msg}");
    }

    #[test]
    fn namespace_field_is_required_and_a_label() {
        let mut p = pod();
        remove(&mut p, "/metadata/namespace");
        expect(
            &check("v1", "Pod", &p),
            CauseReason::Required,
            "metadata.namespace",
        );
        set(&mut p, "/metadata/namespace", json!("Team_A"));
        expect(
            &check("v1", "Pod", &p),
            CauseReason::Invalid,
            "metadata.namespace",
        );
        // Cluster-scoped kinds ignore it (the registry clears it).
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "namespace": "x"}});
        assert!(check("v1", "Namespace", &ns).is_empty());
    }

    #[test]
    fn path_segment_rules_apply_to_kinds_without_dns_names() {
        let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "a/b", "namespace": "default"},
                        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}});
        let msg = expect(
            &check("v1", "Event", &ev),
            CauseReason::Invalid,
            "metadata.name",
        );
        assert_eq!(msg, "Invalid value: \"a/b\": may not contain '/'");
        let mut ev2 = ev.clone();
        set(&mut ev2, "/metadata/name", json!(".."));
        let msg = expect(
            &check("v1", "Event", &ev2),
            CauseReason::Invalid,
            "metadata.name",
        );
        assert_eq!(msg, "Invalid value: \"..\": may not be '..'");
    }

    #[test]
    fn labels_and_annotations_are_validated() {
        let mut d = deployment();
        set(
            &mut d,
            "/metadata/labels",
            json!({"bad key!": "x", "ok": "v".repeat(64)}),
        );
        let c = check("apps/v1", "Deployment", &d);
        let bad_key = c
            .iter()
            .filter(|c| c.field == "metadata.labels")
            .map(|c| c.message.clone())
            .collect::<Vec<_>>();
        assert!(
            bad_key.iter().any(|m| m.starts_with(
                "Invalid value: \"bad key!\": name part must consist of alphanumeric characters"
            )),
            "{bad_key:?}"
        );
        assert!(
            bad_key
                .iter()
                .any(|m| m.ends_with("must be no more than 63 characters")),
            "{bad_key:?}"
        );

        let mut d = deployment();
        set(
            &mut d,
            "/metadata/annotations",
            json!({"example.com/": "x"}),
        );
        expect(
            &check("apps/v1", "Deployment", &d),
            CauseReason::Invalid,
            "metadata.annotations",
        );
        set(
            &mut d,
            "/metadata/annotations",
            json!({"big": "x".repeat(256 * 1024)}),
        );
        let msg = expect(
            &check("apps/v1", "Deployment", &d),
            CauseReason::TooLong,
            "metadata.annotations",
        );
        assert_eq!(msg, "Too long: may not be more than 262144 bytes");
    }

    #[test]
    fn owner_references_and_finalizers_are_validated() {
        let mut d = deployment();
        set(
            &mut d,
            "/metadata/ownerReferences",
            json!([{"apiVersion": "apps/", "kind": "", "name": "x", "uid": "1"}]),
        );
        let c = check("apps/v1", "Deployment", &d);
        expect(
            &c,
            CauseReason::Invalid,
            "metadata.ownerReferences.apiVersion",
        );
        expect(&c, CauseReason::Invalid, "metadata.ownerReferences.kind");
        let mut d = deployment();
        set(&mut d, "/metadata/finalizers", json!(["cleanup"]));
        let msg = expect(
            &check("apps/v1", "Deployment", &d),
            CauseReason::Invalid,
            "metadata.finalizers[0]",
        );
        assert!(msg.contains("neither a standard finalizer name nor is it fully qualified"));
    }

    #[test]
    fn metadata_identity_is_immutable_on_update() {
        let old = deployment();
        let mut new = deployment();
        set(&mut new, "/metadata/name", json!("web2"));
        set(&mut new, "/metadata/uid", json!("u-2"));
        let c = validate("apps/v1", "Deployment", &new, Some(&old));
        assert_eq!(
            expect(&c, CauseReason::Invalid, "metadata.name"),
            "Invalid value: \"web2\": field is immutable"
        );
        expect(&c, CauseReason::Invalid, "metadata.uid");
    }

    // --- Pod ----------------------------------------------------------------------------------

    #[test]
    fn pod_needs_containers_with_unique_label_names_and_images() {
        let mut p = pod();
        set(&mut p, "/spec/containers", json!([]));
        assert_eq!(
            expect(
                &check("v1", "Pod", &p),
                CauseReason::Required,
                "spec.containers"
            ),
            "Required value"
        );
        set(
            &mut p,
            "/spec/containers",
            json!([{"name": "app", "image": "a"}, {"name": "app", "image": "b"}, {"name": "Bad_Name"}]),
        );
        let c = check("v1", "Pod", &p);
        assert_eq!(
            expect(&c, CauseReason::Duplicate, "spec.containers[1].name"),
            "Duplicate value: \"app\""
        );
        expect(&c, CauseReason::Invalid, "spec.containers[2].name");
        expect(&c, CauseReason::Required, "spec.containers[2].image");
    }

    #[test]
    fn pod_ports_are_checked() {
        let mut p = pod();
        set(
            &mut p,
            "/spec/containers/0/ports",
            json!([
                {"containerPort": 70000, "protocol": "HTTP", "name": "a-very-long-port-name"},
                {"containerPort": 81, "name": "web"},
                {"containerPort": 82, "name": "web", "hostPort": 0},
                {"name": "nope"}
            ]),
        );
        let c = check("v1", "Pod", &p);
        assert_eq!(
            expect(
                &c,
                CauseReason::Invalid,
                "spec.containers[0].ports[0].containerPort"
            ),
            "Invalid value: 70000: must be between 1 and 65535, inclusive"
        );
        assert_eq!(
            expect(
                &c,
                CauseReason::NotSupported,
                "spec.containers[0].ports[0].protocol"
            ),
            "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
        );
        assert_eq!(
            expect(&c, CauseReason::Invalid, "spec.containers[0].ports[0].name"),
            "Invalid value: \"a-very-long-port-name\": must be no more than 15 characters"
        );
        expect(
            &c,
            CauseReason::Duplicate,
            "spec.containers[0].ports[2].name",
        );
        expect(
            &c,
            CauseReason::Required,
            "spec.containers[0].ports[3].containerPort",
        );
    }

    #[test]
    fn pod_host_ports_must_not_collide() {
        let mut p = pod();
        set(
            &mut p,
            "/spec/containers",
            json!([
                {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]},
                {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 8080}]}
            ]),
        );
        let msg = expect(
            &check("v1", "Pod", &p),
            CauseReason::Duplicate,
            "spec.containers[1].ports[0].hostPort",
        );
        assert_eq!(msg, "Duplicate value: \"TCP//8080\"");
    }

    #[test]
    fn env_var_names_follow_relaxed_rules() {
        let mut p = pod();
        set(
            &mut p,
            "/spec/containers/0/env",
            json!([{"name": "1st.var-OK", "value": "x"}, {"name": "A=B"}, {"name": ""}, {"name": "X", "valueFrom": {}}]),
        );
        let c = check("v1", "Pod", &p);
        assert_eq!(
            expect(&c, CauseReason::Invalid, "spec.containers[0].env[1].name"),
            "Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='"
        );
        expect(&c, CauseReason::Required, "spec.containers[0].env[2].name");
        expect(
            &c,
            CauseReason::Invalid,
            "spec.containers[0].env[3].valueFrom",
        );
        assert!(
            !c.iter()
                .any(|c| c.field == "spec.containers[0].env[0].name")
        );
    }

    #[test]
    fn restart_and_dns_policies_are_enumerations() {
        let mut p = pod();
        set(&mut p, "/spec/restartPolicy", json!("Sometimes"));
        set(&mut p, "/spec/dnsPolicy", json!("Google"));
        let c = check("v1", "Pod", &p);
        assert_eq!(
            expect(&c, CauseReason::NotSupported, "spec.restartPolicy"),
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        expect(&c, CauseReason::NotSupported, "spec.dnsPolicy");
        set(&mut p, "/spec/dnsPolicy", json!("None"));
        expect(
            &check("v1", "Pod", &p),
            CauseReason::Required,
            "spec.dnsConfig",
        );
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let mut p = pod();
        set(
            &mut p,
            "/spec/containers/0/resources",
            json!({"requests": {"cpu": "2", "memory": "1Gi", "example.com/gpu": "1"},
                   "limits": {"cpu": "500m", "memory": "1024Mi", "example.com/gpu": "2", "bogus": "1"}}),
        );
        let c = check("v1", "Pod", &p);
        let req = c
            .iter()
            .filter(|c| c.field == "spec.containers[0].resources.requests")
            .map(|c| c.message.clone())
            .collect::<Vec<_>>();
        assert!(
            req.contains(
                &"Invalid value: \"2\": must be less than or equal to cpu limit of 500m"
                    .to_string()
            ),
            "{req:?}"
        );
        assert!(
            req.contains(
                &"Invalid value: \"1\": must be equal to example.com/gpu limit of 2".to_string()
            ),
            "{req:?}"
        );
        // 1Gi == 1024Mi: no memory complaint.
        assert!(!req.iter().any(|m| m.contains("memory")), "{req:?}");
        expect(
            &c,
            CauseReason::Invalid,
            "spec.containers[0].resources.limits[bogus]",
        );
        let mut p = pod();
        set(
            &mut p,
            "/spec/containers/0/resources",
            json!({"requests": {"cpu": "-1"}}),
        );
        expect(
            &check("v1", "Pod", &p),
            CauseReason::Invalid,
            "spec.containers[0].resources.requests[cpu]",
        );
    }

    #[test]
    fn volumes_are_unique_and_mounts_must_reference_them() {
        let mut p = pod();
        set(
            &mut p,
            "/spec/volumes",
            json!([{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}, {"name": "none"},
                   {"name": "two", "emptyDir": {}, "hostPath": {"path": "/x"}}]),
        );
        set(
            &mut p,
            "/spec/containers/0/volumeMounts",
            json!([{"name": "data", "mountPath": "/d"}, {"name": "missing", "mountPath": "/m"}, {"name": "data", "mountPath": "/d"}]),
        );
        let c = check("v1", "Pod", &p);
        expect(&c, CauseReason::Duplicate, "spec.volumes[1].name");
        assert_eq!(
            expect(&c, CauseReason::Required, "spec.volumes[2]"),
            "Required value: must specify a volume type"
        );
        expect(&c, CauseReason::Forbidden, "spec.volumes[3].hostPath");
        assert_eq!(
            expect(
                &c,
                CauseReason::NotFound,
                "spec.containers[0].volumeMounts[1].name"
            ),
            "Not found: \"missing\""
        );
        expect(
            &c,
            CauseReason::Invalid,
            "spec.containers[0].volumeMounts[2].mountPath",
        );
        assert!(
            !c.iter()
                .any(|c| c.field == "spec.containers[0].volumeMounts[0].name")
        );
    }

    #[test]
    fn probes_tolerations_and_security_context() {
        let mut p = pod();
        set(
            &mut p,
            "/spec/containers/0/livenessProbe",
            json!({"periodSeconds": -1}),
        );
        set(
            &mut p,
            "/spec/tolerations",
            json!([{"key": "k", "operator": "Maybe"}]),
        );
        set(&mut p, "/spec/securityContext", json!({"runAsUser": -5}));
        let c = check("v1", "Pod", &p);
        assert_eq!(
            expect(
                &c,
                CauseReason::Required,
                "spec.containers[0].livenessProbe"
            ),
            "Required value: must specify a handler type"
        );
        expect(
            &c,
            CauseReason::Invalid,
            "spec.containers[0].livenessProbe.periodSeconds",
        );
        expect(
            &c,
            CauseReason::NotSupported,
            "spec.tolerations[0].operator",
        );
        expect(&c, CauseReason::Invalid, "spec.securityContext.runAsUser");
    }

    #[test]
    fn pod_update_may_only_change_images_and_friends() {
        let old = pod();
        let mut new = pod();
        set(&mut new, "/spec/containers/0/image", json!("busybox:1.37"));
        set(&mut new, "/spec/activeDeadlineSeconds", json!(60));
        set(
            &mut new,
            "/spec/tolerations",
            json!([{"key": "k", "operator": "Exists"}]),
        );
        assert_eq!(validate("v1", "Pod", &new, Some(&old)), vec![]);

        // A stored (defaulted) pod versus the same manifest resent: no change.
        let mut stored = pod();
        set(&mut stored, "/spec/dnsPolicy", json!("ClusterFirst"));
        set(
            &mut stored,
            "/spec/containers/0/imagePullPolicy",
            json!("IfNotPresent"),
        );
        set(
            &mut stored,
            "/spec/containers/0/ports/0/protocol",
            json!("TCP"),
        );
        set(
            &mut stored,
            "/spec/containers/0/terminationMessagePath",
            json!("/dev/termination-log"),
        );
        assert_eq!(validate("v1", "Pod", &pod(), Some(&stored)), vec![]);

        let mut new = pod();
        set(
            &mut new,
            "/spec/containers/0/ports/0/containerPort",
            json!(9090),
        );
        let c = validate("v1", "Pod", &new, Some(&old));
        let msg = expect(&c, CauseReason::Forbidden, "spec");
        assert!(
            msg.starts_with(
                "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("spec.containers[0].ports[0].containerPort"),
            "{msg}"
        );

        let mut new = pod();
        set(&mut new, "/spec/containers", json!([]));
        let c = validate("v1", "Pod", &new, Some(&old));
        expect(&c, CauseReason::Forbidden, "spec.containers");

        let mut old2 = pod();
        set(&mut old2, "/spec/activeDeadlineSeconds", json!(30));
        let mut new = pod();
        set(&mut new, "/spec/activeDeadlineSeconds", json!(60));
        let c = validate("v1", "Pod", &new, Some(&old2));
        expect(&c, CauseReason::Invalid, "spec.activeDeadlineSeconds");
    }

    #[test]
    fn pod_create_rejects_ephemeral_containers() {
        let mut p = pod();
        set(
            &mut p,
            "/spec/ephemeralContainers",
            json!([{"name": "debug", "image": "busybox"}]),
        );
        expect(
            &check("v1", "Pod", &p),
            CauseReason::Forbidden,
            "spec.ephemeralContainers",
        );
    }

    // --- apps/v1 ------------------------------------------------------------------------------

    #[test]
    fn deployment_selector_rules() {
        let mut d = deployment();
        remove(&mut d, "/spec/selector");
        let c = check("apps/v1", "Deployment", &d);
        expect(&c, CauseReason::Required, "spec.selector");

        let mut d = deployment();
        set(&mut d, "/spec/selector", json!({}));
        let msg = expect(
            &check("apps/v1", "Deployment", &d),
            CauseReason::Invalid,
            "spec.selector",
        );
        assert_eq!(
            msg,
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
        );

        let mut d = deployment();
        set(
            &mut d,
            "/spec/template/metadata/labels",
            json!({"app": "api"}),
        );
        let msg = expect(
            &check("apps/v1", "Deployment", &d),
            CauseReason::Invalid,
            "spec.template.metadata.labels",
        );
        assert_eq!(
            msg,
            "Invalid value: map[string]string{\"app\":\"api\"}: `selector` does not match template `labels`"
        );
    }

    #[test]
    fn deployment_template_is_validated_as_a_pod_spec() {
        let mut d = deployment();
        remove(&mut d, "/spec/template/spec/containers/0/image");
        set(&mut d, "/spec/template/spec/restartPolicy", json!("Never"));
        let c = check("apps/v1", "Deployment", &d);
        expect(
            &c,
            CauseReason::Required,
            "spec.template.spec.containers[0].image",
        );
        assert_eq!(
            expect(
                &c,
                CauseReason::NotSupported,
                "spec.template.spec.restartPolicy"
            ),
            "Unsupported value: \"Never\": supported values: \"Always\""
        );
    }

    #[test]
    fn deployment_replicas_and_strategy() {
        let mut d = deployment();
        set(&mut d, "/spec/replicas", json!(-1));
        assert_eq!(
            expect(
                &check("apps/v1", "Deployment", &d),
                CauseReason::Invalid,
                "spec.replicas"
            ),
            "Invalid value: -1: must be greater than or equal to 0"
        );
        let mut d = deployment();
        set(&mut d, "/spec/strategy/type", json!("Recreate"));
        let msg = expect(
            &check("apps/v1", "Deployment", &d),
            CauseReason::Forbidden,
            "spec.strategy.rollingUpdate",
        );
        assert_eq!(
            msg,
            "Forbidden: may not be specified when strategy `type` is 'Recreate'"
        );
        set(&mut d, "/spec/strategy", json!({"type": "BlueGreen"}));
        let msg = expect(
            &check("apps/v1", "Deployment", &d),
            CauseReason::NotSupported,
            "spec.strategy",
        );
        assert!(
            msg.ends_with("supported values: \"Recreate\", \"RollingUpdate\""),
            "{msg}"
        );
        set(
            &mut d,
            "/spec/strategy",
            json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
        );
        expect(
            &check("apps/v1", "Deployment", &d),
            CauseReason::Invalid,
            "spec.strategy.rollingUpdate.maxUnavailable",
        );
    }

    #[test]
    fn workload_selectors_are_immutable() {
        let old = deployment();
        let mut new = deployment();
        set(
            &mut new,
            "/spec/selector/matchLabels",
            json!({"app": "web", "tier": "fe"}),
        );
        set(
            &mut new,
            "/spec/template/metadata/labels",
            json!({"app": "web", "tier": "fe"}),
        );
        let c = validate("apps/v1", "Deployment", &new, Some(&old));
        let msg = expect(&c, CauseReason::Invalid, "spec.selector");
        assert!(msg.ends_with(": field is immutable"), "{msg}");
        // Scaling is fine.
        let mut new = deployment();
        set(&mut new, "/spec/replicas", json!(10));
        assert!(validate("apps/v1", "Deployment", &new, Some(&old)).is_empty());
    }

    #[test]
    fn controller_revisions_need_data_that_never_changes() {
        let revision = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": "web-abc", "namespace": "default"},
            "data": {"spec": {"template": {"$patch": "replace"}}}, "revision": 1});
        assert!(check("apps/v1", "ControllerRevision", &revision).is_empty());
        let mut empty = revision.clone();
        empty.as_object_mut().unwrap().remove("data");
        expect(
            &check("apps/v1", "ControllerRevision", &empty),
            CauseReason::Required,
            "data",
        );
        // Rollback renumbers a revision; its data stays.
        let mut renumbered = revision.clone();
        renumbered["revision"] = json!(3);
        assert!(
            validate(
                "apps/v1",
                "ControllerRevision",
                &renumbered,
                Some(&revision)
            )
            .is_empty()
        );
        let mut rewritten = revision.clone();
        rewritten["data"] = json!({"spec": {}});
        let msg = expect(
            &validate("apps/v1", "ControllerRevision", &rewritten, Some(&revision)),
            CauseReason::Invalid,
            "data",
        );
        assert!(msg.ends_with("field is immutable"), "{msg}");
    }

    #[test]
    fn replication_controller_rules() {
        let rc = |selector: Value, labels: Value| {
            json!({"apiVersion": "v1", "kind": "ReplicationController",
                   "metadata": {"name": "web", "namespace": "default"},
                   "spec": {"replicas": 2, "selector": selector,
                            "template": {"metadata": {"labels": labels},
                                         "spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "i"}]}}}})
        };
        let good = rc(
            json!({"app": "web"}),
            json!({"app": "web", "tier": "front"}),
        );
        assert_eq!(check("v1", "ReplicationController", &good), vec![]);

        let mismatch = rc(json!({"app": "web"}), json!({"app": "other"}));
        let causes = check("v1", "ReplicationController", &mismatch);
        let msg = expect(
            &causes,
            CauseReason::Invalid,
            "spec.template.metadata.labels",
        );
        assert_eq!(
            msg,
            "Invalid value: map[string]string{\"app\":\"other\"}: selector does not match labels in spec.template"
        );
        assert_eq!(
            invalid_message("v1", "ReplicationController", "web", &causes),
            "ReplicationController \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: selector does not match labels in spec.template"
        );

        let mut odd = rc(json!({}), json!({"app": "web"}));
        odd["spec"]["replicas"] = json!(-1);
        odd["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let causes = check("v1", "ReplicationController", &odd);
        expect(&causes, CauseReason::Required, "spec.selector");
        expect(&causes, CauseReason::Invalid, "spec.replicas");
        expect(
            &causes,
            CauseReason::NotSupported,
            "spec.template.spec.restartPolicy",
        );

        let mut no_template = rc(json!({"app": "web"}), json!({}));
        no_template["spec"]
            .as_object_mut()
            .unwrap()
            .remove("template");
        expect(
            &check("v1", "ReplicationController", &no_template),
            CauseReason::Required,
            "spec.template",
        );

        // The selector of a ReplicationController may change, unlike a ReplicaSet's.
        let moved = rc(
            json!({"app": "web", "tier": "front"}),
            json!({"app": "web", "tier": "front"}),
        );
        assert_eq!(
            validate("v1", "ReplicationController", &moved, Some(&good)),
            vec![]
        );
    }

    #[test]
    fn replica_set_and_daemon_set_rules() {
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs", "namespace": "default"},
                        "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        expect(
            &check("apps/v1", "ReplicaSet", &rs),
            CauseReason::Required,
            "spec.selector",
        );
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ds", "namespace": "default"},
                        "spec": {"selector": {"matchLabels": {"app": "x"}},
                                 "updateStrategy": {"type": "Sometimes"},
                                 "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}}});
        let c = check("apps/v1", "DaemonSet", &ds);
        expect(
            &c,
            CauseReason::NotSupported,
            "spec.template.spec.restartPolicy",
        );
        expect(&c, CauseReason::NotSupported, "spec.updateStrategy");
    }

    #[test]
    fn stateful_set_rules() {
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default"},
                         "spec": {"podManagementPolicy": "Random", "replicas": -2,
                                  "selector": {"matchLabels": {"app": "db"}},
                                  "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "pg",
                                                "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}}}});
        let c = check("apps/v1", "StatefulSet", &sts);
        assert_eq!(
            expect(&c, CauseReason::Invalid, "spec.podManagementPolicy"),
            "Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"
        );
        expect(&c, CauseReason::Invalid, "spec.replicas");
        expect(
            &c,
            CauseReason::NotFound,
            "spec.template.spec.containers[0].volumeMounts[0].name",
        );
        // serviceName is optional; updating replicas/template is allowed, serviceName is not.
        let mut old = sts.clone();
        set(&mut old, "/spec/podManagementPolicy", json!("Parallel"));
        set(&mut old, "/spec/replicas", json!(1));
        set(
            &mut old,
            "/spec/template/spec/containers/0/volumeMounts",
            json!([]),
        );
        let mut new = old.clone();
        set(&mut new, "/spec/replicas", json!(3));
        set(
            &mut new,
            "/spec/template/spec/containers/0/image",
            json!("pg:17"),
        );
        assert!(validate("apps/v1", "StatefulSet", &new, Some(&old)).is_empty());
        set(&mut new, "/spec/serviceName", json!("db-headless"));
        expect(
            &validate("apps/v1", "StatefulSet", &new, Some(&old)),
            CauseReason::Forbidden,
            "spec",
        );
    }

    // --- batch/v1 -----------------------------------------------------------------------------

    #[test]
    fn job_rules() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "default"},
                         "spec": {"completions": -1, "parallelism": -2, "backoffLimit": -3,
                                  "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let c = check("batch/v1", "Job", &job);
        assert_eq!(
            expect(
                &c,
                CauseReason::Required,
                "spec.template.spec.restartPolicy"
            ),
            "Required value: valid values: \"OnFailure\", \"Never\""
        );
        expect(&c, CauseReason::Invalid, "spec.completions");
        expect(&c, CauseReason::Invalid, "spec.parallelism");
        expect(&c, CauseReason::Invalid, "spec.backoffLimit");
        let mut j2 = job.clone();
        set(
            &mut j2,
            "/spec/template/spec/restartPolicy",
            json!("Always"),
        );
        expect(
            &check("batch/v1", "Job", &j2),
            CauseReason::Required,
            "spec.template.spec.restartPolicy",
        );
    }

    #[test]
    fn job_template_is_immutable() {
        let old = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "default"},
                         "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}});
        let mut new = old.clone();
        set(
            &mut new,
            "/spec/template/spec/containers/0/image",
            json!("i2"),
        );
        expect(
            &validate("batch/v1", "Job", &new, Some(&old)),
            CauseReason::Invalid,
            "spec.template",
        );
        assert!(validate("batch/v1", "Job", &old, Some(&old)).is_empty());
    }

    #[test]
    fn cron_job_rules() {
        let cj = |schedule: Value, policy: &str| {
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "default"},
                   "spec": {"schedule": schedule, "concurrencyPolicy": policy,
                            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}})
        };
        let c = check("batch/v1", "CronJob", &cj(json!(""), "Allow"));
        expect(&c, CauseReason::Required, "spec.schedule");
        let c = check("batch/v1", "CronJob", &cj(json!("* * *"), "Sometimes"));
        assert_eq!(
            expect(&c, CauseReason::Invalid, "spec.schedule"),
            "Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]"
        );
        expect(&c, CauseReason::NotSupported, "spec.concurrencyPolicy");
        let c = check("batch/v1", "CronJob", &cj(json!("0 25 * * *"), "Replace"));
        assert_eq!(
            expect(&c, CauseReason::Invalid, "spec.schedule"),
            "Invalid value: \"0 25 * * *\": end of range (25) above maximum (23): 25"
        );
        let c = check("batch/v1", "CronJob", &cj(json!("@every 5x"), "Replace"));
        expect(&c, CauseReason::Invalid, "spec.schedule");
        assert!(check("batch/v1", "CronJob", &cj(json!("@hourly"), "Replace")).is_empty());
        assert!(check("batch/v1", "CronJob", &cj(json!("@every 1h30m"), "Replace")).is_empty());
        let mut long = cj(json!("0 * * * *"), "Allow");
        set(&mut long, "/metadata/name", json!("c".repeat(53)));
        expect(
            &check("batch/v1", "CronJob", &long),
            CauseReason::Invalid,
            "metadata.name",
        );
    }

    #[test]
    fn cron_job_time_zones_must_exist() {
        let cj = |zone: &str| {
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c", "namespace": "default"},
                   "spec": {"schedule": "0 9 * * *", "timeZone": zone,
                            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}}})
        };
        assert!(check("batch/v1", "CronJob", &cj("Europe/Berlin")).is_empty());
        if jiff::tz::db().is_definitively_empty() {
            return; // Nothing to check names against on this machine.
        }
        assert_eq!(
            expect(
                &check("batch/v1", "CronJob", &cj("Mars/Olympus")),
                CauseReason::Invalid,
                "spec.timeZone"
            ),
            "Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"
        );
    }

    // --- Service, Endpoints -------------------------------------------------------------------

    #[test]
    fn service_ports_rules() {
        let mut s = service();
        set(&mut s, "/spec/ports", json!([]));
        expect(
            &check("v1", "Service", &s),
            CauseReason::Required,
            "spec.ports",
        );
        set(
            &mut s,
            "/spec/ports",
            json!([{"port": 0, "name": "a"}, {"port": 80, "name": "a", "protocol": "ICMP"}, {"port": 80}, {"port": 80, "name": "b", "targetPort": "http_x"}]),
        );
        let c = check("v1", "Service", &s);
        expect(&c, CauseReason::Invalid, "spec.ports[0].port");
        expect(&c, CauseReason::Duplicate, "spec.ports[1].name");
        expect(&c, CauseReason::NotSupported, "spec.ports[1].protocol");
        expect(&c, CauseReason::Required, "spec.ports[2].name");
        expect(&c, CauseReason::Invalid, "spec.ports[3].targetPort");
        expect(&c, CauseReason::Duplicate, "spec.ports[3]");
    }

    #[test]
    fn service_type_cluster_ip_and_selector() {
        let mut s = service();
        set(&mut s, "/spec/type", json!("Internal"));
        set(&mut s, "/spec/clusterIP", json!("10.0.0.300"));
        set(&mut s, "/spec/selector", json!({"app": "bad value!"}));
        let c = check("v1", "Service", &s);
        assert_eq!(
            expect(&c, CauseReason::NotSupported, "spec.type"),
            "Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""
        );
        expect(&c, CauseReason::Invalid, "spec.clusterIPs[0]");
        expect(&c, CauseReason::Invalid, "spec.selector");

        let mut lb = service();
        set(&mut lb, "/spec/type", json!("LoadBalancer"));
        set(&mut lb, "/spec/clusterIP", json!("None"));
        expect(
            &check("v1", "Service", &lb),
            CauseReason::Invalid,
            "spec.clusterIPs[0]",
        );

        let mut cip = service();
        set(&mut cip, "/spec/ports/0/nodePort", json!(30080));
        expect(
            &check("v1", "Service", &cip),
            CauseReason::Forbidden,
            "spec.ports[0].nodePort",
        );
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let mut old = service();
        set(&mut old, "/spec/clusterIP", json!("10.96.0.10"));
        // Omitting it on update keeps the allocated one.
        assert!(validate("v1", "Service", &service(), Some(&old)).is_empty());
        let mut new = service();
        set(&mut new, "/spec/clusterIP", json!("10.96.0.11"));
        let c = validate("v1", "Service", &new, Some(&old));
        expect(&c, CauseReason::Invalid, "spec.clusterIPs[0]");
    }

    #[test]
    fn endpoints_rules() {
        let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "e", "namespace": "default"},
                        "subsets": [{"addresses": [{"ip": "127.0.0.1"}, {"ip": "nope"}]}, {}]});
        let c = check("v1", "Endpoints", &ep);
        expect(&c, CauseReason::Invalid, "subsets[0].addresses[0].ip");
        expect(&c, CauseReason::Invalid, "subsets[0].addresses[1].ip");
        expect(&c, CauseReason::Required, "subsets[1]");
    }

    // --- ConfigMap, Secret ---------------------------------------------------------------------

    #[test]
    fn config_map_keys_and_size() {
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
                            "data": {"bad key": "x", "..": "y"}});
        let c = check("v1", "ConfigMap", &cm);
        let msg = expect(&c, CauseReason::Invalid, "data[bad key]");
        assert!(msg.starts_with("Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"), "{msg}");
        assert_eq!(
            expect(&c, CauseReason::Invalid, "data[..]"),
            "Invalid value: \"..\": must not be '..'"
        );
        set(
            &mut cm,
            "/data",
            json!({"big": "x".repeat(1024 * 1024 + 1)}),
        );
        assert_eq!(
            expect(&check("v1", "ConfigMap", &cm), CauseReason::TooLong, "[]"),
            "Too long: may not be more than 1048576 bytes"
        );
    }

    #[test]
    fn config_maps_and_secrets_marked_immutable_stay_so() {
        let old = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"},
                         "immutable": true, "data": {"a": "1"}});
        let mut new = old.clone();
        set(&mut new, "/data/a", json!("2"));
        let c = validate("v1", "ConfigMap", &new, Some(&old));
        expect(&c, CauseReason::Forbidden, "data");
        set(&mut new, "/immutable", json!(false));
        expect(
            &validate("v1", "ConfigMap", &new, Some(&old)),
            CauseReason::Forbidden,
            "immutable",
        );
    }

    #[test]
    fn secret_keys_types_and_size() {
        let s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                       "type": "kubernetes.io/tls", "data": {"bad/key": "eA=="}});
        let c = check("v1", "Secret", &s);
        expect(&c, CauseReason::Invalid, "data[bad/key]");
        expect(&c, CauseReason::Required, "data[tls.crt]");
        expect(&c, CauseReason::Required, "data[tls.key]");
        // Any other type string is accepted, as upstream does.
        let custom = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                            "type": "example.com/custom", "stringData": {"k": "v"}});
        assert!(check("v1", "Secret", &custom).is_empty());
        let big = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                         "stringData": {"k": "x".repeat(1024 * 1024 + 1)}});
        expect(&check("v1", "Secret", &big), CauseReason::TooLong, "data");
        let mut changed = custom.clone();
        set(&mut changed, "/type", json!("Opaque"));
        expect(
            &validate("v1", "Secret", &changed, Some(&custom)),
            CauseReason::Invalid,
            "type",
        );
    }

    // --- other kinds --------------------------------------------------------------------------

    #[test]
    fn namespace_node_and_service_account_rules() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}, "spec": {"finalizers": ["custom"]}});
        expect(
            &check("v1", "Namespace", &ns),
            CauseReason::Invalid,
            "spec.finalizers",
        );
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "Node_1"},
                          "spec": {"podCIDRs": ["10.0.0.0/33"], "taints": [{"key": "a", "effect": "Sometimes"}, {"key": "b"}]}});
        let c = check("v1", "Node", &node);
        expect(&c, CauseReason::Invalid, "metadata.name");
        expect(&c, CauseReason::Invalid, "spec.podCIDRs[0]");
        expect(&c, CauseReason::NotSupported, "metadata.taints[0].effect");
        expect(&c, CauseReason::Required, "metadata.taints[1].effect");
        let mut old = node.clone();
        set(&mut old, "/metadata/name", json!("node-1"));
        set(&mut old, "/spec", json!({"podCIDRs": ["10.0.0.0/24"]}));
        let mut new = old.clone();
        set(&mut new, "/spec/podCIDRs", json!(["10.0.1.0/24"]));
        expect(
            &validate("v1", "Node", &new, Some(&old)),
            CauseReason::Forbidden,
            "spec.podCIDRs",
        );
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "Bad SA", "namespace": "default"}});
        expect(
            &check("v1", "ServiceAccount", &sa),
            CauseReason::Invalid,
            "metadata.name",
        );
    }

    #[test]
    fn event_lease_binding_and_scale_rules() {
        let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"}});
        expect(
            &check("v1", "Event", &ev),
            CauseReason::Required,
            "involvedObject",
        );
        let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
                        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}});
        expect(
            &check("v1", "Event", &ev),
            CauseReason::Invalid,
            "involvedObject.namespace",
        );
        let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l", "namespace": "default"},
                           "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
        let c = check("coordination.k8s.io/v1", "Lease", &lease);
        expect(&c, CauseReason::Invalid, "spec.leaseDurationSeconds");
        expect(&c, CauseReason::Invalid, "spec.leaseTransitions");
        let b = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "namespace": "default"},
                       "target": {"kind": "Pod"}});
        let c = check("v1", "Binding", &b);
        expect(&c, CauseReason::NotSupported, "target.kind");
        expect(&c, CauseReason::Required, "target.name");
        let sc = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web", "namespace": "default"},
                        "spec": {"replicas": -1}});
        expect(
            &check("autoscaling/v1", "Scale", &sc),
            CauseReason::Invalid,
            "spec.replicas",
        );
    }

    #[test]
    fn endpoint_slice_rules() {
        let es = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "e", "namespace": "default"},
                        "addressType": "IPX", "endpoints": [{"addresses": []}], "ports": [{"name": "a", "protocol": "XTP"}, {"name": "a"}]});
        let c = check("discovery.k8s.io/v1", "EndpointSlice", &es);
        assert_eq!(
            expect(&c, CauseReason::NotSupported, "addressType"),
            "Unsupported value: \"IPX\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""
        );
        expect(&c, CauseReason::Required, "endpoints[0].addresses");
        expect(&c, CauseReason::NotSupported, "ports[0].protocol");
        expect(&c, CauseReason::Duplicate, "ports[1].name");
        let v4 = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "e", "namespace": "default"},
                        "addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}]});
        expect(
            &check("discovery.k8s.io/v1", "EndpointSlice", &v4),
            CauseReason::Invalid,
            "endpoints[0].addresses[0]",
        );
        let mut v6 = v4.clone();
        set(&mut v6, "/addressType", json!("IPv6"));
        expect(
            &validate("discovery.k8s.io/v1", "EndpointSlice", &v6, Some(&v4)),
            CauseReason::Invalid,
            "addressType",
        );
    }

    #[test]
    fn network_policy_rules() {
        let np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "n", "namespace": "default"},
                        "spec": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]},
                                 "policyTypes": ["Ingress", "Sideways"],
                                 "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}, {}]}],
                                 "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["192.168.0.0/24"]}, "podSelector": {}}],
                                             "ports": [{"port": 80, "endPort": 70}]}]}});
        let c = check("networking.k8s.io/v1", "NetworkPolicy", &np);
        assert_eq!(
            expect(&c, CauseReason::NotSupported, "spec.policyTypes[1]"),
            "Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\""
        );
        expect(
            &c,
            CauseReason::Invalid,
            "spec.podSelector.matchExpressions[0].operator",
        );
        expect(
            &c,
            CauseReason::Invalid,
            "spec.ingress[0].from[0].ipBlock.cidr",
        );
        expect(&c, CauseReason::Required, "spec.ingress[0].from[1]");
        expect(
            &c,
            CauseReason::Invalid,
            "spec.egress[0].to[0].ipBlock.except[0]",
        );
        expect(&c, CauseReason::Forbidden, "spec.egress[0].to[0]");
        expect(&c, CauseReason::Invalid, "spec.egress[0].ports[0].endPort");
    }

    #[test]
    fn validate_never_panics_on_odd_shapes() {
        for kind in [
            "Pod",
            "Service",
            "Endpoints",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Namespace",
            "Node",
            "Event",
            "Binding",
            "ReplicationController",
        ] {
            for body in [
                json!({}),
                json!({"spec": 5, "metadata": []}),
                json!({"spec": {"containers": [null, 3]}}),
                json!("x"),
            ] {
                let _ = validate("v1", kind, &body, Some(&json!({"spec": []})));
                let _ = decode_check("v1", kind, &body);
                let _ = unknown_fields("v1", kind, &body);
            }
        }
        for (av, kind) in [
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("apps/v1", "DaemonSet"),
            ("apps/v1", "ReplicaSet"),
            ("batch/v1", "Job"),
            ("batch/v1", "CronJob"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("discovery.k8s.io/v1", "EndpointSlice"),
            ("coordination.k8s.io/v1", "Lease"),
            ("autoscaling/v1", "Scale"),
        ] {
            let body = json!({"spec": {"template": {"spec": {"containers": [{"ports": [{"hostPort": "x"}]}]}},
                                       "schedule": "-5-/x/y", "jobTemplate": 1}});
            let _ = validate(av, kind, &body, Some(&body));
            let _ = decode_check(av, kind, &body);
        }
    }
}
