//! The pod network datapath of one node: the three TC programs of `ebpf/src/network.rs` and
//! their pinned maps (local endpoints, tunnels to other nodes, the node's settings, drop
//! counters). Deciding *what* belongs in the maps is elsewhere (`cni_api` for endpoints,
//! `tunnels` for remote nodes); this module only loads, attaches and writes.

use std::{collections::BTreeMap, net::Ipv4Addr, os::fd::AsFd as _, path::Path};

use aya::{
    Ebpf,
    maps::{
        Array, HashMap, Map, MapData, PerCpuArray,
        lpm_trie::{Key, LpmTrie},
    },
    programs::SchedClassifier,
};
use flotilla_common::network::{
    DROPS_MAP, DropReason, ENDPOINTS_MAP, Endpoint, EndpointKey, FROM_OVERLAY_PROG, FROM_POD_PROG,
    FROM_UNDERLAY_PROG, NODE_CONFIG_MAP, NodeConfig, TO_OVERLAY_PROG, TO_POD_PROG,
    TO_UNDERLAY_PROG, TUNNEL_ACCEPT_NATIVE, TUNNEL_NATIVE, TUNNELS_MAP, Tunnel,
};
use flotilla_common::services::{
    HOST_CONNECT4_PROG, HOST_GETPEERNAME4_PROG, HOST_RECVMSG4_PROG, HOST_SENDMSG4_PROG,
    SOCK_CONNECT4_PROG, SOCK_GETPEERNAME4_PROG, SOCK_RECVMSG4_PROG, SOCK_SENDMSG4_PROG,
};
use serde::Serialize;

use super::{
    DatapathError,
    attach::{AttachOutcome, attach_pinned, detach_pinned},
    loader,
    pins::{Direction, NodePins},
    reconcile::MapHandle,
    tunnels::{Prefix, Via},
};

/// The loaded network programs of a node, ready to attach, and its pin paths.
pub struct NetworkDatapath {
    ebpf: Ebpf,
    pins: NodePins,
}

impl std::fmt::Debug for NetworkDatapath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkDatapath")
            .field("pins", &self.pins)
            .finish_non_exhaustive()
    }
}

impl NetworkDatapath {
    /// Loads the programs (verifying them once) against the node's pinned maps, creating the
    /// maps on first use and re-using them afterwards.
    pub fn load(pins: &NodePins) -> Result<Self, DatapathError> {
        let mut ebpf = loader::load(pins)?;
        for name in [
            FROM_POD_PROG,
            TO_POD_PROG,
            FROM_OVERLAY_PROG,
            TO_OVERLAY_PROG,
            FROM_UNDERLAY_PROG,
            TO_UNDERLAY_PROG,
        ] {
            program::<SchedClassifier>(&mut ebpf, name)?
                .load()
                .map_err(|source| DatapathError::Program {
                    program: name,
                    source,
                })?;
        }
        for name in SockScope::Pods
            .programs()
            .into_iter()
            .chain(SockScope::Host.programs())
        {
            program::<aya::programs::CgroupSockAddr>(&mut ebpf, name)?
                .load()
                .map_err(|source| DatapathError::Program {
                    program: name,
                    source,
                })?;
        }
        Ok(Self {
            ebpf,
            pins: pins.clone(),
        })
    }

    /// The node's pin paths.
    pub fn pins(&self) -> &NodePins {
        &self.pins
    }

    /// Attaches `from_pod` to the ingress of a pod's host-side veth and `to_pod` to its egress;
    /// the outcome is `from_pod`'s.
    pub fn attach_pod(&mut self, host_ifname: &str) -> Result<AttachOutcome, DatapathError> {
        let from_pod = program::<SchedClassifier>(&mut self.ebpf, FROM_POD_PROG)?;
        let outcome = attach_pinned(
            from_pod,
            FROM_POD_PROG,
            &self.pins,
            host_ifname,
            Direction::Ingress,
        )?;
        let to_pod = program::<SchedClassifier>(&mut self.ebpf, TO_POD_PROG)?;
        attach_pinned(
            to_pod,
            TO_POD_PROG,
            &self.pins,
            host_ifname,
            Direction::Egress,
        )?;
        Ok(outcome)
    }

    /// Removes the pinned links of a pod's host-side veth.
    pub fn detach_pod(&self, host_ifname: &str) -> Result<(), DatapathError> {
        detach_pinned(&self.pins, FROM_POD_PROG, host_ifname, Direction::Ingress)?;
        detach_pinned(&self.pins, TO_POD_PROG, host_ifname, Direction::Egress)
    }

    /// Attaches `from_overlay` (ingress) and `to_overlay` (egress) to the VXLAN device.
    pub fn attach_overlay(&mut self, device: &str) -> Result<(), DatapathError> {
        for (name, direction) in [
            (FROM_OVERLAY_PROG, Direction::Ingress),
            (TO_OVERLAY_PROG, Direction::Egress),
        ] {
            let program = program::<SchedClassifier>(&mut self.ebpf, name)?;
            attach_pinned(program, name, &self.pins, device, direction)?;
        }
        Ok(())
    }

    /// Attaches `from_underlay` (NodePorts, external addresses, replies of masqueraded flows) to
    /// the ingress of the node's underlay link and `to_underlay` (masquerade) to its egress.
    pub fn attach_underlay(&mut self, device: &str) -> Result<(), DatapathError> {
        for (name, direction) in [
            (FROM_UNDERLAY_PROG, Direction::Ingress),
            (TO_UNDERLAY_PROG, Direction::Egress),
        ] {
            let program = program::<SchedClassifier>(&mut self.ebpf, name)?;
            attach_pinned(program, name, &self.pins, device, direction)?;
        }
        Ok(())
    }
}

/// Which sockets a socket load balancer attachment serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SockScope {
    /// The node's pods: attached to the node's pod cgroup.
    Pods,
    /// The node itself: attached to the root cgroup, acting in the node's network namespace only.
    Host,
}

impl SockScope {
    /// The cgroup sock_addr programs of this scope.
    fn programs(self) -> [&'static str; 4] {
        match self {
            Self::Pods => [
                SOCK_CONNECT4_PROG,
                SOCK_SENDMSG4_PROG,
                SOCK_RECVMSG4_PROG,
                SOCK_GETPEERNAME4_PROG,
            ],
            Self::Host => [
                HOST_CONNECT4_PROG,
                HOST_SENDMSG4_PROG,
                HOST_RECVMSG4_PROG,
                HOST_GETPEERNAME4_PROG,
            ],
        }
    }
}

impl NetworkDatapath {
    /// Attaches the socket load balancer of `scope` to the cgroup (v2) directory `cgroup` as
    /// pinned links (`links/<program>@cgroup`). Links pinned by an earlier agent get this
    /// agent's programs, atomically (an upgrade never leaves a socket untranslated).
    pub fn attach_sock_lb(&mut self, cgroup: &Path, scope: SockScope) -> Result<(), DatapathError> {
        std::fs::create_dir_all(cgroup).map_err(|source| DatapathError::Io {
            action: "creating the pods' cgroup",
            path: cgroup.to_owned(),
            source,
        })?;
        let links_dir = self.pins.links_dir();
        std::fs::create_dir_all(&links_dir).map_err(|source| DatapathError::Io {
            action: "creating",
            path: links_dir,
            source,
        })?;
        for name in scope.programs() {
            let pin = self
                .pins
                .link(name, "cgroup", super::pins::Direction::Ingress);
            if pin.exists() {
                let program = program::<aya::programs::CgroupSockAddr>(&mut self.ebpf, name)?;
                let fd = program.fd().map_err(|source| DatapathError::Program {
                    program: name,
                    source,
                })?;
                super::attach::update_pinned_link(&pin, fd.as_fd())?;
                continue;
            }
            let file = std::fs::File::open(cgroup).map_err(|source| DatapathError::Io {
                action: "opening",
                path: cgroup.to_owned(),
                source,
            })?;
            let program = program::<aya::programs::CgroupSockAddr>(&mut self.ebpf, name)?;
            let program_error = |source| DatapathError::Program {
                program: name,
                source,
            };
            // BPF links on a cgroup always coexist with other links; the kernel refuses attach
            // flags (EINVAL) with bpf_link_create, so the default mode it is.
            let id = program
                .attach(&file, aya::programs::links::CgroupAttachMode::Single)
                .map_err(program_error)?;
            let link = program.take_link(id).map_err(program_error)?;
            let link: aya::programs::links::FdLink =
                link.try_into()
                    .map_err(|err: aya::programs::links::LinkError| DatapathError::Link {
                        path: pin.clone(),
                        message: super::attach::error_chain(&err),
                    })?;
            link.pin(&pin).map_err(|err| DatapathError::Link {
                path: pin.clone(),
                message: super::attach::error_chain(&err),
            })?;
        }
        Ok(())
    }
}

/// The program `name` of the loaded object as its kind `P` (a classifier, a cgroup hook, ...).
fn program<'a, P>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut P, DatapathError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(DatapathError::MissingObject {
            kind: "program",
            name,
        })?
        .try_into()
        .map_err(|source| DatapathError::Program {
            program: name,
            source,
        })
}

/// Opens the map pinned at `path`; `what` says what is missing if nothing is pinned there.
fn open_pinned(path: &Path, what: &'static str) -> Result<Map, DatapathError> {
    if !path.exists() {
        return Err(DatapathError::NotPinned {
            path: path.to_owned(),
            what,
        });
    }
    let map_error = |source| DatapathError::Map {
        map: path.display().to_string(),
        source,
    };
    let data = MapData::from_pin(path).map_err(map_error)?;
    Map::from_map_data(data).map_err(map_error)
}

/// Opens the node's map `name` as the typed map `T` it is.
pub(crate) fn open_map<T>(pins: &NodePins, name: &str) -> Result<T, DatapathError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    open_pinned(&pins.map(name), NOT_STARTED)?
        .try_into()
        .map_err(map_error(name))
}

/// A map error of the map `name`.
pub(crate) fn map_error(name: &str) -> impl Fn(aya::maps::MapError) -> DatapathError + '_ {
    move |source| DatapathError::Map {
        map: name.to_owned(),
        source,
    }
}

/// The result of deleting from the map `name`, where deleting an absent key succeeds (a
/// retried or repeated deletion finds nothing to do).
pub(crate) fn removed(
    result: Result<(), aya::maps::MapError>,
    name: &str,
) -> Result<(), DatapathError> {
    match result {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(err) => Err(map_error(name)(err)),
    }
}

/// What a missing pin means.
const NOT_STARTED: &str = "the node's network datapath; start the agent on this node first";

/// The pinned maps of a node's network datapath, opened by path (the agent and the
/// `flotilla-agent bpf` commands use the same handles).
pub struct NetworkMaps {
    endpoints: HashMap<MapData, EndpointKey, Endpoint>,
    tunnels: LpmTrie<MapData, [u8; 4], Tunnel>,
    node_config: Array<MapData, NodeConfig>,
    drops: PerCpuArray<MapData, u64>,
    /// Policy flags of local endpoints (the policy sync's), merged into every endpoint write so
    /// the CNI API registering a pod never clears them.
    policy_flags: BTreeMap<Ipv4Addr, u32>,
}

impl std::fmt::Debug for NetworkMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkMaps").finish_non_exhaustive()
    }
}

/// One local endpoint as listed by [`NetworkMaps::endpoints`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointRow {
    /// The pod's address.
    pub address: Ipv4Addr,
    /// ifindex of its host-side veth.
    pub host_ifindex: u32,
    /// The pod's MAC.
    pub pod_mac: String,
    /// The host-side veth's MAC.
    pub host_mac: String,
}

/// One tunnel prefix as listed by [`NetworkMaps::tunnels`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TunnelRow {
    /// The prefix (a node's podCIDR or its /32 node IP).
    pub prefix: Ipv4Addr,
    /// Its length.
    pub prefix_len: u32,
    /// The node's underlay address packets to the prefix are tunnelled (or routed) to.
    pub node_ip: Ipv4Addr,
    /// Routed unencapsulated rather than through VXLAN.
    pub native: bool,
    /// Unencapsulated packets from the node are taken.
    pub accepts_native: bool,
}

impl NetworkMaps {
    /// Opens the node's pinned network maps.
    pub fn open(pins: &NodePins) -> Result<Self, DatapathError> {
        let endpoints = open_map(pins, ENDPOINTS_MAP)?;
        let tunnels = open_map(pins, TUNNELS_MAP)?;
        let node_config = open_map(pins, NODE_CONFIG_MAP)?;
        let drops = open_map(pins, DROPS_MAP)?;
        let mut maps = Self {
            endpoints,
            tunnels,
            node_config,
            drops,
            policy_flags: BTreeMap::new(),
        };
        // A restarted agent keeps enforcing what its predecessor programmed until its own
        // policy sync has computed the flags again.
        maps.policy_flags = maps
            .endpoint_entries()?
            .into_iter()
            .filter(|(_, endpoint)| endpoint.flags != 0)
            .map(|(address, endpoint)| (address, endpoint.flags))
            .collect();
        Ok(maps)
    }

    /// Sets the policy flags of local endpoints (absent: 0) and rewrites the entries whose
    /// flags change.
    pub fn set_policy_flags(
        &mut self,
        flags: BTreeMap<Ipv4Addr, u32>,
    ) -> Result<(), DatapathError> {
        self.policy_flags = flags;
        for (address, endpoint) in self.endpoint_entries()? {
            let wanted = self.policy_flags.get(&address).copied().unwrap_or(0);
            if endpoint.flags != wanted {
                self.put_endpoint(address, &endpoint)?;
            }
        }
        Ok(())
    }

    /// Writes the node's settings (the programs act on packets from then on).
    pub fn set_node_config(&mut self, config: &NodeConfig) -> Result<(), DatapathError> {
        self.node_config
            .set(0, config, 0)
            .map_err(map_error(NODE_CONFIG_MAP))
    }

    /// The node's settings as the programs see them.
    pub fn node_config(&self) -> Result<NodeConfig, DatapathError> {
        self.node_config
            .get(&0, 0)
            .map_err(map_error(NODE_CONFIG_MAP))
    }

    /// Adds or replaces the endpoint for `address`.
    pub fn put_endpoint(
        &mut self,
        address: Ipv4Addr,
        endpoint: &Endpoint,
    ) -> Result<(), DatapathError> {
        let endpoint = Endpoint {
            flags: self.policy_flags.get(&address).copied().unwrap_or(0),
            ..*endpoint
        };
        self.endpoints
            .insert(
                EndpointKey {
                    ipv4: address.octets(),
                },
                endpoint,
                0,
            )
            .map_err(map_error(ENDPOINTS_MAP))
    }

    /// Removes the endpoint for `address`; removing an absent one succeeds.
    pub fn remove_endpoint(&mut self, address: Ipv4Addr) -> Result<(), DatapathError> {
        removed(
            self.endpoints.remove(&EndpointKey {
                ipv4: address.octets(),
            }),
            ENDPOINTS_MAP,
        )
    }

    /// Every endpoint in the map, by address.
    pub fn endpoint_entries(&self) -> Result<BTreeMap<Ipv4Addr, Endpoint>, DatapathError> {
        self.endpoints
            .iter()
            .map(|entry| {
                entry
                    .map(|(key, value)| (Ipv4Addr::from(key.ipv4), value))
                    .map_err(map_error(ENDPOINTS_MAP))
            })
            .collect()
    }

    /// Every endpoint, for listing.
    pub fn endpoints(&self) -> Result<Vec<EndpointRow>, DatapathError> {
        Ok(self
            .endpoint_entries()?
            .into_iter()
            .map(|(address, endpoint)| EndpointRow {
                address,
                host_ifindex: endpoint.host_ifindex,
                pod_mac: format_mac(&endpoint.pod_mac),
                host_mac: format_mac(&endpoint.host_mac),
            })
            .collect())
    }

    /// Adds or replaces the tunnel for `prefix/len`.
    pub fn put_tunnel(
        &mut self,
        prefix: Ipv4Addr,
        len: u32,
        via: Via,
    ) -> Result<(), DatapathError> {
        let mut flags = 0;
        if via.native {
            flags |= TUNNEL_NATIVE;
        }
        if via.accepts_native {
            flags |= TUNNEL_ACCEPT_NATIVE;
        }
        let tunnel = Tunnel {
            node_ipv4: via.node_ip.octets(),
            flags,
        };
        self.tunnels
            .insert(&Key::new(len, prefix.octets()), tunnel, 0)
            .map_err(map_error(TUNNELS_MAP))
    }

    /// Removes the tunnel for `prefix/len`; removing an absent one succeeds.
    pub fn remove_tunnel(&mut self, prefix: Ipv4Addr, len: u32) -> Result<(), DatapathError> {
        removed(
            self.tunnels.remove(&Key::new(len, prefix.octets())),
            TUNNELS_MAP,
        )
    }

    /// Every tunnel prefix, sorted.
    pub fn tunnels(&self) -> Result<Vec<TunnelRow>, DatapathError> {
        let mut rows = self
            .tunnels
            .iter()
            .map(|entry| {
                entry
                    .map(|(key, value)| TunnelRow {
                        prefix: Ipv4Addr::from(key.data()),
                        prefix_len: key.prefix_len(),
                        node_ip: Ipv4Addr::from(value.node_ipv4),
                        native: value.flags & TUNNEL_NATIVE != 0,
                        accepts_native: value.flags & TUNNEL_ACCEPT_NATIVE != 0,
                    })
                    .map_err(map_error(TUNNELS_MAP))
            })
            .collect::<Result<Vec<_>, _>>()?;
        rows.sort();
        Ok(rows)
    }

    /// Packets dropped so far, per reason, summed over CPUs.
    pub fn drops(&self) -> Result<Vec<(DropReason, u64)>, DatapathError> {
        DropReason::ALL
            .iter()
            .map(|reason| {
                let per_cpu = self
                    .drops
                    .get(&(*reason as u32), 0)
                    .map_err(map_error(DROPS_MAP))?;
                Ok((*reason, per_cpu.iter().sum()))
            })
            .collect()
    }
}

/// The tunnel map, for the tunnel sync's reconciler: prefix -> the node it goes to, and how.
impl MapHandle<Prefix, Via> for NetworkMaps {
    type Error = DatapathError;

    fn insert(&mut self, key: &Prefix, value: &Via) -> Result<(), DatapathError> {
        self.put_tunnel(key.0, key.1, *value)
    }

    fn remove(&mut self, key: &Prefix) -> Result<(), DatapathError> {
        self.remove_tunnel(key.0, key.1)
    }

    fn entries(&self) -> Result<Vec<(Prefix, Via)>, DatapathError> {
        Ok(self
            .tunnels()?
            .into_iter()
            .map(|row| {
                let via = Via {
                    node_ip: row.node_ip,
                    native: row.native,
                    accepts_native: row.accepts_native,
                };
                ((row.prefix, row.prefix_len), via)
            })
            .collect())
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_printed_the_usual_way() {
        assert_eq!(
            format_mac(&[0x02, 0, 0xab, 0x10, 0xff, 1]),
            "02:00:ab:10:ff:01"
        );
    }
}
