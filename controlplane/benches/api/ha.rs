//! What three control planes cost against one, in the same run: three control planes whose
//! embedded etcd members form one cluster (kubeadm's stacked etcd, peer TLS on loopback, as
//! `cargo xtask up --control-planes 3` runs them on machines of their own) take the same
//! creates, gets, lists and merge patches as the bench's single control plane, spread over the
//! three API servers in turn as a balancer spreads clients. Each side works in a fresh
//! namespace of its own, so both hold the same objects.

use std::time::Duration;

use flotilla_controlplane::{
    etcd::{EtcdMember, free_port},
    run::{Config, ControlPlane, copy_shared_state, create_shared_state},
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api, Client,
    api::{Patch, PostParams},
};

use super::{Sample, configmap, list_all, ms, timed};

/// The namespace both sides work in.
const NAMESPACE: &str = "bench-ha";
/// Control planes of the cluster.
const MEMBERS: usize = 3;

/// Starts three control planes with one etcd cluster under `dir`.
async fn start_cluster(dir: &std::path::Path) -> anyhow::Result<Vec<ControlPlane>> {
    create_shared_state(&dir.join("cp1"), &[])?;
    let ports: Vec<(u16, u16, u16)> = (0..MEMBERS)
        .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let initial_cluster: Vec<(String, String)> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer, _))| (format!("cp{}", i + 1), format!("https://127.0.0.1:{peer}")))
        .collect();
    let mut starts = Vec::new();
    for (i, (client, peer, api)) in ports.iter().enumerate() {
        let name = format!("cp{}", i + 1);
        let state = dir.join(&name);
        if i > 0 {
            copy_shared_state(&dir.join("cp1"), &state)?;
        }
        let config = Config {
            etcd_ports: (*client, *peer),
            etcd_member: EtcdMember {
                name,
                initial_cluster: initial_cluster.clone(),
                ..EtcdMember::default()
            },
            ..Config::new(state, format!("127.0.0.1:{api}").parse()?)
        };
        // Together: the members of a new etcd cluster wait for each other.
        starts.push(tokio::spawn(tokio::time::timeout(
            Duration::from_secs(60),
            ControlPlane::start(config),
        )));
    }
    let mut control_planes = Vec::new();
    for start in starts {
        control_planes.push(start.await???);
    }
    Ok(control_planes)
}

async fn client_of(control_plane: &ControlPlane) -> anyhow::Result<Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&control_plane.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Creates, gets, lists and patches `count` ConfigMaps in [`NAMESPACE`] through `clients`
/// (operation `i` through client `i % len`).
async fn operations(clients: &[Client], count: usize) -> anyhow::Result<[Sample; 4]> {
    let apis: Vec<Api<ConfigMap>> = clients
        .iter()
        .map(|client| Api::namespaced(client.clone(), NAMESPACE))
        .collect();
    let namespace =
        serde_json::from_value::<Namespace>(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
    Api::<Namespace>::all(clients[0].clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    let api = |i: usize| apis[i % apis.len()].clone();
    let create = timed("create", count, |i| {
        let api = api(i);
        async move {
            api.create(&PostParams::default(), &configmap(i)).await?;
            Ok(())
        }
    })
    .await?;
    let get = timed("get", count, |i| {
        let api = api(i);
        async move {
            api.get(&format!("bench-{:05}", (i * 7919) % count)).await?;
            Ok(())
        }
    })
    .await?;
    let list = timed("list (500/page)", 6, |i| {
        let api = api(i);
        async move { list_all(&api).await }
    })
    .await?;
    let update = timed("update (merge patch)", count, |i| {
        let api = api(i);
        async move {
            let patch = serde_json::json!({"data": {"round": i.to_string()}});
            api.patch(
                &format!("bench-{:05}", i % count),
                &Default::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            Ok(())
        }
    })
    .await?;
    Ok([create, get, list, update])
}

/// Runs the comparison against `single` (the bench's control plane); prints a table and
/// returns the worst p99 ratio (three control planes over one).
pub(crate) async fn compare(single: &Client, objects: usize) -> anyhow::Result<f64> {
    let count = objects.min(2000);
    let dir = tempfile::tempdir()?;
    let control_planes = start_cluster(dir.path()).await?;
    let result = async {
        let mut clients = Vec::new();
        for control_plane in &control_planes {
            clients.push(client_of(control_plane).await?);
        }
        let one = operations(std::slice::from_ref(single), count).await?;
        let three = operations(&clients, count).await?;
        anyhow::Ok((one, three))
    }
    .await;
    for control_plane in control_planes {
        control_plane.stop().await;
    }
    let (one, three) = result?;
    println!();
    println!(
        "{count} ConfigMaps through 1 control plane vs 3 with one 3-member etcd cluster \
         (operations spread over the 3 API servers in turn)"
    );
    println!(
        "{:<24} {:>10} {:>10} | {:>10} {:>10} | {:>9}",
        "operation", "1 CP p50", "1 CP p99", "3 CP p50", "3 CP p99", "p99 ratio"
    );
    let mut worst: f64 = 0.0;
    for (a, b) in one.iter().zip(&three) {
        let ratio = b.percentile(0.99).as_secs_f64() / a.percentile(0.99).as_secs_f64().max(1e-9);
        worst = worst.max(ratio);
        println!(
            "{:<24} {:>10} {:>10} | {:>10} {:>10} | {:>8.2}x",
            a.name,
            ms(a.percentile(0.5)),
            ms(a.percentile(0.99)),
            ms(b.percentile(0.5)),
            ms(b.percentile(0.99)),
            ratio
        );
    }
    Ok(worst)
}
