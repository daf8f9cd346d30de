//! Container processes of the simulated kubelet, contained like a HostProcess container's job:
//! stopping a container stops every process it started, grandchildren included.
//!
//! Linux has no job object to put a container in, so the tree is found from `/proc` (parent
//! pids) at stop time: every process in it is frozen with SIGSTOP first, so none can fork while
//! the tree is collected, then killed. The node-executor makes itself a child subreaper, so the
//! payloads it starts stay in its tree even when their parent exits.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::Child;

/// A running container process; its whole tree is killed when this is dropped.
#[derive(Debug)]
pub struct ContainerProcess {
    child: Child,
    pid: i32,
    /// Once reaped, the pid may belong to another process: never signal it again.
    reaped: bool,
}

impl ContainerProcess {
    pub fn new(child: Child) -> Self {
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        ContainerProcess { child, pid, reaped: false }
    }

    /// Waits for the container's main process to exit; its exit code (128 + signal when killed,
    /// as container runtimes report it).
    pub async fn wait(&mut self) -> i32 {
        let code = match self.child.wait().await {
            Ok(status) => exit_code(status),
            Err(_) => 255,
        };
        self.reaped = true;
        code
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Asks the main process to stop (SIGTERM, what a Windows console app sees as CTRL_SHUTDOWN),
    /// waits up to `grace`, then kills the whole tree. Returns the exit code.
    pub async fn stop(&mut self, grace: Duration) -> i32 {
        if self.reaped {
            return 0;
        }
        if self.pid > 0 {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGTERM);
        }
        // Whatever the main process left behind goes with it, as when a job is terminated.
        let code = match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => exit_code(status),
            _ => {
                kill_tree(self.pid);
                137
            }
        };
        let _ = self.child.wait().await;
        self.reaped = true;
        code
    }
}

impl Drop for ContainerProcess {
    fn drop(&mut self) {
        if !self.reaped {
            kill_tree(self.pid);
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255)
}

/// Kills `root` and every process descending from it.
pub fn kill_tree(root: i32) {
    if root <= 0 {
        return;
    }
    let mut frozen: Vec<i32> = Vec::new();
    let mut seen = HashSet::new();
    // A few rounds: a process may have forked between reading /proc and being stopped.
    for _ in 0..5 {
        let fresh: Vec<i32> = tree(root).into_iter().filter(|p| seen.insert(*p)).collect();
        if fresh.is_empty() {
            break;
        }
        for pid in &fresh {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGSTOP);
        }
        frozen.extend(fresh);
    }
    for pid in frozen {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// `root` and its descendants that are alive, from the parent pids in `/proc/<pid>/stat`.
pub fn tree(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    let mut alive = HashSet::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split after the last ')'.
            let mut fields = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace();
            let state = fields.next().unwrap_or("");
            let ppid = fields.next().and_then(|s| s.parse::<i32>().ok()).unwrap_or(0);
            if state != "Z" {
                alive.insert(pid);
            }
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        if alive.contains(&pid) {
            out.push(pid);
        }
        if let Some(kids) = children.get(&pid) {
            queue.extend(kids.iter().copied());
        }
    }
    out
}
