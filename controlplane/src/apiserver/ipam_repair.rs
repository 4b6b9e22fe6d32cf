//! Keeps the IPAM pools equal to what objects hold, as kube-apiserver's repair loops for
//! ClusterIPs and NodePorts do. A crash between an allocation and the write of its object, or
//! between an object's deletion and the release, would otherwise leak an item for good; an
//! object restored from a backup could hold an item the pool does not record.
//!
//! An allocation no object holds is only released when two passes in a row saw it so: the
//! first sighting may be a create in flight (the item is allocated before the object is
//! stored). Items objects hold that the pool lacks are recorded again.

use std::{collections::HashMap, collections::HashSet, time::Duration};

use super::{ApiServer, allocations::PoolKind, registry, status::ApiError};
use crate::ipam::IpamError;

/// What one pass changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// Allocations released because no object held them in two passes.
    pub released: usize,
    /// Items objects hold that were recorded in their pool again.
    pub recorded: usize,
}

impl ApiServer {
    /// Repairs the pools every `period` until the task is dropped.
    pub async fn repair_allocations_forever(self, period: Duration) {
        let mut suspects = HashSet::new();
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            match self.repair_allocations(&mut suspects).await {
                Ok(repaired) if repaired != Repaired::default() => {
                    tracing::info!(
                        released = repaired.released,
                        recorded = repaired.recorded,
                        "repaired IP/port allocations"
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::warn!("repairing IP/port allocations: {err}"),
            }
        }
    }

    /// One pass. `suspects` carries the unheld allocations of the previous pass.
    pub async fn repair_allocations(
        &self,
        suspects: &mut HashSet<(PoolKind, String)>,
    ) -> Result<Repaired, ApiError> {
        let Some(ipam) = self.ipam.clone() else {
            return Ok(Repaired::default());
        };
        let mut holders: HashMap<(PoolKind, String), String> = HashMap::new();
        for (group, plural) in [("", "services"), ("", "nodes")] {
            let resource = registry::builtin(group, plural)
                .ok_or_else(|| ApiError::internal(format!("{plural} are not registered")))?;
            let page = self
                .store
                .list(&resource.prefix(None), 0, None)
                .await
                .map_err(|err| ApiError::from_storage(err, plural, ""))?;
            for stored in page.items {
                let owner = super::allocations::owner(&stored.object);
                for item in resource.strategy.held(&stored.object) {
                    holders.insert(item, owner.clone());
                }
            }
        }
        let internal = |err: IpamError| ApiError::internal(format!("IPAM: {err}"));
        let mut repaired = Repaired::default();
        let mut unheld = HashSet::new();
        let mut recorded = HashSet::new();
        for kind in [PoolKind::ServiceIp, PoolKind::NodePort, PoolKind::PodCidr] {
            let allocations = match kind {
                PoolKind::ServiceIp => ipam.service_ips.allocations().await,
                PoolKind::NodePort => ipam.node_ports.allocations().await,
                PoolKind::PodCidr => ipam.pod_cidrs.allocations().await,
            }
            .map_err(internal)?;
            for (item, _owner) in allocations {
                let key = (kind, item);
                if holders.contains_key(&key) {
                    recorded.insert(key);
                } else if suspects.contains(&key) {
                    ipam.release_item(kind, &key.1).await.map_err(internal)?;
                    tracing::warn!(pool = ?kind, item = %key.1, "released an allocation no object holds");
                    repaired.released += 1;
                } else {
                    unheld.insert(key);
                }
            }
        }
        *suspects = unheld;
        for (key, owner) in holders {
            if recorded.contains(&key) {
                continue;
            }
            match ipam.allocate_item(key.0, &key.1, &owner).await {
                Ok(()) => repaired.recorded += 1,
                Err(IpamError::Taken { .. }) => {}
                Err(IpamError::OutOfRange { .. }) => {
                    tracing::warn!(pool = ?key.0, item = %key.1, %owner, "an object holds an item outside its pool's range");
                }
                Err(err) => return Err(internal(err)),
            }
        }
        Ok(repaired)
    }
}
