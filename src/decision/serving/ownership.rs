//! Which addresses are a node's own (rule 6), and who else claims one (rule 7).

use jiff::Timestamp;

use super::San;
use crate::decision::common::admitted_machines;
use crate::decision::{Reason, Refusal, refuse};
use crate::evidence::Wanted;
use crate::inventory::{Claimant, Inventory, MachineInfo};
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

/// Another owner that claims `value` or an alias of it (`AddressValue::denoted`),
/// described with its evidence, if any.
pub(super) fn other_owner(
    value: &AddressValue,
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
) -> Option<String> {
    let sources = &policy.serving.address_sources;
    for claimant in inventory.claimants(value) {
        let (owner, evidence) = match claimant {
            Claimant::NodeName(name) => (name.to_string(), format!("Node {name}'s name")),
            Claimant::NodeStatus(name) if sources.contains(&AddressSource::Node) => {
                (name.to_string(), format!("Node {name} status"))
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
        .find(|(name, entry)| *name != node && entry.addresses.iter().any(|a| a.is_alias_of(value)))
        .map(|(name, entry)| format!("{name} ({})", entry.describe()))
}
