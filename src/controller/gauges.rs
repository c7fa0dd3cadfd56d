//! The gauges that describe the queue of pending CSRs, computed from the caches just
//! before each scrape.

use jiff::Timestamp;

use crate::cluster::ClusterCache;
use crate::decision::{count_new_nodes_approved, max_new_nodes, max_pending};
use crate::http::{Readiness, SourceState};
use crate::hygiene;
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
    let in_force = policy.get();
    if let Some(policy) = &in_force {
        metrics
            .max_pending
            .set(gauge(max_pending(&inventory, policy)));
        metrics
            .max_new_nodes
            .set(gauge(max_new_nodes(&inventory, policy, now)));
    }
    metrics.recovery_pending.set(gauge(recovering));
    for (cause, n) in hygiene::count(inventory.csrs(), in_force.as_deref(), now) {
        metrics
            .stale_csrs
            .with_label_values(&[cause.as_str()])
            .set(gauge(n));
    }
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use jiff::SignedDuration;

    use super::*;
    use crate::inventory::CsrSummary;
    use crate::policy::Policy;

    fn csr(name: &str, state: CsrState, minutes_ago: i64) -> CsrSummary {
        CsrSummary {
            name: name.into(),
            signer: Cow::Borrowed(CLIENT_SIGNER),
            created: Timestamp::now()
                .checked_sub(SignedDuration::from_mins(minutes_ago))
                .ok(),
            state,
            node_name: Some("worker-1".to_string()),
            requester: "system:node:worker-1".to_string(),
            groups: vec![Cow::Borrowed("system:nodes")],
            approved_at: None,
        }
    }

    fn stale(metrics: &Metrics, cause: &str) -> i64 {
        metrics.stale_csrs.with_label_values(&[cause]).get()
    }

    #[test]
    fn stale_csrs_are_counted_by_cause_before_each_scrape_and_go_back_to_zero() {
        let cache = ClusterCache::default();
        let policy = PolicyHolder::default();
        let metrics = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stale(&metrics, "denied"), 0, "every cause from the start");
        let _ = policy.offer::<String>(Ok(Policy::default()));
        cache.edit(|inventory| {
            inventory.upsert_csr(csr("denied-1", CsrState::Denied, 5));
            inventory.upsert_csr(csr("denied-2", CsrState::Denied, 50));
            inventory.upsert_csr(csr("old", CsrState::Pending, 20));
            inventory.upsert_csr(csr("fresh", CsrState::Pending, 1));
            inventory.upsert_csr(csr("issued", CsrState::Issued, 90));
        });
        refresh_gauges(&cache, &policy, &metrics);
        assert_eq!(stale(&metrics, "denied"), 2);
        assert_eq!(stale(&metrics, "pending_too_long"), 1);
        assert_eq!(stale(&metrics, "signer_failed"), 0);
        cache.edit(|inventory| {
            inventory.remove_csr("denied-1");
            inventory.remove_csr("denied-2");
        });
        refresh_gauges(&cache, &policy, &metrics);
        assert_eq!(
            stale(&metrics, "denied"),
            0,
            "garbage-collected: gone from the gauge"
        );
    }
}
