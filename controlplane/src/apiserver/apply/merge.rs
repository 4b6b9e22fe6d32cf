//! Merging an applied configuration into the live object by the schema, and removing paths from
//! an object: the two value operations server-side apply is built from (structured-merge-diff's
//! `Merge` and `RemoveItems`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, Path, PathElement, PathError, index_items};
use super::shape::{ListKind, Resolved, Shape};

/// `config` merged over `live`: granular maps and structs key by key, granular lists element by
/// element (map lists by key, sets by value), everything else (scalars, atomic lists, maps and
/// structs) taken from `config` whole.
pub fn merge(live: &Value, config: &Value, shape: Shape) -> Result<Value, PathError> {
    merge_at(live, config, shape, &mut Vec::new())
}

fn merge_at(
    live: &Value,
    config: &Value,
    shape: Shape,
    path: &mut Path,
) -> Result<Value, PathError> {
    match (shape.resolve(config), live, config) {
        (Resolved::Fields, Value::Object(live_map), Value::Object(config_map)) => {
            let mut out = live_map.clone();
            for (key, value) in config_map {
                path.push(PathElement::Field(key.clone()));
                let merged = match live_map.get(key) {
                    Some(current) => merge_at(current, value, shape.child(key), path)?,
                    None => value.clone(),
                };
                path.pop();
                out.insert(key.clone(), merged);
            }
            Ok(Value::Object(out))
        }
        (Resolved::Items(kind), Value::Array(_), Value::Array(_)) => {
            merge_items(kind, live, config, shape.item(), path)
        }
        _ => Ok(config.clone()),
    }
}

/// Merges two granular lists. The configuration's order wins for the items it names; items
/// only the live list has keep their place after the item they followed there.
fn merge_items(
    kind: ListKind,
    live: &Value,
    config: &Value,
    item_shape: Shape,
    path: &mut Path,
) -> Result<Value, PathError> {
    let live_items = index_items(kind, Some(live), path)?;
    let config_items = index_items(kind, Some(config), path)?;
    let live_by: BTreeMap<&PathElement, &Value> = live_items.iter().map(|(e, v)| (e, *v)).collect();
    let config_at: BTreeMap<&PathElement, usize> = config_items
        .iter()
        .enumerate()
        .map(|(index, (e, _))| (e, index))
        .collect();
    let mut out = Vec::with_capacity(live_items.len().max(config_items.len()));
    let mut next = 0;
    let mut take_config_until = |end: usize, out: &mut Vec<Value>, path: &mut Path| {
        while next <= end && next < config_items.len() {
            let (element, value) = &config_items[next];
            path.push(element.clone());
            let merged = match live_by.get(element) {
                Some(current) => merge_at(current, value, item_shape, path),
                None => Ok((*value).clone()),
            };
            path.pop();
            out.push(merged?);
            next += 1;
        }
        Ok::<(), PathError>(())
    };
    for (element, value) in &live_items {
        match config_at.get(element) {
            None => out.push((*value).clone()),
            Some(&position) => take_config_until(position, &mut out, path)?,
        }
    }
    take_config_until(usize::MAX, &mut out, path)?;
    Ok(Value::Array(out))
}

/// `value` without the paths in `set` (and what is below them). Maps and lists left empty by a
/// removal disappear, as upstream's `RemoveItems` leaves nothing of them.
pub fn remove_items(value: &Value, set: &FieldSet, shape: Shape) -> Result<Value, PathError> {
    Ok(remove_at(value, set, shape, &mut Vec::new())?.unwrap_or_else(|| Value::Object(Map::new())))
}

fn remove_at(
    value: &Value,
    set: &FieldSet,
    shape: Shape,
    path: &mut Path,
) -> Result<Option<Value>, PathError> {
    match (shape.resolve(value), value) {
        (Resolved::Fields, Value::Object(map)) => {
            let mut out = Map::new();
            for (key, child) in map {
                path.push(PathElement::Field(key.clone()));
                if !set.contains(path) {
                    let kept = if set.has_below(path) {
                        remove_at(child, set, shape.child(key), path)?
                    } else {
                        Some(child.clone())
                    };
                    if let Some(kept) = kept {
                        out.insert(key.clone(), kept);
                    }
                }
                path.pop();
            }
            Ok((!out.is_empty()).then_some(Value::Object(out)))
        }
        (Resolved::Items(kind), Value::Array(_)) => {
            let mut out = Vec::new();
            for (element, item) in index_items(kind, Some(value), path)? {
                path.push(element);
                if !set.contains(path) {
                    let kept = if set.has_below(path) {
                        remove_at(item, set, shape.item(), path)?
                    } else {
                        Some(item.clone())
                    };
                    out.extend(kept);
                }
                path.pop();
            }
            Ok((!out.is_empty()).then_some(Value::Array(out)))
        }
        // Reached only when something below it is to be removed: an atomic value goes whole.
        (Resolved::Leaf, _) if set.has_below(path) && !path.is_empty() => Ok(None),
        _ => Ok(Some(value.clone())),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::apply::fieldset::display;

    fn pod() -> Shape {
        Shape::of_kind("v1", "Pod")
    }

    #[test]
    fn map_lists_merge_by_key_keeping_live_only_items() {
        let live = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "args": ["x"]},
            {"name": "sidecar", "image": "s:1"},
            {"name": "b", "image": "b:1"},
        ]}});
        let config = json!({"spec": {"containers": [
            {"name": "b", "image": "b:2"},
            {"name": "a", "args": ["y", "z"]},
            {"name": "c", "image": "c:1"},
        ]}});
        let merged = merge(&live, &config, pod()).unwrap();
        assert_eq!(
            merged["spec"]["containers"],
            json!([
                {"name": "b", "image": "b:2"},
                {"name": "a", "image": "a:1", "args": ["y", "z"]},
                {"name": "sidecar", "image": "s:1"},
                {"name": "c", "image": "c:1"},
            ])
        );
    }

    #[test]
    fn sets_merge_by_value_and_atomic_values_are_replaced() {
        let live = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1"}},
            "spec": {"containers": [{"name": "c", "command": ["sh", "-c"]}],
                "nodeSelector": {"disk": "ssd"}}});
        let config = json!({"metadata": {"finalizers": ["c", "a"], "labels": {"y": "2"}},
            "spec": {"containers": [{"name": "c", "command": ["bash"]}],
                "nodeSelector": {"zone": "a"}}});
        let merged = merge(&live, &config, pod()).unwrap();
        assert_eq!(merged["metadata"]["finalizers"], json!(["c", "a", "b"]));
        assert_eq!(merged["metadata"]["labels"], json!({"x": "1", "y": "2"}));
        // An atomic list is replaced, a granular map (nodeSelector is `mapType=atomic`) too.
        assert_eq!(merged["spec"]["containers"][0]["command"], json!(["bash"]));
        assert_eq!(merged["spec"]["nodeSelector"], json!({"zone": "a"}));
    }

    #[test]
    fn atomic_structs_are_replaced_whole() {
        let shape = Shape::of_kind("apps/v1", "Deployment");
        let live = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}, "replicas": 1}});
        let config = json!({"spec": {"selector": {"matchExpressions": []}}});
        let merged = merge(&live, &config, shape).unwrap();
        assert_eq!(
            merged["spec"],
            json!({"selector": {"matchExpressions": []}, "replicas": 1})
        );
    }

    #[test]
    fn remove_items_drops_paths_and_emptied_containers() {
        let object = json!({"metadata": {"labels": {"a": "1"}, "name": "p"},
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let config = json!({"metadata": {"labels": {"a": "1"}},
            "spec": {"containers": [{"name": "b", "image": "y"}]}});
        let set = FieldSet::of_object(&config, pod()).unwrap();
        let shown: Vec<String> = set.iter().map(|p| display(p)).collect();
        assert!(shown.contains(&".spec.containers[name=\"b\"]".to_owned()));
        let removed = remove_items(&object, &set, pod()).unwrap();
        assert_eq!(
            removed,
            json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x"}]}})
        );
    }
}
