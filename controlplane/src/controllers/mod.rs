//! Workload controllers, each a kube-runtime `Controller` against our own API server:
//! level-triggered reconcilers that read the current state and converge on the spec.

pub mod deployment;
pub mod endpoints;
pub mod replicaset;

use kube::Client;

/// Runs every controller until the task is dropped.
pub async fn run(client: Client) {
    tokio::join!(
        replicaset::run(client.clone()),
        deployment::run(client.clone()),
        endpoints::run(client)
    );
}
