//! The CRI client: containerd's RuntimeService and ImageService (CRI v1) over its unix socket.

use std::{path::Path, time::Duration};

use hyper_util::rt::TokioIo;
pub use k8s_cri::v1 as api;
use k8s_cri::v1::{
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// How long one CRI call may take before it is abandoned (image pulls have their own, longer one).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A failed CRI call: what was being done and containerd's answer.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The socket could not be reached.
    #[error("cannot reach containerd at {socket}: {source}; is containerd running for this node?")]
    Connect {
        /// The socket path.
        socket: String,
        /// The transport error.
        #[source]
        source: tonic::transport::Error,
    },
    /// containerd answered with an error.
    #[error("{action}: {}", .status.message())]
    Call {
        /// What was being done, e.g. "creating container web of pod default/p".
        action: String,
        /// containerd's status.
        status: Box<tonic::Status>,
    },
}

impl CriError {
    /// The gRPC code of a failed call (`Unavailable` when the socket could not be reached).
    pub fn code(&self) -> tonic::Code {
        match self {
            Self::Connect { .. } => tonic::Code::Unavailable,
            Self::Call { status, .. } => status.code(),
        }
    }

    /// containerd's message without our context.
    pub fn message(&self) -> String {
        match self {
            Self::Connect { source, .. } => source.to_string(),
            Self::Call { status, .. } => status.message().to_owned(),
        }
    }
}

/// Clients of one containerd's CRI services; cheap to clone.
#[derive(Clone, Debug)]
pub struct Cri {
    /// RuntimeService: sandboxes, containers, exec, status.
    pub runtime: RuntimeServiceClient<Channel>,
    /// ImageService: pull, status, list.
    pub images: ImageServiceClient<Channel>,
}

impl Cri {
    /// Connects to the containerd socket at `socket` (the connection is made lazily and again
    /// after containerd restarts).
    pub fn connect(socket: &Path) -> Result<Self, CriError> {
        let path = socket.to_path_buf();
        // The URI is required by tonic but unused: every connection goes to the socket.
        let channel = Endpoint::from_static("http://localhost")
            .timeout(CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }));
        Ok(Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// Runtime name and version, which also proves the socket answers.
    pub async fn version(&self) -> Result<api::VersionResponse, CriError> {
        self.runtime
            .clone()
            .version(api::VersionRequest {
                version: "v1".into(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| call("asking containerd for its version", status))
    }

    /// The ids of every pod sandbox containerd has, in any state.
    pub async fn sandbox_ids(&self) -> Result<std::collections::BTreeSet<String>, CriError> {
        Ok(self
            .all_sandboxes()
            .await?
            .into_iter()
            .map(|sandbox| sandbox.id)
            .collect())
    }

    async fn all_sandboxes(&self) -> Result<Vec<api::PodSandbox>, CriError> {
        Ok(self
            .runtime
            .clone()
            .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
            .await
            .map_err(|status| call("listing pod sandboxes", status))?
            .into_inner()
            .items)
    }

    /// Stops and removes every pod sandbox (with its containers) this containerd knows, so CNI
    /// releases the pods' addresses and their network namespaces go away; for taking a node
    /// apart. Returns the names (`namespace/pod`) of the sandboxes removed. A sandbox that fails
    /// to stop is still removed if containerd allows it; the first failure is returned after
    /// every sandbox was tried.
    pub async fn remove_all_sandboxes(&self) -> Result<Vec<String>, CriError> {
        let sandboxes = self.all_sandboxes().await?;
        let mut removed = Vec::new();
        let mut first_error = None;
        for sandbox in sandboxes {
            let name = sandbox.metadata.as_ref().map_or_else(
                || sandbox.id.clone(),
                |meta| format!("{}/{}", meta.namespace, meta.name),
            );
            // Stopping first tears the network down (CNI DEL) while the sandbox still exists.
            let stopped = self
                .runtime
                .clone()
                .stop_pod_sandbox(api::StopPodSandboxRequest {
                    pod_sandbox_id: sandbox.id.clone(),
                })
                .await
                .map_err(|status| call(format!("stopping the sandbox of {name}"), status));
            let result = self
                .runtime
                .clone()
                .remove_pod_sandbox(api::RemovePodSandboxRequest {
                    pod_sandbox_id: sandbox.id.clone(),
                })
                .await
                .map_err(|status| call(format!("removing the sandbox of {name}"), status));
            match stopped.and(result) {
                Ok(_) => removed.push(name),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(removed), Err)
    }
}

/// Wraps a failed call's status with what was being done.
pub fn call(action: impl Into<String>, status: tonic::Status) -> CriError {
    CriError::Call {
        action: action.into(),
        status: Box::new(status),
    }
}
