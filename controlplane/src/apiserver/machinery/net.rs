//! IP and CIDR rules with upstream's messages (strict, legacy and non-special addresses).

use crate::apiserver::machinery::prelude::*;

pub(crate) fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// `IsValidIP`: parses, and must be in canonical form.
pub(crate) fn validate_ip_strict(e: &mut Errs, path: &str, v: &str) {
    match parse_ip(v) {
        None => e.invalid_s(path, v, IP_ERR),
        Some(ip) => {
            let canonical = ip.to_string();
            if canonical != v {
                e.invalid_s(
                    path,
                    v,
                    &format!("must be in canonical form ({})", q(&canonical)),
                );
            }
        }
    }
}

/// `IsValidIPForLegacyField` with StrictIPCIDRValidation off (its 1.33 default).
pub(crate) fn validate_ip_legacy(e: &mut Errs, path: &str, v: &str) -> bool {
    if parse_ip(v).is_none() {
        e.invalid_s(path, v, IP_ERR);
        return false;
    }
    true
}

/// `ValidateNonSpecialIP`: no unspecified, loopback or link-local addresses.
pub(crate) fn validate_non_special_ip(e: &mut Errs, path: &str, v: &str) {
    let Some(ip) = parse_ip(v) else {
        e.invalid_s(path, v, "must be a valid IP address");
        return;
    };
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        other => other,
    };
    let (unspecified, loopback, link_local, ll_multicast) = match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            (
                a.is_unspecified(),
                a.is_loopback(),
                a.is_link_local(),
                o[0] == 224 && o[1] == 0 && o[2] == 0,
            )
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            (
                a.is_unspecified(),
                a.is_loopback(),
                (s[0] & 0xffc0) == 0xfe80,
                (s[0] & 0xff0f) == 0xff02,
            )
        }
    };
    if unspecified {
        e.invalid_s(path, v, &format!("may not be unspecified ({v})"));
    }
    if loopback {
        e.invalid_s(
            path,
            v,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        );
    }
    if link_local {
        e.invalid_s(
            path,
            v,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        );
    }
    if ll_multicast {
        e.invalid_s(
            path,
            v,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        );
    }
}

/// A parsed CIDR: network address as a 128-bit value, prefix length, and family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cidr {
    pub(crate) bits: u128,
    pub(crate) prefix: u32,
    pub(crate) v6: bool,
}

impl Cidr {
    pub(crate) fn width(&self) -> u32 {
        if self.v6 { 128 } else { 32 }
    }
    pub(crate) fn mask(&self) -> u128 {
        let w = self.width();
        if self.prefix == 0 {
            0
        } else {
            let ones = (!0u128) << (128 - self.prefix);
            ones >> (128 - w)
        }
    }
    pub(crate) fn contains(&self, bits: u128) -> bool {
        (bits & self.mask()) == (self.bits & self.mask())
    }
}

pub(crate) fn parse_cidr(s: &str) -> Option<Cidr> {
    let (ip, len) = s.split_once('/')?;
    if len.is_empty() || !len.bytes().all(|c| c.is_ascii_digit()) || len.len() > 3 {
        return None;
    }
    let prefix: u32 = len.parse().ok()?;
    match parse_ip(ip)? {
        IpAddr::V4(a) if prefix <= 32 => Some(Cidr {
            bits: u128::from(u32::from(a)),
            prefix,
            v6: false,
        }),
        IpAddr::V6(a) if prefix <= 128 => Some(Cidr {
            bits: u128::from(a),
            prefix,
            v6: true,
        }),
        _ => None,
    }
}

// --- Quantities --------------------------------------------------------------------------------
