//! The flood guards (`src/decision/flood.rs`): at most so many pending client CSRs that
//! could become new nodes (`client.maxPending`), and at most so many new identities an
//! hour (`client.maxNewNodesPerHour`). Neither ever holds back a registered node's
//! renewal or serving certificate.

use csr_approver::decision::Reason;
use csr_approver::inventory::{CsrState, CsrSummary};
use csr_approver::vocabulary::{CLIENT_SIGNER, SERVING_SIGNER};

use crate::builders::*;
use crate::scenes::*;
use crate::{Case, check};

/// `world` with `count` pending new-node CSRs for node `node(i)`.
fn with_pending(mut world: World, count: usize, node: impl Fn(usize) -> String) -> World {
    for i in 0..count {
        world = world.csr(pending(&format!("p{i}"), &node(i)));
    }
    world
}

/// CSRs that cannot become new nodes: a serving CSR, one without a parseable name, a
/// stranger's, and one for a registered Node.
fn never_new_nodes(i: usize) -> [CsrSummary; 4] {
    let mut garbage = pending(&format!("g{i}"), "x");
    garbage.node_name = None;
    let mut stranger = pending(&format!("u{i}"), &format!("y{i}"));
    stranger.requester = "system:anonymous".to_string();
    stranger.groups = vec!["system:unauthenticated".into()];
    let serving = summary(
        &format!("s{i}"),
        SERVING_SIGNER,
        &format!("x{i}"),
        CsrState::Pending,
        ago(60),
    );
    [
        serving,
        garbage,
        stranger,
        pending(&format!("r{i}"), "worker-1"),
    ]
}

#[test]
fn pending_new_nodes_are_capped() {
    let max = |n: u32| joining_world().policy_yaml(&format!("client: {{maxPending: {n}}}"));
    let mut noise = registered_world()
        .machine(machine(
            "worker-2",
            ago(300),
            &[("InternalDNS", "worker-2"), ("InternalIP", "10.0.0.12")],
        ))
        .policy_yaml("client: {maxPending: 1}");
    for i in 0..50 {
        for csr in never_new_nodes(i) {
            noise = noise.csr(csr);
        }
    }
    let old_and_foreign = max(1)
        .csr(summary(
            "old",
            CLIENT_SIGNER,
            "x",
            CsrState::Pending,
            ago(3601),
        ))
        .csr(summary(
            "other",
            "example.com/x",
            "x",
            CsrState::Pending,
            ago(60),
        ))
        .csr(summary(
            "done",
            CLIENT_SIGNER,
            "x",
            CsrState::Approved,
            ago(60),
        ));
    // The default limit: Machines + 100; 1 Machine, so 101 counting this CSR.
    let hundred = with_pending(joining_world(), 100, |_| "x".to_string());
    check([
        Case::new(
            "above client.maxPending",
            with_pending(max(3), 3, |i| format!("x{i}")),
            worker1(),
        )
        .waits(Reason::TooManyPending),
        Case::new(
            "exactly client.maxPending",
            with_pending(max(3), 2, |_| "x".to_string()),
            worker1(),
        )
        .approves(Reason::NewNodeMachine),
        Case::new(
            "only CSRs that could become new nodes count",
            noise,
            Csr::client(&w("worker-2")),
        )
        .approves(Reason::NewNodeMachine),
        Case::new(
            "old, foreign and decided CSRs do not count",
            old_and_foreign,
            worker1(),
        )
        .approves(Reason::NewNodeMachine),
        Case::new("at the default limit", hundred.clone(), worker1())
            .approves(Reason::NewNodeMachine),
        Case::new(
            "above the default limit",
            hundred.csr(pending("p100", "x")),
            worker1(),
        )
        .waits(Reason::TooManyPending),
    ]);
}

#[test]
fn new_identities_are_capped_per_hour() {
    let base = World::new().policy_yaml(
        "inventory: [{namePattern: '^worker-[0-9]+$'}]\nclient: {maxNewNodesPerHour: 2}",
    );
    let one = base.clone().csr(approved_new_node("a", "worker-7", 10));
    // Approvals older than an hour, and renewals, are no new identities this hour.
    let old = base
        .csr(approved_new_node("a", "worker-7", 10))
        .csr(approved_new_node("b", "worker-8", 61))
        .csr(by_the_node(
            approved_new_node("r", "worker-9", 5),
            "worker-9",
        ));
    // One free Machine: the default cap is 1 + 10.
    let mut ten = joining_world();
    for i in 0..10 {
        ten = ten.csr(approved_new_node(&format!("a{i}"), &format!("old-{i}"), 5));
    }
    check([
        Case::new("one new node this hour", one.clone(), worker1())
            .approves(Reason::NewNodeInventory),
        Case::new(
            "client.maxNewNodesPerHour reached",
            one.csr(approved_new_node("b", "worker-8", 59)),
            worker1(),
        )
        .waits(Reason::NewNodeRateLimited)
        .says("maxNewNodesPerHour 2"),
        Case::new("older approvals and renewals do not count", old, worker1())
            .approves(Reason::NewNodeInventory),
        Case::new("at the default cap", ten.clone(), worker1()).approves(Reason::NewNodeMachine),
        Case::new(
            "above the default cap",
            ten.csr(approved_new_node("a10", "old-10", 5)),
            worker1(),
        )
        .waits(Reason::NewNodeRateLimited),
    ]);
}

#[test]
fn the_guards_never_hold_a_registered_nodes_rotation() {
    let serving_csr = || serving("worker-1", w("worker-1").ip("10.0.0.11"));
    let full = with_pending(
        registered_world().policy_yaml("client: {maxPending: 1}"),
        20,
        |i| format!("x{i}"),
    );
    let mut capped = registered_world().policy_yaml("client: {maxNewNodesPerHour: 0}");
    for i in 0..5 {
        capped = capped.csr(approved_new_node(&format!("a{i}"), &format!("old-{i}"), 5));
    }
    check([
        Case::new(
            "maxPending full of would-be new nodes: a new node waits",
            full.clone().machine(machine(
                "worker-2",
                ago(300),
                &[("InternalDNS", "worker-2")],
            )),
            Csr::client(&w("worker-2")),
        )
        .waits(Reason::TooManyPending),
        Case::new(
            "maxPending full: a renewal",
            full.clone(),
            renewal("worker-1"),
        )
        .approves(Reason::ClientRenewal),
        Case::new("maxPending full: a serving CSR", full, serving_csr())
            .approves(Reason::ServingAddressesVerified),
        Case::new(
            "maxNewNodesPerHour 0: a renewal",
            capped.clone(),
            renewal("worker-1"),
        )
        .approves(Reason::ClientRenewal),
        Case::new("maxNewNodesPerHour 0: a serving CSR", capped, serving_csr())
            .approves(Reason::ServingAddressesVerified),
    ]);
}

/// Recoveries mint identities too: they count in the hourly tally, and the cap holds them
/// back like new nodes once the tally reaches it. The `auto` cap grows only with Machines
/// that can still vouch: unlinked ones created within `client.joinWindow`.
#[test]
fn recoveries_are_capped_and_stale_machines_raise_no_cap() {
    let recovery = |cap: &str| {
        registered_world()
            .policy_yaml(&format!(
                "client: {{maxNewNodesPerHour: {cap}, recovery: {{enabled: true, offlineFor: 10m, window: 24h}}}}"
            ))
            .lease("worker-1", Some(ago(2 * 3600)))
    };
    let two_this_hour = |world: World| {
        world
            .csr(approved_new_node("a", "worker-7", 10))
            .csr(approved_new_node("b", "worker-8", 20))
    };
    // An earlier recovery of worker-2 within the hour, by the bootstrapper.
    let recovered_worker2 = recovery("2").csr(approved_new_node("rec", "worker-2", 5));
    // 40 Machines that never joined, created a day ago: no CSR can be vouched by them.
    let stale = |mut world: World, i_max: usize| {
        for i in 0..i_max {
            world = world.machine(machine(
                &format!("stale-{i}"),
                ago(86_400),
                &[("InternalDNS", &format!("stale-{i}"))],
            ));
        }
        world
    };
    // One joining Machine: the default cap is 1 + 10; 11 approvals this hour reach it.
    let mut eleven = joining_world();
    for i in 0..11 {
        eleven = eleven.csr(approved_new_node(&format!("a{i}"), &format!("old-{i}"), 5));
    }
    check([
        Case::new(
            "a recovery under the cap",
            recovery("3").csr(approved_new_node("a", "worker-7", 10)),
            worker1(),
        )
        .approves(Reason::NodeRecovery),
        Case::new(
            "a recovery when the tally reaches client.maxNewNodesPerHour",
            two_this_hour(recovery("2")),
            worker1(),
        )
        .waits(Reason::NewNodeRateLimited)
        .says("maxNewNodesPerHour 2"),
        Case::new(
            "an earlier recovery counts in the tally of a new node",
            recovered_worker2
                .csr(approved_new_node("a", "worker-7", 10))
                .machine(machine(
                    "worker-3",
                    ago(300),
                    &[("InternalDNS", "worker-3")],
                )),
            Csr::client(&w("worker-3")),
        )
        .waits(Reason::NewNodeRateLimited),
        Case::new(
            "stale unlinked Machines do not raise the default cap",
            stale(eleven.clone(), 40),
            worker1(),
        )
        .waits(Reason::NewNodeRateLimited)
        .says("maxNewNodesPerHour 11"),
        Case::new(
            "unlinked Machines created within client.joinWindow raise it",
            eleven
                .machine(machine(
                    "worker-9",
                    ago(3 * 3600),
                    &[("InternalDNS", "worker-9")],
                ))
                .machine(machine(
                    "worker-8",
                    ago(600),
                    &[("InternalDNS", "worker-8")],
                ))
                .policy_yaml("client: {joinWindow: 4h}"),
            worker1(),
        )
        .approves(Reason::NewNodeMachine),
    ]);
}
