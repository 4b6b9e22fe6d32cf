//! A ValidatingAdmissionPolicy compiled once per version of it (a policy changes rarely;
//! requests are many): its match conditions, variables, validations (with their messages) and
//! audit annotations, each the program or why it did not compile. The policy's registry
//! validation compiles through [`Scope`] too, so what is refused at create and what fails at
//! run time read the same.

use serde_json::Value;

use crate::apiserver::custom_resources::cel::Standalone;
use crate::apiserver::webhooks::conditions::{Conditions, Declared, Returns, compile_as};

/// One expression: the program, or upstream's compile error detail.
pub type Compiled = Result<Standalone, String>;

/// Which kind of a policy's expression is compiled (each has its own declarations and
/// result type, as upstream's validation compiles them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A validation's `expression`: bool, with `authorizer`.
    Validation,
    /// A validation's `messageExpression`: string, without `authorizer`.
    MessageExpression,
    /// An audit annotation's `valueExpression`: string or null, with `authorizer`.
    AuditAnnotation,
}

/// What a policy's expressions have in scope besides the request: `params` when it has a
/// paramKind, and `variables` (each with its result type) when it composes some.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    params: bool,
    variables: Option<Vec<(String, Option<String>)>>,
}

impl Scope {
    /// The scope of the policy `spec`, and its variables compiled in order, each seeing the
    /// ones before it (upstream's composition declares a variable once it has compiled it).
    /// A variable with an empty expression is left undeclared, as upstream's validation
    /// never compiles it.
    pub fn of(spec: &Value) -> (Self, Vec<Compiled>) {
        let params = has_param_kind(spec);
        let listed = spec["variables"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if listed.is_empty() {
            return (
                Self {
                    params,
                    variables: None,
                },
                Vec::new(),
            );
        }
        let mut declared: Vec<(String, Option<String>)> = Vec::new();
        let mut compiled = Vec::with_capacity(listed.len());
        for variable in listed {
            let name = variable["name"].as_str().unwrap_or_default();
            let expression = variable["expression"].as_str().unwrap_or_default();
            if expression.trim().is_empty() {
                compiled.push(Err("expression is not specified".to_owned()));
                continue;
            }
            let result = compile_as(
                expression,
                &Declared {
                    params,
                    authorizer: true,
                    variables: Some(&declared),
                },
                Returns::Any,
            );
            // Upstream declares a variable that did not compile as dyn.
            let ty = match &result {
                Ok((_, ty)) => ty.clone(),
                Err(_) => Some("dyn".to_owned()),
            };
            declared.push((name.to_owned(), ty));
            compiled.push(result.map(|(program, _)| program));
        }
        (
            Self {
                params,
                variables: Some(declared),
            },
            compiled,
        )
    }

    /// Compiles one of the policy's expressions.
    pub fn compile(&self, part: Part, expression: &str) -> Compiled {
        let (authorizer, returns) = match part {
            Part::Validation => (true, Returns::Bool),
            Part::MessageExpression => (false, Returns::String),
            Part::AuditAnnotation => (true, Returns::StringOrNull),
        };
        let declared = Declared {
            params: self.params,
            authorizer,
            variables: self.variables.as_deref(),
        };
        compile_as(expression, &declared, returns).map(|(program, _)| program)
    }

    /// The policy's match conditions compiled: they may use `params`, not `variables`
    /// (upstream evaluates them before the variables).
    pub fn conditions(&self, spec: &Value) -> Conditions {
        Conditions::declared(
            spec,
            &Declared {
                params: self.params,
                authorizer: true,
                variables: None,
            },
        )
    }
}

/// Whether the policy `spec` names a paramKind.
pub fn has_param_kind(spec: &Value) -> bool {
    spec.get("paramKind").is_some_and(|kind| !kind.is_null())
}

/// What a policy does when it cannot be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The request is refused (the default).
    Fail,
    /// The policy is skipped.
    Ignore,
}

/// The kind a policy takes its parameters from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamKind {
    /// `v1`, `example.com/v1`.
    pub api_version: String,
    /// `ConfigMap`.
    pub kind: String,
}

impl ParamKind {
    /// Go's `GroupVersionKind.String()`: `/v1, Kind=ConfigMap`, `example.com/v1, Kind=Limit`.
    pub fn gvk(&self) -> String {
        let (group, version) = self
            .api_version
            .split_once('/')
            .unwrap_or(("", &self.api_version));
        format!("{group}/{version}, Kind={}", self.kind)
    }
}

/// One variable: its name, expression and program.
#[derive(Debug)]
pub struct Variable {
    /// The name it is known by (`variables.<name>`).
    pub name: String,
    /// The program.
    pub compiled: Compiled,
}

/// One validation.
#[derive(Debug)]
pub struct Validation {
    /// The expression as written.
    pub expression: String,
    /// Its program.
    pub compiled: Compiled,
    /// The static message, trimmed (empty when unset).
    pub message: String,
    /// The messageExpression's program, if one is set.
    pub message_expression: Option<Compiled>,
    /// The reason of a refusal (None: Invalid).
    pub reason: Option<String>,
}

/// One audit annotation.
#[derive(Debug)]
pub struct AuditAnnotation {
    /// The key (published as `<policy>/<key>`).
    pub key: String,
    /// The valueExpression as written.
    pub expression: String,
    /// Its program.
    pub compiled: Compiled,
}

/// A stored ValidatingAdmissionPolicy, compiled.
#[derive(Debug)]
pub struct Policy {
    /// The policy's name.
    pub name: String,
    /// What evaluation errors do.
    pub failure_policy: FailurePolicy,
    /// `spec.matchConstraints` as stored (None when missing: then it matches nothing).
    pub match_constraints: Option<Value>,
    /// `spec.paramKind`.
    pub param_kind: Option<ParamKind>,
    /// `spec.matchConditions`.
    pub conditions: Conditions,
    /// `spec.variables`, in order.
    pub variables: Vec<Variable>,
    /// `spec.validations`.
    pub validations: Vec<Validation>,
    /// `spec.auditAnnotations`.
    pub audit_annotations: Vec<AuditAnnotation>,
}

impl Policy {
    /// Compiles a stored policy. Validation refused policies that do not compile, but one
    /// stored before (or by another server) may still hold one: that expression fails when it
    /// runs, and the failurePolicy decides.
    pub fn compile(policy: &Value) -> Self {
        let spec = &policy["spec"];
        let text =
            |value: &Value, field: &str| value[field].as_str().unwrap_or_default().to_owned();
        let (scope, variables) = Scope::of(spec);
        let items = |field: &str| spec[field].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let variables = items("variables")
            .iter()
            .zip(variables)
            .map(|(variable, compiled)| Variable {
                name: text(variable, "name"),
                compiled,
            })
            .collect();
        let validations = items("validations")
            .iter()
            .map(|validation| {
                let expression = text(validation, "expression");
                let message_expression = validation["messageExpression"]
                    .as_str()
                    .filter(|m| !m.trim().is_empty())
                    .map(|m| scope.compile(Part::MessageExpression, m));
                Validation {
                    compiled: scope.compile(Part::Validation, &expression),
                    expression,
                    message: text(validation, "message").trim().to_owned(),
                    message_expression,
                    reason: validation["reason"].as_str().map(str::to_owned),
                }
            })
            .collect();
        let audit_annotations = items("auditAnnotations")
            .iter()
            .map(|annotation| {
                let expression = text(annotation, "valueExpression");
                AuditAnnotation {
                    key: text(annotation, "key"),
                    compiled: scope.compile(Part::AuditAnnotation, expression.trim()),
                    expression,
                }
            })
            .collect();
        Self {
            name: policy["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            failure_policy: if spec["failurePolicy"] == "Ignore" {
                FailurePolicy::Ignore
            } else {
                FailurePolicy::Fail
            },
            match_constraints: spec
                .get("matchConstraints")
                .filter(|c| c.is_object())
                .cloned(),
            param_kind: has_param_kind(spec).then(|| ParamKind {
                api_version: text(&spec["paramKind"], "apiVersion"),
                kind: text(&spec["paramKind"], "kind"),
            }),
            conditions: scope.conditions(spec),
            variables,
            validations,
            audit_annotations,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn variables_see_the_ones_before_them_and_validations_see_all() {
        let spec = json!({"variables": [
            {"name": "replicas", "expression": "object.spec.replicas"},
            {"name": "big", "expression": "variables.replicas > 5"},
            {"name": "early", "expression": "variables.late"},
            {"name": "late", "expression": "1"},
        ]});
        let (scope, compiled) = Scope::of(&spec);
        assert!(compiled[0].is_ok() && compiled[1].is_ok() && compiled[3].is_ok());
        assert_eq!(
            compiled[2].as_ref().unwrap_err(),
            "compilation failed: ERROR: <input>:1:10: undefined field 'late'\n | variables.late\n | .........^"
        );
        assert!(scope.compile(Part::Validation, "!variables.big").is_ok());
        assert!(
            scope
                .compile(Part::Validation, "variables.late == 1")
                .is_ok()
        );
        // A bool variable is a valid validation; an int one is not.
        assert!(scope.compile(Part::Validation, "variables.big").is_ok());
        assert_eq!(
            scope
                .compile(Part::Validation, "variables.late")
                .unwrap_err(),
            "must evaluate to bool but got int"
        );
        assert_eq!(
            scope
                .compile(Part::Validation, "variables.nope")
                .unwrap_err(),
            "compilation failed: ERROR: <input>:1:10: undefined field 'nope'\n | variables.nope\n | .........^"
        );
    }

    #[test]
    fn params_are_declared_only_with_a_param_kind() {
        let (without, _) = Scope::of(&json!({}));
        assert_eq!(
            without
                .compile(Part::Validation, "params.x == 1")
                .unwrap_err(),
            "compilation failed: ERROR: <input>:1:1: undeclared reference to 'params' (in container '')\n | params.x == 1\n | ^"
        );
        assert!(
            without
                .compile(Part::Validation, "variables.x == 1")
                .unwrap_err()
                .contains("undeclared reference to 'variables'")
        );
        let (with, _) = Scope::of(&json!({"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}}));
        assert!(with.compile(Part::Validation, "params.x == 1").is_ok());
    }

    #[test]
    fn each_part_has_its_result_type_and_declarations() {
        let (scope, _) = Scope::of(&json!({}));
        assert!(
            scope
                .compile(
                    Part::MessageExpression,
                    "'too many: ' + string(object.spec.replicas)"
                )
                .is_ok()
        );
        assert_eq!(
            scope.compile(Part::MessageExpression, "1 + 1").unwrap_err(),
            "must evaluate to string but got int"
        );
        // A message cannot ask the authorizer.
        assert!(
            scope
                .compile(
                    Part::MessageExpression,
                    "authorizer.path('/x') == null ? 'a' : 'b'"
                )
                .unwrap_err()
                .contains("undeclared reference to 'authorizer'")
        );
        assert!(scope.compile(Part::AuditAnnotation, "null").is_ok());
        assert!(scope.compile(Part::AuditAnnotation, "'x'").is_ok());
        assert_eq!(
            scope.compile(Part::AuditAnnotation, "true").unwrap_err(),
            "must evaluate to one of [string null_type] but got bool"
        );
    }

    #[test]
    fn a_stored_policy_compiles_what_it_can() {
        let policy = Policy::compile(&json!({"metadata": {"name": "p"}, "spec": {
            "failurePolicy": "Ignore",
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "matchConstraints": {"resourceRules": []},
            "validations": [
                {"expression": "object.spec.replicas <= 5", "message": "  few  "},
                {"expression": "object.spec.replicas <=", "messageExpression": "   "},
            ],
        }}));
        assert_eq!(policy.failure_policy, FailurePolicy::Ignore);
        assert_eq!(
            policy.param_kind.as_ref().unwrap().gvk(),
            "/v1, Kind=ConfigMap"
        );
        assert!(policy.validations[0].compiled.is_ok());
        assert_eq!(policy.validations[0].message, "few");
        assert!(policy.validations[1].compiled.is_err());
        assert!(policy.validations[1].message_expression.is_none());
        let defaulted = Policy::compile(&json!({"metadata": {"name": "p"}, "spec": {}}));
        assert_eq!(defaulted.failure_policy, FailurePolicy::Fail);
        assert!(defaulted.match_constraints.is_none());
    }
}
