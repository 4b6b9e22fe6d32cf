//! The Flotilla control plane: Kubernetes-compatible API on etcd, scheduler, controllers, IPAM.
//!
//! Built so far: the etcd storage layer and the supervisor of the control plane's own etcd.

pub mod etcd;
pub mod storage;
