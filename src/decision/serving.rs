//! Serving CSRs (`kubernetes.io/kubelet-serving`): a node may have a certificate only for
//! addresses that are its own and nobody else's.
//!
//! 1. Requested by `system:node:<name>` in `system:nodes`, for itself.
//! 2. Usages exactly {digital signature, server auth} or {digital signature, key
//!    encipherment, server auth} — the two sets the kubelet-serving signer issues.
//! 3. Only DNS and IP SANs, at least one; no wildcard; every DNS SAN a valid DNS-1123 name
//!    once lower-cased and stripped of one trailing dot.
//! 4. No SAN reserved (see `reserved`).
//! 5. The Node is registered (client before serving).
//! 6. Every SAN is an address of the node, from a trusted source: its Node's status, the
//!    Machine linked to it, a policy inventory entry naming it, and — opt-in — the serving
//!    certificate its kubelet presents today, verified against the kubelet-serving CA
//!    (`serving.addressSources`: a renewal keeps addresses no status lists, such as a
//!    secondary network's).
//! 7. No other owner claims any SAN: an owner is a node name — its Node (name and status),
//!    the Machine linked to it (or, before linking, naming it as host), its inventory
//!    entry. A Machine naming no host is an owner of its own. Claims from sources the
//!    policy does not trust, and from Machines being deleted, count for nothing.
//! 8. Every SAN lies inside the fences (`serving.allowedIPRanges`,
//!    `serving.dnsNamePatterns`, inventory `ipRanges`).

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::common::{admitted_machines, check_nodes_group, join, usage_set};
use super::{Approval, CsrFacts, Reason, Refusal, refuse, reserved};
use crate::evidence::Wanted;
use crate::inventory::{Claimant, Inventory, MachineInfo};
use crate::policy::{AddressSource, InventoryEntry, Policy};
use crate::request::ParsedRequest;
use crate::vocabulary::{AddressValue, NODE_USER_PREFIX, canonical_dns_name};

/// The usage sets Kubernetes' kubelet-serving signer issues, and nothing else.
const SERVING_USAGE_SETS: [&[&str]; 2] = [
    &["digital signature", "server auth"],
    &["digital signature", "key encipherment", "server auth"],
];

/// A SAN, canonical, with its kind for messages.
struct San {
    value: AddressValue,
    kind: &'static str,
}

pub(super) fn decide_serving(
    csr: &CsrFacts,
    request: &ParsedRequest,
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Result<Approval, Refusal> {
    check_requester(csr, node)?;
    check_usages(csr)?;
    let sans = canonical_sans(request)?;
    for san in &sans {
        if let Some(why) = reserved::why_reserved(&san.value, inventory, policy) {
            return Err(refuse(
                Reason::ReservedSan,
                format!(
                    "{} SAN {} is {why}; never a node's address",
                    san.kind, san.value
                ),
            ));
        }
    }
    // Client before serving: the Node exists only once its client certificate was issued.
    if inventory.node(node).is_none() {
        return Err(refuse(
            Reason::NodeNotRegistered,
            format!("Node {node} is not registered yet; its client CSR must be approved first"),
        ));
    }
    let owned = owned_addresses(node, inventory, policy, now);
    let mut evidence = BTreeSet::new();
    for san in &sans {
        match owned.iter().find(|(value, _)| *value == san.value) {
            Some((_, source)) => {
                evidence.insert(source.clone());
            }
            None => return Err(not_owned(san, node, &owned, inventory, policy, now)),
        }
    }
    for san in &sans {
        if let Some(other) = other_owner(&san.value, node, inventory, policy) {
            return Err(refuse(
                Reason::AddressConflict,
                format!(
                    "{} SAN {} is claimed by node {node} and also by {other}; an address two owners claim vouches for neither",
                    san.kind, san.value
                ),
            ));
        }
    }
    let entries: Vec<&InventoryEntry> = policy
        .inventory
        .iter()
        .filter(|e| e.matches(node))
        .collect();
    check_fences(&sans, node, policy, &entries)?;
    Ok(Approval {
        reason: Reason::ServingAddressesVerified,
        message: format!(
            "every SAN ({}) belongs to node {node} and to no other owner: {}",
            sans.iter()
                .map(|s| s.value.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            evidence.into_iter().collect::<Vec<_>>().join("; ")
        ),
    })
}

fn check_requester(csr: &CsrFacts, node: &str) -> Result<(), Refusal> {
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
    check_nodes_group(csr)
}

fn check_usages(csr: &CsrFacts) -> Result<(), Refusal> {
    let usages = usage_set(csr);
    if SERVING_USAGE_SETS
        .iter()
        .any(|set| usages == set.iter().copied().collect())
    {
        return Ok(());
    }
    Err(refuse(
        Reason::BadUsages,
        format!(
            "spec.usages {:?} must be exactly [digital signature, server auth] or [digital signature, key encipherment, server auth]",
            csr.usages
        ),
    ))
}

/// Only DNS and IP SANs, at least one, each in canonical form.
fn canonical_sans(request: &ParsedRequest) -> Result<Vec<San>, Refusal> {
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
    let mut sans = Vec::new();
    for name in &request.dns_names {
        if name.contains('*') {
            return Err(refuse(
                Reason::WildcardSan,
                format!("DNS SAN {name} is a wildcard; a node owns only its own names"),
            ));
        }
        let Some(canonical) = canonical_dns_name(name) else {
            return Err(refuse(
                Reason::MalformedSan,
                format!(
                    "DNS SAN {name:?} is not a valid DNS-1123 name (lowercase letters, digits, '-', non-empty labels, at most one trailing dot, not an IP address written as a name)"
                ),
            ));
        };
        sans.push(San {
            value: AddressValue::Dns(canonical),
            kind: "DNS",
        });
    }
    sans.extend(request.ip_addresses.iter().map(|ip| San {
        value: AddressValue::Ip(*ip),
        kind: "IP",
    }));
    Ok(sans)
}

/// The node's addresses from the sources the policy trusts, each with where it came from.
fn owned_addresses(
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Vec<(AddressValue, String)> {
    let sources = &policy.serving.address_sources;
    let mut owned: Vec<(AddressValue, String)> = Vec::new();
    if sources.contains(&AddressSource::Node)
        && let Some(info) = inventory.node(node)
    {
        owned.extend(
            info.addresses
                .iter()
                .map(|a| (a.value.clone(), format!("Node {node} {}", a.kind))),
        );
    }
    if sources.contains(&AddressSource::Machine) {
        for machine in linked_machines(node, inventory, policy) {
            owned.extend(machine.addresses.iter().map(|a| {
                (
                    a.value.clone(),
                    format!("{} {}", machine.describe(), a.kind),
                )
            }));
        }
    }
    if sources.contains(&AddressSource::KubeletCertificate)
        && let Some(reading) = inventory.observations().kubelet_certificate(node, now)
        && let Ok(current) = &reading.outcome
    {
        let source = format!(
            "the serving certificate node {node}'s kubelet presents at {} (serial {}, valid until {})",
            current.endpoint, current.serial, current.not_after
        );
        owned.extend(
            current
                .addresses
                .iter()
                .map(|a| (a.clone(), source.clone())),
        );
    }
    for entry in policy.inventory.iter().filter(|e| e.matches(node)) {
        owned.extend(
            entry
                .addresses
                .iter()
                .map(|a| (a.clone(), entry.describe())),
        );
    }
    owned
}

fn linked_machines<'a>(
    node: &'a str,
    inventory: &'a Inventory,
    policy: &'a Policy,
) -> impl Iterator<Item = &'a MachineInfo> {
    admitted_machines(inventory, policy, node)
        .filter(move |m| !m.deleting && m.node_ref.as_deref() == Some(node))
}

/// Why a SAN the node does not own is refused: its Machine may not be linked yet, or the
/// address is simply someone else's.
fn not_owned(
    san: &San,
    node: &str,
    owned: &[(AddressValue, String)],
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Refusal {
    let machine_pending = policy
        .serving
        .address_sources
        .contains(&AddressSource::Machine)
        && linked_machines(node, inventory, policy).next().is_none()
        && admitted_machines(inventory, policy, node).any(|m| {
            !m.deleting && m.node_ref.is_none() && m.addresses.iter().any(|a| a.names_host(node))
        });
    if machine_pending {
        return refuse(
            Reason::MachineNotLinked,
            format!(
                "{} SAN {} is not yet known: the Machine for {node} has no nodeRef yet",
                san.kind, san.value
            ),
        );
    }
    let mut known: Vec<String> = Vec::new();
    for (value, _) in owned {
        let text = value.to_string();
        if !known.contains(&text) {
            known.push(text);
        }
    }
    let refusal = refuse(
        Reason::ForeignSan,
        format!(
            "{} SAN {} is not an address of node {node} (has {}){}",
            san.kind,
            san.value,
            if known.is_empty() {
                "no addresses".to_string()
            } else {
                known.join(", ")
            },
            kubelet_certificate_note(node, inventory, policy, now)
        ),
    );
    let unread = policy
        .serving
        .address_sources
        .contains(&AddressSource::KubeletCertificate)
        && inventory
            .observations()
            .kubelet_certificate(node, now)
            .is_none();
    if unread {
        refusal.wanting(Wanted::KubeletCertificate(node.to_string()))
    } else {
        refusal
    }
}

/// What the kubelet's current certificate said, when the policy trusts it.
fn kubelet_certificate_note(
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> String {
    if !policy
        .serving
        .address_sources
        .contains(&AddressSource::KubeletCertificate)
    {
        return String::new();
    }
    match inventory.observations().kubelet_certificate(node, now) {
        None => "; the kubelet's current serving certificate has not been read".to_string(),
        Some(reading) => match &reading.outcome {
            Ok(current) => format!(
                "; nor in the serving certificate its kubelet presents at {} (serial {})",
                current.endpoint, current.serial
            ),
            Err(error) => {
                format!("; its kubelet's current serving certificate is no evidence: {error}")
            }
        },
    }
}

/// Another owner that claims `value`, described with its evidence, if any.
fn other_owner(
    value: &AddressValue,
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
) -> Option<String> {
    let sources = &policy.serving.address_sources;
    for claimant in inventory.claimants(value) {
        let (owner, evidence) = match claimant {
            Claimant::NodeName(name) => (name.clone(), format!("Node {name}'s name")),
            Claimant::NodeStatus(name) if sources.contains(&AddressSource::Node) => {
                (name.clone(), format!("Node {name} status"))
            }
            Claimant::NodeStatus(_) => continue,
            Claimant::Machine(key) => {
                let Some(machine) = inventory.machine(key) else {
                    continue;
                };
                if machine.deleting
                    || !sources.contains(&AddressSource::Machine)
                    || !policy
                        .machines
                        .admits(&machine.api_group, &machine.namespace)
                {
                    continue;
                }
                match machine.owner() {
                    Some(owner) => (owner.to_string(), machine.describe()),
                    None => (machine.describe(), "a Machine naming no host".to_string()),
                }
            }
        };
        if owner != node {
            return Some(format!("{owner} ({evidence})"));
        }
    }
    policy
        .inventory
        .iter()
        .filter_map(|entry| entry.name.as_deref().map(|name| (name, entry)))
        .find(|(name, entry)| *name != node && entry.addresses.contains(value))
        .map(|(name, entry)| format!("{name} ({})", entry.describe()))
}

fn check_fences(
    sans: &[San],
    node: &str,
    policy: &Policy,
    entries: &[&InventoryEntry],
) -> Result<(), Refusal> {
    let ranges = &policy.serving.allowed_ip_ranges;
    let patterns = &policy.serving.dns_name_patterns;
    for san in sans {
        match &san.value {
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
                if !patterns.is_empty() && !patterns.iter().any(|p| p.is_match(name)) {
                    return Err(refuse(
                        Reason::SanOutsideFence,
                        format!(
                            "DNS SAN {name} matches none of serving.dnsNamePatterns [{}]",
                            patterns
                                .iter()
                                .map(|p| p.as_written())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            AddressValue::Invalid(raw) => {
                return Err(refuse(
                    Reason::MalformedSan,
                    format!("SAN {raw:?} is not a valid address"),
                ));
            }
        }
    }
    Ok(())
}
