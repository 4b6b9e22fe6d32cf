//! `flotilla-pause`: the process that holds a pod sandbox's namespaces, like upstream's `pause`.
//!
//! It is PID 1 of the sandbox, so it sleeps until told to stop, reaps every zombie that gets
//! re-parented to it, and exits 0 on SIGTERM or SIGINT (PID 1 has no default signal actions, so
//! it must handle them itself). It links statically and is the only file of the
//! `flotilla/pause` image that `cargo xtask images` builds.
//!
//! The signals are blocked and taken synchronously with `sigwait(2)`: no handler runs, so there
//! is nothing async-signal-unsafe to get wrong.

use std::process::ExitCode;

use nix::{
    errno::Errno,
    sys::{
        signal::{SigSet, SigmaskHow, Signal, sigprocmask},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};

fn main() -> ExitCode {
    if std::env::args().any(|arg| arg == "-v" || arg == "--version") {
        println!("flotilla-pause {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        signals.add(signal);
    }
    if let Err(errno) = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), None) {
        eprintln!("flotilla-pause: blocking signals failed: {errno}");
        return ExitCode::FAILURE;
    }
    if std::process::id() != 1 {
        eprintln!("flotilla-pause: warning: not running as PID 1 (orphans will not be reaped)");
    }
    loop {
        match signals.wait() {
            Ok(Signal::SIGTERM | Signal::SIGINT) => {
                println!("flotilla-pause: shutting down, signal received");
                return ExitCode::SUCCESS;
            }
            Ok(Signal::SIGCHLD) => reap(),
            Ok(_) => {}
            Err(errno) => {
                eprintln!("flotilla-pause: sigwait failed: {errno}");
                return ExitCode::FAILURE;
            }
        }
    }
}

/// Collects every child that has exited; several may share one SIGCHLD.
fn reap() {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => {
                eprintln!("flotilla-pause: waitpid failed: {errno}");
                return;
            }
        }
    }
}
