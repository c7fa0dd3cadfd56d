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
//!    secondary network's). That certificate vouches for an address only within
//!    `serving.kubeletCertificateMaxAge` of the last approval at which an independent
//!    source did (the node's `NodeIdentity`, which such approvals refresh): it cannot
//!    feed itself forever.
//! 7. No other host's claim outranks the node's (see `claims` for the model): a trusted
//!    claim (a trusted Machine — for its linked Node and every host name it gives —, a
//!    named inventory entry, a Node's name; whatever `addressSources` says) outranks a
//!    self-report (a Node's status): a SAN the node has only from its own report and
//!    another host holds by a trusted claim, or an inventory pattern reserves, is
//!    `ForeignSan`; claims of equal standing block both (`AddressConflict`). A DNS name
//!    also denotes the host its first label names. Machines being deleted or in places
//!    the policy does not trust claim nothing.
//! 8. Every SAN lies inside the fences (`serving.allowedIPRanges`,
//!    `serving.dnsNamePatterns`, inventory `ipRanges`).

mod claims;
mod fences;
mod ownership;

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::common::{check_nodes_group, usage_set};
use super::{Approval, CsrFacts, Reason, Refusal, refuse, reserved};
use crate::inventory::Inventory;
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
    check_not_reserved(&sans, node, inventory, policy)?;
    // Client before serving: the Node exists only once its client certificate was issued.
    if inventory.node(node).is_none() {
        return Err(refuse(
            Reason::NodeNotRegistered,
            format!("Node {node} is not registered yet; its client CSR must be approved first"),
        ));
    }
    let owned = ownership::owned_addresses(node, inventory, policy, now);
    let mut evidence = BTreeSet::new();
    let mut vouched = Vec::new();
    for san in &sans {
        let mut sources = owned.iter().filter(|o| o.value == san.value).peekable();
        let Some(first) = sources.peek() else {
            return Err(ownership::not_owned(
                san, node, &owned, inventory, policy, now,
            ));
        };
        let first_source = first.source.clone();
        match sources.find(|o| !o.by_own_certificate) {
            Some(independent) => {
                evidence.insert(independent.source.clone());
                vouched.push(san.value.clone());
            }
            None => {
                ownership::bounded(san, node, &first_source, inventory, policy, now)?;
                evidence.insert(first_source);
            }
        }
    }
    for san in &sans {
        ownership::contest(san, node, inventory, policy)?;
    }
    let entries: Vec<&InventoryEntry> = policy
        .inventory
        .iter()
        .filter(|e| e.matches(node))
        .collect();
    fences::check_fences(&sans, node, policy, &entries)?;
    // Only the bounded source needs the record: without it a serving approval writes
    // nothing but its verdict.
    let trusts_own_certificate = policy
        .serving
        .address_sources
        .contains(&AddressSource::KubeletCertificate);
    Ok(Approval {
        mints_for: None,
        vouches_for: if trusts_own_certificate {
            vouched
        } else {
            Vec::new()
        },
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

/// Rule 4: no SAN is a name or address that is never a node's, whoever claims it.
fn check_not_reserved(
    sans: &[San],
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
) -> Result<(), Refusal> {
    let reserved = sans.iter().find_map(|san| {
        reserved::why_reserved_san(&san.value, node, inventory, policy).map(|why| (san, why))
    });
    match reserved {
        Some((san, why)) => Err(refuse(
            Reason::ReservedSan,
            format!(
                "{} SAN {} is {why}; never a node's address",
                san.kind, san.value
            ),
        )),
        None => Ok(()),
    }
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
