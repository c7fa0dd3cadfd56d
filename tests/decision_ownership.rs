//! Serving SANs are evidence only when one owner claims them, and some names and addresses
//! are never a node's. A case is a row: the world, the CSR, the verdict and reason expected,
//! and a part of the message that must explain it.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;

use builders::*;
use csr_approver::decision::{Decision, Reason, Verdict};
use csr_approver::inventory::Inventory;

fn w(node: &str) -> Request {
    Request::node(node)
}

fn serving(node: &str, request: Request) -> Csr {
    Csr::serving(node, &request)
}

/// worker-1 as `registered_world` has it (Machine linked, Node with 10.0.0.11), plus a
/// registered worker-2 whose kubelet reports `worker2_addresses`.
fn two_nodes(worker2_addresses: &[(&str, &str)]) -> World {
    let mut m2 = machine(
        "worker-2",
        ago(600),
        &[("InternalDNS", "worker-2"), ("InternalIP", "10.0.0.12")],
    );
    m2.node_ref = Some("worker-2".to_string());
    registered_world()
        .machine(m2)
        .node(node("worker-2", worker2_addresses))
}

#[derive(Debug, Clone, Copy)]
enum Expect {
    Approve,
    Wait,
}

struct Case {
    name: &'static str,
    world: World,
    csr: Csr,
    expect: Expect,
    reason: Reason,
    /// A part of the message that must explain the decision.
    says: &'static str,
}

fn check(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let d: Decision = case.world.decide(&case.csr);
        let verdict_ok = match case.expect {
            Expect::Approve => d.verdict == Verdict::Approve,
            Expect::Wait => matches!(d.verdict, Verdict::Wait { .. }),
        };
        if !verdict_ok || d.reason != case.reason || !d.message.contains(case.says) {
            failures.push(format!(
                "{}: expected {:?}/{:?} saying {:?}, got {:?}/{:?}: {}",
                case.name, case.expect, case.reason, case.says, d.verdict, d.reason, d.message
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

// --- 1. an address two owners claim vouches for neither ---------------------------------

#[test]
fn addresses_claimed_by_two_owners_are_never_approved() {
    let stolen_ip = [("InternalIP", "10.0.0.12"), ("InternalIP", "10.0.0.11")];
    let mut duplicate_machine = machine(
        "worker-3",
        ago(900),
        &[("InternalDNS", "worker-3"), ("InternalIP", "10.0.0.11")],
    );
    duplicate_machine.node_ref = Some("worker-3".to_string());
    let mut hostless_machine = machine("spare", ago(900), &[("InternalIP", "10.0.0.11")]);
    hostless_machine.node_ref = None;
    check(vec![
        Case {
            name: "a kubelet claims its neighbour's IP and asks for it",
            world: two_nodes(&stolen_ip),
            csr: serving("worker-2", w("worker-2").ip("10.0.0.11")),
            expect: Expect::Wait,
            reason: Reason::AddressConflict,
            says: "claimed by node worker-2 and also by worker-1",
        },
        Case {
            name: "the victim's own request waits too: evidence conflicts",
            world: two_nodes(&stolen_ip),
            csr: serving("worker-1", w("worker-1").ip("10.0.0.11")),
            expect: Expect::Wait,
            reason: Reason::AddressConflict,
            says: "also by worker-2 (Node worker-2 status)",
        },
        Case {
            name: "inside an allowedIPRanges fence the claim still conflicts",
            world: two_nodes(&stolen_ip).policy_yaml("serving: {allowedIPRanges: [10.0.0.0/24]}"),
            csr: serving("worker-2", w("worker-2").ip("10.0.0.11")),
            expect: Expect::Wait,
            reason: Reason::AddressConflict,
            says: "worker-1",
        },
        Case {
            name: "bare metal, Node status only: a kubelet claims another's IP",
            world: World::new()
                .policy_yaml("machines: {apiGroups: []}\nserving: {addressSources: [Node]}")
                .node(node("metal-1", &[("InternalIP", "10.1.0.21")]))
                .node(node(
                    "metal-2",
                    &[("InternalIP", "10.1.0.22"), ("InternalIP", "10.1.0.21")],
                )),
            csr: serving("metal-2", w("metal-2").ip("10.1.0.21")),
            expect: Expect::Wait,
            reason: Reason::AddressConflict,
            says: "metal-1",
        },
        Case {
            name: "a kubelet claims another node's name as its Hostname",
            world: two_nodes(&[("InternalIP", "10.0.0.12"), ("Hostname", "worker-1")]),
            csr: serving("worker-2", w("worker-2").dns("worker-1").ip("10.0.0.12")),
            expect: Expect::Wait,
            reason: Reason::AddressConflict,
            says: "worker-1 (Node worker-1's name)",
        },
        Case {
            name: "compared canonically: an IPv4-mapped IPv6 claim is the same IP",
            world: two_nodes(&[
                ("InternalIP", "10.0.0.12"),
                ("InternalIP", "::ffff:10.0.0.11"),
            ]),
            csr: serving("worker-2", w("worker-2").ip("10.0.0.11")),
            expect: Expect::Wait,
            reason: Reason::AddressConflict,
            says: "worker-1",
        },
        Case {
            name: "compared canonically: a DNS claim in upper case with a trailing dot",
            world: two_nodes(&[
                ("InternalIP", "10.0.0.12"),
                ("InternalDNS", "WORKER-1.Example.com."),
            ]),
            csr: serving(
                "worker-2",
                w("worker-2").dns("worker-1.example.com").ip("10.0.0.12"),
            ),
            expect: Expect::Wait,
            reason: Reason::AddressConflict,
            says: "worker-1",
        },
        Case {
            name: "a stale Machine of another node still lists the IP",
            world: registered_world().machine(duplicate_machine.clone()),
            csr: serving("worker-1", w("worker-1").ip("10.0.0.11")),
            expect: Expect::Wait,
            reason: Reason::AddressConflict,
            says: "worker-3 (Machine openshift-machine-api/worker-3",
        },
        Case {
            name: "a Machine naming no host owns its addresses itself",
            world: registered_world().machine(hostless_machine),
            csr: serving("worker-1", w("worker-1").ip("10.0.0.11")),
            expect: Expect::Wait,
            reason: Reason::AddressConflict,
            says: "Machine openshift-machine-api/spare",
        },
        Case {
            name: "an inventory entry names the IP for another host",
            world: registered_world()
                .policy_yaml("inventory: [{name: worker-5, addresses: [10.0.0.11]}]"),
            csr: serving("worker-1", w("worker-1").ip("10.0.0.11")),
            expect: Expect::Wait,
            reason: Reason::AddressConflict,
            says: "worker-5 (inventory entry worker-5)",
        },
    ]);
}

#[test]
fn one_owner_through_several_sources_is_no_conflict() {
    let mut deleting = machine(
        "old-worker-3",
        ago(9000),
        &[("InternalDNS", "worker-3"), ("InternalIP", "10.0.0.11")],
    );
    deleting.node_ref = Some("worker-3".to_string());
    deleting.deleting = true;
    let mut untrusted = machine(
        "tenant-machine",
        ago(60),
        &[("InternalDNS", "worker-9"), ("InternalIP", "10.0.0.11")],
    );
    untrusted.namespace = "tenant-a".to_string();
    check(vec![
        Case {
            name: "Node, linked Machine and inventory entry of the same node agree",
            world: registered_world().policy_yaml(
                "inventory: [{name: worker-1, addresses: [10.0.0.11, worker-1.example.com]}]",
            ),
            csr: serving(
                "worker-1",
                w("worker-1")
                    .ip("10.0.0.11")
                    .dns("worker-1")
                    .dns("worker-1.example.com"),
            ),
            expect: Expect::Approve,
            reason: Reason::ServingAddressesVerified,
            says: "no other owner",
        },
        Case {
            name: "a Machine being deleted claims nothing",
            world: registered_world().machine(deleting),
            csr: serving("worker-1", w("worker-1").ip("10.0.0.11")),
            expect: Expect::Approve,
            reason: Reason::ServingAddressesVerified,
            says: "10.0.0.11",
        },
        Case {
            name: "a Machine in a namespace the policy does not trust claims nothing",
            world: registered_world().machine(untrusted),
            csr: serving("worker-1", w("worker-1").ip("10.0.0.11")),
            expect: Expect::Approve,
            reason: Reason::ServingAddressesVerified,
            says: "10.0.0.11",
        },
        Case {
            name: "with addressSources [Machine], kubelet-reported status claims nothing",
            world: two_nodes(&[("InternalIP", "10.0.0.12"), ("InternalIP", "10.0.0.11")])
                .policy_yaml("serving: {addressSources: [Machine]}"),
            csr: serving("worker-1", w("worker-1").ip("10.0.0.11")),
            expect: Expect::Approve,
            reason: Reason::ServingAddressesVerified,
            says: "Machine openshift-machine-api/worker-1",
        },
        Case {
            name: "an API server endpoint IP is a control-plane node's own address (SNO)",
            world: World::new().node(node(
                "master-0",
                &[("InternalIP", "192.168.111.20"), ("Hostname", "master-0")],
            )),
            csr: serving(
                "master-0",
                w("master-0").ip("192.168.111.20").dns("master-0"),
            ),
            expect: Expect::Approve,
            reason: Reason::ServingAddressesVerified,
            says: "192.168.111.20",
        },
    ]);
}

// --- 2. reserved names and addresses ------------------------------------------------------

/// worker-1 whose own kubelet reports `claimed` as one of its addresses: the reservation
/// must hold even for an address the node "owns".
fn worker1_reporting(claimed: &str) -> World {
    World::new().node(node(
        "worker-1",
        &[
            ("InternalIP", "10.0.0.11"),
            ("InternalDNS", claimed),
            ("InternalIP", claimed),
        ],
    ))
}

#[test]
fn reserved_names_are_never_a_nodes() {
    let names = [
        ("localhost", "localhost"),
        ("api.localhost", "localhost"),
        ("kubernetes", "the API server's in-cluster name"),
        ("kubernetes.default", "the API server's in-cluster name"),
        ("kubernetes.default.svc", "the API server's in-cluster name"),
        ("kubernetes.default.svc.cluster.local", "under .svc"),
        ("my-db.prod.svc", "under .svc"),
        (
            "anything.cluster.local",
            "under the cluster domain cluster.local",
        ),
        ("cluster.local", "under the cluster domain cluster.local"),
        (
            "Kubernetes.Default.SVC.",
            "the API server's in-cluster name",
        ),
    ];
    let cases = names
        .iter()
        .map(|(name, why)| Case {
            name,
            world: worker1_reporting(name),
            csr: serving("worker-1", w("worker-1").ip("10.0.0.11").dns(name)),
            expect: Expect::Wait,
            reason: Reason::ReservedSan,
            says: why,
        })
        .collect();
    check(cases);
}

#[test]
fn the_cluster_domain_is_a_policy_field() {
    check(vec![
        Case {
            name: "a custom cluster domain is reserved",
            world: worker1_reporting("worker-1.corp.internal")
                .policy_yaml("serving: {clusterDomain: corp.internal}"),
            csr: serving("worker-1", w("worker-1").dns("worker-1.corp.internal")),
            expect: Expect::Wait,
            reason: Reason::ReservedSan,
            says: "under the cluster domain corp.internal",
        },
        Case {
            name: "outside it, the same shape of name is a node's",
            world: worker1_reporting("worker-1.corp.internal"),
            csr: serving("worker-1", w("worker-1").dns("worker-1.corp.internal")),
            expect: Expect::Approve,
            reason: Reason::ServingAddressesVerified,
            says: "worker-1.corp.internal",
        },
    ]);
}

#[test]
fn reserved_ips_are_never_a_nodes() {
    let ips = [
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
    ];
    let cases = ips
        .iter()
        .map(|(ip, why)| Case {
            name: ip,
            world: worker1_reporting(ip),
            csr: serving("worker-1", w("worker-1").ip(ip)),
            expect: Expect::Wait,
            reason: Reason::ReservedSan,
            says: why,
        })
        .collect();
    check(cases);
}

#[test]
fn loopback_is_allowed_only_by_the_development_switch() {
    let world = worker1_reporting("127.0.0.2").policy_yaml("serving: {allowLoopback: true}");
    check(vec![
        Case {
            name: "allowLoopback lets a loopback node have its address",
            world: world.clone(),
            csr: serving("worker-1", w("worker-1").ip("127.0.0.2")),
            expect: Expect::Approve,
            reason: Reason::ServingAddressesVerified,
            says: "127.0.0.2",
        },
        Case {
            name: "allowLoopback does not turn off link-local",
            world: worker1_reporting("169.254.0.1").policy_yaml("serving: {allowLoopback: true}"),
            csr: serving("worker-1", w("worker-1").ip("169.254.0.1")),
            expect: Expect::Wait,
            reason: Reason::ReservedSan,
            says: "link-local",
        },
        Case {
            name: "allowLoopback does not turn off ownership",
            world: world.node(node("worker-2", &[("InternalIP", "127.0.0.2")])),
            csr: serving("worker-1", w("worker-1").ip("127.0.0.2")),
            expect: Expect::Wait,
            reason: Reason::AddressConflict,
            says: "worker-2",
        },
    ]);
}

#[test]
fn the_kubernetes_service_cluster_ip_is_never_a_nodes() {
    let world = worker1_reporting("172.30.0.1");
    let csr = serving("worker-1", w("worker-1").ip("172.30.0.1"));
    let mut inventory = Inventory::new(world.nodes.clone(), world.machines.clone(), []);
    assert_decision!(
        csr_approver::decision::decide(&csr.0, &inventory, &world.policy, now()),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
    inventory.set_kubernetes_service_ips(["172.30.0.1".parse().unwrap()]);
    let d = assert_decision!(
        csr_approver::decision::decide(&csr.0, &inventory, &world.policy, now()),
        Verdict::Wait { .. },
        Reason::ReservedSan
    );
    assert!(d.message.contains("kubernetes Service"), "{}", d.message);
}

#[test]
fn reserved_names_are_not_node_names_either() {
    let world = World::new().policy_yaml("inventory: [{namePattern: '^.*$'}]");
    for name in [
        "localhost",
        "kubernetes",
        "kubernetes.default.svc",
        "x.svc.cluster.local",
    ] {
        let csr = Csr::client(&Request::node(name));
        let d = assert_decision!(
            world.decide(&csr),
            Verdict::Wait { .. },
            Reason::BadCommonName
        );
        assert!(
            d.message.contains("never a node's"),
            "{name}: {}",
            d.message
        );
    }
}

// --- 3. exact request shapes ---------------------------------------------------------------

#[test]
fn serving_usages_are_exactly_one_of_the_two_signer_sets() {
    let world = registered_world();
    let ok = |u: &[&str]| serving("worker-1", w("worker-1").ip("10.0.0.11")).usages(u);
    let mut cases = vec![
        Case {
            name: "digital signature + server auth",
            world: world.clone(),
            csr: ok(&["digital signature", "server auth"]),
            expect: Expect::Approve,
            reason: Reason::ServingAddressesVerified,
            says: "10.0.0.11",
        },
        Case {
            name: "digital signature + key encipherment + server auth, any order",
            world: world.clone(),
            csr: ok(&["server auth", "key encipherment", "digital signature"]),
            expect: Expect::Approve,
            reason: Reason::ServingAddressesVerified,
            says: "10.0.0.11",
        },
    ];
    let bad: [&[&str]; 6] = [
        &["server auth"],
        &["key encipherment", "server auth"],
        &["digital signature"],
        &["digital signature", "server auth", "client auth"],
        &[
            "digital signature",
            "key encipherment",
            "server auth",
            "code signing",
        ],
        &[],
    ];
    for usages in bad {
        cases.push(Case {
            name: "a set the signer does not issue",
            world: world.clone(),
            csr: ok(usages),
            expect: Expect::Wait,
            reason: Reason::BadUsages,
            says: "must be exactly",
        });
    }
    check(cases);
}

#[test]
fn dns_sans_must_be_valid_names_not_cleaned_up_ones() {
    // The node "owns" each spelling (its own kubelet reports it), so only the name rule
    // can refuse it.
    let bad = [
        "worker-b..",
        " worker-b",
        "worker-b ",
        "worker-b.example.com..",
        "worker_b",
        "-worker-b",
        "worker-b-",
        "worker..b",
        ".worker-b",
        // IP literals written as names: no top-level domain is numeric.
        "10.0.0.12",
        "10.0.0.12.",
        "010.0.0.12",
    ];
    let mut cases: Vec<Case> = bad
        .iter()
        .map(|name| Case {
            name,
            world: World::new().node(node(
                "worker-b",
                &[("InternalIP", "10.0.0.12"), ("InternalDNS", name)],
            )),
            csr: serving("worker-b", w("worker-b").ip("10.0.0.12").dns(name)),
            expect: Expect::Wait,
            reason: Reason::MalformedSan,
            says: "not a valid DNS-1123 name",
        })
        .collect();
    for good in ["WORKER-B.example.com", "worker-b.example.com."] {
        cases.push(Case {
            name: good,
            world: World::new().node(node(
                "worker-b",
                &[
                    ("InternalIP", "10.0.0.12"),
                    ("InternalDNS", "worker-b.example.com"),
                ],
            )),
            csr: serving("worker-b", w("worker-b").ip("10.0.0.12").dns(good)),
            expect: Expect::Approve,
            reason: Reason::ServingAddressesVerified,
            says: "worker-b.example.com",
        });
    }
    check(cases);
}

#[test]
fn node_addresses_are_read_strictly_too() {
    // A status address that is only valid once trimmed is evidence of nothing.
    let world = World::new().node(node(
        "worker-b",
        &[
            ("InternalIP", " 10.0.0.12"),
            ("InternalDNS", "worker-b.example.com"),
        ],
    ));
    let csr = serving("worker-b", w("worker-b").ip("10.0.0.12"));
    assert_decision!(world.decide(&csr), Verdict::Wait { .. }, Reason::ForeignSan);
}

// --- 4. full-match patterns -----------------------------------------------------------------

#[test]
fn patterns_match_whole_names_whatever_their_alternations() {
    check(vec![
        Case {
            name: "namePattern ^worker-1|x$ does not mean 'starts with worker-1'",
            world: World::new().policy_yaml("inventory: [{namePattern: '^worker-1|x$'}]"),
            csr: Csr::client(&Request::node("worker-1-evil")),
            expect: Expect::Wait,
            reason: Reason::UnknownMachine,
            says: "no inventory entry matches",
        },
        Case {
            name: "namePattern ^x|worker-1$ does not mean 'ends with worker-1'",
            world: World::new().policy_yaml("inventory: [{namePattern: '^x|worker-1$'}]"),
            csr: Csr::client(&Request::node("evil-worker-1")),
            expect: Expect::Wait,
            reason: Reason::UnknownMachine,
            says: "no inventory entry matches",
        },
        Case {
            name: "each alternative still matches exactly",
            world: World::new().policy_yaml("inventory: [{namePattern: '^x|worker-1$'}]"),
            csr: Csr::client(&Request::node("worker-1")),
            expect: Expect::Approve,
            reason: Reason::NewNodeInventory,
            says: "inventory pattern ^x|worker-1$",
        },
        Case {
            name: "dnsNamePatterns ^x|worker-1\\.example\\.com$ fences out evil.worker-1.example.com",
            world: World::new()
                .node(node(
                    "worker-1",
                    &[
                        ("InternalIP", "10.0.0.11"),
                        ("InternalDNS", "evil.worker-1.example.com"),
                    ],
                ))
                .policy_yaml("serving: {dnsNamePatterns: ['^x|worker-1\\.example\\.com$']}"),
            csr: serving("worker-1", w("worker-1").dns("evil.worker-1.example.com")),
            expect: Expect::Wait,
            reason: Reason::SanOutsideFence,
            says: "matches none of serving.dnsNamePatterns",
        },
    ]);
}
