//! The CNI spec versions flotilla-cni speaks and what each allows.

use serde_json::{Value, json};

/// A CNI spec version this plugin supports: every one the reference plugins accept
/// (containernetworking/cni's `version.All`), since stock conflists (flannel's, Cilium's) still
/// say 0.3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CniVersion {
    /// 0.1.0: results are `ip4`/`ip6` objects (the 0.2.0 form).
    V0_1_0,
    /// 0.2.0: results are `ip4`/`ip6` objects, one address of each family.
    V0_2_0,
    /// 0.3.0: results list `interfaces`, `ips` (with `version`) and `routes`; chaining.
    V0_3_0,
    /// 0.3.1: as 0.3.0.
    V0_3_1,
    /// 0.4.0: CHECK exists; `ips` entries carry `version`.
    V0_4_0,
    /// 1.0.0: no `version` in `ips`; the version containerd 1.6 (libcni 1.1) writes.
    V1_0_0,
    /// 1.1.0: adds STATUS, GC and `mtu` on interfaces.
    V1_1_0,
}

/// Every version this plugin supports, oldest first.
pub const SUPPORTED: [CniVersion; 7] = [
    CniVersion::V0_1_0,
    CniVersion::V0_2_0,
    CniVersion::V0_3_0,
    CniVersion::V0_3_1,
    CniVersion::V0_4_0,
    CniVersion::V1_0_0,
    CniVersion::V1_1_0,
];

impl CniVersion {
    /// The newest supported version, used when the caller's version is unknown.
    pub const LATEST: Self = Self::V1_1_0;

    /// The version named `text`, if supported. Only exact spec versions match, as in libcni.
    pub fn parse(text: &str) -> Option<Self> {
        SUPPORTED
            .into_iter()
            .find(|version| version.as_str() == text)
    }

    /// The version as written in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V0_1_0 => "0.1.0",
            Self::V0_2_0 => "0.2.0",
            Self::V0_3_0 => "0.3.0",
            Self::V0_3_1 => "0.3.1",
            Self::V0_4_0 => "0.4.0",
            Self::V1_0_0 => "1.0.0",
            Self::V1_1_0 => "1.1.0",
        }
    }

    /// The supported versions as a human-readable list, for error messages.
    pub fn supported_list() -> String {
        SUPPORTED.map(Self::as_str).join(", ")
    }
}

/// The VERSION result.
pub fn version_reply() -> Value {
    json!({
        "cniVersion": CniVersion::LATEST.as_str(),
        "supportedVersions": SUPPORTED.map(CniVersion::as_str),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_supported_versions() {
        assert_eq!(CniVersion::parse("0.1.0"), Some(CniVersion::V0_1_0));
        assert_eq!(CniVersion::parse("0.3.1"), Some(CniVersion::V0_3_1));
        assert_eq!(CniVersion::parse("0.4.0"), Some(CniVersion::V0_4_0));
        assert_eq!(CniVersion::parse("1.0.0"), Some(CniVersion::V1_0_0));
        assert_eq!(CniVersion::parse("1.1.0"), Some(CniVersion::V1_1_0));
        for other in ["", "0.3", "0.5.0", "1.0", "1.2.0", "v1.0.0"] {
            assert_eq!(CniVersion::parse(other), None, "{other}");
        }
    }

    #[test]
    fn versions_are_ordered() {
        assert!(CniVersion::V0_2_0 < CniVersion::V0_3_0);
        assert!(CniVersion::V0_3_1 < CniVersion::V0_4_0);
        assert!(CniVersion::V0_4_0 < CniVersion::V1_0_0);
        assert!(CniVersion::V1_0_0 < CniVersion::V1_1_0);
    }

    #[test]
    fn version_reply_lists_the_supported_versions() {
        assert_eq!(
            version_reply(),
            json!({"cniVersion": "1.1.0", "supportedVersions":
                ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
        assert_eq!(
            CniVersion::supported_list(),
            "0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
        );
    }
}
