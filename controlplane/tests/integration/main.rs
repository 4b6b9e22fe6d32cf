//! The control plane's integration tests, one module per area, all in one test binary so the
//! control plane is linked once for all of them rather than once per file. Each test starts its
//! own control plane (its own etcd on free loopback ports, see `common`), so the tests share no
//! state and run in parallel threads of this one process.
//!
//! Run them with `cargo test --package flotilla-controlplane --test integration` (add a test's
//! name, e.g. `-- deployment::`, to run one module).

mod common;

mod admission_policies;
mod admission_webhooks;
mod api_client;
mod custom_resource_versions;
mod custom_resources;
mod daemonset;
mod deployment;
mod disruption;
mod dns;
mod endpoints;
mod etcd_cluster;
mod external_etcd;
mod garbage_collector;
mod ipam;
mod jobs;
mod kubectl;
mod kubectl_versions;
mod leader_election;
mod logs;
mod node_lifecycle;
mod rbac;
mod replicaset;
mod replication_controller;
mod scheduler;
mod server_side_apply;
mod statefulset;
mod storage;
mod volumes;
