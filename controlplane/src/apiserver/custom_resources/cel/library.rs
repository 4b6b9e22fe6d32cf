//! The CEL environment rules are compiled and evaluated in: the standard library (macros, optional
//! values, `matches`, durations and timestamps), cel-rust's strings extension (Kubernetes' `ext.Strings`:
//! `lowerAscii`, `upperAscii`, `trim`, `split`, `join`, `indexOf`, `replace`, `substring`,
//! `format`, ...), and the parts of Kubernetes' own library (`k8s.io/apiserver/pkg/cel/library`)
//! that are cheap to add: lists' `isSorted`, `sum`, `min`, `max`, `indexOf`, `lastIndexOf`, and
//! regex `find`/`findAll`. Not provided: `quantity`, `url`, `ip`, `cidr`, `semver`, `sets`.

use std::sync::{Arc, LazyLock};

use ::cel::common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE};
use ::cel::common::value::{CowVal, Val};
use ::cel::{Env, ExecutionError, Value};

/// The shared environment, built once (its overloads are plain functions, so it is shareable).
static ENV: LazyLock<Result<Arc<Env>, String>> = LazyLock::new(build);

/// The environment, or why it could not be built (upstream's "rule compiler initialization
/// error").
pub(super) fn env() -> Result<Arc<Env>, String> {
    ENV.as_ref().map(Arc::clone).map_err(Clone::clone)
}

fn build() -> Result<Arc<Env>, String> {
    let mut env = Env::stdlib();
    env.add_extension(::cel::extensions::strings)
        .map_err(|e| e.to_string())?;
    let declare = |env: &mut Env,
                   name: &str,
                   args: Vec<::cel::common::types::Type>,
                   target: ::cel::common::types::Type,
                   op: ::cel::common::functions::Function| {
        let id = format!("k8s_{name}_{}_{}", target.name(), args.len());
        env.add_member_overload(name, &id, target, args, op)
            .map_err(|e| e.to_string())
    };
    declare(&mut env, "isSorted", vec![], LIST_TYPE, is_sorted)?;
    declare(&mut env, "sum", vec![], LIST_TYPE, sum)?;
    declare(&mut env, "min", vec![], LIST_TYPE, min)?;
    declare(&mut env, "max", vec![], LIST_TYPE, max)?;
    declare(&mut env, "indexOf", vec![DYN_TYPE], LIST_TYPE, index_of)?;
    declare(
        &mut env,
        "lastIndexOf",
        vec![DYN_TYPE],
        LIST_TYPE,
        last_index_of,
    )?;
    declare(&mut env, "find", vec![STRING_TYPE], STRING_TYPE, find)?;
    declare(
        &mut env,
        "findAll",
        vec![STRING_TYPE],
        STRING_TYPE,
        find_all,
    )?;
    declare(
        &mut env,
        "findAll",
        vec![STRING_TYPE, INT_TYPE],
        STRING_TYPE,
        find_all_n,
    )?;
    Ok(Arc::new(env))
}

/// The arguments as plain values (the receiver first).
fn values(args: &[CowVal<'_, '_>]) -> Result<Vec<Value>, ExecutionError> {
    args.iter().map(|a| Value::try_from(a.as_ref())).collect()
}

fn give<'b, 'v>(value: Value) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let boxed: Box<dyn Val> = value.try_into()?;
    Ok(CowVal::from(boxed))
}

fn list_of(function: &str, value: &Value) -> Result<Arc<Vec<Value>>, ExecutionError> {
    match value {
        Value::List(l) => Ok(Arc::clone(l)),
        other => Err(ExecutionError::no_such_member_overload(
            function,
            vec![other.type_of().to_string()],
        )),
    }
}

fn receiver(function: &str, args: &[CowVal<'_, '_>]) -> Result<Vec<Value>, ExecutionError> {
    let all = values(args)?;
    if all.is_empty() {
        return Err(ExecutionError::function_error(function, "missing receiver"));
    }
    Ok(all)
}

/// Two items' order; items of different kinds cannot be ordered (upstream: no such overload).
fn order(function: &str, a: &Value, b: &Value) -> Result<std::cmp::Ordering, ExecutionError> {
    a.partial_cmp(b).ok_or_else(|| {
        ExecutionError::no_such_overload(
            function,
            vec![a.type_of().to_string(), b.type_of().to_string()],
        )
    })
}

fn is_sorted<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let all = receiver("isSorted", &args)?;
    let list = list_of("isSorted", &all[0])?;
    for pair in list.windows(2) {
        if order("isSorted", &pair[0], &pair[1])? == std::cmp::Ordering::Greater {
            return give(Value::Bool(false));
        }
    }
    give(Value::Bool(true))
}

fn sum<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let all = receiver("sum", &args)?;
    let list = list_of("sum", &all[0])?;
    let mut total = match list.first() {
        None => return give(Value::Int(0)),
        Some(Value::Int(_)) => Value::Int(0),
        Some(Value::UInt(_)) => Value::UInt(0),
        Some(Value::Float(_)) => Value::Float(0.0),
        Some(other) => {
            return Err(ExecutionError::no_such_overload(
                "sum",
                vec![other.type_of().to_string()],
            ));
        }
    };
    for item in list.iter() {
        total = match (&total, item) {
            (Value::Int(a), Value::Int(b)) => a
                .checked_add(*b)
                .map(Value::Int)
                .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?,
            (Value::UInt(a), Value::UInt(b)) => {
                a.checked_add(*b).map(Value::UInt).ok_or_else(|| {
                    ExecutionError::function_error("sum", "unsigned integer overflow")
                })?
            }
            (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            (a, b) => {
                return Err(ExecutionError::no_such_overload(
                    "sum",
                    vec![a.type_of().to_string(), b.type_of().to_string()],
                ));
            }
        };
    }
    give(total)
}

fn extreme<'b, 'v>(
    function: &str,
    args: Vec<CowVal<'b, 'v>>,
    want: std::cmp::Ordering,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let all = receiver(function, &args)?;
    let list = list_of(function, &all[0])?;
    let Some(mut best) = list.first().cloned() else {
        return Err(ExecutionError::function_error(
            function,
            format!("{function} called on empty list"),
        ));
    };
    for item in list.iter().skip(1) {
        if order(function, item, &best)? == want {
            best = item.clone();
        }
    }
    give(best)
}

fn min<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme("min", args, std::cmp::Ordering::Less)
}

fn max<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    extreme("max", args, std::cmp::Ordering::Greater)
}

fn position<'b, 'v>(
    function: &str,
    args: Vec<CowVal<'b, 'v>>,
    last: bool,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let all = receiver(function, &args)?;
    let list = list_of(function, &all[0])?;
    let Some(needle) = all.get(1) else {
        return Err(ExecutionError::invalid_argument_count(2, all.len()));
    };
    let found = if last {
        list.iter().rposition(|x| x == needle)
    } else {
        list.iter().position(|x| x == needle)
    };
    give(Value::Int(
        found.and_then(|i| i64::try_from(i).ok()).unwrap_or(-1),
    ))
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position("indexOf", args, false)
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    position("lastIndexOf", args, true)
}

fn text_and_regex(
    function: &str,
    args: &[CowVal<'_, '_>],
) -> Result<(String, regex::Regex, Vec<Value>), ExecutionError> {
    let all = receiver(function, args)?;
    let (Some(Value::String(text)), Some(Value::String(pattern))) = (all.first(), all.get(1))
    else {
        return Err(ExecutionError::no_such_overload(
            function,
            all.iter().map(|v| v.type_of().to_string()).collect(),
        ));
    };
    let re = regex::Regex::new(pattern)
        .map_err(|e| ExecutionError::function_error(function, e.to_string()))?;
    Ok((text.to_string(), re, all))
}

fn find<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (text, re, _) = text_and_regex("find", &args)?;
    let found = re.find(&text).map(|m| m.as_str().to_owned());
    give(Value::String(Arc::new(found.unwrap_or_default())))
}

fn matches_of(text: &str, re: &regex::Regex, limit: Option<usize>) -> Value {
    let all = re
        .find_iter(text)
        .take(limit.unwrap_or(usize::MAX))
        .map(|m| Value::String(Arc::new(m.as_str().to_owned())))
        .collect::<Vec<_>>();
    Value::List(Arc::new(all))
}

fn find_all<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (text, re, _) = text_and_regex("findAll", &args)?;
    give(matches_of(&text, &re, None))
}

fn find_all_n<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (text, re, all) = text_and_regex("findAll", &args)?;
    // A negative limit means all matches, as upstream's.
    let limit = match all.get(2) {
        Some(Value::Int(n)) => usize::try_from(*n).ok(),
        _ => None,
    };
    give(matches_of(&text, &re, limit))
}
