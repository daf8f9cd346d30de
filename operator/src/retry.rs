//! How a failed reconcile is retried: exponential back-off per object (5 s, 10 s, 20 s, … at most
//! 5 minutes), each wait spread by ±50% so that many objects failing together (an API server
//! brown-out) do not all come back in the same instant. A success forgets the object's failures;
//! an object that stops failing without a success (deleted, say) is forgotten an hour later.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;

const FIRST: Duration = Duration::from_secs(5);
const MOST: Duration = Duration::from_secs(300);
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Consecutive failed reconciles per object (`kind/namespace/name`), and when the last one was.
#[derive(Debug, Default)]
pub(crate) struct Backoff(Mutex<HashMap<String, (u32, Instant)>>);

impl Backoff {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u32, Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more failure of `key`: when to try it again.
    pub fn failed(&self, key: &str) -> Action {
        let now = Instant::now();
        let mut failures = self.lock();
        failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
        let count = failures.get(key).map_or(0, |(n, _)| *n).saturating_add(1);
        failures.insert(key.to_string(), (count, now));
        Action::requeue(wait(count, std::hash::RandomState::new().hash_one((key, count))))
    }

    /// `key` reconciled: its next failure starts from the first wait again.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.lock();
        if !failures.is_empty() {
            failures.remove(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The wait after the `count`th failure in a row, spread by `random` to 50–150%.
fn wait(count: u32, random: u64) -> Duration {
    let doubled = FIRST.saturating_mul(1 << count.saturating_sub(1).min(16)).min(MOST);
    doubled.mul_f64(0.5 + (random % 1000) as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_five_minutes_spread_around_their_middle() {
        let middle = |count| wait(count, 500);
        assert_eq!([middle(1), middle(2), middle(3)], [FIRST, FIRST * 2, FIRST * 4]);
        assert_eq!(middle(7), MOST, "capped");
        assert_eq!(middle(u32::MAX), MOST);
        assert_eq!(wait(1, 0), FIRST / 2);
        assert!(wait(1, 999) < FIRST * 3 / 2);
    }

    #[test]
    fn a_success_forgets_the_failures() {
        let backoff = Backoff::default();
        for _ in 0..3 {
            backoff.failed("hosttask/ns/a");
        }
        backoff.failed("hosttask/ns/b");
        assert_eq!(backoff.lock()["hosttask/ns/a"].0, 3);
        backoff.succeeded("hosttask/ns/a");
        assert_eq!(backoff.len(), 1);
    }
}
