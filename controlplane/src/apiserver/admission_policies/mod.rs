//! ValidatingAdmissionPolicies (`admissionregistration.k8s.io/v1`): every API server keeps a
//! copy of the policies (compiled once per version of each, [`compile`]) and their bindings
//! (listed, then watched), and judges each write with them, as kube-apiserver's
//! ValidatingAdmissionPolicy admission plugin does (`admission/plugin/policy/validating`),
//! just before the validating webhooks.
//!
//! For each binding of a policy whose `matchConstraints` select the request and whose
//! `matchResources` do too: the binding's params are read (by name or by selector, from the
//! policy's paramKind, in the request's namespace unless the binding names one), and the
//! policy is evaluated once per param ([`evaluate`]). What a failed validation does is the
//! binding's `validationActions`: `Deny` refuses the request (upstream's 422 `Invalid`, or the
//! validation's reason), `Warn` sends a warning, `Audit` logs it. A policy that cannot be
//! evaluated (an expression that fails or does not compile, a paramKind not served, a param
//! missing under `parameterNotFoundAction: Deny`) refuses the request under `failurePolicy:
//! Fail` and is skipped under `Ignore`. Writes of the policies and bindings themselves are
//! never judged (upstream's exemption: a policy must not lock out its own configuration).

pub mod compile;
pub mod evaluate;
pub mod matching;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use crate::apiserver::registry::{self, Resource};
use crate::apiserver::status::ApiError;
use crate::apiserver::webhooks::{Request, matching::Attributes, versioned};
use crate::storage::{
    StorageError, Store,
    mirror::{Change, mirror},
};
use compile::{FailurePolicy, ParamKind, Policy};
use evaluate::{Inputs, evaluate};

/// Where the policies and bindings are in etcd (kube-apiserver's keys).
const POLICIES_PREFIX: &str = "/registry/validatingadmissionpolicies/";
const BINDINGS_PREFIX: &str = "/registry/validatingadmissionpolicybindings/";

/// A policy with the bindings that name it (a policy without any does nothing).
#[derive(Debug)]
struct Hook {
    policy: Arc<Policy>,
    bindings: Vec<Arc<Value>>,
}

/// The followed copy: policies by name, bindings by name, and the two joined.
#[derive(Debug, Default)]
struct State {
    policies: BTreeMap<String, Arc<Policy>>,
    bindings: BTreeMap<String, Arc<Value>>,
    /// Rebuilt on every change, so a request takes it with one clone of an `Arc`.
    hooks: Arc<Vec<Hook>>,
}

impl State {
    fn join(&mut self) {
        let hooks = self
            .policies
            .iter()
            .filter_map(|(name, policy)| {
                let bindings: Vec<Arc<Value>> = self
                    .bindings
                    .values()
                    .filter(|binding| binding["spec"]["policyName"] == name.as_str())
                    .cloned()
                    .collect();
                (!bindings.is_empty()).then(|| Hook {
                    policy: Arc::clone(policy),
                    bindings,
                })
            })
            .collect();
        self.hooks = Arc::new(hooks);
    }
}

/// The ValidatingAdmissionPolicies and bindings an API server follows.
#[derive(Debug, Default)]
pub struct Policies {
    state: RwLock<State>,
}

impl Policies {
    /// Loads the policies and bindings from `store` and follows them on background tasks.
    pub async fn follow(self: &Arc<Self>, store: &Store) -> Result<(), StorageError> {
        let sink = Arc::clone(self);
        mirror(
            store,
            POLICIES_PREFIX,
            Arc::new(move |change| sink.record(true, change)),
        )
        .await?;
        let sink = Arc::clone(self);
        mirror(
            store,
            BINDINGS_PREFIX,
            Arc::new(move |change| sink.record(false, change)),
        )
        .await
    }

    fn record(&self, policies: bool, change: Change<'_>) {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if policies {
            change.apply_by_name(&mut state.policies, |object| {
                Arc::new(Policy::compile(object))
            });
        } else {
            change.apply_by_name(&mut state.bindings, |object| Arc::new(object.clone()));
        }
        state.join();
    }

    fn hooks(&self) -> Arc<Vec<Hook>> {
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&state.hooks)
    }

    /// Judges a write (`object` None on delete, `old` None on create) with every bound policy
    /// that selects it; `describe` gives the AdmissionRequest as CEL sees it, for the version
    /// a policy matched in.
    pub async fn validate(
        &self,
        store: &Store,
        request: Request<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        describe: impl Fn(&'static Resource) -> Value,
    ) -> Result<(), ApiError> {
        if crate::apiserver::webhooks::exempt(request.attributes.resource) {
            return Ok(());
        }
        let hooks = self.hooks();
        if hooks.is_empty() {
            return Ok(());
        }
        let mut judgement = Judgement {
            store,
            request,
            namespace: NamespaceOf::new(store, &request.attributes),
            refusals: Vec::new(),
        };
        for hook in hooks.iter() {
            judgement.policy(hook, object, old, &describe).await;
        }
        // Upstream answers with the first refusal.
        match judgement.refusals.first() {
            Some(first) => Err(first.to_error(&request)),
            None => Ok(()),
        }
    }
}

/// One write being judged: what the policies see of it, and the refusals so far.
struct Judgement<'a> {
    store: &'a Store,
    request: Request<'a>,
    namespace: NamespaceOf<'a>,
    refusals: Vec<Refusal>,
}

impl Judgement<'_> {
    /// One policy, if its match constraints select the write: each of its bindings that
    /// selects it too.
    async fn policy(
        &mut self,
        hook: &Hook,
        object: Option<&Value>,
        old: Option<&Value>,
        describe: &impl Fn(&'static Resource) -> Value,
    ) {
        let policy = &hook.policy;
        let Some(constraints) = &policy.match_constraints else {
            return;
        };
        let Some(version) = self.selected(constraints, object, old).await else {
            return;
        };
        let param_resource = match &policy.param_kind {
            None => None,
            Some(kind) => match self
                .request
                .registry
                .find_kind(&kind.api_version, &kind.kind)
            {
                Some(resource) => Some(resource),
                None => {
                    self.failed(
                        policy,
                        None,
                        format!(
                            "failed to configure policy: failed to find resource referenced by paramKind: '{}'",
                            kind.gvk()
                        ),
                    );
                    return;
                }
            },
        };
        let object = object.map(|o| versioned(o, version));
        let old = old.map(|o| versioned(o, version));
        let seen = Seen {
            object: object.as_deref(),
            old: old.as_deref(),
            request: &describe(version),
        };
        for binding in &hook.bindings {
            self.binding(policy, param_resource, binding, &seen).await;
        }
    }

    /// One binding of a policy that selects the write: its match resources, its params, then
    /// the policy evaluated for each param, the binding's actions applied to what it says.
    async fn binding(
        &mut self,
        policy: &Policy,
        param_resource: Option<&'static Resource>,
        binding: &Value,
        seen: &Seen<'_>,
    ) {
        let name = binding["metadata"]["name"].as_str().unwrap_or_default();
        let spec = &binding["spec"];
        if let Some(resources) = spec.get("matchResources").filter(|m| m.is_object())
            && self
                .selected(resources, seen.object, seen.old)
                .await
                .is_none()
        {
            return;
        }
        let param_ref = spec.get("paramRef").filter(|r| r.is_object());
        let params = match (&policy.param_kind, param_resource, param_ref) {
            (Some(kind), Some(resource), Some(param_ref)) => {
                let attributes = &self.request.attributes;
                let namespace = attributes
                    .namespace
                    .filter(|_| attributes.resource.namespaced);
                match collect_params(self.store, resource, kind, param_ref, namespace).await {
                    Ok(params) => params.into_iter().map(Some).collect(),
                    Err(err) => {
                        self.failed(
                            policy,
                            Some(name),
                            format!("failed to configure binding: {err}"),
                        );
                        return;
                    }
                }
            }
            // No paramKind, or a binding without a paramRef: evaluated once, params null.
            _ => vec![None],
        };
        let namespace = self.namespace.object().await;
        for param in &params {
            let outcome = evaluate(
                policy,
                &Inputs {
                    object: seen.object,
                    old: seen.old,
                    request: seen.request,
                    params: param.as_ref(),
                    namespace: namespace.as_ref(),
                },
            );
            for denial in outcome.denials {
                act(&mut self.refusals, policy, name, spec, denial);
            }
            for (key, value) in outcome.annotations {
                tracing::info!(
                    policy = policy.name,
                    binding = name,
                    "audit annotation {}/{key}: {value}",
                    policy.name
                );
            }
            for message in outcome.annotation_errors {
                self.refusals.push(Refusal {
                    policy: policy.name.clone(),
                    binding: Some(name.to_owned()),
                    message,
                    reason: "Invalid",
                });
            }
        }
    }

    /// A policy or binding that could not be set up for the write: it refuses the write under
    /// failurePolicy Fail and is skipped under Ignore.
    fn failed(&mut self, policy: &Policy, binding: Option<&str>, message: String) {
        if policy.failure_policy == FailurePolicy::Fail {
            self.refusals.push(Refusal {
                policy: policy.name.clone(),
                binding: binding.map(str::to_owned),
                message,
                reason: "Invalid",
            });
        }
    }

    /// The version in which `constraints` (a MatchResources) select the write, if they do:
    /// its rules, its object selector, then its namespace selector (which may need the
    /// namespace).
    async fn selected(
        &mut self,
        constraints: &Value,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Option<&'static Resource> {
        use crate::apiserver::webhooks::matching::{object_matches, selector_matches};
        let request = self.request;
        let attributes = &request.attributes;
        let version = matching::selected_version(constraints, attributes, || {
            request.registry.equivalents(attributes.resource)
        })?;
        if !object_matches(constraints, object, old) {
            return None;
        }
        let selector = &constraints["namespaceSelector"];
        let everything = selector.as_object().is_none_or(|s| {
            s.values()
                .all(crate::apiserver::machinery::field::is_empty_value)
        });
        if everything {
            return Some(version);
        }
        // A Namespace is judged by its own labels; any other cluster-scoped object matches.
        let labels = if is_namespace(attributes.resource) {
            object
                .or(old)
                .and_then(|o| o["metadata"]["labels"].as_object().cloned())
        } else if self.namespace.name.is_some() {
            self.namespace
                .get()
                .await
                .and_then(|ns| ns["metadata"]["labels"].as_object().cloned())
        } else {
            return Some(version);
        };
        selector_matches(selector, &labels.unwrap_or_default()).then_some(version)
    }
}

/// The write as a policy sees it, in the version it matched in.
struct Seen<'a> {
    object: Option<&'a Value>,
    old: Option<&'a Value>,
    request: &'a Value,
}

/// What a binding's `validationActions` do with one denial: `Deny` refuses the request,
/// `Warn` warns the client, `Audit` logs it (upstream records an audit annotation).
fn act(
    refusals: &mut Vec<Refusal>,
    policy: &Policy,
    binding: &str,
    spec: &Value,
    denial: evaluate::Denial,
) {
    for action in spec["validationActions"].as_array().into_iter().flatten() {
        match action.as_str() {
            Some("Deny") => refusals.push(Refusal {
                policy: policy.name.clone(),
                binding: Some(binding.to_owned()),
                message: denial.message.clone(),
                reason: denial.reason,
            }),
            Some("Warn") => crate::apiserver::warnings::add(format!(
                "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{binding}': {}",
                policy.name, denial.message
            )),
            Some("Audit") => tracing::info!(
                policy = policy.name,
                binding,
                "validation.policy.admission.k8s.io/validation_failure: {}",
                denial.message
            ),
            _ => {}
        }
    }
}

/// Why a request is refused: which policy (and binding) and what it said.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    policy: String,
    binding: Option<String>,
    message: String,
    reason: &'static str,
}

impl Refusal {
    /// Upstream's refusal: `admission.NewForbidden` (`<resource> "<name>" is forbidden:
    /// ...`, with the resource and name as details) given the decision's reason, its code,
    /// and the message as the one cause.
    fn to_error(&self, request: &Request<'_>) -> ApiError {
        let message = match &self.binding {
            Some(binding) => format!(
                "ValidatingAdmissionPolicy '{}' with binding '{binding}' denied request: {}",
                self.policy, self.message
            ),
            None => format!(
                "ValidatingAdmissionPolicy '{}' denied request: {}",
                self.policy, self.message
            ),
        };
        let qualified = request.attributes.resource.qualified_name();
        let name = request.attributes.name;
        let mut err = ApiError::forbidden(&qualified, name, &message);
        if name.is_empty() {
            err.message = format!("{qualified} is forbidden: {message}");
        }
        err.reason = self.reason;
        err.code = match self.reason {
            "Forbidden" => 403,
            "Unauthorized" => 401,
            "RequestEntityTooLarge" => 413,
            _ => 422,
        };
        if let Some(details) = err.details.as_mut().and_then(Value::as_object_mut) {
            if name.is_empty() {
                details.remove("name");
            }
            details.insert("causes".into(), json!([{"message": message}]));
        }
        err
    }
}

/// Whether `resource` is the core Namespace.
fn is_namespace(resource: &Resource) -> bool {
    resource.group.is_empty() && resource.plural == "namespaces"
}

/// The request's namespace, read from storage once, when first needed.
struct NamespaceOf<'a> {
    store: &'a Store,
    /// Its name: None for cluster-scoped requests and for Namespaces themselves (upstream
    /// gives those no `namespaceObject`).
    name: Option<&'a str>,
    loaded: Option<Option<Value>>,
}

impl<'a> NamespaceOf<'a> {
    fn new(store: &'a Store, attributes: &Attributes<'a>) -> Self {
        let resource = attributes.resource;
        Self {
            store,
            name: attributes
                .namespace
                .filter(|n| !n.is_empty() && resource.namespaced && !is_namespace(resource)),
            loaded: None,
        }
    }

    /// The stored Namespace (None when there is none, or it cannot be read).
    async fn get(&mut self) -> Option<&Value> {
        if self.loaded.is_none() {
            let found = match self.name {
                Some(name) => {
                    let key = registry::core::namespace::RESOURCE.key(None, name);
                    match self.store.get(&key).await {
                        Ok(stored) => Some(stored.object),
                        Err(err) => {
                            if !matches!(err, StorageError::NotFound { .. }) {
                                tracing::warn!(
                                    "reading namespace {name} for admission policies: {err}"
                                );
                            }
                            None
                        }
                    }
                }
                None => None,
            };
            self.loaded = Some(found);
        }
        self.loaded.as_ref().and_then(Option::as_ref)
    }

    /// `namespaceObject`: the Namespace as upstream's `CreateNamespaceObject` shows it (its
    /// metadata without managed fields and owners, its spec and status).
    async fn object(&mut self) -> Option<Value> {
        const KEPT: [&str; 12] = [
            "name",
            "generateName",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "finalizers",
        ];
        let namespace = self.get().await?;
        let metadata: serde_json::Map<String, Value> = KEPT
            .iter()
            .filter_map(|field| {
                namespace["metadata"]
                    .get(*field)
                    .map(|value| ((*field).to_owned(), value.clone()))
            })
            .collect();
        Some(json!({
            "metadata": metadata,
            "spec": namespace.get("spec").cloned().unwrap_or_else(|| json!({})),
            "status": namespace.get("status").cloned().unwrap_or_else(|| json!({})),
        }))
    }
}

/// The params of a binding (upstream's `CollectParams`): by name, or every object its
/// selector selects, in the binding's namespace or else the request's (for a namespaced
/// paramKind). None found is an error under `parameterNotFoundAction: Deny`; under `Allow`
/// the binding has nothing to evaluate.
async fn collect_params(
    store: &Store,
    resource: &'static Resource,
    kind: &ParamKind,
    param_ref: &Value,
    request_namespace: Option<&str>,
) -> Result<Vec<Value>, String> {
    let named_namespace = param_ref["namespace"].as_str().filter(|n| !n.is_empty());
    let namespace = if resource.namespaced {
        match named_namespace.or(request_namespace.filter(|n| !n.is_empty())) {
            Some(namespace) => Some(namespace),
            None => {
                return Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into());
            }
        }
    } else if named_namespace.is_some() {
        return Err(
            "paramRef.namespace must not be provided for a cluster-scoped `paramKind`".into(),
        );
    } else {
        None
    };
    let name = param_ref["name"].as_str().filter(|n| !n.is_empty());
    let selector = param_ref.get("selector").filter(|s| !s.is_null());
    let mut params = match (name, selector) {
        (Some(_), Some(_)) => {
            return Err("paramRef.name and paramRef.selector are mutually exclusive".into());
        }
        (Some(name), None) => match store.get(&resource.key(namespace, name)).await {
            Ok(stored) => vec![stored.object],
            Err(StorageError::NotFound { .. }) => Vec::new(),
            Err(err) => return Err(err.to_string()),
        },
        (None, Some(selector)) => {
            let listed = store
                .list(&resource.prefix(namespace), 0, None)
                .await
                .map_err(|err| err.to_string())?;
            let empty = serde_json::Map::new();
            listed
                .items
                .into_iter()
                .map(|stored| stored.object)
                .filter(|object| {
                    crate::apiserver::webhooks::matching::selector_matches(
                        selector,
                        object["metadata"]["labels"].as_object().unwrap_or(&empty),
                    )
                })
                .collect()
        }
        (None, None) => return Err("one of name or selector must be provided".into()),
    };
    for param in &mut params {
        resource.strategy.present(param);
        // Upstream makes sure a param shows its apiVersion and kind.
        if param["apiVersion"].as_str().is_none_or(str::is_empty) {
            param["apiVersion"] = json!(kind.api_version);
        }
        if param["kind"].as_str().is_none_or(str::is_empty) {
            param["kind"] = json!(kind.kind);
        }
    }
    if params.is_empty() && param_ref["parameterNotFoundAction"] == "Deny" {
        return Err(
            "no params found for policy binding with `Deny` parameterNotFoundAction".into(),
        );
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::apiserver::registry::{Registry, builtin};
    use crate::apiserver::webhooks::matching::Operation;

    #[test]
    fn the_prefixes_are_the_kinds_storage() {
        use registry::admissionregistration::{
            validating_admission_policy, validating_admission_policy_binding,
        };
        assert_eq!(
            validating_admission_policy::RESOURCE.prefix(None),
            POLICIES_PREFIX
        );
        assert_eq!(
            validating_admission_policy_binding::RESOURCE.prefix(None),
            BINDINGS_PREFIX
        );
    }

    #[test]
    fn bindings_join_the_policies_they_name() {
        let policies = Policies::default();
        let stored = |object: Value| crate::storage::Stored {
            object,
            revision: 1,
        };
        let policy = |name: &str| {
            stored(
                json!({"metadata": {"name": name}, "spec": {"validations": [{"expression": "true"}]}}),
            )
        };
        let binding = |name: &str, policy: &str| {
            stored(json!({"metadata": {"name": name}, "spec": {"policyName": policy}}))
        };
        policies.record(true, Change::Reset(&[policy("a"), policy("b")]));
        policies.record(
            false,
            Change::Reset(&[
                binding("a1", "a"),
                binding("a2", "a"),
                binding("x", "missing"),
            ]),
        );
        let hooks = policies.hooks();
        assert_eq!(hooks.len(), 1, "b has no binding, x no policy");
        assert_eq!(hooks[0].policy.name, "a");
        assert_eq!(hooks[0].bindings.len(), 2);
    }

    #[test]
    fn refusals_read_as_upstreams() {
        let registry = Registry::new();
        let attributes = Attributes::new(
            builtin("apps", "deployments").unwrap(),
            None,
            Operation::Create,
            Some("default"),
            "web",
        );
        let request = crate::apiserver::webhooks::request(&registry, attributes, None, false);
        let refusal = Refusal {
            policy: "max-replicas".into(),
            binding: Some("max-replicas-binding".into()),
            message: "failed expression: object.spec.replicas <= 5".into(),
            reason: "Invalid",
        };
        let err = refusal.to_error(&request);
        let message = "ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas-binding' denied request: failed expression: object.spec.replicas <= 5";
        assert_eq!((err.code, err.reason), (422, "Invalid"));
        assert_eq!(
            err.message,
            format!("deployments.apps \"web\" is forbidden: {message}")
        );
        assert_eq!(
            err.details,
            Some(
                json!({"name": "web", "group": "apps", "kind": "deployments",
                "causes": [{"message": message}]})
            )
        );
        let forbidden = Refusal {
            reason: "Forbidden",
            binding: None,
            message: "failed to configure policy: failed to find resource referenced by paramKind: 'example.com/v1, Kind=Limit'".into(),
            ..refusal
        };
        let err = forbidden.to_error(&request);
        assert_eq!(err.code, 403);
        assert!(
            err.message
                .ends_with("ValidatingAdmissionPolicy 'max-replicas' denied request: failed to configure policy: failed to find resource referenced by paramKind: 'example.com/v1, Kind=Limit'"),
            "{}",
            err.message
        );
    }
}
