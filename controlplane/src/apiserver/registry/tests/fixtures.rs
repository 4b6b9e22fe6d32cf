//! Objects and helpers the validation tests share.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (project rule).

use serde_json::{Value, json};

use crate::apiserver::machinery::decode::{RoundTrip, decode_object, round_trip};
use crate::apiserver::machinery::field::{Cause, CauseReason};
use crate::apiserver::registry::{
    Registry, core::pod::validate_binding, workloads::validate_scale,
};

/// Validates `object` as its registered kind does (create when `old` is None).
pub(super) fn validate(
    api_version: &str,
    kind: &str,
    object: &Value,
    old: Option<&Value>,
) -> Vec<Cause> {
    // The subresources' own objects are validated by their subresource, not by a kind.
    match (api_version, kind) {
        ("v1", "Binding") => return validate_binding(object),
        ("autoscaling/v1", "Scale") => return validate_scale(object),
        _ => {}
    }
    Registry::new()
        .find_kind(api_version, kind)
        .expect("a served kind")
        .validate(object, old)
}

/// The Go type name and typed round trip of `kind`: a served kind's, or a subresource's object.
fn typed(api_version: &str, kind: &str) -> (&'static str, RoundTrip) {
    match (api_version, kind) {
        ("v1", "Binding") => (
            "v1.Binding",
            round_trip::<k8s_openapi::api::core::v1::Binding>,
        ),
        ("autoscaling/v1", "Scale") => (
            "v1.Scale",
            round_trip::<k8s_openapi::api::autoscaling::v1::Scale>,
        ),
        _ => {
            let strategy = Registry::new()
                .find_kind(api_version, kind)
                .expect("a served kind")
                .strategy;
            (strategy.go_type(), strategy.round_trip())
        }
    }
}

/// Decodes `object` as its kind's typed object: Err(message) as upstream's decoder words it.
pub(super) fn decode_check(api_version: &str, kind: &str, object: &Value) -> Result<(), String> {
    let (go_type, round_trip) = typed(api_version, kind);
    decode_object(go_type, round_trip, &mut object.clone()).map(|_| ())
}

/// The fields of `object` its kind's typed schema does not know.
pub(super) fn unknown_fields(api_version: &str, kind: &str, object: &Value) -> Vec<String> {
    let (go_type, round_trip) = typed(api_version, kind);
    decode_object(go_type, round_trip, &mut object.clone()).unwrap_or_default()
}

pub(super) fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                        "env": [{"name": "MODE", "value": "prod"}],
                        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}}
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }
            }
        }
    })
}

pub(super) fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "ports": [{"containerPort": 8080}]}]}
    })
}

pub(super) fn service() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    })
}

/// Sets the value at a JSON pointer, creating nothing: the parent must exist.
pub(super) fn set(v: &mut Value, pointer: &str, new: Value) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    match v.pointer_mut(parent).unwrap() {
        Value::Object(m) => {
            m.insert(last.to_string(), new);
        }
        Value::Array(a) => a[last.parse::<usize>().unwrap()] = new,
        other => panic!("cannot set into {other}"),
    }
}

pub(super) fn remove(v: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(last);
}

pub(super) fn check(api_version: &str, kind: &str, obj: &Value) -> Vec<Cause> {
    validate(api_version, kind, obj, None)
}

/// Asserts a cause with this reason and field exists; returns its message.
pub(super) fn expect(causes: &[Cause], reason: CauseReason, field: &str) -> String {
    causes
        .iter()
        .find(|c| c.reason == reason && c.field == field)
        .unwrap_or_else(|| panic!("no {reason:?} at {field} in {causes:#?}"))
        .message
        .clone()
}

pub(super) fn assert_valid(api_version: &str, kind: &str, obj: &Value) {
    assert_eq!(decode_check(api_version, kind, obj), Ok(()));
    assert_eq!(unknown_fields(api_version, kind, obj), Vec::<String>::new());
    let causes = check(api_version, kind, obj);
    assert!(causes.is_empty(), "{kind} should be valid: {causes:#?}");
}

// --- entry points -------------------------------------------------------------------------
