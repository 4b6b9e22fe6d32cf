//! The JSON forms of the types Go marshals by hand: times, byte strings, integers.

use base64::Engine as _;
use serde_json::Value;

use super::Error;

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
