//! Discovery documents: /version, /api, /apis and each group-version's resource list, which is
//! how kubectl learns what `kubectl get deploy` means.

use serde_json::{Value, json};

use super::registry::{Registry, Resource, Subresource};

/// The Kubernetes version this server reports (the API it implements).
pub const KUBERNETES_VERSION: &str = "v1.33.0";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": format!("{KUBERNETES_VERSION}+flotilla-{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": "linux/amd64",
    })
}

/// `/api`: the core group's versions.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// `/apis`: every named group.
pub fn group_list(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .groups()
        .into_iter()
        .map(|(group, versions)| group_document(group, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, or None if the group is not served.
pub fn group(registry: &Registry, group: &str) -> Option<Value> {
    registry
        .groups()
        .into_iter()
        .find(|(name, _)| *name == group)
        .map(|(name, versions)| {
            let mut document = group_document(name, &versions);
            document["kind"] = json!("APIGroup");
            document["apiVersion"] = json!("v1");
            document
        })
}

/// An `APIGroup`: its versions, the preferred one first.
fn group_document(group: &str, versions: &[&str]) -> Value {
    let listed: Vec<Value> = versions
        .iter()
        .map(|version| json!({"groupVersion": format!("{group}/{version}"), "version": version}))
        .collect();
    let preferred = listed.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": listed, "preferredVersion": preferred})
}

/// `/api/v1` or `/apis/<group>/<version>`, or None if not served.
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let served: Vec<&Resource> = registry
        .all()
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut entries = Vec::new();
    for resource in served {
        let mut entry = json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": resource.verbs(),
        });
        if !resource.short_names.is_empty() {
            entry["shortNames"] = json!(resource.short_names);
        }
        if !resource.categories.is_empty() {
            entry["categories"] = json!(resource.categories);
        }
        entries.push(entry);
        for subresource in resource.subresources {
            entries.push(subresource_entry(resource, *subresource));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }))
}

/// What a subresource answers with and allows: (group, version, kind, verbs).
fn subresource_kind(
    resource: &Resource,
    subresource: Subresource,
) -> (
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
) {
    const READ_WRITE: &[&str] = &["get", "patch", "update"];
    let verbs: &'static [&'static str] = match subresource {
        Subresource::Status | Subresource::Approval | Subresource::Scale => READ_WRITE,
        Subresource::Eviction | Subresource::Token | Subresource::Binding => &["create"],
        Subresource::Log => &["get"],
        Subresource::Exec | Subresource::Attach | Subresource::PortForward => &["create", "get"],
    };
    let (group, version, kind) = subresource.kind_on(resource);
    (group, version, kind, verbs)
}

fn subresource_entry(resource: &Resource, subresource: Subresource) -> Value {
    let (group, version, kind, verbs) = subresource_kind(resource, subresource);
    let mut entry = json!({
        "name": format!("{}/{}", resource.plural, subresource.name()),
        "singularName": "",
        "namespaced": resource.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    // The legacy list names a group and version only where they differ from the resource's.
    if (group, version) != (resource.group, resource.version) {
        entry["group"] = json!(group);
        entry["version"] = json!(version);
    }
    entry
}

// ---------------------------------------------------------------------------------------------
// Aggregated discovery (apidiscovery.k8s.io): every group's resources in one answer at /api and
// /apis, which kubectl 1.26+ asks for first and falls back from only after a round trip.
// ---------------------------------------------------------------------------------------------

/// The aggregated discovery versions served, in the order they are preferred.
const AGGREGATED_VERSIONS: [&str; 2] = ["v2", "v2beta1"];

/// The `apidiscovery.k8s.io` version of the first `Accept` media range asking for an
/// `APIGroupDiscoveryList` this server speaks, or None for the legacy documents.
pub fn aggregated_version(accept: Option<&str>) -> Option<&'static str> {
    accept?.split(',').find_map(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next()?;
        if media != "application/json" {
            return None;
        }
        let (mut group, mut version, mut as_kind) = (None, None, None);
        for parameter in parts {
            match parameter.split_once('=') {
                Some(("g", value)) => group = Some(value),
                Some(("v", value)) => version = Some(value),
                Some(("as", value)) => as_kind = Some(value),
                _ => {}
            }
        }
        if group != Some("apidiscovery.k8s.io") || as_kind != Some("APIGroupDiscoveryList") {
            return None;
        }
        AGGREGATED_VERSIONS
            .into_iter()
            .find(|served| Some(*served) == version)
    })
}

/// The content type of an aggregated discovery answer in `version`.
pub fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// `/api` (the core group) or `/apis` (every named group) as one `APIGroupDiscoveryList`.
pub fn aggregated(registry: &Registry, core: bool, version: &str) -> Value {
    let resources = registry.all();
    let items: Vec<Value> = if core {
        vec![discovery_group(&resources, "", &["v1"])]
    } else {
        registry
            .groups()
            .into_iter()
            .map(|(group, versions)| discovery_group(&resources, group, &versions))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// One `APIGroupDiscovery`: the group (unnamed for the core group) and its served versions,
/// the preferred one first.
fn discovery_group(resources: &[&Resource], group: &str, versions: &[&str]) -> Value {
    let listed: Vec<Value> = versions
        .iter()
        .map(|version| {
            let entries: Vec<Value> = resources
                .iter()
                .filter(|r| r.group == group && r.version == *version)
                .map(|resource| discovery_resource(resource))
                .collect();
            json!({"version": version, "resources": entries, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = json!(group);
    }
    json!({"metadata": metadata, "versions": listed})
}

/// One `APIResourceDiscovery`, its subresources included.
fn discovery_resource(resource: &Resource) -> Value {
    let mut entry = json!({
        "resource": resource.plural,
        "responseKind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
        "scope": if resource.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": resource.singular,
        "verbs": resource.verbs(),
    });
    if !resource.short_names.is_empty() {
        entry["shortNames"] = json!(resource.short_names);
    }
    if !resource.categories.is_empty() {
        entry["categories"] = json!(resource.categories);
    }
    let subresources: Vec<Value> = resource
        .subresources
        .iter()
        .map(|subresource| {
            let (group, version, kind, verbs) = subresource_kind(resource, *subresource);
            json!({
                "subresource": subresource.name(),
                "responseKind": {"group": group, "version": version, "kind": kind},
                "verbs": verbs,
            })
        })
        .collect();
    if !subresources.is_empty() {
        entry["subresources"] = json!(subresources);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_v1_lists_deployments_with_scale() {
        let list = resource_list(&Registry::new(), "apps", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"deployments"));
        assert!(names.contains(&"deployments/scale"));
        assert!(resource_list(&Registry::new(), "apps", "v2").is_none());
    }

    #[test]
    fn core_v1_lists_the_streaming_pod_subresources() {
        let list = resource_list(&Registry::new(), "", "v1").unwrap();
        let entry = |name: &str| {
            list["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{name} is not listed"))
        };
        assert_eq!(entry("pods/log")["verbs"], serde_json::json!(["get"]));
        for (name, kind) in [
            ("pods/exec", "PodExecOptions"),
            ("pods/attach", "PodAttachOptions"),
            ("pods/portforward", "PodPortForwardOptions"),
        ] {
            let entry = entry(name);
            assert_eq!(entry["kind"], kind);
            assert_eq!(entry["verbs"], serde_json::json!(["create", "get"]));
        }
    }

    #[test]
    fn group_list_names_every_group_once() {
        let groups = group_list(&Registry::new());
        let names: Vec<&str> = groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|g| g["name"].as_str())
            .collect();
        assert_eq!(
            names,
            vec![
                "coordination.k8s.io",
                "apps",
                "batch",
                "networking.k8s.io",
                "discovery.k8s.io",
                "policy",
                "scheduling.k8s.io",
                "rbac.authorization.k8s.io",
                "storage.k8s.io",
                "authorization.k8s.io",
                "authentication.k8s.io",
                "certificates.k8s.io",
                "admissionregistration.k8s.io",
                "apiextensions.k8s.io"
            ]
        );
    }

    #[test]
    fn aggregated_discovery_is_negotiated_by_accept() {
        let kubectl_133 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,\
                           application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                           application/json";
        assert_eq!(aggregated_version(Some(kubectl_133)), Some("v2"));
        let kubectl_127 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,\
                           application/json";
        assert_eq!(aggregated_version(Some(kubectl_127)), Some("v2beta1"));
        assert_eq!(aggregated_version(Some("application/json")), None);
        assert_eq!(aggregated_version(None), None);
        let future = "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList";
        assert_eq!(aggregated_version(Some(future)), None);
    }

    #[test]
    fn aggregated_discovery_lists_what_the_legacy_documents_list() {
        let registry = Registry::new();
        let apis = aggregated(&registry, false, "v2");
        assert_eq!(apis["apiVersion"], "apidiscovery.k8s.io/v2");
        let groups: Vec<&str> = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|g| g["metadata"]["name"].as_str())
            .collect();
        let legacy = group_list(&registry);
        let legacy_groups: Vec<&str> = legacy["groups"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|g| g["name"].as_str())
            .collect();
        assert_eq!(groups, legacy_groups);
        // Every resource and subresource of the legacy lists, with the same kind and verbs.
        let core = aggregated(&registry, true, "v2");
        for (document, group, version) in std::iter::once((&core, "", "v1"))
            .chain(registry.groups().into_iter().map(|(g, v)| (&apis, g, v[0])))
        {
            let item = document["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["metadata"]["name"].as_str().unwrap_or_default() == group)
                .unwrap();
            let listed = &item["versions"][0];
            assert_eq!(listed["version"], version);
            let legacy = resource_list(&registry, group, version).unwrap();
            for entry in legacy["resources"].as_array().unwrap() {
                let name = entry["name"].as_str().unwrap();
                let (plural, sub) = name
                    .split_once('/')
                    .map_or((name, None), |(p, s)| (p, Some(s)));
                let resource = listed["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|r| r["resource"] == plural)
                    .unwrap_or_else(|| panic!("{group}/{version} {plural} missing"));
                let found = match sub {
                    None => resource.clone(),
                    Some(sub) => resource["subresources"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|s| s["subresource"] == sub)
                        .cloned()
                        .unwrap_or_else(|| panic!("{name} missing")),
                };
                assert_eq!(found["verbs"], entry["verbs"], "{name}");
                assert_eq!(found["responseKind"]["kind"], entry["kind"], "{name}");
            }
        }
        assert!(core["items"][0]["metadata"].get("name").is_none());
    }
}
