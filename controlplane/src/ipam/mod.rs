//! IP address and port management: Service ClusterIPs, NodePorts and node podCIDRs, and the
//! load balancer pool's addresses ([`loadbalancer_pool`]).
//!
//! Every allocation of a [`Pool`] is one etcd key (`/registry/ipam/<pool>/<item>`) created with
//! an etcd transaction that only succeeds if the key does not exist, so an item is never handed
//! out twice, by concurrent requests or across control plane restarts. Releasing deletes the key.
//! Load balancer addresses have no keys: they are held in the Services' status, and the elected
//! `loadbalancer_ipam` controller alone hands them out.

pub mod loadbalancer_pool;
pub mod ranges;

use serde_json::json;

use crate::storage::{StorageError, Store};
pub use loadbalancer_pool::AddressRange;
pub use ranges::{Cidr, PortRange};

/// Errors of an allocation.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The requested item is taken.
    #[error("{item} is already allocated")]
    Taken {
        /// The item.
        item: String,
    },
    /// The requested item is outside the pool.
    #[error("{item} is not in the valid range {range}")]
    OutOfRange {
        /// The item.
        item: String,
        /// The pool's range.
        range: String,
    },
    /// Every item is taken.
    #[error("the range {range} is full")]
    Full {
        /// The pool's range.
        range: String,
    },
    /// etcd failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A pool of items (IPs, ports, CIDRs) numbered 0..size.
#[derive(Debug, Clone)]
pub struct Pool<R: ranges::Range> {
    store: Store,
    name: &'static str,
    range: R,
}

impl<R: ranges::Range> Pool<R> {
    /// A pool named `name` over `range`.
    pub fn new(store: Store, name: &'static str, range: R) -> Self {
        Self { store, name, range }
    }

    /// The range this pool hands out.
    pub fn range(&self) -> &R {
        &self.range
    }

    fn key(&self, item: &str) -> String {
        format!("/registry/ipam/{}/{}", self.name, item.replace('/', "-"))
    }

    /// Allocates exactly `item` for `owner`.
    pub async fn allocate(&self, item: &str, owner: &str) -> Result<(), IpamError> {
        if self.range.index_of(item).is_none() {
            return Err(IpamError::OutOfRange {
                item: item.to_owned(),
                range: self.range.to_string(),
            });
        }
        match self
            .store
            .create(&self.key(item), &json!({"owner": owner, "item": item}))
            .await
        {
            Ok(_) => Ok(()),
            Err(StorageError::AlreadyExists { .. }) => Err(IpamError::Taken {
                item: item.to_owned(),
            }),
            Err(err) => Err(err.into()),
        }
    }

    /// Allocates any free item for `owner`, starting at a random place so concurrent callers
    /// rarely collide (as upstream does for ClusterIPs and NodePorts), above the range's static
    /// band while anything there is free.
    ///
    /// A few random items of the dynamic part are tried first, each one etcd transaction, so
    /// an allocation costs the same however many items are taken while the pool has room;
    /// only when they all are taken does it read the whole pool (one list) to find a free one.
    pub async fn allocate_any(&self, owner: &str) -> Result<String, IpamError> {
        let size = self.range.size();
        let band = self.range.static_band().min(size);
        if band < size {
            for _ in 0..RANDOM_TRIES {
                let Some(item) = self.range.item(rand::random_range(band..size)) else {
                    continue;
                };
                match self.allocate(&item, owner).await {
                    Ok(()) => return Ok(item),
                    Err(IpamError::Taken { .. }) => continue,
                    Err(err) => return Err(err),
                }
            }
        }
        let start = if band < size {
            rand::random_range(band..size)
        } else {
            0
        };
        self.allocate_in_order(dynamic_order(size, band, start), owner)
            .await
    }

    /// Allocates the lowest free item (as upstream's node IPAM does for podCIDRs).
    pub async fn allocate_first(&self, owner: &str) -> Result<String, IpamError> {
        self.allocate_in_order(0..self.range.size(), owner).await
    }

    /// Tries the items at `indices` in turn.
    async fn allocate_in_order(
        &self,
        indices: impl Iterator<Item = u64>,
        owner: &str,
    ) -> Result<String, IpamError> {
        let taken: std::collections::HashSet<String> = self
            .store
            .list(&format!("/registry/ipam/{}/", self.name), 0, None)
            .await?
            .items
            .into_iter()
            .filter_map(|stored| stored.object["item"].as_str().map(str::to_owned))
            .collect();
        for index in indices {
            let Some(item) = self.range.item(index) else {
                continue;
            };
            if taken.contains(&item) {
                continue;
            }
            match self.allocate(&item, owner).await {
                Ok(()) => return Ok(item),
                Err(IpamError::Taken { .. }) => continue,
                Err(err) => return Err(err),
            }
        }
        Err(IpamError::Full {
            range: self.range.to_string(),
        })
    }

    /// Every allocation of the pool: (item, owner).
    pub async fn allocations(&self) -> Result<Vec<(String, String)>, IpamError> {
        let prefix = format!("/registry/ipam/{}/", self.name);
        let page = self.store.list(&prefix, 0, None).await?;
        Ok(page
            .items
            .into_iter()
            .map(|stored| {
                let field =
                    |name: &str| stored.object[name].as_str().unwrap_or_default().to_owned();
                (field("item"), field("owner"))
            })
            .collect())
    }

    /// Releases `item` (releasing a free item is not an error).
    pub async fn release(&self, item: &str) -> Result<(), IpamError> {
        match self.store.delete(&self.key(item), None).await {
            Ok(_) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

/// Random items [`Pool::allocate_any`] tries before it reads the whole pool: with the pool a
/// quarter full, all eight are taken once in 65,536 allocations.
const RANDOM_TRIES: usize = 8;

/// The order a dynamic allocation tries items in: from `start` to the end, then the rest above
/// the static band (below `band`), then the static band itself (upstream's
/// randomScanStrategyWithOffset).
fn dynamic_order(size: u64, band: u64, start: u64) -> impl Iterator<Item = u64> {
    (start..size).chain(band..start).chain(0..band.min(start))
}

#[cfg(test)]
mod tests {
    use super::dynamic_order;

    #[test]
    fn dynamic_allocation_tries_the_static_band_last() {
        let order: Vec<u64> = dynamic_order(8, 3, 5).collect();
        assert_eq!(order, [5, 6, 7, 3, 4, 0, 1, 2]);
        let no_band: Vec<u64> = dynamic_order(4, 0, 2).collect();
        assert_eq!(no_band, [2, 3, 0, 1]);
        let all_static: Vec<u64> = dynamic_order(3, 3, 0).collect();
        assert_eq!(all_static, [0, 1, 2]);
    }
}
