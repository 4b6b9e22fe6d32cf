//! The node agent's CNI backend (agent/proto/cni.proto): a trait for the command logic, and the
//! tonic client over the agent's unix socket that implements it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use hyper_util::rt::TokioIo;
use tokio::sync::OnceCell;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{CniError, code};

/// The generated messages, client and server of `flotilla.cni.v1` (the server half is there for
/// test doubles of the agent; the agent builds its own from the same file).
#[allow(
    clippy::all,
    clippy::pedantic,
    unreachable_pub,
    missing_docs,
    reason = "generated code"
)]
pub mod proto {
    tonic::include_proto!("flotilla.cni.v1");
}

use proto::cni_backend_client::CniBackendClient;

/// How long connecting to the agent's socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one call may take: ADD must end even if the agent hangs.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A call to the agent failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The socket could not be reached (no file, nobody listening, connect timed out).
    #[error("cannot reach the flotilla agent at {}: {reason}", .socket.display())]
    Unreachable {
        /// The socket path.
        socket: PathBuf,
        /// Why.
        reason: String,
    },
    /// The agent answered with an error status.
    #[error("the flotilla agent refused {call}: {code:?}: {message}")]
    Rejected {
        /// The RPC, e.g. "Allocate".
        call: &'static str,
        /// The gRPC status code.
        code: tonic::Code,
        /// The agent's message.
        message: String,
    },
}

impl AgentError {
    /// Whether retrying later may succeed: the agent is down, restarting or not ready yet.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Rejected { code, .. } => {
                matches!(
                    code,
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                )
            }
        }
    }

    /// The gRPC code (`Unavailable` when the socket was unreachable).
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::Unreachable { .. } => tonic::Code::Unavailable,
            Self::Rejected { code, .. } => *code,
        }
    }

    /// The CNI error for a failed call during `action` (e.g. "allocating an address"): 11 when
    /// retrying may help, 102 when the pool is exhausted, 100 otherwise.
    pub fn into_cni(self, action: &str) -> CniError {
        let msg = format!("{action}: {self}");
        if self.is_unavailable() {
            CniError::new(
                code::TRY_AGAIN_LATER,
                msg,
                "the flotilla agent on this node is not running or not ready yet; retry later (check the agent's logs and that agentSocket points at its CNI socket)",
            )
        } else if self.code() == tonic::Code::ResourceExhausted {
            CniError::new(
                code::POOL_EXHAUSTED,
                msg,
                "the node's podCIDR has no free address left; delete pods on this node or give the node a larger podCIDR",
            )
        } else {
            CniError::new(
                code::AGENT_ERROR,
                msg,
                "see the flotilla agent's logs on this node for why it refused",
            )
        }
    }
}

/// The agent's CNI backend, as the command logic needs it.
#[allow(
    async_fn_in_trait,
    reason = "the plugin runs on a current-thread runtime; futures need not be Send"
)]
pub trait Agent {
    /// Reserves (or returns the already reserved) address of an attachment.
    async fn allocate(
        &self,
        request: proto::AllocateRequest,
    ) -> Result<proto::AllocateResponse, AgentError>;
    /// Puts the endpoint into the datapath.
    async fn register_endpoint(
        &self,
        request: proto::RegisterEndpointRequest,
    ) -> Result<(), AgentError>;
    /// Removes the endpoint and frees its address; succeeds for unknown attachments.
    async fn release(
        &self,
        attachment: proto::Attachment,
    ) -> Result<proto::ReleaseResponse, AgentError>;
    /// Verifies the agent's record of an attachment.
    async fn check(&self, request: proto::CheckRequest) -> Result<(), AgentError>;
    /// Whether the agent can serve ADD.
    async fn status(&self) -> Result<proto::StatusResponse, AgentError>;
    /// Releases every attachment not in `valid`; returns those it released.
    async fn gc(&self, valid: Vec<proto::Attachment>)
    -> Result<Vec<proto::Attachment>, AgentError>;
}

/// The agent reached over its unix socket. Connects on the first call, so commands that fail
/// validation never touch the socket.
#[derive(Debug)]
pub struct GrpcAgent {
    socket: PathBuf,
    client: OnceCell<CniBackendClient<Channel>>,
}

impl GrpcAgent {
    /// A client of the agent listening on `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> Result<CniBackendClient<Channel>, AgentError> {
        self.client
            .get_or_try_init(|| connect(&self.socket))
            .await
            .cloned()
    }

    fn rejected(call: &'static str) -> impl FnOnce(tonic::Status) -> AgentError {
        move |status| AgentError::Rejected {
            call,
            code: status.code(),
            message: status.message().to_owned(),
        }
    }
}

/// Connects eagerly, so an absent agent is reported as unreachable rather than as a failed call.
async fn connect(socket: &Path) -> Result<CniBackendClient<Channel>, AgentError> {
    let unreachable = |reason: String| AgentError::Unreachable {
        socket: socket.to_path_buf(),
        reason,
    };
    if !socket.exists() {
        return Err(unreachable("the socket does not exist".into()));
    }
    let path = socket.to_path_buf();
    // The URI is required by tonic but unused: every connection goes to the socket.
    let channel = Endpoint::from_static("http://localhost")
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|err| {
            // The transport error's own text is generic; its source says what happened.
            let mut reason = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                reason = format!("{reason}: {cause}");
                source = cause.source();
            }
            unreachable(reason)
        })?;
    Ok(CniBackendClient::new(channel))
}

impl Agent for GrpcAgent {
    async fn allocate(
        &self,
        request: proto::AllocateRequest,
    ) -> Result<proto::AllocateResponse, AgentError> {
        self.client()
            .await?
            .allocate(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(Self::rejected("Allocate"))
    }

    async fn register_endpoint(
        &self,
        request: proto::RegisterEndpointRequest,
    ) -> Result<(), AgentError> {
        self.client()
            .await?
            .register_endpoint(request)
            .await
            .map(drop)
            .map_err(Self::rejected("RegisterEndpoint"))
    }

    async fn release(
        &self,
        attachment: proto::Attachment,
    ) -> Result<proto::ReleaseResponse, AgentError> {
        self.client()
            .await?
            .release(proto::ReleaseRequest {
                attachment: Some(attachment),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(Self::rejected("Release"))
    }

    async fn check(&self, request: proto::CheckRequest) -> Result<(), AgentError> {
        self.client()
            .await?
            .check(request)
            .await
            .map(drop)
            .map_err(Self::rejected("Check"))
    }

    async fn status(&self) -> Result<proto::StatusResponse, AgentError> {
        self.client()
            .await?
            .status(proto::StatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(Self::rejected("Status"))
    }

    async fn gc(
        &self,
        valid: Vec<proto::Attachment>,
    ) -> Result<Vec<proto::Attachment>, AgentError> {
        self.client()
            .await?
            .gc(proto::GcRequest { valid })
            .await
            .map(|response| response.into_inner().released)
            .map_err(Self::rejected("Gc"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(code: tonic::Code) -> AgentError {
        AgentError::Rejected {
            call: "Allocate",
            code,
            message: "why".into(),
        }
    }

    #[test]
    fn errors_map_to_cni_codes() {
        let unreachable = AgentError::Unreachable {
            socket: "/run/x.sock".into(),
            reason: "no such file".into(),
        };
        let err = unreachable.into_cni("allocating");
        assert_eq!(err.code, code::TRY_AGAIN_LATER);
        assert!(err.msg.contains("/run/x.sock"), "{err}");
        assert_eq!(
            rejected(tonic::Code::Unavailable).into_cni("a").code,
            code::TRY_AGAIN_LATER
        );
        assert_eq!(
            rejected(tonic::Code::ResourceExhausted).into_cni("a").code,
            code::POOL_EXHAUSTED
        );
        let err = rejected(tonic::Code::InvalidArgument).into_cni("allocating");
        assert_eq!(err.code, code::AGENT_ERROR);
        assert!(
            err.msg.contains("why") && err.msg.contains("Allocate"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_socket_is_unreachable() {
        let agent = GrpcAgent::new(Path::new("/nonexistent/flotilla-cni-test.sock"));
        let err = agent.status().await.unwrap_err();
        assert!(matches!(err, AgentError::Unreachable { .. }), "{err}");
    }
}
