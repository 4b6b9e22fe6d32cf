//! `pattern` matching as Go's `regexp.MatchString` (an unanchored search), through the `regex`
//! crate, whose syntax and linear-time guarantee are RE2's as Go's are. Compiled patterns are
//! kept (a bounded cache), as every write of a custom object checks them again.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;

/// How many compiled patterns are kept before the cache starts afresh.
const CACHED: usize = 1024;

/// Whether `s` contains a match of `pattern`; `Err` says why the pattern does not compile, in
/// Go's form (`error parsing regexp: <what>: `<pattern>``).
pub fn pattern_matches(pattern: &str, s: &str) -> Result<bool, String> {
    compiled(pattern).map(|regex| regex.is_match(s))
}

fn compiled(pattern: &str) -> Result<Regex, String> {
    static CACHE: OnceLock<Mutex<HashMap<String, Result<Regex, String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = cache.get(pattern) {
        return found.clone();
    }
    let result = Regex::new(pattern).map_err(|err| go_style(pattern, &err));
    if cache.len() >= CACHED {
        cache.clear();
    }
    cache.insert(pattern.to_owned(), result.clone());
    result
}

/// The regex crate's error as Go words it: its last line names what is wrong.
fn go_style(pattern: &str, err: &regex::Error) -> String {
    let text = err.to_string();
    let what = text
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .unwrap_or(text.trim());
    format!("error parsing regexp: {what}: `{pattern}`")
}
