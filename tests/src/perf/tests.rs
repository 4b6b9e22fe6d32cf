//! Unit tests of the parsing, the report and (over loopback, no root needed) of client and
//! server talking to each other.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use super::*;

const SHORT: Duration = Duration::from_millis(200);

fn loopback_server() -> Server {
    Server::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap()
}

#[test]
fn tests_parse_by_netperf_name_in_any_case() {
    assert_eq!("TCP_STREAM".parse::<Test>().unwrap(), Test::TcpStream);
    assert_eq!("tcp_rr".parse::<Test>().unwrap(), Test::TcpRr);
    assert_eq!("tcp-crr".parse::<Test>().unwrap(), Test::TcpCrr);
    assert_eq!("UDP_RR".parse::<Test>().unwrap(), Test::UdpRr);
    let err = "UDP_STREAM".parse::<Test>().unwrap_err().to_string();
    assert!(err.contains("TCP_RR"), "{err}");
    for test in Test::ALL {
        assert_eq!(test.to_string().parse::<Test>().unwrap(), test);
    }
}

#[test]
fn durations_parse_with_units() {
    assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
    assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(
        parse_duration("1.5s").unwrap(),
        Duration::from_millis(1_500)
    );
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
    for bad in ["", "s", "5h", "-1s", "1.2.3s", "fast"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn server_addresses_default_to_netperfs_port() {
    assert_eq!(
        parse_server("10.0.0.2").unwrap(),
        "10.0.0.2:12865".parse().unwrap()
    );
    assert_eq!(
        parse_server("10.0.0.2:9").unwrap(),
        "10.0.0.2:9".parse().unwrap()
    );
    assert_eq!(
        parse_server("[fd00::1]:7").unwrap(),
        "[fd00::1]:7".parse().unwrap()
    );
    assert_eq!(
        parse_server("fd00::1").unwrap(),
        "[fd00::1]:12865".parse().unwrap()
    );
    assert!(parse_server("server.example").is_err());
}

#[test]
fn configs_out_of_range_are_rejected_with_the_value_to_change() {
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
    assert!(ClientConfig::new(server, Test::TcpRr).validate().is_ok());
    let mut config = ClientConfig::new(server, Test::UdpRr);
    config.response_size = MAX_DATAGRAM + 1;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("response size"), "{err}");
    let config = ClientConfig::new(server, Test::TcpRr).with_duration(Duration::ZERO);
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("duration")
    );
    let mut config = ClientConfig::new(server, Test::TcpStream);
    config.send_size = 0;
    assert!(
        config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("send size")
    );
    // Sizes that do not apply to a test are not checked.
    let mut config = ClientConfig::new(server, Test::TcpStream);
    config.request_size = 0;
    assert!(config.validate().is_ok());
}

#[test]
fn reports_derive_rates_and_serialise_with_netperf_names() {
    let config = ClientConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)), Test::TcpRr);
    let mut latencies = Histogram::new();
    for us in [10, 20, 30, 40] {
        latencies.record(Duration::from_micros(us));
    }
    let report = Report::new(
        &config,
        Duration::from_secs(2),
        4,
        1,
        0,
        8,
        Some(&latencies),
    );
    assert_eq!(report.transactions_per_s, 2.0);
    assert_eq!(report.throughput_mbit_s, 8.0 * 8.0 / 2.0 / 1e6);
    let latency = report.latency_us.unwrap();
    // Percentiles are within a bucket (< 0.4 %); the extremes and the mean are exact.
    assert!((latency.p50 - 20.0).abs() < 0.1, "{latency:?}");
    assert_eq!((latency.p99, latency.mean), (40.0, 25.0));
    assert_eq!((latency.min, latency.max), (10.0, 40.0));
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["test"], "TCP_RR");
    assert_eq!(json["server"], "127.0.0.1:1");
    assert_eq!(json["latency_us"]["p90"], 40.0);
    let text = report.to_string();
    assert!(text.contains("transactions 4 (2.0/s), errors 1"), "{text}");
    assert!(text.contains("p50 20.0"), "{text}");

    let stream = Report::new(
        &ClientConfig::new(config.server, Test::TcpStream),
        Duration::from_secs(1),
        0,
        0,
        0,
        125_000_000,
        None,
    );
    assert_eq!(stream.throughput_mbit_s, 1_000.0);
    assert!(stream.to_string().contains("throughput 1000.0 Mbit/s"));
    assert_eq!(
        serde_json::to_value(&stream).unwrap()["latency_us"],
        serde_json::Value::Null
    );
}

#[test]
fn every_test_runs_over_loopback() {
    let server = loopback_server();
    for test in Test::ALL {
        let config = ClientConfig::new(server.local_addr(), test).with_duration(SHORT);
        let started = Instant::now();
        let report = run_client(&config).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5), "{test} overran");
        assert!(
            report.duration_s >= 0.15 && report.duration_s < 2.0,
            "{report:?}"
        );
        assert_eq!((report.errors, report.lost), (0, 0), "{report:?}");
        if test == Test::TcpStream {
            assert!(
                report.bytes > 0 && report.throughput_mbit_s > 0.0,
                "{report:?}"
            );
            assert!(report.latency_us.is_none());
        } else {
            assert!(report.transactions > 10, "{report:?}");
            let latency = report.latency_us.unwrap();
            assert!(latency.min > 0.0 && latency.min <= latency.p50);
            assert!(latency.p50 <= latency.p90 && latency.p90 <= latency.p99);
            assert!(latency.p99 <= latency.max);
        }
    }
    let stats = server.stats();
    assert!(
        stats.tcp_connections > 10,
        "TCP_CRR opens one per transaction: {stats:?}"
    );
    assert!(
        stats.stream_bytes > 0 && stats.udp_requests > 10,
        "{stats:?}"
    );
    assert_eq!((stats.rejected, stats.udp_setups), (0, 1), "{stats:?}");
}

#[test]
fn larger_messages_and_parallel_clients() {
    let server = loopback_server();
    let clients: Vec<_> = [Test::TcpRr, Test::TcpCrr, Test::UdpRr, Test::TcpStream]
        .into_iter()
        .map(|test| {
            let mut config = ClientConfig::new(server.local_addr(), test).with_duration(SHORT);
            config.request_size = 3_000;
            config.response_size = if test == Test::UdpRr { 9_000 } else { 70_000 };
            config.send_size = 1_000;
            std::thread::spawn(move || run_client(&config))
        })
        .collect();
    for client in clients {
        let report = client.join().unwrap().unwrap();
        if report.test == Test::TcpStream {
            assert_eq!(report.bytes % 1_000, 0, "{report:?}");
        } else {
            assert!(report.transactions > 0, "{report:?}");
            assert_eq!(
                report.bytes,
                report.transactions * (3_000 + report.response_size as u64)
            );
        }
    }
}

#[test]
fn udp_losses_are_counted_and_the_test_goes_on() {
    // A "server" that registers the client but never answers a request: every transaction is
    // lost after the timeout, and the run still ends on time. How many requests fit into the
    // run depends on the machine's load, so the server counts what it swallowed and the report
    // must have counted exactly those as lost (a repeated setup datagram is not a request).
    let silent = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let address = silent.local_addr().unwrap();
    let responder = std::thread::spawn(move || {
        let mut buffer = [0_u8; 64];
        silent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (len, peer) = silent.recv_from(&mut buffer).unwrap();
        let setup = buffer[..len].to_vec();
        silent.send_to(&setup, peer).unwrap();
        // Swallow requests until the client is done.
        let deadline = Instant::now() + Duration::from_secs(3);
        silent
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut swallowed = 0_u64;
        while Instant::now() < deadline {
            match silent.recv_from(&mut buffer) {
                Ok((len, _)) if buffer[..len] != setup[..] => swallowed += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        swallowed
    });
    let mut config = ClientConfig::new(address, Test::UdpRr).with_duration(SHORT);
    config.udp_timeout = Duration::from_millis(20);
    let started = Instant::now();
    let report = run_client(&config).unwrap();
    let took = started.elapsed();
    let swallowed = responder.join().unwrap();
    assert_eq!(report.transactions, 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(
        report.lost, swallowed,
        "every request the server swallowed is one loss: {report:?}"
    );
    assert!(
        report.lost >= 2,
        "the run went on after its first loss: {report:?}"
    );
    assert!(took < Duration::from_secs(5), "the run overran: {took:?}");
    assert!(report.latency_us.is_none());
    assert!(report.to_string().contains("lost"), "{report}");
}

#[test]
fn unreachable_servers_fail_fast_with_a_hint() {
    // Bind and drop to find a port nothing listens on.
    let port = {
        let server = loopback_server();
        server.local_addr().port()
    };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for test in [Test::TcpRr, Test::TcpCrr, Test::UdpRr] {
        let started = Instant::now();
        let err = run_client(&ClientConfig::new(address, test))
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(3), "{test}: {err}");
        assert!(err.contains("flotilla-perf server"), "{test}: {err}");
    }
}

#[test]
fn foreign_clients_are_rejected_and_stop_ends_every_thread() {
    let mut server = loopback_server();
    let mut foreign = TcpStream::connect(server.local_addr()).unwrap();
    foreign.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    foreign
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        foreign.read_to_end(&mut rest).unwrap(),
        0,
        "closed without an answer"
    );
    // An idle client that never sends its hello does not hold up stop.
    let _idle = TcpStream::connect(server.local_addr()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.stats().tcp_connections < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(server.stats().rejected, 1);
    assert!(server.tcp_threads() >= 1);
    let started = Instant::now();
    server.stop();
    assert_eq!(server.tcp_threads(), 0);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(TcpStream::connect(server.local_addr()).is_err());
}
