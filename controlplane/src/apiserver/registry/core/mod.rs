//! The core group (`v1`).

pub mod config_map;
pub mod endpoints;
pub mod event;
pub mod namespace;
pub mod node;
pub mod persistent_volume;
pub mod persistent_volume_claim;
pub mod pod;
pub(crate) mod pod_spec;
pub mod replication_controller;
pub mod secret;
pub mod service;
pub mod service_account;
