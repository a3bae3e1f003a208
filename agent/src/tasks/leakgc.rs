//! Leaked-address collection for this node's blocks (what Calico's kube-controllers do
//! cluster-wide, with a grace period): a pod's allocation in a block affine to this node
//! that no WorkloadEndpoint records and that stays so (same handle, same sequence number)
//! for the grace period is released. A CNI ADD that was killed after allocating, a DEL
//! that never came: the address comes back without a person. Only pod allocations are
//! collected ([`ipam::usage::collectable`]: never a tunnel address, never a reservation
//! made by something else). The release is guarded again against the datastore
//! ([`ipam::Ipam::release_if_still_leaked`]): never an address a live endpoint uses, never
//! one handed out again meanwhile, nothing while an endpoint or node does not decode, and
//! nothing while the datastore is locked (`calicoctl datastore migrate lock`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam::{Ipam, LeakRelease, usage};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::backoff::Backoff;
use crate::liveness::Heartbeat;
use crate::state::ClusterState;

/// One allocation as the collector tracks it: the same address under another handle or
/// sequence number is another allocation (and starts its grace period again).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    pub ip: IpAddr,
    pub handle: Option<String>,
    pub sequence: u64,
}

/// Every address a workload or node records (pure).
fn in_use(state: &ClusterState) -> BTreeSet<IpAddr> {
    let workloads = state.workloads.values().flat_map(usage::workload_addresses);
    let tunnels = state
        .nodes
        .values()
        .flat_map(|n| usage::tunnel_addresses(n).into_iter().map(|(ip, _)| ip));
    workloads.chain(tunnels).collect()
}

/// The collectable allocations of blocks affine to `node` that nothing uses right now
/// (pure).
pub fn leak_candidates(state: &ClusterState, node: &str) -> BTreeSet<Candidate> {
    let used = in_use(state);
    let mut out = BTreeSet::new();
    for (cidr, block) in state.blocks.iter().filter(|(_, b)| b.host() == Some(node)) {
        for (ordinal, slot) in block.allocations.iter().enumerate() {
            let Some(a) = slot.and_then(|index| block.attributes.get(index)) else {
                continue;
            };
            if !usage::collectable(a.handle_id.as_deref(), &a.secondary) {
                continue;
            }
            let ip = ipam::block::ip_at(cidr, ordinal);
            if used.contains(&ip) {
                continue;
            }
            let sequence = block
                .sequence_number_for_allocation
                .get(&ordinal.to_string())
                .copied()
                .unwrap_or(0);
            out.insert(Candidate {
                ip,
                handle: a.handle_id.clone(),
                sequence,
            });
        }
    }
    out
}

/// Releases the candidates whose grace period is over; false when a datastore error
/// left some for a retry.
async fn release_due(
    ipam: &Ipam,
    grace: Duration,
    leaked_since: &mut BTreeMap<Candidate, Instant>,
    heartbeat: &mut Heartbeat,
) -> bool {
    let now = Instant::now();
    let due: Vec<Candidate> = leaked_since
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= grace)
        .map(|(c, _)| c.clone())
        .collect();
    if due.is_empty() {
        return true;
    }
    match datastore::Client::new(ipam.datastore().clone())
        .datastore_locked()
        .await
    {
        Ok(false) => {}
        Ok(true) => {
            debug!(
                due = due.len(),
                "datastore locked; leaked addresses kept for now"
            );
            return false;
        }
        Err(e) => {
            warn!(error = %e, "cannot read ClusterInformation; leaked addresses kept for now");
            return false;
        }
    }
    let mut all_done = true;
    for c in due {
        // A pass over many candidates is progress, not a stuck task.
        heartbeat.beat();
        match ipam
            .release_if_still_leaked(c.ip, c.handle.as_deref(), Some(c.sequence))
            .await
        {
            Ok(LeakRelease::Released) => {
                info!(ip = %c.ip, handle = ?c.handle, after = ?grace, "released a leaked address (no endpoint used it)");
                leaked_since.remove(&c);
            }
            Ok(outcome) => {
                debug!(ip = %c.ip, ?outcome, "leak candidate not released");
                leaked_since.remove(&c);
            }
            Err(e) => {
                warn!(ip = %c.ip, error = %e, "leaked address not released; will retry");
                all_done = false;
            }
        }
    }
    all_done
}

/// The counters of the parts of the state [`leak_candidates`] reads for `node`: the blocks
/// the node hosts, and every endpoint and node (any of them may use an address of those
/// blocks).
fn candidate_reads(state: &ClusterState, node: &str) -> (u64, u64, u64) {
    let g = state.generations;
    (state.ipam_generation_of(node), g.workloads, g.nodes)
}

/// Runs until the cluster-state channel closes. `grace` zero disables collection.
pub async fn run(
    ipam: Ipam,
    node: String,
    grace: Duration,
    mut state: watch::Receiver<Arc<ClusterState>>,
    mut heartbeat: Heartbeat,
) {
    let mut leaked_since: BTreeMap<Candidate, Instant> = BTreeMap::new();
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    // After a failed pass, no release is tried before this (state changes wake the task
    // far more often than that).
    let mut retry_at: Option<Instant> = None;
    loop {
        heartbeat.beat();
        let reads = candidate_reads(&state.borrow(), &node);
        if !grace.is_zero() {
            let now = Instant::now();
            let candidates = {
                let s = state.borrow_and_update();
                leak_candidates(&s, &node)
            };
            leaked_since.retain(|c, _| candidates.contains(c));
            for c in candidates {
                leaked_since.entry(c).or_insert(now);
            }
            if retry_at.is_none_or(|r| now >= r) {
                if release_due(&ipam, grace, &mut leaked_since, &mut heartbeat).await {
                    backoff.reset();
                    retry_at = None;
                } else {
                    retry_at = Some(Instant::now() + backoff.next_wait());
                }
            }
        }
        // Next: the earliest grace period to end, but not before a failed pass's retry.
        let next = leaked_since
            .values()
            .map(|since| *since + grace)
            .min()
            .map(|t| retry_at.map_or(t, |r| t.max(r)));
        let mut wake = std::pin::pin!(async move {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        });
        loop {
            tokio::select! {
                () = heartbeat.tick() => continue,
                // Other nodes' claims change no candidate.
                changed = super::state_changed_from(&mut state, &reads, |s| candidate_reads(s, &node)) => {
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

#[cfg(test)]
mod tests {
    use datastore::model::EncapMode::Never;
    use datastore::model::ipam::AffinityState;

    use super::*;
    use crate::calc::fixtures::*;

    fn ips(c: &BTreeSet<Candidate>) -> Vec<String> {
        c.iter().map(|c| c.ip.to_string()).collect()
    }

    #[test]
    fn only_unused_allocations_of_this_nodes_blocks_are_candidates() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24"), node("n2", "10.0.0.2/24")],
            vec![pool("p", "10.244.0.0/16", Never, Never)],
        );
        claim(&mut s, "n1", "10.244.1.0/26", AffinityState::Confirmed);
        claim(&mut s, "n2", "10.244.2.0/26", AffinityState::Confirmed);
        allocate(&mut s, "10.244.1.0/26", 1, "n1"); // used by pod-a
        allocate(&mut s, "10.244.1.0/26", 2, "n1"); // leaked
        allocate(&mut s, "10.244.1.0/26", 3, "n2"); // borrowed by n2, used by pod-b
        allocate(&mut s, "10.244.2.0/26", 4, "n2"); // leaked, but n2's block
        workload(&mut s, "n1", "pod-a", "10.244.1.1", "cali1");
        workload(&mut s, "n2", "pod-b", "10.244.1.3", "cali2");
        assert_eq!(ips(&leak_candidates(&s, "n1")), vec!["10.244.1.2"]);
        assert_eq!(ips(&leak_candidates(&s, "n2")), vec!["10.244.2.4"]);
    }

    #[test]
    fn tunnel_addresses_are_never_candidates() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24")],
            vec![pool("p", "10.244.0.0/16", Never, Never)],
        );
        claim(&mut s, "n1", "10.244.1.0/26", AffinityState::Confirmed);
        allocate(&mut s, "10.244.1.0/26", 0, "n1");
        let block = s.blocks.get_mut(&cidr("10.244.1.0/26")).expect("block");
        block.attributes[0].handle_id = Some("vxlan-tunnel-addr-n1".into());
        assert!(leak_candidates(&s, "n1").is_empty());
    }

    #[test]
    fn reservations_without_a_pod_are_never_candidates() {
        let mut s = cluster(
            vec![node("n1", "10.0.0.1/24")],
            vec![pool("p", "10.244.0.0/16", Never, Never)],
        );
        claim(&mut s, "n1", "10.244.1.0/26", AffinityState::Confirmed);
        allocate(&mut s, "10.244.1.0/26", 5, "n1");
        allocate(&mut s, "10.244.1.0/26", 6, "n1");
        let block = s.blocks.get_mut(&cidr("10.244.1.0/26")).expect("block");
        block.attributes[1].secondary.remove("pod");
        assert_eq!(ips(&leak_candidates(&s, "n1")), vec!["10.244.1.5"]);
    }
}
