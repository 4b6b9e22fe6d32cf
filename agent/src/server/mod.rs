//! The agent's kubelet API: HTTPS with client certificates from the cluster CA, serving what the
//! API server proxies to nodes (`/containerLogs`, `/exec`, `/attach`, `/portForward`, `/healthz`).
//!
//! [`serve`] answers on a listener with a [`tls::server_config`], each request authorized by a
//! SubjectAccessReview ([`auth`]); container ids come from a
//! [`ContainerLocator`] (the pod manager), logs and streaming URLs from containerd over CRI.
//! Streaming sessions are proxied to containerd's streaming server on 127.0.0.1, which is the
//! loopback of the network namespace the agent's tasks run in (the node's).

pub mod auth;
pub mod logs;
pub mod stream;
pub mod tls;

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::pods::cri::Cri;

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

/// The error type of response bodies.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every kubelet API response.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BodyError>;

/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every request handler needs.
#[derive(Clone)]
pub(crate) struct ServerState {
    pub(crate) cri: Cri,
    pub(crate) locator: Arc<dyn ContainerLocator>,
    pub(crate) authorizer: Arc<dyn auth::Authorize>,
}

/// Serves the kubelet API on `listener` with `tls` (see [`tls::server_config`]), asking
/// `authorizer` about every request, until the returned future is dropped or accepting fails.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cri: Cri,
    locator: Arc<dyn ContainerLocator>,
    authorizer: Arc<dyn auth::Authorize>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let state = ServerState {
        cri,
        locator,
        authorizer,
    };
    loop {
        let (stream, peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, "kubelet API TLS handshake failed: {err}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "kubelet API TLS handshake timed out");
                    return;
                }
            };
            let client = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| subject_of(leaf.as_ref()));
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let state = state.clone();
                let client = client.clone();
                async move {
                    Ok::<_, Infallible>(match authorize(&state, client.as_ref(), &request).await {
                        Some(refusal) => refusal,
                        None => route(&state, request).await,
                    })
                }
            });
            if let Err(err) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, "kubelet API connection ended: {err}");
            }
        });
    }
}

/// The refusal of a request its client may not make (kubelet's answers: 401 without a client
/// certificate, 403 when the API server says no, 500 when it could not be asked); None to serve
/// it.
async fn authorize<B>(
    state: &ServerState,
    client: Option<&auth::Caller>,
    request: &Request<B>,
) -> Option<Response<Body>> {
    let Some(client) = client else {
        return Some(error_response(StatusCode::UNAUTHORIZED, "Unauthorized"));
    };
    let asked = auth::Asked::of(request.method(), request.uri().path());
    match state.authorizer.allowed(client, &asked).await {
        Ok(true) => None,
        Ok(false) => Some(error_response(
            StatusCode::FORBIDDEN,
            &asked.refusal(&client.0),
        )),
        Err(err) => {
            tracing::warn!(user = client.0, "kubelet API authorization: {err}");
            Some(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!(
                    "Authorization error (user={}, verb={}, resource=nodes, subresource={})",
                    client.0, asked.verb, asked.subresource
                ),
            ))
        }
    }
}

/// The subject's CN and O values of a DER certificate.
fn subject_of(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = parsed.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some((common_name, groups))
}

/// Answers one request.
async fn route(state: &ServerState, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let pairs = query_pairs(request.uri().query().unwrap_or_default());
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = request.method().clone();
    tracing::debug!(%method, %path, "kubelet API request");
    match segments.as_slice() {
        ["healthz"] if method == Method::GET => text(StatusCode::OK, "ok"),
        ["containerLogs", namespace, pod, container] if method == Method::GET => {
            container_logs(state, namespace, pod, container, &pairs).await
        }
        ["exec", namespace, pod, container] if stream::streaming_method(&method) => {
            let options = match stream::StreamOptions::from_query(&pairs) {
                Ok(options) if options.command.is_empty() => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        "you must specify at least one command for the container",
                    );
                }
                Ok(options) => options,
                Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
            };
            match state.locator.container(namespace, pod, container, false) {
                Ok(container_id) => {
                    let session = stream::Session::Exec {
                        container_id,
                        options,
                    };
                    stream::serve_session(state, session, request).await
                }
                Err(err) => locate_error(&err),
            }
        }
        ["attach", namespace, pod, container] if stream::streaming_method(&method) => {
            let options = match stream::StreamOptions::from_query(&pairs) {
                Ok(options) => options,
                Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
            };
            match state.locator.container(namespace, pod, container, false) {
                Ok(container_id) => {
                    let session = stream::Session::Attach {
                        container_id,
                        options,
                    };
                    stream::serve_session(state, session, request).await
                }
                Err(err) => locate_error(&err),
            }
        }
        ["portForward", namespace, pod] if stream::streaming_method(&method) => {
            let ports = match stream::ports_from_query(&pairs) {
                Ok(ports) => ports,
                Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
            };
            match state.locator.sandbox(namespace, pod) {
                Ok(sandbox_id) => {
                    let session = stream::Session::PortForward { sandbox_id, ports };
                    stream::serve_session(state, session, request).await
                }
                Err(err) => locate_error(&err),
            }
        }
        [
            "healthz" | "containerLogs" | "exec" | "attach" | "portForward",
            ..,
        ] => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} is not supported on {path}"),
        ),
        _ => error_response(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

async fn container_logs(
    state: &ServerState,
    namespace: &str,
    pod: &str,
    container: &str,
    pairs: &[(String, String)],
) -> Response<Body> {
    let options = match logs::LogOptions::from_query(pairs, jiff::Timestamp::now()) {
        Ok(options) => options,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, &message),
    };
    let container_id = match state
        .locator
        .container(namespace, pod, container, options.previous)
    {
        Ok(id) => id,
        Err(err) => return locate_error(&err),
    };
    let log = match logs::open(&state.cri, &container_id, options).await {
        Ok(log) => log,
        Err(err @ logs::LogError::Gone(_)) => {
            return error_response(StatusCode::NOT_FOUND, &err.to_string());
        }
        Err(err) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    };
    let (sender, receiver) = tokio::sync::mpsc::channel(16);
    tokio::spawn(logs::stream(state.cri.clone(), log, sender));
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .map_err(|never: Infallible| match never {})
        .boxed();
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(body)
        .unwrap_or_else(|_| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "building a response")
        })
}

/// kubelet's status for a failed lookup: unknown pod or container 404, not yet (or no longer)
/// there 400.
fn locate_error(err: &LocateError) -> Response<Body> {
    let status = match err {
        LocateError::PodNotFound { .. } | LocateError::ContainerNotFound { .. } => {
            StatusCode::NOT_FOUND
        }
        LocateError::Waiting { .. } | LocateError::NoPrevious { .. } => StatusCode::BAD_REQUEST,
    };
    error_response(status, &err.to_string())
}

/// A complete body.
pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// An error answered as kubelet does: the status and the message as plain text.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    tracing::debug!(%status, "kubelet API error: {message}");
    let mut response = Response::new(full(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The decoded `key=value` pairs of a query string, repeated keys kept in order.
pub use flotilla_apimachinery::query::pairs as query_pairs;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_with_repeats() {
        assert_eq!(
            query_pairs("command=sh&command=-c&command=exit%203&command=a+b&input=1&x"),
            vec![
                ("command".to_owned(), "sh".to_owned()),
                ("command".to_owned(), "-c".to_owned()),
                ("command".to_owned(), "exit 3".to_owned()),
                ("command".to_owned(), "a b".to_owned()),
                ("input".to_owned(), "1".to_owned()),
                ("x".to_owned(), String::new()),
            ]
        );
        assert_eq!(
            query_pairs("a=%zz%"),
            vec![("a".to_owned(), "%zz%".to_owned())]
        );
    }
}
