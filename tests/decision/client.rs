//! Client CSRs (`src/decision/client.rs`): a client certificate carries no SAN and only
//! client usages; the requester is a configured bootstrapper (a new node) or the node
//! itself (a renewal); a new node is vouched for by a Machine in its join window or by an
//! inventory entry; one identity per host generation.

use csr_approver::decision::Reason;
use csr_approver::inventory::{CsrState, MachineInfo};
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
        .says("delete that CSR (kubectl delete csr) to allow a new identity"),
        // `kubectl delete csr csr-first-life`: gone from the cluster, so from the world.
        asks("once an admin deleted the earlier CSR", inventory).approves(Reason::NewNodeInventory),
    ]);
}
