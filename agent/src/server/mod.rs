//! The agent's kubelet API: HTTPS with client certificates from the cluster CA, serving what the
//! API server proxies to nodes (`/containerLogs`, `/exec`, `/attach`, `/portForward`, `/healthz`).

/// Why a container could not be found for a kubelet API request. The messages are kubelet's, as
/// `kubectl logs` and `kubectl exec` users know them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// No pod of that name runs on this node.
    #[error("pod {namespace}/{pod} not found on this node")]
    PodNotFound {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
    },
    /// The pod has no container of that name.
    #[error("container {container} is not valid for pod {pod}")]
    ContainerNotFound {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
    },
    /// The container has not been created yet.
    #[error("container \"{container}\" in pod \"{pod}\" is waiting to start: {reason}")]
    Waiting {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
        /// Why it waits, e.g. ContainerCreating, ImagePullBackOff.
        reason: String,
    },
    /// `--previous` was asked for but the container has not terminated before.
    #[error("previous terminated container \"{container}\" in pod \"{pod}\" not found")]
    NoPrevious {
        /// Pod name.
        pod: String,
        /// Container name.
        container: String,
    },
}

/// Maps kubelet API paths to CRI ids; the pod manager implements it from its pod table.
pub trait ContainerLocator: Send + Sync + 'static {
    /// The CRI id of the container's current instance, or with `previous` of the last terminated
    /// one.
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<String, LocateError>;

    /// The CRI id of the pod's sandbox (for port-forward).
    fn sandbox(&self, namespace: &str, pod: &str) -> Result<String, LocateError>;
}
