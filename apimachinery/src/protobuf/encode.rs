//! JSON -> protobuf, in field-number order as gogo-protobuf writes it.

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use std::fmt;

use serde_json::{Map, Value};

use super::{
    Error, Field, Label, MAGIC, MAX_DEPTH, Message, Path, ROOT, Ty, kind_message, message, special,
    type_meta, watch_event_message,
};

/// Encodes an object (JSON with apiVersion and kind) as magic + `runtime.Unknown` envelope.
pub fn encode_object(object: &Value) -> Result<Vec<u8>, Error> {
    let (api_version, kind) = type_meta(object);
    let schema = kind_message(api_version, kind).ok_or_else(|| {
        Error::new(
            &ROOT,
            format!("no protobuf schema for kind {kind:?} in version {api_version:?}"),
        )
    })?;
    let fields = object
        .as_object()
        .ok_or_else(|| Error::new(&ROOT, "an object must be a JSON object"))?;
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    write_envelope(&mut out, api_version, kind, |out| {
        encode_message(schema, fields, out, &ROOT, 0)
    })?;
    Ok(out)
}

/// Encodes one watch event (`metav1.WatchEvent`, no envelope) with its 4-byte big-endian length
/// in front, as the watch stream's length-delimited framer writes it. The event's object is an
/// enveloped object.
pub fn encode_watch_event(event_type: &str, object: &Value) -> Result<Vec<u8>, Error> {
    let raw = encode_object(object)?;
    let schema = watch_event_message();
    let mut event = Map::new();
    event.insert("type".into(), Value::String(event_type.to_owned()));
    let mut out = vec![0; 4];
    for field in schema.fields {
        match field.json {
            "type" => encode_field(field, &event["type"], &mut out, &"type", 0)?,
            "object" => {
                encode_key(field.number, WireType::LengthDelimited, &mut out);
                nested(&mut out, |out| {
                    encode_key(1, WireType::LengthDelimited, out);
                    encode_varint(raw.len() as u64, out);
                    out.extend_from_slice(&raw);
                    Ok(())
                })?;
            }
            _ => {}
        }
    }
    let length = u32::try_from(out.len() - 4)
        .map_err(|_| Error::new(&ROOT, "a watch event larger than 4 GiB"))?;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(out)
}

/// Writes `runtime.Unknown{typeMeta, raw, contentEncoding: "", contentType: ""}`.
fn write_envelope(
    out: &mut Vec<u8>,
    api_version: &str,
    kind: &str,
    raw: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
) -> Result<(), Error> {
    encode_key(1, WireType::LengthDelimited, out);
    nested(out, |out| {
        write_string(1, api_version, out);
        write_string(2, kind, out);
        Ok(())
    })?;
    encode_key(2, WireType::LengthDelimited, out);
    nested(out, raw)?;
    write_string(3, "", out);
    write_string(4, "", out);
    Ok(())
}

/// Encodes the fields of `object` that the message declares; other keys (apiVersion and kind,
/// fields of newer versions) have no place on the wire and are left out, as a Go client's
/// typed struct leaves them out.
pub(super) fn encode_message(
    schema: &Message,
    object: &Map<String, Value>,
    out: &mut Vec<u8>,
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(path, "nested too deeply"));
    }
    let mut present: Vec<(usize, Option<&Value>)> = Vec::with_capacity(object.len());
    for (key, value) in object {
        if value.is_null() {
            continue;
        }
        if let Some(position) = schema.position(key)
            && !schema.fields[position].inline
        {
            present.push((position, Some(value)));
        }
    }
    for (position, field) in schema.fields.iter().enumerate() {
        if field.inline {
            present.push((position, None));
        }
    }
    present.sort_unstable_by_key(|(position, _)| *position);
    for (position, value) in present {
        let field = &schema.fields[position];
        let path = Path::field(path, field.json);
        match value {
            Some(value) => encode_field(field, value, out, &path, depth)?,
            None => {
                // An inline struct: its fields sit in this object.
                let Ty::Message(id) = field.ty else {
                    return Err(Error::new(&path, "an inline field must be a message"));
                };
                encode_key(field.number, WireType::LengthDelimited, out);
                nested(out, |out| {
                    encode_message(message(id), object, out, &path, depth + 1)
                })?;
            }
        }
    }
    Ok(())
}

fn encode_field(
    field: &Field,
    value: &Value,
    out: &mut Vec<u8>,
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<(), Error> {
    match field.label {
        Label::Single => encode_value(field.number, field.ty, value, out, path, depth),
        Label::Repeated => {
            let items = value
                .as_array()
                .ok_or_else(|| Error::new(path, "expected a list"))?;
            for (index, item) in items.iter().enumerate() {
                encode_value(
                    field.number,
                    field.ty,
                    item,
                    out,
                    &Path::index(path, index),
                    depth,
                )?;
            }
            Ok(())
        }
        Label::Map => {
            let entries = value
                .as_object()
                .ok_or_else(|| Error::new(path, "expected an object (a map)"))?;
            // serde_json's map iterates in key order: the order gogo-protobuf sorts map keys in.
            for (key, item) in entries {
                encode_key(field.number, WireType::LengthDelimited, out);
                nested(out, |out| {
                    write_string(1, key, out);
                    if item.is_null() {
                        // A zero time (Go writes it as null) is an empty Timestamp; a null struct
                        // (a schema, a union) is its zero value, which gogo-protobuf writes too.
                        if matches!(
                            field.ty,
                            Ty::Time
                                | Ty::MicroTime
                                | Ty::Message(_)
                                | Ty::SchemaOrBool(_)
                                | Ty::SchemaOrArray(_)
                                | Ty::SchemaOrStringArray(_)
                        ) {
                            encode_key(2, WireType::LengthDelimited, out);
                            out.push(0);
                        }
                        return Ok(());
                    }
                    encode_value(2, field.ty, item, out, &Path::key(path, key), depth)
                })?;
            }
            Ok(())
        }
    }
}

fn encode_value(
    number: u32,
    ty: Ty,
    value: &Value,
    out: &mut Vec<u8>,
    path: &dyn fmt::Display,
    depth: usize,
) -> Result<(), Error> {
    match ty {
        Ty::String => {
            let text = value
                .as_str()
                .ok_or_else(|| Error::new(path, "expected a string"))?;
            write_string(number, text, out);
        }
        Ty::Bytes => {
            let bytes = special::base64_decode(value, path)?;
            write_bytes(number, &bytes, out);
        }
        Ty::Bool => {
            let flag = value
                .as_bool()
                .ok_or_else(|| Error::new(path, "expected a boolean"))?;
            encode_key(number, WireType::Varint, out);
            encode_varint(u64::from(flag), out);
        }
        Ty::Int32 => {
            let number_value = special::integer(value, path)?;
            let narrow = i32::try_from(number_value)
                .map_err(|_| Error::new(path, format!("{number_value} does not fit in int32")))?;
            encode_key(number, WireType::Varint, out);
            // proto int32: negative values are sign-extended to 64 bits.
            encode_varint(i64::from(narrow) as u64, out);
        }
        Ty::Int64 => {
            let number_value = special::integer(value, path)?;
            encode_key(number, WireType::Varint, out);
            encode_varint(number_value as u64, out);
        }
        Ty::Message(id) => {
            let object = value
                .as_object()
                .ok_or_else(|| Error::new(path, "expected an object"))?;
            encode_key(number, WireType::LengthDelimited, out);
            nested(out, |out| {
                encode_message(message(id), object, out, path, depth + 1)
            })?;
        }
        Ty::Time | Ty::MicroTime => {
            let (seconds, nanos) = special::parse_time(value, ty == Ty::MicroTime, path)?;
            encode_key(number, WireType::LengthDelimited, out);
            nested(out, |out| {
                encode_key(1, WireType::Varint, out);
                encode_varint(seconds as u64, out);
                encode_key(2, WireType::Varint, out);
                encode_varint(i64::from(nanos) as u64, out);
                Ok(())
            })?;
        }
        Ty::FieldsV1 | Ty::RawExtension => {
            let raw = serde_json::to_vec(value)
                .map_err(|err| Error::new(path, format!("serializing: {err}")))?;
            encode_key(number, WireType::LengthDelimited, out);
            nested(out, |out| {
                write_bytes(1, &raw, out);
                Ok(())
            })?;
        }
        Ty::IntOrString => {
            let (kind, int_value, text) = match value {
                Value::String(text) => (1u64, 0i32, text.as_str()),
                Value::Number(_) => {
                    let wide = special::integer(value, path)?;
                    let narrow = i32::try_from(wide)
                        .map_err(|_| Error::new(path, format!("{wide} does not fit in int32")))?;
                    (0, narrow, "")
                }
                _ => return Err(Error::new(path, "expected a number or a string")),
            };
            encode_key(number, WireType::LengthDelimited, out);
            nested(out, |out| {
                encode_key(1, WireType::Varint, out);
                encode_varint(kind, out);
                encode_key(2, WireType::Varint, out);
                encode_varint(i64::from(int_value) as u64, out);
                write_string(3, text, out);
                Ok(())
            })?;
        }
        Ty::Quantity => {
            let text = match value {
                Value::String(text) => text.clone(),
                // A quantity written as a JSON number (`cpu: 1`), as upstream accepts it.
                Value::Number(number) => number.to_string(),
                _ => return Err(Error::new(path, "expected a quantity (a string)")),
            };
            encode_key(number, WireType::LengthDelimited, out);
            nested(out, |out| {
                write_string(1, &text, out);
                Ok(())
            })?;
        }
        Ty::Double => {
            let float = value
                .as_f64()
                .ok_or_else(|| Error::new(path, "expected a number"))?;
            encode_key(number, WireType::SixtyFourBit, out);
            out.extend_from_slice(&float.to_le_bytes());
        }
        Ty::Json => {
            encode_key(number, WireType::LengthDelimited, out);
            nested(out, |out| special::encode_json(value, out, path))?;
        }
        Ty::SchemaOrBool(id) => {
            encode_key(number, WireType::LengthDelimited, out);
            nested(out, |out| {
                special::encode_schema_or_bool(message(id), value, out, path, depth)
            })?;
        }
        Ty::SchemaOrArray(id) => {
            encode_key(number, WireType::LengthDelimited, out);
            nested(out, |out| {
                special::encode_schema_or_array(message(id), value, out, path, depth)
            })?;
        }
        Ty::SchemaOrStringArray(id) => {
            encode_key(number, WireType::LengthDelimited, out);
            nested(out, |out| {
                special::encode_schema_or_string_array(message(id), value, out, path, depth)
            })?;
        }
        Ty::StringList => {
            let items = value
                .as_array()
                .ok_or_else(|| Error::new(path, "expected a list of strings"))?;
            encode_key(number, WireType::LengthDelimited, out);
            nested(out, |out| {
                for (index, item) in items.iter().enumerate() {
                    let text = item.as_str().ok_or_else(|| {
                        Error::new(&Path::index(path, index), "expected a string")
                    })?;
                    write_string(1, text, out);
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

pub(super) fn write_string(number: u32, text: &str, out: &mut Vec<u8>) {
    write_bytes(number, text.as_bytes(), out);
}

pub(super) fn write_bytes(number: u32, bytes: &[u8], out: &mut Vec<u8>) {
    encode_key(number, WireType::LengthDelimited, out);
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Writes a length-delimited body: a one-byte length is reserved and widened afterwards when the
/// body turns out to be 128 bytes or longer, so small messages are written in one pass.
pub(super) fn nested(
    out: &mut Vec<u8>,
    body: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
) -> Result<(), Error> {
    let start = out.len();
    out.push(0);
    body(out)?;
    let length = out.len() - start - 1;
    if length < 0x80 {
        out[start] = length as u8;
    } else {
        let mut prefix = Vec::with_capacity(encoded_len_varint(length as u64));
        encode_varint(length as u64, &mut prefix);
        out.splice(start..=start, prefix);
    }
    Ok(())
}
