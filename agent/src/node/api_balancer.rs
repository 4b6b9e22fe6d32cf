//! The agent's load balancer in front of the API servers, as k3s's agent runs one: the agent
//! talks to `https://127.0.0.1:<port>`, and each connection is passed on, as TCP (TLS goes end to
//! end), to one of the cluster's API servers: the server in the agent's kubeconfig and every
//! address of the `kubernetes` Service's Endpoints, which list the live API servers (each
//! control plane keeps itself in them). Connections go to the current server while it accepts
//! them; one that refuses or does not answer within [`CONNECT_TIMEOUT`] is passed over for
//! [`SKIP_FOR`] and the next one is tried, so the agent keeps working when a control plane dies.
//!
//! The servers learned from the Endpoints are kept in a file ([`ApiBalancer::remember_in`]), as
//! k3s keeps its agent load balancer's, so an agent that starts while the kubeconfig's server is
//! down still reaches the others.
//!
//! `flotilla-agent api-balancer` runs one on its own, with a fixed list of servers, for an
//! address that outlives any one control plane (the admin's kubeconfig, the nodes' join
//! address), where kubeadm's docs put an external load balancer such as HAProxy.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Endpoints;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio::net::{TcpListener, TcpStream};

/// How long a server gets to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a server that failed is passed over (unless every server failed).
pub const SKIP_FOR: Duration = Duration::from_secs(15);

/// The servers and what is known of them.
#[derive(Debug)]
struct Servers {
    /// The servers it was given (the kubeconfig's): always kept, the others come and go with
    /// the Endpoints.
    configured: Vec<SocketAddr>,
    /// Every server, the configured ones first, then the Endpoints' in their order.
    list: Vec<SocketAddr>,
    /// The server new connections go to first.
    current: SocketAddr,
    /// Servers that failed, until when they are passed over.
    failed: HashMap<SocketAddr, Instant>,
}

impl Servers {
    /// The order to try the servers in: the current one, the others in list order, and those
    /// that failed recently last.
    fn order(&self, now: Instant) -> Vec<SocketAddr> {
        let failed =
            |server: &SocketAddr| self.failed.get(server).is_some_and(|until| *until > now);
        let start = self
            .list
            .iter()
            .position(|server| *server == self.current)
            .unwrap_or(0);
        let rotated = self.list[start..].iter().chain(&self.list[..start]);
        let (bad, good): (Vec<SocketAddr>, Vec<SocketAddr>) = rotated.partition(|s| failed(s));
        good.into_iter().chain(bad).collect()
    }

    /// Adds servers known from before (a file) after the configured ones, until the Endpoints
    /// say which run.
    fn seed(&mut self, known: Vec<SocketAddr>) {
        for server in known {
            if !self.list.contains(&server) {
                self.list.push(server);
            }
        }
    }

    fn set(&mut self, endpoints: Vec<SocketAddr>) {
        let mut list = self.configured.clone();
        list.extend(
            endpoints
                .into_iter()
                .filter(|server| !self.configured.contains(server)),
        );
        if !list.contains(&self.current) {
            self.current = list[0];
        }
        self.failed.retain(|server, _| list.contains(server));
        self.list = list;
    }
}

/// A running balancer; its tasks (accepting, following the Endpoints) end when it is dropped.
#[derive(Debug)]
pub struct ApiBalancer {
    address: SocketAddr,
    servers: Arc<Mutex<Servers>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Where the servers are remembered across restarts, and what the file lists.
    state: Option<(PathBuf, Vec<SocketAddr>)>,
}

impl Drop for ApiBalancer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ApiBalancer {
    /// Listens on `listen` (port 0 picks one) and passes connections to the `configured`
    /// servers (at least one; the first is tried first) and, later, to the servers
    /// [`Self::follow_endpoints`] finds.
    pub async fn start(listen: SocketAddr, configured: Vec<SocketAddr>) -> std::io::Result<Self> {
        let Some(first) = configured.first().copied() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the API balancer needs at least one server",
            ));
        };
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let servers = Arc::new(Mutex::new(Servers {
            list: configured.clone(),
            configured,
            current: first,
            failed: HashMap::new(),
        }));
        let task = tokio::spawn(serve(listener, servers.clone()));
        Ok(Self {
            address,
            servers,
            tasks: vec![task],
            state: None,
        })
    }

    /// Also tries the servers `file` lists (what an earlier run learned), and keeps the file
    /// equal to what [`Self::follow_endpoints`] learns. A missing or unreadable file is no
    /// error: the Endpoints fill the list as soon as any server answers.
    pub fn remember_in(&mut self, file: PathBuf) {
        let known = std::fs::read_to_string(&file)
            .map(|text| parse_state(&text))
            .unwrap_or_default();
        if !known.is_empty() {
            tracing::info!(servers = ?known, file = %file.display(), "the API servers an earlier run knew");
        }
        lock(&self.servers).seed(known.clone());
        self.state = Some((file, known));
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The servers connections may go to, the current one first.
    pub fn servers(&self) -> Vec<SocketAddr> {
        lock(&self.servers).order(Instant::now())
    }

    /// Keeps the servers equal to the `kubernetes` Service's Endpoints (plus the configured
    /// servers) until dropped; `client` connects through this balancer.
    pub fn follow_endpoints(&mut self, client: Client) {
        let servers = self.servers.clone();
        let mut state = self.state.clone();
        self.tasks.push(tokio::spawn(async move {
            let endpoints: Api<Endpoints> = Api::namespaced(client, "default");
            let config = watcher::Config::default().fields("metadata.name=kubernetes");
            let mut changes = std::pin::pin!(
                watcher(endpoints, config)
                    .default_backoff()
                    .applied_objects()
            );
            while let Some(change) = changes.next().await {
                match change {
                    Ok(object) => {
                        let found = api_servers(&object);
                        tracing::info!(servers = ?found, "the API servers, from the kubernetes Endpoints");
                        let list = {
                            let mut servers = lock(&servers);
                            servers.set(found);
                            servers.list.clone()
                        };
                        if let Some((file, saved)) = &mut state
                            && *saved != list
                        {
                            save_state(file, &list);
                            *saved = list;
                        }
                    }
                    // Without the Endpoints the agent knows only the kubeconfig's server.
                    Err(err) => tracing::warn!("watching the kubernetes Endpoints: {err}"),
                }
            }
        }));
    }
}

/// The API servers an Endpoints object lists (the `https` port, or the only one).
fn api_servers(endpoints: &Endpoints) -> Vec<SocketAddr> {
    let mut servers = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let port = ports
            .iter()
            .find(|port| port.name.as_deref() == Some("https"))
            .or(ports.first())
            .and_then(|port| u16::try_from(port.port).ok());
        let Some(port) = port else {
            continue;
        };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<std::net::IpAddr>() {
                servers.push(SocketAddr::new(ip, port));
            }
        }
    }
    servers
}

/// The servers a state file lists: one `IP:PORT` per line; `#` comments.
fn parse_state(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.parse().ok())
        .collect()
}

/// Writes the servers to `file` whole (a temporary file renamed over it); a failure is logged,
/// as the list is only a hint for the next start.
fn save_state(file: &Path, servers: &[SocketAddr]) {
    let mut text =
        String::from("# The API servers this node's agent knows (from the kubernetes Endpoints)\n");
    for server in servers {
        text.push_str(&format!("{server}\n"));
    }
    let temporary = file.with_extension("tmp");
    let written = std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, file));
    if let Err(err) = written {
        tracing::warn!(file = %file.display(), "could not remember the API servers: {err}");
    }
}

fn lock(servers: &Mutex<Servers>) -> std::sync::MutexGuard<'_, Servers> {
    // A panic while holding the lock cannot leave the list half-written (every change is
    // one assignment), so a poisoned lock is still good.
    servers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn serve(listener: TcpListener, servers: Arc<Mutex<Servers>>) {
    loop {
        match listener.accept().await {
            Ok((inbound, _)) => {
                tokio::spawn(pass_on(inbound, servers.clone()));
            }
            Err(err) => {
                tracing::warn!("the API balancer could not accept a connection: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Connects `inbound` to the first server that accepts, and copies both ways until either
/// side closes.
async fn pass_on(mut inbound: TcpStream, servers: Arc<Mutex<Servers>>) {
    let order = lock(&servers).order(Instant::now());
    for server in order {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(server)).await {
            Ok(Ok(mut outbound)) => {
                {
                    let mut servers = lock(&servers);
                    servers.failed.remove(&server);
                    if servers.current != server {
                        tracing::info!(%server, "the API balancer now uses {server}");
                        servers.current = server;
                    }
                }
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                return;
            }
            Ok(Err(err)) => {
                tracing::warn!(%server, "the API server {server} refused a connection: {err}");
            }
            Err(_) => {
                tracing::warn!(%server, "the API server {server} did not answer within {CONNECT_TIMEOUT:?}");
            }
        }
        lock(&servers)
            .failed
            .insert(server, Instant::now() + SKIP_FOR);
    }
    tracing::warn!("no API server accepted a connection; it was closed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_current_server_comes_first_and_failed_ones_last() {
        let configured = address("192.168.78.2:6443");
        let mut servers = Servers {
            configured: vec![configured],
            list: vec![configured],
            current: configured,
            failed: HashMap::new(),
        };
        servers.set(vec![
            address("192.168.78.3:6443"),
            configured,
            address("192.168.78.4:6443"),
        ]);
        let now = Instant::now();
        assert_eq!(
            servers.order(now),
            [
                configured,
                address("192.168.78.3:6443"),
                address("192.168.78.4:6443")
            ]
        );
        servers.current = address("192.168.78.3:6443");
        servers
            .failed
            .insert(address("192.168.78.4:6443"), now + SKIP_FOR);
        assert_eq!(
            servers.order(now),
            [
                address("192.168.78.3:6443"),
                configured,
                address("192.168.78.4:6443")
            ]
        );
        // Once the pause is over it is tried in its turn again.
        assert_eq!(
            servers.order(now + SKIP_FOR + Duration::from_secs(1))[1],
            address("192.168.78.4:6443")
        );
        // Gone from the Endpoints: no longer tried; the configured server always stays.
        servers.set(vec![]);
        assert_eq!(servers.order(now), [configured]);
    }

    #[test]
    fn remembered_servers_are_tried_until_the_endpoints_are_known() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("api-servers");
        let (one, two, three) = (
            address("192.168.78.2:6443"),
            address("192.168.78.3:6443"),
            address("192.168.78.4:6443"),
        );
        save_state(&file, &[one, two, three]);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(parse_state(&text), [one, two, three]);
        assert_eq!(
            parse_state("# x\nnot an address\n\n192.168.78.3:6443\n"),
            [two]
        );

        let mut servers = Servers {
            configured: vec![one],
            list: vec![one],
            current: one,
            failed: HashMap::new(),
        };
        servers.seed(parse_state(&text));
        assert_eq!(servers.order(Instant::now()), [one, two, three]);
        // The Endpoints decide once they are read.
        servers.set(vec![three]);
        assert_eq!(servers.order(Instant::now()), [one, three]);
    }

    #[test]
    fn servers_come_from_the_endpoints_https_port() {
        let endpoints: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{
                "addresses": [{"ip": "192.168.78.2"}, {"ip": "192.168.78.3"}],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            }],
        }))
        .unwrap();
        assert_eq!(
            api_servers(&endpoints),
            [address("192.168.78.2:6443"), address("192.168.78.3:6443")]
        );
        assert!(api_servers(&Endpoints::default()).is_empty());
    }
}
