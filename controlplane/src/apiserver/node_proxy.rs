//! Reaching a pod's node agent: finding the pod's node and the agent's kubelet endpoint
//! (`https://<node InternalIP>:<kubeletEndpoint port>`), connecting with the API server's
//! kubelet-client certificate (the agent's certificate is verified against the cluster CA), and
//! turning the agent's error answers into Statuses. Shared by `pods/log` and the streaming
//! subresources (`pods/exec`, `pods/attach`, `pods/portforward`).

use std::{net::IpAddr, sync::Arc, time::Duration};

use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio_rustls::TlsConnector;

use super::{ApiServer, handlers::Scope, registry::core::node, status::ApiError};

/// The port node agents serve their kubelet API on unless the Node says otherwise.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the agent may take to answer a request's head (it asks containerd first, whose CRI
/// calls time out after 60 s); bodies and upgraded sessions are not bounded.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(75);

/// A pod and the agent of the node it is bound to.
#[derive(Debug)]
pub struct PodNode {
    /// The pod object.
    pub pod: Value,
    /// The pod's namespace.
    pub namespace: String,
    /// The node's name.
    pub node: String,
    /// The agent's address (the node's first InternalIP).
    pub address: IpAddr,
    /// The agent's kubelet API port.
    pub port: u16,
}

impl PodNode {
    /// The 503 for an agent that could not be reached while doing `what` (e.g. "the logs").
    pub fn unreachable(&self, name: &str, what: &str, err: &str) -> ApiError {
        ApiError::unavailable(format!(
            "cannot reach the agent of node {} at {}:{} for {what} of pod {name}: {err}",
            self.node, self.address, self.port
        ))
    }
}

impl ApiServer {
    /// Reads pod `name` and its node; 404 if the pod does not exist, 400 if it has no node yet.
    pub async fn pod_node(&self, scope: &Scope, name: &str) -> Result<PodNode, ApiError> {
        let pod = self.get_object(scope, name).await?.object;
        let namespace = scope.namespace.clone().unwrap_or_default();
        let node = pod["spec"]["nodeName"]
            .as_str()
            .filter(|node| !node.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!("pod {name} does not have a host assigned"))
            })?
            .to_owned();
        let nodes = &node::RESOURCE;
        let node_object = self
            .get_object(
                &Scope {
                    resource: nodes,
                    namespace: None,
                },
                &node,
            )
            .await?
            .object;
        let (address, port) = kubelet_endpoint(&node_object, &node)?;
        Ok(PodNode {
            pod,
            namespace,
            node,
            address,
            port,
        })
    }

    /// The client TLS configuration for node agents; 503 if this API server has none.
    pub fn kubelet_client(&self) -> Result<Arc<rustls::ClientConfig>, ApiError> {
        self.kubelet_tls.clone().ok_or_else(|| {
            ApiError::unavailable("this API server has no kubelet client certificate configured")
        })
    }
}

/// The container to address: the one asked for (which must exist), or the only one.
pub fn pick_container(
    pod: &Value,
    name: &str,
    requested: Option<&str>,
) -> Result<String, ApiError> {
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let containers = names("containers");
    let init = names("initContainers");
    let ephemeral = names("ephemeralContainers");
    match requested {
        Some(container) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|c| c == container)
            {
                Ok(container.to_owned())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {container} is not valid for pod {name}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// The node agent's address (first InternalIP) and port from a Node object.
pub fn kubelet_endpoint(node: &Value, name: &str) -> Result<(IpAddr, u16), ApiError> {
    let address = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "InternalIP")
        .find_map(|a| a["address"].as_str()?.parse::<IpAddr>().ok())
        .ok_or_else(|| {
            ApiError::unavailable(format!(
                "node {name} reports no InternalIP address; is its agent running?"
            ))
        })?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|port| u16::try_from(port).ok())
        .filter(|port| *port != 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((address, port))
}

/// Sends `request` (path and query only in its URI) to the agent at `address:port` over mTLS on
/// a fresh HTTP/1.1 connection that allows upgrades. Errors are text for a 503.
pub async fn send<B>(
    tls: Arc<rustls::ClientConfig>,
    address: IpAddr,
    port: u16,
    mut request: Request<B>,
) -> Result<Response<hyper::body::Incoming>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((address, port)),
    )
    .await
    .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
    .map_err(|err| err.to_string())?;
    let stream = TlsConnector::from(tls)
        .connect(ServerName::IpAddress(address.into()), stream)
        .await
        .map_err(|err| format!("TLS: {err}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| err.to_string())?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!("connection to the node agent ended: {err}");
        }
    });
    let host = match address {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    };
    let host = http::HeaderValue::from_str(&host).map_err(|err| err.to_string())?;
    request.headers_mut().insert(header::HOST, host);
    tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| format!("no answer within {RESPONSE_TIMEOUT:?}"))?
        .map_err(|err| err.to_string())
}

/// An agent's error answer (e.g. "container is waiting to start"), as a Status. The body may be
/// plain text (kubelet's style) or a Status.
pub fn agent_error(status: StatusCode, body: &str) -> ApiError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|status| status["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    match status.as_u16() {
        400 => ApiError::bad_request(message),
        404 => ApiError::not_found_message(message),
        _ => ApiError::internal(format!("the node agent answered {status}: {message}")),
    }
}

/// Reads an agent's non-success answer into a Status.
pub async fn agent_error_from(response: Response<hyper::body::Incoming>) -> ApiError {
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
        .unwrap_or_default();
    agent_error(status, body.trim())
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay as they are).
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn container_choice_follows_kube_apiserver() {
        let pod = json!({"spec": {"containers": [{"name": "web"}, {"name": "sidecar"}], "initContainers": [{"name": "init"}]}});
        let err = pick_container(&pod, "p", None).unwrap_err();
        assert_eq!(
            err.message,
            "a container name must be specified for pod p, choose one of: [web sidecar] or one of the init containers: [init]"
        );
        assert_eq!(pick_container(&pod, "p", Some("init")).unwrap(), "init");
        assert_eq!(
            pick_container(&pod, "p", Some("nope")).unwrap_err().message,
            "container nope is not valid for pod p"
        );
        let single = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(pick_container(&single, "p", None).unwrap(), "only");
    }

    #[test]
    fn kubelet_endpoint_from_node_status() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.77.11"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10260}},
        }});
        assert_eq!(
            kubelet_endpoint(&node, "n1").unwrap(),
            ("192.168.77.11".parse().unwrap(), 10260)
        );
        let bare =
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
        assert_eq!(
            kubelet_endpoint(&bare, "n").unwrap().1,
            DEFAULT_KUBELET_PORT
        );
        assert_eq!(kubelet_endpoint(&json!({}), "n").unwrap_err().code, 503);
    }

    #[test]
    fn agent_errors_keep_code_and_message() {
        let err = agent_error(
            StatusCode::NOT_FOUND,
            "pod default/p not found on this node",
        );
        assert_eq!((err.code, err.reason), (404, "NotFound"));
        assert_eq!(err.message, "pod default/p not found on this node");
        let err = agent_error(
            StatusCode::BAD_REQUEST,
            r#"{"kind":"Status","message":"container \"web\" in pod \"p\" is waiting to start: ContainerCreating"}"#,
        );
        assert_eq!(err.code, 400);
        assert!(err.message.contains("waiting to start"));
    }
}
