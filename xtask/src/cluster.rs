//! `cargo xtask up/down/status`: the local cluster. Today only the test bed and the eBPF
//! pipeline exist, so `up` says plainly what it cannot do yet instead of pretending.

use std::process::Command;

use anyhow::bail;
use clap::Args;

use crate::{
    process::{is_root, output_of, run_visible},
    setup,
};

/// Options of `cargo xtask up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Number of worker nodes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
}

pub(crate) fn up(args: &UpArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the local cluster creates network namespaces and loads eBPF, so `up` needs root");
    }
    setup::run()?;
    run_visible(
        "building the workspace",
        crate::process::cargo().args(["build", "--workspace", "--exclude", "flotilla-ebpf"]),
    )?;
    bail!(
        "cannot bring up a {}-node cluster yet: the machine is set up and Flotilla builds, but the \
         control plane (API server on etcd, issue 2), the agent's pod lifecycle on containerd \
         (issue 4) and the CNI plugin with the VXLAN overlay (issue 5) are not implemented. What \
         works today: `cargo xtask test` builds a 2-node network-namespace test bed, loads the \
         eBPF packet counter into it and checks what it counts; `cargo xtask build-ebpf` shows \
         the eBPF objects",
        args.nodes
    )
}

pub(crate) fn down() -> anyhow::Result<()> {
    if !is_root() {
        bail!("removing namespaces and bpffs pins needs root");
    }
    let removed = flotilla_testbed::remove_with_prefix(flotilla_testbed::RUN_PREFIX)?;
    if removed.is_empty() {
        eprintln!("down: nothing to remove");
    }
    for path in removed {
        eprintln!("down: removed {}", path.display());
    }
    Ok(())
}

pub(crate) fn status() -> anyhow::Result<()> {
    let leftovers = flotilla_testbed::leftovers(flotilla_testbed::RUN_PREFIX);
    if leftovers.is_empty() {
        println!("no Flotilla cluster or test bed is running on this machine");
    } else {
        println!("Flotilla test-bed namespaces and pins on this machine:");
        for path in leftovers {
            let owner = path
                .file_name()
                .and_then(|name| flotilla_testbed::owner_pid(&name.to_string_lossy()));
            match owner {
                Some(pid) if std::path::Path::new("/proc").join(pid.to_string()).exists() => {
                    println!("  {} (run by pid {pid})", path.display());
                }
                _ => println!("  {} (stale: its run is gone)", path.display()),
            }
        }
    }
    if let Some(version) = output_of(Command::new("bpf-linker").arg("--version")) {
        println!("toolchain: {}", version.trim());
    }
    Ok(())
}
