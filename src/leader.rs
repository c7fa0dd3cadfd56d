//! Leader election on a `coordination.k8s.io/v1` Lease (kube-lease-manager): every replica
//! watches and keeps its caches warm, only the holder writes.

use futures::channel::mpsc::UnboundedSender;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
#[error("leader election on Lease {namespace}/{name}: {source}")]
pub struct LeaderError {
    namespace: String,
    name: String,
    source: kube_lease_manager::LeaseManagerError,
}

pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration_seconds: u64,
}

/// Whether this replica may write, and the task that keeps the Lease. Dropping every
/// receiver makes the task release the Lease; await the handle to be sure it did.
pub struct Leadership {
    pub is_leader: watch::Receiver<bool>,
    pub lease_task: Option<JoinHandle<()>>,
    /// Keeps an always-true channel open when leader election is off.
    _fixed: Option<watch::Sender<bool>>,
}

/// Without leader election this replica always writes (a single replica only: the Helm
/// chart refuses replicas > 1 without it).
pub fn always_leader(metrics: &Metrics) -> Leadership {
    metrics.leader.set(1);
    let (sender, is_leader) = watch::channel(true);
    Leadership {
        is_leader,
        lease_task: None,
        _fixed: Some(sender),
    }
}

pub async fn elect(
    client: Client,
    config: LeaseConfig,
    metrics: Metrics,
    on_elected: UnboundedSender<()>,
) -> Result<Leadership, LeaderError> {
    let LeaseConfig {
        namespace,
        name,
        identity,
        duration_seconds,
    } = config;
    let manager = LeaseManagerBuilder::new(client, name.clone())
        .with_namespace(namespace.clone())
        .with_identity(identity.clone())
        .with_duration(duration_seconds)
        .with_grace(duration_seconds.div_ceil(3).max(2))
        .with_field_manager("csr-approver")
        .build()
        .await
        .map_err(|source| LeaderError {
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })?;
    let (mut lease_state, lease_handle) = manager.watch().await;
    let (sender, is_leader) = watch::channel(*lease_state.borrow());
    let task = tokio::spawn(async move {
        loop {
            let leading = *lease_state.borrow_and_update();
            metrics.leader.set(i64::from(leading));
            if sender.send(leading).is_err() {
                break;
            }
            if leading {
                tracing::info!(%identity, "became leader");
                let _ = on_elected.unbounded_send(());
            } else {
                tracing::info!(%identity, "standing by: not the leader");
            }
            tokio::select! {
                changed = lease_state.changed() => if changed.is_err() { break },
                () = sender.closed() => break,
            }
        }
        metrics.leader.set(0);
        // Dropping the lease receiver makes the manager release the Lease.
        drop(lease_state);
        match lease_handle.await {
            Ok(Ok(_)) => tracing::info!("Lease released"),
            Ok(Err(error)) => tracing::warn!(%error, "releasing the Lease failed"),
            Err(error) => tracing::warn!(%error, "Lease task failed"),
        }
    });
    Ok(Leadership {
        is_leader,
        lease_task: Some(task),
        _fixed: None,
    })
}
