//! Empty-block GC for this node (what Calico's kube-controllers do cluster-wide): a block
//! affine to this node that stays empty for the grace period is released — its
//! blackhole goes, every peer withdraws its route — except the node's last block, which is
//! kept for the next pod (Calico #7987 asks for exactly this control).
//!
//! It also repairs this node's claims left `pendingDeletion` by a release cut short (a
//! crash, a failed write): such a block is neither routed nor announced, so one still in
//! use gets its affinity back once it has been stuck for [`STUCK_GRACE`].
//!
//! Nothing is changed while the datastore is locked (`calicoctl datastore migrate lock`);
//! failed writes are retried with a back-off.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datastore::model::ipam::AffinityState;
use ipam::{Ipam, StuckClaim};
use ipnet::IpNet;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::liveness::Heartbeat;
use crate::state::ClusterState;

/// How long a claim of this node may stay `pendingDeletion` before it counts as stuck (a
/// release in progress takes milliseconds).
pub const STUCK_GRACE: Duration = Duration::from_secs(10);

/// This node's claims in `pendingDeletion` right now.
pub fn pending_deletions(state: &ClusterState, node: &str) -> Vec<IpNet> {
    state
        .affinities_of(node)
        .filter(|(_, a)| a.state == AffinityState::PendingDeletion)
        .map(|(cidr, _)| *cidr)
        .collect()
}

/// This node's confirmed blocks that are empty right now.
pub fn empty_blocks(state: &ClusterState, node: &str) -> (Vec<IpNet>, usize) {
    let affine: Vec<IpNet> = state.confirmed_blocks_of(node).collect();
    let empty = affine
        .iter()
        .filter(|cidr| state.blocks.get(*cidr).is_some_and(|b| b.is_empty()))
        .copied()
        .collect();
    (empty, affine.len())
}

/// Runs until the cluster-state channel closes.
pub async fn run(
    ipam: Ipam,
    node: String,
    grace: Duration,
    mut state: watch::Receiver<Arc<ClusterState>>,
    mut heartbeat: Heartbeat,
) {
    let mut empty_since: BTreeMap<IpNet, Instant> = BTreeMap::new();
    let mut stuck_since: BTreeMap<IpNet, Instant> = BTreeMap::new();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    // After a failed pass, nothing is tried before this (state changes wake the task far
    // more often than that).
    let mut retry_at: Option<Instant> = None;
    loop {
        heartbeat.beat();
        let now = Instant::now();
        let mut failed = false;
        let ((empty, total), pending, reads) = {
            let s = state.borrow_and_update();
            (
                empty_blocks(&s, &node),
                pending_deletions(&s, &node),
                s.ipam_generation_of(&node),
            )
        };
        stuck_since.retain(|cidr, _| pending.contains(cidr));
        for cidr in &pending {
            stuck_since.entry(*cidr).or_insert(now);
        }
        let stuck: Vec<IpNet> = stuck_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= STUCK_GRACE)
            .map(|(cidr, _)| *cidr)
            .collect();
        empty_since.retain(|cidr, _| empty.contains(cidr));
        for cidr in &empty {
            empty_since.entry(*cidr).or_insert(now);
        }
        let due: Vec<IpNet> = empty_since
            .iter()
            .filter(|(_, since)| now.duration_since(**since) >= grace)
            .map(|(cidr, _)| *cidr)
            .collect();
        let work = (!stuck.is_empty() || (!due.is_empty() && total > 1))
            && retry_at.is_none_or(|r| now >= r);
        let allowed = if work {
            match datastore::Client::new(ipam.datastore().clone())
                .datastore_locked()
                .await
            {
                Ok(locked) => !locked,
                Err(e) => {
                    warn!(error = %e, "cannot read ClusterInformation; block GC waits");
                    false
                }
            }
        } else {
            false
        };
        // Locked or unreadable: nothing is touched, the work waits for the back-off.
        failed |= work && !allowed;
        let held = !work && retry_at.is_some_and(|r| now < r);
        let (stuck, due) = if allowed {
            (stuck, due)
        } else {
            (Vec::new(), Vec::new())
        };
        for cidr in stuck {
            heartbeat.beat();
            match ipam.repair_stuck_claim(&node, &cidr).await {
                Ok(StuckClaim::NotStuck) => {}
                Ok(done) => {
                    warn!(block = %cidr, ?done, "repaired a claim of this node stuck in pendingDeletion");
                    stuck_since.remove(&cidr);
                }
                Err(e) => {
                    warn!(block = %cidr, error = %e, "claim stuck in pendingDeletion; will retry");
                    failed = true;
                }
            }
        }
        let mut remaining = total;
        for cidr in due {
            heartbeat.beat();
            if remaining <= 1 {
                break;
            }
            match ipam.release_empty_affine_block(&node, &cidr).await {
                Ok(()) => {
                    info!(block = %cidr, "released an empty block");
                    empty_since.remove(&cidr);
                    remaining -= 1;
                }
                Err(e) => {
                    debug!(block = %cidr, error = %e, "empty block not released");
                    failed = true;
                }
            }
        }
        if failed {
            retry_at = Some(Instant::now() + backoff.next_wait());
        } else if !held {
            backoff.reset();
            retry_at = None;
        }
        let next = empty_since
            .values()
            .map(|since| *since + grace)
            .chain(stuck_since.values().map(|since| *since + STUCK_GRACE))
            .min()
            .map(|t| retry_at.map_or(t, |r| t.max(r)));
        let mut wake = std::pin::pin!(sleep_until(next));
        loop {
            tokio::select! {
                () = heartbeat.tick() => continue,
                // Other nodes' claims change nothing here.
                changed = super::state_changed_from(&mut state, &reads, |s| s.ipam_generation_of(&node)) => {
                    if !changed {
                        return;
                    }
                    // The rest of the burst is read with it, off the BGP update's path.
                    tokio::time::sleep(super::COLLECTOR_SETTLE).await;
                }
                () = &mut wake => {}
            }
            break;
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use datastore::model::EncapMode::Never;

    use super::*;
    use crate::calc::fixtures::*;

    #[test]
    fn pending_deletions_of_this_node_only_are_candidates_for_repair() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24"), node("n2", "10.0.0.2/24")],
            vec![pool("p", "10.244.0.0/16", Never, Never)],
        );
        claim(
            &mut s,
            "n1",
            "10.244.1.0/26",
            AffinityState::PendingDeletion,
        );
        claim(&mut s, "n1", "10.244.1.64/26", AffinityState::Confirmed);
        claim(
            &mut s,
            "n2",
            "10.244.2.0/26",
            AffinityState::PendingDeletion,
        );
        assert_eq!(pending_deletions(&s, "n1"), vec![cidr("10.244.1.0/26")]);
    }

    #[test]
    fn only_empty_confirmed_blocks_are_candidates() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24")],
            vec![pool("p", "10.244.0.0/16", Never, Never)],
        );
        claim(&mut s, "n1", "10.244.1.0/26", AffinityState::Confirmed);
        claim(&mut s, "n1", "10.244.1.64/26", AffinityState::Confirmed);
        claim(&mut s, "n1", "10.244.1.128/26", AffinityState::Pending);
        allocate(&mut s, "10.244.1.0/26", 3, "n1");
        let (empty, total) = empty_blocks(&s, "n1");
        assert_eq!(empty, vec![cidr("10.244.1.64/26")]);
        assert_eq!(total, 2);
    }
}
