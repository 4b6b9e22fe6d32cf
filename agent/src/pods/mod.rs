//! Pods on containerd: the CRI client, containerd's configuration, and the pod workers that make
//! the pods bound to this node real.

pub mod atomic_writer;
pub mod containerd;
pub mod cri;
pub mod env;
pub mod handlers;
pub mod objects;
pub mod probes;
pub mod volumes;
