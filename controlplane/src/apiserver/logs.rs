//! `pods/log`: the API server finds the pod's node and proxies to the node agent's kubelet-style
//! endpoint `https://<node InternalIP>:<kubeletEndpoint port>/containerLogs/<ns>/<pod>/<container>`
//! with its kubelet-client certificate, verifying the agent's certificate against the cluster CA,
//! and streams the answer back (so `kubectl logs -f` follows).

use std::{net::IpAddr, sync::Arc, time::Duration};

use axum::{body::Body, response::Response};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio_rustls::TlsConnector;

use super::{ApiServer, handlers::Scope, query::Query, resources, status::ApiError};

/// The port node agents serve their kubelet API on unless the Node says otherwise.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Query parameters of kubectl logs that the node agent understands, with their types.
const PASSED_THROUGH: &[(&str, bool)] = &[
    ("follow", false),
    ("previous", false),
    ("timestamps", false),
    ("sinceSeconds", true),
    ("tailLines", true),
    ("limitBytes", true),
    ("sinceTime", false),
];

impl ApiServer {
    /// Streams a container's log from the node agent of the pod's node.
    pub async fn pod_logs(
        &self,
        scope: &Scope,
        name: &str,
        query: &Query,
    ) -> Result<Response, ApiError> {
        let pod = self.get_object(scope, name).await?.object;
        let namespace = scope.namespace.clone().unwrap_or_default();
        let container = pick_container(&pod, name, query.get("container"))?;
        let node_name = pod["spec"]["nodeName"]
            .as_str()
            .filter(|node| !node.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!("pod {name} does not have a host assigned"))
            })?
            .to_owned();
        let nodes = resources::find("", "v1", "nodes")
            .ok_or_else(|| ApiError::internal("nodes are not registered"))?;
        let node = self
            .get_object(
                &Scope {
                    resource: nodes,
                    namespace: None,
                },
                &node_name,
            )
            .await?
            .object;
        let (address, port) = kubelet_endpoint(&node, &node_name)?;

        let mut path = format!("/containerLogs/{namespace}/{name}/{container}");
        let mut separator = '?';
        for (parameter, integer) in PASSED_THROUGH {
            if let Some(value) = query.get(parameter) {
                if *integer {
                    query.integer(parameter)?;
                }
                path.push(separator);
                path.push_str(parameter);
                path.push('=');
                path.push_str(&percent_encode(value));
                separator = '&';
            }
        }
        let tls = self.kubelet_tls.clone().ok_or_else(|| {
            ApiError::unavailable("this API server has no kubelet client certificate configured")
        })?;
        let unreachable = |err: String| {
            ApiError::unavailable(format!(
                "cannot reach the agent of node {node_name} at {address}:{port} for the logs of pod {name}: {err}"
            ))
        };
        let response = fetch(tls, address, port, &path)
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = response
                .into_body()
                .collect()
                .await
                .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
                .unwrap_or_default();
            return Err(agent_error(status, body.trim()));
        }
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::new(response.into_body()))
            .unwrap_or_else(|_| {
                axum::response::IntoResponse::into_response(ApiError::internal(
                    "building the log response",
                ))
            }))
    }
}

/// The container to read: the one asked for (which must exist), or the only one.
fn pick_container(pod: &Value, name: &str, requested: Option<&str>) -> Result<String, ApiError> {
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
fn kubelet_endpoint(node: &Value, name: &str) -> Result<(IpAddr, u16), ApiError> {
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

async fn fetch(
    tls: Arc<rustls::ClientConfig>,
    address: IpAddr,
    port: u16,
    path: &str,
) -> Result<http::Response<hyper::body::Incoming>, String> {
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
        if let Err(err) = connection.await {
            tracing::debug!("log connection to the node agent ended: {err}");
        }
    });
    let request = Request::get(path)
        .header(header::HOST, format!("{address}:{port}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|err| err.to_string())?;
    sender
        .send_request(request)
        .await
        .map_err(|err| err.to_string())
}

/// An agent's error answer (e.g. "container is waiting to start"), as a Status.
fn agent_error(status: StatusCode, body: &str) -> ApiError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|status| status["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    match status.as_u16() {
        400 => ApiError::bad_request(message),
        404 => ApiError::no_route(&message),
        _ => ApiError::internal(format!("the node agent answered {status}: {message}")),
    }
}

fn percent_encode(value: &str) -> String {
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
}
