//! What the controller has already said about each CSR, so that a requeue repeating a
//! decision, or a retry failing the same way, adds no Event.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// Bounded: past this many CSRs everything is forgotten at once, which costs at most one
/// repeated Event per CSR still pending or failing.
const BOUND: usize = 10_000;

/// A value remembered per key (a CSR's uid, with what was said about it).
#[derive(Debug)]
pub(super) struct Memory<K, V> {
    entries: Mutex<HashMap<K, V>>,
}

impl<K, V> Default for Memory<K, V> {
    fn default() -> Self {
        Memory {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Copy> Memory<K, V> {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
        // A panic while holding it leaves a map that is still a valid memory.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn get(&self, key: &K) -> Option<V> {
        self.entries().get(key).copied()
    }

    /// Remembers `value` for `key`, over what was there.
    pub(super) fn remember(&self, key: K, value: V) {
        let mut entries = self.entries();
        if entries.len() >= BOUND {
            entries.clear();
        }
        entries.insert(key, value);
    }

    /// Remembers `value` for `key` unless something is remembered for it already; whether
    /// it was new.
    pub(super) fn remember_first(&self, key: K, value: V) -> bool {
        let mut entries = self.entries();
        if entries.contains_key(&key) {
            return false;
        }
        if entries.len() >= BOUND {
            entries.clear();
        }
        entries.insert(key, value);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_is_news_and_the_memory_stays_bounded() {
        let memory = Memory::<usize, ()>::default();
        assert!(memory.remember_first(0, ()));
        assert!(!memory.remember_first(0, ()));
        for key in 1..=BOUND {
            memory.remember(key, ());
        }
        assert!(memory.entries().len() <= BOUND);
        assert_eq!(memory.get(&BOUND), Some(()));
    }
}
