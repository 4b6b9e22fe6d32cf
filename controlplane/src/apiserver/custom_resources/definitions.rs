//! Following the CustomResourceDefinitions: every API server keeps a copy of them (listed,
//! then watched) and after each change makes its registry serve exactly the kinds whose names
//! were accepted, writes each definition's accepted names and `NamesAccepted` / `Established`
//! conditions (upstream's naming and establishing controllers, which also run in every API
//! server; the writes are compare-and-swap, so API servers that agree write once), and deletes
//! the objects of a definition being deleted before letting it go (upstream's finalizer
//! controller).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::{CustomStrategy, Shape, served_of};
use crate::apiserver::{
    ApiServer,
    handlers::{DeleteOptions, Scope},
    registry::{
        Resource,
        apiextensions::custom_resource_definition::{
            CLEANUP_FINALIZER, RESOURCE as DEFINITIONS, condition, set_condition,
        },
    },
};
use crate::storage::{
    StorageError,
    mirror::{Change, mirror},
};

/// How often a definition being deleted, or whose status could not be written, is looked at
/// again without a change to wake for it.
const RETRY: Duration = Duration::from_secs(2);

/// The definitions as etcd has them, by name.
type Definitions = BTreeMap<String, Value>;

/// Follows the definitions in `api`'s store for as long as the runtime runs: returns once the
/// first list is served (so kinds defined before a restart are served before requests are).
pub async fn follow(api: ApiServer) -> Result<(), StorageError> {
    let copy: Arc<Mutex<Definitions>> = Arc::default();
    let changed = Arc::new(tokio::sync::Notify::new());
    let sink = {
        let copy = Arc::clone(&copy);
        let changed = Arc::clone(&changed);
        Arc::new(move |change: Change<'_>| {
            let mut copy = copy
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            change.apply_by_name(&mut copy, Value::clone);
            changed.notify_one();
        })
    };
    mirror(&api.store, definitions_prefix(), sink).await?;
    let snapshot_of = move || {
        copy.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    let mut served = Served::default();
    let mut snapshot = snapshot_of();
    served.apply(&api, &snapshot);
    tokio::spawn(async move {
        loop {
            if settle(&api, &snapshot).await {
                changed.notified().await;
            } else {
                let _ = tokio::time::timeout(RETRY, changed.notified()).await;
            }
            snapshot = snapshot_of();
            served.apply(&api, &snapshot);
        }
    });
    Ok(())
}

/// `/registry/apiextensions.k8s.io/customresourcedefinitions/`.
fn definitions_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| DEFINITIONS.prefix(None))
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// What this API server serves of the definitions: per served (group, version, plural) its
/// strategy and descriptor.
#[derive(Default)]
struct Served {
    kinds: BTreeMap<Key, (&'static CustomStrategy, &'static Resource)>,
    /// Versions the registry refused (their names clash with a built-in kind), as they were:
    /// tried again when they change or when a kind stops being served.
    refused: BTreeMap<Key, Shape>,
}

/// A served version: (group, version, plural).
type Key = (String, String, String);

impl Served {
    /// Serves the versions of every definition whose names are accepted, each as its
    /// definition says now, and stops serving the rest.
    fn apply(&mut self, api: &ApiServer, definitions: &Definitions) {
        let mut wanted = BTreeSet::new();
        for definition in definitions.values() {
            if condition(definition, "NamesAccepted") != Some("True")
                || definition["status"]["acceptedNames"]["plural"]
                    != definition["spec"]["names"]["plural"]
            {
                continue;
            }
            for version in definition["spec"]["versions"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if version["served"] != json!(true) {
                    continue;
                }
                let key = (
                    text(&definition["spec"]["group"]),
                    text(&version["name"]),
                    text(&definition["spec"]["names"]["plural"]),
                );
                let served = served_of(definition, version);
                let shape = Shape::of(definition, version);
                match self.kinds.get(&key) {
                    Some((strategy, resource)) if shape.describes(resource) => {
                        strategy.replace(served);
                    }
                    // Refused before as it is: trying again would only leak its names again.
                    _ if self.refused.get(&key) == Some(&shape) => continue,
                    _ => {
                        if let Some((_, old)) = self.kinds.remove(&key) {
                            api.registry.unregister(old.group, old.version, old.plural);
                            self.refused.clear();
                        }
                        let strategy: &'static CustomStrategy =
                            Box::leak(Box::new(CustomStrategy::new(served)));
                        match api.registry.register(shape.clone().into_resource(strategy)) {
                            Ok(resource) => {
                                tracing::info!(kind = resource.kind, api_version = %resource.api_version(), "serving a custom resource");
                                self.refused.remove(&key);
                                self.kinds.insert(key.clone(), (strategy, resource));
                            }
                            Err(err) => {
                                tracing::warn!(
                                    definition = name_of(definition),
                                    "cannot serve {}/{}: {err}",
                                    key.0,
                                    key.1
                                );
                                self.refused.insert(key, shape);
                                continue;
                            }
                        }
                    }
                }
                wanted.insert(key);
            }
        }
        let gone: Vec<_> = self
            .kinds
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some((_, resource)) = self.kinds.remove(&key) {
                api.registry
                    .unregister(resource.group, resource.version, resource.plural);
                self.refused.clear();
                tracing::info!(kind = resource.kind, api_version = %resource.api_version(), "no longer serving a custom resource");
            }
        }
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

/// Writes every definition's names and conditions where they are not yet what they should
/// be, and deletes the objects of definitions being deleted. True when nothing is left to do.
async fn settle(api: &ApiServer, definitions: &Definitions) -> bool {
    let mut settled = true;
    for definition in definitions.values() {
        let name = name_of(definition);
        let deleting = !definition["metadata"]["deletionTimestamp"].is_null();
        let result = if deleting {
            clean_up(api, definition).await.map(|done| {
                settled &= done;
            })
        } else {
            let wanted = named(definition, definitions);
            if wanted["status"] == definition["status"] {
                continue;
            }
            write_status(api, name, |current| {
                let next = named(current, definitions);
                (next["status"] != current["status"]).then_some(next)
            })
            .await
        };
        if let Err(err) = result {
            settled = false;
            tracing::warn!(definition = name, "settling the definition: {err}");
        }
    }
    settled
}

/// The definition with the names it may have and the conditions that follow (upstream's
/// `calculateNamesAndConditions` and the establishing controller in one step).
fn named(definition: &Value, all: &Definitions) -> Value {
    let group = &definition["spec"]["group"];
    let mut resources = BTreeSet::new();
    let mut kinds = BTreeSet::new();
    for other in all.values() {
        if other["spec"]["group"] != *group || name_of(other) == name_of(definition) {
            continue;
        }
        let accepted = &other["status"]["acceptedNames"];
        for field in ["plural", "singular"] {
            resources.insert(text(&accepted[field]));
        }
        for short in accepted["shortNames"].as_array().into_iter().flatten() {
            resources.insert(text(short));
        }
        for field in ["kind", "listKind"] {
            kinds.insert(text(&accepted[field]));
        }
    }
    resources.remove("");
    kinds.remove("");
    let requested = &definition["spec"]["names"];
    let accepted = &definition["status"]["acceptedNames"];
    let mut names = if accepted.is_object() {
        accepted.clone()
    } else {
        json!({})
    };
    let mut conflict: Option<(&str, String)> = None;
    let fresh = |wanted: &str, had: &str, used: &BTreeSet<String>| -> Result<(), String> {
        if wanted == had || !used.contains(wanted) {
            Ok(())
        } else {
            Err(format!("{wanted:?} is already in use"))
        }
    };
    for (field, reason, used) in [
        ("plural", "PluralConflict", &resources),
        ("singular", "SingularConflict", &resources),
        ("kind", "KindConflict", &kinds),
        ("listKind", "ListKindConflict", &kinds),
    ] {
        match fresh(
            requested[field].as_str().unwrap_or_default(),
            accepted[field].as_str().unwrap_or_default(),
            used,
        ) {
            Ok(()) => names[field] = requested[field].clone(),
            Err(message) => conflict = Some((reason, message)),
        }
    }
    let had_short: BTreeSet<&str> = accepted["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let taken: Vec<String> = requested["shortNames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|short| !had_short.contains(short) && resources.contains(*short))
        .map(|short| format!("{short:?} is already in use"))
        .collect();
    match taken.as_slice() {
        [] => {
            if requested["shortNames"].is_null() {
                if let Some(map) = names.as_object_mut() {
                    map.remove("shortNames");
                }
            } else {
                names["shortNames"] = requested["shortNames"].clone();
            }
        }
        [one] => conflict = Some(("ShortNamesConflict", one.clone())),
        many => conflict = Some(("ShortNamesConflict", format!("[{}]", many.join(", ")))),
    }
    if requested["categories"].is_null() {
        if let Some(map) = names.as_object_mut() {
            map.remove("categories");
        }
    } else {
        names["categories"] = requested["categories"].clone();
    }
    let mut next = definition.clone();
    next["status"]["acceptedNames"] = names;
    match conflict {
        Some((reason, message)) => {
            set_condition(&mut next, "NamesAccepted", "False", reason, &message);
            if condition(&next, "Established") != Some("True") {
                set_condition(
                    &mut next,
                    "Established",
                    "False",
                    "NotAccepted",
                    "not all names are accepted",
                );
            }
        }
        None => {
            set_condition(
                &mut next,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            set_condition(
                &mut next,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
        }
    }
    next
}

/// Deletes the objects of a definition being deleted; once none is left, removes the cleanup
/// finalizer. True when the definition needs nothing more from this API server.
async fn clean_up(api: &ApiServer, definition: &Value) -> Result<bool, String> {
    let finalizers = definition["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
        return Ok(true);
    }
    let name = name_of(definition);
    let group = text(&definition["spec"]["group"]);
    let plural = text(&definition["spec"]["names"]["plural"]);
    let prefix = format!("/registry/{group}/{plural}/");
    let page = api
        .store
        .list(&prefix, 0, None)
        .await
        .map_err(|err| err.to_string())?;
    if page.items.is_empty() {
        release(api, name, &plural).await?;
        return Ok(true);
    }
    if condition(definition, "Terminating") != Some("True")
        || definition["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|c| c["reason"] != "InstanceDeletionInProgress")
    {
        write_status(api, name, |current| {
            let mut next = current.clone();
            set_condition(
                &mut next,
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            );
            (next != *current).then_some(next)
        })
        .await?;
    }
    // Through the served resource, so each object's finalizers and dependents are honoured.
    let Some(resource) = storage_resource(api, definition) else {
        return Ok(false);
    };
    for item in &page.items {
        let namespace = item.object["metadata"]["namespace"]
            .as_str()
            .map(str::to_owned);
        let scope = Scope {
            resource,
            namespace,
        };
        let object_name = name_of(&item.object);
        if !item.object["metadata"]["deletionTimestamp"].is_null() {
            continue;
        }
        if let Err(err) = api
            .delete_object(&scope, object_name, &DeleteOptions::default())
            .await
            && err.code != 404
        {
            return Err(format!("deleting {object_name}: {}", err.message));
        }
    }
    Ok(false)
}

/// Removes the cleanup finalizer from a definition whose objects are all gone; without other
/// finalizers the definition is then deleted (as the generic update path does).
async fn release(api: &ApiServer, name: &str, plural: &str) -> Result<(), String> {
    let key = DEFINITIONS.key(None, name);
    let current = match api.store.get(&key).await {
        Ok(current) => current,
        Err(StorageError::NotFound { .. }) => return Ok(()),
        Err(err) => return Err(err.to_string()),
    };
    let finalizers: Vec<Value> = current.object["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| *f != CLEANUP_FINALIZER)
        .cloned()
        .collect();
    let written = if finalizers.is_empty() {
        api.store
            .delete(&key, Some(current.revision))
            .await
            .map(|_| ())
    } else {
        let mut next = current.object.clone();
        next["metadata"]["finalizers"] = json!(finalizers);
        set_condition(
            &mut next,
            "Terminating",
            "False",
            "InstanceDeletionCompleted",
            &format!("removed all instances of {plural}"),
        );
        api.store
            .update(&key, &next, current.revision)
            .await
            .map(|_| ())
    };
    match written {
        // Another API server released it first, or it changed: the next look decides.
        Ok(()) | Err(StorageError::NotFound { .. } | StorageError::Conflict { .. }) => {
            tracing::info!(
                definition = name,
                "every object is gone: the definition goes"
            );
            Ok(())
        }
        Err(err) => Err(err.to_string()),
    }
}

/// The registered resource of the definition's storage version (or any served one).
fn storage_resource(api: &ApiServer, definition: &Value) -> Option<&'static Resource> {
    let group = definition["spec"]["group"].as_str()?;
    let plural = definition["spec"]["names"]["plural"].as_str()?;
    api.registry
        .registered()
        .into_iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// Writes the definition `name` as `change` makes it from the stored one (None: leave it).
async fn write_status(
    api: &ApiServer,
    name: &str,
    change: impl Fn(&Value) -> Option<Value>,
) -> Result<(), String> {
    let key = DEFINITIONS.key(None, name);
    match api
        .store
        .guaranteed_update(&key, |stored| Ok::<_, StorageError>(change(&stored.object)))
        .await
    {
        Ok(_) | Err(StorageError::NotFound { .. }) => Ok(()),
        Err(err) => Err(err.to_string()),
    }
}
