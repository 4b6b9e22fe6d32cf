//! The OpenAPI v3 description per group-version: one PATCH operation per resource carrying the
//! `fieldValidation` query parameter, and the kinds' schemas under `components.schemas` with the
//! `x-kubernetes-group-version-kind` extension on each kind's own schema.
//!
//! kubectl (apply, create, replace with the default `--validate=strict`) reads the operations to
//! learn that the server validates fields itself; without them, kubectl falls back to downloading
//! the full OpenAPI v2 schema and validating on the client. `kubectl explain` (1.29+) reads the
//! schemas. The PATCH operations deliberately do not advertise strategic merge patch: kubectl then
//! computes its strategic merge patches from its built-in types.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::component_schemas;
use crate::apiserver::registry::{Registry, Resource};

/// The paths below /openapi/v3 (`api/v1`, `apis/apps/v1`, ...).
fn group_versions(registry: &Registry) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for resource in registry.all() {
        let path = gv_path(resource);
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths
}

fn gv_path(resource: &Resource) -> String {
    if resource.group.is_empty() {
        format!("api/{}", resource.version)
    } else {
        format!("apis/{}/{}", resource.group, resource.version)
    }
}

/// `/openapi/v3`: the index of group-version documents.
pub fn index(registry: &Registry) -> Value {
    let paths: serde_json::Map<String, Value> = group_versions(registry)
        .into_iter()
        .map(|path| {
            let url = server_relative_url(&path, &content_hash(registry, &path));
            (path, json!({"serverRelativeURL": url}))
        })
        .collect();
    json!({"paths": paths})
}

/// `/openapi/v3/<path>`, or None for an unknown group-version.
pub fn document(registry: &Registry, path: &str) -> Option<Value> {
    let resources: Vec<&Resource> = registry
        .all()
        .into_iter()
        .filter(|r| gv_path(r) == path)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let mut paths = serde_json::Map::new();
    let schemas = component_schemas(&resources, SchemaSettings::openapi3(), true);
    for resource in resources {
        let item_path = if resource.namespaced {
            format!(
                "/{path}/namespaces/{{namespace}}/{}/{{name}}",
                resource.plural
            )
        } else {
            format!("/{path}/{}/{{name}}", resource.plural)
        };
        let operation = json!({
            "operationId": format!("patch{}", resource.kind),
            "parameters": [
                {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            ],
            "requestBody": {"content": {
                "application/json-patch+json": {"schema": {"type": "object"}},
                "application/merge-patch+json": {"schema": {"type": "object"}},
            }},
            "responses": {"200": {"description": "OK"}},
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {
                "group": resource.group,
                "version": resource.version,
                "kind": resource.kind,
            },
        });
        paths.insert(item_path, json!({"patch": operation}));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::apiserver::discovery::KUBERNETES_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// Where the index sends clients for the document at `path` with this hash.
pub(super) fn server_relative_url(path: &str, hash: &str) -> String {
    format!("/openapi/v3/{path}?hash={hash}")
}

/// A stable hash of a document (clients cache documents by it): of the path, the binary's
/// version and the kinds served there (every kind for the empty path, the v2 document), so a
/// kind registered at run time changes it.
pub(super) fn content_hash(registry: &Registry, path: &str) -> String {
    let kinds: Vec<String> = registry
        .all()
        .into_iter()
        .filter(|r| path.is_empty() || gv_path(r) == path)
        .map(|r| {
            // A custom kind's schema can change while the set of kinds stays the same.
            let schema = r.strategy.openapi_schema().map(|(_, s)| s.to_string());
            format!(
                "{}:{}:{}:{}:{};",
                gv_path(r),
                r.plural,
                r.kind,
                r.namespaced,
                schema.unwrap_or_default()
            )
        })
        .collect();
    let input: Vec<u8> = path
        .bytes()
        .chain(env!("CARGO_PKG_VERSION").bytes())
        .chain(kinds.iter().flat_map(|k| k.bytes()))
        .collect();
    etag_of(&input)
}

/// An ETag of some bytes (FNV-1a: documents change only with the binary or the set of kinds).
pub(super) fn etag_of(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_version_is_indexed_and_served() {
        let index = index(&Registry::new());
        let paths = index["paths"].as_object().unwrap();
        assert!(paths.contains_key("api/v1"));
        assert!(paths.contains_key("apis/apps/v1"));
        for path in paths.keys() {
            let document = document(&Registry::new(), path).unwrap();
            assert!(!document["paths"].as_object().unwrap().is_empty());
        }
        let apps = document(&Registry::new(), "apis/apps/v1").unwrap();
        let deployment =
            &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(document(&Registry::new(), "apis/nope/v1").is_none());
    }

    #[test]
    fn every_kind_has_its_schema_for_kubectl_explain() {
        let registry = Registry::new();
        for resource in registry.all() {
            let document = document(&registry, &gv_path(resource)).unwrap();
            let schemas = document["components"]["schemas"].as_object().unwrap();
            let own = schemas
                .values()
                .find(|schema| {
                    schema["x-kubernetes-group-version-kind"][0]["kind"] == resource.kind
                })
                .unwrap_or_else(|| panic!("{}: no schema tagged with its kind", resource.kind));
            assert!(own["description"].is_string(), "{}", resource.kind);
            // Every reference resolves inside the document.
            let text = serde_json::to_string(&document).unwrap();
            for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
                let name = reference.split('"').next().unwrap();
                assert!(
                    schemas.contains_key(name),
                    "{}: {name} dangles",
                    resource.kind
                );
            }
        }
        let apps = document(&registry, "apis/apps/v1").unwrap();
        let spec = &apps["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentSpec"];
        let strategy = &spec["properties"]["strategy"];
        assert_eq!(
            strategy["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"
        );
        assert!(strategy["description"].is_string());
    }

    #[test]
    fn schemas_of_schemas_stay_as_upstream_publishes_them() {
        let registry = Registry::new();
        let document = document(&registry, "apis/apiextensions.k8s.io/v1").unwrap();
        let schemas = &document["components"]["schemas"];
        let props =
            &schemas["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"];
        // A property named `$ref` is a property, not a reference to wrap.
        assert_eq!(props["properties"]["$ref"], json!({"type": "string"}));
        for untyped in ["JSON", "JSONSchemaPropsOrBool", "JSONSchemaPropsOrArray"] {
            let schema = &schemas
                [format!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.{untyped}")];
            assert!(schema["description"].is_string(), "{untyped}");
            assert_eq!(schema.as_object().unwrap().len(), 1, "{untyped}: {schema}");
        }
    }

    #[test]
    fn a_kind_registered_at_run_time_changes_its_documents_hash() {
        let registry = Registry::new();
        let before = index(&registry)["paths"]["api/v1"]["serverRelativeURL"].clone();
        let pods = *crate::apiserver::registry::BUILTIN
            .iter()
            .find(|r| r.plural == "pods")
            .unwrap();
        registry
            .register(Resource {
                kind: "Gizmo",
                plural: "gizmos",
                singular: "gizmo",
                short_names: &[],
                categories: &[],
                subresources: &[],
                storage_prefix: "gizmos",
                field_labels: &[],
                ..*pods
            })
            .unwrap();
        let after = index(&registry)["paths"]["api/v1"]["serverRelativeURL"].clone();
        assert_ne!(before, after, "clients would keep a stale api/v1 document");
        let apps = |r: &Registry| index(r)["paths"]["apis/apps/v1"]["serverRelativeURL"].clone();
        assert_eq!(apps(&registry), apps(&Registry::new()));
    }
}
