//! Three control planes whose embedded etcd members form one cluster (kubeadm's stacked etcd):
//! started together with one initial cluster and one PKI, each serves the API on its own member;
//! a write through one is read through another; with one control plane (and its member) stopped
//! the other two keep writing, and the stopped one comes back with what was written meanwhile.
//! Wrong cluster settings are refused before etcd starts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api,
    api::{ObjectMeta, Patch, PatchParams, PostParams},
};

use crate::common::{Cluster, eventually};
use flotilla_controlplane::{
    etcd::{EtcdMember, free_port},
    run::{Config, ControlPlane, copy_shared_state, create_shared_state},
};

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_control_planes_share_one_etcd_cluster_and_survive_losing_one() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    // What they share, made before any starts (they start together), as `certs` makes it.
    create_shared_state(&dir.path().join("cp1"), &[])?;
    let mut configs = Vec::new();
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let initial_cluster: Vec<(String, String)> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer, _))| (format!("cp{}", i + 1), format!("https://127.0.0.1:{peer}")))
        .collect();
    for (i, (client, peer, api)) in ports.iter().enumerate() {
        let name = format!("cp{}", i + 1);
        let state = dir.path().join(&name);
        if i > 0 {
            copy_shared_state(&dir.path().join("cp1"), &state)?;
        }
        configs.push(Config {
            etcd_ports: (*client, *peer),
            etcd_member: EtcdMember {
                name,
                initial_cluster: initial_cluster.clone(),
                ..EtcdMember::default()
            },
            ..Config::new(state, format!("127.0.0.1:{api}").parse()?)
        });
    }
    let start = |config: &Config| {
        tokio::time::timeout(Duration::from_secs(60), ControlPlane::start(config.clone()))
    };
    let (one, two, three) =
        tokio::join!(start(&configs[0]), start(&configs[1]), start(&configs[2]));
    let (one, two, three) = (one??, two??, three??);
    let client = |control_plane: &ControlPlane| {
        let kubeconfig = control_plane.kubeconfig.clone();
        async move {
            let config = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(&kubeconfig)?,
                &Default::default(),
            )
            .await?;
            anyhow::Ok(Api::<ConfigMap>::namespaced(
                kube::Client::try_from(config)?,
                "default",
            ))
        }
    };
    let (maps_one, maps_three) = (client(&one).await?, client(&three).await?);
    maps_one
        .create(&PostParams::default(), &config_map("through-one"))
        .await?;
    assert!(maps_three.get_opt("through-one").await?.is_some());
    // A patch through another member right after a create: its first try starts from that
    // member's local copy, which may not have the object yet (or an older version); the
    // answer must still be the patched object, and every later read must see it.
    let maps_two_now = client(&two).await?;
    for round in 0..30 {
        let name = format!("race-{round}");
        maps_one
            .create(&PostParams::default(), &config_map(&name))
            .await?;
        let patch = serde_json::json!({"data": {"round": round.to_string()}});
        let patched = maps_three
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let round = round.to_string();
        assert_eq!(
            patched.data.as_ref().and_then(|data| data.get("round")),
            Some(&round)
        );
        let read = maps_one.get(&name).await?;
        assert_eq!(
            read.data.as_ref().and_then(|data| data.get("round")),
            Some(&round)
        );
        // The same patch again changes nothing, wherever the copy it starts from stands.
        let again = maps_two_now
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        assert_eq!(
            again.metadata.resource_version,
            read.metadata.resource_version
        );
    }

    // cp1 and its member stop: two of three keep the quorum.
    one.stop().await;
    let maps_two = client(&two).await?;
    eventually(Duration::from_secs(15), "a write through cp2", || async {
        maps_two
            .create(&PostParams::default(), &config_map("without-one"))
            .await
            .ok()
    })
    .await;
    assert!(maps_three.get_opt("without-one").await?.is_some());

    // cp1 comes back on its data and catches up.
    let one = start(&configs[0]).await??;
    let maps_one = client(&one).await?;
    eventually(
        Duration::from_secs(15),
        "cp1 reading what cp2 wrote",
        || async { maps_one.get_opt("without-one").await.ok().flatten() },
    )
    .await;
    let identity = std::fs::read_to_string(dir.path().join("cp1/etcd.identity"))?;
    assert!(identity.contains("cluster="), "{identity}");
    for control_plane in [one, two, three] {
        control_plane.stop().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_settings_that_cannot_work_are_refused() -> anyhow::Result<()> {
    // `members` gets this member's own peer URL.
    let refused = |members: fn(String) -> Vec<(String, String)>| async move {
        let err = Cluster::start_with(|config| {
            let own = format!("https://127.0.0.1:{}", config.etcd_ports.1);
            config.etcd_member = EtcdMember {
                name: "cp1".into(),
                initial_cluster: members(own),
                ..EtcdMember::default()
            };
        })
        .await
        .err()
        .expect("the start must fail");
        format!("{err:#}")
    };
    let missing = refused(|_| vec![("cp2".into(), "https://127.0.0.1:1".into())]).await;
    assert!(
        missing
            .contains("--etcd-initial-cluster does not name this member (cp1=https://127.0.0.1:"),
        "{missing}"
    );
    let elsewhere = refused(|_| vec![("cp1".into(), "https://127.0.0.1:1".into())]).await;
    assert!(
        elsewhere.contains(
            "gives this member (cp1) the peer URL https://127.0.0.1:1, but it listens on"
        ),
        "{elsewhere}"
    );
    let twice = refused(|own| {
        vec![
            ("cp1".into(), own),
            ("cp2".into(), "https://127.0.0.1:1".into()),
            ("cp2".into(), "https://127.0.0.1:2".into()),
        ]
    })
    .await;
    assert!(twice.contains("names the member cp2 twice"), "{twice}");
    let plain = refused(|own| {
        vec![
            ("cp1".into(), own),
            ("cp2".into(), "http://127.0.0.1:2".into()),
        ]
    })
    .await;
    assert!(
        plain.contains("the member cp2 has the peer URL http://127.0.0.1:2; members speak TLS"),
        "{plain}"
    );
    Ok(())
}
