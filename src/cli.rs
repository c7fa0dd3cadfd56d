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
    /// Run the controller: watch CSRs and approve those that belong to real nodes.
    Run(RunArgs),
    /// Evaluate CSRs without writing anything, and explain each decision.
    Check(CheckArgs),
    /// Work with policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Kubeconfig file; in-cluster configuration when absent.
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The controller's own namespace: where the policy ConfigMap and the Lease live.
    #[arg(long, env = "POD_NAMESPACE", default_value = "csr-approver")]
    pub namespace: String,
    /// Name of the policy ConfigMap (key policy.yaml).
    #[arg(long, default_value = "csr-approver-policy")]
    pub policy_configmap: String,
    /// Address for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: std::net::SocketAddr,
    /// Elect a leader on a Lease so several replicas can run; only the leader writes.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease used for leader election.
    #[arg(long, default_value = "csr-approver")]
    pub lease_name: String,
    /// Lease duration in seconds.
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
    /// This replica's identity in the Lease and in Events (the Pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
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
pub async fn run(cli: Cli) -> Result<String> {
    match cli.command {
        Command::Run(args) => run_controller(args).await,
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

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

async fn run_controller(args: RunArgs) -> Result<String> {
    let RunArgs {
        kubeconfig,
        namespace,
        policy_configmap,
        http_addr,
        leader_election,
        lease_name,
        lease_duration,
        identity,
        log_format,
    } = args;
    init_logging(log_format);
    let identity = identity.unwrap_or_else(|| format!("csr-approver-{}", std::process::id()));
    crate::controller::run(crate::controller::RunConfig {
        kubeconfig,
        namespace,
        policy_configmap,
        http_addr,
        leader_election,
        lease_name,
        lease_duration_seconds: lease_duration,
        identity,
    })
    .await?;
    Ok(String::new())
}
