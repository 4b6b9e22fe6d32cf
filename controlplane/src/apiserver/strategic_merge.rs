//! Strategic merge patch (`application/strategic-merge-patch+json`) for the built-in kinds.
//!
//! This is a port of the apply side of apimachinery's `pkg/util/strategicpatch`
//! (`StrategicMergeMapPatch`, patch format version 2, which kubectl sends for
//! `kubectl apply` (client side), `kubectl set image`, `kubectl edit` and
//! `kubectl patch --type=strategic`), checked against the apply cases of upstream's
//! `patch_test.go`, element order included. Upstream reads the patch metadata from the
//! `patchStrategy` / `patchMergeKey` struct tags of the Go types; we have no Go types,
//! so the tags of the supported kinds are encoded below as a static schema tree
//! (taken from k8s.io/api, identical in releases 1.32 to 1.36 for these kinds).
//!
//! Deliberate differences from upstream, all where upstream relies on the typed
//! decode that follows the patch to hide leftovers (we store the JSON as it comes out):
//! - directive keys and `null` values never survive into the result, also inside
//!   values that are copied from the patch wholesale;
//! - `{"$patch": "replace", ...}` on a field missing from the original sets the field
//!   (upstream silently drops it);
//! - unknown `$patch` values are rejected everywhere (upstream ignores them in values
//!   copied wholesale).

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

/// Applies a strategic merge patch to `original` (a full object of `kind` in group/version `api_version`).
pub fn apply_strategic_merge_patch(
    original: &Value,
    patch: &Value,
    api_version: &str,
    kind: &str,
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
    // Kinds without a table still get the directives handled; their fields behave like
    // JSON merge patch (maps merge, lists are replaced).
    let schema = root_schema(api_version, kind).unwrap_or(&UNKNOWN);
    merge_map(original.clone(), patch.clone(), schema, "").map(Value::Object)
}

/// Reports whether `kind` in `api_version` has a merge-key table, i.e. strategic merge patch is offered for it.
pub fn supports_strategic_merge(api_version: &str, kind: &str) -> bool {
    root_schema(api_version, kind).is_some()
}

// ---------------------------------------------------------------------------------------
// Patch metadata (the upstream struct tags)
// ---------------------------------------------------------------------------------------

/// The fields of one Go struct that carry patch tags or lead to fields that do.
#[derive(Debug)]
struct Schema {
    fields: &'static [FieldMeta],
}

/// The patch tags of one field and the schema of its value (of its elements, for lists).
#[derive(Debug)]
struct FieldMeta {
    name: &'static str,
    /// Upstream's comma-separated `patchStrategy` tag, "" when the field has none.
    strategy: &'static str,
    merge_key: Option<&'static str>,
    schema: &'static Schema,
}

impl Schema {
    fn field(&self, name: &str) -> &'static FieldMeta {
        self.fields
            .iter()
            .find(|field| field.name == name)
            .unwrap_or(&UNKNOWN_FIELD)
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

const fn field(
    name: &'static str,
    strategy: &'static str,
    merge_key: Option<&'static str>,
    schema: &'static Schema,
) -> FieldMeta {
    FieldMeta {
        name,
        strategy,
        merge_key,
        schema,
    }
}

/// A struct-valued field without tags of its own, listed to reach tagged fields below it.
const fn nested(name: &'static str, schema: &'static Schema) -> FieldMeta {
    field(name, "", None, schema)
}

/// `patchStrategy:"merge" patchMergeKey:"<key>"`.
const fn merge_by(name: &'static str, key: &'static str, schema: &'static Schema) -> FieldMeta {
    field(name, "merge", Some(key), schema)
}

/// Everything not in the tables: maps merge, lists are replaced.
static UNKNOWN: Schema = Schema { fields: &[] };
static UNKNOWN_FIELD: FieldMeta = field("", "", None, &UNKNOWN);

/// meta/v1 ObjectMeta.
static OBJECT_META: Schema = Schema {
    fields: &[
        field("finalizers", "merge", None, &UNKNOWN),
        merge_by("ownerReferences", "uid", &UNKNOWN),
    ],
};

/// core/v1 Container, also EphemeralContainer (EphemeralContainerCommon has the same tags).
/// `resizePolicy`, `envFrom`, `command`, `args` are untagged (atomic upstream).
static CONTAINER: Schema = Schema {
    fields: &[
        merge_by("ports", "containerPort", &UNKNOWN),
        merge_by("env", "name", &UNKNOWN),
        merge_by("volumeMounts", "mountPath", &UNKNOWN),
        merge_by("volumeDevices", "devicePath", &UNKNOWN),
    ],
};

/// core/v1 PodSpec. `tolerations`, `readinessGates`, affinity terms etc. are untagged.
static POD_SPEC: Schema = Schema {
    fields: &[
        field("volumes", "merge,retainKeys", Some("name"), &UNKNOWN),
        merge_by("initContainers", "name", &CONTAINER),
        merge_by("containers", "name", &CONTAINER),
        merge_by("ephemeralContainers", "name", &CONTAINER),
        merge_by("imagePullSecrets", "name", &UNKNOWN),
        merge_by("hostAliases", "ip", &UNKNOWN),
        merge_by("topologySpreadConstraints", "topologyKey", &UNKNOWN),
        merge_by("schedulingGates", "name", &UNKNOWN),
        field("resourceClaims", "merge,retainKeys", Some("name"), &UNKNOWN),
    ],
};

/// core/v1 PodStatus. `containerStatuses` and friends are untagged (atomic).
static POD_STATUS: Schema = Schema {
    fields: &[
        merge_by("conditions", "type", &UNKNOWN),
        merge_by("hostIPs", "ip", &UNKNOWN),
        merge_by("podIPs", "ip", &UNKNOWN),
        field(
            "resourceClaimStatuses",
            "merge,retainKeys",
            Some("name"),
            &UNKNOWN,
        ),
    ],
};

static POD: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("spec", &POD_SPEC),
        nested("status", &POD_STATUS),
    ],
};

/// core/v1 PodTemplateSpec.
static POD_TEMPLATE_SPEC: Schema = Schema {
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &POD_SPEC)],
};

/// Status of Service, Namespace, ReplicationController, Deployment, ReplicaSet, StatefulSet,
/// DaemonSet and Job:
/// each has `conditions` merged by `type` and nothing else tagged.
static CONDITIONS_STATUS: Schema = Schema {
    fields: &[merge_by("conditions", "type", &UNKNOWN)],
};

/// Specs whose only tagged descendants are under `template` (ReplicationController,
/// ReplicaSet, StatefulSet, DaemonSet, Job). StatefulSet `volumeClaimTemplates` is untagged (atomic).
static TEMPLATED_SPEC: Schema = Schema {
    fields: &[nested("template", &POD_TEMPLATE_SPEC)],
};

/// Objects with metadata, a templated spec and conditions (ReplicationController, ReplicaSet,
/// StatefulSet, DaemonSet, Job).
static TEMPLATED_WORKLOAD: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("spec", &TEMPLATED_SPEC),
        nested("status", &CONDITIONS_STATUS),
    ],
};

/// apps/v1 DeploymentSpec: `strategy` is `patchStrategy:"retainKeys"`.
static DEPLOYMENT_SPEC: Schema = Schema {
    fields: &[
        nested("template", &POD_TEMPLATE_SPEC),
        field("strategy", "retainKeys", None, &UNKNOWN),
    ],
};

static DEPLOYMENT: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("spec", &DEPLOYMENT_SPEC),
        nested("status", &CONDITIONS_STATUS),
    ],
};

/// batch/v1 JobTemplateSpec.
static JOB_TEMPLATE_SPEC: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("spec", &TEMPLATED_SPEC),
    ],
};

static CRON_JOB_SPEC: Schema = Schema {
    fields: &[nested("jobTemplate", &JOB_TEMPLATE_SPEC)],
};

/// batch/v1 CronJob; its status (`active`) is untagged.
static CRON_JOB: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("spec", &CRON_JOB_SPEC),
    ],
};

static SERVICE_SPEC: Schema = Schema {
    fields: &[merge_by("ports", "port", &UNKNOWN)],
};

static SERVICE: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("spec", &SERVICE_SPEC),
        nested("status", &CONDITIONS_STATUS),
    ],
};

/// core/v1 ServiceAccount: only `secrets` is tagged (`imagePullSecrets` is not).
static SERVICE_ACCOUNT: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        merge_by("secrets", "name", &UNKNOWN),
    ],
};

/// core/v1 Namespace: `spec.finalizers` is untagged (atomic), unlike `metadata.finalizers`.
static NAMESPACE: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("status", &CONDITIONS_STATUS),
    ],
};

/// core/v1 NodeSpec: `podCIDRs` is a merged primitive list; `taints` is untagged (atomic).
static NODE_SPEC: Schema = Schema {
    fields: &[field("podCIDRs", "merge", None, &UNKNOWN)],
};

static NODE_STATUS: Schema = Schema {
    fields: &[
        merge_by("conditions", "type", &UNKNOWN),
        merge_by("addresses", "type", &UNKNOWN),
    ],
};

static NODE: Schema = Schema {
    fields: &[
        nested("metadata", &OBJECT_META),
        nested("spec", &NODE_SPEC),
        nested("status", &NODE_STATUS),
    ],
};

/// Kinds whose only tagged fields are in ObjectMeta (Endpoints `subsets`, EndpointSlice
/// `endpoints`/`ports` and NetworkPolicy rules are all untagged, hence atomic).
static METADATA_ONLY: Schema = Schema {
    fields: &[nested("metadata", &OBJECT_META)],
};

/// The kinds strategic merge patch is offered for: (apiVersion, kind, schema).
static KINDS: &[(&str, &str, &Schema)] = &[
    ("v1", "Pod", &POD),
    ("v1", "Service", &SERVICE),
    ("v1", "Endpoints", &METADATA_ONLY),
    ("v1", "ConfigMap", &METADATA_ONLY),
    ("v1", "Secret", &METADATA_ONLY),
    ("v1", "ServiceAccount", &SERVICE_ACCOUNT),
    ("v1", "Namespace", &NAMESPACE),
    ("v1", "Node", &NODE),
    ("v1", "Event", &METADATA_ONLY),
    ("v1", "ReplicationController", &TEMPLATED_WORKLOAD),
    ("apps/v1", "Deployment", &DEPLOYMENT),
    ("apps/v1", "ReplicaSet", &TEMPLATED_WORKLOAD),
    ("apps/v1", "StatefulSet", &TEMPLATED_WORKLOAD),
    ("apps/v1", "DaemonSet", &TEMPLATED_WORKLOAD),
    ("apps/v1", "ControllerRevision", &METADATA_ONLY),
    ("batch/v1", "Job", &TEMPLATED_WORKLOAD),
    ("batch/v1", "CronJob", &CRON_JOB),
    ("networking.k8s.io/v1", "NetworkPolicy", &METADATA_ONLY),
    ("discovery.k8s.io/v1", "EndpointSlice", &METADATA_ONLY),
    ("coordination.k8s.io/v1", "Lease", &METADATA_ONLY),
];

fn root_schema(api_version: &str, kind: &str) -> Option<&'static Schema> {
    KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, schema)| *schema)
}

// ---------------------------------------------------------------------------------------
// Merging
// ---------------------------------------------------------------------------------------

/// Upstream `mergeMap`: merges `patch` into `original`, field by field.
fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: &'static Schema,
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
    schema: &'static Schema,
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
                merge_list(original_list, patch_list, field, &field_path)?
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
        (_, patch_value) => materialize(patch_value, field, &field_path)?,
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
    schema: &'static Schema,
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
    schema: &'static Schema,
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
                        field,
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
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(original: &Value, patch: Value, api_version: &str, kind: &str) -> Value {
        let result = apply_strategic_merge_patch(original, &patch, api_version, kind).unwrap();
        assert_no_directives(&result);
        result
    }

    fn apply_err(original: &Value, patch: Value, api_version: &str, kind: &str) -> PatchError {
        apply_strategic_merge_patch(original, &patch, api_version, kind).unwrap_err()
    }

    fn assert_no_directives(value: &Value) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    assert!(!is_directive_key(key), "directive {key} left in result");
                    assert!(!value.is_null(), "null left in result at {key}");
                    assert_no_directives(value);
                }
            }
            Value::Array(list) => list.iter().for_each(assert_no_directives),
            _ => {}
        }
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "labels": {"app": "web", "tier": "frontend"},
                "finalizers": ["example.com/a", "example.com/b"]
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "img:v1",
                                "args": ["--port", "8080", "--verbose"],
                                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/web"}]
                            },
                            {"name": "sidecar", "image": "proxy:v1"}
                        ],
                        "tolerations": [
                            {"key": "k1", "operator": "Exists"},
                            {"key": "k2", "operator": "Exists"}
                        ],
                        "volumes": [{"name": "cfg", "configMap": {"name": "web-config"}}]
                    }
                }
            },
            "status": {
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "Progressing", "status": "True"}
                ]
            }
        })
    }

    fn containers(object: &Value) -> &Vec<Value> {
        object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|item| item["name"].as_str().unwrap())
            .collect()
    }

    fn strings(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|item| item.as_str().unwrap())
            .collect()
    }

    // --- kubectl set image / kubectl patch ---------------------------------------------

    #[test]
    fn set_image_changes_only_that_container() {
        let original = deployment();
        let patch =
            json!({"spec":{"template":{"spec":{"containers":[{"name":"web","image":"img:v2"}]}}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        let mut expected = original.clone();
        expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:v2");
        assert_eq!(result, expected);
    }

    #[test]
    fn set_image_on_second_container_keeps_order() {
        let original = deployment();
        let patch = json!({"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"proxy:v2"}]}}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        let mut expected = original.clone();
        expected["spec"]["template"]["spec"]["containers"][1]["image"] = json!("proxy:v2");
        assert_eq!(result, expected);
    }

    #[test]
    fn set_image_reaches_every_workload_template() {
        let pod_spec = json!({"containers": [
            {"name": "a", "image": "a:v1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:v1"}
        ]});
        let set_a = json!({"containers": [{"name": "a", "image": "a:v2"}]});
        let cases = [
            (
                "v1",
                "Pod",
                json!({"spec": pod_spec}),
                json!({"spec": set_a}),
            ),
            (
                "apps/v1",
                "ReplicaSet",
                json!({"spec": {"template": {"spec": pod_spec}}}),
                json!({"spec": {"template": {"spec": set_a}}}),
            ),
            (
                "apps/v1",
                "StatefulSet",
                json!({"spec": {"template": {"spec": pod_spec}}}),
                json!({"spec": {"template": {"spec": set_a}}}),
            ),
            (
                "apps/v1",
                "DaemonSet",
                json!({"spec": {"template": {"spec": pod_spec}}}),
                json!({"spec": {"template": {"spec": set_a}}}),
            ),
            (
                "batch/v1",
                "Job",
                json!({"spec": {"template": {"spec": pod_spec}}}),
                json!({"spec": {"template": {"spec": set_a}}}),
            ),
            (
                "batch/v1",
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}}),
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": set_a}}}}}),
            ),
        ];
        for (api_version, kind, original, patch) in cases {
            let result = apply(&original, patch, api_version, kind);
            let text = result.to_string();
            assert!(text.contains("\"a:v2\""), "{kind}: {text}");
            assert!(text.contains("\"b:v1\""), "{kind}: {text}");
            assert!(text.contains("\"X\""), "{kind} lost env: {text}");
            assert!(!text.contains("a:v1"), "{kind}: {text}");
        }
    }

    #[test]
    fn init_and_ephemeral_containers_merge_by_name() {
        let original = json!({"spec": {
            "initContainers": [{"name": "init", "image": "init:v1", "command": ["sh"]}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox", "targetContainerName": "app"}],
            "containers": [{"name": "app", "image": "app:v1"}]
        }});
        let patch = json!({"spec": {
            "initContainers": [{"name": "init", "image": "init:v2"}],
            "ephemeralContainers": [{"name": "debug2", "image": "busybox"}]
        }});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(
            result["spec"]["initContainers"],
            json!([{"name": "init", "image": "init:v2", "command": ["sh"]}])
        );
        // Upstream places patch elements new to the list before the server's elements.
        assert_eq!(
            names(&result["spec"]["ephemeralContainers"]),
            ["debug2", "debug"]
        );
    }

    #[test]
    fn new_element_without_set_element_order_goes_first_like_upstream() {
        let original = deployment();
        let patch = json!({"spec":{"template":{"spec":{"containers":[{"name":"metrics","image":"m:v1"}]}}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            names(&result["spec"]["template"]["spec"]["containers"]),
            ["metrics", "web", "sidecar"]
        );
    }

    // --- kubectl apply (three-way patches with $setElementOrder) -------------------------

    #[test]
    fn apply_reorders_and_adds_container_with_set_element_order() {
        let original = deployment();
        let patch = json!({"spec":{"template":{"spec":{
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}, {"name": "metrics"}],
            "containers": [{"name": "metrics", "image": "metrics:v1"}]
        }}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        let list = containers(&result);
        assert_eq!(
            names(&result["spec"]["template"]["spec"]["containers"]),
            ["sidecar", "web", "metrics"]
        );
        assert_eq!(
            list[1],
            original["spec"]["template"]["spec"]["containers"][0]
        );
        assert_eq!(list[2], json!({"name": "metrics", "image": "metrics:v1"}));
    }

    #[test]
    fn apply_full_three_way_patch() {
        let original = deployment();
        // What kubectl apply sends after the manifest changed the image, an env var, a
        // port, dropped `--verbose`, the sidecar and a label.
        let patch = json!({
            "metadata": {
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}\n"},
                "labels": {"tier": null}
            },
            "spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [
                    {
                        "$setElementOrder/env": [{"name": "A"}, {"name": "C"}, {"name": "B"}],
                        "$setElementOrder/ports": [{"containerPort": 8080}, {"containerPort": 9090}],
                        "args": ["--port", "8080"],
                        "env": [{"name": "C", "value": "3"}, {"name": "B", "value": "20"}],
                        "image": "img:v2",
                        "name": "web",
                        "ports": [{"containerPort": 9090, "name": "metrics"}]
                    },
                    {"$patch": "delete", "name": "sidecar"}
                ]
            }}}
        });
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            result["metadata"]["labels"],
            json!({"app": "web"}),
            "null removes the label"
        );
        assert_eq!(
            result["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            json!("{}\n")
        );
        assert_eq!(
            result["spec"]["template"]["spec"]["containers"],
            json!([{
                "name": "web",
                "image": "img:v2",
                "args": ["--port", "8080"],
                "ports": [
                    {"containerPort": 8080, "protocol": "TCP"},
                    {"containerPort": 9090, "name": "metrics"}
                ],
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "C", "value": "3"},
                    {"name": "B", "value": "20"}
                ],
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/web"}]
            }])
        );
        assert_eq!(result["spec"]["strategy"], original["spec"]["strategy"]);
        assert_eq!(result["status"], original["status"]);
    }

    #[test]
    fn set_element_order_keeps_server_only_elements_in_place() {
        // Upstream test "set elements order in a list with server-only items 3".
        let original = json!({"spec": {"containers": [
            {"name": "1", "other": "a"},
            {"name": "2", "value": "2"},
            {"name": "7"},
            {"name": "9"},
            {"name": "8"},
            {"name": "3", "value": "3"},
            {"name": "4", "value": "4"}
        ]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [
            {"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}
        ]}});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(
            names(&result["spec"]["containers"]),
            ["2", "1", "7", "9", "8", "4", "3"]
        );
        assert_eq!(
            result["spec"]["containers"][1],
            json!({"name": "1", "other": "a"})
        );
    }

    #[test]
    fn set_element_order_with_server_only_items_2() {
        // Upstream test "set elements order in a list with server-only items 2".
        let original = json!({"spec": {"containers": [
            {"name": "1", "other": "a"},
            {"name": "2", "value": "2"},
            {"name": "9"},
            {"name": "3", "value": "3"},
            {"name": "4", "value": "4"}
        ]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [
            {"name": "2"}, {"name": "1"}, {"name": "4"}, {"name": "3"}
        ]}});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(
            names(&result["spec"]["containers"]),
            ["2", "1", "9", "4", "3"]
        );
    }

    #[test]
    fn set_element_order_adds_items_in_the_middle() {
        // Upstream test "add multiple items in a list and preserve order".
        let original = json!({"spec": {"containers": [
            {"name": "1", "other": "a"},
            {"name": "2", "value": "2", "other": "b"}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "1"}, {"name": "4"}, {"name": "2"}, {"name": "3"}],
            "containers": [{"name": "4", "value": "4"}, {"name": "3", "value": "3"}]
        }});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(
            result["spec"]["containers"],
            json!([
                {"name": "1", "other": "a"},
                {"name": "4", "value": "4"},
                {"name": "2", "value": "2", "other": "b"},
                {"name": "3", "value": "3"}
            ])
        );
    }

    #[test]
    fn delete_and_add_next_to_server_only_element_matches_upstream_order() {
        // Upstream tests "add map and delete map from merging list" (and "... with
        // conflict"): the new element's place depends on upstream's in-place slice edits.
        let original = json!({"spec": {"containers": [
            {"name": "1"},
            {"name": "2", "other": "b"},
            {"name": "4", "other": "c"}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
            "containers": [{"name": "3"}, {"$patch": "delete", "name": "1"}]
        }});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(
            result["spec"]["containers"],
            json!([{"name": "2", "other": "b"}, {"name": "4", "other": "c"}, {"name": "3"}])
        );

        let original = json!({"spec": {"containers": [
            {"name": "1", "other": "a"},
            {"name": "4", "other": "c"}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
            "containers": [{"name": "2"}, {"name": "3"}, {"$patch": "delete", "name": "1"}]
        }});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(names(&result["spec"]["containers"]), ["4", "2", "3"]);
    }

    #[test]
    fn set_element_order_on_list_missing_from_original() {
        let original = json!({"spec": {"containers": [{"name": "app"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/imagePullSecrets": [{"name": "b"}, {"name": "a"}],
            "imagePullSecrets": [{"name": "b"}, {"name": "a"}]
        }});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(
            result["spec"]["imagePullSecrets"],
            json!([{"name": "b"}, {"name": "a"}])
        );
    }

    #[test]
    fn set_element_order_out_of_order_patch_is_rejected() {
        let err = apply_err(
            &deployment(),
            json!({"spec":{"template":{"spec":{
                "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                "containers": [{"name": "sidecar", "image": "x"}, {"name": "web", "image": "y"}]
            }}}}),
            "apps/v1",
            "Deployment",
        );
        assert!(
            matches!(err, PatchError::InvalidSetElementOrder { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("spec.template.spec.containers"),
            "{err}"
        );
    }

    #[test]
    fn set_element_order_malformed_directives_are_rejected() {
        let original = deployment();
        let not_a_list = apply_err(
            &original,
            json!({"spec":{"template":{"spec":{"$setElementOrder/containers": {"name": "web"}}}}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(
            not_a_list,
            PatchError::InvalidSetElementOrder { .. }
        ));
        let bad_key = apply_err(
            &original,
            json!({"metadata": {"$setElementOrderfinalizers": ["example.com/a"]}}),
            "apps/v1",
            "Deployment",
        );
        assert!(
            matches!(bad_key, PatchError::InvalidSetElementOrder { .. }),
            "{bad_key}"
        );
        let missing_key = apply_err(
            &original,
            json!({"spec":{"template":{"spec":{"$setElementOrder/containers": [{"image": "x"}]}}}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(
            missing_key,
            PatchError::MissingMergeKey { key: "name", .. }
        ));
    }

    // --- $patch directives ---------------------------------------------------------------

    #[test]
    fn delete_directive_removes_container() {
        let original = deployment();
        let patch = json!({"spec":{"template":{"spec":{
            "containers": [{"name": "sidecar", "$patch": "delete"}]
        }}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            names(&result["spec"]["template"]["spec"]["containers"]),
            ["web"]
        );
        assert_eq!(
            containers(&result)[0],
            original["spec"]["template"]["spec"]["containers"][0]
        );
    }

    #[test]
    fn delete_directive_removes_env_var() {
        let original = deployment();
        let patch = json!({"spec":{"template":{"spec":{"containers":[{
            "name": "web",
            "$setElementOrder/env": [{"name": "B"}],
            "env": [{"name": "A", "$patch": "delete"}]
        }]}}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            containers(&result)[0]["env"],
            json!([{"name": "B", "value": "2"}])
        );
        assert_eq!(containers(&result)[0]["image"], json!("img:v1"));
        assert_eq!(
            names(&result["spec"]["template"]["spec"]["containers"]),
            ["web", "sidecar"]
        );
    }

    #[test]
    fn delete_directive_for_missing_element_is_a_no_op() {
        let original = deployment();
        let patch = json!({"spec":{"template":{"spec":{
            "containers": [{"name": "nope", "$patch": "delete"}]
        }}}});
        assert_eq!(apply(&original, patch, "apps/v1", "Deployment"), original);
    }

    #[test]
    fn replace_directive_in_list_replaces_the_list() {
        let original = deployment();
        let patch = json!({"spec":{"template":{"spec":{
            "containers": [{"name": "only", "image": "only:v1"}, {"$patch": "replace"}]
        }}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            result["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "only:v1"}])
        );
    }

    #[test]
    fn replace_directive_on_map_replaces_it() {
        let original = deployment();
        let patch = json!({"spec":{"selector":{"$patch":"replace","matchLabels":{"app":"web2"}}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            result["spec"]["selector"],
            json!({"matchLabels": {"app": "web2"}})
        );

        let patch = json!({"spec":{"template":{"spec":{"containers":[
            {"name":"web","$patch":"replace","image":"fresh:v1"}
        ]}}}});
        // Upstream treats a `$patch: replace` element as a marker replacing the whole list
        // with the patch's plain elements (none here).
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(result["spec"]["template"]["spec"]["containers"], json!([]));
    }

    #[test]
    fn replace_directive_on_missing_map_sets_it() {
        let original = json!({"spec": {"containers": [{"name": "app"}]}});
        let patch = json!({"spec": {"securityContext": {"$patch": "replace", "runAsUser": 1000, "x": null}}});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(
            result["spec"]["securityContext"],
            json!({"runAsUser": 1000})
        );
    }

    #[test]
    fn delete_directive_on_map_empties_it() {
        let original = deployment();
        let patch = json!({"spec":{"strategy":{"$patch":"delete"}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(result["spec"]["strategy"], json!({}));
        let patch = json!({"spec":{"absent":{"$patch":"delete"}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert!(result["spec"].get("absent").is_none());
    }

    #[test]
    fn unknown_directives_are_rejected() {
        let original = deployment();
        let in_map = apply_err(
            &original,
            json!({"spec":{"strategy":{"$patch":"explode"}}}),
            "apps/v1",
            "Deployment",
        );
        assert_eq!(
            in_map.to_string(),
            "unknown $patch directive \"explode\" at spec.strategy"
        );
        let in_list = apply_err(
            &original,
            json!({"spec":{"template":{"spec":{"containers":[{"name":"web","$patch":"zap"}]}}}}),
            "apps/v1",
            "Deployment",
        );
        assert!(
            matches!(in_list, PatchError::UnknownDirective { .. }),
            "{in_list}"
        );
        let on_missing = apply_err(
            &original,
            json!({"spec":{"nothing":{"$patch":7}}}),
            "apps/v1",
            "Deployment",
        );
        assert_eq!(
            on_missing.to_string(),
            "unknown $patch directive 7 at spec.nothing"
        );
        let at_root = apply_err(
            &original,
            json!({"$patch": "merge"}),
            "apps/v1",
            "Deployment",
        );
        assert_eq!(
            at_root.to_string(),
            "unknown $patch directive \"merge\" at <root>"
        );
        let merge_in_list = apply_err(
            &original,
            json!({"spec":{"template":{"spec":{"containers":[{"$patch":"merge"}]}}}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(
            merge_in_list,
            PatchError::MergeDirectiveInList { .. }
        ));
    }

    // --- $retainKeys ---------------------------------------------------------------------

    #[test]
    fn retain_keys_switches_rolling_update_to_recreate() {
        let original = deployment();
        let patch = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":null}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(result["spec"]["strategy"], json!({"type": "Recreate"}));
        let mut expected = original.clone();
        expected["spec"]["strategy"] = json!({"type": "Recreate"});
        assert_eq!(result, expected);
    }

    #[test]
    fn retain_keys_clears_unlisted_fields_and_merges_listed_ones() {
        let original = deployment();
        let patch = json!({"spec":{"strategy":{
            "$retainKeys": ["type", "rollingUpdate"],
            "rollingUpdate": {"maxSurge": 1}
        }}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            result["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}})
        );
        let patch = json!({"spec":{"strategy":{"$retainKeys": ["rollingUpdate"]}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            result["spec"]["strategy"],
            json!({"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        );
    }

    #[test]
    fn retain_keys_in_volume_switches_source() {
        let original = deployment();
        let patch = json!({"spec":{"template":{"spec":{"volumes":[{
            "$retainKeys": ["name", "secret"],
            "name": "cfg",
            "secret": {"secretName": "web-secret"}
        }]}}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            result["spec"]["template"]["spec"]["volumes"],
            json!([{"name": "cfg", "secret": {"secretName": "web-secret"}}])
        );
    }

    #[test]
    fn retain_keys_errors() {
        let original = deployment();
        let unlisted = apply_err(
            &original,
            json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":{"maxSurge":1}}}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(unlisted, PatchError::InvalidRetainKeys { .. }));
        assert!(unlisted.to_string().contains("spec.strategy"), "{unlisted}");
        assert!(unlisted.to_string().contains("rollingUpdate"), "{unlisted}");
        let not_a_list = apply_err(
            &original,
            json!({"spec":{"strategy":{"$retainKeys":"type"}}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(not_a_list, PatchError::InvalidRetainKeys { .. }));
    }

    // --- primitive lists (finalizers, podCIDRs) ------------------------------------------

    #[test]
    fn finalizers_are_unioned() {
        let original = deployment();
        let patch = json!({"metadata":{"finalizers":["example.com/b","example.com/c"]}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        // Upstream order without $setElementOrder: the server's elements keep their places
        // relative to the patch's known elements; new ones come first.
        assert_eq!(
            strings(&result["metadata"]["finalizers"]),
            ["example.com/a", "example.com/b", "example.com/c"]
        );
        let patch = json!({"metadata":{"finalizers":["example.com/z"]}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            strings(&result["metadata"]["finalizers"]),
            ["example.com/z", "example.com/a", "example.com/b"]
        );
    }

    #[test]
    fn finalizers_with_set_element_order_and_server_only_values() {
        // Upstream test "merge lists of scalars" (with strings for ints).
        let original = json!({"metadata": {"finalizers": ["1", "2", "4"]}});
        let patch = json!({"metadata": {"$setElementOrder/finalizers": ["1", "2", "3"], "finalizers": ["3"]}});
        let result = apply(&original, patch, "v1", "ConfigMap");
        assert_eq!(
            strings(&result["metadata"]["finalizers"]),
            ["1", "2", "3", "4"]
        );
    }

    #[test]
    fn delete_from_primitive_list_removes_finalizers() {
        let original = deployment();
        let patch = json!({"metadata":{
            "$setElementOrder/finalizers": ["example.com/b", "example.com/c"],
            "$deleteFromPrimitiveList/finalizers": ["example.com/a", "example.com/missing"],
            "finalizers": ["example.com/c"]
        }});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            strings(&result["metadata"]["finalizers"]),
            ["example.com/b", "example.com/c"]
        );
        // On a list the object lacks, deletion adds nothing.
        let patch = json!({"spec":{"$deleteFromPrimitiveList/podCIDRs": ["10.0.0.0/24"]}});
        let result = apply(&json!({"spec": {}}), patch, "v1", "Node");
        assert_eq!(result, json!({"spec": {}}));
    }

    #[test]
    fn delete_from_primitive_list_errors() {
        let original = deployment();
        let not_a_list = apply_err(
            &original,
            json!({"metadata":{"$deleteFromPrimitiveList/finalizers": "example.com/a"}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(
            not_a_list,
            PatchError::InvalidDeleteFromPrimitiveList { .. }
        ));
        assert!(
            not_a_list.to_string().contains("metadata.finalizers"),
            "{not_a_list}"
        );
        let bad_key = apply_err(
            &original,
            json!({"metadata":{"$deleteFromPrimitiveList": ["example.com/a"]}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(
            bad_key,
            PatchError::InvalidDeleteFromPrimitiveList { .. }
        ));
        let objects = apply_err(
            &original,
            json!({"spec":{"template":{"spec":{"$deleteFromPrimitiveList/containers": [{"name": "web"}]}}}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(
            objects,
            PatchError::InvalidDeleteFromPrimitiveList { .. }
        ));
    }

    #[test]
    fn node_pod_cidrs_conditions_and_addresses_merge() {
        let original = json!({
            "metadata": {"name": "n1"},
            "spec": {"podCIDRs": ["10.0.0.0/24"], "taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "Starting"},
                    {"type": "MemoryPressure", "status": "False"}
                ],
                "addresses": [{"type": "InternalIP", "address": "10.1.1.1"}, {"type": "Hostname", "address": "n1"}]
            }
        });
        let patch = json!({
            "spec": {"podCIDRs": ["fd00::/64"], "taints": [{"key": "b", "effect": "NoExecute"}]},
            "status": {
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                "addresses": [{"type": "InternalIP", "address": "10.1.1.2"}]
            }
        });
        let result = apply(&original, patch, "v1", "Node");
        assert_eq!(
            strings(&result["spec"]["podCIDRs"]),
            ["fd00::/64", "10.0.0.0/24"]
        );
        assert_eq!(
            result["spec"]["taints"],
            json!([{"key": "b", "effect": "NoExecute"}])
        );
        assert_eq!(
            result["status"]["conditions"],
            json!([
                {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                {"type": "MemoryPressure", "status": "False"}
            ])
        );
        assert_eq!(
            result["status"]["addresses"],
            json!([{"type": "InternalIP", "address": "10.1.1.2"}, {"type": "Hostname", "address": "n1"}])
        );
    }

    // --- maps and nulls ------------------------------------------------------------------

    #[test]
    fn null_deletes_label_and_absent_null_is_ignored() {
        let original = deployment();
        let patch = json!({"metadata":{"labels":{"tier":null,"never":null,"new":"x"}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            result["metadata"]["labels"],
            json!({"app": "web", "new": "x"})
        );
        let mut expected = original.clone();
        expected["metadata"]["labels"] = json!({"app": "web", "new": "x"});
        assert_eq!(result, expected);
    }

    #[test]
    fn null_inside_merged_element_removes_field() {
        let original = json!({"spec": {"containers": [{
            "name": "app",
            "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
        }]}});
        let patch = json!({"spec": {"containers": [{
            "name": "app",
            "env": [{"name": "A", "value": "plain", "valueFrom": null}]
        }]}});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(
            result["spec"]["containers"][0]["env"],
            json!([{"name": "A", "value": "plain"}])
        );
    }

    #[test]
    fn type_change_takes_patch_value() {
        let original = json!({"data": {"a": "1"}, "spec": {"x": "string"}});
        let patch = json!({"spec": {"x": {"nested": true, "gone": null}}, "data": ["list"]});
        let result = apply(&original, patch, "v1", "ConfigMap");
        assert_eq!(
            result,
            json!({"data": ["list"], "spec": {"x": {"nested": true}}})
        );
    }

    #[test]
    fn new_elements_and_fields_have_directives_applied() {
        let original = json!({"spec": {"containers": [{"name": "app"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "new"}],
            "containers": [{
                "name": "new",
                "$setElementOrder/env": [{"name": "B"}, {"name": "A"}],
                "env": [{"name": "B", "value": "2"}, {"name": "Z", "$patch": "delete"}, {"name": "A", "value": "1"}],
                "resources": {"limits": {"cpu": "1", "memory": null}}
            }],
            "tolerations": [{"key": "t", "value": null}, {"$patch": "delete", "key": "u"}]
        }});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(
            result,
            json!({"spec": {
                "containers": [
                    {"name": "app"},
                    {
                        "name": "new",
                        "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
                        "resources": {"limits": {"cpu": "1"}}
                    }
                ],
                "tolerations": [{"key": "t"}]
            }})
        );
    }

    // --- lists merged by key, lists replaced ----------------------------------------------

    #[test]
    fn service_ports_merge_by_port() {
        let original = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "svc"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                    {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}
                ]
            }
        });
        let patch = json!({"spec": {"ports": [{"port": 443, "targetPort": 9443}, {"port": 9090, "name": "metrics"}]}});
        let result = apply(&original, patch, "v1", "Service");
        assert_eq!(
            result["spec"]["ports"],
            json!([
                {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                {"name": "https", "port": 443, "targetPort": 9443, "protocol": "TCP"},
                {"port": 9090, "name": "metrics"}
            ])
        );
        let delete = json!({"spec": {"ports": [{"port": 80, "$patch": "delete"}]}});
        let result = apply(&original, delete, "v1", "Service");
        assert_eq!(result["spec"]["ports"].as_array().unwrap().len(), 1);
        assert_eq!(result["spec"]["ports"][0]["port"], json!(443));
    }

    #[test]
    fn merge_keys_compare_numbers_by_value() {
        let original = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        let patch = json!({"spec": {"ports": [{"port": 80.0, "targetPort": 9090}]}});
        let result = apply(&original, patch, "v1", "Service");
        assert_eq!(result["spec"]["ports"].as_array().unwrap().len(), 1);
        assert_eq!(result["spec"]["ports"][0]["targetPort"], json!(9090));
    }

    #[test]
    fn lists_without_strategy_are_replaced() {
        let original = deployment();
        let patch = json!({"spec":{"template":{"spec":{
            "tolerations": [{"key": "k3", "operator": "Exists"}],
            "containers": [{"name": "web", "args": ["--port", "9090"]}]
        }}}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            result["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "k3", "operator": "Exists"}])
        );
        assert_eq!(containers(&result)[0]["args"], json!(["--port", "9090"]));
        assert_eq!(
            containers(&result)[0]["ports"],
            json!([{"containerPort": 8080, "protocol": "TCP"}])
        );
    }

    #[test]
    fn container_ports_mounts_and_pod_lists_merge_by_their_keys() {
        let original = json!({"spec": {
            "containers": [{
                "name": "app",
                "ports": [{"containerPort": 80}],
                "volumeMounts": [{"name": "a", "mountPath": "/a"}],
                "volumeDevices": [{"name": "d", "devicePath": "/dev/x"}],
                "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]
            }],
            "imagePullSecrets": [{"name": "reg"}],
            "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a"]}],
            "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 1}],
            "schedulingGates": [{"name": "g1"}]
        }});
        let patch = json!({"spec": {
            "containers": [{
                "name": "app",
                "ports": [{"containerPort": 80, "name": "http"}],
                "volumeMounts": [{"name": "b", "mountPath": "/a"}],
                "volumeDevices": [{"name": "e", "devicePath": "/dev/y"}],
                "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]
            }],
            "imagePullSecrets": [{"name": "reg2"}],
            "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["b"]}],
            "topologySpreadConstraints": [{"topologyKey": "zone", "maxSkew": 2}],
            "schedulingGates": [{"name": "g1", "$patch": "delete"}]
        }});
        let result = apply(&original, patch, "v1", "Pod");
        let app = &result["spec"]["containers"][0];
        assert_eq!(app["ports"], json!([{"containerPort": 80, "name": "http"}]));
        assert_eq!(
            app["volumeMounts"],
            json!([{"name": "b", "mountPath": "/a"}])
        );
        assert_eq!(
            app["volumeDevices"],
            json!([{"name": "e", "devicePath": "/dev/y"}, {"name": "d", "devicePath": "/dev/x"}])
        );
        assert_eq!(
            app["resizePolicy"],
            json!([{"resourceName": "memory", "restartPolicy": "RestartContainer"}])
        );
        assert_eq!(
            result["spec"]["imagePullSecrets"],
            json!([{"name": "reg2"}, {"name": "reg"}])
        );
        assert_eq!(
            result["spec"]["hostAliases"],
            json!([{"ip": "1.2.3.4", "hostnames": ["b"]}])
        );
        assert_eq!(
            result["spec"]["topologySpreadConstraints"],
            json!([{"topologyKey": "zone", "maxSkew": 2}])
        );
        assert_eq!(result["spec"]["schedulingGates"], json!([]));
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let original = json!({"metadata": {"ownerReferences": [
            {"uid": "u1", "kind": "ReplicaSet", "name": "rs1", "controller": true},
            {"uid": "u2", "kind": "Foo", "name": "f"}
        ]}});
        let patch = json!({"metadata": {"ownerReferences": [
            {"uid": "u1", "blockOwnerDeletion": true},
            {"uid": "u2", "$patch": "delete"}
        ]}});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(
            result["metadata"]["ownerReferences"],
            json!([{"uid": "u1", "kind": "ReplicaSet", "name": "rs1", "controller": true, "blockOwnerDeletion": true}])
        );
    }

    #[test]
    fn status_conditions_merge_by_type() {
        let original = deployment();
        let patch = json!({"status":{"conditions":[{"type":"Available","status":"False","reason":"MinimumReplicasUnavailable"}]}});
        let result = apply(&original, patch, "apps/v1", "Deployment");
        assert_eq!(
            result["status"]["conditions"],
            json!([
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
                {"type": "Progressing", "status": "True"}
            ])
        );
        let pod = json!({"status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
            "podIPs": [{"ip": "10.0.0.1"}],
            "containerStatuses": [{"name": "a", "ready": false}, {"name": "b", "ready": true}]
        }});
        let patch = json!({"status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "podIPs": [{"ip": "fd00::1"}],
            "containerStatuses": [{"name": "a", "ready": true}]
        }});
        let result = apply(&pod, patch, "v1", "Pod");
        assert_eq!(
            result["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
        );
        assert_eq!(
            result["status"]["podIPs"],
            json!([{"ip": "fd00::1"}, {"ip": "10.0.0.1"}])
        );
        // containerStatuses has no patch strategy upstream: replaced.
        assert_eq!(
            result["status"]["containerStatuses"],
            json!([{"name": "a", "ready": true}])
        );
    }

    #[test]
    fn namespace_and_service_account_tables() {
        let ns = json!({"spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active", "conditions": [{"type": "A", "status": "True"}]}});
        let patch = json!({"spec": {"finalizers": ["other"]}, "status": {"conditions": [{"type": "B", "status": "True"}]}});
        let result = apply(&ns, patch, "v1", "Namespace");
        // Namespace spec.finalizers is atomic upstream, unlike metadata.finalizers.
        assert_eq!(result["spec"]["finalizers"], json!(["other"]));
        assert_eq!(names_of_types(&result["status"]["conditions"]), ["B", "A"]);

        let sa = json!({"secrets": [{"name": "s1"}], "imagePullSecrets": [{"name": "p1"}]});
        let patch = json!({"secrets": [{"name": "s2"}], "imagePullSecrets": [{"name": "p2"}]});
        let result = apply(&sa, patch, "v1", "ServiceAccount");
        assert_eq!(result["secrets"], json!([{"name": "s2"}, {"name": "s1"}]));
        assert_eq!(result["imagePullSecrets"], json!([{"name": "p2"}]));
    }

    fn names_of_types(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|item| item["type"].as_str().unwrap())
            .collect()
    }

    // --- errors ----------------------------------------------------------------------------

    #[test]
    fn missing_merge_key_names_the_list() {
        let err = apply_err(
            &deployment(),
            json!({"spec":{"template":{"spec":{"containers":[{"image":"img:v2"}]}}}}),
            "apps/v1",
            "Deployment",
        );
        assert_eq!(
            err.to_string(),
            "list element missing its merge key \"name\" at spec.template.spec.containers"
        );
        let nested = apply_err(
            &deployment(),
            json!({"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"value":"x"}]}]}}}}),
            "apps/v1",
            "Deployment",
        );
        assert_eq!(
            nested.to_string(),
            "list element missing its merge key \"name\" at spec.template.spec.containers[name=\"web\"].env"
        );
        let delete_without_key = apply_err(
            &deployment(),
            json!({"spec":{"template":{"spec":{"containers":[{"$patch":"delete"}]}}}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(
            delete_without_key,
            PatchError::MissingMergeKey { key: "name", .. }
        ));
    }

    #[test]
    fn non_object_documents_are_rejected() {
        let err = apply_err(&deployment(), json!([1, 2]), "apps/v1", "Deployment");
        assert!(matches!(err, PatchError::PatchNotObject { found: "array" }));
        assert_eq!(
            err.to_string(),
            "strategic merge patch must be a JSON object, got array"
        );
        let err = apply_strategic_merge_patch(&json!("x"), &json!({}), "v1", "Pod").unwrap_err();
        assert!(matches!(
            err,
            PatchError::OriginalNotObject { found: "string" }
        ));
    }

    #[test]
    fn malformed_lists_are_rejected() {
        let original = deployment();
        let mixed = apply_err(
            &original,
            json!({"metadata":{"finalizers":[1]}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(mixed, PatchError::InvalidList { .. }), "{mixed}");
        assert!(mixed.to_string().contains("metadata.finalizers"), "{mixed}");
        let nested_lists = apply_err(
            &original,
            json!({"spec":{"template":{"spec":{"containers":[["web"]]}}}}),
            "apps/v1",
            "Deployment",
        );
        assert!(matches!(nested_lists, PatchError::InvalidList { .. }));
        let objects_without_key = apply_err(
            &json!({"metadata": {"finalizers": [{"a": 1}]}}),
            json!({"metadata":{"finalizers":[{"b": 2}]}}),
            "v1",
            "Pod",
        );
        assert!(matches!(objects_without_key, PatchError::NoMergeKey { .. }));
    }

    // --- kinds ------------------------------------------------------------------------------

    #[test]
    fn unknown_kinds_fall_back_to_json_merge() {
        let original = json!({"spec": {
            "containers": [{"name": "a", "image": "a:v1"}, {"name": "b"}],
            "settings": {"x": 1, "y": 2}
        }, "metadata": {"finalizers": ["f1"]}});
        let patch = json!({"spec": {
            "containers": [{"name": "a", "image": "a:v2"}],
            "settings": {"y": null, "z": 3}
        }, "metadata": {"finalizers": ["f2"]}});
        let result = apply(&original, patch, "example.com/v1", "Widget");
        assert_eq!(
            result,
            json!({"spec": {
                "containers": [{"name": "a", "image": "a:v2"}],
                "settings": {"x": 1, "z": 3}
            }, "metadata": {"finalizers": ["f2"]}})
        );
        assert!(!supports_strategic_merge("example.com/v1", "Widget"));
    }

    #[test]
    fn unknown_fields_of_known_kinds_fall_back_to_json_merge() {
        let original = json!({"spec": {"extra": {"list": [1, 2], "keep": true}}});
        let patch = json!({"spec": {"extra": {"list": [3]}}});
        let result = apply(&original, patch, "v1", "Pod");
        assert_eq!(
            result,
            json!({"spec": {"extra": {"list": [3], "keep": true}}})
        );
    }

    #[test]
    fn supported_kinds() {
        for (api_version, kind) in [
            ("v1", "Pod"),
            ("v1", "Service"),
            ("v1", "Endpoints"),
            ("v1", "ConfigMap"),
            ("v1", "Secret"),
            ("v1", "ServiceAccount"),
            ("v1", "Namespace"),
            ("v1", "Node"),
            ("v1", "Event"),
            ("v1", "ReplicationController"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "ReplicaSet"),
            ("apps/v1", "StatefulSet"),
            ("apps/v1", "DaemonSet"),
            ("batch/v1", "Job"),
            ("batch/v1", "CronJob"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("discovery.k8s.io/v1", "EndpointSlice"),
            ("coordination.k8s.io/v1", "Lease"),
        ] {
            assert!(
                supports_strategic_merge(api_version, kind),
                "{api_version} {kind}"
            );
        }
        assert!(!supports_strategic_merge("apps/v1", "Pod"));
        assert!(!supports_strategic_merge("v1", "Deployment"));
        assert!(!supports_strategic_merge(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition"
        ));
        assert!(!supports_strategic_merge("v1", "pod"));
    }

    #[test]
    fn metadata_only_kinds_merge_finalizers_and_replace_other_lists() {
        let original = json!({
            "metadata": {"finalizers": ["a"]},
            "endpoints": [{"addresses": ["10.0.0.1"]}],
            "ports": [{"port": 80}]
        });
        let patch =
            json!({"metadata": {"finalizers": ["b"]}, "endpoints": [{"addresses": ["10.0.0.2"]}]});
        let result = apply(&original, patch, "discovery.k8s.io/v1", "EndpointSlice");
        assert_eq!(
            result,
            json!({
                "metadata": {"finalizers": ["b", "a"]},
                "endpoints": [{"addresses": ["10.0.0.2"]}],
                "ports": [{"port": 80}]
            })
        );
    }

    #[test]
    fn empty_patch_is_identity() {
        let original = deployment();
        assert_eq!(
            apply(&original, json!({}), "apps/v1", "Deployment"),
            original
        );
    }
}
