//! The decisions csr-approver wrote in the last few minutes, as the CSR watch showed them: a
//! new leader (or a restarted replica) explains those its writer, stopped between the
//! condition and the Event, left unexplained. Decided CSRs are not kept in the controller's
//! store, so this is where they are found.

use std::collections::BTreeSet;

use jiff::Timestamp;

use crate::approval::EXPLAINED_AFTER_THE_FACT_WITHIN;

/// A decision of ours: when the condition says it was written, and the CSR's name and uid.
type Recent = (Timestamp, String, Option<String>);

/// Bounded by time: anything older than [`EXPLAINED_AFTER_THE_FACT_WITHIN`] is dropped on
/// the next insert, so a leader approving for days keeps minutes of them, not days.
#[derive(Debug, Default)]
pub(super) struct RecentDecisions(BTreeSet<Recent>);

impl RecentDecisions {
    fn cutoff(now: Timestamp) -> Timestamp {
        let window = jiff::SignedDuration::try_from(EXPLAINED_AFTER_THE_FACT_WITHIN)
            .unwrap_or(jiff::SignedDuration::ZERO);
        now.checked_sub(window).unwrap_or(Timestamp::MIN)
    }

    fn prune(&mut self, now: Timestamp) {
        let cutoff = Self::cutoff(now);
        while self.0.first().is_some_and(|(at, _, _)| *at < cutoff) {
            self.0.pop_first();
        }
    }

    /// Records that CSR `name` (`uid`) carries a decision of ours written `at`.
    pub(super) fn insert(&mut self, at: Timestamp, name: &str, uid: Option<&str>, now: Timestamp) {
        self.prune(now);
        if at >= Self::cutoff(now) {
            self.forget(name);
            self.0
                .insert((at, name.to_string(), uid.map(str::to_string)));
        }
    }

    pub(super) fn forget(&mut self, name: &str) {
        self.0.retain(|(_, n, _)| n != name);
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    /// Name and uid of each decision of ours still recent at `now`, oldest first.
    pub(super) fn list(&self, now: Timestamp) -> Vec<(String, Option<String>)> {
        let cutoff = Self::cutoff(now);
        self.0
            .iter()
            .filter(|(at, _, _)| *at >= cutoff)
            .map(|(_, name, uid)| (name.clone(), uid.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_recent_decisions_are_kept_and_listed() {
        let now = Timestamp::now();
        let minutes = |m: i64| now - jiff::SignedDuration::from_mins(m);
        let mut recent = RecentDecisions::default();
        recent.insert(minutes(1), "a", Some("uid-a"), now);
        recent.insert(minutes(30), "old", None, now);
        recent.insert(minutes(2), "b", None, now);
        assert_eq!(
            recent.list(now),
            [
                ("b".to_string(), None),
                ("a".to_string(), Some("uid-a".to_string()))
            ]
        );
        // Seen again (a newer event of the same CSR): one entry, not two.
        recent.insert(minutes(1), "b", None, now);
        assert_eq!(recent.list(now).len(), 2);
        recent.forget("a");
        assert_eq!(recent.list(now), [("b".to_string(), None)]);
        // Later, both have aged out: listed no more, and dropped by the next insert.
        let later = now + jiff::SignedDuration::from_mins(20);
        assert!(recent.list(later).is_empty());
        recent.insert(later, "c", None, later);
        assert_eq!(recent.0.len(), 1);
    }
}
