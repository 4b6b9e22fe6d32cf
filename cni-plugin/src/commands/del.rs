//! DEL: idempotent. Releases the attachment at the agent and deletes its host veth; what is
//! already gone (namespace, interface, the agent's record) counts as done. An agent that is
//! down does not block DEL: the links are deleted and the agent frees the address later, when
//! its garbage collection finds the sandbox gone from containerd.
//!
//! The pod-side interface is not deleted by name: deleting the host end of a veth pair deletes
//! its peer, wherever it is, so our pod interface goes with the host veth. An interface named
//! CNI_IFNAME in the pod while our host veth is gone is not ours: for example the one that made
//! ADD fail with "interface exists", which the runtime's DEL after that failure must not remove.

use tracing::warn;

use super::attachment;
use crate::{
    agent::Agent,
    env::Invocation,
    error::CniError,
    naming,
    net::{Net, Ns},
};

/// Runs DEL.
pub(super) async fn del<N: Net, A: Agent>(
    net: &N,
    agent: &A,
    invocation: &Invocation,
) -> Result<(), CniError> {
    let released = agent.release(attachment(invocation)).await;

    let mut hosts = vec![naming::host_veth(
        &invocation.container_id,
        &invocation.ifname,
    )];
    if let Ok(released) = &released {
        // Only a name of ours: a confused agent must not make us delete the node's uplink.
        let recorded = &released.host_ifname;
        if recorded.starts_with(naming::HOST_PREFIX) && !hosts.contains(recorded) {
            hosts.push(recorded.clone());
        }
    }
    // The links go even when the agent is unreachable: they are ours alone, and the retried
    // DEL finds them gone.
    let mut link_error = None;
    for host in &hosts {
        if let Err(err) = net.delete_link(Ns::Node, host).await {
            warn!(host, %err, "DEL: deleting the host veth failed");
            link_error.get_or_insert(err);
        }
    }
    match released {
        Ok(_) => {}
        // Removing a pod must not wait for the agent: the links are gone, so nothing can reach
        // the old address, and the agent releases it when it finds the sandbox gone from
        // containerd (its address garbage collection), so the address is not lost either.
        Err(err) if err.is_unavailable() => {
            warn!(%err, "DEL: the agent is unavailable; it releases the address once it finds the sandbox gone");
        }
        Err(err) => return Err(err.into_cni("releasing the pod's address at the agent")),
    }
    match link_error {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}
