//! IP address and port management: Service ClusterIPs, NodePorts and node podCIDRs.
//!
//! Every allocation is one etcd key (`/registry/ipam/<pool>/<item>`) created with an etcd
//! transaction that only succeeds if the key does not exist, so an item is never handed out
//! twice, by concurrent requests or across control plane restarts. Releasing deletes the key.

pub mod ranges;

use serde_json::json;

use crate::storage::{StorageError, Store};
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
    /// rarely collide (as upstream does for ClusterIPs and NodePorts).
    pub async fn allocate_any(&self, owner: &str) -> Result<String, IpamError> {
        let start = rand::random_range(0..self.range.size().max(1));
        self.allocate_from(start, owner).await
    }

    /// Allocates the lowest free item (as upstream's node IPAM does for podCIDRs).
    pub async fn allocate_first(&self, owner: &str) -> Result<String, IpamError> {
        self.allocate_from(0, owner).await
    }

    /// Tries every item once, beginning at index `start`.
    async fn allocate_from(&self, start: u64, owner: &str) -> Result<String, IpamError> {
        let size = self.range.size();
        let taken: std::collections::HashSet<String> = self
            .store
            .list(&format!("/registry/ipam/{}/", self.name), 0, None)
            .await?
            .items
            .into_iter()
            .filter_map(|stored| stored.object["item"].as_str().map(str::to_owned))
            .collect();
        for offset in 0..size {
            let index = (start + offset) % size;
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
