//! JSON as kube-apiserver writes it. Go's encoding/json writes a struct's fields in the order the
//! struct declares them (`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",...`),
//! map keys sorted, and escapes `<`, `>`, `&`, U+2028 and U+2029 in strings. A `Value` keeps its
//! keys sorted, so the order comes from the generated table in [`crate::schema`]: each message
//! knows its fields in declaration order, inline structs included. Keys the schema does not know
//! (objects without a schema, such as a Table) follow in sorted order.

use std::io;

use serde_json::{Map, Value, ser::Formatter};

use crate::schema::{Label, Message, kind_message};

/// The bytes of `object` (an object with apiVersion and kind, or any value) as kube-apiserver
/// would write them, without the trailing newline its encoder adds after a body.
pub fn to_vec(object: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(object, &mut out);
    out
}

/// Appends `object` to `out` as [`to_vec`] writes it.
pub fn write(object: &Value, out: &mut Vec<u8>) {
    let schema = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .zip(object.get("kind").and_then(Value::as_str))
        .and_then(|(api_version, kind)| kind_message(api_version, kind));
    write_value(object, schema, out);
}

/// A value whose objects follow `schema` (when there is one) all the way down.
fn write_value(value: &Value, schema: Option<&'static Message>, out: &mut Vec<u8>) {
    match (value, schema) {
        (Value::Object(map), Some(schema)) => write_struct(map, schema, out),
        (Value::Object(map), None) => {
            write_entries(map.iter(), out, |value, out| write_value(value, None, out));
        }
        (Value::Array(items), _) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, schema, out);
            }
            out.push(b']');
        }
        (scalar, _) => write_scalar(scalar, out),
    }
}

/// A Go struct: TypeMeta first, then each field in declaration order, then unknown keys.
fn write_struct(map: &Map<String, Value>, schema: &'static Message, out: &mut Vec<u8>) {
    out.push(b'{');
    let mut first = true;
    let mut written = 0;
    if schema.type_meta {
        for key in ["kind", "apiVersion"] {
            if let Some(value) = map.get(key) {
                write_key(key, &mut first, out);
                write_scalar(value, out);
                written += 1;
            }
        }
    }
    written += write_fields(map, schema, &mut first, out);
    if written < map.len() {
        for (key, value) in map {
            let known = schema.field(key).is_some()
                || (schema.type_meta && (key == "kind" || key == "apiVersion"));
            if !known {
                write_key(key, &mut first, out);
                write_value(value, None, out);
            }
        }
    }
    out.push(b'}');
}

/// The fields of `schema` present in `map`, inline structs flattened in place; how many.
fn write_fields(
    map: &Map<String, Value>,
    schema: &'static Message,
    first: &mut bool,
    out: &mut Vec<u8>,
) -> usize {
    let mut written = 0;
    for &position in schema.by_declaration {
        let field = &schema.fields[position];
        // A union's schema object (additionalProperties, items) follows its schema's order too.
        let nested = field.ty.object_message();
        if field.inline {
            if let Some(inline) = nested {
                written += write_fields(map, inline, first, out);
            }
            continue;
        }
        let Some(value) = map.get(field.json) else {
            continue;
        };
        write_key(field.json, first, out);
        written += 1;
        match (field.label, value) {
            (Label::Map, Value::Object(entries)) => {
                write_entries(entries.iter(), out, |value, out| {
                    write_value(value, nested, out);
                });
            }
            _ => write_value(value, nested, out),
        }
    }
    written
}

/// A JSON object of `entries` in their (sorted) order, each value written by `value`.
fn write_entries<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    out: &mut Vec<u8>,
    value: impl Fn(&'a Value, &mut Vec<u8>),
) {
    out.push(b'{');
    let mut first = true;
    for (key, entry) in entries {
        write_key(key, &mut first, out);
        value(entry, out);
    }
    out.push(b'}');
}

fn write_key(key: &str, first: &mut bool, out: &mut Vec<u8>) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    write_scalar(key, out);
    out.push(b':');
}

/// A scalar (or a key) as serde_json writes it compactly, with Go's escapes.
fn write_scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Cannot fail: writing to a Vec, and a Value holds no non-string keys or non-finite floats.
    let _ = value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut *out, GoEscapes,
    ));
}

/// serde_json's compact output with Go's HTML-safe escapes in strings.
struct GoEscapes;

impl Formatter for GoEscapes {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // A byte scan: most strings have none of these, and a char search costs more than the
        // rest of the encoding. U+2028 and U+2029 are the only characters starting E2 80 A8/A9.
        let bytes = fragment.as_bytes();
        let mut start = 0;
        let mut at = 0;
        while at < bytes.len() {
            let escape: Option<(&[u8], usize)> = match bytes[at] {
                b'<' => Some((b"\\u003c", 1)),
                b'>' => Some((b"\\u003e", 1)),
                b'&' => Some((b"\\u0026", 1)),
                0xE2 if bytes.get(at + 1) == Some(&0x80) => match bytes.get(at + 2) {
                    Some(0xA8) => Some((b"\\u2028", 3)),
                    Some(0xA9) => Some((b"\\u2029", 3)),
                    _ => None,
                },
                _ => None,
            };
            match escape {
                Some((text, width)) => {
                    writer.write_all(&bytes[start..at])?;
                    writer.write_all(text)?;
                    at += width;
                    start = at;
                }
                None => at += 1,
            }
        }
        writer.write_all(&bytes[start..])
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn text(value: &Value) -> String {
        String::from_utf8(to_vec(value)).unwrap()
    }

    #[test]
    fn a_status_starts_as_kube_apiservers_does() {
        let status = json!({
            "code": 404, "reason": "NotFound", "message": "pods \"x\" not found",
            "details": {"name": "x", "kind": "pods"}, "status": "Failure",
            "metadata": {}, "apiVersion": "v1", "kind": "Status",
        });
        assert_eq!(
            text(&status),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"x\" not found","reason":"NotFound","details":{"name":"x","kind":"pods"},"code":404}"#
        );
    }

    #[test]
    fn nested_structs_lists_and_maps_follow_their_own_schema() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "status": {"replicas": 1},
            "spec": {
                "template": {"spec": {"containers": [{"name": "c", "image": "i"}]},
                             "metadata": {"labels": {"b": "2", "a": "1"}}},
                "selector": {"matchLabels": {"app": "x"}},
                "replicas": 1,
            },
            "metadata": {"namespace": "default", "name": "web"},
        });
        assert_eq!(
            text(&deployment),
            r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":{"labels":{"a":"1","b":"2"}},"spec":{"containers":[{"name":"c","image":"i"}]}}},"status":{"replicas":1}}"#
        );
    }

    #[test]
    fn schemas_inside_apiextensions_unions_follow_the_schema_order() {
        // JSONSchemaProps declares description, type, ..., properties, additionalProperties:
        // a schema in additionalProperties or items is that struct too; a default is raw JSON.
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "spec": {"versions": [{"schema": {"openAPIV3Schema": {
                "type": "object",
                "additionalProperties": {"type": "string", "description": "d"},
                "properties": {"a": {"type": "array", "items": [{"type": "integer", "description": "i"}]}},
                "description": "top",
                "default": {"z": 1, "a": 2},
            }}}]},
        });
        assert_eq!(
            text(&crd),
            r#"{"kind":"CustomResourceDefinition","apiVersion":"apiextensions.k8s.io/v1","spec":{"versions":[{"schema":{"openAPIV3Schema":{"description":"top","type":"object","default":{"a":2,"z":1},"properties":{"a":{"type":"array","items":[{"description":"i","type":"integer"}]}},"additionalProperties":{"description":"d","type":"string"}}}}]}}"#
        );
    }

    #[test]
    fn inline_structs_sit_where_they_are_embedded() {
        // Volume is {name, VolumeSource (inline)}; ProbeHandler is inline in Probe, first.
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "spec": {
                "volumes": [{"emptyDir": {}, "name": "data"}],
                "containers": [{"name": "c", "readinessProbe": {"periodSeconds": 5, "exec": {"command": ["true"]}}}],
            },
        });
        assert_eq!(
            text(&pod),
            r#"{"kind":"Pod","apiVersion":"v1","spec":{"volumes":[{"name":"data","emptyDir":{}}],"containers":[{"name":"c","readinessProbe":{"exec":{"command":["true"]},"periodSeconds":5}}]}}"#
        );
    }

    #[test]
    fn unknown_keys_and_schemaless_objects_keep_sorted_order() {
        let table = json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "rows": [], "columnDefinitions": []});
        assert_eq!(
            text(&table),
            r#"{"apiVersion":"meta.k8s.io/v1","columnDefinitions":[],"kind":"Table","rows":[]}"#
        );
        let extra =
            json!({"kind": "ConfigMap", "apiVersion": "v1", "zeta": 1, "data": {}, "alpha": 2});
        assert_eq!(
            text(&extra),
            r#"{"kind":"ConfigMap","apiVersion":"v1","data":{},"alpha":2,"zeta":1}"#
        );
    }

    #[test]
    fn strings_carry_gos_html_safe_escapes() {
        let value = json!({"a": "<b> & \u{2028}\u{2029} \"q\" \n é"});
        assert_eq!(
            text(&value),
            r#"{"a":"\u003cb\u003e \u0026 \u2028\u2029 \"q\" \n é"}"#
        );
        let back: Value = serde_json::from_slice(&to_vec(&value)).unwrap();
        assert_eq!(back, value);
    }
}
