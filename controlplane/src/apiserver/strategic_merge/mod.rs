//! Strategic merge patch (`application/strategic-merge-patch+json`) for the built-in kinds.
//!
//! This is a port of the apply side of apimachinery's `pkg/util/strategicpatch`
//! (`StrategicMergeMapPatch`, patch format version 2, which kubectl sends for
//! `kubectl apply` (client side), `kubectl set image`, `kubectl edit` and
//! `kubectl patch --type=strategic`), checked against the apply cases of upstream's
//! `patch_test.go`, element order included. Upstream reads the patch metadata from the
//! `patchStrategy` / `patchMergeKey` struct tags of the Go types; so do we, from the table
//! `cargo xtask api-schema` generates from those types (`flotilla_apimachinery::schema`).
//!
//! Deliberate differences from upstream, all where upstream relies on the typed
//! decode that follows the patch to hide leftovers (we store the JSON as it comes out):
//! - directive keys and `null` values never survive into the result, also inside
//!   values that are copied from the patch wholesale;
//! - `{"$patch": "replace", ...}` on a field missing from the original sets the field
//!   (upstream silently drops it);
//! - unknown `$patch` values are rejected everywhere (upstream ignores them in values
//!   copied wholesale).

use flotilla_apimachinery::schema::{self, Label, Message, Ty};
use serde_json::{Map, Number, Value};

/// Key of the directive that replaces or deletes the map (or list element) holding it.
const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
/// Lists the only keys of a map that survive the patch.
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
/// `$setElementOrder/<field>` gives the final order of a merged list.
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";
/// `$deleteFromPrimitiveList/<field>` lists values to remove from a merged primitive list.
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";

/// Why a strategic merge patch could not be applied; always a fault of the request, not the server.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not a JSON object.
    #[error("strategic merge patch must be a JSON object, got {found}")]
    PatchNotObject {
        /// JSON type of the patch document.
        found: &'static str,
    },
    /// The object being patched is not a JSON object.
    #[error("object to patch must be a JSON object, got {found}")]
    OriginalNotObject {
        /// JSON type of the object being patched.
        found: &'static str,
    },
    /// A `$patch` directive has a value that is not valid where it appears.
    #[error("unknown $patch directive {directive} at {path}")]
    UnknownDirective {
        /// The directive's value as JSON.
        directive: String,
        /// Where the directive appears.
        path: String,
    },
    /// A list element carries `$patch: merge`, which upstream rejects as well.
    #[error("$patch: merge cannot be used on list elements (lists merge by default) at {path}")]
    MergeDirectiveInList {
        /// The list holding the element.
        path: String,
    },
    /// An element of a list merged by key lacks that key (or has it `null`).
    #[error("list element missing its merge key \"{key}\" at {path}")]
    MissingMergeKey {
        /// The merge key of the list.
        key: &'static str,
        /// The list holding the element.
        path: String,
    },
    /// A list with the merge strategy but no merge key holds objects.
    #[error("cannot merge a list of objects that has no merge key at {path}")]
    NoMergeKey {
        /// The list.
        path: String,
    },
    /// A list to merge mixes element types or holds lists.
    #[error("cannot merge the list at {path}: {reason}")]
    InvalidList {
        /// The list.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `$retainKeys` directive is malformed or contradicts the rest of the patch.
    #[error("invalid $retainKeys directive at {path}: {reason}")]
    InvalidRetainKeys {
        /// The map holding the directive.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `$setElementOrder/<field>` directive is malformed or contradicts the patch list.
    #[error("invalid $setElementOrder directive at {path}: {reason}")]
    InvalidSetElementOrder {
        /// The list (or map) the directive applies to.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `$deleteFromPrimitiveList/<field>` directive is malformed.
    #[error("invalid $deleteFromPrimitiveList directive at {path}: {reason}")]
    InvalidDeleteFromPrimitiveList {
        /// The list (or map) the directive applies to.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Applies a strategic merge patch to `original`, a full object whose kind's patch schema is `schema`.
pub fn apply_strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: Schema,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::PatchNotObject {
            found: json_type(patch),
        });
    };
    let Value::Object(original) = original else {
        return Err(PatchError::OriginalNotObject {
            found: json_type(original),
        });
    };
    merge_map(original.clone(), patch.clone(), schema, "").map(Value::Object)
}

// ---------------------------------------------------------------------------------------
// Patch metadata (the upstream struct tags)
// ---------------------------------------------------------------------------------------

/// The patch schema of a value: the generated message of its Go struct (see
/// [`flotilla_apimachinery::schema`], which carries upstream's `patchStrategy` and
/// `patchMergeKey` tags), or none (a map's values, anything without a struct): then maps merge
/// and lists are replaced.
#[derive(Debug, Clone, Copy)]
pub struct Schema(Option<&'static Message>);

/// The patch tags of one field and the schema of its value (of its elements, for lists).
#[derive(Debug, Clone, Copy)]
struct FieldMeta {
    /// Upstream's comma-separated `patchStrategy` tag, "" when the field has none.
    strategy: &'static str,
    merge_key: Option<&'static str>,
    schema: Schema,
}

impl Schema {
    /// The schema of a kind; None when upstream's Go types do not define it (strategic merge
    /// is then refused, as upstream refuses it for custom resources).
    pub fn of_kind(api_version: &str, kind: &str) -> Option<Self> {
        schema::kind_message(api_version, kind).map(|message| Self(Some(message)))
    }

    fn field(self, name: &str) -> FieldMeta {
        let Some(field) = self.0.and_then(|message| message.field(name)) else {
            return FieldMeta {
                strategy: "",
                merge_key: None,
                schema: Self(None),
            };
        };
        let nested = match (field.ty, field.label) {
            (Ty::Message(id), Label::Single | Label::Repeated) => Some(schema::message(id)),
            // A map's keys are not field names: its values merge without a schema.
            _ => None,
        };
        FieldMeta {
            strategy: field.patch_strategy,
            merge_key: Some(field.patch_merge_key).filter(|key| !key.is_empty()),
            schema: Self(nested),
        }
    }
}

impl FieldMeta {
    fn has_strategy(&self, strategy: &str) -> bool {
        self.strategy.split(',').any(|s| s.trim() == strategy)
    }

    /// Lists merge only with the "merge" strategy; all others are replaced wholesale.
    fn merges_lists(&self) -> bool {
        self.has_strategy(MERGE_DIRECTIVE)
    }

    /// Maps merge unless tagged "replace". "retainKeys" (`DeploymentSpec.strategy`,
    /// `PodSpec.volumes`) only tells clients to send `$retainKeys`; the server honours
    /// that directive wherever it appears, exactly like upstream.
    fn replaces_maps(&self) -> bool {
        self.has_strategy(REPLACE_DIRECTIVE)
    }
}

// ---------------------------------------------------------------------------------------
// Merging
// ---------------------------------------------------------------------------------------

/// Upstream `mergeMap`: merges `patch` into `original`, field by field.
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE_MARKER) {
        return match directive.as_str() {
            Some(REPLACE_DIRECTIVE) => Ok(clean_map(patch)),
            // Upstream leaves an empty map behind rather than removing the field.
            Some(DELETE_DIRECTIVE) => Ok(Map::new()),
            _ => Err(unknown_directive(&directive, path)),
        };
    }

    apply_retain_keys(&mut original, &mut patch, path)?;
    apply_set_element_order(&mut original, &mut patch, schema, path)?;

    // Deletions from primitive lists run after the additions so that a value named in both
    // ends up deleted; upstream leaves that order to Go's map iteration.
    let mut deletions = Vec::new();
    for (key, value) in patch {
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            let Some(field_name) = directive_field(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX) else {
                return Err(PatchError::InvalidDeleteFromPrimitiveList {
                    path: shown(path),
                    reason: format!(
                        "key {key:?} must have the form $deleteFromPrimitiveList/<field>"
                    ),
                });
            };
            deletions.push((field_name.to_owned(), value));
        } else {
            merge_field(&mut original, key, value, schema, path)?;
        }
    }
    for (field_name, value) in deletions {
        delete_from_primitive_list(&mut original, &field_name, value, path)?;
    }
    Ok(original)
}

/// Merges the patch value of one (non-directive) key into `original`.
fn merge_field(
    original: &mut Map<String, Value>,
    key: String,
    patch_value: Value,
    schema: Schema,
    path: &str,
) -> Result<(), PatchError> {
    if patch_value.is_null() {
        original.remove(&key);
        return Ok(());
    }
    let field = schema.field(&key);
    let field_path = child_path(path, &key);
    let merged = match (original.remove(&key), patch_value) {
        (Some(Value::Object(original_map)), Value::Object(patch_map)) => {
            // A "replace" map is the patch merged into nothing, so its directives still apply.
            let base = if field.replaces_maps() {
                Map::new()
            } else {
                original_map
            };
            Some(Value::Object(merge_map(
                base,
                patch_map,
                field.schema,
                &field_path,
            )?))
        }
        (Some(Value::Array(original_list)), Value::Array(patch_list)) => {
            Some(Value::Array(if field.merges_lists() {
                merge_list(original_list, patch_list, &field, &field_path)?
            } else {
                clean_list(patch_list)
            }))
        }
        // Same primitive type: the patch value wins.
        (Some(original_value), patch_value)
            if json_type(&original_value) == json_type(&patch_value) =>
        {
            Some(patch_value)
        }
        // Missing from the original or of another type: the patch value is taken as a whole.
        (_, patch_value) => materialize(patch_value, &field, &field_path)?,
    };
    if let Some(value) = merged {
        original.insert(key, value);
    }
    Ok(())
}

/// The value a patch value produces where the original has nothing to merge it with:
/// the patch merged into emptiness, so nested directives are applied and `null`s dropped.
/// `None` means the field stays absent.
fn materialize(value: Value, field: &FieldMeta, path: &str) -> Result<Option<Value>, PatchError> {
    match value {
        Value::Null => Ok(None),
        Value::Object(mut map) => {
            if let Some(directive) = map.remove(DIRECTIVE_MARKER) {
                return match directive.as_str() {
                    Some(DELETE_DIRECTIVE) => Ok(None),
                    Some(REPLACE_DIRECTIVE) => Ok(Some(Value::Object(clean_map(map)))),
                    _ => Err(unknown_directive(&directive, path)),
                };
            }
            Ok(Some(Value::Object(merge_map(
                Map::new(),
                map,
                field.schema,
                path,
            )?)))
        }
        Value::Array(list) => Ok(Some(Value::Array(if field.merges_lists() {
            merge_list(Vec::new(), list, field, path)?
        } else {
            clean_list(list)
        }))),
        primitive => Ok(Some(primitive)),
    }
}

/// Upstream `mergeSlice` for a list with the "merge" strategy.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: &FieldMeta,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    match element_kind(&[&original, &patch], path)? {
        None => Ok(original),
        Some(ElementKind::Scalar) => Ok(merge_scalar_list(original, patch)),
        Some(ElementKind::Object) => {
            let Some(key) = field.merge_key else {
                return Err(PatchError::NoMergeKey { path: shown(path) });
            };
            merge_object_list(original, patch, key, field.schema, path)
        }
    }
}

/// A merged primitive list (e.g. `finalizers`) is a set union.
fn merge_scalar_list(original: Vec<Value>, patch: Vec<Value>) -> Vec<Value> {
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for value in original.iter().chain(&patch) {
        if !contains(&merged, value) {
            merged.push(value.clone());
        }
    }
    let (patch_items, server_only) = merged.into_iter().partition(|v| contains(&patch, v));
    normalize_element_order(
        patch_items,
        server_only,
        &patch,
        &original,
        Identity::Itself,
    )
}

/// Merges a list of objects by `key`: `$patch` elements first (upstream
/// `mergeSliceWithSpecialElements`), then each plain patch element into its match or
/// appended, then the order is restored.
fn merge_object_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    key: &'static str,
    schema: Schema,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let identity = Identity::MergeKey(key);
    let mut original = original;
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch {
        let Value::Object(map) = element else {
            return Err(invalid_list(path, "list elements have different types"));
        };
        let Some(directive) = map.get(DIRECTIVE_MARKER) else {
            plain.push(map);
            continue;
        };
        match directive.as_str() {
            Some(DELETE_DIRECTIVE) => {
                let Some(id) = map.get(key).filter(|id| !id.is_null()) else {
                    return Err(missing_merge_key(key, path));
                };
                original.retain(|item| !identity.matches(item, id));
            }
            // A `$patch: replace` element (whatever else it holds) turns the list into the
            // patch's plain elements; the marker element itself is dropped.
            Some(REPLACE_DIRECTIVE) => replace = true,
            Some(MERGE_DIRECTIVE) => {
                return Err(PatchError::MergeDirectiveInList { path: shown(path) });
            }
            _ => return Err(unknown_directive(directive, path)),
        }
    }

    let patch_ids = plain
        .iter()
        .map(|map| {
            map.get(key)
                .filter(|id| !id.is_null())
                .cloned()
                .ok_or_else(|| missing_merge_key(key, path))
        })
        .collect::<Result<Vec<_>, _>>()?;

    if replace {
        return plain
            .into_iter()
            .zip(&patch_ids)
            .map(|(map, id)| {
                merge_map(Map::new(), map, schema, &element_path(path, key, id)).map(Value::Object)
            })
            .collect();
    }

    let original_ids = original
        .iter()
        .map(|item| identity.require(item, path))
        .collect::<Result<Vec<_>, _>>()?;

    let mut merged = original;
    for (patch_map, id) in plain.into_iter().zip(&patch_ids) {
        let item_path = element_path(path, key, id);
        match merged.iter_mut().find(|item| identity.matches(item, id)) {
            Some(Value::Object(target)) => {
                let base = std::mem::take(target);
                *target = merge_map(base, patch_map, schema, &item_path)?;
            }
            // `matches` only accepts objects; nothing else can be found.
            Some(_) => {}
            None => merged.push(Value::Object(merge_map(
                Map::new(),
                patch_map,
                schema,
                &item_path,
            )?)),
        }
    }

    let (patch_items, server_only) = merged
        .into_iter()
        .partition(|item| identity.of(item).is_some_and(|id| contains(&patch_ids, id)));
    Ok(normalize_element_order(
        patch_items,
        server_only,
        &patch_ids,
        &original_ids,
        identity,
    ))
}

/// Upstream `applyRetainKeysDirective`: drops every original key not listed, after checking
/// that the patch only sets listed keys.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    path: &str,
) -> Result<(), PatchError> {
    let Some(retain) = patch.remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::InvalidRetainKeys {
            path: shown(path),
            reason: format!("must be a list of field names, got {}", json_type(&retain)),
        });
    };
    let retained = |key: &str| retain.iter().any(|name| name.as_str() == Some(key));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !retained(key) {
            return Err(PatchError::InvalidRetainKeys {
                path: shown(path),
                reason: format!("field {key:?} is set by the patch but not listed"),
            });
        }
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

/// Upstream `mergePatchIntoOriginal`: for each `$setElementOrder/<field>`, merges the
/// field's patch list (if any) and orders the result. Precedence: the directive's order,
/// then the patch list's, then the original's (for elements only the server has).
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Schema,
    path: &str,
) -> Result<(), PatchError> {
    let directive_keys: Vec<String> = patch
        .keys()
        .filter(|key| key.starts_with(SET_ELEMENT_ORDER_PREFIX))
        .cloned()
        .collect();
    for directive_key in directive_keys {
        let Some(order) = patch.remove(&directive_key) else {
            continue;
        };
        let Some(field_name) = directive_field(&directive_key, SET_ELEMENT_ORDER_PREFIX) else {
            return Err(invalid_order(
                path,
                format!("key {directive_key:?} must have the form $setElementOrder/<field>"),
            ));
        };
        let field_name = field_name.to_owned();
        let field_path = child_path(path, &field_name);
        let Value::Array(order) = order else {
            return Err(invalid_order(
                &field_path,
                format!("must be a list, got {}", json_type(&order)),
            ));
        };
        let field = schema.field(&field_name);
        let original_list = take_list(original, &field_name, &field_path, "object")?;
        let patch_list = take_list(patch, &field_name, &field_path, "patch")?;

        let patch_slice = patch_list.as_deref().unwrap_or_default();
        let original_slice = original_list.as_deref().unwrap_or_default();
        let identity = match element_kind(&[original_slice, patch_slice], &field_path)? {
            None => None,
            Some(ElementKind::Scalar) => Some(Identity::Itself),
            Some(ElementKind::Object) => match field.merge_key {
                Some(key) => Some(Identity::MergeKey(key)),
                None => {
                    return Err(PatchError::NoMergeKey {
                        path: shown(&field_path),
                    });
                }
            },
        };
        if let Some(identity) = identity {
            validate_patch_order(patch_slice, &order, identity, &field_path)?;
        }
        let mut server_order = match identity {
            Some(identity) => original_slice
                .iter()
                .map(|item| identity.require(item, &field_path))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        if let Some(Identity::MergeKey(key)) = identity
            && field.merges_lists()
            && original_list.is_some()
            && patch_list.is_some()
        {
            server_order = upstream_server_order(server_order, patch_slice, key);
        }

        let merged = match (original_list, patch_list) {
            (None, None) => continue,
            (Some(original_list), None) => original_list,
            (original_list, Some(patch_list)) => {
                if field.merges_lists() {
                    merge_list(
                        original_list.unwrap_or_default(),
                        patch_list,
                        &field,
                        &field_path,
                    )?
                } else {
                    clean_list(patch_list)
                }
            }
        };

        let ordered = match identity {
            None => merged,
            Some(identity) => {
                let order_ids = order
                    .iter()
                    .map(|item| identity.require(item, &field_path))
                    .collect::<Result<Vec<_>, _>>()?;
                let (patch_items, server_only) = merged
                    .into_iter()
                    .partition(|item| identity.of(item).is_some_and(|id| contains(&order_ids, id)));
                normalize_element_order(
                    patch_items,
                    server_only,
                    &order_ids,
                    &server_order,
                    identity,
                )
            }
        };
        original.insert(field_name, Value::Array(ordered));
    }
    Ok(())
}

/// The order upstream actually uses for server-only elements when merging a keyed list
/// under `$setElementOrder`. Upstream passes the original list, but Go's merge has by then
/// mutated it in place: deletions shifted the survivors left within the same backing
/// array, and the first appended elements landed in the freed tail. Where new elements
/// end up relative to server-only ones (e.g. `kubectl apply` removing one container and
/// adding another next to an injected sidecar) depends on this, and upstream's own tests
/// pin it, so it is reproduced here.
fn upstream_server_order(
    original_ids: Vec<Value>,
    patch: &[Value],
    key: &'static str,
) -> Vec<Value> {
    let identity = Identity::MergeKey(key);
    let mut deleted = Vec::new();
    let mut plain = Vec::new();
    let mut replace = false;
    for element in patch {
        match element.get(DIRECTIVE_MARKER).map(Value::as_str) {
            None => plain.extend(identity.of(element)),
            Some(Some(DELETE_DIRECTIVE)) => deleted.extend(identity.of(element)),
            Some(Some(REPLACE_DIRECTIVE)) => replace = true,
            // Rejected by the merge itself.
            Some(_) => {}
        }
    }
    let original_len = original_ids.len();
    let mut order: Vec<Value> = original_ids
        .into_iter()
        .filter(|id| !deleted.iter().any(|gone| values_equal(gone, id)))
        .collect();
    if replace {
        // The replacement list is a new slice; only the deletions touched the original.
        return order;
    }
    let freed = original_len - order.len();
    let mut appended: Vec<&Value> = Vec::new();
    for id in plain {
        let known = contains(&order, id) || appended.iter().any(|new| values_equal(new, id));
        if !known {
            appended.push(id);
        }
    }
    order.extend(appended.into_iter().take(freed).cloned());
    order
}

/// Removes `name` from `map` if present; it must be a list.
fn take_list(
    map: &mut Map<String, Value>,
    name: &str,
    path: &str,
    side: &str,
) -> Result<Option<Vec<Value>>, PatchError> {
    match map.remove(name) {
        None => Ok(None),
        Some(Value::Array(list)) => Ok(Some(list)),
        Some(other) => Err(invalid_order(
            path,
            format!("the {side} has a {} here, not a list", json_type(&other)),
        )),
    }
}

/// Upstream `validatePatchWithSetOrderList`: the patch list's plain elements must appear
/// in the `$setElementOrder` list, in the same relative order.
fn validate_patch_order(
    patch: &[Value],
    order: &[Value],
    identity: Identity,
    path: &str,
) -> Result<(), PatchError> {
    let mut remaining = order.iter();
    for element in patch {
        if element
            .as_object()
            .is_some_and(|map| map.contains_key(DIRECTIVE_MARKER))
        {
            // Deletions and replace markers take no place in the final list.
            continue;
        }
        let id = identity.require(element, path)?;
        if !remaining.any(|item| {
            identity
                .of(item)
                .is_some_and(|item_id| values_equal(item_id, &id))
        }) {
            return Err(invalid_order(
                path,
                format!("patch element {id} is missing from the order list or out of its order"),
            ));
        }
    }
    Ok(())
}

/// Upstream `deleteFromSlice` for `$deleteFromPrimitiveList/<field>`.
fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    field_name: &str,
    value: Value,
    path: &str,
) -> Result<(), PatchError> {
    let field_path = child_path(path, field_name);
    match value {
        // Upstream treats a null parallel list like a null field: the list goes.
        Value::Null => {
            original.remove(field_name);
            Ok(())
        }
        Value::Array(to_delete) => {
            // Nothing to delete from when the list is absent or not a list (upstream skips too).
            if let Some(Value::Array(list)) = original.get_mut(field_name) {
                if element_kind(&[list, &to_delete], &field_path)? == Some(ElementKind::Object) {
                    return Err(PatchError::InvalidDeleteFromPrimitiveList {
                        path: shown(&field_path),
                        reason: "only primitive values can be deleted this way".to_owned(),
                    });
                }
                list.retain(|item| !contains(&to_delete, item));
            }
            Ok(())
        }
        other => Err(PatchError::InvalidDeleteFromPrimitiveList {
            path: shown(&field_path),
            reason: format!("must be a list, got {}", json_type(&other)),
        }),
    }
}

// ---------------------------------------------------------------------------------------
// Ordering (upstream normalizeElementOrder / mergeSortedSlice)
// ---------------------------------------------------------------------------------------

/// How list elements are told apart: by their merge key, or (primitives) by value.
#[derive(Debug, Clone, Copy)]
enum Identity {
    Itself,
    MergeKey(&'static str),
}

impl Identity {
    fn of(self, item: &Value) -> Option<&Value> {
        match self {
            Identity::Itself => Some(item),
            Identity::MergeKey(key) => item.as_object()?.get(key).filter(|id| !id.is_null()),
        }
    }

    fn matches(self, item: &Value, id: &Value) -> bool {
        self.of(item)
            .is_some_and(|item_id| values_equal(item_id, id))
    }

    fn require(self, item: &Value, path: &str) -> Result<Value, PatchError> {
        match self {
            Identity::Itself => Ok(item.clone()),
            Identity::MergeKey(key) => self
                .of(item)
                .cloned()
                .ok_or_else(|| missing_merge_key(key, path)),
        }
    }
}

/// Sorts `patch_items` by `patch_order` and `server_only` by `server_order`, then
/// interleaves them (upstream `normalizeElementOrder`).
fn normalize_element_order(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    identity: Identity,
) -> Vec<Value> {
    // Stable sorts; an element missing from its order list (not produced by valid input)
    // goes last instead of upsetting the others.
    patch_items.sort_by_key(|item| position(patch_order, item, identity).unwrap_or(usize::MAX));
    server_only.sort_by_key(|item| position(server_order, item, identity).unwrap_or(usize::MAX));
    merge_sorted(server_only, patch_items, server_order, identity)
}

/// Upstream `mergeSortedSlice`: inserts the server-only elements (`left`) into the patch
/// elements (`right`), keeping both relative orders. A server-only element goes first only
/// if the original had it before the next patch element; patch elements new to the
/// original therefore come before the remaining server-only elements, which is why a
/// patch adding a container without `$setElementOrder` puts it first, as upstream does.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    identity: Identity,
) -> Vec<Value> {
    let mut merged = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server_order, l, identity), position(server_order, r, identity)),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        let next = if take_left { left.next() } else { right.next() };
        merged.extend(next);
    }
    merged
}

fn position(order: &[Value], item: &Value, identity: Identity) -> Option<usize> {
    let id = identity.of(item)?;
    order
        .iter()
        .position(|candidate| values_equal(candidate, id))
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Object,
    Scalar,
}

/// Upstream `sliceElementType`: all elements must share one JSON type, and not be lists.
/// `None` when the lists are empty.
fn element_kind(lists: &[&[Value]], path: &str) -> Result<Option<ElementKind>, PatchError> {
    let mut first: Option<&'static str> = None;
    for item in lists.iter().flat_map(|list| list.iter()) {
        let item_type = json_type(item);
        if item_type == "array" {
            return Err(invalid_list(path, "lists of lists are not supported"));
        }
        match first {
            None => first = Some(item_type),
            Some(first_type) if first_type != item_type => {
                return Err(invalid_list(
                    path,
                    &format!("list elements have different types ({first_type} and {item_type})"),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|item_type| {
        if item_type == "object" {
            ElementKind::Object
        } else {
            ElementKind::Scalar
        }
    }))
}

/// Copies a patch value verbatim minus directives and `null` fields (upstream
/// `removeDirectives` plus `discardNullValuesFromPatch`): maps holding `$patch` vanish.
fn clean_value(value: Value) -> Option<Value> {
    match value {
        Value::Object(map) if map.contains_key(DIRECTIVE_MARKER) => None,
        Value::Object(map) => Some(Value::Object(clean_map(map))),
        Value::Array(list) => Some(Value::Array(clean_list(list))),
        primitive => Some(primitive),
    }
}

fn clean_map(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(key, value)| !is_directive_key(key) && !value.is_null())
        .filter_map(|(key, value)| clean_value(value).map(|value| (key, value)))
        .collect()
}

fn clean_list(list: Vec<Value>) -> Vec<Value> {
    list.into_iter().filter_map(clean_value).collect()
}

fn is_directive_key(key: &str) -> bool {
    key == DIRECTIVE_MARKER
        || key == RETAIN_KEYS_DIRECTIVE
        || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
}

/// The field named by `<prefix>/<field>` (upstream `extractKey`).
fn directive_field<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.split_once('/')
        .filter(|(head, _)| *head == prefix)
        .map(|(_, field)| field)
}

fn contains(list: &[Value], value: &Value) -> bool {
    list.iter().any(|item| values_equal(item, value))
}

/// Deep equality in which numbers compare by value: Go decodes every JSON number to a
/// float64, so upstream treats `80` and `80.0` as the same merge key.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| values_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| values_equal(x, y)))
        }
        _ => a == b,
    }
}

fn numbers_equal(x: &Number, y: &Number) -> bool {
    if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
        return x == y;
    }
    match (x.as_f64(), y.as_f64()) {
        (Some(x), Some(y)) => x.total_cmp(&y).is_eq(),
        _ => false,
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Names a list element by its merge key, e.g. `spec.containers[name="web"]`.
fn element_path(path: &str, key: &str, id: &Value) -> String {
    format!("{path}[{key}={id}]")
}

/// Paths as shown in errors; the object itself is `<root>`.
fn shown(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.to_owned()
    }
}

fn unknown_directive(directive: &Value, path: &str) -> PatchError {
    PatchError::UnknownDirective {
        directive: directive.to_string(),
        path: shown(path),
    }
}

fn missing_merge_key(key: &'static str, path: &str) -> PatchError {
    PatchError::MissingMergeKey {
        key,
        path: shown(path),
    }
}

fn invalid_list(path: &str, reason: &str) -> PatchError {
    PatchError::InvalidList {
        path: shown(path),
        reason: reason.to_owned(),
    }
}

fn invalid_order(path: &str, reason: String) -> PatchError {
    PatchError::InvalidSetElementOrder {
        path: shown(path),
        reason,
    }
}

#[cfg(test)]
mod tests;
