//! What one reconcile needs, built in one place: [`Context::new`] for `run`,
//! [`Context::test`] for tests on a mocked API.

use std::sync::Arc;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::Client;
use kube::api::Api;
use kube::runtime::events::Reporter;

use super::memory::Memory;
use crate::approval;
use crate::cluster::ClusterCache;
use crate::decision::Reason;
use crate::http::Readiness;
use crate::identity::NodeIdentity;
use crate::leader::WriteGate;
use crate::metrics::Metrics;
use crate::policy_watch::PolicyHolder;

pub(super) struct Context {
    pub(super) client: Client,
    pub(super) csrs: Api<CertificateSigningRequest>,
    /// The durable record of identities minted, written before each approval that mints.
    pub(super) identities: Api<NodeIdentity>,
    pub(super) cache: Arc<ClusterCache>,
    pub(super) policy: Arc<PolicyHolder>,
    pub(super) metrics: Metrics,
    pub(super) recorder: approval::Publisher,
    /// Open while this replica holds the Lease and renewed it recently enough (the fence).
    pub(super) leader: WriteGate,
    /// Open once every watch the decision reads has listed and a policy is in force.
    pub(super) readiness: Arc<Readiness>,
    /// The last decision explained per CSR (by uid), so a requeue repeating it adds no
    /// Event.
    pub(super) explained: Memory<String, (&'static str, Reason)>,
    /// The write failures explained per CSR (by uid) and cause: one Warning Event for each,
    /// not one per 5-second retry.
    pub(super) failed_writes: Memory<(String, &'static str), ()>,
    /// Serialises the writes of verdicts that other decisions read (client CSRs: the
    /// duplicate, recovery and flood rules), so each sees the write before it;
    /// `decision::verdicts_are_read`.
    pub(super) write_lock: tokio::sync::Mutex<()>,
    /// Turns to reconcile, first come first served (see `reconcile`).
    pub(super) turns: tokio::sync::Semaphore,
}

/// Reconciles past their turn at once: as many serving verdicts are written side by side
/// (client verdicts queue under `write_lock`). Each running reconcile holds its whole
/// state (≈ 5 KiB), so a thousand pending CSRs all running at once held megabytes of it.
const MAX_CONCURRENT_RECONCILES: usize = 8;

impl Context {
    /// `cache`, `policy`, `metrics`, `leader` and `readiness` are shared with the watches,
    /// the policy watch, the Lease loop and the HTTP server.
    pub(super) fn new(
        client: Client,
        cache: Arc<ClusterCache>,
        policy: Arc<PolicyHolder>,
        metrics: Metrics,
        recorder: approval::Publisher,
        leader: WriteGate,
        readiness: Arc<Readiness>,
    ) -> Context {
        Context {
            csrs: Api::all(client.clone()),
            identities: Api::all(client.clone()),
            client,
            cache,
            policy,
            metrics,
            recorder,
            leader,
            readiness,
            explained: Memory::default(),
            failed_writes: Memory::default(),
            write_lock: tokio::sync::Mutex::new(()),
            turns: tokio::sync::Semaphore::new(MAX_CONCURRENT_RECONCILES),
        }
    }

    /// The Event publisher every replica uses; `instance` names the replica.
    pub(super) fn recorder(client: Client, instance: Option<String>) -> approval::Publisher {
        approval::Publisher::new(
            client,
            Reporter {
                controller: approval::CONTROLLER.to_string(),
                instance,
            },
        )
    }

    /// A context on `client` (a `tower_test::mock` service in tests): always leading, an
    /// empty cache, not ready and no policy until the test says so.
    #[cfg(test)]
    pub(super) fn test(client: Client) -> Context {
        #[allow(clippy::unwrap_used)] // a registry that does not register fails the test
        let metrics = Metrics::new().unwrap();
        let recorder = Context::recorder(client.clone(), None);
        Context::new(
            client,
            Arc::new(ClusterCache::default()),
            Arc::new(PolicyHolder::default()),
            metrics,
            recorder,
            WriteGate::always(),
            Arc::new(Readiness::default()),
        )
    }
}
