//! Owned Win32 resources, released on drop (kernel handles, LocalAlloc and NetApi buffers), and
//! the conversions every call needs (wide strings, errors with the call and its subject).

use std::ffi::{OsStr, c_void};
use std::os::windows::ffi::OsStrExt;

use windows::Win32::Foundation::{CloseHandle, HANDLE, HLOCAL, LocalFree, WIN32_ERROR};
use windows::Win32::NetworkManagement::NetManagement::NetApiBufferFree;

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
