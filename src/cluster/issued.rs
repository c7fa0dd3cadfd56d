//! Certificates the signer issued on kubelet CSRs, noticed on the CSR watch for the nodes
//! csr-approver keeps a `NodeIdentity` of, and handed to the controller to record (the
//! node's newest client and serving certificate: what the record shows beside the
//! identities minted, and what remains known after the CSR cleaner deletes the CSR).

use futures::channel::mpsc;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use super::ClusterCache;
use crate::identity::{Issued, read_issued};
use crate::vocabulary::Signer;

/// A certificate issued for `node` that its record does not hold yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedNotice {
    pub node: String,
    pub issued: Issued,
}

pub type IssuedNotices = mpsc::UnboundedSender<IssuedNotice>;

/// Sends a notice when `csr` carries a certificate of a kubelet signer for a node whose
/// record holds an older one (or none). Call after the cache saw the event: the node is
/// the one its summary names, from the request verified (or, once decided, read) there.
pub(super) fn notice(
    cache: &ClusterCache,
    csr: &CertificateSigningRequest,
    notices: &IssuedNotices,
) {
    let node = csr
        .metadata
        .name
        .as_deref()
        .and_then(|name| cache.read().csr_node(name).map(str::to_string));
    if let Some(found) = issued_for_a_recorded_node(cache, csr, node.as_deref()) {
        send_if_newer(cache, found, notices);
    }
}

/// The certificate `csr` carries, for `node`, if the node has a record. During a re-list
/// the cache does not hold the listed CSRs yet: the caller names the node.
pub(super) fn issued_for_a_recorded_node(
    cache: &ClusterCache,
    csr: &CertificateSigningRequest,
    node: Option<&str>,
) -> Option<IssuedNotice> {
    let pem = csr.status.as_ref()?.certificate.as_ref()?;
    let signer = Signer::of(&csr.spec.signer_name)?;
    let name = csr.metadata.name.as_deref()?;
    let node = node?;
    cache.read().identity(node)?;
    match read_issued(name, &pem.0) {
        Ok(certificate) => Some(IssuedNotice {
            node: node.to_string(),
            issued: Issued {
                signer,
                certificate,
            },
        }),
        Err(error) => {
            tracing::debug!(csr = name, %error, "issued certificate unreadable; not recorded");
            None
        }
    }
}

/// Hands `found` on when its node's record holds an older certificate of its kind.
pub(super) fn send_if_newer(cache: &ClusterCache, found: IssuedNotice, notices: &IssuedNotices) {
    let newer = cache
        .read()
        .identity(&found.node)
        .is_some_and(|record| record.with_issued(&found.issued).is_some());
    if newer {
        let _ = notices.unbounded_send(found);
    }
}
