//! The CSR summaries the duplicate and flood rules read, and the facts of pending CSRs
//! their reconciles read, kept from the controller's own CSR watch stream.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::ResourceExt;
use kube::runtime::watcher::{self, Event};

use super::cache::SeenCsr;
use super::{ClusterCache, SyncTracker, Trigger, fire};
use crate::facts;
use crate::inventory::CsrState;

/// What the controller's CSR store keeps of an object, applied after [`track_csrs`] has
/// summarised the whole of it. A reconcile of a decided CSR reads only its metadata and
/// status conditions (decided by whom, explained or not), so a decided CSR's request,
/// certificate and requester's `extra` are dropped: with thousands of decided CSRs they
/// were most of the store. Managed fields no reconcile reads.
pub fn keep_what_reconciles_read(csr: &mut CertificateSigningRequest) {
    csr.managed_fields_mut().clear();
    if facts::csr_state(csr) == CsrState::Pending {
        return;
    }
    csr.spec.request = ByteString(Vec::new());
    csr.spec.extra = None;
    if let Some(status) = csr.status.as_mut() {
        status.certificate = None;
    }
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;
    use crate::approval::written_decision;

    fn csr(conditions: serde_json::Value, certificate: Option<&str>) -> CertificateSigningRequest {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "uid": "uid-a", "resourceVersion": "7",
                "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
            "spec": {
                "request": "LS0tLS1CRUdJTg==",
                "signerName": crate::vocabulary::SERVING_SIGNER,
                "username": "system:node:a",
                "extra": {"authentication.kubernetes.io/credential-id": ["X509SHA256=ab"]},
                "usages": ["digital signature", "server auth"]
            },
            "status": {"conditions": conditions, "certificate": certificate}
        }))
        .unwrap()
    }

    #[test]
    fn a_pending_csr_is_kept_whole_but_its_managed_fields() {
        let mut pending = csr(serde_json::json!([]), None);
        let before = pending.clone();
        keep_what_reconciles_read(&mut pending);
        assert!(
            pending
                .metadata
                .managed_fields
                .unwrap_or_default()
                .is_empty()
        );
        assert_eq!(pending.spec, before.spec);
        assert_eq!(pending.status, before.status);
    }

    #[test]
    fn a_decided_csr_keeps_what_its_reconcile_reads_and_nothing_else() {
        let approved = serde_json::json!([{"type": "Approved", "status": "True",
            "reason": crate::approval::APPROVED_REASON,
            "message": format!("{}the node's own", crate::approval::MESSAGE_PREFIX)}]);
        for certificate in [None, Some("LS0tLS1DRVJU")] {
            let mut decided = csr(approved.clone(), certificate);
            let before = decided.clone();
            keep_what_reconciles_read(&mut decided);
            assert!(decided.spec.request.0.is_empty());
            assert!(decided.spec.extra.is_none());
            assert!(decided.status.as_ref().unwrap().certificate.is_none());
            assert_eq!(decided.metadata.name, before.metadata.name);
            assert_eq!(decided.metadata.uid, before.metadata.uid);
            assert_eq!(
                decided.status.as_ref().unwrap().conditions,
                before.status.as_ref().unwrap().conditions
            );
            assert!(written_decision(&decided).is_some());
            assert_eq!(written_decision(&decided), written_decision(&before));
        }
    }
}
