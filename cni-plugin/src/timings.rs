//! Where an invocation's time goes, for `cargo xtask bench network`: with
//! `FLOTILLA_CNI_TIMINGS=1` in its environment the plugin writes one line to stderr as it exits,
//! `flotilla-cni timings: [["config", 310], ["runtime", 355], ...]`, the end of each phase in
//! microseconds since `main` started, in order. Off unless asked for (runtimes never set it):
//! the marks cost a clock read each.

use std::{
    sync::{Mutex, OnceLock},
    time::Instant,
};

/// The variable that asks for the line.
pub const ENV: &str = "FLOTILLA_CNI_TIMINGS";
/// What the line starts with.
pub const PREFIX: &str = "flotilla-cni timings: ";

/// When `main` started.
static STARTED: OnceLock<Instant> = OnceLock::new();
/// Each phase's end, in order.
static MARKS: Mutex<Vec<(&'static str, Instant)>> = Mutex::new(Vec::new());

/// Notes the start of the invocation (the first thing `main` does).
pub fn start() {
    let _ = STARTED.set(Instant::now());
}

/// Notes that `phase` ended now.
pub fn mark(phase: &'static str) {
    if let Ok(mut marks) = MARKS.lock() {
        marks.push((phase, Instant::now()));
    }
}

/// The line to print: every mark in microseconds since [`start`] (none without a start).
pub fn report() -> Option<String> {
    let started = STARTED.get()?;
    let marks = MARKS.lock().ok()?;
    let fields: Vec<String> = marks
        .iter()
        .map(|(phase, at)| {
            format!(
                "[{:?}, {}]",
                phase,
                at.saturating_duration_since(*started).as_micros()
            )
        })
        .collect();
    Some(format!("{PREFIX}[{}]", fields.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_the_marks_in_order() {
        start();
        mark("config");
        mark("output");
        let line = report().unwrap();
        let marks: Vec<(String, u64)> =
            serde_json::from_str(line.strip_prefix(PREFIX).unwrap()).unwrap();
        let at = |phase: &str| marks.iter().find(|(p, _)| p == phase).unwrap().1;
        assert!(at("config") <= at("output"));
    }
}
