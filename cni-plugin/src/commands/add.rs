//! ADD: a veth pair between the node's namespace and the pod, an address from the agent, the
//! routes and the gateway neighbour, then the agent's datapath registration. Any failure after
//! the first change undoes everything, so a failed ADD leaves no link and no reserved address.

use std::{net::Ipv4Addr, path::Path};

use tracing::{debug, warn};

use super::{DEFAULT_GATEWAY, attachment, netns, require_netns};
use crate::{
    agent::{Agent, proto},
    config::NetConf,
    env::Invocation,
    error::{CniError, code},
    naming,
    net::{HostVeth, Net, Ns, PodSetup},
    result::{CniResult, Interface, IpConfig, Route, format_mac},
    timings,
};

/// The smallest and largest MTU accepted from the agent.
const MTU_RANGE: std::ops::RangeInclusive<u32> = 68..=65_535;

/// What the pod gets, decided from the agent's allocation and the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    address: Ipv4Addr,
    prefix_len: u8,
    gateway: Ipv4Addr,
    mtu: Option<u32>,
}

impl Plan {
    /// Validates the agent's answer; zero values mean "not set" in proto3.
    fn new(
        allocation: &proto::AllocateResponse,
        mtu_override: Option<u32>,
    ) -> Result<Self, CniError> {
        let bad = |what: String| {
            CniError::new(
                code::AGENT_ERROR,
                format!("the flotilla agent's Allocate answer is invalid: {what}"),
                "the agent and flotilla-cni disagree about agent/proto/cni.proto; install matching versions",
            )
        };
        let address: Ipv4Addr = allocation.address.parse().map_err(|_| {
            bad(format!(
                "address {:?} is not an IPv4 address",
                allocation.address
            ))
        })?;
        let prefix_len = match allocation.prefix_len {
            0 => 32,
            len @ 1..=32 => u8::try_from(len).unwrap_or(32),
            len => return Err(bad(format!("prefix length {len} is larger than 32"))),
        };
        let gateway = if allocation.gateway.is_empty() {
            DEFAULT_GATEWAY
        } else {
            allocation.gateway.parse().map_err(|_| {
                bad(format!(
                    "gateway {:?} is not an IPv4 address",
                    allocation.gateway
                ))
            })?
        };
        let mtu = match (mtu_override, allocation.mtu) {
            (Some(mtu), _) => Some(mtu),
            (None, 0) => None,
            (None, mtu) if MTU_RANGE.contains(&mtu) => Some(mtu),
            (None, mtu) => return Err(bad(format!("MTU {mtu} is out of range"))),
        };
        Ok(Self {
            address,
            prefix_len,
            gateway,
            mtu,
        })
    }
}

/// What ADD created, for the result.
struct Attached {
    plan: Plan,
    host: HostVeth,
    pod_mac: [u8; 6],
}

/// Runs ADD and returns the result (prevResult with this attachment appended).
pub(super) async fn add<N: Net, A: Agent>(
    net: &N,
    agent: &A,
    invocation: &Invocation,
    conf: &NetConf,
) -> Result<CniResult, CniError> {
    let netns = netns(invocation)?;
    // Everything that can be checked is checked before anything changes.
    let prev = conf.prev_result()?;
    require_netns(net, netns).await?;
    if net.link_exists(Ns::Pod(netns), &invocation.ifname).await? {
        return Err(CniError::new(
            code::INTERFACE_EXISTS,
            format!(
                "interface {} already exists in network namespace {}",
                invocation.ifname,
                netns.display()
            ),
            "flotilla-cni creates the interface itself; choose another CNI_IFNAME or DEL the previous attachment first (nothing was changed)",
        ));
    }

    timings::mark("checks");
    let allocation = agent
        .allocate(proto::AllocateRequest {
            attachment: Some(attachment(invocation)),
            netns: netns.display().to_string(),
            pod_namespace: invocation.pod.namespace.clone(),
            pod_name: invocation.pod.name.clone(),
            pod_uid: invocation.pod.uid.clone(),
        })
        .await
        .map_err(|err| err.into_cni("allocating an address for the pod"))?;
    debug!(address = allocation.address, "allocated");
    timings::mark("allocate");

    let host = naming::host_veth(&invocation.container_id, &invocation.ifname);
    match attach(net, agent, invocation, conf, netns, &allocation, &host).await {
        Ok(attached) => Ok(result(
            prev.unwrap_or_default(),
            invocation,
            netns,
            &host,
            &attached,
        )),
        Err(err) => Err(undo(net, agent, invocation, &host, err).await),
    }
}

/// The steps after the allocation; the caller undoes them all on error.
async fn attach<N: Net, A: Agent>(
    net: &N,
    agent: &A,
    invocation: &Invocation,
    conf: &NetConf,
    netns: &Path,
    allocation: &proto::AllocateResponse,
    host: &str,
) -> Result<Attached, CniError> {
    let plan = Plan::new(allocation, conf.mtu())?;
    // A host veth of this attachment can only be left over from an ADD that died before it
    // could undo itself (the runtime never ADDs an attachment twice without a DEL between).
    if net.delete_link(Ns::Node, host).await? {
        warn!(host, "deleted a leftover host veth of this attachment");
    }
    let host_veth = net
        .create_veth(host, netns, &invocation.ifname, plan.mtu)
        .await?;
    debug!(host, "created the veth pair");
    timings::mark("veth");
    let pod_mac = net
        .configure_pod(
            netns,
            &PodSetup {
                ifname: invocation.ifname.clone(),
                address: plan.address,
                prefix_len: plan.prefix_len,
                gateway: plan.gateway,
                gateway_mac: host_veth.mac,
            },
        )
        .await?;
    debug!("configured the pod's interface");
    timings::mark("pod");
    net.configure_host(host, plan.address).await?;
    debug!("configured the host veth");
    timings::mark("host");
    agent
        .register_endpoint(proto::RegisterEndpointRequest {
            attachment: Some(attachment(invocation)),
            address: plan.address.to_string(),
            host_ifname: host.to_owned(),
            host_ifindex: host_veth.index,
            host_mac: host_veth.mac.to_vec(),
            pod_mac: pod_mac.to_vec(),
        })
        .await
        .map_err(|err| err.into_cni("registering the pod's endpoint with the agent"))?;
    debug!("registered the endpoint");
    timings::mark("register");
    Ok(Attached {
        plan,
        host: host_veth,
        pod_mac,
    })
}

/// Undoes a failed ADD: deletes the host veth (which takes its peer, wherever it is, with its
/// addresses, routes and neighbours) and releases the address. Returns `err`, noting any
/// cleanup that failed too.
async fn undo<N: Net, A: Agent>(
    net: &N,
    agent: &A,
    invocation: &Invocation,
    host: &str,
    mut err: CniError,
) -> CniError {
    if let Err(cleanup) = net.delete_link(Ns::Node, host).await {
        warn!(%cleanup, "undoing a failed ADD: deleting the host veth failed");
        err = err.with_more_details(&format!(
            "undoing the ADD failed too: {cleanup}; the runtime's DEL will retry"
        ));
    }
    if let Err(cleanup) = agent.release(attachment(invocation)).await {
        warn!(%cleanup, "undoing a failed ADD: releasing the address failed");
        err = err.with_more_details(&format!(
            "releasing the address failed too: {cleanup}; the runtime's DEL will retry"
        ));
    }
    err
}

/// `prev` with the host veth, the pod interface, its address and default route appended.
fn result(
    mut result: CniResult,
    invocation: &Invocation,
    netns: &Path,
    host: &str,
    attached: &Attached,
) -> CniResult {
    let plan = attached.plan;
    result.interfaces.push(Interface {
        name: host.to_owned(),
        mac: Some(format_mac(&attached.host.mac)),
        mtu: plan.mtu,
        ..Interface::default()
    });
    result.interfaces.push(Interface {
        name: invocation.ifname.clone(),
        mac: Some(format_mac(&attached.pod_mac)),
        mtu: plan.mtu,
        sandbox: Some(netns.display().to_string()),
        ..Interface::default()
    });
    result.ips.push(IpConfig {
        address: format!("{}/{}", plan.address, plan.prefix_len),
        gateway: Some(plan.gateway.to_string()),
        interface: Some(result.interfaces.len() - 1),
        ..IpConfig::default()
    });
    result.routes.push(Route {
        dst: "0.0.0.0/0".into(),
        gw: Some(plan.gateway.to_string()),
        ..Route::default()
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocation(
        address: &str,
        prefix_len: u32,
        gateway: &str,
        mtu: u32,
    ) -> proto::AllocateResponse {
        proto::AllocateResponse {
            address: address.into(),
            prefix_len,
            gateway: gateway.into(),
            mtu,
            pod_cidr: "10.244.1.0/24".into(),
        }
    }

    #[test]
    fn plan_takes_the_agents_values() {
        let plan = Plan::new(&allocation("10.244.1.7", 32, "169.254.1.1", 1450), None).unwrap();
        assert_eq!(
            plan,
            Plan {
                address: Ipv4Addr::new(10, 244, 1, 7),
                prefix_len: 32,
                gateway: DEFAULT_GATEWAY,
                mtu: Some(1450)
            }
        );
    }

    #[test]
    fn plan_fills_unset_values_and_the_config_mtu_wins() {
        let plan = Plan::new(&allocation("10.244.1.7", 0, "", 0), None).unwrap();
        assert_eq!(
            (plan.prefix_len, plan.gateway, plan.mtu),
            (32, DEFAULT_GATEWAY, None)
        );
        let plan = Plan::new(&allocation("10.244.1.7", 32, "", 1450), Some(1400)).unwrap();
        assert_eq!(plan.mtu, Some(1400));
    }

    #[test]
    fn plan_rejects_malformed_answers() {
        for bad in [
            allocation("", 32, "", 0),
            allocation("fd00::1", 32, "", 0),
            allocation("10.0.0.1", 33, "", 0),
            allocation("10.0.0.1", 32, "gw", 0),
            allocation("10.0.0.1", 32, "", 20),
        ] {
            let err = Plan::new(&bad, None).unwrap_err();
            assert_eq!(err.code, code::AGENT_ERROR, "{bad:?}");
        }
    }
}
