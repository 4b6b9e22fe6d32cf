//! `cargo xtask setup`: take a fresh machine of the project's kind to one that builds and tests
//! Flotilla. It observes what is there, plans only what is missing (a plain function, unit
//! tested), then acts; a second run plans nothing and says so.

use std::{path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::process::{is_root, output_of, run_logged};

/// Debian packages Flotilla needs, each with the reason (printed when it gets installed).
pub(crate) const APT_PACKAGES: &[(&str, &str)] = &[
    (
        "llvm-22-dev",
        "libLLVM 22 for bpf-linker (must match rustc's LLVM)",
    ),
    (
        "protobuf-compiler",
        "protoc for the CRI and etcd gRPC clients",
    ),
    (
        "libprotobuf-dev",
        "google/protobuf/*.proto that etcd-client's protos import (only a Recommends of protoc)",
    ),
    ("etcd-server", "the control plane's store"),
    ("etcd-client", "etcdctl, to inspect the store"),
    ("containerd", "the container runtime pods run on"),
    ("runc", "containerd's OCI runtime"),
    (
        "containernetworking-plugins",
        "the reference loopback CNI plugin containerd runs for every pod's lo",
    ),
    (
        "busybox-static",
        "ping/nc in test namespaces and tiny images",
    ),
    ("iproute2", "ip/tc/bridge to inspect nodes and pods"),
    (
        "iptables",
        "the kube-proxy baseline of the service benchmarks",
    ),
    (
        "nftables",
        "nft: the tests check no masquerade rule is left on a node (the datapath masquerades)",
    ),
    ("bpftool", "inspecting eBPF objects and pinned maps"),
    (
        "tzdata",
        "the time zone database CronJob schedules and their timeZone validation read",
    ),
    (
        "systemd",
        "systemd-analyze, with which the install test checks the unit files",
    ),
];

/// The bpf-linker release that matches rustc 1.95's LLVM 22 (see shared/PLATFORM.md).
pub(crate) const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPFFS: &str = "/sys/fs/bpf";

/// What is on the machine now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) missing_packages: Vec<&'static str>,
    pub(crate) rust_src_installed: bool,
    /// `bpf-linker --version` output, if it runs.
    pub(crate) bpf_linker_version: Option<String>,
    pub(crate) bpffs_mounted: bool,
}

/// One thing setup does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    AptInstall(Vec<&'static str>),
    AddRustSrc,
    InstallBpfLinker { replacing: Option<String> },
    MountBpffs,
}

/// Decides what to do: exactly what is missing, in dependency order (bpf-linker links against
/// the LLVM the apt step installs).
pub(crate) fn plan(observed: &Observed) -> Vec<Action> {
    let mut actions = Vec::new();
    if !observed.missing_packages.is_empty() {
        actions.push(Action::AptInstall(observed.missing_packages.clone()));
    }
    if !observed.rust_src_installed {
        actions.push(Action::AddRustSrc);
    }
    let linker_ok = observed
        .bpf_linker_version
        .as_deref()
        .is_some_and(|version| {
            version
                .split_whitespace()
                .any(|word| word == BPF_LINKER_VERSION)
        });
    if !linker_ok {
        actions.push(Action::InstallBpfLinker {
            replacing: observed.bpf_linker_version.clone(),
        });
    }
    if !observed.bpffs_mounted {
        actions.push(Action::MountBpffs);
    }
    actions
}

fn observe() -> Observed {
    Observed {
        missing_packages: APT_PACKAGES
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !package_installed(name))
            .collect(),
        rust_src_installed: output_of(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
        ]))
        .is_some_and(|list| list.lines().any(|line| line.starts_with("rust-src"))),
        bpf_linker_version: output_of(Command::new("bpf-linker").arg("--version"))
            .map(|version| version.trim().to_owned()),
        bpffs_mounted: std::fs::read_to_string("/proc/self/mounts").is_ok_and(|mounts| {
            mounts.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.get(1) == Some(&BPFFS) && fields.get(2) == Some(&"bpf")
            })
        }),
    }
}

fn package_installed(name: &str) -> bool {
    output_of(Command::new("dpkg-query").args(["-W", "-f=${db:Status-Status}", name]))
        .is_some_and(|status| status.trim() == "installed")
}

/// Runs setup; returns the actions it took.
pub(crate) fn run() -> anyhow::Result<Vec<Action>> {
    check_kernel();
    let actions = plan(&observe());
    if actions.is_empty() {
        eprintln!(
            "setup: nothing to do: all {} packages, rust-src, bpf-linker {BPF_LINKER_VERSION} and \
             bpffs are in place",
            APT_PACKAGES.len()
        );
        return Ok(actions);
    }
    let needs_root = actions
        .iter()
        .any(|action| matches!(action, Action::AptInstall(_) | Action::MountBpffs));
    if needs_root && !is_root() {
        bail!(
            "setup needs root for: {}; run it as root (sudo -E cargo xtask setup)",
            describe_all(&actions)
        );
    }
    for action in &actions {
        act(action)?;
    }
    eprintln!("setup: did {}", describe_all(&actions));
    Ok(actions)
}

fn describe_all(actions: &[Action]) -> String {
    actions.iter().map(describe).collect::<Vec<_>>().join("; ")
}

fn describe(action: &Action) -> String {
    match action {
        Action::AptInstall(packages) => format!("apt-get install {}", packages.join(" ")),
        Action::AddRustSrc => "rustup component add rust-src".to_owned(),
        Action::InstallBpfLinker { replacing: None } => {
            format!("cargo install bpf-linker {BPF_LINKER_VERSION}")
        }
        Action::InstallBpfLinker {
            replacing: Some(old),
        } => format!("cargo install bpf-linker {BPF_LINKER_VERSION} (replacing {old})"),
        Action::MountBpffs => format!("mount bpffs at {BPFFS}"),
    }
}

fn act(action: &Action) -> anyhow::Result<()> {
    match action {
        Action::AptInstall(packages) => apt_install(packages),
        Action::AddRustSrc => run_logged(
            "rustup component add rust-src",
            "rustup-rust-src",
            Command::new("rustup").args(["component", "add", "rust-src"]),
        ),
        Action::InstallBpfLinker { .. } => {
            if !Path::new(LLVM_PREFIX).join("lib").exists() {
                bail!(
                    "{LLVM_PREFIX} is missing: llvm-22-dev did not install, so bpf-linker cannot be built"
                );
            }
            run_logged(
                &format!("cargo install bpf-linker {BPF_LINKER_VERSION} (LLVM 22, takes ~80 s)"),
                "cargo-install-bpf-linker",
                Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
                    .args([
                        "install",
                        "bpf-linker",
                        "--force",
                        "--version",
                        BPF_LINKER_VERSION,
                        "--no-default-features",
                        "--features",
                        "llvm-22",
                    ])
                    .env("LLVM_PREFIX", LLVM_PREFIX),
            )
        }
        Action::MountBpffs => {
            std::fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
            run_logged(
                &format!("mount -t bpf bpf {BPFFS}"),
                "mount-bpffs",
                Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]),
            )
        }
    }
}

fn apt_install(packages: &[&'static str]) -> anyhow::Result<()> {
    for package in packages {
        let reason = APT_PACKAGES
            .iter()
            .find(|(name, _)| name == package)
            .map_or("", |(_, reason)| *reason);
        eprintln!("    will install {package}: {reason}");
    }
    run_logged(
        "apt-get update",
        "apt-get-update",
        Command::new("apt-get").args(["update"]),
    )
    .context("apt-get update failed, so no package can be installed; check the apt sources")?;
    let install = |packages: &[&str], log: &str| {
        run_logged(
            &format!("apt-get install {}", packages.join(" ")),
            log,
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if install(packages, "apt-get-install").is_ok() {
        return Ok(());
    }
    // Find out which package(s) failed, so the message names them.
    let mut failures = Vec::new();
    for package in packages {
        if let Err(err) = install(&[package], &format!("apt-get-install-{package}")) {
            failures.push(format!("{package}: {err:#}"));
        }
    }
    if failures.is_empty() {
        bail!(
            "apt-get install of {} failed, then each package installed on its own; run setup again",
            packages.join(" ")
        );
    }
    bail!(
        "these packages could not be installed:\n{}",
        failures.join("\n")
    )
}

/// The oldest kernel the datapath runs on: its programs attach through TCX links (6.6).
const MIN_KERNEL: (u32, u32) = (6, 6);

/// What this kernel lacks that the datapath needs and setup cannot add (no loadable modules
/// here), each said so a user can act on it; empty when nothing is missing.
pub(crate) fn kernel_problems() -> Vec<String> {
    let mut problems = Vec::new();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    match parse_kernel_release(&release) {
        Some(version) if version >= MIN_KERNEL => {}
        Some((major, minor)) => problems.push(format!(
            "Linux {major}.{minor} is older than {}.{}, which the datapath needs for TCX links \
             (its programs attach to pod veths, the VXLAN device and the underlay with them); \
             boot a newer kernel",
            MIN_KERNEL.0, MIN_KERNEL.1
        )),
        None => problems.push(format!(
            "cannot tell the kernel's version from {:?} (/proc/sys/kernel/osrelease)",
            release.trim()
        )),
    }
    for (path, what) in [
        (
            "/sys/kernel/btf/vmlinux",
            "kernel BTF (CO-RE relocations of the eBPF programs); use a kernel built with \
             CONFIG_DEBUG_INFO_BTF=y",
        ),
        (
            "/sys/fs/cgroup/unified",
            "the cgroup2 hierarchy the socket load balancer attaches to; mount cgroup2 there \
             (`mount -t cgroup2 none /sys/fs/cgroup/unified`) or boot with the hybrid hierarchy",
        ),
    ] {
        if !Path::new(path).exists() {
            problems.push(format!("{path} is missing: no {what}"));
        }
    }
    problems
}

/// (major, minor) of a kernel release such as `6.18.5-cloud-amd64`.
fn parse_kernel_release(release: &str) -> Option<(u32, u32)> {
    let mut numbers = release.trim().split(['.', '-']);
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor))
}

/// Warns about what the kernel lacks (setup cannot fix it; `up` refuses to start) and about a
/// missing kubectl.
fn check_kernel() {
    for problem in kernel_problems() {
        eprintln!("setup: warning: {problem}");
    }
    if which::which("kubectl").is_err() {
        eprintln!(
            "setup: warning: kubectl is not on PATH; Debian bookworm does not package it, install \
             it from your distribution of Kubernetes (1.32 is what Flotilla is tested with)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_kernel_release("6.18.5-cloud-amd64\n"), Some((6, 18)));
        assert_eq!(parse_kernel_release("6.6.0"), Some((6, 6)));
        assert_eq!(parse_kernel_release("5.10-foo"), Some((5, 10)));
        assert_eq!(parse_kernel_release("garbage"), None);
        assert!((5, 15) < MIN_KERNEL && (6, 18) >= MIN_KERNEL && (7, 0) >= MIN_KERNEL);
    }

    fn complete() -> Observed {
        Observed {
            missing_packages: vec![],
            rust_src_installed: true,
            bpf_linker_version: Some(format!("bpf-linker {BPF_LINKER_VERSION}")),
            bpffs_mounted: true,
        }
    }

    #[test]
    fn a_complete_machine_needs_nothing() {
        assert_eq!(plan(&complete()), vec![]);
    }

    #[test]
    fn a_fresh_machine_gets_everything_in_dependency_order() {
        let fresh = Observed {
            missing_packages: vec!["llvm-22-dev", "etcd-server"],
            rust_src_installed: false,
            bpf_linker_version: None,
            bpffs_mounted: false,
        };
        assert_eq!(
            plan(&fresh),
            vec![
                Action::AptInstall(vec!["llvm-22-dev", "etcd-server"]),
                Action::AddRustSrc,
                Action::InstallBpfLinker { replacing: None },
                Action::MountBpffs,
            ]
        );
    }

    #[test]
    fn a_bpf_linker_of_another_version_is_replaced() {
        let observed = Observed {
            bpf_linker_version: Some("bpf-linker 0.9.13".to_owned()),
            ..complete()
        };
        assert_eq!(
            plan(&observed),
            vec![Action::InstallBpfLinker {
                replacing: Some("bpf-linker 0.9.13".to_owned())
            }]
        );
        // A version that merely contains the wanted one as a substring is not it.
        let observed = Observed {
            bpf_linker_version: Some("bpf-linker 0.13.01".to_owned()),
            ..complete()
        };
        assert_eq!(plan(&observed).len(), 1);
    }
}
