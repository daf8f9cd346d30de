//! File-system grants: explicit ACEs of a group on a path, read and written through the Win32
//! security APIs — what `icacls` does.

use std::ffi::c_void;

use hostprocess_crds::{AppliesTo, Rights};
use windows::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND, GetLastError};
use windows::Win32::Security::Authorization::{
    EXPLICIT_ACCESS_W, GRANT_ACCESS, GetExplicitEntriesFromAclW, GetNamedSecurityInfoW, NO_MULTIPLE_TRUSTEE,
    REVOKE_ACCESS, SE_FILE_OBJECT, SET_ACCESS, SetEntriesInAclW, SetNamedSecurityInfoW, TRUSTEE_IS_GROUP,
    TRUSTEE_IS_SID, TRUSTEE_W,
};
use windows::Win32::Security::{
    ACE_FLAGS, ACL, CONTAINER_INHERIT_ACE, DACL_SECURITY_INFORMATION, EqualSid, INHERIT_ONLY_ACE,
    NO_INHERITANCE, OBJECT_INHERIT_ACE, PSECURITY_DESCRIPTOR, PSID,
};
use windows::Win32::Storage::FileSystem::{
    FILE_ATTRIBUTE_DIRECTORY, GetFileAttributesW, INVALID_FILE_ATTRIBUTES,
};
use windows::core::{PCWSTR, PWSTR};

use crate::platform::{Ace, PathKind, PlatformError};

use super::accounts::*;
use super::handles::*;

/// The access mask icacls writes for each right.
pub(super) fn mask(rights: Rights) -> u32 {
    match rights {
        Rights::Read => 0x0012_0089,
        Rights::ReadAndExecute => 0x0012_00a9,
        Rights::Write => 0x0010_0116,
        Rights::Modify => 0x0013_01bf,
        Rights::FullControl => 0x001f_01ff,
    }
}

pub(super) fn rights_of(mask_value: u32) -> Option<Rights> {
    [Rights::Read, Rights::ReadAndExecute, Rights::Write, Rights::Modify, Rights::FullControl]
        .into_iter()
        .find(|r| mask(*r) == mask_value)
}

pub(super) fn inheritance(applies_to: AppliesTo) -> ACE_FLAGS {
    let (oi, ci, io) = (OBJECT_INHERIT_ACE, CONTAINER_INHERIT_ACE, INHERIT_ONLY_ACE);
    match applies_to {
        AppliesTo::ThisFolderOnly => NO_INHERITANCE,
        AppliesTo::ThisFolderSubfoldersAndFiles => oi | ci,
        AppliesTo::ThisFolderAndSubfolders => ci,
        AppliesTo::ThisFolderAndFiles => oi,
        AppliesTo::SubfoldersAndFilesOnly => oi | ci | io,
        AppliesTo::SubfoldersOnly => ci | io,
        AppliesTo::FilesOnly => oi | io,
    }
}

pub(super) fn applies_to_of(flags: ACE_FLAGS) -> Option<AppliesTo> {
    use AppliesTo::*;
    [
        ThisFolderOnly,
        ThisFolderSubfoldersAndFiles,
        ThisFolderAndSubfolders,
        ThisFolderAndFiles,
        SubfoldersAndFilesOnly,
        SubfoldersOnly,
        FilesOnly,
    ]
    .into_iter()
    .find(|a| inheritance(*a) == flags)
}

/// A file's DACL with the security descriptor that holds it.
pub(super) struct Dacl {
    acl: *mut ACL,
    _descriptor: LocalMem,
}

pub(super) fn read_dacl(path: &str) -> Result<Dacl, PlatformError> {
    let wpath = wide(path);
    let mut acl: *mut ACL = std::ptr::null_mut();
    let mut descriptor = PSECURITY_DESCRIPTOR::default();
    // SAFETY: out-pointers are valid; the descriptor (which holds the DACL) is LocalAlloc'd.
    let status = unsafe {
        GetNamedSecurityInfoW(
            PCWSTR(wpath.as_ptr()),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            None,
            None,
            Some(&mut acl),
            None,
            &mut descriptor,
        )
    };
    if status.is_err() {
        return Err(status_err("GetNamedSecurityInfoW", path, status));
    }
    Ok(Dacl { acl, _descriptor: LocalMem(descriptor.0) })
}

/// Merges one entry for `sid` into the DACL of `path` and writes it back.
pub(super) fn write_entry(
    path: &str,
    sid: &Sid,
    access_mask: u32,
    mode: windows::Win32::Security::Authorization::ACCESS_MODE,
    flags: ACE_FLAGS,
) -> Result<(), PlatformError> {
    let dacl = read_dacl(path)?;
    let entry = EXPLICIT_ACCESS_W {
        grfAccessPermissions: access_mask,
        grfAccessMode: mode,
        grfInheritance: flags,
        Trustee: TRUSTEE_W {
            pMultipleTrustee: std::ptr::null_mut(),
            MultipleTrusteeOperation: NO_MULTIPLE_TRUSTEE,
            TrusteeForm: TRUSTEE_IS_SID,
            TrusteeType: TRUSTEE_IS_GROUP,
            ptstrName: PWSTR(sid.psid().0 as *mut u16),
        },
    };
    let mut new_acl: *mut ACL = std::ptr::null_mut();
    // SAFETY: `entry` and the old DACL are valid for the call; the new ACL is LocalAlloc'd.
    let status = unsafe { SetEntriesInAclW(Some(&[entry]), Some(dacl.acl), &mut new_acl) };
    if status.is_err() {
        return Err(status_err("SetEntriesInAclW", path, status));
    }
    let _free = LocalMem(new_acl as *mut c_void);
    let wpath = wide(path);
    // SAFETY: the path is NUL-terminated and the new ACL is valid; only the DACL is written,
    // so inherited entries and the protection flag stay as they are.
    let status = unsafe {
        SetNamedSecurityInfoW(
            PCWSTR(wpath.as_ptr()),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            None,
            None,
            Some(new_acl),
            None,
        )
    };
    if status.is_err() {
        return Err(status_err("SetNamedSecurityInfoW", path, status));
    }
    Ok(())
}

pub(super) fn path_kind(path: &str) -> Result<PathKind, PlatformError> {
    let wpath = wide(path);
    // SAFETY: the path is NUL-terminated.
    let attributes = unsafe { GetFileAttributesW(PCWSTR(wpath.as_ptr())) };
    if attributes == INVALID_FILE_ATTRIBUTES {
        // SAFETY: reading the thread's last error right after the failed call.
        let error = unsafe { GetLastError() };
        return if error == ERROR_FILE_NOT_FOUND || error == ERROR_PATH_NOT_FOUND {
            Ok(PathKind::Missing)
        } else {
            Err(net_err("GetFileAttributesW", path, error.0))
        };
    }
    Ok(if attributes & FILE_ATTRIBUTE_DIRECTORY.0 != 0 { PathKind::Directory } else { PathKind::File })
}

pub(super) fn explicit_aces(path: &str, group: &str) -> Result<Vec<Ace>, PlatformError> {
    // A group that no longer exists has no entries that can be named (nor revoked) by it.
    let Some(sid) = lookup_sid(group)? else { return Ok(vec![]) };
    let dacl = read_dacl(path)?;
    if dacl.acl.is_null() {
        return Ok(vec![]);
    }
    let (mut count, mut entries) = (0u32, std::ptr::null_mut::<EXPLICIT_ACCESS_W>());
    // SAFETY: the DACL is valid; the entry array is LocalAlloc'd and freed by LocalMem.
    let status = unsafe { GetExplicitEntriesFromAclW(dacl.acl, &mut count, &mut entries) };
    if status.is_err() {
        return Err(status_err("GetExplicitEntriesFromAclW", path, status));
    }
    let _free = LocalMem(entries as *mut c_void);
    if entries.is_null() || count == 0 {
        return Ok(vec![]);
    }
    // SAFETY: the array holds `count` entries.
    let entries = unsafe { std::slice::from_raw_parts(entries, count as usize) };
    let mut aces = vec![];
    for entry in entries {
        if entry.Trustee.TrusteeForm != TRUSTEE_IS_SID {
            continue;
        }
        let trustee = PSID(entry.Trustee.ptstrName.0 as *mut c_void);
        // SAFETY: both SIDs are valid for the call.
        if unsafe { EqualSid(trustee, sid.psid()) }.is_err() {
            continue;
        }
        let allowed = entry.grfAccessMode == GRANT_ACCESS || entry.grfAccessMode == SET_ACCESS;
        aces.push(if allowed {
            Ace {
                rights: rights_of(entry.grfAccessPermissions),
                applies_to: applies_to_of(entry.grfInheritance),
            }
        } else {
            // A deny entry: nothing a grant expresses.
            Ace { rights: None, applies_to: None }
        });
    }
    Ok(aces)
}

pub(super) fn set_ace(
    path: &str,
    group: &str,
    rights: Rights,
    applies_to: AppliesTo,
) -> Result<(), PlatformError> {
    // SET_ACCESS replaces every explicit entry of the trustee by this one.
    write_entry(path, &group_sid(group)?, mask(rights), SET_ACCESS, inheritance(applies_to))
}

pub(super) fn remove_aces(path: &str, group: &str) -> Result<(), PlatformError> {
    match lookup_sid(group)? {
        Some(sid) => write_entry(path, &sid, 0, REVOKE_ACCESS, NO_INHERITANCE),
        None => Ok(()),
    }
}
