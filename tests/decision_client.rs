//! Client CSRs (kubernetes.io/kube-apiserver-client-kubelet): for every rule a CSR that
//! passes and one that breaks exactly that rule. Each case asserts verdict and reason.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;

use builders::*;
use csr_approver::decision::{CLIENT_SIGNER, Reason, ReasonClass, SERVING_SIGNER, Verdict};
use csr_approver::inventory::CsrState;

fn worker1() -> Csr {
    Csr::client(&Request::node("worker-1"))
}

// --- the happy paths ---------------------------------------------------------------------

#[test]
fn new_node_with_fresh_machine_is_approved() {
    let d = assert_decision!(
        joining_world().decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
    assert!(
        d.message.contains("openshift-machine-api/worker-1"),
        "{}",
        d.message
    );
    assert!(d.message.contains("InternalDNS=worker-1"), "{}", d.message);
    assert_eq!(d.node.as_deref(), Some("worker-1"));
}

#[test]
fn new_node_matched_by_hostname_address_is_approved() {
    let world = World::new().machine(machine("m", ago(60), &[("Hostname", "worker-1")]));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn cluster_api_machine_is_approved() {
    let mut m = machine("worker-1", ago(60), &[("InternalDNS", "worker-1")]);
    m.api_group = "cluster.x-k8s.io".to_string();
    m.namespace = "capi".to_string();
    let world = World::new().machine(m.clone()).policy_yaml(
        "machines: {apiGroups: [cluster.x-k8s.io], namespaces: {cluster.x-k8s.io: [capi]}}",
    );
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
    // The same Machine in a namespace the policy does not name vouches for nothing.
    m.namespace = "tenant-a".to_string();
    let world = World::new().machine(m).policy_yaml(
        "machines: {apiGroups: [cluster.x-k8s.io], namespaces: {cluster.x-k8s.io: [capi]}}",
    );
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

#[test]
fn cluster_api_machines_are_not_trusted_by_default() {
    let mut m = machine("worker-1", ago(60), &[("InternalDNS", "worker-1")]);
    m.api_group = "cluster.x-k8s.io".to_string();
    m.namespace = "capi".to_string();
    assert_decision!(
        World::new().machine(m).decide(&worker1()),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

#[test]
fn openshift_machines_outside_openshift_machine_api_are_not_trusted_by_default() {
    let mut m = machine("worker-1", ago(60), &[("InternalDNS", "worker-1")]);
    m.namespace = "default".to_string();
    assert_decision!(
        World::new().machine(m).decide(&worker1()),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

#[test]
fn rsa_2048_client_is_approved_with_key_encipherment() {
    let csr = Csr::client(&Request::node("worker-1").key(Key::Rsa2048)).usages(&[
        "digital signature",
        "key encipherment",
        "client auth",
    ]);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn ed25519_client_is_approved() {
    let csr = Csr::client(&Request::node("worker-1").key(Key::Ed25519));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn p384_client_is_approved() {
    let csr = Csr::client(&Request::node("worker-1").key(Key::P384));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn openssl_rsa_2048_fixture_is_approved() {
    let csr = worker1()
        .raw_request(fixture_bytes("requests/rsa2048-client.csr"))
        .usages(&["digital signature", "key encipherment", "client auth"]);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn inventory_entry_by_name_approves_without_machines() {
    let world = World::new().policy_yaml("inventory: [{name: worker-1}]");
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeInventory
    );
}

#[test]
fn inventory_entry_by_pattern_approves() {
    let world = World::new().policy_yaml(r"inventory: [{namePattern: '^worker-[0-9]+$'}]");
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeInventory
    );
}

#[test]
fn inventory_pattern_is_anchored_so_longer_names_do_not_match() {
    let world = World::new().policy_yaml(r"inventory: [{namePattern: '^worker-[0-9]+$'}]");
    let csr = Csr::client(&Request::node("worker-1.evil.example"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

#[test]
fn inventory_name_compares_case_insensitively_and_ignores_trailing_dot() {
    let world = World::new().policy_yaml("inventory: [{name: Worker-1.Example.COM.}]");
    let csr = Csr::client(&Request::node("worker-1.example.com"));
    assert_decision!(
        world.decide(&csr),
        Verdict::Approve,
        Reason::NewNodeInventory
    );
}

#[test]
fn machine_address_in_uppercase_with_trailing_dot_matches() {
    let world = World::new().machine(machine(
        "m",
        ago(60),
        &[("InternalDNS", "WORKER-1.example.com.")],
    ));
    let csr = Csr::client(&Request::node("worker-1.example.com"));
    assert_decision!(world.decide(&csr), Verdict::Approve, Reason::NewNodeMachine);
}

#[test]
fn kubeadm_bootstrap_token_group_is_accepted_when_configured() {
    let world =
        joining_world().policy_yaml("client: {bootstrappers: [{group: system:bootstrappers}]}");
    let csr = worker1().user(
        "system:bootstrap:abcdef",
        &["system:bootstrappers", "system:authenticated"],
    );
    assert_decision!(world.decide(&csr), Verdict::Approve, Reason::NewNodeMachine);
}

#[test]
fn renewal_from_the_node_itself_is_approved() {
    let world = registered_world();
    let csr = Csr::renewal("worker-1", &Request::node("worker-1"));
    assert_decision!(world.decide(&csr), Verdict::Approve, Reason::ClientRenewal);
}

// --- not ours ----------------------------------------------------------------------------

#[test]
fn other_signer_is_ignored() {
    let csr = worker1().signer("example.com/custom");
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Ignore,
        Reason::OtherSigner
    );
}

#[test]
fn legacy_unknown_signer_is_ignored() {
    let csr = worker1().signer("kubernetes.io/legacy-unknown");
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Ignore,
        Reason::OtherSigner
    );
}

#[test]
fn approved_csr_is_ignored() {
    let csr = worker1().state(CsrState::Approved);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Ignore,
        Reason::AlreadyDecided
    );
}

#[test]
fn denied_csr_is_ignored() {
    let csr = worker1().state(CsrState::Denied);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Ignore,
        Reason::AlreadyDecided
    );
}

#[test]
fn failed_csr_is_ignored() {
    let csr = worker1().state(CsrState::Failed);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Ignore,
        Reason::AlreadyDecided
    );
}

#[test]
fn issued_csr_is_ignored() {
    let csr = worker1().state(CsrState::Issued);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Ignore,
        Reason::AlreadyDecided
    );
}

#[test]
fn client_disabled_ignores_client_csrs_only() {
    let world = registered_world().policy_yaml("client: {enabled: false}");
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Ignore,
        Reason::SignerDisabled
    );
    let serving = Csr::serving("worker-1", &Request::node("worker-1").ip("10.0.0.11"));
    assert_decision!(
        world.decide(&serving),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

#[test]
fn renewals_disabled_ignores_renewals_but_not_new_nodes() {
    let world = registered_world().policy_yaml("client: {renewals: false}");
    let renewal = Csr::renewal("worker-1", &Request::node("worker-1"));
    assert_decision!(
        world.decide(&renewal),
        Verdict::Ignore,
        Reason::RenewalsDisabled
    );
    let fresh = joining_world().policy_yaml("client: {renewals: false}");
    assert_decision!(
        fresh.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

// --- forged or invalid requests ---------------------------------------------------------

#[test]
fn garbage_request_is_malformed() {
    let csr = worker1().raw_request(b"garbage".to_vec());
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::MalformedRequest
    );
}

#[test]
fn two_pem_blocks_are_malformed() {
    let mut two = Request::node("worker-1").pem();
    two.extend(Request::node("worker-1").pem());
    let csr = worker1().raw_request(two);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::MalformedRequest
    );
}

#[test]
fn tampered_signature_is_never_approved() {
    let block = pem::parse(Request::node("worker-1").pem()).expect("pem");
    let mut der = block.contents().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let csr = worker1().raw_request(pem::encode(&pem::Pem::new(block.tag(), der)).into_bytes());
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadSignature
    );
}

#[test]
fn rsa_1024_is_weak() {
    let csr = worker1().raw_request(fixture_bytes("requests/rsa1024-client.csr"));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::WeakKey
    );
}

#[test]
fn rsa_2048_is_weak_when_policy_raises_the_floor() {
    let world = joining_world().policy_yaml("keys: {minRSABits: 3072}");
    let csr = Csr::client(&Request::node("worker-1").key(Key::Rsa2048));
    assert_decision!(world.decide(&csr), Verdict::Wait { .. }, Reason::WeakKey);
    let csr3072 = Csr::client(&Request::node("worker-1").key(Key::Rsa3072));
    assert_decision!(
        world.decide(&csr3072),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn key_type_not_in_policy_is_unsupported() {
    let world = joining_world().policy_yaml("keys: {types: [ECDSA-P256]}");
    let csr = Csr::client(&Request::node("worker-1").key(Key::Ed25519));
    assert_decision!(
        world.decide(&csr),
        Verdict::Wait { .. },
        Reason::UnsupportedKey
    );
}

#[test]
fn unsupported_curve_is_refused() {
    let csr = worker1().raw_request(fixture_bytes("requests/secp256k1-client.csr"));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::UnsupportedKey
    );
}

#[test]
fn system_masters_organization_is_never_approved() {
    let csr = Csr::client(&Request::node("worker-1").org(Some("system:masters")));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadOrganization
    );
}

#[test]
fn system_masters_beside_system_nodes_is_never_approved() {
    let csr = worker1().raw_request(fixture_bytes("requests/two-orgs-client.csr"));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadOrganization
    );
}

#[test]
fn missing_organization_is_refused() {
    let csr = Csr::client(&Request::node("worker-1").org(None));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadOrganization
    );
}

#[test]
fn common_name_without_node_prefix_is_refused() {
    let csr = Csr::client(&Request::node("x").cn("worker-1"));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadCommonName
    );
}

#[test]
fn empty_node_name_is_refused() {
    let csr = Csr::client(&Request::node("x").cn("system:node:"));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadCommonName
    );
}

#[test]
fn uppercase_node_name_in_cn_is_refused() {
    let csr = Csr::client(&Request::node("Worker-1"));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadCommonName
    );
}

#[test]
fn trailing_dot_node_name_in_cn_is_refused() {
    let csr = Csr::client(&Request::node("worker-1."));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadCommonName
    );
}

#[test]
fn two_common_names_are_refused() {
    let csr = worker1().raw_request(fixture_bytes("requests/two-cns-client.csr"));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadCommonName
    );
}

#[test]
fn client_csr_with_dns_san_is_refused() {
    let csr = Csr::client(&Request::node("worker-1").dns("worker-1"));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::UnexpectedSans
    );
}

#[test]
fn client_csr_with_ip_san_is_refused() {
    let csr = Csr::client(&Request::node("worker-1").ip("10.0.0.11"));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::UnexpectedSans
    );
}

#[test]
fn client_csr_with_server_auth_usage_is_refused() {
    let csr = worker1().usages(&["digital signature", "client auth", "server auth"]);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadUsages
    );
}

#[test]
fn client_csr_missing_client_auth_is_refused() {
    let csr = worker1().usages(&["digital signature"]);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::BadUsages
    );
}

#[test]
fn expiration_over_the_cap_is_refused() {
    let csr = worker1().expiration(31_622_401);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::ExpirationTooLong
    );
    let at_cap = worker1().expiration(31_622_400);
    assert_decision!(
        joining_world().decide(&at_cap),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

// --- who asks ----------------------------------------------------------------------------

#[test]
fn unknown_requester_is_refused() {
    let csr = worker1().user("alice", &["system:authenticated"]);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::UnknownRequester
    );
}

#[test]
fn bootstrapper_username_without_its_groups_is_refused() {
    let csr = worker1().user(BOOTSTRAPPER, &["system:authenticated"]);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::UnknownRequester
    );
}

#[test]
fn bootstrap_token_group_is_not_a_default_bootstrapper() {
    let csr = worker1().user("system:bootstrap:abcdef", &["system:bootstrappers"]);
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::UnknownRequester
    );
}

#[test]
fn other_service_account_is_refused() {
    let csr = worker1().user(
        "system:serviceaccount:default:builder",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:openshift-machine-config-operator",
        ],
    );
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::UnknownRequester
    );
}

#[test]
fn node_renewing_another_nodes_identity_is_refused() {
    let csr = Csr::renewal("worker-2", &Request::node("worker-1"));
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::RequesterMismatch
    );
}

#[test]
fn renewal_without_nodes_group_is_refused() {
    let csr = Csr::renewal("worker-1", &Request::node("worker-1"))
        .user("system:node:worker-1", &["system:authenticated"]);
    assert_decision!(
        registered_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::MissingNodesGroup
    );
}

#[test]
fn renewal_for_unregistered_node_waits() {
    let csr = Csr::renewal("worker-1", &Request::node("worker-1"));
    assert_decision!(
        joining_world().decide(&csr),
        Verdict::Wait { .. },
        Reason::NodeNotRegistered
    );
}

// --- which machine -----------------------------------------------------------------------

#[test]
fn bootstrapper_cannot_request_an_existing_nodes_identity() {
    let world = joining_world().node(node("worker-1", &[]));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::NodeAlreadyExists
    );
}

#[test]
fn existing_node_wins_over_inventory() {
    let world = World::new()
        .policy_yaml("inventory: [{name: worker-1}]")
        .node(node("worker-1", &[]));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::NodeAlreadyExists
    );
}

#[test]
fn no_machine_and_no_inventory_waits() {
    assert_decision!(
        World::new().decide(&worker1()),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

#[test]
fn machine_for_another_host_does_not_match() {
    let world = World::new().machine(machine("m", ago(60), &[("InternalDNS", "worker-2")]));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

#[test]
fn machine_name_prefix_does_not_match() {
    let world = World::new().machine(machine(
        "m",
        ago(60),
        &[("InternalDNS", "worker-1.evil.example")],
    ));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

#[test]
fn machine_ip_or_external_dns_does_not_identify_a_host() {
    let world = World::new().machine(machine(
        "m",
        ago(60),
        &[("ExternalDNS", "worker-1"), ("InternalIP", "10.0.0.11")],
    ));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

#[test]
fn machine_without_addresses_yet_waits() {
    let world = World::new().machine(machine("worker-1", ago(60), &[]));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

#[test]
fn machine_already_linked_to_a_node_is_refused() {
    let mut m = machine("worker-1", ago(60), &[("InternalDNS", "worker-1")]);
    m.node_ref = Some("worker-1-old".to_string());
    let world = World::new().machine(m);
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::MachineAlreadyLinked
    );
}

#[test]
fn linked_machine_is_not_overridden_by_inventory() {
    let mut m = machine("worker-1", ago(60), &[("InternalDNS", "worker-1")]);
    m.node_ref = Some("elsewhere".to_string());
    let world = World::new()
        .machine(m)
        .policy_yaml("inventory: [{name: worker-1}]");
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::MachineAlreadyLinked
    );
}

#[test]
fn machine_in_unwatched_namespace_does_not_count() {
    let world =
        joining_world().policy_yaml("machines: {namespaces: {machine.openshift.io: [other]}}");
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

#[test]
fn machine_of_unlisted_api_group_does_not_count() {
    let world = joining_world().policy_yaml(
        "machines: {apiGroups: [cluster.x-k8s.io], namespaces: {cluster.x-k8s.io: [openshift-machine-api]}}",
    );
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

// --- join window edges -------------------------------------------------------------------

fn world_with_machine_created(at: jiff::Timestamp) -> World {
    World::new().machine(machine("worker-1", at, &[("InternalDNS", "worker-1")]))
}

#[test]
fn machine_created_exactly_two_hours_before_is_approved() {
    assert_decision!(
        world_with_machine_created(ago(7200)).decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn machine_created_two_hours_and_a_second_before_is_refused() {
    assert_decision!(
        world_with_machine_created(ago(7201)).decide(&worker1()),
        Verdict::Wait { .. },
        Reason::OutsideJoinWindow
    );
}

#[test]
fn machine_created_ten_seconds_after_the_csr_is_approved() {
    assert_decision!(
        world_with_machine_created(ago(-10)).decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn machine_created_eleven_seconds_after_the_csr_is_refused() {
    assert_decision!(
        world_with_machine_created(ago(-11)).decide(&worker1()),
        Verdict::Wait { .. },
        Reason::OutsideJoinWindow
    );
}

#[test]
fn join_window_follows_the_policy() {
    let world = world_with_machine_created(ago(1800)).policy_yaml("client: {joinWindow: 10m}");
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::OutsideJoinWindow
    );
}

#[test]
fn join_window_is_measured_from_csr_creation_not_now() {
    // The CSR was created 1 h after the Machine; evaluated much later, still in the window.
    let world = world_with_machine_created(ago(5 * 3600));
    let csr = worker1().created(ago(4 * 3600));
    assert_decision!(world.decide(&csr), Verdict::Approve, Reason::NewNodeMachine);
}

#[test]
fn machine_without_creation_timestamp_is_refused() {
    let mut m = machine("worker-1", ago(60), &[("InternalDNS", "worker-1")]);
    m.created = None;
    assert_decision!(
        World::new().machine(m).decide(&worker1()),
        Verdict::Wait { .. },
        Reason::OutsideJoinWindow
    );
}

// --- duplicates and floods ---------------------------------------------------------------

#[test]
fn second_client_csr_for_the_same_node_waits() {
    let world = joining_world().csr(summary(
        "csr-first",
        CLIENT_SIGNER,
        "worker-1",
        CsrState::Approved,
        ago(30),
    ));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::DuplicateClientRequest
    );
}

#[test]
fn duplicates_are_approved_when_the_policy_allows_them() {
    let world = joining_world()
        .csr(summary(
            "csr-first",
            CLIENT_SIGNER,
            "worker-1",
            CsrState::Approved,
            ago(30),
        ))
        .policy_yaml("client: {allowDuplicates: true}");
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn pending_or_denied_sibling_is_not_a_duplicate() {
    let world = joining_world()
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
        ));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn approved_csr_for_another_node_is_not_a_duplicate() {
    let world = joining_world().csr(summary(
        "csr-a",
        CLIENT_SIGNER,
        "worker-2",
        CsrState::Issued,
        ago(30),
    ));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn flood_guard_stops_approvals_above_the_threshold() {
    let mut world = joining_world().policy_yaml("client: {maxPending: 3}");
    for i in 0..3 {
        world = world.csr(summary(
            &format!("p{i}"),
            CLIENT_SIGNER,
            &format!("x{i}"),
            CsrState::Pending,
            ago(60),
        ));
    }
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::TooManyPending
    );
}

#[test]
fn flood_guard_counts_only_csrs_that_could_become_new_nodes() {
    let mut world = registered_world()
        .machine(machine(
            "worker-2",
            ago(300),
            &[("InternalDNS", "worker-2"), ("InternalIP", "10.0.0.12")],
        ))
        .policy_yaml("client: {maxPending: 1}");
    for i in 0..50 {
        // Serving CSRs, garbage (no parseable name), strangers' CSRs, and CSRs for a
        // registered Node: none of them can become a new node.
        world = world
            .csr(summary(
                &format!("s{i}"),
                SERVING_SIGNER,
                &format!("x{i}"),
                CsrState::Pending,
                ago(60),
            ))
            .csr({
                let mut c = summary(
                    &format!("g{i}"),
                    CLIENT_SIGNER,
                    "x",
                    CsrState::Pending,
                    ago(60),
                );
                c.node_name = None;
                c
            })
            .csr({
                let mut c = summary(
                    &format!("u{i}"),
                    CLIENT_SIGNER,
                    &format!("y{i}"),
                    CsrState::Pending,
                    ago(60),
                );
                c.requester = "system:anonymous".to_string();
                c.groups = vec!["system:unauthenticated".to_string()];
                c
            })
            .csr(summary(
                &format!("r{i}"),
                CLIENT_SIGNER,
                "worker-1",
                CsrState::Pending,
                ago(60),
            ));
    }
    let csr = Csr::client(&Request::node("worker-2"));
    assert_decision!(world.decide(&csr), Verdict::Approve, Reason::NewNodeMachine);
}

#[test]
fn flood_guard_allows_exactly_the_threshold() {
    let mut world = joining_world().policy_yaml("client: {maxPending: 3}");
    for i in 0..2 {
        world = world.csr(summary(
            &format!("p{i}"),
            CLIENT_SIGNER,
            "x",
            CsrState::Pending,
            ago(60),
        ));
    }
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn flood_guard_ignores_old_and_foreign_csrs() {
    let mut world = joining_world().policy_yaml("client: {maxPending: 1}");
    world = world
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
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn flood_guard_auto_threshold_is_machines_plus_100() {
    let mut world = joining_world();
    for i in 0..100 {
        world = world.csr(summary(
            &format!("p{i}"),
            CLIENT_SIGNER,
            "x",
            CsrState::Pending,
            ago(60),
        ));
    }
    // 1 Machine -> limit 101; 100 others + this one = 101: allowed.
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
    let world = world.csr(summary(
        "p100",
        CLIENT_SIGNER,
        "x",
        CsrState::Pending,
        ago(60),
    ));
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::TooManyPending
    );
}

#[test]
fn flood_guard_never_holds_renewals_or_serving_of_registered_nodes() {
    let mut world = registered_world().policy_yaml("client: {maxPending: 1}");
    for i in 0..20 {
        world = world.csr(summary(
            &format!("p{i}"),
            CLIENT_SIGNER,
            &format!("x{i}"),
            CsrState::Pending,
            ago(60),
        ));
    }
    // The guard is full of would-be new nodes...
    let joining = world.clone().machine(machine(
        "worker-2",
        ago(300),
        &[("InternalDNS", "worker-2")],
    ));
    assert_decision!(
        joining.decide(&Csr::client(&Request::node("worker-2"))),
        Verdict::Wait { .. },
        Reason::TooManyPending
    );
    // ...and rotation of a registered node goes on.
    let renewal = Csr::renewal("worker-1", &Request::node("worker-1"));
    assert_decision!(
        world.decide(&renewal),
        Verdict::Approve,
        Reason::ClientRenewal
    );
    let serving = Csr::serving("worker-1", &Request::node("worker-1").ip("10.0.0.11"));
    assert_decision!(
        world.decide(&serving),
        Verdict::Approve,
        Reason::ServingAddressesVerified
    );
}

// --- deny: true --------------------------------------------------------------------------

#[test]
fn deny_policy_denies_definitive_refusals() {
    let world = joining_world().policy_yaml("deny: true");
    let forged = Csr::client(&Request::node("worker-1").org(Some("system:masters")));
    assert_decision!(
        world.decide(&forged),
        Verdict::Deny,
        Reason::BadOrganization
    );
    // Another node asking for worker-1's identity is forged whatever the cluster holds.
    let impostor = worker1().user("system:node:worker-2", &["system:nodes"]);
    assert_decision!(
        world.decide(&impostor),
        Verdict::Deny,
        Reason::RequesterMismatch
    );
}

#[test]
fn deny_policy_never_denies_an_unproven_request() {
    // Each of these may be a real host that nothing vouches for (a requester the policy
    // does not list, a late boot, a re-used Machine): an admin who checked it may approve
    // it by hand, so no automatic denial may race them.
    let stranger = worker1().user("alice", &[]);
    let mut linked = machine("worker-1", ago(300), &[("InternalDNS", "worker-1")]);
    linked.node_ref = Some("worker-0".to_string());
    let cases = [
        (
            joining_world().policy_yaml("deny: true"),
            stranger,
            Reason::UnknownRequester,
        ),
        (
            World::new().policy_yaml("deny: true").machine(machine(
                "worker-1",
                ago(3 * 3600),
                &[("InternalDNS", "worker-1")],
            )),
            worker1(),
            Reason::OutsideJoinWindow,
        ),
        (
            World::new().policy_yaml("deny: true").machine(linked),
            worker1(),
            Reason::MachineAlreadyLinked,
        ),
    ];
    for (world, csr, reason) in cases {
        let d = assert_decision!(world.decide(&csr), Verdict::Wait { .. }, reason);
        assert_eq!(d.reason.class(), ReasonClass::ForAnAdmin, "{reason:?}");
        assert!(
            d.message
                .contains("approve by hand: kubectl certificate approve csr-client"),
            "{reason:?}: {}",
            d.message
        );
    }
}

#[test]
fn deny_policy_never_denies_a_csr_an_admin_may_approve() {
    // A node recovering after its client certificate expired asks through the bootstrap
    // credential for its existing identity: only an admin can tell it from an attack, and
    // an automatic denial must never race their approval.
    let world = joining_world()
        .node(node("worker-1", &[]))
        .policy_yaml("deny: true");
    let d = assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::NodeAlreadyExists
    );
    assert!(
        d.message.contains("kubectl certificate approve csr-client"),
        "{}",
        d.message
    );
    assert_eq!(d.reason.class(), ReasonClass::ForAnAdmin);
}

#[test]
fn deny_policy_never_denies_what_may_become_valid() {
    let world = World::new().policy_yaml("deny: true");
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Wait { .. },
        Reason::UnknownMachine
    );
}

#[test]
fn deny_policy_does_not_turn_off_approvals() {
    let world = joining_world().policy_yaml("deny: true");
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}

#[test]
fn dry_run_mode_does_not_change_the_decision() {
    let world = joining_world().policy_yaml("mode: dry-run");
    assert!(world.policy.is_dry_run());
    assert_decision!(
        world.decide(&worker1()),
        Verdict::Approve,
        Reason::NewNodeMachine
    );
}
