//! The cluster DNS end to end on two nodes: the control plane serves it on the host's underlay
//! address behind `kube-system/kube-dns` (10.96.0.10), the agents write that address into every
//! pod's resolv.conf, and a pod's lookups go through the socket load balancer to it. From inside
//! a client pod (busybox `nslookup` and `wget`, glibc's resolver with the search path), a
//! Service resolves to its ClusterIP by its full name, by `<svc>.<ns>` and by its short name;
//! a headless Service resolves to its ready pods' addresses; a StatefulSet pod's
//! `<pod>.<service>` name resolves to that pod; DNS over TCP works; unknown names are NXDOMAIN.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    time::{Duration, Instant},
};

use crate::support::{
    self, CLUSTER_DNS, LocalCluster, eventually, pod_phase, python_in_pod, require_root,
};
use anyhow::{Context as _, ensure};
use flotilla_agent::datapath::start::unified_cgroup;
use flotilla_testbed::objects;

const MANIFEST: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
spec:
  replicas: 2
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
        readinessProbe:
          httpGet:
            path: /healthz
            port: http
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
---
apiVersion: v1
kind: Service
metadata:
  name: echo-pods
spec:
  clusterIP: None
  selector:
    app: echo
  ports:
  - name: http
    port: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - name: http
    port: 8080
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 2
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: docker.io/flotilla/testapp:v1
        imagePullPolicy: Never
        ports:
        - name: http
          containerPort: 8080
        readinessProbe:
          httpGet:
            path: /healthz
            port: http
          periodSeconds: 1
";

fn client_manifest(node: &str) -> String {
    support::testapp_pod("client", node, &[], "")
}

/// `kubectl exec client -- <command>`, bounded from outside (busybox-static's `wget -T`
/// segfaults here): (succeeded, stdout + stderr).
fn in_client(cluster: &support::Cluster, command: &[&str]) -> anyhow::Result<(bool, String)> {
    let output = Command::new("timeout")
        .arg("15")
        .arg("kubectl")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args(["exec", "client", "--"])
        .args(command)
        .output()
        .context("running kubectl")?;
    Ok((
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    ))
}

/// The addresses busybox `nslookup` printed for the name (after the server's own lines).
fn looked_up(output: &str) -> BTreeSet<String> {
    output
        .split("Name:")
        .skip(1)
        .flat_map(|answer| {
            answer
                .lines()
                .filter_map(|line| line.trim().strip_prefix("Address:"))
                .map(|address| address.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `nslookup <name>` in the client until it answers exactly `want` (the zone and the socket
/// load balancer follow the API asynchronously).
async fn resolves(
    cluster: &support::Cluster,
    name: &str,
    want: &BTreeSet<String>,
) -> anyhow::Result<()> {
    let mut last = String::new();
    let result = eventually(Duration::from_secs(30), &format!("{name} resolves"), || {
        // Not the exit code: busybox fails when the AAAA query finds nothing.
        let (_, output) = in_client(cluster, &["nslookup", name])?;
        let got = looked_up(&output);
        last = output;
        Ok((got == *want).then_some(()))
    })
    .await;
    result.with_context(|| format!("nslookup {name} (want {want:?}) last printed:\n{last}"))
}

/// `wget -qO- <url>` in the client until it succeeds; the body.
async fn fetch(cluster: &support::Cluster, url: &str) -> anyhow::Result<String> {
    let mut last = String::new();
    let result = eventually(Duration::from_secs(30), &format!("GET {url}"), || {
        let (ok, output) = in_client(cluster, &["wget", "-qO-", url])?;
        last.clone_from(&output);
        Ok(ok.then(|| output.trim().to_owned()))
    })
    .await;
    result.with_context(|| format!("wget {url} last printed:\n{last}"))
}

/// Ready pods with `label` as name -> IP, once there are `count`.
async fn ready_pods(
    cluster: &support::Cluster,
    label: &str,
    count: usize,
) -> anyhow::Result<BTreeMap<String, String>> {
    eventually(
        Duration::from_secs(90),
        &format!("{count} ready {label} pods"),
        || {
            let pods = cluster.json(&["get", "pods", "-l", label])?;
            let ready: BTreeMap<String, String> = objects::live_pods(&pods)
                .into_iter()
                .filter(|pod| pod.ready)
                .filter_map(|pod| Some((pod.name, pod.ip?)))
                .collect();
            Ok((ready.len() == count).then_some(ready))
        },
    )
    .await
}

/// A DNS query for `name` (type A) as a TCP message (length-prefixed), Python literal.
fn tcp_query_script(server: &str, name: &str) -> String {
    format!(
        "import socket, struct\n\
         q = b''.join(bytes([len(l)]) + l.encode() for l in '{name}'.split('.')) + b'\\0'\n\
         msg = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) + q + struct.pack('>HH', 1, 1)\n\
         s = socket.create_connection(('{server}', 53), timeout=5)\n\
         s.sendall(struct.pack('>H', len(msg)) + msg)\n\
         n = struct.unpack('>H', s.recv(2))[0]\n\
         r = b''\n\
         while len(r) < n:\n    r += s.recv(n - len(r))\n\
         rcode = r[3] & 15\n\
         answers = struct.unpack('>H', r[6:8])[0]\n\
         print(rcode, answers, socket.inet_ntoa(r[-4:]), s.getpeername()[0])"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pods_resolve_services_through_the_cluster_dns() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let local = LocalCluster::start_nodes(started, 2).await?;
    let cluster = &local.cluster;

    // The control plane keeps kube-dns, pointing at its own address.
    let kube_dns = cluster.json(&["-n", "kube-system", "get", "service", "kube-dns"])?;
    ensure!(
        kube_dns["spec"]["clusterIP"] == CLUSTER_DNS.to_string(),
        "kube-dns: {kube_dns}"
    );
    let slice = cluster.json(&["-n", "kube-system", "get", "endpointslice", "kube-dns"])?;
    ensure!(
        slice["endpoints"][0]["addresses"][0] == local.host_ip.to_string(),
        "the kube-dns EndpointSlice does not point at the control plane ({}): {slice}",
        local.host_ip
    );

    cluster.apply("dns.yaml", MANIFEST)?;
    cluster.apply("client.yaml", &client_manifest(&local.node_name))?;
    let echo = ready_pods(cluster, "app=echo", 2).await?;
    let web = ready_pods(cluster, "app=web", 2).await?;
    eventually(Duration::from_secs(60), "client Running", || {
        let pod = cluster.json(&["get", "pod", "client"])?;
        Ok((pod_phase(&pod) == "Running").then_some(()))
    })
    .await?;
    let vip = cluster.json(&["get", "service", "echo"])?["spec"]["clusterIP"]
        .as_str()
        .context("echo has no clusterIP")?
        .to_owned();
    eprintln!(
        "echo {echo:?} behind {vip}, web {web:?}, after {:?}",
        started.elapsed()
    );

    // The pod's resolv.conf is the kubelet's.
    let (_, resolv) = in_client(cluster, &["cat", "/etc/resolv.conf"])?;
    for line in [
        format!("nameserver {CLUSTER_DNS}"),
        "search default.svc.cluster.local svc.cluster.local cluster.local".to_owned(),
        "options ndots:5".to_owned(),
    ] {
        ensure!(
            resolv.lines().any(|l| l.trim() == line),
            "the pod's resolv.conf lacks {line:?}:\n{resolv}"
        );
    }

    // A Service: its ClusterIP, by full name (nslookup asks 10.96.0.10 directly), and by
    // `<svc>.<ns>` and `<svc>` through glibc's search path (wget).
    let vip_only = BTreeSet::from([vip.clone()]);
    resolves(cluster, "echo.default.svc.cluster.local", &vip_only).await?;
    let names: BTreeSet<&String> = echo.keys().collect();
    for url in ["http://echo/hostname", "http://echo.default/hostname"] {
        let answer = fetch(cluster, url).await?;
        ensure!(
            names.contains(&answer),
            "{url} answered {answer:?}, not an echo pod"
        );
        eprintln!("{url} -> {answer}");
    }

    // A headless Service: the ready pods' addresses.
    let pod_ips: BTreeSet<String> = echo.values().cloned().collect();
    resolves(cluster, "echo-pods.default.svc.cluster.local", &pod_ips).await?;

    // A StatefulSet's pods by `<pod>.<service>` (the EndpointSlice carries their hostnames).
    for (pod, ip) in &web {
        resolves(
            cluster,
            &format!("{pod}.web.default.svc.cluster.local"),
            &BTreeSet::from([ip.clone()]),
        )
        .await?;
        let answer = fetch(cluster, &format!("http://{pod}.web:8080/hostname")).await?;
        ensure!(answer == *pod, "{pod}.web answered {answer:?}");
        eprintln!("{pod}.web -> {ip}, answered {answer}");
    }

    // DNS over TCP to the kube-dns ClusterIP, from the pod's network and cgroup.
    let client_ip = cluster.json(&["get", "pod", "client"])?["status"]["podIP"]
        .as_str()
        .context("client has no podIP")?
        .parse()?;
    let netns = local.pod_netns(client_ip)?;
    let cgroup = unified_cgroup(&local.node.cgroup_root).join("test-dns-client");
    let tcp = python_in_pod(
        netns.path(),
        &cgroup,
        &tcp_query_script(&CLUSTER_DNS.to_string(), "echo.default.svc.cluster.local"),
    )?;
    let _ = std::fs::remove_dir(&cgroup);
    ensure!(
        tcp == format!("0 1 {vip} {CLUSTER_DNS}"),
        "DNS over TCP answered {tcp:?}, expected rcode 0, one answer {vip}, peer {CLUSTER_DNS}"
    );

    // Unknown names inside the cluster domain: NXDOMAIN.
    let (_, output) = in_client(cluster, &["nslookup", "nosuch.default.svc.cluster.local"])?;
    ensure!(
        output.contains("NXDOMAIN"),
        "an unknown Service name: {output}"
    );

    local.shutdown().await;
    eprintln!("done after {:?}", started.elapsed());
    Ok(())
}
