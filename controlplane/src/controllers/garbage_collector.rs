//! The garbage collector's sweep: objects whose owners are all gone are deleted, and references
//! to owners that are gone are dropped from objects that still have a live owner.
//!
//! The API server cascades a deletion to dependents as soon as it is requested (apiserver/gc.rs);
//! this sweep catches what that cannot: owners deleted while the control plane was down or in
//! the middle of a cascade, and dependents created pointing at an owner that never existed. As
//! upstream does, an owner that looks absent from the lists is looked up once more by name
//! before anything is deleted, so an owner created after the lists were read is not mistaken
//! for a missing one.

use std::{collections::HashSet, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{
    Api, Client, ResourceExt as _,
    api::{
        ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
        PropagationPolicy,
    },
};
use serde_json::json;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::apiserver::registry::BUILTIN;

/// How the sweep runs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Time between sweeps (the first runs at start).
    pub sweep_period: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sweep_period: Duration::from_secs(30),
        }
    }
}

/// A sweep is followed by a pause at least this many times as long as the sweep took, so that
/// the sweep's share of the control plane stays under 1/(1+N) however many objects there are
/// (a sweep lists every object, 30,000 of them beside 10,000 Services).
const PAUSE_PER_SWEEP_TIME: u32 = 20;

/// Runs until the task is dropped.
pub async fn run(client: Client, settings: Settings) {
    loop {
        let started = tokio::time::Instant::now();
        let result = sweep(&client).await;
        let pause = settings
            .sweep_period
            .max(started.elapsed() * PAUSE_PER_SWEEP_TIME);
        match result {
            Ok(outcome) if outcome != Outcome::default() => {
                tracing::info!(
                    deleted = outcome.deleted,
                    released = outcome.released,
                    "garbage collector sweep"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!("garbage collector sweep: {err}"),
        }
        tokio::time::sleep(pause).await;
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Objects deleted because all their owners are gone.
    pub deleted: usize,
    /// Objects that lost references to gone owners but kept a live one.
    pub released: usize,
}

/// A kind the sweep goes through: a built-in one, or one a CustomResourceDefinition defines.
#[derive(Debug, Clone)]
struct Kind {
    api: ApiResource,
    namespaced: bool,
}

impl Kind {
    fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            api: ApiResource {
                group: group.to_owned(),
                version: version.to_owned(),
                api_version: if group.is_empty() {
                    version.to_owned()
                } else {
                    format!("{group}/{version}")
                },
                kind: kind.to_owned(),
                plural: plural.to_owned(),
            },
            namespaced,
        }
    }
}

/// Every kind that keeps objects: the built-in ones and those of the established
/// CustomResourceDefinitions (each once, through its storage version: every served version
/// lists the same objects).
async fn kinds(client: &Client) -> Result<Vec<Kind>, kube::Error> {
    let mut kinds: Vec<Kind> = BUILTIN
        .iter()
        .filter(|r| !r.strategy.is_review())
        .map(|r| Kind::new(r.group, r.version, r.kind, r.plural, r.namespaced))
        .collect();
    let definitions: Api<CustomResourceDefinition> = Api::all(client.clone());
    for definition in definitions.list(&ListParams::default()).await?.items {
        let established = definition.status.as_ref().is_some_and(|status| {
            status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True")
        });
        let spec = &definition.spec;
        let version = spec
            .versions
            .iter()
            .find(|v| v.storage && v.served)
            .or_else(|| spec.versions.iter().find(|v| v.served));
        if let (true, Some(version)) = (established, version) {
            kinds.push(Kind::new(
                &spec.group,
                &version.name,
                &spec.names.kind,
                &spec.names.plural,
                spec.scope == "Namespaced",
            ));
        }
    }
    Ok(kinds)
}

/// Lists every object of `resource`, page by page.
async fn list_all(
    client: &Client,
    resource: &ApiResource,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    let mut objects = Vec::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        objects.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(objects),
        }
    }
}

/// One pass over every object of every served resource.
pub async fn sweep(client: &Client) -> Result<Outcome, kube::Error> {
    let mut live: HashSet<String> = HashSet::new();
    let kinds = kinds(client).await?;
    let mut dependents: Vec<(&Kind, DynamicObject)> = Vec::new();
    for resource in &kinds {
        for object in list_all(client, &resource.api).await? {
            if let Some(uid) = &object.metadata.uid {
                live.insert(uid.clone());
            }
            let owned = object
                .metadata
                .owner_references
                .as_ref()
                .is_some_and(|refs| !refs.is_empty());
            if owned && object.metadata.deletion_timestamp.is_none() {
                dependents.push((resource, object));
            }
        }
    }
    let mut outcome = Outcome::default();
    for (resource, object) in dependents {
        let references = object.owner_references().to_vec();
        let mut gone = Vec::new();
        for reference in references.iter().filter(|r| !live.contains(&r.uid)) {
            if owner_is_gone(client, &kinds, resource, &object, reference).await? {
                gone.push(reference.uid.clone());
            }
        }
        if gone.is_empty() {
            continue;
        }
        let api = scoped_api(client, resource, object.namespace().as_deref());
        let name = object.name_any();
        if gone.len() == references.len() {
            let params = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                preconditions: Some(Preconditions {
                    uid: object.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(resource = resource.api.plural, namespace = ?object.namespace(), %name, "deleted: its owners are gone");
                    outcome.deleted += 1;
                }
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(err) => return Err(err),
            }
        } else {
            let remaining: Vec<&OwnerReference> = references
                .iter()
                .filter(|r| !gone.contains(&r.uid))
                .collect();
            let patch = json!({"metadata": {
                "ownerReferences": remaining,
                "resourceVersion": object.metadata.resource_version,
            }});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => outcome.released += 1,
                Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(outcome)
}

fn scoped_api(client: &Client, resource: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(namespace) if resource.namespaced => {
            Api::namespaced_with(client.clone(), namespace, &resource.api)
        }
        _ => Api::all_with(client.clone(), &resource.api),
    }
}

/// Whether the owner is really absent: no object of its kind and name with its uid. Owners of
/// a kind we do not serve are never judged gone (upstream leaves them alone too).
async fn owner_is_gone(
    client: &Client,
    kinds: &[Kind],
    dependent_resource: &Kind,
    dependent: &DynamicObject,
    reference: &OwnerReference,
) -> Result<bool, kube::Error> {
    let (group, version) = match reference.api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", reference.api_version.as_str()),
    };
    // A custom kind's owner may name any of its served versions; its objects are the same.
    let Some(owner_resource) = kinds.iter().find(|k| {
        k.api.group == group
            && k.api.kind == reference.kind
            && (k.api.version == version || !BUILTIN.iter().any(|r| r.group == group))
    }) else {
        return Ok(false);
    };
    // A namespaced owner lives in its dependent's namespace; a cluster-scoped dependent cannot
    // have a namespaced owner.
    if owner_resource.namespaced && !dependent_resource.namespaced {
        return Ok(true);
    }
    let api = scoped_api(client, owner_resource, dependent.namespace().as_deref());
    Ok(match api.get_opt(&reference.name).await? {
        Some(owner) => owner.metadata.uid.as_deref() != Some(reference.uid.as_str()),
        None => true,
    })
}
