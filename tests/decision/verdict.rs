//! From a refusal to a verdict (`src/decision/mod.rs`): with `deny: true` a definitive
//! refusal — a forged request — is denied; what may be a real host nothing vouches for yet
//! is left pending for an admin and says how to approve it by hand; what may become valid
//! waits. `deny` and `mode: dry-run` never change an approval.

use csr_approver::decision::{Reason, ReasonClass};

use crate::builders::*;
use crate::scenes::*;
use crate::{Case, check};

const HAND_APPROVAL: &str = "approve by hand: kubectl certificate approve csr-client";

fn denying(world: World) -> World {
    world.policy_yaml("deny: true")
}

#[test]
fn deny_denies_forged_requests_only() {
    let own_ip = || w("worker-1").ip("10.0.0.11");
    let fenced =
        registered_world().policy_yaml("deny: true\nserving: {allowedIPRanges: [10.1.0.0/16]}");
    check([
        Case::new(
            "O system:masters",
            denying(joining_world()),
            Csr::client(&w("worker-1").org(Some("system:masters"))),
        )
        .denies(Reason::BadOrganization),
        // Another node asking for worker-1's identity is forged whatever the cluster holds.
        Case::new(
            "another node asks for worker-1's identity",
            denying(joining_world()),
            worker1().user("system:node:worker-2", &["system:nodes"]),
        )
        .denies(Reason::RequesterMismatch),
        Case::new(
            "a reserved SAN",
            denying(registered_world()),
            serving("worker-1", own_ip().dns("kubernetes.default.svc")),
        )
        .denies(Reason::ReservedSan),
        // An address no source lists may be a secondary network's: an admin may approve it.
        Case::new(
            "an address no source lists is left to an admin",
            denying(registered_world()),
            serving("worker-1", w("worker-1").ip("10.0.0.99")),
        )
        .waits(Reason::ForeignSan)
        .says("kubectl certificate approve"),
        Case::new(
            "an owned address outside a fence",
            fenced,
            serving("worker-1", own_ip()),
        )
        .waits(Reason::SanOutsideFence),
        Case::new(
            "serving before the node registered",
            denying(joining_world()),
            serving("worker-1", own_ip()),
        )
        .waits(Reason::NodeNotRegistered),
        Case::new("what may become valid", denying(World::new()), worker1())
            .waits(Reason::UnknownMachine),
    ]);
}

#[test]
fn deny_never_denies_a_request_an_admin_may_approve() {
    // Each may be a real host that nothing vouches for (a requester the policy does not
    // list, a late boot, a re-used Machine, a node recovering after its certificate
    // expired): an admin who checked it may approve it by hand, and no automatic denial
    // may race them.
    let for_an_admin = |name: &str, world: World, csr: Csr, reason: Reason| {
        Case::new(name, denying(world), csr)
            .waits(reason)
            .class(ReasonClass::ForAnAdmin)
            .says(HAND_APPROVAL)
    };
    check([
        for_an_admin(
            "a requester the policy does not list",
            joining_world(),
            worker1().user("alice", &[]),
            Reason::UnknownRequester,
        ),
        for_an_admin(
            "a Machine outside its join window",
            World::new().machine(worker1_machine("worker-1", 3 * 3600)),
            worker1(),
            Reason::OutsideJoinWindow,
        ),
        for_an_admin(
            "a Machine linked to another Node",
            World::new().machine(linked(worker1_machine("worker-1", 300), "worker-0")),
            worker1(),
            Reason::MachineAlreadyLinked,
        ),
        for_an_admin(
            "the bootstrapper asks for an existing Node's identity",
            joining_world().node(node("worker-1", &[])),
            worker1(),
            Reason::NodeAlreadyExists,
        ),
    ]);
}

#[test]
fn deny_and_dry_run_do_not_turn_off_approvals() {
    let dry_run = joining_world().policy_yaml("mode: dry-run");
    assert!(dry_run.policy.is_dry_run());
    check([
        Case::new("deny: true", denying(joining_world()), worker1())
            .approves(Reason::NewNodeMachine),
        Case::new("mode: dry-run", dry_run, worker1()).approves(Reason::NewNodeMachine),
    ]);
}
