//! Bringing a node's pod network up at agent start: load the programs against the pinned maps,
//! create or adopt the VXLAN device, tell the programs about the node, reopen the address pool
//! and re-register the pods that already run. Each step is idempotent, so a restarted or
//! upgraded agent goes through the same path without touching established traffic.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::Context as _;
use flotilla_common::network::{Ipv4Prefix, NodeConfig, OVERLAY_VNI};

use super::{
    announce,
    maglev::TableSize,
    masquerade,
    network::{NetworkDatapath, NetworkMaps, SockScope},
    overlay::{self, OVERLAY_DEVICE, OverlaySettings},
    pins::NodePins,
    tunnels::{Routing, RoutingPlan, parse_ipv4_cidr},
};
use crate::cni_api::{Backend, ipam::Ipam};

/// What the node's network needs to know.
#[derive(Clone, Debug)]
pub struct NetworkSettings {
    /// The node's name (pin directory).
    pub node_name: String,
    /// The node's underlay address.
    pub node_ip: Ipv4Addr,
    /// The node's podCIDR.
    pub pod_cidr: String,
    /// The cluster's pod network.
    pub cluster_cidr: String,
    /// MTU override for the overlay and pods.
    pub mtu: Option<u32>,
    /// How pod traffic reaches other nodes.
    pub routing: Routing,
    /// M of the node's Maglev tables (the programs read it from the node's configuration).
    pub maglev_table_size: TableSize,
    /// Where the address pool lives.
    pub ipam_dir: PathBuf,
    /// The cgroup (v2) directory the node's pods run below, where the socket load balancer
    /// attaches; None leaves services to other means.
    pub pod_cgroup: Option<PathBuf>,
}

/// A running node network.
#[derive(Debug)]
pub struct NodeNetwork {
    /// The CNI API's backend.
    pub backend: Arc<Backend>,
    /// The pinned maps (shared with the tunnel sync).
    pub maps: Arc<Mutex<NetworkMaps>>,
    /// The pods' MTU.
    pub mtu: u32,
    /// How other nodes are reached (for the tunnel sync).
    pub routing: RoutingPlan,
    /// The underlay link LoadBalancer addresses are announced on (None: it has no MAC).
    pub announce_link: Option<announce::Link>,
}

/// Brings the node's network up (see the module docs).
pub async fn start(settings: &NetworkSettings) -> anyhow::Result<NodeNetwork> {
    let pins = NodePins::new(&settings.node_name)?;
    let mut datapath = NetworkDatapath::load(&pins).context("loading the network datapath")?;
    let cluster_cidr = parse_ipv4_cidr(&settings.cluster_cidr).with_context(|| {
        format!(
            "--cluster-cidr {:?} is not an IPv4 CIDR",
            settings.cluster_cidr
        )
    })?;
    let pod_cidr = parse_ipv4_cidr(&settings.pod_cidr)
        .with_context(|| format!("the node's podCIDR {:?} is not IPv4", settings.pod_cidr))?;
    let device = overlay::ensure(&OverlaySettings {
        node_ip: settings.node_ip,
        cluster_cidr,
        mtu: settings.mtu,
    })
    .await
    .context("setting up the overlay device")?;
    let mut maps = NetworkMaps::open(&pins)?;
    // The configuration first: the host socket balancer acts only once it knows the namespace.
    maps.set_node_config(&NodeConfig {
        vxlan_ifindex: device.ifindex,
        vni: OVERLAY_VNI,
        node_ipv4: settings.node_ip.octets(),
        vxlan_mac: device.mac,
        pad: [0; 2],
        underlay_ifindex: device.underlay_ifindex,
        netns_cookie: netns_cookie().context("reading the node's network namespace cookie")?,
        maglev_table_size: settings.maglev_table_size.get(),
        pad2: 0,
        pod_cidr: prefix(pod_cidr),
        cluster_cidr: prefix(cluster_cidr),
    })?;
    datapath
        .attach_overlay(OVERLAY_DEVICE)
        .context("attaching the overlay programs")?;
    datapath
        .attach_underlay(&device.underlay_name)
        .with_context(|| {
            format!(
                "attaching NodePort and masquerade to {}",
                device.underlay_name
            )
        })?;
    // Only once the datapath masquerades: the rule an older agent installed goes.
    masquerade::remove_legacy_rule().await;
    if let Some(cgroup) = &settings.pod_cgroup {
        datapath
            .attach_sock_lb(cgroup, SockScope::Pods)
            .with_context(|| {
                format!("attaching the socket load balancer to {}", cgroup.display())
            })?;
    }
    let root = unified_cgroup("");
    datapath
        .attach_sock_lb(&root, SockScope::Host)
        .with_context(|| {
            format!(
                "attaching the node's socket load balancer to {}",
                root.display()
            )
        })?;
    let ipam = Ipam::open(&settings.ipam_dir, &settings.pod_cidr)?;
    // One handle on the maps, shared by the CNI backend, the tunnel sync and the metrics.
    let maps = Arc::new(Mutex::new(maps));
    let backend = Arc::new(Backend::new(
        ipam,
        Arc::new(Mutex::new(datapath)),
        maps.clone(),
        device.mtu,
    ));
    let restored = backend
        .restore()
        .context("restoring the node's endpoints")?;
    let routing = RoutingPlan {
        mode: settings.routing,
        segment: device.underlay_segment,
    };
    tracing::info!(
        device = OVERLAY_DEVICE,
        ifindex = device.ifindex,
        mtu = device.mtu,
        routing = %routing.mode,
        segment = %format!("{}/{}", routing.segment.0, routing.segment.1),
        restored,
        "pod network up"
    );
    Ok(NodeNetwork {
        backend,
        maps,
        mtu: device.mtu,
        routing,
        announce_link: device.underlay_mac.map(|mac| announce::Link {
            ifindex: device.underlay_ifindex,
            mac,
        }),
    })
}

/// The cookie of the calling thread's network namespace (`SO_NETNS_COOKIE`, Linux 5.14), the
/// value `bpf_get_netns_cookie` gives the programs for its sockets.
pub fn netns_cookie() -> std::io::Result<u64> {
    use std::os::fd::AsRawFd as _;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid socket and an output buffer of the size passed.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cookie)
}

/// The cgroup v2 directory for the cgroup parent `root` (e.g. `/flotilla/node1`): below
/// `/sys/fs/cgroup/unified` on a hybrid hierarchy (runc puts containers there too), else below
/// `/sys/fs/cgroup` when that is cgroup v2 itself.
pub fn unified_cgroup(root: &str) -> PathBuf {
    let relative = root.trim_start_matches('/');
    let hybrid = std::path::Path::new("/sys/fs/cgroup/unified");
    if hybrid.join("cgroup.procs").exists() {
        hybrid.join(relative)
    } else {
        std::path::Path::new("/sys/fs/cgroup").join(relative)
    }
}

/// A parsed CIDR as the programs test membership.
fn prefix((address, len): (Ipv4Addr, u32)) -> Ipv4Prefix {
    Ipv4Prefix::new(address.octets(), u8::try_from(len).unwrap_or(32))
}
