//! `admissionregistration.k8s.io/v1`: the webhook configurations, and the
//! ValidatingAdmissionPolicies with their bindings. The kinds share upstream's rules
//! (`pkg/apis/admissionregistration/validation`, `v1/defaults.go`), kept here once: the
//! webhook's name, rules, policies, selectors, client config (a URL parsed as Go's `net/url`
//! parses it, or a service), admission review versions and match conditions; a policy's and a
//! binding's match resources; the defaults; the generation the strategy starts at; and the
//! table. Calling the webhooks is [`crate::apiserver::webhooks`]' job, judging with the
//! policies [`crate::apiserver::admission_policies`]'.

pub mod mutating_webhook_configuration;
pub mod validating_admission_policy;
pub mod validating_admission_policy_binding;
pub mod validating_webhook_configuration;

use crate::apiserver::registry::prelude::*;

/// The operations a rule may name (upstream's sorted `supportedOperations`).
const OPERATIONS: [&str; 5] = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];

/// The scopes a rule may have.
const SCOPES: [&str; 3] = ["*", "Cluster", "Namespaced"];

/// The failure policies.
const FAILURE_POLICIES: [&str; 2] = ["Fail", "Ignore"];

/// The match policies.
const MATCH_POLICIES: [&str; 2] = ["Equivalent", "Exact"];

/// The side-effect classes a v1 webhook may declare (upstream's `noSideEffectClasses`).
const NO_SIDE_EFFECTS: [&str; 2] = ["None", "NoneOnDryRun"];

/// Every side-effect class, accepted on update only of a configuration that already had a
/// webhook with side effects (upstream's `supportedSideEffectClasses`).
const SIDE_EFFECTS: [&str; 4] = ["None", "NoneOnDryRun", "Some", "Unknown"];

/// The reinvocation policies of a mutating webhook.
const REINVOCATION_POLICIES: [&str; 2] = ["IfNeeded", "Never"];

/// The AdmissionReview versions this server (and its predecessor) understands.
const ADMISSION_REVIEW_VERSIONS: [&str; 2] = ["v1", "v1beta1"];

/// Upstream's limit on a webhook's match conditions.
const MAX_MATCH_CONDITIONS: usize = 64;

/// What upstream relaxes on update for configurations stored before a rule existed
/// (`validationOptions`): an old object that already broke a rule may keep breaking it.
#[derive(Debug, Clone)]
struct Options {
    /// Whether match conditions are checked (skipped when no webhook's conditions changed).
    match_conditions: bool,
    /// Whether sideEffects must be None or NoneOnDryRun.
    no_side_effects: bool,
    /// Whether admissionReviewVersions must include a version this server understands.
    recognized_review_version: bool,
    /// Whether webhook names must be unique.
    unique_names: bool,
    /// Whether selector requirement values need not be valid label values.
    invalid_label_values: bool,
}

impl Options {
    /// The rules of a create, and those of an update of `old`.
    fn for_write(object: &Value, old: Option<&Value>) -> Self {
        let Some(old) = old else {
            return Self {
                match_conditions: true,
                no_side_effects: true,
                recognized_review_version: true,
                unique_names: true,
                invalid_label_values: false,
            };
        };
        let hooks = arr_of(Some(object), "webhooks");
        let old_hooks = arr_of(Some(old), "webhooks");
        let conditions = |hook: &Value| get(Some(hook), "matchConditions").cloned();
        let same_conditions = hooks.len() == old_hooks.len()
            && hooks
                .iter()
                .zip(old_hooks)
                .all(|(new, old)| conditions(new) == conditions(old));
        let mut names = BTreeSet::new();
        Self {
            match_conditions: !same_conditions,
            no_side_effects: old_hooks.iter().all(|hook| {
                str_opt(Some(hook), "sideEffects").is_some_and(|s| NO_SIDE_EFFECTS.contains(&s))
            }),
            recognized_review_version: old_hooks.iter().all(|hook| {
                let versions = strings_of(Some(hook), "admissionReviewVersions");
                versions.is_empty()
                    || versions
                        .iter()
                        .any(|v| ADMISSION_REVIEW_VERSIONS.contains(v))
            }),
            unique_names: old_hooks
                .iter()
                .all(|hook| names.insert(str_of(Some(hook), "name"))),
            invalid_label_values: old_hooks.iter().any(|hook| {
                ["namespaceSelector", "objectSelector"].iter().any(|field| {
                    !label_selector(&mut Errs::default(), get(Some(hook), field), field)
                })
            }),
        }
    }
}

/// `ValidateValidatingWebhookConfiguration` / `ValidateMutatingWebhookConfiguration` and their
/// update forms (ObjectMeta is checked by the caller).
pub(crate) fn validate_configuration(
    e: &mut Errs,
    object: &Value,
    old: Option<&Value>,
    mutating: bool,
) {
    let opts = Options::for_write(object, old);
    let mut names = BTreeSet::new();
    for (i, hook) in arr_of(Some(object), "webhooks").iter().enumerate() {
        let path = idx("webhooks", i);
        validate_webhook(e, hook, &opts, mutating, &path);
        admission_review_versions(
            e,
            get(Some(hook), "admissionReviewVersions"),
            opts.recognized_review_version,
            &child(&path, "admissionReviewVersions"),
        );
        let name = str_of(Some(hook), "name");
        if opts.unique_names && !name.is_empty() && !names.insert(name) {
            e.duplicate(&child(&path, "name"), &q(name));
        }
    }
}

/// `validateValidatingWebhook` / `validateMutatingWebhook` (the mutating one also checks the
/// reinvocation policy).
fn validate_webhook(e: &mut Errs, hook: &Value, opts: &Options, mutating: bool, path: &str) {
    let hook = Some(hook);
    fully_qualified_name(e, str_of(hook, "name"), &child(path, "name"));
    for (i, rule) in arr_of(hook, "rules").iter().enumerate() {
        rule_with_operations(e, rule, &idx(&child(path, "rules"), i));
    }
    one_of(e, hook, "failurePolicy", &FAILURE_POLICIES, path);
    one_of(e, hook, "matchPolicy", &MATCH_POLICIES, path);
    let allowed: &[&str] = if opts.no_side_effects {
        &NO_SIDE_EFFECTS
    } else {
        &SIDE_EFFECTS
    };
    let side_effects = child(path, "sideEffects");
    match get(hook, "sideEffects") {
        None => e.required(
            &side_effects,
            &format!("must specify one of {}", allowed.join(", ")),
        ),
        Some(value) => {
            let value = value.as_str().unwrap_or_default();
            if !allowed.contains(&value) {
                e.not_supported(&side_effects, value, allowed);
            }
        }
    }
    if let Some(timeout) = int_of(hook, "timeoutSeconds")
        && !(1..=30).contains(&timeout)
    {
        e.invalid_i(
            &child(path, "timeoutSeconds"),
            timeout,
            "the timeout value must be between 1 and 30 seconds",
        );
    }
    for field in ["namespaceSelector", "objectSelector"] {
        selector(
            e,
            get(hook, field),
            opts.invalid_label_values,
            &child(path, field),
        );
    }
    if mutating {
        one_of(e, hook, "reinvocationPolicy", &REINVOCATION_POLICIES, path);
    }
    client_config(e, get(hook, "clientConfig"), &child(path, "clientConfig"));
    if opts.match_conditions {
        match_conditions(
            e,
            arr_of(hook, "matchConditions"),
            false,
            &child(path, "matchConditions"),
        );
    }
}

/// A field that, when set, must be one of `supported` (`Unsupported value`).
fn one_of(e: &mut Errs, object: Option<&Value>, field: &str, supported: &[&str], path: &str) {
    if let Some(value) = get(object, field) {
        let value = value.as_str().unwrap_or_default();
        if !supported.contains(&value) {
            e.not_supported(&child(path, field), value, supported);
        }
    }
}

/// `utilvalidation.IsFullyQualifiedName`: a DNS subdomain of at least three labels.
fn fully_qualified_name(e: &mut Errs, name: &str, path: &str) {
    if name.is_empty() {
        e.required(path, "");
    } else if let msgs @ [_, ..] = is_dns1123_subdomain(name).as_slice() {
        e.invalid_s(path, name, &msgs.join(","));
    } else if name.split('.').count() < 3 {
        e.invalid_s(
            path,
            name,
            "should be a domain with at least three segments separated by dots",
        );
    }
}

/// `%#v` of a Go slice of strings (or of a string type) named `go_type`.
fn go_slice(go_type: &str, values: &[Value]) -> String {
    let items: Vec<String> = values
        .iter()
        .map(|v| q(v.as_str().unwrap_or_default()))
        .collect();
    format!("[]{go_type}{{{}}}", items.join(", "))
}

/// The strings of a list, a non-string item read as "" (its index kept, for field paths).
fn string_items(values: &[Value]) -> Vec<&str> {
    values
        .iter()
        .map(|v| v.as_str().unwrap_or_default())
        .collect()
}

/// `validateRuleWithOperations` (subresources allowed), then `validateRule`.
fn rule_with_operations(e: &mut Errs, rule: &Value, path: &str) {
    let rule = Some(rule);
    let operations = arr_of(rule, "operations");
    let operations_path = child(path, "operations");
    if operations.is_empty() {
        e.required(&operations_path, "");
    }
    let items = string_items(operations);
    if items.len() > 1 && items.contains(&"*") {
        e.invalid(
            &operations_path,
            &go_slice("admissionregistration.OperationType", operations),
            "if '*' is present, must not specify other operations",
        );
    }
    for (i, operation) in items.iter().enumerate() {
        if !OPERATIONS.contains(operation) {
            e.not_supported(&idx(&operations_path, i), operation, &OPERATIONS);
        }
    }
    for (field, what) in [("apiGroups", "API groups"), ("apiVersions", "API versions")] {
        let list = arr_of(rule, field);
        let at = child(path, field);
        if list.is_empty() {
            e.required(&at, "");
        }
        if list.len() > 1 && string_items(list).contains(&"*") {
            e.invalid(
                &at,
                &go_slice("string", list),
                &format!("if '*' is present, must not specify other {what}"),
            );
        }
    }
    // The core group is "", so only versions may not be empty.
    let versions_path = child(path, "apiVersions");
    for (i, version) in string_items(arr_of(rule, "apiVersions")).iter().enumerate() {
        if version.is_empty() {
            e.required(&idx(&versions_path, i), "");
        }
    }
    resources(e, arr_of(rule, "resources"), &child(path, "resources"));
    if let Some(scope) = get(rule, "scope") {
        let scope = scope.as_str().unwrap_or_default();
        if !SCOPES.contains(&scope) {
            e.not_supported(&child(path, "scope"), scope, &SCOPES);
        }
    }
}

/// `validateResources`: `resource`, `resource/subresource`, and the wildcards `*`, `*/*`,
/// `x/*`, `*/x`, none of which may overlap another entry.
fn resources(e: &mut Errs, list: &[Value], path: &str) {
    if list.is_empty() {
        e.required(path, "");
    }
    let mut wildcard_subresources = BTreeSet::new();
    let mut wildcard_resources = BTreeSet::new();
    let (mut double_wildcard, mut single_wildcard) = (false, false);
    let mut without_subresource = false;
    for (i, entry) in string_items(list).into_iter().enumerate() {
        let at = idx(path, i);
        if entry.is_empty() {
            e.required(&at, "");
            continue;
        }
        double_wildcard |= entry == "*/*";
        single_wildcard |= entry == "*";
        let Some((resource, subresource)) = entry.split_once('/') else {
            // Upstream assigns rather than accumulates: the last plain entry decides.
            without_subresource = entry != "*";
            continue;
        };
        if wildcard_subresources.contains(resource) {
            e.invalid_s(
                &at,
                entry,
                &format!("if '{resource}/*' is present, must not specify {entry}"),
            );
        }
        if wildcard_resources.contains(subresource) {
            e.invalid_s(
                &at,
                entry,
                &format!("if '*/{subresource}' is present, must not specify {entry}"),
            );
        }
        if subresource == "*" {
            wildcard_subresources.insert(resource);
        }
        if resource == "*" {
            wildcard_resources.insert(subresource);
        }
    }
    if list.len() > 1 && double_wildcard {
        e.invalid(
            path,
            &go_slice("string", list),
            "if '*/*' is present, must not specify other resources",
        );
    }
    if single_wildcard && without_subresource {
        e.invalid(
            path,
            &go_slice("string", list),
            "if '*' is present, must not specify other resources without subresources",
        );
    }
}

/// `validateAdmissionReviewVersions`.
fn admission_review_versions(e: &mut Errs, versions: Option<&Value>, recognized: bool, path: &str) {
    let list = versions
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let accepted = ADMISSION_REVIEW_VERSIONS.join(", ");
    if list.is_empty() {
        e.required(path, &format!("must specify one of {accepted}"));
        return;
    }
    let mut seen = BTreeSet::new();
    let mut has_accepted = false;
    for (i, version) in string_items(list).into_iter().enumerate() {
        let at = idx(path, i);
        if !seen.insert(version) {
            e.invalid_s(&at, version, "duplicate version");
            continue;
        }
        for msg in is_dns1035_label(version) {
            e.invalid_s(&at, version, &msg);
        }
        has_accepted |= ADMISSION_REVIEW_VERSIONS.contains(&version);
    }
    if recognized && !has_accepted {
        e.invalid(
            path,
            &go_slice("string", list),
            &format!("must include at least one of {accepted}"),
        );
    }
}

/// `metav1validation.ValidateLabelSelector`; with `invalid_label_values`, requirement values
/// need not be label values (upstream's `AllowInvalidLabelValueInSelector`).
fn selector(e: &mut Errs, value: Option<&Value>, invalid_label_values: bool, path: &str) {
    let mut found = Errs::default();
    label_selector(&mut found, value, path);
    let expressions = child(path, "matchExpressions");
    e.0.extend(found.0.into_iter().filter(|cause| {
        !(invalid_label_values
            && cause.reason == CauseReason::Invalid
            && cause.field.starts_with(&expressions)
            && cause.field.ends_with(']')
            && cause.field.contains(".values["))
    }));
}

/// The client config: exactly one of a URL and a service.
fn client_config(e: &mut Errs, config: Option<&Value>, path: &str) {
    match (get(config, "url"), get(config, "service")) {
        (Some(url), None) => webhook_url(e, url.as_str().unwrap_or_default(), &child(path, "url")),
        (None, Some(service)) => webhook_service(e, service, &child(path, "service")),
        _ => e.required(path, "exactly one of url or service is required"),
    }
}

/// `webhook.ValidateWebhookURL` with https forced.
fn webhook_url(e: &mut Errs, raw: &str, path: &str) {
    const FORM: &str = "; desired format: https://host[/path]";
    let url = match GoUrl::parse(raw) {
        Ok(url) => url,
        Err(why) => {
            e.required(path, &format!("url must be a valid URL: {why}{FORM}"));
            return;
        }
    };
    if url.scheme != "https" {
        e.invalid_s(
            path,
            &url.scheme,
            &format!("'https' is the only allowed URL scheme{FORM}"),
        );
    }
    if url.host.is_empty() {
        e.invalid_s(path, &url.host, &format!("host must be provided{FORM}"));
    }
    if let Some(user) = &url.user {
        e.invalid_s(path, user, "user information is not permitted in the URL");
    }
    if !url.fragment.is_empty() {
        e.invalid_s(
            path,
            &url.fragment,
            "fragments are not permitted in the URL",
        );
    }
    if !url.raw_query.is_empty() {
        e.invalid_s(
            path,
            &url.raw_query,
            "query parameters are not permitted in the URL",
        );
    }
}

/// `webhook.ValidateWebhookService`.
fn webhook_service(e: &mut Errs, service: &Value, path: &str) {
    let service = Some(service);
    if str_of(service, "name").is_empty() {
        e.required(&child(path, "name"), "service name is required");
    }
    if str_of(service, "namespace").is_empty() {
        e.required(&child(path, "namespace"), "service namespace is required");
    }
    // Defaulting sets the port; an object validated before it reads as upstream's default.
    let port = int_of(service, "port").unwrap_or(443);
    if let msgs @ [_, ..] = is_valid_port_num(port).as_slice() {
        e.invalid_i(
            &child(path, "port"),
            port,
            &format!("port is not valid: {}", msgs.join(", ")),
        );
    }
    let url_path = str_of(service, "path");
    let at = child(path, "path");
    if url_path.is_empty() || url_path == "/" {
        return;
    }
    if url_path == "//" {
        e.invalid_s(&at, url_path, "segment[0] may not be empty");
        return;
    }
    if !url_path.starts_with('/') {
        e.invalid_s(&at, url_path, "must start with a '/'");
    }
    // Upstream drops the first byte whether or not it is the slash.
    let mut rest = url_path.get(1..).unwrap_or_default();
    rest = rest.strip_suffix('/').unwrap_or(rest);
    for (i, segment) in rest.split('/').enumerate() {
        if segment.is_empty() {
            e.invalid_s(&at, url_path, &format!("segment[{i}] may not be empty"));
            continue;
        }
        for msg in is_dns1123_subdomain(segment) {
            e.invalid_s(&at, url_path, &format!("segment[{i}]: {msg}"));
        }
    }
}

/// `validateMatchConditions`; `params` declares `params` (a policy with a paramKind).
fn match_conditions(e: &mut Errs, conditions: &[Value], params: bool, path: &str) {
    use crate::apiserver::webhooks::conditions::{Declared, Returns, compile_as};
    let declared = Declared {
        params,
        authorizer: true,
        variables: None,
    };
    if conditions.len() > MAX_MATCH_CONDITIONS {
        e.too_many(path, conditions.len(), MAX_MATCH_CONDITIONS);
    }
    let mut names = BTreeSet::new();
    for (i, condition) in conditions.iter().enumerate() {
        let at = idx(path, i);
        let condition = Some(condition);
        let expression = str_of(condition, "expression").trim();
        let expression_path = child(&at, "expression");
        if expression.is_empty() {
            e.required(&expression_path, "");
        } else if let Err(detail) = compile_as(expression, &declared, Returns::Bool) {
            // Upstream compiles the trimmed expression in its match-condition environment
            // (object, oldObject, request, namespaceObject, authorizer, and a policy's params)
            // and shows it as the value; a syntax error, an undeclared name or a non-bool
            // result refuses it.
            e.invalid_s(&expression_path, expression, &detail);
        }
        let name = str_of(condition, "name");
        let name_path = child(&at, "name");
        if name.is_empty() {
            e.required(&name_path, "");
        } else {
            for msg in is_qualified_name(name) {
                e.invalid_s(&name_path, name, &msg);
            }
            if !names.insert(name) {
                e.duplicate(&name_path, &q(name));
            }
        }
    }
}

/// `validateMatchResources` (a policy's matchConstraints, a binding's matchResources): the
/// match policy and both selectors are required (defaulting sets them), the selectors are
/// checked strictly, and each rule of `resourceRules` and `excludeResourceRules` is a rule with
/// operations and unique, valid `resourceNames`.
pub(crate) fn match_resources(e: &mut Errs, resources: &Value, path: &str) {
    let resources = Some(resources);
    match get(resources, "matchPolicy") {
        None => e.required(&child(path, "matchPolicy"), ""),
        Some(_) => one_of(e, resources, "matchPolicy", &MATCH_POLICIES, path),
    }
    for field in ["namespaceSelector", "objectSelector"] {
        match get(resources, field) {
            None => e.required(&child(path, field), ""),
            Some(selector) => {
                label_selector(e, Some(selector), &child(path, field));
            }
        }
    }
    for field in ["resourceRules", "excludeResourceRules"] {
        for (i, rule) in arr_of(resources, field).iter().enumerate() {
            let at = idx(&child(path, field), i);
            let names_path = child(&at, "resourceNames");
            let mut names = BTreeSet::new();
            for (j, name) in string_items(arr_of(Some(rule), "resourceNames"))
                .into_iter()
                .enumerate()
            {
                for msg in is_path_segment_name(name, false) {
                    e.invalid_s(&idx(&names_path, j), name, &msg);
                }
                if !names.insert(name) {
                    e.duplicate(&idx(&names_path, j), &q(name));
                }
            }
            rule_with_operations(e, rule, &at);
        }
    }
}

/// `SetDefaults_MatchResources` and `SetDefaults_Rule` of its rules: match policy
/// Equivalent, selectors that select everything, rules of every scope.
pub(crate) fn default_match_resources(resources: &mut Value) {
    let Some(fields) = resources.as_object_mut() else {
        return;
    };
    set_unset(fields, "matchPolicy", json!("Equivalent"));
    set_unset(fields, "namespaceSelector", json!({}));
    set_unset(fields, "objectSelector", json!({}));
    for field in ["resourceRules", "excludeResourceRules"] {
        if let Some(rules) = fields.get_mut(field).and_then(Value::as_array_mut) {
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                set_unset(rule, "scope", json!("*"));
            }
        }
    }
}

/// `SetDefaults_ValidatingWebhook` / `SetDefaults_MutatingWebhook`, `SetDefaults_Rule` and
/// `SetDefaults_ServiceReference`, on every webhook of the configuration.
pub(crate) fn default_configuration(object: &mut Value, mutating: bool) {
    let Some(hooks) = object.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for hook in hooks.iter_mut().filter_map(Value::as_object_mut) {
        let mut defaults = vec![
            ("failurePolicy", json!("Fail")),
            ("matchPolicy", json!("Equivalent")),
            ("namespaceSelector", json!({})),
            ("objectSelector", json!({})),
            ("timeoutSeconds", json!(10)),
        ];
        if mutating {
            defaults.push(("reinvocationPolicy", json!("Never")));
        }
        for (field, value) in defaults {
            set_unset(hook, field, value);
        }
        if let Some(rules) = hook.get_mut("rules").and_then(Value::as_array_mut) {
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                set_unset(rule, "scope", json!("*"));
            }
        }
        if let Some(service) = hook
            .get_mut("clientConfig")
            .and_then(|config| config.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            set_unset(service, "port", json!(443));
        }
    }
}

/// Sets `field` when it is absent or null (a nil pointer in Go).
fn set_unset(object: &mut Map<String, Value>, field: &str, value: Value) {
    if object.get(field).is_none_or(Value::is_null) {
        object.insert(field.to_owned(), value);
    }
}

/// Upstream's PrepareForCreate: a configuration starts at generation 1 (it has no `spec`, so
/// the generic create would leave it without one); updates that change the webhooks bump it.
pub(crate) fn first_generation(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("generation".into(), json!(1));
    }
}

/// The table's columns: NAME, WEBHOOKS, AGE (upstream's printer).
pub(crate) fn columns() -> Cow<'static, [Column]> {
    Cow::Borrowed(crate::apiserver::tables::upstream::WEBHOOK_CONFIGURATION_COLUMNS)
}

/// One table row: the name, the number of webhooks, the age.
pub(crate) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
    use crate::apiserver::tables::{age, list_at, name};
    vec![
        json!(name(object)),
        json!(list_at(object, &["webhooks"]).len()),
        json!(age(object, now)),
    ]
}

/// A sample configuration for the registry test: one webhook called through a service.
pub(crate) fn sample(webhook_name: &str) -> Value {
    json!({"metadata": {"name": "policy.example.com"}, "webhooks": [{
        "name": webhook_name,
        "clientConfig": {"service": {"namespace": "policy", "name": "webhook", "path": "/check"},
                         "caBundle": "Y2E="},
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["apps"],
                   "apiVersions": ["v1"], "resources": ["deployments", "deployments/scale"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1", "v1beta1"],
        "matchConditions": [{"name": "not-system", "expression": "!request.userInfo.username.startsWith('system:')"}]
    }]})
}

/// The parts of a URL upstream's validation looks at, as Go's `url.Parse` splits them.
#[derive(Debug, Default, PartialEq, Eq)]
struct GoUrl {
    /// The scheme, lowercased.
    scheme: String,
    /// The host (with its port), unescaped; empty for an opaque URL.
    host: String,
    /// The user information before `@`, if any.
    user: Option<String>,
    /// The fragment after `#`, unescaped.
    fragment: String,
    /// The query after `?`, as written.
    raw_query: String,
}

/// How a part of a URL is unescaped (Go's `encoding` modes that matter here).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The host: ASCII escapes and most punctuation are refused.
    Host,
    /// Anything else: only malformed escapes are refused.
    Other,
}

impl GoUrl {
    /// Go's `url.Parse`, with its error text (`parse "…": …`) when it refuses `raw`.
    fn parse(raw: &str) -> Result<Self, String> {
        let (main, fragment) = match raw.split_once('#') {
            Some((main, fragment)) => (main, Some(fragment)),
            None => (raw, None),
        };
        let mut url = Self::parse_main(main).map_err(|why| format!("parse {}: {why}", q(main)))?;
        if let Some(fragment) = fragment.filter(|f| !f.is_empty()) {
            url.fragment = unescape(fragment, Part::Other)
                .map_err(|why| format!("parse {}: {why}", q(raw)))?;
        }
        Ok(url)
    }

    /// Go's `parse` of everything before the fragment.
    fn parse_main(raw: &str) -> Result<Self, String> {
        if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err("net/url: invalid control character in URL".into());
        }
        let mut url = Self::default();
        if raw == "*" {
            return Ok(url);
        }
        let (scheme, mut rest) = scheme(raw)?;
        url.scheme = scheme.to_ascii_lowercase();
        if rest.ends_with('?') && rest.matches('?').count() == 1 {
            rest = &rest[..rest.len() - 1];
        } else if let Some((before, query)) = rest.split_once('?') {
            url.raw_query = query.to_owned();
            rest = before;
        }
        if !rest.starts_with('/') {
            if !url.scheme.is_empty() {
                // An opaque URL (`https:host`): no host.
                return Ok(url);
            }
            if let Some(colon) = rest.find(':')
                && rest.find('/').is_none_or(|slash| colon < slash)
            {
                return Err("first path segment in URL cannot contain colon".into());
            }
        }
        if (!url.scheme.is_empty() || !rest.starts_with("///"))
            && let Some(after) = rest.strip_prefix("//")
        {
            let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            let (user, host) = authority_parts(authority)?;
            url.user = user;
            url.host = host;
            rest = path;
        }
        unescape(rest, Part::Other)?;
        Ok(url)
    }
}

/// Go's `getScheme`: the scheme and the rest, "" when `raw` does not start with one.
fn scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

/// Go's `parseAuthority`: the user information (as written) and the unescaped host.
fn authority_parts(authority: &str) -> Result<(Option<String>, String), String> {
    let (user, host) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    let host = parse_host(host)?;
    let Some(user) = user else {
        return Ok((None, host));
    };
    let valid = user
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&c));
    if !valid {
        return Err("net/url: invalid userinfo".into());
    }
    for part in user.splitn(2, ':') {
        unescape(part, Part::Other)?;
    }
    Ok((Some(user.to_owned()), host))
}

/// Go's `parseHost`: the port must be digits; the host may not hold most punctuation.
fn parse_host(host: &str) -> Result<String, String> {
    let port = if host.starts_with('[') {
        let Some(end) = host.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        &host[end + 1..]
    } else {
        host.rfind(':').map_or("", |colon| &host[colon..])
    };
    let valid_port = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| digits.bytes().all(|c| c.is_ascii_digit()));
    if !valid_port {
        return Err(format!("invalid port {} after host", q(port)));
    }
    unescape(host, Part::Host)
}

/// Go's `unescape`: decodes `%XX`, refusing malformed escapes (and, in a host, ASCII escapes
/// other than `%25` and characters a host may not hold).
fn unescape(s: &str, part: Part) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c == b'%' {
            let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
            let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2)) else {
                let bad: String = String::from_utf8_lossy(&bytes[i..bytes.len().min(i + 3)]).into();
                return Err(format!("invalid URL escape {}", q(&bad)));
            };
            if part == Part::Host && high < 8 && bytes.get(i..i + 3) != Some(b"%25") {
                let bad: String = String::from_utf8_lossy(&bytes[i..i + 3]).into();
                return Err(format!("invalid URL escape {}", q(&bad)));
            }
            // Both digits are below 16, so the byte fits.
            out.push(u8::try_from(high * 16 + low).unwrap_or_default());
            i += 3;
            continue;
        }
        if part == Part::Host && c < 0x80 && !host_byte(c) {
            return Err(format!(
                "invalid character {} in host name",
                q(&(c as char).to_string())
            ));
        }
        out.push(c);
        i += 1;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Whether a host may hold the ASCII byte `c` unescaped (Go's `shouldEscape(c, encodeHost)`).
fn host_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!$&'()*+,;=:[]<>\"-_.~".contains(&c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::apiserver::registry::admissionregistration::validating_webhook_configuration::RESOURCE;

    /// A valid, defaulted configuration whose first webhook `change` edits.
    fn with(change: impl FnOnce(&mut Value)) -> Value {
        let mut object = sample("check.policy.example.com");
        object["apiVersion"] = json!("admissionregistration.k8s.io/v1");
        object["kind"] = json!("ValidatingWebhookConfiguration");
        default_configuration(&mut object, false);
        change(&mut object["webhooks"][0]);
        object
    }

    fn causes(object: &Value) -> Vec<String> {
        RESOURCE.cause_messages(object)
    }

    #[test]
    fn the_sample_is_valid() {
        assert_eq!(causes(&with(|_| {})), Vec::<String>::new());
    }

    #[test]
    fn defaults_fill_the_policies_selectors_timeout_scope_and_port() {
        let mut object = json!({"webhooks": [{"name": "a.b.c",
            "clientConfig": {"service": {"namespace": "n", "name": "s"}},
            "rules": [{"operations": ["*"]}], "timeoutSeconds": 5}]});
        default_configuration(&mut object, true);
        let hook = &object["webhooks"][0];
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["matchPolicy"], "Equivalent");
        assert_eq!(hook["namespaceSelector"], json!({}));
        assert_eq!(hook["objectSelector"], json!({}));
        assert_eq!(hook["timeoutSeconds"], 5);
        assert_eq!(hook["reinvocationPolicy"], "Never");
        assert_eq!(hook["rules"][0]["scope"], "*");
        assert_eq!(hook["clientConfig"]["service"]["port"], 443);
        // sideEffects and admissionReviewVersions have no default in v1.
        assert!(hook.get("sideEffects").is_none());
        assert!(hook.get("admissionReviewVersions").is_none());
        let mut validating = json!({"webhooks": [{"name": "a.b.c"}]});
        default_configuration(&mut validating, false);
        assert!(
            validating["webhooks"][0]
                .get("reinvocationPolicy")
                .is_none()
        );
        assert_eq!(validating["webhooks"][0]["timeoutSeconds"], 10);
        // Garbage is left for validation and decoding to report.
        let mut odd = json!({"webhooks": [7, {"rules": [1]}]});
        default_configuration(&mut odd, false);
        assert_eq!(odd["webhooks"][0], 7);
    }

    #[test]
    fn webhook_names_are_fully_qualified_and_unique() {
        let object = with(|hook| hook["name"] = json!("check.example"));
        assert_eq!(
            causes(&object),
            vec![
                r#"webhooks[0].name: Invalid value: "check.example": should be a domain with at least three segments separated by dots"#
            ]
        );
        let object = with(|hook| hook["name"] = json!(""));
        assert_eq!(causes(&object), vec!["webhooks[0].name: Required value"]);
        let object = with(|hook| hook["name"] = json!("Check.example.com"));
        assert_eq!(
            causes(&object),
            vec![
                r#"webhooks[0].name: Invalid value: "Check.example.com": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
            ]
        );
        let mut object = with(|_| {});
        let hook = object["webhooks"][0].clone();
        object["webhooks"] = json!([hook.clone(), hook]);
        assert_eq!(
            causes(&object),
            vec![r#"webhooks[1].name: Duplicate value: "check.policy.example.com""#]
        );
    }

    #[test]
    fn client_configs_name_exactly_one_of_url_and_service() {
        let object = with(|hook| hook["clientConfig"] = json!({}));
        assert_eq!(
            causes(&object),
            vec![
                "webhooks[0].clientConfig: Required value: exactly one of url or service is required"
            ]
        );
        let object = with(|hook| {
            hook["clientConfig"]["url"] = json!("https://example.com/check");
        });
        assert_eq!(
            causes(&object),
            vec![
                "webhooks[0].clientConfig: Required value: exactly one of url or service is required"
            ]
        );
        let object = with(|hook| {
            hook["clientConfig"] = json!({"service": {"port": 0, "path": "check//x"}});
        });
        assert_eq!(
            causes(&object),
            vec![
                "webhooks[0].clientConfig.service.name: Required value: service name is required",
                "webhooks[0].clientConfig.service.namespace: Required value: service namespace is required",
                "webhooks[0].clientConfig.service.port: Invalid value: 0: port is not valid: must be between 1 and 65535, inclusive",
                r#"webhooks[0].clientConfig.service.path: Invalid value: "check//x": must start with a '/'"#,
                r#"webhooks[0].clientConfig.service.path: Invalid value: "check//x": segment[1] may not be empty"#,
            ]
        );
        let object = with(|hook| {
            hook["clientConfig"]["service"]["path"] = json!("/Check/");
        });
        let found = causes(&object);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(r#"webhooks[0].clientConfig.service.path: Invalid value: "/Check/": segment[0]: a lowercase RFC 1123 subdomain"#),
            "{found:?}"
        );
    }

    #[test]
    fn urls_are_https_with_a_host_and_nothing_else() {
        let url = |url: &str| {
            causes(&with(|hook| {
                hook["clientConfig"] = json!({"url": url});
            }))
        };
        assert_eq!(url("https://example.com:8443/check"), Vec::<String>::new());
        assert_eq!(
            url("http://example.com"),
            vec![
                r#"webhooks[0].clientConfig.url: Invalid value: "http": 'https' is the only allowed URL scheme; desired format: https://host[/path]"#
            ]
        );
        assert_eq!(
            url("https:///check"),
            vec![
                r#"webhooks[0].clientConfig.url: Invalid value: "": host must be provided; desired format: https://host[/path]"#
            ]
        );
        assert_eq!(
            url("https://me:secret@example.com/x?a=b#top"),
            vec![
                r#"webhooks[0].clientConfig.url: Invalid value: "me:secret": user information is not permitted in the URL"#,
                r#"webhooks[0].clientConfig.url: Invalid value: "top": fragments are not permitted in the URL"#,
                r#"webhooks[0].clientConfig.url: Invalid value: "a=b": query parameters are not permitted in the URL"#,
            ]
        );
        assert_eq!(
            url("https://exa mple.com"),
            vec![
                r#"webhooks[0].clientConfig.url: Required value: url must be a valid URL: parse "https://exa mple.com": invalid character " " in host name; desired format: https://host[/path]"#
            ]
        );
        assert_eq!(
            url("https://example.com:https/"),
            vec![
                r#"webhooks[0].clientConfig.url: Required value: url must be a valid URL: parse "https://example.com:https/": invalid port ":https" after host; desired format: https://host[/path]"#
            ]
        );
        assert_eq!(
            url("://x"),
            vec![
                r#"webhooks[0].clientConfig.url: Required value: url must be a valid URL: parse "://x": missing protocol scheme; desired format: https://host[/path]"#
            ]
        );
        assert_eq!(
            url("https://example.com/%zz"),
            vec![
                r#"webhooks[0].clientConfig.url: Required value: url must be a valid URL: parse "https://example.com/%zz": invalid URL escape "%zz"; desired format: https://host[/path]"#
            ]
        );
        // An opaque URL parses, without a host.
        assert_eq!(
            url("https:example.com"),
            vec![
                r#"webhooks[0].clientConfig.url: Invalid value: "": host must be provided; desired format: https://host[/path]"#
            ]
        );
    }

    #[test]
    fn go_url_parse_splits_as_go_does() {
        let parsed = GoUrl::parse("HTTPS://u@[::1]:443/p?q=1#f%20g").unwrap();
        assert_eq!(
            parsed,
            GoUrl {
                scheme: "https".into(),
                host: "[::1]:443".into(),
                user: Some("u".into()),
                fragment: "f g".into(),
                raw_query: "q=1".into(),
            }
        );
        assert_eq!(GoUrl::parse("a:b/c").map(|u| u.scheme), Ok("a".to_owned()));
        assert_eq!(
            GoUrl::parse("1a:b"),
            Err(r#"parse "1a:b": first path segment in URL cannot contain colon"#.to_owned())
        );
        assert_eq!(
            GoUrl::parse("https://[::1/"),
            Err(r#"parse "https://[::1/": missing ']' in host"#.to_owned())
        );
        assert_eq!(
            GoUrl::parse("https://a\tb"),
            Err(r#"parse "https://a\tb": net/url: invalid control character in URL"#.to_owned())
        );
        assert_eq!(
            GoUrl::parse("https://x/#%"),
            Err(r#"parse "https://x/#%": invalid URL escape "%""#.to_owned())
        );
        assert_eq!(
            GoUrl::parse("https://x%41y/"),
            Err(r#"parse "https://x%41y/": invalid URL escape "%41""#.to_owned())
        );
    }

    #[test]
    fn rules_are_checked_as_upstream() {
        let object = with(|hook| {
            hook["rules"] = json!([{"operations": ["*", "UPSERT"], "apiGroups": ["*", "apps"],
                "apiVersions": ["v1", ""], "resources": [], "scope": "Global"}]);
        });
        assert_eq!(
            causes(&object),
            vec![
                r#"webhooks[0].rules[0].operations: Invalid value: []admissionregistration.OperationType{"*", "UPSERT"}: if '*' is present, must not specify other operations"#,
                r#"webhooks[0].rules[0].operations[1]: Unsupported value: "UPSERT": supported values: "*", "CONNECT", "CREATE", "DELETE", "UPDATE""#,
                r#"webhooks[0].rules[0].apiGroups: Invalid value: []string{"*", "apps"}: if '*' is present, must not specify other API groups"#,
                "webhooks[0].rules[0].apiVersions[1]: Required value",
                "webhooks[0].rules[0].resources: Required value",
                r#"webhooks[0].rules[0].scope: Unsupported value: "Global": supported values: "*", "Cluster", "Namespaced""#,
            ]
        );
        let object = with(|hook| {
            hook["rules"] = json!([{"apiVersions": ["*", "v1"], "resources": ["*"]}]);
        });
        assert_eq!(
            causes(&object),
            vec![
                "webhooks[0].rules[0].operations: Required value",
                "webhooks[0].rules[0].apiGroups: Required value",
                r#"webhooks[0].rules[0].apiVersions: Invalid value: []string{"*", "v1"}: if '*' is present, must not specify other API versions"#,
            ]
        );
    }

    #[test]
    fn resources_and_their_wildcards_may_not_overlap() {
        let resources = |list: Value| causes(&with(|hook| hook["rules"][0]["resources"] = list));
        assert_eq!(
            resources(json!(["*", "pods/status", "*/scale"])),
            Vec::<String>::new()
        );
        assert_eq!(
            resources(json!([
                "pods/*",
                "pods/status",
                "*/log",
                "deployments/log",
                ""
            ])),
            vec![
                r#"webhooks[0].rules[0].resources[1]: Invalid value: "pods/status": if 'pods/*' is present, must not specify pods/status"#,
                r#"webhooks[0].rules[0].resources[3]: Invalid value: "deployments/log": if '*/log' is present, must not specify deployments/log"#,
                "webhooks[0].rules[0].resources[4]: Required value",
            ]
        );
        assert_eq!(
            resources(json!(["*/*", "pods"])),
            vec![
                r#"webhooks[0].rules[0].resources: Invalid value: []string{"*/*", "pods"}: if '*/*' is present, must not specify other resources"#
            ]
        );
        assert_eq!(
            resources(json!(["*", "pods"])),
            vec![
                r#"webhooks[0].rules[0].resources: Invalid value: []string{"*", "pods"}: if '*' is present, must not specify other resources without subresources"#
            ]
        );
        // Upstream remembers only whether the last plain entry is "*".
        assert_eq!(resources(json!(["pods", "*"])), Vec::<String>::new());
    }

    #[test]
    fn policies_side_effects_and_timeouts_are_checked() {
        let object = with(|hook| {
            hook["failurePolicy"] = json!("Retry");
            hook["matchPolicy"] = json!("Loose");
            hook["sideEffects"] = json!("Unknown");
            hook["timeoutSeconds"] = json!(31);
        });
        assert_eq!(
            causes(&object),
            vec![
                r#"webhooks[0].failurePolicy: Unsupported value: "Retry": supported values: "Fail", "Ignore""#,
                r#"webhooks[0].matchPolicy: Unsupported value: "Loose": supported values: "Equivalent", "Exact""#,
                r#"webhooks[0].sideEffects: Unsupported value: "Unknown": supported values: "None", "NoneOnDryRun""#,
                "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
            ]
        );
        let object = with(|hook| {
            hook.as_object_mut().unwrap().remove("sideEffects");
            hook["timeoutSeconds"] = json!(0);
        });
        assert_eq!(
            causes(&object),
            vec![
                "webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun",
                "webhooks[0].timeoutSeconds: Invalid value: 0: the timeout value must be between 1 and 30 seconds",
            ]
        );
    }

    #[test]
    fn admission_review_versions_are_required_known_and_unique() {
        let versions = |list: Value| causes(&with(|hook| hook["admissionReviewVersions"] = list));
        assert_eq!(
            versions(json!([])),
            vec![
                "webhooks[0].admissionReviewVersions: Required value: must specify one of v1, v1beta1"
            ]
        );
        assert_eq!(
            versions(json!(["v2", "v2", "V3"])),
            vec![
                r#"webhooks[0].admissionReviewVersions[1]: Invalid value: "v2": duplicate version"#,
                r#"webhooks[0].admissionReviewVersions[2]: Invalid value: "V3": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
                r#"webhooks[0].admissionReviewVersions: Invalid value: []string{"v2", "v2", "V3"}: must include at least one of v1, v1beta1"#,
            ]
        );
    }

    #[test]
    fn selectors_are_label_selectors() {
        let object = with(|hook| {
            hook["namespaceSelector"] =
                json!({"matchExpressions": [{"key": "env", "operator": "In"}]});
            hook["objectSelector"] = json!({"matchLabels": {"a": "b c"}});
        });
        let found = causes(&object);
        assert_eq!(
            found[0],
            "webhooks[0].namespaceSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
        );
        assert!(
            found[1]
                .starts_with(r#"webhooks[0].objectSelector.matchLabels: Invalid value: "b c": "#),
            "{found:?}"
        );
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn match_conditions_are_named_uniquely_with_an_expression() {
        let object = with(|hook| {
            hook["matchConditions"] = json!([
                {"name": "first", "expression": "true"},
                {"name": "first", "expression": "  "},
                {"name": "bad name", "expression": "true"},
                {"expression": "true"},
            ]);
        });
        assert_eq!(
            causes(&object),
            vec![
                "webhooks[0].matchConditions[1].expression: Required value",
                r#"webhooks[0].matchConditions[1].name: Duplicate value: "first""#,
                r#"webhooks[0].matchConditions[2].name: Invalid value: "bad name": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#,
                "webhooks[0].matchConditions[3].name: Required value",
            ]
        );
        let object = with(|hook| {
            let many: Vec<Value> = (0..65)
                .map(|i| json!({"name": format!("c{i}"), "expression": "true"}))
                .collect();
            hook["matchConditions"] = json!(many);
        });
        assert_eq!(
            causes(&object),
            vec!["webhooks[0].matchConditions: Too many: 65: must have at most 64 items"]
        );
    }

    #[test]
    fn match_condition_expressions_must_compile_to_a_bool() {
        let object = with(|hook| {
            hook["matchConditions"] = json!([
                {"name": "fine", "expression": "  request.operation == 'CREATE'  "},
                {"name": "syntax", "expression": "object.metadata.name =="},
                {"name": "undeclared", "expression": "params.team == 'a'"},
                {"name": "not-bool", "expression": " object.metadata.name "},
                {"name": "field", "expression": "request.user == 'jane'"},
            ]);
        });
        let found = causes(&object);
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(
            found[0].starts_with(concat!(
                r#"webhooks[0].matchConditions[1].expression: Invalid value: "object.metadata.name ==": "#,
                "compilation failed: ERROR: <input>:1:24: Syntax error: "
            )),
            "{found:?}"
        );
        assert_eq!(
            found[1..],
            [
                concat!(
                    r#"webhooks[0].matchConditions[2].expression: Invalid value: "params.team == 'a'": "#,
                    "compilation failed: ERROR: <input>:1:1: undeclared reference to 'params' (in container '')\n",
                    " | params.team == 'a'\n",
                    " | ^"
                ),
                r#"webhooks[0].matchConditions[3].expression: Invalid value: "object.metadata.name": must evaluate to bool but got dyn"#,
                concat!(
                    r#"webhooks[0].matchConditions[4].expression: Invalid value: "request.user == 'jane'": "#,
                    "compilation failed: ERROR: <input>:1:8: undefined field 'user'\n",
                    " | request.user == 'jane'\n",
                    " | .......^"
                ),
            ]
        );
    }

    #[test]
    fn updates_keep_what_the_stored_object_already_broke() {
        let validate = |new: &Value, old: &Value| -> Vec<String> {
            RESOURCE
                .validate(new, Some(old))
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        // A configuration stored with side effects, an unknown review version, a duplicate
        // name and a bad selector value may keep them.
        let old = with(|hook| {
            hook["sideEffects"] = json!("Some");
            hook["admissionReviewVersions"] = json!(["v2"]);
            hook["objectSelector"] =
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": ["b c"]}]});
        });
        let mut old = old;
        let hook = old["webhooks"][0].clone();
        old["webhooks"] = json!([hook.clone(), hook]);
        let mut new = old.clone();
        new["webhooks"][1]["timeoutSeconds"] = json!(20);
        assert_eq!(validate(&new, &old), Vec::<String>::new());
        // Unchanged match conditions are not checked again; changed ones are.
        let old =
            with(|hook| hook["matchConditions"] = json!([{"name": "x y", "expression": "true"}]));
        assert_eq!(validate(&old, &old), Vec::<String>::new());
        let new =
            with(|hook| hook["matchConditions"] = json!([{"name": "x y", "expression": "false"}]));
        assert_eq!(validate(&new, &old).len(), 1);
        // A valid stored configuration gets the create rules.
        let old = with(|_| {});
        let new = with(|hook| hook["sideEffects"] = json!("Some"));
        assert_eq!(
            validate(&new, &old),
            vec![
                r#"webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun""#
            ]
        );
    }

    #[test]
    fn the_row_counts_the_webhooks() {
        let mut object = with(|_| {});
        object["metadata"]["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
        let now: Timestamp = "2025-01-01T00:05:00Z".parse().unwrap();
        assert_eq!(
            cells(&object, now),
            vec![json!("policy.example.com"), json!(1), json!("5m")]
        );
        let columns = columns();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_ref()).collect();
        assert_eq!(names, ["Name", "Webhooks", "Age"]);
        assert_eq!(cells(&json!({"metadata": {"name": "x"}}), now)[1], json!(0));
    }
}
