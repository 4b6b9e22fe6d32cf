//! Media types in and out: request bodies in JSON or protobuf (by Content-Type), and responses,
//! errors and watch events in whichever of the two the client's Accept prefers, as
//! kube-apiserver negotiates them.

use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use flotilla_apimachinery::{json, protobuf, schema};
use http::{StatusCode, header};
use serde_json::Value;

use super::{Body, handlers::MAX_BODY_BYTES, status::ApiError, watch::event_line};

/// The JSON media type.
const JSON: &str = "application/json";

/// How a response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json`.
    Json,
    /// `application/vnd.kubernetes.protobuf`, for the kinds that have a protobuf schema.
    Protobuf,
}

/// The encoding the client prefers: the first media range of Accept (by quality, then order)
/// that the server can write. Protobuf also serves the PartialObjectMetadata rendering, which
/// has a schema; a Table has none, so such a range is passed over as upstream passes it over.
pub fn output(accept: Option<&str>) -> Encoding {
    let Some(accept) = accept else {
        return Encoding::Json;
    };
    let mut ranges: Vec<(f32, usize, &str)> = accept
        .split(',')
        .enumerate()
        .map(|(order, range)| {
            let quality = range
                .split(';')
                .skip(1)
                .find_map(|parameter| parameter.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse().ok())
                .unwrap_or(1.0);
            (quality, order, range.trim())
        })
        .filter(|(quality, _, _)| *quality > 0.0)
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, range) in ranges {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let rendering = parts.find_map(|parameter| parameter.strip_prefix("as="));
        match media {
            protobuf::MEDIA_TYPE
                if rendering.is_none_or(|r| r.starts_with("PartialObjectMetadata")) =>
            {
                return Encoding::Protobuf;
            }
            JSON | "application/*" | "*/*" => return Encoding::Json,
            _ => {}
        }
    }
    Encoding::Json
}

/// Decodes a request body that must hold an object: JSON, or protobuf as Go clients send it.
pub fn decode_body(body: &[u8], content_type: Option<&str>) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let media = content_type
        .unwrap_or(JSON)
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let value: Value = match media {
        protobuf::MEDIA_TYPE => protobuf::decode_object(body).map_err(|err| {
            ApiError::bad_request(format!(
                "error decoding the request body as protobuf: {err}"
            ))
        })?,
        JSON | "*/*" | "" => serde_json::from_slice(body).map_err(|err| {
            ApiError::bad_request(format!("error decoding the request body as JSON: {err}"))
        })?,
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format ({other}) - accepted media types include: application/json, application/vnd.kubernetes.protobuf"
            )));
        }
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object (a Kubernetes object)",
        ));
    }
    Ok(value)
}

/// A body that may be empty (DeleteOptions of a DELETE).
pub fn decode_optional(body: &[u8], content_type: Option<&str>) -> Result<Option<Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    decode_body(body, content_type).map(Some)
}

/// A response holding one object, list or Status. Protobuf falls back to JSON for what has no
/// protobuf schema (a Table); clients read the answer by its Content-Type, so both are understood.
pub fn respond(encoding: Encoding, code: StatusCode, body: &Value) -> Response {
    let (content_type, bytes) = encode(encoding, body);
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(bytes))
        .unwrap_or_else(|_| ApiError::internal("building the response").into_response())
}

/// An error as a Status in the negotiated encoding.
pub fn error_response(encoding: Encoding, error: ApiError) -> Response {
    let protobuf_body = (encoding == Encoding::Protobuf)
        .then(|| protobuf::encode_object(&error.to_status()).ok())
        .flatten();
    // The JSON response carries the headers (Retry-After); only the body changes.
    let mut response = error.into_response();
    if let Some(bytes) = protobuf_body {
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(protobuf::MEDIA_TYPE),
        );
        headers.remove(header::CONTENT_LENGTH);
        *response.body_mut() = Body::from(bytes);
    }
    response
}

/// The bytes and Content-Type of one body.
fn encode(encoding: Encoding, body: &Value) -> (&'static str, Vec<u8>) {
    let api_version = body["apiVersion"].as_str().unwrap_or_default();
    let kind = body["kind"].as_str().unwrap_or_default();
    if encoding == Encoding::Protobuf && schema::kind_message(api_version, kind).is_some() {
        match protobuf::encode_object(body) {
            Ok(bytes) => return (protobuf::MEDIA_TYPE, bytes),
            Err(err) => tracing::warn!(
                "answering in JSON: the object does not fit its protobuf schema: {err}"
            ),
        }
    }
    // kube-apiserver's encoder (json.Encoder) ends every body with a newline.
    let mut text = json::to_vec(body);
    text.push(b'\n');
    (JSON, text)
}

/// The Content-Type of a watch stream.
pub fn watch_content_type(encoding: Encoding) -> &'static str {
    match encoding {
        Encoding::Json => JSON,
        Encoding::Protobuf => protobuf::WATCH_MEDIA_TYPE,
    }
}

/// One watch event: a JSON line, or a length-prefixed protobuf WatchEvent. A stream has one
/// Content-Type, so an object without a protobuf schema cannot fall back to JSON here; it ends
/// the stream with an error event instead.
pub fn watch_event(encoding: Encoding, kind: &str, object: &Value) -> Bytes {
    match encoding {
        Encoding::Json => event_line(kind, object),
        Encoding::Protobuf => match protobuf::encode_watch_event(kind, object) {
            Ok(bytes) => Bytes::from(bytes),
            Err(err) => {
                let error =
                    ApiError::internal(format!("encoding a watch event as protobuf: {err}"));
                let status = error.to_status();
                Bytes::from(protobuf::encode_watch_event("ERROR", &status).unwrap_or_default())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_first_range_the_server_can_write() {
        assert_eq!(output(None), Encoding::Json);
        assert_eq!(
            output(Some(
                "application/vnd.kubernetes.protobuf, application/json"
            )),
            Encoding::Protobuf
        );
        assert_eq!(
            output(Some(
                "application/json, application/vnd.kubernetes.protobuf"
            )),
            Encoding::Json
        );
        assert_eq!(
            output(Some(
                "application/vnd.kubernetes.protobuf;q=0.5, application/json;q=0.9"
            )),
            Encoding::Json
        );
        // kubectl get: a Table, which has no protobuf form.
        assert_eq!(
            output(Some(
                "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json"
            )),
            Encoding::Json
        );
        // client-go's metadata client.
        assert_eq!(
            output(Some(
                "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
            )),
            Encoding::Protobuf
        );
        assert_eq!(output(Some("text/html, */*")), Encoding::Json);
    }

    #[test]
    fn bodies_decode_by_content_type() {
        let object = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}});
        let bytes = protobuf::encode_object(&object).unwrap();
        assert_eq!(
            decode_body(&bytes, Some("application/vnd.kubernetes.protobuf")).unwrap(),
            object
        );
        let err = decode_body(
            b"k8s\0\x0a\x7f",
            Some("application/vnd.kubernetes.protobuf"),
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.message.contains("protobuf"), "{}", err.message);
        let err = decode_body(b"<x/>", Some("application/xml")).unwrap_err();
        assert_eq!(err.code, 415);
    }

    #[test]
    fn protobuf_answers_fall_back_to_json_for_kinds_without_a_schema() {
        let table =
            serde_json::json!({"apiVersion": "meta.k8s.io/v1", "kind": "Table", "rows": []});
        let (content_type, _) = encode(Encoding::Protobuf, &table);
        assert_eq!(content_type, JSON);
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
        let (content_type, bytes) = encode(Encoding::Protobuf, &pod);
        assert_eq!(content_type, protobuf::MEDIA_TYPE);
        assert!(bytes.starts_with(protobuf::MAGIC));
    }
}
