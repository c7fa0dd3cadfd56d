//! Command-line interface: argument parsing and dispatch to the library, one module per
//! command.

mod check;
mod expiry;
mod logging;
mod policy;
mod run;

use std::ffi::OsStr;
use std::path::Path;

use clap::{Parser, Subcommand};

pub use check::{CheckArgs, CheckCommand, parse_now};
pub use expiry::ExpiryArgs;
pub use logging::{LogFormat, init_logging};
pub use policy::{PolicyCommand, load_policy};
pub use run::{LeaderArgs, RunArgs};

use crate::Result;

#[derive(Debug, Parser)]
#[command(
    name = "csr-approver",
    version,
    about = "Safely auto-approves kubelet CSRs on bare-metal and UPI clusters"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The name to show in usage when the binary runs as a kubectl or oc plugin: both find
/// plugins by file name on PATH and exec them with that path as argv[0]; `_` in the file
/// name is `-` in the command (`kubectl-csr_approver` is `kubectl csr-approver`), and oc
/// also runs `kubectl-` plugins.
pub fn plugin_bin_name(argv0: &OsStr) -> Option<&'static str> {
    match Path::new(argv0).file_name()?.to_str()? {
        "kubectl-csr_approver" => Some("kubectl csr-approver"),
        "oc-csr_approver" => Some("oc csr-approver"),
        _ => None,
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller: watch CSRs and approve those that belong to real nodes.
    Run(RunArgs),
    /// Evaluate CSRs without writing anything, and explain each decision.
    Check(CheckArgs),
    /// Every node's kubelet certificate expiry, and how long the cluster may stay shut
    /// down (the same as `check expiry`).
    Expiry(ExpiryArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// Runs a parsed command; returns what to print on stdout.
pub async fn run(cli: Cli) -> Result<String> {
    match cli.command {
        Command::Run(args) => run::run_controller(args).await,
        Command::Check(CheckArgs {
            command: Some(CheckCommand::Expiry(args)),
            ..
        })
        | Command::Expiry(args) => expiry::run_expiry(args).await,
        Command::Check(args) => check::run_check(args).await,
        Command::Policy(command) => policy::run_policy(command),
    }
}
