//! Query strings as kube-apiserver and kubelet read them: decoded pairs (Go's `url.ParseQuery`)
//! and booleans (`runtime.Convert_Slice_string_To_bool`). The API server and the agent's kubelet
//! API both use these.

/// The decoded `key=value` pairs (`+` is a space, `%XX` a byte), repeated keys kept in order.
pub fn pairs(raw: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect()
}

/// A boolean parameter that is present: false only for `0` and `false` (any case), true for
/// anything else, an empty value included.
pub fn is_true(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_decode_as_url_parse_query() {
        assert_eq!(
            pairs("a=b+c&a=%2F&x&=v&bad=%2"),
            [
                ("a".to_owned(), "b c".to_owned()),
                ("a".to_owned(), "/".to_owned()),
                ("x".to_owned(), String::new()),
                (String::new(), "v".to_owned()),
                ("bad".to_owned(), "%2".to_owned()),
            ]
        );
    }

    #[test]
    fn booleans_are_false_only_for_zero_and_false() {
        for value in ["true", "True", "1", "yes", ""] {
            assert!(is_true(value), "{value:?}");
        }
        for value in ["false", "FALSE", "0"] {
            assert!(!is_true(value), "{value:?}");
        }
    }
}
