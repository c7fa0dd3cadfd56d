//! Command-line interface: argument parsing and dispatch to the library.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use jiff::Timestamp;

use crate::check::{self, ColorChoice, OutputFormat};
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
    /// Lease duration in seconds: a standby takes over this long after the leader's last
    /// renewal; the leader stops writing two thirds into it when it cannot renew.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3600))]
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
#[command(after_help = CHECK_AFTER_HELP)]
pub struct CheckArgs {
    /// Live mode: read CSRs, Nodes, Machines and the policy ConfigMap from the cluster of
    /// this kubeconfig file (read-only). Without it, the cluster is found as kubectl finds
    /// it: $KUBECONFIG (a list is merged), else ~/.kube/config, else in-cluster.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Live mode: the kubeconfig context to use (default: its current-context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Live mode: the controller's namespace, where the policy ConfigMap lives.
    #[arg(long, default_value = "csr-approver")]
    pub namespace: String,
    /// Live mode: name of the policy ConfigMap.
    #[arg(long, default_value = "csr-approver-policy")]
    pub policy_configmap: String,
    /// Only CSRs that are still pending (in the cluster, or in the CSR files).
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
    /// Colour the table's verdicts: auto = only on a terminal, and not with NO_COLOR set.
    #[arg(long, value_enum, default_value = "auto", value_name = "WHEN")]
    pub color: ColorChoice,
    /// CSR names to evaluate in the cluster (default: every kubelet CSR), or CSR manifest
    /// files to evaluate offline (single, multi-document, or kind: List as `kubectl get csr
    /// -o yaml` prints). An argument that is an existing file or contains a / is a file.
    #[arg(value_name = "CSR")]
    pub csrs: Vec<String>,
}

const CHECK_AFTER_HELP: &str = "\
Live: `check --pending`, `check csr-abc12`. Offline: `check --objects cluster.yaml csrs.yaml`.
As a kubectl or oc plugin (an executable named kubectl-csr_approver on PATH):
`kubectl csr-approver check --pending`; kubectl's own flags are not passed to plugins,
so give --kubeconfig and --context after the plugin name.";

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

/// Live (a cluster) or offline (files): what `check`'s arguments ask for.
#[derive(Debug, PartialEq, Eq)]
enum CheckMode {
    Live,
    Offline,
}

/// A CSR name is a DNS subdomain: it has no `/`, so an argument with one is a path.
fn names_a_file(arg: &str) -> bool {
    arg.contains('/') || Path::new(arg).is_file()
}

fn check_mode(args: &CheckArgs) -> Result<CheckMode> {
    let live_flag = match (&args.kubeconfig, &args.context) {
        (Some(_), _) => Some("--kubeconfig"),
        (None, Some(_)) => Some("--context"),
        (None, None) => None,
    };
    if let Some(flag) = live_flag {
        if !args.objects.is_empty() {
            return Err(Error::Usage(format!(
                "--objects is for offline mode; with {flag} the cluster is read live"
            )));
        }
        if let Some(path) = args.csrs.iter().find(|a| a.contains('/')) {
            return Err(Error::Usage(format!(
                "{path} is a file, not a CSR name; with {flag} the CSRs are read from the cluster (drop {flag} to check files offline)"
            )));
        }
        return Ok(CheckMode::Live);
    }
    if !args.objects.is_empty() {
        if args.csrs.is_empty() {
            return Err(Error::Usage(
                "give the CSR manifest files to check against --objects".to_string(),
            ));
        }
        return Ok(CheckMode::Offline);
    }
    let (files, names): (Vec<&String>, Vec<&String>) =
        args.csrs.iter().partition(|a| names_a_file(a));
    match (files.first(), names.first()) {
        (Some(file), Some(name)) => Err(Error::Usage(format!(
            "{file} is a file but {name} is not: give CSR manifest files (offline) or CSR names (live), not both"
        ))),
        (Some(_), None) => Ok(CheckMode::Offline),
        (None, _) => Ok(CheckMode::Live),
    }
}

async fn run_check(args: CheckArgs) -> Result<String> {
    let mode = check_mode(&args)?;
    let CheckArgs {
        kubeconfig,
        context,
        namespace,
        policy_configmap,
        pending,
        objects,
        policy,
        now,
        output,
        color,
        csrs,
    } = args;
    let now = parse_now(now.as_deref())?;
    let file_policy = policy.as_deref().map(load_policy).transpose()?;
    let color = color.enabled();
    if mode == CheckMode::Live {
        let live = crate::live::LiveCheck {
            kubeconfig,
            context,
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
        return Ok(format!(
            "{note}{}",
            check::render_colored(&evaluations, output, color)
        ));
    }
    let policy = file_policy.unwrap_or_default();
    let mut cluster = ObjectSet::default();
    for path in &objects {
        cluster.read_file(path)?;
        // The cluster's other CSRs feed the duplicate and flood rules: judging without one
        // could approve what it would refuse, so an unreadable one fails the check.
        if let Some(bad) = cluster.unreadable.first() {
            return Err(Error::BadFile {
                path: path.clone(),
                message: format!("CertificateSigningRequest {}: {}", bad.name, bad.message),
            });
        }
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
    // Every CSR of the files feeds the duplicate and flood rules; --pending only narrows
    // what is reported, as it does live.
    let known: Vec<_> = cluster.csrs.iter().map(crate::facts::csr_facts).collect();
    let read: Vec<_> = targets.csrs.iter().map(crate::facts::csr_facts).collect();
    let inventory = check::build_inventory(
        &cluster.nodes,
        cluster.machines,
        known.iter().chain(&read),
        cluster.kubernetes_service.as_ref(),
    );
    let selected = read
        .iter()
        .filter(|c| !pending || c.state == crate::inventory::CsrState::Pending);
    let evaluations = check::evaluate(selected, &inventory, &policy, now);
    let read = read.len();
    let report = check::render_with_unreadable(&evaluations, &targets.unreadable, output, color);
    // Verdicts are answers, whatever they say (exit 0); a CSR that could not be read is an
    // input error (exit 1, as for any bad file), reported after the verdicts on the others.
    match targets.unreadable.len() {
        0 => Ok(report),
        failed => Err(Error::Incomplete {
            output: report,
            message: format!(
                "{failed} of {} CertificateSigningRequests could not be read (their ERROR rows name the field); the others were evaluated",
                failed + read
            ),
        }),
    }
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal: a Pod's log (`kubectl logs`) or a file would
    // otherwise carry escape codes. NO_COLOR (no-color.org) turns them off there too.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
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
