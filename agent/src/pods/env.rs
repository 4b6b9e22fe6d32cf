//! A container's environment, built the way kubelet's `makeEnvironmentVariables` builds it.
//!
//! Order of precedence, as upstream: `envFrom` first (later sources overwrite earlier ones), then
//! `env` in declaration order (each value may reference the variables defined so far and the
//! service variables with `$(NAME)`), then the service link variables that no explicit variable
//! shadows. Everything here is a pure function over objects the caller fetched
//! ([`PodObjects::fetch`](super::objects::PodObjects::fetch)) and the services it watches.

use std::collections::{BTreeMap, HashMap};

use flotilla_apimachinery::quantity::Quantity as ExactQuantity;
use k8s_openapi::{
    api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector, Service},
    apimachinery::pkg::api::resource::Quantity,
};

use super::{cri::api, objects::PodObjects};

/// The reason kubelet gives a waiting container whose configuration could not be built.
pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";

/// The service kubelet always links, from namespace `default`, whatever the pod's namespace.
const MASTER_SERVICE: &str = "kubernetes";

/// Building a container's environment failed; the message is the one kubelet puts in the
/// container's waiting state (reason [`CREATE_CONTAINER_CONFIG_ERROR`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EnvError {
    /// kubelet's wording, e.g. `configmap "x" not found`.
    pub message: String,
}

impl EnvError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The container waiting reason this error is reported under.
    pub fn reason(&self) -> &'static str {
        CREATE_CONTAINER_CONFIG_ERROR
    }
}

/// What the environment of a pod's containers is built from besides the container itself.
#[derive(Clone, Copy, Debug)]
pub struct EnvContext<'a> {
    /// The pod (metadata and spec for fieldRef, namespace, enableServiceLinks).
    pub pod: &'a Pod,
    /// The pod's IPs, primary first (status.podIP / status.podIPs).
    pub pod_ips: &'a [String],
    /// The node's IPs, primary first (status.hostIP / status.hostIPs).
    pub host_ips: &'a [String],
    /// The node's allocatable resources, which stand in for unset limits in resourceFieldRef.
    pub allocatable: &'a BTreeMap<String, Quantity>,
    /// Every Service the caller knows of (all namespaces; only the pod's own namespace and
    /// `default/kubernetes` are used).
    pub services: &'a [Service],
    /// The ConfigMaps and Secrets the pod references.
    pub objects: &'a PodObjects,
}

/// A container's environment, in a stable order, plus warnings kubelet reports as events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    /// (name, value) pairs, each name once.
    pub vars: Vec<(String, String)>,
    /// Messages for `InvalidEnvironmentVariableNames` warning events (envFrom keys skipped).
    pub warnings: Vec<String>,
}

impl ContainerEnv {
    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// The environment as CRI `KeyValue`s for `ContainerConfig.envs`.
    pub fn to_cri(&self) -> Vec<api::KeyValue> {
        self.vars
            .iter()
            .map(|(key, value)| api::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }
}

/// An insertion-ordered map: the environment keeps the order variables were first defined.
#[derive(Default)]
struct OrderedEnv {
    order: Vec<String>,
    values: HashMap<String, String>,
}

impl OrderedEnv {
    fn set(&mut self, key: String, value: String) {
        if !self.values.contains_key(&key) {
            self.order.push(key.clone());
        }
        self.values.insert(key, value);
    }
}

/// Builds `container`'s environment as kubelet does (see the module docs for the precedence).
pub fn container_env(
    ctx: &EnvContext<'_>,
    container: &Container,
) -> Result<ContainerEnv, EnvError> {
    let namespace = pod_namespace(ctx.pod);
    let enable_links = ctx
        .pod
        .spec
        .as_ref()
        .and_then(|spec| spec.enable_service_links)
        .unwrap_or(true);
    let service_vars = service_env(ctx.services, namespace, enable_links);
    let service_map: HashMap<&str, &str> = service_vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    let mut env = OrderedEnv::default();
    let mut warnings = Vec::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (kind, name, data): (&str, &str, Vec<(String, String)>) =
            if let Some(source) = &from.config_map_ref {
                let optional = source.optional.unwrap_or(false);
                let Some(cm) = ctx
                    .objects
                    .config_map(&source.name, optional)
                    .map_err(EnvError::new)?
                else {
                    continue;
                };
                let data = cm
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                ("configMap", &source.name, data)
            } else if let Some(source) = &from.secret_ref {
                let optional = source.optional.unwrap_or(false);
                let Some(secret) = ctx
                    .objects
                    .secret(&source.name, optional)
                    .map_err(EnvError::new)?
                else {
                    continue;
                };
                ("secret", &source.name, secret_data(secret))
            } else {
                continue;
            };
        let mut invalid = Vec::new();
        for (key, value) in data {
            let key = format!("{prefix}{key}");
            if is_env_var_name(&key) {
                env.set(key, value);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            warnings.push(format!(
                "Keys [{}] from the EnvFrom {kind} {namespace}/{name} were skipped since they are \
                 considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }

    for var in container.env.iter().flatten() {
        let value = var.value.as_deref().unwrap_or("");
        let resolved = if !value.is_empty() {
            expand(value, |name| {
                env.values
                    .get(name)
                    .map(String::as_str)
                    .or_else(|| service_map.get(name).copied())
                    .map(str::to_owned)
            })
        } else if let Some(from) = &var.value_from {
            if let Some(field) = &from.field_ref {
                field_value(ctx.pod, field, ctx.pod_ips, ctx.host_ips).map_err(EnvError::new)?
            } else if let Some(resource) = &from.resource_field_ref {
                resource_value(resource, container, ctx.allocatable).map_err(EnvError::new)?
            } else if let Some(key_ref) = &from.config_map_key_ref {
                let optional = key_ref.optional.unwrap_or(false);
                let Some(cm) = ctx
                    .objects
                    .config_map(&key_ref.name, optional)
                    .map_err(EnvError::new)?
                else {
                    continue;
                };
                match cm.data.as_ref().and_then(|data| data.get(&key_ref.key)) {
                    Some(value) => value.clone(),
                    None if optional => continue,
                    None => {
                        return Err(EnvError::new(format!(
                            "couldn't find key {} in ConfigMap {namespace}/{}",
                            key_ref.key, key_ref.name
                        )));
                    }
                }
            } else if let Some(key_ref) = &from.secret_key_ref {
                let optional = key_ref.optional.unwrap_or(false);
                let Some(secret) = ctx
                    .objects
                    .secret(&key_ref.name, optional)
                    .map_err(EnvError::new)?
                else {
                    continue;
                };
                match secret_data(secret)
                    .into_iter()
                    .find(|(key, _)| *key == key_ref.key)
                {
                    Some((_, value)) => value,
                    None if optional => continue,
                    None => {
                        return Err(EnvError::new(format!(
                            "couldn't find key {} in Secret {namespace}/{}",
                            key_ref.key, key_ref.name
                        )));
                    }
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(var.name.clone(), resolved);
    }

    let mut vars: Vec<(String, String)> = Vec::with_capacity(env.order.len() + service_vars.len());
    for key in env.order {
        let value = env.values.get(&key).cloned().unwrap_or_default();
        vars.push((key, value));
    }
    for (key, value) in service_vars {
        if !env.values.contains_key(&key) {
            vars.push((key, value));
        }
    }
    Ok(ContainerEnv { vars, warnings })
}

/// A Secret's data as strings (bytes that are not UTF-8 are replaced, as a Go string conversion
/// would pass them through; environment values are strings either way). `stringData` is
/// included for objects that were not round-tripped through the API server.
fn secret_data(secret: &k8s_openapi::api::core::v1::Secret) -> Vec<(String, String)> {
    let mut data: BTreeMap<String, String> = secret
        .string_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (key, value) in secret.data.iter().flatten() {
        data.insert(key.clone(), String::from_utf8_lossy(&value.0).into_owned());
    }
    data.into_iter().collect()
}

/// The pod's namespace ("default" when unset, as the API server defaults it).
pub fn pod_namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

/// Whether `name` is a valid environment variable name for envFrom keys, as kubelet's
/// `IsEnvVarName`: letters, digits, '_', '-', '.', not starting with a digit.
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphabetic() || matches!(first, '_' | '-' | '.') => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Expands `$(NAME)` references in `input` with `lookup`, with kubelet's rules: `$$` is a
/// literal `$`, a reference `lookup` does not know stays as written, and a `$` that starts no
/// reference (or an unterminated `$(`) is kept.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] != b'$' || cursor + 1 >= bytes.len() {
            out.push(bytes[cursor]);
            cursor += 1;
            continue;
        }
        match bytes[cursor + 1] {
            b'$' => {
                out.push(b'$');
                cursor += 2;
            }
            b'(' => match bytes[cursor + 2..].iter().position(|&b| b == b')') {
                Some(length) => {
                    let name = &input[cursor + 2..cursor + 2 + length];
                    match lookup(name) {
                        Some(value) => out.extend_from_slice(value.as_bytes()),
                        None => out.extend_from_slice(format!("$({name})").as_bytes()),
                    }
                    cursor += length + 3;
                }
                None => {
                    // Incomplete reference: kept literally.
                    out.extend_from_slice(b"$(");
                    cursor += 2;
                }
            },
            other => {
                out.push(b'$');
                out.push(other);
                cursor += 2;
            }
        }
    }
    // Only ASCII bytes were split or inserted, so the result is valid UTF-8.
    String::from_utf8_lossy(&out).into_owned()
}

/// The environment variable prefix of a service name: upper case, '-' as '_'.
pub fn service_env_name(service: &str) -> String {
    service.to_uppercase().replace('-', "_")
}

/// The service link variables kubelet injects: for each Service of `namespace` with a cluster
/// IP (when `enable_links`), and always `default/kubernetes`. A `kubernetes` Service of the
/// pod's own namespace wins over the default one, as upstream. Sorted by name.
pub fn service_env(
    services: &[Service],
    namespace: &str,
    enable_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for service in services {
        let Some(name) = service.metadata.name.as_deref() else {
            continue;
        };
        if !has_cluster_ip(service) {
            continue;
        }
        let service_namespace = service.metadata.namespace.as_deref().unwrap_or("default");
        if service_namespace == "default" && name == MASTER_SERVICE {
            chosen.entry(name).or_insert(service);
        } else if service_namespace == namespace && enable_links {
            chosen.insert(name, service);
        }
    }
    let mut vars = Vec::new();
    for (name, service) in chosen {
        service_vars(name, service, &mut vars);
    }
    vars.sort();
    vars
}

/// Whether a Service has a cluster IP (not headless, not ExternalName).
fn has_cluster_ip(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|spec| spec.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// The variables of one Service, as upstream's `envvars.FromServices`.
fn service_vars(name: &str, service: &Service, vars: &mut Vec<(String, String)>) {
    let Some(spec) = &service.spec else {
        return;
    };
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    let prefix = service_env_name(name);
    let ports = spec.ports.as_deref().unwrap_or_default();
    vars.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
    let Some(first) = ports.first() else {
        return;
    };
    vars.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
    for port in ports {
        if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            vars.push((
                format!("{prefix}_SERVICE_PORT_{}", service_env_name(port_name)),
                port.port.to_string(),
            ));
        }
    }
    // Docker link variables; Docker special-cases the first port.
    let host = |port: i32| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    for (index, port) in ports.iter().enumerate() {
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{}", host(port.port));
        if index == 0 {
            vars.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
        vars.push((port_prefix.clone(), url));
        vars.push((format!("{port_prefix}_PROTO"), lower));
        vars.push((format!("{port_prefix}_PORT"), port.port.to_string()));
        vars.push((format!("{port_prefix}_ADDR"), ip.clone()));
    }
}

/// The value of a downward API field of `pod` (env `fieldRef` and downwardAPI volume files).
pub fn field_value(
    pod: &Pod,
    selector: &ObjectFieldSelector,
    pod_ips: &[String],
    host_ips: &[String],
) -> Result<String, String> {
    if let Some(version) = selector.api_version.as_deref()
        && !version.is_empty()
        && version != "v1"
    {
        return Err(format!("unsupported pod version: {version}"));
    }
    let path = selector.field_path.as_str();
    let spec = pod.spec.as_ref();
    let meta = &pod.metadata;
    let value = match path {
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => host_ips.join(","),
        "status.podIP" => pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => pod_ips.join(","),
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => pod_namespace(pod).to_owned(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        _ => {
            if let Some(key) = subscript(path, "metadata.labels") {
                map_value(meta.labels.as_ref(), key)
            } else if let Some(key) = subscript(path, "metadata.annotations") {
                map_value(meta.annotations.as_ref(), key)
            } else {
                return Err(format!("unsupported fieldPath: {path}"));
            }
        }
    };
    Ok(value)
}

fn map_value(map: Option<&BTreeMap<String, String>>, key: &str) -> String {
    map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
}

/// `key` from `prefix['key']`.
fn subscript<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    path.strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

/// A whole label or annotation map as the downward API writes it: `key="value"` lines, sorted,
/// values quoted as Go's `%q`.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={}", go_quote(value)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A string quoted as Go's `%q` does for printable text.
fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of a container resource (`limits.cpu`, `requests.memory`, ...) divided by the
/// selector's divisor and rounded up, as kubelet. Unset limits are the node's allocatable.
pub fn resource_value(
    selector: &ResourceFieldSelector,
    container: &Container,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, String> {
    let divisor = match &selector.divisor {
        Some(q) => {
            ExactQuantity::parse(&q.0).map_err(|e| format!("invalid divisor {:?}: {e}", q.0))?
        }
        None => ExactQuantity::ONE,
    };
    // A zero divisor means "unset" upstream.
    let divisor = if divisor.is_zero() {
        ExactQuantity::ONE
    } else {
        divisor
    };
    let resources = container.resources.as_ref();
    let (side, name) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {}", selector.resource))?;
    let set = match side {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => {
            return Err(format!(
                "unsupported container resource : {}",
                selector.resource
            ));
        }
    };
    if !matches!(name, "cpu" | "memory" | "ephemeral-storage") {
        return Err(format!(
            "unsupported container resource : {}",
            selector.resource
        ));
    }
    let quantity = set.and_then(|s| s.get(name)).or_else(|| {
        // kubelet defaults unset limits (not requests) to the node's allocatable.
        (side == "limits").then(|| allocatable.get(name)).flatten()
    });
    let amount = match quantity {
        Some(q) => ExactQuantity::parse(&q.0)
            .map_err(|e| format!("invalid quantity {:?} for {}: {e}", q.0, selector.resource))?,
        None => ExactQuantity::ZERO,
    };
    let value = if name == "cpu" {
        ceil_div_f64(amount.milli_value(), divisor.milli_value())
    } else {
        ceil_div_f64(amount.value(), divisor.value())
    };
    Ok(value.to_string())
}

/// `ceil(a / b)` in floating point, as kubelet's `math.Ceil(float64(a) / float64(b))`.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
fn ceil_div_f64(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    (a as f64 / b as f64).ceil() as i64
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        ByteString,
        api::core::v1::{
            ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVar,
            EnvVarSource, PodSpec, ResourceRequirements, Secret, SecretEnvSource,
            SecretKeySelector, ServicePort, ServiceSpec,
        },
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-1".into()),
                namespace: Some("shop".into()),
                uid: Some("uid-1".into()),
                labels: Some(BTreeMap::from([
                    ("app".into(), "web".into()),
                    ("tier".into(), "front \"end\"".into()),
                ])),
                annotations: Some(BTreeMap::from([("note".into(), "hi".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                service_account_name: Some("robot".into()),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn service(
        namespace: &str,
        name: &str,
        ip: &str,
        ports: &[(Option<&str>, i32, &str)],
    ) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(n, p, proto)| ServicePort {
                            name: n.map(str::to_owned),
                            port: *p,
                            protocol: Some((*proto).to_owned()),
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    fn value(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    fn from(name: &str, source: EnvVarSource) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: None,
            value_from: Some(source),
        }
    }

    fn field(path: &str) -> EnvVarSource {
        EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: path.into(),
            }),
            ..EnvVarSource::default()
        }
    }

    fn objects() -> PodObjects {
        let mut objects = PodObjects::default();
        objects.config_maps.insert(
            "settings".into(),
            Some(ConfigMap {
                data: Some(BTreeMap::from([
                    ("MODE".into(), "fast".into()),
                    ("1BAD".into(), "x".into()),
                    ("LEVEL".into(), "3".into()),
                ])),
                ..ConfigMap::default()
            }),
        );
        objects.config_maps.insert("gone".into(), None);
        objects.secrets.insert(
            "creds".into(),
            Some(Secret {
                data: Some(BTreeMap::from([(
                    "password".into(),
                    ByteString(b"s3cret".to_vec()),
                )])),
                ..Secret::default()
            }),
        );
        objects
    }

    fn build(container: &Container, services: &[Service]) -> Result<ContainerEnv, EnvError> {
        let pod = pod();
        let objects = objects();
        let allocatable = BTreeMap::from([
            ("cpu".to_owned(), Quantity("4".into())),
            ("memory".to_owned(), Quantity("8Gi".into())),
        ]);
        let ctx = EnvContext {
            pod: &pod,
            pod_ips: &["10.1.0.5".into(), "fd00::5".into()],
            host_ips: &["192.168.77.11".into()],
            allocatable: &allocatable,
            services,
            objects: &objects,
        };
        container_env(&ctx, container)
    }

    #[test]
    fn expansion_follows_kubelet_rules() {
        let lookup = |name: &str| match name {
            "A" => Some("alpha".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(expand("$(A)-x", lookup), "alpha-x");
        assert_eq!(expand("$$(A)", lookup), "$(A)");
        assert_eq!(expand("$(UNKNOWN)", lookup), "$(UNKNOWN)");
        assert_eq!(expand("[$(EMPTY)]", lookup), "[]");
        assert_eq!(expand("$(A", lookup), "$(A");
        assert_eq!(expand("cost $5 $", lookup), "cost $5 $");
        assert_eq!(expand("$$$$", lookup), "$$");
        assert_eq!(expand("ü$(A)ü", lookup), "üalphaü");
        assert_eq!(expand("$()", lookup), "$()");
    }

    #[test]
    fn env_values_expand_earlier_vars_and_services() {
        let container = Container {
            name: "app".into(),
            env: Some(vec![
                value("FIRST", "one"),
                value("SECOND", "$(FIRST)-two-$(LATER)"),
                value("DB", "$(DB_SERVICE_HOST):$(DB_SERVICE_PORT)"),
                value("LATER", "late"),
                value("ESCAPED", "$$(FIRST)"),
            ]),
            ..Container::default()
        };
        let services = [service("shop", "db", "10.96.0.20", &[(None, 5432, "TCP")])];
        let env = build(&container, &services).unwrap();
        assert_eq!(env.get("SECOND"), Some("one-two-$(LATER)"));
        assert_eq!(env.get("DB"), Some("10.96.0.20:5432"));
        assert_eq!(env.get("ESCAPED"), Some("$(FIRST)"));
    }

    #[test]
    fn service_links_as_kubelet_names_them() {
        let services = [
            service(
                "shop",
                "my-db",
                "10.96.0.20",
                &[
                    (Some("sql"), 5432, "TCP"),
                    (Some("metrics-http"), 9187, "TCP"),
                ],
            ),
            service("shop", "dns", "10.96.0.10", &[(Some("dns"), 53, "UDP")]),
            service("shop", "headless", "None", &[(None, 80, "TCP")]),
            service("other", "elsewhere", "10.96.0.30", &[(None, 80, "TCP")]),
            service(
                "default",
                "kubernetes",
                "10.96.0.1",
                &[(Some("https"), 443, "TCP")],
            ),
        ];
        let vars: BTreeMap<String, String> =
            service_env(&services, "shop", true).into_iter().collect();
        let expected = [
            ("MY_DB_SERVICE_HOST", "10.96.0.20"),
            ("MY_DB_SERVICE_PORT", "5432"),
            ("MY_DB_SERVICE_PORT_SQL", "5432"),
            ("MY_DB_SERVICE_PORT_METRICS_HTTP", "9187"),
            ("MY_DB_PORT", "tcp://10.96.0.20:5432"),
            ("MY_DB_PORT_5432_TCP", "tcp://10.96.0.20:5432"),
            ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_5432_TCP_PORT", "5432"),
            ("MY_DB_PORT_5432_TCP_ADDR", "10.96.0.20"),
            ("MY_DB_PORT_9187_TCP", "tcp://10.96.0.20:9187"),
            ("MY_DB_PORT_9187_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_9187_TCP_PORT", "9187"),
            ("MY_DB_PORT_9187_TCP_ADDR", "10.96.0.20"),
            ("DNS_SERVICE_HOST", "10.96.0.10"),
            ("DNS_PORT", "udp://10.96.0.10:53"),
            ("DNS_PORT_53_UDP_PROTO", "udp"),
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
        ];
        for (key, want) in expected {
            assert_eq!(vars.get(key).map(String::as_str), Some(want), "{key}");
        }
        assert!(
            !vars
                .keys()
                .any(|k| k.starts_with("HEADLESS") || k.starts_with("ELSEWHERE"))
        );
        // my-db: 4 service vars + 1 + 2 ports x 4 link vars; dns and kubernetes: 3 + 1 + 4 each.
        assert_eq!(vars.len(), 13 + 8 + 8);

        // Links off: only the master service.
        let vars = service_env(&services, "shop", false);
        assert!(
            vars.iter().all(|(k, _)| k.starts_with("KUBERNETES_")),
            "{vars:?}"
        );
        assert_eq!(vars.len(), 8);
    }

    #[test]
    fn explicit_env_wins_over_service_vars() {
        let container = Container {
            env: Some(vec![value("DB_SERVICE_HOST", "mine")]),
            ..Container::default()
        };
        let services = [service("shop", "db", "10.96.0.20", &[(None, 5432, "TCP")])];
        let env = build(&container, &services).unwrap();
        assert_eq!(env.get("DB_SERVICE_HOST"), Some("mine"));
        assert_eq!(
            env.vars
                .iter()
                .filter(|(k, _)| k == "DB_SERVICE_HOST")
                .count(),
            1
        );
    }

    #[test]
    fn field_refs() {
        let container = Container {
            env: Some(vec![
                from("NAME", field("metadata.name")),
                from("NS", field("metadata.namespace")),
                from("UID", field("metadata.uid")),
                from("APP", field("metadata.labels['app']")),
                from("MISSING", field("metadata.labels['nope']")),
                from("NOTE", field("metadata.annotations['note']")),
                from("NODE", field("spec.nodeName")),
                from("SA", field("spec.serviceAccountName")),
                from("HOST_IP", field("status.hostIP")),
                from("HOST_IPS", field("status.hostIPs")),
                from("POD_IP", field("status.podIP")),
                from("POD_IPS", field("status.podIPs")),
            ]),
            ..Container::default()
        };
        let env = build(&container, &[]).unwrap();
        let want = [
            ("NAME", "web-1"),
            ("NS", "shop"),
            ("UID", "uid-1"),
            ("APP", "web"),
            ("MISSING", ""),
            ("NOTE", "hi"),
            ("NODE", "node-a"),
            ("SA", "robot"),
            ("HOST_IP", "192.168.77.11"),
            ("HOST_IPS", "192.168.77.11"),
            ("POD_IP", "10.1.0.5"),
            ("POD_IPS", "10.1.0.5,fd00::5"),
        ];
        for (key, value) in want {
            assert_eq!(env.get(key), Some(value), "{key}");
        }
        let all = field_value(
            &pod(),
            &ObjectFieldSelector {
                api_version: None,
                field_path: "metadata.labels".into(),
            },
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(all, "app=\"web\"\ntier=\"front \\\"end\\\"\"");
        let bad = Container {
            env: Some(vec![from("X", field("spec.bogus"))]),
            ..Container::default()
        };
        assert_eq!(
            build(&bad, &[]).unwrap_err().message,
            "unsupported fieldPath: spec.bogus"
        );
    }

    fn resource(name: &str, divisor: Option<&str>) -> EnvVarSource {
        EnvVarSource {
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: None,
                divisor: divisor.map(|d| Quantity(d.into())),
                resource: name.into(),
            }),
            ..EnvVarSource::default()
        }
    }

    #[test]
    fn resource_refs_with_divisors_and_allocatable() {
        let container = Container {
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([(
                    "memory".into(),
                    Quantity("128Mi".into()),
                )])),
                requests: Some(BTreeMap::from([
                    ("cpu".into(), Quantity("250m".into())),
                    ("memory".into(), Quantity("100M".into())),
                ])),
                ..ResourceRequirements::default()
            }),
            env: Some(vec![
                from("CPU_REQ", resource("requests.cpu", None)),
                from("CPU_REQ_M", resource("requests.cpu", Some("1m"))),
                from("CPU_LIM", resource("limits.cpu", None)),
                from("MEM_LIM", resource("limits.memory", None)),
                from("MEM_LIM_MI", resource("limits.memory", Some("1Mi"))),
                from("MEM_REQ_MI", resource("requests.memory", Some("1Mi"))),
                from("MEM_REQ_ZERO_DIV", resource("requests.memory", Some("0"))),
            ]),
            ..Container::default()
        };
        let env = build(&container, &[]).unwrap();
        assert_eq!(env.get("CPU_REQ"), Some("1"));
        assert_eq!(env.get("CPU_REQ_M"), Some("250"));
        assert_eq!(env.get("CPU_LIM"), Some("4"));
        assert_eq!(env.get("MEM_LIM"), Some("134217728"));
        assert_eq!(env.get("MEM_LIM_MI"), Some("128"));
        assert_eq!(env.get("MEM_REQ_MI"), Some("96"));
        assert_eq!(env.get("MEM_REQ_ZERO_DIV"), Some("100000000"));
        let bad = Container {
            env: Some(vec![from("X", resource("limits.gpu", None))]),
            ..Container::default()
        };
        assert_eq!(
            build(&bad, &[]).unwrap_err().message,
            "unsupported container resource : limits.gpu"
        );
    }

    fn key_ref_cm(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
        EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: name.into(),
                key: key.into(),
                optional,
            }),
            ..EnvVarSource::default()
        }
    }

    fn key_ref_secret(name: &str, key: &str, optional: Option<bool>) -> EnvVarSource {
        EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: name.into(),
                key: key.into(),
                optional,
            }),
            ..EnvVarSource::default()
        }
    }

    fn one(var: EnvVar) -> Result<ContainerEnv, EnvError> {
        build(
            &Container {
                env: Some(vec![var]),
                ..Container::default()
            },
            &[],
        )
    }

    #[test]
    fn key_refs_and_their_errors() {
        assert_eq!(
            one(from("M", key_ref_cm("settings", "MODE", None)))
                .unwrap()
                .get("M"),
            Some("fast")
        );
        assert_eq!(
            one(from("P", key_ref_secret("creds", "password", None)))
                .unwrap()
                .get("P"),
            Some("s3cret")
        );
        let err = |var| one(var).unwrap_err().message;
        assert_eq!(
            err(from("M", key_ref_cm("gone", "MODE", None))),
            "configmap \"gone\" not found"
        );
        assert_eq!(
            err(from("M", key_ref_cm("never-fetched", "MODE", Some(false)))),
            "configmap \"never-fetched\" not found"
        );
        assert_eq!(
            err(from("M", key_ref_cm("settings", "nope", None))),
            "couldn't find key nope in ConfigMap shop/settings"
        );
        assert_eq!(
            err(from("P", key_ref_secret("missing", "k", None))),
            "secret \"missing\" not found"
        );
        assert_eq!(
            err(from("P", key_ref_secret("creds", "user", None))),
            "couldn't find key user in Secret shop/creds"
        );
        // Optional references that do not resolve leave the variable out entirely.
        let env = one(from("M", key_ref_cm("gone", "MODE", Some(true)))).unwrap();
        assert_eq!(env.get("M"), None);
        let env = one(from("P", key_ref_secret("creds", "user", Some(true)))).unwrap();
        assert_eq!(env.get("P"), None);
        assert_eq!(
            one(from("M", key_ref_cm("gone", "MODE", None)))
                .unwrap_err()
                .reason(),
            "CreateContainerConfigError"
        );
    }

    #[test]
    fn env_from_with_prefix_invalid_keys_and_override() {
        let container = Container {
            env_from: Some(vec![
                EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "settings".into(),
                        optional: None,
                    }),
                    prefix: None,
                    secret_ref: None,
                },
                EnvFromSource {
                    config_map_ref: None,
                    prefix: Some("S_".into()),
                    secret_ref: Some(SecretEnvSource {
                        name: "creds".into(),
                        optional: None,
                    }),
                },
                EnvFromSource {
                    config_map_ref: Some(ConfigMapEnvSource {
                        name: "gone".into(),
                        optional: Some(true),
                    }),
                    prefix: None,
                    secret_ref: None,
                },
            ]),
            env: Some(vec![value("LEVEL", "9"), value("DERIVED", "$(MODE)!")]),
            ..Container::default()
        };
        let env = build(&container, &[]).unwrap();
        assert_eq!(env.get("MODE"), Some("fast"));
        assert_eq!(env.get("LEVEL"), Some("9"));
        assert_eq!(env.get("S_password"), Some("s3cret"));
        assert_eq!(env.get("DERIVED"), Some("fast!"));
        assert_eq!(env.get("1BAD"), None);
        assert_eq!(
            env.warnings,
            [
                "Keys [1BAD] from the EnvFrom configMap shop/settings were skipped since they are \
              considered invalid environment variable names."
            ]
        );
        let missing = Container {
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "gone".into(),
                    optional: None,
                }),
                prefix: None,
                secret_ref: None,
            }]),
            ..Container::default()
        };
        assert_eq!(
            build(&missing, &[]).unwrap_err().message,
            "configmap \"gone\" not found"
        );
        assert_eq!(env.to_cri().len(), env.vars.len());
    }

    #[test]
    fn env_var_names() {
        for good in ["A", "_x", "a.b-c", "-dash", ".dot", "A1"] {
            assert!(is_env_var_name(good), "{good}");
        }
        for bad in ["", "1A", "a b", "a=b", "ü"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }
}
