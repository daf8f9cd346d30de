//! The state directory nobody else can write.
//!
//! It holds what the executor trusts: the result records (a forged one would make a security
//! patch "Succeeded" without running it), the ownership records (a forged one would make
//! `deprovision` delete a group it never created) and the installed executor that SYSTEM pods and
//! their readiness probes run. So before any subcommand reads or writes it, the executor checks
//! that only trusted principals own it and may write in it — SYSTEM and the Administrators on
//! Windows, root (or the executor's own user) on Linux — and that it does not inherit its
//! permissions from its parent (`C:\ProgramData` lets every user create folders).
//!
//! A missing directory is created that way. A wrong one is repaired when the executor runs as
//! SYSTEM or root (the whole tree given to the administrators, permissions reset to the
//! directory's own), and otherwise refused with what is wrong and how to fix it.

use std::path::Path;

use crate::platform::Platform;

/// What a subcommand may do about the state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Create it when missing and repair it when wrong (if the executor is privileged).
    Prepare,
    /// Only check it (the readiness probe: it runs as the task's account, every few seconds).
    Check,
}

/// Makes sure `dir` is the executor's alone, or says why it is not.
pub fn ensure<P: Platform>(platform: &P, dir: &Path, access: Access) -> Result<(), String> {
    let shown = dir.display();
    let missing = !dir.exists();
    if missing && access == Access::Prepare {
        platform
            .create_private_dir(dir)
            .map_err(|e| format!("cannot create the state directory {shown}: {e}"))?;
    }
    if missing && access == Access::Check {
        // Nothing recorded yet: nothing to trust or distrust.
        return Ok(());
    }
    let problems = inspect(platform, dir)?;
    if problems.is_empty() {
        return Ok(());
    }
    if access == Access::Prepare && platform.privileged() {
        eprintln!(
            "node-executor: the state directory {shown} was not the executor's alone ({}); \
             giving it and everything in it to the administrators and resetting its permissions",
            problems.join("; ")
        );
        platform
            .reset_private_tree(dir)
            .map_err(|e| format!("cannot repair the state directory {shown}: {e}"))?;
        let left = inspect(platform, dir)?;
        if left.is_empty() {
            return Ok(());
        }
        return Err(format!(
            "the state directory {shown} is still not safe after repair: {}; remove it (it holds only \
             result records and the installed executor) and run again",
            left.join("; ")
        ));
    }
    Err(format!(
        "refusing to use the state directory {shown}: {}. Another local user could plant a program or \
         forge a record in it. Run a SYSTEM pod of the operator on this node (any HostGroup setup or \
         SYSTEM task repairs it), or remove the directory as an administrator",
        problems.join("; ")
    ))
}

fn inspect<P: Platform>(platform: &P, dir: &Path) -> Result<Vec<String>, String> {
    let security = platform
        .dir_security(dir)
        .map_err(|e| format!("cannot read who may write the state directory {}: {e}", dir.display()))?;
    Ok(security.problems())
}
