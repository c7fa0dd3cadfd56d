//! Serving CSRs (`src/decision/serving.rs`): asked for by a registered node itself, with
//! exactly the usages the kubelet-serving signer issues and only valid DNS and IP SANs,
//! every one owned by the node (`serving/ownership.rs`; its kubelet's current certificate:
//! `serving/kubelet_certificate.rs`) and inside the policy's fences.

mod kubelet_certificate;
mod ownership;

use csr_approver::decision::Reason;

use crate::builders::*;
use crate::scenes::*;
use crate::{Case, check};

/// A serving CSR of worker-1 in `world`.
fn worker1_asks(name: &str, world: World, request: Request) -> Case {
    Case::new(name, world, serving("worker-1", request))
}

/// worker-1's own IP with these usages, in `registered_world`.
fn own_ip_with_usages(name: &str, usages: &[&str]) -> Case {
    let csr = serving("worker-1", w("worker-1").ip("10.0.0.11")).usages(usages);
    Case::new(name, registered_world(), csr)
}

#[test]
fn a_registered_node_asks_for_itself() {
    let csr = || serving("worker-1", w("worker-1").ip("10.0.0.11"));
    let two_nodes = registered_world().node(node("worker-2", &[("InternalIP", "10.0.0.12")]));
    check([
        Case::new("before the node registered", joining_world(), csr())
            .waits(Reason::NodeNotRegistered)
            .says("client CSR"),
        Case::new(
            "before it registered, though inventory lists the address",
            World::new().policy_yaml("inventory: [{name: worker-1, addresses: [10.0.0.11]}]"),
            csr(),
        )
        .waits(Reason::NodeNotRegistered),
        Case::new(
            "asked by the bootstrapper",
            registered_world(),
            csr().user(BOOTSTRAPPER, &BOOTSTRAPPER_GROUPS),
        )
        .waits(Reason::UnknownRequester),
        Case::new(
            "asked by another node",
            two_nodes,
            Csr::serving("worker-2", &w("worker-1").ip("10.0.0.11")),
        )
        .waits(Reason::RequesterMismatch),
        Case::new(
            "asked without the nodes group",
            registered_world(),
            csr().user("system:node:worker-1", &["system:authenticated"]),
        )
        .waits(Reason::MissingNodesGroup),
    ]);
}

#[test]
fn usages_are_exactly_one_of_the_two_signer_sets() {
    let rsa = serving("worker-1", w("worker-1").key(Key::Rsa2048).ip("10.0.0.11"));
    let mut rows = vec![
        own_ip_with_usages("digital signature + server auth", &SERVING_USAGES)
            .approves(Reason::ServingAddressesVerified)
            .says("10.0.0.11"),
        own_ip_with_usages(
            "digital signature + key encipherment + server auth, any order",
            &["server auth", "key encipherment", "digital signature"],
        )
        .approves(Reason::ServingAddressesVerified)
        .says("10.0.0.11"),
        Case::new(
            "an RSA key with key encipherment",
            registered_world(),
            rsa.usages(&["digital signature", "key encipherment", "server auth"]),
        )
        .approves(Reason::ServingAddressesVerified),
    ];
    // The kubelet-serving signer issues exactly two usage sets; a subset is not one.
    let bad: [&[&str]; 7] = [
        &["server auth"],
        &["key encipherment", "server auth"],
        &["digital signature"],
        &["digital signature", "key encipherment"],
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
        rows.push(
            own_ip_with_usages(&format!("usages {usages:?}"), usages)
                .waits(Reason::BadUsages)
                .says("must be exactly"),
        );
    }
    check(rows);
}

#[test]
fn sans_are_valid_dns_names_and_ips_only() {
    let mut rows = vec![
        worker1_asks(
            "an email SAN",
            registered_world(),
            w("worker-1").ip("10.0.0.11").email("root@worker-1"),
        )
        .waits(Reason::ForbiddenSanType),
        worker1_asks(
            "a URI SAN",
            registered_world(),
            w("worker-1")
                .ip("10.0.0.11")
                .uri("spiffe://cluster/worker-1"),
        )
        .waits(Reason::ForbiddenSanType),
        worker1_asks("no SAN", registered_world(), w("worker-1")).waits(Reason::NoSans),
        worker1_asks(
            "a wildcard the node reports",
            registered_world().node(node("worker-1", &[("Hostname", "*.example.com")])),
            w("worker-1").dns("*.example.com"),
        )
        .waits(Reason::WildcardSan),
    ];
    // The node "owns" each spelling (its own kubelet reports it), so only the name rule
    // can refuse it: names must be valid as written, not once cleaned up.
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
        // What inet_aton/getaddrinfo read as 10.0.0.12: hex, octal, shortened forms.
        "10.0.0.0x0c",
        "10.0.0.0xc.",
        "0xa00000c",
        "0XA00000C",
        "0xa.0.0.014",
        "10.12",
        "167772172",
        "0x",
        "worker-b.0x1",
    ];
    for name in bad {
        let world = World::new().node(node(
            "worker-b",
            &[("InternalIP", "10.0.0.12"), ("InternalDNS", name)],
        ));
        let csr = serving("worker-b", w("worker-b").ip("10.0.0.12").dns(name));
        rows.push(
            Case::new(format!("DNS SAN {name:?}"), world, csr)
                .waits(Reason::MalformedSan)
                .says("not a valid DNS-1123 name"),
        );
    }
    let reported = World::new().node(node(
        "worker-b",
        &[
            ("InternalIP", "10.0.0.12"),
            ("InternalDNS", "worker-b.example.com"),
        ],
    ));
    for good in ["WORKER-B.example.com", "worker-b.example.com."] {
        let csr = serving("worker-b", w("worker-b").ip("10.0.0.12").dns(good));
        rows.push(
            Case::new(format!("DNS SAN {good:?}"), reported.clone(), csr)
                .approves(Reason::ServingAddressesVerified)
                .says("worker-b.example.com"),
        );
    }
    check(rows);
}

#[test]
fn owned_sans_stay_inside_the_fences() {
    let fenced = |yaml: &str| registered_world().policy_yaml(yaml);
    let own_ip = || w("worker-1").ip("10.0.0.11");
    let pattern = "inventory: [{namePattern: '^worker-[0-9]+$', ipRanges: [10.1.101.0/24]}]";
    let inside = "inventory: [{namePattern: '^worker-[0-9]+$', ipRanges: [10.0.0.0/24]}]";
    let evil = World::new()
        .node(node(
            "worker-1",
            &[
                ("InternalIP", "10.0.0.11"),
                ("InternalDNS", "evil.worker-1.example.com"),
            ],
        ))
        .policy_yaml("serving: {dnsNamePatterns: ['^x|worker-1\\.example\\.com$']}");
    check([
        worker1_asks(
            "an IP inside serving.allowedIPRanges",
            fenced("serving: {allowedIPRanges: [10.0.0.0/24, fd00::/8]}"),
            own_ip(),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "an owned IP outside serving.allowedIPRanges",
            fenced("serving: {allowedIPRanges: [192.168.0.0/16]}"),
            own_ip(),
        )
        .waits(Reason::SanOutsideFence),
        worker1_asks(
            "an owned IPv6 outside serving.allowedIPRanges",
            World::new()
                .node(node("worker-1", &[("InternalIP", "2001:db8::11")]))
                .policy_yaml("serving: {allowedIPRanges: [fd00::/8]}"),
            w("worker-1").ip("2001:db8::11"),
        )
        .waits(Reason::SanOutsideFence),
        worker1_asks(
            "DNS names matching serving.dnsNamePatterns",
            fenced(r"serving: {dnsNamePatterns: ['^worker-[0-9]+(\.example\.com)?$']}"),
            w("worker-1").dns("worker-1.example.com").dns("worker-1"),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "an owned DNS name outside serving.dnsNamePatterns",
            fenced(r"serving: {dnsNamePatterns: ['^worker-[0-9]+$']}"),
            w("worker-1").dns("worker-1.example.com"),
        )
        .waits(Reason::SanOutsideFence),
        worker1_asks(
            "dnsNamePatterns ^x|worker-1\\.example\\.com$ fences out evil.worker-1.example.com",
            evil,
            w("worker-1").dns("evil.worker-1.example.com"),
        )
        .waits(Reason::SanOutsideFence)
        .says("matches none of serving.dnsNamePatterns"),
        worker1_asks(
            "an inventory entry's ipRanges fence its nodes",
            fenced(pattern),
            own_ip(),
        )
        .waits(Reason::SanOutsideFence),
        worker1_asks(
            "an inventory entry's ipRanges admit what is inside",
            fenced(inside),
            own_ip(),
        )
        .approves(Reason::ServingAddressesVerified),
        worker1_asks(
            "an inventory entry's ipRanges do not fence other nodes",
            fenced("inventory: [{namePattern: '^db-[0-9]+$', ipRanges: [10.9.0.0/24]}]"),
            own_ip(),
        )
        .approves(Reason::ServingAddressesVerified),
    ]);
}
