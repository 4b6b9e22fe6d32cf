//! The eBPF datapath of one node: loading the embedded programs, pinning them under
//! `/sys/fs/bpf/flotilla/<node>/` so they outlive the agent, and reading their maps back.

pub mod announce;
pub mod attach;
pub mod conntrack;
pub mod counters;
pub mod loader;
pub mod maglev;
pub mod masquerade;
pub mod metrics;
pub mod network;
pub mod overlay;
pub mod pins;
pub mod policy;
pub mod reconcile;
pub mod services;
pub mod start;
pub mod tunnels;

use std::path::PathBuf;

use flotilla_common::services::{PROTO_SCTP, PROTO_TCP, PROTO_UDP};

/// The IP protocol number of a Kubernetes `protocol` field (TCP when unset), or None for a
/// protocol Kubernetes does not define.
pub(crate) fn protocol_number(protocol: Option<&str>) -> Option<u8> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Some(PROTO_TCP),
        "UDP" => Some(PROTO_UDP),
        "SCTP" => Some(PROTO_SCTP),
        _ => None,
    }
}

/// The one of `all` called `value` (a command-line choice), or an error naming `what` and the
/// choices.
pub(crate) fn by_name<T: Copy>(
    value: &str,
    all: &[T],
    name: fn(T) -> &'static str,
    what: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|choice| name(*choice) == value)
        .ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|choice| name(*choice)).collect();
            format!("unknown {what} {value:?}; use one of {}", names.join(", "))
        })
}

/// How the `bpf` listings print an IP protocol number.
pub(crate) fn protocol_name(proto: u8) -> String {
    match proto {
        PROTO_TCP => "TCP".into(),
        PROTO_UDP => "UDP".into(),
        PROTO_SCTP => "SCTP".into(),
        1 => "ICMP".into(),
        other => other.to_string(),
    }
}

/// Errors from loading, attaching or reading the datapath.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// The node name cannot be used as a directory name under bpffs.
    #[error("invalid node name {name:?}: {reason}")]
    InvalidNodeName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// bpffs is not mounted where the pins must go.
    #[error(
        "bpffs is not mounted at {0}; mount it with `mount -t bpf bpf {0}` or run `cargo xtask setup`"
    )]
    BpffsNotMounted(PathBuf),
    /// The interface to attach to does not exist in this network namespace.
    #[error("interface {iface:?} does not exist in the agent's network namespace")]
    NoSuchInterface {
        /// The interface name given.
        iface: String,
    },
    /// Nothing is pinned at the expected place, e.g. the counter was never attached on this node.
    #[error("nothing pinned at {path}: {what}")]
    NotPinned {
        /// The pin path that was looked up.
        path: PathBuf,
        /// What was expected there and how to create it.
        what: &'static str,
    },
    /// A file system operation on bpffs failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Loading the eBPF object into the kernel failed (verifier, permissions, missing kernel feature).
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program operation (load, attach) failed.
    #[error("program {program}: {source}")]
    Program {
        /// The program's name.
        program: &'static str,
        /// The underlying error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Map {
        /// The map's name or pin path.
        map: String,
        /// The underlying error.
        #[source]
        source: aya::maps::MapError,
    },
    /// Pinning or re-opening a pinned link failed.
    #[error("link pin {path}: {message}")]
    Link {
        /// The link's pin path.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The embedded eBPF object does not contain an expected program or map (build mismatch).
    #[error("the embedded eBPF object has no {kind} named {name:?}; rebuild the agent")]
    MissingObject {
        /// "program" or "map".
        kind: &'static str,
        /// The missing name.
        name: &'static str,
    },
}

/// Locks `mutex`, ignoring poisoning: every structure behind these locks is repaired by the
/// next idempotent write, so a panic while one was held leaves nothing a retry cannot mend.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
