//! `cargo xtask`: every developer chore of Flotilla in one place (see README.md).

mod api_schema;
mod bench;
mod cluster;
mod dist;
mod ebpf;
mod images;
mod process;
mod setup;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Developer tasks for Flotilla.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install what is missing (apt packages, rust-src, bpf-linker) and mount bpffs. Idempotent.
    Setup,
    /// Build the eBPF objects on their own and list the programs and maps in each.
    BuildEbpf(ebpf::BuildEbpfArgs),
    /// Build the pause and test-app OCI image tarballs; `--import SOCK` loads them into containerd.
    Images(images::ImagesArgs),
    /// The README's test command: setup, fmt, clippy, unit tests, privileged integration tests.
    Test,
    /// Run a benchmark (`api`: API latency/throughput vs etcd and the SLO).
    Bench(bench::BenchArgs),
    /// Bring up the local cluster: control plane, N nodes (containerd + agent each), a check.
    Up(cluster::UpArgs),
    /// `up` (reusing a running cluster), then the walk-through: a web Deployment behind a Service,
    /// balancing, a NetworkPolicy isolating prod from dev, rolling update and undo, self-healing.
    Demo(cluster::UpArgs),
    /// Stop the local cluster's processes, keeping its state and its running pods.
    Stop,
    /// Start a stopped (or crashed) local cluster again.
    Start,
    /// Remove the local cluster and whatever killed test runs left behind.
    Down,
    /// Show what of Flotilla is running on this machine.
    Status,
    /// Assemble what an admin installs on machines (binaries, sandbox image, systemd units) in
    /// target/dist/flotilla; see the README's "Install on machines".
    Dist(dist::DistArgs),
    /// Keep the local cluster's daemons running (`up` and `start` leave this running).
    #[command(hide = true)]
    Supervise {
        /// The cluster directory it keeps (this checkout's; named so `ps` shows whose it is).
        #[arg(long)]
        cluster_dir: std::path::PathBuf,
    },
    /// Regenerate the API schema table (protobuf wire, JSON form, merge facts of every kind) from
    /// checkouts of k8s.io/api, k8s.io/apimachinery and k8s.io/apiextensions-apiserver.
    ApiSchema(api_schema::ApiSchemaArgs),
}

fn main() -> ExitCode {
    // Rust ignores SIGPIPE, so `cargo xtask status | head` would panic in println! once head
    // exits; the default action ends the process quietly, as other command-line tools do.
    // SAFETY: restoring a signal's default disposition at start-up, before any thread exists.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::run().map(|_| ()),
        Command::BuildEbpf(args) => ebpf::run(&args),
        Command::Images(args) => images::run(&args),
        Command::Test => test::run(),
        Command::Bench(args) => bench::run(&args),
        Command::Up(args) => cluster::up(&args),
        Command::Demo(mut args) => {
            args.demo = true;
            cluster::up(&args)
        }
        Command::Stop => cluster::stop(),
        Command::Start => cluster::start(),
        Command::Down => cluster::down(),
        Command::Status => cluster::status(),
        Command::Dist(args) => dist::run(&args),
        Command::Supervise { cluster_dir } => cluster::supervise(&cluster_dir),
        Command::ApiSchema(args) => api_schema::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cargo xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
