//! Which addresses are a node's own (rule 6), and whether another host's claim outranks
//! the node's (rule 7; who claims what: `claims`).

use jiff::Timestamp;

use super::San;
use super::claims::{self, Weight};
use crate::decision::common::admitted_machines;
use crate::decision::{Reason, Refusal, refuse};
use crate::evidence::Wanted;
use crate::inventory::{Inventory, MachineInfo};
use crate::policy::{AddressSource, Policy};
use crate::vocabulary::AddressValue;

/// An address of the node, with the source that gives it.
pub(super) struct Owned {
    pub value: AddressValue,
    pub source: String,
    /// Whether the source is the kubelet's own current certificate, which may renew an
    /// address only for a while after independent evidence vouched for it (`bounded`).
    pub by_own_certificate: bool,
}

fn independent(value: &AddressValue, source: String) -> Owned {
    Owned {
        value: value.clone(),
        source,
        by_own_certificate: false,
    }
}

/// The node's addresses from the sources the policy trusts, each with where it came from.
pub(super) fn owned_addresses(
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Vec<Owned> {
    let sources = &policy.serving.address_sources;
    let mut owned: Vec<Owned> = Vec::new();
    if sources.contains(&AddressSource::Node)
        && let Some(info) = inventory.node(node)
    {
        owned.extend(
            info.addresses
                .iter()
                .map(|a| independent(&a.value, format!("Node {node} {}", a.kind))),
        );
    }
    if sources.contains(&AddressSource::Machine) {
        for machine in linked_machines(node, inventory, policy) {
            owned.extend(
                machine
                    .addresses
                    .iter()
                    .map(|a| independent(&a.value, format!("{} {}", machine.describe(), a.kind))),
            );
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
        owned.extend(current.addresses.iter().map(|a| Owned {
            value: a.clone(),
            source: source.clone(),
            by_own_certificate: true,
        }));
    }
    for entry in policy.inventory.iter().filter(|e| e.matches(node)) {
        owned.extend(
            entry
                .addresses
                .iter()
                .map(|a| independent(a, entry.describe())),
        );
    }
    owned
}

/// A SAN only the kubelet's own certificate vouches for is the node's only while the
/// node's `NodeIdentity` shows independent evidence vouched for it within
/// `serving.kubeletCertificateMaxAge`: each renewal approved on a certificate issues one
/// with the same SANs, so without this bound an address certified once — by a hand
/// approval, by evidence since withdrawn — would stay renewable forever.
pub(super) fn bounded(
    san: &San,
    node: &str,
    certificate_source: &str,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Result<(), Refusal> {
    let max_age = policy.serving.kubelet_certificate_max_age.0;
    let vouched = inventory
        .identity(node)
        .and_then(|record| record.vouched_at(&san.value));
    let since = match vouched {
        Some(at) if now.duration_since(at).as_secs_f64() <= max_age.as_secs_f64() => {
            return Ok(());
        }
        Some(at) => format!(
            "no independent source (Node status, trusted Machine, inventory entry) has vouched for it since {at} (NodeIdentity {node})"
        ),
        None => format!(
            "no independent source (Node status, trusted Machine, inventory entry) ever vouched for it at an approval (NodeIdentity {node} has no entry for it)"
        ),
    };
    Err(refuse(
        Reason::ForeignSan,
        format!(
            "{} SAN {} is vouched for only by {certificate_source}; {since}, and serving.kubeletCertificateMaxAge ({}) lets a certificate renew its own addresses only that long after; give the address a trusted source (the node's Machine, an inventory entry's addresses) or approve by hand",
            san.kind,
            san.value,
            humantime::format_duration(max_age)
        ),
    ))
}

pub(super) fn linked_machines<'a>(
    node: &'a str,
    inventory: &'a Inventory,
    policy: &'a Policy,
) -> impl Iterator<Item = &'a MachineInfo> {
    admitted_machines(inventory, policy, node)
        .filter(move |m| !m.deleting && m.node_ref.as_deref() == Some(node))
}

/// Why a SAN the node does not own is refused: its Machine may not be linked yet, or the
/// address is simply someone else's.
pub(super) fn not_owned(
    san: &San,
    node: &str,
    owned: &[Owned],
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
    for Owned { value, .. } in owned {
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

/// Rule 7: nobody else claims the SAN with as much weight as the node. A trusted claim
/// (a trusted Machine, a named inventory entry, a Node's name) outranks a self-report (a
/// Node's status): the trusted owner keeps the SAN and the self-reporter is refused
/// (`ForeignSan`: the SAN is another host's, not a question of time). Claims of equal
/// standing — two trusted sources, or two self-reports — block both (`AddressConflict`).
/// An inventory pattern's reservation outranks a self-report and yields to a trusted
/// source.
pub(super) fn contest(
    san: &San,
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
) -> Result<(), Refusal> {
    let claims = claims::claims(&san.value, node, inventory, policy);
    let Some(other) = claims.strongest_other() else {
        return Ok(());
    };
    match (claims.trusted_for_node, other.weight) {
        (true, Weight::Trusted) | (false, Weight::SelfReport) => Err(refuse(
            Reason::AddressConflict,
            format!(
                "{} SAN {} is claimed by node {node} and also by {}; two claims of equal standing vouch for neither",
                san.kind, san.value, other.owner
            ),
        )),
        (true, _) => Ok(()),
        (false, _) => Err(refuse(
            Reason::ForeignSan,
            format!(
                "{} SAN {} belongs to {}: node {node} has it only from its own report, and a trusted source outranks a self-report",
                san.kind, san.value, other.owner
            ),
        )),
    }
}
