//! `metadata.managedFields`: who owns which fields, and how every write changes that. Updates
//! (create, update, every non-apply patch) give their manager the fields they changed and take
//! them from everyone else; an apply gives its manager exactly the fields it applied, refuses
//! (409) to change fields others own unless forced, and removes the fields its manager stopped
//! applying that nobody else owns. This is kube-apiserver's field manager stack
//! (structured-merge-diff's `Updater` plus its strip-meta, skip-non-applied and last-applied
//! layers) over plain JSON.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::fieldset::{FieldSet, Path, PathElement, PathError, display};
use super::merge::{merge, remove_items};
use super::shape::Shape;

/// The annotation `kubectl apply` (client-side) keeps its last configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manager upstream gives the fields of an object first applied to without managedFields.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// The manager whose server-side applies keep the client-side apply annotation in step.
const KUBECTL: &str = "kubectl";

/// Upstream's limit on a manager's name.
pub const MAX_MANAGER_LENGTH: usize = 128;

/// Which kind of write made an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// A server-side apply.
    Apply,
    /// Any other write.
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// What tells two entries apart, as upstream's manager identifier: an applier is one entry per
/// name and subresource whatever apiVersion it applied with; an updater one per apiVersion too.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ManagerId {
    /// The manager's name (`kubectl`, `kube-controller-manager`).
    pub name: String,
    /// Apply or Update.
    pub operation: Operation,
    /// The apiVersion of an Update entry (empty for Apply).
    pub api_version: String,
    /// The subresource written through (`status`), or empty.
    pub subresource: String,
}

/// One entry: the fields and when they last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The owned paths.
    pub fields: FieldSet,
    /// The apiVersion the paths are in.
    pub api_version: String,
    /// When the manager last changed the object.
    pub time: Option<String>,
}

/// Every entry of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManagedFields(pub BTreeMap<ManagerId, Entry>);

/// An apply that would change fields other managers own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflicts(pub Vec<(ManagerId, Path)>);

/// Why an apply or an update could not be tracked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackError {
    /// The object (or configuration) cannot be turned into paths.
    #[error(transparent)]
    Path(#[from] PathError),
    /// Another manager owns fields the apply changes.
    #[error("{}", .0.message())]
    Conflicts(Conflicts),
}

/// Where a write goes, and so which fields it may own: a write of the main resource never owns
/// `status` when a status subresource does (upstream's reset fields), a status write only `status`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The shape of the kind's objects.
    pub shape: Shape,
    /// The kind's apiVersion.
    pub api_version: String,
    /// The subresource written (`status`), or empty.
    pub subresource: String,
    /// The kind has a status subresource.
    pub has_status: bool,
}

/// An object's managedFields, decoded.
pub fn decode(list: &Value) -> Result<ManagedFields, String> {
    let mut out = ManagedFields::default();
    let Some(entries) = list.as_array() else {
        return if list.is_null() {
            Ok(out)
        } else {
            Err("managedFields must be a list".into())
        };
    };
    for entry in entries {
        let text = |field: &str| entry[field].as_str().unwrap_or_default().to_owned();
        let operation = match entry["operation"].as_str() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => return Err(format!("operation {other:?} is neither Apply nor Update")),
        };
        if entry["fieldsType"].as_str() != Some("FieldsV1") {
            return Err(format!(
                "unknown managed fields type {:?}; expected FieldsV1",
                entry["fieldsType"]
            ));
        }
        let fields = FieldSet::from_fields_v1(&entry["fieldsV1"])?;
        let id = ManagerId {
            name: text("manager"),
            operation,
            api_version: if operation == Operation::Apply {
                String::new()
            } else {
                text("apiVersion")
            },
            subresource: text("subresource"),
        };
        let previous = out.0.insert(
            id.clone(),
            Entry {
                fields,
                api_version: text("apiVersion"),
                time: entry["time"].as_str().map(str::to_owned),
            },
        );
        if previous.is_some() {
            return Err(format!("duplicate entry for manager {}", id.describe()));
        }
    }
    Ok(out)
}

/// Whether a client's managedFields ask to reset tracking: an empty list or one empty entry.
pub fn is_reset(list: &Value) -> bool {
    match list.as_array().map(Vec::as_slice) {
        Some([]) => true,
        Some([only]) => only.as_object().is_some_and(Map::is_empty),
        _ => false,
    }
}

impl ManagedFields {
    /// The entries as `metadata.managedFields`, in upstream's order (operation, time, manager,
    /// apiVersion, subresource); empty entries are dropped.
    pub fn encode(&self) -> Value {
        let mut entries: Vec<(&ManagerId, &Entry)> = self
            .0
            .iter()
            .filter(|(_, entry)| !entry.fields.is_empty())
            .collect();
        entries.sort_by(|(a, x), (b, y)| {
            (
                a.operation,
                &x.time,
                &a.name,
                &x.api_version,
                &a.subresource,
            )
                .cmp(&(
                    b.operation,
                    &y.time,
                    &b.name,
                    &y.api_version,
                    &b.subresource,
                ))
        });
        Value::Array(
            entries
                .into_iter()
                .map(|(id, entry)| {
                    let mut out = json!({
                        "manager": id.name,
                        "operation": id.operation.as_str(),
                        "apiVersion": entry.api_version,
                        "fieldsType": "FieldsV1",
                        "fieldsV1": entry.fields.to_fields_v1(),
                    });
                    if let Some(time) = &entry.time {
                        out["time"] = json!(time);
                    }
                    if !id.subresource.is_empty() {
                        out["subresource"] = json!(id.subresource);
                    }
                    out
                })
                .collect(),
        )
    }

    fn drop_empty(&mut self) {
        self.0.retain(|_, entry| !entry.fields.is_empty());
    }

    /// Keeps at most [`MAX_UPDATE_MANAGERS`] Update entries, as upstream's capManagersManager:
    /// the oldest are merged, one bucket per apiVersion, into an `ancient-changes` entry, so an
    /// object written by many clients does not grow without bound.
    fn cap_update_managers(&mut self) {
        let mut updaters: Vec<ManagerId> = self
            .0
            .keys()
            .filter(|id| id.operation == Operation::Update)
            .cloned()
            .collect();
        let mut length = updaters.len();
        if length <= MAX_UPDATE_MANAGERS {
            return;
        }
        // Oldest first; entries without a time count as the oldest of all.
        updaters.sort_by(|a, b| (&self.0[a].time, a).cmp(&(&self.0[b].time, b)));
        let mut first_of_version: BTreeMap<String, ManagerId> = BTreeMap::new();
        for manager in updaters {
            if length <= MAX_UPDATE_MANAGERS {
                break;
            }
            let Some(api_version) = self.0.get(&manager).map(|entry| entry.api_version.clone())
            else {
                continue;
            };
            let bucket = ManagerId {
                name: ANCIENT_CHANGES.into(),
                operation: Operation::Update,
                api_version: api_version.clone(),
                subresource: String::new(),
            };
            let Some(first) = first_of_version.get(&api_version) else {
                // The first of its version waits: it becomes the bucket if another follows.
                first_of_version.insert(api_version, manager);
                continue;
            };
            if manager == bucket {
                continue;
            }
            if !self.0.contains_key(&bucket)
                && let Some(first_entry) = self.0.remove(first)
            {
                self.0.insert(bucket.clone(), first_entry);
            }
            let Some(entry) = self.0.remove(&manager) else {
                continue;
            };
            if let Some(merged) = self.0.get_mut(&bucket) {
                merged.fields = entry.fields.union(&merged.fields);
                // The time of the update merged last, the most recent of the bucket.
                merged.time = entry.time;
            }
            length -= 1;
        }
    }
}

/// How many Update entries an object keeps (upstream's DefaultMaxUpdateManagers).
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager the oldest Update entries are merged into.
const ANCIENT_CHANGES: &str = "ancient-changes";

impl ManagerId {
    /// Upstream's `printManager`: `"name"`, plus the subresource, plus `using <apiVersion>` for
    /// updaters.
    pub fn describe(&self) -> String {
        let mut out = format!("{:?}", self.name);
        if !self.subresource.is_empty() {
            out.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            out.push_str(&format!(" using {}", self.api_version));
        }
        out
    }
}

impl Conflicts {
    /// Upstream's message: `Apply failed with 1 conflict: conflict with "m" using v1: .a.b`,
    /// or for several the paths grouped under each manager.
    pub fn message(&self) -> String {
        if let [(manager, path)] = self.0.as_slice() {
            return format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                manager.describe(),
                display(path)
            );
        }
        let mut by_manager: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (manager, path) in &self.0 {
            by_manager
                .entry(manager.describe())
                .or_default()
                .push(display(path));
        }
        let mut lines = Vec::new();
        for (manager, paths) in by_manager {
            lines.push(format!("conflicts with {manager}:"));
            lines.extend(paths.into_iter().map(|path| format!("- {path}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            self.0.len(),
            lines.join("\n")
        )
    }

    /// The `FieldManagerConflict` causes: (message, field).
    pub fn causes(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(manager, path)| {
                (
                    format!("conflict with {}", manager.describe()),
                    display(path),
                )
            })
            .collect()
    }
}

impl Target {
    /// Whether a write through this target may own `path`.
    fn tracks(&self, path: &Path) -> bool {
        let under_status = path.first() == Some(&PathElement::Field("status".into()));
        if self.subresource == "status" {
            under_status
        } else {
            !(self.has_status && under_status)
        }
    }

    /// `set` without what this target may not own and without the identity and server-owned
    /// metadata nobody owns (upstream's strip-meta set).
    fn own(&self, mut set: FieldSet) -> FieldSet {
        set.retain(|path| self.tracks(path) && !server_owned(path));
        set
    }

    fn id(&self, name: &str, operation: Operation) -> ManagerId {
        ManagerId {
            name: name.to_owned(),
            operation,
            api_version: if operation == Operation::Apply {
                String::new()
            } else {
                self.api_version.clone()
            },
            subresource: self.subresource.clone(),
        }
    }

    fn compare(&self, old: &Value, new: &Value) -> Result<Changes, PathError> {
        let comparison = FieldSet::compare(old, new, self.shape)?;
        let keep = |mut set: FieldSet| {
            set.retain(|path| self.tracks(path));
            set
        };
        Ok(Changes {
            changed: keep(comparison.added.union(&comparison.modified)),
            removed: keep(comparison.removed),
        })
    }
}

struct Changes {
    /// Added or modified.
    changed: FieldSet,
    removed: FieldSet,
}

fn server_owned(path: &Path) -> bool {
    let field = |element: &PathElement, name: &str| *element == PathElement::Field(name.into());
    match path.as_slice() {
        [only] => ["apiVersion", "kind", "metadata"]
            .iter()
            .any(|name| field(only, name)),
        [first, second] if field(first, "metadata") => [
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        ]
        .iter()
        .any(|name| field(second, name)),
        _ => false,
    }
}

/// Takes the paths a write changed from every manager but `except`, and the removed paths from
/// everyone; returns, per manager, what it lost of `changed` (the conflicts, for an apply).
fn take_from_others(
    managed: &mut ManagedFields,
    except: &ManagerId,
    changes: &Changes,
) -> Vec<(ManagerId, Path)> {
    let mut lost = Vec::new();
    for (id, entry) in &mut managed.0 {
        if id == except {
            continue;
        }
        let conflicting = entry.fields.intersection(&changes.changed);
        lost.extend(conflicting.iter().map(|path| (id.clone(), path.clone())));
        entry.fields = entry
            .fields
            .difference(&conflicting)
            .difference(&changes.removed);
    }
    lost
}

/// Tracks a non-apply write of `new` over `old` (None on create) by `manager`: the paths it
/// changed become `manager`'s and no one else's. `managed` is what the write starts from.
/// Returns None when the object is not tracked (it exists and has no managedFields: upstream
/// starts tracking those at their first apply).
pub fn update(
    target: &Target,
    old: Option<&Value>,
    new: &Value,
    mut managed: ManagedFields,
    manager: &str,
    now: &str,
) -> Result<Option<ManagedFields>, PathError> {
    if managed.0.is_empty() && old.is_some() {
        return Ok(None);
    }
    let empty = Value::Object(Map::new());
    let changes = target.compare(old.unwrap_or(&empty), new)?;
    let id = target.id(manager, Operation::Update);
    // The write's own changes are a manager of their own first (upstream's "current
    // operation"), so the manager's earlier entry loses what was removed like any other.
    take_from_others(&mut managed, &ManagerId::current(), &changes);
    let mine = target.own(changes.changed);
    if !mine.is_empty() {
        let entry = managed.0.entry(id).or_insert_with(|| Entry {
            fields: FieldSet::new(),
            api_version: target.api_version.clone(),
            time: None,
        });
        entry.fields = entry.fields.union(&mine);
        entry.api_version.clone_from(&target.api_version);
        entry.time = Some(now.to_owned());
    }
    managed.drop_empty();
    managed.cap_update_managers();
    Ok(Some(managed))
}

impl ManagerId {
    fn current() -> Self {
        Self {
            name: String::new(),
            operation: Operation::Update,
            api_version: "\0current-operation".into(),
            subresource: String::new(),
        }
    }
}

/// The outcome of an apply.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The merged object (without managedFields).
    pub object: Value,
    /// The new entries.
    pub managed: ManagedFields,
}

/// Applies `config` over `live` (an empty object when creating) for `manager`.
pub fn apply(
    target: &Target,
    live: &Value,
    config: &Value,
    managed: ManagedFields,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Applied, TrackError> {
    match apply_once(target, live, config, managed.clone(), manager, force, now) {
        Err(TrackError::Conflicts(conflicts)) if manager == KUBECTL && !force => {
            // kubectl's switch from client-side to server-side apply: conflicts on fields whose
            // live value is still what the last client-side apply set are expected, so forced.
            let allowed = fields_of_last_applied(target, live)?;
            let remaining: Vec<(ManagerId, Path)> = conflicts
                .0
                .into_iter()
                .filter(|(_, path)| !allowed.contains(path))
                .collect();
            if remaining.is_empty() {
                apply_once(target, live, config, managed, manager, true, now)
            } else {
                Err(TrackError::Conflicts(Conflicts(remaining)))
            }
        }
        other => other,
    }
    .map(|mut applied| {
        keep_last_applied_in_step(&mut applied.object, live, config, manager);
        applied
    })
}

fn apply_once(
    target: &Target,
    live: &Value,
    config: &Value,
    mut managed: ManagedFields,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Applied, TrackError> {
    let shape = target.shape;
    let is_live = live.as_object().is_some_and(|map| !map.is_empty());
    if managed.0.is_empty() && is_live {
        // An object nobody tracked yet: its fields belong to one stand-in updater, so an apply
        // neither silently takes them nor removes them.
        let changes = target.compare(&Value::Object(Map::new()), live)?;
        let fields = target.own(changes.changed);
        if !fields.is_empty() {
            managed.0.insert(
                target.id(BEFORE_FIRST_APPLY, Operation::Update),
                Entry {
                    fields,
                    api_version: target.api_version.clone(),
                    time: Some(now.to_owned()),
                },
            );
        }
    }
    let applied_set = target.own(FieldSet::of_object(config, shape)?);
    let merged = merge(live, config, shape)?;
    let id = target.id(manager, Operation::Apply);
    let previous = managed.0.get(&id).map(|entry| entry.fields.clone());
    let previous_time = managed.0.get(&id).and_then(|entry| entry.time.clone());
    managed.0.insert(
        id.clone(),
        Entry {
            fields: applied_set,
            api_version: target.api_version.clone(),
            time: previous_time,
        },
    );
    let object = match &previous {
        Some(previous) if !previous.is_empty() => prune(&merged, &managed, previous, shape)?,
        _ => merged,
    };
    let changes = target.compare(live, &object)?;
    let conflicts = {
        let mut probe = managed.clone();
        take_from_others(&mut probe, &id, &changes)
    };
    if !force && !conflicts.is_empty() {
        return Err(TrackError::Conflicts(Conflicts(conflicts)));
    }
    take_from_others(&mut managed, &id, &changes);
    if *live != object
        && let Some(entry) = managed.0.get_mut(&id)
    {
        entry.time = Some(now.to_owned());
    }
    managed.drop_empty();
    Ok(Applied { object, managed })
}

/// Removes from `merged` what the applier applied last time (`previous`), no longer applies,
/// and nobody else owns; named struct fields count as owned through their children, so a
/// struct goes only when nothing in it is owned.
fn prune(
    merged: &Value,
    managed: &ManagedFields,
    previous: &FieldSet,
    shape: Shape,
) -> Result<Value, PathError> {
    let previous = previous.with_named_parents(shape);
    let owned = managed
        .0
        .values()
        .fold(FieldSet::new(), |all, entry| all.union(&entry.fields))
        .with_named_parents(shape);
    let present = FieldSet::of_object(merged, shape)?.with_named_parents(shape);
    let removable = present.intersection(&previous).difference(&owned);
    remove_items(merged, &removable, shape)
}

/// The fields of the client-side apply annotation whose live value still equals it.
fn fields_of_last_applied(target: &Target, live: &Value) -> Result<FieldSet, PathError> {
    let Some(last) = live["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .filter(Value::is_object)
    else {
        return Ok(FieldSet::new());
    };
    let fields = FieldSet::of_object(&last, target.shape)?;
    let changed = target.compare(&last, live)?;
    Ok(fields.difference(&changed.changed))
}

/// kubectl's server-side applies rewrite the client-side apply annotation (when the object has
/// one) to the applied configuration, so a later client-side apply starts from it.
fn keep_last_applied_in_step(object: &mut Value, live: &Value, config: &Value, manager: &str) {
    if manager != KUBECTL || live["metadata"]["annotations"][LAST_APPLIED].is_null() {
        return;
    }
    let mut last = config.clone();
    if let Some(annotations) = last["metadata"]["annotations"].as_object_mut() {
        annotations.remove(LAST_APPLIED);
    }
    if let Some(annotations) = object["metadata"]["annotations"].as_object_mut() {
        annotations.insert(LAST_APPLIED.into(), json!(format!("{last}\n")));
    }
}

/// The manager of a write without `fieldManager`: the User-Agent up to its first `/`, printable
/// characters only, at most 128 bytes (upstream's `prefixFromUserAgent`).
pub fn manager_from_user_agent(user_agent: &str) -> String {
    let mut out = String::new();
    for c in user_agent.split('/').next().unwrap_or_default().chars() {
        if c.is_control() {
            continue;
        }
        if out.len() + c.len_utf8() > MAX_MANAGER_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    //! structured-merge-diff's documented behaviour, case by case, on a Deployment.

    use super::*;

    const NOW: &str = "2026-12-06T10:00:00Z";

    fn target() -> Target {
        Target {
            shape: Shape::of_kind("apps/v1", "Deployment"),
            api_version: "apps/v1".into(),
            subresource: String::new(),
            has_status: true,
        }
    }

    fn deployment(spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn apply_ok(live: &Value, config: &Value, managed: ManagedFields, manager: &str) -> Applied {
        apply(&target(), live, config, managed, manager, false, NOW).unwrap()
    }

    fn owned(managed: &ManagedFields, name: &str, operation: Operation) -> Vec<String> {
        managed
            .0
            .iter()
            .find(|(id, _)| id.name == name && id.operation == operation)
            .map(|(_, entry)| entry.fields.iter().map(|p| display(p)).collect())
            .unwrap_or_default()
    }

    /// The entries after `manager` created `object`.
    fn created_by(manager: &str, object: &Value) -> ManagedFields {
        update(
            &target(),
            None,
            object,
            ManagedFields::default(),
            manager,
            NOW,
        )
        .unwrap()
        .unwrap()
    }

    fn conflicts(err: TrackError) -> Conflicts {
        match err {
            TrackError::Conflicts(conflicts) => conflicts,
            other => panic!("expected conflicts, got {other:?}"),
        }
    }

    #[test]
    fn an_apply_owns_exactly_what_it_applied() {
        let config = deployment(json!({"replicas": 2, "paused": false}));
        let applied = apply_ok(&json!({}), &config, ManagedFields::default(), "a");
        assert_eq!(
            applied.object["spec"],
            json!({"replicas": 2, "paused": false})
        );
        assert_eq!(
            owned(&applied.managed, "a", Operation::Apply),
            [".spec.paused", ".spec.replicas"]
        );
        let encoded = applied.managed.encode();
        assert_eq!(encoded[0]["manager"], "a");
        assert_eq!(encoded[0]["operation"], "Apply");
        assert_eq!(encoded[0]["apiVersion"], "apps/v1");
        assert_eq!(encoded[0]["time"], NOW);
        assert_eq!(
            encoded[0]["fieldsV1"],
            json!({"f:spec": {"f:paused": {}, "f:replicas": {}}})
        );
        assert!(encoded[0].get("subresource").is_none());
    }

    #[test]
    fn the_same_value_is_shared_and_a_different_one_conflicts() {
        let first = apply_ok(
            &json!({}),
            &deployment(json!({"replicas": 2})),
            ManagedFields::default(),
            "a",
        );
        // Same value: both own it, no conflict.
        let shared = apply_ok(
            &first.object,
            &deployment(json!({"replicas": 2})),
            first.managed.clone(),
            "b",
        );
        assert_eq!(
            owned(&shared.managed, "a", Operation::Apply),
            [".spec.replicas"]
        );
        assert_eq!(
            owned(&shared.managed, "b", Operation::Apply),
            [".spec.replicas"]
        );
        // A different value: 409 naming the owner and the field.
        let err = apply(
            &target(),
            &first.object,
            &deployment(json!({"replicas": 3})),
            first.managed.clone(),
            "b",
            false,
            NOW,
        )
        .unwrap_err();
        let conflicts = conflicts(err);
        assert_eq!(
            conflicts.message(),
            "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
        );
        assert_eq!(
            conflicts.causes(),
            [(
                "conflict with \"a\"".to_owned(),
                ".spec.replicas".to_owned()
            )]
        );
    }

    #[test]
    fn force_takes_ownership() {
        let first = apply_ok(
            &json!({}),
            &deployment(json!({"replicas": 2, "paused": true})),
            ManagedFields::default(),
            "a",
        );
        let forced = apply(
            &target(),
            &first.object,
            &deployment(json!({"replicas": 3})),
            first.managed,
            "b",
            true,
            NOW,
        )
        .unwrap();
        assert_eq!(forced.object["spec"]["replicas"], 3);
        assert_eq!(
            owned(&forced.managed, "a", Operation::Apply),
            [".spec.paused"]
        );
        assert_eq!(
            owned(&forced.managed, "b", Operation::Apply),
            [".spec.replicas"]
        );
    }

    #[test]
    fn conflicts_with_updaters_name_their_api_version_and_list_every_field() {
        let live = deployment(json!({"replicas": 1, "paused": false}));
        let managed = created_by("kubectl-client-side-apply", &live);
        let err = apply(
            &target(),
            &live,
            &deployment(json!({"replicas": 2, "paused": true})),
            managed,
            "kubectl",
            false,
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            conflicts(err).message(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.paused\n- .spec.replicas"
        );
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_someone_else_owns_them() {
        let config = deployment(json!({"replicas": 2, "paused": true, "minReadySeconds": 5}));
        let first = apply_ok(&json!({}), &config, ManagedFields::default(), "a");
        // b shares minReadySeconds.
        let both = apply_ok(
            &first.object,
            &deployment(json!({"minReadySeconds": 5})),
            first.managed,
            "b",
        );
        let second = apply_ok(
            &both.object,
            &deployment(json!({"replicas": 2})),
            both.managed,
            "a",
        );
        assert_eq!(
            second.object["spec"],
            json!({"replicas": 2, "minReadySeconds": 5})
        );
        assert_eq!(
            owned(&second.managed, "a", Operation::Apply),
            [".spec.replicas"]
        );
    }

    #[test]
    fn map_list_elements_are_owned_and_removed_by_key() {
        let containers = |names: &[&str]| {
            let list: Vec<Value> = names
                .iter()
                .map(|n| json!({"name": n, "image": format!("{n}:1")}))
                .collect();
            deployment(json!({"template": {"spec": {"containers": list}}}))
        };
        let first = apply_ok(
            &json!({}),
            &containers(&["a", "b"]),
            ManagedFields::default(),
            "m",
        );
        assert!(
            owned(&first.managed, "m", Operation::Apply)
                .contains(&".spec.template.spec.containers[name=\"b\"]".to_owned())
        );
        // Another applier adds its own container; the first drops "b".
        let other = apply_ok(&first.object, &containers(&["c"]), first.managed, "n");
        let dropped = apply_ok(&other.object, &containers(&["a"]), other.managed, "m");
        let names: Vec<&str> = dropped.object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn sets_are_owned_by_value() {
        let with = |finalizers: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "finalizers": finalizers}})
        };
        let first = apply_ok(
            &json!({}),
            &with(json!(["a/x", "a/y"])),
            ManagedFields::default(),
            "a",
        );
        let second = apply_ok(&first.object, &with(json!(["b/z"])), first.managed, "b");
        assert_eq!(
            second.object["metadata"]["finalizers"],
            json!(["a/x", "a/y", "b/z"])
        );
        assert_eq!(
            owned(&second.managed, "b", Operation::Apply),
            [".metadata.finalizers[=\"b/z\"]"]
        );
        let third = apply_ok(&second.object, &with(json!(["a/y"])), second.managed, "a");
        assert_eq!(
            third.object["metadata"]["finalizers"],
            json!(["a/y", "b/z"])
        );
    }

    #[test]
    fn atomic_lists_and_structs_are_owned_and_replaced_whole() {
        let with_args = |args: Value| {
            deployment(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "c", "args": args}]}}}))
        };
        let first = apply_ok(
            &json!({}),
            &with_args(json!(["a", "b"])),
            ManagedFields::default(),
            "a",
        );
        let fields = owned(&first.managed, "a", Operation::Apply);
        assert!(fields.contains(&".spec.selector".to_owned()));
        assert!(fields.contains(&".spec.template.spec.containers[name=\"c\"].args".to_owned()));
        assert!(
            !fields
                .iter()
                .any(|f| f.contains("matchLabels") || f.contains("args["))
        );
        // Another manager changing one element of the atomic list conflicts on the whole list.
        let err = apply(
            &target(),
            &first.object,
            &with_args(json!(["a", "c"])),
            first.managed,
            "b",
            false,
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            conflicts(err).causes()[0].1,
            ".spec.template.spec.containers[name=\"c\"].args"
        );
    }

    #[test]
    fn updates_take_what_they_change_and_keep_their_own_entry() {
        let applied = apply_ok(
            &json!({}),
            &deployment(json!({"replicas": 2, "paused": false})),
            ManagedFields::default(),
            "a",
        );
        let mut scaled = applied.object.clone();
        scaled["spec"]["replicas"] = json!(5);
        scaled["metadata"]["labels"] = json!({"x": "y"});
        let managed = update(
            &target(),
            Some(&applied.object),
            &scaled,
            applied.managed,
            "kube-controller-manager",
            NOW,
        )
        .unwrap()
        .unwrap();
        assert_eq!(owned(&managed, "a", Operation::Apply), [".spec.paused"]);
        assert_eq!(
            owned(&managed, "kube-controller-manager", Operation::Update),
            [".metadata.labels", ".metadata.labels.x", ".spec.replicas"]
        );
        let encoded = managed.encode();
        // Apply entries first, then updates; an updater's new map owns itself (".").
        assert_eq!(encoded[0]["operation"], "Apply");
        assert_eq!(
            encoded[1]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {".": {}, "f:x": {}}}, "f:spec": {"f:replicas": {}}})
        );
    }

    #[test]
    fn server_owned_metadata_and_reset_status_are_nobodys() {
        let mut live = deployment(json!({"replicas": 1}));
        live["status"] = json!({"replicas": 1});
        live["metadata"]["uid"] = json!("u");
        live["metadata"]["resourceVersion"] = json!("5");
        let managed = update(&target(), None, &live, ManagedFields::default(), "c", NOW)
            .unwrap()
            .unwrap();
        assert_eq!(owned(&managed, "c", Operation::Update), [".spec.replicas"]);
        // A status write owns status only.
        let status = Target {
            subresource: "status".into(),
            ..target()
        };
        let mut next = live.clone();
        next["status"]["replicas"] = json!(2);
        next["metadata"]["resourceVersion"] = json!("6");
        let managed = update(&status, Some(&live), &next, managed, "c", NOW)
            .unwrap()
            .unwrap();
        let entry = managed
            .0
            .keys()
            .find(|id| id.subresource == "status")
            .unwrap();
        assert_eq!(
            entry.describe(),
            "\"c\" with subresource \"status\" using apps/v1"
        );
        assert_eq!(managed.encode()[1]["subresource"], "status");
    }

    #[test]
    fn untracked_objects_stay_untracked_until_their_first_apply() {
        let live = deployment(json!({"replicas": 1, "paused": false}));
        let mut next = live.clone();
        next["spec"]["replicas"] = json!(2);
        assert_eq!(
            update(
                &target(),
                Some(&live),
                &next,
                ManagedFields::default(),
                "c",
                NOW
            )
            .unwrap(),
            None
        );
        // The first apply finds the existing fields owned by a stand-in updater.
        let err = apply(
            &target(),
            &live,
            &deployment(json!({"replicas": 3})),
            ManagedFields::default(),
            "a",
            false,
            NOW,
        )
        .unwrap_err();
        assert_eq!(
            conflicts(err).message(),
            "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
        );
    }

    #[test]
    fn kubectl_migrates_from_client_side_apply_when_the_values_are_its_own() {
        let config = deployment(json!({"replicas": 1}));
        let mut live = config.clone();
        live["metadata"]["annotations"] = json!({LAST_APPLIED: config.to_string()});
        let managed = created_by("kubectl-client-side-apply", &live);
        // kubectl applies a new value for a field the client-side apply set: no conflict.
        let applied = apply(
            &target(),
            &live,
            &deployment(json!({"replicas": 4})),
            managed.clone(),
            "kubectl",
            false,
            NOW,
        )
        .unwrap();
        assert_eq!(applied.object["spec"]["replicas"], 4);
        let last: Value = serde_json::from_str(
            applied.object["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            last["spec"]["replicas"], 4,
            "the annotation follows the applied configuration"
        );
        // Another manager's apply still conflicts.
        assert!(
            apply(
                &target(),
                &live,
                &deployment(json!({"replicas": 4})),
                managed,
                "other",
                false,
                NOW
            )
            .is_err()
        );
    }

    #[test]
    fn decoding_checks_entries_and_reset_is_recognised() {
        let list = json!([{"manager": "m", "operation": "Update", "apiVersion": "v1",
            "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:a": {}}}}]);
        let managed = decode(&list).unwrap();
        assert_eq!(managed.encode(), list);
        assert!(
            decode(&json!([{"manager": "m", "operation": "Patch", "fieldsType": "FieldsV1"}]))
                .is_err()
        );
        assert!(
            decode(&json!([{"manager": "m", "operation": "Apply", "fieldsType": "FieldsV2"}]))
                .is_err()
        );
        let twice = json!([list[0], list[0]]);
        assert!(decode(&twice).unwrap_err().contains("duplicate"));
        assert!(is_reset(&json!([])));
        assert!(is_reset(&json!([{}])));
        assert!(!is_reset(&list));
        assert!(!is_reset(&Value::Null));
    }

    #[test]
    fn the_oldest_of_more_than_ten_updaters_merge_into_ancient_changes() {
        let target = target();
        let mut object = deployment(json!({"replicas": 1}));
        let mut managed = created_by("creator", &object);
        // Twelve more managers, each changing its own annotation a second apart.
        for i in 0..12 {
            let old = object.clone();
            object["metadata"]["annotations"][format!("by-{i:02}")] = json!("x");
            let now = format!("2026-12-06T10:00:{i:02}Z");
            managed = update(
                &target,
                Some(&old),
                &object,
                managed,
                &format!("m{i:02}"),
                &now,
            )
            .unwrap()
            .unwrap();
        }
        let updaters: Vec<&str> = managed
            .0
            .keys()
            .filter(|id| id.operation == Operation::Update)
            .map(|id| id.name.as_str())
            .collect();
        assert_eq!(updaters.len(), MAX_UPDATE_MANAGERS, "{updaters:?}");
        // The creator (oldest) and m00..m02 went into the bucket; m03..m11 stay.
        assert!(updaters.contains(&"ancient-changes"), "{updaters:?}");
        assert!(!updaters.contains(&"creator") && !updaters.contains(&"m02"));
        assert!(updaters.contains(&"m03") && updaters.contains(&"m11"));
        let ancient = owned(&managed, "ancient-changes", Operation::Update);
        assert!(
            ancient.iter().any(|path| path.contains("by-00"))
                && ancient.iter().any(|path| path.contains("by-02"))
                && ancient.iter().any(|path| path.contains("replicas")),
            "{ancient:?}"
        );
        let bucket = managed
            .0
            .iter()
            .find(|(id, _)| id.name == "ancient-changes")
            .unwrap()
            .1;
        assert_eq!(bucket.time.as_deref(), Some("2026-12-06T10:00:02Z"));
    }

    #[test]
    fn managers_come_from_the_user_agent_prefix() {
        assert_eq!(
            manager_from_user_agent("kubectl/v1.33.1 (linux/amd64) kubernetes/abc"),
            "kubectl"
        );
        assert_eq!(
            manager_from_user_agent("kube-controller-manager/v1.33.0"),
            "kube-controller-manager"
        );
        assert_eq!(manager_from_user_agent(""), "");
        assert_eq!(
            manager_from_user_agent(&"x".repeat(300)).len(),
            MAX_MANAGER_LENGTH
        );
    }
}
