//! Pods on containerd: the CRI client, containerd's configuration, and the pod workers that make
//! the pods bound to this node real.

pub mod backoff;
pub mod containerd;
pub mod cri;
pub mod events;
pub mod manager;
pub mod spec;
pub mod status;
pub mod worker;
