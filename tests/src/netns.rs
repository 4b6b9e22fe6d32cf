//! Named network namespaces (`/run/netns/<name>`, the same files `ip netns` uses) and running code
//! or processes inside them with `setns(2)`, i.e. nsenter semantics: unlike `ip netns exec`, /sys is
//! not remounted, so /sys/fs/bpf and /sys/fs/cgroup stay visible.

use std::{
    fs::{self, File, OpenOptions},
    io,
    os::unix::{fs::MetadataExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use nix::{
    errno::Errno,
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns, unshare},
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::TestbedError;

/// Where named network namespaces are bind-mounted (shared with iproute2 and containerd's CNI).
pub const NETNS_DIR: &str = "/run/netns";
/// The name [`Netns::host`] goes by.
const HOST: &str = "(host)";

/// A named network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// Creates the namespace `name`; fails if one of that name exists.
    pub fn create(name: &str) -> Result<Self, TestbedError> {
        validate_name(name)?;
        let dir = Path::new(NETNS_DIR);
        fs::create_dir_all(dir).map_err(|source| TestbedError::io("creating", dir, source))?;
        make_netns_dir_shared(dir)?;
        let path = dir.join(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| {
                if source.kind() == io::ErrorKind::AlreadyExists {
                    TestbedError::AlreadyExists(format!("network namespace {name}"))
                } else {
                    TestbedError::io("creating", &path, source)
                }
            })?;
        // unshare() moves only the calling thread, so a short-lived thread creates the namespace
        // and the bind mount keeps it alive after the thread is gone.
        let mount_target = path.clone();
        let created = std::thread::spawn(move || -> Result<(), Errno> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &mount_target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        })
        .join()
        .map_err(|_| TestbedError::Other("the namespace-creating thread panicked".into()))?;
        if let Err(errno) = created {
            let _ = fs::remove_file(&path);
            return Err(TestbedError::sys("creating network namespace", name, errno));
        }
        Ok(Self {
            name: name.to_owned(),
            path,
        })
    }

    /// Opens an existing namespace by name.
    pub fn open(name: &str) -> Result<Self, TestbedError> {
        validate_name(name)?;
        let path = Path::new(NETNS_DIR).join(name);
        if !path.exists() {
            return Err(TestbedError::NotFound(format!("network namespace {name}")));
        }
        Ok(Self {
            name: name.to_owned(),
            path,
        })
    }

    /// A namespace bind-mounted at `path` outside /run/netns, such as a pod's under its node's
    /// containerd state dir; it goes by its file name.
    pub fn at(path: &Path) -> Result<Self, TestbedError> {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .ok_or_else(|| TestbedError::Invalid(format!("namespace path {}", path.display())))?;
        if !path.exists() {
            return Err(TestbedError::NotFound(format!(
                "network namespace {}",
                path.display()
            )));
        }
        Ok(Self {
            name,
            path: path.to_owned(),
        })
    }

    /// The namespace this process was started in (the machine's own, for links between it and a
    /// test bed). /proc/1 may not be ours to open inside a container, /proc/self is. Never
    /// deleted: [`Netns::delete`] refuses to.
    pub fn host() -> Self {
        Self {
            name: HOST.to_owned(),
            path: PathBuf::from("/proc/self/ns/net"),
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file (what CNI calls CNI_NETNS).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file(&self) -> Result<File, TestbedError> {
        File::open(&self.path).map_err(|source| TestbedError::io("opening", &self.path, source))
    }

    /// Runs `f` on a thread that has entered this namespace and returns its result. Sockets
    /// created inside `f` stay in this namespace for their whole life.
    pub fn run<F, R>(&self, f: F) -> Result<R, TestbedError>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = self.file()?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|errno| {
                        TestbedError::sys("entering namespace", &self.name, errno)
                    })?;
                    Ok(f())
                })
                .join()
                .map_err(|_| {
                    TestbedError::Other(format!("a thread in namespace {} panicked", self.name))
                })?
        })
    }

    /// A command that runs `program` inside this namespace (nsenter semantics).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Result<Command, TestbedError> {
        let file = self.file()?;
        let mut command = Command::new(program);
        // SAFETY: the closure only calls setns(2), which is async-signal-safe.
        unsafe {
            command
                .pre_exec(move || setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from));
        }
        Ok(command)
    }

    /// Writes a sysctl under /proc/sys/net as seen from this namespace, e.g.
    /// `("net/ipv4/ip_forward", "1")`.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), TestbedError> {
        let path = Path::new("/proc/sys").join(key);
        self.run(|| fs::write(&path, value))?
            .map_err(|source| TestbedError::io("writing", &path, source))
    }

    /// Kills every process still inside the namespace, unmounts and removes it. Removing a
    /// namespace that is already gone succeeds.
    pub fn delete(&self) -> Result<(), TestbedError> {
        if self.name == HOST {
            return Err(TestbedError::Invalid(
                "refusing to delete the host's network namespace".into(),
            ));
        }
        delete_netns_file(&self.path)
    }
}

/// Kills processes in the namespace at `path`, then unmounts and removes the file.
pub(crate) fn delete_netns_file(path: &Path) -> Result<(), TestbedError> {
    let inode = match fs::metadata(path) {
        Ok(metadata) => Some(metadata.ino()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(TestbedError::io("inspecting", path, source)),
    };
    if let Some(inode) = inode {
        kill_processes_in_netns(inode);
    }
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
        Err(errno) => {
            return Err(TestbedError::sys(
                "unmounting network namespace",
                &path.display().to_string(),
                errno,
            ));
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(TestbedError::io("removing", path, source)),
    }
}

/// SIGKILLs every process (other than this one) whose network namespace has inode `inode`.
/// Processes left inside would keep the namespace and its links alive after it is unmounted.
fn kill_processes_in_netns(inode: u64) {
    let wanted = format!("net:[{inode}]");
    let own_pid = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid.unsigned_abs() == own_pid {
            continue;
        }
        let Ok(link) = fs::read_link(entry.path().join("ns/net")) else {
            continue;
        };
        if link.as_os_str() == wanted.as_str() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Makes /run/netns a shared mount as iproute2 does, so namespaces mounted here are visible to
/// processes in other mount namespaces (containerd shims, for instance).
fn make_netns_dir_shared(dir: &Path) -> Result<(), TestbedError> {
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, dir, None::<&str>, shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself first.
            mount(
                Some(dir),
                dir,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .and_then(|()| mount(None::<&str>, dir, None::<&str>, shared, None::<&str>))
            .map_err(|errno| {
                TestbedError::sys("making /run/netns a shared mount", NETNS_DIR, errno)
            })
        }
        Err(errno) => Err(TestbedError::sys(
            "making /run/netns a shared mount",
            NETNS_DIR,
            errno,
        )),
    }
}

fn validate_name(name: &str) -> Result<(), TestbedError> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name != "."
        && name != "..";
    if valid {
        Ok(())
    } else {
        Err(TestbedError::Invalid(format!(
            "network namespace name {name:?}: use letters, digits, '-', '_' and '.'"
        )))
    }
}
