//! What every namespace holds from the start, as kube-controller-manager keeps it: the
//! `default` ServiceAccount (upstream's serviceaccounts-controller) and the `kube-root-ca.crt`
//! ConfigMap with the cluster CA (the root-ca-cert-publisher), which pods use to trust the API
//! server at `kubernetes.default.svc`. Both come back when deleted; a namespace that is being
//! deleted gets nothing new.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams, PostParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};
use serde_json::json;

use super::{ReconcileError, drive, retry_later};

/// The ServiceAccount every namespace has.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The ConfigMap with the cluster CA every namespace has.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// Upstream's description of that ConfigMap.
const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

struct Context {
    client: Client,
    /// The cluster CA, PEM.
    root_ca: String,
}

/// Runs the controller until the task is dropped. A change to a namespace's default
/// ServiceAccount or CA ConfigMap reconciles that namespace.
pub async fn run(client: Client, root_ca: String) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let own_namespace = |namespace: Option<String>| {
        namespace
            .map(|ns| ObjectRef::<Namespace>::new(&ns))
            .into_iter()
    };
    let results = Controller::new(namespaces, watcher::Config::default())
        .watches(
            Api::<ServiceAccount>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}")),
            move |account| own_namespace(account.namespace()),
        )
        .watches(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default().fields(&format!("metadata.name={ROOT_CA_CONFIG_MAP}")),
            move |config_map| own_namespace(config_map.namespace()),
        )
        .run(
            reconcile,
            retry_later,
            Arc::new(Context { client, root_ca }),
        );
    drive("namespace-defaults", results).await;
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let name = namespace.name_any();
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    if terminating {
        return Ok(Action::await_change());
    }
    let post = PostParams::default();
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &name);
    let failed = ReconcileError::about("Namespace", "", &name);
    if accounts
        .get_opt(DEFAULT_SERVICE_ACCOUNT)
        .await
        .map_err(failed)?
        .is_none()
    {
        let account: ServiceAccount = serde_json::from_value(json!({
            "metadata": {"name": DEFAULT_SERVICE_ACCOUNT}}))
        .unwrap_or_default();
        ignore_conflict(accounts.create(&post, &account).await).map_err(failed)?;
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let wanted = json!({"ca.crt": ctx.root_ca});
    match config_maps
        .get_opt(ROOT_CA_CONFIG_MAP)
        .await
        .map_err(failed)?
    {
        None => {
            let config_map: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": ROOT_CA_CONFIG_MAP,
                             "annotations": {"kubernetes.io/description": ROOT_CA_DESCRIPTION}},
                "data": wanted}))
            .unwrap_or_default();
            ignore_conflict(config_maps.create(&post, &config_map).await).map_err(failed)?;
        }
        Some(existing) if json!(existing.data) != wanted => {
            config_maps
                .patch(
                    ROOT_CA_CONFIG_MAP,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": wanted})),
                )
                .await
                .map_err(failed)?;
        }
        Some(_) => {}
    }
    Ok(Action::await_change())
}

/// A create that lost to another writer (409) or met a namespace that began terminating
/// (403) did no harm.
fn ignore_conflict<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => Ok(()),
        Err(err) => Err(err),
    }
}
