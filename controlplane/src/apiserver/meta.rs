//! Object metadata chores kube-apiserver does on every write: names from generateName, uid,
//! creationTimestamp, generation bumps, fields that never change after creation, and the few
//! defaults clients depend on.

use rand::Rng as _;
use serde_json::{Map, Value, json};

use super::resources::{Resource, Subresource};

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
    if resource.has(Subresource::Status) {
        reset_status_on_create(resource, object);
    }
    apply_defaults(resource, object);
    label_namespace_name(resource, object);
    drop_empty_metadata(object);
}

/// The label every namespace carries with its own name, set on create and on every update as
/// kube-apiserver does (1.21+), so NetworkPolicy `namespaceSelector`s can pick a namespace by
/// name without anyone labelling it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

fn label_namespace_name(resource: &Resource, object: &mut Value) {
    if !(resource.group.is_empty() && resource.kind == "Namespace") {
        return;
    }
    let name = name(object).to_owned();
    if name.is_empty() {
        return;
    }
    if let Some(metadata) = metadata_mut(object) {
        let labels = metadata.entry("labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        labels[NAMESPACE_NAME_LABEL] = json!(name);
    }
}

fn reset_status_on_create(resource: &Resource, object: &mut Value) {
    let status = match resource.kind {
        "Pod" => json!({"phase": "Pending", "qosClass": qos_class(&object["spec"])}),
        "Namespace" => json!({"phase": "Active"}),
        // The kubelet (our agent) registers a node with its status.
        "Node" => return,
        _ => json!({}),
    };
    object["status"] = status;
}

/// The pod's QoS class, by upstream's rules on requests and limits.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|field| spec[*field].as_array())
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for container in &containers {
        let requests = &container["resources"]["requests"];
        let limits = &container["resources"]["limits"];
        for resource in ["cpu", "memory"] {
            let request = requests[resource].as_str().or(limits[resource].as_str());
            let limit = limits[resource].as_str();
            if request.is_some() || limit.is_some() {
                any = true;
            }
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Upstream defaults that clients (kubectl rollout, describe) rely on.
fn apply_defaults(resource: &Resource, object: &mut Value) {
    match (resource.group, resource.kind) {
        ("", "Pod") => default_pod_spec(&mut object["spec"]),
        ("apps", "Deployment") => {
            let spec = &mut object["spec"];
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            if spec["strategy"]["type"].is_null() {
                spec["strategy"]["type"] = json!("RollingUpdate");
            }
            if spec["strategy"]["type"] == "RollingUpdate" {
                set_default(
                    &mut spec["strategy"]["rollingUpdate"],
                    "maxSurge",
                    json!("25%"),
                );
                set_default(
                    &mut spec["strategy"]["rollingUpdate"],
                    "maxUnavailable",
                    json!("25%"),
                );
            }
            default_pod_spec(&mut spec["template"]["spec"]);
        }
        ("", "ReplicationController") => default_replication_controller(object),
        ("apps", "ReplicaSet") => {
            set_default(&mut object["spec"], "replicas", json!(1));
            default_pod_spec(&mut object["spec"]["template"]["spec"]);
        }
        ("apps", "StatefulSet") => default_stateful_set(&mut object["spec"]),
        ("apps", "DaemonSet") => default_daemon_set(&mut object["spec"]),
        ("batch", "Job") => {
            let spec = &mut object["spec"];
            // Both unset is the non-parallel Job; parallelism alone is a work queue, whose
            // completions stay unset.
            if spec["completions"].is_null() && spec["parallelism"].is_null() {
                set_default(spec, "completions", json!(1));
            }
            set_default(spec, "parallelism", json!(1));
            let per_index = !spec["backoffLimitPerIndex"].is_null();
            set_default(
                spec,
                "backoffLimit",
                json!(if per_index { i32::MAX } else { 6 }),
            );
            set_default(spec, "completionMode", json!("NonIndexed"));
            set_default(spec, "suspend", json!(false));
            if spec["podFailurePolicy"].is_null() {
                set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
            } else {
                set_default(spec, "podReplacementPolicy", json!("Failed"));
            }
            default_pod_spec(&mut spec["template"]["spec"]);
        }
        ("batch", "CronJob") => {
            let spec = &mut object["spec"];
            set_default(spec, "concurrencyPolicy", json!("Allow"));
            set_default(spec, "suspend", json!(false));
            set_default(spec, "successfulJobsHistoryLimit", json!(3));
            set_default(spec, "failedJobsHistoryLimit", json!(1));
            default_pod_spec(&mut spec["jobTemplate"]["spec"]["template"]["spec"]);
        }
        ("", "Service") => default_service(&mut object["spec"]),
        _ => {}
    }
}

/// `SetDefaults_ReplicationController`: an empty selector, and empty object labels, become the
/// template's labels (the pre-apps/v1 convenience kubectl users rely on), and one replica.
fn default_replication_controller(object: &mut Value) {
    if !object["spec"].is_object() {
        return;
    }
    let template_labels = object["spec"]["template"]["metadata"]["labels"].clone();
    if template_labels.is_object() {
        let empty = |value: &Value| value.as_object().is_none_or(serde_json::Map::is_empty);
        if empty(&object["spec"]["selector"]) {
            object["spec"]["selector"] = template_labels.clone();
        }
        if empty(&object["metadata"]["labels"]) {
            object["metadata"]["labels"] = template_labels;
        }
    }
    set_default(&mut object["spec"], "replicas", json!(1));
    default_pod_spec(&mut object["spec"]["template"]["spec"]);
}

/// `SetDefaults_StatefulSet`: `kubectl rollout status` reads the strategy type and partition.
fn default_stateful_set(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "replicas", json!(1));
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    set_default(spec, "revisionHistoryLimit", json!(10));
    if spec["updateStrategy"]["type"].is_null() {
        spec["updateStrategy"]["type"] = json!("RollingUpdate");
    }
    if spec["updateStrategy"]["type"] == "RollingUpdate" {
        set_default(
            &mut spec["updateStrategy"]["rollingUpdate"],
            "partition",
            json!(0),
        );
    }
    let retention = &mut spec["persistentVolumeClaimRetentionPolicy"];
    set_default(retention, "whenDeleted", json!("Retain"));
    set_default(retention, "whenScaled", json!("Retain"));
    default_pod_spec(&mut spec["template"]["spec"]);
}

/// `SetDefaults_DaemonSet`: RollingUpdate one node at a time, no surge.
fn default_daemon_set(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "revisionHistoryLimit", json!(10));
    if spec["updateStrategy"]["type"].is_null() {
        spec["updateStrategy"]["type"] = json!("RollingUpdate");
    }
    if spec["updateStrategy"]["type"] == "RollingUpdate" {
        let rolling = &mut spec["updateStrategy"]["rollingUpdate"];
        set_default(rolling, "maxUnavailable", json!(1));
        set_default(rolling, "maxSurge", json!(0));
    }
    default_pod_spec(&mut spec["template"]["spec"]);
}

/// The label selecting a Job's pods by the Job's uid.
pub const JOB_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
/// The label carrying a Job's name on its pods.
pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// What upstream's Job strategy does at validation time, once the Job has its name and uid:
/// unless `spec.manualSelector` is true, select the pods by the Job's uid and label the pod
/// template with it and the Job's name (both the current and the legacy label keys). Labels
/// the caller set are kept, so a conflicting one fails validation rather than being hidden.
pub fn generate_job_selector(resource: &Resource, object: &mut Value) {
    if (resource.group, resource.kind) != ("batch", "Job")
        || object["spec"]["manualSelector"] == json!(true)
        || !object["spec"].is_object()
    {
        return;
    }
    let job_name = name(object).to_owned();
    let Some(job_uid) = uid(object).map(str::to_owned) else {
        return;
    };
    let template = &mut object["spec"]["template"];
    if !template.is_object() {
        *template = json!({});
    }
    let labels = &mut template["metadata"]["labels"];
    for key in ["job-name", JOB_NAME] {
        set_default(labels, key, json!(job_name));
    }
    for key in ["controller-uid", JOB_CONTROLLER_UID] {
        set_default(labels, key, json!(job_uid));
    }
    let template_labels = labels.clone();
    set_default(
        &mut object["spec"]["selector"]["matchLabels"],
        JOB_CONTROLLER_UID,
        json!(job_uid),
    );
    // Upstream defaults a Job without labels to its template's labels (the same map, so the
    // generated ones show on the Job too).
    let job_labels = &object["metadata"]["labels"];
    if job_labels.is_null() || job_labels.as_object().is_some_and(Map::is_empty) {
        object["metadata"]["labels"] = template_labels;
    }
}

fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    for field in ["initContainers", "containers"] {
        if let Some(containers) = spec[field].as_array_mut() {
            for container in containers {
                let image = container["image"].as_str().unwrap_or_default().to_owned();
                let tag_is_latest = {
                    let last = image.rsplit('/').next().unwrap_or_default();
                    !last.contains(':') && !image.contains('@') || last.ends_with(":latest")
                };
                let policy = if tag_is_latest {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                set_default(container, "imagePullPolicy", json!(policy));
                set_default(
                    container,
                    "terminationMessagePath",
                    json!("/dev/termination-log"),
                );
                set_default(container, "terminationMessagePolicy", json!("File"));
                set_default(container, "resources", json!({}));
                if let Some(ports) = container["ports"].as_array_mut() {
                    for port in ports {
                        set_default(port, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

fn default_service(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if let Some(ports) = spec["ports"].as_array_mut() {
        for port in ports {
            set_default(port, "protocol", json!("TCP"));
            if port["targetPort"].is_null() {
                port["targetPort"] = port["port"].clone();
            }
        }
    }
}

fn set_default(object: &mut Value, field: &str, value: Value) {
    if object.is_null() {
        *object = json!({});
    }
    if let Some(map) = object.as_object_mut() {
        map.entry(field).or_insert(value);
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
    if subresource == Some(Subresource::Status) {
        // A status write changes status (and nothing else).
        let mut merged = old.clone();
        merged["status"] = new["status"].take();
        return merged;
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
    if resource.group.is_empty() && resource.kind == "Service" {
        drop_type_dependent_fields(old, &mut new);
    }
    label_namespace_name(resource, &mut new);
    drop_empty_metadata(&mut new);
    new
}

/// A Service that stops being a NodePort/LoadBalancer loses what only those types have (its
/// nodePorts, externalTrafficPolicy, healthCheckNodePort), as upstream's service strategy does,
/// so `type: ClusterIP` alone is a valid change.
fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    let external = |object: &Value| {
        matches!(
            object["spec"]["type"].as_str(),
            Some("NodePort" | "LoadBalancer")
        )
    };
    if !external(old) || external(new) {
        return;
    }
    if let Some(spec) = new["spec"].as_object_mut() {
        spec.remove("externalTrafficPolicy");
        spec.remove("healthCheckNodePort");
    }
    if let Some(ports) = new["spec"]["ports"].as_array_mut() {
        for port in ports {
            if let Some(port) = port.as_object_mut() {
                port.remove("nodePort");
            }
        }
    }
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
    use crate::apiserver::resources::find;

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
        generate_job_selector(jobs, &mut generated);
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
        generate_job_selector(jobs, &mut manual);
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
