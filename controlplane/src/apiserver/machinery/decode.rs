//! Typed decoding of request bodies: does the JSON decode into the kind's k8s-openapi type, with
//! upstream's error messages (field paths and Go type names), and which fields does that type not
//! know. serde_json reports errors by line, so the body is re-rendered one member per line and
//! each line mapped back to its field path.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::field::{child, idx};
use flotilla_apimachinery::quantity::{Quantity, QuantityError};

/// Decodes JSON text into a kind's typed object and encodes it again.
pub type RoundTrip = fn(&str) -> Result<Value, serde_json::Error>;

/// The [`RoundTrip`] of the k8s-openapi type `T`.
pub fn round_trip<T: DeserializeOwned + Serialize>(text: &str) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_str(text)?;
    serde_json::to_value(&typed)
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
fn decode(f: RoundTrip, object: &Value) -> Result<Value, String> {
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

/// Collects the paths of the fields of `input` that its typed `round_trip` lacks, in document
/// order, and removes them from `input`. Keys whose value is `null` are never reported: they
/// decode to "unset".
fn take_unknown(input: &mut Value, round_trip: &Value, path: &str, out: &mut Vec<String>) {
    match (input, round_trip) {
        (Value::Object(a), Value::Object(b)) => {
            let mut unknown = Vec::new();
            for (k, v) in a.iter_mut() {
                if v.is_null() {
                    continue;
                }
                let p = child(path, k);
                match b.get(k) {
                    None => {
                        out.push(p);
                        unknown.push(k.clone());
                    }
                    Some(bv) => take_unknown(v, bv, &p, out),
                }
            }
            if !unknown.is_empty() {
                a.retain(|k, _| !unknown.contains(k));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, bv)) in a.iter_mut().zip(b.iter()).enumerate() {
                take_unknown(v, bv, &idx(path, i), out);
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

fn quantity_value(v: &Value) -> Result<(), QuantityError> {
    match v {
        Value::String(s) => Quantity::parse(s).map(|_| ()),
        Value::Number(_) | Value::Null => Ok(()),
        _ => Err(QuantityError::Format),
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

/// Decodes `object` into its kind's typed form once, as kube-apiserver's decoder does.
///
/// Err(message) when it does not decode (a 400 `BadRequest` upstream; the message is the part
/// after `<Kind> in version "<v>" cannot be handled as a <Kind>: `, e.g. `json: cannot unmarshal
/// string into Go struct field spec.replicas of type int32`). Missing required fields are not
/// decode errors (Go zero-fills them; validation reports them). Otherwise returns the paths of
/// the fields the typed schema does not know (`spec.template.spec.containers[0].imagee`), which
/// are removed from `object`: upstream's decoder drops them, and `fieldValidation` only decides
/// whether they are an error (Strict), a warning (Warn) or silent (Ignore).
pub fn decode_object(
    go_type: &str,
    round_trip: RoundTrip,
    object: &mut Value,
) -> Result<Vec<String>, String> {
    if !object.is_object() {
        return Err(format!(
            "json: cannot unmarshal {} into Go value of type {go_type}",
            json_kind(object),
        ));
    }
    let typed = decode(round_trip, object)?;
    // Quantities are plain strings to k8s-openapi but upstream parses them while decoding, so a
    // malformed one is a decode error (400) there too.
    if let Some(msg) = find_bad_quantity(object, "") {
        return Err(msg);
    }
    let mut unknown = Vec::new();
    take_unknown(object, &typed, "", &mut unknown);
    Ok(unknown)
}
