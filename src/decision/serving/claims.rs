//! Who claims a name or address (rule 7), and how much each claim weighs.
//!
//! A host is what one trusted source entry describes. A trusted Machine (not being
//! deleted) speaks for the Node its `nodeRef` names and for every host name it gives
//! (`Hostname`, `InternalDNS`): they are one host's, with all its addresses. A named
//! inventory entry speaks for its `name` and its `addresses`. A Node's name is the identity
//! already minted for it. These are trusted claims, whatever `serving.addressSources` says:
//! that list chooses what makes an address a node's own, never whose it is not. An
//! inventory `namePattern` reserves the names it matches for hosts that have not joined.
//! A Node's status is written by the node itself: a self-report.
//!
//! A DNS name also denotes the host named by its first label (`worker-2.example.com`
//! denotes host `worker-2`), so a host's FQDN is its own even where only its short name is
//! on record.

use std::collections::BTreeSet;

use crate::decision::common::admitted_machines;
use crate::inventory::{Claimant, Inventory, MachineInfo};
use crate::policy::Policy;
use crate::vocabulary::AddressValue;

/// How much a claim weighs, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Weight {
    /// Written by the node itself: its Node status (or its kubelet's certificate).
    SelfReport,
    /// A name an inventory pattern reserves for a host not yet joined: it outranks a
    /// self-report, and yields to a trusted source that gives the name to a host.
    Reservation,
    /// A trusted Machine, a named inventory entry, a Node's name.
    Trusted,
}

/// A claim by another host: its weight, and the host with its evidence, as messages name it.
pub(super) struct Claim {
    pub weight: Weight,
    pub owner: String,
}

/// Everyone who claims a SAN, seen from the node that asks for it.
pub(super) struct Claims {
    /// Whether a trusted source of the node's own host claims it (its name included).
    pub trusted_for_node: bool,
    /// Claims by other hosts.
    pub others: Vec<Claim>,
}

impl Claims {
    /// The weightiest claim by another host, the first such when several weigh the same.
    pub fn strongest_other(&self) -> Option<&Claim> {
        self.others
            .iter()
            .fold(None, |best: Option<&Claim>, claim| match best {
                Some(b) if b.weight >= claim.weight => Some(b),
                _ => Some(claim),
            })
    }
}

/// Whether a trusted Machine speaks for the host that became (or is becoming) `node`:
/// linked to it, or not linked yet and giving `node` among its host names.
pub(super) fn speaks_for(machine: &MachineInfo, node: &str) -> bool {
    match &machine.node_ref {
        Some(linked) => linked == node,
        None => machine.node_names().any(|name| name == node),
    }
}

/// Another host name of an unlinked Machine that speaks for `node` under which a Node is
/// registered.
fn other_registered_host(
    machine: &MachineInfo,
    node: &str,
    inventory: &Inventory,
) -> Option<String> {
    if machine.node_ref.is_some() {
        return None;
    }
    machine
        .node_names()
        .find(|name| name != node && inventory.node(name).is_some())
}

fn trusted(machine: &MachineInfo, policy: &Policy) -> bool {
    !machine.deleting
        && policy
            .machines
            .admits(&machine.api_group, &machine.namespace)
}

/// The host a Machine speaks for — its linked Node, else the host names it gives — with
/// the Machine as evidence.
fn machine_owner(machine: &MachineInfo) -> String {
    if let Some(node) = &machine.node_ref {
        return format!("{node} ({})", machine.describe());
    }
    let names: BTreeSet<String> = machine.node_names().collect();
    if names.is_empty() {
        format!("{} (a Machine naming no host)", machine.describe())
    } else {
        let names: Vec<String> = names.into_iter().collect();
        format!("{} ({})", names.join(" / "), machine.describe())
    }
}

/// The names of `node`'s own host: its name and every host name its trusted Machines give.
fn own_names(node: &str, inventory: &Inventory, policy: &Policy) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = admitted_machines(inventory, policy, node)
        .filter(|m| !m.deleting && speaks_for(m, node))
        .flat_map(MachineInfo::node_names)
        .collect();
    names.insert(node.to_string());
    names
}

fn first_label(name: &str) -> Option<&str> {
    name.split_once('.').map(|(label, _)| label)
}

/// Every claim on `value`, seen from `node`.
pub(super) fn claims(
    value: &AddressValue,
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
) -> Claims {
    let mut claims = Claims {
        trusted_for_node: *value == AddressValue::Dns(node.to_string()),
        others: Vec::new(),
    };
    for claimant in inventory.claimants(value) {
        match claimant {
            Claimant::NodeName(name) if &**name == node => claims.trusted_for_node = true,
            Claimant::NodeName(name) => claims.others.push(Claim {
                weight: Weight::Trusted,
                owner: format!("{name} (Node {name}'s name)"),
            }),
            Claimant::NodeStatus(name) if &**name == node => {}
            Claimant::NodeStatus(name) => claims.others.push(Claim {
                weight: Weight::SelfReport,
                owner: format!("{name} (Node {name} status)"),
            }),
            Claimant::Machine(key) => {
                let Some(machine) = inventory.machine(key) else {
                    continue;
                };
                if !trusted(machine, policy) {
                    continue;
                }
                if speaks_for(machine, node) {
                    claims.trusted_for_node = true;
                    // Not linked yet and naming another registered Node too: one host,
                    // two identities; it backs neither more than the other.
                    if let Some(other) = other_registered_host(machine, node, inventory) {
                        claims.others.push(Claim {
                            weight: Weight::Trusted,
                            owner: format!(
                                "{other} ({}, not linked yet, names both {other} and {node})",
                                machine.describe()
                            ),
                        });
                    }
                } else {
                    claims.others.push(Claim {
                        weight: Weight::Trusted,
                        owner: machine_owner(machine),
                    });
                }
            }
        }
    }
    for entry in &policy.inventory {
        let Some(name) = entry.name.as_deref() else {
            continue;
        };
        if *value != AddressValue::Dns(name.to_string())
            && !entry.addresses.iter().any(|a| a.is_alias_of(value))
        {
            continue;
        }
        if name == node {
            claims.trusted_for_node = true;
        } else {
            claims.others.push(Claim {
                weight: Weight::Trusted,
                owner: format!("{name} ({})", entry.describe()),
            });
        }
    }
    if let AddressValue::Dns(name) = value {
        let own = own_names(node, inventory, policy);
        let label = first_label(name);
        // A name of the node's own host, or one under it, is reserved for nobody else.
        if !own.contains(name.as_str()) && label.is_none_or(|l| !own.contains(l)) {
            reservations(name, label, policy, &mut claims.others);
        }
        if let Some(label) = label
            && !own.contains(label)
        {
            host_named(label, inventory, policy, &mut claims.others);
        }
    }
    claims
}

/// Inventory patterns reserving `name` (or the host its first label names) for a host
/// not yet joined.
fn reservations(name: &str, label: Option<&str>, policy: &Policy, others: &mut Vec<Claim>) {
    for entry in &policy.inventory {
        let Some(pattern) = &entry.name_pattern else {
            continue;
        };
        let reserved = if pattern.is_match(name) {
            Some(name)
        } else {
            label.filter(|label| pattern.is_match(label))
        };
        if let Some(host) = reserved {
            others.push(Claim {
                weight: Weight::Reservation,
                owner: format!("{host} ({}, a host not joined yet)", entry.describe()),
            });
        }
    }
}

/// Trusted claims that `label` is the name of another host: a Node's name, a trusted
/// Machine's host name or `nodeRef`, a named inventory entry.
fn host_named(label: &str, inventory: &Inventory, policy: &Policy, others: &mut Vec<Claim>) {
    let value = AddressValue::Dns(label.to_string());
    for claimant in inventory.claimants(&value) {
        match claimant {
            Claimant::NodeName(name) => others.push(Claim {
                weight: Weight::Trusted,
                owner: format!("{name} (Node {name}'s name)"),
            }),
            Claimant::NodeStatus(_) => {}
            Claimant::Machine(key) => {
                if let Some(machine) = inventory.machine(key)
                    && trusted(machine, policy)
                    && machine.node_names().any(|n| n == label)
                {
                    others.push(Claim {
                        weight: Weight::Trusted,
                        owner: machine_owner(machine),
                    });
                }
            }
        }
    }
    for entry in &policy.inventory {
        if entry.name.as_deref() == Some(label) {
            others.push(Claim {
                weight: Weight::Trusted,
                owner: format!("{label} ({})", entry.describe()),
            });
        }
    }
}
