//! `--etcd-endpoints`: the control plane on an external 3-member etcd cluster keeps serving
//! writes when one member dies (Raft quorum), and starts no etcd of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use crate::common;
use anyhow::{bail, ensure};

use flotilla_controlplane::{
    etcd::free_port,
    run::{Config, ControlPlane},
};

struct Member {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Member {
    /// The last lines of the member's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// How many times a cluster whose member could not start is started again on new ports.
const CLUSTER_ATTEMPTS: usize = 3;
/// How long the members may take to elect a leader and serve.
const CLUSTER_READY: Duration = Duration::from_secs(30);

/// A 3-member etcd cluster on loopback, every member serving with a known leader. Its ports come
/// from `free_port`, so one can be taken before its member binds it (the first members' outgoing
/// peer connections use the same ephemeral range); the member then exits, and the cluster starts
/// again on new ports. A cluster that silently ran on two members would lose its quorum when the
/// test kills one.
async fn etcd_cluster(dir: &Path) -> anyhow::Result<(Vec<Member>, Vec<String>)> {
    let mut failures = Vec::new();
    for attempt in 0..CLUSTER_ATTEMPTS {
        let (mut members, endpoints) = start_members(&dir.join(format!("attempt-{attempt}")))?;
        match serving(&mut members, &endpoints).await {
            Ok(()) => return Ok((members, endpoints)),
            Err(err) => failures.push(format!("attempt {attempt}: {err:#}")),
        }
    }
    bail!(
        "no 3-member etcd cluster started in {CLUSTER_ATTEMPTS} attempts:\n{}",
        failures.join("\n")
    )
}

fn start_members(dir: &Path) -> anyhow::Result<(Vec<Member>, Vec<String>)> {
    std::fs::create_dir_all(dir)?;
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
        let log = dir.join(format!("m{i}.log"));
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
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true)
            .spawn()?;
        members.push(Member { child, log });
        endpoints.push(format!("http://127.0.0.1:{client}"));
    }
    Ok((members, endpoints))
}

/// Waits until every member answers a status request with a leader; fails at once if a member
/// exited, and after [`CLUSTER_READY`] otherwise.
async fn serving(members: &mut [Member], endpoints: &[String]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + CLUSTER_READY;
    loop {
        for (i, member) in members.iter_mut().enumerate() {
            if let Some(status) = member.child.try_wait()? {
                bail!(
                    "member m{i} exited ({status}); its log:\n{}",
                    member.log_tail()
                );
            }
        }
        let mut led = 0;
        for endpoint in endpoints {
            let status = async {
                etcd_client::Client::connect([endpoint.as_str()], None)
                    .await?
                    .status()
                    .await
            };
            if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(2), status).await
                && status.leader() != 0
            {
                led += 1;
            }
        }
        if led == endpoints.len() {
            return Ok(());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "only {led} of {} members served with a leader within {CLUSTER_READY:?}",
            endpoints.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    assert!(
        created,
        "writes resume with two of three members; the survivors' logs:\n--- m1\n{}\n--- m2\n{}",
        members[1].log_tail(),
        members[2].log_tail()
    );
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
