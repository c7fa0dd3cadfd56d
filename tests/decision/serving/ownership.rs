//! Every serving SAN is an address of the node, from the sources the policy trusts
//! (`serving.addressSources`: the Node's status, its linked Machine, inventory entries
//! naming it), compared canonically; and no other host's claim outranks the node's
//! (`serving/claims.rs`): a trusted claim beats a self-report, equals block both.

use csr_approver::decision::Reason;
use csr_approver::inventory::MachineInfo;

use crate::builders::*;
use crate::scenes::*;
use crate::{Case, check};

/// A serving CSR of worker-1 in `world`.
fn worker1_asks(name: &str, world: World, request: Request) -> Case {
    Case::new(name, world, serving("worker-1", request))
}

/// worker-1 as `registered_world` has it (Machine linked, Node with 10.0.0.11), plus a
/// registered worker-2 whose kubelet reports `worker2_addresses`.
fn two_nodes(worker2_addresses: &[(&str, &str)]) -> World {
    let m2 = machine(
        "worker-2",
        ago(600),
        &[("InternalDNS", "worker-2"), ("InternalIP", "10.0.0.12")],
    );
    registered_world()
        .machine(linked(m2, "worker-2"))
        .node(node("worker-2", worker2_addresses))
}

/// worker-1 registered with no address of its own and this policy.
fn addressless(policy: &str) -> World {
    World::new().node(node("worker-1", &[])).policy_yaml(policy)
}

#[test]
fn sans_the_node_owns_are_approved() {
    let node_ip = |ip: &str| World::new().node(node("worker-1", &[("InternalIP", ip)]));
    let inventory = World::new().node(node("worker-0.example.com", &[])).policy_yaml(
        "inventory: [{name: worker-0.example.com, addresses: [10.1.101.50, worker-0.example.com]}]",
    );
    check([
        worker1_asks(
            "names and IP from the Node and its Machine",
            registered_world(),
            w("worker-1")
                .dns("worker-1")
                .dns("worker-1.example.com")
                .ip("10.0.0.11"),
        )
        .approves(Reason::ServingAddressesVerified)
        .says("worker-1.example.com"),
        worker1_asks(
            "an IP only",
            registered_world(),
            w("worker-1").ip("10.0.0.11"),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "a DNS name in another case, with a trailing dot",
            registered_world(),
            w("worker-1").dns("Worker-1.Example.com."),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "an IPv6 SAN in long form, the address in short",
            node_ip("fd00::b"),
            w("worker-1").ip("fd00:0000:0000:0000:0000:0000:0000:000b"),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "an IPv6 SAN in short form, the address in long",
            node_ip("FD00:0:0:0:0:0:0:B"),
            w("worker-1").ip("fd00::b"),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "an IPv4-mapped SAN, the address in IPv4",
            registered_world(),
            w("worker-1").ip("::ffff:10.0.0.11"),
        )
        .approves(Reason::ServingAddressesVerified),
        Case::new(
            "inventory addresses belong to the node the entry names",
            inventory,
            serving(
                "worker-0.example.com",
                w("worker-0.example.com")
                    .ip("10.1.101.50")
                    .dns("worker-0.example.com"),
            ),
        )
        .approves(Reason::ServingAddressesVerified),
    ]);
}

#[test]
fn sans_the_node_does_not_own_are_foreign() {
    let worker2_linked = linked(
        machine("worker-2", ago(60), &[("InternalIP", "10.0.0.12")]),
        "worker-2",
    );
    let machine_only = World::new()
        .node(node("worker-1", &[("InternalIP", "10.0.0.50")]))
        .policy_yaml("serving: {addressSources: [Machine]}");
    let node_only = registered_world().policy_yaml("serving: {addressSources: [Node]}");
    // A status address that is only valid once trimmed is evidence of nothing.
    let untrimmed = World::new().node(node(
        "worker-b",
        &[
            ("InternalIP", " 10.0.0.12"),
            ("InternalDNS", "worker-b.example.com"),
        ],
    ));
    check([
        Case::new(
            "an IP no source lists, named with the addresses the node has",
            World::new().node(node("worker-b", &[("InternalIP", "10.0.0.12")])),
            serving("worker-b", w("worker-b").ip("10.0.0.13")),
        )
        .waits(Reason::ForeignSan)
        .starts_with("IP SAN 10.0.0.13 is not an address of node worker-b (has 10.0.0.12). ")
        .says("kubectl certificate approve csr-serving"),
        worker1_asks(
            "an extra IP beside owned ones",
            registered_world(),
            w("worker-1").ip("10.0.0.11").ip("10.0.0.99"),
        )
        .waits(Reason::ForeignSan),
        worker1_asks(
            "another node's IP",
            registered_world().node(node("worker-2", &[("InternalIP", "10.0.0.12")])),
            w("worker-1").ip("10.0.0.12"),
        )
        .waits(Reason::ForeignSan),
        worker1_asks(
            "a DNS name no source lists",
            registered_world(),
            w("worker-1").ip("10.0.0.11").dns("worker-9.example.com"),
        )
        .waits(Reason::ForeignSan),
        worker1_asks(
            "a DNS name with an owned name as prefix",
            registered_world(),
            w("worker-1").dns("worker-1.example.com.evil.io"),
        )
        .waits(Reason::ForeignSan),
        worker1_asks(
            "addressSources [Machine] ignores the Node's addresses",
            machine_only,
            w("worker-1").ip("10.0.0.50"),
        )
        .waits(Reason::ForeignSan),
        // worker-1.example.com is only on the Machine.
        worker1_asks(
            "addressSources [Node] ignores the Machine's addresses",
            node_only.clone(),
            w("worker-1").dns("worker-1.example.com"),
        )
        .waits(Reason::ForeignSan),
        worker1_asks(
            "addressSources [Node] takes the Node's",
            node_only,
            w("worker-1").dns("worker-1"),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "addressSources [Machine] waits for the Machine to be linked",
            joining_world()
                .node(node("worker-1", &[]))
                .policy_yaml("serving: {addressSources: [Machine]}"),
            w("worker-1").ip("10.0.0.11"),
        )
        .waits(Reason::MachineNotLinked),
        worker1_asks(
            "a Machine linked to another node lends no address",
            registered_world().machine(worker2_linked),
            w("worker-1").ip("10.0.0.12"),
        )
        .waits(Reason::ForeignSan),
        worker1_asks(
            "an inventory entry's ipRanges never identify a node",
            addressless("inventory: [{namePattern: '^worker-[0-9]+$', ipRanges: [10.0.0.0/24]}]"),
            w("worker-1").ip("10.0.0.11"),
        )
        .waits(Reason::ForeignSan),
        worker1_asks(
            "serving.allowedIPRanges never identify a node",
            addressless("serving: {allowedIPRanges: [10.0.0.0/8]}"),
            w("worker-1").ip("10.0.0.11"),
        )
        .waits(Reason::ForeignSan),
        worker1_asks(
            "an inventory entry's addresses for another host",
            addressless("inventory: [{name: worker-2, addresses: [10.0.0.12]}]"),
            w("worker-1").ip("10.0.0.12"),
        )
        .waits(Reason::ForeignSan),
        Case::new(
            "a Node address valid only once trimmed",
            untrimmed,
            serving("worker-b", w("worker-b").ip("10.0.0.12")),
        )
        .waits(Reason::ForeignSan),
    ]);
}

#[test]
fn addresses_claimed_by_two_owners_are_never_approved() {
    let stolen_ip = [("InternalIP", "10.0.0.12"), ("InternalIP", "10.0.0.11")];
    let duplicate_machine = linked(
        machine(
            "worker-3",
            ago(900),
            &[("InternalDNS", "worker-3"), ("InternalIP", "10.0.0.11")],
        ),
        "worker-3",
    );
    let hostless_machine = machine("spare", ago(900), &[("InternalIP", "10.0.0.11")]);
    let worker2_asks = |name: &str, world: World, request: Request| {
        Case::new(name, world, serving("worker-2", request))
    };
    let bare_metal = World::new()
        .policy_yaml("machines: {apiGroups: []}\nserving: {addressSources: [Node]}")
        .node(node("metal-1", &[("InternalIP", "10.1.0.21")]))
        .node(node(
            "metal-2",
            &[("InternalIP", "10.1.0.22"), ("InternalIP", "10.1.0.21")],
        ));
    check([
        // Its neighbour's linked Machine outranks its self-report; the neighbour's own
        // request is approved (`a_trusted_owner_wins_and_equals_block_both`).
        worker2_asks(
            "a kubelet claims its neighbour's IP and asks for it",
            two_nodes(&stolen_ip),
            w("worker-2").ip("10.0.0.11"),
        )
        .waits(Reason::ForeignSan)
        .says("IP SAN 10.0.0.11 belongs to worker-1 (Machine openshift-machine-api/worker-1")
        .says("node worker-2 has it only from its own report"),
        worker2_asks(
            "inside an allowedIPRanges fence the claim is still refused",
            two_nodes(&stolen_ip).policy_yaml("serving: {allowedIPRanges: [10.0.0.0/24]}"),
            w("worker-2").ip("10.0.0.11"),
        )
        .waits(Reason::ForeignSan)
        .says("worker-1"),
        Case::new(
            "bare metal, Node status only: a kubelet claims another's IP",
            bare_metal,
            serving("metal-2", w("metal-2").ip("10.1.0.21")),
        )
        .waits(Reason::AddressConflict)
        .says("metal-1"),
        worker2_asks(
            "a kubelet claims another node's name as its Hostname",
            two_nodes(&[("InternalIP", "10.0.0.12"), ("Hostname", "worker-1")]),
            w("worker-2").dns("worker-1").ip("10.0.0.12"),
        )
        .waits(Reason::ForeignSan)
        .says("worker-1 (Node worker-1's name)"),
        worker2_asks(
            "compared canonically: an IPv4-mapped IPv6 claim is the same IP",
            two_nodes(&[
                ("InternalIP", "10.0.0.12"),
                ("InternalIP", "::ffff:10.0.0.11"),
            ]),
            w("worker-2").ip("10.0.0.11"),
        )
        .waits(Reason::ForeignSan)
        .says("worker-1"),
        worker2_asks(
            "compared canonically: a DNS claim in upper case with a trailing dot",
            two_nodes(&[
                ("InternalIP", "10.0.0.12"),
                ("InternalDNS", "WORKER-1.Example.com."),
            ]),
            w("worker-2").dns("worker-1.example.com").ip("10.0.0.12"),
        )
        .waits(Reason::ForeignSan)
        .says("worker-1"),
        worker1_asks(
            "a stale Machine of another node still lists the IP",
            registered_world().machine(duplicate_machine),
            w("worker-1").ip("10.0.0.11"),
        )
        .waits(Reason::AddressConflict)
        .says("worker-3 (Machine openshift-machine-api/worker-3"),
        worker1_asks(
            "a Machine naming no host owns its addresses itself",
            registered_world().machine(hostless_machine),
            w("worker-1").ip("10.0.0.11"),
        )
        .waits(Reason::AddressConflict)
        .says("Machine openshift-machine-api/spare"),
        worker1_asks(
            "an inventory entry names the IP for another host",
            registered_world().policy_yaml("inventory: [{name: worker-5, addresses: [10.0.0.11]}]"),
            w("worker-1").ip("10.0.0.11"),
        )
        .waits(Reason::AddressConflict)
        .says("worker-5 (inventory entry worker-5)"),
    ]);
}

#[test]
fn an_ipv4_address_embedded_in_ipv6_conflicts_with_that_address() {
    let worker2_asks = |name: &str, world: World, request: Request| {
        Case::new(name, world, serving("worker-2", request))
    };
    // worker-2's kubelet lists worker-1's 10.0.0.11 in an IPv6 form as its own address and
    // asks for it: whoever claims either form claims the other.
    let mut rows = Vec::new();
    for (form, embedding) in [
        ("64:ff9b::10.0.0.11", "NAT64 /96"),
        ("64:ff9b::a00:b", "NAT64 /96, in hex"),
        ("64:ff9b:1::10.0.0.11", "local-use NAT64"),
        (
            "64:ff9b:1:ffff::a00:b",
            "local-use NAT64, other middle bits",
        ),
        ("2002:a00:b::1", "6to4"),
        ("2002:a00:b:1::99", "6to4, another subnet"),
        ("::10.0.0.11", "IPv4-compatible"),
    ] {
        rows.push(
            worker2_asks(
                &format!("a kubelet claims its neighbour's IP as {form} ({embedding})"),
                two_nodes(&[("InternalIP", "10.0.0.12"), ("InternalIP", form)]),
                w("worker-2").ip("10.0.0.12").ip(form),
            )
            // worker-1's Machine is a trusted claim; worker-2 has the form only from its
            // own report.
            .waits(Reason::ForeignSan)
            .says("belongs to worker-1"),
        );
    }
    rows.extend([
        worker1_asks(
            "the other way round: another's self-reported NAT64 form stalls no trusted owner",
            two_nodes(&[
                ("InternalIP", "10.0.0.12"),
                ("InternalIP", "64:ff9b::10.0.0.11"),
            ]),
            w("worker-1").ip("10.0.0.11"),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "the other way round between equals: two self-reports of one address",
            World::new()
                .policy_yaml("serving: {addressSources: [Node]}")
                .node(node("worker-1", &[("InternalIP", "10.0.0.11")]))
                .node(node("worker-2", &[("InternalIP", "64:ff9b::10.0.0.11")])),
            w("worker-1").ip("10.0.0.11"),
        )
        .waits(Reason::AddressConflict)
        .says("also by worker-2"),
        worker2_asks(
            "two embeddings of one IPv4 address conflict with each other",
            registered_world()
                .node(node("worker-1", &[("InternalIP", "2002:a00:b::1")]))
                .node(node(
                    "worker-2",
                    &[
                        ("InternalIP", "10.0.0.12"),
                        ("InternalIP", "64:ff9b::a00:b"),
                    ],
                )),
            w("worker-2").ip("64:ff9b::a00:b"),
        )
        .waits(Reason::ForeignSan)
        .says("belongs to worker-1"),
        worker2_asks(
            "an inventory entry's IPv4 address conflicts with its NAT64 form",
            two_nodes(&[
                ("InternalIP", "10.0.0.12"),
                ("InternalIP", "64:ff9b::10.0.0.99"),
            ])
            .policy_yaml("inventory: [{name: worker-5, addresses: [10.0.0.99]}]"),
            w("worker-2").ip("64:ff9b::10.0.0.99"),
        )
        .waits(Reason::ForeignSan)
        .says("worker-5 (inventory entry worker-5)"),
        worker1_asks(
            "owning the IPv4 address is not owning its NAT64 form",
            registered_world(),
            w("worker-1").ip("64:ff9b::10.0.0.11"),
        )
        .waits(Reason::ForeignSan)
        .says("64:ff9b::a00:b"),
        worker1_asks(
            "a node listing both forms owns both and conflicts with no one",
            registered_world().node(node(
                "worker-1",
                &[
                    ("InternalIP", "10.0.0.11"),
                    ("InternalIP", "64:ff9b::10.0.0.11"),
                ],
            )),
            w("worker-1").ip("10.0.0.11").ip("64:ff9b::10.0.0.11"),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "an IPv6 address outside the embedding prefixes is its own",
            two_nodes(&[("InternalIP", "10.0.0.12"), ("InternalIP", "fd00::a00:c")]).node(node(
                "worker-1",
                &[("InternalIP", "10.0.0.11"), ("InternalIP", "fd00::a00:b")],
            )),
            w("worker-1").ip("fd00::a00:b"),
        )
        .approves(Reason::ServingAddressesVerified),
    ]);
    check(rows);
}

#[test]
fn one_owner_through_several_sources_is_no_conflict() {
    let old_worker3 = machine(
        "old-worker-3",
        ago(9000),
        &[("InternalDNS", "worker-3"), ("InternalIP", "10.0.0.11")],
    );
    let untrusted = machine(
        "tenant-machine",
        ago(60),
        &[("InternalDNS", "worker-9"), ("InternalIP", "10.0.0.11")],
    );
    let own_ip = || w("worker-1").ip("10.0.0.11");
    check([
        worker1_asks(
            "Node, linked Machine and inventory entry of the same node agree",
            registered_world().policy_yaml(
                "inventory: [{name: worker-1, addresses: [10.0.0.11, worker-1.example.com]}]",
            ),
            own_ip().dns("worker-1").dns("worker-1.example.com"),
        )
        .approves(Reason::ServingAddressesVerified)
        .says("no other owner"),
        worker1_asks(
            "a Machine being deleted claims nothing",
            registered_world().machine(deleting(linked(old_worker3, "worker-3"))),
            own_ip(),
        )
        .approves(Reason::ServingAddressesVerified)
        .says("10.0.0.11"),
        worker1_asks(
            "a Machine in a namespace the policy does not trust claims nothing",
            registered_world().machine(in_namespace(untrusted, "tenant-a")),
            own_ip(),
        )
        .approves(Reason::ServingAddressesVerified)
        .says("10.0.0.11"),
        worker1_asks(
            "with addressSources [Machine], kubelet-reported status claims nothing",
            two_nodes(&[("InternalIP", "10.0.0.12"), ("InternalIP", "10.0.0.11")])
                .policy_yaml("serving: {addressSources: [Machine]}"),
            own_ip(),
        )
        .approves(Reason::ServingAddressesVerified)
        .says("Machine openshift-machine-api/worker-1"),
        Case::new(
            "an API server endpoint IP is a control-plane node's own address (SNO)",
            World::new().node(node(
                "master-0",
                &[("InternalIP", "192.168.111.20"), ("Hostname", "master-0")],
            )),
            serving(
                "master-0",
                w("master-0").ip("192.168.111.20").dns("master-0"),
            ),
        )
        .approves(Reason::ServingAddressesVerified)
        .says("192.168.111.20"),
    ]);
}

/// worker-1 as `registered_world` has it, its kubelet also reporting `extra` in its status.
fn worker1_reports(extra: &[(&str, &str)]) -> World {
    let mut addresses = vec![("InternalIP", "10.0.0.11"), ("Hostname", "worker-1")];
    addresses.extend_from_slice(extra);
    registered_world().node(node("worker-1", &addresses))
}

/// A trusted Machine for host worker-5, created five minutes ago, not yet linked.
fn joining_worker5() -> MachineInfo {
    machine(
        "worker-5",
        ago(300),
        &[("InternalDNS", "worker-5"), ("InternalIP", "10.0.0.15")],
    )
}

/// Every trusted statement is a claim for its host, whatever `serving.addressSources` says;
/// a name or address a trusted source attributes to another host is never certified on a
/// node's self-report (its own Node status) alone.
#[test]
fn trusted_claims_of_other_hosts_refuse_self_reports() {
    // Node worker-2 was deleted; its Machine still holds the name in its nodeRef.
    let nodeless = linked(
        machine("worker-2", ago(900), &[("InternalIP", "10.0.0.12")]),
        "worker-2",
    );
    // worker-2 registered; its status and Machine give only its short name.
    let short_named = registered_world()
        .machine(linked(
            machine("worker-2", ago(900), &[("InternalDNS", "worker-2")]),
            "worker-2",
        ))
        .node(node(
            "worker-2",
            &[("InternalIP", "10.0.0.12"), ("Hostname", "worker-2")],
        ));
    let fqdn_in_status = |world: World| {
        world.node(node(
            "worker-1",
            &[
                ("InternalIP", "10.0.0.11"),
                ("Hostname", "worker-1"),
                ("InternalDNS", "worker-2.example.com"),
            ],
        ))
    };
    let bare_metal_fqdn = World::new()
        .policy_yaml("machines: {apiGroups: []}")
        .node(node("metal-2", &[("InternalIP", "10.1.0.22")]))
        .node(node(
            "metal-1",
            &[
                ("InternalIP", "10.1.0.21"),
                ("InternalDNS", "metal-2.corp.example"),
            ],
        ));
    check([
        worker1_asks(
            "the name a linked Machine's nodeRef holds after its Node is deleted",
            worker1_reports(&[("Hostname", "worker-2")]).machine(nodeless),
            w("worker-1").dns("worker-2"),
        )
        .waits(Reason::ForeignSan)
        .says("worker-2 (Machine openshift-machine-api/worker-2"),
        worker1_asks(
            "an inventory entry's own name",
            worker1_reports(&[("Hostname", "worker-5")])
                .policy_yaml("inventory: [{name: worker-5, addresses: [10.0.0.15]}]"),
            w("worker-1").dns("worker-5"),
        )
        .waits(Reason::ForeignSan)
        .says("worker-5 (inventory entry worker-5)"),
        worker1_asks(
            "a name an inventory pattern reserves for a host not yet joined",
            worker1_reports(&[("Hostname", "worker-7")])
                .policy_yaml("inventory: [{namePattern: '^worker-[0-9]+$'}]"),
            w("worker-1").dns("worker-7"),
        )
        .waits(Reason::ForeignSan)
        .says("inventory pattern ^worker-[0-9]+$"),
        worker1_asks(
            "a joining host's IP from its trusted Machine, with addressSources [Node]",
            worker1_reports(&[("InternalIP", "10.0.0.15")])
                .machine(joining_worker5())
                .policy_yaml("serving: {addressSources: [Node]}"),
            w("worker-1").ip("10.0.0.15"),
        )
        .waits(Reason::ForeignSan)
        .says("worker-5 (Machine openshift-machine-api/worker-5"),
        worker1_asks(
            "a joining host's name from its trusted Machine, with addressSources [Node]",
            worker1_reports(&[("Hostname", "worker-5")])
                .machine(joining_worker5())
                .policy_yaml("serving: {addressSources: [Node]}"),
            w("worker-1").dns("worker-5"),
        )
        .waits(Reason::ForeignSan)
        .says("worker-5"),
        worker1_asks(
            "another node's FQDN when that node's status lists only its short name",
            fqdn_in_status(short_named),
            w("worker-1").dns("worker-2.example.com"),
        )
        .waits(Reason::ForeignSan)
        .says("worker-2 (Node worker-2's name)"),
        worker1_asks(
            "the FQDN of a joining host its Machine names by its short name",
            worker1_reports(&[("InternalDNS", "worker-5.example.com")]).machine(joining_worker5()),
            w("worker-1").dns("worker-5.example.com"),
        )
        .waits(Reason::ForeignSan)
        .says("worker-5"),
        worker1_asks(
            "the FQDN of a host an inventory pattern reserves",
            worker1_reports(&[("InternalDNS", "worker-7.example.com")])
                .policy_yaml("inventory: [{namePattern: '^worker-[0-9]+$'}]"),
            w("worker-1").dns("worker-7.example.com"),
        )
        .waits(Reason::ForeignSan)
        .says("inventory pattern"),
        Case::new(
            "bare metal: another node's FQDN, Node status only",
            bare_metal_fqdn,
            serving("metal-1", w("metal-1").dns("metal-2.corp.example")),
        )
        .waits(Reason::ForeignSan)
        .says("metal-2 (Node metal-2's name)"),
    ]);
}

/// The node's own names stay its own: its name, the names its trusted sources give it, and
/// names whose first label is its own name.
#[test]
fn a_hosts_own_names_are_never_anothers() {
    let pattern = "inventory: [{namePattern: '^worker-[0-9a-z.-]+$'}]";
    // The AWS shape: the Machine gives the FQDN first, the Node is named by the short name.
    let aws = World::new()
        .machine(machine(
            "w1",
            ago(600),
            &[
                ("InternalDNS", "ip-10-0-0-21.ec2.internal"),
                ("Hostname", "ip-10-0-0-21"),
                ("InternalIP", "10.0.0.21"),
            ],
        ))
        .node(node(
            "ip-10-0-0-21",
            &[
                ("InternalIP", "10.0.0.21"),
                ("Hostname", "ip-10-0-0-21"),
                ("InternalDNS", "ip-10-0-0-21.ec2.internal"),
            ],
        ));
    check([
        worker1_asks(
            "its own name matches an inventory pattern",
            registered_world().policy_yaml(pattern),
            w("worker-1").dns("worker-1").ip("10.0.0.11"),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "a pattern reserves nothing a trusted source gives the node",
            registered_world().policy_yaml(pattern),
            w("worker-1").dns("worker-1.example.com"),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "its own FQDN from its status: the first label is its name",
            worker1_reports(&[("InternalDNS", "worker-1.corp.example")]).policy_yaml(pattern),
            w("worker-1").dns("worker-1.corp.example"),
        )
        .approves(Reason::ServingAddressesVerified),
        Case::new(
            "an unlinked Machine speaks for every host name it gives, not its first",
            aws,
            serving(
                "ip-10-0-0-21",
                w("ip-10-0-0-21")
                    .dns("ip-10-0-0-21.ec2.internal")
                    .dns("ip-10-0-0-21")
                    .ip("10.0.0.21"),
            ),
        )
        .approves(Reason::ServingAddressesVerified),
    ]);
}

/// A compromised node that writes its neighbour's name and IP into its own Node status
/// gains nothing and stalls nothing when a trusted source backs the neighbour; two
/// self-reports, or two trusted sources, still block both.
#[test]
fn a_trusted_owner_wins_and_equals_block_both() {
    let stolen = two_nodes(&[
        ("InternalIP", "10.0.0.12"),
        ("InternalIP", "10.0.0.11"),
        ("Hostname", "worker-1"),
    ]);
    let bare_metal = World::new()
        .policy_yaml("machines: {apiGroups: []}\nserving: {addressSources: [Node]}")
        .node(node("metal-1", &[("InternalIP", "10.1.0.21")]))
        .node(node(
            "metal-2",
            &[("InternalIP", "10.1.0.22"), ("InternalIP", "10.1.0.21")],
        ));
    let inventory_backed = bare_metal
        .clone()
        .policy_yaml(
            "machines: {apiGroups: []}\nserving: {addressSources: [Node]}\ninventory: [{name: metal-1, addresses: [10.1.0.21]}]",
        );
    // One unlinked Machine names two hosts, and a Node registered under each name.
    let one_host_two_nodes = World::new()
        .machine(machine(
            "w1",
            ago(600),
            &[
                ("Hostname", "w1"),
                ("InternalDNS", "w1.ec2.internal"),
                ("InternalIP", "10.0.0.21"),
            ],
        ))
        .node(node("w1", &[("InternalIP", "10.0.0.21")]))
        .node(node("w1.ec2.internal", &[("InternalIP", "10.0.0.21")]));
    check([
        Case::new(
            "an unlinked Machine naming two registered Nodes backs neither: the second",
            one_host_two_nodes.clone(),
            serving("w1.ec2.internal", w("w1.ec2.internal").ip("10.0.0.21")),
        )
        .waits(Reason::AddressConflict)
        .says("names both w1 and w1.ec2.internal"),
        Case::new(
            "an unlinked Machine naming two registered Nodes backs neither: the first",
            one_host_two_nodes,
            serving("w1", w("w1").ip("10.0.0.21")),
        )
        .waits(Reason::AddressConflict),
        worker1_asks(
            "the neighbour's renewal is approved: its linked Machine backs it",
            stolen.clone(),
            w("worker-1").dns("worker-1").ip("10.0.0.11"),
        )
        .approves(Reason::ServingAddressesVerified),
        Case::new(
            "the compromised node's request for the neighbour's IP is refused",
            stolen.clone(),
            serving("worker-2", w("worker-2").ip("10.0.0.11")),
        )
        .waits(Reason::ForeignSan)
        .says("worker-1 (Machine openshift-machine-api/worker-1"),
        Case::new(
            "the compromised node's request for the neighbour's name is refused",
            stolen,
            serving("worker-2", w("worker-2").dns("worker-1")),
        )
        .waits(Reason::ForeignSan)
        .says("worker-1 (Node worker-1's name)"),
        Case::new(
            "bare metal, two self-reports: the first node waits too",
            bare_metal.clone(),
            serving("metal-1", w("metal-1").ip("10.1.0.21")),
        )
        .waits(Reason::AddressConflict)
        .says("metal-2 (Node metal-2 status)"),
        Case::new(
            "bare metal, an inventory entry backs the first node: it is approved",
            inventory_backed.clone(),
            serving("metal-1", w("metal-1").ip("10.1.0.21")),
        )
        .approves(Reason::ServingAddressesVerified),
        Case::new(
            "bare metal, an inventory entry backs the first node: the other is refused",
            inventory_backed,
            serving("metal-2", w("metal-2").ip("10.1.0.21")),
        )
        .waits(Reason::ForeignSan)
        .says("metal-1 (inventory entry metal-1)"),
    ]);
}
