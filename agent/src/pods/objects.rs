//! The ConfigMaps and Secrets a pod references (environment, envFrom, configMap/secret and
//! projected volumes), the ServiceAccount tokens its projected volumes ask for and the storage
//! behind its PersistentVolumeClaims, fetched once so
//! the environment and the volumes are built from plain data.
//!
//! kubelet's configMap and secret managers answer "not found" with an API NotFound error whose
//! message is `configmap "x" not found` / `secret "x" not found`; [`PodObjects`] keeps that
//! distinction (absent = `None`) so the pure builders can apply each reference's `optional` flag.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::{Api, Client};

use super::{
    claims::{self, ClaimedVolume},
    tokens::{TokenManager, TokenSpec},
};

/// The ConfigMaps and Secrets of one namespace that a pod references, by name; `None` means the
/// API server answered NotFound.
#[derive(Clone, Debug, Default)]
pub struct PodObjects {
    /// ConfigMaps by name.
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, Option<Secret>>,
    /// ServiceAccount tokens by what the projection asks, or why there is none (kubelet's
    /// message, which fails only the volumes that need the token).
    pub tokens: BTreeMap<TokenSpec, Result<String, String>>,
    /// The storage behind each PersistentVolumeClaim the pod's volumes use, or kubelet's
    /// message why there is none (which fails only the volumes using that claim).
    pub claims: BTreeMap<String, Result<ClaimedVolume, String>>,
}

/// Fetching a referenced object failed for a reason other than NotFound.
#[derive(Debug, thiserror::Error)]
#[error("couldn't get {kind} {namespace}/{name}: {source}")]
pub struct FetchError {
    /// "configMap" or "secret", as kubelet names them in this message.
    pub kind: &'static str,
    /// The pod's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The client's error.
    #[source]
    pub source: kube::Error,
}

/// The tokens a pod's projected volumes ask for.
pub fn token_specs(pod: &Pod) -> BTreeSet<TokenSpec> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes
        .filter_map(|volume| volume.projected.as_ref())
        .flat_map(|projected| projected.sources.iter().flatten())
        .filter_map(|source| source.service_account_token.as_ref())
        .map(TokenSpec::of)
        .collect()
}

/// The names of the ConfigMaps and Secrets a pod references anywhere (all containers, init and
/// ephemeral containers included, and its volumes).
pub fn referenced_names(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut config_maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    let Some(spec) = &pod.spec else {
        return (config_maps, secrets);
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| (c.env.as_ref(), c.env_from.as_ref()))
        .chain(
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| (c.env.as_ref(), c.env_from.as_ref())),
        );
    for (env, env_from) in containers {
        for var in env.into_iter().flatten() {
            if let Some(from) = &var.value_from {
                if let Some(r) = &from.config_map_key_ref {
                    config_maps.insert(r.name.clone());
                }
                if let Some(r) = &from.secret_key_ref {
                    secrets.insert(r.name.clone());
                }
            }
        }
        for from in env_from.into_iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                config_maps.insert(r.name.clone());
            }
            if let Some(r) = &from.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(cm) = &volume.config_map {
            config_maps.insert(cm.name.clone());
        }
        if let Some(s) = &volume.secret {
            secrets.insert(s.secret_name.clone().unwrap_or_default());
        }
        if let Some(projected) = &volume.projected {
            for source in projected.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    config_maps.insert(cm.name.clone());
                }
                if let Some(s) = &source.secret {
                    secrets.insert(s.name.clone());
                }
            }
        }
    }
    // A reference without a name cannot be fetched (an empty name would turn a GET into a
    // LIST); it stays absent and fails as "not found" unless optional.
    config_maps.remove("");
    secrets.remove("");
    (config_maps, secrets)
}

impl PodObjects {
    /// GETs every ConfigMap and Secret `pod` references from its namespace. NotFound is recorded
    /// as `None` (the builders decide with the reference's `optional`); other errors fail. The
    /// tokens its projections ask for come from `tokens`.
    pub async fn fetch(
        client: &Client,
        tokens: &TokenManager,
        pod: &Pod,
    ) -> Result<Self, FetchError> {
        let namespace = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let (config_map_names, secret_names) = referenced_names(pod);
        let config_map_api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        let secret_api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        let mut objects = Self::default();
        for name in config_map_names {
            let found = config_map_api
                .get_opt(&name)
                .await
                .map_err(|source| FetchError {
                    kind: "configMap",
                    namespace: namespace.clone(),
                    name: name.clone(),
                    source,
                })?;
            objects.config_maps.insert(name, found);
        }
        for name in secret_names {
            let found = secret_api
                .get_opt(&name)
                .await
                .map_err(|source| FetchError {
                    kind: "secret",
                    namespace: namespace.clone(),
                    name: name.clone(),
                    source,
                })?;
            objects.secrets.insert(name, found);
        }
        for spec in token_specs(pod) {
            let token = tokens
                .token(client, pod, &spec)
                .await
                .map_err(|err| format!("failed to fetch token: {err}"));
            objects.tokens.insert(spec, token);
        }
        for name in claims::claim_names(pod) {
            let claimed = claims::fetch(client, &namespace, &name).await;
            objects.claims.insert(name, claimed);
        }
        Ok(objects)
    }

    /// The ConfigMap `name`: `Ok(None)` when it is absent and `optional`, kubelet's NotFound
    /// message otherwise. A name that was never fetched counts as absent.
    pub fn config_map(&self, name: &str, optional: bool) -> Result<Option<&ConfigMap>, String> {
        match self.config_maps.get(name).and_then(Option::as_ref) {
            Some(found) => Ok(Some(found)),
            None if optional => Ok(None),
            None => Err(format!("configmap \"{name}\" not found")),
        }
    }

    /// The token a projection asks for; kubelet's message when there is none.
    pub fn token(&self, spec: &TokenSpec) -> Result<&str, String> {
        match self.tokens.get(spec) {
            Some(Ok(token)) => Ok(token),
            Some(Err(why)) => Err(why.clone()),
            None => Err("failed to fetch token: it was never asked for".to_owned()),
        }
    }

    /// The storage behind the claim `name`; kubelet's message when there is none.
    pub fn claim(&self, name: &str) -> Result<&ClaimedVolume, String> {
        match self.claims.get(name) {
            Some(Ok(claimed)) => Ok(claimed),
            Some(Err(why)) => Err(why.clone()),
            None => Err(format!("PVC {name:?} was never looked up")),
        }
    }

    /// The Secret `name`, as [`PodObjects::config_map`].
    pub fn secret(&self, name: &str, optional: bool) -> Result<Option<&Secret>, String> {
        match self.secrets.get(name).and_then(Option::as_ref) {
            Some(found) => Ok(Some(found)),
            None if optional => Ok(None),
            None => Err(format!("secret \"{name}\" not found")),
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ConfigMapKeySelector, ConfigMapVolumeSource, Container, EnvFromSource, EnvVar,
        EnvVarSource, PodSpec, ProjectedVolumeSource, SecretEnvSource, SecretProjection,
        SecretVolumeSource, Volume, VolumeProjection,
    };

    use super::*;

    #[test]
    fn collects_every_reference() {
        let pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    env: Some(vec![EnvVar {
                        name: "A".into(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            config_map_key_ref: Some(ConfigMapKeySelector {
                                name: "from-env".into(),
                                key: "k".into(),
                                optional: None,
                            }),
                            ..EnvVarSource::default()
                        }),
                    }]),
                    env_from: Some(vec![EnvFromSource {
                        secret_ref: Some(SecretEnvSource {
                            name: "from-env-from".into(),
                            optional: None,
                        }),
                        ..EnvFromSource::default()
                    }]),
                    ..Container::default()
                }],
                volumes: Some(vec![
                    Volume {
                        name: "a".into(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: "from-volume".into(),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    },
                    Volume {
                        name: "b".into(),
                        secret: Some(SecretVolumeSource::default()),
                        ..Volume::default()
                    },
                    Volume {
                        name: "c".into(),
                        projected: Some(ProjectedVolumeSource {
                            sources: Some(vec![VolumeProjection {
                                secret: Some(SecretProjection {
                                    name: "from-projection".into(),
                                    ..SecretProjection::default()
                                }),
                                ..VolumeProjection::default()
                            }]),
                            ..ProjectedVolumeSource::default()
                        }),
                        ..Volume::default()
                    },
                ]),
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        let (config_maps, secrets) = referenced_names(&pod);
        assert_eq!(
            config_maps.into_iter().collect::<Vec<_>>(),
            ["from-env", "from-volume"]
        );
        assert_eq!(
            secrets.into_iter().collect::<Vec<_>>(),
            ["from-env-from", "from-projection"]
        );
        let objects = PodObjects::default();
        assert_eq!(
            objects.secret("", false).unwrap_err(),
            "secret \"\" not found"
        );
        assert!(objects.config_map("x", true).unwrap().is_none());
    }
}
