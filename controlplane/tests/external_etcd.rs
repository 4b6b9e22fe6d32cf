//! `--etcd-endpoints`: the control plane on an external 3-member etcd cluster keeps serving
//! writes when one member dies (Raft quorum), and starts no etcd of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

mod common;

use std::{process::Stdio, time::Duration};

use flotilla_controlplane::{
    etcd::free_port,
    run::{Config, ControlPlane},
};

struct Member {
    child: tokio::process::Child,
}

async fn etcd_cluster(dir: &std::path::Path) -> anyhow::Result<(Vec<Member>, Vec<String>)> {
    let ports: Vec<(u16, u16)> = (0..3)
        .map(|_| Ok::<_, anyhow::Error>((free_port()?, free_port()?)))
        .collect::<Result<_, _>>()?;
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect();
    let mut members = Vec::new();
    let mut endpoints = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("m{i}.log")))?;
        let child = tokio::process::Command::new("etcd")
            .arg(format!("--name=m{i}"))
            .arg(format!(
                "--data-dir={}",
                dir.join(format!("m{i}")).display()
            ))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .arg("--initial-cluster-state=new")
            .arg("--logger=zap")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        members.push(Member { child });
        endpoints.push(format!("http://127.0.0.1:{client}"));
    }
    Ok((members, endpoints))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_losing_one_of_three_etcd_members() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut members, endpoints) = etcd_cluster(dir.path()).await?;
    let config = Config {
        etcd_endpoints: endpoints,
        ..Config::new(
            dir.path().join("state"),
            format!("127.0.0.1:{}", free_port()?).parse()?,
        )
    };
    let control_plane =
        tokio::time::timeout(Duration::from_secs(60), ControlPlane::start(config)).await??;
    assert!(
        !dir.path().join("state/etcd").exists(),
        "no embedded etcd with --etcd-endpoints"
    );
    let cluster = common::Cluster::adopt(dir, control_plane);
    cluster.kubectl_ok(&["create", "-f", &cluster.write("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: default}\ndata: {k: v}\n").to_string_lossy()]);

    members[0].child.kill().await?;
    // etcd elects a new leader in about 2 s if the dead one led; writes resume by then.
    let manifest = cluster.write(
        "b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: default}\ndata: {k: v}\n",
    );
    let mut created = false;
    for _ in 0..40 {
        if cluster
            .kubectl(&["create", "-f", &manifest.to_string_lossy()])
            .status
            .success()
        {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(created, "writes resume with two of three members");
    // Requests that land on the dead member's endpoint are retried on the others: no errors.
    for _ in 0..10 {
        cluster.kubectl_ok(&["get", "cm", "-o", "name"]);
    }
    let names = cluster.kubectl_ok(&["get", "cm", "-o", "name"]);
    assert!(
        names.contains("configmap/a") && names.contains("configmap/b"),
        "{names}"
    );
    Ok(())
}
