//! Every CEL rule of both CRDs, evaluated with kube-cel (the Kubernetes CEL libraries on top
//! of cel-rust): each rule must compile in the Kubernetes dialect, reject at least one object
//! with its message, and be evaluated and pass on at least one accepted object. The Rust-side
//! validation must give the same verdict and message on every case.

use std::collections::BTreeSet;

use hostprocess_crds::{HostGroup, HostTask, HostTaskGrant};
use kube::CustomResourceExt;
use kube::core::cel::{CompiledSchema, ScopeContext, Validator, WarningKind, analyze_rule, compile_schema};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Task,
    Group,
    Grant,
}

#[derive(Debug)]
struct Case {
    name: &'static str,
    kind: Kind,
    object: Value,
    old: Option<Value>,
    /// `None`: accepted; `Some(message)`: rejected with this message.
    reject: Option<&'static str>,
}

fn schema(kind: Kind) -> Value {
    let crd = match kind {
        Kind::Task => HostTask::crd(),
        Kind::Group => HostGroup::crd(),
        Kind::Grant => HostTaskGrant::crd(),
    };
    let schema = crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref());
    match schema.map(serde_json::to_value) {
        Some(Ok(value)) => value,
        other => panic!("{kind:?}: no schema in the CRD: {other:?}"),
    }
}

fn object(kind: Kind, spec: Value) -> Value {
    let mut base = match kind {
        Kind::Task => json!({
            "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTask",
            "metadata": {"name": "t", "namespace": "tasks"},
            "spec": {"script": "Write-Output 'hello'"},
        }),
        Kind::Group => json!({
            "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostGroup",
            "metadata": {"name": "g"},
            "spec": {"groupName": "ops-admins"},
        }),
        Kind::Grant => json!({
            "apiVersion": "hostprocess.dev/v1alpha1", "kind": "HostTaskGrant",
            "metadata": {"name": "tasks"},
            "spec": {},
        }),
    };
    json_patch::merge(&mut base, &json!({ "spec": spec }));
    base
}

fn accept(name: &'static str, kind: Kind, spec: Value) -> Case {
    Case { name, kind, object: object(kind, spec), old: None, reject: None }
}

fn reject(name: &'static str, kind: Kind, spec: Value, message: &'static str) -> Case {
    Case { name, kind, object: object(kind, spec), old: None, reject: Some(message) }
}

/// Cases for one string field: every good value is accepted, every bad one rejected with
/// its message.
fn string_field(
    kind: Kind,
    field: impl Fn(&str) -> Value,
    good: &[&'static str],
    bad: &[(&'static str, &'static str)],
) -> Vec<Case> {
    let mut cases: Vec<Case> = good
        .iter()
        .map(|v| Case { name: v, kind, object: object(kind, field(v)), old: None, reject: None })
        .collect();
    cases.extend(bad.iter().map(|(v, message)| Case {
        name: v,
        kind,
        object: object(kind, field(v)),
        old: None,
        reject: Some(message),
    }));
    cases
}

const CONCURRENCY: &str =
    "maxConcurrent must be a count of at least 1 or a percentage from 1% to 100%, like 5 or \"10%\"";
const FAILURE_BUDGET: &str =
    "maxFailures must be a count of at least 0 or a percentage from 0% to 100%, like 2 or \"5%\"";
const WINDOW_EMPTY: &str = "a maintenance window's start and end must differ (an end earlier than the start closes it the next day); for any time of day, leave windows out";
const BLACKOUT_ORDER: &str = "a blackout's to must be the same day as from or later";
const ASCII_GROUP: &str = "groupName must be printable ASCII: letters, digits, spaces and punctuation (no look-alike, invisible or control characters)";
const TRIMMED_GROUP: &str = "groupName must not start with a space or end with a dot or a space (Windows trims them, so it would name another group)";
const DEVICE_GROUP: &str = "groupName must not be a device name (CON, PRN, AUX, NUL, COM1-COM9, LPT1-LPT9), which Windows reserves in file names";
const BUILTIN_GROUP: &str = "groupName must not name a built-in or well-known Windows group (Administrators, Users, Remote Desktop Users, ...): a HostGroup manages a group of its own";
const BROAD_MEMBER: &str = r"member must not be a built-in, well-known or broad account (Everyone, Authenticated Users, Administrators, SYSTEM, NT AUTHORITY\..., BUILTIN\..., Domain Users, ...)";
const SYSTEM_TREE: &str = r"path must not be in the Windows or Program Files trees or the node-executor's C:\ProgramData\hostprocess-operator";

fn cases() -> Vec<Case> {
    use Kind::{Grant, Group, Task};
    let mut cases = vec![
        accept("script only", Task, json!({})),
        accept("command with args", Task, json!({"script": null, "command": ["C:\\a.exe"], "args": ["/q"]})),
        reject(
            "command and script",
            Task,
            json!({"command": ["C:\\a.exe"]}),
            "set exactly one of command (a program and its arguments) or script (inline PowerShell)",
        ),
        reject(
            "neither command nor script",
            Task,
            json!({"script": null}),
            "set exactly one of command (a program and its arguments) or script (inline PowerShell)",
        ),
        reject(
            "args with a script",
            Task,
            json!({"args": ["x"]}),
            "args apply only to command; give a script its values through env",
        ),
        reject(
            "empty program",
            Task,
            json!({"script": null, "command": [""]}),
            "command[0] must name the program to run",
        ),
        accept(
            "reboot for a Once task",
            Task,
            json!({"mode": "Once", "reboot": "IfRequired", "timeout": "1h"}),
        ),
        accept("agent without reboot or timeout", Task, json!({"mode": "Continuous"})),
        reject(
            "reboot for an agent",
            Task,
            json!({"mode": "Continuous", "reboot": "IfRequired"}),
            "reboot: IfRequired applies only to mode: Once (a Continuous agent cannot ask for a reboot)",
        ),
        reject(
            "timeout for an agent",
            Task,
            json!({"mode": "Continuous", "timeout": "1h"}),
            "timeout applies only to mode: Once (a Continuous agent is restarted, never timed out)",
        ),
        accept(
            "run as a HostGroup",
            Task,
            json!({"runAs": {"account": "HostGroup", "hostGroup": "log-readers"}}),
        ),
        reject(
            "HostGroup account without a group",
            Task,
            json!({"runAs": {"account": "HostGroup"}}),
            "set runAs.hostGroup (the name of a HostGroup) exactly when runAs.account is HostGroup",
        ),
        reject(
            "a group for a built-in account",
            Task,
            json!({"runAs": {"account": "System", "hostGroup": "log-readers"}}),
            "set runAs.hostGroup (the name of a HostGroup) exactly when runAs.account is HostGroup",
        ),
        reject(
            "a HostGroup reference that is no object name",
            Task,
            json!({"runAs": {"account": "HostGroup", "hostGroup": "Log_Readers"}}),
            "name must be a lowercase DNS subdomain: a-z, 0-9, '-' and '.', starting and ending with a letter or digit",
        ),
        accept("counts", Task, json!({"rollout": {"maxConcurrent": 5, "maxFailures": 0}})),
        accept("percentages", Task, json!({"rollout": {"maxConcurrent": "100%", "maxFailures": "0%"}})),
        accept("a count as a string", Task, json!({"rollout": {"maxConcurrent": "3", "maxFailures": "2"}})),
        reject("zero concurrency", Task, json!({"rollout": {"maxConcurrent": 0}}), CONCURRENCY),
        reject("zero percent concurrency", Task, json!({"rollout": {"maxConcurrent": "0%"}}), CONCURRENCY),
        reject("a percentage over 100", Task, json!({"rollout": {"maxFailures": "150%"}}), FAILURE_BUDGET),
        accept(
            "a schedule with a window across midnight and a blackout",
            Task,
            json!({"rollout": {"schedule": {"timeZone": "Europe/Berlin",
                "windows": [{"days": ["Saturday", "Sunday"], "start": "22:00", "end": "04:00"}],
                "blackouts": [{"from": "2026-12-24", "to": "2026-12-26"}, {"from": "2026-12-31", "to": "2026-12-31"}]}}}),
        ),
        accept("a rerun token", Task, json!({"rerun": "2026-12-02T13:00:00Z"})),
        accept("a retry token", Task, json!({"retryFailed": "CHG-4712"})),
        accept(
            "a health check",
            Task,
            json!({"healthCheck": {"command": ["powershell.exe", "-Command", "Get-HotFix KB5034439"], "timeout": "2m"}}),
        ),
        accept(
            "a concurrency group with a timeout",
            Task,
            json!({"timeout": "1h", "rollout": {"concurrencyGroup": "windows-installer"}}),
        ),
        accept(
            "a forced drain after 10 minutes and an hour to come back",
            Task,
            json!({"reboot": "IfRequired", "drain": {"timeout": "10m", "onTimeout": "Force"}, "rebootTimeout": "1h"}),
        ),
        reject(
            "a drain timeout of two days",
            Task,
            json!({"drain": {"timeout": "48h"}}),
            "a drain or reboot timeout must be between 1s and 24h",
        ),
        reject(
            "a reboot timeout in words",
            Task,
            json!({"rebootTimeout": "half an hour"}),
            "a drain or reboot timeout must be hours, minutes and seconds like 90s, 30m or 1h30m",
        ),
        accept(
            "a canary of one node soaking",
            Task,
            json!({"rollout": {"canary": {"nodes": 1, "soak": "30m"}}}),
        ),
        accept(
            "a canary of 5% promoted by hand",
            Task,
            json!({"rollout": {"canary": {"nodes": "5%", "promoted": "4ce9c19274"}}}),
        ),
        reject(
            "a canary of no node",
            Task,
            json!({"rollout": {"canary": {"nodes": 0}}}),
            "canary.nodes must be a count of at least 1 or a percentage from 1% to 100%, like 1 or \"5%\"",
        ),
        reject(
            "a canary soaking for a while",
            Task,
            json!({"rollout": {"canary": {"nodes": 1, "soak": "a while"}}}),
            "soak must be hours, minutes and seconds like 90s, 30m or 1h30m",
        ),
        reject(
            "a canary soaking for a month",
            Task,
            json!({"rollout": {"canary": {"nodes": 1, "soak": "720h"}}}),
            "soak must be between 1s and 168h (7 days)",
        ),
        accept(
            "zones by a custom label with a cap",
            Task,
            json!({"rollout": {"zones": {"topologyKey": "example.com/rack", "maxConcurrentPerZone": "34%"}}}),
        ),
        reject(
            "a zone cap of zero",
            Task,
            json!({"rollout": {"zones": {"maxConcurrentPerZone": 0}}}),
            "maxConcurrentPerZone must be a count of at least 1 or a percentage from 1% to 100%, like 2 or \"34%\"",
        ),
        reject(
            "a topology key with a space",
            Task,
            json!({"rollout": {"zones": {"topologyKey": "my zone"}}}),
            "topologyKey must be a label key like topology.kubernetes.io/zone (an optional DNS prefix and a slash, then letters, digits, - _ .)",
        ),
        reject(
            "a health check for an agent",
            Task,
            json!({"mode": "Continuous", "healthCheck": {"command": ["check.exe"]}}),
            "healthCheck applies only to mode: Once (a Continuous agent is judged by running)",
        ),
        reject(
            "a health check without a program",
            Task,
            json!({"healthCheck": {"command": [""]}}),
            "healthCheck.command[0] must name the program to run",
        ),
        reject(
            "a health check timeout in days",
            Task,
            json!({"healthCheck": {"command": ["check.exe"], "timeout": "1d"}}),
            "healthCheck.timeout must be hours, minutes and seconds like 90s, 5m or 1h",
        ),
        reject(
            "a health check that may take a day",
            Task,
            json!({"healthCheck": {"command": ["check.exe"], "timeout": "24h"}}),
            "healthCheck.timeout must be between 1s and 1h",
        ),
        reject(
            "a concurrency group without a timeout",
            Task,
            json!({"rollout": {"concurrencyGroup": "windows-installer"}}),
            "a task in a rollout.concurrencyGroup needs a timeout (like 1h), so that it cannot hold a node from the other tasks of its group for ever",
        ),
        reject(
            "a concurrency group for an agent",
            Task,
            json!({"mode": "Continuous", "rollout": {"concurrencyGroup": "windows-installer"}}),
            "rollout.concurrencyGroup applies only to mode: Once (a Continuous agent runs all the time and would hold its nodes for ever)",
        ),
        reject(
            "a concurrency group in capitals",
            Task,
            json!({"timeout": "1h", "rollout": {"concurrencyGroup": "Installers"}}),
            "concurrencyGroup must be a lowercase name of a-z, 0-9 and '-', starting and ending with a letter or digit, like windows-installer",
        ),
        reject(
            "a retry token with a slash",
            Task,
            json!({"retryFailed": "CHG/4712"}),
            "retryFailed must be letters, digits and . _ : + - (starting with a letter or digit), like 2026-12-02T13:00:00Z or CHG-4712",
        ),
        reject(
            "a rerun token with a space",
            Task,
            json!({"rerun": "after the fix"}),
            "rerun must be letters, digits and . _ : + - (starting with a letter or digit), like 2026-12-02T13:00:00Z or CHG-4711",
        ),
        reject(
            "a schedule for an agent",
            Task,
            json!({"mode": "Continuous", "rollout": {"schedule": {"timeZone": "UTC"}}}),
            "rollout.schedule applies only to mode: Once (a Continuous agent is restarted when it exits, whatever the time)",
        ),
        reject(
            "a window that opens and closes at once",
            Task,
            json!({"rollout": {"schedule": {"windows": [{"start": "22:00", "end": "22:00"}]}}}),
            WINDOW_EMPTY,
        ),
        reject(
            "a blackout that ends before it starts",
            Task,
            json!({"rollout": {"schedule": {"blackouts": [{"from": "2026-12-26", "to": "2026-12-24"}]}}}),
            BLACKOUT_ORDER,
        ),
        reject(
            "a window at 24:00",
            Task,
            json!({"rollout": {"schedule": {"windows": [{"start": "22:00", "end": "24:00"}]}}}),
            "a time of day must be HH:MM on a 24-hour clock, like 22:00 or 04:30",
        ),
        reject(
            "a blackout in month 13",
            Task,
            json!({"rollout": {"schedule": {"blackouts": [{"from": "2026-13-01", "to": "2026-13-02"}]}}}),
            "a date must be YYYY-MM-DD, like 2026-12-24",
        ),
        reject(
            "a time zone with a space",
            Task,
            json!({"rollout": {"schedule": {"timeZone": "Central European Time"}}}),
            "timeZone must be an IANA time zone name like Europe/Berlin, America/New_York or UTC",
        ),
        reject("a negative failure budget", Task, json!({"rollout": {"maxFailures": -1}}), FAILURE_BUDGET),
        reject("a word for a count", Task, json!({"rollout": {"maxFailures": "some"}}), FAILURE_BUDGET),
        accept("a script of 1000000 bytes", Task, json!({"script": "\u{1F600}".repeat(250_000)})),
        reject(
            "a script over 1000000 bytes in fewer than 262144 characters",
            Task,
            json!({"script": "\u{1F600}".repeat(250_001)}),
            "script must be at most 1000000 bytes in UTF-8 (the ConfigMap that carries it to the nodes holds at most 1 MiB); split it or ship it in an image",
        ),
        accept("a group's waves", Group, json!({"rollout": {"maxConcurrent": 1, "maxFailures": "10%"}})),
        reject(
            "a group rolled out to no node at a time",
            Group,
            json!({"rollout": {"maxConcurrent": 0}}),
            CONCURRENCY,
        ),
        reject(
            "a group's failure budget over 100%",
            Group,
            json!({"rollout": {"maxFailures": "150%"}}),
            FAILURE_BUDGET,
        ),
        accept(
            "a described group with grants and members",
            Group,
            json!({
                "description": "Reads the application logs",
                "grants": [
                    {"path": "C:\\ProgramData\\App\\logs", "rights": "Read"},
                    {"path": "D:\\data", "rights": "Modify", "appliesTo": "SubfoldersAndFilesOnly"},
                ],
                "members": ["alice", "CONTOSO\\bob"],
            }),
        ),
        reject(
            "the same path twice in another case",
            Group,
            json!({"grants": [
                {"path": "C:\\Data", "rights": "Read"},
                {"path": "c:\\data", "rights": "Modify"},
            ]}),
            "each path may appear in only one grant (paths are compared case-insensitively)",
        ),
        reject(
            "the same member twice in another case",
            Group,
            json!({"members": ["CONTOSO\\Bob", "contoso\\bob"]}),
            "each member may appear only once (names are compared case-insensitively)",
        ),
        reject(
            "a control character in the description",
            Group,
            json!({"description": "line\u{7}bell"}),
            "description must not contain control characters",
        ),
    ];
    let mut renamed = object(Group, json!({"groupName": "ops-admins-2"}));
    renamed["metadata"]["resourceVersion"] = json!("2");
    // A HostGroup's schedule is the same type: every schedule case holds for groups too.
    let schedules: Vec<Case> = cases
        .iter()
        .filter(|c| c.kind == Task && c.object["spec"]["mode"].is_null())
        .filter(|c| !c.object["spec"]["rollout"]["schedule"].is_null())
        .map(|c| Case {
            name: Box::leak(format!("{} (HostGroup)", c.name).into_boxed_str()),
            kind: Group,
            object: object(Group, json!({"rollout": {"schedule": c.object["spec"]["rollout"]["schedule"]}})),
            old: None,
            reject: c.reject,
        })
        .collect();
    cases.extend(schedules);
    cases.push(Case {
        name: "renaming the group",
        kind: Group,
        object: renamed,
        old: Some(object(Group, json!({}))),
        reject: Some("groupName cannot be changed; create a new HostGroup for another group name"),
    });
    cases.push(Case {
        name: "updating a group without renaming it",
        kind: Group,
        object: object(Group, json!({"description": "new"})),
        old: Some(object(Group, json!({}))),
        reject: None,
    });

    cases.extend(string_field(
        Group,
        |v| json!({"groupName": v}),
        &["Log Readers", "svc.patch-2024"],
        &[
            ("ops/admins", r#"groupName must not contain any of " / \ [ ] : ; | = , + * ? < > @"#),
            ("admins;calc", r#"groupName must not contain any of " / \ [ ] : ; | = , + * ? < > @"#),
            ("tab\there", ASCII_GROUP),
            // Cyrillic А and a zero-width space: look-alike and invisible.
            ("\u{410}dministrators", ASCII_GROUP),
            ("Admins\u{200B}", ASCII_GROUP),
            (". .", "groupName must not consist only of dots and spaces"),
            ("admins ", TRIMMED_GROUP),
            ("Administrators.", TRIMMED_GROUP),
            ("NUL", DEVICE_GROUP),
            ("com3.admins", DEVICE_GROUP),
            ("Administrators", BUILTIN_GROUP),
            ("remote desktop USERS", BUILTIN_GROUP),
            ("Everyone", BUILTIN_GROUP),
        ],
    ));
    cases.extend(string_field(
        Group,
        |v| json!({"members": [v]}),
        &[r"CONTOSO\svc-logship", "app-reader", r"CONTOSO\Domain Readers"],
        &[
            (
                r"a\b\c",
                r"member must be an account name like alice, CONTOSO\alice or NT AUTHORITY\NETWORK SERVICE",
            ),
            ("Everyone", BROAD_MEMBER),
            (r"NT AUTHORITY\NETWORK SERVICE", BROAD_MEMBER),
            (r"builtin\Administrators", BROAD_MEMBER),
            (r"CONTOSO\Domain Users", BROAD_MEMBER),
            ("SYSTEM", BROAD_MEMBER),
            (
                "bob\u{200B}",
                "member must not contain invisible characters or spaces other than the ASCII space",
            ),
            (
                "bob\u{A0}smith",
                "member must not contain invisible characters or spaces other than the ASCII space",
            ),
            ("alice@contoso.com", r#"member must not contain any of " / [ ] : ; | = , + * ? < > @"#),
            ("bob\u{1b}", "member must not contain control characters"),
            (r"CONTOSO\..", "member must not have a user part of only dots and spaces"),
            (r"CONTOSO \bob", "member must not have white space around its name or domain"),
        ],
    ));
    cases.extend(string_field(
        Group,
        |v| json!({"grants": [{"path": v, "rights": "ReadAndExecute"}]}),
        &[r"D:\data", r"C:\ProgramData\Contoso Agent\logs", r"C:\Users\Public\Reports", r"C:\ProgramData\hostprocess-operator-reports"],
        &[
            (r"logs\app", r"path must be absolute with a drive letter, like C:\ProgramData\MyApp (UNC, device and relative paths are not allowed)"),
            (r"\\server\share", r"path must be absolute with a drive letter, like C:\ProgramData\MyApp (UNC, device and relative paths are not allowed)"),
            (r"C:\logs/app", r"path must use backslashes (\), not forward slashes"),
            (r"C:\logs\\app", r"path must not contain empty segments (\\)"),
            (r"C:\logs\..\Windows", "path must not contain . or .. segments"),
            (r"C:\logs\*", "path must not contain wildcards (* ?), quotes, < > | or control characters"),
            (r"C:\logs\a.txt:hidden", "path must not contain ':' after the drive letter (alternate data streams are not supported)"),
            (r"C:\logs\AUX.log", "path must not name a DOS device (CON, PRN, AUX, NUL, COM1, LPT1, ...)"),
            (r"C:\logs.", "path segments must not end in a space or a dot (Windows would strip it)"),
            (r"C:\PROGRA~1\Contoso", "path must not use 8.3 short names (like PROGRA~1): write the long name"),
            (r"C:\", r"path must not be a volume root like C:\ (grant a folder of your own)"),
            (r"c:\windows", SYSTEM_TREE),
            (r"C:\Windows\System32\drivers", SYSTEM_TREE),
            (r"C:\Program Files\Contoso Agent\bin", SYSTEM_TREE),
            (r"C:\Program Files (x86)\App", SYSTEM_TREE),
            (r"C:\ProgramData\hostprocess-operator\tasks", SYSTEM_TREE),
            (r"C:\ProgramData", r"path must not be C:\ProgramData or C:\Users itself (grant a folder inside it)"),
            (r"c:\users", r"path must not be C:\ProgramData or C:\Users itself (grant a folder inside it)"),
        ],
    ));
    cases.extend(string_field(
        Group,
        |v| json!({"namespaces": [v]}),
        &["hostprocess-tasks", "a"],
        &[
            ("Tasks", "namespace must be a lowercase DNS label: a-z, 0-9 and '-', starting and ending with a letter or digit"),
            ("ops.tasks", "namespace must be a lowercase DNS label: a-z, 0-9 and '-', starting and ending with a letter or digit"),
        ],
    ));
    cases.extend(string_field(
        Grant,
        |v| json!({"maxConcurrent": v}),
        &["5", "10%", "100%"],
        &[("0", CONCURRENCY), ("101%", CONCURRENCY)],
    ));
    cases.extend(string_field(
        Task,
        |v| json!({"image": v}),
        &["mcr.microsoft.com/windows/nanoserver:ltsc2022", "registry.example/tools@sha256:0123abcd"],
        &[
            (
                " mcr.microsoft.com/windows/nanoserver:ltsc2022",
                "image must be an image reference without spaces, like mcr.microsoft.com/windows/nanoserver:ltsc2022",
            ),
            (
                "registry.example/tools:1\u{a0}",
                "image must be an image reference without spaces, like mcr.microsoft.com/windows/nanoserver:ltsc2022",
            ),
            (
                "registry.example/tools:1\n",
                "image must be an image reference without spaces, like mcr.microsoft.com/windows/nanoserver:ltsc2022",
            ),
        ],
    ));
    cases.extend(string_field(
        Task,
        |v| json!({"limits": {"memory": v}}),
        &["512Mi", "2Gi"],
        &[("512MB", "memory must be a whole number of Mi or Gi, like 512Mi or 4Gi")],
    ));
    cases.extend(string_field(
        Task,
        |v| json!({"limits": {"cpu": v}}),
        &["500m", "2"],
        &[("0.5", "cpu must be millicores like 500m or whole cores like 2")],
    ));
    cases.extend(string_field(
        Task,
        |v| json!({"timeout": v}),
        &["90s", "1h30m", "168h"],
        &[
            ("1d", "timeout must be hours, minutes and seconds like 90s, 30m or 1h30m"),
            ("0s", "timeout must be between 1s and 168h (7 days)"),
            ("200h", "timeout must be between 1s and 168h (7 days)"),
            ("100000h", "timeout must be between 1s and 168h (7 days)"),
        ],
    ));
    cases.extend(string_field(
        Task,
        |v| json!({"retries": {"backoff": v}}),
        &["10s", "1h"],
        &[
            ("10 s", "backoff must be hours, minutes and seconds like 90s, 30m or 1h30m"),
            ("2h", "backoff must be between 1s and 1h"),
        ],
    ));
    cases
}

/// Every `(rule, message)` in a schema.
fn rules(schema: &Value, out: &mut BTreeSet<(String, String)>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                for rule in rules {
                    out.insert((
                        rule["rule"].as_str().unwrap_or_default().into(),
                        rule["message"].as_str().unwrap_or_default().into(),
                    ));
                }
            }
            map.values().for_each(|v| rules(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| rules(v, out)),
        _ => {}
    }
}

/// The schema with one rule replaced by `false`.
fn with_rule_false(schema: &Value, target: &(String, String)) -> Value {
    let mut schema = schema.clone();
    fn walk(v: &mut Value, target: &(String, String)) {
        match v {
            Value::Object(map) => {
                if let Some(Value::Array(rules)) = map.get_mut("x-kubernetes-validations") {
                    for rule in rules {
                        if rule["rule"] == target.0.as_str() && rule["message"] == target.1.as_str() {
                            rule["rule"] = json!("false");
                        }
                    }
                }
                map.values_mut().for_each(|v| walk(v, target));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, target)),
            _ => {}
        }
    }
    walk(&mut schema, target);
    schema
}

fn failed_messages(schema: &Value, case: &Case) -> Vec<String> {
    match Validator::new().validate(schema, &case.object, case.old.as_ref()) {
        Ok(()) => vec![],
        Err(errors) => errors.iter().map(|e| e.message.clone()).collect(),
    }
}

fn typed<T: serde::de::DeserializeOwned>(value: &Value, case: &str) -> T {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{case}: does not parse: {e}"))
}

fn rust_messages(case: &Case) -> Vec<String> {
    let result = match case.kind {
        Kind::Task => typed::<HostTask>(&case.object, case.name).spec.validate(),
        Kind::Grant => typed::<HostTaskGrant>(&case.object, case.name).spec.validate(),
        Kind::Group => {
            let group: HostGroup = typed(&case.object, case.name);
            match &case.old {
                Some(old) => group.spec.validate_update(&typed::<HostGroup>(old, case.name).spec),
                None => group.spec.validate(),
            }
        }
    };
    result.err().map(|e| e.messages().iter().map(ToString::to_string).collect()).unwrap_or_default()
}

fn compiled_problems(node: &CompiledSchema, path: &str, out: &mut Vec<String>) {
    for error in node.compilation_errors() {
        out.push(format!("{path}: {error}"));
    }
    for result in node.validations.iter().flatten() {
        // kube-cel's scope check takes the variables bound by macros (`all(g, …)`) for free
        // variables; the evaluation test below proves every rule resolves its variables, so
        // only cost and bounds warnings count here.
        let warnings = analyze_rule(&result.rule.rule, node, ScopeContext::CrdValidation);
        for warning in warnings.into_iter().filter(|w| w.kind != WarningKind::WrongScope) {
            out.push(format!("{path}: {}: {}", warning.rule, warning.message));
        }
    }
    for (name, child) in &node.properties {
        compiled_problems(child, &format!("{path}.{name}"), out);
    }
    if let Some(items) = &node.items {
        compiled_problems(items, &format!("{path}[]"), out);
    }
}

#[test]
fn every_rule_compiles_in_the_kubernetes_dialect_within_budget() {
    for kind in [Kind::Task, Kind::Group, Kind::Grant] {
        let mut problems = vec![];
        compiled_problems(&compile_schema(&schema(kind)), "", &mut problems);
        assert!(problems.is_empty(), "{kind:?}: {problems:#?}");
    }
}

#[test]
fn every_rule_rejects_and_accepts_and_rust_agrees() {
    let schemas = [Kind::Task, Kind::Group, Kind::Grant].map(|kind| (kind, schema(kind)));
    let cases = cases();
    for (kind, schema) in &schemas {
        let mut all = BTreeSet::new();
        rules(schema, &mut all);
        let kind_cases: Vec<&Case> = cases.iter().filter(|c| c.kind == *kind).collect();

        for case in &kind_cases {
            let cel = failed_messages(schema, case);
            let rust = rust_messages(case);
            match case.reject {
                None => {
                    assert!(cel.is_empty(), "{}: CEL refused an accepted object: {cel:?}", case.name);
                    assert!(rust.is_empty(), "{}: Rust refused an accepted object: {rust:?}", case.name);
                }
                Some(message) => {
                    assert!(
                        cel.iter().any(|m| m == message),
                        "{}: CEL said {cel:?}, expected {message:?}",
                        case.name
                    );
                    assert!(
                        rust.iter().any(|m| m == message),
                        "{}: Rust said {rust:?}, expected {message:?}",
                        case.name
                    );
                }
            }
        }

        for rule in &all {
            let rejects = kind_cases.iter().any(|c| c.reject == Some(rule.1.as_str()));
            assert!(rejects, "{kind:?}: no case is rejected by rule {rule:?}");
            let disabled = with_rule_false(schema, rule);
            let evaluated_and_passed = kind_cases
                .iter()
                .filter(|c| c.reject.is_none())
                .any(|c| failed_messages(&disabled, c).contains(&rule.1));
            assert!(evaluated_and_passed, "{kind:?}: no accepted case evaluates rule {rule:?}");
        }
    }
}
