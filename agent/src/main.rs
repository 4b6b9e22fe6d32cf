//! `flotilla-agent`: the node agent binary. Parses flags, sets up logging, calls the library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use flotilla_agent::datapath::{
    counters::{self, AttachOutcome, ProtocolCount},
    pins::NodePins,
};

/// The Flotilla node agent.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Name of the node this agent runs for; scopes its pins under /sys/fs/bpf/flotilla/<node>/.
    #[arg(long, env = "FLOTILLA_NODE_NAME", global = true, default_value = "")]
    node: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the node's eBPF datapath.
    #[command(subcommand)]
    Datapath(DatapathCommand),
    /// Inspect the node's pinned BPF maps.
    #[command(subcommand)]
    Bpf(BpfCommand),
}

#[derive(Debug, Subcommand)]
enum DatapathCommand {
    /// Attach the per-protocol packet counter to the ingress of a pod's host-side veth (in this
    /// process's network namespace). The link is pinned, so it outlives this command; running it
    /// again replaces the program atomically.
    AttachCounter {
        /// Host-side interface of the pod's veth pair.
        #[arg(long)]
        iface: String,
    },
    /// Detach the packet counter from an interface (succeeds if it is not attached).
    DetachCounter {
        /// Host-side interface of the pod's veth pair.
        #[arg(long)]
        iface: String,
    },
}

#[derive(Debug, Subcommand)]
enum BpfCommand {
    /// List the per-protocol packet counters, summed over all CPUs.
    Counters {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("flotilla-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.node.is_empty() {
        anyhow::bail!("no node name: pass --node NAME or set FLOTILLA_NODE_NAME");
    }
    let pins = NodePins::new(&cli.node)?;
    match cli.command {
        Command::Datapath(DatapathCommand::AttachCounter { iface }) => {
            let outcome = counters::attach(&pins, &iface)
                .with_context(|| format!("attaching the packet counter to {iface}"))?;
            match outcome {
                AttachOutcome::Attached => println!("attached from_pod_count to {iface} ingress"),
                AttachOutcome::Replaced => {
                    println!("replaced the program on the existing link of {iface} ingress");
                }
            }
        }
        Command::Datapath(DatapathCommand::DetachCounter { iface }) => {
            counters::detach(&pins, &iface)?;
            println!("detached from_pod_count from {iface}");
        }
        Command::Bpf(BpfCommand::Counters { output }) => {
            let rows = counters::read(&pins)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                Output::Table => print_table(&rows),
            }
        }
    }
    Ok(())
}

fn print_table(rows: &[ProtocolCount]) {
    println!(
        "{:<6} {:<7} {:>9} {:>8} {:>12} {:>14}",
        "L3", "L4", "ETHERTYPE", "IPPROTO", "PACKETS", "BYTES"
    );
    for row in rows {
        println!(
            "{:<6} {:<7} {:>#9x} {:>8} {:>12} {:>14}",
            row.l3, row.l4, row.ethertype, row.ip_proto, row.packets, row.bytes
        );
    }
}
