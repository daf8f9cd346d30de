//! The command line, as kubectl users expect it: `--kubeconfig`, `--context` and `-n` work as
//! kubectl's do.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "kubectl-hostprocess",
    bin_name = "kubectl hostprocess",
    version,
    about = "Watch, wait for and steer HostTask rollouts of hostprocess-operator",
    after_help = "Exit codes: 0 done; 1 the rollout halted or stalled (wait); 2 bad usage; 3 timed out (wait); 4 an error talking to the cluster."
)]
pub struct Cli {
    #[command(flatten)]
    pub cluster: Cluster,
    #[command(subcommand)]
    pub command: Command,
}

/// Where to find the cluster, as kubectl has it.
#[derive(Debug, Args)]
pub struct Cluster {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace of the HostTask (default: the context's).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// What applying a file of HostTasks and HostGroups would do; nothing is applied.
    Plan(PlanArgs),
    /// A HostTask's rollout: a summary, its conditions in plain words, and a row per node.
    Status(StatusArgs),
    /// Wait until a HostTask's rollout completes; fail when it halts, stalls or takes too long.
    Wait(WaitArgs),
    /// The payload's output on one node (the previous run's with --previous).
    Logs(LogsArgs),
    /// Stop starting nodes (spec.rollout.paused); nodes already running finish.
    Pause(SteerArgs),
    /// Start nodes again: unpause and, when the canary waits for it, promote the revision.
    Resume(SteerArgs),
    /// Run the nodes that failed the current revision again (spec.retryFailed).
    RetryFailed(TokenArgs),
    /// Run the unchanged task again on every node (spec.rerun).
    Rerun(TokenArgs),
    /// Why a HostTask waits or stalled, and what to do about it.
    Why(NameArgs),
    /// Shell completion for bash, zsh, fish, PowerShell or elvish.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The HostTask.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    pub name: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Redraw as the rollout goes on, until it is complete (exit 0) or halts or stalls (exit 1).
    #[arg(short, long)]
    pub watch: bool,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The file of HostTasks and HostGroups (YAML, several documents allowed; - reads standard
    /// input).
    #[arg(short, long)]
    pub filename: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// The operator's --executor-image, to show in the DaemonSet (the cluster does not tell it).
    #[arg(long)]
    pub executor_image: Option<String>,
    /// The operator's --hostgroup-namespace, where HostGroup setup pods run.
    #[arg(long, default_value = hostprocess_operator::Config::DEFAULT_GROUP_NAMESPACE)]
    pub hostgroup_namespace: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Condition {
    Complete,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    pub name: String,
    /// What to wait for.
    #[arg(long = "for", value_enum, default_value_t = Condition::Complete)]
    pub condition: Condition,
    /// How long to wait, like 30m or 1h30m.
    #[arg(long, default_value = "30m", value_parser = duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub name: String,
    /// The node whose payload output to show.
    #[arg(long)]
    pub node: String,
    /// The output of the container's previous run (the one that ran the payload, once it
    /// restarted).
    #[arg(short, long)]
    pub previous: bool,
}

#[derive(Debug, Args)]
pub struct SteerArgs {
    pub name: String,
    /// Take the field over from another field manager (a GitOps tool sets it back at its next
    /// sync unless the change is also made in Git).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    pub name: String,
    /// The token to set (default: the current time, like 2026-12-02T17:05:03Z); any new value
    /// runs again.
    #[arg(long)]
    pub token: Option<String>,
    /// Take the field over from another field manager.
    #[arg(long)]
    pub force: bool,
}

/// A duration like `90s`, `30m` or `1h30m`.
fn duration(text: &str) -> Result<Duration, String> {
    hostprocess_crds::units::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration like 90s, 30m or 1h30m"))
}
