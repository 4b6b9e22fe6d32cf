//! What authorization costs, in the same run: the same gets and merge patches made as
//! `system:masters` (whom authorization lets through at once, as if it were off) and as a user
//! RBAC judges (bound to `edit` in the namespace, beside 100 ClusterRoleBindings and 100
//! RoleBindings of other users, so every decision walks a policy of realistic size), in
//! alternating rounds so both see the same machine.

use std::path::Path;
use std::time::Duration;

use flotilla_controlplane::auth::{kubeconfig::render_for, pki::Pki};
use k8s_openapi::api::{
    core::v1::ConfigMap,
    rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding},
};
use kube::{
    Api, Client,
    api::{Patch, PostParams},
};
use serde_json::json;

use super::{Sample, ms, timed};

/// Rounds of each operation per user.
const ROUNDS: usize = 3;
/// Operations per round.
const PER_ROUND: usize = 500;

/// A client of `server` as `user`, with a certificate from the CA in `pki`.
async fn client_as(pki: &Path, server: &str, user: &str) -> anyhow::Result<Client> {
    let ca_cert = std::fs::read_to_string(pki.join("ca.crt"))?;
    let ca_key = std::fs::read_to_string(pki.join("ca.key"))?;
    let (cert, key) = Pki::issue_client_with(&ca_cert, &ca_key, user, "bench")?;
    let text = render_for(&ca_cert, server, "flotilla", (user, &cert, &key));
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Fills the policy and binds the bench user to `edit` in `default`.
async fn policy(admin: &Client) -> anyhow::Result<()> {
    let post = PostParams::default();
    let cluster_roles: Api<ClusterRole> = Api::all(admin.clone());
    let cluster_bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    for i in 0..100 {
        let role = json!({"metadata": {"name": format!("bench-role-{i}")}, "rules": [
            {"apiGroups": ["example.com"], "resources": [format!("things{i}")], "verbs": ["get", "list"]}]});
        cluster_roles
            .create(&post, &serde_json::from_value(role)?)
            .await?;
        let subject = json!([{"kind": "User", "name": format!("other-{i}"), "apiGroup": "rbac.authorization.k8s.io"}]);
        let binding = json!({"metadata": {"name": format!("bench-binding-{i}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("bench-role-{i}")},
            "subjects": subject});
        cluster_bindings
            .create(&post, &serde_json::from_value(binding.clone())?)
            .await?;
        bindings
            .create(&post, &serde_json::from_value(binding)?)
            .await?;
    }
    let binding = json!({"metadata": {"name": "bench-user-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "User", "name": "bench-user", "apiGroup": "rbac.authorization.k8s.io"}]});
    bindings
        .create(&post, &serde_json::from_value(binding)?)
        .await?;
    Ok(())
}

/// Gets and merge patches of the first `objects` bench ConfigMaps.
async fn round(
    api: &Api<ConfigMap>,
    objects: usize,
    salt: usize,
) -> anyhow::Result<(Sample, Sample)> {
    let get = timed("get", PER_ROUND, |i| {
        let api = api.clone();
        async move {
            api.get(&format!("bench-{:05}", (i * 7919 + salt) % objects))
                .await?;
            Ok(())
        }
    })
    .await?;
    let patch = timed("update (merge patch)", PER_ROUND, |i| {
        let api = api.clone();
        async move {
            let patch = json!({"data": {"authz": format!("{salt}-{i}")}});
            api.patch(
                &format!("bench-{:05}", (i + salt) % objects),
                &Default::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    Ok((get, patch))
}

/// Runs the comparison and prints it; returns the worst p99 ratio (RBAC user / masters).
pub(crate) async fn compare(
    admin: &Client,
    state_dir: &Path,
    server: &str,
    objects: usize,
) -> anyhow::Result<f64> {
    policy(admin).await?;
    let user = client_as(&state_dir.join("pki"), server, "bench-user").await?;
    let as_user: Api<ConfigMap> = Api::namespaced(user, "default");
    let as_admin: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    // The binding is in force once its watch event arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while as_user.get("bench-00000").await.is_err() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the bench user's binding never took effect"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies: [[Vec<Duration>; 2]; 2] = Default::default();
    for r in 0..ROUNDS {
        for (who, api) in [&as_admin, &as_user].into_iter().enumerate() {
            let (get, patch) = round(api, objects, r * 1000 + who).await?;
            latencies[who][0].extend(get.latencies);
            latencies[who][1].extend(patch.latencies);
        }
    }
    println!();
    println!(
        "{:<34} {:>12} {:>12} | {:>12} {:>12} | {:>9}",
        "authorization", "masters p50", "masters p99", "RBAC p50", "RBAC p99", "p99 ratio"
    );
    let mut worst: f64 = 0.0;
    for (op, name) in ["get", "update (merge patch)"].into_iter().enumerate() {
        let sample = |who: usize| Sample {
            name,
            requested: ROUNDS * PER_ROUND,
            latencies: latencies[who][op].clone(),
            wall: Duration::ZERO,
        };
        let (masters, rbac) = (sample(0), sample(1));
        let ratio =
            rbac.percentile(0.99).as_secs_f64() / masters.percentile(0.99).as_secs_f64().max(1e-9);
        worst = worst.max(ratio);
        println!(
            "{:<34} {:>12} {:>12} | {:>12} {:>12} | {:>8.2}x",
            name,
            ms(masters.percentile(0.5)),
            ms(masters.percentile(0.99)),
            ms(rbac.percentile(0.5)),
            ms(rbac.percentile(0.99)),
            ratio
        );
    }
    println!(
        "(masters: authorization lets it through at once; RBAC: a user bound to `edit`, 201 bindings in all; {ROUNDS} alternating rounds of {PER_ROUND})"
    );
    Ok(worst)
}
