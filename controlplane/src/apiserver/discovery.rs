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
        .map(|(group, version)| group_document(group, version))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, or None if the group is not served.
pub fn group(registry: &Registry, group: &str) -> Option<Value> {
    registry
        .groups()
        .into_iter()
        .find(|(name, _)| *name == group)
        .map(|(name, version)| {
            let mut document = group_document(name, version);
            document["kind"] = json!("APIGroup");
            document["apiVersion"] = json!("v1");
            document
        })
}

fn group_document(group: &str, version: &str) -> Value {
    let group_version = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [group_version], "preferredVersion": group_version})
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

fn subresource_entry(resource: &Resource, subresource: Subresource) -> Value {
    let name = format!("{}/{}", resource.plural, subresource.name());
    match subresource {
        Subresource::Status => json!({
            "name": name, "singularName": "", "namespaced": resource.namespaced,
            "kind": resource.kind, "verbs": ["get", "patch", "update"],
        }),
        Subresource::Scale => json!({
            "name": name, "singularName": "", "namespaced": resource.namespaced,
            "group": "autoscaling", "version": "v1", "kind": "Scale",
            "verbs": ["get", "patch", "update"],
        }),
        Subresource::Eviction => json!({
            "name": name, "singularName": "", "namespaced": resource.namespaced,
            "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"],
        }),
        Subresource::Binding => json!({
            "name": name, "singularName": "", "namespaced": resource.namespaced,
            "kind": "Binding", "verbs": ["create"],
        }),
        Subresource::Log => json!({
            "name": name, "singularName": "", "namespaced": resource.namespaced,
            "kind": "Pod", "verbs": ["get"],
        }),
        Subresource::Exec | Subresource::Attach | Subresource::PortForward => json!({
            "name": name, "singularName": "", "namespaced": resource.namespaced,
            "kind": match subresource {
                Subresource::Exec => "PodExecOptions",
                Subresource::Attach => "PodAttachOptions",
                _ => "PodPortForwardOptions",
            },
            "verbs": ["create", "get"],
        }),
    }
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
                "scheduling.k8s.io"
            ]
        );
    }
}
