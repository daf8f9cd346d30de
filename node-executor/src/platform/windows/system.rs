//! The system itself: pending-reboot keys, the shutdown privilege and the restart, processes by
//! id, and whether this is Wine.

use windows::Win32::Foundation::{
    ERROR_FILE_NOT_FOUND, ERROR_NOT_ALL_ASSIGNED, ERROR_NOT_READY, ERROR_SHUTDOWN_IN_PROGRESS,
    ERROR_SHUTDOWN_IS_SCHEDULED, ERROR_SUCCESS, GetHandleInformation, GetLastError, HANDLE, LUID,
    STILL_ACTIVE, WIN32_ERROR,
};
use windows::Win32::Security::{
    AdjustTokenPrivileges, LUID_AND_ATTRIBUTES, LookupPrivilegeValueW, SE_PRIVILEGE_ENABLED,
    SECURITY_ATTRIBUTES, TOKEN_ADJUST_PRIVILEGES, TOKEN_PRIVILEGES, TOKEN_QUERY,
};
use windows::Win32::System::Console::{
    CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT, SetConsoleCtrlHandler,
};
use windows::Win32::System::LibraryLoader::{
    GetModuleHandleW, GetProcAddress, LOAD_LIBRARY_SEARCH_SYSTEM32, SetDefaultDllDirectories,
};
use windows::Win32::System::Registry::{HKEY, HKEY_LOCAL_MACHINE, KEY_READ, RegCloseKey, RegOpenKeyExW};
use windows::Win32::System::Shutdown::{
    InitiateSystemShutdownExW, SHTDN_REASON_FLAG_PLANNED, SHTDN_REASON_MAJOR_OPERATINGSYSTEM,
    SHTDN_REASON_MINOR_UPGRADE,
};
use windows::Win32::System::Threading::{
    CreateEventW, CreateRemoteThread, GetCurrentProcess, GetExitCodeProcess, OpenProcess, OpenProcessToken,
    PROCESS_CREATE_THREAD, PROCESS_QUERY_INFORMATION, PROCESS_QUERY_LIMITED_INFORMATION,
    PROCESS_VM_OPERATION, PROCESS_VM_READ, PROCESS_VM_WRITE,
};
use windows::core::{PCSTR, PCWSTR};

use crate::platform::PlatformError;

use super::handles::*;

/// Enables a privilege the process token holds but has disabled (SYSTEM holds SeShutdownPrivilege).
pub(super) fn enable_privilege(name: &str) -> Result<(), PlatformError> {
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

/// Restricts where this process loads DLLs from to System32: a DLL planted beside the executor
/// (or in the current folder) is never loaded by a later `LoadLibrary`. Called first in `main`.
pub fn restrict_dll_search() -> Result<(), PlatformError> {
    // SAFETY: a process-wide setting taking a flag; no pointers.
    unsafe { SetDefaultDllDirectories(LOAD_LIBRARY_SEARCH_SYSTEM32) }
        .map_err(|e| PlatformError::new("SetDefaultDllDirectories", "System32", e))
}

/// What to do on a console event; `true`: a terminal one (close, logoff, shutdown), after
/// which Windows ends the process as soon as the handler returns.
type ConsoleCallback = Box<dyn Fn(bool) + Send + Sync>;

static CONSOLE_CALLBACK: std::sync::OnceLock<ConsoleCallback> = std::sync::OnceLock::new();

unsafe extern "system" fn console_handler(event: u32) -> windows::core::BOOL {
    let terminal = matches!(event, CTRL_CLOSE_EVENT | CTRL_LOGOFF_EVENT | CTRL_SHUTDOWN_EVENT);
    if let Some(callback) = CONSOLE_CALLBACK.get() {
        callback(terminal);
    }
    true.into()
}

/// Calls `callback` on every console event (Ctrl-C, Ctrl-Break, close, logoff, shutdown), on
/// the thread Windows creates for it; the process goes on until the callback returns. Once.
pub fn on_console_event(callback: ConsoleCallback) -> Result<(), PlatformError> {
    CONSOLE_CALLBACK
        .set(callback)
        .map_err(|_| PlatformError::new("SetConsoleCtrlHandler", "self", "a handler is installed already"))?;
    // SAFETY: the handler is a plain function that lives as long as the process.
    unsafe { SetConsoleCtrlHandler(Some(console_handler), true) }
        .map_err(|e| PlatformError::new("SetConsoleCtrlHandler", "self", e))
}

/// Whether this process has an open handle with this value.
pub fn handle_open(value: u64) -> bool {
    let mut flags = 0u32;
    // SAFETY: a query of a handle value; an invalid one makes the call fail, nothing else.
    unsafe { GetHandleInformation(HANDLE(value as usize as *mut std::ffi::c_void), &mut flags) }.is_ok()
}

/// An inheritable event handle, closed on drop: what a parent could leave in the executor.
#[derive(Debug)]
pub struct InheritableEvent(Owned);

impl InheritableEvent {
    pub fn new() -> Result<Self, PlatformError> {
        let attributes = SECURITY_ATTRIBUTES {
            nLength: size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: std::ptr::null_mut(),
            bInheritHandle: true.into(),
        };
        // SAFETY: an anonymous event with default security, inheritable; owned below.
        let handle = unsafe { CreateEventW(Some(&attributes), true, false, PCWSTR::null()) }
            .map_err(|e| PlatformError::new("CreateEventW", "inheritable event", e))?;
        Ok(InheritableEvent(Owned(handle)))
    }

    /// The handle's value, as a child would see it if it inherited it.
    pub fn value(&self) -> u64 {
        self.0.0.0 as usize as u64
    }
}

/// Delivers the console shutdown event to a process without a console, as hcsshim does when a
/// HostProcess container is stopped: a thread started in the process at `kernel32!CtrlRoutine`
/// (at the same address in every process of a boot) with the event as its argument runs the
/// process's console handlers.
pub(super) fn send_shutdown_event(pid: u32) -> Result<(), PlatformError> {
    let subject = || format!("process {pid}");
    let access = PROCESS_CREATE_THREAD
        | PROCESS_QUERY_INFORMATION
        | PROCESS_VM_OPERATION
        | PROCESS_VM_READ
        | PROCESS_VM_WRITE;
    // SAFETY: opening a process by id; the handle is owned below.
    let process = unsafe { OpenProcess(access, false, pid) }
        .map_err(|e| PlatformError::new("OpenProcess", subject(), e))?;
    let process = Owned(process);
    let kernel32 = wide("kernel32.dll");
    // SAFETY: kernel32 is loaded in every process; the module handle is not owned.
    let module = unsafe { GetModuleHandleW(PCWSTR(kernel32.as_ptr())) }
        .map_err(|e| PlatformError::new("GetModuleHandleW", "kernel32.dll", e))?;
    // SAFETY: a NUL-terminated ASCII name.
    let routine = unsafe { GetProcAddress(module, PCSTR(c"CtrlRoutine".as_ptr() as *const u8)) }
        .ok_or_else(|| PlatformError::new("GetProcAddress", "kernel32!CtrlRoutine", "not exported"))?;
    // SAFETY: CtrlRoutine takes one pointer-sized argument (the event) and returns a DWORD: the
    // shape of a thread start routine.
    let start: unsafe extern "system" fn(*mut std::ffi::c_void) -> u32 =
        unsafe { std::mem::transmute(routine) };
    // SAFETY: the process handle allows thread creation; the argument is a value, not a pointer.
    let thread = unsafe {
        CreateRemoteThread(
            process.0,
            None,
            0,
            Some(start),
            Some(CTRL_SHUTDOWN_EVENT as usize as *const std::ffi::c_void),
            0,
            None,
        )
    }
    .map_err(|e| PlatformError::new("CreateRemoteThread", subject(), e))?;
    drop(Owned(thread));
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
pub(super) fn wine_version() -> Option<String> {
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

pub(super) fn reboot_pending() -> Result<bool, PlatformError> {
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

/// How often a restart the system is not ready for is asked again, and how long apart.
const REBOOT_ATTEMPTS: u32 = 6;
const REBOOT_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) fn request_reboot(message: &str) -> Result<(), PlatformError> {
    enable_privilege("SeShutdownPrivilege")?;
    let text = wide(message);
    // Planned, for an update; 30 s for applications to close, then they are closed: the node is
    // drained, and an application that would not close would hold the restart pending forever.
    let reason = SHTDN_REASON_MAJOR_OPERATINGSYSTEM | SHTDN_REASON_MINOR_UPGRADE | SHTDN_REASON_FLAG_PLANNED;
    let mut attempt = 1;
    loop {
        // SAFETY: NUL-terminated message; no machine name (this host).
        let asked = unsafe {
            InitiateSystemShutdownExW(PCWSTR::null(), PCWSTR(text.as_ptr()), 30, true, true, reason)
        };
        let Err(e) = asked else { return Ok(()) };
        let code = WIN32_ERROR::from_error(&e).unwrap_or_default();
        // A restart already under way or scheduled (this one asked before, or Windows Update's)
        // is what was asked for.
        if code == ERROR_SHUTDOWN_IN_PROGRESS || code == ERROR_SHUTDOWN_IS_SCHEDULED {
            eprintln!("node-executor: a restart is already in progress or scheduled; that is the one");
            return Ok(());
        }
        if code == ERROR_NOT_READY && attempt < REBOOT_ATTEMPTS {
            eprintln!(
                "node-executor: the system is not ready to restart yet; asking again in {}s",
                REBOOT_RETRY_AFTER.as_secs()
            );
            std::thread::sleep(REBOOT_RETRY_AFTER);
            attempt += 1;
            continue;
        }
        return Err(
            PlatformError::new("InitiateSystemShutdownExW", "this host", e).with_code(i64::from(code.0))
        );
    }
}

pub(super) fn is_wine() -> bool {
    wine_version().is_some()
}
