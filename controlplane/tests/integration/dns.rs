//! The cluster DNS server against a real control plane: records follow Services and
//! EndpointSlices created through the API, queried over UDP and TCP with hickory-proto; and the
//! control plane serving it itself (`--cluster-dns`) behind the `kube-system/kube-dns` Service it
//! keeps, with clear errors for settings that cannot work.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::{net::SocketAddr, time::Duration};

use crate::common::Cluster;
use flotilla_controlplane::{
    dns::{Config, Dns},
    etcd::free_port,
    run::{ClusterDns, ControlPlane},
};
use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpStream, UdpSocket},
};

/// Response code and answer data (`A 1.2.3.4`, `CNAME x.`, `SRV host.:port`), sorted.
type Answer = (ResponseCode, Vec<String>);

fn query(name: &str, record_type: RecordType) -> Vec<u8> {
    let mut message = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
    message.to_vec().unwrap()
}

fn rand_id() -> u16 {
    u16::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            % 65_536,
    )
    .unwrap()
}

fn answer(bytes: &[u8]) -> Answer {
    let message = Message::from_vec(bytes).unwrap();
    let mut data: Vec<String> = message
        .answers
        .iter()
        .map(|record| match &record.data {
            RData::A(a) => format!("A {}", a.0),
            RData::CNAME(c) => format!("CNAME {}", c.0),
            RData::SRV(s) => format!("SRV {}:{}", s.target, s.port),
            other => format!("{other:?}"),
        })
        .collect();
    data.sort();
    (message.metadata.response_code, data)
}

async fn ask_udp(server: SocketAddr, name: &str, record_type: RecordType) -> Answer {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server).await.unwrap();
    socket.send(&query(name, record_type)).await.unwrap();
    let mut buffer = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer))
        .await
        .expect("the DNS server did not answer within 5 s")
        .unwrap();
    answer(&buffer[..read])
}

async fn ask_tcp(server: SocketAddr, name: &str, record_type: RecordType) -> Answer {
    let mut stream = TcpStream::connect(server).await.unwrap();
    let bytes = query(name, record_type);
    stream
        .write_all(&u16::try_from(bytes.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut length = [0; 2];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut length))
        .await
        .expect("no TCP answer within 5 s")
        .unwrap();
    let mut buffer = vec![0; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut buffer).await.unwrap();
    answer(&buffer)
}

/// Asks until the answer is `want` (at most 10 s): the zone follows the API asynchronously.
async fn eventually(server: SocketAddr, name: &str, record_type: RecordType, want: Answer) {
    let mut last = None;
    for _ in 0..100 {
        let got = ask_udp(server, name, record_type).await;
        if got == want {
            return;
        }
        last = Some(got);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} {record_type}: expected {want:?}, last answer {last:?}");
}

/// An upstream server that answers every A query with 192.0.2.1.
async fn fake_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buffer = vec![0; 4096];
        while let Ok((read, from)) = socket.recv_from(&mut buffer).await {
            let request = Message::from_vec(&buffer[..read]).unwrap();
            let mut response = Message::response(request.metadata.id, OpCode::Query);
            response.metadata.recursion_available = true;
            for query in &request.queries {
                response.add_query(query.clone());
                response.add_answer(hickory_proto::rr::Record::from_rdata(
                    query.name().clone(),
                    60,
                    RData::A(hickory_proto::rr::rdata::A::new(192, 0, 2, 1)),
                ));
            }
            socket
                .send_to(&response.to_vec().unwrap(), from)
                .await
                .unwrap();
        }
    });
    address
}

fn ok(records: &[&str]) -> Answer {
    (
        ResponseCode::NoError,
        records.iter().map(|r| (*r).to_owned()).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dns_answers_from_services_and_endpointslices() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let client = cluster.client().await?;
    let upstream = fake_upstream().await;
    let dns = Dns::start(
        client.clone(),
        Config {
            listen: "127.0.0.1:0".parse()?,
            cluster_domain: "cluster.local".to_owned(),
            upstream: Some(upstream),
        },
    )
    .await?;
    let server = dns.address;

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))?;
    let web = services.create(&PostParams::default(), &web).await?;
    let ip = web.spec.unwrap().cluster_ip.unwrap();
    eventually(
        server,
        "web.default.svc.cluster.local.",
        RecordType::A,
        ok(&[&format!("A {ip}")]),
    )
    .await;
    // The `kubernetes` Service created on first start.
    eventually(
        server,
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
        ok(&["A 10.96.0.1"]),
    )
    .await;
    assert_eq!(
        ask_udp(
            server,
            "_http._tcp.web.default.svc.cluster.local.",
            RecordType::SRV
        )
        .await,
        ok(&["SRV web.default.svc.cluster.local.:80"])
    );
    assert_eq!(
        ask_tcp(server, "web.default.svc.cluster.local.", RecordType::A).await,
        ok(&[&format!("A {ip}")])
    );
    // Known name, no IPv6 address: NODATA.
    assert_eq!(
        ask_udp(server, "web.default.svc.cluster.local.", RecordType::AAAA).await,
        ok(&[])
    );
    assert_eq!(
        ask_udp(server, "nope.default.svc.cluster.local.", RecordType::A).await,
        (ResponseCode::NXDomain, Vec::new())
    );
    // Outside the cluster domain: forwarded.
    assert_eq!(
        ask_udp(server, "example.com.", RecordType::A).await,
        ok(&["A 192.0.2.1"])
    );

    // A headless Service without a selector and its EndpointSlice (a StatefulSet's shape).
    let db: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}
    }))?;
    services.create(&PostParams::default(), &db).await?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
            {"addresses": ["10.244.1.6"], "hostname": "db-1", "conditions": {"ready": false}}
        ]
    }))?;
    slices.create(&PostParams::default(), &slice).await?;
    eventually(
        server,
        "db.default.svc.cluster.local.",
        RecordType::A,
        ok(&["A 10.244.1.5"]),
    )
    .await;
    assert_eq!(
        ask_udp(server, "db-0.db.default.svc.cluster.local.", RecordType::A).await,
        ok(&["A 10.244.1.5"])
    );
    assert_eq!(
        ask_udp(server, "db-1.db.default.svc.cluster.local.", RecordType::A).await,
        (ResponseCode::NXDomain, Vec::new())
    );
    // The second endpoint becomes ready.
    slices
        .patch(
            "db-1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"endpoints": [
                {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.1.6"], "hostname": "db-1", "conditions": {"ready": true}}
            ]})),
        )
        .await?;
    eventually(
        server,
        "db-1.db.default.svc.cluster.local.",
        RecordType::A,
        ok(&["A 10.244.1.6"]),
    )
    .await;
    assert_eq!(
        ask_udp(server, "db.default.svc.cluster.local.", RecordType::A).await,
        ok(&["A 10.244.1.5", "A 10.244.1.6"])
    );

    // ExternalName: a CNAME.
    let ext: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "db.example.com"}
    }))?;
    services.create(&PostParams::default(), &ext).await?;
    eventually(
        server,
        "ext.default.svc.cluster.local.",
        RecordType::CNAME,
        ok(&["CNAME db.example.com."]),
    )
    .await;

    // The Service changes: deleting it removes its name.
    services.delete("web", &DeleteParams::default()).await?;
    eventually(
        server,
        "web.default.svc.cluster.local.",
        RecordType::A,
        (ResponseCode::NXDomain, Vec::new()),
    )
    .await;

    // Without --upstream, other names are refused.
    let refusing = Dns::start(
        client,
        Config {
            listen: "127.0.0.1:0".parse()?,
            cluster_domain: "cluster.local".to_owned(),
            upstream: None,
        },
    )
    .await?;
    assert_eq!(
        ask_udp(refusing.address, "example.com.", RecordType::A).await,
        (ResponseCode::Refused, Vec::new())
    );
    drop(dns);
    Ok(())
}

/// Cluster DNS on a free loopback port, behind kube-dns at `ip`.
fn cluster_dns(ip: &str) -> ClusterDns {
    ClusterDns {
        port: 0,
        ..ClusterDns::new(ip.parse().unwrap(), None)
    }
}

/// Runs `check` every 250 ms until it is true (at most `seconds`).
async fn wait_until(seconds: u64, what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..seconds * 4 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{what}: not within {seconds} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_plane_serves_the_cluster_dns_behind_kube_dns() -> anyhow::Result<()> {
    let cluster = Cluster::start_with(|config| {
        // A small range, so the static band (the lowest 16 addresses) is easy to check.
        config.service_cidr = "10.96.0.0/24".parse().unwrap();
        config.cluster_dns = Some(cluster_dns("10.96.0.10"));
    })
    .await?;
    let server = cluster.control_plane.dns_address.expect("DNS is served");
    let client = cluster.client().await?;
    let system: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let kube_dns = system.get("kube-dns").await?;
    let labels = kube_dns.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("k8s-app").map(String::as_str), Some("kube-dns"));
    let spec = kube_dns.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.10"));
    assert!(spec.selector.is_none());
    let ports: Vec<(String, i32, String, String)> = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            (
                p.name.unwrap_or_default(),
                p.port,
                p.protocol.unwrap_or_default(),
                serde_json::to_value(p.target_port).unwrap().to_string(),
            )
        })
        .collect();
    let target = server.port().to_string();
    assert_eq!(
        ports,
        [
            ("dns".to_owned(), 53, "UDP".to_owned(), target.clone()),
            ("dns-tcp".to_owned(), 53, "TCP".to_owned(), target)
        ]
    );
    // On loopback, which pods cannot reach, the Service has no endpoints (as `kubernetes`).
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    assert!(slices.get_opt("kube-dns").await?.is_none());

    // The server answers from the API, over UDP and TCP, its own name included.
    eventually(
        server,
        "kube-dns.kube-system.svc.cluster.local.",
        RecordType::A,
        ok(&["A 10.96.0.10"]),
    )
    .await;
    assert_eq!(
        ask_tcp(
            server,
            "kubernetes.default.svc.cluster.local.",
            RecordType::A
        )
        .await,
        ok(&["A 10.96.0.1"])
    );
    // No upstream: names outside the cluster are refused.
    assert_eq!(
        ask_udp(server, "example.com.", RecordType::A).await,
        (ResponseCode::Refused, Vec::new())
    );

    // Services without a requested ClusterIP stay above the static band.
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    for i in 0..20 {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("s{i}")},
            "spec": {"ports": [{"port": 80}]}
        }))?;
        let ip = services
            .create(&PostParams::default(), &service)
            .await?
            .spec
            .unwrap()
            .cluster_ip
            .unwrap();
        let last: u8 = ip.rsplit('.').next().unwrap().parse()?;
        assert!(last > 16, "{ip} is in the static band");
    }

    // Deleted or changed, kube-dns is put back (every 10 s).
    cluster.kubectl_ok(&["-n", "kube-system", "delete", "service", "kube-dns"]);
    wait_until(30, "kube-dns recreated", async || {
        system
            .get_opt("kube-dns")
            .await
            .ok()
            .flatten()
            .and_then(|s| s.spec?.cluster_ip)
            .as_deref()
            == Some("10.96.0.10")
    })
    .await;
    cluster.kubectl_ok(&[
        "-n",
        "kube-system",
        "patch",
        "service",
        "kube-dns",
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/spec/ports/0/port", "value": 5353}]"#,
    ]);
    wait_until(30, "kube-dns ports put back", async || {
        system
            .get("kube-dns")
            .await
            .ok()
            .and_then(|s| s.spec?.ports)
            .is_some_and(|ports| ports.iter().all(|p| p.port == 53))
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_dns_settings_that_cannot_work_fail_clearly() -> anyhow::Result<()> {
    let start_err = |adjust: Box<dyn FnOnce(&mut flotilla_controlplane::run::Config)>| async move {
        match Cluster::start_with(adjust).await {
            Ok(_) => panic!("the control plane started"),
            Err(err) => err.to_string(),
        }
    };
    let outside = start_err(Box::new(|c| c.cluster_dns = Some(cluster_dns("10.0.0.10")))).await;
    assert!(
        outside
            .contains("--cluster-dns 10.0.0.10 is outside --service-cluster-ip-range 10.96.0.0/12")
            && outside.contains("10.96.0.10"),
        "{outside}"
    );
    let first = start_err(Box::new(|c| c.cluster_dns = Some(cluster_dns("10.96.0.1")))).await;
    assert!(first.contains("kubernetes Service"), "{first}");
    // The port is taken (over UDP).
    let taken = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let busy = start_err(Box::new(move |c| {
        c.cluster_dns = Some(ClusterDns {
            port,
            ..ClusterDns::new("10.96.0.10".parse().unwrap(), None)
        });
    }))
    .await;
    assert!(
        busy.contains(&format!("cannot listen on 127.0.0.1:{port}"))
            && busy.contains("--cluster-dns-port"),
        "{busy}"
    );
    Ok(())
}

/// Restarts of one control plane (same state and etcd) with different DNS settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_dns_ip_conflicts_across_restarts_fail_clearly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let base = flotilla_controlplane::run::Config {
        etcd_ports: (free_port()?, free_port()?),
        ..flotilla_controlplane::run::Config::new(
            dir.path().join("state"),
            format!("127.0.0.1:{}", free_port()?).parse()?,
        )
    };
    let start = |dns: Option<ClusterDns>| {
        let config = flotilla_controlplane::run::Config {
            cluster_dns: dns,
            ..base.clone()
        };
        async move {
            // The etcd of a failed start may take a moment to free its ports.
            let mut last = None;
            for _ in 0..20 {
                match ControlPlane::start(config.clone()).await {
                    Ok(control_plane) => return Ok(control_plane),
                    Err(err) if err.to_string().contains("etcd") => {
                        last = Some(err.to_string());
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(err) => return Err(err.to_string()),
                }
            }
            Err(last.unwrap_or_default())
        }
    };

    // A Service takes 10.96.0.10 while the control plane serves no DNS.
    let first = start(None).await.unwrap();
    let kubeconfig = first.kubeconfig.clone();
    let cluster = Cluster::adopt(dir, first);
    let services: Api<Service> = Api::namespaced(cluster.client().await?, "default");
    let squatter: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "squatter"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}
    }))?;
    services.create(&PostParams::default(), &squatter).await?;
    let Cluster { dir, control_plane } = cluster;
    control_plane.stop().await;
    let err = start(Some(cluster_dns("10.96.0.10"))).await.unwrap_err();
    assert!(
        err.contains("10.96.0.10")
            && err.contains("taken by default/squatter")
            && err.contains("kubectl -n default delete service squatter"),
        "{err}"
    );

    // Another address works; changing it later is refused with what to do.
    let second = start(Some(cluster_dns("10.96.0.11"))).await.unwrap();
    second.stop().await;
    let err = start(Some(cluster_dns("10.96.0.12"))).await.unwrap_err();
    assert!(
        err.contains("kube-system/kube-dns has the ClusterIP 10.96.0.11, not 10.96.0.12"),
        "{err}"
    );

    // Without cluster DNS, the control plane removes its kube-dns again.
    let third = start(None).await.unwrap();
    let cluster = Cluster::adopt(dir, third);
    assert_eq!(cluster.kubeconfig(), kubeconfig);
    let system: Api<Service> = Api::namespaced(cluster.client().await?, "kube-system");
    assert!(system.get_opt("kube-dns").await?.is_none());
    Ok(())
}
