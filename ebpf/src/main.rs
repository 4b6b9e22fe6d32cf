//! Flotilla's eBPF programs, linked into one object (`flotilla-datapath`) that the agent embeds.
#![no_std]
#![no_main]

mod announce;
mod counters;
mod masquerade;
mod nat;
mod network;
mod policy;
mod services;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    loop {}
}

/// GPL-compatible licence, required by the kernel for several helpers the datapath will use.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
