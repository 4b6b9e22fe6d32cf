//! Probe workers with kubelet's semantics, per running container.
//!
//! The decisions live in [`ProbeState`], a plain struct (threshold counting, initial values,
//! startup gating, holding liveness after a failure) tested without timers; the loop around it
//! only ticks, runs the action ([`super::handlers::run_probe`]) and reports.
//!
//! Upstream behaviour kept here:
//! - readiness starts not ready, liveness starts healthy, startup starts unknown (not started);
//! - nothing is probed before `initialDelaySeconds` have passed since the container started;
//! - while a startup probe has not succeeded, liveness and readiness are not probed; once it
//!   has, the startup probe stops;
//! - a result is reported only after `successThreshold` / `failureThreshold` equal results in a
//!   row, and only when it changes;
//! - after a liveness or startup failure is reported the worker holds (no more probes) until the
//!   container is replaced, i.e. until the caller starts new workers for the new container;
//! - a probe that could not be run (no pod IP, container gone) is thrown away, not counted.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Probe;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};

use super::handlers::{self, HandlerError, HandlerTarget, Outcome};

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// startupProbe: gates the others until it succeeds; failure means restart.
    Startup,
    /// livenessProbe: failure means restart.
    Liveness,
    /// readinessProbe: whether the container is ready (pod Ready, endpoints).
    Readiness,
}

impl ProbeKind {
    /// The name kubelet uses in events ("Liveness probe failed: ...").
    pub fn name(self) -> &'static str {
        match self {
            Self::Startup => "Startup",
            Self::Liveness => "Liveness",
            Self::Readiness => "Readiness",
        }
    }
}

/// A probe's timing and thresholds, with the API defaults for unset (or non-positive) fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeSettings {
    /// initialDelaySeconds (0).
    pub initial_delay: Duration,
    /// periodSeconds (10).
    pub period: Duration,
    /// timeoutSeconds (1).
    pub timeout: Duration,
    /// successThreshold (1).
    pub success_threshold: u32,
    /// failureThreshold (3).
    pub failure_threshold: u32,
}

impl ProbeSettings {
    /// The settings of `probe`.
    pub fn from_probe(probe: &Probe) -> Self {
        let positive = |value: Option<i32>, default: u32| {
            value
                .and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Self {
            initial_delay: Duration::from_secs(
                probe
                    .initial_delay_seconds
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0),
            ),
            period: Duration::from_secs(u64::from(positive(probe.period_seconds, 10))),
            timeout: Duration::from_secs(u64::from(positive(probe.timeout_seconds, 1))),
            success_threshold: positive(probe.success_threshold, 1),
            failure_threshold: positive(probe.failure_threshold, 3),
        }
    }
}

/// The decision part of one probe worker.
#[derive(Clone, Debug)]
pub struct ProbeState {
    kind: ProbeKind,
    settings: ProbeSettings,
    last: Option<bool>,
    run: u32,
    result: Option<bool>,
    on_hold: bool,
}

impl ProbeState {
    /// A fresh worker's state for a new container.
    pub fn new(kind: ProbeKind, settings: ProbeSettings) -> Self {
        let result = match kind {
            ProbeKind::Readiness => Some(false),
            ProbeKind::Liveness => Some(true),
            ProbeKind::Startup => None,
        };
        Self {
            kind,
            settings,
            last: None,
            run: 0,
            result,
            on_hold: false,
        }
    }

    /// The reported result: `Some(true)` healthy, `Some(false)` not, `None` unknown (startup
    /// before its first verdict).
    pub fn result(&self) -> Option<bool> {
        self.result
    }

    /// Whether the worker holds after a reported liveness/startup failure.
    pub fn on_hold(&self) -> bool {
        self.on_hold
    }

    /// Whether to probe now, `running_for` after the container started, `started` telling
    /// whether the container counts as started (startup probe succeeded, or none).
    pub fn should_probe(&self, running_for: Duration, started: bool) -> bool {
        if self.on_hold {
            return false;
        }
        // kubelet compares whole seconds.
        if Duration::from_secs(running_for.as_secs()) < self.settings.initial_delay {
            return false;
        }
        match self.kind {
            ProbeKind::Startup => !started,
            ProbeKind::Liveness | ProbeKind::Readiness => started,
        }
    }

    /// Records one probe's verdict; returns the new reported result when it changed.
    pub fn record(&mut self, healthy: bool) -> Option<bool> {
        if self.last == Some(healthy) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(healthy);
            self.run = 1;
        }
        let threshold = if healthy {
            self.settings.success_threshold
        } else {
            self.settings.failure_threshold
        };
        if self.run < threshold {
            return None;
        }
        let changed = self.result != Some(healthy);
        self.result = Some(healthy);
        if !healthy && self.kind != ProbeKind::Readiness {
            // The container will be restarted: stop probing it (kubelet avoids exec into a
            // container being stopped).
            self.on_hold = true;
            self.run = 0;
        }
        changed.then_some(healthy)
    }
}

/// What probe workers report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeEvent {
    /// A probe's reported result changed. Liveness/startup `healthy: false` means the caller
    /// restarts the container (per its restartPolicy); readiness drives the Ready condition;
    /// startup `healthy: true` means the container counts as started.
    Changed {
        /// The pod's uid.
        pod_uid: String,
        /// The container's name.
        container_name: String,
        /// The CRI container id the result is about.
        container_id: String,
        /// Which probe.
        kind: ProbeKind,
        /// The new result.
        healthy: bool,
        /// The last probe's output (for failures: what kubelet's event says).
        message: String,
    },
    /// One probe failed (or warned); kubelet records a warning event for each, e.g. reason
    /// `Unhealthy`, message `Liveness probe failed: HTTP probe failed with statuscode: 500`.
    Unhealthy {
        /// The pod's uid.
        pod_uid: String,
        /// The container's name.
        container_name: String,
        /// Which probe.
        kind: ProbeKind,
        /// The event reason: `Unhealthy`, or `ProbeWarning` for a healthy result with a
        /// warning (a redirect to another host).
        reason: &'static str,
        /// The event message.
        message: String,
    },
}

/// Runs a probe's action once; the real one is [`handlers::run_probe`].
pub trait ProbeAction: Send + Sync + 'static {
    /// One attempt.
    fn run(&self) -> BoxFuture<'_, Result<Outcome, HandlerError>>;
}

/// A probe of a real container, run through [`handlers::run_probe`].
struct ContainerProbe {
    target: Arc<HandlerTarget>,
    probe: Probe,
}

impl ProbeAction for ContainerProbe {
    fn run(&self) -> BoxFuture<'_, Result<Outcome, HandlerError>> {
        Box::pin(handlers::run_probe(&self.target, &self.probe))
    }
}

/// The probe workers of one running container; dropping it stops them.
#[derive(Debug)]
pub struct ContainerProbes {
    tasks: Vec<JoinHandle<()>>,
    started: watch::Receiver<bool>,
}

/// Identifies the container in reports.
#[derive(Clone, Debug)]
struct Identity {
    pod_uid: String,
    container_name: String,
    container_id: String,
}

impl ContainerProbes {
    /// Starts the startup, liveness and readiness workers `target.container` declares.
    /// `started_at` is when the container started (see [`instant_from_unix_nanos`]); events
    /// go to `events`. A container without a startup probe counts as started at once; one
    /// without a readiness probe gets no readiness reports (the caller treats it as ready when
    /// started, as kubelet). Spawns tokio tasks, so it must be called inside a runtime.
    pub fn start(
        target: HandlerTarget,
        pod_uid: impl Into<String>,
        started_at: Instant,
        events: mpsc::Sender<ProbeEvent>,
    ) -> Self {
        let identity = Identity {
            pod_uid: pod_uid.into(),
            container_name: target.container.name.clone(),
            container_id: target.container_id.clone(),
        };
        let target = Arc::new(target);
        let probes = [
            (ProbeKind::Startup, target.container.startup_probe.clone()),
            (ProbeKind::Liveness, target.container.liveness_probe.clone()),
            (
                ProbeKind::Readiness,
                target.container.readiness_probe.clone(),
            ),
        ];
        let actions = probes.into_iter().filter_map(|(kind, probe)| {
            probe.map(|probe| {
                let settings = ProbeSettings::from_probe(&probe);
                let action: Arc<dyn ProbeAction> = Arc::new(ContainerProbe {
                    target: target.clone(),
                    probe,
                });
                (kind, settings, action)
            })
        });
        Self::start_with(identity, actions.collect(), started_at, events)
    }

    fn start_with(
        identity: Identity,
        actions: Vec<(ProbeKind, ProbeSettings, Arc<dyn ProbeAction>)>,
        started_at: Instant,
        events: mpsc::Sender<ProbeEvent>,
    ) -> Self {
        let has_startup = actions
            .iter()
            .any(|(kind, _, _)| *kind == ProbeKind::Startup);
        let (started_tx, started) = watch::channel(!has_startup);
        let started_tx = Arc::new(started_tx);
        let tasks = actions
            .into_iter()
            .map(|(kind, settings, action)| {
                tokio::spawn(worker(
                    kind,
                    settings,
                    action,
                    identity.clone(),
                    started_at,
                    started_tx.clone(),
                    events.clone(),
                ))
            })
            .collect();
        Self { tasks, started }
    }

    /// Whether the container counts as started (its startup probe succeeded, or it has none).
    pub fn started(&self) -> bool {
        *self.started.borrow()
    }
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A tokio `Instant` for a CRI timestamp (nanoseconds since the Unix epoch, as
/// `ContainerStatus.started_at`); a time in the future counts as now.
pub fn instant_from_unix_nanos(nanos: i64) -> Instant {
    let now = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let then = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    now.checked_sub(wall.saturating_sub(then)).unwrap_or(now)
}

async fn worker(
    kind: ProbeKind,
    settings: ProbeSettings,
    action: Arc<dyn ProbeAction>,
    identity: Identity,
    started_at: Instant,
    started_tx: Arc<watch::Sender<bool>>,
    events: mpsc::Sender<ProbeEvent>,
) {
    let mut state = ProbeState::new(kind, settings);
    let mut started = started_tx.subscribe();
    let mut ticker = tokio::time::interval(settings.period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        // Probe on every tick; gated probes also wake as soon as the container counts as
        // started, so readiness does not wait a whole period after the startup probe.
        tokio::select! {
            _ = ticker.tick() => {}
            changed = started.changed(), if kind != ProbeKind::Startup && !*started.borrow() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let is_started = *started.borrow_and_update();
        if !state.should_probe(started_at.elapsed(), is_started) {
            continue;
        }
        let outcome = match action.run().await {
            Ok(outcome) => outcome,
            Err(err) => {
                tracing::debug!(
                    pod_uid = identity.pod_uid,
                    container = identity.container_name,
                    probe = kind.name(),
                    "probe errored, result ignored: {err}"
                );
                continue;
            }
        };
        let healthy = outcome.healthy();
        if !healthy || outcome.result == handlers::ProbeResult::Warning {
            let (reason, verb) = if healthy {
                ("ProbeWarning", "warning")
            } else {
                ("Unhealthy", "failed")
            };
            let event = ProbeEvent::Unhealthy {
                pod_uid: identity.pod_uid.clone(),
                container_name: identity.container_name.clone(),
                kind,
                reason,
                message: format!("{} probe {verb}: {}", kind.name(), outcome.output),
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
        if let Some(result) = state.record(healthy) {
            if kind == ProbeKind::Startup && result {
                started_tx.send_replace(true);
            }
            let event = ProbeEvent::Changed {
                pod_uid: identity.pod_uid.clone(),
                container_name: identity.container_name.clone(),
                container_id: identity.container_id.clone(),
                kind,
                healthy: result,
                message: outcome.output,
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::pods::handlers::ProbeResult;

    fn settings(success: u32, failure: u32) -> ProbeSettings {
        ProbeSettings {
            initial_delay: Duration::ZERO,
            period: Duration::from_millis(20),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn defaults_follow_the_api() {
        let s = ProbeSettings::from_probe(&Probe::default());
        assert_eq!(s.period, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!((s.success_threshold, s.failure_threshold), (1, 3));
        assert_eq!(s.initial_delay, Duration::ZERO);
        let s = ProbeSettings::from_probe(&Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(2),
            failure_threshold: Some(1),
            ..Probe::default()
        });
        assert_eq!(
            (s.initial_delay, s.period, s.failure_threshold),
            (Duration::from_secs(5), Duration::from_secs(2), 1)
        );
    }

    #[test]
    fn initial_values() {
        assert_eq!(
            ProbeState::new(ProbeKind::Readiness, settings(1, 3)).result(),
            Some(false)
        );
        assert_eq!(
            ProbeState::new(ProbeKind::Liveness, settings(1, 3)).result(),
            Some(true)
        );
        assert_eq!(
            ProbeState::new(ProbeKind::Startup, settings(1, 3)).result(),
            None
        );
    }

    #[test]
    fn readiness_thresholds() {
        let mut state = ProbeState::new(ProbeKind::Readiness, settings(2, 3));
        assert_eq!(
            state.record(true),
            None,
            "one success is below successThreshold 2"
        );
        assert_eq!(state.record(true), Some(true));
        assert_eq!(state.record(true), None, "no change, no report");
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(true), None, "a success resets the failure run");
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(false), Some(false));
        assert!(!state.on_hold(), "readiness keeps probing");
        assert_eq!(state.record(true), None);
        assert_eq!(state.record(true), Some(true));
    }

    #[test]
    fn liveness_failure_holds() {
        let mut state = ProbeState::new(ProbeKind::Liveness, settings(1, 3));
        assert_eq!(state.record(true), None, "already healthy");
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(false), None);
        assert_eq!(state.record(false), Some(false));
        assert!(state.on_hold());
        assert!(!state.should_probe(Duration::from_secs(100), true));
    }

    #[test]
    fn gating_and_initial_delay() {
        let mut with_delay = settings(1, 3);
        with_delay.initial_delay = Duration::from_secs(5);
        let liveness = ProbeState::new(ProbeKind::Liveness, with_delay);
        assert!(!liveness.should_probe(Duration::from_millis(4999), true));
        assert!(liveness.should_probe(Duration::from_secs(5), true));
        assert!(
            !liveness.should_probe(Duration::from_secs(6), false),
            "gated by startup"
        );
        let readiness = ProbeState::new(ProbeKind::Readiness, settings(1, 3));
        assert!(!readiness.should_probe(Duration::ZERO, false));
        assert!(readiness.should_probe(Duration::ZERO, true));
        let mut startup = ProbeState::new(ProbeKind::Startup, settings(1, 3));
        assert!(startup.should_probe(Duration::ZERO, false));
        assert!(
            !startup.should_probe(Duration::ZERO, true),
            "startup stops once started"
        );
        assert_eq!(startup.record(true), Some(true));
        let mut failing = ProbeState::new(ProbeKind::Startup, settings(1, 2));
        assert_eq!(failing.record(false), None);
        assert_eq!(failing.record(false), Some(false));
        assert!(failing.on_hold());
    }

    /// Answers with a script of results, then keeps repeating the last one.
    struct Scripted {
        name: &'static str,
        results: Mutex<Vec<ProbeResult>>,
        calls: Mutex<u32>,
        /// Every call of every scripted action sharing it, in order.
        log: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Scripted {
        fn new(results: &[ProbeResult]) -> Arc<Self> {
            Self::logged("", results, Arc::default())
        }

        fn logged(
            name: &'static str,
            results: &[ProbeResult],
            log: Arc<Mutex<Vec<&'static str>>>,
        ) -> Arc<Self> {
            let mut results = results.to_vec();
            results.reverse();
            Arc::new(Self {
                name,
                results: Mutex::new(results),
                calls: Mutex::new(0),
                log,
            })
        }
    }

    impl ProbeAction for Scripted {
        fn run(&self) -> BoxFuture<'_, Result<Outcome, HandlerError>> {
            *self.calls.lock().unwrap() += 1;
            self.log.lock().unwrap().push(self.name);
            let mut results = self.results.lock().unwrap();
            let result = if results.len() > 1 {
                results.pop()
            } else {
                results.last().copied()
            }
            .unwrap_or(ProbeResult::Success);
            Box::pin(async move {
                Ok(Outcome {
                    result,
                    output: format!("{result:?}"),
                })
            })
        }
    }

    fn identity() -> Identity {
        Identity {
            pod_uid: "uid".into(),
            container_name: "app".into(),
            container_id: "cid".into(),
        }
    }

    async fn next_change(events: &mut mpsc::Receiver<ProbeEvent>) -> (ProbeKind, bool) {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
                .await
                .expect("a probe event within 5 s")
                .expect("workers still running");
            if let ProbeEvent::Changed { kind, healthy, .. } = event {
                return (kind, healthy);
            }
        }
    }

    #[tokio::test]
    async fn startup_gates_then_readiness_and_liveness_report() {
        use ProbeResult::{Failure, Success};
        let log: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let startup = Scripted::logged("startup", &[Failure, Failure, Success], log.clone());
        let readiness = Scripted::logged("readiness", &[Success], log.clone());
        let liveness = Scripted::logged("liveness", &[Success, Failure], log.clone());
        let (tx, mut rx) = mpsc::channel(16);
        let probes = ContainerProbes::start_with(
            identity(),
            vec![
                (
                    ProbeKind::Startup,
                    settings(1, 5),
                    startup.clone() as Arc<dyn ProbeAction>,
                ),
                (
                    ProbeKind::Readiness,
                    settings(1, 3),
                    readiness.clone() as Arc<dyn ProbeAction>,
                ),
                (
                    ProbeKind::Liveness,
                    settings(1, 2),
                    liveness.clone() as Arc<dyn ProbeAction>,
                ),
            ],
            Instant::now(),
            tx,
        );
        assert!(!probes.started());
        assert_eq!(next_change(&mut rx).await, (ProbeKind::Startup, true));
        assert!(probes.started());
        let mut seen = vec![next_change(&mut rx).await, next_change(&mut rx).await];
        seen.sort_by_key(|(kind, _)| *kind as u8);
        assert_eq!(
            seen,
            [(ProbeKind::Liveness, false), (ProbeKind::Readiness, true)]
        );
        // Liveness holds after its failure: no more calls.
        let calls = *liveness.calls.lock().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*liveness.calls.lock().unwrap(), calls);
        assert_eq!(
            *startup.calls.lock().unwrap(),
            3,
            "startup stopped after success"
        );
        let order = log.lock().unwrap().clone();
        assert_eq!(
            order[..3],
            ["startup"; 3],
            "liveness and readiness wait for startup: {order:?}"
        );

        // Dropping the handle stops the workers.
        drop(probes);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = *readiness.calls.lock().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*readiness.calls.lock().unwrap(), before);
    }

    #[tokio::test]
    async fn unhealthy_events_for_each_failure() {
        let liveness = Scripted::new(&[ProbeResult::Failure]);
        let (tx, mut rx) = mpsc::channel(16);
        let _probes = ContainerProbes::start_with(
            identity(),
            vec![(
                ProbeKind::Liveness,
                settings(1, 3),
                liveness as Arc<dyn ProbeAction>,
            )],
            Instant::now(),
            tx,
        );
        let mut unhealthy = 0;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
            match event {
                ProbeEvent::Unhealthy {
                    message, reason, ..
                } => {
                    assert_eq!(reason, "Unhealthy");
                    assert_eq!(message, "Liveness probe failed: Failure");
                    unhealthy += 1;
                }
                ProbeEvent::Changed { healthy, .. } => {
                    assert!(!healthy);
                    break;
                }
            }
        }
        assert_eq!(unhealthy, 3);
    }

    #[test]
    fn cri_timestamps_become_instants() {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let ten_ago = i64::try_from((wall - Duration::from_secs(10)).as_nanos()).unwrap();
        let elapsed = instant_from_unix_nanos(ten_ago).elapsed();
        assert!(
            elapsed >= Duration::from_secs(9) && elapsed < Duration::from_secs(12),
            "{elapsed:?}"
        );
    }
}
