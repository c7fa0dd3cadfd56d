use std::borrow::Cow;

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::policy::OPENSHIFT_NODE_BOOTSTRAPPER;
use crate::vocabulary::{CLIENT_SIGNER, NODES_GROUP, SERVING_SIGNER};

const NOW: &str = "2026-11-23T12:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap_or_default()
}

fn minutes_ago(minutes: i64) -> Option<Timestamp> {
    now().checked_sub(SignedDuration::from_mins(minutes)).ok()
}

fn groups(names: &[&str]) -> Vec<Cow<'static, str>> {
    names.iter().map(|g| Cow::Owned(g.to_string())).collect()
}

/// A node's own CSR (renewal or serving), created `age` minutes ago, in `state`.
fn own(name: &str, signer: &'static str, state: CsrState, age: i64) -> CsrSummary {
    CsrSummary {
        name: name.into(),
        signer: Cow::Borrowed(signer),
        created: minutes_ago(age),
        state,
        node_name: Some("worker-1".to_string()),
        requester: "system:node:worker-1".to_string(),
        groups: groups(&[NODES_GROUP, "system:authenticated"]),
        approved_at: None,
    }
}

/// A new node's client CSR from OpenShift's bootstrapper (the default policy's).
fn bootstrap(name: &str, node: &str, state: CsrState, age: i64) -> CsrSummary {
    CsrSummary {
        node_name: Some(node.to_string()),
        requester: OPENSHIFT_NODE_BOOTSTRAPPER.to_string(),
        groups: groups(&[
            "system:serviceaccounts",
            "system:serviceaccounts:openshift-machine-config-operator",
            "system:authenticated",
        ]),
        ..own(name, CLIENT_SIGNER, state, age)
    }
}

fn stranger(name: &str, signer: &'static str, age: i64) -> CsrSummary {
    CsrSummary {
        requester: "system:serviceaccount:default:builder".to_string(),
        groups: groups(&["system:serviceaccounts", "system:authenticated"]),
        ..own(name, signer, CsrState::Pending, age)
    }
}

fn classified(csr: &CsrSummary) -> Option<StaleCause> {
    classify(csr, Some(&Policy::default()), now())
}

#[test]
fn healthy_csrs_are_not_stale() {
    for (csr, what) in [
        (
            own("issued", CLIENT_SIGNER, CsrState::Issued, 600),
            "issued, however old",
        ),
        (
            bootstrap("joining", "worker-2", CsrState::Issued, 90),
            "a bootstrap CSR issued",
        ),
        (
            own("fresh", SERVING_SIGNER, CsrState::Pending, 1),
            "pending a minute",
        ),
        (
            own("waiting", CLIENT_SIGNER, CsrState::Pending, 14),
            "a renewal within the kubelet's 15 minutes",
        ),
        (
            bootstrap("booting", "worker-2", CsrState::Pending, 59),
            "a bootstrap request within the kubelet's hour",
        ),
    ] {
        assert_eq!(classified(&csr), None, "{what}");
    }
}

#[test]
fn an_approved_csr_the_signer_refused_is_signer_failed() {
    let mut failed = own("refused", SERVING_SIGNER, CsrState::Failed, 1);
    failed.approved_at = minutes_ago(1);
    assert_eq!(
        classified(&failed),
        Some(StaleCause::SignerFailed),
        "at once: final"
    );
}

#[test]
fn an_approval_without_a_certificate_past_the_grace_is_not_issued() {
    let mut approved = own("unsigned", CLIENT_SIGNER, CsrState::Approved, 30);
    approved.approved_at = minutes_ago(4);
    assert_eq!(classified(&approved), None, "the signer has 5 minutes");
    approved.approved_at = minutes_ago(6);
    assert_eq!(classified(&approved), Some(StaleCause::NotIssued));
    // Without an approval time, the creation time bounds it.
    approved.approved_at = None;
    assert_eq!(classified(&approved), Some(StaleCause::NotIssued));
    let undated = CsrSummary {
        created: None,
        ..approved
    };
    assert_eq!(classified(&undated), None, "no time: not aged");
}

#[test]
fn denied_csrs_are_stale_at_once() {
    let denied = own("no", CLIENT_SIGNER, CsrState::Denied, 0);
    assert_eq!(classified(&denied), Some(StaleCause::Denied));
}

#[test]
fn pending_past_the_kubelets_wait_is_pending_too_long() {
    // The certificate manager's 15 minutes for a node's own request...
    for signer in [CLIENT_SIGNER, SERVING_SIGNER] {
        let csr = own("renewal", signer, CsrState::Pending, 16);
        assert_eq!(
            classified(&csr),
            Some(StaleCause::PendingTooLong),
            "{signer}"
        );
    }
    // ...and the bootstrap's hour.
    let csr = bootstrap("join", "worker-2", CsrState::Pending, 61);
    assert_eq!(classified(&csr), Some(StaleCause::PendingTooLong));
    let undated = CsrSummary {
        created: None,
        ..csr
    };
    assert_eq!(classified(&undated), None, "no time: not aged");
}

#[test]
fn a_requester_nothing_approves_is_unknown_however_fresh() {
    assert_eq!(
        classified(&stranger("s1", CLIENT_SIGNER, 0)),
        Some(StaleCause::UnknownRequester)
    );
    assert_eq!(
        classified(&stranger("s2", SERVING_SIGNER, 600)),
        Some(StaleCause::UnknownRequester),
        "unknown, not merely old"
    );
    // A bootstrapper asks for client certificates only: a serving CSR from it is unknown.
    let mut serving = bootstrap("b", "worker-2", CsrState::Pending, 0);
    serving.signer = Cow::Borrowed(SERVING_SIGNER);
    assert_eq!(classified(&serving), Some(StaleCause::UnknownRequester));
    // The OpenShift bootstrapper's name without its groups is not the bootstrapper.
    let mut impostor = bootstrap("i", "worker-2", CsrState::Pending, 0);
    impostor.groups = groups(&["system:authenticated"]);
    assert_eq!(classified(&impostor), Some(StaleCause::UnknownRequester));
}

#[test]
fn the_policys_bootstrappers_decide_who_is_known() {
    let kubeadm = Policy::from_yaml("client:\n  bootstrappers:\n  - group: system:bootstrappers\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let token = CsrSummary {
        requester: "system:bootstrap:abcdef".to_string(),
        groups: groups(&["system:bootstrappers", "system:authenticated"]),
        ..own("t", CLIENT_SIGNER, CsrState::Pending, 0)
    };
    assert_eq!(classify(&token, Some(&kubeadm), now()), None);
    assert_eq!(
        classify(&token, Some(&Policy::default()), now()),
        Some(StaleCause::UnknownRequester)
    );
    // No policy in force: no client requester is called unknown.
    assert_eq!(classify(&token, None, now()), None);
}

#[test]
fn other_signers_are_not_ours_to_report() {
    let csr = own("other", "example.com/signer", CsrState::Denied, 600);
    assert_eq!(classified(&csr), None);
}

#[test]
fn counts_and_report_agree_by_cause() {
    let mut failed = own("f", SERVING_SIGNER, CsrState::Failed, 30);
    failed.node_name = Some("worker-3".to_string());
    let csrs = [
        failed,
        own("d1", CLIENT_SIGNER, CsrState::Denied, 50),
        own("d2", CLIENT_SIGNER, CsrState::Denied, 40),
        bootstrap("d3", "worker-2", CsrState::Denied, 70),
        own("ok", CLIENT_SIGNER, CsrState::Issued, 70),
        stranger("s", CLIENT_SIGNER, 3),
    ];
    let policy = Policy::default();
    let counts = count(&csrs, Some(&policy), now());
    assert_eq!(
        counts.map(|(c, n)| (c.as_str(), n)),
        [
            ("signer_failed", 1),
            ("not_issued", 0),
            ("denied", 3),
            ("unknown_requester", 1),
            ("pending_too_long", 0),
        ]
    );
    let report = HygieneReport::new(&csrs, Some(&policy), now());
    assert_eq!(report.total(), 5);
    let denied = &report.causes[2];
    assert_eq!(denied.cause, "denied");
    assert_eq!(denied.count, 3);
    assert_eq!(denied.examples, ["d3", "d1", "d2"], "oldest first");
    assert_eq!(denied.oldest_age_seconds, Some(70 * 60));
    assert_eq!(
        denied
            .nodes
            .iter()
            .map(|n| (n.node.as_str(), n.count))
            .collect::<Vec<_>>(),
        [("worker-1", 2), ("worker-2", 1)],
        "the node with the most first"
    );
    let none = &report.causes[1];
    assert_eq!((none.count, none.oldest_age_seconds), (0, None));
    assert!(none.examples.is_empty() && none.nodes.is_empty());
}

#[test]
fn the_table_lists_every_cause_with_its_age_and_a_legend() {
    let csrs = [own("d1", CLIENT_SIGNER, CsrState::Denied, 125)];
    let table = render(
        &HygieneReport::new(&csrs, Some(&Policy::default()), now()),
        crate::check::OutputFormat::Table,
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("CAUSE"), "{table}");
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["denied", "1", "2h5m", "worker-1", "(1)", "d1"],
        "{table}"
    );
    assert!(
        lines[1].ends_with('-'),
        "an empty cause shows dashes: {table}"
    );
    for cause in StaleCause::ALL {
        assert!(
            table.contains(&format!("{}: ", cause.as_str())),
            "legend: {table}"
        );
    }
}
