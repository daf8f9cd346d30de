//! One function per subcommand: checks its input, calls the module that does the work, and says
//! what to print and which code to exit with.

use std::path::Path;
use std::time::Duration;

use hostprocess_crds::{Grant, HostGroupSpec, Mode, format, units};
use hostprocess_protocol::digest;
use hostprocess_protocol::{
    Cli, Command, GrantCommand, GroupCommand, Outcome, ProbeArgs, ResultLine, RunArgs, WaitForArg,
};

use crate::platform::host::Host;
use crate::platform::{JobLimits, Launch, Platform};
use crate::provision::{Change, Owner};
use crate::run::RunRequest;
use crate::shutdown::Shutdown;
use crate::state_dir::{self, Access};
use crate::{install, lock, payload, provision, record, run, sandbox, selftest};

/// What a subcommand prints on stdout, last.
#[derive(Debug)]
pub enum Output {
    /// The result line; its `command` is the invoked command's name (`Command::name`).
    Result { ok: bool, outcome: Outcome },
    /// `self-test` prints its report.
    SelfTest(selftest::Report),
    /// A test payload's output is the payload's own.
    Nothing,
}

/// What a subcommand reports: its output and the exit code.
#[derive(Debug)]
pub struct Reply {
    pub output: Output,
    pub code: i32,
}

impl Reply {
    fn ok(outcome: Outcome) -> Reply {
        Reply { output: Output::Result { ok: true, outcome }, code: 0 }
    }

    fn changes(changes: Vec<Change>) -> Reply {
        Reply::ok(Outcome::Changed { changed: !changes.is_empty(), changes })
    }
}

/// A refusal or failure: the message for stderr and the result line.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

pub fn execute(cli: Cli) -> Result<Reply, Failure> {
    let state_dir = cli.state_dir.clone();
    // A test payload is the program the executor runs, not the executor: no host, no state.
    if let Command::Payload(payload) = &cli.command {
        return Ok(Reply { output: Output::Nothing, code: payload::run(payload.clone()) });
    }
    let host = host(&cli)?;
    // Nothing in the state directory is read or written before it is known to be ours alone.
    let access = if matches!(cli.command, Command::Probe(_)) { Access::Check } else { Access::Prepare };
    state_dir::ensure(&host, &state_dir, access).map_err(Failure)?;
    // Groups and grants change one command at a time on a node: two HostGroups' setup pods,
    // or a setup pod and an administrator's command, never read and write the host's groups,
    // ACLs and ownership records interleaved.
    let _one_at_a_time = match cli.command {
        Command::Group(_) | Command::Grant(_) | Command::Provision { .. } | Command::Deprovision { .. } => {
            Some(lock::acquire_blocking(&state_dir.join("groups.lock"))?)
        }
        _ => None,
    };
    match &cli.command {
        Command::Payload(_) => unreachable!("answered above"),
        Command::Run(args) => run(&host, args, &state_dir, cli.command.name()),
        Command::Reboot { reason } => reboot(&host, reason),
        Command::Install => {
            let (path, installed) = install::install(&state_dir).map_err(Failure)?;
            Ok(Reply::ok(Outcome::Installed { path, installed }))
        }
        Command::Probe(args) => probe(args, &state_dir),
        Command::Prepare { task_uid, account, install } => {
            prepare(&host, &state_dir, task_uid, account.as_deref(), *install)
        }
        Command::Group(GroupCommand::Ensure { name, description, members }) => {
            let spec = HostGroupSpec {
                group_name: name.clone(),
                description: description.clone(),
                node_selector: None,
                tolerations: vec![],
                grants: vec![],
                members: members.clone(),
                namespaces: vec![],
                rollout: Default::default(),
                deletion_policy: Default::default(),
            };
            Ok(Reply::changes(provision::provision(&host, &spec, &Owner::Commands, &state_dir)?))
        }
        Command::Group(GroupCommand::Remove { name }) => {
            Ok(Reply::changes(provision::deprovision(&host, name, &Owner::Commands, &state_dir)?))
        }
        Command::Grant(GrantCommand::Apply { group, path, rights, applies_to }) => {
            let grant = Grant { path: path.clone(), rights: *rights, applies_to: *applies_to };
            Ok(Reply::changes(provision::grant(&host, group, &[grant], &state_dir)?))
        }
        Command::Grant(GrantCommand::Revoke { group, path }) => {
            let done = provision::revoke(&host, group, std::slice::from_ref(path), &state_dir)?;
            Ok(Reply::changes(done))
        }
        Command::Provision { spec, spec_sha256, owner } => {
            check_token("owner", owner)?;
            // A ConfigMap volume: at its mount path (containerd 1.7+) or under the sandbox (1.6).
            let spec = &sandbox::resolve_from_env(spec);
            let bytes =
                std::fs::read(spec).map_err(|e| Failure(format!("cannot read {}: {e}", spec.display())))?;
            digest::verify(&format!("the HostGroup spec {}", spec.display()), &bytes, spec_sha256)
                .map_err(Failure)?;
            let spec: HostGroupSpec = serde_json::from_slice(&bytes)
                .map_err(|e| Failure(format!("{} is not a HostGroup spec: {e}", spec.display())))?;
            let owner = Owner::HostGroup(owner.clone());
            Ok(Reply::changes(provision::provision(&host, &spec, &owner, &state_dir)?))
        }
        Command::Deprovision { group, owner } => {
            check_token("owner", owner)?;
            let owner = Owner::HostGroup(owner.clone());
            Ok(Reply::changes(provision::deprovision(&host, group, &owner, &state_dir)?))
        }
        Command::SelfTest { scratch } => self_test(&host, scratch.as_deref(), &state_dir),
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

fn run(platform: &Host, args: &RunArgs, state_dir: &Path, name: &str) -> Result<Reply, Failure> {
    let request = run_request(platform, args, state_dir)?;
    let shutdown = Shutdown::install().map_err(Failure)?;
    let ran = run::run(platform, &request, &shutdown)?;
    let state = ran.report.record.state;
    let ok = state.is_success() || state == record::State::Interrupted;
    let skipped = ran.report.skipped;
    let outcome = Outcome::Ran(ran.report);
    if args.idle_after && request.mode == Mode::Once && !shutdown.requested() {
        // The container that ran the payload leaves once with its result: the runtime reports
        // the exit code at once (0: success — no wait for the next readiness probe) and, for any
        // other code with `terminationMessagePolicy: FallbackToLogsOnError`, this result line.
        // The next container finds the record, does not run the payload again, and idles; the
        // probe answers from the record.
        if !skipped {
            return Ok(Reply { output: Output::Result { ok, outcome }, code: ran.exit_code });
        }
        // Report now; the record answers the probe while we idle.
        print_line(&ResultLine { ok, command: name.into(), outcome });
        shutdown.wait();
        return Ok(Reply::ok(Outcome::Stopped { stopped: true }));
    }
    Ok(Reply { output: Output::Result { ok, outcome }, code: ran.exit_code })
}

fn reboot(platform: &Host, reason: &str) -> Result<Reply, Failure> {
    // Only a report: the operator decided to restart from the payload's exit code.
    let pending = platform.reboot_pending().unwrap_or_else(|e| {
        eprintln!(
            "node-executor: cannot tell whether Windows has a restart pending ({e}); restarting anyway"
        );
        false
    });
    platform.request_reboot(reason)?;
    Ok(Reply::ok(Outcome::Rebooting { pending_confirmed: pending }))
}

fn prepare(
    platform: &Host,
    state_dir: &Path,
    task_uid: &str,
    account: Option<&str>,
    install: bool,
) -> Result<Reply, Failure> {
    check_token("task-uid", task_uid)?;
    let (task_dir, account) =
        crate::prepare::task_dir(platform, state_dir, task_uid, account).map_err(Failure)?;
    let installed = if install { Some(install::install(state_dir).map_err(Failure)?.0) } else { None };
    Ok(Reply::ok(Outcome::Prepared { task_dir, account, installed }))
}

fn probe(args: &ProbeArgs, state_dir: &Path) -> Result<Reply, Failure> {
    check_token("task-uid", &args.task_uid)?;
    check_token("revision", &args.revision)?;
    let record = record::RecordPath::new(state_dir, &args.task_uid, &args.revision).load()?;
    let (ready, reason) = record::readiness(record.as_ref(), std::time::SystemTime::now());
    let outcome = Outcome::Probed { ready, reason, state: record.map(|r| r.state) };
    Ok(Reply { code: if ready { 0 } else { 1 }, ..Reply::ok(outcome) })
}

fn self_test(platform: &Host, scratch: Option<&Path>, state_dir: &Path) -> Result<Reply, Failure> {
    // Beside the state directory, not in it: no grant may reach the executor's own state.
    let scratch =
        scratch.map_or_else(|| state_dir.with_file_name("hostprocess-operator-self-test"), Path::to_path_buf);
    let _ = std::fs::remove_dir_all(&scratch);
    // The grant needs a Windows path; on Linux it lives in the test store.
    #[cfg(windows)]
    let (acl_path, acl_dir) = (scratch.join("acl").to_string_lossy().replace('/', r"\"), scratch.join("acl"));
    #[cfg(unix)]
    let (acl_path, acl_dir) = {
        let path = r"C:\ProgramData\hpo-selftest\acl".to_string();
        let dir = platform.host_path(&path);
        (path, dir)
    };
    std::fs::create_dir_all(&acl_dir)
        .map_err(|e| Failure(format!("cannot create {}: {e}", acl_dir.display())))?;
    let report = selftest::run(platform, state_dir, &scratch, &acl_path);
    let _ = std::fs::remove_dir_all(&acl_dir);
    eprint!("{}", report.table());
    let code = if report.passed() { 0 } else { 1 };
    Ok(Reply { output: Output::SelfTest(report), code })
}

/// Prints a result line on stdout (the last line of the container's output), within the bytes
/// a termination message keeps (`ResultLine::to_line`).
pub fn print_line(line: &ResultLine) {
    println!("{}", line.to_line());
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
    if let Some(retry) = &args.retry {
        check_token("retry", retry)?;
    }
    let mode = Mode::from(args.mode);
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
            let bytes = std::fs::read(&script)
                .map_err(|e| Failure(format!("cannot read the script {}: {e}", script.display())))?;
            let expected = args.script_sha256.as_deref().unwrap_or_default();
            digest::verify(&format!("the script {}", script.display()), &bytes, expected).map_err(Failure)?;
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
    let health_check = match args.health_check.split_first() {
        None => None,
        Some((program, rest)) => {
            if program.is_empty() {
                return Err(Failure(hostprocess_crds::messages::HEALTH_CHECK_EMPTY.into()));
            }
            let timeout = args.health_check_timeout.as_deref().unwrap_or("5m");
            format::HEALTH_CHECK_TIMEOUT.check(timeout)?;
            Some(crate::health::HealthCheck {
                launch: Launch {
                    program: sandbox::resolve_from_env(Path::new(program)).into_os_string(),
                    args: rest.to_vec(),
                },
                timeout: units::parse_duration(timeout).unwrap_or(Duration::from_secs(300)),
                after_restart: args.health_check_after_restart,
            })
        }
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
        wait_all: args.wait_for == WaitForArg::All,
        retry: args.retry.clone(),
        health_check,
        state_dir: state_dir.to_path_buf(),
    })
}
