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

/// The node's addresses from the sources the policy trusts, each with where it came from.
pub(super) fn owned_addresses(
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
