//! `flotilla-perf`: netperf's classic tests (TCP_STREAM, TCP_RR, TCP_CRR, UDP_RR) as a library
//! and a binary, because netperf itself is not installable on the project's machines.
//!
//! The definitions follow netperf's:
//! - TCP_STREAM: one connection; the client sends `send_size`-byte buffers for the duration,
//!   then shuts down its write side; the server answers with the number of bytes it received.
//!   Throughput = those bytes / the time from the first send to that answer.
//! - TCP_RR: one connection, one transaction in flight: a `request_size`-byte request, a
//!   `response_size`-byte response. TCP_NODELAY on both ends.
//! - TCP_CRR: a new connection per transaction: connect, request, response, close (the client
//!   shuts down its write side and waits for the server's close). The client's side of every
//!   connection ends in TIME_WAIT, so a client doing thousands per second runs out of local ports
//!   unless its namespace has [`CLIENT_SYSCTLS`] (tcp_tw_reuse=1, a wide ip_local_port_range).
//! - UDP_RR: request and response datagrams, one in flight; a transaction whose response does not
//!   come within `udp_timeout` counts as lost and the test goes on.
//!
//! Every TCP test and the UDP test share one port (TCP and UDP, [`DEFAULT_PORT`] by default), so
//! one Service port reaches a server pod; see [`protocol`](self) for what goes over it.
//!
//! Both sides use blocking sockets on plain threads (what netperf does): no event loop between
//! the socket and the clock. Everything runs in the network namespace of the thread that calls
//! it: call [`run_client`] or [`Server::start`] from inside `Netns::run`, or run the binary under
//! `nsenter --net=/var/run/netns/X`.

mod client;
pub mod confidence;
mod histogram;
pub mod paths;
mod protocol;
mod server;
pub mod table;

use std::{
    fmt, io,
    net::{IpAddr, SocketAddr},
    str::FromStr,
    time::Duration,
};

pub use client::run_client;
pub use histogram::Histogram;
pub use protocol::{MAX_DATAGRAM, MAX_MESSAGE};
use serde::{Deserialize, Serialize};
pub use server::{Server, ServerStats};

/// The port a server listens on (TCP and UDP) unless told otherwise: netperf's.
pub const DEFAULT_PORT: u16 = 12_865;

/// Sysctls (relative to /proc/sys) a TCP_CRR client's namespace needs to open thousands of
/// connections per second: reuse of TIME_WAIT ports for new connections, and most of the port
/// space as ephemeral ports. Write them with `Netns::sysctl` before a TCP_CRR run.
pub const CLIENT_SYSCTLS: &[(&str, &str)] = &[
    ("net/ipv4/tcp_tw_reuse", "1"),
    ("net/ipv4/ip_local_port_range", "1024 65535"),
];

/// The longest test a client runs (bounds every loop and the report's counters).
pub const MAX_DURATION: Duration = Duration::from_secs(3_600);

/// One of netperf's tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Test {
    /// Bulk transfer on one connection.
    TcpStream,
    /// Request/response on one connection.
    TcpRr,
    /// Connect, request/response, close, per transaction.
    TcpCrr,
    /// Request/response datagrams.
    UdpRr,
}

impl Test {
    /// Every test, in netperf's order.
    pub const ALL: [Self; 4] = [Self::TcpStream, Self::TcpRr, Self::TcpCrr, Self::UdpRr];

    /// netperf's name of the test (`TCP_STREAM`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::TcpStream => "TCP_STREAM",
            Self::TcpRr => "TCP_RR",
            Self::TcpCrr => "TCP_CRR",
            Self::UdpRr => "UDP_RR",
        }
    }

    /// Whether the test measures transactions (and their latency) rather than throughput.
    pub fn is_request_response(self) -> bool {
        self != Self::TcpStream
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Test {
    type Err = PerfError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().replace('-', "_").to_ascii_uppercase();
        Self::ALL
            .into_iter()
            .find(|test| test.name() == wanted)
            .ok_or_else(|| {
                PerfError::Invalid(format!(
                    "test {s:?}: use one of TCP_STREAM, TCP_RR, TCP_CRR, UDP_RR"
                ))
            })
    }
}

/// What a client runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The server (TCP and UDP port).
    pub server: SocketAddr,
    /// Which test.
    pub test: Test,
    /// How long to run (at most [`MAX_DURATION`]).
    pub duration: Duration,
    /// Request size in bytes (RR tests).
    pub request_size: usize,
    /// Response size in bytes (RR tests).
    pub response_size: usize,
    /// Size of each send in bytes (TCP_STREAM).
    pub send_size: usize,
    /// How long a UDP_RR transaction waits for its response before it counts as lost.
    pub udp_timeout: Duration,
    /// How long a connect or any single send/receive may block before the test fails (TCP_CRR:
    /// before the transaction counts as an error).
    pub io_timeout: Duration,
}

impl ClientConfig {
    /// netperf's defaults: 5 s, 1-byte request and response, 16 KiB sends, and a 100 ms UDP
    /// timeout.
    pub fn new(server: SocketAddr, test: Test) -> Self {
        Self {
            server,
            test,
            duration: Duration::from_secs(5),
            request_size: 1,
            response_size: 1,
            send_size: 16_384,
            udp_timeout: Duration::from_millis(100),
            io_timeout: Duration::from_secs(10),
        }
    }

    /// The same config running for `duration`.
    pub fn with_duration(mut self, duration: Duration) -> Self {
        self.duration = duration;
        self
    }

    /// Checks the sizes and times; the error says which value to change.
    pub fn validate(&self) -> Result<(), PerfError> {
        let invalid = |what: String| Err(PerfError::Invalid(what));
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return invalid(format!(
                "duration {:?}: use more than 0 s and at most {} s",
                self.duration,
                MAX_DURATION.as_secs()
            ));
        }
        let limit = if self.test == Test::UdpRr {
            MAX_DATAGRAM
        } else {
            MAX_MESSAGE
        };
        if self.test.is_request_response() {
            for (name, size) in [
                ("request size", self.request_size),
                ("response size", self.response_size),
            ] {
                if size == 0 || size > limit {
                    return invalid(format!(
                        "{name} {size} for {}: use 1 to {limit} bytes",
                        self.test
                    ));
                }
            }
        }
        if self.test == Test::TcpStream && (self.send_size == 0 || self.send_size > MAX_MESSAGE) {
            return invalid(format!(
                "send size {}: use 1 to {MAX_MESSAGE} bytes",
                self.send_size
            ));
        }
        if self.udp_timeout.is_zero() || self.io_timeout.is_zero() {
            return invalid("timeout 0: timeouts must be positive".into());
        }
        Ok(())
    }
}

/// Latency percentiles of the transactions that completed, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Fastest transaction.
    pub min: f64,
    /// Slowest transaction.
    pub max: f64,
}

impl LatencySummary {
    /// The summary of `histogram` (nanoseconds), None when it is empty.
    pub fn of(histogram: &Histogram) -> Option<Self> {
        let us = |ns: f64| ns / 1_000.0;
        Some(Self {
            p50: us(histogram.percentile_ns(50.0)?),
            p90: us(histogram.percentile_ns(90.0)?),
            p99: us(histogram.percentile_ns(99.0)?),
            mean: us(histogram.mean_ns()?),
            min: us(histogram.min_ns()? as f64),
            max: us(histogram.max_ns()? as f64),
        })
    }
}

/// The outcome of one client run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Which test ran.
    pub test: Test,
    /// Against which server.
    pub server: SocketAddr,
    /// The measured time in seconds (TCP_STREAM: first send to the server's byte count; RR tests:
    /// first to last transaction).
    pub duration_s: f64,
    /// Request size in bytes (RR tests).
    pub request_size: usize,
    /// Response size in bytes (RR tests).
    pub response_size: usize,
    /// Send size in bytes (TCP_STREAM).
    pub send_size: usize,
    /// Completed transactions (RR tests; 0 for TCP_STREAM).
    pub transactions: u64,
    /// Completed transactions per second.
    pub transactions_per_s: f64,
    /// Transactions that failed (TCP_CRR: connect or exchange errors; UDP_RR: send or receive
    /// errors other than a timeout).
    pub errors: u64,
    /// UDP_RR transactions whose response did not come in time.
    pub lost: u64,
    /// Payload bytes moved: TCP_STREAM the bytes the server received, RR tests requests plus
    /// responses of the completed transactions.
    pub bytes: u64,
    /// `bytes` in Mbit/s over `duration_s`.
    pub throughput_mbit_s: f64,
    /// Per-transaction latency (RR tests with at least one completed transaction).
    pub latency_us: Option<LatencySummary>,
}

impl Report {
    /// Assembles a report, deriving the rates from the counts and the elapsed time.
    pub(crate) fn new(
        config: &ClientConfig,
        elapsed: Duration,
        transactions: u64,
        errors: u64,
        lost: u64,
        bytes: u64,
        latencies: Option<&Histogram>,
    ) -> Self {
        let seconds = elapsed.as_secs_f64();
        let per_second = |count: f64| if seconds > 0.0 { count / seconds } else { 0.0 };
        Self {
            test: config.test,
            server: config.server,
            duration_s: seconds,
            request_size: config.request_size,
            response_size: config.response_size,
            send_size: config.send_size,
            transactions,
            transactions_per_s: per_second(transactions as f64),
            errors,
            lost,
            bytes,
            throughput_mbit_s: per_second(bytes as f64 * 8.0) / 1e6,
            latency_us: latencies.and_then(LatencySummary::of),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.test == Test::TcpStream {
            writeln!(
                f,
                "{} to {}: {:.2} s, {}-byte sends",
                self.test, self.server, self.duration_s, self.send_size
            )?;
            return write!(
                f,
                "  throughput {:.1} Mbit/s ({} bytes received by the server)",
                self.throughput_mbit_s, self.bytes
            );
        }
        writeln!(
            f,
            "{} to {}: {:.2} s, request {} B, response {} B",
            self.test, self.server, self.duration_s, self.request_size, self.response_size
        )?;
        write!(
            f,
            "  transactions {} ({:.1}/s), errors {}",
            self.transactions, self.transactions_per_s, self.errors
        )?;
        if self.test == Test::UdpRr {
            write!(f, ", lost {}", self.lost)?;
        }
        if let Some(latency) = &self.latency_us {
            write!(
                f,
                "\n  latency us: p50 {:.1}  p90 {:.1}  p99 {:.1}  (mean {:.1}, min {:.1}, max {:.1})",
                latency.p50, latency.p90, latency.p99, latency.mean, latency.min, latency.max
            )?;
        }
        Ok(())
    }
}

/// Errors of a client run or a server start.
#[derive(Debug, thiserror::Error)]
pub enum PerfError {
    /// A socket operation failed. The OS error is part of the message (not a `source`), so a
    /// report of the error chain does not repeat it.
    #[error("{action}: {error}{hint}")]
    Io {
        /// What was being done, to what.
        action: String,
        /// The underlying error.
        error: io::Error,
        /// The usual cause and what to do, if known.
        hint: &'static str,
    },
    /// The other side did not follow the protocol.
    #[error("{peer} does not speak flotilla-perf's protocol: {message}")]
    Protocol {
        /// The other side.
        peer: SocketAddr,
        /// What was wrong.
        message: String,
    },
    /// A setting is out of range.
    #[error("invalid {0}")]
    Invalid(String),
}

impl PerfError {
    pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let action = action.into();
        move |error| {
            let hint = hint(&error);
            Self::Io {
                action,
                error,
                hint,
            }
        }
    }
}

/// The usual cause of a socket error in a benchmark, and what to do.
fn hint(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(nix::libc::EADDRNOTAVAIL) => {
            " (the client ran out of local ports: set net.ipv4.tcp_tw_reuse=1 and a wide \
             net.ipv4.ip_local_port_range in its network namespace, see perf::CLIENT_SYSCTLS)"
        }
        Some(nix::libc::ECONNREFUSED) => {
            " (nothing listens there: is `flotilla-perf server` running in the server's \
             network namespace, on this port?)"
        }
        Some(nix::libc::ENETUNREACH | nix::libc::EHOSTUNREACH) => {
            " (no route to the server from the client's network namespace)"
        }
        Some(nix::libc::EADDRINUSE) => {
            " (another process uses this port in this network namespace; pick another port)"
        }
        _ if matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) =>
        {
            " (timed out: is the server reachable, and is nothing dropping the packets?)"
        }
        _ => "",
    }
}

/// Parses a duration: `5s`, `500ms`, `1.5s`, `2m`, `250us`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, PerfError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let invalid = || {
        PerfError::Invalid(format!(
            "duration {text:?}: use a number with s, ms, us or m (e.g. 5s, 500ms)"
        ))
    };
    let value: f64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        _ => return Err(invalid()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| invalid())
}

/// Parses `IP` or `IP:PORT` (IPv6 as `[IP]:PORT`); a missing port is [`DEFAULT_PORT`].
pub fn parse_server(text: &str) -> Result<SocketAddr, PerfError> {
    let text = text.trim();
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| {
            PerfError::Invalid(format!(
                "server address {text:?}: use IP or IP:PORT (names are not resolved)"
            ))
        })
}

#[cfg(test)]
mod tests;
