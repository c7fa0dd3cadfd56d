//! The decisions csr-approver wrote in the last few minutes, as the CSR watch showed them: a
//! new leader (or a restarted replica) explains those its writer, stopped between the
//! condition and the Event, left unexplained. Decided CSRs are not kept in the controller's
//! store, so this is where they are found.

use std::collections::{BTreeSet, HashMap};

use jiff::Timestamp;

use crate::approval::EXPLAINED_AFTER_THE_FACT_WITHIN;

/// Bounded by time: anything older than [`EXPLAINED_AFTER_THE_FACT_WITHIN`] is dropped on
/// the next insert, so a leader approving for days keeps minutes of them, not days. Ordered
/// by time for pruning, and by name so that a newer event of the same CSR replaces its
/// entry in one lookup (a storm brings thousands within the window).
#[derive(Debug, Default)]
pub(super) struct RecentDecisions {
    by_time: BTreeSet<(Timestamp, String)>,
    by_name: HashMap<String, (Timestamp, Option<String>)>,
}

impl RecentDecisions {
    fn cutoff(now: Timestamp) -> Timestamp {
        let window = jiff::SignedDuration::try_from(EXPLAINED_AFTER_THE_FACT_WITHIN)
            .unwrap_or(jiff::SignedDuration::ZERO);
        now.checked_sub(window).unwrap_or(Timestamp::MIN)
    }

    fn prune(&mut self, now: Timestamp) {
        let cutoff = Self::cutoff(now);
        while self.by_time.first().is_some_and(|(at, _)| *at < cutoff) {
            if let Some((_, name)) = self.by_time.pop_first() {
                self.by_name.remove(&name);
            }
        }
    }

    /// Records that CSR `name` (`uid`) carries a decision of ours written `at`.
    pub(super) fn insert(&mut self, at: Timestamp, name: &str, uid: Option<&str>, now: Timestamp) {
        self.prune(now);
        if at >= Self::cutoff(now) {
            self.forget(name);
            self.by_time.insert((at, name.to_string()));
            self.by_name
                .insert(name.to_string(), (at, uid.map(str::to_string)));
        }
    }

    pub(super) fn forget(&mut self, name: &str) {
        if let Some((at, _)) = self.by_name.remove(name) {
            self.by_time.remove(&(at, name.to_string()));
        }
    }

    pub(super) fn clear(&mut self) {
        self.by_time.clear();
        self.by_name.clear();
    }

    /// Name and uid of each decision of ours still recent at `now`, oldest first.
    pub(super) fn list(&self, now: Timestamp) -> Vec<(String, Option<String>)> {
        let cutoff = Self::cutoff(now);
        self.by_time
            .iter()
            .filter(|(at, _)| *at >= cutoff)
            .filter_map(|(_, name)| {
                let (_, uid) = self.by_name.get(name)?;
                Some((name.clone(), uid.clone()))
            })
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
        assert_eq!(recent.by_time.len(), 1);
        assert_eq!(recent.by_name.len(), 1);
    }
}
