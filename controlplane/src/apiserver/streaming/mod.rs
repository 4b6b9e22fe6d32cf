//! `pods/exec`, `pods/attach` and `pods/portforward`: kubectl's upgrade request (SPDY/3.1, or
//! WebSocket) is mapped to the node agent's kubelet path (`/exec/<ns>/<pod>/<container>?command=
//! ..&input=1..`, `/attach/..`, `/portForward/<ns>/<pod>?port=..`) and proxied to the agent over
//! mTLS; on 101 the two upgraded connections are spliced, so the stream protocol runs end to end
//! between kubectl and containerd's streaming server.
//!
//! WebSocket: kubectl >= 1.30 first tries WebSocket with the v5 remote-command protocol, which
//! containerd 1.6 does not speak. The agent refuses such upgrades with a 400 (see
//! `flotilla_agent::server::stream::unsupported_websocket`), which arrives here as a non-101
//! answer and is returned as a Status; kubectl treats any non-101 answer to its WebSocket attempt
//! as an upgrade failure and retries over SPDY. Translating v5 WebSocket to SPDY (as
//! kube-apiserver's stream translator does) would remove that extra round trip.

pub mod spdy;

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::{HeaderName, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde_json::Value;

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

impl ApiServer {
    /// Proxies an exec, attach or port-forward upgrade of pod `name` to its node's agent.
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
        let pairs = query::Query::pairs(request.uri().query());
        let target = self.pod_node(scope, name).await?;
        let path = agent_path(kind, &target.namespace, name, &target.pod, &pairs)?;
        let tls = self.kubelet_client()?;

        let client_upgrade = hyper::upgrade::on(&mut request);
        let mut outgoing = Request::builder()
            .method(request.method().clone())
            .uri(path);
        for (name, value) in request.headers() {
            if !NOT_FORWARDED.contains(name) {
                outgoing = outgoing.header(name, value);
            }
        }
        let outgoing = outgoing
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|err| ApiError::internal(format!("building the agent request: {err}")))?;
        let what = match kind {
            StreamKind::Exec => "exec",
            StreamKind::Attach => "attach",
            StreamKind::PortForward => "port-forward",
        };
        let mut response = node_proxy::send(tls, target.address, target.port, outgoing)
            .await
            .map_err(|err| target.unreachable(name, what, &err))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(node_proxy::agent_error_from(response).await);
        }

        let agent_upgrade = hyper::upgrade::on(&mut response);
        let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let pod = format!("{}/{name}", target.namespace);
        tokio::spawn(async move {
            let (client, agent) = match tokio::join!(client_upgrade, agent_upgrade) {
                (Ok(client), Ok(agent)) => (client, agent),
                (Err(err), _) | (_, Err(err)) => {
                    tracing::debug!(%pod, "a {what} upgrade did not complete: {err}");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut agent = TokioIo::new(agent);
            match tokio::io::copy_bidirectional(&mut client, &mut agent).await {
                Ok((up, down)) => tracing::debug!(%pod, up, down, "{what} session ended"),
                Err(err) => tracing::debug!(%pod, "{what} session ended: {err}"),
            }
        });
        answer
            .body(Body::empty())
            .map_err(|err| ApiError::internal(format!("building the upgrade response: {err}")))
    }
}

/// kubectl's query for `kind` on pod `name`, mapped to the agent's kubelet path and query.
pub fn agent_path(
    kind: StreamKind,
    namespace: &str,
    name: &str,
    pod: &Value,
    pairs: &[(String, String)],
) -> Result<String, ApiError> {
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
            let streams = [
                ("stdin", "input"),
                ("stdout", "output"),
                ("stderr", "error"),
            ];
            if !streams.iter().any(|(ours, _)| flag(ours)) {
                return Err(ApiError::bad_request(
                    "you must specify at least 1 of stdin, stdout, stderr",
                ));
            }
            for (ours, kubelet) in streams.into_iter().chain([("tty", "tty")]) {
                if flag(ours) {
                    params.push((kubelet, "1".into()));
                }
            }
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
    Ok(if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    })
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
            path,
            "/exec/default/p/web?command=sh&command=-c&command=exit%203&input=1&output=1&error=1"
        );
        let attach = agent_path(
            StreamKind::Attach,
            "ns",
            "p",
            &pod(),
            &pairs(&[("container", "side"), ("stdout", "true"), ("tty", "true")]),
        )
        .unwrap();
        assert_eq!(attach, "/attach/ns/p/side?output=1&tty=1");
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
    fn portforward_ports_map_to_port_params() {
        assert_eq!(
            agent_path(
                StreamKind::PortForward,
                "default",
                "p",
                &pod(),
                &pairs(&[("ports", "8080"), ("ports", "9000,9001")])
            )
            .unwrap(),
            "/portForward/default/p?port=8080&port=9000&port=9001"
        );
        assert_eq!(
            agent_path(StreamKind::PortForward, "default", "p", &pod(), &[]).unwrap(),
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
