//! A webhook's `matchConditions`: CEL expressions over the request, all of which must be true
//! for the webhook to be asked, as kube-apiserver 1.33 compiles them
//! (`admission/plugin/cel/compile.go`, checked by `apis/admissionregistration/validation`) and
//! evaluates them (`admission/plugin/webhook/matchconditions/matcher.go`).
//!
//! The variables are upstream's: `object` and `oldObject` (dyn, null on delete and on create),
//! `request` (the AdmissionRequest, typed: an unknown field of it is a compile error) and,
//! declared but never bound here, `namespaceObject` (upstream does not bind it for webhooks
//! either) and `authorizer` (upstream's authorization checks are not provided: an expression
//! that reaches it fails to evaluate, and the failurePolicy decides). `params` is not declared
//! for webhooks (they have none); ValidatingAdmissionPolicies compile their expressions here
//! too ([`compile_as`]), with `params` and their `variables` declared as the policy has them.
//!
//! cel-rust has no type checker: the result type is worked out here where the expression's
//! shape tells it (literals, operators, `request` fields, selections of `object`), which is
//! where upstream's "must evaluate to bool" most often applies.

use ::cel::common::ast::{EntryExpr, Expr, LiteralValue};
use ::cel::{IdedExpr, Value as Cel};
use serde_json::Value;

use crate::apiserver::custom_resources::cel::{PER_CALL_LIMIT, Standalone, json_size, json_to_cel};

/// What an expression may use besides `object`, `oldObject`, `request` and `namespaceObject`
/// (upstream's `OptionalVariableDeclarations`, and the `variables` of a policy that composes
/// some): a webhook's match conditions declare `authorizer` only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Declared<'a> {
    /// `params` (a ValidatingAdmissionPolicy with a paramKind).
    pub params: bool,
    /// `authorizer` (declared, never bound here: see the module's notes).
    pub authorizer: bool,
    /// `variables`: each declared variable's name and result type (None when it cannot be
    /// told); None leaves `variables` undeclared (a policy without any).
    pub variables: Option<&'a [(String, Option<String>)]>,
}

/// What a webhook's match conditions may use (compile.go's, without `params`).
const WEBHOOK: Declared<'static> = Declared {
    params: false,
    authorizer: true,
    variables: None,
};

/// The result type an expression must have (upstream's `ReturnTypes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    /// A condition or validation: bool.
    Bool,
    /// A messageExpression: string.
    String,
    /// An audit annotation's valueExpression: string or null.
    StringOrNull,
    /// A variable: anything.
    Any,
}

/// The identifiers `declared` puts in scope.
fn identifiers(declared: &Declared<'_>) -> Vec<&'static str> {
    let mut names = vec!["object", "oldObject", "request", "namespaceObject"];
    for (name, declared) in [
        ("authorizer", declared.authorizer),
        ("params", declared.params),
        ("variables", declared.variables.is_some()),
    ] {
        if declared {
            names.push(name);
        }
    }
    names
}

/// Upstream's `celconfig.RuntimeCELCostBudgetMatchConditions`: what all conditions of one
/// webhook may cost for one request.
const BUDGET: u64 = 2_500_000;

/// The type name of a policy's `variables` (upstream's `kubernetes.variables`).
const VARIABLES_TYPE: &str = "kubernetes.variables";

/// A field type of upstream's declared object types (`BuildRequestType`, `BuildNamespaceType`).
fn field_type(object: &str, field: &str) -> Option<&'static str> {
    const STRING: &str = "string";
    const GVK: &str = "kubernetes.GroupVersionKind";
    const GVR: &str = "kubernetes.GroupVersionResource";
    const STRINGS: &str = "list(string)";
    const TIMESTAMP: &str = "google.protobuf.Timestamp";
    Some(match (object, field) {
        ("kubernetes.AdmissionRequest", "kind" | "requestKind") => GVK,
        ("kubernetes.AdmissionRequest", "resource" | "requestResource") => GVR,
        (
            "kubernetes.AdmissionRequest",
            "subResource" | "requestSubResource" | "name" | "namespace" | "operation",
        ) => STRING,
        ("kubernetes.AdmissionRequest", "userInfo") => "kubernetes.UserInfo",
        ("kubernetes.AdmissionRequest", "dryRun") => "bool",
        ("kubernetes.AdmissionRequest", "options") => "dyn",
        (GVK, "group" | "version" | "kind") | (GVR, "group" | "version" | "resource") => STRING,
        ("kubernetes.UserInfo", "username" | "uid") => STRING,
        ("kubernetes.UserInfo", "groups") => STRINGS,
        ("kubernetes.UserInfo", "extra") => "map(string, list(string))",
        ("kubernetes.Namespace", "metadata") => "kubernetes.NamespaceMetadata",
        ("kubernetes.Namespace", "spec") => "kubernetes.NamespaceSpec",
        ("kubernetes.Namespace", "status") => "kubernetes.NamespaceStatus",
        ("kubernetes.NamespaceSpec", "finalizers") => STRINGS,
        ("kubernetes.NamespaceStatus", "conditions") => "list(kubernetes.NamespaceCondition)",
        ("kubernetes.NamespaceStatus", "phase") => STRING,
        ("kubernetes.NamespaceCondition", "status" | "type" | "message" | "reason") => STRING,
        ("kubernetes.NamespaceCondition", "lastTransitionTime") => TIMESTAMP,
        (
            "kubernetes.NamespaceMetadata",
            "name" | "generateName" | "namespace" | "UID" | "resourceVersion",
        ) => STRING,
        ("kubernetes.NamespaceMetadata", "labels" | "annotations") => "map(string, string)",
        ("kubernetes.NamespaceMetadata", "creationTimestamp" | "deletionTimestamp") => TIMESTAMP,
        ("kubernetes.NamespaceMetadata", "deletionGracePeriodSeconds" | "generation") => "int",
        ("kubernetes.NamespaceMetadata", "finalizers") => STRINGS,
        _ => return None,
    })
}

/// Compiles one condition's expression as the configuration's validation does: a syntax
/// error, an undeclared identifier, an unknown field of a declared type or a result that is
/// not a bool gives upstream's detail for `Invalid value: "<expression>": <detail>`.
pub fn compile(expression: &str) -> Result<Standalone, String> {
    compile_as(expression, &WEBHOOK, Returns::Bool).map(|(compiled, _)| compiled)
}

/// Compiles an admission expression with `declared` in scope, as upstream's admission CEL
/// compiler does (`admission/plugin/cel/compile.go`): the program and its result type (None
/// when it cannot be told), or upstream's detail (`compilation failed: ERROR: ...`, `must
/// evaluate to bool but got int`).
pub fn compile_as(
    expression: &str,
    declared: &Declared<'_>,
    returns: Returns,
) -> Result<(Standalone, Option<String>), String> {
    let compiled = Standalone::compile(expression, &identifiers(declared))?;
    let mut types = Types {
        compiled: &compiled,
        error: None,
        variables: declared.variables,
    };
    let result = types.of(compiled.ast(), &[]);
    if let Some(error) = types.error {
        return Err(format!("compilation failed: {error}"));
    }
    let wrong = |ty: &str| match returns {
        Returns::Bool => (ty != "bool").then(|| format!("must evaluate to bool but got {ty}")),
        Returns::String => {
            (ty != "string").then(|| format!("must evaluate to string but got {ty}"))
        }
        Returns::StringOrNull => (ty != "string" && ty != "null_type")
            .then(|| format!("must evaluate to one of [string null_type] but got {ty}")),
        Returns::Any => None,
    };
    match result.as_deref().and_then(wrong) {
        Some(why) => Err(why),
        None => Ok((compiled, result)),
    }
}

/// The result types of an expression's nodes, where they can be known; the first checker
/// error found (an unknown field, a selection on a scalar) is kept.
struct Types<'a> {
    compiled: &'a Standalone,
    error: Option<String>,
    /// The declared `variables` and their types, if any.
    variables: Option<&'a [(String, Option<String>)]>,
}

impl Types<'_> {
    fn fail(&mut self, id: u64, message: String) {
        if self.error.is_none() {
            self.error = Some(self.compiled.issue(id, &message));
        }
    }

    /// The type of `e` (cel-go's spelling) or None when it cannot be told; `scope` holds the
    /// comprehension variables, which shadow the declared ones.
    fn of(&mut self, e: &IdedExpr, scope: &[&str]) -> Option<String> {
        match &e.expr {
            Expr::Literal(literal) => Some(
                match literal {
                    LiteralValue::Boolean(_) => "bool",
                    LiteralValue::Bytes(_) => "bytes",
                    LiteralValue::Double(_) => "double",
                    LiteralValue::Int(_) => "int",
                    LiteralValue::Null => "null_type",
                    LiteralValue::String(_) => "string",
                    LiteralValue::UInt(_) => "uint",
                }
                .to_owned(),
            ),
            Expr::Ident(name) if scope.contains(&name.as_str()) => None,
            Expr::Ident(name) => match name.as_str() {
                "object" | "oldObject" => Some("dyn".to_owned()),
                "request" => Some("kubernetes.AdmissionRequest".to_owned()),
                "namespaceObject" => Some("kubernetes.Namespace".to_owned()),
                "params" => Some("dyn".to_owned()),
                "variables" if self.variables.is_some() => Some(VARIABLES_TYPE.to_owned()),
                _ => None,
            },
            Expr::Select(select) => {
                let operand = self.of(&select.operand, scope);
                let field = self.select(e.id, operand, &select.field);
                // has(): the field must exist all the same; the result is a bool.
                if select.test {
                    Some("bool".to_owned())
                } else {
                    field
                }
            }
            Expr::Call(call) => {
                let target = call.target.as_deref().map(|t| self.of(t, scope));
                let args: Vec<Option<String>> =
                    call.args.iter().map(|a| self.of(a, scope)).collect();
                call_type(&call.func_name, target.is_some(), &args)
            }
            Expr::Comprehension(c) => {
                let mut inner: Vec<&str> = scope.to_vec();
                inner.push(&c.iter_var);
                if let Some(v) = &c.iter_var2 {
                    inner.push(v);
                }
                inner.push(&c.accu_var);
                self.of(&c.iter_range, scope);
                let init = self.of(&c.accu_init, scope);
                self.of(&c.loop_cond, &inner);
                self.of(&c.loop_step, &inner);
                // all() and exists() keep a bool accumulator, exists_one() compares a count.
                match &c.result.expr {
                    Expr::Ident(name) if *name == c.accu_var => {
                        init.filter(|t| t == "bool" || t == "int")
                    }
                    _ => self.of(&c.result, &inner),
                }
            }
            Expr::List(list) => {
                let items: Vec<Option<String>> =
                    list.elements.iter().map(|x| self.of(x, scope)).collect();
                joined(&items).map(|t| format!("list({t})"))
            }
            Expr::Map(map) => {
                let mut keys = Vec::new();
                let mut values = Vec::new();
                for entry in &map.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        keys.push(self.of(&me.key, scope));
                        values.push(self.of(&me.value, scope));
                    }
                }
                Some(format!("map({}, {})", joined(&keys)?, joined(&values)?))
            }
            Expr::Struct(_) | Expr::Unspecified => None,
        }
    }

    /// `operand.field`: a declared type's field (or upstream's `undefined field`), a map's
    /// value, dyn from dyn; a scalar or a list has no fields.
    fn select(&mut self, id: u64, operand: Option<String>, field: &str) -> Option<String> {
        let operand = operand?;
        if operand == "dyn" {
            return Some(operand);
        }
        if let Some(value) = operand
            .strip_prefix("map(string, ")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            return Some(value.to_owned());
        }
        if operand == VARIABLES_TYPE {
            // Upstream's composition declares one field per variable (of its result type).
            let declared = self.variables.unwrap_or_default();
            return match declared.iter().find(|(name, _)| name == field) {
                Some((_, ty)) => ty.clone(),
                None => {
                    self.fail(id, format!("undefined field '{field}'"));
                    None
                }
            };
        }
        if operand.starts_with("kubernetes.") {
            return match field_type(&operand, field) {
                Some(ty) => Some(ty.to_owned()),
                None => {
                    self.fail(id, format!("undefined field '{field}'"));
                    None
                }
            };
        }
        if operand.starts_with("map(") {
            return None;
        }
        self.fail(
            id,
            format!("type '{operand}' does not support field selection"),
        );
        None
    }
}

/// The common type of items (a list's elements, a map's keys): dyn when they differ, None
/// when one is unknown or there are none.
fn joined(items: &[Option<String>]) -> Option<String> {
    let first = items.first()?.clone()?;
    let mut all_same = true;
    for item in items {
        let item = item.as_ref()?;
        all_same &= *item == first;
    }
    Some(if all_same { first } else { "dyn".to_owned() })
}

/// The result type of a call, where the function tells it.
fn call_type(function: &str, member: bool, args: &[Option<String>]) -> Option<String> {
    const NUMBERS: [&str; 3] = ["int", "uint", "double"];
    let arg = |i: usize| args.get(i).cloned().flatten();
    let bool_ = || Some("bool".to_owned());
    match function {
        "_&&_"
        | "_||_"
        | "!_"
        | "_==_"
        | "_!=_"
        | "_<_"
        | "_<=_"
        | "_>_"
        | "_>=_"
        | "@in"
        | "@not_strictly_false"
        | "startsWith"
        | "endsWith"
        | "matches"
        | "contains" => bool_(),
        "size" => Some("int".to_owned()),
        "int" | "uint" | "double" | "string" | "bytes" | "bool" if !member => {
            Some(function.to_owned())
        }
        "dyn" if !member => Some("dyn".to_owned()),
        "_+_" | "_-_" | "_*_" | "_/_" | "_%_" => {
            let (a, b) = (arg(0)?, arg(1)?);
            // CEL has no mixed-type arithmetic: beside a number, a string or bytes, dyn can
            // only be the same type (cel-go picks that one overload and its result).
            let concrete = |t: &str| {
                NUMBERS.contains(&t) || (function == "_+_" && (t == "string" || t == "bytes"))
            };
            match (a.as_str(), b.as_str()) {
                ("dyn", "dyn") => Some("dyn".to_owned()),
                ("dyn", other) | (other, "dyn") => {
                    Some(if concrete(other) { other } else { "dyn" }.to_owned())
                }
                _ if a == b && (concrete(&a) || (function == "_+_" && a.starts_with("list("))) => {
                    Some(a)
                }
                _ => None,
            }
        }
        "-_" => arg(0).filter(|t| t == "int" || t == "double" || t == "dyn"),
        "_?_:_" => {
            let (a, b) = (arg(1)?, arg(2)?);
            (a == b).then_some(a)
        }
        "_[_]" => {
            let operand = arg(0)?;
            if operand == "dyn" {
                Some(operand)
            } else if let Some(item) = operand
                .strip_prefix("list(")
                .and_then(|rest| rest.strip_suffix(')'))
            {
                Some(item.to_owned())
            } else {
                operand
                    .strip_prefix("map(string, ")
                    .and_then(|rest| rest.strip_suffix(')'))
                    .map(str::to_owned)
            }
        }
        _ => None,
    }
}

/// One condition as stored in the configuration, compiled.
#[derive(Debug)]
struct Condition {
    expression: String,
    /// The program, or why it did not compile (reported when it is evaluated).
    compiled: Result<Standalone, String>,
}

/// A webhook's match conditions, compiled once per configuration version.
#[derive(Debug, Default)]
pub struct Conditions(Vec<Condition>);

/// What a webhook's match conditions say about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// All true (or there are none): the webhook is asked.
    Match,
    /// One is false: the webhook is not asked.
    Skip,
    /// None is false but some could not be evaluated: upstream's aggregated error text.
    Error(String),
}

impl Conditions {
    /// Compiles the `matchConditions` of `hook` (as stored: validation has refused the ones
    /// that do not compile, but a configuration stored before may still have one).
    pub fn of(hook: &Value) -> Self {
        Self::declared(hook, &WEBHOOK)
    }

    /// Compiles the `matchConditions` of `owner` (a webhook, or a ValidatingAdmissionPolicy's
    /// spec) with `declared` in scope.
    pub fn declared(owner: &Value, declared: &Declared<'_>) -> Self {
        let conditions = owner["matchConditions"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        Self(
            conditions
                .iter()
                .map(|condition| {
                    let expression = condition["expression"]
                        .as_str()
                        .unwrap_or_default()
                        .trim()
                        .to_owned();
                    let compiled = compile_as(&expression, declared, Returns::Bool)
                        .map(|(compiled, _)| compiled);
                    Condition {
                        expression,
                        compiled,
                    }
                })
                .collect(),
        )
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Evaluates every condition (upstream's `matcher.Match`): any false skips the webhook,
    /// whatever the errors; else errors are reported together; else it matches. `request` is
    /// the AdmissionRequest as CEL sees it.
    pub fn evaluate(
        &self,
        object: Option<&Value>,
        old: Option<&Value>,
        request: &Value,
    ) -> Verdict {
        self.evaluate_with(object, old, request, None)
    }

    /// [`Self::evaluate`] with a policy's `params` bound (null when there are none).
    pub fn evaluate_with(
        &self,
        object: Option<&Value>,
        old: Option<&Value>,
        request: &Value,
        params: Option<&Value>,
    ) -> Verdict {
        if self.0.is_empty() {
            return Verdict::Match;
        }
        let null = Value::Null;
        let object = object.unwrap_or(&null);
        let old = old.unwrap_or(&null);
        let params = params.unwrap_or(&null);
        let size = json_size(object)
            .max(json_size(old))
            .max(json_size(request))
            .max(json_size(params));
        let variables = [
            ("object", json_to_cel(object)),
            ("oldObject", json_to_cel(old)),
            ("request", json_to_cel(request)),
            ("params", json_to_cel(params)),
        ];
        let mut budget = BUDGET;
        let mut errors: Vec<String> = Vec::new();
        for condition in &self.0 {
            let compiled = match &condition.compiled {
                Ok(compiled) => compiled,
                Err(err) => {
                    errors.push(format!("compilation error: {err}"));
                    continue;
                }
            };
            let cost = compiled.cost(size);
            let result = if cost > PER_CALL_LIMIT {
                Err("operation cancelled: actual cost limit exceeded".to_owned())
            } else if cost > budget {
                // Upstream stops evaluating and fails the whole match (no false can rescue it).
                return Verdict::Error(
                    "validation failed due to running out of cost budget, no further validation rules will be run"
                        .to_owned(),
                );
            } else {
                budget -= cost;
                compiled.evaluate(&variables)
            };
            match result {
                Ok(Cel::Bool(true)) => {}
                Ok(Cel::Bool(false)) => return Verdict::Skip,
                Ok(_) => errors.push(format!(
                    "expression '{}' resulted in error: no such overload",
                    condition.expression
                )),
                Err(err) => errors.push(format!(
                    "expression '{}' resulted in error: {err}",
                    condition.expression
                )),
            }
        }
        match aggregate(&errors) {
            Some(text) => Verdict::Error(text),
            None => Verdict::Match,
        }
    }
}

/// `utilerrors.NewAggregate(...).Error()`: one error as it is, several (duplicates once)
/// between brackets.
fn aggregate(errors: &[String]) -> Option<String> {
    let mut seen: Vec<&str> = Vec::new();
    for err in errors {
        if !seen.contains(&err.as_str()) {
            seen.push(err);
        }
    }
    match seen.as_slice() {
        [] => None,
        [one] => Some((*one).to_owned()),
        many => Some(format!("[{}]", many.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn refused(expression: &str) -> String {
        compile(expression).unwrap_err()
    }

    #[test]
    fn compile_errors_read_as_cel_gos() {
        assert!(
            compile(
                "!has(object.metadata.annotations) || !('skip' in object.metadata.annotations)"
            )
            .is_ok()
        );
        assert!(compile("request.userInfo.username.startsWith('system:')").is_ok());
        assert!(compile("oldObject == null").is_ok());
        assert_eq!(
            refused("object.metadata.name =="),
            refused("object.metadata.name ==")
        );
        assert!(
            refused("object.metadata.name ==")
                .starts_with("compilation failed: ERROR: <input>:1:24: Syntax error: "),
            "{}",
            refused("object.metadata.name ==")
        );
        assert_eq!(
            refused("params.x == 1"),
            "compilation failed: ERROR: <input>:1:1: undeclared reference to 'params' (in container '')\n | params.x == 1\n | ^"
        );
        assert_eq!(
            refused("request.usr == 'x'"),
            "compilation failed: ERROR: <input>:1:8: undefined field 'usr'\n | request.usr == 'x'\n | .......^"
        );
        assert_eq!(
            refused("request.name.first == 'x'"),
            "compilation failed: ERROR: <input>:1:13: type 'string' does not support field selection\n | request.name.first == 'x'\n | ............^"
        );
    }

    #[test]
    fn results_must_be_bools() {
        assert_eq!(refused("1"), "must evaluate to bool but got int");
        assert_eq!(refused("'yes'"), "must evaluate to bool but got string");
        assert_eq!(
            refused("object.metadata.name"),
            "must evaluate to bool but got dyn"
        );
        assert_eq!(
            refused("request.operation"),
            "must evaluate to bool but got string"
        );
        assert_eq!(
            refused("request.userInfo.groups"),
            "must evaluate to bool but got list(string)"
        );
        assert_eq!(refused("[1, 2]"), "must evaluate to bool but got list(int)");
        assert_eq!(
            refused("size(request.name) + 1"),
            "must evaluate to bool but got int"
        );
        assert!(compile("request.dryRun").is_ok());
        assert!(compile("[1, 2].all(x, x > 0)").is_ok());
        assert!(compile("[1, 2].exists_one(x, x > 1)").is_ok());
        assert!(compile("has(request.namespace) ? request.namespace == 'a' : true").is_ok());
    }

    fn conditions(list: Value) -> Conditions {
        Conditions::of(&json!({"matchConditions": list}))
    }

    #[test]
    fn all_true_matches_any_false_skips_errors_are_reported() {
        let request = json!({"operation": "CREATE", "userInfo": {"username": "jane"}});
        let object = json!({"metadata": {"name": "web", "annotations": {"skip-validation": "x"}}});
        let plain = json!({"metadata": {"name": "web"}});
        let skip = conditions(json!([{"name": "not-skipped", "expression":
            "!has(object.metadata.annotations) || !('skip-validation' in object.metadata.annotations)"}]));
        assert_eq!(skip.evaluate(Some(&object), None, &request), Verdict::Skip);
        assert_eq!(skip.evaluate(Some(&plain), None, &request), Verdict::Match);
        let created = conditions(json!([{"name": "a", "expression": "oldObject == null"},
            {"name": "b", "expression": "request.userInfo.username == 'jane'"}]));
        assert_eq!(
            created.evaluate(Some(&plain), None, &request),
            Verdict::Match
        );
        assert_eq!(
            created.evaluate(Some(&plain), Some(&plain), &request),
            Verdict::Skip
        );
        // An error and a false: false wins; errors alone are reported.
        let broken = "object.metadata.annotations['team'] == 'a'";
        let mixed = conditions(json!([{"name": "a", "expression": broken},
            {"name": "b", "expression": "false"}]));
        assert_eq!(mixed.evaluate(Some(&plain), None, &request), Verdict::Skip);
        let failing = conditions(json!([{"name": "a", "expression": broken},
            {"name": "b", "expression": "true"}]));
        assert_eq!(
            failing.evaluate(Some(&plain), None, &request),
            Verdict::Error(format!(
                "expression '{broken}' resulted in error: no such key: annotations"
            ))
        );
        let twice = conditions(json!([{"name": "a", "expression": broken},
            {"name": "b", "expression": "authorizer.path('/x').check('get').allowed()"}]));
        assert_eq!(
            twice.evaluate(Some(&plain), None, &request),
            Verdict::Error(format!(
                "[expression '{broken}' resulted in error: no such key: annotations, expression 'authorizer.path('/x').check('get').allowed()' resulted in error: no such attribute(s): authorizer]"
            ))
        );
        // A stored expression that does not compile is an error when it runs.
        let stored = conditions(json!([{"name": "a", "expression": "1"}]));
        assert_eq!(
            stored.evaluate(Some(&plain), None, &request),
            Verdict::Error("compilation error: must evaluate to bool but got int".into())
        );
        assert_eq!(
            conditions(json!([])).evaluate(None, None, &request),
            Verdict::Match
        );
    }
}
