//! Validation of values against a schema, as kube-openapi's `pkg/validation/validate`
//! (`schema.go`, `type.go`, `validator.go`, `values.go`, `object_validator.go`,
//! `slice_validator.go`, `schema_props.go`, messages from `pkg/validation/errors/schema.go`,
//! kube-openapi at c8a335a, the version kube-apiserver 1.33 vendors), converted to field errors
//! as apiextensions-apiserver's `kubeOpenAPIResultToFieldErrors` does; then the embedded
//! resources' TypeMeta (`schema/objectmeta/validation.go`) and list-type invariants
//! (`schema/listtype/validation.go`).
//!
//! Message forms follow apimachinery v0.33.0 `field/errors.go`: a maxLength failure becomes
//! `Too long: may not be more than N bytes` (TooLong omits the value); maxItems and
//! maxProperties become `Too many: <n>: must have at most N items`; everything else is
//! `Invalid value: <value>: <kube-openapi message>`.

use serde_json::Value;

use super::formats;
use super::gofmt::{go_float, go_json, go_v_list, go_value};
use super::pattern::pattern_matches;
use super::{Structural, cause};
use crate::apiserver::machinery::field::{Cause, CauseReason, child, idx, key, q};
use crate::apiserver::machinery::names::is_dns1035_label;

/// kube-openapi's error codes, as far as the conversion to field errors distinguishes them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Code {
    InvalidType,
    Required,
    TooLong,
    Enum,
    MaxItems,
    TooManyProperties,
    /// Every other `*errors.Validation` (converted to `Invalid value`).
    Other,
    /// A plain `errors.New` (anyOf/oneOf/allOf/not): converted at the root path with value "".
    Composite,
}

/// One kube-openapi error: `name` is its `Name` (the dotted path), `value` its `Value` (Go nil
/// is JSON null), `valid` its `Valid` limit, `values` the enum's allowed values.
#[derive(Debug, Clone)]
struct OErr {
    code: Code,
    name: String,
    value: Value,
    valid: Option<i64>,
    values: Vec<Value>,
    msg: String,
}

/// A kube-openapi `Result`: errors (unique by message) and the match count anyOf/oneOf use to
/// pick the "best" failing alternative.
#[derive(Debug, Default)]
struct Res {
    errs: Vec<OErr>,
    count: usize,
}

impl Res {
    fn add(&mut self, e: OErr) {
        if !self.errs.iter().any(|x| x.msg == e.msg) {
            self.errs.push(e);
        }
    }
    fn merge(&mut self, other: Res) {
        for e in other.errs {
            self.add(e);
        }
        self.count += other.count;
    }
    fn is_valid(&self) -> bool {
        self.errs.is_empty()
    }
}

fn err(code: Code, name: &str, value: Value, msg: String) -> OErr {
    OErr {
        code,
        name: name.to_string(),
        value,
        valid: None,
        values: Vec::new(),
        msg,
    }
}

/// `"%s in %s ..."` with `in` = "body" (an empty name leaves a leading space, as upstream).
fn in_body(name: &str, rest: &str) -> String {
    format!("{name} in body {rest}")
}

/// Validates a custom object: schema, embedded TypeMeta, list-type invariants.
pub(super) fn validate_object(s: &Structural, object: &Value) -> Vec<Cause> {
    let res = validate_node(s, "", object, true);
    let mut out = to_causes(res.errs, None);
    objectmeta(&mut out, "", object, s, true);
    list_types(&mut out, "", s, object);
    out
}

/// Validates a `default` value against its own schema node, causes below `base` (".default").
pub(super) fn validate_default(s: &Structural, value: &Value, base: &str) -> Vec<Cause> {
    let res = validate_node(s, "", value, false);
    to_causes(res.errs, Some(base))
}

/// `kubeOpenAPIResultToFieldErrors`: `base` None is a nil path (printed `<nil>`).
fn to_causes(errs: Vec<OErr>, base: Option<&str>) -> Vec<Cause> {
    let root = base.unwrap_or("<nil>");
    let mut out = Vec::new();
    for e in errs {
        if e.code == Code::Composite {
            out.push(cause(CauseReason::Invalid, root, Some(&q("")), &e.msg));
            continue;
        }
        let name = e.name.strip_prefix('.').unwrap_or(&e.name);
        let field = if e.name.is_empty() || e.name == "." {
            root.to_string()
        } else {
            match base {
                Some(b) => child(b, name),
                None => name.to_string(),
            }
        };
        // A nil Value becomes "" everywhere except in NotSupported.
        let or_empty = |v: &Value| {
            if v.is_null() { q("") } else { go_value(v) }
        };
        let c = match e.code {
            Code::Required => cause(CauseReason::Required, &field, None, ""),
            Code::Enum => {
                let allowed: Vec<String> = e
                    .values
                    .iter()
                    .map(|v| match v {
                        Value::String(s) => q(s),
                        other => q(&go_json(other)),
                    })
                    .collect();
                let detail = if allowed.is_empty() {
                    String::new()
                } else {
                    format!("supported values: {}", allowed.join(", "))
                };
                cause(
                    CauseReason::NotSupported,
                    &field,
                    Some(&go_value(&e.value)),
                    &detail,
                )
            }
            Code::TooLong => {
                let detail = match e.valid {
                    Some(n) if n >= 0 => format!("may not be more than {n} bytes"),
                    _ => "value is too long".to_string(),
                };
                cause(CauseReason::TooLong, &field, None, &detail)
            }
            Code::MaxItems | Code::TooManyProperties => {
                let detail = match e.valid {
                    Some(n) if n >= 0 => format!("must have at most {n} items"),
                    _ => "has too many items".to_string(),
                };
                let actual = e.value.as_i64().filter(|n| *n >= 0).map(|n| n.to_string());
                cause(CauseReason::TooMany, &field, actual.as_deref(), &detail)
            }
            Code::InvalidType => cause(
                CauseReason::TypeInvalid,
                &field,
                Some(&or_empty(&e.value)),
                &e.msg,
            ),
            Code::Other | Code::Composite => cause(
                CauseReason::Invalid,
                &field,
                Some(&or_empty(&e.value)),
                &e.msg,
            ),
        };
        out.push(c);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// SchemaValidator
// ---------------------------------------------------------------------------------------------

/// The JSON type kube-openapi's `schemaInfoForType` sees after Kubernetes' JSON decoding
/// (integers that fit int64 are int64, other numbers float64).
fn sch_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// `SchemaValidator.Validate`. `root` marks the object root, whose apiVersion/kind are not
/// the schema's business and whose metadata is only checked for name/generateName.
fn validate_node(s: &Structural, path: &str, data: &Value, root: bool) -> Res {
    let mut r = Res::default();
    if data.is_null() {
        r.merge(type_check(s, path, data));
        if let Some(e) = enum_check(s, path, data) {
            r.add(e);
        }
        return r;
    }
    // type, schemaProps, string, format, number, slice, common, object: each that applies
    // is merged and counted once more, then the whole once.
    if !s.types().is_empty() || !s.format.is_empty() {
        r.merge(type_check(s, path, data));
        r.count += 1;
    }
    r.merge(props_check(s, path, data));
    r.count += 1;
    if let Value::String(st) = data {
        if let Some(e) = string_check(s, path, st) {
            r.add(e);
        }
        r.count += 1;
        if formats::known(&s.format) {
            if !formats::validates(&s.format, st) {
                r.add(err(
                    Code::InvalidType,
                    path,
                    data.clone(),
                    in_body(path, &format!("must be of type {}: {}", s.format, q(st))),
                ));
            }
            r.count += 1;
        }
    }
    if let Value::Number(_) = data {
        r.merge(number_check(s, path, data));
        r.count += 1;
    }
    if let Value::Array(a) = data {
        r.merge(slice_check(s, path, a));
        r.count += 1;
    }
    if let Some(e) = enum_check(s, path, data) {
        r.add(e);
    }
    r.count += 1;
    if let Value::Object(m) = data {
        r.merge(object_check(s, path, m, root));
        r.count += 1;
    }
    r.count += 1;
    r
}

/// `typeValidator.Validate`.
fn type_check(s: &Structural, path: &str, data: &Value) -> Res {
    let types = s.types();
    let fail = |expected: &str, got: &str| Res {
        errs: vec![err(
            Code::InvalidType,
            path,
            Value::String(got.to_string()),
            in_body(path, &format!("must be of type {expected}: {}", q(got))),
        )],
        count: 0,
    };
    let ok = Res {
        errs: Vec::new(),
        count: 1,
    };
    if data.is_null() {
        if !types.is_empty() && !types.contains(&"null") && !s.nullable {
            return fail(&types.join(","), "null");
        }
        return ok;
    }
    let st = sch_type(data);
    let data_format = match data {
        Value::Number(n) if n.is_i64() => "int64",
        Value::Number(_) => "float64",
        _ => "",
    };
    let is_float_int =
        st == "number" && data.as_f64().is_some_and(is_json_integer) && types.contains(&"integer");
    let is_int_float = st == "integer" && types.contains(&"number");
    let is_scalar_kind = !matches!(data, Value::String(_) | Value::Array(_));
    if is_scalar_kind
        && !s.format.is_empty()
        && !(types.contains(&st) || data_format == s.format || is_float_int || is_int_float)
    {
        return fail(&s.format, data_format);
    }
    if !(types.contains(&"number")
        || types.contains(&"integer")
        || s.format.is_empty()
        || is_scalar_kind)
    {
        return ok;
    }
    if !(types.contains(&st) || is_float_int || is_int_float) {
        return fail(&types.join(","), st);
    }
    ok
}

/// `swag.IsFloat64AJSONInteger`: integral and exactly representable.
fn is_json_integer(f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0
}

/// `basicCommonValidator`: enum.
fn enum_check(s: &Structural, path: &str, data: &Value) -> Option<OErr> {
    let values = s.enum_values.as_ref().filter(|v| !v.is_empty())?;
    if !data.is_null() && values.iter().any(|v| enum_equal(data, v)) {
        return None;
    }
    let mut e = err(
        Code::Enum,
        path,
        data.clone(),
        in_body(path, &format!("should be one of {}", go_v_list(values))),
    );
    e.values = values.clone();
    Some(e)
}

/// `reflect.DeepEqual`, or equal after Go's numeric conversion to the enum value's type.
fn enum_equal(data: &Value, allowed: &Value) -> bool {
    if data == allowed {
        return true;
    }
    match (data, allowed) {
        (Value::Number(d), Value::Number(a)) => match (a.as_i64(), d.as_f64()) {
            // float64 -> int64 truncates.
            (Some(ai), Some(df)) if !d.is_i64() => df.trunc() == ai as f64,
            _ => a.as_f64().is_some_and(|af| d.as_f64() == Some(af)),
        },
        _ => false,
    }
}

/// `stringValidator`: maxLength, then minLength, then pattern; the first failure only.
fn string_check(s: &Structural, path: &str, st: &str) -> Option<OErr> {
    let len = st.chars().count() as i64;
    let data = Value::String(st.to_string());
    if let Some(max) = s.max_length.filter(|m| len > *m) {
        let mut e = err(
            Code::TooLong,
            path,
            data,
            in_body(path, &format!("should be at most {max} chars long")),
        );
        e.valid = Some(max);
        return Some(e);
    }
    if let Some(min) = s.min_length.filter(|m| len < *m) {
        return Some(err(
            Code::Other,
            path,
            data,
            in_body(path, &format!("should be at least {min} chars long")),
        ));
    }
    if !s.pattern.is_empty() {
        match pattern_matches(&s.pattern, st) {
            Ok(true) => {}
            Ok(false) => {
                return Some(err(
                    Code::Other,
                    path,
                    data,
                    in_body(path, &format!("should match '{}'", s.pattern)),
                ));
            }
            Err(msg) => {
                return Some(err(
                    Code::Other,
                    path,
                    data,
                    in_body(
                        path,
                        &format!(
                            "should match '{}, but pattern is invalid: {msg}'",
                            s.pattern
                        ),
                    ),
                ));
            }
        }
    }
    None
}

/// `numberValidator`: multipleOf, minimum, maximum, on int64 or float64 as the value decodes.
fn number_check(s: &Structural, path: &str, data: &Value) -> Res {
    let mut r = Res {
        errs: Vec::new(),
        count: 1,
    };
    let int = data.as_i64().filter(|_| data.is_i64());
    let float = data.as_f64().unwrap_or_default();
    if let Some(factor) = s.multiple_of {
        if let Some(i) = int {
            // Go converts the factor to int64 for an int64 value (0.5 becomes 0).
            let f = factor as i64;
            if f <= 0 {
                r.add(err(
                    Code::Other,
                    path,
                    Value::from(f),
                    format!("factor MultipleOf declared for {path} must be positive: {f}"),
                ));
            } else if i % f != 0 {
                r.add(err(
                    Code::Other,
                    path,
                    data.clone(),
                    in_body(path, &format!("should be a multiple of {f}")),
                ));
            }
        } else if factor <= 0.0 {
            r.add(err(
                Code::Other,
                path,
                Value::from(factor),
                format!(
                    "factor MultipleOf declared for {path} must be positive: {}",
                    go_float(factor)
                ),
            ));
        } else {
            let mult = if factor < 1.0 {
                1.0 / factor * float
            } else {
                float / factor
            };
            if !is_json_integer(mult) {
                r.add(err(
                    Code::Other,
                    path,
                    data.clone(),
                    in_body(
                        path,
                        &format!("should be a multiple of {}", go_float(factor)),
                    ),
                ));
            }
        }
    }
    if let Some(min) = s.minimum {
        let excl = s.exclusive_minimum;
        let (below, shown) = match int {
            Some(i) => {
                let m = min as i64;
                (if excl { i <= m } else { i < m }, m.to_string())
            }
            None => (if excl { float <= min } else { float < min }, go_float(min)),
        };
        if below {
            let op = if excl {
                "greater than"
            } else {
                "greater than or equal to"
            };
            r.add(err(
                Code::Other,
                path,
                data.clone(),
                in_body(path, &format!("should be {op} {shown}")),
            ));
        }
    }
    if let Some(max) = s.maximum {
        let excl = s.exclusive_maximum;
        let (above, shown) = match int {
            Some(i) => {
                let m = max as i64;
                (if excl { i >= m } else { i > m }, m.to_string())
            }
            None => (if excl { float >= max } else { float > max }, go_float(max)),
        };
        if above {
            let op = if excl {
                "less than"
            } else {
                "less than or equal to"
            };
            r.add(err(
                Code::Other,
                path,
                data.clone(),
                in_body(path, &format!("should be {op} {shown}")),
            ));
        }
    }
    r
}

/// `schemaSliceValidator`: items, minItems, maxItems, uniqueItems.
fn slice_check(s: &Structural, path: &str, a: &[Value]) -> Res {
    let mut r = Res::default();
    if let Some(items) = &s.items {
        for (i, v) in a.iter().enumerate() {
            r.merge(validate_node(items, &idx(path, i), v, false));
        }
    }
    let size = a.len() as i64;
    if let Some(min) = s.min_items.filter(|m| size < *m) {
        r.add(err(
            Code::Other,
            path,
            Value::from(size),
            in_body(path, &format!("should have at least {min} items")),
        ));
    }
    if let Some(max) = s.max_items.filter(|m| size > *m) {
        let mut e = err(
            Code::MaxItems,
            path,
            Value::from(size),
            in_body(path, &format!("should have at most {max} items")),
        );
        e.valid = Some(max);
        r.add(e);
    }
    if s.unique_items {
        let dup = a.iter().enumerate().any(|(i, x)| a[..i].contains(x));
        if dup {
            r.add(err(
                Code::Other,
                path,
                Value::Null,
                in_body(path, "shouldn't contain duplicates"),
            ));
        }
    }
    r.count += 1;
    r
}

/// `objectValidator`: min/maxProperties, additionalProperties, properties, required.
fn object_check(s: &Structural, path: &str, m: &serde_json::Map<String, Value>, root: bool) -> Res {
    let mut r = Res::default();
    let n = m.len() as i64;
    if let Some(min) = s.min_properties.filter(|x| n < *x) {
        r.add(err(
            Code::Other,
            path,
            Value::from(n),
            in_body(path, &format!("should have at least {min} properties")),
        ));
    }
    if let Some(max) = s.max_properties.filter(|x| n > *x) {
        let mut e = err(
            Code::TooManyProperties,
            path,
            Value::from(n),
            in_body(path, &format!("should have at most {max} properties")),
        );
        e.valid = Some(max);
        r.add(e);
    }
    let is_meta = |k: &str| root && matches!(k, "apiVersion" | "kind" | "metadata");
    match &s.additional_properties {
        Some(super::AdditionalProperties::Bool(false)) => {
            for k in m
                .keys()
                .filter(|k| !s.properties.contains_key(*k) && !is_meta(k))
            {
                r.add(err(
                    Code::Other,
                    path,
                    Value::String(k.clone()),
                    format!("{path}.{k} in body is a forbidden property"),
                ));
            }
        }
        Some(super::AdditionalProperties::Schema(ap)) => {
            for (k, v) in m
                .iter()
                .filter(|(k, _)| !s.properties.contains_key(*k) && !is_meta(k))
            {
                r.merge(validate_node(ap, &format!("{path}.{k}"), v, false));
            }
        }
        _ => {}
    }
    for (name, ps) in &s.properties {
        let Some(v) = m.get(name) else { continue };
        let rname = child(path, name);
        if root && (name == "apiVersion" || name == "kind") {
            continue;
        }
        if root && name == "metadata" {
            // Only the name/generateName restrictions apply to the object's metadata.
            let mut restricted = serde_json::Map::new();
            if let Some(mm) = v.as_object() {
                for k in ["name", "generateName"] {
                    if let Some(x) = mm.get(k) {
                        restricted.insert(k.to_string(), x.clone());
                    }
                }
            }
            let mut meta_schema = Structural {
                properties: ps.properties.clone(),
                ..Structural::default()
            };
            meta_schema
                .properties
                .retain(|k, _| k == "name" || k == "generateName");
            r.merge(validate_node(
                &meta_schema,
                &rname,
                &Value::Object(restricted),
                false,
            ));
            continue;
        }
        r.merge(validate_node(ps, &rname, v, false));
    }
    for k in &s.required {
        if !m.contains_key(k) {
            r.add(err(
                Code::Required,
                &format!("{path}.{k}"),
                Value::Null,
                in_body(&format!("{path}.{k}"), "is required"),
            ));
        }
    }
    r
}

/// `schemaPropsValidator`: anyOf, oneOf, allOf, not on the same path.
fn props_check(s: &Structural, path: &str, data: &Value) -> Res {
    let mut main = Res::default();
    let composite = |msg: String| err(Code::Composite, "", Value::Null, msg);
    if !s.any_of.is_empty() {
        let mut best: Option<Res> = None;
        let mut first_success: Option<Res> = None;
        for alt in &s.any_of {
            let res = validate_node(alt, path, data, false);
            if res.is_valid() {
                best = None;
                first_success = Some(res);
                break;
            }
            if best.as_ref().is_none_or(|b| res.count > b.count) {
                best = Some(res);
            }
        }
        if first_success.is_none() {
            main.add(composite(format!(
                "{} must validate at least one schema (anyOf)",
                q(path)
            )));
        }
        if let Some(b) = best {
            main.merge(b);
        } else if let Some(f) = first_success {
            main.merge(f);
        }
    }
    if !s.one_of.is_empty() {
        let mut best: Option<Res> = None;
        let mut first_success: Option<Res> = None;
        let mut validated = 0;
        for alt in &s.one_of {
            let res = validate_node(alt, path, data, false);
            if res.is_valid() {
                validated += 1;
                best = None;
                if first_success.is_none() {
                    first_success = Some(res);
                }
                continue;
            }
            if validated == 0 && best.as_ref().is_none_or(|b| res.count > b.count) {
                best = Some(res);
            }
        }
        if validated != 1 {
            let extra = if validated == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {validated} valid alternatives")
            };
            main.add(composite(format!(
                "{} must validate one and only one schema (oneOf). {extra}",
                q(path)
            )));
            if let Some(b) = best {
                main.merge(b);
            }
        } else if let Some(f) = first_success {
            main.merge(f);
        }
    }
    if !s.all_of.is_empty() {
        let mut validated = 0;
        for alt in &s.all_of {
            let res = validate_node(alt, path, data, false);
            if res.is_valid() {
                validated += 1;
            }
            main.merge(res);
        }
        if validated != s.all_of.len() {
            let extra = if validated == 0 {
                ". None validated"
            } else {
                ""
            };
            main.add(composite(format!(
                "{} must validate all the schemas (allOf){extra}",
                q(path)
            )));
        }
    }
    if let Some(not) = &s.not
        && validate_node(not, path, data, false).is_valid()
    {
        main.add(composite(format!(
            "{} must not validate the schema (not)",
            q(path)
        )));
    }
    main.count += 1;
    main
}

// ---------------------------------------------------------------------------------------------
// Embedded resources (schema/objectmeta/validation.go): apiVersion and kind.
// ---------------------------------------------------------------------------------------------

/// Walks `x` along `s` and checks TypeMeta of every x-kubernetes-embedded-resource object
/// (the root's own TypeMeta is the API server's business, so `root` skips it). Paths use
/// `Child` for properties, `Key` for additionalProperties and `Index` for items.
pub(super) fn objectmeta(out: &mut Vec<Cause>, path: &str, x: &Value, s: &Structural, root: bool) {
    match x {
        Value::Object(m) => {
            if s.x_embedded_resource && !root {
                embedded_type_meta(out, path, m);
            }
            for (k, v) in m {
                if let Some(p) = s.properties.get(k) {
                    objectmeta(out, &child(path, k), v, p, false);
                } else if let Some(ap) = s.additional_properties.as_ref().and_then(|a| a.schema()) {
                    objectmeta(out, &key(path, k), v, ap, false);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = &s.items {
                for (i, v) in a.iter().enumerate() {
                    objectmeta(out, &idx(path, i), v, items, false);
                }
            }
        }
        _ => {}
    }
}

fn embedded_type_meta(out: &mut Vec<Cause>, path: &str, m: &serde_json::Map<String, Value>) {
    let av_path = child(path, "apiVersion");
    let kind_path = child(path, "kind");
    if !m.contains_key("apiVersion") {
        out.push(cause(CauseReason::Required, &av_path, None, ""));
    }
    if !m.contains_key("kind") {
        out.push(cause(CauseReason::Required, &kind_path, None, ""));
    }
    if let Some(v) = m.get("apiVersion") {
        match v.as_str() {
            None => out.push(cause(
                CauseReason::Invalid,
                &av_path,
                Some(&go_value(v)),
                "must be a string",
            )),
            Some("") => out.push(cause(CauseReason::Required, &av_path, None, "")),
            Some(av) => {
                // schema.ParseGroupVersion: at most one '/'.
                if av.matches('/').count() > 1 {
                    out.push(cause(
                        CauseReason::Invalid,
                        &av_path,
                        Some(&q(av)),
                        &format!("unexpected GroupVersion string: {av}"),
                    ));
                }
            }
        }
    }
    if let Some(v) = m.get("kind") {
        match v.as_str() {
            None => out.push(cause(
                CauseReason::Invalid,
                &kind_path,
                Some(&go_value(v)),
                "must be a string",
            )),
            Some("") => out.push(cause(CauseReason::Required, &kind_path, None, "")),
            Some(kind) => {
                let errs = is_dns1035_label(&kind.to_lowercase());
                if !errs.is_empty() {
                    out.push(cause(
                        CauseReason::Invalid,
                        &kind_path,
                        Some(&q(kind)),
                        &format!(
                            "may have mixed case, but should otherwise match: {}",
                            errs.join(",")
                        ),
                    ));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// x-kubernetes-list-type set/map uniqueness (schema/listtype/validation.go)
// ---------------------------------------------------------------------------------------------

fn list_types(out: &mut Vec<Cause>, path: &str, s: &Structural, x: &Value) {
    match x {
        Value::Object(m) => {
            if let Some(ap) = s.additional_properties.as_ref().and_then(|a| a.schema()) {
                for (k, v) in m {
                    list_types(out, &key(path, k), ap, v);
                }
            }
            for (k, v) in m {
                if let Some(p) = s.properties.get(k) {
                    list_types(out, &child(path, k), p, v);
                }
            }
        }
        Value::Array(a) => {
            match s.x_list_type.as_deref() {
                Some("set") => {
                    for i in non_unique(a) {
                        out.push(cause(
                            CauseReason::Duplicate,
                            &idx(path, i),
                            Some(&go_value(&a[i])),
                            "",
                        ));
                    }
                }
                Some("map") => list_map(out, path, s, a),
                _ => {}
            }
            if let Some(items) = &s.items {
                for (i, v) in a.iter().enumerate() {
                    list_types(out, &idx(path, i), items, v);
                }
            }
        }
        _ => {}
    }
}

/// The index of each value's second appearance (later repeats are not reported again).
fn non_unique(a: &[Value]) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, x) in a.iter().enumerate() {
        let times = a[..i].iter().filter(|y| *y == x).count();
        if times == 1 {
            out.push(i);
        }
    }
    out
}

fn list_map(out: &mut Vec<Cause>, path: &str, s: &Structural, a: &[Value]) {
    for (i, x) in a.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            out.push(cause(
                CauseReason::Invalid,
                &idx(path, i),
                Some(&go_value(x)),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    if a.len() <= 1 {
        return;
    }
    // A key is the map of the key fields present; an item missing them all has the empty key.
    let keys: Vec<Value> = a
        .iter()
        .map(|x| {
            let mut k = serde_json::Map::new();
            if let Some(m) = x.as_object() {
                for f in &s.x_list_map_keys {
                    if let Some(v) = m.get(f) {
                        k.insert(f.clone(), v.clone());
                    }
                }
            }
            Value::Object(k)
        })
        .collect();
    for i in non_unique(&keys) {
        out.push(cause(
            CauseReason::Duplicate,
            &idx(path, i),
            Some(&go_value(&keys[i])),
            "",
        ));
    }
}
