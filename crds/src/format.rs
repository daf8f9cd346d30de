//! String formats shared by the CRD schema and the Rust-side checks.
//!
//! Each format is one table of rules. The same table produces the schema of the field
//! (`maxLength` + CEL `x-kubernetes-validations`, enforced by the API server) and the Rust
//! check that the operator and the node-executor run before they act, so the two can never
//! drift apart: a test evaluates every CEL rule and compares its verdict with the Rust one.

use std::sync::OnceLock;

use regex::Regex;
use schemars::Schema;
use serde_json::{Value, json};

/// One rule of a string format.
#[derive(Debug)]
pub enum Rule {
    /// The value must match this RE2-compatible regular expression.
    Matches(&'static str, &'static str),
    /// The value must not match this RE2-compatible regular expression.
    Excludes(&'static str, &'static str),
    /// A CEL expression over `self` and the Rust function that decides the same.
    Expr { cel: &'static str, holds: fn(&str) -> bool, message: &'static str },
}

impl Rule {
    fn pattern(&self) -> Option<&'static str> {
        match self {
            Rule::Matches(pattern, _) | Rule::Excludes(pattern, _) => Some(pattern),
            Rule::Expr { .. } => None,
        }
    }

    /// The message the API server and the Rust check both report.
    pub fn message(&self) -> &'static str {
        match self {
            Rule::Matches(_, message) | Rule::Excludes(_, message) | Rule::Expr { message, .. } => message,
        }
    }

    /// The CEL expression for this rule, as it appears in `x-kubernetes-validations`.
    pub fn cel(&self) -> String {
        match self {
            Rule::Matches(pattern, _) => format!("self.matches({})", cel_string_literal(pattern)),
            Rule::Excludes(pattern, _) => format!("!self.matches({})", cel_string_literal(pattern)),
            Rule::Expr { cel, .. } => (*cel).to_string(),
        }
    }
}

/// A named string format: length bounds plus rules, each with the message that says what to fix.
#[derive(Debug)]
pub struct Format {
    /// What the value is, for messages ("groupName", "path", …).
    pub what: &'static str,
    pub min_len: usize,
    pub max_len: usize,
    pub rules: &'static [Rule],
    compiled: OnceLock<Vec<Option<Regex>>>,
}

/// Why a value does not fit its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} must be at least {min} characters long")]
    TooShort { what: &'static str, min: usize },
    #[error("{what} must be at most {max} characters long (it has {len})")]
    TooLong { what: &'static str, max: usize, len: usize },
    #[error("{message}")]
    Rule { message: &'static str },
    #[error("internal error: the pattern {pattern:?} of {what} does not compile")]
    BadPattern { what: &'static str, pattern: &'static str },
}

impl Format {
    pub const fn new(what: &'static str, min_len: usize, max_len: usize, rules: &'static [Rule]) -> Self {
        Format { what, min_len, max_len, rules, compiled: OnceLock::new() }
    }

    /// Checks a value; returns the first rule it breaks, in table order (the same order the
    /// API server lists its messages in).
    pub fn check(&self, value: &str) -> Result<(), FormatError> {
        let len = value.chars().count();
        if len == 0 && self.min_len > 0 {
            return Err(FormatError::Empty { what: self.what });
        }
        if len < self.min_len {
            return Err(FormatError::TooShort { what: self.what, min: self.min_len });
        }
        if len > self.max_len {
            return Err(FormatError::TooLong { what: self.what, max: self.max_len, len });
        }
        let compiled = self.compiled.get_or_init(|| {
            self.rules.iter().map(|rule| rule.pattern().and_then(|p| Regex::new(p).ok())).collect()
        });
        for (rule, regex) in self.rules.iter().zip(compiled) {
            let ok = match (rule, regex) {
                (Rule::Matches(..), Some(regex)) => regex.is_match(value),
                (Rule::Excludes(..), Some(regex)) => !regex.is_match(value),
                (Rule::Expr { holds, .. }, _) => holds(value),
                (Rule::Matches(pattern, _) | Rule::Excludes(pattern, _), None) => {
                    return Err(FormatError::BadPattern { what: self.what, pattern });
                }
            };
            if !ok {
                return Err(FormatError::Rule { message: rule.message() });
            }
        }
        Ok(())
    }

    /// The OpenAPI schema of a field of this format (its description comes from the field's
    /// doc comment).
    pub fn schema(&self) -> Schema {
        let rules: Vec<Value> =
            self.rules.iter().map(|rule| json!({ "rule": rule.cel(), "message": rule.message() })).collect();
        let mut schema = json!({
            "type": "string",
            "minLength": self.min_len,
            "maxLength": self.max_len,
        });
        if !rules.is_empty() {
            schema["x-kubernetes-validations"] = Value::Array(rules);
        }
        // A JSON object always converts.
        Schema::try_from(schema).unwrap_or_default()
    }
}

/// Quotes a regular expression as a CEL single-quoted string literal.
fn cel_string_literal(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 2);
    out.push('\'');
    for c in pattern.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A Windows local group name, as it must also pass Kubernetes' validation of
/// `runAsUserName` (where a HostTask running as the group puts it): at most 104 characters.
/// Printable ASCII only, so that no look-alike (Cyrillic `А` for `A`) or invisible character
/// passes for another name, and never a built-in or well-known group: a HostGroup manages a
/// group of its own. (Built-in names are localized on non-English Windows; the executor's check
/// by SID on the node is what holds there.)
pub static GROUP_NAME: Format = Format::new(
    "groupName",
    1,
    104,
    &[
        Rule::Excludes(
            r#"["/\\\[\]:;|=,+*?<>@]"#,
            r#"groupName must not contain any of " / \ [ ] : ; | = , + * ? < > @"#,
        ),
        Rule::Matches(
            r"^[ -~]+$",
            "groupName must be printable ASCII: letters, digits, spaces and punctuation (no look-alike, invisible or control characters)",
        ),
        Rule::Excludes(r"^[. ]+$", "groupName must not consist only of dots and spaces"),
        Rule::Excludes(
            r"^ |[. ]$",
            "groupName must not start with a space or end with a dot or a space (Windows trims them, so it would name another group)",
        ),
        Rule::Excludes(
            r"(?i)^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\.|$)",
            "groupName must not be a device name (CON, PRN, AUX, NUL, COM1-COM9, LPT1-LPT9), which Windows reserves in file names",
        ),
        Rule::Excludes(
            BUILTIN_GROUPS,
            "groupName must not name a built-in or well-known Windows group (Administrators, Users, Remote Desktop Users, ...): a HostGroup manages a group of its own",
        ),
    ],
);

/// The built-in local groups of Windows Server (the BUILTIN domain, S-1-5-32-*) and the
/// well-known principals a group could be confused with, case-insensitively.
const BUILTIN_GROUPS: &str = r"(?i)^(access control assistance operators|account operators|administrators|backup operators|certificate service dcom access|cryptographic operators|device owners|distributed com users|event log readers|guests|hyper-v administrators|iis_iusrs|incoming forest trust builders|network configuration operators|openssh users|performance log users|performance monitor users|power users|pre-windows 2000 compatible access|print operators|rds endpoint servers|rds management servers|rds remote access servers|remote desktop users|remote management users|replicator|server operators|storage replica administrators|system managed accounts group|terminal server license servers|users|windows authorization access group|everyone|authenticated users|system|local service|network service|interactive|network|anonymous logon|domain admins|domain users|domain computers|domain guests|enterprise admins|schema admins)$";

/// An account to add to a local group: `name` or `DOMAIN\name`.
pub static ACCOUNT_NAME: Format = Format::new(
    "member",
    1,
    256 + 1 + 104,
    &[
        Rule::Matches(
            r"^([^\\]+\\)?[^\\]+$",
            r"member must be an account name like alice, CONTOSO\alice or NT AUTHORITY\NETWORK SERVICE",
        ),
        Rule::Excludes(
            r#"["/\[\]:;|=,+*?<>@]"#,
            r#"member must not contain any of " / [ ] : ; | = , + * ? < > @"#,
        ),
        Rule::Excludes(r"[[:cntrl:]]", "member must not contain control characters"),
        Rule::Excludes(
            r"[\p{Cf}\p{Zl}\p{Zp}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{202F}\x{205F}\x{3000}]",
            "member must not contain invisible characters or spaces other than the ASCII space",
        ),
        Rule::Excludes(r"(^|\\)[. ]+$", "member must not have a user part of only dots and spaces"),
        Rule::Excludes(
            r"^[ \t]|[ \t]$|[ \t]\\|\\[ \t]",
            "member must not have white space around its name or domain",
        ),
        Rule::Excludes(
            BROAD_MEMBERS,
            r"member must not be a built-in, well-known or broad account (Everyone, Authenticated Users, Administrators, SYSTEM, NT AUTHORITY\..., BUILTIN\..., Domain Users, ...)",
        ),
    ],
);

/// Accounts that are everyone, every user of a kind, or already all-powerful: a member of a
/// HostGroup gets its grants on every node, so none of these may be one.
const BROAD_MEMBERS: &str = r"(?i)^((nt authority|builtin|nt service|nt virtual machine|window manager|font driver host)\\.*|([^\\]*\\)?(everyone|authenticated users|administrators|administrator|users|guests|system|local system|local service|network service|interactive|network|batch|service|anonymous logon|this organization|domain admins|domain users|domain computers|domain controllers|domain guests|enterprise admins|schema admins))$";

/// An absolute local Windows path, for file-system grants. Everything Windows would
/// reinterpret (relative parts, device names, streams, trailing dots) is refused, so the
/// path that is granted is exactly the path written.
pub static WINDOWS_PATH: Format = Format::new(
    "path",
    3,
    260,
    &[
        Rule::Matches(
            r"^[A-Za-z]:\\",
            r"path must be absolute with a drive letter, like C:\ProgramData\MyApp (UNC, device and relative paths are not allowed)",
        ),
        Rule::Excludes(r"/", r"path must use backslashes (\), not forward slashes"),
        Rule::Excludes(r"\\\\", r"path must not contain empty segments (\\)"),
        Rule::Excludes(r"(^|\\)\.\.?(\\|$)", "path must not contain . or .. segments"),
        Rule::Excludes(
            r#"[*?"<>|]|[[:cntrl:]]"#,
            r#"path must not contain wildcards (* ?), quotes, < > | or control characters"#,
        ),
        Rule::Excludes(
            r"^.:.*:",
            "path must not contain ':' after the drive letter (alternate data streams are not supported)",
        ),
        Rule::Excludes(
            r"(?i)(^|\\)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\.[^\\]*)?(\\|$)",
            "path must not name a DOS device (CON, PRN, AUX, NUL, COM1, LPT1, ...)",
        ),
        Rule::Excludes(
            r"[^:][. ](\\|$)",
            "path segments must not end in a space or a dot (Windows would strip it)",
        ),
        Rule::Excludes(r"~[0-9]", "path must not use 8.3 short names (like PROGRA~1): write the long name"),
        Rule::Excludes(r"^.:\\$", r"path must not be a volume root like C:\ (grant a folder of your own)"),
        Rule::Excludes(
            r"(?i)^.:\\(windows|program files|program files \(x86\)|programdata\\hostprocess-operator)(\\|$)",
            r"path must not be in the Windows or Program Files trees or the node-executor's C:\ProgramData\hostprocess-operator",
        ),
        Rule::Excludes(
            r"(?i)^.:\\(programdata|users)$",
            r"path must not be C:\ProgramData or C:\Users itself (grant a folder inside it)",
        ),
    ],
);

/// The image of a task's payload: the API server refuses a pod whose image has leading or
/// trailing whitespace, and no image reference holds any, so none is accepted. The class is
/// Unicode's White_Space spelled out: `\s` is ASCII-only in the API server's RE2 and Unicode in
/// Rust's regex, and the two checks must agree.
pub static IMAGE: Format = Format::new(
    "image",
    1,
    512,
    &[Rule::Excludes(
        r"[\t\n\x{0B}\f\r\x{85}\p{Z}]",
        "image must be an image reference without spaces, like mcr.microsoft.com/windows/nanoserver:ltsc2022",
    )],
);

/// A memory size for the payload's job object.
pub static MEMORY: Format = Format::new(
    "memory",
    3,
    10,
    &[Rule::Matches(
        r"^[1-9][0-9]{0,6}(Mi|Gi)$",
        "memory must be a whole number of Mi or Gi, like 512Mi or 4Gi",
    )],
);

/// A CPU amount for the payload's job object.
pub static CPU: Format = Format::new(
    "cpu",
    1,
    8,
    &[Rule::Matches(
        r"^([1-9][0-9]{0,5}m|[1-9][0-9]{0,2})$",
        "cpu must be millicores like 500m or whole cores like 2",
    )],
);

/// The shape of a duration; its range is a rule of its own, so `100000h` is told its range, not
/// its shape. The digit counts keep every value within what CEL's `duration()` can hold.
const DURATION_PATTERN: &str = r"^([0-9]{1,6}h)?([0-9]{1,8}m)?([0-9]{1,9}s)?$";

fn duration_within(value: &str, max: std::time::Duration) -> bool {
    // A value of the wrong shape is reported by the pattern rule, not twice.
    match crate::units::parse_duration(value) {
        Some(d) => d >= std::time::Duration::from_secs(1) && d <= max,
        None => true,
    }
}

/// How long a `Once` payload may run before its whole job is killed: 1s to 7 days.
pub static TIMEOUT: Format = Format::new(
    "timeout",
    2,
    16,
    &[
        Rule::Matches(DURATION_PATTERN, "timeout must be hours, minutes and seconds like 90s, 30m or 1h30m"),
        Rule::Expr {
            cel: "!self.matches('^([0-9]{1,6}h)?([0-9]{1,8}m)?([0-9]{1,9}s)?$') || (duration(self) >= duration('1s') && duration(self) <= duration('168h'))",
            holds: |v| duration_within(v, std::time::Duration::from_secs(168 * 3600)),
            message: "timeout must be between 1s and 168h (7 days)",
        },
    ],
);

/// How long a drain or a reboot may take: 1s to 24 hours.
pub static STEP_TIMEOUT: Format = Format::new(
    "step timeout",
    2,
    16,
    &[
        Rule::Matches(
            DURATION_PATTERN,
            "a drain or reboot timeout must be hours, minutes and seconds like 90s, 30m or 1h30m",
        ),
        Rule::Expr {
            cel: "!self.matches('^([0-9]{1,6}h)?([0-9]{1,8}m)?([0-9]{1,9}s)?$') || (duration(self) >= duration('1s') && duration(self) <= duration('24h'))",
            holds: |v| duration_within(v, std::time::Duration::from_secs(24 * 3600)),
            message: "a drain or reboot timeout must be between 1s and 24h",
        },
    ],
);

/// How long a health check may run: 1s to 1 hour.
pub static HEALTH_CHECK_TIMEOUT: Format = Format::new(
    "health check timeout",
    2,
    16,
    &[
        Rule::Matches(
            DURATION_PATTERN,
            "healthCheck.timeout must be hours, minutes and seconds like 90s, 5m or 1h",
        ),
        Rule::Expr {
            cel: "!self.matches('^([0-9]{1,6}h)?([0-9]{1,8}m)?([0-9]{1,9}s)?$') || (duration(self) >= duration('1s') && duration(self) <= duration('1h'))",
            holds: |v| duration_within(v, std::time::Duration::from_secs(3600)),
            message: "healthCheck.timeout must be between 1s and 1h",
        },
    ],
);

/// How long a canary soaks before the rest of the fleet: 1s to 7 days.
pub static SOAK: Format = Format::new(
    "soak",
    2,
    16,
    &[
        Rule::Matches(DURATION_PATTERN, "soak must be hours, minutes and seconds like 90s, 30m or 1h30m"),
        Rule::Expr {
            cel: "!self.matches('^([0-9]{1,6}h)?([0-9]{1,8}m)?([0-9]{1,9}s)?$') || (duration(self) >= duration('1s') && duration(self) <= duration('168h'))",
            holds: |v| duration_within(v, std::time::Duration::from_secs(168 * 3600)),
            message: "soak must be between 1s and 168h (7 days)",
        },
    ],
);

/// The first wait between two attempts on a node (doubled each time): 1s to 1 hour.
pub static BACKOFF: Format = Format::new(
    "backoff",
    2,
    16,
    &[
        Rule::Matches(DURATION_PATTERN, "backoff must be hours, minutes and seconds like 90s, 30m or 1h30m"),
        Rule::Expr {
            cel: "!self.matches('^([0-9]{1,6}h)?([0-9]{1,8}m)?([0-9]{1,9}s)?$') || (duration(self) >= duration('1s') && duration(self) <= duration('1h'))",
            holds: |v| duration_within(v, std::time::Duration::from_secs(3600)),
            message: "backoff must be between 1s and 1h",
        },
    ],
);

/// A time of day on a 24-hour clock, like `22:00`: when a maintenance window opens or closes.
pub static CLOCK_TIME: Format = Format::new(
    "time of day",
    5,
    5,
    &[Rule::Matches(
        r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        "a time of day must be HH:MM on a 24-hour clock, like 22:00 or 04:30",
    )],
);

/// A calendar date, like `2026-12-24`: a blackout day.
pub static DATE: Format = Format::new(
    "date",
    10,
    10,
    &[Rule::Matches(
        r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$",
        "a date must be YYYY-MM-DD, like 2026-12-24",
    )],
);

/// An IANA time zone name, like `Europe/Berlin` or `UTC` (that it exists is checked by the
/// operator against its time zone database).
pub static TIME_ZONE: Format = Format::new(
    "time zone",
    1,
    64,
    &[Rule::Matches(
        r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$",
        "timeZone must be an IANA time zone name like Europe/Berlin, America/New_York or UTC",
    )],
);

/// A node label key, like `topology.kubernetes.io/zone`: an optional DNS-subdomain prefix and a
/// name.
pub static LABEL_KEY: Format = Format::new(
    "label key",
    1,
    317,
    &[Rule::Matches(
        r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
        "topologyKey must be a label key like topology.kubernetes.io/zone (an optional DNS prefix and a slash, then letters, digits, - _ .)",
    )],
);

/// `rerun`: a token whose change runs a task again, like `2026-12-02T13:00:00Z` or `CHG-4711`.
pub static RERUN_TOKEN: Format = Format::new(
    "rerun",
    1,
    63,
    &[Rule::Matches(
        r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$",
        "rerun must be letters, digits and . _ : + - (starting with a letter or digit), like 2026-12-02T13:00:00Z or CHG-4711",
    )],
);

/// `rollout.concurrencyGroup`: a DNS label, like `windows-installer`.
pub static CONCURRENCY_GROUP: Format = Format::new(
    "concurrencyGroup",
    1,
    63,
    &[Rule::Matches(
        r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        "concurrencyGroup must be a lowercase name of a-z, 0-9 and '-', starting and ending with a letter or digit, like windows-installer",
    )],
);

/// `retryFailed`: a token whose change retries the nodes that failed, like `CHG-4712`.
pub static RETRY_TOKEN: Format = Format::new(
    "retryFailed",
    1,
    63,
    &[Rule::Matches(
        r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$",
        "retryFailed must be letters, digits and . _ : + - (starting with a letter or digit), like 2026-12-02T13:00:00Z or CHG-4712",
    )],
);

/// The name of an object (DNS-1123 subdomain), e.g. the HostGroup a task runs as.
pub static OBJECT_NAME: Format = Format::new(
    "name",
    1,
    253,
    &[Rule::Matches(
        r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        "name must be a lowercase DNS subdomain: a-z, 0-9, '-' and '.', starting and ending with a letter or digit",
    )],
);

/// The name of a namespace (a DNS label), e.g. one a HostGroup is offered to.
pub static NAMESPACE_NAME: Format = Format::new(
    "namespace",
    1,
    63,
    &[Rule::Matches(
        r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        "namespace must be a lowercase DNS label: a-z, 0-9 and '-', starting and ending with a letter or digit",
    )],
);

/// Free text shown on the host (a group's description).
pub static DESCRIPTION: Format = Format::new(
    "description",
    0,
    256,
    &[Rule::Excludes(r"[[:cntrl:]]", "description must not contain control characters")],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_compiles() {
        for format in [
            &GROUP_NAME,
            &ACCOUNT_NAME,
            &WINDOWS_PATH,
            &MEMORY,
            &CPU,
            &TIMEOUT,
            &BACKOFF,
            &OBJECT_NAME,
            &NAMESPACE_NAME,
            &DESCRIPTION,
        ] {
            for pattern in format.rules.iter().filter_map(Rule::pattern) {
                assert!(Regex::new(pattern).is_ok(), "{}: {pattern}", format.what);
            }
        }
    }

    #[test]
    fn cel_literal_escapes_backslashes_and_quotes() {
        assert_eq!(cel_string_literal(r"a\b'c"), r"'a\\b\'c'");
        assert_eq!(Rule::Excludes(r"\\", "m").cel(), r"!self.matches('\\\\')");
    }

    #[test]
    fn group_names() {
        for good in ["ops-admins", "Log Readers", "svc_patch.2024", "a", "console", "COM10", "nullers"] {
            assert_eq!(GROUP_NAME.check(good), Ok(()), "{good}");
        }
        let cases = [
            ("", "groupName must not be empty"),
            ("ops/admins", "must not contain any of"),
            ("ops\\admins", "must not contain any of"),
            ("admins;calc.exe", "must not contain any of"),
            ("a&b|c", "must not contain any of"),
            ("x@y", "must not contain any of"),
            ("..  .", "only of dots and spaces"),
            (" admins", "start with a space or end with a dot or a space"),
            ("admins ", "start with a space or end with a dot or a space"),
            ("Administrators.", "start with a space or end with a dot or a space"),
            ("NUL", "device name"),
            ("com1", "device name"),
            ("Lpt9.group", "device name"),
            ("admins\n", "printable ASCII"),
            ("\u{410}dmins", "printable ASCII"),
            ("ADMINISTRATORS", "built-in or well-known"),
            ("Hyper-V Administrators", "built-in or well-known"),
        ];
        for (bad, expected) in cases {
            let err = GROUP_NAME.check(bad).expect_err(bad).to_string();
            assert!(err.contains(expected), "{bad:?}: {err}");
        }
        let long = "g".repeat(105);
        assert_eq!(
            GROUP_NAME.check(&long).map_err(|e| e.to_string()),
            Err("groupName must be at most 104 characters long (it has 105)".to_string())
        );
    }

    #[test]
    fn windows_paths() {
        for good in [
            r"C:\ProgramData\MyApp",
            r"d:\logs\app.v2\current",
            r"C:\Windows-Tools\agent",
            r"C:\data\console.log",
        ] {
            assert_eq!(WINDOWS_PATH.check(good), Ok(()), "{good}");
        }
        let cases = [
            (r"ProgramData\MyApp", "absolute with a drive letter"),
            (r"\\server\share\x", "absolute with a drive letter"),
            (r"\\?\C:\x", "absolute with a drive letter"),
            (r"C:ProgramData", "absolute with a drive letter"),
            ("C:/ProgramData", "absolute with a drive letter"),
            (r"C:\ProgramData/x", "forward slashes"),
            (r"C:\a\\b", "empty segments"),
            (r"C:\ProgramData\..\Windows", ". or .. segments"),
            (r"C:\a\.", ". or .. segments"),
            (r"C:\logs\*.log", "wildcards"),
            (r#"C:\a" & del C:\x"#, "wildcards"),
            (r"C:\a|calc", "wildcards"),
            (r"C:\data\file.txt:secret", "alternate data streams"),
            (r"C:\data\NUL", "DOS device"),
            (r"C:\data\com1.txt", "DOS device"),
            (r"C:\data\dir.", "end in a space or a dot"),
            (r"C:\data\dir \x", "end in a space or a dot"),
            (r"C:\", "volume root"),
            (r"C:\Program Files\Contoso Agent", "Program Files trees"),
            (r"C:\WINDOWS\system32", "Windows or Program Files"),
            (r"C:\ProgramData\hostprocess-operator", "node-executor's"),
            (r"C:\Users", "itself"),
            (r"C:\PROGRA~2\App", "8.3 short names"),
        ];
        for (bad, expected) in cases {
            let err = WINDOWS_PATH.check(bad).expect_err(bad).to_string();
            assert!(err.contains(expected), "{bad:?}: {err}");
        }
        assert!(WINDOWS_PATH.check(&format!(r"C:\{}", "a".repeat(260))).is_err());
    }

    #[test]
    fn account_names() {
        for good in ["alice", r"CONTOSO\alice", "svc-patch$", r"CONTOSO\Domain Readers", "systemd-user"] {
            assert_eq!(ACCOUNT_NAME.check(good), Ok(()), "{good}");
        }
        for bad in [
            r"a\b\c",
            r"\alice",
            r"CONTOSO\",
            "alice@contoso.com",
            r"CONTOSO\..",
            " alice",
            "a;b",
            r"NT AUTHORITY\NETWORK SERVICE",
            "everyone",
            r"CONTOSO\Domain Admins",
            "alice\u{2060}",
        ] {
            assert!(ACCOUNT_NAME.check(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quantities_and_durations() {
        for good in ["512Mi", "4Gi", "1Mi"] {
            assert_eq!(MEMORY.check(good), Ok(()), "{good}");
        }
        for bad in ["512", "0Mi", "1.5Gi", "512MB", "-1Gi"] {
            assert!(MEMORY.check(bad).is_err(), "{bad}");
        }
        for good in ["500m", "2", "1500m"] {
            assert_eq!(CPU.check(good), Ok(()), "{good}");
        }
        for bad in ["0", "0.5", "500M", "m"] {
            assert!(CPU.check(bad).is_err(), "{bad}");
        }
        for good in ["90s", "30m", "1h30m", "2h", "1h0m5s", "168h"] {
            assert_eq!(TIMEOUT.check(good), Ok(()), "{good}");
        }
        for bad in ["1d", "30", "1.5h", "30s1m"] {
            let err = TIMEOUT.check(bad).expect_err(bad).to_string();
            assert!(err.contains("like 90s"), "{bad}: {err}");
        }
        // A value of the right shape is told its range, however large (not to look "like 90s").
        for out_of_range in ["0s", "169h", "0h0m", "100000h", "99999999m"] {
            let err = TIMEOUT.check(out_of_range).expect_err(out_of_range).to_string();
            assert_eq!(err, "timeout must be between 1s and 168h (7 days)");
        }
        assert!(BACKOFF.check("2h").is_err());
        assert_eq!(BACKOFF.check("45m"), Ok(()));
    }
}
