//! The server: one TCP listener and one UDP socket on the same port, serving any number of
//! clients in sequence and in parallel until stopped.
//!
//! TCP connections are served by a pool of threads that each block in `accept` and serve the
//! connection they accepted themselves (leader/followers): a thread that accepts while no other
//! thread waits in `accept` first starts one that does. A TCP_CRR connection thus costs no thread
//! start or hand-over between threads once the pool has warmed up. Threads beyond
//! [`MAX_IDLE_ACCEPTORS`] waiting ones end after their connection; at most [`MAX_THREADS`]
//! connections are served at once, further ones wait in the listen backlog.

use std::{
    collections::HashMap,
    io::{BufRead as _, BufReader, ErrorKind, Read, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{
    PerfError,
    protocol::{HELLO_LEN, Hello, MAX_DATAGRAM, Mode, UDP_ECHOED, parse_udp_setup, udp_echoed_len},
};

/// Waiting acceptors kept beyond those needed right now.
const MAX_IDLE_ACCEPTORS: usize = 4;
/// Most TCP connections served at once.
const MAX_THREADS: usize = 512;
/// A connection that sends nothing for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the UDP thread looks at the stop flag while no datagram comes.
const UDP_POLL: Duration = Duration::from_millis(100);
/// Most UDP clients remembered at once (the oldest registration is forgotten first).
const MAX_UDP_CLIENTS: usize = 4_096;
/// How long [`Server::stop`] waits for connection threads to end.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Read size of a TCP_STREAM sink.
const SINK_BUFFER: usize = 256 << 10;

/// Counters of what a server did since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// TCP connections accepted.
    pub tcp_connections: u64,
    /// TCP connections closed because their hello was wrong or missing.
    pub rejected: u64,
    /// TCP requests answered.
    pub tcp_requests: u64,
    /// Bytes TCP_STREAM connections delivered.
    pub stream_bytes: u64,
    /// UDP clients registered.
    pub udp_setups: u64,
    /// UDP requests answered.
    pub udp_requests: u64,
    /// UDP datagrams dropped because their sender had not registered.
    pub udp_unknown: u64,
}

#[derive(Default)]
struct Counters {
    tcp_connections: AtomicU64,
    rejected: AtomicU64,
    tcp_requests: AtomicU64,
    stream_bytes: AtomicU64,
    udp_setups: AtomicU64,
    udp_requests: AtomicU64,
    udp_unknown: AtomicU64,
}

struct Shared {
    listener: TcpListener,
    stop: AtomicBool,
    /// Threads waiting in (or about to call) accept.
    idle: AtomicUsize,
    /// Live TCP threads.
    threads: AtomicUsize,
    next_connection: AtomicU64,
    /// Clones of the connections being served, so stop can shut them down.
    open: Mutex<HashMap<u64, TcpStream>>,
    counters: Counters,
}

/// A running server. Dropping it stops it.
pub struct Server {
    local: SocketAddr,
    shared: Arc<Shared>,
    udp_thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Listens on `address` (TCP, and UDP on the same address and port; port 0 picks a free
    /// port for both) in the calling thread's network namespace and serves until stopped.
    pub fn start(address: SocketAddr) -> Result<Self, PerfError> {
        let listener = TcpListener::bind(address)
            .map_err(PerfError::io(format!("listening on TCP {address}")))?;
        let local = listener
            .local_addr()
            .map_err(PerfError::io("reading the listener's address"))?;
        let udp = UdpSocket::bind(local).map_err(PerfError::io(format!("binding UDP {local}")))?;
        udp.set_read_timeout(Some(UDP_POLL))
            .map_err(PerfError::io("setting the UDP socket's timeout"))?;
        let shared = Arc::new(Shared {
            listener,
            stop: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
            next_connection: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        });
        let udp_shared = Arc::clone(&shared);
        let udp_thread = std::thread::Builder::new()
            .name("perf-udp".into())
            .spawn(move || serve_udp(&udp_shared, &udp))
            .map_err(PerfError::io("starting the UDP thread"))?;
        let mut server = Self {
            local,
            shared,
            udp_thread: Some(udp_thread),
        };
        if let Err(err) = spawn_acceptor(&server.shared) {
            server.stop();
            return Err(PerfError::io("starting the first TCP thread")(err));
        }
        Ok(server)
    }

    /// The address the server listens on (TCP and UDP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// What the server did so far.
    pub fn stats(&self) -> ServerStats {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ServerStats {
            tcp_connections: get(&c.tcp_connections),
            rejected: get(&c.rejected),
            tcp_requests: get(&c.tcp_requests),
            stream_bytes: get(&c.stream_bytes),
            udp_setups: get(&c.udp_setups),
            udp_requests: get(&c.udp_requests),
            udp_unknown: get(&c.udp_unknown),
        }
    }

    /// Stops accepting, closes the connections being served and waits (up to 5 s) for every
    /// thread to end. Idempotent; also done on drop.
    pub fn stop(&mut self) {
        let shared = &self.shared;
        shared.stop.store(true, Ordering::SeqCst);
        // shutdown(2) on a listening socket wakes every thread blocked in accept(2) (which then
        // fails with EINVAL), the only way to interrupt a blocking accept without a connection.
        // SAFETY: the descriptor belongs to `shared.listener`, which outlives this call;
        // shutdown only changes the socket's state and touches no memory of ours.
        unsafe {
            nix::libc::shutdown(shared.listener.as_raw_fd(), nix::libc::SHUT_RD);
        }
        for stream in shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            let _ = stream.shutdown(Shutdown::Both);
        }
        if let Some(thread) = self.udp_thread.take() {
            let _ = thread.join();
        }
        let deadline = Instant::now() + STOP_WAIT;
        while shared.threads.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Live TCP threads (waiting in accept or serving); 0 once stopped.
    pub fn tcp_threads(&self) -> usize {
        self.shared.threads.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts a thread that waits in accept. Counts it as idle before it runs, so that concurrent
/// acceptors see it.
fn spawn_acceptor(shared: &Arc<Shared>) -> std::io::Result<()> {
    shared.threads.fetch_add(1, Ordering::SeqCst);
    shared.idle.fetch_add(1, Ordering::SeqCst);
    let thread_shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new()
        .name("perf-tcp".into())
        .spawn(move || acceptor(&thread_shared));
    if let Err(err) = spawned {
        shared.idle.fetch_sub(1, Ordering::SeqCst);
        shared.threads.fetch_sub(1, Ordering::SeqCst);
        return Err(err);
    }
    Ok(())
}

/// Accepts and serves connections until the server stops or enough other threads wait.
/// Entered counted as idle.
fn acceptor(shared: &Arc<Shared>) {
    loop {
        let accepted = shared.listener.accept();
        let idle_left = shared.idle.fetch_sub(1, Ordering::SeqCst) - 1;
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        match accepted {
            Ok((stream, _)) => {
                if idle_left == 0
                    && shared.threads.load(Ordering::SeqCst) < MAX_THREADS
                    && let Err(err) = spawn_acceptor(shared)
                {
                    tracing::warn!("flotilla-perf server: starting a TCP thread failed: {err}");
                }
                serve_tcp(shared, stream);
            }
            // Out of descriptors or memory, or a connection reset before accept: wait a little
            // rather than spin.
            Err(err) => {
                tracing::debug!("flotilla-perf server: accept failed: {err}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if shared.stop.load(Ordering::SeqCst)
            || shared.idle.load(Ordering::SeqCst) >= MAX_IDLE_ACCEPTORS
        {
            break;
        }
        shared.idle.fetch_add(1, Ordering::SeqCst);
    }
    shared.threads.fetch_sub(1, Ordering::SeqCst);
}

/// Serves one TCP connection, registered for [`Server::stop`] while it lasts.
fn serve_tcp(shared: &Shared, stream: TcpStream) {
    let counters = &shared.counters;
    counters.tcp_connections.fetch_add(1, Ordering::Relaxed);
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    if let Ok(clone) = stream.try_clone() {
        shared
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, clone);
    }
    // A stop that ran between accept and the registration above did not see this connection.
    if !shared.stop.load(Ordering::SeqCst) {
        match serve_connection(counters, &stream) {
            Ok(()) => {}
            Err(ServeError::Hello(message)) => {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("flotilla-perf server: rejected a connection: {message}");
            }
            Err(ServeError::Io(err)) => {
                tracing::debug!("flotilla-perf server: connection ended: {err}");
            }
        }
    }
    shared
        .open
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&id);
}

enum ServeError {
    Hello(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for ServeError {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}

fn serve_connection(counters: &Counters, stream: &TcpStream) -> Result<(), ServeError> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
    // One read gets the hello and (TCP_CRR) the request sent with it.
    let mut reader = BufReader::with_capacity(64 << 10, stream);
    let mut hello = [0_u8; HELLO_LEN];
    reader
        .read_exact(&mut hello)
        .map_err(|err| ServeError::Hello(format!("no complete hello ({err})")))?;
    let hello = Hello::decode(&hello).map_err(ServeError::Hello)?;
    let mut writer = stream;
    match hello.mode {
        Mode::Sink => {
            let mut buffer = vec![0_u8; SINK_BUFFER];
            let mut received: u64 = 0;
            loop {
                let read = reader.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                received += read as u64;
            }
            counters.stream_bytes.fetch_add(received, Ordering::Relaxed);
            writer.write_all(&received.to_be_bytes())?;
        }
        Mode::RequestResponse => {
            stream.set_nodelay(true)?;
            let mut request = vec![0_u8; hello.request_size];
            let response = vec![0x52_u8; hello.response_size];
            // Requests until the client's end of stream, which must fall between two requests.
            while !reader.fill_buf()?.is_empty() {
                reader.read_exact(&mut request)?;
                writer.write_all(&response)?;
                counters.tcp_requests.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

/// A UDP client's registration.
struct UdpClient {
    response_size: usize,
    registered: u64,
}

fn serve_udp(shared: &Shared, socket: &UdpSocket) {
    let counters = &shared.counters;
    let mut clients: HashMap<SocketAddr, UdpClient> = HashMap::new();
    let mut registrations: u64 = 0;
    let mut datagram = vec![0_u8; MAX_DATAGRAM + 1];
    let mut response = vec![0x52_u8; MAX_DATAGRAM];
    while !shared.stop.load(Ordering::SeqCst) {
        let (len, peer) = match socket.recv_from(&mut datagram) {
            Ok(received) => received,
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue;
            }
            Err(err) => {
                // ICMP errors of earlier answers surface here; they concern a gone client.
                tracing::debug!("flotilla-perf server: UDP receive: {err}");
                continue;
            }
        };
        let datagram = &datagram[..len];
        if let Some(response_size) = parse_udp_setup(datagram) {
            if response_size == 0 || response_size > MAX_DATAGRAM {
                continue;
            }
            if clients.len() >= MAX_UDP_CLIENTS
                && !clients.contains_key(&peer)
                && let Some(oldest) = clients
                    .iter()
                    .min_by_key(|(_, client)| client.registered)
                    .map(|(address, _)| *address)
            {
                clients.remove(&oldest);
            }
            registrations += 1;
            clients.insert(
                peer,
                UdpClient {
                    response_size,
                    registered: registrations,
                },
            );
            counters.udp_setups.fetch_add(1, Ordering::Relaxed);
            // The acknowledgement repeats the setup; the client compares it byte for byte.
            let _ = socket.send_to(datagram, peer);
            continue;
        }
        let Some(client) = clients.get(&peer) else {
            counters.udp_unknown.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let echoed = udp_echoed_len(len, client.response_size);
        debug_assert!(echoed <= UDP_ECHOED);
        response[..echoed].copy_from_slice(&datagram[..echoed]);
        if socket
            .send_to(&response[..client.response_size], peer)
            .is_ok()
        {
            counters.udp_requests.fetch_add(1, Ordering::Relaxed);
        }
    }
}
