//! `cargo xtask images`: container images without a registry. Builds the image programs of
//! `tests/` (`flotilla-pause`, `flotilla-testapp`, the benchmark tool `flotilla-perf` that the
//! test-app images carry at /bin/flotilla-perf, and `flotilla-widget-operator`, a kube-rs
//! operator) as static executables, wraps each image in an OCI
//! image-layout tarball (what `ctr images import` and `docker load` read) and, with `--import`,
//! imports them into a containerd.
//!
//! The images are a single gzip layer holding the entrypoint (plus, in the test-app images,
//! busybox and flotilla-perf). Everything in them is fixed (tar mtimes, owners and modes; entry
//! order; gzip header; JSON key order), so rebuilding unchanged sources gives the same digests.
//!
//! Static linking: `-C target-feature=+crt-static` on the GNU target links glibc statically
//! (static-pie); neither program needs NSS (no user database; the test app's one name lookup,
//! `api-get`'s, goes through its own resolver), which is the part of glibc that does not work
//! statically. It needs no extra rustup target, unlike musl.
//! The build uses its own target directory (`<target>/images`), so these flags never invalidate
//! the rest of the workspace's build.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::FileTypeExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Args;
use flate2::{Compression, GzBuilder};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::process::{cargo, run_logged, target_dir};

/// The Rust target the image programs are built for (statically linked, see the module docs).
const IMAGE_TARGET: &str = "x86_64-unknown-linux-gnu";
/// The package holding the image programs.
const IMAGE_PACKAGE: &str = "flotilla-testbed";
/// containerd namespace of the CRI plugin, where pods look for images.
pub(crate) const CONTAINERD_NAMESPACE: &str = "k8s.io";

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The fixed modification time of every tar entry (the epoch), for reproducible digests.
const FIXED_MTIME: u64 = 0;

/// One image `cargo xtask images` makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageSpec {
    /// Repository without registry, as pods name it (`flotilla/pause`).
    pub(crate) repository: &'static str,
    pub(crate) tag: &'static str,
    /// The cargo binary that becomes the image's only file.
    pub(crate) binary: &'static str,
    /// Where the binary goes in the image (absolute).
    pub(crate) path_in_image: &'static str,
    pub(crate) env: &'static [&'static str],
    pub(crate) exposed_ports: &'static [&'static str],
    /// Whether the image also carries busybox (a shell and tools for `kubectl exec`, exec probes
    /// and preStop hooks), as upstream's agnhost does.
    pub(crate) busybox: bool,
    /// Further cargo binaries of the image package the image carries (tools a pod can run
    /// instead of the entrypoint), in layer order.
    pub(crate) extra_binaries: &'static [ExtraBinary],
}

/// A cargo binary an image carries beside its entrypoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtraBinary {
    /// The cargo binary.
    pub(crate) binary: &'static str,
    /// Where it goes in the image (absolute).
    pub(crate) path_in_image: &'static str,
}

/// netperf-style benchmarks (`flotilla-perf server` in a pod, the client in another).
const PERF_TOOL: ExtraBinary = ExtraBinary {
    binary: "flotilla-perf",
    path_in_image: "/bin/flotilla-perf",
};

impl ImageSpec {
    /// The fully qualified name containerd stores (`docker.io/flotilla/pause:3.10`): the short
    /// name pods use normalises to it.
    pub(crate) fn name(&self) -> String {
        format!("docker.io/{}:{}", self.repository, self.tag)
    }

    /// The tarball's file name (`flotilla-pause-3.10.tar`).
    pub(crate) fn file_name(&self) -> String {
        format!("{}-{}.tar", self.repository.replace('/', "-"), self.tag)
    }
}

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The images: the sandbox (pause) image, two versions of the test app that differ only in
/// their configuration (so a rolling update has something to roll to), and the example
/// operator the custom-resource tests run.
pub(crate) const IMAGES: &[ImageSpec] = &[
    ImageSpec {
        repository: "flotilla/pause",
        tag: "3.10",
        binary: "flotilla-pause",
        path_in_image: "/pause",
        env: &[PATH_ENV],
        exposed_ports: &[],
        busybox: false,
        extra_binaries: &[],
    },
    ImageSpec {
        repository: "flotilla/testapp",
        tag: "v1",
        binary: "flotilla-testapp",
        path_in_image: "/testapp",
        env: &[PATH_ENV, "TESTAPP_VERSION=v1"],
        exposed_ports: &["8080/tcp", "9000/tcp", "9001/udp"],
        busybox: true,
        extra_binaries: &[PERF_TOOL],
    },
    ImageSpec {
        repository: "flotilla/testapp",
        tag: "v2",
        binary: "flotilla-testapp",
        path_in_image: "/testapp",
        env: &[PATH_ENV, "TESTAPP_VERSION=v2"],
        exposed_ports: &["8080/tcp", "9000/tcp", "9001/udp"],
        busybox: true,
        extra_binaries: &[PERF_TOOL],
    },
    ImageSpec {
        repository: "flotilla/widget-operator",
        tag: "v1",
        binary: "flotilla-widget-operator",
        path_in_image: "/widget-operator",
        env: &[PATH_ENV],
        exposed_ports: &[],
        busybox: false,
        extra_binaries: &[],
    },
];

/// Options of `cargo xtask images`.
#[derive(Debug, Args)]
pub(crate) struct ImagesArgs {
    /// Import the images into the containerd listening on this socket (namespace k8s.io).
    #[arg(long, value_name = "CONTAINERD_SOCKET")]
    import: Option<PathBuf>,
    /// Where to write the tarballs (default: <target>/images/oci/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// A content-addressed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blob {
    /// `sha256:<hex>`.
    pub(crate) digest: String,
    pub(crate) bytes: Vec<u8>,
}

impl Blob {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        Self {
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    fn descriptor(&self, media_type: &str) -> Value {
        json!({
            "mediaType": media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }

    /// Path of the blob inside an image layout (`blobs/sha256/<hex>`).
    fn layout_path(&self) -> String {
        format!("blobs/{}", self.digest.replacen(':', "/", 1))
    }
}

/// `sha256:<hex>` of `bytes`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// An image, assembled: its blobs and the `index.json` that names it.
#[derive(Debug, Clone)]
pub(crate) struct OciImage {
    pub(crate) name: String,
    pub(crate) layer: Blob,
    pub(crate) config: Blob,
    pub(crate) manifest: Blob,
    pub(crate) index: Vec<u8>,
}

impl OciImage {
    /// Builds the image `spec` holding `binary`, the `extras` (the contents of
    /// `spec.extra_binaries`, in that order) and, if given, busybox with its applet links.
    pub(crate) fn assemble(
        spec: &ImageSpec,
        binary: &[u8],
        extras: &[&[u8]],
        busybox: Option<&[u8]>,
    ) -> anyhow::Result<Self> {
        if extras.len() != spec.extra_binaries.len() {
            bail!(
                "{} carries {} extra binaries, {} were given",
                spec.name(),
                spec.extra_binaries.len(),
                extras.len()
            );
        }
        let extra_files: Vec<(&str, &[u8])> = spec
            .extra_binaries
            .iter()
            .map(|extra| extra.path_in_image)
            .zip(extras.iter().copied())
            .collect();
        let layer_tar = layer_tar(spec.path_in_image, binary, &extra_files, busybox)
            .context("writing the layer tar")?;
        let diff_id = sha256_digest(&layer_tar);
        let layer = Blob::new(gzip(&layer_tar).context("compressing the layer")?);
        let exposed: serde_json::Map<String, Value> = spec
            .exposed_ports
            .iter()
            .map(|port| ((*port).to_owned(), json!({})))
            .collect();
        let config = Blob::new(serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": [spec.path_in_image],
                "Cmd": [],
                "Env": spec.env,
                "ExposedPorts": exposed,
                "WorkingDir": "/",
                "Labels": { "org.opencontainers.image.title": spec.binary },
            },
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [{ "created_by": format!("cargo xtask images: {}", spec.binary) }],
        }))?);
        let manifest = Blob::new(serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config.descriptor(MEDIA_CONFIG),
            "layers": [layer.descriptor(MEDIA_LAYER_GZIP)],
        }))?);
        let mut manifest_descriptor = manifest.descriptor(MEDIA_MANIFEST);
        manifest_descriptor["platform"] = json!({ "architecture": "amd64", "os": "linux" });
        // containerd's own exports carry both: the full name for containerd, the tag for OCI
        // tools.
        manifest_descriptor["annotations"] = json!({
            "io.containerd.image.name": spec.name(),
            "org.opencontainers.image.ref.name": spec.tag,
        });
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [manifest_descriptor],
        }))?;
        Ok(Self {
            name: spec.name(),
            layer,
            config,
            manifest,
            index,
        })
    }

    /// The image as an OCI image-layout tarball.
    pub(crate) fn layout_tar(&self) -> std::io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        append_file(
            &mut builder,
            "oci-layout",
            0o644,
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        append_file(&mut builder, "index.json", 0o644, &self.index)?;
        append_dir(&mut builder, "blobs/")?;
        append_dir(&mut builder, "blobs/sha256/")?;
        for blob in [&self.manifest, &self.config, &self.layer] {
            append_file(&mut builder, &blob.layout_path(), 0o644, &blob.bytes)?;
        }
        builder.into_inner()
    }
}

/// Where busybox-static puts busybox (installed by `cargo xtask setup`).
const HOST_BUSYBOX: &str = "/bin/busybox";

/// The busybox applets linked into images that carry busybox: what tests, probes and hooks use
/// (`tar` for `kubectl cp`, `stty` to see a terminal's size through `kubectl exec -t`).
const BUSYBOX_APPLETS: &[&str] = &[
    "cat", "date", "echo", "env", "false", "grep", "head", "hostname", "id", "kill", "ls", "mkdir",
    "nc", "nslookup", "ping", "printf", "ps", "rm", "sh", "sleep", "stty", "tail", "tar", "test",
    "touch", "true", "wc", "wget",
];

/// The image's filesystem, owned by root, in this order: optionally /bin/busybox with one
/// symlink per applet and a world-writable /tmp; the `extras` (absolute path, executable); the
/// executable at `path` (absolute). Missing parent directories are added before their first file.
fn layer_tar(
    path: &str,
    binary: &[u8],
    extras: &[(&str, &[u8])],
    busybox: Option<&[u8]>,
) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut directories = std::collections::BTreeSet::new();
    if let Some(busybox) = busybox {
        append_parents(&mut builder, &mut directories, "bin/busybox")?;
        append_file(&mut builder, "bin/busybox", 0o755, busybox)?;
        for applet in BUSYBOX_APPLETS {
            let mut header = fixed_header(tar::EntryType::Symlink, 0o777, 0);
            builder.append_link(&mut header, format!("bin/{applet}"), "busybox")?;
        }
        let mut tmp = fixed_header(tar::EntryType::Directory, 0o1777, 0);
        builder.append_data(&mut tmp, "tmp/", std::io::empty())?;
        directories.insert("tmp/".to_owned());
    }
    for (extra_path, bytes) in extras.iter().copied().chain([(path, binary)]) {
        let relative = extra_path.trim_start_matches('/');
        append_parents(&mut builder, &mut directories, relative)?;
        append_file(&mut builder, relative, 0o755, bytes)?;
    }
    builder.into_inner()
}

/// Appends the directories above `relative` (a path without leading '/') that `added` does not
/// hold yet, outermost first, and records them there.
fn append_parents(
    builder: &mut tar::Builder<Vec<u8>>,
    added: &mut std::collections::BTreeSet<String>,
    relative: &str,
) -> std::io::Result<()> {
    let mut directory = String::new();
    let components: Vec<&str> = relative.split('/').collect();
    for component in &components[..components.len().saturating_sub(1)] {
        directory.push_str(component);
        directory.push('/');
        if added.insert(directory.clone()) {
            append_dir(builder, &directory)?;
        }
    }
    Ok(())
}

/// gzip with a fixed header (no file name, mtime 0), so equal input gives equal bytes.
fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

fn fixed_header(entry_type: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(entry_type);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(FIXED_MTIME);
    header.set_size(size);
    header
}

fn append_file(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: u32,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut header = fixed_header(tar::EntryType::Regular, mode, bytes.len() as u64);
    builder.append_data(&mut header, path, bytes)
}

fn append_dir(builder: &mut tar::Builder<Vec<u8>>, path: &str) -> std::io::Result<()> {
    let mut header = fixed_header(tar::EntryType::Directory, 0o755, 0);
    builder.append_data(&mut header, path, std::io::empty())
}

/// What was written for one image.
#[derive(Debug, Clone)]
pub(crate) struct WrittenImage {
    pub(crate) name: String,
    pub(crate) tarball: PathBuf,
    pub(crate) manifest_digest: String,
    pub(crate) tarball_size: usize,
    pub(crate) layer_size: usize,
}

pub(crate) fn run(args: &ImagesArgs) -> anyhow::Result<()> {
    // Fail before the slow build if the import cannot work.
    if let Some(socket) = &args.import {
        check_import_possible(socket)?;
    }
    let written = build(args.out.as_deref())?;
    for image in &written {
        println!(
            "{:<36} {}  {:>9} bytes (layer {} bytes)  {}",
            image.name,
            image.manifest_digest,
            image.tarball_size,
            image.layer_size,
            image.tarball.display()
        );
    }
    if let Some(socket) = &args.import {
        import(socket, &written)?;
    }
    Ok(())
}

/// Builds the images into `out` (default: <target>/images/oci/) and returns what was written.
pub(crate) fn build(out: Option<&Path>) -> anyhow::Result<Vec<WrittenImage>> {
    let out = out.map_or_else(
        || target_dir().join("images").join("oci"),
        Path::to_path_buf,
    );
    let binaries = build_binaries()?;
    write_images(&binaries, &out)
}

/// Builds the image programs as static executables; returns the directory holding them.
fn build_binaries() -> anyhow::Result<PathBuf> {
    let target_dir = target_dir().join("images");
    let mut command = cargo();
    command
        .args(["build", "--release", "--package", IMAGE_PACKAGE])
        .args(
            IMAGES
                .iter()
                .flat_map(|image| {
                    std::iter::once(image.binary)
                        .chain(image.extra_binaries.iter().map(|extra| extra.binary))
                })
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .flat_map(|binary| ["--bin", binary]),
        )
        .args(["--target", IMAGE_TARGET])
        .arg("--target-dir")
        .arg(&target_dir)
        // Only for the target crates (build scripts and proc macros stay dynamic); with
        // `--target` given these flags do not reach host artifacts.
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            ["-Ctarget-feature=+crt-static", "-Cstrip=symbols"].join("\x1f"),
        );
    run_logged(
        "building the image programs (pause, testapp, perf, widget-operator; static, release)",
        "images-build",
        &mut command,
    )?;
    Ok(target_dir.join(IMAGE_TARGET).join("release"))
}

/// Assembles every image from the binaries in `binaries` and writes the tarballs to `out`.
fn write_images(binaries: &Path, out: &Path) -> anyhow::Result<Vec<WrittenImage>> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let progress = ProgressBar::new(IMAGES.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("    {bar:20} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    progress.enable_steady_tick(Duration::from_millis(120));
    eprintln!("==> writing OCI image tarballs to {}", out.display());
    let mut written = Vec::new();
    for spec in IMAGES {
        progress.set_message(spec.name());
        let read_binary = |name: &str| {
            let binary_path = binaries.join(name);
            fs::read(&binary_path)
                .with_context(|| format!("reading the built binary {}", binary_path.display()))
        };
        let binary = read_binary(spec.binary)?;
        let extras = spec
            .extra_binaries
            .iter()
            .map(|extra| read_binary(extra.binary))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let extras: Vec<&[u8]> = extras.iter().map(Vec::as_slice).collect();
        let busybox = if spec.busybox {
            Some(fs::read(HOST_BUSYBOX).with_context(|| {
                format!("reading {HOST_BUSYBOX} (package busybox-static; run `cargo xtask setup`)")
            })?)
        } else {
            None
        };
        let image = OciImage::assemble(spec, &binary, &extras, busybox.as_deref())
            .with_context(|| format!("assembling {}", spec.name()))?;
        let tarball = image
            .layout_tar()
            .with_context(|| format!("writing the image layout of {}", spec.name()))?;
        let path = out.join(spec.file_name());
        // Write-then-rename: an interrupted run never leaves a truncated tarball behind.
        let partial = out.join(format!(".{}.partial", spec.file_name()));
        fs::write(&partial, &tarball).with_context(|| format!("writing {}", partial.display()))?;
        fs::rename(&partial, &path).with_context(|| format!("renaming to {}", path.display()))?;
        written.push(WrittenImage {
            name: image.name,
            tarball: path,
            manifest_digest: image.manifest.digest,
            tarball_size: tarball.len(),
            layer_size: image.layer.bytes.len(),
        });
        progress.inc(1);
    }
    progress.finish_and_clear();
    Ok(written)
}

fn check_import_possible(socket: &Path) -> anyhow::Result<()> {
    match fs::metadata(socket) {
        Ok(metadata) if metadata.file_type().is_socket() => {}
        Ok(_) => bail!(
            "{} is not a unix socket; pass the grpc address of a running containerd (its \
             config's [grpc] address, /run/containerd/containerd.sock by default)",
            socket.display()
        ),
        Err(err) => bail!(
            "containerd socket {} is not there ({err}); start containerd first (e.g. \
             `containerd --config <config.toml>`) or pass the socket of one that runs",
            socket.display()
        ),
    }
    if which::which("ctr").is_err() {
        bail!(
            "`ctr` is not on PATH; it comes with the containerd package: run `cargo xtask setup`"
        );
    }
    Ok(())
}

fn ctr(socket: &Path) -> Command {
    let mut command = Command::new("ctr");
    command
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CONTAINERD_NAMESPACE]);
    command
}

/// Imports each tarball with `ctr images import`, then checks containerd lists every image with
/// the manifest digest written here.
pub(crate) fn import(socket: &Path, images: &[WrittenImage]) -> anyhow::Result<()> {
    for image in images {
        run_logged(
            &format!("ctr images import {}", image.name),
            &format!(
                "images-import-{}",
                image
                    .tarball
                    .file_stem()
                    .map_or_else(|| "image".into(), |stem| stem.to_string_lossy())
            ),
            ctr(socket).args(["images", "import"]).arg(&image.tarball),
        )
        .with_context(|| {
            format!(
                "importing {} into the containerd at {}; check that this containerd runs and \
                 that you may use its socket (root)",
                image.tarball.display(),
                socket.display()
            )
        })?;
    }
    let output = ctr(socket)
        .args(["images", "ls"])
        .output()
        .context("running `ctr images ls`")?;
    if !output.status.success() {
        bail!(
            "`ctr images ls` failed after the import: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let listed = parse_images_ls(&String::from_utf8_lossy(&output.stdout));
    for image in images {
        match listed.iter().find(|(name, _)| *name == image.name) {
            Some((_, digest)) if *digest == image.manifest_digest => println!(
                "imported {} ({}) into {} namespace {CONTAINERD_NAMESPACE}",
                image.name,
                image.manifest_digest,
                socket.display()
            ),
            Some((_, digest)) => bail!(
                "containerd lists {} with digest {digest}, not the imported {}",
                image.name,
                image.manifest_digest
            ),
            None => bail!("containerd does not list {} after importing it", image.name),
        }
    }
    Ok(())
}

/// (name, digest) pairs of `ctr images ls` output (REF TYPE DIGEST SIZE PLATFORMS LABELS).
pub(crate) fn parse_images_ls(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let digest = fields.nth(1)?;
            Some((name.to_owned(), digest.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn entries(tarball: &[u8]) -> Vec<(String, u64, u32, Vec<u8>)> {
        let mut archive = tar::Archive::new(tarball);
        let mut found = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let header = entry.header().clone();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            found.push((
                entry.path().unwrap().display().to_string(),
                header.mtime().unwrap(),
                header.uid().unwrap() as u32,
                bytes,
            ));
        }
        found
    }

    #[test]
    fn names_normalise_to_docker_io() {
        assert_eq!(IMAGES[0].name(), "docker.io/flotilla/pause:3.10");
        assert_eq!(IMAGES[1].name(), "docker.io/flotilla/testapp:v1");
        assert_eq!(IMAGES[2].name(), "docker.io/flotilla/testapp:v2");
        assert_eq!(IMAGES[2].file_name(), "flotilla-testapp-v2.tar");
    }

    #[test]
    fn layout_is_self_consistent_and_deterministic() {
        let image =
            OciImage::assemble(&IMAGES[1], b"\x7fELF not really", &[b"perf tool"], None).unwrap();
        let again =
            OciImage::assemble(&IMAGES[1], b"\x7fELF not really", &[b"perf tool"], None).unwrap();
        let tarball = image.layout_tar().unwrap();
        assert_eq!(
            tarball,
            again.layout_tar().unwrap(),
            "same input, same bytes"
        );

        let files = entries(&tarball);
        let names: Vec<&str> = files.iter().map(|(name, ..)| name.as_str()).collect();
        assert_eq!(
            names[..4],
            ["oci-layout", "index.json", "blobs/", "blobs/sha256/"]
        );
        for (name, mtime, uid, bytes) in &files {
            assert_eq!((*mtime, *uid), (0, 0), "{name}");
            if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                assert_eq!(sha256_digest(bytes), format!("sha256:{hex}"));
            }
        }

        let index: Value = serde_json::from_slice(&image.index).unwrap();
        let descriptor = &index["manifests"][0];
        assert_eq!(descriptor["digest"], image.manifest.digest.as_str());
        assert_eq!(descriptor["size"], image.manifest.bytes.len());
        assert_eq!(
            descriptor["annotations"]["io.containerd.image.name"],
            "docker.io/flotilla/testapp:v1"
        );
        assert_eq!(
            descriptor["annotations"]["org.opencontainers.image.ref.name"],
            "v1"
        );

        let manifest: Value = serde_json::from_slice(&image.manifest.bytes).unwrap();
        assert_eq!(manifest["config"]["digest"], image.config.digest.as_str());
        assert_eq!(manifest["layers"][0]["digest"], image.layer.digest.as_str());
        assert_eq!(manifest["layers"][0]["size"], image.layer.bytes.len());

        let config: Value = serde_json::from_slice(&image.config.bytes).unwrap();
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["config"]["Entrypoint"], json!(["/testapp"]));
        assert!(
            config["config"]["Env"]
                .as_array()
                .unwrap()
                .contains(&json!("TESTAPP_VERSION=v1"))
        );

        // The layer: gzip of a tar whose sha256 is the diff_id, holding the executable.
        let mut layer_tar = Vec::new();
        flate2::read::GzDecoder::new(image.layer.bytes.as_slice())
            .read_to_end(&mut layer_tar)
            .unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"],
            json!([sha256_digest(&layer_tar)]),
            "diff_id is the sha256 of the uncompressed layer"
        );
        let layer_files = entries(&layer_tar);
        let layer_names: Vec<&str> = layer_files.iter().map(|(name, ..)| name.as_str()).collect();
        assert_eq!(layer_names, ["bin/", "bin/flotilla-perf", "testapp"]);
        assert_eq!(layer_files[1].3, b"perf tool");
        assert_eq!(layer_files[2].3, b"\x7fELF not really");
    }

    #[test]
    fn v1_and_v2_differ_in_config_only() {
        let v1 = OciImage::assemble(&IMAGES[1], b"same binary", &[b"perf"], None).unwrap();
        let v2 = OciImage::assemble(&IMAGES[2], b"same binary", &[b"perf"], None).unwrap();
        assert_eq!(v1.layer, v2.layer);
        assert_ne!(v1.config.digest, v2.config.digest);
        assert_ne!(v1.manifest.digest, v2.manifest.digest);
    }

    #[test]
    fn busybox_images_carry_a_shell_and_tmp() {
        let image = OciImage::assemble(&IMAGES[1], b"app", &[b"perf"], Some(b"busybox")).unwrap();
        let mut layer_tar = Vec::new();
        flate2::read::GzDecoder::new(image.layer.bytes.as_slice())
            .read_to_end(&mut layer_tar)
            .unwrap();
        let mut archive = tar::Archive::new(layer_tar.as_slice());
        let mut links = Vec::new();
        let mut tmp_mode = None;
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().display().to_string();
            if let Some(target) = entry.link_name().unwrap() {
                links.push((path.clone(), target.display().to_string()));
            }
            if path == "tmp/" {
                tmp_mode = Some(entry.header().mode().unwrap());
            }
        }
        assert!(links.contains(&("bin/sh".to_owned(), "busybox".to_owned())));
        assert_eq!(tmp_mode, Some(0o1777));
    }

    #[test]
    fn test_app_images_carry_flotilla_perf_beside_busybox() {
        for spec in IMAGES
            .iter()
            .filter(|spec| spec.repository == "flotilla/testapp")
        {
            assert_eq!(spec.extra_binaries, [PERF_TOOL], "{}", spec.name());
        }
        for spec in IMAGES
            .iter()
            .filter(|spec| spec.repository != "flotilla/testapp")
        {
            assert!(
                spec.extra_binaries.is_empty(),
                "{}: only the test app images carry tools",
                spec.name()
            );
        }
        let image = OciImage::assemble(&IMAGES[1], b"app", &[b"perf"], Some(b"busybox")).unwrap();
        let mut layer_tar = Vec::new();
        flate2::read::GzDecoder::new(image.layer.bytes.as_slice())
            .read_to_end(&mut layer_tar)
            .unwrap();
        let files = entries(&layer_tar);
        let names: Vec<&str> = files.iter().map(|(name, ..)| name.as_str()).collect();
        assert_eq!(names.iter().filter(|name| **name == "bin/").count(), 1);
        let perf = files
            .iter()
            .find(|(name, ..)| name == "bin/flotilla-perf")
            .unwrap();
        assert_eq!(perf.3, b"perf");
        assert_eq!(names.last(), Some(&"testapp"), "the entrypoint comes last");
        let mut archive = tar::Archive::new(layer_tar.as_slice());
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            if entry.path().unwrap().as_os_str() == "bin/flotilla-perf" {
                assert_eq!(entry.header().mode().unwrap(), 0o755);
            }
        }
    }

    #[test]
    fn extra_binaries_must_all_be_given() {
        let err = OciImage::assemble(&IMAGES[1], b"app", &[], None).unwrap_err();
        assert!(
            err.to_string().contains("1 extra binaries, 0 were given"),
            "{err}"
        );
        assert!(OciImage::assemble(&IMAGES[0], b"pause", &[], None).is_ok());
    }

    #[test]
    fn parses_ctr_images_ls() {
        let output = "REF TYPE DIGEST SIZE PLATFORMS LABELS\n\
            docker.io/flotilla/pause:3.10 application/vnd.oci.image.manifest.v1+json \
            sha256:abc 512.0 KiB linux/amd64 -\n";
        assert_eq!(
            parse_images_ls(output),
            vec![(
                "docker.io/flotilla/pause:3.10".to_owned(),
                "sha256:abc".to_owned()
            )]
        );
    }
}
