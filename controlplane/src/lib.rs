//! The Flotilla control plane: a Kubernetes-compatible API server on etcd (scheduler,
//! controllers and IPAM follow).

pub mod apiserver;
pub mod auth;
pub mod controllers;
pub mod etcd;
pub mod ipam;
pub mod run;
pub mod scheduler;
pub mod storage;
