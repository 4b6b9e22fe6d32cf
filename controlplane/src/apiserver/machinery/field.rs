//! Field errors as upstream's `field.ErrorList`: causes with a reason, a full field path and
//! upstream's message text; path builders; Go-style value formatting for messages; and JSON
//! accessors that read a value of the wrong type as unset (decoding reports type errors).

use std::collections::BTreeSet;
use std::fmt;

use serde_json::{Map, Value, json};

/// A JSON object.
pub(crate) type Obj = Map<String, Value>;

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
    pub(crate) fn label(self) -> &'static str {
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
// Error accumulation, paths and upstream value formatting
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
pub struct Errs(pub Vec<Cause>);

impl Errs {
    /// Builds upstream's `ErrorBody()`: label, then the (pre-formatted) bad value, then detail.
    pub(crate) fn push(
        &mut self,
        reason: CauseReason,
        field: &str,
        value: Option<&str>,
        detail: &str,
    ) {
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
    pub(crate) fn required(&mut self, f: &str, detail: &str) {
        self.push(CauseReason::Required, f, None, detail);
    }
    pub(crate) fn forbidden(&mut self, f: &str, detail: &str) {
        self.push(CauseReason::Forbidden, f, None, detail);
    }
    /// `value` is already formatted the way Go's `%v`/`%q`/`%#v` would print it.
    pub(crate) fn invalid(&mut self, f: &str, value: &str, detail: &str) {
        self.push(CauseReason::Invalid, f, Some(value), detail);
    }
    pub(crate) fn invalid_s(&mut self, f: &str, value: &str, detail: &str) {
        self.invalid(f, &q(value), detail);
    }
    pub(crate) fn invalid_i(&mut self, f: &str, value: i64, detail: &str) {
        self.invalid(f, &value.to_string(), detail);
    }
    pub(crate) fn not_supported(&mut self, f: &str, value: &str, valid: &[&str]) {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| q(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        self.push(CauseReason::NotSupported, f, Some(&q(value)), &detail);
    }
    pub(crate) fn duplicate(&mut self, f: &str, value: &str) {
        self.push(CauseReason::Duplicate, f, Some(value), "");
    }
    pub(crate) fn not_found(&mut self, f: &str, value: &str) {
        self.push(CauseReason::NotFound, f, Some(&q(value)), "");
    }
    pub(crate) fn too_long(&mut self, f: &str, max: usize) {
        self.push(
            CauseReason::TooLong,
            f,
            None,
            &format!("may not be more than {max} bytes"),
        );
    }
    pub(crate) fn too_many(&mut self, f: &str, actual: usize, max: usize) {
        self.push(
            CauseReason::TooMany,
            f,
            Some(&actual.to_string()),
            &format!("must have at most {max} items"),
        );
    }
    /// `must be greater than or equal to 0` for negative values.
    pub(crate) fn non_negative(&mut self, f: &str, value: Option<i64>) {
        if let Some(v) = value.filter(|v| *v < 0) {
            self.invalid_i(f, v, IS_NEGATIVE);
        }
    }
}

pub(crate) const IS_NEGATIVE: &str = "must be greater than or equal to 0";
pub(crate) const IMMUTABLE: &str = "field is immutable";

pub(crate) fn child(p: &str, name: &str) -> String {
    if p.is_empty() {
        name.to_string()
    } else {
        format!("{p}.{name}")
    }
}

pub(crate) fn idx(p: &str, i: usize) -> String {
    format!("{p}[{i}]")
}

pub(crate) fn key(p: &str, k: &str) -> String {
    format!("{p}[{k}]")
}

/// Go's `strconv.Quote` (what `%q` prints).
pub(crate) fn q(s: &str) -> String {
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

pub(crate) fn compact(v: &Value) -> String {
    v.to_string()
}

/// `%#v` of a `map[string]string`.
pub(crate) fn go_map(m: Option<&Obj>) -> String {
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
pub(crate) fn go_strings(v: Option<&Value>) -> String {
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
pub(crate) fn go_label_selector(sel: Option<&Value>) -> String {
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
pub(crate) fn go_int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}", q(s)),
        other => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or_default()
        ),
    }
}

// JSON accessors: a wrong JSON type reads as "unset" (decode_check reports type errors).

pub(crate) fn get<'a>(v: Option<&'a Value>, k: &str) -> Option<&'a Value> {
    v?.as_object()?.get(k).filter(|x| !x.is_null())
}

pub(crate) fn str_opt<'a>(v: Option<&'a Value>, k: &str) -> Option<&'a str> {
    get(v, k)?.as_str()
}

pub(crate) fn str_of<'a>(v: Option<&'a Value>, k: &str) -> &'a str {
    str_opt(v, k).unwrap_or("")
}

pub(crate) fn int_of(v: Option<&Value>, k: &str) -> Option<i64> {
    get(v, k)?.as_i64()
}

pub(crate) fn bool_of(v: Option<&Value>, k: &str) -> Option<bool> {
    get(v, k)?.as_bool()
}

pub(crate) fn arr_of<'a>(v: Option<&'a Value>, k: &str) -> &'a [Value] {
    get(v, k)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn obj_of<'a>(v: Option<&'a Value>, k: &str) -> Option<&'a Obj> {
    get(v, k)?.as_object()
}

pub(crate) fn strings_of<'a>(v: Option<&'a Value>, k: &str) -> Vec<&'a str> {
    arr_of(v, k).iter().filter_map(Value::as_str).collect()
}

// ---------------------------------------------------------------------------------------------
// apimachinery/pkg/util/validation
// ---------------------------------------------------------------------------------------------

pub(crate) fn immutable_guard(
    e: &mut Errs,
    obj: Option<&Value>,
    old: Option<&Value>,
    fields: &[&str],
) {
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

/// Sets `field` of `object` (made an object if null) unless it is set.
pub(crate) fn set_default(object: &mut Value, field: &str, value: Value) {
    if object.is_null() {
        *object = json!({});
    }
    if let Some(map) = object.as_object_mut() {
        map.entry(field).or_insert(value);
    }
}

/// Drops nulls, empty strings and empty objects/arrays recursively: Go's zero values and
/// nil-vs-empty collections compare equal under `apiequality.Semantic.DeepEqual`.
pub(crate) fn normalize(v: &Value) -> Value {
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

pub(crate) fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A short "what changed" listing for Forbidden update messages (upstream prints a cmp.Diff).
pub(crate) fn diff_values(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
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

/// The cause at `field` as `<field>: <message>`, upstream's error text (for tests).
#[cfg(test)]
pub(crate) fn message_at(causes: &[Cause], field: &str) -> String {
    causes
        .iter()
        .find(|c| c.field == field)
        .unwrap_or_else(|| panic!("no cause at {field} in {causes:#?}"))
        .to_string()
}
