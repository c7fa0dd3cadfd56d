//! `csr-approver check expiry` (also `csr-approver expiry`, hence `kubectl csr-approver
//! expiry`): every node's kubelet certificates and how long the cluster may stay shut
//! down, live (a cluster, read-only) or offline (a dump).

use std::path::PathBuf;
use std::time::Duration;

use super::check::parse_now;
use super::policy::load_policy;
use crate::check::OutputFormat;
use crate::expiry::{self, MAX_MARGIN, Report};
use crate::objects::ObjectSet;
use crate::{Error, Result};

#[derive(Debug, clap::Args)]
#[command(after_help = EXPIRY_AFTER_HELP)]
pub struct ExpiryArgs {
    /// Live mode: read Nodes, NodeIdentities, CSRs and the policy ConfigMap from the
    /// cluster of this kubeconfig file (read-only). Without it and without --objects, the
    /// cluster is found as kubectl finds it.
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
    /// Offline: files with the cluster's Nodes, NodeIdentities and CSRs (YAML or JSON as
    /// `kubectl get -o yaml` prints them).
    #[arg(long = "objects", value_name = "FILE")]
    pub objects: Vec<PathBuf>,
    /// Policy file (for client.recovery); overrides the ConfigMap in live mode; built-in
    /// defaults offline without it.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// How long before the earliest client certificate's notAfter the cluster must be up
    /// again (e.g. 30m, 2h, 1d; at most 366d).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_margin)]
    pub margin: Duration,
    /// As of this instant (RFC 3339); default: now.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,
    /// Output format: a summary line and a table, or one JSON object.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: OutputFormat,
}

const EXPIRY_AFTER_HELP: &str = "\
Live: `check expiry`, `check expiry --margin 4h -o json`. Offline: `check expiry --objects dump.yaml`
(kubectl get nodes,nodeidentities,csr -o yaml > dump.yaml). As a kubectl or oc plugin:
`kubectl csr-approver expiry`.";

fn parse_margin(text: &str) -> std::result::Result<Duration, String> {
    if text.trim_start().starts_with('-') {
        return Err(format!("{text:?} is negative"));
    }
    let margin = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration ({e}): use e.g. 30m, 2h, 1d"))?;
    if margin > MAX_MARGIN {
        return Err(format!(
            "{text:?} is longer than {}, longer than kubelet certificates live",
            humantime::format_duration(MAX_MARGIN)
        ));
    }
    Ok(margin)
}

pub(super) async fn run_expiry(args: ExpiryArgs) -> Result<String> {
    let now = parse_now(args.now.as_deref())?;
    let file_policy = args.policy.as_deref().map(load_policy).transpose()?;
    let (report, note) = if args.objects.is_empty() {
        let live = crate::live::LiveExpiry {
            kubeconfig: args.kubeconfig,
            context: args.context,
            namespace: args.namespace,
            policy_configmap: args.policy_configmap,
            policy: file_policy,
        };
        live.report(now, args.margin).await?
    } else {
        if let Some(flag) = match (&args.kubeconfig, &args.context) {
            (Some(_), _) => Some("--kubeconfig"),
            (None, Some(_)) => Some("--context"),
            (None, None) => None,
        } {
            return Err(Error::Usage(format!(
                "--objects is for offline mode; with {flag} the cluster is read live"
            )));
        }
        let policy = file_policy.unwrap_or_default();
        let mut cluster = ObjectSet::default();
        for path in &args.objects {
            cluster.read_file(path)?;
            // A CSR left out could be the one that holds a node's certificate.
            if let Some(bad) = cluster.unreadable.first() {
                return Err(Error::BadFile {
                    path: path.clone(),
                    message: format!("CertificateSigningRequest {}: {}", bad.name, bad.message),
                });
            }
        }
        if cluster.nodes.is_empty() {
            return Err(Error::Usage(
                "the --objects files hold no Node: give the cluster's Nodes (kubectl get nodes -o yaml) with its NodeIdentities and CSRs".to_string(),
            ));
        }
        let nodes: Vec<String> = cluster
            .nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let certificates =
            expiry::node_certificates(&nodes, &cluster.identities, &cluster.csrs, &policy);
        let report = Report::new(
            certificates,
            now,
            args.margin,
            policy.client.recovery.enabled,
        );
        (report, String::new())
    };
    Ok(match args.output {
        OutputFormat::Table => format!("{note}{}", report.to_table()),
        OutputFormat::Json => report.to_json(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_are_durations_within_bounds() {
        assert_eq!(parse_margin("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_margin("0s"), Ok(Duration::ZERO));
        assert!(parse_margin("-1h").is_err_and(|e| e.contains("negative")));
        assert!(parse_margin("soon").is_err_and(|e| e.contains("not a duration")));
        assert!(parse_margin("400d").is_err_and(|e| e.contains("longer than")));
    }
}
