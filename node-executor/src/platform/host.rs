//! The platform this build runs on: the Win32 implementation on Windows, the Linux stand-in
//! (process groups, a file-backed account and ACL store) everywhere else.

#[cfg(unix)]
pub use super::linux::{Host, describe, handle_open, process_alive};
#[cfg(windows)]
pub use super::windows::{Host, describe, handle_open, process_alive};
