//! The self-test: runs the platform's real operations end to end and prints a pass/fail
//! table. On a real Windows Server host every check must pass. Under Wine, the checks that
//! Wine only stubs (job limits, CPU rate, local groups, ACLs) are reported as such instead of
//! as passes; on Linux the test platform is exercised.

use std::path::Path;
use std::time::{Duration, Instant};

use hostprocess_crds::{AppliesTo, Grant, HostGroupSpec, Rights};
use hostprocess_protocol::State;
use serde::Serialize;

use crate::platform::{Ace, Job, JobLimits, Launch, LimitKind, Platform};
use crate::provision::{self, Change};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    Pass,
    Fail,
    /// Failed under Wine, which does not implement what the check needs.
    NotOnWine,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub host: String,
    pub checks: Vec<Check>,
}

impl Report {
    /// All checks passed (under Wine: all that Wine can show).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.verdict != Verdict::Fail)
    }

    pub fn table(&self) -> String {
        let mut out = format!("self-test on {}\n", self.host);
        for c in &self.checks {
            let verdict = match c.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::NotOnWine => "WINE",
            };
            out.push_str(&format!("  {verdict:<4}  {:<40} {}\n", c.name, c.detail));
        }
        let wine = self.checks.iter().any(|c| c.verdict == Verdict::NotOnWine);
        if wine {
            out.push_str("  WINE: not implemented by Wine; verified only on a real Windows host\n");
        }
        out
    }
}

const GROUP: &str = "hpo-selftest";

/// The owner the self-test provisions its group for, as a HostGroup would be.
fn self_test_owner() -> provision::Owner {
    provision::Owner::HostGroup("self-test".into())
}

pub fn run<P: Platform>(platform: &P, state_dir: &Path, scratch: &Path, acl_path: &str) -> Report {
    let mut checks = vec![];
    let wine = platform.is_wine();
    let mut check = |name: &'static str, result: Result<String, String>, wine_gap: bool| {
        let (verdict, detail) = match result {
            Ok(detail) => (Verdict::Pass, detail),
            Err(detail) if wine && wine_gap => (Verdict::NotOnWine, detail),
            Err(detail) => (Verdict::Fail, detail),
        };
        checks.push(Check { name, verdict, detail });
    };
    let exe = std::env::current_exe().map(|p| p.into_os_string()).unwrap_or_default();
    let payload = |args: &[&str]| Launch {
        program: exe.clone(),
        args: std::iter::once("payload").chain(args.iter().copied()).map(Into::into).collect(),
    };
    check("exit code passes through", exit_code(platform, &payload(&["exit", "7"]), 7), false);
    #[cfg(windows)]
    check("no handle leaks into the payload", no_leak(platform, &payload), false);
    // 0xC0000005, an access violation: all 32 bits on Windows; Linux keeps the low 8 (5).
    let violation = if cfg!(windows) { -1_073_741_819 } else { 5 };
    check(
        "exit code 0xC0000005 passes through",
        exit_code(platform, &payload(&["exit", "-1073741819"]), violation),
        false,
    );
    check("a stop request ends the run gracefully", graceful_stop(platform, &exe, scratch), false);
    check("prepare grants the task account", prepare_grant(platform, scratch), true);
    check("state directory is the administrators' alone", state_dir_check(platform, state_dir), false);
    check("install replaces a planted binary", planted_binary(&scratch.join("install")), false);
    let tree_dir = scratch.join("tree");
    let tree_dir_arg = tree_dir.to_string_lossy().to_string();
    check(
        "killing the job kills the tree",
        kill_tree(platform, &payload(&["spawn-tree", "2", &tree_dir_arg]), &tree_dir),
        false,
    );
    let memory = JobLimits { memory_bytes: Some(64 << 20), ..JobLimits::default() };
    check(
        "memory limit is enforced",
        limit(platform, &payload(&["alloc", "256", "--seconds", "10"]), &memory, LimitKind::Memory),
        true,
    );
    let procs_dir = scratch.join("procs").to_string_lossy().to_string();
    let processes = JobLimits { processes: Some(2), ..JobLimits::default() };
    check(
        "process limit is enforced",
        limit(
            platform,
            &payload(&["spawn-tree", "4", &procs_dir, "--seconds", "10"]),
            &processes,
            LimitKind::Processes,
        ),
        true,
    );
    #[cfg(windows)]
    check("CPU rate under a capped job is scaled", cpu_under_cap(platform, &payload, scratch), true);
    let cpu = JobLimits { cpu_millis: Some(500), ..JobLimits::default() };
    check(
        "CPU rate limit is accepted",
        platform
            .launch(&payload(&["exit", "0"]), &cpu)
            .map(|mut j| {
                let _ = j.kill();
                if cfg!(unix) { "accepted (not enforced by the Linux test platform)" } else { "accepted" }
                    .to_string()
            })
            .map_err(|e| e.to_string()),
        true,
    );
    check("a built-in group is refused by SID", builtin_refused(platform), true);
    check("group, member and grant applied", groups(platform, state_dir, acl_path), true);
    #[cfg(windows)]
    check("net localgroup and icacls agree", windows_tools_agree(acl_path), true);
    #[cfg(windows)]
    check("a junction is refused as a grant target", junction_refused(platform, scratch, acl_path), true);
    check("second run changes nothing", second_run(platform, state_dir, acl_path), true);
    check("cleanup removes group and grant", cleanup(platform, state_dir, acl_path), true);
    let _ = std::fs::remove_dir_all(scratch);
    Report { host: platform.describe(), checks }
}

fn wait<J: Job>(job: &mut J, within: Duration) -> Result<Option<i64>, String> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Some(code) = job.poll(Duration::from_millis(50)).map_err(|e| e.to_string())? {
            return Ok(Some(code));
        }
    }
    Ok(None)
}

fn exit_code<P: Platform>(platform: &P, launch: &Launch, expected: i64) -> Result<String, String> {
    let mut job = platform.launch(launch, &JobLimits::default()).map_err(|e| e.to_string())?;
    match wait(&mut job, Duration::from_secs(30))? {
        Some(code) if code == expected => Ok(format!("exit code {code}")),
        other => Err(format!("expected exit code {expected}, got {other:?}")),
    }
}

/// An inheritable handle of the executor's (as its parent could leave one) is not in the payload.
#[cfg(windows)]
fn no_leak<P: Platform>(platform: &P, payload: &dyn Fn(&[&str]) -> Launch) -> Result<String, String> {
    let event = crate::platform::windows::InheritableEvent::new().map_err(|e| e.to_string())?;
    let value = event.value().to_string();
    let mut job = platform
        .launch(&payload(&["handle-open", &value]), &JobLimits::default())
        .map_err(|e| e.to_string())?;
    match wait(&mut job, Duration::from_secs(30))? {
        Some(0) => Ok(format!("inheritable handle {value} stayed out; only the standard handles passed")),
        other => Err(format!("the payload holds the executor's inheritable handle {value} (exit {other:?})")),
    }
}

/// Inside a job capped at one core, a payload asking for half a core gets a rate of half the
/// parent's (a nested job's rate is a share of its parent's), read back from the job itself.
#[cfg(windows)]
fn cpu_under_cap<P: Platform>(
    platform: &P,
    payload: &dyn Fn(&[&str]) -> Launch,
    scratch: &Path,
) -> Result<String, String> {
    let out = scratch.join("nested-cpu-rate.txt");
    let capped = JobLimits { cpu_millis: Some(1000), ..JobLimits::default() };
    let launch = payload(&["nested-cpu-rate", "500", &out.to_string_lossy()]);
    let mut job = platform.launch(&launch, &capped).map_err(|e| e.to_string())?;
    if wait(&mut job, Duration::from_secs(30))? != Some(0) {
        return Err("the probe payload failed".into());
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let field = |name: &str| {
        text.split_whitespace().find_map(|f| f.strip_prefix(name)).and_then(|v| v.parse::<u64>().ok())
    };
    let (Some(parent), Some(rate), Some(cpus)) = (field("parent="), field("rate="), field("cpus=")) else {
        return Err(format!("the probe saw no capped parent: {text}"));
    };
    let expected = u64::from(crate::cpu::nested_rate(500, cpus, u32::try_from(parent).ok()).rate);
    if rate == expected {
        Ok(format!("parent capped at {parent}/10000; 500m set as {rate}/10000 of it"))
    } else {
        Err(format!("parent {parent}: 500m set as {rate}, expected {expected}"))
    }
}

/// What the container runtime does when a pod is deleted, done to an executor running a payload
/// tree: it stops the job, records the attempt `Interrupted` and exits 143 (Windows: the console
/// shutdown event, which a HostProcess container receives without a console).
fn graceful_stop<P: Platform>(platform: &P, exe: &std::ffi::OsStr, scratch: &Path) -> Result<String, String> {
    let state = scratch.join("stop-state");
    let pid_dir = scratch.join("stop-pids");
    std::fs::create_dir_all(&pid_dir).map_err(|e| format!("{}: {e}", pid_dir.display()))?;
    let (uid, revision) = ("self-test-stop", "r1");
    let mut executor = std::process::Command::new(exe)
        .arg("--state-dir")
        .arg(&state)
        .args(["run", "--task", "self-test/stop", "--task-uid", uid, "--revision", revision, "--"])
        .arg(exe)
        .args(["payload", "spawn-tree", "2"])
        .arg(&pid_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting an executor: {e}"))?;
    let outcome = stop_started_executor(platform, &mut executor, &pid_dir);
    if outcome.is_err() {
        let _ = executor.kill();
        let _ = executor.wait();
    }
    let (code, pids) = outcome?;
    let alive: Vec<u32> = pids.iter().copied().filter(|p| platform.process_alive(*p)).collect();
    let record = crate::record::RecordPath::new(&state, uid, revision).load().map_err(|e| e.to_string())?;
    let recorded = record.map(|r| r.state);
    match (code, alive.is_empty(), recorded) {
        (Some(143), true, Some(State::Interrupted)) => {
            Ok(format!("exit code 143, record Interrupted, none of {} processes left", pids.len()))
        }
        _ => Err(format!("exit code {code:?}, record {recorded:?}, still alive: {alive:?}")),
    }
}

/// Waits until the executor's payload tree has started, asks the executor to stop and waits
/// for it to exit: its exit code and the tree's process ids.
fn stop_started_executor<P: Platform>(
    platform: &P,
    executor: &mut std::process::Child,
    pid_dir: &Path,
) -> Result<(Option<i32>, Vec<u32>), String> {
    let started = Instant::now() + Duration::from_secs(30);
    let pids = loop {
        let pids = pids_in(pid_dir);
        if pids.len() >= 3 {
            break pids;
        }
        if Instant::now() > started {
            return Err(format!("the payload tree did not start: {pids:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    platform.request_stop(executor.id()).map_err(|e| e.to_string())?;
    let exited = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = executor.try_wait().map_err(|e| e.to_string())? {
            return Ok((status.code(), pids));
        }
        if Instant::now() > exited {
            return Err("the executor did not exit within 30 s of the stop request".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The process ids a `spawn-tree` payload wrote as file names into `dir`.
fn pids_in(dir: &Path) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// What the init container of a task running as LocalService does: the task's folder gets one
/// explicit entry, Modify for that account, inherited below; a second time changes nothing.
fn prepare_grant<P: Platform>(platform: &P, scratch: &Path) -> Result<String, String> {
    let state = scratch.join("prepare-state");
    platform.create_private_dir(&state).map_err(|e| e.to_string())?;
    let (dir, account) =
        crate::prepare::task_dir(platform, &state, "self-test-prepare", Some(r"NT AUTHORITY\Local service"))?;
    let account = account.ok_or("no account")?;
    let shown = dir.to_string_lossy();
    let aces = platform.explicit_aces(&shown, &account).map_err(|e| e.to_string())?;
    let (rights, applies_to) = crate::prepare::TASK_DIR_RIGHTS;
    if aces != [Ace::new(rights, applies_to)] {
        return Err(format!("{account} has {aces:?} on {shown}"));
    }
    if let Some(change) =
        provision::grant_change(platform, &shown, &account, rights, applies_to).map_err(|e| e.to_string())?
    {
        return Err(format!("a second prepare would change it again: {}", change.command_line()));
    }
    #[cfg(windows)]
    {
        let shown_by_icacls = system_tool("icacls.exe", &[&shown])?;
        let wanted = format!("{account}:(OI)(CI)(M)").to_ascii_lowercase();
        if !shown_by_icacls.to_ascii_lowercase().contains(&wanted) {
            return Err(format!("icacls {shown} does not show {wanted}: {shown_by_icacls}"));
        }
    }
    Ok(format!("{account}: (OI)(CI)M on tasks\\self-test-prepare, unchanged the second time"))
}

fn state_dir_check<P: Platform>(platform: &P, state_dir: &Path) -> Result<String, String> {
    let security = platform.dir_security(state_dir).map_err(|e| e.to_string())?;
    match security.problems() {
        problems if problems.is_empty() => {
            let wine = if platform.is_wine() { " (Wine does not keep the protected flag)" } else { "" };
            Ok(format!("owner {}, nothing inherited, nobody else may write{wine}", security.owner))
        }
        problems => Err(problems.join("; ")),
    }
}

fn planted_binary(scratch_state: &Path) -> Result<String, String> {
    let (path, _) = crate::install::install(scratch_state)?;
    std::fs::write(&path, b"planted").map_err(|e| format!("planting {}: {e}", path.display()))?;
    let (path, replaced) = crate::install::install(scratch_state)?;
    let ours = std::env::current_exe().and_then(std::fs::read).map_err(|e| e.to_string())?;
    let there = std::fs::read(&path).map_err(|e| e.to_string())?;
    match (replaced, there == ours) {
        (true, true) => Ok("replaced with this executor".into()),
        _ => Err(format!("{} still holds what was planted", path.display())),
    }
}

fn kill_tree<P: Platform>(platform: &P, launch: &Launch, pid_dir: &Path) -> Result<String, String> {
    let mut job = platform.launch(launch, &JobLimits::default()).map_err(|e| e.to_string())?;
    let until = Instant::now() + Duration::from_secs(30);
    let pids = loop {
        let pids = pids_in(pid_dir);
        if pids.len() >= 3 || Instant::now() > until {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    job.kill().map_err(|e| e.to_string())?;
    let alive: Vec<u32> = pids.iter().copied().filter(|p| platform.process_alive(*p)).collect();
    match (pids.len(), alive.is_empty()) {
        (3, true) => Ok(format!("3 processes started, none left: {pids:?}")),
        (n, _) => Err(format!("{n} of 3 processes started; still alive after the kill: {alive:?}")),
    }
}

fn limit<P: Platform>(
    platform: &P,
    launch: &Launch,
    limits: &JobLimits,
    kind: LimitKind,
) -> Result<String, String> {
    let mut job = platform.launch(launch, limits).map_err(|e| e.to_string())?;
    let code = wait(&mut job, Duration::from_secs(30))?;
    let _ = job.kill();
    let stats = job.stats();
    if stats.limit_exceeded == Some(kind) {
        Ok(format!("the job hit its {kind:?} limit (exit code {code:?})"))
    } else {
        Err(format!("no {kind:?} limit reported (exit code {code:?}, stats {stats:?})"))
    }
}

fn spec(acl_path: &str) -> HostGroupSpec {
    HostGroupSpec {
        group_name: GROUP.into(),
        description: Some("hostprocess-operator self-test".into()),
        node_selector: None,
        tolerations: vec![],
        grants: vec![Grant {
            path: acl_path.to_string(),
            rights: Rights::ReadAndExecute,
            applies_to: AppliesTo::ThisFolderSubfoldersAndFiles,
        }],
        // A local account every Windows Server since 2016 has, and not a broad one (a HostGroup
        // may not add NT AUTHORITY\* or Everyone).
        members: vec!["DefaultAccount".into()],
        namespaces: vec![],
        rollout: Default::default(),
        deletion_policy: Default::default(),
    }
}

/// BUILTIN\Administrators (S-1-5-32-544, in any language) is never taken for a group of the
/// machine's own, which is what keeps a HostGroup from adopting it.
fn builtin_refused<P: Platform>(platform: &P) -> Result<String, String> {
    match platform.group_sid("Administrators").map_err(|e| e.to_string())? {
        Some(id) if !id.own_domain && id.sid.0 == "S-1-5-32-544" => {
            Ok(format!("Administrators is {}, not the machine's own", id.sid.0))
        }
        other => Err(format!("Administrators reads as {other:?}")),
    }
}

fn groups<P: Platform>(platform: &P, state_dir: &Path, acl_path: &str) -> Result<String, String> {
    let spec = spec(acl_path);
    let changes =
        provision::provision(platform, &spec, &self_test_owner(), state_dir).map_err(|e| e.to_string())?;
    let group = platform.group(GROUP).map_err(|e| e.to_string())?.ok_or("the group does not read back")?;
    let member =
        platform.lookup_account(&spec.members[0]).map_err(|e| e.to_string())?.ok_or("no member id")?;
    if group.description != "hostprocess-operator self-test" || !group.members.contains(&member) {
        return Err(format!("read back {group:?}"));
    }
    let aces = platform.explicit_aces(&spec.grants[0].path, GROUP).map_err(|e| e.to_string())?;
    let wanted = Ace::new(Rights::ReadAndExecute, AppliesTo::ThisFolderSubfoldersAndFiles);
    if aces != [wanted] {
        return Err(format!("the ACE reads back as {aces:?}"));
    }
    Ok(format!("{} changes, read back", changes.len()))
}

/// What Windows' own tools show after provisioning: `net localgroup` lists the member and
/// `icacls` the grant, in the notation the executor logs (names and flags are not localized).
#[cfg(windows)]
fn windows_tools_agree(acl_path: &str) -> Result<String, String> {
    let members = system_tool("net.exe", &["localgroup", GROUP])?;
    if !members.lines().any(|l| l.trim().eq_ignore_ascii_case("DefaultAccount")) {
        return Err(format!("net localgroup {GROUP} does not list DefaultAccount: {members}"));
    }
    let acl = system_tool("icacls.exe", &[acl_path])?;
    let wanted = format!("{GROUP}:(OI)(CI)(RX)").to_ascii_lowercase();
    if !acl.to_ascii_lowercase().contains(&wanted) {
        return Err(format!("icacls {acl_path} does not show {wanted}: {acl}"));
    }
    Ok("net localgroup lists DefaultAccount; icacls shows (OI)(CI)(RX)".into())
}

/// The standard output of a program of System32's.
#[cfg(windows)]
fn system_tool(program: &str, args: &[&str]) -> Result<String, String> {
    let system32 =
        format!(r"{}\System32", std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".into()));
    let out = std::process::Command::new(format!(r"{system32}\{program}"))
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A junction to the granted folder (what a user who may change a grant target would plant) is
/// refused, whether it is the target itself or on the way to it.
#[cfg(windows)]
fn junction_refused<P: Platform>(platform: &P, scratch: &Path, acl_path: &str) -> Result<String, String> {
    let link = scratch.join("junction").to_string_lossy().replace('/', "\\");
    let cmd =
        format!(r"{}\System32\cmd.exe", std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".into()));
    let made = std::process::Command::new(cmd)
        .args(["/d", "/c", "mklink", "/J", &link, acl_path])
        .output()
        .map_err(|e| format!("mklink: {e}"))?;
    if !made.status.success() {
        return Err(format!("could not make a junction: {}", String::from_utf8_lossy(&made.stdout)));
    }
    let inside = Path::new(acl_path).join("via");
    std::fs::create_dir_all(&inside).map_err(|e| format!("{}: {e}", inside.display()))?;
    for target in [link.clone(), format!(r"{link}\via")] {
        match platform.set_ace(&target, GROUP, Rights::Read, AppliesTo::ThisFolderOnly) {
            Err(e) if e.to_string().contains("never written through one") => {}
            Err(e) => return Err(format!("{target}: refused for another reason: {e}")),
            Ok(()) => return Err(format!("{target}: granted through a junction")),
        }
    }
    Ok("the junction and a path through it refused".into())
}

fn second_run<P: Platform>(platform: &P, state_dir: &Path, acl_path: &str) -> Result<String, String> {
    let changes = provision::provision(platform, &spec(acl_path), &self_test_owner(), state_dir)
        .map_err(|e| e.to_string())?;
    if changes.is_empty() { Ok("no changes".into()) } else { Err(format!("changed again: {changes:?}")) }
}

fn cleanup<P: Platform>(platform: &P, state_dir: &Path, acl_path: &str) -> Result<String, String> {
    // Revoke first and look while the group still exists (its entries are named by its SID).
    let revoked =
        provision::revoke(platform, GROUP, &[acl_path.to_string()], state_dir).map_err(|e| e.to_string())?;
    let aces = platform.explicit_aces(acl_path, GROUP).map_err(|e| e.to_string())?;
    let changes =
        provision::deprovision(platform, GROUP, &self_test_owner(), state_dir).map_err(|e| e.to_string())?;
    let gone = platform.group(GROUP).map_err(|e| e.to_string())?.is_none();
    let deleted = changes.iter().any(|c| matches!(c, Change::DeleteGroup { .. }));
    if gone && aces.is_empty() && deleted && !revoked.is_empty() {
        Ok(format!("{} changes; group and ACE gone", revoked.len() + changes.len()))
    } else {
        Err(format!("group gone: {gone}, ACEs left: {aces:?}, changes: {revoked:?} {changes:?}"))
    }
}
