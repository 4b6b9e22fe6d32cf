//! Validation tests, first half.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (project rule).

use serde_json::{Value, json};

use super::fixtures::*;
use crate::apiserver::machinery::field::{CauseReason, invalid_message};

#[test]
fn valid_deployment_passes() {
    assert_valid("apps/v1", "Deployment", &deployment());
}

#[test]
fn valid_objects_of_every_kind_pass() {
    let cases = [
        ("v1", "Pod", pod()),
        ("v1", "Service", service()),
        (
            "v1",
            "Service",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": "default"},
                   "spec": {"clusterIP": "None", "selector": {"app": "db"}}}),
        ),
        (
            "v1",
            "Service",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "default"},
                   "spec": {"type": "ExternalName", "externalName": "example.com."}}),
        ),
        (
            "v1",
            "ConfigMap",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"},
                   "data": {"app.conf": "x=1", "KEY_NAME": "v"}}),
        ),
        (
            "v1",
            "Secret",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                   "type": "kubernetes.io/tls", "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"}}),
        ),
        (
            "v1",
            "ServiceAccount",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder", "namespace": "ci"}}),
        ),
        (
            "v1",
            "Namespace",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}, "spec": {"finalizers": ["kubernetes"]}}),
        ),
        (
            "v1",
            "Node",
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1.example"},
                   "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:1::/64"],
                            "taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
        ),
        (
            "v1",
            "Event",
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.17a", "namespace": "default"},
                   "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Started"}),
        ),
        (
            "v1",
            "Endpoints",
            json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
                   "subsets": [{"addresses": [{"ip": "10.1.2.3"}], "ports": [{"port": 8080}]}]}),
        ),
        (
            "v1",
            "Binding",
            json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p", "namespace": "default"},
                   "target": {"kind": "Node", "name": "node-1"}}),
        ),
        (
            "coordination.k8s.io/v1",
            "Lease",
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "node-1", "namespace": "kube-node-lease"},
                   "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40}}),
        ),
        (
            "apps/v1",
            "StatefulSet",
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default"},
                   "spec": {"selector": {"matchLabels": {"app": "db"}},
                            "template": {"metadata": {"labels": {"app": "db"}},
                                         "spec": {"containers": [{"name": "db", "image": "postgres:16",
                                                                  "volumeMounts": [{"name": "pgdata", "mountPath": "/var/lib/postgresql"}]}]}},
                            "volumeClaimTemplates": [{"metadata": {"name": "pgdata"},
                                                      "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        ),
        (
            "apps/v1",
            "DaemonSet",
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "kube-system"},
                   "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["agent"]}]},
                            "template": {"metadata": {"labels": {"app": "agent"}},
                                         "spec": {"hostNetwork": true, "tolerations": [{"operator": "Exists"}],
                                                  "containers": [{"name": "agent", "image": "agent:v1"}]}}}}),
        ),
        (
            "apps/v1",
            "ReplicaSet",
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web-5d", "namespace": "default"},
                   "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}),
        ),
        (
            "batch/v1",
            "Job",
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
                   "spec": {"backoffLimit": 4, "template": {"spec": {"restartPolicy": "Never",
                            "containers": [{"name": "pi", "image": "perl", "command": ["perl", "-e", "print 1"]}]}}}}),
        ),
        (
            "batch/v1",
            "CronJob",
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello", "namespace": "default"},
                   "spec": {"schedule": "*/5 0-6 * jan-jun MON-FRI", "concurrencyPolicy": "Forbid",
                            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                                            "containers": [{"name": "hello", "image": "busybox"}]}}}}}}),
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": "default"},
                   "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                            "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                                         "ports": [{"protocol": "TCP", "port": 80, "endPort": 90}]}]}}),
        ),
        (
            "discovery.k8s.io/v1",
            "EndpointSlice",
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-abc", "namespace": "default"},
                   "addressType": "IPv4", "endpoints": [{"addresses": ["10.1.2.3"], "conditions": {"ready": true}}],
                   "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}),
        ),
        (
            "autoscaling/v1",
            "Scale",
            json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web", "namespace": "default"},
                   "spec": {"replicas": 5}}),
        ),
    ];
    for (api_version, kind, obj) in cases {
        assert_valid(api_version, kind, &obj);
    }
}

#[test]
fn cause_reason_strings_match_upstream() {
    assert_eq!(CauseReason::Required.as_str(), "FieldValueRequired");
    assert_eq!(CauseReason::Invalid.as_str(), "FieldValueInvalid");
    assert_eq!(CauseReason::NotSupported.as_str(), "FieldValueNotSupported");
    assert_eq!(CauseReason::Duplicate.as_str(), "FieldValueDuplicate");
    assert_eq!(CauseReason::TooLong.as_str(), "FieldValueTooLong");
    assert_eq!(CauseReason::Forbidden.as_str(), "FieldValueForbidden");
    assert_eq!(CauseReason::TypeInvalid.as_str(), "FieldValueTypeInvalid");
    assert_eq!(CauseReason::NotFound.as_str(), "FieldValueNotFound");
    assert_eq!(CauseReason::TooMany.as_str(), "FieldValueTooMany");
    assert_eq!(CauseReason::Internal.as_str(), "InternalError");
}

#[test]
fn decode_check_reports_type_errors_with_the_field() {
    let mut d = deployment();
    set(&mut d, "/spec/replicas", json!("three"));
    let err = decode_check("apps/v1", "Deployment", &d).unwrap_err();
    assert_eq!(
        err,
        "json: cannot unmarshal string into Go struct field spec.replicas of type int32"
    );
    let mut p = pod();
    set(
        &mut p,
        "/spec/containers/0/ports/0/containerPort",
        json!(true),
    );
    let err = decode_check("v1", "Pod", &p).unwrap_err();
    assert!(
        err.contains("spec.containers[0].ports[0].containerPort"),
        "{err}"
    );
}

#[test]
fn decode_check_rejects_bad_quantities() {
    let mut p = pod();
    set(
        &mut p,
        "/spec/containers/0/resources",
        json!({"limits": {"memory": "12 GB"}}),
    );
    let err = decode_check("v1", "Pod", &p).unwrap_err();
    assert!(
        err.contains("quantities must match the regular expression"),
        "{err}"
    );
    assert!(decode_check("v1", "Pod", &json!([1, 2])).is_err());
}

#[test]
fn decode_check_tolerates_missing_required_fields() {
    // Go zero-fills a missing condition lastTransitionTime; so must we.
    let mut s = service();
    set(
        &mut s,
        "/status",
        json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Ok", "message": ""}]}),
    );
    assert_eq!(decode_check("v1", "Service", &s), Ok(()));
    assert!(unknown_fields("v1", "Service", &s).is_empty());
}

#[test]
fn unknown_fields_finds_typos_only() {
    let mut d = deployment();
    set(&mut d, "/spec/replicass", json!(3));
    set(
        &mut d,
        "/spec/template/spec/containers/0/imagee",
        json!("nginx"),
    );
    // Known fields with empty or null values are not unknown.
    set(&mut d, "/metadata/annotations", json!({}));
    set(&mut d, "/metadata/creationTimestamp", Value::Null);
    set(&mut d, "/spec/template/spec/containers/0/env", json!([]));
    set(&mut d, "/spec/paused", Value::Null);
    set(&mut d, "/status", json!({}));
    let mut unknown = unknown_fields("apps/v1", "Deployment", &d);
    unknown.sort();
    assert_eq!(
        unknown,
        vec![
            "spec.replicass".to_string(),
            "spec.template.spec.containers[0].imagee".to_string()
        ]
    );
    assert!(unknown_fields("apps/v1", "Deployment", &deployment()).is_empty());
    set(&mut d, "/metadata/labels", json!({}));
    assert!(!unknown_fields("apps/v1", "Deployment", &d).contains(&"metadata.labels".to_string()));
}

#[test]
fn invalid_message_aggregates_like_upstream() {
    let mut d = deployment();
    set(&mut d, "/spec/replicas", json!(-1));
    let causes = check("apps/v1", "Deployment", &d);
    assert_eq!(
        invalid_message("apps/v1", "Deployment", "web", &causes),
        "Deployment.apps \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
    let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "default"}, "spec": {}});
    let causes = check("v1", "Pod", &p);
    assert_eq!(
        invalid_message("v1", "Pod", "", &causes),
        "Pod \"\" is invalid: [metadata.name: Required value: name or generateName is required, spec.containers: Required value]"
    );
}

// --- ObjectMeta ---------------------------------------------------------------------------

#[test]
fn name_is_required_and_must_be_a_subdomain() {
    let mut d = deployment();
    remove(&mut d, "/metadata/name");
    let c = check("apps/v1", "Deployment", &d);
    assert_eq!(
        expect(&c, CauseReason::Required, "metadata.name"),
        "Required value: name or generateName is required"
    );
    set(&mut d, "/metadata/name", json!("Web_1"));
    let c = check("apps/v1", "Deployment", &d);
    assert_eq!(
        format!("{}", c[0]),
        r#"metadata.name: Invalid value: "Web_1": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
    );
    set(&mut d, "/metadata/name", json!("a".repeat(254)));
    let msg = expect(
        &check("apps/v1", "Deployment", &d),
        CauseReason::Invalid,
        "metadata.name",
    );
    assert!(
        msg.ends_with("must be no more than 253 characters"),
        "{msg}"
    );
}

#[test]
fn generate_name_is_checked_as_a_prefix() {
    let mut d = deployment();
    set(&mut d, "/metadata/generateName", json!("web-"));
    assert!(check("apps/v1", "Deployment", &d).is_empty());
    set(&mut d, "/metadata/generateName", json!("Web_"));
    expect(
        &check("apps/v1", "Deployment", &d),
        CauseReason::Invalid,
        "metadata.generateName",
    );
}

#[test]
fn namespace_and_service_names_are_labels() {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team.a"}});
    let msg = expect(
        &check("v1", "Namespace", &ns),
        CauseReason::Invalid,
        "metadata.name",
    );
    assert_eq!(msg, "Invalid value: \"team.a\": must not contain dots");
    let mut s = service();
    set(&mut s, "/metadata/name", json!("1web"));
    let msg = expect(
        &check("v1", "Service", &s),
        CauseReason::Invalid,
        "metadata.name",
    );
    assert!(msg.contains("DNS-1035 label"), "{msg}");
    assert!(msg.contains("(e.g. 'my-name',  or 'abc-123', "), "{msg}");
}

#[test]
fn namespace_field_is_required_and_a_label() {
    let mut p = pod();
    remove(&mut p, "/metadata/namespace");
    expect(
        &check("v1", "Pod", &p),
        CauseReason::Required,
        "metadata.namespace",
    );
    set(&mut p, "/metadata/namespace", json!("Team_A"));
    expect(
        &check("v1", "Pod", &p),
        CauseReason::Invalid,
        "metadata.namespace",
    );
    // Cluster-scoped kinds ignore it (the registry clears it).
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "namespace": "x"}});
    assert!(check("v1", "Namespace", &ns).is_empty());
}

#[test]
fn path_segment_rules_apply_to_kinds_without_dns_names() {
    let ev = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "a/b", "namespace": "default"},
                    "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}});
    let msg = expect(
        &check("v1", "Event", &ev),
        CauseReason::Invalid,
        "metadata.name",
    );
    assert_eq!(msg, "Invalid value: \"a/b\": may not contain '/'");
    let mut ev2 = ev.clone();
    set(&mut ev2, "/metadata/name", json!(".."));
    let msg = expect(
        &check("v1", "Event", &ev2),
        CauseReason::Invalid,
        "metadata.name",
    );
    assert_eq!(msg, "Invalid value: \"..\": may not be '..'");
}

#[test]
fn labels_and_annotations_are_validated() {
    let mut d = deployment();
    set(
        &mut d,
        "/metadata/labels",
        json!({"bad key!": "x", "ok": "v".repeat(64)}),
    );
    let c = check("apps/v1", "Deployment", &d);
    let bad_key = c
        .iter()
        .filter(|c| c.field == "metadata.labels")
        .map(|c| c.message.clone())
        .collect::<Vec<_>>();
    assert!(
        bad_key.iter().any(|m| m.starts_with(
            "Invalid value: \"bad key!\": name part must consist of alphanumeric characters"
        )),
        "{bad_key:?}"
    );
    assert!(
        bad_key
            .iter()
            .any(|m| m.ends_with("must be no more than 63 characters")),
        "{bad_key:?}"
    );

    let mut d = deployment();
    set(
        &mut d,
        "/metadata/annotations",
        json!({"example.com/": "x"}),
    );
    expect(
        &check("apps/v1", "Deployment", &d),
        CauseReason::Invalid,
        "metadata.annotations",
    );
    set(
        &mut d,
        "/metadata/annotations",
        json!({"big": "x".repeat(256 * 1024)}),
    );
    let msg = expect(
        &check("apps/v1", "Deployment", &d),
        CauseReason::TooLong,
        "metadata.annotations",
    );
    assert_eq!(msg, "Too long: may not be more than 262144 bytes");
}

#[test]
fn owner_references_and_finalizers_are_validated() {
    let mut d = deployment();
    set(
        &mut d,
        "/metadata/ownerReferences",
        json!([{"apiVersion": "apps/", "kind": "", "name": "x", "uid": "1"}]),
    );
    let c = check("apps/v1", "Deployment", &d);
    expect(
        &c,
        CauseReason::Invalid,
        "metadata.ownerReferences.apiVersion",
    );
    expect(&c, CauseReason::Invalid, "metadata.ownerReferences.kind");
    let mut d = deployment();
    set(&mut d, "/metadata/finalizers", json!(["cleanup"]));
    let msg = expect(
        &check("apps/v1", "Deployment", &d),
        CauseReason::Invalid,
        "metadata.finalizers[0]",
    );
    assert!(msg.contains("neither a standard finalizer name nor is it fully qualified"));
}

#[test]
fn metadata_identity_is_immutable_on_update() {
    let old = deployment();
    let mut new = deployment();
    set(&mut new, "/metadata/name", json!("web2"));
    set(&mut new, "/metadata/uid", json!("u-2"));
    let c = validate("apps/v1", "Deployment", &new, Some(&old));
    assert_eq!(
        expect(&c, CauseReason::Invalid, "metadata.name"),
        "Invalid value: \"web2\": field is immutable"
    );
    expect(&c, CauseReason::Invalid, "metadata.uid");
}

// --- Pod ----------------------------------------------------------------------------------

#[test]
fn pod_needs_containers_with_unique_label_names_and_images() {
    let mut p = pod();
    set(&mut p, "/spec/containers", json!([]));
    assert_eq!(
        expect(
            &check("v1", "Pod", &p),
            CauseReason::Required,
            "spec.containers"
        ),
        "Required value"
    );
    set(
        &mut p,
        "/spec/containers",
        json!([{"name": "app", "image": "a"}, {"name": "app", "image": "b"}, {"name": "Bad_Name"}]),
    );
    let c = check("v1", "Pod", &p);
    assert_eq!(
        expect(&c, CauseReason::Duplicate, "spec.containers[1].name"),
        "Duplicate value: \"app\""
    );
    expect(&c, CauseReason::Invalid, "spec.containers[2].name");
    expect(&c, CauseReason::Required, "spec.containers[2].image");
}

#[test]
fn pod_ports_are_checked() {
    let mut p = pod();
    set(
        &mut p,
        "/spec/containers/0/ports",
        json!([
            {"containerPort": 70000, "protocol": "HTTP", "name": "a-very-long-port-name"},
            {"containerPort": 81, "name": "web"},
            {"containerPort": 82, "name": "web", "hostPort": 0},
            {"name": "nope"}
        ]),
    );
    let c = check("v1", "Pod", &p);
    assert_eq!(
        expect(
            &c,
            CauseReason::Invalid,
            "spec.containers[0].ports[0].containerPort"
        ),
        "Invalid value: 70000: must be between 1 and 65535, inclusive"
    );
    assert_eq!(
        expect(
            &c,
            CauseReason::NotSupported,
            "spec.containers[0].ports[0].protocol"
        ),
        "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""
    );
    assert_eq!(
        expect(&c, CauseReason::Invalid, "spec.containers[0].ports[0].name"),
        "Invalid value: \"a-very-long-port-name\": must be no more than 15 characters"
    );
    expect(
        &c,
        CauseReason::Duplicate,
        "spec.containers[0].ports[2].name",
    );
    expect(
        &c,
        CauseReason::Required,
        "spec.containers[0].ports[3].containerPort",
    );
}

#[test]
fn pod_host_ports_must_not_collide() {
    let mut p = pod();
    set(
        &mut p,
        "/spec/containers",
        json!([
            {"name": "a", "image": "x", "ports": [{"containerPort": 80, "hostPort": 8080}]},
            {"name": "b", "image": "x", "ports": [{"containerPort": 81, "hostPort": 8080}]}
        ]),
    );
    let msg = expect(
        &check("v1", "Pod", &p),
        CauseReason::Duplicate,
        "spec.containers[1].ports[0].hostPort",
    );
    assert_eq!(msg, "Duplicate value: \"TCP//8080\"");
}

#[test]
fn env_var_names_follow_relaxed_rules() {
    let mut p = pod();
    set(
        &mut p,
        "/spec/containers/0/env",
        json!([{"name": "1st.var-OK", "value": "x"}, {"name": "A=B"}, {"name": ""}, {"name": "X", "valueFrom": {}}]),
    );
    let c = check("v1", "Pod", &p);
    assert_eq!(
        expect(&c, CauseReason::Invalid, "spec.containers[0].env[1].name"),
        "Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='"
    );
    expect(&c, CauseReason::Required, "spec.containers[0].env[2].name");
    expect(
        &c,
        CauseReason::Invalid,
        "spec.containers[0].env[3].valueFrom",
    );
    assert!(
        !c.iter()
            .any(|c| c.field == "spec.containers[0].env[0].name")
    );
}

#[test]
fn restart_and_dns_policies_are_enumerations() {
    let mut p = pod();
    set(&mut p, "/spec/restartPolicy", json!("Sometimes"));
    set(&mut p, "/spec/dnsPolicy", json!("Google"));
    let c = check("v1", "Pod", &p);
    assert_eq!(
        expect(&c, CauseReason::NotSupported, "spec.restartPolicy"),
        "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
    );
    expect(&c, CauseReason::NotSupported, "spec.dnsPolicy");
    set(&mut p, "/spec/dnsPolicy", json!("None"));
    expect(
        &check("v1", "Pod", &p),
        CauseReason::Required,
        "spec.dnsConfig",
    );
}

#[test]
fn requests_may_not_exceed_limits() {
    let mut p = pod();
    set(
        &mut p,
        "/spec/containers/0/resources",
        json!({"requests": {"cpu": "2", "memory": "1Gi", "example.com/gpu": "1"},
               "limits": {"cpu": "500m", "memory": "1024Mi", "example.com/gpu": "2", "bogus": "1"}}),
    );
    let c = check("v1", "Pod", &p);
    let req = c
        .iter()
        .filter(|c| c.field == "spec.containers[0].resources.requests")
        .map(|c| c.message.clone())
        .collect::<Vec<_>>();
    assert!(
        req.contains(
            &"Invalid value: \"2\": must be less than or equal to cpu limit of 500m".to_string()
        ),
        "{req:?}"
    );
    assert!(
        req.contains(
            &"Invalid value: \"1\": must be equal to example.com/gpu limit of 2".to_string()
        ),
        "{req:?}"
    );
    // 1Gi == 1024Mi: no memory complaint.
    assert!(!req.iter().any(|m| m.contains("memory")), "{req:?}");
    expect(
        &c,
        CauseReason::Invalid,
        "spec.containers[0].resources.limits[bogus]",
    );
    let mut p = pod();
    set(
        &mut p,
        "/spec/containers/0/resources",
        json!({"requests": {"cpu": "-1"}}),
    );
    expect(
        &check("v1", "Pod", &p),
        CauseReason::Invalid,
        "spec.containers[0].resources.requests[cpu]",
    );
}

#[test]
fn volumes_are_unique_and_mounts_must_reference_them() {
    let mut p = pod();
    set(
        &mut p,
        "/spec/volumes",
        json!([{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}}, {"name": "none"},
               {"name": "two", "emptyDir": {}, "hostPath": {"path": "/x"}}]),
    );
    set(
        &mut p,
        "/spec/containers/0/volumeMounts",
        json!([{"name": "data", "mountPath": "/d"}, {"name": "missing", "mountPath": "/m"}, {"name": "data", "mountPath": "/d"}]),
    );
    let c = check("v1", "Pod", &p);
    expect(&c, CauseReason::Duplicate, "spec.volumes[1].name");
    assert_eq!(
        expect(&c, CauseReason::Required, "spec.volumes[2]"),
        "Required value: must specify a volume type"
    );
    expect(&c, CauseReason::Forbidden, "spec.volumes[3].hostPath");
    assert_eq!(
        expect(
            &c,
            CauseReason::NotFound,
            "spec.containers[0].volumeMounts[1].name"
        ),
        "Not found: \"missing\""
    );
    expect(
        &c,
        CauseReason::Invalid,
        "spec.containers[0].volumeMounts[2].mountPath",
    );
    assert!(
        !c.iter()
            .any(|c| c.field == "spec.containers[0].volumeMounts[0].name")
    );
}

#[test]
fn probes_tolerations_and_security_context() {
    let mut p = pod();
    set(
        &mut p,
        "/spec/containers/0/livenessProbe",
        json!({"periodSeconds": -1}),
    );
    set(
        &mut p,
        "/spec/tolerations",
        json!([{"key": "k", "operator": "Maybe"}]),
    );
    set(&mut p, "/spec/securityContext", json!({"runAsUser": -5}));
    let c = check("v1", "Pod", &p);
    assert_eq!(
        expect(
            &c,
            CauseReason::Required,
            "spec.containers[0].livenessProbe"
        ),
        "Required value: must specify a handler type"
    );
    expect(
        &c,
        CauseReason::Invalid,
        "spec.containers[0].livenessProbe.periodSeconds",
    );
    expect(
        &c,
        CauseReason::NotSupported,
        "spec.tolerations[0].operator",
    );
    expect(&c, CauseReason::Invalid, "spec.securityContext.runAsUser");
}

#[test]
fn pod_update_may_only_change_images_and_friends() {
    let old = pod();
    let mut new = pod();
    set(&mut new, "/spec/containers/0/image", json!("busybox:1.37"));
    set(&mut new, "/spec/activeDeadlineSeconds", json!(60));
    set(
        &mut new,
        "/spec/tolerations",
        json!([{"key": "k", "operator": "Exists"}]),
    );
    assert_eq!(validate("v1", "Pod", &new, Some(&old)), vec![]);

    // A stored (defaulted) pod versus the same manifest resent: no change.
    let mut stored = pod();
    set(&mut stored, "/spec/dnsPolicy", json!("ClusterFirst"));
    set(
        &mut stored,
        "/spec/containers/0/imagePullPolicy",
        json!("IfNotPresent"),
    );
    set(
        &mut stored,
        "/spec/containers/0/ports/0/protocol",
        json!("TCP"),
    );
    set(
        &mut stored,
        "/spec/containers/0/terminationMessagePath",
        json!("/dev/termination-log"),
    );
    assert_eq!(validate("v1", "Pod", &pod(), Some(&stored)), vec![]);

    let mut new = pod();
    set(
        &mut new,
        "/spec/containers/0/ports/0/containerPort",
        json!(9090),
    );
    let c = validate("v1", "Pod", &new, Some(&old));
    let msg = expect(&c, CauseReason::Forbidden, "spec");
    assert!(
        msg.starts_with(
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("spec.containers[0].ports[0].containerPort"),
        "{msg}"
    );

    let mut new = pod();
    set(&mut new, "/spec/containers", json!([]));
    let c = validate("v1", "Pod", &new, Some(&old));
    expect(&c, CauseReason::Forbidden, "spec.containers");

    let mut old2 = pod();
    set(&mut old2, "/spec/activeDeadlineSeconds", json!(30));
    let mut new = pod();
    set(&mut new, "/spec/activeDeadlineSeconds", json!(60));
    let c = validate("v1", "Pod", &new, Some(&old2));
    expect(&c, CauseReason::Invalid, "spec.activeDeadlineSeconds");
}
