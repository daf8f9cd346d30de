//! The node-executor's command line: the parser the executor runs (`Cli::parse`) and, for each
//! subcommand, the arguments that produce it (`Command::to_args`). Both come from the same types,
//! and `to_args` is tested to parse back to the value it came from.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use hostprocess_crds::{AppliesTo, Mode, Rights};
use serde_json::Value;

/// Runs administrative payloads on a Windows node inside HostProcess containers: each payload
/// in its own job object with limits and a timeout, local groups and their members, file-system
/// grants. Exit codes: the payload's own; 121 a job limit was exceeded; 124 timed out; 125 the
/// executor refused its input or could not set up the job; 143 stopped before the payload finished.
#[derive(Debug, Parser)]
#[command(name = "node-executor", version, max_term_width = 100)]
pub struct Cli {
    /// Where result and ownership records live on the host (they outlive the container).
    #[arg(long, env = "HOSTPROCESS_STATE_DIR", global = true, default_value_os_t = default_state_dir())]
    pub state_dir: PathBuf,

    /// Linux only: the file-backed account and ACL store that stands for Windows in tests and
    /// the simulated cluster (default: <state-dir>/test-store).
    #[cfg(unix)]
    #[arg(long, env = "HOSTPROCESS_TEST_STORE", global = true)]
    pub test_store: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// Where the executor keeps its records by default: `%ProgramData%\hostprocess-operator` on
/// Windows, `/var/lib/hostprocess-operator` elsewhere.
pub fn default_state_dir() -> PathBuf {
    if cfg!(windows) {
        let program_data =
            std::env::var_os("ProgramData").unwrap_or_else(|| OsString::from(r"C:\ProgramData"));
        PathBuf::from(program_data).join("hostprocess-operator")
    } else {
        PathBuf::from("/var/lib/hostprocess-operator")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run a payload in a new job object (every process it starts included) with limits and a
    /// timeout; record the result so that a `Once` payload never runs twice for a revision.
    Run(Box<RunArgs>),
    /// Readiness: exit 0 when the record says the payload succeeded (`Once`) or is running
    /// (`Continuous`), 1 otherwise.
    Probe(ProbeArgs),
    /// Local groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// File-system grants for a local group.
    #[command(subcommand)]
    Grant(GrantCommand),
    /// Make the host match a HostGroup spec (JSON file): group, description, members, grants.
    Provision {
        /// A JSON file with the HostGroup's `spec`.
        #[arg(long)]
        spec: PathBuf,
        /// The SHA-256 (lowercase hex) the spec file must have; any other spec is refused.
        #[arg(long)]
        spec_sha256: String,
        /// The HostGroup's uid: what is done is recorded for it, and a group another HostGroup
        /// manages on this host is refused.
        #[arg(long)]
        owner: String,
    },
    /// Undo what `provision` did for a group and HostGroup: revoke its grants, delete the group if
    /// it created it (else remove the members it added).
    Deprovision {
        #[arg(long)]
        group: String,
        /// The HostGroup's uid, as given to `provision`.
        #[arg(long)]
        owner: String,
    },
    /// Restart the host: for a node the operator drained after a payload exited 3010. Reports
    /// whether the OS itself says a reboot is pending (CBS / Windows Update registry keys).
    Reboot {
        /// Why, as the system's shutdown event records it.
        #[arg(long, default_value = "hostprocess-operator: a payload requires a reboot")]
        reason: String,
    },
    /// Copy this executable onto the host, into `<state-dir>/bin/<version>/`, for payload
    /// images that do not carry it (an init container runs this). Each version gets its own
    /// directory because Windows will not replace an executable that is running.
    Install,
    /// Get the node ready for a task's pod, as SYSTEM (an init container runs this): make sure
    /// the state directory is the administrators' alone, create the task's own folder in it and,
    /// for a task that runs as another account, let that account write there and nowhere else;
    /// with `--install`, also copy the executor onto the host.
    Prepare {
        /// The HostTask's UID: its folder is `<state-dir>/tasks/<uid>`.
        #[arg(long)]
        task_uid: String,
        /// The account the task's executor runs as, when it is not SYSTEM
        /// (`NT AUTHORITY\LOCAL SERVICE`, a HostGroup's group).
        #[arg(long)]
        account: Option<String>,
        /// Also copy the executor onto the host (`install`).
        #[arg(long)]
        install: bool,
    },
    /// Check the platform for real: job limits, process-tree kill, groups, ACLs; prints a
    /// pass/fail table. Meant for a real Windows host; says which checks Wine cannot show.
    SelfTest {
        /// A scratch directory for the ACL checks (created and removed).
        #[arg(long)]
        scratch: Option<PathBuf>,
    },
    /// Test payloads (the executor doubles as the program it runs in tests).
    #[command(subcommand, hide = true)]
    Payload(TestPayload),
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct RunArgs {
    /// `namespace/name` of the HostTask (for records and logs).
    #[arg(long)]
    pub task: String,
    /// The HostTask's UID: a task re-created under the same name runs again.
    #[arg(long)]
    pub task_uid: String,
    /// The task revision; a `Once` payload runs once per revision.
    #[arg(long)]
    pub revision: String,
    #[arg(long, value_enum, default_value_t = ModeArg::Once)]
    pub mode: ModeArg,
    /// Kill the whole job after this long, like 30m or 1h30m (`Once` only).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Memory limit of the job, like 512Mi or 2Gi.
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit of the job, like 500m or 2.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Most processes alive in the job at once.
    #[arg(long)]
    pub processes: Option<u32>,
    /// Attempts after the first failure (`Once`).
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// First wait before a retry or restart, doubled each time, at most 10m.
    #[arg(long, default_value = "30s")]
    pub backoff: String,
    /// When the payload counts as finished: when its main process exits (`main`; what it left
    /// running is killed), or when every process of its job has exited (`all`; bounded by the
    /// timeout).
    #[arg(long, value_enum, default_value_t = WaitForArg::Main)]
    pub wait_for: WaitForArg,
    /// A PowerShell script file to run instead of a command.
    #[arg(long, conflicts_with = "command", requires = "script_sha256")]
    pub script: Option<PathBuf>,
    /// The SHA-256 (lowercase hex) the script file must have; any other script is refused.
    #[arg(long, requires = "script")]
    pub script_sha256: Option<String>,
    /// After a `Once` payload finished, stay up (ready per the record) until stopped, as a
    /// DaemonSet pod must: exiting would re-run it. A result other than exit code 0 first
    /// exits once with that code, so the container runtime records it; the restarted
    /// container finds the record and idles without running the payload again.
    #[arg(long)]
    pub idle_after: bool,
    /// The retry round (`retryFailed`) in force: a `Once` revision recorded as failed under
    /// another round (or none) gets a new round of attempts; one that succeeded never runs again.
    #[arg(long)]
    pub retry: Option<String>,
    /// A health check to run after the payload succeeded, one word per flag
    /// (`--health-check=PROGRAM --health-check=ARG ...`); exit code 0 passes.
    #[arg(long = "health-check", action = clap::ArgAction::Append, allow_hyphen_values = true)]
    pub health_check: Vec<OsString>,
    /// How long the health check may run, like 5m.
    #[arg(long, requires = "health_check")]
    pub health_check_timeout: Option<String>,
    /// After a payload that asked for a restart (3010), run the health check once the node is
    /// back rather than at once (the operator restarts it: `reboot: IfRequired`).
    #[arg(long, requires = "health_check")]
    pub health_check_after_restart: bool,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required_unless_present = "script")]
    pub command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitForArg {
    Main,
    All,
}

impl From<hostprocess_crds::WaitFor> for WaitForArg {
    fn from(wait_for: hostprocess_crds::WaitFor) -> Self {
        match wait_for {
            hostprocess_crds::WaitFor::MainProcess => WaitForArg::Main,
            hostprocess_crds::WaitFor::AllProcesses => WaitForArg::All,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Once,
    Continuous,
}

impl From<Mode> for ModeArg {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Once => ModeArg::Once,
            Mode::Continuous => ModeArg::Continuous,
        }
    }
}

impl From<ModeArg> for Mode {
    fn from(mode: ModeArg) -> Self {
        match mode {
            ModeArg::Once => Mode::Once,
            ModeArg::Continuous => Mode::Continuous,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ProbeArgs {
    #[arg(long)]
    pub task_uid: String,
    #[arg(long)]
    pub revision: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum GroupCommand {
    /// Create the local group if missing, set its description, add members.
    Ensure {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// An account to add (`name` or `DOMAIN\name`); repeat for more.
        #[arg(long = "member")]
        members: Vec<String>,
    },
    /// Remove the group (if this executor created it) after revoking its grants.
    Remove {
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum GrantCommand {
    /// Grant rights on a path to a group (replacing the group's explicit entry there).
    Apply {
        #[arg(long)]
        group: String,
        #[arg(long)]
        path: String,
        #[arg(long, value_parser = parse_rights)]
        rights: Rights,
        #[arg(long, value_parser = parse_applies_to, default_value = "ThisFolderSubfoldersAndFiles")]
        applies_to: AppliesTo,
    },
    /// Remove the group's explicit entries on a path.
    Revoke {
        #[arg(long)]
        group: String,
        #[arg(long)]
        path: String,
    },
}

/// Test payloads: the executor binary doubles as the program it runs in tests (on Linux and
/// under Wine), so the tests need no PowerShell and no other tools. Hidden from `--help`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum TestPayload {
    /// Exit with a code.
    Exit {
        #[arg(allow_negative_numbers = true)]
        code: i32,
    },
    /// Sleep, then exit 0.
    Sleep { seconds: u64 },
    /// Append a line to a file (counts runs), then exit with a code.
    Count {
        file: PathBuf,
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        code: i32,
    },
    /// Run alone or fail: lock `marker` (exit 99 when another payload holds it), append a line
    /// to `count`, sleep.
    Alone {
        marker: PathBuf,
        count: PathBuf,
        #[arg(long, default_value_t = 1)]
        seconds: u64,
    },
    /// Act as an installer that relaunches itself: start a copy of this payload with `--child`
    /// and exit 0 at once; the copy sleeps, then appends a line to `marker`.
    Relaunch {
        marker: PathBuf,
        #[arg(long, default_value_t = 1)]
        seconds: u64,
        #[arg(long)]
        child: bool,
    },
    /// Start a child that starts a child … `depth` levels deep, each writing its pid to
    /// `pid_dir`, then every process sleeps.
    SpawnTree {
        depth: u32,
        pid_dir: PathBuf,
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
    },
    /// Ignore the stop requests the executor can catch (SIGTERM/SIGINT, console events), sleep.
    IgnoreStop {
        pid_dir: PathBuf,
        #[arg(long, default_value_t = 3600)]
        seconds: u64,
    },
    /// Allocate and touch `mb` MiB, 8 MiB at a time, then hold it.
    Alloc {
        mb: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
    /// Print the pids (of this OS) still alive among these; exit 0 when none is.
    Alive { pids: Vec<u32> },
    /// Write the time this process started running `main` (ns since the epoch) to a file.
    Stamp { file: PathBuf },
    /// Print what host this is ("Wine 8.0", "Windows", "Linux (test platform)").
    Describe,
    /// Write `parent=<rate|none> rate=<rate> cpus=<n>` to `out`: the CPU rate of the job this
    /// process runs in and the one the executor would give a payload asking for `millis`
    /// (Windows; exit 2 elsewhere).
    NestedCpuRate { millis: u64, out: PathBuf },
    /// Exit 0 when this process holds no handle (Windows) or file descriptor (Linux) with this
    /// value, 1 when it does: whether something leaked into it.
    HandleOpen { value: u64 },
}

fn parse_rights(s: &str) -> Result<Rights, String> {
    serde_json::from_value(Value::String(s.into()))
        .map_err(|_| format!("{s:?} is not one of Read, ReadAndExecute, Write, Modify, FullControl"))
}

fn parse_applies_to(s: &str) -> Result<AppliesTo, String> {
    serde_json::from_value(Value::String(s.into())).map_err(|_| {
        format!(
            "{s:?} is not one of ThisFolderOnly, ThisFolderSubfoldersAndFiles, ThisFolderAndSubfolders, \
             ThisFolderAndFiles, SubfoldersAndFilesOnly, SubfoldersOnly, FilesOnly"
        )
    })
}

/// A value's name as its serde (and CLI) spelling: `Modify`, `ThisFolderOnly`.
fn serde_name(value: impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => String::new(),
    }
}

/// Arguments built flag by flag.
#[derive(Debug, Default)]
struct Args(Vec<String>);

impl Args {
    fn word(mut self, word: &str) -> Self {
        self.0.push(word.to_string());
        self
    }

    fn flag(mut self, flag: &str, value: impl Into<String>) -> Self {
        self.0.extend([flag.to_string(), value.into()]);
        self
    }

    fn flag_opt(self, flag: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(value) => self.flag(flag, value),
            None => self,
        }
    }

    fn switch(mut self, flag: &str, on: bool) -> Self {
        if on {
            self.0.push(flag.to_string());
        }
        self
    }
}

fn path(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Command {
    /// The subcommand's name as the result line gives it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Run(_) => "run",
            Command::Probe(_) => "probe",
            Command::Group(GroupCommand::Ensure { .. }) => "group ensure",
            Command::Group(GroupCommand::Remove { .. }) => "group remove",
            Command::Grant(GrantCommand::Apply { .. }) => "grant apply",
            Command::Grant(GrantCommand::Revoke { .. }) => "grant revoke",
            Command::Provision { .. } => "provision",
            Command::Deprovision { .. } => "deprovision",
            Command::SelfTest { .. } => "self-test",
            Command::Install => "install",
            Command::Prepare { .. } => "prepare",
            Command::Reboot { .. } => "reboot",
            Command::Payload(_) => "payload",
        }
    }

    /// The arguments after the program name that make the executor run this command. Every
    /// value stays one argument: nothing here passes through a shell.
    pub fn to_args(&self) -> Vec<String> {
        let args = Args::default();
        let args = match self {
            Command::Run(run) => run.to_args(args.word("run")),
            Command::Probe(probe) => {
                args.word("probe").flag("--task-uid", &probe.task_uid).flag("--revision", &probe.revision)
            }
            Command::Group(GroupCommand::Ensure { name, description, members }) => {
                let args = args.word("group").word("ensure").flag("--name", name);
                let args = args.flag_opt("--description", description.as_deref());
                members.iter().fold(args, |args, m| args.flag("--member", m))
            }
            Command::Group(GroupCommand::Remove { name }) => {
                args.word("group").word("remove").flag("--name", name)
            }
            Command::Grant(GrantCommand::Apply { group, path, rights, applies_to }) => args
                .word("grant")
                .word("apply")
                .flag("--group", group)
                .flag("--path", path)
                .flag("--rights", serde_name(rights))
                .flag("--applies-to", serde_name(applies_to)),
            Command::Grant(GrantCommand::Revoke { group, path }) => {
                args.word("grant").word("revoke").flag("--group", group).flag("--path", path)
            }
            Command::Provision { spec, spec_sha256, owner } => args
                .word("provision")
                .flag("--spec", path(spec))
                .flag("--spec-sha256", spec_sha256)
                .flag("--owner", owner),
            Command::Deprovision { group, owner } => {
                args.word("deprovision").flag("--group", group).flag("--owner", owner)
            }
            Command::Reboot { reason } => args.word("reboot").flag("--reason", reason),
            Command::Install => args.word("install"),
            Command::Prepare { task_uid, account, install } => args
                .word("prepare")
                .flag("--task-uid", task_uid)
                .flag_opt("--account", account.as_deref())
                .switch("--install", *install),
            Command::SelfTest { scratch } => {
                args.word("self-test").flag_opt("--scratch", scratch.as_deref().map(path))
            }
            Command::Payload(payload) => payload.to_args(args.word("payload")),
        };
        args.0
    }
}

impl RunArgs {
    fn to_args(&self, args: Args) -> Args {
        let mode = match self.mode {
            ModeArg::Once => "once",
            ModeArg::Continuous => "continuous",
        };
        let args = args
            .flag("--task", &self.task)
            .flag("--task-uid", &self.task_uid)
            .flag("--revision", &self.revision)
            .flag("--mode", mode)
            .flag("--retries", self.retries.to_string())
            .flag("--backoff", &self.backoff)
            .flag(
                "--wait-for",
                match self.wait_for {
                    WaitForArg::Main => "main",
                    WaitForArg::All => "all",
                },
            )
            .flag_opt("--timeout", self.timeout.as_deref())
            .flag_opt("--memory", self.memory.as_deref())
            .flag_opt("--cpu", self.cpu.as_deref())
            .flag_opt("--processes", self.processes.map(|p| p.to_string()))
            .switch("--idle-after", self.idle_after)
            .flag_opt("--retry", self.retry.as_deref())
            .flag_opt("--health-check-timeout", self.health_check_timeout.as_deref())
            .switch("--health-check-after-restart", self.health_check_after_restart);
        // `--flag=value`: a word like `-NoProfile` stays a value.
        let mut args = args;
        args.0.extend(self.health_check.iter().map(|w| format!("--health-check={}", w.to_string_lossy())));
        match &self.script {
            Some(script) => {
                args.flag("--script", path(script)).flag_opt("--script-sha256", self.script_sha256.as_deref())
            }
            None => {
                let mut args = args.word("--");
                args.0.extend(self.command.iter().map(|word| word.to_string_lossy().into_owned()));
                args
            }
        }
    }
}

impl TestPayload {
    fn to_args(&self, args: Args) -> Args {
        match self {
            TestPayload::Exit { code } => args.word("exit").word(&code.to_string()),
            TestPayload::Sleep { seconds } => args.word("sleep").word(&seconds.to_string()),
            TestPayload::Count { file, code } => {
                args.word("count").word(&path(file)).flag("--code", code.to_string())
            }
            TestPayload::Alone { marker, count, seconds } => args
                .word("alone")
                .word(&path(marker))
                .word(&path(count))
                .flag("--seconds", seconds.to_string()),
            TestPayload::Relaunch { marker, seconds, child } => args
                .word("relaunch")
                .word(&path(marker))
                .flag("--seconds", seconds.to_string())
                .switch("--child", *child),
            TestPayload::SpawnTree { depth, pid_dir, seconds } => args
                .word("spawn-tree")
                .word(&depth.to_string())
                .word(&path(pid_dir))
                .flag("--seconds", seconds.to_string()),
            TestPayload::IgnoreStop { pid_dir, seconds } => {
                args.word("ignore-stop").word(&path(pid_dir)).flag("--seconds", seconds.to_string())
            }
            TestPayload::Alloc { mb, seconds } => {
                args.word("alloc").word(&mb.to_string()).flag("--seconds", seconds.to_string())
            }
            TestPayload::Alive { pids } => {
                pids.iter().fold(args.word("alive"), |args, pid| args.word(&pid.to_string()))
            }
            TestPayload::Stamp { file } => args.word("stamp").word(&path(file)),
            TestPayload::Describe => args.word("describe"),
            TestPayload::HandleOpen { value } => args.word("handle-open").word(&value.to_string()),
            TestPayload::NestedCpuRate { millis, out } => {
                args.word("nested-cpu-rate").word(&millis.to_string()).word(&path(out))
            }
        }
    }
}

impl Cli {
    /// Parses `args` (after the program name) as the executor would.
    pub fn parse_args(args: &[String]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("node-executor").chain(args.iter().map(String::as_str)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(command: Command) {
        let args = command.to_args();
        let parsed = Cli::parse_args(&args).unwrap_or_else(|e| panic!("{args:?} does not parse: {e}"));
        assert_eq!(parsed.command, command, "{args:?}");
    }

    fn run() -> RunArgs {
        RunArgs {
            task: "ops/patch".into(),
            task_uid: "u-1".into(),
            revision: "r1".into(),
            mode: ModeArg::Once,
            timeout: Some("1h".into()),
            memory: Some("512Mi".into()),
            cpu: Some("500m".into()),
            processes: Some(16),
            retries: 2,
            backoff: "10s".into(),
            wait_for: WaitForArg::All,
            script: None,
            script_sha256: None,
            idle_after: true,
            retry: Some("5f3a9c01".into()),
            health_check: vec![
                "powershell.exe".into(),
                "-NoProfile".into(),
                "-Command".into(),
                "exit (Get-HotFix KB1).Count -eq 0".into(),
            ],
            health_check_timeout: Some("2m".into()),
            health_check_after_restart: true,
            command: vec!["C:\\tools\\patch.exe".into(), "--quiet".into(), "a b \"c\"".into(), "-".into()],
        }
    }

    #[test]
    fn a_script_or_a_spec_comes_with_its_digest() {
        let parse = |args: &[&str]| Cli::parse_args(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
        let script = ["run", "--task", "ops/t", "--task-uid", "u", "--revision", "r", "--script", "s.ps1"];
        let refused = parse(&script).unwrap_err().to_string();
        assert!(refused.contains("--script-sha256"), "{refused}");
        assert!(
            parse(&["provision", "--spec", "spec.json"]).unwrap_err().to_string().contains("--spec-sha256")
        );
    }

    #[test]
    fn every_subcommand_round_trips_through_the_parser() {
        round_trip(Command::Run(Box::new(run())));
        round_trip(Command::Run(Box::new(RunArgs {
            mode: ModeArg::Continuous,
            timeout: None,
            memory: None,
            cpu: None,
            processes: None,
            script: Some(PathBuf::from(r"C:\hostprocess\task\script.ps1")),
            script_sha256: Some(crate::digest::sha256_hex(b"exit 0")),
            idle_after: false,
            retry: None,
            health_check: vec![],
            health_check_timeout: None,
            health_check_after_restart: false,
            wait_for: WaitForArg::Main,
            command: Vec::new(),
            ..run()
        })));
        round_trip(Command::Probe(ProbeArgs { task_uid: "u-1".into(), revision: "r1".into() }));
        round_trip(Command::Group(GroupCommand::Ensure {
            name: "AppLogReaders".into(),
            description: Some("reads the logs".into()),
            members: vec!["svc-app".into(), r"CONTOSO\ops".into()],
        }));
        round_trip(Command::Group(GroupCommand::Remove { name: "AppLogReaders".into() }));
        round_trip(Command::Grant(GrantCommand::Apply {
            group: "AppLogReaders".into(),
            path: r"C:\logs".into(),
            rights: Rights::ReadAndExecute,
            applies_to: AppliesTo::ThisFolderOnly,
        }));
        round_trip(Command::Grant(GrantCommand::Revoke { group: "G".into(), path: r"C:\logs".into() }));
        round_trip(Command::Provision {
            spec: PathBuf::from(r"C:\hostprocess\group\spec.json"),
            spec_sha256: crate::digest::sha256_hex(b"{}"),
            owner: "0b7c5e0a-9f1d-4c2e-8b3a-5d6e7f8a9b0c".into(),
        });
        round_trip(Command::Deprovision { group: "AppLogReaders".into(), owner: "0b7c".into() });
        round_trip(Command::Reboot { reason: "HostTask ops/patch needs a reboot".into() });
        round_trip(Command::Install);
        round_trip(Command::Prepare {
            task_uid: "u-1".into(),
            account: Some(r"NT AUTHORITY\LOCAL SERVICE".into()),
            install: true,
        });
        round_trip(Command::Prepare { task_uid: "u-1".into(), account: None, install: false });
        round_trip(Command::SelfTest { scratch: None });
        round_trip(Command::SelfTest { scratch: Some(PathBuf::from("/tmp/x")) });
        round_trip(Command::Payload(TestPayload::Exit { code: -1 }));
        round_trip(Command::Payload(TestPayload::SpawnTree {
            depth: 3,
            pid_dir: "/tmp/p".into(),
            seconds: 5,
        }));
        round_trip(Command::Payload(TestPayload::Alive { pids: vec![1, 2] }));
        round_trip(Command::Payload(TestPayload::Describe));
        round_trip(Command::Payload(TestPayload::HandleOpen { value: 1234 }));
        round_trip(Command::Payload(TestPayload::NestedCpuRate { millis: 500, out: "rate.txt".into() }));
        round_trip(Command::Payload(TestPayload::Relaunch { marker: "m".into(), seconds: 2, child: true }));
    }

    #[test]
    fn a_payload_word_that_looks_like_a_flag_stays_the_payload_s() {
        let mut args = run();
        args.command = vec!["cmd.exe".into(), "--revision".into(), "evil".into()];
        round_trip(Command::Run(Box::new(args)));
    }
}
