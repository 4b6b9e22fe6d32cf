//! Cascading deletion through ownerReferences, and namespace deletion: what kube-controller-
//! manager's garbage collector and namespace controller do, run by the API server right after the
//! delete request. Deletions still pending when the server stopped (terminating namespaces,
//! owners behind the foregroundDeletion or orphan finalizer) are taken up again at start
//! ([`resume_pending`]); dependents left behind otherwise are found by the garbage collector's
//! sweep (controllers/garbage_collector.rs).

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    ApiServer,
    handlers::{DeleteOptions, Propagation, Scope, finalizers},
    meta,
    query::Query,
    status::ApiError,
};

/// Finalizer of an owner waiting for its dependents to be deleted first.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer of an owner waiting for its dependents to be orphaned.
pub const ORPHAN_FINALIZER: &str = "orphan";

/// How long a foreground deletion or a namespace deletion waits for dependents to go.
const WAIT_FOR_DEPENDENTS: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(200);
/// Pause before a terminating namespace is emptied. kube's namespace controller takes seconds to
/// start; clients rely on that: `kubectl delete -f app.yaml` deletes the Namespace first and then
/// each object in it, which would all be NotFound if the namespace were emptied at once.
const NAMESPACE_CLEANUP_DELAY: Duration = Duration::from_secs(2);

/// Deletes, orphans or waits for the dependents of the object `uid` just deleted (or pending
/// deletion, `pending`), then finishes the owner's deletion when it was waiting for them.
pub async fn cascade(
    server: &ApiServer,
    scope: &Scope,
    name: &str,
    uid: &str,
    policy: Propagation,
    pending: bool,
) -> Result<(), ApiError> {
    if scope.resource.strategy.deletes_contents() {
        return delete_namespace_contents(server, scope, name).await;
    }
    let owner_namespace = if scope.resource.namespaced {
        scope.namespace.clone()
    } else {
        None
    };
    match policy {
        Propagation::Background => {
            if pending {
                // The owner still exists (finalizers or graceful termination); dependents go
                // once it is really gone (see `ApiServer::write_update`).
                return Ok(());
            }
            for (dependent, _) in dependents(server, owner_namespace.as_deref(), uid).await? {
                delete_quietly(server, &dependent, Propagation::Background).await;
            }
        }
        Propagation::Foreground => {
            let deadline = tokio::time::Instant::now() + WAIT_FOR_DEPENDENTS;
            for (dependent, _) in dependents(server, owner_namespace.as_deref(), uid).await? {
                delete_quietly(server, &dependent, Propagation::Foreground).await;
            }
            while !dependents(server, owner_namespace.as_deref(), uid)
                .await?
                .is_empty()
            {
                if tokio::time::Instant::now() >= deadline {
                    return Err(ApiError::internal(format!(
                        "dependents of {name} still exist after {WAIT_FOR_DEPENDENTS:?}"
                    )));
                }
                tokio::time::sleep(POLL).await;
            }
            remove_finalizer(server, scope, name, FOREGROUND_FINALIZER).await?;
        }
        Propagation::Orphan => {
            for (dependent, _) in dependents(server, owner_namespace.as_deref(), uid).await? {
                let uid = uid.to_owned();
                let result = server
                    .write_update(
                        &dependent.0,
                        &dependent.1,
                        &Query::default(),
                        |current| {
                            let mut next = current.object.clone();
                            if let Some(references) = next
                                .pointer_mut("/metadata/ownerReferences")
                                .and_then(Value::as_array_mut)
                            {
                                references.retain(|reference| reference["uid"] != json!(uid));
                            }
                            Ok(next)
                        },
                        None,
                    )
                    .await;
                if let Err(err) = result
                    && err.code != 404
                {
                    return Err(err);
                }
            }
            remove_finalizer(server, scope, name, ORPHAN_FINALIZER).await?;
        }
    }
    Ok(())
}

/// Restarts the cascades of deletions that were pending when the server last stopped.
pub async fn resume_pending(server: &ApiServer) -> Result<(), ApiError> {
    for resource in server.registry.stored() {
        let page = server
            .store
            .list(&resource.prefix(None), 0, None)
            .await
            .map_err(|err| ApiError::from_storage(err, &resource.qualified_name(), ""))?;
        for item in page.items {
            if item.object["metadata"]["deletionTimestamp"].is_null() {
                continue;
            }
            let pending = finalizers(&item.object);
            let policy = if resource.strategy.deletes_contents() {
                Propagation::Background
            } else if pending.iter().any(|f| f == FOREGROUND_FINALIZER) {
                Propagation::Foreground
            } else if pending.iter().any(|f| f == ORPHAN_FINALIZER) {
                Propagation::Orphan
            } else {
                continue;
            };
            let scope = Scope {
                resource,
                namespace: meta::namespace(&item.object).map(str::to_owned),
            };
            let name = meta::name(&item.object).to_owned();
            let uid = meta::uid(&item.object).unwrap_or_default().to_owned();
            tracing::info!(resource = resource.plural, %name, "resuming a pending deletion");
            let server = server.clone();
            tokio::spawn(async move {
                if let Err(err) = cascade(&server, &scope, &name, &uid, policy, true).await {
                    tracing::warn!(resource = scope.resource.plural, %name, "resumed deletion failed: {err}");
                }
            });
        }
    }
    Ok(())
}

/// Objects (scope and name) whose ownerReferences name `uid`, in `namespace` (or everywhere).
async fn dependents(
    server: &ApiServer,
    namespace: Option<&str>,
    uid: &str,
) -> Result<Vec<((Scope, String), Value)>, ApiError> {
    let mut found = Vec::new();
    for resource in server.registry.stored() {
        if namespace.is_some() && !resource.namespaced {
            continue;
        }
        let prefix = resource.prefix(namespace);
        let page = server
            .store
            .list(&prefix, 0, None)
            .await
            .map_err(|err| ApiError::from_storage(err, &resource.qualified_name(), ""))?;
        for item in page.items {
            let owned = item.object["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|references| references.iter().any(|r| r["uid"] == json!(uid)));
            if owned {
                let scope = Scope {
                    resource,
                    namespace: meta::namespace(&item.object).map(str::to_owned),
                };
                let name = meta::name(&item.object).to_owned();
                found.push(((scope, name), item.object));
            }
        }
    }
    Ok(found)
}

async fn delete_quietly(server: &ApiServer, target: &(Scope, String), policy: Propagation) {
    let options = DeleteOptions {
        propagation_policy: Some(
            match policy {
                Propagation::Background => "Background",
                Propagation::Foreground => "Foreground",
                Propagation::Orphan => "Orphan",
            }
            .to_owned(),
        ),
        ..DeleteOptions::default()
    };
    if let Err(err) = Box::pin(server.delete_object(&target.0, &target.1, &options)).await
        && err.code != 404
    {
        tracing::warn!(resource = target.0.resource.plural, name = %target.1, "deleting a dependent failed: {err}");
    }
}

async fn remove_finalizer(
    server: &ApiServer,
    scope: &Scope,
    name: &str,
    finalizer: &str,
) -> Result<(), ApiError> {
    let result = server
        .write_update(
            scope,
            name,
            &Query::default(),
            |current| {
                let mut next = current.object.clone();
                let remaining: Vec<String> = finalizers(&next)
                    .into_iter()
                    .filter(|f| f != finalizer)
                    .collect();
                if let Some(metadata) = meta::metadata_mut(&mut next) {
                    metadata.insert("finalizers".into(), json!(remaining));
                }
                Ok(next)
            },
            None,
        )
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(err) if err.code == 404 => Ok(()),
        Err(err) => Err(err),
    }
}

/// Deletes everything in a terminating namespace, then the namespace itself.
async fn delete_namespace_contents(
    server: &ApiServer,
    scope: &Scope,
    namespace: &str,
) -> Result<(), ApiError> {
    tokio::time::sleep(NAMESPACE_CLEANUP_DELAY).await;
    let deadline = tokio::time::Instant::now() + WAIT_FOR_DEPENDENTS;
    loop {
        let mut remaining = 0;
        for resource in server
            .registry
            .stored()
            .into_iter()
            .filter(|r| r.namespaced)
        {
            let page = server
                .store
                .list(&resource.prefix(Some(namespace)), 0, None)
                .await
                .map_err(|err| ApiError::from_storage(err, &resource.qualified_name(), ""))?;
            for item in page.items {
                remaining += 1;
                if item.object["metadata"]["deletionTimestamp"].is_null() {
                    let target = (
                        Scope {
                            resource,
                            namespace: Some(namespace.to_owned()),
                        },
                        meta::name(&item.object).to_owned(),
                    );
                    delete_quietly(server, &target, Propagation::Background).await;
                }
            }
        }
        if remaining == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::internal(format!(
                "namespace {namespace} still has {remaining} objects after {WAIT_FOR_DEPENDENTS:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
    let key = scope.resource.key(None, namespace);
    match server.store.delete(&key, None).await {
        Ok(_) | Err(crate::storage::StorageError::NotFound { .. }) => Ok(()),
        Err(err) => Err(ApiError::from_storage(err, "namespaces", namespace)),
    }
}
