//! Per-protocol packet counters kept by the `from_pod_count` TC program.

/// Name of the per-CPU hash map holding [`PacketCounter`]s keyed by [`ProtocolKey`].
///
/// Kernel object names are limited to 15 characters; this is also the pin file name.
pub const PROTO_COUNTERS_MAP: &str = "PROTO_COUNTERS";

/// Name of the TC classifier program that fills [`PROTO_COUNTERS_MAP`].
pub const FROM_POD_COUNT_PROG: &str = "from_pod_count";

/// Maximum number of distinct protocol keys the counter map holds.
pub const PROTO_COUNTERS_MAX_ENTRIES: u32 = 512;

/// EtherType of IPv4 (host byte order).
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6 (host byte order).
pub const ETH_P_IPV6: u16 = 0x86dd;
/// EtherType of ARP (host byte order).
pub const ETH_P_ARP: u16 = 0x0806;

/// IP protocol number of ICMP.
pub const IPPROTO_ICMP: u8 = 1;
/// IP protocol number of TCP.
pub const IPPROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IP protocol number of ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// Which protocol a packet carried: its EtherType and, for IPv4/IPv6, the IP protocol number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProtocolKey {
    /// EtherType in host byte order (0x0800 IPv4, 0x86dd IPv6, 0x0806 ARP, ...).
    pub ethertype: u16,
    /// IPv4 protocol / IPv6 next header; 0 for non-IP frames.
    pub ip_proto: u8,
    /// Explicit padding so the key has no uninitialised bytes (the kernel hashes all 4).
    pub pad: u8,
}

impl ProtocolKey {
    /// Key for an IPv4 packet carrying `ip_proto`.
    pub const fn ipv4(ip_proto: u8) -> Self {
        Self {
            ethertype: ETH_P_IP,
            ip_proto,
            pad: 0,
        }
    }

    /// A short human name ("ipv4/tcp", "arp", "ethertype 0x88cc", ...).
    pub fn describe(&self) -> (&'static str, &'static str) {
        let l3 = match self.ethertype {
            ETH_P_IP => "ipv4",
            ETH_P_IPV6 => "ipv6",
            ETH_P_ARP => "arp",
            _ => "other",
        };
        let l4 = match (self.ethertype, self.ip_proto) {
            (ETH_P_IP | ETH_P_IPV6, IPPROTO_TCP) => "tcp",
            (ETH_P_IP | ETH_P_IPV6, IPPROTO_UDP) => "udp",
            (ETH_P_IP, IPPROTO_ICMP) => "icmp",
            (ETH_P_IPV6, IPPROTO_ICMPV6) => "icmpv6",
            (ETH_P_IP | ETH_P_IPV6, _) => "other",
            _ => "-",
        };
        (l3, l4)
    }
}

/// Packets and bytes seen for one [`ProtocolKey`] on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounter {
    /// Number of packets.
    pub packets: u64,
    /// Sum of the packets' lengths at the TC hook (L2 header included).
    pub bytes: u64,
}

impl PacketCounter {
    /// Adds another counter (used to sum the per-CPU values).
    pub const fn add(self, other: Self) -> Self {
        Self {
            packets: self.packets.wrapping_add(other.packets),
            bytes: self.bytes.wrapping_add(other.bytes),
        }
    }
}

// SAFETY: both types are repr(C), contain only integers and have no implicit padding.
#[cfg(feature = "user")]
unsafe impl aya::Pod for ProtocolKey {}
// SAFETY: as above.
#[cfg(feature = "user")]
unsafe impl aya::Pod for PacketCounter {}
