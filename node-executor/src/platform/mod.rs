//! The seam between what the executor decides and the host it changes.
//!
//! Everything above this module (argument parsing, planning, idempotency records, results)
//! is shared and tested on Linux. Below it, `windows.rs` makes the Win32 calls and `linux.rs`
//! implements the same contract with process groups and a file-backed account/ACL store
//! that exists only for tests and the simulated cluster.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hostprocess_crds::{AppliesTo, Rights};
use serde::Serialize;

pub mod host;
#[cfg(unix)]
pub mod linux;
#[cfg(any(windows, test))]
pub mod sddl;
#[cfg(windows)]
#[allow(unsafe_code)]
pub mod windows;

/// What to start.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: OsString,
    pub args: Vec<OsString>,
}

/// Limits of the job the payload runs in. `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobLimits {
    pub memory_bytes: Option<u64>,
    pub cpu_millis: Option<u64>,
    pub processes: Option<u32>,
}

pub use hostprocess_protocol::{JobStats, LimitKind};

/// A payload running in its own job: the payload and every process it starts.
pub trait Job {
    /// The payload's main process id.
    fn pid(&self) -> u32;
    /// Waits up to `slice` for the main process to exit; its exit code once it has.
    fn poll(&mut self, slice: Duration) -> Result<Option<i64>, PlatformError>;
    /// Kills every process of the job and waits until none is left. Idempotent.
    fn kill(&mut self) -> Result<(), PlatformError>;
    /// The job's accounting so far.
    fn stats(&mut self) -> JobStats;
    /// What the user should know about how the limits were set (a container's CPU cap lower
    /// than the request), for the attempt's record.
    fn note(&self) -> Option<String> {
        None
    }
}

/// A local group as the host has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalGroup {
    pub name: String,
    pub description: String,
    /// The members, as canonical account ids (SIDs on Windows).
    pub members: Vec<AccountId>,
}

/// A canonical account identity (a SID string on Windows), comparable for equality.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct AccountId(pub String);

/// A local group's identity on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSid {
    pub sid: AccountId,
    /// Whether it belongs to this machine's own account domain (`S-1-5-21-<machine>-<rid>`): a
    /// group someone created, not a built-in (`S-1-5-32-*`, whatever its localized name) or a
    /// well-known principal that happens to share the name.
    pub own_domain: bool,
}

/// One spelling per path, so that a grant converges however it is written: separators as
/// backslashes, no repeated or trailing ones (a drive root keeps its own), the drive letter in
/// upper case. Paths still compare without regard to case, as Windows does.
pub fn normalize_path(path: &str) -> String {
    let unc = path.starts_with(r"\\") || path.starts_with("//");
    let mut out = String::with_capacity(path.len());
    for c in path.chars().map(|c| if c == '/' { '\\' } else { c }) {
        if c == '\\' && out.ends_with('\\') && !(unc && out.len() == 1) {
            continue;
        }
        out.push(c);
    }
    while out.ends_with('\\') && out.len() > 3 {
        out.pop();
    }
    if let Some(drive) = out.get(..1).filter(|_| out.as_bytes().get(1) == Some(&b':')) {
        out = format!("{}{}", drive.to_ascii_uppercase(), &out[1..]);
    }
    out
}

/// Principals no HostGroup may add as a member, by SID (names are localized; SIDs are not):
/// well-known and broad principals, the service accounts, every BUILTIN group, and a domain's or
/// machine's administrators (RIDs 500, 512, 518, 519, 544).
pub fn privileged_member(sid: &str) -> bool {
    const WELL_KNOWN: [&str; 9] = [
        "S-1-1-0", "S-1-5-2", "S-1-5-4", "S-1-5-6", "S-1-5-7", "S-1-5-11", "S-1-5-18", "S-1-5-19", "S-1-5-20",
    ];
    if WELL_KNOWN.contains(&sid) || sid.starts_with("S-1-5-32-") {
        return true;
    }
    sid.starts_with("S-1-5-21-")
        && ["-500", "-512", "-518", "-519", "-544"].iter().any(|rid| sid.ends_with(rid))
}

/// One explicit access-allowed entry for a group on a path. `None`: the host has rights or
/// inheritance flags outside what a HostGroup grant expresses (set by someone else), so it
/// never equals a wanted grant and is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ace {
    pub rights: Option<Rights>,
    pub applies_to: Option<AppliesTo>,
}

impl Ace {
    pub fn new(rights: Rights, applies_to: AppliesTo) -> Self {
        Ace { rights: Some(rights), applies_to: Some(applies_to) }
    }
}

/// What a path is on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    File,
    Directory,
}

/// Who owns a directory and who besides the trusted principals may write in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSecurity {
    /// The owner, as people know it.
    pub owner: String,
    pub owner_trusted: bool,
    /// Whether its permissions come (also) from its parent (Windows: the DACL is not protected).
    pub inherits: bool,
    /// Principals other than the trusted ones who may create, change or delete what is in it.
    pub untrusted_writers: Vec<String>,
}

impl DirSecurity {
    /// What is wrong, in words; empty when nothing is.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.owner_trusted {
            problems.push(format!("it is owned by {}, not by the administrators", self.owner));
        }
        if self.inherits {
            problems.push("it inherits its permissions from its parent folder".to_string());
        }
        problems.extend(
            self.untrusted_writers.iter().map(|who| format!("{who} can create or change files in it")),
        );
        problems
    }
}

/// The host operations the executor needs.
pub trait Platform {
    type Job: Job;

    /// Starts the payload suspended, puts it in a new job with the limits, then lets it run.
    /// Refuses (before the payload runs) a limit the OS does not accept.
    fn launch(&self, launch: &Launch, limits: &JobLimits) -> Result<Self::Job, PlatformError>;

    /// The command that runs a PowerShell script file.
    fn script_command(&self, script: PathBuf) -> Launch;

    /// Resolves an account name to its canonical id; `None` if no such account exists.
    fn lookup_account(&self, name: &str) -> Result<Option<AccountId>, PlatformError>;
    fn group(&self, name: &str) -> Result<Option<LocalGroup>, PlatformError>;
    /// The SID of the local group `name` of this machine (looked up as `COMPUTERNAME\name`, so
    /// a well-known principal of the same name never answers), and whether it is the machine's
    /// own; `None` when there is no such group.
    fn group_sid(&self, name: &str) -> Result<Option<GroupSid>, PlatformError>;
    fn create_group(&self, name: &str, description: &str) -> Result<(), PlatformError>;
    fn set_group_description(&self, name: &str, description: &str) -> Result<(), PlatformError>;
    fn delete_group(&self, name: &str) -> Result<(), PlatformError>;
    fn add_member(&self, group: &str, member: &AccountId) -> Result<(), PlatformError>;
    fn remove_member(&self, group: &str, member: &AccountId) -> Result<(), PlatformError>;

    fn path_kind(&self, path: &str) -> Result<PathKind, PlatformError>;
    /// The explicit (not inherited) allow entries for `group` on `path`.
    fn explicit_aces(&self, path: &str, group: &str) -> Result<Vec<Ace>, PlatformError>;
    /// Replaces the explicit entries for `group` on `path` by one allowing `rights`.
    fn set_ace(
        &self,
        path: &str,
        group: &str,
        rights: Rights,
        applies_to: AppliesTo,
    ) -> Result<(), PlatformError>;
    /// Removes the explicit entries for `group` on `path`.
    fn remove_aces(&self, path: &str, group: &str) -> Result<(), PlatformError>;
    /// The explicit entries of the account with this id on `path`, allow and deny (a deny entry
    /// reads as an `Ace` with neither rights nor inheritance), whether or not it still has a name.
    fn explicit_aces_of(&self, path: &str, sid: &AccountId) -> Result<Vec<Ace>, PlatformError>;
    /// Removes the explicit entries, allow and deny, of the account with this id on `path`.
    fn remove_aces_of(&self, path: &str, sid: &AccountId) -> Result<(), PlatformError>;

    /// Whether the OS says a reboot is pending (Windows: the CBS `RebootPending` or Windows
    /// Update `RebootRequired` registry key exists).
    fn reboot_pending(&self) -> Result<bool, PlatformError>;
    /// Asks the OS to restart the host after a short delay, as a planned restart.
    fn request_reboot(&self, message: &str) -> Result<(), PlatformError>;
    /// When the host last started (Windows: now less the milliseconds since boot).
    fn booted_at(&self) -> Result<std::time::SystemTime, PlatformError>;

    /// Creates `dir` (and missing parents) so that only the administrators (Windows: SYSTEM and
    /// Administrators, full control, nothing inherited; users may read) or root can write in it.
    fn create_private_dir(&self, dir: &Path) -> Result<(), PlatformError>;
    /// Who owns `dir` and who else may write in it.
    fn dir_security(&self, dir: &Path) -> Result<DirSecurity, PlatformError>;
    /// Gives `dir` and everything below it to the administrators (root) and resets its
    /// permissions to those `create_private_dir` gives; what someone else planted loses its own.
    fn reset_private_tree(&self, dir: &Path) -> Result<(), PlatformError>;
    /// Whether the executor may repair the state directory: it runs as SYSTEM or as an
    /// administrator (Linux: root).
    fn privileged(&self) -> bool;

    /// Whether a process is alive (not exited, not a zombie).
    fn process_alive(&self, pid: u32) -> bool;
    /// Asks a process to stop the way the container runtime does when a pod is deleted:
    /// SIGTERM on Linux; on Windows the console shutdown event, delivered by a thread started
    /// in the process at `kernel32!CtrlRoutine` (how hcsshim signals a HostProcess container,
    /// which has no console).
    fn request_stop(&self, pid: u32) -> Result<(), PlatformError>;
    /// What this host is, for reports: "Linux (test platform)", "Windows", "Wine 8.0".
    fn describe(&self) -> String;
    /// Whether this is Wine, which implements some calls only as stubs.
    fn is_wine(&self) -> bool;
}

/// A host call that failed: which call, on what, and the OS's words.
#[derive(Debug, thiserror::Error)]
#[error("{call}({subject}) failed: {detail}")]
pub struct PlatformError {
    pub call: &'static str,
    pub subject: String,
    pub detail: String,
    /// The OS error code, when there is one (Win32 error, errno).
    pub code: Option<i64>,
}

impl PlatformError {
    pub fn new(call: &'static str, subject: impl Into<String>, detail: impl ToString) -> Self {
        PlatformError { call, subject: subject.into(), detail: detail.to_string(), code: None }
    }

    pub fn with_code(mut self, code: i64) -> Self {
        self.code = Some(code);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spelling_per_path() {
        for (written, normal) in [
            (r"C:\data\", r"C:\data"),
            (r"c:\data", r"C:\data"),
            ("C:/data//logs/", r"C:\data\logs"),
            (r"C:\", r"C:\"),
            (r"C:\\", r"C:\"),
            (r"\\server\share\", r"\\server\share"),
            (r"\\server\\share", r"\\server\share"),
        ] {
            assert_eq!(normalize_path(written), normal, "{written}");
        }
    }

    #[test]
    fn privileged_members_are_known_by_sid_whatever_their_name() {
        for sid in [
            "S-1-1-0",
            "S-1-5-18",
            "S-1-5-32-544",
            "S-1-5-32-555",
            "S-1-5-21-1-2-3-500",
            "S-1-5-21-9-8-7-512",
        ] {
            assert!(privileged_member(sid), "{sid}");
        }
        for sid in ["S-1-5-21-1-2-3-1001", "S-1-5-21-1-2-3-5120", r"node\alice"] {
            assert!(!privileged_member(sid), "{sid}");
        }
    }
}
