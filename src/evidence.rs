//! Evidence no watch holds, read on demand for the few CSRs that need it: a Node's Lease in
//! `kube-node-lease` (certificate recovery) and the serving certificate a kubelet presents
//! today (serving renewals). Watching every Lease would cost an event per node every 10 s
//! for a question asked after long shutdowns only.
//!
//! `decide` says which evidence it lacks (`Wanted`); the controller reads it, records it
//! here with the time it was read, and decides again. Evidence older than
//! `EVIDENCE_MAX_AGE` is no evidence: a Lease renewed since, or a certificate replaced,
//! must not be judged by what was true a while ago. Pure: the reading lives in `gather`.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::vocabulary::AddressValue;

/// How long a reading stays evidence (and how far from the decision's instant it may be).
pub const EVIDENCE_MAX_AGE: Duration = Duration::from_secs(30);

/// Evidence a decision asks the controller to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Wanted {
    /// The Lease `kube-node-lease/<node>`: when the kubelet last renewed it.
    NodeLease(String),
    /// The serving certificate the kubelet of `<node>` presents on its port.
    KubeletCertificate(String),
}

/// One reading: what was found, or why nothing could be, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed<T> {
    pub at: Timestamp,
    pub outcome: Result<T, String>,
}

/// A Node's Lease as read: `renewed` is `None` when the Lease has no renewTime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLease {
    pub renewed: Option<Timestamp>,
}

/// The serving certificate a kubelet presented, after it verified against the
/// kubelet-serving CA for the address dialled, was in its validity period, and named the
/// node as `system:node:<node>` in `system:nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletCertificate {
    /// The address and port dialled, for messages.
    pub endpoint: String,
    pub serial: String,
    pub not_after: Timestamp,
    /// Its DNS and IP SANs, canonical.
    pub addresses: Vec<AddressValue>,
}

/// Readings by node, newest only.
#[derive(Debug, Clone, Default)]
pub struct Observations {
    leases: HashMap<String, Observed<NodeLease>>,
    kubelet_certificates: HashMap<String, Observed<KubeletCertificate>>,
}

fn fresh<T>(reading: Option<&Observed<T>>, now: Timestamp) -> Option<&Observed<T>> {
    let max_age = SignedDuration::try_from(EVIDENCE_MAX_AGE).unwrap_or(SignedDuration::MAX);
    // Within the window either side: `check` decides at the instant it started, after
    // which it reads; a reading further off (a clock step) is not trusted.
    reading.filter(|r| now.duration_since(r.at).abs() <= max_age)
}

/// Older than `EVIDENCE_MAX_AGE` at `now`: never evidence again, so not worth keeping.
fn expired<T>(reading: &Observed<T>, now: Timestamp) -> bool {
    let max_age = SignedDuration::try_from(EVIDENCE_MAX_AGE).unwrap_or(SignedDuration::MAX);
    now.duration_since(reading.at) > max_age
}

impl Observations {
    /// The Lease of `node`, if read within `EVIDENCE_MAX_AGE` of `now`.
    pub fn lease(&self, node: &str, now: Timestamp) -> Option<&Observed<NodeLease>> {
        fresh(self.leases.get(node), now)
    }

    /// The kubelet certificate of `node`, if read within `EVIDENCE_MAX_AGE` of `now`.
    pub fn kubelet_certificate(
        &self,
        node: &str,
        now: Timestamp,
    ) -> Option<&Observed<KubeletCertificate>> {
        fresh(self.kubelet_certificates.get(node), now)
    }

    pub fn record_lease(&mut self, node: &str, reading: Observed<NodeLease>) {
        let now = reading.at;
        self.leases.insert(node.to_string(), reading);
        self.leases.retain(|_, r| !expired(r, now));
    }

    pub fn record_kubelet_certificate(
        &mut self,
        node: &str,
        reading: Observed<KubeletCertificate>,
    ) {
        let now = reading.at;
        self.kubelet_certificates.insert(node.to_string(), reading);
        self.kubelet_certificates.retain(|_, r| !expired(r, now));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn a_reading_is_evidence_for_a_short_while_only() {
        let mut observations = Observations::default();
        let reading = Observed {
            at: at(0),
            outcome: Ok(NodeLease { renewed: None }),
        };
        observations.record_lease("n", reading.clone());
        assert_eq!(observations.lease("n", at(30)), Some(&reading));
        assert_eq!(observations.lease("n", at(31)), None, "too old");
        assert_eq!(
            observations.lease("n", at(-30)),
            Some(&reading),
            "read after `now`"
        );
        assert_eq!(observations.lease("n", at(-31)), None, "far from `now`");
        assert_eq!(observations.lease("other", at(0)), None);
    }

    #[test]
    fn stale_readings_are_dropped_as_new_ones_arrive() {
        let mut observations = Observations::default();
        for (node, second) in [("a", 0), ("b", 100)] {
            observations.record_lease(
                node,
                Observed {
                    at: at(second),
                    outcome: Err("not found".to_string()),
                },
            );
        }
        assert_eq!(observations.leases.len(), 1, "a's reading is gone");
    }
}
