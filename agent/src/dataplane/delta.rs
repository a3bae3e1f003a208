//! `DeltaTracker`: the desired and the dataplane view of one kind of kernel state, and the
//! difference between them (after Felix's `deltatracker`). The reconcilers resync the
//! dataplane view from a kernel dump, then apply deletions and updates, committing each
//! success so a failed operation is simply retried on the next pass.

use std::collections::{BTreeMap, BTreeSet};

use crate::maps::changed_keys;

/// Desired versus actual state keyed by `K`: the desired value `V`, the kernel's `A` (the
/// same type unless the kernel reports more than is asked for, as a device does).
/// `satisfied(desired, actual)` decides whether the kernel's value already fulfils the
/// desired one (it may be looser than equality). The keys where the two differ are kept up
/// to date as either side changes, so a pass looks at what differs, not at every key
/// (tables of a large cluster hold thousands).
#[derive(Debug)]
pub struct DeltaTracker<K: Ord + Clone, V: Clone + PartialEq, A: Clone + PartialEq = V> {
    desired: BTreeMap<K, V>,
    dataplane: BTreeMap<K, A>,
    satisfied: fn(&V, &A) -> bool,
    /// Exactly the keys whose desired and dataplane entries differ.
    differing: BTreeSet<K>,
}

impl<K: Ord + Clone, V: Clone + PartialEq, A: Clone + PartialEq> DeltaTracker<K, V, A> {
    /// An empty tracker comparing values with `satisfied`.
    pub fn new(satisfied: fn(&V, &A) -> bool) -> DeltaTracker<K, V, A> {
        DeltaTracker {
            desired: BTreeMap::new(),
            dataplane: BTreeMap::new(),
            satisfied,
            differing: BTreeSet::new(),
        }
    }

    /// Replaces the whole desired set.
    pub fn set_desired(&mut self, desired: BTreeMap<K, V>) {
        let old = std::mem::replace(&mut self.desired, desired);
        for key in changed_keys(&old, &self.desired) {
            self.recheck(key);
        }
    }

    /// Changes one desired entry (`None`: no longer desired); true when it changed.
    pub fn update_desired(&mut self, key: K, value: Option<V>) -> bool {
        let old = match value {
            Some(v) => self.desired.insert(key.clone(), v),
            None => self.desired.remove(&key),
        };
        let changed = old.as_ref() != self.desired.get(&key);
        if changed {
            self.recheck(key);
        }
        changed
    }

    /// Replaces the whole dataplane view with a kernel dump's entries, in any order (of
    /// equal keys the last one counts, as in a map built from them). The kept view is
    /// changed only where the dump differs: a resync that finds what it knew, the usual
    /// case at tens of thousands of routes, builds no second map.
    pub fn set_dataplane(&mut self, dataplane: impl IntoIterator<Item = (K, A)>) {
        let mut entries: Vec<(K, A)> = dataplane.into_iter().collect();
        // Stable, so equal keys stay in dump order; then the last of each run is kept.
        entries.sort_by(|x, y| x.0.cmp(&y.0));
        entries.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        let changes = dataplane_changes(&self.dataplane, entries);
        for (key, value) in changes {
            match value {
                Some(v) => self.dataplane.insert(key.clone(), v),
                None => self.dataplane.remove(&key),
            };
            self.recheck(key);
        }
    }

    /// The desired set.
    pub fn desired(&self) -> &BTreeMap<K, V> {
        &self.desired
    }

    /// The last known kernel state.
    pub fn dataplane(&self) -> &BTreeMap<K, A> {
        &self.dataplane
    }

    /// Keys present in the dataplane but not desired, with their kernel value.
    pub fn pending_deletions(&self) -> Vec<(K, A)> {
        self.differing
            .iter()
            .filter(|k| !self.desired.contains_key(*k))
            .filter_map(|k| Some((k.clone(), self.dataplane.get(k)?.clone())))
            .collect()
    }

    /// Desired entries the kernel lacks or holds differently, with the kernel's current
    /// value when there is one (it must be replaced).
    pub fn pending_updates(&self) -> Vec<(K, V, Option<A>)> {
        self.differing
            .iter()
            .filter_map(|k| {
                let want = self.desired.get(k)?;
                Some((k.clone(), want.clone(), self.dataplane.get(k).cloned()))
            })
            .collect()
    }

    /// True when nothing is left to do.
    pub fn in_sync(&self) -> bool {
        self.differing.is_empty()
    }

    /// Records that the kernel now holds `value` at `key`.
    pub fn commit_update(&mut self, key: K, value: A) {
        self.dataplane.insert(key.clone(), value);
        self.recheck(key);
    }

    /// Records that the kernel no longer holds `key`.
    pub fn commit_deletion(&mut self, key: &K) {
        self.dataplane.remove(key);
        self.recheck(key.clone());
    }

    /// Files `key` as differing or not after one side changed there.
    fn recheck(&mut self, key: K) {
        let differs = match (self.desired.get(&key), self.dataplane.get(&key)) {
            (Some(want), Some(have)) => !(self.satisfied)(want, have),
            (None, None) => false,
            _ => true,
        };
        if differs {
            self.differing.insert(key);
        } else {
            self.differing.remove(&key);
        }
    }
}

/// What turns `kept` into the sorted, deduplicated `entries`: a new value per key added or
/// changed, `None` per key gone; one walk of both in key order.
fn dataplane_changes<K: Ord + Clone, A: PartialEq>(
    kept: &BTreeMap<K, A>,
    entries: Vec<(K, A)>,
) -> Vec<(K, Option<A>)> {
    let mut changes = Vec::new();
    let mut old = kept.iter().peekable();
    for (key, value) in entries {
        while let Some((gone, _)) = old.next_if(|(k, _)| **k < key) {
            changes.push((gone.clone(), None));
        }
        match old.next_if(|(k, _)| **k == key) {
            Some((_, have)) if *have == value => {}
            _ => changes.push((key, Some(value))),
        }
    }
    changes.extend(old.map(|(gone, _)| (gone.clone(), None)));
    changes
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
    fn only_what_differs_is_pending_as_either_side_changes() {
        let mut t = tracker();
        t.set_desired(BTreeMap::from([(1, "a"), (2, "b")]));
        t.set_dataplane(BTreeMap::from([(1, "a"), (2, "b")]));
        assert!(t.in_sync());
        // The desired side changes one key, the kernel another.
        t.set_desired(BTreeMap::from([(1, "a"), (2, "c")]));
        t.set_dataplane(BTreeMap::from([(1, "z"), (2, "b"), (5, "e")]));
        assert_eq!(
            t.pending_updates(),
            vec![(1, "a", Some("z")), (2, "c", Some("b"))]
        );
        assert_eq!(t.pending_deletions(), vec![(5, "e")]);
        // A desired change to what the kernel already holds leaves nothing to do there.
        t.set_desired(BTreeMap::from([(1, "z"), (2, "b")]));
        assert_eq!(t.pending_updates(), vec![]);
        // One entry at a time.
        assert!(t.update_desired(3, Some("c")));
        assert!(!t.update_desired(3, Some("c")));
        assert!(t.update_desired(1, None));
        assert_eq!(t.pending_updates(), vec![(3, "c", None)]);
        assert_eq!(t.pending_deletions(), vec![(1, "z"), (5, "e")]);
        t.commit_update(3, "c");
        t.commit_deletion(&1);
        t.commit_deletion(&5);
        assert!(t.in_sync());
    }

    #[test]
    fn a_dump_in_any_order_replaces_the_view_and_its_last_duplicate_counts() {
        let mut t = tracker();
        t.set_desired(BTreeMap::from([(1, "a"), (2, "b"), (3, "c")]));
        t.set_dataplane(vec![(3, "c"), (1, "x"), (4, "d"), (1, "a")]);
        assert_eq!(
            t.dataplane(),
            &BTreeMap::from([(1, "a"), (3, "c"), (4, "d")])
        );
        assert_eq!(t.pending_updates(), vec![(2, "b", None)]);
        assert_eq!(t.pending_deletions(), vec![(4, "d")]);
        // Gone at both ends and changed in the middle.
        t.set_dataplane(vec![(2, "z")]);
        assert_eq!(t.dataplane(), &BTreeMap::from([(2, "z")]));
        assert_eq!(
            t.pending_updates(),
            vec![(1, "a", None), (2, "b", Some("z")), (3, "c", None)]
        );
        assert_eq!(t.pending_deletions(), vec![]);
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
