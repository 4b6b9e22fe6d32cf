//! How a value merges, read from the generated schema table (`flotilla_apimachinery::schema`),
//! the way kube-openapi's `schemaconv` turns upstream's OpenAPI into structured-merge-diff types:
//! lists by `x-kubernetes-list-type`, else by their patch strategy, else atomic; maps granular
//! unless `mapType=atomic`; structs granular unless `structType=atomic`.

use flotilla_apimachinery::schema::{self, Field, Label, Message, Ty};
use serde_json::Value;

/// How the elements of a list are told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced as a whole.
    Atomic,
    /// Scalars, each its own element (`v:"x"`).
    Set,
    /// Objects, told apart by these key fields (`k:{"name":"x"}`).
    Map(&'static [&'static str]),
}

/// The merge-relevant type of one position in an object.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// A struct with named fields; `atomic` structs are replaced as a whole.
    Struct {
        /// The struct's message in the schema table.
        message: &'static Message,
        /// `+structType=atomic` (or `+mapType=atomic` on the field).
        atomic: bool,
    },
    /// A `map<string, _>`.
    Map {
        /// The type of the values.
        values: Ty,
        /// `+mapType=atomic`.
        atomic: bool,
    },
    /// A list.
    List {
        /// The type of the items.
        items: Ty,
        /// How items are told apart.
        kind: ListKind,
    },
    /// A leaf: strings, numbers, booleans, times, quantities, int-or-strings.
    Scalar,
    /// Any JSON (`RawExtension`, kinds the table lacks): objects merge key by key, lists are
    /// atomic, as structured-merge-diff's "deduced" type.
    Deduced,
}

/// What a shape amounts to for one concrete value.
#[derive(Debug, Clone, Copy)]
pub enum Resolved {
    /// A leaf (scalars, atomic lists, maps and structs, and values of the wrong JSON type).
    Leaf,
    /// A granular map or struct.
    Fields,
    /// A granular list.
    Items(ListKind),
}

/// Upstream's OpenAPI gives these map-list keys a default, so an element may leave them out
/// (`ports: [{containerPort: 80}]` is keyed `protocol="TCP"`). The generated table carries no
/// defaults; `protocol` is the only defaulted list-map key among the built-in kinds.
const KEY_DEFAULTS: &[(&str, &str)] = &[("protocol", "TCP")];

impl Shape {
    /// The shape of a kind's objects, or [`Shape::Deduced`] for kinds the table lacks.
    pub fn of_kind(api_version: &str, kind: &str) -> Self {
        schema::kind_message(api_version, kind).map_or(Self::Deduced, |message| Self::Struct {
            message,
            atomic: false,
        })
    }

    /// The shape of a struct field.
    pub fn of_field(field: &'static Field) -> Self {
        match field.label {
            Label::Repeated => Self::List {
                items: field.ty,
                kind: list_kind(field),
            },
            Label::Map => Self::Map {
                values: field.ty,
                atomic: field.map_type == "atomic",
            },
            Label::Single => match Self::of_value(field.ty) {
                Self::Struct { message, atomic } => Self::Struct {
                    message,
                    atomic: atomic || field.map_type == "atomic",
                },
                other => other,
            },
        }
    }

    /// The shape of one value of type `ty` (a list item, a map value, a single field).
    pub fn of_value(ty: Ty) -> Self {
        match ty {
            Ty::Message(id) => {
                let message = schema::message(id);
                Self::Struct {
                    message,
                    atomic: message.atomic,
                }
            }
            // A named Go []string without a list type: atomic.
            Ty::StringList => Self::List {
                items: Ty::String,
                kind: ListKind::Atomic,
            },
            // Untyped JSON (a CRD's schemas, defaults, examples): upstream deduces it too.
            Ty::RawExtension
            | Ty::FieldsV1
            | Ty::Json
            | Ty::SchemaOrBool(_)
            | Ty::SchemaOrArray(_)
            | Ty::SchemaOrStringArray(_) => Self::Deduced,
            _ => Self::Scalar,
        }
    }

    /// The shape of the member `key` of a struct or map (fields the schema lacks are deduced).
    pub fn child(self, key: &str) -> Self {
        match self {
            Self::Struct { message, .. } => {
                message.field(key).map_or(Self::Deduced, Self::of_field)
            }
            Self::Map { values, .. } => Self::of_value(values),
            _ => Self::Deduced,
        }
    }

    /// Whether `key` is a declared field of this struct (not a map key).
    pub fn is_named_field(self, key: &str) -> bool {
        matches!(self, Self::Struct { message, .. } if message.field(key).is_some())
    }

    /// What Go's zero value of this struct has for its field `key` when JSON leaves it out:
    /// fields without `omitempty` and nested non-pointer structs are always there (as null or
    /// `{}`), so upstream never sees them added or removed as a whole.
    pub fn zero_member(self, key: &str) -> Option<Value> {
        let Self::Struct { message, .. } = self else {
            return None;
        };
        let field = message.field(key)?;
        let by_value_struct =
            field.label == Label::Single && matches!(field.ty, Ty::Message(_)) && !field.pointer;
        if by_value_struct {
            Some(Value::Object(serde_json::Map::new()))
        } else if !field.omitempty {
            Some(Value::Null)
        } else {
            None
        }
    }

    /// The shape of a list's items.
    pub fn item(self) -> Self {
        match self {
            Self::List { items, .. } => Self::of_value(items),
            _ => Self::Deduced,
        }
    }

    /// What this shape means for `value`: a mismatched JSON type is a leaf, as is anything atomic.
    pub fn resolve(self, value: &Value) -> Resolved {
        match (self, value) {
            (Self::Struct { atomic: false, .. } | Self::Map { atomic: false, .. }, v)
                if v.is_object() || v.is_null() =>
            {
                Resolved::Fields
            }
            (Self::Deduced, Value::Object(_)) => Resolved::Fields,
            (Self::List { kind, .. }, v)
                if kind != ListKind::Atomic && (v.is_array() || v.is_null()) =>
            {
                Resolved::Items(kind)
            }
            _ => Resolved::Leaf,
        }
    }
}

/// kube-openapi's rule: the declared list type, else `patchStrategy=merge` (keyed by the patch
/// merge key, or a set without one), else atomic.
fn list_kind(field: &'static Field) -> ListKind {
    match field.list_type {
        "atomic" => ListKind::Atomic,
        "set" => ListKind::Set,
        "map" if !field.list_map_keys.is_empty() => ListKind::Map(field.list_map_keys),
        _ if field.patch_strategy.split(',').any(|part| part == "merge") => {
            if field.patch_merge_key.is_empty() {
                ListKind::Set
            } else {
                ListKind::Map(std::slice::from_ref(&field.patch_merge_key))
            }
        }
        _ => ListKind::Atomic,
    }
}

/// The default of a map-list key an element left out, if upstream declares one.
pub fn key_default(key: &str) -> Option<Value> {
    KEY_DEFAULTS
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, value)| Value::String((*value).to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_kinds_follow_kube_openapi() {
        let pod = Shape::of_kind("v1", "Pod");
        let spec = pod.child("spec");
        assert!(matches!(
            spec.child("containers"),
            Shape::List {
                kind: ListKind::Map(&["name"]),
                ..
            }
        ));
        let container = spec.child("containers").item();
        assert!(matches!(
            container.child("ports"),
            Shape::List {
                kind: ListKind::Map(&["containerPort", "protocol"]),
                ..
            }
        ));
        assert!(matches!(
            container.child("args"),
            Shape::List {
                kind: ListKind::Atomic,
                ..
            }
        ));
        let meta = pod.child("metadata");
        assert!(matches!(
            meta.child("finalizers"),
            Shape::List {
                kind: ListKind::Set,
                ..
            }
        ));
        assert!(matches!(
            meta.child("labels"),
            Shape::Map { atomic: false, .. }
        ));
        // LabelSelector is `+structType=atomic`.
        let selector = Shape::of_kind("apps/v1", "Deployment")
            .child("spec")
            .child("selector");
        assert!(matches!(selector, Shape::Struct { atomic: true, .. }));
        assert!(pod.is_named_field("spec"));
        assert!(!meta.child("labels").is_named_field("app"));
    }
}
