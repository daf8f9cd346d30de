//! The Windows build, run under Wine by `cargo test --target x86_64-pc-windows-gnu` (see
//! `tests/wine/setup.sh`), or on a real Windows host.
//!
//! Under Wine these tests assert only what Wine really implements: job objects (create
//! suspended, assign, resume; grandchildren in the job; TerminateJobObject and
//! KILL_ON_JOB_CLOSE killing the whole tree; exit codes) and the CPU-rate refusal (error 87).
//! `wine_calls_only_memory_and_process_limits_are_set_and_results_read` shows that the limit
//! calls succeed and the accounting is read back; that limits, groups and ACLs take effect is
//! verified only on a real Windows host (`node-executor self-test`).
#![cfg(windows)]
// The whole crate is a test: its helpers may panic like #[test] functions do.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

mod common;

use common::{result, stderr, wait_for};

const EXE: &str = env!("CARGO_BIN_EXE_node-executor");

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn exec(state: &Path, args: &[&str]) -> Output {
    Command::new(EXE).arg("--state-dir").arg(state).args(args).output().expect("runs")
}

fn run(state: &Path, uid: &str, options: &[&str], payload: &[&str]) -> Output {
    let mut args = vec!["run", "--task", "tasks/t", "--task-uid", uid, "--revision", "r1"];
    args.extend_from_slice(options);
    args.extend(["--", EXE, "payload"]);
    args.extend_from_slice(payload);
    exec(state, &args)
}

fn on_wine() -> bool {
    let out = Command::new(EXE).args(["payload", "describe"]).output().expect("describe");
    String::from_utf8_lossy(&out.stdout).starts_with("Wine")
}

fn pids_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// Windows' own view: none of these pids is alive (OpenProcess + GetExitCodeProcess).
fn alive_per_windows(pids: &[String]) -> Value {
    let out = Command::new(EXE).args(["payload", "alive"]).args(pids).output().expect("alive");
    serde_json::from_slice(&out.stdout).expect("pid list")
}

/// Linux's view under Wine: the Linux processes whose command line holds `marker`
/// (Wine maps the Linux root to Z:). Empty on a real Windows host.
fn alive_per_linux(marker: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(r"Z:\proc") else { return vec![] };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter_map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(marker).then_some(cmdline)
        })
        .collect()
}

#[test]
fn job_launch_and_exit_codes_pass_through_including_reboot_required() {
    let dir = scratch();
    for (uid, code, state) in
        [("ok", 0, "Succeeded"), ("fail", 7, "Failed"), ("reboot", 3010, "RebootRequired")]
    {
        let out = run(dir.path(), uid, &[], &["exit", &code.to_string()]);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        let json = result(&out);
        assert_eq!(json["state"], state);
        assert_eq!(json["attempts"][0]["exitCode"], code);
    }
}

#[test]
fn exit_codes_above_0x7fffffff_pass_through_with_every_bit() {
    let dir = scratch();
    // An access violation (0xC0000005) and `exit -1` (0xFFFFFFFF): Windows reports 32 bits,
    // shown signed as Kubernetes and PowerShell show them.
    for (uid, code, status) in
        [("av", -1_073_741_819, "0xC0000005 (access violation)"), ("minus", -1, "0xFFFFFFFF")]
    {
        let out = run(dir.path(), uid, &[], &["exit", &code.to_string()]);
        assert_eq!(out.status.code(), Some(code), "the executor's own exit code: {}", stderr(&out));
        let json = result(&out);
        assert_eq!(json["state"], "Failed", "{json}");
        assert_eq!(json["exitCode"], code, "{json}");
        let attempt = &json["attempts"][0];
        assert_eq!(
            (attempt["exitCode"].as_i64(), attempt["outcome"].as_str()),
            (Some(i64::from(code)), Some("ExitCode"))
        );
        let message = attempt["message"].as_str().unwrap_or_default();
        assert!(message.contains(status), "{message}");
    }
}

#[test]
fn a_bare_program_is_found_in_system32_and_a_batch_file_is_refused_by_the_name_windows_opens() {
    let dir = scratch();
    let state = dir.path().join("state");
    let run_program = |uid: &str, program: &str, args: &[&str]| {
        let mut all = vec!["run", "--task", "tasks/t", "--task-uid", uid, "--revision", "r1", "--", program];
        all.extend_from_slice(args);
        exec(&state, &all)
    };
    // `cmd` resolves to System32\cmd.exe (not the executor's folder, not the current one).
    let out = run_program("bare", "cmd", &["/d", "/c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(result(&out)["attempts"][0]["exitCode"], 3);
    // Windows opens `x.bat.` as x.bat, which cmd.exe would parse again: refused before it runs.
    let batch = dir.path().join("x.bat");
    std::fs::write(&batch, "echo ran > ran.txt\r\n").expect("batch");
    let sneaky = format!("{}.", batch.display());
    let out = run_program("batch", &sneaky, &[]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let attempt = &result(&out)["attempts"][0];
    assert_eq!(attempt["outcome"], "LaunchFailed");
    assert!(attempt["message"].as_str().unwrap_or_default().contains("is a batch file"), "{attempt}");
}

#[test]
fn two_executors_of_one_task_revision_run_the_payload_once() {
    let dir = scratch();
    let (marker, count) = (dir.path().join("running"), dir.path().join("runs"));
    let start = || {
        Command::new(EXE)
            .arg("--state-dir")
            .arg(dir.path())
            .args(["run", "--task", "tasks/t", "--task-uid", "twice", "--revision", "r1", "--", EXE])
            .args(["payload", "alone"])
            .args([&marker, &count])
            .args(["--seconds", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    // LockFileEx is real under Wine: the second executor waits and reads the first's record.
    let (first, second) = (start(), start());
    let outputs = [first.wait_with_output().expect("first"), second.wait_with_output().expect("second")];
    let runs = std::fs::read_to_string(&count).expect("runs").lines().count();
    assert_eq!(runs, 1, "the payload ran more than once");
    let mut skipped: Vec<bool> = outputs
        .iter()
        .map(|out| {
            assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
            result(out)["skipped"].as_bool().expect("skipped")
        })
        .collect();
    skipped.sort();
    assert_eq!(skipped, [false, true]);
}

#[test]
fn timeout_kills_the_whole_tree() {
    let dir = scratch();
    let marker = dir.path().join("timeout-tree-marker");
    let out =
        run(dir.path(), "tree", &["--timeout", "3s"], &["spawn-tree", "2", marker.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    let attempt = &result(&out)["attempts"][0];
    assert_eq!(attempt["outcome"], "TimedOut");
    // Job accounting: no process of the job is left.
    assert_eq!(attempt["stats"]["activeProcesses"], 0, "{attempt}");
    let pids = pids_in(&marker);
    assert_eq!(pids.len(), 3, "the payload, its child and its grandchild started: {pids:?}");
    assert_eq!(alive_per_windows(&pids), serde_json::json!([]));
    let marker_name = marker.file_name().and_then(|n| n.to_str()).expect("name");
    assert_eq!(alive_per_linux(marker_name), Vec::<String>::new());
}

#[test]
fn the_tree_dies_when_the_executor_is_killed() {
    let dir = scratch();
    let marker = dir.path().join("orphan-tree-marker");
    let mut executor: Child = Command::new(EXE)
        .arg("--state-dir")
        .arg(dir.path())
        .args([
            "run",
            "--task",
            "tasks/t",
            "--task-uid",
            "orphan",
            "--revision",
            "r1",
            "--",
            EXE,
            "payload",
            "spawn-tree",
            "2",
        ])
        .arg(&marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for("three processes", Duration::from_secs(20), || pids_in(&marker).len() == 3);
    let marker_name = marker.file_name().and_then(|n| n.to_str()).expect("name");
    if on_wine() {
        // The Linux view sees the live tree (and the executor, whose arguments hold the marker).
        let seen = alive_per_linux(marker_name);
        assert!(seen.len() >= 3, "Linux sees {seen:?}");
    }
    // TerminateProcess: no handler runs; the job's KILL_ON_JOB_CLOSE must take the tree down.
    executor.kill().expect("kill");
    executor.wait().expect("reaped");
    let pids = pids_in(&marker);
    wait_for("the tree to die", Duration::from_secs(10), || {
        alive_per_windows(&pids) == serde_json::json!([])
    });
    wait_for("no Linux process of the tree", Duration::from_secs(10), || {
        alive_per_linux(marker_name).is_empty()
    });
}

#[test]
fn cpu_rate_refusal_is_reported_clearly_and_nothing_runs() {
    let dir = scratch();
    let counter = dir.path().join("runs");
    let out = run(dir.path(), "cpu", &["--cpu", "500m"], &["count", counter.to_str().expect("utf-8")]);
    if on_wine() {
        // Wine answers JobObjectCpuRateControlInformation with error 87.
        assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
        let attempt = &result(&out)["attempts"][0];
        assert_eq!(attempt["outcome"], "LaunchFailed");
        let message = attempt["message"].as_str().unwrap_or_default();
        assert!(message.contains("the OS refused the CPU rate limit (error 87"), "{message}");
        assert!(message.contains("the payload was not started"), "{message}");
        assert!(!counter.exists(), "the payload must not run without its limit");
    } else {
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(counter.exists());
    }
}

#[test]
fn a_completed_revision_is_not_run_again() {
    let dir = scratch();
    let counter: PathBuf = dir.path().join("runs");
    let counter = counter.to_str().expect("utf-8");
    assert_eq!(result(&run(dir.path(), "once", &[], &["count", counter]))["skipped"], false);
    assert_eq!(result(&run(dir.path(), "once", &[], &["count", counter]))["skipped"], true);
    assert_eq!(std::fs::read_to_string(counter).expect("counter").lines().count(), 1);
}

#[test]
fn wine_calls_only_memory_and_process_limits_are_set_and_results_read() {
    // On Windows these limits stop the payload; Wine accepts them and enforces nothing, so
    // this only shows the calls succeed and the accounting is read back.
    let dir = scratch();
    let out = run(dir.path(), "limits", &["--memory", "64Mi", "--processes", "2"], &["exit", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stats = &result(&out)["attempts"][0]["stats"];
    assert!(stats["peakMemoryBytes"].is_u64() && stats["cpuTimeMs"].is_u64(), "{stats}");
}

#[test]
fn an_unknown_member_is_refused_before_anything_changes() {
    // LookupAccountNameW is real under Wine (it knows Administrator and SYSTEM, not this name);
    // the group calls themselves are stubs there and are checked by `self-test` on a real node.
    let dir = scratch();
    let args = ["group", "ensure", "--name", "hpo-wine", "--member", "no-such-user-7f3a"];
    let out = exec(dir.path(), &args);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let json = result(&out);
    assert_eq!(json["ok"], false);
    let error = json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(r#"refused, nothing changed: member "no-such-user-7f3a" does not exist on this node"#),
        "{error}"
    );
    assert!(!dir.path().join("groups").join("hpo-wine.json").exists(), "no ownership record");
}

#[test]
fn self_test_passes_what_the_host_implements() {
    let dir = scratch();
    let out = exec(dir.path(), &["self-test"]);
    let report = result(&out);
    let verdict = |name: &str| {
        report["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["verdict"].clone())
    };
    assert_eq!(verdict("exit code passes through"), Some("Pass".into()), "{report}");
    assert_eq!(verdict("killing the job kills the tree"), Some("Pass".into()), "{report}");
    // Handle inheritance is real under Wine: an inheritable handle of the executor's stays out.
    assert_eq!(verdict("no handle leaks into the payload"), Some("Pass".into()), "{report}");
    assert_eq!(verdict("exit code 0xC0000005 passes through"), Some("Pass".into()), "{report}");
    assert_eq!(verdict("install replaces a planted binary"), Some("Pass".into()), "{report}");
    // The shutdown event, delivered as hcsshim delivers it (a thread at kernel32!CtrlRoutine),
    // stops the job and records the attempt Interrupted with exit code 143. Wine does not end a
    // process whose handler returns, so that the handler holds it is shown on a real node only.
    assert_eq!(verdict("a stop request ends the run gracefully"), Some("Pass".into()), "{report}");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
