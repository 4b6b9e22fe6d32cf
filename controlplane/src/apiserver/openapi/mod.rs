//! The OpenAPI documents: v3 per group-version ([`v3`]) and the v2 document of the whole server
//! ([`v2`], in JSON or in gnostic's protobuf form, [`gnostic`]). Both carry the kinds' schemas from
//! k8s-openapi's JsonSchema impls (upstream's names and descriptions) with the extensions
//! upstream's documents have: `x-kubernetes-group-version-kind` on each kind, and on each field
//! how it merges (`x-kubernetes-patch-strategy`, `-patch-merge-key`, `-list-type`,
//! `-list-map-keys`, `-map-type`), from the Go struct tags in [`flotilla_apimachinery::schema`].
//! [`serve`] builds each document once per set of kinds and answers with kube-openapi's caching
//! headers.

pub mod gnostic;
pub mod serve;
pub mod v2;
pub mod v3;

use flotilla_apimachinery::schema;
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use super::registry::Resource;

pub use serve::Documents;

/// Adds a kind's schema (and every schema it refers to) to a generator, returning its `$ref`.
pub type SchemaOf = fn(&mut SchemaGenerator) -> schemars::Schema;

/// The [`SchemaOf`] of the k8s-openapi type `T`.
pub fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// The schemas of `resources` and of everything they refer to, by definition name: each kind's
/// own schema tagged with its group, version and kind, each field with its merge extensions.
/// `wrap_refs` writes a `$ref` that has a description of its own as `allOf: [{$ref}]`, as
/// kube-apiserver's v3 documents do (OpenAPI 3.0 ignores a `$ref`'s siblings); v2 keeps them.
fn component_schemas(
    resources: &[&Resource],
    settings: SchemaSettings,
    wrap_refs: bool,
) -> Map<String, Value> {
    let mut generator = settings.into_generator();
    let mut kinds = Vec::new();
    let mut own_schemas = Vec::new();
    for resource in resources {
        if let Some((name, schema)) = resource.strategy.openapi_schema() {
            // Its metadata refers to ObjectMeta, which the generator then adds.
            let _ = schema_of::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(
                &mut generator,
            );
            own_schemas.push((name.clone(), schema));
            kinds.push((name, *resource));
            continue;
        }
        let reference = (resource.strategy.schema())(&mut generator);
        let name = reference
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.rsplit('/').next())
            .map(str::to_owned);
        if let Some(name) = name {
            kinds.push((name, *resource));
        }
    }
    let mut schemas: Map<String, Value> = generator
        .take_definitions(true)
        .into_iter()
        .map(|(name, mut schema)| {
            if wrap_refs {
                wrap_sibling_refs(&mut schema);
            }
            add_merge_extensions(&name, &mut schema);
            untype(&name, &mut schema);
            (name, schema)
        })
        .collect();
    let object_meta = schemas
        .keys()
        .find(|name| name.ends_with("apis.meta.v1.ObjectMeta"))
        .cloned()
        .unwrap_or_default();
    for (name, mut schema) in own_schemas {
        if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
            let reference = if wrap_refs {
                json!({"allOf": [{"$ref": format!("{}{object_meta}", settings_prefix(wrap_refs))}],
                       "description": METADATA_DOC})
            } else {
                json!({"$ref": format!("{}{object_meta}", settings_prefix(wrap_refs)), "description": METADATA_DOC})
            };
            properties.insert("metadata".into(), reference);
            properties.insert(
                "apiVersion".into(),
                json!({"type": "string", "description": API_VERSION_DOC}),
            );
            properties.insert(
                "kind".into(),
                json!({"type": "string", "description": KIND_DOC}),
            );
        }
        schemas.insert(name, schema);
    }
    for (name, resource) in kinds {
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": resource.group, "version": resource.version, "kind": resource.kind}]),
            );
        }
    }
    schemas
}

/// Where a document's `$ref`s point (v3 components or v2 definitions).
fn settings_prefix(v3: bool) -> &'static str {
    if v3 {
        "#/components/schemas/"
    } else {
        "#/definitions/"
    }
}

/// Upstream's descriptions of the fields every object has, for custom kinds' schemas.
const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DOC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// Adds upstream's merge extensions to the schema of definition `name`
/// (`io.k8s.api.apps.v1.Deployment`, whose message is `k8s.io.api.apps.v1.Deployment`).
fn add_merge_extensions(name: &str, schema: &mut Value) {
    let Some(message) = name
        .strip_prefix("io.k8s.")
        .and_then(|rest| schema::message_named(&format!("k8s.io.{rest}")))
    else {
        return;
    };
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if message.atomic {
        object.insert("x-kubernetes-map-type".into(), json!("atomic"));
    }
    let Some(Value::Object(properties)) = object.get_mut("properties") else {
        return;
    };
    for (property, field_schema) in properties.iter_mut() {
        let (Some(field), Some(field_schema)) =
            (message.field(property), field_schema.as_object_mut())
        else {
            continue;
        };
        let extensions = [
            ("x-kubernetes-patch-strategy", field.patch_strategy),
            ("x-kubernetes-patch-merge-key", field.patch_merge_key),
            ("x-kubernetes-list-type", field.list_type),
            ("x-kubernetes-map-type", field.map_type),
        ];
        for (key, value) in extensions {
            if !value.is_empty() {
                field_schema.insert(key.into(), json!(value));
            }
        }
        if !field.list_map_keys.is_empty() {
            field_schema.insert(
                "x-kubernetes-list-map-keys".into(),
                json!(field.list_map_keys),
            );
        }
    }
}

/// Rewrites `{"$ref": X, "description": ...}` as `{"allOf": [{"$ref": X}], "description": ...}`
/// everywhere below `schema`: OpenAPI 3.0 ignores a `$ref`'s siblings, kube-apiserver uses
/// `allOf`, and kubectl explain reads descriptions from there.
fn wrap_sibling_refs(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            if object.len() > 1
                && let Some(reference) = object.remove("$ref")
            {
                object.insert("allOf".into(), json!([{"$ref": reference}]));
            }
            for (key, value) in object.iter_mut() {
                match (key.as_str(), value) {
                    // Maps from names to schemas: the names are not keywords (JSONSchemaProps
                    // has a property called `$ref`), the values are schemas.
                    ("properties" | "patternProperties" | "definitions", Value::Object(named)) => {
                        named.values_mut().for_each(wrap_sibling_refs);
                    }
                    (_, value) => wrap_sibling_refs(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(wrap_sibling_refs),
        _ => {}
    }
}

/// The apiextensions types whose JSON may be of several types publish no type upstream
/// (`OpenAPISchemaType` returns nil): a typed schema makes clients refuse valid definitions
/// (an `enum` of strings, a `default` of 3).
const UNTYPED: [&str; 4] = [
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSON",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrArray",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrBool",
    "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOrStringArray",
];

/// Leaves only the description of the [`UNTYPED`] schemas.
fn untype(name: &str, schema: &mut Value) {
    if UNTYPED.contains(&name)
        && let Some(object) = schema.as_object_mut()
    {
        object.retain(|key, _| key == "description");
    }
}
