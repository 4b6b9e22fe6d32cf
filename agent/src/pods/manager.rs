//! The pod manager: watches the pods bound to this node, runs one worker per pod, relists
//! containerd every second to notice exits (kubelet's PLEG), removes what belongs to pods that no
//! longer exist, and answers the kubelet API's container lookups.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::StreamExt as _;
use k8s_openapi::{
    api::core::v1::{Container, LifecycleHandler, Pod, Service},
    apimachinery::pkg::api::resource::Quantity,
};
use kube::{
    Api, Client,
    runtime::{
        WatchStreamExt as _,
        reflector::{self, Store},
        watcher::{self, Event},
    },
};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};

use super::{
    backoff::Backoff,
    containerd::NodeDirs,
    cri::{self, Cri, CriError, api},
    env::{self, EnvContext},
    handlers::{self, HandlerTarget, Hook},
    objects::PodObjects,
    probes::{self, ContainerProbes, ProbeEvent},
    spec::{self, DnsSettings, LABEL_MANAGED, LABEL_POD_UID, SandboxContext},
    status::{Instance, Observed},
    tokens::TokenManager,
    volumes::{self, HostMounter, VolumeContext},
    worker::{self, Waiting as StartBlocked, Wake, blocked},
};
use crate::server::{ContainerLocator, LocateError};

/// How often containerd is relisted to notice container exits.
const RELIST: Duration = Duration::from_secs(1);
/// How often leftovers of deleted pods are looked for.
const HOUSEKEEPING: Duration = Duration::from_secs(30);
/// How long one image pull may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(300);

/// What the agent knows about the node it runs pods for.
#[derive(Clone, Debug)]
pub struct NodeSettings {
    /// The node's name.
    pub name: String,
    /// The node's InternalIP (hostIP of its pods).
    pub ip: String,
    /// The node's directories.
    pub dirs: NodeDirs,
    /// The cgroup every pod of this node goes below.
    pub cgroup_root: String,
    /// DNS settings for pods.
    pub dns: DnsSettings,
}

/// A container's environment and mounts, ready for CreateContainer.
pub struct ContainerInputs {
    /// Resolved environment.
    pub env: Vec<(String, String)>,
    /// Volume mounts.
    pub mounts: Vec<api::Mount>,
}

/// What the kubelet API needs to know of one container.
#[derive(Clone, Debug, Default)]
pub struct ContainerView {
    /// Current instance (started at least once).
    pub current: Option<String>,
    /// The instance before it.
    pub previous: Option<String>,
    /// Why it waits, when it has no instance.
    pub waiting: String,
}

/// What the kubelet API needs to know of one pod.
#[derive(Clone, Debug, Default)]
pub struct PodView {
    /// The pod's uid.
    pub uid: String,
    /// Its ready sandbox.
    pub sandbox: Option<String>,
    /// Its containers by name (init and app).
    pub containers: HashMap<String, ContainerView>,
}

/// State shared by the manager and the pod workers.
pub struct Runtime {
    /// API client.
    pub client: Client,
    /// containerd.
    pub cri: Cri,
    /// The node's name.
    pub node_name: String,
    /// The node's IP.
    pub node_ip: String,
    settings: NodeSettings,
    backoff: Mutex<Backoff>,
    views: Mutex<HashMap<(String, String), PodView>>,
    /// Each pod's IPs with the sandbox they belong to (a replaced sandbox gets new ones).
    pod_ips: Mutex<HashMap<String, (String, Vec<String>)>>,
    wakes: Mutex<HashMap<String, mpsc::UnboundedSender<Wake>>>,
    /// Every Service, for the `{SVC}_SERVICE_HOST` variables.
    services: Store<Service>,
    services_writer: Mutex<Option<reflector::store::Writer<Service>>>,
    /// Probe results from all probe workers, routed to the pods' workers.
    probe_events: mpsc::Sender<ProbeEvent>,
    probe_receiver: Mutex<Option<mpsc::Receiver<ProbeEvent>>>,
    /// The node's allocatable resources (for resourceFieldRef and memory emptyDirs).
    allocatable: std::collections::BTreeMap<String, Quantity>,
    /// The ServiceAccount tokens of the pods' projected volumes.
    tokens: TokenManager,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Runtime {
    /// The runtime for a node.
    pub fn new(
        client: Client,
        cri: Cri,
        settings: NodeSettings,
        allocatable: std::collections::BTreeMap<String, Quantity>,
    ) -> Self {
        let (services, services_writer) = reflector::store();
        let (probe_events, probe_receiver) = mpsc::channel(1024);
        Self {
            services,
            services_writer: Mutex::new(Some(services_writer)),
            probe_events,
            probe_receiver: Mutex::new(Some(probe_receiver)),
            allocatable,
            tokens: TokenManager::default(),
            client,
            cri,
            node_name: settings.name.clone(),
            node_ip: settings.ip.clone(),
            settings,
            backoff: Mutex::default(),
            views: Mutex::default(),
            pod_ips: Mutex::default(),
            wakes: Mutex::default(),
        }
    }

    /// The pod's sandboxes (any state).
    pub async fn sandboxes_of(&self, uid: &str) -> Result<Vec<api::PodSandbox>, CriError> {
        Ok(self
            .cri
            .runtime
            .clone()
            .list_pod_sandbox(api::ListPodSandboxRequest {
                filter: Some(api::PodSandboxFilter {
                    label_selector: [(LABEL_POD_UID.to_owned(), uid.to_owned())].into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|status| cri::call("listing pod sandboxes", status))?
            .into_inner()
            .items)
    }

    /// The pod's containers (any state, any sandbox).
    pub async fn containers_of(&self, uid: &str) -> Result<Vec<api::Container>, CriError> {
        Ok(self
            .cri
            .runtime
            .clone()
            .list_containers(api::ListContainersRequest {
                filter: Some(api::ContainerFilter {
                    label_selector: [(LABEL_POD_UID.to_owned(), uid.to_owned())].into(),
                    ..Default::default()
                }),
            })
            .await
            .map_err(|status| cri::call("listing containers", status))?
            .into_inner()
            .containers)
    }

    /// One container's status (None if it is gone).
    pub async fn container_status(
        &self,
        id: &str,
    ) -> Result<Option<api::ContainerStatus>, CriError> {
        match self
            .cri
            .runtime
            .clone()
            .container_status(api::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
        {
            Ok(response) => Ok(response.into_inner().status),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(cri::call(
                format!("reading the status of container {id}"),
                status,
            )),
        }
    }

    /// The pod's IPs from its sandbox (the node's IP for hostNetwork pods).
    pub async fn pod_ips(&self, sandbox: &str, pod: &Pod) -> Result<Vec<String>, CriError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some((_, ips)) = lock(&self.pod_ips)
            .get(&uid)
            .filter(|(known, ips)| known == sandbox && !ips.is_empty())
        {
            return Ok(ips.clone());
        }
        let ips = if spec::host_network(pod) {
            vec![self.node_ip.clone()]
        } else {
            let status = self
                .cri
                .runtime
                .clone()
                .pod_sandbox_status(api::PodSandboxStatusRequest {
                    pod_sandbox_id: sandbox.to_owned(),
                    verbose: false,
                })
                .await
                .map_err(|status| cri::call("reading the sandbox status", status))?
                .into_inner();
            status
                .status
                .and_then(|s| s.network)
                .map(|n| {
                    std::iter::once(n.ip)
                        .chain(n.additional_ips.into_iter().map(|ip| ip.ip))
                        .filter(|ip| !ip.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        lock(&self.pod_ips).insert(uid, (sandbox.to_owned(), ips.clone()));
        Ok(ips)
    }

    /// The pod's IPs as last seen.
    pub fn pod_ips_cached(&self, pod: &Pod) -> Vec<String> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        lock(&self.pod_ips)
            .get(&uid)
            .map(|(_, ips)| ips.clone())
            .unwrap_or_default()
    }

    /// The sandbox configuration of `pod`.
    pub fn sandbox_config(&self, pod: &Pod, attempt: u32) -> api::PodSandboxConfig {
        spec::sandbox_config(
            pod,
            &SandboxContext {
                cgroup_root: &self.settings.cgroup_root,
                log_root: &self.settings.dirs.pod_logs(),
                dns: &self.settings.dns,
                attempt,
            },
        )
    }

    /// Makes sure the container's image is present per its pull policy; returns the image
    /// reference to run.
    pub(crate) async fn ensure_image(
        &self,
        pod: &Pod,
        container: &Container,
    ) -> Result<String, StartBlocked> {
        let image = container.image.clone().unwrap_or_default();
        if image.is_empty() {
            return Err(blocked(
                "InvalidImageName",
                "the container has no image".into(),
                Duration::from_secs(30),
            ));
        }
        let policy = container
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| default_pull_policy(&image).to_owned());
        let spec = api::ImageSpec {
            image: image.clone(),
            ..Default::default()
        };
        let present = self
            .cri
            .images
            .clone()
            .image_status(api::ImageStatusRequest {
                image: Some(spec.clone()),
                verbose: false,
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().image);
        if let Some(found) = &present
            && policy != "Always"
        {
            return Ok(found.id.clone());
        }
        if policy == "Never" {
            let message =
                format!("Container image \"{image}\" is not present with pull policy of Never");
            worker_event(self, pod, true, "ErrImageNeverPull", message.clone());
            return Err(blocked(
                "ErrImageNeverPull",
                message,
                Duration::from_secs(10),
            ));
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = format!("{uid}/pull/{}", container.name);
        let now = Instant::now();
        if let Some(remaining) = self.backoff_remaining(&key, now) {
            return Err(blocked(
                "ImagePullBackOff",
                format!("Back-off pulling image \"{image}\""),
                remaining,
            ));
        }
        worker_event(
            self,
            pod,
            false,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let mut images = self.cri.images.clone();
        let pull = images.pull_image(api::PullImageRequest {
            image: Some(spec),
            auth: None,
            sandbox_config: None,
        });
        let result = tokio::time::timeout(PULL_TIMEOUT, pull).await;
        match result {
            Ok(Ok(response)) => {
                worker_event(
                    self,
                    pod,
                    false,
                    "Pulled",
                    format!("Successfully pulled image \"{image}\""),
                );
                Ok(response.into_inner().image_ref)
            }
            Ok(Err(status)) => {
                let delay = self.backoff_fail(&key, now);
                let message = format!("Failed to pull image \"{image}\": {}", status.message());
                worker_event(self, pod, true, "Failed", message.clone());
                Err(blocked("ErrImagePull", message, delay))
            }
            Err(_) => {
                let delay = self.backoff_fail(&key, now);
                let message =
                    format!("Failed to pull image \"{image}\": no answer within {PULL_TIMEOUT:?}");
                worker_event(self, pod, true, "Failed", message.clone());
                Err(blocked("ErrImagePull", message, delay))
            }
        }
    }

    /// The container's environment and mounts; errors are kubelet's CreateContainerConfigError
    /// messages.
    pub async fn container_inputs(
        &self,
        pod: &Pod,
        container: &Container,
        observed: &Observed,
    ) -> Result<ContainerInputs, String> {
        let objects = PodObjects::fetch(&self.client, &self.tokens, pod)
            .await
            .map_err(|err| err.to_string())?;
        let services: Vec<Service> = self
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let host_ips = [self.node_ip.clone()];
        let environment = env::container_env(
            &EnvContext {
                pod,
                pod_ips: &observed.pod_ips,
                host_ips: &host_ips,
                allocatable: &self.allocatable,
                services: &services,
                objects: &objects,
            },
            container,
        )
        .map_err(|err| err.message)?;
        for warning in &environment.warnings {
            worker_event(
                self,
                pod,
                true,
                "InvalidEnvironmentVariableNames",
                warning.clone(),
            );
        }
        let volumes = self.write_volumes(pod, &objects)?;
        let mounts = volumes::container_mounts(container, &volumes, &environment)
            .map_err(|err| err.message)?;
        Ok(ContainerInputs {
            env: environment.vars,
            mounts,
        })
    }

    /// Sets up (or refreshes) the pod's volumes; a failure is recorded as a FailedMount event
    /// with kubelet's message, which is also the error.
    pub async fn prepare_volumes(&self, pod: &Pod) -> Result<(), String> {
        let objects = PodObjects::fetch(&self.client, &self.tokens, pod)
            .await
            .map_err(|err| err.to_string());
        let written = objects.and_then(|objects| self.write_volumes(pod, &objects).map(|_| ()));
        if let Err(message) = &written {
            worker_event(self, pod, true, volumes::FAILED_MOUNT, message.clone());
        }
        written
    }

    /// Writes the pod's volumes from `objects`; the error is kubelet's FailedMount message.
    fn write_volumes(
        &self,
        pod: &Pod,
        objects: &PodObjects,
    ) -> Result<volumes::PodVolumes, String> {
        volumes::setup_pod_volumes(
            &VolumeContext {
                pod,
                objects,
                allocatable: &self.allocatable,
            },
            &self.settings.dirs.pods_dir(),
            &HostMounter,
        )
        .map_err(|err| err.to_string())
    }

    /// Removes the pod's volumes (unmounting memory-backed ones first) and forgets its tokens.
    pub fn remove_volumes(&self, uid: &str) {
        self.tokens.forget_pod(uid);
        if let Err(err) =
            volumes::remove_pod_volumes(&self.settings.dirs.pods_dir(), uid, &HostMounter)
        {
            tracing::warn!(uid = %uid, "removing pod volumes: {err}");
        }
    }

    /// Runs a postStart (`grace` = 0: unbounded but for the CRI call limit) or preStop hook
    /// (bounded by `grace` seconds); the error is kubelet's event message.
    pub async fn run_hook(
        &self,
        pod: &Pod,
        container: &Container,
        id: &str,
        handler: &LifecycleHandler,
        hook: Hook,
        grace: i64,
    ) -> Result<(), String> {
        let pod_ip = self.pod_ips_cached(pod).into_iter().next();
        let target = HandlerTarget::new(
            self.cri.clone(),
            pod,
            container,
            id,
            pod_ip.unwrap_or_default(),
        );
        let run = handlers::run_lifecycle_handler(&target, handler, hook);
        let limit = Duration::from_secs(u64::try_from(grace).unwrap_or(0).max(1));
        match tokio::time::timeout(limit, run).await {
            Ok(result) => result.map_err(|err| err.message),
            Err(_) => Err(format!(
                "{} hook of container {} did not finish within {limit:?}",
                match hook {
                    Hook::PostStart => "PostStart",
                    Hook::PreStop => "PreStop",
                },
                container.name
            )),
        }
    }

    /// Starts the probe workers of a running container instance.
    pub fn start_probes(
        &self,
        pod: &Pod,
        container: &Container,
        instance: &Instance,
        pod_ip: Option<&String>,
    ) -> ContainerProbes {
        let target = HandlerTarget::new(
            self.cri.clone(),
            pod,
            container,
            instance.id.clone(),
            pod_ip.cloned().unwrap_or_default(),
        );
        ContainerProbes::start(
            target,
            pod.metadata.uid.clone().unwrap_or_default(),
            probes::instant_from_unix_nanos(instance.started_at),
            self.probe_events.clone(),
        )
    }

    /// Time left in `key`'s back-off.
    pub fn backoff_remaining(&self, key: &str, now: Instant) -> Option<Duration> {
        lock(&self.backoff).remaining(key, now)
    }

    /// The current back-off delay of `key` (for messages).
    pub fn backoff_delay(&self, key: &str) -> Duration {
        lock(&self.backoff)
            .delay(key)
            .unwrap_or(super::backoff::INITIAL)
    }

    /// Records a failure of `key`; returns its new delay.
    pub fn backoff_fail(&self, key: &str, now: Instant) -> Duration {
        lock(&self.backoff).fail(key, now)
    }

    /// Forgets the back-offs of a removed pod.
    pub fn forget_backoff(&self, uid: &str) {
        lock(&self.backoff).forget_prefix(&format!("{uid}/"));
        lock(&self.pod_ips).remove(uid);
    }

    /// Publishes a pod's containers for the kubelet API.
    pub fn set_view(&self, namespace: &str, name: &str, view: PodView) {
        lock(&self.views).insert((namespace.to_owned(), name.to_owned()), view);
    }

    /// Drops a pod from the kubelet API's view.
    pub fn forget_view(&self, namespace: &str, name: &str) {
        lock(&self.views).remove(&(namespace.to_owned(), name.to_owned()));
    }
}

fn worker_event(runtime: &Runtime, pod: &Pod, warning: bool, reason: &str, message: String) {
    super::events::record(
        &runtime.client,
        &runtime.node_name,
        pod,
        if warning {
            super::events::Kind::Warning
        } else {
            super::events::Kind::Normal
        },
        reason,
        message,
    );
}

/// The pull policy an image gets when the pod does not say: Always for `:latest` or no tag.
pub fn default_pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last.split_once(':') {
        Some((_, "latest")) | None if !image.contains('@') => "Always",
        _ => "IfNotPresent",
    }
}

impl ContainerLocator for Runtime {
    fn container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<String, LocateError> {
        let views = lock(&self.views);
        let view = views
            .get(&(namespace.to_owned(), pod.to_owned()))
            .ok_or_else(|| LocateError::PodNotFound {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
            })?;
        let found =
            view.containers
                .get(container)
                .ok_or_else(|| LocateError::ContainerNotFound {
                    pod: pod.to_owned(),
                    container: container.to_owned(),
                })?;
        if previous {
            return found
                .previous
                .clone()
                .ok_or_else(|| LocateError::NoPrevious {
                    pod: pod.to_owned(),
                    container: container.to_owned(),
                });
        }
        found.current.clone().ok_or_else(|| LocateError::Waiting {
            pod: pod.to_owned(),
            container: container.to_owned(),
            reason: found.waiting.clone(),
        })
    }

    fn sandbox(&self, namespace: &str, pod: &str) -> Result<String, LocateError> {
        lock(&self.views)
            .get(&(namespace.to_owned(), pod.to_owned()))
            .and_then(|view| view.sandbox.clone())
            .ok_or_else(|| LocateError::PodNotFound {
                namespace: namespace.to_owned(),
                pod: pod.to_owned(),
            })
    }
}

/// One running pod worker; it ends with the manager (the pods run on).
struct WorkerHandle {
    pod: watch::Sender<Option<Arc<Pod>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs the pods bound to this node until the task is dropped.
pub async fn run(runtime: Arc<Runtime>) {
    let _services = crate::AbortOnDrop(tokio::spawn(watch_services(runtime.clone())));
    let _probes = crate::AbortOnDrop(tokio::spawn(route_probe_events(runtime.clone())));
    let pods: Api<Pod> = Api::all(runtime.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", runtime.node_name));
    let mut events = watcher::watcher(pods, config).boxed();
    let mut workers: HashMap<String, WorkerHandle> = HashMap::new();
    let mut listing: Vec<String> = Vec::new();
    let mut synced = false;
    let mut relist = tokio::time::interval(RELIST);
    relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen_states: HashMap<String, i32> = HashMap::new();
    let mut backoff = Duration::from_millis(500);
    loop {
        tokio::select! {
            event = events.next() => {
                match event {
                    Some(Ok(Event::Apply(pod) | Event::InitApply(pod))) => {
                        if let Some(uid) = pod.metadata.uid.clone() {
                            listing.push(uid.clone());
                            dispatch(&runtime, &mut workers, uid, Some(Arc::new(pod)));
                        }
                        backoff = Duration::from_millis(500);
                    }
                    Some(Ok(Event::Delete(pod))) => {
                        if let Some(uid) = pod.metadata.uid.clone() {
                            dispatch(&runtime, &mut workers, uid, None);
                        }
                    }
                    Some(Ok(Event::Init)) => listing.clear(),
                    Some(Ok(Event::InitDone)) => {
                        // Pods that vanished while the watch was down get torn down too.
                        let known: std::collections::HashSet<&String> = listing.iter().collect();
                        let gone: Vec<String> = workers
                            .keys()
                            .filter(|uid| !known.contains(uid))
                            .cloned()
                            .collect();
                        for uid in gone {
                            dispatch(&runtime, &mut workers, uid, None);
                        }
                        if !synced {
                            synced = true;
                            housekeeping.reset_immediately();
                        }
                    }
                    Some(Err(err)) => {
                        tracing::warn!("watching the node's pods: {err}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                    None => return,
                }
            }
            _ = relist.tick() => {
                relist_containers(&runtime, &mut seen_states).await;
                workers.retain(|_, worker| !worker.task.is_finished());
            }
            _ = housekeeping.tick(), if synced => {
                let known: Vec<String> = workers.keys().cloned().collect();
                remove_orphans(&runtime, &known).await;
            }
        }
    }
}

/// Keeps the Service cache (for service environment variables) up to date.
async fn watch_services(runtime: Arc<Runtime>) {
    let Some(writer) = lock(&runtime.services_writer).take() else {
        return;
    };
    let services: Api<Service> = Api::all(runtime.client.clone());
    watcher::watcher(services, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .for_each(|event| async move {
            if let Err(err) = event {
                tracing::debug!("watching services: {err}");
            }
        })
        .await;
}

/// Hands every probe result to the worker of its pod.
async fn route_probe_events(runtime: Arc<Runtime>) {
    let Some(mut receiver) = lock(&runtime.probe_receiver).take() else {
        return;
    };
    while let Some(event) = receiver.recv().await {
        let uid = match &event {
            ProbeEvent::Changed { pod_uid, .. } | ProbeEvent::Unhealthy { pod_uid, .. } => {
                pod_uid.clone()
            }
        };
        if let Some(sender) = lock(&runtime.wakes).get(&uid) {
            let _ = sender.send(Wake::Probe(event));
        }
    }
}

/// Hands `pod` (None: deleted) to its worker, starting one if needed.
fn dispatch(
    runtime: &Arc<Runtime>,
    workers: &mut HashMap<String, WorkerHandle>,
    uid: String,
    pod: Option<Arc<Pod>>,
) {
    if let Some(worker) = workers.get(&uid)
        && !worker.task.is_finished()
    {
        let _ = worker.pod.send(pod);
        return;
    }
    let Some(pod) = pod else {
        return;
    };
    let (sender, receiver) = watch::channel(Some(pod));
    let (wake_sender, wake_receiver) = mpsc::unbounded_channel();
    lock(&runtime.wakes).insert(uid.clone(), wake_sender);
    let task = tokio::spawn({
        let runtime = runtime.clone();
        let uid = uid.clone();
        async move {
            worker::run(runtime.clone(), receiver, wake_receiver).await;
            lock(&runtime.wakes).remove(&uid);
        }
    });
    workers.insert(uid, WorkerHandle { pod: sender, task });
}

/// Lists all our containers once and wakes the workers of pods whose containers changed state.
async fn relist_containers(runtime: &Runtime, seen: &mut HashMap<String, i32>) {
    let listed = runtime
        .cri
        .runtime
        .clone()
        .list_containers(api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                label_selector: [(LABEL_MANAGED.to_owned(), "true".to_owned())].into(),
                ..Default::default()
            }),
        })
        .await;
    let Ok(listed) = listed else {
        return;
    };
    let mut now_seen = HashMap::new();
    let mut changed_pods = std::collections::HashSet::new();
    for container in listed.into_inner().containers {
        if seen.get(&container.id) != Some(&container.state)
            && let Some(uid) = container.labels.get(LABEL_POD_UID)
        {
            changed_pods.insert(uid.clone());
        }
        now_seen.insert(container.id, container.state);
    }
    *seen = now_seen;
    let wakes = lock(&runtime.wakes);
    for uid in changed_pods {
        if let Some(sender) = wakes.get(&uid) {
            let _ = sender.send(Wake::Relist);
        }
    }
}

/// Tears down sandboxes of pods this node no longer has (deleted while the agent was away).
async fn remove_orphans(runtime: &Arc<Runtime>, known: &[String]) {
    let Ok(response) = runtime
        .cri
        .runtime
        .clone()
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                label_selector: [(LABEL_MANAGED.to_owned(), "true".to_owned())].into(),
                ..Default::default()
            }),
        })
        .await
    else {
        return;
    };
    let orphans: std::collections::HashSet<String> = response
        .into_inner()
        .items
        .into_iter()
        .filter_map(|s| s.labels.get(LABEL_POD_UID).cloned())
        .filter(|uid| !known.contains(uid))
        .collect();
    for uid in orphans {
        tracing::info!(uid = %uid, "removing the containers of a pod that no longer exists");
        worker::teardown(runtime, &uid, 0).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_defaults() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("flotilla/testapp:v1"), "IfNotPresent");
        assert_eq!(default_pull_policy("localhost:5000/app"), "Always");
        assert_eq!(default_pull_policy("app@sha256:abc"), "IfNotPresent");
    }
}
