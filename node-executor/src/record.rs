//! The result record of a task on this node: what ran, when, and how it ended.
//!
//! It lives on the host (`<state-dir>/tasks/<task-uid>/<revision>.json`), so it outlives the
//! container: a restarted container reads it and does not run a completed `Once` payload
//! again for the same revision, and the readiness probe answers from it. The key includes the
//! task's UID, so a task deleted and created again under the same name runs again.

use std::fs;
use std::path::{Path, PathBuf};

pub use hostprocess_protocol::{Attempt, AttemptOutcome, HealthState, Record, State};

use crate::atomic_file;

/// Where the records of one task revision live.
#[derive(Debug, Clone)]
pub struct RecordPath(PathBuf);

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read the result record {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the result record {path} is damaged ({source}); remove it to run the task again on this node")]
    Damaged { path: PathBuf, source: serde_json::Error },
    #[error("cannot write the result record {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl RecordPath {
    /// The record of `revision` of the task with `task_uid` under `state_dir`. The caller has
    /// checked that uid and revision are plain tokens (no path separators).
    pub fn new(state_dir: &Path, task_uid: &str, revision: &str) -> Self {
        RecordPath(state_dir.join("tasks").join(task_uid).join(format!("{revision}.json")))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The lock an executor holds while it runs this revision (`<revision>.lock`, beside it).
    pub fn lock_path(&self) -> PathBuf {
        self.0.with_extension("lock")
    }

    pub fn load(&self) -> Result<Option<Record>, RecordError> {
        match fs::read(&self.0) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| RecordError::Damaged { path: self.0.clone(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RecordError::Read { path: self.0.clone(), source }),
        }
    }

    pub fn save(&self, record: &Record) -> Result<(), RecordError> {
        let write_err = |source| RecordError::Write { path: self.0.clone(), source };
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| write_err(std::io::Error::other(e)))?;
        atomic_file::write(&self.0, &bytes).map_err(write_err)
    }
}

/// Now, as RFC 3339 with milliseconds (attempts on different nodes can be ordered).
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// When the record's last attempt ended.
pub fn last_end(record: &Record) -> Option<std::time::SystemTime> {
    let ended = record.attempts.last()?.end_time.as_deref()?;
    humantime::parse_rfc3339(ended).ok()
}

/// When the host started, if it started again after the record's last attempt ended (the
/// restart a payload asked for or started); `None` when it has not (or the attempt never ended).
pub fn booted_after_last_attempt<P: crate::platform::Platform>(
    platform: &P,
    record: &Record,
) -> Result<Option<std::time::SystemTime>, crate::platform::PlatformError> {
    let Some(ended) = last_end(record) else { return Ok(None) };
    let booted = platform.booted_at()?;
    Ok((booted > ended).then_some(booted))
}

/// How long a payload that started the node's restart itself (1641) is waited for: after it,
/// the run counts as done with a restart still to come (the operator carries it out with
/// `reboot: IfRequired`).
pub const SELF_RESTART_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// What the readiness probe answers at `now`: ready, and why.
pub fn readiness(record: Option<&Record>, now: std::time::SystemTime) -> (bool, String) {
    match record {
        None => (false, "the payload has not run for this revision yet".into()),
        Some(r)
            if r.mode == hostprocess_crds::Mode::Once
                && r.state == State::RebootInitiated
                && r.rebooted_at.is_none() =>
        {
            match last_end(r).and_then(|e| now.duration_since(e).ok()) {
                Some(waited) if waited >= SELF_RESTART_WAIT => (
                    true,
                    "the payload said it restarts the node (1641), which did not restart within 30m".into(),
                ),
                _ => (false, "the payload started the node's restart (1641); waiting for it".into()),
            }
        }
        Some(r) if r.health_check == Some(HealthState::Pending) => {
            (false, "the payload succeeded; its health check has not run yet".into())
        }
        Some(r) => match (r.mode, r.state) {
            (hostprocess_crds::Mode::Once, s) if s.is_final() && s.is_success() => {
                (true, format!("the payload finished: {s:?}"))
            }
            (hostprocess_crds::Mode::Once, State::Failed) => {
                (false, format!("the payload failed after {} attempts", r.counted_attempts()))
            }
            (hostprocess_crds::Mode::Continuous, State::Running) => (true, "the payload is running".into()),
            (_, s) => (false, format!("the payload is {s:?}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mode: hostprocess_crds::Mode, state: State) -> Record {
        Record {
            task: "ns/t".into(),
            task_uid: "uid".into(),
            revision: "r1".into(),
            mode,
            state,
            exit_code: None,
            attempts: vec![],
            retry: None,
            retry_after: 0,
            rebooted_at: None,
            health_check: None,
        }
    }

    #[test]
    fn readiness_follows_the_record() {
        use hostprocess_crds::Mode::{Continuous, Once};
        let now = std::time::SystemTime::now();
        assert!(!readiness(None, now).0);
        assert!(readiness(Some(&record(Once, State::Succeeded)), now).0);
        assert!(readiness(Some(&record(Once, State::RebootRequired)), now).0);
        assert!(!readiness(Some(&record(Once, State::Failed)), now).0);
        assert!(!readiness(Some(&record(Once, State::Running)), now).0);
        assert!(!readiness(Some(&record(Once, State::Interrupted)), now).0);
        assert!(readiness(Some(&record(Continuous, State::Running)), now).0);
        assert!(!readiness(Some(&record(Continuous, State::BackingOff)), now).0);
        // A payload that restarts the node itself: not ready until the node restarted, or
        // until the wait is over.
        let mut restarting = record(Once, State::RebootInitiated);
        restarting.attempts.push(Attempt {
            number: 1,
            start_time: "2026-12-02T10:00:00Z".into(),
            end_time: Some("2026-12-02T10:01:00Z".into()),
            pid: None,
            exit_code: Some(1641),
            outcome: Some(AttemptOutcome::RebootInitiated),
            timed_out: false,
            stats: None,
            message: String::new(),
        });
        let at = |t: &str| humantime::parse_rfc3339(t).expect("time");
        assert!(!readiness(Some(&restarting), at("2026-12-02T10:05:00Z")).0);
        assert!(readiness(Some(&restarting), at("2026-12-02T10:31:00Z")).0, "waited 30m");
        restarting.rebooted_at = Some("2026-12-02T10:02:00Z".into());
        assert!(readiness(Some(&restarting), at("2026-12-02T10:05:00Z")).0);
    }

    #[test]
    fn saved_records_load_back_and_a_damaged_one_says_how_to_recover() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = RecordPath::new(dir.path(), "uid-1", "abc");
        assert_eq!(path.load().expect("absent"), None);
        let mut r = record(hostprocess_crds::Mode::Once, State::Succeeded);
        r.attempts.push(Attempt {
            number: 1,
            start_time: now(),
            end_time: Some(now()),
            pid: Some(42),
            exit_code: Some(0),
            outcome: Some(AttemptOutcome::Succeeded),
            timed_out: false,
            stats: None,
            message: String::new(),
        });
        path.save(&r).expect("saves");
        assert_eq!(path.load().expect("loads"), Some(r));
        fs::write(path.path(), b"{not json").expect("write");
        let err = path.load().expect_err("damaged").to_string();
        assert!(err.contains("remove it to run the task again"), "{err}");
    }

    #[test]
    fn interrupted_attempts_do_not_count_against_retries() {
        let mut r = record(hostprocess_crds::Mode::Once, State::Interrupted);
        for (number, outcome) in
            (1..).zip([AttemptOutcome::ExitCode, AttemptOutcome::Interrupted, AttemptOutcome::TimedOut])
        {
            r.attempts.push(Attempt {
                number,
                start_time: now(),
                end_time: None,
                pid: None,
                exit_code: None,
                outcome: Some(outcome),
                timed_out: false,
                stats: None,
                message: String::new(),
            });
        }
        assert_eq!(r.counted_attempts(), 2);
        // A retry round counts its own attempts only.
        r.retry_after = 1;
        assert_eq!(r.counted_attempts(), 1);
    }
}
