//! A small ordered set: the inventory's indexes map each key to a handful of values (an
//! address's one or two claimants, a node's few CSRs), where a `BTreeSet` allocates a whole
//! eleven-slot node per key — about 0.9 KiB per address of a 5000-node cluster (heaptrack).

/// A set kept as a sorted `Vec`: iteration in order, as `BTreeSet`, at the size of its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortedSet<T>(Vec<T>);

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet(Vec::new())
    }
}

impl<T: Ord> SortedSet<T> {
    /// Adds `value`; whether it was new.
    pub fn insert(&mut self, value: T) -> bool {
        match self.0.binary_search(&value) {
            Ok(_) => false,
            Err(at) => {
                // Most sets hold one or two values: grow by one, not by doubling.
                self.0.reserve_exact(1);
                self.0.insert(at, value);
                true
            }
        }
    }

    /// Removes `value`; whether it was there.
    pub fn remove<Q: Ord + ?Sized>(&mut self, value: &Q) -> bool
    where
        T: std::borrow::Borrow<Q>,
    {
        match self.0.binary_search_by(|v| v.borrow().cmp(value)) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_a_set_in_order() {
        let mut set = SortedSet::default();
        assert!(set.insert("b"));
        assert!(set.insert("a"));
        assert!(set.insert("c"));
        assert!(!set.insert("a"));
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(set.remove(&"b"));
        assert!(!set.remove(&"b"));
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), ["a", "c"]);
        assert!(set.remove(&"a") && set.remove(&"c"));
        assert!(set.is_empty());
    }
}
