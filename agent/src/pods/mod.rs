//! Pods on containerd: the CRI client, containerd's configuration, and the pod workers that make
//! the pods bound to this node real.
//!
//! Building blocks the pod worker calls, each kubelet's behaviour over plain data:
//! [`objects`] fetches the ConfigMaps and Secrets a pod references (and [`claims`] the storage
//! behind its PersistentVolumeClaims), [`env`] builds a container's
//! environment, [`volumes`] sets up, mounts and removes pod volumes (files written by
//! [`atomic_writer`]), [`handlers`] runs probe and lifecycle actions, and [`probes`] runs the
//! probe workers of a running container.

pub mod atomic_writer;
pub mod backoff;
pub mod claims;
pub mod containerd;
pub mod cri;
pub mod env;
pub mod events;
pub mod handlers;
pub mod manager;
pub mod objects;
pub mod probes;
pub mod spec;
pub mod status;
pub mod tokens;
pub mod volumes;
pub mod worker;
