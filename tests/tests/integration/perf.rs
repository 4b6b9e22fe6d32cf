//! Privileged test of the `flotilla-perf` binary: a server and clients in two network namespaces
//! joined by a veth pair, each of the four tests run for about a second through the real binary
//! under `nsenter --net=...`, as benchmarks and pods run it.

use std::{
    io::{BufRead as _, BufReader},
    net::{IpAddr, Ipv4Addr},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use flotilla_testbed::{Netlink, Netns, leftovers, perf, unique_prefix};
use serde_json::Value;

const PERF: &str = env!("CARGO_BIN_EXE_flotilla-perf");
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 199, 0, 2);
const PORT: u16 = 12_865;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the flotilla-perf test creates network namespaces and needs root; run it via `cargo \
         xtask test`"
    );
}

/// Two namespaces joined by a veth pair (client 10.199.0.1, server 10.199.0.2); both are
/// deleted on drop, which also kills anything still running in them.
struct Pair {
    prefix: String,
    client: Netns,
    server: Netns,
}

impl Pair {
    async fn create() -> anyhow::Result<Self> {
        let prefix = unique_prefix();
        let client = Netns::create(&format!("{prefix}perf-client"))?;
        let pair = Self {
            prefix: prefix.clone(),
            server: match Netns::create(&format!("{prefix}perf-server")) {
                Ok(server) => server,
                Err(err) => {
                    let _ = client.delete();
                    return Err(err.into());
                }
            },
            client,
        };
        // From here on, dropping `pair` cleans up.
        let client_nl = Netlink::connect(&pair.client)?;
        let server_nl = Netlink::connect(&pair.server)?;
        client_nl.add_veth("veth0", "peer0").await?;
        client_nl.move_to("peer0", &pair.server).await?;
        for (netlink, link, ip) in [
            (&client_nl, "veth0", CLIENT_IP),
            (&server_nl, "peer0", SERVER_IP),
        ] {
            netlink.set_up("lo").await?;
            netlink.add_address(link, IpAddr::V4(ip), 24).await?;
            netlink.set_up(link).await?;
        }
        for (key, value) in perf::CLIENT_SYSCTLS {
            pair.client.sysctl(key, value)?;
        }
        Ok(pair)
    }

    fn nsenter(netns: &Netns) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", netns.path().display()))
            .arg(PERF);
        command
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for netns in [&self.client, &self.server] {
            if let Err(err) = netns.delete() {
                eprintln!("removing {}: {err}", netns.name());
            }
        }
    }
}

/// The server process; killed on drop.
struct ServerProcess(Child);

impl ServerProcess {
    /// Starts the server in `netns` and waits (up to 10 s) until it says it listens.
    fn start(netns: &Netns) -> anyhow::Result<Self> {
        let mut child = Pair::nsenter(netns)
            .args(["server", "--listen", &format!("0.0.0.0:{PORT}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting flotilla-perf server under nsenter")?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        let server = Self(child);
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver
            .recv_timeout(Duration::from_secs(10))
            .context("the server did not start listening within 10 s")?;
        ensure!(line.contains("listening on"), "server said {line:?}");
        Ok(server)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `flotilla-perf client --json` in `netns` and returns its report.
fn client(netns: &Netns, test: &str, extra: &[&str]) -> anyhow::Result<Value> {
    let started = Instant::now();
    let output = Pair::nsenter(netns)
        .args(["client", "--server", &SERVER_IP.to_string()])
        .args(["--test", test, "--duration", "1s", "--json"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .context("running flotilla-perf client under nsenter")?;
    if !output.status.success() {
        bail!(
            "flotilla-perf client --test {test} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    ensure!(
        started.elapsed() < Duration::from_secs(10),
        "a 1 s test took {:?}",
        started.elapsed()
    );
    let report: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("parsing {}", String::from_utf8_lossy(&output.stdout)))?;
    eprintln!("{test}: {report}");
    ensure!(report["test"] == test, "{report}");
    let duration = report["duration_s"].as_f64().unwrap_or_default();
    ensure!((0.9..3.0).contains(&duration), "{report}");
    Ok(report)
}

fn number(report: &Value, key: &str) -> f64 {
    report[key].as_f64().unwrap_or_default()
}

/// Checks a request/response report: many transactions, no errors, ordered percentiles.
fn check_rr(report: &Value, least_transactions: f64) -> anyhow::Result<()> {
    ensure!(
        number(report, "transactions") >= least_transactions,
        "{report}"
    );
    ensure!(number(report, "transactions_per_s") > 0.0, "{report}");
    ensure!(number(report, "errors") == 0.0, "{report}");
    let latency = &report["latency_us"];
    let [min, p50, p90, p99, max] =
        ["min", "p50", "p90", "p99", "max"].map(|key| number(latency, key));
    ensure!(
        0.0 < min && min <= p50 && p50 <= p90 && p90 <= p99 && p99 <= max,
        "{report}"
    );
    // Between two namespaces on one machine a transaction takes microseconds, not seconds.
    ensure!(p50 < 100_000.0, "{report}");
    Ok(())
}

#[tokio::test]
async fn every_test_runs_between_two_namespaces_through_the_binary() -> anyhow::Result<()> {
    require_root();
    let pair = Pair::create().await?;
    let prefix = pair.prefix.clone();
    let server = ServerProcess::start(&pair.server)?;

    let stream = client(&pair.client, "TCP_STREAM", &[])?;
    ensure!(number(&stream, "throughput_mbit_s") > 100.0, "{stream}");
    ensure!(number(&stream, "bytes") > 0.0, "{stream}");
    ensure!(stream["latency_us"].is_null(), "{stream}");

    check_rr(&client(&pair.client, "TCP_RR", &[])?, 1_000.0)?;
    check_rr(&client(&pair.client, "TCP_CRR", &[])?, 100.0)?;
    let udp = client(&pair.client, "UDP_RR", &[])?;
    check_rr(&udp, 1_000.0)?;
    // Nothing drops packets on a veth pair, but a scheduling hiccup may exceed the timeout.
    ensure!(number(&udp, "lost") < 10.0, "{udp}");

    // Larger messages, and two clients at once against the one server.
    let sizes = ["--request-size", "2000", "--response-size", "30000"];
    let (tcp, udp) = std::thread::scope(|scope| {
        let tcp = scope.spawn(|| client(&pair.client, "TCP_RR", &sizes));
        let udp = scope.spawn(|| {
            client(
                &pair.client,
                "UDP_RR",
                &["--request-size", "100", "--response-size", "1400"],
            )
        });
        (tcp.join(), udp.join())
    });
    let tcp = tcp.map_err(|_| anyhow::anyhow!("the TCP client thread panicked"))??;
    let udp = udp.map_err(|_| anyhow::anyhow!("the UDP client thread panicked"))??;
    check_rr(&tcp, 100.0)?;
    ensure!(
        number(&tcp, "bytes") == number(&tcp, "transactions") * 32_000.0,
        "{tcp}"
    );
    check_rr(&udp, 100.0)?;

    drop(server);
    drop(pair);
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
    Ok(())
}

#[tokio::test]
async fn a_client_without_a_server_fails_with_a_hint() -> anyhow::Result<()> {
    require_root();
    let pair = Pair::create().await?;
    let output = Pair::nsenter(&pair.client)
        .args([
            "client",
            "--server",
            &SERVER_IP.to_string(),
            "--test",
            "TCP_RR",
        ])
        .stdin(Stdio::null())
        .output()?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(stderr.contains("flotilla-perf server"), "{stderr}");
    Ok(())
}
