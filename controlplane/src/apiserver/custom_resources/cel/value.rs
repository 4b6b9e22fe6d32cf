//! JSON values as CEL sees them (upstream's `UnstructuredToVal`): objects with properties show
//! only their declared properties (plus apiVersion, kind and metadata's name and generateName at
//! a resource root), maps and unknown-field objects all their entries, `type: number` is always a
//! double, `format: byte` strings are bytes. Dates and durations stay strings here (upstream makes
//! them timestamps and durations).

use std::collections::HashMap;
use std::sync::Arc;

use ::cel::Value as Cel;
use base64::Engine as _;
use serde_json::Value;

use super::super::schema::Structural;

/// `v` as a CEL value under schema `s` (None: no schema, as below preserve-unknown-fields).
/// `resource` is set at the root and at embedded resources.
pub(super) fn to_cel(v: &Value, s: Option<&Structural>, resource: bool) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => {
            if s.is_some_and(|s| s.type_ == "number") {
                Cel::Float(n.as_f64().unwrap_or(0.0))
            } else if let Some(i) = n.as_i64() {
                Cel::Int(i)
            } else if let Some(u) = n.as_u64() {
                Cel::UInt(u)
            } else {
                Cel::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(text) => {
            if s.is_some_and(|s| s.format == "byte")
                && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(text)
            {
                return Cel::Bytes(Arc::new(bytes));
            }
            Cel::String(Arc::new(text.clone()))
        }
        Value::Array(items) => {
            let item_schema = s.and_then(|s| s.items.as_deref());
            Cel::List(Arc::new(
                items
                    .iter()
                    .map(|x| {
                        to_cel(
                            x,
                            item_schema,
                            item_schema.is_some_and(|i| i.x_embedded_resource),
                        )
                    })
                    .collect(),
            ))
        }
        Value::Object(map) => {
            let mut out: HashMap<String, Cel> = HashMap::new();
            let Some(s) = s else {
                for (k, x) in map {
                    out.insert(k.clone(), to_cel(x, None, false));
                }
                return Cel::from(out);
            };
            let resource = resource || s.x_embedded_resource;
            if !s.properties.is_empty() {
                for (k, x) in map {
                    if let Some(p) = s.properties.get(k) {
                        out.insert(k.clone(), to_cel(x, Some(p), p.x_embedded_resource));
                    }
                }
            } else if let Some(ap) = &s.additional_properties {
                let sub = ap.schema();
                for (k, x) in map {
                    out.insert(
                        k.clone(),
                        to_cel(x, sub, sub.is_some_and(|a| a.x_embedded_resource)),
                    );
                }
            } else if s.x_preserve_unknown_fields == Some(true) {
                for (k, x) in map {
                    out.insert(k.clone(), to_cel(x, None, false));
                }
            }
            if resource {
                for k in ["apiVersion", "kind"] {
                    if let Some(Value::String(text)) = map.get(k) {
                        out.insert(k.to_owned(), Cel::String(Arc::new(text.clone())));
                    }
                }
                if let Some(Value::Object(meta)) = map.get("metadata") {
                    let mut shown: HashMap<String, Cel> = HashMap::new();
                    for k in ["name", "generateName"] {
                        if let Some(Value::String(text)) = meta.get(k) {
                            shown.insert(k.to_owned(), Cel::String(Arc::new(text.clone())));
                        }
                    }
                    out.insert("metadata".to_owned(), Cel::from(shown));
                }
            }
            Cel::from(out)
        }
    }
}

/// The largest list, map or string (in characters) anywhere in `v`: how many times a loop over
/// anything a rule can reach may run (at least 1).
pub(super) fn size(v: &Value) -> u64 {
    let own = match v {
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        Value::String(s) => s.chars().count(),
        _ => 1,
    };
    let own = u64::try_from(own).unwrap_or(u64::MAX).max(1);
    let below = match v {
        Value::Array(a) => a.iter().map(size).max().unwrap_or(1),
        Value::Object(m) => m.values().map(size).max().unwrap_or(1),
        _ => 1,
    };
    own.max(below)
}
