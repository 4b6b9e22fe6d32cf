//! Privileged end-to-end test of the node agent on a one-node local cluster (see
//! `support`): pods driven with the real kubectl run on a real containerd.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step should fail the test"
)]

use std::time::{Duration, Instant};

use crate::support::{LocalCluster, eventually, pod_phase, require_root};
use anyhow::ensure;
use serde_json::Value;

const WEB: &str = r"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: docker.io/flotilla/testapp:v1
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: 8080}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: unready, labels: {app: web}}
spec:
  containers:
  - name: web
    image: docker.io/flotilla/testapp:v1
    readinessProbe:
      exec: {command: [cat, /tmp/ready]}
      periodSeconds: 1
";

const UNHEALTHY: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: unhealthy}
spec:
  containers:
  - name: main
    image: docker.io/flotilla/testapp:v1
    livenessProbe:
      tcpSocket: {port: 9999}
      periodSeconds: 1
      failureThreshold: 2
";

const CRASHER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - name: crash
    image: docker.io/flotilla/testapp:v1
    command: ["sh", "-c", "echo crashing; exit 3"]
"#;

const STUBBORN: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: main
    image: docker.io/flotilla/testapp:v1
    command: ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]
"#;

const ENVCHECK: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello-from-configmap}
---
apiVersion: v1
kind: Pod
metadata: {name: envcheck}
spec:
  terminationGracePeriodSeconds: 5
  initContainers:
  - name: first
    image: docker.io/flotilla/testapp:v1
    command: ["sh", "-c", "echo first > /work/init"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: docker.io/flotilla/testapp:v1
    command: ["sh", "-c", "echo second-after-$(cat /work/init) >> /work/init"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: docker.io/flotilla/testapp:v1
    command: ["sh", "-c", "echo svc=$WEB_SERVICE_HOST:$WEB_SERVICE_PORT cm=$GREETING node=$NODE; cat /work/init; cat /etc/settings/greeting; echo; while true; do sleep 1; done"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
    - name: NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    volumeMounts:
    - {name: settings, mountPath: /etc/settings}
    - {name: out, mountPath: /out}
    - {name: work, mountPath: /work}
    lifecycle:
      preStop:
        exec: {command: ["sh", "-c", "echo stopped-gracefully > /out/prestop"]}
  volumes:
  - name: settings
    configMap: {name: settings}
  - name: out
    hostPath: {path: HOSTPATH, type: DirectoryOrCreate}
  - name: work
    emptyDir: {}
"#;

const OOM: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: docker.io/flotilla/testapp:v1
    command: ["sh", "-c", "head -c 200000000 /dev/zero > /dev/shm/fill; sleep 30"]
    resources:
      limits: {memory: 24Mi}
"#;

const MISSING: &str = r"
apiVersion: v1
kind: Pod
metadata: {name: missing}
spec:
  containers:
  - name: main
    image: docker.io/flotilla/not-built-here:v9
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_runs_pods_on_containerd() -> anyhow::Result<()> {
    require_root();
    let started = Instant::now();
    let LocalCluster {
        node: mut local,
        others: _others,
        mut cluster,
        bed,
        node_name,
        pod_cidr,
        ..
    } = LocalCluster::start(started).await?;
    // A Deployment's pods run with IPs from the node's podCIDR.
    cluster.apply("web.yaml", WEB)?;
    let prefix = pod_cidr
        .rsplit_once('.')
        .map(|(p, _)| p.to_owned())
        .unwrap_or_default();
    let web = eventually(Duration::from_secs(60), "web pods Running", || {
        let pods = cluster.json(&["get", "pods", "-l", "app=web"])?;
        let items: Vec<Value> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["name"] != "unready")
            .cloned()
            .collect();
        let running = items.len() == 2
            && items.iter().all(|p| {
                pod_phase(p) == "Running"
                    && p["status"]["podIP"]
                        .as_str()
                        .is_some_and(|ip| ip.starts_with(&prefix))
            });
        Ok(running.then_some(items))
    })
    .await?;
    eprintln!("web pods Running after {:?}", started.elapsed());
    cluster.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=60s"])?;
    let container_ids: Vec<String> = web
        .iter()
        .map(|p| {
            p["status"]["containerStatuses"][0]["containerID"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    ensure!(
        container_ids
            .iter()
            .all(|id| id.starts_with("containerd://")),
        "{container_ids:?}"
    );

    // Readiness: the web pods pass their httpGet probe and serve the Service; the pod whose exec
    // probe fails stays in the EndpointSlice only as not ready.
    let unready_ip = eventually(Duration::from_secs(30), "unready pod Running", || {
        let pod = cluster.json(&["get", "pod", "unready"])?;
        Ok((pod_phase(&pod) == "Running")
            .then(|| pod["status"]["podIP"].as_str().map(str::to_owned))
            .flatten())
    })
    .await?;
    let web_ips: Vec<String> = web
        .iter()
        .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_owned))
        .collect();
    eventually(Duration::from_secs(30), "EndpointSlice readiness", || {
        let slices = cluster.json(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ])?;
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        for endpoint in slices["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().into_iter().flatten())
        {
            let address = endpoint["addresses"][0]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if endpoint["conditions"]["ready"] == true {
                ready.push(address);
            } else {
                not_ready.push(address);
            }
        }
        ready.sort();
        let mut expected = web_ips.clone();
        expected.sort();
        Ok((ready == expected && not_ready == [unready_ip.clone()]).then_some(()))
    })
    .await?;
    let unready = cluster.json(&["get", "pod", "unready"])?;
    ensure!(
        unready["status"]["containerStatuses"][0]["ready"] == false,
        "{unready}"
    );
    eprintln!(
        "readiness reflected in the EndpointSlice after {:?}",
        started.elapsed()
    );

    // A failing liveness probe restarts the container.
    cluster.apply("unhealthy.yaml", UNHEALTHY)?;
    eventually(Duration::from_secs(60), "unhealthy restarted", || {
        let pod = cluster.json(&["get", "pod", "unhealthy"])?;
        Ok((pod["status"]["containerStatuses"][0]["restartCount"]
            .as_i64()
            .unwrap_or(0)
            >= 1)
            .then_some(()))
    })
    .await?;

    // A crashing container backs off and its restart count climbs.
    cluster.apply("crasher.yaml", CRASHER)?;
    let crasher = eventually(Duration::from_secs(90), "crasher restarted twice", || {
        let pod = cluster.json(&["get", "pod", "crasher"])?;
        let status = &pod["status"]["containerStatuses"][0];
        Ok((status["restartCount"].as_i64().unwrap_or(0) >= 2).then_some(pod))
    })
    .await?;
    let status = &crasher["status"]["containerStatuses"][0];
    ensure!(
        status["lastState"]["terminated"]["exitCode"] == 3,
        "last state should show exit code 3: {status}"
    );
    eventually(Duration::from_secs(30), "CrashLoopBackOff shown", || {
        let pod = cluster.json(&["get", "pod", "crasher"])?;
        Ok(
            (pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                == "CrashLoopBackOff")
                .then_some(()),
        )
    })
    .await?;
    eprintln!("crash loop seen after {:?}", started.elapsed());

    // Logs of the crashing container, current and previous, through the API server and the
    // agent's kubelet API.
    let logs = cluster.kubectl_ok(&["logs", "crasher"])?;
    ensure!(logs.contains("crashing"), "kubectl logs crasher: {logs:?}");
    let previous = cluster.kubectl_ok(&["logs", "crasher", "--previous"])?;
    ensure!(
        previous.contains("crashing"),
        "kubectl logs --previous: {previous:?}"
    );

    // Environment (configMapKeyRef, fieldRef, service links), a configMap volume, exec, and a
    // preStop hook writing into a hostPath volume.
    let hostpath = tempfile::Builder::new()
        .prefix("flotilla-hostpath-")
        .tempdir()?;
    cluster.apply(
        "envcheck.yaml",
        &ENVCHECK.replace("HOSTPATH", &hostpath.path().display().to_string()),
    )?;
    let service_ip = cluster.json(&["get", "service", "web"])?["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let output = eventually(Duration::from_secs(60), "envcheck logs", || {
        let output = cluster.kubectl(&["logs", "envcheck"]);
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        Ok(text.contains("hello-from-configmap\n").then_some(text))
    })
    .await?;
    ensure!(
        output.contains(&format!(
            "svc={service_ip}:80 cm=hello-from-configmap node={node_name}"
        )),
        "environment: {output:?}"
    );
    ensure!(
        output.contains("first\nsecond-after-first\n"),
        "init containers should have run in order before the app: {output:?}"
    );
    let envcheck = cluster.json(&["get", "pod", "envcheck"])?;
    let inits = envcheck["status"]["initContainerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(inits.len() == 2, "two init container statuses: {inits:?}");
    for init in &inits {
        ensure!(
            init["state"]["terminated"]["reason"] == "Completed",
            "init container status: {init}"
        );
    }
    let exec = cluster.kubectl_ok(&["exec", "envcheck", "--", "cat", "/etc/settings/greeting"])?;
    ensure!(exec == "hello-from-configmap", "kubectl exec: {exec:?}");
    let failing = cluster.kubectl(&["exec", "envcheck", "--", "sh", "-c", "exit 7"]);
    ensure!(
        failing.status.code() == Some(7),
        "exec exit code: {failing:?}"
    );
    cluster.kubectl_ok(&["delete", "pod", "envcheck", "--wait=true", "--timeout=60s"])?;
    let prestop = std::fs::read_to_string(hostpath.path().join("prestop")).unwrap_or_default();
    ensure!(
        prestop.trim() == "stopped-gracefully",
        "the preStop hook should have written into the hostPath volume: {prestop:?}"
    );
    eprintln!(
        "logs, env, volumes, exec and preStop checked after {:?}",
        started.elapsed()
    );

    // A container over its memory limit is OOM-killed and says so.
    cluster.apply("oom.yaml", OOM)?;
    let terminated = eventually(Duration::from_secs(60), "oom pod terminated", || {
        let pod = cluster.json(&["get", "pod", "oom"])?;
        let terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"].clone();
        Ok((!terminated.is_null()).then_some(terminated))
    })
    .await?;
    ensure!(terminated["reason"] == "OOMKilled", "{terminated}");

    // An image that is not there: ErrImagePull, then ImagePullBackOff, with the image named.
    cluster.apply("missing.yaml", MISSING)?;
    let waiting = eventually(Duration::from_secs(60), "missing image reported", || {
        let pod = cluster.json(&["get", "pod", "missing"])?;
        let waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        Ok(matches!(
            waiting["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
        .then_some(waiting))
    })
    .await?;
    ensure!(
        waiting["message"]
            .as_str()
            .is_some_and(|m| m.contains("docker.io/flotilla/not-built-here:v9")),
        "{waiting}"
    );

    // Deletion kills a container that ignores SIGTERM within its 3 s grace period.
    cluster.apply("stubborn.yaml", STUBBORN)?;
    eventually(Duration::from_secs(60), "stubborn Running", || {
        Ok((pod_phase(&cluster.json(&["get", "pod", "stubborn"])?) == "Running").then_some(()))
    })
    .await?;
    let deleting = Instant::now();
    cluster.kubectl_ok(&["delete", "pod", "stubborn", "--wait=true", "--timeout=60s"])?;
    let took = deleting.elapsed();
    ensure!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "deleting a pod with a 3 s grace period took {took:?}"
    );
    eprintln!("stubborn pod deleted in {took:?}");

    // An agent restart re-adopts the running containers instead of restarting them. Each web
    // container gets a marker file before the restart: a container the new agent killed and
    // replaced would start from a fresh root file system without it.
    let web_names: Vec<String> = web
        .iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    for name in &web_names {
        cluster.kubectl_ok(&[
            "exec",
            name,
            "--",
            "sh",
            "-c",
            "echo kept > /tmp/restart-marker",
        ])?;
    }
    local.stop_agent()?;
    // The agent is gone: nothing serves its kubelet API, so what answers exec later is the new
    // agent.
    let down = cluster.kubectl(&["exec", &web_names[0], "--", "true"]);
    ensure!(
        !down.status.success(),
        "exec into {} succeeded with the agent stopped",
        web_names[0]
    );
    local.start_agent()?;
    // The new agent has finished its start-up reconcile of a pod once its kubelet API serves
    // exec into the pod: it finds containers through the view each pod worker writes at the end
    // of a full sync (sandbox, containers started or kept, status reported), so until the
    // worker's first sync exec is refused. Wait for that on every web pod, then read the marker.
    let restarted = Instant::now();
    let markers = eventually(
        Duration::from_secs(60),
        "the restarted agent serving exec into every web pod",
        || {
            let mut markers = Vec::new();
            let mut refused = Vec::new();
            for name in &web_names {
                let output = cluster.kubectl(&[
                    "exec",
                    name,
                    "--",
                    "sh",
                    "-c",
                    "cat /tmp/restart-marker 2>/dev/null || echo missing",
                ]);
                if output.status.success() {
                    let marker = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                    markers.push(format!("{name}: {marker}"));
                } else {
                    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
                    refused.push(format!("{name}: {stderr}"));
                }
            }
            if refused.is_empty() {
                Ok(Some(markers))
            } else {
                Err(anyhow::anyhow!("exec refused: {refused:?}"))
            }
        },
    )
    .await?;
    eprintln!(
        "the restarted agent served exec into the web pods {:?} after its start",
        restarted.elapsed()
    );
    ensure!(
        markers
            .iter()
            .zip(&web_names)
            .all(|(marker, name)| *marker == format!("{name}: kept")),
        "containers were replaced across an agent restart (their marker is gone): {markers:?}"
    );
    let after = cluster.json(&["get", "pods", "-l", "app=web"])?;
    let ids_after: Vec<String> = after["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["name"] != "unready")
        .map(|p| {
            p["status"]["containerStatuses"][0]["containerID"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    ensure!(
        ids_after == container_ids,
        "containers changed across an agent restart: {container_ids:?} -> {ids_after:?}"
    );
    for pod in after["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["name"] != "unready")
    {
        ensure!(pod_phase(pod) == "Running", "{pod}");
        ensure!(
            pod["status"]["containerStatuses"][0]["restartCount"] == 0,
            "{pod}"
        );
    }
    eprintln!(
        "agent restart kept the containers, after {:?}",
        started.elapsed()
    );

    // Deleting the Deployment removes its pods and their containers from containerd.
    cluster.kubectl_ok(&[
        "delete",
        "deployment",
        "web",
        "--wait=true",
        "--timeout=60s",
    ])?;
    cluster.kubectl_ok(&[
        "delete",
        "pod",
        "crasher",
        "missing",
        "unready",
        "unhealthy",
        "oom",
        "--wait=true",
        "--timeout=60s",
    ])?;
    eventually(Duration::from_secs(60), "pods gone", || {
        let pods = cluster.json(&["get", "pods"])?;
        let left: Vec<String> = pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{} {} deleting={}",
                    p["metadata"]["name"],
                    pod_phase(p),
                    p["metadata"]["deletionTimestamp"]
                )
            })
            .collect();
        if left.is_empty() {
            Ok(Some(()))
        } else {
            Err(anyhow::anyhow!("left: {left:?}"))
        }
    })
    .await?;
    drop(local);
    if let Some(control_plane) = cluster.control_plane.take() {
        control_plane.stop().await;
    }
    drop(bed);
    Ok(())
}
