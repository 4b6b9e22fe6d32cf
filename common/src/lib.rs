//! Map keys and values shared by Flotilla's eBPF programs (`ebpf/`) and the node agent (`agent/`).
//!
//! Every type here is `#[repr(C)]` with explicit padding so the kernel side and userspace agree on
//! the layout byte for byte. With the `user` feature the types implement `aya::Pod`.
#![no_std]

pub mod counters;
