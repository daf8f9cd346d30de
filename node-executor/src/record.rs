//! The result record of a task on this node: what ran, when, and how it ended.
//!
//! It lives on the host (`<state-dir>/tasks/<task-uid>/<revision>.json`), so it outlives the
//! container: a restarted container reads it and does not run a completed `Once` payload
//! again for the same revision, and the readiness probe answers from it. The key includes the
//! task's UID, so a task deleted and created again under the same name runs again.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::platform::JobStats;

/// How a task stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// An attempt is running now.
    Running,
    /// Waiting before the next attempt.
    BackingOff,
    /// The payload exited 0.
    Succeeded,
    /// The payload succeeded and asked for a reboot (3010).
    RebootRequired,
    /// The payload succeeded and started a reboot (1641).
    RebootInitiated,
    /// Every attempt failed.
    Failed,
    /// The executor was stopped (signal, container stop) before the payload finished; the
    /// next start runs it again.
    Interrupted,
}

impl State {
    /// Whether a `Once` payload is done for this revision (never to run again).
    pub fn is_final(self) -> bool {
        matches!(self, State::Succeeded | State::RebootRequired | State::RebootInitiated | State::Failed)
    }

    /// Whether the payload did what it was asked.
    pub fn is_success(self) -> bool {
        matches!(self, State::Succeeded | State::RebootRequired | State::RebootInitiated)
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptOutcome {
    Succeeded,
    RebootRequired,
    RebootInitiated,
    /// Exited with a failing code.
    ExitCode,
    /// Killed at the timeout, with every process of its job.
    TimedOut,
    /// Killed for going over a job limit.
    LimitExceeded,
    /// Stopped because the executor was stopped.
    Interrupted,
    /// Did not start.
    LaunchFailed,
}

impl AttemptOutcome {
    /// What an exit code means when nothing else happened.
    pub fn from_exit_code(code: i64) -> Self {
        match code {
            0 => AttemptOutcome::Succeeded,
            3010 => AttemptOutcome::RebootRequired,
            1641 => AttemptOutcome::RebootInitiated,
            _ => AttemptOutcome::ExitCode,
        }
    }
}

/// One attempt of the payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub number: u32,
    pub start_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptOutcome>,
    #[serde(default)]
    pub timed_out: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<JobStats>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The record of one task revision on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// `namespace/name` of the HostTask, for people reading the file.
    pub task: String,
    pub task_uid: String,
    pub revision: String,
    pub mode: hostprocess_crds::Mode,
    pub state: State,
    /// The exit code that stands for the result (the last attempt's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// Attempts, oldest first (for `Continuous`, the latest 20).
    pub attempts: Vec<Attempt>,
}

impl Record {
    /// Attempts that count against the retry budget (an interrupted one was not the payload's fault).
    pub fn counted_attempts(&self) -> u32 {
        let n = self.attempts.iter().filter(|a| a.outcome != Some(AttemptOutcome::Interrupted)).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

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

/// Now, as RFC 3339 with seconds.
pub fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// What the readiness probe answers: ready, and why.
pub fn readiness(record: Option<&Record>) -> (bool, String) {
    match record {
        None => (false, "the payload has not run for this revision yet".into()),
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
        }
    }

    #[test]
    fn readiness_follows_the_record() {
        use hostprocess_crds::Mode::{Continuous, Once};
        assert!(!readiness(None).0);
        assert!(readiness(Some(&record(Once, State::Succeeded))).0);
        assert!(readiness(Some(&record(Once, State::RebootRequired))).0);
        assert!(!readiness(Some(&record(Once, State::Failed))).0);
        assert!(!readiness(Some(&record(Once, State::Running))).0);
        assert!(!readiness(Some(&record(Once, State::Interrupted))).0);
        assert!(readiness(Some(&record(Continuous, State::Running))).0);
        assert!(!readiness(Some(&record(Continuous, State::BackingOff))).0);
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
        for outcome in [AttemptOutcome::ExitCode, AttemptOutcome::Interrupted, AttemptOutcome::TimedOut] {
            r.attempts.push(Attempt {
                number: 0,
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
    }
}
