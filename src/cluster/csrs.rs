//! The CSR summaries the duplicate and flood rules read, and the facts of pending CSRs
//! their reconciles read, kept from the controller's own CSR watch stream.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::runtime::watcher::{self, Event};

use super::cache::SeenCsr;
use super::{ClusterCache, SyncTracker, Trigger, fire};

/// Keeps the CSR summaries (duplicate and flood rules) current from the controller's own
/// CSR watch stream, and counts its first sync.
pub fn track_csrs<S>(
    stream: S,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    tracker: Arc<SyncTracker>,
) -> impl Stream<Item = Result<Event<CertificateSigningRequest>, watcher::Error>>
where
    S: Stream<Item = Result<Event<CertificateSigningRequest>, watcher::Error>>,
{
    let mut relist = Vec::new();
    let mut synced = false;
    stream.inspect(move |event| match event {
        Ok(Event::Apply(csr)) => cache.write().observe_csr(SeenCsr::of(csr)),
        Ok(Event::Delete(csr)) => {
            if let Some(name) = csr.metadata.name.as_deref() {
                // Its node, as summarised when it arrived: no second parse of the request.
                let node = cache.read().csr_node(name).map(str::to_string);
                cache.write().forget_csr(name);
                // A deleted client CSR may be what held its node's next one back (one
                // identity per host generation: an admin deletes the earlier CSR of a
                // re-provisioned host): look again at once rather than at the next requeue.
                if let Some(node) = node {
                    fire(&trigger, cache.pending_for(&[node]));
                }
            }
        }
        Ok(Event::Init) => relist.clear(),
        Ok(Event::InitApply(csr)) => relist.push(SeenCsr::of(csr)),
        Ok(Event::InitDone) => {
            cache.write().replace_csrs(std::mem::take(&mut relist));
            if !synced {
                synced = true;
                tracker.done();
                tracing::info!(kind = "CertificateSigningRequest", "watch synced");
            }
        }
        Err(_) => {}
    })
}
