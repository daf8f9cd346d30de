//! Finding files of the container on the host.
//!
//! containerd 1.6 puts the image and the volumes under `$CONTAINER_SANDBOX_MOUNT_POINT`
//! (`C:\hpc\<id>\…`); 1.7+ with the bind filter puts volumes at their `mountPath`. A path is
//! looked up as written first, then under the sandbox mount point, so both work.

use std::path::{Component, Path, PathBuf};

/// The environment variable containerd sets in HostProcess containers.
pub const SANDBOX_ENV: &str = "CONTAINER_SANDBOX_MOUNT_POINT";

/// Resolves `path` using the sandbox mount point `sandbox` and an existence check.
pub fn resolve(path: &Path, sandbox: Option<&Path>, exists: impl Fn(&Path) -> bool) -> PathBuf {
    if path.is_absolute() && exists(path) {
        return path.to_path_buf();
    }
    if let Some(sandbox) = sandbox {
        // `/etc/script/run.ps1` and `C:\etc\script\run.ps1` both live at `<sandbox>\etc\script\run.ps1`.
        let candidate = sandbox.join(inside(path));
        if exists(&candidate) {
            return candidate;
        }
    }
    path.to_path_buf()
}

/// The part of a path below its root, `..` dropped so nothing climbs out. On the Linux test
/// platform a Windows path (`C:\hostprocess\run.ps1`, as the pods of a simulated Windows node
/// carry them) is read as a Windows path too.
fn inside(path: &Path) -> PathBuf {
    if cfg!(windows) {
        return path.components().filter(|c| matches!(c, Component::Normal(_))).collect();
    }
    let text = path.to_string_lossy().replace('\\', "/");
    let text = match text.as_bytes() {
        [drive, b':', ..] if drive.is_ascii_alphabetic() => &text[2..],
        _ => text.as_str(),
    };
    Path::new(text).components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

/// `resolve` with the process environment and the real file system.
pub fn resolve_from_env(path: &Path) -> PathBuf {
    let sandbox = std::env::var_os(SANDBOX_ENV).map(PathBuf::from);
    resolve(path, sandbox.as_deref(), |p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_is_found_as_written_or_under_the_sandbox() {
        let sandbox = Path::new("/hpc/abc");
        let only = |existing: &'static str| move |p: &Path| p == Path::new(existing);
        // containerd 1.7+: the volume is at its mountPath.
        assert_eq!(
            resolve(Path::new("/etc/script/run.ps1"), Some(sandbox), only("/etc/script/run.ps1")),
            Path::new("/etc/script/run.ps1")
        );
        // containerd 1.6: the volume is under the sandbox mount point.
        assert_eq!(
            resolve(Path::new("/etc/script/run.ps1"), Some(sandbox), only("/hpc/abc/etc/script/run.ps1")),
            Path::new("/hpc/abc/etc/script/run.ps1")
        );
        // A program of the image, given relative to the image root.
        assert_eq!(
            resolve(Path::new("agent/agent.exe"), Some(sandbox), only("/hpc/abc/agent/agent.exe")),
            Path::new("/hpc/abc/agent/agent.exe")
        );
        // Nothing found (or no sandbox): unchanged, so the OS reports the real error.
        assert_eq!(resolve(Path::new("tool.exe"), Some(sandbox), |_| false), Path::new("tool.exe"));
        assert_eq!(resolve(Path::new("tool.exe"), None, |_| true), Path::new("tool.exe"));
        // A Windows path names the same file on the Linux test platform.
        #[cfg(unix)]
        assert_eq!(
            resolve(Path::new(r"C:\etc\script\run.ps1"), Some(sandbox), |p| p.starts_with(sandbox)),
            Path::new("/hpc/abc/etc/script/run.ps1")
        );
        // `..` cannot climb out of the sandbox.
        assert_eq!(
            resolve(Path::new("../../etc/passwd"), Some(sandbox), |p| p.starts_with(sandbox)),
            Path::new("/hpc/abc/etc/passwd")
        );
    }
}
