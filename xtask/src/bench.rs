//! `cargo xtask bench <name>`: benchmarks that print ratios against a baseline measured in the
//! same run.

use clap::{Args, ValueEnum};

use crate::{
    process::{cargo, run_visible},
    setup,
};

/// Options of `cargo xtask bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Which benchmark.
    #[arg(value_enum)]
    which: Which,
    /// Number of objects (api).
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Number of simulated nodes (scheduler).
    #[arg(long, default_value_t = 1_000)]
    nodes: usize,
    /// Number of pods per phase (scheduler).
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Number of pods started on the one node (pods).
    #[arg(long, default_value_t = 100)]
    node_pods: usize,
    /// Pods created per second, 0 for all at once (pods).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Seconds each network test runs per path (policy, default 3; network and services,
    /// default 2 per round, the median of the rounds reported).
    #[arg(long)]
    seconds: Option<u64>,
    /// Numbers of Services, measured in turn, each step adding to the last (services).
    #[arg(long, default_value = "1,1000,10000", value_parser = parse_counts)]
    services: String,
}

/// Checks a comma-separated list of counts (`1,1000,10000`) and returns it as given.
fn parse_counts(text: &str) -> Result<String, String> {
    let counts: Vec<usize> = text
        .split(',')
        .map(|n| n.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|err| format!("{text:?}: a comma-separated list of counts ({err})"))?;
    if counts.is_empty() || counts.iter().any(|n| !(1..=50_000).contains(n)) {
        return Err(format!("{text:?}: counts from 1 to 50000"));
    }
    Ok(text.replace(' ', ""))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Which {
    /// API create/get/list/update/watch latency and throughput vs etcd, against the SLO.
    Api,
    /// Scheduler pods/s and create-to-bound latency with hollow nodes, against kube-scheduler.
    Scheduler,
    /// Pod startup latency (bound -> Running) on one real node vs starting them directly via CRI.
    Pods,
    /// Pod-to-pod TCP_STREAM/TCP_RR/TCP_CRR over Flotilla's eBPF overlay vs a flannel-style
    /// kernel VXLAN + bridge on the same pods and the bare underlay; CNI ADD latency.
    Network,
    /// TCP_CRR to pods with no NetworkPolicy vs 1,000 policies selecting them (ratio).
    Policy,
    /// TCP_RR/TCP_CRR via direct pod IP, Flotilla's ClusterIP and kube-proxy iptables-mode
    /// chains at 1, 1,000 and 10,000 Services; programming time and the O(changed) check.
    Services,
}

pub(crate) fn run(args: &BenchArgs) -> anyhow::Result<()> {
    setup::run()?;
    match args.which {
        Which::Api => run_visible(
            &format!("API benchmark with {} objects", args.objects),
            cargo().args([
                "bench",
                "--package",
                "flotilla-controlplane",
                "--bench",
                "api",
                "--",
                "--objects",
                &args.objects.to_string(),
            ]),
        ),
        Which::Scheduler => run_visible(
            &format!(
                "scheduler benchmark with {} nodes and {} pods",
                args.nodes, args.pods
            ),
            cargo().args([
                "bench",
                "--package",
                "flotilla-controlplane",
                "--bench",
                "scheduler",
                "--",
                "--nodes",
                &args.nodes.to_string(),
                "--pods",
                &args.pods.to_string(),
            ]),
        ),
        Which::Pods => run_visible(
            &format!(
                "pod startup benchmark with {} pods at {} pods/s",
                args.node_pods, args.rate
            ),
            cargo().args([
                "bench",
                "--package",
                "flotilla-testbed",
                "--bench",
                "pod_startup",
                "--",
                "--pods",
                &args.node_pods.to_string(),
                "--rate",
                &args.rate.to_string(),
            ]),
        ),
        Which::Policy => run_visible(
            &format!(
                "NetworkPolicy benchmark, TCP_CRR with 0 and 1,000 policies, {} s per run",
                args.seconds.unwrap_or(3)
            ),
            cargo().args([
                "bench",
                "--package",
                "flotilla-testbed",
                "--bench",
                "network_policy",
                "--",
                "--duration",
                &format!("{}s", args.seconds.unwrap_or(3)),
            ]),
        ),
        Which::Network => run_visible(
            &format!(
                "pod network benchmark, median of 5 rounds of {} s per test and path",
                args.seconds.unwrap_or(2)
            ),
            cargo().args([
                "bench",
                "--package",
                "flotilla-testbed",
                "--bench",
                "pod_network",
                "--",
                "--duration",
                &format!("{}s", args.seconds.unwrap_or(2)),
            ]),
        ),
        Which::Services => run_visible(
            &format!("Service benchmark at {} Services", args.services),
            cargo()
                .args([
                    "bench",
                    "--package",
                    "flotilla-testbed",
                    "--bench",
                    "services",
                    "--",
                    "--services",
                    &args.services,
                ])
                .args(
                    args.seconds
                        .iter()
                        .flat_map(|seconds| ["--duration".to_owned(), format!("{seconds}s")]),
                ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_counts;

    #[test]
    fn service_counts_are_checked() {
        assert_eq!(parse_counts("1, 1000,10000").unwrap(), "1,1000,10000");
        assert!(parse_counts("").is_err());
        assert!(parse_counts("0").is_err());
        assert!(parse_counts("1,x").is_err());
        assert!(parse_counts("100000").is_err());
    }
}
