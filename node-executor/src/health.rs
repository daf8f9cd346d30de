//! The health check after a `Once` payload (`spec.healthCheck`): a program run as the payload
//! is, in a job with its limits, bounded by its own timeout; exit code 0 passes. `run` (the
//! module) records what it said: a failing check fails the record (the payload did run;
//! running it again is `retryFailed`'s call).

use std::time::{Duration, Instant};

use crate::job_wait::{Ended, wait_for_job};
use crate::platform::{Job, JobLimits, Launch, Platform, PlatformError};
use crate::record::{HealthState, Record, State};
use crate::shutdown::Shutdown;

/// The check a run carries.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub launch: Launch,
    pub timeout: Duration,
    /// After a 3010, run once the node is back (the operator restarts it).
    pub after_restart: bool,
}

/// What the check said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Passed,
    /// Exited with this code.
    Failed(i64),
    TimedOut,
    /// It could not start: why.
    NotStarted(String),
    /// The executor was stopped meanwhile: the check runs again at the next start.
    Interrupted,
}

/// Whether the check must wait for the node's restart: the payload started one (1641), or
/// asked for one that the operator carries out.
pub fn waits_for_restart(check: &HealthCheck, state: State) -> bool {
    state == State::RebootInitiated || (state == State::RebootRequired && check.after_restart)
}

/// Whether a pending check may run now: the restart it waits for, if any, has happened.
pub fn due<P: Platform>(platform: &P, check: &HealthCheck, record: &Record) -> bool {
    if record.health_check != Some(HealthState::Pending) {
        return false;
    }
    if !waits_for_restart(check, record.state) {
        return true;
    }
    matches!(crate::record::booted_after_last_attempt(platform, record), Ok(Some(_)))
}

/// Runs the check in a job of `limits`.
pub fn check<P: Platform>(
    platform: &P,
    limits: &JobLimits,
    check: &HealthCheck,
    shutdown: &Shutdown,
) -> Result<Checked, PlatformError> {
    let mut job = match platform.launch(&check.launch, limits) {
        Err(e) => return Ok(Checked::NotStarted(e.to_string())),
        Ok(job) => job,
    };
    log(&format!("health check: started process {}", job.pid()));
    let deadline = Some(Instant::now() + check.timeout);
    let checked = match wait_for_job(&mut job, deadline, shutdown, false, |_, _| {})? {
        Ended::Interrupted => Checked::Interrupted,
        Ended::TimedOut => Checked::TimedOut,
        Ended::Exited(0) => Checked::Passed,
        Ended::Exited(code) => Checked::Failed(code),
    };
    log(&format!("health check: {checked:?}"));
    Ok(checked)
}

fn log(line: &str) {
    eprintln!("node-executor: {line}");
}
