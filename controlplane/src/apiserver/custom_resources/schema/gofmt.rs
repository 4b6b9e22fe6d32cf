//! Go value formatting as upstream's messages print decoded JSON: `field.Error.ErrorBody`'s
//! value (`%q`, `%v`, `%#v`), `%v` of enum lists, Go float formatting and `json.Marshal`.

use serde_json::Value;

use crate::apiserver::machinery::field::q;

/// A value as `field.Error.ErrorBody` prints it: nil as `"null"`, strings `%q`, int64/float64/
/// bool `%v`, maps and slices `%#v`.
pub(super) fn go_value(v: &Value) -> String {
    match v {
        Value::Null => q("null"),
        Value::String(s) => q(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        other => go_sharp(other),
    }
}

fn go_number(n: &serde_json::Number) -> String {
    match n.as_i64() {
        Some(i) => i.to_string(),
        None => go_float(n.as_f64().unwrap_or_default()),
    }
}

/// `%#v` of an `interface{}` holding decoded JSON.
fn go_sharp(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".to_string(),
        Value::String(s) => q(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_sharp).collect();
            format!("[]interface {{}}{{{}}}", items.join(", "))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", q(k), go_sharp(&m[k.as_str()])))
                .collect();
            format!("map[string]interface {{}}{{{}}}", items.join(", "))
        }
    }
}

/// `%v` of `[]interface{}` (EnumFail's message): `[a b 1]`.
pub(super) fn go_v_list(values: &[Value]) -> String {
    let items: Vec<String> = values.iter().map(go_v).collect();
    format!("[{}]", items.join(" "))
}

/// `%v` of an `interface{}` holding decoded JSON.
fn go_v(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => go_number(n),
        Value::Array(a) => go_v_list(a),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_v(&m[k.as_str()])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

/// Shortest decimal digits and exponent of `f` (f = 0.d1d2... x 10^(exp+1)).
fn digits_exp(f: f64) -> (String, i32) {
    let s = format!("{:e}", f.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    (digits, exp.parse().unwrap_or(0))
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): with the shortest
/// precision the exponent form is used when the exponent is < -4 or >= 6 (`1e+06`).
pub(super) fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".to_string();
    }
    let (digits, exp) = digits_exp(f);
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{esign}{:02}", exp.abs());
    }
    format!("{sign}{}", plain_digits(&digits, exp))
}

fn plain_digits(digits: &str, exp: i32) -> String {
    if exp < 0 {
        let zeros = "0".repeat((-exp - 1) as usize);
        return format!("0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        format!("{digits}{}", "0".repeat(int_len - digits.len()))
    } else {
        format!("{}.{}", &digits[..int_len], &digits[int_len..])
    }
}

/// `json.Marshal` of decoded JSON: sorted keys, Go's float form and HTML escaping.
pub(super) fn go_json(v: &Value) -> String {
    match v {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => {
                let f = n.as_f64().unwrap_or_default();
                let a = f.abs();
                if a != 0.0 && !(1e-6..1e21).contains(&a) {
                    let (digits, exp) = digits_exp(f);
                    let mut m = digits[..1].to_string();
                    if digits.len() > 1 {
                        m.push('.');
                        m.push_str(&digits[1..]);
                    }
                    let sign = if f < 0.0 { "-" } else { "" };
                    let esign = if exp < 0 { '-' } else { '+' };
                    format!("{sign}{m}e{esign}{}", exp.abs())
                } else if f == 0.0 {
                    "0".to_string()
                } else {
                    let (digits, exp) = digits_exp(f);
                    let sign = if f < 0.0 { "-" } else { "" };
                    format!("{sign}{}", plain_digits(&digits, exp))
                }
            }
        },
        Value::String(s) => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                        out.push_str(&format!("\\u{:04x}", c as u32));
                    }
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(go_json).collect();
            format!("[{}]", items.join(","))
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        go_json(&Value::String((*k).clone())),
                        go_json(&m[k.as_str()])
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}
