//! The cache's own tests: our verdicts over older events and re-lists, and the facts a
//! reconcile reads.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use super::*;

use crate::vocabulary::CLIENT_SIGNER;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

/// A CSR as the watch shows it: `approved` adds the Approved condition.
fn csr(name: &str, uid: &str, approved: bool) -> CertificateSigningRequest {
    let conditions = if approved {
        serde_json::json!([{"type": "Approved", "status": "True"}])
    } else {
        serde_json::json!([])
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "uid": uid, "resourceVersion": "1"},
        "spec": {
            "request": "",
            "signerName": CLIENT_SIGNER,
            "usages": ["digital signature", "client auth"]
        },
        "status": {"conditions": conditions}
    }))
    .unwrap()
}

fn observe(cache: &ClusterCache, csr: &CertificateSigningRequest) {
    cache.observe_event(csr);
}

fn relist(cache: &ClusterCache, csrs: &[CertificateSigningRequest]) {
    let listed = csrs
        .iter()
        .map(|csr| SeenCsr::of(csr, cache.known_request(csr)))
        .collect();
    cache.write().replace_csrs(listed);
}

#[test]
fn our_verdict_survives_older_events_and_relists() {
    let cache = ClusterCache::default();
    let pending = csr("a", "uid-a", false);
    observe(&cache, &pending);
    assert!(!cache.is_decided("a", Some("uid-a")));

    cache.mark_decided("a", Some("uid-a"), CsrState::Approved);
    assert!(cache.is_decided("a", Some("uid-a")));
    // A watch event sent before our write landed.
    observe(&cache, &pending);
    assert!(cache.is_decided("a", Some("uid-a")));
    assert_eq!(cache.read().csr_state("a"), Some(CsrState::Approved));
    // A re-list taken before our write landed.
    relist(&cache, std::slice::from_ref(&pending));
    assert!(cache.is_decided("a", Some("uid-a")));
    assert_eq!(cache.read().csr_state("a"), Some(CsrState::Approved));
    assert_eq!(cache.read().pending_since(jiff::Timestamp::MIN).count(), 0);

    // The watch catches up: from now on it is the only source.
    observe(&cache, &csr("a", "uid-a", true));
    assert!(cache.write().written.is_empty());
    assert!(cache.is_decided("a", Some("uid-a")));
}

#[test]
fn a_csr_recreated_under_the_same_name_is_a_new_request() {
    let cache = ClusterCache::default();
    observe(&cache, &csr("a", "uid-1", false));
    cache.mark_decided("a", Some("uid-1"), CsrState::Denied);
    cache.write().forget_csr("a");
    assert!(!cache.is_decided("a", Some("uid-1")));

    cache.mark_decided("a", Some("uid-1"), CsrState::Denied);
    observe(&cache, &csr("a", "uid-2", false));
    assert!(!cache.is_decided("a", Some("uid-2")));
    assert_eq!(cache.read().csr_state("a"), Some(CsrState::Pending));
    assert!(cache.write().written.is_empty());

    cache.mark_decided("a", Some("uid-2"), CsrState::Approved);
    relist(&cache, &[csr("a", "uid-3", false)]);
    assert!(!cache.is_decided("a", Some("uid-3")));
    assert_eq!(cache.read().csr_state("a"), Some(CsrState::Pending));
}

#[test]
fn a_relist_without_the_csr_forgets_our_verdict() {
    let cache = ClusterCache::default();
    observe(&cache, &csr("a", "uid-a", false));
    cache.mark_decided("a", Some("uid-a"), CsrState::Approved);
    relist(&cache, &[csr("b", "uid-b", false)]);
    assert!(cache.write().written.is_empty());
    assert!(!cache.is_decided("a", Some("uid-a")));
    assert_eq!(cache.read().csr_state("b"), Some(CsrState::Pending));
}

#[test]
fn a_request_is_parsed_once_per_object() {
    let cache = ClusterCache::default();
    let seen = csr("a", "uid-a", false);
    observe(&cache, &seen);
    let kept = cache.read_request("a").unwrap();
    // The reconcile of the object the watch showed reads the watch's parse.
    assert!(Arc::ptr_eq(&cache.csr_facts(&seen).request, &kept));
    // A later version of the same object (its spec cannot change): the same parse, with
    // what the later version says of the rest.
    let mut newer = seen.clone();
    newer.metadata.resource_version = Some("2".to_string());
    newer.metadata.labels = Some([("k".to_string(), "v".to_string())].into());
    observe(&cache, &newer);
    assert!(Arc::ptr_eq(&cache.read_request("a").unwrap(), &kept));
    assert!(Arc::ptr_eq(&cache.csr_facts(&newer).request, &kept));
    // Another object under the same name (deleted and re-created, the delete unseen): its
    // own parse, for the reconcile and for the cache.
    let other = csr("a", "uid-other", false);
    assert!(!Arc::ptr_eq(&cache.csr_facts(&other).request, &kept));
    observe(&cache, &other);
    assert!(!Arc::ptr_eq(&cache.read_request("a").unwrap(), &kept));
    observe(&cache, &seen);
    let kept = cache.read_request("a").unwrap();
    // Decided: nothing kept for a reconcile.
    observe(&cache, &csr("a", "uid-a", true));
    assert!(cache.read_request("a").is_none());
    // Re-listed pending: kept again; deleted: forgotten.
    relist(&cache, std::slice::from_ref(&seen));
    assert!(cache.read_request("a").is_some());
    assert!(!Arc::ptr_eq(&cache.read_request("a").unwrap(), &kept));
    cache.write().forget_csr("a");
    assert!(cache.read_request("a").is_none());
}

#[test]
fn a_decided_csr_seen_pending_before_counts_by_its_verified_parse() {
    let cache = ClusterCache::default();
    let valid = request_pem("worker-1", false);
    observe(&cache, &csr_requesting("a", &valid, false));
    let mut approved = csr_requesting("a", &valid, true);
    // What a decided CSR's own subject says is not read again: the verified parse of the
    // same object is (a spec cannot change; the uid proves it is the same object).
    approved.spec.request = k8s_openapi::ByteString(b"not read again".to_vec());
    observe(&cache, &approved);
    assert_eq!(cache.read().csr_node("a"), Some("worker-1"));
    assert_eq!(cache.read().csr_state("a"), Some(CsrState::Approved));
    // Another object under that name is read from its own request.
    let mut other = csr_requesting("a", &valid, true);
    other.metadata.uid = Some("uid-b".to_string());
    other.spec.request = k8s_openapi::ByteString(request_pem("worker-2", false).into_bytes());
    observe(&cache, &other);
    assert_eq!(cache.read().csr_node("a"), Some("worker-2"));
}

/// A PEM request for `system:node:<node>`; `forged` breaks its self-signature.
fn request_pem(node: &str, forged: bool) -> String {
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:nodes");
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut der = params.serialize_request(&key).unwrap().der().to_vec();
    if forged {
        let last = der.len() - 1;
        der[last] ^= 0x01;
    }
    // base64 as the API carries bytes, cut into PEM lines.
    let base64 = serde_json::to_value(k8s_openapi::ByteString(der)).unwrap();
    let base64 = base64.as_str().unwrap();
    let lines: Vec<&str> = base64
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        lines.join("\n")
    )
}

fn csr_requesting(name: &str, pem: &str, approved: bool) -> CertificateSigningRequest {
    let mut csr = csr(name, &format!("uid-{name}"), approved);
    csr.spec.request = k8s_openapi::ByteString(pem.as_bytes().to_vec());
    csr
}

#[test]
fn only_a_pending_request_must_verify_to_count_for_its_node() {
    let cache = ClusterCache::default();
    let valid = request_pem("worker-1", false);
    let forged = request_pem("worker-9", true);
    assert!(crate::request::parse_request(forged.as_bytes()).is_err());

    observe(&cache, &csr_requesting("valid-pending", &valid, false));
    observe(&cache, &csr_requesting("valid-decided", &valid, true));
    observe(&cache, &csr_requesting("forged-pending", &forged, false));
    observe(&cache, &csr_requesting("forged-decided", &forged, true));
    let inventory = cache.read();
    assert_eq!(inventory.csr_node("valid-pending"), Some("worker-1"));
    assert_eq!(inventory.csr_node("valid-decided"), Some("worker-1"));
    // Decided on, it would have to verify; it names no node and is refused as malformed.
    assert_eq!(inventory.csr_node("forged-pending"), None);
    // Decided already: what it minted (or would have) bears its subject's name, which it
    // counts against — a later request for worker-9 is held back, never let through.
    assert_eq!(inventory.csr_node("forged-decided"), Some("worker-9"));
    drop(inventory);
    assert!(cache.read_request("forged-decided").is_none());
    assert!(
        cache
            .read_request("forged-pending")
            .is_some_and(|request| request.is_err())
    );
}
