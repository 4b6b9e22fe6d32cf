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
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Which {
    /// API create/get/list/update/watch latency and throughput vs etcd, against the SLO.
    Api,
    /// Scheduler pods/s and create-to-bound latency with hollow nodes, against kube-scheduler.
    Scheduler,
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
    }
}
