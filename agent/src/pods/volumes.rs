//! Pod volumes on the node, laid out as kubelet lays them out:
//! `<pods_dir>/<pod uid>/volumes/<plugin>/<volume name>` with plugin directories named
//! `kubernetes.io~empty-dir`, `kubernetes.io~configmap`, `kubernetes.io~secret`,
//! `kubernetes.io~downward-api` and `kubernetes.io~projected`; hostPath volumes, and the local
//! or hostPath PersistentVolumes behind claims, are the host path itself.
//!
//! - emptyDir: a 0777 directory; medium `Memory` is a tmpfs (size = `sizeLimit` when set).
//! - configMap, secret, downwardAPI, projected: files written with the AtomicWriter scheme
//!   ([`super::atomic_writer`]); secret, downwardAPI and projected volumes sit on a tmpfs, as
//!   kubelet keeps secrets off disk. Calling [`setup_pod_volumes`] again with newer objects
//!   refreshes their contents in place (containers see the change without a remount).
//! - hostPath: kubelet's `type` checks.
//! - persistentVolumeClaim: the bound volume's directory ([`super::claims`]), which must exist;
//!   `readOnly` on the volume or the mount makes the bind read-only.
//!
//! [`container_mounts`] turns a container's volumeMounts into CRI mounts; [`remove_pod_volumes`]
//! unmounts and deletes everything of a pod. Mounting goes through the [`Mounter`] trait so the
//! logic is tested without root.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, ErrorKind},
    os::unix::fs::{FileTypeExt, OpenOptionsExt as _, PermissionsExt as _},
    path::{Component, Path, PathBuf},
};

use k8s_openapi::{
    api::core::v1::{Container, KeyToPath, Pod, Volume},
    apimachinery::pkg::api::resource::Quantity,
};

use super::{
    atomic_writer::{self, FileProjection, Payload},
    claims::{ClaimedSource, ClaimedVolume},
    cri::api,
    env::{self, ContainerEnv},
    objects::PodObjects,
    tokens::TokenSpec,
};

/// The event reason kubelet reports volume set-up failures under.
pub const FAILED_MOUNT: &str = "FailedMount";
/// Default file mode of configMap, secret, downwardAPI and projected files (0644).
pub const DEFAULT_MODE: i32 = 0o644;

const EMPTY_DIR: &str = "kubernetes.io~empty-dir";
const CONFIG_MAP: &str = "kubernetes.io~configmap";
const SECRET: &str = "kubernetes.io~secret";
const DOWNWARD_API: &str = "kubernetes.io~downward-api";
const PROJECTED: &str = "kubernetes.io~projected";

/// Mount operations volumes need; [`HostMounter`] does them for real.
pub trait Mounter: Send + Sync {
    /// Whether `path` is a mount point.
    fn is_mount_point(&self, path: &Path) -> io::Result<bool>;
    /// Mounts a tmpfs on `path`, limited to `size` bytes when given.
    fn mount_tmpfs(&self, path: &Path, size: Option<u64>) -> io::Result<()>;
    /// Unmounts `path`.
    fn unmount(&self, path: &Path) -> io::Result<()>;
    /// Mount points at or below `path`.
    fn mounts_below(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
}

/// The real mounter: mount(2)/umount(2) and /proc/self/mountinfo. The agent must run in the
/// mount namespace containerd uses, or containers will not see the tmpfs mounts.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostMounter;

impl HostMounter {
    fn mount_points() -> io::Result<Vec<PathBuf>> {
        let info = fs::read_to_string("/proc/self/mountinfo")?;
        Ok(info
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(|field| PathBuf::from(unescape_mountinfo(field)))
            .collect())
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Mounter for HostMounter {
    fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
        // mountinfo lists resolved paths; comparing anything else would miss an existing tmpfs
        // and stack a second one over it.
        let path = fs::canonicalize(path)?;
        Ok(Self::mount_points()?.contains(&path))
    }

    fn mount_tmpfs(&self, path: &Path, size: Option<u64>) -> io::Result<()> {
        let options = size.map(|bytes| format!("size={bytes}"));
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            options.as_deref(),
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        nix::mount::umount2(path, nix::mount::MntFlags::empty()).map_err(io::Error::from)
    }

    fn mounts_below(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let path = fs::canonicalize(path)?;
        Ok(Self::mount_points()?
            .into_iter()
            .filter(|p| p.starts_with(&path))
            .collect())
    }
}

/// A volume that could not be set up; displays as kubelet's FailedMount event message.
#[derive(Debug, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
pub struct VolumeError {
    /// The volume's name in the pod spec.
    pub volume: String,
    /// What went wrong, in kubelet's words (e.g. `configmap "x" not found`).
    pub message: String,
}

impl VolumeError {
    fn new(volume: &str, message: impl Into<String>) -> Self {
        Self {
            volume: volume.to_owned(),
            message: message.into(),
        }
    }

    /// The event reason this error is reported under.
    pub fn reason(&self) -> &'static str {
        FAILED_MOUNT
    }
}

/// A container's mounts could not be built; the container waits with reason
/// `CreateContainerConfigError` and this message, as kubelet's `makeMounts` failures.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MountError {
    /// kubelet's wording, e.g. `cannot find volume "data" to mount into container "app"`.
    pub message: String,
}

impl MountError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The container waiting reason this error is reported under.
    pub fn reason(&self) -> &'static str {
        env::CREATE_CONTAINER_CONFIG_ERROR
    }
}

/// Removing a pod's volumes failed.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    /// A mount could not be undone.
    #[error("UnmountVolume.TearDown failed for {path}: {source}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Something is still mounted below the pod's directory, so it is not deleted.
    #[error("pod directory {pod_dir} still has mounted volumes ({mounts:?}); not removing it")]
    StillMounted {
        /// The pod's directory.
        pod_dir: PathBuf,
        /// What is still mounted.
        mounts: Vec<PathBuf>,
    },
    /// Deleting failed.
    #[error("removing {path}: {source}")]
    Remove {
        /// What was being removed.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// What pod volumes are built from besides the pod spec.
#[derive(Clone, Copy, Debug)]
pub struct VolumeContext<'a> {
    /// The pod.
    pub pod: &'a Pod,
    /// The ConfigMaps and Secrets the pod references (current versions, for refreshes too).
    pub objects: &'a PodObjects,
    /// Node allocatable, for downward API resource limits that are unset.
    pub allocatable: &'a BTreeMap<String, Quantity>,
}

/// A set-up volume: where it is on the host and whether kubelet forces it read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumePath {
    /// The directory (or, for hostPath, file) to bind into containers.
    pub host_path: PathBuf,
    /// configMap, secret, downwardAPI and projected volumes are always mounted read-only.
    pub read_only: bool,
}

/// The pod's volumes by name, as [`setup_pod_volumes`] left them.
pub type PodVolumes = BTreeMap<String, VolumePath>;

/// `<pods_dir>/<uid>`, checking that the uid is one path component.
pub fn pod_dir(pods_dir: &Path, pod: &Pod) -> Result<PathBuf, String> {
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    if !is_single_component(uid) {
        return Err(format!("pod uid {uid:?} is not usable as a directory name"));
    }
    Ok(pods_dir.join(uid))
}

fn is_single_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Sets up (or refreshes) every volume of the pod; returns where each one is. Idempotent: tmpfs
/// mounts are made once, payloads are rewritten only when they changed.
pub fn setup_pod_volumes(
    ctx: &VolumeContext<'_>,
    pods_dir: &Path,
    mounter: &dyn Mounter,
) -> Result<PodVolumes, VolumeError> {
    let volumes_root = pod_dir(pods_dir, ctx.pod)
        .map_err(|message| VolumeError::new("", message))?
        .join("volumes");
    let mut result = PodVolumes::new();
    let volumes = ctx.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    for volume in volumes {
        let path = setup_volume(ctx, &volumes_root, volume, mounter)?;
        result.insert(volume.name.clone(), path);
    }
    Ok(result)
}

fn setup_volume(
    ctx: &VolumeContext<'_>,
    volumes_root: &Path,
    volume: &Volume,
    mounter: &dyn Mounter,
) -> Result<VolumePath, VolumeError> {
    let name = volume.name.as_str();
    if !is_single_component(name) {
        return Err(VolumeError::new(name, "invalid volume name"));
    }
    let io_err = |what: &str, err: io::Error| VolumeError::new(name, format!("{what}: {err}"));
    let dir = |plugin: &str| volumes_root.join(plugin).join(name);
    let namespace = env::pod_namespace(ctx.pod);

    if let Some(host_path) = &volume.host_path {
        let path = PathBuf::from(&host_path.path);
        check_host_path(&path, host_path.type_.as_deref().unwrap_or(""))
            .map_err(|message| VolumeError::new(name, message))?;
        return Ok(VolumePath {
            host_path: path,
            read_only: false,
        });
    }
    if let Some(source) = &volume.persistent_volume_claim {
        let claimed = ctx
            .objects
            .claim(&source.claim_name)
            .map_err(|message| VolumeError::new(name, message))?;
        check_claimed(claimed).map_err(|message| VolumeError::new(name, message))?;
        return Ok(VolumePath {
            host_path: claimed.path.clone(),
            read_only: source.read_only.unwrap_or(false),
        });
    }
    if let Some(empty_dir) = &volume.empty_dir {
        let path = dir(EMPTY_DIR);
        make_dir(&path, 0o777).map_err(|e| io_err("creating the emptyDir directory", e))?;
        match empty_dir.medium.as_deref().unwrap_or("") {
            "" => {}
            "Memory" => {
                let size_limit =
                    match &empty_dir.size_limit {
                        Some(q) => Some(quantity_bytes(q).map_err(|e| {
                            VolumeError::new(name, format!("invalid sizeLimit: {e}"))
                        })?),
                        None => None,
                    };
                let size = memory_volume_size(ctx, size_limit);
                ensure_tmpfs(&path, size, mounter).map_err(|e| io_err("mounting tmpfs", e))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o777))
                    .map_err(|e| io_err("setting the emptyDir mode", e))?;
            }
            other => {
                return Err(VolumeError::new(
                    name,
                    format!("emptyDir medium {other:?} is not supported on this node"),
                ));
            }
        }
        return Ok(VolumePath {
            host_path: path,
            read_only: false,
        });
    }
    let (plugin, payload, tmpfs) = if let Some(source) = &volume.config_map {
        let optional = source.optional.unwrap_or(false);
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let payload =
            config_map_payload(ctx, &source.name, source.items.as_deref(), mode, optional)
                .map_err(|m| VolumeError::new(name, m))?;
        (CONFIG_MAP, payload, false)
    } else if let Some(source) = &volume.secret {
        let optional = source.optional.unwrap_or(false);
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let secret_name = source.secret_name.as_deref().unwrap_or("");
        let payload = secret_payload(ctx, secret_name, source.items.as_deref(), mode, optional)
            .map_err(|m| VolumeError::new(name, m))?;
        (SECRET, payload, true)
    } else if let Some(source) = &volume.downward_api {
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let payload = downward_payload(ctx, source.items.as_deref().unwrap_or_default(), mode)
            .map_err(|m| VolumeError::new(name, m))?;
        (DOWNWARD_API, payload, true)
    } else if let Some(source) = &volume.projected {
        let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
        let mut payload = Payload::new();
        for projection in source.sources.iter().flatten() {
            let part = if let Some(cm) = &projection.config_map {
                config_map_payload(
                    ctx,
                    &cm.name,
                    cm.items.as_deref(),
                    mode,
                    cm.optional.unwrap_or(false),
                )
            } else if let Some(secret) = &projection.secret {
                secret_payload(
                    ctx,
                    &secret.name,
                    secret.items.as_deref(),
                    mode,
                    secret.optional.unwrap_or(false),
                )
            } else if let Some(downward) = &projection.downward_api {
                downward_payload(ctx, downward.items.as_deref().unwrap_or_default(), mode)
            } else if let Some(projection) = &projection.service_account_token {
                ctx.objects.token(&TokenSpec::of(projection)).map(|token| {
                    Payload::from([(
                        projection.path.clone(),
                        FileProjection {
                            data: token.as_bytes().to_vec(),
                            mode: file_mode(None, mode),
                        },
                    )])
                })
            } else if projection.cluster_trust_bundle.is_some() {
                Err("clusterTrustBundle projections are not supported by this node yet".to_owned())
            } else {
                Err("projected volume source names no configMap, secret or downwardAPI".to_owned())
            }
            .map_err(|m| VolumeError::new(name, m))?;
            payload.extend(part);
        }
        (PROJECTED, payload, true)
    } else {
        return Err(VolumeError::new(
            name,
            format!(
                "no volume plugin matched: this node supports emptyDir, hostPath, configMap, \
                 secret, downwardAPI, projected and persistentVolumeClaim volumes (pod {namespace}/{})",
                ctx.pod.metadata.name.as_deref().unwrap_or("")
            ),
        ));
    };
    let path = dir(plugin);
    make_dir(&path, 0o777).map_err(|e| io_err("creating the volume directory", e))?;
    if tmpfs {
        ensure_tmpfs(&path, memory_volume_size(ctx, None), mounter)
            .map_err(|e| io_err("mounting tmpfs", e))?;
        // A fresh tmpfs root is 1777; kubelet leaves these directories 0777.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777))
            .map_err(|e| io_err("setting the volume directory's mode", e))?;
    }
    atomic_writer::write(&path, &payload).map_err(|e| io_err("writing the volume's files", e))?;
    Ok(VolumePath {
        host_path: path,
        read_only: true,
    })
}

fn quantity_bytes(quantity: &Quantity) -> Result<u64, String> {
    let bytes = flotilla_apimachinery::quantity::Quantity::parse(&quantity.0)
        .map_err(|error| error.to_string())?
        .value();
    Ok(u64::try_from(bytes).unwrap_or(0))
}

/// The size of a memory-backed emptyDir, as kubelet's `calculateEmptyDirMemorySize`: node
/// allocatable memory, lowered to the pod's memory limit (when every container has one) and to
/// the volume's `sizeLimit`, whichever are positive and smaller.
fn memory_volume_size(ctx: &VolumeContext<'_>, size_limit: Option<u64>) -> Option<u64> {
    let mut size = ctx
        .allocatable
        .get("memory")
        .and_then(|q| quantity_bytes(q).ok())
        .filter(|b| *b > 0);
    let lower = |size: Option<u64>, candidate: Option<u64>| match (size, candidate) {
        (Some(current), Some(c)) if c > 0 && c <= current => Some(c),
        (None, Some(c)) if c > 0 => Some(c),
        (current, _) => current,
    };
    size = lower(size, pod_memory_limit(ctx.pod));
    lower(size, size_limit)
}

/// The pod's memory limit as its cgroup gets it: the sum over app containers (raised to the
/// largest init container's), or none when any app container has no memory limit.
fn pod_memory_limit(pod: &Pod) -> Option<u64> {
    let spec = pod.spec.as_ref()?;
    let limit = |c: &Container| {
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .and_then(|q| quantity_bytes(q).ok())
    };
    let mut sum: u64 = 0;
    for container in &spec.containers {
        sum = sum.saturating_add(limit(container)?);
    }
    let init_max = spec
        .init_containers
        .iter()
        .flatten()
        .filter_map(limit)
        .max()
        .unwrap_or(0);
    Some(sum.max(init_max))
}

fn make_dir(path: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir_all(path)?;
    // Set explicitly: create_dir_all is subject to the umask.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn ensure_tmpfs(path: &Path, size: Option<u64>, mounter: &dyn Mounter) -> io::Result<()> {
    if !mounter.is_mount_point(path)? {
        mounter.mount_tmpfs(path, size)?;
    }
    Ok(())
}

fn file_mode(item: Option<i32>, default: i32) -> u32 {
    u32::try_from(item.unwrap_or(default)).unwrap_or(0o644) & 0o7777
}

/// A configMap's files (kubelet's `configmap.MakePayload`).
fn config_map_payload(
    ctx: &VolumeContext<'_>,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(cm) = ctx.objects.config_map(name, optional)? else {
        return Ok(Payload::new());
    };
    let mut all: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (key, value) in cm.data.iter().flatten() {
        all.insert(key, value.as_bytes().to_vec());
    }
    for (key, value) in cm.binary_data.iter().flatten() {
        all.entry(key).or_insert_with(|| value.0.clone());
    }
    project(all, items, default_mode, optional, |key| {
        format!("configmap references non-existent config key: {key}")
    })
}

/// A secret's files (kubelet's `secret.MakePayload`).
fn secret_payload(
    ctx: &VolumeContext<'_>,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
) -> Result<Payload, String> {
    let Some(secret) = ctx.objects.secret(name, optional)? else {
        return Ok(Payload::new());
    };
    let mut all: BTreeMap<&str, Vec<u8>> = BTreeMap::new();
    for (key, value) in secret.string_data.iter().flatten() {
        all.insert(key, value.as_bytes().to_vec());
    }
    for (key, value) in secret.data.iter().flatten() {
        all.insert(key, value.0.clone());
    }
    project(all, items, default_mode, optional, |key| {
        format!("references non-existent secret key: {key}")
    })
}

fn project(
    all: BTreeMap<&str, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    missing: impl Fn(&str) -> String,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    match items.filter(|items| !items.is_empty()) {
        None => {
            for (key, data) in all {
                payload.insert(
                    key.to_owned(),
                    FileProjection {
                        data,
                        mode: file_mode(None, default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(data) = all.get(item.key.as_str()) else {
                    if optional {
                        continue;
                    }
                    return Err(missing(&item.key));
                };
                payload.insert(
                    item.path.clone(),
                    FileProjection {
                        data: data.clone(),
                        mode: file_mode(item.mode, default_mode),
                    },
                );
            }
        }
    }
    Ok(payload)
}

/// downwardAPI files: pod metadata fields and container resources.
fn downward_payload(
    ctx: &VolumeContext<'_>,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    default_mode: i32,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            env::field_value(ctx.pod, field, &[], &[])?
        } else if let Some(resource) = &item.resource_field_ref {
            let wanted = resource.container_name.as_deref().unwrap_or("");
            let container = ctx
                .pod
                .spec
                .iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == wanted)
                .ok_or_else(|| format!("container {wanted} not found"))?;
            env::resource_value(resource, container, ctx.allocatable)?
        } else {
            continue;
        };
        payload.insert(
            item.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: file_mode(item.mode, default_mode),
            },
        );
    }
    Ok(payload)
}

/// Whether a claim's directory is there: a `local` volume's path must exist and be a
/// directory (kubelet's local volume plugin: its data lives there, so a missing directory is
/// an error to report, never something to create empty); a `hostPath` one gets its type check.
fn check_claimed(claimed: &ClaimedVolume) -> Result<(), String> {
    let volume = &claimed.volume_name;
    match &claimed.source {
        ClaimedSource::Local => match fs::metadata(&claimed.path) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(format!(
                "MountVolume.NewMounter initialization failed for volume {volume:?} : path {:?} is not a directory",
                claimed.path.display().to_string()
            )),
            Err(err) if err.kind() == ErrorKind::NotFound => Err(format!(
                "MountVolume.NewMounter initialization failed for volume {volume:?} : path {:?} does not exist",
                claimed.path.display().to_string()
            )),
            Err(err) => Err(format!(
                "MountVolume.NewMounter initialization failed for volume {volume:?} : {err}"
            )),
        },
        ClaimedSource::HostPath(kind) => check_host_path(&claimed.path, kind),
    }
}

/// kubelet's hostPath `type` check; creates what the `...OrCreate` types ask for.
pub fn check_host_path(path: &Path, kind: &str) -> Result<(), String> {
    let display = path.display();
    let metadata = fs::metadata(path);
    let exists = metadata.is_ok();
    let file_type = metadata.as_ref().ok().map(fs::Metadata::file_type);
    let is = |check: fn(&fs::FileType) -> bool| file_type.as_ref().is_some_and(check);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if !exists => fs::create_dir_all(path)
            .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o755)))
            .map_err(|e| {
                format!("hostPath type check failed: cannot create directory {display}: {e}")
            }),
        "DirectoryOrCreate" | "Directory" => {
            if is(fs::FileType::is_dir) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {display} is not a directory"
                ))
            }
        }
        "FileOrCreate" if !exists => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| {
                    format!("hostPath type check failed: cannot create file {display}: {e}")
                })?;
            }
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(path)
                .map(drop)
                .map_err(|e| {
                    format!("hostPath type check failed: cannot create file {display}: {e}")
                })
        }
        "FileOrCreate" | "File" => {
            if is(fs::FileType::is_file) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {display} is not a file"
                ))
            }
        }
        "Socket" => {
            if is(FileTypeExt::is_socket) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {display} is not a socket file"
                ))
            }
        }
        "CharDevice" => {
            if is(FileTypeExt::is_char_device) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {display} is not a character device"
                ))
            }
        }
        "BlockDevice" => {
            if is(FileTypeExt::is_block_device) {
                Ok(())
            } else {
                Err(format!(
                    "hostPath type check failed: {display} is not a block device"
                ))
            }
        }
        other => Err(format!("{other} is an invalid volume type")),
    }
}

/// The CRI mounts of `container` (kubelet's `makeMounts`, minus /etc/hosts and the termination
/// log, which the pod worker adds). `env` expands `subPathExpr`.
pub fn container_mounts(
    container: &Container,
    volumes: &PodVolumes,
    env: &ContainerEnv,
) -> Result<Vec<api::Mount>, MountError> {
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = volumes.get(&mount.name).ok_or_else(|| {
            MountError::new(format!(
                "cannot find volume {:?} to mount into container {:?}",
                mount.name, container.name
            ))
        })?;
        let mut sub_path = mount.sub_path.clone().unwrap_or_default();
        if let Some(expr) = mount.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
            sub_path = expand_sub_path(expr, env)?;
        }
        let mut host_path = volume.host_path.clone();
        if !sub_path.is_empty() {
            host_path = resolve_sub_path(&volume.host_path, &sub_path)?;
        }
        let propagation = match mount.mount_propagation.as_deref() {
            None | Some("None") => api::MountPropagation::PropagationPrivate,
            Some("HostToContainer") => api::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => api::MountPropagation::PropagationBidirectional,
            Some(other) => {
                return Err(MountError::new(format!(
                    "invalid MountPropagation mode: {other:?}"
                )));
            }
        };
        let read_only = mount.read_only.unwrap_or(false) || volume.read_only;
        if mount.recursive_read_only.as_deref() == Some("Enabled") {
            return Err(MountError::new(
                "recursive read-only mounts are not supported by this node's runtime",
            ));
        }
        let container_path = if mount.mount_path.starts_with('/') {
            mount.mount_path.clone()
        } else {
            format!("/{}", mount.mount_path)
        };
        mounts.push(api::Mount {
            container_path,
            host_path: host_path.to_string_lossy().into_owned(),
            readonly: read_only,
            propagation: propagation as i32,
            ..api::Mount::default()
        });
    }
    Ok(mounts)
}

/// `subPathExpr` expanded with the container's environment; any reference without a value is
/// an error (kubelet's `ExpandContainerVolumeMounts`).
pub fn expand_sub_path(expr: &str, env: &ContainerEnv) -> Result<String, MountError> {
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let expanded = env::expand(expr, |name| {
        let value = env.get(name).unwrap_or("");
        if value.is_empty() {
            missing.borrow_mut().insert(name.to_owned());
        }
        Some(value.to_owned())
    });
    let missing = missing.into_inner();
    if missing.is_empty() {
        Ok(expanded)
    } else {
        Err(MountError::new(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        )))
    }
}

/// The host path of `sub_path` inside `volume`: relative, no `..`, created as a directory when
/// missing, and (after resolving symlinks) still inside the volume.
pub fn resolve_sub_path(volume: &Path, sub_path: &str) -> Result<PathBuf, MountError> {
    if Path::new(sub_path).is_absolute() {
        return Err(MountError::new(format!(
            "error SubPath `{sub_path}` must not be an absolute path"
        )));
    }
    if Path::new(sub_path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(MountError::new(format!(
            "unable to provision SubPath `{sub_path}`: must not contain '..'"
        )));
    }
    let base = fs::canonicalize(volume).map_err(|e| {
        MountError::new(format!(
            "cannot resolve volume path {}: {e}",
            volume.display()
        ))
    })?;
    let joined = base.join(sub_path);
    let outside = |resolved: &Path| {
        MountError::new(format!(
            "subPath {sub_path:?} resolves to {}, which is outside of the volume {}",
            resolved.display(),
            base.display()
        ))
    };
    // Resolve what already exists first, so a symlink pointing out of the volume is caught
    // before anything is created through it.
    let mut existing = joined.clone();
    let mut rest = Vec::new();
    let resolved_prefix = loop {
        match fs::canonicalize(&existing) {
            Ok(resolved) => break resolved,
            Err(err) if err.kind() == ErrorKind::NotFound => {
                let Some(name) = existing.file_name().map(ToOwned::to_owned) else {
                    return Err(outside(&existing));
                };
                rest.push(name);
                if !existing.pop() {
                    return Err(outside(&existing));
                }
            }
            Err(err) => {
                return Err(MountError::new(format!(
                    "cannot resolve subPath {sub_path:?}: {err}"
                )));
            }
        }
    };
    if !resolved_prefix.starts_with(&base) {
        return Err(outside(&resolved_prefix));
    }
    if !rest.is_empty() {
        let mode = fs::metadata(&base)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o755);
        let mut path = resolved_prefix;
        for name in rest.into_iter().rev() {
            path.push(name);
            match fs::create_dir(&path) {
                Ok(()) => {
                    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(mode));
                }
                Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
                Err(err) => {
                    return Err(MountError::new(format!(
                        "failed to create subPath directory {}: {err}",
                        path.display()
                    )));
                }
            }
        }
    }
    let resolved = fs::canonicalize(&joined)
        .map_err(|e| MountError::new(format!("cannot resolve subPath {sub_path:?}: {e}")))?;
    if !resolved.starts_with(&base) {
        return Err(outside(&resolved));
    }
    Ok(resolved)
}

/// Unmounts and deletes everything under `<pods_dir>/<uid>`; fine to call when already gone.
/// Refuses to delete while anything below is still mounted (as kubelet does), so a failed
/// unmount never deletes through a mount.
pub fn remove_pod_volumes(
    pods_dir: &Path,
    uid: &str,
    mounter: &dyn Mounter,
) -> Result<(), TeardownError> {
    if !is_single_component(uid) {
        return Err(TeardownError::Remove {
            path: pods_dir.join(uid),
            source: io::Error::new(ErrorKind::InvalidInput, "pod uid is not one path component"),
        });
    }
    let pod_dir = pods_dir.join(uid);
    if fs::symlink_metadata(&pod_dir).is_err() {
        return Ok(());
    }
    let mut mounts = mounter
        .mounts_below(&pod_dir)
        .map_err(|source| TeardownError::Unmount {
            path: pod_dir.clone(),
            source,
        })?;
    // Deepest first, so nested mounts come off before their parents.
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for mount in &mounts {
        mounter
            .unmount(mount)
            .map_err(|source| TeardownError::Unmount {
                path: mount.clone(),
                source,
            })?;
    }
    let left = mounter
        .mounts_below(&pod_dir)
        .map_err(|source| TeardownError::Unmount {
            path: pod_dir.clone(),
            source,
        })?;
    if !left.is_empty() {
        return Err(TeardownError::StillMounted {
            pod_dir,
            mounts: left,
        });
    }
    match fs::remove_dir_all(&pod_dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(()),
        Err(source) => Err(TeardownError::Remove {
            path: pod_dir,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::{
        ByteString,
        api::core::v1::{
            ConfigMap, ConfigMapVolumeSource, DownwardAPIVolumeFile, EmptyDirVolumeSource,
            ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodSpec, ProjectedVolumeSource,
            Secret, SecretVolumeSource, ServiceAccountTokenProjection, VolumeMount,
            VolumeProjection,
        },
        apimachinery::pkg::apis::meta::v1::ObjectMeta,
    };

    use super::*;

    /// Records tmpfs mounts instead of making them.
    #[derive(Default)]
    struct FakeMounter {
        mounted: Mutex<BTreeMap<PathBuf, Option<u64>>>,
    }

    impl Mounter for FakeMounter {
        fn is_mount_point(&self, path: &Path) -> io::Result<bool> {
            Ok(self.mounted.lock().unwrap().contains_key(path))
        }
        fn mount_tmpfs(&self, path: &Path, size: Option<u64>) -> io::Result<()> {
            self.mounted
                .lock()
                .unwrap()
                .insert(path.to_path_buf(), size);
            Ok(())
        }
        fn unmount(&self, path: &Path) -> io::Result<()> {
            self.mounted.lock().unwrap().remove(path);
            Ok(())
        }
        fn mounts_below(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
            Ok(self
                .mounted
                .lock()
                .unwrap()
                .keys()
                .filter(|p| p.starts_with(path))
                .cloned()
                .collect())
        }
    }

    fn pod(volumes: Vec<Volume>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some("1234-abcd".into()),
                labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                volumes: Some(volumes),
                ..PodSpec::default()
            }),
            status: None,
        }
    }

    fn objects() -> PodObjects {
        let mut objects = PodObjects::default();
        objects.config_maps.insert(
            "settings".into(),
            Some(ConfigMap {
                data: Some(BTreeMap::from([
                    ("mode".into(), "fast".into()),
                    ("level".into(), "3".into()),
                ])),
                binary_data: Some(BTreeMap::from([("blob".into(), ByteString(vec![0, 1, 2]))])),
                ..ConfigMap::default()
            }),
        );
        objects.secrets.insert(
            "creds".into(),
            Some(Secret {
                data: Some(BTreeMap::from([(
                    "password".into(),
                    ByteString(b"pw".to_vec()),
                )])),
                ..Secret::default()
            }),
        );
        objects
    }

    fn volume(name: &str) -> Volume {
        Volume {
            name: name.into(),
            ..Volume::default()
        }
    }

    fn config_map_volume(name: &str, cm: &str, items: Option<Vec<KeyToPath>>) -> Volume {
        Volume {
            config_map: Some(ConfigMapVolumeSource {
                name: cm.into(),
                items,
                ..ConfigMapVolumeSource::default()
            }),
            ..volume(name)
        }
    }

    fn setup(
        pod: &Pod,
        objects: &PodObjects,
        dir: &Path,
        mounter: &FakeMounter,
    ) -> Result<PodVolumes, VolumeError> {
        let allocatable = BTreeMap::new();
        let ctx = VolumeContext {
            pod,
            objects,
            allocatable: &allocatable,
        };
        setup_pod_volumes(&ctx, dir, mounter)
    }

    #[test]
    fn lays_out_volumes_like_kubelet() {
        let tmp = tempfile::tempdir().unwrap();
        let mounter = FakeMounter::default();
        let pod = pod(vec![
            Volume {
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..volume("scratch")
            },
            Volume {
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    size_limit: Some(Quantity("64Mi".into())),
                }),
                ..volume("cache")
            },
            config_map_volume("cfg", "settings", None),
            Volume {
                secret: Some(SecretVolumeSource {
                    secret_name: Some("creds".into()),
                    default_mode: Some(0o400),
                    ..SecretVolumeSource::default()
                }),
                ..volume("sec")
            },
            Volume {
                downward_api: Some(k8s_openapi::api::core::v1::DownwardAPIVolumeSource {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: "labels".into(),
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: "metadata.labels".into(),
                        }),
                        ..DownwardAPIVolumeFile::default()
                    }]),
                    ..Default::default()
                }),
                ..volume("info")
            },
        ]);
        let volumes = setup(&pod, &objects(), tmp.path(), &mounter).unwrap();
        let base = tmp.path().join("1234-abcd/volumes");
        assert_eq!(
            volumes["scratch"].host_path,
            base.join("kubernetes.io~empty-dir/scratch")
        );
        assert!(!volumes["scratch"].read_only);
        let mode = fs::metadata(&volumes["scratch"].host_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o777);
        assert_eq!(
            volumes["cfg"].host_path,
            base.join("kubernetes.io~configmap/cfg")
        );
        assert!(volumes["cfg"].read_only);
        assert_eq!(
            fs::read_to_string(base.join("kubernetes.io~configmap/cfg/mode")).unwrap(),
            "fast"
        );
        assert_eq!(
            fs::read(base.join("kubernetes.io~configmap/cfg/blob")).unwrap(),
            [0, 1, 2]
        );
        let secret_file = base.join("kubernetes.io~secret/sec/password");
        assert_eq!(fs::read_to_string(&secret_file).unwrap(), "pw");
        assert_eq!(
            fs::metadata(&secret_file).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert_eq!(
            fs::read_to_string(base.join("kubernetes.io~downward-api/info/labels")).unwrap(),
            "app=\"web\""
        );
        let mounted = mounter.mounted.lock().unwrap().clone();
        assert_eq!(
            mounted.get(&base.join("kubernetes.io~empty-dir/cache")),
            Some(&Some(64 << 20))
        );
        assert!(mounted.contains_key(&base.join("kubernetes.io~secret/sec")));
        assert!(!mounted.contains_key(&base.join("kubernetes.io~configmap/cfg")));

        // Refresh: a changed ConfigMap updates the files in place.
        let mut newer = objects();
        newer.config_maps.insert(
            "settings".into(),
            Some(ConfigMap {
                data: Some(BTreeMap::from([("mode".into(), "slow".into())])),
                ..ConfigMap::default()
            }),
        );
        setup(&pod, &newer, tmp.path(), &mounter).unwrap();
        assert_eq!(
            fs::read_to_string(base.join("kubernetes.io~configmap/cfg/mode")).unwrap(),
            "slow"
        );
        assert!(!base.join("kubernetes.io~configmap/cfg/level").exists());
        assert_eq!(mounter.mounted.lock().unwrap().len(), 3);

        // Teardown unmounts, deletes, and is idempotent.
        remove_pod_volumes(tmp.path(), "1234-abcd", &mounter).unwrap();
        assert!(!tmp.path().join("1234-abcd").exists());
        assert!(mounter.mounted.lock().unwrap().is_empty());
        remove_pod_volumes(tmp.path(), "1234-abcd", &mounter).unwrap();
    }

    #[test]
    fn memory_volumes_are_sized_like_kubelet() {
        use k8s_openapi::api::core::v1::ResourceRequirements;
        let mut pod = pod(vec![]);
        let objects = PodObjects::default();
        let allocatable = BTreeMap::from([("memory".to_owned(), Quantity("1Gi".into()))]);
        let ctx = |pod: &Pod| -> Option<u64> {
            let ctx = VolumeContext {
                pod,
                objects: &objects,
                allocatable: &allocatable,
            };
            memory_volume_size(&ctx, Some(512 << 20))
        };
        assert_eq!(ctx(&pod), Some(512 << 20), "sizeLimit below allocatable");
        let with_limit = |memory: &str| Container {
            resources: Some(ResourceRequirements {
                limits: Some(BTreeMap::from([("memory".into(), Quantity(memory.into()))])),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        };
        if let Some(spec) = pod.spec.as_mut() {
            spec.containers = vec![with_limit("64Mi"), with_limit("64Mi")];
        }
        assert_eq!(ctx(&pod), Some(128 << 20), "the pod's limit is smaller");
        if let Some(spec) = pod.spec.as_mut() {
            spec.containers.push(Container::default());
        }
        assert_eq!(
            ctx(&pod),
            Some(512 << 20),
            "a container without limit: no pod limit"
        );
        let none = VolumeContext {
            pod: &pod,
            objects: &objects,
            allocatable: &allocatable,
        };
        assert_eq!(
            memory_volume_size(&none, None),
            Some(1 << 30),
            "allocatable by default"
        );
    }

    #[test]
    fn config_map_items_and_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let mounter = FakeMounter::default();
        let item = |key: &str, path: &str, mode: Option<i32>| KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        };
        let pod_ok = pod(vec![config_map_volume(
            "cfg",
            "settings",
            Some(vec![item("mode", "conf/mode.txt", Some(0o600))]),
        )]);
        let volumes = setup(&pod_ok, &objects(), tmp.path(), &mounter).unwrap();
        let dir = &volumes["cfg"].host_path;
        assert_eq!(
            fs::read_to_string(dir.join("conf/mode.txt")).unwrap(),
            "fast"
        );
        assert!(!dir.join("level").exists());

        let missing_key = pod(vec![config_map_volume(
            "cfg",
            "settings",
            Some(vec![item("nope", "x", None)]),
        )]);
        let err = setup(&missing_key, &objects(), tmp.path(), &mounter).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap references non-existent config key: nope"
        );
        assert_eq!(err.reason(), "FailedMount");

        let missing = pod(vec![config_map_volume("cfg", "absent", None)]);
        let err = setup(&missing, &objects(), tmp.path(), &mounter).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"absent\" not found"
        );

        let mut optional = config_map_volume("cfg", "absent", None);
        if let Some(cm) = optional.config_map.as_mut() {
            cm.optional = Some(true);
        }
        let volumes = setup(&pod(vec![optional]), &objects(), tmp.path(), &mounter).unwrap();
        assert!(
            volumes["cfg"]
                .host_path
                .join(atomic_writer::DATA_DIR)
                .exists()
        );

        let escaping = pod(vec![config_map_volume(
            "cfg",
            "settings",
            Some(vec![item("mode", "../x", None)]),
        )]);
        assert!(setup(&escaping, &objects(), tmp.path(), &mounter).is_err());

        let token = pod(vec![Volume {
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        ..ServiceAccountTokenProjection::default()
                    }),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..volume("kube-api-access")
        }]);
        // A token the API server refused fails the volume with kubelet's message.
        let mut refused = objects();
        refused.tokens.insert(
            TokenSpec {
                audience: String::new(),
                expiration_seconds: 3600,
            },
            Err("failed to fetch token: serviceaccounts \"default\" not found".into()),
        );
        let err = setup(&token, &refused, tmp.path(), &mounter).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MountVolume.SetUp failed for volume \"kube-api-access\" : failed to fetch token: \
             serviceaccounts \"default\" not found"
        );
    }

    #[test]
    fn projected_combines_sources() {
        let tmp = tempfile::tempdir().unwrap();
        let mounter = FakeMounter::default();
        let pod = pod(vec![Volume {
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![
                    VolumeProjection {
                        config_map: Some(k8s_openapi::api::core::v1::ConfigMapProjection {
                            name: "settings".into(),
                            items: Some(vec![KeyToPath {
                                key: "mode".into(),
                                path: "mode".into(),
                                mode: None,
                            }]),
                            optional: None,
                        }),
                        ..VolumeProjection::default()
                    },
                    VolumeProjection {
                        secret: Some(k8s_openapi::api::core::v1::SecretProjection {
                            name: "creds".into(),
                            ..Default::default()
                        }),
                        ..VolumeProjection::default()
                    },
                    VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            path: "token".into(),
                            audience: Some("vault".into()),
                            expiration_seconds: Some(3607),
                        }),
                        ..VolumeProjection::default()
                    },
                ]),
                ..ProjectedVolumeSource::default()
            }),
            ..volume("all")
        }]);
        let mut objects = objects();
        objects.tokens.insert(
            TokenSpec {
                audience: "vault".into(),
                expiration_seconds: 3607,
            },
            Ok("jwt".into()),
        );
        let volumes = setup(&pod, &objects, tmp.path(), &mounter).unwrap();
        let dir = &volumes["all"].host_path;
        assert!(dir.ends_with("kubernetes.io~projected/all"));
        assert_eq!(fs::read_to_string(dir.join("mode")).unwrap(), "fast");
        assert_eq!(fs::read_to_string(dir.join("password")).unwrap(), "pw");
        assert_eq!(fs::read_to_string(dir.join("token")).unwrap(), "jwt");
    }

    #[test]
    fn claims_mount_their_volumes_directory_and_report_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("pvc-1_shop_data");
        fs::create_dir(&data).unwrap();
        let mut objects = objects();
        objects.claims.insert(
            "data".into(),
            Ok(ClaimedVolume {
                volume_name: "pvc-1".into(),
                path: data.clone(),
                source: ClaimedSource::Local,
            }),
        );
        objects
            .claims
            .insert("pending".into(), Err("PVC is not bound".into()));
        let claim_volume = |name: &str, claim: &str, read_only: Option<bool>| Volume {
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only,
            }),
            ..volume(name)
        };
        let mounter = FakeMounter::default();
        let pods = dir.path().join("pods");
        let volumes = setup(
            &pod(vec![claim_volume("d", "data", Some(true))]),
            &objects,
            &pods,
            &mounter,
        )
        .unwrap();
        assert_eq!(
            volumes["d"],
            VolumePath {
                host_path: data.clone(),
                read_only: true
            }
        );
        let err = setup(
            &pod(vec![claim_volume("d", "pending", None)]),
            &objects,
            &pods,
            &mounter,
        )
        .unwrap_err();
        assert_eq!(
            (err.volume.as_str(), err.message.as_str()),
            ("d", "PVC is not bound")
        );
        // Data deleted under a bound volume: reported, never recreated empty.
        fs::remove_dir(&data).unwrap();
        let err = setup(
            &pod(vec![claim_volume("d", "data", None)]),
            &objects,
            &pods,
            &mounter,
        )
        .unwrap_err();
        assert!(err.message.contains("does not exist"), "{}", err.message);
        assert!(!data.exists());
    }

    #[test]
    fn host_path_types() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let file = tmp.path().join("sub/f");
        assert!(
            check_host_path(&dir, "Directory")
                .unwrap_err()
                .ends_with("is not a directory")
        );
        check_host_path(&dir, "DirectoryOrCreate").unwrap();
        assert!(dir.is_dir());
        check_host_path(&dir, "Directory").unwrap();
        check_host_path(&file, "FileOrCreate").unwrap();
        assert!(file.is_file());
        check_host_path(&file, "File").unwrap();
        assert_eq!(
            check_host_path(&dir, "File").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a file",
                dir.display()
            )
        );
        assert_eq!(
            check_host_path(&file, "Directory").unwrap_err(),
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        assert!(
            check_host_path(&file, "Socket")
                .unwrap_err()
                .ends_with("is not a socket file")
        );
        let socket = tmp.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        check_host_path(&socket, "Socket").unwrap();
        check_host_path(Path::new("/dev/null"), "CharDevice").unwrap();
        assert!(
            check_host_path(Path::new("/dev/null"), "BlockDevice")
                .unwrap_err()
                .ends_with("is not a block device")
        );
        check_host_path(&tmp.path().join("nothing"), "").unwrap();
        assert_eq!(
            check_host_path(&dir, "Weird").unwrap_err(),
            "Weird is an invalid volume type"
        );
    }

    #[test]
    fn mounts_subpaths_and_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let volume_dir = tmp.path().join("vol");
        fs::create_dir_all(&volume_dir).unwrap();
        std::os::unix::fs::symlink("/etc", volume_dir.join("escape")).unwrap();
        let volumes = PodVolumes::from([
            (
                "data".to_owned(),
                VolumePath {
                    host_path: volume_dir.clone(),
                    read_only: false,
                },
            ),
            (
                "cfg".to_owned(),
                VolumePath {
                    host_path: volume_dir.clone(),
                    read_only: true,
                },
            ),
        ]);
        let mount = |name: &str, path: &str, sub: Option<&str>| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            sub_path: sub.map(str::to_owned),
            ..VolumeMount::default()
        };
        let container = |mounts: Vec<VolumeMount>| Container {
            name: "app".into(),
            volume_mounts: Some(mounts),
            ..Container::default()
        };
        let env = ContainerEnv {
            vars: vec![("POD".into(), "web-1".into())],
            warnings: vec![],
        };
        let mut propagated = mount("data", "/data", None);
        propagated.mount_propagation = Some("HostToContainer".into());
        let mut by_expr = mount("data", "/logs", None);
        by_expr.sub_path_expr = Some("logs/$(POD)".into());
        let mounts = container_mounts(
            &container(vec![
                propagated,
                mount("cfg", "/etc/cfg", None),
                mount("data", "/sub", Some("a/b")),
                by_expr,
            ]),
            &volumes,
            &env,
        )
        .unwrap();
        assert_eq!(mounts[0].container_path, "/data");
        assert_eq!(
            mounts[0].propagation,
            api::MountPropagation::PropagationHostToContainer as i32
        );
        assert!(!mounts[0].readonly);
        assert!(
            mounts[1].readonly,
            "configMap-like volumes are forced read-only"
        );
        assert_eq!(
            mounts[1].propagation,
            api::MountPropagation::PropagationPrivate as i32
        );
        let canonical = fs::canonicalize(&volume_dir).unwrap();
        assert_eq!(Path::new(&mounts[2].host_path), canonical.join("a/b"));
        assert!(canonical.join("a/b").is_dir());
        assert_eq!(
            Path::new(&mounts[3].host_path),
            canonical.join("logs/web-1")
        );

        let err = |m: VolumeMount| {
            container_mounts(&container(vec![m]), &volumes, &env)
                .unwrap_err()
                .message
        };
        assert_eq!(
            err(mount("nope", "/x", None)),
            "cannot find volume \"nope\" to mount into container \"app\""
        );
        assert_eq!(
            err(mount("data", "/x", Some("../up"))),
            "unable to provision SubPath `../up`: must not contain '..'"
        );
        assert_eq!(
            err(mount("data", "/x", Some("/abs"))),
            "error SubPath `/abs` must not be an absolute path"
        );
        assert!(err(mount("data", "/x", Some("escape"))).contains("outside of the volume"));
        assert!(err(mount("data", "/x", Some("escape/new"))).contains("outside of the volume"));
        assert!(!Path::new("/etc/new").exists());
        let mut missing = mount("data", "/x", None);
        missing.sub_path_expr = Some("$(NOPE)/x".into());
        assert_eq!(err(missing), "missing value for NOPE");
        let mut bad = mount("data", "/x", None);
        bad.mount_propagation = Some("Sideways".into());
        assert_eq!(err(bad), "invalid MountPropagation mode: \"Sideways\"");
    }

    #[test]
    fn teardown_refuses_to_delete_through_a_mount() {
        struct Stuck;
        impl Mounter for Stuck {
            fn is_mount_point(&self, _: &Path) -> io::Result<bool> {
                Ok(true)
            }
            fn mount_tmpfs(&self, _: &Path, _: Option<u64>) -> io::Result<()> {
                Ok(())
            }
            fn unmount(&self, _: &Path) -> io::Result<()> {
                Ok(())
            }
            fn mounts_below(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
                Ok(vec![path.join("volumes/x/y")])
            }
        }
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("uid/volumes/x/y")).unwrap();
        let err = remove_pod_volumes(tmp.path(), "uid", &Stuck).unwrap_err();
        assert!(matches!(err, TeardownError::StillMounted { .. }));
        assert!(tmp.path().join("uid/volumes/x/y").exists());
        assert!(remove_pod_volumes(tmp.path(), "..", &Stuck).is_err());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
