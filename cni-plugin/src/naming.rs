//! Names of the links flotilla-cni creates in the node's namespace. They are derived from the
//! attachment alone, so DEL and GC find a pod's host veth without any state of their own.

use sha2::{Digest as _, Sha256};

/// Prefix of every host-side veth (the agent and the eBPF loader recognise pod veths by it).
pub const HOST_PREFIX: &str = "flt";

/// The first 12 hex digits of sha256("<container id>/<ifname>").
fn digest(container_id: &str, ifname: &str) -> String {
    let hash = Sha256::digest(format!("{container_id}/{ifname}").as_bytes());
    hash.iter()
        .take(6)
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The host-side veth of an attachment: `flt` + 12 hex digits, 15 characters (IFNAMSIZ - 1).
pub fn host_veth(container_id: &str, ifname: &str) -> String {
    format!("{HOST_PREFIX}{}", digest(container_id, ifname))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_15_characters() {
        let host = host_veth("abc123", "eth0");
        assert_eq!(host.len(), 15);
        assert!(host.starts_with("flt"));
        assert_eq!(host, host_veth("abc123", "eth0"));
        // sha256("abc123/eth0") starts with these 12 hex digits.
        let expected = Sha256::digest(b"abc123/eth0");
        assert_eq!(&host[3..5], format!("{:02x}", expected[0]));
        assert_ne!(host, host_veth("abc123", "eth1"));
        assert_ne!(host, host_veth("abc124", "eth0"));
    }
}
