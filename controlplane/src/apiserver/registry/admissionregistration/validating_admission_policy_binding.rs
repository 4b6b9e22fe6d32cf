//! `admissionregistration.k8s.io/v1` ValidatingAdmissionPolicyBinding: which policy applies
//! to which resources, with which params and what a failed validation does. Upstream's rules
//! (`ValidateValidatingAdmissionPolicyBinding`, the same on update): a policy name, a param
//! reference by name or by selector with its not-found action, match resources, and
//! validation actions (not both Deny and Warn); the defaults of its match resources; and
//! upstream's table.

use super::{default_match_resources, go_slice, match_resources};
use crate::apiserver::registry::prelude::*;
use crate::apiserver::tables::{AGE, NAME, col};
use k8s_openapi::api::admissionregistration::v1 as api;

/// The `validatingadmissionpolicybindings` resource.
pub static RESOURCE: Resource = Resource {
    group: "admissionregistration.k8s.io",
    version: "v1",
    kind: "ValidatingAdmissionPolicyBinding",
    plural: "validatingadmissionpolicybindings",
    singular: "validatingadmissionpolicybinding",
    namespaced: false,
    short_names: &[],
    categories: &["api-extensions"],
    subresources: &[],
    storage_prefix: "validatingadmissionpolicybindings",
    field_labels: &[],
    strategy: &ValidatingAdmissionPolicyBindings,
};

/// The validation actions (upstream's sorted `validValidationActions`).
const ACTIONS: [&str; 3] = ["Audit", "Deny", "Warn"];

/// What a binding does when its param is missing (in upstream's order).
const NOT_FOUND_ACTIONS: [&str; 2] = ["Deny", "Allow"];

/// Upstream's table: NAME, POLICYNAME, PARAMREF, AGE.
const COLUMNS: &[Column] = &[
    NAME,
    col(
        "PolicyName",
        "string",
        "PolicyName indicates the policy definition which the policy binding binded to",
    ),
    col(
        "ParamRef",
        "string",
        "ParamRef indicates the param resource which sets the configration param",
    ),
    AGE,
];

/// The `ValidatingAdmissionPolicyBinding` strategy.
pub struct ValidatingAdmissionPolicyBindings;

impl Strategy for ValidatingAdmissionPolicyBindings {
    typed_as!(
        "v1.ValidatingAdmissionPolicyBinding",
        api::ValidatingAdmissionPolicyBinding
    );

    fn validate(&self, e: &mut Errs, object: &Value, _old: Option<&Value>) {
        validate_binding(e, &object["spec"]);
    }

    /// The defaults of its match resources (`SetDefaults_MatchResources`).
    fn default(&self, object: &mut Value) {
        if let Some(resources) = object
            .get_mut("spec")
            .and_then(|spec| spec.get_mut("matchResources"))
        {
            default_match_resources(resources);
        }
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        use crate::apiserver::tables::{age, name};
        let spec = &object["spec"];
        vec![
            json!(name(object)),
            json!(spec["policyName"].as_str().unwrap_or_default()),
            json!(param_ref_cell(&spec["paramRef"])),
            json!(age(object, now)),
        ]
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: sample(&["Deny", "Audit"]),
            invalid: sample(&["Deny", "Warn"]),
            invalid_field: "spec.validationActions",
        }
    }
}

/// A binding for the registry test, with every field defaulting sets.
fn sample(actions: &[&str]) -> Value {
    json!({"metadata": {"name": "replica-limit-prod"}, "spec": {
        "policyName": "replica-limit",
        "paramRef": {"name": "limits", "namespace": "policies", "parameterNotFoundAction": "Deny"},
        "matchResources": {
            "matchPolicy": "Equivalent",
            "namespaceSelector": {"matchLabels": {"environment": "prod"}},
            "objectSelector": {},
        },
        "validationActions": actions,
    }})
}

/// `validateValidatingAdmissionPolicyBindingSpec`.
fn validate_binding(e: &mut Errs, spec: &Value) {
    let spec = Some(spec);
    let policy = str_of(spec, "policyName");
    if policy.is_empty() {
        e.required("spec.policyName", "");
    } else {
        for msg in is_dns1123_subdomain(policy) {
            e.invalid_s("spec.policyName", policy, &msg);
        }
    }
    if let Some(param_ref) = get(spec, "paramRef") {
        validate_param_ref(e, param_ref, "spec.paramRef");
    }
    if let Some(resources) = get(spec, "matchResources") {
        // Upstream's path has this spelling.
        match_resources(e, resources, "spec.matchResouces");
    }
    validation_actions(
        e,
        arr_of(spec, "validationActions"),
        "spec.validationActions",
    );
}

/// `validateParamRef`: a name or a selector (not both), and what to do when none is found.
fn validate_param_ref(e: &mut Errs, param_ref: &Value, path: &str) {
    let param_ref = Some(param_ref);
    let name = str_of(param_ref, "name");
    let selector = get(param_ref, "selector");
    const EXCLUSIVE: &str = "name and selector are mutually exclusive";
    if !name.is_empty() {
        for msg in is_path_segment_name(name, false) {
            e.invalid_s(&child(path, "name"), name, &msg);
        }
        if selector.is_some() {
            e.forbidden(&child(path, "name"), EXCLUSIVE);
        }
    }
    if let Some(selector) = selector {
        label_selector(e, Some(selector), &child(path, "selector"));
        if !name.is_empty() {
            e.forbidden(&child(path, "selector"), EXCLUSIVE);
        }
    }
    if name.is_empty() && selector.is_none() {
        e.required(path, "one of name or selector must be specified");
    }
    let action = str_of(param_ref, "parameterNotFoundAction");
    let at = child(path, "parameterNotFoundAction");
    if action.is_empty() {
        e.required(&at, "");
    } else if !NOT_FOUND_ACTIONS.contains(&action) {
        e.not_supported(&at, action, &NOT_FOUND_ACTIONS);
    }
}

/// `validateValidationActions`: known, unique, at least one, and not both Deny and Warn.
fn validation_actions(e: &mut Errs, actions: &[Value], path: &str) {
    let mut seen = BTreeSet::new();
    for (i, action) in actions.iter().enumerate() {
        let action = action.as_str().unwrap_or_default();
        if !ACTIONS.contains(&action) {
            e.not_supported(&idx(path, i), action, &ACTIONS);
        }
        if !seen.insert(action) {
            e.duplicate(&idx(path, i), &q(action));
        }
    }
    if seen.contains("Deny") && seen.contains("Warn") {
        e.invalid(
            path,
            &go_slice("admissionregistration.ValidationAction", actions),
            "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        );
    }
    if seen.is_empty() {
        e.required(path, "at least one validation action is required");
    }
}

/// The PARAMREF cell: `<namespace>/<name>` (`*/<name>` without a namespace), the selector as
/// Go prints a `LabelSelector`, or `<unset>`.
fn param_ref_cell(param_ref: &Value) -> String {
    let name = param_ref["name"].as_str().unwrap_or_default();
    if !name.is_empty() {
        return match param_ref["namespace"].as_str().filter(|n| !n.is_empty()) {
            Some(namespace) => format!("{namespace}/{name}"),
            None => format!("*/{name}"),
        };
    }
    let selector = &param_ref["selector"];
    if !selector.is_object() {
        return "<unset>".to_owned();
    }
    // The protobuf-generated `String()` of a LabelSelector.
    let mut labels: Vec<(&String, &Value)> = selector["matchLabels"]
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    labels.sort_by_key(|(key, _)| *key);
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("{k}: {},", v.as_str().unwrap_or_default()))
        .collect();
    let expressions: String = selector["matchExpressions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|r| {
            let values: Vec<&str> = r["values"]
                .as_array()
                .map(|v| v.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                r["key"].as_str().unwrap_or_default(),
                r["operator"].as_str().unwrap_or_default(),
                values.join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{expressions}}},}}"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn causes(spec: Value) -> Vec<String> {
        let object = json!({"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": "b"}, "spec": spec});
        RESOURCE.cause_messages(&object)
    }

    #[test]
    fn served_as_kube_apiserver_serves_it() {
        let found = crate::apiserver::registry::Registry::new()
            .find_kind(
                "admissionregistration.k8s.io/v1",
                "ValidatingAdmissionPolicyBinding",
            )
            .unwrap();
        assert_eq!(found.plural, "validatingadmissionpolicybindings");
        assert_eq!(
            found.key(None, "b"),
            "/registry/validatingadmissionpolicybindings/b"
        );
    }

    #[test]
    fn policy_name_and_actions_are_required() {
        assert_eq!(
            causes(json!({})),
            vec![
                "spec.policyName: Required value",
                "spec.validationActions: Required value: at least one validation action is required",
            ]
        );
        assert_eq!(
            causes(
                json!({"policyName": "p", "validationActions": ["Deny", "Warn", "Deny", "Log"]})
            ),
            vec![
                r#"spec.validationActions[2]: Duplicate value: "Deny""#,
                r#"spec.validationActions[3]: Unsupported value: "Log": supported values: "Audit", "Deny", "Warn""#,
                r#"spec.validationActions: Invalid value: []admissionregistration.ValidationAction{"Deny", "Warn", "Deny", "Log"}: must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)"#,
            ]
        );
    }

    #[test]
    fn a_param_ref_names_or_selects() {
        let with_ref = |param_ref: Value| {
            causes(json!({"policyName": "p", "validationActions": ["Deny"], "paramRef": param_ref}))
        };
        assert_eq!(
            with_ref(json!({})),
            vec![
                "spec.paramRef: Required value: one of name or selector must be specified",
                "spec.paramRef.parameterNotFoundAction: Required value",
            ]
        );
        assert_eq!(
            with_ref(json!({"name": "a/b", "selector": {}, "parameterNotFoundAction": "Ignore"})),
            vec![
                r#"spec.paramRef.name: Invalid value: "a/b": may not contain '/'"#,
                "spec.paramRef.name: Forbidden: name and selector are mutually exclusive",
                "spec.paramRef.selector: Forbidden: name and selector are mutually exclusive",
                r#"spec.paramRef.parameterNotFoundAction: Unsupported value: "Ignore": supported values: "Deny", "Allow""#,
            ]
        );
    }

    #[test]
    fn match_resources_are_defaulted_and_checked() {
        let mut object = json!({"metadata": {"name": "b"}, "spec": {"policyName": "p",
            "validationActions": ["Warn"], "matchResources": {"namespaceSelector": {"matchLabels": {"env": "prod"}}}}});
        ValidatingAdmissionPolicyBindings.default(&mut object);
        assert_eq!(
            object["spec"]["matchResources"],
            json!({"matchPolicy": "Equivalent", "namespaceSelector": {"matchLabels": {"env": "prod"}}, "objectSelector": {}})
        );
        assert_eq!(
            causes(json!({"policyName": "p", "validationActions": ["Deny"], "matchResources": {}})),
            vec![
                "spec.matchResouces.matchPolicy: Required value",
                "spec.matchResouces.namespaceSelector: Required value",
                "spec.matchResouces.objectSelector: Required value",
            ]
        );
    }

    #[test]
    fn the_row_shows_the_policy_and_param() {
        let now: Timestamp = "2025-01-01T00:05:00Z".parse().unwrap();
        let row = |param_ref: Value| {
            ValidatingAdmissionPolicyBindings.cells(
                &json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "paramRef": param_ref}}),
                now,
            )[2]
                .clone()
        };
        assert_eq!(
            row(json!({"name": "limits", "namespace": "ns"})),
            json!("ns/limits")
        );
        assert_eq!(row(json!({"name": "limits"})), json!("*/limits"));
        assert_eq!(row(Value::Null), json!("<unset>"));
        assert_eq!(
            row(json!({"selector": {"matchLabels": {"b": "2", "a": "1"},
                "matchExpressions": [{"key": "k", "operator": "In", "values": ["x", "y"]}]}})),
            json!(
                "&LabelSelector{MatchLabels:map[string]string{a: 1,b: 2,},MatchExpressions:[]LabelSelectorRequirement{LabelSelectorRequirement{Key:k,Operator:In,Values:[x y],},},}"
            )
        );
    }
}
