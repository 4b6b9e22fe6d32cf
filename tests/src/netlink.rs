//! A thin rtnetlink adapter bound to one network namespace: the link, address, route and
//! neighbour operations the test bed needs, each error naming the namespace and object.

use std::{
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd as _,
};

use futures::TryStreamExt as _;
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan, RouteMessageBuilder,
    packet_route::{
        link::LinkAttribute,
        neighbour::{NeighbourFlags, NeighbourState},
    },
};

use crate::{TestbedError, netns::Netns};

/// An rtnetlink connection whose socket lives in one namespace.
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: Handle,
    netns: String,
}

impl Netlink {
    /// Opens a netlink socket inside `netns`. Must be called from within a tokio runtime.
    pub fn connect(netns: &Netns) -> Result<Self, TestbedError> {
        let runtime = tokio::runtime::Handle::current();
        // The socket belongs to the namespace of the thread that creates it.
        let (connection, handle, _) = netns
            .run(|| {
                let _entered = runtime.enter();
                rtnetlink::new_connection()
            })?
            .map_err(|source| {
                TestbedError::io("opening a netlink socket in", netns.path(), source)
            })?;
        tokio::spawn(connection);
        Ok(Self {
            handle,
            netns: netns.name().to_owned(),
        })
    }

    fn fail(&self, action: String) -> impl FnOnce(rtnetlink::Error) -> TestbedError + '_ {
        move |source| TestbedError::Netlink {
            action,
            netns: self.netns.clone(),
            source,
        }
    }

    /// The interface index of `name`, or None if there is no such link.
    pub async fn try_index(&self, name: &str) -> Result<Option<u32>, TestbedError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|link| link.header.index)),
            // The kernel answers ENODEV for a name it does not know.
            Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -nix::libc::ENODEV => {
                Ok(None)
            }
            Err(err) => Err(self.fail(format!("looking up link {name}"))(err)),
        }
    }

    /// The interface index of `name`.
    pub async fn index(&self, name: &str) -> Result<u32, TestbedError> {
        self.try_index(name).await?.ok_or_else(|| {
            TestbedError::NotFound(format!("link {name} in network namespace {}", self.netns))
        })
    }

    /// The MAC address of `name`.
    pub async fn mac(&self, name: &str) -> Result<Vec<u8>, TestbedError> {
        self.link_attribute(name, "MAC address", |attribute| match attribute {
            LinkAttribute::Address(mac) => Some(mac),
            _ => None,
        })
        .await
    }

    /// The MTU of `name`.
    pub async fn mtu(&self, name: &str) -> Result<u32, TestbedError> {
        self.link_attribute(name, "MTU", |attribute| match attribute {
            LinkAttribute::Mtu(mtu) => Some(mtu),
            _ => None,
        })
        .await
    }

    /// The first attribute of link `name` that `pick` selects; `what` names it in errors.
    async fn link_attribute<T>(
        &self,
        name: &str,
        what: &str,
        pick: impl FnMut(LinkAttribute) -> Option<T>,
    ) -> Result<T, TestbedError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let link = links
            .try_next()
            .await
            .map_err(self.fail(format!("looking up link {name}")))?
            .ok_or_else(|| TestbedError::NotFound(format!("link {name} in {}", self.netns)))?;
        link.attributes
            .into_iter()
            .find_map(pick)
            .ok_or_else(|| TestbedError::NotFound(format!("{what} of {name} in {}", self.netns)))
    }

    /// Creates a bridge.
    pub async fn add_bridge(&self, name: &str) -> Result<(), TestbedError> {
        self.handle
            .link()
            .add(LinkBridge::new(name).build())
            .execute()
            .await
            .map_err(self.fail(format!("creating bridge {name}")))
    }

    /// Creates a veth pair with both ends in this namespace.
    pub async fn add_veth(&self, name: &str, peer: &str) -> Result<(), TestbedError> {
        self.handle
            .link()
            .add(LinkVeth::new(name, peer).build())
            .execute()
            .await
            .map_err(self.fail(format!("creating veth pair {name}/{peer}")))
    }

    /// Creates a VXLAN device for one VNI without learning (remote MACs come from FDB entries
    /// the caller adds, as flannel does): `local` is the outer source address, the tunnel runs
    /// over `underlay` and UDP port `port`. The kernel opens the UDP socket when the device goes
    /// up, and refuses (EADDRINUSE) if another VXLAN device in the namespace holds `port` with
    /// different flags (e.g. a collect-metadata device).
    pub async fn add_vxlan(
        &self,
        name: &str,
        vni: u32,
        local: Ipv4Addr,
        underlay: &str,
        port: u16,
    ) -> Result<(), TestbedError> {
        let underlay_index = self.index(underlay).await?;
        let link = LinkVxlan::new(name, vni)
            .dev(underlay_index)
            .local(local)
            .port(port)
            .learning(false)
            .build();
        self.handle
            .link()
            .add(link)
            .execute()
            .await
            .map_err(self.fail(format!(
                "creating VXLAN device {name} (VNI {vni}, local {local}, dev {underlay}, port \
                 {port})"
            )))
    }

    /// Applies `change` to the link `name` (RTM_SETLINK); `action` names it in errors.
    async fn set_link(
        &self,
        name: &str,
        action: String,
        change: impl FnOnce(LinkMessageBuilder<LinkUnspec>) -> LinkMessageBuilder<LinkUnspec>,
    ) -> Result<(), TestbedError> {
        let index = self.index(name).await?;
        self.handle
            .link()
            .set(change(LinkUnspec::new_with_index(index)).build())
            .execute()
            .await
            .map_err(self.fail(action))
    }

    /// Moves the link `name` into `target`.
    pub async fn move_to(&self, name: &str, target: &Netns) -> Result<(), TestbedError> {
        let file = std::fs::File::open(target.path())
            .map_err(|source| TestbedError::io("opening", target.path(), source))?;
        self.set_link(
            name,
            format!("moving link {name} to {}", target.name()),
            |link| link.setns_by_fd(file.as_raw_fd()),
        )
        .await
    }

    /// Renames the (down) link `old` to `new`.
    pub async fn rename(&self, old: &str, new: &str) -> Result<(), TestbedError> {
        self.set_link(old, format!("renaming link {old} to {new}"), |link| {
            link.name(new.to_owned())
        })
        .await
    }

    /// Sets the link's MTU.
    pub async fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), TestbedError> {
        self.set_link(
            name,
            format!("setting the MTU of {name} to {mtu}"),
            |link| link.mtu(mtu),
        )
        .await
    }

    /// Sets the link up.
    pub async fn set_up(&self, name: &str) -> Result<(), TestbedError> {
        self.set_link(name, format!("setting link {name} up"), |link| link.up())
            .await
    }

    /// Sets the link down.
    pub async fn set_down(&self, name: &str) -> Result<(), TestbedError> {
        self.set_link(name, format!("setting link {name} down"), |link| {
            link.down()
        })
        .await
    }

    /// Enslaves `name` to the bridge `bridge`.
    pub async fn set_master(&self, name: &str, bridge: &str) -> Result<(), TestbedError> {
        let bridge_index = self.index(bridge).await?;
        self.set_link(name, format!("adding {name} to bridge {bridge}"), |link| {
            link.controller(bridge_index)
        })
        .await
    }

    /// Adds `address/prefix` to the link `name`.
    pub async fn add_address(
        &self,
        name: &str,
        address: IpAddr,
        prefix: u8,
    ) -> Result<(), TestbedError> {
        let index = self.index(name).await?;
        self.handle
            .address()
            .add(index, address, prefix)
            .execute()
            .await
            .map_err(self.fail(format!("adding {address}/{prefix} to {name}")))
    }

    /// Adds a route to `destination/prefix` out of `device`, via `gateway` if given. An on-link
    /// gateway need not be inside any subnet of the device.
    pub async fn add_route(
        &self,
        destination: Ipv4Addr,
        prefix: u8,
        device: &str,
        gateway: Option<Ipv4Addr>,
    ) -> Result<(), TestbedError> {
        let index = self.index(device).await?;
        let mut route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination, prefix)
            .output_interface(index);
        if let Some(gateway) = gateway {
            route = route.gateway(gateway).onlink();
        }
        self.handle
            .route()
            .add(route.build())
            .execute()
            .await
            .map_err(self.fail(format!("adding route {destination}/{prefix} dev {device}")))
    }

    /// Adds a permanent neighbour entry: `ip` is at `mac` behind `device`.
    pub async fn add_permanent_neighbour(
        &self,
        device: &str,
        ip: Ipv4Addr,
        mac: &[u8],
    ) -> Result<(), TestbedError> {
        let index = self.index(device).await?;
        self.handle
            .neighbours()
            .add(index, IpAddr::V4(ip))
            .link_layer_address(mac)
            .state(NeighbourState::Permanent)
            .execute()
            .await
            .map_err(self.fail(format!("adding neighbour {ip} on {device}")))
    }

    /// Adds a permanent forwarding-database entry to the VXLAN device `device`: frames for `mac`
    /// go to the VTEP at `destination` (`bridge fdb add <mac> dev <device> dst <destination>`,
    /// i.e. NTF_SELF, what flannel's vxlan backend programs).
    pub async fn add_fdb(
        &self,
        device: &str,
        mac: &[u8],
        destination: Ipv4Addr,
    ) -> Result<(), TestbedError> {
        let index = self.index(device).await?;
        self.handle
            .neighbours()
            .add_bridge(index, mac)
            .destination(IpAddr::V4(destination))
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .execute()
            .await
            .map_err(self.fail(format!(
                "adding FDB entry {} dst {destination} on {device}",
                format_mac(mac)
            )))
    }

    /// Deletes the link `name`; succeeds if it does not exist.
    pub async fn delete_link(&self, name: &str) -> Result<(), TestbedError> {
        match self.try_index(name).await? {
            Some(index) => self
                .handle
                .link()
                .del(index)
                .execute()
                .await
                .map_err(self.fail(format!("deleting link {name}"))),
            None => Ok(()),
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_print_as_colon_separated_hex() {
        assert_eq!(
            format_mac(&[0x02, 0x42, 0xac, 0x11, 0x00, 0x0a]),
            "02:42:ac:11:00:0a"
        );
        assert_eq!(format_mac(&[]), "");
    }
}
