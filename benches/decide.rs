//! Parse + verify + decide for one CSR, per key type. Target: ≤ 100 µs each.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use csr_approver::decision::{CsrFacts, decide};
use csr_approver::inventory::{CsrState, Inventory, MachineInfo, NodeInfo, TypedAddress};
use csr_approver::policy::Policy;
use csr_approver::request::parse_request;
use csr_approver::vocabulary::{CLIENT_SIGNER, SERVING_SIGNER};
use jiff::{SignedDuration, Timestamp};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

fn request(key: &KeyPair, node: &str, ip: Option<&str>) -> Vec<u8> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "system:nodes");
    dn.push(DnType::CommonName, format!("system:node:{node}"));
    params.distinguished_name = dn;
    if let Some(ip) = ip {
        params.subject_alt_names = vec![SanType::IpAddress(ip.parse().expect("ip"))];
    }
    params
        .serialize_request(key)
        .expect("csr")
        .pem()
        .expect("pem")
        .into_bytes()
}

fn facts(
    signer: &str,
    user: &str,
    groups: &[&str],
    usages: &[&str],
    pem: Vec<u8>,
    now: Timestamp,
) -> CsrFacts {
    CsrFacts {
        name: "bench".to_string(),
        uid: None,
        signer_name: signer.to_string(),
        username: user.to_string(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        usages: usages.iter().map(|u| u.to_string()).collect(),
        expiration_seconds: None,
        created: Some(now),
        state: CsrState::Pending,
        approved_at: None,
        request: Arc::new(parse_request(&pem)),
    }
}

/// A cluster of 1000 machines, 500 of them registered nodes: the lookup cost is realistic.
fn inventory(now: Timestamp) -> Inventory {
    let mut machines = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..1000 {
        let name = format!("worker-{i}");
        let ip = format!("10.0.{}.{}", i / 250, i % 250 + 1);
        let registered = i >= 500;
        machines.push(MachineInfo {
            api_group: "machine.openshift.io".into(),
            namespace: "openshift-machine-api".into(),
            name: name.as_str().into(),
            created: Some(now - SignedDuration::from_mins(5)),
            addresses: vec![
                TypedAddress::new("InternalDNS", &name),
                TypedAddress::new("InternalIP", &ip),
            ],
            node_ref: registered.then(|| name.clone()),
            deleting: false,
        });
        if registered {
            nodes.push(NodeInfo {
                name: name.as_str().into(),
                addresses: vec![
                    TypedAddress::new("InternalIP", &ip),
                    TypedAddress::new("Hostname", &name),
                ],
                control_plane: false,
            });
        }
    }
    Inventory::new(nodes, machines, Vec::new())
}

fn bench(c: &mut Criterion) {
    let now = Timestamp::now();
    let inventory = inventory(now);
    let policy = Policy::default();
    let rsa_pem = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/keys/rsa2048.pem"
    ))
    .expect("RSA fixture");
    let keys = [
        (
            "rsa2048",
            KeyPair::from_pem_and_sign_algo(&rsa_pem, &rcgen::PKCS_RSA_SHA256).expect("rsa"),
        ),
        (
            "ecdsa-p256",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("p256"),
        ),
    ];
    let bootstrapper = "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper";
    let sa_groups = [
        "system:serviceaccounts",
        "system:serviceaccounts:openshift-machine-config-operator",
    ];
    for (label, key) in &keys {
        let client = facts(
            CLIENT_SIGNER,
            bootstrapper,
            &sa_groups,
            &["digital signature", "client auth"],
            request(key, "worker-10", None),
            now,
        );
        let serving = facts(
            SERVING_SIGNER,
            "system:node:worker-900",
            &["system:nodes"],
            &["digital signature", "server auth"],
            request(key, "worker-900", Some("10.0.3.151")),
            now,
        );
        assert_eq!(
            decide(&client, &inventory, &policy, now).verdict.as_str(),
            "approve"
        );
        assert_eq!(
            decide(&serving, &inventory, &policy, now).verdict.as_str(),
            "approve"
        );
        c.bench_function(&format!("client/{label}"), |b| {
            b.iter(|| decide(black_box(&client), &inventory, &policy, now))
        });
        c.bench_function(&format!("serving/{label}"), |b| {
            b.iter(|| decide(black_box(&serving), &inventory, &policy, now))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
