//! `admissionregistration.k8s.io/v1` ValidatingAdmissionPolicy: CEL validations that bindings
//! apply to writes ([`crate::apiserver::admission_policies`] enforces them). Upstream's rules
//! (`ValidateValidatingAdmissionPolicy` and its update form): a failure policy, a valid
//! paramKind, match constraints with at least one resource rule, match conditions, variables
//! and validations (or audit annotations) whose expressions compile; the defaults of
//! `v1/defaults.go`; the status subresource; and upstream's table.

use super::{FAILURE_POLICIES, default_match_resources, match_conditions, match_resources};
use crate::apiserver::admission_policies::compile::{Compiled, Part, Scope, has_param_kind};
use crate::apiserver::registry::prelude::*;
use crate::apiserver::tables::{AGE, NAME, col};
use k8s_openapi::api::admissionregistration::v1 as api;

/// The `validatingadmissionpolicies` resource.
pub static RESOURCE: Resource = Resource {
    group: "admissionregistration.k8s.io",
    version: "v1",
    kind: "ValidatingAdmissionPolicy",
    plural: "validatingadmissionpolicies",
    singular: "validatingadmissionpolicy",
    namespaced: false,
    short_names: &[],
    categories: &["api-extensions"],
    subresources: &[Subresource::Status],
    storage_prefix: "validatingadmissionpolicies",
    field_labels: &[],
    strategy: &ValidatingAdmissionPolicies,
};

/// The reasons a validation may give (upstream's `supportedValidationPolicyReason`).
const REASONS: [&str; 3] = ["Forbidden", "Invalid", "RequestEntityTooLarge"];

/// Upstream's limit on a policy's audit annotations.
const MAX_AUDIT_ANNOTATIONS: usize = 20;

/// Upstream's limit on an audit annotation's valueExpression, in bytes.
const MAX_VALUE_EXPRESSION_BYTES: usize = 5 * 1024;

/// Upstream's table: NAME, VALIDATIONS, PARAMKIND, AGE.
const COLUMNS: &[Column] = &[
    NAME,
    col(
        "Validations",
        "integer",
        "Validations indicates the number of validation rules defined in this configuration",
    ),
    col(
        "ParamKind",
        "string",
        "ParamKind specifies the kind of resources used to parameterize this policy",
    ),
    AGE,
];

/// The `ValidatingAdmissionPolicy` strategy.
pub struct ValidatingAdmissionPolicies;

impl Strategy for ValidatingAdmissionPolicies {
    typed_as!(
        "v1.ValidatingAdmissionPolicy",
        api::ValidatingAdmissionPolicy
    );

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        validate_policy(e, object, old);
    }

    /// `SetDefaults_ValidatingAdmissionPolicySpec` (failurePolicy Fail) and the defaults of
    /// its match constraints.
    fn default(&self, object: &mut Value) {
        let spec = &mut object["spec"];
        if spec.get("failurePolicy").is_none_or(Value::is_null) {
            spec["failurePolicy"] = json!("Fail");
        }
        if let Some(constraints) = spec.get_mut("matchConstraints") {
            default_match_resources(constraints);
        }
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        use crate::apiserver::tables::{age, list_at, name};
        let kind = &object["spec"]["paramKind"];
        let param_kind = if kind.is_object() {
            format!(
                "{}/{}",
                kind["apiVersion"].as_str().unwrap_or_default(),
                kind["kind"].as_str().unwrap_or_default()
            )
        } else {
            "<unset>".to_owned()
        };
        vec![
            json!(name(object)),
            json!(list_at(object, &["spec", "validations"]).len()),
            json!(param_kind),
            json!(age(object, now)),
        ]
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: sample("object.spec.replicas <= int(params.data.maxReplicas)"),
            invalid: sample("object.spec.replicas <="),
            invalid_field: "spec.validations[0].expression",
        }
    }
}

/// A policy for the registry test: deployments' replicas bounded by a ConfigMap's value,
/// with every field defaulting sets.
fn sample(expression: &str) -> Value {
    json!({"metadata": {"name": "replica-limit"}, "spec": {
        "failurePolicy": "Fail",
        "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
        "matchConstraints": {
            "matchPolicy": "Equivalent",
            "namespaceSelector": {"matchExpressions": [{"key": "environment", "operator": "In", "values": ["prod"]}]},
            "objectSelector": {},
            "resourceRules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": ["apps"],
                "apiVersions": ["v1"], "resources": ["deployments", "deployments/scale"], "scope": "*"}],
            "excludeResourceRules": [{"operations": ["*"], "apiGroups": ["apps"],
                "apiVersions": ["v1"], "resources": ["deployments"], "resourceNames": ["system"], "scope": "Namespaced"}],
        },
        "matchConditions": [{"name": "not-system", "expression": "!request.userInfo.username.startsWith('system:')"}],
        "variables": [{"name": "replicas", "expression": "object.spec.replicas"}],
        "validations": [{
            "expression": expression,
            "messageExpression": "'at most ' + params.data.maxReplicas + ' replicas'",
            "reason": "Forbidden",
        }],
        "auditAnnotations": [{"key": "replicas", "valueExpression": "string(variables.replicas)"}],
    }})
}

/// `ValidateValidatingAdmissionPolicy` and `ValidateValidatingAdmissionPolicyUpdate`
/// (ObjectMeta is checked by the caller): an update whose paramKind and match conditions are
/// unchanged does not check the match conditions again.
fn validate_policy(e: &mut Errs, object: &Value, old: Option<&Value>) {
    let path = "spec";
    let spec = &object["spec"];
    let field = |name: &str| child(path, name);
    match get(Some(spec), "failurePolicy") {
        None => e.required(&field("failurePolicy"), ""),
        Some(policy) => {
            let policy = policy.as_str().unwrap_or_default();
            if !FAILURE_POLICIES.contains(&policy) {
                e.not_supported(&field("failurePolicy"), policy, &FAILURE_POLICIES);
            }
        }
    }
    let params = has_param_kind(spec);
    if let Some(kind) = get(Some(spec), "paramKind") {
        param_kind(e, kind, &field("paramKind"));
    }
    match get(Some(spec), "matchConstraints") {
        None => e.required(&field("matchConstraints"), ""),
        Some(constraints) => {
            match_resources(e, constraints, &field("matchConstraints"));
            // A resource rule gives the expressions their types upstream.
            if arr_of(Some(constraints), "resourceRules").is_empty() {
                e.required(&child(&field("matchConstraints"), "resourceRules"), "");
            }
        }
    }
    let unchanged_conditions = old.is_some_and(|old| {
        let old = &old["spec"];
        old.get("paramKind") == spec.get("paramKind")
            && old.get("matchConditions") == spec.get("matchConditions")
    });
    if !unchanged_conditions {
        match_conditions(
            e,
            arr_of(Some(spec), "matchConditions"),
            params,
            &field("matchConditions"),
        );
    }
    let (scope, compiled_variables) = Scope::of(spec);
    for (i, (variable, compiled)) in arr_of(Some(spec), "variables")
        .iter()
        .zip(&compiled_variables)
        .enumerate()
    {
        validate_variable(e, variable, compiled, &idx(&field("variables"), i));
    }
    let validations = arr_of(Some(spec), "validations");
    let annotations = arr_of(Some(spec), "auditAnnotations");
    if validations.is_empty() && annotations.is_empty() {
        let why = "validations or auditAnnotations must contain at least one item";
        e.required(&field("validations"), why);
        e.required(&field("auditAnnotations"), why);
        return;
    }
    for (i, validation) in validations.iter().enumerate() {
        validate_validation(e, &scope, validation, &idx(&field("validations"), i));
    }
    if annotations.len() > MAX_AUDIT_ANNOTATIONS {
        e.invalid(
            &field("auditAnnotations"),
            &compact(&spec["auditAnnotations"]),
            &format!("must not have more than {MAX_AUDIT_ANNOTATIONS} auditAnnotations"),
        );
    }
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let mut keys = BTreeSet::new();
    for (i, annotation) in annotations.iter().enumerate() {
        let at = idx(&field("auditAnnotations"), i);
        validate_audit_annotation(e, &scope, name, annotation, &at);
        let key = str_of(Some(annotation), "key");
        if !keys.insert(key) {
            e.duplicate(&child(&at, "key"), &q(key));
        }
    }
}

/// `validateParamKind`: an API version as APIServices name theirs, and a kind.
fn param_kind(e: &mut Errs, kind: &Value, path: &str) {
    let kind = Some(kind);
    let api_version = str_of(kind, "apiVersion");
    let version_path = child(path, "apiVersion");
    if api_version.is_empty() {
        e.required(&version_path, "");
    } else {
        // Upstream's own `parseGroupVersion`: "" and "/" are the empty group version.
        let parsed = match api_version.matches('/').count() {
            _ if api_version == "/" => Ok(("", "")),
            0 => Ok(("", api_version)),
            1 => Ok(api_version.split_once('/').unwrap_or_default()),
            _ => Err(format!("unexpected GroupVersion string: {api_version}")),
        };
        match parsed {
            Err(why) => e.invalid_s(&version_path, api_version, &why),
            Ok((group, version)) => {
                if !group.is_empty()
                    && let msgs @ [_, ..] = is_dns1123_subdomain(group).as_slice()
                {
                    e.invalid_s(&version_path, group, &msgs.join(","));
                }
                if version.is_empty() {
                    e.invalid_s(&version_path, api_version, "version must be specified");
                } else if let msgs @ [_, ..] = is_dns1035_label(version).as_slice() {
                    e.invalid_s(&version_path, version, &msgs.join(","));
                }
            }
        }
    }
    let kind_name = str_of(kind, "kind");
    let kind_path = child(path, "kind");
    if kind_name.is_empty() {
        e.required(&kind_path, "");
    } else if let msgs @ [_, ..] = is_dns1035_label(&kind_name.to_lowercase()).as_slice() {
        e.invalid_s(
            &kind_path,
            kind_name,
            &format!(
                "may have mixed case, but should otherwise match: {}",
                msgs.join(",")
            ),
        );
    }
}

/// `validateVariable`: a CEL identifier for a name, and an expression that compiles (seeing
/// the variables before it).
fn validate_variable(e: &mut Errs, variable: &Value, compiled: &Compiled, path: &str) {
    let variable = Some(variable);
    let name = str_of(variable, "name");
    if name.trim().is_empty() {
        e.required(&child(path, "name"), "name is not specified");
    } else if !is_cel_identifier(name) {
        e.invalid_s(
            &child(path, "name"),
            name,
            "name is not a valid CEL identifier",
        );
    }
    let expression = str_of(variable, "expression");
    if expression.trim().is_empty() {
        e.required(&child(path, "expression"), "expression is not specified");
    } else if let Err(detail) = compiled {
        e.invalid_s(&child(path, "expression"), expression, detail);
    }
}

/// `validateValidation`: an expression that compiles to a bool, a messageExpression that
/// compiles to a string, a one-line message and a supported reason.
fn validate_validation(e: &mut Errs, scope: &Scope, validation: &Value, path: &str) {
    let validation = Some(validation);
    let expression = str_of(validation, "expression");
    if expression.trim().is_empty() {
        e.required(&child(path, "expression"), "expression is not specified");
    } else if let Err(detail) = scope.compile(Part::Validation, expression) {
        // Upstream compiles the expression as written, so columns match what the user sees.
        e.invalid_s(&child(path, "expression"), expression, &detail);
    }
    let message_expression = str_of(validation, "messageExpression");
    let at = child(path, "messageExpression");
    if !message_expression.is_empty() && message_expression.trim().is_empty() {
        e.invalid_s(&at, message_expression, "must be non-empty if specified");
    } else if !message_expression.trim().is_empty()
        && let Err(detail) = scope.compile(Part::MessageExpression, message_expression)
    {
        e.invalid_s(&at, message_expression, &detail);
    }
    let message = str_of(validation, "message");
    let at = child(path, "message");
    if !message.is_empty() && message.trim().is_empty() {
        e.invalid_s(&at, message, "message must be non-empty if specified");
    } else if message.trim().contains(['\n', '\r']) {
        e.invalid_s(&at, message, "message must not contain line breaks");
    }
    if let Some(reason) = get(validation, "reason") {
        let reason = reason.as_str().unwrap_or_default();
        if !REASONS.contains(&reason) {
            e.not_supported(&child(path, "reason"), reason, &REASONS);
        }
    }
}

/// `validateAuditAnnotation`: `<policy>/<key>` is a qualified name, and the valueExpression
/// (at most 5 KiB) compiles to a string or null.
fn validate_audit_annotation(
    e: &mut Errs,
    scope: &Scope,
    policy: &str,
    annotation: &Value,
    path: &str,
) {
    let annotation = Some(annotation);
    let key = str_of(annotation, "key");
    let key_path = child(path, "key");
    if policy.is_empty() {
        e.invalid_s(&key_path, key, "requires metadata.name be non-empty");
    } else {
        let qualified = format!("{policy}/{key}");
        for msg in is_qualified_name(&qualified) {
            e.invalid_s(&key_path, &qualified, &msg);
        }
    }
    let expression = str_of(annotation, "valueExpression");
    let at = child(path, "valueExpression");
    let trimmed = expression.trim();
    if trimmed.is_empty() {
        e.required(&at, "valueExpression is not specified");
    } else if trimmed.len() > MAX_VALUE_EXPRESSION_BYTES {
        e.required(
            &at,
            &format!("must not exceed {MAX_VALUE_EXPRESSION_BYTES} bytes in length"),
        );
    } else if let Err(detail) = scope.compile(Part::AuditAnnotation, trimmed) {
        e.invalid_s(&at, expression, &detail);
    }
}

/// Upstream's `isCELIdentifier`: `[_a-zA-Z][_a-zA-Z0-9]*`, not a reserved word.
fn is_cel_identifier(name: &str) -> bool {
    const RESERVED: [&str; 21] = [
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !RESERVED.contains(&name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A valid, defaulted policy whose spec `change` edits.
    fn with(change: impl FnOnce(&mut Value)) -> Value {
        let mut object = sample("object.spec.replicas <= 5");
        object["apiVersion"] = json!("admissionregistration.k8s.io/v1");
        object["kind"] = json!("ValidatingAdmissionPolicy");
        ValidatingAdmissionPolicies.default(&mut object);
        change(&mut object["spec"]);
        object
    }

    fn causes(object: &Value) -> Vec<String> {
        RESOURCE.cause_messages(object)
    }

    #[test]
    fn served_as_kube_apiserver_serves_it() {
        let found = crate::apiserver::registry::Registry::new()
            .find_kind(
                "admissionregistration.k8s.io/v1",
                "ValidatingAdmissionPolicy",
            )
            .unwrap();
        assert_eq!(found.plural, "validatingadmissionpolicies");
        assert!(!found.namespaced && found.has(Subresource::Status));
        assert_eq!(
            found.key(None, "p"),
            "/registry/validatingadmissionpolicies/p"
        );
    }

    #[test]
    fn discovery_and_openapi_list_both_kinds() {
        let registry = crate::apiserver::registry::Registry::new();
        let resources = crate::apiserver::discovery::resource_list(
            &registry,
            "admissionregistration.k8s.io",
            "v1",
        )
        .unwrap();
        let names: Vec<&str> = resources["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        for name in [
            "validatingadmissionpolicies",
            "validatingadmissionpolicies/status",
            "validatingadmissionpolicybindings",
        ] {
            assert!(names.contains(&name), "{name} not in {names:?}");
        }
        let document = crate::apiserver::openapi::v3::document(
            &registry,
            "apis/admissionregistration.k8s.io/v1",
        )
        .unwrap();
        let schemas = &document["components"]["schemas"];
        for kind in [
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
        ] {
            let name = format!("io.k8s.api.admissionregistration.v1.{kind}");
            assert!(schemas.get(&name).is_some(), "no schema {name}");
        }
    }

    #[test]
    fn defaults_are_upstreams() {
        let mut object = json!({"metadata": {"name": "p"}, "spec": {
            "matchConstraints": {"resourceRules": [{"operations": ["CREATE"], "apiGroups": ["apps"],
                "apiVersions": ["v1"], "resources": ["deployments"]}]},
            "validations": [{"expression": "true"}],
        }});
        ValidatingAdmissionPolicies.default(&mut object);
        assert_eq!(
            object["spec"],
            json!({"failurePolicy": "Fail", "matchConstraints": {
                "matchPolicy": "Equivalent", "namespaceSelector": {}, "objectSelector": {},
                "resourceRules": [{"operations": ["CREATE"], "apiGroups": ["apps"],
                    "apiVersions": ["v1"], "resources": ["deployments"], "scope": "*"}]},
                "validations": [{"expression": "true"}]})
        );
        assert!(causes(&object).is_empty(), "{:?}", causes(&object));
    }

    #[test]
    fn required_fields_are_required() {
        let object = json!({"metadata": {"name": "p"}, "spec": {}});
        assert_eq!(
            causes(&object),
            vec![
                "spec.failurePolicy: Required value",
                "spec.matchConstraints: Required value",
                "spec.validations: Required value: validations or auditAnnotations must contain at least one item",
                "spec.auditAnnotations: Required value: validations or auditAnnotations must contain at least one item",
            ]
        );
        let object = with(|spec| {
            spec["failurePolicy"] = json!("Retry");
            spec["matchConstraints"]["resourceRules"] = json!([]);
            spec["matchConstraints"]["matchPolicy"] = json!("Loose");
        });
        assert_eq!(
            causes(&object),
            vec![
                r#"spec.failurePolicy: Unsupported value: "Retry": supported values: "Fail", "Ignore""#,
                r#"spec.matchConstraints.matchPolicy: Unsupported value: "Loose": supported values: "Equivalent", "Exact""#,
                "spec.matchConstraints.resourceRules: Required value",
            ]
        );
    }

    #[test]
    fn expressions_must_compile_where_they_are() {
        let object = with(|spec| {
            spec["validations"] = json!([
                {"expression": "object.spec.replicas <="},
                {"expression": "object.spec.replicas", "messageExpression": "1", "message": "a\nb", "reason": "Conflict"},
                {"expression": " ", "messageExpression": "  "},
            ]);
        });
        let found = causes(&object);
        assert!(
            found[0].starts_with(concat!(
                r#"spec.validations[0].expression: Invalid value: "object.spec.replicas <=": "#,
                "compilation failed: ERROR: <input>:1:"
            )),
            "{found:?}"
        );
        assert_eq!(
            found[1..],
            [
                r#"spec.validations[1].expression: Invalid value: "object.spec.replicas": must evaluate to bool but got dyn"#,
                r#"spec.validations[1].messageExpression: Invalid value: "1": must evaluate to string but got int"#,
                r#"spec.validations[1].message: Invalid value: "a\nb": message must not contain line breaks"#,
                r#"spec.validations[1].reason: Unsupported value: "Conflict": supported values: "Forbidden", "Invalid", "RequestEntityTooLarge""#,
                "spec.validations[2].expression: Required value: expression is not specified",
                r#"spec.validations[2].messageExpression: Invalid value: "  ": must be non-empty if specified"#,
            ]
        );
        // params needs a paramKind; variables must be declared.
        let object = with(|spec| {
            spec.as_object_mut().unwrap().remove("paramKind");
            spec["variables"] = json!([{"name": "1st", "expression": "variables.later"}, {"name": "later", "expression": "2"}]);
            spec["matchConditions"] = json!([{"name": "p", "expression": "params.x == 1"}]);
            spec["validations"] = json!([{"expression": "variables.later == 2"}]);
            spec["auditAnnotations"] = json!([{"key": "k", "valueExpression": "1"}, {"key": "k", "valueExpression": "'x'"}]);
        });
        let found = causes(&object);
        assert_eq!(found.len(), 5, "{found:?}");
        assert!(found[0].starts_with(r#"spec.matchConditions[0].expression: Invalid value: "params.x == 1": compilation failed: ERROR: <input>:1:1: undeclared reference to 'params'"#), "{found:?}");
        assert_eq!(
            found[1],
            r#"spec.variables[0].name: Invalid value: "1st": name is not a valid CEL identifier"#
        );
        assert!(found[2].starts_with(r#"spec.variables[0].expression: Invalid value: "variables.later": compilation failed: ERROR: <input>:1:10: undefined field 'later'"#), "{found:?}");
        assert_eq!(
            found[3..],
            [
                r#"spec.auditAnnotations[0].valueExpression: Invalid value: "1": must evaluate to one of [string null_type] but got int"#,
                r#"spec.auditAnnotations[1].key: Duplicate value: "k""#,
            ]
        );
    }

    #[test]
    fn the_param_kind_is_checked() {
        let kind = |value: Value| causes(&with(|spec| spec["paramKind"] = value));
        assert_eq!(
            kind(json!({})),
            vec![
                "spec.paramKind.apiVersion: Required value",
                "spec.paramKind.kind: Required value",
            ]
        );
        assert_eq!(
            kind(json!({"apiVersion": "a/b/c", "kind": "Config_Map"})),
            vec![
                r#"spec.paramKind.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c"#,
                r#"spec.paramKind.kind: Invalid value: "Config_Map": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#,
            ]
        );
        assert_eq!(
            kind(json!({"apiVersion": "example.com/", "kind": "Limit"})),
            vec![
                r#"spec.paramKind.apiVersion: Invalid value: "example.com/": version must be specified"#
            ]
        );
    }

    #[test]
    fn an_update_keeps_match_conditions_stored_before() {
        let old = with(|spec| {
            spec["matchConditions"] = json!([{"name": "c", "expression": "1"}]);
        });
        let mut new = old.clone();
        new["spec"]["validations"][0]["message"] = json!("changed");
        assert!(RESOURCE.validate(&new, Some(&old)).is_empty());
        assert_eq!(RESOURCE.validate(&new, None).len(), 1);
    }

    #[test]
    fn the_row_shows_validations_and_param_kind() {
        let mut object = with(|_| {});
        object["metadata"]["creationTimestamp"] = json!("2025-01-01T00:00:00Z");
        let now: Timestamp = "2025-01-01T00:05:00Z".parse().unwrap();
        assert_eq!(
            ValidatingAdmissionPolicies.cells(&object, now),
            vec![
                json!("replica-limit"),
                json!(1),
                json!("v1/ConfigMap"),
                json!("5m")
            ]
        );
        assert_eq!(
            ValidatingAdmissionPolicies.cells(&json!({"metadata": {"name": "x"}}), now)[2],
            json!("<unset>")
        );
    }
}
