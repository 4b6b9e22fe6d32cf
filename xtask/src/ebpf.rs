//! `cargo xtask build-ebpf`: builds the eBPF crate on its own (the same flags agent/build.rs gives
//! aya-build: bpfel-unknown-none, `-Z build-std=core`, BTF), copies each object to an output
//! directory as `<name>.o`, and lists the programs and maps inside.

use std::{ffi::OsString, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::process::{cargo, run_visible, target_dir};

/// The eBPF package and the binary targets (objects) it produces.
const EBPF_PACKAGE: &str = "flotilla-ebpf";
const EBPF_OBJECTS: &[&str] = &["flotilla-datapath"];
pub(crate) const BPF_TARGET: &str = "bpfel-unknown-none";

/// Options of `cargo xtask build-ebpf`.
#[derive(Debug, Args)]
pub(crate) struct BuildEbpfArgs {
    /// Build with the release profile (what the agent embeds).
    #[arg(long)]
    release: bool,
    /// Where to write the .o files (default: <target>/ebpf/<profile>/).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The environment that lets stable rustc build `core` for the BPF target, with BTF.
pub(crate) fn bpf_cargo(subcommand: &str) -> Command {
    let mut command = cargo();
    command
        .args([
            subcommand,
            "--package",
            EBPF_PACKAGE,
            "--target",
            BPF_TARGET,
        ])
        .args(["-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(target_dir().join("ebpf-build"))
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags());
    command
}

fn encoded_rustflags() -> OsString {
    [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        "-Clink-arg=--btf",
    ]
    .join("\x1f")
    .into()
}

pub(crate) fn run(args: &BuildEbpfArgs) -> anyhow::Result<()> {
    let profile = if args.release { "release" } else { "debug" };
    let mut build = bpf_cargo("build");
    build.arg("--bins");
    if args.release {
        build.arg("--release");
    }
    run_visible(
        &format!("building {EBPF_PACKAGE} for {BPF_TARGET}"),
        &mut build,
    )?;

    let built_dir = target_dir()
        .join("ebpf-build")
        .join(BPF_TARGET)
        .join(profile);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir().join("ebpf").join(profile));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for object in EBPF_OBJECTS {
        let source = built_dir.join(object);
        let destination = out.join(format!("{object}.o"));
        std::fs::copy(&source, &destination).with_context(|| {
            format!("copying {} to {}", source.display(), destination.display())
        })?;
        let bytes = std::fs::read(&destination)
            .with_context(|| format!("reading {}", destination.display()))?;
        println!(
            "{}",
            describe_object(&destination.display().to_string(), &bytes)?
        );
    }
    Ok(())
}

/// A listing of the programs and maps in an eBPF object, as admins would want to check it.
pub(crate) fn describe_object(name: &str, bytes: &[u8]) -> anyhow::Result<String> {
    let object = aya_obj::Object::parse(bytes)
        .with_context(|| format!("{name} is not a valid eBPF object"))?;
    if !has_section(bytes, ".BTF") {
        bail!("{name} has no .BTF section; it must be linked with `-Clink-arg=--btf`");
    }
    let mut lines = vec![format!("{name} ({} bytes, with BTF)", bytes.len())];
    let mut programs: Vec<_> = object.programs.iter().collect();
    programs.sort_by_key(|(name, _)| name.as_str());
    for (program, details) in programs {
        lines.push(format!("  program {program:<20} {:?}", details.section));
    }
    let mut maps: Vec<_> = object.maps.iter().collect();
    maps.sort_by_key(|(name, _)| name.as_str());
    for (map, details) in maps {
        lines.push(format!(
            "  map     {map:<20} {} key {} B, value {} B, max_entries {}",
            map_type_name(details.map_type()),
            details.key_size(),
            details.value_size(),
            details.max_entries()
        ));
    }
    Ok(lines.join("\n"))
}

fn has_section(bytes: &[u8], section: &str) -> bool {
    // A cheap check: the section name appears in the ELF string table.
    bytes
        .windows(section.len() + 1)
        .any(|window| window[..section.len()] == *section.as_bytes() && window[section.len()] == 0)
}

fn map_type_name(map_type: u32) -> String {
    match map_type {
        1 => "hash".into(),
        2 => "array".into(),
        5 => "percpu_hash".into(),
        6 => "percpu_array".into(),
        9 => "lru_hash".into(),
        10 => "lru_percpu_hash".into(),
        11 => "lpm_trie".into(),
        27 => "ringbuf".into(),
        other => format!("type {other}"),
    }
}
