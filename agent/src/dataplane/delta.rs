//! `DeltaTracker`: the desired and the dataplane view of one kind of kernel state, and the
//! difference between them (after Felix's `deltatracker`). The reconcilers resync the
//! dataplane view from a kernel dump, then apply deletions and updates, committing each
//! success so a failed operation is simply retried on the next pass.

use std::collections::BTreeMap;

/// Desired versus actual state keyed by `K`. `satisfied(desired, actual)` decides whether
/// the kernel's value already fulfils the desired one (it may be looser than equality).
#[derive(Debug)]
pub struct DeltaTracker<K: Ord + Clone, V: Clone> {
    desired: BTreeMap<K, V>,
    dataplane: BTreeMap<K, V>,
    satisfied: fn(&V, &V) -> bool,
}

impl<K: Ord + Clone, V: Clone> DeltaTracker<K, V> {
    /// An empty tracker comparing values with `satisfied`.
    pub fn new(satisfied: fn(&V, &V) -> bool) -> DeltaTracker<K, V> {
        DeltaTracker {
            desired: BTreeMap::new(),
            dataplane: BTreeMap::new(),
            satisfied,
        }
    }

    /// Replaces the whole desired set.
    pub fn set_desired(&mut self, desired: BTreeMap<K, V>) {
        self.desired = desired;
    }

    /// Replaces the whole dataplane view (after a kernel dump).
    pub fn set_dataplane(&mut self, dataplane: BTreeMap<K, V>) {
        self.dataplane = dataplane;
    }

    /// The desired set.
    pub fn desired(&self) -> &BTreeMap<K, V> {
        &self.desired
    }

    /// The last known kernel state.
    pub fn dataplane(&self) -> &BTreeMap<K, V> {
        &self.dataplane
    }

    /// Keys present in the dataplane but not desired, with their kernel value.
    pub fn pending_deletions(&self) -> Vec<(K, V)> {
        self.dataplane
            .iter()
            .filter(|(k, _)| !self.desired.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Desired entries the kernel lacks or holds differently, with the kernel's current
    /// value when there is one (it must be replaced).
    pub fn pending_updates(&self) -> Vec<(K, V, Option<V>)> {
        self.desired
            .iter()
            .filter_map(|(k, want)| match self.dataplane.get(k) {
                Some(have) if (self.satisfied)(want, have) => None,
                have => Some((k.clone(), want.clone(), have.cloned())),
            })
            .collect()
    }

    /// True when nothing is left to do.
    pub fn in_sync(&self) -> bool {
        self.pending_deletions().is_empty() && self.pending_updates().is_empty()
    }

    /// Records that the kernel now holds `value` at `key`.
    pub fn commit_update(&mut self, key: K, value: V) {
        self.dataplane.insert(key, value);
    }

    /// Records that the kernel no longer holds `key`.
    pub fn commit_deletion(&mut self, key: &K) {
        self.dataplane.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> DeltaTracker<u32, &'static str> {
        DeltaTracker::new(|a, b| a == b)
    }

    #[test]
    fn missing_and_different_entries_are_updates_and_extras_are_deletions() {
        let mut t = tracker();
        t.set_desired(BTreeMap::from([(1, "a"), (2, "b"), (3, "c")]));
        t.set_dataplane(BTreeMap::from([(2, "b"), (3, "x"), (4, "d")]));
        assert_eq!(
            t.pending_updates(),
            vec![(1, "a", None), (3, "c", Some("x"))]
        );
        assert_eq!(t.pending_deletions(), vec![(4, "d")]);
        assert!(!t.in_sync());
    }

    #[test]
    fn committed_operations_bring_the_views_in_sync() {
        let mut t = tracker();
        t.set_desired(BTreeMap::from([(1, "a")]));
        t.set_dataplane(BTreeMap::from([(2, "b")]));
        t.commit_update(1, "a");
        t.commit_deletion(&2);
        assert!(t.in_sync());
    }
}
