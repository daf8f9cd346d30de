//! Waiting for a job: until its main process exited (and, when asked, every process it started),
//! its deadline passed or the executor was asked to stop.

use std::time::{Duration, Instant};

use crate::platform::{Job, PlatformError};
use crate::shutdown::Shutdown;

/// Waits until the job's main process exited (with `wait_all`, every process of the job: an
/// installer that relaunched itself is still installing; `waiting` is told once), the deadline
/// passed or a stop was asked for; whatever is left in the job is killed.
pub fn wait_for_job<J: Job>(
    job: &mut J,
    deadline: Option<Instant>,
    shutdown: &Shutdown,
    wait_all: bool,
    waiting: impl FnOnce(i64, u32),
) -> Result<Ended, PlatformError> {
    let mut waiting = Some(waiting);
    loop {
        if shutdown.requested() {
            job.kill()?;
            return Ok(Ended::Interrupted);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            job.kill()?;
            return Ok(Ended::TimedOut);
        }
        if let Some(code) = job.poll(Duration::from_millis(50))? {
            let left = if wait_all { job.stats().active_processes } else { 0 };
            if left > 0 {
                if let Some(tell) = waiting.take() {
                    tell(code, left);
                }
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            job.kill()?;
            return Ok(Ended::Exited(code));
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Ended {
    Exited(i64),
    TimedOut,
    Interrupted,
}
