//! Test payloads: the executor binary doubles as the program it runs in tests (on Linux and
//! under Wine), so the tests need no PowerShell and no other tools. Hidden from `--help`.

use std::io::Write;
use std::time::Duration;

pub use hostprocess_protocol::TestPayload as Payload;

pub fn run(payload: Payload) -> i32 {
    match payload {
        Payload::Alive { pids } => {
            let alive: Vec<u32> =
                pids.into_iter().filter(|p| crate::platform::host::process_alive(*p)).collect();
            println!("{alive:?}");
            i32::from(!alive.is_empty())
        }
        Payload::Stamp { file } => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            match std::fs::write(&file, nanos.to_string()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("payload stamp: {}: {e}", file.display());
                    1
                }
            }
        }
        Payload::NestedCpuRate { millis, out } => nested_cpu_rate(millis, &out),
        Payload::HandleOpen { value } => {
            let open = crate::platform::host::handle_open(value);
            println!("{}", if open { "open" } else { "closed" });
            i32::from(open)
        }
        Payload::Describe => {
            println!("{}", crate::platform::host::describe());
            0
        }
        Payload::Exit { code } => code,
        Payload::Sleep { seconds } => {
            std::thread::sleep(Duration::from_secs(seconds));
            0
        }
        Payload::Count { file, code } => {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&file)
                .and_then(|mut f| writeln!(f, "{}", std::process::id()));
            if let Err(e) = appended {
                eprintln!("payload count: {}: {e}", file.display());
                return 1;
            }
            code
        }
        Payload::Alone { marker, count, seconds } => {
            // A lock, not a file's existence: a payload killed with its job lets go of it.
            let held = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&marker)
                .and_then(|f| f.try_lock().map(|()| f).map_err(std::io::Error::from));
            let _held = match held {
                Ok(file) => file,
                Err(e) => {
                    eprintln!("payload alone: {}: {e} (another payload is running)", marker.display());
                    return 99;
                }
            };
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&count)
                .and_then(|mut f| writeln!(f, "{}", std::process::id()));
            std::thread::sleep(Duration::from_secs(seconds));
            match appended {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("payload alone: {}: {e}", count.display());
                    1
                }
            }
        }
        Payload::Relaunch { marker, seconds, child: false } => {
            let relaunched = std::env::current_exe().and_then(|exe| {
                std::process::Command::new(exe)
                    .args(["payload", "relaunch"])
                    .arg(&marker)
                    .args(["--seconds", &seconds.to_string(), "--child"])
                    .spawn()
            });
            match relaunched {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("payload relaunch: {e}");
                    1
                }
            }
        }
        Payload::Relaunch { marker, seconds, child: true } => {
            std::thread::sleep(Duration::from_secs(seconds));
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&marker)
                .and_then(|mut f| writeln!(f, "installed by {}", std::process::id()));
            i32::from(appended.is_err())
        }
        Payload::SpawnTree { depth, pid_dir, seconds } => {
            if let Err(e) = write_pid(&pid_dir) {
                eprintln!("payload spawn-tree: {e}");
                return 1;
            }
            if depth > 0 {
                let spawned = std::env::current_exe().and_then(|exe| {
                    std::process::Command::new(exe)
                        .args(["payload", "spawn-tree", &(depth - 1).to_string()])
                        .arg(&pid_dir)
                        .args(["--seconds", &seconds.to_string()])
                        .spawn()
                });
                if let Err(e) = spawned {
                    eprintln!("payload spawn-tree: {e}");
                    return 1;
                }
            }
            std::thread::sleep(Duration::from_secs(seconds));
            0
        }
        Payload::IgnoreStop { pid_dir, seconds } => {
            if let Err(e) = ctrlc::set_handler(|| eprintln!("payload ignore-stop: ignoring a stop request")) {
                eprintln!("payload ignore-stop: {e}");
                return 1;
            }
            if let Err(e) = write_pid(&pid_dir) {
                eprintln!("payload ignore-stop: {e}");
                return 1;
            }
            std::thread::sleep(Duration::from_secs(seconds));
            0
        }
        Payload::Alloc { mb, seconds } => {
            let mut held: Vec<Vec<u8>> = Vec::new();
            for _ in 0..mb.div_ceil(8) {
                held.push(vec![1u8; 8 << 20]);
                std::thread::sleep(Duration::from_millis(5));
            }
            eprintln!("payload alloc: holding {} MiB", held.len() * 8);
            std::thread::sleep(Duration::from_secs(seconds));
            0
        }
    }
}

fn write_pid(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(std::process::id().to_string()), b"")
}

#[cfg(windows)]
fn nested_cpu_rate(millis: u64, out: &std::path::Path) -> i32 {
    let written = crate::platform::windows::nested_cpu_rate(millis).map_err(|e| e.to_string()).and_then(
        |(parent, rate, cpus)| {
            let parent = parent.map_or_else(|| "none".to_string(), |p| p.to_string());
            std::fs::write(out, format!("parent={parent} rate={rate} cpus={cpus}")).map_err(|e| e.to_string())
        },
    );
    match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("payload nested-cpu-rate: {e}");
            1
        }
    }
}

#[cfg(not(windows))]
fn nested_cpu_rate(_millis: u64, _out: &std::path::Path) -> i32 {
    eprintln!("payload nested-cpu-rate: job CPU rates exist on Windows only");
    2
}
