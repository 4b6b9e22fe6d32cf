//! ClusterIP services through the socket load balancer, end to end on two nodes: a Deployment's
//! three pods behind a Service with a named TCP port and a UDP port; a client pod's connections
//! to the ClusterIP are spread evenly over every ready pod, on both nodes (chi-square); UDP
//! replies and `getpeername()` show the ClusterIP, not the pod; a Service without ready
//! endpoints refuses at once; a pod turned unready gets no new connections until it is ready
//! again; scaling up and down grows and shrinks the spread.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use crate::support::{self, LocalCluster, eventually, pod_phase, python_in_pod, require_root};
use anyhow::{Context as _, ensure};
use flotilla_agent::datapath::start::unified_cgroup;
use flotilla_testbed::objects;

const MANIFEST: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 3
  selector:
    matchLabels:
      app: echo
  template:
    metadata:
      labels:
        app: echo
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: docker.io/flotilla/testapp:v1
        imagePullPolicy: Never
        ports:
        - name: http
          containerPort: 8080
        - name: echo-udp
          containerPort: 9001
          protocol: UDP
        # Ready unless the test creates /tmp/unready in the container.
        readinessProbe:
          exec:
            command: [sh, -c, '! test -e /tmp/unready']
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: echo
spec:
  selector:
    app: echo
  ports:
  - name: web
    port: 80
    targetPort: http
  - name: dns-like
    port: 53
    protocol: UDP
    targetPort: echo-udp
---
apiVersion: v1
kind: Service
metadata:
  name: nobody
spec:
  selector:
    app: nobody-has-this
  ports:
  - port: 80
    targetPort: 8080
";

fn client_manifest(node: &str) -> String {
    support::testapp_pod("client", node, &[], "")
}

/// The hostnames the client pod gets from `count` HTTP requests to `vip`, one connection each.
/// The pods that answered `count` connections to `http://<vip>/hostname` from the client pod,
/// one name per connection.
fn hostnames_via(cluster: &support::Cluster, vip: &str, count: u32) -> anyhow::Result<Vec<String>> {
    let out = cluster.kubectl_ok(&[
        "exec",
        "client",
        "--",
        "sh",
        "-c",
        &format!(
            "i=0; while [ $i -lt {count} ]; do wget -qO- http://{vip}/hostname; echo; i=$((i+1)); done"
        ),
    ])?;
    Ok(out
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(String::from)
        .collect())
}

/// Pearson's chi-square of `answers` against an even spread over `pods`.
fn chi_square(answers: &[String], pods: &BTreeSet<String>) -> f64 {
    let expected = answers.len() as f64 / pods.len() as f64;
    pods.iter()
        .map(|pod| {
            let observed = answers.iter().filter(|answer| *answer == pod).count() as f64;
            (observed - expected).powi(2) / expected
        })
        .sum()
}

/// The chi-square value an even spread over 3 pods exceeds with probability 0.001 (2 degrees of
/// freedom): the test's stated tolerance.
const CHI_SQUARE_3_PODS_P001: f64 = 13.816;

/// The Ready echo pods: (name, node).
fn ready_echo_pods(cluster: &support::Cluster) -> anyhow::Result<BTreeSet<(String, String)>> {
    let pods = cluster.json(&["get", "pods", "-l", "app=echo"])?;
    Ok(objects::live_pods(&pods)
        .into_iter()
        .filter(|pod| pod.ready)
        .map(|pod| (pod.name, pod.node))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_ips_balance_over_ready_pods() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 2).await?;
    let cluster = &local.cluster;
    cluster.apply("echo.yaml", MANIFEST)?;
    cluster.apply("client.yaml", &client_manifest(&local.node_name))?;
    let vip = cluster.json(&["get", "service", "echo"])?["spec"]["clusterIP"]
        .as_str()
        .context("echo has no clusterIP")?
        .to_owned();
    let nobody = cluster.json(&["get", "service", "nobody"])?["spec"]["clusterIP"]
        .as_str()
        .context("nobody has no clusterIP")?
        .to_owned();

    let backends = eventually(Duration::from_secs(90), "3 ready echo pods", || {
        let ready = ready_echo_pods(cluster)?;
        Ok((ready.len() == 3).then_some(ready))
    })
    .await?;
    let nodes: BTreeSet<&String> = backends.iter().map(|(_, node)| node).collect();
    ensure!(
        nodes.len() == 2,
        "the echo pods are not on both nodes: {backends:?}"
    );
    let client = eventually(Duration::from_secs(60), "client Running", || {
        let pod = cluster.json(&["get", "pod", "client"])?;
        Ok((pod_phase(&pod) == "Running")
            .then(|| {
                pod["status"]["podIP"]
                    .as_str()?
                    .parse::<std::net::Ipv4Addr>()
                    .ok()
            })
            .flatten())
    })
    .await?;
    eprintln!(
        "backends {backends:?}, client {client}, after {:?}",
        started.elapsed()
    );

    // TCP from the pod itself: 90 connections to the ClusterIP spread evenly over the three.
    let names: BTreeSet<String> = backends.iter().map(|(name, _)| name.clone()).collect();
    eventually(
        Duration::from_secs(30),
        "every echo pod answers via the ClusterIP",
        || {
            let seen: BTreeSet<String> = hostnames_via(cluster, &vip, 30)?.into_iter().collect();
            Ok((seen == names).then_some(()))
        },
    )
    .await?;
    let answers = hostnames_via(cluster, &vip, 90)?;
    ensure!(answers.len() == 90, "90 connections got {answers:?}");
    let chi = chi_square(&answers, &names);
    let counts: Vec<usize> = names
        .iter()
        .map(|name| answers.iter().filter(|answer| *answer == name).count())
        .collect();
    eprintln!("ClusterIP TCP spread over {names:?}: {counts:?}, chi-square {chi:.2}");
    ensure!(
        chi < CHI_SQUARE_3_PODS_P001,
        "90 connections were not spread evenly over 3 pods (chi-square {chi:.2} >= \
         {CHI_SQUARE_3_PODS_P001}): {answers:?}"
    );

    // UDP replies and getpeername() read as the ClusterIP.
    let netns = local.pod_netns(client)?;
    let cgroup = unified_cgroup(&local.node.cgroup_root).join("test-client");
    let udp = python_in_pod(
        netns.path(),
        &cgroup,
        &format!(
            "import socket\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.settimeout(2)\n\
             s.sendto(b'hostname', ('{vip}', 53))\n\
             data, peer = s.recvfrom(200)\n\
             t = socket.create_connection(('{vip}', 80), timeout=2)\n\
             print(data.decode().strip(), peer[0], peer[1], t.getpeername()[0], t.getpeername()[1])"
        ),
    )?;
    let fields: Vec<&str> = udp.split_whitespace().collect();
    ensure!(
        fields.len() == 5 && names.contains(fields[0]),
        "UDP via the ClusterIP answered {udp:?}"
    );
    ensure!(
        fields[1] == vip && fields[2] == "53" && fields[3] == vip && fields[4] == "80",
        "the pod saw its peers as {udp:?}, expected {vip}:53 and {vip}:80"
    );

    // No ready endpoints: refused at once, not a timeout.
    let refused = Instant::now();
    let output = cluster.kubectl(&[
        "exec",
        "client",
        "--",
        "wget",
        "-qO-",
        &format!("http://{nobody}/"),
    ]);
    ensure!(
        !output.status.success(),
        "a Service without endpoints answered"
    );
    ensure!(
        refused.elapsed() < Duration::from_secs(5),
        "refusing took {:?}",
        refused.elapsed()
    );

    // A pod turned unready gets no new connections; ready again, it gets them again.
    let unready = names.first().context("no echo pod")?.clone();
    cluster.kubectl_ok(&["exec", &unready, "--", "sh", "-c", "touch /tmp/unready"])?;
    eventually(Duration::from_secs(30), "the pod reported unready", || {
        let ready = ready_echo_pods(cluster)?;
        Ok((ready.len() == 2 && !ready.iter().any(|(name, _)| *name == unready)).then_some(()))
    })
    .await?;
    eventually(
        Duration::from_secs(30),
        "the unready pod leaves the Service's backends",
        || {
            let seen = hostnames_via(cluster, &vip, 20)?;
            Ok((!seen.contains(&unready)).then_some(()))
        },
    )
    .await?;
    let answers = hostnames_via(cluster, &vip, 30)?;
    ensure!(
        answers.len() == 30 && !answers.contains(&unready),
        "30 connections after {unready} turned unready: {answers:?}"
    );
    cluster.kubectl_ok(&["exec", &unready, "--", "sh", "-c", "rm /tmp/unready"])?;
    eventually(
        Duration::from_secs(30),
        "the pod ready and answering again",
        || {
            let seen: BTreeSet<String> = hostnames_via(cluster, &vip, 30)?.into_iter().collect();
            Ok((seen == names).then_some(()))
        },
    )
    .await?;

    // Scaling up widens the spread to the new pod; scaling down leaves one pod answering.
    cluster.kubectl_ok(&["scale", "deployment/echo", "--replicas=4"])?;
    let four = eventually(Duration::from_secs(90), "4 ready echo pods", || {
        let ready = ready_echo_pods(cluster)?;
        Ok((ready.len() == 4).then_some(ready))
    })
    .await?;
    let four: BTreeSet<String> = four.into_iter().map(|(name, _)| name).collect();
    eventually(Duration::from_secs(30), "all 4 pods answer", || {
        let seen: BTreeSet<String> = hostnames_via(cluster, &vip, 40)?.into_iter().collect();
        Ok((seen == four).then_some(()))
    })
    .await?;
    cluster.kubectl_ok(&["scale", "deployment/echo", "--replicas=1"])?;
    eventually(Duration::from_secs(60), "one echo pod answers", || {
        let seen: BTreeSet<String> = hostnames_via(cluster, &vip, 10)?.into_iter().collect();
        Ok((seen.len() == 1).then_some(()))
    })
    .await?;
    let _ = std::fs::remove_dir(&cgroup);
    local.shutdown().await;
    eprintln!("done after {:?}", started.elapsed());
    Ok(())
}
