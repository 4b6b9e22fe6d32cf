//! Leader election: two `flotilla-controlplane` processes on one etcd (sharing its PKI, as
//! control planes of one cluster do) serve the API both, but only one runs the scheduler and the
//! controllers, through the Leases kube-system/kube-scheduler and kube-controller-manager. A
//! leader restarted after a crash is the same candidate and keeps its Lease; one stopped with
//! SIGTERM hands over at once; one SIGKILLed is replaced once its Lease expires, and the
//! controllers carry on under the new leader.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::api::{apps::v1::ReplicaSet, coordination::v1::Lease, core::v1::Event};
use kube::{Api, api::ListParams};

use crate::common::{Cluster, eventually};
use flotilla_controlplane::{
    etcd::free_port,
    run::{CONTROLLER_MANAGER_LEASE, SCHEDULER_LEASE, copy_shared_state},
};

/// Short timings, so the test waits seconds rather than upstream's 15 s; the same ratios.
const LEASE_DURATION: Duration = Duration::from_secs(6);
const RENEW_DEADLINE: Duration = Duration::from_secs(4);
const RETRY_PERIOD: Duration = Duration::from_secs(1);
const LEASES: [&str; 2] = [SCHEDULER_LEASE, CONTROLLER_MANAGER_LEASE];

/// One control plane process, started and stopped by the test.
struct Candidate {
    dir: PathBuf,
    listen: SocketAddr,
    etcd: String,
    child: Option<tokio::process::Child>,
}

impl Candidate {
    /// A control plane in `dir` with the cluster's PKI and tokens copied in.
    fn new(cluster: &Cluster, name: &str) -> anyhow::Result<Self> {
        let dir = cluster.dir.path().join(name);
        let state = cluster.dir.path().join("state");
        copy_shared_state(&state, &dir)?;
        Ok(Self {
            dir,
            listen: format!("127.0.0.1:{}", free_port()?).parse()?,
            etcd: format!(
                "http://127.0.0.1:{}",
                cluster.control_plane.etcd_client_port
            ),
            child: None,
        })
    }

    fn log(&self) -> PathBuf {
        self.dir.join("controlplane.log")
    }

    /// Starts the process and waits until it serves.
    async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())?;
        let seconds = |duration: Duration| format!("{}s", duration.as_secs());
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-controlplane"))
            .arg("--state-dir")
            .arg(&self.dir)
            .args(["--listen", &self.listen.to_string()])
            .args(["--etcd-endpoints", &self.etcd])
            .args(["--leader-elect-lease-duration", &seconds(LEASE_DURATION)])
            .args(["--leader-elect-renew-deadline", &seconds(RENEW_DEADLINE)])
            .args(["--leader-elect-retry-period", &seconds(RETRY_PERIOD)])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .log_text()
            .contains(&format!("serving https://{}", self.listen))
        {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                bail!("the control plane exited ({status}):\n{}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!(
                    "the control plane did not serve in 60 s:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Its name in the Leases: `<hostname>_<id kept in the state directory>`.
    fn identity(&self) -> String {
        flotilla_controlplane::leader_election::identity(&self.dir).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Sends `signal` and waits (10 s at most) until the process has exited.
    async fn signal(&mut self, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let mut child = self.child.take().context("not running")?;
        let pid = child.id().context("already reaped")?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid.try_into()?), signal)?;
        tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .context("the control plane did not exit in 10 s")??;
        Ok(())
    }
}

/// The Lease `name`'s holder and transitions.
async fn holder(leases: &Api<Lease>, name: &str) -> (String, i32) {
    let spec = leases
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|lease| lease.spec)
        .unwrap_or_default();
    (
        spec.holder_identity.unwrap_or_default(),
        spec.lease_transitions.unwrap_or(0),
    )
}

/// Waits until `identity` holds both Leases; returns how long that took.
async fn both_held_by(leases: &Api<Lease>, identity: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    for lease in LEASES {
        eventually(limit, &format!("{identity} to hold {lease}"), || async {
            (holder(leases, lease).await.0 == identity).then_some(())
        })
        .await;
    }
    started.elapsed()
}

/// Creates the Deployment `name` through `cluster` and waits until the controllers made its
/// ReplicaSet.
async fn controllers_work(cluster: &Cluster, client: &kube::Client, name: &str) {
    cluster.kubectl_ok(&[
        "create",
        "deployment",
        name,
        "--image=registry.invalid/app:1",
    ]);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let selector = format!("app={name}");
    eventually(
        Duration::from_secs(20),
        &format!("a ReplicaSet for {name}"),
        || async {
            let list = sets
                .list(&ListParams::default().labels(&selector))
                .await
                .ok()?;
            (!list.items.is_empty()).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_control_plane_leads_and_another_takes_over_when_it_stops_or_dies() -> anyhow::Result<()>
{
    use nix::sys::signal::Signal;

    // The test's own control plane holds etcd and serves the API, and runs no control loops.
    let cluster = Cluster::start_with(|config| config.control_loops = false).await?;
    let client = cluster.client().await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut b = Candidate::new(&cluster, "b")?;
    let mut c = Candidate::new(&cluster, "c")?;
    b.start().await?;
    both_held_by(&leases, &b.identity(), Duration::from_secs(20)).await;
    c.start().await?;
    assert_ne!(b.identity(), c.identity());

    // c waits: b keeps both Leases over several renewals.
    tokio::time::sleep(RETRY_PERIOD * 3).await;
    for lease in LEASES {
        assert_eq!(holder(&leases, lease).await, (b.identity(), 0), "{lease}");
    }
    controllers_work(&cluster, &client, "before").await;

    // b crashes and comes back before its Lease expires: the same candidate keeps it.
    b.signal(Signal::SIGKILL).await?;
    b.start().await?;
    tokio::time::sleep(LEASE_DURATION + RETRY_PERIOD).await;
    for lease in LEASES {
        assert_eq!(holder(&leases, lease).await, (b.identity(), 0), "{lease}");
    }

    // b stops: it releases both Leases and c takes them at its next try.
    b.signal(Signal::SIGTERM).await?;
    let took = both_held_by(&leases, &c.identity(), Duration::from_secs(10)).await;
    println!("after a SIGTERM, the other control plane led both Leases in {took:?}");
    assert!(
        took <= RETRY_PERIOD * 3,
        "c took over {took:?} after b released the Leases"
    );
    assert!(
        b.log_text().contains(&format!(
            "released the Lease kube-system/{CONTROLLER_MANAGER_LEASE}"
        )),
        "{}",
        b.log_text()
    );
    for lease in LEASES {
        assert_eq!(
            holder(&leases, lease).await.1,
            1,
            "{lease} changed hands once"
        );
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "kube-system");
    let became = format!("{} became leader", c.identity());
    let recorded = events.list(&ListParams::default()).await?;
    assert!(
        recorded.items.iter().any(|event| {
            event.reason.as_deref() == Some("LeaderElection")
                && event.message.as_deref() == Some(became.as_str())
                && event.involved_object.name.as_deref() == Some(CONTROLLER_MANAGER_LEASE)
        }),
        "no LeaderElection event {became:?}"
    );

    // c dies without handing over: b (back as a candidate) takes over once the Lease expired.
    b.start().await?;
    let killed = Instant::now();
    c.signal(Signal::SIGKILL).await?;
    both_held_by(&leases, &b.identity(), LEASE_DURATION * 3).await;
    let took = killed.elapsed();
    println!("after a SIGKILL, the other control plane led both Leases in {took:?}");
    assert!(
        took >= LEASE_DURATION - RETRY_PERIOD * 2 && took <= LEASE_DURATION + RETRY_PERIOD * 4,
        "b took over {took:?} after c died; the Lease lasts {LEASE_DURATION:?}"
    );
    controllers_work(&cluster, &client, "after").await;
    for lease in LEASES {
        assert_eq!(
            holder(&leases, lease).await.1,
            2,
            "{lease} changed hands twice"
        );
    }
    Ok(())
}

/// Wrong timings are refused before anything starts, with client-go's rule in the message.
#[tokio::test]
async fn timings_that_cannot_work_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flotilla-controlplane"))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .args(["--leader-elect-lease-duration", "5s"])
        .args(["--leader-elect-renew-deadline", "10s"])
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "leader election: the lease duration (5s) must be greater than the renew deadline (10s)"
        ),
        "{stderr}"
    );
    assert!(
        !Path::new(&dir.path().join("etcd")).exists(),
        "nothing started"
    );
    Ok(())
}
