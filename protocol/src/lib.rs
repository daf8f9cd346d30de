//! The wire contract between the operator and the node-executor, defined once: the executor's
//! command line (`cli`: the very parser the executor runs, and `to_args` for whoever builds an
//! invocation) and the JSON result line every subcommand prints last (`result`). The operator
//! builds pod commands from these types and reads termination messages into them; renaming a
//! flag or a key is a compile error on both sides, and a test round-trips every invocation the
//! operator builds through the executor's parser.

pub mod cli;
pub mod digest;
pub mod result;

pub use cli::{
    Cli, Command, GrantCommand, GroupCommand, ModeArg, ProbeArgs, RunArgs, TestPayload, WaitForArg,
};
pub use result::{
    Attempt, AttemptOutcome, Change, HealthState, JobStats, LimitKind, Outcome, REFUSED_NOTHING_CHANGED,
    Record, ResultLine, RunReport, State, describe_status_code, exit_code_from_windows,
};
