//! `/openapi/v2`: one Swagger 2.0 document with the definitions of every served kind, as
//! kube-apiserver serves it. kubectl up to 1.28 reads it for `kubectl explain`, and kubectl's
//! client-side `apply` computes strategic merge patches from its patch extensions; client-go
//! asks for it in gnostic's protobuf form ([`super::gnostic`]), other clients in JSON.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::component_schemas;
use crate::apiserver::registry::Registry;

/// The media types client-go asks for the protobuf form with (both spellings upstream serves).
pub const PROTOBUF_MEDIA_TYPES: [&str; 2] = [
    "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
];

/// The Content-Type of the protobuf answer: the spelling without `@`, which Go's
/// `mime.ParseMediaType` (client-go reads every answer's Content-Type with it) accepts.
pub const PROTOBUF_RESPONSE_TYPE: &str = PROTOBUF_MEDIA_TYPES[1];

/// The document, in JSON form.
pub fn document(registry: &Registry) -> Value {
    let resources = registry.all();
    let mut settings = SchemaSettings::draft07();
    // Swagger 2.0 keeps a $ref's description beside it, as upstream's v2 document does.
    settings.transforms.clear();
    settings.meta_schema = None;
    let definitions = component_schemas(&resources, settings, false);
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": crate::apiserver::discovery::KUBERNETES_VERSION},
        "paths": {},
        "definitions": definitions,
    })
}

/// Whether `accept` asks for the protobuf form.
pub fn wants_protobuf(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let media = range.split(';').next().unwrap_or_default().trim();
            PROTOBUF_MEDIA_TYPES.contains(&media)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_defined_with_its_group_version_kind_and_merge_extensions() {
        let registry = Registry::new();
        let document = document(&registry);
        let definitions = document["definitions"].as_object().unwrap();
        for resource in registry.all() {
            assert!(
                definitions.values().any(|schema| {
                    schema["x-kubernetes-group-version-kind"][0]["kind"] == resource.kind
                }),
                "{} has no definition",
                resource.kind
            );
        }
        let text = serde_json::to_string(&document).unwrap();
        for reference in text.split("\"$ref\":\"#/definitions/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(definitions.contains_key(name), "{name} dangles");
        }
        assert!(!text.contains("#/components/"));
        let containers = &definitions["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        let strategy = &definitions["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert_eq!(
            strategy["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"
        );
        assert!(strategy["description"].is_string());
    }

    #[test]
    fn protobuf_is_chosen_by_either_spelling() {
        assert!(wants_protobuf(Some(
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        )));
        assert!(wants_protobuf(Some(
            "application/json, application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        )));
        assert!(!wants_protobuf(Some("application/json")));
        assert!(!wants_protobuf(None));
    }
}
