//! The masquerade of pod traffic leaving the cluster, as the agent keeps it: its table's garbage
//! collection and listing (the translation itself is `ebpf/src/masquerade.rs`, on the underlay
//! link), and the removal of the nftables rule that did the job before.

use std::{net::Ipv4Addr, time::Duration};

use flotilla_common::{
    counters::IPPROTO_ICMP,
    services::{FlowKey, NAT_CLOSING, NAT_REPLY, NatEntry, PROTO_TCP, PROTO_UDP},
};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use serde::Serialize;

use super::conntrack::{NatTable, is_expired, monotonic_ns};

/// How often expired entries are deleted: well under the shortest lifetime that matters for
/// ports (a closed TCP connection's 10 s is not worth chasing; UDP's 60 s is).
pub const COLLECT_INTERVAL: Duration = Duration::from_secs(30);

/// The nftables table the agent's masquerade rule lived in before the datapath took it over.
const LEGACY_NFT_TABLE: &str = "flotilla";

/// The masquerade table's metrics.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Tracked directions after the last collection.
    pub entries: Gauge,
    /// Expired directions deleted.
    pub collected: Counter,
}

/// Deletes expired entries every [`COLLECT_INTERVAL`] until the task is dropped.
pub async fn collect(mut table: NatTable, metrics: Metrics) {
    let mut ticks = tokio::time::interval(COLLECT_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match table.collect_expired(monotonic_ns()) {
            Ok((collected, kept)) => {
                metrics.collected.inc_by(collected as u64);
                metrics.entries.set(i64::try_from(kept).unwrap_or(i64::MAX));
                if collected > 0 {
                    tracing::debug!(collected, "expired masquerade entries deleted");
                }
            }
            Err(err) => tracing::warn!("collecting expired masquerade entries: {err}"),
        }
    }
}

/// One tracked direction, as `flotilla-agent bpf masquerade` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Row {
    /// `out` (leaving the node) or `reply` (coming back).
    pub direction: &'static str,
    /// `tcp`, `udp` or `icmp`.
    pub protocol: String,
    /// The packet as carried: source.
    pub from: String,
    /// The packet as carried: destination.
    pub to: String,
    /// What the source becomes.
    pub new_from: String,
    /// What the destination becomes.
    pub new_to: String,
    /// Seconds since the flow's last packet.
    pub idle_seconds: u64,
    /// Whether the datapath still honours it (expired ones wait for the next collection).
    pub live: bool,
    /// Whether a FIN or RST was seen.
    pub closing: bool,
}

/// The table's entries as rows, sorted, at `now_ns` (`CLOCK_MONOTONIC`).
pub fn rows(entries: &[(FlowKey, NatEntry)], now_ns: u64) -> Vec<Row> {
    let mut rows: Vec<Row> = entries
        .iter()
        .map(|(key, nat)| Row {
            direction: if nat.flags & NAT_REPLY != 0 {
                "reply"
            } else {
                "out"
            },
            protocol: protocol_name(key.proto),
            from: endpoint(key.src, key.sport, key.proto),
            to: endpoint(key.dst, key.dport, key.proto),
            new_from: endpoint(nat.src, nat.sport, key.proto),
            new_to: endpoint(nat.dst, nat.dport, key.proto),
            idle_seconds: now_ns.saturating_sub(nat.last_seen_ns) / 1_000_000_000,
            live: !is_expired(key, nat, now_ns),
            closing: nat.flags & NAT_CLOSING != 0,
        })
        .collect();
    rows.sort_by(|a, b| (a.direction, &a.from, &a.to).cmp(&(b.direction, &b.from, &b.to)));
    rows
}

fn protocol_name(proto: u8) -> String {
    match proto {
        PROTO_TCP => "tcp".to_owned(),
        PROTO_UDP => "udp".to_owned(),
        IPPROTO_ICMP => "icmp".to_owned(),
        other => other.to_string(),
    }
}

/// `address:port`; ICMP echo shows its identifier as `address#id` (0: the other side's).
fn endpoint(address: [u8; 4], port: u16, proto: u8) -> String {
    let address = Ipv4Addr::from(address);
    let port = u16::from_be(port);
    if proto == IPPROTO_ICMP {
        format!("{address}#{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// Deletes the nftables table an older agent kept the masquerade rule in, so a node upgraded in
/// place does not translate its pods' traffic twice. Without `nft` there is nothing to delete.
pub async fn remove_legacy_rule() {
    use tokio::io::AsyncWriteExt as _;
    // Declaring the table first makes the delete succeed where it does not exist.
    let script = format!("table ip {LEGACY_NFT_TABLE}\ndelete table ip {LEGACY_NFT_TABLE}\n");
    let child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
        Err(err) => {
            tracing::warn!("running nft to remove the old masquerade rule: {err}");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take()
        && let Err(err) = stdin.write_all(script.as_bytes()).await
    {
        tracing::warn!("writing to nft: {err}");
    }
    match child.wait_with_output().await {
        Ok(output) if output.status.success() => {}
        Ok(output) => tracing::warn!(
            "removing the old masquerade rule (nft table ip {LEGACY_NFT_TABLE}): {}; pods' \
             traffic leaving the cluster is translated twice until it is deleted",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(err) => tracing::warn!("waiting for nft: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use flotilla_common::services::{CT_CLOSING_LIFETIME_NS, CT_UDP_LIFETIME_NS};

    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn key(proto: u8) -> FlowKey {
        FlowKey {
            src: [10, 244, 1, 5],
            dst: [192, 168, 77, 254],
            sport: 40_000_u16.to_be(),
            dport: 53_u16.to_be(),
            proto,
            pad: [0; 3],
        }
    }

    fn out(last_seen_ns: u64, flags: u32) -> NatEntry {
        NatEntry {
            src: [192, 168, 77, 11],
            dst: [192, 168, 77, 254],
            sport: 40_000_u16.to_be(),
            dport: 53_u16.to_be(),
            flags,
            last_seen_ns,
        }
    }

    #[test]
    fn entries_expire_by_protocol_and_state() {
        let now = 100_000 * SECOND;
        // UDP: 60 s.
        assert!(!is_expired(
            &key(PROTO_UDP),
            &out(now - CT_UDP_LIFETIME_NS, 0),
            now
        ));
        assert!(is_expired(
            &key(PROTO_UDP),
            &out(now - CT_UDP_LIFETIME_NS - 1, 0),
            now
        ));
        // ICMP echo like UDP.
        assert!(is_expired(
            &key(IPPROTO_ICMP),
            &out(now - 61 * SECOND, 0),
            now
        ));
        // TCP: hours while open, seconds once closing.
        assert!(!is_expired(
            &key(PROTO_TCP),
            &out(now - 3_600 * SECOND, 0),
            now
        ));
        assert!(is_expired(
            &key(PROTO_TCP),
            &out(now - CT_CLOSING_LIFETIME_NS - 1, NAT_CLOSING),
            now
        ));
        // A placeholder the port allocator reserved and never filled.
        assert!(is_expired(&key(PROTO_TCP), &NatEntry::default(), now));
        // A stamp from the future (read while the datapath wrote it) is fresh.
        assert!(!is_expired(&key(PROTO_UDP), &out(now + SECOND, 0), now));
    }

    #[test]
    fn rows_show_both_directions_readably() {
        let now = 1_000 * SECOND;
        let reply_key = FlowKey {
            src: [192, 168, 77, 254],
            dst: [192, 168, 77, 11],
            sport: 53_u16.to_be(),
            dport: 40_000_u16.to_be(),
            proto: PROTO_UDP,
            pad: [0; 3],
        };
        let reply = NatEntry {
            src: [192, 168, 77, 254],
            dst: [10, 244, 1, 5],
            sport: 53_u16.to_be(),
            dport: 40_000_u16.to_be(),
            flags: NAT_REPLY,
            last_seen_ns: now - 5 * SECOND,
        };
        let rows = rows(
            &[
                (reply_key, reply),
                (key(PROTO_UDP), out(now - 5 * SECOND, 0)),
            ],
            now,
        );
        assert_eq!(rows[0].direction, "out");
        assert_eq!(rows[0].from, "10.244.1.5:40000");
        assert_eq!(rows[0].new_from, "192.168.77.11:40000");
        assert_eq!(rows[1].direction, "reply");
        assert_eq!(rows[1].new_to, "10.244.1.5:40000");
        assert_eq!(rows[1].idle_seconds, 5);
        assert!(rows.iter().all(|row| row.live && row.protocol == "udp"));
        assert_eq!(
            endpoint([1, 1, 1, 1], 7_u16.to_be(), IPPROTO_ICMP),
            "1.1.1.1#7"
        );
    }
}
