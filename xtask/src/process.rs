//! Running commands from xtask: visible steps, a spinner with elapsed time on the slow ones, and
//! the tail of a command's log when it fails.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};

/// The workspace root (xtask lives one level below it). `cargo xtask` tells the running binary
/// where its manifest is; the path compiled in is only the fallback, because with a target
/// directory shared by two checkouts (CI's clone and a work tree) cargo may run the `xtask`
/// binary last built from the other checkout when both are up to date, and that path names the
/// other checkout.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo target directory in use (`CARGO_TARGET_DIR` or `<workspace>/target`).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

/// The cargo binary that runs xtask, so nested builds use the same toolchain.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command
}

/// Runs `command` with its output going straight to the terminal; fails if it fails.
pub(crate) fn run_visible(step: &str, command: &mut Command) -> anyhow::Result<()> {
    eprintln!("==> {step}");
    let started = Instant::now();
    let status = command
        .status()
        .with_context(|| format!("{step}: could not start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    eprintln!("    {step}: ok in {}", human(started.elapsed()));
    Ok(())
}

/// Runs `command`; fails with its stderr if it fails.
pub(crate) fn run_quiet(step: &str, command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("{step}: could not start {:?}", command.get_program()))?;
    if !output.status.success() {
        bail!(
            "{step} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Runs a slow `command` with a spinner, its output captured in a log file under the target dir.
/// On failure, the error carries the log's last lines.
pub(crate) fn run_logged(step: &str, log_name: &str, command: &mut Command) -> anyhow::Result<()> {
    let log_dir = target_dir().join("xtask-logs");
    fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let log_path = log_dir.join(format!("{log_name}.log"));
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let log_err = log.try_clone().context("duplicating the log file handle")?;

    eprintln!("==> {step} (log: {})", log_path.display());
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("    {spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(step.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let status = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .status();
    spinner.finish_and_clear();
    let status =
        status.with_context(|| format!("{step}: could not start {:?}", command.get_program()))?;
    if !status.success() {
        bail!(
            "{step} failed ({status}); last lines of {}:\n{}",
            log_path.display(),
            tail(&log_path, 15)
        );
    }
    eprintln!("    {step}: done in {}", human(started.elapsed()));
    Ok(())
}

/// Polls `check` every 500 ms under a spinner until it returns `Some`, fails, or `timeout`
/// passes. `check` returning an error ends the wait at once (something it waits on died).
pub(crate) fn wait_for<T>(
    step: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    eprintln!("==> {step}");
    let spinner = ProgressBar::new_spinner();
    spinner.set_style(
        ProgressStyle::with_template("    {spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(step.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let result = loop {
        match check() {
            Ok(Some(value)) => break Ok(value),
            Ok(None) => {}
            Err(err) => break Err(err),
        }
        if started.elapsed() > timeout {
            break Err(anyhow::anyhow!(
                "{step}: not done within {}",
                human(timeout)
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    spinner.finish_and_clear();
    if result.is_ok() {
        eprintln!("    {step}: done in {}", human(started.elapsed()));
    }
    result
}

/// Runs `command` quietly and returns its stdout, or None if it could not run or failed.
pub(crate) fn output_of(command: &mut Command) -> Option<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The last `lines` lines of the file at `path`.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| format!("    | {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A duration as "1m 23s" or "4.2s".
pub(crate) fn human(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds >= 60.0 {
        format!(
            "{}m {:02}s",
            duration.as_secs() / 60,
            duration.as_secs() % 60
        )
    } else {
        format!("{seconds:.1}s")
    }
}

/// Whether this process runs as root (uid 0), read from /proc/self/status.
pub(crate) fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// SIGKILLs `pid` (for leftovers that have no reason to shut down gracefully).
pub(crate) fn kill_now(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// The command line of process `pid` (arguments split), if it exists.
pub(crate) fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|byte| *byte == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect(),
    )
}

/// The pids of every process on the machine.
pub(crate) fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
