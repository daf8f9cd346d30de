//! Accounts and local groups: names resolved to SIDs (LookupAccountNameW), groups and members
//! through the NetLocalGroup* APIs — what `net localgroup` does.

use std::ffi::c_void;

use windows::Win32::Foundation::{ERROR_NONE_MAPPED, WIN32_ERROR};
use windows::Win32::NetworkManagement::NetManagement::{
    LOCALGROUP_INFO_1, LOCALGROUP_INFO_1002, LOCALGROUP_MEMBERS_INFO_0, LOCALGROUP_MEMBERS_INFO_2,
    MAX_PREFERRED_LENGTH, NetLocalGroupAdd, NetLocalGroupAddMembers, NetLocalGroupDel,
    NetLocalGroupDelMembers, NetLocalGroupGetInfo, NetLocalGroupGetMembers, NetLocalGroupSetInfo,
};
use windows::Win32::Security::Authorization::{ConvertSidToStringSidW, ConvertStringSidToSidW};
use windows::Win32::Security::{LookupAccountNameW, PSID, SID_NAME_USE, SidTypeAlias};
use windows::Win32::System::SystemInformation::{ComputerNameNetBIOS, GetComputerNameExW};
use windows::core::{PCWSTR, PWSTR};

use crate::platform::{AccountId, GroupSid, LocalGroup, PlatformError};

use super::handles::*;

// NetLocalGroup* results (lmerr.h / winerror.h).
pub(super) const NERR_SUCCESS: u32 = 0;
pub(super) const NERR_GROUP_NOT_FOUND: u32 = 2220;
pub(super) const ERROR_NO_SUCH_ALIAS: u32 = 1376;
pub(super) const ERROR_MEMBER_NOT_IN_ALIAS: u32 = 1377;
pub(super) const ERROR_MEMBER_IN_ALIAS: u32 = 1378;

/// A SID in a buffer this process owns.
pub(super) struct Sid(pub(super) Vec<u8>);

impl Sid {
    pub(super) fn psid(&self) -> PSID {
        PSID(self.0.as_ptr() as *mut c_void)
    }

    pub(super) fn to_account_id(&self) -> Result<AccountId, PlatformError> {
        sid_string(self.psid())
    }
}

pub(super) fn sid_string(sid: PSID) -> Result<AccountId, PlatformError> {
    let mut text = PWSTR::null();
    // SAFETY: `sid` points to a valid SID; the string is LocalAlloc'd and freed by LocalMem.
    unsafe { ConvertSidToStringSidW(sid, &mut text) }
        .map_err(|e| win_err("ConvertSidToStringSidW", "sid", e))?;
    let _free = LocalMem(text.0 as *mut c_void);
    // SAFETY: ConvertSidToStringSidW returned a NUL-terminated string.
    let s =
        unsafe { text.to_string() }.map_err(|e| PlatformError::new("ConvertSidToStringSidW", "sid", e))?;
    Ok(AccountId(s))
}

pub(super) fn lookup_sid(name: &str) -> Result<Option<Sid>, PlatformError> {
    Ok(lookup_sid_typed(name)?.map(|(sid, _)| sid))
}

/// The SID of an account name and what kind of account it is.
fn lookup_sid_typed(name: &str) -> Result<Option<(Sid, SID_NAME_USE)>, PlatformError> {
    let wname = wide(name);
    let (mut sid_len, mut domain_len) = (0u32, 0u32);
    let mut use_ = SID_NAME_USE::default();
    // SAFETY: a size query: null buffers with zero lengths; the API writes the needed sizes.
    let first = unsafe {
        LookupAccountNameW(
            PCWSTR::null(),
            PCWSTR(wname.as_ptr()),
            None,
            &mut sid_len,
            None,
            &mut domain_len,
            &mut use_,
        )
    };
    if let Err(e) = first {
        if WIN32_ERROR::from_error(&e) == Some(ERROR_NONE_MAPPED) {
            return Ok(None);
        }
        if sid_len == 0 {
            return Err(win_err("LookupAccountNameW", name, e));
        }
    }
    let mut sid = vec![0u8; sid_len as usize];
    let mut domain = vec![0u16; domain_len as usize];
    // SAFETY: both buffers have the lengths the size query returned.
    unsafe {
        LookupAccountNameW(
            PCWSTR::null(),
            PCWSTR(wname.as_ptr()),
            Some(PSID(sid.as_mut_ptr() as *mut c_void)),
            &mut sid_len,
            Some(PWSTR(domain.as_mut_ptr())),
            &mut domain_len,
            &mut use_,
        )
    }
    .map_err(|e| win_err("LookupAccountNameW", name, e))?;
    Ok(Some((Sid(sid), use_)))
}

/// This machine's NetBIOS name, the name of its own account domain.
fn computer_name() -> Result<String, PlatformError> {
    let mut len = 0u32;
    // SAFETY: a size query with no buffer; it fails with ERROR_MORE_DATA and sets `len`.
    let _ = unsafe { GetComputerNameExW(ComputerNameNetBIOS, None, &mut len) };
    let mut buffer = vec![0u16; len.max(16) as usize];
    len = buffer.len() as u32;
    // SAFETY: the buffer holds `len` characters.
    unsafe { GetComputerNameExW(ComputerNameNetBIOS, Some(PWSTR(buffer.as_mut_ptr())), &mut len) }
        .map_err(|e| win_err("GetComputerNameExW", "NetBIOS", e))?;
    Ok(String::from_utf16_lossy(&buffer[..len as usize]))
}

/// The local group `name` of this machine, by SID: `COMPUTERNAME\name` must be an alias in
/// the machine's own account domain. A name that resolves only unqualified — a BUILTIN group
/// (`Administrators`, in any language), a well-known principal (`Everyone`), a domain group —
/// is reported as not the machine's own.
pub(super) fn local_group_sid(name: &str) -> Result<Option<GroupSid>, PlatformError> {
    let computer = computer_name()?;
    if let Some((sid, use_)) = lookup_sid_typed(&format!(r"{computer}\{name}"))? {
        let sid = sid.to_account_id()?;
        let machine = lookup_sid(&computer)?.map(|m| m.to_account_id()).transpose()?;
        let own_domain = use_ == SidTypeAlias
            && machine.is_some_and(|m| {
                sid.0
                    .strip_prefix(&format!("{}-", m.0))
                    .is_some_and(|rid| rid.chars().all(|c| c.is_ascii_digit()))
            });
        return Ok(Some(GroupSid { sid, own_domain }));
    }
    Ok(lookup_sid_typed(name)?
        .map(|(sid, _)| sid.to_account_id())
        .transpose()?
        .map(|sid| GroupSid { sid, own_domain: false }))
}

pub(super) fn sid_from_string(id: &AccountId) -> Result<LocalMem, PlatformError> {
    let text = wide(&id.0);
    let mut sid = PSID::default();
    // SAFETY: `text` is NUL-terminated; the SID is LocalAlloc'd and owned by the returned LocalMem.
    unsafe { ConvertStringSidToSidW(PCWSTR(text.as_ptr()), &mut sid) }
        .map_err(|e| win_err("ConvertStringSidToSidW", &id.0, e))?;
    Ok(LocalMem(sid.0))
}

pub(super) fn group_sid(group: &str) -> Result<Sid, PlatformError> {
    lookup_sid(group)?
        .ok_or_else(|| PlatformError::new("LookupAccountNameW", group, "no such local group").with_code(1332))
}

pub(super) fn lookup_account(name: &str) -> Result<Option<AccountId>, PlatformError> {
    lookup_sid(name)?.map(|sid| sid.to_account_id()).transpose()
}

pub(super) fn group(name: &str) -> Result<Option<LocalGroup>, PlatformError> {
    let wname = wide(name);
    let mut buf: *mut u8 = std::ptr::null_mut();
    // SAFETY: level 1 fills a LOCALGROUP_INFO_1 in a NetApi buffer, freed by NetBuffer.
    let status = unsafe { NetLocalGroupGetInfo(PCWSTR::null(), PCWSTR(wname.as_ptr()), 1, &mut buf) };
    let info = NetBuffer(buf);
    match status {
        NERR_SUCCESS => {}
        NERR_GROUP_NOT_FOUND | ERROR_NO_SUCH_ALIAS => return Ok(None),
        other => return Err(net_err("NetLocalGroupGetInfo", name, other)),
    }
    // SAFETY: on success the buffer holds one LOCALGROUP_INFO_1.
    let description = unsafe {
        let info = &*(info.0 as *const LOCALGROUP_INFO_1);
        if info.lgrpi1_comment.is_null() {
            String::new()
        } else {
            info.lgrpi1_comment.to_string().unwrap_or_default()
        }
    };

    let (mut read, mut total) = (0u32, 0u32);
    let mut buf: *mut u8 = std::ptr::null_mut();
    // SAFETY: level 2 fills an array of LOCALGROUP_MEMBERS_INFO_2 in one NetApi buffer.
    let status = unsafe {
        NetLocalGroupGetMembers(
            PCWSTR::null(),
            PCWSTR(wname.as_ptr()),
            2,
            &mut buf,
            MAX_PREFERRED_LENGTH,
            &mut read,
            &mut total,
            None,
        )
    };
    let list = NetBuffer(buf);
    if status != NERR_SUCCESS {
        return Err(net_err("NetLocalGroupGetMembers", name, status));
    }
    let members = if list.0.is_null() || read == 0 {
        vec![]
    } else {
        // SAFETY: the buffer holds `read` entries.
        let entries =
            unsafe { std::slice::from_raw_parts(list.0 as *const LOCALGROUP_MEMBERS_INFO_2, read as usize) };
        entries.iter().map(|m| sid_string(m.lgrmi2_sid)).collect::<Result<_, _>>()?
    };
    Ok(Some(LocalGroup { name: name.to_string(), description, members }))
}

pub(super) fn create_group(name: &str, description: &str) -> Result<(), PlatformError> {
    let (mut wname, mut wcomment) = (wide(name), wide(description));
    let info = LOCALGROUP_INFO_1 {
        lgrpi1_name: PWSTR(wname.as_mut_ptr()),
        lgrpi1_comment: PWSTR(wcomment.as_mut_ptr()),
    };
    // SAFETY: the structure and its strings outlive the call.
    let status = unsafe { NetLocalGroupAdd(PCWSTR::null(), 1, &info as *const _ as *const u8, None) };
    if status == NERR_SUCCESS { Ok(()) } else { Err(net_err("NetLocalGroupAdd", name, status)) }
}

pub(super) fn set_group_description(name: &str, description: &str) -> Result<(), PlatformError> {
    let (wname, mut wcomment) = (wide(name), wide(description));
    let info = LOCALGROUP_INFO_1002 { lgrpi1002_comment: PWSTR(wcomment.as_mut_ptr()) };
    // SAFETY: the structure and its string outlive the call.
    let status = unsafe {
        NetLocalGroupSetInfo(
            PCWSTR::null(),
            PCWSTR(wname.as_ptr()),
            1002,
            &info as *const _ as *const u8,
            None,
        )
    };
    if status == NERR_SUCCESS { Ok(()) } else { Err(net_err("NetLocalGroupSetInfo", name, status)) }
}

pub(super) fn delete_group(name: &str) -> Result<(), PlatformError> {
    let wname = wide(name);
    // SAFETY: the name is NUL-terminated.
    let status = unsafe { NetLocalGroupDel(PCWSTR::null(), PCWSTR(wname.as_ptr())) };
    if status == NERR_SUCCESS { Ok(()) } else { Err(net_err("NetLocalGroupDel", name, status)) }
}

pub(super) fn add_member(group: &str, member: &AccountId) -> Result<(), PlatformError> {
    let sid = sid_from_string(member)?;
    let wgroup = wide(group);
    let info = LOCALGROUP_MEMBERS_INFO_0 { lgrmi0_sid: PSID(sid.0) };
    // SAFETY: one LOCALGROUP_MEMBERS_INFO_0 whose SID outlives the call.
    let status = unsafe {
        NetLocalGroupAddMembers(PCWSTR::null(), PCWSTR(wgroup.as_ptr()), 0, &info as *const _ as *const u8, 1)
    };
    match status {
        NERR_SUCCESS | ERROR_MEMBER_IN_ALIAS => Ok(()),
        other => Err(net_err("NetLocalGroupAddMembers", group, other)),
    }
}

pub(super) fn remove_member(group: &str, member: &AccountId) -> Result<(), PlatformError> {
    let sid = sid_from_string(member)?;
    let wgroup = wide(group);
    let info = LOCALGROUP_MEMBERS_INFO_0 { lgrmi0_sid: PSID(sid.0) };
    // SAFETY: one LOCALGROUP_MEMBERS_INFO_0 whose SID outlives the call.
    let status = unsafe {
        NetLocalGroupDelMembers(PCWSTR::null(), PCWSTR(wgroup.as_ptr()), 0, &info as *const _ as *const u8, 1)
    };
    match status {
        NERR_SUCCESS | ERROR_MEMBER_NOT_IN_ALIAS => Ok(()),
        other => Err(net_err("NetLocalGroupDelMembers", group, other)),
    }
}
