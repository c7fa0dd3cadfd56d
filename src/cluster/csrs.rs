//! The CSR summaries the duplicate and flood rules read, and the facts of pending CSRs
//! their reconciles read, kept from the controller's own CSR watch stream.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::runtime::watcher::{self, Event};

use super::cache::SeenCsr;
use super::issued::{self, IssuedNotices};
use super::{ClusterCache, Trigger, fire};
use crate::facts;
use crate::http::Source;
use crate::inventory::CsrState;
use crate::vocabulary::is_kubelet_signer;

/// What of the CSR watch reaches the controller's store, applied after [`track_csrs`] has
/// summarised every event: only CSRs awaiting a decision (pending, of a kubelet signer; the
/// watch read them without managed fields, `wire`). A decided CSR leaves the store (its
/// update becomes a delete there) and a re-list does not put it back: no reconcile acts on
/// it — its summary is in the cache, and a recent decision of ours that lacks its Event is
/// explained from there (`controller::explain`). With thousands of decided CSRs they were
/// most of the store.
pub fn for_the_store(
    event: Event<CertificateSigningRequest>,
) -> Option<Event<CertificateSigningRequest>> {
    let awaits_a_decision = |csr: &CertificateSigningRequest| {
        is_kubelet_signer(&csr.spec.signer_name) && facts::csr_state(csr) == CsrState::Pending
    };
    match event {
        Event::Apply(csr) if awaits_a_decision(&csr) => Some(Event::Apply(csr)),
        Event::Apply(csr) => Some(Event::Delete(csr)),
        Event::InitApply(csr) if awaits_a_decision(&csr) => Some(Event::InitApply(csr)),
        Event::InitApply(_) => None,
        other @ (Event::Delete(_) | Event::Init | Event::InitDone) => Some(other),
    }
}

/// Keeps the CSR summaries (duplicate and flood rules) current from the controller's own
/// CSR watch stream, and counts its first sync.
pub fn track_csrs<S>(
    stream: S,
    cache: Arc<ClusterCache>,
    trigger: Trigger,
    source: Source,
    issued: IssuedNotices,
) -> impl Stream<Item = Result<Event<CertificateSigningRequest>, watcher::Error>>
where
    S: Stream<Item = Result<Event<CertificateSigningRequest>, watcher::Error>>,
{
    let mut relist = Vec::new();
    let mut issued_csrs: Vec<issued::IssuedNotice> = Vec::new();
    let mut synced = false;
    stream.inspect(move |event| match event {
        Ok(Event::Apply(csr)) => {
            cache.observe_event(csr);
            issued::notice(&cache, csr, &issued);
        }
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
        Ok(Event::Init) => {
            relist.clear();
            issued_csrs.clear();
        }
        Ok(Event::InitApply(csr)) => {
            let seen = SeenCsr::of(csr, cache.known_request(csr));
            // Only the certificate, and only for a node with a record: a re-list holds
            // thousands of issued CSRs, which must not all be kept until it ends.
            if let Some(found) = issued::issued_for_a_recorded_node(&cache, csr, seen.node()) {
                issued_csrs.push(found);
            }
            relist.push(seen);
        }
        Ok(Event::InitDone) => {
            let listed = std::mem::take(&mut relist);
            cache.write().replace_csrs(listed);
            // Certificates issued while this replica was away.
            for found in issued_csrs.drain(..) {
                issued::send_if_newer(&cache, found, &issued);
            }
            synced = true;
            source.synced();
        }
        Err(error) if !synced => source.list_failed(error),
        Err(_) => {}
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    fn csr(signer: &str, conditions: serde_json::Value) -> CertificateSigningRequest {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "uid": "uid-a", "resourceVersion": "7"},
            "spec": {"request": "LS0tLS1CRUdJTg==", "signerName": signer,
                "usages": ["digital signature", "server auth"]},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn kind(event: &Option<Event<CertificateSigningRequest>>) -> &'static str {
        match event {
            Some(Event::Apply(_)) => "apply",
            Some(Event::InitApply(_)) => "init-apply",
            Some(Event::Delete(_)) => "delete",
            Some(Event::Init) => "init",
            Some(Event::InitDone) => "init-done",
            None => "none",
        }
    }

    #[test]
    fn the_store_holds_only_csrs_awaiting_a_decision() {
        use crate::vocabulary::{CLIENT_SIGNER, SERVING_SIGNER};
        let approved = serde_json::json!([{"type": "Approved", "status": "True"}]);
        let denied = serde_json::json!([{"type": "Denied", "status": "True"}]);
        let pending = csr(SERVING_SIGNER, serde_json::json!([]));

        let kept = for_the_store(Event::Apply(pending.clone()));
        assert_eq!(kind(&kept), "apply");
        if let Some(Event::Apply(kept)) = kept {
            assert_eq!(kept, pending, "a pending CSR is kept whole");
        }
        assert_eq!(
            kind(&for_the_store(Event::InitApply(csr(
                CLIENT_SIGNER,
                serde_json::json!([])
            )))),
            "init-apply"
        );
        for decided in [
            csr(SERVING_SIGNER, approved.clone()),
            csr(CLIENT_SIGNER, denied),
        ] {
            assert_eq!(
                kind(&for_the_store(Event::Apply(decided.clone()))),
                "delete",
                "a decision takes it out"
            );
            assert_eq!(
                kind(&for_the_store(Event::InitApply(decided))),
                "none",
                "a re-list leaves it out"
            );
        }
        let other = csr("example.com/other", serde_json::json!([]));
        assert_eq!(kind(&for_the_store(Event::Apply(other.clone()))), "delete");
        assert_eq!(kind(&for_the_store(Event::InitApply(other))), "none");
        assert_eq!(kind(&for_the_store(Event::Delete(pending))), "delete");
        assert_eq!(kind(&for_the_store(Event::Init)), "init");
        assert_eq!(kind(&for_the_store(Event::InitDone)), "init-done");
    }
}
