//! What the API server allocates for objects, as kube-apiserver's service and node registries
//! do: a ClusterIP and NodePorts for each Service, a podCIDR for each Node. Allocations happen
//! before the object is stored, are released when storing fails or the object is deleted, and
//! are kept across updates (a ClusterIP and a node's podCIDR never change once set).

use serde_json::Value;

use super::{
    ApiServer,
    registry::Resource,
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
        let before = resource.strategy.held(old);
        let after = resource.strategy.held(object);
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
        self.release(resource.strategy.held(object));
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
        let result = resource
            .strategy
            .allocate(&ipam, old, object, &mut allocated)
            .await;
        match result {
            Ok(()) => Ok(allocated),
            Err(err) => {
                self.release(allocated);
                Err(err)
            }
        }
    }
}

/// A 422 naming the one invalid field of an allocation request.
pub(crate) fn invalid(
    kind: &str,
    object: &Value,
    field: &str,
    value: &str,
    why: String,
) -> ApiError {
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

/// Upstream's words for an allocation that failed.
pub(crate) fn describe(err: &IpamError, what: &str, range: &str) -> String {
    match err {
        IpamError::Taken { .. } => format!("provided {what} is already allocated"),
        IpamError::OutOfRange { .. } => format!(
            "provided {what} is not in the valid range. The range of valid {what}s is {range}"
        ),
        other => other.to_string(),
    }
}
