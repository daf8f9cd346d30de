//! The table `status` prints: a summary line with a progress bar, the conditions in plain
//! words, and a row per node. Colours only on a terminal, and never with `NO_COLOR` set.

use std::fmt::Write;
use std::io::IsTerminal;

use crate::view::View;

/// How to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    /// Colours when standard output is a terminal and `NO_COLOR` is not set.
    pub fn for_terminal() -> Style {
        Style { colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() }
    }

    pub fn plain() -> Style {
        Style { colour: false }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() }
    }

    /// A node's state, coloured by how it went.
    fn state(&self, state: &str) -> String {
        let code = match state {
            "Succeeded" => "32",
            "Failed" | "HealthCheckFailed" | "DrainTimedOut" | "RebootTimedOut" | "RebootFailed"
            | "CrashLoopBackOff" | "ImagePullBackOff" | "ErrImagePull" => "31",
            "Running" | "Draining" | "Rebooting" | "Restarting" | "RebootRequired" => "33",
            _ => "0",
        };
        self.paint(code, state)
    }
}

const BAR: usize = 36;

/// `[###xx>>>......]`: succeeded, failed, running, pending, in proportion.
pub fn bar(view: &View) -> String {
    let n = &view.nodes;
    let total = n.targeted.max(1) as usize;
    let width = |count: u32| (count as usize * BAR).div_ceil(total).min(BAR);
    let (done, failed, running) = (width(n.succeeded), width(n.failed), width(n.running + n.rebooting));
    let mut bar = String::new();
    bar.push_str(&"#".repeat(done));
    bar.push_str(&"x".repeat(failed.min(BAR - bar.len())));
    bar.push_str(&">".repeat(running.min(BAR - bar.len())));
    bar.push_str(&".".repeat(BAR - bar.len()));
    format!("[{bar}]")
}

/// What a condition says, in plain words.
fn plain(type_: &str, status: &str) -> Option<&'static str> {
    Some(match (type_, status) {
        ("Ready", "True") => "ready",
        ("Ready", _) => "not ready",
        ("Stalled", "True") => "stalled",
        ("Reconciling", "True") => "in progress",
        ("Paused", "True") => "paused",
        _ => return None,
    })
}

pub fn table(view: &View, style: Style) -> String {
    let mut out = String::new();
    let n = &view.nodes;
    let revision = view.revision.as_deref().unwrap_or("(none yet)");
    let _ = writeln!(out, "HostTask {}/{}, revision {revision}", view.namespace, view.name);
    if !view.current {
        let _ = writeln!(out, "(the operator has not reported on the latest change yet)");
    }
    let _ = writeln!(
        out,
        "{} {} of {} nodes succeeded, {} failed, {} running, {} rebooting, {} pending",
        bar(view),
        n.succeeded,
        n.targeted,
        n.failed,
        n.running,
        n.rebooting,
        n.pending
    );
    for c in &view.conditions {
        let Some(words) = plain(&c.type_, &c.status) else { continue };
        let detail = if c.message.is_empty() { String::new() } else { format!(": {}", c.message) };
        let _ = writeln!(out, "  {words} ({}){detail}", c.reason);
    }
    if view.rows.is_empty() {
        let _ = writeln!(out, "\nno node has a pod of this task yet");
        return out;
    }
    let headers = ["NODE", "REVISION", "STATE", "ATTEMPT", "EXIT", "STARTED", "DURATION", "MESSAGE"];
    let cells: Vec<[String; 8]> = view
        .rows
        .iter()
        .map(|r| {
            [
                r.node.clone(),
                r.revision.clone(),
                r.state.clone(),
                r.attempt.map_or("-".into(), |a| a.to_string()),
                r.exit_code.map_or("-".into(), |c| c.to_string()),
                r.started.map_or("-".into(), |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                r.duration_seconds.map_or("-".into(), duration),
                r.message.clone(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let _ = writeln!(out);
    let line = |cells: [&str; 8], state: String| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let shown = if i == 2 { state.clone() } else { (*cell).to_string() };
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i == 7 {
                text.push_str(&shown);
            } else {
                let _ = write!(text, "{shown}{}  ", " ".repeat(pad));
            }
        }
        text.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(headers, headers[2].to_string()));
    for row in &cells {
        let refs =
            [&row[0], &row[1], &row[2], &row[3], &row[4], &row[5], &row[6], &row[7]].map(String::as_str);
        let _ = writeln!(out, "{}", line(refs, style.state(&row[2])));
    }
    out
}

/// Seconds as the spec writes durations: `90s` as `1m30s`, `1800s` as `30m`, `5400s` as `1h30m`.
pub fn duration(seconds: u64) -> String {
    match (seconds / 3600, (seconds / 60) % 60, seconds % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_the_spec_writes_them() {
        let shown: Vec<String> = [3, 90, 1800, 5400, 7200].map(super::duration).to_vec();
        assert_eq!(shown, ["3s", "1m30s", "30m", "1h30m", "2h"]);
    }
}
