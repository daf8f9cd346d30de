//! The messages of the rules that are not plain string formats. The CRD's CEL rules and the
//! Rust-side checks report the same text, so a user sees one wording wherever a value is refused.

pub const COMMAND_OR_SCRIPT: &str =
    "set exactly one of command (a program and its arguments) or script (inline PowerShell)";
/// The script travels in a ConfigMap, which holds at most 1 MiB.
pub const SCRIPT_BYTES: &str = "script must be at most 1000000 bytes in UTF-8 (the ConfigMap that carries it to the nodes holds at most 1 MiB); split it or ship it in an image";
pub const ARGS_NEED_COMMAND: &str = "args apply only to command; give a script its values through env";
pub const COMMAND_EMPTY: &str = "command[0] must name the program to run";
pub const REBOOT_ONLY_ONCE: &str =
    "reboot: IfRequired applies only to mode: Once (a Continuous agent cannot ask for a reboot)";
pub const TIMEOUT_ONLY_ONCE: &str =
    "timeout applies only to mode: Once (a Continuous agent is restarted, never timed out)";
pub const HOST_GROUP_REF: &str =
    "set runAs.hostGroup (the name of a HostGroup) exactly when runAs.account is HostGroup";
pub const MAX_CONCURRENT: &str =
    "maxConcurrent must be a count of at least 1 or a percentage from 1% to 100%, like 5 or \"10%\"";
pub const MAX_FAILURES: &str =
    "maxFailures must be a count of at least 0 or a percentage from 0% to 100%, like 2 or \"5%\"";
pub const GROUP_NAME_IMMUTABLE: &str =
    "groupName cannot be changed; create a new HostGroup for another group name";
pub const GRANT_PATHS_UNIQUE: &str =
    "each path may appear in only one grant (paths are compared case-insensitively)";
pub const MEMBERS_UNIQUE: &str = "each member may appear only once (names are compared case-insensitively)";
pub const FILES_ONLY_THIS_FOLDER: &str = "appliesTo other than ThisFolderSubfoldersAndFiles needs the path to be a folder; for a file use ThisFolderOnly";
pub const WINDOW_EMPTY: &str = "a maintenance window's start and end must differ (an end earlier than the start closes it the next day); for any time of day, leave windows out";
pub const BLACKOUT_ORDER: &str = "a blackout's to must be the same day as from or later";
pub const SCHEDULE_ONLY_ONCE: &str = "rollout.schedule applies only to mode: Once (a Continuous agent is restarted when it exits, whatever the time)";
pub const MAX_CONCURRENT_PER_ZONE: &str =
    "maxConcurrentPerZone must be a count of at least 1 or a percentage from 1% to 100%, like 2 or \"34%\"";
pub const CANARY_NODES: &str =
    "canary.nodes must be a count of at least 1 or a percentage from 1% to 100%, like 1 or \"5%\"";
pub const CONCURRENCY_GROUP_ONLY_ONCE: &str = "rollout.concurrencyGroup applies only to mode: Once (a Continuous agent runs all the time and would hold its nodes for ever)";
pub const CONCURRENCY_GROUP_TIMEOUT: &str = "a task in a rollout.concurrencyGroup needs a timeout (like 1h), so that it cannot hold a node from the other tasks of its group for ever";
pub const HEALTH_CHECK_ONLY_ONCE: &str =
    "healthCheck applies only to mode: Once (a Continuous agent is judged by running)";
pub const HEALTH_CHECK_EMPTY: &str = "healthCheck.command[0] must name the program to run";
