//! The executor's private directory: created with a protected DACL (SYSTEM and Administrators
//! full control, Users read and execute, nothing inherited from `C:\ProgramData`), read back as
//! SDDL, and repaired as a tree — every object opened by handle without following reparse
//! points, so a junction planted inside never redirects the repair to `C:\Windows`.

use std::ffi::c_void;
use std::path::Path;

use windows::Win32::Foundation::{ERROR_ALREADY_EXISTS, ERROR_SUCCESS, HANDLE};
use windows::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, GetSecurityInfo, SDDL_REVISION_1, SE_FILE_OBJECT,
};
use windows::Win32::Security::{
    CheckTokenMembership, DACL_SECURITY_INFORMATION, GetTokenInformation, OWNER_SECURITY_INFORMATION,
    PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, SetKernelObjectSecurity, TOKEN_QUERY, TOKEN_USER, TokenUser,
};
use windows::Win32::Storage::FileSystem::{
    CreateDirectoryW, DELETE, FILE_ATTRIBUTE_DIRECTORY, READ_CONTROL, WRITE_DAC, WRITE_OWNER,
};
use windows::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};
use windows::core::{PCWSTR, PWSTR};

use crate::platform::sddl;
use crate::platform::{DirSecurity, PlatformError};

use super::accounts::{sid_from_string, sid_string};
use super::handles::*;
use super::system::enable_privilege;

/// The state directory's own permissions (`icacls DIR /inheritance:r /grant:r SYSTEM:(OI)(CI)F
/// Administrators:(OI)(CI)F Users:(OI)(CI)RX "Authenticated Users":(OI)(CI)RX`, owner
/// Administrators). Read for every account a task may run as — service accounts and a
/// HostGroup's ephemeral users are not all in Users — so each can run the installed executor
/// and its probe can read its record; writing is the administrators' alone.
const PRIVATE: &str = "O:BAD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)(A;OICI;0x1200a9;;;AU)";
/// What a folder below it inherits from it.
const INHERITED_DIR: &str =
    "O:BAD:AI(A;OICIID;FA;;;SY)(A;OICIID;FA;;;BA)(A;OICIID;0x1200a9;;;BU)(A;OICIID;0x1200a9;;;AU)";
/// What a file below it inherits from it.
const INHERITED_FILE: &str = "O:BAD:AI(A;ID;FA;;;SY)(A;ID;FA;;;BA)(A;ID;0x1200a9;;;BU)(A;ID;0x1200a9;;;AU)";

fn descriptor(text: &str) -> Result<LocalMem, PlatformError> {
    let wtext = wide(text);
    let mut sd = PSECURITY_DESCRIPTOR::default();
    // SAFETY: a NUL-terminated SDDL string; the descriptor is LocalAlloc'd and freed by LocalMem.
    unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            PCWSTR(wtext.as_ptr()),
            SDDL_REVISION_1,
            &mut sd,
            None,
        )
    }
    .map_err(|e| win_err("ConvertStringSecurityDescriptorToSecurityDescriptorW", text, e))?;
    Ok(LocalMem(sd.0))
}

/// This process's user SID, as a string.
fn own_sid() -> Result<String, PlatformError> {
    let mut token = HANDLE::default();
    // SAFETY: the current process's pseudo-handle; the token handle is owned below.
    unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) }
        .map_err(|e| win_err("OpenProcessToken", "self", e))?;
    let token = Owned(token);
    let mut buffer = vec![0u8; 256];
    let mut needed = 0u32;
    // SAFETY: the buffer is writable for its length; TokenUser fits in 256 bytes (SID ≤ 68).
    unsafe {
        GetTokenInformation(
            token.0,
            TokenUser,
            Some(buffer.as_mut_ptr() as *mut c_void),
            buffer.len() as u32,
            &mut needed,
        )
    }
    .map_err(|e| win_err("GetTokenInformation(TokenUser)", "self", e))?;
    // SAFETY: the call filled a TOKEN_USER at the start of the buffer (read unaligned).
    let user = unsafe { std::ptr::read_unaligned(buffer.as_ptr() as *const TOKEN_USER) };
    Ok(sid_string(user.User.Sid)?.0)
}

/// SYSTEM, or a member of the Administrators with the group enabled (an elevated token).
pub(super) fn privileged() -> bool {
    own_sid().is_ok_and(|me| is_privileged(&me))
}

/// Whether the process whose user SID is `me` is SYSTEM or an elevated administrator.
fn is_privileged(me: &str) -> bool {
    if me == sddl::SYSTEM {
        return true;
    }
    let Ok(admins) = sid_from_string(&crate::platform::AccountId(sddl::ADMINISTRATORS.into())) else {
        return false;
    };
    let mut member = windows::core::BOOL(0);
    // SAFETY: `admins` holds a valid SID; None checks this thread's effective token.
    let checked =
        unsafe { CheckTokenMembership(None, windows::Win32::Security::PSID(admins.0), &mut member) };
    checked.is_ok() && member.as_bool()
}

pub(super) fn create_private_dir(dir: &Path) -> Result<(), PlatformError> {
    let shown = dir.display().to_string();
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| PlatformError::new("CreateDirectoryW", parent.display().to_string(), e))?;
    }
    let sd = descriptor(PRIVATE)?;
    let attributes = SECURITY_ATTRIBUTES {
        nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: sd.0,
        bInheritHandle: false.into(),
    };
    let wdir = wide(&shown);
    // SAFETY: a NUL-terminated path and a valid descriptor that outlives the call.
    match unsafe { CreateDirectoryW(PCWSTR(wdir.as_ptr()), Some(&attributes)) } {
        Ok(()) => Ok(()),
        // Another executor made it first: the check that follows judges it.
        Err(e) if e.code() == ERROR_ALREADY_EXISTS.to_hresult() => Ok(()),
        Err(e) => Err(win_err("CreateDirectoryW", &shown, e)),
    }
}

pub(super) fn dir_security(dir: &Path) -> Result<DirSecurity, PlatformError> {
    let shown = dir.display().to_string();
    let handle = open_no_follow(dir, READ_CONTROL.0)?;
    if is_link(attributes(&handle, dir)?) {
        return Err(PlatformError::new(
            "open",
            &shown,
            "it is a link (junction or symbolic link), not a folder: remove it",
        ));
    }
    let mut sd = PSECURITY_DESCRIPTOR::default();
    // SAFETY: the handle is open with READ_CONTROL; the descriptor is LocalAlloc'd, freed below.
    let status = unsafe {
        GetSecurityInfo(
            handle.0,
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            None,
            None,
            None,
            None,
            Some(&mut sd),
        )
    };
    if status != ERROR_SUCCESS {
        return Err(status_err("GetSecurityInfo", &shown, status));
    }
    let _sd = LocalMem(sd.0);
    let mut text = PWSTR::null();
    // SAFETY: a valid descriptor; the string is LocalAlloc'd and freed by LocalMem.
    unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            sd,
            SDDL_REVISION_1,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut text,
            None,
        )
    }
    .map_err(|e| win_err("ConvertSecurityDescriptorToStringSecurityDescriptorW", &shown, e))?;
    let _text = LocalMem(text.0 as *mut c_void);
    // SAFETY: the call returned a NUL-terminated string.
    let sddl_text = unsafe { text.to_string() }.map_err(|e| PlatformError::new("SDDL", &shown, e))?;
    let me = own_sid()?;
    let mut security = sddl::dir_security(&sddl_text, &me, is_privileged(&me))
        .map_err(|e| PlatformError::new("SDDL", &shown, format!("{e} (descriptor {sddl_text})")))?;
    if super::system::is_wine() {
        // Wine keeps a file's security as Unix mode bits: it reports owner and writers from
        // them, but never the protected flag. What it keeps is still checked.
        security.inherits = false;
    }
    Ok(security)
}

fn set_security(handle: &Owned, path: &Path, text: &str) -> Result<(), PlatformError> {
    let sd = descriptor(text)?;
    // SAFETY: the handle is open with WRITE_DAC and WRITE_OWNER; the descriptor is valid. The
    // kernel call sets exactly this descriptor on this object: no propagation by name.
    unsafe {
        SetKernelObjectSecurity(
            handle.0,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            PSECURITY_DESCRIPTOR(sd.0),
        )
    }
    .map_err(|e| win_err("SetKernelObjectSecurity", &path.display().to_string(), e))
}

pub(super) fn reset_private_tree(dir: &Path) -> Result<(), PlatformError> {
    // Open what local users own and give it to the Administrators (as `takeown` does).
    enable_privilege("SeRestorePrivilege")?;
    enable_privilege("SeTakeOwnershipPrivilege")?;
    let access = READ_CONTROL.0 | WRITE_DAC.0 | WRITE_OWNER.0;
    let root = open_no_follow(dir, access)?;
    if is_link(attributes(&root, dir)?) {
        return Err(PlatformError::new(
            "open",
            dir.display().to_string(),
            "it is a link, not a folder: remove it",
        ));
    }
    // Top down: a folder is locked first, so nobody can add or swap what is listed in it after.
    set_security(&root, dir, PRIVATE)?;
    drop(root);
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| PlatformError::new("FindFirstFileW", folder.display().to_string(), e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| PlatformError::new("FindNextFileW", folder.display().to_string(), e))?
                .path();
            let handle = open_no_follow(&path, access | DELETE.0)?;
            let attributes = attributes(&handle, &path)?;
            if is_link(attributes) {
                // The executor makes no links: one here was planted to redirect a write.
                drop(handle);
                let removed = if attributes & FILE_ATTRIBUTE_DIRECTORY.0 != 0 {
                    std::fs::remove_dir(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|e| PlatformError::new("remove link", path.display().to_string(), e))?;
                continue;
            }
            if attributes & FILE_ATTRIBUTE_DIRECTORY.0 != 0 {
                set_security(&handle, &path, INHERITED_DIR)?;
                folders.push(path);
            } else {
                set_security(&handle, &path, INHERITED_FILE)?;
            }
        }
    }
    Ok(())
}
