//! What authorization costs, in the same run: the same gets and merge patches made as
//! `system:masters` (whom authorization lets through at once, as if it were off) and as a user
//! RBAC judges (bound to `edit` in the namespace, beside 100 ClusterRoleBindings and 100
//! RoleBindings of other users, so every decision walks a policy of realistic size), their
//! requests interleaved in one stream so both meet the same load.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _, stream};

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

use super::{Sample, ms};

/// Requests of each operation, half of them from each user.
const REQUESTS: usize = 4000;

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

/// `REQUESTS` of one operation, `CONCURRENCY` at a time, even ones made as the admin and odd
/// ones as the RBAC user, so both meet the same load at the same moments; their latencies
/// apart.
async fn interleaved<F, Fut>(op: F) -> anyhow::Result<[Vec<Duration>; 2]>
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let timings: Vec<(usize, Duration)> = stream::iter(0..REQUESTS)
        .map(|i| {
            let op = &op;
            async move {
                let t = Instant::now();
                op(i % 2, i).await.map(|()| (i % 2, t.elapsed()))
            }
        })
        .buffer_unordered(super::CONCURRENCY)
        .try_collect()
        .await?;
    let mut apart: [Vec<Duration>; 2] = Default::default();
    for (who, latency) in timings {
        apart[who].push(latency);
    }
    Ok(apart)
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
    let apis = [as_admin, as_user];
    let gets = interleaved(|who, i| {
        let api = apis[who].clone();
        async move {
            api.get(&format!("bench-{:05}", (i * 7919) % objects))
                .await?;
            Ok(())
        }
    })
    .await?;
    let patches = interleaved(|who, i| {
        let api = apis[who].clone();
        async move {
            let patch = json!({"data": {"authz": i.to_string()}});
            api.patch(
                &format!("bench-{:05}", i % objects),
                &Default::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    let latencies = [gets, patches];
    println!();
    println!(
        "{:<34} {:>12} {:>12} | {:>12} {:>12} | {:>9}",
        "authorization", "masters p50", "masters p99", "RBAC p50", "RBAC p99", "p99 ratio"
    );
    let mut worst: f64 = 0.0;
    for (op, name) in ["get", "update (merge patch)"].into_iter().enumerate() {
        let sample = |who: usize| Sample {
            name,
            requested: REQUESTS / 2,
            latencies: latencies[op][who].clone(),
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
        "(masters: authorization lets it through at once; RBAC: a user bound to `edit`, 201 bindings in all; {REQUESTS} requests of each, the two users' interleaved)"
    );
    Ok(worst)
}
