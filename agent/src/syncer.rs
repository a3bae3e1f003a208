//! The datastore syncer: one list and one ordered watch of `/calico/`, folded into a
//! [`ClusterState`] that is published after each burst of events. When the datastore is
//! unreachable the last state stays published (the dataplane keeps working) and the
//! syncer relists with back-off until it is back.

use std::sync::Arc;
use std::time::Duration;

use datastore::{Datastore, WatchEvent};
use ipam::ClaimNotice;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::liveness::Heartbeat;
use crate::previews::Previews;
use crate::state::ClusterState;

/// Prefix the syncer follows.
pub const SYNC_PREFIX: &str = "/calico/";

/// Whether the published state is a complete, current view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    /// No listing yet.
    WaitingForDatastore,
    /// Following the datastore.
    InSync,
    /// Lost the datastore; the state is the last one seen.
    Reconnecting,
}

/// First wait before relisting after a lost datastore; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Follows the datastore forever, publishing each new state on `tx`. Returns only when
/// nobody reads the state any more (the agent is shutting down).
pub async fn run(
    store: Arc<dyn Datastore>,
    tx: watch::Sender<Arc<ClusterState>>,
    status: watch::Sender<SyncStatus>,
    mut notices: mpsc::Receiver<ClaimNotice>,
    mut heartbeat: Heartbeat,
) {
    let mut backoff = Backoff::new(FIRST_BACKOFF, MAX_BACKOFF);
    loop {
        let inputs = Inputs {
            store: &*store,
            tx: &tx,
            status: &status,
            notices: &mut notices,
        };
        match follow(inputs, &mut heartbeat, &mut backoff).await {
            Ok(()) => return,
            Err(e) => {
                let wait = backoff.next_wait();
                warn!(error = %e, retry_in = ?wait, "datastore sync interrupted; keeping the last state");
                let _ = status.send(SyncStatus::Reconnecting);
                let wake = tokio::time::Instant::now() + wait;
                while tokio::time::Instant::now() < wake {
                    tokio::select! {
                        () = tokio::time::sleep_until(wake) => {}
                        () = heartbeat.tick() => {}
                    }
                }
            }
        }
    }
}

/// How long a watch must stay up (or deliver an event) before the back-off starts over: a
/// watch that fails right after each relist must not make every node relist at once
/// against a struggling datastore.
const WATCH_HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// One listing and the watch after it, until the watch fails. Once the watch has proved
/// healthy the back-off starts again from the beginning: an outage long ago does not slow
/// the next relist.
async fn follow(
    inputs: Inputs<'_>,
    heartbeat: &mut Heartbeat,
    backoff: &mut Backoff,
) -> datastore::Result<()> {
    let Inputs {
        store,
        tx,
        status,
        notices,
    } = inputs;
    let listing = store.list(SYNC_PREFIX).await?;
    let state = ClusterState::from_listing(&listing.items, listing.revision);
    let mut watch = store.watch(SYNC_PREFIX, listing.revision + 1).await?;
    info!(
        revision = listing.revision,
        keys = listing.items.len(),
        "in sync with the datastore"
    );
    publish(tx, state);
    let _ = status.send(SyncStatus::InSync);
    let watching_since = Instant::now();
    let mut proved = false;
    let mut previews = Previews::default();
    loop {
        let first = tokio::select! {
            next = watch.next() => next,
            Some(notice) = notices.recv() => {
                tx.send_if_modified(|current| previews.offer(Arc::make_mut(current), &notice));
                continue;
            }
            () = heartbeat.tick() => {
                if !proved && watching_since.elapsed() >= WATCH_HEALTHY_AFTER {
                    proved = true;
                    backoff.reset();
                }
                continue;
            }
        };
        let Some(first) = first else {
            return Err(datastore::Error::Backend("watch closed".into()));
        };
        let first = first?;
        if !proved {
            proved = true;
            backoff.reset();
        }
        let mut burst = vec![first];
        while let Some(more) = watch.try_next() {
            burst.push(more?);
        }
        if tx.is_closed() {
            return Ok(());
        }
        // The published state is updated in place: it is copied only when a consumer still
        // holds the previous snapshot. Every node hears every write in the cluster, and a
        // copy of the whole state per write (and its drop later) was a third of each
        // node's CPU in the mesh benchmark. Every event advances the revision, so this
        // always publishes.
        // A burst that changed nothing the state holds (IPAM handles, status keys, a value
        // written again unchanged) wakes no consumer.
        tx.send_if_modified(|current| {
            let state = Arc::make_mut(current);
            let mut changed = false;
            for event in burst {
                if previews.admits(&event) {
                    changed |= apply(state, event);
                } else {
                    // Older than a preview of its key: passed over, its revision kept.
                    state.revision = state.revision.max(event.revision());
                }
            }
            changed
        });
        let overdue = previews.overdue(tx.borrow().revision);
        for key in overdue {
            reread(store, tx, &mut previews, &key).await?;
        }
    }
}

/// What [`follow`] works with.
struct Inputs<'a> {
    store: &'a dyn Datastore,
    tx: &'a watch::Sender<Arc<ClusterState>>,
    status: &'a watch::Sender<SyncStatus>,
    notices: &'a mut mpsc::Receiver<ClaimNotice>,
}

/// Reads `key` again after a wrong claim notice, and puts what the datastore holds in the
/// state (held as a preview when the read is ahead of the watch).
async fn reread(
    store: &dyn Datastore,
    tx: &watch::Sender<Arc<ClusterState>>,
    previews: &mut Previews,
    key: &str,
) -> datastore::Result<()> {
    let read = store.get(key).await?;
    warn!(
        key,
        found = read.is_some(),
        "a claim notice named a write the watch never delivered; read the key again"
    );
    tx.send_if_modified(|current| {
        let state = Arc::make_mut(current);
        match &read {
            Some(kv) => {
                if kv.mod_revision > state.revision {
                    previews.hold(key, kv.mod_revision);
                }
                state.put(key, &kv.value)
            }
            None => state.delete(key),
        }
    });
    Ok(())
}

/// Applies one event; true when the state changed.
fn apply(state: &mut ClusterState, event: WatchEvent) -> bool {
    state.revision = state.revision.max(event.revision());
    match event {
        WatchEvent::Put(kv) => state.put(&kv.key, &kv.value),
        WatchEvent::Delete { key, .. } => state.delete(&key),
    }
}

/// Publishes a state built from a full listing, unless it holds what consumers already
/// have (a relist after a reconnect that found nothing new). A new one has every
/// generation advanced past the current one's: any part may have changed.
fn publish(tx: &watch::Sender<Arc<ClusterState>>, mut state: ClusterState) {
    tx.send_if_modified(|current| {
        // Contents compared, not counters.
        state.generations = current.generations;
        state.node_generations = current.node_generations.clone();
        if **current == state {
            false
        } else {
            state.advanced_past(current.generations);
            *current = Arc::new(state);
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use datastore::{KeyValue, Lease, LeaseId, Listing, MemoryStore, Revision, Watch};
    use tokio::sync::{Notify, mpsc};
    use tokio::time::Instant;

    use super::*;
    use crate::liveness::Liveness;

    /// A store whose first `failing_lists` listings fail, whose watches can be cut, and
    /// which records when each listing was asked for.
    #[derive(Default)]
    struct FlakyStore {
        inner: MemoryStore,
        failing_lists: AtomicUsize,
        lists: Mutex<Vec<Instant>>,
        cut: Arc<Notify>,
        /// While true, watch events are held back (a watch whose turn has not come).
        holding: Arc<watch::Sender<bool>>,
    }

    #[async_trait]
    impl Datastore for FlakyStore {
        async fn get(&self, key: &str) -> datastore::Result<Option<KeyValue>> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str) -> datastore::Result<Listing> {
            self.lists.lock().expect("lock").push(Instant::now());
            if self.failing_lists.load(Ordering::SeqCst) > 0 {
                self.failing_lists.fetch_sub(1, Ordering::SeqCst);
                return Err(datastore::Error::Backend("etcd unreachable".into()));
            }
            self.inner.list(prefix).await
        }
        async fn create(
            &self,
            k: &str,
            v: Vec<u8>,
            l: Option<LeaseId>,
        ) -> datastore::Result<Revision> {
            self.inner.create(k, v, l).await
        }
        async fn create_all(&self, kvs: Vec<(String, Vec<u8>)>) -> datastore::Result<Revision> {
            self.inner.create_all(kvs).await
        }
        async fn put_all(&self, puts: Vec<datastore::Put>) -> datastore::Result<datastore::PutAll> {
            self.inner.put_all(puts).await
        }
        async fn update(
            &self,
            k: &str,
            v: Vec<u8>,
            e: Revision,
            l: Option<LeaseId>,
        ) -> datastore::Result<Revision> {
            self.inner.update(k, v, e, l).await
        }
        async fn delete(&self, k: &str, e: Option<Revision>) -> datastore::Result<KeyValue> {
            self.inner.delete(k, e).await
        }
        async fn watch(&self, prefix: &str, from: Revision) -> datastore::Result<Watch> {
            let mut inner = self.inner.watch(prefix, from).await?;
            let (tx, rx) = mpsc::channel(16);
            let cut = self.cut.clone();
            let mut holding = self.holding.subscribe();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = cut.notified() => return,
                        e = inner.next() => match e {
                            Some(e) => {
                                if holding.wait_for(|held| !*held).await.is_err()
                                    || tx.send(e).await.is_err()
                                {
                                    return;
                                }
                            }
                            None => return,
                        },
                    }
                }
            });
            Ok(Watch::new(rx))
        }
        async fn grant_lease(&self, ttl: Duration) -> datastore::Result<Lease> {
            self.inner.grant_lease(ttl).await
        }
        async fn keep_alive(&self, l: LeaseId) -> datastore::Result<()> {
            self.inner.keep_alive(l).await
        }
        async fn revoke_lease(&self, l: LeaseId) -> datastore::Result<()> {
            self.inner.revoke_lease(l).await
        }
        async fn revision(&self) -> datastore::Result<Revision> {
            self.inner.revision().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_outage_and_a_resync_the_next_relist_waits_the_first_backoff_again() {
        let store = Arc::new(FlakyStore::default());
        store.failing_lists.store(8, Ordering::SeqCst);
        let (tx, _rx) = watch::channel(Arc::new(ClusterState::default()));
        let (status_tx, mut status) = watch::channel(SyncStatus::WaitingForDatastore);
        let heartbeat = Liveness::new(Duration::from_secs(30)).heartbeat("syncer");
        let (_notices, notices) = mpsc::channel(1);
        let _syncer = tokio::spawn(run(store.clone(), tx, status_tx, notices, heartbeat));
        // Eight failed listings grow the back-off to its maximum, the ninth succeeds.
        while *status.borrow_and_update() != SyncStatus::InSync {
            status.changed().await.expect("syncer runs");
        }
        let outage: Vec<Instant> = store.lists.lock().expect("lock").clone();
        assert_eq!(outage.len(), 9);
        let last_wait = outage[8] - outage[7];
        assert_eq!(
            last_wait, MAX_BACKOFF,
            "the outage's back-off grew to the maximum"
        );

        // Later the watch is cut: the relist comes after the first back-off, not the max.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let cut_at = Instant::now();
        store.cut.notify_waiters();
        while store.lists.lock().expect("lock").len() < 10 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let relisted = store.lists.lock().expect("lock")[9];
        let waited = relisted - cut_at;
        assert!(
            waited <= FIRST_BACKOFF + Duration::from_millis(20),
            "relisted {waited:?} after the cut"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_that_fails_right_after_each_relist_keeps_backing_off() {
        let store = Arc::new(FlakyStore::default());
        let (tx, _rx) = watch::channel(Arc::new(ClusterState::default()));
        let (status_tx, _status) = watch::channel(SyncStatus::WaitingForDatastore);
        let heartbeat = Liveness::new(Duration::from_secs(30)).heartbeat("syncer");
        let (_notices, notices) = mpsc::channel(1);
        let _syncer = tokio::spawn(run(store.clone(), tx, status_tx, notices, heartbeat));
        // Every watch is cut a moment after its listing.
        let mut seen = 0;
        while seen < 6 {
            let n = store.lists.lock().expect("lock").len();
            if n > seen {
                seen = n;
                tokio::time::sleep(Duration::from_millis(1)).await;
                store.cut.notify_waiters();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let lists: Vec<Instant> = store.lists.lock().expect("lock").clone();
        let waits: Vec<Duration> = lists.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            waits.windows(2).all(|w| w[1] >= w[0]) && waits[4] >= FIRST_BACKOFF * 8,
            "relists {waits:?} apart: the back-off started over after each one"
        );
    }

    /// Passes each notice of a claim to the syncer, as the claims socket does.
    struct ToSyncer(mpsc::Sender<ClaimNotice>);

    impl ipam::ClaimObserver for ToSyncer {
        fn claimed(&self, notice: &ClaimNotice) {
            self.0.try_send(notice.clone()).expect("syncer queue");
        }
    }

    /// Waits for a published state that satisfies `ok`.
    async fn published(
        rx: &mut watch::Receiver<Arc<ClusterState>>,
        ok: impl Fn(&ClusterState) -> bool,
    ) -> Arc<ClusterState> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let state = rx.borrow_and_update().clone();
                if ok(&state) {
                    return state;
                }
                rx.changed().await.expect("syncer runs");
            }
        })
        .await
        .expect("the state never got there")
    }

    /// Waits until the state has followed the watch to `revision`. A burst that changes
    /// nothing the state holds (here the watch bringing what claim notices already
    /// previewed) moves its revision without publishing, so this looks rather than
    /// waiting to be told.
    async fn passed(
        rx: &watch::Receiver<Arc<ClusterState>>,
        revision: Revision,
    ) -> Arc<ClusterState> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let state = rx.borrow().clone();
                if state.revision >= revision {
                    return state;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the watch never got there")
    }

    /// A syncer over `store` with a notice channel, in sync with an IP pool.
    async fn syncing(
        store: &Arc<FlakyStore>,
    ) -> (
        watch::Receiver<Arc<ClusterState>>,
        mpsc::Sender<ClaimNotice>,
    ) {
        let pool = serde_json::json!({"apiVersion":"projectcalico.org/v3","kind":"IPPool",
            "metadata":{"name":"p"},"spec":{"cidr":"10.65.0.0/16","blockSize":26}});
        store
            .create(
                &datastore::keys::resource("ippools", "p"),
                pool.to_string().into_bytes(),
                None,
            )
            .await
            .expect("pool");
        let (tx, mut rx) = watch::channel(Arc::new(ClusterState::default()));
        let (status_tx, _status) = watch::channel(SyncStatus::WaitingForDatastore);
        let (notices_tx, notices) = mpsc::channel(8);
        let heartbeat = Liveness::new(Duration::from_secs(30)).heartbeat("syncer");
        tokio::spawn(run(store.clone(), tx, status_tx, notices, heartbeat));
        published(&mut rx, |s| !s.pools.is_empty()).await;
        (rx, notices_tx)
    }

    #[tokio::test]
    async fn a_claim_notice_routes_the_block_before_the_watch_brings_it_and_the_watch_has_the_last_word()
     {
        let store = Arc::new(FlakyStore::default());
        let (mut rx, notices) = syncing(&store).await;
        let ipam = ipam::Ipam::new(store.clone()).with_claim_observer(Arc::new(ToSyncer(notices)));
        store.holding.send_replace(true);
        let held_at = rx.borrow().revision;
        ipam.auto_assign(&ipam::AutoAssignArgs::one("h1", "node1"))
            .await
            .expect("assigned");
        let early = published(&mut rx, |s| s.confirmed_blocks_of("node1").count() == 1).await;
        assert_eq!(
            early.revision, held_at,
            "the watch delivered nothing meanwhile"
        );

        store.holding.send_replace(false);
        let now = store.revision().await.expect("revision");
        let caught_up = passed(&rx, now).await;
        let truth =
            ClusterState::from_listing(&store.list(SYNC_PREFIX).await.expect("list").items, now);
        assert_eq!(
            caught_up.blocks, truth.blocks,
            "the allocation after the claim is there too"
        );
        assert_eq!(caught_up.affinities, truth.affinities);
    }

    #[tokio::test]
    async fn a_notice_of_a_write_that_never_happened_is_undone_once_the_watch_passes_it() {
        let store = Arc::new(FlakyStore::default());
        let (mut rx, notices) = syncing(&store).await;
        store.holding.send_replace(true);
        let next = store.revision().await.expect("revision") + 1;
        let block: ipnet::IpNet = "10.65.0.0/26".parse().expect("cidr");
        let stored = datastore::model::ipam::AllocationBlock::new(block, Some("node1"), None);
        let bogus = ClaimNotice::of(
            next,
            &[
                (
                    datastore::keys::affinity("node1", &block),
                    br#"{"state":"confirmed","deleted":false}"#.to_vec(),
                ),
                (
                    datastore::keys::block(&block),
                    serde_json::to_vec(&stored).expect("json"),
                ),
            ],
        )
        .expect("utf-8");
        notices.send(bogus).await.expect("syncer");
        published(&mut rx, |s| s.confirmed_blocks_of("node1").count() == 1).await;
        // Something else is written at that revision; the watch brings it, not the claim.
        store
            .create(
                "/calico/resources/v3/projectcalico.org/nodes/node2",
                b"{}".to_vec(),
                None,
            )
            .await
            .expect("write");
        store.holding.send_replace(false);
        let state = published(&mut rx, |s| s.revision >= next && s.blocks.is_empty()).await;
        assert!(state.affinities.is_empty(), "{:?}", state.affinities);
    }
}
