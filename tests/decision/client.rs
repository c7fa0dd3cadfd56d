//! Client CSRs (`src/decision/client.rs`): a client certificate carries no SAN and only
//! client usages; the requester is a configured bootstrapper (a new node) or the node
//! itself (a renewal); a new node is vouched for by a Machine in its join window or by an
//! inventory entry; one identity per host generation.

use csr_approver::decision::{Reason, ReasonClass, inventory_generation, machine_generation};
use csr_approver::inventory::{CsrState, MachineInfo};
use csr_approver::policy::Policy;
use csr_approver::vocabulary::CLIENT_SIGNER;

use crate::builders::*;
use crate::scenes::*;
use crate::{Case, check};

const CAPI: &str =
    "machines: {apiGroups: [cluster.x-k8s.io], namespaces: {cluster.x-k8s.io: [capi]}}";

/// worker-1's first client CSR evaluated in `world`.
fn asks(name: &str, world: World) -> Case {
    Case::new(name, world, worker1())
}

/// A world whose only Machine is `m`.
fn only(m: MachineInfo) -> World {
    World::new().machine(m)
}

#[test]
fn a_client_certificate_has_no_sans_and_client_usages_only() {
    let joining = |name: &str, csr: Csr| Case::new(name, joining_world(), csr);
    check([
        joining("a DNS SAN", Csr::client(&w("worker-1").dns("worker-1")))
            .waits(Reason::UnexpectedSans),
        joining("an IP SAN", Csr::client(&w("worker-1").ip("10.0.0.11")))
            .waits(Reason::UnexpectedSans),
        joining(
            "server auth beside client auth",
            worker1().usages(&["digital signature", "client auth", "server auth"]),
        )
        .waits(Reason::BadUsages),
        joining("no client auth", worker1().usages(&["digital signature"]))
            .waits(Reason::BadUsages),
    ]);
}

#[test]
fn the_requester_is_a_bootstrapper_or_the_node_itself() {
    let joining = |name: &str, csr: Csr| Case::new(name, joining_world(), csr);
    let registered = |name: &str, csr: Csr| Case::new(name, registered_world(), csr);
    let token = ["system:bootstrappers", "system:authenticated"];
    let no_renewals = registered_world().policy_yaml("client: {renewals: false}");
    check([
        joining(
            "an unknown user",
            worker1().user("alice", &["system:authenticated"]),
        )
        .waits(Reason::UnknownRequester),
        joining(
            "the bootstrapper's name without its groups",
            worker1().user(BOOTSTRAPPER, &["system:authenticated"]),
        )
        .waits(Reason::UnknownRequester),
        joining(
            "a bootstrap token is no default bootstrapper",
            worker1().user("system:bootstrap:abcdef", &["system:bootstrappers"]),
        )
        .waits(Reason::UnknownRequester),
        Case::new(
            "a bootstrap token group once client.bootstrappers names it",
            joining_world().policy_yaml("client: {bootstrappers: [{group: system:bootstrappers}]}"),
            worker1().user("system:bootstrap:abcdef", &token),
        )
        .approves(Reason::NewNodeMachine),
        joining(
            "another service account in the bootstrapper's groups",
            worker1().user(
                "system:serviceaccount:default:builder",
                &BOOTSTRAPPER_GROUPS[..2],
            ),
        )
        .waits(Reason::UnknownRequester),
        registered("a renewal by the node itself", renewal("worker-1"))
            .approves(Reason::ClientRenewal),
        registered(
            "a node renewing another node's identity",
            Csr::renewal("worker-2", &w("worker-1")),
        )
        .waits(Reason::RequesterMismatch),
        registered(
            "a renewal without the nodes group",
            renewal("worker-1").user("system:node:worker-1", &["system:authenticated"]),
        )
        .waits(Reason::MissingNodesGroup),
        joining("a renewal of a node not registered", renewal("worker-1"))
            .waits(Reason::NodeNotRegistered),
        Case::new("renewals off: a renewal", no_renewals, renewal("worker-1"))
            .ignores(Reason::RenewalsDisabled),
        asks(
            "renewals off: a new node",
            joining_world().policy_yaml("client: {renewals: false}"),
        )
        .approves(Reason::NewNodeMachine),
    ]);
}

#[test]
fn a_machine_vouches_for_the_host_it_names() {
    let by = |kind: &str, value: &str| machine("m", ago(60), &[(kind, value)]);
    check([
        asks("a fresh Machine naming the host", joining_world())
            .approves(Reason::NewNodeMachine)
            .says("openshift-machine-api/worker-1")
            .says("InternalDNS=worker-1")
            .for_node("worker-1"),
        asks("a Machine's Hostname address", only(by("Hostname", "worker-1")))
            .approves(Reason::NewNodeMachine),
        Case::new(
            "a Machine's address in upper case with a trailing dot",
            only(by("InternalDNS", "WORKER-1.example.com.")),
            Csr::client(&w("worker-1.example.com")),
        )
        .approves(Reason::NewNodeMachine),
        asks(
            "a Cluster API Machine in a namespace the policy names",
            only(cluster_api(worker1_machine("worker-1", 60))).policy_yaml(CAPI),
        )
        .approves(Reason::NewNodeMachine),
        asks(
            "a Cluster API Machine in a namespace the policy does not name",
            only(in_namespace(cluster_api(worker1_machine("worker-1", 60)), "tenant-a"))
                .policy_yaml(CAPI),
        )
        .waits(Reason::UnknownMachine),
        asks(
            "Cluster API Machines are not trusted by default",
            only(cluster_api(worker1_machine("worker-1", 60))),
        )
        .waits(Reason::UnknownMachine),
        asks(
            "an OpenShift Machine outside openshift-machine-api",
            only(in_namespace(worker1_machine("worker-1", 60), "default")),
        )
        .waits(Reason::UnknownMachine),
        asks(
            "a Machine in a namespace machines.namespaces does not list",
            joining_world().policy_yaml("machines: {namespaces: {machine.openshift.io: [other]}}"),
        )
        .waits(Reason::UnknownMachine),
        asks(
            "a Machine of an API group machines.apiGroups does not list",
            joining_world().policy_yaml(
                "machines: {apiGroups: [cluster.x-k8s.io], namespaces: {cluster.x-k8s.io: [openshift-machine-api]}}",
            ),
        )
        .waits(Reason::UnknownMachine),
        asks("no Machine and no inventory", World::new()).waits(Reason::UnknownMachine),
        asks("a Machine for another host", only(by("InternalDNS", "worker-2")))
            .waits(Reason::UnknownMachine),
        asks(
            "a Machine naming a longer host with the name as prefix",
            only(by("InternalDNS", "worker-1.evil.example")),
        )
        .waits(Reason::UnknownMachine),
        asks(
            "a Machine's ExternalDNS or IP does not name a host",
            only(machine(
                "m",
                ago(60),
                &[("ExternalDNS", "worker-1"), ("InternalIP", "10.0.0.11")],
            )),
        )
        .waits(Reason::UnknownMachine),
        asks(
            "a Machine without addresses yet",
            only(machine("worker-1", ago(60), &[])),
        )
        .waits(Reason::UnknownMachine),
    ]);
}

#[test]
fn a_machine_vouches_only_while_it_is_free() {
    let holder = linked(
        machine("worker-1", ago(86_400), &[("InternalIP", "10.0.0.11")]),
        "worker-1",
    );
    let old = deleting(worker1_machine("worker-1", 300));
    let pattern = "inventory: [{namePattern: '^worker-[0-9]+$'}]";
    check([
        asks(
            "a Machine linked to another Node",
            only(linked(worker1_machine("worker-1", 60), "worker-1-old")),
        )
        .waits(Reason::MachineAlreadyLinked),
        asks(
            "a linked Machine is not overridden by inventory",
            only(linked(worker1_machine("worker-1", 60), "elsewhere"))
                .policy_yaml("inventory: [{name: worker-1}]"),
        )
        .waits(Reason::MachineAlreadyLinked),
        asks("a Machine being deleted", only(old.clone()))
            .waits(Reason::MachineDeleting)
            .says("being deleted"),
        asks(
            "a Machine being deleted decides alone: inventory cannot vouch over it",
            only(old.clone()).policy_yaml(pattern),
        )
        .waits(Reason::MachineDeleting),
        asks(
            "the replacement of a Machine being deleted",
            only(old).machine(worker1_machine("worker-1-replacement", 60)),
        )
        .approves(Reason::NewNodeMachine),
        asks(
            "a Machine linked to the name holds it without naming the host",
            only(holder.clone()).policy_yaml(pattern),
        )
        .waits(Reason::MachineAlreadyLinked)
        .says("name is taken"),
        asks(
            "a second, free Machine cannot take a held name over",
            only(holder.clone()).machine(worker1_machine("worker-1-b", 60)),
        )
        .waits(Reason::MachineAlreadyLinked),
        asks(
            "once the holder is being deleted the name is free",
            only(deleting(holder)).machine(worker1_machine("worker-1-b", 60)),
        )
        .approves(Reason::NewNodeMachine),
    ]);
}

#[test]
fn an_inventory_entry_vouches_for_the_names_it_matches() {
    let inventory = |yaml: &str| World::new().policy_yaml(yaml);
    let existing = || node("worker-1", &[]);
    let alternation = "inventory: [{namePattern: '^x|worker-1$'}]";
    check([
        asks("by name", inventory("inventory: [{name: worker-1}]"))
            .approves(Reason::NewNodeInventory),
        asks(
            "by pattern",
            inventory(r"inventory: [{namePattern: '^worker-[0-9]+$'}]"),
        )
        .approves(Reason::NewNodeInventory),
        Case::new(
            "a pattern is anchored: a longer name does not match",
            inventory(r"inventory: [{namePattern: '^worker-[0-9]+$'}]"),
            Csr::client(&w("worker-1.evil.example")),
        )
        .waits(Reason::UnknownMachine),
        Case::new(
            "a name compares case-insensitively, without a trailing dot",
            inventory("inventory: [{name: Worker-1.Example.COM.}]"),
            Csr::client(&w("worker-1.example.com")),
        )
        .approves(Reason::NewNodeInventory),
        Case::new(
            "namePattern ^worker-1|x$ does not mean 'starts with worker-1'",
            inventory("inventory: [{namePattern: '^worker-1|x$'}]"),
            Csr::client(&w("worker-1-evil")),
        )
        .waits(Reason::UnknownMachine)
        .says("no inventory entry matches"),
        Case::new(
            "namePattern ^x|worker-1$ does not mean 'ends with worker-1'",
            inventory(alternation),
            Csr::client(&w("evil-worker-1")),
        )
        .waits(Reason::UnknownMachine)
        .says("no inventory entry matches"),
        asks(
            "each alternative still matches exactly",
            inventory(alternation),
        )
        .approves(Reason::NewNodeInventory)
        .says("inventory pattern ^x|worker-1$"),
        asks(
            "the bootstrapper cannot ask for an existing Node's identity",
            joining_world().node(existing()),
        )
        .waits(Reason::NodeAlreadyExists),
        asks(
            "an existing Node wins over inventory",
            inventory("inventory: [{name: worker-1}]").node(existing()),
        )
        .waits(Reason::NodeAlreadyExists),
    ]);
}

#[test]
fn a_new_node_asks_within_its_join_window() {
    let created = |seconds| only(worker1_machine("worker-1", seconds));
    let mut undated_machine = worker1_machine("worker-1", 60);
    undated_machine.created = None;
    let by_name =
        World::new().policy_yaml("inventory: [{name: worker-1}]\nclient: {joinWindow: 30m}");
    let pattern = World::new().policy_yaml("inventory: [{namePattern: '^worker-[0-9]+$'}]");
    check([
        asks("a Machine created exactly 2 h before", created(7200))
            .approves(Reason::NewNodeMachine),
        asks("a Machine created 2 h and 1 s before", created(7201))
            .waits(Reason::OutsideJoinWindow),
        asks("a Machine created 10 s after the CSR", created(-10)).approves(Reason::NewNodeMachine),
        asks("a Machine created 11 s after the CSR", created(-11)).waits(Reason::OutsideJoinWindow),
        asks(
            "client.joinWindow sets the window",
            created(1800).policy_yaml("client: {joinWindow: 10m}"),
        )
        .waits(Reason::OutsideJoinWindow),
        // The CSR was created 1 h after the Machine; evaluated much later, still in it.
        Case::new(
            "the window runs from the CSR's creation, not from now",
            created(5 * 3600),
            worker1().created(ago(4 * 3600)),
        )
        .approves(Reason::NewNodeMachine),
        asks("a Machine without creationTimestamp", only(undated_machine))
            .waits(Reason::OutsideJoinWindow),
        Case::new(
            "inventory: a CSR created at the window's edge",
            by_name.clone(),
            worker1().created(ago(1800)),
        )
        .approves(Reason::NewNodeInventory),
        Case::new(
            "inventory: a CSR created a second before the window",
            by_name,
            worker1().created(ago(1801)),
        )
        .waits(Reason::OutsideJoinWindow)
        .says("client.joinWindow 30m"),
        Case::new(
            "inventory pattern: a CSR older than the default window",
            pattern.clone(),
            worker1().created(ago(7201)),
        )
        .waits(Reason::OutsideJoinWindow),
        Case::new(
            "inventory pattern: a CSR without creationTimestamp",
            pattern,
            undated(worker1()),
        )
        .waits(Reason::OutsideJoinWindow),
    ]);
}

#[test]
fn a_host_generation_gets_one_identity() {
    let first = |state| summary("csr-first", CLIENT_SIGNER, "worker-1", state, ago(30));
    // worker-1 joined 40 minutes ago; its Node was deleted and the host wiped since.
    let earlier = approved_new_node("csr-first-life", "worker-1", 40);
    let same_generation = only(worker1_machine("worker-1", 45 * 60)).csr(earlier.clone());
    let new_generation = only(worker1_machine("worker-1-v2", 5 * 60)).csr(earlier.clone());
    let inventory = World::new().policy_yaml("inventory: [{name: worker-1}]");
    check([
        asks(
            "a second client CSR for the same node",
            joining_world().csr(first(CsrState::Approved)),
        )
        .waits(Reason::DuplicateClientRequest),
        asks(
            "a second one when client.allowDuplicates is on",
            joining_world()
                .csr(first(CsrState::Approved))
                .policy_yaml("client: {allowDuplicates: true}"),
        )
        .approves(Reason::NewNodeMachine),
        asks(
            "a pending or denied sibling is no duplicate",
            joining_world()
                .csr(summary(
                    "csr-a",
                    CLIENT_SIGNER,
                    "worker-1",
                    CsrState::Pending,
                    ago(30),
                ))
                .csr(summary(
                    "csr-b",
                    CLIENT_SIGNER,
                    "worker-1",
                    CsrState::Denied,
                    ago(30),
                )),
        )
        .approves(Reason::NewNodeMachine),
        asks(
            "an approved CSR of another node is no duplicate",
            joining_world().csr(summary(
                "csr-a",
                CLIENT_SIGNER,
                "worker-2",
                CsrState::Issued,
                ago(30),
            )),
        )
        .approves(Reason::NewNodeMachine),
        asks(
            "the same Machine vouches once per generation",
            same_generation,
        )
        .waits(Reason::DuplicateClientRequest)
        .says("new Machine"),
        asks(
            "re-provisioned: a new Machine created after that approval",
            new_generation.clone(),
        )
        .approves(Reason::NewNodeMachine),
        // An attacker racing the new host with the same bootstrap credential.
        asks(
            "the second CSR of the new generation",
            new_generation.csr(approved_new_node("csr-attacker", "worker-1", 1)),
        )
        .waits(Reason::DuplicateClientRequest),
        asks(
            "without a Machine, an earlier approval holds the name",
            inventory.clone().csr(earlier),
        )
        .waits(Reason::DuplicateClientRequest)
        .says("delete that CSR (kubectl delete csr csr-first-life) to allow a new identity"),
        // `kubectl delete csr csr-first-life`: gone from the cluster, so from the world.
        asks("once an admin deleted the earlier CSR", inventory).approves(Reason::NewNodeInventory),
    ]);
}

/// A Machine giving host worker-1 a short name and an FQDN (and an IP), created 5 minutes
/// ago and not linked yet.
fn two_named(extra: (&str, &str)) -> MachineInfo {
    machine(
        "worker-1",
        ago(300),
        &[("Hostname", "worker-1"), extra, ("InternalIP", "10.0.0.11")],
    )
}

/// The FQDN's own first client CSR.
fn fqdn() -> Csr {
    Csr::client(&w("worker-1.example.com")).name("csr-fqdn")
}

#[test]
fn one_host_generation_one_identity_under_any_of_its_names() {
    let fqdn_machine = two_named(("InternalDNS", "worker-1.example.com"));
    let generation = machine_generation(&fqdn_machine);
    let under_short_name = || only(fqdn_machine.clone());
    let capi = cluster_api(fqdn_machine.clone());
    let capi_world = World::new().policy_yaml(CAPI).machine(capi.clone());
    let two_hostnames = two_named(("Hostname", "worker-1-alt"));
    let short_csr = |state| summary("csr-short", CLIENT_SIGNER, "worker-1", state, ago(60));
    let fqdn_case = |name: &str, world: World| Case::new(name, world, fqdn());
    check([
        fqdn_case(
            "recorded under its short name: no second identity under its FQDN",
            under_short_name().minted(
                "worker-1",
                "csr-short",
                "NewNodeMachine",
                ago(60),
                generation.clone(),
            ),
        )
        .waits(Reason::DuplicateClientRequest)
        .says("already has its identity: system:node:worker-1")
        .for_node("worker-1.example.com"),
        fqdn_case(
            "approved under its short name (the CSR still held, no record)",
            under_short_name().csr(short_csr(CsrState::Issued)),
        )
        .waits(Reason::DuplicateClientRequest)
        .says("under its other name worker-1"),
        fqdn_case(
            "its short name's Node registered, the Machine not linked yet",
            under_short_name().node(node("worker-1", &[("InternalIP", "10.0.0.11")])),
        )
        .waits(Reason::DuplicateClientRequest)
        .says("Node worker-1 is registered"),
        fqdn_case(
            "a Cluster API Machine alike",
            capi_world
                .clone()
                .node(node("worker-1", &[("InternalIP", "10.0.0.11")])),
        )
        .waits(Reason::DuplicateClientRequest),
        fqdn_case(
            "a Cluster API Machine's record alike",
            capi_world.clone().minted(
                "worker-1",
                "csr-short",
                "NewNodeMachine",
                ago(60),
                machine_generation(&capi),
            ),
        )
        .waits(Reason::DuplicateClientRequest),
        Case::new(
            "two Hostnames: no second identity under the other",
            only(two_hostnames.clone()).minted(
                "worker-1",
                "csr-short",
                "NewNodeMachine",
                ago(60),
                machine_generation(&two_hostnames),
            ),
            Csr::client(&w("worker-1-alt")).name("csr-alt"),
        )
        .waits(Reason::DuplicateClientRequest),
        // The first identity of the host, under either name, is still minted.
        fqdn_case("its FQDN's first identity", under_short_name()).approves(Reason::NewNodeMachine),
        asks("its short name's first identity", under_short_name())
            .approves(Reason::NewNodeMachine),
        fqdn_case("a Cluster API Machine's first", capi_world).approves(Reason::NewNodeMachine),
        // A pending or denied CSR under the other name minted nothing.
        fqdn_case(
            "a pending CSR under its short name",
            under_short_name().csr(short_csr(CsrState::Pending)),
        )
        .approves(Reason::NewNodeMachine),
    ]);
}

#[test]
fn a_name_two_live_host_generations_claim_is_ambiguous() {
    let older = worker1_machine("worker-1-old", 30 * 60);
    let newer = worker1_machine("worker-1-new", 5 * 60);
    check([
        asks(
            "two unlinked trusted Machines name the host",
            World::new().machine(older.clone()).machine(newer.clone()),
        )
        .waits(Reason::AmbiguousHost)
        .class(ReasonClass::ForAnAdmin)
        .says("worker-1-old")
        .says("worker-1-new"),
        asks(
            "the older one already minted: the newer one is no new generation",
            World::new()
                .machine(older.clone())
                .machine(newer.clone())
                .minted(
                    "worker-1",
                    "csr-first",
                    "NewNodeMachine",
                    ago(20 * 60),
                    machine_generation(&older),
                ),
        )
        .waits(Reason::AmbiguousHost),
        asks(
            "the older one being deleted: the newer one is the host",
            World::new()
                .machine(deleting(older.clone()))
                .machine(newer.clone()),
        )
        .approves(Reason::NewNodeMachine),
        asks(
            "an untrusted namesake is no rival",
            World::new()
                .machine(in_namespace(older, "elsewhere"))
                .machine(newer),
        )
        .approves(Reason::NewNodeMachine),
    ]);
}

#[test]
fn the_record_remembers_identities_after_their_csrs_are_gone() {
    let m = worker1_machine("worker-1", 45 * 60);
    let generation = machine_generation(&m);
    let entry_policy = "inventory: [{name: worker-1}]";
    let entry: Policy = Policy::from_yaml(entry_policy).unwrap();
    let entry_generation = inventory_generation(&entry.inventory[0], "worker-1");
    let worker2_entry: Policy = Policy::from_yaml("inventory: [{name: worker-2}]").unwrap();
    let pattern_policy = "inventory: [{namePattern: '^worker-[0-9]+$'}]";
    let pattern: Policy = Policy::from_yaml(pattern_policy).unwrap();
    let pattern_generation = inventory_generation(&pattern.inventory[0], "worker-1");
    check([
        asks(
            "minted for this Machine, its CSR deleted by the cleaner",
            only(m.clone()).minted(
                "worker-1",
                "csr-gone",
                "NewNodeMachine",
                ago(30 * 60),
                generation.clone(),
            ),
        )
        .waits(Reason::DuplicateClientRequest)
        .says("csr-gone"),
        asks(
            "minted before this Machine was created: a new generation",
            only(worker1_machine("worker-1-v2", 5 * 60)).minted(
                "worker-1",
                "csr-gone",
                "NewNodeMachine",
                ago(30 * 60),
                generation.clone(),
            ),
        )
        .approves(Reason::NewNodeMachine),
        asks(
            "through the inventory, hours ago",
            World::new().policy_yaml(entry_policy).minted(
                "worker-1",
                "csr-gone",
                "NewNodeInventory",
                ago(3 * 3600),
                entry_generation.clone(),
            ),
        )
        .waits(Reason::DuplicateClientRequest)
        .says("kubectl delete nodeidentity"),
        asks(
            "through an inventory pattern, hours ago",
            World::new().policy_yaml(pattern_policy).minted(
                "worker-1",
                "csr-gone",
                "NewNodeInventory",
                ago(3 * 3600),
                pattern_generation,
            ),
        )
        .waits(Reason::DuplicateClientRequest),
        asks(
            "recorded for this very CSR (written before a crash, approval not yet)",
            only(m.clone()).minted(
                "worker-1",
                "csr-client",
                "NewNodeMachine",
                ago(5),
                generation.clone(),
            ),
        )
        .approves(Reason::NewNodeMachine),
        Case::new(
            "recorded for a CSR of this name deleted and re-created",
            only(m.clone()).minted(
                "worker-1",
                "csr-client",
                "NewNodeMachine",
                ago(5),
                generation.clone(),
            ),
            worker1().uid(Some("uid-recreated")),
        )
        .waits(Reason::DuplicateClientRequest),
        asks(
            "client.allowDuplicates switches the record off too",
            only(m)
                .policy_yaml("client: {allowDuplicates: true}")
                .minted(
                    "worker-1",
                    "csr-gone",
                    "NewNodeMachine",
                    ago(30 * 60),
                    generation,
                ),
        )
        .approves(Reason::NewNodeMachine),
        asks(
            "another node's record is no duplicate",
            World::new().policy_yaml(entry_policy).minted(
                "worker-2",
                "csr-gone",
                "NewNodeInventory",
                ago(3 * 3600),
                inventory_generation(&worker2_entry.inventory[0], "worker-2"),
            ),
        )
        .approves(Reason::NewNodeInventory),
    ]);
}

#[test]
fn an_identity_minted_names_its_host_generation_for_the_record() {
    let m = two_named(("InternalDNS", "worker-1.example.com"));
    let minting = only(m.clone()).decide(&worker1());
    assert_eq!(minting.reason, Reason::NewNodeMachine);
    let Some(generation) = minting.mints_for else {
        panic!("a new node's approval mints an identity: {minting:?}");
    };
    assert_eq!(generation, machine_generation(&m));
    assert_eq!(generation.names, ["worker-1", "worker-1.example.com"]);
    assert!(generation.key.contains("openshift-machine-api/worker-1"));
    let renewal = registered_world().decide(&renewal("worker-1"));
    assert_eq!(renewal.reason, Reason::ClientRenewal);
    assert_eq!(
        renewal.mints_for, None,
        "a renewal keeps the identity it has"
    );
    let refused = joining_world().decide(&worker1().user("alice", &[]));
    assert_eq!(refused.mints_for, None);
}
