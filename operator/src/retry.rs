//! How a failed reconcile is retried: after a few seconds, spread per object so that many objects
//! failing together (an API server brown-out) do not all retry in the same instant.

use std::time::Duration;

use kube::runtime::controller::Action;

/// Requeue after 5 s plus 0–5 s, stable per name.
pub(crate) fn after_error(name: &str) -> Action {
    Action::requeue(Duration::from_millis(5_000 + jitter(name) * 5))
}

/// 0..1000, stable per name.
fn jitter(name: &str) -> u64 {
    u64::from(name.bytes().fold(0u8, |a, b| a.wrapping_add(b))) * 1000 / 256
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_spread_per_name_and_stable() {
        assert_eq!(after_error("patch"), after_error("patch"));
        assert_ne!(jitter("patch-a"), jitter("patch-b"));
        assert!((0..1000).contains(&jitter("a-very-long-name-of-a-task")));
    }
}
