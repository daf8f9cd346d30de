//! `status`: the view of a rollout as a table, JSON or YAML, once or redrawn until it settles.

use std::io::Write;
use std::time::Duration;

use crate::api::{Error, exit};
use crate::cli::{Output, StatusArgs};
use crate::render;
use crate::view::read;

/// `status`: the view once, or redrawn until the rollout settles.
pub async fn status(
    client: &kube::Client,
    namespace: &str,
    args: &StatusArgs,
    out: &mut dyn Write,
) -> Result<i32, Error> {
    loop {
        let view = read(client, namespace, &args.name).await?;
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
        if !args.watch || view.settled() {
            return Ok(exit::OK);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !render::Style::for_terminal().colour && args.output == Output::Table {
            writeln!(out)?;
        }
    }
}
