//! `install`: copy this executable onto the host for payload images that do not carry it, into
//! a directory per version — Windows will not replace an executable that is running.

use std::path::{Path, PathBuf};

/// Where `install` puts this version of the executor under the state directory.
pub fn installed_path(state_dir: &Path) -> PathBuf {
    let file = if cfg!(windows) { "node-executor.exe" } else { "node-executor" };
    state_dir.join("bin").join(env!("CARGO_PKG_VERSION")).join(file)
}

/// Copies the running executable to `installed_path` unless it is there already; the copy is
/// written beside it and renamed, so a half-written executable is never run. Returns the path
/// and whether this call copied it.
pub fn install(state_dir: &Path) -> Result<(PathBuf, bool), String> {
    let target = installed_path(state_dir);
    if target.is_file() {
        return Ok((target, false));
    }
    let io = |what: &str, e: std::io::Error| format!("install: {what}: {e}");
    let source = std::env::current_exe().map_err(|e| io("finding this executable", e))?;
    let dir = target.parent().unwrap_or(state_dir);
    std::fs::create_dir_all(dir).map_err(|e| io(&format!("creating {}", dir.display()), e))?;
    let partial = dir.join(format!(".partial-{}", std::process::id()));
    std::fs::copy(&source, &partial).map_err(|e| io(&format!("copying to {}", partial.display()), e))?;
    std::fs::rename(&partial, &target).map_err(|e| io(&format!("renaming to {}", target.display()), e))?;
    Ok((target, true))
}
