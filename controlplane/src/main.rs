//! `flotilla-controlplane`: the Kubernetes-compatible API server on etcd, scheduler, controllers
//! and IPAM. Not built yet (issues 2 and 3); the binary says so instead of pretending.

use std::process::ExitCode;

use clap::Parser;

/// The Flotilla control plane.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!(
        "flotilla-controlplane: the API server, scheduler and controllers are not implemented yet \
         (tracked as issues 2 and 3); nothing was started"
    );
    ExitCode::from(2)
}
