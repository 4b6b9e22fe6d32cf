//! kube-proxy's iptables mode as a baseline: the `iptables-restore` input kube-proxy's iptables
//! proxier (`pkg/proxy/iptables/proxier.go`, Kubernetes 1.28 to 1.32) writes for ClusterIP
//! Services with the Cluster traffic policy, generated here from plain data, and loaded into a
//! node's namespace the way kube-proxy loads it (`iptables-restore --noflush --counters`).
//!
//! What a sync writes (the parts a ClusterIP Service uses):
//! - nat `KUBE-SERVICES`, jumped to from `PREROUTING` and `OUTPUT`: per service port one rule
//!   `-m comment "<ns>/<name>:<port> cluster IP" -m tcp -p tcp -d <VIP> --dport <P> -j KUBE-SVC-x`,
//!   in the order of the service map, and last the `KUBE-NODEPORTS` rule for local addresses.
//!   kube-proxy walks a Go map, so a Service's place in the chain is random on every sync: every
//!   new connection matches its way down this list until it finds its VIP.
//! - `KUBE-SVC-x`: `! -s <cluster CIDR> -j KUBE-MARK-MASQ` (off-cluster clients are masqueraded),
//!   then per endpoint `-m statistic --mode random --probability 1/(n-i)` (`%0.10f`) `-j
//!   KUBE-SEP-y`, the last endpoint without a match.
//! - `KUBE-SEP-y`: `-s <endpoint IP> -j KUBE-MARK-MASQ` (hairpin), then `-m tcp -p tcp -j DNAT
//!   --to-destination <IP:port>`.
//! - `KUBE-MARK-MASQ` sets mark 0x4000; `KUBE-POSTROUTING` (from `POSTROUTING`) masquerades
//!   marked packets; filter `KUBE-FORWARD` drops conntrack-INVALID packets and accepts marked and
//!   established ones; the other filter chains (`KUBE-SERVICES`, `KUBE-EXTERNAL-SERVICES`,
//!   `KUBE-NODEPORTS`, `KUBE-PROXY-FIREWALL`) are empty for Services that have endpoints, but
//!   their jump rules (for new connections) are there.
//! - Chain names: `KUBE-SVC-` + the first 16 characters of base32(sha256(`<ns>/<name>:<port>` +
//!   `tcp`)), `KUBE-SEP-` + the same over `... + tcp + <IP:port>`.
//! - With more than 1000 endpoints in all ("large cluster mode") the per-endpoint rules carry no
//!   comments.
//!
//! A full sync declares every chain (which flushes it) and writes every rule; a partial sync
//! (the `MinimizeIPTablesRestore` behaviour, default since 1.27) rewrites the top-level chains,
//! `KUBE-SERVICES` whole, but the `KUBE-SVC`/`KUBE-SEP` chains only of the Services that changed.
//! The jump rules from the built-in chains are not part of a sync: kube-proxy inserts them once
//! (`iptables -I`), here [`jump_rules`] as restore input of its own.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    time::{Duration, Instant},
};

use sha2::{Digest as _, Sha256};

use crate::{Netns, TestbedError, containerd::run_bounded};

/// kube-proxy's masquerade mark (`--iptables-masquerade-bit` 14).
pub const MASQUERADE_MARK: &str = "0x4000";
/// Endpoints in all above which kube-proxy drops the per-endpoint comments.
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;
/// The restore program: the nf_tables flavour, Debian bookworm's default `iptables`, which
/// kube-proxy's image picks on a host without legacy rules.
pub const RESTORE: &str = "iptables-nft-restore";
/// The save program matching [`RESTORE`].
pub const SAVE: &str = "iptables-nft-save";

/// One ClusterIP service port with its ready endpoints (TCP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The port's name (empty for an unnamed port).
    pub port_name: String,
    /// The ClusterIP.
    pub cluster_ip: Ipv4Addr,
    /// The service port.
    pub port: u16,
    /// Ready endpoints (pod IP and target port), in the EndpointSlice's order.
    pub endpoints: Vec<SocketAddrV4>,
}

impl ServicePort {
    /// kube-proxy's `ServicePortName.String()`: `<ns>/<name>` plus `:<port name>` if named.
    pub fn port_name_string(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.name)
        } else {
            format!("{}/{}:{}", self.namespace, self.name, self.port_name)
        }
    }

    /// The service port's `KUBE-SVC-` chain.
    pub fn service_chain(&self) -> String {
        format!(
            "KUBE-SVC-{}",
            hash16(&format!("{}tcp", self.port_name_string()))
        )
    }

    /// The `KUBE-SEP-` chain of `endpoint` of this service port.
    pub fn endpoint_chain(&self, endpoint: SocketAddrV4) -> String {
        format!(
            "KUBE-SEP-{}",
            hash16(&format!("{}tcp{endpoint}", self.port_name_string()))
        )
    }
}

/// How the proxier is configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxierConfig {
    /// `--cluster-cidr`: sources outside it are masqueraded on their way to a ClusterIP.
    pub cluster_cidr: (Ipv4Addr, u8),
}

/// Which Services a sync writes chains for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync<'a> {
    /// Every chain of every Service (kube-proxy's first sync and every full resync).
    Full,
    /// Top-level chains whole, but service and endpoint chains only for the Services at these
    /// indexes (kube-proxy's partial sync after a change).
    Partial(&'a [usize]),
}

/// The first 16 characters of base32(sha256(`text`)), kube-proxy's chain-name hash.
pub fn hash16(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    // 16 base32 characters are exactly the first 80 bits (10 bytes) of the digest.
    base32_prefix(&digest[..10])
}

/// RFC 4648 base32 of `bytes` (a multiple of 5 bytes long, so no padding).
fn base32_prefix(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5);
    for group in bytes.chunks(5) {
        let mut buffer = [0_u8; 8];
        buffer[3..3 + group.len()].copy_from_slice(group);
        let bits = u64::from_be_bytes(buffer);
        let characters = group.len() * 8 / 5;
        for index in 0..characters {
            let shift = 35 - 5 * index;
            out.push(char::from(ALPHABET[((bits >> shift) & 31) as usize]));
        }
    }
    out
}

/// kube-proxy's probability for the i-th of `remaining` endpoints: `%0.10f` of 1/remaining.
pub fn probability(remaining: usize) -> String {
    format!("{:.10}", 1.0 / remaining as f64)
}

/// The jump rules kube-proxy inserts into the built-in chains at start (`iptables -I`, the
/// first of `iptablesJumpChains` ending up first), as restore input; load it once, before the
/// first sync. Its chain lines create (and flush) the chains the jumps go to.
pub fn jump_rules() -> String {
    // (table, chain jumped to, from, comment, extra match)
    let new = "-m conntrack --ctstate NEW ";
    let jumps: [(&str, &str, &str, &str, &str); 12] = [
        (
            "filter",
            "KUBE-EXTERNAL-SERVICES",
            "INPUT",
            "kubernetes externally-visible service portals",
            new,
        ),
        (
            "filter",
            "KUBE-EXTERNAL-SERVICES",
            "FORWARD",
            "kubernetes externally-visible service portals",
            new,
        ),
        (
            "filter",
            "KUBE-NODEPORTS",
            "INPUT",
            "kubernetes health check service ports",
            "",
        ),
        (
            "filter",
            "KUBE-SERVICES",
            "FORWARD",
            "kubernetes service portals",
            new,
        ),
        (
            "filter",
            "KUBE-SERVICES",
            "OUTPUT",
            "kubernetes service portals",
            new,
        ),
        (
            "filter",
            "KUBE-FORWARD",
            "FORWARD",
            "kubernetes forwarding rules",
            "",
        ),
        (
            "filter",
            "KUBE-PROXY-FIREWALL",
            "INPUT",
            "kubernetes load balancer firewall",
            new,
        ),
        (
            "filter",
            "KUBE-PROXY-FIREWALL",
            "OUTPUT",
            "kubernetes load balancer firewall",
            new,
        ),
        (
            "filter",
            "KUBE-PROXY-FIREWALL",
            "FORWARD",
            "kubernetes load balancer firewall",
            new,
        ),
        (
            "nat",
            "KUBE-SERVICES",
            "OUTPUT",
            "kubernetes service portals",
            "",
        ),
        (
            "nat",
            "KUBE-SERVICES",
            "PREROUTING",
            "kubernetes service portals",
            "",
        ),
        (
            "nat",
            "KUBE-POSTROUTING",
            "POSTROUTING",
            "kubernetes postrouting rules",
            "",
        ),
    ];
    let mut out = String::new();
    for table in ["filter", "nat"] {
        let _ = writeln!(out, "*{table}");
        let mut declared: Vec<&str> = Vec::new();
        for (_, chain, ..) in jumps.iter().filter(|jump| jump.0 == table) {
            if !declared.contains(chain) {
                declared.push(chain);
                let _ = writeln!(out, ":{chain} - [0:0]");
            }
        }
        // Each jump is prepended, so the last inserted ends up first: insert in reverse to
        // get kube-proxy's order.
        for (_, chain, from, comment, extra) in jumps.iter().rev().filter(|jump| jump.0 == table) {
            let _ = writeln!(
                out,
                "-I {from} 1 {extra}-m comment --comment \"{comment}\" -j {chain}"
            );
        }
        out.push_str("COMMIT\n");
    }
    out
}

/// The restore input of one sync over `services`, whose order is the order of their rules in
/// `KUBE-SERVICES` (kube-proxy's map order).
pub fn sync_rules(config: &ProxierConfig, services: &[ServicePort], sync: Sync<'_>) -> String {
    let total_endpoints: usize = services.iter().map(|s| s.endpoints.len()).sum();
    let large_cluster = total_endpoints > LARGE_CLUSTER_ENDPOINTS;
    let (cidr, prefix) = config.cluster_cidr;
    let mark = MASQUERADE_MARK;

    let mut out = String::with_capacity(services.len() * 600 + 2_048);
    // filter: the top-level chains (declaring flushes them) and KUBE-FORWARD's rules.
    out.push_str("*filter\n");
    for chain in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        let _ = writeln!(out, ":{chain} - [0:0]");
    }
    out.push_str("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n");
    let _ = writeln!(
        out,
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark \
         {mark}/{mark} -j ACCEPT"
    );
    out.push_str(
        "-A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m \
         conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n",
    );
    out.push_str("COMMIT\n");

    // nat: chain lines first, then rules, as kube-proxy writes them.
    let written = |index: usize| match sync {
        Sync::Full => true,
        Sync::Partial(changed) => changed.contains(&index),
    };
    let mut chains = String::new();
    let mut rules = String::new();
    for chain in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        let _ = writeln!(chains, ":{chain} - [0:0]");
    }
    let _ = writeln!(
        rules,
        "-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN"
    );
    let _ = writeln!(rules, "-A KUBE-POSTROUTING -j MARK --xor-mark {mark}");
    let _ = writeln!(
        rules,
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" \
         -j MASQUERADE --random-fully"
    );
    let _ = writeln!(rules, "-A KUBE-MARK-MASQ -j MARK --or-mark {mark}");

    for (index, service) in services.iter().enumerate() {
        let name = service.port_name_string();
        let svc_chain = service.service_chain();
        let capture = format!(
            "-m comment --comment \"{name} cluster IP\" -m tcp -p tcp -d {}/32 --dport {}",
            service.cluster_ip, service.port
        );
        if service.endpoints.is_empty() {
            // No endpoints: no nat chains, a REJECT in filter (kube-proxy's behaviour); not
            // written here since every Service the benchmarks generate has endpoints.
            continue;
        }
        let _ = writeln!(rules, "-A KUBE-SERVICES {capture} -j {svc_chain}");
        if !written(index) {
            continue;
        }
        let _ = writeln!(chains, ":{svc_chain} - [0:0]");
        let _ = writeln!(
            rules,
            "-A {svc_chain} {capture} ! -s {cidr}/{prefix} -j KUBE-MARK-MASQ"
        );
        let count = service.endpoints.len();
        for (position, endpoint) in service.endpoints.iter().enumerate() {
            let comment = if large_cluster {
                String::new()
            } else {
                format!("-m comment --comment \"{name} -> {endpoint}\" ")
            };
            let statistic = if position + 1 < count {
                format!(
                    "-m statistic --mode random --probability {} ",
                    probability(count - position)
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                rules,
                "-A {svc_chain} {comment}{statistic}-j {}",
                service.endpoint_chain(*endpoint)
            );
        }
        for endpoint in &service.endpoints {
            let sep_chain = service.endpoint_chain(*endpoint);
            let comment = if large_cluster {
                String::new()
            } else {
                format!("-m comment --comment {name} ")
            };
            let _ = writeln!(chains, ":{sep_chain} - [0:0]");
            let _ = writeln!(
                rules,
                "-A {sep_chain} {comment}-s {}/32 -j KUBE-MARK-MASQ",
                endpoint.ip()
            );
            let _ = writeln!(
                rules,
                "-A {sep_chain} {comment}-m tcp -p tcp -j DNAT --to-destination {endpoint}"
            );
        }
    }
    let _ = writeln!(
        rules,
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be \
         the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"
    );
    out.push_str("*nat\n");
    out.push_str(&chains);
    out.push_str(&rules);
    out.push_str("COMMIT\n");
    out
}

/// Loads restore input into `netns` with `iptables-nft-restore --noflush --counters` (what
/// kube-proxy runs), bounded by `timeout`; returns how long the restore took.
pub fn restore(netns: &Netns, input: &str, timeout: Duration) -> Result<Duration, TestbedError> {
    let mut file = tempfile::Builder::new()
        .prefix("flotilla-kube-proxy-")
        .suffix(".rules")
        .tempfile()
        .map_err(|source| {
            TestbedError::io(
                "creating a temporary rules file in",
                &std::env::temp_dir(),
                source,
            )
        })?;
    std::io::Write::write_all(&mut file, input.as_bytes())
        .map_err(|source| TestbedError::io("writing", file.path(), source))?;
    let mut command = netns.command(RESTORE)?;
    command.args(["--noflush", "--counters"]).arg(file.path());
    let started = Instant::now();
    let output = run_bounded(&mut command, timeout)?;
    let took = started.elapsed();
    if !output.status.success() {
        return Err(TestbedError::Other(format!(
            "{RESTORE} in {} failed ({}): {}{}",
            netns.name(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            missing_hint(&output.stderr)
        )));
    }
    Ok(took)
}

fn missing_hint(stderr: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(stderr);
    if text.contains("No such file") || text.contains("not found") {
        " (is the iptables package installed? `cargo xtask setup` installs it)"
    } else {
        ""
    }
}

/// The packet counters of every rule of `table` in `netns` (`iptables-nft-save -c`): (packets,
/// rule as saved, e.g. `-A KUBE-SEP-X ...`).
pub fn rule_counters(netns: &Netns, table: &str) -> Result<Vec<(u64, String)>, TestbedError> {
    let output = run_bounded(
        netns.command(SAVE)?.args(["-c", "-t", table]),
        Duration::from_secs(120),
    )?;
    if !output.status.success() {
        return Err(TestbedError::Other(format!(
            "{SAVE} -t {table} in {} failed: {}",
            netns.name(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix('[')?;
            let (counters, rule) = rest.split_once("] ")?;
            let packets = counters.split(':').next()?.parse().ok()?;
            Some((packets, rule.to_owned()))
        })
        .collect())
}

/// Packets that went through the rules of `chain` (summed over the chain's rules).
pub fn chain_packets(counters: &[(u64, String)], chain: &str) -> u64 {
    let prefix = format!("-A {chain} ");
    counters
        .iter()
        .filter(|(_, rule)| rule.starts_with(&prefix))
        .map(|(packets, _)| packets)
        .sum()
}

/// `iptables-nft-restore --version`, e.g. `iptables-restore v1.8.9 (nf_tables)`.
pub fn version() -> Result<String, TestbedError> {
    let output = run_bounded(
        Command::new(RESTORE).arg("--version"),
        Duration::from_secs(10),
    )
    .map_err(|err| {
        TestbedError::Other(format!(
            "{err} (is the iptables package installed? `cargo xtask setup` installs it)"
        ))
    })?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(index: usize, endpoints: &[&str]) -> ServicePort {
        ServicePort {
            namespace: "default".into(),
            name: format!("svc-{index}"),
            port_name: "perf".into(),
            cluster_ip: Ipv4Addr::new(10, 200, 0, u8::try_from(index + 1).unwrap()),
            port: 80,
            endpoints: endpoints.iter().map(|e| e.parse().unwrap()).collect(),
        }
    }

    fn config() -> ProxierConfig {
        ProxierConfig {
            cluster_cidr: (Ipv4Addr::new(10, 245, 0, 0), 16),
        }
    }

    #[test]
    fn chain_names_hash_like_kube_proxy() {
        // base32 test vectors of RFC 4648.
        assert_eq!(base32_prefix(b"fooba"), "MZXW6YTB");
        assert_eq!(base32_prefix(b"foobarbaz!"), "MZXW6YTBOJRGC6RB");
        // The chain every cluster has for the `kubernetes` Service's https port.
        let kubernetes = ServicePort {
            namespace: "default".into(),
            name: "kubernetes".into(),
            port_name: "https".into(),
            cluster_ip: Ipv4Addr::new(10, 96, 0, 1),
            port: 443,
            endpoints: Vec::new(),
        };
        assert_eq!(kubernetes.service_chain(), "KUBE-SVC-NPX46M4PTMTKRN6Y");
        let svc = service(0, &["10.245.2.2:12865"]);
        assert_eq!(svc.port_name_string(), "default/svc-0:perf");
        let chain = svc.service_chain();
        assert!(
            chain.starts_with("KUBE-SVC-") && chain.len() == 25,
            "{chain}"
        );
        assert!(
            chain.len() <= 28,
            "iptables chain names are at most 28 characters"
        );
        assert_ne!(
            svc.endpoint_chain("10.245.2.2:12865".parse().unwrap()),
            svc.endpoint_chain("10.245.2.3:12865".parse().unwrap())
        );
        let unnamed = ServicePort {
            port_name: String::new(),
            ..svc
        };
        assert_eq!(unnamed.port_name_string(), "default/svc-0");
    }

    #[test]
    fn probabilities_are_formatted_as_go_does() {
        assert_eq!(probability(2), "0.5000000000");
        assert_eq!(probability(3), "0.3333333333");
        assert_eq!(probability(1), "1.0000000000");
    }

    #[test]
    fn a_full_sync_has_kube_proxys_shape() {
        let services = [
            service(
                0,
                &["10.245.2.2:12865", "10.245.2.3:12865", "10.245.2.4:12865"],
            ),
            service(1, &["10.245.2.2:12865"]),
        ];
        let rules = sync_rules(&config(), &services, Sync::Full);
        let svc = services[0].service_chain();
        let lines: Vec<&str> = rules.lines().collect();
        // KUBE-SERVICES: the services in order, then the nodeports rule last.
        let kube_services: Vec<&&str> = lines
            .iter()
            .filter(|line| line.starts_with("-A KUBE-SERVICES "))
            .collect();
        assert_eq!(kube_services.len(), 3);
        assert!(kube_services[0].contains("-d 10.200.0.1/32 --dport 80"));
        assert!(kube_services[0].ends_with(&format!("-j {svc}")));
        assert!(kube_services[1].contains("-d 10.200.0.2/32"));
        assert!(kube_services[2].ends_with("-j KUBE-NODEPORTS"));
        // KUBE-SVC: masquerade off-cluster sources, then 1/3, 1/2, and the last unconditional.
        let svc_rules: Vec<&&str> = lines
            .iter()
            .filter(|line| line.starts_with(&format!("-A {svc} ")))
            .collect();
        assert_eq!(svc_rules.len(), 4, "{rules}");
        assert!(svc_rules[0].contains("! -s 10.245.0.0/16 -j KUBE-MARK-MASQ"));
        assert!(svc_rules[1].contains("--probability 0.3333333333"));
        assert!(svc_rules[2].contains("--probability 0.5000000000"));
        assert!(!svc_rules[3].contains("statistic"));
        let sep = services[0].endpoint_chain("10.245.2.4:12865".parse().unwrap());
        assert!(svc_rules[3].ends_with(&format!("-j {sep}")));
        assert!(rules.contains(&format!(
            "-A {sep} -m comment --comment default/svc-0:perf -m tcp -p tcp -j DNAT \
             --to-destination 10.245.2.4:12865"
        )));
        assert!(rules.contains(&format!(
            "-A {sep} -m comment --comment default/svc-0:perf -s 10.245.2.4/32 -j KUBE-MARK-MASQ"
        )));
        // Every chain used is declared once.
        for chain in [svc.as_str(), sep.as_str(), "KUBE-MARK-MASQ", "KUBE-FORWARD"] {
            assert_eq!(
                lines
                    .iter()
                    .filter(|line| **line == format!(":{chain} - [0:0]"))
                    .count(),
                1,
                "{chain}"
            );
        }
        assert!(rules.starts_with("*filter\n") && rules.ends_with("COMMIT\n"));
    }

    #[test]
    fn large_clusters_drop_endpoint_comments_and_partial_syncs_write_only_changes() {
        let services: Vec<ServicePort> = (0..LARGE_CLUSTER_ENDPOINTS / 2 + 1)
            .map(|index| {
                let mut svc = service(0, &["10.245.2.2:12865", "10.245.2.3:12865"]);
                svc.name = format!("svc-{index}");
                svc
            })
            .collect();
        let full = sync_rules(&config(), &services, Sync::Full);
        let sep = services[0].endpoint_chain("10.245.2.2:12865".parse().unwrap());
        assert!(full.contains(&format!(
            "-A {sep} -m tcp -p tcp -j DNAT --to-destination 10.245.2.2:12865"
        )));
        // The per-service capture still carries its comment.
        assert!(full.contains("\"default/svc-0:perf cluster IP\""));

        let partial = sync_rules(&config(), &services, Sync::Partial(&[7]));
        assert_eq!(
            partial
                .lines()
                .filter(|line| line.starts_with("-A KUBE-SERVICES "))
                .count(),
            services.len() + 1,
            "KUBE-SERVICES is rewritten whole"
        );
        assert_eq!(
            partial
                .lines()
                .filter(|line| line.starts_with(":KUBE-SVC-"))
                .count(),
            1
        );
        assert!(partial.contains(&format!(":{} - [0:0]", services[7].service_chain())));
        assert!(!partial.contains(&format!(":{} - [0:0]", services[0].service_chain())));
    }

    #[test]
    fn jump_rules_come_in_kube_proxys_order() {
        let jumps = jump_rules();
        let nat = jumps.split("*nat\n").nth(1).unwrap();
        let inserted: Vec<&str> = nat.lines().filter(|l| l.starts_with("-I ")).collect();
        // Inserted in reverse, so PREROUTING's and OUTPUT's jumps end up first in their chains
        // in the order kube-proxy's list has them.
        assert_eq!(inserted.len(), 3);
        assert!(inserted[0].starts_with("-I POSTROUTING 1 "));
        assert!(inserted.iter().any(|l| l.starts_with("-I PREROUTING 1 ")
            && l.ends_with("\"kubernetes service portals\" -j KUBE-SERVICES")));
        assert!(jumps.contains(
            "-I FORWARD 1 -m conntrack --ctstate NEW -m comment --comment \"kubernetes service \
             portals\" -j KUBE-SERVICES"
        ));
    }
}
