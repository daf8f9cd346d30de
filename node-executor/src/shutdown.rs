//! The executor's stop request: SIGTERM/SIGINT on Linux; Ctrl-C, Ctrl-Break, close, logoff and
//! shutdown events on Windows (what the container runtime sends when it stops the container).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set once a stop was requested; cheap to poll.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// Installs the process-wide handler. Call once, at start-up.
    pub fn install() -> Result<Self, ctrlc::Error> {
        let shutdown = Shutdown::default();
        let flag = shutdown.0.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
        Ok(shutdown)
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Sleeps up to `d`; returns true (early) when a stop was requested.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.requested() {
                return true;
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
        }
        self.requested()
    }

    /// Blocks until a stop is requested.
    pub fn wait(&self) {
        while !self.sleep(Duration::from_secs(3600)) {}
    }
}
