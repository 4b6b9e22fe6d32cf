//! `cargo xtask test`: the README's test command and what CI runs. Setup first (so a fresh
//! machine works), then formatting and lints (host crates and the eBPF crate for its own target),
//! unit tests, the control plane's tests against real etcd processes, and the privileged
//! integration tests, serialised because they share the kernel. Each crate has one integration
//! test binary (`tests/integration/main.rs` with a module per area; the CNI plugin's
//! `tests/spec.rs`), so the stack is linked once per crate, not once per test file; `--test '*'`
//! still runs any binary someone adds (and a test in each `main.rs` fails if one appears).

use std::time::Instant;

use anyhow::bail;

use crate::{
    ebpf::bpf_cargo,
    process::{cargo, human, is_root, run_visible},
    setup,
};

pub(crate) fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    if !is_root() {
        bail!(
            "the integration tests create network namespaces and load eBPF programs, so they need \
             root; run `sudo -E cargo xtask test`"
        );
    }
    setup::run()?;
    run_visible(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    run_visible(
        "cargo clippy (host crates)",
        cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]),
    )?;
    run_visible(
        "cargo clippy (eBPF crate, bpfel-unknown-none)",
        bpf_cargo("clippy").args(["--bins", "--", "-D", "warnings"]),
    )?;
    run_visible("unit tests", cargo().args(["test", "--lib", "--bins"]))?;
    run_visible(
        "control-plane integration tests (one binary, real etcd per test, in parallel)",
        cargo().args(["test", "--package", "flotilla-controlplane", "--test", "*"]),
    )?;
    run_visible(
        "CNI plugin spec tests (the real flotilla-cni binary in namespaces, serialised)",
        cargo().args([
            "test",
            "--package",
            "flotilla-cni",
            "--test",
            "*",
            "--",
            "--test-threads=1",
        ]),
    )?;
    run_visible(
        "privileged integration tests (one binary, serialised)",
        cargo().args([
            "test",
            "--package",
            "flotilla-testbed",
            "--test",
            "*",
            "--",
            "--test-threads=1",
        ]),
    )?;
    eprintln!(
        "cargo xtask test: all steps passed in {}",
        human(started.elapsed())
    );
    Ok(())
}
