//! How one simulated node behaves, and its disk: `C:\X\Y` is `<root>/X/Y`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The file whose appearance under the node's test store asks the node to reboot (what the
/// node-executor's Linux platform writes where Windows would call InitiateSystemShutdownEx).
pub const REBOOT_REQUEST: &str = "reboot-requested";
/// The file under the node's test store that says when the node last booted (RFC 3339), read
/// by the executor's Linux platform as the host's boot time.
pub const BOOTED_AT: &str = "booted-at";

/// How one simulated node behaves.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node: String,
    /// The node's disk.
    pub root: PathBuf,
    /// Programs of the simulated Windows host: the lower-case file name without `.exe` →
    /// the local executable that stands for it (`node-executor` → the Linux build).
    pub programs: BTreeMap<String, PathBuf>,
    /// What `KUBERNETES_SERVICE_HOST`/`_PORT` say inside containers.
    pub api_host: String,
    pub api_port: u16,
    pub node_ip: String,
    /// The first wait before restarting a crashed container (the real kubelet: 10s, doubled
    /// each time up to 5m).
    pub restart_backoff: Duration,
    pub restart_backoff_cap: Duration,
    /// How long a reboot keeps the node down.
    pub reboot_downtime: Duration,
    /// How often the node's Lease is renewed (the real kubelet: every 10 s).
    pub lease_renewal: Duration,
}

impl KubeletConfig {
    pub fn new(node: &str, root: PathBuf) -> Self {
        KubeletConfig {
            node: node.to_string(),
            root,
            programs: BTreeMap::new(),
            api_host: "127.0.0.1".into(),
            api_port: 443,
            node_ip: "10.240.0.4".into(),
            restart_backoff: Duration::from_secs(10),
            restart_backoff_cap: Duration::from_secs(300),
            reboot_downtime: Duration::from_secs(2),
            lease_renewal: Duration::from_secs(10),
        }
    }

    /// The node's test store (accounts, ACLs, reboot requests) that the executor's Linux
    /// platform uses in place of Windows.
    pub fn test_store(&self) -> PathBuf {
        self.root.join("test-store")
    }

    /// Where the executor keeps its records on this node (`C:\ProgramData\hostprocess-operator`).
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("ProgramData").join("hostprocess-operator")
    }

    /// `C:\X\Y` (or `/X/Y`) on this node's disk.
    pub fn host_path(&self, windows_path: &str) -> PathBuf {
        under(&self.root, windows_path)
    }
}

/// `C:\X\Y` or `/X/Y` under `base` (drive and `..` dropped: nothing escapes the base).
pub(super) fn under(base: &Path, windows_path: &str) -> PathBuf {
    let unified = windows_path.replace('\\', "/");
    let without_drive = match unified.as_bytes() {
        [d, b':', ..] if d.is_ascii_alphabetic() => &unified[2..],
        _ => unified.as_str(),
    };
    let inside: PathBuf =
        Path::new(without_drive).components().filter(|c| matches!(c, Component::Normal(_))).collect();
    base.join(inside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn windows_paths_land_under_the_node_disk_and_cannot_escape_it() {
        let root = Path::new("/sim/win-000");
        assert_eq!(
            under(root, r"C:\ProgramData\hostprocess"),
            Path::new("/sim/win-000/ProgramData/hostprocess")
        );
        assert_eq!(under(root, "/etc/script/run.ps1"), Path::new("/sim/win-000/etc/script/run.ps1"));
        assert_eq!(under(root, r"C:\..\..\etc\passwd"), Path::new("/sim/win-000/etc/passwd"));
    }
}
