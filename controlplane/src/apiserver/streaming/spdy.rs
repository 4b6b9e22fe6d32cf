//! A SPDY/3.1 client session, as much of it as Kubernetes' streaming protocols use: the node side
//! of exec, attach and port-forward (kubelet, containerd, CRI-O) is Go's `spdystream`, which
//! multiplexes byte streams opened by the client (SYN_STREAM / SYN_REPLY with zlib-compressed
//! header blocks), carries their bytes in DATA frames, half-closes them with FIN and resets them
//! with RST_STREAM; PING and GOAWAY manage the connection.
//!
//! Flow control: `spdystream` neither sends WINDOW_UPDATE nor honours it, so a client that waited
//! for window updates before sending more than the initial 64 KiB would stall (e.g. `kubectl cp`
//! into a pod). This session, like kubectl's, ignores windows in both directions.
//!
//! No crate on crates.io fits: the only SPDY/3.1 implementation is GPL-licensed and speaks only
//! over WebSocket transports, so this module is Flotilla's own.

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::Duration,
};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    sync::{mpsc, oneshot},
    task::JoinHandle,
};

/// The protocol version this module speaks.
const VERSION: u16 = 3;
/// The largest frame payload accepted (the 24-bit length field allows 16 MiB).
const MAX_FRAME: usize = 1 << 24;
/// The largest decompressed header block accepted (a bound on zlib bombs).
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// DATA frames this session sends are cut at this size so one stream cannot hog the connection.
const MAX_DATA_CHUNK: usize = 32 * 1024;
/// How long the peer may take to answer a SYN_STREAM (kubelet's client waits 30 s too).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status: the stream was refused (the peer may not open streams toward a client).
pub const REFUSED_STREAM: u32 = 3;
/// RST_STREAM status: the stream is no longer needed.
pub const CANCEL: u32 = 5;

/// Header names and values, lowercase names, in the order sent or received.
pub type Headers = Vec<(String, String)>;

/// What went wrong on a SPDY connection or stream.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    /// The peer speaks another SPDY version.
    #[error("the peer speaks SPDY version {0}; only SPDY/3.1 is supported")]
    Version(u16),
    /// A frame was too short for its type, or otherwise not what SPDY/3.1 defines.
    #[error("malformed SPDY frame: {0}")]
    Malformed(String),
    /// A frame was larger than SPDY's 24-bit length allows.
    #[error("a SPDY frame of {0} bytes is larger than the 16 MiB the protocol allows")]
    TooLarge(usize),
    /// A header block did not decompress or decode.
    #[error("malformed SPDY header block: {0}")]
    HeaderBlock(String),
    /// Reading or writing the connection failed.
    #[error("the SPDY connection failed: {0}")]
    Io(String),
    /// The connection is closed (by either side).
    #[error("the SPDY connection is closed")]
    Closed,
    /// The peer sent GOAWAY: no new streams.
    #[error("the peer is shutting the SPDY connection down (GOAWAY); no new streams")]
    GoneAway,
    /// The peer reset a stream.
    #[error("the peer reset SPDY stream {stream} (status {status})")]
    Reset {
        /// The stream.
        stream: u32,
        /// The RST_STREAM status code.
        status: u32,
    },
    /// The peer did not answer a SYN_STREAM in time.
    #[error("the peer did not accept SPDY stream {0} within {REPLY_TIMEOUT:?}")]
    ReplyTimeout(u32),
}

/// The zlib dictionary SPDY/3 header blocks are compressed with (the SPDY/3 draft, section
/// 2.6.10.1): header names each behind a 32-bit length, then common values run together.
pub static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const NAMES: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const VALUES: &[&str] = &[
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information",
        "204 No Content",
        "301 Moved Permanently",
        "400 Bad Request",
        "401 Unauthorized",
        "403 Forbidden",
        "404 Not Found",
        "500 Internal Server Error",
        "501 Not Implemented",
        "503 Service Unavailable",
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00",
        " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
        "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdch",
        "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
    ];
    let mut dictionary = Vec::with_capacity(1423);
    for name in NAMES {
        dictionary.put_u32(name.len() as u32);
        dictionary.extend_from_slice(name.as_bytes());
    }
    for value in VALUES {
        dictionary.extend_from_slice(value.as_bytes());
    }
    dictionary
});

/// One SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes of a stream; `fin` half-closes the sender's side.
    Data {
        /// The stream.
        stream: u32,
        /// Last frame from this side.
        fin: bool,
        /// The payload.
        data: Bytes,
    },
    /// Opens a stream.
    SynStream {
        /// The new stream's id (odd from clients, even from servers).
        stream: u32,
        /// Half-closed at once.
        fin: bool,
        /// The stream's headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream.
        stream: u32,
        /// Half-closed at once.
        fin: bool,
        /// The reply's headers.
        headers: Headers,
    },
    /// Aborts a stream.
    RstStream {
        /// The stream.
        stream: u32,
        /// Why (1 protocol error .. 11 frame too large).
        status: u32,
    },
    /// Connection settings (read and ignored).
    Settings,
    /// A liveness check; the receiver echoes pings the other side started.
    Ping {
        /// Odd from clients, even from servers.
        id: u32,
    },
    /// The sender opens no more streams and accepts none after `last_good`.
    GoAway {
        /// The last stream the sender processed.
        last_good: u32,
        /// 0 OK, 1 protocol error, 2 internal error.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream: u32,
        /// Last frame from this side.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// Flow-control credit (read and ignored, as by `spdystream`).
    WindowUpdate {
        /// The stream (0: the connection).
        stream: u32,
        /// The credit in bytes.
        delta: u32,
    },
    /// A control frame type SPDY/3.1 does not define: receivers must ignore it.
    Unknown(u16),
}

/// Compresses header blocks: one zlib stream per connection and direction, flushed (not ended)
/// after each block, primed with [`DICTIONARY`].
pub struct HeaderEncoder {
    deflate: Compress,
}

impl HeaderEncoder {
    /// A fresh compression context for one connection.
    pub fn new() -> Result<Self, SpdyError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(&DICTIONARY)
            .map_err(|err| SpdyError::HeaderBlock(format!("priming the compressor: {err}")))?;
        Ok(Self { deflate })
    }

    /// The compressed block for `headers`. Names are lowercased and repeated names joined with
    /// NUL, since Go's reader rejects both uppercase and duplicate names.
    pub fn encode(&mut self, headers: &[(String, String)]) -> Result<Vec<u8>, SpdyError> {
        let mut merged: Vec<(String, String)> = Vec::new();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            match merged.iter_mut().find(|(n, _)| *n == name) {
                Some((_, existing)) => {
                    existing.push('\0');
                    existing.push_str(value);
                }
                None => merged.push((name, value.clone())),
            }
        }
        let mut plain = Vec::new();
        plain.put_u32(len32(merged.len())?);
        for (name, value) in &merged {
            plain.put_u32(len32(name.len())?);
            plain.extend_from_slice(name.as_bytes());
            plain.put_u32(len32(value.len())?);
            plain.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let start = self.deflate.total_in();
        loop {
            let consumed = usize::try_from(self.deflate.total_in() - start)
                .map_err(|err| SpdyError::HeaderBlock(err.to_string()))?;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.len().max(256));
            }
            self.deflate
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|err| SpdyError::HeaderBlock(format!("compressing: {err}")))?;
            let consumed = usize::try_from(self.deflate.total_in() - start)
                .map_err(|err| SpdyError::HeaderBlock(err.to_string()))?;
            // A sync flush is complete once all input is taken and zlib left room to spare.
            if consumed == plain.len() && out.capacity() - out.len() >= 64 {
                return Ok(out);
            }
        }
    }
}

/// Decompresses header blocks: the peer's one zlib stream, fed block by block.
pub struct HeaderDecoder {
    inflate: Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self {
            inflate: Decompress::new(true),
        }
    }
}

impl HeaderDecoder {
    /// Decompresses and parses one header block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let plain = self.inflate_block(block)?;
        parse_header_block(&plain)
    }

    fn inflate_block(&mut self, block: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity((block.len() * 4).clamp(256, MAX_HEADER_BLOCK));
        let start = self.inflate.total_in();
        let consumed = |inflate: &Decompress| {
            usize::try_from(inflate.total_in() - start).unwrap_or(usize::MAX)
        };
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::HeaderBlock(format!(
                        "it decompresses to more than {MAX_HEADER_BLOCK} bytes"
                    )));
                }
                out.reserve(out.len());
            }
            let before = (consumed(&self.inflate), self.inflate.total_out());
            let input = block.get(before.0..).unwrap_or_default();
            match self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(Status::Ok | Status::BufError) => {}
                Ok(Status::StreamEnd) => {
                    return Err(SpdyError::HeaderBlock(
                        "the peer ended its header compression stream".into(),
                    ));
                }
                Err(err) if err.needs_dictionary().is_some() => {
                    self.inflate.set_dictionary(&DICTIONARY).map_err(|err| {
                        SpdyError::HeaderBlock(format!(
                            "the peer compresses with another dictionary than SPDY/3's: {err}"
                        ))
                    })?;
                    continue;
                }
                Err(err) => return Err(SpdyError::HeaderBlock(err.to_string())),
            }
            let now = (consumed(&self.inflate), self.inflate.total_out());
            if now.0 >= block.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if now == before && out.len() < out.capacity() {
                return Err(SpdyError::HeaderBlock(
                    "the block ends in the middle of compressed data".into(),
                ));
            }
        }
    }
}

fn len32(len: usize) -> Result<u32, SpdyError> {
    u32::try_from(len).map_err(|_| SpdyError::HeaderBlock(format!("{len} bytes is too long")))
}

/// Parses a decompressed header block (count, then length-prefixed names and values; a value
/// may hold several, separated by NUL).
pub fn parse_header_block(mut plain: &[u8]) -> Result<Headers, SpdyError> {
    let short = || SpdyError::HeaderBlock("it ends before its last header".into());
    let take_u32 = |plain: &mut &[u8]| -> Result<usize, SpdyError> {
        if plain.len() < 4 {
            return Err(short());
        }
        Ok(plain.get_u32() as usize)
    };
    let count = take_u32(&mut plain)?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let field = |plain: &mut &[u8]| -> Result<String, SpdyError> {
            let len = take_u32(plain)?;
            if plain.len() < len {
                return Err(short());
            }
            let (text, rest) = plain.split_at(len);
            *plain = rest;
            String::from_utf8(text.to_vec())
                .map_err(|_| SpdyError::HeaderBlock("a header is not UTF-8".into()))
        };
        let name = field(&mut plain)?;
        let value = field(&mut plain)?;
        if name.is_empty() {
            return Err(SpdyError::HeaderBlock("a header has an empty name".into()));
        }
        for value in value.split('\0') {
            headers.push((name.clone(), value.to_owned()));
        }
    }
    Ok(headers)
}

/// Reads one frame from the front of `buffer`, if it holds a whole one.
pub fn decode_frame(
    buffer: &mut BytesMut,
    headers: &mut HeaderDecoder,
) -> Result<Option<Frame>, SpdyError> {
    if buffer.len() < 8 {
        return Ok(None);
    }
    let length =
        (usize::from(buffer[5]) << 16) | (usize::from(buffer[6]) << 8) | usize::from(buffer[7]);
    if buffer.len() < 8 + length {
        buffer.reserve(8 + length - buffer.len());
        return Ok(None);
    }
    let mut head = buffer.split_to(8);
    let mut payload = buffer.split_to(length).freeze();
    let first = head.get_u32();
    let flags = head.get_u8();
    let fin = flags & FLAG_FIN != 0;
    if first & 0x8000_0000 == 0 {
        let stream = first & 0x7fff_ffff;
        if stream == 0 {
            return Err(SpdyError::Malformed("a DATA frame for stream 0".into()));
        }
        return Ok(Some(Frame::Data {
            stream,
            fin,
            data: payload,
        }));
    }
    let version = ((first >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(SpdyError::Version(version));
    }
    let kind = (first & 0xffff) as u16;
    let need = |n: usize, what: &str| {
        if payload.len() < n {
            Err(SpdyError::Malformed(format!(
                "a {what} frame of {} bytes (at least {n} needed)",
                payload.len()
            )))
        } else {
            Ok(())
        }
    };
    let frame = match kind {
        SYN_STREAM => {
            need(10, "SYN_STREAM")?;
            let stream = payload.get_u32() & 0x7fff_ffff;
            payload.advance(6); // associated stream, priority, slot: unused by Kubernetes
            Frame::SynStream {
                stream,
                fin,
                headers: headers.decode(&payload)?,
            }
        }
        SYN_REPLY => {
            need(4, "SYN_REPLY")?;
            let stream = payload.get_u32() & 0x7fff_ffff;
            Frame::SynReply {
                stream,
                fin,
                headers: headers.decode(&payload)?,
            }
        }
        RST_STREAM => {
            need(8, "RST_STREAM")?;
            Frame::RstStream {
                stream: payload.get_u32() & 0x7fff_ffff,
                status: payload.get_u32(),
            }
        }
        SETTINGS => Frame::Settings,
        PING => {
            need(4, "PING")?;
            Frame::Ping {
                id: payload.get_u32(),
            }
        }
        GOAWAY => {
            need(8, "GOAWAY")?;
            Frame::GoAway {
                last_good: payload.get_u32() & 0x7fff_ffff,
                status: payload.get_u32(),
            }
        }
        HEADERS => {
            need(4, "HEADERS")?;
            let stream = payload.get_u32() & 0x7fff_ffff;
            Frame::Headers {
                stream,
                fin,
                headers: headers.decode(&payload)?,
            }
        }
        WINDOW_UPDATE => {
            need(8, "WINDOW_UPDATE")?;
            Frame::WindowUpdate {
                stream: payload.get_u32() & 0x7fff_ffff,
                delta: payload.get_u32() & 0x7fff_ffff,
            }
        }
        other => Frame::Unknown(other),
    };
    Ok(Some(frame))
}

/// Appends `frame`'s wire form to `out`.
pub fn encode_frame(
    frame: &Frame,
    headers: &mut HeaderEncoder,
    out: &mut Vec<u8>,
) -> Result<(), SpdyError> {
    let control = |out: &mut Vec<u8>, kind: u16, flags: u8, payload: &[u8]| {
        out.put_u16(0x8000 | VERSION);
        out.put_u16(kind);
        put_flags_length(out, flags, payload.len())?;
        out.extend_from_slice(payload);
        Ok::<_, SpdyError>(())
    };
    let fin_flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
    match frame {
        Frame::Data { stream, fin, data } => {
            out.put_u32(stream & 0x7fff_ffff);
            put_flags_length(out, fin_flag(*fin), data.len())?;
            out.extend_from_slice(data);
        }
        Frame::SynStream {
            stream,
            fin,
            headers: list,
        } => {
            let mut payload = Vec::new();
            payload.put_u32(stream & 0x7fff_ffff);
            payload.put_u32(0); // not associated with another stream
            payload.put_u16(0); // priority 0 (highest), credential slot 0
            payload.extend_from_slice(&headers.encode(list)?);
            control(out, SYN_STREAM, fin_flag(*fin), &payload)?;
        }
        Frame::SynReply {
            stream,
            fin,
            headers: list,
        }
        | Frame::Headers {
            stream,
            fin,
            headers: list,
        } => {
            let kind = if matches!(frame, Frame::SynReply { .. }) {
                SYN_REPLY
            } else {
                HEADERS
            };
            let mut payload = Vec::new();
            payload.put_u32(stream & 0x7fff_ffff);
            payload.extend_from_slice(&headers.encode(list)?);
            control(out, kind, fin_flag(*fin), &payload)?;
        }
        Frame::RstStream { stream, status } => {
            let mut payload = Vec::new();
            payload.put_u32(stream & 0x7fff_ffff);
            payload.put_u32(*status);
            control(out, RST_STREAM, 0, &payload)?;
        }
        Frame::Settings => control(out, SETTINGS, 0, &0u32.to_be_bytes())?,
        Frame::Ping { id } => control(out, PING, 0, &id.to_be_bytes())?,
        Frame::GoAway { last_good, status } => {
            let mut payload = Vec::new();
            payload.put_u32(last_good & 0x7fff_ffff);
            payload.put_u32(*status);
            control(out, GOAWAY, 0, &payload)?;
        }
        Frame::WindowUpdate { stream, delta } => {
            let mut payload = Vec::new();
            payload.put_u32(stream & 0x7fff_ffff);
            payload.put_u32(delta & 0x7fff_ffff);
            control(out, WINDOW_UPDATE, 0, &payload)?;
        }
        Frame::Unknown(kind) => control(out, *kind, 0, &[])?,
    }
    Ok(())
}

fn put_flags_length(out: &mut Vec<u8>, flags: u8, length: usize) -> Result<(), SpdyError> {
    if length >= MAX_FRAME {
        return Err(SpdyError::TooLarge(length));
    }
    out.put_u8(flags);
    out.put_u8((length >> 16) as u8);
    out.put_u16((length & 0xffff) as u16);
    Ok(())
}

/// What the session knows about one open stream.
struct Slot {
    reply: Option<oneshot::Sender<Result<Headers, SpdyError>>>,
    data: Option<mpsc::Sender<Result<Bytes, SpdyError>>>,
}

#[derive(Default)]
struct Shared {
    next_stream: u32,
    streams: HashMap<u32, Slot>,
    /// Why the connection ended, once it has.
    ended: Option<SpdyError>,
    gone_away: bool,
}

/// A client session over one upgraded connection. Dropping it ends the session.
pub struct Connection {
    out: mpsc::Sender<Frame>,
    shared: Arc<Mutex<Shared>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Connection {
    /// Starts a client session on `io` (after the HTTP upgrade to `SPDY/3.1`).
    pub fn client<IO>(io: IO) -> Result<Self, SpdyError>
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let encoder = HeaderEncoder::new()?;
        let (read, write) = tokio::io::split(io);
        let (out, queue) = mpsc::channel::<Frame>(64);
        let shared = Arc::new(Mutex::new(Shared {
            next_stream: 1,
            ..Shared::default()
        }));
        let writer = tokio::spawn(write_frames(write, queue, encoder, shared.clone()));
        let reader = tokio::spawn(read_frames(read, out.clone(), shared.clone()));
        Ok(Self {
            out,
            shared,
            reader,
            writer,
        })
    }

    /// Opens a stream with `headers` and waits for the peer to accept it.
    pub async fn open_stream(&self, headers: &[(&str, &str)]) -> Result<Stream, SpdyError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let (data_tx, data_rx) = mpsc::channel(16);
        let stream = {
            let mut shared = lock(&self.shared);
            if let Some(err) = &shared.ended {
                return Err(err.clone());
            }
            if shared.gone_away {
                return Err(SpdyError::GoneAway);
            }
            let stream = shared.next_stream;
            shared.next_stream += 2;
            shared.streams.insert(
                stream,
                Slot {
                    reply: Some(reply_tx),
                    data: Some(data_tx),
                },
            );
            stream
        };
        let frame = Frame::SynStream {
            stream,
            fin: false,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        };
        self.out.send(frame).await.map_err(|_| self.ended())?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, reply_rx)
            .await
            .map_err(|_| SpdyError::ReplyTimeout(stream))?
            .map_err(|_| self.ended())??;
        Ok(Stream {
            reply,
            writer: StreamWriter {
                stream,
                out: self.out.clone(),
            },
            reader: StreamReader {
                stream,
                data: data_rx,
            },
        })
    }

    /// Why the connection is unusable.
    fn ended(&self) -> SpdyError {
        lock(&self.shared)
            .ended
            .clone()
            .unwrap_or(SpdyError::Closed)
    }

    /// Tells the peer no more streams will be opened, then ends the session.
    pub async fn close(self) {
        let _ = self
            .out
            .send(Frame::GoAway {
                last_good: 0,
                status: 0,
            })
            .await;
        // Let the writer flush the GOAWAY; the drop then ends both tasks.
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while self.out.capacity() < self.out.max_capacity() {
                tokio::task::yield_now().await;
            }
        })
        .await;
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A panic while holding the lock leaves plain data behind; keep using it.
    shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Ends the session for every stream with `why`.
fn end_session(shared: &Mutex<Shared>, why: SpdyError) {
    let streams = {
        let mut shared = lock(shared);
        shared.ended.get_or_insert(why.clone());
        std::mem::take(&mut shared.streams)
    };
    for (_, slot) in streams {
        if let Some(reply) = slot.reply {
            let _ = reply.send(Err(why.clone()));
        }
        if let Some(data) = slot.data
            && why != SpdyError::Closed
        {
            let _ = data.try_send(Err(why.clone()));
        }
    }
}

async fn write_frames<W: AsyncWrite>(
    write: W,
    mut queue: mpsc::Receiver<Frame>,
    mut encoder: HeaderEncoder,
    shared: Arc<Mutex<Shared>>,
) {
    tokio::pin!(write);
    let mut wire = Vec::new();
    while let Some(frame) = queue.recv().await {
        wire.clear();
        if let Err(err) = encode_frame(&frame, &mut encoder, &mut wire) {
            end_session(&shared, err);
            return;
        }
        // Write everything queued before flushing, so a burst costs one flush.
        while let Ok(frame) = queue.try_recv() {
            if let Err(err) = encode_frame(&frame, &mut encoder, &mut wire) {
                end_session(&shared, err);
                return;
            }
        }
        if let Err(err) = async {
            write.write_all(&wire).await?;
            write.flush().await
        }
        .await
        {
            end_session(&shared, SpdyError::Io(err.to_string()));
            return;
        }
    }
    let _ = write.shutdown().await;
}

async fn read_frames<R: AsyncRead>(read: R, out: mpsc::Sender<Frame>, shared: Arc<Mutex<Shared>>) {
    tokio::pin!(read);
    let mut buffer = BytesMut::with_capacity(16 * 1024);
    let mut headers = HeaderDecoder::default();
    let why = loop {
        let frame = match decode_frame(&mut buffer, &mut headers) {
            Ok(Some(frame)) => frame,
            Ok(None) => match read.read_buf(&mut buffer).await {
                Ok(0) if buffer.is_empty() => break SpdyError::Closed,
                Ok(0) => break SpdyError::Malformed("the connection ended inside a frame".into()),
                Ok(_) => continue,
                Err(err) => break SpdyError::Io(err.to_string()),
            },
            Err(err) => {
                // Tell the peer why before hanging up (GOAWAY status 1: protocol error).
                let _ = out.try_send(Frame::GoAway {
                    last_good: 0,
                    status: 1,
                });
                break err;
            }
        };
        if let Err(err) = handle_frame(frame, &out, &shared).await {
            break err;
        }
    };
    end_session(&shared, why);
}

async fn handle_frame(
    frame: Frame,
    out: &mpsc::Sender<Frame>,
    shared: &Mutex<Shared>,
) -> Result<(), SpdyError> {
    match frame {
        Frame::SynReply {
            stream,
            fin,
            headers,
        } => {
            let mut shared = lock(shared);
            if let Some(slot) = shared.streams.get_mut(&stream) {
                if let Some(reply) = slot.reply.take() {
                    let _ = reply.send(Ok(headers));
                }
                if fin {
                    slot.data = None;
                }
            }
        }
        Frame::Headers { stream, fin, .. } => {
            // Kubernetes sends no trailing headers; only their FIN matters.
            if fin && let Some(slot) = lock(shared).streams.get_mut(&stream) {
                slot.data = None;
            }
        }
        Frame::Data { stream, fin, data } => {
            let sender = lock(shared)
                .streams
                .get(&stream)
                .and_then(|slot| slot.data.clone());
            if let Some(sender) = sender {
                // Waiting here is the flow control: a slow consumer slows the connection, as
                // spdystream's unbuffered channels do.
                if !data.is_empty() {
                    let _ = sender.send(Ok(data)).await;
                }
                if fin && let Some(slot) = lock(shared).streams.get_mut(&stream) {
                    slot.data = None;
                }
            }
        }
        Frame::RstStream { stream, status } => {
            if let Some(slot) = lock(shared).streams.remove(&stream) {
                let err = SpdyError::Reset { stream, status };
                if let Some(reply) = slot.reply {
                    let _ = reply.send(Err(err.clone()));
                }
                if let Some(data) = slot.data {
                    let _ = data.try_send(Err(err));
                }
            }
        }
        Frame::SynStream { stream, .. } => {
            // Kubernetes' protocols open streams from the client only.
            out.send(Frame::RstStream {
                stream,
                status: REFUSED_STREAM,
            })
            .await
            .map_err(|_| SpdyError::Closed)?;
        }
        Frame::Ping { id } => {
            // Even ids are the server's own pings: echo them. Odd ones would answer ours.
            if id % 2 == 0 {
                out.send(Frame::Ping { id })
                    .await
                    .map_err(|_| SpdyError::Closed)?;
            }
        }
        Frame::GoAway { .. } => lock(shared).gone_away = true,
        Frame::Settings | Frame::WindowUpdate { .. } | Frame::Unknown(_) => {}
    }
    Ok(())
}

/// An accepted stream: its reply headers and its two directions.
pub struct Stream {
    /// The SYN_REPLY's headers.
    pub reply: Headers,
    /// The sending side.
    pub writer: StreamWriter,
    /// The receiving side.
    pub reader: StreamReader,
}

/// Sends on a stream.
#[derive(Clone)]
pub struct StreamWriter {
    stream: u32,
    out: mpsc::Sender<Frame>,
}

impl StreamWriter {
    /// Sends `data` (in DATA frames of at most 32 KiB).
    pub async fn send(&self, mut data: Bytes) -> Result<(), SpdyError> {
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_DATA_CHUNK));
            self.frame(false, chunk).await?;
        }
        Ok(())
    }

    /// Half-closes the stream (an empty DATA frame with FIN): the peer reads EOF.
    pub async fn finish(&self) -> Result<(), SpdyError> {
        self.frame(true, Bytes::new()).await
    }

    /// Aborts the stream.
    pub async fn reset(&self) -> Result<(), SpdyError> {
        self.out
            .send(Frame::RstStream {
                stream: self.stream,
                status: CANCEL,
            })
            .await
            .map_err(|_| SpdyError::Closed)
    }

    async fn frame(&self, fin: bool, data: Bytes) -> Result<(), SpdyError> {
        self.out
            .send(Frame::Data {
                stream: self.stream,
                fin,
                data,
            })
            .await
            .map_err(|_| SpdyError::Closed)
    }
}

/// Receives from a stream.
pub struct StreamReader {
    stream: u32,
    data: mpsc::Receiver<Result<Bytes, SpdyError>>,
}

impl StreamReader {
    /// The next bytes; `None` once the peer half-closed the stream or the connection ended.
    pub async fn recv(&mut self) -> Option<Result<Bytes, SpdyError>> {
        self.data.recv().await
    }

    /// The stream's id.
    pub fn id(&self) -> u32 {
        self.stream
    }

    /// Everything until the stream ends, at most `limit` bytes, and what ended it if that was
    /// not a FIN. Kubernetes' SPDY servers end a session by resetting every stream once they
    /// have written the last bytes, so a reset after the data is the usual end.
    pub async fn read_to_end(&mut self, limit: usize) -> (Vec<u8>, Option<SpdyError>) {
        let mut all = Vec::new();
        while let Some(chunk) = self.recv().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => return (all, Some(err)),
            };
            if all.len() + chunk.len() > limit {
                let err = SpdyError::Malformed(format!(
                    "stream {} carries more than {limit} bytes",
                    self.stream
                ));
                return (all, Some(err));
            }
            all.extend_from_slice(&chunk);
        }
        (all, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(items: &[(&str, &str)]) -> Headers {
        items
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn dictionary_is_spdy3s() {
        // The SPDY/3 draft's dictionary is 1423 bytes; zlib identifies it by its Adler-32, which
        // a Go peer checks against its own copy.
        assert_eq!(DICTIONARY.len(), 1423);
        let mut a: u32 = 1;
        let mut b: u32 = 0;
        for byte in DICTIONARY.iter() {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(DICTIONARY.ends_with(b"utf-,*,enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_across_frames() {
        let mut encoder = HeaderEncoder::new().unwrap();
        let mut decoder = HeaderDecoder::default();
        let first = headers(&[("StreamType", "error"), ("port", "80"), ("port", "81")]);
        // The second block reuses the first's compression context, as on a real connection.
        let second = headers(&[("streamtype", "stdout")]);
        let a = encoder.encode(&first).unwrap();
        let b = encoder.encode(&second).unwrap();
        assert_eq!(
            decoder.decode(&a).unwrap(),
            headers(&[("streamtype", "error"), ("port", "80"), ("port", "81")])
        );
        assert_eq!(decoder.decode(&b).unwrap(), second);
    }

    #[test]
    fn frames_round_trip() {
        let mut encoder = HeaderEncoder::new().unwrap();
        let mut decoder = HeaderDecoder::default();
        let frames = vec![
            Frame::SynStream {
                stream: 1,
                fin: false,
                headers: headers(&[("streamtype", "stdin")]),
            },
            Frame::SynReply {
                stream: 1,
                fin: false,
                headers: Vec::new(),
            },
            Frame::Data {
                stream: 1,
                fin: false,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream: 1,
                fin: true,
                data: Bytes::new(),
            },
            Frame::RstStream {
                stream: 3,
                status: CANCEL,
            },
            Frame::Ping { id: 2 },
            Frame::GoAway {
                last_good: 5,
                status: 0,
            },
            Frame::Headers {
                stream: 1,
                fin: true,
                headers: headers(&[("a", "b")]),
            },
            Frame::WindowUpdate {
                stream: 0,
                delta: 1000,
            },
            Frame::Settings,
        ];
        let mut wire = Vec::new();
        for frame in &frames {
            encode_frame(frame, &mut encoder, &mut wire).unwrap();
        }
        // Fed in small pieces, as a socket may deliver them.
        let mut buffer = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in wire.chunks(3) {
            buffer.extend_from_slice(piece);
            while let Some(frame) = decode_frame(&mut buffer, &mut decoder).unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames);
        assert!(buffer.is_empty());
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let mut decoder = HeaderDecoder::default();
        let decode = |bytes: &[u8], decoder: &mut HeaderDecoder| {
            let mut buffer = BytesMut::from(bytes);
            decode_frame(&mut buffer, decoder)
        };
        // SPDY/2.
        assert_eq!(
            decode(&[0x80, 2, 0, 1, 0, 0, 0, 0], &mut decoder),
            Err(SpdyError::Version(2))
        );
        // A PING without its id.
        assert!(matches!(
            decode(&[0x80, 3, 0, 6, 0, 0, 0, 2, 0, 0], &mut decoder),
            Err(SpdyError::Malformed(_))
        ));
        // DATA for stream 0.
        assert!(decode(&[0, 0, 0, 0, 0, 0, 0, 0], &mut decoder).is_err());
        // A SYN_REPLY whose header block is not zlib.
        let garbage = [
            0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef,
        ];
        assert!(matches!(
            decode(&garbage, &mut decoder),
            Err(SpdyError::HeaderBlock(_))
        ));
        // Unknown control frames are skipped, as the protocol says.
        assert_eq!(
            decode(
                &[0x80, 3, 0, 99, 0, 0, 0, 1, 7],
                &mut HeaderDecoder::default()
            ),
            Ok(Some(Frame::Unknown(99)))
        );
        // Truncated header blocks.
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
        assert!(parse_header_block(&[0, 0]).is_err());
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn header_bombs_are_refused() {
        // A block that inflates to far more than any header block may.
        let mut deflate = Compress::new(Compression::best(), true);
        deflate.set_dictionary(&DICTIONARY).unwrap();
        let zeros = vec![0u8; 4 * MAX_HEADER_BLOCK];
        let mut block = Vec::with_capacity(zeros.len());
        deflate
            .compress_vec(&zeros, &mut block, FlushCompress::Sync)
            .unwrap();
        let err = HeaderDecoder::default().decode(&block).unwrap_err();
        assert!(
            err.to_string().contains("decompresses to more than"),
            "{err}"
        );
    }

    /// A minimal SPDY server on the other end of a pipe: accepts streams, echoes stdin to
    /// stdout, reports on the error stream and pings the client.
    #[tokio::test]
    async fn session_opens_streams_sends_and_receives() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let connection = Connection::client(client_io).unwrap();
        let server = tokio::spawn(async move {
            let (mut read, mut write) = tokio::io::split(server_io);
            let mut encoder = HeaderEncoder::new().unwrap();
            let mut decoder = HeaderDecoder::default();
            let mut buffer = BytesMut::new();
            let mut received = Vec::new();
            let send = |frame: Frame, encoder: &mut HeaderEncoder| {
                let mut wire = Vec::new();
                encode_frame(&frame, encoder, &mut wire).unwrap();
                wire
            };
            let ping = send(Frame::Ping { id: 2 }, &mut encoder);
            write.write_all(&ping).await.unwrap();
            loop {
                let frame = loop {
                    if let Some(frame) = decode_frame(&mut buffer, &mut decoder).unwrap() {
                        break frame;
                    }
                    if read.read_buf(&mut buffer).await.unwrap() == 0 {
                        return received;
                    }
                };
                received.push(frame.clone());
                let answer = match frame {
                    Frame::SynStream { stream, .. } => vec![Frame::SynReply {
                        stream,
                        fin: false,
                        headers: Vec::new(),
                    }],
                    Frame::Data {
                        stream: 3,
                        fin: false,
                        data,
                    } => vec![Frame::Data {
                        stream: 5,
                        fin: false,
                        data,
                    }],
                    Frame::Data {
                        stream: 3,
                        fin: true,
                        ..
                    } => vec![
                        Frame::Data {
                            stream: 5,
                            fin: true,
                            data: Bytes::new(),
                        },
                        Frame::Data {
                            stream: 1,
                            fin: true,
                            data: Bytes::from_static(b"{\"status\":\"Success\"}"),
                        },
                    ],
                    _ => Vec::new(),
                };
                for frame in answer {
                    let wire = send(frame, &mut encoder);
                    write.write_all(&wire).await.unwrap();
                }
            }
        });
        let mut error = connection
            .open_stream(&[("streamtype", "error")])
            .await
            .unwrap();
        let stdin = connection
            .open_stream(&[("streamtype", "stdin")])
            .await
            .unwrap();
        let mut stdout = connection
            .open_stream(&[("streamtype", "stdout")])
            .await
            .unwrap();
        assert_eq!(
            (error.reader.id(), stdin.reader.id(), stdout.reader.id()),
            (1, 3, 5)
        );
        stdin
            .writer
            .send(Bytes::from(vec![b'x'; 100_000]))
            .await
            .unwrap();
        stdin.writer.finish().await.unwrap();
        let (echoed, cut) = stdout.reader.read_to_end(1 << 20).await;
        assert_eq!((echoed.len(), cut), (100_000, None));
        let (status, cut) = error.reader.read_to_end(1024).await;
        assert_eq!(
            (status.as_slice(), cut),
            (&b"{\"status\":\"Success\"}"[..], None)
        );
        connection.close().await;
        let received = server.await.unwrap();
        // The client echoed the server's ping and cut stdin into 32 KiB frames.
        assert!(received.contains(&Frame::Ping { id: 2 }));
        let stdin_frames = received
            .iter()
            .filter(|f| matches!(f, Frame::Data { stream: 3, .. }))
            .count();
        assert_eq!(stdin_frames, 5);
        assert!(received.iter().any(|f| matches!(f, Frame::GoAway { .. })));
    }

    #[tokio::test]
    async fn a_reset_or_a_closed_connection_fails_the_stream() {
        let (client_io, server_io) = tokio::io::duplex(1024);
        let connection = Connection::client(client_io).unwrap();
        let server = tokio::spawn(async move {
            let (mut read, mut write) = tokio::io::split(server_io);
            let mut buffer = BytesMut::new();
            let mut decoder = HeaderDecoder::default();
            loop {
                if let Some(Frame::SynStream { stream, .. }) =
                    decode_frame(&mut buffer, &mut decoder).unwrap()
                {
                    let mut wire = Vec::new();
                    let mut encoder = HeaderEncoder::new().unwrap();
                    encode_frame(
                        &Frame::RstStream {
                            stream,
                            status: REFUSED_STREAM,
                        },
                        &mut encoder,
                        &mut wire,
                    )
                    .unwrap();
                    write.write_all(&wire).await.unwrap();
                    return;
                }
                read.read_buf(&mut buffer).await.unwrap();
            }
        });
        let err = connection
            .open_stream(&[("streamtype", "error")])
            .await
            .err()
            .unwrap();
        assert_eq!(
            err,
            SpdyError::Reset {
                stream: 1,
                status: REFUSED_STREAM
            }
        );
        server.await.unwrap();
        // The server hung up: new streams fail with a clear error instead of hanging.
        let err = connection
            .open_stream(&[("streamtype", "error")])
            .await
            .err()
            .unwrap();
        assert_eq!(err, SpdyError::Closed);
    }
}
