//! Leaked-address collection for this node's blocks (what Calico's kube-controllers do
//! cluster-wide, with a grace period): an allocation in a block affine to this node that
//! no WorkloadEndpoint records, that is no node's tunnel address and whose handle is no
//! tunnel handle, and that stays so (same handle, same sequence number) for the grace
//! period, is released. A CNI ADD that was killed after allocating, a DEL that never came:
//! the address comes back without a person. The release is guarded again against the
//! datastore ([`ipam::Ipam::release_if_still_leaked`]): never an address a live endpoint
//! uses, never one handed out again meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datastore::model::ipam::attr;
use ipam::{Ipam, LeakRelease};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::state::ClusterState;
use crate::tasks::liveness::Heartbeat;

/// One allocation as the collector tracks it: the same address under another handle or
/// sequence number is another allocation (and starts its grace period again).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    pub ip: IpAddr,
    pub handle: Option<String>,
    pub sequence: u64,
}

/// Handles of tunnel addresses (allocated by calico-node, recorded on the Node).
fn is_tunnel(handle: Option<&str>, kind: Option<&str>) -> bool {
    matches!(kind, Some(attr::TYPE_IPIP | attr::TYPE_VXLAN))
        || handle.is_some_and(|h| {
            h.starts_with("ipip-tunnel-addr-") || h.starts_with("vxlan-tunnel-addr-")
        })
}

/// Every address a workload or node records (pure).
fn in_use(state: &ClusterState) -> BTreeSet<IpAddr> {
    let ip_of = |s: &str| s.split('/').next().and_then(|a| a.parse::<IpAddr>().ok());
    let workloads = state
        .workloads
        .values()
        .flat_map(|w| w.spec.ip_networks.iter())
        .filter_map(|n| ip_of(n));
    let tunnels = state.nodes.values().flat_map(|n| {
        [
            n.spec
                .bgp
                .as_ref()
                .and_then(|b| b.ipv4_ipip_tunnel_addr.as_deref()),
            n.spec.ipv4_vxlan_tunnel_addr.as_deref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(ip_of)
    });
    workloads.chain(tunnels).collect()
}

/// The allocations of blocks affine to `node` that nothing uses right now (pure).
pub fn leak_candidates(state: &ClusterState, node: &str) -> BTreeSet<Candidate> {
    let used = in_use(state);
    let mut out = BTreeSet::new();
    for (cidr, block) in state.blocks.iter().filter(|(_, b)| b.host() == Some(node)) {
        for (ordinal, slot) in block.allocations.iter().enumerate() {
            let Some(index) = slot else { continue };
            let a = block.attributes.get(*index);
            let handle = a.and_then(|a| a.handle_id.clone());
            let kind = a
                .and_then(|a| a.secondary.get(attr::TYPE))
                .map(String::as_str);
            if is_tunnel(handle.as_deref(), kind) {
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
                handle,
                sequence,
            });
        }
    }
    out
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
    loop {
        heartbeat.beat();
        let now = Instant::now();
        if !grace.is_zero() {
            let candidates = {
                let s = state.borrow_and_update();
                leak_candidates(&s, &node)
            };
            leaked_since.retain(|c, _| candidates.contains(c));
            for c in candidates {
                leaked_since.entry(c).or_insert(now);
            }
            let due: Vec<Candidate> = leaked_since
                .iter()
                .filter(|(_, since)| now.duration_since(**since) >= grace)
                .map(|(c, _)| c.clone())
                .collect();
            for c in due {
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
                        warn!(ip = %c.ip, error = %e, "leaked address not released; will retry")
                    }
                }
            }
        }
        let next = leaked_since
            .values()
            .map(|since| *since + grace)
            .min()
            .map(|t| t.max(Instant::now() + Duration::from_millis(100)));
        let mut wake = std::pin::pin!(async move {
            match next {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        });
        loop {
            tokio::select! {
                () = heartbeat.tick() => continue,
                changed = state.changed() => if changed.is_err() { return },
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
}
