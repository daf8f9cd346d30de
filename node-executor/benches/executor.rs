//! Executor overhead, on Linux (`cargo bench -p node-executor --bench executor`) and under Wine
//! (`cargo bench -p node-executor --bench executor --target x86_64-pc-windows-gnu`, with the
//! environment of tests/wine/setup.sh). Prints figures; asserts nothing.
//!
//! - start latency: from spawning `node-executor run` to the payload's first instruction;
//! - overhead per run: wall time of `run -- payload exit 0` minus that of `payload exit 0`.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const EXE: &str = env!("CARGO_BIN_EXE_node-executor");
const RUNS: usize = 30;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let (p50, p90) = (percentile(&samples, 0.5), percentile(&samples, 0.9));
    println!("{name:<40} p50 {:>8.2} ms   p90 {:>8.2} ms   (n={})", ms(p50), ms(p90), samples.len());
    p50
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quiet(cmd: &mut Command) -> &mut Command {
    cmd.stdout(Stdio::null()).stderr(Stdio::null())
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let stamp = dir.path().join("stamp");
    let host = Command::new(EXE).args(["payload", "describe"]).output().expect("describe");
    println!("node-executor on {}", String::from_utf8_lossy(&host.stdout).trim());

    let direct: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            quiet(Command::new(EXE).args(["payload", "exit", "0"])).status().expect("payload");
            started.elapsed()
        })
        .collect();
    let direct = summary("payload alone", direct);

    let mut starts = vec![];
    let mut runs = vec![];
    for i in 0..RUNS {
        let uid = format!("bench-{i}");
        let before = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
        let started = Instant::now();
        quiet(Command::new(EXE).arg("--state-dir").arg(&state).args([
            "run",
            "--task",
            "bench/t",
            "--task-uid",
            &uid,
            "--revision",
            "r1",
            "--",
            EXE,
            "payload",
            "stamp",
        ]))
        .arg(&stamp)
        .status()
        .expect("run");
        runs.push(started.elapsed());
        let at: u128 = std::fs::read_to_string(&stamp).expect("stamp").trim().parse().expect("nanos");
        starts.push(Duration::from_nanos((at - before.as_nanos()) as u64));
    }
    summary("run start -> payload start", starts);
    let with_executor = summary("run -- payload (whole run)", runs);
    println!(
        "{:<40} {:>8.2} ms",
        "executor overhead per run (p50 diff)",
        ms(with_executor.saturating_sub(direct))
    );
}
