//! Blast radius of a stolen bootstrap credential: the two limits on **new** node
//! identities. Renewals and serving CSRs of registered Nodes never pass through here, so
//! garbage submitted with a bootstrap credential cannot halt certificate rotation.
//!
//! 1. Flood guard: more pending new-node client CSRs in the last hour than
//!    `client.maxPending` pauses new-node approvals. Only CSRs that could be approved
//!    count: from a configured bootstrapper, parseable, for a valid name with no Node.
//! 2. Rate cap: at most `client.maxNewNodesPerHour` node identities approved for
//!    bootstrappers per hour (by anyone: a manual approval mints an identity too), new nodes
//!    and recoveries alike; a recovery waits on it too (`check_rate_cap`).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::common::within;
use super::{CsrFacts, Reason, Refusal, refuse};
use crate::inventory::{CsrState, CsrSummary, Inventory};
use crate::policy::Policy;
use crate::vocabulary::{CLIENT_SIGNER, NODE_USER_PREFIX};

/// The window both limits count in.
pub const FLOOD_WINDOW: Duration = Duration::from_secs(3600);

pub(super) fn check_new_node(
    csr: &CsrFacts,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Result<(), Refusal> {
    let limit = max_pending(inventory, policy);
    let pending = count_pending(inventory, policy, now, Some(&csr.name)) + 1;
    if pending > limit {
        return Err(refuse(
            Reason::TooManyPending,
            format!(
                "{pending} new-node client CSRs pending in the last hour exceed client.maxPending {limit}; new-node approvals paused (renewals and serving certificates continue)"
            ),
        ));
    }
    check_rate_cap(csr, inventory, policy, now)
}

/// The hourly cap alone: every identity a bootstrapper obtains counts against it and waits
/// on it, a new node's or a recovered one's — a stolen bootstrap credential asking for the
/// identities of offline nodes is bounded like one asking for new names.
pub(super) fn check_rate_cap(
    csr: &CsrFacts,
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
) -> Result<(), Refusal> {
    let cap = max_new_nodes(inventory, policy, now);
    let approved = count_new_nodes_approved(inventory, now, &csr.name);
    if approved >= cap {
        return Err(refuse(
            Reason::NewNodeRateLimited,
            format!(
                "{approved} node identities approved for bootstrappers in the last hour (new nodes and recoveries) reach client.maxNewNodesPerHour {cap}; this one waits"
            ),
        ));
    }
    Ok(())
}

fn window_start(now: Timestamp) -> Timestamp {
    now.checked_sub(SignedDuration::try_from(FLOOD_WINDOW).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MIN)
}

/// The flood-guard threshold for this inventory and policy.
pub fn max_pending(inventory: &Inventory, policy: &Policy) -> usize {
    let machines = inventory
        .machine_counts()
        .filter(|(group, namespace, _)| policy.machines.admits(group, namespace))
        .map(|(_, _, count)| count)
        .sum();
    policy
        .client
        .max_pending
        .limit(machines, inventory.node_count(), policy.inventory.len())
}

/// Pending client CSRs created within the window that could become new nodes — from a
/// configured bootstrapper, for a valid node name that has no Node — other than `except`.
pub fn count_pending(
    inventory: &Inventory,
    policy: &Policy,
    now: Timestamp,
    except: Option<&str>,
) -> usize {
    inventory
        .pending_since(window_start(now))
        .filter(|c| Some(&*c.name) != except)
        .filter(|c| could_become_new_node(c, inventory, policy))
        .count()
}

fn could_become_new_node(csr: &CsrSummary, inventory: &Inventory, policy: &Policy) -> bool {
    csr.signer == CLIENT_SIGNER
        && csr
            .node_name
            .as_deref()
            .is_some_and(|node| inventory.node(node).is_none())
        && policy
            .client
            .bootstrappers
            .iter()
            .any(|b| b.matches(&csr.requester, &csr.groups))
}

/// The new-node cap in force: a number, or (`auto`) the hosts known to be joining —
/// admitted Machines that can still vouch (not linked, created within `client.joinWindow`)
/// or that were created within the window, and named inventory hosts — plus a margin. An
/// unlinked Machine older than the join window vouches for nothing, so a cluster's stale
/// Machines do not raise the cap.
pub fn max_new_nodes(inventory: &Inventory, policy: &Policy, now: Timestamp) -> usize {
    let since = window_start(now);
    let join_window = policy.client.join_window.0;
    let machines = inventory
        .machines()
        .filter(|m| !m.deleting && policy.machines.admits(&m.api_group, &m.namespace))
        .filter(|m| {
            m.created.is_some_and(|t| {
                t >= since || (m.node_ref.is_none() && within(now.duration_since(t), join_window))
            })
        })
        .count();
    let named = policy.inventory.iter().filter(|e| e.name.is_some()).count();
    policy.client.max_new_nodes_per_hour.limit(machines + named)
}

/// New node identities (client certificates not requested by a node itself) approved
/// within the window, other than `except`.
pub fn count_new_nodes_approved(inventory: &Inventory, now: Timestamp, except: &str) -> usize {
    let since = window_start(now);
    inventory
        .csrs()
        .filter(|c| &*c.name != except && c.signer == CLIENT_SIGNER)
        .filter(|c| matches!(c.state, CsrState::Approved | CsrState::Issued))
        .filter(|c| !c.requester.starts_with(NODE_USER_PREFIX))
        .filter(|c| c.approved_at.or(c.created).is_some_and(|t| t >= since))
        .count()
}
