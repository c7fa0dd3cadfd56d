//! `csr-approver run`: the controller.

use std::path::PathBuf;

use super::logging::{LogFormat, init_logging};
use crate::Result;

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
    #[command(flatten)]
    pub leader: LeaderArgs,
    /// This replica's identity in the Lease and in Events (the Pod name in a cluster).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Leader election, for several replicas.
#[derive(Debug, clap::Args)]
pub struct LeaderArgs {
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
}

pub(super) async fn run_controller(args: RunArgs) -> Result<String> {
    // Without `..`: a new flag that is not passed on is an unused variable.
    let RunArgs {
        kubeconfig,
        namespace,
        policy_configmap,
        http_addr,
        leader:
            LeaderArgs {
                leader_election,
                lease_name,
                lease_duration,
            },
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
