//! Flotilla's privileged end-to-end tests, one module per area, all in one test binary so the
//! stack (control plane, agent, test bed) is linked once for all of them rather than once per
//! file. They create network namespaces, start containerd and load eBPF programs, so they need
//! root and run serialised (`--test-threads=1`): they share the kernel, and this one process
//! (its pid names every test bed's namespaces and picks the underlay subnet, see
//! `flotilla_testbed::unique_prefix`).
//!
//! Run them with `sudo -E cargo test --package flotilla-testbed --test integration --
//! --test-threads=1` (add a test's name, e.g. `network_policy::`, to run one module).

mod support;

mod agent;
mod cluster_dns;
mod datapath_counter;
mod flannel_baseline;
mod images;
mod kube_proxy_baseline;
mod kubelet_api;
mod local_cluster;
mod network_policy;
mod overlay_datapath;
mod perf;
mod pod_library;
mod pod_network;
mod service_nat;
mod services;
mod testbed;

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
