//! node-executor: the entrypoint of every HostProcess container the operator creates.
//!
//! Every subcommand prints a one-line JSON result on stdout (for `run`, after the payload's own
//! output: it is the last line) and human-readable progress and errors on stderr.

mod atomic_file;
#[cfg(any(windows, test))]
mod cmdline;
mod payload;
mod platform;
mod provision;
mod record;
mod run;
mod sandbox;
mod selftest;
mod shutdown;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use hostprocess_crds::{AppliesTo, Grant, HostGroupSpec, Mode, Rights, format, units};
use serde_json::{Value, json};

use crate::platform::host::Host;
use crate::platform::{JobLimits, Launch, Platform};
use crate::run::{EXIT_EXECUTOR_ERROR, RunRequest};
use crate::shutdown::Shutdown;

/// Runs administrative payloads on a Windows node inside HostProcess containers: each payload
/// in its own job object with limits and a timeout, local groups and their members, file-system
/// grants. Exit codes: the payload's own; 121 a job limit was exceeded; 124 timed out; 125 the
/// executor refused its input or could not set up the job; 143 stopped before the payload finished.
#[derive(Debug, Parser)]
#[command(name = "node-executor", version, max_term_width = 100)]
struct Cli {
    /// Where result and ownership records live on the host (they outlive the container).
    #[arg(long, env = "HOSTPROCESS_STATE_DIR", global = true, default_value_os_t = default_state_dir())]
    state_dir: PathBuf,

    /// Linux only: the file-backed account and ACL store that stands for Windows in tests and
    /// the simulated cluster (default: <state-dir>/test-store).
    #[cfg(unix)]
    #[arg(long, env = "HOSTPROCESS_TEST_STORE", global = true)]
    test_store: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a payload in a new job object (every process it starts included) with limits and a
    /// timeout; record the result so that a `Once` payload never runs twice for a revision.
    Run(RunArgs),
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
    },
    /// Undo what `provision` did for a group: revoke its grants, delete the group if this
    /// executor created it (else remove the members it added).
    Deprovision {
        #[arg(long)]
        group: String,
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
    /// Check the platform for real: job limits, process-tree kill, groups, ACLs; prints a
    /// pass/fail table. Meant for a real Windows host; says which checks Wine cannot show.
    SelfTest {
        /// A scratch directory for the ACL checks (created and removed).
        #[arg(long)]
        scratch: Option<PathBuf>,
    },
    /// Test payloads (the executor doubles as the program it runs in tests).
    #[command(subcommand, hide = true)]
    Payload(payload::Payload),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// `namespace/name` of the HostTask (for records and logs).
    #[arg(long)]
    task: String,
    /// The HostTask's UID: a task re-created under the same name runs again.
    #[arg(long)]
    task_uid: String,
    /// The task revision; a `Once` payload runs once per revision.
    #[arg(long)]
    revision: String,
    #[arg(long, value_enum, default_value_t = ModeArg::Once)]
    mode: ModeArg,
    /// Kill the whole job after this long, like 30m or 1h30m (`Once` only).
    #[arg(long)]
    timeout: Option<String>,
    /// Memory limit of the job, like 512Mi or 2Gi.
    #[arg(long)]
    memory: Option<String>,
    /// CPU limit of the job, like 500m or 2.
    #[arg(long)]
    cpu: Option<String>,
    /// Most processes alive in the job at once.
    #[arg(long)]
    processes: Option<u32>,
    /// Attempts after the first failure (`Once`).
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// First wait before a retry or restart, doubled each time, at most 10m.
    #[arg(long, default_value = "30s")]
    backoff: String,
    /// A PowerShell script file to run instead of a command.
    #[arg(long, conflicts_with = "command")]
    script: Option<PathBuf>,
    /// After a `Once` payload finished, stay up (ready per the record) until stopped, as a
    /// DaemonSet pod must: exiting would re-run it. A result other than exit code 0 first
    /// exits once with that code, so the container runtime records it; the restarted
    /// container finds the record and idles without running the payload again.
    #[arg(long)]
    idle_after: bool,
    /// The program and its arguments, after `--`.
    #[arg(last = true, required_unless_present = "script")]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Once,
    Continuous,
}

#[derive(Debug, clap::Args)]
struct ProbeArgs {
    #[arg(long)]
    task_uid: String,
    #[arg(long)]
    revision: String,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
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

#[derive(Debug, Subcommand)]
enum GrantCommand {
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

/// Where `install` puts this version of the executor under the state directory.
fn installed_path(state_dir: &Path) -> PathBuf {
    let file = if cfg!(windows) { "node-executor.exe" } else { "node-executor" };
    state_dir.join("bin").join(env!("CARGO_PKG_VERSION")).join(file)
}

/// Copies the running executable to `installed_path` unless it is there already; the copy is
/// written beside it and renamed, so a half-written executable is never run.
fn install(state_dir: &Path) -> Result<(PathBuf, bool), Failure> {
    let target = installed_path(state_dir);
    if target.is_file() {
        return Ok((target, false));
    }
    let io = |what: &str, e: std::io::Error| Failure(format!("install: {what}: {e}"));
    let source = std::env::current_exe().map_err(|e| io("finding this executable", e))?;
    let dir = target.parent().unwrap_or(state_dir);
    std::fs::create_dir_all(dir).map_err(|e| io(&format!("creating {}", dir.display()), e))?;
    let partial = dir.join(format!(".partial-{}", std::process::id()));
    std::fs::copy(&source, &partial).map_err(|e| io(&format!("copying to {}", partial.display()), e))?;
    std::fs::rename(&partial, &target).map_err(|e| io(&format!("renaming to {}", target.display()), e))?;
    Ok((target, true))
}

fn default_state_dir() -> PathBuf {
    if cfg!(windows) {
        let program_data =
            std::env::var_os("ProgramData").unwrap_or_else(|| OsString::from(r"C:\ProgramData"));
        PathBuf::from(program_data).join("hostprocess-operator")
    } else {
        PathBuf::from("/var/lib/hostprocess-operator")
    }
}

/// What a subcommand reports: the JSON line and the exit code.
struct Outcome {
    json: Value,
    code: i32,
}

/// A refusal or failure: the message for stderr and the JSON line.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = command_name(&cli.command);
    let code = match execute(cli) {
        Ok(Outcome { json, code }) => {
            if !json.is_null() {
                println!("{json}");
            }
            code
        }
        Err(Failure(message)) => {
            eprintln!("node-executor {name}: {message}");
            println!("{}", json!({ "ok": false, "command": name, "error": message }));
            EXIT_EXECUTOR_ERROR
        }
    };
    // Exit codes are 32-bit on Windows (3010 passes through); Linux keeps the low 8 bits.
    std::process::exit(code)
}

fn command_name(command: &Command) -> &'static str {
    match command {
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
        Command::Reboot { .. } => "reboot",
        Command::Payload(_) => "payload",
    }
}

fn host(cli: &Cli) -> Result<Host, Failure> {
    #[cfg(unix)]
    {
        let store = cli.test_store.clone().unwrap_or_else(|| cli.state_dir.join("test-store"));
        Ok(Host::new(store)?)
    }
    #[cfg(windows)]
    {
        let _ = cli;
        Ok(Host::new())
    }
}

fn execute(cli: Cli) -> Result<Outcome, Failure> {
    let state_dir = cli.state_dir.clone();
    let changes = |name: &str, changes: Vec<provision::Change>| Outcome {
        json: json!({ "ok": true, "command": name, "changed": !changes.is_empty(), "changes": changes }),
        code: 0,
    };
    match &cli.command {
        Command::Payload(_) | Command::Probe(_) => {}
        _ => std::fs::create_dir_all(&state_dir).map_err(|e| {
            Failure(format!("cannot create the state directory {}: {e}", state_dir.display()))
        })?,
    }
    match cli.command {
        // A test payload's output is the payload's own: no result line.
        Command::Payload(payload) => Ok(Outcome { json: Value::Null, code: payload::run(payload) }),
        Command::Run(ref args) => {
            let platform = host(&cli)?;
            let request = run_request(&platform, args, &state_dir)?;
            let shutdown = Shutdown::install()?;
            let report = run::run(&platform, &request, &shutdown)?;
            let mut json = serde_json::to_value(&report)?;
            json["ok"] =
                json!(report.record.state.is_success() || report.record.state == record::State::Interrupted);
            json["command"] = json!("run");
            if args.idle_after && request.mode == Mode::Once && !shutdown.requested() {
                // The container that ran the payload leaves once with its result: the runtime
                // reports the exit code at once (0: success — no wait for the next readiness
                // probe) and, for any other code with `terminationMessagePolicy:
                // FallbackToLogsOnError`, this result line. The next container finds the record,
                // does not run the payload again, and idles; the probe answers from the record.
                if !report.skipped {
                    return Ok(Outcome { json, code: report.exit_code });
                }
                // Report now; the record answers the probe while we idle.
                println!("{json}");
                shutdown.wait();
                return Ok(Outcome {
                    json: json!({ "ok": true, "command": "run", "stopped": true }),
                    code: 0,
                });
            }
            Ok(Outcome { json, code: report.exit_code })
        }
        Command::Reboot { ref reason } => {
            let platform = host(&cli)?;
            let pending = platform.reboot_pending()?;
            platform.request_reboot(reason)?;
            Ok(Outcome {
                json: json!({ "ok": true, "command": "reboot", "pendingConfirmed": pending }),
                code: 0,
            })
        }
        Command::Install => {
            let (path, installed) = install(&state_dir)?;
            Ok(Outcome {
                json: json!({ "ok": true, "command": "install", "path": path, "installed": installed }),
                code: 0,
            })
        }
        Command::Probe(args) => {
            check_token("task-uid", &args.task_uid)?;
            check_token("revision", &args.revision)?;
            let record = record::RecordPath::new(&state_dir, &args.task_uid, &args.revision).load()?;
            let (ready, reason) = record::readiness(record.as_ref());
            Ok(Outcome {
                json: json!({ "ok": true, "command": "probe", "ready": ready, "reason": reason, "state": record.map(|r| r.state) }),
                code: if ready { 0 } else { 1 },
            })
        }
        Command::Group(GroupCommand::Ensure { ref name, ref description, ref members }) => {
            let spec = HostGroupSpec {
                group_name: name.clone(),
                description: description.clone(),
                node_selector: None,
                tolerations: vec![],
                grants: vec![],
                members: members.clone(),
                deletion_policy: Default::default(),
            };
            let platform = host(&cli)?;
            let done = provision::provision(&platform, &spec, &state_dir)?;
            Ok(changes("group ensure", done))
        }
        Command::Group(GroupCommand::Remove { ref name }) => {
            Ok(changes("group remove", provision::deprovision(&host(&cli)?, name, &state_dir)?))
        }
        Command::Grant(GrantCommand::Apply { ref group, ref path, rights, applies_to }) => {
            let grant = Grant { path: path.clone(), rights, applies_to };
            Ok(changes("grant apply", provision::grant(&host(&cli)?, group, &[grant], &state_dir)?))
        }
        Command::Grant(GrantCommand::Revoke { ref group, ref path }) => Ok(changes(
            "grant revoke",
            provision::revoke(&host(&cli)?, group, std::slice::from_ref(path), &state_dir)?,
        )),
        Command::Provision { ref spec } => {
            // A ConfigMap volume: at its mount path (containerd 1.7+) or under the sandbox (1.6).
            let spec = &sandbox::resolve_from_env(spec);
            let text = std::fs::read_to_string(spec)
                .map_err(|e| Failure(format!("cannot read {}: {e}", spec.display())))?;
            let spec: HostGroupSpec = serde_json::from_str(&text)
                .map_err(|e| Failure(format!("{} is not a HostGroup spec: {e}", spec.display())))?;
            Ok(changes("provision", provision::provision(&host(&cli)?, &spec, &state_dir)?))
        }
        Command::Deprovision { ref group } => {
            Ok(changes("deprovision", provision::deprovision(&host(&cli)?, group, &state_dir)?))
        }
        Command::SelfTest { ref scratch } => {
            let platform = host(&cli)?;
            let scratch = scratch.clone().unwrap_or_else(|| state_dir.join("self-test"));
            let _ = std::fs::remove_dir_all(&scratch);
            // The grant needs a Windows path; on Linux it lives in the test store.
            #[cfg(windows)]
            let (acl_path, acl_dir) =
                (scratch.join("acl").to_string_lossy().replace('/', r"\"), scratch.join("acl"));
            #[cfg(unix)]
            let (acl_path, acl_dir) = {
                let path = r"C:\ProgramData\hpo-selftest\acl".to_string();
                let dir = platform.host_path(&path);
                (path, dir)
            };
            std::fs::create_dir_all(&acl_dir)
                .map_err(|e| Failure(format!("cannot create {}: {e}", acl_dir.display())))?;
            let report = selftest::run(&platform, &state_dir, &scratch, &acl_path);
            let _ = std::fs::remove_dir_all(&acl_dir);
            eprint!("{}", report.table());
            Ok(Outcome { json: serde_json::to_value(&report)?, code: if report.passed() { 0 } else { 1 } })
        }
    }
}

/// Task UIDs and revisions become file names: plain tokens only.
fn check_token(what: &str, value: &str) -> Result<(), Failure> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !value.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Failure(format!(
            "{what} {value:?} must be 1 to 128 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

fn run_request<P: Platform>(platform: &P, args: &RunArgs, state_dir: &Path) -> Result<RunRequest, Failure> {
    check_token("task-uid", &args.task_uid)?;
    check_token("revision", &args.revision)?;
    let mode = match args.mode {
        ModeArg::Once => Mode::Once,
        ModeArg::Continuous => Mode::Continuous,
    };
    let timeout = match &args.timeout {
        Some(_) if mode == Mode::Continuous => {
            return Err(Failure(hostprocess_crds::messages::TIMEOUT_ONLY_ONCE.into()));
        }
        Some(t) => {
            format::TIMEOUT.check(t)?;
            units::parse_duration(t)
        }
        None => None,
    };
    format::BACKOFF.check(&args.backoff)?;
    let backoff = units::parse_duration(&args.backoff).unwrap_or(Duration::from_secs(30));
    if args.retries > 10 {
        return Err(Failure("retries must be between 0 and 10".into()));
    }
    let mut limits = JobLimits::default();
    if let Some(memory) = &args.memory {
        format::MEMORY.check(memory)?;
        limits.memory_bytes = units::parse_memory(memory);
    }
    if let Some(cpu) = &args.cpu {
        format::CPU.check(cpu)?;
        limits.cpu_millis = units::parse_cpu(cpu);
    }
    if let Some(processes) = args.processes {
        if !(1..=10_000).contains(&processes) {
            return Err(Failure("processes must be between 1 and 10000".into()));
        }
        limits.processes = Some(processes);
    }
    let launch = match (&args.script, args.command.split_first()) {
        (Some(script), _) => {
            let script = sandbox::resolve_from_env(script);
            if !script.is_file() {
                return Err(Failure(format!("the script {} does not exist", script.display())));
            }
            platform.script_command(script)
        }
        (None, Some((program, rest))) => {
            if program.is_empty() {
                return Err(Failure(hostprocess_crds::messages::COMMAND_EMPTY.into()));
            }
            Launch {
                program: sandbox::resolve_from_env(Path::new(program)).into_os_string(),
                args: rest.to_vec(),
            }
        }
        (None, None) => return Err(Failure("give the program to run after `--`, or --script".into())),
    };
    Ok(RunRequest {
        task: args.task.clone(),
        task_uid: args.task_uid.clone(),
        revision: args.revision.clone(),
        mode,
        launch,
        limits,
        timeout,
        retries: args.retries,
        backoff,
        state_dir: state_dir.to_path_buf(),
    })
}
