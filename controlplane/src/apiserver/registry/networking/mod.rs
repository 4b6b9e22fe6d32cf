//! `networking.k8s.io/v1`.

pub mod network_policy;
