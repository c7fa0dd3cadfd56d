//! New node identities: who may vouch for a name (Machines only while they can, inventory
//! entries only for fresh requests), and how many identities an hour may mint.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;

use builders::*;
use csr_approver::decision::{Reason, Verdict};
use csr_approver::inventory::{CsrState, CsrSummary};

fn worker1() -> Csr {
    Csr::client(&Request::node("worker-1"))
}

fn deleting(mut m: csr_approver::inventory::MachineInfo) -> csr_approver::inventory::MachineInfo {
    m.deleting = true;
    m
}

// --- Machines vouch only while they can ----------------------------------------------------

#[test]
fn a_machine_being_deleted_vouches_for_nothing() {
    let old = deleting(machine(
        "worker-1",
        ago(300),
        &[("InternalDNS", "worker-1")],
    ));
    let d = assert_decision!(
        World::new().machine(old.clone()).decide(&worker1()),
        Verdict::Wait { .. },
        Reason::MachineDeleting
    );
    assert!(d.message.contains("being deleted"), "{}", d.message);
    // It still decides alone: an inventory pattern cannot vouch over it.
    assert_decision!(
        World::new()
            .machine(old.clone())
            .policy_yaml("inventory: [{namePattern: '^worker-[0-9]+$'}]")
            .decide(&worker1()),
        Verdict::Wait { .. },
        Reason::MachineDeleting
    );
    // Its replacement, free and fresh, vouches.
    assert_decision!(
        World::new()
            .machine(old)
            .machine(machine(
                "worker-1-replacement",
                ago(60),
                &[("InternalDNS", "worker-1")]
            ))
            .decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn a_machine_linked_to_the_name_holds_it_even_without_naming_the_host() {
    // The Machine became Node worker-1 (which was since deleted) and lists only an IP.
    let mut holder = machine("worker-1", ago(86_400), &[("InternalIP", "10.0.0.11")]);
    holder.node_ref = Some("worker-1".to_string());
    let d = assert_decision!(
        World::new()
            .machine(holder.clone())
            .policy_yaml("inventory: [{namePattern: '^worker-[0-9]+$'}]")
            .decide(&worker1()),
        Verdict::Wait { .. },
        Reason::MachineAlreadyLinked
    );
    assert!(d.message.contains("name is taken"), "{}", d.message);
    // Nor may a second, free Machine naming the host take the name over.
    assert_decision!(
        World::new()
            .machine(holder.clone())
            .machine(machine(
                "worker-1-b",
                ago(60),
                &[("InternalDNS", "worker-1")]
            ))
            .decide(&worker1()),
        Verdict::Wait { .. },
        Reason::MachineAlreadyLinked
    );
    // Once that Machine is being deleted, the name is free for a new Machine.
    assert_decision!(
        World::new()
            .machine(deleting(holder))
            .machine(machine(
                "worker-1-b",
                ago(60),
                &[("InternalDNS", "worker-1")]
            ))
            .decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn the_inventory_path_has_an_age_bound_like_the_machine_path() {
    let world =
        World::new().policy_yaml("inventory: [{name: worker-1}]\nclient: {joinWindow: 30m}");
    assert_decision!(
        world.decide(&worker1().created(ago(1800))),
        Verdict::Approve,
        Reason::NewNodeInventory
    );
    let d = assert_decision!(
        world.decide(&worker1().created(ago(1801))),
        Verdict::Wait { .. },
        Reason::OutsideJoinWindow
    );
    assert!(d.message.contains("client.joinWindow 30m"), "{}", d.message);
    let pattern = World::new().policy_yaml("inventory: [{namePattern: '^worker-[0-9]+$'}]");
    assert_decision!(
        pattern.decide(&worker1().created(ago(7201))),
        Verdict::Wait { .. },
        Reason::OutsideJoinWindow
    );
    let mut undated = worker1();
    undated.0.created = None;
    assert_decision!(
        pattern.decide(&undated),
        Verdict::Wait { .. },
        Reason::OutsideJoinWindow
    );
}

// --- at most so many new identities an hour ------------------------------------------------

fn approved_new_node(name: &str, node: &str, approved_minutes_ago: i64) -> CsrSummary {
    let mut s = summary(
        name,
        csr_approver::decision::CLIENT_SIGNER,
        node,
        CsrState::Issued,
        ago(approved_minutes_ago * 60 + 30),
    );
    s.approved_at = Some(ago(approved_minutes_ago * 60));
    s
}

#[test]
fn new_node_approvals_are_capped_per_hour() {
    let base = World::new().policy_yaml(
        "inventory: [{namePattern: '^worker-[0-9]+$'}]\nclient: {maxNewNodesPerHour: 2}",
    );
    let one = base.clone().csr(approved_new_node("a", "worker-7", 10));
    assert_decision!(
        one.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeInventory
    );
    let two = one.csr(approved_new_node("b", "worker-8", 59));
    let d = assert_decision!(
        two.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::NewNodeRateLimited
    );
    assert!(d.message.contains("maxNewNodesPerHour 2"), "{}", d.message);
    // Approvals older than an hour, and renewals, are not new identities this hour.
    let mut renewal = approved_new_node("r", "worker-9", 5);
    renewal.requester = "system:node:worker-9".to_string();
    let old = base
        .csr(approved_new_node("a", "worker-7", 10))
        .csr(approved_new_node("b", "worker-8", 61))
        .csr(renewal);
    assert_decision!(
        old.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeInventory
    );
}

#[test]
fn the_auto_cap_follows_the_machines_that_are_joining() {
    // One free Machine: cap 1 + 10.
    let mut world = joining_world();
    for i in 0..10 {
        world = world.csr(approved_new_node(&format!("a{i}"), &format!("old-{i}"), 5));
    }
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
    let world = world.csr(approved_new_node("a10", "old-10", 5));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::NewNodeRateLimited
    );
}

#[test]
fn the_cap_never_holds_renewals_or_serving() {
    let mut world = registered_world().policy_yaml("client: {maxNewNodesPerHour: 0}");
    for i in 0..5 {
        world = world.csr(approved_new_node(&format!("a{i}"), &format!("old-{i}"), 5));
    }
    assert_decision!(
        world.decide(&Csr::renewal("worker-1", &Request::node("worker-1"))),
        Verdict::Approve,
        Reason::ClientRenewal
    );
    assert_decision!(
        world.decide(&Csr::serving(
            "worker-1",
            &Request::node("worker-1").ip("10.0.0.11")
        )),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

// --- one identity per host generation ------------------------------------------------------

#[test]
fn a_host_reprovisioned_under_its_name_joins_again_with_a_new_machine() {
    // worker-1 joined 40 minutes ago (its client CSR approved), then its Node was deleted
    // and the host wiped; within the join window it asks again.
    let earlier = approved_new_node("csr-first-life", "worker-1", 40);
    // The same Machine (the same generation) still vouches: one identity per generation.
    let same_generation = World::new()
        .machine(machine(
            "worker-1",
            ago(45 * 60),
            &[("InternalDNS", "worker-1")],
        ))
        .csr(earlier.clone());
    let d = assert_decision!(
        same_generation.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::DuplicateClientRequest
    );
    assert!(d.message.contains("new Machine"), "{}", d.message);
    // Re-provisioned through the Machine API: a new Machine, created after that approval.
    let new_generation = World::new()
        .machine(machine(
            "worker-1-v2",
            ago(5 * 60),
            &[("InternalDNS", "worker-1")],
        ))
        .csr(earlier.clone());
    assert_decision!(
        new_generation.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
    // An attacker racing the new host with the same bootstrap credential: the second CSR
    // of the new generation waits.
    let raced = new_generation.csr(approved_new_node("csr-attacker", "worker-1", 1));
    assert_decision!(
        raced.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::DuplicateClientRequest
    );
}

#[test]
fn without_a_machine_an_admin_deleting_the_earlier_csr_frees_the_name() {
    let inventory = World::new().policy_yaml("inventory: [{name: worker-1}]");
    let d = assert_decision!(
        inventory
            .clone()
            .csr(approved_new_node("csr-first-life", "worker-1", 40))
            .decide(&worker1()),
        Verdict::Wait { .. },
        Reason::DuplicateClientRequest
    );
    assert!(
        d.message
            .contains("delete that CSR (kubectl delete csr) to allow a new identity"),
        "{}",
        d.message
    );
    // `kubectl delete csr csr-first-life`: it is gone from the cluster, so from the world.
    assert_decision!(
        inventory.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeInventory
    );
}
