//! A containerd process for one node: started (optionally inside the node's network namespace)
//! with a config file the caller wrote, stopped with everything it left behind — shims, mounts of
//! container root filesystems — on [`Containerd::stop`] or drop. Used by the privileged tests
//! and by `cargo xtask up`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use nix::{
    mount::{MntFlags, umount2},
    sys::signal::{Signal, kill},
    unistd::Pid,
};

use crate::{Netns, TestbedError};

/// containerd's namespace for CRI-managed containers and images.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// A running containerd; stopped on drop.
#[derive(Debug)]
pub struct Containerd {
    socket: PathBuf,
    log: PathBuf,
    /// Directories whose leftover mounts are detached on stop (root and state).
    mount_roots: Vec<PathBuf>,
    process: Option<Child>,
}

impl Containerd {
    /// Starts `containerd --config <config>` (in `netns` if given), logging to `log`, and waits up
    /// to `timeout` until it answers on `socket`. `mount_roots` are the root and state dirs named
    /// in the config.
    pub fn start(
        config: &Path,
        socket: &Path,
        log: &Path,
        mount_roots: Vec<PathBuf>,
        netns: Option<&Netns>,
        timeout: Duration,
    ) -> Result<Self, TestbedError> {
        let process = spawn(config, log, netns, false)?;
        let mut containerd = Self {
            socket: socket.to_path_buf(),
            log: log.to_path_buf(),
            mount_roots,
            process: Some(process),
        };
        wait_until_serving(socket, log, containerd.process.as_mut(), timeout)?;
        Ok(containerd)
    }

    /// Like [`Containerd::start`], but for a containerd that outlives this process: it runs in a
    /// process group of its own (a Ctrl-C of the caller does not reach it) and nothing stops it
    /// on drop. Returns its pid; [`stop_pid`] stops it later. If it does not come up, it is
    /// stopped again before the error returns.
    pub fn start_detached(
        config: &Path,
        socket: &Path,
        log: &Path,
        netns: Option<&Netns>,
        timeout: Duration,
    ) -> Result<u32, TestbedError> {
        let mut process = spawn(config, log, netns, true)?;
        let pid = process.id();
        if let Err(err) = wait_until_serving(socket, log, Some(&mut process), timeout) {
            let _ = process.kill();
            let _ = process.wait();
            return Err(err);
        }
        Ok(pid)
    }

    /// The gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// `ctr` talking to this containerd in the CRI namespace.
    pub fn ctr(&self) -> Command {
        ctr_at(&self.socket)
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Imports OCI image tarballs (`ctr images import`), each bounded to 60 s.
    pub fn import(&self, tarballs: &[PathBuf]) -> Result<(), TestbedError> {
        for tarball in tarballs {
            let output = run_bounded(
                self.ctr().args(["images", "import"]).arg(tarball),
                Duration::from_secs(60),
            )?;
            if !output.status.success() {
                return Err(TestbedError::Other(format!(
                    "importing {}: {}",
                    tarball.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                )));
            }
        }
        Ok(())
    }

    /// Stops containerd (SIGTERM, SIGKILL after 10 s), kills the shims it started and detaches
    /// the mounts it left. Containers are not stopped first: callers that want a graceful end
    /// remove their pods before.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            if let Ok(pid) = i32::try_from(process.id()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(process.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = process.kill();
            let _ = process.wait();
        }
        kill_shims_of(&self.socket);
        for root in &self.mount_roots {
            unmount_below(root);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns `containerd --config <config>` with its output appended to `log`.
fn spawn(
    config: &Path,
    log: &Path,
    netns: Option<&Netns>,
    own_group: bool,
) -> Result<Child, TestbedError> {
    use std::os::unix::process::CommandExt as _;
    let log_file =
        fs::File::create(log).map_err(|source| TestbedError::io("creating", log, source))?;
    let log_err = log_file
        .try_clone()
        .map_err(|source| TestbedError::io("duplicating", log, source))?;
    let mut command = match netns {
        Some(netns) => netns.command("containerd")?,
        None => Command::new("containerd"),
    };
    if own_group {
        command.process_group(0);
    }
    command
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|source| {
            TestbedError::Other(format!(
                "starting containerd (installed by `cargo xtask setup`): {source}"
            ))
        })
}

/// `ctr` talking to the containerd at `socket` in the CRI namespace.
pub fn ctr_at(socket: &Path) -> Command {
    let mut command = Command::new("ctr");
    command
        .arg("--address")
        .arg(socket)
        .args(["--namespace", CRI_NAMESPACE]);
    command
}

/// Whether the containerd at `socket` answers `ctr version` within 5 s.
pub fn answers(socket: &Path) -> bool {
    socket.exists()
        && run_bounded(ctr_at(socket).arg("version"), Duration::from_secs(5))
            .is_ok_and(|output| output.status.success())
}

/// Waits until containerd answers on `socket`; fails early if `process` exits, with its log.
fn wait_until_serving(
    socket: &Path,
    log: &Path,
    mut process: Option<&mut Child>,
    timeout: Duration,
) -> Result<(), TestbedError> {
    let deadline = Instant::now() + timeout;
    loop {
        if answers(socket) {
            return Ok(());
        }
        let exited = process
            .as_mut()
            .and_then(|process| process.try_wait().ok().flatten());
        if let Some(status) = exited {
            return Err(TestbedError::Other(format!(
                "containerd exited during start-up ({status}); its log ({}):\n{}",
                log.display(),
                fs::read_to_string(log).unwrap_or_default()
            )));
        }
        if Instant::now() > deadline {
            return Err(TestbedError::Other(format!(
                "containerd did not answer on {} within {timeout:?}; its log ({}):\n{}",
                socket.display(),
                log.display(),
                fs::read_to_string(log).unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops the process `pid` (SIGTERM, SIGKILL after `grace`); returns once it is gone. A pid
/// that is not running succeeds.
pub fn stop_pid(pid: u32, grace: Duration) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    let pid = Pid::from_raw(raw);
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !running(raw) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = kill(pid, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(raw) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` exists and is not a zombie. A zombie whose parent is gone is reaped by init;
/// one whose parent lives (our own child) counts as gone.
pub fn running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Runs `command` with its output captured, killing it after `timeout`. The wait happens on a
/// helper thread, so a command writing more than a pipe's buffer cannot stall it.
pub fn run_bounded(command: &mut Command, timeout: Duration) -> Result<Output, TestbedError> {
    let description = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| TestbedError::Other(format!("starting {description}: {err}")))?;
    let pid = i32::try_from(child.id()).map(Pid::from_raw);
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(timeout) {
        Ok(output) => {
            output.map_err(|err| TestbedError::Other(format!("waiting for {description}: {err}")))
        }
        Err(_) => {
            if let Ok(pid) = pid {
                let _ = kill(pid, Signal::SIGKILL);
            }
            Err(TestbedError::Other(format!(
                "{description} did not finish within {timeout:?}; killed it"
            )))
        }
    }
}

/// SIGKILLs containerd shims started for `socket` (their command line names it) that outlived
/// their containers, e.g. because containerd died first.
pub fn kill_shims_of(socket: &Path) {
    let wanted = socket.as_os_str().as_encoded_bytes();
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
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
        let is_shim = args
            .first()
            .is_some_and(|program| program.ends_with(b"containerd-shim-runc-v2"));
        if is_shim && args.contains(&wanted) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Detaches every mount below `dir` (container root filesystems, sandbox shm, tmpfs volumes left
/// by a dead containerd or agent), deepest first, so the directory can be removed. A network
/// namespace mounted there (a pod's, with `netns_mounts_under_state_dir`) has its processes
/// killed first: detaching alone would leave them running in it.
pub fn unmount_below(dir: &Path) {
    for mount in mounts_at_or_below(dir).into_iter().rev() {
        if mount.is_netns {
            let _ = crate::netns::delete_netns_file(&mount.target);
        } else {
            let _ = umount2(&mount.target, MntFlags::MNT_DETACH);
        }
    }
}

/// The mount points at or below `dir`, as /proc/self/mountinfo lists them.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    mounts_at_or_below(dir)
        .into_iter()
        .map(|mount| mount.target)
        .collect()
}

/// One line of /proc/self/mountinfo, as far as unmounting needs it.
struct Mount {
    target: PathBuf,
    /// A bind-mounted network namespace (its root is `net:[<inode>]`).
    is_netns: bool,
}

/// The mounts at or below `dir`, in mount order (parents before what is mounted on them).
fn mounts_at_or_below(dir: &Path) -> Vec<Mount> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let root = fields.nth(3)?;
            let target = Path::new(fields.next()?);
            target.starts_with(dir).then(|| Mount {
                target: target.to_owned(),
                is_netns: root.starts_with("net:["),
            })
        })
        .collect()
}

/// Removes `cgroup` (e.g. `flotilla/flotilla-node1`; a leading `/` means the same) and everything
/// below it in every cgroup hierarchy, deepest first: runc leaves the pods' parent cgroups behind.
/// Returns how many directories went.
pub fn remove_cgroups(cgroup: &Path) -> usize {
    // Joining an absolute path would replace the hierarchy's, and reach outside /sys/fs/cgroup.
    let relative = cgroup.strip_prefix("/").unwrap_or(cgroup);
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return 0;
    };
    hierarchies
        .flatten()
        .map(|hierarchy| remove_cgroup_tree(&hierarchy.path().join(relative)))
        .sum()
}

fn remove_cgroup_tree(dir: &Path) -> usize {
    let mut removed = 0;
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                removed += remove_cgroup_tree(&entry.path());
            }
        }
    }
    if fs::remove_dir(dir).is_ok() {
        removed += 1;
    }
    removed
}
