//! Host generations, the unit of node identity (docs/design.md §3.0).
//!
//! A host generation is what one trusted statement describes: one Machine (one creation
//! of it), or one policy inventory entry (a `namePattern` entry: one per name it admits).
//! It has every name its source gives the host. The rule this module enforces:
//!
//! **One host generation, one node identity, under any of its names.** A bootstrapper may
//! mint an identity for a generation only while none was minted for it before, which is
//! asked of every name it has and of every memory csr-approver keeps:
//!
//! 1. the durable record (`NodeIdentity`), by generation: an identity minted for this
//!    generation under any name;
//! 2. the durable record, by name: an identity minted under one of its names since the
//!    generation began (a Machine created later is a new generation; an inventory entry
//!    has no beginning, so only deleting the record frees its names);
//! 3. the Nodes: one of its other names already registered;
//! 4. the CSRs still held (approvals by anyone, including those not recorded, in the join
//!    window): one approved under one of its names since the generation began.
//!
//! A name two live generations claim (two trusted Machines naming the same host) is
//! ambiguous: neither mints (`AmbiguousHost`, for an admin, naming both).

use jiff::{SignedDuration, Timestamp};

use super::common::within;
use super::{CsrFacts, MACHINE_CREATION_SKEW, Reason, Refusal, refuse};
use crate::identity::{HostGeneration, Minted};
use crate::inventory::{CsrState, Inventory, MachineInfo};
use crate::policy::{InventoryEntry, Policy};
use crate::vocabulary::{AddressValue, CLIENT_SIGNER};

/// A host generation with when it began, as far as its source says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Generation {
    pub record: HostGeneration,
    /// The Machine's creation: identities minted before it belong to an earlier
    /// generation. `None` for inventory entries, which last as long as the policy says.
    pub since: Option<Timestamp>,
}

impl Generation {
    pub fn of_machine(machine: &MachineInfo) -> Generation {
        let created = machine
            .created
            .map_or_else(|| "unknown".to_string(), |t| t.to_string());
        let mut names: Vec<String> = machine.node_names().collect();
        names.sort();
        names.dedup();
        Generation {
            record: HostGeneration {
                key: format!(
                    "Machine {}/{}/{} created {created}",
                    machine.api_group, machine.namespace, machine.name
                ),
                source: machine.describe(),
                names,
            },
            since: machine.created,
        }
    }

    /// The generation `entry` describes for `node` (which it matches).
    pub fn of_entry(entry: &InventoryEntry, node: &str) -> Generation {
        let key = match (&entry.name, &entry.name_pattern) {
            (Some(name), _) => format!("inventory name {name}"),
            (None, Some(pattern)) => {
                format!("inventory namePattern {} name {node}", pattern.as_written())
            }
            (None, None) => format!("inventory name {node}"),
        };
        let mut names = vec![node.to_string()];
        if entry.name.is_some() {
            names.extend(entry.addresses.iter().filter_map(|a| match a {
                AddressValue::Dns(name) => Some(name.clone()),
                AddressValue::Ip(_) | AddressValue::Invalid(_) => None,
            }));
        }
        names.sort();
        names.dedup();
        Generation {
            record: HostGeneration {
                key,
                source: entry.describe(),
                names,
            },
            since: None,
        }
    }

    /// The instant before which an identity belongs to an earlier generation, allowing
    /// for clock skew between the machine controller and the API server.
    fn start(&self) -> Option<Timestamp> {
        self.since.map(|t| {
            t.checked_sub(SignedDuration::try_from(MACHINE_CREATION_SKEW).unwrap_or_default())
                .unwrap_or(t)
        })
    }
}

/// The host generation a trusted Machine describes, as its identities are recorded.
pub fn machine_generation(machine: &MachineInfo) -> HostGeneration {
    Generation::of_machine(machine).record
}

/// The host generation an inventory entry describes for `node`, as recorded.
pub fn inventory_generation(entry: &InventoryEntry, node: &str) -> HostGeneration {
    Generation::of_entry(entry, node).record
}

/// Whether an identity was already minted for `generation`, under any of its names
/// (module comment, steps 1–4). `node` is the name the CSR asks for.
pub(super) fn check_no_identity_yet(
    csr: &CsrFacts,
    node: &str,
    generation: &Generation,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Result<(), Refusal> {
    // The record of this very CSR, written just before a crash, is no earlier identity.
    let earlier = |m: &&Minted| !m.is_for(&csr.name, csr.uid.as_deref());
    let source = &generation.record.source;
    // What frees the names of a re-provisioned host: a new Machine is a new generation; an
    // inventory generation's names are freed by an admin deleting the record (and the
    // minting CSR, while the CSR cleaner has not: both are this generation's memory).
    let remedy = |record: &str, minted: &Minted| {
        if generation.since.is_some() {
            return "a re-provisioned host gets a new Machine".to_string();
        }
        let csr_too = if inventory.csr_state(&minted.csr).is_some() {
            format!(" and its CSR (kubectl delete csr {})", minted.csr)
        } else {
            String::new()
        };
        format!(
            "if the host was re-provisioned, delete its record (kubectl delete nodeidentity {record}){csr_too} to allow a new identity"
        )
    };
    // 1. By generation, in the durable record.
    if let Some((minted_node, minted)) = inventory
        .minted_for_generation(&generation.record.key)
        .find(|(_, m)| earlier(m))
    {
        return Err(duplicate(format!(
            "{source} already has its identity: system:node:{minted_node} was minted for it by CSR {} at {} (NodeIdentity {minted_node}); one host generation, one identity; {}",
            minted.csr,
            minted.at,
            remedy(minted_node, minted)
        )));
    }
    let start = generation.start();
    for name in &generation.record.names {
        // 2. By name, in the durable record, since the generation began.
        if let Some(record) = inventory.identity(name)
            && let Some(minted) = record
                .spec
                .minted
                .iter()
                .rev()
                .filter(earlier)
                .find(|m| start.is_none_or(|s| m.at >= s))
        {
            return Err(duplicate(format!(
                "host name {name} of {source} already has an identity: CSR {} ({}) at {} (NodeIdentity {name}, host generation {}); {}",
                minted.csr,
                minted.reason,
                minted.at,
                record
                    .spec
                    .host_generation
                    .as_ref()
                    .map_or("unrecorded", |g| g.source.as_str()),
                remedy(name, minted)
            )));
        }
        // 3. Another of its names already registered as a Node.
        if name != node && inventory.node(name).is_some() {
            return Err(duplicate(format!(
                "{source} names host {node} and {name}, and Node {name} is registered: the host already has its identity; {}",
                if generation.since.is_some() {
                    "a re-provisioned host gets a new Machine".to_string()
                } else {
                    format!("if the host was re-provisioned, delete Node {name} first")
                }
            )));
        }
        // 4. The CSRs still held, approved by anyone.
        if let Some(other) = inventory.csrs_for_node(name).find(|other| {
            *other.name != *csr.name
                && other.signer == CLIENT_SIGNER
                && matches!(other.state, CsrState::Approved | CsrState::Issued)
                && other
                    .created
                    .is_some_and(|t| within(now.duration_since(t), policy.client.join_window.0))
                && start.is_none_or(|s| other.created.is_some_and(|t| t >= s))
        }) {
            let under = if name == node {
                String::new()
            } else {
                format!(" under its other name {name}")
            };
            let remedy = if generation.since.is_some() {
                "a re-provisioned host gets a new Machine".to_string()
            } else {
                format!(
                    "if the host was re-provisioned, delete that CSR (kubectl delete csr {}) to allow a new identity",
                    other.name
                )
            };
            return Err(duplicate(format!(
                "client CSR {} for node {name} is already {}{under} and {source} has no registered Node yet; {remedy}",
                other.name,
                other.state.as_str(),
            )));
        }
    }
    Ok(())
}

fn duplicate(message: String) -> Refusal {
    refuse(Reason::DuplicateClientRequest, message)
}

/// Two live trusted Machines naming the same host are two generations claiming one name:
/// neither may mint (module comment).
pub(super) fn check_unambiguous(
    vouching: &MachineInfo,
    others: &[&MachineInfo],
    node: &str,
) -> Result<(), Refusal> {
    let vouching_key = vouching.key();
    let rivals: Vec<String> = others
        .iter()
        .filter(|m| !m.deleting && m.key() != vouching_key)
        .filter(|m| m.addresses.iter().any(|a| a.names_host(node)))
        .map(|m| m.describe())
        .collect();
    if rivals.is_empty() {
        return Ok(());
    }
    Err(refuse(
        Reason::AmbiguousHost,
        format!(
            "host {node} is named by {} and by {}: two live host generations claim the name, so neither vouches; delete the stale Machine, or approve by hand after checking the host",
            vouching.describe(),
            rivals.join(", ")
        ),
    ))
}
