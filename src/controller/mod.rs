//! The running controller: one reconcile per CSR — gather facts from the caches, `decide`,
//! turn the decision into an effect (a plain value), and apply it in one thin writer.
//!
//! - [`context`]: what one reconcile needs, built in one place (and the test one).
//! - [`reconcile`]: facts → decision → effect, under the write lock when it writes.
//! - [`effect`]: the pure function (decision, mode, leadership, already explained) →
//!   what to write, whether to explain, when to look again; the requeue delays.
//! - [`writer`]: applies an effect: the condition, then the explanation.
//! - [`explain`]: Events, log lines and metrics, each said once per CSR.
//! - [`gauges`]: the queue gauges refreshed before each scrape.
//! - [`run`]: `csr-approver run`: the wiring of HTTP, Lease, watches and the controller.

use std::net::SocketAddr;
use std::path::PathBuf;

use kube::Client;

use crate::approval;

mod certificates;
mod context;
mod effect;
mod explain;
mod gauges;
mod memory;
mod reconcile;
mod run;
mod writer;

#[cfg(test)]
mod tests;

pub use run::run;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("HTTP server on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Approval(#[from] approval::ApprovalError),
    #[error(transparent)]
    Record(#[from] approval::RecordError),
}

/// Everything `csr-approver run` is configured with.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub kubeconfig: Option<PathBuf>,
    pub namespace: String,
    pub policy_configmap: String,
    pub http_addr: SocketAddr,
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_duration_seconds: u64,
    pub identity: String,
}

/// Builds a client from a kubeconfig file, or from the in-cluster/default configuration.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, ControllerError> {
    let config = kube_config(kubeconfig).await?;
    Client::try_from(config).map_err(|e| ControllerError::Config(e.to_string()))
}

/// The client configuration from a kubeconfig file, or in-cluster/default.
pub async fn kube_config(
    kubeconfig: Option<&std::path::Path>,
) -> Result<kube::Config, ControllerError> {
    match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| ControllerError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| ControllerError::Config(format!("{}: {e}", path.display())))
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ControllerError::Config(e.to_string())),
    }
}
