//! The load balancer pool (`--loadbalancer-pool`): the addresses Services of type LoadBalancer
//! get, as MetalLB's IPAddressPool or k3s ServiceLB hand out, from entries that are CIDRs
//! (`192.168.78.240/28`, every address usable) or inclusive ranges (`A-B`). The allocation
//! itself is the `loadbalancer_ipam` controller's; this module only knows the addresses.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use super::Cidr;

/// What a pool entry looks like, for error messages.
const EXAMPLE: &str =
    "a CIDR such as 192.168.78.240/28, or a range such as 192.168.78.240-192.168.78.250";

/// One entry of the pool: the addresses `first` to `last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressRange {
    /// The lowest address.
    pub first: Ipv4Addr,
    /// The highest address (included); a range whose `last` is below `first` is empty.
    pub last: Ipv4Addr,
}

impl From<Cidr> for AddressRange {
    fn from(cidr: Cidr) -> Self {
        let base = u32::from(cidr.network);
        let span = u32::MAX
            .checked_shr(u32::from(cidr.prefix))
            .unwrap_or_default();
        Self {
            first: cidr.network,
            last: Ipv4Addr::from(base | span),
        }
    }
}

impl FromStr for AddressRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(format!(
                "an empty entry is not an address range; give {EXAMPLE}"
            ));
        }
        if text.contains('/') {
            return text
                .parse::<Cidr>()
                .map(Self::from)
                .map_err(|err| format!("{err} (a pool entry is {EXAMPLE})"));
        }
        if let Some((first, last)) = text.split_once('-') {
            let address = |part: &str| {
                part.trim().parse::<Ipv4Addr>().map_err(|_| {
                    format!(
                        "{:?} in {text:?} is not an IPv4 address (a pool entry is {EXAMPLE})",
                        part.trim()
                    )
                })
            };
            let (first, last) = (address(first)?, address(last)?);
            if first > last {
                return Err(format!(
                    "{text:?} starts above where it ends; write the lower address first: \
                     {last}-{first}"
                ));
            }
            return Ok(Self { first, last });
        }
        if text.parse::<Ipv4Addr>().is_ok() {
            return Err(format!(
                "{text:?} is a single address; write it as {text}/32 (a pool entry is {EXAMPLE})"
            ));
        }
        Err(format!(
            "{text:?} is neither a CIDR nor an address range; give {EXAMPLE}"
        ))
    }
}

impl fmt::Display for AddressRange {
    /// As a CIDR when the range is exactly one (`10.0.0.0-10.0.0.3` is `10.0.0.0/30`), else as
    /// `first-last`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_cidr() {
            Some(cidr) => cidr.fmt(f),
            None => write!(f, "{}-{}", self.first, self.last),
        }
    }
}

impl AddressRange {
    /// The CIDR the range is exactly, if it is one.
    pub fn as_cidr(&self) -> Option<Cidr> {
        let size = self.size();
        if size == 0 || !size.is_power_of_two() {
            return None;
        }
        let prefix = 32 - u8::try_from(size.trailing_zeros()).ok()?;
        let cidr = Cidr {
            network: self.first,
            prefix,
        };
        (AddressRange::from(cidr) == *self).then_some(cidr)
    }

    /// How many addresses it holds.
    pub fn size(&self) -> u64 {
        let (first, last) = (u32::from(self.first), u32::from(self.last));
        if last < first {
            0
        } else {
            u64::from(last - first) + 1
        }
    }

    /// Whether `ip` is in it.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }

    /// Whether it shares an address with `other`.
    pub fn overlaps(&self, other: &AddressRange) -> bool {
        self.size() > 0 && other.size() > 0 && self.first <= other.last && other.first <= self.last
    }

    /// The address `offset` places above `first`, if it is in the range.
    pub fn nth(&self, offset: u64) -> Option<Ipv4Addr> {
        if offset >= self.size() {
            return None;
        }
        let ip = u64::from(u32::from(self.first)) + offset;
        u32::try_from(ip).ok().map(Ipv4Addr::from)
    }
}

/// Whether `ip` is in any entry of `pool`.
pub fn pool_contains(pool: &[AddressRange], ip: Ipv4Addr) -> bool {
    pool.iter().any(|range| range.contains(ip))
}

/// How many addresses `pool` holds (its entries do not overlap, see [`check_pool`]).
pub fn pool_size(pool: &[AddressRange]) -> u64 {
    pool.iter().map(AddressRange::size).sum()
}

/// The pool as the flag gives it: `192.168.78.240/28, 10.0.0.1-10.0.0.5`.
pub fn describe_pool(pool: &[AddressRange]) -> String {
    pool.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a load balancer pool cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// An entry shares addresses with the pod or the Service network.
    #[error(
        "--loadbalancer-pool {entry} overlaps the {network} ({flag} {cidr}); give addresses \
         outside the pod and Service networks, on the nodes' own network"
    )]
    OverlapsNetwork {
        /// The entry.
        entry: AddressRange,
        /// Which network: `pod network` or `Service network`.
        network: &'static str,
        /// The flag that sets it.
        flag: &'static str,
        /// The network.
        cidr: Cidr,
    },
    /// Two entries share addresses.
    #[error(
        "--loadbalancer-pool {entry} overlaps {other}, another entry of the pool; give each \
         address once"
    )]
    OverlapsEntry {
        /// The later entry.
        entry: AddressRange,
        /// The earlier entry it overlaps.
        other: AddressRange,
    },
    /// An entry holds the API server's own address.
    #[error(
        "--loadbalancer-pool {entry} holds the API server's own address {ip} (--listen); a \
         Service given it would take the control plane's traffic: leave it out (an entry may be \
         a range, e.g. {suggestion})"
    )]
    HoldsApiServer {
        /// The entry.
        entry: AddressRange,
        /// The API server's address.
        ip: Ipv4Addr,
        /// A range of the entry's addresses below `ip`, or above it.
        suggestion: String,
    },
}

/// Checks that `pool` can be used beside the pod network `cluster_cidr`, the Service network
/// `service_cidr` and the API server listening on `api` (when that is one address): no entry
/// may share an address with either network, with another entry, or be the API server's.
pub fn check_pool(
    pool: &[AddressRange],
    cluster_cidr: Cidr,
    service_cidr: Cidr,
    api: Option<Ipv4Addr>,
) -> Result<(), PoolError> {
    let networks = [
        ("pod network", "--cluster-cidr", cluster_cidr),
        (
            "Service network",
            "--service-cluster-ip-range",
            service_cidr,
        ),
    ];
    for (index, entry) in pool.iter().enumerate() {
        for (network, flag, cidr) in networks {
            if entry.overlaps(&AddressRange::from(cidr)) {
                return Err(PoolError::OverlapsNetwork {
                    entry: *entry,
                    network,
                    flag,
                    cidr,
                });
            }
        }
        if let Some(other) = pool.iter().take(index).find(|other| entry.overlaps(other)) {
            return Err(PoolError::OverlapsEntry {
                entry: *entry,
                other: *other,
            });
        }
        if let Some(ip) = api.filter(|ip| entry.contains(*ip)) {
            return Err(PoolError::HoldsApiServer {
                entry: *entry,
                ip,
                suggestion: without(*entry, ip),
            });
        }
    }
    Ok(())
}

/// The larger part of `entry` without `ip`, as a range (or `none` for a single address).
fn without(entry: AddressRange, ip: Ipv4Addr) -> String {
    let step = |ip: Ipv4Addr, up: bool| {
        let n = u32::from(ip);
        let n = if up {
            n.checked_add(1)
        } else {
            n.checked_sub(1)
        };
        n.map(Ipv4Addr::from)
    };
    let below = step(ip, false).map(|last| AddressRange {
        first: entry.first,
        last,
    });
    let above = step(ip, true).map(|first| AddressRange {
        first,
        last: entry.last,
    });
    let size = |range: &Option<AddressRange>| range.map_or(0, |r| r.size());
    let best = if size(&below) >= size(&above) {
        below
    } else {
        above
    };
    match best.filter(|range| range.size() > 0) {
        Some(range) => format!("{}-{}", range.first, range.last),
        None => "none".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> AddressRange {
        text.parse().unwrap()
    }

    #[test]
    fn entries_are_cidrs_or_ranges() {
        let cidr = range("192.168.78.240/28");
        assert_eq!(cidr.first, Ipv4Addr::new(192, 168, 78, 240));
        assert_eq!(cidr.last, Ipv4Addr::new(192, 168, 78, 255));
        assert_eq!(cidr.size(), 16);
        assert_eq!(cidr.to_string(), "192.168.78.240/28");
        let one = range("10.0.0.7/32");
        assert_eq!((one.first, one.size()), (Ipv4Addr::new(10, 0, 0, 7), 1));
        assert_eq!(one.to_string(), "10.0.0.7/32");
        let span = range(" 10.0.0.1 - 10.0.0.5 ");
        assert_eq!(span.size(), 5);
        assert_eq!(span.to_string(), "10.0.0.1-10.0.0.5");
        assert_eq!(span.nth(4), Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(span.nth(5), None);
        // A range that is exactly a CIDR prints as one.
        assert_eq!(range("10.0.0.0-10.0.0.3").to_string(), "10.0.0.0/30");
        assert_eq!(range("10.0.0.4-10.0.0.4").to_string(), "10.0.0.4/32");
        assert_eq!(range("0.0.0.0/0").size(), 1 << 32);
    }

    #[test]
    fn bad_entries_say_what_is_wrong_and_show_one_that_works() {
        let error = |text: &str| text.parse::<AddressRange>().unwrap_err();
        let backwards = error("10.0.0.9-10.0.0.1");
        assert!(backwards.contains("10.0.0.1-10.0.0.9"), "{backwards}");
        let single = error("10.0.0.9");
        assert!(single.contains("10.0.0.9/32"), "{single}");
        let host_bits = error("192.168.78.241/28");
        assert!(
            host_bits.contains("host bits") && host_bits.contains("192.168.78.240/28"),
            "{host_bits}"
        );
        let bad_prefix = error("10.0.0.0/33");
        assert!(bad_prefix.contains("prefix length"), "{bad_prefix}");
        let not_an_ip = error("10.0.0.1-10.0.0.300");
        assert!(
            not_an_ip.contains("\"10.0.0.300\"") && not_an_ip.contains("192.168.78.240/28"),
            "{not_an_ip}"
        );
        let v6 = error("fd00::1-fd00::9");
        assert!(v6.contains("not an IPv4 address"), "{v6}");
        let nonsense = error("lots");
        assert!(nonsense.contains("neither a CIDR nor"), "{nonsense}");
        assert!(error("").contains("empty"));
    }

    #[test]
    fn overlaps_with_the_networks_or_each_other_are_refused() {
        let pods: Cidr = "10.244.0.0/16".parse().unwrap();
        let services: Cidr = "10.96.0.0/12".parse().unwrap();
        let check = |pool: &[&str], api: Option<Ipv4Addr>| {
            let pool: Vec<AddressRange> = pool.iter().map(|text| range(text)).collect();
            check_pool(&pool, pods, services, api).map_err(|err| err.to_string())
        };
        assert_eq!(
            check(&["192.168.78.240/28", "192.168.79.1-192.168.79.9"], None),
            Ok(())
        );
        assert_eq!(check(&[], None), Ok(()));
        assert_eq!(
            check(&["10.244.1.0/28"], None).unwrap_err(),
            "--loadbalancer-pool 10.244.1.0/28 overlaps the pod network (--cluster-cidr \
             10.244.0.0/16); give addresses outside the pod and Service networks, on the nodes' \
             own network"
        );
        let service = check(&["10.111.255.250-10.112.0.5"], None).unwrap_err();
        assert!(
            service.contains("10.111.255.250-10.112.0.5 overlaps the Service network")
                && service.contains("--service-cluster-ip-range 10.96.0.0/12"),
            "{service}"
        );
        let twice = check(
            &["192.168.78.240/28", "192.168.78.249-192.168.78.251"],
            None,
        );
        assert_eq!(
            twice.unwrap_err(),
            "--loadbalancer-pool 192.168.78.249-192.168.78.251 overlaps 192.168.78.240/28, \
             another entry of the pool; give each address once"
        );
        let api = check(
            &["192.168.78.240/28"],
            Some(Ipv4Addr::new(192, 168, 78, 254)),
        )
        .unwrap_err();
        assert!(
            api.contains("own address 192.168.78.254")
                && api.contains("192.168.78.240-192.168.78.253"),
            "{api}"
        );
        assert_eq!(
            check(
                &["192.168.78.240-192.168.78.253"],
                Some(Ipv4Addr::new(192, 168, 78, 254))
            ),
            Ok(())
        );
    }

    #[test]
    fn pools_count_and_describe_their_entries() {
        let pool = [range("192.168.78.240/28"), range("10.0.0.1-10.0.0.5")];
        assert_eq!(pool_size(&pool), 21);
        assert!(pool_contains(&pool, Ipv4Addr::new(10, 0, 0, 5)));
        assert!(!pool_contains(&pool, Ipv4Addr::new(10, 0, 0, 6)));
        assert_eq!(describe_pool(&pool), "192.168.78.240/28, 10.0.0.1-10.0.0.5");
    }
}
