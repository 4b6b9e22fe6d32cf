//! The pod status the agent reports, computed from what containerd shows (sandboxes and container
//! instances) and what the agent knows (why a container waits, probe results). Pure functions,
//! following kubelet's rules for phase, conditions and container states.

use std::collections::HashMap;

use k8s_openapi::{
    api::core::v1::{
        ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
        ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};

/// The life state of one container instance in containerd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceState {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// containerd cannot tell.
    Unknown,
}

/// One container instance (one attempt) as containerd reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// CRI container id.
    pub id: String,
    /// The pod's container name.
    pub name: String,
    /// Attempt = restart count of this instance.
    pub attempt: u32,
    /// State.
    pub state: InstanceState,
    /// Creation time (ns since the epoch).
    pub created_at: i64,
    /// Start time (ns), 0 if never started.
    pub started_at: i64,
    /// Finish time (ns), 0 if not finished.
    pub finished_at: i64,
    /// Exit code when exited.
    pub exit_code: i32,
    /// containerd's reason (e.g. OOMKilled, Completed, Error).
    pub reason: String,
    /// containerd's message.
    pub message: String,
    /// The image reference the container runs.
    pub image_ref: String,
}

impl Instance {
    /// Whether it exited with 0.
    pub fn succeeded(&self) -> bool {
        self.state == InstanceState::Exited && self.exit_code == 0
    }
}

/// What the agent observed of one pod.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Whether the pod's sandbox is ready (network set up).
    pub sandbox_ready: bool,
    /// The pod's IPs (first is the primary).
    pub pod_ips: Vec<String>,
    /// Every instance of every container, any order.
    pub instances: Vec<Instance>,
    /// Why a container is waiting (reason, message), e.g. ImagePullBackOff or CrashLoopBackOff.
    pub waiting: HashMap<String, (String, String)>,
    /// Readiness per container from its readiness probe (containers without one are ready when
    /// running).
    pub ready: HashMap<String, bool>,
    /// Startup probe passed per container (containers without one are started when running).
    pub started: HashMap<String, bool>,
    /// The node's IP.
    pub host_ip: String,
    /// When the agent first saw the pod (kept across updates).
    pub start_time: Option<Timestamp>,
}

impl Observed {
    /// The latest instance of `name` (highest attempt, then newest).
    pub fn latest(&self, name: &str) -> Option<&Instance> {
        self.instances
            .iter()
            .filter(|i| i.name == name)
            .max_by_key(|i| (i.attempt, i.created_at))
    }

    /// The instance before the latest one of `name`.
    pub fn previous(&self, name: &str) -> Option<&Instance> {
        let latest = self.latest(name)?;
        self.instances
            .iter()
            .filter(|i| i.name == name && i.id != latest.id)
            .max_by_key(|i| (i.attempt, i.created_at))
    }
}

fn time(ns: i64) -> Option<Time> {
    (ns > 0)
        .then(|| Timestamp::from_nanosecond(i128::from(ns)).ok())
        .flatten()
        .map(Time)
}

fn terminated(instance: &Instance) -> ContainerState {
    let reason = if !instance.reason.is_empty() {
        instance.reason.clone()
    } else if instance.exit_code == 0 {
        "Completed".to_owned()
    } else {
        "Error".to_owned()
    };
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: instance.exit_code,
            reason: Some(reason),
            message: (!instance.message.is_empty()).then(|| instance.message.clone()),
            started_at: time(instance.started_at),
            finished_at: time(instance.finished_at),
            container_id: Some(format!("containerd://{}", instance.id)),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message: (!message.is_empty()).then(|| message.to_owned()),
        }),
        ..Default::default()
    }
}

/// The status of one container from its instances.
pub fn container_status(
    name: &str,
    image: &str,
    observed: &Observed,
    has_readiness_probe: bool,
    has_startup_probe: bool,
) -> ContainerStatus {
    let latest = observed.latest(name);
    let override_waiting = observed.waiting.get(name);
    let mut status = ContainerStatus {
        name: name.to_owned(),
        image: image.to_owned(),
        image_id: latest.map(|i| i.image_ref.clone()).unwrap_or_default(),
        restart_count: latest.map_or(0, |i| i32::try_from(i.attempt).unwrap_or(i32::MAX)),
        container_id: latest.map(|i| format!("containerd://{}", i.id)),
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    let (state, last) = match (latest, override_waiting) {
        (Some(instance), _) if instance.state == InstanceState::Running => {
            let started =
                !has_startup_probe || observed.started.get(name).copied().unwrap_or(false);
            status.started = Some(started);
            status.ready = started
                && (!has_readiness_probe || observed.ready.get(name).copied().unwrap_or(false));
            (
                ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: time(instance.started_at),
                    }),
                    ..Default::default()
                },
                observed.previous(name).map(terminated),
            )
        }
        (Some(instance), Some((reason, message))) if instance.state == InstanceState::Exited => {
            (waiting(reason, message), Some(terminated(instance)))
        }
        (Some(instance), None) if instance.state == InstanceState::Exited => (
            terminated(instance),
            observed.previous(name).map(terminated),
        ),
        (_, Some((reason, message))) => (
            waiting(reason, message),
            latest.and_then(|_| observed.previous(name)).map(terminated),
        ),
        _ => (waiting("ContainerCreating", ""), None),
    };
    status.state = Some(state);
    status.last_state = last;
    status
}

fn condition(kind: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: kind.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: (!ok).then(|| reason.map(str::to_owned)).flatten(),
        message: (!ok).then_some(message).flatten(),
        ..Default::default()
    }
}

/// The pod's status: phase, conditions, IPs and container statuses. Condition transition times
/// are carried over from `previous` when the condition did not change.
pub fn pod_status(pod: &Pod, observed: &Observed, previous: Option<&PodStatus>) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let init_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            container_status(
                &c.name,
                c.image.as_deref().unwrap_or_default(),
                observed,
                false,
                false,
            )
        })
        .collect();
    let statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            container_status(
                &c.name,
                c.image.as_deref().unwrap_or_default(),
                observed,
                c.readiness_probe.is_some(),
                c.startup_probe.is_some(),
            )
        })
        .collect();
    let initialized = spec.init_containers.iter().flatten().all(|c| {
        observed
            .instances
            .iter()
            .any(|i| i.name == c.name && i.succeeded())
    });
    let phase = phase(&spec.containers, observed, initialized, restart_policy);
    let containers_ready = phase == "Running" && statuses.iter().all(|s| s.ready);
    let not_ready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let not_ready_message = format!("containers with unready status: [{}]", not_ready.join(" "));
    let terminal = matches!(phase, "Succeeded" | "Failed");
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            observed.sandbox_ready && !terminal,
            None,
            None,
        ),
        condition(
            "Initialized",
            initialized,
            Some("ContainersNotInitialized"),
            Some(format!(
                "containers with incomplete status: [{}]",
                spec.init_containers
                    .iter()
                    .flatten()
                    .filter(|c| !observed
                        .instances
                        .iter()
                        .any(|i| i.name == c.name && i.succeeded()))
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
        ),
        condition(
            "Ready",
            containers_ready,
            Some(if terminal {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            }),
            (!terminal).then(|| not_ready_message.clone()),
        ),
        condition(
            "ContainersReady",
            containers_ready,
            Some(if terminal {
                "PodCompleted"
            } else {
                "ContainersNotReady"
            }),
            (!terminal).then_some(not_ready_message),
        ),
    ];
    let now = Time(Timestamp::now());
    let old_conditions = previous
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for condition in &mut conditions {
        condition.last_transition_time = Some(
            old_conditions
                .iter()
                .find(|old| old.type_ == condition.type_ && old.status == condition.status)
                .and_then(|old| old.last_transition_time.clone())
                .unwrap_or_else(|| now.clone()),
        );
    }
    // PodScheduled is the scheduler's; keep it.
    conditions.extend(
        old_conditions
            .into_iter()
            .filter(|c| c.type_ == "PodScheduled"),
    );
    let pod_ips: Vec<PodIP> = observed
        .pod_ips
        .iter()
        .map(|ip| PodIP { ip: ip.clone() })
        .collect();
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(conditions),
        host_ip: (!observed.host_ip.is_empty()).then(|| observed.host_ip.clone()),
        host_ips: (!observed.host_ip.is_empty()).then(|| {
            vec![k8s_openapi::api::core::v1::HostIP {
                ip: observed.host_ip.clone(),
            }]
        }),
        pod_ip: observed.pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty()).then_some(pod_ips),
        start_time: observed
            .start_time
            .map(Time)
            .or_else(|| previous.and_then(|s| s.start_time.clone())),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        qos_class: previous.and_then(|s| s.qos_class.clone()),
        ..Default::default()
    }
}

/// The pod phase as kubelet's getPhase computes it.
fn phase(
    containers: &[k8s_openapi::api::core::v1::Container],
    observed: &Observed,
    initialized: bool,
    restart_policy: &str,
) -> &'static str {
    if !initialized {
        // A failed init container with restartPolicy Never fails the pod.
        let init_failed = restart_policy == "Never"
            && observed.instances.iter().any(|i| {
                i.state == InstanceState::Exited
                    && i.exit_code != 0
                    && observed_is_init(observed, &i.name, containers)
            });
        return if init_failed { "Failed" } else { "Pending" };
    }
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for container in containers {
        match observed.latest(&container.name) {
            Some(i) if i.state == InstanceState::Running => running += 1,
            Some(i) if i.state == InstanceState::Exited => {
                stopped += 1;
                if i.exit_code == 0 {
                    succeeded += 1;
                }
            }
            _ => waiting += 1,
        }
    }
    if waiting > 0 {
        // A container that ran before and waits to restart counts as running, as kubelet's
        // lastTerminationState rule does.
        let restarting = containers
            .iter()
            .filter(|c| observed.latest(&c.name).is_some())
            .count();
        if restarting == 0 || waiting > restarting {
            return "Pending";
        }
    }
    if running > 0 || waiting > 0 {
        return "Running";
    }
    if stopped == containers.len() && stopped > 0 {
        return match restart_policy {
            "Always" => "Running",
            "OnFailure" if succeeded < stopped => "Running",
            _ if succeeded == stopped => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

fn observed_is_init(
    _observed: &Observed,
    name: &str,
    containers: &[k8s_openapi::api::core::v1::Container],
) -> bool {
    !containers.iter().any(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(restart: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "d", "uid": "u"},
            "spec": {"restartPolicy": restart, "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]},
        }))
        .unwrap()
    }

    fn instance(name: &str, attempt: u32, state: InstanceState, exit: i32) -> Instance {
        Instance {
            id: format!("{name}{attempt}"),
            name: name.into(),
            attempt,
            state,
            created_at: i64::from(attempt) + 1,
            started_at: 1_700_000_000_000_000_000,
            finished_at: if state == InstanceState::Exited {
                1_700_000_001_000_000_000
            } else {
                0
            },
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            image_ref: "sha256:x".into(),
        }
    }

    #[test]
    fn running_and_ready() {
        let observed = Observed {
            sandbox_ready: true,
            pod_ips: vec!["10.244.1.5".into()],
            instances: vec![
                instance("a", 0, InstanceState::Running, 0),
                instance("b", 0, InstanceState::Running, 0),
            ],
            host_ip: "192.168.77.11".into(),
            ..Default::default()
        };
        let status = pod_status(&pod("Always"), &observed, None);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.1.5"));
        let ready = status
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
    }

    #[test]
    fn crash_loop_shows_waiting_and_last_state() {
        let mut observed = Observed {
            sandbox_ready: true,
            instances: vec![
                instance("a", 0, InstanceState::Exited, 1),
                instance("a", 1, InstanceState::Exited, 1),
                instance("b", 0, InstanceState::Running, 0),
            ],
            ..Default::default()
        };
        observed.waiting.insert(
            "a".into(),
            ("CrashLoopBackOff".into(), "back-off 20s".into()),
        );
        let status = pod_status(&pod("Always"), &observed, None);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let a = &status.container_statuses.unwrap()[0];
        assert_eq!(a.restart_count, 1);
        assert_eq!(
            a.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        let last = a.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.exit_code, 1);
        assert_eq!(last.reason.as_deref(), Some("Error"));
    }

    #[test]
    fn phases() {
        let done = Observed {
            instances: vec![
                instance("a", 0, InstanceState::Exited, 0),
                instance("b", 0, InstanceState::Exited, 0),
            ],
            ..Default::default()
        };
        assert_eq!(
            pod_status(&pod("Never"), &done, None).phase.as_deref(),
            Some("Succeeded")
        );
        let failed = Observed {
            instances: vec![
                instance("a", 0, InstanceState::Exited, 0),
                instance("b", 0, InstanceState::Exited, 2),
            ],
            ..Default::default()
        };
        assert_eq!(
            pod_status(&pod("Never"), &failed, None).phase.as_deref(),
            Some("Failed")
        );
        assert_eq!(
            pod_status(&pod("OnFailure"), &failed, None)
                .phase
                .as_deref(),
            Some("Running")
        );
        let fresh = Observed::default();
        assert_eq!(
            pod_status(&pod("Always"), &fresh, None).phase.as_deref(),
            Some("Pending")
        );
    }
}
