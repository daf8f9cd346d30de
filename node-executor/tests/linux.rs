//! The node-executor's Linux platform, for real: the binary runs real processes in a process
//! group under a subreaper, and keeps accounts and ACLs in its file-backed test store.
#![cfg(unix)]
// The whole crate is a test: its helpers may panic like #[test] functions do.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

mod common;

use common::{result, stderr, wait_for};

const EXE: &str = env!("CARGO_BIN_EXE_node-executor");

/// One node's host: a state directory with its test store.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Self {
        Node { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(EXE);
        cmd.arg("--state-dir").arg(self.state()).args(args);
        cmd
    }

    fn exec(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("runs")
    }

    /// `run` with a payload of the executor itself.
    fn run(&self, uid: &str, options: &[&str], payload: &[&str]) -> Output {
        let mut args = vec!["run", "--task", "tasks/t", "--task-uid", uid, "--revision", "r1"];
        args.extend_from_slice(options);
        args.extend(["--", EXE, "payload"]);
        args.extend_from_slice(payload);
        self.exec(&args)
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// A directory in the test store at a Windows path (`C:\X` is `<store>/fs/c/x`).
    fn mkdir(&self, windows_path: &str) {
        let mut p = self.state().join("test-store/fs");
        for part in windows_path.split('\\').filter(|p| !p.is_empty()) {
            p.push(part.trim_end_matches(':').to_lowercase());
        }
        fs::create_dir_all(p).expect("mkdir");
    }

    fn seed_accounts(&self, accounts: &[&str]) {
        let store = self.state().join("test-store");
        fs::create_dir_all(&store).expect("store");
        let json = serde_json::json!({ "accounts": accounts });
        fs::write(store.join("accounts.json"), json.to_string()).expect("seed");
    }

    /// Every file under the state directory with its content.
    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
            for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.insert(path.clone(), fs::read(&path).unwrap_or_default());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.state(), &mut out);
        out
    }
}

fn lines(path: &str) -> usize {
    fs::read_to_string(path).map(|s| s.lines().count()).unwrap_or(0)
}

fn pids_in(dir: &str) -> Vec<i32> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rfind(')').and_then(|i| s.get(i + 2..i + 3)) != Some("Z"))
        .unwrap_or(false)
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < until, "the executor did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn exit_codes_pass_through() {
    let node = Node::new();
    // Linux exit codes have 8 bits, so 3010 (reboot required) passes through only on Windows:
    // see the Wine tests.
    for (uid, code) in [("ok", 0), ("fails", 3), ("high", 250)] {
        let out = node.run(uid, &[], &["exit", &code.to_string()]);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        let json = result(&out);
        assert_eq!(json["attempts"][0]["exitCode"], code);
        assert_eq!(json["state"], if code == 0 { "Succeeded" } else { "Failed" });
    }
    // The test platform reads `exit 3010`'s 8-bit remainder (194) as the reboot code it was.
    let out = node.run("reboot", &[], &["exit", "3010"]);
    let json = result(&out);
    assert_eq!(
        (json["attempts"][0]["exitCode"].as_i64(), json["state"].as_str()),
        (Some(3010), Some("RebootRequired"))
    );
}

#[test]
fn timeout_kills_grandchildren_that_ignore_sigterm_or_escape_the_group() {
    let node = Node::new();
    let pids = node.path("pids");
    // sh is the payload; its children ignore SIGTERM, one of them in a new session.
    let script = format!("{EXE} payload ignore-stop {pids} & setsid {EXE} payload ignore-stop {pids} & wait");
    let started = Instant::now();
    let out = node.exec(&[
        "run",
        "--task",
        "tasks/t",
        "--task-uid",
        "tree",
        "--revision",
        "r1",
        "--timeout",
        "2s",
        "--",
        "/bin/sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    let json = result(&out);
    assert_eq!(json["attempts"][0]["outcome"], "TimedOut");
    assert_eq!(json["attempts"][0]["timedOut"], true);
    let seen = pids_in(&pids);
    assert_eq!(seen.len(), 2, "both grandchildren started: {seen:?}");
    let survivors: Vec<i32> = seen.into_iter().filter(|p| alive(*p)).collect();
    assert!(survivors.is_empty(), "left alive after the timeout: {survivors:?}");
}

#[test]
fn a_memory_limit_breach_is_reported() {
    let node = Node::new();
    let out = node.run("mem", &["--memory", "64Mi"], &["alloc", "256", "--seconds", "30"]);
    assert_eq!(out.status.code(), Some(121), "{}", stderr(&out));
    let attempt = &result(&out)["attempts"][0];
    assert_eq!(attempt["outcome"], "LimitExceeded");
    assert_eq!(attempt["stats"]["limitExceeded"], "memory");
    assert!(attempt["stats"]["peakMemoryBytes"].as_u64().unwrap_or(0) > 64 << 20, "{attempt}");
    assert!(attempt["message"].as_str().unwrap_or("").contains("memory limit of 67108864 bytes"));
}

#[test]
fn a_completed_once_payload_never_runs_again_for_the_revision() {
    let node = Node::new();
    let counter = node.path("runs");
    let first = node.run("once", &[], &["count", &counter]);
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(result(&first)["skipped"], false);
    let second = node.run("once", &[], &["count", &counter]);
    assert_eq!(second.status.code(), Some(0));
    assert_eq!(result(&second)["skipped"], true);
    assert_eq!(lines(&counter), 1, "the payload ran once");
    // A new revision runs again.
    let out = node.exec(&[
        "run",
        "--task",
        "tasks/t",
        "--task-uid",
        "once",
        "--revision",
        "r2",
        "--",
        EXE,
        "payload",
        "count",
        &counter,
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(lines(&counter), 2);
}

#[test]
fn failures_are_retried_with_backoff_then_recorded_as_failed() {
    let node = Node::new();
    let counter = node.path("runs");
    let started = Instant::now();
    let out = node.run("retry", &["--retries", "2", "--backoff", "1s"], &["count", &counter, "--code", "9"]);
    assert_eq!(out.status.code(), Some(9));
    assert_eq!(lines(&counter), 3, "one attempt and two retries");
    assert!(started.elapsed() >= Duration::from_secs(3), "waited 1s then 2s between attempts");
    let json = result(&out);
    assert_eq!(json["state"], "Failed");
    assert_eq!(json["attempts"].as_array().map(Vec::len), Some(3));
    // Failed is final too: no fourth attempt on restart.
    node.run("retry", &["--retries", "2", "--backoff", "1s"], &["count", &counter, "--code", "9"]);
    assert_eq!(lines(&counter), 3);
}

#[test]
fn probe_readiness_follows_the_record() {
    let node = Node::new();
    let probe = |uid: &str| node.exec(&["probe", "--task-uid", uid, "--revision", "r1"]);
    let before = probe("p");
    assert_eq!(before.status.code(), Some(1));
    assert_eq!(result(&before)["ready"], false);
    node.run("p", &[], &["exit", "0"]);
    let after = probe("p");
    assert_eq!(after.status.code(), Some(0));
    assert_eq!(result(&after)["ready"], true);
    node.run("f", &[], &["exit", "1"]);
    let failed = probe("f");
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(result(&failed)["state"], "Failed");
}

/// `run` of revision r1 of task `uid` with the `alone` payload, started in the background.
fn spawn_alone(node: &Node, uid: &str, seconds: &str) -> Child {
    let (marker, count) = (node.path("running"), node.path("runs"));
    node.cmd(&["run", "--task", "tasks/t", "--task-uid", uid, "--revision", "r1", "--", EXE, "payload"])
        .args(["alone", &marker, &count, "--seconds", seconds])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

#[test]
fn two_executors_of_one_task_revision_run_the_payload_once() {
    let node = Node::new();
    // Two pods of the task on one node, started together (a duplicate pod).
    let first = spawn_alone(&node, "twice", "1");
    let second = spawn_alone(&node, "twice", "1");
    let outputs = [first.wait_with_output().expect("first"), second.wait_with_output().expect("second")];
    assert_eq!(lines(&node.path("runs")), 1, "the payload ran more than once");
    let mut skipped = vec![];
    for out in &outputs {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
        let json = result(out);
        assert_eq!(json["state"], "Succeeded");
        skipped.push(json["skipped"].as_bool().expect("skipped"));
    }
    skipped.sort();
    assert_eq!(skipped, [false, true], "one ran it, the other read its record");
    let waited = outputs.iter().map(stderr).find(|e| e.contains("another executor is running"));
    assert!(waited.is_some(), "neither said it waited: {outputs:?}");
}

#[test]
fn the_successor_of_a_stopped_executor_waits_for_it_then_runs_the_revision_again() {
    let node = Node::new();
    let mut old = spawn_alone(&node, "forced", "30");
    wait_for("the first payload", Duration::from_secs(10), || lines(&node.path("runs")) == 1);
    // `kubectl delete pod --force --grace-period=0`: the new pod starts while the old
    // container is still being stopped.
    let successor = spawn_alone(&node, "forced", "1");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lines(&node.path("runs")), 1, "the successor started the payload beside the old one");
    kill(Pid::from_raw(old.id() as i32), Signal::SIGTERM).expect("sigterm");
    assert_eq!(wait_exit(&mut old, Duration::from_secs(10)).code(), Some(143));
    let out = successor.wait_with_output().expect("successor");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json = result(&out);
    let outcomes: Vec<&str> =
        json["attempts"].as_array().expect("attempts").iter().filter_map(|a| a["outcome"].as_str()).collect();
    assert_eq!(outcomes, ["Interrupted", "Succeeded"], "{json}");
    // Never two at once: the `alone` payload exits 99 when it finds the other's marker.
    assert_eq!(lines(&node.path("runs")), 2);
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode_and_owner(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).expect("stat");
    (meta.mode() & 0o7777, meta.uid())
}

#[test]
fn the_state_directory_refuses_group_or_world_writable_or_foreign_owned_state() {
    let node = Node::new();
    assert_eq!(node.run("t1", &[], &["exit", "0"]).status.code(), Some(0));
    let state = node.state();
    assert_eq!(mode_and_owner(&state).0, 0o755, "created for root's writes only");
    let probe = || node.exec(&["probe", "--task-uid", "t1", "--revision", "r1"]);
    for (mode, words) in
        [(0o777, "every user can create or change files in it"), (0o775, "group 0 can create")]
    {
        chmod(&state, mode);
        // The probe never repairs: it only reads, as the task's account, every few seconds.
        let out = probe();
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        let message = result(&out)["error"].as_str().unwrap_or_default().to_string();
        assert!(message.contains("refusing to use the state directory"), "{message}");
        assert!(message.contains(&state.display().to_string()) && message.contains(words), "{message}");
    }
    chmod(&state, 0o755);
    std::os::unix::fs::chown(&state, Some(4321), Some(4321)).expect("chown");
    let message = result(&probe())["error"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("it is owned by uid 4321, not by the administrators"), "{message}");

    // An executor that is not root cannot repair it: it refuses and runs nothing.
    std::os::unix::fs::chown(&state, Some(0), Some(0)).expect("chown");
    chmod(&state, 0o777);
    chmod(node.dir.path(), 0o755);
    let counter = node.path("runs");
    let out = node
        .cmd(&[
            "run",
            "--task",
            "tasks/t",
            "--task-uid",
            "t2",
            "--revision",
            "r1",
            "--",
            EXE,
            "payload",
            "count",
        ])
        .arg(&counter)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("every user can create or change files in it"), "{}", stderr(&out));
    assert_eq!(lines(&counter), 0, "the payload ran from an unsafe state directory");
}

#[test]
fn a_root_executor_repairs_the_state_directory_and_what_was_planted_loses_its_hold() {
    let node = Node::new();
    assert_eq!(node.run("t1", &[], &["exit", "0"]).status.code(), Some(0));
    let state = node.state();
    // What the old inherited ProgramData permissions allowed: a local user plants a folder with
    // a forged record, and a link that would redirect the executor's next write.
    chmod(&state, 0o777);
    let planted = state.join("tasks").join("victim");
    fs::create_dir_all(&planted).expect("mkdir");
    fs::write(planted.join("r1.json"), "{}").expect("forge");
    std::os::unix::fs::chown(&planted, Some(4321), Some(4321)).expect("chown");
    std::os::unix::fs::chown(planted.join("r1.json"), Some(4321), Some(4321)).expect("chown");
    chmod(&planted.join("r1.json"), 0o666);
    std::os::unix::fs::symlink("/etc/hostname", state.join("tasks").join("t1").join("r2.json"))
        .expect("link");

    let out = node.run("t3", &[], &["exit", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("giving it and everything in it to the administrators"),
        "{}",
        stderr(&out)
    );
    assert_eq!(mode_and_owner(&state), (0o755, 0));
    assert_eq!(mode_and_owner(&planted), (0o755, 0));
    assert_eq!(mode_and_owner(&planted.join("r1.json")), (0o644, 0));
    assert!(fs::symlink_metadata(state.join("tasks/t1/r2.json")).is_err(), "the planted link is gone");
    let probe = node.exec(&["probe", "--task-uid", "t3", "--revision", "r1"]);
    assert_eq!(probe.status.code(), Some(0), "{}", stderr(&probe));
}

#[test]
fn an_installer_that_relaunches_itself_is_waited_for_unless_told_otherwise() {
    let node = Node::new();
    // `all`: the main process exits at once; its relaunched copy installs for a second.
    let installed = node.path("installed-all");
    let out = node.run("all", &["--wait-for", "all"], &["relaunch", &installed, "--seconds", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(result(&out)["state"], "Succeeded");
    assert_eq!(lines(&installed), 1, "recorded Succeeded before the relaunched installer finished");
    assert!(stderr(&out).contains("waiting for the 1 process(es) it left in its job"), "{}", stderr(&out));
    // `main`: finished when the main process exits; what it left running is killed with the job.
    let killed = node.path("installed-main");
    let out = node.run("main", &["--wait-for", "main"], &["relaunch", &killed, "--seconds", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(lines(&killed), 0, "the relaunched copy outlived its job");
    // A timeout bounds the wait: the relaunched copy that never finishes is killed.
    let hung = node.path("installed-hung");
    let out =
        node.run("hung", &["--wait-for", "all", "--timeout", "2s"], &["relaunch", &hung, "--seconds", "60"]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert_eq!(result(&out)["attempts"][0]["outcome"], "TimedOut");
}

#[test]
fn sigterm_stops_the_whole_job_and_the_next_start_runs_it_again() {
    let node = Node::new();
    let pids = node.path("pids");
    let mut child = node
        .cmd(&[
            "run",
            "--task",
            "tasks/t",
            "--task-uid",
            "sig",
            "--revision",
            "r1",
            "--",
            EXE,
            "payload",
            "spawn-tree",
            "2",
            &pids,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for("three processes of the tree", Duration::from_secs(10), || pids_in(&pids).len() == 3);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("sigterm");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(143));
    let survivors: Vec<i32> = pids_in(&pids).into_iter().filter(|p| alive(*p)).collect();
    assert!(survivors.is_empty(), "left alive: {survivors:?}");
    let probe = result(&node.exec(&["probe", "--task-uid", "sig", "--revision", "r1"]));
    assert_eq!(probe["state"], "Interrupted");
    let counter = node.path("runs");
    let again = node.run("sig", &[], &["count", &counter]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(lines(&counter), 1, "an interrupted revision runs again");
}

#[test]
fn idle_after_exits_once_with_success_then_idles_ready() {
    let node = Node::new();
    let counter = node.path("runs");
    let args = [
        "run",
        "--task",
        "tasks/t",
        "--task-uid",
        "idle",
        "--revision",
        "r1",
        "--idle-after",
        "--",
        EXE,
        "payload",
        "count",
        &counter,
    ];
    // The container that ran the payload exits 0 at once: the runtime reports the success
    // without waiting for a readiness probe.
    let first = node.exec(&args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(result(&first)["state"], "Succeeded");
    // Restarted, it idles and is ready, without running the payload again.
    let mut child = node.cmd(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    wait_for("readiness", Duration::from_secs(10), || {
        node.exec(&["probe", "--task-uid", "idle", "--revision", "r1"]).status.code() == Some(0)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().expect("try_wait").is_none(), "the restarted executor idles");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("sigterm");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)).code(), Some(0));
    assert_eq!(lines(&counter), 1);
}

#[test]
fn idle_after_exits_once_with_a_failure_then_idles_without_running_it_again() {
    let node = Node::new();
    let counter = node.path("runs");
    let args = [
        "run",
        "--task",
        "tasks/t",
        "--task-uid",
        "fails",
        "--revision",
        "r1",
        "--idle-after",
        "--",
        EXE,
        "payload",
        "count",
        &counter,
        "--code",
        "3",
    ];
    // The container that ran the payload exits with its code and the result as its last line.
    let first = node.exec(&args);
    assert_eq!(first.status.code(), Some(3), "{}", stderr(&first));
    let result = result(&first);
    assert_eq!((result["state"].as_str(), result["exitCode"].as_i64()), (Some("Failed"), Some(3)));
    // The runtime restarts it: the record says the revision is done, so it idles, not ready.
    let mut again = node.cmd(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    std::thread::sleep(Duration::from_millis(500));
    assert!(again.try_wait().expect("try_wait").is_none(), "the restarted executor idles");
    let probe = node.exec(&["probe", "--task-uid", "fails", "--revision", "r1"]);
    assert_eq!(probe.status.code(), Some(1), "a failed payload is never ready");
    kill(Pid::from_raw(again.id() as i32), Signal::SIGTERM).expect("sigterm");
    assert_eq!(wait_exit(&mut again, Duration::from_secs(10)).code(), Some(0));
    assert_eq!(lines(&counter), 1, "the payload ran once");
}

#[test]
fn reboot_asks_the_host_to_restart_and_says_whether_the_os_confirms_a_pending_reboot() {
    let node = Node::new();
    let store = node.state().join("test-store");
    let unconfirmed = result(&node.exec(&["reboot"]));
    assert_eq!(
        (unconfirmed["ok"].as_bool(), unconfirmed["pendingConfirmed"].as_bool()),
        (Some(true), Some(false))
    );
    let requested = std::fs::read_to_string(store.join("reboot-requested")).expect("the reboot request");
    assert!(requested.contains("requires a reboot"), "{requested}");

    std::fs::remove_file(store.join("reboot-requested")).expect("taken");
    std::fs::write(store.join("reboot-required"), "").expect("pending");
    let confirmed = result(&node.exec(&["reboot", "--reason", "patch KB1"]));
    assert_eq!(confirmed["pendingConfirmed"], true);
    assert_eq!(std::fs::read_to_string(store.join("reboot-requested")).expect("request"), "patch KB1");
}

#[test]
fn install_copies_the_executor_once_into_a_directory_per_version() {
    let node = Node::new();
    let first = node.exec(&["install"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let installed = result(&first);
    assert_eq!(installed["installed"], true);
    let path = installed["path"].as_str().expect("path").to_string();
    assert!(path.ends_with(&format!("bin/{}/node-executor", env!("CARGO_PKG_VERSION"))), "{path}");
    // The copy is the executor: it runs.
    let copy = Command::new(&path).args(["payload", "exit", "4"]).status().expect("runs");
    assert_eq!(copy.code(), Some(4));
    let again = result(&node.exec(&["install"]));
    assert_eq!((again["installed"].as_bool(), again["path"].as_str()), (Some(false), Some(path.as_str())));
}

#[test]
fn prepare_makes_the_task_folder_writable_by_the_task_account_alone_and_installs() {
    let node = Node::new();
    let args = ["prepare", "--task-uid", "u-1", "--account", r"NT AUTHORITY\Local service", "--install"];
    let out = node.exec(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json = result(&out);
    let task_dir = node.state().join("tasks").join("u-1");
    assert_eq!(json["taskDir"], task_dir.display().to_string());
    assert_eq!(json["account"], r"NT AUTHORITY\LOCAL SERVICE");
    assert!(
        fs::read(json["installed"].as_str().expect("installed")).expect("copy")
            == fs::read(EXE).expect("exe")
    );
    assert_eq!(mode_and_owner(&task_dir), (0o755, 0));
    // The grant, as the test store keeps it, and as the log says it in icacls' words.
    let acls: Value =
        serde_json::from_slice(&fs::read(node.state().join("test-store/acls.json")).expect("acls"))
            .expect("json");
    let entry = &acls[task_dir.display().to_string().to_lowercase()][0];
    assert_eq!(
        (entry["group"].as_str(), entry["rights"].as_str()),
        (Some(r"NT AUTHORITY\LOCAL SERVICE"), Some("Modify"))
    );
    assert!(stderr(&out).contains(r#"/grant:r "NT AUTHORITY\LOCAL SERVICE:(OI)(CI)M""#), "{}", stderr(&out));
    // Again: nothing to change.
    let again = node.exec(&args);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(!stderr(&again).contains("icacls"), "{}", stderr(&again));
    // Only a privileged executor decides who may write in the state directory.
    chmod(node.dir.path(), 0o755);
    let unprivileged = node.cmd(&args).uid(65534).gid(65534).output().expect("runs");
    assert_eq!(unprivileged.status.code(), Some(125));
    assert!(stderr(&unprivileged).contains("prepare must run as SYSTEM"), "{}", stderr(&unprivileged));
}

#[test]
fn install_replaces_a_planted_binary_with_itself() {
    let node = Node::new();
    let path = result(&node.exec(&["install"]))["path"].as_str().expect("path").to_string();
    // What a local user could have left while the state directory was open to them.
    fs::write(&path, "#!/bin/sh\necho planted\n").expect("plant");
    let out = node.exec(&["install"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(result(&out)["installed"], true, "the planted file was kept");
    assert!(
        stderr(&out).contains("is not this executor (planted or damaged); replacing it"),
        "{}",
        stderr(&out)
    );
    assert_eq!(fs::read(&path).expect("installed"), fs::read(EXE).expect("executor"));
    let copy = Command::new(&path).args(["payload", "exit", "4"]).status().expect("runs");
    assert_eq!(copy.code(), Some(4));
}

#[test]
fn a_continuous_payload_restarts_on_exit_until_stopped() {
    let node = Node::new();
    let counter = node.path("runs");
    let mut child = node
        .cmd(&[
            "run",
            "--task",
            "tasks/agent",
            "--task-uid",
            "agent",
            "--revision",
            "r1",
            "--mode",
            "continuous",
            "--backoff",
            "1s",
            "--",
            EXE,
            "payload",
            "count",
            &counter,
            "--code",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for("three starts", Duration::from_secs(15), || lines(&counter) >= 3);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("sigterm");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(10)).code(), Some(0));
    let record: Value =
        serde_json::from_slice(&fs::read(node.state().join("tasks/agent/r1.json")).expect("record"))
            .expect("json");
    assert!(record["attempts"].as_array().map_or(0, Vec::len) >= 3);
}

#[test]
fn groups_and_grants_are_idempotent_and_report_exactly_what_changed() {
    let node = Node::new();
    node.seed_accounts(&[r"CONTOSO\alice", "bob"]);
    node.mkdir(r"C:\ProgramData\App\logs");
    let ensure = [
        "group",
        "ensure",
        "--name",
        "AppLogReaders",
        "--description",
        "reads logs",
        "--member",
        r"CONTOSO\alice",
    ];
    let first_out = node.exec(&ensure);
    let first = result(&first_out);
    assert_eq!(first["changed"], true);
    let kinds: Vec<&str> =
        first["changes"].as_array().expect("changes").iter().filter_map(|c| c["change"].as_str()).collect();
    assert_eq!(kinds, ["createGroup", "addMember"]);
    // Every change is logged as the command an administrator would type to make it.
    let log = stderr(&first_out);
    assert!(log.contains(r#"node-executor: net localgroup "AppLogReaders" /add"#), "{log}");
    assert!(log.contains(r#"node-executor: net localgroup "AppLogReaders" "CONTOSO\alice" /add"#), "{log}");
    let second = node.exec(&ensure);
    assert_eq!(result(&second)["changed"], false, "second ensure changes nothing");
    assert!(!stderr(&second).contains("net localgroup"), "nothing done, nothing logged: {}", stderr(&second));

    let grant = [
        "grant",
        "apply",
        "--group",
        "AppLogReaders",
        "--path",
        r"C:\ProgramData\App\logs",
        "--rights",
        "ReadAndExecute",
    ];
    let applied_out = node.exec(&grant);
    let applied = result(&applied_out);
    let log = stderr(&applied_out);
    assert!(log.contains(r#"icacls "C:\ProgramData\App\logs" /grant:r "AppLogReaders:(OI)(CI)RX""#), "{log}");
    assert_eq!(applied["changes"][0]["change"], "setGrant");
    assert_eq!(applied["changes"][0]["appliesTo"], "ThisFolderSubfoldersAndFiles");
    assert_eq!(result(&node.exec(&grant))["changed"], false, "second apply changes nothing");
    // The same path in another case is the same grant on Windows.
    let upper = [
        "grant",
        "apply",
        "--group",
        "AppLogReaders",
        "--path",
        r"C:\PROGRAMDATA\App\logs",
        "--rights",
        "ReadAndExecute",
    ];
    assert_eq!(result(&node.exec(&upper))["changed"], false);
    // Changing the rights replaces the group's entry.
    let modify = [
        "grant",
        "apply",
        "--group",
        "AppLogReaders",
        "--path",
        r"C:\ProgramData\App\logs",
        "--rights",
        "Modify",
    ];
    assert_eq!(result(&node.exec(&modify))["changes"][0]["rights"], "Modify");

    let revoke = ["grant", "revoke", "--group", "AppLogReaders", "--path", r"C:\ProgramData\App\logs"];
    assert_eq!(result(&node.exec(&revoke))["changes"][0]["change"], "revokeGrant");
    assert_eq!(result(&node.exec(&revoke))["changed"], false);

    let remove = ["group", "remove", "--name", "AppLogReaders"];
    assert_eq!(result(&node.exec(&remove))["changes"][0]["change"], "deleteGroup");
    assert_eq!(result(&node.exec(&remove))["changed"], false);
}

#[test]
fn built_in_groups_and_privileged_members_are_refused_by_sid_whatever_their_name() {
    let node = Node::new();
    let store = node.state().join("test-store");
    fs::create_dir_all(&store).expect("store");
    // A German node: BUILTIN\Administrators is "Administratoren"; "chef" is the renamed
    // built-in Administrator account (RID 500).
    let seed = serde_json::json!({
        "accounts": ["alice", "chef"],
        "groups": {"administratoren": {"name": "Administratoren", "description": "", "members": []}},
        "sids": {"administratoren": "S-1-5-32-544", "chef": "S-1-5-21-1-2-3-500", "alice": "S-1-5-21-1-2-3-1001"},
    });
    fs::write(store.join("accounts.json"), seed.to_string()).expect("seed");
    let before = fs::read(store.join("accounts.json")).expect("read");

    let out = node.exec(&["group", "ensure", "--name", "Administratoren", "--member", "alice"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let error = result(&out)["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("is a built-in or well-known group on this node (SID S-1-5-32-544)"), "{error}");
    let out = node.exec(&["group", "ensure", "--name", "AppOps", "--member", "chef"]);
    let error = result(&out)["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains(
            r#"member "chef" is a privileged or broad principal on this node (SID S-1-5-21-1-2-3-500)"#
        ),
        "{error}"
    );
    assert_eq!(fs::read(store.join("accounts.json")).expect("read"), before, "nothing changed");

    // A group deleted and created again by someone else under the same name is not ours to delete.
    assert_eq!(
        node.exec(&["group", "ensure", "--name", "AppOps", "--member", "alice"]).status.code(),
        Some(0)
    );
    node.mkdir(r"C:\data");
    let grant = ["grant", "apply", "--group", "AppOps", "--path", r"C:\data", "--rights", "Read"];
    assert_eq!(node.exec(&grant).status.code(), Some(0));
    let mut accounts: Value =
        serde_json::from_slice(&fs::read(store.join("accounts.json")).expect("read")).expect("json");
    accounts["sids"]["appops"] = "S-1-5-21-1-2-3-2000".into();
    fs::write(store.join("accounts.json"), accounts.to_string()).expect("recreate");
    // The new group gets a grant of its own on the same folder.
    assert_eq!(node.exec(&grant).status.code(), Some(0));
    let out = node.exec(&["group", "remove", "--name", "AppOps"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Only the old group's entry goes, by its id; the new group and its grant stay.
    let changes = &result(&out)["changes"];
    assert_eq!(changes.as_array().map(Vec::len), Some(1), "{changes}");
    assert_eq!(
        (changes[0]["change"].as_str(), changes[0]["group"].as_str()),
        (Some("revokeGrant"), Some(r"*node\appops"))
    );
    let acls: Value =
        serde_json::from_slice(&fs::read(store.join("acls.json")).expect("acls")).expect("json");
    let left: Vec<&str> =
        acls[r"c:\data"].as_array().expect("entries").iter().filter_map(|e| e["sid"].as_str()).collect();
    assert_eq!(left, ["S-1-5-21-1-2-3-2000"]);
    assert!(
        stderr(&out).contains("it was deleted and created again by someone else; leaving it alone"),
        "{}",
        stderr(&out)
    );
    let accounts: Value =
        serde_json::from_slice(&fs::read(store.join("accounts.json")).expect("read")).expect("json");
    assert!(accounts["groups"]["appops"].is_object(), "the other group is still there");
}

#[test]
fn provision_converges_and_removal_keeps_what_others_made() {
    let node = Node::new();
    node.seed_accounts(&["alice", "bob", "carol"]);
    node.mkdir(r"C:\data\a");
    node.mkdir(r"C:\data\b");
    // A group an administrator made, with a member of their own.
    result(&node.exec(&["group", "ensure", "--name", "Operators", "--member", "carol"]));
    fs::remove_dir_all(node.state().join("groups")).expect("forget ownership: the admin made it");

    let spec = |members: &[&str], paths: &[&str]| {
        let file = node.path("spec.json");
        let grants: Vec<Value> =
            paths.iter().map(|p| serde_json::json!({"path": p, "rights": "Read"})).collect();
        let json = serde_json::json!({"groupName": "Operators", "members": members, "grants": grants});
        fs::write(&file, json.to_string()).expect("spec");
        // As the operator's setup pod gives it: the file and the digest of its bytes.
        (file, hostprocess_protocol::digest::sha256_hex(json.to_string().as_bytes()))
    };
    const OWNER: &str = "0b7c5e0a-uid-of-the-hostgroup";
    let provision = |(file, digest): &(String, String)| {
        node.exec(&["provision", "--spec", file, "--spec-sha256", digest, "--owner", OWNER])
    };
    let file = spec(&["alice", "bob"], &[r"C:\data\a", r"C:\data\b"]);
    let first = result(&provision(&file));
    assert_eq!(first["changes"].as_array().map(Vec::len), Some(4), "{first}");
    assert_eq!(result(&provision(&file))["changed"], false);
    // However a path is spelled, it is the same grant: nothing changes, nothing flip-flops.
    let respelled = spec(&["alice", "bob"], &[r"C:\data\a\", r"c:\DATA\b"]);
    assert_eq!(result(&provision(&respelled))["changed"], false, "trailing backslash, case");
    let file = spec(&["alice", "bob"], &[r"C:\data\a", r"C:\data\b"]);
    assert_eq!(result(&provision(&file))["changed"], false, "and back");

    // The record is the HostGroup's, by its uid, with the group's name inside.
    let record: Value = serde_json::from_slice(
        &fs::read(node.state().join(format!("groups/hostgroup-{OWNER}.json"))).expect("record"),
    )
    .expect("json");
    assert_eq!(record["group"], "Operators");

    // An administrator grants the group another path on purpose, with the grant command.
    node.mkdir(r"C:\data\c");
    result(&node.exec(&[
        "grant",
        "apply",
        "--group",
        "Operators",
        "--path",
        r"C:\data\c",
        "--rights",
        "Read",
    ]));

    // bob and C:\data\b leave the spec: removed; carol and C:\data\c (not the HostGroup's) stay.
    let file = spec(&["alice"], &[r"C:\data\a"]);
    let changes = result(&provision(&file))["changes"].clone();
    let kinds: Vec<&str> =
        changes.as_array().expect("changes").iter().filter_map(|c| c["change"].as_str()).collect();
    assert_eq!(kinds, ["removeMember", "revokeGrant"], "{changes}");
    let acls: Value =
        serde_json::from_slice(&fs::read(node.state().join("test-store/acls.json")).expect("acls"))
            .expect("json");
    assert!(!acls[r"c:\data\c"].is_null(), "the administrator's grant stays: {acls}");

    // A second HostGroup for the same Windows group (any case) is refused on the node too.
    let (file2, digest2) = {
        let file = node.path("spec2.json");
        let json = serde_json::json!({"groupName": "OPERATORS"});
        fs::write(&file, json.to_string()).expect("spec");
        (file, hostprocess_protocol::digest::sha256_hex(json.to_string().as_bytes()))
    };
    let refused =
        node.exec(&["provision", "--spec", &file2, "--spec-sha256", &digest2, "--owner", "another-uid"]);
    let error = result(&refused)["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(&format!("managed on this node by HostGroup uid {OWNER}")), "{error}");
    assert_eq!(result(&provision(&file))["changed"], false, "the first HostGroup is untouched");

    let removed = result(&node.exec(&["deprovision", "--group", "Operators", "--owner", OWNER]));
    let kinds: Vec<&str> =
        removed["changes"].as_array().expect("changes").iter().filter_map(|c| c["change"].as_str()).collect();
    assert_eq!(kinds, ["revokeGrant", "removeMember"], "the admin's group is kept: {removed}");
    let accounts: Value =
        serde_json::from_slice(&fs::read(node.state().join("test-store/accounts.json")).expect("store"))
            .expect("json");
    assert_eq!(accounts["groups"]["operators"]["members"], serde_json::json!(["node\\carol"]));
}

#[test]
fn bad_input_is_refused_with_a_clear_message_and_changes_nothing() {
    let node = Node::new();
    node.seed_accounts(&["alice"]);
    node.mkdir(r"C:\data");
    let file_path = node.state().join("test-store/fs/c/data/file.txt");
    assert!(node.state().join("test-store/fs/c/data").is_dir());
    fs::write(&file_path, b"x").expect("file");
    fs::write(node.path("bad-spec.json"), "{\"groupName\": 5}").expect("spec");
    let long = "g".repeat(105);
    let bad_spec = node.path("bad-spec.json");
    let bad_spec_digest = hostprocess_protocol::digest::sha256_hex(b"{\"groupName\": 5}");
    let other_digest = hostprocess_protocol::digest::sha256_hex(b"another spec");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["group", "ensure", "--name", r#"ops" & net user eve /add"#],
            "groupName must not contain any of",
        ),
        (vec!["group", "ensure", "--name", "admins;calc"], "groupName must not contain any of"),
        (vec!["group", "ensure", "--name", ""], "groupName must not be empty"),
        (vec!["group", "ensure", "--name", &long], "groupName must be at most 104 characters long"),
        (vec!["group", "ensure", "--name", " padded"], "must not start with a space or end with a dot"),
        (vec!["group", "ensure", "--name", "admins."], "must not start with a space or end with a dot"),
        (vec!["group", "ensure", "--name", "NUL"], "must not be a device name"),
        (
            vec!["group", "ensure", "--name", "Administrators"],
            "must not name a built-in or well-known Windows group",
        ),
        (
            vec!["group", "ensure", "--name", "ok", "--member", "Everyone"],
            "member must not be a built-in, well-known or broad account",
        ),
        (
            vec![
                "grant",
                "apply",
                "--group",
                "ok",
                "--path",
                r"C:\Windows\System32",
                "--rights",
                "FullControl",
            ],
            "must not be in the Windows or Program Files trees",
        ),
        (
            vec!["group", "ensure", "--name", "ok", "--member", "alice@contoso.com"],
            "member must not contain any of",
        ),
        (
            vec!["group", "ensure", "--name", "ok", "--member", "mallory"],
            r#"member "mallory" does not exist on this node"#,
        ),
        (
            vec!["group", "ensure", "--name", "ok", "--member", "alice", "--member", "ALICE"],
            "each member may appear only once",
        ),
        (
            vec!["grant", "apply", "--group", "ok", "--path", r"data\logs", "--rights", "Read"],
            "path must be absolute with a drive letter",
        ),
        (
            vec!["grant", "apply", "--group", "ok", "--path", r"C:\data\..\Windows", "--rights", "Read"],
            "must not contain . or .. segments",
        ),
        (
            vec!["grant", "apply", "--group", "ok", "--path", r"\\attacker\share", "--rights", "Read"],
            "path must be absolute with a drive letter",
        ),
        (
            vec!["grant", "apply", "--group", "ok", "--path", r"\\?\C:\Windows", "--rights", "Read"],
            "path must be absolute with a drive letter",
        ),
        (
            vec!["grant", "apply", "--group", "ok", "--path", r"C:\data\file.txt:hidden", "--rights", "Read"],
            "alternate data streams",
        ),
        (
            vec!["grant", "apply", "--group", "ok", "--path", "C:/data", "--rights", "Read"],
            "path must be absolute with a drive letter",
        ),
        (
            vec!["grant", "apply", "--group", "ok", "--path", r"C:\data\NUL", "--rights", "Read"],
            "must not name a DOS device",
        ),
        (
            vec!["grant", "apply", "--group", "ok", "--path", r"C:\data\*", "--rights", "Read"],
            "must not contain wildcards",
        ),
        (
            vec!["grant", "apply", "--group", "ok", "--path", r"C:\data", "--rights", "Everything"],
            "is not one of Read, ReadAndExecute",
        ),
        (
            vec!["grant", "apply", "--group", "nosuchgroup", "--path", r"C:\data", "--rights", "Read"],
            "no such local group",
        ),
        (
            vec!["run", "--task", "t", "--task-uid", "../../etc", "--revision", "r", "--", "/bin/true"],
            "task-uid \"../../etc\" must be",
        ),
        (
            vec![
                "run",
                "--task",
                "t",
                "--task-uid",
                "u",
                "--revision",
                "r",
                "--memory",
                "512MB",
                "--",
                "/bin/true",
            ],
            "memory must be a whole number of Mi or Gi",
        ),
        (
            vec![
                "run",
                "--task",
                "t",
                "--task-uid",
                "u",
                "--revision",
                "r",
                "--timeout",
                "1d",
                "--",
                "/bin/true",
            ],
            "timeout must be hours, minutes and seconds",
        ),
        (
            vec![
                "run",
                "--task",
                "t",
                "--task-uid",
                "u",
                "--revision",
                "r",
                "--cpu",
                "0.5",
                "--",
                "/bin/true",
            ],
            "cpu must be millicores",
        ),
        (
            vec![
                "run",
                "--task",
                "t",
                "--task-uid",
                "u",
                "--revision",
                "r",
                "--retries",
                "11",
                "--",
                "/bin/true",
            ],
            "retries must be between 0 and 10",
        ),
        (
            vec![
                "run",
                "--task",
                "t",
                "--task-uid",
                "u",
                "--revision",
                "r",
                "--mode",
                "continuous",
                "--timeout",
                "1h",
                "--",
                "/bin/true",
            ],
            "timeout applies only to mode: Once",
        ),
        (
            vec![
                "run",
                "--task",
                "t",
                "--task-uid",
                "u",
                "--revision",
                "r",
                "--script",
                "/no/such/script.ps1",
                "--script-sha256",
                &other_digest,
            ],
            "cannot read the script /no/such/script.ps1",
        ),
        (
            vec![
                "run",
                "--task",
                "t",
                "--task-uid",
                "u",
                "--revision",
                "r",
                "--script",
                &bad_spec,
                "--script-sha256",
                &other_digest,
            ],
            "is not the one the operator wrote",
        ),
        (
            vec!["provision", "--spec", &bad_spec, "--spec-sha256", &other_digest, "--owner", "u"],
            "is not the one the operator wrote",
        ),
        (
            vec!["provision", "--spec", &bad_spec, "--spec-sha256", &bad_spec_digest, "--owner", "u"],
            "is not a HostGroup spec",
        ),
    ];
    // One grant that is refused only once the host is consulted: a file with inheritance.
    result(&node.exec(&["group", "ensure", "--name", "ok"]));
    let mut cases = cases;
    cases.push((
        vec!["grant", "apply", "--group", "ok", "--path", r"C:\data\file.txt", "--rights", "Read"],
        "for a file use ThisFolderOnly",
    ));
    cases.push((
        vec!["grant", "apply", "--group", "ok", "--path", r"C:\data\missing", "--rights", "Read"],
        "does not exist on this node",
    ));
    assert!(cases.len() >= 15);
    let before = node.snapshot();
    for (args, expected) in &cases {
        let out = node.exec(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}\n  said {err}\n  expected {expected}");
        assert_eq!(node.snapshot(), before, "{args:?} changed the host");
    }
}

#[test]
fn self_test_passes_on_a_store_seeded_like_windows_server() {
    let node = Node::new();
    let store = node.state().join("test-store");
    fs::create_dir_all(&store).expect("store");
    // What every Windows Server has: BUILTIN\Administrators and the DefaultAccount the
    // self-test adds to its group.
    let seed = serde_json::json!({
        "accounts": ["DefaultAccount"],
        "groups": {"administrators": {"name": "Administrators", "description": "", "members": []}},
        "sids": {"administrators": "S-1-5-32-544", "defaultaccount": "S-1-5-21-1-2-3-503"},
    });
    fs::write(store.join("accounts.json"), seed.to_string()).expect("seed");
    let out = node.exec(&["self-test"]);
    let report = result(&out);
    let checks = report["checks"].as_array().expect("checks");
    let failed: Vec<&Value> = checks.iter().filter(|c| c["verdict"] != "Pass").collect();
    assert!(failed.is_empty(), "{failed:#?}");
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    for name in [
        "a stop request ends the run gracefully",
        "second run changes nothing",
        "a built-in group is refused by SID",
    ] {
        assert!(names.contains(&name), "no check {name:?} in {names:?}");
    }
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn grants_through_a_link_are_refused_and_change_nothing() {
    let node = Node::new();
    node.mkdir(r"C:\Windows\System32\drivers");
    node.mkdir(r"C:\ProgramData\App");
    let store = node.state().join("test-store");
    // What a user who may change a grant target plants: a link to System32, as the target and
    // on the way to it (the test store's stand-in for a junction).
    std::os::unix::fs::symlink(store.join("fs/c/windows/system32"), store.join("fs/c/programdata/app/logs"))
        .expect("link");
    assert_eq!(result(&node.exec(&["group", "ensure", "--name", "AppLogReaders"]))["changed"], true);
    let acls_before = fs::read(store.join("acls.json")).ok();
    for path in [r"C:\ProgramData\App\logs", r"C:\ProgramData\App\logs\drivers"] {
        let out =
            node.exec(&["grant", "apply", "--group", "AppLogReaders", "--path", path, "--rights", "Modify"]);
        assert_eq!(out.status.code(), Some(125), "{path}: {}", stderr(&out));
        let error = result(&out)["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains("grants are never written through one"), "{path}: {error}");
    }
    assert_eq!(fs::read(store.join("acls.json")).ok(), acls_before, "no entry written");
}
