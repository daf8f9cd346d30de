//! One executor at a time: an exclusive lock on a file, held for as long as the work it guards.
//!
//! `std::fs::File::lock` is `flock` on Linux and `LockFileEx` on Windows. Both locks belong to
//! the open file, so the OS releases them when the process ends however it ends: a crashed or
//! killed executor never blocks its successor for longer than it takes to die. The payload does
//! not inherit the handle (Rust opens files non-inheritable), so a payload that outlives its
//! executor does not hold the lock either.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::shutdown::Shutdown;

/// How often a waiting executor tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// A held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct Held {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot lock {path}: {source}")]
pub struct LockError {
    path: PathBuf,
    source: std::io::Error,
}

fn open(path: &Path) -> Result<File, LockError> {
    let err = |source| LockError { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(err)
}

/// Takes the lock at `path`, waiting while another process holds it. `None`: a stop was
/// requested before the lock was free. `holder` says in the log what the other process is doing.
pub fn acquire(path: &Path, holder: &str, shutdown: &Shutdown) -> Result<Option<Held>, LockError> {
    let file = open(path)?;
    let mut said = false;
    loop {
        match file.try_lock() {
            Ok(()) => {
                if said {
                    eprintln!("node-executor: the other executor is done; going on");
                }
                return Ok(Some(Held { _file: file }));
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(source)) => return Err(LockError { path: path.to_path_buf(), source }),
        }
        if !said {
            eprintln!("node-executor: {holder}; waiting until it is done ({})", path.display());
            said = true;
        }
        if shutdown.sleep(RETRY_EVERY) {
            return Ok(None);
        }
    }
}

/// Takes the lock at `path`, waiting as long as another process holds it (for short work).
pub fn acquire_blocking(path: &Path) -> Result<Held, LockError> {
    let file = open(path)?;
    file.lock().map_err(|source| LockError { path: path.to_path_buf(), source })?;
    Ok(Held { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_waits_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("x.lock");
        let first = acquire_blocking(&path).expect("first");
        let stop = Shutdown::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let held = acquire(&path, "another holds it", &stop).expect("lock");
                tx.send(()).expect("send");
                held.is_some()
            })
        };
        assert!(rx.recv_timeout(Duration::from_millis(400)).is_err(), "took a lock that was held");
        drop(first);
        rx.recv_timeout(Duration::from_secs(5)).expect("the lock was let go but not taken");
        assert!(waiter.join().expect("join"));
    }
}
