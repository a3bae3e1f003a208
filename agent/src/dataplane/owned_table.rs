//! The owned-table reconciler for every kind of kernel object but routes (devices,
//! workload sysctls, neighbours, FDB entries; routes have their own table, with grace
//! periods and foreign routes): read what the kernel holds of the kind, diff it with what
//! is wanted in a [`DeltaTracker`], and write or remove only the difference. A kind is one
//! [`ObjectKind`] implementation (how to read, write and remove one object), not another
//! hand-written loop.
//!
//! Additions and removals are separate steps so the dataplane can order them around the
//! routes (make before break: a neighbour goes in before the route that needs it and out
//! only after it).

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::delta::DeltaTracker;
use super::kernel::{Kernel, KernelError, LinkInfo};

/// One kind of kernel object calico-node owns.
#[async_trait]
pub trait ObjectKind: Send + Sync + 'static {
    /// What identifies one object (a device's name, a neighbour's device and address).
    type Key: Ord + Clone + Send + Sync;
    /// What is wanted at a key.
    type Want: Clone + PartialEq + Send + Sync;
    /// What the kernel holds at a key.
    type Have: Clone + PartialEq + Send + Sync;

    /// True when the kernel's object already is what is wanted.
    fn satisfied(want: &Self::Want, have: &Self::Have) -> bool;

    /// The kind as failures name it: `neighbours`.
    const PLURAL: &'static str;

    /// The object as failures name it: `neighbour 10.244.2.0 on vxlan.calico`.
    fn describe(key: &Self::Key) -> String;

    /// The objects of this kind the kernel holds that calico-node owns. `links` is the
    /// device dump of this pass; `table` the view so far (for what is wanted, and for
    /// kinds the kernel cannot list cheaply, what was written).
    async fn read<K: Kernel + ?Sized>(
        kernel: &K,
        links: &[LinkInfo],
        table: &DeltaTracker<Self::Key, Self::Want, Self::Have>,
    ) -> Result<BTreeMap<Self::Key, Self::Have>, KernelError>;

    /// Makes the kernel hold `want` at `key`; returns what it holds now.
    async fn write<K: Kernel + ?Sized>(
        kernel: &K,
        key: &Self::Key,
        want: &Self::Want,
    ) -> Result<Self::Have, KernelError>;

    /// Removes the kernel's object at `key` (NotFound counts as removed).
    async fn remove<K: Kernel + ?Sized>(
        kernel: &K,
        key: &Self::Key,
        have: &Self::Have,
    ) -> Result<(), KernelError>;
}

/// What a step did: how many objects changed and what failed (to retry on the next pass).
#[derive(Debug)]
pub struct TableOutcome<Key> {
    pub changed: usize,
    pub failures: Vec<TableFailure<Key>>,
}

impl<Key> Default for TableOutcome<Key> {
    fn default() -> Self {
        TableOutcome {
            changed: 0,
            failures: Vec::new(),
        }
    }
}

/// One failed read, write or removal.
#[derive(Debug)]
pub struct TableFailure<Key> {
    /// The object, or `None` for the read of the whole kind.
    pub key: Option<Key>,
    /// What was being done: `removing neighbour 10.244.2.0 on vxlan.calico`.
    pub what: String,
    pub error: KernelError,
}

impl<Key> TableFailure<Key> {
    /// `what: error`, for logs and node status.
    pub fn text(&self) -> String {
        format!("{}: {}", self.what, self.error)
    }
}

/// The wanted and the kernel's objects of one kind.
pub struct OwnedTable<T: ObjectKind> {
    tracker: DeltaTracker<T::Key, T::Want, T::Have>,
    /// The kernel's objects were read and nothing since made the view doubtful.
    fresh: bool,
}

impl<T: ObjectKind> Default for OwnedTable<T> {
    fn default() -> Self {
        OwnedTable {
            tracker: DeltaTracker::new(T::satisfied),
            fresh: false,
        }
    }
}

impl<T: ObjectKind> OwnedTable<T> {
    /// Replaces what is wanted.
    pub fn set_desired(&mut self, desired: BTreeMap<T::Key, T::Want>) {
        self.tracker.set_desired(desired);
    }

    /// The kernel's objects as last read (plus this table's writes since).
    pub fn dataplane(&self) -> &BTreeMap<T::Key, T::Have> {
        self.tracker.dataplane()
    }

    /// Reads the kernel's objects when asked to (`refresh`) or when the view is stale;
    /// a failed read leaves it stale and is reported.
    pub async fn read_if_stale<K: Kernel + ?Sized>(
        &mut self,
        kernel: &K,
        links: &[LinkInfo],
        refresh: bool,
        outcome: &mut TableOutcome<T::Key>,
    ) {
        if self.fresh && !refresh {
            return;
        }
        match T::read(kernel, links, &self.tracker).await {
            Ok(have) => {
                self.tracker.set_dataplane(have);
                self.fresh = true;
            }
            Err(e) => {
                self.fresh = false;
                outcome.failures.push(TableFailure {
                    key: None,
                    what: format!("listing {}", T::PLURAL),
                    error: e,
                });
            }
        }
    }

    /// Writes what is wanted and missing or different.
    pub async fn add_missing<K: Kernel + ?Sized>(
        &mut self,
        kernel: &K,
        outcome: &mut TableOutcome<T::Key>,
    ) {
        if !self.fresh {
            return;
        }
        for (key, want, _) in self.tracker.pending_updates() {
            match T::write(kernel, &key, &want).await {
                Ok(have) => {
                    self.tracker.commit_update(key, have);
                    outcome.changed += 1;
                }
                Err(error) => outcome.failures.push(TableFailure {
                    what: T::describe(&key),
                    key: Some(key),
                    error,
                }),
            }
        }
    }

    /// Removes what the kernel holds and nothing wants.
    pub async fn remove_unwanted<K: Kernel + ?Sized>(
        &mut self,
        kernel: &K,
        outcome: &mut TableOutcome<T::Key>,
    ) {
        if !self.fresh {
            return;
        }
        for (key, have) in self.tracker.pending_deletions() {
            match T::remove(kernel, &key, &have).await {
                Ok(()) | Err(KernelError::NotFound(_)) => {
                    self.tracker.commit_deletion(&key);
                    outcome.changed += 1;
                }
                Err(error) => outcome.failures.push(TableFailure {
                    what: format!("removing {}", T::describe(&key)),
                    key: Some(key),
                    error,
                }),
            }
        }
    }
}
