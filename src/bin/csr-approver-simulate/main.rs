//! `csr-approver-simulate`: N kubelets joining a cluster, as the demo, the end-to-end tests
//! and the benchmarks need them. Each node: Machine (when a Machine API is installed) →
//! client CSR as the bootstrapper → Node with addresses → serving CSR as
//! `system:node:<n>` (`--serving-only`: nodes that already hold a client certificate, only
//! the serving CSR). Optional forged CSRs must stay unapproved: each is done when it is
//! decided (denied) or explained (csr-approver's Warning Event), not after a timeout, and
//! all are read again at the end. Progress goes to stderr; per-phase latency is reported.
//!
//! A tool, not the product: it impersonates nodes and bootstrappers and creates Machines
//! and Nodes, so it is its own binary (cargo feature `tools`), never in the image.

mod forge;
mod join;
mod report;
mod request;
mod retry;
mod run;
mod sim;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use csr_approver::check::OutputFormat;
use csr_approver::cli::{LogFormat, init_logging};

use crate::run::SimulateConfig;

pub const MACHINE_NAMESPACE: &str = "openshift-machine-api";
/// Marks every object a run creates (its watch selects on it; bench/ deletes by it).
pub const RUN_LABEL: &str = "csr-approver.io/simulation";

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Config(csr_approver::controller::ControllerError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Failed(String),
}

/// Play N kubelets joining a cluster (Machines, client CSRs, Nodes, serving CSRs) and
/// report approval latency; optionally submit forged CSRs that must stay unapproved.
#[derive(Debug, Parser)]
#[command(name = "csr-approver-simulate", version)]
struct Args {
    /// Kubeconfig of a user allowed to impersonate (cluster admin).
    #[arg(long, env = "KUBECONFIG", value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// How many nodes join.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// How many forged CSRs to submit after the joins (each must stay unapproved).
    #[arg(long, default_value_t = 0)]
    forged: usize,
    /// Node name prefix.
    #[arg(long, default_value = "sim")]
    prefix: String,
    /// Nodes joining at the same time.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// How long to wait for each CSR to be decided.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    timeout: std::time::Duration,
    /// Do not create Machines even if the Machine API is installed (inventory policies).
    #[arg(long)]
    no_machines: bool,
    /// Nodes already hold a client certificate: each gets its Machine (unless
    /// --no-machines) and its Node with addresses, then submits only its serving CSR as
    /// `system:node:<n>` (approved by serving-only approvers too). The report then has only
    /// the serving phase.
    #[arg(long)]
    serving_only: bool,
    /// Write every approved CSR to FILE, one line each: `<phase> <create→Approved ms>
    /// <approved at, Unix ms>` (phase `client` or `serving`).
    #[arg(long, value_name = "FILE")]
    latencies: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    output: OutputFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let Args {
        kubeconfig,
        nodes,
        forged,
        prefix,
        concurrency,
        timeout,
        no_machines,
        serving_only,
        latencies,
        output,
    } = Args::parse();
    init_logging(LogFormat::Text);
    let config = SimulateConfig {
        nodes,
        forged,
        prefix,
        concurrency,
        timeout,
        machines: !no_machines,
        serving_only,
        latencies,
    };
    let report = match csr_approver::controller::kube_config(kubeconfig.as_deref()).await {
        Ok(base) => run::simulate(base, config).await,
        Err(e) => Err(SimulateError::Config(e)),
    };
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = match output {
        OutputFormat::Table => report.render_table(),
        OutputFormat::Json => serde_json::to_string(&report).unwrap_or_default() + "\n",
    };
    // A failed run still reports, on stderr after the error line, where scripts look for it.
    if report.succeeded() {
        print!("{text}");
        ExitCode::SUCCESS
    } else {
        eprintln!("error: simulation failed:\n{text}");
        ExitCode::FAILURE
    }
}
