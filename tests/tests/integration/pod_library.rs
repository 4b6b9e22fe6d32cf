//! Privileged test of the pod worker's building blocks against a real containerd: volumes
//! (configMap on disk, emptyDir and secret on tmpfs) mounted into a container and read back,
//! a configMap refresh seen without remounting, the container's environment, exec and httpGet
//! probes, the probe workers, a failing postStart hook, and the teardown of the pod's volumes.
//!
//! containerd runs inside a network namespace the test creates; the sandbox uses the "node"
//! network, which is that namespace (never the host's). containerd, the namespace and the temp
//! dir are removed by guards, also when an assertion fails; every wait is bounded.

use std::{collections::BTreeMap, fs, time::Duration};

use crate::support;
use anyhow::{Context as _, bail, ensure};
use flotilla_agent::pods::{
    containerd::{NodeDirs, config_toml},
    cri::{Cri, api},
    env::{EnvContext, container_env},
    handlers::{self, HandlerTarget, Hook, ProbeResult},
    objects::PodObjects,
    probes::{ContainerProbes, ProbeEvent, ProbeKind},
    volumes::{self, HostMounter, VolumeContext},
};
use flotilla_testbed::{Netlink, Netns, unique_prefix};
use k8s_openapi::{
    ByteString,
    api::core::v1::{
        ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, ExecAction,
        HTTPGetAction, LifecycleHandler, Pod, PodSpec, Probe, Secret, SecretVolumeSource, Volume,
        VolumeMount,
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::ObjectMeta, util::intstr::IntOrString,
    },
};

const TESTAPP: &str = "docker.io/flotilla/testapp:v1";
const WAIT: Duration = Duration::from_secs(20);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test starts containerd, mounts tmpfs and creates a network namespace, so it needs \
         root; run it via `cargo xtask test`"
    );
}

/// A network namespace removed (with whatever still runs inside) on drop.
struct NetnsGuard(Netns);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        if let Err(err) = self.0.delete() {
            eprintln!("removing network namespace {}: {err}", self.0.name());
        }
    }
}

fn pod(uid: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("lib-test".into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            volumes: Some(vec![
                Volume {
                    name: "cfg".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: "settings".into(),
                        ..ConfigMapVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "scratch".into(),
                    empty_dir: Some(EmptyDirVolumeSource {
                        medium: Some("Memory".into()),
                        size_limit: Some(Quantity("16Mi".into())),
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "creds".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some("creds".into()),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                },
            ]),
            containers: vec![app()],
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn app() -> Container {
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        ..VolumeMount::default()
    };
    Container {
        name: "app".into(),
        image: Some(TESTAPP.into()),
        env: Some(vec![
            EnvVar {
                name: "GREETING".into(),
                value: Some("hello $(WHO)".into()),
                value_from: None,
            },
            EnvVar {
                name: "WHO".into(),
                value: Some("world".into()),
                value_from: None,
            },
        ]),
        volume_mounts: Some(vec![
            mount("cfg", "/etc/cfg"),
            mount("scratch", "/scratch"),
            mount("creds", "/etc/creds"),
        ]),
        ..Container::default()
    }
}

fn objects(mode: &str) -> PodObjects {
    let mut objects = PodObjects::default();
    objects.config_maps.insert(
        "settings".into(),
        Some(ConfigMap {
            data: Some(BTreeMap::from([("mode".into(), mode.into())])),
            ..ConfigMap::default()
        }),
    );
    objects.secrets.insert(
        "creds".into(),
        Some(Secret {
            data: Some(BTreeMap::from([(
                "password".into(),
                ByteString(b"s3cret".to_vec()),
            )])),
            ..Secret::default()
        }),
    );
    objects
}

/// Runs `command` in the container and returns (exit code, stdout).
async fn exec(target: &HandlerTarget, command: &[&str]) -> anyhow::Result<(i32, String)> {
    let command: Vec<String> = command.iter().map(|s| (*s).to_owned()).collect();
    let response = handlers::exec_sync(target, &command, Some(Duration::from_secs(10)))
        .await
        .with_context(|| format!("exec {command:?}"))?;
    Ok((
        response.exit_code,
        String::from_utf8_lossy(&response.stdout).into_owned(),
    ))
}

fn exec_probe(command: &[&str]) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
        }),
        ..Probe::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn volumes_env_and_probes_on_real_containerd() -> anyhow::Result<()> {
    require_root();
    let tarballs = support::test_images()?;
    // Declared in this order so they drop in reverse: containerd (and its shims and mounts)
    // first, then the namespace, then the files.
    let dir = flotilla_testbed::run_dir("pod-library")?;
    let netns = NetnsGuard(Netns::create(&format!("{}x", unique_prefix()))?);
    Netlink::connect(&netns.0)?.set_up("lo").await?;
    let dirs = NodeDirs::under(dir.path());
    for sub in dirs.all() {
        fs::create_dir_all(sub)?;
    }
    fs::write(dirs.containerd_config(), config_toml(&dirs))?;
    let containerd = flotilla_testbed::containerd::Containerd::start(
        &dirs.containerd_config(),
        &dirs.containerd_socket(),
        &dir.path().join("containerd.log"),
        vec![dirs.lib.clone(), dirs.run.clone()],
        Some(&netns.0),
        Duration::from_secs(30),
    )?;
    containerd.import(&tarballs)?;
    let result = exercise(&dirs, &netns.0).await;
    if result.is_err() {
        eprintln!("containerd log:\n{}", containerd.log());
    }
    drop(containerd);
    drop(netns);
    drop(dir);
    result
}

async fn exercise(dirs: &NodeDirs, netns: &Netns) -> anyhow::Result<()> {
    let cri = Cri::connect(&dirs.containerd_socket())?;
    let uid = format!("podlib-{}", std::process::id());
    let pod = pod(&uid);
    let container = app();
    let allocatable = BTreeMap::new();

    // Volumes on the node, as kubelet lays them out.
    let mounter = HostMounter;
    let first = objects("fast");
    let volume_ctx = VolumeContext {
        pod: &pod,
        objects: &first,
        allocatable: &allocatable,
    };
    let pod_volumes = volumes::setup_pod_volumes(&volume_ctx, &dirs.pods_dir(), &mounter)?;
    let scratch = &pod_volumes["scratch"].host_path;
    ensure!(
        scratch.ends_with(format!("{uid}/volumes/kubernetes.io~empty-dir/scratch")),
        "{}",
        scratch.display()
    );
    use flotilla_agent::pods::volumes::Mounter as _;
    ensure!(
        mounter.is_mount_point(scratch)?,
        "the Memory emptyDir is a tmpfs"
    );

    let env = container_env(
        &EnvContext {
            pod: &pod,
            pod_ips: &["127.0.0.1".into()],
            host_ips: &["127.0.0.1".into()],
            allocatable: &allocatable,
            services: &[],
            objects: &first,
        },
        &container,
    )?;
    let mounts = volumes::container_mounts(&container, &pod_volumes, &env)?;

    // A sandbox on the node network (the test's namespace) and the test app in it.
    let node_network = api::NamespaceOption {
        network: api::NamespaceMode::Node as i32,
        ..api::NamespaceOption::default()
    };
    let log_directory = dirs.pod_logs().join(format!("default_lib-test_{uid}"));
    fs::create_dir_all(&log_directory)?;
    let sandbox_config = api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: "lib-test".into(),
            uid: uid.clone(),
            namespace: "default".into(),
            attempt: 0,
        }),
        // Host-network sandboxes share the node's UTS namespace: no hostname (as kubelet).
        log_directory: log_directory.to_string_lossy().into_owned(),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(node_network.clone()),
                ..api::LinuxSandboxSecurityContext::default()
            }),
            ..api::LinuxPodSandboxConfig::default()
        }),
        ..api::PodSandboxConfig::default()
    };
    let mut runtime = cri.runtime.clone();
    let sandbox_id = runtime
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id;
    let outcome = run_in_sandbox(
        &cri,
        &sandbox_id,
        &sandbox_config,
        node_network,
        &pod,
        &container,
        env.to_cri(),
        mounts,
        dirs,
        netns,
    )
    .await;
    // The pod goes away (also after a failure), then its volumes.
    let stop = runtime
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: sandbox_id.clone(),
        })
        .await;
    let remove = runtime
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id,
        })
        .await;
    outcome?;
    stop.context("StopPodSandbox")?;
    remove.context("RemovePodSandbox")?;
    volumes::remove_pod_volumes(&dirs.pods_dir(), &uid, &mounter)?;
    ensure!(
        !dirs.pods_dir().join(&uid).exists(),
        "the pod directory is gone"
    );
    ensure!(
        mounter.mounts_below(&dirs.pods_dir())?.is_empty(),
        "no mounts left below the pods dir"
    );
    volumes::remove_pod_volumes(&dirs.pods_dir(), &uid, &mounter)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_in_sandbox(
    cri: &Cri,
    sandbox_id: &str,
    sandbox_config: &api::PodSandboxConfig,
    node_network: api::NamespaceOption,
    pod: &Pod,
    container: &Container,
    envs: Vec<api::KeyValue>,
    mounts: Vec<api::Mount>,
    dirs: &NodeDirs,
    netns: &Netns,
) -> anyhow::Result<()> {
    let mut runtime = cri.runtime.clone();
    let container_id = runtime
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: container.name.clone(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: TESTAPP.into(),
                    ..api::ImageSpec::default()
                }),
                envs,
                mounts,
                log_path: "app/0.log".into(),
                linux: Some(api::LinuxContainerConfig {
                    security_context: Some(api::LinuxContainerSecurityContext {
                        namespace_options: Some(node_network),
                        ..api::LinuxContainerSecurityContext::default()
                    }),
                    ..api::LinuxContainerConfig::default()
                }),
                ..api::ContainerConfig::default()
            }),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .context("CreateContainer")?
        .into_inner()
        .container_id;
    runtime
        .start_container(api::StartContainerRequest {
            container_id: container_id.clone(),
        })
        .await
        .context("StartContainer")?;
    let target = HandlerTarget::new(cri.clone(), pod, container, &container_id, "127.0.0.1");

    // Volumes and environment, read back from inside the container.
    assert_eq!(
        exec(&target, &["cat", "/etc/cfg/mode"]).await?,
        (0, "fast".into())
    );
    assert_eq!(
        exec(&target, &["cat", "/etc/creds/password"]).await?,
        (0, "s3cret".into())
    );
    let (code, written) = exec(
        &target,
        &["sh", "-c", "echo hi > /scratch/note && cat /scratch/note"],
    )
    .await?;
    assert_eq!((code, written.as_str()), (0, "hi\n"));
    let (_, mounts) = exec(&target, &["cat", "/proc/mounts"]).await?;
    assert!(
        mounts.lines().any(|l| l.starts_with("tmpfs /scratch ")),
        "{mounts}"
    );
    assert!(
        mounts.lines().any(|l| l.contains(" /etc/cfg ")
            && l.split(' ').nth(3).is_some_and(|o| o.starts_with("ro"))),
        "configMap volumes are read-only:\n{mounts}"
    );
    let (code, _) = exec(&target, &["touch", "/etc/cfg/x"]).await?;
    assert_ne!(code, 0, "writing into a configMap volume must fail");
    assert_eq!(
        exec(&target, &["sh", "-c", "echo $GREETING"]).await?,
        (0, "hello $(WHO)\n".into()),
        "WHO is defined after GREETING, so it stays literal"
    );

    // A configMap refresh reaches the running container without a remount.
    let newer = objects("slow");
    let allocatable = BTreeMap::new();
    volumes::setup_pod_volumes(
        &VolumeContext {
            pod,
            objects: &newer,
            allocatable: &allocatable,
        },
        &dirs.pods_dir(),
        &HostMounter,
    )?;
    assert_eq!(
        exec(&target, &["cat", "/etc/cfg/mode"]).await?,
        (0, "slow".into())
    );

    // Exec probe: fails, then succeeds once the file exists.
    let probe = exec_probe(&["cat", "/tmp/healthy"]);
    let outcome = handlers::run_probe(&target, &probe).await?;
    ensure!(
        outcome.result == ProbeResult::Failure && outcome.output.contains("/tmp/healthy"),
        "{outcome:?}"
    );
    assert_eq!(exec(&target, &["touch", "/tmp/healthy"]).await?.0, 0);
    let outcome = handlers::run_probe(&target, &probe).await?;
    ensure!(outcome.result == ProbeResult::Success, "{outcome:?}");

    // An exec probe that outlives its timeout fails with kubelet's message.
    let mut slow = exec_probe(&["sleep", "5"]);
    slow.timeout_seconds = Some(1);
    let outcome =
        tokio::time::timeout(Duration::from_secs(15), handlers::run_probe(&target, &slow))
            .await
            .context("the timed-out exec probe did not return within 15 s")?;
    match outcome {
        Ok(outcome) => ensure!(
            outcome.result == ProbeResult::Failure
                && outcome.output == "command \"sleep 5\" timed out",
            "{outcome:?}"
        ),
        Err(err) => bail!("the timed-out exec probe errored instead of failing: {err}"),
    }

    // httpGet probe from inside the test's namespace (where the pod's network is).
    let action = HTTPGetAction {
        path: Some("/healthz".into()),
        port: IntOrString::Int(8080),
        ..HTTPGetAction::default()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let action = action.clone();
        let outcome = netns.run(move || -> anyhow::Result<handlers::Outcome> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(runtime.block_on(handlers::http_get(
                "127.0.0.1",
                8080,
                &action,
                Duration::from_secs(1),
            )))
        })??;
        if outcome.result == ProbeResult::Success {
            assert_eq!(outcome.output, "ok");
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the test app's /healthz did not pass within {WAIT:?}: {outcome:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Probe workers: readiness turns ready once /tmp/ready exists; liveness reports the failure.
    let mut probed = container.clone();
    let mut readiness = exec_probe(&["cat", "/tmp/ready"]);
    readiness.period_seconds = Some(1);
    probed.readiness_probe = Some(readiness);
    let mut liveness = exec_probe(&["test", "-f", "/tmp/alive"]);
    liveness.period_seconds = Some(1);
    liveness.failure_threshold = Some(1);
    probed.liveness_probe = Some(liveness);
    let (events_tx, mut events) = tokio::sync::mpsc::channel(32);
    let workers = ContainerProbes::start(
        HandlerTarget::new(cri.clone(), pod, &probed, &container_id, "127.0.0.1"),
        pod.metadata.uid.clone().unwrap_or_default(),
        tokio::time::Instant::now(),
        events_tx,
    );
    ensure!(workers.started(), "no startup probe: started at once");
    let mut ready_file_written = false;
    let mut seen = Vec::new();
    while !(seen.contains(&(ProbeKind::Liveness, false))
        && seen.contains(&(ProbeKind::Readiness, true)))
    {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .with_context(|| format!("probe events so far: {seen:?}"))?
            .context("probe workers ended")?;
        if let ProbeEvent::Changed {
            kind,
            healthy,
            container_id: id,
            ..
        } = event
        {
            assert_eq!(id, container_id);
            seen.push((kind, healthy));
        }
        if !ready_file_written {
            // Written after the first event, so readiness has been probed not-ready first.
            assert_eq!(exec(&target, &["touch", "/tmp/ready"]).await?.0, 0);
            ready_file_written = true;
        }
    }
    drop(workers);

    // A failing postStart hook, worded as kubelet's event.
    let hook = LifecycleHandler {
        exec: Some(ExecAction {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                "echo oops >&2; exit 3".into(),
            ]),
        }),
        ..LifecycleHandler::default()
    };
    let err = handlers::run_lifecycle_handler(&target, &hook, Hook::PostStart)
        .await
        .err()
        .context("the hook exits 3, so it must fail")?;
    assert_eq!(err.reason(), "FailedPostStartHook");
    let expected = format!(
        "Exec lifecycle hook ([sh -c echo oops >&2; exit 3]) for Container \"app\" in Pod \
         \"lib-test_default({})\" failed - error: command 'sh -c echo oops >&2; exit 3' exited \
         with 3: oops\n, message: \"oops\\n\"",
        pod.metadata.uid.as_deref().unwrap_or("")
    );
    assert_eq!(err.message, expected);

    runtime
        .stop_container(api::StopContainerRequest {
            container_id,
            timeout: 5,
        })
        .await
        .context("StopContainer")?;
    Ok(())
}
