//! The executor's stop request: SIGTERM/SIGINT on Linux; Ctrl-C, Ctrl-Break, close, logoff and
//! shutdown events on Windows (what the container runtime sends when it stops the container).
//!
//! On Windows the process ends as soon as the handler of a close, logoff or shutdown event
//! returns, so that handler does not return at once: it waits until the executor says it is done
//! (`Shutdown::finished`: the job stopped, the `Interrupted` record and the result line written),
//! at most `FINISH_WITHIN`. Ctrl-C and Ctrl-Break leave the process running, so their handler
//! only raises the flag.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a close, logoff or shutdown event waits for the executor to finish.
#[cfg_attr(not(windows), allow(dead_code))]
pub const FINISH_WITHIN: Duration = Duration::from_secs(20);

/// Set once a stop was requested; cheap to poll.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

/// Raised by `Shutdown::finished`; waited on by the Windows handler of terminal events.
static FINISHED: OnceLock<(Mutex<bool>, Condvar)> = OnceLock::new();

fn finished_signal() -> &'static (Mutex<bool>, Condvar) {
    FINISHED.get_or_init(|| (Mutex::new(false), Condvar::new()))
}

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
                    Shutdown::wait_finished(FINISH_WITHIN);
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

    /// Says the executor is done (its record and result line written): a pending terminal event
    /// may now let the process end.
    pub fn finished() {
        let (done, changed) = finished_signal();
        if let Ok(mut done) = done.lock() {
            *done = true;
            changed.notify_all();
        }
    }

    /// Waits until `finished` was called, at most `within`.
    #[cfg_attr(not(windows), allow(dead_code))]
    fn wait_finished(within: Duration) {
        let (done, changed) = finished_signal();
        let Ok(guard) = done.lock() else { return };
        let _ = changed.wait_timeout_while(guard, within, |done| !*done);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_event_waits_until_the_executor_is_finished() {
        static SAID_DONE: AtomicBool = AtomicBool::new(false);
        let waiter = std::thread::spawn(|| {
            Shutdown::wait_finished(Duration::from_secs(30));
            SAID_DONE.load(Ordering::SeqCst)
        });
        std::thread::sleep(Duration::from_millis(300));
        SAID_DONE.store(true, Ordering::SeqCst);
        Shutdown::finished();
        assert!(waiter.join().expect("join"), "the handler returned before the executor said it was done");
    }
}
