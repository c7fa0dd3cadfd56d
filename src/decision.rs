//! The security policy, top to bottom: `decide` turns the facts about one CSR, what the
//! cluster knows, and the policy into a verdict with a reason and a message that names the
//! field and value that decided it. Pure: no I/O; the clock is an argument.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

mod flood;
mod recovery;
mod reserved;
mod serving;

pub use reserved::why_reserved;

pub use flood::{
    FLOOD_WINDOW, count_new_nodes_approved, count_pending, max_new_nodes, max_pending,
};

use crate::evidence::Wanted;
use crate::inventory::{AddressValue, CsrState, Inventory, MachineInfo, TypedAddress};
use crate::policy::{KeyType, Policy, is_dns1123_subdomain};
use crate::request::{KeyAlgorithm, ParsedRequest, RequestError, parse_request};

pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";
pub const NODE_USER_PREFIX: &str = "system:node:";
pub const NODES_GROUP: &str = "system:nodes";

/// A Machine may be created slightly after the CSR its host sends (clock skew between the
/// machine controller and the apiserver); no more than this.
pub const MACHINE_CREATION_SKEW: Duration = Duration::from_secs(10);

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
    NodeRecovery,
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
    NewNodeRateLimited,
    MachineDeleting,
    AddressConflict,
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
    ReservedSan,
    MalformedSan,
}

impl Reason {
    pub const ALL: [Reason; 39] = [
        Reason::NewNodeMachine,
        Reason::NewNodeInventory,
        Reason::ClientRenewal,
        Reason::NodeRecovery,
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
        Reason::NewNodeRateLimited,
        Reason::MachineDeleting,
        Reason::AddressConflict,
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
        Reason::ReservedSan,
        Reason::MalformedSan,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NewNodeMachine => "NewNodeMachine",
            Reason::NewNodeInventory => "NewNodeInventory",
            Reason::ClientRenewal => "ClientRenewal",
            Reason::NodeRecovery => "NodeRecovery",
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
            Reason::NewNodeRateLimited => "NewNodeRateLimited",
            Reason::MachineDeleting => "MachineDeleting",
            Reason::AddressConflict => "AddressConflict",
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
            Reason::ReservedSan => "ReservedSan",
            Reason::MalformedSan => "MalformedSan",
        }
    }

    pub fn class(self) -> ReasonClass {
        use Reason::*;
        match self {
            NewNodeMachine
            | NewNodeInventory
            | ClientRenewal
            | NodeRecovery
            | ServingAddressesVerified => ReasonClass::Approval,
            AlreadyDecided | OtherSigner | SignerDisabled | RenewalsDisabled => {
                ReasonClass::NotOurs
            }
            NodeNotRegistered
            | UnknownMachine
            | MachineNotLinked
            | DuplicateClientRequest
            | TooManyPending
            | NewNodeRateLimited
            | MachineDeleting
            | AddressConflict => ReasonClass::Transient,
            MalformedRequest | BadSignature | UnsupportedKey | WeakKey | ExpirationTooLong
            | BadOrganization | BadCommonName | UnexpectedSans | ForbiddenSanType | WildcardSan
            | NoSans | BadUsages | RequesterMismatch | MissingNodesGroup | ReservedSan
            | MalformedSan => ReasonClass::Definitive,
            NodeAlreadyExists | MachineAlreadyLinked | OutsideJoinWindow | UnknownRequester
            | ForeignSan | SanOutsideFence => ReasonClass::ForAnAdmin,
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
    /// Forged or invalid as submitted, whatever the cluster holds: no evidence and no admin
    /// can make it a valid kubelet request (a bad signature, a reserved name, another
    /// node's identity asked for by a node). Denied with `deny: true`, else left pending.
    Definitive,
    /// Unproven: no evidence the policy trusts vouches for it, yet an admin who checked the
    /// host may rightly approve it by hand (a node recovering after its client certificate
    /// expired, a late boot, a requester the policy does not list, an address no status
    /// shows). Never auto-denied, so that no denial races the admin; left pending with a
    /// Warning Event that says what to check and the command to approve it.
    ForAnAdmin,
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
    /// Evidence that could change the answer and that the controller can read on demand
    /// (`evidence`): read it, then decide again.
    pub wants: Option<Wanted>,
}

impl Decision {
    fn approve(reason: Reason, node: &str, message: String) -> Decision {
        Decision {
            verdict: Verdict::Approve,
            reason,
            message,
            node: Some(node.to_string()),
            wants: None,
        }
    }

    fn ignore(reason: Reason, message: String) -> Decision {
        Decision {
            verdict: Verdict::Ignore,
            reason,
            message,
            node: None,
            wants: None,
        }
    }
}

/// A refusal before the policy's `deny` switch is applied.
struct Refusal {
    reason: Reason,
    message: String,
    wants: Option<Wanted>,
}

fn refuse(reason: Reason, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        message: message.into(),
        wants: None,
    }
}

impl Refusal {
    /// The same refusal, saying which evidence could change it.
    fn wanting(self, wanted: Wanted) -> Refusal {
        Refusal {
            wants: Some(wanted),
            ..self
        }
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
            let name = node_name_from_subject(&request, inventory, policy)?;
            node = Some(name.clone());
            match kind {
                Kind::Client => decide_client(csr, &request, &name, inventory, policy, now),
                Kind::Serving => {
                    serving::decide_serving(csr, &request, &name, inventory, policy, now)
                }
            }
        });

    match outcome {
        Ok(Approval { reason, message }) => {
            Decision::approve(reason, node.as_deref().unwrap_or_default(), message)
        }
        Err(Refusal {
            reason,
            mut message,
            wants,
        }) => {
            if reason.class() == ReasonClass::ForAnAdmin {
                message = format!(
                    "{message}. Left for an admin, never denied; once you verified the host, approve by hand: kubectl certificate approve {} (oc adm certificate approve {})",
                    csr.name, csr.name
                );
            }
            let verdict = match reason.class() {
                ReasonClass::NotOurs => Verdict::Ignore,
                ReasonClass::Definitive if policy.deny => Verdict::Deny,
                ReasonClass::Definitive | ReasonClass::ForAnAdmin => Verdict::Wait {
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
                wants,
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
fn node_name_from_subject(
    request: &ParsedRequest,
    inventory: &Inventory,
    policy: &Policy,
) -> Result<String, Refusal> {
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
        Some(name) if is_dns1123_subdomain(name) => {
            match reserved::why_reserved(&AddressValue::Dns(name.to_string()), inventory, policy) {
                Some(why) => Err(refuse(
                    Reason::BadCommonName,
                    format!("subject CN {cn:?}: node name {name} is {why}; never a node's"),
                )),
                None => Ok(name.to_string()),
            }
        }
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
        let Approval { reason, message } =
            recovery::decide_recovery(csr, node, inventory, policy, now)?;
        return Ok(Approval {
            reason,
            message: format!("{message}; requested by {bootstrapper}"),
        });
    }
    let approval = vouch_for_new_node(csr, node, inventory, policy, now)?;
    check_duplicate(csr, node, &approval, inventory, policy, now)?;
    flood::check_new_node(csr, inventory, policy, now)?;
    let Vouched {
        reason, message, ..
    } = approval;
    Ok(Approval {
        reason,
        message: format!("{message}; requested by {bootstrapper}"),
    })
}

/// Evidence that `node` is a host expected to join.
struct Vouched {
    reason: Reason,
    message: String,
    /// When the evidence appeared (the vouching Machine's creation): approvals before it
    /// belong to an earlier generation of the host.
    since: Option<Timestamp>,
}

/// One new identity per host generation: another client CSR for `node` approved within
/// the join window — and, when a Machine vouches, since that Machine was created — means
/// the host already has its identity and its Node has not registered yet. A host
/// re-provisioned under the same name gets a new Machine (a new generation); without a
/// Machine, an admin deleting the earlier CSR is the explicit word that it is gone.
fn check_duplicate(
    csr: &CsrFacts,
    node: &str,
    vouched: &Vouched,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Result<(), Refusal> {
    if policy.client.allow_duplicates {
        return Ok(());
    }
    let window = policy.client.join_window.0;
    let generation_start = vouched.since.map(|t| {
        t.checked_sub(SignedDuration::try_from(MACHINE_CREATION_SKEW).unwrap_or_default())
            .unwrap_or(t)
    });
    let Some(other) = inventory.csrs_for_node(node).find(|other| {
        other.name != csr.name
            && other.signer == CLIENT_SIGNER
            && matches!(other.state, CsrState::Approved | CsrState::Issued)
            && other
                .created
                .is_some_and(|t| within(now.duration_since(t), window))
            && generation_start.is_none_or(|start| other.created.is_some_and(|t| t >= start))
    }) else {
        return Ok(());
    };
    let remedy = if vouched.since.is_some() {
        "a re-provisioned host gets a new Machine"
    } else {
        "if the host was re-provisioned, delete that CSR (kubectl delete csr) to allow a new identity"
    };
    Err(refuse(
        Reason::DuplicateClientRequest,
        format!(
            "client CSR {} for node {node} is already {} and its Node has not registered yet; {remedy}",
            other.name,
            other.state.as_str()
        ),
    ))
}

/// Who vouches for a new node, in order:
/// 1. A Machine linked to Node `node` holds the name: nobody else may vouch (the identity
///    was issued once already; the Node's absence does not free the name).
/// 2. A Machine that names the host and is free, not being deleted, and created in the join
///    window before the CSR vouches for it.
/// 3. Any other Machine that names the host (linked elsewhere, outside its window, being
///    deleted) refuses, and decides alone: an inventory entry cannot override it.
/// 4. Else a policy inventory entry that matches the name vouches, for CSRs created within
///    `client.joinWindow` (a stale CSR is no request from a host booting now).
fn vouch_for_new_node(
    csr: &CsrFacts,
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Result<Vouched, Refusal> {
    let window = policy.client.join_window.0;
    let created = csr.created.unwrap_or(now);
    let machines: Vec<&MachineInfo> = admitted_machines(inventory, policy, node).collect();
    if let Some(holder) = machines
        .iter()
        .find(|m| !m.deleting && m.node_ref.as_deref() == Some(node))
    {
        return Err(refuse(
            Reason::MachineAlreadyLinked,
            format!(
                "{} is linked to Node {node}: the name is taken, a bootstrapper may not request it again",
                holder.describe()
            ),
        ));
    }
    let mut first_machine_refusal = None;
    for machine in &machines {
        match check_join(machine, node, created, window) {
            Ok((age, address)) => {
                return Ok(Vouched {
                    since: machine.created,
                    reason: Reason::NewNodeMachine,
                    message: format!(
                        "{} address {}={} (created {} before the CSR)",
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
    let Some(entry) = policy.inventory.iter().find(|e| e.matches(node)) else {
        return Err(refuse(
            Reason::UnknownMachine,
            format!(
                "no Machine has a Hostname/InternalDNS address {node} and no inventory entry matches it"
            ),
        ));
    };
    let Some(csr_created) = csr.created else {
        return Err(refuse(
            Reason::OutsideJoinWindow,
            format!(
                "{} matches node {node}, but the CSR has no creationTimestamp to bound its age",
                entry.describe()
            ),
        ));
    };
    if !within(now.duration_since(csr_created), window) {
        return Err(refuse(
            Reason::OutsideJoinWindow,
            format!(
                "{} matches node {node}, but the CSR was created {} ago, beyond client.joinWindow {}",
                entry.describe(),
                humantime::format_duration(Duration::from_secs(
                    now.duration_since(csr_created)
                        .as_secs()
                        .max(0)
                        .unsigned_abs()
                )),
                humantime::format_duration(window)
            ),
        ));
    }
    Ok(Vouched {
        since: None,
        reason: Reason::NewNodeInventory,
        message: format!("{} matches node {node}", entry.describe()),
    })
}

/// `delta` (from an instant to now) is at most `window`; instants in the future count.
fn within(delta: SignedDuration, window: Duration) -> bool {
    Duration::try_from(delta).map_or(true, |d| d <= window)
}

/// The Machine names the host, is free (no nodeRef), is not being deleted, and was
/// created in the join window before the CSR. Returns how long before the CSR it was
/// created, and the address that names the host.
fn check_join<'m>(
    machine: &'m MachineInfo,
    node: &str,
    csr_created: Timestamp,
    window: Duration,
) -> Result<(Duration, &'m TypedAddress), Refusal> {
    if machine.deleting {
        return Err(refuse(
            Reason::MachineDeleting,
            format!(
                "{} names host {node} but is being deleted; it vouches for nothing",
                machine.describe()
            ),
        ));
    }
    if let Some(linked) = &machine.node_ref {
        return Err(refuse(
            Reason::MachineAlreadyLinked,
            format!(
                "{} names host {node} but is already linked to Node {linked}",
                machine.describe()
            ),
        ));
    }
    let Some(address) = machine.addresses.iter().find(|a| a.names_host(node)) else {
        return Err(refuse(
            Reason::UnknownMachine,
            format!("{} does not name host {node}", machine.describe()),
        ));
    };
    let Some(machine_created) = machine.created else {
        return Err(refuse(
            Reason::OutsideJoinWindow,
            format!("{} has no creationTimestamp", machine.describe()),
        ));
    };
    let age = csr_created.duration_since(machine_created);
    match Duration::try_from(age) {
        Ok(age) if age <= window => Ok((age, address)),
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
                Ok((Duration::ZERO, address))
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

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
