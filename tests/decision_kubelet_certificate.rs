//! Serving renewals by the kubelet's current certificate (`serving.addressSources:
//! [KubeletCertificate]`): a SAN no status lists is the node's when the certificate its
//! kubelet presents today — verified against the kubelet-serving CA by `gather` — already
//! holds it. The same ownership, reserved-name and fence rules apply as to every source.
//! One table of refusals, each naming the rule it breaks.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;

use builders::*;
use csr_approver::decision::{Reason, Verdict};
use csr_approver::evidence::{KubeletCertificate, Observed, Wanted};
use csr_approver::policy::Policy;

const TRUSTING: &str = "serving: {addressSources: [Machine, Node, KubeletCertificate]}";

/// worker-1's renewal: its status address and a secondary network's that no status lists.
fn renewal() -> Csr {
    Csr::serving(
        "worker-1",
        &Request::node("worker-1")
            .ip("10.0.0.11")
            .ip("192.168.50.11"),
    )
}

fn trusting_world() -> World {
    registered_world().policy_yaml(TRUSTING)
}

#[test]
fn a_renewal_keeps_the_addresses_its_current_certificate_holds() {
    let world = trusting_world().kubelet_certificate("worker-1", &["10.0.0.11", "192.168.50.11"]);
    let d = assert_decision!(
        world.decide(&renewal()),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
    assert!(
        d.message.contains(
            "the serving certificate node worker-1's kubelet presents at 10.0.0.11:10250"
        ),
        "{}",
        d.message
    );
    assert_eq!(d.wants, None);
}

#[test]
fn without_the_source_the_certificate_is_never_asked_for() {
    let world = registered_world().kubelet_certificate("worker-1", &["192.168.50.11"]);
    let d = assert_decision!(
        world.decide(&renewal()),
        Verdict::Wait { .. },
        Reason::ForeignSan
    );
    assert_eq!(d.wants, None);
    assert!(!d.message.contains("serving certificate"), "{}", d.message);
}

#[test]
fn an_address_every_status_lists_needs_no_probe() {
    let csr = Csr::serving("worker-1", &Request::node("worker-1").ip("10.0.0.11"));
    let d = assert_decision!(
        trusting_world().decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
    assert_eq!(d.wants, None);
}

fn reading(
    outcome: Result<KubeletCertificate, String>,
    at: jiff::Timestamp,
) -> Observed<KubeletCertificate> {
    Observed { at, outcome }
}

/// A case: what it shows, the world, the CSR, the reason, words of the message, and the
/// evidence the decision asks for.
type Case = (
    &'static str,
    World,
    Csr,
    Reason,
    &'static str,
    Option<Wanted>,
);

#[test]
fn refusals_name_the_rule() {
    let other_node = node("worker-2", &[("InternalIP", "192.168.50.11")]);
    let cases: Vec<Case> = vec![
        (
            "not read yet: the controller is asked to read it",
            trusting_world(),
            renewal(),
            Reason::ForeignSan,
            "has not been read",
            Some(Wanted::KubeletCertificate("worker-1".to_string())),
        ),
        (
            "a reading older than 30 s is no evidence",
            trusting_world().kubelet_certificate_reading(
                "worker-1",
                reading(
                    Ok(KubeletCertificate {
                        endpoint: "10.0.0.11:10250".to_string(),
                        serial: "01".to_string(),
                        not_after: now() + jiff::SignedDuration::from_hours(1),
                        addresses: vec![csr_approver::inventory::AddressValue::parse("192.168.50.11")],
                    }),
                    ago(31),
                ),
            ),
            renewal(),
            Reason::ForeignSan,
            "has not been read",
            Some(Wanted::KubeletCertificate("worker-1".to_string())),
        ),
        (
            "the kubelet's certificate did not verify",
            trusting_world().kubelet_certificate_reading(
                "worker-1",
                reading(
                    Err("10.0.0.11:10250: TLS handshake: invalid peer certificate: UnknownIssuer".to_string()),
                    now(),
                ),
            ),
            renewal(),
            Reason::ForeignSan,
            "no evidence: 10.0.0.11:10250: TLS handshake: invalid peer certificate: UnknownIssuer",
            None,
        ),
        (
            "the current certificate lacks the address",
            trusting_world().kubelet_certificate("worker-1", &["10.0.0.11"]),
            renewal(),
            Reason::ForeignSan,
            "nor in the serving certificate its kubelet presents at 10.0.0.11:10250",
            None,
        ),
        (
            "another node's status claims the address",
            trusting_world()
                .node(other_node)
                .kubelet_certificate("worker-1", &["10.0.0.11", "192.168.50.11"]),
            renewal(),
            Reason::AddressConflict,
            "also by worker-2 (Node worker-2 status)",
            None,
        ),
        (
            "a reserved address stays reserved",
            trusting_world().kubelet_certificate("worker-1", &["10.0.0.11", "169.254.169.254"]),
            Csr::serving(
                "worker-1",
                &Request::node("worker-1").ip("10.0.0.11").ip("169.254.169.254"),
            ),
            Reason::ReservedSan,
            "169.254.169.254",
            None,
        ),
        (
            "a reserved name stays reserved",
            trusting_world().kubelet_certificate("worker-1", &["10.0.0.11", "kubernetes.default.svc"]),
            Csr::serving(
                "worker-1",
                &Request::node("worker-1").ip("10.0.0.11").dns("kubernetes.default.svc"),
            ),
            Reason::ReservedSan,
            "the API server's in-cluster name",
            None,
        ),
        (
            "fences still apply",
            registered_world()
                .policy_yaml(
                    "serving: {addressSources: [Node, KubeletCertificate], allowedIPRanges: [10.0.0.0/24]}",
                )
                .kubelet_certificate("worker-1", &["10.0.0.11", "192.168.50.11"]),
            renewal(),
            Reason::SanOutsideFence,
            "outside serving.allowedIPRanges",
            None,
        ),
        (
            "a node not registered is not probed",
            joining_world().policy_yaml(TRUSTING),
            renewal(),
            Reason::NodeNotRegistered,
            "not registered",
            None,
        ),
        (
            "another node's certificate is not this node's evidence",
            trusting_world().kubelet_certificate("worker-2", &["10.0.0.11", "192.168.50.11"]),
            renewal(),
            Reason::ForeignSan,
            "has not been read",
            Some(Wanted::KubeletCertificate("worker-1".to_string())),
        ),
    ];
    for (case, world, csr, reason, words, wants) in cases {
        let d = world.decide(&csr);
        assert_eq!(d.reason, reason, "{case}: {}", d.message);
        assert!(!matches!(d.verdict, Verdict::Approve), "{case}");
        assert!(d.message.contains(words), "{case}: {}", d.message);
        assert_eq!(d.wants, wants, "{case}");
    }
}

#[test]
fn the_ca_file_must_be_an_absolute_path_when_the_source_is_trusted() {
    let error = Policy::from_yaml(
        "serving: {addressSources: [Node, KubeletCertificate], kubeletServingCAFile: ca.crt}",
    )
    .unwrap_err();
    assert_eq!(error.path, "serving.kubeletServingCAFile");
    let policy =
        Policy::from_yaml("serving: {addressSources: [Node, KubeletCertificate]}").unwrap();
    assert_eq!(
        policy.serving.kubelet_serving_ca_file,
        "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    );
    let error = Policy::from_yaml("serving: {addressSources: [KubeletCert]}").unwrap_err();
    assert!(
        error.path.starts_with("serving.addressSources"),
        "{}",
        error.path
    );
}
