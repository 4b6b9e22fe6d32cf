//! Tests of the schema engine: messages and paths as kube-apiserver 1.33 reports them.

use serde_json::{Value, json};

use super::*;
use crate::apiserver::machinery::field::Cause;

const ROOT: &str = "spec.versions[0].schema.openAPIV3Schema";

/// A root schema with `spec` of the given properties.
fn with_spec(props: Value) -> Structural {
    let schema = json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": props}}
    });
    match Structural::parse(&schema, ROOT) {
        Ok(s) => s,
        Err(e) => panic!("schema rejected: {e:#?}"),
    }
}

fn msgs(causes: &[Cause]) -> Vec<String> {
    causes.iter().map(ToString::to_string).collect()
}

fn check(s: &Structural, spec: Value) -> Vec<String> {
    msgs(&s.validate(
        &json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"}, "spec": spec}),
    ))
}

fn parse_errs(schema: Value) -> Vec<String> {
    match Structural::parse(&schema, ROOT) {
        Ok(_) => Vec::new(),
        Err(e) => msgs(&e),
    }
}

// --- validation: keywords -----------------------------------------------------------------

#[test]
fn type_mismatch() {
    let s = with_spec(json!({"replicas": {"type": "integer"}}));
    assert!(check(&s, json!({"replicas": 3})).is_empty());
    assert_eq!(
        check(&s, json!({"replicas": "string"})),
        [
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        ]
    );
    let c = s.validate(&json!({"spec": {"replicas": true}}));
    assert_eq!(c[0].reason, CauseReason::TypeInvalid);
    assert_eq!(
        c[0].message,
        r#"Invalid value: "boolean": spec.replicas in body must be of type integer: "boolean""#
    );
}

#[test]
fn integral_float_is_an_integer_and_fraction_is_not() {
    let s = with_spec(json!({"n": {"type": "integer"}}));
    assert!(check(&s, json!({"n": 2.0})).is_empty());
    assert_eq!(
        check(&s, json!({"n": 2.5})),
        [r#"spec.n: Invalid value: "number": spec.n in body must be of type integer: "number""#]
    );
}

#[test]
fn null_needs_nullable() {
    let s = with_spec(json!({"a": {"type": "string"}, "b": {"type": "string", "nullable": true}}));
    assert!(check(&s, json!({"b": null})).is_empty());
    assert_eq!(
        check(&s, json!({"a": null})),
        [r#"spec.a: Invalid value: "null": spec.a in body must be of type string: "null""#]
    );
}

#[test]
fn required_property() {
    let schema = json!({"type": "object", "properties": {"spec": {
        "type": "object", "required": ["image"], "properties": {"image": {"type": "string"}}}}});
    let s = Structural::parse(&schema, ROOT).unwrap_or_default();
    assert!(check(&s, json!({"image": "nginx"})).is_empty());
    assert_eq!(check(&s, json!({})), ["spec.image: Required value"]);
}

#[test]
fn required_at_root_has_no_leading_dot() {
    let schema =
        json!({"type": "object", "required": ["spec"], "properties": {"spec": {"type": "object"}}});
    let s = Structural::parse(&schema, ROOT).unwrap_or_default();
    assert_eq!(
        msgs(&s.validate(&json!({"metadata": {}}))),
        ["spec: Required value"]
    );
}

#[test]
fn enum_values() {
    let s = with_spec(
        json!({"color": {"type": "string", "enum": ["red", "green"]}, "n": {"type": "integer", "enum": [1, 2]}}),
    );
    assert!(check(&s, json!({"color": "red", "n": 2})).is_empty());
    assert_eq!(
        check(&s, json!({"color": "purple"})),
        [r#"spec.color: Unsupported value: "purple": supported values: "red", "green""#]
    );
    assert_eq!(
        check(&s, json!({"n": 3})),
        [r#"spec.n: Unsupported value: 3: supported values: "1", "2""#]
    );
}

#[test]
fn minimum_and_maximum() {
    let s = with_spec(json!({
        "r": {"type": "integer", "minimum": 1, "maximum": 10},
        "x": {"type": "number", "minimum": 0.5, "exclusiveMinimum": true, "maximum": 1000000, "exclusiveMaximum": true}
    }));
    assert!(check(&s, json!({"r": 1, "x": 0.75})).is_empty());
    assert_eq!(
        check(&s, json!({"r": 0})),
        ["spec.r: Invalid value: 0: spec.r in body should be greater than or equal to 1"]
    );
    assert_eq!(
        check(&s, json!({"r": 11})),
        ["spec.r: Invalid value: 11: spec.r in body should be less than or equal to 10"]
    );
    assert_eq!(
        check(&s, json!({"x": 0.5})),
        ["spec.x: Invalid value: 0.5: spec.x in body should be greater than 0.5"]
    );
    assert_eq!(
        check(&s, json!({"x": 2000000.5})),
        ["spec.x: Invalid value: 2.0000005e+06: spec.x in body should be less than 1e+06"]
    );
}

#[test]
fn multiple_of() {
    let s = with_spec(
        json!({"i": {"type": "integer", "multipleOf": 3}, "f": {"type": "number", "multipleOf": 0.5}}),
    );
    assert!(check(&s, json!({"i": 9, "f": 1.5})).is_empty());
    assert_eq!(
        check(&s, json!({"i": 10})),
        ["spec.i: Invalid value: 10: spec.i in body should be a multiple of 3"]
    );
    assert_eq!(
        check(&s, json!({"f": 1.2})),
        ["spec.f: Invalid value: 1.2: spec.f in body should be a multiple of 0.5"]
    );
}

#[test]
fn max_length_counts_code_points() {
    let s = with_spec(json!({"name": {"type": "string", "maxLength": 5}}));
    assert!(check(&s, json!({"name": "ééééé"})).is_empty());
    let c = s.validate(&json!({"spec": {"name": "abcdef"}}));
    assert_eq!(
        msgs(&c),
        ["spec.name: Too long: may not be more than 5 bytes"]
    );
    assert_eq!(c[0].reason, CauseReason::TooLong);
}

#[test]
fn min_length() {
    let s = with_spec(json!({"name": {"type": "string", "minLength": 3}}));
    assert!(check(&s, json!({"name": "abc"})).is_empty());
    assert_eq!(
        check(&s, json!({"name": "ab"})),
        [r#"spec.name: Invalid value: "ab": spec.name in body should be at least 3 chars long"#]
    );
}

#[test]
fn pattern_match() {
    let s = with_spec(json!({"x": {"type": "string", "pattern": "^[0-9]+$"}}));
    assert!(check(&s, json!({"x": "123"})).is_empty());
    assert_eq!(
        check(&s, json!({"x": "abc"})),
        [r#"spec.x: Invalid value: "abc": spec.x in body should match '^[0-9]+$'"#]
    );
}

#[test]
fn pattern_engine_semantics() {
    let m = |p: &str, s: &str| pattern_matches(p, s).unwrap_or_else(|e| panic!("{e}"));
    assert!(m("ab", "xaby"), "unanchored search");
    assert!(m("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "my-name"));
    assert!(!m("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "my-name-"));
    assert!(m(r"^\d{2,3}$", "123") && !m(r"^\d{2,3}$", "1234"));
    assert!(m("(?i)^abc$", "AbC") && !m("^abc$", "AbC"));
    assert!(m("^(foo|bar)+$", "foobarfoo") && !m("^(foo|bar)+$", "foobaz"));
    assert!(
        m(r"^[^/]+\.example\.com$", "a.example.com")
            && !m(r"^[^/]+\.example\.com$", "a/b.example.com")
    );
    assert!(m(r"\bword\b", "a word here") && !m(r"\bword\b", "swordfish"));
    assert_eq!(
        pattern_matches("(abc", ""),
        Err("error parsing regexp: unclosed group: `(abc`".to_string())
    );
    assert_eq!(
        pattern_matches("*a", ""),
        Err("error parsing regexp: repetition operator missing expression: `*a`".to_string())
    );
}

#[test]
fn max_and_min_items() {
    let s = with_spec(
        json!({"list": {"type": "array", "items": {"type": "string"}, "maxItems": 2, "minItems": 1}}),
    );
    assert!(check(&s, json!({"list": ["a"]})).is_empty());
    assert_eq!(
        check(&s, json!({"list": ["a", "b", "c"]})),
        ["spec.list: Too many: 3: must have at most 2 items"]
    );
    assert_eq!(
        check(&s, json!({"list": []})),
        ["spec.list: Invalid value: 0: spec.list in body should have at least 1 items"]
    );
}

#[test]
fn items_are_validated_with_index_paths() {
    let s = with_spec(
        json!({"ports": {"type": "array", "items": {"type": "object",
        "required": ["name"], "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}}),
    );
    assert_eq!(
        check(&s, json!({"ports": [{"name": "a"}, {"port": "x"}]})),
        [
            r#"spec.ports[1].port: Invalid value: "string": spec.ports[1].port in body must be of type integer: "string""#,
            "spec.ports[1].name: Required value"
        ]
    );
}

#[test]
fn min_and_max_properties() {
    let s = with_spec(
        json!({"m": {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1, "maxProperties": 2}}),
    );
    assert!(check(&s, json!({"m": {"a": "1"}})).is_empty());
    assert_eq!(
        check(&s, json!({"m": {}})),
        ["spec.m: Invalid value: 0: spec.m in body should have at least 1 properties"]
    );
    assert_eq!(
        check(&s, json!({"m": {"a": "1", "b": "2", "c": "3"}})),
        ["spec.m: Too many: 3: must have at most 2 items"]
    );
}

#[test]
fn additional_properties_paths_use_dots() {
    let s = with_spec(
        json!({"labels": {"type": "object", "additionalProperties": {"type": "string"}}}),
    );
    assert!(check(&s, json!({"labels": {"a": "b"}})).is_empty());
    assert_eq!(
        check(&s, json!({"labels": {"key": 1}})),
        [
            r#"spec.labels.key: Invalid value: "integer": spec.labels.key in body must be of type string: "integer""#
        ]
    );
}

#[test]
fn formats() {
    let s = with_spec(json!({
        "t": {"type": "string", "format": "date-time"},
        "d": {"type": "string", "format": "date"},
        "u": {"type": "string", "format": "uuid"},
        "b": {"type": "string", "format": "byte"},
        "e": {"type": "string", "format": "email"},
        "v4": {"type": "string", "format": "ipv4"},
        "v6": {"type": "string", "format": "ipv6"},
        "c": {"type": "string", "format": "cidr"},
        "n": {"type": "integer", "format": "int32"},
        "z": {"type": "string", "format": "no-such-format"}
    }));
    let good = json!({"t": "2024-02-29T12:00:00Z", "d": "2024-02-29", "u": "123e4567-E89B-12d3-a456-426614174000",
        "b": "aGVsbG8=", "e": "a@example.com", "v4": "10.0.0.1", "v6": "::1", "c": "10.0.0.0/8", "n": 1, "z": "anything"});
    assert_eq!(check(&s, good), Vec::<String>::new());
    assert_eq!(
        check(&s, json!({"t": "2023-02-29T12:00:00Z"})),
        [
            r#"spec.t: Invalid value: "2023-02-29T12:00:00Z": spec.t in body must be of type date-time: "2023-02-29T12:00:00Z""#
        ]
    );
    let bad = json!({"d": "2024-13-01", "u": "nope", "b": "a", "e": "x", "v4": "::1", "v6": "1.2.3.4", "c": "10.0.0.0/33"});
    let got = check(&s, bad);
    assert_eq!(got.len(), 7, "{got:#?}");
    assert!(
        got.contains(
            &r#"spec.u: Invalid value: "nope": spec.u in body must be of type uuid: "nope""#
                .to_string()
        )
    );
}

#[test]
fn all_of_any_of_one_of_not() {
    let s = with_spec(json!({
        "a": {"type": "integer", "anyOf": [{"minimum": 10}, {"maximum": 0}]},
        "o": {"type": "integer", "oneOf": [{"minimum": 0}, {"minimum": 5}]},
        "l": {"type": "integer", "allOf": [{"minimum": 0}, {"maximum": 5}]},
        "n": {"type": "string", "not": {"enum": ["bad"]}}
    }));
    assert!(check(&s, json!({"a": 11, "o": 1, "l": 3, "n": "good"})).is_empty());
    assert_eq!(
        check(&s, json!({"a": 5})),
        [
            r#"<nil>: Invalid value: "": "spec.a" must validate at least one schema (anyOf)"#,
            "spec.a: Invalid value: 5: spec.a in body should be greater than or equal to 10"
        ]
    );
    assert_eq!(
        check(&s, json!({"o": 6})),
        [
            r#"<nil>: Invalid value: "": "spec.o" must validate one and only one schema (oneOf). Found 2 valid alternatives"#
        ]
    );
    assert_eq!(
        check(&s, json!({"l": 6})),
        [
            "spec.l: Invalid value: 6: spec.l in body should be less than or equal to 5",
            r#"<nil>: Invalid value: "": "spec.l" must validate all the schemas (allOf)"#
        ]
    );
    assert_eq!(
        check(&s, json!({"n": "bad"})),
        [r#"<nil>: Invalid value: "": "spec.n" must not validate the schema (not)"#]
    );
}

#[test]
fn int_or_string() {
    let s = with_spec(json!({"port": {"x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}]}}));
    assert!(check(&s, json!({"port": 80})).is_empty());
    assert!(check(&s, json!({"port": "http"})).is_empty());
    assert_eq!(
        check(&s, json!({"port": true}))[0],
        r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
    );
}

#[test]
fn root_metadata_only_name_restrictions() {
    let schema = json!({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}}},
        "spec": {"type": "object"}}});
    let s = Structural::parse(&schema, ROOT).unwrap_or_default();
    let ok = json!({"apiVersion": 1, "metadata": {"name": "abc", "labels": {"a": "b"}}});
    assert!(s.validate(&ok).is_empty());
    assert_eq!(
        msgs(&s.validate(&json!({"metadata": {"name": "abcd"}}))),
        ["metadata.name: Too long: may not be more than 3 bytes"]
    );
}

#[test]
fn embedded_resource_type_meta() {
    let s = with_spec(
        json!({"tpl": {"type": "object", "x-kubernetes-embedded-resource": true,
        "x-kubernetes-preserve-unknown-fields": true}}),
    );
    assert!(
        check(
            &s,
            json!({"tpl": {"apiVersion": "v1", "kind": "Pod", "metadata": {}}})
        )
        .is_empty()
    );
    assert_eq!(
        check(&s, json!({"tpl": {"metadata": {}}})),
        [
            "spec.tpl.apiVersion: Required value",
            "spec.tpl.kind: Required value"
        ]
    );
    assert_eq!(
        check(&s, json!({"tpl": {"apiVersion": "a/b/c", "kind": "Pod"}})),
        [r#"spec.tpl.apiVersion: Invalid value: "a/b/c": unexpected GroupVersion string: a/b/c"#]
    );
    assert_eq!(
        check(&s, json!({"tpl": {"apiVersion": "v1", "kind": 5}})),
        ["spec.tpl.kind: Invalid value: 5: must be a string"]
    );
}

#[test]
fn list_type_set_duplicates() {
    let s = with_spec(
        json!({"tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}),
    );
    assert!(check(&s, json!({"tags": ["a", "b"]})).is_empty());
    let c = s.validate(&json!({"spec": {"tags": ["a", "b", "a", "a"]}}));
    assert_eq!(msgs(&c), [r#"spec.tags[2]: Duplicate value: "a""#]);
    assert_eq!(c[0].reason, CauseReason::Duplicate);
}

#[test]
fn list_type_map_duplicate_keys() {
    let s = with_spec(
        json!({"ports": {"type": "array", "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}}}),
    );
    assert!(check(&s, json!({"ports": [{"name": "a"}, {"name": "b"}]})).is_empty());
    assert_eq!(
        check(
            &s,
            json!({"ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]})
        ),
        [r#"spec.ports[1]: Duplicate value: map[string]interface {}{"name":"a"}"#]
    );
}

#[test]
fn unique_items_in_value_validation_reports_duplicates() {
    // uniqueItems cannot be declared by a CRD; the validator still implements it for defaults.
    let s = Structural {
        type_: "array".into(),
        unique_items: true,
        ..Structural::default()
    };
    let causes = validate::validate_default(&s, &json!([1, 1]), "x.default");
    assert_eq!(
        msgs(&causes),
        [r#"x.default: Invalid value: "":  in body shouldn't contain duplicates"#]
    );
}

// --- pruning -------------------------------------------------------------------------------

#[test]
fn prune_nested_and_arrays() {
    let s = with_spec(
        json!({"a": {"type": "object", "properties": {"b": {"type": "string"}}},
        "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}),
    );
    let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n", "whatever": 1},
        "spec": {"a": {"b": "keep", "c": 1}, "foo": true, "items": [{"name": "x", "bar": 2}]}, "extra": 1});
    let removed = s.prune(&mut obj);
    assert_eq!(
        removed,
        ["extra", "spec.a.c", "spec.foo", "spec.items[0].bar"]
    );
    assert_eq!(
        obj,
        json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n", "whatever": 1},
            "spec": {"a": {"b": "keep"}, "items": [{"name": "x"}]}})
    );
}

#[test]
fn prune_additional_properties_values() {
    let s = with_spec(
        json!({"m": {"type": "object", "additionalProperties": {"type": "object", "properties": {"x": {"type": "string"}}}}}),
    );
    let mut obj = json!({"spec": {"m": {"k": {"x": "1", "y": "2"}}}});
    assert_eq!(s.prune(&mut obj), ["spec.m.k.y"]);
    assert_eq!(obj, json!({"spec": {"m": {"k": {"x": "1"}}}}));
}

#[test]
fn prune_keeps_preserved_subtree_but_prunes_declared_children() {
    let s = with_spec(
        json!({"free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
        "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}}}),
    );
    let mut obj = json!({"spec": {"free": {"anything": {"deep": 1}, "known": {"a": "1", "b": 2}}}});
    assert_eq!(s.prune(&mut obj), ["spec.free.known.b"]);
    assert_eq!(
        obj,
        json!({"spec": {"free": {"anything": {"deep": 1}, "known": {"a": "1"}}}})
    );
}

#[test]
fn prune_embedded_resource_keeps_type_and_object_meta() {
    let s = with_spec(
        json!({"tpl": {"type": "object", "x-kubernetes-embedded-resource": true,
        "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}}}),
    );
    let mut obj = json!({"spec": {"tpl": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "zzz": 1},
        "spec": {"x": "1", "y": 2}, "status": {}}}});
    assert_eq!(s.prune(&mut obj), ["spec.tpl.spec.y", "spec.tpl.status"]);
    assert_eq!(
        obj,
        json!({"spec": {"tpl": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "zzz": 1}, "spec": {"x": "1"}}}})
    );
}

// --- defaulting ----------------------------------------------------------------------------

#[test]
fn defaults_nested_top_down() {
    let s = with_spec(json!({"replicas": {"type": "integer", "default": 1},
        "strategy": {"type": "object", "default": {}, "properties": {"kind": {"type": "string", "default": "Rolling"}}}}));
    let mut obj = json!({"spec": {}});
    s.apply_defaults(&mut obj);
    assert_eq!(
        obj,
        json!({"spec": {"replicas": 1, "strategy": {"kind": "Rolling"}}})
    );
}

#[test]
fn defaults_do_not_override_present_values() {
    let s = with_spec(json!({"replicas": {"type": "integer", "default": 1}}));
    let mut obj = json!({"spec": {"replicas": 5}});
    s.apply_defaults(&mut obj);
    assert_eq!(obj, json!({"spec": {"replicas": 5}}));
}

#[test]
fn defaults_inside_array_items_and_additional_properties() {
    let s = with_spec(json!({
        "ports": {"type": "array", "items": {"type": "object", "properties": {"protocol": {"type": "string", "default": "TCP"}}}},
        "m": {"type": "object", "additionalProperties": {"type": "object", "properties": {"on": {"type": "boolean", "default": true}}}}
    }));
    let mut obj = json!({"spec": {"ports": [{"name": "a"}, {"protocol": "UDP"}], "m": {"k": {}}}});
    s.apply_defaults(&mut obj);
    assert_eq!(
        obj,
        json!({"spec": {"ports": [{"name": "a", "protocol": "TCP"}, {"protocol": "UDP"}], "m": {"k": {"on": true}}}})
    );
}

#[test]
fn defaults_replace_null_unless_nullable() {
    let s = with_spec(
        json!({"a": {"type": "string", "default": "x"}, "b": {"type": "string", "nullable": true, "default": "y"}}),
    );
    let mut obj = json!({"spec": {"a": null, "b": null}});
    s.apply_defaults(&mut obj);
    assert_eq!(obj, json!({"spec": {"a": "x", "b": null}}));
}

#[test]
fn non_nullable_nulls_without_defaults_are_dropped() {
    let s = with_spec(json!({"a": {"type": "string"}, "b": {"type": "string", "nullable": true}}));
    let mut obj = json!({"spec": {"a": null, "b": null}});
    s.drop_non_nullable_nulls(&mut obj);
    assert_eq!(obj, json!({"spec": {"b": null}}));
}

// --- structural errors at CRD creation -----------------------------------------------------

#[test]
fn type_required_for_object_fields() {
    assert_eq!(
        parse_errs(json!({"type": "object", "properties": {"spec": {"properties": {}}}})),
        [format!(
            "{ROOT}.properties[spec].type: Required value: must not be empty for specified object fields"
        )]
    );
    assert_eq!(
        parse_errs(json!({"type": "object", "properties": {"l": {"type": "array", "items": {}}}})),
        [format!(
            "{ROOT}.properties[l].items.type: Required value: must not be empty for specified array items"
        )]
    );
}

#[test]
fn root_must_be_object() {
    assert_eq!(
        parse_errs(json!({"type": "string"})),
        [format!(
            r#"{ROOT}.type: Invalid value: "string": must be object at the root"#
        )]
    );
    assert_eq!(
        parse_errs(json!({})),
        [format!(
            "{ROOT}.type: Required value: must not be empty at the root"
        )]
    );
}

#[test]
fn root_metadata_restricted() {
    assert!(
        parse_errs(
            json!({"type": "object", "properties": {"metadata": {"type": "object",
        "properties": {"name": {"type": "string", "maxLength": 5}}}}})
        )
        .is_empty()
    );
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"metadata": {"type": "object",
            "properties": {"labels": {"type": "object"}}}}})
        ),
        [format!(
            "{ROOT}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
        )]
    );
}

#[test]
fn array_requires_items() {
    assert_eq!(
        parse_errs(json!({"type": "object", "properties": {"l": {"type": "array"}}})),
        [format!(
            "{ROOT}.properties[l].items: Required value: must be specified"
        )]
    );
}

#[test]
fn value_validations_must_not_declare_structure() {
    let errs = parse_errs(
        json!({"type": "object", "properties": {"a": {"type": "string",
        "allOf": [{"type": "string", "nullable": true}]}}}),
    );
    assert_eq!(
        errs,
        [
            format!(
                "{ROOT}.properties[a].allOf[0].nullable: Forbidden: must be false to be structural"
            ),
            format!(
                "{ROOT}.properties[a].allOf[0].type: Forbidden: must be empty to be structural"
            ),
        ]
    );
}

#[test]
fn value_validation_properties_must_be_in_structure() {
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"a": {"type": "string"}},
            "anyOf": [{"properties": {"b": {}}}]})
        ),
        [format!(
            "{ROOT}.properties[b]: Required value: because it is defined in {ROOT}.anyOf[0].properties[b]"
        )]
    );
}

#[test]
fn int_or_string_patterns_accepted_and_combinations_rejected() {
    assert!(
        parse_errs(
            json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true,
        "anyOf": [{"type": "integer"}, {"type": "string"}]}}})
        )
        .is_empty()
    );
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"p": {"x-kubernetes-int-or-string": true,
            "x-kubernetes-preserve-unknown-fields": true}}})
        ),
        [format!(
            "{ROOT}.properties[p].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true"
        )]
    );
}

#[test]
fn unique_items_ref_and_additional_properties_rules() {
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"l": {"type": "array", "uniqueItems": true, "items": {"type": "string"}}}})
        ),
        [format!(
            "{ROOT}.properties[l].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
        )]
    );
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"r": {"type": "object", "$ref": "#/x"}}})
        ),
        [format!(
            "{ROOT}.properties[r].$ref: Forbidden: $ref is not supported"
        )]
    );
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"m": {"type": "object",
            "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}}}})
        ),
        [format!(
            "{ROOT}.properties[m].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
        )]
    );
    assert_eq!(
        parse_errs(json!({"type": "object", "additionalProperties": {"type": "string"}})),
        [format!(
            "{ROOT}.additionalProperties: Forbidden: must not be used at the root"
        )]
    );
}

#[test]
fn defaults_must_validate_and_be_pruned() {
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"r": {"type": "integer", "default": "x"}}})
        ),
        [format!(
            r#"{ROOT}.properties[r].default: Invalid value: "string":  in body must be of type integer: "string""#
        )]
    );
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"o": {"type": "object",
            "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": 1}}}})
        ),
        [format!(
            r#"{ROOT}.properties[o].default: Invalid value: map[string]interface {{}}{{"a":"x", "b":1}}: must not have unknown fields"#
        )]
    );
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"metadata": {"type": "object", "default": {}}}})
        ),
        [format!(
            "{ROOT}.properties[metadata].default: Forbidden: must not be set in top-level metadata"
        )]
    );
}

#[test]
fn list_type_rules() {
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map",
            "items": {"type": "object", "properties": {"a": {"type": "string"}}}}}})
        ),
        [format!(
            "{ROOT}.properties[l].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
        )]
    );
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "bag",
            "items": {"type": "string"}}}})
        ),
        [format!(
            r#"{ROOT}.properties[l].x-kubernetes-list-type: Unsupported value: "bag": supported values: "atomic", "set", "map""#
        )]
    );
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"l": {"type": "array", "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["k"], "items": {"type": "object", "properties": {"k": {"type": "string"}}}}}})
        ),
        [format!(
            "{ROOT}.properties[l].items.properties[k].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
        )]
    );
}

#[test]
fn validations_are_kept_raw_and_not_rejected() {
    let rule = json!({"rule": "self.a > 0", "message": "a must be positive"});
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object",
        "x-kubernetes-validations": [rule], "properties": {"a": {"type": "integer"}}}}});
    let s = Structural::parse(&schema, ROOT).unwrap_or_default();
    assert_eq!(s.properties["spec"].validations, vec![rule]);
    assert_eq!(
        parse_errs(json!({"type": "object", "x-kubernetes-validations": [{"rule": " "}]})),
        [format!(
            "{ROOT}.x-kubernetes-validations[0].rule: Required value: rule is not specified"
        )]
    );
}

#[test]
fn malformed_schemas_give_causes_not_panics() {
    assert_eq!(
        parse_errs(json!({"type": 5})),
        [format!("{ROOT}.type: Invalid value: 5: must be a string")]
    );
    assert_eq!(
        parse_errs(json!([1])),
        [format!("{ROOT}: Invalid value: [1]: must be an object")]
    );
    assert_eq!(
        parse_errs(
            json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "(x"}}})
        ),
        [format!(
            r#"{ROOT}.properties[a].pattern: Invalid value: "(x": must be a valid regular expression, but isn't: error parsing regexp: unclosed group: `(x`"#
        )]
    );
    // A schema of odd shapes still validates arbitrary objects without panicking.
    let s = with_spec(json!({"x": {"type": "number", "multipleOf": 0.3, "maximum": 1e300}}));
    assert!(!check(&s, json!({"x": [1, {"a": null}]})).is_empty());
}

#[test]
fn at_path_and_type_name() {
    let s = with_spec(json!({"replicas": {"type": "integer", "format": "int32"},
        "m": {"type": "object", "additionalProperties": {"type": "string"}},
        "l": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "boolean"}}}}}));
    assert_eq!(
        s.at_path(".spec.replicas").map(Structural::type_name),
        Some("integer")
    );
    assert_eq!(
        s.at_path(".spec.replicas").map(Structural::format_name),
        Some("int32")
    );
    assert_eq!(
        s.at_path(".spec.m.anykey").map(Structural::type_name),
        Some("string")
    );
    assert_eq!(
        s.at_path(".spec.l[0].n").map(Structural::type_name),
        Some("boolean")
    );
    assert!(s.at_path(".spec.nope").is_none());
    assert_eq!(s.type_name(), "object");
}

#[test]
fn go_float_formatting() {
    assert_eq!(gofmt::go_float(1.0), "1");
    assert_eq!(gofmt::go_float(0.5), "0.5");
    assert_eq!(gofmt::go_float(123456.0), "123456");
    assert_eq!(gofmt::go_float(1e6), "1e+06");
    assert_eq!(gofmt::go_float(0.0001), "0.0001");
    assert_eq!(gofmt::go_float(0.00001), "1e-05");
}
