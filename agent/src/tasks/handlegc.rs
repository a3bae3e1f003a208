//! Leaked-handle collection: an IPAM handle (`/calico/ipam/v2/handle/<id>`) that no block
//! allocation refers to, unchanged for the grace period, is deleted. It is what an ADD
//! leaves when its handle write got no answer and landed after the runtime's DEL looked
//! (the chaos suite found one with three etcd members: `ipam check` reports it as a handle
//! with no matching IPs). calico-ipam writes the handle before the block allocation and
//! an ADD takes seconds, so a handle that stays unreferenced for the grace period is not
//! one an ADD is still using. The delete is a compare-and-swap on the revision seen, and
//! [`ipam::Ipam::release_handle_if_unchanged`] checks again that no block holds an
//! address for it; every node sweeps (the first delete wins, the others find it gone).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datastore::{Revision, keys};
use ipam::Ipam;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::state::ClusterState;
use crate::tasks::liveness::Heartbeat;

/// The handles (id, revision) no allocation of any block refers to (pure).
pub fn unreferenced(
    state: &ClusterState,
    handles: &[(String, Revision)],
) -> BTreeSet<(String, Revision)> {
    let referenced: BTreeSet<&str> = state
        .blocks
        .values()
        .flat_map(|b| {
            b.allocations
                .iter()
                .flatten()
                .filter_map(|i| b.attributes.get(*i))
                .filter_map(|a| a.handle_id.as_deref())
        })
        .collect();
    handles
        .iter()
        .filter(|(id, _)| !referenced.contains(id.as_str()))
        .cloned()
        .collect()
}

/// Every handle in the store, with its revision.
async fn list_handles(ipam: &Ipam) -> datastore::Result<Vec<(String, Revision)>> {
    let prefix = keys::handles_prefix();
    Ok(ipam
        .datastore()
        .list(&prefix)
        .await?
        .items
        .into_iter()
        .filter_map(|kv| {
            let id = kv.key.strip_prefix(&prefix)?.to_string();
            Some((id, kv.mod_revision))
        })
        .collect())
}

/// One sweep: refresh what is unreferenced, delete what has been for `grace`.
async fn sweep(
    ipam: &Ipam,
    state: &ClusterState,
    grace: Duration,
    seen: &mut BTreeMap<(String, Revision), Instant>,
) -> datastore::Result<()> {
    let now = Instant::now();
    let handles = list_handles(ipam).await?;
    let candidates = unreferenced(state, &handles);
    seen.retain(|h, _| candidates.contains(h));
    for h in candidates {
        seen.entry(h).or_insert(now);
    }
    let due: Vec<(String, Revision)> = seen
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= grace)
        .map(|(h, _)| h.clone())
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    if datastore::Client::new(ipam.datastore().clone())
        .datastore_locked()
        .await?
    {
        debug!("datastore locked; leaked handles kept for now");
        return Ok(());
    }
    for (id, revision) in due {
        match ipam.release_handle_if_unchanged(&id, revision).await {
            Ok(true) => {
                info!(handle = %id, after = ?grace, "released a leaked handle (no address was held by it)")
            }
            Ok(false) => debug!(handle = %id, "handle changed or in use; kept"),
            Err(e) => {
                warn!(handle = %id, error = %e, "leaked handle not released; will retry");
                continue;
            }
        }
        seen.remove(&(id, revision));
    }
    Ok(())
}

/// Runs until the cluster-state channel closes; sweeps every half grace period (at least
/// every second). `grace` zero disables collection.
pub async fn run(
    ipam: Ipam,
    grace: Duration,
    mut state: watch::Receiver<Arc<ClusterState>>,
    mut heartbeat: Heartbeat,
) {
    let mut seen = BTreeMap::new();
    let every = (grace / 2).max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = heartbeat.tick() => continue,
            changed = state.changed() => {
                if changed.is_err() { return }
                continue;
            }
            _ = tick.tick() => {}
        }
        heartbeat.beat();
        if grace.is_zero() {
            continue;
        }
        let snapshot = state.borrow_and_update().clone();
        if let Err(e) = sweep(&ipam, &snapshot, grace, &mut seen).await {
            warn!(error = %e, "cannot sweep IPAM handles; will retry");
        }
    }
}

#[cfg(test)]
mod tests {
    use datastore::model::EncapMode::Never;
    use datastore::model::ipam::AffinityState;

    use super::*;
    use crate::calc::fixtures::*;

    #[test]
    fn only_handles_no_allocation_refers_to_are_candidates() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24")],
            vec![pool("p", "10.244.0.0/16", Never, Never)],
        );
        claim(&mut s, "n1", "10.244.1.0/26", AffinityState::Confirmed);
        allocate(&mut s, "10.244.1.0/26", 1, "n1");
        let used = s
            .blocks
            .values()
            .flat_map(|b| b.attributes.iter().filter_map(|a| a.handle_id.clone()))
            .next()
            .unwrap_or_default();
        assert!(!used.is_empty(), "the fixture's allocation has a handle");
        let handles = vec![(used.clone(), 5), ("k8s-pod-network.gone".to_string(), 7)];
        let got: Vec<String> = unreferenced(&s, &handles)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(got, vec!["k8s-pod-network.gone"]);
    }
}
