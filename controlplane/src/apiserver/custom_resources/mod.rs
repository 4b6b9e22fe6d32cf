//! Custom resources: the kinds CustomResourceDefinitions define, served by the same generic
//! REST code as the built-in kinds through a [`CustomStrategy`] built from the definition.
//! [`definitions`] follows the definitions in etcd and keeps every API server's registry and
//! each definition's conditions in line with them.

pub mod cel;
pub mod definitions;
pub mod schema;

use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use jiff::Timestamp;
use jsonpath_rust::JsonPath as _;
use serde_json::{Value, json};

use crate::apiserver::{
    admission::Admission,
    machinery::{
        decode::{RoundTrip, decode_object, round_trip},
        field::Errs,
    },
    openapi::{SchemaOf, schema_of},
    registry::{Lookup, Resource, Samples, Strategy, Subresource},
    status::ApiError,
    tables::{self, Column},
};
use schema::Structural;

/// What one served version of a custom kind is, as its definition says now.
#[derive(Debug, Clone)]
pub struct Served {
    /// The definition's name (`widgets.example.com`).
    pub definition: String,
    /// `example.com/v1`.
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// The version objects are stored in (`example.com/v2`).
    pub storage_api_version: String,
    /// The version's schema (None only for definitions stored before schemas were required).
    pub schema: Option<Structural>,
    /// The schema's compiled `x-kubernetes-validations` (None when it has none).
    pub rules: Option<Arc<cel::Rules>>,
    /// The same schema as the definition gives it, for the OpenAPI documents.
    pub raw_schema: Option<Value>,
    /// The table's columns: Name, then the printer columns (Age when there are none).
    pub columns: Vec<Column>,
    /// Each printer column's JSONPath (`$.spec.size`), in column order after Name.
    pub column_paths: Vec<String>,
    /// The scale subresource's paths.
    pub scale: Option<ScalePaths>,
    /// Whether the definition is being deleted (no more creates).
    pub terminating: bool,
}

/// Where a custom kind keeps what its Scale shows (`.spec.replicas` as JSON pointers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// `specReplicasPath` as a JSON pointer (`/spec/replicas`).
    pub spec_replicas: String,
    /// `statusReplicasPath` as a JSON pointer.
    pub status_replicas: String,
    /// `labelSelectorPath` as a JSON pointer (a selector in string form).
    pub label_selector: Option<String>,
}

/// The strategy of one served version of a custom kind. Its definition can change while it is
/// served (a new schema, new columns): the registry keeps the strategy, the definitions
/// follower swaps what it serves.
#[derive(Debug)]
pub struct CustomStrategy {
    served: RwLock<Arc<Served>>,
}

impl CustomStrategy {
    /// A strategy serving `served`.
    pub fn new(served: Served) -> Self {
        Self {
            served: RwLock::new(Arc::new(served)),
        }
    }

    /// What is served now.
    pub fn served(&self) -> Arc<Served> {
        Arc::clone(
            &self
                .served
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Serves `served` from now on.
    pub fn replace(&self, served: Served) {
        *self
            .served
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(served);
    }
}

/// `.spec.replicas` as the JSON pointer `/spec/replicas`.
pub fn pointer_of(simple_path: &str) -> String {
    simple_path
        .replace('~', "~0")
        .replace('/', "~1")
        .replace('.', "/")
}

/// A printer column's value in `object`: the first JSONPath result as upstream's table
/// convertor gives it (`cellForJSONValue`): text for string columns, a number or boolean of the
/// column's type, the age for date columns, null when absent or of another type.
fn column_cell(object: &Value, path: &str, kind: &str, now: Timestamp) -> Value {
    let Some(found) = object
        .query(path)
        .ok()
        .and_then(|results| results.first().map(|v| (*v).clone()))
    else {
        return Value::Null;
    };
    match (kind, found) {
        (_, Value::Null) => Value::Null,
        ("string", Value::String(text)) => Value::String(text),
        ("string", Value::Array(_) | Value::Object(_)) => Value::Null,
        ("string", scalar) => Value::String(scalar.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => Value::Bool(b),
        ("date", Value::String(text)) => match text.parse::<Timestamp>() {
            Ok(at) => Value::String(tables::since(Some(at), now)),
            Err(_) => Value::String("<invalid>".into()),
        },
        _ => Value::Null,
    }
}

/// Objects of a custom kind are any JSON object: the schema, not a Rust type, decides.
fn unstructured(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(text)
}

impl Strategy for CustomStrategy {
    fn go_type(&self) -> &'static str {
        "unstructured.Unstructured"
    }

    fn round_trip(&self) -> RoundTrip {
        unstructured
    }

    fn schema(&self) -> SchemaOf {
        schema_of::<Value>
    }

    /// The version's schema as upstream publishes it, named by the reversed group
    /// (`com.example.v1.Widget`).
    fn openapi_schema(&self) -> Option<(String, Value)> {
        let served = self.served();
        let (group, version) = served.api_version.split_once('/')?;
        let reversed: Vec<&str> = group.split('.').rev().collect();
        let name = format!("{}.{version}.{}", reversed.join("."), served.kind);
        let mut schema = served.raw_schema.clone().unwrap_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
        if !schema["properties"].is_object() {
            schema["properties"] = json!({});
        }
        Some((name, schema))
    }

    /// Prunes what the schema does not declare (and metadata to ObjectMeta's fields), returning
    /// the pruned fields for fieldValidation.
    fn decode(&self, object: &mut Value) -> Result<Vec<String>, String> {
        if !object.is_object() {
            return Err("Object 'Kind' is missing in the body".into());
        }
        let mut unknown = Vec::new();
        if let Some(metadata) = object.get_mut("metadata").filter(|m| !m.is_null()) {
            let found = decode_object(
                "v1.ObjectMeta",
                round_trip::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
                metadata,
            )
            .map_err(|message| format!("metadata: {message}"))?;
            unknown.extend(found.into_iter().map(|field| format!("metadata.{field}")));
        }
        if let Some(schema) = &self.served().schema {
            unknown.extend(schema.prune(object));
        }
        Ok(unknown)
    }

    /// The schema, then its CEL rules unless the schema found an error upstream deems blocking
    /// (the rules would see missing or mistyped values).
    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        let served = self.served();
        let Some(schema) = &served.schema else {
            return;
        };
        let causes = schema.validate(object);
        let blocking = causes.iter().any(|c| {
            use crate::apiserver::machinery::field::CauseReason::{
                NotSupported, Required, TooLong, TooMany, TypeInvalid,
            };
            matches!(
                c.reason,
                NotSupported | Required | TooLong | TooMany | TypeInvalid
            )
        });
        e.0.extend(causes);
        let Some(rules) = &served.rules else {
            return;
        };
        if blocking {
            e.invalid(
                "<nil>",
                "\"null\"",
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            );
        } else {
            e.0.extend(rules.validate(schema, object, old));
        }
    }

    fn default(&self, object: &mut Value) {
        if let Some(schema) = &self.served().schema {
            schema.apply_defaults(object);
        }
    }

    /// Upstream drops a new custom object's status when the status subresource is enabled.
    fn status_on_create(&self, _object: &Value) -> Option<Value> {
        Some(Value::Null)
    }

    fn present(&self, object: &mut Value) {
        if object.get("apiVersion").is_some() {
            object["apiVersion"] = json!(self.served().api_version);
        }
    }

    /// Objects are stored in the storage version (conversion None changes only apiVersion).
    fn canonicalize(&self, object: &mut Value) {
        object["apiVersion"] = json!(self.served().storage_api_version);
    }

    /// No creates while the definition is being deleted (upstream answers 405).
    fn admit<'a>(
        &'a self,
        _admission: &'a Admission,
        _lookup: &'a dyn Lookup,
        _object: &'a mut Value,
        old: Option<&'a Value>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        let refused = old.is_none() && self.served().terminating;
        Box::pin(async move {
            if refused {
                return Err(ApiError::method_not_allowed(
                    "POST",
                    "create not allowed while custom resource definition is terminating",
                ));
            }
            Ok(())
        })
    }

    fn columns(&self) -> std::borrow::Cow<'static, [Column]> {
        std::borrow::Cow::Owned(self.served().columns.clone())
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        let served = self.served();
        let mut cells = vec![json!(tables::name(object))];
        for (column, path) in served.columns.iter().skip(1).zip(&served.column_paths) {
            cells.push(column_cell(object, path, &column.kind, now));
        }
        cells
    }

    fn scale_selector(&self, object: &Value) -> Option<Value> {
        let served = self.served();
        let pointer = served.scale.as_ref()?.label_selector.as_ref()?;
        object.pointer(pointer).cloned()
    }

    fn scale_replicas(&self, object: &Value) -> (i64, i64) {
        let served = self.served();
        let Some(scale) = &served.scale else {
            return (0, 0);
        };
        let read = |pointer: &str| object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
        (read(&scale.spec_replicas), read(&scale.status_replicas))
    }

    fn set_scale_replicas(&self, object: &mut Value, replicas: i64) {
        let served = self.served();
        if let Some(scale) = &served.scale {
            set_at(object, &scale.spec_replicas, json!(replicas));
        }
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "sample"}}),
            invalid: json!({"metadata": {"name": "sample"}}),
            invalid_field: "",
        }
    }
}

/// Sets the value at a JSON pointer, creating the objects on the way.
fn set_at(object: &mut Value, pointer: &str, value: Value) {
    let mut current = object;
    let segments: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    for segment in parents {
        if !current[segment.as_str()].is_object() {
            current[segment.as_str()] = json!({});
        }
        current = &mut current[segment.as_str()];
    }
    current[last.as_str()] = value;
}

/// What a served version's descriptor says, before anything is leaked for it: the follower
/// compares it with the registered descriptor on every change of the definitions and leaks
/// names only when a version is registered anew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    group: String,
    version: String,
    kind: String,
    plural: String,
    singular: String,
    namespaced: bool,
    short_names: Vec<String>,
    categories: Vec<String>,
    subresources: Vec<Subresource>,
    field_labels: Vec<String>,
}

impl Shape {
    /// The shape of `version` of `definition`.
    pub fn of(definition: &Value, version: &Value) -> Self {
        let spec = &definition["spec"];
        let names = &spec["names"];
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        let strings = |value: &Value| -> Vec<String> {
            value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        };
        let mut subresources = Vec::new();
        if !version["subresources"]["status"].is_null() {
            subresources.push(Subresource::Status);
        }
        if !version["subresources"]["scale"].is_null() {
            subresources.push(Subresource::Scale);
        }
        Self {
            group: text(&spec["group"]),
            version: text(&version["name"]),
            kind: text(&names["kind"]),
            plural: text(&names["plural"]),
            singular: text(&names["singular"]),
            namespaced: spec["scope"] == "Namespaced",
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            subresources,
            field_labels: version["selectableFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["jsonPath"].as_str())
                .map(|path| path.trim_start_matches('.').to_owned())
                .collect(),
        }
    }

    /// Whether `resource` is the descriptor of this shape (every static part the same).
    pub fn describes(&self, resource: &Resource) -> bool {
        (
            resource.group,
            resource.version,
            resource.kind,
            resource.plural,
            resource.singular,
            resource.namespaced,
            resource.subresources,
        ) == (
            self.group.as_str(),
            self.version.as_str(),
            self.kind.as_str(),
            self.plural.as_str(),
            self.singular.as_str(),
            self.namespaced,
            self.subresources.as_slice(),
        ) && resource.short_names.iter().eq(self.short_names.iter())
            && resource.categories.iter().eq(self.categories.iter())
            && resource.field_labels.iter().eq(self.field_labels.iter())
    }

    /// The descriptor, its names leaked once: a registered kind lives as long as the process
    /// (see [`crate::apiserver::registry::Registry::register`]).
    pub fn into_resource(self, strategy: &'static CustomStrategy) -> Resource {
        fn leak(text: String) -> &'static str {
            Box::leak(text.into_boxed_str())
        }
        fn leak_all(texts: Vec<String>) -> &'static [&'static str] {
            Box::leak(
                texts
                    .into_iter()
                    .map(leak)
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            )
        }
        let storage_prefix = format!("{}/{}", self.group, self.plural);
        Resource {
            group: leak(self.group),
            version: leak(self.version),
            kind: leak(self.kind),
            plural: leak(self.plural),
            singular: leak(self.singular),
            namespaced: self.namespaced,
            short_names: leak_all(self.short_names),
            categories: leak_all(self.categories),
            subresources: Box::leak(self.subresources.into_boxed_slice()),
            storage_prefix: leak(storage_prefix),
            field_labels: leak_all(self.field_labels),
            strategy,
        }
    }
}

/// What `version` of `definition` serves.
pub fn served_of(definition: &Value, version: &Value) -> Served {
    let spec = &definition["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let version_name = version["name"].as_str().unwrap_or_default();
    let storage =
        crate::apiserver::registry::apiextensions::custom_resource_definition::storage_version(
            definition,
        )
        .unwrap_or(version_name);
    let schema_path = "spec.versions.schema.openAPIV3Schema";
    let schema = version["schema"]["openAPIV3Schema"]
        .is_object()
        .then(|| Structural::parse(&version["schema"]["openAPIV3Schema"], schema_path).ok())
        .flatten();
    let rules = schema
        .as_ref()
        .map(cel::Rules::compile)
        .filter(|r| !r.is_empty())
        .map(Arc::new);
    let mut columns = vec![tables::NAME];
    let mut column_paths = Vec::new();
    let printer: Vec<Value> = match version["additionalPrinterColumns"].as_array() {
        Some(list) if !list.is_empty() => list.clone(),
        // upstream's serveDefaultColumnsIfEmpty
        _ => {
            vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
        }
    };
    for column in &printer {
        let text = |field: &str| column[field].as_str().unwrap_or_default().to_owned();
        let description = match column["description"].as_str() {
            Some(d) if !d.is_empty() => d.to_owned(),
            _ if text("jsonPath") == ".metadata.creationTimestamp" => {
                tables::CREATION_DOC.to_owned()
            }
            _ => {
                "Custom resource definition column (in JSONPath format): ".to_owned()
                    + &text("jsonPath")
            }
        };
        columns.push(Column {
            name: text("name").into(),
            kind: text("type").into(),
            format: text("format").into(),
            priority: u8::try_from(column["priority"].as_i64().unwrap_or(0).clamp(0, 255))
                .unwrap_or(0),
            description: description.into(),
        });
        column_paths.push(format!("${}", text("jsonPath")));
    }
    let scale = version["subresources"]["scale"].as_object().map(|scale| {
        let pointer = |field: &str| scale.get(field).and_then(Value::as_str).map(pointer_of);
        ScalePaths {
            spec_replicas: pointer("specReplicasPath").unwrap_or_default(),
            status_replicas: pointer("statusReplicasPath").unwrap_or_default(),
            label_selector: pointer("labelSelectorPath").filter(|p| !p.is_empty()),
        }
    });
    Served {
        definition: definition["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        api_version: format!("{group}/{version_name}"),
        kind: spec["names"]["kind"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        storage_api_version: format!("{group}/{storage}"),
        schema,
        rules,
        raw_schema: version["schema"]["openAPIV3Schema"]
            .is_object()
            .then(|| version["schema"]["openAPIV3Schema"].clone()),
        columns,
        column_paths,
        scale,
        terminating: !definition["metadata"]["deletionTimestamp"].is_null(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(short_names: Value) -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": short_names},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "subresources": {"status": {}}}]}})
    }

    #[test]
    fn a_shape_describes_its_descriptor_and_no_other() {
        let before = definition(json!(["wd"]));
        let version = &before["spec"]["versions"][0];
        let strategy: &'static CustomStrategy =
            Box::leak(Box::new(CustomStrategy::new(served_of(&before, version))));
        let resource = Shape::of(&before, version).into_resource(strategy);
        assert_eq!(resource.storage_prefix, "example.com/widgets");
        assert_eq!(resource.subresources, [Subresource::Status]);
        assert!(Shape::of(&before, version).describes(&resource));
        // A new short name is served only through a new descriptor (discovery lists them).
        let after = definition(json!(["wd", "wdg"]));
        assert!(!Shape::of(&after, &after["spec"]["versions"][0]).describes(&resource));
    }
}
