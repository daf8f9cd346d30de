//! `install`: copy this executable onto the host for payload images that do not carry it, into
//! a directory per version — Windows will not replace an executable that is running.
//!
//! What is there already is trusted only if it is byte for byte this executable: anything else
//! (planted while the state directory was open to local users, or damaged) is replaced.

use std::fs;
use std::path::{Path, PathBuf};

/// Where `install` puts this version of the executor under the state directory.
pub fn installed_path(state_dir: &Path) -> PathBuf {
    let file = if cfg!(windows) { "node-executor.exe" } else { "node-executor" };
    state_dir.join("bin").join(env!("CARGO_PKG_VERSION")).join(file)
}

/// Makes `installed_path` hold exactly this executable. The copy is written beside it and
/// renamed, so a half-written executable is never run; a different file already there is moved
/// aside first (Windows lets a running executable be renamed, not replaced). Returns the path
/// and whether this call copied it.
pub fn install(state_dir: &Path) -> Result<(PathBuf, bool), String> {
    let io = |what: &str, e: std::io::Error| format!("install: {what}: {e}");
    let target = installed_path(state_dir);
    let source = std::env::current_exe().map_err(|e| io("finding this executable", e))?;
    let ours = fs::read(&source).map_err(|e| io(&format!("reading {}", source.display()), e))?;
    let existing = match fs::read(&target) {
        Ok(bytes) if bytes == ours => return Ok((target, false)),
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(io(&format!("reading {}", target.display()), e)),
    };
    let dir = target.parent().unwrap_or(state_dir);
    fs::create_dir_all(dir).map_err(|e| io(&format!("creating {}", dir.display()), e))?;
    let partial = dir.join(format!(".partial-{}", std::process::id()));
    fs::write(&partial, &ours).map_err(|e| io(&format!("writing {}", partial.display()), e))?;
    let permissions = fs::metadata(&source).map_err(|e| io("reading this executable's permissions", e))?;
    fs::set_permissions(&partial, permissions.permissions())
        .map_err(|e| io(&format!("setting the permissions of {}", partial.display()), e))?;
    if existing {
        eprintln!(
            "node-executor: {} is not this executor (planted or damaged); replacing it",
            target.display()
        );
        let aside = dir.join(format!(".replaced-{}", std::process::id()));
        fs::rename(&target, &aside).map_err(|e| io(&format!("moving {} aside", target.display()), e))?;
        // A running copy cannot be deleted on Windows; the next install tries again.
        let _ = fs::remove_file(&aside);
    }
    fs::rename(&partial, &target).map_err(|e| io(&format!("renaming to {}", target.display()), e))?;
    Ok((target, true))
}
