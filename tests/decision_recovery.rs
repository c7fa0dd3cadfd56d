//! Certificate recovery: a bootstrapper asks for the identity of a Node that exists (what a
//! node sends after the cluster was off longer than its client certificate lives, and
//! what a thief of the bootstrap credential sends). One table: each row breaks one rule of
//! `src/decision/recovery.rs` and must stay pending for an admin — never denied — with the
//! rule named; the approvals show what the rules let through.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;

use builders::*;
use csr_approver::decision::{CLIENT_SIGNER, Reason, ReasonClass, Verdict};
use csr_approver::evidence::{NodeLease, Observed, Wanted};
use csr_approver::inventory::CsrState;
use csr_approver::policy::Policy;

const RECOVERY: &str = "client: {recovery: {enabled: true, offlineFor: 10m, window: 24h}}";

fn worker1() -> Csr {
    Csr::client(&Request::node("worker-1"))
}

/// worker-1 registered (linked Machine, Node) and offline for 2 hours.
fn offline_world() -> World {
    registered_world()
        .policy_yaml(RECOVERY)
        .lease("worker-1", Some(ago(2 * 3600)))
}

#[test]
fn an_offline_node_recovers_its_identity() {
    let d = assert_decision!(
        offline_world().decide(&worker1()),
        Verdict::Approve,
        Reason::NodeRecovery
    );
    assert!(
        d.message.contains("has not been renewed for 2h")
            && d.message.contains(
                "Machine openshift-machine-api/worker-1 (machine.openshift.io) still names it"
            ),
        "{}",
        d.message
    );
    assert_eq!(d.wants, None);
}

#[test]
fn an_offline_bare_metal_node_recovers_through_its_inventory_entry() {
    let world = World::new()
        .node(node("worker-1", &[]))
        .policy_yaml(&format!("{RECOVERY}\ninventory: [{{name: worker-1}}]"))
        .lease("worker-1", Some(ago(3600)));
    let d = assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NodeRecovery
    );
    assert!(
        d.message.contains("inventory entry worker-1"),
        "{}",
        d.message
    );
}

#[test]
fn a_renewal_approved_meanwhile_does_not_count_as_a_recovery() {
    let mut renewal = summary(
        "csr-renewal",
        CLIENT_SIGNER,
        "worker-1",
        CsrState::Issued,
        ago(600),
    );
    renewal.requester = "system:node:worker-1".to_string();
    assert_decision!(
        offline_world().csr(renewal).decide(&worker1()),
        Verdict::Approve,
        Reason::NodeRecovery
    );
}

/// Each row: a world and CSR that break one rule, and the words that name it.
fn refusals() -> Vec<(&'static str, World, Csr, &'static str)> {
    let mut linked_elsewhere = machine("worker-1", ago(600), &[("InternalDNS", "worker-1")]);
    linked_elsewhere.node_ref = Some("worker-0".to_string());
    let mut deleting = machine("worker-1", ago(600), &[("InternalDNS", "worker-1")]);
    deleting.node_ref = Some("worker-1".to_string());
    deleting.deleting = true;
    let bare_node = || {
        World::new()
            .node(node("worker-1", &[]))
            .policy_yaml(RECOVERY)
    };
    let earlier = summary(
        "csr-earlier",
        CLIENT_SIGNER,
        "worker-1",
        CsrState::Issued,
        ago(3600),
    );
    vec![
        (
            "recovery is off by default",
            registered_world().lease("worker-1", Some(ago(2 * 3600))),
            worker1(),
            "client.recovery is off",
        ),
        (
            "no Lease reading yet",
            registered_world().policy_yaml(RECOVERY),
            worker1(),
            "has not been read",
        ),
        (
            "a reading older than 30 s is no evidence",
            registered_world().policy_yaml(RECOVERY).lease_reading(
                "worker-1",
                Observed {
                    at: ago(31),
                    outcome: Ok(NodeLease {
                        renewed: Some(ago(2 * 3600)),
                    }),
                },
            ),
            worker1(),
            "has not been read",
        ),
        (
            "the Lease could not be read",
            registered_world().policy_yaml(RECOVERY).lease_reading(
                "worker-1",
                Observed {
                    at: now(),
                    outcome: Err("Lease kube-node-lease/worker-1 does not exist".to_string()),
                },
            ),
            worker1(),
            "could not be read: Lease kube-node-lease/worker-1 does not exist",
        ),
        (
            "a Lease without renewTime proves nothing",
            registered_world()
                .policy_yaml(RECOVERY)
                .lease("worker-1", None),
            worker1(),
            "has no renewTime",
        ),
        (
            "renewed 5 minutes ago: the node may be alive",
            registered_world()
                .policy_yaml(RECOVERY)
                .lease("worker-1", Some(ago(300))),
            worker1(),
            "less than client.recovery.offlineFor 10m",
        ),
        (
            "renewed 'in the future': the node is alive, its clock ahead",
            registered_world()
                .policy_yaml(RECOVERY)
                .lease("worker-1", Some(ago(-60))),
            worker1(),
            "the node may be alive",
        ),
        (
            "asked for while the node still heartbeated",
            offline_world(),
            worker1().created(ago(3 * 3600)),
            "created before the node's last Lease renewal",
        ),
        (
            "its Machine is linked to another Node",
            bare_node()
                .machine(linked_elsewhere)
                .lease("worker-1", Some(ago(3600))),
            worker1(),
            "is linked to Node worker-0",
        ),
        (
            "its Machine is being deleted",
            bare_node()
                .machine(deleting)
                .lease("worker-1", Some(ago(3600))),
            worker1(),
            "is being deleted",
        ),
        (
            "a Machine outside the trusted namespaces vouches for nothing",
            bare_node()
                .machine({
                    let mut m = machine("worker-1", ago(600), &[("InternalDNS", "worker-1")]);
                    m.namespace = "default".to_string();
                    m.node_ref = Some("worker-1".to_string());
                    m
                })
                .lease("worker-1", Some(ago(3600))),
            worker1(),
            "no Machine is linked to it and no inventory entry matches it",
        ),
        (
            "one recovery per node per window",
            offline_world().csr(earlier),
            worker1(),
            "one recovery per node per window",
        ),
        (
            "a name pattern is not the node: another node's name is refused too",
            World::new()
                .node(node("worker-1", &[]))
                .policy_yaml(&format!("{RECOVERY}\ninventory: [{{name: worker-2}}]"))
                .lease("worker-1", Some(ago(3600))),
            worker1(),
            "no inventory entry matches it",
        ),
    ]
}

#[test]
fn every_broken_recovery_rule_is_left_to_an_admin() {
    for (case, world, csr, words) in refusals() {
        let d = assert_decision!(
            world.decide(&csr),
            Verdict::Wait { .. },
            Reason::NodeAlreadyExists
        );
        assert!(d.message.contains(words), "{case}: {}", d.message);
        assert!(
            d.message.contains("kubectl certificate approve csr-client")
                && d.message
                    .contains("kubectl get lease -n kube-node-lease worker-1"),
            "{case}: the message says how to verify and approve: {}",
            d.message
        );
        assert_eq!(d.reason.class(), ReasonClass::ForAnAdmin, "{case}");

        // Never denied, even with deny: true.
        let mut denying = world.clone();
        denying.policy.deny = true;
        assert_decision!(
            denying.decide(&csr),
            Verdict::Wait { .. },
            Reason::NodeAlreadyExists
        );
    }
}

#[test]
fn only_a_missing_or_stale_reading_asks_for_the_lease() {
    for (case, world, csr, words) in refusals() {
        let d = world.decide(&csr);
        let asks = words == "has not been read";
        assert_eq!(
            d.wants,
            asks.then(|| Wanted::NodeLease("worker-1".to_string())),
            "{case}"
        );
    }
}

#[test]
fn renewals_and_new_nodes_do_not_go_through_recovery() {
    // A renewal from the node itself needs no Lease.
    let renewal = Csr::renewal("worker-1", &Request::node("worker-1"));
    assert_decision!(
        registered_world().policy_yaml(RECOVERY).decide(&renewal),
        Verdict::Approve,
        Reason::ClientRenewal
    );
    // A new node is vouched for as before.
    assert_decision!(
        joining_world().policy_yaml(RECOVERY).decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn a_too_short_offline_time_is_refused_by_the_policy() {
    let error =
        Policy::from_yaml("client: {recovery: {enabled: true, offlineFor: 30s}}").unwrap_err();
    assert_eq!(error.path, "client.recovery.offlineFor");
    assert!(
        error.message.contains("shorter than 1m"),
        "{}",
        error.message
    );
    // Off, any value is accepted (it is not used).
    Policy::from_yaml("client: {recovery: {enabled: false, offlineFor: 30s}}").unwrap();
    let error = Policy::from_yaml("client: {recovery: {enable: true}}").unwrap_err();
    assert!(error.path.starts_with("client.recovery"), "{}", error.path);
}
