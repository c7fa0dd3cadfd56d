//! `csr-approver check`: evaluate CSRs without writing anything, live (a cluster) or
//! offline (files), and explain each decision.

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use super::expiry::ExpiryArgs;
use super::policy::load_policy;
use crate::check::{self, ColorChoice, OutputFormat};
use crate::facts;
use crate::hygiene::{self, HygieneReport};
use crate::inventory::CsrState;
use crate::objects::ObjectSet;
use crate::policy::Policy;
use crate::{Error, Result};

#[derive(Debug, clap::Args)]
#[command(
    after_help = CHECK_AFTER_HELP,
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
pub struct CheckArgs {
    // A report instead of CSR verdicts; a CSR named like one is checked as `check -- NAME`.
    #[command(subcommand)]
    pub command: Option<CheckCommand>,
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
    /// Instead of verdicts, a summary of the kubelet CSRs that went wrong and that nothing
    /// will act on, by cause (signer refused, approved but not issued, denied, unknown
    /// requester, pending past the kubelet's wait): every CSR of the cluster, or of the
    /// files (--objects and CSR files).
    #[arg(long, conflicts_with = "pending")]
    pub hygiene: bool,
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

#[derive(Debug, clap::Subcommand)]
pub enum CheckCommand {
    /// Every node's kubelet certificate expiry, and how long the cluster may stay shut down.
    Expiry(ExpiryArgs),
}

const CHECK_AFTER_HELP: &str = "\
Live: `check --pending`, `check csr-abc12`. Offline: `check --objects cluster.yaml csrs.yaml`.
CSRs nobody will act on, by cause: `check --hygiene` (live), `check --hygiene --objects dump.yaml`.
As a kubectl or oc plugin (an executable named kubectl-csr_approver on PATH):
`kubectl csr-approver check --pending`; kubectl's own flags are not passed to plugins,
so give --kubeconfig and --context after the plugin name.
Before a shutdown: `check expiry` says how long the cluster may stay off (`check expiry --help`).";

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
        if args.hygiene
            && let Some(name) = args.csrs.first()
        {
            return Err(Error::Usage(format!(
                "{name}: --hygiene reports on every CSR of the cluster; give no CSR names"
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
        // A hygiene report reads the CSRs of --objects too: a dump alone is enough.
        if args.csrs.is_empty() && !args.hygiene {
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
        (None, Some(name)) if args.hygiene => Err(Error::Usage(format!(
            "{name}: --hygiene reports on every CSR of the cluster; give no CSR names (or CSR files to report on them offline)"
        ))),
        (None, _) => Ok(CheckMode::Live),
    }
}

pub(super) async fn run_check(args: CheckArgs) -> Result<String> {
    let mode = check_mode(&args)?;
    let CheckArgs {
        command: _,
        kubeconfig,
        context,
        namespace,
        policy_configmap,
        pending,
        hygiene: hygiene_report,
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
    match (mode, hygiene_report) {
        (CheckMode::Live, true) => {
            let live = crate::live::LiveCheck {
                kubeconfig,
                context,
                namespace,
                policy_configmap,
                policy: file_policy,
                names: Vec::new(),
                pending_only: false,
            };
            let (report, note) = live.hygiene(now).await?;
            let note = if output == OutputFormat::Table {
                note
            } else {
                String::new()
            };
            Ok(format!("{note}{}", hygiene::render(&report, output)))
        }
        (CheckMode::Offline, true) => {
            let mut files: Vec<&Path> = objects.iter().map(PathBuf::as_path).collect();
            files.extend(csrs.iter().map(Path::new));
            offline_hygiene(&files, &file_policy.unwrap_or_default(), now, output)
        }
        (CheckMode::Live, false) => {
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
            Ok(format!(
                "{note}{}",
                check::render_colored(&evaluations, output, color)
            ))
        }
        (CheckMode::Offline, false) => {
            let offline = Offline {
                objects: &objects,
                csrs: &csrs,
                pending_only: pending,
                policy: file_policy.unwrap_or_default(),
            };
            offline.evaluate(now, output, color)
        }
    }
}

/// `check --hygiene` on files: every CSR they hold (a dump of the cluster), summarised by
/// cause. An unreadable CSR fails the check after the report on the others.
fn offline_hygiene(
    files: &[&Path],
    policy: &Policy,
    now: Timestamp,
    output: OutputFormat,
) -> Result<String> {
    let mut dump = ObjectSet::default();
    for path in files {
        dump.read_file(path)?;
    }
    let summaries: Vec<_> = dump.csrs.iter().map(facts::cached_csr_summary).collect();
    let report = hygiene::render(&HygieneReport::new(&summaries, Some(policy), now), output);
    match dump.unreadable.as_slice() {
        [] => Ok(report),
        [first, ..] => Err(Error::Incomplete {
            output: report,
            message: format!(
                "{} of {} CertificateSigningRequests could not be read (first: {}: {}); the others were summarised",
                dump.unreadable.len(),
                dump.unreadable.len() + summaries.len(),
                first.name,
                first.message
            ),
        }),
    }
}

/// `check` on files: the cluster's objects (`--objects`) and the CSRs to evaluate.
struct Offline<'a> {
    objects: &'a [PathBuf],
    csrs: &'a [String],
    pending_only: bool,
    policy: Policy,
}

impl Offline<'_> {
    fn evaluate(self, now: Timestamp, output: OutputFormat, color: bool) -> Result<String> {
        let mut cluster = ObjectSet::default();
        for path in self.objects {
            cluster.read_file(path)?;
            // The cluster's other CSRs feed the duplicate and flood rules: judging without
            // one could approve what it would refuse, so an unreadable one fails the check.
            if let Some(bad) = cluster.unreadable.first() {
                return Err(Error::BadFile {
                    path: path.clone(),
                    message: format!("CertificateSigningRequest {}: {}", bad.name, bad.message),
                });
            }
        }
        let mut targets = ObjectSet::default();
        for file in self.csrs {
            let path = Path::new(file);
            targets.read_file(path)?;
            if !targets.nodes.is_empty()
                || !targets.machines.is_empty()
                || targets.kubernetes_service.is_some()
                || !targets.identities.is_empty()
            {
                return Err(Error::Usage(format!(
                    "{}: CSR files may hold only CertificateSigningRequests; pass Nodes, Machines, NodeIdentities and the kubernetes Service with --objects",
                    path.display()
                )));
            }
        }
        // Every CSR of the files feeds the duplicate and flood rules; --pending only narrows
        // what is reported, as it does live.
        let known: Vec<_> = cluster.csrs.iter().map(facts::csr_facts).collect();
        let read: Vec<_> = targets.csrs.iter().map(facts::csr_facts).collect();
        let mut inventory = check::build_inventory(
            &cluster.nodes,
            cluster.machines,
            known.iter().chain(&read),
            cluster.kubernetes_service.as_ref(),
        );
        inventory.replace_identities(cluster.identities);
        let selected = read
            .iter()
            .filter(|c| !self.pending_only || c.state == CsrState::Pending);
        let evaluations = check::evaluate(selected, &inventory, &self.policy, now);
        let read = read.len();
        let report =
            check::render_with_unreadable(&evaluations, &targets.unreadable, output, color);
        // Verdicts are answers, whatever they say (exit 0); a CSR that could not be read is
        // an input error (exit 1, as for any bad file), reported after the verdicts on the
        // others.
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
}
