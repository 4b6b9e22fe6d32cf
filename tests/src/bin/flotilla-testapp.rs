//! `flotilla-testapp`: the program of the `flotilla/testapp` images, a small stand-in for
//! upstream's agnhost that the end-to-end tests run in pods.
//!
//! - HTTP (default :8080): `/` and `/hostname` answer the hostname, `/echo?msg=x` answers `x`,
//!   `/clientip` the caller's address as seen by the server, `/version` the value of
//!   `TESTAPP_VERSION` (the v1 and v2 images differ only in it), `/healthz` 200 `ok`,
//!   `/exit?code=N` answers and then exits with status N.
//! - TCP echo (default :9000): every byte comes back.
//! - UDP echo (default :9001): a datagram `hostname` gets the hostname back, anything else is
//!   echoed.
//! - `--echo-ports 80,81` (`TESTAPP_ECHO_PORTS`): TCP and UDP echo on each of these ports too
//!   (the NetworkPolicy matrix serves both protocols on 80 and 81, as upstream's e2e does).
//!
//! - `flotilla-testapp api-get <path>`: instead of serving, GETs `path` from the API server as the
//!   pod's ServiceAccount (`https://kubernetes.default.svc` with the mounted token and CA, as an
//!   in-cluster client does), prints the body, and exits 0 for a 2xx answer, 1 otherwise (the
//!   status on stderr).
//!
//! - `flotilla-testapp webhook --tls-cert-file F --tls-private-key-file F [--port 8443]`:
//!   instead of serving the above, an admission webhook over HTTPS (see
//!   `flotilla_testbed::admission_webhook` for its paths), as upstream's `agnhost webhook`.
//!
//! Every request is logged to stdout, so `kubectl logs` has something to show. SIGTERM and
//! SIGINT end it with status 0 (as PID 1 of a container it has no default signal actions).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use axum::{
    Router,
    extract::{ConnectInfo, Query, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use clap::Parser;
use flotilla_testbed::{admission_webhook, in_cluster};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    signal::unix::{SignalKind, signal},
};

/// A test server for Flotilla's end-to-end tests (HTTP, TCP echo, UDP echo).
#[derive(Debug, Parser)]
#[command(name = "flotilla-testapp", version)]
struct Args {
    /// Address every server binds to.
    #[arg(long, env = "TESTAPP_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// HTTP port (0 disables the HTTP server).
    #[arg(long, env = "TESTAPP_HTTP_PORT", default_value_t = 8080)]
    http_port: u16,
    /// TCP echo port (0 disables it).
    #[arg(long, env = "TESTAPP_TCP_PORT", default_value_t = 9000)]
    tcp_port: u16,
    /// UDP echo port (0 disables it).
    #[arg(long, env = "TESTAPP_UDP_PORT", default_value_t = 9001)]
    udp_port: u16,
    /// Extra ports with both a TCP and a UDP echo server, comma-separated.
    #[arg(long, env = "TESTAPP_ECHO_PORTS", value_delimiter = ',')]
    echo_ports: Vec<u16>,
    /// What `/version` answers.
    #[arg(long, env = "TESTAPP_VERSION", default_value = "dev")]
    app_version: String,
    /// Something to do instead of serving.
    #[command(subcommand)]
    command: Option<Command>,
}

/// What the test app can do instead of serving.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// GET a path from the API server as this pod's ServiceAccount.
    ApiGet {
        /// The path, e.g. /api/v1/namespaces/default/pods.
        path: String,
        /// The API server's name.
        #[arg(long, default_value = "kubernetes.default.svc")]
        host: String,
        /// Its port.
        #[arg(long, default_value_t = 443)]
        port: u16,
    },
    /// Serve an admission webhook over HTTPS.
    Webhook {
        /// The serving certificate (PEM, chain first to last).
        #[arg(long)]
        tls_cert_file: std::path::PathBuf,
        /// Its private key (PEM).
        #[arg(long)]
        tls_private_key_file: std::path::PathBuf,
        /// The HTTPS port.
        #[arg(long, default_value_t = 8443)]
        port: u16,
    },
}

#[derive(Clone, Debug)]
struct AppState {
    version: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.command {
        Some(Command::ApiGet { path, host, port }) => return api_get(host, *port, path).await,
        Some(Command::Webhook {
            tls_cert_file,
            tls_private_key_file,
            port,
        }) => {
            let address = SocketAddr::new(args.bind, *port);
            println!(
                "flotilla-testapp {} serving a webhook on {address}",
                env!("CARGO_PKG_VERSION")
            );
            until_signalled(admission_webhook::serve(
                address,
                tls_cert_file,
                tls_private_key_file,
            ))
            .await
        }
        None => run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("flotilla-testapp: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `api-get`: the body on stdout; success only for a 2xx answer.
async fn api_get(host: &str, port: u16, path: &str) -> ExitCode {
    let credentials = std::path::Path::new(in_cluster::SERVICE_ACCOUNT_DIR);
    match in_cluster::get(host, port, path, credentials).await {
        Ok(answer) => {
            println!("{}", answer.body);
            if (200..300).contains(&answer.status) {
                ExitCode::SUCCESS
            } else {
                eprintln!("flotilla-testapp: HTTP {}", answer.status);
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("flotilla-testapp: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs `work` until it ends or SIGTERM or SIGINT arrives (then Ok).
async fn until_signalled(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => println!("flotilla-testapp: SIGTERM, exiting"),
        _ = interrupt.recv() => println!("flotilla-testapp: SIGINT, exiting"),
        result = work => return result,
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    println!(
        "flotilla-testapp {} starting: hostname {}, version {}, http :{}, tcp :{}, udp :{}",
        env!("CARGO_PKG_VERSION"),
        hostname(),
        args.app_version,
        args.http_port,
        args.tcp_port,
        args.udp_port
    );
    let mut servers = tokio::task::JoinSet::new();
    if args.http_port != 0 {
        let listener = TcpListener::bind((args.bind, args.http_port))
            .await
            .with_context(|| format!("binding HTTP to {}:{}", args.bind, args.http_port))?;
        let app = router(AppState {
            version: args.app_version.clone(),
        });
        servers.spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .context("serving HTTP")
        });
    }
    if args.tcp_port != 0 {
        let listener = TcpListener::bind((args.bind, args.tcp_port))
            .await
            .with_context(|| format!("binding TCP echo to {}:{}", args.bind, args.tcp_port))?;
        servers.spawn(tcp_echo(listener));
    }
    if args.udp_port != 0 {
        let socket = UdpSocket::bind((args.bind, args.udp_port))
            .await
            .with_context(|| format!("binding UDP echo to {}:{}", args.bind, args.udp_port))?;
        servers.spawn(udp_echo(socket));
    }
    for port in args.echo_ports.iter().copied().filter(|port| *port != 0) {
        let listener = TcpListener::bind((args.bind, port))
            .await
            .with_context(|| format!("binding TCP echo to {}:{port}", args.bind))?;
        servers.spawn(tcp_echo(listener));
        let socket = UdpSocket::bind((args.bind, port))
            .await
            .with_context(|| format!("binding UDP echo to {}:{port}", args.bind))?;
        servers.spawn(udp_echo(socket));
    }
    until_signalled(async move {
        match servers.join_next().await {
            Some(finished) => finished.context("a server task panicked")?,
            // With every server disabled it idles until signalled.
            None => std::future::pending().await,
        }
    })
    .await
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(hostname_handler))
        .route("/hostname", get(hostname_handler))
        .route("/echo", get(echo))
        .route("/clientip", get(client_ip))
        .route("/version", get(version))
        .route("/healthz", get(|| async { "ok" }))
        .route("/exit", get(exit))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn log_request(request: Request, next: Next) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_owned(), |info| info.0.to_string());
    let method = request.method().clone();
    let uri = request.uri().clone();
    let response = next.run(request).await;
    println!(
        "http {client} {method} {uri} {}",
        response.status().as_u16()
    );
    response
}

async fn hostname_handler() -> String {
    hostname()
}

async fn echo(Query(query): Query<HashMap<String, String>>) -> String {
    query.get("msg").cloned().unwrap_or_default()
}

async fn client_ip(ConnectInfo(client): ConnectInfo<SocketAddr>) -> String {
    client.to_string()
}

async fn version(State(state): State<AppState>) -> String {
    state.version
}

async fn exit(Query(query): Query<HashMap<String, String>>) -> Response {
    let code = match query.get("code").map(|code| code.parse::<i32>()) {
        None => 0,
        Some(Ok(code)) => code,
        Some(Err(_)) => {
            return (StatusCode::BAD_REQUEST, "code must be an integer\n").into_response();
        }
    };
    println!("flotilla-testapp: exiting with status {code} as asked");
    // Let the response go out first.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::process::exit(code);
    });
    format!("exiting with status {code}\n").into_response()
}

async fn tcp_echo(listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (stream, client) = listener.accept().await.context("accepting TCP")?;
        println!("tcp {client} connected");
        tokio::spawn(async move {
            let copied = echo_stream(stream).await;
            match copied {
                Ok(bytes) => println!("tcp {client} closed after echoing {bytes} bytes"),
                Err(err) => println!("tcp {client} failed: {err}"),
            }
        });
    }
}

async fn echo_stream(mut stream: TcpStream) -> std::io::Result<u64> {
    let mut buffer = vec![0_u8; 16 * 1024];
    let mut total = 0_u64;
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            stream.shutdown().await?;
            return Ok(total);
        }
        stream.write_all(&buffer[..read]).await?;
        total += read as u64;
    }
}

async fn udp_echo(socket: UdpSocket) -> anyhow::Result<()> {
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let (read, client) = socket
            .recv_from(&mut buffer)
            .await
            .context("receiving UDP")?;
        let reply = udp_reply(&buffer[..read]);
        println!("udp {client} {read} bytes, answering {} bytes", reply.len());
        if let Err(err) = socket.send_to(&reply, client).await {
            println!("udp {client} reply failed: {err}");
        }
    }
}

/// What a UDP datagram gets back: the hostname for `hostname`, else the datagram itself.
fn udp_reply(datagram: &[u8]) -> Vec<u8> {
    if datagram.trim_ascii() == b"hostname" {
        hostname().into_bytes()
    } else {
        datagram.to_vec()
    }
}

/// The hostname of this UTS namespace (the pod name in a pod).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_answers_hostname_and_echoes_the_rest() {
        assert_eq!(udp_reply(b"hostname\n"), hostname().into_bytes());
        assert_eq!(udp_reply(b"hello"), b"hello".to_vec());
        assert_eq!(udp_reply(b""), Vec::<u8>::new());
    }

    #[tokio::test]
    async fn http_and_tcp_answer_on_loopback() -> anyhow::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let app = router(AppState {
            version: "v9".to_owned(),
        });
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        for (path, expected) in [
            ("/version", "v9".to_owned()),
            ("/echo?msg=hi", "hi".to_owned()),
            ("/healthz", "ok".to_owned()),
            ("/hostname", hostname()),
        ] {
            let mut stream = TcpStream::connect(address).await?;
            stream
                .write_all(
                    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await?;
            let mut response = String::new();
            stream.read_to_string(&mut response).await?;
            assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
            assert!(response.ends_with(&expected), "{path}: {response}");
        }

        let echo = TcpListener::bind("127.0.0.1:0").await?;
        let echo_address = echo.local_addr()?;
        tokio::spawn(tcp_echo(echo));
        let mut stream = TcpStream::connect(echo_address).await?;
        stream.write_all(b"ping").await?;
        stream.shutdown().await?;
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await?;
        assert_eq!(back, b"ping");
        Ok(())
    }
}
