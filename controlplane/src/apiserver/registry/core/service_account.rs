//! `v1` ServiceAccount: ObjectMeta rules only (as upstream), the table and the patch schema;
//! and the ServiceAccount admission of pods, which gives every pod a ServiceAccount and mounts
//! its token.

use std::time::Duration;

use rand::Rng as _;

use crate::apiserver::meta;
use crate::apiserver::registry::prelude::*;
use crate::apiserver::status::ApiError;
use crate::controllers::namespace_defaults::{DEFAULT_SERVICE_ACCOUNT, ROOT_CA_CONFIG_MAP};
use k8s_openapi::api::core::v1 as api;

/// Where every container finds its token, the cluster's CA and its namespace.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The prefix of the projected volume that holds them.
const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";
/// The annotation that marks a node's mirror of a static pod.
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// How often the default ServiceAccount is looked for before a pod is refused: the namespace
/// controller creates it just after the namespace, so a pod created at once may race it.
const DEFAULT_ACCOUNT_ATTEMPTS: usize = 10;

/// The `serviceaccounts` resource.
pub static RESOURCE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ServiceAccount",
    plural: "serviceaccounts",
    singular: "serviceaccount",
    namespaced: true,
    short_names: &["sa"],
    categories: &[],
    subresources: &[Subresource::Token],
    storage_prefix: "serviceaccounts",
    field_labels: &[],
    strategy: &ServiceAccounts,
};

/// The `ServiceAccount` strategy.
pub struct ServiceAccounts;

impl Strategy for ServiceAccounts {
    typed_as!("v1.ServiceAccount", api::ServiceAccount);

    fn validate(&self, e: &mut Errs, object: &Value, old: Option<&Value>) {
        // Upstream checks only ObjectMeta (done before this).
        let _ = (e, object, old);
    }

    fn columns(&self) -> Cow<'static, [Column]> {
        Cow::Borrowed(table::SERVICE_ACCOUNT_COLUMNS)
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Vec<Value> {
        table::cells(object, now)
    }

    fn samples(&self) -> Samples {
        Samples {
            valid: json!({"metadata": {"name": "builder"}}),
            invalid: json!({"metadata": {"name": "Builder"}}),
            invalid_field: "metadata.name",
        }
    }
}

/// ServiceAccount admission of a new pod (upstream's `plugin/pkg/admission/serviceaccount`): the
/// pod runs as `default` unless it names a ServiceAccount, which must exist; unless the pod or
/// its ServiceAccount turns `automountServiceAccountToken` off, a projected `kube-api-access-*`
/// volume (a token bound to the pod, the `kube-root-ca.crt` CA, the namespace) is mounted
/// read-only at [`TOKEN_MOUNT_PATH`] in every container that has nothing there. A node's mirror
/// pods are left as they are, and may not use ServiceAccounts or Secrets at all.
pub(crate) async fn admit_pod(lookup: &dyn Lookup, pod: &mut Value) -> Result<(), ApiError> {
    let meta = &pod["metadata"];
    let name = [&meta["name"], &meta["generateName"]]
        .into_iter()
        .filter_map(Value::as_str)
        .find(|name| !name.is_empty())
        .unwrap_or("Unknown")
        .to_owned();
    let refuse = |why: String| ApiError::forbidden("pods", &name, &why);
    if meta["annotations"].get(MIRROR_POD_ANNOTATION).is_some() {
        return mirror_pod_rules(pod).map_err(|why| refuse(why.to_owned()));
    }
    let namespace = meta["namespace"].as_str().unwrap_or_default().to_owned();
    let spec = &mut pod["spec"];
    let account_name = match spec["serviceAccountName"].as_str() {
        Some(account) if !account.is_empty() => account.to_owned(),
        _ => {
            spec["serviceAccountName"] = json!(DEFAULT_SERVICE_ACCOUNT);
            DEFAULT_SERVICE_ACCOUNT.to_owned()
        }
    };
    let account = find_account(lookup, &namespace, &account_name)
        .await?
        .ok_or_else(|| {
            refuse(format!(
                "error looking up service account {namespace}/{account_name}: serviceaccount \"{account_name}\" not found"
            ))
        })?;
    let automount = spec["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| account["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if automount {
        mount_token(spec);
    }
    Ok(())
}

/// Why a mirror pod may not be admitted: it may not reference a ServiceAccount, a Secret or a
/// token (the node that mirrors it could not be allowed to read them).
fn mirror_pod_rules(pod: &Value) -> Result<(), &'static str> {
    let spec = &pod["spec"];
    if spec["serviceAccountName"]
        .as_str()
        .is_some_and(|name| !name.is_empty())
    {
        return Err("a mirror pod may not reference service accounts");
    }
    if crate::auth::node_authorizer::references_secrets(pod) {
        return Err("a mirror pod may not reference secrets");
    }
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    let mut sources =
        volumes.flat_map(|v| v["projected"]["sources"].as_array().into_iter().flatten());
    if sources.any(|source| !source["serviceAccountToken"].is_null()) {
        return Err("a mirror pod may not use ServiceAccountToken volume projections");
    }
    Ok(())
}

/// The ServiceAccount `name` of `namespace`, looked for again for a while when it is the
/// default one (as upstream does; a live lookup, not a cache).
async fn find_account(
    lookup: &dyn Lookup,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_ACCOUNT_ATTEMPTS
    } else {
        1
    };
    let pause = Duration::from_millis(rand::rng().random_range(100..200));
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(pause).await;
        }
        let accounts = lookup.list(&RESOURCE, Some(namespace)).await?;
        if let Some(found) = accounts
            .into_iter()
            .find(|account| account["metadata"]["name"].as_str() == Some(name))
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Mounts the token volume (added once, named `kube-api-access-<random>`, or the one the pod
/// already has) in every init and app container without a mount at [`TOKEN_MOUNT_PATH`].
fn mount_token(spec: &mut Value) {
    let existing = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|volume| volume["name"].as_str())
        .find(|name| name.starts_with(TOKEN_VOLUME_PREFIX))
        .map(str::to_owned);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| meta::generated_name(TOKEN_VOLUME_PREFIX));
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec[list].as_array_mut() else {
            continue;
        };
        for container in containers.iter_mut().filter(|c| c.is_object()) {
            let mounts = &mut container["volumeMounts"];
            let taken = mounts
                .as_array()
                .into_iter()
                .flatten()
                .any(|mount| mount["mountPath"].as_str() == Some(TOKEN_MOUNT_PATH));
            if taken {
                continue;
            }
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            if let Some(mounts) = mounts.as_array_mut() {
                mounts.push(json!({
                    "name": volume_name,
                    "readOnly": true,
                    "mountPath": TOKEN_MOUNT_PATH,
                }));
                needed = true;
            }
        }
    }
    if needed && existing.is_none() {
        let volume = json!({
            "name": volume_name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        });
        match spec["volumes"].as_array_mut() {
            Some(volumes) => volumes.push(volume),
            None => spec["volumes"] = json!([volume]),
        }
    }
}

/// The kind's table, as upstream's printer.
mod table {
    use jiff::Timestamp;
    use serde_json::{Value, json};

    use crate::apiserver::tables::*;

    pub(crate) const SERVICE_ACCOUNT_COLUMNS: &[Column] = &[
        NAME,
        col(
            "Secrets",
            "string",
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        ),
        AGE,
    ];

    /// One row: the cells in the order of the columns.
    pub(super) fn cells(object: &Value, now: Timestamp) -> Vec<Value> {
        vec![
            json!(name(object)),
            json!(list_at(object, &["secrets"]).len()),
            json!(age(object, now)),
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests may unwrap (project rule).

    use super::*;

    /// A namespace's ServiceAccounts.
    struct Accounts(Vec<Value>);

    impl Lookup for Accounts {
        fn list<'a>(
            &'a self,
            _resource: &'static Resource,
            _namespace: Option<&'a str>,
        ) -> BoxFuture<'a, Result<Vec<Value>, ApiError>> {
            Box::pin(std::future::ready(Ok(self.0.clone())))
        }
    }

    fn account(name: &str, automount: Option<bool>) -> Value {
        let mut account = json!({"metadata": {"name": name, "namespace": "dev"}});
        if let Some(automount) = automount {
            account["automountServiceAccountToken"] = json!(automount);
        }
        account
    }

    fn admit(accounts: Vec<Value>, mut pod: Value) -> Result<Value, ApiError> {
        futures::executor::block_on(admit_pod(&Accounts(accounts), &mut pod))?;
        Ok(pod)
    }

    fn new_pod(spec: Value) -> Value {
        json!({"metadata": {"generateName": "web-", "namespace": "dev"}, "spec": spec})
    }

    #[test]
    fn every_container_mounts_the_default_accounts_token() {
        let pod = admit(
            vec![account("default", None)],
            new_pod(json!({
                "initContainers": [{"name": "setup"}],
                "containers": [
                    {"name": "app"},
                    {"name": "own", "volumeMounts": [{"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
                ],
                "volumes": [{"name": "mine", "emptyDir": {}}],
            })),
        )
        .unwrap();
        let spec = &pod["spec"];
        assert_eq!(spec["serviceAccountName"], "default");
        let volume = &spec["volumes"][1];
        let name = volume["name"].as_str().unwrap();
        assert!(
            name.starts_with("kube-api-access-") && name.len() == 21,
            "{name}"
        );
        let sources = &volume["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(sources[2]["downwardAPI"]["items"][0]["path"], "namespace");
        let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(spec["containers"][0]["volumeMounts"], json!([mount]));
        // A container with its own mount at the path keeps it.
        assert_eq!(spec["containers"][1]["volumeMounts"][0]["name"], "mine");
    }

    #[test]
    fn automount_is_the_pods_choice_then_the_accounts() {
        let quiet = account("builder", Some(false));
        let pod = admit(
            vec![quiet.clone()],
            new_pod(json!({"serviceAccountName": "builder", "containers": [{"name": "c"}]})),
        )
        .unwrap();
        assert!(pod["spec"]["volumes"].is_null());
        assert!(pod["spec"]["containers"][0]["volumeMounts"].is_null());
        let pod = admit(
            vec![quiet],
            new_pod(
                json!({"serviceAccountName": "builder", "automountServiceAccountToken": true,
                           "containers": [{"name": "c"}]}),
            ),
        )
        .unwrap();
        assert_eq!(pod["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_missing_account_or_a_mirror_pod_with_one_is_forbidden() {
        let err = admit(
            vec![account("default", None)],
            new_pod(json!({"serviceAccountName": "builder", "containers": [{"name": "c"}]})),
        )
        .unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"web-\" is forbidden: error looking up service account dev/builder: serviceaccount \"builder\" not found"
        );
        let mirror = |spec: Value| {
            json!({"metadata": {"name": "etcd-node1", "namespace": "kube-system",
                                "annotations": {MIRROR_POD_ANNOTATION: "x"}}, "spec": spec})
        };
        let err = admit(
            Vec::new(),
            mirror(json!({"serviceAccountName": "default", "containers": [{"name": "c"}]})),
        )
        .unwrap_err();
        assert!(
            err.message
                .ends_with("a mirror pod may not reference service accounts")
        );
        let err = admit(
            Vec::new(),
            mirror(
                json!({"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}]}]}),
            ),
        )
        .unwrap_err();
        assert!(
            err.message
                .ends_with("a mirror pod may not reference secrets")
        );
        // A mirror pod without one is left as it is.
        let plain = mirror(json!({"containers": [{"name": "c"}]}));
        assert_eq!(admit(Vec::new(), plain.clone()).unwrap(), plain);
    }
}
