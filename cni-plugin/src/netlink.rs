//! The real [`Net`]: rtnetlink sockets in the node's namespace and in pod namespaces.
//!
//! A netlink socket stays in the namespace it was created in, so a pod's socket is opened on a
//! short-lived thread that has `setns(2)`-ed into the pod namespace; the plugin's own thread never
//! changes namespace, so a failure cannot leave it stranded in a pod.

use std::{
    cell::RefCell,
    collections::HashMap,
    fs::File,
    io,
    net::{IpAddr, Ipv4Addr},
    os::{fd::AsRawFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use futures::TryStreamExt as _;
use nix::{
    errno::Errno,
    sched::{CloneFlags, setns},
};
use rtnetlink::{
    Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
    packet_route::{
        AddressFamily,
        address::AddressAttribute,
        link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage},
        neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState as KernelNeighbourState},
        route::{RouteAddress, RouteAttribute, RouteHeader, RouteScope},
    },
};

use crate::net::{
    HostVeth, LinkState, NeighbourState, Net, NetError, NetnsState, Ns, PodSetup, RouteState,
};

/// The rtnetlink-backed [`Net`]. Sockets are opened on first use and kept for the invocation.
/// Must be used inside a tokio runtime (the sockets' connections are spawned onto it).
#[derive(Default)]
pub struct Rtnl {
    node: RefCell<Option<Handle>>,
    pods: RefCell<HashMap<PathBuf, Handle>>,
}

impl std::fmt::Debug for Rtnl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtnl")
            .field("pods", &self.pods.borrow().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The netlink error for `action`, with the errno spelled out when the kernel sent one.
fn failed(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    move |err| NetError::Netlink {
        action: action.into(),
        reason: match &err {
            rtnetlink::Error::NetlinkError(message) if message.raw_code() != 0 => {
                message.to_io().to_string()
            }
            other => other.to_string(),
        },
    }
}

/// Whether `err` is the kernel's "no such device".
fn is_enodev(err: &rtnetlink::Error) -> bool {
    matches!(err, rtnetlink::Error::NetlinkError(message) if message.raw_code() == -(Errno::ENODEV as i32))
}

/// Opens a netlink socket in the calling thread's namespace and spawns its connection.
fn connect_here() -> io::Result<Handle> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(connection);
    Ok(handle)
}

impl Rtnl {
    /// A fresh instance; nothing is opened yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn node(&self) -> Result<Handle, NetError> {
        if let Some(handle) = self.node.borrow().as_ref() {
            return Ok(handle.clone());
        }
        let handle = connect_here().map_err(|source| NetError::Netns {
            action: "opening a netlink socket in",
            path: PathBuf::from("/proc/self/ns/net"),
            source,
        })?;
        *self.node.borrow_mut() = Some(handle.clone());
        Ok(handle)
    }

    /// The socket in the pod namespace `netns`, opened on a thread that entered it.
    fn pod(&self, netns: &Path) -> Result<Handle, NetError> {
        if let Some(handle) = self.pods.borrow().get(netns) {
            return Ok(handle.clone());
        }
        let fail = |action, source| NetError::Netns {
            action,
            path: netns.to_path_buf(),
            source,
        };
        let file = File::open(netns).map_err(|source| fail("opening", source))?;
        let runtime = tokio::runtime::Handle::current();
        let handle = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(&file, CloneFlags::CLONE_NEWNET)
                        .map_err(|errno| fail("entering", io::Error::from(errno)))?;
                    // The socket registers with the runtime's reactor from this thread.
                    let _entered = runtime.enter();
                    connect_here().map_err(|source| fail("opening a netlink socket in", source))
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(fail(
                        "entering",
                        io::Error::other("the thread entering it panicked"),
                    ))
                })
        })?;
        self.pods
            .borrow_mut()
            .insert(netns.to_path_buf(), handle.clone());
        Ok(handle)
    }

    fn handle(&self, ns: Ns<'_>) -> Result<Handle, NetError> {
        match ns {
            Ns::Node => self.node(),
            Ns::Pod(netns) => self.pod(netns),
        }
    }
}

/// The link `name`, or None.
async fn get_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, NetError> {
    match handle
        .link()
        .get()
        .match_name(name.to_owned())
        .execute()
        .try_next()
        .await
    {
        Ok(link) => Ok(link),
        Err(err) if is_enodev(&err) => Ok(None),
        Err(err) => Err(failed(format!("looking up link {name}"))(err)),
    }
}

/// The link `name`, which must exist.
async fn require_link(handle: &Handle, name: &str) -> Result<LinkMessage, NetError> {
    get_link(handle, name)
        .await?
        .ok_or_else(|| NetError::Netlink {
            action: format!("looking up link {name}"),
            reason: "it does not exist".into(),
        })
}

fn mac_of(link: &LinkMessage) -> Option<Vec<u8>> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Address(mac) => Some(mac.clone()),
            _ => None,
        })
}

fn mac6(link: &LinkMessage, name: &str) -> Result<[u8; 6], NetError> {
    mac_of(link)
        .and_then(|mac| <[u8; 6]>::try_from(mac).ok())
        .ok_or_else(|| NetError::Netlink {
            action: format!("reading the MAC address of {name}"),
            reason: "the link has no 6-byte MAC address".into(),
        })
}

async fn set_up(handle: &Handle, index: u32, name: &str) -> Result<(), NetError> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(failed(format!("setting link {name} up")))
}

/// Adds `dst/prefix` through link `index` (scope link when there is no gateway).
async fn add_route(
    handle: &Handle,
    dst: Ipv4Addr,
    prefix: u8,
    index: u32,
    gateway: Option<Ipv4Addr>,
    name: &str,
) -> Result<(), NetError> {
    let mut route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(dst, prefix)
        .output_interface(index);
    route = match gateway {
        Some(gateway) => route.gateway(gateway),
        None => route.scope(RouteScope::Link),
    };
    let via = gateway.map(|gw| format!(" via {gw}")).unwrap_or_default();
    handle
        .route()
        .add(route.build())
        .execute()
        .await
        .map_err(failed(format!(
            "adding route {dst}/{prefix}{via} dev {name}"
        )))
}

impl Net for Rtnl {
    async fn netns_state(&self, netns: &Path) -> Result<NetnsState, NetError> {
        let metadata = match std::fs::metadata(netns) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(NetnsState::Missing),
            Err(source) => {
                return Err(NetError::Netns {
                    action: "inspecting",
                    path: netns.to_path_buf(),
                    source,
                });
            }
        };
        let own =
            std::fs::metadata("/proc/thread-self/ns/net").map_err(|source| NetError::Netns {
                action: "inspecting",
                path: PathBuf::from("/proc/thread-self/ns/net"),
                source,
            })?;
        if (metadata.dev(), metadata.ino()) == (own.dev(), own.ino()) {
            return Ok(NetnsState::Own);
        }
        // Entering it proves it is a network namespace (setns fails with EINVAL otherwise).
        match self.pod(netns) {
            Ok(_) => Ok(NetnsState::Present),
            Err(NetError::Netns { source, .. })
                if source.raw_os_error() == Some(Errno::EINVAL as i32) =>
            {
                Ok(NetnsState::NotNamespace)
            }
            Err(err) => Err(err),
        }
    }

    async fn link_exists(&self, ns: Ns<'_>, name: &str) -> Result<bool, NetError> {
        Ok(get_link(&self.handle(ns)?, name).await?.is_some())
    }

    async fn create_veth(
        &self,
        host: &str,
        netns: &Path,
        ifname: &str,
        mtu: Option<u32>,
    ) -> Result<HostVeth, NetError> {
        let handle = self.node()?;
        // The peer's IFLA_NET_NS_FD makes the kernel create it inside the pod namespace.
        let pod = File::open(netns).map_err(|source| NetError::Netns {
            action: "opening",
            path: netns.to_path_buf(),
            source,
        })?;
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(ifname.to_owned())
            .setns_by_fd(pod.as_raw_fd());
        let mut message = LinkVeth::new(host, ifname);
        if let Some(mtu) = mtu {
            peer = peer.mtu(mtu);
            message = message.mtu(mtu);
        }
        let message = message
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        handle
            .link()
            .add(message)
            .execute()
            .await
            .map_err(failed(format!(
                "creating veth pair {host} / {ifname} in {}",
                netns.display()
            )))?;
        drop(pod);
        let link = require_link(&handle, host).await?;
        Ok(HostVeth {
            index: link.header.index,
            mac: mac6(&link, host)?,
        })
    }

    async fn configure_pod(&self, netns: &Path, setup: &PodSetup) -> Result<[u8; 6], NetError> {
        let handle = self.pod(netns)?;
        let name = setup.ifname.as_str();
        let link = require_link(&handle, name).await?;
        let index = link.header.index;
        let mac = mac6(&link, name)?;
        set_up(&handle, index, name).await?;
        handle
            .address()
            .add(index, IpAddr::V4(setup.address), setup.prefix_len)
            .execute()
            .await
            .map_err(failed(format!(
                "adding address {}/{} to {name}",
                setup.address, setup.prefix_len
            )))?;
        add_route(&handle, setup.gateway, 32, index, None, name).await?;
        add_route(
            &handle,
            Ipv4Addr::UNSPECIFIED,
            0,
            index,
            Some(setup.gateway),
            name,
        )
        .await?;
        handle
            .neighbours()
            .add(index, IpAddr::V4(setup.gateway))
            .link_layer_address(&setup.gateway_mac)
            .state(KernelNeighbourState::Permanent)
            .execute()
            .await
            .map_err(failed(format!(
                "adding permanent neighbour {} on {name}",
                setup.gateway
            )))?;
        Ok(mac)
    }

    async fn configure_host(&self, host: &str, address: Ipv4Addr) -> Result<(), NetError> {
        let handle = self.node()?;
        let index = require_link(&handle, host).await?.header.index;
        set_up(&handle, index, host).await?;
        add_route(&handle, address, 32, index, None, host).await
    }

    async fn delete_link(&self, ns: Ns<'_>, name: &str) -> Result<bool, NetError> {
        let handle = self.handle(ns)?;
        let Some(link) = get_link(&handle, name).await? else {
            return Ok(false);
        };
        match handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            // Deleted meanwhile, e.g. with its peer.
            Err(err) if is_enodev(&err) => Ok(false),
            Err(err) => Err(failed(format!("deleting link {name}"))(err)),
        }
    }

    async fn inspect_link(&self, ns: Ns<'_>, name: &str) -> Result<Option<LinkState>, NetError> {
        let handle = self.handle(ns)?;
        let Some(link) = get_link(&handle, name).await? else {
            return Ok(None);
        };
        let index = link.header.index;
        let mut state = LinkState {
            index,
            mac: mac_of(&link).unwrap_or_default(),
            mtu: link
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    LinkAttribute::Mtu(mtu) => Some(*mtu),
                    _ => None,
                }),
            up: link.header.flags.contains(LinkFlags::Up),
            ..LinkState::default()
        };

        let mut addresses = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(failed(format!("listing the addresses of {name}")))?
        {
            for attribute in &message.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attribute {
                    state.addresses.push((*ip, message.header.prefix_len));
                }
            }
        }

        let mut routes = handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        while let Some(message) = routes
            .try_next()
            .await
            .map_err(failed(format!("listing the routes of {name}")))?
        {
            let main = message.header.table == RouteHeader::RT_TABLE_MAIN;
            let through = message
                .attributes
                .iter()
                .any(|attribute| matches!(attribute, RouteAttribute::Oif(oif) if *oif == index));
            if !main || !through {
                continue;
            }
            let mut route = RouteState {
                dst: Ipv4Addr::UNSPECIFIED,
                prefix_len: message.header.destination_prefix_length,
                gateway: None,
            };
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(dst)) => route.dst = *dst,
                    RouteAttribute::Gateway(RouteAddress::Inet(gateway)) => {
                        route.gateway = Some(*gateway);
                    }
                    _ => {}
                }
            }
            state.routes.push(route);
        }

        let mut neighbours = handle
            .neighbours()
            .get()
            .set_address_family(AddressFamily::Inet)
            .execute();
        while let Some(message) = neighbours
            .try_next()
            .await
            .map_err(failed(format!("listing the neighbours of {name}")))?
        {
            if message.header.ifindex != index || message.header.family != AddressFamily::Inet {
                continue;
            }
            let mut ip = None;
            let mut mac = Vec::new();
            for attribute in &message.attributes {
                match attribute {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(dst)) => ip = Some(*dst),
                    NeighbourAttribute::LinkLayerAddress(lladdr) => mac.clone_from(lladdr),
                    _ => {}
                }
            }
            if let Some(ip) = ip {
                state.neighbours.push(NeighbourState {
                    ip,
                    mac,
                    permanent: message.header.state == KernelNeighbourState::Permanent,
                });
            }
        }
        Ok(Some(state))
    }
}
