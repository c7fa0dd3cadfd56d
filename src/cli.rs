//! Command-line interface: argument parsing and dispatch to the library.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use jiff::Timestamp;

use crate::check::{self, OutputFormat};
use crate::objects::ObjectSet;
use crate::policy::Policy;
use crate::{Error, Result};

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate CSRs without writing anything, and explain each decision.
    Check(CheckArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Nodes, Machines and other CSRs the cluster holds (YAML: multi-document or kind: List).
    #[arg(long = "objects", value_name = "FILE")]
    pub objects: Vec<PathBuf>,
    /// Policy file (YAML, as in the ConfigMap's policy.yaml); built-in defaults without it.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Evaluate as of this instant (RFC 3339); default: now.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// CSR manifests: single, multi-document, or kind: List as `kubectl get csr -o yaml` prints.
    #[arg(value_name = "CSR_FILE", required = true)]
    pub csr_files: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Exit 0 if FILE is a valid policy, else print the failing field and exit non-zero.
    Validate {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Runs a parsed command; returns what to print on stdout.
pub fn run(cli: Cli) -> Result<String> {
    match cli.command {
        Command::Check(args) => run_check(args),
        Command::Policy(PolicyCommand::Validate { file }) => {
            load_policy(&file)?;
            Ok(format!("{}: policy is valid\n", file.display()))
        }
    }
}

pub fn load_policy(path: &Path) -> Result<Policy> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Policy::from_yaml(&text).map_err(|source| Error::Policy {
        path: path.to_path_buf(),
        source,
    })
}

pub fn parse_now(value: Option<&str>) -> Result<Timestamp> {
    match value {
        None => Ok(Timestamp::now()),
        Some(text) => text.parse::<Timestamp>().map_err(|e| Error::BadTime {
            value: text.to_string(),
            message: e.to_string(),
        }),
    }
}

fn run_check(args: CheckArgs) -> Result<String> {
    let CheckArgs {
        objects,
        policy,
        now,
        output,
        csr_files,
    } = args;
    let policy = match &policy {
        Some(path) => load_policy(path)?,
        None => Policy::default(),
    };
    let now = parse_now(now.as_deref())?;
    let mut cluster = ObjectSet::default();
    for path in &objects {
        cluster.read_file(path)?;
    }
    let mut targets = ObjectSet::default();
    for path in &csr_files {
        targets.read_file(path)?;
        if !targets.nodes.is_empty() || !targets.machines.is_empty() {
            return Err(Error::Usage(format!(
                "{}: CSR files may hold only CertificateSigningRequests; pass Nodes and Machines with --objects",
                path.display()
            )));
        }
    }
    let inventory = check::build_inventory(
        &cluster.nodes,
        cluster.machines,
        cluster.csrs.iter().chain(&targets.csrs),
    );
    let evaluations = check::evaluate(&targets.csrs, &inventory, &policy, now);
    Ok(check::render(&evaluations, output))
}
