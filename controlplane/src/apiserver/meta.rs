//! Object metadata chores kube-apiserver does on every write: names from generateName, uid,
//! creationTimestamp, generation bumps, fields that never change after creation; and where the
//! kind's strategy (status reset, defaults, canonical fields) comes in.

use rand::Rng as _;
use serde_json::{Map, Value, json};

use super::registry::{Resource, Subresource};

/// `metadata.name`, or "".
pub fn name(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// `metadata.namespace`, if set.
pub fn namespace(object: &Value) -> Option<&str> {
    object["metadata"]["namespace"].as_str()
}

/// `metadata.uid`, if set.
pub fn uid(object: &Value) -> Option<&str> {
    object["metadata"]["uid"].as_str()
}

/// The metadata map, created if missing; None if `object` is not a JSON object.
pub fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    let metadata = object
        .as_object_mut()?
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    metadata.as_object_mut()
}

/// The current time as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// kube's generateName suffix: 5 characters from an alphabet without vowels or look-alikes.
pub fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    // Like upstream, trim the prefix so the name stays within 63 characters.
    let keep = prefix.len().min(58);
    format!("{}{suffix}", &prefix[..keep])
}

/// Drops empty labels, annotations, finalizers and ownerReferences, as upstream's encoding
/// omits them (so `kubectl get -o jsonpath` shows nothing rather than `[]`).
fn drop_empty_metadata(object: &mut Value) {
    if let Some(metadata) = metadata_mut(object) {
        for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
            let empty = match metadata.get(field) {
                Some(Value::Array(items)) => items.is_empty(),
                Some(Value::Object(map)) => map.is_empty(),
                Some(Value::Null) => true,
                _ => false,
            };
            if empty {
                metadata.remove(field);
            }
        }
    }
}

/// Fills in what the server owns on create: uid, creationTimestamp, generation; drops what a
/// client may not set (resourceVersion, deletion fields, selfLink, managedFields); resets status
/// where a status subresource owns it.
pub fn prepare_create(resource: &Resource, object: &mut Value) {
    let has_spec = object.get("spec").is_some();
    if let Some(metadata) = metadata_mut(object) {
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ] {
            metadata.remove(field);
        }
        metadata.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        metadata.insert("creationTimestamp".into(), json!(now()));
        if has_spec {
            metadata.insert("generation".into(), json!(1));
        } else {
            metadata.remove("generation");
        }
    }
    let strategy = resource.strategy;
    if resource.has(Subresource::Status)
        && let Some(status) = strategy.status_on_create(object)
    {
        if status.is_null() {
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        } else {
            object["status"] = with_required_fields(object, status);
        }
    }
    strategy.default(object);
    strategy.canonicalize(object);
    drop_empty_metadata(object);
}

/// `status` with the fields its Go type always serialises (those without `omitempty`, such as
/// a ReplicationController's `replicas`, a DaemonSet's four counters or a StatefulSet's
/// `availableReplicas`, at 0), as kube-apiserver's answer to a create has them: the JSON rules of
/// the kind's Go struct, from the generated schema. Typed clients fail to decode an answer
/// without them.
fn with_required_fields(object: &Value, status: Value) -> Value {
    let probe = json!({
        "apiVersion": object["apiVersion"],
        "kind": object["kind"],
        "metadata": {},
        "status": status,
    });
    match flotilla_apimachinery::protobuf::normalize(&probe) {
        Ok(mut normalized) => normalized["status"].take(),
        Err(_) => probe["status"].clone(),
    }
}

/// What an update may not change: identity and lifecycle fields come from the stored object.
/// Returns the merged object; bumps generation when anything outside metadata/status changed.
pub fn prepare_update(
    resource: &Resource,
    old: &Value,
    mut new: Value,
    subresource: Option<Subresource>,
) -> Value {
    let strategy = resource.strategy;
    if let Some(sub @ (Subresource::Status | Subresource::Approval)) = subresource {
        // A status write changes status (and nothing else), as much of it as the kind lets
        // the subresource write.
        let mut merged = old.clone();
        merged["status"] = new["status"].take();
        strategy.prepare_subresource_update(sub, old, &mut merged);
        return merged;
    }
    // Upstream defaults every object it decodes, so a replace that leaves a defaulted field out
    // keeps it (and does not count as a spec change).
    if subresource.is_none() {
        strategy.prepare_update(old, &mut new);
        strategy.default(&mut new);
    }
    // Binding sets spec.nodeName and the PodScheduled condition together.
    if resource.has(Subresource::Status)
        && old.get("status").is_some()
        && subresource != Some(Subresource::Binding)
    {
        new["status"] = old["status"].clone();
    }
    let old_metadata = &old["metadata"];
    if let Some(metadata) = metadata_mut(&mut new) {
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_metadata.get(field) {
                Some(value) => {
                    metadata.insert(field.into(), value.clone());
                }
                None => {
                    metadata.remove(field);
                }
            }
        }
        metadata.remove("managedFields");
        metadata.remove("selfLink");
    }
    if spec_changed(old, &new)
        && let Some(generation) = old["metadata"]["generation"].as_i64()
        && let Some(metadata) = metadata_mut(&mut new)
    {
        metadata.insert("generation".into(), json!(generation + 1));
    }
    strategy.canonicalize(&mut new);
    drop_empty_metadata(&mut new);
    new
}

fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |object: &Value| -> Value {
        let mut object = object.clone();
        if let Some(map) = object.as_object_mut() {
            map.remove("metadata");
            map.remove("status");
        }
        object
    };
    strip(old) != strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::batch::job::{JOB_CONTROLLER_UID, JOB_NAME};
    use crate::apiserver::registry::core::pod::qos_class;
    use crate::apiserver::registry::{Registry, Resource, core::namespace::NAMESPACE_NAME_LABEL};

    fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        Registry::new().find(group, version, plural)
    }

    #[test]
    fn generated_names_have_five_character_suffixes() {
        let name = generated_name("web-");
        assert_eq!(name.len(), 9);
        assert!(name.starts_with("web-"));
        assert!(
            name[4..]
                .bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
    }

    #[test]
    fn create_sets_server_fields_and_defaults() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        let mut object = json!({
            "metadata": {"name": "web", "resourceVersion": "7"},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
            "status": {"replicas": 99},
        });
        prepare_create(deployments, &mut object);
        assert!(object["metadata"]["uid"].is_string());
        assert_eq!(object["metadata"]["generation"], 1);
        assert!(object["metadata"].get("resourceVersion").is_none());
        assert_eq!(object["status"], json!({}));
        assert_eq!(object["spec"]["replicas"], 1);
        assert_eq!(
            object["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
            "25%"
        );
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
    }

    #[test]
    fn namespaces_carry_their_name_as_a_label_on_create_and_update() {
        let namespaces = find("", "v1", "namespaces").unwrap();
        let mut object = json!({"metadata": {"name": "prod", "labels": {"team": "a"}}});
        prepare_create(namespaces, &mut object);
        assert_eq!(
            object["metadata"]["labels"],
            json!({"team": "a", NAMESPACE_NAME_LABEL: "prod"})
        );
        // An update that drops or changes the label gets it back.
        let proposed =
            json!({"metadata": {"name": "prod", "labels": {NAMESPACE_NAME_LABEL: "dev"}}});
        let updated = prepare_update(namespaces, &object, proposed, None);
        assert_eq!(
            updated["metadata"]["labels"],
            json!({NAMESPACE_NAME_LABEL: "prod"})
        );
        let pods = find("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
        prepare_create(pods, &mut pod);
        assert!(pod["metadata"].get("labels").is_none());
    }

    #[test]
    fn daemon_set_defaults_follow_upstream() {
        let daemonsets = find("apps", "v1", "daemonsets").unwrap();
        let mut object = json!({
            "metadata": {"name": "agent"},
            "spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}},
        });
        prepare_create(daemonsets, &mut object);
        let spec = &object["spec"];
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");

        let mut on_delete = json!({"metadata": {"name": "agent"},
            "spec": {"updateStrategy": {"type": "OnDelete"}, "revisionHistoryLimit": 3}});
        prepare_create(daemonsets, &mut on_delete);
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
        assert_eq!(on_delete["spec"]["revisionHistoryLimit"], 3);
    }

    #[test]
    fn replication_controller_defaults_follow_upstream() {
        let rcs = find("", "v1", "replicationcontrollers").unwrap();
        let mut object = json!({
            "metadata": {"name": "web"},
            "spec": {"template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "a", "image": "x:1"}]}}},
        });
        prepare_create(rcs, &mut object);
        assert_eq!(object["spec"]["replicas"], 1);
        assert_eq!(object["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(object["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            object["spec"]["template"]["spec"]["restartPolicy"],
            "Always"
        );

        let mut explicit = json!({
            "metadata": {"name": "web", "labels": {"tier": "front"}},
            "spec": {"replicas": 0, "selector": {"app": "web", "v": "1"},
                "template": {"metadata": {"labels": {"app": "web", "v": "1", "x": "y"}}}},
        });
        prepare_create(rcs, &mut explicit);
        assert_eq!(explicit["spec"]["replicas"], 0);
        assert_eq!(
            explicit["spec"]["selector"],
            json!({"app": "web", "v": "1"})
        );
        assert_eq!(explicit["metadata"]["labels"], json!({"tier": "front"}));

        // Without template labels there is nothing to default from: validation reports it.
        let mut bare = json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": {}}}});
        prepare_create(rcs, &mut bare);
        assert!(bare["spec"].get("selector").is_none());
        assert!(bare["metadata"].get("labels").is_none());
    }

    #[test]
    fn stateful_set_defaults_follow_upstream() {
        let statefulsets = find("apps", "v1", "statefulsets").unwrap();
        let mut object = json!({
            "metadata": {"name": "web"},
            "spec": {"serviceName": "web", "template": {"spec": {"containers": [{"name": "a"}]}}},
        });
        prepare_create(statefulsets, &mut object);
        let spec = &object["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );

        let mut custom = json!({"metadata": {"name": "web"}, "spec": {
            "replicas": 0, "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete"}}});
        prepare_create(statefulsets, &mut custom);
        let spec = &custom["spec"];
        assert_eq!(spec["replicas"], 0);
        assert_eq!(spec["podManagementPolicy"], "Parallel");
        assert_eq!(spec["updateStrategy"]["rollingUpdate"]["partition"], 2);
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Delete", "whenScaled": "Retain"})
        );
    }

    #[test]
    fn updates_keep_identity_and_bump_generation_on_spec_change() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        let old = json!({
            "metadata": {"name": "web", "uid": "u1", "generation": 3, "creationTimestamp": "t"},
            "spec": {"replicas": 1},
            "status": {"replicas": 1},
        });
        let new = json!({
            "metadata": {"name": "web", "uid": "forged", "labels": {"a": "b"}},
            "spec": {"replicas": 2},
            "status": {"replicas": 50},
        });
        let merged = prepare_update(deployments, &old, new, None);
        assert_eq!(merged["metadata"]["uid"], "u1");
        assert_eq!(merged["metadata"]["generation"], 4);
        assert_eq!(merged["metadata"]["labels"]["a"], "b");
        assert_eq!(merged["status"]["replicas"], 1, "status only via /status");

        let status_write =
            json!({"metadata": {}, "spec": {"replicas": 9}, "status": {"replicas": 2}});
        let merged = prepare_update(deployments, &old, status_write, Some(Subresource::Status));
        assert_eq!(merged["spec"]["replicas"], 1);
        assert_eq!(merged["status"]["replicas"], 2);
        assert_eq!(merged["metadata"]["generation"], 3);
    }

    fn job(spec: Value) -> Value {
        json!({"metadata": {"name": "pi"}, "spec": spec})
    }

    #[test]
    fn job_defaults_follow_upstream() {
        let jobs = find("batch", "v1", "jobs").unwrap();
        let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl:5"}]}});
        let mut plain = job(json!({"template": template}));
        prepare_create(jobs, &mut plain);
        let spec = &plain["spec"];
        assert_eq!(
            (
                &spec["completions"],
                &spec["parallelism"],
                &spec["backoffLimit"]
            ),
            (&json!(1), &json!(1), &json!(6))
        );
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never");

        // Parallelism alone is a work queue: completions stay unset.
        let mut queue = job(json!({"parallelism": 3, "template": template}));
        prepare_create(jobs, &mut queue);
        assert!(queue["spec"]["completions"].is_null());
        assert_eq!(queue["spec"]["parallelism"], 3);

        let mut counted = job(json!({"completions": 5, "template": template}));
        prepare_create(jobs, &mut counted);
        assert_eq!(counted["spec"]["parallelism"], 1);
        assert_eq!(counted["spec"]["completions"], 5);
    }

    #[test]
    fn job_selector_is_generated_from_the_uid_unless_manual() {
        let jobs = find("batch", "v1", "jobs").unwrap();
        let template = json!({"metadata": {"labels": {"app": "pi"}}, "spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]}});
        let mut generated = job(json!({"template": template}));
        prepare_create(jobs, &mut generated);
        jobs.strategy.prepare_named(&mut generated);
        let uid = generated["metadata"]["uid"].as_str().unwrap().to_owned();
        assert_eq!(
            generated["spec"]["selector"],
            json!({"matchLabels": {JOB_CONTROLLER_UID: uid}})
        );
        let labels = &generated["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels["app"], "pi");
        assert_eq!(labels[JOB_CONTROLLER_UID], uid.as_str());
        assert_eq!(labels["controller-uid"], uid.as_str());
        assert_eq!(labels[JOB_NAME], "pi");
        assert_eq!(labels["job-name"], "pi");
        assert_eq!(
            &generated["metadata"]["labels"], labels,
            "a Job without labels takes its template's"
        );

        let mut manual = job(json!({
            "manualSelector": true,
            "selector": {"matchLabels": {"app": "pi"}},
            "template": template,
        }));
        manual["metadata"]["labels"] = json!({"team": "a"});
        prepare_create(jobs, &mut manual);
        jobs.strategy.prepare_named(&mut manual);
        assert_eq!(
            manual["spec"]["selector"],
            json!({"matchLabels": {"app": "pi"}})
        );
        assert_eq!(
            manual["spec"]["template"]["metadata"]["labels"],
            json!({"app": "pi"})
        );
        assert_eq!(manual["metadata"]["labels"], json!({"team": "a"}));
    }

    #[test]
    fn cron_job_defaults_follow_upstream() {
        let cron_jobs = find("batch", "v1", "cronjobs").unwrap();
        let mut object = json!({"metadata": {"name": "nightly"}, "spec": {
            "schedule": "0 3 * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}},
        }});
        prepare_create(cron_jobs, &mut object);
        let spec = &object["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        assert_eq!(
            spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        assert!(
            spec["jobTemplate"]["spec"]["selector"].is_null(),
            "the Job's own create generates it"
        );
    }

    #[test]
    fn qos_classes() {
        assert_eq!(
            qos_class(&json!({"containers": [{"name": "a"}]})),
            "BestEffort"
        );
        let guaranteed =
            json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        let burstable = json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(qos_class(&burstable), "Burstable");
    }
}
