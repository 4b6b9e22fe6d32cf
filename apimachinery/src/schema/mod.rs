//! What upstream's Go API types say about every kind, as one generated table (`generated.rs`,
//! written by `cargo xtask api-schema` from k8s.io/api, k8s.io/apimachinery and
//! k8s.io/apiextensions-apiserver): the protobuf
//! wire (field numbers and types), the JSON form (names, pointers, omitempty, inline structs) and
//! how lists, maps and structs merge (patch strategies and merge keys, list types and map keys).
//! The protobuf codec and the OpenAPI documents read it.

#[rustfmt::skip]
mod generated;

/// One protobuf message of upstream's `generated.proto`, with the JSON facts of its Go struct.
#[derive(Debug)]
pub struct Message {
    /// The full proto name (`k8s.io.api.apps.v1.Deployment`).
    pub name: &'static str,
    /// The fields, in field-number order (the order gogo-protobuf writes them).
    pub fields: &'static [Field],
    /// Positions into `fields`, sorted by JSON name (for lookups while encoding).
    pub by_json: &'static [usize],
    /// Positions into `fields` in the Go struct's declaration order: the order of JSON keys.
    pub by_declaration: &'static [usize],
    /// The Go struct embeds TypeMeta: its JSON starts with `kind` and `apiVersion`.
    pub type_meta: bool,
    /// `+structType=atomic`: the struct is replaced as a whole when merged.
    pub atomic: bool,
}

impl Message {
    /// The field with this JSON name, also among the fields of inline structs (a Volume's
    /// `emptyDir` is a field of its inline VolumeSource).
    pub fn field(&'static self, json: &str) -> Option<&'static Field> {
        if let Some(position) = self.position(json) {
            let field = &self.fields[position];
            if !field.inline {
                return Some(field);
            }
        }
        self.fields
            .iter()
            .filter(|field| field.inline)
            .find_map(|field| match field.ty {
                Ty::Message(id) => message(id).field(json),
                _ => None,
            })
    }

    /// The position in `fields` of the field with this JSON name, in this message itself.
    pub fn position(&self, json: &str) -> Option<usize> {
        self.by_json
            .binary_search_by(|&position| self.fields[position].json.cmp(json))
            .ok()
            .map(|found| self.by_json[found])
    }
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
    /// The `patchStrategy` struct tag (`merge`, `retainKeys`, `merge,retainKeys`, `replace`).
    pub patch_strategy: &'static str,
    /// The `patchMergeKey` struct tag: what identifies an element of a merged list.
    pub patch_merge_key: &'static str,
    /// `+listType`: `atomic`, `set` or `map` (empty when not declared).
    pub list_type: &'static str,
    /// `+listMapKey`s of a `map` list.
    pub list_map_keys: &'static [&'static str],
    /// `+mapType`: `atomic` or `granular` (empty when not declared).
    pub map_type: &'static str,
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
    /// A proto `double` (Go `float64`): a JSON number; 8 little-endian bytes on the wire.
    Double,
    /// apiextensions `JSON`: any JSON value, its serialization in `bytes raw = 1` (null: no raw).
    Json,
    /// apiextensions `JSONSchemaPropsOrBool`: `true`, `false` or a schema object (the message id);
    /// `bool allows = 1`, `JSONSchemaProps schema = 2` on the wire.
    SchemaOrBool(usize),
    /// apiextensions `JSONSchemaPropsOrArray`: a schema object or a list of them (the message
    /// id); `schema = 1`, `repeated jSONSchemas = 2` on the wire.
    SchemaOrArray(usize),
    /// apiextensions `JSONSchemaPropsOrStringArray`: a schema object (the message id) or a list of
    /// strings; `schema = 1`, `repeated string property = 2` on the wire.
    SchemaOrStringArray(usize),
}

impl Ty {
    /// The message a JSON object of this type follows: a nested message's, or the schema a
    /// union holds (for its object form).
    pub fn object_message(self) -> Option<&'static Message> {
        match self {
            Self::Message(id)
            | Self::SchemaOrBool(id)
            | Self::SchemaOrArray(id)
            | Self::SchemaOrStringArray(id) => Some(message(id)),
            _ => None,
        }
    }
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

/// The message of a kind, by its JSON apiVersion (`apps/v1`, `v1`) and kind. The meta types
/// (Status, DeleteOptions, ...) belong to every group version, as in upstream's scheme.
pub fn kind_message(api_version: &str, kind: &str) -> Option<&'static Message> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    find_kind(group, version, kind)
        .or_else(|| find_kind("meta.k8s.io", "v1", kind).filter(|_| version == "v1"))
        .map(|found| message(found.message))
}

/// Every kind the table knows.
pub fn kinds() -> &'static [Kind] {
    generated::KINDS
}

fn find_kind(group: &str, version: &str, kind: &str) -> Option<&'static Kind> {
    let kinds = generated::KINDS;
    kinds
        .binary_search_by(|candidate| {
            (candidate.group, candidate.version, candidate.kind).cmp(&(group, version, kind))
        })
        .ok()
        .map(|index| &kinds[index])
}

/// A message by id (`Ty::Message(id)`).
pub fn message(id: usize) -> &'static Message {
    &generated::MESSAGES[id]
}

/// A message by its full proto name (`k8s.io.api.apps.v1.Deployment`).
pub fn message_named(name: &str) -> Option<&'static Message> {
    let messages = generated::MESSAGES;
    messages
        .binary_search_by(|candidate| candidate.name.cmp(name))
        .ok()
        .map(|index| &messages[index])
}

/// Stands in where the table lacks a message it is generated to have (never, in practice).
pub(crate) static EMPTY: Message = Message {
    name: "",
    fields: &[],
    by_json: &[],
    by_declaration: &[],
    type_meta: false,
    atomic: false,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_carry_upstreams_merge_facts() {
        let pod_spec = message_named("k8s.io.api.core.v1.PodSpec").unwrap();
        let containers = pod_spec.field("containers").unwrap();
        assert_eq!(
            (containers.patch_strategy, containers.patch_merge_key),
            ("merge", "name")
        );
        assert_eq!(
            (containers.list_type, containers.list_map_keys),
            ("map", &["name"][..])
        );
        let volumes = pod_spec.field("volumes").unwrap();
        assert_eq!(volumes.patch_strategy, "merge,retainKeys");
        // A field of an inline struct is found through its parent.
        let volume = message_named("k8s.io.api.core.v1.Volume").unwrap();
        assert!(volume.field("emptyDir").is_some());
        assert!(volume.field("volumeSource").is_none());
        assert!(
            message_named("k8s.io.api.core.v1.ObjectReference")
                .unwrap()
                .atomic
        );
        let ports = message_named("k8s.io.api.core.v1.ServiceSpec")
            .unwrap()
            .field("ports")
            .unwrap();
        assert_eq!(ports.list_map_keys, &["port", "protocol"]);
    }

    #[test]
    fn kinds_resolve_by_api_version_and_meta_kinds_belong_to_every_version() {
        assert_eq!(
            kind_message("apps/v1", "Deployment").unwrap().name,
            "k8s.io.api.apps.v1.Deployment"
        );
        assert_eq!(
            kind_message("v1", "Status").unwrap().name,
            "k8s.io.apimachinery.pkg.apis.meta.v1.Status"
        );
        assert!(kind_message("batch/v1", "DeleteOptions").is_some());
        assert!(kind_message("apps/v1", "Pod").is_none());
    }
}
