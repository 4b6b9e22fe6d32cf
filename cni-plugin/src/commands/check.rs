//! CHECK: compares the kernel and the agent with the `prevResult` of the ADD. What was expected is
//! derived from prevResult, what is there read from the kernel, and the comparison is a plain
//! function over both, listing every difference.

use std::{net::Ipv4Addr, path::Path};

use super::{DEFAULT_GATEWAY, attachment, netns, require_netns};
use crate::{
    agent::{Agent, proto},
    config::{ConfigError, NetConf},
    env::Invocation,
    error::{CniError, code},
    naming,
    net::{LinkState, Net, Ns},
    result::{CniResult, format_mac},
};

/// The attachment as prevResult describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    ifname: String,
    netns: String,
    mac: Option<String>,
    address: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
    host: String,
    host_mac: Option<String>,
}

fn mismatch(msg: String) -> CniError {
    CniError::new(
        code::CHECK_MISMATCH,
        msg,
        "the pod's network is not what ADD set up; delete the pod so its sandbox is recreated",
    )
}

/// Reads what ADD reported for this attachment from `prev`.
fn expected(prev: &CniResult, invocation: &Invocation, netns: &Path) -> Result<Expected, CniError> {
    let netns = netns.display().to_string();
    let ifname = &invocation.ifname;
    let index = prev
        .interface_index(ifname, Some(&netns))
        .ok_or_else(|| mismatch(format!("prevResult lists no interface {ifname} in {netns}")))?;
    let ip = prev
        .ips
        .iter()
        .find(|ip| ip.interface == Some(index) && !ip.address.contains(':'))
        .ok_or_else(|| mismatch(format!("prevResult lists no IPv4 address on {ifname}")))?;
    let invalid = |what: String| {
        CniError::new(
            code::DECODING_FAILURE,
            format!("prevResult is invalid: {what}"),
            "prevResult must be the result of this plugin's ADD",
        )
    };
    let (address, prefix_len) = ip
        .address
        .split_once('/')
        .and_then(|(address, prefix)| Some((address.parse().ok()?, prefix.parse().ok()?)))
        .filter(|&(_, prefix): &(Ipv4Addr, u8)| prefix <= 32)
        .ok_or_else(|| invalid(format!("address {:?} is not IPv4 CIDR", ip.address)))?;
    let gateway = match &ip.gateway {
        None => DEFAULT_GATEWAY,
        Some(gateway) => gateway
            .parse()
            .map_err(|_| invalid(format!("gateway {gateway:?} is not an IPv4 address")))?,
    };
    let host = naming::host_veth(&invocation.container_id, ifname);
    let host_mac = prev
        .interface_index(&host, None)
        .and_then(|index| prev.interfaces[index].mac.clone());
    Ok(Expected {
        ifname: ifname.clone(),
        netns,
        mac: prev.interfaces[index].mac.clone(),
        address,
        prefix_len,
        gateway,
        host,
        host_mac,
    })
}

fn same_mac(expected: &str, actual: &[u8]) -> bool {
    expected.eq_ignore_ascii_case(&format_mac(actual))
}

/// Every way the kernel's `pod` and `host` links differ from `expected`.
fn differences(
    expected: &Expected,
    pod: Option<&LinkState>,
    host: Option<&LinkState>,
) -> Vec<String> {
    let mut found = Vec::new();
    let Expected { ifname, netns, .. } = expected;
    match pod {
        None => found.push(format!("interface {ifname} is missing in {netns}")),
        Some(pod) => {
            if let Some(mac) = &expected.mac
                && !same_mac(mac, &pod.mac)
            {
                found.push(format!(
                    "{ifname} has MAC {}, prevResult says {mac}",
                    format_mac(&pod.mac)
                ));
            }
            if !pod.up {
                found.push(format!("{ifname} is down"));
            }
            let address = (expected.address, expected.prefix_len);
            if !pod.addresses.contains(&address) {
                found.push(format!(
                    "{ifname} lacks address {}/{}",
                    expected.address, expected.prefix_len
                ));
            }
            let default_route = pod
                .routes
                .iter()
                .any(|route| route.prefix_len == 0 && route.gateway == Some(expected.gateway));
            if !default_route {
                found.push(format!(
                    "{netns} has no default route via {} dev {ifname}",
                    expected.gateway
                ));
            }
            let neighbour = pod.neighbours.iter().any(|neighbour| {
                neighbour.ip == expected.gateway
                    && neighbour.permanent
                    && host.is_none_or(|host| neighbour.mac == host.mac)
            });
            if !neighbour {
                found.push(format!(
                    "{ifname} has no permanent neighbour entry for the gateway {} with the host veth's MAC",
                    expected.gateway
                ));
            }
        }
    }
    let host_name = &expected.host;
    match host {
        None => found.push(format!("host veth {host_name} is missing")),
        Some(host) => {
            if let Some(mac) = &expected.host_mac
                && !same_mac(mac, &host.mac)
            {
                found.push(format!(
                    "host veth {host_name} has MAC {}, prevResult says {mac}",
                    format_mac(&host.mac)
                ));
            }
            if !host.up {
                found.push(format!("host veth {host_name} is down"));
            }
            let route = host.routes.iter().any(|route| {
                route.dst == expected.address && route.prefix_len == 32 && route.gateway.is_none()
            });
            if !route {
                found.push(format!(
                    "the node has no route {}/32 dev {host_name}",
                    expected.address
                ));
            }
        }
    }
    found
}

/// Runs CHECK.
pub(super) async fn check<N: Net, A: Agent>(
    net: &N,
    agent: &A,
    invocation: &Invocation,
    conf: &NetConf,
) -> Result<(), CniError> {
    let prev = conf.prev_result()?.ok_or(ConfigError::MissingPrevResult)?;
    let netns = netns(invocation)?;
    require_netns(net, netns).await?;
    let expected = expected(&prev, invocation, netns)?;
    let pod = net.inspect_link(Ns::Pod(netns), &expected.ifname).await?;
    let host = net.inspect_link(Ns::Node, &expected.host).await?;
    let mut found = differences(&expected, pod.as_ref(), host.as_ref());
    let agent_view = agent
        .check(proto::CheckRequest {
            attachment: Some(attachment(invocation)),
            address: expected.address.to_string(),
        })
        .await;
    if let Err(err) = agent_view {
        match err.code() {
            tonic::Code::NotFound | tonic::Code::FailedPrecondition => {
                found.push(format!("the agent disagrees: {err}"));
            }
            _ if found.is_empty() => {
                return Err(err.into_cni("checking the attachment with the agent"));
            }
            _ => found.push(format!("the agent could not check it: {err}")),
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(mismatch(format!(
            "the attachment differs from prevResult: {}",
            found.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        env::{Command, PodArgs},
        net::{NeighbourState, RouteState},
        result::{Interface, IpConfig},
    };

    const HOST_MAC: [u8; 6] = [0xaa, 0, 0, 0, 0, 1];
    const POD_MAC: [u8; 6] = [0xaa, 0, 0, 0, 0, 2];

    fn invocation() -> Invocation {
        Invocation {
            command: Command::Check,
            container_id: "c1".into(),
            netns: Some("/run/netns/p".into()),
            ifname: "eth0".into(),
            pod: PodArgs::default(),
        }
    }

    fn prev() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: naming::host_veth("c1", "eth0"),
                    mac: Some(format_mac(&HOST_MAC)),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some(format_mac(&POD_MAC).to_uppercase()),
                    sandbox: Some("/run/netns/p".into()),
                    ..Interface::default()
                },
            ],
            ips: vec![IpConfig {
                address: "10.244.1.7/32".into(),
                gateway: Some("169.254.1.1".into()),
                interface: Some(1),
                ..IpConfig::default()
            }],
            ..CniResult::default()
        }
    }

    fn good_pod() -> LinkState {
        LinkState {
            index: 2,
            mac: POD_MAC.to_vec(),
            mtu: Some(1450),
            up: true,
            addresses: vec![(Ipv4Addr::new(10, 244, 1, 7), 32)],
            routes: vec![
                RouteState {
                    dst: DEFAULT_GATEWAY,
                    prefix_len: 32,
                    gateway: None,
                },
                RouteState {
                    dst: Ipv4Addr::UNSPECIFIED,
                    prefix_len: 0,
                    gateway: Some(DEFAULT_GATEWAY),
                },
            ],
            neighbours: vec![NeighbourState {
                ip: DEFAULT_GATEWAY,
                mac: HOST_MAC.to_vec(),
                permanent: true,
            }],
        }
    }

    fn good_host() -> LinkState {
        LinkState {
            index: 9,
            mac: HOST_MAC.to_vec(),
            mtu: Some(1450),
            up: true,
            routes: vec![RouteState {
                dst: Ipv4Addr::new(10, 244, 1, 7),
                prefix_len: 32,
                gateway: None,
            }],
            ..LinkState::default()
        }
    }

    fn expect() -> Expected {
        expected(&prev(), &invocation(), Path::new("/run/netns/p")).unwrap()
    }

    #[test]
    fn reads_the_expectation_from_prev_result() {
        let expected = expect();
        assert_eq!(expected.address, Ipv4Addr::new(10, 244, 1, 7));
        assert_eq!(expected.prefix_len, 32);
        assert_eq!(expected.gateway, DEFAULT_GATEWAY);
        assert_eq!(expected.host_mac.as_deref(), Some("aa:00:00:00:00:01"));
    }

    #[test]
    fn a_prev_result_without_our_interface_is_a_mismatch() {
        let err = expected(&prev(), &invocation(), Path::new("/run/netns/other")).unwrap_err();
        assert_eq!(err.code, code::CHECK_MISMATCH);
        let mut prev = prev();
        prev.ips.clear();
        let err = expected(&prev, &invocation(), Path::new("/run/netns/p")).unwrap_err();
        assert_eq!(err.code, code::CHECK_MISMATCH);
    }

    #[test]
    fn a_matching_attachment_has_no_differences() {
        assert_eq!(
            differences(&expect(), Some(&good_pod()), Some(&good_host())),
            Vec::<String>::new()
        );
    }

    #[test]
    fn every_difference_is_listed() {
        let mut pod = good_pod();
        pod.mac = vec![1, 2, 3, 4, 5, 6];
        pod.up = false;
        pod.addresses.clear();
        pod.routes.clear();
        pod.neighbours[0].permanent = false;
        let mut host = good_host();
        host.routes.clear();
        let found = differences(&expect(), Some(&pod), Some(&host));
        assert_eq!(found.len(), 6, "{found:#?}");
        assert!(found[0].contains("MAC 01:02:03:04:05:06"), "{found:#?}");
        assert!(
            found
                .iter()
                .any(|f| f.contains("lacks address 10.244.1.7/32"))
        );
        assert!(found.iter().any(|f| f.contains("default route")));
        assert!(found.iter().any(|f| f.contains("no route 10.244.1.7/32")));
    }

    #[test]
    fn missing_links_are_differences() {
        let found = differences(&expect(), None, None);
        assert_eq!(found.len(), 2, "{found:#?}");
        assert!(found[0].contains("eth0 is missing"));
        assert!(found[1].contains("host veth flt"));
    }
}
