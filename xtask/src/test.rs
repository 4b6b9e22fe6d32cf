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

#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, fs, path::Path};

    use crate::process::workspace_root;

    /// The crates whose integration tests are one binary, `tests/integration/main.rs`.
    const ONE_BINARY: [&str; 2] = ["controlplane", "tests"];

    /// In each of [`ONE_BINARY`], every file beside `tests/integration/main.rs` is a module of it
    /// (a file nobody declares would never be compiled, let alone run), and no other
    /// integration-test binary sits beside it.
    #[test]
    fn every_test_file_is_a_module_of_its_crates_one_binary() -> std::io::Result<()> {
        for krate in ONE_BINARY {
            let tests = workspace_root().join(krate).join("tests");
            let main = fs::read_to_string(tests.join("integration").join("main.rs"))?;
            let declared: BTreeSet<String> = main
                .lines()
                .filter_map(|line| line.strip_prefix("mod ")?.strip_suffix(';'))
                .map(str::to_owned)
                .collect();
            let mut files = BTreeSet::new();
            for entry in fs::read_dir(tests.join("integration"))? {
                let path = entry?.path();
                files.extend(module_name(&path));
            }
            assert_eq!(
                files, declared,
                "{krate}: each .rs file in tests/integration/ needs a `mod` line in main.rs"
            );
            let mut others = Vec::new();
            for entry in fs::read_dir(&tests)? {
                let name = entry?.file_name();
                if name != "integration" {
                    others.push(name);
                }
            }
            assert!(
                others.is_empty(),
                "{krate}: tests/ should hold only integration/ (one test binary per crate); move \
                 {others:?} into it as modules"
            );
        }
        Ok(())
    }

    /// The module a file or directory of `tests/integration/` would be, if any.
    fn module_name(path: &Path) -> Option<String> {
        let name = if path.is_dir() && path.join("mod.rs").exists() {
            path.file_name()
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            path.file_stem().filter(|stem| *stem != "main")
        } else {
            None
        };
        name.map(|name| name.to_string_lossy().into_owned())
    }
}
