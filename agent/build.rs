//! Builds the eBPF programs of `ebpf/` for bpfel-unknown-none and leaves the object in OUT_DIR,
//! where `datapath::loader` embeds it with `include_bytes_aligned!`.
//!
//! The nested build uses the same rustup toolchain as the outer one (bpf-linker's LLVM must match
//! rustc's) with RUSTC_BOOTSTRAP=1 so stable can use `-Z build-std=core`.
use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=RUSTUP_TOOLCHAIN");
    // The CNI backend API the agent serves to flotilla-cni (cni-plugin/ compiles the client).
    tonic_prost_build::configure()
        .build_client(false)
        .compile_protos(&["proto/cni.proto"], &["proto"])
        .context("compiling proto/cni.proto (protoc must be installed: `cargo xtask setup`)")?;
    which::which("bpf-linker").map_err(|err| {
        anyhow!("bpf-linker is not on PATH ({err}); `cargo xtask setup` installs it")
    })?;

    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("reading the workspace metadata")?;
    let ebpf = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == "flotilla-ebpf")
        .ok_or_else(|| anyhow!("the flotilla-ebpf package is not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", ebpf.manifest_path))?;

    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").unwrap_or_else(|_| "stable".to_owned());
    // SAFETY: build scripts are single-threaded; aya-build reads this to pass `-Z build-std`.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "flotilla-ebpf",
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(&toolchain),
    )
}
