//! What every kubelet CSR must pass, client or serving (`src/decision/common.rs`): a
//! pending state and a kubelet signer the policy enables, a request that parses with a
//! valid signature, an allowed key, an expiration under the cap, subject O exactly
//! `system:nodes`, and one CN `system:node:<name>` naming a valid node name that is not
//! reserved.

use csr_approver::decision::Reason;
use csr_approver::inventory::CsrState;

use crate::builders::*;
use crate::scenes::*;
use crate::{Case, check};

/// A row in the standard new-worker scene.
fn joining(name: &str, csr: Csr) -> Case {
    Case::new(name, joining_world(), csr)
}

fn serving_ip(request: Request) -> Csr {
    serving("worker-1", request.ip("10.0.0.11"))
}

#[test]
fn only_pending_csrs_of_kubelet_signers_are_ours() {
    let mut rows = vec![
        joining("another signer", worker1().signer("example.com/custom"))
            .ignores(Reason::OtherSigner),
        joining(
            "the legacy-unknown signer",
            worker1().signer("kubernetes.io/legacy-unknown"),
        )
        .ignores(Reason::OtherSigner),
    ];
    for state in [
        CsrState::Approved,
        CsrState::Denied,
        CsrState::Failed,
        CsrState::Issued,
    ] {
        rows.push(
            joining(&format!("a CSR {state:?}"), worker1().state(state))
                .ignores(Reason::AlreadyDecided),
        );
    }
    check(rows);
}

#[test]
fn a_disabled_signer_is_ignored_and_only_that_one() {
    let client_off = registered_world().policy_yaml("client: {enabled: false}");
    let serving_off = registered_world().policy_yaml("serving: {enabled: false}");
    check([
        Case::new(
            "client disabled: a client CSR",
            client_off.clone(),
            worker1(),
        )
        .ignores(Reason::SignerDisabled),
        Case::new(
            "client disabled: a serving CSR still passes",
            client_off,
            serving_ip(w("worker-1")),
        )
        .approves(Reason::ServingAddressesVerified),
        Case::new(
            "serving disabled: a serving CSR",
            serving_off,
            serving_ip(w("worker-1")),
        )
        .ignores(Reason::SignerDisabled),
    ]);
}

#[test]
fn the_request_must_parse_and_its_signature_verify() {
    let mut two_blocks = w("worker-1").pem();
    two_blocks.extend(w("worker-1").pem());
    let block = pem::parse(w("worker-1").pem()).expect("pem");
    let mut der = block.contents().to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01;
    let tampered = pem::encode(&pem::Pem::new(block.tag(), der)).into_bytes();
    check([
        joining("garbage", worker1().raw_request(b"garbage".to_vec()))
            .waits(Reason::MalformedRequest),
        joining("two PEM blocks", worker1().raw_request(two_blocks))
            .waits(Reason::MalformedRequest),
        joining("a tampered signature", worker1().raw_request(tampered))
            .waits(Reason::BadSignature),
    ]);
}

#[test]
fn keys_are_of_an_allowed_type_and_size() {
    let with_key = |key| Csr::client(&w("worker-1").key(key));
    let rsa_usages = ["digital signature", "key encipherment", "client auth"];
    let floor_3072 = joining_world().policy_yaml("keys: {minRSABits: 3072}");
    let p256_only = joining_world().policy_yaml("keys: {types: [ECDSA-P256]}");
    check([
        joining(
            "RSA 2048 with key encipherment",
            with_key(Key::Rsa2048).usages(&rsa_usages),
        )
        .approves(Reason::NewNodeMachine),
        joining("Ed25519", with_key(Key::Ed25519)).approves(Reason::NewNodeMachine),
        joining("P-384", with_key(Key::P384)).approves(Reason::NewNodeMachine),
        joining(
            "an openssl RSA 2048 request",
            worker1()
                .raw_request(fixture_bytes("requests/rsa2048-client.csr"))
                .usages(&rsa_usages),
        )
        .approves(Reason::NewNodeMachine),
        joining(
            "RSA 1024 is weak",
            worker1().raw_request(fixture_bytes("requests/rsa1024-client.csr")),
        )
        .waits(Reason::WeakKey),
        Case::new(
            "RSA 2048 under minRSABits 3072",
            floor_3072.clone(),
            with_key(Key::Rsa2048),
        )
        .waits(Reason::WeakKey),
        Case::new(
            "RSA 3072 under minRSABits 3072",
            floor_3072,
            with_key(Key::Rsa3072),
        )
        .approves(Reason::NewNodeMachine),
        Case::new(
            "a key type keys.types does not list",
            p256_only,
            with_key(Key::Ed25519),
        )
        .waits(Reason::UnsupportedKey),
        joining(
            "the secp256k1 curve",
            worker1().raw_request(fixture_bytes("requests/secp256k1-client.csr")),
        )
        .waits(Reason::UnsupportedKey),
    ]);
}

#[test]
fn expiration_is_capped_per_signer() {
    let serving_cap = registered_world().policy_yaml("serving: {maxExpirationSeconds: 86400}");
    check([
        joining(
            "client: a second over the cap",
            worker1().expiration(31_622_401),
        )
        .waits(Reason::ExpirationTooLong),
        joining("client: at the cap", worker1().expiration(31_622_400))
            .approves(Reason::NewNodeMachine),
        Case::new(
            "serving: a second over serving.maxExpirationSeconds",
            serving_cap.clone(),
            serving_ip(w("worker-1")).expiration(86401),
        )
        .waits(Reason::ExpirationTooLong),
        Case::new(
            "serving: at serving.maxExpirationSeconds",
            serving_cap,
            serving_ip(w("worker-1")).expiration(86400),
        )
        .approves(Reason::ServingAddressesVerified),
    ]);
}

#[test]
fn the_organization_is_exactly_system_nodes() {
    let masters = || w("worker-1").org(Some("system:masters"));
    check([
        joining("O system:masters", Csr::client(&masters())).waits(Reason::BadOrganization),
        joining(
            "O system:masters beside system:nodes",
            worker1().raw_request(fixture_bytes("requests/two-orgs-client.csr")),
        )
        .waits(Reason::BadOrganization),
        joining("no O", Csr::client(&w("worker-1").org(None))).waits(Reason::BadOrganization),
        Case::new(
            "serving: O system:masters",
            registered_world(),
            serving_ip(masters()),
        )
        .waits(Reason::BadOrganization),
    ]);
}

#[test]
fn the_common_name_is_one_valid_node_name() {
    let cn = |cn: &str| Csr::client(&w("x").cn(cn));
    let mut rows = vec![
        joining("a CN without system:node:", cn("worker-1")).waits(Reason::BadCommonName),
        joining("an empty node name", cn("system:node:")).waits(Reason::BadCommonName),
        joining("an upper-case node name", Csr::client(&w("Worker-1")))
            .waits(Reason::BadCommonName),
        joining("a trailing dot", Csr::client(&w("worker-1."))).waits(Reason::BadCommonName),
        joining(
            "two CNs",
            worker1().raw_request(fixture_bytes("requests/two-cns-client.csr")),
        )
        .waits(Reason::BadCommonName),
    ];
    // An inventory pattern that matches anything must not make a reserved name a node's.
    let anything = World::new().policy_yaml(
        "inventory: [{namePattern: '^[a-z0-9.-]*(localhost|kubernetes|svc)[a-z0-9.-]*$'}]",
    );
    for name in [
        "localhost",
        "kubernetes",
        "kubernetes.default.svc",
        "x.svc.cluster.local",
    ] {
        rows.push(
            Case::new(
                format!("the reserved node name {name}"),
                anything.clone(),
                Csr::client(&w(name)),
            )
            .waits(Reason::BadCommonName)
            .says("never a node's"),
        );
    }
    check(rows);
}
