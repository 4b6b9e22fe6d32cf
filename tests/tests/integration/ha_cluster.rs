//! `cargo xtask up --control-planes 3`, end to end: three control planes, each in a namespace
//! of its own with its member of one etcd cluster, behind the API balancer on the host's
//! address. With the supervisor stopped (so what follows is failover, not a restart), the
//! control plane holding the controllers' Lease is SIGKILLed with its etcd member while a
//! client writes through the kubeconfig `up` printed: another control plane takes the Leases
//! over, every write that was answered is kept, the dead server leaves the `kubernetes`
//! Endpoints, and a Deployment scaled afterwards gets its pods (new leader's controllers and
//! scheduler, the agent through its own balancer). `up` then restarts the dead control plane,
//! and `down` leaves nothing behind.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};

use crate::local_cluster::{
    DEMO_LIMIT, DOWN_LIMIT, Snapshot, no_cluster_here, nothing_left, xtask,
};

/// The control planes `up` starts here.
const CONTROL_PLANES: usize = 3;
/// How long another control plane may take to hold the Leases: upstream's 15 s lease, checked
/// every 2 s (x1.2 jitter) from when a candidate last saw it renewed.
const HANDOVER_LIMIT: Duration = Duration::from_secs(25);
/// Longest time in a row writes through the balancer may fail (an etcd leader election, the
/// balancer passing over the dead server).
const WRITE_OUTAGE_LIMIT: Duration = Duration::from_secs(5);

/// `kubectl` with `kubeconfig`, bounded; its stdout, or its stderr as the error.
fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("timeout")
        .arg("20")
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--request-timeout=5s")
        .args(args)
        .output()
        .context("running kubectl")?;
    if !output.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Polls `check` every 500 ms until it returns Some, for at most `limit`.
fn wait<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(err) => last = format!("{err:#}"),
        }
        if started.elapsed() > limit {
            bail!("{what}: not within {limit:?} (last error: {last})");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn read_pid(file: &Path) -> anyhow::Result<i32> {
    Ok(std::fs::read_to_string(file)
        .with_context(|| format!("reading {}", file.display()))?
        .trim()
        .parse()?)
}

/// The number of running Pods of the Deployment `web`.
fn running_pods(kubeconfig: &Path) -> anyhow::Result<usize> {
    let phases = kubectl(
        kubeconfig,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ],
    )?;
    Ok(phases
        .split_whitespace()
        .filter(|p| *p == "Running")
        .count())
}

/// The addresses the `kubernetes` Endpoints list.
fn api_endpoints(kubeconfig: &Path) -> anyhow::Result<Vec<String>> {
    let ips = kubectl(
        kubeconfig,
        &[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ],
    )?;
    let mut ips: Vec<String> = ips.split_whitespace().map(str::to_owned).collect();
    ips.sort();
    Ok(ips)
}

/// The run against a running 3-control-plane cluster in `cluster_dir`.
fn fail_over(cluster_dir: &Path) -> anyhow::Result<()> {
    let kubeconfig = cluster_dir.join("admin.kubeconfig");
    let machine = |number: usize| {
        cluster_dir
            .join("controlplanes")
            .join(format!("flotilla-cp{number}"))
    };
    let all: Vec<String> = (1..=CONTROL_PLANES)
        .map(|number| format!("192.168.78.{}", 1 + number))
        .collect();
    wait(
        Duration::from_secs(20),
        "every API server in the kubernetes Endpoints",
        || Ok((api_endpoints(&kubeconfig)? == all).then_some(())),
    )?;
    kubectl(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "web",
            "--image=docker.io/flotilla/testapp:v1",
            "--replicas=2",
        ],
    )?;
    wait(Duration::from_secs(60), "2 web pods running", || {
        Ok((running_pods(&kubeconfig)? == 2).then_some(()))
    })?;

    // What follows is failover: nothing restarts the victim.
    let supervisor = read_pid(&cluster_dir.join("supervisor.pid"))?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(supervisor),
        nix::sys::signal::SIGKILL,
    )
    .context("killing the supervisor")?;

    let holder = || {
        kubectl(
            &kubeconfig,
            &[
                "-n",
                "kube-system",
                "get",
                "lease",
                "kube-controller-manager",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        )
    };
    // Identities are `<hostname>_<id>`, the id kept in each control plane's state directory.
    let leader_of = |identity: &str| -> Option<usize> {
        (1..=CONTROL_PLANES).find(|number| {
            std::fs::read_to_string(machine(*number).join("controlplane/leader-election-id"))
                .is_ok_and(|id| !id.trim().is_empty() && identity.ends_with(id.trim()))
        })
    };
    let identity = holder()?;
    let victim = leader_of(&identity)
        .with_context(|| format!("no control plane has the leader identity {identity:?}"))?;
    let group = read_pid(&machine(victim).join("controlplane.pid"))?;
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::SIGKILL)
        .with_context(|| format!("killing control plane {victim}'s process group {group}"))?;
    let killed = Instant::now();

    // A writer through the kubeconfig until another control plane leads.
    let mut created = Vec::new();
    let mut failures = Vec::new();
    let mut outage: Option<Instant> = None;
    let mut longest_outage = Duration::ZERO;
    let mut handover = None;
    for round in 0..200 {
        let name = format!("ha-{round}");
        match kubectl(&kubeconfig, &["create", "configmap", &name]) {
            Ok(_) => {
                created.push(name);
                if let Some(since) = outage.take() {
                    longest_outage = longest_outage.max(since.elapsed());
                }
            }
            Err(err) => {
                failures.push(format!("{:?}: {err:#}", killed.elapsed()));
                outage.get_or_insert_with(Instant::now);
            }
        }
        if handover.is_none()
            && let Ok(now) = holder()
            && leader_of(&now).is_some_and(|number| number != victim)
        {
            handover = Some(killed.elapsed());
        }
        if handover.is_some() && round >= 10 && outage.is_none() {
            break;
        }
        ensure!(
            killed.elapsed() < HANDOVER_LIMIT + Duration::from_secs(30),
            "no control plane took the Leases over within {:?} of the leader's SIGKILL",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let handover = handover.context("no handover")?;
    println!(
        "control plane {victim} (the leader) SIGKILLed with its etcd member: another held the \
         Leases after {handover:?}; {} writes answered, {} failed, longest write outage \
         {longest_outage:?}; failures: {failures:#?}",
        created.len(),
        failures.len()
    );
    ensure!(
        handover <= HANDOVER_LIMIT,
        "the Leases were taken over after {handover:?}, over {HANDOVER_LIMIT:?}"
    );
    ensure!(
        longest_outage <= WRITE_OUTAGE_LIMIT,
        "writes failed for {longest_outage:?} in a row: {failures:#?}"
    );
    let stored = kubectl(
        &kubeconfig,
        &[
            "get",
            "configmaps",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
    )?;
    let lost: Vec<&String> = created
        .iter()
        .filter(|name| !stored.split_whitespace().any(|s| s == name.as_str()))
        .collect();
    ensure!(lost.is_empty(), "answered writes lost: {lost:?}");

    // The dead server's record expires from the kubernetes Endpoints (15 s TTL).
    let survivors: Vec<String> = all
        .iter()
        .filter(|ip| **ip != format!("192.168.78.{}", 1 + victim))
        .cloned()
        .collect();
    wait(
        Duration::from_secs(30),
        "the dead server out of the Endpoints",
        || Ok((api_endpoints(&kubeconfig)? == survivors).then_some(())),
    )?;
    kubectl(&kubeconfig, &["scale", "deployment", "web", "--replicas=3"])?;
    wait(
        Duration::from_secs(60),
        "3 web pods running after the failover",
        || Ok((running_pods(&kubeconfig)? == 3).then_some(())),
    )?;

    // `up` restarts the dead control plane (and the supervisor); it rejoins its etcd cluster.
    xtask(&["up"], DEMO_LIMIT).context("`cargo xtask up` after the failover")?;
    wait(
        Duration::from_secs(30),
        "every API server back in the Endpoints",
        || Ok((api_endpoints(&kubeconfig)? == all).then_some(())),
    )?;
    ensure!(
        running_pods(&kubeconfig)? == 3,
        "the web pods changed across the repair"
    );
    Ok(())
}

#[test]
fn three_control_planes_survive_the_loss_of_the_leader() -> anyhow::Result<()> {
    ensure!(
        nix::unistd::geteuid().is_root(),
        "the local cluster creates network namespaces and loads eBPF: run as root"
    );
    let cluster_dir = no_cluster_here()?;
    let before = Snapshot::take();
    let up = xtask(&["up", "--control-planes", "3", "--nodes", "1"], DEMO_LIMIT);
    let running = Snapshot::take();
    let result = up.and_then(|()| fail_over(&cluster_dir));
    let down = xtask(&["down"], DOWN_LIMIT);
    result?;
    down?;
    let created = running.added_since(&before);
    for expected in [
        "network namespace flotilla-cp1",
        "network namespace flotilla-cp2",
        "network namespace flotilla-cp3",
    ] {
        ensure!(
            created.iter().any(|item| item == expected),
            "the running cluster lacks {expected}; it had: {created:#?}"
        );
    }
    nothing_left(&before, &Snapshot::take(), &cluster_dir)
}
