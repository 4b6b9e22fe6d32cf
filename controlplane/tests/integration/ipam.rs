//! ClusterIPs, NodePorts and podCIDRs: unique under concurrency, kept across updates, released on
//! deletion, and never handed out twice across a control plane restart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::{collections::HashSet, time::Duration};

use crate::common::Cluster;
use flotilla_controlplane::{
    etcd::free_port,
    run::{Config, ControlPlane},
};
use k8s_openapi::api::core::v1::{Endpoints, Node, Service};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};

fn service(name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn ports() -> serde_json::Value {
    serde_json::json!([{"name": "http", "port": 80, "targetPort": 8080}])
}

fn code(err: &kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.message.clone()),
        other => (0, other.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_ips_and_node_ports_are_unique_and_released() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let client = cluster.client().await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");

    let kubernetes = services.get("kubernetes").await?;
    assert_eq!(
        kubernetes.spec.unwrap().cluster_ip.as_deref(),
        Some("10.96.0.1")
    );
    // The test API server listens on loopback, which may not be an endpoint.
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    assert!(endpoints.get_opt("kubernetes").await?.is_none());

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let services = services.clone();
            tokio::spawn(async move {
                services
                    .create(
                        &PostParams::default(),
                        &service(&format!("s{i}"), serde_json::json!({"ports": ports()})),
                    )
                    .await
            })
        })
        .collect();
    let mut ips = HashSet::new();
    for task in tasks {
        let created = task.await??;
        let ip = created.spec.unwrap().cluster_ip.unwrap();
        assert!(ip.starts_with("10.") && ip != "10.96.0.1", "{ip}");
        assert!(ips.insert(ip.clone()), "{ip} handed out twice");
    }

    let taken = ips.iter().next().unwrap().clone();
    let err = services
        .create(
            &PostParams::default(),
            &service(
                "dup",
                serde_json::json!({"clusterIP": taken, "ports": ports()}),
            ),
        )
        .await
        .unwrap_err();
    let (status, message) = code(&err);
    assert_eq!(status, 422);
    assert!(
        message.contains("provided IP is already allocated"),
        "{message}"
    );
    let err = services
        .create(
            &PostParams::default(),
            &service(
                "out",
                serde_json::json!({"clusterIP": "192.168.1.1", "ports": ports()}),
            ),
        )
        .await
        .unwrap_err();
    assert!(code(&err).1.contains("not in the valid range"), "{err}");

    // Explicit IP, released by deletion and then usable again.
    services
        .create(
            &PostParams::default(),
            &service(
                "fixed",
                serde_json::json!({"clusterIP": "10.96.100.100", "ports": ports()}),
            ),
        )
        .await?;
    services.delete("fixed", &Default::default()).await?;
    let mut reused = false;
    for _ in 0..40 {
        if services
            .create(
                &PostParams::default(),
                &service(
                    "fixed2",
                    serde_json::json!({"clusterIP": "10.96.100.100", "ports": ports()}),
                ),
            )
            .await
            .is_ok()
        {
            reused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reused, "a released IP can be allocated again");

    // NodePorts: allocated in range, kept by updates that do not mention them, freed on type change.
    let node_port = services
        .create(
            &PostParams::default(),
            &service(
                "np",
                serde_json::json!({"type": "NodePort", "ports": ports()}),
            ),
        )
        .await?;
    let allocated = node_port.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .node_port
        .unwrap();
    assert!((30000..=32767).contains(&allocated), "{allocated}");
    let err = services
        .create(&PostParams::default(), &service("np2", serde_json::json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": allocated}]})))
        .await
        .unwrap_err();
    assert!(
        code(&err).1.contains("provided port is already allocated"),
        "{err}"
    );
    let patch = serde_json::json!({"metadata": {"labels": {"x": "y"}}});
    let patched = services
        .patch("np", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let spec = patched.spec.unwrap();
    assert_eq!(spec.ports.unwrap()[0].node_port, Some(allocated));
    assert_eq!(
        spec.cluster_ip,
        node_port.spec.unwrap().cluster_ip,
        "ClusterIP kept"
    );
    let to_cluster_ip = serde_json::json!({"spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": null}]}});
    let patched = services
        .patch("np", &PatchParams::default(), &Patch::Merge(&to_cluster_ip))
        .await?;
    assert_eq!(patched.spec.unwrap().ports.unwrap()[0].node_port, None);
    let change_ip = serde_json::json!({"spec": {"clusterIP": "10.96.200.200", "clusterIPs": ["10.96.200.200"]}});
    let err = services
        .patch("np", &PatchParams::default(), &Patch::Merge(&change_ip))
        .await
        .unwrap_err();
    assert!(code(&err).1.contains("may not change once set"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_get_distinct_pod_cidrs() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let nodes: Api<Node> = Api::all(cluster.client().await?);
    let node = |name: &str| -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
    };
    let a = nodes.create(&PostParams::default(), &node("a")).await?;
    let b = nodes.create(&PostParams::default(), &node("b")).await?;
    assert_eq!(a.spec.unwrap().pod_cidr.as_deref(), Some("10.244.0.0/24"));
    assert_eq!(b.spec.unwrap().pod_cidr.as_deref(), Some("10.244.1.0/24"));
    let change =
        serde_json::json!({"spec": {"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24"]}});
    let err = nodes
        .patch("a", &PatchParams::default(), &Patch::Merge(&change))
        .await
        .unwrap_err();
    assert!(code(&err).1.contains("may not change podCIDR"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn allocations_survive_a_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        etcd_ports: (free_port()?, free_port()?),
        ..Config::new(
            dir.path().join("state"),
            format!("127.0.0.1:{}", free_port()?).parse()?,
        )
    };
    let first = ControlPlane::start(config.clone()).await?;
    let cluster = Cluster::adopt(dir, first);
    let services: Api<Service> = Api::namespaced(cluster.client().await?, "default");
    let mut before = HashSet::new();
    for i in 0..10 {
        let created = services
            .create(
                &PostParams::default(),
                &service(&format!("s{i}"), serde_json::json!({"ports": ports()})),
            )
            .await?;
        before.insert(created.spec.unwrap().cluster_ip.unwrap());
    }
    let Cluster { dir, control_plane } = cluster;
    control_plane.stop().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = ControlPlane::start(config).await?;
    let cluster = Cluster::adopt(dir, second);
    let services: Api<Service> = Api::namespaced(cluster.client().await?, "default");
    for i in 10..30 {
        let created = services
            .create(
                &PostParams::default(),
                &service(&format!("s{i}"), serde_json::json!({"ports": ports()})),
            )
            .await?;
        let ip = created.spec.unwrap().cluster_ip.unwrap();
        assert!(
            !before.contains(&ip),
            "{ip} was handed out again after the restart"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leaked_and_lost_allocations_are_repaired() -> anyhow::Result<()> {
    use flotilla_controlplane::{
        ipam::{Cidr, Pool, ranges::ServiceIps},
        storage::Store,
    };
    let cluster = Cluster::start_with(|config| {
        config.ipam_repair_period = Duration::from_millis(300);
    })
    .await?;
    let store = Store::connect(
        &[format!(
            "http://127.0.0.1:{}",
            cluster.control_plane.etcd_client_port
        )],
        Duration::from_secs(10),
    )
    .await?;
    let pool = Pool::new(
        store,
        "serviceips",
        ServiceIps(Cidr {
            network: std::net::Ipv4Addr::new(10, 96, 0, 0),
            prefix: 12,
        }),
    );
    let services: Api<Service> = Api::namespaced(cluster.client().await?, "default");
    services
        .create(
            &PostParams::default(),
            &service(
                "held",
                serde_json::json!({"clusterIP": "10.96.0.150", "ports": ports()}),
            ),
        )
        .await?;
    // A crash after allocating but before storing the object, and one after deleting an object
    // but before releasing its IP, look like these two keys.
    pool.allocate("10.96.0.200", "default/ghost").await?;
    pool.release("10.96.0.150").await?;
    let mut repaired = false;
    for _ in 0..50 {
        let allocations = pool.allocations().await?;
        let leaked = allocations.iter().any(|(item, _)| item == "10.96.0.200");
        let recorded = allocations
            .iter()
            .any(|(item, owner)| item == "10.96.0.150" && owner == "default/held");
        if !leaked && recorded {
            repaired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        repaired,
        "the pool still differs from the objects: {:?}",
        pool.allocations().await?
    );
    let err = services
        .create(
            &PostParams::default(),
            &service(
                "thief",
                serde_json::json!({"clusterIP": "10.96.0.150", "ports": ports()}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&err).0, 422, "{err}");
    Ok(())
}
