//! `prepare`: the task's own folder in the state directory, writable by the account the task
//! runs as and by nobody else who is not an administrator. Run as SYSTEM by the pod's init
//! container, before the payload's container starts as that account.

use std::path::{Path, PathBuf};

use hostprocess_crds::{AppliesTo, Rights};

use crate::platform::Platform;
use crate::provision;

/// Rights an account other than SYSTEM gets on its task's folder: Modify, inherited by what is
/// created below it (`icacls DIR /grant ACCOUNT:(OI)(CI)M`).
pub const TASK_DIR_RIGHTS: (Rights, AppliesTo) = (Rights::Modify, AppliesTo::ThisFolderSubfoldersAndFiles);

/// Creates `<state-dir>/tasks/<uid>` and, for a task that runs as `account`, grants it Modify
/// there. Returns the folder and the account as the account database spells it.
pub fn task_dir<P: Platform>(
    platform: &P,
    state_dir: &Path,
    task_uid: &str,
    account: Option<&str>,
) -> Result<(PathBuf, Option<String>), String> {
    if !platform.privileged() {
        return Err(
            "prepare must run as SYSTEM (or root): it decides who may write in the state directory".into()
        );
    }
    let task_dir = state_dir.join("tasks").join(task_uid);
    std::fs::create_dir_all(&task_dir).map_err(|e| format!("cannot create {}: {e}", task_dir.display()))?;
    let Some(account) = account else { return Ok((task_dir, None)) };
    if account.is_empty() || account.len() > 256 || account.chars().any(char::is_control) {
        return Err(format!("account {account:?} is not an account name"));
    }
    let account = canonical_account(account);
    if platform.lookup_account(account).map_err(|e| e.to_string())?.is_none() {
        return Err(format!("account {account:?} does not exist on this host"));
    }
    let shown = task_dir.to_string_lossy();
    let (rights, applies_to) = TASK_DIR_RIGHTS;
    if let Some(change) =
        provision::grant_change(platform, &shown, account, rights, applies_to).map_err(|e| e.to_string())?
    {
        platform.set_ace(&shown, account, rights, applies_to).map_err(|e| e.to_string())?;
        eprintln!("node-executor: {}", change.command_line());
    }
    Ok((task_dir, Some(account.to_string())))
}

/// The names HostProcess containers take for the service accounts (`NT AUTHORITY\Local service`,
/// `NT AUTHORITY\NetworkService`) as the account database spells them; other names unchanged.
fn canonical_account(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        r"nt authority\local service" | r"nt authority\localservice" => r"NT AUTHORITY\LOCAL SERVICE",
        r"nt authority\network service" | r"nt authority\networkservice" => r"NT AUTHORITY\NETWORK SERVICE",
        _ => name,
    }
}
