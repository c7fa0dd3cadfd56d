//! Builders for decision tests: real PKCS#10 requests (rcgen, or openssl fixtures in
//! tests/fixtures/requests), CSR facts, Machines, Nodes and policies.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use csr_approver::decision::{CsrFacts, Decision, decide};
use csr_approver::evidence::{KubeletCertificate, NodeLease, Observed};
use csr_approver::identity::{HostGeneration, Minted, NodeIdentity};
use csr_approver::inventory::{
    CsrState, CsrSummary, Inventory, MachineInfo, NodeInfo, TypedAddress,
};
use csr_approver::policy::Policy;
use csr_approver::request::parse_request;
use csr_approver::vocabulary::AddressValue;
use csr_approver::vocabulary::{CLIENT_SIGNER, SERVING_SIGNER};
use jiff::{SignedDuration, Timestamp};
use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

pub const BOOTSTRAPPER: &str =
    "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper";
pub const BOOTSTRAPPER_GROUPS: [&str; 3] = [
    "system:serviceaccounts",
    "system:serviceaccounts:openshift-machine-config-operator",
    "system:authenticated",
];
pub const CLIENT_USAGES: [&str; 2] = ["digital signature", "client auth"];
pub const SERVING_USAGES: [&str; 2] = ["digital signature", "server auth"];

pub fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

pub fn fixture_bytes(path: &str) -> Vec<u8> {
    std::fs::read(fixture(path)).expect("fixture exists")
}

/// The instant every test evaluates at.
pub fn now() -> Timestamp {
    "2026-11-23T12:00:00Z".parse().expect("valid timestamp")
}

pub fn ago(seconds: i64) -> Timestamp {
    now() - SignedDuration::from_secs(seconds)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    P256,
    P384,
    Ed25519,
    Rsa2048,
    Rsa3072,
}

fn key_pair(key: Key) -> &'static KeyPair {
    static KEYS: [OnceLock<KeyPair>; 5] = [const { OnceLock::new() }; 5];
    let index = key as usize;
    KEYS[index].get_or_init(|| match key {
        Key::P256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("P-256"),
        Key::P384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384"),
        Key::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("Ed25519"),
        Key::Rsa2048 | Key::Rsa3072 => {
            let file = if key == Key::Rsa2048 {
                "keys/rsa2048.pem"
            } else {
                "keys/rsa3072.pem"
            };
            let pem = String::from_utf8(fixture_bytes(file)).expect("utf-8 key");
            KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).expect("RSA key")
        }
    })
}

/// A PKCS#10 request to build.
#[derive(Debug, Clone)]
pub struct Request {
    pub cn: Option<String>,
    pub org: Option<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    pub key: Key,
    /// Extensions beyond the SANs, as rcgen writes them into the extensionRequest.
    pub key_usages: Vec<KeyUsagePurpose>,
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    pub is_ca: IsCa,
    pub custom_extensions: Vec<CustomExtension>,
}

impl Request {
    pub fn node(name: &str) -> Request {
        Request {
            cn: Some(format!("system:node:{name}")),
            org: Some("system:nodes".to_string()),
            dns: Vec::new(),
            ips: Vec::new(),
            emails: Vec::new(),
            uris: Vec::new(),
            key: Key::P256,
            key_usages: Vec::new(),
            extended_key_usages: Vec::new(),
            is_ca: IsCa::NoCa,
            custom_extensions: Vec::new(),
        }
    }

    pub fn key_usage(mut self, usage: KeyUsagePurpose) -> Request {
        self.key_usages.push(usage);
        self
    }

    pub fn extended_key_usage(mut self, usage: ExtendedKeyUsagePurpose) -> Request {
        self.extended_key_usages.push(usage);
        self
    }

    /// A basicConstraints extension (`IsCa::ExplicitNoCa` writes CA:FALSE).
    pub fn basic_constraints(mut self, is_ca: IsCa) -> Request {
        self.is_ca = is_ca;
        self
    }

    /// Any extension: its OID, DER content and criticality.
    pub fn extension(mut self, oid: &[u64], der: &[u8], critical: bool) -> Request {
        let mut extension = CustomExtension::from_oid_content(oid, der.to_vec());
        extension.set_criticality(critical);
        self.custom_extensions.push(extension);
        self
    }

    pub fn key(mut self, key: Key) -> Request {
        self.key = key;
        self
    }

    pub fn cn(mut self, cn: &str) -> Request {
        self.cn = Some(cn.to_string());
        self
    }

    pub fn org(mut self, org: Option<&str>) -> Request {
        self.org = org.map(str::to_string);
        self
    }

    pub fn dns(mut self, name: &str) -> Request {
        self.dns.push(name.to_string());
        self
    }

    pub fn ip(mut self, ip: &str) -> Request {
        self.ips.push(ip.parse().expect("test IP"));
        self
    }

    pub fn email(mut self, email: &str) -> Request {
        self.emails.push(email.to_string());
        self
    }

    pub fn uri(mut self, uri: &str) -> Request {
        self.uris.push(uri.to_string());
        self
    }

    pub fn pem(&self) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        if let Some(org) = &self.org {
            dn.push(DnType::OrganizationName, org.as_str());
        }
        if let Some(cn) = &self.cn {
            dn.push(DnType::CommonName, cn.as_str());
        }
        params.distinguished_name = dn;
        let mut sans = Vec::new();
        for d in &self.dns {
            sans.push(SanType::DnsName(d.clone().try_into().expect("DNS SAN")));
        }
        for ip in &self.ips {
            sans.push(SanType::IpAddress(*ip));
        }
        for e in &self.emails {
            sans.push(SanType::Rfc822Name(
                e.clone().try_into().expect("email SAN"),
            ));
        }
        for u in &self.uris {
            sans.push(SanType::URI(u.clone().try_into().expect("URI SAN")));
        }
        params.subject_alt_names = sans;
        params.key_usages = self.key_usages.clone();
        params.extended_key_usages = self.extended_key_usages.clone();
        params.is_ca = self.is_ca;
        params.custom_extensions = self.custom_extensions.clone();
        let csr = params
            .serialize_request(key_pair(self.key))
            .expect("rcgen serializes the CSR");
        csr.pem().expect("PEM").into_bytes()
    }
}

/// A CSR object's facts; defaults to a pending client CSR from the OpenShift bootstrapper.
#[derive(Debug, Clone)]
pub struct Csr(pub CsrFacts);

impl Csr {
    pub fn client(request: &Request) -> Csr {
        Csr(CsrFacts {
            name: "csr-client".to_string(),
            uid: Some("uid-csr-client".to_string()),
            signer_name: CLIENT_SIGNER.to_string(),
            username: BOOTSTRAPPER.to_string(),
            groups: BOOTSTRAPPER_GROUPS.iter().map(|g| g.to_string()).collect(),
            usages: CLIENT_USAGES.iter().map(|u| u.to_string()).collect(),
            expiration_seconds: None,
            created: Some(now()),
            state: CsrState::Pending,
            approved_at: None,
            request: Arc::new(parse_request(&request.pem())),
        })
    }

    /// A serving CSR from `system:node:<node>`.
    pub fn serving(node: &str, request: &Request) -> Csr {
        Csr(CsrFacts {
            name: "csr-serving".to_string(),
            uid: Some("uid-csr-serving".to_string()),
            signer_name: SERVING_SIGNER.to_string(),
            username: format!("system:node:{node}"),
            groups: vec![
                "system:nodes".to_string(),
                "system:authenticated".to_string(),
            ],
            usages: SERVING_USAGES.iter().map(|u| u.to_string()).collect(),
            expiration_seconds: None,
            created: Some(now()),
            state: CsrState::Pending,
            approved_at: None,
            request: Arc::new(parse_request(&request.pem())),
        })
    }

    /// A client renewal from `system:node:<node>`.
    pub fn renewal(node: &str, request: &Request) -> Csr {
        let mut csr = Csr::client(request);
        csr.0.username = format!("system:node:{node}");
        csr.0.groups = vec![
            "system:nodes".to_string(),
            "system:authenticated".to_string(),
        ];
        csr
    }

    pub fn raw_request(mut self, bytes: Vec<u8>) -> Csr {
        self.0.request = Arc::new(parse_request(&bytes));
        self
    }

    pub fn name(mut self, name: &str) -> Csr {
        self.0.name = name.to_string();
        self.0.uid = Some(format!("uid-{name}"));
        self
    }

    pub fn uid(mut self, uid: Option<&str>) -> Csr {
        self.0.uid = uid.map(str::to_string);
        self
    }

    pub fn user(mut self, username: &str, groups: &[&str]) -> Csr {
        self.0.username = username.to_string();
        self.0.groups = groups.iter().map(|g| g.to_string()).collect();
        self
    }

    pub fn usages(mut self, usages: &[&str]) -> Csr {
        self.0.usages = usages.iter().map(|u| u.to_string()).collect();
        self
    }

    pub fn signer(mut self, signer: &str) -> Csr {
        self.0.signer_name = signer.to_string();
        self
    }

    pub fn state(mut self, state: CsrState) -> Csr {
        self.0.state = state;
        self
    }

    pub fn created(mut self, at: Timestamp) -> Csr {
        self.0.created = Some(at);
        self
    }

    pub fn expiration(mut self, seconds: i64) -> Csr {
        self.0.expiration_seconds = Some(seconds);
        self
    }
}

pub fn machine(name: &str, created: Timestamp, addresses: &[(&str, &str)]) -> MachineInfo {
    MachineInfo {
        api_group: "machine.openshift.io".into(),
        namespace: "openshift-machine-api".into(),
        name: name.into(),
        created: Some(created),
        addresses: addresses
            .iter()
            .map(|(k, v)| TypedAddress::new(k, v))
            .collect(),
        node_ref: None,
        deleting: false,
    }
}

pub fn node(name: &str, addresses: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        addresses: addresses
            .iter()
            .map(|(k, v)| TypedAddress::new(k, v))
            .collect(),
        control_plane: false,
    }
}

/// `node` labelled a control-plane node by its installer.
pub fn control_plane(mut node: NodeInfo) -> NodeInfo {
    node.control_plane = true;
    node
}

pub fn summary(
    name: &str,
    signer: &str,
    node: &str,
    state: CsrState,
    created: Timestamp,
) -> CsrSummary {
    CsrSummary {
        name: name.into(),
        signer: signer.to_string().into(),
        created: Some(created),
        state,
        node_name: Some(node.to_string()),
        requester: if signer == CLIENT_SIGNER {
            BOOTSTRAPPER.to_string()
        } else {
            format!("system:node:{node}")
        },
        groups: if signer == CLIENT_SIGNER {
            BOOTSTRAPPER_GROUPS
                .iter()
                .map(|g| g.to_string().into())
                .collect()
        } else {
            vec!["system:nodes".into()]
        },
        approved_at: None,
    }
}

/// Everything but the CSR: cluster objects and the policy.
#[derive(Debug, Clone, Default)]
pub struct World {
    pub nodes: Vec<NodeInfo>,
    pub machines: Vec<MachineInfo>,
    pub csrs: Vec<CsrSummary>,
    pub policy: Policy,
    /// Evidence read on demand: Leases and kubelet certificates, by node.
    pub leases: Vec<(String, Observed<NodeLease>)>,
    pub kubelet_certificates: Vec<(String, Observed<KubeletCertificate>)>,
    /// The durable record of identities minted (`NodeIdentity`), one per node.
    pub identities: Vec<NodeIdentity>,
}

impl World {
    pub fn new() -> World {
        World::default()
    }

    pub fn policy_yaml(mut self, yaml: &str) -> World {
        self.policy = Policy::from_yaml(yaml).expect("test policy is valid");
        self
    }

    pub fn node(mut self, node: NodeInfo) -> World {
        self.nodes.push(node);
        self
    }

    pub fn machine(mut self, machine: MachineInfo) -> World {
        self.machines.push(machine);
        self
    }

    pub fn csr(mut self, csr: CsrSummary) -> World {
        self.csrs.push(csr);
        self
    }

    /// The Lease of `node` as read at `now()`; `renewed` `None` = no renewTime.
    pub fn lease(mut self, node: &str, renewed: Option<Timestamp>) -> World {
        self.leases.push((
            node.to_string(),
            Observed {
                at: now(),
                outcome: Ok(NodeLease { renewed }),
            },
        ));
        self
    }

    /// A Lease read that failed (or read too long ago, with `at`).
    pub fn lease_reading(mut self, node: &str, reading: Observed<NodeLease>) -> World {
        self.leases.push((node.to_string(), reading));
        self
    }

    /// The serving certificate `node`'s kubelet presented at `now()`, with these SANs.
    pub fn kubelet_certificate(mut self, node: &str, sans: &[&str]) -> World {
        let reading = Observed {
            at: now(),
            outcome: Ok(KubeletCertificate {
                endpoint: "10.0.0.11:10250".to_string(),
                serial: "0a:0b".to_string(),
                not_after: now() + SignedDuration::from_hours(24),
                addresses: sans.iter().map(|s| AddressValue::parse(s)).collect(),
            }),
        };
        self.kubelet_certificates.push((node.to_string(), reading));
        self
    }

    pub fn kubelet_certificate_reading(
        mut self,
        node: &str,
        reading: Observed<KubeletCertificate>,
    ) -> World {
        self.kubelet_certificates.push((node.to_string(), reading));
        self
    }

    /// One more identity in `node`'s record: minted by `csr` at `at` for `generation`.
    pub fn minted(
        mut self,
        node: &str,
        csr: &str,
        reason: &str,
        at: Timestamp,
        generation: HostGeneration,
    ) -> World {
        let minted = Minted {
            csr: csr.to_string(),
            csr_uid: Some(format!("uid-{csr}")),
            reason: reason.to_string(),
            requester: BOOTSTRAPPER.to_string(),
            at,
            host_generation: generation.key.clone(),
        };
        match self.identities.iter_mut().find(|r| r.spec.node == node) {
            Some(record) => {
                if let Some(next) = record.with_minted(generation, minted) {
                    *record = next;
                }
            }
            None => self
                .identities
                .push(NodeIdentity::first(generation, minted, node)),
        }
        self
    }

    /// `address` in `node`'s record as last vouched for by independent evidence at `at`
    /// (`spec.servingAddresses`), the record created if `node` has none.
    pub fn vouched(mut self, node: &str, address: &str, at: Timestamp) -> World {
        let address = [AddressValue::parse(address)];
        let index = match self.identities.iter().position(|r| r.spec.node == node) {
            Some(index) => index,
            None => {
                self.identities.push(NodeIdentity::empty(node));
                self.identities.len() - 1
            }
        };
        if let Some(next) = self.identities[index].with_vouched(&address, at) {
            self.identities[index] = next;
        }
        self
    }

    pub fn inventory(&self) -> Inventory {
        let mut inventory = Inventory::new(
            self.nodes.iter().cloned(),
            self.machines.iter().cloned(),
            self.csrs.iter().cloned(),
        );
        inventory.replace_identities(self.identities.iter().cloned());
        for (node, reading) in &self.leases {
            inventory
                .observations_mut()
                .record_lease(node, reading.clone());
        }
        for (node, reading) in &self.kubelet_certificates {
            inventory
                .observations_mut()
                .record_kubelet_certificate(node, reading.clone());
        }
        inventory
    }

    pub fn decide(&self, csr: &Csr) -> Decision {
        decide(&csr.0, &self.inventory(), &self.policy, now())
    }
}

/// The standard new-worker scene: Machine worker-1 created 5 minutes ago, unlinked.
pub fn joining_world() -> World {
    World::new().machine(machine(
        "worker-1",
        ago(300),
        &[("InternalDNS", "worker-1"), ("InternalIP", "10.0.0.11")],
    ))
}

/// Worker-1 registered: its Machine is linked and its Node carries its addresses.
pub fn registered_world() -> World {
    let mut m = machine(
        "worker-1",
        ago(600),
        &[
            ("InternalDNS", "worker-1"),
            ("InternalDNS", "worker-1.example.com"),
            ("InternalIP", "10.0.0.11"),
        ],
    );
    m.node_ref = Some("worker-1".to_string());
    World::new().machine(m).node(node(
        "worker-1",
        &[("InternalIP", "10.0.0.11"), ("Hostname", "worker-1")],
    ))
}

/// Asserts verdict and reason together, showing the message on failure.
#[macro_export]
macro_rules! assert_decision {
    ($decision:expr, $verdict:pat, $reason:expr) => {{
        let d = $decision;
        assert!(
            matches!(d.verdict, $verdict) && d.reason == $reason,
            "expected {} / {:?}, got {:?} / {:?}: {}",
            stringify!($verdict),
            $reason,
            d.verdict,
            d.reason,
            d.message
        );
        d
    }};
}

/// One DER element at the start of `der`: (header length, whole element length).
fn der_element(der: &[u8]) -> (usize, usize) {
    let first = der[1] as usize;
    if first < 0x80 {
        return (2, 2 + first);
    }
    let count = first & 0x7f;
    let len = der[2..2 + count]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | *b as usize);
    (2 + count, 2 + count + len)
}

fn der_sequence(content: &[u8]) -> Vec<u8> {
    let mut out = vec![0x30];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// Re-labels a signed request's signature algorithm (outside the signed part, so the
/// signature itself is untouched): how an attacker dresses a legacy signature in an OID a
/// deny-list does not know. `algorithm` is the DER of the new AlgorithmIdentifier.
pub fn relabel_signature_algorithm(pem_bytes: &[u8], algorithm: &[u8]) -> Vec<u8> {
    let block = pem::parse(pem_bytes).expect("valid PEM");
    let der = block.contents();
    let (header, _) = der_element(der);
    let body = &der[header..];
    let (_, info_len) = der_element(body);
    let (_, alg_len) = der_element(&body[info_len..]);
    let mut content = body[..info_len].to_vec();
    content.extend_from_slice(algorithm);
    content.extend_from_slice(&body[info_len + alg_len..]);
    pem::encode(&pem::Pem::new(block.tag(), der_sequence(&content))).into_bytes()
}

/// AlgorithmIdentifier DER: sha1WithRSA under its OIW OID 1.3.14.3.2.29, NULL parameters.
pub const OIW_SHA1_WITH_RSA: [u8; 11] = [
    0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1d, 0x05, 0x00,
];
/// AlgorithmIdentifier DER: md5WithRSAEncryption 1.2.840.113549.1.1.4, NULL parameters.
pub const MD5_WITH_RSA: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04, 0x05, 0x00,
];
/// AlgorithmIdentifier DER: sha256WithRSAEncryption 1.2.840.113549.1.1.11, NULL parameters.
pub const SHA256_WITH_RSA: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
/// AlgorithmIdentifier DER: ecdsa-with-SHA256 1.2.840.10045.4.3.2.
pub const ECDSA_WITH_SHA256: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
