//! `flotilla-perf`: netperf's TCP_STREAM, TCP_RR, TCP_CRR and UDP_RR tests (netperf is not
//! installable on the project's machines). The tests and their definitions live in
//! `flotilla_testbed::perf`; this binary parses flags and prints.
//!
//! Run either side inside a network namespace with `nsenter --net=/var/run/netns/X`. A TCP_CRR
//! client's namespace needs `net.ipv4.tcp_tw_reuse=1` and a wide `net.ipv4.ip_local_port_range`
//! (e.g. "1024 65535") to open thousands of connections per second.

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use flotilla_testbed::perf::{self, ClientConfig, Server, Test};
use nix::sys::signal::{SigSet, Signal};

/// netperf-style network benchmarks: one server, four tests.
#[derive(Debug, Parser)]
#[command(name = "flotilla-perf", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every test on one TCP and UDP port until SIGTERM or SIGINT.
    Server {
        /// Address and port to listen on (TCP and UDP).
        #[arg(long, env = "FLOTILLA_PERF_LISTEN", default_value = "0.0.0.0:12865")]
        listen: SocketAddr,
    },
    /// Run one test against a server and report.
    Client {
        /// The server: IP or IP:PORT (default port 12865).
        #[arg(long, value_parser = perf::parse_server)]
        server: SocketAddr,
        /// TCP_STREAM, TCP_RR, TCP_CRR or UDP_RR.
        #[arg(long, default_value = "TCP_STREAM")]
        test: Test,
        /// How long to run: 5s, 500ms, 1m, ...
        #[arg(long, default_value = "5s", value_parser = perf::parse_duration)]
        duration: Duration,
        /// Request size in bytes (RR tests).
        #[arg(long, default_value_t = 1)]
        request_size: usize,
        /// Response size in bytes (RR tests).
        #[arg(long, default_value_t = 1)]
        response_size: usize,
        /// Size of each send in bytes (TCP_STREAM).
        #[arg(long, default_value_t = 16_384)]
        send_size: usize,
        /// How long a UDP_RR transaction waits before it counts as lost.
        #[arg(long, default_value = "100ms", value_parser = perf::parse_duration)]
        udp_timeout: Duration,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("flotilla-perf: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Server { listen } => serve(listen),
        Command::Client {
            server,
            test,
            duration,
            request_size,
            response_size,
            send_size,
            udp_timeout,
            json,
        } => {
            let config = ClientConfig {
                duration,
                request_size,
                response_size,
                send_size,
                udp_timeout,
                ..ClientConfig::new(server, test)
            };
            let report = perf::run_client(&config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(())
        }
    }
}

/// Serves until SIGTERM or SIGINT. The signals are blocked before any thread starts and taken
/// with sigwait: as PID 1 of a container the process has no default signal actions.
fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals
        .thread_block()
        .context("blocking SIGTERM and SIGINT")?;
    let mut server = Server::start(listen)?;
    println!(
        "flotilla-perf server listening on {} (TCP and UDP)",
        server.local_addr()
    );
    let signal = signals.wait().context("waiting for SIGTERM or SIGINT")?;
    eprintln!("flotilla-perf server: {signal}, stopping");
    server.stop();
    Ok(())
}
