//! The checks a CRD's schema passes at creation: structural invariants and completeness
//! (apiextensions-apiserver `pkg/apiserver/schema/validation.go`, `complete.go`), default
//! values (`schema/defaulting/validation.go`) and the keyword rules of
//! `pkg/apis/apiextensions/validation/validation.go` (`ValidateCustomResourceDefinitionOpenAPISchema`,
//! `specStandardValidatorV3`, `validateMapListKeysMapSet`), with the options a new v1 CRD gets
//! (valid property types, atomic set items, map-list keys rules, pruned defaults).

use serde_json::Value;

use super::gofmt::go_value;
use super::pattern::pattern_matches;
use super::validate::{objectmeta, validate_default};
use super::{AdditionalProperties, Structural, cause, prune};
use crate::apiserver::custom_resources::cel;
use crate::apiserver::machinery::field::{Cause, CauseReason, child, go_strings, idx, key, q};

/// Every cause for the schema at `path`, in upstream's order: root nullable, then either the
/// structural errors (sorted by message) or the default-value errors, then keyword rules.
pub(super) fn check(s: &Structural, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if s.nullable {
        out.push(cause(
            CauseReason::Forbidden,
            &child(path, "nullable"),
            None,
            "nullable cannot be true at the root",
        ));
    }
    let mut structural = Vec::new();
    invariants(&mut structural, s, Level::Root, path);
    value_completeness(&mut structural, s, s, path, path);
    structural.sort_by_key(ToString::to_string);
    if structural.is_empty() {
        defaults(&mut out, s, path, true, false);
    } else {
        out.extend(structural);
    }
    let ssv = Ssv {
        defaults_forbidden: None,
        inside_meta: false,
    };
    keyword_rules(&mut out, s, path, &ssv, true);
    // Rules are compiled only where the schema is otherwise valid (at and below the node), and
    // their errors come after every schema error, as upstream's CELErrors.
    let mut cel = Vec::new();
    cel_rules(&mut cel, &out, s, path, None);
    out.extend(cel);
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Item,
    Field,
}

fn push(out: &mut Vec<Cause>, reason: CauseReason, field: &str, value: Option<&str>, detail: &str) {
    out.push(cause(reason, field, value, detail));
}

// ---------------------------------------------------------------------------------------------
// validateStructuralInvariants
// ---------------------------------------------------------------------------------------------

fn invariants(out: &mut Vec<Cause>, s: &Structural, lvl: Level, path: &str) {
    use CauseReason::{Forbidden, Invalid, Required};
    if s.type_ == "array" && s.items.is_none() {
        push(
            out,
            Required,
            &child(path, "items"),
            None,
            "must be specified",
        );
    }
    if let Some(items) = &s.items {
        invariants(out, items, Level::Item, &child(path, "items"));
    }
    for (k, p) in &s.properties {
        invariants(out, p, Level::Field, &key(&child(path, "properties"), k));
    }
    if let Some(ap) = &s.additional_properties {
        let ap_path = child(path, "additionalProperties");
        if lvl == Level::Root {
            push(
                out,
                Forbidden,
                &ap_path,
                None,
                "must not be used at the root",
            );
        }
        if let Some(sub) = ap.schema() {
            invariants(out, sub, Level::Field, &ap_path);
        }
    }
    if s.x_int_or_string && s.preserves() {
        push(
            out,
            Invalid,
            &child(path, "x-kubernetes-preserve-unknown-fields"),
            Some("true"),
            "must be false if x-kubernetes-int-or-string is true",
        );
    }
    if s.x_int_or_string && s.x_embedded_resource {
        push(
            out,
            Invalid,
            &child(path, "x-kubernetes-embedded-resource"),
            Some("true"),
            "must be false if x-kubernetes-int-or-string is true",
        );
    }
    let skip_any_of = is_int_or_string_any_of(&s.any_of);
    let skip_first_all_of = s
        .all_of
        .first()
        .is_some_and(|a| is_int_or_string_any_of(&a.any_of));
    value_validation(out, s, skip_any_of, skip_first_all_of, lvl, path);

    let check_metadata = lvl == Level::Root || s.x_embedded_resource;
    let type_path = child(path, "type");
    if s.x_embedded_resource && s.type_ != "object" {
        let msg = "must be object if x-kubernetes-embedded-resource is true";
        if s.type_.is_empty() {
            push(out, Required, &type_path, None, msg);
        } else {
            push(out, Invalid, &type_path, Some(&q(&s.type_)), msg);
        }
    } else if s.type_.is_empty() && !s.x_int_or_string && !s.preserves() {
        let msg = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        push(out, Required, &type_path, None, msg);
    }
    if s.x_embedded_resource && s.additional_properties.is_some() {
        push(
            out,
            Forbidden,
            &child(path, "additionalProperties"),
            None,
            "must not be used if x-kubernetes-embedded-resource is set",
        );
    }
    if lvl == Level::Root && !s.type_.is_empty() && s.type_ != "object" {
        push(
            out,
            Invalid,
            &type_path,
            Some(&q(&s.type_)),
            "must be object at the root",
        );
    }
    let props = child(path, "properties");
    for name in ["kind", "apiVersion"] {
        if let Some(p) = s.properties.get(name).filter(|_| check_metadata)
            && p.type_ != "string"
        {
            push(
                out,
                Invalid,
                &child(&key(&props, name), "type"),
                Some(&q(&p.type_)),
                "must be string",
            );
        }
    }
    if let Some(meta) = s.properties.get("metadata") {
        metadata_invariants(out, meta, check_metadata, lvl, &key(&props, "metadata"));
    }
    if s.x_embedded_resource && !s.preserves() && s.properties.is_empty() {
        push(
            out,
            Required,
            &props,
            None,
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        );
    }
}

/// `anyOf: [{type: integer}, {type: string}]` exactly.
fn is_int_or_string_any_of(any_of: &[Structural]) -> bool {
    any_of.len() == 2
        && any_of[0].raw == serde_json::json!({"type": "integer"})
        && any_of[1].raw == serde_json::json!({"type": "string"})
}

fn metadata_invariants(out: &mut Vec<Cause>, m: &Structural, check: bool, lvl: Level, path: &str) {
    if check && m.type_ != "object" {
        push(
            out,
            CauseReason::Invalid,
            &child(path, "type"),
            Some(&q(&m.type_)),
            "must be object",
        );
    }
    if lvl != Level::Root {
        return;
    }
    // Only name and generateName may be restricted; type and default are checked elsewhere.
    let only_names = m
        .properties
        .keys()
        .all(|k| k == "name" || k == "generateName");
    let extra = !only_names
        || !m.description.is_empty()
        || !m.title.is_empty()
        || m.nullable
        || m.preserves()
        || m.x_embedded_resource
        || m.x_int_or_string
        || !m.x_list_map_keys.is_empty()
        || m.x_list_type.is_some()
        || m.x_map_type.is_some()
        || !m.validations.is_empty()
        || m.has_value_validation()
        || m.items.is_some()
        || m.additional_properties.is_some();
    if extra {
        push(
            out,
            CauseReason::Forbidden,
            path,
            None,
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        );
    }
}

/// `validateValueValidation`: the junctors of a node and its pattern.
fn value_validation(
    out: &mut Vec<Cause>,
    v: &Structural,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    lvl: Level,
    path: &str,
) {
    if !skip_any_of {
        for (i, x) in v.any_of.iter().enumerate() {
            nested(out, x, false, lvl, &idx(&child(path, "anyOf"), i));
        }
    }
    for (i, x) in v.all_of.iter().enumerate() {
        let skip = skip_first_all_of_any_of && i == 0;
        nested(out, x, skip, lvl, &idx(&child(path, "allOf"), i));
    }
    for (i, x) in v.one_of.iter().enumerate() {
        nested(out, x, false, lvl, &idx(&child(path, "oneOf"), i));
    }
    if let Some(not) = &v.not {
        nested(out, not, false, lvl, &child(path, "not"));
    }
    if !v.pattern.is_empty()
        && let Err(e) = pattern_matches(&v.pattern, "")
    {
        push(
            out,
            CauseReason::Invalid,
            &child(path, "pattern"),
            Some(&q(&v.pattern)),
            &format!("must be a valid regular expression, but isn't: {e}"),
        );
    }
}

/// `validateNestedValueValidation`: what a node under allOf/anyOf/oneOf/not may not declare.
fn nested(out: &mut Vec<Cause>, v: &Structural, skip_any_of: bool, lvl: Level, path: &str) {
    use CauseReason::Forbidden;
    value_validation(out, v, skip_any_of, false, lvl, path);
    if let Some(items) = &v.items {
        nested(out, items, false, lvl, &child(path, "items"));
    }
    for (k, p) in &v.properties {
        nested(
            out,
            p,
            false,
            Level::Field,
            &key(&child(path, "properties"), k),
        );
    }
    let rules: [(bool, &str, &str); 14] = [
        (
            !v.type_.is_empty(),
            "type",
            "must be empty to be structural",
        ),
        (
            v.additional_properties.is_some(),
            "additionalProperties",
            "must be undefined to be structural",
        ),
        (
            v.default.is_some(),
            "default",
            "must be undefined to be structural",
        ),
        (
            !v.title.is_empty(),
            "title",
            "must be empty to be structural",
        ),
        (
            !v.description.is_empty(),
            "description",
            "must be empty to be structural",
        ),
        (v.nullable, "nullable", "must be false to be structural"),
        (
            v.external_docs,
            "externalDocs",
            "must be undefined to be structural",
        ),
        (
            v.preserves(),
            "x-kubernetes-preserve-unknown-fields",
            "must be false to be structural",
        ),
        (
            v.x_embedded_resource,
            "x-kubernetes-embedded-resource",
            "must be false to be structural",
        ),
        (
            v.x_int_or_string,
            "x-kubernetes-int-or-string",
            "must be false to be structural",
        ),
        (
            !v.x_list_map_keys.is_empty(),
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        ),
        (
            v.x_list_type.is_some(),
            "x-kubernetes-list-type",
            "must be undefined to be structural",
        ),
        (
            v.x_map_type.is_some(),
            "x-kubernetes-map-type",
            "must be undefined to be structural",
        ),
        (
            !v.validations.is_empty(),
            "x-kubernetes-validations",
            "must be empty to be structural",
        ),
    ];
    for (bad, kw, msg) in rules {
        if bad {
            push(out, Forbidden, &child(path, kw), None, msg);
        }
    }
    if v.properties.contains_key("metadata") {
        push(
            out,
            Forbidden,
            &key(&child(path, "properties"), "metadata"),
            None,
            "must not be specified in a nested context",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// validateStructuralCompleteness (only the root's junctors, as upstream)
// ---------------------------------------------------------------------------------------------

fn value_completeness(
    out: &mut Vec<Cause>,
    v: &Structural,
    s: &Structural,
    spath: &str,
    vpath: &str,
) {
    if let Some(not) = &v.not {
        nested_completeness(out, not, Some(s), spath, &child(vpath, "not"));
    }
    for (name, list) in [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ] {
        for (i, x) in list.iter().enumerate() {
            nested_completeness(out, x, Some(s), spath, &idx(&child(vpath, name), i));
        }
    }
}

fn nested_completeness(
    out: &mut Vec<Cause>,
    v: &Structural,
    s: Option<&Structural>,
    spath: &str,
    vpath: &str,
) {
    let Some(s) = s else {
        push(
            out,
            CauseReason::Required,
            spath,
            None,
            &format!("because it is defined in {vpath}"),
        );
        return;
    };
    value_completeness(out, v, s, spath, vpath);
    if let Some(items) = &v.items {
        nested_completeness(
            out,
            items,
            s.items.as_deref(),
            &child(spath, "items"),
            &child(vpath, "items"),
        );
    }
    for (k, vf) in &v.properties {
        let sp = key(&child(spath, "properties"), k);
        let vp = key(&child(vpath, "properties"), k);
        match s.properties.get(k) {
            Some(sf) => nested_completeness(out, vf, Some(sf), &sp, &vp),
            None => push(
                out,
                CauseReason::Required,
                &sp,
                None,
                &format!("because it is defined in {vp}"),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ValidateDefaults
// ---------------------------------------------------------------------------------------------

const META_FIELDS: [&str; 3] = ["metadata", "apiVersion", "kind"];

/// Each `default` must survive pruning unchanged and validate against its own node. Defaults
/// inside TypeMeta/ObjectMeta (forbidden at the root anyway) are not checked here.
fn defaults(
    out: &mut Vec<Cause>,
    s: &Structural,
    path: &str,
    resource_root: bool,
    inside_meta: bool,
) {
    let embedded = resource_root || s.x_embedded_resource;
    let inside_meta = inside_meta && !embedded;
    if let (Some(d), false) = (&s.default, inside_meta) {
        let default_path = child(path, "default");
        let mut pruned = d.clone();
        prune::prune(&mut pruned, s, embedded);
        if &pruned != d {
            push(
                out,
                CauseReason::Invalid,
                &default_path,
                Some(&go_value(d)),
                "must not have unknown fields",
            );
        }
        // TypeMeta of embedded objects in the default (the default's own if it is one).
        let mut meta = Vec::new();
        objectmeta(&mut meta, &default_path, d, s, false);
        if meta.is_empty() {
            out.extend(validate_default(s, d, &default_path));
        } else {
            out.extend(meta);
        }
    }
    // additionalProperties are not followed: defaults are forbidden there.
    if let Some(items) = &s.items {
        defaults(out, items, &child(path, "items"), false, inside_meta);
    }
    for (k, p) in &s.properties {
        let sub_meta = inside_meta || (embedded && META_FIELDS.contains(&k.as_str()));
        defaults(out, p, &key(&child(path, "properties"), k), false, sub_meta);
    }
}

// ---------------------------------------------------------------------------------------------
// ValidateCustomResourceDefinitionOpenAPISchema
// ---------------------------------------------------------------------------------------------

/// `specStandardValidatorV3`'s state: why defaults are forbidden here, if they are, and
/// whether the node describes TypeMeta/ObjectMeta.
#[derive(Clone)]
struct Ssv {
    defaults_forbidden: Option<String>,
    inside_meta: bool,
}

const OPENAPI_V3_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];
const UNSUPPORTED_ORDER: [&str; 6] = [
    "id",
    "additionalItems",
    "patternProperties",
    "definitions",
    "dependencies",
    "$ref",
];

fn not_supported(out: &mut Vec<Cause>, field: &str, value: &str, valid: &[&str]) {
    let quoted: Vec<String> = valid.iter().map(|v| q(v)).collect();
    push(
        out,
        CauseReason::NotSupported,
        field,
        Some(&q(value)),
        &format!("supported values: {}", quoted.join(", ")),
    );
}

fn ssv_validate(out: &mut Vec<Cause>, s: &Structural, path: &str, ssv: &Ssv) {
    use CauseReason::Forbidden;
    if !s.type_.is_empty() && !OPENAPI_V3_TYPES.contains(&s.type_.as_str()) {
        not_supported(out, &child(path, "type"), &s.type_, &OPENAPI_V3_TYPES);
    }
    if let (Some(_), Some(reason)) = (&s.default, &ssv.defaults_forbidden) {
        push(
            out,
            Forbidden,
            &child(path, "default"),
            None,
            &format!("must not be set {reason}"),
        );
    }
    for kw in UNSUPPORTED_ORDER {
        for (k, msg) in s.unsupported.iter().filter(|(k, _)| *k == kw) {
            push(out, Forbidden, &child(path, k), None, msg);
        }
    }
    if s.type_ == "null" {
        push(
            out,
            Forbidden,
            &child(path, "type"),
            None,
            "type cannot be set to null, use nullable as an alternative",
        );
    }
    for (k, msg) in s.unsupported.iter().filter(|(k, _)| *k == "items") {
        push(out, Forbidden, &child(path, k), None, msg);
    }
    if ssv.inside_meta && s.x_embedded_resource {
        push(
            out,
            Forbidden,
            &child(path, "x-kubernetes-embedded-resource"),
            None,
            "must not be used inside of resource meta",
        );
    }
}

fn keyword_rules(out: &mut Vec<Cause>, s: &Structural, path: &str, ssv: &Ssv, is_root: bool) {
    use CauseReason::{Forbidden, Invalid, Required};
    ssv_validate(out, s, path, ssv);
    if s.unique_items {
        push(
            out,
            Forbidden,
            &child(path, "uniqueItems"),
            None,
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        );
    }
    if let Some(ap) = &s.additional_properties {
        let ap_path = child(path, "additionalProperties");
        if !s.properties.is_empty() && !matches!(ap, AdditionalProperties::Bool(true)) {
            push(
                out,
                Forbidden,
                &ap_path,
                None,
                "additionalProperties and properties are mutual exclusive",
            );
        }
        let mut sub = ssv.clone();
        if ssv.inside_meta {
            sub.defaults_forbidden =
                Some("inside additionalProperties applying to object metadata".into());
        }
        if let Some(schema) = ap.schema() {
            keyword_rules(out, schema, &ap_path, &sub, false);
        }
    }
    for (k, p) in &s.properties {
        let mut sub = ssv.clone();
        if (is_root || s.x_embedded_resource) && META_FIELDS.contains(&k.as_str()) {
            sub.inside_meta = true;
            if is_root {
                sub.defaults_forbidden = Some(format!("in top-level {k}"));
            }
        }
        keyword_rules(out, p, &key(&child(path, "properties"), k), &sub, false);
    }
    if let Some(not) = &s.not {
        keyword_rules(out, not, &child(path, "not"), ssv, false);
    }
    for (name, list) in [
        ("allOf", &s.all_of),
        ("oneOf", &s.one_of),
        ("anyOf", &s.any_of),
    ] {
        for (i, x) in list.iter().enumerate() {
            keyword_rules(out, x, &idx(&child(path, name), i), ssv, false);
        }
    }
    if let Some(items) = &s.items {
        keyword_rules(out, items, &child(path, "items"), ssv, false);
    }
    if s.x_preserve_unknown_fields == Some(false) {
        push(
            out,
            Invalid,
            &child(path, "x-kubernetes-preserve-unknown-fields"),
            Some("false"),
            "must be true or undefined",
        );
    }
    let type_path = child(path, "type");
    let type_rule = |out: &mut Vec<Cause>, want: &str, msg: &str| {
        if s.type_.is_empty() {
            push(out, Required, &type_path, None, msg);
        } else if s.type_ != want {
            push(out, Invalid, &type_path, Some(&q(&s.type_)), msg);
        }
    };
    if let Some(mt) = &s.x_map_type {
        type_rule(
            out,
            "object",
            "must be object if x-kubernetes-map-type is specified",
        );
        if mt != "atomic" && mt != "granular" {
            not_supported(
                out,
                &child(path, "x-kubernetes-map-type"),
                mt,
                &["atomic", "granular"],
            );
        }
    }
    let items_path = child(path, "items");
    if let Some(lt) = &s.x_list_type {
        if s.type_ != "array" {
            type_rule(
                out,
                "array",
                "must be array if x-kubernetes-list-type is specified",
            );
        } else if let (Some(is), true) = (&s.items, lt == "set") {
            let msg = "must be atomic as item of a list with x-kubernetes-list-type=set";
            // Upstream reports the item's list type as the value in both cases.
            let shown = is.x_list_type.as_deref().map_or_else(|| q("null"), q);
            match is.type_.as_str() {
                "array" if is.x_list_type.as_deref().is_some_and(|t| t != "atomic") => {
                    push(
                        out,
                        Invalid,
                        &child(&items_path, "x-kubernetes-list-type"),
                        Some(&shown),
                        msg,
                    );
                }
                "object" if is.x_map_type.as_deref() != Some("atomic") => {
                    push(
                        out,
                        Invalid,
                        &child(&items_path, "x-kubernetes-map-type"),
                        Some(&shown),
                        msg,
                    );
                }
                _ => {}
            }
        }
        if !matches!(lt.as_str(), "atomic" | "set" | "map") {
            not_supported(
                out,
                &child(path, "x-kubernetes-list-type"),
                lt,
                &["atomic", "set", "map"],
            );
        }
    }
    let lt_path = child(path, "x-kubernetes-list-type");
    let keys_path = child(path, "x-kubernetes-list-map-keys");
    if !s.x_list_map_keys.is_empty() {
        let msg = "must be map if x-kubernetes-list-map-keys is non-empty";
        match s.x_list_type.as_deref() {
            None => push(out, Required, &lt_path, None, msg),
            Some("map") => {}
            Some(other) => push(out, Invalid, &lt_path, Some(&q(other)), msg),
        }
    }
    if s.x_list_type.as_deref() == Some("map") {
        if s.x_list_map_keys.is_empty() {
            push(
                out,
                Required,
                &keys_path,
                None,
                "must not be empty if x-kubernetes-list-type is map",
            );
        }
        match &s.items {
            None => push(
                out,
                Required,
                &items_path,
                None,
                "must have a schema if x-kubernetes-list-type is map",
            ),
            Some(is) if is.type_ != "object" => push(
                out,
                Invalid,
                &child(&items_path, "type"),
                Some(&q(&is.type_)),
                "must be object if parent array's x-kubernetes-list-type is map",
            ),
            Some(is) => {
                let keys_value = go_strings(Some(&Value::from(s.x_list_map_keys.clone())));
                let mut seen = std::collections::BTreeSet::new();
                for k in &s.x_list_map_keys {
                    match is.properties.get(k) {
                        Some(p) if p.type_ == "array" || p.type_ == "object" => push(
                            out,
                            Invalid,
                            &child(&key(&child(&items_path, "properties"), k), "type"),
                            Some(&q(&is.type_)),
                            "must be a scalar type if parent array's x-kubernetes-list-type is map",
                        ),
                        Some(_) => {}
                        None => push(
                            out,
                            Invalid,
                            &keys_path,
                            Some(&keys_value),
                            "entries must all be names of item properties",
                        ),
                    }
                    if !seen.insert(k) {
                        push(
                            out,
                            Invalid,
                            &keys_path,
                            Some(&keys_value),
                            "must not contain duplicate entries",
                        );
                    }
                }
            }
        }
    }
    map_list_keys_map_set(out, s, &items_path);
    validation_rules(out, s, path);
}

fn map_list_keys_map_set(out: &mut Vec<Cause>, s: &Structural, items_path: &str) {
    let (Some(is), Some(lt)) = (&s.items, &s.x_list_type) else {
        return;
    };
    if lt != "set" && lt != "map" {
        return;
    }
    if is.nullable {
        push(
            out,
            CauseReason::Forbidden,
            &child(items_path, "nullable"),
            None,
            &format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
        );
    }
    if lt != "map" {
        return;
    }
    for k in &s.x_list_map_keys {
        let Some(p) = is.properties.get(k) else {
            continue;
        };
        let prop_path = key(&child(items_path, "properties"), k);
        if !is.required.contains(k) && p.default.is_none() {
            push(
                out,
                CauseReason::Required,
                &child(&prop_path, "default"),
                None,
                "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
            );
        }
        if p.nullable {
            push(
                out,
                CauseReason::Forbidden,
                &child(&prop_path, "nullable"),
                None,
                "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
            );
        }
    }
}

/// The static checks of `x-kubernetes-validations` entries (compilation is [`cel_rules`]'s).
fn validation_rules(out: &mut Vec<Cause>, s: &Structural, path: &str) {
    use CauseReason::{Invalid, Required};
    const REASONS: [&str; 4] = [
        "FieldValueDuplicate",
        "FieldValueForbidden",
        "FieldValueInvalid",
        "FieldValueRequired",
    ];
    let has_newline = |x: &str| x.contains('\n') || x.contains('\r');
    for (i, rule) in s.validations.iter().enumerate() {
        let base = idx(&child(path, "x-kubernetes-validations"), i);
        let text = |k: &str| rule.get(k).and_then(Value::as_str).unwrap_or("");
        let (r, msg, expr, fp) = (
            text("rule"),
            text("message"),
            text("messageExpression"),
            text("fieldPath"),
        );
        let (tr, tm) = (r.trim(), msg.trim());
        if tr.is_empty() {
            push(
                out,
                Required,
                &child(&base, "rule"),
                None,
                "rule is not specified",
            );
        } else if !msg.is_empty() && tm.is_empty() {
            push(
                out,
                Invalid,
                &child(&base, "message"),
                Some(&q(msg)),
                "message must be non-empty if specified",
            );
        } else if has_newline(tm) {
            push(
                out,
                Invalid,
                &child(&base, "message"),
                Some(&q(msg)),
                "message must not contain line breaks",
            );
        } else if has_newline(tr) && tm.is_empty() {
            push(
                out,
                Required,
                &child(&base, "message"),
                None,
                "message must be specified if rule contains line breaks",
            );
        }
        if !expr.is_empty() && expr.trim().is_empty() {
            push(
                out,
                Required,
                &child(&base, "messageExpression"),
                None,
                "messageExpression must be non-empty if specified",
            );
        }
        if let Some(reason) = rule.get("reason").and_then(Value::as_str)
            && !REASONS.contains(&reason)
        {
            not_supported(out, &child(&base, "reason"), reason, &REASONS);
        }
        if !fp.is_empty() && fp.trim().is_empty() {
            push(
                out,
                Invalid,
                &child(&base, "fieldPath"),
                Some(&q(fp)),
                "fieldPath must be non-empty if specified",
            );
        }
        if has_newline(fp) {
            push(
                out,
                Invalid,
                &child(&base, "fieldPath"),
                Some(&q(fp)),
                "fieldPath must not contain line breaks",
            );
        }
        if !fp.is_empty() && cel::field_path_steps(fp, s).is_err() {
            push(
                out,
                Invalid,
                &child(&base, "fieldPath"),
                Some(&q(fp)),
                "fieldPath must be a valid path",
            );
        }
    }
}

/// Whether a schema error was found at `path` or below it.
fn has_errors_at(errors: &[Cause], path: &str) -> bool {
    errors.iter().any(|c| {
        c.field
            .strip_prefix(path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
    })
}

/// The CEL part of upstream's rule checks: every rule (and messageExpression) must compile,
/// `oldSelf` only where old and new values correlate (not below an atomic or set list, nor a
/// map of another map type), and `optionalOldSelf` only on rules that use `oldSelf`.
/// `uncorrelatable` is the highest path where correlation stops, if any.
fn cel_rules(
    out: &mut Vec<Cause>,
    schema_errors: &[Cause],
    s: &Structural,
    path: &str,
    uncorrelatable: Option<&str>,
) {
    if let Some(schema) = s.additional_properties.as_ref().and_then(|ap| ap.schema()) {
        let ap_path = child(path, "additionalProperties");
        cel_rules(out, schema_errors, schema, &ap_path, uncorrelatable);
    }
    let map_correlates = matches!(s.x_map_type.as_deref(), None | Some("granular" | "atomic"));
    for (k, p) in &s.properties {
        let below = if map_correlates {
            uncorrelatable
        } else {
            uncorrelatable.or(Some(path))
        };
        cel_rules(
            out,
            schema_errors,
            p,
            &key(&child(path, "properties"), k),
            below,
        );
    }
    if let Some(items) = &s.items {
        let below = if s.x_list_type.as_deref() == Some("map") {
            uncorrelatable
        } else {
            uncorrelatable.or(Some(path))
        };
        cel_rules(out, schema_errors, items, &child(path, "items"), below);
    }
    if s.validations.is_empty() || has_errors_at(schema_errors, path) {
        return;
    }
    for (i, raw) in s.validations.iter().enumerate() {
        let base = idx(&child(path, "x-kubernetes-validations"), i);
        let spec = cel::RuleSpec::of(raw);
        match cel::check_rule(&spec) {
            Err(cel::RuleProblem::Rule(detail)) => push(
                out,
                CauseReason::Invalid,
                &child(&base, "rule"),
                Some(&spec.go_repr()),
                &detail,
            ),
            Err(cel::RuleProblem::MessageExpression(detail)) => push(
                out,
                CauseReason::Invalid,
                &child(&base, "messageExpression"),
                Some(&spec.go_repr()),
                &detail,
            ),
            Ok(Some(true)) => {
                if let Some(at) = uncorrelatable {
                    push(
                        out,
                        CauseReason::Invalid,
                        &child(&base, "rule"),
                        Some(&q(&spec.rule)),
                        &format!(
                            "oldSelf cannot be used on the uncorrelatable portion of the schema within {at}"
                        ),
                    );
                }
            }
            Ok(Some(false)) => {
                if let Some(optional) = spec.optional_old_self {
                    push(
                        out,
                        CauseReason::Invalid,
                        &child(&base, "optionalOldSelf"),
                        Some(&optional.to_string()),
                        "may not be set if oldSelf is not used in rule",
                    );
                }
            }
            Ok(None) => {}
        }
    }
}
