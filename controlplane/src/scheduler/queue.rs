//! The pods waiting for a node, as upstream's scheduling queue keeps them: an active queue
//! (highest priority first, then oldest), the unschedulable pods parked until the cluster
//! changes, and pods backing off after a failed binding. Every operation costs O(log n) in the
//! number of waiting pods, except moving all unschedulable pods back, which is what a cluster
//! change calls for.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use k8s_openapi::api::core::v1::Pod;

/// Order in the active queue: priority (higher first), creation time (older first), then the
/// order in which pods were first queued.
type Key = (Reverse<i32>, Option<jiff::Timestamp>, u64);

/// Where a waiting pod is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Unschedulable,
    Backoff(Instant),
}

struct Entry {
    /// The newest version of the pod seen.
    pod: Arc<Pod>,
    key: Key,
    place: Place,
}

/// The waiting pods, by uid.
#[derive(Default)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    active: BTreeMap<Key, String>,
    unschedulable: HashSet<String>,
    backoff: BTreeSet<(Instant, Key, String)>,
    next_seq: u64,
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

impl Queue {
    /// Queues a newly seen pending pod, or refreshes the object of one already waiting (leaving
    /// it where it is: our own PodScheduled=False update must not retry an unschedulable pod).
    pub fn add(&mut self, pod: Arc<Pod>) {
        let uid = uid(&pod);
        if let Some(entry) = self.entries.get_mut(&uid) {
            entry.pod = pod;
            return;
        }
        let key = self.key(&pod);
        self.active.insert(key, uid.clone());
        self.entries.insert(
            uid,
            Entry {
                pod,
                key,
                place: Place::Active,
            },
        );
    }

    /// A new pod's place in line.
    fn key(&mut self, pod: &Pod) -> Key {
        self.next_seq += 1;
        (
            Reverse(pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)),
            pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
            self.next_seq,
        )
    }

    /// Forgets a pod (bound, deleted, no longer ours); returns whether it was waiting.
    pub fn remove(&mut self, uid: &str) -> bool {
        let Some(entry) = self.entries.remove(uid) else {
            return false;
        };
        self.unlink(uid, &entry);
        true
    }

    fn unlink(&mut self, uid: &str, entry: &Entry) {
        match entry.place {
            Place::Active => {
                self.active.remove(&entry.key);
            }
            Place::Unschedulable => {
                self.unschedulable.remove(uid);
            }
            Place::Backoff(until) => {
                self.backoff.remove(&(until, entry.key, uid.to_owned()));
            }
        }
    }

    /// Takes the next pod to schedule out of the queue.
    pub fn pop(&mut self) -> Option<Arc<Pod>> {
        let (_, uid) = self.active.pop_first()?;
        self.entries.remove(&uid).map(|entry| entry.pod)
    }

    /// Parks a pod no node could take until the cluster changes.
    pub fn park_unschedulable(&mut self, pod: Arc<Pod>) {
        let uid = uid(&pod);
        self.put(pod, Place::Unschedulable);
        self.unschedulable.insert(uid);
    }

    /// Holds a pod back until `until` (its binding failed).
    pub fn back_off(&mut self, pod: Arc<Pod>, until: Instant) {
        let uid = uid(&pod);
        let key = self.put(pod, Place::Backoff(until));
        self.backoff.insert((until, key, uid));
    }

    /// Files `pod` at `place`, keeping its place in line if it was already queued.
    fn put(&mut self, pod: Arc<Pod>, place: Place) -> Key {
        let uid = uid(&pod);
        let key = match self.entries.remove(&uid) {
            Some(entry) => {
                self.unlink(&uid, &entry);
                entry.key
            }
            None => self.key(&pod),
        };
        self.entries.insert(uid, Entry { pod, key, place });
        key
    }

    /// Moves every unschedulable pod back to the active queue: something changed that may let
    /// them fit (upstream's MoveAllToActiveOrBackoffQueue).
    pub fn move_unschedulable_to_active(&mut self) {
        for uid in std::mem::take(&mut self.unschedulable) {
            if let Some(entry) = self.entries.get_mut(&uid) {
                entry.place = Place::Active;
                self.active.insert(entry.key, uid);
            }
        }
    }

    /// Moves the pods whose backoff ended by `now` back to the active queue.
    pub fn end_backoffs(&mut self, now: Instant) {
        while let Some(first) = self.backoff.first()
            && first.0 <= now
        {
            let (_, key, uid) = self.backoff.pop_first().unwrap_or_else(|| unreachable!());
            if let Some(entry) = self.entries.get_mut(&uid) {
                entry.place = Place::Active;
                self.active.insert(key, uid);
            }
        }
    }

    /// When the next backoff ends.
    pub fn next_backoff(&self) -> Option<Instant> {
        self.backoff.first().map(|(until, _, _)| *until)
    }

    /// Whether a pod is ready to be popped.
    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// Whether the pod is waiting (in any part of the queue).
    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    /// Whether the pod is parked as unschedulable.
    pub fn is_unschedulable(&self, uid: &str) -> bool {
        self.unschedulable.contains(uid)
    }

    /// The uids of all waiting pods.
    pub fn uids(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pod(uid: &str, priority: i32, created: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": uid, "namespace": "default", "uid": uid, "creationTimestamp": created},
                "spec": {"priority": priority, "containers": []},
            }))
            .unwrap(),
        )
    }

    fn drain(queue: &mut Queue) -> Vec<String> {
        std::iter::from_fn(|| queue.pop().map(|p| uid(&p))).collect()
    }

    #[test]
    fn higher_priority_then_older_pods_come_first() {
        let mut queue = Queue::default();
        queue.add(pod("young", 0, "2024-01-01T00:00:02Z"));
        queue.add(pod("old", 0, "2024-01-01T00:00:01Z"));
        queue.add(pod("urgent", 10, "2024-01-01T00:00:03Z"));
        queue.add(pod("same-second", 0, "2024-01-01T00:00:02Z"));
        assert_eq!(drain(&mut queue), ["urgent", "old", "young", "same-second"]);
    }

    #[test]
    fn updates_refresh_the_object_without_moving_the_pod() {
        let mut queue = Queue::default();
        queue.park_unschedulable(pod("a", 0, "2024-01-01T00:00:01Z"));
        queue.add(pod("a", 0, "2024-01-01T00:00:01Z"));
        assert!(queue.is_unschedulable("a"));
        assert!(!queue.has_active());
        assert!(queue.remove("a"));
        assert!(!queue.contains("a"));
        assert!(!queue.remove("a"));
    }

    #[test]
    fn unschedulable_pods_return_on_a_cluster_change() {
        let mut queue = Queue::default();
        queue.add(pod("a", 0, "2024-01-01T00:00:01Z"));
        queue.add(pod("b", 0, "2024-01-01T00:00:02Z"));
        let a = queue.pop().unwrap();
        queue.park_unschedulable(a);
        assert_eq!(drain(&mut queue), ["b"]);
        queue.move_unschedulable_to_active();
        assert!(!queue.is_unschedulable("a"));
        assert_eq!(drain(&mut queue), ["a"]);
    }

    #[test]
    fn backed_off_pods_wait_their_time() {
        let mut queue = Queue::default();
        let now = Instant::now();
        queue.back_off(
            pod("a", 0, "2024-01-01T00:00:01Z"),
            now + Duration::from_secs(1),
        );
        queue.move_unschedulable_to_active();
        assert!(!queue.has_active());
        assert_eq!(queue.next_backoff(), Some(now + Duration::from_secs(1)));
        queue.end_backoffs(now);
        assert!(!queue.has_active());
        queue.end_backoffs(now + Duration::from_secs(1));
        assert_eq!(queue.next_backoff(), None);
        assert_eq!(drain(&mut queue), ["a"]);
    }
}
