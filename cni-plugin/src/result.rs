//! The CNI success result: decoding a `prevResult`, appending this plugin's attachment to it, and
//! writing it in the configuration's version (0.1.0 and 0.2.0 have one `ip4`/`ip6` object per
//! family with its routes, as libcni converts down; 0.3.x and 0.4.0 `ips` entries carry
//! `"version"`, 1.0.0 and later do not; interface `mtu` exists from 1.1.0). Keys this plugin
//! does not know are kept, so a result passed through a chain loses nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::version::CniVersion;

/// A CNI result (the `interfaces`, `ips`, `routes` and `dns` of an ADD).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    /// Interfaces created by the attachments so far.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Addresses, each pointing into `interfaces`.
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    /// Routes.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// DNS settings, passed through unchanged.
    #[serde(default)]
    pub dns: Map<String, Value>,
    /// Any other key (but `cniVersion`, which is rewritten on output).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One interface of a result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address, `aa:bb:cc:dd:ee:ff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Its MTU (written from spec 1.1.0 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The network namespace it is in; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Any other key.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One address of a result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// `"4"` or `"6"`; only in spec 0.4.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The address in CIDR notation, e.g. `10.244.1.7/32`.
    pub address: String,
    /// The default gateway for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into the result's `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Any other key.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One route of a result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Destination in CIDR notation.
    pub dst: String,
    /// Next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    /// Any other key (mtu, advmss, priority, table, scope).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CniResult {
    /// Decodes a result (a `prevResult`).
    pub fn from_json(value: Value) -> Result<Self, serde_json::Error> {
        let mut result: Self = serde_json::from_value(value)?;
        result.extra.remove("cniVersion");
        Ok(result)
    }

    /// The result as printed on stdout, in spec version `version`.
    pub fn to_json(&self, version: CniVersion) -> Value {
        if version < CniVersion::V0_3_0 {
            return self.to_json_0_2(version);
        }
        let mut result = self.clone();
        for ip in &mut result.ips {
            ip.version = (version < CniVersion::V1_0_0).then(|| ip_version(&ip.address).to_owned());
        }
        if version < CniVersion::V1_1_0 {
            for interface in &mut result.interfaces {
                interface.mtu = None;
            }
        }
        let mut object = Map::new();
        object.insert("cniVersion".into(), version.as_str().into());
        if let Ok(Value::Object(fields)) = serde_json::to_value(result) {
            object.extend(fields);
        }
        Value::Object(object)
    }

    /// The 0.1.0/0.2.0 form (libcni's conversion to `types020`): the first address of each
    /// family as `ip4`/`ip6` with its gateway, and the routes of that family under it;
    /// interfaces have no place in it.
    fn to_json_0_2(&self, version: CniVersion) -> Value {
        let mut object = Map::new();
        object.insert("cniVersion".into(), version.as_str().into());
        for (key, family) in [("ip4", "4"), ("ip6", "6")] {
            let Some(ip) = self.ips.iter().find(|ip| ip_version(&ip.address) == family) else {
                continue;
            };
            let mut config = Map::new();
            config.insert("ip".into(), ip.address.clone().into());
            if let Some(gateway) = &ip.gateway {
                config.insert("gateway".into(), gateway.clone().into());
            }
            let routes: Vec<Value> = self
                .routes
                .iter()
                .filter(|route| ip_version(&route.dst) == family)
                .map(|route| {
                    let mut entry = Map::new();
                    entry.insert("dst".into(), route.dst.clone().into());
                    if let Some(gw) = &route.gw {
                        entry.insert("gw".into(), gw.clone().into());
                    }
                    Value::Object(entry)
                })
                .collect();
            if !routes.is_empty() {
                config.insert("routes".into(), routes.into());
            }
            object.insert(key.into(), Value::Object(config));
        }
        object.insert("dns".into(), Value::Object(self.dns.clone()));
        Value::Object(object)
    }

    /// The index of the interface `name` in namespace `sandbox`, if listed.
    pub fn interface_index(&self, name: &str, sandbox: Option<&str>) -> Option<usize> {
        self.interfaces
            .iter()
            .position(|interface| interface.name == name && interface.sandbox.as_deref() == sandbox)
    }
}

/// `"4"` or `"6"` for an address in CIDR notation.
fn ip_version(cidr: &str) -> &'static str {
    if cidr.contains(':') { "6" } else { "4" }
}

/// Formats a MAC address as results write it.
pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "flt0123456789ab".into(),
                    mac: Some("aa:bb:cc:dd:ee:01".into()),
                    mtu: Some(1450),
                    ..Interface::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("aa:bb:cc:dd:ee:02".into()),
                    mtu: Some(1450),
                    sandbox: Some("/var/run/netns/cni-1".into()),
                    ..Interface::default()
                },
            ],
            ips: vec![IpConfig {
                address: "10.244.1.7/32".into(),
                gateway: Some("169.254.1.1".into()),
                interface: Some(1),
                ..IpConfig::default()
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".into(),
                gw: Some("169.254.1.1".into()),
                ..Route::default()
            }],
            ..CniResult::default()
        }
    }

    #[test]
    fn writes_1_1_0_with_mtu_and_without_ip_version() {
        assert_eq!(
            sample().to_json(CniVersion::V1_1_0),
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [
                    {"name": "flt0123456789ab", "mac": "aa:bb:cc:dd:ee:01", "mtu": 1450},
                    {"name": "eth0", "mac": "aa:bb:cc:dd:ee:02", "mtu": 1450, "sandbox": "/var/run/netns/cni-1"},
                ],
                "ips": [{"address": "10.244.1.7/32", "gateway": "169.254.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
                "dns": {},
            })
        );
    }

    #[test]
    fn writes_1_0_0_without_mtu() {
        let json = sample().to_json(CniVersion::V1_0_0);
        assert_eq!(json["cniVersion"], "1.0.0");
        assert_eq!(
            json["interfaces"][0],
            json!({"name": "flt0123456789ab", "mac": "aa:bb:cc:dd:ee:01"})
        );
        assert!(json["ips"][0].get("version").is_none());
    }

    #[test]
    fn writes_0_4_0_with_ip_versions() {
        let mut result = sample();
        result.ips.push(IpConfig {
            address: "fd00::7/128".into(),
            interface: Some(1),
            ..IpConfig::default()
        });
        let json = result.to_json(CniVersion::V0_4_0);
        assert_eq!(json["cniVersion"], "0.4.0");
        assert_eq!(json["ips"][0]["version"], "4");
        assert_eq!(json["ips"][1]["version"], "6");
    }

    #[test]
    fn writes_0_3_1_as_0_4_0() {
        let json = sample().to_json(CniVersion::V0_3_1);
        assert_eq!(json["cniVersion"], "0.3.1");
        assert_eq!(json["ips"][0]["version"], "4");
        assert_eq!(json["interfaces"][1]["sandbox"], "/var/run/netns/cni-1");
        assert!(json["interfaces"][1].get("mtu").is_none());
    }

    #[test]
    fn writes_0_2_0_as_one_address_per_family_with_its_routes() {
        let mut result = sample();
        result.ips.push(IpConfig {
            address: "10.9.9.9/32".into(),
            ..IpConfig::default()
        });
        result.ips.push(IpConfig {
            address: "fd00::7/128".into(),
            ..IpConfig::default()
        });
        result.routes.push(Route {
            dst: "::/0".into(),
            ..Route::default()
        });
        result
            .dns
            .insert("nameservers".into(), json!(["10.96.0.10"]));
        assert_eq!(
            result.to_json(CniVersion::V0_2_0),
            json!({
                "cniVersion": "0.2.0",
                "ip4": {"ip": "10.244.1.7/32", "gateway": "169.254.1.1",
                    "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]},
                "ip6": {"ip": "fd00::7/128", "routes": [{"dst": "::/0"}]},
                "dns": {"nameservers": ["10.96.0.10"]},
            })
        );
        assert_eq!(sample().to_json(CniVersion::V0_1_0)["cniVersion"], "0.1.0");
    }

    #[test]
    fn a_0_4_0_prev_result_round_trips_to_1_0_0_and_keeps_unknown_keys() {
        let prev = json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "lo", "sandbox": "/x", "socketPath": "/s"}],
            "ips": [{"version": "4", "address": "1.2.3.4/24", "interface": 0}],
            "routes": [{"dst": "1.0.0.0/8", "priority": 5}],
            "dns": {"nameservers": ["1.1.1.1"]},
            "custom": [1],
        });
        let result = CniResult::from_json(prev).unwrap();
        assert_eq!(result.interface_index("lo", Some("/x")), Some(0));
        assert_eq!(result.interface_index("lo", None), None);
        let json = result.to_json(CniVersion::V1_0_0);
        assert_eq!(
            json,
            json!({
                "cniVersion": "1.0.0",
                "interfaces": [{"name": "lo", "sandbox": "/x", "socketPath": "/s"}],
                "ips": [{"address": "1.2.3.4/24", "interface": 0}],
                "routes": [{"dst": "1.0.0.0/8", "priority": 5}],
                "dns": {"nameservers": ["1.1.1.1"]},
                "custom": [1],
            })
        );
    }

    #[test]
    fn macs_are_lowercase_hex_pairs() {
        assert_eq!(
            format_mac(&[0x0a, 0xbc, 0, 1, 0xff, 0x10]),
            "0a:bc:00:01:ff:10"
        );
    }
}
