//! The JSON forms of the types Go marshals by hand: times, byte strings, integers, floats, and
//! apiextensions' raw `JSON` and its schema unions (`JSONSchemaPropsOrBool`, `...OrArray`,
//! `...OrStringArray`, whose `MarshalJSON` is in upstream's `apiextensions/v1/marshal.go`).

use std::fmt;

use base64::Engine as _;
use prost::encoding::{WireType, encode_key, encode_varint};
use serde_json::{Map, Value};

use super::{
    Error, Message, Path,
    decode::{bytes_field, decode_message_into, each_field, length_delimited, string, varint},
    encode::{encode_message, nested, write_bytes, write_string},
};

/// A JSON base64 string's bytes (Go `[]byte`).
pub(super) fn base64_decode(value: &Value, path: &dyn std::fmt::Display) -> Result<Vec<u8>, Error> {
    let text = value
        .as_str()
        .ok_or_else(|| Error::new(&path, "expected a base64 string"))?;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|err| Error::new(&path, format!("not valid base64: {err}")))
}

/// Bytes as the JSON base64 string Go writes.
pub(super) fn base64_encode(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// A JSON integer (a float with no fraction, as YAML or JavaScript clients may write it, too).
pub(super) fn integer(value: &Value, path: &dyn std::fmt::Display) -> Result<i64, Error> {
    if let Some(integer) = value.as_i64() {
        return Ok(integer);
    }
    match value.as_f64() {
        Some(float) if float.fract() == 0.0 && float.abs() < 9.2e18 => Ok(float as i64),
        _ => Err(Error::new(
            &path,
            format!("expected an integer, got {value}"),
        )),
    }
}

/// An RFC 3339 time as a protobuf Timestamp (seconds, nanos). `metav1.Time` carries whole
/// seconds (its JSON has no fraction); `MicroTime` microseconds.
pub(super) fn parse_time(
    value: &Value,
    micro: bool,
    path: &dyn std::fmt::Display,
) -> Result<(i64, i32), Error> {
    let text = value
        .as_str()
        .ok_or_else(|| Error::new(&path, "expected an RFC 3339 time string"))?;
    let timestamp: jiff::Timestamp = text
        .parse()
        .map_err(|err| Error::new(&path, format!("not an RFC 3339 time ({text:?}): {err}")))?;
    let nanos = if micro {
        timestamp.subsec_nanosecond() / 1000 * 1000
    } else {
        0
    };
    Ok((timestamp.as_second(), nanos))
}

/// A protobuf Timestamp as the JSON Go writes for it: UTC, `Z`, whole seconds for `Time` and
/// six fraction digits for `MicroTime`; the zero time is null.
pub(super) fn format_time(
    seconds: i64,
    nanos: i32,
    micro: bool,
    path: &dyn std::fmt::Display,
) -> Result<Value, Error> {
    // What the JSON keeps: whole seconds, or microseconds. A value that keeps nothing is the
    // zero time, so that decoding what the encoder wrote for it gives null again.
    let nanos = if micro { nanos / 1000 * 1000 } else { 0 };
    if seconds == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    let timestamp = jiff::Timestamp::new(seconds, nanos)
        .map_err(|err| Error::new(&path, format!("time out of range: {err}")))?;
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(Value::String(timestamp.strftime(format).to_string()))
}

/// A proto `double` as the JSON number Go writes for a float64: integral values without a
/// fraction (`10`, not `10.0`), so that they compare equal to the integer a client sent.
pub(super) fn float(value: f64, path: &dyn fmt::Display) -> Result<Value, Error> {
    if !value.is_finite() {
        // encoding/json refuses NaN and the infinities ("unsupported value").
        return Err(Error::new(&path, format!("{value} is not a JSON number")));
    }
    // Below 2^63 an integral float converts to i64 exactly.
    if value.fract() == 0.0 && value.abs() < 9.2e18 {
        return Ok(Value::from(value as i64));
    }
    Ok(Value::from(value))
}

/// The body of an apiextensions `JSON` message: the value's serialization in `raw` (1). Null is
/// Go's nil `Raw` (its UnmarshalJSON keeps nothing for `null`): an empty body.
pub(super) fn encode_json(
    value: &Value,
    out: &mut Vec<u8>,
    path: &dyn fmt::Display,
) -> Result<(), Error> {
    if value.is_null() {
        return Ok(());
    }
    let raw = serde_json::to_vec(value)
        .map_err(|err| Error::new(&path, format!("serializing: {err}")))?;
    write_bytes(1, &raw, out);
    Ok(())
}

/// An apiextensions `JSON` message as the value its `raw` holds; none is null, as `MarshalJSON`
/// writes it.
pub(super) fn decode_json(body: &[u8], path: &dyn fmt::Display) -> Result<Value, Error> {
    let raw = bytes_field(body, path)?;
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(raw)
        .map_err(|err| Error::new(&path, format!("the JSON value is not JSON: {err}")))
}

/// The body of a `JSONSchemaPropsOrBool`: `allows` (1) always, as gogo-protobuf writes a plain
/// bool; a schema object also sets `allows`, as upstream's UnmarshalJSON does, and goes in 2.
pub(super) fn encode_schema_or_bool(
    schema: &Message,
    value: &Value,
    out: &mut Vec<u8>,
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<(), Error> {
    let (allows, object) = match value {
        Value::Bool(allows) => (*allows, None),
        Value::Object(object) => (true, Some(object)),
        _ => return Err(Error::new(&path, "expected a boolean or a schema object")),
    };
    encode_key(1, WireType::Varint, out);
    encode_varint(u64::from(allows), out);
    if let Some(object) = object {
        write_schema(2, schema, object, out, path, depth)?;
    }
    Ok(())
}

/// A `JSONSchemaPropsOrBool` as `MarshalJSON` writes it: the schema when there is one, else
/// `allows` as `true` or `false`.
pub(super) fn decode_schema_or_bool(
    schema: &Message,
    body: &[u8],
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<Value, Error> {
    let mut allows = false;
    let mut object = None;
    each_field(body, path, |number, wire, buf| {
        match number {
            1 => allows = varint(buf, wire, path)? != 0,
            2 => object = Some(length_delimited(buf, wire, path)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    match object {
        Some(object) => read_schema(schema, object, path, depth),
        None => Ok(Value::Bool(allows)),
    }
}

/// The body of a `JSONSchemaPropsOrArray`: a schema object in `schema` (1), a list in
/// `jSONSchemas` (2). A null item is an empty schema, as Go decodes null into a struct.
pub(super) fn encode_schema_or_array(
    schema: &Message,
    value: &Value,
    out: &mut Vec<u8>,
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<(), Error> {
    match value {
        Value::Object(object) => write_schema(1, schema, object, out, path, depth),
        Value::Array(items) => {
            let empty = Map::new();
            for (index, item) in items.iter().enumerate() {
                let path = Path::index(path, index);
                let object = match item {
                    Value::Object(object) => object,
                    Value::Null => &empty,
                    _ => return Err(Error::new(&path, "expected a schema object")),
                };
                write_schema(2, schema, object, out, &path, depth)?;
            }
            Ok(())
        }
        _ => Err(Error::new(
            &path,
            "expected a schema object or a list of schema objects",
        )),
    }
}

/// A `JSONSchemaPropsOrArray` as `MarshalJSON` writes it: the list when it has items, else the
/// schema, else null.
pub(super) fn decode_schema_or_array(
    schema: &Message,
    body: &[u8],
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<Value, Error> {
    let mut object = None;
    let mut items = Vec::new();
    each_field(body, path, |number, wire, buf| {
        match number {
            1 => object = Some(length_delimited(buf, wire, path)?),
            2 => items.push(length_delimited(buf, wire, path)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !items.is_empty() {
        let mut list = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            list.push(read_schema(schema, item, &Path::index(path, index), depth)?);
        }
        return Ok(Value::Array(list));
    }
    match object {
        Some(object) => read_schema(schema, object, path, depth),
        None => Ok(Value::Null),
    }
}

/// The body of a `JSONSchemaPropsOrStringArray`: a schema object in `schema` (1), a list of
/// strings in `property` (2).
pub(super) fn encode_schema_or_string_array(
    schema: &Message,
    value: &Value,
    out: &mut Vec<u8>,
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<(), Error> {
    match value {
        Value::Object(object) => write_schema(1, schema, object, out, path, depth),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let text = item
                    .as_str()
                    .ok_or_else(|| Error::new(&Path::index(path, index), "expected a string"))?;
                write_string(2, text, out);
            }
            Ok(())
        }
        _ => Err(Error::new(
            &path,
            "expected a schema object or a list of strings",
        )),
    }
}

/// A `JSONSchemaPropsOrStringArray` as `MarshalJSON` writes it: the strings when there are any,
/// else the schema, else null.
pub(super) fn decode_schema_or_string_array(
    schema: &Message,
    body: &[u8],
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<Value, Error> {
    let mut object = None;
    let mut strings = Vec::new();
    each_field(body, path, |number, wire, buf| {
        match number {
            1 => object = Some(length_delimited(buf, wire, path)?),
            2 => strings.push(Value::String(string(buf, wire, path)?)),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !strings.is_empty() {
        return Ok(Value::Array(strings));
    }
    match object {
        Some(object) => read_schema(schema, object, path, depth),
        None => Ok(Value::Null),
    }
}

/// Writes a union's schema object as the length-delimited field `number`.
fn write_schema(
    number: u32,
    schema: &Message,
    object: &Map<String, Value>,
    out: &mut Vec<u8>,
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<(), Error> {
    encode_key(number, WireType::LengthDelimited, out);
    nested(out, |out| {
        encode_message(schema, object, out, path, depth + 1)
    })
}

/// Reads a union's schema object from its message body.
fn read_schema(
    schema: &Message,
    body: &[u8],
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<Value, Error> {
    let mut object = Map::new();
    decode_message_into(schema, body, &mut object, path, depth + 1)?;
    Ok(Value::Object(object))
}
