//! Serving CSRs (kubernetes.io/kubelet-serving): client before serving, and every SAN
//! owned by the node. For every rule a passing CSR and one that breaks exactly that rule.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;

use builders::*;
use csr_approver::decision::{Reason, Verdict};

fn serving(request: Request) -> Csr {
    Csr::serving("worker-1", &request)
}

fn w1() -> Request {
    Request::node("worker-1")
}

// --- the happy paths ---------------------------------------------------------------------

#[test]
fn sans_from_node_and_machine_addresses_are_approved() {
    let csr = serving(
        w1().dns("worker-1")
            .dns("worker-1.example.com")
            .ip("10.0.0.11"),
    );
    let d = assert_decision!(
        registered_world().decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
    assert!(d.message.contains("worker-1.example.com"), "{}", d.message);
}

#[test]
fn ip_only_serving_csr_is_approved() {
    let csr = serving(w1().ip("10.0.0.11"));
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn rsa_serving_csr_with_key_encipherment_is_approved() {
    let csr = serving(w1().key(Key::Rsa2048).ip("10.0.0.11")).usages(&[
        "digital signature",
        "key encipherment",
        "server auth",
    ]);
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn server_auth_alone_is_refused() {
    // Kubernetes' kubelet-serving signer issues exactly two usage sets; a subset is not one.
    let csr = serving(w1().ip("10.0.0.11")).usages(&["server auth"]);
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadUsages
    );
}

#[test]
fn dns_san_compares_case_insensitively_and_without_trailing_dot() {
    let csr = serving(w1().dns("Worker-1.Example.com."));
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn ipv6_san_in_long_form_matches_short_form_address() {
    let world = World::new().node(node("worker-1", &[("InternalIP", "fd00::b")]));
    let csr = serving(w1().ip("fd00:0000:0000:0000:0000:0000:0000:000b"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn ipv6_san_in_short_form_matches_long_form_address() {
    let world = World::new().node(node("worker-1", &[("InternalIP", "FD00:0:0:0:0:0:0:B")]));
    let csr = serving(w1().ip("fd00::b"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn ipv4_mapped_san_matches_ipv4_address() {
    let csr = serving(w1().ip("::ffff:10.0.0.11"));
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn inventory_addresses_are_owned_by_the_named_node() {
    let world = World::new()
        .node(node("worker-0.example.com", &[]))
        .policy_yaml("inventory: [{name: worker-0.example.com, addresses: [10.1.101.50, worker-0.example.com]}]");
    let csr = Csr::serving(
        "worker-0.example.com",
        &Request::node("worker-0.example.com")
            .ip("10.1.101.50")
            .dns("worker-0.example.com"),
    );
    assert_decision!(
        world.decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

// --- client before serving ---------------------------------------------------------------

#[test]
fn serving_before_the_node_exists_waits() {
    let csr = serving(w1().ip("10.0.0.11"));
    let d = assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::NodeNotRegistered
    );
    assert!(d.message.contains("client CSR"), "{}", d.message);
}

#[test]
fn serving_waits_even_when_inventory_lists_the_address() {
    let world = World::new().policy_yaml("inventory: [{name: worker-1, addresses: [10.0.0.11]}]");
    let csr = serving(w1().ip("10.0.0.11"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Wait { .. },
        Reason::NodeNotRegistered
    );
}

// --- who asks ----------------------------------------------------------------------------

#[test]
fn serving_from_the_bootstrapper_is_refused() {
    let csr = serving(w1().ip("10.0.0.11")).user(BOOTSTRAPPER, &BOOTSTRAPPER_GROUPS);
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::UnknownRequester
    );
}

#[test]
fn serving_for_another_node_is_refused() {
    let csr = Csr::serving("worker-2", &w1().ip("10.0.0.11"));
    let world = registered_world().node(node("worker-2", &[("InternalIP", "10.0.0.12")]));
    assert_decision!(
        world.decide(&csr),
        Verdict::Wait { .. },
        Reason::RequesterMismatch
    );
}

#[test]
fn serving_without_nodes_group_is_refused() {
    let csr = serving(w1().ip("10.0.0.11")).user("system:node:worker-1", &["system:authenticated"]);
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::MissingNodesGroup
    );
}

#[test]
fn serving_with_system_masters_is_refused() {
    let csr = serving(w1().org(Some("system:masters")).ip("10.0.0.11"));
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadOrganization
    );
}

// --- usages and SAN kinds ----------------------------------------------------------------

#[test]
fn serving_with_client_auth_is_refused() {
    let csr =
        serving(w1().ip("10.0.0.11")).usages(&["digital signature", "server auth", "client auth"]);
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadUsages
    );
}

#[test]
fn serving_without_server_auth_is_refused() {
    let csr = serving(w1().ip("10.0.0.11")).usages(&["digital signature", "key encipherment"]);
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadUsages
    );
}

#[test]
fn email_san_is_refused() {
    let csr = serving(w1().ip("10.0.0.11").email("root@worker-1"));
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::ForbiddenSanType
    );
}

#[test]
fn uri_san_is_refused() {
    let csr = serving(w1().ip("10.0.0.11").uri("spiffe://cluster/worker-1"));
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::ForbiddenSanType
    );
}

#[test]
fn serving_without_sans_is_refused() {
    let csr = serving(w1());
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::NoSans
    );
}

#[test]
fn wildcard_san_is_refused() {
    let world = registered_world().node(node("worker-1", &[("Hostname", "*.example.com")]));
    let csr = serving(w1().dns("*.example.com"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Wait { .. },
        Reason::WildcardSan
    );
}

#[test]
fn expiration_over_the_serving_cap_is_refused() {
    let world = registered_world().policy_yaml("serving: {maxExpirationSeconds: 86400}");
    let csr = serving(w1().ip("10.0.0.11")).expiration(86401);
    assert_decision!(
        world.decide(&csr),
        Verdict::Wait { .. },
        Reason::ExpirationTooLong
    );
    let ok = serving(w1().ip("10.0.0.11")).expiration(86400);
    assert_decision!(
        world.decide(&ok),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

// --- SAN ownership -----------------------------------------------------------------------

#[test]
fn foreign_ip_san_is_refused_and_named() {
    let world = World::new().node(node("worker-b", &[("InternalIP", "10.0.0.12")]));
    let csr = Csr::serving("worker-b", &Request::node("worker-b").ip("10.0.0.13"));
    let d = assert_decision!(world.decide(&csr), Verdict::Wait { .. }, Reason::ForeignSan);
    let (why, for_an_admin) = d.message.split_once(". ").unwrap();
    assert_eq!(
        why,
        "IP SAN 10.0.0.13 is not an address of node worker-b (has 10.0.0.12)"
    );
    assert!(
        for_an_admin.contains("kubectl certificate approve csr-serving"),
        "{for_an_admin}"
    );
}

#[test]
fn extra_ip_san_beside_owned_ones_is_refused() {
    let csr = serving(w1().ip("10.0.0.11").ip("10.0.0.99"));
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::ForeignSan
    );
}

#[test]
fn another_nodes_ip_is_foreign() {
    let world = registered_world().node(node("worker-2", &[("InternalIP", "10.0.0.12")]));
    let csr = serving(w1().ip("10.0.0.12"));
    assert_decision!(world.decide(&csr), Verdict::Wait { .. }, Reason::ForeignSan);
}

#[test]
fn foreign_dns_san_is_refused() {
    let csr = serving(w1().ip("10.0.0.11").dns("worker-9.example.com"));
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::ForeignSan
    );
}

#[test]
fn dns_san_with_owned_prefix_is_foreign() {
    let csr = serving(w1().dns("worker-1.example.com.evil.io"));
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::ForeignSan
    );
}

#[test]
fn machine_only_sources_ignore_node_addresses() {
    let world = World::new()
        .node(node("worker-1", &[("InternalIP", "10.0.0.50")]))
        .policy_yaml("serving: {addressSources: [Machine]}");
    let csr = serving(w1().ip("10.0.0.50"));
    assert_decision!(world.decide(&csr), Verdict::Wait { .. }, Reason::ForeignSan);
}

#[test]
fn node_only_sources_ignore_machine_addresses() {
    let world = registered_world().policy_yaml("serving: {addressSources: [Node]}");
    // worker-1.example.com is only on the Machine.
    let csr = serving(w1().dns("worker-1.example.com"));
    assert_decision!(world.decide(&csr), Verdict::Wait { .. }, Reason::ForeignSan);
    let on_node = serving(w1().dns("worker-1"));
    assert_decision!(
        world.decide(&on_node),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn unlinked_machine_makes_machine_only_sources_wait() {
    let world = joining_world()
        .node(node("worker-1", &[]))
        .policy_yaml("serving: {addressSources: [Machine]}");
    let csr = serving(w1().ip("10.0.0.11"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Wait { .. },
        Reason::MachineNotLinked
    );
}

#[test]
fn machine_linked_to_another_node_does_not_lend_its_addresses() {
    let mut m = machine("worker-2", ago(60), &[("InternalIP", "10.0.0.12")]);
    m.node_ref = Some("worker-2".to_string());
    let world = registered_world().machine(m);
    let csr = serving(w1().ip("10.0.0.12"));
    assert_decision!(world.decide(&csr), Verdict::Wait { .. }, Reason::ForeignSan);
}

#[test]
fn inventory_ranges_never_identify_a_node() {
    let world = World::new()
        .node(node("worker-1", &[]))
        .policy_yaml("inventory: [{namePattern: '^worker-[0-9]+$', ipRanges: [10.0.0.0/24]}]");
    let csr = serving(w1().ip("10.0.0.11"));
    assert_decision!(world.decide(&csr), Verdict::Wait { .. }, Reason::ForeignSan);
}

#[test]
fn allowed_ranges_never_identify_a_node() {
    let world = World::new()
        .node(node("worker-1", &[]))
        .policy_yaml("serving: {allowedIPRanges: [10.0.0.0/8]}");
    let csr = serving(w1().ip("10.0.0.11"));
    assert_decision!(world.decide(&csr), Verdict::Wait { .. }, Reason::ForeignSan);
}

#[test]
fn inventory_addresses_of_another_host_are_not_owned() {
    let world = World::new()
        .node(node("worker-1", &[]))
        .policy_yaml("inventory: [{name: worker-2, addresses: [10.0.0.12]}]");
    let csr = serving(w1().ip("10.0.0.12"));
    assert_decision!(world.decide(&csr), Verdict::Wait { .. }, Reason::ForeignSan);
}

// --- fences ------------------------------------------------------------------------------

#[test]
fn ip_inside_allowed_ranges_is_approved() {
    let world =
        registered_world().policy_yaml("serving: {allowedIPRanges: [10.0.0.0/24, fd00::/8]}");
    let csr = serving(w1().ip("10.0.0.11"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn owned_ip_outside_allowed_ranges_is_refused() {
    let world = registered_world().policy_yaml("serving: {allowedIPRanges: [192.168.0.0/16]}");
    let csr = serving(w1().ip("10.0.0.11"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Wait { .. },
        Reason::SanOutsideFence
    );
}

#[test]
fn owned_ipv6_outside_allowed_ranges_is_refused() {
    let world = World::new()
        .node(node("worker-1", &[("InternalIP", "2001:db8::11")]))
        .policy_yaml("serving: {allowedIPRanges: [fd00::/8]}");
    let csr = serving(w1().ip("2001:db8::11"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Wait { .. },
        Reason::SanOutsideFence
    );
}

#[test]
fn dns_matching_a_pattern_is_approved() {
    let world = registered_world()
        .policy_yaml(r"serving: {dnsNamePatterns: ['^worker-[0-9]+(\.example\.com)?$']}");
    let csr = serving(w1().dns("worker-1.example.com").dns("worker-1"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn owned_dns_outside_patterns_is_refused() {
    let world = registered_world().policy_yaml(r"serving: {dnsNamePatterns: ['^worker-[0-9]+$']}");
    let csr = serving(w1().dns("worker-1.example.com"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Wait { .. },
        Reason::SanOutsideFence
    );
}

#[test]
fn inventory_ip_ranges_fence_matching_nodes() {
    let world = registered_world()
        .policy_yaml("inventory: [{namePattern: '^worker-[0-9]+$', ipRanges: [10.1.101.0/24]}]");
    let csr = serving(w1().ip("10.0.0.11"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Wait { .. },
        Reason::SanOutsideFence
    );
}

#[test]
fn inventory_ip_ranges_admit_addresses_inside() {
    let world = registered_world()
        .policy_yaml("inventory: [{namePattern: '^worker-[0-9]+$', ipRanges: [10.0.0.0/24]}]");
    let csr = serving(w1().ip("10.0.0.11"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn inventory_ip_ranges_do_not_fence_other_nodes() {
    let world = registered_world()
        .policy_yaml("inventory: [{namePattern: '^db-[0-9]+$', ipRanges: [10.9.0.0/24]}]");
    let csr = serving(w1().ip("10.0.0.11"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn serving_disabled_is_ignored() {
    let world = registered_world().policy_yaml("serving: {enabled: false}");
    let csr = serving(w1().ip("10.0.0.11"));
    assert_decision!(world.decide(&csr), Verdict::Ignore, Reason::SignerDisabled);
}

#[test]
fn deny_policy_denies_forged_sans_but_leaves_unproven_ones_to_an_admin() {
    let world = registered_world().policy_yaml("deny: true");
    let reserved = serving(w1().ip("10.0.0.11").dns("kubernetes.default.svc"));
    assert_decision!(world.decide(&reserved), Verdict::Deny, Reason::ReservedSan);
    // An address no source lists may be a secondary network's: an admin may approve it.
    let csr = serving(w1().ip("10.0.0.99"));
    let d = assert_decision!(world.decide(&csr), Verdict::Wait { .. }, Reason::ForeignSan);
    assert!(
        d.message.contains("kubectl certificate approve"),
        "{}",
        d.message
    );
    let fenced =
        registered_world().policy_yaml("deny: true\nserving: {allowedIPRanges: [10.1.0.0/16]}");
    assert_decision!(
        fenced.decide(&serving(w1().ip("10.0.0.11"))),
        Verdict::Wait { .. },
        Reason::SanOutsideFence
    );
    let early = serving(w1().ip("10.0.0.11"));
    assert_decision!(
        joining_world().policy_yaml("deny: true").decide(&early),
        Verdict::Wait { .. },
        Reason::NodeNotRegistered
    );
}
