//! The code paths the fuzz targets drive and the invariants they check. Shared, word for
//! word, by the cargo-fuzz targets in `fuzz/fuzz_targets/` and by
//! `tests/fuzz_regressions.rs`, which replays every saved crash input through it in
//! `cargo test`.
//!
//! Every check that can fail is named ([`Check`]). While a finding is being fixed, a fuzz
//! run can step past it with `CSR_FUZZ_SKIP=<name>[,<name>…]` to keep fuzzing the rest;
//! the regression test never skips anything.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use csr_approver::decision::{CsrFacts, Decision, Verdict, decide};
use csr_approver::inventory::{CsrState, Inventory, MachineInfo, NodeInfo, TypedAddress};
use csr_approver::policy::Policy;
use csr_approver::request::{RequestedExtension, parse_request};
use csr_approver::vocabulary::canonical_ip;
use csr_approver::vocabulary::is_dns1123_subdomain;
use csr_approver::vocabulary::{AddressValue, canonical_dns_name, inet_aton, normalize_dns_name};
use csr_approver::vocabulary::{CLIENT_SIGNER, NODE_USER_PREFIX, NODES_GROUP, SERVING_SIGNER};
use jiff::{SignedDuration, Timestamp};

/// Named invariants, so that a known finding can be stepped over while fuzzing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `Approve` implies the request parsed and its only CN is `system:node:<node>`.
    ApproveImpliesValid,
    /// A policy that parses re-serialises to YAML that parses again, to the same YAML.
    PolicyRoundtrip,
    /// Fields that read `auto` or a number (`client.maxPending`, `client.maxNewNodesPerHour`)
    /// serialise that way. Skipping it rewrites `Auto` / `{Fixed: n}` before the round trip,
    /// so the rest is still checked.
    AutoNumberSerialisation,
    /// `canonical_dns_name` is idempotent, and so is `normalize_dns_name` wherever its
    /// result no longer ends in a dot (it drops exactly one).
    DnsIdempotent,
    /// A valid DNS-1123 name is already normalised (canonical, unless refused).
    DnsValidIsNormal,
    /// `TypedAddress::new` of an address's own text gives the same address.
    AddressIdempotent,
    /// IPv4, IPv4-mapped IPv6 and long/short IPv6 forms compare equal once normalised.
    IpForms,
    /// Every text `inet_aton` reads as an IPv4 address (with or without one trailing dot)
    /// is refused as a DNS name.
    DisguisedAddresses,
    /// NAT64 (well-known and local-use), 6to4 and IPv4-compatible forms of an IPv4
    /// address denote it; an IPv6 address outside those prefixes denotes itself.
    IpEmbeddings,
}

impl Check {
    pub const ALL: [Check; 9] = [
        Check::ApproveImpliesValid,
        Check::PolicyRoundtrip,
        Check::AutoNumberSerialisation,
        Check::DnsIdempotent,
        Check::DnsValidIsNormal,
        Check::AddressIdempotent,
        Check::IpForms,
        Check::DisguisedAddresses,
        Check::IpEmbeddings,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::ApproveImpliesValid => "approve-implies-valid",
            Check::PolicyRoundtrip => "policy-roundtrip",
            Check::AutoNumberSerialisation => "auto-number-serialisation",
            Check::DnsIdempotent => "dns-idempotent",
            Check::DnsValidIsNormal => "dns-valid-is-normal",
            Check::AddressIdempotent => "address-idempotent",
            Check::IpForms => "ip-forms",
            Check::DisguisedAddresses => "disguised-addresses",
            Check::IpEmbeddings => "ip-embeddings",
        }
    }
}

/// Which checks run. The regression test uses [`Checks::all`]; fuzz targets use
/// [`Checks::from_env`].
#[derive(Debug, Clone, Default)]
pub struct Checks {
    skipped: Vec<Check>,
}

impl Checks {
    pub fn all() -> Checks {
        Checks::default()
    }

    /// Every check except those named in `CSR_FUZZ_SKIP` (comma-separated). Read once.
    pub fn from_env() -> &'static Checks {
        static CHECKS: OnceLock<Checks> = OnceLock::new();
        CHECKS.get_or_init(|| {
            let list = std::env::var("CSR_FUZZ_SKIP").unwrap_or_default();
            let mut skipped = Vec::new();
            for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                match Check::ALL.iter().find(|c| c.name() == word) {
                    Some(check) => skipped.push(*check),
                    None => panic!("CSR_FUZZ_SKIP: unknown check {word:?}"),
                }
            }
            if !skipped.is_empty() {
                eprintln!("csr-approver fuzz: skipping checks {skipped:?}");
            }
            Checks { skipped }
        })
    }

    pub fn on(&self, check: Check) -> bool {
        !self.skipped.contains(&check)
    }
}

// --- request_decide ----------------------------------------------------------------------

/// The first `CONTROL_LEN` bytes of a `request_decide` input choose the CSR object's other
/// fields (through `arbitrary`); the rest is `spec.request`. A payload that starts like DER
/// (`0x30`, a SEQUENCE) is wrapped in a `CERTIFICATE REQUEST` PEM block first, so the
/// fuzzer reaches the PKCS#10 parser directly; anything else is used as it is.
pub const CONTROL_LEN: usize = 32;

#[derive(Debug, Arbitrary)]
enum Signer {
    Client,
    Serving,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Requester {
    Bootstrapper,
    /// `system:node:worker-1`: the joining Machine's host (no Node yet).
    Worker1,
    /// `system:node:worker-2`: a registered Node.
    Worker2,
    Node(String),
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Groups {
    ForRequester,
    None,
    Custom(Vec<String>),
}

#[derive(Debug, Arbitrary)]
enum Usage {
    DigitalSignature,
    KeyEncipherment,
    ClientAuth,
    ServerAuth,
    Other(String),
}

#[derive(Debug, Arbitrary)]
enum Usages {
    ForSigner,
    Reversed,
    Custom(Vec<Usage>),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Scene {
    /// The built-in policy.
    Default,
    /// `deny: true`, kubeadm bootstrappers, and inventory entries (a name and a pattern).
    Inventory,
    /// Serving fences and Machine-only address sources.
    Fenced,
}

#[derive(Debug, Arbitrary)]
struct Control {
    signer: Signer,
    requester: Requester,
    groups: Groups,
    usages: Usages,
    expiration_seconds: Option<i64>,
    created_offset_seconds: Option<i32>,
    scene: Scene,
}

const BOOTSTRAPPER: &str =
    "system:serviceaccount:openshift-machine-config-operator:node-bootstrapper";

/// The instant every decision is taken at.
pub fn now() -> Timestamp {
    static NOW: OnceLock<Timestamp> = OnceLock::new();
    *NOW.get_or_init(|| "2026-11-23T12:00:00Z".parse().expect("valid timestamp"))
}

/// Built from the Machine's JSON form, as the controller reads it.
fn machine(
    name: &str,
    created_seconds_ago: i64,
    addresses: &[(&str, &str)],
    node_ref: Option<&str>,
) -> MachineInfo {
    let created = now() - SignedDuration::from_secs(created_seconds_ago);
    let addresses: Vec<serde_json::Value> = addresses
        .iter()
        .map(|(kind, address)| serde_json::json!({"type": kind, "address": address}))
        .collect();
    let mut status = serde_json::json!({ "addresses": addresses });
    if let Some(node) = node_ref {
        status["nodeRef"] = serde_json::json!({ "kind": "Node", "name": node });
    }
    let object = serde_json::json!({
        "apiVersion": "machine.openshift.io/v1beta1",
        "kind": "Machine",
        "metadata": {
            "name": name,
            "namespace": "openshift-machine-api",
            "creationTimestamp": created.to_string(),
        },
        "status": status,
    });
    csr_approver::facts::machine_info(&object).expect("a well-formed Machine")
}

fn node(name: &str, addresses: &[(&str, &str)]) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        addresses: addresses
            .iter()
            .map(|(k, v)| TypedAddress::new(k, v))
            .collect(),
        control_plane: false,
    }
}

/// worker-1 is joining (Machine, no Node); worker-2 is registered (linked Machine and
/// Node); master-0 is a Node without a Machine.
pub fn inventory() -> &'static Inventory {
    static INVENTORY: OnceLock<Inventory> = OnceLock::new();
    INVENTORY.get_or_init(|| {
        Inventory::new(
            [
                node(
                    "worker-2",
                    &[
                        ("InternalIP", "10.0.0.12"),
                        ("InternalIP", "fd00::12"),
                        ("Hostname", "worker-2"),
                    ],
                ),
                node(
                    "master-0",
                    &[("InternalIP", "10.0.0.1"), ("Hostname", "master-0")],
                ),
            ],
            [
                machine(
                    "worker-1",
                    300,
                    &[("InternalDNS", "worker-1"), ("InternalIP", "10.0.0.11")],
                    None,
                ),
                machine(
                    "worker-2",
                    86_400,
                    &[
                        ("InternalDNS", "worker-2"),
                        ("InternalDNS", "worker-2.example.com"),
                        ("InternalIP", "10.0.0.12"),
                    ],
                    Some("worker-2"),
                ),
            ],
            [],
        )
    })
}

const INVENTORY_POLICY: &str = r"
deny: true
client:
  bootstrappers:
    - username: system:serviceaccount:openshift-machine-config-operator:node-bootstrapper
    - group: system:bootstrappers
inventory:
  - name: worker-3
    addresses: [10.0.0.13, worker-3.example.com]
  - namePattern: '^bm-[0-9]+$'
    ipRanges: [10.1.0.0/16]
";

const FENCED_POLICY: &str = r"
serving:
  addressSources: [Machine]
  allowedIPRanges: [10.0.0.0/24, fd00::/8]
  dnsNamePatterns: ['^worker-[0-9]+(\.example\.com)?$']
";

fn policy(scene: Scene) -> &'static Policy {
    static POLICIES: OnceLock<[Policy; 3]> = OnceLock::new();
    let policies = POLICIES.get_or_init(|| {
        let parse = |yaml: &str| Policy::from_yaml(yaml).expect("fuzz policy is valid");
        [
            Policy::default(),
            parse(INVENTORY_POLICY),
            parse(FENCED_POLICY),
        ]
    });
    &policies[scene as usize]
}

/// The nodes a decision may approve in `scene`, whatever the request.
fn vouched_for(scene: Scene, node: &str) -> bool {
    match node {
        "worker-1" | "worker-2" => true,
        "worker-3" => matches!(scene, Scene::Inventory),
        _ => {
            matches!(scene, Scene::Inventory)
                && node
                    .strip_prefix("bm-")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }
    }
}

/// Builds the CSR's facts from a fuzz input.
pub fn csr_facts(data: &[u8]) -> (CsrFacts, Scene) {
    let split = data.len().min(CONTROL_LEN);
    let (control, payload) = data.split_at(split);
    let control = Control::arbitrary(&mut Unstructured::new(control)).unwrap_or(Control {
        signer: Signer::Client,
        requester: Requester::Bootstrapper,
        groups: Groups::ForRequester,
        usages: Usages::ForSigner,
        expiration_seconds: None,
        created_offset_seconds: None,
        scene: Scene::Default,
    });
    let request = if payload.first() == Some(&0x30) {
        pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", payload.to_vec())).into_bytes()
    } else {
        payload.to_vec()
    };
    let signer_name = match &control.signer {
        Signer::Client => CLIENT_SIGNER.to_string(),
        Signer::Serving => SERVING_SIGNER.to_string(),
        Signer::Other(s) => s.clone(),
    };
    let username = match &control.requester {
        Requester::Bootstrapper => BOOTSTRAPPER.to_string(),
        Requester::Worker1 => format!("{NODE_USER_PREFIX}worker-1"),
        Requester::Worker2 => format!("{NODE_USER_PREFIX}worker-2"),
        Requester::Node(n) => format!("{NODE_USER_PREFIX}{n}"),
        Requester::Other(u) => u.clone(),
    };
    let groups = match control.groups {
        Groups::ForRequester if matches!(control.requester, Requester::Bootstrapper) => vec![
            "system:serviceaccounts".to_string(),
            "system:serviceaccounts:openshift-machine-config-operator".to_string(),
            "system:authenticated".to_string(),
        ],
        Groups::ForRequester => vec![NODES_GROUP.to_string(), "system:authenticated".to_string()],
        Groups::None => Vec::new(),
        Groups::Custom(groups) => groups,
    };
    let for_signer = || -> Vec<String> {
        let auth = if matches!(control.signer, Signer::Serving) {
            "server auth"
        } else {
            "client auth"
        };
        vec!["digital signature".to_string(), auth.to_string()]
    };
    let usages = match control.usages {
        Usages::ForSigner => for_signer(),
        Usages::Reversed => for_signer().into_iter().rev().collect(),
        Usages::Custom(list) => list
            .into_iter()
            .map(|u| match u {
                Usage::DigitalSignature => "digital signature".to_string(),
                Usage::KeyEncipherment => "key encipherment".to_string(),
                Usage::ClientAuth => "client auth".to_string(),
                Usage::ServerAuth => "server auth".to_string(),
                Usage::Other(s) => s,
            })
            .collect(),
    };
    let created = now()
        .checked_add(SignedDuration::from_secs(i64::from(
            control.created_offset_seconds.unwrap_or(0),
        )))
        .ok();
    let facts = CsrFacts {
        name: "csr-fuzz".to_string(),
        uid: None,
        signer_name,
        username,
        groups,
        usages,
        expiration_seconds: control.expiration_seconds,
        created,
        state: CsrState::Pending,
        approved_at: None,
        request: Arc::new(parse_request(&request)),
    };
    (facts, control.scene)
}

/// Parses and decides one fuzz input; panics if an invariant breaks.
pub fn request_decide(data: &[u8], checks: &Checks) -> Decision {
    let (facts, scene) = csr_facts(data);
    let parsed = facts.request.as_ref();
    let decision = decide(&facts, inventory(), policy(scene), now());
    if decision.verdict == Verdict::Approve && checks.on(Check::ApproveImpliesValid) {
        let request = match parsed {
            Ok(request) => request,
            Err(e) => panic!("approved ({decision:?}) a request that does not parse: {e}"),
        };
        let node = decision.node.clone().unwrap_or_default();
        assert!(
            request.common_names == [format!("{NODE_USER_PREFIX}{node}")],
            "approved for node {node:?} a request with CNs {:?}: {decision:?}",
            request.common_names
        );
        assert!(
            is_dns1123_subdomain(&node),
            "approved invalid node name {node:?}"
        );
        assert!(
            request.organizations == [NODES_GROUP],
            "approved a request with O {:?}",
            request.organizations
        );
        assert!(
            vouched_for(scene, &node),
            "approved node {node:?}, which nothing in the {scene:?} scene vouches for: {decision:?}"
        );
        // Only the extensions a kubelet asks for, agreeing with spec.usages.
        let purpose = if facts.signer_name == SERVING_SIGNER {
            "server auth"
        } else {
            "client auth"
        };
        let listed = |usage: &str| facts.usages.iter().any(|u| u == usage);
        for extension in &request.extensions {
            let allowed = match extension {
                RequestedExtension::KeyUsage(bits) => bits.iter().all(|bit| {
                    ["digital signature", "key encipherment"].contains(&bit.as_str()) && listed(bit)
                }),
                RequestedExtension::ExtendedKeyUsage(purposes) => {
                    purposes.iter().all(|p| p == purpose && listed(p))
                }
                RequestedExtension::Other { .. } => false,
            };
            assert!(
                allowed,
                "approved a request asking for {extension}: {decision:?}"
            );
        }
        if facts.signer_name == SERVING_SIGNER {
            for name in &request.dns_names {
                assert!(
                    canonical_dns_name(name).is_some(),
                    "serving CSR approved with DNS SAN {name:?}, not a canonical name"
                );
            }
            assert_eq!(
                facts.username,
                format!("{NODE_USER_PREFIX}{node}"),
                "serving CSR approved for another requester"
            );
            assert!(
                request.emails.is_empty()
                    && request.uris.is_empty()
                    && request.other_sans.is_empty(),
                "serving CSR approved with non-DNS/IP SANs: {request:?}"
            );
        } else {
            assert!(
                !request.has_any_san(),
                "client CSR approved with SANs: {request:?}"
            );
        }
    }
    decision
}

// --- policy_yaml -------------------------------------------------------------------------

/// Parses arbitrary UTF-8 as a policy; a policy that parses must survive serialisation.
pub fn policy_yaml(data: &[u8], checks: &Checks) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::from_yaml(text) else {
        return;
    };
    if !checks.on(Check::PolicyRoundtrip) {
        return;
    }
    let serialise = |policy: &Policy| -> String {
        let yaml = if checks.on(Check::AutoNumberSerialisation) {
            serde_saphyr::to_string(policy)
        } else {
            serde_saphyr::to_string(&with_auto_numbers_as_parsed(policy))
        };
        match yaml {
            Ok(yaml) => yaml,
            Err(e) => panic!("a parsed policy does not serialise: {e}\ninput: {text:?}"),
        }
    };
    let yaml = serialise(&policy);
    let again = match Policy::from_yaml(&yaml) {
        Ok(again) => again,
        Err(e) => panic!(
            "the re-serialised policy does not parse: {e}\ninput: {text:?}\nre-serialised:\n{yaml}"
        ),
    };
    assert_eq!(
        yaml,
        serialise(&again),
        "serialising a re-parsed policy changes it\ninput: {text:?}"
    );
}

/// The policy as a JSON value with every auto-or-number field written the way the parser
/// reads it (`auto` or a number): steps over the `auto-number-serialisation` finding only.
fn with_auto_numbers_as_parsed(policy: &Policy) -> serde_json::Value {
    fn fix(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) if s == "Auto" => *s = "auto".to_string(),
            serde_json::Value::Object(map) => {
                if map.len() == 1
                    && let Some(n) = map.get("Fixed").filter(|n| n.is_number()).cloned()
                {
                    *value = n;
                    return;
                }
                map.values_mut().for_each(fix);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(fix),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(policy).expect("a policy converts to JSON");
    if let Some(client) = value.get_mut("client") {
        fix(client);
    }
    value
}

// --- normalize ---------------------------------------------------------------------------

#[derive(Debug, Arbitrary)]
struct NormalizeInput {
    v4: [u8; 4],
    v6: [u8; 16],
    text: String,
}

/// Every spelling of an IPv6 address `parse` must accept: short, long, and uppercase.
fn ipv6_spellings(ip: Ipv6Addr) -> Vec<String> {
    let long = ip
        .segments()
        .iter()
        .map(|s| format!("{s:x}"))
        .collect::<Vec<_>>()
        .join(":");
    let padded = ip
        .segments()
        .iter()
        .map(|s| format!("{s:04X}"))
        .collect::<Vec<_>>()
        .join(":");
    vec![ip.to_string(), long, padded]
}

/// Name and address normalisation: never panics, idempotent, and equal across IP forms.
pub fn normalize(data: &[u8], checks: &Checks) {
    let Ok(input) = NormalizeInput::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let text = input.text.as_str();

    let once = normalize_dns_name(text);
    let canonical = canonical_dns_name(text);
    if checks.on(Check::DnsIdempotent) {
        if !once.ends_with('.') {
            assert_eq!(
                normalize_dns_name(&once),
                once,
                "normalize_dns_name is not idempotent on {text:?}"
            );
        }
        if let Some(name) = &canonical {
            assert_eq!(
                canonical_dns_name(name).as_ref(),
                Some(name),
                "canonical_dns_name is not idempotent on {text:?}"
            );
            assert!(is_dns1123_subdomain(name), "{name:?} from {text:?}");
        }
    }
    let valid = is_dns1123_subdomain(text);
    let _ = is_dns1123_subdomain(&once);
    if valid && checks.on(Check::DnsValidIsNormal) {
        assert_eq!(
            once, text,
            "valid DNS-1123 name {text:?} changes when normalised"
        );
        // canonical_dns_name may refuse a valid name (an all-numeric last label reads as
        // an IP), but never changes one.
        if let Some(name) = &canonical {
            assert_eq!(name, text, "valid DNS-1123 name {text:?} canonicalised");
        }
    }

    for kind in ["InternalIP", "Hostname"] {
        let address = TypedAddress::new(kind, text);
        if checks.on(Check::AddressIdempotent) {
            // An invalid address keeps its raw text; the others are read back from theirs.
            let written = match &address.value {
                AddressValue::Ip(ip) => ip.to_string(),
                AddressValue::Dns(name) => name.clone(),
                other => format!("{other:?}"),
            };
            let again = match &address.value {
                AddressValue::Ip(_) | AddressValue::Dns(_) => TypedAddress::new(kind, &written),
                _ => TypedAddress::new(kind, text),
            };
            assert_eq!(
                again, address,
                "TypedAddress::new is not idempotent on {text:?} (written back as {written:?})"
            );
        }
        if let Ok(ip) = text.parse::<IpAddr>()
            && checks.on(Check::IpForms)
        {
            let canonical = canonical_ip(ip);
            assert_eq!(canonical_ip(canonical), canonical, "canonical_ip({ip})");
            assert_eq!(address.value, AddressValue::Ip(canonical), "{text:?}");
        }
    }

    if checks.on(Check::DisguisedAddresses) {
        for form in [text, text.strip_suffix('.').unwrap_or(text)] {
            if let Some(ip) = inet_aton(form) {
                assert_eq!(
                    canonical_dns_name(text),
                    None,
                    "{text:?} reads as {ip} yet is accepted as a DNS name"
                );
            }
        }
    }

    if checks.on(Check::IpEmbeddings) {
        let v4 = Ipv4Addr::from(input.v4);
        let [a, b, c, d] = v4.octets();
        let plain = AddressValue::Ip(IpAddr::V4(v4));
        let high = u16::from_be_bytes([a, b]);
        let low = u16::from_be_bytes([c, d]);
        let [x, y, ..] = input.v6;
        let free = u16::from_be_bytes([x, y]);
        let mut forms = vec![
            Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, high, low),
            Ipv6Addr::new(0x64, 0xff9b, 1, free, free, free, high, low),
            Ipv6Addr::new(0x2002, high, low, free, 0, free, 0, 1),
        ];
        if u32::from(v4) > 1 {
            forms.push(Ipv6Addr::new(0, 0, 0, 0, 0, 0, high, low));
        }
        for form in forms {
            let value = TypedAddress::new("InternalIP", &form.to_string()).value;
            assert!(value.is_alias_of(&plain), "{form} does not denote {v4}");
            assert_ne!(value, plain, "{form} is not kept as written");
        }
        let v6 = Ipv6Addr::from(input.v6);
        let segments = v6.segments();
        let embeds = matches!(
            segments,
            [0x64, 0xff9b, 0, 0, 0, 0, _, _]
                | [0x64, 0xff9b, 1, ..]
                | [0x2002, ..]
                | [0, 0, 0, 0, 0, _, _, _]
        );
        if !embeds {
            let value = AddressValue::Ip(IpAddr::V6(v6));
            assert_eq!(*value.denoted(), value, "{v6} denotes another address");
        }
    }

    if checks.on(Check::IpForms) {
        let v4 = Ipv4Addr::from(input.v4);
        let mapped = v4.to_ipv6_mapped();
        assert_eq!(canonical_ip(IpAddr::V6(mapped)), IpAddr::V4(v4), "{mapped}");
        assert_eq!(canonical_ip(IpAddr::V4(v4)), IpAddr::V4(v4), "{v4}");
        let expected = AddressValue::Ip(IpAddr::V4(v4));
        let mut spellings = vec![v4.to_string(), format!("::ffff:{v4}")];
        spellings.extend(ipv6_spellings(mapped));
        for spelling in &spellings {
            let value = TypedAddress::new("InternalIP", spelling).value;
            assert_eq!(value, expected, "{spelling:?} is not {v4}");
        }

        let v6 = Ipv6Addr::from(input.v6);
        let canonical = canonical_ip(IpAddr::V6(v6));
        assert_eq!(canonical_ip(canonical), canonical, "canonical_ip({v6})");
        for spelling in ipv6_spellings(v6) {
            let value = TypedAddress::new("InternalIP", &spelling).value;
            assert_eq!(
                value,
                AddressValue::Ip(canonical),
                "{spelling:?} is not {v6}"
            );
        }
    }
}
