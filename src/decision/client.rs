//! Client CSRs (`kubernetes.io/kube-apiserver-client-kubelet`): a node identity for a
//! host that is expected, or for the node that already holds it.
//!
//! 1. No SANs (`UnexpectedSans`); usages exactly {digital signature, client auth},
//!    optionally with key encipherment (`BadUsages`).
//! 2. Requested by `system:node:<name>`: a renewal. The requester must be the node the CN
//!    names (`RequesterMismatch`), in `system:nodes` (`MissingNodesGroup`), renewals
//!    enabled (`RenewalsDisabled`), its Node registered (`NodeNotRegistered`).
//! 3. Otherwise requested by a configured bootstrapper (`UnknownRequester`).
//! 4. The Node exists: only certificate recovery may approve (see `recovery`), within the
//!    hourly cap on identities (see `flood`).
//! 5. A new node: a Machine or an inventory entry vouches for the host, in the join window
//!    (`vouch_for_new_node`: `NewNodeMachine`, `NewNodeInventory`).
//! 6. One identity per host generation, under any of its names, remembered past the CSRs
//!    (`generation`: `DuplicateClientRequest`, `AmbiguousHost`).
//! 7. The flood guard and the new-node rate limit (see `flood`).

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;

use super::common::{admitted_machines, check_nodes_group, usage_set, within};
use super::generation::{Generation, check_no_identity_yet, check_unambiguous};
use super::{Approval, CsrFacts, MACHINE_CREATION_SKEW, Reason, Refusal, flood, recovery, refuse};
use crate::inventory::{Inventory, MachineInfo, TypedAddress};
use crate::policy::Policy;
use crate::request::ParsedRequest;
use crate::vocabulary::NODE_USER_PREFIX;

pub(super) fn decide_client(
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
        let approval = recovery::decide_recovery(csr, node, inventory, policy, now)?;
        flood::check_rate_cap(csr, inventory, policy, now)?;
        return Ok(Approval {
            message: format!("{}; requested by {bootstrapper}", approval.message),
            ..approval
        });
    }
    let Vouched {
        reason,
        message,
        generation,
    } = vouch_for_new_node(csr, node, inventory, policy, now)?;
    if !policy.client.allow_duplicates {
        check_no_identity_yet(csr, node, &generation, inventory, policy, now)?;
    }
    flood::check_new_node(csr, inventory, policy, now)?;
    Ok(Approval {
        reason,
        message: format!("{message}; requested by {bootstrapper}"),
        mints_for: Some(generation.record),
        vouches_for: Vec::new(),
    })
}

/// Evidence that `node` is a host expected to join, and the host generation it is.
struct Vouched {
    reason: Reason,
    message: String,
    generation: Generation,
}

/// Who vouches for a new node, in order:
/// 1. A Machine linked to Node `node` holds the name: nobody else may vouch (the identity
///    was issued once already; the Node's absence does not free the name).
/// 2. A Machine that names the host and is free, not being deleted, and created in the join
///    window before the CSR vouches for it.
///    Another live Machine naming the same host makes the name ambiguous
///    (`generation::check_unambiguous`).
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
                check_unambiguous(machine, &machines, node)?;
                return Ok(Vouched {
                    generation: Generation::of_machine(machine),
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
        generation: Generation::of_entry(entry, node),
        reason: Reason::NewNodeInventory,
        message: format!("{} matches node {node}", entry.describe()),
    })
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
        mints_for: None,
        vouches_for: Vec::new(),
        reason: Reason::ClientRenewal,
        message: format!(
            "renewal requested by {} for its own registered Node",
            csr.username
        ),
    })
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
