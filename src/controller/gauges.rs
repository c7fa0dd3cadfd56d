//! The gauges that describe the queue of pending CSRs, computed from the caches just
//! before each scrape.

use jiff::Timestamp;

use crate::cluster::ClusterCache;
use crate::decision::{count_new_nodes_approved, max_new_nodes, max_pending};
use crate::http::{Readiness, SourceState};
use crate::inventory::CsrState;
use crate::metrics::Metrics;
use crate::policy_watch::PolicyHolder;
use crate::vocabulary::Signer;
use crate::vocabulary::{CLIENT_SIGNER, NODE_USER_PREFIX};

/// Refreshes the gauges that describe the queue of pending CSRs.
pub(super) fn refresh_gauges(cache: &ClusterCache, policy: &PolicyHolder, metrics: &Metrics) {
    let inventory = cache.read();
    let now = Timestamp::now();
    let mut oldest = 0.0f64;
    for signer in Signer::ALL.map(Signer::name) {
        let pending: Vec<_> = inventory
            .csrs()
            .filter(|c| c.signer == signer && c.state == CsrState::Pending)
            .collect();
        metrics
            .pending_csrs
            .with_label_values(&[signer])
            .set(pending.len() as f64);
        for c in pending {
            if let Some(created) = c.created {
                oldest = oldest.max(now.duration_since(created).as_secs_f64());
            }
        }
    }
    metrics.oldest_pending_age.set(oldest);
    let recovering = inventory
        .csrs()
        .filter(|c| c.signer == CLIENT_SIGNER && c.state == CsrState::Pending)
        .filter(|c| !c.requester.starts_with(NODE_USER_PREFIX))
        .filter(|c| {
            c.node_name
                .as_deref()
                .is_some_and(|n| inventory.node(n).is_some())
        })
        .count();
    // No policy in force: no threshold either (the gauge keeps 0).
    let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    if let Some(policy) = policy.get() {
        metrics
            .max_pending
            .set(gauge(max_pending(&inventory, &policy)));
        metrics
            .max_new_nodes
            .set(gauge(max_new_nodes(&inventory, &policy, now)));
    }
    metrics.recovery_pending.set(gauge(recovering));
    metrics
        .new_nodes_last_hour
        .set(gauge(count_new_nodes_approved(&inventory, now, "")));
}

/// Refreshes `csr_approver_source_synced`: one series per source registered now (a source
/// whose API was removed loses its series).
pub(super) fn refresh_source_gauges(readiness: &Readiness, metrics: &Metrics) {
    metrics.source_synced.reset();
    for (name, state) in readiness.sources() {
        let synced = i64::from(state == SourceState::Synced);
        metrics
            .source_synced
            .with_label_values(&[&name])
            .set(synced);
    }
}
