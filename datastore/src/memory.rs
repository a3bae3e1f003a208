//! [`MemoryStore`]: an in-process [`Datastore`] for unit tests of the crates above the
//! datastore (IPAM, the agent's calculations, calicoctl's printers). Same semantics as the
//! real backends (revisions, compare-and-swap, ordered watches from a revision, leases),
//! none of their I/O. Not shared between processes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::kv::{Guard, KeyValue, Lease, LeaseId, Listing, Put, PutAll, Revision, WatchEvent};
use crate::store::{Datastore, Watch};

/// Capacity of a watcher's channel; a watcher that falls this far behind is ended (its
/// stream returns `None`), as etcd cancels a slow watcher.
const WATCH_BUFFER: usize = 4096;

/// An in-memory datastore. Cloning shares the same store. Leases expire lazily: the next
/// operation after a deadline deletes the lease's keys (with watch events).
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    revision: Revision,
    kvs: BTreeMap<String, KeyValue>,
    leases: HashMap<LeaseId, LeaseState>,
    next_lease: LeaseId,
    /// Every event ever, for watches that start in the past.
    history: Vec<WatchEvent>,
    watchers: Vec<Watcher>,
}

struct LeaseState {
    ttl: Duration,
    deadline: Instant,
}

struct Watcher {
    prefix: String,
    tx: mpsc::Sender<Result<WatchEvent>>,
}

// ===== impl MemoryStore =====

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only come from a bug in this file; keep
        // serving the data rather than poisoning every later test assertion.
        let mut state = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.expire_leases(Instant::now());
        state
    }
}

// ===== impl State =====

impl State {
    fn emit(&mut self, event: WatchEvent) {
        self.watchers.retain(|w| {
            if !event.key().starts_with(&w.prefix) {
                return !w.tx.is_closed();
            }
            w.tx.try_send(Ok(event.clone())).is_ok()
        });
        self.history.push(event);
    }

    fn put(&mut self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        if let Some(id) = lease
            && !self.leases.contains_key(&id)
        {
            return Err(Error::LeaseNotFound(id));
        }
        self.revision += 1;
        self.put_at_current(key, value, lease);
        Ok(self.revision)
    }

    /// Writes `key` at the current revision (several keys of one atomic write share it).
    fn put_at_current(&mut self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) {
        let create_revision = self
            .kvs
            .get(key)
            .map(|kv| kv.create_revision)
            .unwrap_or(self.revision);
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: self.revision,
            lease,
        };
        self.kvs.insert(key.to_string(), kv.clone());
        self.emit(WatchEvent::Put(kv));
    }

    fn remove(&mut self, key: &str) -> Option<KeyValue> {
        let kv = self.kvs.remove(key)?;
        self.revision += 1;
        let revision = self.revision;
        self.emit(WatchEvent::Delete {
            key: key.to_string(),
            revision,
        });
        Some(kv)
    }

    fn expire_leases(&mut self, now: Instant) {
        let expired: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.revoke(id);
        }
    }

    fn revoke(&mut self, id: LeaseId) {
        self.leases.remove(&id);
        let keys: Vec<String> = self
            .kvs
            .values()
            .filter(|kv| kv.lease == Some(id))
            .map(|kv| kv.key.clone())
            .collect();
        for key in keys {
            self.remove(&key);
        }
    }
}

#[async_trait]
impl Datastore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.state().kvs.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Listing> {
        let state = self.state();
        let items = state
            .kvs
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok(Listing {
            items,
            revision: state.revision,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<Revision> {
        let mut state = self.state();
        if state.kvs.contains_key(key) {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        state.put(key, value, lease)
    }

    async fn put_all(&self, mut puts: Vec<Put>) -> Result<PutAll> {
        Put::check_distinct(&puts)?;
        let mut state = self.state();
        let current: Vec<Option<KeyValue>> = puts
            .iter()
            .map(|p| state.kvs.get(&p.key).cloned())
            .collect();
        if !Put::all_as_expected(&puts, &current) {
            return Ok(PutAll::Refused(current));
        }
        puts.sort_by(|a, b| a.key.cmp(&b.key));
        state.revision += 1;
        for put in puts {
            state.put_at_current(&put.key, put.value, None);
        }
        Ok(PutAll::Written(state.revision))
    }

    async fn create_guarded(&self, key: &str, value: Vec<u8>, guard: &Guard) -> Result<Revision> {
        let mut state = self.state();
        let now = state.kvs.get(&guard.key).map_or(0, |g| g.create_revision);
        if now != guard.create_revision {
            return Err(guard.failed(now));
        }
        if state.kvs.contains_key(key) {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        state.put(key, value, None)
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<Revision> {
        let mut state = self.state();
        let actual = match state.kvs.get(key) {
            Some(kv) => kv.mod_revision,
            None => {
                return Err(Error::NotFound {
                    key: key.to_string(),
                });
            }
        };
        if actual != expected {
            return Err(Error::Conflict {
                key: key.to_string(),
                expected,
                actual,
            });
        }
        state.put(key, value, lease)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut state = self.state();
        let actual = match state.kvs.get(key) {
            Some(kv) => kv.mod_revision,
            None => {
                return Err(Error::NotFound {
                    key: key.to_string(),
                });
            }
        };
        if let Some(expected) = expected
            && actual != expected
        {
            return Err(Error::Conflict {
                key: key.to_string(),
                expected,
                actual,
            });
        }
        state.remove(key).ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch> {
        let mut state = self.state();
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        if from > 0 {
            for event in state
                .history
                .iter()
                .filter(|e| e.revision() >= from && e.key().starts_with(prefix))
            {
                if tx.try_send(Ok(event.clone())).is_err() {
                    return Err(Error::Backend(format!(
                        "watch of {prefix} from {from}: more than {WATCH_BUFFER} events to replay"
                    )));
                }
            }
        }
        state.watchers.push(Watcher {
            prefix: prefix.to_string(),
            tx,
        });
        Ok(Watch::new(rx))
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<Lease> {
        let mut state = self.state();
        state.next_lease += 1;
        let id = state.next_lease;
        state.leases.insert(
            id,
            LeaseState {
                ttl,
                deadline: Instant::now() + ttl,
            },
        );
        Ok(Lease { id, ttl })
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<()> {
        let mut state = self.state();
        let l = state
            .leases
            .get_mut(&lease)
            .ok_or(Error::LeaseNotFound(lease))?;
        l.deadline = Instant::now() + l.ttl;
        Ok(())
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<()> {
        let mut state = self.state();
        if !state.leases.contains_key(&lease) {
            return Err(Error::LeaseNotFound(lease));
        }
        state.revoke(lease);
        Ok(())
    }

    async fn revision(&self) -> Result<Revision> {
        Ok(self.state().revision)
    }

    async fn lease_time_to_live(&self, lease: LeaseId) -> Result<Option<Duration>> {
        let state = self.state();
        let l = state
            .leases
            .get(&lease)
            .ok_or(Error::LeaseNotFound(lease))?;
        Ok(Some(l.deadline.saturating_duration_since(Instant::now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_update_delete_follow_revisions() -> Result<()> {
        let store = MemoryStore::new();
        let r1 = store.create("/a", b"1".to_vec(), None).await?;
        assert!(matches!(
            store.create("/a", b"2".to_vec(), None).await,
            Err(Error::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.update("/a", b"2".to_vec(), r1 + 5, None).await,
            Err(Error::Conflict { .. })
        ));
        let r2 = store.update("/a", b"2".to_vec(), r1, None).await?;
        assert!(r2 > r1);
        assert!(matches!(
            store.delete("/a", Some(r1)).await,
            Err(Error::Conflict { .. })
        ));
        store.delete("/a", Some(r2)).await?;
        assert!(store.get("/a").await?.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn a_guarded_create_needs_its_guard_as_read() -> Result<()> {
        let store = MemoryStore::new();
        store.create("/h", b"h".to_vec(), None).await?;
        let guard = Guard::on(
            &store
                .get("/h")
                .await?
                .ok_or(Error::Backend("no /h".into()))?,
        );
        store.create_guarded("/a", b"1".to_vec(), &guard).await?;
        store.delete("/h", None).await?;
        assert!(matches!(
            store.create_guarded("/b", b"1".to_vec(), &guard).await,
            Err(Error::Conflict { key, actual: 0, .. }) if key == "/h"
        ));
        assert!(store.get("/b").await?.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn watch_replays_from_a_revision_then_follows() -> Result<()> {
        let store = MemoryStore::new();
        let r1 = store.create("/p/a", b"1".to_vec(), None).await?;
        store.create("/q/b", b"1".to_vec(), None).await?;
        let mut watch = store.watch("/p/", r1).await?;
        store.delete("/p/a", None).await?;
        assert!(matches!(watch.next().await, Some(Ok(WatchEvent::Put(_)))));
        assert!(matches!(
            watch.next().await,
            Some(Ok(WatchEvent::Delete { .. }))
        ));
        Ok(())
    }

    #[tokio::test]
    async fn revoked_lease_deletes_its_keys() -> Result<()> {
        let store = MemoryStore::new();
        let lease = store.grant_lease(Duration::from_secs(60)).await?;
        store.create("/l", b"x".to_vec(), Some(lease.id)).await?;
        store.revoke_lease(lease.id).await?;
        assert!(store.get("/l").await?.is_none());
        Ok(())
    }
}
