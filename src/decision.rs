//! The security policy, top to bottom: `decide` turns the facts about one CSR, what the
//! cluster knows, and the policy into a verdict with a reason and a message that names the
//! field and value that decided it. Pure: no I/O; the clock is an argument.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use crate::inventory::{AddressValue, CsrState, Inventory, MachineInfo, normalize_dns_name};
use crate::policy::{AddressSource, KeyType, Policy, is_dns1123_subdomain};
use crate::request::{KeyAlgorithm, ParsedRequest, RequestError, parse_request};

pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
pub const NODE_USER_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";

/// A Machine may be created slightly after the CSR its host sends (clock skew between the
/// machine controller and the apiserver); no more than this.
pub const MACHINE_CREATION_SKEW: Duration = Duration::from_secs(10);
/// The window the flood guard counts pending CSRs in.
pub const FLOOD_WINDOW: Duration = Duration::from_secs(3600);

/// Requeue after a transient `Wait`; watches on Nodes and Machines usually come first.
pub const RETRY_TRANSIENT: Duration = Duration::from_secs(30);
/// Requeue after a definitive refusal that is left pending (`deny: false`): only a change
/// in the cluster or the policy can alter it, and those trigger a reconcile themselves.
pub const RETRY_DEFINITIVE: Duration = Duration::from_secs(600);

/// The facts about one CSR object that the decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrFacts {
    pub name: String,
    pub signer_name: String,
    pub username: String,
    pub groups: Vec<String>,
    pub usages: Vec<String>,
    pub expiration_seconds: Option<i64>,
    pub created: Option<Timestamp>,
    pub state: CsrState,
    /// `spec.request`: PEM bytes.
    pub request: Vec<u8>,
}

impl CsrFacts {
    pub fn from_csr(csr: &CertificateSigningRequest) -> CsrFacts {
        let spec = &csr.spec;
        CsrFacts {
            name: csr.metadata.name.clone().unwrap_or_default(),
            signer_name: spec.signer_name.clone(),
            username: spec.username.clone().unwrap_or_default(),
            groups: spec.groups.clone().unwrap_or_default(),
            usages: spec.usages.clone().unwrap_or_default(),
            expiration_seconds: spec.expiration_seconds.map(i64::from),
            created: csr.metadata.creation_timestamp.as_ref().map(|t| t.0),
            state: CsrState::of(csr),
            request: spec.request.0.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    /// Only with `deny: true` and a definitive reason.
    Deny,
    /// Leave pending and look again after `retry_after` (or when the cluster changes).
    Wait {
        retry_after: Duration,
    },
    /// Not ours to decide.
    Ignore,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Deny => "deny",
            Verdict::Wait { .. } => "wait",
            Verdict::Ignore => "ignore",
        }
    }
}

/// Why. `as_str()` is stable: it is a metric label, an Event reason and part of the
/// `check` output contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    // approvals
    NewNodeMachine,
    NewNodeInventory,
    ClientRenewal,
    ServingAddressesVerified,
    // not ours
    AlreadyDecided,
    OtherSigner,
    SignerDisabled,
    RenewalsDisabled,
    // may become valid
    NodeNotRegistered,
    UnknownMachine,
    MachineNotLinked,
    DuplicateClientRequest,
    TooManyPending,
    // definitive: forged or invalid
    MalformedRequest,
    BadSignature,
    UnsupportedKey,
    WeakKey,
    ExpirationTooLong,
    BadOrganization,
    BadCommonName,
    UnexpectedSans,
    ForbiddenSanType,
    WildcardSan,
    NoSans,
    BadUsages,
    UnknownRequester,
    RequesterMismatch,
    MissingNodesGroup,
    NodeAlreadyExists,
    MachineAlreadyLinked,
    OutsideJoinWindow,
    ForeignSan,
    SanOutsideFence,
}

impl Reason {
    pub const ALL: [Reason; 33] = [
        Reason::NewNodeMachine,
        Reason::NewNodeInventory,
        Reason::ClientRenewal,
        Reason::ServingAddressesVerified,
        Reason::AlreadyDecided,
        Reason::OtherSigner,
        Reason::SignerDisabled,
        Reason::RenewalsDisabled,
        Reason::NodeNotRegistered,
        Reason::UnknownMachine,
        Reason::MachineNotLinked,
        Reason::DuplicateClientRequest,
        Reason::TooManyPending,
        Reason::MalformedRequest,
        Reason::BadSignature,
        Reason::UnsupportedKey,
        Reason::WeakKey,
        Reason::ExpirationTooLong,
        Reason::BadOrganization,
        Reason::BadCommonName,
        Reason::UnexpectedSans,
        Reason::ForbiddenSanType,
        Reason::WildcardSan,
        Reason::NoSans,
        Reason::BadUsages,
        Reason::UnknownRequester,
        Reason::RequesterMismatch,
        Reason::MissingNodesGroup,
        Reason::NodeAlreadyExists,
        Reason::MachineAlreadyLinked,
        Reason::OutsideJoinWindow,
        Reason::ForeignSan,
        Reason::SanOutsideFence,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NewNodeMachine => "NewNodeMachine",
            Reason::NewNodeInventory => "NewNodeInventory",
            Reason::ClientRenewal => "ClientRenewal",
            Reason::ServingAddressesVerified => "ServingAddressesVerified",
            Reason::AlreadyDecided => "AlreadyDecided",
            Reason::OtherSigner => "OtherSigner",
            Reason::SignerDisabled => "SignerDisabled",
            Reason::RenewalsDisabled => "RenewalsDisabled",
            Reason::NodeNotRegistered => "NodeNotRegistered",
            Reason::UnknownMachine => "UnknownMachine",
            Reason::MachineNotLinked => "MachineNotLinked",
            Reason::DuplicateClientRequest => "DuplicateClientRequest",
            Reason::TooManyPending => "TooManyPending",
            Reason::MalformedRequest => "MalformedRequest",
            Reason::BadSignature => "BadSignature",
            Reason::UnsupportedKey => "UnsupportedKey",
            Reason::WeakKey => "WeakKey",
            Reason::ExpirationTooLong => "ExpirationTooLong",
            Reason::BadOrganization => "BadOrganization",
            Reason::BadCommonName => "BadCommonName",
            Reason::UnexpectedSans => "UnexpectedSans",
            Reason::ForbiddenSanType => "ForbiddenSanType",
            Reason::WildcardSan => "WildcardSan",
            Reason::NoSans => "NoSans",
            Reason::BadUsages => "BadUsages",
            Reason::UnknownRequester => "UnknownRequester",
            Reason::RequesterMismatch => "RequesterMismatch",
            Reason::MissingNodesGroup => "MissingNodesGroup",
            Reason::NodeAlreadyExists => "NodeAlreadyExists",
            Reason::MachineAlreadyLinked => "MachineAlreadyLinked",
            Reason::OutsideJoinWindow => "OutsideJoinWindow",
            Reason::ForeignSan => "ForeignSan",
            Reason::SanOutsideFence => "SanOutsideFence",
        }
    }

    pub fn class(self) -> ReasonClass {
        use Reason::*;
        match self {
            NewNodeMachine | NewNodeInventory | ClientRenewal | ServingAddressesVerified => {
                ReasonClass::Approval
            }
            AlreadyDecided | OtherSigner | SignerDisabled | RenewalsDisabled => {
                ReasonClass::NotOurs
            }
            NodeNotRegistered
            | UnknownMachine
            | MachineNotLinked
            | DuplicateClientRequest
            | TooManyPending => ReasonClass::Transient,
            MalformedRequest | BadSignature | UnsupportedKey | WeakKey | ExpirationTooLong
            | BadOrganization | BadCommonName | UnexpectedSans | ForbiddenSanType | WildcardSan
            | NoSans | BadUsages | UnknownRequester | RequesterMismatch | MissingNodesGroup
            | NodeAlreadyExists | MachineAlreadyLinked | OutsideJoinWindow | ForeignSan
            | SanOutsideFence => ReasonClass::Definitive,
        }
    }
}

/// What kind of answer a reason gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonClass {
    Approval,
    /// Not ours to decide: ignored.
    NotOurs,
    /// May become valid when the cluster changes: wait.
    Transient,
    /// Forged or invalid as submitted: denied with `deny: true`, else left pending.
    Definitive,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: Reason,
    pub message: String,
    /// The node the CSR is for, once known from its CN.
    pub node: Option<String>,
}

impl Decision {
    fn approve(reason: Reason, node: &str, message: String) -> Decision {
        Decision {
            verdict: Verdict::Approve,
            reason,
            message,
            node: Some(node.to_string()),
        }
    }

    fn ignore(reason: Reason, message: String) -> Decision {
        Decision {
            verdict: Verdict::Ignore,
            reason,
            message,
            node: None,
        }
    }
}

/// A refusal before the policy's `deny` switch is applied.
struct Refusal {
    reason: Reason,
    message: String,
}

fn refuse(reason: Reason, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
    }
}

impl From<RequestError> for Refusal {
    fn from(e: RequestError) -> Refusal {
        let reason = match e {
            RequestError::BadSignature(_) => Reason::BadSignature,
            RequestError::UnsupportedKey(_) => Reason::UnsupportedKey,
            RequestError::WeakKey { .. } => Reason::WeakKey,
            _ => Reason::MalformedRequest,
        };
        refuse(reason, e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Client,
    Serving,
}

/// Decides one CSR. See DESIGN §3 for the rules in prose; this is their only implementation.
pub fn decide(csr: &CsrFacts, inventory: &Inventory, policy: &Policy, now: Timestamp) -> Decision {
    if csr.state != CsrState::Pending {
        return Decision::ignore(
            Reason::AlreadyDecided,
            format!("CSR is already {}", csr.state.as_str()),
        );
    }
    let kind = match csr.signer_name.as_str() {
        CLIENT_SIGNER => Kind::Client,
        SERVING_SIGNER => Kind::Serving,
        other => {
            return Decision::ignore(
                Reason::OtherSigner,
                format!("signer {other} is not a kubelet signer"),
            );
        }
    };
    let enabled = match kind {
        Kind::Client => policy.client.enabled,
        Kind::Serving => policy.serving.enabled,
    };
    if !enabled {
        return Decision::ignore(
            Reason::SignerDisabled,
            format!("the policy disables {}", csr.signer_name),
        );
    }

    let mut node = None;
    let outcome = parse_request(&csr.request)
        .map_err(Refusal::from)
        .and_then(|request| {
            check_common(csr, &request, policy, kind)?;
            let name = node_name_from_subject(&request)?;
            node = Some(name.clone());
            match kind {
                Kind::Client => decide_client(csr, &request, &name, inventory, policy, now),
                Kind::Serving => decide_serving(csr, &request, &name, inventory, policy),
            }
        })
        .and_then(|approval| flood_guard(csr, inventory, policy, now).map(|()| approval));

    match outcome {
        Ok(Approval { reason, message }) => {
            Decision::approve(reason, node.as_deref().unwrap_or_default(), message)
        }
        Err(Refusal { reason, message }) => {
            let verdict = match reason.class() {
                ReasonClass::NotOurs => Verdict::Ignore,
                ReasonClass::Definitive if policy.deny => Verdict::Deny,
                ReasonClass::Definitive => Verdict::Wait {
                    retry_after: RETRY_DEFINITIVE,
                },
                ReasonClass::Transient | ReasonClass::Approval => Verdict::Wait {
                    retry_after: RETRY_TRANSIENT,
                },
            };
            Decision {
                verdict,
                reason,
                message,
                node,
            }
        }
    }
}

struct Approval {
    reason: Reason,
    message: String,
}

fn check_common(
    csr: &CsrFacts,
    request: &ParsedRequest,
    policy: &Policy,
    kind: Kind,
) -> Result<(), Refusal> {
    let key_type = KeyType::of(request.key);
    if !policy.keys.types.contains(&key_type) {
        return Err(refuse(
            Reason::UnsupportedKey,
            format!("key type {} is not allowed by keys.types", request.key),
        ));
    }
    if let KeyAlgorithm::Rsa { bits } = request.key
        && bits < policy.keys.min_rsa_bits
    {
        return Err(refuse(
            Reason::WeakKey,
            format!(
                "RSA key of {bits} bits is below keys.minRSABits {}",
                policy.keys.min_rsa_bits
            ),
        ));
    }
    let (max, field) = match kind {
        Kind::Client => (policy.client.max_expiration_seconds, "client"),
        Kind::Serving => (policy.serving.max_expiration_seconds, "serving"),
    };
    if let Some(seconds) = csr.expiration_seconds
        && seconds > i64::from(max)
    {
        return Err(refuse(
            Reason::ExpirationTooLong,
            format!("spec.expirationSeconds {seconds} exceeds {field}.maxExpirationSeconds {max}"),
        ));
    }
    if request.organizations != [NODES_GROUP] {
        return Err(refuse(
            Reason::BadOrganization,
            format!(
                "subject O is {:?}, expected exactly [\"{NODES_GROUP}\"]",
                request.organizations
            ),
        ));
    }
    Ok(())
}

/// The node name from the subject CN `system:node:<name>`, which must be a valid node name
/// exactly as written (the apiserver will create the Node under this name).
fn node_name_from_subject(request: &ParsedRequest) -> Result<String, Refusal> {
    let [cn] = request.common_names.as_slice() else {
        return Err(refuse(
            Reason::BadCommonName,
            format!(
                "subject has {} CNs {:?}, expected exactly one system:node:<name>",
                request.common_names.len(),
                request.common_names
            ),
        ));
    };
    match cn.strip_prefix(NODE_USER_PREFIX) {
        Some(name) if is_dns1123_subdomain(name) => Ok(name.to_string()),
        Some(name) => Err(refuse(
            Reason::BadCommonName,
            format!("subject CN {cn:?}: node name {name:?} is not a valid lowercase DNS-1123 name"),
        )),
        None => Err(refuse(
            Reason::BadCommonName,
            format!("subject CN {cn:?} does not start with {NODE_USER_PREFIX}"),
        )),
    }
}

fn usage_set(csr: &CsrFacts) -> BTreeSet<&str> {
    csr.usages.iter().map(String::as_str).collect()
}

fn decide_client(
    csr: &CsrFacts,
    request: &ParsedRequest,
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Result<Approval, Refusal> {
    if request.has_any_san() {
        return Err(refuse(
            Reason::UnexpectedSans,
            format!(
                "client CSR carries SANs ({}); kubelet client certificates have none",
                describe_sans(request)
            ),
        ));
    }
    let usages = usage_set(csr);
    let rsa_style: BTreeSet<&str> = ["digital signature", "key encipherment", "client auth"].into();
    let ec_style: BTreeSet<&str> = ["digital signature", "client auth"].into();
    if usages != rsa_style && usages != ec_style {
        return Err(refuse(
            Reason::BadUsages,
            format!(
                "spec.usages {:?} must be exactly [digital signature, client auth] (optionally with key encipherment)",
                csr.usages
            ),
        ));
    }

    if let Some(requester_node) = csr.username.strip_prefix(NODE_USER_PREFIX) {
        return decide_client_renewal(csr, requester_node, node, inventory, policy);
    }
    let Some(bootstrapper) = policy
        .client
        .bootstrappers
        .iter()
        .find(|b| b.matches(&csr.username, &csr.groups))
    else {
        return Err(refuse(
            Reason::UnknownRequester,
            format!(
                "requester {} (groups {:?}) is neither a configured bootstrapper nor system:node:{node}",
                csr.username, csr.groups
            ),
        ));
    };

    if inventory.node(node).is_some() {
        return Err(refuse(
            Reason::NodeAlreadyExists,
            format!(
                "Node {node} already exists; a bootstrapper may not request its identity (renewals come from system:node:{node})"
            ),
        ));
    }
    let created = csr.created.unwrap_or(now);
    let window = policy.client.join_window.0;
    if !policy.client.allow_duplicates
        && let Some(other) = inventory.csrs_for_node(node).find(|other| {
            other.name != csr.name
                && other.signer == CLIENT_SIGNER
                && matches!(other.state, CsrState::Approved | CsrState::Issued)
                && other
                    .created
                    .is_some_and(|t| within(now.duration_since(t), window))
        })
    {
        return Err(refuse(
            Reason::DuplicateClientRequest,
            format!(
                "client CSR {} for node {node} is already {} and its Node has not registered yet",
                other.name,
                other.state.as_str()
            ),
        ));
    }

    // A Machine that names the host decides alone: an inventory entry cannot override a
    // Machine that is linked to another node or outside its join window.
    let mut first_machine_refusal = None;
    for machine in admitted_machines(inventory, policy, node) {
        let Some(address) = machine.addresses.iter().find(|a| a.names_host(node)) else {
            continue;
        };
        match check_join(machine, node, created, window) {
            Ok(age) => {
                return Ok(Approval {
                    reason: Reason::NewNodeMachine,
                    message: format!(
                        "{} address {}={} (created {} before the CSR); requested by {bootstrapper}",
                        machine.describe(),
                        address.kind,
                        address.value,
                        humantime::format_duration(age)
                    ),
                });
            }
            Err(refusal) => {
                first_machine_refusal.get_or_insert(refusal);
            }
        }
    }
    if let Some(refusal) = first_machine_refusal {
        return Err(refusal);
    }
    if let Some(entry) = policy.inventory.iter().find(|e| e.matches(node)) {
        return Ok(Approval {
            reason: Reason::NewNodeInventory,
            message: format!(
                "{} matches node {node}; requested by {bootstrapper}",
                entry.describe()
            ),
        });
    }
    Err(refuse(
        Reason::UnknownMachine,
        format!(
            "no Machine has a Hostname/InternalDNS address {node} and no inventory entry matches it"
        ),
    ))
}

/// `delta` (from an instant to now) is at most `window`; instants in the future count.
fn within(delta: SignedDuration, window: Duration) -> bool {
    Duration::try_from(delta).map_or(true, |d| d <= window)
}

/// The Machine is free (no nodeRef) and was created in the join window before the CSR.
/// Returns how long before the CSR it was created.
fn check_join(
    machine: &MachineInfo,
    node: &str,
    csr_created: Timestamp,
    window: Duration,
) -> Result<Duration, Refusal> {
    if let Some(linked) = &machine.node_ref {
        return Err(refuse(
            Reason::MachineAlreadyLinked,
            format!(
                "{} names host {node} but is already linked to Node {linked}",
                machine.describe()
            ),
        ));
    }
    let Some(machine_created) = machine.created else {
        return Err(refuse(
            Reason::OutsideJoinWindow,
            format!("{} has no creationTimestamp", machine.describe()),
        ));
    };
    let age = csr_created.duration_since(machine_created);
    match Duration::try_from(age) {
        Ok(age) if age <= window => Ok(age),
        Ok(age) => Err(refuse(
            Reason::OutsideJoinWindow,
            format!(
                "{} was created {} before the CSR, beyond client.joinWindow {}",
                machine.describe(),
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(window)
            ),
        )),
        // Negative: the Machine is younger than the CSR.
        Err(_) => {
            let after =
                Duration::try_from(machine_created.duration_since(csr_created)).unwrap_or_default();
            if after <= MACHINE_CREATION_SKEW {
                Ok(Duration::ZERO)
            } else {
                Err(refuse(
                    Reason::OutsideJoinWindow,
                    format!(
                        "{} was created {} after the CSR (more than {}s of clock skew)",
                        machine.describe(),
                        humantime::format_duration(Duration::from_secs(after.as_secs())),
                        MACHINE_CREATION_SKEW.as_secs()
                    ),
                ))
            }
        }
    }
}

fn decide_client_renewal(
    csr: &CsrFacts,
    requester_node: &str,
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
) -> Result<Approval, Refusal> {
    if requester_node != node {
        return Err(refuse(
            Reason::RequesterMismatch,
            format!(
                "requester {} asks for the identity of node {node}",
                csr.username
            ),
        ));
    }
    check_nodes_group(csr)?;
    if !policy.client.renewals {
        return Err(refuse(
            Reason::RenewalsDisabled,
            "client.renewals is false; another approver handles renewals",
        ));
    }
    if inventory.node(node).is_none() {
        return Err(refuse(
            Reason::NodeNotRegistered,
            format!(
                "renewal from {} but Node {node} does not exist",
                csr.username
            ),
        ));
    }
    Ok(Approval {
        reason: Reason::ClientRenewal,
        message: format!(
            "renewal requested by {} for its own registered Node",
            csr.username
        ),
    })
}

fn check_nodes_group(csr: &CsrFacts) -> Result<(), Refusal> {
    if csr.groups.iter().any(|g| g == NODES_GROUP) {
        Ok(())
    } else {
        Err(refuse(
            Reason::MissingNodesGroup,
            format!(
                "requester {} is not in group {NODES_GROUP} (groups {:?})",
                csr.username, csr.groups
            ),
        ))
    }
}

/// The Machines the policy watches that name host `node` or are linked to Node `node`.
fn admitted_machines<'a>(
    inventory: &'a Inventory,
    policy: &'a Policy,
    node: &'a str,
) -> impl Iterator<Item = &'a MachineInfo> {
    inventory
        .machines_for_node(node)
        .filter(|m| policy.machines.admits(&m.api_group, &m.namespace))
}

fn describe_sans(request: &ParsedRequest) -> String {
    let mut all: Vec<String> = Vec::new();
    all.extend(request.dns_names.iter().map(|d| format!("DNS:{d}")));
    all.extend(request.ip_addresses.iter().map(|i| format!("IP:{i}")));
    all.extend(request.emails.iter().map(|e| format!("email:{e}")));
    all.extend(request.uris.iter().map(|u| format!("URI:{u}")));
    all.extend(request.other_sans.iter().cloned());
    all.join(", ")
}

fn decide_serving(
    csr: &CsrFacts,
    request: &ParsedRequest,
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
) -> Result<Approval, Refusal> {
    let Some(requester_node) = csr.username.strip_prefix(NODE_USER_PREFIX) else {
        return Err(refuse(
            Reason::UnknownRequester,
            format!(
                "serving CSR requested by {}, not by system:node:{node}",
                csr.username
            ),
        ));
    };
    if requester_node != node {
        return Err(refuse(
            Reason::RequesterMismatch,
            format!(
                "requester {} asks for a certificate as node {node}",
                csr.username
            ),
        ));
    }
    check_nodes_group(csr)?;
    let usages = usage_set(csr);
    let allowed: BTreeSet<&str> = ["digital signature", "key encipherment", "server auth"].into();
    if !usages.contains("server auth") || !usages.is_subset(&allowed) {
        return Err(refuse(
            Reason::BadUsages,
            format!(
                "spec.usages {:?} must include server auth and only digital signature, key encipherment, server auth",
                csr.usages
            ),
        ));
    }
    if let Some(other) = request
        .emails
        .iter()
        .map(|e| format!("email SAN {e}"))
        .chain(request.uris.iter().map(|u| format!("URI SAN {u}")))
        .chain(request.other_sans.iter().map(|o| format!("SAN {o}")))
        .next()
    {
        return Err(refuse(
            Reason::ForbiddenSanType,
            format!(
                "{other} is not allowed; kubelet serving certificates carry only DNS and IP SANs"
            ),
        ));
    }
    if request.dns_names.is_empty() && request.ip_addresses.is_empty() {
        return Err(refuse(Reason::NoSans, "serving CSR has no DNS or IP SAN"));
    }
    if let Some(wild) = request.dns_names.iter().find(|d| d.contains('*')) {
        return Err(refuse(
            Reason::WildcardSan,
            format!("DNS SAN {wild} is a wildcard; a node owns only its own names"),
        ));
    }

    // Client before serving: the Node exists only once its client certificate was issued.
    let Some(node_info) = inventory.node(node) else {
        return Err(refuse(
            Reason::NodeNotRegistered,
            format!("Node {node} is not registered yet; its client CSR must be approved first"),
        ));
    };

    let sources = &policy.serving.address_sources;
    let mut owned: Vec<(AddressValue, String)> = Vec::new();
    if sources.contains(&AddressSource::Node) {
        owned.extend(
            node_info
                .addresses
                .iter()
                .map(|a| (a.value.clone(), format!("Node {node} {}", a.kind))),
        );
    }
    let linked: Vec<&MachineInfo> = admitted_machines(inventory, policy, node)
        .filter(|m| m.node_ref.as_deref() == Some(node))
        .collect();
    if sources.contains(&AddressSource::Machine) {
        for machine in &linked {
            owned.extend(machine.addresses.iter().map(|a| {
                (
                    a.value.clone(),
                    format!("{} {}", machine.describe(), a.kind),
                )
            }));
        }
    }
    let entries: Vec<_> = policy
        .inventory
        .iter()
        .filter(|e| e.matches(node))
        .collect();
    for entry in &entries {
        owned.extend(entry.addresses.iter().map(|a| {
            let value = match a {
                crate::policy::Address::Ip(ip) => AddressValue::Ip(*ip),
                crate::policy::Address::Dns(d) => AddressValue::Dns(d.clone()),
            };
            (value, entry.describe())
        }));
    }

    let sans: Vec<(AddressValue, &'static str)> = request
        .dns_names
        .iter()
        .map(|d| (AddressValue::Dns(normalize_dns_name(d)), "DNS"))
        .chain(
            request
                .ip_addresses
                .iter()
                .map(|ip| (AddressValue::Ip(*ip), "IP")),
        )
        .collect();
    let mut evidence = BTreeSet::new();
    for (san, kind) in &sans {
        match owned.iter().find(|(value, _)| value == san) {
            Some((_, source)) => {
                evidence.insert(source.clone());
            }
            None => {
                let machine_pending = sources.contains(&AddressSource::Machine)
                    && linked.is_empty()
                    && admitted_machines(inventory, policy, node).any(|m| {
                        m.node_ref.is_none() && m.addresses.iter().any(|a| a.names_host(node))
                    });
                if machine_pending {
                    return Err(refuse(
                        Reason::MachineNotLinked,
                        format!(
                            "{kind} SAN {san} is not yet known: the Machine for {node} has no nodeRef yet"
                        ),
                    ));
                }
                let mut known: Vec<String> = Vec::new();
                for (value, _) in &owned {
                    let text = value.to_string();
                    if !known.contains(&text) {
                        known.push(text);
                    }
                }
                return Err(refuse(
                    Reason::ForeignSan,
                    format!(
                        "{kind} SAN {san} is not an address of node {node} (has {})",
                        if known.is_empty() {
                            "no addresses".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
        }
    }

    check_fences(&sans, node, policy, &entries)?;
    Ok(Approval {
        reason: Reason::ServingAddressesVerified,
        message: format!(
            "every SAN ({}) belongs to node {node}: {}",
            sans.iter()
                .map(|(v, _)| v.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            evidence.into_iter().collect::<Vec<_>>().join("; ")
        ),
    })
}

fn check_fences(
    sans: &[(AddressValue, &str)],
    node: &str,
    policy: &Policy,
    entries: &[&crate::policy::InventoryEntry],
) -> Result<(), Refusal> {
    let ranges = &policy.serving.allowed_ip_ranges;
    let patterns = &policy.serving.dns_name_patterns;
    for (san, _) in sans {
        match san {
            AddressValue::Ip(ip) => {
                if !ranges.is_empty() && !ranges.iter().any(|r| r.contains(*ip)) {
                    return Err(refuse(
                        Reason::SanOutsideFence,
                        format!(
                            "IP SAN {ip} is outside serving.allowedIPRanges [{}]",
                            join(ranges)
                        ),
                    ));
                }
                for entry in entries.iter().filter(|e| !e.ip_ranges.is_empty()) {
                    if !entry.ip_ranges.iter().any(|r| r.contains(*ip)) {
                        return Err(refuse(
                            Reason::SanOutsideFence,
                            format!(
                                "IP SAN {ip} of node {node} is outside the ipRanges [{}] of {}",
                                join(&entry.ip_ranges),
                                entry.describe()
                            ),
                        ));
                    }
                }
            }
            AddressValue::Dns(name) => {
                if !patterns.is_empty() && !patterns.iter().any(|p| p.0.is_match(name)) {
                    return Err(refuse(
                        Reason::SanOutsideFence,
                        format!(
                            "DNS SAN {name} matches none of serving.dnsNamePatterns [{}]",
                            patterns
                                .iter()
                                .map(|p| p.0.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Stops approving when more node CSRs are pending than the cluster can explain: a
/// stolen bootstrap token being used to flood, or a broken installer.
fn flood_guard(
    csr: &CsrFacts,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Result<(), Refusal> {
    let limit = max_pending(inventory, policy);
    let pending = count_pending(inventory, now, Some(&csr.name)) + 1;
    if pending > limit {
        return Err(refuse(
            Reason::TooManyPending,
            format!(
                "{pending} kubelet CSRs pending in the last hour exceed client.maxPending {limit}; approvals paused"
            ),
        ));
    }
    Ok(())
}

/// The flood-guard threshold for this inventory and policy.
pub fn max_pending(inventory: &Inventory, policy: &Policy) -> usize {
    let machines = inventory
        .machine_counts()
        .filter(|(group, namespace, _)| policy.machines.admits(group, namespace))
        .map(|(_, _, count)| count)
        .sum();
    policy
        .client
        .max_pending
        .limit(machines, inventory.node_count(), policy.inventory.len())
}

/// Kubelet CSRs pending and created within the flood window, other than `except`.
pub fn count_pending(inventory: &Inventory, now: Timestamp, except: Option<&str>) -> usize {
    let since = now
        .checked_sub(SignedDuration::try_from(FLOOD_WINDOW).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MIN);
    inventory
        .pending_since(since)
        .filter(|c| Some(c.name.as_str()) != except)
        .filter(|c| c.signer == CLIENT_SIGNER || c.signer == SERVING_SIGNER)
        .count()
}
