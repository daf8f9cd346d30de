//! `kubectl hostprocess`: plan, watch and steer HostTask rollouts from the terminal and from CI.
//! It talks to the cluster only through the API, as the user running it: what it shows is what
//! the user may read, what it changes goes through server-side apply under its own field
//! managers, so GitOps tools see who changed what.

pub mod api;
pub mod cli;
pub mod logs;
pub mod plan;
pub mod render;
pub mod status;
pub mod steer;
pub mod view;
pub mod wait;
pub mod why;

use api::connect;
pub use api::{Error, exit};
use cli::{Cli, Command};

/// Runs a command; the exit code it decided.
pub async fn run(cli: Cli) -> Result<i32, Error> {
    if let Command::Completion { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "kubectl-hostprocess", &mut std::io::stdout());
        return Ok(exit::OK);
    }
    let (client, namespace) = connect(&cli.cluster).await?;
    let out = &mut std::io::stdout();
    match cli.command {
        Command::Plan(args) => plan::plan(&client, &namespace, &args, out).await,
        Command::Status(args) => status::status(&client, &namespace, &args, out).await,
        Command::Wait(args) => wait::wait(&client, &namespace, &args, out).await,
        Command::Logs(args) => logs::logs(&client, &namespace, &args, out).await,
        Command::Pause(args) => steer::pause(&client, &namespace, &args, true, out).await,
        Command::Resume(args) => steer::resume(&client, &namespace, &args, out).await,
        Command::RetryFailed(args) => {
            steer::token(&client, &namespace, &args, steer::Token::RetryFailed, out).await
        }
        Command::Rerun(args) => steer::token(&client, &namespace, &args, steer::Token::Rerun, out).await,
        Command::Why(args) => why::why(&client, &namespace, &args.name, out).await,
        Command::Completion { .. } => Ok(exit::OK),
    }
}
