//! From a Pod to CRI requests: the sandbox and container configurations, with the labels and
//! annotations kubelet puts on them so that the agent (and `crictl`) can find a pod's sandboxes
//! and containers again after a restart. Pure functions over the pod spec.

use std::{collections::HashMap, path::Path};

use flotilla_apimachinery::quantity::Quantity as ExactQuantity;
use k8s_openapi::{
    api::core::v1::{Container, Pod},
    apimachinery::pkg::api::resource::Quantity,
};

use super::cri::api;

/// Label with the pod's name on sandboxes and containers (kubelet's).
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// Label with the pod's namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Label with the pod's uid: the key every lookup uses.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// Label with the container's name.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Annotation with the container's restart count (its CRI attempt).
pub const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Annotation saying whether the container is an init container.
pub const ANNOTATION_INIT: &str = "flotilla.dev/init-container";
/// Label marking sandboxes and containers as made by this agent.
pub const LABEL_MANAGED: &str = "flotilla.dev/managed";

/// The cluster DNS settings written into pods' resolv.conf.
#[derive(Clone, Debug, Default)]
pub struct DnsSettings {
    /// The cluster DNS server addresses (empty: no cluster DNS; ClusterFirst pods then get the
    /// node's resolv.conf, as the kubelet falls back to Default).
    pub servers: Vec<String>,
    /// The cluster domain, e.g. cluster.local.
    pub domain: String,
    /// The node's own resolv.conf, for dnsPolicy Default (and its search list, which
    /// ClusterFirst pods get after the cluster's).
    pub host: ResolvConf,
}

/// What a resolv.conf says, as the kubelet reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` addresses, in order.
    pub servers: Vec<String>,
    /// The last `search` line's domains, without trailing dots.
    pub searches: Vec<String>,
    /// `options`, later ones replacing earlier ones of the same name.
    pub options: Vec<String>,
}

/// At most this many nameservers reach a pod: what glibc reads (the kubelet's limit).
pub const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains (the kubelet's limit)...
pub const MAX_SEARCHES: usize = 32;
/// ...of at most this many characters together, spaces included.
pub const MAX_SEARCH_CHARS: usize = 2048;

/// Everything the sandbox config needs besides the pod.
#[derive(Clone, Debug)]
pub struct SandboxContext<'a> {
    /// The cgroup parent of every pod of this node (pods go below it, one per uid).
    pub cgroup_root: &'a str,
    /// Where the pods' log directories go.
    pub log_root: &'a Path,
    /// DNS settings.
    pub dns: &'a DnsSettings,
    /// Sandbox attempt (increases when a dead sandbox is replaced).
    pub attempt: u32,
}

/// The pod's identity as (namespace, name, uid).
pub fn pod_identity(pod: &Pod) -> (String, String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata.uid.clone().unwrap_or_default(),
    )
}

/// The pod's log directory, as kubelet names it: `<root>/<ns>_<name>_<uid>`.
pub fn pod_log_dir(log_root: &Path, pod: &Pod) -> std::path::PathBuf {
    let (namespace, name, uid) = pod_identity(pod);
    log_root.join(format!("{namespace}_{name}_{uid}"))
}

/// Whether the pod uses the node's network namespace.
pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|spec| spec.host_network)
        .unwrap_or(false)
}

/// The RunPodSandbox configuration for `pod`.
pub fn sandbox_config(pod: &Pod, context: &SandboxContext<'_>) -> api::PodSandboxConfig {
    let (namespace, name, uid) = pod_identity(pod);
    let spec = pod.spec.clone().unwrap_or_default();
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.insert(LABEL_POD_NAME.into(), name.clone());
    labels.insert(LABEL_POD_NAMESPACE.into(), namespace.clone());
    labels.insert(LABEL_POD_UID.into(), uid.clone());
    labels.insert(LABEL_MANAGED.into(), "true".into());
    let annotations = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mode = |host: Option<bool>| {
        if host.unwrap_or(false) {
            api::NamespaceMode::Node as i32
        } else {
            api::NamespaceMode::Pod as i32
        }
    };
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|port| {
            let host_port = port.host_port.filter(|p| *p > 0)?;
            Some(api::PortMapping {
                protocol: protocol(port.protocol.as_deref()) as i32,
                container_port: port.container_port,
                host_port,
                host_ip: port.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect();
    let sysctls = spec
        .security_context
        .as_ref()
        .and_then(|sc| sc.sysctls.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name, s.value))
        .collect();
    let hostname = if spec.host_network.unwrap_or(false) {
        String::new()
    } else {
        spec.hostname.clone().unwrap_or_else(|| name.clone())
    };
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name,
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt: context.attempt,
        }),
        hostname,
        log_directory: pod_log_dir(context.log_root, pod).display().to_string(),
        dns_config: Some(dns_config(pod, context.dns)),
        port_mappings,
        labels,
        annotations,
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: pod_cgroup(context.cgroup_root, &uid),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: mode(spec.host_network),
                    pid: if spec.host_pid.unwrap_or(false) {
                        api::NamespaceMode::Node as i32
                    } else if spec.share_process_namespace.unwrap_or(false) {
                        api::NamespaceMode::Pod as i32
                    } else {
                        api::NamespaceMode::Container as i32
                    },
                    ipc: mode(spec.host_ipc),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod's cgroup: one directory per pod below the node's root, as kubelet's cgroupfs driver.
pub fn pod_cgroup(root: &str, uid: &str) -> String {
    format!("{}/pod{uid}", root.trim_end_matches('/'))
}

fn protocol(name: Option<&str>) -> api::Protocol {
    match name {
        Some("UDP") => api::Protocol::Udp,
        Some("SCTP") => api::Protocol::Sctp,
        _ => api::Protocol::Tcp,
    }
}

/// resolv.conf for the pod from its dnsPolicy and dnsConfig, as the kubelet builds it
/// (pkg/kubelet/network/dns): ClusterFirst pods (not on the host network) and
/// ClusterFirstWithHostNet pods get the cluster DNS servers, the search list
/// `<ns>.svc.<domain> svc.<domain> <domain>` followed by the node's, and `ndots:5`; Default
/// pods (and ClusterFirst ones on the host network, or without cluster DNS) get the node's
/// resolv.conf; None starts empty. `dnsConfig` is then appended (duplicates dropped, options
/// replaced by name), and the result cut to the resolver's limits.
pub fn dns_config(pod: &Pod, settings: &DnsSettings) -> api::DnsConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster_first = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !spec.host_network.unwrap_or(false),
        _ => false,
    };
    let mut config = api::DnsConfig::default();
    if policy != "None" {
        if cluster_first && !settings.servers.is_empty() {
            let domain = &settings.domain;
            config.servers = settings.servers.clone();
            config.searches = vec![
                format!("{namespace}.svc.{domain}"),
                format!("svc.{domain}"),
                domain.clone(),
            ];
            append_unique(&mut config.searches, &settings.host.searches);
            config.options = vec!["ndots:5".into()];
        } else {
            config.servers = settings.host.servers.clone();
            config.searches = settings.host.searches.clone();
            config.options = settings.host.options.clone();
        }
    }
    if let Some(extra) = spec.dns_config {
        append_unique(&mut config.servers, &extra.nameservers.unwrap_or_default());
        append_unique(&mut config.searches, &extra.searches.unwrap_or_default());
        for option in extra.options.unwrap_or_default() {
            let Some(name) = option.name else { continue };
            let rendered = match option.value {
                Some(value) => format!("{name}:{value}"),
                None => name.clone(),
            };
            set_option(&mut config.options, rendered);
        }
    }
    config.servers.truncate(MAX_NAMESERVERS);
    config.searches = fit_searches(config.searches);
    config
}

/// Appends the items of `more` that `list` does not have yet.
fn append_unique(list: &mut Vec<String>, more: &[String]) {
    for item in more {
        if !list.contains(item) {
            list.push(item.clone());
        }
    }
}

/// Puts `option` (`name` or `name:value`) in place of an option of the same name, or last.
fn set_option(options: &mut Vec<String>, option: String) {
    let name = |o: &str| o.split(':').next().unwrap_or_default().to_owned();
    let wanted = name(&option);
    match options.iter_mut().find(|o| name(o) == wanted) {
        Some(existing) => *existing = option,
        None => options.push(option),
    }
}

/// The first search domains that fit the resolver's limits (count and length).
fn fit_searches(searches: Vec<String>) -> Vec<String> {
    let mut chars = 0;
    searches
        .into_iter()
        .take(MAX_SEARCHES)
        .take_while(|search| {
            chars += search.len() + usize::from(chars > 0);
            chars <= MAX_SEARCH_CHARS
        })
        .collect()
}

/// Reads the node's resolv.conf as the kubelet does: comment lines (`#`, `;`) skipped, every
/// `nameserver`, the last `search` line (trailing dots dropped, `.` skipped), every `options`
/// word.
pub fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf::default();
    for line in text.lines() {
        if line.starts_with(['#', ';']) {
            continue;
        }
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => conf.servers.extend(words.next().map(str::to_owned)),
            Some("search") => {
                conf.searches = words
                    .filter(|w| *w != ".")
                    .map(|w| w.trim_end_matches('.').to_owned())
                    .collect();
            }
            Some("options") => {
                for option in words {
                    set_option(&mut conf.options, option.to_owned());
                }
            }
            _ => {}
        }
    }
    conf
}

/// Everything a container config needs besides the spec.
#[derive(Clone, Debug)]
pub struct ContainerContext {
    /// The container's environment, already resolved.
    pub env: Vec<(String, String)>,
    /// Its mounts (volumes).
    pub mounts: Vec<api::Mount>,
    /// Its attempt (= restart count).
    pub attempt: u32,
    /// Whether it is an init container.
    pub init: bool,
}

/// The CreateContainer configuration for one of the pod's containers.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    context: ContainerContext,
) -> api::ContainerConfig {
    let (namespace, name, uid) = pod_identity(pod);
    let mut labels = HashMap::new();
    labels.insert(LABEL_POD_NAME.to_owned(), name);
    labels.insert(LABEL_POD_NAMESPACE.to_owned(), namespace);
    labels.insert(LABEL_POD_UID.to_owned(), uid);
    labels.insert(LABEL_CONTAINER_NAME.to_owned(), container.name.clone());
    labels.insert(LABEL_MANAGED.to_owned(), "true".to_owned());
    let mut annotations = HashMap::new();
    annotations.insert(
        ANNOTATION_RESTART_COUNT.to_owned(),
        context.attempt.to_string(),
    );
    annotations.insert(ANNOTATION_INIT.to_owned(), context.init.to_string());
    let security = container.security_context.clone().unwrap_or_default();
    let pod_security = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let run_as_user = security.run_as_user.or(pod_security.run_as_user);
    let run_as_group = security.run_as_group.or(pod_security.run_as_group);
    let capabilities = security.capabilities.clone().map(|caps| api::Capability {
        add_capabilities: caps.add.unwrap_or_default(),
        drop_capabilities: caps.drop.unwrap_or_default(),
        ..Default::default()
    });
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: container.name.clone(),
            attempt: context.attempt,
        }),
        image: Some(api::ImageSpec {
            image: container.image.clone().unwrap_or_default(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command: container.command.clone().unwrap_or_default(),
        args: container.args.clone().unwrap_or_default(),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: context
            .env
            .into_iter()
            .map(|(key, value)| api::KeyValue { key, value })
            .collect(),
        mounts: context.mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", container.name, context.attempt),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(resources(container)),
            security_context: Some(api::LinuxContainerSecurityContext {
                capabilities,
                privileged: security.privileged.unwrap_or(false),
                run_as_user: run_as_user.map(|value| api::Int64Value { value }),
                run_as_group: run_as_group.map(|value| api::Int64Value { value }),
                readonly_rootfs: security.read_only_root_filesystem.unwrap_or(false),
                supplemental_groups: pod_security.supplemental_groups.unwrap_or_default(),
                no_new_privs: !security.allow_privilege_escalation.unwrap_or(true),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// Period of the CFS quota (kubelet's default, 100 ms).
const CPU_PERIOD_US: i64 = 100_000;

/// cgroup limits from the container's requests and limits, as kubelet computes them: shares from
/// the CPU request (2 minimum), quota from the CPU limit, memory limit in bytes.
pub fn resources(container: &Container) -> api::LinuxContainerResources {
    let requirements = container.resources.clone().unwrap_or_default();
    let limits = requirements.limits.unwrap_or_default();
    let requests = requirements.requests.unwrap_or_default();
    let cpu_request = requests
        .get("cpu")
        .or_else(|| limits.get("cpu"))
        .and_then(millicores);
    let cpu_limit = limits.get("cpu").and_then(millicores);
    let memory_limit = limits.get("memory").and_then(bytes);
    api::LinuxContainerResources {
        cpu_shares: cpu_request.map_or(2, |m| (m * 1024 / 1000).max(2)),
        cpu_period: if cpu_limit.is_some() {
            CPU_PERIOD_US
        } else {
            0
        },
        cpu_quota: cpu_limit.map_or(0, |m| (m * CPU_PERIOD_US / 1000).max(1000)),
        memory_limit_in_bytes: memory_limit.unwrap_or(0),
        ..Default::default()
    }
}

/// A CPU quantity in millicores ("500m" -> 500, "2" -> 2000), rounded up as kubelet does.
pub fn millicores(quantity: &Quantity) -> Option<i64> {
    ExactQuantity::parse(&quantity.0)
        .ok()
        .map(ExactQuantity::milli_value)
}

/// A memory quantity in bytes ("128Mi", "1G", "500"), rounded up.
pub fn bytes(quantity: &Quantity) -> Option<i64> {
    ExactQuantity::parse(&quantity.0)
        .ok()
        .map(ExactQuantity::value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(extra: serde_json::Value) -> Pod {
        let mut value = json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "testapp:v1"}]},
        });
        if let (Some(spec), Some(extra)) = (value["spec"].as_object_mut(), extra.as_object()) {
            for (key, item) in extra {
                spec.insert(key.clone(), item.clone());
            }
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn quantities() {
        assert_eq!(millicores(&Quantity("500m".into())), Some(500));
        assert_eq!(millicores(&Quantity("2".into())), Some(2000));
        assert_eq!(millicores(&Quantity("0.1".into())), Some(100));
        assert_eq!(bytes(&Quantity("128Mi".into())), Some(134_217_728));
        assert_eq!(bytes(&Quantity("1G".into())), Some(1_000_000_000));
        assert_eq!(bytes(&Quantity("4096".into())), Some(4096));
    }

    #[test]
    fn resources_follow_kubelet() {
        let container: Container = serde_json::from_value(json!({
            "name": "c", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}
        }))
        .unwrap();
        let r = resources(&container);
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.memory_limit_in_bytes, 67_108_864);
        let bare: Container = serde_json::from_value(json!({"name": "c"})).unwrap();
        assert_eq!(resources(&bare).cpu_shares, 2);
        assert_eq!(resources(&bare).cpu_quota, 0);
    }

    #[test]
    fn cluster_first_dns() {
        let settings = DnsSettings {
            servers: vec!["10.96.0.10".into()],
            domain: "cluster.local".into(),
            host: ResolvConf {
                servers: vec!["192.168.77.1".into()],
                searches: vec!["corp.example".into(), "cluster.local".into()],
                options: vec!["edns0".into()],
            },
        };
        let config = dns_config(&pod(json!({})), &settings);
        assert_eq!(config.servers, ["10.96.0.10"]);
        assert_eq!(
            config.searches,
            [
                "prod.svc.cluster.local",
                "svc.cluster.local",
                "cluster.local",
                "corp.example"
            ]
        );
        assert_eq!(config.options, ["ndots:5"]);
        let host = dns_config(&pod(json!({"dnsPolicy": "Default"})), &settings);
        assert_eq!(host.servers, ["192.168.77.1"]);
        assert_eq!(host.searches, ["corp.example", "cluster.local"]);
        assert_eq!(host.options, ["edns0"]);
        let host_network = dns_config(&pod(json!({"hostNetwork": true})), &settings);
        assert_eq!(host_network.servers, ["192.168.77.1"]);
        let with_host_net = dns_config(
            &pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"})),
            &settings,
        );
        assert_eq!(with_host_net.servers, ["10.96.0.10"]);
        let custom = dns_config(
            &pod(
                json!({"dnsPolicy": "None", "dnsConfig": {"nameservers": ["1.2.3.4"], "options": [{"name": "ndots", "value": "2"}]}}),
            ),
            &settings,
        );
        assert_eq!(custom.servers, ["1.2.3.4"]);
        assert_eq!(custom.options, ["ndots:2"]);
        let merged = dns_config(
            &pod(
                json!({"dnsConfig": {"nameservers": ["10.96.0.10", "1.1.1.1", "8.8.8.8", "9.9.9.9"], "searches": ["svc.cluster.local", "x.example"], "options": [{"name": "ndots", "value": "1"}, {"name": "edns0"}]}}),
            ),
            &settings,
        );
        assert_eq!(merged.servers, ["10.96.0.10", "1.1.1.1", "8.8.8.8"]);
        assert_eq!(
            merged.searches.last().map(String::as_str),
            Some("x.example")
        );
        assert_eq!(merged.options, ["ndots:1", "edns0"]);
    }

    #[test]
    fn without_cluster_dns_cluster_first_pods_get_the_node_resolv_conf() {
        let settings = DnsSettings {
            domain: "cluster.local".into(),
            host: ResolvConf {
                servers: vec!["192.168.77.1".into()],
                ..ResolvConf::default()
            },
            ..DnsSettings::default()
        };
        let config = dns_config(&pod(json!({})), &settings);
        assert_eq!(config.servers, ["192.168.77.1"]);
        assert!(config.options.is_empty());
    }

    #[test]
    fn search_list_fits_the_resolver() {
        let many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        assert_eq!(fit_searches(many).len(), MAX_SEARCHES);
        let long: Vec<String> = (0..5).map(|i| format!("{i}{}", "a".repeat(600))).collect();
        let fitted = fit_searches(long);
        assert_eq!(fitted.len(), 3);
        assert!(fitted.iter().map(|s| s.len() + 1).sum::<usize>() - 1 <= MAX_SEARCH_CHARS);
    }

    #[test]
    fn sandbox_carries_identity_and_cgroup() {
        let settings = DnsSettings::default();
        let config = sandbox_config(
            &pod(json!({"hostNetwork": true})),
            &SandboxContext {
                cgroup_root: "/flotilla/n1",
                log_root: Path::new("/var/log/pods"),
                dns: &settings,
                attempt: 2,
            },
        );
        assert_eq!(config.labels[LABEL_POD_UID], "u1");
        assert_eq!(config.labels["app"], "web");
        assert_eq!(config.log_directory, "/var/log/pods/prod_web_u1");
        let linux = config.linux.unwrap();
        assert_eq!(linux.cgroup_parent, "/flotilla/n1/podu1");
        assert_eq!(
            linux
                .security_context
                .unwrap()
                .namespace_options
                .unwrap()
                .network,
            api::NamespaceMode::Node as i32
        );
        assert_eq!(config.metadata.unwrap().attempt, 2);
    }

    #[test]
    fn resolv_conf() {
        let conf = parse_resolv_conf(
            "# x\nnameserver 10.0.0.2\nsearch old.example\nsearch a.example. b.example .\n\
             options ndots:2 edns0\n; nameserver 10.0.0.9\noptions ndots:3\nnameserver 10.0.0.3\n",
        );
        assert_eq!(conf.servers, ["10.0.0.2", "10.0.0.3"]);
        assert_eq!(conf.searches, ["a.example", "b.example"]);
        assert_eq!(conf.options, ["ndots:3", "edns0"]);
    }
}
