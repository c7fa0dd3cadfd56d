//! Certificate recovery: a bootstrapper asks for a client certificate for a Node that
//! exists. Every kubelet does this after the cluster was off longer than its client
//! certificate lives (it falls back to its bootstrap credential); a thief of that
//! credential asks exactly the same for a live node. Without `client.recovery.enabled` an
//! admin decides (`NodeAlreadyExists`, never denied). With it, in order:
//!
//! 1. The Node's Lease (`kube-node-lease/<name>`), read moments ago, has not been renewed
//!    for at least `client.recovery.offlineFor`: the node is really offline. No Lease, or
//!    no renewTime, proves nothing.
//! 2. The CSR was created after that last renewal: a request made while the node still
//!    heartbeated came from someone else.
//! 3. The identity still matches: a trusted Machine linked to the Node and not being
//!    deleted; or, when no trusted Machine names the node at all, an inventory entry
//!    matching the name. A Machine linked elsewhere or being deleted decides alone.
//! 4. At most one bootstrapper-requested identity per node per `client.recovery.window`
//!    (its first join included): a second request is someone else's.
//!
//! Anything short of that stays `NodeAlreadyExists`, for an admin, with the step that failed.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::common::{admitted_machines, within};
use super::generation::Generation;
use super::{Approval, CsrFacts, Reason, Refusal, refuse};
use crate::evidence::Wanted;
use crate::inventory::{CsrState, Inventory};
use crate::policy::Policy;
use crate::vocabulary::{CLIENT_SIGNER, NODE_USER_PREFIX};

/// What an admin should check before approving by hand, whatever stopped the automation.
fn for_an_admin(node: &str, why: &str) -> Refusal {
    refuse(
        Reason::NodeAlreadyExists,
        format!(
            "Node {node} exists and a bootstrapper asks for its identity ({why}). A node off longer than its client certificate lives asks this; so does anyone holding the bootstrap credential. Verify {node} is the host you expect and offline (kubectl get lease -n kube-node-lease {node}: no recent renewTime)"
        ),
    )
}

pub(super) fn decide_recovery(
    csr: &CsrFacts,
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Result<Approval, Refusal> {
    let recovery = &policy.client.recovery;
    if !recovery.enabled {
        return Err(for_an_admin(node, "client.recovery is off"));
    }
    let lease_name = format!("kube-node-lease/{node}");
    let Some(reading) = inventory.observations().lease(node, now) else {
        return Err(
            for_an_admin(node, &format!("its Lease {lease_name} has not been read"))
                .wanting(Wanted::NodeLease(node.to_string())),
        );
    };
    let renewed = match &reading.outcome {
        Ok(lease) => lease.renewed,
        Err(error) => {
            return Err(for_an_admin(
                node,
                &format!("its Lease {lease_name} could not be read: {error}"),
            ));
        }
    };
    let Some(renewed) = renewed else {
        return Err(for_an_admin(
            node,
            &format!("its Lease {lease_name} has no renewTime: nothing shows the node offline"),
        ));
    };
    let offline = now.duration_since(renewed);
    let required = recovery.offline_for.0;
    // A renewal in the future (the node's clock ahead) shows the node alive.
    if !Duration::try_from(offline).is_ok_and(|d| d >= required) {
        return Err(for_an_admin(
            node,
            &format!(
                "its Lease {lease_name} was renewed {} ago, less than client.recovery.offlineFor {}: the node may be alive",
                describe_age(offline),
                humantime::format_duration(required)
            ),
        ));
    }
    if csr.created.is_none_or(|created| created <= renewed) {
        return Err(for_an_admin(
            node,
            &format!(
                "the CSR was created before the node's last Lease renewal ({renewed}): it was asked for while the node still heartbeated"
            ),
        ));
    }
    let generation =
        matching_identity(node, inventory, policy).map_err(|why| for_an_admin(node, &why))?;
    let identity = &generation.record.source;
    check_once_per_window(csr, node, inventory, recovery.window.0, now)?;
    Ok(Approval {
        mints_for: Some(generation.record.clone()),
        vouches_for: Vec::new(),
        reason: Reason::NodeRecovery,
        message: format!(
            "Node {node} recovers its identity: its Lease {lease_name} has not been renewed for {} (client.recovery.offlineFor {}), {identity} still names it, and no other bootstrapper-requested identity for it was approved within client.recovery.window {}",
            describe_age(offline),
            humantime::format_duration(required),
            humantime::format_duration(recovery.window.0)
        ),
    })
}

fn describe_age(age: SignedDuration) -> String {
    humantime::format_duration(Duration::from_secs(age.as_secs().max(0).unsigned_abs())).to_string()
}

/// The host generation that still vouches that `node` is this cluster's host, or why
/// nobody does.
fn matching_identity(
    node: &str,
    inventory: &Inventory,
    policy: &Policy,
) -> Result<Generation, String> {
    let machines: Vec<_> = admitted_machines(inventory, policy, node).collect();
    if let Some(machine) = machines
        .iter()
        .find(|m| !m.deleting && m.node_ref.as_deref() == Some(node))
    {
        return Ok(Generation::of_machine(machine));
    }
    if let Some(machine) = machines.first() {
        let state = match (&machine.node_ref, machine.deleting) {
            (_, true) => "is being deleted".to_string(),
            (Some(other), false) => format!("is linked to Node {other}"),
            (None, false) => format!("is not linked to Node {node}"),
        };
        return Err(format!("{} names the host but {state}", machine.describe()));
    }
    policy
        .inventory
        .iter()
        .find(|e| e.matches(node))
        .map(|e| Generation::of_entry(e, node))
        .ok_or_else(|| "no Machine is linked to it and no inventory entry matches it".to_string())
}

/// No other identity for `node` minted within `window`: none in its durable record
/// (which outlives the CSRs the cleaner deletes an hour after approval), and no client CSR
/// for it from a bootstrapper approved, by anyone, within it.
fn check_once_per_window(
    csr: &CsrFacts,
    node: &str,
    inventory: &Inventory,
    window: Duration,
    now: Timestamp,
) -> Result<(), Refusal> {
    if let Some(minted) = inventory.identity(node).and_then(|record| {
        record.spec.minted.iter().rev().find(|m| {
            !m.is_for(&csr.name, csr.uid.as_deref()) && within(now.duration_since(m.at), window)
        })
    }) {
        return Err(for_an_admin(
            node,
            &format!(
                "its identity was already minted at {} by CSR {} ({}, NodeIdentity {node}) within client.recovery.window {}: one recovery per node per window",
                minted.at,
                minted.csr,
                minted.reason,
                humantime::format_duration(window)
            ),
        ));
    }
    let earlier = inventory.csrs_for_node(node).find(|other| {
        *other.name != *csr.name
            && other.signer == CLIENT_SIGNER
            && !other.requester.starts_with(NODE_USER_PREFIX)
            && matches!(other.state, CsrState::Approved | CsrState::Issued)
            && other
                .approved_at
                .or(other.created)
                .is_some_and(|t| within(now.duration_since(t), window))
    });
    match earlier {
        None => Ok(()),
        Some(other) => Err(for_an_admin(
            node,
            &format!(
                "CSR {} from {} for it is already {} within client.recovery.window {}: one recovery per node per window",
                other.name,
                other.requester,
                other.state.as_str(),
                humantime::format_duration(window)
            ),
        )),
    }
}
