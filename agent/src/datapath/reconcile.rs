//! One way of keeping a pinned BPF map equal to what a sync wants, shared by the Service, policy
//! and tunnel syncs (the discipline of Cilium's map reconcilers): the caller states the desired
//! entries, a pass writes the difference, and only writes the kernel accepted are recorded as
//! programmed. A refused write stays pending and the caller retries it with bounded exponential
//! back-off ([`Retry`]) until a pass converges. What is programmed starts from what the pinned
//! map holds ([`Reconciler::adopt`]): a restarted agent adopts its predecessor's entries, rewrites
//! none that are still right and flushes nothing, so established connections survive it.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::{self, Debug, Display},
    time::Duration,
};

use futures::{Stream, StreamExt as _};
use tokio::time::Instant;

/// A BPF map as the reconciler sees it: typed entries, written one at a time.
pub trait MapHandle<K, V> {
    /// Why an operation failed.
    type Error;
    /// Creates or replaces the entry for `key`.
    fn insert(&mut self, key: &K, value: &V) -> Result<(), Self::Error>;
    /// Deletes the entry for `key`; deleting an absent entry succeeds.
    fn remove(&mut self, key: &K) -> Result<(), Self::Error>;
    /// Every entry the map holds.
    fn entries(&self) -> Result<Vec<(K, V)>, Self::Error>;
}

/// Which pending changes a pass applies (callers order writes and deletions across maps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changes {
    /// Entries to create or change.
    Writes,
    /// Entries to delete.
    Deletes,
    /// Both: the writes first, then the deletions (an LPM map never loses a covering prefix
    /// before its replacement is in).
    All,
}

/// What a refused operation tried to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create or change an entry.
    Write,
    /// Delete an entry.
    Delete,
}

/// One operation the map refused.
#[derive(Debug)]
pub struct Failure<K, E> {
    /// The entry's key.
    pub key: K,
    /// What was tried.
    pub op: Op,
    /// Why it failed.
    pub error: E,
}

impl<K: Debug, E: Display> Display for Failure<K, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Write => "writing",
            Op::Delete => "deleting",
        };
        write!(f, "{op} {:?}: {}", self.key, self.error)
    }
}

/// What one pass over one map did.
#[derive(Debug)]
pub struct Pass<K, E> {
    /// Keys written (created or changed), in order.
    pub written: Vec<K>,
    /// Keys deleted, in order.
    pub deleted: Vec<K>,
    /// Operations the map refused; their keys stay pending.
    pub failed: Vec<Failure<K, E>>,
}

impl<K, E> Default for Pass<K, E> {
    fn default() -> Self {
        Self {
            written: Vec::new(),
            deleted: Vec::new(),
            failed: Vec::new(),
        }
    }
}

impl<K, E> Pass<K, E> {
    /// Whether every operation tried succeeded.
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty()
    }
}

/// A map's entries as a sync wants them and as they were written (see the module docs).
///
/// Invariant: a key is pending exactly when its desired and programmed values differ (absent
/// counting as a value), so a pass costs what changed, not the map's size.
#[derive(Clone, Debug)]
pub struct Reconciler<K, V> {
    desired: BTreeMap<K, V>,
    programmed: BTreeMap<K, V>,
    pending: BTreeSet<K>,
}

impl<K, V> Default for Reconciler<K, V> {
    fn default() -> Self {
        Self {
            desired: BTreeMap::new(),
            programmed: BTreeMap::new(),
            pending: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone, V: Clone + PartialEq> Reconciler<K, V> {
    /// A reconciler for a map that is empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// A reconciler that takes over what `map` holds: programmed as read, and desired the same
    /// until the caller says otherwise, so nothing is written or deleted before it does.
    pub fn adopt<M: MapHandle<K, V>>(map: &M) -> Result<Self, M::Error> {
        let mut reconciler = Self::new();
        reconciler.refresh(map)?;
        reconciler.desired = reconciler.programmed.clone();
        reconciler.pending.clear();
        Ok(reconciler)
    }

    /// Re-reads what `map` really holds as the programmed state; whatever differs from the
    /// desired entries becomes pending (an entry nobody wants is deleted by the next pass).
    pub fn refresh<M: MapHandle<K, V>>(&mut self, map: &M) -> Result<(), M::Error> {
        self.programmed = map.entries()?.into_iter().collect();
        self.pending = self
            .desired
            .keys()
            .chain(self.programmed.keys())
            .filter(|key| self.desired.get(*key) != self.programmed.get(*key))
            .cloned()
            .collect();
        Ok(())
    }

    /// Wants `key` to hold `value`.
    pub fn set(&mut self, key: K, value: V) {
        if self.programmed.get(&key) == Some(&value) {
            self.pending.remove(&key);
        } else {
            self.pending.insert(key.clone());
        }
        self.desired.insert(key, value);
    }

    /// Wants `key` absent.
    pub fn unset(&mut self, key: &K) {
        self.desired.remove(key);
        if self.programmed.contains_key(key) {
            self.pending.insert(key.clone());
        } else {
            self.pending.remove(key);
        }
    }

    /// Wants the map to hold exactly `desired` (costs the size of the old and new sets).
    pub fn set_all(&mut self, desired: BTreeMap<K, V>) {
        let old = std::mem::replace(&mut self.desired, desired);
        // Keys no longer wanted; the wanted ones are settled below.
        for key in old.into_keys() {
            if self.desired.contains_key(&key) {
                continue;
            }
            if self.programmed.contains_key(&key) {
                self.pending.insert(key);
            } else {
                self.pending.remove(&key);
            }
        }
        for (key, value) in &self.desired {
            if self.programmed.get(key) == Some(value) {
                self.pending.remove(key);
            } else {
                self.pending.insert(key.clone());
            }
        }
    }

    /// The entries wanted.
    pub fn desired(&self) -> &BTreeMap<K, V> {
        &self.desired
    }

    /// The entries the map holds as far as this reconciler wrote or read them.
    pub fn programmed(&self) -> &BTreeMap<K, V> {
        &self.programmed
    }

    /// Whether `key` still waits for a write or deletion.
    pub fn is_pending(&self, key: &K) -> bool {
        self.pending.contains(key)
    }

    /// How many keys wait for a write or deletion.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the map holds exactly what is wanted.
    pub fn is_converged(&self) -> bool {
        self.pending.is_empty()
    }

    /// Applies the pending `changes` to `map`.
    pub fn apply<M: MapHandle<K, V>>(
        &mut self,
        map: &mut M,
        changes: Changes,
    ) -> Pass<K, M::Error> {
        let keys: Vec<K> = self.pending.iter().cloned().collect();
        self.apply_keys(map, changes, &keys)
    }

    /// Applies the pending `changes` of `keys` only (keys that are not pending are skipped), so
    /// a caller that knows which entries one object owns pays for that object alone.
    pub fn apply_keys<'a, M: MapHandle<K, V>>(
        &mut self,
        map: &mut M,
        changes: Changes,
        keys: impl IntoIterator<Item = &'a K>,
    ) -> Pass<K, M::Error>
    where
        K: 'a,
    {
        let keys: Vec<K> = keys
            .into_iter()
            .filter(|key| self.pending.contains(*key))
            .cloned()
            .collect();
        let mut pass = Pass::default();
        if changes != Changes::Deletes {
            for key in &keys {
                let Some(value) = self.desired.get(key) else {
                    continue;
                };
                match map.insert(key, value) {
                    Ok(()) => {
                        self.programmed.insert(key.clone(), value.clone());
                        self.pending.remove(key);
                        pass.written.push(key.clone());
                    }
                    Err(error) => pass.failed.push(Failure {
                        key: key.clone(),
                        op: Op::Write,
                        error,
                    }),
                }
            }
        }
        if changes != Changes::Writes {
            for key in keys {
                if self.desired.contains_key(&key) {
                    continue;
                }
                match map.remove(&key) {
                    Ok(()) => {
                        self.programmed.remove(&key);
                        self.pending.remove(&key);
                        pass.deleted.push(key);
                    }
                    Err(error) => pass.failed.push(Failure {
                        key,
                        op: Op::Delete,
                        error,
                    }),
                }
            }
        }
        pass
    }
}

/// Several passes (over one or more maps) summarised for a sync's logs and metrics.
#[derive(Debug, Default)]
pub struct Report {
    /// Entries written or deleted.
    pub changed: usize,
    /// The refused operations, described.
    pub failures: Vec<String>,
}

impl Report {
    /// Adds a pass; returns whether it was clean (callers stop before a step that depends on it).
    pub fn add<K: Debug, E: Display>(&mut self, pass: &Pass<K, E>) -> bool {
        self.changed += pass.written.len() + pass.deleted.len();
        self.failures
            .extend(pass.failed.iter().map(ToString::to_string));
        pass.is_clean()
    }

    /// Adds a failure of something other than a map entry.
    pub fn fail(&mut self, failure: impl Display) {
        self.failures.push(failure.to_string());
    }

    /// Whether anything was tried (written, deleted or refused).
    pub fn attempted(&self) -> bool {
        self.changed > 0 || !self.failures.is_empty()
    }

    /// One log line about the failures: how many, and the first.
    pub fn failure_summary(&self) -> Option<String> {
        let first = self.failures.first()?;
        Some(match self.failures.len() {
            1 => first.clone(),
            n => format!("{n} operations failed, the first {first}"),
        })
    }
}

/// The first retry's delay after a pass left something pending.
pub const RETRY_INITIAL: Duration = Duration::from_millis(100);
/// The longest delay between retries.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// When a sync retries what its passes left pending: [`RETRY_INITIAL`] after a failed pass,
/// doubling with every retry that fails again up to [`RETRY_MAX`]; a converged pass starts over.
#[derive(Debug)]
pub struct Retry {
    delay: Duration,
    at: Option<Instant>,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            delay: RETRY_INITIAL,
            at: None,
        }
    }
}

impl Retry {
    /// Notes how a pass that ended at `now` left the maps; returns the delay of a newly
    /// scheduled retry. A failure while a retry is already scheduled keeps that schedule (a
    /// burst of events does not push the retry out).
    pub fn after_pass(&mut self, converged: bool, now: Instant) -> Option<Duration> {
        if converged {
            *self = Self::default();
            return None;
        }
        if self.at.is_some_and(|at| at > now) {
            return None;
        }
        let delay = self.delay;
        self.at = Some(now + delay);
        self.delay = (delay * 2).min(RETRY_MAX);
        Some(delay)
    }

    /// When the next retry is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.at
    }
}

/// What woke a sync loop.
#[derive(Debug)]
pub enum Wake<T> {
    /// The next watch event.
    Event(T),
    /// The deadline passed first.
    Due,
    /// The event stream ended.
    Closed,
}

/// The next item of `events`, or [`Wake::Due`] if `deadline` passes first.
pub async fn next_or_due<S: Stream + Unpin>(
    events: &mut S,
    deadline: Option<Instant>,
) -> Wake<S::Item> {
    let next = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(next) => next,
            Err(_) => return Wake::Due,
        },
        None => events.next().await,
    };
    match next {
        Some(item) => Wake::Event(item),
        None => Wake::Closed,
    }
}

/// A map in memory for the syncs' unit tests, refusing writes and deletions of chosen keys.
#[cfg(test)]
pub(crate) mod fake {
    use std::collections::{BTreeMap, BTreeSet};

    use super::MapHandle;

    /// The fake map.
    #[derive(Debug)]
    pub(crate) struct FakeMap<K, V> {
        /// What it holds.
        pub(crate) entries: BTreeMap<K, V>,
        /// Keys whose writes and deletions fail.
        pub(crate) failing: BTreeSet<K>,
        /// Successful writes, in order.
        pub(crate) writes: Vec<K>,
        /// Successful deletions, in order.
        pub(crate) deletes: Vec<K>,
        /// Every operation tried, successful or not.
        pub(crate) attempts: usize,
    }

    impl<K, V> Default for FakeMap<K, V> {
        fn default() -> Self {
            Self {
                entries: BTreeMap::new(),
                failing: BTreeSet::new(),
                writes: Vec::new(),
                deletes: Vec::new(),
                attempts: 0,
            }
        }
    }

    impl<K: Ord + Clone, V: Clone> MapHandle<K, V> for FakeMap<K, V> {
        type Error = String;

        fn insert(&mut self, key: &K, value: &V) -> Result<(), String> {
            self.attempts += 1;
            if self.failing.contains(key) {
                return Err("refused".into());
            }
            self.entries.insert(key.clone(), value.clone());
            self.writes.push(key.clone());
            Ok(())
        }

        fn remove(&mut self, key: &K) -> Result<(), String> {
            self.attempts += 1;
            if self.failing.contains(key) {
                return Err("refused".into());
            }
            self.entries.remove(key);
            self.deletes.push(key.clone());
            Ok(())
        }

        fn entries(&self) -> Result<Vec<(K, V)>, String> {
            Ok(self
                .entries
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{fake::FakeMap, *};

    fn wanted(entries: &[(u32, &'static str)]) -> BTreeMap<u32, &'static str> {
        entries.iter().copied().collect()
    }

    #[test]
    fn a_failed_write_is_not_recorded_and_is_retried_until_it_converges() {
        let mut map = FakeMap::default();
        map.failing.insert(2);
        let mut reconciler = Reconciler::new();
        reconciler.set_all(wanted(&[(1, "a"), (2, "b"), (3, "c")]));
        let pass = reconciler.apply(&mut map, Changes::All);
        assert_eq!(pass.written, vec![1, 3]);
        assert_eq!(pass.failed.len(), 1);
        assert_eq!((pass.failed[0].key, pass.failed[0].op), (2, Op::Write));
        // Only what the map accepted counts as programmed; the refused key stays pending.
        assert_eq!(*reconciler.programmed(), wanted(&[(1, "a"), (3, "c")]));
        assert!(reconciler.is_pending(&2));
        assert!(!reconciler.is_converged());
        // The next pass tries the refused key again, and only it.
        let before = map.attempts;
        let pass = reconciler.apply(&mut map, Changes::All);
        assert_eq!((pass.written.len(), map.attempts - before), (0, 1));
        map.failing.clear();
        let pass = reconciler.apply(&mut map, Changes::All);
        assert_eq!(pass.written, vec![2]);
        assert!(pass.is_clean() && reconciler.is_converged());
        assert_eq!(map.entries, wanted(&[(1, "a"), (2, "b"), (3, "c")]));
        // Converged: a pass writes nothing.
        let before = map.attempts;
        reconciler.set_all(wanted(&[(1, "a"), (2, "b"), (3, "c")]));
        reconciler.apply(&mut map, Changes::All);
        assert_eq!(map.attempts, before);
    }

    #[test]
    fn removed_entries_are_deleted_and_a_refused_deletion_is_retried() {
        let mut map = FakeMap::default();
        let mut reconciler = Reconciler::new();
        reconciler.set_all(wanted(&[(1, "a"), (2, "b"), (3, "c")]));
        reconciler.apply(&mut map, Changes::All);
        map.failing.insert(3);
        reconciler.set_all(wanted(&[(1, "A")]));
        let pass = reconciler.apply(&mut map, Changes::All);
        // The writes come before the deletions.
        assert_eq!((pass.written, pass.deleted), (vec![1], vec![2]));
        assert_eq!((pass.failed[0].key, pass.failed[0].op), (3, Op::Delete));
        assert_eq!(*reconciler.programmed(), wanted(&[(1, "A"), (3, "c")]));
        map.failing.clear();
        let pass = reconciler.apply(&mut map, Changes::All);
        assert_eq!(pass.deleted, vec![3]);
        assert!(reconciler.is_converged());
        assert_eq!(map.entries, wanted(&[(1, "A")]));
        // A key unset and set back before any pass is no change at all.
        reconciler.unset(&1);
        reconciler.set(1, "A");
        assert!(reconciler.is_converged());
    }

    #[test]
    fn phases_and_key_subsets_apply_only_their_part() {
        let mut map = FakeMap::default();
        let mut reconciler = Reconciler::new();
        reconciler.set_all(wanted(&[(1, "a"), (2, "b")]));
        reconciler.apply(&mut map, Changes::All);
        reconciler.set_all(wanted(&[(1, "a2"), (3, "c")]));
        assert_eq!(reconciler.pending(), 3);
        let pass = reconciler.apply(&mut map, Changes::Deletes);
        assert_eq!((pass.written.len(), pass.deleted), (0, vec![2]));
        let pass = reconciler.apply_keys(&mut map, Changes::Writes, &[3, 2]);
        assert_eq!((pass.written, pass.deleted.len()), (vec![3], 0));
        assert!(reconciler.is_pending(&1));
        reconciler.apply(&mut map, Changes::Writes);
        assert_eq!(map.entries, wanted(&[(1, "a2"), (3, "c")]));
    }

    #[test]
    fn adopting_a_pinned_map_changes_nothing_until_told() {
        let mut map = FakeMap {
            entries: wanted(&[(1, "a"), (2, "b")]),
            ..FakeMap::default()
        };
        let mut reconciler = Reconciler::adopt(&map).unwrap();
        assert!(reconciler.is_converged());
        assert_eq!(*reconciler.desired(), map.entries);
        // The first complete desired state: what is still right is not rewritten.
        reconciler.set_all(wanted(&[(1, "a"), (3, "c")]));
        let pass = reconciler.apply(&mut map, Changes::All);
        assert_eq!((pass.written, pass.deleted), (vec![3], vec![2]));
        // Someone else changed the map: a refresh learns it and the next pass repairs it.
        map.entries.insert(1, "x");
        map.entries.insert(9, "stray");
        reconciler.refresh(&map).unwrap();
        assert_eq!(reconciler.pending(), 2);
        reconciler.apply(&mut map, Changes::All);
        assert_eq!(map.entries, wanted(&[(1, "a"), (3, "c")]));
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_bound_and_start_over_on_success() {
        let mut retry = Retry::default();
        let start = Instant::now();
        assert_eq!(retry.after_pass(false, start), Some(RETRY_INITIAL));
        // Another failure before the retry is due keeps the schedule.
        assert_eq!(retry.after_pass(false, start), None);
        assert_eq!(retry.due(), Some(start + RETRY_INITIAL));
        let mut now = start + RETRY_INITIAL;
        assert_eq!(retry.after_pass(false, now), Some(RETRY_INITIAL * 2));
        let mut last = Duration::ZERO;
        for _ in 0..20 {
            now += RETRY_MAX;
            last = retry.after_pass(false, now).unwrap();
        }
        assert_eq!(last, RETRY_MAX);
        assert_eq!(retry.after_pass(true, now), None);
        assert_eq!(retry.due(), None);
        assert_eq!(retry.after_pass(false, now), Some(RETRY_INITIAL));
    }
}
