//! Restart and image-pull back-off, as kubelet's: 10 s doubling to 5 min, forgotten after a
//! container ran 10 minutes without needing a restart.

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

/// The first delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The longest delay.
pub const MAX: Duration = Duration::from_secs(300);
/// How long an entry is kept without new failures before the delay starts over.
const RESET_AFTER: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug)]
struct Entry {
    delay: Duration,
    until: Instant,
}

/// Back-off per key (e.g. pod uid + container name).
#[derive(Debug, Default)]
pub struct Backoff {
    entries: HashMap<String, Entry>,
}

impl Backoff {
    /// Time left before `key` may be tried again, if it is backing off at `now`.
    pub fn remaining(&self, key: &str, now: Instant) -> Option<Duration> {
        let entry = self.entries.get(key)?;
        (entry.until > now).then(|| entry.until - now)
    }

    /// The delay of `key`'s current back-off (what kubelet's CrashLoopBackOff message names).
    pub fn delay(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|entry| entry.delay)
    }

    /// Records a failure (a restart or failed pull) at `now` and returns the new delay.
    pub fn fail(&mut self, key: &str, now: Instant) -> Duration {
        let delay = match self.entries.get(key) {
            Some(entry) if now.duration_since(entry.until) < RESET_AFTER => {
                (entry.delay * 2).min(MAX)
            }
            _ => INITIAL,
        };
        self.entries.insert(
            key.to_owned(),
            Entry {
                delay,
                until: now + delay,
            },
        );
        delay
    }

    /// Forgets every key starting with `prefix` (a removed pod).
    pub fn forget_prefix(&mut self, prefix: &str) {
        self.entries.retain(|key, _| !key.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let mut backoff = Backoff::default();
        let start = Instant::now();
        assert_eq!(backoff.fail("a", start), INITIAL);
        assert!(backoff.remaining("a", start).is_some());
        assert_eq!(backoff.fail("a", start + INITIAL), INITIAL * 2);
        assert_eq!(backoff.delay("a"), Some(INITIAL * 2));
        let mut now = start;
        for _ in 0..10 {
            now += MAX;
            backoff.fail("a", now);
        }
        assert_eq!(backoff.fail("a", now), MAX);
        assert_eq!(backoff.fail("a", now + MAX + RESET_AFTER + MAX), INITIAL);
        assert!(backoff.remaining("b", start).is_none());
    }
}
