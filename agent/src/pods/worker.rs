//! One task per pod makes the pod real: sandbox, images, init containers in order, app
//! containers with their restart policy and back-off, probes, termination, and the status report.
//! Level-triggered: every sync starts from what containerd shows, so an agent restart re-adopts
//! running containers instead of restarting them.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::{Container, Pod, PodStatus},
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
};
use serde_json::json;
use tokio::{sync::watch, time::Instant};

use super::{
    cri::{self, CriError, api},
    events::{self, Kind},
    handlers::Hook,
    manager::{ContainerView, PodView, Runtime},
    probes::{ContainerProbes, ProbeEvent, ProbeKind},
    spec::{self, ContainerContext},
    status::{self, Instance, InstanceState, Observed},
};

/// How often a pod is synced when nothing wakes it earlier.
const RESYNC: Duration = Duration::from_secs(10);
/// How soon a pod that is still starting is looked at again.
const SOON: Duration = Duration::from_secs(1);
/// How often a running pod's volumes are written again from the current ConfigMaps, Secrets
/// and tokens (kubelet's sync period): a token is renewed within this long of reaching 80% of
/// its lifetime, an edited ConfigMap shows in the pod within this long.
const VOLUME_REFRESH: Duration = Duration::from_secs(60);
/// Grace period when the pod spec does not say (kubelet's default).
const DEFAULT_GRACE: i64 = 30;

/// A wake-up for a pod worker besides a new pod object.
#[derive(Debug)]
pub enum Wake {
    /// containerd showed a change for one of the pod's containers.
    Relist,
    /// A probe result changed.
    Probe(ProbeEvent),
}

/// What the worker remembers between syncs (everything else is re-read from containerd).
#[derive(Default)]
struct PodState {
    last_status: Option<PodStatus>,
    start_time: Option<Timestamp>,
    /// Why containers wait, by name.
    waiting: HashMap<String, (String, String)>,
    ready: HashMap<String, bool>,
    started: HashMap<String, bool>,
    /// Container ids whose liveness probe failed: they are restarted.
    unhealthy: HashSet<String>,
    /// Probe workers by container id.
    probes: HashMap<String, ContainerProbes>,
    /// Exited instances do not change: their CRI status is read once.
    exited: HashMap<String, Instance>,
    /// Whether the pod object has been deleted from the API already.
    finished: bool,
    /// When the pod's volumes were last written.
    volumes_written: Option<Instant>,
}

/// Runs the worker of one pod until the pod is gone from the API and from containerd.
pub async fn run(
    runtime: Arc<Runtime>,
    mut pods: watch::Receiver<Option<Arc<Pod>>>,
    mut wakes: tokio::sync::mpsc::UnboundedReceiver<Wake>,
) {
    let mut state = PodState::default();
    let mut uid: Option<String> = None;
    loop {
        let current = pods.borrow_and_update().clone();
        let Some(pod) = current else {
            // Deleted from the API: make sure nothing is left in containerd.
            if let Some(uid) = uid {
                teardown(&runtime, &uid, 0).await;
            }
            return;
        };
        uid = pod.metadata.uid.clone();
        let next = match sync(&runtime, &pod, &mut state).await {
            Ok(next) => next,
            Err(err) => {
                tracing::warn!(pod = %describe(&pod), "sync failed: {err}");
                SOON * 2
            }
        };
        tokio::select! {
            changed = pods.changed() => {
                // The manager is gone: the agent is stopping, and pods outlive it (a deletion
                // arrives as None above; pods deleted while the agent was away are orphans the
                // next agent removes). Tearing the pod down here killed containers whenever
                // the stop was slow enough for this to run before the runtime ended.
                if changed.is_err() {
                    return;
                }
            }
            wake = wakes.recv() => {
                if let Some(Wake::Probe(update)) = wake {
                    apply_probe(&runtime, &pod, &mut state, update);
                }
            }
            () = tokio::time::sleep(next) => {}
        }
    }
}

fn describe(pod: &Pod) -> String {
    let (namespace, name, _) = spec::pod_identity(pod);
    format!("{namespace}/{name}")
}

fn apply_probe(runtime: &Runtime, pod: &Pod, state: &mut PodState, event: ProbeEvent) {
    match event {
        ProbeEvent::Unhealthy {
            reason, message, ..
        } => {
            events::record(
                &runtime.client,
                &runtime.node_name,
                pod,
                Kind::Warning,
                reason,
                message,
            );
        }
        ProbeEvent::Changed {
            container_name,
            container_id,
            kind,
            healthy,
            message,
            ..
        } => match kind {
            ProbeKind::Readiness => {
                state.ready.insert(container_name, healthy);
            }
            ProbeKind::Startup if healthy => {
                state.started.insert(container_name, true);
            }
            ProbeKind::Liveness | ProbeKind::Startup if !healthy => {
                tracing::info!(pod = %describe(pod), container = %container_name, "{} probe failed: {message}", kind.name());
                state.unhealthy.insert(container_id);
            }
            _ => {}
        },
    }
}

/// One pass over the pod; returns when to look again.
async fn sync(runtime: &Runtime, pod: &Pod, state: &mut PodState) -> Result<Duration, CriError> {
    let (namespace, name, uid) = spec::pod_identity(pod);
    if state.start_time.is_none() {
        state.start_time = Some(
            pod.status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map_or_else(Timestamp::now, |t| t.0),
        );
    }
    if pod.metadata.deletion_timestamp.is_some() {
        if state.finished {
            return Ok(RESYNC);
        }
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            })
            .unwrap_or(DEFAULT_GRACE);
        kill_pod(runtime, pod, &uid, grace, state).await;
        remove_pod(runtime, &uid).await;
        let pods: Api<Pod> = Api::namespaced(runtime.client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match pods.delete(&name, &params).await {
            Ok(_) => state.finished = true,
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
                state.finished = true;
            }
            Err(err) => tracing::warn!(pod = %describe(pod), "finishing the deletion: {err}"),
        }
        runtime.forget_view(&namespace, &name);
        return Ok(RESYNC);
    }

    let restart_policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.clone())
        .unwrap_or_else(|| "Always".into());
    let already_terminal = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed");

    // The sandbox.
    let sandboxes = runtime.sandboxes_of(&uid).await?;
    let ready = sandboxes
        .iter()
        .filter(|s| s.state == api::PodSandboxState::SandboxReady as i32)
        .max_by_key(|s| s.created_at)
        .cloned();
    let sandbox = match ready {
        Some(sandbox) => Some(sandbox),
        None if already_terminal => None,
        None => {
            // A dead sandbox takes its containers with it; start over with a new attempt.
            let attempt = sandboxes
                .iter()
                .filter_map(|s| s.metadata.as_ref().map(|m| m.attempt + 1))
                .max()
                .unwrap_or(0);
            let ran_before = !sandboxes.is_empty();
            if ran_before && restart_policy == "Never" {
                None
            } else {
                for old in &sandboxes {
                    stop_sandbox(runtime, &old.id).await;
                }
                match create_sandbox(runtime, pod, attempt).await {
                    Ok(sandbox) => {
                        state.volumes_written = Some(Instant::now());
                        Some(sandbox)
                    }
                    Err(err) => {
                        events::record(
                            &runtime.client,
                            &runtime.node_name,
                            pod,
                            Kind::Warning,
                            "FailedCreatePodSandBox",
                            format!("Failed to create pod sandbox: {}", err.message()),
                        );
                        for container in all_containers(pod) {
                            state.waiting.insert(
                                container.name.clone(),
                                ("ContainerCreating".into(), String::new()),
                            );
                        }
                        report(runtime, pod, state, Observed::default()).await;
                        return Ok(SOON * 5);
                    }
                }
            }
        }
    };

    let mut observed = Observed {
        host_ip: runtime.node_ip.clone(),
        start_time: state.start_time,
        ..Default::default()
    };
    let mut next = RESYNC;
    if let Some(sandbox) = &sandbox {
        observed.sandbox_ready = true;
        observed.pod_ips = runtime.pod_ips(&sandbox.id, pod).await?;
        observed.instances = instances(runtime, &uid, state).await?;
        if !already_terminal {
            refresh_volumes(runtime, pod, state).await;
            next = next.min(
                start_containers(runtime, pod, sandbox, &restart_policy, &mut observed, state)
                    .await?,
            );
        }
    } else {
        observed.instances = instances(runtime, &uid, state).await?;
    }
    observed.waiting = state.waiting.clone();
    observed.ready = state.ready.clone();
    observed.started = state.started.clone();
    let status = report(runtime, pod, state, observed.clone()).await;

    // A finished pod keeps its containers (for logs) but not its sandbox.
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        if let Some(sandbox) = &sandbox {
            stop_sandbox(runtime, &sandbox.id).await;
        }
        state.probes.clear();
    }
    runtime.set_view(
        &namespace,
        &name,
        view(pod, &uid, sandbox.as_ref().map(|s| s.id.clone()), &observed),
    );
    Ok(next)
}

fn all_containers(pod: &Pod) -> Vec<Container> {
    let spec = pod.spec.clone().unwrap_or_default();
    spec.init_containers
        .unwrap_or_default()
        .into_iter()
        .chain(spec.containers)
        .collect()
}

fn view(pod: &Pod, uid: &str, sandbox: Option<String>, observed: &Observed) -> PodView {
    let containers = all_containers(pod)
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                ContainerView {
                    current: observed
                        .latest(&c.name)
                        .filter(|i| i.state != InstanceState::Created)
                        .map(|i| i.id.clone()),
                    previous: observed.previous(&c.name).map(|i| i.id.clone()),
                    waiting: observed
                        .waiting
                        .get(&c.name)
                        .map_or_else(|| "ContainerCreating".to_owned(), |(r, _)| r.clone()),
                },
            )
        })
        .collect();
    PodView {
        uid: uid.to_owned(),
        sandbox,
        containers,
    }
}

/// Writes the status when it changed; returns it.
async fn report(
    runtime: &Runtime,
    pod: &Pod,
    state: &mut PodState,
    observed: Observed,
) -> PodStatus {
    let previous = state.last_status.clone().or_else(|| pod.status.clone());
    let mut status = status::pod_status(pod, &observed, previous.as_ref());
    // Never go back from a terminal phase (kubelet's rule).
    if let Some(old) = pod.status.as_ref().and_then(|s| s.phase.clone())
        && (old == "Succeeded" || old == "Failed")
    {
        status.phase = Some(old);
    }
    let unchanged = previous
        .as_ref()
        .is_some_and(|old| same_status(old, &status));
    if !unchanged {
        let (namespace, name, _) = spec::pod_identity(pod);
        let pods: Api<Pod> = Api::namespaced(runtime.client.clone(), &namespace);
        match pods
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        {
            Ok(_) => state.last_status = Some(status.clone()),
            Err(err) => tracing::warn!(pod = %describe(pod), "writing the pod status: {err}"),
        }
    }
    status
}

/// Status equality that ignores condition timestamps (they are carried over when unchanged).
fn same_status(a: &PodStatus, b: &PodStatus) -> bool {
    let strip = |s: &PodStatus| {
        let mut s = s.clone();
        if let Some(conditions) = s.conditions.as_mut() {
            for c in conditions.iter_mut() {
                c.last_transition_time = None;
                c.last_probe_time = None;
            }
            conditions.sort_by(|x, y| x.type_.cmp(&y.type_));
        }
        s
    };
    strip(a) == strip(b)
}

/// Every container instance of the pod, with exit details for exited ones.
async fn instances(
    runtime: &Runtime,
    uid: &str,
    state: &mut PodState,
) -> Result<Vec<Instance>, CriError> {
    let listed = runtime.containers_of(uid).await?;
    let mut instances = Vec::with_capacity(listed.len());
    let mut alive = HashSet::new();
    for container in listed {
        alive.insert(container.id.clone());
        if let Some(done) = state.exited.get(&container.id) {
            instances.push(done.clone());
            continue;
        }
        let status = runtime.container_status(&container.id).await?;
        // Listed a moment ago and gone now: decide on a fresh view, not on one that lacks it
        // (it would be taken for never created, and created again).
        let Some(status) = status else {
            return Err(CriError::Call {
                action: format!("reading the status of container {}", container.id),
                status: Box::new(tonic::Status::not_found("removed while listed")),
            });
        };
        let instance = Instance {
            id: status.id.clone(),
            name: status
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            attempt: status.metadata.as_ref().map_or(0, |m| m.attempt),
            state: match api::ContainerState::try_from(status.state) {
                Ok(api::ContainerState::ContainerCreated) => InstanceState::Created,
                Ok(api::ContainerState::ContainerRunning) => InstanceState::Running,
                Ok(api::ContainerState::ContainerExited) => InstanceState::Exited,
                _ => InstanceState::Unknown,
            },
            created_at: status.created_at,
            started_at: status.started_at,
            finished_at: status.finished_at,
            exit_code: status.exit_code,
            reason: status.reason.clone(),
            message: status.message.clone(),
            image_ref: status.image_ref.clone(),
        };
        if instance.state == InstanceState::Exited {
            state.exited.insert(instance.id.clone(), instance.clone());
            state.probes.remove(&instance.id);
        }
        instances.push(instance);
    }
    state.exited.retain(|id, _| alive.contains(id));
    Ok(instances)
}

/// Starts what should run: init containers one at a time in order, then the app containers,
/// restarting exited ones per the restart policy with back-off. Returns when to look again.
async fn start_containers(
    runtime: &Runtime,
    pod: &Pod,
    sandbox: &api::PodSandbox,
    restart_policy: &str,
    observed: &mut Observed,
    state: &mut PodState,
) -> Result<Duration, CriError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut next = RESYNC;
    // Init containers: each must succeed before the next starts.
    for container in spec.init_containers.iter().flatten() {
        match observed.latest(&container.name).cloned() {
            Some(instance) if instance.succeeded() => continue,
            Some(instance) if instance.state == InstanceState::Running => return Ok(SOON),
            Some(instance) if instance.state == InstanceState::Exited => {
                if restart_policy == "Never" {
                    return Ok(RESYNC);
                }
                return restart(
                    runtime,
                    pod,
                    sandbox,
                    container,
                    Some(&instance),
                    true,
                    observed,
                    state,
                )
                .await;
            }
            Some(instance) if instance.state == InstanceState::Created => {
                start_created(runtime, &instance.id).await?;
                return Ok(SOON);
            }
            // containerd has not recovered its state yet: a restart now would put a second
            // container beside one that may still run.
            Some(instance) if instance.state == InstanceState::Unknown => return Ok(SOON),
            _ => {
                return restart(
                    runtime, pod, sandbox, container, None, true, observed, state,
                )
                .await;
            }
        }
    }
    for container in &spec.containers {
        let latest = observed.latest(&container.name).cloned();
        match latest {
            None => {
                next = next.min(
                    restart(
                        runtime, pod, sandbox, container, None, false, observed, state,
                    )
                    .await?,
                );
            }
            Some(instance) if instance.state == InstanceState::Running => {
                if state.unhealthy.remove(&instance.id) {
                    events::record(
                        &runtime.client,
                        &runtime.node_name,
                        pod,
                        Kind::Normal,
                        "Killing",
                        format!(
                            "Container {} failed {} probe, will be restarted",
                            container.name,
                            if container.startup_probe.is_some()
                                && !state.started.get(&container.name).copied().unwrap_or(false)
                            {
                                "startup"
                            } else {
                                "liveness"
                            }
                        ),
                    );
                    let grace = spec
                        .termination_grace_period_seconds
                        .unwrap_or(DEFAULT_GRACE);
                    kill_container(runtime, pod, Some(container), &instance.id, grace).await;
                    state.probes.remove(&instance.id);
                    return Ok(Duration::ZERO);
                }
                state.waiting.remove(&container.name);
                ensure_probes(runtime, pod, container, &instance, observed, state);
            }
            Some(instance) if instance.state == InstanceState::Created => {
                start_created(runtime, &instance.id).await?;
                next = SOON;
            }
            // As for init containers: wait until containerd knows the container's state.
            Some(instance) if instance.state == InstanceState::Unknown => next = SOON,
            Some(instance) => {
                let wanted = match restart_policy {
                    "Never" => false,
                    "OnFailure" => instance.exit_code != 0,
                    _ => true,
                };
                if wanted {
                    next = next.min(
                        restart(
                            runtime,
                            pod,
                            sandbox,
                            container,
                            Some(&instance),
                            false,
                            observed,
                            state,
                        )
                        .await?,
                    );
                } else {
                    state.waiting.remove(&container.name);
                }
            }
        }
    }
    Ok(next)
}

async fn start_created(runtime: &Runtime, id: &str) -> Result<(), CriError> {
    runtime
        .cri
        .runtime
        .clone()
        .start_container(api::StartContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        .map_err(|status| cri::call(format!("starting container {id}"), status))?;
    Ok(())
}

fn ensure_probes(
    runtime: &Runtime,
    pod: &Pod,
    container: &Container,
    instance: &Instance,
    observed: &Observed,
    state: &mut PodState,
) {
    if state.probes.contains_key(&instance.id) {
        return;
    }
    if container.readiness_probe.is_none()
        && container.liveness_probe.is_none()
        && container.startup_probe.is_none()
    {
        return;
    }
    state.ready.insert(container.name.clone(), false);
    state
        .started
        .insert(container.name.clone(), container.startup_probe.is_none());
    let probes = runtime.start_probes(pod, container, instance, observed.pod_ips.first());
    state.probes.insert(instance.id.clone(), probes);
}

/// Starts a (new instance of a) container unless it is backing off; returns when to look again.
#[allow(clippy::too_many_arguments)]
async fn restart(
    runtime: &Runtime,
    pod: &Pod,
    sandbox: &api::PodSandbox,
    container: &Container,
    last: Option<&Instance>,
    init: bool,
    observed: &Observed,
    state: &mut PodState,
) -> Result<Duration, CriError> {
    let (namespace, name, uid) = spec::pod_identity(pod);
    let key = format!("{uid}/{}", container.name);
    if let Some(last) = last {
        let now = Instant::now();
        let remaining = runtime.backoff_remaining(&key, now);
        if let Some(remaining) = remaining {
            let delay = runtime.backoff_delay(&key);
            state.waiting.insert(
                container.name.clone(),
                (
                    "CrashLoopBackOff".into(),
                    format!(
                        "back-off {}s restarting failed container={} pod={name}_{namespace}({uid})",
                        delay.as_secs(),
                        container.name
                    ),
                ),
            );
            return Ok(remaining);
        }
        runtime.backoff_fail(&key, now);
        // Keep the last instance for `kubectl logs --previous`; older ones go.
        for old in observed
            .instances
            .iter()
            .filter(|i| i.name == container.name && i.id != last.id)
        {
            remove_container(runtime, &old.id).await;
        }
        if !init {
            events::record(
                &runtime.client,
                &runtime.node_name,
                pod,
                Kind::Warning,
                "BackOff",
                format!(
                    "Back-off restarting failed container {} in pod {name}_{namespace}({uid})",
                    container.name
                ),
            );
        }
    }
    let attempt = last.map_or(0, |i| i.attempt + 1);
    match start_container(runtime, pod, sandbox, container, attempt, init, observed).await {
        Ok(()) => {
            state.waiting.remove(&container.name);
            Ok(SOON)
        }
        Err(Waiting {
            reason,
            message,
            retry,
        }) => {
            state
                .waiting
                .insert(container.name.clone(), (reason, message));
            Ok(retry)
        }
    }
}

/// Why a container could not be started, as its waiting state shows it.
pub(crate) struct Waiting {
    reason: String,
    message: String,
    retry: Duration,
}

async fn start_container(
    runtime: &Runtime,
    pod: &Pod,
    sandbox: &api::PodSandbox,
    container: &Container,
    attempt: u32,
    init: bool,
    observed: &Observed,
) -> Result<(), Waiting> {
    let image = runtime.ensure_image(pod, container).await?;
    let prepared = runtime
        .container_inputs(pod, container, observed)
        .await
        .map_err(|message| {
            events::record(
                &runtime.client,
                &runtime.node_name,
                pod,
                Kind::Warning,
                "Failed",
                format!("Error: {message}"),
            );
            Waiting {
                reason: "CreateContainerConfigError".into(),
                message,
                retry: SOON * 5,
            }
        })?;
    let mut config = spec::container_config(
        pod,
        container,
        ContainerContext {
            env: prepared.env,
            mounts: prepared.mounts,
            attempt,
            init,
        },
    );
    if let Some(spec_image) = config.image.as_mut() {
        spec_image.image = image;
    }
    let sandbox_config =
        runtime.sandbox_config(pod, sandbox.metadata.as_ref().map_or(0, |m| m.attempt));
    let failed = |action: &str, err: tonic::Status| {
        let message = err.message().to_owned();
        events::record(
            &runtime.client,
            &runtime.node_name,
            pod,
            Kind::Warning,
            "Failed",
            format!("Error: {action}: {message}"),
        );
        Waiting {
            reason: "CreateContainerError".into(),
            message,
            retry: SOON * 5,
        }
    };
    let created = runtime
        .cri
        .runtime
        .clone()
        .create_container(api::CreateContainerRequest {
            pod_sandbox_id: sandbox.id.clone(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .map_err(|err| failed("failed to create container", err))?
        .into_inner();
    events::record(
        &runtime.client,
        &runtime.node_name,
        pod,
        Kind::Normal,
        "Created",
        format!("Created container {}", container.name),
    );
    runtime
        .cri
        .runtime
        .clone()
        .start_container(api::StartContainerRequest {
            container_id: created.container_id.clone(),
        })
        .await
        .map_err(|err| {
            let mut waiting = failed("failed to start container", err);
            waiting.reason = "RunContainerError".into();
            waiting
        })?;
    events::record(
        &runtime.client,
        &runtime.node_name,
        pod,
        Kind::Normal,
        "Started",
        format!("Started container {}", container.name),
    );
    if let Some(post_start) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.post_start.as_ref())
        && let Err(message) = runtime
            .run_hook(
                pod,
                container,
                &created.container_id,
                post_start,
                Hook::PostStart,
                DEFAULT_GRACE,
            )
            .await
    {
        events::record(
            &runtime.client,
            &runtime.node_name,
            pod,
            Kind::Warning,
            "FailedPostStartHook",
            message.clone(),
        );
        kill_container(runtime, pod, None, &created.container_id, 0).await;
    }
    Ok(())
}

/// Writes the running pod's volumes again once [`VOLUME_REFRESH`] has passed; on a failure the
/// containers keep the files they had.
async fn refresh_volumes(runtime: &Runtime, pod: &Pod, state: &mut PodState) {
    if state
        .volumes_written
        .is_some_and(|written| written.elapsed() < VOLUME_REFRESH)
    {
        return;
    }
    state.volumes_written = Some(Instant::now());
    // A failure is reported as an event by prepare_volumes; the old files stay.
    let _ = runtime.prepare_volumes(pod).await;
}

async fn create_sandbox(
    runtime: &Runtime,
    pod: &Pod,
    attempt: u32,
) -> Result<api::PodSandbox, CriError> {
    let config = runtime.sandbox_config(pod, attempt);
    if let Some(dir) = Some(std::path::PathBuf::from(&config.log_directory))
        && let Err(err) = std::fs::create_dir_all(&dir)
    {
        tracing::warn!("creating the log directory {}: {err}", dir.display());
    }
    runtime.prepare_volumes(pod).await.map_err(|message| {
        cri::call(
            "mounting the pod's volumes",
            tonic::Status::failed_precondition(message),
        )
    })?;
    let response = runtime
        .cri
        .runtime
        .clone()
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(|status| {
            cri::call(
                format!("creating the sandbox of pod {}", describe(pod)),
                status,
            )
        })?
        .into_inner();
    Ok(api::PodSandbox {
        id: response.pod_sandbox_id,
        metadata: config.metadata,
        state: api::PodSandboxState::SandboxReady as i32,
        created_at: 0,
        labels: config.labels,
        annotations: config.annotations,
        runtime_handler: String::new(),
    })
}

/// Stops one container: its preStop hook first, then SIGTERM, then SIGKILL after what is left of
/// the grace period.
pub(crate) async fn kill_container(
    runtime: &Runtime,
    pod: &Pod,
    container: Option<&Container>,
    id: &str,
    grace: i64,
) {
    let started = Instant::now();
    if let Some(container) = container
        && let Some(pre_stop) = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
        && grace > 0
        && let Err(message) = runtime
            .run_hook(pod, container, id, pre_stop, Hook::PreStop, grace)
            .await
    {
        events::record(
            &runtime.client,
            &runtime.node_name,
            pod,
            Kind::Warning,
            "FailedPreStopHook",
            message,
        );
    }
    let left = (grace - i64::try_from(started.elapsed().as_secs()).unwrap_or(0)).max(0);
    // containerd waits `timeout` seconds after SIGTERM before SIGKILL; bound our wait beyond it.
    let mut client = runtime.cri.runtime.clone();
    let call = client.stop_container(api::StopContainerRequest {
        container_id: id.to_owned(),
        timeout: left,
    });
    let limit = Duration::from_secs(u64::try_from(left).unwrap_or(0) + 10);
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(_)) => {}
        Ok(Err(status)) if status.code() == tonic::Code::NotFound => {}
        Ok(Err(status)) => tracing::warn!("stopping container {id}: {}", status.message()),
        Err(_) => tracing::warn!("stopping container {id} took longer than {limit:?}"),
    }
}

/// Stops every running container of the pod in parallel within `grace` seconds.
async fn kill_pod(runtime: &Runtime, pod: &Pod, uid: &str, grace: i64, state: &mut PodState) {
    state.probes.clear();
    let specs = all_containers(pod);
    let Ok(containers) = runtime.containers_of(uid).await else {
        return;
    };
    let running: Vec<_> = containers
        .into_iter()
        .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
        .collect();
    if !running.is_empty() {
        for c in &running {
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            events::record(
                &runtime.client,
                &runtime.node_name,
                pod,
                Kind::Normal,
                "Killing",
                format!("Stopping container {name}"),
            );
        }
    }
    futures::future::join_all(running.iter().map(|c| {
        let name = c
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let spec = specs.iter().find(|s| s.name == name);
        kill_container(runtime, pod, spec, &c.id, grace)
    }))
    .await;
}

/// Removes the pod's containers, sandboxes and volumes (after they were stopped).
async fn remove_pod(runtime: &Runtime, uid: &str) {
    if let Ok(containers) = runtime.containers_of(uid).await {
        for container in containers {
            remove_container(runtime, &container.id).await;
        }
    }
    if let Ok(sandboxes) = runtime.sandboxes_of(uid).await {
        for sandbox in sandboxes {
            stop_sandbox(runtime, &sandbox.id).await;
            if let Err(status) = runtime
                .cri
                .runtime
                .clone()
                .remove_pod_sandbox(api::RemovePodSandboxRequest {
                    pod_sandbox_id: sandbox.id.clone(),
                })
                .await
            {
                tracing::warn!("removing sandbox {}: {}", sandbox.id, status.message());
            }
        }
    }
    runtime.remove_volumes(uid);
    runtime.forget_backoff(uid);
}

/// Stops whatever is left of a pod that is gone from the API: no grace is owed any more.
pub(crate) async fn teardown(runtime: &Runtime, uid: &str, grace: i64) {
    if let Ok(containers) = runtime.containers_of(uid).await {
        for container in containers
            .iter()
            .filter(|c| c.state == api::ContainerState::ContainerRunning as i32)
        {
            let mut client = runtime.cri.runtime.clone();
            let call = client.stop_container(api::StopContainerRequest {
                container_id: container.id.clone(),
                timeout: grace,
            });
            let _ = tokio::time::timeout(Duration::from_secs(20), call).await;
        }
    }
    remove_pod(runtime, uid).await;
}

async fn stop_sandbox(runtime: &Runtime, id: &str) {
    if let Err(status) = runtime
        .cri
        .runtime
        .clone()
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        })
        .await
        && status.code() != tonic::Code::NotFound
    {
        tracing::warn!("stopping sandbox {id}: {}", status.message());
    }
}

async fn remove_container(runtime: &Runtime, id: &str) {
    if let Err(status) = runtime
        .cri
        .runtime
        .clone()
        .remove_container(api::RemoveContainerRequest {
            container_id: id.to_owned(),
        })
        .await
        && status.code() != tonic::Code::NotFound
    {
        tracing::warn!("removing container {id}: {}", status.message());
    }
}

/// Builds a waiting reason for the image step.
pub(crate) fn blocked(reason: &str, message: String, retry: Duration) -> Waiting {
    Waiting {
        reason: reason.to_owned(),
        message,
        retry,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};

    use super::*;

    #[test]
    fn status_comparison_ignores_transition_times() {
        let a = PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    Timestamp::now(),
                )),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mut b = a.clone();
        b.conditions.as_mut().unwrap()[0].last_transition_time = None;
        assert!(same_status(&a, &b));
        b.phase = Some("Failed".into());
        assert!(!same_status(&a, &b));
    }
}
