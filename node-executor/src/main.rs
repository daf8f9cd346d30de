//! node-executor: the entrypoint of every HostProcess container the operator creates.
//!
//! Every subcommand prints a one-line JSON result on stdout (for `run`, after the payload's own
//! output: it is the last line) and human-readable progress and errors on stderr. The command
//! line and the result line are defined in `hostprocess-protocol`, shared with the operator;
//! `dispatch` runs each subcommand.

mod atomic_file;
#[cfg(any(windows, test))]
mod cmdline;
#[cfg(any(windows, test))]
mod cpu;
mod dispatch;
mod health;
mod install;
mod job_wait;
mod lock;
mod payload;
mod platform;
mod prepare;
mod provision;
mod record;
mod run;
mod sandbox;
mod selftest;
mod shutdown;
mod state_dir;

use clap::Parser;
use hostprocess_protocol::{Cli, ResultLine};

use crate::dispatch::{Failure, Output, Reply};
use crate::run::EXIT_EXECUTOR_ERROR;

fn main() {
    #[cfg(windows)]
    if let Err(e) = platform::windows::restrict_dll_search() {
        eprintln!("node-executor: {e}");
        std::process::exit(run::EXIT_EXECUTOR_ERROR);
    }
    let cli = Cli::parse();
    let name = cli.command.name();
    let code = match dispatch::execute(cli) {
        Ok(Reply { output, code }) => {
            match output {
                Output::Result { ok, outcome } => {
                    dispatch::print_line(&ResultLine { ok, command: name.into(), outcome });
                }
                Output::SelfTest(report) => match serde_json::to_string(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("node-executor self-test: cannot encode the report: {e}"),
                },
                Output::Nothing => {}
            }
            code
        }
        Err(Failure(message)) => {
            eprintln!("node-executor {name}: {message}");
            dispatch::print_line(&ResultLine::refused(name, message));
            EXIT_EXECUTOR_ERROR
        }
    };
    // The record and the result line are written; exiting also ends a pending close or
    // shutdown handler, which holds the process until now.
    // Exit codes are 32-bit on Windows (3010 passes through); Linux keeps the low 8 bits.
    std::process::exit(code)
}
