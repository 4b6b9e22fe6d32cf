//! `flotilla-cni`: the CNI plugin containerd executes for every pod sandbox. Reads the CNI
//! environment and stdin, runs the command (see the library), prints the result or error JSON.
//! Logs go to stderr (the runtime's log); `FLOTILLA_CNI_LOG` sets the filter (default `warn`),
//! and `FLOTILLA_CNI_TIMINGS=1` adds where the time went (see the library's `timings`).

use std::{io::Write as _, process::ExitCode};

use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    flotilla_cni::timings::start();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            EnvFilter::try_from_env("FLOTILLA_CNI_LOG").unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();

    let reply = flotilla_cni::run(|key| std::env::var_os(key), std::io::stdin().lock());

    if let Some(output) = &reply.output {
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{output}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return ExitCode::FAILURE;
        }
    }
    flotilla_cni::timings::mark("output");
    if std::env::var_os(flotilla_cni::timings::ENV).is_some()
        && let Some(line) = flotilla_cni::timings::report()
    {
        eprintln!("{line}");
    }
    if reply.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
