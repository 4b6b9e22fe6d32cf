//! What client and server say to each other on the one port they share.
//!
//! TCP: every connection starts with a 13-byte hello, [`MAGIC`] + mode + request size + response
//! size (big endian u32). Then
//! - mode [`Mode::Sink`] (TCP_STREAM): the client sends bytes until it shuts down its write side;
//!   the server answers with the number of bytes it received (u64, big endian) and closes.
//! - mode [`Mode::RequestResponse`] (TCP_RR, TCP_CRR): the client sends requests of exactly
//!   `request size` bytes, the server answers each with `response size` bytes, until the client
//!   shuts down its write side; then the server closes. TCP_CRR sends the hello and its one
//!   request in one write, so the request's first segment is 13 bytes longer than netperf's.
//!
//! UDP: a client first registers its sizes with a [`UDP_SETUP_LEN`]-byte setup datagram
//! ([`MAGIC`] + [`UDP_SETUP`] + response size + request size) that the server acknowledges with
//! the same bytes. After that, every datagram from that address is a request, answered by a
//! datagram of `response size` bytes whose first bytes (up to 8, as many as both sizes allow) are
//! copied from the request: the client puts a sequence number there to tell a late answer to an
//! earlier, timed-out request from the answer it is waiting for.

/// First bytes of every hello and UDP setup. A UDP client skips the sequence numbers whose bytes
/// would start with these, so a request is never taken for a setup.
pub(crate) const MAGIC: [u8; 4] = [0xff, b'F', b'L', b'P'];
/// Length of the TCP hello.
pub(crate) const HELLO_LEN: usize = 13;
/// Mode byte of a UDP setup datagram.
pub(crate) const UDP_SETUP: u8 = 0x55;
/// Length of a UDP setup datagram (and of its acknowledgement).
pub(crate) const UDP_SETUP_LEN: usize = 13;
/// Largest request or response the server accepts (bounds its memory per connection).
pub const MAX_MESSAGE: usize = 16 << 20;
/// Largest UDP request or response (an IPv4 datagram's payload).
pub const MAX_DATAGRAM: usize = 65_507;
/// Bytes of a UDP request the server copies into its response (the client's sequence number).
pub(crate) const UDP_ECHOED: usize = 8;

/// What a TCP connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Count everything until end of stream (TCP_STREAM).
    Sink = 1,
    /// Answer fixed-size requests with fixed-size responses (TCP_RR, TCP_CRR).
    RequestResponse = 2,
}

/// A parsed TCP hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) mode: Mode,
    pub(crate) request_size: usize,
    pub(crate) response_size: usize,
}

fn size_bytes(size: usize) -> [u8; 4] {
    u32::try_from(size).unwrap_or(u32::MAX).to_be_bytes()
}

fn read_size(bytes: &[u8]) -> usize {
    let mut raw = [0_u8; 4];
    raw.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(raw) as usize
}

impl Hello {
    pub(crate) fn encode(&self) -> [u8; HELLO_LEN] {
        let mut bytes = [0_u8; HELLO_LEN];
        bytes[..4].copy_from_slice(&MAGIC);
        bytes[4] = self.mode as u8;
        bytes[5..9].copy_from_slice(&size_bytes(self.request_size));
        bytes[9..13].copy_from_slice(&size_bytes(self.response_size));
        bytes
    }

    pub(crate) fn decode(bytes: &[u8; HELLO_LEN]) -> Result<Self, String> {
        if bytes[..4] != MAGIC {
            return Err(format!(
                "not a flotilla-perf client (first bytes {:02x?})",
                &bytes[..4]
            ));
        }
        let mode = match bytes[4] {
            1 => Mode::Sink,
            2 => Mode::RequestResponse,
            other => return Err(format!("unknown test mode {other}")),
        };
        let request_size = read_size(&bytes[5..9]);
        let response_size = read_size(&bytes[9..13]);
        if mode == Mode::RequestResponse
            && (request_size == 0
                || response_size == 0
                || request_size > MAX_MESSAGE
                || response_size > MAX_MESSAGE)
        {
            return Err(format!(
                "request size {request_size} / response size {response_size}: both must be 1 to \
                 {MAX_MESSAGE} bytes"
            ));
        }
        Ok(Self {
            mode,
            request_size,
            response_size,
        })
    }
}

/// The UDP setup datagram (also the server's acknowledgement).
pub(crate) fn udp_setup(request_size: usize, response_size: usize) -> [u8; UDP_SETUP_LEN] {
    let mut bytes = [0_u8; UDP_SETUP_LEN];
    bytes[..4].copy_from_slice(&MAGIC);
    bytes[4] = UDP_SETUP;
    bytes[5..9].copy_from_slice(&size_bytes(response_size));
    bytes[9..13].copy_from_slice(&size_bytes(request_size));
    bytes
}

/// The response size a setup datagram asks for, None if `datagram` is no setup datagram.
pub(crate) fn parse_udp_setup(datagram: &[u8]) -> Option<usize> {
    (datagram.len() == UDP_SETUP_LEN && datagram[..4] == MAGIC && datagram[4] == UDP_SETUP)
        .then(|| read_size(&datagram[5..9]))
}

/// How many leading bytes a UDP response copies from its request.
pub(crate) fn udp_echoed_len(request_size: usize, response_size: usize) -> usize {
    UDP_ECHOED.min(request_size).min(response_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips() {
        let hello = Hello {
            mode: Mode::RequestResponse,
            request_size: 1,
            response_size: 70_000,
        };
        assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
        let sink = Hello {
            mode: Mode::Sink,
            request_size: 0,
            response_size: 0,
        };
        assert_eq!(Hello::decode(&sink.encode()), Ok(sink));
    }

    #[test]
    fn hello_rejects_foreign_bytes_and_bad_sizes() {
        assert!(Hello::decode(b"GET / HTTP/1.").is_err());
        let mut bytes = Hello {
            mode: Mode::RequestResponse,
            request_size: 0,
            response_size: 1,
        }
        .encode();
        assert!(
            Hello::decode(&bytes)
                .unwrap_err()
                .contains("request size 0")
        );
        bytes[4] = 9;
        assert!(Hello::decode(&bytes).unwrap_err().contains("mode 9"));
        let huge = Hello {
            mode: Mode::RequestResponse,
            request_size: 1,
            response_size: MAX_MESSAGE + 1,
        };
        assert!(Hello::decode(&huge.encode()).is_err());
    }

    #[test]
    fn udp_setup_round_trips_and_is_not_a_request() {
        let setup = udp_setup(1, 1400);
        assert_eq!(parse_udp_setup(&setup), Some(1400));
        // Requests of the same length are not setups: they start with a sequence number.
        let mut request = [0_u8; UDP_SETUP_LEN];
        request[..8].copy_from_slice(&7_u64.to_le_bytes());
        assert_eq!(parse_udp_setup(&request), None);
        assert_eq!(parse_udp_setup(&setup[..12]), None);
    }

    #[test]
    fn echoed_prefix_fits_both_sizes() {
        assert_eq!(udp_echoed_len(1, 1), 1);
        assert_eq!(udp_echoed_len(100, 4), 4);
        assert_eq!(udp_echoed_len(100, 100), 8);
    }
}
