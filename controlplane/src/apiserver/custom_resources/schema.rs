//! Structural OpenAPI v3 schemas of CustomResourceDefinitions (apiextensions.k8s.io/v1): parsing
//! and the CRD-time checks (apiextensions-apiserver's `schema/validation.go`, `complete.go`,
//! `defaulting/validation.go` and `apis/apiextensions/validation/validation.go`), validation of
//! custom objects (kube-openapi's `pkg/validation/validate` as converted by
//! `apiserver/validation/validation.go`, plus `schema/objectmeta` and `schema/listtype`),
//! pruning and defaulting. Pure functions over JSON values.
//!
//! `x-kubernetes-validations` (CEL) are kept raw in [`Structural::validations`]; parsing checks
//! that they compile, [`super::cel::Rules`] evaluates them.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::apiserver::machinery::field::{Cause, CauseReason, Errs, child, compact, key};

mod formats;
mod gofmt;
mod pattern;
mod prune;
mod structural;
mod validate;

#[cfg(test)]
mod tests;

pub use pattern::pattern_matches;

/// `additionalProperties`: a boolean or a schema.
#[derive(Debug, Clone, PartialEq)]
pub enum AdditionalProperties {
    /// `additionalProperties: true|false` (no schema: values are pruned like unknown fields).
    Bool(bool),
    /// `additionalProperties: {...}`: the schema of every value.
    Schema(Box<Structural>),
}

impl AdditionalProperties {
    /// The schema of the values, if one is given.
    pub fn schema(&self) -> Option<&Structural> {
        match self {
            AdditionalProperties::Schema(s) => Some(s),
            AdditionalProperties::Bool(_) => None,
        }
    }
}

/// A CRD version's `schema.openAPIV3Schema`, parsed into a tree.
///
/// Every node (also those under `allOf`/`anyOf`/`oneOf`/`not`) has the same shape; the
/// structural-schema rules of [`Structural::parse`] decide which keywords may appear where.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Structural {
    /// `type` ("" when unset).
    pub type_: String,
    /// `format` ("" when unset).
    pub format: String,
    /// `nullable`.
    pub nullable: bool,
    /// `default` (None when unset or null).
    pub default: Option<Value>,
    /// `title`.
    pub title: String,
    /// `description`.
    pub description: String,
    /// `properties`.
    pub properties: BTreeMap<String, Structural>,
    /// `additionalProperties`.
    pub additional_properties: Option<AdditionalProperties>,
    /// `items` (a single schema; the array form is rejected by [`Structural::parse`]).
    pub items: Option<Box<Structural>>,
    /// `x-kubernetes-preserve-unknown-fields` (Some(false) is rejected by parse).
    pub x_preserve_unknown_fields: Option<bool>,
    /// `x-kubernetes-embedded-resource`.
    pub x_embedded_resource: bool,
    /// `x-kubernetes-int-or-string`.
    pub x_int_or_string: bool,
    /// `x-kubernetes-list-type`.
    pub x_list_type: Option<String>,
    /// `x-kubernetes-list-map-keys`.
    pub x_list_map_keys: Vec<String>,
    /// `x-kubernetes-map-type`.
    pub x_map_type: Option<String>,
    /// `x-kubernetes-validations`, raw (compiled by [`super::cel::Rules`]).
    pub validations: Vec<Value>,
    /// `required`.
    pub required: Vec<String>,
    /// `enum` (None when unset).
    pub enum_values: Option<Vec<Value>>,
    /// `pattern` ("" when unset).
    pub pattern: String,
    /// `maximum`.
    pub maximum: Option<f64>,
    /// `exclusiveMaximum`.
    pub exclusive_maximum: bool,
    /// `minimum`.
    pub minimum: Option<f64>,
    /// `exclusiveMinimum`.
    pub exclusive_minimum: bool,
    /// `multipleOf`.
    pub multiple_of: Option<f64>,
    /// `maxLength`.
    pub max_length: Option<i64>,
    /// `minLength`.
    pub min_length: Option<i64>,
    /// `maxItems`.
    pub max_items: Option<i64>,
    /// `minItems`.
    pub min_items: Option<i64>,
    /// `uniqueItems`.
    pub unique_items: bool,
    /// `maxProperties`.
    pub max_properties: Option<i64>,
    /// `minProperties`.
    pub min_properties: Option<i64>,
    /// `allOf`.
    pub all_of: Vec<Structural>,
    /// `anyOf`.
    pub any_of: Vec<Structural>,
    /// `oneOf`.
    pub one_of: Vec<Structural>,
    /// `not`.
    pub not: Option<Box<Structural>>,
    /// Keywords CRDs do not support, with upstream's message (id, $ref, definitions, ...).
    unsupported: Vec<(&'static str, &'static str)>,
    /// `externalDocs` is set.
    external_docs: bool,
    /// The node as written (the int-or-string `anyOf` pattern is matched on it, as upstream
    /// compares whole nested schemas).
    raw: Value,
}

impl Structural {
    /// Parses and checks a schema as upstream's CRD validation does (structural-schema rules,
    /// allowed keywords, defaults valid and pruned, metadata at the root restricted to
    /// name/generateName). `path` is the field path of the schema in the CRD (e.g.
    /// "spec.versions[0].schema.openAPIV3Schema"); every cause's field is below it.
    pub fn parse(schema: &Value, path: &str) -> Result<Self, Vec<Cause>> {
        let mut e = Errs::default();
        let s = parse_node(&mut e, schema, path);
        if !e.0.is_empty() {
            return Err(e.0);
        }
        let causes = structural::check(&s, path);
        if causes.is_empty() {
            Ok(s)
        } else {
            Err(causes)
        }
    }

    /// Validates a custom object (already pruned and defaulted) against the schema.
    /// apiVersion/kind/metadata at the root are not checked by the schema except the
    /// metadata.name/generateName restrictions if given. Causes' fields are upstream's paths
    /// like "spec.replicas", "spec.ports[0].name".
    pub fn validate(&self, object: &Value) -> Vec<Cause> {
        validate::validate_object(self, object)
    }

    /// Removes fields the schema does not declare (unless x-kubernetes-preserve-unknown-fields),
    /// never apiVersion/kind/metadata at the root or of x-kubernetes-embedded-resource objects;
    /// returns the removed fields' paths sorted, in upstream's form (`spec.foo`,
    /// `spec.items[0].bar`) for `unknown field "spec.foo"` messages.
    pub fn prune(&self, object: &mut Value) -> Vec<String> {
        prune::prune(object, self, true)
    }

    /// Applies `default`s top-down as upstream's structural defaulting does: a property that is
    /// absent, or null while not nullable, gets its default; then objects, array items and
    /// additionalProperties values (including just-defaulted ones) are defaulted in turn.
    pub fn apply_defaults(&self, object: &mut Value) {
        prune::apply_defaults(object, self);
    }

    /// Drops null fields whose schema is neither nullable nor defaulted (upstream's
    /// `PruneNonNullableNullsWithoutDefaults`, run after pruning and before defaulting).
    pub fn drop_non_nullable_nulls(&self, object: &mut Value) {
        prune::drop_non_nullable_nulls(object, self);
    }

    /// The schema at a dotted JSON path such as ".spec.replicas" (for additionalPrinterColumns
    /// / scale paths checks), if declared. Map keys step through `additionalProperties`;
    /// `name[0]` or `name[*]` steps into `items`.
    pub fn at_path(&self, json_path: &str) -> Option<&Structural> {
        let mut node = self;
        for seg in json_path.split('.').filter(|s| !s.is_empty()) {
            let (name, indexes) = match seg.find('[') {
                Some(i) => (&seg[..i], &seg[i..]),
                None => (seg, ""),
            };
            if !name.is_empty() {
                node = match node.properties.get(name) {
                    Some(p) => p,
                    None => node.additional_properties.as_ref()?.schema()?,
                };
            }
            // Each `[..]` is one array level.
            for _ in indexes.matches('[') {
                node = node.items.as_deref()?;
            }
        }
        Some(node)
    }

    /// The schema's `type` ("object", "string", ...; "" when unset).
    pub fn type_name(&self) -> &str {
        &self.type_
    }

    /// The schema's `format` ("" when unset), for printer column checks.
    pub fn format_name(&self) -> &str {
        &self.format
    }

    /// Whether the node declares anything beyond an empty schema (used by the metadata rule).
    fn has_value_validation(&self) -> bool {
        !self.format.is_empty()
            || self.maximum.is_some()
            || self.exclusive_maximum
            || self.minimum.is_some()
            || self.exclusive_minimum
            || self.max_length.is_some()
            || self.min_length.is_some()
            || !self.pattern.is_empty()
            || self.max_items.is_some()
            || self.min_items.is_some()
            || self.unique_items
            || self.multiple_of.is_some()
            || self.enum_values.as_ref().is_some_and(|v| !v.is_empty())
            || self.max_properties.is_some()
            || self.min_properties.is_some()
            || !self.required.is_empty()
            || !self.all_of.is_empty()
            || !self.any_of.is_empty()
            || !self.one_of.is_empty()
            || self.not.is_some()
    }

    /// The types kube-openapi checks: int-or-string means `[integer, string]`.
    fn types(&self) -> Vec<&str> {
        if self.x_int_or_string {
            vec!["integer", "string"]
        } else if self.type_.is_empty() {
            Vec::new()
        } else {
            vec![self.type_.as_str()]
        }
    }

    /// `x-kubernetes-preserve-unknown-fields: true`.
    fn preserves(&self) -> bool {
        self.x_preserve_unknown_fields == Some(true)
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing: a JSON value of any shape becomes a tree or causes (upstream rejects such CRDs when
// decoding JSONSchemaProps; the causes name the keyword and the expected JSON type).
// ---------------------------------------------------------------------------------------------

fn shape_error(e: &mut Errs, path: &str, v: &Value, want: &str) {
    e.invalid(path, &compact(v), &format!("must be {want}"));
}

fn parse_node(e: &mut Errs, v: &Value, path: &str) -> Structural {
    let mut s = Structural {
        raw: v.clone(),
        ..Structural::default()
    };
    let Some(m) = v.as_object() else {
        shape_error(e, path, v, "an object");
        return s;
    };
    for (k, val) in m {
        let p = child(path, k);
        // JSON null decodes as "unset" for every keyword.
        if val.is_null() {
            continue;
        }
        match k.as_str() {
            "type" => s.type_ = string_kw(e, &p, val),
            "format" => s.format = string_kw(e, &p, val),
            "title" => s.title = string_kw(e, &p, val),
            "description" => s.description = string_kw(e, &p, val),
            "pattern" => s.pattern = string_kw(e, &p, val),
            "nullable" => s.nullable = bool_kw(e, &p, val),
            "exclusiveMaximum" => s.exclusive_maximum = bool_kw(e, &p, val),
            "exclusiveMinimum" => s.exclusive_minimum = bool_kw(e, &p, val),
            "uniqueItems" => s.unique_items = bool_kw(e, &p, val),
            "x-kubernetes-embedded-resource" => s.x_embedded_resource = bool_kw(e, &p, val),
            "x-kubernetes-int-or-string" => s.x_int_or_string = bool_kw(e, &p, val),
            "x-kubernetes-preserve-unknown-fields" => {
                s.x_preserve_unknown_fields = Some(bool_kw(e, &p, val));
            }
            "x-kubernetes-list-type" => s.x_list_type = Some(string_kw(e, &p, val)),
            "x-kubernetes-map-type" => s.x_map_type = Some(string_kw(e, &p, val)),
            "x-kubernetes-list-map-keys" => s.x_list_map_keys = strings_kw(e, &p, val),
            "required" => s.required = strings_kw(e, &p, val),
            "maximum" => s.maximum = number_kw(e, &p, val),
            "minimum" => s.minimum = number_kw(e, &p, val),
            "multipleOf" => s.multiple_of = number_kw(e, &p, val),
            "maxLength" => s.max_length = int_kw(e, &p, val),
            "minLength" => s.min_length = int_kw(e, &p, val),
            "maxItems" => s.max_items = int_kw(e, &p, val),
            "minItems" => s.min_items = int_kw(e, &p, val),
            "maxProperties" => s.max_properties = int_kw(e, &p, val),
            "minProperties" => s.min_properties = int_kw(e, &p, val),
            "default" => s.default = Some(val.clone()),
            "enum" => match val.as_array() {
                Some(a) => s.enum_values = Some(a.clone()),
                None => shape_error(e, &p, val, "an array"),
            },
            "x-kubernetes-validations" => match val.as_array() {
                Some(a) => s.validations = a.clone(),
                None => shape_error(e, &p, val, "an array"),
            },
            "properties" => match val.as_object() {
                Some(props) => {
                    for (name, sub) in props {
                        let sub_path = key(&p, name);
                        s.properties
                            .insert(name.clone(), parse_node(e, sub, &sub_path));
                    }
                }
                None => shape_error(e, &p, val, "an object"),
            },
            "additionalProperties" => match val {
                Value::Bool(b) => s.additional_properties = Some(AdditionalProperties::Bool(*b)),
                Value::Object(_) => {
                    s.additional_properties = Some(AdditionalProperties::Schema(Box::new(
                        parse_node(e, val, &p),
                    )));
                }
                _ => shape_error(e, &p, val, "a boolean or an object"),
            },
            "items" => match val {
                Value::Object(_) => s.items = Some(Box::new(parse_node(e, val, &p))),
                Value::Array(_) => s.unsupported.push(("items", ITEMS_ARRAY)),
                _ => shape_error(e, &p, val, "an object"),
            },
            "allOf" => s.all_of = schemas_kw(e, &p, val),
            "anyOf" => s.any_of = schemas_kw(e, &p, val),
            "oneOf" => s.one_of = schemas_kw(e, &p, val),
            "not" => s.not = Some(Box::new(parse_node(e, val, &p))),
            "externalDocs" => s.external_docs = true,
            "id" if !string_kw(e, &p, val).is_empty() => {
                s.unsupported.push(("id", "id is not supported"));
            }
            "$ref" => s.unsupported.push(("$ref", "$ref is not supported")),
            "additionalItems" => s
                .unsupported
                .push(("additionalItems", "additionalItems is not supported")),
            "patternProperties" if val.as_object().is_some_and(|o| !o.is_empty()) => {
                s.unsupported
                    .push(("patternProperties", "patternProperties is not supported"));
            }
            "definitions" if val.as_object().is_some_and(|o| !o.is_empty()) => {
                s.unsupported
                    .push(("definitions", "definitions is not supported"));
            }
            "dependencies" => s
                .unsupported
                .push(("dependencies", "dependencies is not supported")),
            // `$schema`, `example` and unknown keywords carry no validation.
            _ => {}
        }
    }
    s
}

const ITEMS_ARRAY: &str = "items must be a schema object and not an array";

fn string_kw(e: &mut Errs, p: &str, v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => {
            shape_error(e, p, v, "a string");
            String::new()
        }
    }
}

fn bool_kw(e: &mut Errs, p: &str, v: &Value) -> bool {
    match v.as_bool() {
        Some(b) => b,
        None => {
            shape_error(e, p, v, "a boolean");
            false
        }
    }
}

fn number_kw(e: &mut Errs, p: &str, v: &Value) -> Option<f64> {
    let n = v.as_f64();
    if n.is_none() {
        shape_error(e, p, v, "a number");
    }
    n
}

fn int_kw(e: &mut Errs, p: &str, v: &Value) -> Option<i64> {
    let n = v.as_i64();
    if n.is_none() {
        shape_error(e, p, v, "an integer");
    }
    n
}

fn strings_kw(e: &mut Errs, p: &str, v: &Value) -> Vec<String> {
    let Some(a) = v.as_array() else {
        shape_error(e, p, v, "an array of strings");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, x) in a.iter().enumerate() {
        match x.as_str() {
            Some(s) => out.push(s.to_string()),
            None => shape_error(e, &format!("{p}[{i}]"), x, "a string"),
        }
    }
    out
}

fn schemas_kw(e: &mut Errs, p: &str, v: &Value) -> Vec<Structural> {
    let Some(a) = v.as_array() else {
        shape_error(e, p, v, "an array");
        return Vec::new();
    };
    a.iter()
        .enumerate()
        .map(|(i, x)| parse_node(e, x, &format!("{p}[{i}]")))
        .collect()
}

/// A cause with a pre-formatted value, for callers outside [`Errs`]' helpers.
fn cause(reason: CauseReason, field: &str, value: Option<&str>, detail: &str) -> Cause {
    let mut e = Errs::default();
    e.push(reason, field, value, detail);
    e.0.remove(0)
}
