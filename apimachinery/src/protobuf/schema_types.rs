//! The shape of the generated schema table (`schema.rs`).

/// One protobuf message of upstream's `generated.proto`, with the JSON facts of its Go struct.
#[derive(Debug)]
pub struct Message {
    /// The full proto name (`k8s.io.api.apps.v1.Deployment`).
    pub name: &'static str,
    /// The fields, in field-number order (the order gogo-protobuf writes them).
    pub fields: &'static [Field],
    /// Positions into `fields`, sorted by JSON name (for lookups while encoding).
    pub by_json: &'static [usize],
}

/// One field of a message.
#[derive(Debug)]
pub struct Field {
    /// The protobuf field number.
    pub number: u32,
    /// The JSON name (the Go `json` tag's name; the proto name for inline fields).
    pub json: &'static str,
    /// The element type (of each element for repeated fields, of the values for maps).
    pub ty: Ty,
    /// Single, repeated or a `map<string, ty>`.
    pub label: Label,
    /// The Go field is a pointer: a zero value is still a value (`replicas: 0`).
    pub pointer: bool,
    /// The Go JSON tag says `omitempty`: a zero scalar is left out of JSON.
    pub omitempty: bool,
    /// The Go JSON tag says `inline`: the nested message's fields sit in the parent's JSON object.
    pub inline: bool,
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    /// At most one.
    Single,
    /// A list.
    Repeated,
    /// A `map<string, ty>`: repeated entries with the key in field 1 and the value in field 2.
    Map,
}

/// The type of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A JSON string.
    String,
    /// A JSON base64 string (Go `[]byte`).
    Bytes,
    /// A JSON boolean.
    Bool,
    /// A JSON number that fits int32.
    Int32,
    /// A JSON number that fits int64.
    Int64,
    /// A nested message, by id into `MESSAGES`.
    Message(usize),
    /// `metav1.Time`: an RFC 3339 string with seconds, a `Timestamp` on the wire.
    Time,
    /// `metav1.MicroTime`: an RFC 3339 string with microseconds, a `Timestamp` on the wire.
    MicroTime,
    /// `metav1.FieldsV1`: any JSON, its serialization on the wire.
    FieldsV1,
    /// `runtime.RawExtension`: any JSON object, its serialization on the wire.
    RawExtension,
    /// `intstr.IntOrString`: a JSON number or string; type, intVal and strVal on the wire.
    IntOrString,
    /// `resource.Quantity`: a JSON string; its text on the wire.
    Quantity,
    /// A named Go `[]string` (`ExtraValue`, `Verbs`): a JSON array; `repeated string items = 1`.
    StringList,
}

/// A message that is a kind of its own (embeds TypeMeta).
#[derive(Debug)]
pub struct Kind {
    /// The API group (`""` for core, `meta.k8s.io` for the meta types).
    pub group: &'static str,
    /// The version.
    pub version: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// The message id.
    pub message: usize,
}
