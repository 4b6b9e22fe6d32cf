//! Pruning (apiextensions-apiserver `schema/pruning/algorithm.go`) and defaulting
//! (`schema/defaulting/algorithm.go`, `PruneNonNullableNullsWithoutDefaults`).

use serde_json::Value;

use super::Structural;

const META_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Path builder: `.a.b[0]` joined, the leading dot dropped when recorded.
struct Pruner {
    path: Vec<String>,
    pruned: Vec<String>,
}

impl Pruner {
    fn record(&mut self, k: &str) {
        let mut p: String = self.path.concat();
        p.push('.');
        p.push_str(k);
        self.pruned.push(p.trim_start_matches('.').to_string());
    }
}

/// Prunes `x` along `s`; `root` keeps apiVersion/kind/metadata of the top level as upstream's
/// `Prune(obj, s, isResourceRoot=true)` does. Returns the removed paths, sorted.
pub(super) fn prune(x: &mut Value, s: &Structural, root: bool) -> Vec<String> {
    let mut p = Pruner {
        path: Vec::new(),
        pruned: Vec::new(),
    };
    prune_node(x, Some(s), root, &mut p);
    p.pruned.sort();
    p.pruned
}

fn prune_node(x: &mut Value, s: Option<&Structural>, embedded_root: bool, p: &mut Pruner) {
    if let Some(s) = s.filter(|s| s.preserves()) {
        skip_prune(x, s, embedded_root, p);
        return;
    }
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    p.record(&k);
                }
                m.clear();
                return;
            };
            let embedded = embedded_root || s.x_embedded_resource;
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let sub = if let Some(prop) = s.properties.get(&k) {
                    Some(Some(prop))
                } else {
                    s.additional_properties.as_ref().map(|ap| ap.schema())
                };
                match sub {
                    Some(sub) => {
                        if let Some(v) = m.get_mut(&k) {
                            p.path.push(format!(".{k}"));
                            prune_node(v, sub, false, p);
                            p.path.pop();
                        }
                    }
                    None => {
                        p.record(&k);
                        m.remove(&k);
                    }
                }
            }
        }
        Value::Array(a) => {
            let items = s.and_then(|s| s.items.as_deref());
            for (i, v) in a.iter_mut().enumerate() {
                p.path.push(format!("[{i}]"));
                prune_node(v, items, false, p);
                p.path.pop();
            }
        }
        _ => {}
    }
}

/// Under x-kubernetes-preserve-unknown-fields: unknown fields stay, declared ones are pruned.
fn skip_prune(x: &mut Value, s: &Structural, embedded_root: bool, p: &mut Pruner) {
    match x {
        Value::Object(m) => {
            let embedded = embedded_root || s.x_embedded_resource;
            for (k, v) in m.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    continue;
                }
                let sub = if let Some(prop) = s.properties.get(k) {
                    Some(Some(prop))
                } else {
                    s.additional_properties.as_ref().map(|ap| ap.schema())
                };
                if let Some(sub) = sub {
                    p.path.push(format!(".{k}"));
                    prune_node(v, sub, false, p);
                    p.path.pop();
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.items.as_deref() {
                for (i, v) in a.iter_mut().enumerate() {
                    p.path.push(format!("[{i}]"));
                    skip_prune(v, items, false, p);
                    p.path.pop();
                }
            }
        }
        _ => {}
    }
}

/// A null where the schema does not allow null.
fn non_nullable_null(v: &Value, s: Option<&Structural>) -> bool {
    v.is_null() && s.is_some_and(|s| !s.nullable)
}

/// Upstream's `Default`: fill absent (or non-nullable null) properties from their defaults,
/// then recurse, so defaulted objects get their own children defaulted.
pub(super) fn apply_defaults(x: &mut Value, s: &Structural) {
    match x {
        Value::Object(m) => {
            for (k, prop) in &s.properties {
                let Some(d) = &prop.default else { continue };
                let missing = match m.get(k) {
                    None => true,
                    Some(v) => non_nullable_null(v, Some(prop)),
                };
                if missing {
                    m.insert(k.clone(), d.clone());
                }
            }
            let ap = s.additional_properties.as_ref().and_then(|a| a.schema());
            for (k, v) in m.iter_mut() {
                if let Some(prop) = s.properties.get(k) {
                    apply_defaults(v, prop);
                } else if let Some(ap) = ap {
                    if non_nullable_null(v, Some(ap))
                        && let Some(d) = &ap.default
                    {
                        *v = d.clone();
                    }
                    apply_defaults(v, ap);
                }
            }
        }
        Value::Array(a) => {
            let Some(items) = s.items.as_deref() else {
                return;
            };
            for v in a.iter_mut() {
                if non_nullable_null(v, Some(items))
                    && let Some(d) = &items.default
                {
                    *v = d.clone();
                }
                apply_defaults(v, items);
            }
        }
        _ => {}
    }
}

/// Upstream's `PruneNonNullableNullsWithoutDefaults`.
pub(super) fn drop_non_nullable_nulls(x: &mut Value, s: &Structural) {
    match x {
        Value::Object(m) => {
            let ap = s.additional_properties.as_ref().and_then(|a| a.schema());
            m.retain(|k, v| {
                let sub = s.properties.get(k).or(ap);
                match sub {
                    Some(sub) if v.is_null() => sub.nullable || sub.default.is_some(),
                    _ => true,
                }
            });
            for (k, v) in m.iter_mut() {
                if let Some(sub) = s.properties.get(k).or(ap) {
                    drop_non_nullable_nulls(v, sub);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.items.as_deref() {
                for v in a.iter_mut() {
                    drop_non_nullable_nulls(v, items);
                }
            }
        }
        _ => {}
    }
}
