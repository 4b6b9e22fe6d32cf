//! The node's pod address pool: addresses of the podCIDR handed to CNI attachments, one file
//! per address under the agent's state directory (`<dir>/<address>`, JSON), created with
//! O_EXCL so an address is never handed out twice, and read back at start so allocations
//! survive agent restarts (as the reference host-local plugin keeps them).

use std::{
    collections::BTreeMap,
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// One CNI attachment: the key of an allocation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AttachmentId {
    /// CNI_CONTAINERID (the sandbox id).
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
}

/// What the agent keeps about an allocated address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Who holds the address.
    pub attachment: AttachmentId,
    /// The pod, from CNI_ARGS (may be empty).
    #[serde(default)]
    pub pod: String,
    /// The pod's network namespace path, for diagnostics.
    #[serde(default)]
    pub netns: String,
    /// The endpoint once registered: the host-side veth and the MACs.
    #[serde(default)]
    pub endpoint: Option<RegisteredEndpoint>,
    /// When the address was handed out (seconds since the epoch; 0 for records of old agents).
    #[serde(default)]
    pub created_unix: u64,
}

/// The datapath side of an allocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredEndpoint {
    /// Host-side veth name.
    pub host_ifname: String,
    /// Its ifindex.
    pub host_ifindex: u32,
    /// Its MAC.
    pub host_mac: [u8; 6],
    /// The pod interface's MAC.
    pub pod_mac: [u8; 6],
}

/// Errors of the pool.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every usable address of the podCIDR is taken.
    #[error(
        "no free address left in the node's podCIDR {cidr} ({used} in use); remove pods from this \
         node or give nodes larger podCIDRs (--node-cidr-mask-size)"
    )]
    Exhausted {
        /// The pool's CIDR.
        cidr: String,
        /// Addresses in use.
        used: usize,
    },
    /// The podCIDR is not an IPv4 CIDR with room for pods.
    #[error("the node's podCIDR {0:?} is not an IPv4 CIDR between /8 and /30")]
    InvalidCidr(String),
    /// A file of the pool could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The pool of one node.
#[derive(Debug)]
pub struct Ipam {
    dir: PathBuf,
    network: u32,
    prefix_len: u32,
    allocations: BTreeMap<Ipv4Addr, Allocation>,
    /// Where the next search starts, so a just-released address is not reused at once (a
    /// stale peer might still send to it).
    next: u32,
}

impl Ipam {
    /// Opens the pool for `cidr` stored in `dir`, reading back every allocation.
    pub fn open(dir: &Path, cidr: &str) -> Result<Self, IpamError> {
        let (network, prefix_len) = crate::datapath::tunnels::parse_ipv4_cidr(cidr)
            .filter(|(_, len)| (8..=30).contains(len))
            .ok_or_else(|| IpamError::InvalidCidr(cidr.to_owned()))?;
        std::fs::create_dir_all(dir).map_err(|source| IpamError::Io {
            action: "creating",
            path: dir.to_owned(),
            source,
        })?;
        let mut allocations = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|source| IpamError::Io {
            action: "reading",
            path: dir.to_owned(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(address) = name.to_str().and_then(|name| name.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            let path = entry.path();
            let text = std::fs::read_to_string(&path).map_err(|source| IpamError::Io {
                action: "reading",
                path: path.clone(),
                source,
            })?;
            match serde_json::from_str::<Allocation>(&text) {
                Ok(allocation) => {
                    allocations.insert(address, allocation);
                }
                // A half-written file from a crash: the address stays reserved (never handed
                // out twice) until GC or a DEL for it cleans up.
                Err(err) => {
                    tracing::warn!(path = %path.display(), "unreadable allocation, keeping the address reserved: {err}");
                    allocations.insert(
                        address,
                        Allocation {
                            attachment: AttachmentId {
                                container_id: String::new(),
                                ifname: String::new(),
                            },
                            pod: String::new(),
                            netns: String::new(),
                            endpoint: None,
                            created_unix: 0,
                        },
                    );
                }
            }
        }
        let first = u32::from(network) + 1;
        let next = allocations
            .keys()
            .next_back()
            .map_or(first, |last| u32::from(*last) + 1);
        Ok(Self {
            dir: dir.to_owned(),
            network: u32::from(network),
            prefix_len,
            allocations,
            next,
        })
    }

    /// The pool's CIDR as text.
    pub fn cidr(&self) -> String {
        format!("{}/{}", Ipv4Addr::from(self.network), self.prefix_len)
    }

    /// The address held by `attachment`, if any.
    pub fn find(&self, attachment: &AttachmentId) -> Option<(Ipv4Addr, &Allocation)> {
        self.allocations
            .iter()
            .find(|(_, allocation)| &allocation.attachment == attachment)
            .map(|(address, allocation)| (*address, allocation))
    }

    /// Every allocation.
    pub fn allocations(&self) -> &BTreeMap<Ipv4Addr, Allocation> {
        &self.allocations
    }

    /// An address for `allocation.attachment`: the one it already holds, or a free one.
    pub fn allocate(&mut self, allocation: Allocation) -> Result<Ipv4Addr, IpamError> {
        if let Some((address, _)) = self.find(&allocation.attachment) {
            return Ok(address);
        }
        let size = 1u32 << (32 - self.prefix_len);
        let first = self.network + 1;
        let last = self.network + size - 2; // the broadcast address is never handed out
        let usable = last - first + 1;
        let mut candidate = if (first..=last).contains(&self.next) {
            self.next
        } else {
            first
        };
        for _ in 0..usable {
            let address = Ipv4Addr::from(candidate);
            candidate = if candidate >= last {
                first
            } else {
                candidate + 1
            };
            if self.allocations.contains_key(&address) {
                continue;
            }
            match self.create(address, &allocation) {
                Ok(()) => {
                    self.allocations.insert(address, allocation);
                    self.next = candidate;
                    return Ok(address);
                }
                // Someone else's file (e.g. written by another process): skip the address.
                Err(IpamError::Io { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists =>
                {
                    continue;
                }
                Err(err) => return Err(err),
            }
        }
        Err(IpamError::Exhausted {
            cidr: self.cidr(),
            used: self.allocations.len(),
        })
    }

    /// Records the registered endpoint of the allocation at `address`.
    pub fn set_endpoint(
        &mut self,
        address: Ipv4Addr,
        endpoint: Option<RegisteredEndpoint>,
    ) -> Result<(), IpamError> {
        let Some(allocation) = self.allocations.get(&address) else {
            return Ok(());
        };
        let mut updated = allocation.clone();
        updated.endpoint = endpoint;
        let path = self.dir.join(address.to_string());
        let partial = self.dir.join(format!(".{address}.partial"));
        write_json(&partial, &updated)?;
        std::fs::rename(&partial, &path).map_err(|source| IpamError::Io {
            action: "renaming",
            path,
            source,
        })?;
        self.allocations.insert(address, updated);
        Ok(())
    }

    /// Frees the address held by `attachment`, returning what was recorded; freeing what is not
    /// held returns None.
    pub fn release(
        &mut self,
        attachment: &AttachmentId,
    ) -> Result<Option<(Ipv4Addr, Allocation)>, IpamError> {
        let Some((address, _)) = self.find(attachment) else {
            return Ok(None);
        };
        self.release_address(address)
    }

    /// Frees `address`.
    pub fn release_address(
        &mut self,
        address: Ipv4Addr,
    ) -> Result<Option<(Ipv4Addr, Allocation)>, IpamError> {
        let path = self.dir.join(address.to_string());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(IpamError::Io {
                    action: "removing",
                    path,
                    source,
                });
            }
        }
        Ok(self
            .allocations
            .remove(&address)
            .map(|allocation| (address, allocation)))
    }

    fn create(&self, address: Ipv4Addr, allocation: &Allocation) -> Result<(), IpamError> {
        use std::io::Write as _;
        let path = self.dir.join(address.to_string());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| IpamError::Io {
                action: "creating",
                path: path.clone(),
                source,
            })?;
        let text = serde_json::to_vec(allocation).unwrap_or_default();
        // No fsync: the pool must survive agent restarts (the page cache does), not machine
        // crashes, after which every pod and its namespace is gone anyway and the address GC
        // frees whatever a torn record still holds.
        file.write_all(&text).map_err(|source| IpamError::Io {
            action: "writing",
            path,
            source,
        })
    }
}

fn write_json(path: &Path, allocation: &Allocation) -> Result<(), IpamError> {
    let text = serde_json::to_vec(allocation).unwrap_or_default();
    std::fs::write(path, text).map_err(|source| IpamError::Io {
        action: "writing",
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocation(container: &str) -> Allocation {
        Allocation {
            attachment: AttachmentId {
                container_id: container.into(),
                ifname: "eth0".into(),
            },
            pod: String::new(),
            netns: String::new(),
            endpoint: None,
            created_unix: 0,
        }
    }

    #[test]
    fn addresses_are_unique_idempotent_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(dir.path(), "10.244.1.0/24").unwrap();
        let a = ipam.allocate(allocation("a")).unwrap();
        let b = ipam.allocate(allocation("b")).unwrap();
        assert_eq!(a, "10.244.1.1".parse::<Ipv4Addr>().unwrap());
        assert_ne!(a, b);
        assert_eq!(ipam.allocate(allocation("a")).unwrap(), a, "retried ADD");

        let reopened = Ipam::open(dir.path(), "10.244.1.0/24").unwrap();
        assert_eq!(reopened.allocations().len(), 2);
        assert_eq!(reopened.find(&allocation("b").attachment).unwrap().0, b);
    }

    #[test]
    fn released_addresses_are_not_reused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(dir.path(), "10.244.1.0/24").unwrap();
        let a = ipam.allocate(allocation("a")).unwrap();
        assert!(ipam.release(&allocation("a").attachment).unwrap().is_some());
        assert!(ipam.release(&allocation("a").attachment).unwrap().is_none());
        let c = ipam.allocate(allocation("c")).unwrap();
        assert_ne!(a, c);
        assert!(!dir.path().join(a.to_string()).exists());
    }

    #[test]
    fn a_full_pool_says_so_and_wraps_around() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(dir.path(), "10.244.1.0/30").unwrap();
        // A /30 has two usable addresses (.1 and .2).
        ipam.allocate(allocation("a")).unwrap();
        let b = ipam.allocate(allocation("b")).unwrap();
        let err = ipam.allocate(allocation("c")).unwrap_err();
        assert!(err.to_string().contains("no free address"), "{err}");
        ipam.release(&allocation("b").attachment).unwrap();
        assert_eq!(ipam.allocate(allocation("d")).unwrap(), b);
    }

    #[test]
    fn bad_cidrs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for cidr in ["10.0.0.0/31", "fd00::/64", "nonsense"] {
            assert!(Ipam::open(dir.path(), cidr).is_err(), "{cidr}");
        }
    }
}
