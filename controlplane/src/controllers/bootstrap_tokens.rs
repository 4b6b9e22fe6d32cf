//! Bootstrap tokens' controllers (kube-controller-manager's `bootstrapsigner` and
//! `tokencleaner`, and the `cluster-info` kubeadm writes at init): `kube-public/cluster-info`
//! holds a kubeconfig with the server and its CA, signed (`jws-kubeconfig-<id>`) for every live
//! token allowed to sign, so a joining node holding a token can trust the CA it reads there; an
//! expired token's Secret is deleted.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use flotilla_apimachinery::bootstrap;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ListParams, PostParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};
use serde_json::{Value, json};

use super::{ReconcileError, drive, requeue_within, retry_later};
use crate::auth::{bootstrap_tokens, kubeconfig};

struct Context {
    client: Client,
    /// The kubeconfig cluster-info publishes.
    kubeconfig: String,
}

/// Runs the controllers until the task is dropped; `server` is the API server's URL and
/// `ca_cert` its CA (PEM).
pub async fn run(client: Client, server: String, ca_cert: String) {
    let kubeconfig = kubeconfig::render_cluster_info(&ca_cert, &server);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), bootstrap::PUBLIC_NAMESPACE);
    // The controller reconciles cluster-info, so it must exist first.
    loop {
        match ensure_cluster_info(&config_maps, &kubeconfig).await {
            Ok(()) => break,
            Err(err) => {
                tracing::debug!("creating {}: {err}", bootstrap::CLUSTER_INFO);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let cluster_info =
        || ObjectRef::<ConfigMap>::new(bootstrap::CLUSTER_INFO).within(bootstrap::PUBLIC_NAMESPACE);
    let results = Controller::new(
        config_maps,
        watcher::Config::default().fields(&format!("metadata.name={}", bootstrap::CLUSTER_INFO)),
    )
    .watches(
        Api::<Secret>::namespaced(client.clone(), bootstrap::NAMESPACE),
        watcher::Config::default(),
        move |secret| (secret.type_.as_deref() == Some(bootstrap::SECRET_TYPE)).then(cluster_info),
    )
    .run(
        reconcile,
        retry_later,
        Arc::new(Context { client, kubeconfig }),
    );
    drive("bootstrap-tokens", results).await;
}

async fn ensure_cluster_info(api: &Api<ConfigMap>, kubeconfig: &str) -> Result<(), kube::Error> {
    if api.get_opt(bootstrap::CLUSTER_INFO).await?.is_some() {
        return Ok(());
    }
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": bootstrap::CLUSTER_INFO},
        "data": {bootstrap::KUBECONFIG_KEY: kubeconfig},
    }))
    .unwrap_or_default();
    match api.create(&PostParams::default(), &config_map).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(err) => Err(err),
    }
}

/// What cluster-info's data should be given the tokens' Secrets at `now`: the kubeconfig and
/// a signature for each live token allowed to sign; and the expired Secrets to delete, and when
/// the next live one expires.
fn desired(
    kubeconfig: &str,
    secrets: &[Value],
    now: Timestamp,
) -> (BTreeMap<String, String>, Vec<String>, Option<Timestamp>) {
    let mut data = BTreeMap::from([(bootstrap::KUBECONFIG_KEY.to_owned(), kubeconfig.to_owned())]);
    let mut expired = Vec::new();
    let mut next_expiry: Option<Timestamp> = None;
    for secret in secrets {
        if secret["type"].as_str() != Some(bootstrap::SECRET_TYPE)
            || !secret["metadata"]["deletionTimestamp"].is_null()
        {
            continue;
        }
        let name = secret["metadata"]["name"].as_str().unwrap_or_default();
        if bootstrap_tokens::expired(secret, now) {
            expired.push(name.to_owned());
            continue;
        }
        if let Ok(at) = bootstrap_tokens::data(secret, "expiration").parse::<Timestamp>() {
            next_expiry = Some(next_expiry.map_or(at, |next| next.min(at)));
        }
        let id = bootstrap_tokens::data(secret, "token-id");
        let token_secret = bootstrap_tokens::data(secret, "token-secret");
        let signs = bootstrap_tokens::data(secret, "usage-bootstrap-signing") == "true";
        if signs
            && name.strip_prefix(bootstrap::SECRET_PREFIX) == Some(id.as_str())
            && bootstrap::parse_token(&format!("{id}.{token_secret}")).is_some()
        {
            data.insert(
                format!("{}{id}", bootstrap::JWS_PREFIX),
                bootstrap::detached_signature(kubeconfig, &id, &token_secret),
            );
        }
    }
    (data, expired, next_expiry)
}

async fn reconcile(
    config_map: Arc<ConfigMap>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let failed = ReconcileError::about(
        "ConfigMap",
        bootstrap::PUBLIC_NAMESPACE,
        bootstrap::CLUSTER_INFO,
    );
    let secrets_api: Api<Secret> = Api::namespaced(ctx.client.clone(), bootstrap::NAMESPACE);
    let secrets: Vec<Value> = secrets_api
        .list(&ListParams::default())
        .await
        .map_err(failed)?
        .items
        .iter()
        .filter_map(|secret| serde_json::to_value(secret).ok())
        .collect();
    let now = Timestamp::now();
    let (data, expired, next_expiry) = desired(&ctx.kubeconfig, &secrets, now);
    for name in expired {
        tracing::info!(secret = %name, "deleting an expired bootstrap token");
        match secrets_api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(failed(err)),
        }
    }
    if config_map.data.as_ref() != Some(&data) {
        let mut updated = (*config_map).clone();
        updated.data = Some(data);
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), bootstrap::PUBLIC_NAMESPACE);
        api.replace(&config_map.name_any(), &PostParams::default(), &updated)
            .await
            .map_err(failed)?;
    }
    Ok(match next_expiry {
        Some(at) => requeue_within(Duration::from_secs(
            u64::try_from(at.as_second() - now.as_second()).unwrap_or(0) + 1,
        )),
        None => Action::await_change(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests may unwrap (project rule).

    use base64::{Engine as _, engine::general_purpose::STANDARD};

    use super::*;

    fn token(id: &str, expiration: &str, signing: bool) -> Value {
        let b = |s: &str| STANDARD.encode(s);
        json!({"metadata": {"name": format!("bootstrap-token-{id}")},
               "type": bootstrap::SECRET_TYPE,
               "data": {"token-id": b(id), "token-secret": b("0123456789abcdef"),
                        "expiration": b(expiration),
                        "usage-bootstrap-signing": b(if signing { "true" } else { "false" })}})
    }

    #[test]
    fn live_signing_tokens_sign_and_expired_ones_go() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let secrets = [
            token("aaaaaa", "2026-12-07T12:00:00Z", true),
            token("bbbbbb", "2026-12-06T13:00:00Z", false),
            token("cccccc", "2026-12-05T12:00:00Z", true),
            json!({"metadata": {"name": "other"}, "type": "Opaque"}),
        ];
        let (data, expired, next) = desired("kubeconfig", &secrets, now);
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["jws-kubeconfig-aaaaaa", "kubeconfig"]
        );
        assert!(bootstrap::signature_is_valid(
            &data["jws-kubeconfig-aaaaaa"],
            "kubeconfig",
            "aaaaaa",
            "0123456789abcdef"
        ));
        assert_eq!(expired, ["bootstrap-token-cccccc"]);
        assert_eq!(next, Some("2026-12-06T13:00:00Z".parse().unwrap()));
    }
}
