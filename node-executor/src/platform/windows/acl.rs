//! File-system grants: explicit ACEs of a group on a path, read and written through the Win32
//! security APIs — what `icacls` does.

use std::ffi::c_void;
use std::path::Path;

use hostprocess_crds::{AppliesTo, Rights};
use windows::Win32::Foundation::{ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND, GetLastError};
use windows::Win32::Security::Authorization::{
    EXPLICIT_ACCESS_W, GRANT_ACCESS, GetExplicitEntriesFromAclW, GetSecurityInfo, NO_MULTIPLE_TRUSTEE,
    SE_FILE_OBJECT, SET_ACCESS, SetEntriesInAclW, SetSecurityInfo, TRUSTEE_IS_GROUP, TRUSTEE_IS_SID,
    TRUSTEE_W,
};
use windows::Win32::Security::{
    ACE_FLAGS, ACE_HEADER, ACL, ACL_REVISION, ACL_SIZE_INFORMATION, AclSizeInformation, AddAce,
    CONTAINER_INHERIT_ACE, DACL_SECURITY_INFORMATION, EqualSid, GetAce, GetAclInformation, INHERIT_ONLY_ACE,
    INHERITED_ACE, InitializeAcl, NO_INHERITANCE, OBJECT_INHERIT_ACE, PSECURITY_DESCRIPTOR, PSID,
};
use windows::Win32::Storage::FileSystem::{
    FILE_ATTRIBUTE_DIRECTORY, FILE_NAME_NORMALIZED, GETFINALPATHNAMEBYHANDLE_FLAGS, GetFileAttributesW,
    GetFinalPathNameByHandleW, INVALID_FILE_ATTRIBUTES, READ_CONTROL, VOLUME_NAME_DOS, WRITE_DAC,
};
use windows::core::{PCWSTR, PWSTR};

use crate::platform::{AccountId, Ace, PathKind, PlatformError, normalize_path};

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

// ACE types (winnt.h).
const ACCESS_ALLOWED_ACE_TYPE: u8 = 0;
const ACCESS_DENIED_ACE_TYPE: u8 = 1;

/// A grant target, opened once by handle: never a link, and the very folder or file asked for.
/// Every read and write of its DACL goes through this handle, so the name is resolved once and
/// a junction swapped in after the check changes nothing.
pub(super) struct Target {
    handle: Owned,
    path: String,
}

/// The path Windows reports for an open handle, without its `\\?\` prefix.
fn final_path(handle: &Owned, path: &str) -> Result<String, PlatformError> {
    let mut buffer = vec![0u16; 1024];
    loop {
        // SAFETY: the handle is open; the buffer is writable for its length.
        let len = unsafe {
            GetFinalPathNameByHandleW(
                handle.0,
                &mut buffer,
                GETFINALPATHNAMEBYHANDLE_FLAGS(FILE_NAME_NORMALIZED.0 | VOLUME_NAME_DOS.0),
            )
        };
        if len == 0 {
            // SAFETY: reading the thread's last error right after the failed call.
            return Err(net_err("GetFinalPathNameByHandleW", path, unsafe { GetLastError() }.0));
        }
        if (len as usize) < buffer.len() {
            let text = String::from_utf16_lossy(&buffer[..len as usize]);
            return Ok(match text.strip_prefix(r"\\?\UNC\") {
                Some(unc) => format!(r"\\{unc}"),
                None => text.strip_prefix(r"\\?\").unwrap_or(&text).to_string(),
            });
        }
        buffer.resize(len as usize + 1, 0);
    }
}

pub(super) fn open_target(path: &str, write: bool) -> Result<Target, PlatformError> {
    let access = if write { READ_CONTROL.0 | WRITE_DAC.0 } else { READ_CONTROL.0 };
    let handle = open_no_follow(Path::new(path), access)?;
    if is_link(attributes(&handle, Path::new(path))?) {
        return Err(PlatformError::new(
            "grant",
            path,
            "it is a link (junction or symbolic link): grants are never written through one",
        ));
    }
    let reached = final_path(&handle, path)?;
    if !normalize_path(&reached).eq_ignore_ascii_case(&normalize_path(path)) {
        return Err(PlatformError::new(
            "grant",
            path,
            format!(
                "it leads to {reached}: a junction or link on the way is refused, grants are never written through one"
            ),
        ));
    }
    Ok(Target { handle, path: path.to_string() })
}

/// A file's DACL with the security descriptor that holds it. A NULL DACL (no access control at
/// all) has a null `acl`.
pub(super) struct Dacl {
    acl: *mut ACL,
    _descriptor: LocalMem,
}

pub(super) fn read_dacl(target: &Target) -> Result<Dacl, PlatformError> {
    let mut acl: *mut ACL = std::ptr::null_mut();
    let mut descriptor = PSECURITY_DESCRIPTOR::default();
    // SAFETY: the handle is open with READ_CONTROL; out-pointers are valid; the descriptor (which
    // holds the DACL) is LocalAlloc'd.
    let status = unsafe {
        GetSecurityInfo(
            target.handle.0,
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            None,
            None,
            Some(&mut acl),
            None,
            Some(&mut descriptor),
        )
    };
    if status.is_err() {
        return Err(status_err("GetSecurityInfo", &target.path, status));
    }
    Ok(Dacl { acl, _descriptor: LocalMem(descriptor.0) })
}

fn refuse_null(target: &Target, dacl: &Dacl) -> Result<(), PlatformError> {
    if dacl.acl.is_null() {
        return Err(PlatformError::new(
            "grant",
            &target.path,
            "it has a NULL DACL (no access control: everyone may do anything); give it permissions first",
        ));
    }
    Ok(())
}

fn write_dacl(target: &Target, acl: *const ACL) -> Result<(), PlatformError> {
    // SAFETY: the handle is open with WRITE_DAC and the ACL is valid; only the DACL is written,
    // so inherited entries and the protection flag stay as they are.
    let status = unsafe {
        SetSecurityInfo(
            target.handle.0,
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION,
            None,
            None,
            Some(acl),
            None,
        )
    };
    if status.is_err() {
        return Err(status_err("SetSecurityInfo", &target.path, status));
    }
    Ok(())
}

/// Sets one entry for `sid` on the target, replacing every explicit entry it had (allow and deny).
pub(super) fn write_entry(
    target: &Target,
    sid: &Sid,
    access_mask: u32,
    flags: ACE_FLAGS,
) -> Result<(), PlatformError> {
    let dacl = read_dacl(target)?;
    refuse_null(target, &dacl)?;
    let entry = EXPLICIT_ACCESS_W {
        grfAccessPermissions: access_mask,
        grfAccessMode: SET_ACCESS,
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
        return Err(status_err("SetEntriesInAclW", &target.path, status));
    }
    let _free = LocalMem(new_acl as *mut c_void);
    write_dacl(target, new_acl)
}

/// Removes every explicit entry of `sid`, allow and deny alike (`REVOKE_ACCESS` would leave the
/// deny entries, and a revoke would then find something to revoke on every run); inherited
/// entries stay. Returns whether there was one.
pub(super) fn remove_entries(target: &Target, sid: PSID) -> Result<bool, PlatformError> {
    let dacl = read_dacl(target)?;
    if dacl.acl.is_null() {
        return Ok(false);
    }
    let mut size = ACL_SIZE_INFORMATION::default();
    // SAFETY: the DACL is valid; the structure is writable and its size passed.
    unsafe {
        GetAclInformation(
            dacl.acl,
            &mut size as *mut _ as *mut c_void,
            size_of::<ACL_SIZE_INFORMATION>() as u32,
            AclSizeInformation,
        )
    }
    .map_err(|e| win_err("GetAclInformation", &target.path, e))?;
    let mut kept: Vec<u8> = vec![0u8; size.AclBytesInUse.max(size_of::<ACL>() as u32) as usize + 8];
    let new_acl = kept.as_mut_ptr() as *mut ACL;
    // SAFETY: the buffer is at least as large as the old ACL; ACL_REVISION matches its entries.
    unsafe { InitializeAcl(new_acl, kept.len() as u32, ACL_REVISION) }
        .map_err(|e| win_err("InitializeAcl", &target.path, e))?;
    let mut removed = false;
    for index in 0..size.AceCount {
        let mut ace: *mut c_void = std::ptr::null_mut();
        // SAFETY: `index` is below the ACL's entry count.
        unsafe { GetAce(dacl.acl, index, &mut ace) }.map_err(|e| win_err("GetAce", &target.path, e))?;
        // SAFETY: every ACE starts with an ACE_HEADER.
        let header = unsafe { &*(ace as *const ACE_HEADER) };
        let explicit = u32::from(header.AceFlags) & INHERITED_ACE.0 == 0;
        // Allow (0) and deny (1) entries hold their SID after the header and the mask.
        let simple = header.AceType == ACCESS_ALLOWED_ACE_TYPE || header.AceType == ACCESS_DENIED_ACE_TYPE;
        // SAFETY: for these two types the SID starts 8 bytes into the entry, inside its size.
        let ours = simple && unsafe { EqualSid(PSID((ace as *mut u8).add(8) as *mut c_void), sid) }.is_ok();
        if explicit && ours {
            removed = true;
            continue;
        }
        // SAFETY: the entry is `AceSize` bytes long and the new ACL has room for all old entries.
        unsafe { AddAce(new_acl, ACL_REVISION, u32::MAX, ace, u32::from(header.AceSize)) }
            .map_err(|e| win_err("AddAce", &target.path, e))?;
    }
    if removed {
        write_dacl(target, new_acl)?;
    }
    Ok(removed)
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
    explicit_entries(path, sid.psid())
}

pub(super) fn explicit_aces_of(path: &str, id: &AccountId) -> Result<Vec<Ace>, PlatformError> {
    let sid = sid_from_string(id)?;
    explicit_entries(path, PSID(sid.0))
}

fn explicit_entries(path: &str, sid: PSID) -> Result<Vec<Ace>, PlatformError> {
    let target = open_target(path, false)?;
    let dacl = read_dacl(&target)?;
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
        if unsafe { EqualSid(trustee, sid) }.is_err() {
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
    let target = open_target(path, true)?;
    write_entry(&target, &group_sid(group)?, mask(rights), inheritance(applies_to))
}

pub(super) fn remove_aces(path: &str, group: &str) -> Result<(), PlatformError> {
    match lookup_sid(group)? {
        Some(sid) => remove_entries(&open_target(path, true)?, sid.psid()).map(|_| ()),
        None => Ok(()),
    }
}

pub(super) fn remove_aces_of(path: &str, id: &AccountId) -> Result<(), PlatformError> {
    let sid = sid_from_string(id)?;
    remove_entries(&open_target(path, true)?, PSID(sid.0)).map(|_| ())
}
