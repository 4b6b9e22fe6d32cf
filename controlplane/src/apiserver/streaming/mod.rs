//! `pods/exec`, `pods/attach` and `pods/portforward`: kubectl's upgrade request is mapped to the
//! node agent's kubelet path (`/exec/<ns>/<pod>/<container>?command=..&input=1..`, `/attach/..`,
//! `/portForward/<ns>/<pod>?port=..`) and sent to the agent over mTLS; the agent hands it to
//! containerd's streaming server. Three ways a session runs:
//!
//! - SPDY/3.1, and WebSocket with the subprotocols containerd 1.6 speaks itself (`v4.channel.k8s.io`
//!   and older, `portforward.k8s.io`): both upgraded connections are spliced, and the protocol
//!   runs end to end between the client and containerd ([`Mode::Proxy`]).
//! - WebSocket `v5.channel.k8s.io` (exec and attach from kubectl >= 1.30): the API server ends the
//!   WebSocket and runs the command over SPDY with the node ([`translator`], [`Mode::Translate`]).
//! - WebSocket `SPDY/3.1+portforward.k8s.io` (port-forward from kubectl >= 1.31): the client's SPDY
//!   session rides in binary messages; the API server opens a SPDY upgrade to the node and copies
//!   the bytes between the two ([`Mode::Tunnel`]).
//!
//! Why here and not in the agent: this is where kube-apiserver translates (its StreamTranslator
//! and tunnelling handler), because the API server is what the client talks to and is upgraded
//! first: every node, whatever its agent's or runtime's version, keeps speaking the SPDY that
//! kubelets have always spoken, so a new kubectl needs no SPDY fallback against old nodes. The
//! agent stays a plain proxy to the runtime; the only new protocol work is in one place.

pub mod spdy;
pub mod translator;
pub mod websocket;

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::{HeaderName, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio_tungstenite::{WebSocketStream, tungstenite::protocol::Role};

use super::{
    ApiServer,
    handlers::Scope,
    node_proxy::{self, percent_encode, pick_container},
    query,
    status::ApiError,
};

/// Which streaming subresource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// `pods/exec`: run a command in a container.
    Exec,
    /// `pods/attach`: attach to a container's main process.
    Attach,
    /// `pods/portforward`: forward TCP connections to the pod's network namespace.
    PortForward,
}

impl StreamKind {
    /// The subresource's name, as in `pods/<name>`.
    pub fn resource(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Attach => "attach",
            Self::PortForward => "portforward",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Self::Exec => "exec into",
            Self::Attach => "attach to",
            Self::PortForward => "port-forward to",
        }
    }
}

/// Request headers that stay between kubectl and the API server: the node must not see the
/// user's credentials, and the connection to it is a new one with its own framing.
const NOT_FORWARDED: &[HeaderName] = &[
    header::HOST,
    header::AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
    header::EXPECT,
];

/// How a streaming session runs (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Splice the client's upgraded connection to the agent's.
    Proxy,
    /// Translate WebSocket `v5.channel.k8s.io` to SPDY `v4.channel.k8s.io`.
    Translate,
    /// Tunnel the client's SPDY session, carried in WebSocket messages, to the node's SPDY.
    Tunnel,
}

/// Chooses how to run a session from the client's upgrade headers; a 400 for a WebSocket
/// request whose subprotocols none of the three ways speaks.
pub fn session_mode(kind: StreamKind, headers: &http::HeaderMap) -> Result<Mode, ApiError> {
    if !websocket::is_websocket(headers) {
        return Ok(Mode::Proxy);
    }
    let offered = websocket::offered_protocols(headers);
    // Without a subprotocol, the runtime serves the original channel.k8s.io protocol itself.
    if offered.is_empty() {
        return Ok(Mode::Proxy);
    }
    let (ours, mode, runtime): (&str, Mode, &[&str]) = match kind {
        StreamKind::Exec | StreamKind::Attach => (
            websocket::V5_CHANNEL,
            Mode::Translate,
            websocket::RUNTIME_REMOTE_COMMAND,
        ),
        StreamKind::PortForward => (
            websocket::TUNNELED_PORT_FORWARD,
            Mode::Tunnel,
            websocket::RUNTIME_PORT_FORWARD,
        ),
    };
    if offered.iter().any(|p| p == ours) {
        return Ok(mode);
    }
    if offered.iter().any(|p| runtime.contains(&p.as_str())) {
        return Ok(Mode::Proxy);
    }
    let supported: Vec<&str> = std::iter::once(ours)
        .chain(runtime.iter().copied())
        .collect();
    Err(ApiError::bad_request(format!(
        "unable to upgrade: none of the WebSocket subprotocols [{}] is supported for pods/{}; \
         supported are [{}]",
        offered.join(", "),
        kind.resource(),
        supported.join(", ")
    )))
}

impl ApiServer {
    /// Runs an exec, attach or port-forward upgrade of pod `name` through its node's agent.
    pub async fn pod_stream<B>(
        &self,
        scope: &Scope,
        name: &str,
        kind: StreamKind,
        mut request: Request<B>,
    ) -> Result<Response, ApiError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mode = session_mode(kind, request.headers())?;
        let pairs = query::Query::pairs(request.uri().query());
        let target = self.pod_node(scope, name).await?;
        let agent = agent_path(kind, &target.namespace, name, &target.pod, &pairs)?;
        let tls = self.kubelet_client()?;
        let what = match kind {
            StreamKind::Exec => "exec",
            StreamKind::Attach => "attach",
            StreamKind::PortForward => "port-forward",
        };
        let pod = format!("{}/{name}", target.namespace);

        // What the client is answered with on success, checked before the node is asked.
        let accept = match mode {
            Mode::Proxy => None,
            Mode::Translate => Some(websocket::accept_headers(
                request.headers(),
                websocket::V5_CHANNEL,
            )?),
            Mode::Tunnel => Some(websocket::accept_headers(
                request.headers(),
                websocket::TUNNELED_PORT_FORWARD,
            )?),
        };
        let client_upgrade = hyper::upgrade::on(&mut request);
        let outgoing = match mode {
            Mode::Proxy => {
                let mut outgoing = Request::builder()
                    .method(request.method().clone())
                    .uri(&agent.path);
                for (name, value) in request.headers() {
                    if !NOT_FORWARDED.contains(name) {
                        outgoing = outgoing.header(name, value);
                    }
                }
                outgoing
            }
            Mode::Translate => spdy_upgrade(&agent.path, &[translator::SPDY_REMOTE_COMMAND]),
            Mode::Tunnel => {
                let protocols = tunneled_protocols(request.headers());
                let protocols: Vec<&str> = protocols.iter().map(String::as_str).collect();
                spdy_upgrade(&agent.path, &protocols)
            }
        };
        let outgoing = outgoing
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|err| ApiError::internal(format!("building the agent request: {err}")))?;
        let mut response = node_proxy::send(tls, target.address, target.port, outgoing)
            .await
            .map_err(|err| target.unreachable(name, what, &err))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(node_proxy::agent_error_from(response).await);
        }
        let negotiated = response
            .headers()
            .get(STREAM_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .trim()
            .to_owned();
        let agent_upgrade = hyper::upgrade::on(&mut response);

        let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        match (mode, accept) {
            (Mode::Translate, Some(accept)) => {
                if negotiated != translator::SPDY_REMOTE_COMMAND {
                    return Err(ApiError::internal(format!(
                        "the node agreed to the remote-command protocol {negotiated:?}, not {}",
                        translator::SPDY_REMOTE_COMMAND
                    )));
                }
                for (name, value) in &accept {
                    answer = answer.header(name, value);
                }
            }
            (Mode::Tunnel, Some(mut accept)) => {
                // The client learns the node's choice through the WebSocket subprotocol.
                let chosen = format!("{}{negotiated}", websocket::SPDY_TUNNEL_PREFIX);
                if !websocket::offered_protocols(request.headers()).contains(&chosen) {
                    return Err(ApiError::internal(format!(
                        "the node agreed to the port-forward protocol {negotiated:?}, which the \
                         client did not offer"
                    )));
                }
                let chosen = http::HeaderValue::from_str(&chosen)
                    .map_err(|err| ApiError::internal(err.to_string()))?;
                accept.insert(header::SEC_WEBSOCKET_PROTOCOL, chosen);
                for (name, value) in &accept {
                    answer = answer.header(name, value);
                }
            }
            _ => {
                for (name, value) in response.headers() {
                    answer = answer.header(name, value);
                }
            }
        }
        let streams = agent.streams;
        tokio::spawn(async move {
            let (client, agent) = match tokio::join!(client_upgrade, agent_upgrade) {
                (Ok(client), Ok(agent)) => (TokioIo::new(client), TokioIo::new(agent)),
                (Err(err), _) | (_, Err(err)) => {
                    tracing::debug!(%pod, "a {what} upgrade did not complete: {err}");
                    return;
                }
            };
            match mode {
                Mode::Proxy => splice(client, agent, &pod, what).await,
                Mode::Translate => {
                    tracing::debug!(%pod, "{what}: WebSocket v5.channel.k8s.io translated to SPDY");
                    let socket = WebSocketStream::from_raw_socket(client, Role::Server, None).await;
                    match spdy::Connection::client(agent) {
                        Ok(node) => translator::run(socket, node, streams, pod).await,
                        Err(err) => tracing::warn!(%pod, "starting a SPDY session: {err}"),
                    }
                }
                Mode::Tunnel => {
                    tracing::debug!(%pod, "{what}: SPDY tunnelled over WebSocket");
                    let socket = WebSocketStream::from_raw_socket(client, Role::Server, None).await;
                    splice(websocket::WebSocketIo::new(socket), agent, &pod, what).await;
                }
            }
        });
        answer
            .body(Body::empty())
            .map_err(|err| ApiError::internal(format!("building the upgrade response: {err}")))
    }
}

/// The header SPDY upgrades negotiate the stream protocol with.
const STREAM_PROTOCOL: &str = "x-stream-protocol-version";

/// A SPDY/3.1 upgrade request for the agent offering `protocols`.
fn spdy_upgrade(path: &str, protocols: &[&str]) -> http::request::Builder {
    let mut request = Request::builder()
        .method(http::Method::POST)
        .uri(path)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    for protocol in protocols {
        request = request.header(STREAM_PROTOCOL, *protocol);
    }
    request
}

/// The SPDY protocols a tunnelling client offers (`SPDY/3.1+portforward.k8s.io` ->
/// `portforward.k8s.io`).
fn tunneled_protocols(headers: &http::HeaderMap) -> Vec<String> {
    websocket::offered_protocols(headers)
        .iter()
        .filter_map(|p| p.strip_prefix(websocket::SPDY_TUNNEL_PREFIX))
        .filter(|p| p.ends_with(".k8s.io"))
        .map(str::to_owned)
        .collect()
}

/// Copies bytes both ways until either side closes.
async fn splice<A, B>(mut client: A, mut agent: B, pod: &str, what: &str)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::io::copy_bidirectional(&mut client, &mut agent).await {
        Ok((up, down)) => tracing::debug!(%pod, up, down, "{what} session ended"),
        Err(err) => tracing::debug!(%pod, "{what} session ended: {err}"),
    }
}

/// The agent's path for a session and the streams it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRequest {
    /// Path and query on the agent's kubelet API.
    pub path: String,
    /// The streams asked for (exec and attach).
    pub streams: translator::Streams,
}

/// kubectl's query for `kind` on pod `name`, mapped to the agent's kubelet path and query.
pub fn agent_path(
    kind: StreamKind,
    namespace: &str,
    name: &str,
    pod: &Value,
    pairs: &[(String, String)],
) -> Result<AgentRequest, ApiError> {
    let values = |key: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let flag = |key: &str| {
        values(key)
            .first()
            .is_some_and(|value| query::is_true(value))
    };
    if let Some(phase @ ("Succeeded" | "Failed")) = pod["status"]["phase"].as_str() {
        return Err(ApiError::bad_request(format!(
            "cannot {} a container in a completed pod; current phase is {phase}",
            kind.action()
        )));
    }
    let mut params: Vec<(&str, String)> = Vec::new();
    let mut streams = translator::Streams::default();
    let path = match kind {
        StreamKind::Exec | StreamKind::Attach => {
            let container = pick_container(pod, name, values("container").first().copied())?;
            if kind == StreamKind::Exec {
                let command = values("command");
                if command.is_empty() {
                    return Err(ApiError::bad_request(
                        "you must specify at least one command for the container",
                    ));
                }
                params.extend(command.into_iter().map(|c| ("command", c.to_owned())));
            }
            let names = [
                ("stdin", "input"),
                ("stdout", "output"),
                ("stderr", "error"),
            ];
            if !names.iter().any(|(ours, _)| flag(ours)) {
                return Err(ApiError::bad_request(
                    "you must specify at least 1 of stdin, stdout, stderr",
                ));
            }
            for (ours, kubelet) in names.into_iter().chain([("tty", "tty")]) {
                if flag(ours) {
                    params.push((kubelet, "1".into()));
                }
            }
            streams = translator::Streams {
                stdin: flag("stdin"),
                stdout: flag("stdout"),
                stderr: flag("stderr"),
                tty: flag("tty"),
            };
            let verb = if kind == StreamKind::Exec {
                "exec"
            } else {
                "attach"
            };
            format!("/{verb}/{namespace}/{name}/{container}")
        }
        StreamKind::PortForward => {
            for value in values("ports").iter().flat_map(|v| v.split(',')) {
                let port = value
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|port| *port != 0)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "invalid port {value:?}: port must be between 1 and 65535"
                        ))
                    })?;
                params.push(("port", port.to_string()));
            }
            format!("/portForward/{namespace}/{name}")
        }
    };
    let query: Vec<String> = params
        .iter()
        .map(|(key, value)| format!("{key}={}", percent_encode(value)))
        .collect();
    let path = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    Ok(AgentRequest { path, streams })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn pod() -> Value {
        json!({"spec": {"containers": [{"name": "web"}, {"name": "side"}]}, "status": {"phase": "Running"}})
    }

    #[test]
    fn exec_query_maps_to_kubelet_params() {
        let path = agent_path(
            StreamKind::Exec,
            "default",
            "p",
            &pod(),
            &pairs(&[
                ("command", "sh"),
                ("command", "-c"),
                ("command", "exit 3"),
                ("container", "web"),
                ("stdin", "true"),
                ("stdout", "true"),
                ("stderr", "true"),
                ("tty", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(
            path.path,
            "/exec/default/p/web?command=sh&command=-c&command=exit%203&input=1&output=1&error=1"
        );
        assert_eq!(
            path.streams,
            translator::Streams {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        let attach = agent_path(
            StreamKind::Attach,
            "ns",
            "p",
            &pod(),
            &pairs(&[("container", "side"), ("stdout", "true"), ("tty", "true")]),
        )
        .unwrap();
        assert_eq!(attach.path, "/attach/ns/p/side?output=1&tty=1");
        assert!(attach.streams.tty && attach.streams.stdout && !attach.streams.stdin);
    }

    #[test]
    fn exec_errors_are_kube_apiservers() {
        let bad = |kind, items: &[(&str, &str)]| {
            agent_path(kind, "default", "p", &pod(), &pairs(items))
                .unwrap_err()
                .message
        };
        assert_eq!(
            bad(
                StreamKind::Exec,
                &[("container", "web"), ("stdout", "true")]
            ),
            "you must specify at least one command for the container"
        );
        assert_eq!(
            bad(StreamKind::Exec, &[("container", "web"), ("command", "ls")]),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert_eq!(
            bad(
                StreamKind::Exec,
                &[("container", "nope"), ("command", "ls"), ("stdout", "1")]
            ),
            "container nope is not valid for pod p"
        );
        assert!(
            bad(StreamKind::Attach, &[("stdout", "1")])
                .starts_with("a container name must be specified for pod p")
        );
        let done =
            json!({"spec": {"containers": [{"name": "web"}]}, "status": {"phase": "Succeeded"}});
        let err = agent_path(StreamKind::Exec, "d", "p", &done, &pairs(&[])).unwrap_err();
        assert_eq!(
            err.message,
            "cannot exec into a container in a completed pod; current phase is Succeeded"
        );
    }

    #[test]
    fn websocket_subprotocols_choose_the_mode() {
        let headers = |upgrade: &str, protocols: &[&str]| {
            let mut map = http::HeaderMap::new();
            map.insert(header::UPGRADE, upgrade.parse().unwrap());
            for p in protocols {
                map.append(header::SEC_WEBSOCKET_PROTOCOL, p.parse().unwrap());
            }
            map
        };
        let mode =
            |kind, upgrade, protocols: &[&str]| session_mode(kind, &headers(upgrade, protocols));
        assert_eq!(
            mode(StreamKind::Exec, "SPDY/3.1", &[]).unwrap(),
            Mode::Proxy
        );
        assert_eq!(
            mode(StreamKind::Exec, "websocket", &["v5.channel.k8s.io"]).unwrap(),
            Mode::Translate
        );
        // v5 is preferred whenever it is offered, as kube-apiserver does.
        assert_eq!(
            mode(
                StreamKind::Attach,
                "websocket",
                &["v4.channel.k8s.io, v5.channel.k8s.io"]
            )
            .unwrap(),
            Mode::Translate
        );
        assert_eq!(
            mode(StreamKind::Exec, "websocket", &["v4.base64.channel.k8s.io"]).unwrap(),
            Mode::Proxy
        );
        assert_eq!(
            mode(
                StreamKind::PortForward,
                "websocket",
                &["SPDY/3.1+portforward.k8s.io"]
            )
            .unwrap(),
            Mode::Tunnel
        );
        assert_eq!(
            mode(
                StreamKind::PortForward,
                "websocket",
                &["portforward.k8s.io"]
            )
            .unwrap(),
            Mode::Proxy
        );
        let err = mode(
            StreamKind::Exec,
            "websocket",
            &["SPDY/3.1+portforward.k8s.io"],
        )
        .unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .contains("[SPDY/3.1+portforward.k8s.io] is supported for pods/exec"),
            "{}",
            err.message
        );
        let err = mode(StreamKind::PortForward, "websocket", &["v5.channel.k8s.io"]).unwrap_err();
        assert!(
            err.message
                .contains("supported are [SPDY/3.1+portforward.k8s.io"),
            "{}",
            err.message
        );
        assert_eq!(
            tunneled_protocols(&headers(
                "websocket",
                &["SPDY/3.1+portforward.k8s.io", "SPDY/3.1+evil", "x"]
            )),
            ["portforward.k8s.io"]
        );
    }

    #[test]
    fn portforward_ports_map_to_port_params() {
        assert_eq!(
            agent_path(
                StreamKind::PortForward,
                "default",
                "p",
                &pod(),
                &pairs(&[("ports", "8080"), ("ports", "9000,9001")])
            )
            .unwrap()
            .path,
            "/portForward/default/p?port=8080&port=9000&port=9001"
        );
        assert_eq!(
            agent_path(StreamKind::PortForward, "default", "p", &pod(), &[])
                .unwrap()
                .path,
            "/portForward/default/p"
        );
        assert!(
            agent_path(
                StreamKind::PortForward,
                "default",
                "p",
                &pod(),
                &pairs(&[("ports", "0")])
            )
            .is_err()
        );
    }
}
