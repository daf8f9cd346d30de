//! Local groups, their members and file-system grants: check everything, plan the changes,
//! apply them, report exactly what changed (nothing on a second run).
//!
//! The executor remembers on the host what it did itself, per owner: whether it created the group,
//! which members it added, which paths it granted. A HostGroup's record is keyed by the
//! HostGroup's uid (`<state-dir>/groups/hostgroup-<uid>.json`, the group's name inside), never by
//! the group's name; what an administrator did with the `group` and `grant` commands is recorded
//! apart, by group name (`<state-dir>/groups/<group>.json`). Removal undoes only what the same
//! owner did — a group that existed before is kept, members and grants added by others stay — and
//! a Windows group has one HostGroup: provisioning it for a second one is refused.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hostprocess_crds::{AppliesTo, Grant, HostGroupSpec, Rights, ValidationErrors, messages};
use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::platform::{
    AccountId, Ace, GroupSid, PathKind, Platform, PlatformError, normalize_path, privileged_member,
};

pub use hostprocess_protocol::Change;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("refused, nothing changed: {0}")]
    Invalid(ValidationErrors),
    #[error("refused, nothing changed: member {0:?} does not exist on this node")]
    UnknownMember(String),
    #[error("refused, nothing changed: path {0} does not exist on this node")]
    MissingPath(String),
    #[error("refused, nothing changed: path {path} is a file: {}", messages::FILES_ONLY_THIS_FOLDER)]
    FileInheritance { path: String },
    #[error("{source} (changes made before the failure: {done:?})")]
    Host { source: PlatformError, done: Vec<Change> },
    #[error("cannot read or write the ownership record {path}: {detail}")]
    Ownership { path: PathBuf, detail: String },
    #[error(
        "refused, nothing changed: group {group:?} is managed on this node by HostGroup uid {owner}; a Windows group has one HostGroup"
    )]
    OwnedByAnother { group: String, owner: String },
    #[error(
        "refused, nothing changed: group {group:?} is a built-in or well-known group on this node (SID {sid}), not one of this machine's own: a HostGroup manages a group of its own"
    )]
    NotOwnGroup { group: String, sid: String },
    #[error(
        "refused, nothing changed: member {member:?} is a privileged or broad principal on this node (SID {sid}): a HostGroup never adds administrators, built-in groups or service accounts"
    )]
    PrivilegedMember { member: String, sid: String },
}

/// Who a change is made for, and so whose record it goes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// The HostGroup with this uid (`provision`, `deprovision`).
    HostGroup(String),
    /// An administrator's `group` and `grant` commands, by group name.
    Commands,
}

/// What the executor did itself to one group on this host, for one owner.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ownership {
    /// The group's name (records of the `group`/`grant` commands are named after it instead).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    group: String,
    created: bool,
    members: BTreeSet<AccountId>,
    /// Granted paths, as written (compared case-insensitively).
    grants: BTreeSet<String>,
    /// The group's SID when this owner created it or first changed it: a group deleted and
    /// created again under the name by someone else is not this owner's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<AccountId>,
}

struct OwnershipFile(PathBuf);

const HOSTGROUP_RECORD: &str = "hostgroup-";

impl OwnershipFile {
    /// The record of the `group`/`grant` commands for `group` (and of HostGroups before records
    /// were keyed by owner).
    fn of_commands(state_dir: &Path, group: &str) -> Self {
        // Group names are validated (no separators); Windows compares them case-insensitively.
        OwnershipFile(state_dir.join("groups").join(format!("{}.json", group.to_lowercase())))
    }

    /// The record of `owner` for `group`.
    fn new(state_dir: &Path, owner: &Owner, group: &str) -> Self {
        match owner {
            // The uid is checked to be a plain token by the caller.
            Owner::HostGroup(uid) => {
                OwnershipFile(state_dir.join("groups").join(format!("{HOSTGROUP_RECORD}{uid}.json")))
            }
            Owner::Commands => Self::of_commands(state_dir, group),
        }
    }

    fn load(&self) -> Result<Ownership, ProvisionError> {
        match std::fs::read(&self.0) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| self.err(e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ownership::default()),
            Err(e) => Err(self.err(e)),
        }
    }

    fn save(&self, ownership: &Ownership) -> Result<(), ProvisionError> {
        let bytes = serde_json::to_vec_pretty(ownership).map_err(|e| self.err(e))?;
        atomic_file::write(&self.0, &bytes).map_err(|e| self.err(e))
    }

    fn remove(&self) -> Result<(), ProvisionError> {
        match std::fs::remove_file(&self.0) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.err(e)),
            _ => Ok(()),
        }
    }

    fn err(&self, e: impl ToString) -> ProvisionError {
        ProvisionError::Ownership { path: self.0.clone(), detail: e.to_string() }
    }
}

/// Applies changes one by one, keeping the ownership record true after each.
struct Applier<'a, P: Platform> {
    platform: &'a P,
    file: OwnershipFile,
    owned: Ownership,
    done: Vec<Change>,
}

impl<'a, P: Platform> Applier<'a, P> {
    /// Loads what this executor did to `group` before for `owner`. A HostGroup without a record
    /// of its own adopts the record a HostGroup kept by group name before records were keyed by
    /// owner; another HostGroup's record for the same group is a refusal.
    fn open(platform: &'a P, state_dir: &Path, owner: &Owner, group: &str) -> Result<Self, ProvisionError> {
        let file = OwnershipFile::new(state_dir, owner, group);
        let mut owned = file.load()?;
        if let Owner::HostGroup(uid) = owner {
            if let Some(other) = other_hostgroup(state_dir, uid, group)? {
                return Err(ProvisionError::OwnedByAnother { group: group.into(), owner: other });
            }
            // A record without the group's name was written before records had owners (the
            // commands' records name their group now): a HostGroup's, taken over once.
            let legacy = OwnershipFile::of_commands(state_dir, group);
            let old = legacy.load()?;
            if owned == Ownership::default() && old != Ownership::default() && old.group.is_empty() {
                owned = Ownership { group: group.into(), ..old };
                file.save(&owned)?;
                legacy.remove()?;
            }
        }
        owned.group = group.into();
        Ok(Applier { platform, file, owned, done: vec![] })
    }

    /// Records the ownership and returns the changes made.
    fn finish(self) -> Result<Vec<Change>, ProvisionError> {
        self.file.save(&self.owned)?;
        Ok(self.done)
    }

    fn apply(
        &mut self,
        change: Change,
        call: impl FnOnce(&P) -> Result<(), PlatformError>,
    ) -> Result<(), ProvisionError> {
        if let Err(source) = call(self.platform) {
            // Keep what was recorded so far; the next run picks up from the host's real state.
            self.file.save(&self.owned)?;
            return Err(ProvisionError::Host { source, done: std::mem::take(&mut self.done) });
        }
        // What was done, as an administrator would type it: readable, auditable, replayable.
        eprintln!("node-executor: {}", change.command_line());
        self.done.push(change);
        Ok(())
    }
}

/// The uid of another HostGroup whose record on this host is for `group`, if any.
fn other_hostgroup(state_dir: &Path, uid: &str, group: &str) -> Result<Option<String>, ProvisionError> {
    let dir = state_dir.join("groups");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ProvisionError::Ownership { path: dir, detail: e.to_string() }),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(other) = name.strip_prefix(HOSTGROUP_RECORD).and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        if other == uid {
            continue;
        }
        let record = OwnershipFile(entry.path()).load()?;
        if record.group.eq_ignore_ascii_case(group) {
            return Ok(Some(other.to_string()));
        }
    }
    Ok(None)
}

fn host(source: PlatformError) -> ProvisionError {
    ProvisionError::Host { source, done: vec![] }
}

fn normalized(grants: &[Grant]) -> Vec<Grant> {
    grants.iter().map(|g| Grant { path: normalize_path(&g.path), ..g.clone() }).collect()
}

/// The group's identity; refused when it is a built-in or well-known group, not the machine's own.
fn own_group<P: Platform>(platform: &P, group: &str) -> Result<Option<GroupSid>, ProvisionError> {
    match platform.group_sid(group).map_err(host)? {
        Some(id) if !id.own_domain => Err(ProvisionError::NotOwnGroup { group: group.into(), sid: id.sid.0 }),
        other => Ok(other),
    }
}

/// Resolves every member to its account id, refusing unknown accounts.
fn resolve_members<P: Platform>(
    platform: &P,
    members: &[String],
) -> Result<Vec<(String, AccountId)>, ProvisionError> {
    members
        .iter()
        .map(|m| match platform.lookup_account(m).map_err(host)? {
            Some(id) if privileged_member(&id.0) => {
                Err(ProvisionError::PrivilegedMember { member: m.clone(), sid: id.0 })
            }
            Some(id) => Ok((m.clone(), id)),
            None => Err(ProvisionError::UnknownMember(m.clone())),
        })
        .collect()
}

/// Checks that every grant can be applied exactly on this host.
fn check_grants<P: Platform>(platform: &P, grants: &[Grant]) -> Result<(), ProvisionError> {
    for grant in grants {
        match platform.path_kind(&grant.path).map_err(host)? {
            PathKind::Missing => return Err(ProvisionError::MissingPath(grant.path.clone())),
            PathKind::File if grant.applies_to != AppliesTo::ThisFolderOnly => {
                return Err(ProvisionError::FileInheritance { path: grant.path.clone() });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Makes the host match `spec`: the group with its description and members, the grants;
/// members and grants this executor added earlier and the spec no longer lists are removed.
pub fn provision<P: Platform>(
    platform: &P,
    spec: &HostGroupSpec,
    owner: &Owner,
    state_dir: &Path,
) -> Result<Vec<Change>, ProvisionError> {
    spec.validate().map_err(ProvisionError::Invalid)?;
    let members = resolve_members(platform, &spec.members)?;
    let grants = normalized(&spec.grants);
    check_grants(platform, &grants)?;

    let group = spec.group_name.as_str();
    let identity = own_group(platform, group)?;
    let mut applier = Applier::open(platform, state_dir, owner, group)?;

    let description = spec.description.clone().unwrap_or_default();
    let current = platform.group(group).map_err(host)?;
    let current_members: Vec<AccountId> = match &current {
        None => {
            applier.apply(Change::CreateGroup { group: group.into() }, |p| {
                p.create_group(group, &description)
            })?;
            applier.owned.created = true;
            applier.owned.sid = platform.group_sid(group).map_err(host)?.map(|id| id.sid);
            vec![]
        }
        Some(existing) => {
            if applier.owned.sid.is_none() {
                applier.owned.sid = identity.map(|id| id.sid);
            }
            if spec.description.is_some() && existing.description != description {
                let change = Change::SetDescription { group: group.into(), description: description.clone() };
                applier.apply(change, |p| p.set_group_description(group, &description))?;
            }
            existing.members.clone()
        }
    };
    for (name, id) in &members {
        if !current_members.contains(id) {
            applier.apply(Change::AddMember { group: group.into(), member: name.clone() }, |p| {
                p.add_member(group, id)
            })?;
            applier.owned.members.insert(id.clone());
        }
    }
    let wanted: BTreeSet<&AccountId> = members.iter().map(|(_, id)| id).collect();
    let stale: Vec<AccountId> =
        applier.owned.members.iter().filter(|id| !wanted.contains(id)).cloned().collect();
    for id in stale {
        if current_members.contains(&id) {
            let change = Change::RemoveMember { group: group.into(), member: id.0.clone() };
            applier.apply(change, |p| p.remove_member(group, &id))?;
        }
        applier.owned.members.remove(&id);
    }

    apply_grants(&mut applier, group, &grants)?;
    let stale: Vec<String> = applier
        .owned
        .grants
        .iter()
        .filter(|path| !grants.iter().any(|g| g.path.eq_ignore_ascii_case(&normalize_path(path))))
        .cloned()
        .collect();
    revoke_grants(&mut applier, group, &stale)?;
    applier.finish()
}

/// Applies grants for an existing group, leaving other grants alone.
pub fn grant<P: Platform>(
    platform: &P,
    group: &str,
    grants: &[Grant],
    state_dir: &Path,
) -> Result<Vec<Change>, ProvisionError> {
    let spec = HostGroupSpec {
        group_name: group.into(),
        description: None,
        node_selector: None,
        tolerations: vec![],
        grants: grants.to_vec(),
        members: vec![],
        namespaces: vec![],
        rollout: Default::default(),
        deletion_policy: Default::default(),
    };
    spec.validate().map_err(ProvisionError::Invalid)?;
    if platform.group(group).map_err(host)?.is_none() {
        return Err(ProvisionError::Host {
            source: PlatformError::new("grant", group, "no such local group: ensure the group first"),
            done: vec![],
        });
    }
    own_group(platform, group)?;
    let grants = normalized(grants);
    check_grants(platform, &grants)?;
    let mut applier = Applier::open(platform, state_dir, &Owner::Commands, group)?;
    apply_grants(&mut applier, group, &grants)?;
    applier.finish()
}

/// Revokes the group's explicit grants on `paths`.
pub fn revoke<P: Platform>(
    platform: &P,
    group: &str,
    paths: &[String],
    state_dir: &Path,
) -> Result<Vec<Change>, ProvisionError> {
    let mut errors = group_name_errors(group);
    for (i, path) in paths.iter().enumerate() {
        if let Err(e) = hostprocess_crds::format::WINDOWS_PATH.check(path) {
            errors.push(hostprocess_crds::FieldError { field: format!("path[{i}]"), message: e.to_string() });
        }
    }
    if !errors.is_empty() {
        return Err(ProvisionError::Invalid(ValidationErrors(errors)));
    }
    let paths: Vec<String> = paths.iter().map(|p| normalize_path(p)).collect();
    let mut applier = Applier::open(platform, state_dir, &Owner::Commands, group)?;
    revoke_grants(&mut applier, group, &paths)?;
    applier.finish()
}

/// The refusal of a group name that is not a valid Windows local group name.
fn group_name_errors(group: &str) -> Vec<hostprocess_crds::FieldError> {
    match hostprocess_crds::format::GROUP_NAME.check(group) {
        Ok(()) => vec![],
        Err(e) => vec![hostprocess_crds::FieldError { field: "group".into(), message: e.to_string() }],
    }
}

/// The change that leaves `trustee` exactly one explicit entry on `path`, of these rights;
/// none when that is what the path has already (a second run changes nothing).
pub fn grant_change<P: Platform>(
    platform: &P,
    path: &str,
    trustee: &str,
    rights: Rights,
    applies_to: AppliesTo,
) -> Result<Option<Change>, PlatformError> {
    if platform.explicit_aces(path, trustee)? == [Ace::new(rights, applies_to)] {
        return Ok(None);
    }
    Ok(Some(Change::SetGrant { path: path.into(), group: trustee.into(), rights, applies_to }))
}

fn apply_grants<P: Platform>(
    applier: &mut Applier<'_, P>,
    group: &str,
    grants: &[Grant],
) -> Result<(), ProvisionError> {
    for grant in grants {
        let (rights, applies_to) = (grant.rights, grant.applies_to);
        if let Some(change) =
            grant_change(applier.platform, &grant.path, group, rights, applies_to).map_err(host)?
        {
            applier.apply(change, |p| p.set_ace(&grant.path, group, grant.rights, grant.applies_to))?;
        }
        // Records written before paths were normalized may hold another spelling.
        applier.owned.grants.retain(|p| !normalize_path(p).eq_ignore_ascii_case(&grant.path));
        applier.owned.grants.insert(grant.path.clone());
    }
    Ok(())
}

fn revoke_grants<P: Platform>(
    applier: &mut Applier<'_, P>,
    group: &str,
    paths: &[String],
) -> Result<(), ProvisionError> {
    for path in paths {
        let present = applier.platform.path_kind(path).map_err(host)? != PathKind::Missing
            && !applier.platform.explicit_aces(path, group).map_err(host)?.is_empty();
        if present {
            applier.apply(Change::RevokeGrant { path: path.clone(), group: group.into() }, |p| {
                p.remove_aces(path, group)
            })?;
        }
        applier.owned.grants.retain(|p| !normalize_path(p).eq_ignore_ascii_case(&normalize_path(path)));
    }
    Ok(())
}

/// Undoes what this executor did for the group: revokes its grants, then deletes the group
/// if it created it, or else removes the members it added.
pub fn deprovision<P: Platform>(
    platform: &P,
    group: &str,
    owner: &Owner,
    state_dir: &Path,
) -> Result<Vec<Change>, ProvisionError> {
    let errors = group_name_errors(group);
    if !errors.is_empty() {
        return Err(ProvisionError::Invalid(ValidationErrors(errors)));
    }
    let mut applier = Applier::open(platform, state_dir, owner, group)?;
    let identity = platform.group_sid(group).map_err(host)?.map(|id| id.sid);
    let same_group = applier.owned.sid.is_none() || applier.owned.sid == identity;
    let granted: Vec<String> = applier.owned.grants.iter().cloned().collect();
    if same_group {
        revoke_grants(&mut applier, group, &granted)?;
    } else if let Some(old) = applier.owned.sid.clone() {
        // The name now names another group: its grants stay; the entries of the group this owner
        // made, which has no name any more, are removed by its SID.
        eprintln!(
            "node-executor: group {group:?} on this node is not the one recorded (SID {}, now {:?}): \
             it was deleted and created again by someone else; leaving it alone, removing the old \
             group's entries by SID",
            old.0, identity
        );
        for path in &granted {
            let present = platform.path_kind(path).map_err(host)? != PathKind::Missing
                && !platform.explicit_aces_of(path, &old).map_err(host)?.is_empty();
            if present {
                let change = Change::RevokeGrant { path: path.clone(), group: format!("*{}", old.0) };
                applier.apply(change, |p| p.remove_aces_of(path, &old))?;
            }
        }
    }
    if let Some(current) = platform.group(group).map_err(host)?.filter(|_| same_group) {
        if applier.owned.created {
            applier.apply(Change::DeleteGroup { group: group.into() }, |p| p.delete_group(group))?;
        } else {
            let added: Vec<AccountId> = applier.owned.members.iter().cloned().collect();
            for id in added.iter().filter(|id| current.members.contains(id)) {
                let change = Change::RemoveMember { group: group.into(), member: id.0.clone() };
                applier.apply(change, |p| p.remove_member(group, id))?;
                applier.owned.members.remove(id);
            }
        }
    }
    applier.file.remove()?;
    Ok(applier.done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_last_say_so_as_the_operator_reads_them() {
        let lasting = [
            ProvisionError::Invalid(ValidationErrors(vec![])),
            ProvisionError::UnknownMember("alice".into()),
            ProvisionError::MissingPath(r"C:\data".into()),
            ProvisionError::FileInheritance { path: r"C:\data\f.txt".into() },
            ProvisionError::OwnedByAnother { group: "G".into(), owner: "u".into() },
            ProvisionError::NotOwnGroup { group: "Administratoren".into(), sid: "S-1-5-32-544".into() },
            ProvisionError::PrivilegedMember { member: "Admin".into(), sid: "S-1-5-21-1-2-3-500".into() },
        ];
        for error in lasting {
            let line = hostprocess_protocol::ResultLine::refused("provision", error.to_string());
            assert!(line.lasting_refusal(), "{error}");
        }
        let passing = [
            ProvisionError::Host { source: PlatformError::new("create", "G", "access denied"), done: vec![] },
            ProvisionError::Ownership { path: "/x".into(), detail: "disk full".into() },
        ];
        for error in passing {
            let line = hostprocess_protocol::ResultLine::refused("provision", error.to_string());
            assert!(!line.lasting_refusal(), "{error}");
        }
    }
}
