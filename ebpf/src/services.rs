//! Service load balancing at the socket: `connect()` and `sendmsg()` to a frontend (ClusterIP:port,
//! or a node address and NodePort) are rewritten to one of the frontend's backends, once per
//! connection (not per packet); `getpeername()` and `recvmsg()` show the frontend again. A
//! frontend without backends refuses `connect()` at once (EPERM).
//!
//! Two attachments share the code: `sock_*` on the node's pod cgroup (every pod's process), and
//! `host_*` on the machine's root cgroup, acting only on sockets of the node's own network
//! namespace (the node itself, whatever cgroup its processes are in; several nodes of the local
//! cluster share one kernel, each with its own maps and namespace).
//!
//! Backend selection (random, Maglev by flow hash for the per-packet NAT, or sticky per client
//! with ClientIP session affinity) is shared with the per-packet NAT in `nat.rs`.

use aya_ebpf::{
    bindings::BPF_F_INNER_MAP,
    btf_maps::{Array, HashMap, HashOfMaps, LruHashMap},
    helpers::generated::{
        bpf_get_netns_cookie, bpf_get_prandom_u32, bpf_get_socket_cookie, bpf_ktime_get_ns,
    },
    macros::{btf_map, cgroup_sock_addr},
    programs::SockAddrContext,
};
use flotilla_common::services::{
    AFFINITY_MAX_ENTRIES, AffinityEntry, AffinityKey, BACKENDS_MAX_ENTRIES, BackendEntry,
    BackendKey, MAGLEV_CHUNK, MAGLEV_MAX_CHUNKS, MaglevChunk, NODEPORT_IP, PROTO_TCP, PROTO_UDP,
    SERVICE_AFFINITY, SERVICE_MAGLEV, SERVICES_MAX_ENTRIES, SOCK_REVNAT_MAX_ENTRIES, ServiceEntry,
    ServiceKey, SockRevNat,
};

use crate::network;

/// `SOCK_STREAM` / `SOCK_DGRAM`: the socket type tells the protocol when `protocol` is 0.
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
/// Verdicts of cgroup sock_addr programs.
const ALLOW: i32 = 1;
const REJECT: i32 = 0;
const NS_PER_SEC: u64 = 1_000_000_000;

#[btf_map]
static SERVICES: HashMap<ServiceKey, ServiceEntry, { SERVICES_MAX_ENTRIES as usize }> =
    HashMap::new();

#[btf_map]
static BACKENDS: HashMap<BackendKey, BackendEntry, { BACKENDS_MAX_ENTRIES as usize }> =
    HashMap::new();

/// Each Maglev frontend's table. The inner arrays are made by the agent, one per table, sized
/// for the node's M (`BPF_F_INNER_MAP`: their size may differ from this template's).
#[btf_map]
static MAGLEV: HashOfMaps<
    u32,
    Array<MaglevChunk, { MAGLEV_MAX_CHUNKS as usize }, { BPF_F_INNER_MAP as usize }>,
    { SERVICES_MAX_ENTRIES as usize },
> = HashOfMaps::new();

#[btf_map]
static SOCK_REVNAT: LruHashMap<u64, SockRevNat, { SOCK_REVNAT_MAX_ENTRIES as usize }> =
    LruHashMap::new();

#[btf_map]
static AFFINITY: LruHashMap<AffinityKey, AffinityEntry, { AFFINITY_MAX_ENTRIES as usize }> =
    LruHashMap::new();

/// Which sockets an attachment serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Every socket of the cgroup attached to (the node's pods).
    Pods,
    /// Only sockets of the node's own network namespace.
    Host,
}

#[cgroup_sock_addr(connect4)]
fn sock_connect4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, Scope::Pods)
}

#[cgroup_sock_addr(sendmsg4)]
fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, Scope::Pods)
}

#[cgroup_sock_addr(recvmsg4)]
fn sock_recvmsg4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    ALLOW
}

#[cgroup_sock_addr(getpeername4)]
fn sock_getpeername4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    ALLOW
}

#[cgroup_sock_addr(connect4)]
fn host_connect4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, Scope::Host)
}

#[cgroup_sock_addr(sendmsg4)]
fn host_sendmsg4(ctx: SockAddrContext) -> i32 {
    translate(&ctx, Scope::Host)
}

#[cgroup_sock_addr(recvmsg4)]
fn host_recvmsg4(ctx: SockAddrContext) -> i32 {
    // A socket cookie is unique on the machine, so another namespace's socket never finds an
    // entry here: no scope check needed.
    reverse(&ctx);
    ALLOW
}

#[cgroup_sock_addr(getpeername4)]
fn host_getpeername4(ctx: SockAddrContext) -> i32 {
    reverse(&ctx);
    ALLOW
}

#[inline(always)]
fn protocol(ctx: &SockAddrContext) -> u8 {
    // SAFETY: the context is valid for the program's run.
    let (protocol, kind) = unsafe { ((*ctx.sock_addr).protocol, (*ctx.sock_addr).type_) };
    match (protocol, kind) {
        (6, _) | (0, SOCK_STREAM) => PROTO_TCP,
        (17, _) | (0, SOCK_DGRAM) => PROTO_UDP,
        _ => 0,
    }
}

/// The frontend `key` names: a ClusterIP, or a NodePort when the address is this node's.
#[inline(always)]
pub(crate) fn frontend(key: &ServiceKey) -> Option<ServiceEntry> {
    if let Some(service) = exact(key) {
        return Some(service);
    }
    if !network::is_own_address(key.ip) {
        return None;
    }
    exact(&ServiceKey {
        ip: NODEPORT_IP,
        ..*key
    })
}

/// The frontend stored under exactly `key`.
#[inline(always)]
pub(crate) fn exact(key: &ServiceKey) -> Option<ServiceEntry> {
    // SAFETY: a pointer into the map value, valid during this run.
    SERVICES.get_ptr(key).map(|service| unsafe { *service })
}

/// The backend of `service` for `client` (an IP, or a netns cookie): the one it had while its
/// session affinity lasts and the backend is still in its slot, else the Maglev table's for
/// `flow_hash` (per-packet NAT of a Maglev frontend), else one at random.
#[inline(always)]
pub(crate) fn select(
    service: &ServiceEntry,
    client: u64,
    flow_hash: Option<u32>,
) -> Option<BackendEntry> {
    if service.count == 0 {
        return None;
    }
    let sticky = service.flags & SERVICE_AFFINITY != 0;
    let affinity_key = AffinityKey {
        service_id: service.id,
        pad: 0,
        client,
    };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    if sticky && let Some(entry) = AFFINITY.get_ptr_mut(affinity_key) {
        // SAFETY: a pointer into the map value, valid during this run.
        let remembered = unsafe { *entry };
        let timeout = u64::from(service.affinity_timeout) * NS_PER_SEC;
        if now.wrapping_sub(remembered.last_used_ns) < timeout
            && remembered.slot < service.count
            && backend(service.id, remembered.slot) == Some(remembered.backend)
        {
            // SAFETY: as above; a racing writer can only store another valid time.
            unsafe { (*entry).last_used_ns = now };
            return Some(remembered.backend);
        }
    }
    let slot = match flow_hash.and_then(|hash| maglev_slot(service, hash)) {
        Some(slot) => slot,
        // SAFETY: plain helper call.
        None => unsafe { bpf_get_prandom_u32() % service.count },
    };
    // A missing slot is a frontend being rewritten right now (the agent lowers the count before
    // deleting slots): refuse rather than leak the frontend address.
    let chosen = backend(service.id, slot)?;
    if sticky {
        let entry = AffinityEntry {
            slot,
            backend: chosen,
            pad: 0,
            last_used_ns: now,
        };
        let _ = AFFINITY.insert(affinity_key, entry, 0);
    }
    Some(chosen)
}

/// The slot `service`'s Maglev table gives `hash`; None when the frontend has no table (yet),
/// or the table names a slot beyond the count (a rewrite in progress): the caller picks at
/// random then.
#[inline(always)]
fn maglev_slot(service: &ServiceEntry, hash: u32) -> Option<u32> {
    if service.flags & SERVICE_MAGLEV == 0 {
        return None;
    }
    let size = network::maglev_table_size();
    if size == 0 {
        return None;
    }
    let entry = hash % size;
    let chunk = entry / MAGLEV_CHUNK as u32;
    // SAFETY: the agent never changes an inner array after inserting it (a new table is a new
    // array), so the value read is a whole table's.
    let chunk = unsafe { MAGLEV.get_value(&service.id, &chunk) }?;
    let slot = chunk[(entry as usize) & (MAGLEV_CHUNK - 1)];
    (slot < service.count).then_some(slot)
}

#[inline(always)]
fn backend(service_id: u32, slot: u32) -> Option<BackendEntry> {
    let found = BACKENDS.get_ptr(BackendKey { service_id, slot })?;
    // SAFETY: a pointer into the map value, valid during this run.
    Some(unsafe { *found })
}

#[inline(always)]
fn translate(ctx: &SockAddrContext, scope: Scope) -> i32 {
    // SAFETY: plain helper call on the program's context.
    let netns = unsafe { bpf_get_netns_cookie(ctx.sock_addr.cast()) };
    if scope == Scope::Host && !network::is_node_netns(netns) {
        return ALLOW;
    }
    // SAFETY: the context is valid for the program's run.
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    let key = ServiceKey {
        ip: ip.to_ne_bytes(),
        port: port as u16,
        proto: protocol(ctx),
        pad: 0,
    };
    let Some(service) = frontend(&key) else {
        return ALLOW;
    };
    // The network namespace stands for the client: the socket has no address yet, and one
    // namespace is one pod (or the node).
    let Some(backend) = select(&service, netns, None) else {
        return REJECT;
    };
    // SAFETY: the context is writable for these fields in connect4/sendmsg4.
    unsafe {
        (*ctx.sock_addr).user_ip4 = u32::from_ne_bytes(backend.ip);
        (*ctx.sock_addr).user_port = u32::from(backend.port);
    }
    let revnat = SockRevNat {
        backend,
        vip: key.ip,
        vport: key.port,
        pad: 0,
    };
    // SAFETY: plain helper call on the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let _ = SOCK_REVNAT.insert(cookie, revnat, 0);
    ALLOW
}

#[inline(always)]
fn reverse(ctx: &SockAddrContext) {
    // SAFETY: plain helper call on the program's context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    let Some(revnat) = SOCK_REVNAT.get_ptr(cookie) else {
        return;
    };
    // SAFETY: a pointer into the map value, valid during this run.
    let revnat = unsafe { *revnat };
    // SAFETY: the context is valid; recvmsg4/getpeername4 may rewrite the address.
    unsafe {
        let (ip, port) = ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port);
        if ip == u32::from_ne_bytes(revnat.backend.ip) && port as u16 == revnat.backend.port {
            (*ctx.sock_addr).user_ip4 = u32::from_ne_bytes(revnat.vip);
            (*ctx.sock_addr).user_port = u32::from(revnat.vport);
        }
    }
}
