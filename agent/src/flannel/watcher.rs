//! The lease watcher (flannel's `watchSubnets`): lists `<prefix>/subnets/`, then follows it
//! with a watch from the listing's revision + 1, applying each burst of events at once, and
//! publishes the whole set of leases after every change. A watch that ends (compaction, a
//! lost connection) is followed by a fresh listing, with a backoff from 100 ms to 5 s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use datastore::{Datastore, Listing, Revision, WatchEvent};
use ipnet::Ipv4Net;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::lease::SubnetLease;
use super::subnet::{subnet_of_key, subnets_dir};
use crate::backoff::Backoff;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Every lease in the store as of `revision`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseSnapshot {
    /// Leases by subnet. Keys whose value is not valid lease JSON are left out (and
    /// counted in `taken`).
    pub leases: BTreeMap<Ipv4Net, SubnetLease>,
    /// Every subnet with a key, valid value or not.
    pub taken: BTreeSet<Ipv4Net>,
    /// The store revision this view is complete up to.
    pub revision: Revision,
    /// False until the first listing arrived.
    pub synced: bool,
}

impl LeaseSnapshot {
    /// Builds a snapshot from a listing.
    pub fn from_listing(prefix: &str, listing: &Listing) -> LeaseSnapshot {
        let mut snap = LeaseSnapshot {
            revision: listing.revision,
            synced: true,
            ..LeaseSnapshot::default()
        };
        for kv in &listing.items {
            snap.put(prefix, kv);
        }
        snap
    }

    fn put(&mut self, prefix: &str, kv: &datastore::KeyValue) {
        let Some(subnet) = subnet_of_key(prefix, &kv.key) else {
            debug!(key = kv.key, "not a subnet lease key; ignored");
            return;
        };
        self.taken.insert(subnet);
        match SubnetLease::from_kv(prefix, kv) {
            Ok(lease) => {
                self.leases.insert(subnet, lease);
            }
            Err(e) => {
                warn!(error = %e, "ignoring a lease that cannot be decoded");
                self.leases.remove(&subnet);
            }
        }
    }

    /// Applies one watch event.
    pub fn apply(&mut self, prefix: &str, event: &WatchEvent) {
        match event {
            WatchEvent::Put(kv) => self.put(prefix, kv),
            WatchEvent::Delete { key, .. } => {
                if let Some(subnet) = subnet_of_key(prefix, key) {
                    self.taken.remove(&subnet);
                    self.leases.remove(&subnet);
                }
            }
        }
        self.revision = self.revision.max(event.revision());
    }
}

/// Runs until every receiver of `tx` is gone.
pub async fn run(store: Arc<dyn Datastore>, prefix: String, tx: watch::Sender<Arc<LeaseSnapshot>>) {
    let dir = subnets_dir(&prefix);
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    loop {
        if tx.is_closed() {
            return;
        }
        let listing = match store.list(&dir).await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, prefix = dir, "cannot list the subnet leases; retrying");
                tokio::time::sleep(backoff.next_wait()).await;
                continue;
            }
        };
        let mut snap = LeaseSnapshot::from_listing(&prefix, &listing);
        debug!(
            leases = snap.leases.len(),
            revision = snap.revision,
            "listed subnet leases"
        );
        tx.send_replace(Arc::new(snap.clone()));
        let mut watch = match store.watch(&dir, listing.revision + 1).await {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cannot watch the subnet leases; relisting");
                tokio::time::sleep(backoff.next_wait()).await;
                continue;
            }
        };
        backoff.reset();
        loop {
            let first = tokio::select! {
                ev = watch.next() => ev,
                () = tx.closed() => return,
            };
            let ended = match first {
                Some(Ok(ev)) => {
                    snap.apply(&prefix, &ev);
                    let mut ended = None;
                    // A burst (a lease's expiry, several nodes starting) is applied at once.
                    while let Some(next) = watch.try_next() {
                        match next {
                            Ok(ev) => snap.apply(&prefix, &ev),
                            Err(e) => {
                                ended = Some(e.to_string());
                                break;
                            }
                        }
                    }
                    tx.send_replace(Arc::new(snap.clone()));
                    ended
                }
                Some(Err(e)) => Some(e.to_string()),
                None => Some("watch closed".to_string()),
            };
            if let Some(reason) = ended {
                info!(reason, "subnet lease watch ended; relisting");
                tokio::time::sleep(BACKOFF_MIN).await;
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use datastore::KeyValue;

    use super::*;
    use crate::flannel::lease::LeaseAttrs;

    const PREFIX: &str = "/coreos.com/network";

    fn kv(subnet: &str, value: &[u8], rev: Revision) -> KeyValue {
        KeyValue {
            key: format!("{PREFIX}/subnets/{subnet}"),
            value: value.to_vec(),
            create_revision: rev,
            mod_revision: rev,
            lease: Some(7),
        }
    }

    #[test]
    fn snapshot_follows_puts_and_deletes_and_counts_undecodable_keys_as_taken() {
        let good = LeaseAttrs::host_gw("10.0.0.2".parse().expect("ip")).to_json();
        let listing = Listing {
            items: vec![
                kv("10.244.2.0-24", &good, 3),
                kv("10.244.3.0-24", b"garbage", 4),
                KeyValue {
                    key: format!("{PREFIX}/subnets/nonsense"),
                    ..kv("x", b"{}", 5)
                },
            ],
            revision: 5,
        };
        let mut snap = LeaseSnapshot::from_listing(PREFIX, &listing);
        assert!(snap.synced);
        assert_eq!(snap.leases.len(), 1);
        assert_eq!(snap.taken.len(), 2);
        snap.apply(PREFIX, &WatchEvent::Put(kv("10.244.4.0-24", &good, 6)));
        assert_eq!(snap.leases.len(), 2);
        assert_eq!(snap.revision, 6);
        snap.apply(
            PREFIX,
            &WatchEvent::Delete {
                key: format!("{PREFIX}/subnets/10.244.2.0-24"),
                revision: 7,
            },
        );
        snap.apply(
            PREFIX,
            &WatchEvent::Delete {
                key: format!("{PREFIX}/subnets/10.244.3.0-24"),
                revision: 8,
            },
        );
        let subnets: Vec<String> = snap.leases.keys().map(ToString::to_string).collect();
        assert_eq!(subnets, vec!["10.244.4.0/24"]);
        assert_eq!(snap.taken.len(), 1);
        assert_eq!(snap.revision, 8);
        // A lease rewritten with garbage stops being programmed but stays taken.
        snap.apply(PREFIX, &WatchEvent::Put(kv("10.244.4.0-24", b"{", 9)));
        assert!(snap.leases.is_empty());
        assert_eq!(snap.taken.len(), 1);
    }

    #[tokio::test]
    async fn watcher_publishes_listing_then_changes_from_the_memory_store() {
        let store: Arc<dyn Datastore> = Arc::new(datastore::MemoryStore::new());
        let good = LeaseAttrs::host_gw("10.0.0.2".parse().expect("ip")).to_json();
        store
            .create(
                &format!("{PREFIX}/subnets/10.244.2.0-24"),
                good.clone(),
                None,
            )
            .await
            .expect("create");
        let (tx, mut rx) = watch::channel(Arc::new(LeaseSnapshot::default()));
        let task = tokio::spawn(run(store.clone(), PREFIX.to_string(), tx));
        let synced = rx.wait_for(|s| s.synced).await.expect("synced").clone();
        assert_eq!(synced.leases.len(), 1);
        store
            .create(&format!("{PREFIX}/subnets/10.244.3.0-24"), good, None)
            .await
            .expect("create");
        let two = rx
            .wait_for(|s| s.leases.len() == 2)
            .await
            .expect("two")
            .clone();
        assert!(two.revision > synced.revision);
        store
            .delete(&format!("{PREFIX}/subnets/10.244.2.0-24"), None)
            .await
            .expect("delete");
        rx.wait_for(|s| s.leases.len() == 1).await.expect("one");
        task.abort();
    }
}
