//! ControllerRevisions: the template snapshots DaemonSets and StatefulSets keep, shared by both
//! controllers. A revision's `data` is the strategic merge patch that restores its template
//! (`{"spec": {"template": {..., "$patch": "replace"}}}`): `kubectl rollout undo` sends exactly
//! that patch, and `kubectl rollout history` lists the revisions an owner controls.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::{
    api::{apps::v1::ControllerRevision, core::v1::PodTemplateSpec},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    Api, ResourceExt as _,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

/// The label naming a pod's (and a revision's) revision.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";

/// How many names are tried when hashes collide before giving up (upstream retries forever,
/// bumping `status.collisionCount`; a handful of collisions in a row means something else is wrong).
const MAX_COLLISIONS: i32 = 16;

/// What a revision belongs to.
#[derive(Debug, Clone)]
pub struct Owner<'a> {
    /// `DaemonSet` or `StatefulSet`.
    pub kind: &'static str,
    /// The owner's name.
    pub name: &'a str,
    /// The owner's uid (revisions are claimed by controller reference).
    pub uid: &'a str,
    /// The owner's namespace.
    pub namespace: &'a str,
    /// The owner's current pod template.
    pub template: &'a PodTemplateSpec,
    /// The owner's annotations, copied onto new revisions (`kubernetes.io/change-cause` is what
    /// `kubectl rollout history` prints).
    pub annotations: &'a BTreeMap<String, String>,
}

/// The revision data restoring `template`.
///
/// kubectl decides whether `rollout undo` has anything to do by comparing these bytes with the
/// patch it computes from the live object through Go's encoding, which writes the template's
/// zero `creationTimestamp` as null; so does this (the server sorts keys as Go does).
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
        let metadata = map.entry("metadata").or_insert_with(|| json!({}));
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.entry("creationTimestamp").or_insert(Value::Null);
        }
    }
    json!({"spec": {"template": template}})
}

/// The template a revision restores, None if its data is not a template patch.
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision
        .data
        .as_ref()?
        .0
        .get("spec")?
        .get("template")?
        .clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

/// Upstream's `HashControllerRevision`: FNV-1 (32 bit) over the data and the collision count,
/// the decimal digits spelled in kube's vowel-free alphabet (`rand.SafeEncodeString`).
pub fn hash(data: &Value, collision_count: i32) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    let probe = (collision_count > 0).then(|| collision_count.to_string());
    for byte in data
        .to_string()
        .bytes()
        .chain(probe.unwrap_or_default().bytes())
    {
        hash = hash.wrapping_mul(0x0100_0193);
        hash ^= u32::from(byte);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    hash.to_string()
        .bytes()
        .map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .collect()
}

/// `<owner>-<hash>`, the owner name cut so the result stays a valid name, as upstream.
pub fn revision_name(owner: &str, hash: &str) -> String {
    let keep = owner.len().min(223);
    format!("{}-{hash}", &owner[..keep])
}

/// The hash part of a revision's name (what DaemonSet pods carry in their label).
pub fn hash_of(revision: &ControllerRevision) -> String {
    revision
        .labels()
        .get(CONTROLLER_REVISION_HASH)
        .cloned()
        .unwrap_or_default()
}

/// The revisions `uid` controls among those matching `selector`, oldest revision first.
pub async fn list(
    api: &Api<ControllerRevision>,
    selector: &str,
    uid: &str,
) -> Result<Vec<ControllerRevision>, kube::Error> {
    let mut revisions: Vec<ControllerRevision> = api
        .list(&ListParams::default().labels(selector))
        .await?
        .items
        .into_iter()
        .filter(|r| super::controlled_by(&r.metadata, uid))
        .collect();
    sort(&mut revisions);
    revisions.dedup_by(|a, b| a.metadata.name == b.metadata.name && a.revision == b.revision);
    Ok(revisions)
}

fn sort(revisions: &mut [ControllerRevision]) {
    revisions.sort_by(|a, b| {
        (
            a.revision,
            a.metadata.creation_timestamp.as_ref().map(|t| t.0),
            a.name_any(),
        )
            .cmp(&(
                b.revision,
                b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                b.name_any(),
            ))
    });
}

/// What the current template's revision needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The newest revision already holds the template.
    Current(usize),
    /// An older revision holds it (a rollback): it becomes the newest by taking this number.
    Renumber(usize, i64),
    /// No revision holds it: a new one with this number.
    Create(i64),
}

/// Decides how the revision of `data` is found among `revisions` (sorted oldest first).
pub fn plan(revisions: &[ControllerRevision], data: &Value) -> Plan {
    let next = revisions.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
    let equal = revisions
        .iter()
        .rposition(|r| r.data.as_ref().is_some_and(|d| d.0 == *data));
    match equal {
        Some(index) if index + 1 == revisions.len() => Plan::Current(index),
        Some(index) => Plan::Renumber(index, next),
        None => Plan::Create(next),
    }
}

/// Finds or makes the revision of the owner's current template, keeping `revisions` in step.
/// Returns its index in `revisions` and the collision count used (to be stored in status).
pub async fn sync_update_revision(
    api: &Api<ControllerRevision>,
    owner: &Owner<'_>,
    revisions: &mut Vec<ControllerRevision>,
    mut collision_count: i32,
) -> Result<(usize, i32), kube::Error> {
    let data = template_patch(owner.template);
    match plan(revisions, &data) {
        Plan::Current(index) => Ok((index, collision_count)),
        Plan::Renumber(index, next) => {
            let patch = json!({"revision": next});
            let updated = api
                .patch(
                    &revisions[index].name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            revisions[index] = updated;
            sort(revisions);
            let index = position(revisions, &data);
            Ok((index, collision_count))
        }
        Plan::Create(next) => {
            let controller_ref = OwnerReference {
                api_version: "apps/v1".into(),
                kind: owner.kind.into(),
                name: owner.name.into(),
                uid: owner.uid.into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            };
            loop {
                let hash = hash(&data, collision_count);
                let mut labels = owner
                    .template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                labels.insert(CONTROLLER_REVISION_HASH.into(), hash.clone());
                let revision = ControllerRevision {
                    metadata: kube::api::ObjectMeta {
                        name: Some(revision_name(owner.name, &hash)),
                        namespace: Some(owner.namespace.into()),
                        labels: Some(labels),
                        annotations: Some(owner.annotations.clone()),
                        owner_references: Some(vec![controller_ref.clone()]),
                        ..Default::default()
                    },
                    data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
                        data.clone(),
                    )),
                    revision: next,
                };
                match api.create(&PostParams::default(), &revision).await {
                    Ok(created) => {
                        revisions.push(created);
                        sort(revisions);
                        return Ok((position(revisions, &data), collision_count));
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        let existing = api.get(&revision_name(owner.name, &hash)).await?;
                        let ours = super::controlled_by(&existing.metadata, owner.uid);
                        if ours && existing.data.as_ref().is_some_and(|d| d.0 == data) {
                            // Our own revision the list did not show yet (a stale read).
                            revisions.push(existing);
                            sort(revisions);
                            return Ok((position(revisions, &data), collision_count));
                        }
                        if collision_count >= MAX_COLLISIONS {
                            return Err(kube::Error::Api(status));
                        }
                        collision_count += 1;
                    }
                    Err(err) => return Err(err),
                }
            }
        }
    }
}

fn position(revisions: &[ControllerRevision], data: &Value) -> usize {
    revisions
        .iter()
        .rposition(|r| r.data.as_ref().is_some_and(|d| d.0 == *data))
        .unwrap_or(revisions.len().saturating_sub(1))
}

/// Which revisions to delete so at most `limit` revisions not in use remain: the oldest unused.
/// `live` names the revisions in use (current, update, and those pods still run).
pub fn to_prune<'a>(
    revisions: &'a [ControllerRevision],
    live: &BTreeSet<String>,
    limit: i32,
) -> Vec<&'a ControllerRevision> {
    let unused: Vec<&ControllerRevision> = revisions
        .iter()
        .filter(|r| !live.contains(&r.name_any()))
        .collect();
    let limit = usize::try_from(limit).unwrap_or(0);
    let excess = unused.len().saturating_sub(limit);
    unused.into_iter().take(excess).collect()
}

/// Deletes `revisions`, ignoring ones already gone.
pub async fn prune(
    api: &Api<ControllerRevision>,
    revisions: &[&ControllerRevision],
) -> Result<(), kube::Error> {
    for revision in revisions {
        match api
            .delete(&revision.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::runtime::RawExtension;

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }))
        .unwrap()
    }

    fn revision(name: &str, number: i64, image: &str) -> ControllerRevision {
        ControllerRevision {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(RawExtension(template_patch(&template(image)))),
            revision: number,
        }
    }

    #[test]
    fn data_is_the_patch_kubectl_undo_sends_and_restores_the_template() {
        let data = template_patch(&template("v1"));
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        assert_eq!(
            data["spec"]["template"]["spec"]["containers"][0]["image"],
            "v1"
        );
        let restored = template_of(&revision("r", 1, "v1")).unwrap();
        assert_eq!(restored, template("v1"));
    }

    #[test]
    fn hashes_are_stable_safe_and_move_with_collisions() {
        let data = template_patch(&template("v1"));
        let a = hash(&data, 0);
        assert_eq!(a, hash(&data.clone(), 0));
        assert_ne!(a, hash(&data, 1));
        assert_ne!(a, hash(&template_patch(&template("v2")), 0));
        assert!(
            a.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
        assert_eq!(revision_name("web", &a), format!("web-{a}"));
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn plans_reuse_renumber_or_create() {
        let revisions = [revision("a", 1, "v1"), revision("b", 2, "v2")];
        assert_eq!(
            plan(&revisions, &template_patch(&template("v2"))),
            Plan::Current(1)
        );
        assert_eq!(
            plan(&revisions, &template_patch(&template("v1"))),
            Plan::Renumber(0, 3)
        );
        assert_eq!(
            plan(&revisions, &template_patch(&template("v3"))),
            Plan::Create(3)
        );
        assert_eq!(plan(&[], &template_patch(&template("v1"))), Plan::Create(1));
    }

    #[test]
    fn pruning_keeps_live_revisions_and_the_newest_unused() {
        let revisions = [
            revision("a", 1, "v1"),
            revision("b", 2, "v2"),
            revision("c", 3, "v3"),
            revision("d", 4, "v4"),
        ];
        let live: BTreeSet<String> = ["a".to_owned(), "d".to_owned()].into();
        let names = |list: Vec<&ControllerRevision>| -> Vec<String> {
            list.iter().map(|r| r.name_any()).collect()
        };
        assert_eq!(names(to_prune(&revisions, &live, 1)), ["b"]);
        assert_eq!(names(to_prune(&revisions, &live, 0)), ["b", "c"]);
        assert!(to_prune(&revisions, &live, 10).is_empty());
    }
}
