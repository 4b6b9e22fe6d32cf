//! Privileged tests of the test bed itself: connectivity it promises, and that nothing survives
//! teardown, a half-way failure, or a killed run (sweep).

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    time::Duration,
};

use anyhow::Context as _;

use flotilla_testbed::{
    Netns, Testbed, TestbedConfig, TestbedError, leftovers, sweep_stale,
    traffic::{UdpReceiver, ping, send_udp},
    unique_prefix,
};

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the test-bed tests create network namespaces and need root; run them via `cargo xtask test`"
    );
}

#[tokio::test]
async fn nodes_and_pods_are_connected_and_teardown_leaves_nothing() -> anyhow::Result<()> {
    require_root();
    let mut bed = Testbed::create(TestbedConfig::nodes(2)).await?;
    let prefix = bed.prefix().to_owned();
    let a = bed.add_pod(0, "a").await?;
    let b = bed.add_pod(0, "b").await?;
    let c = bed.add_pod(1, "c").await?;
    let node1 = bed.node(0)?.clone();
    let node2 = bed.node(1)?.clone();
    assert_eq!(a.ip(), Ipv4Addr::new(10, 244, 1, 2));
    assert_eq!(b.ip(), Ipv4Addr::new(10, 244, 1, 3));
    assert_eq!(c.ip(), Ipv4Addr::new(10, 244, 2, 2));

    // Underlay: node to node across the bridge.
    ping(node1.netns(), node2.underlay_ip(), 2)?;
    // Pod to pod on one node, pod to its node, node to its pod.
    ping(a.netns(), b.ip(), 2)?;
    ping(a.netns(), node1.underlay_ip(), 1)?;
    ping(node1.netns(), a.ip(), 1)?;
    // Pods on different nodes are not connected until the overlay exists.
    assert!(ping(a.netns(), c.ip(), 1).is_err());

    let receiver = UdpReceiver::bind(b.netns(), SocketAddrV4::new(b.ip(), 9000))?;
    send_udp(a.netns(), SocketAddrV4::new(b.ip(), 9000), 10, 64)?;
    assert_eq!(receiver.receive(10, Duration::from_secs(5)), 10);

    // A process left running inside a pod must not keep anything alive.
    let mut sleeper = b.netns().command("sleep")?.arg("600").spawn()?;

    assert_eq!(leftovers(&prefix).len(), 6, "underlay, 2 nodes, 3 pods");
    bed.teardown()?;
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
    let status = sleeper.wait()?;
    assert!(
        !status.success(),
        "the process in the pod was killed by teardown"
    );
    Ok(())
}

#[tokio::test]
async fn creation_failing_half_way_leaves_nothing_behind() -> anyhow::Result<()> {
    require_root();
    let prefix = unique_prefix();
    // A namespace squatting on node 2's name makes creation fail after the underlay and node 1
    // exist.
    let squatter = Netns::create(&format!("{prefix}node2"))?;
    let result = Testbed::create(TestbedConfig {
        prefix: Some(prefix.clone()),
        ..TestbedConfig::nodes(3)
    })
    .await;
    let err = result.expect_err("creation must fail on the existing namespace");
    assert!(matches!(err, TestbedError::AlreadyExists(_)), "{err}");
    assert!(err.to_string().contains("node2"), "{err}");
    // The teardown of the failed bed also sweeps its prefix, squatter included.
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
    squatter.delete()?;
    Ok(())
}

#[tokio::test]
async fn pod_creation_failing_half_way_leaves_nothing_behind() -> anyhow::Result<()> {
    require_root();
    let mut bed = Testbed::create(TestbedConfig::nodes(1)).await?;
    let a = bed.add_pod(0, "a").await?;
    // Same address as `a`: the node's /32 route already exists, so plumbing fails at the end.
    let err = bed
        .add_pod_with_ip(0, "dup", a.ip())
        .await
        .expect_err("a second pod with the same IP on one node must fail");
    assert!(err.to_string().contains("route"), "{err}");
    let prefix = bed.prefix().to_owned();
    assert!(
        !leftovers(&prefix)
            .iter()
            .any(|p| p.to_string_lossy().ends_with("pod-dup")),
        "the failed pod's namespace was removed"
    );
    let node = bed.node(0)?;
    assert_eq!(node.netlink().try_index("p-dup").await?, None);
    assert_eq!(bed.pods().len(), 1);
    // The first pod still works.
    ping(node.netns(), a.ip(), 1)?;
    Ok(())
}

#[tokio::test]
async fn sweep_removes_runs_of_dead_processes_only() -> anyhow::Result<()> {
    require_root();
    // Linux pids never exceed 4194304 (PID_MAX_LIMIT), so this owner is certainly dead.
    let dead = Netns::create("fltb-99999999-0-underlay")?;
    let live_prefix = unique_prefix();
    let live = Netns::create(&format!("{live_prefix}underlay"))?;
    let pins = std::path::Path::new(flotilla_testbed::BPF_PIN_ROOT).join("fltb-99999999-0-node1");
    let bpffs = std::path::Path::new(flotilla_testbed::BPF_PIN_ROOT).parent();
    let have_bpffs =
        bpffs.is_some_and(|dir| dir.exists()) && std::fs::create_dir_all(&pins).is_ok();

    let report = sweep_stale()?;
    assert!(!dead.path().exists(), "dead run swept: {report:?}");
    if have_bpffs {
        assert!(!pins.exists(), "dead run's pins swept: {report:?}");
    }
    assert!(live.path().exists(), "a live run is left alone");
    live.delete()?;
    assert!(!live.path().exists());
    Ok(())
}

/// What a killed cluster test leaves beyond its test bed: its run directory with containerd's
/// mounts and the pods' network namespaces (processes still inside), and its cgroups.
#[tokio::test]
async fn sweep_removes_a_dead_runs_directory_pod_namespaces_and_cgroups() -> anyhow::Result<()> {
    require_root();
    let dead = "fltb-99999998-0-";
    let dir = std::env::temp_dir().join(format!("{dead}cluster-test"));
    let pod_netns = dir.join("nodes/node1/run/netns/cni-1");
    std::fs::create_dir_all(pod_netns.parent().context("a parent")?)?;
    std::fs::write(&pod_netns, "")?;
    let created = Command::new("unshare")
        .arg(format!("--net={}", pod_netns.display()))
        .arg("true")
        .status()?;
    anyhow::ensure!(created.success(), "unshare --net=FILE failed: {created}");
    // A pod's process, as a container left by a killed shim would be.
    let mut pod_process = Netns::at(&pod_netns)?.command("sleep")?.arg("60").spawn()?;
    // A container's root filesystem still mounted, with a file in it.
    let rootfs = dir.join("nodes/node1/run/rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&rootfs)
        .status()?;
    anyhow::ensure!(mounted.success(), "mounting a tmpfs failed: {mounted}");
    std::fs::write(rootfs.join("file"), "x")?;
    let cgroup = std::path::Path::new("/sys/fs/cgroup/pids").join(format!("{dead}node1"));
    let have_cgroup = std::fs::create_dir_all(cgroup.join("pod")).is_ok();

    let report = sweep_stale()?;
    let exited = (0..100).find_map(|_| {
        std::thread::sleep(Duration::from_millis(20));
        pod_process.try_wait().ok().flatten()
    });
    if exited.is_none() {
        let _ = pod_process.kill();
        let _ = pod_process.wait();
    }
    assert!(
        !dir.exists(),
        "the dead run's directory is gone: {report:?}"
    );
    assert!(
        flotilla_testbed::containerd::mounts_below(&dir).is_empty(),
        "and nothing stays mounted below it"
    );
    assert!(
        exited.is_some(),
        "the process in its pod namespace was killed"
    );
    if have_cgroup {
        assert!(!cgroup.exists(), "its cgroups are gone: {report:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_kept_bed_outlives_its_value_on_its_own_subnet_until_removed() -> anyhow::Result<()> {
    require_root();
    let prefix = unique_prefix();
    let host_link = format!("fltbk{}", std::process::id() % 1_000_000_000);
    let config = TestbedConfig {
        prefix: Some(prefix.clone()),
        // Neither the tests' 77 nor the local cluster's 78.
        underlay_octet: 79,
        host_link: Some(host_link.clone()),
        ..TestbedConfig::nodes(1)
    };
    let mut bed = Testbed::create(config.clone()).await?;
    assert_eq!(bed.link_host().await?, Ipv4Addr::new(192, 168, 79, 254));
    let kept = bed.keep();
    assert_eq!(kept.prefix, prefix);
    assert_eq!(kept.nodes.len(), 1);
    assert_eq!(kept.nodes[0].underlay_ip, config.node_ip(1));
    assert_eq!(kept.nodes[0].underlay_ip, Ipv4Addr::new(192, 168, 79, 11));
    // Dropped, yet everything is still there and connected.
    assert_eq!(leftovers(&prefix).len(), 2, "{:?}", leftovers(&prefix));
    assert!(
        std::path::Path::new("/sys/class/net")
            .join(&host_link)
            .exists()
    );
    let reached = ping(&Netns::host(), kept.nodes[0].underlay_ip, 2);
    flotilla_testbed::remove_with_prefix(&prefix)?;
    reached?;
    assert_eq!(leftovers(&prefix), Vec::<std::path::PathBuf>::new());
    // The kernel frees a namespace (and with it the host link's peer) asynchronously.
    let link = std::path::Path::new("/sys/class/net").join(&host_link);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while link.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!link.exists(), "{} outlived the underlay", link.display());
    Ok(())
}

#[tokio::test]
async fn a_new_bed_links_the_host_right_after_the_last_one_was_torn_down() -> anyhow::Result<()> {
    require_root();
    // Each bed of this process names its host link `fltbh<pid>`; the kernel frees the previous
    // bed's link with its namespace, asynchronously, so the name may still be taken here.
    for round in 0..3 {
        let mut bed = Testbed::create(TestbedConfig::nodes(1)).await?;
        bed.link_host().await?;
        let reached = ping(&Netns::host(), bed.node(0)?.underlay_ip(), 1);
        bed.teardown()?;
        reached.map_err(|err| anyhow::anyhow!("round {round}: {err}"))?;
    }
    Ok(())
}
