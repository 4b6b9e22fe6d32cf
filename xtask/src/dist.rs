//! `cargo xtask dist`: the directory an admin copies to each machine to install Flotilla with
//! systemd (the README's "Install on machines"): the binaries, the sandbox image containerd
//! imports, and the unit files kept beside each binary's crate.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::{
    cluster, images,
    process::{run_quiet, target_dir, workspace_root},
    setup,
};

/// Options of `cargo xtask dist`.
#[derive(Debug, Args)]
pub(crate) struct DistArgs {
    /// Where to assemble it (default: <target>/dist/flotilla).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Debug binaries (quicker to build; what the tests install) instead of release ones.
    #[arg(long)]
    debug: bool,
}

/// The unit files, each in the crate of the binary it runs.
const UNIT_DIRS: [&str; 2] = ["controlplane/systemd", "agent/systemd"];

/// The sandbox image's tarball, as `images` names it and the containerd unit imports it.
const PAUSE_TARBALL: &str = "flotilla-pause-3.10.tar";

/// Builds and assembles `bin/`, `images/` and `systemd/` under the output directory.
pub(crate) fn run(args: &DistArgs) -> anyhow::Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| target_dir().join("dist").join("flotilla"));
    setup::run()?;
    let built = cluster::build_binaries(!args.debug)?;
    let images = images::build(None)?;
    let Some(pause) = images.iter().find(|image| {
        image
            .tarball
            .file_name()
            .is_some_and(|f| f == PAUSE_TARBALL)
    }) else {
        bail!(
            "`images` wrote no {PAUSE_TARBALL} (it wrote {:?}); the containerd unit imports that \
             file, so update PAUSE_TARBALL here and in agent/systemd/flotilla-containerd.service",
            images.iter().map(|i| &i.tarball).collect::<Vec<_>>()
        );
    };

    let bin = fresh_dir(&out.join("bin"))?;
    for name in cluster::binary_names() {
        let installed = bin.join(name);
        copy(&built.join(name), &installed)?;
        // Without debug info, as distributions ship binaries: a debug build's are 4-5 times
        // larger (600 MB for the control plane), and every machine gets a copy.
        run_quiet(
            &format!("stripping {}", installed.display()),
            Command::new("strip").arg("--strip-debug").arg(&installed),
        )?;
    }
    let image_dir = fresh_dir(&out.join("images"))?;
    copy(&pause.tarball, &image_dir.join(PAUSE_TARBALL))?;
    let systemd = fresh_dir(&out.join("systemd"))?;
    for dir in UNIT_DIRS {
        let dir = workspace_root().join(dir);
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                copy(&path, &systemd.join(name))?;
            }
        }
    }
    println!(
        "{} holds bin/, images/ and systemd/: copy it to every machine and follow the README's \
         \"Install on machines\"",
        out.display()
    );
    Ok(())
}

/// `dir`, emptied of an earlier dist's files (only the subdirectories dist writes are touched).
fn fresh_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir.to_path_buf())
}

/// Copies one file (keeping its permissions: the binaries stay executable).
fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}
