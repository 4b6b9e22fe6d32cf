//! The protobuf form of a Swagger 2.0 document: gnostic's `openapi.v2.Document` (the message
//! client-go's `OpenAPISchema()` decodes). Only what a Kubernetes document holds is written: the
//! version, the info, and the definitions with every JSON Schema keyword they use. Vendor
//! extensions and free-form values (`default`, `enum`, `example`) travel as gnostic's `Any`, whose
//! `yaml` field holds their JSON text (JSON is YAML), as gnostic's own compiler writes them.

use prost::encoding::{WireType, encode_key, encode_varint};
use serde_json::{Map, Value};

/// Encodes a Swagger 2.0 document (JSON) as `openapi.v2.Document`.
pub fn encode_document(document: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 20);
    write_string(1, text(document, "swagger"), &mut out);
    if let Some(info) = document.get("info") {
        write_message(2, &mut out, |out| {
            write_string(1, text(info, "title"), out);
            write_string(2, text(info, "version"), out);
        });
    }
    if let Some(Value::Object(definitions)) = document.get("definitions") {
        write_message(9, &mut out, |out| {
            for (name, schema) in definitions {
                write_named_schema(1, name, schema, out);
            }
        });
    }
    out
}

/// `Schema`, field by field in number order (proto3: empty values are left out).
fn write_schema(schema: &Value, out: &mut Vec<u8>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    write_string(1, text(schema, "$ref"), out);
    write_string(2, text(schema, "format"), out);
    write_string(3, text(schema, "title"), out);
    write_string(4, text(schema, "description"), out);
    if let Some(value) = object.get("default") {
        write_any(5, value, out);
    }
    write_double(6, object.get("multipleOf"), out);
    write_double(7, object.get("maximum"), out);
    write_bool(8, object.get("exclusiveMaximum"), out);
    write_double(9, object.get("minimum"), out);
    write_bool(10, object.get("exclusiveMinimum"), out);
    write_int(11, object.get("maxLength"), out);
    write_int(12, object.get("minLength"), out);
    write_string(13, text(schema, "pattern"), out);
    write_int(14, object.get("maxItems"), out);
    write_int(15, object.get("minItems"), out);
    write_bool(16, object.get("uniqueItems"), out);
    write_int(17, object.get("maxProperties"), out);
    write_int(18, object.get("minProperties"), out);
    for required in strings(object.get("required")) {
        write_string(19, required, out);
    }
    for value in object
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        write_any(20, value, out);
    }
    match object.get("additionalProperties") {
        // AdditionalPropertiesItem: a oneof of a schema (1) and a boolean (2).
        Some(Value::Bool(allowed)) => write_message(21, out, |out| {
            encode_key(2, WireType::Varint, out);
            encode_varint(u64::from(*allowed), out);
        }),
        Some(additional @ Value::Object(_)) => write_message(21, out, |out| {
            write_message(1, out, |out| write_schema(additional, out));
        }),
        _ => {}
    }
    let types: Vec<&str> = match object.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        other => strings(other),
    };
    if !types.is_empty() {
        write_message(22, out, |out| {
            for ty in types {
                write_string(1, ty, out);
            }
        });
    }
    match object.get("items") {
        Some(items @ Value::Object(_)) => {
            write_message(23, out, |out| {
                write_message(1, out, |out| write_schema(items, out));
            });
        }
        Some(Value::Array(items)) => write_message(23, out, |out| {
            for item in items {
                write_message(1, out, |out| write_schema(item, out));
            }
        }),
        _ => {}
    }
    for part in object
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        write_message(24, out, |out| write_schema(part, out));
    }
    if let Some(Value::Object(properties)) = object.get("properties") {
        write_message(25, out, |out| {
            for (name, property) in properties {
                write_named_schema(1, name, property, out);
            }
        });
    }
    write_string(26, text(schema, "discriminator"), out);
    write_bool(27, object.get("readOnly"), out);
    if let Some(example) = object.get("example") {
        write_any(30, example, out);
    }
    write_vendor_extensions(31, object, out);
}

/// `NamedSchema { name = 1; value = 2; }`.
fn write_named_schema(number: u32, name: &str, schema: &Value, out: &mut Vec<u8>) {
    write_message(number, out, |out| {
        write_string(1, name, out);
        write_message(2, out, |out| write_schema(schema, out));
    });
}

/// Every `x-` key as `NamedAny { name = 1; value = 2; }`.
fn write_vendor_extensions(number: u32, object: &Map<String, Value>, out: &mut Vec<u8>) {
    for (key, value) in object.iter().filter(|(key, _)| key.starts_with("x-")) {
        write_message(number, out, |out| {
            write_string(1, key, out);
            write_any(2, value, out);
        });
    }
}

/// `Any { yaml = 2; }` with the value's JSON text.
fn write_any(number: u32, value: &Value, out: &mut Vec<u8>) {
    let yaml = value.to_string();
    write_message(number, out, |out| write_string(2, &yaml, out));
}

fn write_message(number: u32, out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    body(&mut inner);
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(inner.len() as u64, out);
    out.extend_from_slice(&inner);
}

fn write_string(number: u32, value: &str, out: &mut Vec<u8>) {
    if value.is_empty() {
        return;
    }
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(value.len() as u64, out);
    out.extend_from_slice(value.as_bytes());
}

fn write_bool(number: u32, value: Option<&Value>, out: &mut Vec<u8>) {
    if value.and_then(Value::as_bool) == Some(true) {
        encode_key(number, WireType::Varint, out);
        encode_varint(1, out);
    }
}

fn write_int(number: u32, value: Option<&Value>, out: &mut Vec<u8>) {
    if let Some(value) = value.and_then(Value::as_i64).filter(|v| *v != 0) {
        encode_key(number, WireType::Varint, out);
        encode_varint(value as u64, out);
    }
}

fn write_double(number: u32, value: Option<&Value>, out: &mut Vec<u8>) {
    if let Some(value) = value.and_then(Value::as_f64).filter(|v| *v != 0.0) {
        encode_key(number, WireType::SixtyFourBit, out);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn strings(value: Option<&Value>) -> Vec<&str> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use prost::encoding::{decode_key, decode_varint};
    use serde_json::json;

    use super::*;

    /// The fields of one message body, as (number, bytes or varint).
    fn fields(mut body: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut found = Vec::new();
        while !body.is_empty() {
            let (number, wire) = decode_key(&mut body).unwrap();
            match wire {
                WireType::Varint => {
                    let value = decode_varint(&mut body).unwrap();
                    found.push((number, value.to_le_bytes().to_vec()));
                }
                WireType::LengthDelimited => {
                    let length = decode_varint(&mut body).unwrap() as usize;
                    found.push((number, body[..length].to_vec()));
                    body = &body[length..];
                }
                WireType::SixtyFourBit => {
                    found.push((number, body[..8].to_vec()));
                    body = &body[8..];
                }
                other => panic!("unexpected wire type {other:?}"),
            }
        }
        found
    }

    fn field(body: &[u8], number: u32) -> Vec<u8> {
        fields(body)
            .into_iter()
            .find(|(n, _)| *n == number)
            .unwrap_or_else(|| panic!("no field {number}"))
            .1
    }

    #[test]
    fn definitions_carry_schemas_and_extensions_at_gnostics_field_numbers() {
        let document = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "definitions": {
                "io.k8s.api.apps.v1.Deployment": {
                    "description": "Deployment enables declarative updates.",
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "spec": {"$ref": "#/definitions/io.k8s.api.apps.v1.DeploymentSpec", "description": "spec"},
                        "replicas": {"type": "integer", "format": "int32", "minimum": 0},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "apps", "kind": "Deployment", "version": "v1"}],
                },
            },
        });
        let bytes = encode_document(&document);
        assert_eq!(field(&bytes, 1), b"2.0");
        assert_eq!(field(&field(&bytes, 2), 1), b"Kubernetes");
        let named = field(&field(&bytes, 9), 1);
        assert_eq!(field(&named, 1), b"io.k8s.api.apps.v1.Deployment");
        let schema = field(&named, 2);
        assert_eq!(
            field(&schema, 4),
            b"Deployment enables declarative updates."
        );
        assert_eq!(field(&schema, 19), b"spec");
        assert_eq!(field(&field(&schema, 22), 1), b"object");
        let extension = field(&schema, 31);
        assert_eq!(field(&extension, 1), b"x-kubernetes-group-version-kind");
        let yaml: Value = serde_json::from_slice(&field(&field(&extension, 2), 2)).unwrap();
        assert_eq!(yaml[0]["kind"], "Deployment");
        let properties = fields(&field(&schema, 25));
        assert_eq!(properties.len(), 3);
        let labels = field(&properties[0].1, 2);
        let additional = field(&field(&labels, 21), 1);
        assert_eq!(field(&field(&additional, 22), 1), b"string");
        let spec = field(&properties[2].1, 2);
        assert_eq!(
            field(&spec, 1),
            b"#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
    }
}
