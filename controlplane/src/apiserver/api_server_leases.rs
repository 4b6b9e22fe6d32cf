//! The API servers of the cluster, as kube-apiserver's lease endpoint reconciler
//! (`--endpoint-reconciler-type=lease`) knows them: every API server writes its address under
//! `/registry/masterleases/<ip>` with a 15 s TTL at each pass of the system Services' reconciler
//! (every 10 s), so the keys there are the API servers alive, and each of them points the
//! `kubernetes` Service (and, for those serving the cluster DNS, `kube-dns`) at all of them. A
//! server stopping deletes its key and reconciles once, so pods stop being sent to it at once;
//! one that dies drops out when its key expires.

use std::{net::IpAddr, time::Duration};

use serde_json::{Value, json};

use super::{ApiServer, status::ApiError};

/// Where the records live, as kube-apiserver keeps them.
pub const PREFIX: &str = "/registry/masterleases/";

/// How long a record outlives its last renewal (upstream's `DefaultEndpointReconcilerTTL`).
pub const TTL: Duration = Duration::from_secs(15);

/// One live API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LiveApiServer {
    /// The address pods reach it at.
    pub ip: IpAddr,
    /// Its API port.
    pub api_port: u16,
    /// The port of the cluster DNS it serves on `ip`, if it serves one.
    pub dns_port: Option<u16>,
}

impl LiveApiServer {
    /// The record: an Endpoints object, as upstream stores, with the ports it serves.
    fn record(&self) -> Value {
        let mut ports = vec![json!({"name": "https", "port": self.api_port, "protocol": "TCP"})];
        if let Some(port) = self.dns_port {
            ports.push(json!({"name": "dns", "port": port, "protocol": "UDP"}));
        }
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": self.ip.to_string()},
            "subsets": [{"addresses": [{"ip": self.ip.to_string()}], "ports": ports}],
        })
    }

    /// Reads a record back; None for one that is not ours to read.
    fn from_record(record: &Value) -> Option<Self> {
        let subset = &record["subsets"][0];
        let ip = subset["addresses"][0]["ip"].as_str()?.parse().ok()?;
        let port = |name: &str| {
            subset["ports"]
                .as_array()?
                .iter()
                .find(|port| port["name"] == name)
                .and_then(|port| u16::try_from(port["port"].as_u64()?).ok())
        };
        Some(Self {
            ip,
            api_port: port("https")?,
            dns_port: port("dns"),
        })
    }
}

/// The addresses of the servers in `live` that `serves` (plus `own`, which is alive whether
/// or not its record is already visible), sorted and without repeats.
pub fn endpoints(
    live: &[LiveApiServer],
    own: Option<IpAddr>,
    serves: impl Fn(&LiveApiServer) -> bool,
) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = live
        .iter()
        .filter(|server| serves(server))
        .map(|server| server.ip)
        .chain(own)
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

impl ApiServer {
    /// This API server's record; None when it listens where pods cannot reach it (loopback).
    pub(crate) fn own_record(&self) -> Option<LiveApiServer> {
        let advertise: std::net::SocketAddr = self.advertise.parse().ok()?;
        Some(LiveApiServer {
            ip: super::system_services::reachable(advertise.ip())?,
            api_port: advertise.port(),
            // The cluster DNS answers on the API server's address (run.rs checks).
            dns_port: self.cluster_dns.map(|(_, server)| server.port()),
        })
    }

    /// Writes (renews) this API server's record.
    pub(crate) async fn renew_own_record(&self) -> Result<(), ApiError> {
        let Some(own) = self.own_record() else {
            return Ok(());
        };
        self.store
            .put_with_ttl(&format!("{PREFIX}{}", own.ip), &own.record(), TTL)
            .await
            .map_err(|err| ApiError::internal(format!("renewing {PREFIX}{}: {err}", own.ip)))
    }

    /// Deletes this API server's record (it is stopping).
    pub(crate) async fn delete_own_record(&self) {
        let Some(own) = self.own_record() else {
            return;
        };
        let key = format!("{PREFIX}{}", own.ip);
        if let Err(err) = self.store.delete(&key, None).await {
            tracing::debug!("deleting {key}: {err}");
        }
    }

    /// The API servers whose records have not expired, sorted by address.
    pub(crate) async fn live_api_servers(&self) -> Result<Vec<LiveApiServer>, ApiError> {
        let page = self
            .store
            .list(PREFIX, 0, None)
            .await
            .map_err(|err| ApiError::internal(format!("listing {PREFIX}: {err}")))?;
        let mut live: Vec<LiveApiServer> = page
            .items
            .iter()
            .filter_map(|stored| LiveApiServer::from_record(&stored.object))
            .collect();
        live.sort();
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(ip: &str, dns: Option<u16>) -> LiveApiServer {
        LiveApiServer {
            ip: ip.parse().unwrap(),
            api_port: 6443,
            dns_port: dns,
        }
    }

    #[test]
    fn records_read_back_with_their_ports() {
        let with_dns = server("192.168.78.2", Some(53));
        assert_eq!(
            LiveApiServer::from_record(&with_dns.record()),
            Some(with_dns)
        );
        let without = server("192.168.78.3", None);
        assert_eq!(LiveApiServer::from_record(&without.record()), Some(without));
        assert_eq!(LiveApiServer::from_record(&json!({"subsets": []})), None);
    }

    #[test]
    fn endpoints_are_every_live_server_that_serves_plus_this_one() {
        let live = [
            server("192.168.78.4", None),
            server("192.168.78.2", Some(53)),
        ];
        let own = Some("192.168.78.3".parse().unwrap());
        let all = endpoints(&live, own, |s| s.api_port == 6443);
        assert_eq!(
            all.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["192.168.78.2", "192.168.78.3", "192.168.78.4"]
        );
        let dns = endpoints(&live, None, |s| s.dns_port == Some(53));
        assert_eq!(dns, vec!["192.168.78.2".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            endpoints(&live[..1], live.first().map(|s| s.ip), |_| true).len(),
            1
        );
    }
}
