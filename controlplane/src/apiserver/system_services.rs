//! Services the control plane keeps itself, as kube-apiserver keeps `default/kubernetes`: the
//! `kubernetes` Service pointing at the API server and, when the control plane serves the
//! cluster DNS, `kube-system/kube-dns` pointing at that server. Each is a Service with a fixed
//! ClusterIP and no selector (so the EndpointSlice controller leaves it alone), an Endpoints
//! object (marked not to be mirrored) and one EndpointSlice managed by the API server.
//!
//! They are reconciled when the API server starts and then every [`RECONCILE_PERIOD`] (upstream's
//! kubernetes-service controller also runs every 10 s): a deleted object comes back, changed
//! ports and addresses are put right. What the objects should be is decided by plain functions
//! ([`SystemService::service`], [`SystemService::endpoints`], [`SystemService::slice`],
//! [`covers`]); the reconciler only reads and writes.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use serde_json::{Value, json};

use super::{
    ApiServer,
    api_server_leases::{self, LiveApiServer},
    handlers::{DeleteOptions, Scope},
    query::Query,
    registry,
    status::ApiError,
};

/// How often the system Services are checked after start-up.
pub const RECONCILE_PERIOD: Duration = Duration::from_secs(10);

/// The `endpointslice.kubernetes.io/managed-by` value of the slices the API server writes.
pub const MANAGED_BY: &str = "flotilla-apiserver";

/// The `app.kubernetes.io/managed-by` label on the `kube-dns` objects the control plane owns (so
/// it only ever removes its own, never a DNS an operator deployed under that name).
pub const DNS_MANAGED_BY: &str = "flotilla-controlplane";

/// Namespace and name of the cluster DNS Service, as in every Kubernetes distribution.
pub const KUBE_DNS: (&str, &str) = ("kube-system", "kube-dns");

/// One port of a system Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemPort {
    /// The port's name (also the Endpoints/EndpointSlice port's name).
    pub name: &'static str,
    /// TCP or UDP.
    pub protocol: &'static str,
    /// The Service port.
    pub port: u16,
    /// Where the endpoint serves it.
    pub target_port: u16,
}

/// A Service the control plane maintains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemService {
    /// Its namespace.
    pub namespace: &'static str,
    /// Its name.
    pub name: &'static str,
    /// The Service's labels.
    pub labels: Value,
    /// Its fixed ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// Its ports.
    pub ports: Vec<SystemPort>,
    /// The endpoints' addresses: every live API server serving it (see [`super::api_server_leases`]);
    /// none when they listen on loopback, which pods cannot reach.
    pub endpoints: Vec<IpAddr>,
}

/// Why a system Service could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum SystemServiceError {
    /// Another Service holds the wanted ClusterIP.
    #[error(
        "the ClusterIP {ip} for the Service {namespace}/{name} is taken by {holder}; delete that \
         Service (kubectl -n {holder_namespace} delete service {holder_name}) or pick another \
         address{hint}"
    )]
    IpTaken {
        /// The wanted address.
        ip: Ipv4Addr,
        /// The system Service's namespace.
        namespace: &'static str,
        /// The system Service's name.
        name: &'static str,
        /// The holder, `namespace/name`.
        holder: String,
        /// The holder's namespace.
        holder_namespace: String,
        /// The holder's name.
        holder_name: String,
        /// Which flag picks the address, if any.
        hint: &'static str,
    },
    /// The Service exists with another ClusterIP (which cannot be changed in place).
    #[error(
        "the Service {namespace}/{name} has the ClusterIP {current}, not {wanted}; a ClusterIP \
         cannot change, so delete it (kubectl -n {namespace} delete service {name}) and it is \
         recreated with {wanted}, or keep {current}{hint}"
    )]
    OtherIp {
        /// The system Service's namespace.
        namespace: &'static str,
        /// The system Service's name.
        name: &'static str,
        /// Its current ClusterIP.
        current: String,
        /// The wanted one.
        wanted: Ipv4Addr,
        /// Which flag picks the address, if any.
        hint: &'static str,
    },
    /// The API refused a read or write.
    #[error("{action} the {resource} {namespace}/{name}: {error}")]
    Api {
        /// What was being done.
        action: &'static str,
        /// The resource (plural).
        resource: &'static str,
        /// The namespace.
        namespace: &'static str,
        /// The name.
        name: &'static str,
        /// The API's error (not an `Error` type, so not a source).
        error: ApiError,
    },
}

impl SystemService {
    /// `default/kubernetes`: HTTPS 443 to the API server at `advertise`.
    pub fn kubernetes(cluster_ip: Ipv4Addr, advertise: SocketAddr) -> Self {
        Self {
            namespace: "default",
            name: "kubernetes",
            labels: json!({"component": "apiserver", "provider": "kubernetes"}),
            cluster_ip,
            ports: vec![SystemPort {
                name: "https",
                protocol: "TCP",
                port: 443,
                target_port: advertise.port(),
            }],
            endpoints: reachable(advertise.ip()).into_iter().collect(),
        }
    }

    /// `kube-system/kube-dns`: DNS over UDP and TCP (port 53, named `dns` and `dns-tcp` as
    /// CoreDNS's Service names them) to the cluster DNS server at `server`.
    pub fn kube_dns(cluster_ip: Ipv4Addr, server: SocketAddr) -> Self {
        Self {
            namespace: KUBE_DNS.0,
            name: KUBE_DNS.1,
            labels: json!({
                "k8s-app": "kube-dns",
                "kubernetes.io/cluster-service": "true",
                "kubernetes.io/name": "KubeDNS",
                "app.kubernetes.io/managed-by": DNS_MANAGED_BY,
            }),
            cluster_ip,
            ports: vec![
                SystemPort {
                    name: "dns",
                    protocol: "UDP",
                    port: 53,
                    target_port: server.port(),
                },
                SystemPort {
                    name: "dns-tcp",
                    protocol: "TCP",
                    port: 53,
                    target_port: server.port(),
                },
            ],
            endpoints: reachable(server.ip()).into_iter().collect(),
        }
    }

    fn hint(&self) -> &'static str {
        if (self.namespace, self.name) == KUBE_DNS {
            " (--cluster-dns)"
        } else {
            ""
        }
    }

    /// The Service as it should be.
    pub fn service(&self) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| json!({"name": p.name, "port": p.port, "protocol": p.protocol, "targetPort": p.target_port}))
            .collect();
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": self.labels},
            "spec": {"clusterIP": self.cluster_ip.to_string(), "type": "ClusterIP",
                     "sessionAffinity": "None", "ports": ports},
        })
    }

    fn endpoint_ports(&self) -> Vec<Value> {
        self.ports
            .iter()
            .map(|p| json!({"name": p.name, "port": p.target_port, "protocol": p.protocol}))
            .collect()
    }

    /// The Endpoints object as it should be (None: no reachable endpoint).
    pub fn endpoints(&self) -> Option<Value> {
        if self.endpoints.is_empty() {
            return None;
        }
        let mut labels = self.labels.clone();
        labels["endpointslice.kubernetes.io/skip-mirror"] = json!("true");
        let addresses: Vec<Value> = self
            .endpoints
            .iter()
            .map(|ip| json!({"ip": ip.to_string()}))
            .collect();
        Some(json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": labels},
            "subsets": [{"addresses": addresses, "ports": self.endpoint_ports()}],
        }))
    }

    /// The EndpointSlice as it should be (None: no reachable endpoint).
    pub fn slice(&self) -> Option<Value> {
        let first = self.endpoints.first()?;
        let mut labels = self.labels.clone();
        labels["kubernetes.io/service-name"] = json!(self.name);
        labels["endpointslice.kubernetes.io/managed-by"] = json!(MANAGED_BY);
        let endpoints: Vec<Value> = self
            .endpoints
            .iter()
            .map(|ip| {
                json!({"addresses": [ip.to_string()],
                       "conditions": {"ready": true, "serving": true, "terminating": false}})
            })
            .collect();
        Some(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": labels},
            "addressType": if first.is_ipv4() { "IPv4" } else { "IPv6" },
            "endpoints": endpoints,
            "ports": self.endpoint_ports(),
        }))
    }
}

/// A failure finding out what the system Services should be.
fn listing_failed(error: ApiError) -> SystemServiceError {
    SystemServiceError::Api {
        action: "listing",
        resource: "services",
        namespace: "",
        name: "",
        error,
    }
}

/// An address pods can reach, or None for loopback and unspecified ones.
pub(super) fn reachable(ip: IpAddr) -> Option<IpAddr> {
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Whether `current` already says everything `desired` says: every field of `desired` is in
/// `current` with the same value (objects compared field by field, arrays element by element),
/// so fields the server filled in (uid, defaults) do not count as differences.
pub fn covers(current: &Value, desired: &Value) -> bool {
    match (current, desired) {
        (Value::Object(current), Value::Object(desired)) => desired.iter().all(|(key, value)| {
            current
                .get(key)
                .is_some_and(|current| covers(current, value))
        }),
        (Value::Array(current), Value::Array(desired)) => {
            current.len() == desired.len()
                && current
                    .iter()
                    .zip(desired)
                    .all(|(current, desired)| covers(current, desired))
        }
        _ => current == desired,
    }
}

/// `current` with the fields of `desired` other than metadata written over it, and its labels
/// merged in: what an update to the desired state writes.
fn updated(current: &Value, desired: &Value) -> Value {
    let mut object = current.clone();
    if let (Some(object), Some(desired)) = (object.as_object_mut(), desired.as_object()) {
        for (key, value) in desired {
            if key != "metadata" {
                object.insert(key.clone(), value.clone());
            }
        }
    }
    if let Some(labels) = desired["metadata"]["labels"].as_object() {
        if !object["metadata"]["labels"].is_object() {
            object["metadata"]["labels"] = json!({});
        }
        for (key, value) in labels {
            object["metadata"]["labels"][key] = value.clone();
        }
    }
    object
}

/// A Service with its spec put right: ports, type and (no) selector as desired, everything
/// else (ClusterIP, defaults) kept.
fn updated_service(current: &Value, desired: &Value) -> Value {
    let mut object = updated(current, &json!({"metadata": desired["metadata"]}));
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("selector");
        for field in ["type", "ports", "sessionAffinity"] {
            spec.insert(field.to_owned(), desired["spec"][field].clone());
        }
    }
    object
}

/// Whether the stored Service needs `updated_service`.
fn service_differs(current: &Value, desired: &Value) -> bool {
    let selector = current["spec"]["selector"]
        .as_object()
        .is_some_and(|s| !s.is_empty());
    selector
        || !covers(
            current,
            &json!({"metadata": {"labels": desired["metadata"]["labels"]},
                    "spec": {"type": desired["spec"]["type"], "ports": desired["spec"]["ports"]}}),
        )
}

fn scope(group: &str, plural: &str, namespace: &str) -> Result<Scope, ApiError> {
    let resource = registry::builtin(group, plural)
        .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
    Ok(Scope {
        resource,
        namespace: Some(namespace.to_owned()),
    })
}

impl ApiServer {
    /// The Services this control plane keeps: `kubernetes` (with IPAM) and `kube-dns` (with
    /// cluster DNS), their endpoints being this server and the other live ones in `live`
    /// (without this one when `include_self` is false: it is stopping).
    pub(crate) fn system_services(
        &self,
        live: &[LiveApiServer],
        include_self: bool,
    ) -> Result<Vec<SystemService>, ApiError> {
        use crate::ipam::ranges::Range as _;
        let Some(ipam) = self.ipam.clone() else {
            return Ok(Vec::new());
        };
        let cluster_ip = ipam
            .service_ips
            .range()
            .item(0)
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| ApiError::internal("the service CIDR has no addresses"))?;
        let advertise: SocketAddr = self.advertise.parse().map_err(|_| {
            ApiError::internal(format!(
                "cannot parse the advertised address {}",
                self.advertise
            ))
        })?;
        let own_ip = self.own_record().map(|own| own.ip);
        let own = own_ip.filter(|_| include_self);
        let others: Vec<LiveApiServer> = live
            .iter()
            .filter(|server| Some(server.ip) != own_ip)
            .copied()
            .collect();
        let mut kubernetes = SystemService::kubernetes(cluster_ip, advertise);
        kubernetes.endpoints =
            api_server_leases::endpoints(&others, own, |s| s.api_port == advertise.port());
        let mut services = vec![kubernetes];
        if let Some((ip, server)) = self.cluster_dns {
            let mut kube_dns = SystemService::kube_dns(ip, server);
            kube_dns.endpoints =
                api_server_leases::endpoints(&others, own, |s| s.dns_port == Some(server.port()));
            services.push(kube_dns);
        }
        Ok(services)
    }

    /// Renews this API server's record and puts every system Service, its Endpoints and
    /// EndpointSlice in place; the first failure ends the pass.
    pub async fn reconcile_system_services(&self) -> Result<(), SystemServiceError> {
        self.renew_own_record().await.map_err(listing_failed)?;
        self.reconcile_system_services_as(true).await
    }

    /// Takes this API server out of the system Services' endpoints: it is stopping. Failures
    /// are only logged (the record then expires within its TTL).
    pub async fn withdraw_from_system_services(&self) {
        self.delete_own_record().await;
        if let Err(err) = self.reconcile_system_services_as(false).await {
            tracing::warn!("taking this API server out of the system Services: {err}");
        }
    }

    async fn reconcile_system_services_as(
        &self,
        include_self: bool,
    ) -> Result<(), SystemServiceError> {
        let live = self.live_api_servers().await.map_err(listing_failed)?;
        let services = self
            .system_services(&live, include_self)
            .map_err(listing_failed)?;
        for service in &services {
            self.reconcile_system_service(service).await?;
        }
        // Another live server may still serve the cluster DNS behind kube-dns.
        if self.cluster_dns.is_none() && live.iter().all(|server| server.dns_port.is_none()) {
            self.retire_kube_dns().await?;
        }
        Ok(())
    }

    /// Reconciles every [`RECONCILE_PERIOD`] until the task is dropped; failures are logged.
    pub async fn reconcile_system_services_forever(self) {
        let mut tick = tokio::time::interval(RECONCILE_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(err) = self.reconcile_system_services().await {
                tracing::warn!("keeping the system Services: {err}");
            }
        }
    }

    async fn reconcile_system_service(
        &self,
        system: &SystemService,
    ) -> Result<(), SystemServiceError> {
        let api = |action, resource| {
            move |error| SystemServiceError::Api {
                action,
                resource,
                namespace: system.namespace,
                name: system.name,
                error,
            }
        };
        let desired = system.service();
        let services =
            scope("", "services", system.namespace).map_err(api("finding", "services"))?;
        match self.get_object(&services, system.name).await {
            Ok(current) => {
                let ip = current.object["spec"]["clusterIP"].as_str().unwrap_or("");
                if ip != system.cluster_ip.to_string() {
                    return Err(SystemServiceError::OtherIp {
                        namespace: system.namespace,
                        name: system.name,
                        current: ip.to_owned(),
                        wanted: system.cluster_ip,
                        hint: system.hint(),
                    });
                }
                if service_differs(&current.object, &desired) {
                    self.write_update(
                        &services,
                        system.name,
                        &Query::default(),
                        |current| Ok(updated_service(&current.object, &desired)),
                        None,
                    )
                    .await
                    .map_err(api("updating", "services"))?;
                    tracing::info!(
                        namespace = system.namespace,
                        name = system.name,
                        "put the Service's ports right"
                    );
                }
            }
            Err(err) if err.code == 404 => {
                match self
                    .create_object(&services, desired, &Query::default())
                    .await
                {
                    Ok(_) => tracing::info!(
                        namespace = system.namespace,
                        name = system.name,
                        ip = %system.cluster_ip,
                        "created the Service"
                    ),
                    Err(err) if err.code == 409 => {}
                    Err(err) if err.code == 422 && err.message.contains("already allocated") => {
                        match self.ip_taken(system).await {
                            // Still held for the deleted Service itself: its release runs in
                            // the background; the next pass creates it.
                            SystemServiceError::IpTaken { holder, .. }
                                if holder == format!("{}/{}", system.namespace, system.name) =>
                            {
                                tracing::debug!(
                                    namespace = system.namespace,
                                    name = system.name,
                                    "the ClusterIP is not released yet"
                                );
                                return Ok(());
                            }
                            taken => return Err(taken),
                        }
                    }
                    Err(err) => return Err(api("creating", "services")(err)),
                }
            }
            Err(err) => return Err(api("reading", "services")(err)),
        }
        for (group, plural, desired) in [
            ("", "endpoints", system.endpoints()),
            ("discovery.k8s.io", "endpointslices", system.slice()),
        ] {
            // Endpoints may not be loopback addresses (pods could not reach them); a server
            // listening on loopback has a Service without endpoints.
            let Some(desired) = desired else {
                continue;
            };
            let scope = scope(group, plural, system.namespace).map_err(api("finding", plural))?;
            match self.get_object(&scope, system.name).await {
                Ok(current) if covers(&current.object, &desired) => {}
                Ok(_) => {
                    self.write_update(
                        &scope,
                        system.name,
                        &Query::default(),
                        |current| Ok(updated(&current.object, &desired)),
                        None,
                    )
                    .await
                    .map_err(api("updating", plural))?;
                    tracing::info!(
                        namespace = system.namespace,
                        name = system.name,
                        "updated the Service's {plural}"
                    );
                }
                Err(err) if err.code == 404 => {
                    match self.create_object(&scope, desired, &Query::default()).await {
                        Ok(_) => tracing::info!(
                            namespace = system.namespace,
                            name = system.name,
                            "created the Service's {plural}"
                        ),
                        Err(err) if err.code == 409 => {}
                        Err(err) => return Err(api("creating", plural)(err)),
                    }
                }
                Err(err) => return Err(api("reading", plural)(err)),
            }
        }
        Ok(())
    }

    /// The error for a ClusterIP another Service holds, naming the holder.
    async fn ip_taken(&self, system: &SystemService) -> SystemServiceError {
        let ip = system.cluster_ip.to_string();
        let holder = match &self.ipam {
            Some(ipam) => ipam
                .service_ips
                .allocations()
                .await
                .ok()
                .and_then(|all| all.into_iter().find(|(item, _)| *item == ip))
                .map(|(_, owner)| owner),
            None => None,
        }
        .unwrap_or_else(|| "another Service".to_owned());
        let (holder_namespace, holder_name) = holder
            .split_once('/')
            .map_or(("<namespace>", "<name>"), |(ns, name)| (ns, name));
        SystemServiceError::IpTaken {
            ip: system.cluster_ip,
            namespace: system.namespace,
            name: system.name,
            holder_namespace: holder_namespace.to_owned(),
            holder_name: holder_name.to_owned(),
            holder,
            hint: system.hint(),
        }
    }

    /// Without cluster DNS, removes the `kube-dns` objects an earlier run with it created (only
    /// ours: a DNS an operator deployed under that name is left alone), so pods are not sent
    /// to a server that no longer answers.
    async fn retire_kube_dns(&self) -> Result<(), SystemServiceError> {
        let (namespace, name) = KUBE_DNS;
        for (group, plural) in [
            ("discovery.k8s.io", "endpointslices"),
            ("", "endpoints"),
            ("", "services"),
        ] {
            let api = |action| {
                move |error| SystemServiceError::Api {
                    action,
                    resource: plural,
                    namespace,
                    name,
                    error,
                }
            };
            let scope = scope(group, plural, namespace).map_err(api("finding"))?;
            let current = match self.get_object(&scope, name).await {
                Ok(current) => current,
                Err(err) if err.code == 404 => continue,
                Err(err) => return Err(api("reading")(err)),
            };
            if current.object["metadata"]["labels"]["app.kubernetes.io/managed-by"]
                != DNS_MANAGED_BY
            {
                continue;
            }
            match self
                .delete_object(&scope, name, &DeleteOptions::default())
                .await
            {
                Ok(_) => tracing::info!(
                    "removed the {plural} {namespace}/{name}: the control plane no longer serves \
                     the cluster DNS (--cluster-dns)"
                ),
                Err(err) if err.code == 404 => {}
                Err(err) => return Err(api("deleting")(err)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns() -> SystemService {
        SystemService::kube_dns(
            Ipv4Addr::new(10, 96, 0, 10),
            "192.168.78.254:53".parse().unwrap(),
        )
    }

    #[test]
    fn kube_dns_has_the_upstream_shape() {
        let service = dns().service();
        assert_eq!(service["metadata"]["namespace"], "kube-system");
        assert_eq!(service["metadata"]["labels"]["k8s-app"], "kube-dns");
        assert_eq!(service["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(
            service["spec"]["ports"],
            json!([
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ])
        );
        assert!(service["spec"].get("selector").is_none());
        let slice = dns().slice().unwrap();
        assert_eq!(
            slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
            MANAGED_BY
        );
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "kube-dns"
        );
        assert_eq!(
            slice["endpoints"][0]["addresses"],
            json!(["192.168.78.254"])
        );
        let endpoints = dns().endpoints().unwrap();
        assert_eq!(
            endpoints["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"],
            "true"
        );
    }

    #[test]
    fn loopback_servers_have_no_endpoints() {
        let local = SystemService::kube_dns(
            Ipv4Addr::new(10, 96, 0, 10),
            "127.0.0.1:5353".parse().unwrap(),
        );
        assert!(local.slice().is_none() && local.endpoints().is_none());
        assert_eq!(local.service()["spec"]["ports"][0]["targetPort"], 5353);
        let api =
            SystemService::kubernetes(Ipv4Addr::new(10, 96, 0, 1), "0.0.0.0:6443".parse().unwrap());
        assert!(api.slice().is_none());
    }

    #[test]
    fn covers_ignores_what_the_server_added() {
        let desired = dns().slice().unwrap();
        let mut stored = desired.clone();
        stored["metadata"]["uid"] = json!("u1");
        stored["metadata"]["labels"]["extra"] = json!("x");
        stored["endpoints"][0]["nodeName"] = json!("n1");
        assert!(covers(&stored, &desired));
        stored["endpoints"][0]["addresses"] = json!(["192.168.78.1"]);
        assert!(!covers(&stored, &desired));
        let fixed = updated(&stored, &desired);
        assert!(covers(&fixed, &desired));
        assert_eq!(fixed["metadata"]["uid"], "u1");
    }

    #[test]
    fn a_changed_service_gets_its_ports_back_and_keeps_its_ip() {
        let desired = dns().service();
        let mut stored = desired.clone();
        stored["spec"]["clusterIPs"] = json!(["10.96.0.10"]);
        stored["spec"]["ports"][0]["targetPort"] = json!(53);
        assert!(!service_differs(&stored, &desired));
        stored["spec"]["selector"] = json!({"app": "coredns"});
        stored["spec"]["ports"] = json!([{"name": "dns", "port": 5353, "protocol": "UDP"}]);
        assert!(service_differs(&stored, &desired));
        let fixed = updated_service(&stored, &desired);
        assert!(!service_differs(&fixed, &desired));
        assert_eq!(fixed["spec"]["clusterIPs"], json!(["10.96.0.10"]));
    }
}
