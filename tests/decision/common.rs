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

#[test]
fn node_names_are_read_as_resolvers_read_them() {
    // An inventory pattern that matches every name here (the policy refuses one that
    // matches every name at all): only the name rule can refuse.
    let anything = World::new().policy_yaml("inventory: [{namePattern: '^[^z].*$'}]");
    let row = |name: &str| {
        Case::new(
            format!("node name {name}"),
            anything.clone(),
            Csr::client(&w(name)),
        )
    };
    let mut rows = Vec::new();
    // /etc/hosts names of the loopback address: every host without a DHCP name reports
    // localhost.localdomain, so the identity would be shared.
    for name in [
        "localhost.localdomain",
        "localhost4.localdomain4",
        "localhost6",
        "localhost6.localdomain6",
        "ip6-localhost",
        "ip6-loopback",
    ] {
        rows.push(
            row(name)
                .waits(Reason::BadCommonName)
                .says("loopback or /etc/hosts name")
                .says("never a node's"),
        );
    }
    // A node named by its IP is read as that IP.
    for (name, why) in [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
    ] {
        rows.push(row(name).waits(Reason::BadCommonName).says(why));
    }
    // Forms only inet_aton reads as an address: addresses in disguise.
    for name in [
        "0x7f000001",
        "2130706433",
        "127.1",
        "0177.0.0.1",
        "10.0.0.0x5",
    ] {
        rows.push(
            row(name)
                .waits(Reason::BadCommonName)
                .says("written in a form only some resolvers read as one"),
        );
    }
    // Legitimate: a node named by its (unreserved) IP, a host in a DNS zone named svc.
    for name in ["10.0.0.5", "w1.svc.corp.example", "svc", "svc.example"] {
        rows.push(row(name).approves(Reason::NewNodeInventory));
    }
    check(rows);
}

#[test]
fn a_machine_naming_a_loopback_alias_vouches_for_nothing() {
    // Two bare-metal Machines whose hosts had no DHCP name: both report the default.
    let world = World::new()
        .machine(machine(
            "metal-a",
            ago(60),
            &[("Hostname", "localhost.localdomain")],
        ))
        .machine(machine(
            "metal-b",
            ago(30),
            &[("Hostname", "localhost.localdomain")],
        ));
    check([Case::new(
        "client CSR for localhost.localdomain",
        world,
        Csr::client(&w("localhost.localdomain")),
    )
    .waits(Reason::BadCommonName)
    .says("localhost.localdomain")]);
}

/// Extension builders for the allow-list rows.
mod extensions {
    /// nameConstraints permitting only example.com.
    pub const NAME_CONSTRAINTS_OID: [u64; 4] = [2, 5, 29, 30];
    pub const NAME_CONSTRAINTS: [u8; 19] = [
        0x30, 0x11, 0xa0, 0x0f, 0x30, 0x0d, 0x82, 0x0b, b'e', b'x', b'a', b'm', b'p', b'l', b'e',
        b'.', b'c', b'o', b'm',
    ];
    /// A private-enterprise OID nobody registered; DER NULL content.
    pub const UNKNOWN_OID: [u64; 8] = [1, 3, 6, 1, 4, 1, 99999, 1];
    pub const NULL: [u8; 2] = [0x05, 0x00];
}

#[test]
fn a_request_asks_only_for_what_a_kubelet_asks_for() {
    use extensions::*;
    use rcgen::{BasicConstraints, ExtendedKeyUsagePurpose as Eku, IsCa, KeyUsagePurpose as Ku};
    let client = |request: Request| joining("", Csr::client(&request));
    let serving_row = |request: Request| Case::new("", registered_world(), serving_ip(request));
    let rsa_usages = ["digital signature", "key encipherment", "client auth"];
    // Rows built by the closures above get their names here (first argument last).
    let named = |mut case: Case, name: &str| {
        case.name = name.to_string();
        case
    };
    check([
        // What kubelets send: nothing (client), SANs only (serving) — and key usages
        // other clients add, when they agree with spec.usages.
        named(client(w("worker-1")), "client: no extension").approves(Reason::NewNodeMachine),
        named(
            client(w("worker-1").key_usage(Ku::DigitalSignature)),
            "client: keyUsage digitalSignature",
        )
        .approves(Reason::NewNodeMachine),
        named(
            client(w("worker-1").extended_key_usage(Eku::ClientAuth)),
            "client: extendedKeyUsage clientAuth",
        )
        .approves(Reason::NewNodeMachine),
        named(
            Case::new(
                "",
                joining_world(),
                Csr::client(
                    &w("worker-1")
                        .key(Key::Rsa2048)
                        .key_usage(Ku::DigitalSignature)
                        .key_usage(Ku::KeyEncipherment),
                )
                .usages(&rsa_usages),
            ),
            "client: keyUsage keyEncipherment where spec.usages has it",
        )
        .approves(Reason::NewNodeMachine),
        named(
            serving_row(
                w("worker-1")
                    .key_usage(Ku::DigitalSignature)
                    .extended_key_usage(Eku::ServerAuth),
            ),
            "serving: keyUsage digitalSignature, extendedKeyUsage serverAuth",
        )
        .approves(Reason::ServingAddressesVerified),
        // Anything more is refused, naming what.
        named(
            client(w("worker-1").basic_constraints(IsCa::Ca(BasicConstraints::Unconstrained))),
            "client: basicConstraints CA:TRUE",
        )
        .waits(Reason::ForbiddenExtension)
        .says("basicConstraints (2.5.29.19) (critical)"),
        named(
            client(w("worker-1").basic_constraints(IsCa::ExplicitNoCa)),
            "client: basicConstraints CA:FALSE is still not a kubelet's",
        )
        .waits(Reason::ForbiddenExtension)
        .says("basicConstraints"),
        named(
            serving_row(
                w("worker-1").basic_constraints(IsCa::Ca(BasicConstraints::Constrained(0))),
            ),
            "serving: basicConstraints CA:TRUE pathlen 0",
        )
        .waits(Reason::ForbiddenExtension)
        .says("basicConstraints"),
        named(
            client(
                w("worker-1")
                    .key_usage(Ku::DigitalSignature)
                    .key_usage(Ku::KeyCertSign),
            ),
            "client: keyUsage keyCertSign",
        )
        .waits(Reason::ForbiddenExtension)
        .says("[cert sign] not allowed"),
        named(
            serving_row(w("worker-1").key_usage(Ku::CrlSign)),
            "serving: keyUsage cRLSign",
        )
        .waits(Reason::ForbiddenExtension)
        .says("crl sign"),
        named(
            client(w("worker-1").key_usage(Ku::KeyEncipherment)),
            "client: keyUsage keyEncipherment that spec.usages lacks",
        )
        .waits(Reason::ForbiddenExtension)
        .says("key encipherment"),
        named(
            client(w("worker-1").extended_key_usage(Eku::ServerAuth)),
            "client: extendedKeyUsage serverAuth",
        )
        .waits(Reason::ForbiddenExtension)
        .says("server auth"),
        named(
            serving_row(w("worker-1").extended_key_usage(Eku::Any)),
            "serving: extendedKeyUsage any",
        )
        .waits(Reason::ForbiddenExtension)
        .says("[any] not allowed"),
        named(
            serving_row(
                w("worker-1")
                    .extended_key_usage(Eku::ServerAuth)
                    .extended_key_usage(Eku::CodeSigning),
            ),
            "serving: extendedKeyUsage serverAuth and codeSigning",
        )
        .waits(Reason::ForbiddenExtension)
        .says("code signing"),
        named(
            serving_row(w("worker-1").extension(&NAME_CONSTRAINTS_OID, &NAME_CONSTRAINTS, true)),
            "serving: nameConstraints",
        )
        .waits(Reason::ForbiddenExtension)
        .says("nameConstraints (2.5.29.30)"),
        named(
            client(w("worker-1").extension(&UNKNOWN_OID, &NULL, false)),
            "client: an unknown extension",
        )
        .waits(Reason::ForbiddenExtension)
        .says("1.3.6.1.4.1.99999.1"),
        named(
            serving_row(w("worker-1").extension(&UNKNOWN_OID, &NULL, true)),
            "serving: an unknown critical extension",
        )
        .waits(Reason::ForbiddenExtension)
        .says("1.3.6.1.4.1.99999.1 (critical)"),
    ]);
}

#[test]
fn forbidden_extensions_are_definitive() {
    let csr = Csr::client(&w("worker-1").basic_constraints(rcgen::IsCa::ExplicitNoCa));
    check([Case::new(
        "deny: true denies them",
        joining_world().policy_yaml("deny: true"),
        csr,
    )
    .denies(Reason::ForbiddenExtension)]);
}
