//! Benchmark tables: rows of flotilla-perf reports from any source (a baseline network, Flotilla's
//! datapath, the bare underlay), printed as one line per (datapath, path) with a column group per
//! test, plus each headline figure relative to a reference row measured in the same run.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Report, Test};

/// One measurement: where it was taken and what flotilla-perf reported.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// The network under test, e.g. `flannel` or `flotilla`.
    pub datapath: String,
    /// The path through it, e.g. `pod to pod, cross-node`.
    pub path: String,
    /// The report of one test on that path.
    pub report: Report,
}

impl Row {
    /// A row for `report` taken on `path` of `datapath`.
    pub fn new(datapath: impl Into<String>, path: impl Into<String>, report: Report) -> Self {
        Self {
            datapath: datapath.into(),
            path: path.into(),
            report,
        }
    }
}

/// The figure a test is judged by: Mbit/s for TCP_STREAM, transactions/s for the others.
pub fn headline(report: &Report) -> f64 {
    if report.test == Test::TcpStream {
        report.throughput_mbit_s
    } else {
        report.transactions_per_s
    }
}

/// The (datapath, path) pairs of `rows` in first-seen order.
fn lines(rows: &[Row]) -> Vec<(&str, &str)> {
    let mut lines: Vec<(&str, &str)> = Vec::new();
    for row in rows {
        let key = (row.datapath.as_str(), row.path.as_str());
        if !lines.contains(&key) {
            lines.push(key);
        }
    }
    lines
}

/// The tests present in `rows`, in netperf's order.
fn tests(rows: &[Row]) -> Vec<Test> {
    Test::ALL
        .into_iter()
        .filter(|test| rows.iter().any(|row| row.report.test == *test))
        .collect()
}

fn find<'a>(rows: &'a [Row], line: (&str, &str), test: Test) -> Option<&'a Report> {
    rows.iter()
        .rev()
        .find(|row| row.datapath == line.0 && row.path == line.1 && row.report.test == test)
        .map(|row| &row.report)
}

/// Column headers and cells of one test's column group.
fn columns(test: Test) -> Vec<String> {
    if test == Test::TcpStream {
        vec![format!("{test} Mbit/s")]
    } else {
        vec![
            format!("{test} /s"),
            format!("{test} p50 us"),
            format!("{test} p99 us"),
        ]
    }
}

fn cells(test: Test, report: Option<&Report>) -> Vec<String> {
    let Some(report) = report else {
        return vec!["-".to_owned(); columns(test).len()];
    };
    if test == Test::TcpStream {
        return vec![format!("{:.0}", report.throughput_mbit_s)];
    }
    let latency = |pick: fn(&super::LatencySummary) -> f64| {
        report
            .latency_us
            .as_ref()
            .map_or_else(|| "-".to_owned(), |latency| format!("{:.1}", pick(latency)))
    };
    let mut cells = vec![
        format!("{:.0}", report.transactions_per_s),
        latency(|latency| latency.p50),
        latency(|latency| latency.p99),
    ];
    if report.errors + report.lost > 0 {
        cells[0].push_str(&format!(" ({} err)", report.errors + report.lost));
    }
    cells
}

/// `lines` as an aligned text table: the first line is the header (underlined), the first two
/// columns are text (left-aligned), the others figures (right-aligned).
pub fn grid(lines: &[Vec<String>]) -> String {
    let mut out = String::new();
    render_grid(&mut out, lines);
    out
}

fn render_grid(out: &mut String, grid: &[Vec<String>]) {
    let width = grid.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..width)
        .map(|column| {
            grid.iter()
                .filter_map(|line| line.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (index, line) in grid.iter().enumerate() {
        let mut text = String::new();
        for (column, cell) in line.iter().enumerate() {
            let pad = widths[column].saturating_sub(cell.chars().count());
            // Text columns (datapath, path) left-aligned, figures right-aligned.
            if column < 2 {
                let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(text, "{}{cell}  ", " ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
        if index == 0 {
            let total = widths.iter().sum::<usize>() + 2 * width.saturating_sub(1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
}

/// The table of `rows`: one line per (datapath, path), a column group per test (the last row
/// wins if a test ran twice on a path). With a `reference` (datapath, path) that is in `rows`, a
/// second table gives every line's headline figures as a percentage of the reference's.
pub fn render(rows: &[Row], reference: Option<(&str, &str)>) -> String {
    let lines = lines(rows);
    let tests = tests(rows);
    let mut grid = vec![
        ["datapath".to_owned(), "path".to_owned()]
            .into_iter()
            .chain(tests.iter().flat_map(|test| columns(*test)))
            .collect::<Vec<_>>(),
    ];
    for line in &lines {
        grid.push(
            [line.0.to_owned(), line.1.to_owned()]
                .into_iter()
                .chain(
                    tests
                        .iter()
                        .flat_map(|test| cells(*test, find(rows, *line, *test))),
                )
                .collect(),
        );
    }
    let mut out = String::new();
    render_grid(&mut out, &grid);

    let Some(reference) = reference.filter(|reference| lines.contains(reference)) else {
        return out;
    };
    let _ = writeln!(
        out,
        "\nrelative to {} / {} (headline figure: Mbit/s for TCP_STREAM, transactions/s otherwise)",
        reference.0, reference.1
    );
    let mut grid = vec![
        ["datapath".to_owned(), "path".to_owned()]
            .into_iter()
            .chain(tests.iter().map(|test| test.to_string()))
            .collect::<Vec<_>>(),
    ];
    for line in &lines {
        let ratios = tests.iter().map(|test| {
            match (find(rows, *line, *test), find(rows, reference, *test)) {
                (Some(report), Some(base)) if headline(base) > 0.0 => {
                    format!("{:.0} %", 100.0 * headline(report) / headline(base))
                }
                _ => "-".to_owned(),
            }
        });
        grid.push(
            [line.0.to_owned(), line.1.to_owned()]
                .into_iter()
                .chain(ratios)
                .collect(),
        );
    }
    render_grid(&mut out, &grid);
    out
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, SocketAddr},
        time::Duration,
    };

    use super::*;
    use crate::perf::{ClientConfig, Histogram};

    fn report(test: Test, per_second: u64) -> Report {
        let config = ClientConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 1)), test);
        let mut latencies = Histogram::new();
        latencies.record(Duration::from_micros(50));
        if test == Test::TcpStream {
            // per_second Mbit/s over one second.
            Report::new(
                &config,
                Duration::from_secs(1),
                0,
                0,
                0,
                per_second * 125_000,
                None,
            )
        } else {
            Report::new(
                &config,
                Duration::from_secs(1),
                per_second,
                0,
                0,
                per_second * 2,
                Some(&latencies),
            )
        }
    }

    #[test]
    fn one_line_per_path_and_ratios_against_the_reference() {
        let rows = vec![
            Row::new("kernel", "underlay", report(Test::TcpStream, 18_000)),
            Row::new("kernel", "underlay", report(Test::TcpRr, 35_000)),
            Row::new("flannel", "cross-node", report(Test::TcpStream, 9_000)),
            Row::new("flannel", "cross-node", report(Test::TcpRr, 21_000)),
            // A path without TCP_RR shows a dash.
            Row::new("flannel", "same node", report(Test::TcpStream, 17_000)),
        ];
        let table = render(&rows, Some(("kernel", "underlay")));
        println!("{table}");
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("datapath"), "{table}");
        assert!(lines[0].contains("TCP_STREAM Mbit/s") && lines[0].contains("TCP_RR p99 us"));
        assert!(lines[1].chars().all(|c| c == '-'));
        assert!(
            lines[2].starts_with("kernel ") && lines[2].contains("18000"),
            "{table}"
        );
        assert!(
            lines[3].contains("21000") && lines[3].contains("50.0"),
            "{table}"
        );
        assert!(lines[4].trim_end().ends_with('-'), "{table}");
        assert!(table.contains("relative to kernel / underlay"), "{table}");
        let flannel = table
            .lines()
            .rfind(|line| line.contains("cross-node"))
            .unwrap();
        assert!(
            flannel.contains("50 %") && flannel.contains("60 %"),
            "{flannel}"
        );
    }

    #[test]
    fn an_unknown_reference_prints_no_ratios() {
        let rows = vec![Row::new("a", "b", report(Test::TcpCrr, 4_000))];
        let table = render(&rows, Some(("x", "y")));
        assert!(!table.contains("relative"), "{table}");
        assert!(table.contains("TCP_CRR /s"), "{table}");
        assert_eq!(render(&[], None).lines().count(), 2);
    }

    #[test]
    fn headlines_are_throughput_or_rate() {
        assert_eq!(headline(&report(Test::TcpStream, 100)), 100.0);
        assert_eq!(headline(&report(Test::UdpRr, 7)), 7.0);
    }
}
