//! The ranges pools hand out: IPv4 addresses of a CIDR, subnets of a CIDR, and port ranges.

use std::{fmt, net::Ipv4Addr, str::FromStr};

/// Something a pool can number: items are indexed 0..size.
pub trait Range: fmt::Display + Clone + Send + Sync {
    /// How many items there are.
    fn size(&self) -> u64;
    /// The item with `index`.
    fn item(&self, index: u64) -> Option<String>;
    /// The index of `item`, if it is in the range.
    fn index_of(&self, item: &str) -> Option<u64>;
    /// Items below this index are handed out only when asked for by name, or when every item
    /// above is taken (0: no such band).
    fn static_band(&self) -> u64 {
        0
    }
}

/// An IPv4 CIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address.
    pub network: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR (like 10.96.0.0/12)"))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("{address:?} in {text:?} is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{prefix:?} in {text:?} is not a prefix length 0-32"))?;
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        if u32::from(address) & !mask != 0 {
            return Err(format!(
                "{text:?} has host bits set; did you mean {}/{prefix}?",
                Ipv4Addr::from(u32::from(address) & mask)
            ));
        }
        Ok(Self {
            network: address,
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    fn base(&self) -> u64 {
        u64::from(u32::from(self.network))
    }

    fn span(&self) -> u64 {
        1_u64 << (32 - u32::from(self.prefix))
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u64::from(u32::from(ip));
        ip >= self.base() && ip < self.base() + self.span()
    }

    /// The address at `offset` from the network address.
    pub fn nth(&self, offset: u64) -> Option<Ipv4Addr> {
        (offset < self.span())
            .then(|| u32::try_from(self.base() + offset).ok().map(Ipv4Addr::from))
            .flatten()
    }
}

/// Service ClusterIPs: the addresses of a CIDR without the network and broadcast addresses. The
/// first host goes to the `kubernetes` Service, which is created before anything else.
///
/// The lowest `min(max(16, span/16), 256)` addresses are the static band, as upstream's
/// ServiceIPStaticSubrange (KEP-3070): Services without a requested ClusterIP get an address
/// from above it while any is free, so well-known addresses such as the cluster DNS
/// (`10.96.0.10`) stay free for whoever asks for them by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceIps(pub Cidr);

impl fmt::Display for ServiceIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Range for ServiceIps {
    fn size(&self) -> u64 {
        self.0.span().saturating_sub(2)
    }

    fn item(&self, index: u64) -> Option<String> {
        (index < self.size())
            .then(|| self.0.nth(index + 1))
            .flatten()
            .map(|ip| ip.to_string())
    }

    fn index_of(&self, item: &str) -> Option<u64> {
        let ip: Ipv4Addr = item.parse().ok()?;
        if !self.0.contains(ip) {
            return None;
        }
        let offset = u64::from(u32::from(ip)) - self.0.base();
        (offset >= 1 && offset <= self.size()).then(|| offset - 1)
    }

    fn static_band(&self) -> u64 {
        let span = self.0.span();
        if span < 16 {
            0
        } else {
            (span / 16).clamp(16, 256).min(self.size())
        }
    }
}

/// Subnets of `mask` bits inside a cluster CIDR (node podCIDRs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnets {
    /// The cluster CIDR.
    pub cluster: Cidr,
    /// Prefix length of each subnet.
    pub mask: u8,
}

impl fmt::Display for Subnets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{} subnets of {}", self.mask, self.cluster)
    }
}

impl Range for Subnets {
    fn size(&self) -> u64 {
        if self.mask < self.cluster.prefix || self.mask > 32 {
            return 0;
        }
        1_u64 << (self.mask - self.cluster.prefix)
    }

    fn item(&self, index: u64) -> Option<String> {
        if index >= self.size() {
            return None;
        }
        let step = 1_u64 << (32 - u32::from(self.mask));
        self.cluster
            .nth(index * step)
            .map(|network| format!("{network}/{}", self.mask))
    }

    fn index_of(&self, item: &str) -> Option<u64> {
        let cidr: Cidr = item.parse().ok()?;
        if cidr.prefix != self.mask || !self.cluster.contains(cidr.network) {
            return None;
        }
        let step = 1_u64 << (32 - u32::from(self.mask));
        Some((cidr.base() - self.cluster.base()) / step)
    }
}

/// A port range like 30000-32767.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not a port range (like 30000-32767)"))?;
        let first: u16 = first
            .parse()
            .map_err(|_| format!("{first:?} is not a port"))?;
        let last: u16 = last
            .parse()
            .map_err(|_| format!("{last:?} is not a port"))?;
        if first == 0 || first > last {
            return Err(format!(
                "{text:?}: the first port must be 1 or more and not above the last"
            ));
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl Range for PortRange {
    fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    fn item(&self, index: u64) -> Option<String> {
        (index < self.size()).then(|| (u64::from(self.first) + index).to_string())
    }

    fn index_of(&self, item: &str) -> Option<u64> {
        let port: u16 = item.parse().ok()?;
        (self.first..=self.last)
            .contains(&port)
            .then(|| u64::from(port - self.first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ips_skip_network_and_broadcast() {
        let ips = ServiceIps("10.96.0.0/30".parse().unwrap());
        assert_eq!(ips.size(), 2);
        assert_eq!(ips.item(0).as_deref(), Some("10.96.0.1"));
        assert_eq!(ips.item(1).as_deref(), Some("10.96.0.2"));
        assert_eq!(ips.item(2), None);
        assert_eq!(ips.index_of("10.96.0.0"), None);
        assert_eq!(ips.index_of("10.96.0.3"), None);
        assert_eq!(ips.index_of("10.96.0.2"), Some(1));
        let big = ServiceIps("10.96.0.0/12".parse().unwrap());
        assert_eq!(big.size(), (1 << 20) - 2);
        assert_eq!(big.index_of("10.111.255.254"), Some((1 << 20) - 3));
        assert_eq!(big.index_of("10.112.0.1"), None);
    }

    #[test]
    fn service_ips_keep_a_static_band_as_upstream() {
        let band = |cidr: &str| ServiceIps(cidr.parse().unwrap()).static_band();
        assert_eq!(band("10.96.0.0/12"), 256);
        assert_eq!(band("10.96.0.0/20"), 256);
        assert_eq!(band("10.96.0.0/24"), 16);
        assert_eq!(band("10.96.0.0/28"), 14);
        assert_eq!(band("10.96.0.0/29"), 0);
        let big = ServiceIps("10.96.0.0/12".parse().unwrap());
        assert!(big.index_of("10.96.0.10").unwrap() < big.static_band());
        assert_eq!(big.item(big.static_band()).as_deref(), Some("10.96.1.1"));
    }

    #[test]
    fn subnets_and_ports() {
        let subnets = Subnets {
            cluster: "10.244.0.0/16".parse().unwrap(),
            mask: 24,
        };
        assert_eq!(subnets.size(), 256);
        assert_eq!(subnets.item(3).as_deref(), Some("10.244.3.0/24"));
        assert_eq!(subnets.index_of("10.244.3.0/24"), Some(3));
        assert_eq!(subnets.index_of("10.245.3.0/24"), None);
        assert_eq!(subnets.index_of("10.244.3.0/25"), None);
        let ports: PortRange = "30000-32767".parse().unwrap();
        assert_eq!(ports.size(), 2768);
        assert_eq!(ports.index_of("30080"), Some(80));
        assert_eq!(ports.index_of("80"), None);
    }

    #[test]
    fn bad_ranges_say_what_is_wrong() {
        assert!(
            "10.96.0.1/12"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("host bits")
        );
        assert!("10.96.0.0".parse::<Cidr>().is_err());
        assert!("32767-30000".parse::<PortRange>().is_err());
    }
}
