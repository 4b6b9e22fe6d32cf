//! Storage the node provides: the built-in local-path provisioner ([`local_path`]). Mounting
//! claim-backed volumes into pods is the pod worker's ([`crate::pods::claims`]).

pub mod local_path;
