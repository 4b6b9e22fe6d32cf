//! `/exec`, `/attach` and `/portForward`: asks CRI for a streaming URL on containerd's streaming
//! server (127.0.0.1 in the node's network namespace) and proxies the client's upgrade request to
//! it unchanged, as kubelet does. The SPDY or WebSocket session then runs between the client
//! (the API server) and containerd; the agent only copies bytes. WebSocket protocols containerd
//! does not speak (`v5.channel.k8s.io`, tunnelled port-forward) never get here through the API
//! server, which translates them to SPDY first (`flotilla_controlplane::apiserver::streaming`).

use std::time::Duration;

use bytes::Bytes;
use flotilla_apimachinery::httpstream;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{Body, ServerState, error_response, full};
use crate::pods::cri::api;

/// How long connecting to containerd's streaming server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the streaming server may take to answer the upgrade request.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// WebSocket subprotocols containerd 1.6's streaming server speaks for exec and attach (the
/// remote-command protocol up to v4, binary and base64) and for port-forward. Everything newer,
/// notably `v5.channel.k8s.io` (kubectl >= 1.30's first choice for exec) and
/// `SPDY/3.1+portforward.k8s.io` (port-forward tunnelled over WebSocket), it does not.
const CONTAINERD_WEBSOCKET_PROTOCOLS: &[&str] = &[
    "channel.k8s.io",
    "base64.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "portforward.k8s.io",
    "base64.portforward.k8s.io",
];

/// What an exec or attach request asks for (kubelet's remote-command options).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// The command to run (exec only).
    pub command: Vec<String>,
    /// Attach the client's stdin.
    pub stdin: bool,
    /// Stream stdout back.
    pub stdout: bool,
    /// Stream stderr back (never together with a TTY, which merges it into stdout).
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

impl StreamOptions {
    /// Parses kubelet's query (`command=..&command=..&input=1&output=1&error=1&tty=1`); only `1`
    /// turns a stream on, as in kubelet.
    pub fn from_query(pairs: &[(String, String)]) -> Result<Self, String> {
        let mut options = Self::default();
        for (key, value) in pairs {
            let on = value == "1";
            match key.as_str() {
                "command" => options.command.push(value.clone()),
                "input" => options.stdin = on,
                "output" => options.stdout = on,
                "error" => options.stderr = on,
                "tty" => options.tty = on,
                _ => {}
            }
        }
        if !(options.stdin || options.stdout || options.stderr) {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        if options.tty {
            // A terminal has one output stream; kubelet drops stderr rather than failing.
            options.stderr = false;
        }
        Ok(options)
    }
}

/// The ports of a port-forward query (`port=80&port=8080`); none is fine (SPDY clients name
/// them per stream).
pub fn ports_from_query(pairs: &[(String, String)]) -> Result<Vec<i32>, String> {
    pairs
        .iter()
        .filter(|(key, _)| key == "port")
        .map(|(_, value)| {
            value
                .parse::<u16>()
                .ok()
                .filter(|port| *port != 0)
                .map(i32::from)
                .ok_or_else(|| format!("invalid port {value:?}: must be 1-65535"))
        })
        .collect()
}

/// If `headers` ask for a WebSocket upgrade with none of the subprotocols containerd speaks, the
/// message to refuse it with. Only a client that reaches the agent directly can ask for one (the
/// API server translates v5 and tunnelled port-forward to SPDY); a plain 400 tells it what is
/// spoken, and makes a kubectl-style client retry over SPDY, instead of containerd failing the
/// handshake in its own way.
pub fn unsupported_websocket(headers: &HeaderMap) -> Option<String> {
    if !httpstream::is_websocket(headers) {
        return None;
    }
    let offered = httpstream::offered_protocols(headers);
    if offered.is_empty()
        || offered
            .iter()
            .any(|p| CONTAINERD_WEBSOCKET_PROTOCOLS.contains(&p.as_str()))
    {
        return None;
    }
    Some(format!(
        "the container runtime's streaming server does not support the WebSocket subprotocols \
         [{}]; supported are [{}], or SPDY/3.1",
        offered.join(", "),
        CONTAINERD_WEBSOCKET_PROTOCOLS.join(", ")
    ))
}

/// What to open a streaming session for.
#[derive(Clone, Debug)]
pub(crate) enum Session {
    Exec {
        container_id: String,
        options: StreamOptions,
    },
    Attach {
        container_id: String,
        options: StreamOptions,
    },
    PortForward {
        sandbox_id: String,
        ports: Vec<i32>,
    },
}

/// Asks CRI for the streaming URL of `session` and proxies `request` to it.
pub(crate) async fn serve_session(
    state: &ServerState,
    session: Session,
    request: Request<Incoming>,
) -> Response<Body> {
    if let Some(message) = unsupported_websocket(request.headers()) {
        return error_response(StatusCode::BAD_REQUEST, &message);
    }
    let mut runtime = state.cri.runtime.clone();
    let (what, url) = match session {
        Session::Exec {
            container_id,
            options,
        } => (
            format!("exec in container {container_id}"),
            runtime
                .exec(api::ExecRequest {
                    container_id: container_id.clone(),
                    cmd: options.command,
                    tty: options.tty,
                    stdin: options.stdin,
                    stdout: options.stdout,
                    stderr: options.stderr,
                })
                .await
                .map(|r| r.into_inner().url),
        ),
        Session::Attach {
            container_id,
            options,
        } => (
            format!("attach to container {container_id}"),
            runtime
                .attach(api::AttachRequest {
                    container_id: container_id.clone(),
                    stdin: options.stdin,
                    tty: options.tty,
                    stdout: options.stdout,
                    stderr: options.stderr,
                })
                .await
                .map(|r| r.into_inner().url),
        ),
        Session::PortForward { sandbox_id, ports } => (
            format!("port-forward to pod sandbox {sandbox_id}"),
            runtime
                .port_forward(api::PortForwardRequest {
                    pod_sandbox_id: sandbox_id.clone(),
                    port: ports,
                })
                .await
                .map(|r| r.into_inner().url),
        ),
    };
    let url = match url {
        Ok(url) => url,
        Err(status) => {
            let code = match status.code() {
                tonic::Code::NotFound => StatusCode::NOT_FOUND,
                tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition => {
                    StatusCode::BAD_REQUEST
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return error_response(
                code,
                &format!("containerd refused to {what}: {}", status.message()),
            );
        }
    };
    match proxy(request, &url).await {
        Ok(response) => response,
        Err(message) => error_response(
            StatusCode::BAD_GATEWAY,
            &format!("proxying {what} to containerd's streaming server at {url}: {message}"),
        ),
    }
}

/// Forwards `request` (method, headers, including Connection/Upgrade and the stream protocol
/// headers) to `url`. On 101 both upgraded connections are spliced until either side closes;
/// any other answer is relayed as it is.
pub(crate) async fn proxy(
    mut request: Request<Incoming>,
    url: &str,
) -> Result<Response<Body>, String> {
    let target: Uri = url
        .parse()
        .map_err(|err| format!("the runtime gave an invalid URL: {err}"))?;
    if target.scheme_str() != Some("http") {
        return Err(
            "only plain http streaming URLs are supported (enable_tls_streaming must be off)"
                .into(),
        );
    }
    let authority = target
        .authority()
        .ok_or("the streaming URL has no host")?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect((authority.host(), port)),
    )
    .await
    .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
    .map_err(|err| err.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| err.to_string())?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::debug!("streaming server connection ended: {err}");
        }
    });

    let client_upgrade = hyper::upgrade::on(&mut request);
    let mut outgoing = Request::builder()
        .method(request.method().clone())
        .uri(target.path_and_query().map_or("/", |p| p.as_str()));
    for (name, value) in request.headers() {
        if name != header::HOST {
            outgoing = outgoing.header(name, value);
        }
    }
    let outgoing = outgoing
        .header(
            header::HOST,
            HeaderValue::from_str(authority.as_str()).map_err(|err| err.to_string())?,
        )
        .body(request.into_body())
        .map_err(|err| err.to_string())?;
    let mut response = tokio::time::timeout(RESPONSE_TIMEOUT, sender.send_request(outgoing))
        .await
        .map_err(|_| format!("no answer within {RESPONSE_TIMEOUT:?}"))?
        .map_err(|err| err.to_string())?;

    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = response.into_parts();
        return Ok(Response::from_parts(
            parts,
            body.map_err(|err| Box::new(err) as super::BodyError)
                .boxed(),
        ));
    }
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    tokio::spawn(async move {
        let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
            (Ok(client), Ok(upstream)) => (client, upstream),
            (Err(err), _) | (_, Err(err)) => {
                tracing::debug!("a streaming upgrade did not complete: {err}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(up, down, "streaming session ended"),
            Err(err) => tracing::debug!("streaming session ended: {err}"),
        }
    });
    answer
        .body(full(Bytes::new()))
        .map_err(|err| err.to_string())
}

/// Whether kubelet serves `method` on the streaming endpoints (GET for WebSocket, POST for SPDY).
pub(crate) fn streaming_method(method: &Method) -> bool {
    method == Method::GET || method == Method::POST
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn exec_query_maps_to_cri_options() {
        let options = StreamOptions::from_query(&pairs(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "exit 3"),
            ("input", "1"),
            ("output", "1"),
            ("error", "1"),
        ]))
        .unwrap();
        assert_eq!(options.command, ["sh", "-c", "exit 3"]);
        assert!(options.stdin && options.stdout && options.stderr && !options.tty);
        let tty =
            StreamOptions::from_query(&pairs(&[("output", "1"), ("error", "1"), ("tty", "1")]))
                .unwrap();
        assert!(tty.tty && tty.stdout && !tty.stderr);
        // Only "1" counts, as in kubelet.
        let err = StreamOptions::from_query(&pairs(&[("command", "ls"), ("output", "true")]))
            .unwrap_err();
        assert!(err.contains("at least 1 of stdin, stdout, stderr"), "{err}");
    }

    #[test]
    fn ports_parse() {
        assert_eq!(
            ports_from_query(&pairs(&[("port", "80"), ("port", "9000")])).unwrap(),
            [80, 9000]
        );
        assert!(ports_from_query(&pairs(&[])).unwrap().is_empty());
        assert!(ports_from_query(&pairs(&[("port", "0")])).is_err());
        assert!(ports_from_query(&pairs(&[("port", "70000")])).is_err());
    }

    #[test]
    fn websocket_v5_only_is_refused_spdy_and_v4_pass() {
        let headers = |upgrade: &str, protocols: &[&str]| {
            let mut map = HeaderMap::new();
            map.insert(header::UPGRADE, HeaderValue::from_str(upgrade).unwrap());
            for p in protocols {
                map.append(
                    header::SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_str(p).unwrap(),
                );
            }
            map
        };
        let refused = unsupported_websocket(&headers("websocket", &["v5.channel.k8s.io"]));
        assert!(
            refused
                .as_deref()
                .is_some_and(|m| m.contains("[v5.channel.k8s.io]")),
            "{refused:?}"
        );
        assert!(
            unsupported_websocket(&headers("websocket", &["SPDY/3.1+portforward.k8s.io"]))
                .is_some()
        );
        assert!(
            unsupported_websocket(&headers(
                "websocket",
                &["v5.channel.k8s.io, v4.channel.k8s.io"]
            ))
            .is_none()
        );
        assert!(unsupported_websocket(&headers("websocket", &[])).is_none());
        assert!(unsupported_websocket(&headers("SPDY/3.1", &[])).is_none());
    }
}
