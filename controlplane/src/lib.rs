//! The Flotilla control plane: a Kubernetes-compatible API server on etcd, the scheduler, the
//! controllers and IPAM; plus simulated (hollow) nodes for tests and benchmarks.

pub mod apiserver;
pub mod auth;
pub mod controllers;
pub mod dns;
pub mod etcd;
pub mod hollow;
pub mod ipam;
pub mod leader_election;
pub mod pod_routes;
pub mod run;
pub mod scheduler;
pub mod storage;
