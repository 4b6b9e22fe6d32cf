//! What the spec tests share: network namespaces they create and always remove, running the real
//! plugin binary the way a container runtime does (environment + stdin, inside the node's
//! namespace), and reading the kernel's state back with `ip -j`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test support: a panic is how a broken fixture fails its test"
)]

pub(crate) mod fake_agent;

use std::{
    fs::File,
    io::{Read as _, Write as _},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use nix::sched::{CloneFlags, setns};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// How long one plugin invocation may take before the test kills it.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Fails the test unless it runs as root (the namespace tests need it).
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the flotilla-cni spec tests create network namespaces and need root; run `sudo -E cargo test -p flotilla-cni`"
    );
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A network namespace this test created (`ip netns add fcni-<pid>-<n>`), deleted on drop, so
/// a failing test leaves nothing behind.
#[derive(Debug)]
pub(crate) struct Netns {
    name: String,
}

fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Netns {
    /// Creates a fresh namespace with its loopback up.
    pub(crate) fn create() -> Self {
        let name = format!(
            "fcni-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        run(Command::new("ip").args(["netns", "add", &name]));
        let netns = Self { name };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// Its file: what CNI_NETNS names.
    pub(crate) fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }

    /// Runs `ip -n <ns> <args>` and returns its stdout; panics on failure.
    pub(crate) fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Runs `ip -n <ns> -j <args>` and parses the JSON.
    pub(crate) fn ip_json(&self, args: &[&str]) -> Value {
        let out = run(Command::new("ip").args(["-n", &self.name, "-j"]).args(args));
        if out.trim().is_empty() {
            return Value::Array(Vec::new());
        }
        serde_json::from_str(&out).unwrap_or_else(|err| panic!("ip -j {args:?}: {err}: {out}"))
    }

    /// The names of its links.
    pub(crate) fn link_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .ip_json(&["link", "show"])
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|link| link["ifname"].as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    }

    /// `ip -j link show dev <name>`'s entry, if the link exists.
    pub(crate) fn link(&self, name: &str) -> Option<Value> {
        self.ip_json(&["link", "show"])
            .as_array()
            .into_iter()
            .flatten()
            .find(|link| link["ifname"] == name)
            .cloned()
    }

    /// Deletes it now (the drop guard then has nothing to do).
    pub(crate) fn delete(&self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Runs `f` on a thread that entered `netns` (sockets it creates live there) and returns its
/// result.
pub(crate) fn in_netns<R: Send>(netns: &Netns, f: impl FnOnce() -> R + Send) -> R {
    let file = File::open(netns.path()).expect("opening the namespace");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                setns(&file, CloneFlags::CLONE_NEWNET).expect("entering the namespace");
                f()
            })
            .join()
            .expect("the thread in the namespace panicked")
    })
}

/// The host-side veth name the plugin derives: `flt` + 12 hex digits of sha256("<id>/<ifname>").
pub(crate) fn host_veth(container_id: &str, ifname: &str) -> String {
    let hash = Sha256::digest(format!("{container_id}/{ifname}").as_bytes());
    let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("flt{hex}")
}

/// What one plugin run printed and how it exited.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The exit code.
    pub(crate) code: Option<i32>,
    /// stdout.
    pub(crate) stdout: String,
    /// stderr.
    pub(crate) stderr: String,
    /// How long the process took, from spawn to exit.
    pub(crate) elapsed: Duration,
}

impl Outcome {
    /// stdout as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {self:?}"))
    }

    /// Asserts success and returns the JSON result, if any was printed.
    pub(crate) fn success(&self) -> Option<Value> {
        assert_eq!(
            self.code,
            Some(0),
            "the plugin failed: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        (!self.stdout.trim().is_empty()).then(|| self.json())
    }

    /// Asserts a CNI error with `code` and exit status 1; returns the error JSON.
    pub(crate) fn error(&self, code: u64) -> Value {
        assert_eq!(self.code, Some(1), "expected a failure: {self:?}");
        let json = self.json();
        assert_eq!(json["code"], code, "{self:?}");
        for key in ["cniVersion", "msg", "details"] {
            assert!(json[key].is_string(), "error JSON lacks {key}: {self:?}");
        }
        json
    }
}

/// Runs the real plugin binary with exactly `env` (nothing inherited) and `stdin`, inside the
/// network namespace `node` (the plugin's own: the node's) when given, like `nsenter --net`.
pub(crate) fn invoke(node: Option<&Netns>, env: &[(&str, String)], stdin: &str) -> Outcome {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla-cni"));
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(node) = node {
        let file = File::open(node.path()).expect("opening the node namespace");
        // SAFETY: the closure only calls setns(2), which is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            });
        }
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("spawning flotilla-cni");
    if let Some(mut input) = child.stdin.take() {
        // The plugin may exit without reading stdin (VERSION, env errors): ignore EPIPE.
        let _ = input.write_all(stdin.as_bytes());
    }
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let readers = std::thread::spawn(move || {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        (out, err)
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for flotilla-cni") {
            break status;
        }
        if started.elapsed() > PLUGIN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("flotilla-cni did not finish within {PLUGIN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let elapsed = started.elapsed();
    let (stdout, stderr) = readers.join().expect("reading the plugin's output");
    Outcome {
        code: status.code(),
        stdout,
        stderr,
        elapsed,
    }
}
