//! The control plane's own etcd member: by default `flotilla-controlplane` starts one etcd
//! (data under its state directory, client URL on loopback) and stops it when it exits.
//! `--etcd-endpoints` points at an external cluster instead and nothing is started.

use std::{
    net::{IpAddr, SocketAddr, TcpListener},
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    process::{Child, Command},
    sync::oneshot,
};

use crate::storage::{StorageError, Store};

/// Errors starting the embedded etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The etcd binary is missing.
    #[error("etcd is not installed (no `etcd` on PATH); `cargo xtask setup` installs etcd-server")]
    NotInstalled,
    /// A file-system step failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// etcd started but never answered.
    #[error("etcd did not become healthy within {timeout:?} ({source}); its log: {log}")]
    Unhealthy {
        /// How long we waited.
        timeout: Duration,
        /// The last connection error.
        #[source]
        source: StorageError,
        /// The log file to look at.
        log: PathBuf,
    },
    /// A port the member needs is taken: most likely by another control plane's etcd, which
    /// this one must never talk to as if it were its own.
    #[error(
        "{address}, the {role} port of the embedded etcd, is already in use (another control plane's etcd?): stop whatever holds it or start this control plane with another --etcd-{role}-port"
    )]
    PortTaken {
        /// The address.
        address: SocketAddr,
        /// `client` or `peer`.
        role: &'static str,
    },
    /// The etcd answering on the client port is not the member this state directory created.
    #[error(
        "the etcd answering on 127.0.0.1:{port} is cluster {found_cluster:x} member {found_member:x}, but {identity} says this control plane's etcd is cluster {cluster:x} member {member:x}; refusing to use another cluster's data (is another control plane running on the same ports?)"
    )]
    Foreign {
        /// The client port.
        port: u16,
        /// The file holding the recorded identity.
        identity: PathBuf,
        /// The recorded cluster ID.
        cluster: u64,
        /// The recorded member ID.
        member: u64,
        /// The cluster ID found.
        found_cluster: u64,
        /// The member ID found.
        found_member: u64,
    },
    /// The member's cluster settings cannot work.
    #[error("{0}")]
    Cluster(String),
    /// The etcd started could not be asked who it is.
    #[error("asking etcd for its cluster and member ID: {0}")]
    Identity(#[source] StorageError),
    /// etcd exited during start-up.
    #[error("etcd exited during start-up ({status}); its log: {log}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The log file to look at.
        log: PathBuf,
    },
}

/// Where and how to run the embedded etcd member.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// etcd's data directory.
    pub data_dir: PathBuf,
    /// Loopback port for clients (each control plane talks to its own member only, as
    /// kubeadm's stacked control planes do).
    pub client_port: u16,
    /// Port for peers, on `member.peer_ip` (unused by a single member, but etcd must bind one).
    pub peer_port: u16,
    /// The member's place in its cluster.
    pub member: EtcdMember,
}

/// The embedded etcd member's place in a cluster of control planes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdMember {
    /// Its name, unique in the cluster.
    pub name: String,
    /// The address its peer port listens on and is advertised at.
    pub peer_ip: IpAddr,
    /// Every member at the cluster's first start (name, peer URL), this one included; empty
    /// for a cluster of this member alone. Read only when the data directory is new.
    pub initial_cluster: Vec<(String, String)>,
    /// Peer TLS (certificate, key, CA), required for a cluster of several members: without
    /// it anyone reaching a peer port could speak Raft to the member.
    pub peer_tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Tells this cluster's members from another's at bootstrap.
    pub cluster_token: String,
}

impl Default for EtcdMember {
    fn default() -> Self {
        Self {
            name: "flotilla".to_owned(),
            peer_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            initial_cluster: Vec::new(),
            peer_tls: None,
            cluster_token: "flotilla".to_owned(),
        }
    }
}

impl EtcdConfig {
    /// A member in `data_dir` on two free loopback ports (for tests and parallel instances).
    pub fn on_free_ports(data_dir: &Path) -> Result<Self, EtcdError> {
        Ok(Self {
            data_dir: data_dir.to_owned(),
            client_port: free_port()?,
            peer_port: free_port()?,
            member: EtcdMember::default(),
        })
    }

    /// The client URL (`http://127.0.0.1:<port>`).
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The peer URL this member listens on and advertises.
    pub fn peer_url(&self) -> String {
        let scheme = if self.member.peer_tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!(
            "{scheme}://{}",
            SocketAddr::new(self.member.peer_ip, self.peer_port)
        )
    }

    /// Checks that the member's cluster settings can work: it is in its initial cluster under
    /// its own peer URL, names are unique, and several members speak TLS to each other.
    pub fn check(&self) -> Result<(), EtcdError> {
        let members = &self.member.initial_cluster;
        if members.is_empty() {
            return Ok(());
        }
        let own = self.peer_url();
        match members.iter().find(|(name, _)| *name == self.member.name) {
            None => {
                return Err(EtcdError::Cluster(format!(
                    "--etcd-initial-cluster does not name this member ({}={own}); list every \
                     member, this one included",
                    self.member.name
                )));
            }
            Some((_, url)) if *url != own => {
                return Err(EtcdError::Cluster(format!(
                    "--etcd-initial-cluster gives this member ({}) the peer URL {url}, but it \
                     listens on {own} (--etcd-peer-address, --etcd-peer-port)",
                    self.member.name
                )));
            }
            Some(_) => {}
        }
        let mut names: Vec<&str> = members.iter().map(|(name, _)| name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(EtcdError::Cluster(format!(
                "--etcd-initial-cluster names the member {} twice",
                pair[0]
            )));
        }
        if let Some((name, url)) = members.iter().find(|(_, url)| !url.starts_with("https://")) {
            return Err(EtcdError::Cluster(format!(
                "--etcd-initial-cluster: the member {name} has the peer URL {url}; members speak \
                 TLS to each other (https://IP:PORT)"
            )));
        }
        Ok(())
    }

    /// `--initial-cluster`: the configured members, or this one alone.
    fn initial_cluster(&self) -> String {
        if self.member.initial_cluster.is_empty() {
            return format!("{}={}", self.member.name, self.peer_url());
        }
        self.member
            .initial_cluster
            .iter()
            .map(|(name, url)| format!("{name}={url}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Where the member's cluster and member ID are recorded (beside the data directory).
    fn identity_file(&self) -> PathBuf {
        self.data_dir.with_extension("identity")
    }
}

/// Stops etcd processes still running on `data_dir`: a control plane killed outright (SIGKILL,
/// a crash) cannot stop its etcd, which then holds the ports and the data the next start needs.
/// They are this state directory's own member (etcd locks its data directory, so no one else's
/// can run on it); nothing else is touched.
async fn stop_orphans(data_dir: &Path, addresses: &[SocketAddr]) {
    let orphans = etcds_on(data_dir);
    if orphans.is_empty() {
        return;
    }
    tracing::warn!(
        ?orphans,
        data_dir = %data_dir.display(),
        "stopping etcd left running on this data directory by an earlier control plane"
    );
    for &pid in &orphans {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
    // Until its ports are free, bounded. Not until the process is a zombie: the thread group
    // leader turns zombie while its other threads may still be exiting, and the last of them
    // closes the sockets (a restart right after failed to bind now and then).
    for _ in 0..50 {
        let ports_free = addresses
            .iter()
            .all(|&address| TcpListener::bind(address).is_ok());
        if ports_free && orphans.iter().all(|&pid| !running(pid)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The etcd processes whose `--data-dir` is `data_dir`: the same directory, not only the same
/// path, since an etcd in another mount namespace (a container, or another control plane
/// "machine" of the test bed) may use the path for a directory of its own.
fn etcds_on(data_dir: &Path) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let Ok(ours) = std::fs::metadata(data_dir) else {
        return Vec::new();
    };
    // The directory as process `pid` sees the path `arg` (relative to its working directory).
    let same_dir = |pid: i32, arg: &[u8]| {
        let arg = Path::new(std::ffi::OsStr::from_bytes(arg));
        let seen = match arg.strip_prefix("/") {
            Ok(relative) => PathBuf::from(format!("/proc/{pid}/root")).join(relative),
            Err(_) => PathBuf::from(format!("/proc/{pid}/cwd")).join(arg),
        };
        std::fs::metadata(seen)
            .is_ok_and(|theirs| theirs.dev() == ours.dev() && theirs.ino() == ours.ino())
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
            let is_etcd = args
                .first()
                .is_some_and(|program| program.ends_with(b"/etcd") || *program == b"etcd");
            let on_dir = args
                .windows(2)
                .any(|pair| pair[0] == b"--data-dir" && same_dir(pid, pair[1]));
            is_etcd && on_dir && running(pid)
        })
        .collect()
}

/// Whether `pid` exists and is not a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// Fails when `address` cannot be bound.
fn ensure_free(address: SocketAddr, role: &'static str) -> Result<(), EtcdError> {
    match TcpListener::bind(address) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            Err(EtcdError::PortTaken { address, role })
        }
        Err(source) => Err(EtcdError::Io {
            action: "binding",
            path: PathBuf::from(address.to_string()),
            source,
        }),
    }
}

/// `cluster=<hex>` and `member=<hex>` lines.
fn parse_identity(text: &str) -> Option<(u64, u64)> {
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
    };
    Some((value("cluster")?, value("member")?))
}

fn record_identity(path: &Path, cluster: u64, member: u64) -> Result<(), EtcdError> {
    // Written to a temporary file and renamed, so a crash never leaves half an identity.
    let temporary = path.with_extension("identity.tmp");
    std::fs::write(
        &temporary,
        format!("cluster={cluster:x}\nmember={member:x}\n"),
    )
    .and_then(|()| std::fs::rename(&temporary, path))
    .map_err(|source| EtcdError::Io {
        action: "recording etcd's identity in",
        path: path.to_owned(),
        source,
    })
}

/// A running etcd member; killed when dropped.
#[derive(Debug)]
pub struct EtcdProcess {
    child: Child,
    config: EtcdConfig,
    log: PathBuf,
}

impl EtcdProcess {
    /// Starts etcd and waits (up to `timeout`) until it serves requests.
    pub async fn start(config: EtcdConfig, timeout: Duration) -> Result<(Self, Store), EtcdError> {
        config.check()?;
        let etcd = which::which("etcd").map_err(|_| EtcdError::NotInstalled)?;
        // A taken port would let the connection below reach someone else's etcd (ours would
        // fail to bind and exit, but not before the other one answered).
        let client = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, config.client_port));
        let peer = SocketAddr::new(config.member.peer_ip, config.peer_port);
        stop_orphans(&config.data_dir, &[client, peer]).await;
        ensure_free(client, "client")?;
        ensure_free(peer, "peer")?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| EtcdError::Io {
            action: "creating",
            path: config.data_dir.clone(),
            source,
        })?;
        let log = config.data_dir.with_extension("log");
        let log_file = std::fs::File::create(&log).map_err(|source| EtcdError::Io {
            action: "creating",
            path: log.clone(),
            source,
        })?;
        let peer_url = config.peer_url();
        let mut command = Command::new(etcd);
        command
            .arg(format!("--name={}", config.member.name))
            .arg("--data-dir")
            .arg(&config.data_dir)
            .arg(format!("--listen-client-urls={}", config.client_url()))
            .arg(format!("--advertise-client-urls={}", config.client_url()))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster={}", config.initial_cluster()))
            .arg(format!(
                "--initial-cluster-token={}",
                config.member.cluster_token
            ));
        if let Some((cert, key, ca)) = &config.member.peer_tls {
            command
                .arg("--peer-cert-file")
                .arg(cert)
                .arg("--peer-key-file")
                .arg(key)
                .arg("--peer-trusted-ca-file")
                .arg(ca)
                .arg("--peer-client-cert-auth");
        }
        let child = command
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| EtcdError::Io {
                action: "starting",
                path: PathBuf::from("etcd"),
                source,
            })?;
        let mut process = Self { child, config, log };
        let endpoints = [process.config.client_url()];
        let store = tokio::select! {
            store = Store::connect(&endpoints, timeout) => store.map_err(|source| EtcdError::Unhealthy {
                timeout,
                source,
                log: process.log.clone(),
            })?,
            status = process.child.wait() => {
                let log = process.log.clone();
                return Err(match status {
                    Ok(status) => EtcdError::Exited { status, log },
                    Err(source) => EtcdError::Io { action: "waiting for", path: PathBuf::from("etcd"), source },
                });
            }
        };
        process.check_identity(&store).await?;
        if let Ok(Some(status)) = process.child.try_wait() {
            return Err(EtcdError::Exited {
                status,
                log: process.log.clone(),
            });
        }
        Ok((process, store))
    }

    /// Checks that `store` talks to the member this data directory created: its cluster and
    /// member ID are recorded beside the data directory on the first start and compared on
    /// every later one (restarts by the supervisor included).
    async fn check_identity(&self, store: &Store) -> Result<(), EtcdError> {
        let (found_cluster, found_member) =
            store.member_identity().await.map_err(EtcdError::Identity)?;
        let path = self.config.identity_file();
        match std::fs::read_to_string(&path) {
            Ok(recorded) => match parse_identity(&recorded) {
                Some((cluster, member)) if (cluster, member) == (found_cluster, found_member) => {
                    Ok(())
                }
                Some((cluster, member)) => Err(EtcdError::Foreign {
                    port: self.config.client_port,
                    identity: path,
                    cluster,
                    member,
                    found_cluster,
                    found_member,
                }),
                // A torn write (a crash while recording): record again.
                None => record_identity(&path, found_cluster, found_member),
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                record_identity(&path, found_cluster, found_member)
            }
            Err(source) => Err(EtcdError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }

    /// The member's configuration.
    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// Keeps the member running: restarts it (same data, same ports) whenever it exits, with a
    /// growing pause between attempts, until `stop` fires (or its sender is dropped). Then it
    /// kills etcd and returns only once the process is gone, so its ports are free: aborting
    /// the task instead would leave the kill to the runtime and a restart could find the ports
    /// still held.
    pub async fn supervise(mut self, mut stop: oneshot::Receiver<()>) {
        let mut pause = Duration::from_millis(500);
        loop {
            tokio::select! {
                _ = &mut stop => {
                    self.stop().await;
                    return;
                }
                status = self.child.wait() => match status {
                    Ok(status) => {
                        tracing::error!(%status, log = %self.log.display(), "etcd exited; restarting it");
                    }
                    Err(err) => tracing::error!("waiting for etcd failed: {err}; restarting it"),
                },
            }
            tokio::select! {
                _ = &mut stop => return,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(30));
            let restarted = tokio::select! {
                // A start cut short drops its child, which kills it (kill_on_drop).
                _ = &mut stop => return,
                restarted = Self::start(self.config.clone(), Duration::from_secs(30)) => restarted,
            };
            match restarted {
                Ok((process, _store)) => {
                    self = process;
                    pause = Duration::from_millis(500);
                    tracing::info!("etcd is back");
                }
                Err(err) => tracing::error!("restarting etcd failed: {err}"),
            }
        }
    }

    /// Stops the member (SIGKILL; etcd's WAL makes that safe) and waits until it has exited.
    pub async fn stop(mut self) {
        // `kill` also reaps the process; an error means it had exited already.
        let _ = self.child.kill().await;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for tests and benchmarks that start
/// control planes side by side. It comes from 20000-29999, below the kernel's ephemeral range
/// (32768-60999 here): a port the kernel handed out (`bind :0`) could be taken by any outgoing
/// connection before the caller binds it, which made a parallel test's etcd fail to start. This
/// process never hands out a port twice, and processes start at different places in the range.
pub fn free_port() -> Result<u16, EtcdError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 10_000;
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    for _ in 0..SPAN {
        let offset = (start + HANDED_OUT.fetch_add(1, Ordering::Relaxed)) % SPAN;
        let Ok(port) = u16::try_from(FIRST + offset) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(EtcdError::Io {
        action: "finding a free port on",
        path: PathBuf::from("127.0.0.1"),
        source: std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "every port of 20000-29999 is in use",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_recorded_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.identity");
        record_identity(&path, 0xdead_beef, 0x1234).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(parse_identity(&text), Some((0xdead_beef, 0x1234)));
        assert_eq!(
            parse_identity("cluster=12\n"),
            None,
            "half an identity is none"
        );
        assert_eq!(parse_identity("cluster=zz\nmember=1\n"), None);
    }
}
