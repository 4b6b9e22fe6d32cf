//! The WebSocket side of the streaming subresources: recognising an upgrade request and its
//! subprotocols, answering the handshake, and [`WebSocketIo`], which carries a byte stream in
//! binary messages (how `SPDY/3.1+portforward.k8s.io` tunnels SPDY).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf as _, Bytes};
use futures::{Sink, Stream};
use http::{HeaderMap, HeaderValue, header};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, handshake::derive_accept_key},
};

use super::super::status::ApiError;
pub use flotilla_apimachinery::httpstream::{is_websocket, offered_protocols};

/// The remote-command protocol with the close signal (kubectl >= 1.30's first choice), which
/// the API server translates to SPDY.
pub const V5_CHANNEL: &str = "v5.channel.k8s.io";
/// Port-forward's SPDY session tunnelled in WebSocket binary messages (kubectl >= 1.31).
pub const TUNNELED_PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";
/// The prefix that marks a tunnelled SPDY subprotocol.
pub const SPDY_TUNNEL_PREFIX: &str = "SPDY/3.1+";

/// The older WebSocket subprotocols the node's runtime (containerd 1.6) speaks itself, so the
/// API server passes them through unchanged.
pub const RUNTIME_REMOTE_COMMAND: &[&str] = &[
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
/// Port-forward subprotocols the runtime speaks itself.
pub const RUNTIME_PORT_FORWARD: &[&str] = &["portforward.k8s.io", "base64.portforward.k8s.io"];

/// The `101 Switching Protocols` headers that accept a WebSocket request with `protocol`; a
/// 400 for a request that is not a well-formed WebSocket handshake (RFC 6455 section 4.2.1).
pub fn accept_headers(request: &HeaderMap, protocol: &str) -> Result<HeaderMap, ApiError> {
    let version = request
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    if version != Some("13") {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade: WebSocket version {} is not supported; use 13",
            version.unwrap_or("(none)")
        )));
    }
    let key = request
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "unable to upgrade: the WebSocket request has no Sec-WebSocket-Key",
            )
        })?;
    let mut headers = HeaderMap::new();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|err| ApiError::internal(format!("the WebSocket accept key: {err}")))?;
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    let protocol = HeaderValue::from_str(protocol)
        .map_err(|err| ApiError::internal(format!("the WebSocket subprotocol: {err}")))?;
    headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    Ok(headers)
}

/// A byte stream over a WebSocket: each write is one binary message, reads run the binary
/// messages' payloads together. A close frame (or the end of the connection) reads as EOF; a
/// text message is an error, since nothing in a tunnel is text.
pub struct WebSocketIo<S> {
    socket: WebSocketStream<S>,
    pending: Bytes,
}

impl<S> WebSocketIo<S> {
    /// Wraps an open WebSocket.
    pub fn new(socket: WebSocketStream<S>) -> Self {
        Self {
            socket,
            pending: Bytes::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WebSocketIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut self.socket).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text message in a tunnel that carries only binary messages",
                    )));
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(err)) => return Poll::Ready(Err(io::Error::other(err))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WebSocketIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(Pin::new(&mut self.socket).poll_ready(cx)).map_err(io::Error::other)?;
        Pin::new(&mut self.socket)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.socket).poll_close(cx)) {
            // Closing twice, or after the peer's close, is fine.
            Ok(())
            | Err(
                tokio_tungstenite::tungstenite::Error::ConnectionClosed
                | tokio_tungstenite::tungstenite::Error::AlreadyClosed,
            ) => Poll::Ready(Ok(())),
            Err(err) => Poll::Ready(Err(io::Error::other(err))),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    fn headers(items: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in items {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn subprotocols_and_handshake() {
        let request = headers(&[
            ("upgrade", "websocket"),
            (
                "sec-websocket-protocol",
                "v5.channel.k8s.io, v4.channel.k8s.io",
            ),
            ("sec-websocket-protocol", "channel.k8s.io"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        assert!(is_websocket(&request));
        assert!(!is_websocket(&headers(&[("upgrade", "SPDY/3.1")])));
        assert_eq!(
            offered_protocols(&request),
            ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
        );
        let answer = accept_headers(&request, V5_CHANNEL).unwrap();
        // RFC 6455's own example key and answer.
        assert_eq!(
            answer[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(answer[header::SEC_WEBSOCKET_PROTOCOL], V5_CHANNEL);
        let err =
            accept_headers(&headers(&[("sec-websocket-version", "8")]), V5_CHANNEL).unwrap_err();
        assert!(
            err.message.contains("WebSocket version 8"),
            "{}",
            err.message
        );
        let err =
            accept_headers(&headers(&[("sec-websocket-version", "13")]), V5_CHANNEL).unwrap_err();
        assert!(err.message.contains("Sec-WebSocket-Key"), "{}", err.message);
    }

    #[tokio::test]
    async fn bytes_cross_as_binary_messages_and_text_is_refused() {
        let (a, b) = tokio::io::duplex(4096);
        let client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
        let server = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
        let mut client = WebSocketIo::new(client);
        let mut server = WebSocketIo::new(server);
        client.write_all(b"hello ").await.unwrap();
        client.write_all(b"world").await.unwrap();
        client.flush().await.unwrap();
        let mut got = [0u8; 11];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
        // Closing reads as EOF on the other side.
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());

        let (a, b) = tokio::io::duplex(4096);
        let mut client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
        let server = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
        futures::SinkExt::send(&mut client, Message::text("nope"))
            .await
            .unwrap();
        let mut server = WebSocketIo::new(server);
        let err = server.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
