//! Admission webhooks (`admissionregistration.k8s.io/v1`): every API server keeps a copy of the
//! Mutating- and ValidatingWebhookConfigurations (listed, then watched) and asks the webhooks
//! whose rules and selectors match a write, as kube-apiserver's admission chain does: the
//! mutating ones one after another (each may answer with a JSONPatch; `IfNeeded` ones are asked
//! again once if a later one changed the object), after the built-in admission; the
//! validating ones together, after validation, just before the write. A webhook that cannot be
//! asked (down, too slow, a garbled answer) refuses the write under `failurePolicy: Fail` and
//! is skipped under `Ignore`. A webhook whose rules and selectors match is asked only if its
//! CEL `matchConditions` are all true ([`conditions`]).

pub mod call;
pub mod conditions;
pub mod matching;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::auth::User;
use crate::storage::{
    StorageError, Store,
    mirror::{Change, mirror},
};
use conditions::{Conditions, Verdict};
use matching::Attributes;

use super::{
    machinery::field::is_empty_value,
    registry::{Registry, Resource, Subresource},
    status::ApiError,
};

/// Where the configurations are in etcd (kube-apiserver's keys).
const MUTATING_PREFIX: &str = "/registry/mutatingwebhookconfigurations/";
const VALIDATING_PREFIX: &str = "/registry/validatingwebhookconfigurations/";

/// The admission configuration kinds, whose writes never go to webhooks or admission policies
/// (upstream's `IsExemptAdmissionConfigurationResource`: neither may lock out its own
/// configuration).
const EXEMPT: [&str; 4] = [
    "mutatingwebhookconfigurations",
    "validatingwebhookconfigurations",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
];

/// Whether writes of `resource` skip the webhooks and admission policies.
pub(crate) fn exempt(resource: &Resource) -> bool {
    resource.group == "admissionregistration.k8s.io" && EXEMPT.contains(&resource.plural)
}

/// One webhook of a stored configuration, with its match conditions compiled when the
/// configuration was (a configuration changes rarely; requests are many).
#[derive(Debug)]
struct Hook {
    /// The webhook as stored.
    spec: Value,
    /// Its compiled `matchConditions`.
    conditions: Conditions,
    /// The TLS client trusting its caBundle (read once: without one, the system's roots come
    /// from disk), or why there is none.
    tls: Result<Arc<rustls::ClientConfig>, String>,
}

/// The webhooks of one configuration.
fn hooks_of(configuration: &Value) -> Vec<Arc<Hook>> {
    configuration["webhooks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|spec| {
            Arc::new(Hook {
                conditions: Conditions::of(spec),
                tls: call::tls_config(spec["clientConfig"]["caBundle"].as_str()),
                spec: spec.clone(),
            })
        })
        .collect()
}

/// The configurations' webhooks, by configuration name (upstream asks them in name order).
#[derive(Debug, Default)]
struct Configurations {
    mutating: BTreeMap<String, Vec<Arc<Hook>>>,
    validating: BTreeMap<String, Vec<Arc<Hook>>>,
}

/// The webhook configurations an API server follows.
#[derive(Debug, Default)]
pub struct Webhooks {
    configurations: RwLock<Configurations>,
    /// The ValidatingAdmissionPolicies and their bindings, judged before the validating
    /// webhooks are asked.
    policies: Arc<crate::apiserver::admission_policies::Policies>,
}

impl Webhooks {
    /// Loads the configurations from `store` and follows them on background tasks.
    pub async fn start(store: &Store) -> Result<Arc<Self>, StorageError> {
        let webhooks = Arc::new(Self::default());
        webhooks.policies.follow(store).await?;
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
        change.apply_by_name(map, hooks_of);
    }

    /// The webhooks of one kind, in upstream's order.
    fn hooks(&self, mutating: bool) -> Vec<Arc<Hook>> {
        let all = self
            .configurations
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = if mutating {
            &all.mutating
        } else {
            &all.validating
        };
        map.values().flatten().cloned().collect()
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
    /// The served kinds, for the other versions of the written resource.
    pub registry: &'a Registry,
}

/// `object` as `version` has it. The versions of a custom resource differ only in their
/// apiVersion (conversion `None`, the only strategy served); another kind (the Scale of a
/// `/scale` write) is the same in every version of the resource.
pub(crate) fn versioned<'v>(object: &'v Value, version: &Resource) -> Cow<'v, Value> {
    let api_version = version.api_version();
    if object["apiVersion"] == api_version.as_str() || object["kind"] != version.kind {
        return Cow::Borrowed(object);
    }
    let mut converted = object.clone();
    converted["apiVersion"] = json!(api_version);
    Cow::Owned(converted)
}

/// Asks the matching mutating webhooks, applying their patches to `object`.
pub async fn mutate(
    webhooks: &Webhooks,
    store: &Store,
    request: Request<'_>,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if exempt(request.attributes.resource) {
        return Ok(());
    }
    let hooks = webhooks.hooks(true);
    if hooks.is_empty() {
        return Ok(());
    }
    // Each asked webhook with the object as it left it.
    let mut asked: Vec<(usize, Value)> = Vec::new();
    for (index, hook) in hooks.iter().enumerate() {
        let Some(version) = applies(store, hook, &request, Some(object), old).await? else {
            continue;
        };
        ask_mutating(store, hook, version, &request, object, old).await?;
        asked.push((index, object.clone()));
    }
    // A webhook that asked to be reinvoked is asked once more if a later one changed the
    // object after it (upstream's reinvocationPolicy: IfNeeded), if it still applies to the
    // object as it now is (upstream matches again, match conditions included).
    for (index, left) in asked {
        let hook = &hooks[index];
        if hook.spec["reinvocationPolicy"] != "IfNeeded" || left == *object {
            continue;
        }
        if let Some(version) = applies(store, hook, &request, Some(object), old).await? {
            ask_mutating(store, hook, version, &request, object, old).await?;
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
    if exempt(request.attributes.resource) {
        return Ok(());
    }
    // Upstream's ValidatingAdmissionPolicy plugin runs just before the validating webhooks.
    webhooks
        .policies
        .validate(store, request, object, old, |version| {
            admission_request(&request, version)
        })
        .await?;
    let hooks = webhooks.hooks(false);
    if hooks.is_empty() {
        return Ok(());
    }
    let mut matching = Vec::new();
    for hook in &hooks {
        if let Some(version) = applies(store, hook, &request, object, old).await? {
            matching.push((hook, version));
        }
    }
    let answers = futures::future::join_all(matching.iter().map(|(hook, version)| async move {
        let object = object.map(|o| versioned(o, version));
        let old = old.map(|o| versioned(o, version));
        ask(
            store,
            hook,
            version,
            &request,
            object.as_deref(),
            old.as_deref(),
        )
        .await
    }))
    .await;
    for ((hook, _), answer) in matching.into_iter().zip(answers) {
        match answer {
            Ok(response) if response["allowed"] == json!(true) => {}
            Ok(response) => return Err(denied(&hook.spec, &response)),
            Err(err) => failed(&hook.spec, err)?,
        }
    }
    Ok(())
}

/// One mutating webhook, asked in `version`: its patch applied (the object stays in the
/// requested version), or its refusal.
async fn ask_mutating(
    store: &Store,
    asked: &Hook,
    version: &Resource,
    request: &Request<'_>,
    object: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let hook = &asked.spec;
    let seen = versioned(object, version);
    let old = old.map(|o| versioned(o, version));
    let response = match ask(store, asked, version, request, Some(&seen), old.as_deref()).await {
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
        let mut patched = seen.clone().into_owned();
        json_patch::patch(&mut patched, &operations).map_err(|err| err.to_string())?;
        if patched["apiVersion"] != seen["apiVersion"] || patched["kind"] != seen["kind"] {
            return Err("the patch changed the object's apiVersion or kind".into());
        }
        Ok(patched)
    })();
    match patched {
        Ok(patched) => {
            *object = versioned(&patched, request.attributes.resource).into_owned();
            Ok(())
        }
        Err(err) => Err(ApiError::internal(format!(
            "Internal error occurred: failed calling webhook {name:?}: {err}"
        ))),
    }
}

/// In which version `hook` is to be asked about `request`, if at all: its rules and selectors,
/// then its match conditions on the object in that version (upstream's `ShouldCallHook`); a
/// condition that cannot be evaluated refuses the write under failurePolicy Fail.
async fn applies(
    store: &Store,
    hook: &Hook,
    request: &Request<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<Option<&'static Resource>, ApiError> {
    let Some(version) = selected(store, &hook.spec, request, object, old).await else {
        return Ok(None);
    };
    if hook.conditions.is_empty() {
        return Ok(Some(version));
    }
    let object = object.map(|o| versioned(o, version));
    let old = old.map(|o| versioned(o, version));
    let verdict = hook.conditions.evaluate(
        object.as_deref(),
        old.as_deref(),
        &admission_request(request, version),
    );
    Ok(conditions_say(&hook.spec, request, verdict)?.then_some(version))
}

/// What a webhook's match conditions decide: asked on Match, skipped on Skip; an evaluation
/// error skips it under failurePolicy Ignore and refuses the write otherwise, as upstream's
/// `ShouldCallHook` does (403, `<resource> "<name>" is forbidden: <errors>`).
fn conditions_say(hook: &Value, request: &Request<'_>, verdict: Verdict) -> Result<bool, ApiError> {
    match verdict {
        Verdict::Match => Ok(true),
        Verdict::Skip => Ok(false),
        Verdict::Error(err) if hook["failurePolicy"] == "Ignore" => {
            tracing::warn!(
                "failed evaluating match conditions of webhook {:?}: {err} (failurePolicy Ignore: the webhook is skipped)",
                hook_name(hook)
            );
            Ok(false)
        }
        Verdict::Error(err) => {
            let resource = request.attributes.resource;
            let group_resource = if resource.group.is_empty() {
                resource.plural.to_owned()
            } else {
                format!("{}.{}", resource.plural, resource.group)
            };
            let name = request.attributes.name;
            let mut refusal = ApiError::forbidden(&group_resource, name, &err);
            // apierrors.NewForbidden leaves out an empty name (a create with generateName).
            if name.is_empty() {
                refusal.message = format!("{group_resource} is forbidden: {err}");
            }
            Err(refusal)
        }
    }
}

/// The version in which `hook`'s rules match the request, if they do and its namespace
/// selector (the namespace's labels) and object selector match too.
async fn selected(
    store: &Store,
    hook: &Value,
    request: &Request<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Option<&'static Resource> {
    let attributes = &request.attributes;
    let version = matching::matched_version(hook, attributes, || {
        request.registry.equivalents(attributes.resource)
    })?;
    if !matching::object_matches(hook, object, old) {
        return None;
    }
    // The defaulted `{}` selects every namespace: no need to read one.
    let selector = &hook["namespaceSelector"];
    if selector.is_null()
        || selector
            .as_object()
            .is_some_and(|s| s.values().all(is_empty_value))
    {
        return Some(version);
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
            return Some(version);
        };
    matching::selector_matches(selector, &labels.unwrap_or_default()).then_some(version)
}

/// One AdmissionReview exchange about objects in `version`; the answer's `response` after
/// upstream's checks.
async fn ask(
    store: &Store,
    asked: &Hook,
    version: &Resource,
    request: &Request<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Result<Value, String> {
    let hook = &asked.spec;
    let uid = uuid::Uuid::new_v4().to_string();
    let review = review(&uid, request, version, object, old);
    let endpoint = call::endpoint_of(store, &hook["clientConfig"]).await?;
    let tls = asked.tls.clone()?;
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
    // Whatever the verdict, the webhook's warnings reach the client, as upstream's
    // dispatchers add them before looking at `allowed`.
    for warning in response["warnings"].as_array().into_iter().flatten() {
        if let Some(warning) = warning.as_str() {
            crate::apiserver::warnings::add(warning);
        }
    }
    Ok(response.clone())
}

/// The AdmissionReview (v1) request for one webhook asked in `version`.
fn review(
    uid: &str,
    request: &Request<'_>,
    version: &Resource,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Value {
    let mut body = request_fields(request, version);
    body["uid"] = json!(uid);
    body["object"] = object.cloned().unwrap_or(Value::Null);
    body["oldObject"] = old.cloned().unwrap_or(Value::Null);
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body})
}

/// The AdmissionRequest as match conditions see it (upstream's `CreateAdmissionRequest`
/// through the unstructured converter): no uid, object or oldObject, and the empty fields Go
/// leaves out (`name` of a create with generateName, a user's `groups`) absent.
fn admission_request(request: &Request<'_>, version: &Resource) -> Value {
    let mut body = request_fields(request, version);
    if let Some(fields) = body.as_object_mut()
        && fields.get("name").is_some_and(|name| name == "")
    {
        fields.remove("name");
    }
    if let Some(user) = body["userInfo"].as_object_mut()
        && user
            .get("groups")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
    {
        user.remove("groups");
    }
    body
}

/// The fields of an AdmissionRequest that say what is written and by whom: `kind` and
/// `resource` in the webhook's `version`, `requestKind` and `requestResource` as requested.
fn request_fields(request: &Request<'_>, version: &Resource) -> Value {
    let attributes = &request.attributes;
    let resource = attributes.resource;
    // A `/scale` write reviews the Scale; every other write the resource's own kind (upstream
    // sends a status write's whole object under the resource's kind too).
    let kind_of = |r: &Resource| match attributes.subresource {
        Some(sub @ Subresource::Scale) => {
            let (group, version, kind) = sub.kind_on(r);
            json!({"group": group, "version": version, "kind": kind})
        }
        _ => json!({"group": r.group, "version": r.version, "kind": r.kind}),
    };
    let gvr_of =
        |r: &Resource| json!({"group": r.group, "version": r.version, "resource": r.plural});
    let mut body = json!({
        "kind": kind_of(version),
        "resource": gvr_of(version),
        "requestKind": kind_of(resource),
        "requestResource": gvr_of(resource),
        "name": attributes.name,
        "operation": attributes.operation.name(),
        "userInfo": request.user.map_or(json!({}), |user| json!({"username": user.name, "groups": user.groups})),
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
    body
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
    registry: &'a Registry,
    attributes: Attributes<'a>,
    user: Option<&'a User>,
    dry_run: bool,
) -> Request<'a> {
    Request {
        attributes,
        user,
        dry_run,
        registry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_resources_own_kind_takes_another_version() {
        let pods = crate::apiserver::registry::builtin("", "pods").unwrap();
        let other = json!({"apiVersion": "v2", "kind": "Pod"});
        assert_eq!(versioned(&other, pods)["apiVersion"], "v1");
        let same = json!({"apiVersion": "v1", "kind": "Pod"});
        assert!(matches!(versioned(&same, pods), Cow::Borrowed(_)));
        let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale"});
        assert!(matches!(versioned(&scale, pods), Cow::Borrowed(_)));
    }

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
    fn match_condition_errors_refuse_under_fail_and_skip_under_ignore() {
        let resource = crate::apiserver::registry::builtin("apps", "deployments").unwrap();
        let attributes = Attributes::new(
            resource,
            None,
            matching::Operation::Create,
            Some("default"),
            "web",
        );
        let registry = Registry::new();
        let request = request(&registry, attributes, None, false);
        let fail = json!({"name": "a.b.c", "failurePolicy": "Fail"});
        let ignore = json!({"name": "a.b.c", "failurePolicy": "Ignore"});
        let error = || Verdict::Error("expression 'x' resulted in error: no such key: y".into());
        assert!(conditions_say(&fail, &request, Verdict::Match).unwrap());
        assert!(!conditions_say(&fail, &request, Verdict::Skip).unwrap());
        assert!(!conditions_say(&ignore, &request, error()).unwrap());
        let err = conditions_say(&fail, &request, error()).unwrap_err();
        assert_eq!((err.code, err.reason), (403, "Forbidden"));
        assert_eq!(
            err.message,
            r#"deployments.apps "web" is forbidden: expression 'x' resulted in error: no such key: y"#
        );
        let unnamed = Attributes::new(
            crate::apiserver::registry::builtin("", "pods").unwrap(),
            None,
            matching::Operation::Create,
            Some("default"),
            "",
        );
        let err = conditions_say(
            &fail,
            &super::request(&registry, unnamed, None, false),
            error(),
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "pods is forbidden: expression 'x' resulted in error: no such key: y"
        );
    }

    #[test]
    fn match_conditions_see_the_request_without_its_objects() {
        let resource = crate::apiserver::registry::builtin("apps", "deployments").unwrap();
        let attributes = Attributes::new(
            resource,
            None,
            matching::Operation::Create,
            Some("team-a"),
            "",
        );
        let user = User {
            name: "jane".into(),
            groups: vec![],
        };
        let registry = Registry::new();
        let seen = admission_request(&request(&registry, attributes, Some(&user), true), resource);
        assert_eq!(
            seen,
            json!({"kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "requestKind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "requestResource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "namespace": "team-a", "operation": "CREATE", "userInfo": {"username": "jane"},
                "dryRun": true,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}})
        );
        let hook = Hook {
            conditions: Conditions::of(&json!({"matchConditions": [
                {"name": "a", "expression": "request.userInfo.username == 'jane' && request.dryRun"},
                {"name": "b", "expression": "!has(request.name) && object.spec.replicas == 2"},
            ]})),
            tls: Err("not asked".into()),
            spec: json!({}),
        };
        let object = json!({"spec": {"replicas": 2}});
        assert_eq!(
            hook.conditions.evaluate(Some(&object), None, &seen),
            Verdict::Match
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
