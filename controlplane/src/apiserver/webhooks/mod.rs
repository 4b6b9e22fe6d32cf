//! Admission webhooks (`admissionregistration.k8s.io/v1`): every API server keeps a copy of the
//! Mutating- and ValidatingWebhookConfigurations (listed, then watched) and asks the webhooks
//! whose rules and selectors match a write, as kube-apiserver's admission chain does: the
//! mutating ones one after another (each may answer with a JSONPatch; `IfNeeded` ones are asked
//! again once if a later one changed the object), after the built-in admission; the
//! validating ones together, after validation, just before the write. A webhook that cannot be
//! asked (down, too slow, a garbled answer) refuses the write under `failurePolicy: Fail` and
//! is skipped under `Ignore`.

pub mod call;
pub mod matching;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::auth::User;
use crate::storage::{
    StorageError, Store, WatchEvent,
    mirror::{Change, mirror},
};
use matching::Attributes;

use super::{machinery::field::is_empty_value, status::ApiError};

/// Where the configurations are in etcd (kube-apiserver's keys).
const MUTATING_PREFIX: &str = "/registry/mutatingwebhookconfigurations/";
const VALIDATING_PREFIX: &str = "/registry/validatingwebhookconfigurations/";

/// Resources whose writes never go to webhooks (upstream's exemption: a webhook must not be
/// able to lock out its own configuration).
const EXEMPT: [&str; 2] = [
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
];

/// The configurations, by name (upstream asks them in name order).
#[derive(Debug, Default)]
struct Configurations {
    mutating: BTreeMap<String, Value>,
    validating: BTreeMap<String, Value>,
}

/// The webhook configurations an API server follows.
#[derive(Debug, Default)]
pub struct Webhooks {
    configurations: RwLock<Configurations>,
}

impl Webhooks {
    /// Loads the configurations from `store` and follows them on background tasks.
    pub async fn start(store: &Store) -> Result<Arc<Self>, StorageError> {
        let webhooks = Arc::new(Self::default());
        for (prefix, mutating) in [(MUTATING_PREFIX, true), (VALIDATING_PREFIX, false)] {
            let sink = Arc::clone(&webhooks);
            mirror(
                store,
                prefix,
                Arc::new(move |change| sink.record(mutating, change)),
            )
            .await?;
        }
        Ok(webhooks)
    }

    fn record(&self, mutating: bool, change: Change<'_>) {
        let mut all = self
            .configurations
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = if mutating {
            &mut all.mutating
        } else {
            &mut all.validating
        };
        let name = |object: &Value| {
            object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        match change {
            Change::Reset(items) => {
                map.clear();
                for item in items {
                    map.insert(name(&item.object), item.object.clone());
                }
            }
            Change::Event(
                WatchEvent::Added(stored)
                | WatchEvent::Modified {
                    current: stored, ..
                },
            ) => {
                map.insert(name(&stored.object), stored.object.clone());
            }
            Change::Event(WatchEvent::Deleted(stored)) => {
                map.remove(&name(&stored.object));
            }
            Change::Event(_) => {}
        }
    }

    /// The webhooks of one kind, in upstream's order, with the configuration each is from.
    fn hooks(&self, mutating: bool) -> Vec<Value> {
        let all = self
            .configurations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = if mutating {
            &all.mutating
        } else {
            &all.validating
        };
        map.values()
            .flat_map(|configuration| {
                configuration["webhooks"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }
}

/// One admission request to put to the webhooks.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// What is written.
    pub attributes: Attributes<'a>,
    /// Who writes.
    pub user: Option<&'a User>,
    /// Whether the write is a dry run.
    pub dry_run: bool,
}

/// Asks the matching mutating webhooks, applying their patches to `object`.
pub async fn mutate(
    webhooks: &Webhooks,
    store: &Store,
    request: Request<'_>,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if EXEMPT.contains(&request.attributes.resource.plural) {
        return Ok(());
    }
    let hooks = webhooks.hooks(true);
    if hooks.is_empty() {
        return Ok(());
    }
    // Each asked webhook with the object as it left it.
    let mut asked: Vec<(usize, Value)> = Vec::new();
    for (index, hook) in hooks.iter().enumerate() {
        if !applies(store, hook, &request, Some(object), old).await {
            continue;
        }
        ask_mutating(store, hook, &request, object, old).await?;
        asked.push((index, object.clone()));
    }
    // A webhook that asked to be reinvoked is asked once more if a later one changed the
    // object after it (upstream's reinvocationPolicy: IfNeeded).
    for (index, left) in asked {
        if hooks[index]["reinvocationPolicy"] == "IfNeeded" && left != *object {
            ask_mutating(store, &hooks[index], &request, object, old).await?;
        }
    }
    Ok(())
}

/// Asks the matching validating webhooks (together) about the object about to be written.
pub async fn validate(
    webhooks: &Webhooks,
    store: &Store,
    request: Request<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if EXEMPT.contains(&request.attributes.resource.plural) {
        return Ok(());
    }
    let hooks = webhooks.hooks(false);
    if hooks.is_empty() {
        return Ok(());
    }
    let mut matching = Vec::new();
    for hook in &hooks {
        if applies(store, hook, &request, object, old).await {
            matching.push(hook);
        }
    }
    let answers = futures::future::join_all(
        matching
            .iter()
            .map(|hook| ask(store, hook, &request, object, old)),
    )
    .await;
    for (hook, answer) in matching.into_iter().zip(answers) {
        match answer {
            Ok(response) if response["allowed"] == json!(true) => {}
            Ok(response) => return Err(denied(hook, &response)),
            Err(err) => failed(hook, err)?,
        }
    }
    Ok(())
}

/// One mutating webhook: its patch applied, or its refusal.
async fn ask_mutating(
    store: &Store,
    hook: &Value,
    request: &Request<'_>,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let response = match ask(store, hook, request, Some(object), old).await {
        Ok(response) => response,
        Err(err) => return failed(hook, err),
    };
    if response["allowed"] != json!(true) {
        return Err(denied(hook, &response));
    }
    let Some(patch) = response["patch"].as_str().filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let name = hook_name(hook);
    let patched = (|| -> Result<Value, String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .map_err(|err| format!("the patch is not base64: {err}"))?;
        let operations: json_patch::Patch = serde_json::from_slice(&bytes)
            .map_err(|err| format!("the patch is not a JSON Patch: {err}"))?;
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &operations).map_err(|err| err.to_string())?;
        if patched["apiVersion"] != object["apiVersion"] || patched["kind"] != object["kind"] {
            return Err("the patch changed the object's apiVersion or kind".into());
        }
        Ok(patched)
    })();
    match patched {
        Ok(patched) => {
            *object = patched;
            Ok(())
        }
        Err(err) => Err(ApiError::internal(format!(
            "Internal error occurred: failed calling webhook {name:?}: {err}"
        ))),
    }
}

/// Whether `hook` is to be asked about `request`: its rules, namespace selector (the
/// namespace's labels) and object selector.
async fn applies(
    store: &Store,
    hook: &Value,
    request: &Request<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> bool {
    let attributes = &request.attributes;
    if !matching::rules_match(hook, attributes) || !matching::object_matches(hook, object, old) {
        return false;
    }
    // The defaulted `{}` selects every namespace: no need to read one.
    let selector = &hook["namespaceSelector"];
    if selector.is_null()
        || selector
            .as_object()
            .is_some_and(|s| s.values().all(is_empty_value))
    {
        return true;
    }
    // A Namespace is judged by its own labels; a cluster-scoped object by none (it matches).
    let labels =
        if attributes.resource.plural == "namespaces" && attributes.resource.group.is_empty() {
            object
                .or(old)
                .and_then(|o| o["metadata"]["labels"].as_object().cloned())
        } else if let Some(namespace) = attributes
            .namespace
            .filter(|_| attributes.resource.namespaced)
        {
            match store
                .get(&format!("/registry/namespaces/{namespace}"))
                .await
            {
                Ok(stored) => stored.object["metadata"]["labels"].as_object().cloned(),
                Err(_) => None,
            }
        } else {
            return true;
        };
    matching::selector_matches(selector, &labels.unwrap_or_default())
}

/// One AdmissionReview exchange; the answer's `response` after upstream's checks.
async fn ask(
    store: &Store,
    hook: &Value,
    request: &Request<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<Value, String> {
    let uid = uuid::Uuid::new_v4().to_string();
    let review = review(&uid, request, object, old);
    let endpoint = call::endpoint_of(store, &hook["clientConfig"]).await?;
    let tls = call::tls_config(hook["clientConfig"]["caBundle"].as_str())?;
    let timeout = Duration::from_secs(hook["timeoutSeconds"].as_u64().unwrap_or(10).clamp(1, 30));
    let answer = call::post(&endpoint, tls, &review, timeout)
        .await
        .map_err(|err| format!("failed to call webhook: {err}"))?;
    if answer["apiVersion"] != "admission.k8s.io/v1" || answer["kind"] != "AdmissionReview" {
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {}, Kind={}",
            answer["apiVersion"].as_str().unwrap_or_default(),
            answer["kind"].as_str().unwrap_or_default()
        ));
    }
    let response = answer
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("webhook response was absent")?;
    let answered_uid = response["uid"].as_str().unwrap_or_default();
    if answered_uid != uid {
        return Err(format!(
            "expected response.uid={uid:?}, got {answered_uid:?}"
        ));
    }
    if response["patch"].as_str().is_some_and(|p| !p.is_empty()) {
        match response["patchType"].as_str() {
            None => return Err("webhook returned response.patch but not response.patchType".into()),
            Some("JSONPatch") => {}
            Some(other) => {
                return Err(format!(
                    "webhook returned invalid response.patchType of {other:?}"
                ));
            }
        }
    }
    Ok(response.clone())
}

/// The AdmissionReview (v1) request for one webhook.
fn review(uid: &str, request: &Request<'_>, object: Option<&Value>, old: Option<&Value>) -> Value {
    let attributes = &request.attributes;
    let resource = attributes.resource;
    let kind = json!({"group": resource.group, "version": resource.version, "kind": resource.kind});
    let gvr =
        json!({"group": resource.group, "version": resource.version, "resource": resource.plural});
    let mut body = json!({
        "uid": uid,
        "kind": kind,
        "resource": gvr,
        "requestKind": kind,
        "requestResource": gvr,
        "name": attributes.name,
        "operation": attributes.operation.name(),
        "userInfo": request.user.map_or(json!({}), |user| json!({"username": user.name, "groups": user.groups})),
        "object": object.cloned().unwrap_or(Value::Null),
        "oldObject": old.cloned().unwrap_or(Value::Null),
        "dryRun": request.dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": attributes.operation.options_kind()},
    });
    if let Some(namespace) = attributes.namespace.filter(|_| resource.namespaced) {
        body["namespace"] = json!(namespace);
    }
    if let Some(sub) = attributes.subresource {
        body["subResource"] = json!(sub.name());
        body["requestSubResource"] = json!(sub.name());
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body})
}

fn hook_name(hook: &Value) -> &str {
    hook["name"].as_str().unwrap_or_default()
}

/// A refusal, as upstream's `ToStatusErr`: the webhook's code (400 at least), reason and
/// message behind `admission webhook "<name>" denied the request`.
fn denied(hook: &Value, response: &Value) -> ApiError {
    let status = &response["status"];
    let denied_by = format!("admission webhook {:?} denied the request", hook_name(hook));
    let message = match (status["message"].as_str(), status["reason"].as_str()) {
        (Some(message), _) if !message.is_empty() => format!("{denied_by}: {message}"),
        (_, Some(reason)) if !reason.is_empty() => format!("{denied_by}: {reason}"),
        _ => format!("{denied_by} without explanation"),
    };
    let code = status["code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    ApiError::webhook_denied(code, status["reason"].as_str().unwrap_or_default(), message)
}

/// A webhook that could not be asked: refused under failurePolicy Fail (500, as upstream's
/// internal error), skipped under Ignore.
fn failed(hook: &Value, err: String) -> Result<(), ApiError> {
    let message = format!("failed calling webhook {:?}: {err}", hook_name(hook));
    if hook["failurePolicy"] == "Ignore" {
        tracing::warn!("{message} (failurePolicy Ignore: the write goes on)");
        return Ok(());
    }
    Err(ApiError::internal(format!(
        "Internal error occurred: {message}"
    )))
}

/// What a write tells the webhooks, from the request's pieces.
pub fn request<'a>(
    attributes: Attributes<'a>,
    user: Option<&'a User>,
    dry_run: bool,
) -> Request<'a> {
    Request {
        attributes,
        user,
        dry_run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_upstreams() {
        let hook = json!({"name": "team.example.com"});
        let denied_with =
            |status: Value| denied(&hook, &json!({"allowed": false, "status": status}));
        let err =
            denied_with(json!({"code": 403, "reason": "Forbidden", "message": "needs a team"}));
        assert_eq!(
            (err.code, err.reason, err.message.as_str()),
            (
                403,
                "Forbidden",
                r#"admission webhook "team.example.com" denied the request: needs a team"#
            )
        );
        // Below 400 is raised to 400; a reason stands in for a missing message.
        let err = denied_with(json!({"code": 200, "reason": "NoTeam"}));
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            r#"admission webhook "team.example.com" denied the request: NoTeam"#
        );
        let err = denied_with(Value::Null);
        assert_eq!(
            err.message,
            r#"admission webhook "team.example.com" denied the request without explanation"#
        );
    }

    #[test]
    fn failures_refuse_under_fail_and_pass_under_ignore() {
        let fail = json!({"name": "a.b.c", "failurePolicy": "Fail"});
        let err = failed(
            &fail,
            "failed to call webhook: Post \"https://x\": refused".into(),
        )
        .unwrap_err();
        assert_eq!(err.code, 500);
        assert_eq!(
            err.message,
            r#"Internal error occurred: failed calling webhook "a.b.c": failed to call webhook: Post "https://x": refused"#
        );
        let ignore = json!({"name": "a.b.c", "failurePolicy": "Ignore"});
        assert!(failed(&ignore, "down".into()).is_ok());
    }
}
