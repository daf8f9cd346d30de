//! The one JSON line every subcommand prints last on stdout, and the record of a task revision
//! it carries. The kubelet keeps the end of a container's output as its termination message
//! (`FallbackToLogsOnError`), so the operator reads a node's result from the pod's status:
//! `ResultLine::parse_last` finds the line, and its types say what it holds.

use std::path::PathBuf;

use hostprocess_crds::{AppliesTo, Rights};
use serde::{Deserialize, Serialize};

/// The result line: whether the subcommand did what it was asked, which one it was, and what it
/// has to say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultLine {
    pub ok: bool,
    /// The subcommand, as typed: `run`, `group ensure`, `provision`, …
    pub command: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// How the executor's refusals that will not pass by themselves begin: bad input, an unknown
/// member, a missing path, a group another HostGroup manages — nothing was changed, and running
/// the same command again gives the same answer until the spec or the node changes.
pub const REFUSED_NOTHING_CHANGED: &str = "refused, nothing changed";

/// The longest result line printed, in bytes: with its newline it is within the 2,048 bytes of
/// output the kubelet keeps as a termination message.
pub const RESULT_LINE_LIMIT: usize = 2000;

/// `text`, at most `chars` characters, marked when cut.
fn shortened(text: &str, chars: usize) -> String {
    if text.chars().count() <= chars {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// What a subcommand has to say; which one is told by the fields present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Outcome {
    /// The executor refused its input or could not do what it was asked.
    Refused { error: String },
    /// `run`: the record of the revision on this node.
    Ran(RunReport),
    /// `run --idle-after`: stopped while idling after the payload.
    Stopped { stopped: bool },
    /// `probe`: whether the container is ready, and why.
    Probed { ready: bool, reason: String, state: Option<State> },
    /// `group`, `grant`, `provision`, `deprovision`: what changed on the host.
    Changed { changed: bool, changes: Vec<Change> },
    /// `reboot`: the restart was requested; whether the OS itself said one was pending.
    Rebooting {
        #[serde(rename = "pendingConfirmed")]
        pending_confirmed: bool,
    },
    /// `prepare`: the task's folder, the account that may write in it, and where the executor
    /// was installed (with `--install`).
    Prepared {
        #[serde(rename = "taskDir")]
        task_dir: PathBuf,
        account: Option<String>,
        installed: Option<PathBuf>,
    },
    /// `install`: where the executor is on the host, and whether this call copied it there.
    Installed { path: PathBuf, installed: bool },
}

impl ResultLine {
    /// A success of `command`.
    pub fn ok(command: &str, outcome: Outcome) -> Self {
        ResultLine { ok: true, command: command.into(), outcome }
    }

    /// A refusal of `command`.
    pub fn refused(command: &str, error: impl Into<String>) -> Self {
        ResultLine { ok: false, command: command.into(), outcome: Outcome::Refused { error: error.into() } }
    }

    /// The line as printed: its JSON, at most `RESULT_LINE_LIMIT` bytes. The kubelet keeps the
    /// last 2,048 bytes of a container's output as its termination message, so a longer line
    /// would reach the operator cut at its start and unreadable. By design a line over the limit
    /// is made shorter, losing detail and never meaning: a record keeps its state, exit code and
    /// last attempt (numbered, so the count survives) with its message shortened; a list of
    /// changes keeps its head; an error keeps its start.
    pub fn to_line(&self) -> String {
        let fits = |line: &ResultLine| {
            serde_json::to_string(line).ok().filter(|text| text.len() <= RESULT_LINE_LIMIT)
        };
        if let Some(text) = fits(self) {
            return text;
        }
        let mut line = self.clone();
        match &mut line.outcome {
            Outcome::Ran(report) => {
                let last = report.record.attempts.pop();
                report.record.attempts = last.into_iter().collect();
                for attempt in &mut report.record.attempts {
                    attempt.message = shortened(&attempt.message, 512);
                }
            }
            Outcome::Changed { changed, changes } => {
                // Each change is one short object: keep as many as the limit holds.
                let mut kept = changes.clone();
                while !kept.is_empty() {
                    let trial = ResultLine {
                        outcome: Outcome::Changed { changed: *changed, changes: kept.clone() },
                        ..self.clone()
                    };
                    if fits(&trial).is_some() {
                        break;
                    }
                    kept.truncate(kept.len() * 3 / 4);
                }
                *changes = kept;
            }
            Outcome::Refused { error } => *error = shortened(error, 1024),
            _ => {}
        }
        fits(&line).unwrap_or_else(|| {
            let error = format!("the result of {:?} does not fit a termination message", line.command);
            serde_json::to_string(&ResultLine::refused(&line.command, error)).unwrap_or_default()
        })
    }

    /// The last line of `output` that is a result line (a termination message holds the end of
    /// the payload's output, then the result).
    pub fn parse_last(output: &str) -> Option<ResultLine> {
        output.lines().rev().find_map(|line| serde_json::from_str(line.trim()).ok())
    }

    /// Whether the executor refused for a reason that lasts (`REFUSED_NOTHING_CHANGED`).
    pub fn lasting_refusal(&self) -> bool {
        self.error().is_some_and(|e| e.starts_with(REFUSED_NOTHING_CHANGED))
    }

    /// The refusal's reason, if the executor refused.
    pub fn error(&self) -> Option<&str> {
        match &self.outcome {
            Outcome::Refused { error } => Some(error),
            _ => None,
        }
    }

    /// The record, if this is `run`'s result.
    pub fn run(&self) -> Option<&RunReport> {
        match &self.outcome {
            Outcome::Ran(report) => Some(report),
            _ => None,
        }
    }

    /// Whether the payload succeeded and asked for a reboot (3010) or started one (1641).
    pub fn asks_for_reboot(&self) -> bool {
        self.run().is_some_and(|r| matches!(r.record.state, State::RebootRequired | State::RebootInitiated))
    }
}

/// `run`'s result: the record, and whether this call ran anything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// True when the record says this revision already finished, so nothing ran.
    pub skipped: bool,
    pub record_path: PathBuf,
    #[serde(flatten)]
    pub record: Record,
}

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
    /// The payload succeeded, but the health check after it failed or timed out.
    HealthCheckFailed,
}

/// A Windows exit code (the 32 bits `GetExitCodeProcess` reports) in the signed form
/// Kubernetes, PowerShell's `$LASTEXITCODE` and `%ERRORLEVEL%` show: 0xC0000005 is
/// -1073741819, `exit -1` is -1. Every code keeps all its bits.
pub fn exit_code_from_windows(code: u32) -> i64 {
    i64::from(i32::from_ne_bytes(code.to_ne_bytes()))
}

/// A negative exit code as the hexadecimal status Windows documents, with what it usually means:
/// `0xC0000005 (access violation)`. `None` for codes from 0 up, which programs choose themselves.
pub fn describe_status_code(code: i64) -> Option<String> {
    let bits = u32::from_ne_bytes(i32::try_from(code).ok().filter(|c| *c < 0)?.to_ne_bytes());
    let meaning = match bits {
        0xC000_0005 => Some("access violation"),
        0xC000_0017 => Some("out of memory"),
        0xC000_00FD => Some("stack overflow"),
        0xC000_0135 => Some("a DLL it needs was not found"),
        0xC000_0142 => Some("a DLL failed to initialize"),
        0xC000_013A => Some("ended by Ctrl-C or a console close"),
        0xC000_0409 => Some("stack buffer overrun or fail-fast abort"),
        0xE043_4352 => Some("unhandled .NET exception"),
        0xFFFF_FFFF => Some("exit -1"),
        _ => None,
    };
    Some(match meaning {
        Some(meaning) => format!("0x{bits:08X} ({meaning})"),
        None => format!("0x{bits:08X}"),
    })
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
    /// The retry round (`retryFailed`) the latest attempts belong to, when one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
    /// Attempts numbered up to this one belong to earlier rounds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retry_after: u32,
    /// When the node started again after the restart the payload started itself (1641).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebooted_at: Option<String>,
    /// Where the health check stands, for a task that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthState>,
}

/// Where a task's health check stands on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthState {
    /// The payload succeeded; the check runs once the node is back from its restart.
    Pending,
    Passed,
    /// The check failed: the record's state is `Failed`, the last attempt says why.
    Failed,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Record {
    /// Attempts of this round that count against the retry budget (an interrupted one was not
    /// the payload's fault).
    pub fn counted_attempts(&self) -> u32 {
        let n = self
            .attempts
            .iter()
            .filter(|a| a.number > self.retry_after && a.outcome != Some(AttemptOutcome::Interrupted))
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

impl AttemptOutcome {
    /// Its name as the result line spells it (`ExitCode`, `TimedOut`, …).
    pub fn name(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "Succeeded",
            AttemptOutcome::RebootRequired => "RebootRequired",
            AttemptOutcome::RebootInitiated => "RebootInitiated",
            AttemptOutcome::ExitCode => "ExitCode",
            AttemptOutcome::TimedOut => "TimedOut",
            AttemptOutcome::LimitExceeded => "LimitExceeded",
            AttemptOutcome::Interrupted => "Interrupted",
            AttemptOutcome::LaunchFailed => "LaunchFailed",
            AttemptOutcome::HealthCheckFailed => "HealthCheckFailed",
        }
    }
}

/// Which limit a job ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LimitKind {
    Memory,
    Processes,
}

/// Accounting of a job, from the OS's job accounting where there is one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStats {
    /// The most memory the job's processes used at once, in bytes.
    pub peak_memory_bytes: u64,
    /// User plus kernel CPU time of every process of the job, in milliseconds.
    pub cpu_time_ms: u64,
    /// Processes of the job alive now.
    pub active_processes: u32,
    /// A limit the job ran into, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_exceeded: Option<LimitKind>,
}

/// One change made on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "camelCase")]
pub enum Change {
    CreateGroup {
        group: String,
    },
    SetDescription {
        group: String,
        description: String,
    },
    AddMember {
        group: String,
        member: String,
    },
    RemoveMember {
        group: String,
        member: String,
    },
    DeleteGroup {
        group: String,
    },
    #[serde(rename_all = "camelCase")]
    SetGrant {
        path: String,
        group: String,
        rights: Rights,
        applies_to: AppliesTo,
    },
    RevokeGrant {
        path: String,
        group: String,
    },
}

impl Change {
    /// The same change as an administrator would make it by hand (`net localgroup`, `icacls`),
    /// for the log: what the executor did can be read, audited and replayed.
    pub fn command_line(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('"', "\\\""));
        match self {
            Change::CreateGroup { group } => format!("net localgroup {} /add", q(group)),
            Change::SetDescription { group, description } => {
                format!("net localgroup {} /comment:{}", q(group), q(description))
            }
            Change::AddMember { group, member } => format!("net localgroup {} {} /add", q(group), q(member)),
            Change::RemoveMember { group, member } => {
                format!("net localgroup {} {} /delete", q(group), q(member))
            }
            Change::DeleteGroup { group } => format!("net localgroup {} /delete", q(group)),
            Change::SetGrant { path, group, rights, applies_to } => format!(
                "icacls {} /grant:r {}",
                q(path),
                q(&format!("{group}:{}{}", applies_to.icacls(), rights.icacls()))
            ),
            Change::RevokeGrant { path, group } => format!("icacls {} /remove:g {}", q(path), q(group)),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn changes_read_as_the_commands_an_administrator_would_type() {
        let grant = Change::SetGrant {
            path: r"C:\data".into(),
            group: "AppLogReaders".into(),
            rights: Rights::ReadAndExecute,
            applies_to: AppliesTo::ThisFolderSubfoldersAndFiles,
        };
        assert_eq!(grant.command_line(), r#"icacls "C:\data" /grant:r "AppLogReaders:(OI)(CI)RX""#);
        let member = Change::AddMember { group: "AppLogReaders".into(), member: "svc-app".into() };
        assert_eq!(member.command_line(), r#"net localgroup "AppLogReaders" "svc-app" /add"#);
        let described = Change::SetDescription { group: "g".into(), description: r#"say "hi""#.into() };
        assert_eq!(described.command_line(), r#"net localgroup "g" /comment:"say \"hi\"""#);
        let revoke = Change::RevokeGrant { path: r"D:\logs".into(), group: "g".into() };
        assert_eq!(revoke.command_line(), r#"icacls "D:\logs" /remove:g "g""#);
    }

    #[test]
    fn every_bit_of_a_windows_exit_code_survives() {
        assert_eq!(exit_code_from_windows(0), 0);
        assert_eq!(exit_code_from_windows(3010), 3010);
        assert_eq!(exit_code_from_windows(0xC000_0005), -1_073_741_819);
        assert_eq!(exit_code_from_windows(u32::MAX), -1);
        assert_eq!(exit_code_from_windows(0x7FFF_FFFF), i64::from(i32::MAX));
        assert_eq!(describe_status_code(-1_073_741_819).as_deref(), Some("0xC0000005 (access violation)"));
        assert_eq!(describe_status_code(-1).as_deref(), Some("0xFFFFFFFF (exit -1)"));
        assert_eq!(describe_status_code(-2).as_deref(), Some("0xFFFFFFFE"));
        assert_eq!(describe_status_code(3010), None);
        assert_eq!(describe_status_code(0), None);
    }
    use super::*;

    fn record(state: State) -> Record {
        Record {
            task: "ops/patch".into(),
            task_uid: "u-1".into(),
            revision: "r1".into(),
            mode: hostprocess_crds::Mode::Once,
            state,
            exit_code: Some(3010),
            attempts: vec![Attempt {
                number: 1,
                start_time: "2026-12-01T00:00:00Z".into(),
                end_time: Some("2026-12-01T00:01:00Z".into()),
                pid: Some(42),
                exit_code: Some(3010),
                outcome: Some(AttemptOutcome::RebootRequired),
                timed_out: false,
                stats: Some(JobStats {
                    peak_memory_bytes: 1,
                    cpu_time_ms: 2,
                    active_processes: 0,
                    limit_exceeded: None,
                }),
                message: String::new(),
            }],
            retry: None,
            retry_after: 0,
            rebooted_at: None,
            health_check: None,
        }
    }

    #[test]
    fn every_outcome_round_trips_and_is_told_apart() {
        let lines = [
            ResultLine::refused("provision", "the group name is a built-in group"),
            ResultLine::ok(
                "run",
                Outcome::Ran(RunReport {
                    skipped: false,
                    record_path: "/r.json".into(),
                    record: record(State::RebootRequired),
                }),
            ),
            ResultLine::ok("run", Outcome::Stopped { stopped: true }),
            ResultLine::ok(
                "probe",
                Outcome::Probed { ready: true, reason: "done".into(), state: Some(State::Succeeded) },
            ),
            ResultLine::ok(
                "grant apply",
                Outcome::Changed {
                    changed: true,
                    changes: vec![Change::SetGrant {
                        path: r"C:\logs".into(),
                        group: "G".into(),
                        rights: Rights::Modify,
                        applies_to: AppliesTo::ThisFolderOnly,
                    }],
                },
            ),
            ResultLine::ok("reboot", Outcome::Rebooting { pending_confirmed: false }),
            ResultLine::ok("install", Outcome::Installed { path: "/bin/x".into(), installed: true }),
        ];
        for line in lines {
            let text = serde_json::to_string(&line).unwrap_or_default();
            assert_eq!(ResultLine::parse_last(&format!("payload output\n{text}\n")), Some(line), "{text}");
        }
    }

    /// What the kubelet keeps of a container's output: its last 2,048 bytes.
    fn termination_message(output: &str) -> &str {
        let mut start = output.len().saturating_sub(2048);
        while !output.is_char_boundary(start) {
            start += 1;
        }
        &output[start..]
    }

    #[test]
    fn a_long_result_still_reaches_the_operator_whole_through_a_termination_message() {
        let mut long = record(State::Failed);
        long.attempts = (1..=11)
            .map(|n| Attempt { number: n, message: "é".repeat(700), ..long.attempts[0].clone() })
            .collect();
        let report = RunReport { skipped: false, record_path: "/r.json".into(), record: long };
        let line = ResultLine { ok: false, command: "run".into(), outcome: Outcome::Ran(report) };
        assert!(
            serde_json::to_string(&line).unwrap_or_default().len() > 2048,
            "a line the kubelet would cut"
        );
        let output = format!("{}\n{}\n", "payload output\n".repeat(500), line.to_line());
        let read = ResultLine::parse_last(termination_message(&output)).expect("the whole line");
        let record = &read.run().expect("still a run result").record;
        assert_eq!(record.state, State::Failed);
        assert_eq!(record.exit_code, Some(3010));
        let last = record.attempts.last().expect("the last attempt");
        assert_eq!(last.number, 11, "the count survives");
        assert!(last.message.ends_with('…') && last.message.chars().count() == 512);

        let changes = (0..200)
            .map(|i| Change::SetGrant {
                path: format!(r"C:\data\{i:04}"),
                group: "G".into(),
                rights: Rights::Modify,
                applies_to: AppliesTo::ThisFolderOnly,
            })
            .collect();
        let line = ResultLine::ok("provision", Outcome::Changed { changed: true, changes });
        let text = line.to_line();
        assert!(text.len() <= RESULT_LINE_LIMIT);
        assert!(matches!(
            ResultLine::parse_last(&text).map(|l| l.outcome),
            Some(Outcome::Changed { changed: true, .. })
        ));
        let refused = ResultLine::refused("provision", "x".repeat(5000)).to_line();
        assert_eq!(
            ResultLine::parse_last(&refused).and_then(|l| l.error().map(str::len)),
            Some(1026),
            "1024 characters, the last one '…' (3 bytes)"
        );
        let short = ResultLine::refused("run", "no");
        assert_eq!(
            short.to_line(),
            serde_json::to_string(&short).unwrap_or_default(),
            "a short line is unchanged"
        );
    }

    #[test]
    fn the_line_keeps_the_keys_the_executor_always_wrote() {
        let ran = ResultLine::ok(
            "run",
            Outcome::Ran(RunReport {
                skipped: true,
                record_path: "/r.json".into(),
                record: record(State::Failed),
            }),
        );
        let value = serde_json::to_value(&ran).unwrap_or_default();
        for key in [
            "ok",
            "command",
            "skipped",
            "recordPath",
            "task",
            "taskUid",
            "revision",
            "state",
            "exitCode",
            "attempts",
        ] {
            assert!(value.get(key).is_some(), "{key} in {value}");
        }
        let refused = serde_json::to_value(ResultLine::refused("run", "no")).unwrap_or_default();
        assert_eq!(refused, serde_json::json!({"ok": false, "command": "run", "error": "no"}));
        assert!(ran.run().is_some() && !ran.asks_for_reboot());
        assert_eq!(ResultLine::parse_last("no result here\n{\"other\": 1}"), None);
    }
}
