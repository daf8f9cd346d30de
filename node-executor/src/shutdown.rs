//! The executor's stop request: SIGTERM/SIGINT on Linux; Ctrl-C, Ctrl-Break, close, logoff and
//! shutdown events on Windows (what the container runtime sends when it stops the container).
//!
//! On Windows the process ends as soon as the handler of a close, logoff or shutdown event
//! returns, so that handler does not return: it holds the process until `main` has stopped the
//! job, written the `Interrupted` record and the result line and exits with 143 (an exit ends
//! every thread, the handler's too), at most `FINISH_WITHIN`. Ctrl-C and Ctrl-Break leave the
//! process running, so their handler only raises the flag.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a close, logoff or shutdown event waits for the executor to finish.
#[cfg_attr(not(windows), allow(dead_code))]
pub const FINISH_WITHIN: Duration = Duration::from_secs(20);

/// Set once a stop was requested; cheap to poll.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// Installs the process-wide handler. Call once, at start-up.
    pub fn install() -> Result<Self, String> {
        let shutdown = Shutdown::default();
        #[cfg(windows)]
        {
            let flag = shutdown.0.clone();
            crate::platform::windows::on_console_event(Box::new(move |terminal| {
                flag.store(true, Ordering::SeqCst);
                if terminal {
                    // Returning would end the process now; `main`'s exit ends it first.
                    std::thread::sleep(FINISH_WITHIN);
                }
            }))
            .map_err(|e| e.to_string())?;
        }
        #[cfg(unix)]
        {
            let flag = shutdown.0.clone();
            ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).map_err(|e| e.to_string())?;
        }
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
