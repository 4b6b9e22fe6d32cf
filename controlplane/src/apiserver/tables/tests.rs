use super::*;
use crate::apiserver::registry::Registry;

/// The row of `kind`: its registry strategy's, else upstream's printer for kinds not served
/// yet, else the generic one.
fn row_cells(kind: &str, o: &Value, now: Timestamp) -> Vec<Value> {
    match Registry::new().all().into_iter().find(|r| r.kind == kind) {
        Some(resource) => resource.strategy.cells(o, now),
        None => upstream::row_cells(kind, o, now)
            .unwrap_or_else(|| vec![json!(name(o)), json!(age(o, now))]),
    }
}

/// The column definitions of `kind`, chosen as [`row_cells`] chooses its row.
fn column_definitions(kind: &str) -> Vec<Value> {
    let columns = match Registry::new().all().into_iter().find(|r| r.kind == kind) {
        Some(resource) => resource.strategy.columns(),
        None => upstream::columns(kind).unwrap_or(DEFAULT_COLUMNS).into(),
    };
    super::column_definitions(&columns)
}
use std::time::Duration;

const NOW: &str = "2025-01-01T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// `now` minus `seconds`, as an RFC 3339 string.
fn ago(seconds: i64) -> String {
    now()
        .checked_sub(jiff::SignedDuration::from_secs(seconds))
        .unwrap()
        .to_string()
}

fn strings(cells: &[Value]) -> Vec<String> {
    cells
        .iter()
        .map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn human_duration_matches_upstream_table() {
    let hour = 3600;
    let cases: &[(u64, &str)] = &[
        (1, "1s"),
        (70, "70s"),
        (190, "3m10s"),
        (70 * 60, "70m"),
        (47 * hour, "47h"),
        (49 * hour, "2d1h"),
        ((8 * 24 + 2) * hour, "8d"),
        ((367 * 24) * hour, "367d"),
        ((365 * 2 * 24 + 25) * hour, "2y1d"),
        ((365 * 8 * 24 + 2) * hour, "8y"),
    ];
    for &(secs, want) in cases {
        assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
    }
}

#[test]
fn human_duration_matches_upstream_boundaries() {
    let ms = Duration::from_millis(1);
    let s = |n: u64| Duration::from_secs(n);
    let (minute, hour, day, year) = (60, 3600, 86_400, 365 * 86_400);
    let cases: &[(Duration, &str)] = &[
        (Duration::ZERO, "0s"),
        (s(1) - ms, "0s"),
        (s(2 * minute) - ms, "119s"),
        (s(2 * minute), "2m"),
        (s(2 * minute + 1), "2m1s"),
        (s(10 * minute) - ms, "9m59s"),
        (s(10 * minute), "10m"),
        (s(10 * minute + 1), "10m"),
        (s(3 * hour) - ms, "179m"),
        (s(3 * hour), "3h"),
        (s(3 * hour + minute), "3h1m"),
        (s(8 * hour) - ms, "7h59m"),
        (s(8 * hour), "8h"),
        (s(8 * hour + 59 * minute), "8h"),
        (s(2 * day) - ms, "47h"),
        (s(2 * day), "2d"),
        (s(2 * day + hour), "2d1h"),
        (s(8 * day) - ms, "7d23h"),
        (s(8 * day), "8d"),
        (s(8 * day + 23 * hour), "8d"),
        (s(2 * year) - ms, "729d"),
        (s(2 * year), "2y"),
        (s(2 * year + 23 * hour), "2y"),
        (s(2 * year + 23 * hour + 59 * minute), "2y"),
        (s(2 * year + day) - ms, "2y"),
        (s(2 * year + day), "2y1d"),
        (s(3 * year), "3y"),
        (s(7 * year), "7y"),
        (s(8 * year) - ms, "7y364d"),
        (s(8 * year), "8y"),
        (s(8 * year + 364 * day), "8y"),
        (s(9 * year), "9y"),
    ];
    for &(d, want) in cases {
        assert_eq!(human_duration(d), want, "{d:?}");
    }
    // Go durations saturate at ~292 years.
    assert_eq!(human_duration(Duration::MAX), "292y");
}

#[test]
fn negative_durations_match_upstream() {
    assert_eq!(human_nanos(-2_000_000_000), "<invalid>");
    assert_eq!(human_nanos(-2_000_000_000 + 1), "0s");
    // A creation time slightly in the future reads as "0s", further out as "<invalid>".
    assert_eq!(
        since(Some(now() + jiff::SignedDuration::from_secs(1)), now()),
        "0s"
    );
    assert_eq!(
        since(Some(now() + jiff::SignedDuration::from_secs(5)), now()),
        "<invalid>"
    );
    assert_eq!(since(None, now()), "<unknown>");
}

#[test]
fn running_pod_with_one_restart() {
    let pod = json!({
        "metadata": {"name": "web-1", "creationTimestamp": ago(600)},
        "spec": {"nodeName": "node-a", "containers": [{"name": "web", "image": "nginx"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.7",
            "podIPs": [{"ip": "10.244.1.7"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "web",
                "ready": true,
                "restartCount": 1,
                "state": {"running": {"startedAt": ago(300)}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}}
            }]
        }
    });
    let cells = row_cells("Pod", &pod, now());
    assert_eq!(
        strings(&cells),
        [
            "web-1",
            "1/1",
            "Running",
            "1 (5m ago)",
            "10m",
            "10.244.1.7",
            "node-a",
            "<none>",
            "<none>"
        ]
    );
    assert_eq!(cells.len(), column_definitions("Pod").len());
}

#[test]
fn pending_pods() {
    let unscheduled = json!({
        "metadata": {"name": "p", "creationTimestamp": ago(5)},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {"phase": "Pending"}
    });
    assert_eq!(
        strings(&row_cells("Pod", &unscheduled, now())),
        [
            "p", "0/2", "Pending", "0", "5s", "<none>", "<none>", "<none>", "<none>"
        ]
    );

    let creating = json!({
        "metadata": {"name": "c", "creationTimestamp": ago(30)},
        "spec": {"nodeName": "n1", "containers": [{"name": "a"}]},
        "status": {
            "phase": "Pending",
            "containerStatuses": [{
                "name": "a", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}
            }]
        }
    });
    let cells = strings(&row_cells("Pod", &creating, now()));
    assert_eq!(cells[1..4], ["0/1", "ContainerCreating", "0"]);

    let init = json!({
        "metadata": {"name": "i"},
        "spec": {"initContainers": [{"name": "setup"}, {"name": "migrate"}], "containers": [{"name": "a"}]},
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "setup", "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
                {"name": "migrate", "restartCount": 0, "state": {"running": {}}}
            ]
        }
    });
    let cells = strings(&row_cells("Pod", &init, now()));
    assert_eq!(cells[1..5], ["0/1", "Init:1/2", "0", "<unknown>"]);
}

#[test]
fn pod_with_sidecar_counts_its_restarts() {
    let pod = json!({
        "metadata": {"name": "side"},
        "spec": {
            "initContainers": [{"name": "init"}, {"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}]
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [
                {"name": "init", "restartCount": 5, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(10)}}},
                {"name": "proxy", "restartCount": 2, "started": true, "ready": true, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 137, "finishedAt": ago(60)}}}
            ],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}]
        }
    });
    // The finished plain init container's restarts no longer count once the pod is initialized.
    let cells = strings(&row_cells("Pod", &pod, now()));
    assert_eq!(cells[1..4], ["2/2", "Running", "2 (60s ago)"]);
}

#[test]
fn crash_looping_and_completed_pods() {
    let crashing = json!({
        "metadata": {"name": "crash"},
        "spec": {"containers": [{"name": "a"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [{
                "name": "a", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(40)}}
            }]
        }
    });
    let cells = strings(&row_cells("Pod", &crashing, now()));
    assert_eq!(cells[1..4], ["0/1", "CrashLoopBackOff", "4 (40s ago)"]);

    let done = json!({
        "metadata": {"name": "done"},
        "spec": {"containers": [{"name": "a"}]},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [{
                "name": "a", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}
            }]
        }
    });
    let cells = strings(&row_cells("Pod", &done, now()));
    assert_eq!(cells[1..3], ["0/1", "Completed"]);
}

#[test]
fn terminating_pod() {
    let pod = json!({
        "metadata": {"name": "bye", "creationTimestamp": ago(3 * 86_400), "deletionTimestamp": ago(0)},
        "spec": {"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x/ok"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "x/ok", "status": "True"}],
            "containerStatuses": [{
                "name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}
            }]
        }
    });
    let cells = strings(&row_cells("Pod", &pod, now()));
    assert_eq!(cells[1..5], ["1/1", "Terminating", "0", "3d"]);
    assert_eq!(cells[8], "1/1");

    // A finished pod being deleted keeps its terminal status.
    let mut finished = pod;
    finished["status"]["phase"] = json!("Succeeded");
    finished["status"]["containerStatuses"][0]["state"] =
        json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
    let cells = strings(&row_cells("Pod", &finished, now()));
    assert_eq!(cells[2], "Completed");
}

#[test]
fn deployment_row() {
    let deployment = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(7200)},
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}]
            },
            "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.27"},
                {"name": "log", "image": "busybox"}
            ]}}
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}
    });
    let cells = row_cells("Deployment", &deployment, now());
    assert_eq!(cells[1], json!("2/3"));
    assert_eq!(cells[2], json!(3));
    assert_eq!(cells[3], json!(2));
    assert_eq!(
        strings(&cells),
        [
            "web",
            "2/3",
            "3",
            "2",
            "120m",
            "web,log",
            "nginx:1.27,busybox",
            "app=web,tier in (edge,front)"
        ]
    );
    // Unset replicas default to 1; an empty status counts zero.
    let bare = json!({"metadata": {"name": "d"}});
    assert_eq!(row_cells("Deployment", &bare, now())[1], json!("0/1"));
}

#[test]
fn node_port_service() {
    let svc = json!({
        "metadata": {"name": "web", "creationTimestamp": ago(86_400)},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.10",
            "clusterIPs": ["10.96.0.10"],
            "selector": {"app": "web", "tier": "front"},
            "ports": [
                {"port": 80, "protocol": "TCP", "nodePort": 30080},
                {"port": 443, "nodePort": 30443},
                {"port": 53, "protocol": "UDP"}
            ]
        }
    });
    assert_eq!(
        strings(&row_cells("Service", &svc, now())),
        [
            "web",
            "NodePort",
            "10.96.0.10",
            "<none>",
            "80:30080/TCP,443:30443/TCP,53/UDP",
            "24h",
            "app=web,tier=front"
        ]
    );

    let lb = json!({
        "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.11", "ports": []},
    });
    let cells = strings(&row_cells("Service", &lb, now()));
    assert_eq!(cells[3..5], ["<pending>", "<none>"]);
    assert_eq!(cells[6], "<none>");
}

#[test]
fn node_with_roles() {
    let node = json!({
        "metadata": {
            "name": "cp-1",
            "creationTimestamp": ago(10 * 86_400),
            "labels": {
                "node-role.kubernetes.io/control-plane": "",
                "node-role.kubernetes.io/worker": "",
                "node-role.kubernetes.io/": "",
                "kubernetes.io/role": "worker",
                "kubernetes.io/hostname": "cp-1"
            }
        },
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"}
            ],
            "addresses": [
                {"type": "Hostname", "address": "cp-1"},
                {"type": "InternalIP", "address": "192.168.1.10"}
            ],
            "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)"}
        }
    });
    assert_eq!(
        strings(&row_cells("Node", &node, now())),
        [
            "cp-1",
            "Ready,SchedulingDisabled",
            "control-plane,worker",
            "10d",
            "v1.32.0",
            "192.168.1.10",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "<unknown>",
            "<unknown>"
        ]
    );
    let bare = json!({"metadata": {"name": "n"}, "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
    let cells = strings(&row_cells("Node", &bare, now()));
    assert_eq!(cells[1..3], ["NotReady", "<none>"]);
}

#[test]
fn jobs_and_cron_jobs() {
    let job = json!({
        "metadata": {"name": "pi", "creationTimestamp": ago(600)},
        "spec": {"completions": 1, "parallelism": 1, "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}},
                 "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}},
        "status": {"succeeded": 1, "startTime": ago(600), "completionTime": ago(560),
                   "conditions": [{"type": "Complete", "status": "True"}]}
    });
    assert_eq!(
        strings(&row_cells("Job", &job, now())),
        [
            "pi",
            "Complete",
            "1/1",
            "40s",
            "10m",
            "pi",
            "perl",
            "batch.kubernetes.io/controller-uid=u1"
        ]
    );
    let parallel = json!({"metadata": {"name": "p"}, "spec": {"parallelism": 3}});
    let cells = strings(&row_cells("Job", &parallel, now()));
    assert_eq!(cells[1..4], ["Running", "0/1 of 3", ""]);

    let cron = json!({
        "metadata": {"name": "nightly", "creationTimestamp": ago(3600)},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
        "status": {"active": [{"name": "nightly-1"}]}
    });
    let cells = row_cells("CronJob", &cron, now());
    assert_eq!(cells[4], json!(1));
    assert_eq!(
        strings(&cells),
        [
            "nightly",
            "0 3 * * *",
            "<none>",
            "False",
            "1",
            "<none>",
            "60m",
            "c",
            "busybox",
            "<none>"
        ]
    );
}

#[test]
fn endpoints_events_and_selectors() {
    let endpoints = json!({
        "metadata": {"name": "web"},
        "subsets": [{
            "addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "fd00::3"}],
            "ports": [{"port": 80}, {"port": 443}]
        }]
    });
    assert_eq!(
        row_cells("Endpoints", &endpoints, now())[1],
        json!("10.0.0.1:80,10.0.0.2:80,[fd00::3]:80 + 3 more...")
    );
    assert_eq!(
        row_cells("Endpoints", &json!({}), now())[1],
        json!("<none>")
    );

    let slice = json!({
        "addressType": "IPv4",
        "ports": [{"port": 80}, {"name": "dns"}],
        "endpoints": []
    });
    let cells = strings(&row_cells("EndpointSlice", &slice, now()));
    assert_eq!(cells[1..4], ["IPv4", "80,dns", "<unset>"]);

    let event = json!({
        "metadata": {"name": "web-1.17f"},
        "involvedObject": {"kind": "Pod", "name": "web-1", "fieldPath": "spec.containers{web}"},
        "type": "Normal",
        "reason": "Pulled",
        "message": "Container image pulled\n",
        "source": {"component": "kubelet", "host": "node-a"},
        "firstTimestamp": ago(120),
        "lastTimestamp": ago(30),
        "count": 3
    });
    let cells = row_cells("Event", &event, now());
    assert_eq!(cells[8], json!(3));
    assert_eq!(
        strings(&cells),
        [
            "30s",
            "Normal",
            "Pulled",
            "pod/web-1",
            "spec.containers{web}",
            "kubelet, node-a",
            "Container image pulled",
            "2m",
            "3",
            "web-1.17f"
        ]
    );

    let policy = json!({"spec": {"podSelector": {}}});
    assert_eq!(
        row_cells("NetworkPolicy", &policy, now())[1],
        json!("<none>")
    );
    let bad =
        json!({"spec": {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}});
    assert_eq!(row_cells("NetworkPolicy", &bad, now())[1], json!("<error>"));
    let exprs = json!({"matchExpressions": [
        {"key": "b", "operator": "DoesNotExist"},
        {"key": "a", "operator": "Exists"},
        {"key": "c", "operator": "NotIn", "values": ["y", "x"]}
    ]});
    assert_eq!(
        selector_string(Some(&exprs)).as_deref(),
        Some("a,!b,c notin (x,y)")
    );
}

#[test]
fn config_objects_and_defaults() {
    let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
    assert_eq!(row_cells("ConfigMap", &cm, now())[1], json!(3));
    let secret = json!({"metadata": {"name": "s"}, "data": {"k": "dg=="}});
    assert_eq!(
        row_cells("Secret", &secret, now())[1..3],
        [json!("Opaque"), json!(1)]
    );
    let lease = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "node-a"}});
    assert_eq!(row_cells("Lease", &lease, now())[1], json!("node-a"));

    let widget = json!({"metadata": {"name": "w", "creationTimestamp": ago(90)}});
    assert_eq!(strings(&row_cells("Widget", &widget, now())), ["w", "90s"]);
    let role = json!({"metadata": {"name": "r", "creationTimestamp": "2024-05-01T10:20:30.5Z"}});
    assert_eq!(
        strings(&row_cells("ClusterRole", &role, now())),
        ["r", "2024-05-01T10:20:30Z"]
    );
    let columns = column_definitions("Widget");
    assert_eq!(
        columns[0],
        json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DOC, "priority": 0})
    );
    assert_eq!(columns[1]["name"], json!("Age"));
}

#[test]
fn every_kind_has_one_cell_per_column() {
    let kinds = [
        "Pod",
        "PodTemplate",
        "Namespace",
        "Node",
        "Service",
        "Endpoints",
        "EndpointSlice",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Event",
        "Lease",
        "Deployment",
        "ReplicaSet",
        "ReplicationController",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "CronJob",
        "NetworkPolicy",
        "Ingress",
        "IngressClass",
        "PodDisruptionBudget",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "RoleBinding",
        "ClusterRoleBinding",
        "StorageClass",
        "PriorityClass",
        "RuntimeClass",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "ControllerRevision",
        "Role",
        "ClusterRole",
        "CustomResourceDefinition",
        "LimitRange",
        "SomethingCustom",
    ];
    for kind in kinds {
        let columns = column_definitions(kind);
        for object in [json!({}), json!(null), json!({"metadata": {"name": "x"}})] {
            assert_eq!(
                row_cells(kind, &object, now()).len(),
                columns.len(),
                "{kind}"
            );
        }
        assert!(
            columns
                .iter()
                .any(|c| c["name"] == "Name" && c["format"] == "name"),
            "{kind}"
        );
        // The wide columns come last except for PriorityClass and Event, as upstream.
        let priorities: Vec<u64> = columns
            .iter()
            .map(|c| c["priority"].as_u64().unwrap())
            .collect();
        if kind != "Event" {
            assert!(priorities.is_sorted(), "{kind}");
        }
    }
    assert_eq!(column_definitions("Pod")[3]["type"], json!("string"));
    let event_columns = column_definitions("Event");
    assert_eq!(event_columns[9]["name"], json!("Name"));
    assert_eq!(event_columns[9]["priority"], json!(1));
}

#[test]
fn other_upstream_printers() {
    let binding = json!({
        "metadata": {"name": "rb"},
        "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "User", "name": "bob"},
            {"kind": "Group", "name": "devs"},
            {"kind": "ServiceAccount", "namespace": "ci", "name": "runner"}
        ]
    });
    let cells = strings(&row_cells("RoleBinding", &binding, now()));
    assert_eq!(cells[1], "ClusterRole/view");
    assert_eq!(cells[3..6], ["alice, bob", "devs", "ci/runner"]);

    let pvc = json!({
        "metadata": {"name": "data"},
        "spec": {"volumeName": "pv-1", "storageClassName": "standard"},
        "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"]}
    });
    let cells = strings(&row_cells("PersistentVolumeClaim", &pvc, now()));
    assert_eq!(
        cells[1..7],
        ["Bound", "pv-1", "10Gi", "RWO,ROX", "standard", "<unset>"]
    );
    assert_eq!(cells[8], "Filesystem");

    let ingress = json!({
        "spec": {"rules": [{"host": "a"}, {"host": "b"}, {}, {"host": "d"}, {"host": "e"}], "tls": [{}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
    });
    let cells = strings(&row_cells("Ingress", &ingress, now()));
    assert_eq!(
        cells[1..5],
        ["<none>", "a,b,d + 2 more...", "1.2.3.4", "80, 443"]
    );

    let revision = json!({
        "metadata": {"name": "web-7d9", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true}
        ]},
        "revision": 2
    });
    let cells = row_cells("ControllerRevision", &revision, now());
    assert_eq!(cells[1..3], [json!("statefulset.apps/web"), json!(2)]);

    let class = json!({
        "metadata": {"name": "fast", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "csi.example.com"
    });
    let cells = row_cells("StorageClass", &class, now());
    assert_eq!(
        cells[..5],
        [
            json!("fast (default)"),
            json!("csi.example.com"),
            json!("Delete"),
            json!("Immediate"),
            json!(false)
        ]
    );
}
