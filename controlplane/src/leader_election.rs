//! Leader election on `coordination.k8s.io` Leases, as client-go's `leaderelection` package does
//! it for kube-scheduler and kube-controller-manager: every control plane campaigns for the
//! Lease, the one holding it runs the work, renews every retry period and stops the work when it
//! cannot renew within the renew deadline; the others take over once the Lease has not been
//! renewed for its duration (measured on their own clocks, from when they saw it change, so clock
//! skew between machines does not matter). Writes are updates carrying the resourceVersion that
//! was read, so two candidates can never both win one round. On shutdown the holder stops its
//! work and hands the Lease over at once (empty holder, duration 1 s).
//!
//! Unlike client-go, a holder that finds another candidate's name in the Lease stops at once
//! instead of waiting for its renew deadline, and the identity is stable for one state
//! directory, so a control plane restarted after a crash renews its own Lease instead of waiting
//! for it to expire.

use std::{future::Future, time::Duration};

use jiff::Timestamp;
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, Client, api::PostParams};
use rand::Rng as _;
use tokio::{sync::watch, time::Instant};

/// The namespace of the control plane's Leases, as upstream's components use.
pub const NAMESPACE: &str = "kube-system";

/// How client-go spreads the candidates' retries: up to this factor of the retry period.
const JITTER_FACTOR: f64 = 1.2;

/// The election's timings; the defaults are upstream's (`--leader-elect-lease-duration=15s`,
/// `--leader-elect-renew-deadline=10s`, `--leader-elect-retry-period=2s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How long a Lease not renewed stays with its holder.
    pub lease_duration: Duration,
    /// How long the holder keeps trying to renew before it stops its work.
    pub renew_deadline: Duration,
    /// How often the holder renews and the others try to take over.
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timings {
    /// Checks the timings as client-go's `NewLeaderElector` does, with its messages.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration <= self.renew_deadline {
            return Err(format!(
                "the lease duration ({:?}) must be greater than the renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(format!(
                "the renew deadline ({:?}) must be greater than {JITTER_FACTOR} times the retry \
                 period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        if self.lease_duration.as_secs() < 1 || self.retry_period.is_zero() {
            return Err(
                "the lease duration must be at least 1 s and the retry period more than 0"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// A candidate for one Lease.
pub struct Elector {
    leases: Api<Lease>,
    client: Client,
    name: String,
    identity: String,
    timings: Timings,
    observed: Option<Observed>,
}

/// The Lease as last read or written, and when its record last changed (on this clock).
#[derive(Debug, Clone)]
struct Observed {
    lease: Lease,
    since: Instant,
}

impl Observed {
    fn spec(&self) -> LeaseSpec {
        self.lease.spec.clone().unwrap_or_default()
    }
}

/// Why a leader stopped leading.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lost {
    /// Another candidate holds the Lease.
    TakenBy(String),
    /// No renewal succeeded within the renew deadline.
    NotRenewed,
    /// The work ended on its own.
    WorkEnded,
}

impl Elector {
    /// A candidate named `identity` for the Lease `kube-system/<name>`.
    pub fn new(client: Client, name: &str, identity: &str, timings: Timings) -> Self {
        Self {
            leases: Api::namespaced(client.clone(), NAMESPACE),
            client,
            name: name.to_owned(),
            identity: identity.to_owned(),
            timings,
            observed: None,
        }
    }

    /// Campaigns, runs `work` while leading and stops it when leadership is lost (then
    /// campaigns again), until `shutdown` turns true: then the work is stopped and the Lease
    /// released. `work` is started anew on each term; dropping its future must stop it.
    pub async fn run<W, F>(mut self, mut work: W, mut shutdown: watch::Receiver<bool>)
    where
        W: FnMut() -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        loop {
            if !self.campaign(&mut shutdown).await {
                return;
            }
            tracing::info!(
                lease = %self.name,
                "{} became leader of the Lease {NAMESPACE}/{}",
                self.identity,
                self.name
            );
            self.record_event("became leader").await;
            let mut term = tokio::spawn(work());
            let lost = tokio::select! {
                lost = self.lead(&mut term) => lost,
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            term.abort();
            // The work's sockets and watches must be gone before anyone else leads.
            let _ = (&mut term).await;
            match lost {
                Some(reason) => {
                    let why = match &reason {
                        Lost::TakenBy(holder) => format!("the Lease is now held by {holder}"),
                        Lost::NotRenewed => format!(
                            "it could not be renewed within the renew deadline of {:?}",
                            self.timings.renew_deadline
                        ),
                        Lost::WorkEnded => "the work it guards ended".to_owned(),
                    };
                    tracing::warn!(
                        lease = %self.name,
                        "{} stopped leading the Lease {NAMESPACE}/{}: {why}",
                        self.identity,
                        self.name
                    );
                    if reason == Lost::WorkEnded {
                        self.release().await;
                    }
                }
                None => {
                    self.release().await;
                    return;
                }
            }
        }
    }

    /// Tries every retry period (with jitter) until this candidate holds the Lease (true) or
    /// `shutdown` turns true (false).
    async fn campaign(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            if *shutdown.borrow() {
                return false;
            }
            let attempt =
                tokio::time::timeout(self.timings.renew_deadline, self.try_acquire_or_renew());
            match attempt.await {
                Ok(Ok(true)) => return true,
                Ok(Ok(false)) => {}
                Ok(Err(err)) => tracing::debug!(lease = %self.name, "campaigning: {err}"),
                Err(_) => tracing::debug!(lease = %self.name, "campaigning: timed out"),
            }
            let jitter = rand::rng().random_range(0.0..JITTER_FACTOR - 1.0);
            let wait = self.timings.retry_period.mul_f64(1.0 + jitter);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => return false,
            }
        }
    }

    /// Renews every retry period while the work runs; returns why leading ended.
    async fn lead(&mut self, term: &mut tokio::task::JoinHandle<()>) -> Option<Lost> {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.timings.retry_period) => {}
                _ = &mut *term => return Some(Lost::WorkEnded),
            }
            let deadline = renewed + self.timings.renew_deadline;
            let attempt = tokio::time::timeout_at(deadline, self.try_acquire_or_renew()).await;
            match attempt {
                Ok(Ok(true)) => renewed = Instant::now(),
                // Lost a race to write: leading ends only if someone else's name is in it.
                Ok(Ok(false)) => {
                    let holder = self
                        .observed
                        .as_ref()
                        .map(|observed| observed.spec())
                        .filter(|spec| held_by_other(spec, &self.identity))
                        .and_then(|spec| spec.holder_identity);
                    if let Some(holder) = holder {
                        return Some(Lost::TakenBy(holder));
                    }
                }
                Ok(Err(err)) => {
                    tracing::warn!(lease = %self.name, "renewing the Lease failed: {err}");
                }
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                return Some(Lost::NotRenewed);
            }
        }
    }

    /// One round of client-go's `tryAcquireOrRenew`: true when this candidate holds the Lease
    /// after it.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        // Fast path: the leader updates the Lease it wrote last, assuming nobody else did.
        if let Some(observed) = &self.observed
            && self.is_leader()
            && self.lease_valid(Instant::now())
        {
            let spec = next_spec(
                &self.identity,
                &self.timings,
                Some(&observed.spec()),
                true,
                now,
            );
            match self.update(observed.lease.clone(), spec).await {
                Ok(()) => return Ok(true),
                Err(err) => {
                    tracing::debug!(lease = %self.name, "renewing optimistically: {err}");
                }
            }
        }
        let current = match self.leases.get_opt(&self.name).await? {
            Some(lease) => lease,
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(NAMESPACE.to_owned()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(next_spec(&self.identity, &self.timings, None, false, now)),
                };
                let created = self.leases.create(&PostParams::default(), &lease).await?;
                self.observe(created);
                return Ok(true);
            }
        };
        self.observe(current.clone());
        let spec = current.spec.clone().unwrap_or_default();
        if held_by_other(&spec, &self.identity) && self.lease_valid(Instant::now()) {
            return Ok(false);
        }
        let leading = self.is_leader();
        let spec = next_spec(&self.identity, &self.timings, Some(&spec), leading, now);
        match self.update(current, spec).await {
            Ok(()) => Ok(true),
            // Someone else wrote first: they won this round.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Writes `spec` over `lease` (carrying its resourceVersion, so a concurrent write fails).
    async fn update(&mut self, mut lease: Lease, spec: LeaseSpec) -> Result<(), kube::Error> {
        lease.spec = Some(spec);
        let written = self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await?;
        self.observe(written);
        Ok(())
    }

    /// Hands the Lease over at once if this candidate holds it (client-go's `release`). The
    /// Lease is read afresh: a renewal cut short by the shutdown may have been written without
    /// this candidate seeing the answer, and its resourceVersion would then be stale.
    async fn release(&mut self) {
        if !self.is_leader() {
            return;
        }
        let attempt = tokio::time::timeout(self.timings.renew_deadline, async {
            for _ in 0..3 {
                let Some(current) = self.leases.get_opt(&self.name).await? else {
                    return Ok(false);
                };
                let spec = current.spec.clone().unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                    return Ok(false);
                }
                match self
                    .update(current, released_spec(&spec, Timestamp::now()))
                    .await
                {
                    Ok(()) => return Ok(true),
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    Err(err) => return Err(err),
                }
            }
            Ok(false)
        });
        match attempt.await {
            Ok(Ok(true)) => tracing::info!(
                lease = %self.name,
                "{} released the Lease {NAMESPACE}/{}",
                self.identity,
                self.name
            ),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => tracing::warn!(lease = %self.name, "releasing the Lease: {err}"),
            Err(_) => tracing::warn!(lease = %self.name, "releasing the Lease timed out"),
        }
    }

    /// Remembers `lease`; the clock restarts only when its record changed.
    fn observe(&mut self, lease: Lease) {
        let changed = self
            .observed
            .as_ref()
            .is_none_or(|observed| observed.lease.spec != lease.spec);
        let since = match &self.observed {
            Some(observed) if !changed => observed.since,
            _ => Instant::now(),
        };
        self.observed = Some(Observed { lease, since });
    }

    fn is_leader(&self) -> bool {
        self.observed.as_ref().is_some_and(|observed| {
            observed.spec().holder_identity.as_deref() == Some(self.identity.as_str())
        })
    }

    /// Whether the Lease as last seen is still valid at `now` (client-go's `isLeaseValid`).
    fn lease_valid(&self, now: Instant) -> bool {
        self.observed.as_ref().is_some_and(|observed| {
            let seconds = observed.spec().lease_duration_seconds.unwrap_or(0).max(0);
            observed.since + Duration::from_secs(seconds.unsigned_abs().into()) > now
        })
    }

    /// Records upstream's `LeaderElection` Event on the Lease.
    async fn record_event(&self, what: &str) {
        let Some(observed) = &self.observed else {
            return;
        };
        let message = format!("{} {what}", self.identity);
        crate::controllers::record_event(
            &self.client,
            &observed.lease,
            &self.name,
            ("Normal", "LeaderElection", &message),
        )
        .await;
    }
}

/// Whether `spec` names a holder other than `identity`.
fn held_by_other(spec: &LeaseSpec, identity: &str) -> bool {
    spec.holder_identity
        .as_deref()
        .is_some_and(|holder| !holder.is_empty() && holder != identity)
}

/// The record `identity` writes when it takes (`leading` false) or renews (`leading` true) the
/// Lease whose current record is `current`.
fn next_spec(
    identity: &str,
    timings: &Timings,
    current: Option<&LeaseSpec>,
    leading: bool,
    now: Timestamp,
) -> LeaseSpec {
    let transitions = current.and_then(|spec| spec.lease_transitions).unwrap_or(0);
    let duration = i32::try_from(timings.lease_duration.as_secs()).unwrap_or(i32::MAX);
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(duration),
        renew_time: Some(MicroTime(now)),
        acquire_time: if leading {
            current.and_then(|spec| spec.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        lease_transitions: Some(match current {
            Some(_) if !leading => transitions + 1,
            _ => transitions,
        }),
        ..LeaseSpec::default()
    }
}

/// The record a leader leaves when it steps down: no holder, a 1 s duration (client-go's
/// `release`), so the next candidate takes over at its next try.
fn released_spec(current: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        acquire_time: Some(MicroTime(now)),
        lease_transitions: current.lease_transitions,
        ..LeaseSpec::default()
    }
}

/// This control plane's candidate name: `<hostname>_<id>`, as upstream's `<hostname>_<uuid>`,
/// with the id kept in `<state_dir>/leader-election-id` so that a restart (after a crash too)
/// is the same candidate and renews its Lease instead of waiting for it to expire.
pub fn identity(state_dir: &std::path::Path) -> std::io::Result<String> {
    let path = state_dir.join("leader-election-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
        Ok(_) => write_new_id(&path)?,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => write_new_id(&path)?,
        Err(err) => return Err(err),
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    Ok(format!("{hostname}_{id}"))
}

fn write_new_id(path: &std::path::Path) -> std::io::Result<String> {
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(path, format!("{id}\n"))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn upstream_timings_are_the_default_and_bad_ones_are_refused() {
        let timings = Timings::default();
        assert_eq!(timings.lease_duration, Duration::from_secs(15));
        assert_eq!(timings.validate(), Ok(()));
        let short = Timings {
            lease_duration: Duration::from_secs(10),
            ..timings
        };
        assert!(
            short
                .validate()
                .unwrap_err()
                .contains("greater than the renew deadline")
        );
        let jittery = Timings {
            retry_period: Duration::from_secs(9),
            ..timings
        };
        assert!(
            jittery
                .validate()
                .unwrap_err()
                .contains("1.2 times the retry period")
        );
    }

    #[test]
    fn taking_a_lease_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let timings = Timings::default();
        let first = next_spec("a", &timings, None, false, at(0));
        assert_eq!(first.holder_identity.as_deref(), Some("a"));
        assert_eq!(first.lease_duration_seconds, Some(15));
        assert_eq!(first.lease_transitions, Some(0));
        let renewed = next_spec("a", &timings, Some(&first), true, at(2));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(2))));
        assert_eq!(renewed.lease_transitions, Some(0));
        let taken = next_spec("b", &timings, Some(&renewed), false, at(20));
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(taken.lease_transitions, Some(1));
    }

    #[test]
    fn a_released_lease_has_no_holder_and_keeps_its_transitions() {
        let held = next_spec("a", &Timings::default(), None, false, at(0));
        let released = released_spec(
            &LeaseSpec {
                lease_transitions: Some(3),
                ..held
            },
            at(5),
        );
        assert_eq!(released.holder_identity.as_deref(), Some(""));
        assert_eq!(released.lease_duration_seconds, Some(1));
        assert_eq!(released.lease_transitions, Some(3));
        assert!(!held_by_other(&released, "b"));
        assert!(held_by_other(
            &next_spec("a", &Timings::default(), None, false, at(0)),
            "b"
        ));
        assert!(!held_by_other(
            &next_spec("a", &Timings::default(), None, false, at(0)),
            "a"
        ));
    }

    #[test]
    fn the_identity_is_stable_for_one_state_directory() {
        let dir = std::env::temp_dir().join(format!("flotilla-le-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = identity(&dir).unwrap();
        assert_eq!(identity(&dir).unwrap(), first);
        let other = dir.join("other");
        std::fs::create_dir_all(&other).unwrap();
        assert_ne!(identity(&other).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
