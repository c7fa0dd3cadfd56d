//! Serving renewals by the kubelet's current certificate (`serving.addressSources:
//! [KubeletCertificate]`): a SAN no status lists is the node's when the certificate its
//! kubelet presents today — verified against the kubelet-serving CA by `gather` — already
//! holds it — for at most `serving.kubeletCertificateMaxAge` after independent evidence
//! last vouched for it at an approval (the node's `NodeIdentity`), so that a certificate
//! cannot renew its own addresses forever. The same ownership, reserved-name and fence
//! rules apply as to every source.

use csr_approver::decision::Reason;
use csr_approver::evidence::{KubeletCertificate, Observed, Wanted};
use csr_approver::policy::Policy;
use csr_approver::vocabulary::AddressValue;
use jiff::{SignedDuration, Timestamp};

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

const DAY: i64 = 24 * 3600;

/// `trusting_world` whose record says independent evidence vouched for worker-1's
/// secondary address `days` ago.
fn vouched_world(days: i64) -> World {
    trusting_world().vouched("worker-1", "192.168.50.11", days_ago(days))
}

fn days_ago(days: i64) -> Timestamp {
    ago(days * DAY)
}

fn probe(node: &str) -> Wanted {
    Wanted::KubeletCertificate(node.to_string())
}

#[test]
fn the_current_certificate_vouches_for_its_addresses() {
    check([
        Case::new(
            "a renewal keeps the addresses its current certificate holds",
            vouched_world(1).kubelet_certificate("worker-1", &["10.0.0.11", "192.168.50.11"]),
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
    let holding = |sans: &[&str]| vouched_world(1).kubelet_certificate("worker-1", sans);
    let fenced = registered_world()
        .policy_yaml(
            "serving: {addressSources: [Node, KubeletCertificate], allowedIPRanges: [10.0.0.0/24]}",
        )
        .vouched("worker-1", "192.168.50.11", days_ago(1))
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

/// §8: each renewal approved on the kubelet's certificate issues one with the same SANs,
/// so that certificate alone would keep an address renewable forever. It vouches only
/// within `serving.kubeletCertificateMaxAge` of independent evidence.
#[test]
fn the_own_certificate_vouches_only_within_the_bound_of_independent_evidence() {
    let presenting =
        |world: World| world.kubelet_certificate("worker-1", &["10.0.0.11", "192.168.50.11"]);
    let inventoried = registered_world().policy_yaml(
        "{serving: {addressSources: [Machine, Node, KubeletCertificate]}, inventory: [{name: worker-1, addresses: [192.168.50.11]}]}",
    );
    let longer = registered_world().policy_yaml(
        "serving: {addressSources: [Machine, Node, KubeletCertificate], kubeletCertificateMaxAge: 1000h}",
    );
    check([
        Case::new(
            "a SAN only the kubelet's own certificate holds, never independently vouched",
            presenting(trusting_world()),
            renewal(),
        )
        .waits(Reason::ForeignSan)
        .says("IP SAN 192.168.50.11 is vouched for only by the serving certificate node worker-1's kubelet presents")
        .says("ever vouched for it at an approval (NodeIdentity worker-1 has no entry for it)")
        .says("serving.kubeletCertificateMaxAge (30days)")
        .wants_nothing(),
        Case::new(
            "independently vouched 40 days ago, 30 days allowed",
            presenting(vouched_world(40)),
            renewal(),
        )
        .waits(Reason::ForeignSan)
        .says("has vouched for it since")
        .says("serving.kubeletCertificateMaxAge (30days)")
        .wants_nothing(),
        Case::new(
            "independently vouched 40 days ago, 1000h allowed",
            presenting(longer.vouched("worker-1", "192.168.50.11", days_ago(40))),
            renewal(),
        )
        .approves(Reason::ServingAddressesVerified),
        Case::new(
            "independently vouched a day ago",
            presenting(vouched_world(1)),
            renewal(),
        )
        .approves(Reason::ServingAddressesVerified)
        .says("the serving certificate node worker-1's kubelet presents"),
        Case::new(
            "independently vouched just within the bound",
            presenting(trusting_world().vouched("worker-1", "192.168.50.11", ago(30 * DAY - 60))),
            renewal(),
        )
        .approves(Reason::ServingAddressesVerified),
        Case::new(
            "another address vouched for does not vouch for this one",
            presenting(trusting_world().vouched("worker-1", "192.168.50.12", days_ago(1))),
            renewal(),
        )
        .waits(Reason::ForeignSan)
        .says("no entry for it"),
        Case::new(
            "another node's record vouches for nothing of this node's",
            presenting(trusting_world().vouched("worker-2", "192.168.50.11", days_ago(1))),
            renewal(),
        )
        .waits(Reason::ForeignSan)
        .says("NodeIdentity worker-1 has no entry for it"),
        Case::new(
            "a SAN an inventory entry gives needs no record",
            presenting(inventoried),
            renewal(),
        )
        .approves(Reason::ServingAddressesVerified)
        .says("inventory"),
        Case::new(
            "a SAN the Node's status lists needs no record, however old the record",
            presenting(trusting_world().vouched("worker-1", "10.0.0.11", days_ago(400))),
            serving("worker-1", w("worker-1").ip("10.0.0.11")),
        )
        .approves(Reason::ServingAddressesVerified),
        Case::new(
            "the same SAN also in a Node status address needs no record",
            presenting(
                trusting_world()
                    .node(node(
                        "worker-1",
                        &[("InternalIP", "10.0.0.11"), ("InternalIP", "192.168.50.11")],
                    )),
            ),
            renewal(),
        )
        .approves(Reason::ServingAddressesVerified),
    ]);
}

/// The approval tells the writer which SANs independent evidence vouched for, and only
/// when the policy trusts the kubelet's certificate: the default path writes no record.
#[test]
fn an_approval_names_the_addresses_independent_evidence_vouched_for() {
    let approved = vouched_world(1)
        .kubelet_certificate("worker-1", &["10.0.0.11", "192.168.50.11"])
        .decide(&renewal());
    assert_eq!(
        approved.reason,
        Reason::ServingAddressesVerified,
        "{}",
        approved.message
    );
    assert_eq!(
        approved.vouches_for,
        vec![AddressValue::parse("10.0.0.11")],
        "the certificate's own SAN is not vouched for by itself"
    );
    let by_default = registered_world().decide(&serving("worker-1", w("worker-1").ip("10.0.0.11")));
    assert_eq!(
        by_default.reason,
        Reason::ServingAddressesVerified,
        "{}",
        by_default.message
    );
    assert!(
        by_default.vouches_for.is_empty(),
        "{:?}",
        by_default.vouches_for
    );
    let refused = trusting_world()
        .kubelet_certificate("worker-1", &["10.0.0.11", "192.168.50.11"])
        .decide(&renewal());
    assert!(refused.vouches_for.is_empty());
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
