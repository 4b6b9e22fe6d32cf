//! What the API server allocates for objects, as kube-apiserver's service and node registries
//! do: a ClusterIP and NodePorts for each Service, a podCIDR for each Node. Allocations happen
//! before the object is stored, are released when storing fails or the object is deleted, and
//! are kept across updates (a ClusterIP and a node's podCIDR never change once set).

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    ApiServer,
    resources::Resource,
    status::{ApiError, FieldCause},
};
use crate::ipam::{
    IpamError, Pool, PortRange,
    ranges::{ServiceIps, Subnets},
};

/// The pools of one cluster.
#[derive(Debug, Clone)]
pub struct Ipam {
    /// Service ClusterIPs.
    pub service_ips: Pool<ServiceIps>,
    /// Service NodePorts.
    pub node_ports: Pool<PortRange>,
    /// Node podCIDRs.
    pub pod_cidrs: Pool<Subnets>,
}

impl Ipam {
    /// Returns `item` to the pool of `kind`.
    pub async fn release_item(&self, kind: PoolKind, item: &str) -> Result<(), IpamError> {
        match kind {
            PoolKind::ServiceIp => self.service_ips.release(item).await,
            PoolKind::NodePort => self.node_ports.release(item).await,
            PoolKind::PodCidr => self.pod_cidrs.release(item).await,
        }
    }

    /// Allocates exactly `item` from the pool of `kind` for `owner`.
    pub async fn allocate_item(
        &self,
        kind: PoolKind,
        item: &str,
        owner: &str,
    ) -> Result<(), IpamError> {
        match kind {
            PoolKind::ServiceIp => self.service_ips.allocate(item, owner).await,
            PoolKind::NodePort => self.node_ports.allocate(item, owner).await,
            PoolKind::PodCidr => self.pod_cidrs.allocate(item, owner).await,
        }
    }
}

/// Which pool an allocation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Service ClusterIPs.
    ServiceIp,
    /// NodePorts.
    NodePort,
    /// Node podCIDRs.
    PodCidr,
}

/// Items allocated (or to release) for one write.
pub type Allocations = Vec<(PoolKind, String)>;

impl ApiServer {
    /// Allocates what a new object needs and writes it into the object.
    pub(crate) async fn allocate_for_create(
        &self,
        resource: &Resource,
        object: &mut Value,
    ) -> Result<Allocations, ApiError> {
        self.allocate(resource, None, object).await
    }

    /// Allocates what an update adds; returns (new allocations, allocations the update frees).
    pub(crate) async fn allocate_for_update(
        &self,
        resource: &Resource,
        old: &Value,
        object: &mut Value,
    ) -> Result<(Allocations, Allocations), ApiError> {
        let added = self.allocate(resource, Some(old), object).await?;
        let before = held(resource, old);
        let after = held(resource, object);
        let freed = before
            .into_iter()
            .filter(|item| !after.contains(item))
            .collect();
        Ok((added, freed))
    }

    /// Returns items to their pools (in the background; failures are logged).
    pub(crate) fn release(&self, allocations: Allocations) {
        if allocations.is_empty() {
            return;
        }
        let Some(ipam) = self.ipam.clone() else {
            return;
        };
        tokio::spawn(async move {
            for (kind, item) in allocations {
                if let Err(err) = ipam.release_item(kind, &item).await {
                    tracing::warn!(%item, "releasing an allocation failed: {err}");
                }
            }
        });
    }

    /// Releases everything a deleted object held.
    pub(crate) fn release_object(&self, resource: &Resource, object: &Value) {
        self.release(held(resource, object));
    }

    async fn allocate(
        &self,
        resource: &Resource,
        old: Option<&Value>,
        object: &mut Value,
    ) -> Result<Allocations, ApiError> {
        let Some(ipam) = self.ipam.clone() else {
            return Ok(Vec::new());
        };
        let mut allocated = Vec::new();
        let result = match (resource.group, resource.kind) {
            ("", "Service") => allocate_service(&ipam, old, object, &mut allocated).await,
            ("", "Node") => allocate_node(&ipam, old, object, &mut allocated).await,
            _ => Ok(()),
        };
        match result {
            Ok(()) => Ok(allocated),
            Err(err) => {
                self.release(allocated);
                Err(err)
            }
        }
    }
}

/// What an object holds, by pool.
pub(crate) fn held(resource: &Resource, object: &Value) -> Allocations {
    let mut items = Vec::new();
    match (resource.group, resource.kind) {
        ("", "Service") => {
            if let Some(ip) = object["spec"]["clusterIP"]
                .as_str()
                .filter(|ip| !ip.is_empty() && *ip != "None")
            {
                items.push((PoolKind::ServiceIp, ip.to_owned()));
            }
            for port in object["spec"]["ports"].as_array().into_iter().flatten() {
                if let Some(node_port) = port["nodePort"].as_u64() {
                    items.push((PoolKind::NodePort, node_port.to_string()));
                }
            }
        }
        ("", "Node") => {
            if let Some(cidr) = object["spec"]["podCIDR"].as_str().filter(|c| !c.is_empty()) {
                items.push((PoolKind::PodCidr, cidr.to_owned()));
            }
        }
        _ => {}
    }
    items
}

fn invalid(kind: &str, object: &Value, field: &str, value: &str, why: String) -> ApiError {
    ApiError::invalid(
        kind,
        object["metadata"]["name"].as_str().unwrap_or_default(),
        &[FieldCause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: \"{value}\": {why}"),
            field: field.into(),
        }],
    )
}

/// How allocations name their owner: `namespace/name`.
pub(crate) fn owner(object: &Value) -> String {
    format!(
        "{}/{}",
        object["metadata"]["namespace"].as_str().unwrap_or_default(),
        object["metadata"]["name"].as_str().unwrap_or_default()
    )
}

async fn allocate_service(
    ipam: &Arc<Ipam>,
    old: Option<&Value>,
    object: &mut Value,
    allocated: &mut Allocations,
) -> Result<(), ApiError> {
    let owner = owner(object);
    let spec = &mut object["spec"];
    let service_type = spec["type"].as_str().unwrap_or("ClusterIP").to_owned();
    let old_ip = old
        .and_then(|old| old["spec"]["clusterIP"].as_str())
        .filter(|ip| !ip.is_empty())
        .map(str::to_owned);

    // ClusterIP: kept from the stored object; immutable once set.
    if service_type == "ExternalName" {
        if let Some(map) = spec.as_object_mut() {
            map.remove("clusterIP");
            map.remove("clusterIPs");
        }
    } else {
        let requested = spec["clusterIP"]
            .as_str()
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned);
        match (&old_ip, requested) {
            (Some(old_ip), None) => set_cluster_ip(spec, old_ip),
            (Some(old_ip), Some(new_ip)) if *old_ip == new_ip => set_cluster_ip(spec, old_ip),
            (Some(_), Some(new_ip)) => {
                return Err(invalid(
                    "Service",
                    &Value::Null,
                    "spec.clusterIPs[0]",
                    &new_ip,
                    "field is immutable".into(),
                ));
            }
            (None, Some(ip)) if ip == "None" => set_cluster_ip(spec, "None"),
            (None, Some(ip)) => {
                ipam.service_ips
                    .allocate(&ip, &owner)
                    .await
                    .map_err(|err| {
                        invalid(
                            "Service",
                            &Value::Null,
                            "spec.clusterIPs[0]",
                            &ip,
                            describe(&err, "IP", &ipam.service_ips.range().to_string()),
                        )
                    })?;
                allocated.push((PoolKind::ServiceIp, ip.clone()));
                set_cluster_ip(spec, &ip);
            }
            (None, None) => {
                let ip = ipam.service_ips.allocate_any(&owner).await.map_err(|err| {
                    ApiError::internal(format!("failed to allocate a service IP: {err}"))
                })?;
                allocated.push((PoolKind::ServiceIp, ip.clone()));
                set_cluster_ip(spec, &ip);
            }
        }
        spec["ipFamilies"] = json!(["IPv4"]);
        if spec["ipFamilyPolicy"].is_null() {
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
        if spec["internalTrafficPolicy"].is_null() {
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
    }

    // NodePorts: NodePort and LoadBalancer services get one per port.
    let wants_node_ports = matches!(service_type.as_str(), "NodePort" | "LoadBalancer");
    let old_ports: Vec<Value> = old
        .and_then(|old| old["spec"]["ports"].as_array().cloned())
        .unwrap_or_default();
    if wants_node_ports && spec["externalTrafficPolicy"].is_null() {
        spec["externalTrafficPolicy"] = json!("Cluster");
    }
    let Some(ports) = spec["ports"].as_array_mut() else {
        return Ok(());
    };
    for (index, port) in ports.iter_mut().enumerate() {
        if !wants_node_ports {
            if let Some(map) = port.as_object_mut() {
                map.remove("nodePort");
            }
            continue;
        }
        let held_before: Option<u64> = old_ports
            .iter()
            .filter(|old| old["port"] == port["port"] && old["protocol"] == port["protocol"])
            .find_map(|old| old["nodePort"].as_u64());
        match (port["nodePort"].as_u64(), held_before) {
            (Some(requested), Some(held)) if requested == held => {}
            (None, Some(held)) => port["nodePort"] = json!(held),
            (Some(requested), _)
                if old_ports
                    .iter()
                    .any(|o| o["nodePort"].as_u64() == Some(requested)) => {}
            (Some(requested), _) => {
                let item = requested.to_string();
                ipam.node_ports
                    .allocate(&item, &owner)
                    .await
                    .map_err(|err| {
                        invalid(
                            "Service",
                            &Value::Null,
                            &format!("spec.ports[{index}].nodePort"),
                            &item,
                            describe(&err, "port", &ipam.node_ports.range().to_string()),
                        )
                    })?;
                allocated.push((PoolKind::NodePort, item));
            }
            (None, None) => {
                let item = ipam.node_ports.allocate_any(&owner).await.map_err(|err| {
                    ApiError::internal(format!("failed to allocate a node port: {err}"))
                })?;
                port["nodePort"] = json!(item.parse::<u64>().unwrap_or_default());
                allocated.push((PoolKind::NodePort, item));
            }
        }
    }
    Ok(())
}

fn set_cluster_ip(spec: &mut Value, ip: &str) {
    spec["clusterIP"] = json!(ip);
    spec["clusterIPs"] = json!([ip]);
}

fn describe(err: &IpamError, what: &str, range: &str) -> String {
    match err {
        IpamError::Taken { .. } => format!("provided {what} is already allocated"),
        IpamError::OutOfRange { .. } => format!(
            "provided {what} is not in the valid range. The range of valid {what}s is {range}"
        ),
        other => other.to_string(),
    }
}

async fn allocate_node(
    ipam: &Arc<Ipam>,
    old: Option<&Value>,
    object: &mut Value,
    allocated: &mut Allocations,
) -> Result<(), ApiError> {
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let old_cidr = old
        .and_then(|old| old["spec"]["podCIDR"].as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let requested = object["spec"]["podCIDR"]
        .as_str()
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let cidr = match (old_cidr, requested) {
        (Some(old), None) => old,
        (Some(old), Some(new)) if old == new => old,
        (Some(_), Some(new)) => {
            return Err(invalid(
                "Node",
                object,
                "spec.podCIDRs",
                &new,
                "node updates may not change podCIDR except from \"\" to valid".into(),
            ));
        }
        (None, Some(new)) => {
            ipam.pod_cidrs.allocate(&new, &name).await.map_err(|err| {
                invalid(
                    "Node",
                    object,
                    "spec.podCIDRs[0]",
                    &new,
                    describe(&err, "CIDR", &ipam.pod_cidrs.range().to_string()),
                )
            })?;
            allocated.push((PoolKind::PodCidr, new.clone()));
            new
        }
        (None, None) => {
            let cidr = ipam.pod_cidrs.allocate_first(&name).await.map_err(|err| {
                ApiError::internal(format!(
                    "failed to allocate a podCIDR for node {name}: {err}"
                ))
            })?;
            allocated.push((PoolKind::PodCidr, cidr.clone()));
            cidr
        }
    };
    object["spec"]["podCIDR"] = json!(cidr);
    object["spec"]["podCIDRs"] = json!([cidr]);
    Ok(())
}
