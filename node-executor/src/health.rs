//! The health check after a `Once` payload (`spec.healthCheck`): a program run as the payload
//! is, in a job with its limits, bounded by its own timeout; exit code 0 passes. A failing check
//! fails the record (the payload did run; running it again is `retryFailed`'s call).

use std::time::{Duration, Instant};

use crate::platform::{Job, Launch, Platform};
use crate::record::{AttemptOutcome, HealthState, Record, State};
use crate::run::{Ended, RunError, RunRequest, wait_for_job};
use crate::shutdown::Shutdown;

/// The check a run carries.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub launch: Launch,
    pub timeout: Duration,
    /// After a 3010, run once the node is back (the operator restarts it).
    pub after_restart: bool,
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
    let ended = record.attempts.last().and_then(|a| a.end_time.as_deref());
    let ended = ended.and_then(|t| humantime::parse_rfc3339(t).ok());
    matches!((platform.booted_at(), ended), (Ok(booted), Some(ended)) if booted > ended)
}

/// Runs the check and records what it said: `Passed`, or the record `Failed` with the last
/// attempt saying why. A stop while it runs leaves it `Pending`, to run at the next start.
pub fn run<P: Platform>(
    platform: &P,
    req: &RunRequest,
    check: &HealthCheck,
    shutdown: &Shutdown,
    record: &mut Record,
) -> Result<(), RunError> {
    let failed = match platform.launch(&check.launch, &req.limits) {
        Err(e) => Some((i64::from(crate::run::EXIT_EXECUTOR_ERROR), format!("could not start: {e}"))),
        Ok(mut job) => {
            log(&format!("health check: started process {}", job.pid()));
            let deadline = Some(Instant::now() + check.timeout);
            match wait_for_job(&mut job, deadline, shutdown, false, |_, _| {})? {
                Ended::Interrupted => {
                    log("health check: stopped with the executor; it runs again at the next start");
                    record.health_check = Some(HealthState::Pending);
                    return Ok(());
                }
                Ended::TimedOut => Some((
                    i64::from(crate::run::EXIT_TIMED_OUT),
                    format!("ran longer than its timeout of {}", humantime::format_duration(check.timeout)),
                )),
                Ended::Exited(0) => None,
                Ended::Exited(code) => Some((code, format!("exited with code {code}"))),
            }
        }
    };
    match failed {
        None => {
            log("health check: passed");
            record.health_check = Some(HealthState::Passed);
        }
        Some((code, why)) => {
            log(&format!("health check: failed: {why}"));
            record.health_check = Some(HealthState::Failed);
            record.state = State::Failed;
            record.exit_code = Some(code);
            if let Some(last) = record.attempts.last_mut() {
                last.outcome = Some(AttemptOutcome::HealthCheckFailed);
                last.exit_code = Some(code);
                last.message = format!("the payload succeeded, but the health check {why}");
            }
        }
    }
    Ok(())
}

fn log(line: &str) {
    eprintln!("node-executor: {line}");
}
