//! One runner for probe and lifecycle-hook actions, as kubelet's prober and handler runner:
//! exec (CRI ExecSync), httpGet, tcpSocket, gRPC health (grpc.health.v1) and sleep.
//!
//! A probe action ends in an [`Outcome`] (success, warning or failure, with the text kubelet
//! puts into its events), or in a [`HandlerError`] when it could not be run at all (no pod IP, an
//! unknown named port, the container is gone); kubelet throws such probe results away instead of
//! counting them as failures.

use std::{sync::Arc, time::Duration};

use bytes::{Buf as _, BufMut as _};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use k8s_openapi::{
    api::core::v1::{
        Container, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Pod, Probe,
        TCPSocketAction,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};

use super::cri::{Cri, api};

/// The User-Agent of HTTP probes (kubelet sends `kube-probe/<major>.<minor>`).
pub const PROBE_USER_AGENT: &str = "kube-probe/1.33";
/// kubelet reads at most this much of an HTTP probe's response body.
const MAX_BODY: usize = 10 * 1024;
/// kubelet follows at most this many same-host redirects.
const MAX_REDIRECTS: usize = 10;

/// How a probe action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// Healthy.
    Success,
    /// Healthy, with something worth an event (e.g. a redirect to another host).
    Warning,
    /// Unhealthy.
    Failure,
}

/// A probe action's result with its output (exec output, HTTP body or the failure's reason).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The verdict.
    pub result: ProbeResult,
    /// kubelet's text for it (what follows "Liveness probe failed: " in the event).
    pub output: String,
}

impl Outcome {
    fn success(output: impl Into<String>) -> Self {
        Self {
            result: ProbeResult::Success,
            output: output.into(),
        }
    }

    fn failure(output: impl Into<String>) -> Self {
        Self {
            result: ProbeResult::Failure,
            output: output.into(),
        }
    }

    /// Whether the outcome counts as healthy (success or warning).
    pub fn healthy(&self) -> bool {
        matches!(self.result, ProbeResult::Success | ProbeResult::Warning)
    }
}

/// An action that could not be run (as opposed to one that ran and failed).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The action is not one this node runs.
    #[error("{0}")]
    Unsupported(String),
    /// The action's parameters do not resolve (no pod IP, unknown named port, bad port).
    #[error("{0}")]
    Invalid(String),
    /// The runtime could not run the command.
    #[error("{0}")]
    Runtime(String),
}

/// The container an action runs against.
#[derive(Clone, Debug)]
pub struct HandlerTarget {
    /// containerd's CRI clients.
    pub cri: Cri,
    /// The CRI container id.
    pub container_id: String,
    /// The container's spec (named ports).
    pub container: Container,
    /// The pod's primary IP, the default host of httpGet, tcpSocket and gRPC actions.
    pub pod_ip: String,
    /// The pod as kubelet's `format.Pod` prints it in hook messages: `name_namespace(uid)`.
    pub pod_label: String,
}

impl HandlerTarget {
    /// A target for `container` (running as `container_id`) of `pod`, whose IP is `pod_ip`.
    pub fn new(
        cri: Cri,
        pod: &Pod,
        container: &Container,
        container_id: impl Into<String>,
        pod_ip: impl Into<String>,
    ) -> Self {
        let meta = &pod.metadata;
        Self {
            cri,
            container_id: container_id.into(),
            container: container.clone(),
            pod_ip: pod_ip.into(),
            pod_label: format!(
                "{}_{}({})",
                meta.name.as_deref().unwrap_or(""),
                meta.namespace.as_deref().unwrap_or("default"),
                meta.uid.as_deref().unwrap_or("")
            ),
        }
    }
}

/// Runs a probe's action once with the probe's timeout.
pub async fn run_probe(target: &HandlerTarget, probe: &Probe) -> Result<Outcome, HandlerError> {
    let timeout =
        Duration::from_secs(u64::try_from(probe.timeout_seconds.unwrap_or(1).max(1)).unwrap_or(1));
    if let Some(exec) = &probe.exec {
        exec_probe(target, exec, timeout).await
    } else if let Some(http) = &probe.http_get {
        let port = resolve_port(&http.port, &target.container)?;
        let host = host_or_pod_ip(http.host.as_deref(), &target.pod_ip)?;
        Ok(http_get(&host, port, http, timeout).await)
    } else if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, &target.container)?;
        let host = host_or_pod_ip(tcp.host.as_deref(), &target.pod_ip)?;
        Ok(tcp_connect(&host, port, timeout).await)
    } else if let Some(grpc) = &probe.grpc {
        let host = host_or_pod_ip(None, &target.pod_ip)?;
        Ok(grpc_health(&host, grpc, timeout).await)
    } else {
        Err(HandlerError::Unsupported(
            "probe has no exec, httpGet, tcpSocket or grpc action".into(),
        ))
    }
}

fn host_or_pod_ip(host: Option<&str>, pod_ip: &str) -> Result<String, HandlerError> {
    match host.filter(|h| !h.is_empty()) {
        Some(host) => Ok(host.to_owned()),
        None if !pod_ip.is_empty() => Ok(pod_ip.to_owned()),
        None => Err(HandlerError::Invalid(
            "the pod has no IP yet to send the probe to".into(),
        )),
    }
}

/// A probe or hook port: a number, or the name of one of the container's ports (kubelet's
/// `ResolveContainerPort`, which also accepts a number written as a string).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, HandlerError> {
    let number = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            let named = container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| i64::from(p.container_port));
            match named.or_else(|| name.parse().ok()) {
                Some(n) => n,
                None => {
                    return Err(HandlerError::Invalid(format!(
                        "couldn't find port: {name} in container {}",
                        container.name
                    )));
                }
            }
        }
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| HandlerError::Invalid(format!("invalid port number: {number}")))
}

/// Runs `command` in the container through CRI ExecSync; `timeout` of `None` waits for the
/// command (hooks), bounded only by the CRI call timeout.
pub async fn exec_sync(
    target: &HandlerTarget,
    command: &[String],
    timeout: Option<Duration>,
) -> Result<api::ExecSyncResponse, tonic::Status> {
    let seconds = timeout.map_or(0, |t| i64::try_from(t.as_secs().max(1)).unwrap_or(i64::MAX));
    let mut request = tonic::Request::new(api::ExecSyncRequest {
        container_id: target.container_id.clone(),
        cmd: command.to_vec(),
        timeout: seconds,
    });
    if let Some(timeout) = timeout {
        // Like kubelet, give the runtime its own timeout plus slack for the call itself.
        request.set_timeout(timeout + Duration::from_secs(2));
    }
    target
        .cri
        .runtime
        .clone()
        .exec_sync(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Whether a failed ExecSync was the command running out of time.
fn is_timeout(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::DeadlineExceeded
        || (status.message().contains("timeout") && status.message().contains("exceeded"))
}

fn combined_output(response: &api::ExecSyncResponse) -> String {
    let mut output = String::from_utf8_lossy(&response.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&response.stderr));
    output
}

async fn exec_probe(
    target: &HandlerTarget,
    exec: &ExecAction,
    timeout: Duration,
) -> Result<Outcome, HandlerError> {
    let command = exec.command.clone().unwrap_or_default();
    match exec_sync(target, &command, Some(timeout)).await {
        Ok(response) if response.exit_code == 0 => Ok(Outcome::success(combined_output(&response))),
        Ok(response) => Ok(Outcome::failure(combined_output(&response))),
        Err(status) if is_timeout(&status) => Ok(Outcome::failure(format!(
            "command {:?} timed out",
            command.join(" ")
        ))),
        Err(status) => Err(HandlerError::Runtime(format!(
            "exec in container {}: {}",
            target.container_id,
            status.message()
        ))),
    }
}

/// TCP probe: healthy when a connection opens within `timeout`.
pub async fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Outcome {
    let address = join_host_port(host, port);
    match tokio::time::timeout(timeout, TcpStream::connect(address.as_str())).await {
        Ok(Ok(_stream)) => Outcome::success(""),
        Ok(Err(err)) => Outcome::failure(dial_error(&address, &err)),
        Err(_) => Outcome::failure(format!("dial tcp {address}: i/o timeout")),
    }
}

/// `host:port`, with brackets around IPv6 addresses.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A connection error as Go's net package words it (`dial tcp 10.0.0.1:80: connect: connection
/// refused`), which is what kubelet's messages contain.
fn dial_error(address: &str, err: &std::io::Error) -> String {
    let reason = match err.raw_os_error() {
        Some(code) => {
            let text = nix::errno::Errno::from_raw(code).desc();
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => format!("{}{}", first.to_lowercase(), chars.as_str()),
                None => text.to_owned(),
            }
        }
        None => err.to_string(),
    };
    format!("dial tcp {address}: connect: {reason}")
}

/// The request line and headers of an httpGet action.
struct HttpRequest {
    scheme: String,
    host: String,
    port: u16,
    path: String,
    headers: Vec<(String, String)>,
}

impl HttpRequest {
    fn new(host: &str, port: u16, action: &HTTPGetAction, user_agent: Option<&str>) -> Self {
        let scheme = action.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let mut path = action.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let mut headers: Vec<(String, String)> = action
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let has = |headers: &[(String, String)], name: &str| {
            headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        if let Some(agent) = user_agent
            && !has(&headers, "user-agent")
        {
            headers.push(("User-Agent".into(), agent.into()));
        }
        if !has(&headers, "accept") {
            headers.push(("Accept".into(), "*/*".into()));
        }
        Self {
            scheme,
            host: host.to_owned(),
            port,
            path,
            headers,
        }
    }

    fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme,
            join_host_port(&self.host, self.port),
            self.path
        )
    }
}

/// HTTP probe: 200-399 is healthy; same-host redirects are followed (up to 10), a redirect to
/// another host is a warning, as kubelet.
pub async fn http_get(host: &str, port: u16, action: &HTTPGetAction, timeout: Duration) -> Outcome {
    let mut request = HttpRequest::new(host, port, action, Some(PROBE_USER_AGENT));
    let original_url = request.url();
    let exchange = async {
        for _ in 0..=MAX_REDIRECTS {
            let (status, location, body) = match http_exchange(&request).await {
                Ok(answer) => answer,
                Err(err) => return Outcome::failure(format!("Get {:?}: {err}", request.url())),
            };
            if (200..300).contains(&status) {
                return Outcome::success(body);
            }
            if (300..400).contains(&status) {
                match location.and_then(|l| redirect_target(&request, &l)) {
                    Some((scheme, target_host, target_port, path))
                        if target_host == request.host && target_port == request.port =>
                    {
                        request.scheme = scheme;
                        request.path = path;
                        continue;
                    }
                    _ => {
                        return Outcome {
                            result: ProbeResult::Warning,
                            output: format!("Probe terminated redirects, Response body: {body}"),
                        };
                    }
                }
            }
            return Outcome::failure(format!("HTTP probe failed with statuscode: {status}"));
        }
        Outcome::failure(format!(
            "Get {original_url:?}: stopped after {MAX_REDIRECTS} redirects"
        ))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::failure(format!(
            "Get {original_url:?}: context deadline exceeded (Client.Timeout exceeded while \
             awaiting headers)"
        )),
    }
}

/// Where a redirect goes: (scheme, host, port, path) relative to the current request.
fn redirect_target(current: &HttpRequest, location: &str) -> Option<(String, String, u16, String)> {
    if let Some((scheme, rest)) = location.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        let scheme = scheme.to_lowercase();
        let default_port = if scheme == "https" { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)
            }
            _ => (authority.trim_matches(['[', ']']).to_owned(), default_port),
        };
        return Some((scheme, host, port, path));
    }
    let path = if location.starts_with('/') {
        location.to_owned()
    } else {
        let base = current.path.split('?').next().unwrap_or("/");
        let dir = &base[..=base.rfind('/').unwrap_or(0)];
        format!("{dir}{location}")
    };
    Some((
        current.scheme.clone(),
        current.host.clone(),
        current.port,
        path,
    ))
}

/// One GET: (status, Location header, body up to 10 KiB).
async fn http_exchange(request: &HttpRequest) -> Result<(u16, Option<String>, String), String> {
    let address = join_host_port(&request.host, request.port);
    let stream = TcpStream::connect(address.as_str())
        .await
        .map_err(|err| dial_error(&address, &err))?;
    match request.scheme.as_str() {
        "http" => send(stream, request).await,
        "https" => {
            let server_name = rustls::pki_types::ServerName::try_from(request.host.clone())
                .map_err(|err| format!("invalid host {:?}: {err}", request.host))?;
            let connector = tokio_rustls::TlsConnector::from(insecure_tls_config()?);
            let tls = connector
                .connect(server_name, stream)
                .await
                .map_err(|err| format!("tls: {err}"))?;
            send(tls, request).await
        }
        other => Err(format!("unsupported protocol scheme {other:?}")),
    }
}

async fn send<S>(stream: S, request: &HttpRequest) -> Result<(u16, Option<String>, String), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| err.to_string())?;
    let driver = tokio::spawn(connection);
    let mut builder = http::Request::get(request.path.as_str());
    let mut has_host = false;
    for (name, value) in &request.headers {
        has_host |= name.eq_ignore_ascii_case("host");
        builder = builder.header(name.as_str(), value.as_str());
    }
    if !has_host {
        builder = builder.header(
            http::header::HOST,
            join_host_port(&request.host, request.port),
        );
    }
    // kubelet's probe transport disables keep-alives: one connection per probe.
    builder = builder.header(http::header::CONNECTION, "close");
    let http_request = builder
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|err| format!("building the request: {err}"))?;
    let response = sender
        .send_request(http_request)
        .await
        .map_err(|err| err.to_string())?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while bytes.len() < MAX_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            Some(Err(err)) => return Err(err.to_string()),
            None => break,
        }
    }
    bytes.truncate(MAX_BODY);
    driver.abort();
    Ok((
        status,
        location,
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

/// TLS without certificate verification: kubelet's HTTPS probes skip verification too (pods
/// use self-signed certificates on their IPs).
fn insecure_tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("tls: {err}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any server certificate; signatures are still checked so the handshake is sound.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// gRPC probe: `grpc.health.v1.Health/Check` for the configured service; SERVING is healthy.
pub async fn grpc_health(host: &str, action: &GRPCAction, timeout: Duration) -> Outcome {
    let address = join_host_port(host, u16::try_from(action.port).unwrap_or(0));
    let service = action.service.clone().unwrap_or_default();
    let seconds = format!("{}s", timeout.as_secs());
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => endpoint.connect_timeout(timeout).timeout(timeout),
        Err(err) => {
            return Outcome::failure(format!(
                "error: failed to connect service at {address:?}: {err}"
            ));
        }
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(err)) => {
            return Outcome::failure(format!(
                "error: failed to connect service at {address:?}: {err}"
            ));
        }
        Err(_) => {
            return Outcome::failure(format!(
                "timeout: failed to connect service {address:?} within {seconds}: context \
                 deadline exceeded"
            ));
        }
    };
    let mut client = tonic::client::Grpc::new(channel);
    let call = async {
        client
            .ready()
            .await
            .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
        client
            .unary(
                tonic::Request::new(service),
                http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check"),
                HealthCodec,
            )
            .await
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => match response.into_inner() {
            1 => Outcome::success("service healthy"),
            status => Outcome::failure(format!(
                "service unhealthy (responded with {:?})",
                serving_status_name(status)
            )),
        },
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
            Outcome::failure(format!(
                "error: this server does not implement the grpc health protocol \
                 (grpc.health.v1.Health): {}",
                status.message()
            ))
        }
        Ok(Err(status)) if status.code() == tonic::Code::DeadlineExceeded => Outcome::failure(
            format!("timeout: health rpc did not complete within {seconds}"),
        ),
        Ok(Err(status)) => Outcome::failure(format!(
            "error: health rpc probe failed: rpc error: code = {:?} desc = {}",
            status.code(),
            status.message()
        )),
        Err(_) => Outcome::failure(format!(
            "timeout: health rpc did not complete within {seconds}"
        )),
    }
}

fn serving_status_name(status: u64) -> String {
    match status {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        other => other.to_string(),
    }
}

/// The two messages of grpc.health.v1, encoded by hand: `HealthCheckRequest { string service
/// = 1 }` and `HealthCheckResponse { ServingStatus status = 1 }` (an enum, i.e. a varint).
#[derive(Clone, Copy, Debug, Default)]
struct HealthCodec;

struct HealthEncoder;
struct HealthDecoder;

impl tonic::codec::Codec for HealthCodec {
    type Encode = String;
    type Decode = u64;
    type Encoder = HealthEncoder;
    type Decoder = HealthDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        HealthEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        HealthDecoder
    }
}

fn put_varint(dst: &mut impl bytes::BufMut, mut value: u64) {
    loop {
        let byte = u8::try_from(value & 0x7f).unwrap_or(0);
        value >>= 7;
        if value == 0 {
            dst.put_u8(byte);
            return;
        }
        dst.put_u8(byte | 0x80);
    }
}

fn get_varint(src: &mut impl bytes::Buf) -> Result<u64, tonic::Status> {
    let mut value = 0_u64;
    for shift in (0..64).step_by(7) {
        if !src.has_remaining() {
            break;
        }
        let byte = src.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(tonic::Status::internal(
        "malformed varint in health response",
    ))
}

impl tonic::codec::Encoder for HealthEncoder {
    type Item = String;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        service: String,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        if !service.is_empty() {
            dst.put_u8(0x0a); // field 1, length-delimited
            put_varint(dst, service.len() as u64);
            dst.put_slice(service.as_bytes());
        }
        Ok(())
    }
}

impl tonic::codec::Decoder for HealthDecoder {
    type Item = u64;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, Self::Error> {
        let mut status = 0;
        while src.has_remaining() {
            let key = get_varint(src)?;
            match (key >> 3, key & 7) {
                (1, 0) => status = get_varint(src)?,
                (_, 0) => {
                    get_varint(src)?;
                }
                (_, 2) => {
                    let length = usize::try_from(get_varint(src)?).unwrap_or(usize::MAX);
                    if length > src.remaining() {
                        return Err(tonic::Status::internal("truncated health response"));
                    }
                    src.advance(length);
                }
                (_, 1) if src.remaining() >= 8 => src.advance(8),
                (_, 5) if src.remaining() >= 4 => src.advance(4),
                _ => return Err(tonic::Status::internal("malformed health response")),
            }
        }
        Ok(Some(status))
    }
}

/// Which lifecycle hook a handler runs for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// After the container started (failure: event FailedPostStartHook, container killed).
    PostStart,
    /// Before the container is stopped (failure: event FailedPreStopHook).
    PreStop,
}

impl Hook {
    /// The event reason kubelet reports this hook's failure under.
    pub fn failure_reason(self) -> &'static str {
        match self {
            Self::PostStart => "FailedPostStartHook",
            Self::PreStop => "FailedPreStopHook",
        }
    }
}

/// A lifecycle hook failed; the message is kubelet's event text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HookError {
    /// Which hook.
    pub hook: Hook,
    /// kubelet's message, e.g. `Exec lifecycle hook ([sh -c exit 3]) for Container "app" in Pod
    /// "p_ns(uid)" failed - error: command 'sh -c exit 3' exited with 3: , message: ""`.
    pub message: String,
}

impl HookError {
    /// The event reason (FailedPostStartHook / FailedPreStopHook).
    pub fn reason(&self) -> &'static str {
        self.hook.failure_reason()
    }
}

/// Runs a postStart or preStop handler to completion. Not bounded here: the caller bounds
/// preStop by the grace period (drop the future to cancel) as kubelet does.
pub async fn run_lifecycle_handler(
    target: &HandlerTarget,
    handler: &LifecycleHandler,
    hook: Hook,
) -> Result<(), HookError> {
    let container = &target.container.name;
    let pod = &target.pod_label;
    let fail = |message: String| HookError { hook, message };
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        let shown = format!("[{}]", command.join(" "));
        let (error, output) = match exec_sync(target, &command, None).await {
            Ok(response) if response.exit_code == 0 => return Ok(()),
            Ok(response) => (
                format!(
                    "command '{}' exited with {}: {}",
                    command.join(" "),
                    response.exit_code,
                    String::from_utf8_lossy(&response.stderr)
                ),
                combined_output(&response),
            ),
            Err(status) => (status.message().to_owned(), String::new()),
        };
        return Err(fail(format!(
            "Exec lifecycle hook ({shown}) for Container {container:?} in Pod {pod:?} failed - \
             error: {error}, message: {output:?}"
        )));
    }
    if let Some(http) = &handler.http_get {
        let path = http.path.clone().unwrap_or_default();
        let result = async {
            let port = resolve_port(&http.port, &target.container).map_err(|e| e.to_string())?;
            let host =
                host_or_pod_ip(http.host.as_deref(), &target.pod_ip).map_err(|e| e.to_string())?;
            let request = HttpRequest::new(&host, port, http, None);
            // kubelet's hook client only cares whether the request went through; the status
            // code is not checked.
            http_exchange(&request)
                .await
                .map(drop)
                .map_err(|err| format!("Get {:?}: {err}", request.url()))
        }
        .await;
        return result.map_err(|error| {
            fail(format!(
                "HTTP lifecycle hook ({path}) for Container {container:?} in Pod {pod:?} failed - \
                 error: {error}"
            ))
        });
    }
    if let Some(sleep) = &handler.sleep {
        let seconds = u64::try_from(sleep.seconds).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        return Ok(());
    }
    if let Some(tcp) = &handler.tcp_socket {
        // Deprecated upstream and accepted only for compatibility: kubelet does nothing.
        let _: &TCPSocketAction = tcp;
        return Ok(());
    }
    Err(fail(format!(
        "Cannot run handler: invalid handler: {handler:?}"
    )))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use k8s_openapi::api::core::v1::{ContainerPort, HTTPHeader};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A one-route-per-connection HTTP server on 127.0.0.1 answering with `respond(request)`.
    async fn server(
        respond: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (u16, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let respond = Arc::new(respond);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let respond = respond.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0; 4096];
                    let mut read = 0;
                    while !buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    let request = String::from_utf8_lossy(&buffer[..read]).into_owned();
                    // Off the workers: a handler that sleeps must not stall the runtime's timers
                    // (on a busy 2-CPU machine the probe's timeout then fired after the answer).
                    let answer = tokio::task::spawn_blocking(move || respond(&request))
                        .await
                        .unwrap_or_default();
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (port, task)
    }

    fn response(status: &str, extra: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    }

    fn get(path: &str) -> HTTPGetAction {
        HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(1),
            ..HTTPGetAction::default()
        }
    }

    const T: Duration = Duration::from_secs(2);

    // The test server answers /slow slowly, from a blocking thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http_probe_statuses_headers_and_redirects() {
        let (port, task) = server(|request| {
            let line = request.lines().next().unwrap_or("");
            if line.starts_with("GET /healthz ") {
                let agent_ok = request
                    .to_lowercase()
                    .contains("user-agent: kube-probe/1.33");
                let custom = request.contains("x-custom: yes");
                response(
                    "200 OK",
                    "",
                    &format!("ok agent={agent_ok} custom={custom}"),
                )
            } else if line.starts_with("GET /moved ") {
                response("302 Found", "Location: /healthz\r\n", "")
            } else if line.starts_with("GET /away ") {
                response("302 Found", "Location: http://192.0.2.1:1/x\r\n", "bye")
            } else if line.starts_with("GET /loop ") {
                response("302 Found", "Location: /loop\r\n", "")
            } else if line.starts_with("GET /slow ") {
                std::thread::sleep(Duration::from_millis(1500));
                response("200 OK", "", "late")
            } else {
                response("500 Internal Server Error", "", "broken")
            }
        })
        .await;
        let mut action = get("/healthz");
        action.http_headers = Some(vec![HTTPHeader {
            name: "x-custom".into(),
            value: "yes".into(),
        }]);
        let outcome = http_get("127.0.0.1", port, &action, T).await;
        assert_eq!(outcome, Outcome::success("ok agent=true custom=true"));

        let outcome = http_get("127.0.0.1", port, &get("/fail"), T).await;
        assert_eq!(
            outcome,
            Outcome::failure("HTTP probe failed with statuscode: 500")
        );

        let outcome = http_get("127.0.0.1", port, &get("moved"), T).await;
        assert_eq!(outcome.result, ProbeResult::Success, "{outcome:?}");

        let outcome = http_get("127.0.0.1", port, &get("/away"), T).await;
        assert_eq!(outcome.result, ProbeResult::Warning);
        assert_eq!(
            outcome.output,
            "Probe terminated redirects, Response body: bye"
        );
        assert!(outcome.healthy());

        let outcome = http_get("127.0.0.1", port, &get("/loop"), T).await;
        assert_eq!(outcome.result, ProbeResult::Failure);
        assert!(
            outcome.output.ends_with("stopped after 10 redirects"),
            "{outcome:?}"
        );

        let outcome = http_get("127.0.0.1", port, &get("/slow"), Duration::from_millis(300)).await;
        assert_eq!(
            outcome.output,
            format!(
                "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded \
                 (Client.Timeout exceeded while awaiting headers)"
            )
        );
        task.abort();
        let _ = task.await;

        // Nothing listens any more.
        let outcome = http_get("127.0.0.1", port, &get("/healthz"), T).await;
        assert_eq!(
            outcome.output,
            format!(
                "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: \
                 connection refused"
            )
        );
    }

    #[tokio::test]
    async fn https_probe_skips_certificate_verification() {
        // A self-signed certificate for another name: kubelet's probes accept it anyway.
        let certified =
            rcgen::generate_simple_self_signed(vec!["elsewhere.test".to_owned()]).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(certified.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::try_from(certified.signing_key.serialize_der())
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(stream).await.unwrap();
            let mut buffer = vec![0; 4096];
            let mut read = 0;
            while !buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buffer[read..]).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => read += n,
                }
            }
            let _ = tls
                .write_all(response("200 OK", "", "secure").as_bytes())
                .await;
            let _ = tls.shutdown().await;
        });
        let mut action = get("/");
        action.scheme = Some("HTTPS".into());
        let outcome = http_get("127.0.0.1", port, &action, T).await;
        assert_eq!(outcome, Outcome::success("secure"));
        task.await.unwrap();
    }

    #[tokio::test]
    async fn tcp_probe() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(
            tcp_connect("127.0.0.1", port, T).await.result,
            ProbeResult::Success
        );
        drop(listener);
        assert_eq!(
            tcp_connect("127.0.0.1", port, T).await,
            Outcome::failure(format!(
                "dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }

    #[tokio::test]
    async fn http_and_sleep_hooks() {
        use k8s_openapi::api::core::v1::SleepAction;
        // The CRI connection is lazy and these hooks never use it.
        let cri = Cri::connect(Path::new("/nonexistent/containerd.sock")).unwrap();
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            ..Pod::default()
        };
        let container = Container {
            name: "app".into(),
            ..Container::default()
        };
        let (port, task) = server(|_| response("500 Internal Server Error", "", "")).await;
        let target = HandlerTarget::new(cri, &pod, &container, "cid", "127.0.0.1");
        let mut action = get("/hook");
        action.port = IntOrString::Int(i32::from(port));
        let hook = LifecycleHandler {
            http_get: Some(action),
            ..LifecycleHandler::default()
        };
        // The status code does not matter to hooks, only that the request went through.
        run_lifecycle_handler(&target, &hook, Hook::PreStop)
            .await
            .unwrap();
        task.abort();
        let _ = task.await;
        let err = run_lifecycle_handler(&target, &hook, Hook::PreStop)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "FailedPreStopHook");
        assert_eq!(
            err.message,
            format!(
                "HTTP lifecycle hook (/hook) for Container \"app\" in Pod \"p_ns(u1)\" failed - \
                 error: Get \"http://127.0.0.1:{port}/hook\": dial tcp 127.0.0.1:{port}: \
                 connect: connection refused"
            )
        );
        let sleep = LifecycleHandler {
            sleep: Some(SleepAction { seconds: 0 }),
            ..LifecycleHandler::default()
        };
        run_lifecycle_handler(&target, &sleep, Hook::PostStart)
            .await
            .unwrap();
        let err = run_lifecycle_handler(&target, &LifecycleHandler::default(), Hook::PostStart)
            .await
            .unwrap_err();
        assert!(
            err.message
                .starts_with("Cannot run handler: invalid handler"),
            "{err}"
        );
    }

    #[test]
    fn ports_resolve_by_number_or_name() {
        let container = Container {
            name: "app".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..ContainerPort::default()
            }]),
            ..Container::default()
        };
        assert_eq!(resolve_port(&IntOrString::Int(80), &container).unwrap(), 80);
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &container).unwrap(),
            8080
        );
        assert_eq!(
            resolve_port(&IntOrString::String("9090".into()), &container).unwrap(),
            9090
        );
        assert_eq!(
            resolve_port(&IntOrString::String("metrics".into()), &container)
                .unwrap_err()
                .to_string(),
            "couldn't find port: metrics in container app"
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &container)
                .unwrap_err()
                .to_string(),
            "invalid port number: 70000"
        );
    }

    #[test]
    fn redirects_resolve_relative_locations() {
        let current = HttpRequest::new("10.0.0.1", 8080, &get("/a/b?x=1"), None);
        let target = |l: &str| redirect_target(&current, l).unwrap();
        assert_eq!(target("/c").3, "/c");
        assert_eq!(target("c").3, "/a/c");
        assert_eq!(
            target("https://10.0.0.1:8443/z"),
            ("https".into(), "10.0.0.1".into(), 8443, "/z".into())
        );
        assert_eq!(target("http://example.test").2, 80);
    }

    /// A grpc.health.v1 server over h2c: the service "bad" is NOT_SERVING, any other SERVING.
    async fn health_server() -> (u16, tokio::task::JoinHandle<()>) {
        async fn check(body: bytes::Bytes) -> axum::response::Response {
            let status: u8 = if body.windows(3).any(|w| w == b"bad") {
                2
            } else {
                1
            };
            // A length-prefixed message: { status = 1 (varint) }, then grpc-status trailers.
            let message = [0_u8, 0, 0, 0, 2, 0x08, status];
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let frames = futures::stream::iter([
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                    bytes::Bytes::copy_from_slice(&message),
                )),
                Ok(hyper::body::Frame::trailers(trailers)),
            ]);
            http::Response::builder()
                .header("content-type", "application/grpc")
                .body(axum::body::Body::new(http_body_util::StreamBody::new(
                    frames,
                )))
                .unwrap()
        }
        let app =
            axum::Router::new().route("/grpc.health.v1.Health/Check", axum::routing::post(check));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (port, task)
    }

    #[tokio::test]
    async fn grpc_health_probe() {
        let (port, task) = health_server().await;
        let action = |service: Option<&str>| GRPCAction {
            port: i32::from(port),
            service: service.map(str::to_owned),
        };
        assert_eq!(
            grpc_health("127.0.0.1", &action(None), T).await,
            Outcome::success("service healthy")
        );
        assert_eq!(
            grpc_health("127.0.0.1", &action(Some("bad")), T).await,
            Outcome::failure("service unhealthy (responded with \"NOT_SERVING\")")
        );
        task.abort();
        let _ = task.await;
        let outcome = grpc_health("127.0.0.1", &action(None), T).await;
        assert_eq!(outcome.result, ProbeResult::Failure);
        assert!(
            outcome.output.starts_with(&format!(
                "error: failed to connect service at \"127.0.0.1:{port}\""
            )),
            "{outcome:?}"
        );
    }

    #[test]
    fn health_messages_encode_and_decode() {
        let mut buffer = bytes::BytesMut::new();
        put_varint(&mut buffer, 300);
        assert_eq!(&buffer[..], [0xac, 0x02]);
        let mut bytes = buffer.freeze();
        assert_eq!(get_varint(&mut bytes).unwrap(), 300);
    }
}
