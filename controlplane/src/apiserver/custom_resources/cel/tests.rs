use serde_json::{Value, json};

use super::Rules;
use crate::apiserver::custom_resources::schema::Structural;

const PATH: &str = "spec.versions[0].schema.openAPIV3Schema";

fn schema(spec: Value) -> Structural {
    let root = json!({"type": "object", "properties": {"spec": spec}});
    match Structural::parse(&root, PATH) {
        Ok(s) => s,
        Err(causes) => panic!("{causes:?}"),
    }
}

fn refused(spec: Value) -> Vec<String> {
    let root = json!({"type": "object", "properties": {"spec": spec}});
    match Structural::parse(&root, PATH) {
        Ok(_) => panic!("accepted"),
        Err(causes) => causes.iter().map(ToString::to_string).collect(),
    }
}

fn run(s: &Structural, spec: Value, old: Option<Value>) -> Vec<String> {
    let object = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": spec});
    let old = old.map(|o| {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": o})
    });
    Rules::compile(s)
        .validate(s, &object, old.as_ref())
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn with_rules(rules: Value) -> Value {
    json!({"type": "object", "x-kubernetes-validations": rules, "properties": {
        "replicas": {"type": "integer"},
        "color": {"type": "string"},
        "name": {"type": "string"},
    }})
}

#[test]
fn a_rule_that_does_not_compile_refuses_the_definition() {
    let causes = refused(with_rules(json!([{"rule": "self.replicas =="}])));
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert!(
        causes[0].starts_with(concat!(
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule: ",
            r#"Invalid value: apiextensions.ValidationRule{Rule:"self.replicas ==", Message:"", MessageExpression:"", "#,
            r#"Reason:(*apiextensions.FieldValueErrorReason)(nil), FieldPath:"", OptionalOldSelf:(*bool)(nil)}: "#,
            "compilation failed: ERROR: <input>:1:17: Syntax error: "
        )),
        "{causes:?}"
    );
    assert!(
        causes[0].ends_with("\n | self.replicas ==\n | ................^"),
        "{causes:?}"
    );

    let causes = refused(with_rules(json!([{"rule": "replicas > 1"}])));
    assert!(
        causes[0].ends_with("compilation failed: ERROR: <input>:1:1: undeclared reference to 'replicas' (in container '')\n | replicas > 1\n | ^"),
        "{causes:?}"
    );

    let causes = refused(with_rules(
        json!([{"rule": "true", "messageExpression": "'a' +"}]),
    ));
    assert!(
        causes[0].contains(".x-kubernetes-validations[0].messageExpression: Invalid value: apiextensions.ValidationRule{")
            && causes[0].contains("messageExpression compilation failed: ERROR: <input>:1:6: Syntax error"),
        "{causes:?}"
    );
}

#[test]
fn old_self_only_where_values_correlate() {
    let causes = refused(json!({"type": "array", "items": {"type": "string",
        "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}));
    assert_eq!(
        causes,
        [concat!(
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].items.x-kubernetes-validations[0].rule: ",
            r#"Invalid value: "self == oldSelf": oldSelf cannot be used on the uncorrelatable portion of the schema within "#,
            "spec.versions[0].schema.openAPIV3Schema.properties[spec]"
        )]
    );
    let causes = refused(with_rules(
        json!([{"rule": "true", "optionalOldSelf": true}]),
    ));
    assert_eq!(
        causes,
        [
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].optionalOldSelf: Invalid value: true: may not be set if oldSelf is not used in rule"
        ]
    );
    let causes = refused(with_rules(json!([{"rule": "true", "fieldPath": ".nope"}])));
    assert_eq!(
        causes,
        [
            r#"spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].fieldPath: Invalid value: ".nope": fieldPath must be a valid path"#
        ]
    );
    // Map lists correlate by key: oldSelf is fine there.
    schema(json!({"type": "array", "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}},
            "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}));
}

#[test]
fn rules_pass_and_fail_with_upstream_messages() {
    let s = schema(with_rules(json!([
        {"rule": "self.replicas <= 5 || self.color != 'red'",
         "message": "replicas must be at most 5 when color is red"},
        {"rule": "self.replicas >= 0"},
    ])));
    assert!(run(&s, json!({"replicas": 3, "color": "red"}), None).is_empty());
    assert_eq!(
        run(&s, json!({"replicas": 7, "color": "red"}), None),
        [r#"spec: Invalid value: "object": replicas must be at most 5 when color is red"#]
    );
    assert_eq!(
        run(&s, json!({"replicas": -1, "color": "blue"}), None),
        [r#"spec: Invalid value: "object": failed rule: self.replicas >= 0"#]
    );
}

#[test]
fn message_expression_reason_and_field_path() {
    let s = schema(with_rules(json!([
        {"rule": "self.replicas < 10", "messageExpression": "'too many: ' + string(self.replicas)",
         "reason": "FieldValueForbidden", "fieldPath": ".replicas"},
        {"rule": "self.color != 'red'", "reason": "FieldValueRequired", "message": "no red"},
        {"rule": "self.color != 'blue'", "reason": "FieldValueDuplicate"},
        {"rule": "self.color != 'green'", "messageExpression": "''", "message": "fallback"},
    ])));
    assert_eq!(
        run(&s, json!({"replicas": 12, "color": "red"}), None),
        [
            "spec.replicas: Forbidden: too many: 12",
            "spec: Required value: no red"
        ]
    );
    assert_eq!(
        run(&s, json!({"replicas": 1, "color": "blue"}), None),
        [r#"spec: Duplicate value: "object""#]
    );
    assert_eq!(
        run(&s, json!({"replicas": 1, "color": "green"}), None),
        [r#"spec: Invalid value: "object": fallback"#]
    );
}

#[test]
fn transition_rules_run_on_update_only() {
    let s = schema(with_rules(json!([
        {"rule": "self.replicas >= oldSelf.replicas", "message": "replicas may not decrease"},
        {"rule": "oldSelf.hasValue() || self.color == 'red'", "optionalOldSelf": true,
         "message": "new widgets are red"},
    ])));
    assert!(run(&s, json!({"replicas": 1, "color": "red"}), None).is_empty());
    assert_eq!(
        run(&s, json!({"replicas": 1, "color": "blue"}), None),
        [r#"spec: Invalid value: "object": new widgets are red"#]
    );
    assert!(
        run(
            &s,
            json!({"replicas": 3, "color": "blue"}),
            Some(json!({"replicas": 2, "color": "blue"}))
        )
        .is_empty()
    );
    assert_eq!(
        run(
            &s,
            json!({"replicas": 1, "color": "blue"}),
            Some(json!({"replicas": 2, "color": "blue"}))
        ),
        [r#"spec: Invalid value: "object": replicas may not decrease"#]
    );
}

#[test]
fn rules_on_list_items_and_map_values() {
    let s = schema(json!({"type": "object", "properties": {
        "ports": {"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "port": {"type": "integer"}},
                "x-kubernetes-validations": [
                    {"rule": "self.port > 0", "message": "port must be positive"},
                    {"rule": "self.port == oldSelf.port", "message": "port is immutable"}]}},
        "labels": {"type": "object", "additionalProperties": {"type": "string",
            "x-kubernetes-validations": [{"rule": "self.size() <= 3"}]}},
        "tags": {"type": "array", "items": {"type": "string"},
            "x-kubernetes-validations": [{"rule": "self.isSorted()", "message": "sorted"}]},
    }}));
    assert_eq!(
        run(
            &s,
            json!({"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 0}],
            "labels": {"x": "abc", "y": "abcd"}, "tags": ["b", "a"]}),
            None
        ),
        [
            r#"spec.labels[y]: Invalid value: "string": failed rule: self.size() <= 3"#,
            r#"spec.ports[1]: Invalid value: "object": port must be positive"#,
            r#"spec.tags: Invalid value: "array": sorted"#,
        ]
    );
    // Items correlate by key: the moved item keeps its port, the new one has no oldSelf.
    let old = json!({"ports": [{"name": "b", "port": 2}, {"name": "a", "port": 1}]});
    assert_eq!(
        run(
            &s,
            json!({"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 3}, {"name": "c", "port": 4}]}),
            Some(old)
        ),
        [r#"spec.ports[1]: Invalid value: "object": port is immutable"#]
    );
}

#[test]
fn runtime_errors_and_library() {
    let s = schema(json!({"type": "object", "properties": {
    "name": {"type": "string"},
    "replicas": {"type": "integer"}},
    "x-kubernetes-validations": [
        {"rule": "self.name.lowerAscii().trim() == 'web' && ['a','b'].join('-') == 'a-b' && self.name.split('x').size() == 1 && [3, 1].indexOf(1) == 1 && [1, 2].sum() == 3 && 'abc123'.find('[0-9]+') == '123'",
         "message": "library"},
        {"rule": "self.replicas > 0", "message": "positive"},
        {"rule": "1 / (self.name.size() - 3) == 0"},
    ]}));
    assert!(run(&s, json!({"name": " WEB ", "replicas": 1}), None).is_empty());
    assert_eq!(
        run(&s, json!({"name": "web"}), None),
        [
            r#"spec: Invalid value: "object": no such key: replicas evaluating rule: positive"#,
            r#"spec: Invalid value: "object": division by zero evaluating rule: 1 / (self.name.size() - 3) == 0"#,
        ]
    );
}

#[test]
fn runaway_rules_are_refused() {
    let s = schema(json!({"type": "object", "properties": {
        "items": {"type": "array", "items": {"type": "integer"}}},
        "x-kubernetes-validations": [
            {"rule": "self.items.all(a, self.items.all(b, self.items.all(c, a + b + c >= 0)))"},
            {"rule": "false"}]}));
    let items: Vec<i64> = (0..200).collect();
    assert_eq!(
        run(&s, json!({"items": items}), None),
        [
            r#"spec: Invalid value: "object": 'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: self.items.all(a, self.items.all(b, self.items.all(c, a + b + c >= 0)))"#
        ]
    );
    // Small data runs.
    assert_eq!(
        run(&s, json!({"items": [1, 2]}), None),
        [r#"spec: Invalid value: "object": failed rule: false"#]
    );
}

#[test]
fn the_root_is_the_nil_path_and_sees_type_and_object_meta() {
    let root = json!({"type": "object", "properties": {"spec": {"type": "object"}},
        "x-kubernetes-validations": [
            {"rule": "self.metadata.name == 'w' && self.kind == 'Widget' && !has(self.metadata.labels)"},
            {"rule": "self.metadata.name != 'w'"}]});
    let s = Structural::parse(&root, PATH).unwrap_or_default();
    let object = json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "b"}}, "spec": {}});
    let causes: Vec<String> = Rules::compile(&s)
        .validate(&s, &object, None)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        causes,
        [r#"<nil>: Invalid value: "object": failed rule: self.metadata.name != 'w'"#]
    );
}

#[test]
fn any_text_and_any_shape_never_panic() {
    for rule in [
        "",
        "(",
        "self.",
        "'\u{1F600}' ==",
        "[?",
        "{",
        "a.b.c(",
        "1 +\n2 ==",
        "self[",
        "\\",
        "0x",
        "1.99e90000009",
    ] {
        let root =
            json!({"type": "object", "x-kubernetes-validations": [{"rule": rule, "message": "m"}]});
        let _ = Structural::parse(&root, PATH);
    }
    let s = schema(
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-validations": [{"rule": "self.a.b[0] == self.c"}, {"rule": "self"}]}),
    );
    for spec in [
        json!({}),
        json!({"a": 1}),
        json!({"a": {"b": []}}),
        json!({"a": {"b": [1]}, "c": "x"}),
    ] {
        let _ = run(&s, spec, Some(json!([1])));
    }
}
