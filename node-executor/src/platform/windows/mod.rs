//! The Windows implementation: Win32 job objects, NetLocalGroup*, and the security APIs.
//!
//! No shell, `net` or `icacls`: the APIs have the same effect without quoting user strings or
//! parsing localized output. Handles and OS-allocated buffers live in owning types that free
//! them on drop; every `unsafe` block is one call (or one read of a structure that call filled).

mod accounts;
mod acl;
mod handles;
mod job;
mod private_dir;
mod system;

use std::path::{Path, PathBuf};

use hostprocess_crds::{AppliesTo, Rights};

use crate::platform::{
    AccountId, Ace, DirSecurity, GroupSid, JobLimits, Launch, LocalGroup, PathKind, Platform, PlatformError,
};
pub use job::{NativeJob, nested_cpu_rate};
pub use system::{
    InheritableEvent, describe, handle_open, on_console_event, process_alive, restrict_dll_search,
};

/// The Windows host.
#[derive(Debug, Clone, Default)]
pub struct Host;

impl Host {
    pub fn new() -> Self {
        Host
    }
}

impl Platform for Host {
    type Job = NativeJob;

    fn launch(&self, launch: &Launch, limits: &JobLimits) -> Result<NativeJob, PlatformError> {
        job::launch(launch, limits)
    }

    fn script_command(&self, script: PathBuf) -> Launch {
        job::script_command(script)
    }

    fn lookup_account(&self, name: &str) -> Result<Option<AccountId>, PlatformError> {
        accounts::lookup_account(name)
    }

    fn group(&self, name: &str) -> Result<Option<LocalGroup>, PlatformError> {
        accounts::group(name)
    }

    fn group_sid(&self, name: &str) -> Result<Option<GroupSid>, PlatformError> {
        accounts::local_group_sid(name)
    }

    fn create_group(&self, name: &str, description: &str) -> Result<(), PlatformError> {
        accounts::create_group(name, description)
    }

    fn set_group_description(&self, name: &str, description: &str) -> Result<(), PlatformError> {
        accounts::set_group_description(name, description)
    }

    fn delete_group(&self, name: &str) -> Result<(), PlatformError> {
        accounts::delete_group(name)
    }

    fn add_member(&self, group: &str, member: &AccountId) -> Result<(), PlatformError> {
        accounts::add_member(group, member)
    }

    fn remove_member(&self, group: &str, member: &AccountId) -> Result<(), PlatformError> {
        accounts::remove_member(group, member)
    }

    fn path_kind(&self, path: &str) -> Result<PathKind, PlatformError> {
        acl::path_kind(path)
    }

    fn explicit_aces(&self, path: &str, group: &str) -> Result<Vec<Ace>, PlatformError> {
        acl::explicit_aces(path, group)
    }

    fn set_ace(
        &self,
        path: &str,
        group: &str,
        rights: Rights,
        applies_to: AppliesTo,
    ) -> Result<(), PlatformError> {
        acl::set_ace(path, group, rights, applies_to)
    }

    fn remove_aces(&self, path: &str, group: &str) -> Result<(), PlatformError> {
        acl::remove_aces(path, group)
    }

    fn explicit_aces_of(&self, path: &str, sid: &AccountId) -> Result<Vec<Ace>, PlatformError> {
        acl::explicit_aces_of(path, sid)
    }

    fn remove_aces_of(&self, path: &str, sid: &AccountId) -> Result<(), PlatformError> {
        acl::remove_aces_of(path, sid)
    }

    fn create_private_dir(&self, dir: &Path) -> Result<(), PlatformError> {
        private_dir::create_private_dir(dir)
    }

    fn dir_security(&self, dir: &Path) -> Result<DirSecurity, PlatformError> {
        private_dir::dir_security(dir)
    }

    fn reset_private_tree(&self, dir: &Path) -> Result<(), PlatformError> {
        private_dir::reset_private_tree(dir)
    }

    fn privileged(&self) -> bool {
        private_dir::privileged()
    }

    fn process_alive(&self, pid: u32) -> bool {
        system::process_alive(pid)
    }

    fn request_stop(&self, pid: u32) -> Result<(), PlatformError> {
        system::send_shutdown_event(pid)
    }

    fn reboot_pending(&self) -> Result<bool, PlatformError> {
        system::reboot_pending()
    }

    fn request_reboot(&self, message: &str) -> Result<(), PlatformError> {
        system::request_reboot(message)
    }

    fn booted_at(&self) -> Result<std::time::SystemTime, PlatformError> {
        // SAFETY: GetTickCount64 takes nothing and cannot fail.
        let since = std::time::Duration::from_millis(unsafe {
            windows::Win32::System::SystemInformation::GetTickCount64()
        });
        Ok(std::time::SystemTime::now() - since)
    }

    fn describe(&self) -> String {
        system::describe()
    }

    fn is_wine(&self) -> bool {
        system::is_wine()
    }
}
