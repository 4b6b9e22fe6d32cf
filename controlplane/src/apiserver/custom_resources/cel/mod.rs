//! CEL validation rules (`x-kubernetes-validations`) of CustomResourceDefinitions, as
//! apiextensions-apiserver v0.33 compiles them (`pkg/apiserver/schema/cel/compilation.go`, checked
//! in `pkg/apis/apiextensions/validation/validation.go`) and evaluates them
//! (`pkg/apiserver/schema/cel/validation.go`), on cel-rust (the `cel` crate).
//!
//! cel-rust has no type checker: compilation catches syntax errors and undeclared identifiers,
//! not unknown fields or non-bool results (those surface when a rule runs). It has no cost
//! tracking either: before a rule runs, its cost is bounded from the expression and the size of
//! the data it sees (see [`estimate`]); a rule over the per-call limit is not run.

mod library;
mod value;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use ::cel::common::ast::{EntryExpr, Expr};
use ::cel::objects::OptionalValue;
use ::cel::{Context, ExecutionError, IdedExpr, Program};
use serde_json::Value;

use super::schema::Structural;
use crate::apiserver::machinery::field::{Cause, Errs, child, idx, key, q};

/// Upstream's `celconfig.PerCallLimit`: the most one rule may cost.
pub const PER_CALL_LIMIT: u64 = 1_000_000;
/// Upstream's `celconfig.RuntimeCELCostBudget`: the most all rules of one object may cost.
pub const RUNTIME_BUDGET: u64 = 10_000_000;
/// Upstream's `celconfig.MaxEvaluatedMessageExpressionSizeBytes`.
pub(crate) const MAX_MESSAGE_BYTES: usize = 5 * 1024;

/// One `x-kubernetes-validations` entry as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct RuleSpec {
    pub(crate) rule: String,
    pub(crate) message: String,
    pub(crate) message_expression: String,
    pub(crate) reason: Option<String>,
    pub(crate) field_path: String,
    pub(crate) optional_old_self: Option<bool>,
}

impl RuleSpec {
    /// Reads an entry; fields of the wrong JSON type read as unset (the static checks report them).
    pub(crate) fn of(raw: &Value) -> Self {
        let text = |k: &str| raw.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        RuleSpec {
            rule: text("rule"),
            message: text("message"),
            message_expression: text("messageExpression"),
            reason: raw.get("reason").and_then(Value::as_str).map(str::to_owned),
            field_path: text("fieldPath"),
            optional_old_self: raw.get("optionalOldSelf").and_then(Value::as_bool),
        }
    }

    /// The entry as Go's `%#v` prints an `apiextensions.ValidationRule` (the value of upstream's
    /// compilation errors). Go prints a set pointer as its address; a fixed one stands in.
    pub(crate) fn go_repr(&self) -> String {
        let pointer = |set: bool, ty: &str| {
            if set {
                format!("({ty})(0xc000000000)")
            } else {
                format!("({ty})(nil)")
            }
        };
        format!(
            "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{}, FieldPath:{}, OptionalOldSelf:{}}}",
            q(&self.rule),
            q(&self.message),
            q(&self.message_expression),
            pointer(
                self.reason.is_some(),
                "*apiextensions.FieldValueErrorReason"
            ),
            q(&self.field_path),
            pointer(self.optional_old_self.is_some(), "*bool"),
        )
    }

    /// `ruleErrorString`: the message if any, else the rule.
    fn error_string(&self) -> &str {
        if self.message.is_empty() {
            self.rule.trim()
        } else {
            self.message.trim()
        }
    }

    /// `ruleMessageOrDefault`.
    fn message_or_default(&self) -> String {
        if self.message.is_empty() {
            format!("failed rule: {}", self.error_string())
        } else {
            self.message.trim().to_owned()
        }
    }
}

/// A compiled expression and whether it refers to `oldSelf`.
struct Expression {
    program: Program,
    uses_old_self: bool,
}

/// Compiles one expression (a rule or a messageExpression): a syntax error or an undeclared
/// identifier gives cel-go's issue text (`ERROR: <input>:1:9: Syntax error: ...` with the
/// source line and a caret).
fn compile_expression(source: &str) -> Result<Expression, String> {
    compile_in(source, &CRD_VARIABLES)
}

/// Compiles `source` where `variables` (and the type names) are the declared identifiers.
fn compile_in(source: &str, variables: &[&str]) -> Result<Expression, String> {
    let env = library::env().map_err(|e| format!("rule compiler initialization error: {e}"))?;
    let program = env
        .compile(source)
        .map_err(|e| e.to_string().replace("\n| ", "\n | "))?;
    let mut check = RefCheck {
        undeclared: Vec::new(),
        old_self: false,
        variables,
    };
    check.walk(program.expression(), &mut Vec::new());
    if let Some(id) = check.undeclared.first() {
        let name = &id.1;
        let offset = program
            .source_info()
            .offset_for(id.0)
            .map_or(0, |(start, _)| start as usize);
        return Err(issue(
            source,
            offset,
            &format!("undeclared reference to '{name}' (in container '')"),
        ));
    }
    Ok(Expression {
        program,
        uses_old_self: check.old_self,
    })
}

/// cel-go's `Error.ToDisplayString`: position (line, column from 1), message, the line and a caret.
fn issue(source: &str, offset: usize, message: &str) -> String {
    let before: String = source.chars().take(offset).collect();
    let line_no = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
    let line = source.lines().nth(line_no - 1).unwrap_or("");
    format!(
        "ERROR: <input>:{line_no}:{}: {message}\n | {}\n | {}^",
        column + 1,
        line.replace('\t', " "),
        ".".repeat(column)
    )
}

/// The variables of a CRD rule.
const CRD_VARIABLES: [&str; 2] = ["self", "oldSelf"];

/// Names any expression may use without declaring them: the type names.
const TYPE_NAMES: [&str; 12] = [
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
    "optional_type",
];

/// Finds identifiers that are neither variables, comprehension variables nor type names, and
/// whether `oldSelf` is used (cel-go's checker does both from its reference map).
struct RefCheck<'a> {
    undeclared: Vec<(u64, String)>,
    old_self: bool,
    /// The declared variables.
    variables: &'a [&'a str],
}

impl RefCheck<'_> {
    fn walk(&mut self, e: &IdedExpr, scope: &mut Vec<String>) {
        match &e.expr {
            Expr::Ident(name) => {
                if scope.iter().any(|s| s == name) {
                    return;
                }
                if !self.variables.contains(&name.as_str()) && !TYPE_NAMES.contains(&name.as_str())
                {
                    self.undeclared.push((e.id, name.clone()));
                } else if name == "oldSelf" {
                    self.old_self = true;
                }
            }
            Expr::Call(call) => {
                if let Some(target) = &call.target {
                    // `optional.of(x)`, `strings.quote(x)`: a namespace, not a variable.
                    let namespace = matches!(&target.expr, Expr::Ident(n)
                        if !scope.contains(n) && ["optional", "strings", "math"].contains(&n.as_str()));
                    if !namespace {
                        self.walk(target, scope);
                    }
                }
                for a in &call.args {
                    self.walk(a, scope);
                }
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range, scope);
                self.walk(&c.accu_init, scope);
                let depth = scope.len();
                scope.push(c.iter_var.clone());
                if let Some(v) = &c.iter_var2 {
                    scope.push(v.clone());
                }
                scope.push(c.accu_var.clone());
                self.walk(&c.loop_cond, scope);
                self.walk(&c.loop_step, scope);
                self.walk(&c.result, scope);
                scope.truncate(depth);
            }
            Expr::List(l) => {
                for x in &l.elements {
                    self.walk(x, scope);
                }
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.walk(&me.key, scope);
                        self.walk(&me.value, scope);
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.walk(&f.value, scope);
                    }
                }
            }
            Expr::Select(s) => self.walk(&s.operand, scope),
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }
}

/// What the CRD-time checks of one rule find (`validation.go`'s CEL part).
pub(crate) enum RuleProblem {
    /// The rule does not compile: the detail (`compilation failed: ...`).
    Rule(String),
    /// The messageExpression does not compile: the detail.
    MessageExpression(String),
}

/// A compiled rule, and whether it uses `oldSelf` (None when the rule is empty).
pub(crate) fn check_rule(spec: &RuleSpec) -> Result<Option<bool>, RuleProblem> {
    if spec.rule.trim().is_empty() {
        return Ok(None);
    }
    let rule = compile_expression(&spec.rule)
        .map_err(|e| RuleProblem::Rule(with_prefix("compilation failed: ", e)))?;
    if !spec.message_expression.is_empty() {
        compile_expression(&spec.message_expression).map_err(|e| {
            RuleProblem::MessageExpression(with_prefix("messageExpression compilation failed: ", e))
        })?;
    }
    Ok(Some(rule.uses_old_self))
}

/// Initialization errors are reported as they are, compile errors after `prefix`.
fn with_prefix(prefix: &str, e: String) -> String {
    if e.starts_with("rule compiler initialization error") {
        e
    } else {
        format!("{prefix}{e}")
    }
}

/// One path step of a rule's `fieldPath`: a property, or a key of additionalProperties.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// `.name` of a declared property.
    Child(String),
    /// `['key']` or `.key` of a map.
    Key(String),
}

/// `ValidFieldPath`: the steps of `json_path` below `schema`, or why it is not a valid path.
pub(crate) fn field_path_steps(json_path: &str, schema: &Structural) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut node = schema;
    let chars: Vec<char> = json_path.chars().collect();
    let mut i = 0;
    let mut step = |name: String, node: &mut &Structural| -> Result<(), String> {
        if !node.properties.is_empty() {
            let Some(next) = node.properties.get(&name) else {
                return Err("does not refer to a valid field".into());
            };
            *node = next;
            steps.push(Step::Child(name));
        } else if let Some(ap) = &node.additional_properties {
            let Some(next) = ap.schema() else {
                return Err("does not refer to a valid field".into());
            };
            *node = next;
            steps.push(Step::Key(name));
        } else {
            return Err("does not refer to a valid field".into());
        }
        Ok(())
    };
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && !matches!(chars[end], '.' | '[' | ']') {
                    end += 1;
                }
                if end == start {
                    return Err("unexpected end of JSON path".into());
                }
                step(chars[start..end].iter().collect(), &mut node)?;
                i = end;
            }
            '[' => {
                if chars.get(i + 1) != Some(&'\'') {
                    return Err("expected single quoted string".into());
                }
                let mut end = i + 2;
                while end < chars.len() && !(chars[end] == '\'' && chars[end - 1] != '\\') {
                    end += 1;
                }
                if end >= chars.len() || chars.get(end + 1) != Some(&']') {
                    return Err("unexpected end of JSON path".into());
                }
                let quoted: String = chars[i + 2..end].iter().collect();
                step(unescape(&quoted)?, &mut node)?;
                i = end + 2;
            }
            c => return Err(format!("expected [ or . but got: {c}")),
        }
    }
    Ok(steps)
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match it.next() {
            Some('a') => '\u{7}',
            Some('b') => '\u{8}',
            Some('f') => '\u{c}',
            Some('n') => '\n',
            Some('r') => '\r',
            Some('t') => '\t',
            Some('v') => '\u{b}',
            Some('\'') => '\'',
            Some('\\') => '\\',
            other => {
                return Err(format!(
                    "invalid escape char \\{}",
                    other.map(String::from).unwrap_or_default()
                ));
            }
        });
    }
    Ok(out)
}

/// The steps as `field.Path.String()` prints them (`foo.bar`, `foo[key]`).
fn steps_text(steps: &[Step]) -> String {
    let mut out = String::new();
    for s in steps {
        match s {
            Step::Child(n) if out.is_empty() => out.push_str(n),
            Step::Child(n) => out = child(&out, n),
            Step::Key(k) => out = key(&out, k),
        }
    }
    out
}

/// A rule ready to run.
struct Compiled {
    spec: RuleSpec,
    /// None for an empty rule or one that did not compile (its error is kept instead).
    rule: Result<Option<Expression>, String>,
    message: Option<Expression>,
    /// The normalized `fieldPath`, if set and valid.
    field_path: Option<String>,
}

/// The rules of one schema node and of the nodes below it that have any.
#[derive(Default)]
struct Node {
    rules: Vec<Compiled>,
    properties: BTreeMap<String, Node>,
    additional: Option<Box<Node>>,
    items: Option<Box<Node>>,
}

impl Node {
    fn build(s: &Structural) -> Self {
        let rules = s
            .validations
            .iter()
            .map(|raw| {
                let spec = RuleSpec::of(raw);
                let rule = if spec.rule.trim().is_empty() {
                    Ok(None)
                } else {
                    compile_expression(&spec.rule).map(Some)
                };
                let message = (!spec.message_expression.is_empty())
                    .then(|| compile_expression(&spec.message_expression).ok())
                    .flatten();
                let field_path = (!spec.field_path.is_empty())
                    .then(|| field_path_steps(&spec.field_path, s).ok())
                    .flatten()
                    .map(|steps| steps_text(&steps));
                Compiled {
                    spec,
                    rule,
                    message,
                    field_path,
                }
            })
            .collect();
        let keep = |n: Node| (!n.is_empty()).then_some(n);
        Node {
            rules,
            properties: s
                .properties
                .iter()
                .filter_map(|(k, p)| keep(Node::build(p)).map(|n| (k.clone(), n)))
                .collect(),
            additional: s
                .additional_properties
                .as_ref()
                .and_then(|ap| ap.schema())
                .and_then(|sub| keep(Node::build(sub)))
                .map(Box::new),
            items: s
                .items
                .as_deref()
                .and_then(|sub| keep(Node::build(sub)))
                .map(Box::new),
        }
    }

    fn is_empty(&self) -> bool {
        self.rules.is_empty()
            && self.properties.is_empty()
            && self.additional.is_none()
            && self.items.is_none()
    }
}

/// Every compiled `x-kubernetes-validations` rule of one schema, built once per served version.
pub struct Rules {
    root: Node,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("empty", &self.root.is_empty())
            .finish()
    }
}

impl Rules {
    /// Compiles every rule of `schema` (rules that do not compile report it when they run).
    pub fn compile(schema: &Structural) -> Self {
        Rules {
            root: Node::build(schema),
        }
    }

    /// Whether the schema has no rules at all.
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Runs the rules over `object` (validated, pruned and defaulted), with `old` on update.
    /// Causes have upstream's fields (`<nil>` for rules at the root) and messages.
    pub fn validate(&self, schema: &Structural, object: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut run = Run {
            errs: Errs::default(),
            budget: RUNTIME_BUDGET,
            stopped: false,
        };
        run.node(&self.root, schema, None, object, old, true);
        run.errs.0
    }
}

/// One validation pass: the causes so far and the cost budget left.
struct Run {
    errs: Errs,
    budget: u64,
    stopped: bool,
}

/// A field path; None is upstream's nil path at the root (printed `<nil>`).
fn shown(path: Option<&str>) -> &str {
    path.unwrap_or("<nil>")
}

fn sub_path(path: Option<&str>, name: &str) -> String {
    match path {
        Some(p) => child(p, name),
        None => name.to_owned(),
    }
}

impl Run {
    fn node(
        &mut self,
        n: &Node,
        s: &Structural,
        path: Option<&str>,
        v: &Value,
        old: Option<&Value>,
        root: bool,
    ) {
        // Only non-null values are validated (a rule on a nullable node sees no nulls).
        if v.is_null() || self.stopped {
            return;
        }
        let old = old.filter(|o| !o.is_null());
        if !n.rules.is_empty() {
            self.expressions(n, s, path, v, old, root);
        }
        match v {
            Value::Array(items) => {
                if let (Some(child_node), Some(item_schema)) = (&n.items, &s.items) {
                    let old_items = old.and_then(Value::as_array);
                    for (i, item) in items.iter().enumerate() {
                        let old_item = old_items.and_then(|o| correlate(s, o, item));
                        let p = idx(shown(path), i);
                        self.node(child_node, item_schema, Some(&p), item, old_item, false);
                    }
                }
            }
            Value::Object(map) => {
                // granular (the default) and atomic maps correlate their entries by key.
                let correlatable =
                    matches!(s.x_map_type.as_deref(), None | Some("granular" | "atomic"));
                let old_of = |k: &str| {
                    if correlatable {
                        old.and_then(|o| o.get(k))
                    } else {
                        None
                    }
                };
                if let (Some(ap_node), Some(ap)) = (
                    &n.additional,
                    s.additional_properties.as_ref().and_then(|a| a.schema()),
                ) {
                    for (k, item) in map {
                        let p = key(shown(path), k);
                        self.node(ap_node, ap, Some(&p), item, old_of(k), false);
                    }
                }
                for (k, item) in map {
                    if let (Some(prop_node), Some(prop)) =
                        (n.properties.get(k), s.properties.get(k))
                    {
                        let p = sub_path(path, k);
                        self.node(prop_node, prop, Some(&p), item, old_of(k), false);
                    }
                }
            }
            _ => {}
        }
    }

    fn stop(&mut self, path: Option<&str>, s: &Structural, detail: &str) {
        self.errs.invalid(shown(path), &q(&s.type_), detail);
        self.stopped = true;
    }

    /// `validateExpressions`: every rule of one node.
    fn expressions(
        &mut self,
        n: &Node,
        s: &Structural,
        path: Option<&str>,
        v: &Value,
        old: Option<&Value>,
        root: bool,
    ) {
        let Ok(env) = library::env() else {
            let detail = library::env().err().unwrap_or_default();
            self.errs.invalid(
                shown(path),
                &q(&s.type_),
                &format!("rule compiler initialization error: {detail}"),
            );
            return;
        };
        let self_value = value::to_cel(v, Some(s), root);
        let old_value = old.map(|o| value::to_cel(o, Some(s), root));
        let size = value::size(v).max(old.map_or(0, value::size));
        for c in &n.rules {
            let spec = &c.spec;
            let expr = match &c.rule {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(e) => {
                    self.errs.invalid(
                        shown(path),
                        &q(&s.type_),
                        &format!("rule compile error: {e}"),
                    );
                    continue;
                }
            };
            let optional = spec.optional_old_self == Some(true);
            // Transition rules run only with an old value, unless oldSelf is optional.
            if expr.uses_old_self && old_value.is_none() && !optional {
                continue;
            }
            let cost = estimate(expr.program.expression(), size);
            if cost > PER_CALL_LIMIT {
                self.stop(
                    path,
                    s,
                    &format!(
                        "'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: {}",
                        spec.error_string()
                    ),
                );
                return;
            }
            if cost > self.budget {
                self.stop(
                    path,
                    s,
                    "validation failed due to running out of cost budget, no further validation rules will be run",
                );
                return;
            }
            self.budget -= cost;
            let mut ctx = Context::with_env(Arc::clone(&env));
            bind(&mut ctx, "self", self_value.clone());
            if optional {
                let wrapped = match &old_value {
                    Some(o) => OptionalValue::of(o.clone()),
                    None => OptionalValue::none(),
                };
                bind(&mut ctx, "oldSelf", ::cel::Value::Opaque(Arc::new(wrapped)));
            } else if let Some(o) = &old_value {
                bind(&mut ctx, "oldSelf", o.clone());
            }
            let result = expr.program.execute(&ctx);
            let passed = match result {
                Ok(::cel::Value::Bool(b)) => b,
                // A rule that is not a bool fails (upstream's checker refuses it up front).
                Ok(_) => false,
                Err(e) => {
                    let detail = runtime_error(&e, spec.error_string());
                    self.errs.invalid(shown(path), &q(&s.type_), &detail);
                    continue;
                }
            };
            if passed {
                continue;
            }
            // Ratcheting: a rule not about the transition fails an unchanged value only as a
            // warning (upstream's CRDValidationRatcheting, on by default).
            if !expr.uses_old_self && old.is_some_and(|o| o == v) {
                continue;
            }
            let field = match &c.field_path {
                Some(fp) => sub_path(path, fp),
                None => shown(path).to_owned(),
            };
            let message = match &c.message {
                Some(m) => self.message(m, &env, &self_value, old_value.as_ref(), size, spec),
                None => spec.message_or_default(),
            };
            let value = q(&s.type_);
            match spec.reason.as_deref() {
                Some("FieldValueForbidden") => self.errs.forbidden(&field, &message),
                Some("FieldValueRequired") => self.errs.required(&field, &message),
                Some("FieldValueDuplicate") => self.errs.duplicate(&field, &value),
                _ => self.errs.invalid(&field, &value, &message),
            }
        }
    }

    /// `evalMessageExpression`; a failure falls back to the rule's message.
    fn message(
        &mut self,
        m: &Expression,
        env: &Arc<::cel::Env>,
        self_value: &::cel::Value,
        old_value: Option<&::cel::Value>,
        size: u64,
        spec: &RuleSpec,
    ) -> String {
        let cost = estimate(m.program.expression(), size);
        if cost > PER_CALL_LIMIT || cost > self.budget {
            return spec.message_or_default();
        }
        self.budget -= cost;
        let mut ctx = Context::with_env(Arc::clone(env));
        bind(&mut ctx, "self", self_value.clone());
        if let Some(o) = old_value {
            bind(&mut ctx, "oldSelf", o.clone());
        }
        match m.program.execute(&ctx) {
            Ok(::cel::Value::String(text)) => {
                let trimmed = text.trim();
                if trimmed.is_empty() || trimmed.len() > MAX_MESSAGE_BYTES || trimmed.contains('\n')
                {
                    spec.message_or_default()
                } else {
                    trimmed.to_owned()
                }
            }
            _ => spec.message_or_default(),
        }
    }
}

fn bind(ctx: &mut Context<'_, '_>, name: &str, v: ::cel::Value) {
    // Our values are data (no functions), which always convert.
    if let Ok(boxed) = Box::<dyn ::cel::common::value::Val>::try_from(v) {
        ctx.add_variable_as_val(name, boxed);
    }
}

/// The old item correlated with `item`: only items of `x-kubernetes-list-type: map` lists
/// correlate, by their keys (upstream's `makeMapList`).
fn correlate<'a>(s: &Structural, old: &'a [Value], item: &Value) -> Option<&'a Value> {
    if s.x_list_type.as_deref() != Some("map") || s.x_list_map_keys.is_empty() {
        return None;
    }
    let keys = |x: &Value| -> Vec<Value> {
        s.x_list_map_keys
            .iter()
            .map(|k| x.get(k).cloned().unwrap_or(Value::Null))
            .collect()
    };
    let want = keys(item);
    old.iter().find(|o| keys(o) == want)
}

/// Upstream's message for a rule that failed to run.
fn runtime_error(e: &ExecutionError, rule: &str) -> String {
    if is_overload_error(e) {
        return format!(
            "'no such overload': call arguments did not match a supported operator, function or macro signature for rule: {rule}"
        );
    }
    format!("{} evaluating rule: {rule}", error_text(e))
}

/// Whether `e` is one of the errors cel-go reports as "no such overload".
fn is_overload_error(e: &ExecutionError) -> bool {
    matches!(
        e,
        ExecutionError::NoSuchOverload(_)
            | ExecutionError::UnsupportedBinaryOperator(..)
            | ExecutionError::ValuesNotComparable(..)
            | ExecutionError::UnexpectedType { .. }
            | ExecutionError::UnsupportedTargetType { .. }
            | ExecutionError::NotSupportedAsMethod { .. }
            | ExecutionError::UnsupportedIndex(..)
            | ExecutionError::UnsupportedKeyType(..)
    )
}

/// cel-go's text of an evaluation error (`no such key: x`, `no such overload`).
fn error_text(e: &ExecutionError) -> String {
    match e {
        _ if is_overload_error(e) => "no such overload".to_owned(),
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::DivisionByZero(_) => "division by zero".to_owned(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_owned(),
        ExecutionError::Overflow(_, ::cel::Value::UInt(_), _) => {
            "unsigned integer overflow".to_owned()
        }
        ExecutionError::Overflow(..) => "integer overflow".to_owned(),
        ExecutionError::IndexOutOfBounds(i) => match i {
            ::cel::Value::Int(n) => format!("index out of bounds: {n}"),
            other => format!("index out of bounds: {other:?}"),
        },
        ExecutionError::UndeclaredReference(n) => format!("no such attribute(s): {n}"),
        ExecutionError::FunctionError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// An upper bound of what evaluating `e` costs when no list, map or string it can range over is
/// larger than `size`: one unit per node, and a comprehension's loop `size` times over. Upstream
/// counts actual cost while running; cel-rust cannot, so a runaway rule (nested loops over large
/// data) is refused before it starts.
pub(crate) fn estimate(e: &IdedExpr, size: u64) -> u64 {
    let size = size.max(1);
    let sum = |items: &mut dyn Iterator<Item = &IdedExpr>| {
        items.fold(1u64, |acc, x| acc.saturating_add(estimate(x, size)))
    };
    match &e.expr {
        Expr::Comprehension(c) => {
            let body = estimate(&c.loop_cond, size).saturating_add(estimate(&c.loop_step, size));
            estimate(&c.iter_range, size)
                .saturating_add(estimate(&c.accu_init, size))
                .saturating_add(size.saturating_mul(body))
                .saturating_add(estimate(&c.result, size))
        }
        Expr::Call(call) => sum(&mut call.target.iter().map(|t| &**t).chain(call.args.iter())),
        Expr::List(l) => sum(&mut l.elements.iter()),
        Expr::Map(m) => sum(&mut m.entries.iter().flat_map(|en| match &en.expr {
            EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
            EntryExpr::StructField(f) => vec![&f.value],
        })),
        Expr::Struct(st) => sum(&mut st.entries.iter().flat_map(|en| match &en.expr {
            EntryExpr::MapEntry(me) => vec![&me.key, &me.value],
            EntryExpr::StructField(f) => vec![&f.value],
        })),
        Expr::Select(s) => estimate(&s.operand, size).saturating_add(1),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => 1,
    }
}

/// An expression compiled against variables its caller names, outside any CRD schema (the
/// matchConditions of admission webhooks): same environment, library and cost bound as rules.
pub struct Standalone {
    expression: Expression,
    source: String,
}

impl std::fmt::Debug for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standalone")
            .field("source", &self.source)
            .finish()
    }
}

impl Standalone {
    /// Compiles `source` with `variables` declared; the error is upstream's detail
    /// (`compilation failed: ERROR: <input>:1:5: ...`).
    pub fn compile(source: &str, variables: &[&str]) -> Result<Self, String> {
        let expression =
            compile_in(source, variables).map_err(|e| with_prefix("compilation failed: ", e))?;
        Ok(Self {
            expression,
            source: source.to_owned(),
        })
    }

    /// The parsed expression, for a caller's own static checks.
    pub fn ast(&self) -> &IdedExpr {
        self.expression.program.expression()
    }

    /// cel-go's issue text (`ERROR: <input>:line:column: message`, the line, a caret) at the
    /// node `id` of [`Self::ast`].
    pub fn issue(&self, id: u64, message: &str) -> String {
        let offset = self
            .expression
            .program
            .source_info()
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize);
        issue(&self.source, offset, message)
    }

    /// An upper bound of what a run costs over data no larger than `size` (see [`estimate`]).
    pub fn cost(&self, size: u64) -> u64 {
        estimate(self.ast(), size)
    }

    /// Runs the expression with `variables` bound (a name left out is unbound: using it is
    /// an error); the error is cel-go's text (`no such key: annotations`).
    pub fn evaluate(&self, variables: &[(&str, ::cel::Value)]) -> Result<::cel::Value, String> {
        let env = library::env().map_err(|e| format!("rule compiler initialization error: {e}"))?;
        let mut ctx = Context::with_env(env);
        for (name, value) in variables {
            bind(&mut ctx, name, value.clone());
        }
        self.expression
            .program
            .execute(&ctx)
            .map_err(|e| error_text(&e))
    }
}

/// A JSON value as CEL sees it without a schema (every field shown, numbers as int or double).
pub fn json_to_cel(v: &Value) -> ::cel::Value {
    value::to_cel(v, None, false)
}

/// The largest list, map or string in `v` (the `size` of [`Standalone::cost`]).
pub fn json_size(v: &Value) -> u64 {
    value::size(v)
}
