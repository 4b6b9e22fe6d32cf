//! Bounded traffic probes between test-bed namespaces: every call has a deadline, no loop runs
//! unbounded, and all addresses are inside the test bed's own namespaces.

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    process::Stdio,
    time::{Duration, Instant},
};

use crate::{TestbedError, netns::Netns};

fn io_error(action: &'static str, what: String) -> impl FnOnce(std::io::Error) -> TestbedError {
    move |source| TestbedError::Other(format!("{action} {what}: {source}"))
}

/// A UDP socket bound inside a namespace that counts the datagrams it receives.
#[derive(Debug)]
pub struct UdpReceiver {
    socket: UdpSocket,
}

impl UdpReceiver {
    /// Binds `address` inside `netns`.
    pub fn bind(netns: &Netns, address: SocketAddrV4) -> Result<Self, TestbedError> {
        let socket = netns.run(|| UdpSocket::bind(address))?.map_err(io_error(
            "binding UDP",
            format!("{address} in {}", netns.name()),
        ))?;
        Ok(Self { socket })
    }

    /// Receives until `expected` datagrams arrived or `timeout` passed; returns how many arrived.
    pub fn receive(&self, expected: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut buffer = [0_u8; 2048];
        let mut received = 0;
        while received < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.socket.set_read_timeout(Some(left)).is_err() {
                break;
            }
            match self.socket.recv(&mut buffer) {
                Ok(_) => received += 1,
                Err(_) => break,
            }
        }
        received
    }
}

/// Sends `count` datagrams of `size` bytes from inside `netns` to `destination`.
pub fn send_udp(
    netns: &Netns,
    destination: SocketAddrV4,
    count: usize,
    size: usize,
) -> Result<(), TestbedError> {
    netns
        .run(|| -> std::io::Result<()> {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            let payload = vec![0x5a_u8; size];
            for _ in 0..count {
                socket.send_to(&payload, destination)?;
            }
            Ok(())
        })?
        .map_err(io_error("sending UDP to", destination.to_string()))
}

/// Which pod answers each of a set of UDP flows: from `client` (an address of the calling
/// thread's network namespace), one flow per source port of `ports`, each sending "hostname" to
/// `to` (the test app's UDP echo answers with its pod's name) up to three times, a second apart.
/// None for a flow that got no answer; an error only when a port cannot be bound. Bounded: at
/// most three seconds per flow.
pub fn udp_flow_answers(
    client: Ipv4Addr,
    ports: std::ops::Range<u16>,
    to: SocketAddrV4,
) -> Result<Vec<Option<String>>, TestbedError> {
    ports
        .map(|port| {
            let from = SocketAddrV4::new(client, port);
            let socket = UdpSocket::bind(from)
                .and_then(|socket| {
                    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
                    socket.connect(to)?;
                    Ok(socket)
                })
                .map_err(io_error("binding UDP", from.to_string()))?;
            let mut buffer = [0u8; 256];
            for _ in 0..3 {
                if socket.send(b"hostname").is_err() {
                    continue;
                }
                if let Ok(n) = socket.recv(&mut buffer) {
                    let answer = String::from_utf8_lossy(&buffer[..n]).trim().to_owned();
                    return Ok(Some(answer));
                }
            }
            Ok(None)
        })
        .collect()
}

/// How many of the flows answered in both `before` and `after` (same flows, same order) got
/// another answer, out of how many answered in both.
pub fn flows_moved(before: &[Option<String>], after: &[Option<String>]) -> (usize, usize) {
    let both: Vec<(&String, &String)> = before
        .iter()
        .zip(after)
        .filter_map(|(a, b)| Some((a.as_ref()?, b.as_ref()?)))
        .collect();
    let moved = both.iter().filter(|(a, b)| a != b).count();
    (moved, both.len())
}

/// A TCP listener inside a namespace that echoes what one client sends.
#[derive(Debug)]
pub struct TcpEchoServer {
    thread: std::thread::JoinHandle<std::io::Result<usize>>,
}

impl TcpEchoServer {
    /// Listens on `address` inside `netns` and serves one connection, giving up after `timeout`.
    pub fn start(
        netns: &Netns,
        address: SocketAddrV4,
        timeout: Duration,
    ) -> Result<Self, TestbedError> {
        let listener = netns.run(|| TcpListener::bind(address))?.map_err(io_error(
            "listening on",
            format!("{address} in {}", netns.name()),
        ))?;
        let thread = std::thread::spawn(move || serve_one(&listener, timeout));
        Ok(Self { thread })
    }

    /// Waits for the server to finish; returns the number of bytes it echoed.
    pub fn finish(self) -> Result<usize, TestbedError> {
        self.thread
            .join()
            .map_err(|_| TestbedError::Other("the echo server thread panicked".into()))?
            .map_err(io_error("serving", "one TCP echo connection".into()))
    }
}

fn serve_one(listener: &TcpListener, timeout: Duration) -> std::io::Result<usize> {
    let deadline = Instant::now() + timeout;
    listener.set_nonblocking(true)?;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no client connected in time",
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => return Err(err),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut echoed = 0;
    let mut buffer = [0_u8; 4096];
    loop {
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            return Ok(echoed);
        }
        stream.write_all(&buffer[..read])?;
        echoed += read;
    }
}

/// Connects from inside `netns` to `destination`, sends `payload`, and returns what came back
/// before the server closed. Fails after `timeout`.
pub fn tcp_echo(
    netns: &Netns,
    destination: SocketAddrV4,
    payload: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, TestbedError> {
    netns
        .run(|| -> std::io::Result<Vec<u8>> {
            let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(destination), timeout)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            stream.write_all(payload)?;
            stream.shutdown(std::net::Shutdown::Write)?;
            let mut echoed = Vec::with_capacity(payload.len());
            stream.read_to_end(&mut echoed)?;
            Ok(echoed)
        })?
        .map_err(io_error("TCP echo with", destination.to_string()))
}

/// Sends `count` ICMP echo requests from inside `netns` with busybox ping (0.2 s apart, 2 s
/// timeout each) and fails unless every one was answered.
pub fn ping(
    netns: &Netns,
    destination: std::net::Ipv4Addr,
    count: u32,
) -> Result<(), TestbedError> {
    let output = netns
        .command("busybox")?
        .args(["ping", "-c", &count.to_string(), "-i", "0.2", "-W", "2"])
        .arg(destination.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(io_error(
            "running",
            "busybox ping (is busybox-static installed?)".into(),
        ))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(TestbedError::Other(format!(
            "ping {destination} from {} failed: {}{}",
            netns.name(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}
