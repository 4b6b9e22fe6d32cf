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

mod admission_webhooks;
mod agent;
mod chaos;
mod cluster_dns;
mod control_planes;
mod datapath_counter;
mod flannel_baseline;
mod images;
mod install;
mod join;
mod kube_proxy_baseline;
mod kubelet_api;
mod load_balancer;
mod local_cluster;
mod maglev;
mod network_policy;
mod operator;
mod overlay_datapath;
mod perf;
mod pod_library;
mod pod_network;
mod service_account_tokens;
mod service_nat;
mod services;
mod storage;
mod testbed;
