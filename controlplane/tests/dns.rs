//! The cluster DNS server against a real control plane: records follow Services and
//! EndpointSlices created through the API, queried over UDP and TCP with hickory-proto.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

mod common;

use std::{net::SocketAddr, time::Duration};

use common::Cluster;
use flotilla_controlplane::dns::{Config, Dns};
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
