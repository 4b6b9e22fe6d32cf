//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), to and from the JSON form
//! the API server works with.
//!
//! An object on the wire is the magic `k8s\0` followed by a `runtime.Unknown` envelope: the
//! object's apiVersion and kind, and the object itself in upstream's `generated.proto` schema.
//! Watch streams frame `metav1.WatchEvent`s (without magic or envelope) with a 4-byte big-endian
//! length, each event's object being an enveloped object.
//!
//! The codec walks the generated table in [`crate::schema`] (see `cargo xtask api-schema`): it
//! knows each field's number and wire type, and from the Go struct behind the message how the
//! JSON side looks, so that decoding yields the JSON kube-apiserver would have written for the
//! same Go value (an explicit `replicas: 0` kept, a zero `generation` dropped, inline structs
//! flattened).

mod decode;
mod encode;
mod special;

use std::fmt;

use serde_json::Value;

use crate::schema::{Field, Label, Message, Ty, kind_message, message};
pub use decode::{decode_object, decode_watch_event};
pub use encode::{encode_object, encode_watch_event};

/// The media type.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
/// The media type of a watch stream.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";
/// The four bytes every enveloped object starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";
/// Nesting deeper than this is refused (a hostile body must not exhaust the stack).
const MAX_DEPTH: usize = 100;

/// Why a body could not be converted, and where in the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The JSON path of the field (`spec.template.spec.containers[0].ports`), empty at the top.
    pub path: String,
    /// What was wrong.
    pub message: String,
}

impl Error {
    fn new(path: &dyn fmt::Display, message: impl Into<String>) -> Self {
        Self {
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// Where in an object the codec is, rendered only when an error names it: the codec walks
/// every field, and a String per field would cost more than the encoding itself.
pub(super) struct Path<'a> {
    parent: &'a dyn fmt::Display,
    segment: Segment<'a>,
}

enum Segment<'a> {
    Field(&'a str),
    Index(usize),
    Key(&'a str),
}

impl<'a> Path<'a> {
    /// `parent.name`.
    pub(super) fn field(parent: &'a dyn fmt::Display, name: &'a str) -> Self {
        Self {
            parent,
            segment: Segment::Field(name),
        }
    }

    /// `parent[index]`.
    pub(super) fn index(parent: &'a dyn fmt::Display, index: usize) -> Self {
        Self {
            parent,
            segment: Segment::Index(index),
        }
    }

    /// `parent[key]`.
    pub(super) fn key(parent: &'a dyn fmt::Display, key: &'a str) -> Self {
        Self {
            parent,
            segment: Segment::Key(key),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parent = self.parent.to_string();
        match self.segment {
            Segment::Field(name) if parent.is_empty() => f.write_str(name),
            Segment::Field(name) => write!(f, "{parent}.{name}"),
            Segment::Index(index) => write!(f, "{parent}[{index}]"),
            Segment::Key(key) => write!(f, "{parent}[{key}]"),
        }
    }
}

/// The top of an object.
pub(super) const ROOT: &str = "";

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for Error {}

/// The JSON kube-apiserver would store for `object` (with apiVersion and kind): what a round
/// trip through the kind's Go struct gives, by the Go JSON rules the decoder applies (zero
/// plain fields with `omitempty` dropped, those without it present, fields no version of the
/// schema knows pruned).
pub fn normalize(object: &Value) -> Result<Value, Error> {
    decode_object(&encode_object(object)?)
}

/// The message `metav1.WatchEvent`.
fn watch_event_message() -> &'static Message {
    crate::schema::message_named("k8s.io.apimachinery.pkg.apis.meta.v1.WatchEvent")
        .unwrap_or(&crate::schema::EMPTY)
}

/// The JSON value of the apiVersion and kind of an object.
fn type_meta(object: &Value) -> (&str, &str) {
    (
        object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod apiextensions_tests;
#[cfg(test)]
mod tests;
