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
    /// Play N kubelets joining a cluster (Machines, client CSRs, Nodes, serving CSRs) and
    /// report approval latency; optionally submit forged CSRs that must stay unapproved.
    Simulate(SimulateArgs),
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
pub struct SimulateArgs {
    /// Kubeconfig of a user allowed to impersonate (cluster admin).
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// How many nodes join.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// How many forged CSRs to submit after the joins (each must stay unapproved).
    #[arg(long, default_value_t = 0)]
    pub forged: usize,
    /// Node name prefix.
    #[arg(long, default_value = "sim")]
    pub prefix: String,
    /// Nodes joining at the same time.
    #[arg(long, default_value_t = 50)]
    pub concurrency: usize,
    /// How long to wait for each CSR to be decided.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// Do not create Machines even if the Machine API is installed (inventory policies).
    #[arg(long)]
    pub no_machines: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Live mode: read CSRs, Nodes, Machines and the policy ConfigMap from this cluster
    /// (read-only). Without it, check works offline on files.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Live mode: the controller's namespace, where the policy ConfigMap lives.
    #[arg(long, default_value = "csr-approver")]
    pub namespace: String,
    /// Live mode: name of the policy ConfigMap.
    #[arg(long, default_value = "csr-approver-policy")]
    pub policy_configmap: String,
    /// Live mode: only CSRs that are still pending.
    #[arg(long)]
    pub pending: bool,
    /// Offline: Nodes, Machines and other CSRs the cluster holds (YAML: multi-document or kind: List).
    #[arg(long = "objects", value_name = "FILE")]
    pub objects: Vec<PathBuf>,
    /// Policy file (YAML, as in the ConfigMap's policy.yaml); overrides the ConfigMap in
    /// live mode; built-in defaults offline without it.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Evaluate as of this instant (RFC 3339); default: now.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: OutputFormat,
    /// Offline: CSR manifests (single, multi-document, or kind: List as `kubectl get csr -o
    /// yaml` prints). Live: CSR names to evaluate (default: every kubelet CSR).
    #[arg(value_name = "CSR")]
    pub csrs: Vec<String>,
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
        Command::Check(args) => run_check(args).await,
        Command::Simulate(args) => run_simulate(args).await,
        Command::Policy(PolicyCommand::Validate { file }) => {
            let policy = load_policy(&file)?;
            let mut out = format!("{}: policy is valid\n", file.display());
            for reading in policy.pattern_readings() {
                out.push_str(&format!("  {reading}\n"));
            }
            Ok(out)
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

async fn run_check(args: CheckArgs) -> Result<String> {
    let CheckArgs {
        kubeconfig,
        namespace,
        policy_configmap,
        pending,
        objects,
        policy,
        now,
        output,
        csrs,
    } = args;
    let now = parse_now(now.as_deref())?;
    let file_policy = policy.as_deref().map(load_policy).transpose()?;
    if let Some(kubeconfig) = kubeconfig {
        if !objects.is_empty() {
            return Err(Error::Usage(
                "--objects is for offline mode; with --kubeconfig the cluster is read live"
                    .to_string(),
            ));
        }
        let live = crate::live::LiveCheck {
            kubeconfig,
            namespace,
            policy_configmap,
            policy: file_policy,
            names: csrs,
            pending_only: pending,
        };
        let (evaluations, note) = live.evaluate(now).await?;
        let note = if output == OutputFormat::Table {
            note
        } else {
            String::new()
        };
        return Ok(format!("{note}{}", check::render(&evaluations, output)));
    }
    if csrs.is_empty() {
        return Err(Error::Usage(
            "give CSR manifest files to check (offline), or --kubeconfig to check a cluster live"
                .to_string(),
        ));
    }
    let policy = file_policy.unwrap_or_default();
    let mut cluster = ObjectSet::default();
    for path in &objects {
        cluster.read_file(path)?;
    }
    let mut targets = ObjectSet::default();
    for file in &csrs {
        let path = Path::new(file);
        targets.read_file(path)?;
        if !targets.nodes.is_empty()
            || !targets.machines.is_empty()
            || targets.kubernetes_service.is_some()
        {
            return Err(Error::Usage(format!(
                "{}: CSR files may hold only CertificateSigningRequests; pass Nodes, Machines and the kubernetes Service with --objects",
                path.display()
            )));
        }
    }
    let inventory = check::build_inventory(
        &cluster.nodes,
        cluster.machines,
        cluster.csrs.iter().chain(&targets.csrs),
        cluster.kubernetes_service.as_ref(),
    );
    let evaluations = check::evaluate(&targets.csrs, &inventory, &policy, now);
    Ok(check::render(&evaluations, output))
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: a Pod's log (`kubectl logs`) or a file would
    // otherwise carry escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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

async fn run_simulate(args: SimulateArgs) -> Result<String> {
    let SimulateArgs {
        kubeconfig,
        nodes,
        forged,
        prefix,
        concurrency,
        timeout,
        no_machines,
        output,
    } = args;
    init_logging(LogFormat::Text);
    let config = crate::controller::kube_config(kubeconfig.as_deref()).await?;
    let report = crate::simulate::simulate(
        config,
        crate::simulate::SimulateConfig {
            nodes,
            forged,
            prefix,
            concurrency,
            timeout,
            machines: !no_machines,
        },
    )
    .await
    .map_err(|e| Error::Cluster(e.to_string()))?;
    let text = match output {
        OutputFormat::Table => report.render_table(),
        OutputFormat::Json => serde_json::to_string(&report).unwrap_or_default() + "\n",
    };
    if report.succeeded() {
        Ok(text)
    } else {
        Err(Error::Cluster(format!("simulation failed:\n{text}")))
    }
}
