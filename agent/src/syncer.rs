//! The datastore syncer: one list and one ordered watch of `/calico/`, folded into a
//! [`ClusterState`] that is published after each burst of events. When the datastore is
//! unreachable the last state stays published (the dataplane keeps working) and the
//! syncer relists with back-off until it is back.

use std::sync::Arc;
use std::time::Duration;

use datastore::{Datastore, WatchEvent};
use tokio::sync::watch;
use tracing::{info, warn};

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

/// Follows the datastore forever, publishing each new state on `tx`.
pub async fn run(
    store: Arc<dyn Datastore>,
    tx: watch::Sender<Arc<ClusterState>>,
    status: watch::Sender<SyncStatus>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match follow(&*store, &tx, &status).await {
            Ok(()) => return, // every receiver is gone: the agent is shutting down
            Err(e) => {
                warn!(error = %e, retry_in = ?backoff, "datastore sync interrupted; keeping the last state");
                let _ = status.send(SyncStatus::Reconnecting);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn follow(
    store: &dyn Datastore,
    tx: &watch::Sender<Arc<ClusterState>>,
    status: &watch::Sender<SyncStatus>,
) -> datastore::Result<()> {
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
    loop {
        let Some(first) = watch.next().await else {
            return Err(datastore::Error::Backend("watch closed".into()));
        };
        let mut burst = vec![first?];
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
        tx.send_modify(|current| {
            let state = Arc::make_mut(current);
            for event in burst {
                apply(state, event);
            }
        });
    }
}

fn apply(state: &mut ClusterState, event: WatchEvent) {
    state.revision = state.revision.max(event.revision());
    match event {
        WatchEvent::Put(kv) => state.put(&kv.key, &kv.value),
        WatchEvent::Delete { key, .. } => state.delete(&key),
    }
}

/// Publishes a state built from a full listing, unless it equals what consumers already
/// have (a relist after a reconnect that found nothing new).
fn publish(tx: &watch::Sender<Arc<ClusterState>>, state: ClusterState) {
    tx.send_if_modified(|current| {
        if **current == state {
            false
        } else {
            *current = Arc::new(state);
            true
        }
    });
}
