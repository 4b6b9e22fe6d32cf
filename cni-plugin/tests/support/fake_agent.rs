//! `FakeAgent`: a TEST DOUBLE of the node agent's CNI backend (agent/proto/cni.proto), serving
//! the real gRPC protocol on a unix socket with an in-memory address pool, so the plugin's spec
//! tests can drive the real binary through ADD, CHECK, DEL, GC and STATUS. It is not the agent:
//! the real server (agent/src/cni_api/) is covered by the agent's own tests and the end-to-end
//! tests in tests/. Unlike the real agent it does not delete host veths on GC, so the GC test
//! also shows the plugin's own cleanup.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, mpsc},
    thread::JoinHandle,
    time::Duration,
};

use flotilla_cni::agent::proto::{
    self,
    cni_backend_server::{CniBackend, CniBackendServer},
};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// An attachment key: (container id, ifname).
pub(crate) type Key = (String, String);

/// What the fake agent knows; tests read and change it.
#[derive(Debug, Default)]
pub(crate) struct AgentState {
    /// Allocated addresses.
    pub(crate) pool: BTreeMap<Key, Ipv4Addr>,
    /// Registered endpoints.
    pub(crate) registered: BTreeMap<Key, proto::RegisterEndpointRequest>,
    /// STATUS answers not ready with this message.
    pub(crate) not_ready: Option<String>,
    /// RegisterEndpoint fails with FAILED_PRECONDITION.
    pub(crate) fail_register: bool,
    /// Every RPC received, by name.
    pub(crate) calls: Vec<String>,
}

fn key(attachment: Option<&proto::Attachment>) -> Result<Key, Status> {
    let attachment = attachment.ok_or_else(|| Status::invalid_argument("no attachment"))?;
    if attachment.container_id.is_empty() || attachment.ifname.is_empty() {
        return Err(Status::invalid_argument("empty container id or ifname"));
    }
    Ok((attachment.container_id.clone(), attachment.ifname.clone()))
}

#[derive(Clone)]
struct Service(Arc<Mutex<AgentState>>);

impl Service {
    fn state(&self, call: &str) -> MutexGuard<'_, AgentState> {
        let mut state = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.calls.push(call.to_owned());
        state
    }
}

#[tonic::async_trait]
impl CniBackend for Service {
    async fn allocate(
        &self,
        request: Request<proto::AllocateRequest>,
    ) -> Result<Response<proto::AllocateResponse>, Status> {
        let key = key(request.get_ref().attachment.as_ref())?;
        let mut state = self.state("Allocate");
        let address = match state.pool.get(&key) {
            Some(address) => *address,
            None => {
                let used: Vec<Ipv4Addr> = state.pool.values().copied().collect();
                let address = (2..=254)
                    .map(|host| Ipv4Addr::new(10, 244, 1, host))
                    .find(|candidate| !used.contains(candidate))
                    .ok_or_else(|| Status::resource_exhausted("10.244.1.0/24 is full"))?;
                state.pool.insert(key, address);
                address
            }
        };
        Ok(Response::new(proto::AllocateResponse {
            address: address.to_string(),
            prefix_len: 32,
            gateway: "169.254.1.1".into(),
            mtu: 1450,
            pod_cidr: "10.244.1.0/24".into(),
        }))
    }

    async fn register_endpoint(
        &self,
        request: Request<proto::RegisterEndpointRequest>,
    ) -> Result<Response<proto::RegisterEndpointResponse>, Status> {
        let request = request.into_inner();
        let key = key(request.attachment.as_ref())?;
        let mut state = self.state("RegisterEndpoint");
        if state.fail_register {
            return Err(Status::failed_precondition(
                "injected: datapath refuses the endpoint",
            ));
        }
        if state.pool.get(&key).map(ToString::to_string) != Some(request.address.clone()) {
            return Err(Status::failed_precondition(
                "address was not allocated to the attachment",
            ));
        }
        state.registered.insert(key, request);
        Ok(Response::new(proto::RegisterEndpointResponse {}))
    }

    async fn release(
        &self,
        request: Request<proto::ReleaseRequest>,
    ) -> Result<Response<proto::ReleaseResponse>, Status> {
        let key = key(request.get_ref().attachment.as_ref())?;
        let mut state = self.state("Release");
        let registered = state.registered.remove(&key);
        let address = state.pool.remove(&key);
        Ok(Response::new(proto::ReleaseResponse {
            found: address.is_some(),
            address: address.map(|a| a.to_string()).unwrap_or_default(),
            host_ifname: registered.map(|r| r.host_ifname).unwrap_or_default(),
        }))
    }

    async fn check(
        &self,
        request: Request<proto::CheckRequest>,
    ) -> Result<Response<proto::CheckResponse>, Status> {
        let request = request.into_inner();
        let key = key(request.attachment.as_ref())?;
        let state = self.state("Check");
        match state.pool.get(&key) {
            None => Err(Status::not_found("unknown attachment")),
            Some(address) if address.to_string() != request.address => Err(
                Status::failed_precondition(format!("the attachment has {address}")),
            ),
            Some(_) if !state.registered.contains_key(&key) => Err(Status::failed_precondition(
                "not registered in the datapath",
            )),
            Some(_) => Ok(Response::new(proto::CheckResponse {})),
        }
    }

    async fn status(
        &self,
        _request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let state = self.state("Status");
        Ok(Response::new(proto::StatusResponse {
            ready: state.not_ready.is_none(),
            message: state.not_ready.clone().unwrap_or_default(),
        }))
    }

    async fn gc(
        &self,
        request: Request<proto::GcRequest>,
    ) -> Result<Response<proto::GcResponse>, Status> {
        let valid: Vec<Key> = request
            .get_ref()
            .valid
            .iter()
            .map(|a| key(Some(a)))
            .collect::<Result<_, _>>()?;
        let mut state = self.state("Gc");
        let stale: Vec<Key> = state
            .pool
            .keys()
            .filter(|key| !valid.contains(key))
            .cloned()
            .collect();
        for key in &stale {
            state.pool.remove(key);
            state.registered.remove(key);
        }
        Ok(Response::new(proto::GcResponse {
            released: stale
                .into_iter()
                .map(|(container_id, ifname)| proto::Attachment {
                    container_id,
                    ifname,
                })
                .collect(),
        }))
    }
}

/// A running fake agent; stops when dropped.
pub(crate) struct FakeAgent {
    socket: PathBuf,
    _dir: tempfile::TempDir,
    state: Arc<Mutex<AgentState>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeAgent {
    /// Serves on a fresh socket in a temporary directory, on its own thread and runtime.
    pub(crate) fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fcni-agent-")
            .tempdir()
            .expect("creating a temporary directory for the fake agent's socket");
        let socket = dir.path().join("cni.sock");
        let state = Arc::new(Mutex::new(AgentState::default()));
        let (shutdown, stop) = oneshot::channel::<()>();
        let (bound_tx, bound_rx) = mpsc::channel();
        let service = Service(Arc::clone(&state));
        let path = socket.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building the fake agent's runtime");
            runtime.block_on(async move {
                let listener = match tokio::net::UnixListener::bind(&path) {
                    Ok(listener) => listener,
                    Err(err) => {
                        let _ = bound_tx.send(Err(err.to_string()));
                        return;
                    }
                };
                let _ = bound_tx.send(Ok(()));
                let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
                let _ = tonic::transport::Server::builder()
                    .add_service(CniBackendServer::new(service))
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stop.await;
                    })
                    .await;
            });
        });
        bound_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the fake agent did not start within 10 s")
            .expect("binding the fake agent's socket");
        Self {
            socket,
            _dir: dir,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// The socket the plugin's `agentSocket` should name.
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }

    /// The agent's state, to inspect or change.
    pub(crate) fn state(&self) -> MutexGuard<'_, AgentState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for FakeAgent {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Bounded: the server stops once its connections close; do not hang a failing test.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}
