//! Map keys and values shared by Flotilla's eBPF programs (`ebpf/`) and the node agent (`agent/`).
//!
//! Every type here is `#[repr(C)]` with explicit padding so the kernel side and userspace agree on
//! the layout byte for byte. With the `user` feature the types implement `aya::Pod`.
#![no_std]

pub mod announce;
pub mod counters;
pub mod masquerade;
pub mod network;
pub mod policy;
pub mod services;

/// Maps the agent pins under `/sys/fs/bpf/flotilla/<node>/maps/` so their state outlives it.
pub const PINNED_MAPS: &[&str] = &[
    counters::PROTO_COUNTERS_MAP,
    network::ENDPOINTS_MAP,
    network::TUNNELS_MAP,
    network::NODE_CONFIG_MAP,
    network::DROPS_MAP,
    services::SERVICES_MAP,
    services::BACKENDS_MAP,
    services::SOCK_REVNAT_MAP,
    services::SERVICE_CT_MAP,
    masquerade::MASQUERADE_CT_MAP,
    masquerade::MASQUERADE_FRAGMENTS_MAP,
    services::AFFINITY_MAP,
    services::MAGLEV_MAP,
    policy::IPCACHE_MAP,
    policy::POLICY_MAP,
    policy::POLICY_CT_MAP,
    policy::POLICY_EVENTS_MAP,
    announce::L2_RESPONDER_MAP,
];
