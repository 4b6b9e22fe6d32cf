//! Measuring network paths with every test in turn, for the benchmarks: a path is a client
//! (where it runs) and a server address; [`measure_paths`] warms every path up, then runs test
//! by test, all paths in turn, so a drift of the machine hits every row of a column alike.
//!
//! A client runs either in this process, on a thread inside a network namespace
//! ([`Client::Thread`]: the namespace's routes and netfilter apply, but not cgroup programs,
//! since the thread stays in the benchmark's cgroup), or as a `flotilla-perf client` child
//! process inside a namespace and a cgroup ([`Client::Process`]: a pod's own process, which
//! Flotilla's socket load balancer, attached to the node's pod cgroup, sees).

use std::{
    fs::OpenOptions,
    io,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::{
    ClientConfig, PerfError, Report, Test,
    confidence::{self, Interval},
    run_client,
    table::{Row, headline},
};
use crate::{Netns, TestbedError, containerd::run_bounded};

/// How long each test runs on each path, unrecorded, before anything is measured. The first
/// bulk transfer of a run is markedly slower than the following ones (measured: 17.8 Gbit/s,
/// then 26 and 25 on the same path), and neighbour entries and caches need filling.
pub const WARM_UP: Duration = Duration::from_millis(300);

/// What each path is measured with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The tests, run in this order on every path.
    pub tests: Vec<Test>,
    /// How long each test runs.
    pub duration: Duration,
    /// TCP_STREAM's send size.
    pub send_size: usize,
    /// How many times every (test, path) runs, interleaved; the row is the median run (by
    /// headline figure). More rounds of shorter runs weather a machine whose load drifts.
    pub rounds: usize,
    /// How often a failed run is tried again before the measurement fails (each failure is
    /// reported in [`Measurement::retried`]).
    pub retries: usize,
    /// When set, rounds go on past `rounds` until every comparison's interval is narrow
    /// enough, or a bound is hit.
    pub precision: Option<Precision>,
}

/// How sure the ratios must be before the rounds stop.
#[derive(Clone, Debug)]
pub struct Precision {
    /// The ratios that must be sure: (ours, theirs), each a (datapath, path), for every test.
    pub comparisons: Vec<((String, String), (String, String))>,
    /// The relative half-width every comparison's 95 % interval must come under (0.03: the
    /// ratio is known to within 3 %).
    pub half_width: f64,
    /// The most rounds.
    pub max_rounds: usize,
    /// No new round starts after this long.
    pub time_cap: Duration,
}

/// Every round's headline figure of one (test, path), in round order.
#[derive(Clone, Debug, PartialEq)]
pub struct Figures {
    /// The network under test.
    pub datapath: String,
    /// The path through it.
    pub path: String,
    /// The test.
    pub test: Test,
    /// The headline figure of each round.
    pub rounds: Vec<f64>,
}

/// What [`measure_paths`] measured.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// One row per (test, path).
    pub rows: Vec<Row>,
    /// The failures that were retried, as messages.
    pub retried: Vec<String>,
    /// The (test, path) pairs whose rounds lay more than [`UNSTEADY_SPREAD`] apart, as
    /// messages: the machine's load moved under them, and their median says less.
    pub unsteady: Vec<String>,
    /// Every round's figures, for confidence intervals of ratios.
    pub figures: Vec<Figures>,
}

impl Measurement {
    /// `ours` over `theirs` (each a (datapath, path)) for `test`, paired by round, with its
    /// 95 % interval; None without two positive rounds on both.
    pub fn ratio(&self, ours: (&str, &str), theirs: (&str, &str), test: Test) -> Option<Interval> {
        ratio_of(&self.figures, ours, theirs, test)
    }
}

/// [`Measurement::ratio`] over `figures`.
fn ratio_of(
    figures: &[Figures],
    ours: (&str, &str),
    theirs: (&str, &str),
    test: Test,
) -> Option<Interval> {
    let rounds = |(datapath, path): (&str, &str)| {
        figures
            .iter()
            .find(|f| f.datapath == datapath && f.path == path && f.test == test)
            .map(|f| f.rounds.as_slice())
    };
    confidence::paired_ratio(rounds(ours)?, rounds(theirs)?)
}

/// Whether every comparison of `precision` is known closely enough from `figures`, for every
/// test measured.
fn precise_enough(figures: &[Figures], tests: &[Test], precision: &Precision) -> bool {
    precision.comparisons.iter().all(|(ours, theirs)| {
        tests.iter().all(|test| {
            let interval = ratio_of(figures, (&ours.0, &ours.1), (&theirs.0, &theirs.1), *test);
            // A comparison that cannot be made (no such rows, nothing measured) waits for
            // nothing.
            interval.is_none_or(|i| i.relative_half_width() <= precision.half_width)
        })
    })
}

/// Fastest over slowest round of one (test, path) above which the measurement is reported as
/// unsteady (within-run noise on this 2-CPU VM is usually under 10 %).
pub const UNSTEADY_SPREAD: f64 = 1.15;

/// Lines (each with its newline) saying whether every measurement held still, for a bench's
/// summary.
pub fn describe_unsteady(unsteady: &[String]) -> String {
    if unsteady.is_empty() {
        return format!(
            "  every figure's rounds within {:.0} % of each other\n",
            (UNSTEADY_SPREAD - 1.0) * 100.0
        );
    }
    unsteady
        .iter()
        .map(|line| format!("  unsteady, the machine's load moved: {line}\n"))
        .collect()
}

/// A message when the rounds of `test` on `path` (sorted by headline figure) spread more
/// than [`UNSTEADY_SPREAD`].
fn unsteadiness(path: &PathSpec, sorted: &[Report]) -> Option<String> {
    let (slowest, fastest) = (headline(sorted.first()?), headline(sorted.last()?));
    (slowest > 0.0 && fastest / slowest > UNSTEADY_SPREAD).then(|| {
        format!(
            "{} / {} {}: rounds from {slowest:.0} to {fastest:.0} ({:.0} % apart)",
            path.datapath,
            path.path,
            sorted[0].test,
            (fastest / slowest - 1.0) * 100.0
        )
    })
}

/// Where a path's client runs.
#[derive(Clone, Debug)]
pub enum Client {
    /// On a thread of this process inside the namespace.
    Thread(Netns),
    /// A `flotilla-perf client --json` child process inside `netns` and the cgroup (v2)
    /// directory `cgroup`, which must exist.
    Process {
        /// The client's network namespace.
        netns: Netns,
        /// The cgroup v2 directory the process joins before it runs.
        cgroup: PathBuf,
        /// The `flotilla-perf` executable.
        binary: PathBuf,
    },
}

impl Client {
    /// The client's network namespace.
    pub fn netns(&self) -> &Netns {
        match self {
            Self::Thread(netns) | Self::Process { netns, .. } => netns,
        }
    }
}

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The test failed on the path.
    #[error("{test} on {datapath} / {path} (server {server})")]
    Run {
        /// The network under test.
        datapath: String,
        /// The path through it.
        path: String,
        /// The test.
        test: Test,
        /// The server.
        server: SocketAddr,
        /// What went wrong.
        #[source]
        cause: Box<ClientError>,
    },
}

/// What went wrong running one client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The in-process client failed.
    #[error(transparent)]
    Perf(#[from] PerfError),
    /// Entering the namespace or running the child failed.
    #[error(transparent)]
    Testbed(#[from] TestbedError),
    /// The cgroup could not be opened.
    #[error("opening {path} to join the cgroup: {source}")]
    Cgroup {
        /// The cgroup.procs file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The child process failed.
    #[error("flotilla-perf client exited with {status}: {stderr}")]
    Exit {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The child's report could not be read.
    #[error("reading flotilla-perf's JSON report {output:?}: {source}")]
    Report {
        /// What it printed.
        output: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// One path to measure: where the client runs and the address of a running server.
#[derive(Clone, Debug)]
pub struct PathSpec {
    /// The network under test (`kernel`, `flannel`, `flotilla`, ...).
    pub datapath: String,
    /// The path through it.
    pub path: String,
    /// Where the client runs.
    pub client: Client,
    /// The server it talks to.
    pub server: SocketAddr,
}

impl PathSpec {
    /// A path of `datapath` named `path`, from `client` to `server`.
    pub fn new(datapath: &str, path: &str, client: Client, server: SocketAddr) -> Self {
        Self {
            datapath: datapath.to_owned(),
            path: path.to_owned(),
            client,
            server,
        }
    }

    /// Runs `test` for `duration` on this path.
    pub fn run(
        &self,
        test: Test,
        duration: Duration,
        send_size: usize,
    ) -> Result<Report, PathError> {
        let mut config = ClientConfig::new(self.server, test).with_duration(duration);
        config.send_size = send_size;
        run_on(&self.client, &config).map_err(|cause| PathError::Run {
            datapath: self.datapath.clone(),
            path: self.path.clone(),
            test,
            server: self.server,
            cause: Box::new(cause),
        })
    }
}

/// Runs one client as `client` says.
pub fn run_on(client: &Client, config: &ClientConfig) -> Result<Report, ClientError> {
    match client {
        Client::Thread(netns) => Ok(netns.run(|| run_client(config))??),
        Client::Process {
            netns,
            cgroup,
            binary,
        } => run_child(netns, cgroup, binary, config),
    }
}

/// How much longer than the test a child may take before it is killed.
const CHILD_GRACE: Duration = Duration::from_secs(60);

fn run_child(
    netns: &Netns,
    cgroup: &std::path::Path,
    binary: &std::path::Path,
    config: &ClientConfig,
) -> Result<Report, ClientError> {
    let procs_path = cgroup.join("cgroup.procs");
    let procs = OpenOptions::new()
        .write(true)
        .open(&procs_path)
        .map_err(|source| ClientError::Cgroup {
            path: procs_path.clone(),
            source,
        })?;
    let mut command = netns.command(binary)?;
    command
        .arg("client")
        .args(["--server", &config.server.to_string()])
        .args(["--test", config.test.name()])
        .args(["--duration", &format!("{}us", config.duration.as_micros())])
        .args(["--request-size", &config.request_size.to_string()])
        .args(["--response-size", &config.response_size.to_string()])
        .args(["--send-size", &config.send_size.to_string()])
        .args([
            "--udp-timeout",
            &format!("{}us", config.udp_timeout.as_micros()),
        ])
        .arg("--json");
    // SAFETY: the closure only calls write(2) on a descriptor opened before the fork, which is
    // async-signal-safe. Writing 0 to cgroup.procs moves the writing process.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            nix::unistd::write(&procs, b"0")
                .map(|_| ())
                .map_err(io::Error::from)
        });
    }
    let output = run_bounded(&mut command, config.duration + CHILD_GRACE)?;
    if !output.status.success() {
        return Err(ClientError::Exit {
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&text).map_err(|source| ClientError::Report {
        output: text.into_owned(),
        source,
    })
}

/// Measures every path with every test: first a warm-up of each test on each path, then
/// `rounds` rounds (more, with `precision`, until its intervals are narrow enough), each test
/// by test with all paths in turn. Prints each report to stderr as it comes; returns one row
/// per (test, path), the median of its rounds by headline figure, and every round's figures.
pub fn measure_paths(paths: &[PathSpec], settings: &Settings) -> Result<Measurement, PathError> {
    let mut retried = Vec::new();
    let mut run = |path: &PathSpec, test: Test, duration: Duration| loop {
        match path.run(test, duration, settings.send_size) {
            Ok(report) => return Ok(report),
            Err(err) if retried.len() < settings.retries => {
                let message = error_chain(&err);
                eprintln!("{message}; trying again");
                retried.push(message);
            }
            Err(err) => return Err(err),
        }
    };
    for path in paths {
        for test in &settings.tests {
            run(path, *test, WARM_UP)?;
        }
    }
    let rounds = settings.rounds.max(1);
    let most = settings
        .precision
        .as_ref()
        .map_or(rounds, |precision| precision.max_rounds.max(rounds));
    let started = Instant::now();
    let mut runs: Vec<Vec<Report>> = vec![Vec::new(); settings.tests.len() * paths.len()];
    for round in 1..=most {
        for (t, test) in settings.tests.iter().enumerate() {
            for (p, path) in paths.iter().enumerate() {
                let run_started = Instant::now();
                let report = run(path, *test, settings.duration)?;
                let of = if most > 1 {
                    format!(" (round {round}/{most})")
                } else {
                    String::new()
                };
                eprintln!(
                    "{} / {}{of}: {report} [{:.1} s]",
                    path.datapath,
                    path.path,
                    run_started.elapsed().as_secs_f64()
                );
                runs[t * paths.len() + p].push(report);
            }
        }
        if round < rounds {
            continue;
        }
        let Some(precision) = &settings.precision else {
            break;
        };
        if started.elapsed() >= precision.time_cap {
            eprintln!(
                "{round} rounds: the time cap of {:?} is reached",
                precision.time_cap
            );
            break;
        }
        if precise_enough(
            &figures_of(paths, settings, &runs),
            &settings.tests,
            precision,
        ) {
            eprintln!(
                "{round} rounds: every ratio known to within {:.0} %",
                precision.half_width * 100.0
            );
            break;
        }
    }
    let figures = figures_of(paths, settings, &runs);
    let mut rows = Vec::new();
    let mut unsteady = Vec::new();
    for (index, mut reports) in runs.into_iter().enumerate() {
        reports.sort_by(|a, b| headline(a).total_cmp(&headline(b)));
        let path = &paths[index % paths.len()];
        unsteady.extend(unsteadiness(path, &reports));
        let median = reports.swap_remove(reports.len() / 2);
        rows.push(Row::new(&path.datapath, &path.path, median));
    }
    Ok(Measurement {
        rows,
        retried,
        unsteady,
        figures,
    })
}

/// The headline figures of `runs` (indexed test-major, as [`measure_paths`] keeps them).
fn figures_of(paths: &[PathSpec], settings: &Settings, runs: &[Vec<Report>]) -> Vec<Figures> {
    runs.iter()
        .enumerate()
        .map(|(index, reports)| {
            let path = &paths[index % paths.len()];
            Figures {
                datapath: path.datapath.clone(),
                path: path.path.clone(),
                test: settings.tests[index / paths.len()],
                rounds: reports.iter().map(headline).collect(),
            }
        })
        .collect()
}

/// `err` and its sources on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
