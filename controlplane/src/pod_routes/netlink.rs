//! The kernel's routing table through rtnetlink: the real [`RouteTable`].

use std::net::Ipv4Addr;

use futures::TryStreamExt as _;
use rtnetlink::{
    Handle, RouteMessageBuilder,
    packet_route::route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteType,
    },
};

use super::{ROUTE_PROTOCOL, Route, RouteError, RouteTable, Table};
use crate::ipam::Cidr;

/// The routing table of the network namespace this process runs in.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a netlink socket (its connection runs on a task of the current runtime).
    pub fn new() -> Result<Self, RouteError> {
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|err| RouteError::Other(format!("opening a netlink socket: {err}")))?;
        tokio::spawn(connection);
        Ok(Self { handle })
    }
}

/// The owned route to `destination` through `via`, as written and as deleted.
fn owned_route(destination: Cidr, via: Ipv4Addr) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(destination.network, destination.prefix)
        .gateway(via)
        .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
        .build()
}

/// Maps the kernel's answer to what the caller can act on.
fn route_error(via: Ipv4Addr, err: rtnetlink::Error) -> RouteError {
    if let rtnetlink::Error::NetlinkError(message) = &err {
        // The kernel checks a gateway against the connected routes and answers ENETUNREACH
        // ("Nexthop has invalid gateway") when none covers it.
        match -message.raw_code() {
            nix::libc::ENETUNREACH => return RouteError::NotOnLink(via),
            nix::libc::EPERM => return RouteError::NotPermitted,
            _ => {}
        }
    }
    RouteError::Other(err.to_string())
}

/// The table a route message belongs to (the attribute carries ids above 255).
fn table_of(message: &RouteMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            RouteAttribute::Table(table) => Some(*table),
            _ => None,
        })
        .unwrap_or_else(|| u32::from(message.header.table))
}

/// An IPv4 address attribute picked by `pick`.
fn address(
    message: &RouteMessage,
    pick: fn(&RouteAttribute) -> Option<&RouteAddress>,
) -> Option<Ipv4Addr> {
    message
        .attributes
        .iter()
        .find_map(|attribute| match pick(attribute)? {
            RouteAddress::Inet(address) => Some(*address),
            _ => None,
        })
}

impl RouteTable for Netlink {
    async fn read(&self) -> Result<Table, RouteError> {
        let mut dump = self
            .handle
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute();
        let mut table = Table::default();
        while let Some(message) = dump
            .try_next()
            .await
            .map_err(|err| RouteError::Other(format!("listing routes: {err}")))?
        {
            let destination = address(&message, |attribute| match attribute {
                RouteAttribute::Destination(address) => Some(address),
                _ => None,
            })
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
            if message.header.kind == RouteType::Local {
                table.local.insert(destination);
                continue;
            }
            if table_of(&message) != u32::from(RouteHeader::RT_TABLE_MAIN) {
                continue;
            }
            table.routes.push(Route {
                destination: Cidr {
                    network: destination,
                    prefix: message.header.destination_prefix_length,
                },
                via: address(&message, |attribute| match attribute {
                    RouteAttribute::Gateway(address) => Some(address),
                    _ => None,
                }),
                owned: message.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL),
            });
        }
        Ok(table)
    }

    async fn set(&self, destination: Cidr, via: Ipv4Addr) -> Result<(), RouteError> {
        self.handle
            .route()
            .add(owned_route(destination, via))
            .replace()
            .execute()
            .await
            .map_err(|err| route_error(via, err))
    }

    async fn delete(&self, destination: Cidr, via: Ipv4Addr) -> Result<(), RouteError> {
        self.handle
            .route()
            .del(owned_route(destination, via))
            .execute()
            .await
            .map_err(|err| route_error(via, err))
    }
}
