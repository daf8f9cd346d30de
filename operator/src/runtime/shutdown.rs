//! Stopping: on shutdown (or a lost lease) the controllers are told to stop, get `STOP_GRACE` to
//! finish the reconciles they run, and a leader that still holds its lease writes the statuses
//! it decided (at most `STATUS_FLUSH`) before releasing it.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// How long a stopping operator waits for the reconciles it runs to finish.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// How long a stopping operator waits for the statuses it decided to be written.
pub const STATUS_FLUSH: Duration = Duration::from_secs(5);

/// The stop signal every part of `run` listens to.
#[derive(Debug)]
pub(crate) struct Stop(watch::Sender<bool>);

impl Stop {
    pub fn new() -> Self {
        Stop(watch::Sender::new(false))
    }

    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Completes once `stop` was called (at once if it was already).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + Sync + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }

    /// Completes `STOP_GRACE` after the stop: a controller told to stop before its own watch has
    /// listed never stops (kube-runtime 5.0's runner waits for its store, whose watch the stop has
    /// ended), so the reconciles get a while to finish, then the controllers are dropped.
    pub fn deadline(&self) -> impl Future<Output = ()> + Send + 'static {
        let stopped = self.stopped();
        async move {
            stopped.await;
            tokio::time::sleep(STOP_GRACE).await;
            tracing::warn!(grace = ?STOP_GRACE, "the controllers did not stop in time; stopping them");
        }
    }
}
