use super::*;
use serde_json::json;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse(text: &str) -> LabelSelector {
    parse_label_selector(text).unwrap()
}

fn parse_err(text: &str) -> String {
    parse_label_selector(text).unwrap_err().to_string()
}

fn single(text: &str) -> LabelRequirement {
    let selector = parse(text);
    assert_eq!(selector.requirements().len(), 1, "{text}");
    selector.requirements()[0].clone()
}

// ---- label selector parsing ----

#[test]
fn empty_and_blank_selectors_match_everything() {
    for text in ["", "   ", "\t\n"] {
        let selector = parse(text);
        assert!(selector.is_empty());
        assert!(selector.matches(&labels(&[])));
        assert!(selector.matches(&labels(&[("a", "b")])));
        assert_eq!(selector.to_string(), "");
    }
    assert_eq!(LabelSelector::everything(), parse(""));
}

#[test]
fn parses_every_operator() {
    let cases: &[(&str, LabelOperator, &[&str])] = &[
        ("a=b", LabelOperator::Equals, &["b"]),
        ("a==b", LabelOperator::DoubleEquals, &["b"]),
        ("a!=b", LabelOperator::NotEquals, &["b"]),
        ("a in (b,c)", LabelOperator::In, &["b", "c"]),
        ("a notin (c, b)", LabelOperator::NotIn, &["b", "c"]),
        ("a", LabelOperator::Exists, &[]),
        ("!a", LabelOperator::DoesNotExist, &[]),
        ("a>5", LabelOperator::GreaterThan, &["5"]),
        ("a<10", LabelOperator::LessThan, &["10"]),
    ];
    for (text, operator, values) in cases {
        let requirement = single(text);
        assert_eq!(requirement.key(), "a", "{text}");
        assert_eq!(requirement.operator(), *operator, "{text}");
        assert_eq!(requirement.values(), *values, "{text}");
    }
}

#[test]
fn whitespace_around_tokens_is_ignored() {
    let selector = parse("  a = b ,  c in ( x , y ) ,\t! d , e != f , g>1 ,h == i , j  ");
    assert_eq!(selector.to_string(), "a=b,c in (x,y),!d,e!=f,g>1,h==i,j");
    assert_eq!(parse("a in(x)").to_string(), "a in (x)");
    assert_eq!(parse("!a,b").to_string(), "!a,b");
}

#[test]
fn set_based_example_from_the_docs() {
    let selector = parse("environment in (production, qa),tier in (frontend)");
    assert_eq!(selector.requirements().len(), 2);
    assert_eq!(selector.requirements()[0].values(), ["production", "qa"]);
    assert_eq!(selector.requirements()[1].values(), ["frontend"]);
    assert_eq!(
        selector.to_string(),
        "environment in (production,qa),tier in (frontend)"
    );
    assert!(selector.matches(&labels(&[("environment", "qa"), ("tier", "frontend")])));
    assert!(selector.matches(&labels(&[
        ("environment", "production"),
        ("tier", "frontend"),
        ("extra", "x"),
    ])));
    assert!(!selector.matches(&labels(&[("environment", "dev"), ("tier", "frontend")])));
    assert!(!selector.matches(&labels(&[("environment", "qa"), ("tier", "backend")])));
    assert!(!selector.matches(&labels(&[("environment", "qa")])));
    assert!(!selector.matches(&labels(&[])));
}

#[test]
fn requirements_are_sorted_by_key_and_values_deduplicated() {
    let selector = parse("b=1,a in (z,y,y,z),c");
    assert_eq!(selector.to_string(), "a in (y,z),b=1,c");
    assert_eq!(selector.requirements()[0].values(), ["y", "z"]);
}

#[test]
fn empty_values_are_allowed_where_apimachinery_allows_them() {
    assert_eq!(single("a=").values(), [""]);
    assert_eq!(single("a==").values(), [""]);
    assert_eq!(single("a!=").values(), [""]);
    assert_eq!(parse("a=,b").requirements()[0].values(), [""]);
    assert_eq!(single("a in (,x)").values(), ["", "x"]);
    assert_eq!(single("a in (x,)").values(), ["", "x"]);
    assert_eq!(single("a in (x,,y)").values(), ["", "x", "y"]);
    assert_eq!(single("a in (,)").values(), [""]);
    let selector = parse("a=");
    assert!(selector.matches(&labels(&[("a", "")])));
    assert!(!selector.matches(&labels(&[("a", "x")])));
    assert!(!selector.matches(&labels(&[])));
}

#[test]
fn keywords_are_plain_identifiers_outside_operator_position() {
    assert_eq!(single("a=in").values(), ["in"]);
    assert_eq!(single("a in (in, notin)").values(), ["in", "notin"]);
    assert_eq!(single("in").operator(), LabelOperator::Exists);
    assert_eq!(single("in").key(), "in");
    assert_eq!(single("notin=x").key(), "notin");
    assert_eq!(single("!in").operator(), LabelOperator::DoesNotExist);
}

#[test]
fn prefixed_keys_and_valid_characters() {
    let requirement = single("app.kubernetes.io/name=my_app-1.0");
    assert_eq!(requirement.key(), "app.kubernetes.io/name");
    assert_eq!(requirement.values(), ["my_app-1.0"]);
    single("Upper_Case.name=Value");
    single(&format!("{}=v", "k".repeat(63)));
    single(&format!("a={}", "v".repeat(63)));
    single(&format!("{}.com/k", "p".repeat(249)));
}

#[test]
fn invalid_keys_are_rejected_with_the_key_named() {
    let cases: &[(&str, &str)] = &[
        ("-bad", "name part must consist of alphanumeric characters"),
        ("bad_", "name part must consist"),
        ("example.com/", "name part must be non-empty"),
        ("/name", "prefix part must be non-empty"),
        (
            "Example.com/name",
            "prefix part a lowercase RFC 1123 subdomain",
        ),
        (
            "ex_ample.com/name",
            "prefix part a lowercase RFC 1123 subdomain",
        ),
        ("a/b/c", "a qualified name must consist"),
        ("é", "name part must consist"),
    ];
    for (key, reason) in cases {
        let message = parse_err(key);
        assert!(
            message.starts_with(&format!(
                "unable to parse requirement: invalid label key {key:?}: "
            )),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
    }
    let long_name = "k".repeat(64);
    assert!(parse_err(&long_name).contains("name part must be no more than 63 characters"));
    let long_prefix = format!("{}.com/k", "p".repeat(250));
    assert!(parse_err(&long_prefix).contains("prefix part must be no more than 253 characters"));
    let error = parse_label_selector("a=b,-x=y").unwrap_err();
    assert!(matches!(
        &error,
        SelectorError::InvalidRequirement(inner)
            if matches!(inner.as_ref(), SelectorError::InvalidLabelKey { key, .. } if key == "-x")
    ));
}

#[test]
fn invalid_values_are_rejected_with_the_value_named() {
    let message = parse_err("a=-bad");
    assert!(
        message.starts_with(r#"unable to parse requirement: invalid label value "-bad" for key "a": a valid label must be"#),
        "{message}"
    );
    assert!(parse_err("a in (ok, bad_)").contains(r#"invalid label value "bad_""#));
    let long = "v".repeat(64);
    assert!(parse_err(&format!("a!={long}")).contains("must be no more than 63 characters"));
    assert!(parse_err("a=b.c/d").contains(r#"invalid label value "b.c/d""#));
}

#[test]
fn empty_in_set_is_an_error() {
    for text in ["a in ()", "a notin ( )"] {
        let message = parse_err(text);
        assert!(
            message.contains("values set can't be empty") && message.contains(r#"key "a""#),
            "{message}"
        );
    }
}

#[test]
fn syntax_errors_name_the_offending_token() {
    let cases: &[(&str, &str)] = &[
        (
            "a=(b)",
            "unable to parse requirement: found '(', expected: identifier",
        ),
        (
            "a in b",
            "unable to parse requirement: found 'b', expected: '('",
        ),
        ("a in (b c)", "found 'c', expected: ',' or ')'"),
        ("a in (b", "found end of string, expected: ',' or ')'"),
        ("a in (=)", "found '=', expected: identifier, ',' or ')'"),
        ("a in", "found end of string, expected: '('"),
        (
            ",a",
            "found ',', expected: '!', identifier, or end of string",
        ),
        ("a,", "found end of string, expected: identifier after ','"),
        ("a,,b", "found ',', expected: identifier after ','"),
        (
            "a b",
            "found 'b', expected: '=', '==', '!=', 'in', 'notin', '>' or '<'",
        ),
        ("a=b c", "found 'c', expected: ',' or end of string"),
        ("a=b=c", "found '=', expected: ',' or end of string"),
        ("!a=b", "found '=', expected: ',' or end of string"),
        (
            "!",
            "unable to parse requirement: found end of string, expected: identifier",
        ),
        (
            "!=a",
            "found '!=', expected: '!', identifier, or end of string",
        ),
        (
            "a!b",
            "found '!', expected: '=', '==', '!=', 'in', 'notin', '>' or '<'",
        ),
        ("a<=5", "found '=', expected: identifier"),
        (
            "(a)",
            "found '(', expected: '!', identifier, or end of string",
        ),
    ];
    for (text, expected) in cases {
        let message = parse_err(text);
        assert!(message.contains(expected), "{text}: {message}");
    }
}

#[test]
fn numeric_comparisons_need_an_integer() {
    for text in ["a>x", "a>", "a<1.5", "a>-1", "a<+1"] {
        let message = parse_err(text);
        assert!(
            message.starts_with("unable to parse requirement: "),
            "{message}"
        );
        assert!(
            message.contains("must be an integer") || message.contains("invalid label value"),
            "{text}: {message}"
        );
    }
    assert!(parse_err("a>x").contains("for 'Gt', 'Lt' operators, the value must be an integer"));
}

#[test]
fn display_round_trips() {
    for text in [
        "a=b",
        "a==b",
        "a!=b",
        "a in (b,c)",
        "a notin (b,c)",
        "a",
        "!a",
        "a>1",
        "a<2",
        "a=",
        "a in (,b)",
        "example.com/a=b,in,x notin (in)",
    ] {
        let selector = parse(text);
        assert_eq!(parse(&selector.to_string()), selector, "{text}");
    }
    assert_eq!(
        "x=1,a".parse::<LabelSelector>().unwrap().to_string(),
        "a,x=1"
    );
}

// ---- label selector matching ----

#[test]
fn matching_truth_table() {
    let absent = labels(&[("other", "x")]);
    let equal = labels(&[("a", "b")]);
    let different = labels(&[("a", "z")]);
    // (selector, matches absent, matches a=b, matches a=z)
    let cases: &[(&str, bool, bool, bool)] = &[
        ("a=b", false, true, false),
        ("a==b", false, true, false),
        ("a!=b", true, false, true),
        ("a in (b,c)", false, true, false),
        ("a notin (b,c)", true, false, true),
        ("a", false, true, true),
        ("!a", true, false, false),
        ("a=b,other", false, false, false),
        ("a!=b,!other", false, false, true),
    ];
    for (text, on_absent, on_equal, on_different) in cases {
        let selector = parse(text);
        assert_eq!(selector.matches(&absent), *on_absent, "{text} on absent");
        assert_eq!(selector.matches(&equal), *on_equal, "{text} on a=b");
        assert_eq!(selector.matches(&different), *on_different, "{text} on a=z");
    }
}

#[test]
fn numeric_matching() {
    let gt = parse("a>5");
    let lt = parse("a<5");
    assert!(gt.matches(&labels(&[("a", "6")])));
    assert!(!gt.matches(&labels(&[("a", "5")])));
    assert!(!gt.matches(&labels(&[("a", "4")])));
    assert!(lt.matches(&labels(&[("a", "4")])));
    assert!(!lt.matches(&labels(&[("a", "5")])));
    assert!(lt.matches(&labels(&[("a", "-3")])));
    for selector in [&gt, &lt] {
        assert!(!selector.matches(&labels(&[])));
        assert!(!selector.matches(&labels(&[("a", "x")])));
        assert!(!selector.matches(&labels(&[("a", "")])));
        assert!(!selector.matches(&labels(&[("a", "99999999999999999999")])));
    }
}

#[test]
fn requirement_new_validates_like_apimachinery() {
    let requirement = LabelRequirement::new("tier", LabelOperator::In, ["b", "a", "b"]).unwrap();
    assert_eq!(requirement.values(), ["a", "b"]);
    assert_eq!(requirement.to_string(), "tier in (a,b)");
    assert!(LabelRequirement::new("a", LabelOperator::Equals, ["x", "y"]).is_err());
    assert!(LabelRequirement::new("a", LabelOperator::NotEquals, Vec::<String>::new()).is_err());
    assert!(LabelRequirement::new("a", LabelOperator::Exists, ["x"]).is_err());
    assert!(LabelRequirement::new("a", LabelOperator::GreaterThan, ["1", "2"]).is_err());
    assert!(LabelRequirement::new("bad key", LabelOperator::Exists, Vec::<String>::new()).is_err());
    let selector = LabelSelector::from_requirements(vec![
        LabelRequirement::new("z", LabelOperator::Exists, Vec::<String>::new()).unwrap(),
        requirement,
    ]);
    assert_eq!(selector.to_string(), "tier in (a,b),z");
}

// ---- metav1.LabelSelector ----

#[test]
fn json_null_and_missing_select_nothing() {
    assert_eq!(label_selector_from_json(None).unwrap(), None);
    assert_eq!(label_selector_from_json(Some(&Value::Null)).unwrap(), None);
}

#[test]
fn json_empty_selects_everything() {
    for selector in [
        json!({}),
        json!({"matchLabels": {}}),
        json!({"matchLabels": null, "matchExpressions": []}),
    ] {
        let selector = label_selector_from_json(Some(&selector)).unwrap().unwrap();
        assert!(selector.is_empty());
        assert!(selector.matches(&labels(&[])));
    }
}

#[test]
fn json_selector_converts_and_matches() {
    let selector = label_selector_from_json(Some(&json!({
        "matchLabels": {"app": "web", "tier": "frontend"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "qa"]},
            {"key": "track", "operator": "NotIn", "values": ["canary"]},
            {"key": "owner", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist", "values": []},
        ],
        "unknownField": true,
    })))
    .unwrap()
    .unwrap();
    assert_eq!(
        selector.to_string(),
        "app=web,env in (prod,qa),!legacy,owner,tier=frontend,track notin (canary)"
    );
    let mut set = labels(&[
        ("app", "web"),
        ("tier", "frontend"),
        ("env", "qa"),
        ("owner", "me"),
    ]);
    assert!(selector.matches(&set));
    set.insert("track".into(), "stable".into());
    assert!(selector.matches(&set));
    set.insert("track".into(), "canary".into());
    assert!(!selector.matches(&set));
    set.remove("track");
    set.insert("legacy".into(), "yes".into());
    assert!(!selector.matches(&set));
    set.remove("legacy");
    set.remove("owner");
    assert!(!selector.matches(&set));
}

#[test]
fn json_selector_errors() {
    let error = |value: Value| label_selector_from_json(Some(&value)).unwrap_err();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
            "values set can't be empty",
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "NotIn"}]}),
            "values set can't be empty",
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
            "values set must be empty for exists and does not exist",
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": ["x"]}]}),
            "values set must be empty",
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]}),
            r#""Equals" is not a valid label selector operator"#,
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]}),
            r#""in" is not a valid label selector operator"#,
        ),
        (
            json!({"matchLabels": {"Bad Key": "x"}}),
            r#"invalid label key "Bad Key": name part must consist"#,
        ),
        (
            json!({"matchLabels": {"a": "bad value"}}),
            r#"invalid label value "bad value" for key "a""#,
        ),
        (
            json!({"matchLabels": {"a": 1}}),
            r#"invalid label selector: matchLabels["a"]: must be a string"#,
        ),
        (
            json!({"matchLabels": []}),
            "invalid label selector: matchLabels: must be an object",
        ),
        (
            json!({"matchExpressions": {}}),
            "invalid label selector: matchExpressions: must be a list",
        ),
        (
            json!({"matchExpressions": ["a"]}),
            "invalid label selector: matchExpressions[0]: must be an object",
        ),
        (
            json!({"matchExpressions": [{"operator": "Exists"}]}),
            "invalid label selector: matchExpressions[0].key: must be a string",
        ),
        (
            json!({"matchExpressions": [{"key": "a"}]}),
            "invalid label selector: matchExpressions[0].operator: must be a string",
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}),
            "invalid label selector: matchExpressions[0].values: must be a list of strings",
        ),
        (
            json!({"matchExpressions": [{"key": "a", "operator": "In", "values": "x"}]}),
            "matchExpressions[0].values: must be a list of strings",
        ),
        (
            json!("app=web"),
            "invalid label selector: selector: must be a JSON object or null",
        ),
    ];
    for (value, expected) in cases {
        let message = error(value.clone()).to_string();
        assert!(message.contains(expected), "{value}: {message}");
    }
    assert!(matches!(
        error(json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})),
        SelectorError::UnknownOperator { operator } if operator == "Gt"
    ));
}

#[test]
fn labels_of_reads_metadata_labels() {
    let object = json!({"metadata": {"name": "x", "labels": {"a": "b", "n": 1, "c": ""}}});
    assert_eq!(labels_of(&object), labels(&[("a", "b"), ("c", "")]));
    assert!(labels_of(&json!({"metadata": {"name": "x"}})).is_empty());
    assert!(labels_of(&json!({"metadata": {"labels": null}})).is_empty());
    assert!(labels_of(&json!({})).is_empty());
    assert!(labels_of(&json!([1])).is_empty());
    assert!(parse("a=b").matches(&labels_of(&object)));
}

// ---- field selectors ----

fn fields(text: &str) -> FieldSelector {
    parse_field_selector(text).unwrap()
}

fn field_err(text: &str) -> SelectorError {
    parse_field_selector(text).unwrap_err()
}

#[test]
fn empty_field_selector_matches_everything() {
    let selector = fields("");
    assert!(selector.is_empty());
    assert!(selector.matches(&json!({})));
    assert_eq!(selector.fields().count(), 0);
    assert_eq!(selector, FieldSelector::everything());
    assert!(fields(",").is_empty());
}

#[test]
fn parses_field_operators() {
    let selector = fields("metadata.name=foo,status.phase!=Running,spec.nodeName==node-1");
    let terms: Vec<(&str, FieldOperator, &str)> = selector
        .requirements()
        .iter()
        .map(|r| (r.field(), r.operator(), r.value()))
        .collect();
    assert_eq!(
        terms,
        [
            ("metadata.name", FieldOperator::Equals, "foo"),
            ("spec.nodeName", FieldOperator::Equals, "node-1"),
            ("status.phase", FieldOperator::NotEquals, "Running"),
        ]
    );
    assert_eq!(
        selector.fields().collect::<Vec<_>>(),
        ["metadata.name", "spec.nodeName", "status.phase"]
    );
    assert_eq!(
        selector.to_string(),
        "metadata.name=foo,spec.nodeName=node-1,status.phase!=Running"
    );
    assert_eq!(fields("a=").requirements()[0].value(), "");
    assert_eq!(
        fields("a!=").requirements()[0].operator(),
        FieldOperator::NotEquals
    );
    assert_eq!(fields("a=b,,c=d,").requirements().len(), 2);
    assert_eq!(
        fields("a=hello world").requirements()[0].value(),
        "hello world"
    );
}

#[test]
fn field_values_unescape_and_display_escapes() {
    let selector = fields(r"a=x\,y\=z\\w,b=2");
    assert_eq!(selector.requirements().len(), 2);
    assert_eq!(selector.requirements()[0].value(), r"x,y=z\w");
    assert_eq!(selector.to_string(), r"a=x\,y\=z\\w,b=2");
    assert_eq!(fields(&selector.to_string()), selector);
    assert_eq!(fields(r"a!=\\").requirements()[0].value(), r"\");
    assert_eq!(fields(r"a=\,").requirements()[0].value(), ",");
    assert_eq!("x==1".parse::<FieldSelector>().unwrap().to_string(), "x=1");
}

#[test]
fn field_selector_errors() {
    assert!(matches!(
        field_err("a=b=c"),
        SelectorError::UnescapedCharacter { value, character: '=' } if value == "b=c"
    ));
    assert!(matches!(
        field_err("a==="),
        SelectorError::UnescapedCharacter { character: '=', .. }
    ));
    assert!(matches!(
        field_err(r"a=b\"),
        SelectorError::InvalidEscapeSequence { sequence, .. } if sequence == r"\"
    ));
    assert!(matches!(
        field_err(r"a=b\x"),
        SelectorError::InvalidEscapeSequence { sequence, .. } if sequence == r"\x"
    ));
    assert!(matches!(
        field_err("metadata.name"),
        SelectorError::MalformedFieldTerm { term, .. } if term == "metadata.name"
    ));
    assert!(matches!(
        field_err("a=b,=c"),
        SelectorError::MalformedFieldTerm { term, reason, .. }
            if term == "=c" && reason.contains("field name is empty")
    ));
    assert_eq!(
        field_err("x=1,foo").to_string(),
        r#"invalid field selector "x=1,foo": can't understand "foo": expected <field>=<value>, <field>==<value> or <field>!=<value>"#
    );
    assert_eq!(
        field_err(r"a=b\q").to_string(),
        r#"invalid field selector value "b\\q": invalid escape sequence '\q' (only \\, \, and \= are allowed)"#
    );
    assert_eq!(
        field_err("a=b=c").to_string(),
        r#"invalid field selector value "b=c": unescaped character '=' (write it as '\=')"#
    );
}

#[test]
fn field_matching_with_missing_fields_and_not_equals() {
    let scheduled = json!({
        "metadata": {"name": "p1", "namespace": "default"},
        "spec": {"nodeName": "node-1", "hostNetwork": true, "priority": 7},
        "status": {"phase": "Running"},
    });
    let pending = json!({
        "metadata": {"name": "p2", "namespace": "default"},
        "spec": {},
        "status": {"phase": "Pending"},
    });
    let cases: &[(&str, bool, bool)] = &[
        ("spec.nodeName=", false, true),
        ("spec.nodeName!=", true, false),
        ("spec.nodeName=node-1", true, false),
        ("spec.nodeName!=node-1", false, true),
        ("status.phase=Running", true, false),
        ("status.phase!=Running", false, true),
        ("metadata.name=p2,metadata.namespace=default", false, true),
        (
            "metadata.namespace=default,status.phase!=Failed",
            true,
            true,
        ),
        ("spec.hostNetwork=true", true, false),
        ("spec.priority=7", true, false),
        ("spec.priority==7", true, false),
        ("metadata.name.deeper=", true, true),
        ("no.such.field=x", false, false),
    ];
    for (text, on_scheduled, on_pending) in cases {
        let selector = fields(text);
        assert_eq!(
            selector.matches(&scheduled),
            *on_scheduled,
            "{text} on scheduled"
        );
        assert_eq!(selector.matches(&pending), *on_pending, "{text} on pending");
    }
}

#[test]
fn field_value_lookup() {
    let event = json!({
        "involvedObject": {"kind": "Pod", "name": "p"},
        "count": 3,
        "ratio": 1.5,
        "flag": false,
        "gone": null,
        "list": ["a"],
    });
    assert_eq!(field_value(&event, "involvedObject.kind"), "Pod");
    assert_eq!(field_value(&event, "count"), "3");
    assert_eq!(field_value(&event, "ratio"), "1.5");
    assert_eq!(field_value(&event, "flag"), "false");
    assert_eq!(field_value(&event, "gone"), "");
    assert_eq!(field_value(&event, "missing"), "");
    assert_eq!(field_value(&event, "involvedObject.missing"), "");
    assert_eq!(field_value(&event, "list"), r#"["a"]"#);
    assert!(fields("involvedObject.kind=Pod,involvedObject.name=p").matches(&event));
    assert!(!fields("involvedObject.kind=Node").matches(&event));
}

#[test]
fn check_supported_names_the_field() {
    let selector = fields("metadata.name=a,spec.foo=b");
    assert!(
        selector
            .check_supported(&["metadata.name", "spec.foo"])
            .is_ok()
    );
    let error = selector.check_supported(&["metadata.name"]).unwrap_err();
    assert_eq!(error.to_string(), "field label not supported: spec.foo");
    assert!(fields("").check_supported(&[]).is_ok());
    assert_eq!(
        fields("status.phase =x")
            .check_supported(&["status.phase"])
            .unwrap_err(),
        SelectorError::UnsupportedField {
            field: "status.phase ".into()
        }
    );
}

#[test]
fn exact_match_and_custom_getter() {
    let selector = fields("metadata.name=web,metadata.namespace!=kube-system");
    assert_eq!(selector.requires_exact_match("metadata.name"), Some("web"));
    assert_eq!(selector.requires_exact_match("metadata.namespace"), None);
    assert_eq!(selector.requires_exact_match("spec.nodeName"), None);
    let node = fields("spec.unschedulable=false");
    let object = json!({"spec": {}});
    assert!(!node.matches(&object));
    // Callers supply per-resource defaults (a missing bool reads "false" in Kubernetes).
    assert!(node.matches_with(|field| {
        let value = field_value(&object, field);
        if field == "spec.unschedulable" && value.is_empty() {
            Cow::Borrowed("false")
        } else {
            value
        }
    }));
}

#[test]
fn typed_selectors_convert_as_label_selector_as_selector() {
    let typed: MetaLabelSelector = serde_json::from_value(json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
    }))
    .unwrap();
    let selector = LabelSelector::try_from(&typed).unwrap();
    assert_eq!(selector.to_string(), "app=web,tier notin (db)");
    assert!(selector.matches(&labels(&[("app", "web")])));
    assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "db")])));
    assert!(
        LabelSelector::try_from(&MetaLabelSelector::default())
            .unwrap()
            .is_empty()
    );
    let unknown: MetaLabelSelector = serde_json::from_value(json!({
        "matchExpressions": [{"key": "tier", "operator": "Gt", "values": ["1"]}],
    }))
    .unwrap();
    assert!(matches!(
        LabelSelector::try_from(&unknown),
        Err(SelectorError::UnknownOperator { .. })
    ));
}

#[test]
fn json_label_maps_and_plain_sets_match() {
    let object = json!({"app": "web", "count": 3});
    let map = object.as_object().unwrap();
    let selector = parse("app=web");
    assert!(selector.matches(map));
    assert!(
        !parse("count").matches(map),
        "a non-string value is no label"
    );
    assert!(!selector.matches(&()));
    let set = labels(&[("app", "web")]);
    assert!(set_matches(&set, map));
    assert!(set_matches(&BTreeMap::new(), &()));
    assert!(!set_matches(&labels(&[("app", "db")]), map));
}

#[test]
fn node_selector_terms_allow_numeric_operators_and_name_fields() {
    let requirements: Vec<NodeSelectorRequirement> = serde_json::from_value(json!([
        {"key": "cores", "operator": "Gt", "values": ["4"]},
        {"key": "zone", "operator": "In", "values": ["a", "b"]},
    ]))
    .unwrap();
    let selector = node_selector_requirements(&requirements).unwrap();
    assert!(selector.matches(&labels(&[("cores", "8"), ("zone", "a")])));
    assert!(!selector.matches(&labels(&[("cores", "2"), ("zone", "a")])));
    let fields: Vec<NodeSelectorRequirement> = serde_json::from_value(json!([
        {"key": "metadata.name", "operator": "NotIn", "values": ["node-a"]},
    ]))
    .unwrap();
    let fields = node_selector_fields(&fields).unwrap();
    assert!(fields.matches_with(|_| Cow::Borrowed("node-b")));
    assert!(!fields.matches_with(|_| Cow::Borrowed("node-a")));
    let two_values: Vec<NodeSelectorRequirement> = serde_json::from_value(json!([
        {"key": "metadata.name", "operator": "In", "values": ["a", "b"]},
    ]))
    .unwrap();
    assert!(node_selector_fields(&two_values).is_err());
}
