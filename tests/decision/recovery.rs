//! Certificate recovery (`src/decision/recovery.rs`): a bootstrapper asks for the identity
//! of a Node that exists — what a node sends after the cluster was off longer than its
//! client certificate lives, and what a thief of the bootstrap credential sends. Each
//! refusal breaks one rule and stays pending for an admin, never denied, with the rule
//! named; the approvals show what the rules let through.

use csr_approver::decision::{Reason, ReasonClass};
use csr_approver::evidence::{NodeLease, Observed, Wanted};
use csr_approver::inventory::CsrState;
use csr_approver::policy::Policy;
use csr_approver::vocabulary::CLIENT_SIGNER;

use crate::builders::*;
use crate::scenes::*;
use crate::{Case, check};

const RECOVERY: &str = "client: {recovery: {enabled: true, offlineFor: 10m, window: 24h}}";

/// worker-1 registered (linked Machine, Node) and offline for 2 hours.
fn offline_world() -> World {
    registered_world()
        .policy_yaml(RECOVERY)
        .lease("worker-1", Some(ago(2 * 3600)))
}

/// Node worker-1 without a Machine of its own, offline for an hour.
fn bare_node(policy: &str) -> World {
    World::new()
        .node(node("worker-1", &[]))
        .policy_yaml(policy)
        .lease("worker-1", Some(ago(3600)))
}

#[test]
fn an_offline_node_recovers_its_identity() {
    let approved_renewal = by_the_node(
        summary(
            "csr-renewal",
            CLIENT_SIGNER,
            "worker-1",
            CsrState::Issued,
            ago(600),
        ),
        "worker-1",
    );
    check([
        Case::new("through its linked Machine", offline_world(), worker1())
            .approves(Reason::NodeRecovery)
            .says("has not been renewed for 2h")
            .says("Machine openshift-machine-api/worker-1 (machine.openshift.io) still names it")
            .wants_nothing(),
        Case::new(
            "bare metal, through its inventory entry",
            bare_node(&format!("{RECOVERY}\ninventory: [{{name: worker-1}}]")),
            worker1(),
        )
        .approves(Reason::NodeRecovery)
        .says("inventory entry worker-1"),
        Case::new(
            "a renewal approved meanwhile is no earlier recovery",
            offline_world().csr(approved_renewal),
            worker1(),
        )
        .approves(Reason::NodeRecovery),
        // A renewal from the node itself needs no Lease.
        Case::new(
            "a renewal does not go through recovery",
            registered_world().policy_yaml(RECOVERY),
            renewal("worker-1"),
        )
        .approves(Reason::ClientRenewal),
        Case::new(
            "a new node is vouched for as before",
            joining_world().policy_yaml(RECOVERY),
            worker1(),
        )
        .approves(Reason::NewNodeMachine),
    ]);
}
/// A row that breaks one rule: left for an admin, named by `words`, saying how to verify
/// and approve, and asking for no evidence unless the row says so.
fn left_to_an_admin(name: &str, world: World, csr: Csr, words: &str) -> Case {
    Case::new(name, world, csr)
        .waits(Reason::NodeAlreadyExists)
        .class(ReasonClass::ForAnAdmin)
        .says(words)
        .says("kubectl certificate approve csr-client")
        .says("kubectl get lease -n kube-node-lease worker-1")
        .wants_nothing()
}

fn lease_read(at: jiff::Timestamp, outcome: Result<NodeLease, String>) -> Observed<NodeLease> {
    Observed { at, outcome }
}

#[test]
fn every_broken_recovery_rule_is_left_to_an_admin() {
    let recovering = || registered_world().policy_yaml(RECOVERY);
    let asks_for_the_lease = Wanted::NodeLease("worker-1".to_string());
    let stale = lease_read(
        ago(31),
        Ok(NodeLease {
            renewed: Some(ago(2 * 3600)),
        }),
    );
    let unreadable = lease_read(
        now(),
        Err("Lease kube-node-lease/worker-1 does not exist".to_string()),
    );
    let untrusted = in_namespace(
        linked(worker1_machine("worker-1", 600), "worker-1"),
        "default",
    );
    let earlier = summary(
        "csr-earlier",
        CLIENT_SIGNER,
        "worker-1",
        CsrState::Issued,
        ago(3600),
    );
    let rows = [
        left_to_an_admin(
            "recovery is off by default",
            registered_world().lease("worker-1", Some(ago(2 * 3600))),
            worker1(),
            "client.recovery is off",
        ),
        left_to_an_admin(
            "no Lease reading yet",
            recovering(),
            worker1(),
            "has not been read",
        )
        .wants(asks_for_the_lease.clone()),
        left_to_an_admin(
            "a reading older than 30 s is no evidence",
            recovering().lease_reading("worker-1", stale),
            worker1(),
            "has not been read",
        )
        .wants(asks_for_the_lease),
        left_to_an_admin(
            "the Lease could not be read",
            recovering().lease_reading("worker-1", unreadable),
            worker1(),
            "could not be read: Lease kube-node-lease/worker-1 does not exist",
        ),
        left_to_an_admin(
            "a Lease without renewTime proves nothing",
            recovering().lease("worker-1", None),
            worker1(),
            "has no renewTime",
        ),
        left_to_an_admin(
            "renewed 5 minutes ago: the node may be alive",
            recovering().lease("worker-1", Some(ago(300))),
            worker1(),
            "less than client.recovery.offlineFor 10m",
        ),
        left_to_an_admin(
            "renewed 'in the future': the node is alive, its clock ahead",
            recovering().lease("worker-1", Some(ago(-60))),
            worker1(),
            "the node may be alive",
        ),
        left_to_an_admin(
            "asked for while the node still heartbeated",
            offline_world(),
            worker1().created(ago(3 * 3600)),
            "created before the node's last Lease renewal",
        ),
        left_to_an_admin(
            "its Machine is linked to another Node",
            bare_node(RECOVERY).machine(linked(worker1_machine("worker-1", 600), "worker-0")),
            worker1(),
            "is linked to Node worker-0",
        ),
        left_to_an_admin(
            "its Machine is being deleted",
            bare_node(RECOVERY).machine(deleting(linked(
                worker1_machine("worker-1", 600),
                "worker-1",
            ))),
            worker1(),
            "is being deleted",
        ),
        left_to_an_admin(
            "a Machine outside the trusted namespaces vouches for nothing",
            bare_node(RECOVERY).machine(untrusted),
            worker1(),
            "no Machine is linked to it and no inventory entry matches it",
        ),
        left_to_an_admin(
            "one recovery per node per window",
            offline_world().csr(earlier),
            worker1(),
            "one recovery per node per window",
        ),
        left_to_an_admin(
            "a name pattern is not the node: another node's name is refused too",
            bare_node(&format!("{RECOVERY}\ninventory: [{{name: worker-2}}]")),
            worker1(),
            "no inventory entry matches it",
        ),
    ];
    // Never denied, even with deny: true.
    let denying: Vec<Case> = rows.iter().map(Case::under_deny).collect();
    check(rows.into_iter().chain(denying));
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

#[test]
fn one_recovery_per_window_is_remembered_after_the_csr_is_gone() {
    let linked_machine = registered_world().machines[0].clone();
    let generation = csr_approver::decision::machine_generation(&linked_machine);
    check([
        Case::new(
            "a recovery an hour ago, its CSR deleted by the cleaner",
            offline_world().minted(
                "worker-1",
                "csr-recovered",
                "NodeRecovery",
                ago(3600),
                generation.clone(),
            ),
            worker1(),
        )
        .waits(Reason::NodeAlreadyExists)
        .says("one recovery per node per window")
        .says("csr-recovered"),
        Case::new(
            "its first join within the window, recorded",
            offline_world().minted(
                "worker-1",
                "csr-joined",
                "NewNodeMachine",
                ago(3 * 3600),
                generation.clone(),
            ),
            worker1(),
        )
        .waits(Reason::NodeAlreadyExists)
        .says("one recovery per node per window"),
        Case::new(
            "a recovery recorded before the window",
            offline_world().minted(
                "worker-1",
                "csr-recovered",
                "NodeRecovery",
                ago(25 * 3600),
                generation.clone(),
            ),
            worker1(),
        )
        .approves(Reason::NodeRecovery),
        Case::new(
            "this very CSR recorded before a crash",
            offline_world().minted("worker-1", "csr-client", "NodeRecovery", ago(1), generation),
            worker1(),
        )
        .approves(Reason::NodeRecovery),
    ]);
}
