//! The verbs on objects: get, list, create, update, patch, delete, deletecollection. Each one
//! decides in plain functions (meta, validation, patch) and acts on the store.

use std::borrow::Cow;

use serde_json::{Value, json};

use super::{
    ApiServer, apply, gc,
    machinery::field::Cause,
    meta::{self, generated_name},
    query::{FieldValidation, Query, Rendering, WriteOptions, partial_metadata},
    registry::{Lookup, Resource, Review, Subresource, core::namespace},
    selectors::{FieldSelector, LabelSelector, labels_of},
    status::{ApiError, FieldCause, success},
    strategic_merge,
    subresources::scale_of,
    tables,
    webhooks::{
        self,
        matching::{Attributes, Operation},
    },
};
use crate::storage::{StorageError, Stored};

/// Upstream's limit on request bodies.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Which resource (and namespace) a request addresses.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The resource.
    pub resource: &'static Resource,
    /// The namespace from the path (None for cluster-scoped resources and all-namespace lists).
    pub namespace: Option<String>,
}

/// The result of a write (its warnings go to [`super::warnings`]).
#[derive(Debug, Clone)]
pub struct Written {
    /// The object as stored (or as it would be, for dry runs).
    pub object: Value,
    /// The write created the object (as an apply does when there is none).
    pub created: bool,
}

/// How a write records its manager in `metadata.managedFields`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Tracking<'a> {
    /// A non-apply write by this manager: it owns what it changed.
    Update(&'a str),
    /// An apply: the object carries the managedFields the apply computed.
    Applied,
}

impl ApiServer {
    /// Reads one object.
    pub async fn get_object(&self, scope: &Scope, name: &str) -> Result<Stored, ApiError> {
        let key = scope.resource.key(scope.namespace.as_deref(), name);
        let mut stored =
            self.store.get(&key).await.map_err(|err| {
                ApiError::from_storage(err, &scope.resource.qualified_name(), name)
            })?;
        scope.resource.strategy.present(&mut stored.object);
        Ok(stored)
    }

    /// Lists objects, filtered by the label and field selectors, `limit` at a time.
    pub async fn list_objects(
        &self,
        scope: &Scope,
        query: &Query,
        rendering: Rendering,
    ) -> Result<Value, ApiError> {
        let labels = query.label_selector()?;
        let fields = query.field_selector(scope.resource.field_labels)?;
        let limit = query.integer("limit")?.unwrap_or(0);
        let prefix = scope.resource.prefix(scope.namespace.as_deref());
        let mut items = Vec::new();
        let mut token = query.get("continue").map(str::to_owned);
        let mut revision;
        let mut remaining;
        // Pages are read at one revision and filtered until `limit` objects matched.
        loop {
            let want = if limit > 0 {
                limit - i64::try_from(items.len()).unwrap_or(0)
            } else {
                0
            };
            let page = self
                .store
                .list(&prefix, want, token.as_deref())
                .await
                .map_err(|err| ApiError::from_storage(err, &scope.resource.qualified_name(), ""))?;
            revision = page.revision;
            remaining = page.remaining;
            items.extend(
                page.items
                    .into_iter()
                    .filter(|stored| selected(&stored.object, &labels, &fields)),
            );
            token = page.continue_token;
            if token.is_none() || (limit > 0 && i64::try_from(items.len()).unwrap_or(0) >= limit) {
                break;
            }
        }
        let mut list_metadata = json!({"resourceVersion": revision.to_string()});
        if let Some(token) = &token {
            list_metadata["continue"] = json!(token);
            if labels.is_empty()
                && fields.fields().next().is_none()
                && let Some(remaining) = remaining
            {
                list_metadata["remainingItemCount"] = json!(remaining);
            }
        }
        let objects: Vec<Value> = items
            .into_iter()
            .map(|mut stored| {
                scope.resource.strategy.present(&mut stored.object);
                stored.object
            })
            .collect();
        Ok(match rendering {
            Rendering::Table => table(scope.resource, &objects, list_metadata, query),
            Rendering::Metadata => list_of(
                "PartialObjectMetadataList",
                "meta.k8s.io/v1",
                list_metadata,
                objects.iter().map(partial_metadata).collect(),
            ),
            Rendering::Object => list_of(
                &format!("{}List", scope.resource.kind),
                &scope.resource.api_version(),
                list_metadata,
                objects,
            ),
        })
    }

    /// Creates an object (POST to the collection).
    pub async fn create_object(
        &self,
        scope: &Scope,
        object: Value,
        query: &Query,
    ) -> Result<Written, ApiError> {
        query.check_write_options(WriteOptions::Create)?;
        let manager = query.field_manager();
        self.create_tracked(scope, object, query, Tracking::Update(&manager))
            .await
    }

    /// Answers a review (SubjectAccessReview, SelfSubjectReview, ...): checked like a create,
    /// answered for the requester, never stored.
    pub async fn answer_review(
        &self,
        scope: &Scope,
        mut object: Value,
        query: &Query,
    ) -> Result<Value, ApiError> {
        let resource = scope.resource;
        query.check_write_options(WriteOptions::Create)?;
        check_type(resource, &mut object)?;
        if let Some(namespace) = &scope.namespace {
            place_in_namespace(&mut object, namespace)?;
        }
        check_schema(resource, &mut object, query)?;
        validate(resource, &object, None)?;
        let requester = query.requester().ok_or_else(ApiError::unauthorized)?;
        let review = Review {
            requester,
            authorizer: &self.authorizer,
            tokens: self,
        };
        resource.strategy.answer(review, &mut object).await?;
        Ok(object)
    }

    /// Creates an object, recording its manager as `tracking` says.
    async fn create_tracked(
        &self,
        scope: &Scope,
        mut object: Value,
        query: &Query,
        tracking: Tracking<'_>,
    ) -> Result<Written, ApiError> {
        let resource = scope.resource;
        check_type(resource, &mut object)?;
        if resource.namespaced {
            let namespace = scope.namespace.clone().ok_or_else(|| {
                ApiError::bad_request(format!(
                    "{} are namespaced: create them under /namespaces/<namespace>/",
                    resource.plural
                ))
            })?;
            place_in_namespace(&mut object, &namespace)?;
            self.check_namespace_accepts_content(&namespace, query)
                .await?;
        } else if let Some(metadata) = meta::metadata_mut(&mut object) {
            metadata.remove("namespace");
        }
        check_schema(resource, &mut object, query)?;
        let applied = meta::metadata_mut(&mut object).and_then(|m| m.remove("managedFields"));
        meta::prepare_create(resource, &mut object);
        // Tracked after defaulting: upstream decodes with defaults, so the creator owns them.
        match tracking {
            Tracking::Update(manager) => {
                apply::track_update(resource, None, None, None, &mut object, manager);
            }
            Tracking::Applied => {
                if let (Some(list), Some(metadata)) = (applied, meta::metadata_mut(&mut object)) {
                    metadata.insert("managedFields".into(), list);
                }
            }
        }
        resource
            .strategy
            .admit(&self.admission, &self.judged(query), &mut object, None)
            .await?;
        let namespace = scope.namespace.as_deref();
        {
            let name = meta::name(&object).to_owned();
            let attributes = Attributes::new(resource, None, Operation::Create, namespace, &name);
            let request = webhooks::request(
                &self.registry,
                attributes,
                query.requester(),
                query.dry_run()?,
            );
            webhooks::mutate(&self.webhooks, &self.store, request, &mut object, None).await?;
        }

        let generate = meta::name(&object).is_empty()
            && object["metadata"]["generateName"]
                .as_str()
                .is_some_and(|p| !p.is_empty());
        let prepared = object.clone();
        // A generated name can collide; upstream retries, and so do we, a bounded number of times.
        for _ in 0..8 {
            // Each attempt starts afresh, so nothing derived from a rejected name is kept.
            object = prepared.clone();
            if generate {
                let prefix = object["metadata"]["generateName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if let Some(metadata) = meta::metadata_mut(&mut object) {
                    metadata.insert("name".into(), json!(generated_name(&prefix)));
                }
            }
            // Needs the final name, so it follows name generation, as upstream's Validate does.
            resource.strategy.prepare_named(&mut object);
            validate(resource, &object, None)?;
            let name = meta::name(&object).to_owned();
            {
                let attributes =
                    Attributes::new(resource, None, Operation::Create, namespace, &name);
                let request = webhooks::request(
                    &self.registry,
                    attributes,
                    query.requester(),
                    query.dry_run()?,
                );
                webhooks::validate(&self.webhooks, &self.store, request, Some(&object), None)
                    .await?;
            }
            if query.dry_run()? {
                return Ok(Written {
                    object,
                    created: true,
                });
            }
            let key = resource.key(scope.namespace.as_deref(), &name);
            let allocated = self.allocate_for_create(resource, &mut object).await?;
            match self.store.create(&key, &object).await {
                Ok(mut stored) => {
                    resource.strategy.present(&mut stored.object);
                    return Ok(Written {
                        object: stored.object,
                        created: true,
                    });
                }
                Err(StorageError::AlreadyExists { .. }) if generate => {
                    self.release(allocated);
                    continue;
                }
                Err(err) => {
                    self.release(allocated);
                    return Err(ApiError::from_storage(
                        err,
                        &resource.qualified_name(),
                        &name,
                    ));
                }
            }
        }
        Err(ApiError::internal(
            "could not find an unused name from generateName after 8 attempts",
        ))
    }

    async fn check_namespace_accepts_content(
        &self,
        namespace: &str,
        query: &Query,
    ) -> Result<(), ApiError> {
        match self
            .store
            .get(&namespace::RESOURCE.key(None, namespace))
            .await
        {
            Ok(stored)
                if !stored.object["metadata"]["deletionTimestamp"].is_null()
                    && !query.dry_run()? =>
            {
                Err(ApiError::forbidden(
                    "namespaces",
                    namespace,
                    &format!(
                        "unable to create new content in namespace {namespace} because it is being terminated"
                    ),
                ))
            }
            Ok(_) => Ok(()),
            Err(StorageError::NotFound { .. }) => Err(ApiError::not_found("namespaces", namespace)),
            Err(err) => Err(ApiError::from_storage(err, "namespaces", namespace)),
        }
    }

    /// Replaces an object (PUT), or its status (PUT .../status).
    pub async fn replace_object(
        &self,
        scope: &Scope,
        name: &str,
        mut object: Value,
        query: &Query,
        subresource: Option<Subresource>,
    ) -> Result<Written, ApiError> {
        query.check_write_options(WriteOptions::Update)?;
        let resource = scope.resource;
        check_type(resource, &mut object)?;
        check_identity(scope, name, &mut object)?;
        check_schema(resource, &mut object, query)?;
        let expected = match object["metadata"]["resourceVersion"].as_str() {
            Some(rv) if !rv.is_empty() => Some(parse_resource_version(rv)?),
            _ => None,
        };
        let written = self
            .write_update(scope, name, query, |current| {
                if let Some(expected) = expected
                    && expected != current.revision
                {
                    return Err(ApiError::conflict(
                        &resource.qualified_name(),
                        name,
                        "the object has been modified; please apply your changes to the latest version and try again",
                    ));
                }
                Ok(object.clone())
            }, subresource)
            .await?;
        Ok(Written {
            object: written,
            created: false,
        })
    }

    /// Patches an object (PATCH), or its status.
    pub async fn patch_object(
        &self,
        scope: &Scope,
        name: &str,
        content_type: Option<&str>,
        body: &[u8],
        query: &Query,
        subresource: Option<Subresource>,
    ) -> Result<Written, ApiError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(ApiError::too_large(MAX_BODY_BYTES));
        }
        let resource = scope.resource;
        let kind = patch_kind(content_type)?;
        query.check_write_options(WriteOptions::Patch {
            apply: kind == PatchKind::Apply,
        })?;
        if kind == PatchKind::Apply {
            return self
                .apply_object(scope, name, body, query, subresource)
                .await;
        }
        let patch: Value = serde_json::from_slice(body).map_err(|err| {
            ApiError::bad_request(format!("error decoding the patch as JSON: {err}"))
        })?;
        let validation = query.field_validation()?;
        let object = self
            .write_update(scope, name, query, |current| {
                let mut patched = apply_patch(kind, resource, &current.object, &patch)?;
                check_type(resource, &mut patched)?;
                check_identity(scope, name, &mut patched)?;
                check_schema_with(resource, &mut patched, validation)?;
                // A resourceVersion in the patch is a precondition, as upstream.
                if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
                    && parse_resource_version(rv)? != current.revision
                {
                    return Err(ApiError::conflict(
                        &resource.qualified_name(),
                        name,
                        "the object has been modified; please apply your changes to the latest version and try again",
                    ));
                }
                Ok(patched)
            }, subresource)
            .await?;
        Ok(Written {
            object,
            created: false,
        })
    }

    /// Server-side apply (PATCH with `application/apply-patch+yaml`): merges the configuration
    /// into the object by the schema, for the `fieldManager`, creating the object when there is
    /// none (not through a subresource).
    async fn apply_object(
        &self,
        scope: &Scope,
        name: &str,
        body: &[u8],
        query: &Query,
        subresource: Option<Subresource>,
    ) -> Result<Written, ApiError> {
        let resource = scope.resource;
        // Checked with the patch's options: present, printable, at most 128 bytes.
        let manager = query.get("fieldManager").unwrap_or_default().to_owned();
        let force = query.flag("force");
        let mut config = apply::parse_config(body)?;
        apply::check_config(resource, &config)?;
        // Unknown fields are refused or dropped before the merge, so nobody owns them.
        check_schema(resource, &mut config, query)?;
        // Bounded: a create that loses to a concurrent one is retried as an update once.
        for _ in 0..2 {
            let exists = match self.get_object(scope, name).await {
                Ok(_) => true,
                Err(err) if err.code == 404 && subresource.is_none() => false,
                Err(err) => return Err(err),
            };
            if !exists {
                let mut object = apply::apply(resource, None, None, &config, &manager, force)?;
                check_identity(scope, name, &mut object)?;
                match self
                    .create_tracked(scope, object, query, Tracking::Applied)
                    .await
                {
                    Ok(written) => return Ok(written),
                    Err(err) if err.reason == "AlreadyExists" => continue,
                    Err(err) => return Err(err),
                }
            }
            let object = self
                .write_update_tracked(
                    scope,
                    name,
                    query,
                    |current| {
                        let mut merged = apply::apply(
                            resource,
                            subresource,
                            Some(&current.object),
                            &config,
                            &manager,
                            force,
                        )?;
                        check_type(resource, &mut merged)?;
                        check_identity(scope, name, &mut merged)?;
                        check_schema_with(resource, &mut merged, FieldValidation::Ignore)?;
                        Ok(merged)
                    },
                    subresource,
                    Tracking::Applied,
                )
                .await?;
            return Ok(Written {
                object,
                created: false,
            });
        }
        Err(too_many_writers(&resource.qualified_name(), name))
    }

    /// Reads the current object, computes the new one with `change`, fixes what the server owns,
    /// validates, and writes it with compare-and-swap, retrying lost races.
    pub(crate) async fn write_update<F>(
        &self,
        scope: &Scope,
        name: &str,
        query: &Query,
        change: F,
        subresource: Option<Subresource>,
    ) -> Result<Value, ApiError>
    where
        F: FnMut(&Stored) -> Result<Value, ApiError>,
    {
        let manager = query.field_manager();
        self.write_update_tracked(
            scope,
            name,
            query,
            change,
            subresource,
            Tracking::Update(&manager),
        )
        .await
    }

    /// [`Self::write_update`], recording the write's manager as `tracking` says.
    ///
    /// The first try starts from the local etcd member's copy, with no round trip to the etcd
    /// leader (what a follower pays on every linearizable read). The compare-and-swap catches a
    /// copy that was behind; whatever else a stale copy could have decided (not found, refused,
    /// nothing to change) is decided again from a fresh read, as upstream's GuaranteedUpdate
    /// does with its watch cache's copy. Dry runs read fresh.
    async fn write_update_tracked<F>(
        &self,
        scope: &Scope,
        name: &str,
        query: &Query,
        mut change: F,
        subresource: Option<Subresource>,
        tracking: Tracking<'_>,
    ) -> Result<Value, ApiError>
    where
        F: FnMut(&Stored) -> Result<Value, ApiError>,
    {
        let key = scope.resource.key(scope.namespace.as_deref(), name);
        let mut fresh = query.dry_run()?;
        for _ in 0..16 {
            let read = if fresh {
                self.store.get(&key).await
            } else {
                self.store.get_local(&key).await
            };
            let attempt = match read {
                Ok(current) => {
                    self.try_update(
                        scope,
                        name,
                        query,
                        &mut change,
                        subresource,
                        tracking,
                        current,
                    )
                    .await
                }
                Err(err) => Err(ApiError::from_storage(
                    err,
                    &scope.resource.qualified_name(),
                    name,
                )),
            };
            match attempt {
                Ok(Attempt::Written(mut object)) => {
                    scope.resource.strategy.present(&mut object);
                    return Ok(object);
                }
                Ok(Attempt::Unchanged(mut object)) if fresh => {
                    scope.resource.strategy.present(&mut object);
                    return Ok(object);
                }
                Err(err) if fresh => return Err(err),
                Ok(Attempt::Lost | Attempt::Unchanged(_)) | Err(_) => fresh = true,
            }
        }
        Err(too_many_writers(&scope.resource.qualified_name(), name))
    }

    /// One try of [`Self::write_update_tracked`] from `current`.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one write, passed through"
    )]
    async fn try_update<F>(
        &self,
        scope: &Scope,
        name: &str,
        query: &Query,
        change: &mut F,
        subresource: Option<Subresource>,
        tracking: Tracking<'_>,
        current: Stored,
    ) -> Result<Attempt, ApiError>
    where
        F: FnMut(&Stored) -> Result<Value, ApiError>,
    {
        let resource = scope.resource;
        let key = resource.key(scope.namespace.as_deref(), name);
        let qualified = resource.qualified_name();
        // The change sees the object as the requested version has it; what is written is
        // compared with what is stored.
        let stored_object = current.object.clone();
        let mut current = current;
        resource.strategy.present(&mut current.object);
        let proposed = change(&current)?;
        let provided = proposed["metadata"].get("managedFields").cloned();
        // A write through `/scale` changes the workload as an update of it would (its defaults,
        // managers and admission); only the webhooks are told of the subresource.
        let stored_as = subresource.filter(|sub| *sub != Subresource::Scale);
        let mut updated = meta::prepare_update(resource, &current.object, proposed, stored_as);
        record_managers(
            tracking,
            resource,
            stored_as,
            &current.object,
            provided,
            &mut updated,
        );
        match stored_as {
            None => {
                resource
                    .strategy
                    .admit(
                        &self.admission,
                        &self.judged(query),
                        &mut updated,
                        Some(&current.object),
                    )
                    .await?;
            }
            Some(sub) => {
                resource
                    .strategy
                    .admit_subresource(sub, &self.judged(query), &mut updated)
                    .await?;
            }
        }
        let attributes = webhooks::matching::Attributes {
            resource,
            subresource,
            operation: Operation::Update,
            namespace: scope.namespace.as_deref(),
            name,
        };
        let request = webhooks::request(
            &self.registry,
            attributes,
            query.requester(),
            query.dry_run()?,
        );
        // Webhooks on `/scale` review the autoscaling/v1 Scale, as upstream admits it; what a
        // mutating one changes of it is its replicas.
        let scale = subresource == Some(Subresource::Scale);
        let old_reviewed = if scale {
            Cow::Owned(scale_of(&current.object, resource))
        } else {
            Cow::Borrowed(&current.object)
        };
        if scale {
            let mut reviewed = scale_of(&updated, resource);
            webhooks::mutate(
                &self.webhooks,
                &self.store,
                request,
                &mut reviewed,
                Some(&old_reviewed),
            )
            .await?;
            if let Some(replicas) = reviewed["spec"]["replicas"].as_i64() {
                resource.strategy.set_scale_replicas(&mut updated, replicas);
            }
        } else {
            webhooks::mutate(
                &self.webhooks,
                &self.store,
                request,
                &mut updated,
                Some(&current.object),
            )
            .await?;
        }
        // Binding is the one sanctioned change of a pod's nodeName; the update rules (which
        // freeze the pod spec) do not apply to it, as upstream's binding storage skips them.
        if subresource != Some(Subresource::Binding) {
            validate(resource, &updated, Some(&current.object))?;
        }
        let reviewed = if scale {
            Cow::Owned(scale_of(&updated, resource))
        } else {
            Cow::Borrowed(&updated)
        };
        webhooks::validate(
            &self.webhooks,
            &self.store,
            request,
            Some(&reviewed),
            Some(&old_reviewed),
        )
        .await?;
        if query.dry_run()? {
            if let Some(metadata) = meta::metadata_mut(&mut updated) {
                metadata.insert(
                    "resourceVersion".into(),
                    json!(current.revision.to_string()),
                );
            }
            return Ok(Attempt::Written(updated));
        }
        // Removing the last finalizer of an object being deleted completes the deletion.
        if !updated["metadata"]["deletionTimestamp"].is_null() && finalizers(&updated).is_empty() {
            return match self.store.delete(&key, Some(current.revision)).await {
                Ok(_) => {
                    self.release_object(resource, &updated);
                    // Dependents waited for their owner to be really gone.
                    let uid = meta::uid(&updated).unwrap_or_default().to_owned();
                    self.after_delete_requested(
                        scope,
                        name,
                        &uid,
                        Propagation::Background,
                        &json!({}),
                    );
                    Ok(Attempt::Written(updated))
                }
                Err(StorageError::Conflict { .. }) => Ok(Attempt::Lost),
                Err(err) => Err(ApiError::from_storage(err, &qualified, name)),
            };
        }
        let (allocated, freed) = self
            .allocate_for_update(resource, &current.object, &mut updated)
            .await?;
        if updated == stored_object {
            return Ok(Attempt::Unchanged(stored_object));
        }
        let written = self
            .swap(&key, &qualified, name, current.revision, &updated)
            .await
            .inspect_err(|_| self.release(allocated.clone()))?;
        match written {
            Some(written) => {
                self.release(freed);
                Ok(Attempt::Written(written))
            }
            None => {
                self.release(allocated);
                Ok(Attempt::Lost)
            }
        }
    }

    /// Writes `next` if the object is still at `revision`; None when another writer won (retry).
    async fn swap(
        &self,
        key: &str,
        qualified: &str,
        name: &str,
        revision: i64,
        next: &Value,
    ) -> Result<Option<Value>, ApiError> {
        match self.store.update(key, next, revision).await {
            Ok(stored) => Ok(Some(stored.object)),
            Err(StorageError::Conflict { .. }) => Ok(None),
            Err(err) => Err(ApiError::from_storage(err, qualified, name)),
        }
    }

    /// Deletes an object: gracefully (pods on a node), behind finalizers, or at once; then
    /// cascades to dependents per the propagation policy. Returns (HTTP code, body).
    pub async fn delete_object(
        &self,
        scope: &Scope,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(u16, Value), ApiError> {
        let resource = scope.resource;
        let qualified = resource.qualified_name();
        let current = self.get_object(scope, name).await?;
        let object = &current.object;
        if let Some(uid) = &options.precondition_uid
            && meta::uid(object) != Some(uid.as_str())
        {
            return Err(ApiError::conflict(
                &qualified,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta::uid(object).unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &options.precondition_resource_version
            && parse_resource_version(rv)? != current.revision
        {
            return Err(ApiError::conflict(
                &qualified,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    current.revision
                ),
            ));
        }
        if let Some(why) = resource.strategy.undeletable(name) {
            return Err(ApiError::forbidden(&qualified, name, why));
        }
        let uid = meta::uid(object).unwrap_or_default().to_owned();
        let policy = options.propagation(resource)?;
        let attributes = webhooks::matching::Attributes {
            resource,
            subresource: None,
            operation: Operation::Delete,
            namespace: scope.namespace.as_deref(),
            name,
        };
        let request = webhooks::request(
            &self.registry,
            attributes,
            options.requester.as_ref(),
            options.dry_run,
        );
        webhooks::validate(&self.webhooks, &self.store, request, None, Some(object)).await?;
        if options.dry_run {
            return Ok((200, object.clone()));
        }

        let mut add_finalizers: Vec<&str> = resource.strategy.deletion_finalizers().to_vec();
        match policy {
            Propagation::Foreground => add_finalizers.push(gc::FOREGROUND_FINALIZER),
            Propagation::Orphan => add_finalizers.push(gc::ORPHAN_FINALIZER),
            Propagation::Background => {}
        }
        let grace = resource
            .strategy
            .grace_period(object, options.grace_period_seconds);
        let needs_pending = resource.strategy.deletes_contents()
            || grace.is_some()
            || !finalizers(object).is_empty()
            || !add_finalizers.is_empty();
        if needs_pending {
            let mut updated = self
                .mark_deleting(scope, name, &add_finalizers, grace)
                .await?;
            resource.strategy.present(&mut updated);
            self.after_delete_requested(scope, name, &uid, policy, &updated);
            return Ok((200, updated));
        }

        let key = resource.key(scope.namespace.as_deref(), name);
        let last = self
            .store
            .delete(&key, Some(current.revision))
            .await
            .map_err(|err| ApiError::from_storage(err, &qualified, name))?;
        self.release_object(resource, &last.object);
        self.after_delete_requested(scope, name, &uid, policy, &last.object);
        if resource.strategy.delete_returns_object() {
            let mut object = last.object;
            resource.strategy.present(&mut object);
            Ok((200, object))
        } else {
            Ok((200, success(resource.plural, name, Some(&uid))))
        }
    }

    /// Sets deletionTimestamp (which ordinary updates may not change) and finalizers.
    async fn mark_deleting(
        &self,
        scope: &Scope,
        name: &str,
        add_finalizers: &[&str],
        grace: Option<i64>,
    ) -> Result<Value, ApiError> {
        let resource = scope.resource;
        let key = resource.key(scope.namespace.as_deref(), name);
        let qualified = resource.qualified_name();
        for _ in 0..16 {
            let current = self.get_object(scope, name).await?;
            let mut next = current.object.clone();
            let mut list = finalizers(&next);
            for finalizer in add_finalizers {
                if !list.iter().any(|f| f == finalizer) {
                    list.push((*finalizer).to_owned());
                }
            }
            if let Some(metadata) = meta::metadata_mut(&mut next) {
                if !list.is_empty() {
                    metadata.insert("finalizers".into(), json!(list));
                }
                if metadata.get("deletionTimestamp").is_none_or(Value::is_null) {
                    let seconds = grace.unwrap_or(0);
                    let at = jiff::Timestamp::now()
                        .checked_add(jiff::SignedDuration::from_secs(seconds))
                        .unwrap_or_else(|_| jiff::Timestamp::now());
                    metadata.insert(
                        "deletionTimestamp".into(),
                        json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                    );
                    metadata.insert("deletionGracePeriodSeconds".into(), json!(seconds));
                }
            }
            resource.strategy.mark_terminating(&mut next);
            if list.is_empty() && !resource.strategy.deletes_contents() && grace.is_none() {
                let last = self
                    .store
                    .delete(&key, Some(current.revision))
                    .await
                    .map_err(|err| ApiError::from_storage(err, &qualified, name))?;
                self.release_object(resource, &last.object);
                return Ok(last.object);
            }
            if let Some(written) = self
                .swap(&key, &qualified, name, current.revision, &next)
                .await?
            {
                return Ok(written);
            }
        }
        Err(too_many_writers(&qualified, name))
    }

    fn after_delete_requested(
        &self,
        scope: &Scope,
        name: &str,
        uid: &str,
        policy: Propagation,
        object: &Value,
    ) {
        let server = self.clone();
        let scope = scope.clone();
        let name = name.to_owned();
        let uid = uid.to_owned();
        let pending = !object["metadata"]["deletionTimestamp"].is_null();
        tokio::spawn(async move {
            if let Err(err) = gc::cascade(&server, &scope, &name, &uid, policy, pending).await {
                tracing::warn!(resource = scope.resource.plural, %name, "cascading deletion failed: {err}");
            }
        });
    }

    /// Deletes every object the selectors match (DELETE on the collection).
    pub async fn delete_collection(
        &self,
        scope: &Scope,
        query: &Query,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let listed = self.list_objects(scope, query, Rendering::Object).await?;
        let mut deleted = Vec::new();
        for item in listed["items"].as_array().into_iter().flatten() {
            let name = meta::name(item).to_owned();
            let item_scope = Scope {
                resource: scope.resource,
                namespace: meta::namespace(item)
                    .map(str::to_owned)
                    .or(scope.namespace.clone()),
            };
            match self.delete_object(&item_scope, &name, options).await {
                Ok(_) => deleted.push(item.clone()),
                Err(err) if err.code == 404 => {}
                Err(err) => return Err(err),
            }
        }
        Ok(list_of(
            &format!("{}List", scope.resource.kind),
            &scope.resource.api_version(),
            json!({"resourceVersion": listed["metadata"]["resourceVersion"]}),
            deleted,
        ))
    }
}

/// A list object. The items are moved in: `json!` would copy each one by serializing it, which
/// cost a list of 500 objects more than encoding the answer.
fn list_of(kind: &str, api_version: &str, metadata: Value, items: Vec<Value>) -> Value {
    let mut list = serde_json::Map::new();
    list.insert("kind".into(), Value::from(kind));
    list.insert("apiVersion".into(), Value::from(api_version));
    list.insert("metadata".into(), metadata);
    list.insert("items".into(), Value::Array(items));
    Value::Object(list)
}

/// Sets `updated`'s managedFields for a write of `current` as `tracking` says: an update is
/// tracked (through the main resource and `status`), an apply brings its own entries (`provided`),
/// and untracked subresources keep the entries the object had.
fn record_managers(
    tracking: Tracking<'_>,
    resource: &Resource,
    subresource: Option<Subresource>,
    current: &Value,
    provided: Option<Value>,
    updated: &mut Value,
) {
    let entries = match tracking {
        Tracking::Update(manager) if apply::tracked(subresource) => {
            apply::track_update(
                resource,
                subresource,
                Some(current),
                provided,
                updated,
                manager,
            );
            return;
        }
        Tracking::Update(_) => current["metadata"].get("managedFields").cloned(),
        Tracking::Applied => provided,
    };
    if let Some(metadata) = meta::metadata_mut(updated) {
        match entries {
            Some(list) => metadata.insert("managedFields".into(), list),
            None => metadata.remove("managedFields"),
        };
    }
}

/// How one try of an update ended.
enum Attempt {
    /// Written (or, in a dry run, what would be).
    Written(Value),
    /// The change left the object as it was: nothing written.
    Unchanged(Value),
    /// Another writer changed the object since it was read.
    Lost,
}

fn too_many_writers(qualified: &str, name: &str) -> ApiError {
    ApiError::conflict(qualified, name, "too many concurrent writers; try again")
}

/// How dependents are treated when their owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Delete the owner now, dependents afterwards.
    Background,
    /// Delete dependents first, then the owner.
    Foreground,
    /// Keep dependents, removing their owner reference.
    Orphan,
}

/// DeleteOptions from the body and query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// propagationPolicy.
    pub propagation_policy: Option<String>,
    /// gracePeriodSeconds.
    pub grace_period_seconds: Option<i64>,
    /// preconditions.uid.
    pub precondition_uid: Option<String>,
    /// preconditions.resourceVersion.
    pub precondition_resource_version: Option<String>,
    /// dryRun=All.
    pub dry_run: bool,
    /// Who deletes (for the admission webhooks; None for the server's own deletions).
    pub requester: Option<crate::auth::User>,
}

impl DeleteOptions {
    /// Reads the options from an optional JSON body and the query (the body wins).
    pub fn parse(body: Option<&Value>, query: &Query) -> Result<Self, ApiError> {
        let mut options = Self {
            propagation_policy: query.get("propagationPolicy").map(str::to_owned),
            grace_period_seconds: query.integer("gracePeriodSeconds")?,
            dry_run: query.dry_run()?,
            requester: query.requester().cloned(),
            ..Self::default()
        };
        if query.flag("orphanDependents") {
            options.propagation_policy = Some("Orphan".into());
        }
        if let Some(body) = body {
            if let Some(policy) = body["propagationPolicy"].as_str() {
                options.propagation_policy = Some(policy.to_owned());
            }
            if body["orphanDependents"] == json!(true) {
                options.propagation_policy = Some("Orphan".into());
            }
            if let Some(grace) = body["gracePeriodSeconds"].as_i64() {
                options.grace_period_seconds = Some(grace);
            }
            options.precondition_uid = body["preconditions"]["uid"].as_str().map(str::to_owned);
            options.precondition_resource_version = body["preconditions"]["resourceVersion"]
                .as_str()
                .map(str::to_owned);
            if let Some(dry_run) = body["dryRun"].as_array() {
                options.dry_run = options.dry_run || dry_run.iter().any(|v| v == "All");
            }
        }
        Ok(options)
    }

    fn propagation(&self, _resource: &Resource) -> Result<Propagation, ApiError> {
        match self.propagation_policy.as_deref() {
            None | Some("Background") => Ok(Propagation::Background),
            Some("Foreground") => Ok(Propagation::Foreground),
            Some("Orphan") => Ok(Propagation::Orphan),
            Some(other) => Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Background, Foreground, Orphan"
            ))),
        }
    }
}

/// `metadata.finalizers`.
pub fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `object` matches both selectors.
pub(crate) fn selected(object: &Value, labels: &LabelSelector, fields: &FieldSelector) -> bool {
    labels.matches(&labels_of(object)) && fields.matches(object)
}

/// Checks (and fills in) apiVersion and kind against the endpoint.
fn check_type(resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
    let api_version = resource.api_version();
    for (field, expected) in [
        ("apiVersion", api_version.as_str()),
        ("kind", resource.kind),
    ] {
        match object[field].as_str() {
            None | Some("") => object[field] = json!(expected),
            Some(given) if given == expected => {}
            Some(given) => {
                return Err(ApiError::bad_request(format!(
                    "the {field} of the provided object ({given}) does not match the endpoint, which serves {} {}",
                    api_version, resource.kind
                )));
            }
        }
    }
    Ok(())
}

/// Puts a created object in the request's `namespace`; one that names another is refused.
fn place_in_namespace(object: &mut Value, namespace: &str) -> Result<(), ApiError> {
    match meta::namespace(object) {
        Some(given) if given != namespace => Err(ApiError::bad_request(format!(
            "the namespace of the provided object ({given}) does not match the namespace sent on the request ({namespace})"
        ))),
        _ => {
            if let Some(metadata) = meta::metadata_mut(object) {
                metadata.insert("namespace".into(), json!(namespace));
            }
            Ok(())
        }
    }
}

/// Name and namespace in the body must match the URL.
fn check_identity(scope: &Scope, name: &str, object: &mut Value) -> Result<(), ApiError> {
    match meta::name(object) {
        "" => {
            if let Some(metadata) = meta::metadata_mut(object) {
                metadata.insert("name".into(), json!(name));
            }
        }
        given if given != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({given}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    if let Some(namespace) = &scope.namespace {
        match meta::namespace(object) {
            Some(given) if given != namespace => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({given}) does not match the namespace sent on the request ({namespace})"
                )));
            }
            _ => {
                if let Some(metadata) = meta::metadata_mut(object) {
                    metadata.insert("namespace".into(), json!(namespace));
                }
            }
        }
    }
    Ok(())
}

fn check_schema(resource: &Resource, object: &mut Value, query: &Query) -> Result<(), ApiError> {
    check_schema_with(resource, object, query.field_validation()?)
}

/// Decodes the body into its typed object once (400 on failure); fields the type does not
/// know are dropped, and per fieldValidation refused (Strict), warned about (Warn) or ignored.
fn check_schema_with(
    resource: &Resource,
    object: &mut Value,
    validation_mode: FieldValidation,
) -> Result<(), ApiError> {
    let unknown = resource.strategy.decode(object).map_err(|message| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {message}",
            resource.kind,
            resource.api_version(),
            resource.kind
        ))
    })?;
    if unknown.is_empty() || validation_mode == FieldValidation::Ignore {
        return Ok(());
    }
    let described: Vec<String> = unknown
        .iter()
        .map(|field| format!("unknown field \"{field}\""))
        .collect();
    if validation_mode == FieldValidation::Strict {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            described.join(", ")
        )));
    }
    described.into_iter().for_each(super::warnings::add);
    Ok(())
}

fn validate(resource: &Resource, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    reject_invalid(resource.kind, object, resource.validate(object, old))
}

/// A 422 `Invalid` of `kind` for `object` when validation found `causes`.
pub(crate) fn reject_invalid(
    kind: &str,
    object: &Value,
    causes: Vec<Cause>,
) -> Result<(), ApiError> {
    if causes.is_empty() {
        return Ok(());
    }
    let causes: Vec<FieldCause> = causes
        .into_iter()
        .map(|cause| FieldCause {
            reason: cause.reason.as_str().to_owned(),
            message: cause.message,
            field: cause.field,
        })
        .collect();
    Err(ApiError::invalid(kind, meta::name(object), &causes))
}

/// Parses a resourceVersion (an etcd revision).
pub fn parse_resource_version(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|rv| *rv >= 0)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "invalid resource version {text:?}: it must be an integer"
            ))
        })
}

/// The kinds of PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// RFC 6902 JSON Patch.
    Json,
    /// RFC 7386 JSON Merge Patch.
    Merge,
    /// Kubernetes strategic merge patch.
    Strategic,
    /// Server-side apply (a YAML or JSON configuration).
    Apply,
}

fn patch_kind(content_type: Option<&str>) -> Result<PatchKind, ApiError> {
    let media = content_type
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    match media {
        "application/json-patch+json" => Ok(PatchKind::Json),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        apply::APPLY_PATCH_YAML => Ok(PatchKind::Apply),
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
        ))),
    }
}

/// Applies `patch` of `kind` to `object`.
pub fn apply_patch(
    kind: PatchKind,
    resource: &Resource,
    object: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    let mut patched = object.clone();
    match kind {
        PatchKind::Apply => {
            return Err(ApiError::internal(
                "an apply patch is merged by the field manager, not applied as a patch",
            ));
        }
        PatchKind::Json => apply_json_patch(&mut patched, patch)?,
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(&mut patched, patch);
        }
        PatchKind::Strategic => {
            let Some(schema) =
                strategic_merge::Schema::of_kind(&resource.api_version(), resource.kind)
            else {
                return Err(ApiError::unsupported_media_type(format!(
                    "strategic merge patch is not supported for {}",
                    resource.kind
                )));
            };
            patched = strategic_merge::apply_strategic_merge_patch(object, patch, schema).map_err(
                |err| ApiError::bad_request(format!("invalid strategic merge patch: {err}")),
            )?;
        }
    }
    Ok(patched)
}

/// Applies an RFC 6902 JSON Patch in place.
pub fn apply_json_patch(object: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|err| ApiError::bad_request(format!("invalid JSON Patch: {err}")))?;
    json_patch::patch(object, &operations).map_err(|err| {
        ApiError::unprocessable(format!("the JSON Patch could not be applied: {err}"))
    })
}

/// A Table of `objects` for kubectl get.
pub fn table(resource: &Resource, objects: &[Value], metadata: Value, query: &Query) -> Value {
    let now = jiff::Timestamp::now();
    let include = query.get("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut row = json!({"cells": resource.strategy.cells(object, now)});
            match include {
                "None" => {}
                "Object" => row["object"] = object.clone(),
                _ => row["object"] = partial_metadata(object),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": tables::column_definitions(&resource.strategy.columns()),
        "rows": rows,
    })
}

/// Admission's view of one request: the stored objects, and who asks.
pub(crate) struct Judged<'a> {
    server: &'a ApiServer,
    requester: Option<&'a crate::auth::User>,
}

impl ApiServer {
    /// What admission sees of the request `query` belongs to.
    pub(crate) fn judged<'a>(&'a self, query: &'a Query) -> Judged<'a> {
        Judged {
            server: self,
            requester: query.requester(),
        }
    }
}

impl Lookup for Judged<'_> {
    fn list<'a>(
        &'a self,
        resource: &'static Resource,
        namespace: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<Vec<Value>, ApiError>> {
        self.server.list(resource, namespace)
    }

    fn requester(&self) -> Option<crate::auth::rbac::Requester<'_>> {
        self.requester.map(|user| crate::auth::rbac::Requester {
            user,
            policy: &self.server.authorizer.policy,
        })
    }
}

/// Admission reads stored objects straight from etcd.
impl Lookup for ApiServer {
    fn list<'a>(
        &'a self,
        resource: &'static Resource,
        namespace: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<Vec<Value>, ApiError>> {
        Box::pin(async move {
            let page = self
                .store
                .list(&resource.prefix(namespace), 0, None)
                .await
                .map_err(|err| ApiError::from_storage(err, &resource.qualified_name(), ""))?;
            Ok(page.items.into_iter().map(|stored| stored.object).collect())
        })
    }
}
