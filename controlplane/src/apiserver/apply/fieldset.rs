//! Sets of field paths, as structured-merge-diff's `fieldpath.Set`: what a manager owns, what a
//! configuration sets, what changed between two objects; and their `FieldsV1` JSON form
//! (`{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{}}}}}`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::shape::{ListKind, Resolved, Shape, key_default};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A struct field or map key (`f:name`).
    Field(String),
    /// A map-list element by its key fields, sorted by name, values as JSON text (`k:{...}`).
    Key(Vec<(String, String)>),
    /// A set element, as JSON text (`v:"x"`).
    Value(String),
    /// An element of a list by position (`i:0`); only read from clients, never produced.
    Index(usize),
}

/// A path from the object's root.
pub type Path = Vec<PathElement>;

/// A set of paths. A path is in the set by itself: its parents are not implied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<Path>);

/// What changed from one object to another, path by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Present only in the new object.
    pub added: FieldSet,
    /// Present only in the old object.
    pub removed: FieldSet,
    /// Leaves present in both with different values.
    pub modified: FieldSet,
}

/// An object that cannot be turned into paths (a map-list element without its key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PathError {
    /// Where, in upstream's display form (`.spec.containers`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one path.
    pub fn insert(&mut self, path: Path) {
        self.0.insert(path);
    }

    /// Whether `path` itself is in the set.
    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.0.contains(path)
    }

    /// Whether the set has a path strictly below `prefix`.
    pub fn has_below(&self, prefix: &[PathElement]) -> bool {
        self.0
            .range(prefix.to_vec()..)
            .take_while(|path| path.starts_with(prefix))
            .any(|path| path.len() > prefix.len())
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of paths.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The paths, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.0.iter()
    }

    /// Paths in either set.
    pub fn union(&self, other: &Self) -> Self {
        Self(self.0.union(&other.0).cloned().collect())
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &Self) -> Self {
        Self(self.0.intersection(&other.0).cloned().collect())
    }

    /// Paths of `self` not in `other` (exact paths: descendants are not implied).
    pub fn difference(&self, other: &Self) -> Self {
        Self(self.0.difference(&other.0).cloned().collect())
    }

    /// Keeps the paths `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&Path) -> bool) {
        self.0.retain(|path| keep(path));
    }

    /// The set plus every named struct field that is a parent of one of its paths (upstream's
    /// `EnsureNamedFieldsAreMembers`): pruning then treats `spec` as owned when `spec.replicas`
    /// is, while a map (`labels`) or a list item owns nothing by holding a child.
    pub fn with_named_parents(&self, root: Shape) -> Self {
        let mut out = self.0.clone();
        for path in &self.0 {
            let mut shape = root;
            for (depth, element) in path.iter().enumerate() {
                let parent = shape;
                shape = match element {
                    PathElement::Field(name) => parent.child(name),
                    _ => parent.item(),
                };
                if depth + 1 < path.len()
                    && let PathElement::Field(name) = element
                    && parent.is_named_field(name)
                {
                    out.insert(path[..=depth].to_vec());
                }
            }
        }
        Self(out)
    }

    /// The set as `FieldsV1` JSON.
    pub fn to_fields_v1(&self) -> Value {
        #[derive(Default)]
        struct Node {
            member: bool,
            children: BTreeMap<String, Node>,
        }
        fn render(node: &Node) -> Value {
            let mut map = Map::new();
            if node.member && !node.children.is_empty() {
                map.insert(".".into(), Value::Object(Map::new()));
            }
            for (key, child) in &node.children {
                map.insert(key.clone(), render(child));
            }
            Value::Object(map)
        }
        let mut root = Node::default();
        for path in &self.0 {
            let mut node = &mut root;
            for element in path {
                node = node.children.entry(element.to_fields_v1()).or_default();
            }
            node.member = true;
        }
        render(&root)
    }

    /// Reads a `FieldsV1` JSON value.
    pub fn from_fields_v1(value: &Value) -> Result<Self, String> {
        fn read(value: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) -> Result<(), String> {
            let Value::Object(map) = value else {
                return Err("every FieldsV1 node must be a JSON object".into());
            };
            for (key, child) in map {
                if key == "." {
                    if prefix.is_empty() {
                        return Err("'.' is not allowed at the root of FieldsV1".into());
                    }
                    out.insert(prefix.clone());
                    continue;
                }
                prefix.push(PathElement::from_fields_v1(key)?);
                if child.as_object().is_some_and(Map::is_empty) {
                    out.insert(prefix.clone());
                } else {
                    read(child, prefix, out)?;
                }
                prefix.pop();
            }
            Ok(())
        }
        let mut out = BTreeSet::new();
        read(value, &mut Vec::new(), &mut out)?;
        Ok(Self(out))
    }

    /// The paths `value` sets (upstream's `ToFieldSet`): every leaf, every list element, empty
    /// and null members and map entries; named struct fields only through their children.
    pub fn of_object(value: &Value, shape: Shape) -> Result<Self, PathError> {
        let mut out = BTreeSet::new();
        collect(value, shape, &mut Vec::new(), &mut out)?;
        Ok(Self(out))
    }

    /// What changed from `old` to `new` (upstream's `Compare`): leaves that differ are modified;
    /// whatever exists on one side only (maps, lists and items included) is added or removed.
    pub fn compare(old: &Value, new: &Value, shape: Shape) -> Result<Comparison, PathError> {
        let mut comparison = Comparison::default();
        compare(
            Some(old),
            Some(new),
            shape,
            &mut Vec::new(),
            &mut comparison,
        )?;
        Ok(comparison)
    }
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<I: IntoIterator<Item = Path>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl PathElement {
    /// The `FieldsV1` key of this element.
    pub fn to_fields_v1(&self) -> String {
        match self {
            Self::Field(name) => format!("f:{name}"),
            Self::Key(fields) => format!("k:{}", key_json(fields)),
            Self::Value(json) => format!("v:{json}"),
            Self::Index(index) => format!("i:{index}"),
        }
    }

    fn from_fields_v1(text: &str) -> Result<Self, String> {
        let (prefix, rest) = text
            .split_once(':')
            .ok_or_else(|| format!("{text:?} is not a FieldsV1 key (f:, k:, v:, i: or .)"))?;
        match prefix {
            "f" => Ok(Self::Field(rest.to_owned())),
            "v" => serde_json::from_str::<Value>(rest)
                .map(|value| Self::Value(value.to_string()))
                .map_err(|err| format!("{text:?}: the value is not JSON: {err}")),
            "k" => match serde_json::from_str::<Value>(rest) {
                // serde_json's maps are sorted, so the key fields come out in name order.
                Ok(Value::Object(fields)) => Ok(Self::Key(
                    fields
                        .into_iter()
                        .map(|(name, value)| (name, value.to_string()))
                        .collect(),
                )),
                _ => Err(format!("{text:?}: the key is not a JSON object")),
            },
            "i" => rest
                .parse()
                .map(Self::Index)
                .map_err(|_| format!("{text:?}: the index is not a number")),
            _ => Err(format!(
                "{text:?} is not a FieldsV1 key (f:, k:, v:, i: or .)"
            )),
        }
    }

    /// Upstream's display form: `.name`, `[name="web"]`, `[="x"]`, `[0]`.
    fn display(&self) -> String {
        match self {
            Self::Field(name) => format!(".{name}"),
            Self::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect();
                format!("[{}]", parts.join(","))
            }
            Self::Value(json) => format!("[={json}]"),
            Self::Index(index) => format!("[{index}]"),
        }
    }
}

fn key_json(fields: &[(String, String)]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("{}:{value}", Value::String(name.clone())))
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// A path in upstream's display form (`.spec.template.spec.containers[name="web"].image`), as
/// conflict messages and causes write it.
pub fn display(path: &[PathElement]) -> String {
    path.iter().map(PathElement::display).collect()
}

/// The element that identifies `item` in a list of `kind`.
pub fn item_element(
    kind: ListKind,
    item: &Value,
    index: usize,
    path: &[PathElement],
) -> Result<PathElement, PathError> {
    match kind {
        ListKind::Atomic => Ok(PathElement::Index(index)),
        ListKind::Set => Ok(PathElement::Value(item.to_string())),
        ListKind::Map(keys) => {
            let Value::Object(fields) = item else {
                return Err(PathError {
                    path: display(path),
                    message: format!(
                        "element {index}: associative list with keys may not have non-map elements"
                    ),
                });
            };
            let mut key = Vec::with_capacity(keys.len());
            for name in keys {
                let value = match fields.get(*name) {
                    Some(value) if !value.is_null() => value.clone(),
                    _ => key_default(name).ok_or_else(|| PathError {
                        path: display(path),
                        message: format!(
                            "element {index}: associative list with keys has an element that omits key field {name:?} (and doesn't have default value)"
                        ),
                    })?,
                };
                key.push(((*name).to_owned(), value.to_string()));
            }
            key.sort();
            Ok(PathElement::Key(key))
        }
    }
}

fn collect(
    value: &Value,
    shape: Shape,
    path: &mut Path,
    out: &mut BTreeSet<Path>,
) -> Result<(), PathError> {
    match shape.resolve(value) {
        Resolved::Leaf => {
            out.insert(path.clone());
        }
        Resolved::Fields => {
            for (key, child) in value.as_object().into_iter().flatten() {
                path.push(PathElement::Field(key.clone()));
                collect(child, shape.child(key), path, out)?;
                // Named struct fields are owned through their children; map entries, empty
                // and null members are owned themselves.
                if child.is_null()
                    || child.as_object().is_some_and(Map::is_empty)
                    || !shape.is_named_field(key)
                {
                    out.insert(path.clone());
                }
                path.pop();
            }
        }
        Resolved::Items(kind) => {
            for (index, item) in value.as_array().into_iter().flatten().enumerate() {
                let element = item_element(kind, item, index, path)?;
                path.push(element);
                collect(item, shape.item(), path, out)?;
                out.insert(path.clone());
                path.pop();
            }
        }
    }
    Ok(())
}

/// The items of a granular list by their elements, in order; a repeated element keeps its first.
pub fn index_items<'a>(
    kind: ListKind,
    list: Option<&'a Value>,
    path: &[PathElement],
) -> Result<Vec<(PathElement, &'a Value)>, PathError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (index, item) in list
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let element = item_element(kind, item, index, path)?;
        if seen.insert(element.clone()) {
            out.push((element, item));
        }
    }
    Ok(out)
}

fn is_empty_container(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::Object(map)) => map.is_empty(),
        Some(Value::Array(list)) => list.is_empty(),
        Some(_) => false,
    }
}

fn compare(
    old: Option<&Value>,
    new: Option<&Value>,
    shape: Shape,
    path: &mut Path,
    out: &mut Comparison,
) -> Result<(), PathError> {
    let leaf = |out: &mut Comparison, path: &Path| match (old, new) {
        (None, _) => out.added.insert(path.clone()),
        (_, None) => out.removed.insert(path.clone()),
        (Some(a), Some(b)) if a != b => out.modified.insert(path.clone()),
        _ => {}
    };
    let present = new.or(old).unwrap_or(&Value::Null);
    let resolved = match (old, new) {
        // A change of JSON type is a change of the whole value.
        (Some(a), Some(b)) if !a.is_null() && !b.is_null() && json_type(a) != json_type(b) => {
            Resolved::Leaf
        }
        _ => shape.resolve(if present.is_null() {
            old.unwrap_or(&Value::Null)
        } else {
            present
        }),
    };
    // Empty or null on both sides is a leaf, which keeps `{}` and null apart.
    if matches!(resolved, Resolved::Leaf) || (is_empty_container(old) && is_empty_container(new)) {
        leaf(out, path);
        return Ok(());
    }
    match resolved {
        Resolved::Fields => {
            let empty = Map::new();
            let a = old.and_then(Value::as_object).unwrap_or(&empty);
            let b = new.and_then(Value::as_object).unwrap_or(&empty);
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                // Compared as upstream compares typed objects, where Go's zero value is present.
                // (Only on a side where the struct itself exists.)
                let zero = shape.zero_member(key);
                let side = |map: &'_ Map<String, Value>, exists: bool| {
                    map.get(key)
                        .cloned()
                        .or_else(|| zero.clone().filter(|_| exists))
                };
                let (a_child, b_child) = (side(a, old.is_some()), side(b, new.is_some()));
                path.push(PathElement::Field(key.clone()));
                compare(
                    a_child.as_ref(),
                    b_child.as_ref(),
                    shape.child(key),
                    path,
                    out,
                )?;
                path.pop();
            }
        }
        Resolved::Items(kind) => {
            let a = index_items(kind, old, path)?;
            let b = index_items(kind, new, path)?;
            let b_map: BTreeMap<&PathElement, &Value> = b.iter().map(|(e, v)| (e, *v)).collect();
            let a_map: BTreeMap<&PathElement, &Value> = a.iter().map(|(e, v)| (e, *v)).collect();
            for (element, item) in &a {
                path.push(element.clone());
                compare(
                    Some(item),
                    b_map.get(element).copied(),
                    shape.item(),
                    path,
                    out,
                )?;
                path.pop();
            }
            for (element, item) in &b {
                if !a_map.contains_key(element) {
                    path.push(element.clone());
                    compare(None, Some(item), shape.item(), path, out)?;
                    path.pop();
                }
            }
        }
        Resolved::Leaf => {}
    }
    // A container or item on one side only is itself added or removed.
    if !path.is_empty() {
        match (old, new) {
            (None, Some(_)) => out.added.insert(path.clone()),
            (Some(_), None) => out.removed.insert(path.clone()),
            _ => {}
        }
    }
    Ok(())
}

fn json_type(value: &Value) -> u8 {
    match value {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment() -> Shape {
        Shape::of_kind("apps/v1", "Deployment")
    }

    #[test]
    fn applied_configuration_field_set_is_written_as_upstream() {
        let config = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx",
                        "ports": [{"containerPort": 80}], "args": ["a", "b"]}]},
                },
            },
        });
        let set = FieldSet::of_object(&config, deployment()).unwrap();
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:apiVersion": {}, "f:kind": {},
                "f:metadata": {"f:labels": {"f:app": {}}, "f:name": {}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                            ".": {}, "f:args": {}, "f:image": {}, "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                ".": {}, "f:containerPort": {}}},
                        }}},
                    },
                },
            })
        );
    }

    #[test]
    fn fields_v1_round_trips_and_reads_sets_and_indices() {
        let fields = json!({
            "f:metadata": {"f:finalizers": {".": {}, "v:\"a\"": {}}},
            "f:spec": {"f:x": {"i:0": {}}},
        });
        let set = FieldSet::from_fields_v1(&fields).unwrap();
        assert_eq!(set.len(), 3);
        assert!(set.contains(&[
            PathElement::Field("metadata".into()),
            PathElement::Field("finalizers".into()),
            PathElement::Value("\"a\"".into()),
        ]));
        assert_eq!(set.to_fields_v1(), fields);
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({".": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
    }

    #[test]
    fn display_matches_upstream() {
        let path = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key(vec![("name".into(), "\"web\"".into())]),
            PathElement::Field("image".into()),
        ];
        assert_eq!(display(&path), ".spec.containers[name=\"web\"].image");
        assert_eq!(display(&[PathElement::Value("\"a\"".into())]), "[=\"a\"]");
    }

    #[test]
    fn compare_reports_added_removed_and_modified() {
        let old = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}});
        let new = json!({"metadata": {"labels": {"a": "1"}, "annotations": {"n": "v"}},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "a", "image": "x"}, {"name": "c", "image": "z"}]}}}});
        let c = FieldSet::compare(&old, &new, deployment()).unwrap();
        let show = |set: &FieldSet| set.iter().map(|p| display(p)).collect::<Vec<_>>();
        assert_eq!(
            show(&c.added),
            [
                ".metadata.annotations",
                ".metadata.annotations.n",
                ".spec.template.spec.containers[name=\"c\"]",
                ".spec.template.spec.containers[name=\"c\"].image",
                ".spec.template.spec.containers[name=\"c\"].name",
            ]
        );
        assert_eq!(
            show(&c.removed),
            [
                ".metadata.labels.b",
                ".spec.template.spec.containers[name=\"b\"]",
                ".spec.template.spec.containers[name=\"b\"].image",
                ".spec.template.spec.containers[name=\"b\"].name",
            ]
        );
        assert_eq!(show(&c.modified), [".spec.replicas"]);
    }

    #[test]
    fn named_parents_are_members_but_map_keys_and_items_are_not() {
        let set: FieldSet = [vec![
            PathElement::Field("spec".into()),
            PathElement::Field("template".into()),
            PathElement::Field("metadata".into()),
            PathElement::Field("labels".into()),
            PathElement::Field("app".into()),
        ]]
        .into_iter()
        .collect();
        let ensured = set.with_named_parents(deployment());
        let shown: Vec<String> = ensured.iter().map(|p| display(p)).collect();
        assert_eq!(
            shown,
            [
                ".spec",
                ".spec.template",
                ".spec.template.metadata",
                ".spec.template.metadata.labels",
                ".spec.template.metadata.labels.app",
            ]
        );
    }

    #[test]
    fn a_map_list_element_without_its_key_is_an_error() {
        let config = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let err = FieldSet::of_object(&config, deployment()).unwrap_err();
        assert_eq!(err.path, ".spec.template.spec.containers");
        assert!(err.message.contains("omits key field \"name\""));
    }
}
