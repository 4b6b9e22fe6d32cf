//! The client side of each test. Every loop ends at the test's deadline; every blocking call has
//! a timeout (`io_timeout`, or `udp_timeout` for a UDP response).

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket},
    time::{Duration, Instant},
};

use super::{
    ClientConfig, PerfError, Report, Test,
    histogram::Histogram,
    protocol::{Hello, MAGIC, MAX_DATAGRAM, Mode, UDP_SETUP_LEN, udp_echoed_len, udp_setup},
};

/// TCP_CRR and UDP_RR give up after this many failed transactions in a row: the server is gone
/// or the path is broken, and going on would only count errors.
const MAX_CONSECUTIVE_ERRORS: u64 = 100;
/// How often a UDP client sends its setup before it gives up on the server.
const UDP_SETUP_ATTEMPTS: u32 = 5;
/// The least time a UDP client waits for the setup's acknowledgement per attempt.
const UDP_SETUP_WAIT: Duration = Duration::from_millis(200);

/// Runs the test `config` describes against its server, from the calling thread's network
/// namespace, and reports what it measured. Blocks for about `config.duration`.
pub fn run_client(config: &ClientConfig) -> Result<Report, PerfError> {
    config.validate()?;
    match config.test {
        Test::TcpStream => tcp_stream(config),
        Test::TcpRr => tcp_rr(config),
        Test::TcpCrr => tcp_crr(config),
        Test::UdpRr => udp_rr(config),
    }
}

fn connect(config: &ClientConfig, nodelay: bool) -> Result<TcpStream, PerfError> {
    let server = config.server;
    let stream = TcpStream::connect_timeout(&server, config.io_timeout)
        .map_err(PerfError::io(format!("connecting to {server}")))?;
    let setup = || -> std::io::Result<()> {
        stream.set_read_timeout(Some(config.io_timeout))?;
        stream.set_write_timeout(Some(config.io_timeout))?;
        if nodelay {
            stream.set_nodelay(true)?;
        }
        Ok(())
    };
    setup().map_err(PerfError::io(format!(
        "setting socket options for {server}"
    )))?;
    Ok(stream)
}

fn tcp_stream(config: &ClientConfig) -> Result<Report, PerfError> {
    let server = config.server;
    let mut stream = connect(config, false)?;
    let hello = Hello {
        mode: Mode::Sink,
        request_size: 0,
        response_size: 0,
    };
    stream
        .write_all(&hello.encode())
        .map_err(PerfError::io(format!("sending the hello to {server}")))?;
    let buffer = vec![0x53_u8; config.send_size];
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut sent: u64 = 0;
    while Instant::now() < deadline {
        stream
            .write_all(&buffer)
            .map_err(PerfError::io(format!("sending to {server}")))?;
        sent += buffer.len() as u64;
    }
    stream
        .shutdown(Shutdown::Write)
        .map_err(PerfError::io(format!("closing the write side to {server}")))?;
    let mut count = [0_u8; 8];
    stream
        .read_exact(&mut count)
        .map_err(PerfError::io(format!(
            "waiting for {server}'s count of received bytes"
        )))?;
    let elapsed = started.elapsed();
    let received = u64::from_be_bytes(count);
    if received != sent {
        return Err(PerfError::Protocol {
            peer: server,
            message: format!("the server counted {received} bytes, the client sent {sent}"),
        });
    }
    Ok(Report::new(config, elapsed, 0, 0, 0, received, None))
}

fn tcp_rr(config: &ClientConfig) -> Result<Report, PerfError> {
    let server = config.server;
    let mut stream = connect(config, true)?;
    let hello = Hello {
        mode: Mode::RequestResponse,
        request_size: config.request_size,
        response_size: config.response_size,
    };
    stream
        .write_all(&hello.encode())
        .map_err(PerfError::io(format!("sending the hello to {server}")))?;
    let request = vec![0x51_u8; config.request_size];
    let mut response = vec![0_u8; config.response_size];
    let mut latencies = Histogram::new();
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut now = started;
    while now < deadline {
        stream
            .write_all(&request)
            .map_err(PerfError::io(format!("sending a request to {server}")))?;
        stream
            .read_exact(&mut response)
            .map_err(PerfError::io(format!("receiving a response from {server}")))?;
        let done = Instant::now();
        latencies.record(done - now);
        now = done;
    }
    let elapsed = now - started;
    // A clean end: the server closes once it has seen our end of stream.
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.read(&mut response);
    let transactions = latencies.count();
    let bytes = transactions * (config.request_size + config.response_size) as u64;
    Ok(Report::new(
        config,
        elapsed,
        transactions,
        0,
        0,
        bytes,
        Some(&latencies),
    ))
}

/// One TCP_CRR transaction: connect, hello + request in one write, response, close, and the
/// server's close.
fn connect_request_response(
    config: &ClientConfig,
    first_write: &[u8],
    response: &mut [u8],
) -> Result<(), PerfError> {
    let server = config.server;
    let mut stream = connect(config, true)?;
    stream
        .write_all(first_write)
        .map_err(PerfError::io(format!("sending a request to {server}")))?;
    stream
        .read_exact(response)
        .map_err(PerfError::io(format!("receiving a response from {server}")))?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(PerfError::io(format!("closing the connection to {server}")))?;
    let mut rest = [0_u8; 1];
    match stream.read(&mut rest) {
        Ok(0) => Ok(()),
        Ok(_) => Err(PerfError::Protocol {
            peer: server,
            message: "more bytes than one response".into(),
        }),
        Err(err) => Err(PerfError::io(format!("waiting for {server} to close"))(err)),
    }
}

fn tcp_crr(config: &ClientConfig) -> Result<Report, PerfError> {
    let hello = Hello {
        mode: Mode::RequestResponse,
        request_size: config.request_size,
        response_size: config.response_size,
    };
    let mut first_write = hello.encode().to_vec();
    first_write.resize(first_write.len() + config.request_size, 0x43);
    let mut response = vec![0_u8; config.response_size];
    let mut latencies = Histogram::new();
    let (mut errors, mut consecutive_errors) = (0_u64, 0_u64);
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut now = started;
    while now < deadline {
        let result = connect_request_response(config, &first_write, &mut response);
        let done = Instant::now();
        match result {
            Ok(()) => {
                latencies.record(done - now);
                consecutive_errors = 0;
            }
            // A server that cannot be reached at all is an error, not a measurement.
            Err(err) if latencies.count() == 0 && errors == 0 => return Err(err),
            Err(err) => {
                errors += 1;
                consecutive_errors += 1;
                if consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                    return Err(err);
                }
            }
        }
        now = done;
    }
    let transactions = latencies.count();
    let bytes = transactions * (config.request_size + config.response_size) as u64;
    Ok(Report::new(
        config,
        now - started,
        transactions,
        errors,
        0,
        bytes,
        Some(&latencies),
    ))
}

/// Binds a UDP socket of the server's family, connects it to the server (so ICMP errors come
/// back as errors) and registers the sizes with the server.
fn udp_setup_socket(config: &ClientConfig) -> Result<UdpSocket, PerfError> {
    let server = config.server;
    let local: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(PerfError::io("binding a UDP socket"))?;
    socket.connect(server).map_err(PerfError::io(format!(
        "connecting a UDP socket to {server}"
    )))?;
    let setup = udp_setup(config.request_size, config.response_size);
    let wait = config.udp_timeout.max(UDP_SETUP_WAIT);
    let mut buffer = [0_u8; UDP_SETUP_LEN + 1];
    for _ in 0..UDP_SETUP_ATTEMPTS {
        socket
            .send(&setup)
            .map_err(PerfError::io(format!("sending the UDP setup to {server}")))?;
        let attempt_deadline = Instant::now() + wait;
        loop {
            let left = attempt_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket
                .set_read_timeout(Some(left))
                .map_err(PerfError::io("setting a UDP receive timeout"))?;
            match socket.recv(&mut buffer) {
                Ok(len) if buffer[..len] == setup => return Ok(socket),
                // Something else (a late answer of an earlier run?): keep waiting.
                Ok(_) => {}
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break;
                }
                Err(err) => {
                    return Err(PerfError::io(format!(
                        "waiting for {server} to acknowledge the UDP setup"
                    ))(err));
                }
            }
        }
    }
    Err(PerfError::Io {
        action: format!(
            "registering with the UDP server {server} ({UDP_SETUP_ATTEMPTS} setup datagrams, \
             {} ms apart)",
            wait.as_millis()
        ),
        error: ErrorKind::TimedOut.into(),
        hint: " (no answer: is `flotilla-perf server` running there, and does UDP reach it?)",
    })
}

/// The next sequence number after `seq` whose leading bytes cannot be taken for a setup.
fn next_sequence(seq: u64) -> u64 {
    let mut next = seq.wrapping_add(1);
    if next.to_le_bytes()[..4] == MAGIC {
        next = next.wrapping_add(1);
    }
    next
}

fn udp_rr(config: &ClientConfig) -> Result<Report, PerfError> {
    let server = config.server;
    let socket = udp_setup_socket(config)?;
    socket
        .set_read_timeout(Some(config.udp_timeout))
        .map_err(PerfError::io("setting a UDP receive timeout"))?;
    let echoed = udp_echoed_len(config.request_size, config.response_size);
    let mut request = vec![0x55_u8; config.request_size];
    let mut response = vec![0_u8; MAX_DATAGRAM + 1];
    let mut latencies = Histogram::new();
    let (mut errors, mut lost, mut consecutive_errors) = (0_u64, 0_u64, 0_u64);
    let mut seq = 0_u64;
    let started = Instant::now();
    let deadline = started + config.duration;
    let mut now = started;
    while now < deadline {
        seq = next_sequence(seq);
        let tag = seq.to_le_bytes();
        request[..echoed].copy_from_slice(&tag[..echoed]);
        let outcome = udp_transaction(
            &socket,
            config,
            &request,
            &mut response,
            &tag[..echoed],
            now,
        );
        let done = Instant::now();
        match outcome {
            UdpOutcome::Answered => {
                latencies.record(done - now);
                consecutive_errors = 0;
            }
            UdpOutcome::Lost => {
                lost += 1;
                consecutive_errors = 0;
            }
            UdpOutcome::Failed(err) => {
                errors += 1;
                consecutive_errors += 1;
                if consecutive_errors >= MAX_CONSECUTIVE_ERRORS {
                    return Err(PerfError::io(format!("exchanging datagrams with {server}"))(err));
                }
            }
        }
        now = done;
    }
    let transactions = latencies.count();
    let bytes = transactions * (config.request_size + config.response_size) as u64;
    Ok(Report::new(
        config,
        now - started,
        transactions,
        errors,
        lost,
        bytes,
        Some(&latencies),
    ))
}

enum UdpOutcome {
    Answered,
    Lost,
    Failed(std::io::Error),
}

/// Sends one request and waits until its response (recognised by `tag`) arrives or the UDP
/// timeout has passed since `sent_at`; late answers to earlier requests are skipped.
fn udp_transaction(
    socket: &UdpSocket,
    config: &ClientConfig,
    request: &[u8],
    response: &mut [u8],
    tag: &[u8],
    sent_at: Instant,
) -> UdpOutcome {
    if let Err(err) = socket.send(request) {
        return UdpOutcome::Failed(err);
    }
    let give_up = sent_at + config.udp_timeout;
    let mut timeout_changed = false;
    let outcome = loop {
        match socket.recv(response) {
            Ok(len) if len == config.response_size && response[..tag.len()] == *tag => {
                break UdpOutcome::Answered;
            }
            // A late answer to an earlier request: wait for ours, but not past our deadline.
            Ok(_) => {
                let left = give_up.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break UdpOutcome::Lost;
                }
                if let Err(err) = socket.set_read_timeout(Some(left)) {
                    break UdpOutcome::Failed(err);
                }
                timeout_changed = true;
            }
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                break UdpOutcome::Lost;
            }
            Err(err) => break UdpOutcome::Failed(err),
        }
    };
    if timeout_changed && let Err(err) = socket.set_read_timeout(Some(config.udp_timeout)) {
        return UdpOutcome::Failed(err);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_never_look_like_a_setup() {
        let before_magic = u64::from(u32::from_le_bytes(MAGIC)) - 1;
        let next = next_sequence(before_magic);
        assert_ne!(next.to_le_bytes()[..4], MAGIC);
        assert_eq!(next, before_magic + 2);
        assert_eq!(next_sequence(1), 2);
    }
}
