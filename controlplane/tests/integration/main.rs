//! The control plane's integration tests, one module per area, all in one test binary so the
//! control plane is linked once for all of them rather than once per file. Each test starts its
//! own control plane (its own etcd on free loopback ports, see `common`), so the tests share no
//! state and run in parallel threads of this one process.
//!
//! Run them with `cargo test --package flotilla-controlplane --test integration` (add a test's
//! name, e.g. `-- deployment::`, to run one module).

mod common;

mod api_client;
mod daemonset;
mod deployment;
mod disruption;
mod dns;
mod endpoints;
mod external_etcd;
mod garbage_collector;
mod ipam;
mod jobs;
mod kubectl;
mod logs;
mod node_lifecycle;
mod replicaset;
mod replication_controller;
mod scheduler;
mod statefulset;
mod storage;

/// Every file beside this one is a module of this binary (a file nobody declares would never be
/// compiled, let alone run), and no other integration-test binary sits beside this one.
#[test]
fn every_test_file_is_a_module_of_this_binary() -> std::io::Result<()> {
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let declared: std::collections::BTreeSet<String> = include_str!("main.rs")
        .lines()
        .filter_map(|line| line.strip_prefix("mod ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect();
    let mut files = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(tests.join("integration"))? {
        let path = entry?.path();
        let module = if path.is_dir() && path.join("mod.rs").exists() {
            path.file_name()
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            path.file_stem().filter(|stem| *stem != "main")
        } else {
            None
        };
        files.extend(module.map(|name| name.to_string_lossy().into_owned()));
    }
    assert_eq!(
        files, declared,
        "each .rs file in tests/integration/ needs a `mod` line in main.rs"
    );
    let mut others = Vec::new();
    for entry in std::fs::read_dir(&tests)? {
        let name = entry?.file_name();
        if name != "integration" {
            others.push(name);
        }
    }
    assert!(
        others.is_empty(),
        "tests/ should hold only integration/ (one test binary per crate); move {others:?} into \
         it as modules"
    );
    Ok(())
}
