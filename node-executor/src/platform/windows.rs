//! The Windows implementation: Win32 job objects, NetLocalGroup*, and the security APIs.
//!
//! No shell, `net` or `icacls`: the APIs have the same effect without quoting user strings or
//! parsing localized output. Handles and OS-allocated buffers live in owning types that free
//! them on drop; every `unsafe` block is one call (or one read of a structure that call filled).

use std::ffi::{OsStr, c_void};
use std::os::windows::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use hostprocess_crds::{AppliesTo, Rights};
use windows::Win32::Foundation::{
    CloseHandle, ERROR_FILE_NOT_FOUND, ERROR_NONE_MAPPED, ERROR_NOT_ALL_ASSIGNED, ERROR_PATH_NOT_FOUND,
    ERROR_SUCCESS, GetLastError, HANDLE, HLOCAL, INVALID_HANDLE_VALUE, LUID, LocalFree, STILL_ACTIVE,
    WAIT_OBJECT_0, WIN32_ERROR,
};
use windows::Win32::NetworkManagement::NetManagement::{
    LOCALGROUP_INFO_1, LOCALGROUP_INFO_1002, LOCALGROUP_MEMBERS_INFO_0, LOCALGROUP_MEMBERS_INFO_2,
    MAX_PREFERRED_LENGTH, NetApiBufferFree, NetLocalGroupAdd, NetLocalGroupAddMembers, NetLocalGroupDel,
    NetLocalGroupDelMembers, NetLocalGroupGetInfo, NetLocalGroupGetMembers, NetLocalGroupSetInfo,
};
use windows::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSidToSidW, EXPLICIT_ACCESS_W, GRANT_ACCESS,
    GetExplicitEntriesFromAclW, GetNamedSecurityInfoW, NO_MULTIPLE_TRUSTEE, REVOKE_ACCESS, SE_FILE_OBJECT,
    SET_ACCESS, SetEntriesInAclW, SetNamedSecurityInfoW, TRUSTEE_IS_GROUP, TRUSTEE_IS_SID, TRUSTEE_W,
};
use windows::Win32::Security::{
    ACE_FLAGS, ACL, AdjustTokenPrivileges, CONTAINER_INHERIT_ACE, DACL_SECURITY_INFORMATION, EqualSid,
    INHERIT_ONLY_ACE, LUID_AND_ATTRIBUTES, LookupAccountNameW, LookupPrivilegeValueW, NO_INHERITANCE,
    OBJECT_INHERIT_ACE, PSECURITY_DESCRIPTOR, PSID, SE_PRIVILEGE_ENABLED, SID_NAME_USE,
    TOKEN_ADJUST_PRIVILEGES, TOKEN_PRIVILEGES, TOKEN_QUERY,
};
use windows::Win32::Storage::FileSystem::{
    FILE_ATTRIBUTE_DIRECTORY, GetFileAttributesW, INVALID_FILE_ATTRIBUTES,
};
use windows::Win32::System::Console::{GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE};
use windows::Win32::System::IO::{CreateIoCompletionPort, GetQueuedCompletionStatus, OVERLAPPED};
use windows::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_CPU_RATE_CONTROL_ENABLE,
    JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP, JOB_OBJECT_LIMIT_ACTIVE_PROCESS, JOB_OBJECT_LIMIT_JOB_MEMORY,
    JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, JOBOBJECT_ASSOCIATE_COMPLETION_PORT,
    JOBOBJECT_BASIC_ACCOUNTING_INFORMATION, JOBOBJECT_CPU_RATE_CONTROL_INFORMATION,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectAssociateCompletionPortInformation,
    JobObjectBasicAccountingInformation, JobObjectCpuRateControlInformation,
    JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject,
    TerminateJobObject,
};
use windows::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows::Win32::System::Registry::{HKEY, HKEY_LOCAL_MACHINE, KEY_READ, RegCloseKey, RegOpenKeyExW};
use windows::Win32::System::Shutdown::{
    InitiateSystemShutdownExW, SHTDN_REASON_FLAG_PLANNED, SHTDN_REASON_MAJOR_OPERATINGSYSTEM,
    SHTDN_REASON_MINOR_UPGRADE,
};
use windows::Win32::System::Threading::{
    ALL_PROCESSOR_GROUPS, CREATE_NEW_PROCESS_GROUP, CREATE_SUSPENDED, CreateProcessW,
    GetActiveProcessorCount, GetCurrentProcess, GetExitCodeProcess, OpenProcess, OpenProcessToken,
    PROCESS_INFORMATION, PROCESS_QUERY_LIMITED_INFORMATION, ResumeThread, STARTF_USESTDHANDLES, STARTUPINFOW,
    TerminateProcess, WaitForSingleObject,
};
use windows::core::{PCSTR, PCWSTR, PWSTR};

use super::{
    AccountId, Ace, Job, JobLimits, JobStats, Launch, LimitKind, LocalGroup, PathKind, Platform,
    PlatformError,
};

// Job object messages (winnt.h JOB_OBJECT_MSG_*).
const MSG_ACTIVE_PROCESS_LIMIT: u32 = 3;
const MSG_ACTIVE_PROCESS_ZERO: u32 = 4;
const MSG_JOB_MEMORY_LIMIT: u32 = 10;
// NetLocalGroup* results (lmerr.h / winerror.h).
const NERR_SUCCESS: u32 = 0;
const NERR_GROUP_NOT_FOUND: u32 = 2220;
const ERROR_NO_SUCH_ALIAS: u32 = 1376;
const ERROR_MEMBER_NOT_IN_ALIAS: u32 = 1377;
const ERROR_MEMBER_IN_ALIAS: u32 = 1378;
/// The exit code of processes killed with their job.
const KILLED_EXIT_CODE: u32 = 1;

/// The Windows host.
#[derive(Debug, Clone, Default)]
pub struct Host;

impl Host {
    pub fn new() -> Self {
        Host
    }
}

/// A kernel handle, closed on drop.
#[derive(Debug)]
struct Owned(HANDLE);

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.0.is_invalid() {
            // SAFETY: the handle is owned by this value and closed exactly once.
            let _ = unsafe { CloseHandle(self.0) };
        }
    }
}

/// Memory the OS allocated with LocalAlloc (security descriptors, ACLs, SIDs, strings).
struct LocalMem(*mut c_void);

impl Drop for LocalMem {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from an API documented to return LocalAlloc'd memory.
            unsafe { LocalFree(Some(HLOCAL(self.0))) };
        }
    }
}

/// A buffer returned by a NetApi call, freed with NetApiBufferFree.
struct NetBuffer(*mut u8);

impl Drop for NetBuffer {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the buffer came from a NetLocalGroup* call and is freed exactly once.
            unsafe { NetApiBufferFree(Some(self.0 as *const c_void)) };
        }
    }
}

fn wide(s: &str) -> Vec<u16> {
    OsStr::new(s).encode_wide().chain(std::iter::once(0)).collect()
}

fn win_err(call: &'static str, subject: &str, e: windows::core::Error) -> PlatformError {
    let code = i64::from(e.code().0 & 0xffff);
    PlatformError::new(call, subject, e.message()).with_code(code)
}

fn net_err(call: &'static str, subject: &str, status: u32) -> PlatformError {
    let message = windows::core::Error::from(WIN32_ERROR(status).to_hresult()).message();
    PlatformError::new(call, subject, format!("error {status}: {message}")).with_code(i64::from(status))
}

fn status_err(call: &'static str, subject: &str, status: WIN32_ERROR) -> PlatformError {
    net_err(call, subject, status.0)
}

/// A SID in a buffer this process owns.
struct Sid(Vec<u8>);

impl Sid {
    fn psid(&self) -> PSID {
        PSID(self.0.as_ptr() as *mut c_void)
    }

    fn to_account_id(&self) -> Result<AccountId, PlatformError> {
        sid_string(self.psid())
    }
}

fn sid_string(sid: PSID) -> Result<AccountId, PlatformError> {
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

fn lookup_sid(name: &str) -> Result<Option<Sid>, PlatformError> {
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
    Ok(Some(Sid(sid)))
}

fn sid_from_string(id: &AccountId) -> Result<LocalMem, PlatformError> {
    let text = wide(&id.0);
    let mut sid = PSID::default();
    // SAFETY: `text` is NUL-terminated; the SID is LocalAlloc'd and owned by the returned LocalMem.
    unsafe { ConvertStringSidToSidW(PCWSTR(text.as_ptr()), &mut sid) }
        .map_err(|e| win_err("ConvertStringSidToSidW", &id.0, e))?;
    Ok(LocalMem(sid.0))
}

/// The access mask icacls writes for each right.
fn mask(rights: Rights) -> u32 {
    match rights {
        Rights::Read => 0x0012_0089,
        Rights::ReadAndExecute => 0x0012_00a9,
        Rights::Write => 0x0010_0116,
        Rights::Modify => 0x0013_01bf,
        Rights::FullControl => 0x001f_01ff,
    }
}

fn rights_of(mask_value: u32) -> Option<Rights> {
    [Rights::Read, Rights::ReadAndExecute, Rights::Write, Rights::Modify, Rights::FullControl]
        .into_iter()
        .find(|r| mask(*r) == mask_value)
}

fn inheritance(applies_to: AppliesTo) -> ACE_FLAGS {
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

fn applies_to_of(flags: ACE_FLAGS) -> Option<AppliesTo> {
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
struct Dacl {
    acl: *mut ACL,
    _descriptor: LocalMem,
}

fn read_dacl(path: &str) -> Result<Dacl, PlatformError> {
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
fn write_entry(
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

fn group_sid(group: &str) -> Result<Sid, PlatformError> {
    lookup_sid(group)?
        .ok_or_else(|| PlatformError::new("LookupAccountNameW", group, "no such local group").with_code(1332))
}

impl Platform for Host {
    type Job = NativeJob;

    fn launch(&self, launch: &Launch, limits: &JobLimits) -> Result<NativeJob, PlatformError> {
        let program = launch.program.to_str().ok_or_else(|| {
            PlatformError::new(
                "launch",
                launch.program.to_string_lossy(),
                "the program path is not valid Unicode",
            )
        })?;
        let args: Vec<&str> = launch
            .args
            .iter()
            .map(|a| {
                a.to_str().ok_or_else(|| {
                    PlatformError::new("launch", a.to_string_lossy(), "an argument is not valid Unicode")
                })
            })
            .collect::<Result<_, _>>()?;
        let line = crate::cmdline::command_line(program, &args)
            .map_err(|e| PlatformError::new("launch", program, e))?;

        // SAFETY: an anonymous job with default security; owned below.
        let job = Owned(
            unsafe { CreateJobObjectW(None, PCWSTR::null()) }
                .map_err(|e| win_err("CreateJobObjectW", program, e))?,
        );
        set_limits(&job, limits)?;
        // SAFETY: a new completion port not bound to a file; owned below.
        let port = Owned(
            unsafe { CreateIoCompletionPort(INVALID_HANDLE_VALUE, None, 0, 1) }
                .map_err(|e| win_err("CreateIoCompletionPort", program, e))?,
        );
        let associate =
            JOBOBJECT_ASSOCIATE_COMPLETION_PORT { CompletionKey: job.0.0, CompletionPort: port.0 };
        // SAFETY: the structure is valid for the call and its size is passed.
        unsafe {
            SetInformationJobObject(
                job.0,
                JobObjectAssociateCompletionPortInformation,
                &associate as *const _ as *const c_void,
                size_of::<JOBOBJECT_ASSOCIATE_COMPLETION_PORT>() as u32,
            )
        }
        .map_err(|e| win_err("SetInformationJobObject(completion port)", program, e))?;

        let (process, thread, pid) = spawn_suspended(&line)?;
        // SAFETY: both handles are valid; a process may be assigned to the job only before it runs.
        if let Err(e) = unsafe { AssignProcessToJobObject(job.0, process.0) } {
            // SAFETY: the suspended process is ours to end.
            let _ = unsafe { TerminateProcess(process.0, KILLED_EXIT_CODE) };
            return Err(win_err("AssignProcessToJobObject", program, e));
        }
        // SAFETY: the thread handle is valid; resuming the suspended main thread starts the payload.
        if unsafe { ResumeThread(thread.0) } == u32::MAX {
            // SAFETY: reading the thread's last error right after the failed call.
            let code = unsafe { GetLastError() };
            // SAFETY: the job handle is valid; it holds only the payload that never ran.
            let _ = unsafe { TerminateJobObject(job.0, KILLED_EXIT_CODE) };
            return Err(net_err("ResumeThread", program, code.0));
        }
        Ok(NativeJob { job, port, process, pid, stats: JobStats::default(), exit: None })
    }

    fn script_command(&self, script: PathBuf) -> Launch {
        let system_root = std::env::var("SystemRoot").unwrap_or_else(|_| r"C:\Windows".into());
        Launch {
            program: format!(r"{system_root}\System32\WindowsPowerShell\v1.0\powershell.exe").into(),
            args: ["-NoLogo", "-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"]
                .into_iter()
                .map(Into::into)
                .chain(std::iter::once(script.into_os_string()))
                .collect(),
        }
    }

    fn lookup_account(&self, name: &str) -> Result<Option<AccountId>, PlatformError> {
        lookup_sid(name)?.map(|sid| sid.to_account_id()).transpose()
    }

    fn group(&self, name: &str) -> Result<Option<LocalGroup>, PlatformError> {
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
            let entries = unsafe {
                std::slice::from_raw_parts(list.0 as *const LOCALGROUP_MEMBERS_INFO_2, read as usize)
            };
            entries.iter().map(|m| sid_string(m.lgrmi2_sid)).collect::<Result<_, _>>()?
        };
        Ok(Some(LocalGroup { name: name.to_string(), description, members }))
    }

    fn create_group(&self, name: &str, description: &str) -> Result<(), PlatformError> {
        let (mut wname, mut wcomment) = (wide(name), wide(description));
        let info = LOCALGROUP_INFO_1 {
            lgrpi1_name: PWSTR(wname.as_mut_ptr()),
            lgrpi1_comment: PWSTR(wcomment.as_mut_ptr()),
        };
        // SAFETY: the structure and its strings outlive the call.
        let status = unsafe { NetLocalGroupAdd(PCWSTR::null(), 1, &info as *const _ as *const u8, None) };
        if status == NERR_SUCCESS { Ok(()) } else { Err(net_err("NetLocalGroupAdd", name, status)) }
    }

    fn set_group_description(&self, name: &str, description: &str) -> Result<(), PlatformError> {
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

    fn delete_group(&self, name: &str) -> Result<(), PlatformError> {
        let wname = wide(name);
        // SAFETY: the name is NUL-terminated.
        let status = unsafe { NetLocalGroupDel(PCWSTR::null(), PCWSTR(wname.as_ptr())) };
        if status == NERR_SUCCESS { Ok(()) } else { Err(net_err("NetLocalGroupDel", name, status)) }
    }

    fn add_member(&self, group: &str, member: &AccountId) -> Result<(), PlatformError> {
        let sid = sid_from_string(member)?;
        let wgroup = wide(group);
        let info = LOCALGROUP_MEMBERS_INFO_0 { lgrmi0_sid: PSID(sid.0) };
        // SAFETY: one LOCALGROUP_MEMBERS_INFO_0 whose SID outlives the call.
        let status = unsafe {
            NetLocalGroupAddMembers(
                PCWSTR::null(),
                PCWSTR(wgroup.as_ptr()),
                0,
                &info as *const _ as *const u8,
                1,
            )
        };
        match status {
            NERR_SUCCESS | ERROR_MEMBER_IN_ALIAS => Ok(()),
            other => Err(net_err("NetLocalGroupAddMembers", group, other)),
        }
    }

    fn remove_member(&self, group: &str, member: &AccountId) -> Result<(), PlatformError> {
        let sid = sid_from_string(member)?;
        let wgroup = wide(group);
        let info = LOCALGROUP_MEMBERS_INFO_0 { lgrmi0_sid: PSID(sid.0) };
        // SAFETY: one LOCALGROUP_MEMBERS_INFO_0 whose SID outlives the call.
        let status = unsafe {
            NetLocalGroupDelMembers(
                PCWSTR::null(),
                PCWSTR(wgroup.as_ptr()),
                0,
                &info as *const _ as *const u8,
                1,
            )
        };
        match status {
            NERR_SUCCESS | ERROR_MEMBER_NOT_IN_ALIAS => Ok(()),
            other => Err(net_err("NetLocalGroupDelMembers", group, other)),
        }
    }

    fn path_kind(&self, path: &str) -> Result<PathKind, PlatformError> {
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

    fn explicit_aces(&self, path: &str, group: &str) -> Result<Vec<Ace>, PlatformError> {
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

    fn set_ace(
        &self,
        path: &str,
        group: &str,
        rights: Rights,
        applies_to: AppliesTo,
    ) -> Result<(), PlatformError> {
        // SET_ACCESS replaces every explicit entry of the trustee by this one.
        write_entry(path, &group_sid(group)?, mask(rights), SET_ACCESS, inheritance(applies_to))
    }

    fn remove_aces(&self, path: &str, group: &str) -> Result<(), PlatformError> {
        match lookup_sid(group)? {
            Some(sid) => write_entry(path, &sid, 0, REVOKE_ACCESS, NO_INHERITANCE),
            None => Ok(()),
        }
    }

    fn process_alive(&self, pid: u32) -> bool {
        // SAFETY: opening a process by id for a query; the handle is owned below.
        let Ok(handle) = (unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid) }) else {
            return false;
        };
        let handle = Owned(handle);
        let mut code = 0u32;
        // SAFETY: the handle is valid and `code` is writable.
        unsafe { GetExitCodeProcess(handle.0, &mut code) }.is_ok() && code == STILL_ACTIVE.0 as u32
    }

    fn reboot_pending(&self) -> Result<bool, PlatformError> {
        // Keys whose existence means a reboot is pending (values do not matter).
        const KEYS: [&str; 2] = [
            r"SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending",
            r"SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired",
        ];
        for key in KEYS {
            let name = wide(key);
            let mut opened = HKEY::default();
            // SAFETY: a NUL-terminated key name and an out pointer to a local; closed below.
            let status = unsafe {
                RegOpenKeyExW(HKEY_LOCAL_MACHINE, PCWSTR(name.as_ptr()), Some(0), KEY_READ, &mut opened)
            };
            if status == ERROR_SUCCESS {
                // SAFETY: the key was opened above and is closed once.
                let _ = unsafe { RegCloseKey(opened) };
                return Ok(true);
            }
            if status != ERROR_FILE_NOT_FOUND {
                return Err(PlatformError::new(
                    "RegOpenKeyExW",
                    key,
                    windows::core::Error::from(status.to_hresult()),
                )
                .with_code(i64::from(status.0)));
            }
        }
        Ok(false)
    }

    fn request_reboot(&self, message: &str) -> Result<(), PlatformError> {
        enable_privilege("SeShutdownPrivilege")?;
        let text = wide(message);
        // Planned, for an update; 30 s for applications to close (the node is drained already).
        let reason =
            SHTDN_REASON_MAJOR_OPERATINGSYSTEM | SHTDN_REASON_MINOR_UPGRADE | SHTDN_REASON_FLAG_PLANNED;
        // SAFETY: NUL-terminated message; no machine name (this host).
        unsafe { InitiateSystemShutdownExW(PCWSTR::null(), PCWSTR(text.as_ptr()), 30, false, true, reason) }
            .map_err(|e| PlatformError::new("InitiateSystemShutdownExW", "this host", e))
    }

    fn describe(&self) -> String {
        match wine_version() {
            Some(version) => format!("Wine {version}"),
            None => "Windows".to_string(),
        }
    }

    fn is_wine(&self) -> bool {
        wine_version().is_some()
    }
}

/// Enables a privilege the process token holds but has disabled (SYSTEM holds SeShutdownPrivilege).
fn enable_privilege(name: &str) -> Result<(), PlatformError> {
    let mut token = HANDLE::default();
    // SAFETY: the current process's pseudo-handle; the token handle is owned below.
    unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_ADJUST_PRIVILEGES | TOKEN_QUERY, &mut token) }
        .map_err(|e| PlatformError::new("OpenProcessToken", "self", e))?;
    let token = Owned(token);
    let mut luid = LUID::default();
    let wide_name = wide(name);
    // SAFETY: a NUL-terminated privilege name and an out pointer to a local.
    unsafe { LookupPrivilegeValueW(PCWSTR::null(), PCWSTR(wide_name.as_ptr()), &mut luid) }
        .map_err(|e| PlatformError::new("LookupPrivilegeValueW", name, e))?;
    let privileges = TOKEN_PRIVILEGES {
        PrivilegeCount: 1,
        Privileges: [LUID_AND_ATTRIBUTES { Luid: luid, Attributes: SE_PRIVILEGE_ENABLED }],
    };
    // SAFETY: the token is open with TOKEN_ADJUST_PRIVILEGES; the new state is a local.
    unsafe { AdjustTokenPrivileges(token.0, false, Some(&privileges), 0, None, None) }
        .map_err(|e| PlatformError::new("AdjustTokenPrivileges", name, e))?;
    // AdjustTokenPrivileges succeeds without enabling a privilege the token does not hold.
    // SAFETY: reads the calling thread's last error.
    let last = unsafe { GetLastError() };
    if last == ERROR_NOT_ALL_ASSIGNED {
        return Err(PlatformError::new(
            "AdjustTokenPrivileges",
            name,
            "the account does not hold this privilege (run as SYSTEM)",
        ));
    }
    Ok(())
}

/// Whether a process is alive (has not exited).
pub fn process_alive(pid: u32) -> bool {
    // SAFETY: opening a process by id for a query; the handle is owned below.
    let Ok(handle) = (unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, false, pid) }) else {
        return false;
    };
    let handle = Owned(handle);
    let mut code = 0u32;
    // SAFETY: the handle is valid and `code` is writable.
    unsafe { GetExitCodeProcess(handle.0, &mut code) }.is_ok() && code == STILL_ACTIVE.0 as u32
}

pub fn describe() -> String {
    match wine_version() {
        Some(version) => format!("Wine {version}"),
        None => "Windows".to_string(),
    }
}

/// Wine's version, when running under Wine (its ntdll exports `wine_get_version`).
fn wine_version() -> Option<String> {
    let ntdll = wide("ntdll.dll");
    // SAFETY: ntdll is loaded in every process; the handle is not owned (no FreeLibrary).
    let module = unsafe { GetModuleHandleW(PCWSTR(ntdll.as_ptr())) }.ok()?;
    // SAFETY: the name is a NUL-terminated ASCII string.
    let proc = unsafe { GetProcAddress(module, PCSTR(c"wine_get_version".as_ptr() as *const u8)) }?;
    // SAFETY: Wine documents `const char *wine_get_version(void)`.
    let get_version: unsafe extern "C" fn() -> *const std::ffi::c_char = unsafe { std::mem::transmute(proc) };
    // SAFETY: the function returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(get_version()) };
    Some(version.to_string_lossy().into_owned())
}

fn set_limits(job: &Owned, limits: &JobLimits) -> Result<(), PlatformError> {
    let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
    info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    if let Some(bytes) = limits.memory_bytes {
        info.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_JOB_MEMORY;
        info.JobMemoryLimit = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
    if let Some(processes) = limits.processes {
        info.BasicLimitInformation.LimitFlags |= JOB_OBJECT_LIMIT_ACTIVE_PROCESS;
        info.BasicLimitInformation.ActiveProcessLimit = processes;
    }
    // SAFETY: the structure is valid for the call and its size is passed.
    unsafe {
        SetInformationJobObject(
            job.0,
            JobObjectExtendedLimitInformation,
            &info as *const _ as *const c_void,
            size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
        )
    }
    .map_err(|e| win_err("SetInformationJobObject(limits)", "job", e))?;

    if let Some(millis) = limits.cpu_millis {
        // SAFETY: a plain query of the active processors in all groups.
        let cpus = u64::from(unsafe { GetActiveProcessorCount(ALL_PROCESSOR_GROUPS) }.max(1));
        // CpuRate is the share of all processors' cycles, in 1/10000.
        let rate = (millis * 10 / cpus).clamp(1, 10_000) as u32;
        let mut cpu = JOBOBJECT_CPU_RATE_CONTROL_INFORMATION {
            ControlFlags: JOB_OBJECT_CPU_RATE_CONTROL_ENABLE | JOB_OBJECT_CPU_RATE_CONTROL_HARD_CAP,
            ..Default::default()
        };
        cpu.Anonymous.CpuRate = rate;
        // SAFETY: the structure is valid for the call and its size is passed.
        unsafe {
            SetInformationJobObject(
                job.0,
                JobObjectCpuRateControlInformation,
                &cpu as *const _ as *const c_void,
                size_of::<JOBOBJECT_CPU_RATE_CONTROL_INFORMATION>() as u32,
            )
        }
        .map_err(|e| {
            let err = win_err("SetInformationJobObject(CPU rate)", "job", e);
            let code = err.code.unwrap_or_default();
            PlatformError::new(
                "SetInformationJobObject(CPU rate)",
                format!("{millis}m"),
                format!("the OS refused the CPU rate limit (error {code}: {}); the payload was not started — remove limits.cpu or run on a Windows version with job CPU rate control", err.detail),
            )
            .with_code(code)
        })?;
    }
    Ok(())
}

/// Starts the command line suspended, with the executor's standard handles.
fn spawn_suspended(line: &str) -> Result<(Owned, Owned, u32), PlatformError> {
    let mut startup = STARTUPINFOW {
        cb: size_of::<STARTUPINFOW>() as u32,
        dwFlags: STARTF_USESTDHANDLES,
        ..Default::default()
    };
    // SAFETY: plain queries of this process's standard handles (not owned: no close).
    unsafe {
        startup.hStdInput = GetStdHandle(STD_INPUT_HANDLE).unwrap_or_default();
        startup.hStdOutput = GetStdHandle(STD_OUTPUT_HANDLE).unwrap_or_default();
        startup.hStdError = GetStdHandle(STD_ERROR_HANDLE).unwrap_or_default();
    }
    let mut cmdline: Vec<u16> = wide(line);
    let mut info = PROCESS_INFORMATION::default();
    // SAFETY: the command line buffer is writable and NUL-terminated as CreateProcessW needs;
    // the returned handles are owned below.
    unsafe {
        CreateProcessW(
            PCWSTR::null(),
            Some(PWSTR(cmdline.as_mut_ptr())),
            None,
            None,
            true,
            CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP,
            None,
            PCWSTR::null(),
            &startup,
            &mut info,
        )
    }
    .map_err(|e| win_err("CreateProcessW", line, e))?;
    Ok((Owned(info.hProcess), Owned(info.hThread), info.dwProcessId))
}

/// The payload's job object; closing it (on drop) kills whatever is left in it.
#[derive(Debug)]
pub struct NativeJob {
    job: Owned,
    port: Owned,
    process: Owned,
    pid: u32,
    stats: JobStats,
    exit: Option<i64>,
}

impl NativeJob {
    /// Reads the job's messages queued so far, waiting at most `wait`.
    fn drain_messages(&mut self, wait: Duration) {
        let mut timeout = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        loop {
            let (mut message, mut key, mut overlapped) = (0u32, 0usize, std::ptr::null_mut::<OVERLAPPED>());
            // SAFETY: out-pointers are valid; job messages carry no buffer to free.
            let got = unsafe {
                GetQueuedCompletionStatus(self.port.0, &mut message, &mut key, &mut overlapped, timeout)
            };
            if got.is_err() {
                return;
            }
            match message {
                MSG_JOB_MEMORY_LIMIT => self.stats.limit_exceeded = Some(LimitKind::Memory),
                MSG_ACTIVE_PROCESS_LIMIT => self.stats.limit_exceeded = Some(LimitKind::Processes),
                MSG_ACTIVE_PROCESS_ZERO => {}
                _ => {}
            }
            timeout = 0;
        }
    }

    fn active_processes(&self) -> u32 {
        let mut info = JOBOBJECT_BASIC_ACCOUNTING_INFORMATION::default();
        // SAFETY: the structure is writable and its size is passed.
        let ok = unsafe {
            QueryInformationJobObject(
                Some(self.job.0),
                JobObjectBasicAccountingInformation,
                &mut info as *mut _ as *mut c_void,
                size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
                None,
            )
        };
        if ok.is_ok() { info.ActiveProcesses } else { 0 }
    }
}

impl Job for NativeJob {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn poll(&mut self, slice: Duration) -> Result<Option<i64>, PlatformError> {
        if self.exit.is_some() {
            return Ok(self.exit);
        }
        let ms = u32::try_from(slice.as_millis()).unwrap_or(u32::MAX);
        // SAFETY: the process handle is valid.
        let waited = unsafe { WaitForSingleObject(self.process.0, ms) };
        self.drain_messages(Duration::ZERO);
        if waited != WAIT_OBJECT_0 {
            return Ok(None);
        }
        let mut code = 0u32;
        // SAFETY: the handle is valid and `code` is writable.
        unsafe { GetExitCodeProcess(self.process.0, &mut code) }
            .map_err(|e| win_err("GetExitCodeProcess", &self.pid.to_string(), e))?;
        self.exit = Some(i64::from(code));
        Ok(self.exit)
    }

    fn kill(&mut self) -> Result<(), PlatformError> {
        // SAFETY: the job handle is valid; every process in the job is terminated.
        unsafe { TerminateJobObject(self.job.0, KILLED_EXIT_CODE) }
            .map_err(|e| win_err("TerminateJobObject", &self.pid.to_string(), e))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.active_processes() > 0 {
            if Instant::now() > deadline {
                return Err(PlatformError::new(
                    "TerminateJobObject",
                    self.pid.to_string(),
                    "processes of the job are still alive after 10s",
                ));
            }
            self.drain_messages(Duration::from_millis(10));
        }
        self.poll(Duration::from_secs(5))?;
        Ok(())
    }

    fn stats(&mut self) -> JobStats {
        self.drain_messages(Duration::ZERO);
        let mut basic = JOBOBJECT_BASIC_ACCOUNTING_INFORMATION::default();
        // SAFETY: the structure is writable and its size is passed.
        let ok = unsafe {
            QueryInformationJobObject(
                Some(self.job.0),
                JobObjectBasicAccountingInformation,
                &mut basic as *mut _ as *mut c_void,
                size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
                None,
            )
        };
        if ok.is_ok() {
            // 100-nanosecond units.
            self.stats.cpu_time_ms = ((basic.TotalUserTime + basic.TotalKernelTime) / 10_000) as u64;
            self.stats.active_processes = basic.ActiveProcesses;
        }
        let mut extended = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        // SAFETY: the structure is writable and its size is passed.
        let ok = unsafe {
            QueryInformationJobObject(
                Some(self.job.0),
                JobObjectExtendedLimitInformation,
                &mut extended as *mut _ as *mut c_void,
                size_of::<JOBOBJECT_EXTENDED_LIMIT_INFORMATION>() as u32,
                None,
            )
        };
        if ok.is_ok() {
            self.stats.peak_memory_bytes = extended.PeakJobMemoryUsed as u64;
        }
        self.stats
    }
}
