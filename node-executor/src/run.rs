//! Running a payload: `Once` (attempts with retries and back-off until one succeeds or the
//! budget is spent, recorded so that it never runs again for the revision) and `Continuous`
//! (restart on exit with back-off, until the executor is stopped).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hostprocess_crds::Mode;
use hostprocess_protocol::RunReport;

use crate::job_wait::{Ended, wait_for_job};
use crate::lock;
use crate::platform::{Job, JobLimits, Launch, LimitKind, Platform};
use crate::record::{self, Attempt, AttemptOutcome, Record, RecordError, RecordPath, State};
use crate::shutdown::Shutdown;

/// Exit code when a job limit was exceeded and the job was stopped.
pub const EXIT_LIMIT_EXCEEDED: i32 = 121;
/// Exit code when the payload ran past its timeout and its whole job was killed.
pub const EXIT_TIMED_OUT: i32 = 124;
/// Exit code when the executor refused its input or could not set up the job.
pub const EXIT_EXECUTOR_ERROR: i32 = 125;
/// Exit code when the executor was stopped (signal, container stop) before the payload finished.
pub const EXIT_INTERRUPTED: i32 = 143;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// A `Continuous` payload that ran this long starts its back-off afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(600);
/// Attempts kept in the record of a `Continuous` payload.
const KEEP_ATTEMPTS: usize = 20;

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub task: String,
    pub task_uid: String,
    pub revision: String,
    pub mode: Mode,
    pub launch: Launch,
    pub limits: JobLimits,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub backoff: Duration,
    /// Finished only when every process of the job has exited, not only the main one.
    pub wait_all: bool,
    /// The retry round in force (`--retry`): a failed record of another round runs again.
    pub retry: Option<String>,
    /// What to run after the payload succeeded (`--health-check`).
    pub health_check: Option<crate::health::HealthCheck>,
    pub state_dir: PathBuf,
}

/// What `run` did: the report for the result line, and the code the executor exits with.
#[derive(Debug)]
pub struct Ran {
    pub report: RunReport,
    pub exit_code: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error("{0}")]
    Platform(#[from] crate::platform::PlatformError),
}

/// The wait before attempt `failures + 1`: `base`, doubled per failure, at most 10 minutes.
pub fn backoff_delay(base: Duration, failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(MAX_BACKOFF)
}

pub fn run<P: Platform>(platform: &P, req: &RunRequest, shutdown: &Shutdown) -> Result<Ran, RunError> {
    let path = RecordPath::new(&req.state_dir, &req.task_uid, &req.revision);
    // A second pod of the task on this node (a duplicate, or the successor of a force-deleted
    // one) waits here until the first executor is done or dead, then reads what it recorded.
    let holder =
        format!("another executor is running revision {} of {} on this node", req.revision, req.task);
    let Some(_alone) = lock::acquire(&path.lock_path(), &holder, shutdown)? else {
        log("stopped while waiting for the other executor; the payload did not run");
        let record = path.load()?.unwrap_or_else(|| new_record(req, State::Interrupted));
        let report = RunReport { skipped: true, record_path: path.path().into(), record };
        return Ok(Ran { report, exit_code: EXIT_INTERRUPTED });
    };
    let mut record = match path.load()? {
        Some(mut failed) if retries_now(req, &failed) => {
            let after = failed.attempts.last().map_or(0, |a| a.number);
            log(&format!(
                "revision {} failed here after {after} attempt(s); retrying it (retryFailed round {})",
                req.revision,
                req.retry.as_deref().unwrap_or_default()
            ));
            failed.retry.clone_from(&req.retry);
            failed.retry_after = after;
            failed.state = State::Running;
            failed
        }
        Some(mut done) if req.mode == Mode::Once && done.state.is_final() => {
            log(&format!(
                "revision {} already finished here ({:?}); not running it again",
                req.revision, done.state
            ));
            if note_restart(platform, &mut done) {
                path.save(&done)?;
            }
            // A health check that waited for the node's restart runs now that it is back.
            if let Some(check) = req.health_check.as_ref().filter(|c| crate::health::due(platform, c, &done))
            {
                health_check(platform, req, check, shutdown, &mut done)?;
                path.save(&done)?;
                if done.state == State::Failed {
                    let exit_code = final_exit_code(&done);
                    let report = RunReport { skipped: false, record_path: path.path().into(), record: done };
                    return Ok(Ran { report, exit_code });
                }
            }
            let exit_code = final_exit_code(&done);
            let report = RunReport { skipped: true, record_path: path.path().into(), record: done };
            return Ok(Ran { report, exit_code });
        }
        Some(mut earlier) => {
            // An attempt still marked running was cut short by a crash of the executor or the node.
            for attempt in earlier.attempts.iter_mut().filter(|a| a.outcome.is_none()) {
                attempt.outcome = Some(AttemptOutcome::Interrupted);
                attempt.message = "the executor stopped before the payload finished".into();
            }
            earlier
        }
        None => new_record(req, State::Running),
    };
    let exit_code = match req.mode {
        Mode::Once => run_once(platform, req, shutdown, &path, &mut record)?,
        Mode::Continuous => run_continuous(platform, req, shutdown, &path, &mut record)?,
    };
    Ok(Ran { report: RunReport { skipped: false, record_path: path.path().into(), record }, exit_code })
}

/// Runs the health check and records what it said: `Passed`, or the record `Failed` with the
/// last attempt saying why. A stop while it runs leaves it `Pending`, to run at the next start.
fn health_check<P: Platform>(
    platform: &P,
    req: &RunRequest,
    check: &crate::health::HealthCheck,
    shutdown: &Shutdown,
    record: &mut Record,
) -> Result<(), RunError> {
    use crate::health::Checked;
    use crate::record::HealthState;
    let (code, why) = match crate::health::check(platform, &req.limits, check, shutdown)? {
        Checked::Passed => {
            record.health_check = Some(HealthState::Passed);
            return Ok(());
        }
        Checked::Interrupted => {
            record.health_check = Some(HealthState::Pending);
            return Ok(());
        }
        Checked::Failed(code) => (code, format!("exited with code {code}")),
        Checked::TimedOut => (
            i64::from(EXIT_TIMED_OUT),
            format!("ran longer than its timeout of {}", humantime::format_duration(check.timeout)),
        ),
        Checked::NotStarted(why) => (i64::from(EXIT_EXECUTOR_ERROR), format!("could not start: {why}")),
    };
    record.health_check = Some(HealthState::Failed);
    record.state = State::Failed;
    record.exit_code = Some(code);
    if let Some(last) = record.attempts.last_mut() {
        last.outcome = Some(AttemptOutcome::HealthCheckFailed);
        last.exit_code = Some(code);
        last.message = format!("the payload succeeded, but the health check {why}");
    }
    Ok(())
}

/// A payload that started the node's restart itself (1641): once the node has started again
/// since the payload ended, the record says when (`rebootedAt`), and the run counts as done.
/// Whether the record changed.
fn note_restart<P: Platform>(platform: &P, record: &mut Record) -> bool {
    if record.state != State::RebootInitiated || record.rebooted_at.is_some() {
        return false;
    }
    match record::booted_after_last_attempt(platform, record) {
        Ok(Some(booted)) => {
            let at = humantime::format_rfc3339_millis(booted).to_string();
            log(&format!("the node restarted at {at}, as the payload started it to"));
            record.rebooted_at = Some(at);
            true
        }
        Ok(None) => false,
        Err(e) => {
            log(&format!("cannot tell when the node started: {e}"));
            false
        }
    }
}

/// Whether a failed `Once` record gets a new round of attempts: a retry round was asked for
/// that it has not had. A success is never run again.
fn retries_now(req: &RunRequest, record: &Record) -> bool {
    req.mode == Mode::Once
        && record.state == State::Failed
        && req.retry.is_some()
        && record.retry != req.retry
}

fn new_record(req: &RunRequest, state: State) -> Record {
    Record {
        task: req.task.clone(),
        task_uid: req.task_uid.clone(),
        revision: req.revision.clone(),
        mode: req.mode,
        state,
        exit_code: None,
        attempts: vec![],
        retry: req.retry.clone(),
        retry_after: 0,
        rebooted_at: None,
        health_check: None,
    }
}

fn run_once<P: Platform>(
    platform: &P,
    req: &RunRequest,
    shutdown: &Shutdown,
    path: &RecordPath,
    record: &mut Record,
) -> Result<i32, RunError> {
    loop {
        let attempt = attempt(platform, req, shutdown, path, record, req.timeout)?;
        let outcome = attempt.outcome.unwrap_or(AttemptOutcome::Interrupted);
        record.exit_code = attempt.exit_code;
        record.state = match outcome {
            AttemptOutcome::Succeeded => State::Succeeded,
            AttemptOutcome::RebootRequired => State::RebootRequired,
            AttemptOutcome::RebootInitiated => State::RebootInitiated,
            AttemptOutcome::Interrupted => State::Interrupted,
            _ if record.counted_attempts() > req.retries => State::Failed,
            _ => State::BackingOff,
        };
        path.save(record)?;
        match record.state {
            State::BackingOff => {
                let delay = backoff_delay(req.backoff, record.counted_attempts());
                log(&format!(
                    "attempt {} failed; next attempt in {}",
                    attempt.number,
                    humantime::format_duration(delay)
                ));
                if shutdown.sleep(delay) {
                    record.state = State::Interrupted;
                    path.save(record)?;
                    return Ok(EXIT_INTERRUPTED);
                }
            }
            State::Interrupted => return Ok(EXIT_INTERRUPTED),
            state => {
                if let Some(check) = req.health_check.as_ref().filter(|_| state.is_success()) {
                    if crate::health::waits_for_restart(check, state) {
                        record.health_check = Some(crate::record::HealthState::Pending);
                    } else {
                        health_check(platform, req, check, shutdown, record)?;
                    }
                    path.save(record)?;
                }
                return Ok(final_exit_code(record));
            }
        }
    }
}

fn run_continuous<P: Platform>(
    platform: &P,
    req: &RunRequest,
    shutdown: &Shutdown,
    path: &RecordPath,
    record: &mut Record,
) -> Result<i32, RunError> {
    let mut failures = 0;
    loop {
        let started = Instant::now();
        let attempt = attempt(platform, req, shutdown, path, record, None)?;
        record.exit_code = attempt.exit_code;
        let excess = record.attempts.len().saturating_sub(KEEP_ATTEMPTS);
        record.attempts.drain(..excess);
        if attempt.outcome == Some(AttemptOutcome::Interrupted) || shutdown.requested() {
            record.state = State::Interrupted;
            path.save(record)?;
            return Ok(0);
        }
        failures = if started.elapsed() >= HEALTHY_RUN { 1 } else { failures + 1 };
        record.state = State::BackingOff;
        path.save(record)?;
        let delay = backoff_delay(req.backoff, failures);
        log(&format!("the payload exited; restarting it in {}", humantime::format_duration(delay)));
        if shutdown.sleep(delay) {
            record.state = State::Interrupted;
            path.save(record)?;
            return Ok(0);
        }
    }
}

/// Runs one attempt to its end and records it; returns the finished attempt.
fn attempt<P: Platform>(
    platform: &P,
    req: &RunRequest,
    shutdown: &Shutdown,
    path: &RecordPath,
    record: &mut Record,
    timeout: Option<Duration>,
) -> Result<Attempt, RunError> {
    let number = record.attempts.last().map_or(1, |a| a.number + 1);
    record.attempts.push(Attempt {
        number,
        start_time: record::now(),
        end_time: None,
        pid: None,
        exit_code: None,
        outcome: None,
        timed_out: false,
        stats: None,
        message: String::new(),
    });
    record.state = State::Running;
    path.save(record)?;

    let mut finished = record.attempts.last().cloned().unwrap_or_else(|| unreachable!("pushed above"));
    let mut note = None;
    match platform.launch(&req.launch, &req.limits) {
        Err(e) => {
            log(&format!("attempt {number}: could not start the payload: {e}"));
            finished.outcome = Some(AttemptOutcome::LaunchFailed);
            finished.exit_code = Some(i64::from(EXIT_EXECUTOR_ERROR));
            finished.message = e.to_string();
        }
        Ok(mut job) => {
            finished.pid = Some(job.pid());
            if let Some(current) = record.attempts.last_mut() {
                current.pid = finished.pid;
            }
            path.save(record)?;
            log(&format!("attempt {number}: started process {}", job.pid()));
            note = job.note();
            if let Some(note) = &note {
                log(note);
            }
            let deadline = timeout.map(|t| Instant::now() + t);
            let ended = wait_for_job(&mut job, deadline, shutdown, req.wait_all, |code, left| {
                log(&format!(
                    "attempt {number}: the main process exited with {code}; waiting for the {left} process(es) it left in its job"
                ));
            })?;
            let stats = job.stats();
            finished.stats = Some(stats);
            match (ended, stats.limit_exceeded) {
                (Ended::Interrupted, _) => {
                    finished.outcome = Some(AttemptOutcome::Interrupted);
                    finished.message = "stopped with the executor before it finished".into();
                }
                (Ended::TimedOut, _) => {
                    finished.outcome = Some(AttemptOutcome::TimedOut);
                    finished.timed_out = true;
                    finished.exit_code = Some(i64::from(EXIT_TIMED_OUT));
                    let limit =
                        timeout.map(humantime::format_duration).map(|d| d.to_string()).unwrap_or_default();
                    finished.message = format!(
                        "ran longer than the timeout of {limit}; every process of its job was killed"
                    );
                }
                (Ended::Exited(code), Some(limit)) => {
                    finished.outcome = Some(AttemptOutcome::LimitExceeded);
                    finished.exit_code = Some(code);
                    finished.message = match limit {
                        LimitKind::Memory => format!(
                            "the job went over its memory limit of {} bytes (peak {} bytes) and was stopped",
                            req.limits.memory_bytes.unwrap_or_default(),
                            stats.peak_memory_bytes
                        ),
                        LimitKind::Processes => format!(
                            "the job went over its limit of {} processes and was stopped",
                            req.limits.processes.unwrap_or_default()
                        ),
                    };
                }
                (Ended::Exited(code), None) => {
                    finished.outcome = Some(AttemptOutcome::from_exit_code(code));
                    finished.exit_code = Some(code);
                    if let Some(status) = hostprocess_protocol::describe_status_code(code) {
                        finished.message = format!("the payload ended with {status}");
                    }
                }
            }
        }
    }
    if let Some(note) = note {
        finished.message =
            if finished.message.is_empty() { note } else { format!("{}; {note}", finished.message) };
    }
    finished.end_time = Some(record::now());
    log(&format!(
        "attempt {number}: {:?}{}",
        finished.outcome.unwrap_or(AttemptOutcome::Interrupted),
        finished.exit_code.map(|c| format!(", exit code {c}")).unwrap_or_default()
    ));
    if let Some(current) = record.attempts.last_mut() {
        *current = finished.clone();
    }
    Ok(finished)
}

/// The executor's exit code for a finished record: the payload's code, or the documented
/// code for a timeout or a limit.
fn final_exit_code(record: &Record) -> i32 {
    match record.attempts.last().and_then(|a| a.outcome) {
        Some(AttemptOutcome::TimedOut) => EXIT_TIMED_OUT,
        Some(AttemptOutcome::LimitExceeded) => EXIT_LIMIT_EXCEEDED,
        Some(AttemptOutcome::LaunchFailed) => EXIT_EXECUTOR_ERROR,
        _ => record.exit_code.and_then(|c| i32::try_from(c).ok()).unwrap_or(EXIT_EXECUTOR_ERROR),
    }
}

fn log(line: &str) {
    eprintln!("node-executor: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(30);
        assert_eq!(backoff_delay(base, 1), Duration::from_secs(30));
        assert_eq!(backoff_delay(base, 2), Duration::from_secs(60));
        assert_eq!(backoff_delay(base, 3), Duration::from_secs(120));
        assert_eq!(backoff_delay(base, 6), MAX_BACKOFF);
        assert_eq!(backoff_delay(base, 40), MAX_BACKOFF);
    }
}
