//! The CNI commands, written against the [`Net`] and [`Agent`] traits so their logic (ordering,
//! rollback, idempotency, version gating) is tested with fakes, without root.

mod add;
mod check;
mod del;

use std::{net::Ipv4Addr, path::Path};

use serde_json::Value;

use crate::{
    agent::{Agent, proto},
    config::NetConf,
    env::{Command, Invocation},
    error::{CniError, code},
    naming,
    net::{Net, NetnsState, Ns},
    version::version_reply,
};

/// The pod's gateway when the agent does not name one: link-local, answered by the host veth
/// (a permanent neighbour entry), so it never collides with a podCIDR.
pub const DEFAULT_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// Runs `invocation` with `conf`; `agent_for` builds the agent client for the configured socket.
/// Returns what to print on success (None: nothing).
pub async fn run<N: Net, A: Agent>(
    invocation: &Invocation,
    conf: &NetConf,
    net: &N,
    agent_for: impl FnOnce(&Path) -> A,
) -> Result<Option<Value>, CniError> {
    if invocation.command == Command::Version {
        return Ok(Some(version_reply()));
    }
    conf.require_version_for(invocation.command)?;
    let agent = agent_for(&conf.agent_socket()?);
    match invocation.command {
        Command::Add => add::add(net, &agent, invocation, conf)
            .await
            .map(|result| Some(result.to_json(conf.cni_version))),
        Command::Del => del::del(net, &agent, invocation).await.map(|()| None),
        Command::Check => check::check(net, &agent, invocation, conf)
            .await
            .map(|()| None),
        Command::Status => status(&agent).await.map(|()| None),
        Command::Gc => gc(net, &agent, conf).await.map(|()| None),
        Command::Version => Ok(Some(version_reply())),
    }
}

/// The attachment as the agent's API names it.
fn attachment(invocation: &Invocation) -> proto::Attachment {
    proto::Attachment {
        container_id: invocation.container_id.clone(),
        ifname: invocation.ifname.clone(),
    }
}

/// CNI_NETNS, which the environment parser guarantees for ADD and CHECK.
fn netns(invocation: &Invocation) -> Result<&Path, CniError> {
    invocation.netns.as_deref().ok_or_else(|| {
        CniError::new(
            code::INVALID_ENV,
            "CNI_NETNS is not set",
            "set CNI_NETNS to the path of the container's network namespace",
        )
    })
}

/// Fails unless `netns` is a network namespace other than the plugin's own.
async fn require_netns<N: Net>(net: &N, netns: &Path) -> Result<(), CniError> {
    let shown = netns.display();
    match net.netns_state(netns).await? {
        NetnsState::Present => Ok(()),
        NetnsState::Missing => Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("network namespace {shown} (CNI_NETNS) does not exist"),
            "the container is gone or CNI_NETNS is wrong; create the pod sandbox again",
        )),
        NetnsState::NotNamespace => Err(CniError::new(
            code::UNKNOWN_CONTAINER,
            format!("{shown} (CNI_NETNS) is not a network namespace"),
            "set CNI_NETNS to a network namespace file such as /var/run/netns/<name> or /proc/<pid>/ns/net",
        )),
        NetnsState::Own => Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_NETNS {shown} is the plugin's own (the node's) network namespace"),
            "set CNI_NETNS to the container's network namespace, not the node's",
        )),
    }
}

/// STATUS: ready when the agent says so; anything else means ADD cannot be served now.
async fn status<A: Agent>(agent: &A) -> Result<(), CniError> {
    let not_available = |msg: String| {
        CniError::new(
            code::PLUGIN_NOT_AVAILABLE,
            msg,
            "pods cannot get networking on this node until the flotilla agent is running and ready; check its logs",
        )
    };
    match agent.status().await {
        Ok(status) if status.ready => Ok(()),
        Ok(status) => Err(not_available(format!(
            "the flotilla agent is not ready: {}",
            if status.message.is_empty() {
                "it gave no reason"
            } else {
                &status.message
            }
        ))),
        Err(err) => Err(not_available(err.to_string())),
    }
}

/// GC: the agent releases every attachment not listed and deletes their host veths; the plugin
/// deletes those veths too, in case the agent could not, and reports what it could not delete.
async fn gc<N: Net, A: Agent>(net: &N, agent: &A, conf: &NetConf) -> Result<(), CniError> {
    let valid = conf
        .valid_attachments()?
        .into_iter()
        .map(|id| proto::Attachment {
            container_id: id.container_id,
            ifname: id.ifname,
        })
        .collect();
    let released = agent
        .gc(valid)
        .await
        .map_err(|err| err.into_cni("garbage-collecting stale attachments"))?;
    let mut failures = Vec::new();
    for attachment in released {
        let host = naming::host_veth(&attachment.container_id, &attachment.ifname);
        if let Err(err) = net.delete_link(Ns::Node, &host).await {
            failures.push(err.to_string());
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(CniError::new(
            code::NETLINK_FAILED,
            format!(
                "the agent released the stale attachments, but deleting their host veths failed: {}",
                failures.join("; ")
            ),
            "GC will be retried by the runtime; delete the listed flt* links by hand if they stay",
        ))
    }
}

#[cfg(test)]
pub(crate) mod fakes;

#[cfg(test)]
mod tests;
