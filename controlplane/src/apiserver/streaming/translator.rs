//! exec and attach with `v5.channel.k8s.io`: the client's WebSocket session is terminated here
//! and the command runs over a SPDY/3.1 `v4.channel.k8s.io` session with the node, the protocol
//! every kubelet and container runtime speaks (containerd 1.6 knows no v5). As in
//! kube-apiserver's stream translator:
//!
//! - client messages `[0, bytes]` become stdin DATA, `[4, json]` resize DATA (TTY only), and the
//!   v5 close signal `[255, 0]` half-closes the SPDY stdin stream, so `cat` sees EOF;
//! - node stdout/stderr DATA become `[1, bytes]` / `[2, bytes]`;
//! - the node's error stream carries v4's `Status` JSON (Success, or NonZeroExitCode with the
//!   exit code as a cause), which v5 shares: it is passed on verbatim as `[3, json]` once the
//!   output has been delivered, then the WebSocket is closed.
//!
//! A problem on either side ends the session with a `Status` on channel 3 saying what it was.

use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures::{SinkExt as _, StreamExt as _, stream::SplitStream};
use serde_json::json;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::mpsc,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        Message,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};

use super::spdy::{self, StreamReader, StreamWriter};

/// The SPDY remote-command protocol asked of the node.
pub const SPDY_REMOTE_COMMAND: &str = "v4.channel.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// The most the node's error stream may carry (a Status is a few hundred bytes).
const STATUS_LIMIT: usize = 64 * 1024;
/// How long output may still arrive after the node reported the command's end.
const OUTPUT_GRACE: Duration = Duration::from_secs(10);
/// How long the client may take to read the rest and close after the status was sent.
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);

/// Which streams an exec or attach session carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Streams {
    /// The client sends stdin.
    pub stdin: bool,
    /// The node sends stdout.
    pub stdout: bool,
    /// The node sends stderr (never with a TTY, which merges it into stdout).
    pub stderr: bool,
    /// A terminal: the client sends resize events.
    pub tty: bool,
}

/// What one client message asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientInput {
    /// Bytes for the command's stdin.
    Stdin(Bytes),
    /// A terminal size, `{"Width":..,"Height":..}`.
    Resize(Bytes),
    /// The v5 close signal for stdin.
    CloseStdin,
    /// The v5 close signal for the resize channel.
    CloseResize,
    /// The client closed the WebSocket.
    Closed,
    /// Nothing to do (control frames, empty messages, writes to server-side channels, which
    /// kube-apiserver drops as well).
    Nothing,
}

/// Reads one client message of the v5 protocol; an error says what is wrong with it.
pub fn client_input(message: Message) -> Result<ClientInput, String> {
    let data = match message {
        Message::Binary(data) => data,
        Message::Close(_) => return Ok(ClientInput::Closed),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return Ok(ClientInput::Nothing),
        Message::Text(_) => {
            return Err(
                "a text message: v5.channel.k8s.io carries only binary messages, each starting \
                 with its channel byte"
                    .into(),
            );
        }
    };
    let Some((&channel, payload)) = data.split_first() else {
        return Ok(ClientInput::Nothing);
    };
    let payload = data.slice(1..1 + payload.len());
    match channel {
        STDIN => Ok(ClientInput::Stdin(payload)),
        RESIZE => Ok(ClientInput::Resize(payload)),
        STDOUT | STDERR | ERROR => Ok(ClientInput::Nothing),
        CLOSE => match payload.as_ref() {
            [STDIN] => Ok(ClientInput::CloseStdin),
            [RESIZE] => Ok(ClientInput::CloseResize),
            [STDOUT | STDERR | ERROR] => Ok(ClientInput::Nothing),
            [other] => Err(format!(
                "a close signal for channel {other}, which v5.channel.k8s.io does not define"
            )),
            other => Err(format!(
                "a close signal of {} bytes: it is [255, <channel>]",
                other.len() + 1
            )),
        },
        other => Err(format!(
            "a message on channel {other}: v5.channel.k8s.io defines 0 stdin, 1 stdout, \
             2 stderr, 3 error, 4 resize and 255 close"
        )),
    }
}

/// A failure `Status` as the error channel carries it.
pub fn failure_status(code: u16, reason: &str, message: &str) -> Bytes {
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    Bytes::from(status.to_string())
}

fn on_channel(channel: u8, data: &[u8]) -> Message {
    let mut message = BytesMut::with_capacity(data.len() + 1);
    message.put_u8(channel);
    message.extend_from_slice(data);
    Message::Binary(message.freeze())
}

/// The node's side of a session: the streams opened for it.
struct NodeStreams {
    error: StreamReader,
    stdin: Option<StreamWriter>,
    stdout: Option<StreamReader>,
    stderr: Option<StreamReader>,
    resize: Option<StreamWriter>,
}

/// Opens the streams `streams` asks for, error stream first, as kubectl's SPDY client does; the
/// node starts the command once all of them exist.
async fn open(node: &spdy::Connection, streams: Streams) -> Result<NodeStreams, spdy::SpdyError> {
    async fn stream(node: &spdy::Connection, kind: &str) -> Result<spdy::Stream, spdy::SpdyError> {
        node.open_stream(&[("streamtype", kind)]).await
    }
    let error = stream(node, "error").await?.reader;
    let stdin = match streams.stdin {
        true => Some(stream(node, "stdin").await?.writer),
        false => None,
    };
    let stdout = match streams.stdout {
        true => Some(stream(node, "stdout").await?.reader),
        false => None,
    };
    let stderr = match streams.stderr && !streams.tty {
        true => Some(stream(node, "stderr").await?.reader),
        false => None,
    };
    let resize = match streams.tty {
        true => Some(stream(node, "resize").await?.writer),
        false => None,
    };
    Ok(NodeStreams {
        error,
        stdin,
        stdout,
        stderr,
        resize,
    })
}

/// How reading the client ended.
#[derive(Debug)]
enum InputEnd {
    /// The client closed the WebSocket or the connection ended.
    Closed,
    /// The client sent something the protocol does not allow.
    Invalid(String),
}

/// Runs one translated session until the command ends or either side goes away.
pub async fn run<S>(
    socket: WebSocketStream<S>,
    node: spdy::Connection,
    streams: Streams,
    pod: String,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, source) = socket.split();
    let (out, queue) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(write_messages(sink, queue));

    let node_streams = match open(&node, streams).await {
        Ok(node_streams) => node_streams,
        Err(err) => {
            tracing::debug!(%pod, "opening the node's SPDY streams: {err}");
            let status = failure_status(
                500,
                "InternalError",
                &format!("the node did not open the session's streams: {err}"),
            );
            let _ = out.send(on_channel(ERROR, &status)).await;
            drop(out);
            let _ = tokio::time::timeout(FINISH_TIMEOUT, writer).await;
            return;
        }
    };
    let NodeStreams {
        mut error,
        stdin,
        stdout,
        stderr,
        resize,
    } = node_streams;

    // An empty message on the lowest output channel tells the client the session is up.
    let ready = if streams.stdout {
        STDOUT
    } else if streams.stderr && !streams.tty {
        STDERR
    } else {
        ERROR
    };
    let _ = out.send(on_channel(ready, &[])).await;

    let pumps: Vec<_> = [(stdout, STDOUT), (stderr, STDERR)]
        .into_iter()
        .filter_map(|(reader, channel)| Some(tokio::spawn(pump(reader?, channel, out.clone()))))
        .collect();
    let mut input = tokio::spawn(read_input(source, stdin, resize));

    tokio::select! {
        status = error.read_to_end(STATUS_LIMIT) => {
            // The command ended: deliver its output, then how it ended.
            let _ = tokio::time::timeout(OUTPUT_GRACE, futures::future::join_all(pumps)).await;
            let status = match status {
                (status, _) if !status.is_empty() => Bytes::from(status),
                (_, None) => failure_status(
                    500,
                    "InternalError",
                    "the node ended the session without reporting how the command ended",
                ),
                (_, Some(err)) => failure_status(
                    500,
                    "InternalError",
                    &format!("reading the command's status from the node: {err}"),
                ),
            };
            let _ = out.send(on_channel(ERROR, &status)).await;
            drop(out);
            // The client reads the rest and closes in turn; its close ends `input`.
            let _ = tokio::time::timeout(FINISH_TIMEOUT, &mut input).await;
        }
        end = &mut input => {
            match end {
                Ok(InputEnd::Invalid(message)) => {
                    tracing::debug!(%pod, "ending a translated session: {message}");
                    let status = failure_status(400, "BadRequest", &format!("invalid input: {message}"));
                    let _ = out.send(on_channel(ERROR, &status)).await;
                }
                Ok(InputEnd::Closed) | Err(_) => tracing::debug!(%pod, "the client left the session"),
            }
            drop(out);
        }
    }
    input.abort();
    node.close().await;
    let _ = tokio::time::timeout(FINISH_TIMEOUT, writer).await;
}

/// Copies one node output stream to its channel.
async fn pump(mut reader: StreamReader, channel: u8, out: mpsc::Sender<Message>) {
    while let Some(Ok(chunk)) = reader.recv().await {
        if out.send(on_channel(channel, &chunk)).await.is_err() {
            return;
        }
    }
}

/// Sends queued messages to the client; once the queue closes, a normal close frame.
async fn write_messages<S>(
    mut sink: futures::stream::SplitSink<WebSocketStream<S>, Message>,
    mut queue: mpsc::Receiver<Message>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(message) = queue.recv().await {
        if sink.send(message).await.is_err() {
            return;
        }
    }
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(close))).await;
}

/// Reads the client's messages into the node's stdin and resize streams.
async fn read_input<S>(
    mut source: SplitStream<WebSocketStream<S>>,
    mut stdin: Option<StreamWriter>,
    mut resize: Option<StreamWriter>,
) -> InputEnd
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(message) = source.next().await {
        let Ok(message) = message else {
            return InputEnd::Closed;
        };
        let input = match client_input(message) {
            Ok(input) => input,
            Err(message) => return InputEnd::Invalid(message),
        };
        // A node stream that fails is the node's problem; its error stream reports it.
        match input {
            ClientInput::Stdin(data) => {
                if let Some(writer) = &stdin {
                    let _ = writer.send(data).await;
                }
            }
            ClientInput::Resize(data) => {
                if let Some(writer) = &resize {
                    let _ = writer.send(data).await;
                }
            }
            ClientInput::CloseStdin => {
                if let Some(writer) = stdin.take() {
                    let _ = writer.finish().await;
                }
            }
            ClientInput::CloseResize => {
                if let Some(writer) = resize.take() {
                    let _ = writer.finish().await;
                }
            }
            ClientInput::Closed => return InputEnd::Closed,
            ClientInput::Nothing => {}
        }
    }
    InputEnd::Closed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(bytes: &[u8]) -> Message {
        Message::Binary(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn client_messages_map_to_node_streams() {
        assert_eq!(
            client_input(binary(b"\x00hi\n")),
            Ok(ClientInput::Stdin(Bytes::from_static(b"hi\n")))
        );
        assert_eq!(
            client_input(binary(b"\x04{\"Width\":80,\"Height\":24}")),
            Ok(ClientInput::Resize(Bytes::from_static(
                b"{\"Width\":80,\"Height\":24}"
            )))
        );
        assert_eq!(client_input(binary(&[255, 0])), Ok(ClientInput::CloseStdin));
        assert_eq!(
            client_input(binary(&[255, 4])),
            Ok(ClientInput::CloseResize)
        );
        assert_eq!(client_input(binary(&[])), Ok(ClientInput::Nothing));
        assert_eq!(client_input(binary(b"\x01out")), Ok(ClientInput::Nothing));
        assert_eq!(client_input(Message::Close(None)), Ok(ClientInput::Closed));
    }

    #[test]
    fn malformed_client_messages_say_what_is_wrong() {
        let err = client_input(Message::text("0aGk=")).unwrap_err();
        assert!(err.contains("only binary messages"), "{err}");
        let err = client_input(binary(b"\x07x")).unwrap_err();
        assert!(err.contains("channel 7"), "{err}");
        let err = client_input(binary(&[255])).unwrap_err();
        assert!(err.contains("[255, <channel>]"), "{err}");
        let err = client_input(binary(&[255, 0, 4])).unwrap_err();
        assert!(err.contains("3 bytes"), "{err}");
        let err = client_input(binary(&[255, 9])).unwrap_err();
        assert!(err.contains("channel 9"), "{err}");
    }

    #[test]
    fn failure_status_is_a_status() {
        let status: serde_json::Value =
            serde_json::from_slice(&failure_status(400, "BadRequest", "bad")).unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["reason"], "BadRequest");
        assert_eq!(status["code"], 400);
        assert_eq!(status["message"], "bad");
    }
}
