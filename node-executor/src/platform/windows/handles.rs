//! Owned Win32 resources, released on drop (kernel handles, LocalAlloc and NetApi buffers), and
//! the conversions every call needs (wide strings, errors with the call and its subject).

use std::ffi::{OsStr, c_void};
use std::os::windows::ffi::OsStrExt;

use std::path::Path;

use windows::Win32::Foundation::{CloseHandle, HANDLE, HLOCAL, LocalFree, WIN32_ERROR};
use windows::Win32::NetworkManagement::NetManagement::NetApiBufferFree;
use windows::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, CreateFileW, FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS,
    FILE_FLAG_OPEN_REPARSE_POINT, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
    GetFileInformationByHandle, OPEN_EXISTING,
};
use windows::core::PCWSTR;

use crate::platform::PlatformError;

/// A kernel handle, closed on drop.
#[derive(Debug)]
pub(super) struct Owned(pub(super) HANDLE);

impl Drop for Owned {
    fn drop(&mut self) {
        if !self.0.is_invalid() {
            // SAFETY: the handle is owned by this value and closed exactly once.
            let _ = unsafe { CloseHandle(self.0) };
        }
    }
}

/// Memory the OS allocated with LocalAlloc (security descriptors, ACLs, SIDs, strings).
pub(super) struct LocalMem(pub(super) *mut c_void);

impl Drop for LocalMem {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from an API documented to return LocalAlloc'd memory.
            unsafe { LocalFree(Some(HLOCAL(self.0))) };
        }
    }
}

/// A buffer returned by a NetApi call, freed with NetApiBufferFree.
pub(super) struct NetBuffer(pub(super) *mut u8);

impl Drop for NetBuffer {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the buffer came from a NetLocalGroup* call and is freed exactly once.
            unsafe { NetApiBufferFree(Some(self.0 as *const c_void)) };
        }
    }
}

pub(super) fn wide(s: &str) -> Vec<u16> {
    OsStr::new(s).encode_wide().chain(std::iter::once(0)).collect()
}

pub(super) fn win_err(call: &'static str, subject: &str, e: windows::core::Error) -> PlatformError {
    let code = i64::from(e.code().0 & 0xffff);
    PlatformError::new(call, subject, e.message()).with_code(code)
}

pub(super) fn net_err(call: &'static str, subject: &str, status: u32) -> PlatformError {
    let message = windows::core::Error::from(WIN32_ERROR(status).to_hresult()).message();
    PlatformError::new(call, subject, format!("error {status}: {message}")).with_code(i64::from(status))
}

pub(super) fn status_err(call: &'static str, subject: &str, status: WIN32_ERROR) -> PlatformError {
    net_err(call, subject, status.0)
}

/// Opens `path` itself — a link is opened as the link, never followed — for `access`.
pub(super) fn open_no_follow(path: &Path, access: u32) -> Result<Owned, PlatformError> {
    let shown = path.display().to_string();
    let wpath = wide(&shown);
    // SAFETY: a NUL-terminated path; the handle is owned below.
    let handle = unsafe {
        CreateFileW(
            PCWSTR(wpath.as_ptr()),
            access,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            None,
            OPEN_EXISTING,
            FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT,
            None,
        )
    }
    .map_err(|e| win_err("CreateFileW", &shown, e))?;
    Ok(Owned(handle))
}

pub(super) fn attributes(handle: &Owned, path: &Path) -> Result<u32, PlatformError> {
    let mut info = BY_HANDLE_FILE_INFORMATION::default();
    // SAFETY: the handle is open; `info` is writable.
    unsafe { GetFileInformationByHandle(handle.0, &mut info) }
        .map_err(|e| win_err("GetFileInformationByHandle", &path.display().to_string(), e))?;
    Ok(info.dwFileAttributes)
}

pub(super) fn is_link(attributes: u32) -> bool {
    attributes & FILE_ATTRIBUTE_REPARSE_POINT.0 != 0
}
