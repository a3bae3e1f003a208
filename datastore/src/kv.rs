//! Keys, values, revisions and watch events: the vocabulary of the [`Datastore`] trait.
//!
//! [`Datastore`]: crate::Datastore

use std::time::Duration;

/// A store-wide, strictly increasing revision (etcd's `mod_revision`). Every write bumps
/// it by one; a key's revision is the revision of the write that last changed it.
pub type Revision = i64;

/// Identifies a TTL lease; keys attached to it are deleted when it expires.
pub type LeaseId = i64;

/// One stored key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created the key (its current incarnation).
    pub create_revision: Revision,
    /// Revision of the last write to the key: the compare-and-swap token.
    pub mod_revision: Revision,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// The result of a prefix listing: the items, sorted by key, and the store revision they
/// were read at (watch from `revision + 1` to follow on without a gap).
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub items: Vec<KeyValue>,
    pub revision: Revision,
}

/// What a key must be for a [`Datastore::put_all`](crate::Datastore::put_all) to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key does not exist.
    Absent,
    /// The key exists with this mod revision.
    At(Revision),
}

impl Expect {
    /// Whether `current` (the key as it is, `None` when absent) is as expected.
    pub fn holds(self, current: Option<&KeyValue>) -> bool {
        match (self, current) {
            (Expect::Absent, None) => true,
            (Expect::At(rev), Some(kv)) => kv.mod_revision == rev,
            _ => false,
        }
    }
}

/// One key of a [`Datastore::put_all`](crate::Datastore::put_all): its new value (no lease),
/// written only if the key is as expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    pub key: String,
    pub value: Vec<u8>,
    pub expect: Expect,
}

impl Put {
    /// Whether every put's key is as expected, `current` holding each key as it is, in the
    /// order of the puts.
    pub fn all_as_expected(puts: &[Put], current: &[Option<KeyValue>]) -> bool {
        puts.len() == current.len()
            && puts
                .iter()
                .zip(current)
                .all(|(p, kv)| p.expect.holds(kv.as_ref()))
    }

    /// A key may be put once per write (etcd refuses a transaction that names one twice).
    pub fn check_distinct(puts: &[Put]) -> crate::Result<()> {
        let mut keys: Vec<&str> = puts.iter().map(|p| p.key.as_str()).collect();
        keys.sort_unstable();
        match keys.windows(2).find(|w| w[0] == w[1]) {
            Some(w) => Err(crate::Error::Config(format!(
                "key {} given twice in one write",
                w[0]
            ))),
            None => Ok(()),
        }
    }
}

/// What [`Datastore::put_all`](crate::Datastore::put_all) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutAll {
    /// Every key was as expected and every value is written, at this revision.
    Written(Revision),
    /// Some key was not as expected: nothing was written. Each key as it is, in the order
    /// of the puts (`None`: absent).
    Refused(Vec<Option<KeyValue>>),
}

/// One prefix of a [`Datastore::list_at_once`](crate::Datastore::list_at_once) read.
#[derive(Debug, Clone, Copy)]
pub struct PrefixRead<'a> {
    pub prefix: &'a str,
    /// Keys and revisions only: every value comes back empty (a listing of which keys
    /// exist need not carry, say, every IPAM block of the cluster).
    pub keys_only: bool,
}

/// One change seen by a watch, in revision order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or updated.
    Put(KeyValue),
    /// The key was deleted (by a delete or by its lease expiring) at `revision`.
    Delete { key: String, revision: Revision },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision at which the change happened.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// A lease as granted: its id and the TTL the store will enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    pub ttl: Duration,
}

/// What a guarded write needs of another key: that it still exists as created at
/// `create_revision` (not deleted, not deleted and created again). A write that reaches
/// the store late, after what it depends on was undone, then writes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub key: String,
    pub create_revision: Revision,
}

impl Guard {
    /// The guard on `kv` as it is now.
    pub fn on(kv: &KeyValue) -> Guard {
        Guard {
            key: kv.key.clone(),
            create_revision: kv.create_revision,
        }
    }

    /// The error a failed guard gives: a conflict on the guard's key (`actual` is its
    /// create revision now, 0 when it is gone).
    pub fn failed(&self, actual: Revision) -> crate::Error {
        crate::Error::Conflict {
            key: self.key.clone(),
            expected: self.create_revision,
            actual,
        }
    }
}
