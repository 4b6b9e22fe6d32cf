//! Service load balancing at the socket: `connect()` and `sendmsg()` to a ClusterIP:port from a
//! process in the node's pod cgroup are rewritten to one of the frontend's ready backends, chosen
//! at random, once per connection (not per packet); `getpeername()` and `recvmsg()` show the
//! ClusterIP again. A frontend without ready backends refuses `connect()` at once (EPERM).

use aya_ebpf::{
    btf_maps::{HashMap, LruHashMap},
    helpers::generated::{bpf_get_prandom_u32, bpf_get_socket_cookie},
    macros::{btf_map, cgroup_sock_addr},
    programs::SockAddrContext,
};
use flotilla_common::services::{
    BACKENDS_MAX_ENTRIES, BackendEntry, BackendKey, PROTO_TCP, PROTO_UDP, SERVICES_MAX_ENTRIES,
    SOCK_REVNAT_MAX_ENTRIES, ServiceEntry, ServiceKey, SockRevNat,
};

/// `SOCK_STREAM` / `SOCK_DGRAM`: the socket type tells the protocol when `protocol` is 0.
const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
/// Verdicts of cgroup sock_addr programs.
const ALLOW: i32 = 1;
const REJECT: i32 = 0;

#[btf_map]
static SERVICES: HashMap<ServiceKey, ServiceEntry, { SERVICES_MAX_ENTRIES as usize }> =
    HashMap::new();

#[btf_map]
static BACKENDS: HashMap<BackendKey, BackendEntry, { BACKENDS_MAX_ENTRIES as usize }> =
    HashMap::new();

#[btf_map]
static SOCK_REVNAT: LruHashMap<u64, SockRevNat, { SOCK_REVNAT_MAX_ENTRIES as usize }> =
    LruHashMap::new();

#[cgroup_sock_addr(connect4)]
fn sock_connect4(ctx: SockAddrContext) -> i32 {
    translate(&ctx)
}

#[cgroup_sock_addr(sendmsg4)]
fn sock_sendmsg4(ctx: SockAddrContext) -> i32 {
    translate(&ctx)
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

#[inline(always)]
fn translate(ctx: &SockAddrContext) -> i32 {
    // SAFETY: the context is valid for the program's run.
    let (ip, port) = unsafe { ((*ctx.sock_addr).user_ip4, (*ctx.sock_addr).user_port) };
    let key = ServiceKey {
        ip: ip.to_ne_bytes(),
        port: port as u16,
        proto: protocol(ctx),
        pad: 0,
    };
    let Some(service) = SERVICES.get_ptr(key) else {
        return ALLOW;
    };
    // SAFETY: a pointer into the map value, valid during this run.
    let service = unsafe { *service };
    if service.count == 0 {
        return REJECT;
    }
    // SAFETY: plain helper call.
    let slot = unsafe { bpf_get_prandom_u32() } % service.count;
    let Some(backend) = BACKENDS.get_ptr(BackendKey {
        service_id: service.id,
        slot,
    }) else {
        // The agent shrinks a frontend by lowering count before deleting slots, so a missing
        // slot is a frontend being rewritten right now: refuse rather than leak the VIP.
        return REJECT;
    };
    // SAFETY: as above.
    let backend = unsafe { *backend };
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
