//! `/containerLogs/{ns}/{pod}/{container}`: reads the CRI log file containerd writes for a
//! container and answers with its raw lines, as kubelet does.
//!
//! The file format is the CRI one: `<RFC3339Nano time> <stdout|stderr> <P|F> <content>\n`, where a
//! line longer than the runtime's buffer is split into `P` (partial) records closed by an `F`
//! (full) one. Parsing, joining, tail, since and limit are plain functions over bytes (unit tested
//! below); [`stream`] is the thin part that reads the file and asks CRI whether the container
//! still runs.

use std::{
    collections::VecDeque,
    convert::Infallible,
    io::{self, BufRead},
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::Bytes;
use flotilla_apimachinery::query::is_true;
use hyper::body::Frame;
use jiff::Timestamp;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncSeekExt as _, BufReader},
    sync::mpsc,
};

use crate::pods::cri::{Cri, api};

/// How often a followed log file is checked for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How often, while following, containerd is asked whether the container still runs.
const STATUS_POLL: Duration = Duration::from_secs(1);
/// Lines are sent in chunks of about this size (fewer, larger writes to the client).
const CHUNK_BYTES: usize = 32 * 1024;

/// The options of one log request (kubelet's `PodLogOptions`, without `container`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new lines until the container exits.
    pub follow: bool,
    /// Read the previous (terminated) instance of the container.
    pub previous: bool,
    /// Prefix every line with its RFC3339Nano timestamp and a space.
    pub timestamps: bool,
    /// Only lines at or after this time (`sinceSeconds` is turned into one).
    pub since: Option<Timestamp>,
    /// Only the last N lines.
    pub tail_lines: Option<u64>,
    /// Stop after this many bytes (the last line may be cut).
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Parses kubelet's query parameters; `now` anchors `sinceSeconds`. Errors are kubelet's
    /// 400 messages.
    pub fn from_query(pairs: &[(String, String)], now: Timestamp) -> Result<Self, String> {
        let mut options = Self::default();
        let mut since_seconds = None;
        let mut since_time = None;
        for (key, value) in pairs {
            match key.as_str() {
                "follow" => options.follow = is_true(value),
                "previous" => options.previous = is_true(value),
                "timestamps" => options.timestamps = is_true(value),
                "tailLines" => options.tail_lines = Some(parse_count(key, value, 0)?),
                "limitBytes" => options.limit_bytes = Some(parse_count(key, value, 1)?),
                "sinceSeconds" => since_seconds = Some(parse_count(key, value, 1)?),
                "sinceTime" => {
                    since_time = Some(value.parse::<Timestamp>().map_err(|err| {
                        format!("invalid sinceTime {value:?}: must be an RFC3339 time: {err}")
                    })?);
                }
                // kubelet ignores what it does not know (e.g. `container`, `insecureSkipTLS...`).
                _ => {}
            }
        }
        options.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => {
                return Err("at most one of sinceTime or sinceSeconds may be specified".into());
            }
            (Some(seconds), None) => {
                let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
                Some(
                    now.checked_sub(jiff::SignedDuration::from_secs(seconds))
                        .unwrap_or(Timestamp::MIN),
                )
            }
            (None, time) => time,
        };
        Ok(options)
    }
}

fn parse_count(key: &str, value: &str, minimum: u64) -> Result<u64, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| *n >= minimum)
        .ok_or_else(|| format!("invalid {key} {value:?}: must be an integer of at least {minimum}"))
}

/// Which stream a CRI log record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    /// The container's stdout.
    Stdout,
    /// The container's stderr.
    Stderr,
}

/// One record of a CRI log file (one physical line, without its newline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriRecord<'a> {
    /// The timestamp as written (RFC3339Nano).
    pub timestamp: &'a str,
    /// The timestamp, parsed.
    pub time: Timestamp,
    /// stdout or stderr.
    pub stream: LogStream,
    /// `P`: the line continues in the next record of the same stream.
    pub partial: bool,
    /// The content, without newline.
    pub content: &'a [u8],
}

/// Why a CRI log record could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed CRI log line: {0}")]
pub struct ParseError(&'static str);

/// Parses one physical line of a CRI log file (without its trailing newline).
pub fn parse_record(line: &[u8]) -> Result<CriRecord<'_>, ParseError> {
    let mut fields = line.splitn(4, |b| *b == b' ');
    let timestamp = fields.next().ok_or(ParseError("empty line"))?;
    let timestamp =
        std::str::from_utf8(timestamp).map_err(|_| ParseError("timestamp is not UTF-8"))?;
    let time = timestamp
        .parse::<Timestamp>()
        .map_err(|_| ParseError("timestamp is not RFC3339"))?;
    let stream = match fields.next() {
        Some(b"stdout") => LogStream::Stdout,
        Some(b"stderr") => LogStream::Stderr,
        _ => return Err(ParseError("stream is neither stdout nor stderr")),
    };
    // The tag field may grow `:`-separated parts in later CRI versions; the first says P or F.
    let tag = fields.next().ok_or(ParseError("no tag"))?;
    let partial = match tag.split(|b| *b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return Err(ParseError("tag is neither P nor F")),
    };
    Ok(CriRecord {
        timestamp,
        time,
        stream,
        partial,
        content: fields.next().unwrap_or_default(),
    })
}

/// One logical log line: partial records joined, with the first record's timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The timestamp as written.
    pub timestamp: String,
    /// The timestamp, parsed.
    pub time: Timestamp,
    /// stdout or stderr.
    pub stream: LogStream,
    /// The content, without newline.
    pub content: Vec<u8>,
}

impl LogLine {
    /// The bytes kubelet answers for this line.
    pub fn render(&self, timestamps: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.content.len() + 40);
        if timestamps {
            out.extend_from_slice(self.timestamp.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.content);
        out.push(b'\n');
        out
    }
}

/// Joins partial records into lines. stdout and stderr are joined separately: the runtime may
/// interleave a partial stdout line with stderr records.
#[derive(Debug, Default)]
pub struct Joiner {
    stdout: Option<LogLine>,
    stderr: Option<LogLine>,
}

impl Joiner {
    /// Feeds one physical line; returns the logical line it completes, if any. Malformed
    /// records are skipped, as kubelet does after logging them.
    pub fn push(&mut self, physical: &[u8]) -> Option<LogLine> {
        let physical = physical.strip_suffix(b"\n").unwrap_or(physical);
        let record = match parse_record(physical) {
            Ok(record) => record,
            Err(err) => {
                tracing::debug!("skipping a log record: {err}");
                return None;
            }
        };
        let slot = match record.stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        };
        let line = slot.get_or_insert_with(|| LogLine {
            timestamp: record.timestamp.to_owned(),
            time: record.time,
            stream: record.stream,
            content: Vec::new(),
        });
        line.content.extend_from_slice(record.content);
        if record.partial { None } else { slot.take() }
    }
}

/// The byte offset where the last `lines` logical lines of a CRI log start (the end of the
/// file for 0). Scans the whole file once, keeping only `lines` offsets.
pub fn tail_start(mut reader: impl BufRead, lines: u64) -> io::Result<u64> {
    let keep = usize::try_from(lines).unwrap_or(usize::MAX);
    let mut starts: VecDeque<u64> = VecDeque::new();
    let mut offset = 0u64;
    let mut at_line_start = true;
    let mut physical = Vec::new();
    loop {
        physical.clear();
        let read = reader.read_until(b'\n', &mut physical)?;
        if read == 0 || physical.last() != Some(&b'\n') {
            // End of file, or a record still being written: not a line yet.
            break;
        }
        let partial = parse_record(&physical[..physical.len() - 1]).is_ok_and(|r| r.partial);
        if at_line_start && keep > 0 {
            if starts.len() == keep {
                starts.pop_front();
            }
            starts.push_back(offset);
        }
        at_line_start = !partial;
        offset += read as u64;
    }
    Ok(if keep == 0 {
        offset
    } else {
        starts.front().copied().unwrap_or(offset)
    })
}

/// Applies `since` and `limitBytes` to rendered lines.
#[derive(Debug)]
pub struct Filter {
    since: Option<Timestamp>,
    timestamps: bool,
    remaining: Option<u64>,
}

impl Filter {
    /// A filter for `options`.
    pub fn new(options: &LogOptions) -> Self {
        Self {
            since: options.since,
            timestamps: options.timestamps,
            remaining: options.limit_bytes,
        }
    }

    /// Appends what `line` contributes to `out`; false once the byte limit is used up (nothing
    /// more may be written).
    pub fn write(&mut self, line: &LogLine, out: &mut Vec<u8>) -> bool {
        if self.remaining == Some(0) {
            return false;
        }
        if self.since.is_some_and(|since| line.time < since) {
            return true;
        }
        let rendered = line.render(self.timestamps);
        match &mut self.remaining {
            None => out.extend_from_slice(&rendered),
            Some(remaining) => {
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(rendered.len());
                out.extend_from_slice(&rendered[..take]);
                *remaining -= take as u64;
            }
        }
        self.remaining != Some(0)
    }
}

/// Where a container's log is and whether it still runs.
async fn container_status(
    cri: &Cri,
    container_id: &str,
) -> Result<Option<api::ContainerStatus>, tonic::Status> {
    match cri
        .runtime
        .clone()
        .container_status(api::ContainerStatusRequest {
            container_id: container_id.to_owned(),
            verbose: false,
        })
        .await
    {
        Ok(response) => Ok(response.into_inner().status),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(status),
    }
}

/// Why a log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// containerd does not know the container (removed since the locator saw it).
    #[error("container {0} not found in the container runtime")]
    Gone(String),
    /// containerd did not answer the status request.
    #[error("asking containerd for the status of container {id}: {message}")]
    Runtime {
        /// The CRI container id.
        id: String,
        /// containerd's message.
        message: String,
    },
    /// The log file could not be opened or read.
    #[error("reading log file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// An open log: the reader positioned where output starts. Opening is separate from streaming so
/// errors become a proper status before the 200 is sent.
#[derive(Debug)]
pub struct OpenLog {
    container_id: String,
    path: PathBuf,
    reader: BufReader<tokio::fs::File>,
    options: LogOptions,
}

/// Finds the log file of `container_id` through CRI and positions a reader for `options`.
pub async fn open(cri: &Cri, container_id: &str, options: LogOptions) -> Result<OpenLog, LogError> {
    let status = container_status(cri, container_id)
        .await
        .map_err(|status| LogError::Runtime {
            id: container_id.to_owned(),
            message: status.message().to_owned(),
        })?
        .ok_or_else(|| LogError::Gone(container_id.to_owned()))?;
    let path = PathBuf::from(status.log_path);
    let file_error = |path: &Path| {
        let path = path.to_owned();
        move |source| LogError::File { path, source }
    };
    let start = match options.tail_lines {
        None => 0,
        Some(lines) => {
            let scan_path = path.clone();
            tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&scan_path)?;
                tail_start(io::BufReader::new(file), lines)
            })
            .await
            .map_err(|err| io::Error::other(err.to_string()))
            .and_then(|result| result)
            .map_err(file_error(&path))?
        }
    };
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(file_error(&path))?;
    file.seek(io::SeekFrom::Start(start))
        .await
        .map_err(file_error(&path))?;
    Ok(OpenLog {
        container_id: container_id.to_owned(),
        path,
        reader: BufReader::new(file),
        options,
    })
}

/// A frame of the log response body.
pub type LogFrame = Result<Frame<Bytes>, Infallible>;

/// Streams `log` into `sender` until the file is read (or, with `follow`, until the container has
/// exited and the file is drained), the byte limit is reached, or the receiver is gone (the
/// client went away).
pub async fn stream(cri: Cri, mut log: OpenLog, sender: mpsc::Sender<LogFrame>) {
    let mut joiner = Joiner::default();
    let mut filter = Filter::new(&log.options);
    let mut physical = Vec::new();
    let mut out = Vec::new();
    let mut exited = false;
    let mut last_status = tokio::time::Instant::now();
    loop {
        let read = match log.reader.read_until(b'\n', &mut physical).await {
            Ok(read) => read,
            Err(err) => {
                tracing::warn!(path = %log.path.display(), "reading a container log: {err}");
                break;
            }
        };
        if read > 0 && physical.last() == Some(&b'\n') {
            let line = joiner.push(&physical);
            physical.clear();
            if let Some(line) = line {
                let more = filter.write(&line, &mut out);
                if !more {
                    break;
                }
                if out.len() >= CHUNK_BYTES && !send(&sender, &mut out).await {
                    return;
                }
            }
            continue;
        }
        // End of what is written so far (an unfinished record stays in `physical`).
        if !send(&sender, &mut out).await {
            return;
        }
        if !log.options.follow || exited {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(FOLLOW_POLL) => {}
            () = sender.closed() => return,
        }
        if last_status.elapsed() >= STATUS_POLL {
            last_status = tokio::time::Instant::now();
            // One more pass over the file after seeing the exit drains what was written last.
            exited = match container_status(&cri, &log.container_id).await {
                Ok(Some(status)) => status.state == api::ContainerState::ContainerExited as i32,
                Ok(None) => true,
                Err(status) => {
                    tracing::debug!("container status while following its log: {status}");
                    false
                }
            };
        }
    }
    let _ = send(&sender, &mut out).await;
}

/// Sends what `out` holds; false if the client is gone.
async fn send(sender: &mpsc::Sender<LogFrame>, out: &mut Vec<u8>) -> bool {
    if out.is_empty() {
        return !sender.is_closed();
    }
    let chunk = Bytes::from(std::mem::take(out));
    sender.send(Ok(Frame::data(chunk))).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-11-23T10:00:00.000000001Z stdout F first
2026-11-23T10:00:01.5Z stderr F second
2026-11-23T10:00:02Z stdout P thi
2026-11-23T10:00:02.1Z stderr F interleaved
2026-11-23T10:00:02.2Z stdout P r
2026-11-23T10:00:02.3Z stdout F d
2026-11-23T10:00:03+01:00 stdout F 
2026-11-23T10:00:04Z stdout F last
";

    fn lines(log: &str) -> Vec<LogLine> {
        let mut joiner = Joiner::default();
        log.split_inclusive('\n')
            .filter_map(|l| joiner.push(l.as_bytes()))
            .collect()
    }

    fn render(log: &str, options: &LogOptions) -> String {
        let start = match options.tail_lines {
            Some(n) => usize::try_from(tail_start(log.as_bytes(), n).unwrap()).unwrap(),
            None => 0,
        };
        let mut filter = Filter::new(options);
        let mut out = Vec::new();
        for line in lines(&log[start..]) {
            if !filter.write(&line, &mut out) {
                break;
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn records_parse() {
        let record = parse_record(b"2026-11-23T10:00:00.123456789Z stderr P a b  c").unwrap();
        assert_eq!(record.timestamp, "2026-11-23T10:00:00.123456789Z");
        assert_eq!(record.stream, LogStream::Stderr);
        assert!(record.partial);
        assert_eq!(record.content, b"a b  c");
        let empty = parse_record(b"2026-11-23T10:00:00Z stdout F").unwrap();
        assert_eq!(empty.content, b"");
        assert!(parse_record(b"yesterday stdout F x").is_err());
        assert!(parse_record(b"2026-11-23T10:00:00Z stdin F x").is_err());
        assert!(parse_record(b"2026-11-23T10:00:00Z stdout X x").is_err());
        assert!(parse_record(b"").is_err());
    }

    #[test]
    fn partial_records_join_per_stream() {
        let all = lines(LOG);
        let contents: Vec<&[u8]> = all.iter().map(|l| l.content.as_slice()).collect();
        assert_eq!(
            contents,
            vec![
                b"first".as_slice(),
                b"second",
                b"interleaved",
                b"third",
                b"",
                b"last"
            ]
        );
        // The joined line carries the time of its first record.
        assert_eq!(all[3].timestamp, "2026-11-23T10:00:02Z");
    }

    #[test]
    fn plain_and_timestamped_output() {
        assert_eq!(
            render(LOG, &LogOptions::default()),
            "first\nsecond\ninterleaved\nthird\n\nlast\n"
        );
        let stamped = render(
            LOG,
            &LogOptions {
                timestamps: true,
                tail_lines: Some(1),
                ..LogOptions::default()
            },
        );
        assert_eq!(stamped, "2026-11-23T10:00:04Z last\n");
    }

    #[test]
    fn tail_counts_logical_lines() {
        let tail = |n| {
            render(
                LOG,
                &LogOptions {
                    tail_lines: Some(n),
                    ..LogOptions::default()
                },
            )
        };
        assert_eq!(tail(0), "");
        assert_eq!(tail(2), "\nlast\n");
        // The joined line's partial records and the interleaved stderr line both come along.
        assert_eq!(tail(4), "interleaved\nthird\n\nlast\n");
        assert_eq!(tail(100), render(LOG, &LogOptions::default()));
        // A record still being written (no newline yet) is not a line.
        let unfinished = format!("{LOG}2026-11-23T10:00:05Z stdout F hal");
        assert_eq!(
            tail_start(unfinished.as_bytes(), 0).unwrap(),
            LOG.len() as u64
        );
    }

    #[test]
    fn since_and_limit() {
        let since = |time: &str| LogOptions {
            since: Some(time.parse().unwrap()),
            ..LogOptions::default()
        };
        assert_eq!(
            render(LOG, &since("2026-11-23T10:00:02Z")),
            "interleaved\nthird\nlast\n"
        );
        // 10:00:03+01:00 is 09:00:03Z, before every other line.
        assert_eq!(render(LOG, &since("2026-11-23T10:00:04Z")), "last\n");
        let limited = LogOptions {
            limit_bytes: Some(9),
            ..LogOptions::default()
        };
        assert_eq!(render(LOG, &limited), "first\nsec");
    }

    #[test]
    fn query_parsing_follows_kubelet() {
        let pairs = |items: &[(&str, &str)]| -> Vec<(String, String)> {
            items
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let options = LogOptions::from_query(
            &pairs(&[
                ("follow", "true"),
                ("timestamps", "1"),
                ("tailLines", "5"),
                ("limitBytes", "100"),
                ("sinceSeconds", "60"),
                ("container", "web"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(
            options,
            LogOptions {
                follow: true,
                previous: false,
                timestamps: true,
                since: Some("2026-11-23T09:59:00Z".parse().unwrap()),
                tail_lines: Some(5),
                limit_bytes: Some(100),
            }
        );
        let err = LogOptions::from_query(
            &pairs(&[("sinceSeconds", "1"), ("sinceTime", "2026-11-23T09:00:00Z")]),
            now,
        )
        .unwrap_err();
        assert!(err.contains("at most one of"), "{err}");
        assert!(LogOptions::from_query(&pairs(&[("limitBytes", "0")]), now).is_err());
        assert!(LogOptions::from_query(&pairs(&[("tailLines", "-1")]), now).is_err());
        assert!(
            !LogOptions::from_query(&pairs(&[("follow", "FALSE")]), now)
                .unwrap()
                .follow
        );
        assert!(LogOptions::from_query(&pairs(&[("sinceTime", "now")]), now).is_err());
    }
}
