//! "Machines" for following the README's install commands: each is a network namespace of the
//! test bed plus a mount namespace of its own, in which /etc/flotilla, /var/lib/flotilla,
//! /run/flotilla, /var/log/flotilla and /etc/systemd/system are the machine's own directories and
//! /usr/local is an overlay of the host's, so what one machine installs or writes the others do
//! not see: they share nothing but the network (and the kernel: bpffs and cgroups, where every
//! node's files carry its name).
//!
//! systemd is not PID 1 on the test machines, so [`Machine::systemctl`] does its part for the
//! units installed on a machine: `Requires`, `EnvironmentFile`, `ExecStartPre`, `ExecStart`,
//! `ExecStartPost` (with systemd's `$VAR`/`${VAR}` expansion and `-` prefix), `Type=notify`
//! readiness through `NOTIFY_SOCKET`, and `KillMode` on stop (a process group stands in for the
//! unit's cgroup). Restart policies are not emulated.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead as _, BufReader, Read as _},
    net::Ipv4Addr,
    os::unix::{net::UnixDatagram, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};

/// The directories a machine has of its own: where the machine sees each, and the name of the
/// host directory (under the machine's root) mounted there.
const OWN_DIRS: [(&str, &str); 5] = [
    ("/etc/flotilla", "etc-flotilla"),
    ("/var/lib/flotilla", "var-lib-flotilla"),
    ("/run/flotilla", "run-flotilla"),
    ("/var/log/flotilla", "var-log-flotilla"),
    ("/etc/systemd/system", "etc-systemd-system"),
];

/// systemd's PATH for services (and the admin's shell's, plus kubectl's directory).
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a unit gets to stop before SIGKILL (systemd's TimeoutStopSec, capped).
const STOP_LIMIT: Duration = Duration::from_secs(30);

/// How long a unit's ExecStartPre/ExecStartPost command and its readiness may take.
const START_LIMIT: Duration = Duration::from_secs(90);

/// The host directories the machines' own directories are mounted on; those this test created
/// are removed again when dropped.
pub struct Mountpoints {
    created: Vec<PathBuf>,
}

impl Mountpoints {
    /// Creates whichever of the mount points the host lacks.
    pub fn ensure() -> anyhow::Result<Self> {
        let mut created = Vec::new();
        for (inside, _) in OWN_DIRS {
            let path = Path::new(inside);
            if !path.exists() {
                fs::create_dir_all(path).with_context(|| format!("creating {inside}"))?;
                created.push(path.to_path_buf());
            }
        }
        Ok(Self { created })
    }
}

impl Drop for Mountpoints {
    fn drop(&mut self) {
        for path in &self.created {
            // Only if empty: the host's own files are never touched.
            let _ = fs::remove_dir(path);
        }
    }
}

/// A unit started on a machine.
struct Running {
    child: Child,
    kill_mode: KillMode,
}

/// `KillMode=` of a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KillMode {
    ControlGroup,
    Mixed,
    Process,
}

/// The [Service] lines of a unit file the emulation follows.
#[derive(Debug, Default)]
struct Unit {
    service_type: String,
    requires: Vec<String>,
    environment_files: Vec<String>,
    exec_start_pre: Vec<String>,
    exec_start: String,
    exec_start_post: Vec<String>,
    kill_mode: Option<KillMode>,
}

/// One machine: a network namespace and a mount namespace held by a sleeping process.
pub struct Machine {
    /// The machine's name (what the README's `NAME` is set to).
    pub name: String,
    /// Its address on the underlay (the README's `IP`).
    pub ip: Ipv4Addr,
    /// Its files on the host.
    root: PathBuf,
    /// Holds the mount namespace.
    holder: Child,
    /// Units started by [`Self::systemctl`].
    units: BTreeMap<String, Running>,
    /// PATH for the admin's commands.
    path: String,
}

impl Machine {
    /// Makes machine `name` in the network namespace at `netns`, its files under `root`.
    pub fn start(name: &str, ip: Ipv4Addr, netns: &Path, root: PathBuf) -> anyhow::Result<Self> {
        let mut script = String::from("set -e\n");
        for (inside, own) in OWN_DIRS {
            let dir = root.join(own);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            script.push_str(&format!("mount --bind {} {inside}\n", dir.display()));
        }
        let (upper, work) = (root.join("usr-local"), root.join("usr-local-work"));
        for dir in [&upper, &work, &root.join("journal")] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        script.push_str(&format!(
            "mount -t overlay flotilla-machine -o lowerdir=/usr/local,upperdir={},workdir={} \
             /usr/local\necho ready\nexec sleep 86400\n",
            upper.display(),
            work.display()
        ));
        let mut holder = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .args(["--", "unshare", "--mount", "--propagation", "private", "--"])
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .context("starting the machine's mount namespace (nsenter, unshare)")?;
        let stdout = holder.stdout.take().context("holder stdout")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let ready = receiver.recv_timeout(Duration::from_secs(10));
        if ready.as_deref().map(str::trim) != Ok("ready") {
            let _ = holder.kill();
            let mut stderr = String::new();
            if let Some(mut pipe) = holder.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            let _ = holder.wait();
            bail!("machine {name}: its mounts failed: {}", stderr.trim());
        }
        let kubectl = which::which("kubectl").context("kubectl is not on PATH")?;
        let kubectl_dir = kubectl.parent().unwrap_or(Path::new("/usr/bin"));
        Ok(Self {
            name: name.to_owned(),
            ip,
            root,
            holder,
            units: BTreeMap::new(),
            path: format!("{SYSTEM_PATH}:{}", kubectl_dir.display()),
        })
    }

    /// The host path of `inside`, a path as the machine sees it.
    pub fn path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{inside}", self.holder.id()))
    }

    /// The machine's own directory on the host for `name` (e.g. where its copy of dist goes).
    pub fn own_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// A command that runs `program` inside the machine, in `dir` (a path the machine sees),
    /// with nothing of the test's environment but `PATH`.
    fn command(&self, program: &str, dir: &Path) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg("--target")
            .arg(self.holder.id().to_string())
            .args(["--mount", "--net"])
            .arg(format!("--wd={}", dir.display()))
            .arg("--")
            .arg(program)
            .env_clear()
            .env("PATH", &self.path)
            .stdin(Stdio::null());
        command
    }

    /// Runs `script` with bash (`-euo pipefail`) in `dir` on the machine with `vars` set, as an
    /// admin's root shell would; its stdout, or an error with everything it printed.
    pub fn sh(
        &self,
        script: &str,
        dir: &Path,
        vars: &[(String, String)],
        limit: Duration,
    ) -> anyhow::Result<String> {
        let mut command = self.command("bash", dir);
        command
            .args(["-euo", "pipefail", "-c", script])
            .env("HOME", "/root")
            .envs(vars.iter().map(|(k, v)| (k, v)));
        let output =
            bounded(&mut command, limit).with_context(|| format!("on {}: {script}", self.name))?;
        ensure!(
            output.status.success(),
            "on {} ({}):\n{script}\nstdout: {}\nstderr: {}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `systemctl ARGS` for the machine's units: `daemon-reload`, `enable --now`, `disable
    /// --now`, `restart`. A unit not installed here (the distribution's etcd or containerd the
    /// README disables) has nothing to stop.
    pub fn systemctl(&mut self, args: &[&str]) -> anyhow::Result<()> {
        match args {
            ["daemon-reload"] => Ok(()),
            ["enable", "--now", units @ ..] => {
                for unit in units {
                    self.start_unit(unit)?;
                }
                Ok(())
            }
            ["disable", "--now", units @ ..] => {
                for unit in units.iter().rev() {
                    self.stop_unit(unit)?;
                }
                Ok(())
            }
            ["restart", unit] => {
                self.stop_unit(unit)?;
                self.start_unit(unit)
            }
            _ => bail!("the test does not emulate `systemctl {}`", args.join(" ")),
        }
    }

    /// Whether the unit's main process runs.
    pub fn unit_running(&mut self, unit: &str) -> bool {
        self.units
            .get_mut(unit_name(unit))
            .is_some_and(|running| matches!(running.child.try_wait(), Ok(None)))
    }

    /// The end of a unit's output (its "journal").
    pub fn journal(&self, unit: &str) -> String {
        let text = self.whole_journal(unit);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Everything a unit printed, over all its runs.
    pub fn whole_journal(&self, unit: &str) -> String {
        fs::read_to_string(self.journal_path(unit)).unwrap_or_default()
    }

    /// The end of every unit's output and of `files` (paths the machine sees), for a failure.
    pub fn report(&self, files: &[&str]) -> String {
        let mut report = String::new();
        let journals = fs::read_dir(self.root.join("journal"))
            .into_iter()
            .flatten();
        for entry in journals.flatten() {
            let unit = entry.file_name().to_string_lossy().replace(".log", "");
            report.push_str(&format!(
                "--- {}: journal of {unit}:\n{}\n",
                self.name,
                self.journal(&unit)
            ));
        }
        for file in files {
            let Ok(text) = fs::read_to_string(self.path(file)) else {
                continue;
            };
            let lines: Vec<&str> = text.lines().collect();
            report.push_str(&format!(
                "--- {}: {file}:\n{}\n",
                self.name,
                lines[lines.len().saturating_sub(20)..].join("\n")
            ));
        }
        report
    }

    fn journal_path(&self, unit: &str) -> PathBuf {
        self.root
            .join("journal")
            .join(format!("{}.log", unit_name(unit)))
    }

    fn start_unit(&mut self, unit: &str) -> anyhow::Result<()> {
        let name = unit_name(unit).to_owned();
        if self.unit_running(&name) {
            return Ok(());
        }
        let file = self.path(&format!("/etc/systemd/system/{name}.service"));
        let text = fs::read_to_string(&file)
            .with_context(|| format!("on {}: unit {name} is not installed", self.name))?;
        let unit = parse_unit(&text).with_context(|| format!("unit {name}"))?;
        for required in &unit.requires {
            self.start_unit(required)?;
        }
        let mut env = BTreeMap::new();
        for file in &unit.environment_files {
            let (optional, file) = match file.strip_prefix('-') {
                Some(file) => (true, file),
                None => (false, file.as_str()),
            };
            match fs::read_to_string(self.path(file)) {
                Ok(text) => env.extend(environment_file(&text)),
                Err(_) if optional => {}
                Err(err) => bail!("on {}: {name}: EnvironmentFile {file}: {err}", self.name),
            }
        }
        for line in &unit.exec_start_pre {
            self.exec(&name, line, &env)?;
        }
        let (ignore_failure, argv) = expand(&unit.exec_start, &env)?;
        ensure!(
            !ignore_failure,
            "{name}: ExecStart with '-' is not emulated"
        );
        // Appended to, as the journal keeps earlier runs.
        let journal = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.journal_path(&name))?;
        let mut command = self.command(&argv[0], Path::new("/"));
        command
            .args(&argv[1..])
            .envs(&env)
            .stdout(journal.try_clone()?)
            .stderr(journal)
            .process_group(0);
        let notify = if unit.service_type == "notify" {
            let inside = format!("/run/flotilla/.notify-{name}");
            let host = self
                .root
                .join("run-flotilla")
                .join(format!(".notify-{name}"));
            let _ = fs::remove_file(&host);
            let socket =
                UnixDatagram::bind(&host).with_context(|| format!("binding {}", host.display()))?;
            socket.set_read_timeout(Some(Duration::from_millis(500)))?;
            command.env("NOTIFY_SOCKET", inside);
            Some((socket, host))
        } else {
            None
        };
        let child = command
            .spawn()
            .with_context(|| format!("on {}: starting {name}", self.name))?;
        self.units.insert(
            name.clone(),
            Running {
                child,
                kill_mode: unit.kill_mode.unwrap_or(KillMode::ControlGroup),
            },
        );
        if let Some((socket, host)) = notify {
            let ready = self.wait_ready(&name, &socket);
            let _ = fs::remove_file(host);
            ready?;
        }
        for line in &unit.exec_start_post {
            self.exec(&name, line, &env)?;
        }
        Ok(())
    }

    /// Waits (bounded) for READY=1 from a `Type=notify` unit; fails at once if it exits.
    fn wait_ready(&mut self, name: &str, socket: &UnixDatagram) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut buffer = [0u8; 4096];
        while started.elapsed() < START_LIMIT {
            if let Ok(length) = socket.recv(&mut buffer)
                && String::from_utf8_lossy(&buffer[..length])
                    .lines()
                    .any(|line| line == "READY=1")
            {
                return Ok(());
            }
            if !self.unit_running(name) {
                bail!(
                    "on {}: {name} exited before it was ready; its output:\n{}",
                    self.name,
                    self.journal(name)
                );
            }
        }
        bail!(
            "on {}: {name} did not report READY=1 within {START_LIMIT:?}; its output:\n{}",
            self.name,
            self.journal(name)
        )
    }

    /// Runs one ExecStartPre/ExecStartPost line to its end.
    fn exec(&self, name: &str, line: &str, env: &BTreeMap<String, String>) -> anyhow::Result<()> {
        let (ignore_failure, argv) = expand(line, env)?;
        let mut command = self.command(&argv[0], Path::new("/"));
        command.args(&argv[1..]).envs(env);
        let output = bounded(&mut command, START_LIMIT)?;
        ensure!(
            ignore_failure || output.status.success(),
            "on {}: {name}: `{}` failed ({}): {}{}",
            self.name,
            argv.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    }

    fn stop_unit(&mut self, unit: &str) -> anyhow::Result<()> {
        let Some(mut running) = self.units.remove(unit_name(unit)) else {
            return Ok(());
        };
        let pid = Pid::from_raw(running.child.id() as i32);
        let _ = match running.kill_mode {
            KillMode::ControlGroup => killpg(pid, Signal::SIGTERM),
            KillMode::Mixed | KillMode::Process => kill(pid, Signal::SIGTERM),
        };
        let started = Instant::now();
        let mut exited = false;
        while started.elapsed() < STOP_LIMIT {
            if running.child.try_wait()?.is_some() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let threads = (!exited).then(|| super::thread_dump_of(&pid.to_string()));
        if running.kill_mode != KillMode::Process {
            // What is left of the unit goes, as systemd SIGKILLs the rest of its cgroup.
            let _ = killpg(pid, Signal::SIGKILL);
        }
        if let Some(threads) = threads {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = running.child.wait();
            bail!(
                "on {}: {unit} did not stop within {STOP_LIMIT:?} of SIGTERM; its threads:\n{threads}\n\
                 its output:\n{}",
                self.name,
                self.journal(unit)
            );
        }
        Ok(())
    }

    /// SIGKILLs every unit's processes, for a test that failed half-way.
    pub fn kill_units(&mut self) {
        for (_, mut running) in std::mem::take(&mut self.units) {
            let _ = killpg(Pid::from_raw(running.child.id() as i32), Signal::SIGKILL);
            let _ = running.child.wait();
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.kill_units();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// `flotilla-agent` or `flotilla-agent.service` -> `flotilla-agent`.
fn unit_name(unit: &str) -> &str {
    unit.strip_suffix(".service").unwrap_or(unit)
}

/// The parts of a unit file the emulation follows.
fn parse_unit(text: &str) -> anyhow::Result<Unit> {
    let mut unit = Unit {
        service_type: "simple".to_owned(),
        ..Unit::default()
    };
    let mut section = "";
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        ensure!(
            !line.ends_with('\\'),
            "continued lines are not emulated: {line}"
        );
        let Some((key, value)) = line.split_once('=') else {
            bail!("not KEY=VALUE: {line}");
        };
        let value = value.trim().to_owned();
        match (section, key.trim()) {
            ("[Unit]", "Requires") => unit
                .requires
                .extend(value.split_whitespace().map(String::from)),
            ("[Service]", "Type") => unit.service_type = value,
            ("[Service]", "EnvironmentFile") => unit.environment_files.push(value),
            ("[Service]", "ExecStartPre") => unit.exec_start_pre.push(value),
            ("[Service]", "ExecStart") => unit.exec_start = value,
            ("[Service]", "ExecStartPost") => unit.exec_start_post.push(value),
            ("[Service]", "KillMode") => {
                unit.kill_mode = Some(match value.as_str() {
                    "control-group" => KillMode::ControlGroup,
                    "mixed" => KillMode::Mixed,
                    "process" => KillMode::Process,
                    other => bail!("KillMode={other} is not emulated"),
                });
            }
            ("[Service]", "Environment" | "ExecStop" | "ExecReload") => {
                bail!("{key}= is not emulated")
            }
            _ => {}
        }
    }
    ensure!(!unit.exec_start.is_empty(), "no ExecStart");
    ensure!(
        ["simple", "exec", "notify"].contains(&unit.service_type.as_str()),
        "Type={} is not emulated",
        unit.service_type
    );
    Ok(unit)
}

/// The variables of an environment file (`KEY=VALUE` lines; `#` comments; quotes removed).
fn environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| {
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            (key.trim().to_owned(), unquoted.to_owned())
        })
        .collect()
}

/// An Exec line as systemd expands it: `${VAR}` as one word, a word that is `$VAR` split at
/// whitespace, an unset variable as nothing; a leading `-` on the program means its failure is
/// ignored (returned first).
pub fn expand(line: &str, env: &BTreeMap<String, String>) -> anyhow::Result<(bool, Vec<String>)> {
    ensure!(
        !line.contains(['"', '\'', '\\', '%']),
        "quoting, escapes and specifiers are not emulated: {line}"
    );
    let mut words = Vec::new();
    for word in line.split_whitespace() {
        if let Some(var) = word.strip_prefix('$').filter(|var| !var.starts_with('{')) {
            words.extend(
                env.get(var)
                    .map(|value| {
                        value
                            .split_whitespace()
                            .map(String::from)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default(),
            );
            continue;
        }
        let mut expanded = String::new();
        let mut rest = word;
        while let Some(at) = rest.find("${") {
            expanded.push_str(&rest[..at]);
            let end = rest[at..]
                .find('}')
                .with_context(|| format!("unclosed ${{ in {line}"))?;
            let var = &rest[at + 2..at + end];
            expanded.push_str(env.get(var).map_or("", String::as_str));
            rest = &rest[at + end + 1..];
        }
        expanded.push_str(rest);
        words.push(expanded);
    }
    let Some(first) = words.first_mut() else {
        bail!("an empty command line");
    };
    let ignore_failure = first.starts_with('-');
    if ignore_failure {
        first.remove(0);
    }
    Ok((ignore_failure, words))
}

/// Runs `command` in a process group of its own; past `limit` the whole group is killed.
fn bounded(command: &mut Command, limit: Duration) -> anyhow::Result<Output> {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let group = Pid::from_raw(child.id() as i32);
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(limit) {
        Ok(output) => Ok(output?),
        Err(_) => {
            let _ = killpg(group, Signal::SIGKILL);
            bail!("{command:?} did not finish within {limit:?}; killed it")
        }
    }
}
