//! Warnings for the client, gathered while a request is handled and sent as `Warning: 299 - "…"`
//! headers, as kube-apiserver's warning recorder does (`k8s.io/apiserver/pkg/warning`): any step
//! of a request (decoding, an admission webhook's answer) adds to the request's list without
//! passing it along; identical warnings are sent once, empty ones not at all, and the total is
//! bounded as upstream bounds it.

use std::cell::RefCell;

use axum::{http::HeaderValue, response::Response};

/// Upstream's bound on all of a response's warnings together, in characters.
const TOTAL_LIMIT: usize = 4 * 1024;
/// What each warning is cut to once the total would pass [`TOTAL_LIMIT`], in characters.
const ITEM_LIMIT: usize = 256;

tokio::task_local! {
    /// The warnings of the request this task is handling.
    static RECORDED: RefCell<Vec<String>>;
}

/// Adds `warning` to the current request's warnings (nothing outside a request).
pub fn add(warning: impl Into<String>) {
    let warning = warning.into();
    if warning.trim().is_empty() {
        return;
    }
    let _ = RECORDED.try_with(|recorded| {
        let mut recorded = recorded.borrow_mut();
        if !recorded.contains(&warning) {
            recorded.push(warning);
        }
    });
}

/// Runs `handling` (one request) with a list of its own and writes what was added to it into
/// the response's headers.
pub async fn recorded(handling: impl Future<Output = Response>) -> Response {
    let (mut response, warnings) = RECORDED
        .scope(RefCell::new(Vec::new()), async {
            let response = handling.await;
            (response, RECORDED.with(RefCell::take))
        })
        .await;
    for warning in bounded(warnings) {
        let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
        // Control characters cannot go into a header; upstream refuses such warnings too.
        if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append("Warning", value);
        }
    }
    response
}

/// `warnings` within upstream's bounds: all of them when they fit in [`TOTAL_LIMIT`];
/// otherwise each cut to [`ITEM_LIMIT`] characters, and those that still do not fit left out.
fn bounded(warnings: Vec<String>) -> Vec<String> {
    let total: usize = warnings.iter().map(|w| w.chars().count()).sum();
    if total <= TOTAL_LIMIT {
        return warnings;
    }
    let mut kept = Vec::new();
    let mut used = 0;
    for warning in warnings {
        let cut: String = warning.chars().take(ITEM_LIMIT).collect();
        let length = cut.chars().count();
        if used + length > TOTAL_LIMIT {
            break;
        }
        used += length;
        kept.push(cut);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn warnings_go_into_headers_once_each() {
        let response = recorded(async {
            add("unknown field \"spec.colour\"");
            add("unknown field \"spec.colour\"");
            add("  ");
            add(r#"a "quoted" \ word"#);
            Response::new(axum::body::Body::empty())
        })
        .await;
        let headers: Vec<&str> = response
            .headers()
            .get_all("Warning")
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect();
        assert_eq!(
            headers,
            [
                r#"299 - "unknown field \"spec.colour\"""#,
                r#"299 - "a \"quoted\" \\ word""#,
            ]
        );
        // Outside a request nothing is kept, and nothing fails.
        add("lost");
    }

    #[test]
    fn many_long_warnings_are_cut_and_bounded() {
        let long = "x".repeat(1000);
        assert_eq!(bounded(vec![long.clone(); 4]).len(), 4);
        let cut = bounded((0..40).map(|i| format!("{i}{long}")).collect());
        assert_eq!(cut.len(), TOTAL_LIMIT / ITEM_LIMIT);
        assert!(cut.iter().all(|w| w.chars().count() == ITEM_LIMIT));
    }
}
