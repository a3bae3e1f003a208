//! The [`Datastore`] trait: a revisioned key-value store with compare-and-swap, ordered
//! watches and TTL leases. Implemented by the etcdv3 backend and the embedded SQLite one
//! with the same semantics; the conformance suite in `tests/conformance.rs` runs on both.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::kv::{
    Expect, Guard, KeyValue, Lease, LeaseId, Listing, PrefixRead, Put, PutAll, Revision, WatchEvent,
};

/// A stream of watch events. Events arrive in revision order, each exactly once; an `Err`
/// ends the stream (the watcher should relist and watch again, e.g. after
/// [`Error::Compacted`](crate::Error::Compacted) or a lost connection).
pub struct Watch {
    rx: mpsc::Receiver<Result<WatchEvent>>,
}

impl Watch {
    /// Wraps the receiving end of a backend's event channel.
    pub fn new(rx: mpsc::Receiver<Result<WatchEvent>>) -> Watch {
        Watch { rx }
    }

    /// The next event; `None` when the backend closed the watch.
    pub async fn next(&mut self) -> Option<Result<WatchEvent>> {
        self.rx.recv().await
    }

    /// An event that has already arrived, without waiting: lets a consumer drain a burst
    /// and act once on the whole batch.
    pub fn try_next(&mut self) -> Option<Result<WatchEvent>> {
        self.rx.try_recv().ok()
    }
}

/// A revisioned key-value store shared by every node of a cluster.
///
/// Keys are `/`-separated strings (Calico's etcdv3 layout, see [`crate::keys`]); values are
/// opaque bytes (JSON for every Calico key). Every mutating call is atomic.
#[async_trait]
pub trait Datastore: Send + Sync + 'static {
    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Lists every key starting with `prefix`, sorted by key, with the revision read at.
    async fn list(&self, prefix: &str) -> Result<Listing>;

    /// Lists every prefix of `reads`, in order, at one revision where the backend can
    /// (one round trip on etcd); the default lists them one after the other, so each
    /// listing is at least as new as the one before it.
    async fn list_at_once(&self, reads: &[PrefixRead<'_>]) -> Result<Vec<Listing>> {
        let mut out = Vec::with_capacity(reads.len());
        for read in reads {
            let mut listing = self.list(read.prefix).await?;
            if read.keys_only {
                listing.items.iter_mut().for_each(|kv| kv.value.clear());
            }
            out.push(listing);
        }
        Ok(out)
    }

    /// Creates `key` only if it does not exist (`Error::AlreadyExists` otherwise),
    /// optionally attached to a lease. Returns the new revision.
    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision>;

    /// Creates every key of `kvs` (no lease) in one atomic write, only if none of them
    /// exists: otherwise nothing is written and the error is `Error::AlreadyExists` naming
    /// the first that does (in key order). Returns the new revision, one for all keys; a
    /// watch sees their events in key order. A [`put_all`](Self::put_all) of keys expected
    /// absent.
    async fn create_all(&self, mut kvs: Vec<(String, Vec<u8>)>) -> Result<Revision> {
        kvs.sort_by(|a, b| a.0.cmp(&b.0));
        let puts = kvs
            .into_iter()
            .map(|(key, value)| Put {
                key,
                value,
                expect: Expect::Absent,
            })
            .collect();
        match self.put_all(puts).await? {
            PutAll::Written(revision) => Ok(revision),
            // In key order, as the puts were: the first that exists.
            PutAll::Refused(current) => Err(crate::Error::AlreadyExists {
                key: current
                    .into_iter()
                    .flatten()
                    .next()
                    .map(|kv| kv.key)
                    .unwrap_or_default(),
            }),
        }
    }

    /// Writes every put (no lease) in one atomic write, only if every key is as its
    /// [`Expect`](crate::Expect) says: otherwise nothing is written and the answer is each
    /// key as it is, from the same round trip on etcd. Returns the new revision, one for
    /// all keys; a watch sees their events in key order.
    async fn put_all(&self, puts: Vec<Put>) -> Result<PutAll>;

    /// [`create`](Self::create), made only while `guard` holds, atomically with the check;
    /// otherwise nothing is written and the error is [`Guard::failed`]. The default, for
    /// stores that cannot do it atomically, refuses.
    async fn create_guarded(&self, key: &str, value: Vec<u8>, guard: &Guard) -> Result<Revision> {
        let _ = (key, value);
        Err(crate::Error::Config(format!(
            "this store cannot make a write guarded by {}",
            guard.key
        )))
    }

    /// Replaces `key` only if its current revision is `expected` (`Error::Conflict` if it
    /// moved, `Error::NotFound` if it is gone). The lease is replaced by `lease`.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision>;

    /// Deletes `key`; with `expected`, only if its revision still matches. Returns the
    /// key-value as it was just before the delete. `Error::NotFound` if absent.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Streams every change under `prefix` with revision >= `from` (etcd semantics: pass
    /// `listing.revision + 1` to continue a listing). `from = 0` means "from now": every
    /// write committed after this returns is seen. A `from` older than the history the
    /// backend keeps ends the stream with [`Error::Compacted`](crate::Error::Compacted) as its
    /// first item; a lost connection ends it with `Error::Backend`. Events of one revision
    /// (a lease's keys expiring together) come in key order.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch>;

    /// Grants a lease of `ttl`, rounded up to the backend's granularity (whole seconds for
    /// etcd and the local store; the returned [`Lease`] says what is enforced); keys created
    /// with it vanish when it expires unrenewed, with a Delete event each.
    async fn grant_lease(&self, ttl: Duration) -> Result<Lease>;

    /// Renews a lease for another full TTL. `Error::LeaseNotFound` once it has expired.
    async fn keep_alive(&self, lease: LeaseId) -> Result<()>;

    /// Revokes a lease now, deleting its keys (all at one revision).
    /// `Error::LeaseNotFound` if it already expired.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<()>;

    /// The current store revision.
    async fn revision(&self) -> Result<Revision>;

    /// How long `lease` has left, for display (`calicoctl flannel subnets`):
    /// `Error::LeaseNotFound` once it has expired, `Ok(None)` from a backend that cannot
    /// tell (the default).
    async fn lease_time_to_live(&self, lease: LeaseId) -> Result<Option<Duration>> {
        let _ = lease;
        Ok(None)
    }
}
