//! The node's side of the overlay in the kernel: the collect-metadata VXLAN device the eBPF
//! programs send through and receive from, the route that sends the node's own traffic for the
//! cluster's pods into it, and the forwarding sysctl (pods' traffic leaving the cluster is
//! routed by the node's stack and masqueraded by the datapath on the underlay link).

use std::{net::Ipv4Addr, path::Path};

use futures::TryStreamExt as _;
use rtnetlink::{
    Handle, LinkMessageBuilder, LinkUnspec, LinkVxlan, RouteMessageBuilder,
    packet_route::{
        address::AddressAttribute,
        link::{LinkAttribute, LinkFlags},
    },
};

use flotilla_common::network::{OVERLAY_OVERHEAD, OVERLAY_PORT};

/// The VXLAN device's name (flannel calls its own `flannel.1`).
pub const OVERLAY_DEVICE: &str = "flotilla.1";

/// Errors setting up the node's overlay plumbing.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// A netlink request failed.
    #[error("{action}: {source}")]
    Netlink {
        /// What was being done.
        action: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// No interface of this network namespace carries the node IP.
    #[error(
        "no interface in the agent's network namespace has the node IP {0}; pass the node's \
         underlay address with --node-ip"
    )]
    NoUnderlay(Ipv4Addr),
    /// The device exists but is not ours to use.
    #[error("{0}")]
    Unusable(String),
    /// Writing a sysctl failed.
    #[error("setting {path}: {source}")]
    Sysctl {
        /// The /proc/sys path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What the programs need to know about the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayDevice {
    /// Its ifindex.
    pub ifindex: u32,
    /// Its MAC.
    pub mac: [u8; 6],
    /// Its MTU, which is also the pods' MTU.
    pub mtu: u32,
    /// The underlay link holding the node IP: its ifindex.
    pub underlay_ifindex: u32,
    /// The underlay link's name (NodePort arrives there).
    pub underlay_name: String,
    /// The underlay link's MAC (ARP answers for announced LoadBalancer addresses give it);
    /// None where the link has none.
    pub underlay_mac: Option<[u8; 6]>,
    /// The network of the node IP on the underlay link (nodes inside it are reached without a
    /// router; native routing needs that).
    pub underlay_segment: (Ipv4Addr, u32),
}

/// Settings for [`ensure`].
#[derive(Clone, Debug)]
pub struct OverlaySettings {
    /// The node's underlay address (the VXLAN source; the link holding it is the underlay).
    pub node_ip: Ipv4Addr,
    /// The whole pod network (routed into the device for the node's own traffic).
    pub cluster_cidr: (Ipv4Addr, u32),
    /// MTU for the device and pods; default: the underlay MTU minus the VXLAN overhead.
    pub mtu: Option<u32>,
}

fn netlink(action: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> OverlayError {
    let action = action.into();
    move |source| OverlayError::Netlink { action, source }
}

/// Creates (or adopts) the VXLAN device and its route; idempotent, and it
/// never deletes a working device, so an agent restart does not disturb traffic.
pub async fn ensure(settings: &OverlaySettings) -> Result<OverlayDevice, OverlayError> {
    let (connection, handle, _) = rtnetlink::new_connection()
        .map_err(|err| OverlayError::Unusable(format!("opening a netlink socket: {err}")))?;
    tokio::spawn(connection);
    let underlay = underlay(&handle, settings.node_ip).await?;
    let mtu = settings
        .mtu
        .unwrap_or_else(|| underlay.mtu.saturating_sub(OVERLAY_OVERHEAD));

    if link_by_name(&handle, OVERLAY_DEVICE).await?.is_none() {
        let device = LinkMessageBuilder::<LinkVxlan>::new(OVERLAY_DEVICE)
            .port(OVERLAY_PORT)
            .collect_metadata(true)
            .learning(false)
            .dev(underlay.index)
            .mtu(mtu)
            .arp(false)
            .build();
        handle
            .link()
            .add(device)
            .execute()
            .await
            .map_err(netlink(format!(
                "creating the VXLAN device {OVERLAY_DEVICE}"
            )))?;
    }
    let Some(link) = link_by_name(&handle, OVERLAY_DEVICE).await? else {
        return Err(OverlayError::Unusable(format!(
            "{OVERLAY_DEVICE} vanished right after it was created"
        )));
    };
    if !is_vxlan(&link) {
        return Err(OverlayError::Unusable(format!(
            "{OVERLAY_DEVICE} exists but is not a VXLAN device; delete it (`ip link del \
             {OVERLAY_DEVICE}`) and restart the agent"
        )));
    }
    let ifindex = link.header.index;
    // No IPv6 on the device: it would send router solicitations nobody can route.
    let _ = write_sysctl(&format!("net/ipv6/conf/{OVERLAY_DEVICE}/disable_ipv6"), "1");
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(ifindex)
                .mtu(mtu)
                .arp(false)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(netlink(format!(
            "setting {OVERLAY_DEVICE} up with MTU {mtu}"
        )))?;
    let mac = link_mac(&link)
        .ok_or_else(|| OverlayError::Unusable(format!("{OVERLAY_DEVICE} has no MAC address")))?;

    // The node's own packets to pods elsewhere: into the device, where to_overlay picks the node.
    let (cluster, cluster_len) = settings.cluster_cidr;
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(cluster, cluster_len as u8)
        .output_interface(ifindex)
        .pref_source(settings.node_ip)
        .build();
    handle
        .route()
        .add(route)
        .replace()
        .execute()
        .await
        .map_err(netlink(format!(
            "routing {cluster}/{cluster_len} into {OVERLAY_DEVICE}"
        )))?;

    write_sysctl("net/ipv4/ip_forward", "1")?;
    Ok(OverlayDevice {
        ifindex,
        mac,
        mtu,
        underlay_ifindex: underlay.index,
        underlay_name: underlay.name,
        underlay_mac: underlay.mac,
        underlay_segment: underlay.segment,
    })
}

/// A link's Ethernet address.
fn link_mac(link: &rtnetlink::packet_route::link::LinkMessage) -> Option<[u8; 6]> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Address(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
            _ => None,
        })
}

async fn link_by_name(
    handle: &Handle,
    name: &str,
) -> Result<Option<rtnetlink::packet_route::link::LinkMessage>, OverlayError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -nix::libc::ENODEV => {
            Ok(None)
        }
        Err(err) => Err(netlink(format!("looking up link {name}"))(err)),
    }
}

fn is_vxlan(link: &rtnetlink::packet_route::link::LinkMessage) -> bool {
    use rtnetlink::packet_route::link::{InfoKind, LinkInfo};
    link.attributes.iter().any(|attribute| {
        matches!(attribute, LinkAttribute::LinkInfo(infos)
            if infos.iter().any(|info| matches!(info, LinkInfo::Kind(InfoKind::Vxlan))))
    })
}

/// The link holding the node IP.
struct Underlay {
    index: u32,
    name: String,
    mtu: u32,
    /// None for a link without Ethernet addresses (no ARP on it).
    mac: Option<[u8; 6]>,
    /// The node IP's network (host bits cleared).
    segment: (Ipv4Addr, u32),
}

/// The link holding `node_ip`.
async fn underlay(handle: &Handle, node_ip: Ipv4Addr) -> Result<Underlay, OverlayError> {
    let mut addresses = handle.address().get().execute();
    let mut found = None;
    while let Some(message) = addresses
        .try_next()
        .await
        .map_err(netlink("listing addresses"))?
    {
        let holds = message.attributes.iter().any(|attribute| {
            matches!(attribute, AddressAttribute::Local(ip) | AddressAttribute::Address(ip)
                if *ip == std::net::IpAddr::V4(node_ip))
        });
        if holds {
            found = Some((message.header.index, message.header.prefix_len));
            break;
        }
    }
    let (index, prefix_len) = found.ok_or(OverlayError::NoUnderlay(node_ip))?;
    let segment = super::tunnels::network(node_ip, u32::from(prefix_len));
    let mut links = handle.link().get().match_index(index).execute();
    let link = links
        .try_next()
        .await
        .map_err(netlink(format!("looking up link {index}")))?
        .ok_or(OverlayError::NoUnderlay(node_ip))?;
    let up = link.header.flags.contains(LinkFlags::Up);
    let mtu = link
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
        .unwrap_or(1500);
    let name = link
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
        .ok_or_else(|| OverlayError::Unusable(format!("the underlay link {index} has no name")))?;
    let mac = link_mac(&link);
    if !up {
        tracing::warn!(ifindex = index, "the underlay link is down");
    }
    Ok(Underlay {
        index,
        name,
        mtu,
        mac,
        segment,
    })
}

/// Writes `value` to /proc/sys/`key` (in the caller's network namespace: /proc/sys/net follows
/// the namespace of the thread that opens it).
pub fn write_sysctl(key: &str, value: &str) -> Result<(), OverlayError> {
    let path = Path::new("/proc/sys").join(key);
    if std::fs::read_to_string(&path).is_ok_and(|current| current.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(|source| OverlayError::Sysctl {
        path: path.display().to_string(),
        source,
    })
}
