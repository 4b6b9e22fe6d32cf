//! One compiled policy evaluated against one request (and one param), as upstream's
//! validator does (`admission/plugin/policy/validating/validator.go`): the match conditions
//! first, then every validation with its message, then the audit annotations. Plain data in,
//! plain data out: which binding it runs for and what its actions do is the dispatcher's
//! business ([`super`]).
//!
//! Variables are evaluated once, in order, before the validations (upstream evaluates them
//! lazily, when an expression first reads one): a variable that fails is an error only for
//! the expressions that read it, as upstream's lazy evaluation has it.

use std::collections::{BTreeMap, HashMap};

use ::cel::common::ast::{EntryExpr, Expr};
use ::cel::{IdedExpr, Value as Cel};
use serde_json::Value;

use super::compile::{Compiled, FailurePolicy, Policy, Validation};
use crate::apiserver::custom_resources::cel::{
    MAX_MESSAGE_BYTES, PER_CALL_LIMIT, RUNTIME_BUDGET, Standalone, json_size, json_to_cel,
};
use crate::apiserver::machinery::field::q;
use crate::apiserver::webhooks::conditions::Verdict;

/// Upstream's message when the budget runs out (evaluation stops there).
const OUT_OF_BUDGET: &str =
    "validation failed due to running out of cost budget, no further validation rules will be run";

/// The reason of a refusal with none of its own (and of every evaluation error).
const INVALID: &str = "Invalid";

/// What the expressions see: `object`, `oldObject`, `request`, `params` and `namespaceObject`
/// (null where absent).
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The object written (None on delete).
    pub object: Option<&'a Value>,
    /// The object before (None on create).
    pub old: Option<&'a Value>,
    /// The AdmissionRequest as CEL sees it.
    pub request: &'a Value,
    /// The param, when the binding has one.
    pub params: Option<&'a Value>,
    /// The request's Namespace (upstream's `CreateNamespaceObject`), for a namespaced one.
    pub namespace: Option<&'a Value>,
}

/// A validation that refuses the request (or could not be evaluated under failurePolicy
/// Fail, which upstream treats the same): the binding's actions decide what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The message (the validation's, or the evaluation error).
    pub message: String,
    /// The status reason: the validation's, `Invalid` by default.
    pub reason: &'static str,
    /// Whether this is an evaluation error rather than a false validation.
    pub error: bool,
}

/// What a policy says about one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The validations that refuse it.
    pub denials: Vec<Denial>,
    /// Audit annotations to publish: key and value.
    pub annotations: Vec<(String, String)>,
    /// Audit annotations that could not be evaluated: these refuse the request whatever the
    /// binding's actions (upstream's `AuditAnnotationActionError`).
    pub annotation_errors: Vec<String>,
}

/// Evaluates `policy` on `inputs`.
pub fn evaluate(policy: &Policy, inputs: &Inputs<'_>) -> Outcome {
    let fail = policy.failure_policy == FailurePolicy::Fail;
    let mut outcome = Outcome::default();
    match policy
        .conditions
        .evaluate_with(inputs.object, inputs.old, inputs.request, inputs.params)
    {
        Verdict::Match => {}
        Verdict::Skip => return outcome,
        Verdict::Error(message) => {
            if fail {
                outcome.denials.push(error(message));
            }
            return outcome;
        }
    }
    let mut run = Run::new(policy, inputs);
    match run.validations(policy) {
        Ok(denials) => outcome.denials = denials,
        Err(OutOfBudget) => outcome.denials = vec![error(OUT_OF_BUDGET.to_owned())],
    }
    if !fail {
        outcome.denials.retain(|denial| !denial.error);
    }
    run.budget = RUNTIME_BUDGET;
    for annotation in &policy.audit_annotations {
        let result = run.expression(&annotation.compiled, &annotation.expression);
        match result {
            Ok(Cel::String(value)) if !value.trim().is_empty() => outcome
                .annotations
                .push((annotation.key.clone(), value.trim().to_owned())),
            Ok(Cel::String(_) | Cel::Null) => {}
            Ok(other) => outcome.annotation_errors.push(format!(
                "valueExpression '{}' resulted in unsupported return type: {}. Return type must be either string or null.",
                annotation.expression,
                type_name(&other)
            )),
            Err(message) if fail => outcome.annotation_errors.push(message),
            Err(_) => {}
        }
    }
    outcome
}

/// An evaluation error as a denial.
fn error(message: String) -> Denial {
    Denial {
        message,
        reason: INVALID,
        error: true,
    }
}

/// The budget ran out: upstream stops evaluating and reports that alone.
#[derive(Debug)]
struct OutOfBudget;

/// One evaluation: what is bound, the variables' values (or why they failed) and the budget.
struct Run {
    bound: Vec<(&'static str, Cel)>,
    size: u64,
    budget: u64,
    /// The variables evaluated so far, as `variables` shows them.
    values: HashMap<String, Cel>,
    /// The variables that could not be evaluated, and why.
    failed: BTreeMap<String, String>,
    /// Whether the policy declares `variables` (bound even when all failed).
    composes: bool,
}

impl Run {
    fn new(policy: &Policy, inputs: &Inputs<'_>) -> Self {
        let null = Value::Null;
        let values = [
            ("object", inputs.object.unwrap_or(&null)),
            ("oldObject", inputs.old.unwrap_or(&null)),
            ("request", inputs.request),
            ("params", inputs.params.unwrap_or(&null)),
            ("namespaceObject", inputs.namespace.unwrap_or(&null)),
        ];
        let size = values.iter().map(|(_, v)| json_size(v)).max().unwrap_or(1);
        Self {
            bound: values
                .iter()
                .map(|(name, value)| (*name, json_to_cel(value)))
                .collect(),
            size,
            budget: RUNTIME_BUDGET,
            values: HashMap::new(),
            failed: BTreeMap::new(),
            composes: !policy.variables.is_empty(),
        }
    }

    /// Evaluates the variables, then the validations; the denials, or that the budget ran out.
    fn validations(&mut self, policy: &Policy) -> Result<Vec<Denial>, OutOfBudget> {
        for variable in &policy.variables {
            let result = match &variable.compiled {
                Err(err) => Err(format!("fails to compile: {err}")),
                Ok(program) => match self.failed_variable(program) {
                    Some(why) => Err(format!("fails to evaluate: {why}")),
                    None => self
                        .run(program)?
                        .map_err(|err| format!("fails to evaluate: {err}")),
                },
            };
            match result {
                Ok(value) => {
                    self.values.insert(variable.name.clone(), value);
                }
                Err(why) => {
                    self.failed.insert(
                        variable.name.clone(),
                        format!("composited variable {} {why}", q(&variable.name)),
                    );
                }
            }
        }
        let mut denials = Vec::new();
        for validation in &policy.validations {
            let result = match &validation.compiled {
                Err(err) => Err(format!("compilation error: {err}")),
                Ok(program) => match self.failed_variable(program) {
                    Some(why) => Err(resulted_in(&validation.expression, &why)),
                    None => self
                        .run(program)?
                        .map_err(|err| resulted_in(&validation.expression, &err)),
                },
            };
            match result {
                Err(message) => denials.push(error(message)),
                // Anything but true refuses (upstream compares the result with true).
                Ok(Cel::Bool(true)) => {}
                Ok(_) => denials.push(self.refusal(validation)),
            }
        }
        Ok(denials)
    }

    /// A failed validation's refusal: its messageExpression's result if that is a usable
    /// string, else its message, else `failed expression: <expression>`.
    fn refusal(&mut self, validation: &Validation) -> Denial {
        let reason = match validation.reason.as_deref() {
            Some("Forbidden") => "Forbidden",
            Some("Unauthorized") => "Unauthorized",
            Some("RequestEntityTooLarge") => "RequestEntityTooLarge",
            _ => INVALID,
        };
        let mut message = String::new();
        if let Some(Ok(program)) = &validation.message_expression
            && self.failed_variable(program).is_none()
        {
            match self.run(program) {
                Err(OutOfBudget) => {
                    return error(format!("failed messageExpression: {OUT_OF_BUDGET}"));
                }
                Ok(Ok(Cel::String(text))) => {
                    let text = text.trim();
                    // Upstream refuses long and multi-line messages.
                    if text.len() <= MAX_MESSAGE_BYTES && !text.contains('\n') {
                        text.clone_into(&mut message);
                    }
                }
                Ok(other) => tracing::debug!(
                    "messageExpression of a validation ({}) gave no message: {other:?}",
                    validation.expression
                ),
            }
        }
        if message.is_empty() {
            message.clone_from(&validation.message);
        }
        if message.is_empty() {
            message = format!("failed expression: {}", validation.expression.trim());
        }
        Denial {
            message,
            reason,
            error: false,
        }
    }

    /// One expression that may fail on its own: its value, or upstream's error text.
    fn expression(&mut self, compiled: &Compiled, expression: &str) -> Result<Cel, String> {
        let program = compiled
            .as_ref()
            .map_err(|err| format!("compilation error: {err}"))?;
        if let Some(why) = self.failed_variable(program) {
            return Err(resulted_in(expression, &why));
        }
        match self.run(program) {
            Ok(result) => result.map_err(|err| resulted_in(expression, &err)),
            Err(OutOfBudget) => Err(OUT_OF_BUDGET.to_owned()),
        }
    }

    /// Runs `program` within the budget: its value or cel-go's error text.
    fn run(&mut self, program: &Standalone) -> Result<Result<Cel, String>, OutOfBudget> {
        let cost = program.cost(self.size);
        if cost > PER_CALL_LIMIT {
            return Ok(Err(
                "operation cancelled: actual cost limit exceeded".to_owned()
            ));
        }
        if cost > self.budget {
            return Err(OutOfBudget);
        }
        self.budget -= cost;
        let mut bound = self.bound.clone();
        if self.composes {
            bound.push(("variables", Cel::from(self.values.clone())));
        }
        Ok(program.evaluate(&bound))
    }

    /// Why `program` cannot run: it reads a variable that failed.
    fn failed_variable(&self, program: &Standalone) -> Option<String> {
        if self.failed.is_empty() {
            return None;
        }
        let mut read = Vec::new();
        variables_read(program.ast(), &mut read);
        read.iter().find_map(|name| self.failed.get(*name)).cloned()
    }
}

/// Upstream's text of an expression that failed to evaluate.
fn resulted_in(expression: &str, err: &str) -> String {
    format!("expression '{expression}' resulted in error: {err}")
}

/// The variables an expression reads (`variables.<name>`).
fn variables_read<'a>(e: &'a IdedExpr, out: &mut Vec<&'a str>) {
    match &e.expr {
        Expr::Select(select) => {
            if matches!(&select.operand.expr, Expr::Ident(name) if name == "variables") {
                out.push(&select.field);
            }
            variables_read(&select.operand, out);
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                variables_read(target, out);
            }
            for arg in &call.args {
                variables_read(arg, out);
            }
        }
        Expr::Comprehension(c) => {
            for part in [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ] {
                variables_read(part, out);
            }
        }
        Expr::List(list) => {
            for item in &list.elements {
                variables_read(item, out);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let EntryExpr::MapEntry(entry) = &entry.expr {
                    variables_read(&entry.key, out);
                    variables_read(&entry.value, out);
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(field) = &entry.expr {
                    variables_read(&field.value, out);
                }
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// cel-go's name of a value's type.
fn type_name(value: &Cel) -> &'static str {
    match value {
        Cel::List(_) => "list",
        Cel::Map(_) => "map",
        Cel::Function(..) => "function",
        Cel::Int(_) => "int",
        Cel::UInt(_) => "uint",
        Cel::Float(_) => "double",
        Cel::String(_) => "string",
        Cel::Bytes(_) => "bytes",
        Cel::Bool(_) => "bool",
        Cel::Duration(_) => "google.protobuf.Duration",
        Cel::Timestamp(_) => "google.protobuf.Timestamp",
        Cel::Opaque(_) | Cel::Struct(_) => "object",
        Cel::Null => "null_type",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn policy(spec: Value) -> Policy {
        Policy::compile(&json!({"metadata": {"name": "p"}, "spec": spec}))
    }

    fn deployment(replicas: i64) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": replicas}})
    }

    fn request() -> Value {
        json!({"operation": "CREATE", "name": "web", "namespace": "default",
            "userInfo": {"username": "jane"}})
    }

    fn run(policy: &Policy, object: &Value, params: Option<&Value>) -> Outcome {
        let request = request();
        evaluate(
            policy,
            &Inputs {
                object: Some(object),
                old: None,
                request: &request,
                params,
                namespace: None,
            },
        )
    }

    fn denied(message: &str) -> Denial {
        Denial {
            message: message.to_owned(),
            reason: INVALID,
            error: false,
        }
    }

    #[test]
    fn a_false_validation_refuses_with_its_message() {
        let max = policy(json!({"validations": [{"expression": "object.spec.replicas <= 5"}]}));
        assert_eq!(run(&max, &deployment(5), None), Outcome::default());
        assert_eq!(
            run(&max, &deployment(6), None).denials,
            vec![denied("failed expression: object.spec.replicas <= 5")]
        );
        let messages = policy(json!({"validations": [
            {"expression": "object.spec.replicas <= 5", "message": "too many", "reason": "Forbidden"},
            {"expression": "object.spec.replicas <= 4", "message": "static",
             "messageExpression": "'at most 4, not ' + string(object.spec.replicas)"},
            {"expression": "object.spec.replicas <= 3", "message": "fallback",
             "messageExpression": "'two\\nlines'"},
        ]}));
        assert_eq!(
            run(&messages, &deployment(6), None).denials,
            vec![
                Denial {
                    message: "too many".into(),
                    reason: "Forbidden",
                    error: false
                },
                denied("at most 4, not 6"),
                denied("fallback"),
            ]
        );
    }

    #[test]
    fn params_namespace_and_request_are_bound() {
        let limit = policy(json!({
            "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "validations": [{"expression": "object.spec.replicas <= int(params.data.max)",
                "messageExpression": "'at most ' + params.data.max + ' replicas'"}],
        }));
        let params = json!({"data": {"max": "3"}});
        assert_eq!(
            run(&limit, &deployment(4), Some(&params)).denials,
            vec![denied("at most 3 replicas")]
        );
        assert!(
            run(&limit, &deployment(3), Some(&params))
                .denials
                .is_empty()
        );
        // No param bound: params is null, and reading it fails the evaluation.
        let outcome = run(&limit, &deployment(3), None);
        assert!(outcome.denials[0].error, "{outcome:?}");
        assert!(
            outcome.denials[0].message.starts_with(
                "expression 'object.spec.replicas <= int(params.data.max)' resulted in error: "
            ),
            "{outcome:?}"
        );

        let namespaced = policy(json!({"validations": [
            {"expression": "namespaceObject.metadata.labels.env == 'prod'"},
            {"expression": "request.userInfo.username == 'jane'"},
            {"expression": "oldObject == null"},
        ]}));
        let request = request();
        let namespace = json!({"metadata": {"name": "default", "labels": {"env": "dev"}}});
        let outcome = evaluate(
            &namespaced,
            &Inputs {
                object: Some(&deployment(1)),
                old: None,
                request: &request,
                params: None,
                namespace: Some(&namespace),
            },
        );
        assert_eq!(
            outcome.denials,
            vec![denied(
                "failed expression: namespaceObject.metadata.labels.env == 'prod'"
            )]
        );
    }

    #[test]
    fn errors_follow_the_failure_policy() {
        let spec = |failure: &str| {
            json!({"failurePolicy": failure, "validations": [
                {"expression": "object.spec.missing == 1"},
                {"expression": "object.spec.replicas <="},
            ]})
        };
        let outcome = run(&policy(spec("Fail")), &deployment(1), None);
        assert_eq!(
            outcome
                .denials
                .iter()
                .map(|d| d.message.as_str())
                .collect::<Vec<_>>(),
            [
                "expression 'object.spec.missing == 1' resulted in error: no such key: missing",
                outcome.denials[1].message.as_str(),
            ]
        );
        assert!(
            outcome.denials[1]
                .message
                .starts_with("compilation error: compilation failed: ERROR: <input>:1:"),
            "{outcome:?}"
        );
        assert!(
            outcome
                .denials
                .iter()
                .all(|d| d.error && d.reason == "Invalid")
        );
        assert_eq!(
            run(&policy(spec("Ignore")), &deployment(1), None),
            Outcome::default()
        );
    }

    #[test]
    fn match_conditions_come_first() {
        let spec = json!({
            "matchConditions": [{"name": "not-jane", "expression": "request.userInfo.username != 'jane'"}],
            "validations": [{"expression": "false"}],
        });
        assert_eq!(run(&policy(spec), &deployment(1), None), Outcome::default());
        let broken = json!({
            "matchConditions": [{"name": "broken", "expression": "object.spec.nope == 1"}],
            "validations": [{"expression": "false"}],
        });
        let outcome = run(&policy(broken), &deployment(1), None);
        assert_eq!(
            outcome.denials,
            vec![error(
                "expression 'object.spec.nope == 1' resulted in error: no such key: nope".into()
            )]
        );
    }

    #[test]
    fn variables_compose_and_fail_only_where_read() {
        let composed = policy(json!({
            "variables": [
                {"name": "replicas", "expression": "object.spec.replicas"},
                {"name": "big", "expression": "variables.replicas > 5"},
                {"name": "broken", "expression": "object.spec.nope"},
            ],
            "validations": [
                {"expression": "!variables.big", "messageExpression": "'too big: ' + string(variables.replicas)"},
                {"expression": "variables.broken == 1"},
            ],
        }));
        let outcome = run(&composed, &deployment(7), None);
        assert_eq!(
            outcome.denials,
            vec![
                denied("too big: 7"),
                error("expression 'variables.broken == 1' resulted in error: composited variable \"broken\" fails to evaluate: no such key: nope".into()),
            ]
        );
        let unread = policy(json!({
            "variables": [{"name": "broken", "expression": "object.spec.nope"}],
            "validations": [{"expression": "object.spec.replicas < 10"}],
        }));
        assert_eq!(run(&unread, &deployment(7), None), Outcome::default());
    }

    #[test]
    fn audit_annotations_publish_strings_and_refuse_errors() {
        let audited = policy(json!({
            "auditAnnotations": [
                {"key": "replicas", "valueExpression": "'replicas: ' + string(object.spec.replicas)"},
                {"key": "none", "valueExpression": "null"},
                {"key": "broken", "valueExpression": "string(object.spec.nope)"},
            ],
        }));
        let outcome = run(&audited, &deployment(2), None);
        assert_eq!(
            outcome.annotations,
            vec![("replicas".into(), "replicas: 2".into())]
        );
        assert_eq!(
            outcome.annotation_errors,
            vec![
                "expression 'string(object.spec.nope)' resulted in error: no such key: nope"
                    .to_owned()
            ]
        );
    }
}
