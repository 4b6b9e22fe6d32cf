//! protobuf -> JSON, with the JSON rules of the Go struct behind each message.

use prost::encoding::{WireType, decode_key, decode_varint};
use std::fmt;

use serde_json::{Map, Value};

use super::{
    Error, Field, Label, MAGIC, MAX_DEPTH, Message, Path, ROOT, Ty, kind_message, message, special,
    watch_event_message,
};

/// Decodes an enveloped object (magic + `runtime.Unknown`) into JSON with apiVersion and kind.
pub fn decode_object(body: &[u8]) -> Result<Value, Error> {
    decode_object_at(body, &ROOT, 0)
}

fn decode_object_at(body: &[u8], path: &dyn fmt::Display, depth: usize) -> Result<Value, Error> {
    let Some(envelope) = body.strip_prefix(MAGIC.as_slice()) else {
        return Err(Error::new(
            path,
            "the protobuf body does not start with the magic bytes \"k8s\\x00\"",
        ));
    };
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    let mut content_type = String::new();
    each_field(envelope, path, |number, wire, buf| {
        match number {
            1 => each_field(
                length_delimited(buf, wire, path)?,
                path,
                |number, wire, body| {
                    match number {
                        1 => api_version = string(body, wire, &"apiVersion")?,
                        2 => kind = string(body, wire, &"kind")?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                },
            )?,
            2 => raw = length_delimited(buf, wire, path)?,
            3 => content_encoding = string(buf, wire, path)?,
            4 => content_type = string(buf, wire, path)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    if !content_encoding.is_empty() {
        return Err(Error::new(
            path,
            format!("content encoding {content_encoding:?} is not supported"),
        ));
    }
    if !(content_type.is_empty() || content_type == super::MEDIA_TYPE) {
        return Err(Error::new(
            path,
            format!("the enveloped object is {content_type:?}, not protobuf"),
        ));
    }
    if kind.is_empty() {
        return Err(Error::new(
            path,
            "the protobuf envelope names no kind (typeMeta.kind is empty)",
        ));
    }
    let schema = kind_message(&api_version, &kind).ok_or_else(|| {
        Error::new(
            path,
            format!("no kind {kind:?} is registered for version {api_version:?}"),
        )
    })?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    decode_message_into(schema, raw, &mut object, path, depth)?;
    Ok(Value::Object(object))
}

/// Decodes one framed watch event (4-byte big-endian length, then a `metav1.WatchEvent`) into
/// `{"type": ..., "object": ...}` and the bytes after it.
pub fn decode_watch_event(frame: &[u8]) -> Result<(Value, &[u8]), Error> {
    let (length, rest) = frame
        .split_first_chunk::<4>()
        .ok_or_else(|| Error::new(&ROOT, "a watch frame shorter than its 4-byte length"))?;
    let length = u32::from_be_bytes(*length) as usize;
    if rest.len() < length {
        return Err(Error::new(
            &ROOT,
            format!(
                "a watch frame of {length} bytes is truncated at {}",
                rest.len()
            ),
        ));
    }
    let (event, rest) = rest.split_at(length);
    let schema = watch_event_message();
    let mut decoded = Map::new();
    each_field(event, &ROOT, |number, wire, body| {
        match schema.fields.iter().find(|field| field.number == number) {
            Some(field) if field.json == "type" => {
                decoded.insert("type".into(), Value::String(string(body, wire, &"type")?));
            }
            Some(field) if field.json == "object" => {
                let raw = bytes_field(length_delimited(body, wire, &"object")?, &"object")?;
                decoded.insert("object".into(), decode_object_at(raw, &"object", 1)?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok((Value::Object(decoded), rest))
}

/// Decodes the fields of one message into `object` (which inline structs share with their
/// parent), then applies the Go JSON rules for what a field left at its zero value becomes.
pub(super) fn decode_message_into(
    schema: &Message,
    mut buf: &[u8],
    object: &mut Map<String, Value>,
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(path, "nested too deeply"));
    }
    let mut inline_seen: Vec<u32> = Vec::new();
    while !buf.is_empty() {
        let (number, wire) = key(&mut buf, path)?;
        let Ok(position) = schema
            .fields
            .binary_search_by_key(&number, |field| field.number)
        else {
            // Fields of newer versions: ignored, as generated decoders skip them.
            skip(&mut buf, wire, path)?;
            continue;
        };
        let field = &schema.fields[position];
        let field_path = Path::field(path, field.json);
        match field.label {
            Label::Single if field.inline => {
                let Ty::Message(id) = field.ty else {
                    return Err(Error::new(&field_path, "an inline field must be a message"));
                };
                let body = length_delimited(&mut buf, wire, &field_path)?;
                decode_message_into(message(id), body, object, path, depth + 1)?;
                inline_seen.push(field.number);
            }
            Label::Single => {
                let value = decode_value(field.ty, &mut buf, wire, &field_path, depth)?;
                object.insert(field.json.to_owned(), value);
            }
            Label::Repeated => {
                let items = object
                    .entry(field.json)
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(items) = items else {
                    return Err(Error::new(&field_path, "a list field appears twice"));
                };
                if wire == WireType::LengthDelimited && scalar_varint(field.ty) {
                    // A packed list of numbers or booleans.
                    let mut packed = length_delimited(&mut buf, WireType::LengthDelimited, path)?;
                    while !packed.is_empty() {
                        items.push(decode_value(
                            field.ty,
                            &mut packed,
                            WireType::Varint,
                            &field_path,
                            depth,
                        )?);
                    }
                } else {
                    let index = items.len();
                    items.push(decode_value(
                        field.ty,
                        &mut buf,
                        wire,
                        &Path::index(&field_path, index),
                        depth,
                    )?);
                }
            }
            Label::Map => {
                let mut entry_key = String::new();
                let mut entry_value = None;
                let entry = length_delimited(&mut buf, wire, &field_path)?;
                each_field(entry, &field_path, |number, wire, body| {
                    match number {
                        1 => entry_key = string(body, wire, &field_path)?,
                        2 => {
                            entry_value =
                                Some(decode_value(field.ty, body, wire, &field_path, depth)?);
                        }
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
                let map = object
                    .entry(field.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(map) = map else {
                    return Err(Error::new(&field_path, "a map field appears twice"));
                };
                let entry_value = entry_value.unwrap_or_else(|| zero(field.ty));
                map.insert(entry_key, entry_value);
            }
        }
    }
    for field in schema.fields {
        apply_json_rules(field, object);
        // An inline struct is a plain Go struct: there even when the message left it out, so
        // its fields follow the same rules (a container's `name` appears, empty).
        if let (true, Ty::Message(id)) = (field.inline, field.ty)
            && !inline_seen.contains(&field.number)
        {
            decode_message_into(message(id), &[], object, path, depth + 1)?;
        }
    }
    Ok(())
}

/// What Go's encoding/json writes for a field after protobuf decoding: a non-pointer scalar with
/// `omitempty` disappears at its zero value, one without `omitempty` appears even when the
/// message left it out, and a zero time is null (left out here).
fn apply_json_rules(field: &Field, object: &mut Map<String, Value>) {
    if field.label != Label::Single || field.inline {
        return;
    }
    // A zero time or an empty raw extension is null in Go's JSON, pointer or not: the same as
    // leaving the field out, which is how the encoder reads it back (found by the fuzz target).
    if object.get(field.json).is_some_and(Value::is_null) {
        object.remove(field.json);
        return;
    }
    if field.pointer {
        return;
    }
    match field.ty {
        Ty::String | Ty::Bytes | Ty::Bool | Ty::Int32 | Ty::Int64 | Ty::Double | Ty::StringList => {
            let is_zero = object.get(field.json).is_some_and(is_zero);
            if field.omitempty && is_zero {
                object.remove(field.json);
            } else if !field.omitempty && !object.contains_key(field.json) {
                object.insert(field.json.to_owned(), zero(field.ty));
            }
        }
        _ => {}
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(text) => text.is_empty(),
        Value::Bool(flag) => !flag,
        Value::Number(number) => number.as_i64() == Some(0),
        Value::Array(items) => items.is_empty(),
        Value::Null => true,
        Value::Object(_) => false,
    }
}

/// The JSON of a scalar's zero value.
fn zero(ty: Ty) -> Value {
    match ty {
        Ty::Bool => Value::Bool(false),
        Ty::Int32 | Ty::Int64 | Ty::Double => Value::from(0),
        Ty::StringList => Value::Array(Vec::new()),
        Ty::Message(_) => Value::Object(Map::new()),
        // What upstream's MarshalJSON writes for an empty JSON or union (an empty
        // JSONSchemaPropsOrBool is `false`).
        Ty::SchemaOrBool(_) => Value::Bool(false),
        Ty::Time
        | Ty::MicroTime
        | Ty::FieldsV1
        | Ty::RawExtension
        | Ty::Json
        | Ty::SchemaOrArray(_)
        | Ty::SchemaOrStringArray(_) => Value::Null,
        Ty::IntOrString => Value::from(0),
        _ => Value::String(String::new()),
    }
}

fn scalar_varint(ty: Ty) -> bool {
    matches!(ty, Ty::Bool | Ty::Int32 | Ty::Int64)
}

fn decode_value(
    ty: Ty,
    buf: &mut &[u8],
    wire: WireType,
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<Value, Error> {
    Ok(match ty {
        Ty::String => Value::String(string(buf, wire, path)?),
        Ty::Bytes => special::base64_encode(length_delimited(buf, wire, path)?),
        Ty::Bool => Value::Bool(varint(buf, wire, path)? != 0),
        // proto int32 is the low 32 bits of the varint.
        Ty::Int32 => Value::from(varint(buf, wire, path)? as i32),
        Ty::Int64 => Value::from(varint(buf, wire, path)? as i64),
        Ty::Message(id) => {
            let body = length_delimited(buf, wire, path)?;
            let mut object = Map::new();
            decode_message_into(message(id), body, &mut object, path, depth + 1)?;
            Value::Object(object)
        }
        Ty::Time | Ty::MicroTime => {
            let (mut seconds, mut nanos) = (0i64, 0i32);
            each_field(
                length_delimited(buf, wire, path)?,
                path,
                |number, wire, body| {
                    match number {
                        1 => seconds = varint(body, wire, path)? as i64,
                        2 => nanos = varint(body, wire, path)? as i32,
                        _ => return Ok(false),
                    }
                    Ok(true)
                },
            )?;
            special::format_time(seconds, nanos, ty == Ty::MicroTime, path)?
        }
        Ty::FieldsV1 | Ty::RawExtension => {
            let raw = bytes_field(length_delimited(buf, wire, path)?, path)?;
            if raw.is_empty() {
                Value::Null
            } else if raw.starts_with(MAGIC) {
                decode_object_at(raw, path, depth + 1)?
            } else {
                serde_json::from_slice(raw).map_err(|err| {
                    Error::new(path, format!("the embedded object is not JSON: {err}"))
                })?
            }
        }
        Ty::IntOrString => {
            let (mut kind, mut int_value, mut text) = (0u64, 0i32, String::new());
            each_field(
                length_delimited(buf, wire, path)?,
                path,
                |number, wire, body| {
                    match number {
                        1 => kind = varint(body, wire, path)?,
                        2 => int_value = varint(body, wire, path)? as i32,
                        3 => text = string(body, wire, path)?,
                        _ => return Ok(false),
                    }
                    Ok(true)
                },
            )?;
            match kind {
                0 => Value::from(int_value),
                1 => Value::String(text),
                other => {
                    return Err(Error::new(
                        path,
                        format!("IntOrString type {other} is neither 0 (int) nor 1 (string)"),
                    ));
                }
            }
        }
        Ty::Quantity => {
            let text = bytes_field(length_delimited(buf, wire, path)?, path)?;
            Value::String(
                String::from_utf8(text.to_vec())
                    .map_err(|_| Error::new(path, "a quantity is not valid UTF-8"))?,
            )
        }
        Ty::Double => {
            expect(wire, WireType::SixtyFourBit, path)?;
            let (bytes, rest) = buf
                .split_first_chunk::<8>()
                .ok_or_else(|| Error::new(path, "the body ends inside a double"))?;
            *buf = rest;
            special::float(f64::from_le_bytes(*bytes), path)?
        }
        Ty::Json => special::decode_json(length_delimited(buf, wire, path)?, path)?,
        Ty::SchemaOrBool(id) => special::decode_schema_or_bool(
            message(id),
            length_delimited(buf, wire, path)?,
            path,
            depth,
        )?,
        Ty::SchemaOrArray(id) => special::decode_schema_or_array(
            message(id),
            length_delimited(buf, wire, path)?,
            path,
            depth,
        )?,
        Ty::SchemaOrStringArray(id) => special::decode_schema_or_string_array(
            message(id),
            length_delimited(buf, wire, path)?,
            path,
            depth,
        )?,
        Ty::StringList => {
            let mut items = Vec::new();
            each_field(
                length_delimited(buf, wire, path)?,
                path,
                |number, wire, body| {
                    if number != 1 {
                        return Ok(false);
                    }
                    items.push(Value::String(string(body, wire, path)?));
                    Ok(true)
                },
            )?;
            Value::Array(items)
        }
    })
}

/// Visits every field of a message body; `visit` reads the fields it knows (returning true) and
/// the others are skipped.
pub(super) fn each_field<'a>(
    mut body: &'a [u8],
    path: &dyn fmt::Display,
    mut visit: impl FnMut(u32, WireType, &mut &'a [u8]) -> Result<bool, Error>,
) -> Result<(), Error> {
    while !body.is_empty() {
        let (number, wire) = key(&mut body, path)?;
        if !visit(number, wire, &mut body)? {
            skip(&mut body, wire, path)?;
        }
    }
    Ok(())
}

/// Field 1 of a message that wraps one byte string (RawExtension, FieldsV1, Quantity).
pub(super) fn bytes_field<'a>(body: &'a [u8], path: &dyn fmt::Display) -> Result<&'a [u8], Error> {
    let mut raw: &[u8] = &[];
    each_field(body, path, |number, wire, body| {
        if number != 1 {
            return Ok(false);
        }
        raw = length_delimited(body, wire, path)?;
        Ok(true)
    })?;
    Ok(raw)
}

fn key(buf: &mut &[u8], path: &dyn fmt::Display) -> Result<(u32, WireType), Error> {
    decode_key(buf).map_err(|err| Error::new(path, format!("malformed field key: {err}")))
}

pub(super) fn varint(
    buf: &mut &[u8],
    wire: WireType,
    path: &dyn fmt::Display,
) -> Result<u64, Error> {
    expect(wire, WireType::Varint, path)?;
    decode_varint(buf).map_err(|err| Error::new(path, format!("malformed varint: {err}")))
}

pub(super) fn length_delimited<'a>(
    buf: &mut &'a [u8],
    wire: WireType,
    path: &dyn fmt::Display,
) -> Result<&'a [u8], Error> {
    expect(wire, WireType::LengthDelimited, path)?;
    let length =
        decode_varint(buf).map_err(|err| Error::new(path, format!("malformed length: {err}")))?;
    let length = usize::try_from(length)
        .ok()
        .filter(|length| *length <= buf.len())
        .ok_or_else(|| {
            Error::new(
                path,
                format!(
                    "a length of {length} bytes runs past the end of the body ({} bytes left)",
                    buf.len()
                ),
            )
        })?;
    let (body, rest) = buf.split_at(length);
    *buf = rest;
    Ok(body)
}

pub(super) fn string(
    buf: &mut &[u8],
    wire: WireType,
    path: &dyn fmt::Display,
) -> Result<String, Error> {
    let bytes = length_delimited(buf, wire, path)?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| Error::new(path, "a string field is not valid UTF-8"))
}

fn expect(wire: WireType, expected: WireType, path: &dyn fmt::Display) -> Result<(), Error> {
    if wire == expected {
        Ok(())
    } else {
        Err(Error::new(
            path,
            format!("wire type {wire:?} where the schema says {expected:?}"),
        ))
    }
}

/// Skips a field the schema does not know.
fn skip(buf: &mut &[u8], wire: WireType, path: &dyn fmt::Display) -> Result<(), Error> {
    let take = |buf: &mut &[u8], count: usize| {
        if buf.len() < count {
            return Err(Error::new(path, "the body ends inside a field"));
        }
        *buf = &buf[count..];
        Ok(())
    };
    match wire {
        WireType::Varint => varint(buf, wire, path).map(|_| ()),
        WireType::SixtyFourBit => take(buf, 8),
        WireType::ThirtyTwoBit => take(buf, 4),
        WireType::LengthDelimited => length_delimited(buf, wire, path).map(|_| ()),
        WireType::StartGroup | WireType::EndGroup => Err(Error::new(
            path,
            "protobuf groups are not used by Kubernetes",
        )),
    }
}
