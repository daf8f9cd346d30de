//! `status`: the view of a rollout as a table, JSON or YAML, once or redrawn until it settles.
//! Watching, it exits as `wait` does: 0 once the rollout completed, 1 when it halted or stalled.
//! On a terminal it redraws in place every second; into a file or a pipe it writes a view only
//! when something other than the clock changed.

use std::io::Write;
use std::time::Duration;

use crate::api::{Error, exit};
use crate::cli::{Output, StatusArgs};
use crate::render;
use crate::view::{View, read};

/// `status`: the view once, or redrawn until the rollout settles.
pub async fn status(
    client: &kube::Client,
    namespace: &str,
    args: &StatusArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    let mut shown: Option<View> = None;
    loop {
        let view = read(client, namespace, &args.name).await?;
        let terminal = render::Style::for_terminal().colour;
        let changed = shown.as_ref().is_none_or(|before| view.moved(before));
        if args.watch && !terminal && !changed && !view.settled() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if args.watch && !terminal && shown.is_some() && args.output == Output::Table {
            writeln!(out)?;
        }
        match args.output {
            Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&view).unwrap_or_default())?,
            Output::Yaml => write!(out, "{}", yaml_serde::to_string(&view).unwrap_or_default())?,
            Output::Table => {
                let style = render::Style::for_terminal();
                if args.watch && style.colour {
                    // Redraw in place on a terminal.
                    write!(out, "\x1b[H\x1b[2J")?;
                }
                write!(out, "{}", render::table(&view, style))?;
            }
        }
        out.flush()?;
        if !args.watch {
            return Ok(exit::OK);
        }
        if view.settled() {
            return Ok(if view.complete() { exit::OK } else { exit::FAILED });
        }
        shown = Some(view);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
