//! The local cluster's supervisor: `cargo xtask up` and `start` leave `xtask supervise` running in
//! a process group of its own (pid in `.flotilla/cluster/supervisor.pid`, log beside it). Every
//! second it looks at the cluster as `up` does and restarts a daemon that is not running (a
//! control plane, the API balancer, a node's containerd or agent) with the binaries and flags the cluster was
//! started with, keeping all state: the agent re-adopts its pods, containerd its shims, the
//! control plane its etcd data. A daemon that keeps dying is restarted with a growing delay
//! (1 s doubling to 30 s, as systemd's `Restart=` with a back-off, or the kubelet's crash-loop
//! back-off), forgotten once it has run for a minute.
//!
//! Restarts happen under the cluster's repair lock, which `up`/`start` hold too, so the two never
//! start one daemon twice; `stop` and `down` end the supervisor before they stop anything. It
//! ends by itself when the cluster is gone.

use std::{
    collections::HashMap,
    fs::File,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use nix::{
    fcntl::{Flock, FlockArg},
    sys::{
        signal::{Signal, kill},
        wait::{WaitPidFlag, waitpid},
    },
    unistd::Pid,
};

use super::{
    Daemon, cluster_dir, control_plane,
    inventory::{Inventory, alive, pid_from_file},
    restart, spawn_daemon,
};

/// How often the cluster is looked at.
const TICK: Duration = Duration::from_secs(1);
/// The delay before the second restart of a daemon; it doubles per restart.
const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest delay between restarts.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// How long a restarted daemon must run before its back-off starts over.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How long `stop` waits for the supervisor to end after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);

fn pid_file() -> PathBuf {
    cluster_dir().join("supervisor.pid")
}

/// The supervisor's log.
pub(super) fn log_path() -> PathBuf {
    cluster_dir().join("supervisor.log")
}

/// The running supervisor's pid.
pub(super) fn running() -> Option<i32> {
    pid_from_file(&pid_file(), "xtask")
}

/// Takes the repair lock (held by whoever restarts daemons), waiting for it if `wait`; None
/// when it is held and `wait` is false.
pub(super) fn lock(wait: bool) -> anyhow::Result<Option<Flock<File>>> {
    let dir = cluster_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("repair.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let how = if wait {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockExclusiveNonblock
    };
    match Flock::lock(file, how) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) if !wait => Ok(None),
        Err((_, errno)) => Err(errno).with_context(|| format!("locking {}", path.display())),
    }
}

/// Starts the supervisor unless one runs.
pub(super) fn ensure_running() -> anyhow::Result<()> {
    if let Some(pid) = running() {
        eprintln!("up: the supervisor runs (pid {pid})");
        return Ok(());
    }
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let child = spawn_daemon(
        Command::new(&exe)
            .arg("supervise")
            .arg("--cluster-dir")
            .arg(cluster_dir()),
        &log_path(),
        &pid_file(),
    )?;
    eprintln!(
        "up: started the supervisor (pid {}, log {}): it restarts a daemon that dies",
        child.id(),
        log_path().display()
    );
    Ok(())
}

/// Ends the supervisor (SIGTERM, SIGKILL after a grace period); its pid if one ran.
pub(super) fn stop() -> anyhow::Result<Option<i32>> {
    let Some(pid) = running() else {
        return Ok(None);
    };
    let target = Pid::from_raw(pid);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        let _ = kill(target, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::ensure!(!alive(pid), "the supervisor (pid {pid}) survived SIGKILL");
    }
    Ok(Some(pid))
}

/// A line of the supervisor's log, with the time.
fn say(line: &str) {
    eprintln!(
        "{} supervise: {line}",
        jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| jiff::Timestamp::now())
    );
}

/// One daemon's restarts.
#[derive(Debug)]
struct Backoff {
    /// Restarts since it last ran for [`HEALTHY_AFTER`].
    restarts: u32,
    /// When it was last restarted.
    restarted: Instant,
}

impl Backoff {
    /// When the next restart may happen.
    fn next(&self) -> Instant {
        self.restarted + delay(self.restarts)
    }
}

/// The wait before restart number `restarts + 1`: none for the first, then 1 s doubling to 30 s.
fn delay(restarts: u32) -> Duration {
    match restarts {
        0 => Duration::ZERO,
        n => FIRST_DELAY
            .saturating_mul(1 << (n - 1).min(16))
            .min(MAX_DELAY),
    }
}

/// `xtask supervise`: runs until the cluster is gone or another supervisor took over.
pub(crate) fn run() -> anyhow::Result<()> {
    let own = i32::try_from(std::process::id()).unwrap_or_default();
    say(&format!("started (pid {own})"));
    let mut backoff: HashMap<Daemon, Backoff> = HashMap::new();
    let mut said_blocked = Vec::new();
    loop {
        std::thread::sleep(TICK);
        // Daemons this process restarted are its children: reap the ones that died, or they
        // would linger as zombies.
        while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            if status == nix::sys::wait::WaitStatus::StillAlive {
                break;
            }
            say(&format!("a daemon it started ended: {status:?}"));
        }
        if !control_plane::sites()
            .iter()
            .any(|site| site.state().exists())
        {
            say("the cluster is gone; ending");
            return Ok(());
        }
        let recorded = std::fs::read_to_string(pid_file()).unwrap_or_default();
        if recorded.trim() != own.to_string() {
            say("another supervisor took over; ending");
            return Ok(());
        }
        let Some(_lock) = lock(false)? else {
            continue;
        };
        let inventory = Inventory::scan();
        let blockers = inventory.repair_blockers();
        if !blockers.is_empty() {
            if blockers != said_blocked {
                say(&format!(
                    "not restarting anything: {} (`cargo xtask status` shows the cluster)",
                    blockers.join("; ")
                ));
                said_blocked = blockers;
            }
            continue;
        }
        said_blocked.clear();
        let missing = inventory.missing();
        let now = Instant::now();
        // A daemon restarted over a minute ago ran since (a failing one is retried within 30 s):
        // it starts over with no delay.
        backoff.retain(|_, entry| now.duration_since(entry.restarted) < HEALTHY_AFTER);
        for daemon in missing {
            let previous = backoff.get(&daemon);
            if previous.is_some_and(|entry| entry.next() > now) {
                continue;
            }
            let restarts = previous.map_or(0, |entry| entry.restarts) + 1;
            say(&format!(
                "{daemon} is not running; starting it again (restart {restarts})"
            ));
            let result = restart(&inventory, &daemon);
            let entry = Backoff {
                restarts,
                restarted: Instant::now(),
            };
            match result {
                Ok(()) => say(&format!("{daemon} runs again")),
                Err(err) => say(&format!(
                    "starting {daemon} failed: {err:#}; next try in {:?}",
                    delay(restarts)
                )),
            }
            backoff.insert(daemon, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_from_none_to_thirty_seconds() {
        let delays: Vec<u64> = (0..8).map(|n| delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }
}
