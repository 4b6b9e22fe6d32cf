use super::*;
use crate::apiserver::registry::Registry;

/// The patch schema of `kind` in `api_version`, if it is served and offers strategic merge.
fn schema_of(api_version: &str, kind: &str) -> Option<Schema> {
    Registry::new()
        .find_kind(api_version, kind)
        .and_then(|resource| Schema::of_kind(&resource.api_version(), resource.kind))
}

/// Whether strategic merge patch is offered for `kind` in `api_version`.
fn supports_strategic_merge(api_version: &str, kind: &str) -> bool {
    schema_of(api_version, kind).is_some()
}
use serde_json::json;

fn apply(original: &Value, patch: Value, api_version: &str, kind: &str) -> Value {
    let result = apply_strategic_merge_patch(
        original,
        &patch,
        schema_of(api_version, kind).unwrap_or(Schema(None)),
    )
    .unwrap();
    assert_no_directives(&result);
    result
}

fn apply_err(original: &Value, patch: Value, api_version: &str, kind: &str) -> PatchError {
    apply_strategic_merge_patch(
        original,
        &patch,
        schema_of(api_version, kind).unwrap_or(Schema(None)),
    )
    .unwrap_err()
}

fn assert_no_directives(value: &Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                assert!(!is_directive_key(key), "directive {key} left in result");
                assert!(!value.is_null(), "null left in result at {key}");
                assert_no_directives(value);
            }
        }
        Value::Array(list) => list.iter().for_each(assert_no_directives),
        _ => {}
    }
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"app": "web", "tier": "frontend"},
            "finalizers": ["example.com/a", "example.com/b"]
        },
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
            },
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "img:v1",
                            "args": ["--port", "8080", "--verbose"],
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/web"}]
                        },
                        {"name": "sidecar", "image": "proxy:v1"}
                    ],
                    "tolerations": [
                        {"key": "k1", "operator": "Exists"},
                        {"key": "k2", "operator": "Exists"}
                    ],
                    "volumes": [{"name": "cfg", "configMap": {"name": "web-config"}}]
                }
            }
        },
        "status": {
            "conditions": [
                {"type": "Available", "status": "True"},
                {"type": "Progressing", "status": "True"}
            ]
        }
    })
}

fn containers(object: &Value) -> &Vec<Value> {
    object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect()
}

fn strings(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item.as_str().unwrap())
        .collect()
}

// --- kubectl set image / kubectl patch ---------------------------------------------

#[test]
fn set_image_changes_only_that_container() {
    let original = deployment();
    let patch =
        json!({"spec":{"template":{"spec":{"containers":[{"name":"web","image":"img:v2"}]}}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    let mut expected = original.clone();
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:v2");
    assert_eq!(result, expected);
}

#[test]
fn set_image_on_second_container_keeps_order() {
    let original = deployment();
    let patch = json!({"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"proxy:v2"}]}}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    let mut expected = original.clone();
    expected["spec"]["template"]["spec"]["containers"][1]["image"] = json!("proxy:v2");
    assert_eq!(result, expected);
}

#[test]
fn set_image_reaches_every_workload_template() {
    let pod_spec = json!({"containers": [
        {"name": "a", "image": "a:v1", "env": [{"name": "X", "value": "1"}]},
        {"name": "b", "image": "b:v1"}
    ]});
    let set_a = json!({"containers": [{"name": "a", "image": "a:v2"}]});
    let cases = [
        (
            "v1",
            "Pod",
            json!({"spec": pod_spec}),
            json!({"spec": set_a}),
        ),
        (
            "apps/v1",
            "ReplicaSet",
            json!({"spec": {"template": {"spec": pod_spec}}}),
            json!({"spec": {"template": {"spec": set_a}}}),
        ),
        (
            "apps/v1",
            "StatefulSet",
            json!({"spec": {"template": {"spec": pod_spec}}}),
            json!({"spec": {"template": {"spec": set_a}}}),
        ),
        (
            "apps/v1",
            "DaemonSet",
            json!({"spec": {"template": {"spec": pod_spec}}}),
            json!({"spec": {"template": {"spec": set_a}}}),
        ),
        (
            "batch/v1",
            "Job",
            json!({"spec": {"template": {"spec": pod_spec}}}),
            json!({"spec": {"template": {"spec": set_a}}}),
        ),
        (
            "batch/v1",
            "CronJob",
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}}),
            json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": set_a}}}}}),
        ),
    ];
    for (api_version, kind, original, patch) in cases {
        let result = apply(&original, patch, api_version, kind);
        let text = result.to_string();
        assert!(text.contains("\"a:v2\""), "{kind}: {text}");
        assert!(text.contains("\"b:v1\""), "{kind}: {text}");
        assert!(text.contains("\"X\""), "{kind} lost env: {text}");
        assert!(!text.contains("a:v1"), "{kind}: {text}");
    }
}

#[test]
fn init_and_ephemeral_containers_merge_by_name() {
    let original = json!({"spec": {
        "initContainers": [{"name": "init", "image": "init:v1", "command": ["sh"]}],
        "ephemeralContainers": [{"name": "debug", "image": "busybox", "targetContainerName": "app"}],
        "containers": [{"name": "app", "image": "app:v1"}]
    }});
    let patch = json!({"spec": {
        "initContainers": [{"name": "init", "image": "init:v2"}],
        "ephemeralContainers": [{"name": "debug2", "image": "busybox"}]
    }});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(
        result["spec"]["initContainers"],
        json!([{"name": "init", "image": "init:v2", "command": ["sh"]}])
    );
    // Upstream places patch elements new to the list before the server's elements.
    assert_eq!(
        names(&result["spec"]["ephemeralContainers"]),
        ["debug2", "debug"]
    );
}

#[test]
fn new_element_without_set_element_order_goes_first_like_upstream() {
    let original = deployment();
    let patch =
        json!({"spec":{"template":{"spec":{"containers":[{"name":"metrics","image":"m:v1"}]}}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        names(&result["spec"]["template"]["spec"]["containers"]),
        ["metrics", "web", "sidecar"]
    );
}

// --- kubectl apply (three-way patches with $setElementOrder) -------------------------

#[test]
fn apply_reorders_and_adds_container_with_set_element_order() {
    let original = deployment();
    let patch = json!({"spec":{"template":{"spec":{
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}, {"name": "metrics"}],
        "containers": [{"name": "metrics", "image": "metrics:v1"}]
    }}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    let list = containers(&result);
    assert_eq!(
        names(&result["spec"]["template"]["spec"]["containers"]),
        ["sidecar", "web", "metrics"]
    );
    assert_eq!(
        list[1],
        original["spec"]["template"]["spec"]["containers"][0]
    );
    assert_eq!(list[2], json!({"name": "metrics", "image": "metrics:v1"}));
}

#[test]
fn apply_full_three_way_patch() {
    let original = deployment();
    // What kubectl apply sends after the manifest changed the image, an env var, a
    // port, dropped `--verbose`, the sidecar and a label.
    let patch = json!({
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"},
            "labels": {"tier": null}
        },
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}],
            "containers": [
                {
                    "$setElementOrder/env": [{"name": "A"}, {"name": "C"}, {"name": "B"}],
                    "$setElementOrder/ports": [{"containerPort": 8080}, {"containerPort": 9090}],
                    "args": ["--port", "8080"],
                    "env": [{"name": "C", "value": "3"}, {"name": "B", "value": "20"}],
                    "image": "img:v2",
                    "name": "web",
                    "ports": [{"containerPort": 9090, "name": "metrics"}]
                },
                {"$patch": "delete", "name": "sidecar"}
            ]
        }}}
    });
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        result["metadata"]["labels"],
        json!({"app": "web"}),
        "null removes the label"
    );
    assert_eq!(
        result["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        json!("{}\n")
    );
    assert_eq!(
        result["spec"]["template"]["spec"]["containers"],
        json!([{
            "name": "web",
            "image": "img:v2",
            "args": ["--port", "8080"],
            "ports": [
                {"containerPort": 8080, "protocol": "TCP"},
                {"containerPort": 9090, "name": "metrics"}
            ],
            "env": [
                {"name": "A", "value": "1"},
                {"name": "C", "value": "3"},
                {"name": "B", "value": "20"}
            ],
            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/web"}]
        }])
    );
    assert_eq!(result["spec"]["strategy"], original["spec"]["strategy"]);
    assert_eq!(result["status"], original["status"]);
}

#[test]
fn set_element_order_keeps_server_only_elements_in_place() {
    // Upstream test "set elements order in a list with server-only items 3".
    let original = json!({"spec": {"containers": [
        {"name": "1", "other": "a"},
        {"name": "2", "value": "2"},
        {"name": "7"},
        {"name": "9"},
        {"name": "8"},
        {"name": "3", "value": "3"},
        {"name": "4", "value": "4"}
    ]}});
    let patch = json!({"spec": {"$setElementOrder/containers": [
        {"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}
    ]}});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(
        names(&result["spec"]["containers"]),
        ["2", "1", "7", "9", "8", "4", "3"]
    );
    assert_eq!(
        result["spec"]["containers"][1],
        json!({"name": "1", "other": "a"})
    );
}

#[test]
fn set_element_order_with_server_only_items_2() {
    // Upstream test "set elements order in a list with server-only items 2".
    let original = json!({"spec": {"containers": [
        {"name": "1", "other": "a"},
        {"name": "2", "value": "2"},
        {"name": "9"},
        {"name": "3", "value": "3"},
        {"name": "4", "value": "4"}
    ]}});
    let patch = json!({"spec": {"$setElementOrder/containers": [
        {"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}
    ]}});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(
        names(&result["spec"]["containers"]),
        ["2", "1", "9", "4", "3"]
    );
}

#[test]
fn set_element_order_adds_items_in_the_middle() {
    // Upstream test "add multiple items in a list and preserve order".
    let original = json!({"spec": {"containers": [
        {"name": "1", "other": "a"},
        {"name": "2", "value": "2", "other": "b"}
    ]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "1"}, {"name": "4"}, {"name": "2"}, {"name": "3"}],
        "containers": [{"name": "4", "value": "4"}, {"name": "3", "value": "3"}]
    }});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(
        result["spec"]["containers"],
        json!([
            {"name": "1", "other": "a"},
            {"name": "4", "value": "4"},
            {"name": "2", "value": "2", "other": "b"},
            {"name": "3", "value": "3"}
        ])
    );
}

#[test]
fn delete_and_add_next_to_server_only_element_matches_upstream_order() {
    // Upstream tests "add map and delete map from merging list" (and "... with
    // conflict"): the new element's place depends on upstream's in-place slice edits.
    let original = json!({"spec": {"containers": [
        {"name": "1"},
        {"name": "2", "other": "b"},
        {"name": "4", "other": "c"}
    ]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
        "containers": [{"name": "3"}, {"$patch": "delete", "name": "1"}]
    }});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(
        result["spec"]["containers"],
        json!([{"name": "2", "other": "b"}, {"name": "4", "other": "c"}, {"name": "3"}])
    );

    let original = json!({"spec": {"containers": [
        {"name": "1", "other": "a"},
        {"name": "4", "other": "c"}
    ]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
        "containers": [{"name": "2"}, {"name": "3"}, {"$patch": "delete", "name": "1"}]
    }});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(names(&result["spec"]["containers"]), ["4", "2", "3"]);
}

#[test]
fn set_element_order_on_list_missing_from_original() {
    let original = json!({"spec": {"containers": [{"name": "app"}]}});
    let patch = json!({"spec": {
        "$setElementOrder/imagePullSecrets": [{"name": "b"}, {"name": "a"}],
        "imagePullSecrets": [{"name": "b"}, {"name": "a"}]
    }});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(
        result["spec"]["imagePullSecrets"],
        json!([{"name": "b"}, {"name": "a"}])
    );
}

#[test]
fn set_element_order_out_of_order_patch_is_rejected() {
    let err = apply_err(
        &deployment(),
        json!({"spec":{"template":{"spec":{
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"name": "sidecar", "image": "x"}, {"name": "web", "image": "y"}]
        }}}}),
        "apps/v1",
        "Deployment",
    );
    assert!(
        matches!(err, PatchError::InvalidSetElementOrder { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("spec.template.spec.containers"),
        "{err}"
    );
}

#[test]
fn set_element_order_malformed_directives_are_rejected() {
    let original = deployment();
    let not_a_list = apply_err(
        &original,
        json!({"spec":{"template":{"spec":{"$setElementOrder/containers": {"name": "web"}}}}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(
        not_a_list,
        PatchError::InvalidSetElementOrder { .. }
    ));
    let bad_key = apply_err(
        &original,
        json!({"metadata": {"$setElementOrderfinalizers": ["example.com/a"]}}),
        "apps/v1",
        "Deployment",
    );
    assert!(
        matches!(bad_key, PatchError::InvalidSetElementOrder { .. }),
        "{bad_key}"
    );
    let missing_key = apply_err(
        &original,
        json!({"spec":{"template":{"spec":{"$setElementOrder/containers": [{"image": "x"}]}}}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(
        missing_key,
        PatchError::MissingMergeKey { key: "name", .. }
    ));
}

// --- $patch directives ---------------------------------------------------------------

#[test]
fn delete_directive_removes_container() {
    let original = deployment();
    let patch = json!({"spec":{"template":{"spec":{
        "containers": [{"name": "sidecar", "$patch": "delete"}]
    }}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        names(&result["spec"]["template"]["spec"]["containers"]),
        ["web"]
    );
    assert_eq!(
        containers(&result)[0],
        original["spec"]["template"]["spec"]["containers"][0]
    );
}

#[test]
fn delete_directive_removes_env_var() {
    let original = deployment();
    let patch = json!({"spec":{"template":{"spec":{"containers":[{
        "name": "web",
        "$setElementOrder/env": [{"name": "B"}],
        "env": [{"name": "A", "$patch": "delete"}]
    }]}}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        containers(&result)[0]["env"],
        json!([{"name": "B", "value": "2"}])
    );
    assert_eq!(containers(&result)[0]["image"], json!("img:v1"));
    assert_eq!(
        names(&result["spec"]["template"]["spec"]["containers"]),
        ["web", "sidecar"]
    );
}

#[test]
fn delete_directive_for_missing_element_is_a_no_op() {
    let original = deployment();
    let patch = json!({"spec":{"template":{"spec":{
        "containers": [{"name": "nope", "$patch": "delete"}]
    }}}});
    assert_eq!(apply(&original, patch, "apps/v1", "Deployment"), original);
}

#[test]
fn replace_directive_in_list_replaces_the_list() {
    let original = deployment();
    let patch = json!({"spec":{"template":{"spec":{
        "containers": [{"name": "only", "image": "only:v1"}, {"$patch": "replace"}]
    }}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        result["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "only:v1"}])
    );
}

#[test]
fn replace_directive_on_map_replaces_it() {
    let original = deployment();
    let patch = json!({"spec":{"selector":{"$patch":"replace","matchLabels":{"app":"web2"}}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        result["spec"]["selector"],
        json!({"matchLabels": {"app": "web2"}})
    );

    let patch = json!({"spec":{"template":{"spec":{"containers":[
        {"name":"web","$patch":"replace","image":"fresh:v1"}
    ]}}}});
    // Upstream treats a `$patch: replace` element as a marker replacing the whole list
    // with the patch's plain elements (none here).
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(result["spec"]["template"]["spec"]["containers"], json!([]));
}

#[test]
fn replace_directive_on_missing_map_sets_it() {
    let original = json!({"spec": {"containers": [{"name": "app"}]}});
    let patch =
        json!({"spec": {"securityContext": {"$patch": "replace", "runAsUser": 1000, "x": null}}});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(
        result["spec"]["securityContext"],
        json!({"runAsUser": 1000})
    );
}

#[test]
fn delete_directive_on_map_empties_it() {
    let original = deployment();
    let patch = json!({"spec":{"strategy":{"$patch":"delete"}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(result["spec"]["strategy"], json!({}));
    let patch = json!({"spec":{"absent":{"$patch":"delete"}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert!(result["spec"].get("absent").is_none());
}

#[test]
fn unknown_directives_are_rejected() {
    let original = deployment();
    let in_map = apply_err(
        &original,
        json!({"spec":{"strategy":{"$patch":"explode"}}}),
        "apps/v1",
        "Deployment",
    );
    assert_eq!(
        in_map.to_string(),
        "unknown $patch directive \"explode\" at spec.strategy"
    );
    let in_list = apply_err(
        &original,
        json!({"spec":{"template":{"spec":{"containers":[{"name":"web","$patch":"zap"}]}}}}),
        "apps/v1",
        "Deployment",
    );
    assert!(
        matches!(in_list, PatchError::UnknownDirective { .. }),
        "{in_list}"
    );
    let on_missing = apply_err(
        &original,
        json!({"spec":{"nothing":{"$patch":7}}}),
        "apps/v1",
        "Deployment",
    );
    assert_eq!(
        on_missing.to_string(),
        "unknown $patch directive 7 at spec.nothing"
    );
    let at_root = apply_err(
        &original,
        json!({"$patch": "merge"}),
        "apps/v1",
        "Deployment",
    );
    assert_eq!(
        at_root.to_string(),
        "unknown $patch directive \"merge\" at <root>"
    );
    let merge_in_list = apply_err(
        &original,
        json!({"spec":{"template":{"spec":{"containers":[{"$patch":"merge"}]}}}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(
        merge_in_list,
        PatchError::MergeDirectiveInList { .. }
    ));
}

// --- $retainKeys ---------------------------------------------------------------------

#[test]
fn retain_keys_switches_rolling_update_to_recreate() {
    let original = deployment();
    let patch = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":null}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(result["spec"]["strategy"], json!({"type": "Recreate"}));
    let mut expected = original.clone();
    expected["spec"]["strategy"] = json!({"type": "Recreate"});
    assert_eq!(result, expected);
}

#[test]
fn retain_keys_clears_unlisted_fields_and_merges_listed_ones() {
    let original = deployment();
    let patch = json!({"spec":{"strategy":{
        "$retainKeys": ["type", "rollingUpdate"],
        "rollingUpdate": {"maxSurge": 1}
    }}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        result["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}})
    );
    let patch = json!({"spec":{"strategy":{"$retainKeys": ["rollingUpdate"]}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        result["spec"]["strategy"],
        json!({"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
}

#[test]
fn retain_keys_in_volume_switches_source() {
    let original = deployment();
    let patch = json!({"spec":{"template":{"spec":{"volumes":[{
        "$retainKeys": ["name", "secret"],
        "name": "cfg",
        "secret": {"secretName": "web-secret"}
    }]}}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        result["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "cfg", "secret": {"secretName": "web-secret"}}])
    );
}

#[test]
fn retain_keys_errors() {
    let original = deployment();
    let unlisted = apply_err(
        &original,
        json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":{"maxSurge":1}}}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(unlisted, PatchError::InvalidRetainKeys { .. }));
    assert!(unlisted.to_string().contains("spec.strategy"), "{unlisted}");
    assert!(unlisted.to_string().contains("rollingUpdate"), "{unlisted}");
    let not_a_list = apply_err(
        &original,
        json!({"spec":{"strategy":{"$retainKeys":"type"}}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(not_a_list, PatchError::InvalidRetainKeys { .. }));
}

// --- primitive lists (finalizers, podCIDRs) ------------------------------------------

#[test]
fn finalizers_are_unioned() {
    let original = deployment();
    let patch = json!({"metadata":{"finalizers":["example.com/b","example.com/c"]}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    // Upstream order without $setElementOrder: the server's elements keep their places
    // relative to the patch's known elements; new ones come first.
    assert_eq!(
        strings(&result["metadata"]["finalizers"]),
        ["example.com/a", "example.com/b", "example.com/c"]
    );
    let patch = json!({"metadata":{"finalizers":["example.com/z"]}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        strings(&result["metadata"]["finalizers"]),
        ["example.com/z", "example.com/a", "example.com/b"]
    );
}

#[test]
fn finalizers_with_set_element_order_and_server_only_values() {
    // Upstream test "merge lists of scalars" (with strings for ints).
    let original = json!({"metadata": {"finalizers": ["1", "2", "4"]}});
    let patch =
        json!({"metadata": {"$setElementOrder/finalizers": ["1", "2", "3"], "finalizers": ["3"]}});
    let result = apply(&original, patch, "v1", "ConfigMap");
    assert_eq!(
        strings(&result["metadata"]["finalizers"]),
        ["1", "2", "3", "4"]
    );
}

#[test]
fn delete_from_primitive_list_removes_finalizers() {
    let original = deployment();
    let patch = json!({"metadata":{
        "$setElementOrder/finalizers": ["example.com/b", "example.com/c"],
        "$deleteFromPrimitiveList/finalizers": ["example.com/a", "example.com/missing"],
        "finalizers": ["example.com/c"]
    }});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        strings(&result["metadata"]["finalizers"]),
        ["example.com/b", "example.com/c"]
    );
    // On a list the object lacks, deletion adds nothing.
    let patch = json!({"spec":{"$deleteFromPrimitiveList/podCIDRs": ["10.0.0.0/24"]}});
    let result = apply(&json!({"spec": {}}), patch, "v1", "Node");
    assert_eq!(result, json!({"spec": {}}));
}

#[test]
fn delete_from_primitive_list_errors() {
    let original = deployment();
    let not_a_list = apply_err(
        &original,
        json!({"metadata":{"$deleteFromPrimitiveList/finalizers": "example.com/a"}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(
        not_a_list,
        PatchError::InvalidDeleteFromPrimitiveList { .. }
    ));
    assert!(
        not_a_list.to_string().contains("metadata.finalizers"),
        "{not_a_list}"
    );
    let bad_key = apply_err(
        &original,
        json!({"metadata":{"$deleteFromPrimitiveList": ["example.com/a"]}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(
        bad_key,
        PatchError::InvalidDeleteFromPrimitiveList { .. }
    ));
    let objects = apply_err(
        &original,
        json!({"spec":{"template":{"spec":{"$deleteFromPrimitiveList/containers": [{"name": "web"}]}}}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(
        objects,
        PatchError::InvalidDeleteFromPrimitiveList { .. }
    ));
}

#[test]
fn node_pod_cidrs_conditions_and_addresses_merge() {
    let original = json!({
        "metadata": {"name": "n1"},
        "spec": {"podCIDRs": ["10.0.0.0/24"], "taints": [{"key": "a", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "Starting"},
                {"type": "MemoryPressure", "status": "False"}
            ],
            "addresses": [{"type": "InternalIP", "address": "10.1.1.1"}, {"type": "Hostname", "address": "n1"}]
        }
    });
    let patch = json!({
        "spec": {"podCIDRs": ["fd00::/64"], "taints": [{"key": "b", "effect": "NoExecute"}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "addresses": [{"type": "InternalIP", "address": "10.1.1.2"}]
        }
    });
    let result = apply(&original, patch, "v1", "Node");
    assert_eq!(
        strings(&result["spec"]["podCIDRs"]),
        ["fd00::/64", "10.0.0.0/24"]
    );
    assert_eq!(
        result["spec"]["taints"],
        json!([{"key": "b", "effect": "NoExecute"}])
    );
    assert_eq!(
        result["status"]["conditions"],
        json!([
            {"type": "Ready", "status": "True", "reason": "KubeletReady"},
            {"type": "MemoryPressure", "status": "False"}
        ])
    );
    assert_eq!(
        result["status"]["addresses"],
        json!([{"type": "InternalIP", "address": "10.1.1.2"}, {"type": "Hostname", "address": "n1"}])
    );
}

// --- maps and nulls ------------------------------------------------------------------

#[test]
fn null_deletes_label_and_absent_null_is_ignored() {
    let original = deployment();
    let patch = json!({"metadata":{"labels":{"tier":null,"never":null,"new":"x"}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        result["metadata"]["labels"],
        json!({"app": "web", "new": "x"})
    );
    let mut expected = original.clone();
    expected["metadata"]["labels"] = json!({"app": "web", "new": "x"});
    assert_eq!(result, expected);
}

#[test]
fn null_inside_merged_element_removes_field() {
    let original = json!({"spec": {"containers": [{
        "name": "app",
        "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    }]}});
    let patch = json!({"spec": {"containers": [{
        "name": "app",
        "env": [{"name": "A", "value": "plain", "valueFrom": null}]
    }]}});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(
        result["spec"]["containers"][0]["env"],
        json!([{"name": "A", "value": "plain"}])
    );
}

#[test]
fn type_change_takes_patch_value() {
    let original = json!({"data": {"a": "1"}, "spec": {"x": "string"}});
    let patch = json!({"spec": {"x": {"nested": true, "gone": null}}, "data": ["list"]});
    let result = apply(&original, patch, "v1", "ConfigMap");
    assert_eq!(
        result,
        json!({"data": ["list"], "spec": {"x": {"nested": true}}})
    );
}

#[test]
fn new_elements_and_fields_have_directives_applied() {
    let original = json!({"spec": {"containers": [{"name": "app"}]}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "app"}, {"name": "new"}],
        "containers": [{
            "name": "new",
            "$setElementOrder/env": [{"name": "B"}, {"name": "A"}],
            "env": [{"name": "B", "value": "2"}, {"name": "Z", "$patch": "delete"}, {"name": "A", "value": "1"}],
            "resources": {"limits": {"cpu": "1", "memory": null}}
        }],
        "tolerations": [{"key": "t", "value": null}, {"$patch": "delete", "key": "u"}]
    }});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(
        result,
        json!({"spec": {
            "containers": [
                {"name": "app"},
                {
                    "name": "new",
                    "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
                    "resources": {"limits": {"cpu": "1"}}
                }
            ],
            "tolerations": [{"key": "t"}]
        }})
    );
}

// --- lists merged by key, lists replaced ----------------------------------------------

#[test]
fn service_ports_merge_by_port() {
    let original = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "svc"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
            ]
        }
    });
    let patch = json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}, {"port": 9090, "name": "metrics"}]}});
    let result = apply(&original, patch, "v1", "Service");
    assert_eq!(
        result["spec"]["ports"],
        json!([
            {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 9443, "protocol": "TCP"},
            {"port": 9090, "name": "metrics"}
        ])
    );
    let delete = json!({"spec": {"ports": [{"port": 80, "$patch": "delete"}]}});
    let result = apply(&original, delete, "v1", "Service");
    assert_eq!(result["spec"]["ports"].as_array().unwrap().len(), 1);
    assert_eq!(result["spec"]["ports"][0]["port"], json!(443));
}

#[test]
fn merge_keys_compare_numbers_by_value() {
    let original = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
    let patch = json!({"spec": {"ports": [{"port": 80.0, "targetPort": 9090}]}});
    let result = apply(&original, patch, "v1", "Service");
    assert_eq!(result["spec"]["ports"].as_array().unwrap().len(), 1);
    assert_eq!(result["spec"]["ports"][0]["targetPort"], json!(9090));
}

#[test]
fn lists_without_strategy_are_replaced() {
    let original = deployment();
    let patch = json!({"spec":{"template":{"spec":{
        "tolerations": [{"key": "k3", "operator": "Exists"}],
        "containers": [{"name": "web", "args": ["--port", "9090"]}]
    }}}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        result["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "k3", "operator": "Exists"}])
    );
    assert_eq!(containers(&result)[0]["args"], json!(["--port", "9090"]));
    assert_eq!(
        containers(&result)[0]["ports"],
        json!([{"containerPort": 8080, "protocol": "TCP"}])
    );
}

#[test]
fn container_ports_mounts_and_pod_lists_merge_by_their_keys() {
    let original = json!({"spec": {
        "containers": [{
            "name": "app",
            "ports": [{"containerPort": 80}],
            "volumeMounts": [{"name": "a", "mountPath": "/a"}],
            "volumeDevices": [{"name": "d", "devicePath": "/dev/x"}],
            "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]
        }],
        "imagePullSecrets": [{"name": "reg"}],
        "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a"]}],
        "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}],
        "schedulingGates": [{"name": "g1"}]
    }});
    let patch = json!({"spec": {
        "containers": [{
            "name": "app",
            "ports": [{"containerPort": 80, "name": "http"}],
            "volumeMounts": [{"name": "b", "mountPath": "/a"}],
            "volumeDevices": [{"name": "e", "devicePath": "/dev/y"}],
            "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]
        }],
        "imagePullSecrets": [{"name": "reg2"}],
        "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["b"]}],
        "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}],
        "schedulingGates": [{"name": "g1", "$patch": "delete"}]
    }});
    let result = apply(&original, patch, "v1", "Pod");
    let app = &result["spec"]["containers"][0];
    assert_eq!(app["ports"], json!([{"containerPort": 80, "name": "http"}]));
    assert_eq!(
        app["volumeMounts"],
        json!([{"name": "b", "mountPath": "/a"}])
    );
    assert_eq!(
        app["volumeDevices"],
        json!([{"name": "e", "devicePath": "/dev/y"}, {"name": "d", "devicePath": "/dev/x"}])
    );
    assert_eq!(
        app["resizePolicy"],
        json!([{"resourceName": "memory", "restartPolicy": "RestartContainer"}])
    );
    assert_eq!(
        result["spec"]["imagePullSecrets"],
        json!([{"name": "reg2"}, {"name": "reg"}])
    );
    assert_eq!(
        result["spec"]["hostAliases"],
        json!([{"ip": "1.2.3.4", "hostnames": ["b"]}])
    );
    assert_eq!(
        result["spec"]["topologySpreadConstraints"],
        json!([{"topologyKey": "zone", "maxSkew": 2}])
    );
    assert_eq!(result["spec"]["schedulingGates"], json!([]));
}

#[test]
fn owner_references_merge_by_uid() {
    let original = json!({"metadata": {"ownerReferences": [
        {"uid": "u1", "kind": "ReplicaSet", "name": "rs1", "controller": true},
        {"uid": "u2", "kind": "Foo", "name": "f"}
    ]}});
    let patch = json!({"metadata": {"ownerReferences": [
        {"uid": "u1", "blockOwnerDeletion": true},
        {"uid": "u2", "$patch": "delete"}
    ]}});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(
        result["metadata"]["ownerReferences"],
        json!([{"uid": "u1", "kind": "ReplicaSet", "name": "rs1", "controller": true, "blockOwnerDeletion": true}])
    );
}

#[test]
fn status_conditions_merge_by_type() {
    let original = deployment();
    let patch = json!({"status":{"conditions":[{"type":"Available","status":"False","reason":"MinimumReplicasUnavailable"}]}});
    let result = apply(&original, patch, "apps/v1", "Deployment");
    assert_eq!(
        result["status"]["conditions"],
        json!([
            {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
            {"type": "Progressing", "status": "True"}
        ])
    );
    let pod = json!({"status": {
        "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
        "podIPs": [{"ip": "10.0.0.1"}],
        "containerStatuses": [{"name": "a", "ready": false}, {"name": "b", "ready": true}]
    }});
    let patch = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "podIPs": [{"ip": "fd00::1"}],
        "containerStatuses": [{"name": "a", "ready": true}]
    }});
    let result = apply(&pod, patch, "v1", "Pod");
    assert_eq!(
        result["status"]["conditions"],
        json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
    );
    assert_eq!(
        result["status"]["podIPs"],
        json!([{"ip": "fd00::1"}, {"ip": "10.0.0.1"}])
    );
    // containerStatuses has no patch strategy upstream: replaced.
    assert_eq!(
        result["status"]["containerStatuses"],
        json!([{"name": "a", "ready": true}])
    );
}

#[test]
fn namespace_and_service_account_tables() {
    let ns = json!({"spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active", "conditions": [{"type": "A", "status": "True"}]}});
    let patch = json!({"spec": {"finalizers": ["other"]}, "status": {"conditions": [{"type": "B", "status": "True"}]}});
    let result = apply(&ns, patch, "v1", "Namespace");
    // Namespace spec.finalizers is atomic upstream, unlike metadata.finalizers.
    assert_eq!(result["spec"]["finalizers"], json!(["other"]));
    assert_eq!(names_of_types(&result["status"]["conditions"]), ["B", "A"]);

    let sa = json!({"secrets": [{"name": "s1"}], "imagePullSecrets": [{"name": "p1"}]});
    let patch = json!({"secrets": [{"name": "s2"}], "imagePullSecrets": [{"name": "p2"}]});
    let result = apply(&sa, patch, "v1", "ServiceAccount");
    assert_eq!(result["secrets"], json!([{"name": "s2"}, {"name": "s1"}]));
    assert_eq!(result["imagePullSecrets"], json!([{"name": "p2"}]));
}

fn names_of_types(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item["type"].as_str().unwrap())
        .collect()
}

// --- errors ----------------------------------------------------------------------------

#[test]
fn missing_merge_key_names_the_list() {
    let err = apply_err(
        &deployment(),
        json!({"spec":{"template":{"spec":{"containers":[{"image":"img:v2"}]}}}}),
        "apps/v1",
        "Deployment",
    );
    assert_eq!(
        err.to_string(),
        "list element missing its merge key \"name\" at spec.template.spec.containers"
    );
    let nested = apply_err(
        &deployment(),
        json!({"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"value":"x"}]}]}}}}),
        "apps/v1",
        "Deployment",
    );
    assert_eq!(
        nested.to_string(),
        "list element missing its merge key \"name\" at spec.template.spec.containers[name=\"web\"].env"
    );
    let delete_without_key = apply_err(
        &deployment(),
        json!({"spec":{"template":{"spec":{"containers":[{"$patch":"delete"}]}}}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(
        delete_without_key,
        PatchError::MissingMergeKey { key: "name", .. }
    ));
}

#[test]
fn non_object_documents_are_rejected() {
    let err = apply_err(&deployment(), json!([1, 2]), "apps/v1", "Deployment");
    assert!(matches!(err, PatchError::PatchNotObject { found: "array" }));
    assert_eq!(
        err.to_string(),
        "strategic merge patch must be a JSON object, got array"
    );
    let err = apply_strategic_merge_patch(&json!("x"), &json!({}), Schema(None)).unwrap_err();
    assert!(matches!(
        err,
        PatchError::OriginalNotObject { found: "string" }
    ));
}

#[test]
fn malformed_lists_are_rejected() {
    let original = deployment();
    let mixed = apply_err(
        &original,
        json!({"metadata":{"finalizers":[1]}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(mixed, PatchError::InvalidList { .. }), "{mixed}");
    assert!(mixed.to_string().contains("metadata.finalizers"), "{mixed}");
    let nested_lists = apply_err(
        &original,
        json!({"spec":{"template":{"spec":{"containers":[["web"]]}}}}),
        "apps/v1",
        "Deployment",
    );
    assert!(matches!(nested_lists, PatchError::InvalidList { .. }));
    let objects_without_key = apply_err(
        &json!({"metadata": {"finalizers": [{"a": 1}]}}),
        json!({"metadata":{"finalizers":[{"b": 2}]}}),
        "v1",
        "Pod",
    );
    assert!(matches!(objects_without_key, PatchError::NoMergeKey { .. }));
}

// --- kinds ------------------------------------------------------------------------------

#[test]
fn unknown_kinds_fall_back_to_json_merge() {
    let original = json!({"spec": {
        "containers": [{"name": "a", "image": "a:v1"}, {"name": "b"}],
        "settings": {"x": 1, "y": 2}
    }, "metadata": {"finalizers": ["f1"]}});
    let patch = json!({"spec": {
        "containers": [{"name": "a", "image": "a:v2"}],
        "settings": {"y": null, "z": 3}
    }, "metadata": {"finalizers": ["f2"]}});
    let result = apply(&original, patch, "example.com/v1", "Widget");
    assert_eq!(
        result,
        json!({"spec": {
            "containers": [{"name": "a", "image": "a:v2"}],
            "settings": {"x": 1, "z": 3}
        }, "metadata": {"finalizers": ["f2"]}})
    );
    assert!(!supports_strategic_merge("example.com/v1", "Widget"));
}

#[test]
fn unknown_fields_of_known_kinds_fall_back_to_json_merge() {
    let original = json!({"spec": {"extra": {"list": [1, 2], "keep": true}}});
    let patch = json!({"spec": {"extra": {"list": [3]}}});
    let result = apply(&original, patch, "v1", "Pod");
    assert_eq!(
        result,
        json!({"spec": {"extra": {"list": [3], "keep": true}}})
    );
}

#[test]
fn supported_kinds() {
    for (api_version, kind) in [
        ("v1", "Pod"),
        ("v1", "Service"),
        ("v1", "Endpoints"),
        ("v1", "ConfigMap"),
        ("v1", "Secret"),
        ("v1", "ServiceAccount"),
        ("v1", "Namespace"),
        ("v1", "Node"),
        ("v1", "Event"),
        ("v1", "ReplicationController"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("coordination.k8s.io/v1", "Lease"),
        (
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
        ),
        (
            "admissionregistration.k8s.io/v1",
            "MutatingWebhookConfiguration",
        ),
    ] {
        assert!(
            supports_strategic_merge(api_version, kind),
            "{api_version} {kind}"
        );
    }
    assert!(!supports_strategic_merge("apps/v1", "Pod"));
    assert!(!supports_strategic_merge("v1", "Deployment"));
    // The definition is a built-in kind (its objects, custom resources, are not).
    assert!(supports_strategic_merge(
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition"
    ));
    assert!(!supports_strategic_merge("example.com/v1", "Widget"));
    assert!(!supports_strategic_merge("v1", "pod"));
}

#[test]
fn metadata_only_kinds_merge_finalizers_and_replace_other_lists() {
    let original = json!({
        "metadata": {"finalizers": ["a"]},
        "endpoints": [{"addresses": ["10.0.0.1"]}],
        "ports": [{"port": 80}]
    });
    let patch =
        json!({"metadata": {"finalizers": ["b"]}, "endpoints": [{"addresses": ["10.0.0.2"]}]});
    let result = apply(&original, patch, "discovery.k8s.io/v1", "EndpointSlice");
    assert_eq!(
        result,
        json!({
            "metadata": {"finalizers": ["b", "a"]},
            "endpoints": [{"addresses": ["10.0.0.2"]}],
            "ports": [{"port": 80}]
        })
    );
}

#[test]
fn empty_patch_is_identity() {
    let original = deployment();
    assert_eq!(
        apply(&original, json!({}), "apps/v1", "Deployment"),
        original
    );
}
