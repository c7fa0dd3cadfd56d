//! Serving renewals by the kubelet's current certificate (`serving.addressSources:
//! [KubeletCertificate]`): a SAN no status lists is the node's when the certificate its
//! kubelet presents today — verified against the kubelet-serving CA by `gather` — already
//! holds it. The same ownership, reserved-name and fence rules apply as to every source.

use csr_approver::decision::Reason;
use csr_approver::evidence::{KubeletCertificate, Observed, Wanted};
use csr_approver::policy::Policy;
use csr_approver::vocabulary::AddressValue;
use jiff::SignedDuration;

use crate::builders::*;
use crate::scenes::*;
use crate::{Case, check};

const TRUSTING: &str = "serving: {addressSources: [Machine, Node, KubeletCertificate]}";

/// worker-1's renewal: its status address and a secondary network's that no status lists.
fn renewal() -> Csr {
    serving(
        "worker-1",
        w("worker-1").ip("10.0.0.11").ip("192.168.50.11"),
    )
}

fn trusting_world() -> World {
    registered_world().policy_yaml(TRUSTING)
}

fn probe(node: &str) -> Wanted {
    Wanted::KubeletCertificate(node.to_string())
}

#[test]
fn the_current_certificate_vouches_for_its_addresses() {
    check([
        Case::new(
            "a renewal keeps the addresses its current certificate holds",
            trusting_world().kubelet_certificate("worker-1", &["10.0.0.11", "192.168.50.11"]),
            renewal(),
        )
        .approves(Reason::ServingAddressesVerified)
        .says("the serving certificate node worker-1's kubelet presents at 10.0.0.11:10250")
        .wants_nothing(),
        Case::new(
            "without the source the certificate is never asked for",
            registered_world().kubelet_certificate("worker-1", &["192.168.50.11"]),
            renewal(),
        )
        .waits(Reason::ForeignSan)
        .never_says("serving certificate")
        .wants_nothing(),
        Case::new(
            "an address every status lists needs no probe",
            trusting_world(),
            serving("worker-1", w("worker-1").ip("10.0.0.11")),
        )
        .approves(Reason::ServingAddressesVerified)
        .wants_nothing(),
    ]);
}

#[test]
fn refusals_name_the_rule() {
    let stale = Observed {
        at: ago(31),
        outcome: Ok(KubeletCertificate {
            endpoint: "10.0.0.11:10250".to_string(),
            serial: "01".to_string(),
            not_after: now() + SignedDuration::from_hours(1),
            addresses: vec![AddressValue::parse("192.168.50.11")],
        }),
    };
    let unverified = Observed {
        at: now(),
        outcome: Err(
            "10.0.0.11:10250: TLS handshake: invalid peer certificate: UnknownIssuer".to_string(),
        ),
    };
    let holding = |sans: &[&str]| trusting_world().kubelet_certificate("worker-1", sans);
    let fenced = registered_world()
        .policy_yaml(
            "serving: {addressSources: [Node, KubeletCertificate], allowedIPRanges: [10.0.0.0/24]}",
        )
        .kubelet_certificate("worker-1", &["10.0.0.11", "192.168.50.11"]);
    let reserved_ip = w("worker-1").ip("10.0.0.11").ip("169.254.169.254");
    let reserved_name = w("worker-1").ip("10.0.0.11").dns("kubernetes.default.svc");
    let rows = [
        Case::new(
            "not read yet: the controller is asked to read it",
            trusting_world(),
            renewal(),
        )
        .waits(Reason::ForeignSan)
        .says("has not been read")
        .wants(probe("worker-1")),
        Case::new(
            "a reading older than 30 s is no evidence",
            trusting_world().kubelet_certificate_reading("worker-1", stale),
            renewal(),
        )
        .waits(Reason::ForeignSan)
        .says("has not been read")
        .wants(probe("worker-1")),
        Case::new(
            "the kubelet's certificate did not verify",
            trusting_world().kubelet_certificate_reading("worker-1", unverified),
            renewal(),
        )
        .waits(Reason::ForeignSan)
        .says(
            "no evidence: 10.0.0.11:10250: TLS handshake: invalid peer certificate: UnknownIssuer",
        ),
        Case::new(
            "the current certificate lacks the address",
            holding(&["10.0.0.11"]),
            renewal(),
        )
        .waits(Reason::ForeignSan)
        .says("nor in the serving certificate its kubelet presents at 10.0.0.11:10250"),
        Case::new(
            "another node's status claims the address",
            holding(&["10.0.0.11", "192.168.50.11"])
                .node(node("worker-2", &[("InternalIP", "192.168.50.11")])),
            renewal(),
        )
        .waits(Reason::AddressConflict)
        .says("also by worker-2 (Node worker-2 status)"),
        Case::new(
            "a reserved address stays reserved",
            holding(&["10.0.0.11", "169.254.169.254"]),
            serving("worker-1", reserved_ip),
        )
        .waits(Reason::ReservedSan)
        .says("169.254.169.254"),
        Case::new(
            "a reserved name stays reserved",
            holding(&["10.0.0.11", "kubernetes.default.svc"]),
            serving("worker-1", reserved_name),
        )
        .waits(Reason::ReservedSan)
        .says("the API server's in-cluster name"),
        Case::new("fences still apply", fenced, renewal())
            .waits(Reason::SanOutsideFence)
            .says("outside serving.allowedIPRanges"),
        Case::new(
            "a node not registered is not probed",
            joining_world().policy_yaml(TRUSTING),
            renewal(),
        )
        .waits(Reason::NodeNotRegistered)
        .says("not registered"),
        Case::new(
            "another node's certificate is not this node's evidence",
            trusting_world().kubelet_certificate("worker-2", &["10.0.0.11", "192.168.50.11"]),
            renewal(),
        )
        .waits(Reason::ForeignSan)
        .says("has not been read")
        .wants(probe("worker-1")),
    ];
    // Only a missing or stale reading asks for a probe.
    check(rows.into_iter().map(|row| row.or_wants_nothing()));
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
