//! Rust-side validation of HostTask and HostGroup specs.
//!
//! The API server enforces the same rules from the CRD schema. They are checked again here
//! because the operator must report (not crash on) an object that slipped past an older CRD,
//! and the node-executor must refuse anything it cannot apply exactly before changing the host.

use std::collections::HashSet;
use std::fmt;

use crate::format::{self, Format};
use crate::grant::HostTaskGrantSpec;
use crate::hostgroup::HostGroupSpec;
use crate::hosttask::{Account, HostTaskSpec, Mode, RebootPolicy};
use crate::messages as msg;
use crate::units::CountOrPercent;

/// One refused field: where it is and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, like `spec.grants[1].path`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every refused field of one object, in the order of the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

impl ValidationErrors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), message: message.into() });
    }

    fn check(&mut self, field: impl Into<String>, format: &Format, value: &str) {
        if let Err(e) = format.check(value) {
            self.push(field, e.to_string());
        }
    }

    fn at_most(&mut self, field: &str, len: usize, max: usize) {
        if len > max {
            self.push(field, format!("{field} must have at most {max} items (it has {len})"));
        }
    }

    fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }

    /// The messages alone, for matching in tests and conditions.
    pub fn messages(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.message.as_str()).collect()
    }
}

impl HostTaskSpec {
    /// Checks everything the CRD schema checks, with the same messages.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if self.command.is_some() == self.script.is_some() {
            errors.push("spec", msg::COMMAND_OR_SCRIPT);
        }
        if self.args.is_some() && self.command.is_none() {
            errors.push("spec", msg::ARGS_NEED_COMMAND);
        }
        if self.mode == Mode::Continuous && self.reboot == RebootPolicy::IfRequired {
            errors.push("spec", msg::REBOOT_ONLY_ONCE);
        }
        if self.mode == Mode::Continuous && self.timeout.is_some() {
            errors.push("spec", msg::TIMEOUT_ONLY_ONCE);
        }
        if self.mode == Mode::Continuous && self.rollout.schedule.is_some() {
            errors.push("spec", msg::SCHEDULE_ONLY_ONCE);
        }
        if let Some(check) = &self.health_check {
            if self.mode == Mode::Continuous {
                errors.push("spec", msg::HEALTH_CHECK_ONLY_ONCE);
            }
            if check.command.first().is_none_or(String::is_empty) {
                errors.push("spec.healthCheck.command", msg::HEALTH_CHECK_EMPTY);
            }
            errors.at_most("spec.healthCheck.command", check.command.len(), 64);
            errors.check("spec.healthCheck.timeout", &format::HEALTH_CHECK_TIMEOUT, &check.timeout);
        }
        if let Some(group) = &self.rollout.concurrency_group {
            if self.mode == Mode::Continuous {
                errors.push("spec", msg::CONCURRENCY_GROUP_ONLY_ONCE);
            }
            if self.timeout.is_none() {
                errors.push("spec", msg::CONCURRENCY_GROUP_TIMEOUT);
            }
            errors.check("spec.rollout.concurrencyGroup", &format::CONCURRENCY_GROUP, group);
        }
        errors.at_most("spec.tolerations", self.tolerations.len(), 32);
        if let Some(image) = &self.image {
            errors.check("spec.image", &format::IMAGE, image);
        }
        if let Some(command) = &self.command {
            match command.first() {
                None => errors.push("spec.command", "command must have at least 1 item"),
                Some(program) if program.is_empty() => errors.push("spec.command", msg::COMMAND_EMPTY),
                Some(_) => {}
            }
            errors.at_most("spec.command", command.len(), 64);
        }
        if let Some(args) = &self.args {
            errors.at_most("spec.args", args.len(), 256);
        }
        if let Some(script) = &self.script
            && (script.is_empty() || script.chars().count() > 262_144)
        {
            errors.push("spec.script", "script must be 1 to 262144 characters long");
        }
        if let Some(script) = &self.script
            && script.len() > 1_000_000
        {
            errors.push("spec.script", msg::SCRIPT_BYTES);
        }
        errors.at_most("spec.env", self.env.len(), 128);
        for (i, var) in self.env.iter().enumerate() {
            if var.name.is_empty() || var.name.contains('=') || var.name.chars().any(char::is_control) {
                errors.push(
                    format!("spec.env[{i}].name"),
                    "environment variable names must be non-empty, without '=' or control characters",
                );
            }
        }
        errors.at_most("spec.envFrom", self.env_from.len(), 16);
        match (&self.run_as.account, &self.run_as.host_group) {
            (Account::HostGroup, Some(name)) => {
                errors.check("spec.runAs.hostGroup", &format::OBJECT_NAME, name)
            }
            (Account::HostGroup, None) | (_, Some(_)) => errors.push("spec.runAs", msg::HOST_GROUP_REF),
            (_, None) => {}
        }
        if let Some(limits) = &self.limits {
            if let Some(memory) = &limits.memory {
                errors.check("spec.limits.memory", &format::MEMORY, memory);
            }
            if let Some(cpu) = &limits.cpu {
                errors.check("spec.limits.cpu", &format::CPU, cpu);
            }
            if let Some(processes) = limits.processes
                && !(1..=10_000).contains(&processes)
            {
                errors.push("spec.limits.processes", "processes must be between 1 and 10000");
            }
        }
        if let Some(timeout) = &self.timeout {
            errors.check("spec.timeout", &format::TIMEOUT, timeout);
        }
        errors.check("spec.drain.timeout", &format::STEP_TIMEOUT, &self.drain.timeout);
        errors.check("spec.rebootTimeout", &format::STEP_TIMEOUT, &self.reboot_timeout);
        if let Some(rerun) = &self.rerun {
            errors.check("spec.rerun", &format::RERUN_TOKEN, rerun);
        }
        if let Some(token) = &self.retry_failed {
            errors.check("spec.retryFailed", &format::RETRY_TOKEN, token);
        }
        if self.retries.limit > 10 {
            errors.push("spec.retries.limit", "retries.limit must be between 0 and 10");
        }
        errors.check("spec.retries.backoff", &format::BACKOFF, &self.retries.backoff);
        match CountOrPercent::parse(&self.rollout.max_concurrent) {
            Some(CountOrPercent::Count(n) | CountOrPercent::Percent(n)) if n >= 1 => {}
            _ => errors.push("spec.rollout.maxConcurrent", msg::MAX_CONCURRENT),
        }
        if CountOrPercent::parse(&self.rollout.max_failures).is_none() {
            errors.push("spec.rollout.maxFailures", msg::MAX_FAILURES);
        }
        errors.check("spec.rollout.zones.topologyKey", &format::LABEL_KEY, &self.rollout.zones.topology_key);
        if let Some(cap) = &self.rollout.zones.max_concurrent_per_zone {
            match CountOrPercent::parse(cap) {
                Some(CountOrPercent::Count(n) | CountOrPercent::Percent(n)) if n >= 1 => {}
                _ => errors.push("spec.rollout.zones.maxConcurrentPerZone", msg::MAX_CONCURRENT_PER_ZONE),
            }
        }
        if let Some(canary) = &self.rollout.canary {
            match CountOrPercent::parse(&canary.nodes) {
                Some(CountOrPercent::Count(n) | CountOrPercent::Percent(n)) if n >= 1 => {}
                _ => errors.push("spec.rollout.canary.nodes", msg::CANARY_NODES),
            }
            if let Some(soak) = &canary.soak {
                errors.check("spec.rollout.canary.soak", &format::SOAK, soak);
            }
        }
        if let Some(schedule) = &self.rollout.schedule {
            errors.schedule("spec.rollout.schedule", schedule);
        }
        errors.into_result()
    }
}

impl ValidationErrors {
    /// A schedule as the schema checks it: shapes, sizes, a window's two ends, a blackout's order.
    fn schedule(&mut self, at: &str, schedule: &crate::schedule::Schedule) {
        self.check(format!("{at}.timeZone"), &format::TIME_ZONE, &schedule.time_zone);
        self.at_most(&format!("{at}.windows"), schedule.windows.len(), 28);
        self.at_most(&format!("{at}.blackouts"), schedule.blackouts.len(), 64);
        for (i, window) in schedule.windows.iter().enumerate() {
            let field = format!("{at}.windows[{i}]");
            self.at_most(&format!("{field}.days"), window.days.len(), 7);
            self.check(format!("{field}.start"), &format::CLOCK_TIME, &window.start);
            self.check(format!("{field}.end"), &format::CLOCK_TIME, &window.end);
            if window.start == window.end {
                self.push(field, msg::WINDOW_EMPTY);
            }
        }
        for (i, blackout) in schedule.blackouts.iter().enumerate() {
            let field = format!("{at}.blackouts[{i}]");
            self.check(format!("{field}.from"), &format::DATE, &blackout.from);
            self.check(format!("{field}.to"), &format::DATE, &blackout.to);
            if blackout.to < blackout.from {
                self.push(field, msg::BLACKOUT_ORDER);
            }
        }
    }
}

impl HostGroupSpec {
    /// Checks everything the CRD schema checks on creation, with the same messages.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        errors.check("spec.groupName", &format::GROUP_NAME, &self.group_name);
        if let Some(description) = &self.description {
            errors.check("spec.description", &format::DESCRIPTION, description);
        }
        errors.at_most("spec.tolerations", self.tolerations.len(), 32);
        errors.at_most("spec.grants", self.grants.len(), 64);
        let mut paths = HashSet::new();
        let mut duplicate_path = false;
        for (i, grant) in self.grants.iter().enumerate() {
            errors.check(format!("spec.grants[{i}].path"), &format::WINDOWS_PATH, &grant.path);
            duplicate_path |= !paths.insert(grant.path.to_ascii_lowercase());
        }
        if duplicate_path {
            errors.push("spec.grants", msg::GRANT_PATHS_UNIQUE);
        }
        errors.at_most("spec.members", self.members.len(), 128);
        let mut members = HashSet::new();
        let mut duplicate_member = false;
        for (i, member) in self.members.iter().enumerate() {
            errors.check(format!("spec.members[{i}]"), &format::ACCOUNT_NAME, member);
            duplicate_member |= !members.insert(member.to_ascii_lowercase());
        }
        if duplicate_member {
            errors.push("spec.members", msg::MEMBERS_UNIQUE);
        }
        errors.at_most("spec.namespaces", self.namespaces.len(), 64);
        for (i, namespace) in self.namespaces.iter().enumerate() {
            errors.check(format!("spec.namespaces[{i}]"), &format::NAMESPACE_NAME, namespace);
        }
        match CountOrPercent::parse(&self.rollout.max_concurrent) {
            Some(CountOrPercent::Count(n) | CountOrPercent::Percent(n)) if n >= 1 => {}
            _ => errors.push("spec.rollout.maxConcurrent", msg::MAX_CONCURRENT),
        }
        if CountOrPercent::parse(&self.rollout.max_failures).is_none() {
            errors.push("spec.rollout.maxFailures", msg::MAX_FAILURES);
        }
        if let Some(schedule) = &self.rollout.schedule {
            errors.schedule("spec.rollout.schedule", schedule);
        }
        errors.into_result()
    }

    /// Checks an update: everything `validate` checks, and that `groupName` did not change.
    pub fn validate_update(&self, old: &HostGroupSpec) -> Result<(), ValidationErrors> {
        let mut errors = self.validate().err().unwrap_or_default();
        if self.group_name != old.group_name {
            errors.push("spec.groupName", msg::GROUP_NAME_IMMUTABLE);
        }
        errors.into_result()
    }
}

impl HostTaskGrantSpec {
    /// Checks everything the CRD schema checks, with the same messages.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        errors.at_most("spec.accounts", self.accounts.len(), 3);
        match CountOrPercent::parse(&self.max_concurrent) {
            Some(CountOrPercent::Count(n) | CountOrPercent::Percent(n)) if n >= 1 => {}
            _ => errors.push("spec.maxConcurrent", msg::MAX_CONCURRENT),
        }
        errors.at_most("spec.tolerations", self.tolerations.len(), 32);
        errors.into_result()
    }
}
