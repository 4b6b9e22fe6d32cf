//! The hickory-server adapter: turns DNS queries into [`Zone`] lookups and their answers into
//! DNS messages; names outside the cluster domain go to the upstream server (or are refused).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hickory_server::{
    net::runtime::Time,
    proto::{
        op::{Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, ResponseCode},
        rr::{
            Name, RData, Record, RecordType,
            rdata::{A, AAAA, CNAME, NS, SOA, SRV},
        },
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use tokio::net::{TcpListener, UdpSocket};

use super::{
    DnsError,
    records::{Data, Entry, Lookup, QueryType, Zone},
};

/// TTL of every answer, in seconds: what CoreDNS's `kubernetes` plugin uses by default.
pub const TTL: u32 = 5;

/// How long a forwarded query waits for the upstream server.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a TCP connection may stay idle before the server closes it.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers DNS queries from the shared zone.
#[derive(Debug, Clone)]
pub struct Handler {
    zone: Arc<RwLock<Zone>>,
    synced: Arc<AtomicBool>,
    upstream: Option<SocketAddr>,
}

/// What to send back, decided before anything is encoded.
enum Reply {
    Records {
        code: ResponseCode,
        answers: Vec<Record>,
        soa: Vec<Record>,
    },
    Forwarded(Box<Message>),
    Error(ResponseCode),
}

impl Handler {
    /// A handler over `zone`; until `synced` is set, names in the cluster domain get SERVFAIL
    /// (so nobody caches an NXDOMAIN from a half-listed cluster).
    pub fn new(
        zone: Arc<RwLock<Zone>>,
        synced: Arc<AtomicBool>,
        upstream: Option<SocketAddr>,
    ) -> Self {
        Self {
            zone,
            synced,
            upstream,
        }
    }

    async fn reply(&self, request: &Request) -> Reply {
        if request.metadata.message_type != MessageType::Query {
            return Reply::Error(ResponseCode::FormErr);
        }
        if request.metadata.op_code != OpCode::Query {
            return Reply::Error(ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            return Reply::Error(ResponseCode::FormErr);
        };
        let name = info.query.name().to_string();
        let query_type = match info.query.query_type() {
            RecordType::A => QueryType::A,
            RecordType::AAAA => QueryType::Aaaa,
            RecordType::CNAME => QueryType::Cname,
            RecordType::SRV => QueryType::Srv,
            RecordType::ANY => QueryType::Any,
            _ => QueryType::Other,
        };
        let (lookup, domain) = match self.zone.read() {
            Ok(zone) => (zone.lookup(&name, query_type), zone.domain().to_owned()),
            Err(_) => return Reply::Error(ResponseCode::ServFail),
        };
        if !matches!(lookup, Lookup::Outside) && !self.synced.load(Ordering::Acquire) {
            return Reply::Error(ResponseCode::ServFail);
        }
        match lookup {
            Lookup::Outside => match self.upstream {
                Some(upstream) => match forward(upstream, request.as_slice()).await {
                    Ok(message) => Reply::Forwarded(Box::new(message)),
                    Err(err) => {
                        tracing::debug!(%name, %upstream, %err, "forwarding failed");
                        Reply::Error(ResponseCode::ServFail)
                    }
                },
                None => Reply::Error(ResponseCode::Refused),
            },
            Lookup::Answer(entries) => Reply::Records {
                code: ResponseCode::NoError,
                answers: entries.iter().filter_map(to_record).collect(),
                soa: Vec::new(),
            },
            Lookup::NoData if name.eq_ignore_ascii_case(&domain) => Reply::Records {
                code: ResponseCode::NoError,
                answers: apex_records(&domain, info.query.query_type()),
                soa: if matches!(info.query.query_type(), RecordType::SOA | RecordType::NS) {
                    Vec::new()
                } else {
                    soa_record(&domain).into_iter().collect()
                },
            },
            Lookup::NoData => Reply::Records {
                code: ResponseCode::NoError,
                answers: Vec::new(),
                soa: soa_record(&domain).into_iter().collect(),
            },
            Lookup::NxDomain => Reply::Records {
                code: ResponseCode::NXDomain,
                answers: Vec::new(),
                soa: soa_record(&domain).into_iter().collect(),
            },
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|requested| {
            let mut edns = Edns::new();
            edns.set_max_payload(requested.max_payload().max(512));
            edns
        });
        let reply = self.reply(request).await;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = self.upstream.is_some();
        let result = match &reply {
            Reply::Records { code, answers, soa } => {
                metadata.authoritative = true;
                metadata.response_code = *code;
                let response = builder.build(metadata, answers.iter(), [], soa.iter(), []);
                response_handle.send_response(response).await
            }
            Reply::Forwarded(message) => {
                metadata.response_code = message.metadata.response_code;
                metadata.truncation = message.metadata.truncation;
                metadata.authoritative = message.metadata.authoritative;
                let response = builder.build(
                    metadata,
                    message.answers.iter(),
                    message.authorities.iter(),
                    [],
                    message.additionals.iter(),
                );
                response_handle.send_response(response).await
            }
            Reply::Error(code) => {
                let response = builder.error_msg(&request.metadata, *code);
                response_handle.send_response(response).await
            }
        };
        result.unwrap_or_else(|err| {
            tracing::debug!(%err, "sending a DNS response failed");
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        })
    }
}

/// Sends the query as it came to `upstream` over UDP and returns its answer.
async fn forward(upstream: SocketAddr, query: &[u8]) -> Result<Message, DnsError> {
    let local: SocketAddr = match upstream.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let io = |source| DnsError::Upstream { upstream, source };
    let socket = UdpSocket::bind(local).await.map_err(io)?;
    socket.connect(upstream).await.map_err(io)?;
    socket.send(query).await.map_err(io)?;
    let mut buffer = vec![0; 4096];
    let read = tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv(&mut buffer))
        .await
        .map_err(|_| DnsError::UpstreamTimeout { upstream })?
        .map_err(io)?;
    let message = Message::from_vec(buffer.get(..read).unwrap_or_default()).map_err(|err| {
        DnsError::UpstreamAnswer {
            upstream,
            reason: err.to_string(),
        }
    })?;
    let id = query.first_chunk::<2>().map(|id| u16::from_be_bytes(*id));
    if Some(message.metadata.id) != id {
        return Err(DnsError::UpstreamAnswer {
            upstream,
            reason: "the answer's id differs from the query's".to_owned(),
        });
    }
    Ok(message)
}

fn name(name: &str) -> Option<Name> {
    Name::from_ascii(name).ok()
}

/// A zone entry as a DNS record.
fn to_record(entry: &Entry) -> Option<Record> {
    let owner = name(&entry.name)?;
    let data = match &entry.data {
        Data::Ip(IpAddr::V4(ip)) => RData::A(A(*ip)),
        Data::Ip(IpAddr::V6(ip)) => RData::AAAA(AAAA(*ip)),
        Data::Cname(target) => RData::CNAME(CNAME(name(target)?)),
        Data::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(*priority, *weight, *port, name(target)?)),
    };
    Some(Record::from_rdata(owner, TTL, data))
}

/// The zone's SOA, as CoreDNS writes it (`ns.dns.<domain>`, `hostmaster.<domain>`, minimum =
/// TTL so negative answers are cached as briefly as positive ones).
fn soa_record(domain: &str) -> Option<Record> {
    let serial = u32::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
    .unwrap_or(0);
    Some(Record::from_rdata(
        name(domain)?,
        TTL,
        RData::SOA(SOA::new(
            name(&format!("ns.dns.{domain}"))?,
            name(&format!("hostmaster.{domain}"))?,
            serial,
            7200,
            1800,
            86400,
            TTL,
        )),
    ))
}

/// Records at the apex: SOA and NS.
fn apex_records(domain: &str, query_type: RecordType) -> Vec<Record> {
    let mut records = Vec::new();
    if matches!(query_type, RecordType::SOA | RecordType::ANY) {
        records.extend(soa_record(domain));
    }
    if matches!(query_type, RecordType::NS | RecordType::ANY)
        && let (Some(apex), Some(ns)) = (name(domain), name(&format!("ns.dns.{domain}")))
    {
        records.push(Record::from_rdata(apex, TTL, RData::NS(NS(ns))));
    }
    records
}

/// How many UDP ports `Serving::bind` tries, for a port-0 address, to find one whose TCP twin is
/// free too.
const ANY_PORT_TRIES: u32 = 16;

/// A DNS server answering on `listen` over UDP and TCP until dropped.
pub struct Serving {
    server: hickory_server::Server<Handler>,
    /// The UDP address actually bound (port 0 resolved).
    pub address: SocketAddr,
}

impl Serving {
    /// Binds UDP and TCP on `listen` (TCP on the same port as UDP when `listen`'s port is 0).
    pub async fn bind(listen: SocketAddr, handler: Handler) -> Result<Self, DnsError> {
        let bind = |source| DnsError::Bind {
            address: listen,
            source,
        };
        // With port 0 the kernel picks a port free for UDP only; the same TCP port may be taken
        // (e.g. the local end of a client connection), so a few other UDP ports are tried.
        let tries = if listen.port() == 0 {
            ANY_PORT_TRIES
        } else {
            1
        };
        // Ports found unusable stay bound until the end, so the kernel does not offer them again.
        let mut unusable = Vec::new();
        let (udp, address, tcp) = loop {
            let udp = UdpSocket::bind(listen).await.map_err(bind)?;
            let address = udp.local_addr().map_err(bind)?;
            match TcpListener::bind(address).await {
                Ok(tcp) => break (udp, address, tcp),
                Err(err)
                    if unusable.len() + 1 < tries as usize
                        && err.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    unusable.push(udp);
                }
                Err(err) => return Err(bind(err)),
            }
        };
        drop(unusable);
        let mut server = hickory_server::Server::new(handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_TIMEOUT, 64);
        Ok(Self { server, address })
    }

    /// Serves until a listener fails.
    pub async fn wait(&mut self) -> Result<(), DnsError> {
        self.server
            .block_until_done()
            .await
            .map_err(|err| DnsError::Serve(err.to_string()))
    }
}

impl std::fmt::Debug for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serving")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}
