//! Scheduling-related PodSpec validation: tolerations, DNS config, affinity, topology spread,
//! pod templates and pod-specific annotations.

use super::*;

pub(crate) fn tolerations(e: &mut Errs, list: &[Value], path: &str) {
    for (i, t) in list.iter().enumerate() {
        let tp = idx(path, i);
        let t = Some(t);
        let k = str_of(t, "key");
        let op = str_of(t, "operator");
        let effect = str_of(t, "effect");
        let value = str_of(t, "value");
        if !k.is_empty() {
            validate_label_name(e, k, &child(&tp, "key"));
        }
        if k.is_empty() && op != "Exists" {
            e.invalid_s(
                &child(&tp, "operator"),
                op,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            );
        }
        if get(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
            e.invalid_s(
                &child(&tp, "effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            );
        }
        match op {
            "Equal" | "" => {
                let msgs = is_label_value(value);
                if !msgs.is_empty() {
                    e.invalid_s(&child(&tp, "operator"), value, &msgs.join(";"));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    e.invalid_s(
                        &child(&tp, "operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    );
                }
            }
            other => e.not_supported(&child(&tp, "operator"), other, &["Equal", "Exists"]),
        }
        if !effect.is_empty() {
            taint_effect(e, effect, &child(&tp, "effect"));
        }
    }
}

pub(crate) fn taint_effect(e: &mut Errs, effect: &str, path: &str) {
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        e.not_supported(
            path,
            effect,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
    }
}

pub(crate) fn dns_config(e: &mut Errs, cfg: Option<&Value>, policy: Option<&str>, path: &str) {
    if policy == Some("None") {
        let Some(_) = cfg else {
            e.required(path, "must provide `dnsConfig` when `dnsPolicy` is None");
            return;
        };
        if arr_of(cfg, "nameservers").is_empty() {
            e.required(
                &child(path, "nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            );
            return;
        }
    }
    let Some(_) = cfg else { return };
    let ns = strings_of(cfg, "nameservers");
    if ns.len() > 3 {
        e.invalid(
            &child(path, "nameservers"),
            &go_strings(get(cfg, "nameservers")),
            "must not have more than 3 nameservers",
        );
    }
    for (i, n) in ns.iter().enumerate() {
        validate_ip_strict(e, &idx(&child(path, "nameservers"), i), n);
    }
    let searches = strings_of(cfg, "searches");
    if searches.len() > 32 {
        e.invalid(
            &child(path, "searches"),
            &go_strings(get(cfg, "searches")),
            "must not have more than 32 search paths",
        );
    }
    if searches.join(" ").len() > 2048 {
        e.invalid(
            &child(path, "searches"),
            &go_strings(get(cfg, "searches")),
            "must not have more than 2048 characters (including spaces) in the search list",
        );
    }
    // RelaxedDNSSearchValidation is on by default in 1.33: "." and underscores are allowed.
    for (i, s) in searches.iter().enumerate() {
        if *s != "." {
            let s = s.strip_suffix('.').unwrap_or(s);
            for m in is_dns1123_subdomain_underscore(s) {
                e.invalid_s(&idx(&child(path, "searches"), i), s, &m);
            }
        }
    }
    for (i, o) in arr_of(cfg, "options").iter().enumerate() {
        if str_of(Some(o), "name").is_empty() {
            e.required(&idx(&child(path, "options"), i), "must not be empty");
        }
    }
}

pub(crate) fn node_selector_requirement(e: &mut Errs, r: Option<&Value>, path: &str, fields: bool) {
    let values = strings_of(r, "values");
    let vp = child(path, "values");
    match str_of(r, "operator") {
        "In" | "NotIn" => {
            if values.is_empty() {
                e.required(&vp, "must be specified when `operator` is 'In' or 'NotIn'");
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                e.forbidden(
                    &vp,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                );
            }
        }
        "Gt" | "Lt" => {
            if values.len() != 1 {
                e.required(
                    &vp,
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                );
            }
        }
        op => e.invalid_s(
            &child(path, "operator"),
            op,
            "not a valid selector operator",
        ),
    }
    let k = str_of(r, "key");
    if fields {
        if k != "metadata.name" {
            e.invalid_s(&child(path, "key"), k, "not a valid field selector key");
        }
    } else {
        validate_label_name(e, k, &child(path, "key"));
        for (i, v) in values.iter().enumerate() {
            for m in is_label_value(v) {
                e.invalid_s(&idx(&vp, i), v, &m);
            }
        }
    }
}

pub(crate) fn node_selector_term(e: &mut Errs, term: Option<&Value>, path: &str) {
    for (j, r) in arr_of(term, "matchExpressions").iter().enumerate() {
        node_selector_requirement(e, Some(r), &idx(&child(path, "matchExpressions"), j), false);
    }
    for (j, r) in arr_of(term, "matchFields").iter().enumerate() {
        node_selector_requirement(e, Some(r), &idx(&child(path, "matchFields"), j), true);
    }
}

pub(crate) fn weight(e: &mut Errs, term: Option<&Value>, path: &str) {
    let w = int_of(term, "weight").unwrap_or(0);
    if !(1..=100).contains(&w) {
        e.invalid_i(&child(path, "weight"), w, "must be in the range 1-100");
    }
}

pub(crate) fn pod_affinity_term(e: &mut Errs, term: Option<&Value>, path: &str) {
    label_selector(e, get(term, "labelSelector"), &child(path, "labelSelector"));
    label_selector(
        e,
        get(term, "namespaceSelector"),
        &child(path, "namespaceSelector"),
    );
    for (i, ns) in strings_of(term, "namespaces").iter().enumerate() {
        for m in is_dns1123_label(ns) {
            e.invalid_s(&idx(&child(path, "namespaces"), i), ns, &m);
        }
    }
    if str_of(term, "topologyKey").is_empty() {
        e.required(&child(path, "topologyKey"), "can not be empty");
    } else {
        validate_label_name(e, str_of(term, "topologyKey"), &child(path, "topologyKey"));
    }
}

pub(crate) fn affinity(e: &mut Errs, aff: Option<&Value>, path: &str) {
    if let Some(na) = get(aff, "nodeAffinity") {
        let np = child(path, "nodeAffinity");
        let na = Some(na);
        if let Some(req) = get(na, "requiredDuringSchedulingIgnoredDuringExecution") {
            let rp = child(&np, "requiredDuringSchedulingIgnoredDuringExecution");
            let terms = arr_of(Some(req), "nodeSelectorTerms");
            if terms.is_empty() {
                e.required(
                    &child(&rp, "nodeSelectorTerms"),
                    "must have at least one node selector term",
                );
            }
            for (i, t) in terms.iter().enumerate() {
                node_selector_term(e, Some(t), &idx(&child(&rp, "nodeSelectorTerms"), i));
            }
        }
        let pp = child(&np, "preferredDuringSchedulingIgnoredDuringExecution");
        for (i, t) in arr_of(na, "preferredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .enumerate()
        {
            let tp = idx(&pp, i);
            weight(e, Some(t), &tp);
            node_selector_term(e, get(Some(t), "preference"), &child(&tp, "preference"));
        }
    }
    for kind in ["podAffinity", "podAntiAffinity"] {
        let Some(pa) = get(aff, kind) else { continue };
        let kp = child(path, kind);
        let req = "requiredDuringSchedulingIgnoredDuringExecution";
        for (i, t) in arr_of(Some(pa), req).iter().enumerate() {
            pod_affinity_term(e, Some(t), &idx(&child(&kp, req), i));
        }
        let pref = "preferredDuringSchedulingIgnoredDuringExecution";
        for (i, t) in arr_of(Some(pa), pref).iter().enumerate() {
            let tp = idx(&child(&kp, pref), i);
            weight(e, Some(t), &tp);
            pod_affinity_term(
                e,
                get(Some(t), "podAffinityTerm"),
                &child(&tp, "podAffinityTerm"),
            );
        }
    }
}

pub(crate) fn topology_spread(e: &mut Errs, list: &[Value], p: &str) {
    let path = child(p, "topologySpreadConstraints");
    for (i, c) in list.iter().enumerate() {
        let cp = idx(&path, i);
        let c = Some(c);
        let skew = int_of(c, "maxSkew").unwrap_or(0);
        if skew <= 0 {
            e.invalid_i(&child(&cp, "maxSkew"), skew, "must be greater than zero");
        }
        let tk = str_of(c, "topologyKey");
        if tk.is_empty() {
            e.required(&child(&cp, "topologyKey"), "can not be empty");
        }
        let wu = str_of(c, "whenUnsatisfiable");
        if wu != "DoNotSchedule" && wu != "ScheduleAnyway" {
            e.not_supported(
                &child(&cp, "whenUnsatisfiable"),
                wu,
                &["DoNotSchedule", "ScheduleAnyway"],
            );
        }
        let dup = list.iter().skip(i + 1).any(|o| {
            str_of(Some(o), "topologyKey") == tk && str_of(Some(o), "whenUnsatisfiable") == wu
        });
        if dup {
            e.duplicate(
                &child(&cp, "{topologyKey, whenUnsatisfiable}"),
                &q(&format!("{{{tk}, {wu}}}")),
            );
        }
        if let Some(md) = int_of(c, "minDomains") {
            if md <= 0 {
                e.invalid_i(&child(&cp, "minDomains"), md, "must be greater than zero");
            }
            if wu != "DoNotSchedule" {
                e.invalid_i(
                    &child(&cp, "minDomains"),
                    md,
                    &format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {wu}"
                    ),
                );
            }
        }
        for f in ["nodeAffinityPolicy", "nodeTaintsPolicy"] {
            if let Some(pol) = str_opt(c, f)
                && pol != "Honor"
                && pol != "Ignore"
            {
                e.not_supported(&child(&cp, f), pol, &["Honor", "Ignore"]);
            }
        }
        label_selector(e, get(c, "labelSelector"), &child(&cp, "labelSelector"));
    }
}

/// `ValidatePodTemplateSpec`: template labels/annotations (upstream's paths omit "metadata")
/// and the pod spec.
pub(crate) fn pod_template(e: &mut Errs, template: Option<&Value>, p: &str, ctx: &PodCtx) {
    let meta = get(template, "metadata");
    validate_labels(e, obj_of(meta, "labels"), &child(p, "labels"));
    validate_annotations(e, obj_of(meta, "annotations"), &child(p, "annotations"));
    pod_specific_annotations(
        e,
        obj_of(meta, "annotations"),
        get(template, "spec"),
        &child(p, "annotations"),
    );
    pod_spec(e, get(template, "spec"), &child(p, "spec"), ctx);
}

pub(crate) fn pod_specific_annotations(
    e: &mut Errs,
    ann: Option<&Obj>,
    spec: Option<&Value>,
    path: &str,
) {
    let Some(ann) = ann else { return };
    let mirror = "kubernetes.io/config.mirror";
    if let Some(v) = ann.get(mirror).and_then(Value::as_str)
        && str_of(spec, "nodeName").is_empty()
    {
        e.invalid_s(
            &key(path, mirror),
            v,
            "must set spec.nodeName if mirror pod annotation is set",
        );
    }
    let cost = "controller.kubernetes.io/pod-deletion-cost";
    if let Some(v) = ann.get(cost).and_then(Value::as_str)
        && v.parse::<i32>().is_err()
    {
        e.invalid_s(&key(path, cost), v, "must be a 32bit integer");
    }
}
