//! Property: no mutation of an approved CSR is approved, unless the mutation is harmless.
//!
//! Three CSRs that are approved (a bootstrapper's client CSR for a joining Machine, a
//! node's client renewal, a serving CSR with the node's own addresses) are changed the way
//! an attacker or a broken client would change them — subject, SANs, usages, requester,
//! signer, expiration, key, requested extensions, raw bytes — and re-signed with real keys. The mutated CSR must
//! not be approved unless the result is *harmless*: judged on the final CSR, not on the
//! mutation's name, by the rules below ([`harmless`]). `every_catalogued_mutation…` tries
//! each listed mutation once; the proptest combines up to three, with random values.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod builders;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::OnceLock;

use builders::{
    BOOTSTRAPPER, BOOTSTRAPPER_GROUPS, CLIENT_USAGES, Csr, SERVING_USAGES, World, fixture_bytes,
    joining_world, registered_world,
};
use csr_approver::decision::{Decision, Verdict};
use csr_approver::policy::DEFAULT_MAX_EXPIRATION_SECONDS;
use csr_approver::vocabulary::canonical_ip;
use csr_approver::vocabulary::{CLIENT_SIGNER, SERVING_SIGNER};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

const NODE: &str = "worker-1";
/// What worker-1 owns in `registered_world`.
const OWNED_DNS: [&str; 2] = ["worker-1", "worker-1.example.com"];
const OWNED_IP: &str = "10.0.0.11";
const NODE_GROUPS: [&str; 2] = ["system:nodes", "system:authenticated"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    /// From the OpenShift node-bootstrapper for joining Machine worker-1.
    Client,
    /// From system:node:worker-1 for its own registered Node.
    Renewal,
    /// From system:node:worker-1 with its Node's and Machine's addresses.
    Serving,
}

const BASES: [Base; 3] = [Base::Client, Base::Renewal, Base::Serving];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyChoice {
    P256,
    P384,
    Ed25519,
    Rsa2048,
    Rsa3072,
}

const KEYS: [KeyChoice; 5] = [
    KeyChoice::P256,
    KeyChoice::P384,
    KeyChoice::Ed25519,
    KeyChoice::Rsa2048,
    KeyChoice::Rsa3072,
];

fn key_pair(key: KeyChoice) -> &'static KeyPair {
    static PAIRS: [OnceLock<KeyPair>; 5] = [const { OnceLock::new() }; 5];
    PAIRS[key as usize].get_or_init(|| match key {
        KeyChoice::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        KeyChoice::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        KeyChoice::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        KeyChoice::Rsa2048 | KeyChoice::Rsa3072 => {
            let file = if key == KeyChoice::Rsa2048 {
                "keys/rsa2048.pem"
            } else {
                "keys/rsa3072.pem"
            };
            let pem = String::from_utf8(fixture_bytes(file)).unwrap();
            KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap()
        }
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum San {
    Dns(String),
    Ip(IpAddr),
    Email(String),
    Uri(String),
    /// otherName (UPN) with a UTF-8 value.
    Other(String),
}

/// A requested extension beyond the SANs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ext {
    KeyUsage(KeyUsagePurpose),
    ExtendedKeyUsage(ExtendedKeyUsagePurpose),
    /// basicConstraints: CA:TRUE (`true`) or CA:FALSE.
    BasicConstraints(bool),
    /// Any extension by OID, DER content and criticality.
    Custom {
        oid: Vec<u64>,
        der: Vec<u8>,
        critical: bool,
    },
}

/// Openssl-made requests for CN system:node:worker-1, O system:nodes, no SANs, each with a
/// key or a shape that must never be approved.
const BAD_FIXTURES: [&str; 7] = [
    "requests/rsa1024-client.csr",
    "requests/secp256k1-client.csr",
    "requests/p521-client.csr",
    "requests/dsa-client.csr",
    "requests/rsa2048-sha1-client.csr",
    "requests/two-cns-client.csr",
    "requests/two-orgs-client.csr",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum RawEdit {
    /// The whole request replaced by a fixture from [`BAD_FIXTURES`].
    Fixture(usize),
    /// One bit of the DER flipped, re-wrapped in PEM.
    FlipDer(usize),
    /// One bit of the PEM text flipped.
    FlipPem(usize),
}

/// Everything about a CSR object and its request, before signing.
#[derive(Debug, Clone)]
struct Spec {
    base: Base,
    cns: Vec<String>,
    orgs: Vec<String>,
    sans: Vec<San>,
    extensions: Vec<Ext>,
    key: KeyChoice,
    signer: String,
    username: String,
    groups: Vec<String>,
    usages: Vec<String>,
    expiration: Option<i64>,
    raw: Vec<RawEdit>,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Spec {
    fn base(base: Base) -> Spec {
        let node_user = format!("system:node:{NODE}");
        let (signer, username, groups, usages, sans) = match base {
            Base::Client => (
                CLIENT_SIGNER,
                BOOTSTRAPPER.to_string(),
                strings(&BOOTSTRAPPER_GROUPS),
                strings(&CLIENT_USAGES),
                Vec::new(),
            ),
            Base::Renewal => (
                CLIENT_SIGNER,
                node_user,
                strings(&NODE_GROUPS),
                strings(&CLIENT_USAGES),
                Vec::new(),
            ),
            Base::Serving => (
                SERVING_SIGNER,
                node_user,
                strings(&NODE_GROUPS),
                strings(&SERVING_USAGES),
                vec![
                    San::Dns(OWNED_DNS[0].to_string()),
                    San::Dns(OWNED_DNS[1].to_string()),
                    San::Ip(OWNED_IP.parse().unwrap()),
                ],
            ),
        };
        Spec {
            base,
            cns: vec![format!("system:node:{NODE}")],
            orgs: vec!["system:nodes".to_string()],
            sans,
            extensions: Vec::new(),
            key: KeyChoice::P256,
            signer: signer.to_string(),
            username,
            groups,
            usages,
            expiration: None,
            raw: Vec::new(),
        }
    }

    fn world(&self) -> World {
        match self.base {
            Base::Client => joining_world(),
            Base::Renewal | Base::Serving => registered_world(),
        }
    }

    /// The signed request, DER.
    fn der(&self) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        // rcgen keeps one value per attribute type: further O/CN values go in under the
        // same OIDs spelled as custom types.
        for (i, org) in self.orgs.iter().enumerate() {
            let ty = if i == 0 {
                DnType::OrganizationName
            } else {
                DnType::CustomDnType(vec![2, 5, 4, 10])
            };
            dn.push(ty, DnValue::Utf8String(org.clone()));
        }
        for (i, cn) in self.cns.iter().enumerate() {
            let ty = if i == 0 {
                DnType::CommonName
            } else {
                DnType::CustomDnType(vec![2, 5, 4, 3])
            };
            dn.push(ty, DnValue::Utf8String(cn.clone()));
        }
        params.distinguished_name = dn;
        params.subject_alt_names = self
            .sans
            .iter()
            .map(|san| match san {
                San::Dns(d) => SanType::DnsName(d.clone().try_into().unwrap()),
                San::Ip(ip) => SanType::IpAddress(*ip),
                San::Email(e) => SanType::Rfc822Name(e.clone().try_into().unwrap()),
                San::Uri(u) => SanType::URI(u.clone().try_into().unwrap()),
                San::Other(v) => SanType::OtherName((
                    vec![1, 3, 6, 1, 4, 1, 311, 20, 2, 3],
                    rcgen::OtherNameValue::Utf8String(v.clone()),
                )),
            })
            .collect();
        for extension in &self.extensions {
            match extension {
                Ext::KeyUsage(usage) => params.key_usages.push(*usage),
                Ext::ExtendedKeyUsage(usage) => params.extended_key_usages.push(usage.clone()),
                Ext::BasicConstraints(true) => {
                    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                }
                Ext::BasicConstraints(false) => params.is_ca = IsCa::ExplicitNoCa,
                Ext::Custom { oid, der, critical } => {
                    let mut custom = CustomExtension::from_oid_content(oid, der.clone());
                    custom.set_criticality(*critical);
                    params.custom_extensions.push(custom);
                }
            }
        }
        params
            .serialize_request(key_pair(self.key))
            .unwrap()
            .der()
            .to_vec()
    }

    /// The request bytes as `spec.request`, and whether the raw edits left the signed DER
    /// exactly as it was (a PEM-only change such as whitespace).
    fn request(&self, der: &[u8]) -> (Vec<u8>, bool) {
        let mut bytes = pem_encode(der);
        let mut same_der = true;
        for edit in &self.raw {
            match edit {
                RawEdit::Fixture(i) => {
                    bytes = fixture_bytes(BAD_FIXTURES[i % BAD_FIXTURES.len()]);
                    same_der = false;
                }
                RawEdit::FlipDer(bit) => {
                    match pem::parse(&bytes) {
                        Ok(block) => {
                            let mut contents = block.contents().to_vec();
                            flip(&mut contents, *bit);
                            bytes = pem_encode(&contents);
                        }
                        Err(_) => flip(&mut bytes, *bit),
                    }
                    same_der = false;
                }
                RawEdit::FlipPem(bit) => flip(&mut bytes, *bit),
            }
        }
        let same_der = same_der && lenient_pem_body(&bytes).as_deref() == Some(der);
        (bytes, same_der)
    }

    fn csr(&self, der: &[u8]) -> (Csr, bool) {
        let (request, same_der) = self.request(der);
        let mut csr = match self.base {
            Base::Client => Csr::client(&builders::Request::node(NODE)),
            Base::Renewal => Csr::renewal(NODE, &builders::Request::node(NODE)),
            Base::Serving => Csr::serving(NODE, &builders::Request::node(NODE).ip(OWNED_IP)),
        }
        .raw_request(request);
        csr.0.signer_name = self.signer.clone();
        csr.0.username = self.username.clone();
        csr.0.groups = self.groups.clone();
        csr.0.usages = self.usages.clone();
        csr.0.expiration_seconds = self.expiration;
        (csr, same_der)
    }

    /// The decision on the signed, edited CSR; whether the signed DER is intact; that DER.
    fn decide(&self) -> (Decision, bool, Vec<u8>) {
        let der = self.der();
        let (csr, same_der) = self.csr(&der);
        (self.world().decide(&csr), same_der, der)
    }
}

fn pem_encode(der: &[u8]) -> Vec<u8> {
    pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der.to_vec())).into_bytes()
}

fn flip(bytes: &mut [u8], bit: usize) {
    if bytes.is_empty() {
        return;
    }
    let bit = bit % (bytes.len() * 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
}

/// The base64 between a `-----BEGIN` line and an `-----END` line, decoded leniently
/// (whitespace ignored, padding bits dropped): what any PEM reader could take the request
/// to be. `None` when it is not base64.
fn lenient_pem_body(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.lines();
    lines.find(|l| l.contains("-----BEGIN"))?;
    let mut body = String::new();
    for line in lines.by_ref() {
        if line.contains("-----END") {
            break;
        }
        body.push_str(line);
    }
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = match c {
            'A'..='Z' => c as u32 - 'A' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 26,
            '0'..='9' => c as u32 - '0' as u32 + 52,
            '+' => 62,
            '/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// A DNS SAN that names an address the node owns, spelled differently only in case or by
/// one trailing dot.
fn owned_dns_spelling(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && OWNED_DNS.contains(&name.to_ascii_lowercase().as_str())
}

/// Whether the mutated CSR may still be approved: it asks for the same identity, from the
/// same requester, for the same kind of certificate, with no more than the base allows.
/// Usages compare as a set (the apiserver refuses duplicates; a repeated usage grants
/// nothing more); the signed DER must be exactly the one signed.
fn harmless(spec: &Spec, same_der: bool) -> bool {
    let base = Spec::base(spec.base);
    let usage_set: BTreeSet<&str> = spec.usages.iter().map(String::as_str).collect();
    let base_usages: BTreeSet<&str> = base.usages.iter().map(String::as_str).collect();
    let mut with_encipherment = base_usages.clone();
    with_encipherment.insert("key encipherment");
    let groups_ok = match spec.base {
        Base::Client => [
            "system:serviceaccounts",
            "system:serviceaccounts:openshift-machine-config-operator",
        ]
        .iter()
        .all(|g| spec.groups.iter().any(|have| have == g)),
        Base::Renewal | Base::Serving => spec.groups.iter().any(|g| g == "system:nodes"),
    };
    let sans_ok = match spec.base {
        Base::Client | Base::Renewal => spec.sans.is_empty(),
        Base::Serving => {
            let owned_ip: IpAddr = OWNED_IP.parse().unwrap();
            !spec.sans.is_empty()
                && spec.sans.iter().all(|san| match san {
                    San::Dns(d) => owned_dns_spelling(d),
                    San::Ip(ip) => canonical_ip(*ip) == owned_ip,
                    San::Email(_) | San::Uri(_) | San::Other(_) => false,
                })
        }
    };
    // What a kubelet may ask for besides SANs: digital signature, key encipherment where
    // spec.usages has it, and the signer's one extended key usage.
    let (purpose, purpose_usage) = match spec.base {
        Base::Client | Base::Renewal => (ExtendedKeyUsagePurpose::ClientAuth, "client auth"),
        Base::Serving => (ExtendedKeyUsagePurpose::ServerAuth, "server auth"),
    };
    let extensions_ok = spec.extensions.iter().all(|extension| match extension {
        Ext::KeyUsage(KeyUsagePurpose::DigitalSignature) => usage_set.contains("digital signature"),
        Ext::KeyUsage(KeyUsagePurpose::KeyEncipherment) => usage_set.contains("key encipherment"),
        Ext::ExtendedKeyUsage(p) => *p == purpose && usage_set.contains(purpose_usage),
        Ext::KeyUsage(_) | Ext::BasicConstraints(_) | Ext::Custom { .. } => false,
    });
    same_der
        && extensions_ok
        && spec.cns == base.cns
        && spec.orgs == base.orgs
        && sans_ok
        && spec.signer == base.signer
        && spec.username == base.username
        && groups_ok
        && (usage_set == base_usages || usage_set == with_encipherment)
        && spec
            .expiration
            .is_none_or(|s| (600..=i64::from(DEFAULT_MAX_EXPIRATION_SECONDS)).contains(&s))
}

#[derive(Debug, Clone)]
enum Mutation {
    Cn(String),
    CnRemoved,
    CnAdded(String),
    Org(String),
    OrgRemoved,
    OrgAdded(String),
    SanAdded(San),
    ExtensionAdded(Ext),
    UsageAdded(String),
    UsageRemoved(usize),
    UsagesReplaced(Vec<String>),
    UsagesReordered,
    Username(String),
    GroupRemoved(usize),
    Groups(Vec<String>),
    Signer(String),
    Expiration(i64),
    Key(KeyChoice),
    Raw(RawEdit),
}

impl Mutation {
    fn apply(&self, spec: &mut Spec) {
        match self.clone() {
            Mutation::Cn(cn) => spec.cns = vec![cn],
            Mutation::CnRemoved => spec.cns.clear(),
            Mutation::CnAdded(cn) => spec.cns.push(cn),
            Mutation::Org(org) => spec.orgs = vec![org],
            Mutation::OrgRemoved => spec.orgs.clear(),
            Mutation::OrgAdded(org) => spec.orgs.push(org),
            Mutation::SanAdded(san) => spec.sans.push(san),
            Mutation::ExtensionAdded(extension) => spec.extensions.push(extension),
            Mutation::UsageAdded(u) => spec.usages.push(u),
            Mutation::UsageRemoved(i) => {
                if !spec.usages.is_empty() {
                    let i = i % spec.usages.len();
                    spec.usages.remove(i);
                }
            }
            Mutation::UsagesReplaced(list) => spec.usages = list,
            Mutation::UsagesReordered => spec.usages.reverse(),
            Mutation::Username(u) => spec.username = u,
            Mutation::GroupRemoved(i) => {
                if !spec.groups.is_empty() {
                    let i = i % spec.groups.len();
                    spec.groups.remove(i);
                }
            }
            Mutation::Groups(list) => spec.groups = list,
            Mutation::Signer(s) => spec.signer = s,
            Mutation::Expiration(s) => spec.expiration = Some(s),
            Mutation::Key(k) => spec.key = k,
            Mutation::Raw(edit) => spec.raw.push(edit),
        }
    }
}

const OTHER_NODES: [&str; 9] = [
    "system:node:localhost.localdomain",
    "system:node:127.0.0.1",
    "system:node:0xa00000b",
    "system:node:worker-2",
    "system:node:master-0",
    "system:node:worker-10",
    "system:node:worker-1.example.com",
    "system:node:Worker-1",
    "system:node:worker-1.",
];
const GARBAGE_CNS: [&str; 9] = [
    "",
    "system:node:",
    "system:node:worker-1 ",
    " system:node:worker-1",
    "system:nodes:worker-1",
    "system:node:worker-1\0",
    "system:node:*",
    "system:node:worker-1/worker-2",
    "system:admin",
];
const ORGS: [&str; 6] = [
    "system:masters",
    "system:node",
    "System:Nodes",
    "system:nodes ",
    "",
    "system:nodes",
];
const FOREIGN_IPS: [&str; 18] = [
    // worker-2's 10.0.0.12 and worker-1's own 10.0.0.11 in IPv6 forms that embed them.
    "64:ff9b::10.0.0.12",
    "64:ff9b:1::a00:c",
    "2002:a00:c::1",
    "::10.0.0.12",
    "64:ff9b::10.0.0.11",
    "64:ff9b::127.0.0.1",
    "10.0.0.12",
    "10.0.0.99",
    "127.0.0.1",
    "0.0.0.0",
    "169.254.169.254",
    "224.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "::ffff:10.0.0.12",
    "fd00::11",
];
const FOREIGN_DNS: [&str; 19] = [
    // Addresses in disguise (what inet_aton reads as 10.0.0.11 / .12) and loopback aliases.
    "10.0.0.0x0b",
    "0xa00000c",
    "012.0.0.11",
    "10.11",
    "localhost.localdomain",
    "ip6-localhost",
    "localhost6.localdomain6",
    "worker-2",
    "master-0",
    "kubernetes",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
    "evil.example.com",
    "worker-1.example.com.evil.example",
    "worker-1..",
    " worker-1",
    "worker-1 ",
    "worker-1.example.com..",
];
const WILDCARDS: [&str; 4] = ["*.example.com", "*", "worker-*", "*.worker-1"];
/// Harmless spellings of what worker-1 owns.
const OWNED_SPELLINGS: [&str; 5] = [
    "WORKER-1",
    "worker-1.",
    "Worker-1.Example.Com",
    "worker-1.example.com.",
    "worker-1",
];
const USAGES: [&str; 9] = [
    "digital signature",
    "key encipherment",
    "client auth",
    "server auth",
    "code signing",
    "cert sign",
    "any",
    "Server Auth",
    "signing",
];
const USERS: [&str; 7] = [
    "system:node:worker-1",
    "system:node:worker-2",
    "system:node:worker-1 ",
    BOOTSTRAPPER,
    "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper2",
    "system:serviceaccount:default:default",
    "system:anonymous",
];
const GROUPS: [&str; 6] = [
    "system:nodes",
    "system:authenticated",
    "system:serviceaccounts",
    "system:serviceaccounts:openshift-machine-config-operator",
    "system:bootstrappers",
    "system:masters",
];
const SIGNERS: [&str; 5] = [
    CLIENT_SIGNER,
    SERVING_SIGNER,
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/legacy-unknown",
    "example.com/kubelet-serving",
];

const KEY_USAGES: [KeyUsagePurpose; 9] = [
    KeyUsagePurpose::DigitalSignature,
    KeyUsagePurpose::ContentCommitment,
    KeyUsagePurpose::KeyEncipherment,
    KeyUsagePurpose::DataEncipherment,
    KeyUsagePurpose::KeyAgreement,
    KeyUsagePurpose::KeyCertSign,
    KeyUsagePurpose::CrlSign,
    KeyUsagePurpose::EncipherOnly,
    KeyUsagePurpose::DecipherOnly,
];

fn extended_key_usages() -> Vec<ExtendedKeyUsagePurpose> {
    vec![
        ExtendedKeyUsagePurpose::Any,
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::CodeSigning,
        ExtendedKeyUsagePurpose::EmailProtection,
        ExtendedKeyUsagePurpose::TimeStamping,
        ExtendedKeyUsagePurpose::OcspSigning,
        ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 4, 1, 99999, 2]),
    ]
}

/// nameConstraints permitting only example.com.
const NAME_CONSTRAINTS: [u8; 19] = [
    0x30, 0x11, 0xa0, 0x0f, 0x30, 0x0d, 0x82, 0x0b, b'e', b'x', b'a', b'm', b'p', b'l', b'e', b'.',
    b'c', b'o', b'm',
];

/// Every listed extension: each key usage, each extended key usage, basicConstraints
/// either way, nameConstraints, an unknown OID critical or not.
fn extensions() -> Vec<Ext> {
    let mut all: Vec<Ext> = KEY_USAGES.iter().map(|u| Ext::KeyUsage(*u)).collect();
    all.extend(extended_key_usages().into_iter().map(Ext::ExtendedKeyUsage));
    all.push(Ext::BasicConstraints(true));
    all.push(Ext::BasicConstraints(false));
    all.push(Ext::Custom {
        oid: vec![2, 5, 29, 30],
        der: NAME_CONSTRAINTS.to_vec(),
        critical: true,
    });
    for critical in [false, true] {
        all.push(Ext::Custom {
            oid: vec![1, 3, 6, 1, 4, 1, 99999, 1],
            der: vec![0x05, 0x00],
            critical,
        });
    }
    all
}

/// Every listed mutation, once, with each listed value.
fn catalogue() -> Vec<Mutation> {
    let mut all = Vec::new();
    for cn in OTHER_NODES.iter().chain(&GARBAGE_CNS) {
        all.push(Mutation::Cn(cn.to_string()));
    }
    all.push(Mutation::CnRemoved);
    all.push(Mutation::CnAdded("system:node:worker-2".to_string()));
    all.push(Mutation::CnAdded(format!("system:node:{NODE}")));
    for org in ORGS {
        all.push(Mutation::Org(org.to_string()));
        all.push(Mutation::OrgAdded(org.to_string()));
    }
    all.push(Mutation::OrgRemoved);
    for ip in FOREIGN_IPS.iter().chain(&[OWNED_IP, "::ffff:10.0.0.11"]) {
        all.push(Mutation::SanAdded(San::Ip(ip.parse().unwrap())));
    }
    for name in FOREIGN_DNS.iter().chain(&WILDCARDS).chain(&OWNED_SPELLINGS) {
        all.push(Mutation::SanAdded(San::Dns(name.to_string())));
    }
    all.push(Mutation::SanAdded(San::Email("root@worker-1".to_string())));
    all.push(Mutation::SanAdded(San::Uri(
        "spiffe://cluster/ns/x".to_string(),
    )));
    all.push(Mutation::SanAdded(San::Other("worker-1".to_string())));
    for extension in extensions() {
        all.push(Mutation::ExtensionAdded(extension));
    }
    for usage in USAGES {
        all.push(Mutation::UsageAdded(usage.to_string()));
        all.push(Mutation::UsagesReplaced(vec![usage.to_string()]));
    }
    all.push(Mutation::UsageRemoved(0));
    all.push(Mutation::UsageRemoved(1));
    all.push(Mutation::UsagesReplaced(Vec::new()));
    all.push(Mutation::UsagesReordered);
    for user in USERS {
        all.push(Mutation::Username(user.to_string()));
    }
    for i in 0..3 {
        all.push(Mutation::GroupRemoved(i));
    }
    all.push(Mutation::Groups(Vec::new()));
    for group in GROUPS {
        all.push(Mutation::Groups(vec![group.to_string()]));
    }
    for signer in SIGNERS {
        all.push(Mutation::Signer(signer.to_string()));
    }
    let cap = i64::from(DEFAULT_MAX_EXPIRATION_SECONDS);
    for seconds in [
        cap + 1,
        2 * cap,
        i64::from(i32::MAX),
        i64::MAX,
        600,
        3600,
        cap,
    ] {
        all.push(Mutation::Expiration(seconds));
    }
    for key in KEYS {
        all.push(Mutation::Key(key));
    }
    for i in 0..BAD_FIXTURES.len() {
        all.push(Mutation::Raw(RawEdit::Fixture(i)));
    }
    for bit in [0, 7, 100, 333, 1000, 2000, 4000] {
        all.push(Mutation::Raw(RawEdit::FlipDer(bit)));
        all.push(Mutation::Raw(RawEdit::FlipPem(bit)));
    }
    all
}

fn check(spec: &Spec, mutations: &[Mutation]) -> Result<(), String> {
    let (decision, same_der, der) = spec.decide();
    if decision.verdict == Verdict::Approve && !harmless(spec, same_der) {
        return Err(format!(
            "{:?} CSR approved after {mutations:?}{}: {} — {}",
            spec.base,
            describe_der_change(spec, &der),
            decision.reason,
            decision.message
        ));
    }
    Ok(())
}

/// Where the request's DER differs from the one that was signed, for the failure message.
fn describe_der_change(spec: &Spec, signed: &[u8]) -> String {
    if spec.raw.is_empty() {
        return String::new();
    }
    let (request, _) = spec.request(signed);
    let Some(sent) = lenient_pem_body(&request) else {
        return " (the request is no longer PEM-framed base64)".to_string();
    };
    let changed: Vec<String> = signed
        .iter()
        .zip(&sent)
        .take(64 * 1024)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| format!("byte {i}: {a:#04x} -> {b:#04x}"))
        .collect();
    format!(
        " (signed DER of {} bytes, sent {} bytes; {}; signed DER {})",
        signed.len(),
        sent.len(),
        if changed.is_empty() {
            "same bytes".to_string()
        } else {
            changed.join(", ")
        },
        signed
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

#[test]
fn the_unmutated_csrs_are_approved() {
    for base in BASES {
        let spec = Spec::base(base);
        let (decision, same_der, _) = spec.decide();
        assert!(same_der && harmless(&spec, same_der));
        assert_eq!(
            decision.verdict,
            Verdict::Approve,
            "{base:?}: {} {}",
            decision.reason,
            decision.message
        );
    }
}

/// Each mutation of the catalogue, alone, on each approved CSR. Lists every failure.
#[test]
fn every_catalogued_mutation_of_an_approved_csr_is_refused_unless_harmless() {
    let mut failures = Vec::new();
    let mut tried = 0;
    for base in BASES {
        for mutation in catalogue() {
            let mut spec = Spec::base(base);
            mutation.apply(&mut spec);
            tried += 1;
            if let Err(e) = check(&spec, std::slice::from_ref(&mutation)) {
                failures.push(e);
            }
        }
    }
    assert!(tried > 300, "only {tried} mutations tried");
    assert!(
        failures.is_empty(),
        "{} of {tried} mutated CSRs approved:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(list).prop_map(str::to_string)
}

fn san() -> impl Strategy<Value = San> {
    prop_oneof![
        pick(&FOREIGN_IPS).prop_map(|ip| San::Ip(ip.parse().unwrap())),
        any::<[u8; 4]>().prop_map(|b| San::Ip(IpAddr::from(b))),
        any::<[u8; 16]>().prop_map(|b| San::Ip(IpAddr::from(b))),
        Just(San::Ip(OWNED_IP.parse().unwrap())),
        pick(&FOREIGN_DNS).prop_map(San::Dns),
        pick(&WILDCARDS).prop_map(San::Dns),
        pick(&OWNED_SPELLINGS).prop_map(San::Dns),
        "[ -~]{0,24}".prop_map(San::Dns),
        "[a-z0-9.-]{1,24}".prop_map(San::Dns),
        "[ -~]{0,24}".prop_map(San::Email),
        "[ -~]{0,24}".prop_map(San::Uri),
        "\\PC{0,12}".prop_map(San::Other),
    ]
}

fn extension() -> impl Strategy<Value = Ext> {
    prop_oneof![
        prop::sample::select(extensions()),
        // An unregistered OID with arbitrary content, critical or not.
        (
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..16),
            any::<bool>()
        )
            .prop_map(|(arc, der, critical)| Ext::Custom {
                oid: vec![1, 3, 6, 1, 4, 1, 99999, u64::from(arc)],
                der,
                critical,
            }),
    ]
}

fn usage_list() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(pick(&USAGES), 0..5)
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let cap = i64::from(DEFAULT_MAX_EXPIRATION_SECONDS);
    prop_oneof![
        pick(&OTHER_NODES).prop_map(Mutation::Cn),
        pick(&GARBAGE_CNS).prop_map(Mutation::Cn),
        "\\PC{0,40}".prop_map(Mutation::Cn),
        "system:node:[a-z0-9.-]{1,20}".prop_map(Mutation::Cn),
        Just(Mutation::CnRemoved),
        "\\PC{0,30}".prop_map(Mutation::CnAdded),
        pick(&ORGS).prop_map(Mutation::Org),
        "\\PC{0,20}".prop_map(Mutation::Org),
        Just(Mutation::OrgRemoved),
        pick(&ORGS).prop_map(Mutation::OrgAdded),
        san().prop_map(Mutation::SanAdded),
        san().prop_map(Mutation::SanAdded),
        san().prop_map(Mutation::SanAdded),
        extension().prop_map(Mutation::ExtensionAdded),
        extension().prop_map(Mutation::ExtensionAdded),
        pick(&USAGES).prop_map(Mutation::UsageAdded),
        any::<usize>().prop_map(Mutation::UsageRemoved),
        usage_list().prop_map(Mutation::UsagesReplaced),
        Just(Mutation::UsagesReordered),
        pick(&USERS).prop_map(Mutation::Username),
        "\\PC{0,40}".prop_map(Mutation::Username),
        any::<usize>().prop_map(Mutation::GroupRemoved),
        prop::collection::vec(pick(&GROUPS), 0..4).prop_map(Mutation::Groups),
        pick(&SIGNERS).prop_map(Mutation::Signer),
        "\\PC{0,30}".prop_map(Mutation::Signer),
        (cap + 1..=i64::MAX).prop_map(Mutation::Expiration),
        (600..=cap).prop_map(Mutation::Expiration),
        prop::sample::select(&KEYS[..]).prop_map(Mutation::Key),
        (0..BAD_FIXTURES.len()).prop_map(|i| Mutation::Raw(RawEdit::Fixture(i))),
        any::<usize>().prop_map(|b| Mutation::Raw(RawEdit::FlipDer(b))),
        any::<usize>().prop_map(|b| Mutation::Raw(RawEdit::FlipPem(b))),
    ]
}

/// Random combinations of one to three mutations, with random values, re-signed.
#[test]
fn random_mutations_of_approved_csrs_are_refused_unless_harmless() {
    // 256 cases take well under a second in a debug build; PROPTEST_CASES=N for a longer hunt.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256);
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 512,
        ..Config::default()
    };
    let strategy = (
        prop::sample::select(&BASES[..]),
        prop::collection::vec(mutation(), 1..=3),
    );
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |(base, mutations)| {
        let mut spec = Spec::base(base);
        for m in &mutations {
            m.apply(&mut spec);
        }
        check(&spec, &mutations).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
